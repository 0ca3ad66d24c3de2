//! Convolutions over N-d spatial dims (layout NC[spatial]): `conv` and
//! `conv_transpose`, with strides, explicit begin/end pads, dilations and groups.
//! Auto-padding is resolved by the frontend into explicit pads.

use super::{arity, out, same_dtype, want_float, OpDef};
use crate::shape::{for_each_index, strides};
use crate::{Attr, Attrs, Tensor, TensorType};

/// Convolution (cross-correlation, as ONNX and PyTorch define it).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    pub strides: Vec<usize>,
    /// Begin pads of every spatial dim, then end pads.
    pub pads: Vec<usize>,
    pub dilations: Vec<usize>,
    pub group: usize,
}

/// Transposed convolution (the gradient of `conv` with respect to its input).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTranspose {
    pub strides: Vec<usize>,
    /// Begin pads of every spatial dim, then end pads. Negative pads extend the
    /// output (as an `output_shape` larger than the full result asks).
    pub pads: Vec<i64>,
    pub dilations: Vec<usize>,
    pub group: usize,
    pub output_padding: Vec<usize>,
}

fn geometry_attrs(s: &[usize], p: Vec<i64>, d: &[usize], g: usize) -> Attrs {
    let ints = |v: &[usize]| Attr::Ints(v.iter().map(|&x| x as i64).collect());
    Attrs::default()
        .with("strides", ints(s))
        .with("pads", Attr::Ints(p))
        .with("dilations", ints(d))
        .with("group", Attr::Int(g as i64))
}

fn check_geometry<P>(nsp: usize, s: &[usize], p: &[P], d: &[usize]) -> Result<(), String> {
    if s.len() != nsp || d.len() != nsp || p.len() != 2 * nsp {
        return Err(format!(
            "{nsp} spatial dims need {nsp} strides, {nsp} dilations and {} pads, got {}, {} and {}",
            2 * nsp,
            s.len(),
            d.len(),
            p.len()
        ));
    }
    if s.contains(&0) || d.contains(&0) {
        return Err("strides and dilations must be >= 1".into());
    }
    Ok(())
}

/// Checks X, W, optional bias, shared by both convolutions. Returns the number of
/// spatial dims.
fn check_operands(inputs: &[&TensorType], what: &str) -> Result<usize, String> {
    arity(inputs, 2, 3)?;
    let (x, w) = (inputs[0], inputs[1]);
    want_float(x, "input")?;
    same_dtype(x, w, what)?;
    if x.rank() < 3 || w.rank() != x.rank() {
        return Err(format!(
            "{what} needs input N x C x spatial and a weight of the same rank, got {x} and {w}"
        ));
    }
    if let Some(b) = inputs.get(2) {
        same_dtype(x, b, what)?;
        if b.rank() != 1 {
            return Err(format!("{what} bias must be rank 1, got {b}"));
        }
    }
    Ok(x.rank() - 2)
}

impl Conv {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["conv"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(Conv {
            strides: a.usizes("strides")?,
            pads: a.usizes("pads")?,
            dilations: a.usizes("dilations")?,
            group: a.usize("group")?,
        })
    }

    fn out_spatial(&self, x: &[usize], w: &[usize]) -> Result<Vec<usize>, String> {
        let nsp = x.len() - 2;
        (0..nsp)
            .map(|i| {
                let (eff, padded) = super::window(
                    w[2 + i],
                    self.dilations[i],
                    x[2 + i],
                    (self.pads[i], self.pads[nsp + i]),
                )?;
                if eff > padded {
                    return Err(format!(
                        "kernel extent {eff} exceeds padded input {padded} in spatial dim {i}"
                    ));
                }
                Ok((padded - eff) / self.strides[i] + 1)
            })
            .collect()
    }
}

