//! The e-graph optimizer. The graph goes into an e-graph; staged rule sets run by
//! equality saturation under node, iteration and time limits; fusion then adds
//! fused-kernel nodes for legal regions; the target's cost model picks the
//! cheapest program by DAG-aware extraction, kernel boundaries included.
//!
//! The pipeline, in order:
//! 1. `algebra`: identities, constants, layout, batch-norm folding.
//! 2. `recognize`: algebra plus composite recognition (GELU, norms, softmax,
//!    attention).
//! 3. `merge`: multi-pattern matmul merging, one round.
//! 4. `cleanup`: algebra and recognition again over the merged forms.
//! 5. `fusion`: fused kernels grown one op per iteration.
//! 6. extraction by the target's roofline cost.

pub mod analysis;
pub mod convert;
pub mod extract;
pub mod instances;
pub mod lang;
pub mod rules;
pub mod term;

use crate::cost;
use analysis::EG;
use egg::{Id, Language};
use kiln_ir::{Graph, IrError, Op, Target, TensorType};
use lang::ENode;
use rules::fusion::FusionLimits;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use term::{add_term, Provenance, Rule, Term};

/// Limits of the optimizer.
#[derive(Clone, Debug)]
pub struct Options {
    /// Stop a phase when the e-graph has this many e-nodes.
    pub node_limit: usize,
    /// Most iterations of a saturation phase.
    pub iter_limit: usize,
    /// Time for all phases together.
    pub time_limit: Duration,
    /// Time for extraction's local search.
    pub extract_time: Duration,
    /// Largest constant folded at compile time, in elements.
    pub fold_limit: usize,
    /// Matches of one rule in one iteration above which the rule sits out the
    /// next two iterations (backoff).
    pub match_limit: usize,
    /// Size limits of fused kernels.
    pub fusion: FusionLimits,
    /// Iterations of fusion growth.
    pub fusion_iters: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            node_limit: 50_000,
            iter_limit: 8,
            time_limit: Duration::from_secs(10),
            extract_time: Duration::from_secs(2),
            fold_limit: 1 << 24,
            match_limit: 5_000,
            fusion: FusionLimits {
                max_ops: 24,
                max_args: 8,
            },
            fusion_iters: 16,
        }
    }
}

/// What one phase did.
#[derive(Clone, Debug)]
pub struct PhaseReport {
    pub name: &'static str,
    pub iterations: usize,
    pub nodes: usize,
    pub classes: usize,
    pub stop: &'static str,
    pub ms: f64,
}

/// The optimized graph with what happened.
#[derive(Clone, Debug)]
pub struct Optimized {
    pub graph: Graph,
    pub phases: Vec<PhaseReport>,
    /// How many times each rule added something.
    pub rule_counts: BTreeMap<&'static str, usize>,
    /// For each node of the optimized graph (by its first result's name), the
    /// rule that made it; absent for nodes as the model wrote them.
    pub origin: BTreeMap<String, &'static str>,
}

/// Why optimization failed (a bug in a rule, caught before any output).
#[derive(Debug, thiserror::Error)]
pub enum OptError {
    #[error("optimizer invariant broken: {0}")]
    Broken(String),
    #[error(transparent)]
    Ir(#[from] IrError),
}

const ALGEBRA: &[&[Rule]] = &[rules::algebra::RULES];
const RECOGNIZE: &[&[Rule]] = &[rules::algebra::RULES, rules::recognize::RULES];
const MERGE: &[&[Rule]] = &[rules::merge::RULES];

/// A rule's find: the rule, the class, and the term equal to it.
type Found = (&'static str, Id, Term);

struct Run<'a> {
    eg: EG,
    opts: &'a Options,
    start: Instant,
    prov: Provenance,
    counts: BTreeMap<&'static str, usize>,
    phases: Vec<PhaseReport>,
}

impl Run<'_> {
    fn classes(&self) -> Vec<Id> {
        let mut ids: Vec<Id> = self.eg.classes().map(|c| c.id).collect();
        ids.sort();
        ids
    }

    /// Adds the found terms; true when the e-graph changed.
    fn apply(&mut self, found: Vec<Found>) -> Result<bool, OptError> {
        let before = self.eg.total_size();
        let mut changed = false;
        for (rule, c, t) in found {
            if let Ok(id) = add_term(&mut self.eg, &t, rule, &mut self.prov) {
                if self.eg.union(c, id) {
                    changed = true;
                    *self.counts.entry(rule).or_default() += 1;
                }
            }
        }
        self.eg.rebuild();
        if let Some(m) = &self.eg.analysis.broken {
            return Err(OptError::Broken(m.clone()));
        }
        Ok(changed || self.eg.total_size() != before)
    }

