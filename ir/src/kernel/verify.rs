//! The kernel verifier: buffers and ranks, scopes of loop variables and locals,
//! dtypes of every expression, and that the schedule names what exists.

use super::{BinOp, BufId, Expr, Gemm, Kernel, Operand, Role, Stmt, UnOp};
use crate::{DType, IrError};
use std::collections::HashMap;

#[derive(Default, Clone)]
struct Scope {
    vars: Vec<String>,
    locals: HashMap<String, DType>,
    /// GPU kernels: variables with the same value in every thread of a
    /// block (`blockIdx.*`, loops of such extents).
    uniform: Vec<String>,
    /// GPU kernels: whether every thread of the block reaches this point
    /// together (no enclosing `if`, every enclosing loop's extent uniform).
    converged: bool,
}

impl Kernel {
    /// Checks the kernel; the error names the kernel and what is wrong.
    pub fn verify(&self) -> Result<(), IrError> {
        let mut loops = Vec::new();
        let mut scope = Scope::default();
        if self.schedule.launch.is_some() {
            for (v, dim, _) in super::GPU_VARS {
                scope.vars.push(v.to_string());
                if dim == 0 {
                    scope.uniform.push(v.to_string());
                }
            }
            scope.converged = true;
        }
        let r = self
            .block(&self.body, &mut scope, &mut loops)
            .and_then(|_| self.check_schedule(&loops))
            .and_then(|_| {
                let mut pending = vec![Landing::Landed; self.bufs.len()];
                self.landed_before_read(&self.body, &mut pending)
            });
        r.map_err(|msg| IrError::Kernel {
            kernel: self.name.clone(),
            msg,
        })
    }

    fn check_schedule(&self, loops: &[String]) -> Result<(), String> {
        let s = &self.schedule;
        for (v, n) in s.vectorize.iter().chain(&s.unroll) {
            if !loops.contains(v) {
                return Err(format!("schedule names loop '{v}', which does not exist"));
            }
            if *n == 0 {
                return Err(format!("schedule factor for '{v}' is 0"));
            }
        }
        let has_gemm = matches!(self.body.first(), Some(Stmt::Gemm(_)));
        match (has_gemm, s.gemm) {
            (true, None) => return Err("a matrix product needs a gemm schedule".into()),
            (false, Some(_)) => return Err("gemm schedule without a matrix product".into()),
            (true, Some(g)) if [g.mr, g.nr, g.mc, g.kc, g.nc].contains(&0) => {
                return Err("gemm schedule sizes must be positive".into());
            }
            _ => {}
        }
        for b in &self.bufs {
            if b.role == Role::Shared && s.launch.is_none() {
                return Err(format!("shared buffer '%{}' outside a GPU kernel", b.name));
            }
        }
        if let Some(l) = s.launch {
            if l.grid.contains(&0) || l.block.contains(&0) {
                return Err("a launch's grid and block dims must be positive".into());
            }
            if l.block.iter().any(|&d| d > 1024)
                || l.grid[0] >= 1 << 31
                || l.grid[1] > 65535
                || l.grid[2] > 65535
            {
                return Err(format!(
                    "launch grid {:?} block {:?} is beyond CUDA's limits (grid x < 2^31, \
                     y and z <= 65535, block dims <= 1024)",
                    l.grid, l.block
                ));
            }
            if l.threads() > 1024 {
                return Err(format!("a block of {} threads (at most 1024)", l.threads()));
            }
            if s.parallel || s.gemm.is_some() {
                return Err("a GPU kernel has no CPU parallel loop or gemm schedule".into());
            }
        }
        if s.parallel {
            let ok = self.body.len() == 1
                && match &self.body[0] {
                    Stmt::For { extent, .. } => matches!(extent, Expr::Int(_)),
                    Stmt::Gemm(_) => true,
                    _ => false,
                };
            if !ok {
                return Err(
                    "a parallel kernel's body must be one loop of constant extent \
                            or one matrix product"
                        .into(),
                );
            }
        }
        Ok(())
    }

