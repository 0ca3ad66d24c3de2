//! Element access through a kernel body: the scalar expression for element `ix`
//! of any body value, composed through elementwise ops (with broadcasting) and
//! layout ops (reshape, transpose, slice, expand, concat, pad, tile, gather),
//! down to loads of the kernel's input buffers. Values used more than once are
//! bound to locals (`let`) so shared work is done once per element.

use kiln_ir::kernel::{BinOp, Buf, BufId, Expr, Role, Stmt, UnOp};
use kiln_ir::op::{BinaryKind, FusionClass, PadMode, UnaryKind};
use kiln_ir::{DType, Graph, Op, Tensor, ValueDef, ValueId};
use std::collections::HashMap;

/// An input of the body: a buffer, or a scalar constant inlined as a literal.
#[derive(Clone, Debug)]
pub(crate) enum Param {
    Buf(BufId),
    Scalar(DType, f64),
}

/// Builds expressions over one kernel body.
pub(crate) struct Access<'a> {
    pub g: &'a Graph,
    pub bufs: Vec<Buf>,
    pub params: HashMap<ValueId, Param>,
    lets: Vec<Stmt>,
    memo: HashMap<(ValueId, String), String>,
    uses: HashMap<ValueId, usize>,
    fresh: usize,
}

/// Elementwise and layout ops the builder composes; other ops are anchors.
pub(crate) fn composable(op: &Op) -> bool {
    op.fusion_class() != FusionClass::Anchor
}

impl<'a> Access<'a> {
    /// A builder over `g`, whose inputs are the kernel's first buffers; inputs
    /// with a one-element constant become literals.
    pub fn new(g: &'a Graph, consts: &[Option<&Tensor>]) -> Result<Self, String> {
        let mut a = Access {
            g,
            bufs: Vec::new(),
            params: HashMap::new(),
            lets: Vec::new(),
            memo: HashMap::new(),
            uses: HashMap::new(),
            fresh: 0,
        };
        for (i, &v) in g.inputs.iter().enumerate() {
            let ty = &g.value(v).ty;
            let id = a.add_buf(&format!("in{i}"), ty.dtype, ty.shape.clone(), Role::In);
            let p = match consts.get(i).copied().flatten() {
                Some(t) if t.numel() == 1 && ty.dtype != DType::I64 => {
                    Param::Scalar(ty.dtype, t.to_f64_vec()[0])
                }
                _ => Param::Buf(id),
            };
            a.params.insert(v, p);
        }
        for n in &g.nodes {
            for v in &n.inputs {
                *a.uses.entry(*v).or_default() += 1;
            }
        }
        for v in &g.outputs {
            *a.uses.entry(*v).or_default() += 1;
        }
        Ok(a)
    }

    /// Adds a buffer.
    pub fn add_buf(&mut self, name: &str, dtype: DType, shape: Vec<usize>, role: Role) -> BufId {
        self.bufs.push(kiln_ir::kernel::Buf {
            name: name.to_string(),
            dtype,
            shape,
            role,
        });
        BufId(self.bufs.len() as u32 - 1)
    }

    /// A fresh local name with a prefix.
    pub fn fresh(&mut self, prefix: &str) -> String {
        self.fresh += 1;
        format!("{prefix}{}", self.fresh)
    }

    /// The `let`s the expressions built since the last call need, in order; they
    /// go right before the statement that uses them.
    pub fn take_lets(&mut self) -> Vec<Stmt> {
        self.memo.clear();
        std::mem::take(&mut self.lets)
    }

    /// Uses of a value inside the body (graph outputs count).
    pub fn uses(&self, v: ValueId) -> usize {
        self.uses.get(&v).copied().unwrap_or(0)
    }

    /// The dtype of a body value.
    pub fn dtype(&self, v: ValueId) -> DType {
        self.g.value(v).ty.dtype
    }

