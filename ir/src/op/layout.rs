//! Data-movement ops with static attributes: reshape, transpose, concat, slice,
//! expand (broadcast), tile and pad. They copy element bytes and so work for every
//! dtype.

use super::{arity, out, OpDef};
use crate::shape::{broadcast, broadcast_map, for_each_index, strides};
use crate::{Attr, Attrs, Tensor, TensorType};

fn ints(v: &[usize]) -> Attr {
    Attr::Ints(v.iter().map(|&x| x as i64).collect())
}

/// Output element `i` reads input element `map(idx_of_i)`; `None` means fill.
fn gather_by_index(
    x: &Tensor,
    out_shape: Vec<usize>,
    fill: &[u8],
    mut map: impl FnMut(&[usize]) -> Option<usize>,
) -> Tensor {
    let mut src = Vec::with_capacity(out_shape.iter().product());
    for_each_index(&out_shape, |idx| src.push(map(idx)));
    x.select(out_shape, src.into_iter(), fill)
}

/// Reinterprets the elements with a new static shape of equal element count.
#[derive(Clone, Debug, PartialEq)]
pub struct Reshape {
    pub shape: Vec<usize>,
}

impl Reshape {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["reshape"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(Reshape {
            shape: a.usizes("shape")?,
        })
    }
}

impl OpDef for Reshape {
    fn mnemonic(&self) -> &'static str {
        "reshape"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default().with("shape", ints(&self.shape))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 1, 1)?;
        let x = inputs[0];
        let t = out(x.dtype, self.shape.clone())?;
        if t.numel() != x.numel() {
            return Err(format!(
                "cannot reshape {x} ({} elements) to {:?} ({} elements)",
                x.numel(),
                self.shape,
                t.numel()
            ));
        }
        Ok(vec![t])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        Ok(vec![inputs[0].reshaped(self.shape.clone())])
    }

    fn flops(&self, _: &[&TensorType], _: &[TensorType]) -> u64 {
        0
    }
}

/// Permutes dims: output dim `i` is input dim `perm[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Transpose {
    pub perm: Vec<usize>,
}

impl Transpose {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["transpose"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(Transpose {
            perm: a.usizes("perm")?,
        })
    }
}

impl OpDef for Transpose {
    fn mnemonic(&self) -> &'static str {
        "transpose"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default().with("perm", ints(&self.perm))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 1, 1)?;
        let x = inputs[0];
        let mut seen = vec![false; x.rank()];
        if self.perm.len() != x.rank()
            || self
                .perm
                .iter()
                .any(|&p| p >= x.rank() || std::mem::replace(&mut seen[p], true))
        {
            return Err(format!(
                "perm {:?} is not a permutation of the dims of {x}",
                self.perm
            ));
        }
        Ok(vec![out(
            x.dtype,
            self.perm.iter().map(|&p| x.shape[p]).collect(),
        )?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0];
        let st = strides(x.shape());
        let shape: Vec<usize> = self.perm.iter().map(|&p| x.shape()[p]).collect();
        let perm = &self.perm;
        Ok(vec![gather_by_index(x, shape, &[], |idx| {
            Some(idx.iter().zip(perm).map(|(&i, &p)| i * st[p]).sum())
        })])
    }

    fn flops(&self, _: &[&TensorType], _: &[TensorType]) -> u64 {
        0
    }
}

/// Joins operands along `axis`.
#[derive(Clone, Debug, PartialEq)]
pub struct Concat {
    pub axis: usize,
}

impl Concat {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["concat"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(Concat {
            axis: a.usize("axis")?,
        })
    }
}

impl OpDef for Concat {
    fn mnemonic(&self) -> &'static str {
        "concat"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default().with("axis", Attr::Int(self.axis as i64))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 1, usize::MAX)?;
        let first = inputs[0];
        if self.axis >= first.rank() {
            return Err(format!("axis {} is out of range for {first}", self.axis));
        }
        let mut shape = first.shape.clone();
        shape[self.axis] = 0;
        for t in inputs {
            let same_other = t.rank() == first.rank()
                && (0..t.rank()).all(|d| d == self.axis || t.shape[d] == first.shape[d]);
            if t.dtype != first.dtype || !same_other {
                return Err(format!(
                    "operands {first} and {t} differ outside axis {}",
                    self.axis
                ));
            }
            shape[self.axis] += t.shape[self.axis];
        }
        Ok(vec![out(first.dtype, shape)?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let a = self.axis;
        let outer: usize = inputs[0].shape()[..a].iter().product();
        let inner: usize = inputs[0].shape()[a + 1..].iter().product();
        let es = inputs[0].dtype().size();
        let mut bytes = Vec::new();
        for o in 0..outer {
            for t in inputs {
                let chunk = t.shape()[a] * inner * es;
                bytes.extend_from_slice(&t.bytes()[o * chunk..(o + 1) * chunk]);
            }
        }
        let mut shape = inputs[0].shape().to_vec();
        shape[a] = inputs.iter().map(|t| t.shape()[a]).sum();
        Ok(vec![Tensor::from_bytes(
            inputs[0].dtype(),
            shape,
            bytes.into(),
        )?])
    }

    fn flops(&self, _: &[&TensorType], _: &[TensorType]) -> u64 {
        0
    }
}

