//! Kernel IR to a Cranelift function: counted loops over `Variable`s (the
//! frontend builds the SSA form), locals as variables, expressions with the
//! evaluator's semantics (NaN-propagating max/min, saturating float-to-int,
//! division by zero gives 0), f32 `exp`/`tanh`/`erf` as inline polynomials
//! (the same as the LLVM backend's), f64 ones and `pow`/`log` through libm.

use super::{gemm, vector};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, Block, Function, InstBuilder, MachMemFlags, Signature, Type, Value,
};
use cranelift_codegen::isa::TargetIsa;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::JITModule;
use cranelift_module::{Linkage, Module};
use kiln_ir::kernel::{BinOp, BufId, Expr, Kernel, Role, Stmt, UnOp};
use kiln_ir::DType;
use std::collections::HashMap;

/// The Cranelift type of a dtype (bools are bytes).
pub(crate) fn ty(d: DType) -> Type {
    match d {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::I8 | DType::U8 | DType::Bool => types::I8,
        DType::I32 => types::I32,
        DType::F16 | DType::BF16 => types::I16,
        DType::I64 => types::I64,
    }
}

/// Memory flags for buffer accesses: in bounds by construction.
pub(crate) fn flags() -> MachMemFlags {
    MachMemFlags::new().with_notrap()
}

/// Emits `k` into `func` (whose signature has the four `i64` parameters).
pub(crate) fn kernel(
    module: &mut JITModule,
    tile: Tile<'_>,
    func: &mut Function,
    k: &Kernel,
) -> Result<(), String> {
    if k.schedule.launch.is_some() {
        return Err(format!(
            "kernel '{}' is a GPU kernel; on the CPU it runs as its simt::to_cpu form",
            k.name
        ));
    }
    if k.schedule.parallel && k.body.len() != 1 {
        return Err(format!(
            "kernel '{}': a parallel kernel must be one loop or one matrix product",
            k.name
        ));
    }
    let mut fbc = FunctionBuilderContext::new();
    let b = FunctionBuilder::new(func, &mut fbc);
    let mut f = Func {
        b,
        module,
        tile,
        k,
        vars: HashMap::new(),
        locals: HashMap::new(),
        vlocals: HashMap::new(),
        bufs: Vec::new(),
        params: [None; 4],
        gemm_scratch: 0,
        libm: HashMap::new(),
    };
    let entry = f.b.create_block();
    f.b.append_block_params_for_function_params(entry);
    f.b.switch_to_block(entry);
    let ps = f.b.block_params(entry).to_vec();
    f.params = [Some(ps[0]), Some(ps[1]), Some(ps[2]), Some(ps[3])];
    let mut scratch_at = 0i64;
    for (i, buf) in k.bufs.iter().enumerate() {
        let p = if buf.role == Role::Scratch {
            let v = f.b.ins().iadd_imm_s(ps[3], scratch_at);
            scratch_at += (buf.bytes().div_ceil(64) * 64) as i64;
            v
        } else {
            f.b.ins().load(types::I64, flags(), ps[0], (i * 8) as i32)
        };
        f.bufs.push((p, buf.dtype));
    }
    f.gemm_scratch = scratch_at as usize;
    for (i, s) in k.body.iter().enumerate() {
        let range = (i == 0 && k.schedule.parallel).then(|| (ps[1], ps[2]));
        f.stmt(s, range)?;
    }
    f.b.ins().return_(&[]);
    f.b.seal_all_blocks();
    let config = f.module.isa().frontend_config();
    f.b.finalize(config);
    Ok(())
}

/// How matrix products get their register tile.
#[derive(Clone, Copy)]
pub(crate) struct Tile<'a> {
    /// The instruction set Cranelift compiles the tile for.
    pub isa: &'a dyn TargetIsa,
    /// Whether a 6 x 16 tile calls `avx2_tile` instead (the host has it and
    /// the caller allows it).
    pub native: bool,
}

