//! Algebra and layout rules: identities, constants (reciprocals, reassociation,
//! scales folded into weights), transposes and reshapes cancelled or absorbed into
//! matmul operand flags, inference batch norm folded into the preceding conv's
//! weights or turned into a per-channel affine map.

use super::{by_const, konst, pairs, same, splat, with};
use crate::egraph::analysis::EG;
use crate::egraph::term::{class, node, Rule, Term};
use egg::Id;
use kiln_ir::op::{Binary, BinaryKind, Conv, Reshape, Transpose};
use kiln_ir::{Op, Tensor};

/// The algebra and layout rule set.
pub const RULES: &[Rule] = &[
    Rule {
        name: "mul-one",
        search: mul_one,
    },
    Rule {
        name: "add-zero",
        search: add_zero,
    },
    Rule {
        name: "div-one",
        search: div_one,
    },
    Rule {
        name: "div-const-to-mul",
        search: div_const_to_mul,
    },
    Rule {
        name: "neg-neg",
        search: neg_neg,
    },
    Rule {
        name: "sub-self-int",
        search: sub_self_int,
    },
    Rule {
        name: "mul-const-assoc",
        search: mul_const_assoc,
    },
    Rule {
        name: "transpose-transpose",
        search: transpose_transpose,
    },
    Rule {
        name: "layout-identity",
        search: layout_identity,
    },
    Rule {
        name: "reshape-reshape",
        search: reshape_reshape,
    },
    Rule {
        name: "matmul-absorb-transpose",
        search: matmul_absorb_transpose,
    },
    Rule {
        name: "scale-into-weights",
        search: scale_into_weights,
    },
    Rule {
        name: "scalar-through-matmul",
        search: scalar_through_matmul,
    },
    Rule {
        name: "batchnorm-into-conv",
        search: batchnorm_into_conv,
    },
    Rule {
        name: "batchnorm-to-affine",
        search: batchnorm_to_affine,
    },
];

fn bin(kind: BinaryKind) -> Binary {
    Binary { kind }
}

/// `x` where class `x` has the type of class `c` (so replacing `c` by it is legal).
fn same_type(eg: &EG, c: Id, x: Id) -> bool {
    let (a, b) = (&eg[c].data.ty, &eg[x].data.ty);
    a.dtype == b.dtype && a.shape == b.shape
}

fn identity_of(eg: &EG, c: Id, m: &'static str, unit: f64) -> Vec<(Id, Term)> {
    by_const(eg, c, m, unit, 0.0)
        .into_iter()
        .filter(|&x| same_type(eg, c, x))
        .map(|x| (c, class(x)))
        .collect()
}

fn mul_one(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    identity_of(eg, c, "mul", 1.0)
}

fn add_zero(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let mut v = identity_of(eg, c, "add", 0.0);
    for (x, k) in pairs(eg, c, "sub") {
        if splat(eg, k) == Some(0.0) && same_type(eg, c, x) {
            v.push((c, class(x)));
        }
    }
    v
}

fn div_one(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    pairs(eg, c, "div")
        .into_iter()
        .filter(|&(x, k)| splat(eg, k) == Some(1.0) && same_type(eg, c, x))
        .map(|(x, _)| (c, class(x)))
        .collect()
}

/// `x / k` → `x * (1/k)` for a float constant `k` with finite nonzero elements.
fn div_const_to_mul(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let mut v = Vec::new();
    for (x, k) in pairs(eg, c, "div") {
        let Some(t) = konst(eg, k) else { continue };
        if konst(eg, x).is_some() || !t.dtype().is_float() || t.numel() > 1 << 16 {
            continue;
        }
        let vals = t.to_f64_vec();
        if vals.iter().any(|&e| e == 0.0 || !e.is_finite()) {
            continue;
        }
        let r: Vec<f64> = vals.iter().map(|e| 1.0 / e).collect();
        let rt = Tensor::from_f64(t.dtype(), t.shape().to_vec(), &r);
        v.push((
            c,
            node(bin(BinaryKind::Mul), vec![class(x), Term::Const(rt)]),
        ));
    }
    v
}

fn neg_neg(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let negs = |id: Id| with(eg, id, "neg").map(|(_, a)| a[0]).collect::<Vec<Id>>();
    negs(c)
        .into_iter()
        .flat_map(|y| negs(y).into_iter().map(move |x| (c, class(x))))
        .collect()
}