    /// The shape of a body value.
    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.g.value(v).ty.shape
    }

    /// Element `ix` of body value `v`.
    pub fn value(&mut self, v: ValueId, ix: &[Expr]) -> Result<Expr, String> {
        let val = self.g.value(v);
        let node = match &val.def {
            ValueDef::Input => {
                return Ok(match &self.params[&v] {
                    Param::Buf(b) => Expr::load(*b, ix.to_vec()),
                    Param::Scalar(d, x) => lit(*d, *x),
                })
            }
            ValueDef::Const(t) => {
                if t.numel() == 1 {
                    return Ok(lit(t.dtype(), t.to_f64_vec()[0]));
                }
                return Err("a multi-element constant inside a kernel body".into());
            }
            ValueDef::Node(n, _) => self.g.node(*n),
        };
        let shared = self.uses(v) > 1 && node.op.fusion_class() == FusionClass::Elementwise;
        let key = (v, format!("{ix:?}"));
        if shared {
            if let Some(l) = self.memo.get(&key) {
                return Ok(Expr::Local(l.clone()));
            }
        }
        let e = self.node_value(node.op.clone(), &node.inputs.clone(), v, ix)?;
        if shared && !matches!(e, Expr::Load(..) | Expr::Lit(..) | Expr::Int(_)) {
            let name = self.fresh("t");
            self.lets.push(Stmt::Let {
                name: name.clone(),
                dtype: self.dtype(v),
                init: e,
            });
            self.memo.insert(key, name.clone());
            return Ok(Expr::Local(name));
        }
        Ok(e)
    }

    fn operand_at(&mut self, o: ValueId, out_shape: &[usize], ix: &[Expr]) -> Result<Expr, String> {
        let s = self.shape(o).to_vec();
        self.value(o, &broadcast_ix(&s, out_shape, ix))
    }

    fn node_value(
        &mut self,
        op: Op,
        ins: &[ValueId],
        v: ValueId,
        ix: &[Expr],
    ) -> Result<Expr, String> {
        let out_shape = self.shape(v).to_vec();
        let d = self.dtype(v);
        Ok(match &op {
            op if op.fusion_class() == FusionClass::Elementwise => {
                let mut operands = Vec::new();
                for (i, &o) in ins.iter().enumerate() {
                    let s = self.shape(o).to_vec();
                    operands.push(self.value(o, &operand_index(op, i, &s, &out_shape, ix))?);
                }
                let dts: Vec<DType> = ins.iter().map(|i| self.dtype(*i)).collect();
                apply(op, &dts, d, operands)?
            }
            Op::Reshape(_) => {
                let s = self.shape(ins[0]).to_vec();
                self.value(ins[0], &reshape_ix(&out_shape, &s, ix))?
            }
            Op::Transpose(t) => {
                let mut inner = vec![Expr::Int(0); ix.len()];
                for (i, &p) in t.perm.iter().enumerate() {
                    inner[p] = ix[i].clone();
                }
                self.value(ins[0], &inner)?
            }
            Op::Slice(s) => {
                let in_shape = self.shape(ins[0]).to_vec();
                let mut inner = Vec::with_capacity(ix.len());
                for (dim, e) in ix.iter().enumerate() {
                    let n = in_shape[dim] as i64;
                    let step = s.steps[dim];
                    let mut start = s.starts[dim];
                    if start < 0 {
                        start += n;
                    }
                    start = if step > 0 {
                        start.clamp(0, n)
                    } else {
                        start.clamp(-1, n - 1)
                    };
                    inner.push(Expr::plus(
                        Expr::Int(start),
                        Expr::times(e.clone(), Expr::Int(step)),
                    ));
                }
                self.value(ins[0], &inner)?
            }
            Op::Expand(_) => self.operand_at(ins[0], &out_shape, ix)?,
            Op::Tile(_) => {
                let in_shape = self.shape(ins[0]).to_vec();
                let inner: Vec<Expr> = ix
                    .iter()
                    .zip(&in_shape)
                    .map(|(e, &n)| {
                        if n == 1 {
                            Expr::Int(0)
                        } else {
                            Expr::bin(BinOp::Rem, e.clone(), Expr::Int(n as i64))
                        }
                    })
                    .collect();
                self.value(ins[0], &inner)?
            }
            Op::Concat(c) => {
                let mut parts = Vec::new();
                let mut off = 0i64;
                for &o in ins {
                    let n = self.shape(o)[c.axis] as i64;
                    if n == 0 {
                        continue;
                    }
                    let mut inner = ix.to_vec();
                    inner[c.axis] = Expr::bin(BinOp::Sub, ix[c.axis].clone(), Expr::Int(off));
                    parts.push((off + n, self.value(o, &inner)?));
                    off += n;
                }
                let (_, mut e) = parts.pop().ok_or("concat of nothing")?;
                while let Some((end, p)) = parts.pop() {
                    e = Expr::select(
                        Expr::bin(BinOp::Lt, ix[c.axis].clone(), Expr::Int(end)),
                        p,
                        e,
                    );
                }
                e
            }
            Op::Pad(p) => self.pad(p, ins, ix, d)?,
            Op::Resize(r) => {
                let in_shape = self.shape(ins[0]).to_vec();
                let mut inner = Vec::with_capacity(ix.len());
                for (dim, e) in ix.iter().enumerate() {
                    inner.push(nearest_index(r, dim, e, in_shape[dim], out_shape[dim])?);
                }
                self.value(ins[0], &inner)?
            }
            Op::Gather(gt) => {
                let data_shape = self.shape(ins[0]).to_vec();
                let idx_rank = self.shape(ins[1]).len();
                let n = data_shape[gt.axis] as i64;
                let iv = self.value(ins[1], &ix[gt.axis..gt.axis + idx_rank])?;
                let iv = cast(DType::I64, self.dtype(ins[1]), iv);
                let wrapped = Expr::select(
                    Expr::bin(BinOp::Lt, iv.clone(), Expr::Int(0)),
                    Expr::plus(iv.clone(), Expr::Int(n)),
                    iv,
                );
                let clamped = clamp(wrapped, n);
                let mut inner: Vec<Expr> = ix[..gt.axis].to_vec();
                inner.push(clamped);
                inner.extend_from_slice(&ix[gt.axis + idx_rank..]);
                self.value(ins[0], &inner)?
            }
            other => {
                return Err(format!(
                    "'{}' is not elementwise or layout",
                    other.mnemonic()
                ))
            }
        })
    }

    fn pad(
        &mut self,
        p: &kiln_ir::op::Pad,
        ins: &[ValueId],
        ix: &[Expr],
        d: DType,
    ) -> Result<Expr, String> {
        let in_shape = self.shape(ins[0]).to_vec();
        let r = in_shape.len();
        let mut inner = Vec::with_capacity(r);
        let mut inside: Option<Expr> = None;
        for (dim, e) in ix.iter().enumerate() {
            let n = in_shape[dim] as i64;
            let i = Expr::bin(BinOp::Sub, e.clone(), Expr::Int(p.pads[dim]));
            if p.pads[dim] <= 0 && p.pads[dim + r] <= 0 {
                inner.push(i);
                continue;
            }
            let fixed = match p.mode {
                PadMode::Constant => {
                    let ok = Expr::bin(
                        BinOp::And,
                        Expr::bin(BinOp::Ge, i.clone(), Expr::Int(0)),
                        Expr::bin(BinOp::Lt, i.clone(), Expr::Int(n)),
                    );
                    inside = Some(match inside {
                        Some(c) => Expr::bin(BinOp::And, c, ok),
                        None => ok,
                    });
                    clamp(i, n)
                }
                PadMode::Edge => clamp(i, n),
                PadMode::Wrap => {
                    let m = Expr::bin(BinOp::Rem, i, Expr::Int(n));
                    Expr::select(
                        Expr::bin(BinOp::Lt, m.clone(), Expr::Int(0)),
                        Expr::plus(m.clone(), Expr::Int(n)),
                        m,
                    )
                }
                PadMode::Reflect => {
                    if n == 1 {
                        Expr::Int(0)
                    } else {
                        let per = 2 * (n - 1);
                        let m = Expr::bin(BinOp::Rem, i, Expr::Int(per));
                        let m = Expr::select(
                            Expr::bin(BinOp::Lt, m.clone(), Expr::Int(0)),
                            Expr::plus(m.clone(), Expr::Int(per)),
                            m,
                        );
                        Expr::select(
                            Expr::bin(BinOp::Lt, m.clone(), Expr::Int(n)),
                            m.clone(),
                            Expr::bin(BinOp::Sub, Expr::Int(per), m),
                        )
                    }
                }
            };
            inner.push(fixed);
        }
        let x = self.value(ins[0], &inner)?;
        Ok(match inside {
            Some(c) => Expr::select(c, x, lit(d, p.value)),
            None => x,
        })
    }
}