/// One function being emitted.
pub(crate) struct Func<'a, 'k> {
    pub b: FunctionBuilder<'a>,
    pub module: &'a mut JITModule,
    /// How the matrix product's register tile is made.
    pub tile: Tile<'a>,
    pub k: &'k Kernel,
    pub vars: HashMap<String, Value>,
    locals: HashMap<String, (Variable, DType)>,
    /// Locals held as `f32x4` inside a vector loop (see `vector`).
    pub vlocals: HashMap<String, Variable>,
    /// Each buffer's pointer and dtype.
    pub bufs: Vec<(Value, DType)>,
    /// `args`, `lo`, `hi`, `scratch`.
    pub params: [Option<Value>; 4],
    /// Byte offset in scratch where the matrix product's part starts.
    pub gemm_scratch: usize,
    libm: HashMap<&'static str, cranelift_codegen::ir::FuncRef>,
}

/// An open counted loop.
pub(crate) struct Loop {
    pub var: Variable,
    body: Block,
    exit: Block,
    to: Value,
    step: i64,
}

impl Func<'_, '_> {
    /// Opens `for i in from..to`; the body goes into the current block. The
    /// loop is tested once before entry and then at the bottom (one branch per
    /// iteration).
    pub fn begin_loop(&mut self, from: Value, to: Value) -> (Value, Loop) {
        self.begin_loop_step(from, to, 1)
    }

    /// Opens `for i in (from..to).step_by(step)`.
    pub fn begin_loop_step(&mut self, from: Value, to: Value, step: i64) -> (Value, Loop) {
        let var = self.b.declare_var(types::I64);
        self.b.def_var(var, from);
        let body = self.b.create_block();
        let exit = self.b.create_block();
        let c = self.b.ins().icmp(IntCC::SignedLessThan, from, to);
        self.b.ins().brif(c, body, &[], exit, &[]);
        self.b.switch_to_block(body);
        let i = self.b.use_var(var);
        (
            i,
            Loop {
                var,
                body,
                exit,
                to,
                step,
            },
        )
    }

    /// Closes a loop: steps, tests and jumps back.
    pub fn end_loop(&mut self, l: Loop) {
        let i = self.b.use_var(l.var);
        let n = self.b.ins().iadd_imm_s(i, l.step);
        self.b.def_var(l.var, n);
        let c = self.b.ins().icmp(IntCC::SignedLessThan, n, l.to);
        self.b.ins().brif(c, l.body, &[], l.exit, &[]);
        self.b.switch_to_block(l.exit);
    }

    pub fn iconst(&mut self, v: i64) -> Value {
        self.b.ins().iconst(types::I64, v)
    }

    fn stmt(&mut self, s: &Stmt, range: Option<(Value, Value)>) -> Result<(), String> {
        match s {
            Stmt::For { var, extent, body } => {
                if range.is_none() {
                    if let Some(sums) = vector::plan(self, var, body) {
                        return self.vector_for(var, extent, body, &sums);
                    }
                }
                let (from, to) = match range {
                    Some(r) => r,
                    None => {
                        let z = self.iconst(0);
                        (z, self.expr(extent)?.0)
                    }
                };
                let (i, l) = self.begin_loop(from, to);
                let saved = self.vars.insert(var.clone(), i);
                self.body(body)?;
                match saved {
                    Some(v) => self.vars.insert(var.clone(), v),
                    None => self.vars.remove(var),
                };
                self.end_loop(l);
            }
            Stmt::Let { name, dtype, init } => {
                let (v, _) = self.expr(init)?;
                let var = self.b.declare_var(ty(*dtype));
                self.b.def_var(var, v);
                self.locals.insert(name.clone(), (var, *dtype));
            }
            Stmt::Set { name, value } => {
                let (v, _) = self.expr(value)?;
                let (var, _) = *self
                    .locals
                    .get(name)
                    .ok_or_else(|| format!("unknown local ${name}"))?;
                self.b.def_var(var, v);
            }
            Stmt::Store { buf, index, value } => {
                let (v, _) = self.expr(value)?;
                self.store(*buf, index, v)?;
            }
            Stmt::Gemm(g) => gemm::emit(self, g, range)?,
            Stmt::If { cond, body } => {
                let (c, _) = self.expr(cond)?;
                let (then, join) = (self.b.create_block(), self.b.create_block());
                self.b.ins().brif(c, then, &[], join, &[]);
                self.b.switch_to_block(then);
                self.body(body)?;
                self.b.ins().jump(join, &[]);
                self.b.switch_to_block(join);
            }
            Stmt::Barrier
            | Stmt::Mma(_)
            | Stmt::Shuffle { .. }
            | Stmt::CopyAsync(_)
            | Stmt::AsyncCommit
            | Stmt::AsyncWait(_) => {
                return Err(format!(
                    "kernel '{}': a GPU-only statement in a CPU kernel",
                    self.k.name
                ))
            }
        }
        Ok(())
    }