    fn block(
        &self,
        body: &[Stmt],
        scope: &mut Scope,
        loops: &mut Vec<String>,
    ) -> Result<(), String> {
        let mut inner = scope.clone();
        for (i, s) in body.iter().enumerate() {
            if matches!(s, Stmt::Gemm(_)) && (i > 0 || !inner.vars.is_empty()) {
                return Err("a matrix product must be the kernel's only statement".into());
            }
            self.stmt(s, &mut inner, loops)?;
        }
        Ok(())
    }

    fn stmt(&self, s: &Stmt, scope: &mut Scope, loops: &mut Vec<String>) -> Result<(), String> {
        match s {
            Stmt::For { var, extent, body } => {
                want(self.ty(extent, scope)?, DType::I64, "a loop extent")?;
                if loops.contains(var) {
                    return Err(format!("loop variable '{var}' is bound twice"));
                }
                loops.push(var.clone());
                let mut inner = scope.clone();
                inner.vars.push(var.clone());
                if uniform(extent, scope) {
                    inner.uniform.push(var.clone());
                } else {
                    inner.converged = false;
                }
                self.block(body, &mut inner, loops)
            }
            Stmt::If { cond, body } => {
                want(self.ty(cond, scope)?, DType::Bool, "an if condition")?;
                let mut inner = scope.clone();
                inner.converged = false;
                self.block(body, &mut inner, loops)
            }
            Stmt::Mma(m) => self.mma(m, scope),
            Stmt::Shuffle { name, value, xor } => self.shuffle(name, value, *xor, scope),
            Stmt::CopyAsync(c) => self.copy_async(c, scope),
            Stmt::AsyncCommit | Stmt::AsyncWait(_) if self.schedule.launch.is_none() => {
                Err("cp.async outside a GPU kernel".into())
            }
            Stmt::AsyncCommit | Stmt::AsyncWait(_) => Ok(()),
            Stmt::Barrier => {
                if self.schedule.launch.is_none() {
                    return Err("barrier outside a GPU kernel".into());
                }
                if !scope.converged {
                    return Err(
                        "barrier under an if or a loop whose extent differs between threads".into(),
                    );
                }
                Ok(())
            }
            Stmt::Let { name, dtype, init } => {
                want(self.ty(init, scope)?, *dtype, &format!("let ${name}"))?;
                scope.locals.insert(name.clone(), *dtype);
                Ok(())
            }
            Stmt::Set { name, value } => {
                let Some(d) = scope.locals.get(name).copied() else {
                    return Err(format!("assignment to undeclared local '${name}'"));
                };
                want(self.ty(value, scope)?, d, &format!("${name} = .."))
            }
            Stmt::Store { buf, index, value } => self.store(*buf, index, value, scope),
            Stmt::Gemm(g) => self.gemm(g, loops),
        }
    }

    fn shuffle(&self, name: &str, value: &Expr, xor: u32, scope: &Scope) -> Result<(), String> {
        let Some(l) = self.schedule.launch else {
            return Err("shfl outside a GPU kernel".into());
        };
        if l.block[1] != 1 || l.block[2] != 1 || l.block[0] % 32 != 0 {
            return Err("shfl needs a one-dimensional block of whole warps".into());
        }
        if !scope.converged {
            return Err("shfl under an if or a loop whose extent differs between threads".into());
        }
        if !matches!(xor, 1 | 2 | 4 | 8 | 16) {
            return Err(format!("shfl lane mask {xor} (1, 2, 4, 8 or 16)"));
        }
        let t = self.ty(value, scope)?;
        if !matches!(t, DType::F32 | DType::I32) {
            return Err(format!("shfl of {t} (f32 or i32)"));
        }
        let Some(d) = scope.locals.get(name).copied() else {
            return Err(format!("shfl into undeclared local '${name}'"));
        };
        want(t, d, &format!("shfl ${name}"))
    }

