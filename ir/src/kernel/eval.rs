//! Reference semantics of the kernel IR: runs a kernel on buffers held as `f64`
//! element vectors, rounding each stored value to its buffer's dtype. Slow and
//! simple; it lets lowering be tested against the tensor interpreter without a
//! backend, and backends be tested kernel by kernel.

use super::{BinOp, Expr, Gemm, Kernel, Operand, Stmt, UnOp};
use crate::DType;
use std::collections::HashMap;

/// Rounds `v` as storing it in `d` would.
pub fn round_to(d: DType, v: f64) -> f64 {
    match d {
        DType::F32 => v as f32 as f64,
        DType::F16 => half::f16::from_f64(v).to_f64(),
        DType::BF16 => half::bf16::from_f64(v).to_f64(),
        DType::F64 => v,
        DType::I8 => v as i8 as f64,
        DType::U8 => v as u8 as f64,
        DType::I32 => v as i32 as f64,
        DType::I64 => v as i64 as f64,
        DType::Bool => (v != 0.0) as u8 as f64,
    }
}

struct Env<'a> {
    k: &'a Kernel,
    vars: HashMap<String, i64>,
    locals: HashMap<String, f64>,
    dtypes: HashMap<String, DType>,
}

impl Kernel {
    /// Runs the kernel on `bufs` (one vector per buffer, row-major). Scratch
    /// buffers must be allocated by the caller. Fails on an out-of-range index.
    /// A GPU kernel (one with a launch) runs as its `simt::to_cpu` form.
    pub fn eval(&self, bufs: &mut [Vec<f64>]) -> Result<(), String> {
        if bufs.len() != self.bufs.len() {
            return Err(format!(
                "kernel '{}' takes {} buffers, got {}",
                self.name,
                self.bufs.len(),
                bufs.len()
            ));
        }
        if self.schedule.launch.is_some() {
            return self.eval_gpu(bufs);
        }
        let mut env = Env {
            k: self,
            vars: HashMap::new(),
            locals: HashMap::new(),
            dtypes: HashMap::new(),
        };
        fn lets(body: &[Stmt], out: &mut HashMap<String, DType>) {
            for s in body {
                match s {
                    Stmt::Let { name, dtype, .. } => {
                        out.insert(name.clone(), *dtype);
                    }
                    Stmt::For { body, .. } | Stmt::If { body, .. } => lets(body, out),
                    _ => {}
                }
            }
        }
        lets(&self.body, &mut env.dtypes);
        env.block(&self.body, bufs)
    }

    fn eval_gpu(&self, bufs: &mut [Vec<f64>]) -> Result<(), String> {
        let cpu = super::simt::to_cpu(self).map_err(|e| e.to_string())?;
        // Scratch of the CPU form (shared memory, per-thread slices) is
        // sized for it, not as the caller sized the GPU kernel's.
        let mut all: Vec<Vec<f64>> = cpu
            .bufs
            .iter()
            .enumerate()
            .map(|(i, b)| match bufs.get_mut(i) {
                Some(v) if b.role != super::Role::Scratch => std::mem::take(v),
                _ => vec![0.0; b.numel()],
            })
            .collect();
        let r = cpu.eval(&mut all);
        for ((b, v), cb) in bufs.iter_mut().zip(all).zip(&cpu.bufs) {
            if cb.role != super::Role::Scratch {
                *b = v;
            }
        }
        r
    }
}