impl OpDef for Conv {
    fn mnemonic(&self) -> &'static str {
        "conv"
    }

    fn attrs(&self) -> Attrs {
        geometry_attrs(
            &self.strides,
            self.pads.iter().map(|&x| x as i64).collect(),
            &self.dilations,
            self.group,
        )
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let nsp = check_operands(inputs, "conv")?;
        check_geometry(nsp, &self.strides, &self.pads, &self.dilations)?;
        let (x, w) = (inputs[0], inputs[1]);
        let (c, m, g) = (x.shape[1], w.shape[0], self.group);
        if g == 0 || c % g != 0 || m % g != 0 || w.shape[1] * g != c {
            return Err(format!(
                "group {g}: input channels {c} and weight {w} do not fit (weight dim 1 must be C/group, dim 0 divisible by group)"
            ));
        }
        if let Some(b) = inputs.get(2) {
            if b.shape[0] != m {
                return Err(format!("bias {b} must have {m} elements (output channels)"));
            }
        }
        let mut shape = vec![x.shape[0], m];
        shape.extend(self.out_spatial(&x.shape, &w.shape)?);
        Ok(vec![out(x.dtype, shape)?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let (x, w) = (inputs[0], inputs[1]);
        let (xs, ws) = (x.shape(), w.shape());
        let nsp = xs.len() - 2;
        let osp = self.out_spatial(xs, ws)?;
        let (n, c, m, g) = (xs[0], xs[1], ws[0], self.group);
        let (cg, mg) = (c / g, m / g);
        let isp = &xs[2..];
        let ksp = &ws[2..];
        let (in_sz, k_sz, o_sz) = (
            isp.iter().product::<usize>(),
            ksp.iter().product::<usize>(),
            osp.iter().product::<usize>(),
        );
        let istr = strides(isp);
        // taps[o * k_sz + k]: input spatial offset read by output o at kernel tap k.
        let mut taps = vec![None; o_sz * k_sz];
        let mut oi = 0;
        for_each_index(&osp, |o| {
            let mut ki = 0;
            for_each_index(ksp, |k| {
                let mut off = 0usize;
                let mut inside = true;
                for d in 0..nsp {
                    let pos = (o[d] * self.strides[d] + k[d] * self.dilations[d]) as i64
                        - self.pads[d] as i64;
                    if pos < 0 || pos >= isp[d] as i64 {
                        inside = false;
                        break;
                    }
                    off += pos as usize * istr[d];
                }
                taps[oi * k_sz + ki] = inside.then_some(off);
                ki += 1;
            });
            oi += 1;
        });
        let vx = x.to_f64_vec();
        let vw = w.to_f64_vec();
        let vb = inputs.get(2).map(|b| b.to_f64_vec());
        let mut y = vec![0.0f64; n * m * o_sz];
        for b in 0..n {
            for oc in 0..m {
                let gi = oc / mg;
                let yrow = &mut y[(b * m + oc) * o_sz..(b * m + oc + 1) * o_sz];
                if let Some(vb) = &vb {
                    yrow.iter_mut().for_each(|v| *v = vb[oc]);
                }
                for icl in 0..cg {
                    let ic = gi * cg + icl;
                    let xin = &vx[(b * c + ic) * in_sz..(b * c + ic + 1) * in_sz];
                    let wk = &vw[(oc * cg + icl) * k_sz..(oc * cg + icl + 1) * k_sz];
                    for (o, yv) in yrow.iter_mut().enumerate() {
                        let t = &taps[o * k_sz..(o + 1) * k_sz];
                        let mut acc = 0.0;
                        for (tap, &wv) in t.iter().zip(wk) {
                            if let Some(off) = tap {
                                acc += xin[*off] * wv;
                            }
                        }
                        *yv += acc;
                    }
                }
            }
        }
        let mut shape = vec![n, m];
        shape.extend(osp);
        Ok(vec![Tensor::from_f64(x.dtype(), shape, &y)])
    }

    fn flops(&self, inputs: &[&TensorType], outputs: &[TensorType]) -> u64 {
        let w = inputs[1];
        let per_out: usize = w.shape[1..].iter().product();
        2 * (outputs[0].numel() * per_out) as u64
    }
}

impl ConvTranspose {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["conv_transpose"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(ConvTranspose {
            strides: a.usizes("strides")?,
            pads: a.ints("pads")?,
            dilations: a.usizes("dilations")?,
            group: a.usize("group")?,
            output_padding: a.usizes("output_padding")?,
        })
    }

    fn out_spatial(&self, x: &[usize], w: &[usize]) -> Result<Vec<usize>, String> {
        let nsp = x.len() - 2;
        (0..nsp)
            .map(|i| {
                if x[2 + i] == 0 || w[2 + i] == 0 {
                    return Err(format!("spatial dim {i} of the input or kernel is 0"));
                }
                let wide = |v: usize| v as i128;
                let full = wide(self.strides[i]) * wide(x[2 + i] - 1)
                    + wide(self.output_padding[i])
                    + wide(w[2 + i] - 1) * wide(self.dilations[i])
                    + 1;
                let n = full - self.pads[i] as i128 - self.pads[nsp + i] as i128;
                if n <= 0 || n > usize::MAX as i128 {
                    return Err(format!(
                        "pads {:?} remove the whole output ({full}) in spatial dim {i}",
                        self.pads
                    ));
                }
                Ok(n as usize)
            })
            .collect()
    }
}

impl OpDef for ConvTranspose {
    fn mnemonic(&self) -> &'static str {
        "conv_transpose"
    }

    fn attrs(&self) -> Attrs {
        geometry_attrs(
            &self.strides,
            self.pads.clone(),
            &self.dilations,
            self.group,
        )
        .with(
            "output_padding",
            Attr::Ints(self.output_padding.iter().map(|&x| x as i64).collect()),
        )
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let nsp = check_operands(inputs, "conv_transpose")?;
        check_geometry(nsp, &self.strides, &self.pads, &self.dilations)?;
        if self.output_padding.len() != nsp {
            return Err(format!("output_padding needs {nsp} values"));
        }
        let (x, w) = (inputs[0], inputs[1]);
        let (c, g) = (x.shape[1], self.group);
        if g == 0 || w.shape[0] != c || c % g != 0 {
            return Err(format!(
                "group {g}: weight {w} must have {c} (input channels) as dim 0, divisible by group"
            ));
        }
        let m = w.shape[1] * g;
        if let Some(b) = inputs.get(2) {
            if b.shape[0] != m {
                return Err(format!("bias {b} must have {m} elements (output channels)"));
            }
        }
        let mut shape = vec![x.shape[0], m];
        shape.extend(self.out_spatial(&x.shape, &w.shape)?);
        Ok(vec![out(x.dtype, shape)?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let (x, w) = (inputs[0], inputs[1]);
        let (xs, ws) = (x.shape(), w.shape());
        let nsp = xs.len() - 2;
        let osp = self.out_spatial(xs, ws)?;
        let (n, c, g) = (xs[0], xs[1], self.group);
        let (cg, mg) = (c / g, ws[1]);
        let m = mg * g;
        let isp = &xs[2..];
        let ksp = &ws[2..];
        let (in_sz, k_sz, o_sz) = (
            isp.iter().product::<usize>(),
            ksp.iter().product::<usize>(),
            osp.iter().product::<usize>(),
        );
        let ostr = strides(&osp);
        // taps[i * k_sz + k]: output spatial offset written by input i at kernel tap k.
        let mut taps = vec![None; in_sz * k_sz];
        let mut ii = 0;
        for_each_index(isp, |i| {
            let mut ki = 0;
            for_each_index(ksp, |k| {
                let mut off = 0usize;
                let mut inside = true;
                for d in 0..nsp {
                    let pos =
                        (i[d] * self.strides[d] + k[d] * self.dilations[d]) as i64 - self.pads[d];
                    if pos < 0 || pos >= osp[d] as i64 {
                        inside = false;
                        break;
                    }
                    off += pos as usize * ostr[d];
                }
                taps[ii * k_sz + ki] = inside.then_some(off);
                ki += 1;
            });
            ii += 1;
        });
        let vx = x.to_f64_vec();
        let vw = w.to_f64_vec();
        let mut y = vec![0.0f64; n * m * o_sz];
        for b in 0..n {
            for ic in 0..c {
                let gi = ic / cg;
                let xin = &vx[(b * c + ic) * in_sz..(b * c + ic + 1) * in_sz];
                for ocl in 0..mg {
                    let oc = gi * mg + ocl;
                    let wk = &vw[(ic * mg + ocl) * k_sz..(ic * mg + ocl + 1) * k_sz];
                    let yrow = &mut y[(b * m + oc) * o_sz..(b * m + oc + 1) * o_sz];
                    for (i, &xv) in xin.iter().enumerate() {
                        for (tap, &wv) in taps[i * k_sz..(i + 1) * k_sz].iter().zip(wk) {
                            if let Some(off) = tap {
                                yrow[*off] += xv * wv;
                            }
                        }
                    }
                }
            }
        }
        if let Some(bias) = inputs.get(2) {
            let vb = bias.to_f64_vec();
            for (row, v) in y.chunks_mut(o_sz).enumerate() {
                let bv = vb[row % m];
                v.iter_mut().for_each(|e| *e += bv);
            }
        }
        let mut shape = vec![n, m];
        shape.extend(osp);
        Ok(vec![Tensor::from_f64(x.dtype(), shape, &y)])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType]) -> u64 {
        let (x, w) = (inputs[0], inputs[1]);
        let per_in: usize = w.shape[1..].iter().product();
        2 * (x.numel() * per_in) as u64
    }
}
