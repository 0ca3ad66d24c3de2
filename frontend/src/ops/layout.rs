//! Shape and data-movement ops. Shape operands (target shapes, axes, starts/ends,
//! pads, repeats, split sizes) must be compile-time constants and become static
//! IR attributes; Flatten, Squeeze and Unsqueeze become reshapes, Split becomes
//! slices.

use super::{axes_of, ints_of, usizes, NodeCx};
use crate::import::{Importer, Operand};
use crate::ImportError;
use kiln_ir::op::{Concat, Expand, Gather, Pad, PadMode, Reshape, Slice, Tile, Transpose};
use kiln_ir::shape::{broadcast, norm_axis};

fn reshape_to(
    imp: &mut Importer,
    cx: &NodeCx,
    x: Operand,
    shape: Vec<usize>,
) -> Result<Operand, ImportError> {
    if imp.ty(&x).shape == shape {
        return Ok(x);
    }
    imp.emit1(cx, Reshape { shape }, &[x])
}

pub(crate) fn reshape(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let x = imp.req(cx, 0)?;
    let t = imp.ty(&x);
    let spec = if cx.opset >= 5 {
        let s = imp
            .konst(cx, 1)?
            .ok_or_else(|| cx.err("needs input 1 (shape)"))?;
        ints_of(cx, &s, "shape")?
    } else {
        cx.ints("shape")?
            .ok_or_else(|| cx.err("missing attribute 'shape'"))?
    };
    let allowzero = cx.int("allowzero", 0)? != 0;
    let mut shape = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        shape.push(match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                1
            }
            0 if !allowzero => *t.shape.get(i).ok_or_else(|| {
                cx.err(format!(
                    "shape {spec:?} copies dim {i}, but the input {t} has no such dim"
                ))
            })?,
            d if d >= 0 => d as usize,
            _ => return Err(cx.err(format!("invalid target shape {spec:?}"))),
        });
    }
    if let Some(i) = infer {
        let known: usize = shape.iter().product();
        if known == 0 || !t.numel().is_multiple_of(known) {
            return Err(cx.err(format!("cannot reshape {t} to {spec:?}")));
        }
        shape[i] = t.numel() / known;
    }
    if shape.iter().product::<usize>() != t.numel() {
        return Err(cx.err(format!(
            "cannot reshape {t} ({} elements) to {spec:?}",
            t.numel()
        )));
    }
    reshape_to(imp, cx, x, shape)
}

pub(crate) fn flatten(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let x = imp.req(cx, 0)?;
    let t = imp.ty(&x);
    let r = t.rank() as i64;
    let a = cx.int("axis", 1)?;
    if a < -r || a > r {
        return Err(cx.err(format!("axis {a} is out of range for {t}")));
    }
    let a = if a < 0 { a + r } else { a } as usize;
    let shape = vec![t.shape[..a].iter().product(), t.shape[a..].iter().product()];
    reshape_to(imp, cx, x, shape)
}

fn axes_operand(imp: &Importer, cx: &NodeCx) -> Result<Option<Vec<i64>>, ImportError> {
    if cx.opset >= 13 {
        match imp.konst(cx, 1)? {
            Some(t) => Ok(Some(ints_of(cx, &t, "axes")?)),
            None => Ok(None),
        }
    } else {
        cx.ints("axes")
    }
}

pub(crate) fn squeeze(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let x = imp.req(cx, 0)?;
    let t = imp.ty(&x);
    let axes = match axes_operand(imp, cx)? {
        Some(a) => axes_of(cx, &a, t.rank())?,
        None => (0..t.rank()).filter(|&i| t.shape[i] == 1).collect(),
    };
    if let Some(&a) = axes.iter().find(|&&a| t.shape[a] != 1) {
        return Err(cx.err(format!("cannot squeeze dim {a} of {t}: its size is not 1")));
    }
    let shape = (0..t.rank())
        .filter(|i| !axes.contains(i))
        .map(|i| t.shape[i])
        .collect();
    reshape_to(imp, cx, x, shape)
}