/// The index of operand `i` (of shape `in_shape`) of elementwise `op` for
/// result element `ix`: broadcast, except batch norm's per-channel parameters.
pub(crate) fn operand_index(
    op: &Op,
    i: usize,
    in_shape: &[usize],
    out_shape: &[usize],
    ix: &[Expr],
) -> Vec<Expr> {
    if matches!(op, Op::BatchNorm(_)) && i > 0 {
        vec![ix[1].clone()]
    } else {
        broadcast_ix(in_shape, out_shape, ix)
    }
}

/// Elementwise `op` applied to operand expressions of dtypes `dts`, giving `d`.
pub(crate) fn apply(op: &Op, dts: &[DType], d: DType, mut x: Vec<Expr>) -> Result<Expr, String> {
    Ok(match op {
        Op::Unary(u) => unary(u.kind, d, x.remove(0))?,
        Op::Binary(b) => {
            let y = x.remove(1);
            binary(b.kind, dts[0], x.remove(0), y)?
        }
        Op::Where(_) => {
            let b = x.remove(2);
            let a = x.remove(1);
            Expr::select(x.remove(0), a, b)
        }
        Op::Cast(c) => cast(c.to, dts[0], x.remove(0)),
        Op::BatchNorm(bn) => {
            if x.len() != 5 {
                return Err("batch_norm takes 5 operands".into());
            }
            let var = x.remove(4);
            let mean = x.remove(3);
            let bias = x.remove(2);
            let scale = x.remove(1);
            let inv = div(
                lit(d, 1.0),
                Expr::un(UnOp::Sqrt, add(var, lit(d, bn.epsilon))),
            );
            add(mul(mul(sub(x.remove(0), mean), inv), scale), bias)
        }
        other => return Err(format!("'{}' is not elementwise", other.mnemonic())),
    })
}

