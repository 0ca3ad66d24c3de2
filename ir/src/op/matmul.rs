//! `matmul`: numpy-style matrix product with batch broadcasting; rank-1 operands
//! are promoted to matrices and the promoted dim is dropped from the result.
//! `trans_a` / `trans_b` read an operand (of rank >= 2) with its last two dims
//! swapped, so a transpose feeding a matmul costs no copy.

use super::{arity, out, same_dtype, OpDef};
use crate::shape::{broadcast, broadcast_map};
use crate::{Attr, Attrs, Elems, Tensor, TensorType};

/// Matrix product (accumulates in f64 / i64).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MatMul {
    pub trans_a: bool,
    pub trans_b: bool,
}

/// A shape with its last two dims swapped when `t` (rank >= 2 checked by callers).
fn swap_last(s: &[usize], t: bool) -> Vec<usize> {
    let mut v = s.to_vec();
    if t {
        let r = v.len();
        v.swap(r - 2, r - 1);
    }
    v
}

/// The tensor with its last two dims swapped.
fn transposed(t: &Tensor) -> Result<Tensor, String> {
    let r = t.shape().len();
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 2, r - 1);
    Ok(super::Transpose { perm }.eval(&[t])?.remove(0))
}

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

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        let flag = |n: &str| if a.has(n) { a.flag(n) } else { Ok(false) };
        Ok(MatMul {
            trans_a: flag("trans_a")?,
            trans_b: flag("trans_b")?,
        })
    }

    /// The operand shapes as the product sees them (after the flags).
    fn logical(&self, a: &[usize], b: &[usize]) -> Result<(Vec<usize>, Vec<usize>), String> {
        for (t, s, n) in [(self.trans_a, a, "a"), (self.trans_b, b, "b")] {
            if t && s.len() < 2 {
                return Err(format!(
                    "trans_{n} needs an operand of rank >= 2, got {s:?}"
                ));
            }
        }
        Ok((swap_last(a, self.trans_a), swap_last(b, self.trans_b)))
    }
}

impl OpDef for MatMul {
    fn mnemonic(&self) -> &'static str {
        "matmul"
    }

    fn attrs(&self) -> Attrs {
        let mut a = Attrs::default();
        for (t, n) in [(self.trans_a, "trans_a"), (self.trans_b, "trans_b")] {
            if t {
                a = a.with(n, Attr::Int(1));
            }
        }
        a
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 2, 2)?;
        let (a, b) = (inputs[0], inputs[1]);
        same_dtype(a, b, "matmul")?;
        if !a.dtype.is_numeric() {
            return Err(format!("matmul needs numeric operands, got {a}"));
        }
        let (sa, sb) = self.logical(&a.shape, &b.shape)?;
        let d = dims(&sa, &sb)?;
        Ok(vec![out(a.dtype, d.out)?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        self.logical(inputs[0].shape(), inputs[1].shape())?;
        let ta = self.trans_a.then(|| transposed(inputs[0])).transpose()?;
        let tb = self.trans_b.then(|| transposed(inputs[1])).transpose()?;
        let a = ta.as_ref().unwrap_or(inputs[0]);
        let b = tb.as_ref().unwrap_or(inputs[1]);
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
        let Ok((sa, sb)) = self.logical(&inputs[0].shape, &inputs[1].shape) else {
            return 0;
        };
        match dims(&sa, &sb) {
            Ok(d) => 2 * (d.batch.iter().product::<usize>() * d.m * d.n * d.k) as u64,
            Err(_) => 0,
        }
    }
}