pub(crate) fn unsqueeze(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let x = imp.req(cx, 0)?;
    let t = imp.ty(&x);
    let axes = axes_operand(imp, cx)?.ok_or_else(|| cx.err("needs axes"))?;
    let out_rank = t.rank() + axes.len();
    let mut axes = axes_of(cx, &axes, out_rank)?;
    axes.sort_unstable();
    if axes.windows(2).any(|w| w[0] == w[1]) {
        return Err(cx.err(format!("repeated axes {axes:?}")));
    }
    let mut dims = t.shape.iter();
    let shape = (0..out_rank)
        .map(|i| {
            if axes.contains(&i) {
                1
            } else {
                *dims.next().unwrap_or(&1)
            }
        })
        .collect();
    reshape_to(imp, cx, x, shape)
}

pub(crate) fn transpose(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let x = imp.req(cx, 0)?;
    let r = imp.ty(&x).rank();
    let perm = match cx.ints("perm")? {
        Some(p) => usizes(cx, &p, "perm")?,
        None => (0..r).rev().collect(),
    };
    imp.emit1(cx, Transpose { perm }, &[x])
}

pub(crate) fn concat(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let ins = (0..cx.node.input.len())
        .map(|i| imp.req(cx, i))
        .collect::<Result<Vec<_>, _>>()?;
    let first = ins
        .first()
        .ok_or_else(|| cx.err("needs at least one input"))?;
    let rank = imp.ty(first).rank();
    let axis = cx
        .int_opt("axis")?
        .ok_or_else(|| cx.err("missing attribute 'axis'"))?;
    let axis = norm_axis(axis, rank).map_err(|m| cx.err(m))?;
    imp.emit1(cx, Concat { axis }, &ins)
}

fn full_slice(shape: &[usize]) -> Slice {
    Slice {
        starts: vec![0; shape.len()],
        ends: shape.iter().map(|&d| d as i64).collect(),
        steps: vec![1; shape.len()],
    }
}

pub(crate) fn split(imp: &mut Importer, cx: &NodeCx) -> Result<Vec<Operand>, ImportError> {
    let x = imp.req(cx, 0)?;
    let t = imp.ty(&x);
    let axis = norm_axis(cx.int("axis", 0)?, t.rank()).map_err(|m| cx.err(m))?;
    let dim = t.shape[axis];
    let n_out = cx.node.output.len();
    let sizes = if cx.opset >= 13 {
        imp.konst(cx, 1)?
            .map(|s| ints_of(cx, &s, "split"))
            .transpose()?
    } else {
        cx.ints("split")?
    };
    let sizes = match sizes {
        Some(s) => usizes(cx, &s, "split")?,
        None => {
            let n = cx.int("num_outputs", n_out as i64)? as usize;
            if n == 0 {
                return Err(cx.err("needs at least one output"));
            }
            let chunk = dim.div_ceil(n);
            (0..n)
                .map(|i| chunk.min(dim.saturating_sub(i * chunk)))
                .collect()
        }
    };
    if sizes.iter().sum::<usize>() != dim || sizes.len() != n_out {
        return Err(cx.err(format!(
            "split sizes {sizes:?} must sum to dim {axis} of {t} ({dim}) and give {n_out} outputs"
        )));
    }
    let mut out = Vec::new();
    let mut start = 0;
    for s in sizes {
        let mut sl = full_slice(&t.shape);
        sl.starts[axis] = start as i64;
        sl.ends[axis] = (start + s) as i64;
        out.push(imp.emit1(cx, sl, std::slice::from_ref(&x))?);
        start += s;
    }
    Ok(out)
}

