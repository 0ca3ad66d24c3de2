//! `gather`: picks slices of the data along one axis by an index tensor.

use super::{arity, out, OpDef};
use crate::{Attr, Attrs, Tensor, TensorType};

/// Output shape is `data[..axis] ++ indices ++ data[axis+1..]`. Negative indices
/// count from the end; an index out of range is an evaluation error.
#[derive(Clone, Debug, PartialEq)]
pub struct Gather {
    pub axis: usize,
}

impl Gather {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["gather"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(Gather {
            axis: a.usize("axis")?,
        })
    }

    fn out_shape(&self, data: &[usize], idx: &[usize]) -> Vec<usize> {
        let mut s = data[..self.axis].to_vec();
        s.extend_from_slice(idx);
        s.extend_from_slice(&data[self.axis + 1..]);
        s
    }
}

impl OpDef for Gather {
    fn mnemonic(&self) -> &'static str {
        "gather"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default().with("axis", Attr::Int(self.axis as i64))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 2, 2)?;
        let (d, i) = (inputs[0], inputs[1]);
        if self.axis >= d.rank() {
            return Err(format!("axis {} is out of range for {d}", self.axis));
        }
        if !i.dtype.is_int() {
            return Err(format!("indices must be integers, got {i}"));
        }
        Ok(vec![out(d.dtype, self.out_shape(&d.shape, &i.shape))?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let (d, i) = (inputs[0], inputs[1]);
        let ds = d.shape();
        let n = ds[self.axis] as i64;
        let outer: usize = ds[..self.axis].iter().product();
        let inner: usize = ds[self.axis + 1..].iter().product();
        let idx: Vec<usize> = i
            .to_i64_vec()
            .into_iter()
            .map(|v| {
                let w = if v < 0 { v + n } else { v };
                if w < 0 || w >= n {
                    Err(format!(
                        "index {v} is out of range for axis {} of size {n}",
                        self.axis
                    ))
                } else {
                    Ok(w as usize)
                }
            })
            .collect::<Result<_, _>>()?;
        let mut src = Vec::with_capacity(outer * idx.len() * inner);
        for o in 0..outer {
            for &k in &idx {
                for j in 0..inner {
                    src.push(Some((o * n as usize + k) * inner + j));
                }
            }
        }
        Ok(vec![d.select(
            self.out_shape(ds, i.shape()),
            src.into_iter(),
            &[],
        )])
    }

    fn flops(&self, _: &[&TensorType], _: &[TensorType]) -> u64 {
        0
    }
}
