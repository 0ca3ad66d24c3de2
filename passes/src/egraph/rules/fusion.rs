//! Fusion: fused-kernel e-nodes for legal regions. A region grows from an op (or
//! a fused node) by inlining the representative op of one operand class per step,
//! so each class gains kernels of every extent up to the size limits, and the
//! extractor's cost model decides which to keep. Legal regions hold at most one
//! anchor (matmul, conv, attention, a reduction or normalization); what feeds the
//! anchor inside the region (its prologue) must be data movement for matmul, conv
//! and attention, and may also be elementwise for reductions and normalizations.

use crate::egraph::analysis::EG;
use crate::egraph::lang::ENode;
use crate::egraph::term::{class, Term};
use egg::Id;
use kiln_ir::op::{Fused, FusionClass};
use kiln_ir::{Graph, Op, ValueId};
use std::collections::HashMap;
use std::sync::Arc;

/// Limits on one fused kernel.
#[derive(Clone, Copy, Debug)]
pub struct FusionLimits {
    /// Most ops in one kernel.
    pub max_ops: usize,
    /// Most distinct operands of one kernel.
    pub max_args: usize,
}

/// Where a region node's operand comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Src {
    Arg(usize),
    Node(usize, usize),
}

/// A region under construction: operand classes and ops in order (the last is
/// the result).
#[derive(Clone, Debug)]
struct Region {
    args: Vec<Id>,
    nodes: Vec<(Op, Vec<Src>)>,
    out: Src,
}

impl Region {
    /// The region of one e-node (an op, or a fused node's body).
    fn of(eg: &EG, n: &ENode) -> Option<Region> {
        let ENode::Op(k, children) = n else {
            return None;
        };
        let mut args: Vec<Id> = Vec::new();
        let mut arg = |c: Id| -> usize {
            let c = eg.find(c);
            match args.iter().position(|&a| a == c) {
                Some(i) => i,
                None => {
                    args.push(c);
                    args.len() - 1
                }
            }
        };
        match &*k.op {
            Op::Fused(f) => {
                let b = &f.body;
                let argmap: Vec<usize> = children.iter().map(|&c| arg(c)).collect();
                let mut at: HashMap<ValueId, Src> = HashMap::new();
                for (i, &p) in b.inputs.iter().enumerate() {
                    at.insert(p, Src::Arg(argmap[i]));
                }
                let mut nodes = Vec::new();
                for n in &b.nodes {
                    let srcs = n
                        .inputs
                        .iter()
                        .map(|v| at.get(v).copied())
                        .collect::<Option<Vec<_>>>()?;
                    for (o, &v) in n.outputs.iter().enumerate() {
                        at.insert(v, Src::Node(nodes.len(), o));
                    }
                    nodes.push((n.op.clone(), srcs));
                }
                let out = *at.get(b.outputs.first()?)?;
                Some(Region { args, nodes, out })
            }
            op => {
                let srcs = children.iter().map(|&c| Src::Arg(arg(c))).collect();
                Some(Region {
                    nodes: vec![(op.clone(), srcs)],
                    args,
                    out: Src::Node(0, k.out),
                })
            }
        }
    }

