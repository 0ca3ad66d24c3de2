//! Neural-network ops: MatMul, Gemm (lowered to transposes, matmul, scale and add),
//! Conv / ConvTranspose and pooling (auto_pad resolved to explicit pads),
//! BatchNormalization, LayerNormalization and (Log)Softmax (opset < 13 semantics
//! through reshapes).

use super::{usizes, NodeCx};
use crate::import::{Importer, Operand};
use crate::ImportError;
use kiln_ir::op::{
    BatchNorm, Binary, BinaryKind, Conv, ConvTranspose, LayerNorm, MatMul, Pool, PoolKind, Reduce,
    ReduceKind, Reshape, Softmax, Transpose,
};
use kiln_ir::shape::norm_axis;
use kiln_ir::{DType, Tensor};

pub(crate) fn matmul(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let (a, b) = (imp.req(cx, 0)?, imp.req(cx, 1)?);
    imp.emit1(cx, MatMul::default(), &[a, b])
}

pub(crate) fn gemm(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let (mut a, mut b) = (imp.req(cx, 0)?, imp.req(cx, 1)?);
    for (o, flag) in [(&mut a, "transA"), (&mut b, "transB")] {
        if imp.ty(o).rank() != 2 {
            return Err(cx.err(format!("operands must be 2-D, got {}", imp.ty(o))));
        }
        if cx.int(flag, 0)? != 0 {
            *o = imp.emit1(cx, Transpose { perm: vec![1, 0] }, std::slice::from_ref(o))?;
        }
    }
    let dt = imp.ty(&a).dtype;
    let mut y = imp.emit1(cx, MatMul::default(), &[a, b])?;
    let alpha = cx.float("alpha", 1.0)?;
    let beta = cx.float("beta", 1.0)?;
    let mul = BinaryKind::Mul;
    if alpha != 1.0 {
        let s = Operand::Const(Tensor::scalar_f64(dt, alpha));
        y = imp.emit1(cx, Binary { kind: mul }, &[y, s])?;
    }
    if let Some(mut c) = imp.input(cx, 2)? {
        if beta != 0.0 {
            if beta != 1.0 {
                let s = Operand::Const(Tensor::scalar_f64(dt, beta));
                c = imp.emit1(cx, Binary { kind: mul }, &[c, s])?;
            }
            y = imp.emit1(
                cx,
                Binary {
                    kind: BinaryKind::Add,
                },
                &[y, c],
            )?;
        }
    }
    Ok(y)
}

/// Spatial geometry common to Conv, ConvTranspose and pooling.
struct Geometry {
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pads: Vec<usize>,
    auto_pad: String,
}

fn geometry(cx: &NodeCx, nsp: usize) -> Result<Geometry, ImportError> {
    let list = |name: &str, default: usize, n: usize| -> Result<Vec<usize>, ImportError> {
        match cx.ints(name)? {
            Some(v) if v.len() == n => usizes(cx, &v, name),
            Some(v) => Err(cx.err(format!("attribute '{name}' needs {n} values, got {v:?}"))),
            None => Ok(vec![default; n]),
        }
    };
    let auto_pad = cx.string("auto_pad", "NOTSET")?;
    if !matches!(
        auto_pad.as_str(),
        "NOTSET" | "VALID" | "SAME_UPPER" | "SAME_LOWER"
    ) {
        return Err(cx.err(format!("unknown auto_pad '{auto_pad}'")));
    }
    Ok(Geometry {
        strides: list("strides", 1, nsp)?,
        dilations: list("dilations", 1, nsp)?,
        pads: list("pads", 0, 2 * nsp)?,
        auto_pad,
    })
}

impl Geometry {
    /// Explicit pads for a window of `kernel` over `input` (spatial sizes).
    fn resolve(&self, input: &[usize], kernel: &[usize]) -> Vec<usize> {
        let nsp = input.len();
        match self.auto_pad.as_str() {
            "VALID" => vec![0; 2 * nsp],
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut p = vec![0; 2 * nsp];
                for i in 0..nsp {
                    let s = self.strides[i];
                    let out = input[i].div_ceil(s);
                    let eff = (kernel[i].max(1) - 1) * self.dilations[i] + 1;
                    let total = ((out.max(1) - 1) * s + eff).saturating_sub(input[i]);
                    let small = total / 2;
                    let (b, e) = if self.auto_pad == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    p[i] = b;
                    p[nsp + i] = e;
                }
                p
            }
            _ => self.pads.clone(),
        }
    }
}

