//! ONNX op → IR lowering, one module per op family. `SUPPORTED` is the list users
//! see in errors; `const_operands` says which operands must be known at compile
//! time (they decide shapes), which the importer uses to freeze inputs.

mod elementwise;
mod layout;
mod misc;
mod nn;
mod reduce;
mod resize;

use crate::attrs::NodeCx;
use crate::import::{Importer, Operand};
use crate::ImportError;
use kiln_ir::shape::norm_axis;
use kiln_ir::Tensor;

/// Every ONNX op (default domain) kiln imports.
pub const SUPPORTED: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Div",
    "Dropout",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "Max",
    "MaxPool",
    "Min",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "Pad",
    "Pow",
    "Range",
    "Reciprocal",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Resize",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Tile",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// Operand positions of `op` (at `opset`) that must be compile-time constants.
pub fn const_operands(op: &str, opset: i64) -> &'static [usize] {
    match op {
        "Reshape" | "Expand" | "Tile" => &[1],
        "Slice" if opset >= 10 => &[1, 2, 3, 4],
        "Squeeze" | "Unsqueeze" | "Split" if opset >= 13 => &[1],
        "ReduceSum" if opset >= 13 => &[1],
        "ReduceMean" | "ReduceMax" | "ReduceMin" if opset >= 18 => &[1],
        "Pad" if opset >= 11 => &[1, 2, 3],
        "Resize" => &[1, 2, 3],
        "ConstantOfShape" => &[0],
        "Range" => &[0, 1, 2],
        "Dropout" => &[2],
        _ => &[],
    }
}

/// Lowers one node; returns one operand per ONNX output it supports.
pub(crate) fn convert(imp: &mut Importer, cx: &NodeCx) -> Result<Vec<Operand>, ImportError> {
    let one = |r: Result<Operand, ImportError>| r.map(|o| vec![o]);
    match cx.op {
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "Less" | "Greater" | "LessOrEqual"
        | "GreaterOrEqual" | "And" | "Or" => one(elementwise::binary(imp, cx)),
        "Max" | "Min" => one(elementwise::variadic(imp, cx)),
        "Where" => one(elementwise::select(imp, cx)),
        "Clip" => one(elementwise::clip(imp, cx)),
        "Cast" => one(elementwise::cast(imp, cx)),
        "MatMul" => one(nn::matmul(imp, cx)),
        "Gemm" => one(nn::gemm(imp, cx)),
        "Conv" => one(nn::conv(imp, cx)),
        "ConvTranspose" => one(nn::conv_transpose(imp, cx)),
        "BatchNormalization" => one(nn::batch_norm(imp, cx)),
        "LayerNormalization" => nn::layer_norm(imp, cx),
        "Softmax" | "LogSoftmax" => one(nn::softmax(imp, cx)),
        "MaxPool" | "AveragePool" => one(nn::pool(imp, cx)),
        "GlobalAveragePool" => one(nn::global_average_pool(imp, cx)),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" => one(reduce::reduce(imp, cx)),
        "Reshape" => one(layout::reshape(imp, cx)),
        "Flatten" => one(layout::flatten(imp, cx)),
        "Squeeze" => one(layout::squeeze(imp, cx)),
        "Unsqueeze" => one(layout::unsqueeze(imp, cx)),
        "Transpose" => one(layout::transpose(imp, cx)),
        "Concat" => one(layout::concat(imp, cx)),
        "Split" => layout::split(imp, cx),
        "Slice" => one(layout::slice(imp, cx)),
        "Gather" => one(layout::gather(imp, cx)),
        "Expand" => one(layout::expand(imp, cx)),
        "Tile" => one(layout::tile(imp, cx)),
        "Pad" => one(layout::pad(imp, cx)),
        "Resize" => one(resize::resize(imp, cx)),
        "Shape" => one(misc::shape(imp, cx)),
        "ConstantOfShape" => one(misc::constant_of_shape(imp, cx)),
        "Range" => one(misc::range(imp, cx)),
        "Constant" => one(misc::constant(cx)),
        "Identity" => one(imp.req(cx, 0)),
        "Dropout" => misc::dropout(imp, cx),
        _ => elementwise::unary(imp, cx).map(|o| vec![o]),
    }
}

/// Integer values of a constant operand (shapes, axes, pads).
pub(crate) fn ints_of(cx: &NodeCx, t: &Tensor, what: &str) -> Result<Vec<i64>, ImportError> {
    if !t.dtype().is_int() || t.shape().len() > 1 {
        return Err(cx.err(format!(
            "{what} must be a 1-D integer tensor, got {}",
            t.ty()
        )));
    }
    Ok(t.to_i64_vec())
}

/// Resolves possibly negative axes against a rank.
pub(crate) fn axes_of(cx: &NodeCx, axes: &[i64], rank: usize) -> Result<Vec<usize>, ImportError> {
    axes.iter()
        .map(|&a| norm_axis(a, rank).map_err(|m| cx.err(m)))
        .collect()
}

/// A non-negative integer list.
pub(crate) fn usizes(cx: &NodeCx, v: &[i64], what: &str) -> Result<Vec<usize>, ImportError> {
    v.iter()
        .map(|&x| usize::try_from(x).map_err(|_| cx.err(format!("{what} must be >= 0, got {v:?}"))))
        .collect()
}
