//! Soundness of every rule: each rule is instantiated on fixtures with random
//! awkward shapes and random values, and the graph with the rule's right-hand side
//! must agree with the original on the reference interpreter. A rule without a
//! fixture here fails `every_rule_has_a_fixture`.

mod common;

use common::{max_rel, random_inputs, B};
use kiln_ir::op::*;
use kiln_ir::{interp, DType, Graph, Tensor};
use kiln_passes::egraph::instances::{all_rules, instances};

fn un(kind: UnaryKind) -> Unary {
    Unary { kind }
}
fn bi(kind: BinaryKind) -> Binary {
    Binary { kind }
}

/// Runs both sides of every instance of `rule` in fixtures made by `make` for
/// several seeds; asserts the rule matched at least once per seed.
fn sound(rule: &str, tol: f64, make: Make) {
    for seed in 0..5 {
        let mut b = B::new(seed);
        let outs = make(&mut b);
        let g = b.finish(&outs);
        let inst = instances(&g, rule, 8).unwrap();
        assert!(
            !inst.is_empty(),
            "rule {rule} did not match (seed {seed}):\n{g}"
        );
        for h in inst {
            h.verify().unwrap();
            let style = kiln_ir::ConstStyle::Elide(64);
            assert_ne!(
                g.to_text(style),
                h.to_text(style),
                "{rule}: the instance is the original graph"
            );
            for s in 0..3 {
                let ins = random_inputs(&g, s);
                let want = interp::run(&g, &ins).unwrap();
                let got = interp::run(&h, &ins).unwrap();
                for (w, o) in want.iter().zip(&got) {
                    assert_eq!(w.ty(), o.ty());
                    let e = max_rel(w, o);
                    assert!(e <= tol, "{rule}: error {e}\nbefore:\n{g}\nafter:\n{h}");
                }
            }
        }
    }
}

fn shape3(b: &mut B) -> Vec<usize> {
    vec![b.rng.dim(), b.rng.dim(), b.rng.dim()]
}

/// Builds a fixture's graph and returns its outputs.
type Make = fn(&mut B) -> Vec<kiln_ir::ValueId>;

