//! Normalizations: inference batch norm, layer norm (with its mean and inverse
//! standard deviation outputs) and (log-)softmax. Statistics accumulate in f64.

use super::{arity, out, same_dtype, want_float, OpDef};
use crate::shape::{broadcast_map, norm_axis};
use crate::{Attr, Attrs, DType, Tensor, TensorType};

/// Inference batch normalization over channel dim 1:
/// `(x - mean) / sqrt(var + epsilon) * scale + bias`. Operands: x, scale, bias,
/// mean, var (each of shape [C]).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub epsilon: f64,
}

impl BatchNorm {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["batch_norm"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(BatchNorm {
            epsilon: a.float("epsilon")?,
        })
    }
}

impl OpDef for BatchNorm {
    fn mnemonic(&self) -> &'static str {
        "batch_norm"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default().with("epsilon", Attr::Float(self.epsilon))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 5, 5)?;
        let x = inputs[0];
        want_float(x, "input")?;
        if x.rank() < 2 {
            return Err(format!("batch_norm needs N x C x ..., got {x}"));
        }
        let c = x.shape[1];
        for (p, name) in inputs[1..].iter().zip(["scale", "bias", "mean", "var"]) {
            want_float(p, name)?;
            if p.shape != [c] {
                return Err(format!("{name} must have shape [{c}], got {p}"));
            }
        }
        Ok(vec![out(x.dtype, x.shape.clone())?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0];
        let c = x.shape()[1];
        let inner: usize = x.shape()[2..].iter().product();
        let p: Vec<Vec<f64>> = inputs[1..].iter().map(|t| t.to_f64_vec()).collect();
        let (scale, bias, mean, var) = (&p[0], &p[1], &p[2], &p[3]);
        let mut y = x.to_f64_vec();
        for (i, v) in y.iter_mut().enumerate() {
            let ch = (i / inner) % c;
            *v = (*v - mean[ch]) / (var[ch] + self.epsilon).sqrt() * scale[ch] + bias[ch];
        }
        Ok(vec![Tensor::from_f64(x.dtype(), x.shape().to_vec(), &y)])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType]) -> u64 {
        4 * inputs[0].numel() as u64
    }
}

/// Layer normalization over dims `axis..`: operands x, scale and optional bias (both
/// broadcast to the normalized dims); results y, mean and inverse standard deviation
/// (the last two in `stash` dtype, shaped like x with the normalized dims set to 1).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm {
    pub axis: usize,
    pub epsilon: f64,
    pub stash: DType,
}

impl LayerNorm {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["layer_norm"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(LayerNorm {
            axis: a.usize("axis")?,
            epsilon: a.float("epsilon")?,
            stash: a.dtype("stash")?,
        })
    }
}

impl OpDef for LayerNorm {
    fn mnemonic(&self) -> &'static str {
        "layer_norm"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default()
            .with("axis", Attr::Int(self.axis as i64))
            .with("epsilon", Attr::Float(self.epsilon))
            .with("stash", Attr::Type(self.stash))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 2, 3)?;
        let x = inputs[0];
        want_float(x, "input")?;
        if !self.stash.is_float() {
            return Err(format!("stash dtype must be a float, got {}", self.stash));
        }
        if self.axis >= x.rank() {
            return Err(format!("axis {} is out of range for {x}", self.axis));
        }
        let norm = &x.shape[self.axis..];
        for (p, name) in inputs[1..].iter().zip(["scale", "bias"]) {
            same_dtype(x, p, "layer_norm")?;
            if crate::shape::broadcast(&p.shape, norm).as_deref() != Some(norm) {
                return Err(format!(
                    "{name} {p} does not broadcast to the normalized dims {norm:?}"
                ));
            }
        }
        let mut stat = x.shape.clone();
        stat[self.axis..].iter_mut().for_each(|d| *d = 1);
        Ok(vec![
            out(x.dtype, x.shape.clone())?,
            out(self.stash, stat.clone())?,
            out(self.stash, stat)?,
        ])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0];
        let norm_shape = &x.shape()[self.axis..];
        let n: usize = norm_shape.iter().product();
        let rows: usize = x.shape()[..self.axis].iter().product();
        let vx = x.to_f64_vec();
        let param = |i: usize| -> Option<Vec<f64>> {
            inputs.get(i).map(|t| {
                let v = t.to_f64_vec();
                broadcast_map(t.shape(), norm_shape)
                    .into_iter()
                    .map(|j| v[j])
                    .collect()
            })
        };
        let scale = param(1).unwrap_or_default();
        let bias = param(2);
        let mut y = vec![0.0; vx.len()];
        let (mut means, mut inv_stds) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        for r in 0..rows {
            let row = &vx[r * n..(r + 1) * n];
            let mean = row.iter().sum::<f64>() / n as f64;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
            let inv = 1.0 / (var + self.epsilon).sqrt();
            for j in 0..n {
                let b = bias.as_ref().map_or(0.0, |b| b[j]);
                y[r * n + j] = (row[j] - mean) * inv * scale[j] + b;
            }
            means.push(mean);
            inv_stds.push(inv);
        }
        let mut stat = x.shape().to_vec();
        stat[self.axis..].iter_mut().for_each(|d| *d = 1);
        Ok(vec![
            Tensor::from_f64(x.dtype(), x.shape().to_vec(), &y),
            Tensor::from_f64(self.stash, stat.clone(), &means),
            Tensor::from_f64(self.stash, stat, &inv_stds),
        ])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType]) -> u64 {
        8 * inputs[0].numel() as u64
    }
}

