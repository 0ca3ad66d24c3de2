//! Four-lane `f32` vectorization for the Cranelift backend (Cranelift does
//! not vectorize): innermost loops whose stores run contiguously along the
//! loop variable and whose locals are sums, the matrix product's epilogue
//! rows, and its operand packing. An expression qualifies when its varying
//! loads are `f32` and contiguous (flat stride 1) along the variable and its
//! ops have vector forms; invariant parts are computed once as scalars and
//! splatted. Loops run four lanes at a time, then the remainder scalar.

use super::emit::{flags, Func};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use cranelift_frontend::Variable;
use kiln_ir::kernel::{BinOp, BufId, Expr, Kernel, Stmt, UnOp};
use kiln_ir::DType;

/// Lanes of an `f32x4`.
pub(crate) const LANES: i64 = 4;

/// Vectors per trip of a loop with sums, each into its own partial sum (an
/// add's latency is three cycles on Zen 3; four chains keep the adder busy).
const SUM_UNROLL: usize = 4;

/// Whether `e` mentions the variable `var` or one of the locals `vl` (`var`
/// empty: only the locals).
fn mentions(e: &Expr, var: &str, vl: &[String]) -> bool {
    let mut hit = false;
    e.walk(&mut |s| match s {
        Expr::Var(v) => hit |= v == var,
        Expr::Local(n) => hit |= vl.contains(n),
        _ => {}
    });
    hit
}

/// Whether `buf[index]` is `f32` and contiguous along `var`.
fn contiguous(k: &Kernel, buf: BufId, index: &[Expr], var: &str) -> bool {
    k.bufs[buf.0 as usize].dtype == DType::F32 && k.flat_stride(buf, index, var) == Some(1)
}