/// Each rule with its tolerance and fixture.
const FIXTURES: &[(&str, f64, Make)] = &[
    ("mul-one", 0.0, |b| {
        let s = shape3(b);
        let x = b.input(&s);
        let one = b.splat(&[s[2]], 1.0);
        vec![b.op(bi(BinaryKind::Mul), &[one, x])]
    }),
    ("add-zero", 0.0, |b| {
        let s = shape3(b);
        let x = b.input(&s);
        let z = b.splat(&[1], 0.0);
        let y = b.op(bi(BinaryKind::Add), &[x, z]);
        vec![b.op(bi(BinaryKind::Sub), &[y, z])]
    }),
    ("div-one", 0.0, |b| {
        let s = shape3(b);
        let x = b.input(&s);
        let one = b.splat(&[], 1.0);
        vec![b.op(bi(BinaryKind::Div), &[x, one])]
    }),
    ("div-const-to-mul", 1e-6, |b| {
        let s = shape3(b);
        let x = b.input(&s);
        let k = b.konst(&[s[2]]);
        vec![b.op(bi(BinaryKind::Div), &[x, k])]
    }),
    ("neg-neg", 0.0, |b| {
        let s = shape3(b);
        let x = b.input(&s);
        let y = b.op(un(UnaryKind::Neg), &[x]);
        vec![b.op(un(UnaryKind::Neg), &[y])]
    }),
    ("sub-self-int", 0.0, |b| {
        let s = shape3(b);
        let x = b.input_of(DType::I64, &s);
        vec![b.op(bi(BinaryKind::Sub), &[x, x])]
    }),
    ("mul-const-assoc", 1e-6, |b| {
        let s = shape3(b);
        let x = b.input(&s);
        let (k1, k2) = (b.konst(&[s[2]]), b.konst(&[s[1], 1]));
        let y = b.op(bi(BinaryKind::Mul), &[x, k1]);
        vec![b.op(bi(BinaryKind::Mul), &[k2, y])]
    }),
    ("transpose-transpose", 0.0, |b| {
        let s = shape3(b);
        let x = b.input(&s);
        let y = b.op(
            Transpose {
                perm: vec![2, 0, 1],
            },
            &[x],
        );
        let p = if b.rng.below(2) == 0 {
            vec![1, 2, 0]
        } else {
            vec![0, 2, 1]
        };
        vec![b.op(Transpose { perm: p }, &[y])]
    }),
    ("layout-identity", 0.0, |b| {
        let s = shape3(b);
        let x = b.input(&s);
        let y = b.op(
            Transpose {
                perm: vec![0, 1, 2],
            },
            &[x],
        );
        vec![b.op(Reshape { shape: s }, &[y])]
    }),
    ("reshape-reshape", 0.0, |b| {
        let s = shape3(b);
        let n: usize = s.iter().product();
        let x = b.input(&s);
        let y = b.op(Reshape { shape: vec![n] }, &[x]);
        vec![b.op(
            Reshape {
                shape: vec![s[0] * s[1], s[2]],
            },
            &[y],
        )]
    }),
    ("matmul-absorb-transpose", 1e-6, |b| {
        let (m, k, n) = (b.rng.dim(), b.rng.dim(), b.rng.dim());
        let a = b.input(&[2, k, m]);
        let w = b.input(&[2, n, k]);
        let at = b.op(
            Transpose {
                perm: vec![0, 2, 1],
            },
            &[a],
        );
        let wt = b.op(
            Transpose {
                perm: vec![0, 2, 1],
            },
            &[w],
        );
        vec![b.op(MatMul::default(), &[at, wt])]
    }),
    ("scale-into-weights", 1e-6, |b| {
        let (m, k, n) = (b.rng.dim(), b.rng.dim(), b.rng.dim());
        let x = b.input(&[2, m, k]);
        let w = b.konst(&[k, n]);
        let s = b.konst(&[1, 1, n]);
        let y = b.op(MatMul::default(), &[x, w]);
        vec![b.op(bi(BinaryKind::Mul), &[y, s])]
    }),
    ("scalar-through-matmul", 1e-6, |b| {
        let (m, k, n) = (b.rng.dim(), b.rng.dim(), b.rng.dim());
        let x = b.input(&[m, k]);
        let w = b.input(&[k, n]);
        let s = b.konst(&[]);
        let y = b.op(MatMul::default(), &[x, w]);
        vec![b.op(bi(BinaryKind::Mul), &[y, s])]
    }),
    ("batchnorm-into-conv", 1e-5, |b| {
        let (c, m, h) = (b.rng.dim(), b.rng.dim(), b.rng.dim() + 2);
        let x = b.input(&[2, c, h, h + 1]);
        let w = b.konst(&[m, c, 3, 3]);
        let bias = b.konst(&[m]);
        let conv = Conv {
            strides: vec![1, 1],
            pads: vec![1, 1, 1, 1],
            dilations: vec![1, 1],
            group: 1,
        };
        let y = b.op(conv, &[x, w, bias]);
        let (s, t, mu) = (b.konst(&[m]), b.konst(&[m]), b.konst(&[m]));
        let var = b.splat(&[m], 0.7);
        vec![b.op(BatchNorm { epsilon: 1e-5 }, &[y, s, t, mu, var])]
    }),
    ("batchnorm-to-affine", 1e-5, |b| {
        let c = b.rng.dim();
        let (n0, n2) = (b.rng.dim(), b.rng.dim());
        let x = b.input(&[n0, c, n2]);
        let (s, t, mu) = (b.konst(&[c]), b.konst(&[c]), b.konst(&[c]));
        let var = b.splat(&[c], 0.3);
        vec![b.op(BatchNorm { epsilon: 1e-3 }, &[x, s, t, mu, var])]
    }),
    ("gelu", 1e-4, |b| {
        let s = shape3(b);
        let x = b.input(&s);
        let half = b.splat(&[], 0.5);
        let one = b.splat(&[], 1.0);
        let hx = b.op(bi(BinaryKind::Mul), &[x, half]);
        let inner = if b.rng.below(2) == 0 {
            let r2 = b.splat(&[], std::f64::consts::SQRT_2);
            let d = b.op(bi(BinaryKind::Div), &[x, r2]);
            b.op(un(UnaryKind::Erf), &[d])
        } else {
            let three = b.splat(&[], 3.0);
            let c = b.splat(&[], 0.044715);
            let k = b.splat(&[], (2.0 / std::f64::consts::PI).sqrt());
            let p = b.op(bi(BinaryKind::Pow), &[x, three]);
            let pc = b.op(bi(BinaryKind::Mul), &[p, c]);
            let a = b.op(bi(BinaryKind::Add), &[x, pc]);
            let m = b.op(bi(BinaryKind::Mul), &[a, k]);
            b.op(un(UnaryKind::Tanh), &[m])
        };
        let t = b.op(bi(BinaryKind::Add), &[inner, one]);
        vec![b.op(bi(BinaryKind::Mul), &[hx, t])]
    }),
    ("silu", 1e-6, |b| {
        let s = shape3(b);
        let x = b.input(&s);
        let sg = b.op(un(UnaryKind::Sigmoid), &[x]);
        vec![b.op(bi(BinaryKind::Mul), &[sg, x])]
    }),
    ("hard-swish", 1e-6, |b| {
        let s = shape3(b);
        let x = b.input(&s);
        let hs = b.op(
            un(UnaryKind::HardSigmoid {
                alpha: 1.0 / 6.0,
                beta: 0.5,
            }),
            &[x],
        );
        vec![b.op(bi(BinaryKind::Mul), &[x, hs])]
    }),
    ("softmax", 1e-6, |b| {
        let s = shape3(b);
        let x = b.input(&s);
        let axis = b.rng.below(3);
        let red = |kind| Reduce {
            kind,
            axes: vec![axis],
            keepdims: true,
        };
        let m = b.op(red(ReduceKind::Max), &[x]);
        let d = b.op(bi(BinaryKind::Sub), &[x, m]);
        let e = b.op(un(UnaryKind::Exp), &[d]);
        let sum = b.op(red(ReduceKind::Sum), &[e]);
        vec![b.op(bi(BinaryKind::Div), &[e, sum])]
    }),
    ("layer-norm", 1e-5, |b| {
        let s = shape3(b);
        let x = b.input(&s);
        let mean = |b: &mut B, v| {
            b.op(
                Reduce {
                    kind: ReduceKind::Mean,
                    axes: vec![2],
                    keepdims: true,
                },
                &[v],
            )
        };
        let mu = mean(b, x);
        let d = b.op(bi(BinaryKind::Sub), &[x, mu]);
        let sq = b.op(bi(BinaryKind::Mul), &[d, d]);
        let var = mean(b, sq);
        let eps = b.splat(&[], 1e-5);
        let ve = b.op(bi(BinaryKind::Add), &[var, eps]);
        let sd = b.op(un(UnaryKind::Sqrt), &[ve]);
        let n = b.op(bi(BinaryKind::Div), &[d, sd]);
        let (g, t) = (b.konst(&[s[2]]), b.konst(&[s[2]]));
        let y = b.op(bi(BinaryKind::Mul), &[n, g]);
        vec![b.op(bi(BinaryKind::Add), &[y, t])]
    }),
    ("rms-norm", 1e-5, |b| {
        let s = shape3(b);
        let x = b.input(&s);
        let sq = b.op(bi(BinaryKind::Mul), &[x, x]);
        let ms = b.op(
            Reduce {
                kind: ReduceKind::Mean,
                axes: vec![2],
                keepdims: true,
            },
            &[sq],
        );
        let eps = b.splat(&[], 1e-6);
        let ve = b.op(bi(BinaryKind::Add), &[ms, eps]);
        let sd = b.op(un(UnaryKind::Sqrt), &[ve]);
        let r = b.op(un(UnaryKind::Reciprocal), &[sd]);
        let n = b.op(bi(BinaryKind::Mul), &[x, r]);
        let g = b.konst(&[s[2]]);
        vec![b.op(bi(BinaryKind::Mul), &[n, g])]
    }),
    ("attention", 1e-5, |b| {
        let (h, s, d) = (b.rng.dim(), b.rng.dim() + 1, b.rng.dim());
        let q = b.input(&[2, h, s, d]);
        let k = b.input(&[2, h, s, d]);
        let v = b.input(&[2, h, s, d + 1]);
        let kt = b.op(
            Transpose {
                perm: vec![0, 1, 3, 2],
            },
            &[k],
        );
        let sc = b.op(MatMul::default(), &[q, kt]);
        let scale = b.splat(&[], 0.3);
        let sc = b.op(bi(BinaryKind::Mul), &[sc, scale]);
        let sc = match b.rng.below(3) {
            0 => sc,
            1 => {
                let keep: Vec<i64> = (0..s * s).map(|i| (i % s <= i / s) as i64).collect();
                let m = b.tensor(Tensor::from_i64(DType::Bool, vec![1, 1, s, s], &keep));
                let fill = b.splat(&[], -1e9);
                b.op(Where, &[m, sc, fill])
            }
            _ => {
                let bias: Vec<f64> = (0..s * s)
                    .map(|i| {
                        if i % s <= i / s {
                            0.0
                        } else {
                            f64::NEG_INFINITY
                        }
                    })
                    .collect();
                let m = b.tensor(Tensor::from_f64(DType::F32, vec![s, s], &bias));
                b.op(bi(BinaryKind::Add), &[sc, m])
            }
        };
        let p = b.op(
            Softmax {
                axis: 3,
                log: false,
            },
            &[sc],
        );
        vec![b.op(MatMul::default(), &[p, v])]
    }),
    ("merge-shared-matmuls", 1e-6, |b| {
        let (m, k) = (b.rng.dim(), b.rng.dim());
        let x = b.input(&[2, m, k]);
        let (n1, n2) = (b.rng.dim(), b.rng.dim());
        let (w1, w2, w3) = (b.konst(&[k, n1]), b.konst(&[k, n2]), b.konst(&[k, 3]));
        let y1 = b.op(MatMul::default(), &[x, w1]);
        let y2 = b.op(MatMul::default(), &[x, w2]);
        let y3 = b.op(MatMul::default(), &[x, w3]);
        vec![y1, y2, y3]
    }),
];