/// Softmax (or log-softmax) along one axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Softmax {
    pub axis: usize,
    pub log: bool,
}

impl Softmax {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["softmax", "log_softmax"];

    pub(crate) fn parse(m: &str, a: &Attrs) -> Result<Self, String> {
        Ok(Softmax {
            axis: a.usize("axis")?,
            log: m == "log_softmax",
        })
    }
}

impl OpDef for Softmax {
    fn mnemonic(&self) -> &'static str {
        if self.log {
            "log_softmax"
        } else {
            "softmax"
        }
    }

    fn attrs(&self) -> Attrs {
        Attrs::default().with("axis", Attr::Int(self.axis as i64))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 1, 1)?;
        let x = inputs[0];
        want_float(x, "input")?;
        norm_axis(self.axis as i64, x.rank())?;
        Ok(vec![out(x.dtype, x.shape.clone())?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0];
        let s = x.shape();
        let len = s[self.axis];
        let inner: usize = s[self.axis + 1..].iter().product();
        let outer: usize = s[..self.axis].iter().product();
        let mut v = x.to_f64_vec();
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| o * len * inner + k * inner + i;
                let max = (0..len).map(|k| v[at(k)]).fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = (0..len).map(|k| (v[at(k)] - max).exp()).sum();
                for k in 0..len {
                    let e = v[at(k)] - max;
                    v[at(k)] = if self.log {
                        e - sum.ln()
                    } else {
                        e.exp() / sum
                    };
                }
            }
        }
        Ok(vec![Tensor::from_f64(x.dtype(), s.to_vec(), &v)])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType]) -> u64 {
        5 * inputs[0].numel() as u64
    }
}

/// RMS normalization over dims `axis..`: `x / sqrt(mean(x²) + epsilon) * scale`,
/// with `scale` broadcast to the normalized dims.
#[derive(Clone, Debug, PartialEq)]
pub struct RmsNorm {
    pub axis: usize,
    pub epsilon: f64,
}

impl RmsNorm {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["rms_norm"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(RmsNorm {
            axis: a.usize("axis")?,
            epsilon: a.float("epsilon")?,
        })
    }
}

impl OpDef for RmsNorm {
    fn mnemonic(&self) -> &'static str {
        "rms_norm"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default()
            .with("axis", Attr::Int(self.axis as i64))
            .with("epsilon", Attr::Float(self.epsilon))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 2, 2)?;
        let (x, scale) = (inputs[0], inputs[1]);
        want_float(x, "input")?;
        same_dtype(x, scale, "rms_norm")?;
        if self.axis >= x.rank() {
            return Err(format!("axis {} is out of range for {x}", self.axis));
        }
        let norm = &x.shape[self.axis..];
        if crate::shape::broadcast(&scale.shape, norm).as_deref() != Some(norm) {
            return Err(format!(
                "scale {scale} does not broadcast to the normalized dims {norm:?}"
            ));
        }
        Ok(vec![out(x.dtype, x.shape.clone())?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0];
        let norm_shape = &x.shape()[self.axis..];
        let n: usize = norm_shape.iter().product();
        let sv = inputs[1].to_f64_vec();
        let scale: Vec<f64> = broadcast_map(inputs[1].shape(), norm_shape)
            .into_iter()
            .map(|j| sv[j])
            .collect();
        let mut y = x.to_f64_vec();
        for row in y.chunks_mut(n.max(1)) {
            let ms = row.iter().map(|v| v * v).sum::<f64>() / n as f64;
            let inv = 1.0 / (ms + self.epsilon).sqrt();
            for (v, s) in row.iter_mut().zip(&scale) {
                *v *= inv * s;
            }
        }
        Ok(vec![Tensor::from_f64(x.dtype(), x.shape().to_vec(), &y)])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType]) -> u64 {
        4 * inputs[0].numel() as u64
    }
}
