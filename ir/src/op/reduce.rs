//! Reductions (sum, mean, max, min) over a set of axes, keeping or dropping them.

use super::{arity, out, OpDef};
use crate::{Attr, Attrs, DType, Elems, Tensor, TensorType};

/// Which reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
}

/// Reduces `axes` (sorted, distinct, non-negative). An empty axis list is the
/// identity.
#[derive(Clone, Debug, PartialEq)]
pub struct Reduce {
    pub kind: ReduceKind,
    pub axes: Vec<usize>,
    pub keepdims: bool,
}

impl Reduce {
    pub(crate) const MNEMONICS: &'static [&'static str] =
        &["reduce_sum", "reduce_mean", "reduce_max", "reduce_min"];

    pub(crate) fn parse(m: &str, a: &Attrs) -> Result<Self, String> {
        let kind = match m {
            "reduce_sum" => ReduceKind::Sum,
            "reduce_mean" => ReduceKind::Mean,
            "reduce_max" => ReduceKind::Max,
            _ => ReduceKind::Min,
        };
        Ok(Reduce {
            kind,
            axes: a.usizes("axes")?,
            keepdims: a.flag("keepdims")?,
        })
    }

    fn out_shape(&self, s: &[usize]) -> Vec<usize> {
        let mut o = Vec::new();
        for (i, &d) in s.iter().enumerate() {
            if !self.axes.contains(&i) {
                o.push(d);
            } else if self.keepdims {
                o.push(1);
            }
        }
        o
    }
}

impl OpDef for Reduce {
    fn mnemonic(&self) -> &'static str {
        match self.kind {
            ReduceKind::Sum => "reduce_sum",
            ReduceKind::Mean => "reduce_mean",
            ReduceKind::Max => "reduce_max",
            ReduceKind::Min => "reduce_min",
        }
    }

    fn attrs(&self) -> Attrs {
        Attrs::default()
            .with(
                "axes",
                Attr::Ints(self.axes.iter().map(|&x| x as i64).collect()),
            )
            .with("keepdims", Attr::Int(self.keepdims as i64))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 1, 1)?;
        let x = inputs[0];
        let bool_ok = matches!(self.kind, ReduceKind::Max | ReduceKind::Min);
        if !(x.dtype.is_numeric() || bool_ok && x.dtype == DType::Bool) {
            return Err(format!(
                "{} needs a numeric tensor, got {x}",
                self.mnemonic()
            ));
        }
        if self.kind == ReduceKind::Mean && !x.dtype.is_float() {
            return Err(format!("reduce_mean needs a float tensor, got {x}"));
        }
        if self.axes.windows(2).any(|w| w[0] >= w[1]) || self.axes.iter().any(|&a| a >= x.rank()) {
            return Err(format!(
                "axes {:?} must be sorted, distinct and < rank {}",
                self.axes,
                x.rank()
            ));
        }
        Ok(vec![out(x.dtype, self.out_shape(&x.shape))?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0];
        let s = x.shape();
        let kept: Vec<usize> = s
            .iter()
            .enumerate()
            .map(|(i, &d)| if self.axes.contains(&i) { 1 } else { d })
            .collect();
        let out_n: usize = kept.iter().product();
        let count = (x.numel() / out_n.max(1)).max(if x.numel() == 0 { 0 } else { 1 });
        // Output index of every input element.
        let kstr = crate::shape::strides(&kept);
        let mut target = Vec::with_capacity(x.numel());
        crate::shape::for_each_index(s, |idx| {
            let t: usize = idx
                .iter()
                .zip(&kept)
                .zip(&kstr)
                .map(|((&i, &k), &st)| if k == 1 { 0 } else { i * st })
                .sum();
            target.push(t);
        });
        let r = match x.elems() {
            Elems::F(v) => {
                let init = match self.kind {
                    ReduceKind::Sum | ReduceKind::Mean => 0.0,
                    ReduceKind::Max => f64::NEG_INFINITY,
                    ReduceKind::Min => f64::INFINITY,
                };
                let mut acc = vec![init; out_n];
                for (&t, &e) in target.iter().zip(&v) {
                    let a = &mut acc[t];
                    *a = match self.kind {
                        ReduceKind::Sum | ReduceKind::Mean => *a + e,
                        _ if e.is_nan() || a.is_nan() => f64::NAN,
                        ReduceKind::Max => a.max(e),
                        ReduceKind::Min => a.min(e),
                    };
                }
                if self.kind == ReduceKind::Mean {
                    acc.iter_mut().for_each(|a| *a /= count as f64);
                }
                Elems::F(acc)
            }
            Elems::I(v) => {
                let (lo, hi) = int_range(x.dtype());
                let init = match self.kind {
                    ReduceKind::Sum | ReduceKind::Mean => 0,
                    ReduceKind::Max => lo,
                    ReduceKind::Min => hi,
                };
                let mut acc = vec![init; out_n];
                for (&t, &e) in target.iter().zip(&v) {
                    let a = &mut acc[t];
                    *a = match self.kind {
                        ReduceKind::Sum | ReduceKind::Mean => a.wrapping_add(e),
                        ReduceKind::Max => (*a).max(e),
                        ReduceKind::Min => (*a).min(e),
                    };
                }
                Elems::I(acc)
            }
        };
        Ok(vec![Tensor::from_elems(x.dtype(), self.out_shape(s), &r)])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType]) -> u64 {
        inputs[0].numel() as u64
    }
}

fn int_range(d: DType) -> (i64, i64) {
    match d {
        DType::I8 => (i8::MIN as i64, i8::MAX as i64),
        DType::U8 => (0, u8::MAX as i64),
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        DType::Bool => (0, 1),
        _ => (i64::MIN, i64::MAX),
    }
}