    /// A loop body; locals it declares end with it.
    pub fn body(&mut self, body: &[Stmt]) -> Result<(), String> {
        let saved_locals = self.locals.clone();
        for s in body {
            self.stmt(s, None)?;
        }
        self.locals = saved_locals;
        Ok(())
    }

    /// The dtype of a declared local.
    pub fn local_dtype(&self, name: &str) -> Option<DType> {
        self.locals.get(name).map(|l| l.1)
    }

    /// Sets (declaring on first use) an f32 local.
    pub fn set_local(&mut self, name: &str, v: Value) {
        let var = match self.locals.get(name) {
            Some((var, _)) => *var,
            None => {
                let var = self.b.declare_var(types::F32);
                self.locals.insert(name.to_string(), (var, DType::F32));
                var
            }
        };
        self.b.def_var(var, v);
    }

    /// The address of `buf[index]`.
    pub fn elem_ptr(&mut self, buf: BufId, index: &[Expr]) -> Result<Value, String> {
        let shape = self.k.bufs[buf.0 as usize].shape.clone();
        let mut off: Option<Value> = None;
        for (e, &d) in index.iter().zip(&shape) {
            let (v, _) = self.expr(e)?;
            off = Some(match off {
                None => v,
                Some(o) => {
                    let m = self.b.ins().imul_imm_s(o, d as i64);
                    self.b.ins().iadd(m, v)
                }
            });
        }
        let (ptr, d) = self.bufs[buf.0 as usize];
        Ok(match off {
            None => ptr,
            Some(o) => {
                let bytes = self.b.ins().imul_imm_s(o, d.size() as i64);
                self.b.ins().iadd(ptr, bytes)
            }
        })
    }

    /// Stores `v` at `buf[index]`.
    pub fn store(&mut self, buf: BufId, index: &[Expr], v: Value) -> Result<(), String> {
        let p = self.elem_ptr(buf, index)?;
        self.b.ins().store(flags(), v, p, 0);
        Ok(())
    }

    fn f32c(&mut self, v: f64) -> Value {
        self.b.ins().f32const(v as f32)
    }

    fn lit(&mut self, d: DType, v: f64) -> Value {
        match d {
            DType::F32 => self.f32c(v),
            DType::F64 => self.b.ins().f64const(v),
            DType::Bool => self.b.ins().iconst(types::I8, (v != 0.0) as i64),
            DType::I8 => self.b.ins().iconst(types::I8, v as i8 as i64),
            DType::U8 => self.b.ins().iconst(types::I8, v as u8 as i64),
            DType::I32 => self.b.ins().iconst(types::I32, v as i32 as i64),
            _ => self.b.ins().iconst(types::I64, v as i64),
        }
    }