fn spatial(imp: &Importer, cx: &NodeCx, x: &Operand) -> Result<Vec<usize>, ImportError> {
    let t = imp.ty(x);
    if t.rank() < 3 {
        return Err(cx.err(format!("input must be N x C x spatial..., got {t}")));
    }
    Ok(t.shape[2..].to_vec())
}

fn check_kernel_attr(cx: &NodeCx, kernel: &[usize]) -> Result<(), ImportError> {
    if let Some(k) = cx.ints("kernel_shape")? {
        if k.iter().map(|&v| v as usize).ne(kernel.iter().copied()) {
            return Err(cx.err(format!(
                "kernel_shape {k:?} does not match the weight's spatial dims {kernel:?}"
            )));
        }
    }
    Ok(())
}

pub(crate) fn conv(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let (x, w) = (imp.req(cx, 0)?, imp.req(cx, 1)?);
    let isp = spatial(imp, cx, &x)?;
    let wt = imp.ty(&w);
    if wt.rank() != isp.len() + 2 {
        return Err(cx.err(format!("weight {wt} must have rank {}", isp.len() + 2)));
    }
    let kernel = wt.shape[2..].to_vec();
    check_kernel_attr(cx, &kernel)?;
    let g = geometry(cx, isp.len())?;
    let op = Conv {
        pads: g.resolve(&isp, &kernel),
        strides: g.strides,
        dilations: g.dilations,
        group: usizes(cx, &[cx.int("group", 1)?], "group")?[0],
    };
    let mut ins = vec![x, w];
    ins.extend(imp.input(cx, 2)?);
    imp.emit1(cx, op, &ins)
}

pub(crate) fn conv_transpose(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let (x, w) = (imp.req(cx, 0)?, imp.req(cx, 1)?);
    let isp = spatial(imp, cx, &x)?;
    let nsp = isp.len();
    let wt = imp.ty(&w);
    if wt.rank() != nsp + 2 {
        return Err(cx.err(format!("weight {wt} must have rank {}", nsp + 2)));
    }
    let kernel = wt.shape[2..].to_vec();
    check_kernel_attr(cx, &kernel)?;
    let g = geometry(cx, nsp)?;
    let output_padding = match cx.ints("output_padding")? {
        Some(v) if v.len() == nsp => usizes(cx, &v, "output_padding")?,
        Some(v) => return Err(cx.err(format!("output_padding needs {nsp} values, got {v:?}"))),
        None => vec![0; nsp],
    };
    let output_shape = match cx.ints("output_shape")? {
        Some(v) if v.len() == nsp => Some(usizes(cx, &v, "output_shape")?),
        Some(v) if v.len() == nsp + 2 => Some(usizes(cx, &v[2..], "output_shape")?),
        Some(v) => return Err(cx.err(format!("output_shape needs {nsp} values, got {v:?}"))),
        None if g.auto_pad.starts_with("SAME") => {
            Some((0..nsp).map(|i| isp[i] * g.strides[i]).collect())
        }
        None => None,
    };
    let pads = match output_shape {
        Some(out) => {
            let mut p = vec![0i64; 2 * nsp];
            for i in 0..nsp {
                let full = g.strides[i] * (isp[i].max(1) - 1)
                    + output_padding[i]
                    + (kernel[i].max(1) - 1) * g.dilations[i]
                    + 1;
                // Negative when output_shape asks for more than the full result.
                // Halved with floor division, as the ONNX reference does.
                let total = full as i64 - out[i] as i64;
                let half = total.div_euclid(2);
                let (b, e) = if g.auto_pad == "SAME_UPPER" {
                    (half, total - half)
                } else {
                    (total - half, half)
                };
                p[i] = b;
                p[nsp + i] = e;
            }
            p
        }
        None if g.auto_pad == "VALID" => vec![0; 2 * nsp],
        None => g.pads.iter().map(|&x| x as i64).collect(),
    };
    let op = ConvTranspose {
        strides: g.strides,
        pads,
        dilations: g.dilations,
        group: usizes(cx, &[cx.int("group", 1)?], "group")?[0],
        output_padding,
    };
    let mut ins = vec![x, w];
    ins.extend(imp.input(cx, 2)?);
    imp.emit1(cx, op, &ins)
}

