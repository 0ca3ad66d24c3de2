//! `resize`: nearest, (multi-)linear and cubic interpolation to a static output
//! shape, with the ONNX coordinate transformation modes. Interpolation is separable:
//! each resized axis is processed in turn with per-output taps (index, weight).

use super::{arity, out, want_float, OpDef};
use crate::{Attr, Attrs, Tensor, TensorType};

/// Interpolation mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    Nearest,
    Linear,
    Cubic,
}

/// How an output coordinate maps to an input coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordMode {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

/// Rounding of the input coordinate in nearest mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

const MODES: [(ResizeMode, &str); 3] = [
    (ResizeMode::Nearest, "nearest"),
    (ResizeMode::Linear, "linear"),
    (ResizeMode::Cubic, "cubic"),
];
const COORDS: [(CoordMode, &str); 6] = [
    (CoordMode::HalfPixel, "half_pixel"),
    (CoordMode::HalfPixelSymmetric, "half_pixel_symmetric"),
    (CoordMode::PytorchHalfPixel, "pytorch_half_pixel"),
    (CoordMode::AlignCorners, "align_corners"),
    (CoordMode::Asymmetric, "asymmetric"),
    (CoordMode::TfCropAndResize, "tf_crop_and_resize"),
];
const NEAREST: [(NearestMode, &str); 4] = [
    (NearestMode::RoundPreferFloor, "round_prefer_floor"),
    (NearestMode::RoundPreferCeil, "round_prefer_ceil"),
    (NearestMode::Floor, "floor"),
    (NearestMode::Ceil, "ceil"),
];

