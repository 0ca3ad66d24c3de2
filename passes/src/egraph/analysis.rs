//! The e-class analysis: every class carries its tensor type and, when its value
//! is known at compile time, the constant. Ops whose operands are all constant are
//! folded (within size limits) and the class gains a constant leaf. Constants live
//! in one table, deduplicated by content, so equal weights are one e-class.

use super::lang::ENode;
use egg::{Analysis, DidMerge, EGraph, Id};
use kiln_ir::{Op, Tensor, TensorType};
use std::collections::HashMap;

/// The e-graph type of the optimizer.
pub type EG = EGraph<ENode, TensorAnalysis>;

/// Per-class facts.
#[derive(Clone, Debug)]
pub struct Data {
    /// The class's tensor type (sharding slot left empty).
    pub ty: TensorType,
    /// The value, when known at compile time.
    pub konst: Option<Tensor>,
}

/// The analysis state: input types and the constant table.
#[derive(Debug, Default)]
pub struct TensorAnalysis {
    /// Types of the graph inputs, by input index.
    pub inputs: Vec<TensorType>,
    /// Constants by index.
    pub consts: Vec<Tensor>,
    index: HashMap<u64, Vec<u32>>,
    /// Largest folded result, in elements.
    pub fold_limit: usize,
    /// The first type inconsistency seen (a rule bug); the optimizer refuses to
    /// return a graph when set.
    pub broken: Option<String>,
}

/// A fast content hash (weights are hashed once, at interning).
fn content_hash(t: &Tensor) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (t.dtype() as u64);
    for &d in t.shape() {
        h = (h ^ d as u64).wrapping_mul(0x100_0000_01b3);
    }
    let bytes = t.bytes();
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ b as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    h
}

impl TensorAnalysis {
    /// An analysis for a graph with these input types.
    pub fn new(inputs: Vec<TensorType>, fold_limit: usize) -> Self {
        TensorAnalysis {
            inputs,
            fold_limit,
            ..Default::default()
        }
    }

    /// The table index of `t`, adding it when new.
    pub fn intern(&mut self, t: &Tensor) -> u32 {
        let h = content_hash(t);
        let slot = self.index.entry(h).or_default();
        for &i in slot.iter() {
            let c = &self.consts[i as usize];
            if c.dtype() == t.dtype() && c.shape() == t.shape() && c.bytes() == t.bytes() {
                return i;
            }
        }
        let i = self.consts.len() as u32;
        self.consts.push(t.clone());
        slot.push(i);
        i
    }

    fn fold(&self, op: &Op, out: usize, args: &[&Tensor], ty: &TensorType) -> Option<Tensor> {
        if ty.numel() > self.fold_limit || matches!(op, Op::Fused(_)) {
            return None;
        }
        let tys: Vec<TensorType> = args.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        if op.def().flops(&refs, std::slice::from_ref(ty)) > 50_000_000 {
            return None;
        }
        op.def().eval(args).ok()?.into_iter().nth(out)
    }
}

/// Types an op applied to classes, or says why it does not type.
pub fn infer(eg: &EG, op: &Op, out: usize, args: &[Id]) -> Result<TensorType, String> {
    let tys: Vec<&TensorType> = args.iter().map(|&a| &eg[a].data.ty).collect();
    let mut r = op.def().infer(&tys)?;
    if out >= r.len() {
        return Err(format!("{} has no result {out}", op.mnemonic()));
    }
    Ok(r.swap_remove(out))
}

impl Analysis<ENode> for TensorAnalysis {
    type Data = Data;

    fn make(eg: &mut EG, enode: &ENode, _: Id) -> Data {
        match enode {
            ENode::Input(i) => Data {
                ty: eg.analysis.inputs[*i as usize].clone(),
                konst: None,
            },
            ENode::Const(i) => {
                let t = eg.analysis.consts[*i as usize].clone();
                Data {
                    ty: t.ty(),
                    konst: Some(t),
                }
            }
            ENode::Op(k, args) => {
                let ty = match infer(eg, &k.op, k.out, args) {
                    Ok(t) => t,
                    Err(m) => {
                        let first = eg[args[0]].data.ty.clone();
                        eg.analysis.broken.get_or_insert(format!(
                            "an e-node {} does not type: {m}",
                            k.mnemonic()
                        ));
                        first
                    }
                };
                let consts: Option<Vec<&Tensor>> =
                    args.iter().map(|&a| eg[a].data.konst.as_ref()).collect();
                let konst = consts.and_then(|c| eg.analysis.fold(&k.op, k.out, &c, &ty));
                Data { ty, konst }
            }
        }
    }

    fn merge(&mut self, a: &mut Data, b: Data) -> DidMerge {
        if a.ty.dtype != b.ty.dtype || a.ty.shape != b.ty.shape {
            self.broken.get_or_insert(format!(
                "classes of types {} and {} were merged",
                a.ty, b.ty
            ));
        }
        match (&a.konst, b.konst) {
            (None, Some(t)) => {
                a.konst = Some(t);
                DidMerge(true, false)
            }
            (Some(_), None) => DidMerge(false, true),
            _ => DidMerge(false, false),
        }
    }

    fn modify(eg: &mut EG, id: Id) {
        let Some(t) = eg[id].data.konst.clone() else {
            return;
        };
        if eg[id].nodes.iter().any(|n| matches!(n, ENode::Const(_))) {
            return;
        }
        let i = eg.analysis.intern(&t);
        let c = eg.add(ENode::Const(i));
        eg.union(id, c);
    }
}