    /// Every read of a shared buffer that a `cp.async` fills comes after a
    /// `cp.async.wait` and then a barrier, on every path from the copy (so
    /// the copies have landed and every thread sees them; whether the wait
    /// retires the right group is the mapping's business), and an `mma`
    /// reads shared buffers only with a barrier after the last stores to
    /// them (gpu-sim runs copies at once and an mma as a block-wide step,
    /// so it would not show either race). `pending` is each buffer's state
    /// on entry and is left as on exit.
    fn landed_before_read(&self, body: &[Stmt], pending: &mut [Landing]) -> Result<(), String> {
        let read_buf = |b: BufId, pending: &[Landing]| {
            if pending[b.0 as usize] < Landing::Waited {
                return Ok(());
            }
            Err(format!(
                "'%{}' is read before its cp.async copies are waited for and a barrier",
                self.buf(b).name
            ))
        };
        // A warp's mma reads what other threads stored: a barrier between.
        let mma_reads = |b: BufId, pending: &[Landing]| match pending[b.0 as usize] {
            Landing::Stored => Err(format!(
                "mma reads '%{}' after stores to it without a barrier between",
                self.buf(b).name
            )),
            _ => read_buf(b, pending),
        };
        let read = |e: &Expr, pending: &[Landing]| {
            let mut r = Ok(());
            e.walk(&mut |x| {
                if let (Expr::Load(b, _), Ok(())) = (x, &r) {
                    r = read_buf(*b, pending);
                }
            });
            r
        };
        for s in body {
            match s {
                Stmt::CopyAsync(c) => {
                    for e in c.dst_at.iter().chain(&c.src_at).chain([&c.valid]) {
                        read(e, pending)?;
                    }
                    pending[c.dst.0 as usize] = Landing::InFlight;
                }
                Stmt::AsyncWait(_) => {
                    for p in pending.iter_mut() {
                        if *p == Landing::InFlight {
                            *p = Landing::Waited;
                        }
                    }
                }
                Stmt::Barrier => {
                    for p in pending.iter_mut() {
                        if matches!(*p, Landing::Stored | Landing::Waited) {
                            *p = Landing::Landed;
                        }
                    }
                }
                Stmt::Store { buf, index, value } => {
                    for e in index.iter().chain([value]) {
                        read(e, pending)?;
                    }
                    let p = &mut pending[buf.0 as usize];
                    if self.buf(*buf).role == Role::Shared {
                        *p = (*p).max(Landing::Stored);
                    }
                }
                Stmt::Mma(m) => {
                    mma_reads(m.a, pending)?;
                    mma_reads(m.b, pending)?;
                    for e in m.a_at.iter().chain(&m.b_at) {
                        read(e, pending)?;
                    }
                }
                Stmt::For { extent, body, .. } => {
                    read(extent, pending)?;
                    // Twice: the second pass starts from what the first
                    // iteration leaves (the worse of that and the entry).
                    let entry = pending.to_vec();
                    self.landed_before_read(body, pending)?;
                    join(pending, &entry);
                    self.landed_before_read(body, pending)?;
                    join(pending, &entry);
                }
                Stmt::If { cond, body } => {
                    read(cond, pending)?;
                    let entry = pending.to_vec();
                    self.landed_before_read(body, pending)?;
                    join(pending, &entry);
                }
                _ => {
                    let mut r = Ok(());
                    Stmt::each_expr(std::slice::from_ref(s), &mut |e| {
                        if r.is_ok() {
                            r = read(e, pending);
                        }
                    });
                    r?;
                }
            }
        }
        Ok(())
    }