    /// Emits an expression; returns its value and dtype.
    pub fn expr(&mut self, e: &Expr) -> Result<(Value, DType), String> {
        Ok(match e {
            Expr::Var(v) => (
                *self
                    .vars
                    .get(v)
                    .ok_or_else(|| format!("unbound loop variable '{v}'"))?,
                DType::I64,
            ),
            Expr::Int(i) => (self.iconst(*i), DType::I64),
            Expr::Lit(d, v) => (self.lit(*d, *v), *d),
            Expr::Local(n) => {
                let (var, d) = *self
                    .locals
                    .get(n)
                    .ok_or_else(|| format!("unknown local ${n}"))?;
                (self.b.use_var(var), d)
            }
            Expr::Load(b, ix) => {
                let p = self.elem_ptr(*b, ix)?;
                let d = self.bufs[b.0 as usize].1;
                let v = self.b.ins().load(ty(d), flags(), p, 0);
                if d == DType::Bool {
                    (self.b.ins().icmp_imm_s(IntCC::NotEqual, v, 0), d)
                } else {
                    (v, d)
                }
            }
            Expr::Un(op, a) => {
                let (x, d) = self.expr(a)?;
                (self.unary(*op, x, d), d)
            }
            Expr::Bin(op, a, b) => {
                let (x, d) = self.expr(a)?;
                let (y, _) = self.expr(b)?;
                let nonzero = matches!(**b, Expr::Int(n) if n != 0);
                self.binary(*op, x, y, d, nonzero)
            }
            Expr::Select(c, a, b) => {
                let (c, _) = self.expr(c)?;
                let (x, d) = self.expr(a)?;
                let (y, _) = self.expr(b)?;
                (self.b.ins().select(c, x, y), d)
            }
            Expr::Cast(to, a) => {
                let (x, from) = self.expr(a)?;
                (self.cast(x, from, *to), *to)
            }
        })
    }

    /// Calls a libm function of one or two `f32`/`f64` operands.
    fn libm(&mut self, name: &'static str, t: Type, args: &[Value]) -> Value {
        let fref = match self.libm.get(name) {
            Some(f) => *f,
            None => {
                let mut sig = Signature::new(self.module.isa().default_call_conv());
                sig.params = args.iter().map(|_| AbiParam::new(t)).collect();
                sig.returns = vec![AbiParam::new(t)];
                let id = self
                    .module
                    .declare_function(name, Linkage::Import, &sig)
                    .expect("libm names are valid imports");
                let f = self.module.declare_func_in_func(id, self.b.func);
                self.libm.insert(name, f);
                f
            }
        };
        let call = self.b.ins().call(fref, args);
        self.b.inst_results(call)[0]
    }

    fn fma(&mut self, a: Value, b: Value, c: Value) -> Value {
        self.b.ins().fma(a, b, c)
    }

    /// Whether `x` is a vector (the math below serves `f32` and `f32x4`).
    fn is_vec(&self, x: Value) -> bool {
        self.b.func.dfg.value_type(x).is_vector()
    }

    /// The constant `v` shaped like `like` (splat for vectors).
    fn fk(&mut self, like: Value, v: f64) -> Value {
        let c = self.f32c(v);
        if self.is_vec(like) {
            self.b.ins().splat(types::F32X4, c)
        } else {
            c
        }
    }

    /// `c ? x : y` for a comparison `c` of scalars or of vectors (lane mask).
    pub(crate) fn sel(&mut self, c: Value, x: Value, y: Value) -> Value {
        if self.is_vec(x) {
            let m = self.b.ins().bitcast(types::F32X4, MachMemFlags::new(), c);
            self.b.ins().bitselect(m, x, y)
        } else {
            self.b.ins().select(c, x, y)
        }
    }

    /// `|t|` with the sign of `x`.
    fn copysign(&mut self, t: Value, x: Value) -> Value {
        if !self.is_vec(x) {
            return self.b.ins().fcopysign(t, x);
        }
        let sign = self.fk(x, -0.0);
        let s = self.b.ins().band(x, sign);
        let mag = self.b.ins().band_not(t, sign);
        self.b.ins().bor(mag, s)
    }

