//! Lowers one kernel body (a fused node's graph, or a single node wrapped as
//! one) to a kernel: finds its anchor (at most one), builds the anchor's loop
//! nest or matrix product with the prologue composed into its loads, and applies
//! the epilogue chain (elementwise ops, transposes, reshapes) at its stores.

use super::access::{apply, composable, operand_index, reshape_ix, Access};
use super::{attention, gemm, norm, reduce, LowerOptions};
use kiln_ir::kernel::{Expr, Kernel, Role, Schedule, Stmt};
use kiln_ir::op::FusionClass;
use kiln_ir::{DType, Graph, Op, Tensor, ValueId};

/// A lowered body: the kernel, and constants it needs beyond the body's inputs
/// (packed weights), one per trailing `In` buffer.
pub(crate) struct Lowered {
    pub kernel: Kernel,
    pub extra: Vec<Tensor>,
    /// The buffer that takes the padded, flattened convolution input.
    pub flat: Option<kiln_ir::kernel::BufId>,
}

/// Dtypes the lowering handles (half precision only in matrix products, see
/// `LowerOptions::half_matmul`).
fn supported(d: DType) -> bool {
    !matches!(d, DType::F16 | DType::BF16)
}

/// Lowers a body whose inputs carry the given constants (where known). With
/// `flat_wp`, its convolution reads a padded, flattened input of row width
/// `flat_wp` from an extra buffer (see `gemm::conv_flat`).
pub(crate) fn lower_body(
    name: &str,
    g: &Graph,
    consts: &[Option<&Tensor>],
    opts: &LowerOptions,
    flat_wp: Option<usize>,
) -> Result<Lowered, String> {
    let half_ok = opts.half_matmul && g.nodes.iter().all(|n| matches!(n.op, Op::MatMul(_)));
    for v in &g.values {
        if !supported(v.ty.dtype) && !half_ok {
            return Err(format!("dtype {} is not compiled yet", v.ty.dtype));
        }
        if v.ty.numel() == 0 {
            return Err("a zero-size tensor".into());
        }
    }
    let anchors: Vec<usize> = (0..g.nodes.len())
        .filter(|&i| !composable(&g.nodes[i].op))
        .collect();
    let mut a = Access::new(g, consts)?;
    let outs: Vec<_> = g
        .outputs
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let t = &g.value(v).ty;
            a.add_buf(&format!("out{i}"), t.dtype, t.shape.clone(), Role::Out)
        })
        .collect();
    let mut cx = Cx {
        a,
        outs,
        opts,
        consts,
        extra: Vec::new(),
        flat: None,
        schedule: Schedule::default(),
    };
    let body = match anchors.as_slice() {
        [] => cx.elementwise()?,
        [i] => {
            let node = &g.nodes[*i];
            match &node.op {
                Op::MatMul(m) => gemm::matmul(&mut cx, m, node)?,
                Op::Conv(c) => match flat_wp {
                    Some(wp) => gemm::conv_flat(&mut cx, c, node, wp)?,
                    None => gemm::conv(&mut cx, c, node)?,
                },
                Op::Attention(at) => attention::lower(&mut cx, at, node)?,
                Op::LayerNorm(_) | Op::RmsNorm(_) | Op::Softmax(_) => norm::lower(&mut cx, node)?,
                Op::Reduce(r) => reduce::reduce(&mut cx, r, node)?,
                Op::Pool(p) => reduce::pool(&mut cx, p, node)?,
                op => return Err(format!("'{}' is not compiled yet", op.mnemonic())),
            }
        }
        _ => return Err("more than one anchor in a kernel".into()),
    };
    let kernel = Kernel {
        name: name.to_string(),
        bufs: cx.a.bufs,
        body,
        schedule: cx.schedule,
    };
    kernel.verify().map_err(|e| e.to_string())?;
    Ok(Lowered {
        kernel,
        extra: cx.extra,
        flat: cx.flat,
    })
}

/// Lowering context of one body.
pub(crate) struct Cx<'a> {
    pub a: Access<'a>,
    pub outs: Vec<kiln_ir::kernel::BufId>,
    pub opts: &'a LowerOptions,
    pub consts: &'a [Option<&'a Tensor>],
    pub extra: Vec<Tensor>,
    pub flat: Option<kiln_ir::kernel::BufId>,
    pub schedule: Schedule,
}

/// Loop variables over a shape: `Var` for dims above 1, `0` for size-1 dims.
pub(crate) fn index_vars(prefix: &str, shape: &[usize]) -> (Vec<Expr>, Vec<(String, usize)>) {
    let mut ix = Vec::new();
    let mut loops = Vec::new();
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 {
            ix.push(Expr::Int(0));
        } else {
            let v = format!("{prefix}{d}");
            ix.push(Expr::var(&v));
            loops.push((v, n));
        }
    }
    (ix, loops)
}