fn lookup<T: Copy + PartialEq>(
    table: &[(T, &'static str)],
    s: &str,
    what: &str,
) -> Result<T, String> {
    table
        .iter()
        .find(|(_, n)| *n == s)
        .map(|(v, _)| *v)
        .ok_or_else(|| format!("unknown {what} '{s}'"))
}

fn name<T: PartialEq>(table: &[(T, &'static str)], v: T) -> &'static str {
    table
        .iter()
        .find(|(t, _)| *t == v)
        .map(|(_, n)| *n)
        .unwrap_or("?")
}

/// Resizes to `sizes`. `scales[d]` is the scale the coordinate transform uses for
/// dim `d` (output/input unless the model gave its own); `roi` (begins then ends,
/// normalized) is used by `tf_crop_and_resize` only.
#[derive(Clone, Debug, PartialEq)]
pub struct Resize {
    pub mode: ResizeMode,
    pub coord: CoordMode,
    pub nearest: NearestMode,
    pub sizes: Vec<usize>,
    pub scales: Vec<f64>,
    pub roi: Vec<f64>,
    pub cubic_a: f64,
    pub exclude_outside: bool,
    pub extrapolation: f64,
}

/// One output position's taps along an axis; `None` is "outside: extrapolate".
pub type Taps = Option<Vec<(usize, f64)>>;

impl Resize {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["resize"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(Resize {
            mode: lookup(&MODES, a.str("mode")?, "resize mode")?,
            coord: lookup(&COORDS, a.str("coord")?, "coordinate mode")?,
            nearest: lookup(&NEAREST, a.str("nearest")?, "nearest mode")?,
            sizes: a.usizes("sizes")?,
            scales: a.floats("scales")?,
            roi: a.floats("roi")?,
            cubic_a: a.float("cubic_a")?,
            exclude_outside: a.flag("exclude_outside")?,
            extrapolation: a.float("extrapolation")?,
        })
    }

    /// The input coordinate of output index `x` along dim `d`.
    fn source_coord(&self, d: usize, x: usize, len_in: usize) -> f64 {
        // The ONNX reference measures the resized length as scale * input length
        // (unrounded), which matters when a scale does not divide evenly.
        let len_in_f = len_in as f64;
        let (x, s) = (x as f64, self.scales[d]);
        let len_out = s * len_in_f;
        match self.coord {
            CoordMode::HalfPixel => (x + 0.5) / s - 0.5,
            CoordMode::HalfPixelSymmetric => {
                let adj = self.sizes[d] as f64 / len_out;
                let offset = len_in_f / 2.0 * (1.0 - adj);
                offset + (x + 0.5) / s - 0.5
            }
            CoordMode::PytorchHalfPixel => {
                if len_out > 1.0 {
                    (x + 0.5) / s - 0.5
                } else {
                    0.0
                }
            }
            CoordMode::AlignCorners => {
                if len_out == 1.0 {
                    0.0
                } else {
                    x * (len_in_f - 1.0) / (len_out - 1.0)
                }
            }
            CoordMode::Asymmetric => x / s,
            CoordMode::TfCropAndResize => {
                let r = self.sizes.len();
                let (start, end) = (self.roi[d], self.roi[r + d]);
                if len_out > 1.0 {
                    start * (len_in_f - 1.0)
                        + x * (end - start) * (len_in_f - 1.0) / (len_out - 1.0)
                } else {
                    0.5 * (start + end) * (len_in_f - 1.0)
                }
            }
        }
    }

    /// The input positions and weights output position `x` of axis `d` reads
    /// from an axis of `n` elements; `None` where it falls outside.
    pub fn taps(&self, d: usize, x: usize, n: usize) -> Taps {
        let c = self.source_coord(d, x, n);
        let last = n as i64 - 1;
        if self.coord == CoordMode::TfCropAndResize && (c < 0.0 || c > last as f64) {
            return None;
        }
        let clamp = |i: i64| i.clamp(0, last) as usize;
        Some(match self.mode {
            ResizeMode::Nearest => {
                let i = match self.nearest {
                    NearestMode::RoundPreferFloor => {
                        if c.fract() == 0.5 || c.fract() == -0.5 {
                            c.floor()
                        } else {
                            c.round()
                        }
                    }
                    NearestMode::RoundPreferCeil => {
                        if c.fract() == 0.5 || c.fract() == -0.5 {
                            c.ceil()
                        } else {
                            c.round()
                        }
                    }
                    NearestMode::Floor => c.floor(),
                    NearestMode::Ceil => c.ceil(),
                };
                vec![(clamp(i as i64), 1.0)]
            }
            ResizeMode::Linear => {
                let c = if self.coord == CoordMode::TfCropAndResize {
                    c
                } else {
                    c.clamp(0.0, last as f64)
                };
                let base = c.floor();
                let r = c - base;
                let b = base as i64;
                vec![(clamp(b), 1.0 - r), (clamp(b + 1), r)]
            }
            ResizeMode::Cubic => {
                let base = c.floor();
                let r = c - base;
                let a = self.cubic_a;
                let w = |t: f64| {
                    let t = t.abs();
                    if t <= 1.0 {
                        ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
                    } else if t < 2.0 {
                        ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
                    } else {
                        0.0
                    }
                };
                let b = base as i64;
                let mut taps: Vec<(i64, f64)> =
                    (-1..=2).map(|k| (b + k, w(r - k as f64))).collect();
                if self.exclude_outside {
                    taps.iter_mut()
                        .filter(|(i, _)| *i < 0 || *i > last)
                        .for_each(|t| t.1 = 0.0);
                    let sum: f64 = taps.iter().map(|t| t.1).sum();
                    taps.iter_mut().for_each(|t| t.1 /= sum);
                }
                taps.into_iter().map(|(i, w)| (clamp(i), w)).collect()
            }
        })
    }
}

impl OpDef for Resize {
    fn mnemonic(&self) -> &'static str {
        "resize"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default()
            .with("mode", Attr::Str(name(&MODES, self.mode).into()))
            .with("coord", Attr::Str(name(&COORDS, self.coord).into()))
            .with("nearest", Attr::Str(name(&NEAREST, self.nearest).into()))
            .with(
                "sizes",
                Attr::Ints(self.sizes.iter().map(|&x| x as i64).collect()),
            )
            .with("scales", Attr::Floats(self.scales.clone()))
            .with("roi", Attr::Floats(self.roi.clone()))
            .with("cubic_a", Attr::Float(self.cubic_a))
            .with("exclude_outside", Attr::Int(self.exclude_outside as i64))
            .with("extrapolation", Attr::Float(self.extrapolation))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 1, 1)?;
        let x = inputs[0];
        want_float(x, "input")?;
        let r = x.rank();
        if self.sizes.len() != r || self.scales.len() != r {
            return Err(format!("{x} needs {r} sizes and scales"));
        }
        if self.coord == CoordMode::TfCropAndResize && self.roi.len() != 2 * r {
            return Err(format!("tf_crop_and_resize needs {} roi values", 2 * r));
        }
        if self.scales.iter().any(|&s| s.is_nan() || s <= 0.0) {
            return Err(format!("scales {:?} must be positive", self.scales));
        }
        if x.shape
            .iter()
            .zip(&self.sizes)
            .any(|(&i, &o)| i == 0 && o > 0)
        {
            return Err(format!("cannot resize the empty dims of {x}"));
        }
        Ok(vec![out(x.dtype, self.sizes.clone())?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0];
        let mut shape = x.shape().to_vec();
        let mut v = x.to_f64_vec();
        // `valid[i]` is false once some axis put element i outside the crop.
        let mut valid = vec![true; v.len()];
        for d in 0..shape.len() {
            let n_in = shape[d];
            let taps: Vec<Taps> = (0..self.sizes[d]).map(|o| self.taps(d, o, n_in)).collect();
            let outer: usize = shape[..d].iter().product();
            let inner: usize = shape[d + 1..].iter().product();
            let n_out = self.sizes[d];
            let mut nv = vec![0.0; outer * n_out * inner];
            let mut nvalid = vec![true; nv.len()];
            for o in 0..outer {
                for (k, t) in taps.iter().enumerate() {
                    for j in 0..inner {
                        let dst = (o * n_out + k) * inner + j;
                        match t {
                            None => nvalid[dst] = false,
                            Some(t) => {
                                let mut acc = 0.0;
                                let mut ok = true;
                                for &(i, w) in t {
                                    let src = (o * n_in + i) * inner + j;
                                    if w != 0.0 {
                                        acc += w * v[src];
                                    }
                                    ok &= valid[src];
                                }
                                nv[dst] = acc;
                                nvalid[dst] = ok;
                            }
                        }
                    }
                }
            }
            v = nv;
            valid = nvalid;
            shape[d] = n_out;
        }
        for (e, ok) in v.iter_mut().zip(&valid) {
            if !ok {
                *e = self.extrapolation;
            }
        }
        Ok(vec![Tensor::from_f64(x.dtype(), shape, &v)])
    }

    fn flops(&self, _: &[&TensorType], outputs: &[TensorType]) -> u64 {
        4 * outputs[0].numel() as u64
    }
}
