//! Recognition of composite ops written out in primitives, which backends
//! implement better as one op: GELU (erf and tanh forms), SiLU, HardSwish,
//! softmax, layer norm, RMS norm, and scaled-dot-product attention (with the
//! causal flag when the mask is a causal one).

use super::{by_const, konst, pairs, same, splat, with};
use crate::egraph::analysis::EG;
use crate::egraph::term::{class, node, Rule, Term};
use egg::Id;
use kiln_ir::op::{Attention, LayerNorm, RmsNorm, Softmax, Transpose, Unary, UnaryKind};
use kiln_ir::{DType, Op, Tensor};

/// The recognition rule set.
pub const RULES: &[Rule] = &[
    Rule {
        name: "gelu",
        search: gelu,
    },
    Rule {
        name: "silu",
        search: silu,
    },
    Rule {
        name: "hard-swish",
        search: hard_swish,
    },
    Rule {
        name: "softmax",
        search: softmax,
    },
    Rule {
        name: "layer-norm",
        search: layer_norm,
    },
    Rule {
        name: "rms-norm",
        search: rms_norm,
    },
    Rule {
        name: "attention",
        search: attention,
    },
];

const TOL: f64 = 1e-4;

fn unary(kind: UnaryKind) -> Unary {
    Unary { kind }
}

/// Operands `x` of unary nodes `m` in class `c`.
fn arg_of(eg: &EG, c: Id, m: &'static str) -> Vec<Id> {
    with(eg, c, m).map(|(_, a)| a[0]).collect()
}

/// When `b` is `1 + erf(x/√2)` (→ false) or `1 + tanh(√(2/π)(x + 0.044715x³))`
/// (→ true).
fn gelu_tail(eg: &EG, b: Id, x: Id) -> Option<bool> {
    for e in by_const(eg, b, "add", 1.0, 0.0) {
        for u in arg_of(eg, e, "erf") {
            let scaled = by_const(eg, u, "mul", std::f64::consts::FRAC_1_SQRT_2, TOL);
            let divided = by_const(eg, u, "div", std::f64::consts::SQRT_2, TOL);
            if scaled.iter().chain(&divided).any(|&y| same(eg, y, x)) {
                return Some(false);
            }
        }
        for u in arg_of(eg, e, "tanh") {
            for w in by_const(eg, u, "mul", (2.0 / std::f64::consts::PI).sqrt(), TOL) {
                for (x1, z) in pairs(eg, w, "add") {
                    if !same(eg, x1, x) {
                        continue;
                    }
                    for p in by_const(eg, z, "mul", 0.044715, TOL) {
                        if by_const(eg, p, "pow", 3.0, 0.0)
                            .iter()
                            .any(|&y| same(eg, y, x))
                        {
                            return Some(true);
                        }
                    }
                }
            }
        }
    }
    None
}

/// `0.5x · tail`, `(x · tail) · 0.5` and `x · (0.5 · tail)` with a GELU tail.
fn gelu(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let mut found = Vec::new();
    for (p, q) in pairs(eg, c, "mul") {
        for x in by_const(eg, p, "mul", 0.5, 0.0) {
            found.extend(gelu_tail(eg, q, x).map(|t| (x, t)));
        }
        if splat(eg, q) == Some(0.5) {
            for (x, r) in pairs(eg, p, "mul") {
                found.extend(gelu_tail(eg, r, x).map(|t| (x, t)));
            }
        }
        for r in by_const(eg, q, "mul", 0.5, 0.0) {
            found.extend(gelu_tail(eg, r, p).map(|t| (p, t)));
        }
    }
    found
        .into_iter()
        .map(|(x, tanh)| (c, node(unary(UnaryKind::Gelu { tanh }), vec![class(x)])))
        .collect()
}

fn silu(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    pairs(eg, c, "mul")
        .into_iter()
        .filter(|&(x, s)| arg_of(eg, s, "sigmoid").iter().any(|&y| same(eg, x, y)))
        .map(|(x, _)| (c, node(unary(UnaryKind::Silu), vec![class(x)])))
        .collect()
}

fn hard_swish(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let mut v = Vec::new();
    for (x, s) in pairs(eg, c, "mul") {
        for (op, a) in with(eg, s, "hard_sigmoid") {
            let Op::Unary(Unary {
                kind: UnaryKind::HardSigmoid { alpha, beta },
            }) = op
            else {
                continue;
            };
            if same(eg, a[0], x) && (alpha - 1.0 / 6.0).abs() < 1e-6 && (beta - 0.5).abs() < 1e-9 {
                v.push((c, node(unary(UnaryKind::HardSwish), vec![class(x)])));
            }
        }
    }
    v
}

/// Operands of `reduce_<kind>` nodes in class `c` over exactly `axes`, keeping dims.
fn reduced(eg: &EG, c: Id, m: &'static str) -> Vec<(Id, Vec<usize>)> {
    with(eg, c, m)
        .filter_map(|(op, a)| match op {
            Op::Reduce(r) if r.keepdims => Some((a[0], r.axes.clone())),
            _ => None,
        })
        .collect()
}