/// `min(max(i, 0), n - 1)`: an index kept inside a dim so a guarded load never
/// leaves its buffer.
/// The input index nearest-neighbour resizing reads along `dim`, as
/// `(o * in + q) / out` for the `q` that reproduces the op's coordinate
/// mapping at every output position (linear and cubic modes, and mappings
/// of no such form, are refused).
fn nearest_index(
    r: &kiln_ir::op::Resize,
    dim: usize,
    o: &Expr,
    n_in: usize,
    n_out: usize,
) -> Result<Expr, String> {
    if r.mode != kiln_ir::op::ResizeMode::Nearest {
        return Err("resize: only nearest mode is compiled".into());
    }
    let want: Vec<usize> = (0..n_out)
        .map(|x| r.taps(dim, x, n_in).map(|t| t[0].0))
        .collect::<Option<_>>()
        .ok_or("resize: positions outside the input are not compiled")?;
    if want.iter().enumerate().all(|(x, &i)| x == i) {
        return Ok(o.clone());
    }
    if n_out > 4096 {
        return Err("resize: axis too long to match its mapping".into());
    }
    let (p, d) = (n_in as i64, n_out as i64);
    let q = (0..d)
        .find(|q| {
            want.iter()
                .enumerate()
                .all(|(x, &i)| ((x as i64 * p + q) / d).clamp(0, p - 1) == i as i64)
        })
        .ok_or("resize: coordinate mapping is not a rational step")?;
    let e = Expr::bin(
        BinOp::Div,
        Expr::plus(Expr::times(o.clone(), Expr::Int(p)), Expr::Int(q)),
        Expr::Int(d),
    );
    Ok(clamp(e, p))
}