    /// `exp` of an f32 (the LLVM backend's algorithm).
    pub(crate) fn exp_f32(&mut self, x: Value) -> Value {
        let lo = self.fk(x, -87.0);
        let hi = self.fk(x, 88.0);
        let c = self.b.ins().fcmp(FloatCC::LessThan, x, lo);
        let x1 = self.sel(c, lo, x);
        let c = self.b.ins().fcmp(FloatCC::GreaterThan, x1, hi);
        let xc = self.sel(c, hi, x1);
        let log2e = self.fk(x, std::f64::consts::LOG2_E);
        let magic = self.fk(x, 12582912.0);
        let t = self.fma(xc, log2e, magic);
        let nf = self.b.ins().fsub(t, magic);
        let c1 = self.fk(x, -0.693359375);
        let r0 = self.fma(nf, c1, xc);
        let c2 = self.fk(x, 2.12194440e-4);
        let r = self.fma(nf, c2, r0);
        let r2 = self.b.ins().fmul(r, r);
        let coef = [
            1.9875691500e-4,
            1.3981999507e-3,
            8.3334519073e-3,
            4.1665795894e-2,
            1.6666665459e-1,
            5.0000001201e-1,
        ];
        let mut p = self.fk(x, coef[0]);
        for &k in &coef[1..] {
            let kc = self.fk(x, k);
            p = self.fma(p, r, kc);
        }
        let p = self.fma(p, r2, r);
        let one = self.fk(x, 1.0);
        let p = self.b.ins().fadd(p, one);
        let (it, ft) = if self.is_vec(x) {
            (types::I32X4, types::F32X4)
        } else {
            (types::I32, types::F32)
        };
        let bits = self.b.ins().bitcast(it, MachMemFlags::new(), t);
        let bias = self.b.ins().iconst(types::I32, 127 - 0x4B40_0000);
        let bias = if it.is_vector() {
            self.b.ins().splat(it, bias)
        } else {
            bias
        };
        let e = self.b.ins().iadd(bits, bias);
        let n23 = self.b.ins().iconst(types::I32, 23);
        let sh = self.b.ins().ishl(e, n23);
        let scale = self.b.ins().bitcast(ft, MachMemFlags::new(), sh);
        let y = self.b.ins().fmul(p, scale);
        let over = self.fk(x, 88.72283905206835);
        let c = self.b.ins().fcmp(FloatCC::GreaterThan, x, over);
        let inf = self.fk(x, f64::INFINITY);
        let y = self.sel(c, inf, y);
        let under = self.fk(x, -104.0);
        let c = self.b.ins().fcmp(FloatCC::LessThan, x, under);
        let zero = self.fk(x, 0.0);
        self.sel(c, zero, y)
    }

    fn poly(&mut self, x: Value, coef: &[f64]) -> Value {
        let mut p = self.fk(x, coef[0]);
        for &k in &coef[1..] {
            let kc = self.fk(x, k);
            p = self.fma(p, x, kc);
        }
        p
    }

    pub(crate) fn tanh_f32(&mut self, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        let m2 = self.fk(x, -2.0);
        let m = self.b.ins().fmul(a, m2);
        let e = self.exp_f32(m);
        let one = self.fk(x, 1.0);
        let num = self.b.ins().fsub(one, e);
        let den = self.b.ins().fadd(one, e);
        let big = self.b.ins().fdiv(num, den);
        let z = self.b.ins().fmul(x, x);
        let q = self.poly(
            z,
            &[
                -5.70498872745e-3,
                2.06390887954e-2,
                -5.37397155531e-2,
                1.33314422036e-1,
                -3.33332819422e-1,
            ],
        );
        let q = self.b.ins().fmul(q, z);
        let small = self.fma(q, a, a);
        let lim = self.fk(x, 0.625);
        let c = self.b.ins().fcmp(FloatCC::LessThan, a, lim);
        let t = self.sel(c, small, big);
        self.copysign(t, x)
    }

