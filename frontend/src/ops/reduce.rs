//! ReduceSum/Mean/Max/Min: axes from the attribute (older opsets) or operand 1,
//! `keepdims`, and `noop_with_empty_axes`.

use super::{axes_of, ints_of, NodeCx};
use crate::import::{Importer, Operand};
use crate::ImportError;
use kiln_ir::op::{Reduce, ReduceKind};

pub(crate) fn reduce(imp: &mut Importer, cx: &NodeCx) -> Result<Operand, ImportError> {
    let kind = match cx.op {
        "ReduceSum" => ReduceKind::Sum,
        "ReduceMean" => ReduceKind::Mean,
        "ReduceMax" => ReduceKind::Max,
        _ => ReduceKind::Min,
    };
    let x = imp.req(cx, 0)?;
    let rank = imp.ty(&x).rank();
    let axes_from_input = match cx.op {
        "ReduceSum" => cx.opset >= 13,
        _ => cx.opset >= 18,
    };
    let axes = if axes_from_input {
        match imp.konst(cx, 1)? {
            Some(t) => Some(ints_of(cx, &t, "axes")?),
            None => None,
        }
    } else {
        cx.ints("axes")?
    };
    let axes = axes.unwrap_or_default();
    let mut axes = if axes.is_empty() {
        if cx.int("noop_with_empty_axes", 0)? != 0 {
            return Ok(x);
        }
        (0..rank).collect()
    } else {
        axes_of(cx, &axes, rank)?
    };
    axes.sort_unstable();
    axes.dedup();
    let keepdims = cx.int("keepdims", 1)? != 0;
    imp.emit1(
        cx,
        Reduce {
            kind,
            axes,
            keepdims,
        },
        &[x],
    )
}