pub(crate) fn clamp(i: Expr, n: i64) -> Expr {
    Expr::bin(
        BinOp::Min,
        Expr::bin(BinOp::Max, i, Expr::Int(0)),
        Expr::Int((n - 1).max(0)),
    )
}

/// A literal of `d` (`i64` as an integer literal).
pub(crate) fn lit(d: DType, v: f64) -> Expr {
    if d == DType::I64 {
        Expr::Int(v as i64)
    } else {
        Expr::Lit(d, v)
    }
}

pub(crate) fn add(a: Expr, b: Expr) -> Expr {
    Expr::bin(BinOp::Add, a, b)
}

pub(crate) fn sub(a: Expr, b: Expr) -> Expr {
    Expr::bin(BinOp::Sub, a, b)
}

pub(crate) fn mul(a: Expr, b: Expr) -> Expr {
    Expr::bin(BinOp::Mul, a, b)
}

pub(crate) fn div(a: Expr, b: Expr) -> Expr {
    Expr::bin(BinOp::Div, a, b)
}

/// A conversion with the interpreter's semantics (to bool is `!= 0`).
pub(crate) fn cast(to: DType, from: DType, x: Expr) -> Expr {
    if to == from {
        x
    } else if to == DType::Bool {
        Expr::bin(BinOp::Ne, x, lit(from, 0.0))
    } else {
        Expr::Cast(to, Box::new(x))
    }
}

/// The expression of a unary op on `x` of dtype `d`.
pub(crate) fn unary(k: UnaryKind, d: DType, x: Expr) -> Result<Expr, String> {
    use UnaryKind::*;
    let one = || lit(d, 1.0);
    let sigmoid = |x: Expr| {
        div(
            lit(d, 1.0),
            add(lit(d, 1.0), Expr::un(UnOp::Exp, Expr::un(UnOp::Neg, x))),
        )
    };
    let clamp01 = |x: Expr| {
        Expr::bin(
            BinOp::Max,
            lit(d, 0.0),
            Expr::bin(BinOp::Min, lit(d, 1.0), x),
        )
    };
    if !d.is_float() && !matches!(k, Neg | Abs | Relu | Not) {
        return Err(format!("{k:?} on {d}"));
    }
    Ok(match k {
        Neg => Expr::un(UnOp::Neg, x),
        Abs => Expr::un(UnOp::Abs, x),
        Sqrt => Expr::un(UnOp::Sqrt, x),
        Exp => Expr::un(UnOp::Exp, x),
        Log => Expr::un(UnOp::Log, x),
        Tanh => Expr::un(UnOp::Tanh, x),
        Erf => Expr::un(UnOp::Erf, x),
        Floor => Expr::un(UnOp::Floor, x),
        Ceil => Expr::un(UnOp::Ceil, x),
        Not => Expr::un(UnOp::Not, x),
        Sigmoid => sigmoid(x),
        Relu => Expr::bin(BinOp::Max, x, lit(d, 0.0)),
        Reciprocal => div(one(), x),
        LeakyRelu { alpha } => Expr::select(
            Expr::bin(BinOp::Lt, x.clone(), lit(d, 0.0)),
            mul(lit(d, alpha), x.clone()),
            x,
        ),
        HardSigmoid { alpha, beta } => clamp01(add(mul(lit(d, alpha), x), lit(d, beta))),
        HardSwish => mul(x.clone(), clamp01(add(div(x, lit(d, 6.0)), lit(d, 0.5)))),
        Silu => mul(x.clone(), sigmoid(x)),
        Gelu { tanh: false } => mul(
            mul(lit(d, 0.5), x.clone()),
            add(
                one(),
                Expr::un(UnOp::Erf, mul(x, lit(d, std::f64::consts::FRAC_1_SQRT_2))),
            ),
        ),
        Gelu { tanh: true } => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let cube = mul(mul(x.clone(), x.clone()), x.clone());
            let inner = mul(lit(d, c), add(x.clone(), mul(lit(d, 0.044715), cube)));
            mul(mul(lit(d, 0.5), x), add(one(), Expr::un(UnOp::Tanh, inner)))
        }
    })
}

