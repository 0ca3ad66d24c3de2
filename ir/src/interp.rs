//! The reference interpreter: runs a graph node by node through each op's `eval`.
//! It is the oracle every pass and backend is tested against: simple, obviously
//! correct, accumulating in f64, and slow is fine. Intermediate tensors are dropped
//! after their last use so whole models fit in memory.

use crate::{Graph, IrError, Tensor, ValueDef};
use std::collections::HashMap;

/// Runs `graph` on named inputs and returns its outputs in order.
pub fn run(graph: &Graph, inputs: &HashMap<String, Tensor>) -> Result<Vec<Tensor>, IrError> {
    let mut slots: Vec<Option<Tensor>> = vec![None; graph.values.len()];
    for &id in &graph.inputs {
        let v = graph.value(id);
        let t = inputs
            .get(&v.name)
            .ok_or_else(|| IrError::Eval(format!("input '{}' ({}) was not given", v.name, v.ty)))?;
        if t.dtype() != v.ty.dtype || t.shape() != v.ty.shape {
            return Err(IrError::Eval(format!(
                "input '{}' must be {}, got {}",
                v.name,
                v.ty,
                t.ty()
            )));
        }
        slots[id.0 as usize] = Some(t.clone());
    }
    for name in inputs.keys() {
        if !graph.inputs.iter().any(|&i| graph.value(i).name == *name) {
            return Err(IrError::Eval(format!(
                "'{name}' is not an input of the graph"
            )));
        }
    }
    for (id, t) in graph.constants() {
        slots[id.0 as usize] = Some(t.clone());
    }
    let mut uses = graph.use_counts();
    for node in &graph.nodes {
        let args: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|&v| {
                slots[v.0 as usize]
                    .as_ref()
                    .expect("verified graphs define before use")
            })
            .collect();
        let results = node.op.def().eval(&args).map_err(|m| {
            IrError::Eval(format!(
                "node '{}' ({}): {m}",
                node.name,
                node.op.mnemonic()
            ))
        })?;
        for (&o, t) in node.outputs.iter().zip(results) {
            let want = &graph.value(o).ty;
            if t.dtype() != want.dtype || t.shape() != want.shape {
                return Err(IrError::Eval(format!(
                    "node '{}' ({}) produced {} where its type says {want}",
                    node.name,
                    node.op.mnemonic(),
                    t.ty()
                )));
            }
            slots[o.0 as usize] = Some(t);
        }
        for &v in &node.inputs {
            let u = &mut uses[v.0 as usize];
            *u -= 1;
            if *u == 0 && !matches!(graph.value(v).def, ValueDef::Const(_)) {
                slots[v.0 as usize] = None;
            }
        }
        for &o in &node.outputs {
            if uses[o.0 as usize] == 0 {
                slots[o.0 as usize] = None;
            }
        }
    }
    graph
        .outputs
        .iter()
        .map(|&o| {
            slots[o.0 as usize].clone().ok_or_else(|| {
                IrError::Eval(format!("output '{}' was not computed", graph.value(o).name))
            })
        })
        .collect()
}
