//! Resize (opset 10 to 19): scales or sizes (optionally for a subset of axes, with
//! an aspect-ratio policy) become a static output shape plus per-axis scales.

use super::{axes_of, ints_of, usizes, NodeCx};
use crate::import::{Importer, Operand};
use crate::ImportError;
use kiln_ir::op::{CoordMode, NearestMode, Resize, ResizeMode};

pub(crate) fn resize(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let x = imp.req(cx, 0)?;
    let t = imp.ty(&x);
    let r = t.rank();
    if cx.int("antialias", 0)? != 0 {
        return Err(cx.err("antialias is not supported"));
    }
    let mode = match cx.string("mode", "nearest")?.as_str() {
        "nearest" => ResizeMode::Nearest,
        "linear" => ResizeMode::Linear,
        "cubic" => ResizeMode::Cubic,
        m => return Err(cx.err(format!("unknown mode '{m}'"))),
    };
    let (coord, nearest) = if cx.opset < 11 {
        (CoordMode::Asymmetric, NearestMode::Floor)
    } else {
        let coord = match cx
            .string("coordinate_transformation_mode", "half_pixel")?
            .as_str()
        {
            "half_pixel" => CoordMode::HalfPixel,
            "half_pixel_symmetric" => CoordMode::HalfPixelSymmetric,
            "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
            "align_corners" => CoordMode::AlignCorners,
            "asymmetric" => CoordMode::Asymmetric,
            "tf_crop_and_resize" => CoordMode::TfCropAndResize,
            m => return Err(cx.err(format!("unknown coordinate_transformation_mode '{m}'"))),
        };
        let nearest = match cx.string("nearest_mode", "round_prefer_floor")?.as_str() {
            "round_prefer_floor" => NearestMode::RoundPreferFloor,
            "round_prefer_ceil" => NearestMode::RoundPreferCeil,
            "floor" => NearestMode::Floor,
            "ceil" => NearestMode::Ceil,
            m => return Err(cx.err(format!("unknown nearest_mode '{m}'"))),
        };
        (coord, nearest)
    };
    let (roi_in, scales_in, sizes_in) = if cx.opset < 11 {
        (None, imp.konst(cx, 1)?, None)
    } else {
        (imp.konst(cx, 1)?, imp.konst(cx, 2)?, imp.konst(cx, 3)?)
    };
    let axes = match cx.ints("axes")? {
        Some(a) => axes_of(cx, &a, r)?,
        None => (0..r).collect(),
    };
    let n = axes.len();
    let mut scales = vec![1.0f64; r];
    let mut sizes = t.shape.clone();
    let nonempty = |o: &Option<kiln_ir::Tensor>| o.as_ref().filter(|v| v.numel() > 0).cloned();
    if let Some(sz) = nonempty(&sizes_in) {
        let sz = usizes(cx, &ints_of(cx, &sz, "sizes")?, "sizes")?;
        if sz.len() != n {
            return Err(cx.err(format!("sizes {sz:?} needs {n} values")));
        }
        let policy = cx.string("keep_aspect_ratio_policy", "stretch")?;
        let ratio = |k: usize| sz[k] as f64 / t.shape[axes[k]].max(1) as f64;
        let common = match policy.as_str() {
            "stretch" => None,
            "not_larger" => Some((0..n).map(ratio).fold(f64::INFINITY, f64::min)),
            "not_smaller" => Some((0..n).map(ratio).fold(0.0, f64::max)),
            p => return Err(cx.err(format!("unknown keep_aspect_ratio_policy '{p}'"))),
        };
        for (k, &a) in axes.iter().enumerate() {
            match common {
                None => {
                    sizes[a] = sz[k];
                    scales[a] = ratio(k);
                }
                Some(s) => {
                    sizes[a] = (s * t.shape[a] as f64).round() as usize;
                    scales[a] = s;
                }
            }
        }
    } else if let Some(sc) = nonempty(&scales_in) {
        if !sc.dtype().is_float() || sc.numel() != n {
            return Err(cx.err(format!("scales must be {n} floats, got {}", sc.ty())));
        }
        for (k, s) in sc.to_f64_vec().into_iter().enumerate() {
            if s.is_nan() || s <= 0.0 {
                return Err(cx.err(format!("scale {s} must be positive")));
            }
            let a = axes[k];
            scales[a] = s;
            sizes[a] = (t.shape[a] as f64 * s).floor() as usize;
        }
    } else {
        return Err(cx.err("needs either scales or sizes"));
    }
    let mut roi = Vec::new();
    if coord == CoordMode::TfCropAndResize {
        roi = [vec![0.0; r], vec![1.0; r]].concat();
        if let Some(rt) = nonempty(&roi_in) {
            let v = rt.to_f64_vec();
            if v.len() != 2 * n {
                return Err(cx.err(format!("roi needs {} values, got {}", 2 * n, v.len())));
            }
            for (k, &a) in axes.iter().enumerate() {
                roi[a] = v[k];
                roi[r + a] = v[n + k];
            }
        }
    }
    let op = Resize {
        mode,
        coord,
        nearest,
        sizes,
        scales,
        roi,
        cubic_a: cx.float("cubic_coeff_a", -0.75)?,
        exclude_outside: cx.int("exclude_outside", 0)? != 0,
        extrapolation: cx.float("extrapolation_value", 0.0)?,
    };
    imp.emit1(cx, op, &[x])
}
