//! The rule sets, run in phases (see `super::RULESETS`), and the matching helpers
//! rules are written with: the op nodes of a class, constants and splat values.

pub mod algebra;
pub mod fusion;
pub mod merge;
pub mod recognize;

use super::analysis::EG;
use super::lang::ENode;
use egg::Id;
use kiln_ir::{Op, Tensor};

/// Op nodes naming result 0 in class `c`, with their operands.
pub fn ops(eg: &EG, c: Id) -> impl Iterator<Item = (&Op, &[Id])> {
    eg[c].nodes.iter().filter_map(|n| match n {
        ENode::Op(k, args) if k.out == 0 => Some((&*k.op, args.as_slice())),
        _ => None,
    })
}

/// Operands of the nodes in class `c` whose mnemonic is `m`.
pub fn with<'a>(eg: &'a EG, c: Id, m: &'static str) -> impl Iterator<Item = (&'a Op, &'a [Id])> {
    ops(eg, c).filter(move |(op, _)| op.mnemonic() == m)
}

/// Operand pairs of binary nodes `m` in class `c`, both orders when `m` commutes.
pub fn pairs(eg: &EG, c: Id, m: &'static str) -> Vec<(Id, Id)> {
    let commutes = matches!(m, "add" | "mul" | "max" | "min" | "eq" | "and" | "or");
    let mut v = Vec::new();
    for (_, a) in with(eg, c, m) {
        v.push((a[0], a[1]));
        if commutes && a[0] != a[1] {
            v.push((a[1], a[0]));
        }
    }
    v
}

/// The class's constant value.
pub fn konst(eg: &EG, c: Id) -> Option<&Tensor> {
    eg[c].data.konst.as_ref()
}

/// The value of a float constant whose elements are all equal.
pub fn splat(eg: &EG, c: Id) -> Option<f64> {
    let t = konst(eg, c)?;
    if !t.dtype().is_float() || t.numel() == 0 || t.numel() > 1 << 16 {
        return None;
    }
    let v = t.to_f64_vec();
    v.iter().all(|&x| x == v[0]).then_some(v[0])
}

/// True when `c` is a float splat within relative `tol` of `want`.
pub fn is_splat(eg: &EG, c: Id, want: f64, tol: f64) -> bool {
    splat(eg, c).is_some_and(|v| (v - want).abs() <= tol * want.abs().max(1e-30))
}

/// `x` for each node `m(x, k)` in class `c` (either order when `m` commutes) with
/// `k` a splat equal to `want`.
pub fn by_const(eg: &EG, c: Id, m: &'static str, want: f64, tol: f64) -> Vec<Id> {
    pairs(eg, c, m)
        .into_iter()
        .filter(|&(_, k)| is_splat(eg, k, want, tol))
        .map(|(x, _)| x)
        .collect()
}

/// True when classes `a` and `b` are the same class.
pub fn same(eg: &EG, a: Id, b: Id) -> bool {
    eg.find(a) == eg.find(b)
}
