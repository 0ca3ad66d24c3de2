//! Max and average pooling over N-d spatial dims (layout NC[spatial]), with
//! strides, dilations, explicit pads, ceil mode and `count_include_pad`.

use super::{arity, out, want_float, OpDef};
use crate::shape::{for_each_index, strides};
use crate::{Attr, Attrs, Tensor, TensorType};

/// Which pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

/// A pooling window op.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub kind: PoolKind,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    /// Begin pads of every spatial dim, then end pads.
    pub pads: Vec<usize>,
    pub dilations: Vec<usize>,
    pub ceil_mode: bool,
    /// Average only: divide by the window size including padding.
    pub count_include_pad: bool,
}

impl Pool {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["max_pool", "avg_pool"];

    pub(crate) fn parse(m: &str, a: &Attrs) -> Result<Self, String> {
        Ok(Pool {
            kind: if m == "max_pool" {
                PoolKind::Max
            } else {
                PoolKind::Avg
            },
            kernel: a.usizes("kernel")?,
            strides: a.usizes("strides")?,
            pads: a.usizes("pads")?,
            dilations: a.usizes("dilations")?,
            ceil_mode: a.flag("ceil_mode")?,
            count_include_pad: a.flag("count_include_pad")?,
        })
    }

    /// Output spatial sizes. In ceil mode a last window that would start in the end
    /// padding is dropped (as PyTorch and onnxruntime do).
    fn out_spatial(&self, x: &[usize]) -> Result<Vec<usize>, String> {
        let nsp = x.len() - 2;
        (0..nsp)
            .map(|i| {
                let (eff, padded) = super::window(
                    self.kernel[i],
                    self.dilations[i],
                    x[2 + i],
                    (self.pads[i], self.pads[nsp + i]),
                )?;
                if eff > padded {
                    return Err(format!(
                        "window extent {eff} exceeds padded input {padded} in spatial dim {i}"
                    ));
                }
                let s = self.strides[i];
                let mut o = if self.ceil_mode {
                    (padded - eff).div_ceil(s) + 1
                } else {
                    (padded - eff) / s + 1
                };
                if self.ceil_mode && (o - 1) * s >= x[2 + i] + self.pads[i] {
                    o -= 1;
                }
                Ok(o)
            })
            .collect()
    }
}

impl OpDef for Pool {
    fn mnemonic(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "max_pool",
            PoolKind::Avg => "avg_pool",
        }
    }

    fn attrs(&self) -> Attrs {
        let ints = |v: &[usize]| Attr::Ints(v.iter().map(|&x| x as i64).collect());
        Attrs::default()
            .with("kernel", ints(&self.kernel))
            .with("strides", ints(&self.strides))
            .with("pads", ints(&self.pads))
            .with("dilations", ints(&self.dilations))
            .with("ceil_mode", Attr::Int(self.ceil_mode as i64))
            .with(
                "count_include_pad",
                Attr::Int(self.count_include_pad as i64),
            )
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 1, 1)?;
        let x = inputs[0];
        if self.kind == PoolKind::Avg {
            want_float(x, "input")?;
        } else if !x.dtype.is_numeric() {
            return Err(format!("max_pool needs a numeric tensor, got {x}"));
        }
        if x.rank() < 3 {
            return Err(format!("pooling needs N x C x spatial, got {x}"));
        }
        let nsp = x.rank() - 2;
        if self.kernel.len() != nsp
            || self.strides.len() != nsp
            || self.dilations.len() != nsp
            || self.pads.len() != 2 * nsp
        {
            return Err(format!(
                "{nsp} spatial dims need {nsp} kernel sizes, strides, dilations and {} pads",
                2 * nsp
            ));
        }
        if self.kernel.contains(&0) || self.strides.contains(&0) || self.dilations.contains(&0) {
            return Err("kernel sizes, strides and dilations must be >= 1".into());
        }
        let mut shape = x.shape[..2].to_vec();
        shape.extend(self.out_spatial(&x.shape)?);
        Ok(vec![out(x.dtype, shape)?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0];
        let xs = x.shape();
        let nsp = xs.len() - 2;
        let osp = self.out_spatial(xs)?;
        let isp = &xs[2..];
        let istr = strides(isp);
        let in_sz: usize = isp.iter().product();
        let planes = xs[0] * xs[1];
        let vx = x.to_f64_vec();
        // For every output position: the input offsets in its window and its divisor.
        let mut windows: Vec<(Vec<usize>, f64)> = Vec::new();
        for_each_index(&osp, |o| {
            let mut offs = Vec::new();
            let mut padded_count = 0usize;
            for_each_index(&self.kernel, |k| {
                let mut off = 0usize;
                let mut inside = true;
                let mut in_padded = true;
                for d in 0..nsp {
                    let pos = (o[d] * self.strides[d] + k[d] * self.dilations[d]) as i64
                        - self.pads[d] as i64;
                    if pos < 0 || pos >= isp[d] as i64 {
                        inside = false;
                    }
                    if pos >= (isp[d] + self.pads[nsp + d]) as i64 {
                        in_padded = false;
                    }
                    if inside {
                        off += pos as usize * istr[d];
                    }
                }
                if inside {
                    offs.push(off);
                }
                if in_padded {
                    padded_count += 1;
                }
            });
            let div = if self.count_include_pad {
                padded_count
            } else {
                offs.len()
            };
            windows.push((offs, div as f64));
        });
        let mut y = Vec::with_capacity(planes * windows.len());
        for p in 0..planes {
            let plane = &vx[p * in_sz..(p + 1) * in_sz];
            for (offs, div) in &windows {
                y.push(match self.kind {
                    PoolKind::Max => offs.iter().fold(f64::NEG_INFINITY, |m, &o| {
                        let v = plane[o];
                        if v.is_nan() || m.is_nan() {
                            f64::NAN
                        } else {
                            m.max(v)
                        }
                    }),
                    PoolKind::Avg => offs.iter().map(|&o| plane[o]).sum::<f64>() / div,
                });
            }
        }
        let mut shape = xs[..2].to_vec();
        shape.extend(osp);
        Ok(vec![Tensor::from_f64(x.dtype(), shape, &y)])
    }

    fn flops(&self, _: &[&TensorType], outputs: &[TensorType]) -> u64 {
        (outputs[0].numel() * self.kernel.iter().product::<usize>()) as u64
    }
}
