//! Multi-pattern rules (run for one round, as Tensat limits them): matmuls that
//! share their input and have constant weights merge into one matmul over the
//! concatenated weights, each original result a slice of the merged one (Q/K/V
//! projections, gate/up projections). The cost model decides whether it pays.

use super::{konst, ops};
use crate::egraph::analysis::EG;
use crate::egraph::term::{class, node, Rule, Term};
use egg::Id;
use kiln_ir::op::{Concat, MatMul, Slice};
use kiln_ir::Op;

/// The multi-pattern rule set.
pub const RULES: &[Rule] = &[Rule {
    name: "merge-shared-matmuls",
    search: merge_shared_matmuls,
}];

/// For an input class `x`: every `matmul(x, W_i)` with constant `[K, N_i]` weights
/// becomes `slice(matmul(x, concat(W_1..W_n)), N-range i)`.
fn merge_shared_matmuls(eg: &EG, x: Id) -> Vec<(Id, Term)> {
    let mut users: Vec<Id> = eg[x].parents().map(|p| eg.find(p)).collect();
    users.sort();
    users.dedup();
    let mut found: Vec<(Id, Id, usize)> = Vec::new();
    for p in users {
        for (op, a) in ops(eg, p) {
            let plain = matches!(
                op,
                Op::MatMul(MatMul {
                    trans_a: false,
                    trans_b: false
                })
            );
            if !plain || eg.find(a[0]) != eg.find(x) || a[0] == a[1] {
                continue;
            }
            let Some(w) = konst(eg, a[1]) else { continue };
            if w.shape().len() == 2 && !found.iter().any(|f| f.0 == p) {
                found.push((p, a[1], w.shape()[1]));
                break;
            }
        }
    }
    if found.len() < 2 {
        return vec![];
    }
    let rank = eg[x].data.ty.rank();
    let merged = node(
        MatMul::default(),
        vec![
            class(x),
            node(
                Concat { axis: 1 },
                found.iter().map(|f| class(f.1)).collect(),
            ),
        ],
    );
    let mut out_shape = eg[found[0].0].data.ty.shape.clone();
    let mut off = 0;
    let mut v = Vec::new();
    for &(p, _, n) in &found {
        out_shape[rank - 1] = off + n;
        let mut starts = vec![0i64; rank];
        starts[rank - 1] = off as i64;
        let slice = Slice {
            starts,
            ends: out_shape.iter().map(|&d| d as i64).collect(),
            steps: vec![1; rank],
        };
        v.push((p, node(slice, vec![merged.clone()])));
        off += n;
    }
    v
}