/// `exp(x - max(x)) / sum(..)` or `exp(x) / sum(exp(x))` over one axis.
fn softmax(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let mut v = Vec::new();
    for (e, s) in pairs(eg, c, "div") {
        for (e2, axes) in reduced(eg, s, "reduce_sum") {
            if !same(eg, e, e2) || axes.len() != 1 {
                continue;
            }
            let axis = axes[0];
            for d in arg_of(eg, e, "exp") {
                v.push((c, node(Softmax { axis, log: false }, vec![class(d)])));
                for (x, m) in pairs(eg, d, "sub") {
                    if reduced(eg, m, "reduce_max")
                        .iter()
                        .any(|(x2, a)| same(eg, *x2, x) && *a == axes)
                    {
                        v.push((c, node(Softmax { axis, log: false }, vec![class(x)])));
                    }
                }
            }
        }
    }
    v
}

/// Axes `axis..rank` as a list, when `axes` is exactly that (the trailing dims).
fn trailing(axes: &[usize], rank: usize) -> Option<usize> {
    let first = *axes.first()?;
    (axes.iter().enumerate().all(|(i, &a)| a == first + i) && first + axes.len() == rank)
        .then_some(first)
}

/// `mean` of `d²` (as `d·d` or `pow(d, 2)`) over `axes`, for class `var`.
fn mean_square_of(eg: &EG, var: Id, d: Id, axes: &[usize]) -> bool {
    reduced(eg, var, "reduce_mean").iter().any(|(sq, a)| {
        a == axes
            && (pairs(eg, *sq, "mul")
                .iter()
                .any(|&(p, q)| same(eg, p, d) && same(eg, q, d))
                || by_const(eg, *sq, "pow", 2.0, 0.0)
                    .iter()
                    .any(|&y| same(eg, y, d)))
    })
}

/// `d / sqrt(v + eps)` or `d * reciprocal(sqrt(v + eps))`: the pairs `(v, eps)`.
fn normalized_by(eg: &EG, n: Id, d: Id) -> Vec<(Id, f64)> {
    let mut dens = Vec::new();
    for (p, q) in pairs(eg, n, "div") {
        if same(eg, p, d) {
            dens.push(q);
        }
    }
    for (p, r) in pairs(eg, n, "mul") {
        if same(eg, p, d) {
            dens.extend(arg_of(eg, r, "reciprocal"));
        }
    }
    let mut v = Vec::new();
    for den in dens {
        for s in arg_of(eg, den, "sqrt") {
            for (var, e) in pairs(eg, s, "add") {
                if let Some(eps) = splat(eg, e).filter(|e| *e >= 0.0) {
                    v.push((var, eps));
                }
            }
        }
    }
    v
}

/// Classes equal to a written-out layer norm core: `(x, axis, eps)`.
fn ln_core(eg: &EG, n: Id) -> Vec<(Id, usize, f64)> {
    let mut v = Vec::new();
    let rank = eg[n].data.ty.rank();
    for (d_class, _) in pairs(eg, n, "div").into_iter().chain(pairs(eg, n, "mul")) {
        for (x, m) in pairs(eg, d_class, "sub") {
            for (x2, axes) in reduced(eg, m, "reduce_mean") {
                let Some(axis) = trailing(&axes, rank) else {
                    continue;
                };
                if !same(eg, x, x2) {
                    continue;
                }
                for (var, eps) in normalized_by(eg, n, d_class) {
                    if mean_square_of(eg, var, d_class, &axes) {
                        v.push((x, axis, eps));
                    }
                }
            }
        }
    }
    v.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.total_cmp(&b.2)));
    v.dedup();
    v
}

fn filled(dtype: DType, shape: Vec<usize>, v: f64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f64(dtype, shape, &vec![v; n])
}

/// The optional affine tail `n * scale + bias` around a core: `(core, scale, bias)`.
fn affine_tails(eg: &EG, c: Id) -> Vec<(Id, Option<Id>, Option<Id>)> {
    let mut v = vec![(c, None, None)];
    for (p, b) in pairs(eg, c, "add") {
        if konst(eg, b).is_some() {
            v.push((p, None, Some(b)));
            for (q, s) in pairs(eg, p, "mul") {
                if konst(eg, s).is_some() {
                    v.push((q, Some(s), Some(b)));
                }
            }
        }
    }
    for (q, s) in pairs(eg, c, "mul") {
        if konst(eg, s).is_some() {
            v.push((q, Some(s), None));
        }
    }
    v
}

fn layer_norm(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let ty = &eg[c].data.ty;
    if !ty.dtype.is_float() {
        return vec![];
    }
    let mut v = Vec::new();
    for (core, s, b) in affine_tails(eg, c) {
        for (x, axis, eps) in ln_core(eg, core) {
            let norm = ty.shape[axis..].to_vec();
            let s = s.map_or(Term::Const(filled(ty.dtype, norm.clone(), 1.0)), class);
            let b = b.map_or(Term::Const(filled(ty.dtype, norm, 0.0)), class);
            let op = LayerNorm {
                axis,
                epsilon: eps,
                stash: DType::F32,
            };
            v.push((c, node(op, vec![class(x), s, b])));
        }
    }
    v
}