/// `Some(true)` when `e` varies along `var` and has an `f32x4` form,
/// `Some(false)` when it is invariant (a scalar of any dtype), `None` when
/// it varies in a way that stays scalar. The locals `vl` are vectors.
pub(crate) fn class(k: &Kernel, e: &Expr, var: &str, vl: &[String]) -> Option<bool> {
    if !mentions(e, var, vl) {
        return Some(false);
    }
    let vec = |x: &Expr| class(k, x, var, vl);
    match e {
        Expr::Local(_) => Some(true),
        Expr::Load(b, ix) => {
            (contiguous(k, *b, ix, var) && !ix.iter().any(|i| mentions(i, "", vl))).then_some(true)
        }
        Expr::Un(op, a) => {
            let ok = matches!(
                op,
                UnOp::Neg | UnOp::Abs | UnOp::Sqrt | UnOp::Exp | UnOp::Tanh | UnOp::Erf
            );
            (ok && vec(a)?).then_some(true)
        }
        Expr::Bin(op, a, b) if arith(*op) => {
            let (x, y) = (vec(a)?, vec(b)?);
            Some(x || y)
        }
        Expr::Select(c, a, b) => {
            let (x, y) = (vec(a)?, vec(b)?);
            match &**c {
                c if !mentions(c, var, vl) => Some(x || y),
                Expr::Bin(op, p, q) if compare(*op) => {
                    let (p, q) = (vec(p)?, vec(q)?);
                    (p || q).then_some(true)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn arith(op: BinOp) -> bool {
    matches!(
        op,
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Max | BinOp::Min
    )
}

fn compare(op: BinOp) -> bool {
    matches!(
        op,
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
    )
}

/// For a loop body that vectorizes along `var`: the locals it sums into
/// (each `$s = $s + x`, `$s` read nowhere else). Stores must be `f32`,
/// contiguous, one per buffer, and loads from a stored buffer must read the
/// element being stored (no dependence between lanes).
pub(crate) fn plan(f: &Func, var: &str, body: &[Stmt]) -> Option<Vec<String>> {
    let k = f.k;
    let mut sums: Vec<String> = Vec::new();
    let mut stored: Vec<(BufId, &[Expr])> = Vec::new();
    for s in body {
        match s {
            Stmt::Set { name, value } => {
                let Expr::Bin(BinOp::Add, a, b) = value else {
                    return None;
                };
                let me = Expr::Local(name.clone());
                let rest = if **a == me {
                    b
                } else if **b == me {
                    a
                } else {
                    return None;
                };
                if f.local_dtype(name) != Some(DType::F32) || sums.contains(name) {
                    return None;
                }
                if mentions(rest, "", std::slice::from_ref(name)) {
                    return None;
                }
                sums.push(name.clone());
            }
            Stmt::Store { buf, index, .. } => {
                if !contiguous(k, *buf, index, var) || stored.iter().any(|(b, _)| b == buf) {
                    return None;
                }
                stored.push((*buf, index));
            }
            _ => return None,
        }
    }
    for s in body {
        let (value, index, own) = match s {
            Stmt::Set { name, value } => (value, &[][..], Some(name)),
            Stmt::Store { index, value, .. } => (value, &index[..], None),
            _ => return None,
        };
        let others: Vec<String> = sums.iter().filter(|n| Some(*n) != own).cloned().collect();
        if mentions(value, "", &others) || index.iter().any(|i| mentions(i, "", &sums)) {
            return None;
        }
        let mut ok = class(k, value, var, &sums).is_some();
        for e in index.iter().chain(std::iter::once(value)) {
            e.walk(&mut |e| {
                if let Expr::Load(b, ix) = e {
                    if let Some((_, at)) = stored.iter().find(|(s, _)| s == b) {
                        ok &= *at == &ix[..];
                    }
                }
            });
        }
        if !ok {
            return None;
        }
    }
    Some(sums)
}

impl Func<'_, '_> {
    /// `v` as an `f32x4` (splat when scalar).
    pub(crate) fn widen(&mut self, v: Value) -> Value {
        if self.b.func.dfg.value_type(v).is_vector() {
            v
        } else {
            self.b.ins().splat(types::F32X4, v)
        }
    }

    /// Emits `e` (classified by `class`) with the lanes of `var` starting at
    /// its bound value: an `f32x4`, or a scalar where `e` is invariant.
    pub(crate) fn vexpr(&mut self, e: &Expr, var: &str) -> Result<Value, String> {
        let vl: Vec<String> = self.vlocals.keys().cloned().collect();
        if !mentions(e, var, &vl) {
            return Ok(self.expr(e)?.0);
        }
        Ok(match e {
            Expr::Local(n) => self.b.use_var(self.vlocals[n]),
            Expr::Load(b, ix) => {
                let p = self.elem_ptr(*b, ix)?;
                self.b.ins().load(types::F32X4, flags(), p, 0)
            }
            Expr::Un(op, a) => {
                let x = self.vexpr(a, var)?;
                let x = self.widen(x);
                self.unary(*op, x, DType::F32)
            }
            Expr::Bin(op, a, b) => {
                let (x, y) = (self.vexpr(a, var)?, self.vexpr(b, var)?);
                let (x, y) = (self.widen(x), self.widen(y));
                self.binary(*op, x, y, DType::F32, false).0
            }
            Expr::Select(c, a, b) => {
                let (x, y) = (self.vexpr(a, var)?, self.vexpr(b, var)?);
                let (x, y) = (self.widen(x), self.widen(y));
                match &**c {
                    Expr::Bin(op, p, q) if mentions(c, var, &vl) => {
                        let (p, q) = (self.vexpr(p, var)?, self.vexpr(q, var)?);
                        let (p, q) = (self.widen(p), self.widen(q));
                        let m = self.binary(*op, p, q, DType::F32, false).0;
                        self.sel(m, x, y)
                    }
                    c => {
                        let (c, _) = self.expr(c)?;
                        self.b.ins().select(c, x, y)
                    }
                }
            }
            _ => return Err(format!("no vector form of {e:?}")),
        })
    }

    /// The sum of an `f32x4`'s lanes, `(l0 + l1) + (l2 + l3)`.
    pub(crate) fn hsum(&mut self, v: Value) -> Value {
        let l: Vec<Value> = (0..4).map(|i| self.b.ins().extractlane(v, i)).collect();
        let a = self.b.ins().fadd(l[0], l[1]);
        let b = self.b.ins().fadd(l[2], l[3]);
        self.b.ins().fadd(a, b)
    }

    /// `for var in 0..extent` four lanes at a time (per `plan`, which gave
    /// the summed locals `sums`), then the remainder with the scalar body. A
    /// loop with sums runs `SUM_UNROLL` vectors per trip into as many partial
    /// sums first, so that consecutive adds do not wait on each other.
    pub(crate) fn vector_for(
        &mut self,
        var: &str,
        extent: &Expr,
        body: &[Stmt],
        sums: &[String],
    ) -> Result<(), String> {
        let to = self.expr(extent)?.0;
        let zero = self.iconst(0);
        let vend = self.b.ins().band_imm_s(to, !(LANES - 1));
        let zf = self.b.ins().f32const(0.0);
        let zv = self.b.ins().splat(types::F32X4, zf);
        let unroll = if sums.is_empty() { 1 } else { SUM_UNROLL };
        let parts: Vec<Vec<Variable>> = sums
            .iter()
            .map(|_| {
                (0..unroll)
                    .map(|_| {
                        let v = self.b.declare_var(types::F32X4);
                        self.b.def_var(v, zv);
                        v
                    })
                    .collect()
            })
            .collect();
        let saved = self.vars.get(var).copied();
        let mut from = zero;
        if unroll > 1 {
            let uend = self.b.ins().band_imm_s(to, !(LANES * unroll as i64 - 1));
            let (i, l) = self.begin_loop_step(zero, uend, LANES * unroll as i64);
            for u in 0..unroll {
                let at = self.b.ins().iadd_imm_s(i, LANES * u as i64);
                self.vars.insert(var.to_string(), at);
                for (s, p) in sums.iter().zip(&parts) {
                    self.vlocals.insert(s.clone(), p[u]);
                }
                self.vector_body(var, body)?;
            }
            self.end_loop(l);
            from = uend;
        }
        for (s, p) in sums.iter().zip(&parts) {
            self.vlocals.insert(s.clone(), p[0]);
        }
        let (i, l) = self.begin_loop_step(from, vend, LANES);
        self.vars.insert(var.to_string(), i);
        self.vector_body(var, body)?;
        self.end_loop(l);
        for (s, p) in sums.iter().zip(&parts) {
            let mut v = self.b.use_var(p[0]);
            for &q in &p[1..] {
                let w = self.b.use_var(q);
                v = self.b.ins().fadd(v, w);
            }
            let h = self.hsum(v);
            let cur = self.expr(&Expr::Local(s.clone()))?.0;
            let n = self.b.ins().fadd(cur, h);
            self.set_local(s, n);
        }
        self.vlocals.clear();
        let (i, l) = self.begin_loop(vend, to);
        self.vars.insert(var.to_string(), i);
        self.body(body)?;
        match saved {
            Some(v) => self.vars.insert(var.to_string(), v),
            None => self.vars.remove(var),
        };
        self.end_loop(l);
        Ok(())
    }

    /// One four-lane step of a vector loop's body at the current value of
    /// `var`, each sum into the partial sum `vlocals` maps it to.
    fn vector_body(&mut self, var: &str, body: &[Stmt]) -> Result<(), String> {
        for s in body {
            match s {
                Stmt::Set { name, value } => {
                    let Expr::Bin(_, a, b) = value else {
                        return Err("vector loop: a local that is not a sum".into());
                    };
                    let rest = if matches!(&**a, Expr::Local(n) if n == name) {
                        b
                    } else {
                        a
                    };
                    let x = self.vexpr(rest, var)?;
                    let x = self.widen(x);
                    let acc = self.b.use_var(self.vlocals[name]);
                    let n = self.b.ins().fadd(acc, x);
                    self.b.def_var(self.vlocals[name], n);
                }
                Stmt::Store { buf, index, value } => {
                    let x = self.vexpr(value, var)?;
                    let x = self.widen(x);
                    let p = self.elem_ptr(*buf, index)?;
                    self.b.ins().store(flags(), x, p, 0);
                }
                _ => return Err("vector loop: a statement other than a store or a sum".into()),
            }
        }
        Ok(())
    }
}