impl Env<'_> {
    fn block(&mut self, body: &[Stmt], bufs: &mut [Vec<f64>]) -> Result<(), String> {
        for s in body {
            self.stmt(s, bufs)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt, bufs: &mut [Vec<f64>]) -> Result<(), String> {
        match s {
            Stmt::For { var, extent, body } => {
                let n = self.expr(extent, bufs)? as i64;
                for i in 0..n {
                    self.set_var(var, i);
                    self.block(body, bufs)?;
                }
                self.vars.remove(var);
            }
            Stmt::Let { name, dtype, init } => {
                let v = round_to(*dtype, self.expr(init, bufs)?);
                match self.locals.get_mut(name) {
                    Some(slot) => *slot = v,
                    None => {
                        self.locals.insert(name.clone(), v);
                    }
                }
            }
            Stmt::Set { name, value } => {
                let v = self.expr(value, bufs)?;
                let d = self.local_dtype(name);
                if let Some(slot) = self.locals.get_mut(name) {
                    *slot = round_to(d, v);
                }
            }
            Stmt::Store { buf, index, value } => {
                let v = self.expr(value, bufs)?;
                let at = self.offset(buf.0 as usize, index, bufs)?;
                let d = self.k.bufs[buf.0 as usize].dtype;
                bufs[buf.0 as usize][at] = round_to(d, v);
            }
            Stmt::Gemm(g) => self.gemm(g, bufs)?,
            Stmt::If { cond, body } => {
                if self.expr(cond, bufs)? != 0.0 {
                    self.block(body, bufs)?;
                }
            }
            Stmt::Barrier
            | Stmt::Mma(_)
            | Stmt::Shuffle { .. }
            | Stmt::CopyAsync(_)
            | Stmt::AsyncCommit
            | Stmt::AsyncWait(_) => return Err("a GPU-only statement outside a GPU kernel".into()),
        }
        Ok(())
    }

    fn set_var(&mut self, var: &str, v: i64) {
        match self.vars.get_mut(var) {
            Some(slot) => *slot = v,
            None => {
                self.vars.insert(var.to_string(), v);
            }
        }
    }

    fn local_dtype(&self, name: &str) -> DType {
        self.dtypes.get(name).copied().unwrap_or(DType::F64)
    }

    fn gemm(&mut self, g: &Gemm, bufs: &mut [Vec<f64>]) -> Result<(), String> {
        let s = self
            .k
            .schedule
            .gemm
            .ok_or("matrix product without a schedule")?;
        let batch: usize = g.batch.iter().map(|b| b.1).product();
        for bi in 0..batch {
            let mut rest = bi;
            for (v, n) in g.batch.iter().rev() {
                self.set_var(v, (rest % n) as i64);
                rest /= n;
            }
            for m in 0..g.m.1 {
                self.set_var(&g.m.0, m as i64);
                for n in 0..g.n.1 {
                    self.set_var(&g.n.0, n as i64);
                    let mut acc = 0.0f64;
                    for k in 0..g.k.1 {
                        self.set_var(&g.k.0, k as i64);
                        let a = self.operand(&g.a, (m, k), (s.mr, s.a_lanes), g.k.1, bufs)?;
                        let b = self.operand(&g.b, (n, k), (s.nr, 1), g.k.1, bufs)?;
                        acc += a * b;
                    }
                    self.locals.insert(g.acc.clone(), acc as f32 as f64);
                    if let Some(m) = &g.mask {
                        if self.expr(m, bufs)? == 0.0 {
                            continue;
                        }
                    }
                    let v = self.expr(&g.value, bufs)?;
                    let at = self.offset(g.out.0 as usize, &g.index, bufs)?;
                    bufs[g.out.0 as usize][at] = round_to(self.k.bufs[g.out.0 as usize].dtype, v);
                }
            }
        }
        Ok(())
    }

    fn operand(
        &mut self,
        op: &Operand,
        (x, k): (usize, usize),
        (r, lanes): (usize, usize),
        kk: usize,
        bufs: &[Vec<f64>],
    ) -> Result<f64, String> {
        match op {
            Operand::Expr(e) => self.expr(e, bufs),
            Operand::Packed(b) => Ok(bufs[b.0 as usize][((x / r * kk + k) * r + x % r) * lanes]),
        }
    }

    fn offset(&mut self, b: usize, index: &[Expr], bufs: &[Vec<f64>]) -> Result<usize, String> {
        let k = self.k;
        let mut at = 0usize;
        for (e, d) in index.iter().zip(&k.bufs[b].shape) {
            let i = self.expr(e, bufs)? as i64;
            if i < 0 || i as usize >= *d {
                return Err(format!(
                    "kernel '{}': index {i} out of range for a dim of {d} in '%{}'",
                    self.k.name, self.k.bufs[b].name
                ));
            }
            at = at * d + i as usize;
        }
        Ok(at)
    }

    fn expr(&mut self, e: &Expr, bufs: &[Vec<f64>]) -> Result<f64, String> {
        Ok(match e {
            Expr::Var(v) => *self.vars.get(v).ok_or_else(|| format!("unbound '{v}'"))? as f64,
            Expr::Local(v) => *self
                .locals
                .get(v)
                .ok_or_else(|| format!("unbound '${v}'"))?,
            Expr::Int(i) => *i as f64,
            Expr::Lit(d, v) => round_to(*d, *v),
            Expr::Load(b, ix) => {
                let at = self.offset(b.0 as usize, ix, bufs)?;
                bufs[b.0 as usize][at]
            }
            Expr::Un(op, a) => {
                let x = self.expr(a, bufs)?;
                match op {
                    UnOp::Neg => -x,
                    UnOp::Abs => x.abs(),
                    UnOp::Sqrt => x.sqrt(),
                    UnOp::Exp => x.exp(),
                    UnOp::Log => x.ln(),
                    UnOp::Tanh => x.tanh(),
                    UnOp::Erf => libm::erf(x),
                    UnOp::Floor => x.floor(),
                    UnOp::Ceil => x.ceil(),
                    UnOp::Not => (x == 0.0) as u8 as f64,
                }
            }
            Expr::Bin(op, a, b) => {
                let (x, y) = (self.expr(a, bufs)?, self.expr(b, bufs)?);
                match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div if self.is_int(a) => {
                        if y == 0.0 {
                            0.0
                        } else {
                            (x / y).trunc()
                        }
                    }
                    BinOp::Div => x / y,
                    BinOp::Rem => {
                        if y == 0.0 {
                            0.0
                        } else {
                            x % y
                        }
                    }
                    BinOp::Max if x.is_nan() || y.is_nan() => f64::NAN,
                    BinOp::Min if x.is_nan() || y.is_nan() => f64::NAN,
                    BinOp::Max => x.max(y),
                    BinOp::Min => x.min(y),
                    BinOp::Pow => x.powf(y),
                    BinOp::Eq => (x == y) as u8 as f64,
                    BinOp::Ne => (x != y) as u8 as f64,
                    BinOp::Lt => (x < y) as u8 as f64,
                    BinOp::Le => (x <= y) as u8 as f64,
                    BinOp::Gt => (x > y) as u8 as f64,
                    BinOp::Ge => (x >= y) as u8 as f64,
                    BinOp::And => (x != 0.0 && y != 0.0) as u8 as f64,
                    BinOp::Or => (x != 0.0 || y != 0.0) as u8 as f64,
                }
            }
            Expr::Select(c, a, b) => {
                if self.expr(c, bufs)? != 0.0 {
                    self.expr(a, bufs)?
                } else {
                    self.expr(b, bufs)?
                }
            }
            Expr::Cast(d, a) => {
                let x = self.expr(a, bufs)?;
                if d.is_int() && x.is_nan() {
                    0.0
                } else {
                    round_to(*d, x)
                }
            }
        })
    }

    /// True if `e` has an integer dtype (so `div` truncates).
    fn is_int(&self, e: &Expr) -> bool {
        match e {
            Expr::Var(_) | Expr::Int(_) => true,
            Expr::Lit(d, _) | Expr::Cast(d, _) => d.is_int(),
            Expr::Load(b, _) => self.k.bufs[b.0 as usize].dtype.is_int(),
            Expr::Local(n) => self.local_dtype(n).is_int(),
            Expr::Un(_, a) => self.is_int(a),
            Expr::Bin(op, a, _) => !op.is_compare() && self.is_int(a),
            Expr::Select(_, a, _) => self.is_int(a),
        }
    }
}