pub(crate) fn batch_norm(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    if cx.int("training_mode", 0)? != 0 || cx.node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(cx.err(
            "training mode (running statistics outputs) is not supported; export the model in inference mode",
        ));
    }
    let ins = (0..5)
        .map(|i| imp.req(cx, i))
        .collect::<Result<Vec<_>, _>>()?;
    let op = BatchNorm {
        epsilon: cx.float("epsilon", 1e-5)?,
    };
    imp.emit1(cx, op, &ins)
}

pub(crate) fn layer_norm(imp: &mut Importer, cx: &NodeCx) -> Result<Vec<Operand>, ImportError> {
    let x = imp.req(cx, 0)?;
    let rank = imp.ty(&x).rank();
    let axis = norm_axis(cx.int("axis", -1)?, rank).map_err(|m| cx.err(m))?;
    let stash = crate::tensor::dtype_of(cx.int("stash_type", 1)? as i32).map_err(|m| cx.err(m))?;
    let mut ins = vec![x, imp.req(cx, 1)?];
    ins.extend(imp.input(cx, 2)?);
    let op = LayerNorm {
        axis,
        epsilon: cx.float("epsilon", 1e-5)?,
        stash,
    };
    imp.emit(cx, op.into(), &ins)
}

pub(crate) fn softmax(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let x = imp.req(cx, 0)?;
    let t = imp.ty(&x);
    let log = cx.op == "LogSoftmax";
    let default = if cx.opset >= 13 { -1 } else { 1 };
    let axis = norm_axis(cx.int("axis", default)?, t.rank()).map_err(|m| cx.err(m))?;
    if cx.opset >= 13 || axis + 1 == t.rank() {
        return imp.emit1(cx, Softmax { axis, log }, &[x]);
    }
    // Before opset 13 the input is coerced to 2-D at `axis`.
    let rows: usize = t.shape[..axis].iter().product();
    let cols: usize = t.shape[axis..].iter().product();
    let flat = imp.emit1(
        cx,
        Reshape {
            shape: vec![rows, cols],
        },
        &[x],
    )?;
    let y = imp.emit1(cx, Softmax { axis: 1, log }, &[flat])?;
    imp.emit1(cx, Reshape { shape: t.shape }, &[y])
}

pub(crate) fn pool(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    if cx.node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(cx.err("the Indices output of MaxPool is not supported"));
    }
    let x = imp.req(cx, 0)?;
    let isp = spatial(imp, cx, &x)?;
    let kernel = cx
        .ints("kernel_shape")?
        .ok_or_else(|| cx.err("missing attribute 'kernel_shape'"))?;
    let kernel = usizes(cx, &kernel, "kernel_shape")?;
    if kernel.len() != isp.len() {
        return Err(cx.err(format!(
            "kernel_shape {kernel:?} needs {} values for input with {} spatial dims",
            isp.len(),
            isp.len()
        )));
    }
    let g = geometry(cx, isp.len())?;
    let op = Pool {
        kind: if cx.op == "MaxPool" {
            PoolKind::Max
        } else {
            PoolKind::Avg
        },
        pads: g.resolve(&isp, &kernel),
        kernel,
        strides: g.strides,
        dilations: g.dilations,
        ceil_mode: cx.int("ceil_mode", 0)? != 0,
        count_include_pad: cx.int("count_include_pad", 0)? != 0,
    };
    imp.emit1(cx, op, &[x])
}

pub(crate) fn global_average_pool(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let x = imp.req(cx, 0)?;
    let t = imp.ty(&x);
    if t.rank() < 3 || t.dtype == DType::Bool {
        return Err(cx.err(format!("input must be a float N x C x spatial..., got {t}")));
    }
    let op = Reduce {
        kind: ReduceKind::Mean,
        axes: (2..t.rank()).collect(),
        keepdims: true,
    };
    imp.emit1(cx, op, &[x])
}