    fn copy_async(&self, c: &super::CopyAsync, scope: &Scope) -> Result<(), String> {
        if self.schedule.launch.is_none() {
            return Err("cp.async outside a GPU kernel".into());
        }
        let dst = self.check_buf(c.dst, &c.dst_at, scope)?;
        let src = self.check_buf(c.src, &c.src_at, scope)?;
        want(
            self.ty(&c.valid, scope)?,
            DType::Bool,
            "a cp.async condition",
        )?;
        if dst.role != Role::Shared || src.role != Role::In {
            return Err(format!(
                "cp.async copies from a global input into shared memory, not '%{}' to '%{}'",
                src.name, dst.name
            ));
        }
        if dst.dtype != src.dtype {
            return Err(format!("cp.async from {} to {}", src.dtype, dst.dtype));
        }
        let bytes = c.len * dst.dtype.size();
        if !matches!(bytes, 4 | 8 | 16) {
            return Err(format!("cp.async of {bytes} bytes (4, 8 or 16)"));
        }
        for (b, at) in [(dst, &c.dst_at), (src, &c.src_at)] {
            let Some(&last) = b.shape.last() else {
                return Err(format!("cp.async of scalar '%{}'", b.name));
            };
            if !last.is_multiple_of(c.len) {
                return Err(format!(
                    "cp.async of {} elements in '%{}', whose rows of {last} are not a multiple",
                    c.len, b.name
                ));
            }
            // Rows are whole pieces; the position in the row must be too.
            if !at.last().is_some_and(|e| multiple_of(e, c.len as i64)) {
                return Err(format!(
                    "cp.async at a position of '%{}' not provably a multiple of {}",
                    b.name, c.len
                ));
            }
        }
        Ok(())
    }

    fn mma(&self, m: &super::Mma, scope: &Scope) -> Result<(), String> {
        let Some(l) = self.schedule.launch else {
            return Err("mma outside a GPU kernel".into());
        };
        if l.block[1] != 1 || l.block[2] != 1 || l.block[0] % 32 != 0 {
            return Err("mma needs a one-dimensional block of whole warps".into());
        }
        if !scope.converged {
            return Err("mma under an if or a loop whose extent differs between threads".into());
        }
        let (a, b) = (
            self.check_buf(m.a, &m.a_at, scope)?,
            self.check_buf(m.b, &m.b_at, scope)?,
        );
        for (x, what) in [(a, "A"), (b, "B")] {
            if x.role != Role::Shared || !matches!(x.dtype, DType::BF16 | DType::F16) {
                return Err(format!(
                    "mma {what} '%{}' must be a bf16 or f16 shared buffer",
                    x.name
                ));
            }
        }
        if a.dtype != b.dtype {
            return Err("mma A and B of different dtypes".into());
        }
        if m.b_kn {
            // Stored [k][n], B's halves are read one at a time: any
            // warp-uniform position inside the buffer.
            for (at, rows, dim) in [(&m.b_at[1], 16, 0), (&m.b_at[0], 8, 1)] {
                if let Expr::Int(p) = at {
                    if *p < 0 || *p as usize + rows > b.shape[dim] {
                        return Err(format!("mma B's tile is outside '%{}'", b.name));
                    }
                }
                if !warp_uniform(at, scope) {
                    return Err("mma B's position must be the same in every lane of a warp".into());
                }
            }
        }
        let operands: &[_] = if m.b_kn {
            &[(a, &m.a_at, 16, "A")]
        } else {
            &[(a, &m.a_at, 16, "A"), (b, &m.b_at, 8, "B")]
        };
        // Fragments are read as K-adjacent pairs (4-byte loads): rows of
        // even length, K positions even constants; a tile inside its buffer.
        for &(x, at, rows, what) in operands {
            if x.shape[1] % 2 != 0 || x.shape[1] < 16 {
                return Err(format!(
                    "mma {what} '%{}' needs an even row of at least 16",
                    x.name
                ));
            }
            match at[1] {
                Expr::Int(k) if k >= 0 && k % 2 == 0 && k as usize + 16 <= x.shape[1] => {}
                _ => {
                    return Err(format!(
                        "mma {what}'s K position must be an even constant inside '%{}'",
                        x.name
                    ))
                }
            }
            if let Expr::Int(r) = at[0] {
                if r < 0 || r as usize + rows > x.shape[0] {
                    return Err(format!("mma {what}'s tile is outside '%{}'", x.name));
                }
            }
            if !warp_uniform(&at[0], scope) {
                return Err(format!(
                    "mma {what}'s position must be the same in every lane of a warp"
                ));
            }
        }
        for (i, acc) in m.acc.iter().enumerate() {
            if m.acc[..i].contains(acc) {
                return Err(format!("mma sum '${acc}' named twice"));
            }
        }
        for acc in &m.acc {
            match scope.locals.get(acc) {
                Some(DType::F32) => {}
                _ => return Err(format!("mma sum '${acc}' must be a declared f32 local")),
            }
        }
        Ok(())
    }