    pub(crate) fn erf_f32(&mut self, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        let p = self.fk(x, 0.3275911);
        let one = self.fk(x, 1.0);
        let pa = self.fma(p, a, one);
        let t = self.b.ins().fdiv(one, pa);
        let s = self.poly(
            t,
            &[
                1.061405429,
                -1.453152027,
                1.421413741,
                -0.284496736,
                0.254829592,
            ],
        );
        let s = self.b.ins().fmul(s, t);
        let a2 = self.b.ins().fmul(a, a);
        let na2 = self.b.ins().fneg(a2);
        let ex = self.exp_f32(na2);
        let m1 = self.fk(x, -1.0);
        let big = self.fma(s, ex, m1);
        let big = self.b.ins().fneg(big);
        let c = 2.0 / std::f64::consts::PI.sqrt();
        let u: Vec<f64> = [
            1.0 / 9360.0,
            -1.0 / 1320.0,
            1.0 / 216.0,
            -1.0 / 42.0,
            1.0 / 10.0,
            -1.0 / 3.0,
            1.0,
        ]
        .iter()
        .map(|t| c * t)
        .collect();
        let small = self.poly(a2, &u);
        let small = self.b.ins().fmul(small, a);
        let lim = self.fk(x, 0.5);
        let cnd = self.b.ins().fcmp(FloatCC::LessThan, a, lim);
        let y = self.sel(cnd, small, big);
        self.copysign(y, x)
    }

    /// A unary op on a scalar of `d` (or an `f32x4` where `d` is f32 and the
    /// op has a vector form: `vector::class` decides).
    pub(crate) fn unary(&mut self, op: UnOp, x: Value, d: DType) -> Value {
        let f64 = d == DType::F64;
        let t = ty(d);
        match op {
            UnOp::Neg if d.is_float() => self.b.ins().fneg(x),
            UnOp::Neg => self.b.ins().ineg(x),
            UnOp::Abs if d.is_float() => self.b.ins().fabs(x),
            UnOp::Abs => self.b.ins().iabs(x),
            UnOp::Sqrt => self.b.ins().sqrt(x),
            UnOp::Floor => self.b.ins().floor(x),
            UnOp::Ceil => self.b.ins().ceil(x),
            UnOp::Not => self.b.ins().bxor_imm_s(x, 1),
            UnOp::Exp if !f64 => self.exp_f32(x),
            UnOp::Tanh if !f64 => self.tanh_f32(x),
            UnOp::Erf if !f64 => self.erf_f32(x),
            UnOp::Exp => self.libm("exp", t, &[x]),
            UnOp::Tanh => self.libm("tanh", t, &[x]),
            UnOp::Erf => self.libm("erf", t, &[x]),
            UnOp::Log if f64 => self.libm("log", t, &[x]),
            UnOp::Log => self.libm("logf", t, &[x]),
        }
    }