/// `x - x` → zeros, for integers only (with floats, inf - inf is NaN).
fn sub_self_int(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let ty = &eg[c].data.ty;
    if !ty.dtype.is_int() || ty.numel() > eg.analysis.fold_limit {
        return vec![];
    }
    pairs(eg, c, "sub")
        .into_iter()
        .filter(|&(a, b)| same(eg, a, b))
        .map(|_| {
            let z = Tensor::from_i64(ty.dtype, ty.shape.clone(), &vec![0; ty.numel()]);
            (c, Term::Const(z))
        })
        .take(1)
        .collect()
}

/// `(x * k1) * k2` → `x * (k1 * k2)` for constants `k1`, `k2` (folded).
fn mul_const_assoc(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let mut v = Vec::new();
    for (y, k2) in pairs(eg, c, "mul") {
        if konst(eg, k2).is_none() || konst(eg, y).is_some() {
            continue;
        }
        for (x, k1) in pairs(eg, y, "mul") {
            if konst(eg, k1).is_some() && konst(eg, x).is_none() {
                let k = node(bin(BinaryKind::Mul), vec![class(k1), class(k2)]);
                v.push((c, node(bin(BinaryKind::Mul), vec![class(x), k])));
            }
        }
    }
    v
}

fn perm_of(op: &Op) -> Option<&[usize]> {
    match op {
        Op::Transpose(t) => Some(&t.perm),
        _ => None,
    }
}

fn is_identity(p: &[usize]) -> bool {
    p.iter().enumerate().all(|(i, &q)| i == q)
}

fn transpose_transpose(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let mut v = Vec::new();
    for (op, a) in with(eg, c, "transpose") {
        let p2 = perm_of(op).expect("transpose");
        for (op1, a1) in with(eg, a[0], "transpose") {
            let p1 = perm_of(op1).expect("transpose");
            let q: Vec<usize> = p2.iter().map(|&i| p1[i]).collect();
            let t = if is_identity(&q) {
                class(a1[0])
            } else {
                node(Transpose { perm: q }, vec![class(a1[0])])
            };
            v.push((c, t));
        }
    }
    v
}

fn layout_identity(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    super::ops(eg, c)
        .filter(|(op, a)| match op {
            Op::Transpose(t) => is_identity(&t.perm),
            Op::Reshape(_) | Op::Expand(_) => same_type(eg, c, a[0]),
            _ => false,
        })
        .map(|(_, a)| (c, class(a[0])))
        .collect()
}

fn reshape_reshape(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let shape = eg[c].data.ty.shape.clone();
    let mut v = Vec::new();
    for (_, a) in with(eg, c, "reshape") {
        for (_, a1) in with(eg, a[0], "reshape") {
            v.push((
                c,
                node(
                    Reshape {
                        shape: shape.clone(),
                    },
                    vec![class(a1[0])],
                ),
            ));
        }
    }
    v
}

/// True for a perm that swaps the last two dims only.
fn swaps_last_two(p: &[usize]) -> bool {
    let r = p.len();
    r >= 2 && p[r - 2] == r - 1 && p[r - 1] == r - 2 && is_identity(&p[..r - 2])
}

fn matmul_absorb_transpose(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let mut v = Vec::new();
    for (op, a) in with(eg, c, "matmul") {
        let Op::MatMul(m) = op else { continue };
        for side in 0..2 {
            for (top, ta) in with(eg, a[side], "transpose") {
                if !perm_of(top).is_some_and(swaps_last_two) {
                    continue;
                }
                let mut m2 = m.clone();
                let mut args = vec![class(a[0]), class(a[1])];
                args[side] = class(ta[0]);
                if side == 0 {
                    m2.trans_a = !m2.trans_a;
                } else {
                    m2.trans_b = !m2.trans_b;
                }
                v.push((c, node(m2, args)));
            }
        }
    }
    v
}

/// The per-column scale of a constant `k` multiplying a result `[.., N]`: `k`
/// must vary along the last dim at most. Returns `k` as a `[N]` or `[1]` tensor.
fn column_scale(k: &Tensor, n: usize, out_rank: usize) -> Option<Tensor> {
    let s = k.shape();
    if s.len() > out_rank || s.iter().rev().skip(1).any(|&d| d != 1) {
        return None;
    }
    let last = s.last().copied().unwrap_or(1);
    if last != n && last != 1 {
        return None;
    }
    Some(k.reshaped(vec![last]))
}

/// `matmul(x, W) * k` → `matmul(x, W * k)` for constant `W` and a per-column `k`.
fn scale_into_weights(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let mut v = Vec::new();
    let out = &eg[c].data.ty;
    for (y, k) in pairs(eg, c, "mul") {
        let Some(kt) = konst(eg, k) else { continue };
        for (op, a) in with(eg, y, "matmul") {
            let Op::MatMul(m) = op else { continue };
            if m.trans_b || konst(eg, a[1]).is_none() || eg[a[1]].data.ty.rank() < 2 {
                continue;
            }
            let n = *out.shape.last().unwrap_or(&1);
            let Some(col) = column_scale(kt, n, out.rank()) else {
                continue;
            };
            let w = node(bin(BinaryKind::Mul), vec![class(a[1]), Term::Const(col)]);
            v.push((c, node(m.clone(), vec![class(a[0]), w])));
        }
    }
    v
}

