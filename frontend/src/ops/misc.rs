//! Ops that produce compile-time constants (Shape, ConstantOfShape, Range,
//! Constant) and inference-mode Dropout, which forwards its input.

use super::{ints_of, usizes, NodeCx};
use crate::import::{Importer, Operand, MAX_CREATED_BYTES};
use crate::tensor::tensor_from_proto;
use crate::ImportError;
use kiln_ir::{checked_bytes, DType, Tensor};

fn created(cx: &NodeCx, dtype: DType, shape: &[usize]) -> Result<(), ImportError> {
    let b = checked_bytes(dtype, shape).map_err(|m| cx.err(m))?;
    if b > MAX_CREATED_BYTES {
        return Err(cx.err(format!(
            "would create a {b}-byte constant; kiln creates constants of at most {} MiB",
            MAX_CREATED_BYTES >> 20
        )));
    }
    Ok(())
}

pub(crate) fn shape(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let x = imp.req(cx, 0)?;
    let s: Vec<i64> = imp.ty(&x).shape.iter().map(|&d| d as i64).collect();
    let r = s.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(cx.int("start", 0)?);
    let end = clamp(cx.int("end", r)?);
    let v = if start < end {
        s[start..end].to_vec()
    } else {
        vec![]
    };
    Ok(Operand::Const(Tensor::from_i64(
        DType::I64,
        vec![v.len()],
        &v,
    )))
}

pub(crate) fn constant_of_shape(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let s = imp
        .konst(cx, 0)?
        .ok_or_else(|| cx.err("needs input 0 (shape)"))?;
    let shape = usizes(cx, &ints_of(cx, &s, "shape")?, "shape")?;
    let value = match cx.tensor("value")? {
        Some(t) => tensor_from_proto(t, None)?,
        None => Tensor::scalar_f64(DType::F32, 0.0),
    };
    if value.numel() != 1 {
        return Err(cx.err("attribute 'value' must hold one element"));
    }
    created(cx, value.dtype(), &shape)?;
    let n: usize = shape.iter().product();
    let one = value.reshaped(vec![]);
    Ok(Operand::Const(one.select(
        shape,
        std::iter::repeat_n(Some(0), n),
        &[],
    )))
}

pub(crate) fn range(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let get = |i: usize| -> Result<Tensor, ImportError> {
        let t = imp
            .konst(cx, i)?
            .ok_or_else(|| cx.err(format!("needs input {i}")))?;
        if t.numel() != 1 {
            return Err(cx.err(format!("input {i} must be a scalar, got {}", t.ty())));
        }
        Ok(t)
    };
    let (start, limit, delta) = (get(0)?, get(1)?, get(2)?);
    let dt = start.dtype();
    let (s, l, d) = (
        start.to_f64_vec()[0],
        limit.to_f64_vec()[0],
        delta.to_f64_vec()[0],
    );
    if d == 0.0 || !d.is_finite() || !s.is_finite() || !l.is_finite() {
        return Err(cx.err(format!("range({s}, {l}, {d}) is not a finite range")));
    }
    let n = ((l - s) / d).ceil().max(0.0);
    if n > (MAX_CREATED_BYTES / dt.size() as u64) as f64 {
        return Err(cx.err(format!("range({s}, {l}, {d}) has too many elements ({n})")));
    }
    let n = n as usize;
    let t = if dt.is_float() {
        let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
        Tensor::from_f64(dt, vec![n], &v)
    } else {
        let (s, d) = (start.to_i64_vec()[0], delta.to_i64_vec()[0]);
        let v: Vec<i64> = (0..n as i64).map(|i| s + i * d).collect();
        Tensor::from_i64(dt, vec![n], &v)
    };
    Ok(Operand::Const(t))
}

pub(crate) fn constant(cx: &NodeCx) -> Result<Operand, ImportError> {
    let t = if let Some(t) = cx.tensor("value")? {
        tensor_from_proto(t, None)?
    } else if cx.has("value_float") {
        Tensor::scalar_f64(DType::F32, cx.float("value_float", 0.0)?)
    } else if let Some(v) = cx.floats("value_floats")? {
        let v: Vec<f64> = v.into_iter().map(|x| x as f64).collect();
        Tensor::from_f64(DType::F32, vec![v.len()], &v)
    } else if let Some(v) = cx.int_opt("value_int")? {
        Tensor::from_i64(DType::I64, vec![], &[v])
    } else if let Some(v) = cx.ints("value_ints")? {
        Tensor::from_i64(DType::I64, vec![v.len()], &v)
    } else {
        return Err(cx.err(
            "needs a tensor, float(s) or int(s) value; sparse and string constants are not supported",
        ));
    };
    Ok(Operand::Const(t))
}

pub(crate) fn dropout(imp: &mut Importer, cx: &NodeCx) -> Result<Vec<Operand>, ImportError> {
    let x = imp.req(cx, 0)?;
    let training = match imp.konst(cx, 2)? {
        Some(t) => t.to_i64_vec().first().copied().unwrap_or(0) != 0,
        None => cx.int("is_test", 1)? == 0 && cx.opset < 7,
    };
    if training {
        return Err(cx.err("training-mode Dropout is not supported; export in inference mode"));
    }
    let shape = imp.ty(&x).shape;
    let n: usize = shape.iter().product();
    created(cx, DType::Bool, &shape)?;
    let mask = Tensor::from_i64(DType::Bool, shape, &vec![1; n]);
    Ok(vec![x, Operand::Const(mask)])
}