pub(crate) fn slice(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let x = imp.req(cx, 0)?;
    let t = imp.ty(&x);
    let (starts, ends, axes, steps) = if cx.opset >= 10 {
        let get = |i: usize, what: &str| -> Result<Option<Vec<i64>>, ImportError> {
            imp.konst(cx, i)?.map(|v| ints_of(cx, &v, what)).transpose()
        };
        (
            get(1, "starts")?.ok_or_else(|| cx.err("needs starts"))?,
            get(2, "ends")?.ok_or_else(|| cx.err("needs ends"))?,
            get(3, "axes")?,
            get(4, "steps")?,
        )
    } else {
        (
            cx.ints("starts")?
                .ok_or_else(|| cx.err("missing attribute 'starts'"))?,
            cx.ints("ends")?
                .ok_or_else(|| cx.err("missing attribute 'ends'"))?,
            cx.ints("axes")?,
            None,
        )
    };
    let axes = match axes {
        Some(a) => axes_of(cx, &a, t.rank())?,
        None => (0..starts.len()).collect(),
    };
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(cx.err("starts, ends, axes and steps must have the same length"));
    }
    let mut sl = full_slice(&t.shape);
    for (k, &a) in axes.iter().enumerate() {
        let d = t.shape[a] as i64;
        let step = steps[k];
        if step == 0 {
            return Err(cx.err("slice step must not be 0"));
        }
        let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (s, e) = (norm(starts[k]), norm(ends[k]));
        let (s, e) = if step > 0 {
            (s.clamp(0, d), e.clamp(0, d))
        } else {
            (
                s.clamp(-1, d - 1).max(if d > 0 { 0 } else { -1 }),
                e.clamp(-1, d - 1),
            )
        };
        sl.starts[a] = s;
        sl.ends[a] = e;
        sl.steps[a] = step;
    }
    imp.emit1(cx, sl, &[x])
}

pub(crate) fn gather(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let (x, i) = (imp.req(cx, 0)?, imp.req(cx, 1)?);
    let axis = norm_axis(cx.int("axis", 0)?, imp.ty(&x).rank()).map_err(|m| cx.err(m))?;
    imp.emit1(cx, Gather { axis }, &[x, i])
}

pub(crate) fn expand(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let x = imp.req(cx, 0)?;
    let t = imp.ty(&x);
    let s = imp
        .konst(cx, 1)?
        .ok_or_else(|| cx.err("needs input 1 (shape)"))?;
    let spec = usizes(cx, &ints_of(cx, &s, "shape")?, "shape")?;
    let shape = broadcast(&t.shape, &spec)
        .ok_or_else(|| cx.err(format!("{t} does not broadcast with shape {spec:?}")))?;
    if shape == t.shape {
        return Ok(x);
    }
    imp.emit1(cx, Expand { shape }, &[x])
}

pub(crate) fn tile(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let x = imp.req(cx, 0)?;
    let r = imp
        .konst(cx, 1)?
        .ok_or_else(|| cx.err("needs input 1 (repeats)"))?;
    let repeats = usizes(cx, &ints_of(cx, &r, "repeats")?, "repeats")?;
    imp.emit1(cx, Tile { repeats }, &[x])
}

pub(crate) fn pad(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let x = imp.req(cx, 0)?;
    let t = imp.ty(&x);
    let r = t.rank();
    let mode = match cx.string("mode", "constant")?.as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        m => return Err(cx.err(format!("unknown pad mode '{m}'"))),
    };
    let (raw, value, axes) = if cx.opset >= 11 {
        let p = imp
            .konst(cx, 1)?
            .ok_or_else(|| cx.err("needs input 1 (pads)"))?;
        let v = match imp.konst(cx, 2)? {
            Some(v) if v.numel() == 1 => v.to_f64_vec()[0],
            Some(v) => {
                return Err(cx.err(format!("constant_value must be a scalar, got {}", v.ty())))
            }
            None => 0.0,
        };
        let axes = imp
            .konst(cx, 3)?
            .map(|a| ints_of(cx, &a, "axes"))
            .transpose()?;
        (ints_of(cx, &p, "pads")?, v, axes)
    } else {
        (
            cx.ints("pads")?
                .ok_or_else(|| cx.err("missing attribute 'pads'"))?,
            cx.float("value", 0.0)?,
            None,
        )
    };
    let axes = match axes {
        Some(a) => axes_of(cx, &a, r)?,
        None => (0..r).collect(),
    };
    if raw.len() != 2 * axes.len() {
        return Err(cx.err(format!("pads {raw:?} needs {} values", 2 * axes.len())));
    }
    let mut pads = vec![0i64; 2 * r];
    let n = axes.len();
    for (k, &a) in axes.iter().enumerate() {
        pads[a] = raw[k];
        pads[r + a] = raw[n + k];
    }
    imp.emit1(cx, Pad { pads, mode, value }, &[x])
}