/// `matmul(a, b) * s` → `matmul(a * s, b)` and `matmul(a, b * s)` for a scalar `s`.
fn scalar_through_matmul(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let mut v = Vec::new();
    for (y, s) in pairs(eg, c, "mul") {
        if splat(eg, s).is_none() || eg[s].data.ty.numel() != 1 {
            continue;
        }
        for (op, a) in with(eg, y, "matmul") {
            for side in 0..2 {
                let mut args = vec![class(a[0]), class(a[1])];
                args[side] = node(bin(BinaryKind::Mul), vec![class(a[side]), class(s)]);
                v.push((c, node(op.clone(), args)));
            }
        }
    }
    v
}

/// The batch norm's per-channel factor `scale / sqrt(var + eps)` and shift
/// `bias - mean * factor`, when all its parameters are constants.
fn bn_affine(eg: &EG, eps: f64, p: &[Id]) -> Option<(Vec<f64>, Vec<f64>)> {
    let v: Option<Vec<Vec<f64>>> = p
        .iter()
        .map(|&i| konst(eg, i).map(|t| t.to_f64_vec()))
        .collect();
    let v = v?;
    let (s, b, m, var) = (&v[0], &v[1], &v[2], &v[3]);
    let f: Vec<f64> = s
        .iter()
        .zip(var)
        .map(|(s, v)| s / (v + eps).sqrt())
        .collect();
    let g: Vec<f64> = b
        .iter()
        .zip(m)
        .zip(&f)
        .map(|((b, m), f)| b - m * f)
        .collect();
    Some((f, g))
}

fn channel_shape(c: usize, rank: usize) -> Vec<usize> {
    let mut s = vec![1; rank - 1];
    s[0] = c;
    s
}

/// `batch_norm(conv(x, w, b?))` with constant parameters → `conv(x, w * f, b * f + g)`.
fn batchnorm_into_conv(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let mut v = Vec::new();
    for (op, a) in with(eg, c, "batch_norm") {
        let Op::BatchNorm(bn) = op else { continue };
        let Some((f, g)) = bn_affine(eg, bn.epsilon, &a[1..]) else {
            continue;
        };
        for (cop, ca) in with(eg, a[0], "conv") {
            let Some(w) = konst(eg, ca[1]) else { continue };
            let bias = match ca.get(2) {
                Some(&b) => match konst(eg, b) {
                    Some(t) => t.to_f64_vec(),
                    None => continue,
                },
                None => vec![0.0; f.len()],
            };
            let per = w.numel() / f.len().max(1);
            let wv: Vec<f64> = w
                .to_f64_vec()
                .iter()
                .enumerate()
                .map(|(i, x)| x * f[i / per])
                .collect();
            let bv: Vec<f64> = bias
                .iter()
                .zip(&f)
                .zip(&g)
                .map(|((b, f), g)| b * f + g)
                .collect();
            let dt = w.dtype();
            let conv: &Conv = match cop {
                Op::Conv(cv) => cv,
                _ => continue,
            };
            v.push((
                c,
                node(
                    conv.clone(),
                    vec![
                        class(ca[0]),
                        Term::Const(Tensor::from_f64(dt, w.shape().to_vec(), &wv)),
                        Term::Const(Tensor::from_f64(dt, vec![bv.len()], &bv)),
                    ],
                ),
            ));
        }
    }
    v
}

/// `batch_norm(x)` with constant parameters → `x * f + g` (per channel).
fn batchnorm_to_affine(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let mut v = Vec::new();
    let ty = &eg[c].data.ty;
    for (op, a) in with(eg, c, "batch_norm") {
        let Op::BatchNorm(bn) = op else { continue };
        let Some((f, g)) = bn_affine(eg, bn.epsilon, &a[1..]) else {
            continue;
        };
        let shape = channel_shape(f.len(), ty.rank());
        let ft = Tensor::from_f64(ty.dtype, shape.clone(), &f);
        let gt = Tensor::from_f64(ty.dtype, shape, &g);
        let scaled = node(bin(BinaryKind::Mul), vec![class(a[0]), Term::Const(ft)]);
        v.push((c, node(bin(BinaryKind::Add), vec![scaled, Term::Const(gt)])));
    }
    v
}