/// The expression of a binary op on operands of dtype `d`.
pub(crate) fn binary(k: BinaryKind, d: DType, x: Expr, y: Expr) -> Result<Expr, String> {
    use BinaryKind::*;
    let op = match k {
        Add => BinOp::Add,
        Sub => BinOp::Sub,
        Mul => BinOp::Mul,
        Div => BinOp::Div,
        Pow if d.is_float() => BinOp::Pow,
        Pow => return Err(format!("pow on {d}")),
        Max => BinOp::Max,
        Min => BinOp::Min,
        Equal => BinOp::Eq,
        Less => BinOp::Lt,
        Greater => BinOp::Gt,
        LessEqual => BinOp::Le,
        GreaterEqual => BinOp::Ge,
        And => BinOp::And,
        Or => BinOp::Or,
    };
    Ok(Expr::bin(op, x, y))
}

/// The index into an operand of shape `in_shape` broadcast to `out_shape`.
pub(crate) fn broadcast_ix(in_shape: &[usize], out_shape: &[usize], ix: &[Expr]) -> Vec<Expr> {
    let off = out_shape.len() - in_shape.len();
    in_shape
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            if n == 1 {
                Expr::Int(0)
            } else {
                ix[off + i].clone()
            }
        })
        .collect()
}

/// Maps an index of a tensor of shape `from` to the index of the same element in
/// its reshape to `to` (both row-major). Dims are grouped where their products
/// agree, so splits and merges need no division within a group.
pub(crate) fn reshape_ix(from: &[usize], to: &[usize], ix: &[Expr]) -> Vec<Expr> {
    let mut out = Vec::with_capacity(to.len());
    let (mut i, mut j) = (0, 0);
    while i < from.len() || j < to.len() {
        let (si, sj) = (i, j);
        let mut pi = if i < from.len() { from[i] } else { 1 };
        let mut pj = if j < to.len() { to[j] } else { 1 };
        i += 1;
        j += 1;
        while pi != pj {
            if pi < pj && i < from.len() {
                pi *= from[i];
                i += 1;
            } else if j < to.len() {
                pj *= to[j];
                j += 1;
            } else {
                break;
            }
        }
        let (ie, je) = (i.min(from.len()), j.min(to.len()));
        let mut lin = Expr::Int(0);
        for t in si..ie {
            lin = Expr::plus(Expr::times(lin, Expr::Int(from[t] as i64)), ix[t].clone());
        }
        let mut rest: i64 = to[sj.min(je)..je].iter().product::<usize>() as i64;
        for (t, &n) in to.iter().enumerate().take(je).skip(sj) {
            rest /= n.max(1) as i64;
            let q = Expr::bin(BinOp::Div, lin.clone(), Expr::Int(rest.max(1)));
            out.push(if n == 1 {
                Expr::Int(0)
            } else if t == sj {
                q
            } else {
                Expr::bin(BinOp::Rem, q, Expr::Int(n as i64))
            });
        }
    }
    out
}