    fn stop_reason(&self) -> Option<&'static str> {
        if self.eg.total_size() > self.opts.node_limit {
            Some("node limit")
        } else if self.start.elapsed() > self.opts.time_limit {
            Some("time limit")
        } else {
            None
        }
    }

    fn report(&mut self, name: &'static str, iterations: usize, stop: &'static str, t0: Instant) {
        self.phases.push(PhaseReport {
            name,
            iterations,
            nodes: self.eg.total_size(),
            classes: self.eg.number_of_classes(),
            stop,
            ms: t0.elapsed().as_secs_f64() * 1e3,
        });
    }

    /// Runs `step` (which finds what to add) and applies its finds until nothing
    /// changes or a limit is reached.
    fn phase(
        &mut self,
        name: &'static str,
        iters: usize,
        mut step: impl FnMut(&Self, usize) -> Vec<Found>,
    ) -> Result<(), OptError> {
        let t0 = Instant::now();
        let mut stop = "iteration limit";
        let mut it = 0;
        while it < iters {
            it += 1;
            let found = step(self, it);
            if !self.apply(found)? {
                stop = "saturated";
                break;
            }
            if let Some(r) = self.stop_reason() {
                stop = r;
                break;
            }
        }
        self.report(name, it, stop, t0);
        Ok(())
    }

    fn saturate(
        &mut self,
        name: &'static str,
        sets: &[&[Rule]],
        iters: usize,
    ) -> Result<(), OptError> {
        let mut banned: HashMap<&'static str, usize> = HashMap::new();
        self.phase(name, iters, |run, it| {
            let mut found = Vec::new();
            for rule in sets.iter().flat_map(|s| s.iter()) {
                if banned.get(rule.name).is_some_and(|&until| it <= until) {
                    continue;
                }
                let mut mine = Vec::new();
                for c in run.classes() {
                    mine.extend(
                        (rule.search)(&run.eg, c)
                            .into_iter()
                            .map(|(id, t)| (rule.name, id, t)),
                    );
                }
                if mine.len() > run.opts.match_limit {
                    banned.insert(rule.name, it + 2);
                    continue;
                }
                found.extend(mine);
            }
            found
        })
    }

    fn fuse(&mut self, target: &Target) -> Result<(), OptError> {
        self.phase("fusion", self.opts.fusion_iters, |run, _| {
            let eg = &run.eg;
            let plain = |c: Id, i: usize| match &eg[c].nodes[i] {
                ENode::Op(k, _) if matches!(&*k.op, Op::Fused(_)) => f64::INFINITY,
                _ => node_cost(eg, target, c, i),
            };
            let reps = extract::greedy(eg, &plain);
            let rep = |c: Id| -> Option<ENode> {
                let c = eg.find(c);
                let n = &eg[c].nodes[*reps.get(&c)?];
                matches!(n, ENode::Op(..)).then(|| n.clone())
            };
            let mut found = Vec::new();
            for c in run.classes() {
                let grown = rules::fusion::grow(eg, c, &rep, run.opts.fusion);
                found.extend(grown.into_iter().map(|(id, t)| ("fuse", id, t)));
            }
            found
        })
    }
}

/// The roofline time of e-node `i` of class `c` as its own kernel.
pub fn node_cost(eg: &EG, target: &Target, c: Id, i: usize) -> f64 {
    let ENode::Op(k, args) = &eg[c].nodes[i] else {
        return 0.0;
    };
    let ins: Vec<&TensorType> = args.iter().map(|&a| &eg[a].data.ty).collect();
    let Ok(outs) = k.op.def().infer(&ins) else {
        return f64::INFINITY;
    };
    let mut distinct: Vec<Id> = args.iter().map(|&a| eg.find(a)).collect();
    distinct.sort();
    distinct.dedup();
    let bytes_in = distinct.iter().map(|&a| eg[a].data.ty.bytes() as u64).sum();
    let (_, _, t) = cost::kernel(target, &k.op, &ins, bytes_in, &outs);
    // A hair per node prefers fewer nodes among equal times (views included).
    t + 1e-12
}

/// Optimizes a verified graph for a target.
pub fn optimize(g: &Graph, target: &Target, opts: &Options) -> Result<Optimized, OptError> {
    g.verify()?;
    let loaded = convert::load(g, opts.fold_limit);
    let mut run = Run {
        eg: loaded.eg,
        opts,
        start: Instant::now(),
        prov: Vec::new(),
        counts: BTreeMap::new(),
        phases: Vec::new(),
    };
    run.saturate("algebra", ALGEBRA, opts.iter_limit)?;
    run.saturate("recognize", RECOGNIZE, opts.iter_limit)?;
    run.saturate("merge", MERGE, 1)?;
    run.saturate("cleanup", RECOGNIZE, opts.iter_limit)?;
    run.fuse(target)?;
    let eg = &run.eg;
    let roots: Vec<Id> = loaded.roots.iter().map(|&r| eg.find(r)).collect();
    let t0 = Instant::now();
    let cost = |c: Id, i: usize| node_cost(eg, target, c, i);
    let start = extract::greedy(eg, &cost);
    let choice = extract::improve(eg, start, &roots, &cost, Instant::now() + opts.extract_time);
    let extracted_ms = t0.elapsed().as_secs_f64() * 1e3;
    let loaded = convert::Loaded {
        eg: run.eg,
        class_of: loaded.class_of,
        roots,
    };
    let (graph, node_classes) = convert::emit(g, &loaded, &choice)?;
    let eg = &loaded.eg;
    let mut made_by: HashMap<ENode, &'static str> = HashMap::new();
    for (n, r) in &run.prov {
        made_by
            .entry(n.clone().map_children(|k| eg.find(k)))
            .or_insert(r);
    }
    let mut origin = BTreeMap::new();
    for (n, c) in graph.nodes.iter().zip(&node_classes) {
        let Some(c) = c else { continue };
        if let Some(r) = made_by.get(&eg[*c].nodes[choice[c]]) {
            origin.insert(graph.value(n.outputs[0]).name.clone(), *r);
        }
    }
    let mut phases = run.phases;
    phases.push(PhaseReport {
        name: "extract",
        iterations: 1,
        nodes: eg.total_size(),
        classes: eg.number_of_classes(),
        stop: "done",
        ms: extracted_ms,
    });
    Ok(Optimized {
        graph,
        phases,
        rule_counts: run.counts,
        origin,
    })
}