/// Strided slice over every dim. With a positive step, start and end lie in
/// `0..=dim`; with a negative step, in `-1..dim` (`end = -1` means "through index
/// 0"). A range running the wrong way is empty.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    pub steps: Vec<i64>,
}

impl Slice {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["slice"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(Slice {
            starts: a.ints("starts")?,
            ends: a.ints("ends")?,
            steps: a.ints("steps")?,
        })
    }

    fn counts(&self, shape: &[usize]) -> Result<Vec<usize>, String> {
        if self.starts.len() != shape.len()
            || self.ends.len() != shape.len()
            || self.steps.len() != shape.len()
        {
            return Err(format!(
                "slice of rank {} needs {} starts, ends and steps",
                shape.len(),
                shape.len()
            ));
        }
        (0..shape.len())
            .map(|i| {
                let (s, e, st, d) = (self.starts[i], self.ends[i], self.steps[i], shape[i] as i64);
                let ok = if st > 0 {
                    0 <= s && s <= d && 0 <= e && e <= d
                } else {
                    st < 0 && -1 <= e && e < d && -1 <= s && s < d
                };
                if !ok {
                    return Err(format!(
                        "dim {i} (size {d}): start {s}, end {e}, step {st} is not a normalized range"
                    ));
                }
                let n = if st > 0 {
                    ((e - s).max(0) as u64).div_ceil(st as u64) as i64
                } else {
                    ((s - e).max(0) as u64).div_ceil((-st) as u64) as i64
                };
                Ok(n as usize)
            })
            .collect()
    }
}

impl OpDef for Slice {
    fn mnemonic(&self) -> &'static str {
        "slice"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default()
            .with("starts", Attr::Ints(self.starts.clone()))
            .with("ends", Attr::Ints(self.ends.clone()))
            .with("steps", Attr::Ints(self.steps.clone()))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 1, 1)?;
        let x = inputs[0];
        Ok(vec![out(x.dtype, self.counts(&x.shape)?)?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0];
        let shape = self.counts(x.shape())?;
        let st = strides(x.shape());
        Ok(vec![gather_by_index(x, shape, &[], |idx| {
            Some(
                idx.iter()
                    .enumerate()
                    .map(|(d, &i)| (self.starts[d] + i as i64 * self.steps[d]) as usize * st[d])
                    .sum(),
            )
        })])
    }

    fn flops(&self, _: &[&TensorType], _: &[TensorType]) -> u64 {
        0
    }
}

/// Broadcasts the operand to `shape` (numpy rules; `shape` is the full result).
#[derive(Clone, Debug, PartialEq)]
pub struct Expand {
    pub shape: Vec<usize>,
}

impl Expand {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["expand"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(Expand {
            shape: a.usizes("shape")?,
        })
    }
}

impl OpDef for Expand {
    fn mnemonic(&self) -> &'static str {
        "expand"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default().with("shape", ints(&self.shape))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 1, 1)?;
        let x = inputs[0];
        if broadcast(&x.shape, &self.shape).as_deref() != Some(&self.shape[..]) {
            return Err(format!("{x} does not broadcast to {:?}", self.shape));
        }
        Ok(vec![out(x.dtype, self.shape.clone())?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0];
        let map = broadcast_map(x.shape(), &self.shape);
        Ok(vec![x.select(
            self.shape.clone(),
            map.into_iter().map(Some),
            &[],
        )])
    }

    fn flops(&self, _: &[&TensorType], _: &[TensorType]) -> u64 {
        0
    }
}

/// Repeats the operand `repeats[d]` times along each dim.
#[derive(Clone, Debug, PartialEq)]
pub struct Tile {
    pub repeats: Vec<usize>,
}

impl Tile {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["tile"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(Tile {
            repeats: a.usizes("repeats")?,
        })
    }
}