    fn store(&self, buf: BufId, index: &[Expr], value: &Expr, scope: &Scope) -> Result<(), String> {
        let b = self.check_buf(buf, index, scope)?;
        if b.role == Role::In {
            return Err(format!("store to input buffer '%{}'", b.name));
        }
        want(
            self.ty(value, scope)?,
            b.dtype,
            &format!("store to '%{}'", b.name),
        )
    }

    fn gemm(&self, g: &Gemm, loops: &mut Vec<String>) -> Result<(), String> {
        let mut scope = Scope::default();
        for (v, _) in &g.batch {
            scope.vars.push(v.clone());
        }
        let names: Vec<&String> = g
            .batch
            .iter()
            .map(|b| &b.0)
            .chain([&g.m.0, &g.n.0, &g.k.0])
            .collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) || loops.contains(n) {
                return Err(format!("loop variable '{n}' is bound twice"));
            }
            loops.push((*n).clone());
        }
        let Some(s) = self.schedule.gemm else {
            return Err("a matrix product needs a gemm schedule".into());
        };
        if s.a_lanes == 0 {
            return Err("a matrix product's a_lanes must be at least 1".into());
        }
        for (op, (x, xn), r, lanes) in [(&g.a, &g.m, s.mr, s.a_lanes), (&g.b, &g.n, s.nr, 1)] {
            match op {
                Operand::Expr(e) => {
                    let mut sc = scope.clone();
                    sc.vars.push(x.clone());
                    sc.vars.push(g.k.0.clone());
                    want(self.ty(e, &sc)?, DType::F32, "a matrix product operand")?;
                }
                Operand::Packed(b) => {
                    let buf = self.bufs.get(b.0 as usize).ok_or("bad buffer id")?;
                    let mut want_shape = vec![xn.div_ceil(r), g.k.1, r];
                    if lanes > 1 {
                        want_shape.push(lanes);
                    }
                    if buf.shape != want_shape || buf.dtype != DType::F32 || buf.role != Role::In {
                        return Err(format!(
                            "packed operand '%{}' must be an f32 input of shape {:?}",
                            buf.name, want_shape
                        ));
                    }
                }
            }
        }
        scope.vars.push(g.m.0.clone());
        scope.vars.push(g.n.0.clone());
        scope.locals.insert(g.acc.clone(), DType::F32);
        if let Some(m) = &g.mask {
            want(self.ty(m, &scope)?, DType::Bool, "a matrix product's mask")?;
        }
        self.store(g.out, &g.index, &g.value, &scope)
    }

    fn check_buf(&self, buf: BufId, index: &[Expr], scope: &Scope) -> Result<&super::Buf, String> {
        let b = self
            .bufs
            .get(buf.0 as usize)
            .ok_or_else(|| format!("buffer id {} out of range", buf.0))?;
        if index.len() != b.shape.len() {
            return Err(format!(
                "'%{}' has {} dims but is indexed with {}",
                b.name,
                b.shape.len(),
                index.len()
            ));
        }
        for e in index {
            want(
                self.ty(e, scope)?,
                DType::I64,
                &format!("an index of '%{}'", b.name),
            )?;
        }
        Ok(b)
    }

    fn ty(&self, e: &Expr, scope: &Scope) -> Result<DType, String> {
        Ok(match e {
            Expr::Var(v) => {
                if !scope.vars.contains(v) {
                    return Err(format!("loop variable '{v}' used outside its loop"));
                }
                DType::I64
            }
            Expr::Local(v) => *scope
                .locals
                .get(v)
                .ok_or_else(|| format!("local '${v}' used before its let"))?,
            Expr::Int(_) => DType::I64,
            Expr::Lit(d, _) => *d,
            Expr::Load(b, ix) => self.check_buf(*b, ix, scope)?.dtype,
            Expr::Un(op, a) => {
                let t = self.ty(a, scope)?;
                match op {
                    UnOp::Not => want(t, DType::Bool, "not")?,
                    UnOp::Neg | UnOp::Abs if t.is_numeric() => {}
                    _ if t.is_float() => {}
                    _ => return Err(format!("{} of {t}", op.name())),
                }
                t
            }
            Expr::Bin(op, a, b) => {
                let (ta, tb) = (self.ty(a, scope)?, self.ty(b, scope)?);
                if ta != tb {
                    return Err(format!("{} of {ta} and {tb}", op.name()));
                }
                match op {
                    BinOp::And | BinOp::Or => want(ta, DType::Bool, op.name())?,
                    BinOp::Rem if !ta.is_int() => return Err(format!("rem of {ta}")),
                    BinOp::Pow if !ta.is_float() => return Err(format!("pow of {ta}")),
                    _ if op.is_compare() => {}
                    _ if !ta.is_numeric() => return Err(format!("{} of {ta}", op.name())),
                    _ => {}
                }
                if op.is_compare() {
                    DType::Bool
                } else {
                    ta
                }
            }
            Expr::Select(c, a, b) => {
                want(self.ty(c, scope)?, DType::Bool, "a select condition")?;
                let (ta, tb) = (self.ty(a, scope)?, self.ty(b, scope)?);
                if ta != tb {
                    return Err(format!("select of {ta} and {tb}"));
                }
                ta
            }
            Expr::Cast(d, a) => {
                self.ty(a, scope)?;
                *d
            }
        })
    }
}