/// Wraps `body` in loops, outermost first.
pub(crate) fn nest(loops: &[(String, usize)], body: Vec<Stmt>) -> Vec<Stmt> {
    let mut b = body;
    for (v, n) in loops.iter().rev() {
        b = vec![Stmt::For {
            var: v.clone(),
            extent: Expr::Int(*n as i64),
            body: b,
        }];
    }
    b
}

impl Cx<'_> {
    /// Marks the kernel parallel over its first loop where that loop exists
    /// and the work is large enough to split.
    pub fn parallel_if(&mut self, loops: &[(String, usize)], work: usize) {
        self.schedule.parallel = !loops.is_empty() && work >= 16 * 1024 && loops[0].1 > 1;
    }

    /// Asks for the innermost loop to be vectorized when it is long enough.
    pub fn vectorize(&mut self, var: &str, extent: usize) {
        if extent >= self.opts.lanes {
            self.schedule
                .vectorize
                .push((var.to_string(), self.opts.lanes as u32));
        }
    }

    fn elementwise(&mut self) -> Result<Vec<Stmt>, String> {
        let g = self.a.g;
        let shape = g.value(g.outputs[0]).ty.shape.clone();
        if g.outputs.iter().any(|o| g.value(*o).ty.shape != shape) {
            return Err("outputs of different shapes".into());
        }
        let (ix, loops) = index_vars("i", &shape);
        let mut stmts = Vec::new();
        for (o, &buf) in g.outputs.clone().iter().zip(&self.outs.clone()) {
            let v = self.a.value(*o, &ix)?;
            stmts.extend(self.a.take_lets());
            stmts.push(Stmt::Store {
                buf,
                index: ix.clone(),
                value: v,
            });
        }
        self.parallel_if(&loops, shape.iter().product());
        if let Some((v, n)) = loops.last() {
            self.vectorize(&v.clone(), *n);
        }
        Ok(nest(&loops, stmts))
    }

    /// The store of anchor result `v` (element `ix`, value `e`) through the
    /// epilogue chain to the body's output: `let`s it needs, then the store.
    pub fn epilogue(&mut self, v: ValueId, ix: Vec<Expr>, e: Expr) -> Result<Vec<Stmt>, String> {
        let (out, ix, e) = self.chain(v, ix, e)?;
        let mut s = self.a.take_lets();
        s.push(Stmt::Store {
            buf: out,
            index: ix,
            value: e,
        });
        Ok(s)
    }

    /// Follows the epilogue chain: the output buffer, index and value.
    pub fn chain(
        &mut self,
        v: ValueId,
        mut ix: Vec<Expr>,
        mut e: Expr,
    ) -> Result<(kiln_ir::kernel::BufId, Vec<Expr>, Expr), String> {
        let g = self.a.g;
        let mut cur = v;
        loop {
            if let Some(p) = g.outputs.iter().position(|o| *o == cur) {
                if self.a.uses(cur) != 1 {
                    return Err("an anchor result used outside its epilogue".into());
                }
                return Ok((self.outs[p], ix, e));
            }
            let users: Vec<&kiln_ir::Node> =
                g.nodes.iter().filter(|n| n.inputs.contains(&cur)).collect();
            if users.len() != 1 || self.a.uses(cur) != 1 {
                return Err("the epilogue is not a chain".into());
            }
            let n = users[0];
            let next = n.outputs[0];
            let from = g.value(cur).ty.shape.clone();
            let to = g.value(next).ty.shape.clone();
            match &n.op {
                Op::Reshape(_) => ix = reshape_ix(&from, &to, &ix),
                Op::Transpose(t) => ix = t.perm.iter().map(|&p| ix[p].clone()).collect(),
                op if op.fusion_class() == FusionClass::Elementwise && from == to => {
                    let mut operands = Vec::new();
                    for (i, &o) in n.inputs.iter().enumerate() {
                        if o == cur {
                            operands.push(e.clone());
                        } else {
                            let s = g.value(o).ty.shape.clone();
                            let oix = operand_index(op, i, &s, &to, &ix);
                            operands.push(self.a.value(o, &oix)?);
                        }
                    }
                    let dts: Vec<DType> = n.inputs.iter().map(|i| g.value(*i).ty.dtype).collect();
                    e = apply(op, &dts, g.value(next).ty.dtype, operands)?;
                }
                op => return Err(format!("'{}' after the anchor", op.mnemonic())),
            }
            cur = next;
        }
    }
}