impl OpDef for Tile {
    fn mnemonic(&self) -> &'static str {
        "tile"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default().with("repeats", ints(&self.repeats))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 1, 1)?;
        let x = inputs[0];
        if self.repeats.len() != x.rank() {
            return Err(format!(
                "{x} needs {} repeats, got {:?}",
                x.rank(),
                self.repeats
            ));
        }
        let mut shape = Vec::with_capacity(x.rank());
        for (d, r) in x.shape.iter().zip(&self.repeats) {
            shape.push(d.checked_mul(*r).ok_or("tile result too large")?);
        }
        Ok(vec![out(x.dtype, shape)?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0];
        let xs = x.shape();
        let st = strides(xs);
        let shape: Vec<usize> = xs.iter().zip(&self.repeats).map(|(d, r)| d * r).collect();
        Ok(vec![gather_by_index(x, shape, &[], |idx| {
            Some(
                idx.iter()
                    .enumerate()
                    .map(|(d, &i)| (i % xs[d]) * st[d])
                    .sum(),
            )
        })])
    }

    fn flops(&self, _: &[&TensorType], _: &[TensorType]) -> u64 {
        0
    }
}

/// How `pad` fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

const PAD_MODES: [(PadMode, &str); 4] = [
    (PadMode::Constant, "constant"),
    (PadMode::Reflect, "reflect"),
    (PadMode::Edge, "edge"),
    (PadMode::Wrap, "wrap"),
];

/// Pads (or, with negative pads, crops) every dim.
#[derive(Clone, Debug, PartialEq)]
pub struct Pad {
    /// Begin pads of every dim, then end pads.
    pub pads: Vec<i64>,
    pub mode: PadMode,
    /// The fill for constant mode.
    pub value: f64,
}

impl Pad {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["pad"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        let m = a.str("mode")?;
        let mode = PAD_MODES
            .iter()
            .find(|(_, n)| *n == m)
            .ok_or_else(|| format!("unknown pad mode '{m}'"))?
            .0;
        Ok(Pad {
            pads: a.ints("pads")?,
            mode,
            value: a.float("value")?,
        })
    }

    fn out_shape(&self, s: &[usize]) -> Result<Vec<usize>, String> {
        let r = s.len();
        if self.pads.len() != 2 * r {
            return Err(format!(
                "rank {r} needs {} pads, got {}",
                2 * r,
                self.pads.len()
            ));
        }
        (0..r)
            .map(|d| {
                let n = s[d] as i128 + self.pads[d] as i128 + self.pads[r + d] as i128;
                if n > usize::MAX as i128 {
                    return Err(format!("pads {:?} overflow dim {d}", self.pads));
                }
                if n < 0 {
                    return Err(format!("pads crop dim {d} (size {}) below zero", s[d]));
                }
                if self.mode != PadMode::Constant && s[d] == 0 && n > 0 {
                    return Err(format!("cannot {:?}-pad an empty dim {d}", self.mode));
                }
                Ok(n as usize)
            })
            .collect()
    }
}

impl OpDef for Pad {
    fn mnemonic(&self) -> &'static str {
        "pad"
    }

    fn attrs(&self) -> Attrs {
        let mode = PAD_MODES.iter().find(|(m, _)| *m == self.mode).unwrap().1;
        Attrs::default()
            .with("pads", Attr::Ints(self.pads.clone()))
            .with("mode", Attr::Str(mode.into()))
            .with("value", Attr::Float(self.value))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 1, 1)?;
        let x = inputs[0];
        Ok(vec![out(x.dtype, self.out_shape(&x.shape)?)?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0];
        let xs = x.shape();
        let shape = self.out_shape(xs)?;
        let st = strides(xs);
        let fill = Tensor::scalar_f64(x.dtype(), self.value);
        Ok(vec![gather_by_index(x, shape, &fill.bytes()[..], |idx| {
            let mut off = 0usize;
            for (d, &o) in idx.iter().enumerate() {
                let n = xs[d] as i64;
                let mut i = o as i64 - self.pads[d];
                if i < 0 || i >= n {
                    i = match self.mode {
                        PadMode::Constant => return None,
                        PadMode::Edge => i.clamp(0, n - 1),
                        PadMode::Wrap => i.rem_euclid(n),
                        PadMode::Reflect => {
                            if n == 1 {
                                0
                            } else {
                                let p = 2 * (n - 1);
                                let m = i.rem_euclid(p);
                                if m < n {
                                    m
                                } else {
                                    p - m
                                }
                            }
                        }
                    };
                }
                off += i as usize * st[d];
            }
            Some(off)
        })])
    }

    fn flops(&self, _: &[&TensorType], _: &[TensorType]) -> u64 {
        0
    }
}