/// Whether `e` has the same value in every lane of a warp: uniform, except
/// that `threadIdx.x` may appear divided by a multiple of 32 (the warp's
/// number in a one-dimensional block).
fn warp_uniform(e: &Expr, scope: &Scope) -> bool {
    let warp = e.rewrite(&|x| match x {
        Expr::Bin(BinOp::Div, a, d)
            if matches!(**a, Expr::Var(ref v) if v == "threadIdx.x")
                && matches!(**d, Expr::Int(n) if n > 0 && n % 32 == 0) =>
        {
            Some(Expr::Int(0))
        }
        _ => None,
    });
    uniform(&warp, scope)
}

/// Whether `e` has the same value in every thread of a block: integer
/// arithmetic on uniform variables only.
fn uniform(e: &Expr, scope: &Scope) -> bool {
    let mut ok = true;
    e.walk(&mut |x| match x {
        Expr::Var(v) if !scope.uniform.contains(v) => ok = false,
        Expr::Local(_) | Expr::Load(..) => ok = false,
        _ => {}
    });
    ok
}

/// Whether integer `e` is a multiple of `n` for every value of its
/// variables (a sound, simple test: sums, min and max of multiples, and
/// products with a multiple).
fn multiple_of(e: &Expr, n: i64) -> bool {
    match e {
        _ if n == 1 => true,
        Expr::Int(c) => c % n == 0,
        Expr::Bin(BinOp::Add | BinOp::Sub | BinOp::Min | BinOp::Max, a, b) => {
            multiple_of(a, n) && multiple_of(b, n)
        }
        Expr::Bin(BinOp::Mul, a, b) => multiple_of(a, n) || multiple_of(b, n),
        _ => false,
    }
}

/// Where a shared buffer's `cp.async` copies are, at a point of the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Landing {
    /// None in flight (or all waited for and a barrier passed).
    Landed,
    /// Stored to by threads since the last barrier.
    Stored,
    /// Waited for by this thread, not yet behind a barrier.
    Waited,
    /// Issued, not yet waited for.
    InFlight,
}

/// Each buffer's worse state of two paths.
fn join(pending: &mut [Landing], other: &[Landing]) {
    for (p, o) in pending.iter_mut().zip(other) {
        *p = (*p).max(*o);
    }
}

fn want(got: DType, want: DType, what: &str) -> Result<(), String> {
    if got != want {
        return Err(format!("{what} must be {want}, got {got}"));
    }
    Ok(())
}