    /// This region with operand `j` computed inline by `p`.
    fn inline(&self, j: usize, p: &Region) -> Region {
        let mut args: Vec<Id> = self
            .args
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != j)
            .map(|(_, &a)| a)
            .collect();
        let mut pos = |c: Id| match args.iter().position(|&a| a == c) {
            Some(i) => i,
            None => {
                args.push(c);
                args.len() - 1
            }
        };
        let pmap: Vec<usize> = p.args.iter().map(|&a| pos(a)).collect();
        let smap: Vec<usize> = self
            .args
            .iter()
            .enumerate()
            .map(|(i, &a)| if i == j { usize::MAX } else { pos(a) })
            .collect();
        let shift = p.nodes.len();
        let mut nodes: Vec<(Op, Vec<Src>)> = p
            .nodes
            .iter()
            .map(|(op, s)| {
                let s = s.iter().map(|&x| match x {
                    Src::Arg(i) => Src::Arg(pmap[i]),
                    n => n,
                });
                (op.clone(), s.collect())
            })
            .collect();
        let remap = |x: Src| match x {
            Src::Arg(i) if i == j => p.out,
            Src::Arg(i) => Src::Arg(smap[i]),
            Src::Node(n, o) => Src::Node(n + shift, o),
        };
        for (op, s) in &self.nodes {
            nodes.push((op.clone(), s.iter().map(|&x| remap(x)).collect()));
        }
        Region {
            args,
            nodes,
            out: remap(self.out),
        }
    }

    /// Whether one kernel can compute this region.
    fn legal(&self, lim: FusionLimits) -> bool {
        if self.nodes.len() > lim.max_ops || self.args.len() > lim.max_args {
            return false;
        }
        let anchors: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].0.fusion_class() == FusionClass::Anchor)
            .collect();
        match anchors.as_slice() {
            [] => self
                .nodes
                .iter()
                .any(|(op, _)| !matches!(op, Op::Reshape(_))),
            [a] => {
                let layout_only = matches!(
                    self.nodes[*a].0,
                    Op::MatMul(_) | Op::Conv(_) | Op::ConvTranspose(_) | Op::Attention(_)
                );
                let mut stack: Vec<Src> = self.nodes[*a].1.clone();
                while let Some(s) = stack.pop() {
                    if let Src::Node(n, _) = s {
                        let (op, srcs) = &self.nodes[n];
                        if layout_only && op.fusion_class() != FusionClass::Injective {
                            return false;
                        }
                        stack.extend(srcs);
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// The fused op and its operand classes, when the body types.
    fn to_fused(&self, eg: &EG) -> Option<(Op, Vec<Id>)> {
        let mut g = Graph::new("kernel");
        let ins: Vec<ValueId> = self
            .args
            .iter()
            .enumerate()
            .map(|(i, &a)| g.add_input(&format!("a{i}"), eg[a].data.ty.clone()))
            .collect();
        let mut outs: Vec<Vec<ValueId>> = Vec::new();
        let val = |s: Src, outs: &Vec<Vec<ValueId>>| match s {
            Src::Arg(i) => ins[i],
            Src::Node(n, o) => outs[n][o],
        };
        for (i, (op, srcs)) in self.nodes.iter().enumerate() {
            let args = srcs.iter().map(|&s| val(s, &outs)).collect();
            let name = format!("t{i}");
            outs.push(g.add_node(&name, op.clone(), args, &[&name]).ok()?);
        }
        g.outputs = vec![val(self.out, &outs)];
        Some((Op::Fused(Fused { body: Arc::new(g) }), self.args.clone()))
    }
}

/// New fused nodes for class `c`: its op nodes and its largest fused node, each
/// with the representative op of one operand class inlined. `rep` gives a class's
/// representative op node (none for inputs and constants).
pub fn grow(
    eg: &EG,
    c: Id,
    rep: &dyn Fn(Id) -> Option<ENode>,
    lim: FusionLimits,
) -> Vec<(Id, Term)> {
    let mut seeds: Vec<&ENode> = Vec::new();
    if let Some(r) = rep(c) {
        if let Some(n) = eg[c].nodes.iter().find(|n| **n == r) {
            seeds.push(n);
        }
    }
    let size = |n: &ENode| match n {
        ENode::Op(k, _) => match &*k.op {
            Op::Fused(f) => f.body.nodes.len(),
            _ => 0,
        },
        _ => 0,
    };
    if let Some(big) = eg[c]
        .nodes
        .iter()
        .filter(|n| size(n) > 0)
        .max_by_key(|n| size(n))
    {
        seeds.push(big);
    }
    let mut v = Vec::new();
    for s in seeds {
        let Some(r) = Region::of(eg, s) else { continue };
        for j in 0..r.args.len() {
            if eg[r.args[j]].data.konst.is_some() {
                // Known values stay operands (weights are folded, not recomputed).
                continue;
            }
            // The representative, and data movement (such as the slices of a
            // merged matmul) which costs little to inline wherever it is used.
            let mut producers: Vec<ENode> = rep(r.args[j]).into_iter().collect();
            for n in &eg[r.args[j]].nodes {
                if let ENode::Op(k, _) = n {
                    if k.out == 0
                        && k.op.fusion_class() == FusionClass::Injective
                        && !producers.contains(n)
                    {
                        producers.push(n.clone());
                    }
                }
            }
            for pn in producers {
                let Some(p) = Region::of(eg, &pn) else {
                    continue;
                };
                let merged = r.inline(j, &p);
                if !merged.legal(lim) {
                    continue;
                }
                if let Some((op, args)) = merged.to_fused(eg) {
                    v.push((c, Term::Node(op, 0, args.into_iter().map(class).collect())));
                }
            }
        }
    }
    v
}
