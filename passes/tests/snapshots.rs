//! Snapshots of the optimized IR of one small fixture per rule set (algebra,
//! recognition, matmul merging, fusion); each also runs against the interpreter.

mod common;

use common::{optimized_agrees, B};
use kiln_ir::op::*;
use kiln_ir::ConstStyle;

fn bi(kind: BinaryKind) -> Binary {
    Binary { kind }
}

fn snapshot(name: &str, b: B, outs: &[kiln_ir::ValueId]) {
    let g = b.finish(outs);
    let opt = optimized_agrees(&g, 1e-5, 2);
    insta::assert_snapshot!(name, opt.graph.to_text(ConstStyle::Elide(64)));
}

/// Batch norm folded into the conv; a double transpose cancels; a transpose is
/// absorbed as a matmul flag.
#[test]
fn algebra_fixture() {
    let mut b = B::new(11);
    let x = b.input(&[1, 3, 6, 5]);
    let w = b.konst(&[4, 3, 3, 3]);
    let conv = Conv {
        strides: vec![1, 1],
        pads: vec![1, 1, 1, 1],
        dilations: vec![1, 1],
        group: 1,
    };
    let y = b.op(conv, &[x, w]);
    let (s, t, m) = (b.konst(&[4]), b.konst(&[4]), b.konst(&[4]));
    let v = b.splat(&[4], 0.5);
    let y = b.op(BatchNorm { epsilon: 1e-5 }, &[y, s, t, m, v]);
    let a = b.input(&[7, 5]);
    let at = b.op(Transpose { perm: vec![1, 0] }, &[a]);
    let att = b.op(Transpose { perm: vec![1, 0] }, &[at]);
    let bm = b.input(&[3, 5]);
    let bt = b.op(Transpose { perm: vec![1, 0] }, &[bm]);
    let p = b.op(MatMul::default(), &[att, bt]);
    snapshot("algebra", b, &[y, p]);
}

/// GELU (tanh form) and softmax written out become single ops.
#[test]
fn recognize_fixture() {
    let mut b = B::new(12);
    let x = b.input(&[3, 17]);
    let (half, one, three) = (b.splat(&[], 0.5), b.splat(&[], 1.0), b.splat(&[], 3.0));
    let (c, k) = (
        b.splat(&[], 0.044715),
        b.splat(&[], (2.0 / std::f64::consts::PI).sqrt()),
    );
    let p = b.op(bi(BinaryKind::Pow), &[x, three]);
    let pc = b.op(bi(BinaryKind::Mul), &[p, c]);
    let a = b.op(bi(BinaryKind::Add), &[x, pc]);
    let m = b.op(bi(BinaryKind::Mul), &[a, k]);
    let t = b.op(
        Unary {
            kind: UnaryKind::Tanh,
        },
        &[m],
    );
    let t1 = b.op(bi(BinaryKind::Add), &[t, one]);
    let hx = b.op(bi(BinaryKind::Mul), &[x, half]);
    let g = b.op(bi(BinaryKind::Mul), &[hx, t1]);
    let red = |kind| Reduce {
        kind,
        axes: vec![1],
        keepdims: true,
    };
    let mx = b.op(red(ReduceKind::Max), &[g]);
    let d = b.op(bi(BinaryKind::Sub), &[g, mx]);
    let e = b.op(
        Unary {
            kind: UnaryKind::Exp,
        },
        &[d],
    );
    let s = b.op(red(ReduceKind::Sum), &[e]);
    let y = b.op(bi(BinaryKind::Div), &[e, s]);
    snapshot("recognize", b, &[y]);
}

/// Three projections of one input merge into one matmul over concatenated weights.
#[test]
fn merge_fixture() {
    let mut b = B::new(13);
    let x = b.input(&[4, 8]);
    let ws: Vec<_> = (0..3).map(|_| b.konst(&[8, 5])).collect();
    let ys: Vec<_> = ws
        .iter()
        .map(|&w| b.op(MatMul::default(), &[x, w]))
        .collect();
    let s = b.op(bi(BinaryKind::Add), &[ys[0], ys[1]]);
    let y = b.op(bi(BinaryKind::Mul), &[s, ys[2]]);
    snapshot("merge", b, &[y]);
}

/// A matmul with a bias, activation and residual epilogue, and an elementwise
/// chain with broadcasting, each become one kernel.
#[test]
fn fusion_fixture() {
    let mut b = B::new(14);
    let x = b.input(&[5, 7]);
    let w = b.konst(&[7, 7]);
    let bias = b.konst(&[7]);
    let h = b.op(MatMul::default(), &[x, w]);
    let h = b.op(bi(BinaryKind::Add), &[h, bias]);
    let h = b.op(
        Unary {
            kind: UnaryKind::Relu,
        },
        &[h],
    );
    let h = b.op(bi(BinaryKind::Add), &[h, x]);
    let z = b.input(&[3, 1, 7]);
    let e = b.op(
        Unary {
            kind: UnaryKind::Exp,
        },
        &[z],
    );
    let e = b.op(bi(BinaryKind::Mul), &[e, h]);
    let e = b.op(
        Unary {
            kind: UnaryKind::Tanh,
        },
        &[e],
    );
    snapshot("fusion", b, &[e]);
}