fn rms_norm(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let ty = &eg[c].data.ty;
    if !ty.dtype.is_float() {
        return vec![];
    }
    let rank = ty.rank();
    let mut v = Vec::new();
    for (core, s, b) in affine_tails(eg, c) {
        if b.is_some() {
            continue;
        }
        for (x, _) in pairs(eg, core, "div")
            .into_iter()
            .chain(pairs(eg, core, "mul"))
        {
            for (var, eps) in normalized_by(eg, core, x) {
                for (sq, axes) in reduced(eg, var, "reduce_mean") {
                    let Some(axis) = trailing(&axes, rank) else {
                        continue;
                    };
                    let squares = pairs(eg, sq, "mul")
                        .iter()
                        .any(|&(p, q)| same(eg, p, x) && same(eg, q, x))
                        || by_const(eg, sq, "pow", 2.0, 0.0)
                            .iter()
                            .any(|&y| same(eg, y, x));
                    if squares {
                        let norm = ty.shape[axis..].to_vec();
                        let s = s.map_or(Term::Const(filled(ty.dtype, norm, 1.0)), class);
                        v.push((c, node(RmsNorm { axis, epsilon: eps }, vec![class(x), s])));
                    }
                }
            }
        }
    }
    v
}

/// Whether a constant over `[.., Sq, Sk]` (leading dims 1) is causal:
/// `keep(i, j) == (j <= i)` where `keep` reads the element.
fn causal(t: &Tensor, sq: usize, sk: usize, keep: impl Fn(f64) -> Option<bool>) -> bool {
    let s = t.shape();
    let r = s.len();
    if r < 2 || s[r - 2] != sq || s[r - 1] != sk || s[..r - 2].iter().any(|&d| d != 1) {
        return false;
    }
    let v = t.to_f64_vec();
    (0..sq).all(|i| (0..sk).all(|j| keep(v[i * sk + j]) == Some(j <= i)))
}

/// Score forms under the softmax: `(s1, causal)` for the unmasked scores `s1`.
fn masked(eg: &EG, s: Id) -> Vec<(Id, bool)> {
    let mut v = vec![(s, false)];
    let shape = &eg[s].data.ty.shape;
    let r = shape.len();
    if r < 2 {
        return v;
    }
    let (sq, sk) = (shape[r - 2], shape[r - 1]);
    let very_negative = |f: f64| f <= -1e4;
    for (op, a) in with(eg, s, "where") {
        let _ = op;
        let (Some(m), Some(fill)) = (konst(eg, a[0]), splat(eg, a[2]).or_else(|| splat(eg, a[1])))
        else {
            continue;
        };
        if !very_negative(fill) || m.dtype() != DType::Bool {
            continue;
        }
        if splat(eg, a[2]).is_some() && causal(m, sq, sk, |x| Some(x != 0.0)) {
            v.push((a[1], true));
        }
        if splat(eg, a[1]).is_some() && causal(m, sq, sk, |x| Some(x == 0.0)) {
            v.push((a[2], true));
        }
    }
    for (x, b) in pairs(eg, s, "add") {
        let Some(bt) = konst(eg, b) else { continue };
        let keep = |f: f64| match f {
            0.0 => Some(true),
            f if very_negative(f) => Some(false),
            _ => None,
        };
        if bt.dtype().is_float() && causal(bt, sq, sk, keep) {
            v.push((x, true));
        }
    }
    v
}

/// `matmul(softmax(scale · q·kᵀ [masked]), v)` → `attention(q, k, v)`.
fn attention(eg: &EG, c: Id) -> Vec<(Id, Term)> {
    let mut out = Vec::new();
    for (op, a) in with(eg, c, "matmul") {
        let Op::MatMul(pm) = op else { continue };
        if pm.trans_a || pm.trans_b {
            continue;
        }
        let (p, v) = (a[0], a[1]);
        let rank = eg[p].data.ty.rank();
        for (sop, sa) in with(eg, p, "softmax") {
            if !matches!(sop, Op::Softmax(s) if s.axis + 1 == rank) {
                continue;
            }
            for (s1, is_causal) in masked(eg, sa[0]) {
                let mut scaled = vec![(s1, 1.0)];
                for (s0, k) in pairs(eg, s1, "mul") {
                    if let Some(f) = splat(eg, k).filter(|_| eg[k].data.ty.numel() == 1) {
                        scaled.push((s0, f));
                    }
                }
                for (s0, scale) in scaled {
                    for (qop, qa) in with(eg, s0, "matmul") {
                        let Op::MatMul(qm) = qop else { continue };
                        if qm.trans_a {
                            continue;
                        }
                        let k = if qm.trans_b {
                            class(qa[1])
                        } else {
                            let mut perm: Vec<usize> = (0..rank).collect();
                            perm.swap(rank - 2, rank - 1);
                            node(Transpose { perm }, vec![class(qa[1])])
                        };
                        let att = Attention {
                            scale,
                            causal: is_causal,
                        };
                        out.push((c, node(att, vec![class(qa[0]), k, class(v)])));
                    }
                }
            }
        }
    }
    out
}
