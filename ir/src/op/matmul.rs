//! `matmul`: numpy-style matrix product with batch broadcasting; rank-1 operands
//! are promoted to matrices and the promoted dim is dropped from the result.

use super::{arity, out, same_dtype, OpDef};
use crate::shape::{broadcast, broadcast_map};
use crate::{Attrs, Elems, Tensor, TensorType};

/// Matrix product (accumulates in f64 / i64).
#[derive(Clone, Debug, PartialEq)]
pub struct MatMul;

struct Dims {
    batch: Vec<usize>,
    a_batch: Vec<usize>,
    b_batch: Vec<usize>,
    m: usize,
    k: usize,
    n: usize,
    out: Vec<usize>,
}

fn dims(a: &[usize], b: &[usize]) -> Result<Dims, String> {
    if a.is_empty() || b.is_empty() {
        return Err("matmul operands must have rank >= 1".into());
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(format!(
            "contracting dims differ: {:?} x {:?} ({k} vs {k2})",
            a, b
        ));
    }
    let a_batch = a2[..a2.len() - 2].to_vec();
    let b_batch = b2[..b2.len() - 2].to_vec();
    let batch = broadcast(&a_batch, &b_batch)
        .ok_or_else(|| format!("batch dims {a_batch:?} and {b_batch:?} do not broadcast"))?;
    let mut out = batch.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok(Dims {
        batch,
        a_batch,
        b_batch,
        m,
        k,
        n,
        out,
    })
}

impl MatMul {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["matmul"];

    pub(crate) fn parse(_: &str, _: &Attrs) -> Result<Self, String> {
        Ok(MatMul)
    }
}

impl OpDef for MatMul {
    fn mnemonic(&self) -> &'static str {
        "matmul"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default()
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 2, 2)?;
        let (a, b) = (inputs[0], inputs[1]);
        same_dtype(a, b, "matmul")?;
        if !a.dtype.is_numeric() {
            return Err(format!("matmul needs numeric operands, got {a}"));
        }
        let d = dims(&a.shape, &b.shape)?;
        Ok(vec![out(a.dtype, d.out)?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let (a, b) = (inputs[0], inputs[1]);
        let d = dims(a.shape(), b.shape())?;
        // Batch index maps: which matrix of a and of b each output matrix reads.
        let am = broadcast_map(&d.a_batch, &d.batch);
        let bm = broadcast_map(&d.b_batch, &d.batch);
        let (m, k, n) = (d.m, d.k, d.n);
        let r = match (a.elems(), b.elems()) {
            (Elems::F(va), Elems::F(vb)) => {
                let mut o = vec![0.0f64; am.len() * m * n];
                for (bi, (&ia, &ib)) in am.iter().zip(&bm).enumerate() {
                    let (pa, pb) = (&va[ia * m * k..], &vb[ib * k * n..]);
                    let po = &mut o[bi * m * n..(bi + 1) * m * n];
                    for i in 0..m {
                        for p in 0..k {
                            let x = pa[i * k + p];
                            let row = &pb[p * n..p * n + n];
                            for (oj, &y) in po[i * n..i * n + n].iter_mut().zip(row) {
                                *oj += x * y;
                            }
                        }
                    }
                }
                Elems::F(o)
            }
            (Elems::I(va), Elems::I(vb)) => {
                let mut o = vec![0i64; am.len() * m * n];
                for (bi, (&ia, &ib)) in am.iter().zip(&bm).enumerate() {
                    for i in 0..m {
                        for p in 0..k {
                            let x = va[ia * m * k + i * k + p];
                            for j in 0..n {
                                let y = vb[ib * k * n + p * n + j];
                                let o = &mut o[bi * m * n + i * n + j];
                                *o = o.wrapping_add(x.wrapping_mul(y));
                            }
                        }
                    }
                }
                Elems::I(o)
            }
            _ => return Err("matmul: operand dtypes differ".into()),
        };
        Ok(vec![Tensor::from_elems(a.dtype(), d.out, &r)])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType]) -> u64 {
        match dims(&inputs[0].shape, &inputs[1].shape) {
            Ok(d) => 2 * (d.batch.iter().product::<usize>() * d.m * d.n * d.k) as u64,
            Err(_) => 0,
        }
    }
}
