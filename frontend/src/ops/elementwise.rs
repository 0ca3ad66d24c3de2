//! Elementwise ops: unary math and activations, broadcasting binaries, variadic
//! Max/Min, Where, Clip (lowered to Max/Min) and Cast.

use super::NodeCx;
use crate::import::{Importer, Operand};
use crate::tensor::dtype_of;
use crate::ImportError;
use kiln_ir::op::{Binary, BinaryKind, Cast, Unary, UnaryKind, Where};
use kiln_ir::Tensor;

pub(crate) fn unary(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    use UnaryKind::*;
    let kind = match cx.op {
        "Neg" => Neg,
        "Abs" => Abs,
        "Sqrt" => Sqrt,
        "Exp" => Exp,
        "Log" => Log,
        "Tanh" => Tanh,
        "Erf" => Erf,
        "Sigmoid" => Sigmoid,
        "Relu" => Relu,
        "Reciprocal" => Reciprocal,
        "Floor" => Floor,
        "Ceil" => Ceil,
        "Not" => Not,
        "LeakyRelu" => LeakyRelu {
            alpha: cx.float("alpha", 0.01)?,
        },
        "HardSigmoid" => HardSigmoid {
            alpha: cx.float("alpha", 0.2)?,
            beta: cx.float("beta", 0.5)?,
        },
        "HardSwish" => HardSwish,
        other => return Err(cx.err(format!("no lowering for '{other}'"))),
    };
    let x = imp.req(cx, 0)?;
    imp.emit1(cx, Unary { kind }, &[x])
}

pub(crate) fn binary(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    use BinaryKind::*;
    let kind = match cx.op {
        "Add" => Add,
        "Sub" => Sub,
        "Mul" => Mul,
        "Div" => Div,
        "Pow" => Pow,
        "Equal" => Equal,
        "Less" => Less,
        "Greater" => Greater,
        "LessOrEqual" => LessEqual,
        "GreaterOrEqual" => GreaterEqual,
        "And" => And,
        _ => Or,
    };
    if cx.opset < 7 && cx.int("broadcast", 0)? != 0 {
        return Err(cx.err("legacy (opset < 7) axis broadcasting is not supported; convert the model to opset 7 or newer"));
    }
    let (a, b) = (imp.req(cx, 0)?, imp.req(cx, 1)?);
    imp.emit1(cx, Binary { kind }, &[a, b])
}

pub(crate) fn variadic(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let kind = if cx.op == "Max" {
        BinaryKind::Max
    } else {
        BinaryKind::Min
    };
    let mut acc = imp.req(cx, 0)?;
    for i in 1..cx.node.input.len() {
        let b = imp.req(cx, i)?;
        acc = imp.emit1(cx, Binary { kind }, &[acc, b])?;
    }
    Ok(acc)
}

pub(crate) fn select(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let ins = [imp.req(cx, 0)?, imp.req(cx, 1)?, imp.req(cx, 2)?];
    imp.emit1(cx, Where, &ins)
}

/// `Clip(x, lo, hi)` = `Min(Max(x, lo), hi)`; bounds are attributes before opset 11
/// and optional operands after.
pub(crate) fn clip(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let x = imp.req(cx, 0)?;
    let dt = imp.ty(&x).dtype;
    let (lo, hi) = if cx.opset < 11 {
        let bound = |name: &str| -> Result<Option<Operand>, ImportError> {
            Ok(if cx.has(name) {
                Some(Operand::Const(Tensor::scalar_f64(dt, cx.float(name, 0.0)?)))
            } else {
                None
            })
        };
        (bound("min")?, bound("max")?)
    } else {
        (imp.input(cx, 1)?, imp.input(cx, 2)?)
    };
    let mut y = x;
    if let Some(lo) = lo {
        y = imp.emit1(
            cx,
            Binary {
                kind: BinaryKind::Max,
            },
            &[y, lo],
        )?;
    }
    if let Some(hi) = hi {
        y = imp.emit1(
            cx,
            Binary {
                kind: BinaryKind::Min,
            },
            &[y, hi],
        )?;
    }
    Ok(y)
}

pub(crate) fn cast(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let to = cx
        .int_opt("to")?
        .ok_or_else(|| cx.err("missing attribute 'to'"))?;
    let to = dtype_of(to as i32).map_err(|m| cx.err(m))?;
    let x = imp.req(cx, 0)?;
    imp.emit1(cx, Cast { to }, &[x])
}