#[test]
fn every_rule_is_sound_on_random_shapes_and_values() {
    for (rule, tol, make) in FIXTURES {
        sound(rule, *tol, *make);
    }
}

#[test]
fn every_rule_has_a_fixture() {
    let missing: Vec<&str> = all_rules()
        .iter()
        .map(|r| r.name)
        .filter(|n| !FIXTURES.iter().any(|f| f.0 == *n))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without a soundness fixture: {missing:?}"
    );
}

/// Rules refuse instances their conditions exclude.
#[test]
fn conditions_are_respected() {
    let mut b = B::new(1);
    let x = b.input(&[3, 4]);
    let two = b.splat(&[], 2.0);
    let y = b.op(bi(BinaryKind::Mul), &[x, two]);
    let g: Graph = b.finish(&[y]);
    assert!(instances(&g, "mul-one", 4).unwrap().is_empty());
    let mut b = B::new(2);
    let x = b.input(&[3, 4]);
    let z = b.tensor(Tensor::from_f64(DType::F32, vec![4], &[1.0, 0.0, 2.0, 3.0]));
    let y = b.op(bi(BinaryKind::Div), &[x, z]);
    let g = b.finish(&[y]);
    assert!(
        instances(&g, "div-const-to-mul", 4).unwrap().is_empty(),
        "division by a zero element"
    );
    let mut b = B::new(3);
    let x = b.input(&[3, 4]);
    let y = b.op(bi(BinaryKind::Sub), &[x, x]);
    let g = b.finish(&[y]);
    assert!(
        instances(&g, "sub-self-int", 4).unwrap().is_empty(),
        "float x - x is not 0 for inf/NaN"
    );
}