    /// A binary op on scalars of `d` (or `f32x4`s, as for `unary`; a
    /// comparison of vectors gives a lane mask).
    pub(crate) fn binary(
        &mut self,
        op: BinOp,
        x: Value,
        y: Value,
        d: DType,
        nonzero: bool,
    ) -> (Value, DType) {
        let unsigned = d == DType::U8 || d == DType::Bool;
        let v = if d.is_float() {
            match op {
                BinOp::Add => self.b.ins().fadd(x, y),
                BinOp::Sub => self.b.ins().fsub(x, y),
                BinOp::Mul => self.b.ins().fmul(x, y),
                BinOp::Div => self.b.ins().fdiv(x, y),
                BinOp::Max => self.b.ins().fmax(x, y),
                BinOp::Min => self.b.ins().fmin(x, y),
                BinOp::Pow if d == DType::F64 => self.libm("pow", types::F64, &[x, y]),
                BinOp::Pow => self.libm("powf", types::F32, &[x, y]),
                BinOp::Rem => self.libm(
                    if d == DType::F64 { "fmod" } else { "fmodf" },
                    ty(d),
                    &[x, y],
                ),
                BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                    let c = match op {
                        BinOp::Eq => FloatCC::Equal,
                        BinOp::Ne => FloatCC::NotEqual,
                        BinOp::Lt => FloatCC::LessThan,
                        BinOp::Le => FloatCC::LessThanOrEqual,
                        BinOp::Gt => FloatCC::GreaterThan,
                        _ => FloatCC::GreaterThanOrEqual,
                    };
                    return (self.b.ins().fcmp(c, x, y), DType::Bool);
                }
                BinOp::And | BinOp::Or => unreachable!("the verifier allows and/or on bools only"),
            }
        } else {
            match op {
                BinOp::Add => self.b.ins().iadd(x, y),
                BinOp::Sub => self.b.ins().isub(x, y),
                BinOp::Mul => self.b.ins().imul(x, y),
                BinOp::Div | BinOp::Rem => {
                    let t = ty(d);
                    let (safe, z) = if nonzero {
                        (y, None)
                    } else {
                        let z = self.b.ins().icmp_imm_s(IntCC::Equal, y, 0);
                        let one = self.b.ins().iconst(t, 1);
                        (self.b.ins().select(z, one, y), Some(z))
                    };
                    let q = match (op, unsigned) {
                        (BinOp::Div, false) => self.b.ins().sdiv(x, safe),
                        (BinOp::Div, true) => self.b.ins().udiv(x, safe),
                        (_, false) => self.b.ins().srem(x, safe),
                        (_, true) => self.b.ins().urem(x, safe),
                    };
                    match z {
                        Some(z) => {
                            let zero = self.b.ins().iconst(t, 0);
                            self.b.ins().select(z, zero, q)
                        }
                        None => q,
                    }
                }
                BinOp::Max if unsigned => self.b.ins().umax(x, y),
                BinOp::Min if unsigned => self.b.ins().umin(x, y),
                BinOp::Max => self.b.ins().smax(x, y),
                BinOp::Min => self.b.ins().smin(x, y),
                BinOp::Pow => unreachable!("the verifier allows pow on floats only"),
                BinOp::And => self.b.ins().band(x, y),
                BinOp::Or => self.b.ins().bor(x, y),
                BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                    let c = match (op, unsigned) {
                        (BinOp::Eq, _) => IntCC::Equal,
                        (BinOp::Ne, _) => IntCC::NotEqual,
                        (BinOp::Lt, false) => IntCC::SignedLessThan,
                        (BinOp::Le, false) => IntCC::SignedLessThanOrEqual,
                        (BinOp::Gt, false) => IntCC::SignedGreaterThan,
                        (BinOp::Ge, false) => IntCC::SignedGreaterThanOrEqual,
                        (BinOp::Lt, true) => IntCC::UnsignedLessThan,
                        (BinOp::Le, true) => IntCC::UnsignedLessThanOrEqual,
                        (BinOp::Gt, true) => IntCC::UnsignedGreaterThan,
                        _ => IntCC::UnsignedGreaterThanOrEqual,
                    };
                    return (self.b.ins().icmp(c, x, y), DType::Bool);
                }
            }
        };
        (v, d)
    }

    /// Converts as the evaluator does (float to integer saturates, NaN gives
    /// 0; to bool is "not zero").
    pub fn cast(&mut self, x: Value, from: DType, to: DType) -> Value {
        if from == to {
            return x;
        }
        let unsigned = |d: DType| d == DType::U8 || d == DType::Bool;
        if to == DType::Bool {
            return if from.is_float() {
                let z = self.lit(from, 0.0);
                self.b.ins().fcmp(FloatCC::NotEqual, x, z)
            } else {
                self.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0)
            };
        }
        let (ft, tt) = (ty(from), ty(to));
        match (from.is_float(), to.is_float()) {
            (true, true) if tt.bits() > ft.bits() => self.b.ins().fpromote(tt, x),
            (true, true) => self.b.ins().fdemote(tt, x),
            (true, false) if unsigned(to) => self.b.ins().fcvt_to_uint_sat(tt, x),
            (true, false) => self.b.ins().fcvt_to_sint_sat(tt, x),
            (false, true) if unsigned(from) => self.b.ins().fcvt_from_uint(tt, x),
            (false, true) => self.b.ins().fcvt_from_sint(tt, x),
            (false, false) if tt.bits() > ft.bits() && unsigned(from) => {
                self.b.ins().uextend(tt, x)
            }
            (false, false) if tt.bits() > ft.bits() => self.b.ins().sextend(tt, x),
            (false, false) if tt.bits() < ft.bits() => self.b.ins().ireduce(tt, x),
            (false, false) => x,
        }
    }
}
