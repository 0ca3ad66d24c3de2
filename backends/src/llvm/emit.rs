//! Kernel IR to LLVM IR text: one function per kernel with the entry ABI
//! `void @name(ptr %args, i64 %lo, i64 %hi, ptr %scratch)` (`args` holds one
//! pointer per buffer; `lo..hi` is the range of tasks to run), calling a body
//! whose buffer parameters are `noalias`. Loops are canonical counted loops,
//! locals are stack slots that SROA promotes, float arithmetic carries
//! `reassoc contract` so reductions vectorize and multiply-adds fuse.

use super::gemm;
use super::math;
use kiln_ir::kernel::{BinOp, BufId, CopyAsync, Expr, Kernel, Mma, Role, Stmt, UnOp, GPU_VARS};
use kiln_ir::DType;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

/// What a module collects while kernels are emitted into it.
#[derive(Default)]
pub(crate) struct Module {
    pub text: String,
    /// Module-level variables (GPU shared memory).
    pub globals: Vec<String>,
    decls: BTreeSet<String>,
    meta: Vec<String>,
}

impl Module {
    /// Declares an intrinsic or library function the code calls.
    pub fn declare(&mut self, decl: &str) {
        self.decls.insert(decl.to_string());
    }

    /// A fresh loop-metadata node with the given properties.
    pub fn loop_meta(&mut self, props: &[String]) -> String {
        let id = self.meta.len();
        let mut s = format!("!{id} = distinct !{{!{id}");
        let mut extra = Vec::new();
        for (i, p) in props.iter().enumerate() {
            let pid = id + 1 + i;
            let _ = write!(s, ", !{pid}");
            extra.push(format!("!{pid} = !{{{p}}}"));
        }
        s.push('}');
        self.meta.push(s);
        self.meta.extend(extra);
        format!("!{id}")
    }

    /// The whole module: attributes, helpers, kernels, declarations, metadata.
    pub fn finish(mut self, cpu: &str, features: &str) -> String {
        for d in math::HELPER_DECLS {
            self.declare(d);
        }
        let mut s = String::new();
        for g in &self.globals {
            s.push_str(g);
            s.push('\n');
        }
        s.push_str(&self.text);
        s.push_str(math::HELPERS);
        s.push('\n');
        for d in &self.decls {
            s.push_str(d);
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "\nattributes #0 = {{ nounwind \"target-cpu\"=\"{cpu}\" \"target-features\"=\"{features}\" }}"
        );
        let _ = writeln!(
            s,
            "attributes #1 = {{ alwaysinline nounwind \"target-cpu\"=\"{cpu}\" \"target-features\"=\"{features}\" }}"
        );
        for m in &self.meta {
            s.push_str(m);
            s.push('\n');
        }
        s
    }
}

/// The LLVM type of a dtype held in a register. bf16 values are their bits
/// (`i16`): only loaded, stored, selected and converted (in integer
/// arithmetic, see `Func::cast`), so no target needs bf16 support.
pub(crate) fn reg_ty(d: DType) -> &'static str {
    match d {
        DType::F32 => "float",
        DType::F64 => "double",
        DType::F16 => "half",
        DType::BF16 => "i16",
        DType::I8 | DType::U8 => "i8",
        DType::I32 => "i32",
        DType::I64 => "i64",
        DType::Bool => "i1",
    }
}

/// The LLVM type of a dtype in memory (bools are bytes).
pub(crate) fn mem_ty(d: DType) -> &'static str {
    match d {
        DType::Bool => "i8",
        d => reg_ty(d),
    }
}

/// A literal of `d` in LLVM syntax (floats as exact hex doubles).
pub(crate) fn literal(d: DType, v: f64) -> String {
    match d {
        DType::F32 => format!("0x{:016X}", (v as f32 as f64).to_bits()),
        DType::F64 => format!("0x{:016X}", v.to_bits()),
        DType::Bool => if v != 0.0 { "true" } else { "false" }.to_string(),
        DType::I8 => (v as i8).to_string(),
        DType::U8 => (v as u8 as i8).to_string(),
        DType::I32 => (v as i32).to_string(),
        DType::F16 => format!("0xH{:04X}", half::f16::from_f64(v).to_bits()),
        DType::BF16 => (half::bf16::from_f64(v).to_bits() as i16).to_string(),
        DType::I64 => (v as i64).to_string(),
    }
}

/// Emits one kernel into `m`. `aliased` lists buffers that may share memory
/// with another buffer (in-place steps): they lose `noalias`.
pub(crate) fn kernel(m: &mut Module, k: &Kernel, aliased: &[BufId]) -> Result<(), String> {
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
    let mut f = Func::new(m, k);
    let params: Vec<String> = (0..k.bufs.len())
        .map(|i| {
            let alias = if aliased.contains(&BufId(i as u32)) {
                ""
            } else {
                " noalias"
            };
            format!("ptr{alias} %b{i}")
        })
        .collect();
    for (i, b) in k.bufs.iter().enumerate() {
        f.bufs.push((format!("%b{i}"), b.dtype));
    }
    let mut scratch_at = 0usize;
    for (i, b) in k.bufs.iter().enumerate() {
        if b.role == Role::Scratch {
            f.scratch_bufs.push((i, scratch_at));
            scratch_at += b.bytes().div_ceil(64) * 64;
        }
    }
    f.gemm_scratch = scratch_at;
    f.emit_scratch_ptrs();
    for (i, s) in k.body.iter().enumerate() {
        let range = (i == 0 && k.schedule.parallel).then_some(("%lo", "%hi"));
        f.stmt(s, range)?;
    }
    f.code.push_str("  ret void\n");
    let body = format!(
        "define internal void @{n}.body({p}, i64 %lo, i64 %hi, ptr %scratch) #0 {{\nentry:\n{a}{c}}}\n\n",
        n = k.name,
        p = params.join(", "),
        a = f.allocas,
        c = f.code
    );
    let mut entry = format!(
        "define void @{n}(ptr %args, i64 %lo, i64 %hi, ptr %scratch) #0 {{\nentry:\n",
        n = k.name
    );
    let mut args = Vec::new();
    for i in 0..k.bufs.len() {
        let _ = writeln!(
            entry,
            "  %p{i} = getelementptr inbounds ptr, ptr %args, i64 {i}"
        );
        let _ = writeln!(entry, "  %a{i} = load ptr, ptr %p{i}, align 8");
        args.push(format!("ptr %a{i}"));
    }
    let _ = writeln!(
        entry,
        "  call void @{n}.body({a}, i64 %lo, i64 %hi, ptr %scratch)\n  ret void\n}}\n",
        n = k.name,
        a = args.join(", ")
    );
    m.text.push_str(&body);
    m.text.push_str(&entry);
    Ok(())
}

/// A GPU kernel (one with a launch) as an NVPTX kernel function:
/// `void @name(ptr addrspace(1) %g0, ..)` with one global pointer per
/// non-shared buffer in order, shared buffers as module-level
/// `addrspace(3)` arrays, scratch as the thread's local memory (`alloca`),
/// the reserved index variables read from the PTX
/// special registers, barriers as `bar.sync 0`. The body is emitted exactly
/// as for the CPU, on generic pointers (NVPTX infers the address spaces).
pub(crate) fn gpu_kernel(m: &mut Module, k: &Kernel, aliased: &[BufId]) -> Result<(), String> {
    let Some(launch) = k.schedule.launch else {
        return Err(format!("kernel '{}' has no GPU launch", k.name));
    };
    let mut f = Func::new(m, k);
    let mut params = Vec::new();
    for (i, b) in k.bufs.iter().enumerate() {
        let p = match b.role {
            Role::Shared => {
                let g = format!("@{}.shared{i}", k.name);
                f.m.globals.push(format!(
                    "{g} = internal addrspace(3) global [{} x {}] undef, align 16",
                    b.numel().max(1),
                    mem_ty(b.dtype)
                ));
                f.ins("b", &format!("addrspacecast ptr addrspace(3) {g} to ptr"))
            }
            // A thread's own scratch: local memory.
            Role::Scratch => f.alloca(mem_ty(b.dtype), b.numel().max(1), 16),
            Role::In | Role::Out => {
                // In-place steps share memory between an input and the
                // output: no noalias (and no read-only cache) for them.
                let attrs = match (aliased.contains(&BufId(i as u32)), b.role) {
                    (true, _) => "",
                    (false, Role::In) => " noalias readonly",
                    (false, _) => " noalias",
                };
                params.push(format!("ptr addrspace(1){attrs} %g{i}"));
                f.ins("b", &format!("addrspacecast ptr addrspace(1) %g{i} to ptr"))
            }
        };
        f.bufs.push((p, b.dtype));
    }
    for (name, dim, axis) in GPU_VARS {
        let sreg = if dim == 0 { "ctaid" } else { "tid" };
        let xyz = ["x", "y", "z"][axis];
        let dims = if dim == 0 { launch.grid } else { launch.block };
        let v = if dims[axis] == 1 {
            "0".to_string()
        } else {
            let intr = format!("@llvm.nvvm.read.ptx.sreg.{sreg}.{xyz}");
            f.m.declare(&format!("declare i32 {intr}()"));
            let r = f.ins("id", &format!("call i32 {intr}()"));
            f.ins("id", &format!("zext i32 {r} to i64"))
        };
        f.vars.insert(name.to_string(), v);
    }
    for s in &k.body {
        f.stmt(s, None)?;
    }
    f.code.push_str("  ret void\n");
    let text = format!(
        "define ptx_kernel void @{n}({p}) #0 {{\nentry:\n{a}{c}}}\n\n",
        n = k.name,
        p = params.join(", "),
        a = f.allocas,
        c = f.code
    );
    m.text.push_str(&text);
    Ok(())
}

/// One function being emitted.
pub(crate) struct Func<'m, 'k> {
    pub m: &'m mut Module,
    pub k: &'k Kernel,
    pub code: String,
    allocas: String,
    next: usize,
    /// The label of the block instructions are going into.
    pub block: String,
    pub vars: HashMap<String, String>,
    locals: HashMap<String, (String, DType)>,
    /// Each buffer's pointer and dtype.
    pub bufs: Vec<(String, DType)>,
    scratch_bufs: Vec<(usize, usize)>,
    /// Byte offset in the scratch area where the matrix product's part starts.
    pub gemm_scratch: usize,
}

impl<'m, 'k> Func<'m, 'k> {
    fn new(m: &'m mut Module, k: &'k Kernel) -> Self {
        Func {
            m,
            k,
            code: String::new(),
            allocas: String::new(),
            next: 0,
            block: "entry".into(),
            vars: HashMap::new(),
            locals: HashMap::new(),
            bufs: Vec::new(),
            scratch_bufs: Vec::new(),
            gemm_scratch: 0,
        }
    }

    fn emit_scratch_ptrs(&mut self) {
        for (b, at) in self.scratch_bufs.clone() {
            let p = self.fresh("sp");
            let _ = writeln!(
                self.code,
                "  {p} = getelementptr inbounds i8, ptr %scratch, i64 {at}"
            );
            self.bufs[b].0 = p;
        }
    }

    /// A fresh SSA name.
    pub fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("%{hint}{}", self.next)
    }

    /// A fresh block label (without `%`).
    pub fn label(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("{hint}{}", self.next)
    }

    /// Appends `name = rhs` and returns `name`.
    pub fn ins(&mut self, hint: &str, rhs: &str) -> String {
        let v = self.fresh(hint);
        let _ = writeln!(self.code, "  {v} = {rhs}");
        v
    }

    /// Appends an instruction with no result.
    pub fn line(&mut self, s: &str) {
        let _ = writeln!(self.code, "  {s}");
    }

    /// Starts block `l`.
    pub fn start(&mut self, l: &str) {
        let _ = writeln!(self.code, "{l}:");
        self.block = l.to_string();
    }

    /// A stack slot in the entry block.
    pub fn alloca(&mut self, ty: &str, count: usize, align: usize) -> String {
        let v = self.fresh("slot");
        let _ = writeln!(
            self.allocas,
            "  {v} = alloca {ty}, i64 {count}, align {align}"
        );
        v
    }

    /// A counted loop `var in from..to`: emits the header and returns
    /// `(index, latch label, exit label)`; the caller emits the body, then
    /// calls [`Func::end_loop`].
    pub fn begin_loop(&mut self, from: &str, to: &str) -> (String, String, String, String) {
        let head = self.label("head");
        let body = self.label("body");
        let exit = self.label("exit");
        let pre = self.block.clone();
        let i = self.fresh("i");
        let next = self.fresh("inext");
        self.line(&format!("br label %{head}"));
        self.start(&head);
        self.line(&format!(
            "{i} = phi i64 [ {from}, %{pre} ], [ {next}, %{head}.latch ]"
        ));
        let c = self.ins("c", &format!("icmp slt i64 {i}, {to}"));
        self.line(&format!("br i1 {c}, label %{body}, label %{exit}"));
        self.start(&body);
        (i, next, head, exit)
    }

    /// Closes a loop opened by [`Func::begin_loop`], with optional loop metadata.
    pub fn end_loop(
        &mut self,
        (i, next, head, exit): (String, String, String, String),
        meta: Option<String>,
    ) {
        self.line(&format!("br label %{head}.latch"));
        self.start(&format!("{head}.latch"));
        self.line(&format!("{next} = add nuw nsw i64 {i}, 1"));
        match meta {
            Some(m) => self.line(&format!("br label %{head}, !llvm.loop {m}")),
            None => self.line(&format!("br label %{head}")),
        }
        self.start(&exit);
    }

    fn loop_meta(&mut self, var: &str) -> Option<String> {
        let mut props = Vec::new();
        if let Some((_, w)) = self.k.schedule.vectorize.iter().find(|(v, _)| v == var) {
            props.push("!\"llvm.loop.vectorize.enable\", i1 true".to_string());
            props.push(format!("!\"llvm.loop.vectorize.width\", i32 {w}"));
        }
        if let Some((_, u)) = self.k.schedule.unroll.iter().find(|(v, _)| v == var) {
            props.push(format!("!\"llvm.loop.unroll.count\", i32 {u}"));
        }
        (!props.is_empty()).then(|| self.m.loop_meta(&props))
    }

    fn stmt(&mut self, s: &Stmt, range: Option<(&str, &str)>) -> Result<(), String> {
        match s {
            Stmt::For { var, extent, body } => {
                let (from, to) = match range {
                    Some((lo, hi)) => (lo.to_string(), hi.to_string()),
                    None => ("0".to_string(), self.expr(extent)?.0),
                };
                let l = self.begin_loop(&from, &to);
                let saved = self.vars.insert(var.clone(), l.0.clone());
                for s in body {
                    self.stmt(s, None)?;
                }
                match saved {
                    Some(v) => self.vars.insert(var.clone(), v),
                    None => self.vars.remove(var),
                };
                let meta = self.loop_meta(var);
                self.end_loop(l, meta);
            }
            Stmt::Let { name, dtype, init } => {
                let (v, _) = self.expr(init)?;
                let slot = self.alloca(reg_ty(*dtype), 1, 8);
                self.line(&format!("store {} {v}, ptr {slot}", reg_ty(*dtype)));
                self.locals.insert(name.clone(), (slot, *dtype));
            }
            Stmt::Set { name, value } => {
                let (v, _) = self.expr(value)?;
                let (slot, d) = self
                    .locals
                    .get(name)
                    .cloned()
                    .ok_or_else(|| format!("unknown local ${name}"))?;
                self.line(&format!("store {} {v}, ptr {slot}", reg_ty(d)));
            }
            Stmt::Store { buf, index, value } => {
                let (v, _) = self.expr(value)?;
                self.store(*buf, index, &v)?;
            }
            Stmt::Gemm(g) => gemm::emit(self, g, range)?,
            Stmt::If { cond, body } => {
                let (c, _) = self.expr(cond)?;
                let (then, join) = (self.label("then"), self.label("join"));
                self.line(&format!("br i1 {c}, label %{then}, label %{join}"));
                self.start(&then);
                for s in body {
                    self.stmt(s, None)?;
                }
                self.line(&format!("br label %{join}"));
                self.start(&join);
            }
            Stmt::Mma(m) if self.k.schedule.launch.is_some() => self.mma(m)?,
            Stmt::Mma(_) => return Err(format!("kernel '{}': mma in a CPU kernel", self.k.name)),
            Stmt::Barrier if self.k.schedule.launch.is_some() => {
                let b = "@llvm.nvvm.barrier.cta.sync.aligned.all";
                self.m.declare(&format!("declare void {b}(i32)"));
                self.line(&format!("call void {b}(i32 0)"));
            }
            Stmt::Shuffle { name, value, xor } if self.gpu() => {
                let (v, d) = self.expr(value)?;
                let (f, ty) = match d {
                    DType::F32 => ("@llvm.nvvm.shfl.sync.bfly.f32", "float"),
                    _ => ("@llvm.nvvm.shfl.sync.bfly.i32", "i32"),
                };
                self.m
                    .declare(&format!("declare {ty} {f}(i32, {ty}, i32, i32)"));
                let r = self.ins(
                    "shfl",
                    &format!("call {ty} {f}(i32 -1, {ty} {v}, i32 {xor}, i32 31)"),
                );
                self.set_local(name, d, &r);
            }
            Stmt::CopyAsync(c) if self.gpu() => self.copy_async(c)?,
            Stmt::AsyncCommit if self.gpu() => {
                let f = "@llvm.nvvm.cp.async.commit.group";
                self.m.declare(&format!("declare void {f}()"));
                self.line(&format!("call void {f}()"));
            }
            Stmt::AsyncWait(n) if self.gpu() => {
                let f = "@llvm.nvvm.cp.async.wait.group";
                self.m.declare(&format!("declare void {f}(i32 immarg)"));
                self.line(&format!("call void {f}(i32 {n})"));
            }
            Stmt::Barrier
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

    /// A warp's `mma.sync.m16n8k16.row.col` step: each lane loads its A and
    /// B fragments (pairs of K-adjacent halves: one `i32` for bf16, a
    /// `<2 x half>` for f16) from shared memory at the PTX fragment
    /// positions, then updates its four sums.
    fn mma(&mut self, m: &Mma) -> Result<(), String> {
        let (f, frag) = match self.k.buf(m.a).dtype {
            DType::BF16 => ("@llvm.nvvm.mma.m16n8k16.row.col.bf16", "i32"),
            DType::F16 => ("@llvm.nvvm.mma.m16n8k16.row.col.f32.f32", "<2 x half>"),
            d => return Err(format!("kernel '{}': mma on {d}", self.k.name)),
        };
        let tid = self
            .vars
            .get("threadIdx.x")
            .cloned()
            .ok_or("mma outside a GPU kernel")?;
        let lane = self.ins("lane", &format!("and i64 {tid}, 31"));
        let g = self.ins("grp", &format!("lshr i64 {lane}, 2"));
        let t = self.ins("tig", &format!("and i64 {lane}, 3"));
        let t2 = self.ins("tig", &format!("shl i64 {t}, 1"));
        let (ar, ak) = (self.expr(&m.a_at[0])?.0, self.expr(&m.a_at[1])?.0);
        let (bn, bk) = (self.expr(&m.b_at[0])?.0, self.expr(&m.b_at[1])?.0);
        let mut regs = Vec::new();
        // A: (g, 2t), (g + 8, 2t), (g, 2t + 8), (g + 8, 2t + 8).
        for (dr, dk) in [(0, 0), (8, 0), (0, 8), (8, 8)] {
            let r = self.ins("ar", &format!("add i64 {ar}, {g}"));
            let r = self.ins("ar", &format!("add i64 {r}, {dr}"));
            let k = self.ins("ak", &format!("add i64 {ak}, {t2}"));
            let k = self.ins("ak", &format!("add i64 {k}, {dk}"));
            regs.push(self.pair(m.a, &r, &k));
        }
        // B: (n g, k 2t), (n g, k 2t + 8); stored [k][n], the pair's two
        // halves are a row apart.
        for dk in [0, 8] {
            let n = self.ins("bn", &format!("add i64 {bn}, {g}"));
            let k = self.ins("bk", &format!("add i64 {bk}, {t2}"));
            let k = self.ins("bk", &format!("add i64 {k}, {dk}"));
            let r = if m.b_kn {
                self.column_pair(m.b, &k, &n)
            } else {
                self.pair(m.b, &n, &k)
            };
            regs.push(r);
        }
        let mut args = Vec::new();
        for r in &regs {
            let v = if frag == "i32" {
                r.clone()
            } else {
                self.ins("frag", &format!("bitcast i32 {r} to {frag}"))
            };
            args.push(format!("{frag} {v}"));
        }
        for acc in &m.acc {
            let (slot, _) = self
                .locals
                .get(acc)
                .cloned()
                .ok_or_else(|| format!("unknown local ${acc}"))?;
            let v = self.ins("c", &format!("load float, ptr {slot}"));
            args.push(format!("float {v}"));
        }
        let ret = "{ float, float, float, float }";
        self.m.declare(&format!(
            "declare {ret} {f}({frag}, {frag}, {frag}, {frag}, {frag}, {frag}, float, float, float, float)"
        ));
        let d = self.ins("d", &format!("call {ret} {f}({})", args.join(", ")));
        for (i, acc) in m.acc.iter().enumerate() {
            let v = self.ins("d", &format!("extractvalue {ret} {d}, {i}"));
            self.set_local(acc, DType::F32, &v);
        }
        Ok(())
    }

    /// `cp.async` of `len` elements: 16 bytes bypass L1 (`.cg`), smaller
    /// copies go through it (`.ca`); where the condition is false the
    /// source size is 0, so the hardware writes zeros and reads nothing.
    fn copy_async(&mut self, c: &CopyAsync) -> Result<(), String> {
        let bytes = c.len * self.k.buf(c.dst).dtype.size();
        let level = if bytes == 16 { "cg" } else { "ca" };
        let f = format!("@llvm.nvvm.cp.async.{level}.shared.global.{bytes}.s");
        self.m.declare(&format!(
            "declare void {f}(ptr addrspace(3), ptr addrspace(1), i32)"
        ));
        let (valid, _) = self.expr(&c.valid)?;
        let size = self.ins("sz", &format!("select i1 {valid}, i32 {bytes}, i32 0"));
        let dst = self.elem_ptr(c.dst, &c.dst_at)?;
        let src = self.elem_ptr(c.src, &c.src_at)?;
        let dst = self.ins(
            "sh",
            &format!("addrspacecast ptr {dst} to ptr addrspace(3)"),
        );
        let src = self.ins(
            "gl",
            &format!("addrspacecast ptr {src} to ptr addrspace(1)"),
        );
        self.line(&format!(
            "call void {f}(ptr addrspace(3) {dst}, ptr addrspace(1) {src}, i32 {size})"
        ));
        Ok(())
    }

    /// Two K-adjacent half-precision elements `buf[row, k..k + 2]` as one
    /// `i32` (`k` is even, so the pair is 4-byte aligned).
    fn pair(&mut self, buf: BufId, row: &str, k: &str) -> String {
        let p = self.half_ptr(buf, row, k);
        self.ins("frag", &format!("load i32, ptr {p}, align 4"))
    }

    /// The address of half-precision `buf[row, col]` (a 2-D buffer).
    fn half_ptr(&mut self, buf: BufId, row: &str, col: &str) -> String {
        let w = self.k.buf(buf).shape[1];
        let base = &self.bufs[buf.0 as usize].0.clone();
        let at = self.ins("o", &format!("mul nsw i64 {row}, {w}"));
        let at = self.ins("o", &format!("add nsw i64 {at}, {col}"));
        self.ins(
            "p",
            &format!("getelementptr inbounds i16, ptr {base}, i64 {at}"),
        )
    }

    /// Two half-precision elements `buf[k, n]` and `buf[k + 1, n]` as one
    /// `i32`, the first in the low half.
    fn column_pair(&mut self, buf: BufId, k: &str, n: &str) -> String {
        let w = self.k.buf(buf).shape[1];
        let lo = self.half_ptr(buf, k, n);
        let hi = self.ins(
            "p",
            &format!("getelementptr inbounds i16, ptr {lo}, i64 {w}"),
        );
        let lo = self.ins("h", &format!("load i16, ptr {lo}, align 2"));
        let hi = self.ins("h", &format!("load i16, ptr {hi}, align 2"));
        let lo = self.ins("h", &format!("zext i16 {lo} to i32"));
        let hi = self.ins("h", &format!("zext i16 {hi} to i32"));
        let hi = self.ins("h", &format!("shl i32 {hi}, 16"));
        self.ins("frag", &format!("or i32 {lo}, {hi}"))
    }

    /// The bits of a float rounded to bf16 (to nearest, ties to even; NaN
    /// stays NaN) in integer arithmetic: on x86, LLVM would call
    /// `__truncsfbf2`, which the process may not have.
    fn round_bf16(&mut self, x: &str, from: DType) -> String {
        let f = if from == DType::F32 {
            x.to_string()
        } else {
            let ft = reg_ty(from);
            self.ins("cv", &format!("fptrunc {ft} {x} to float"))
        };
        let b = self.ins("bf", &format!("bitcast float {f} to i32"));
        let odd = self.ins("bf", &format!("lshr i32 {b}, 16"));
        let odd = self.ins("bf", &format!("and i32 {odd}, 1"));
        let r = self.ins("bf", &format!("add i32 {b}, 32767"));
        let r = self.ins("bf", &format!("add i32 {r}, {odd}"));
        let r = self.ins("bf", &format!("lshr i32 {r}, 16"));
        let r = self.ins("bf", &format!("trunc i32 {r} to i16"));
        let nan = self.ins("bf", &format!("fcmp uno float {f}, 0.0"));
        self.ins("bf", &format!("select i1 {nan}, i16 32704, i16 {r}"))
    }

    /// Whether this is a GPU kernel.
    fn gpu(&self) -> bool {
        self.k.schedule.launch.is_some()
    }

    /// The error for an operation the GPU emitter has no code for (NVPTX
    /// has no libm; LLVM would abort the process instead of failing).
    fn no_gpu(&self, what: &str) -> String {
        format!(
            "kernel '{}': {what} is not emitted for the GPU yet",
            self.k.name
        )
    }

    /// Sets local `name` (for the matrix product's accumulator).
    pub fn set_local(&mut self, name: &str, d: DType, v: &str) {
        let slot = match self.locals.get(name) {
            Some((s, _)) => s.clone(),
            None => {
                let s = self.alloca(reg_ty(d), 1, 8);
                self.locals.insert(name.to_string(), (s.clone(), d));
                s
            }
        };
        self.line(&format!("store {} {v}, ptr {slot}", reg_ty(d)));
    }

    /// Stores register value `v` at `buf[index]`.
    pub fn store(&mut self, buf: BufId, index: &[Expr], v: &str) -> Result<(), String> {
        let p = self.elem_ptr(buf, index)?;
        let d = self.bufs[buf.0 as usize].1;
        let v = if d == DType::Bool {
            self.ins("zx", &format!("zext i1 {v} to i8"))
        } else {
            v.to_string()
        };
        self.line(&format!("store {} {v}, ptr {p}", mem_ty(d)));
        Ok(())
    }

    /// The address of `buf[index]`.
    pub fn elem_ptr(&mut self, buf: BufId, index: &[Expr]) -> Result<String, String> {
        let b = &self.k.bufs[buf.0 as usize];
        let shape = b.shape.clone();
        let mut off: Option<String> = None;
        for (e, &d) in index.iter().zip(&shape) {
            let (v, _) = self.expr(e)?;
            off = Some(match off {
                None => v,
                Some(o) => {
                    let m = self.ins("o", &format!("mul nsw i64 {o}, {d}"));
                    self.ins("o", &format!("add nsw i64 {m}, {v}"))
                }
            });
        }
        let (ptr, dt) = self.bufs[buf.0 as usize].clone();
        let off = off.unwrap_or_else(|| "0".into());
        Ok(self.ins(
            "ep",
            &format!(
                "getelementptr inbounds {}, ptr {ptr}, i64 {off}",
                mem_ty(dt)
            ),
        ))
    }

    /// Emits an expression; returns its value and dtype.
    pub fn expr(&mut self, e: &Expr) -> Result<(String, DType), String> {
        Ok(match e {
            Expr::Var(v) => (
                self.vars
                    .get(v)
                    .cloned()
                    .ok_or_else(|| format!("unbound loop variable '{v}'"))?,
                DType::I64,
            ),
            Expr::Int(i) => (i.to_string(), DType::I64),
            Expr::Lit(d, v) => (literal(*d, *v), *d),
            Expr::Local(n) => {
                let (slot, d) = self
                    .locals
                    .get(n)
                    .cloned()
                    .ok_or_else(|| format!("unknown local ${n}"))?;
                (self.ins("l", &format!("load {}, ptr {slot}", reg_ty(d))), d)
            }
            Expr::Load(b, ix) => {
                let p = self.elem_ptr(*b, ix)?;
                let d = self.bufs[b.0 as usize].1;
                let v = self.ins("ld", &format!("load {}, ptr {p}", mem_ty(d)));
                if d == DType::Bool {
                    (self.ins("nz", &format!("icmp ne i8 {v}, 0")), d)
                } else {
                    (v, d)
                }
            }
            Expr::Un(op, a) => {
                let (x, d) = self.expr(a)?;
                let transcendental = matches!(op, UnOp::Log | UnOp::Exp | UnOp::Tanh | UnOp::Erf);
                if self.gpu() && d == DType::F64 && transcendental {
                    return Err(self.no_gpu(&format!("f64 {}", op.name())));
                }
                if self.gpu() && *op == UnOp::Log {
                    // NVPTX has no log: log2 (lg2.approx, ~2 ulp) times ln 2.
                    let intr = "llvm.nvvm.lg2.approx.f";
                    let l2 = self.call(intr, "float", &[("float", &x)]);
                    let ln2 = literal(DType::F32, std::f64::consts::LN_2);
                    return Ok((self.ins("ln", &format!("fmul float {l2}, {ln2}")), d));
                }
                (self.unary(*op, &x, d), d)
            }
            Expr::Bin(op, a, b) => {
                let (x, d) = self.expr(a)?;
                let (y, _) = self.expr(b)?;
                if self.gpu() && *op == BinOp::Pow {
                    return Err(self.no_gpu("pow"));
                }
                let lit_nonzero = matches!(**b, Expr::Int(n) if n != 0);
                self.binary(*op, &x, &y, d, lit_nonzero)
            }
            Expr::Select(c, a, b) => {
                let (c, _) = self.expr(c)?;
                let (x, d) = self.expr(a)?;
                let (y, _) = self.expr(b)?;
                let t = reg_ty(d);
                (
                    self.ins("s", &format!("select i1 {c}, {t} {x}, {t} {y}")),
                    d,
                )
            }
            Expr::Cast(to, a) => {
                let (x, from) = self.expr(a)?;
                (self.cast(&x, from, *to), *to)
            }
        })
    }

    /// Calls a two-operand `i64` intrinsic such as `llvm.smax.i64`.
    pub fn call_intrinsic(&mut self, name: &str, args: &[&str]) -> String {
        let a: Vec<(&str, &str)> = args.iter().map(|v| ("i64", *v)).collect();
        self.call(name, "i64", &a)
    }

    fn call(&mut self, name: &str, ret: &str, args: &[(&str, &str)]) -> String {
        let a: Vec<String> = args.iter().map(|(t, v)| format!("{t} {v}")).collect();
        let decl_args: Vec<&str> = args.iter().map(|(t, _)| *t).collect();
        if name.starts_with("llvm.") || !name.starts_with("kiln.") {
            self.m
                .declare(&format!("declare {ret} @{name}({})", decl_args.join(", ")));
        }
        self.ins("f", &format!("call {ret} @{name}({})", a.join(", ")))
    }

    fn unary(&mut self, op: UnOp, x: &str, d: DType) -> String {
        let t = reg_ty(d);
        let sfx = if d == DType::F64 { "f64" } else { "f32" };
        match op {
            UnOp::Neg if d.is_float() => self.ins("n", &format!("fneg {t} {x}")),
            UnOp::Neg => self.ins("n", &format!("sub {t} 0, {x}")),
            UnOp::Abs if d.is_float() => self.call(&format!("llvm.fabs.{sfx}"), t, &[(t, x)]),
            UnOp::Abs => self.call(&format!("llvm.abs.{t}"), t, &[(t, x), ("i1", "false")]),
            UnOp::Sqrt => self.call(&format!("llvm.sqrt.{sfx}"), t, &[(t, x)]),
            UnOp::Floor => self.call(&format!("llvm.floor.{sfx}"), t, &[(t, x)]),
            UnOp::Ceil => self.call(&format!("llvm.ceil.{sfx}"), t, &[(t, x)]),
            UnOp::Log => self.call(&format!("llvm.log.{sfx}"), t, &[(t, x)]),
            UnOp::Exp if d == DType::F32 => self.call("kiln.exp.f32", t, &[(t, x)]),
            UnOp::Exp => self.call("llvm.exp.f64", t, &[(t, x)]),
            UnOp::Tanh if d == DType::F32 => self.call("kiln.tanh.f32", t, &[(t, x)]),
            UnOp::Tanh => self.call("tanh", t, &[(t, x)]),
            UnOp::Erf if d == DType::F32 => self.call("kiln.erf.f32", t, &[(t, x)]),
            UnOp::Erf => self.call("erf", t, &[(t, x)]),
            UnOp::Not => self.ins("n", &format!("xor i1 {x}, true")),
        }
    }

    fn binary(
        &mut self,
        op: BinOp,
        x: &str,
        y: &str,
        d: DType,
        lit_nonzero: bool,
    ) -> (String, DType) {
        let t = reg_ty(d);
        let fm = "reassoc contract";
        let unsigned = d == DType::U8 || d == DType::Bool;
        let sfx = if d == DType::F64 { "f64" } else { "f32" };
        let v = if d.is_float() {
            match op {
                BinOp::Add => self.ins("a", &format!("fadd {fm} {t} {x}, {y}")),
                BinOp::Sub => self.ins("a", &format!("fsub {fm} {t} {x}, {y}")),
                BinOp::Mul => self.ins("a", &format!("fmul {fm} {t} {x}, {y}")),
                BinOp::Div => self.ins("a", &format!("fdiv {t} {x}, {y}")),
                BinOp::Rem => self.ins("a", &format!("frem {t} {x}, {y}")),
                BinOp::Max => self.call(&format!("llvm.maximum.{sfx}"), t, &[(t, x), (t, y)]),
                BinOp::Min => self.call(&format!("llvm.minimum.{sfx}"), t, &[(t, x), (t, y)]),
                BinOp::Pow => self.call(&format!("llvm.pow.{sfx}"), t, &[(t, x), (t, y)]),
                BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                    let c = match op {
                        BinOp::Eq => "oeq",
                        BinOp::Ne => "une",
                        BinOp::Lt => "olt",
                        BinOp::Le => "ole",
                        BinOp::Gt => "ogt",
                        _ => "oge",
                    };
                    return (
                        self.ins("c", &format!("fcmp {c} {t} {x}, {y}")),
                        DType::Bool,
                    );
                }
                BinOp::And | BinOp::Or => unreachable!("the verifier allows and/or on bools only"),
            }
        } else {
            match op {
                BinOp::Add => self.ins("a", &format!("add {t} {x}, {y}")),
                BinOp::Sub => self.ins("a", &format!("sub {t} {x}, {y}")),
                BinOp::Mul => self.ins("a", &format!("mul {t} {x}, {y}")),
                BinOp::Div | BinOp::Rem => {
                    let inst = match (op, unsigned) {
                        (BinOp::Div, false) => "sdiv",
                        (BinOp::Div, true) => "udiv",
                        (_, false) => "srem",
                        (_, true) => "urem",
                    };
                    if lit_nonzero {
                        self.ins("a", &format!("{inst} {t} {x}, {y}"))
                    } else {
                        let z = self.ins("z", &format!("icmp eq {t} {y}, 0"));
                        let safe = self.ins("y", &format!("select i1 {z}, {t} 1, {t} {y}"));
                        let q = self.ins("a", &format!("{inst} {t} {x}, {safe}"));
                        self.ins("a", &format!("select i1 {z}, {t} 0, {t} {q}"))
                    }
                }
                BinOp::Max if unsigned => {
                    self.call(&format!("llvm.umax.{t}"), t, &[(t, x), (t, y)])
                }
                BinOp::Min if unsigned => {
                    self.call(&format!("llvm.umin.{t}"), t, &[(t, x), (t, y)])
                }
                BinOp::Max => self.call(&format!("llvm.smax.{t}"), t, &[(t, x), (t, y)]),
                BinOp::Min => self.call(&format!("llvm.smin.{t}"), t, &[(t, x), (t, y)]),
                BinOp::Pow => unreachable!("the verifier allows pow on floats only"),
                BinOp::And => self.ins("a", &format!("and i1 {x}, {y}")),
                BinOp::Or => self.ins("a", &format!("or i1 {x}, {y}")),
                BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                    let s = if unsigned { "u" } else { "s" };
                    let c = match op {
                        BinOp::Eq => "eq".to_string(),
                        BinOp::Ne => "ne".to_string(),
                        BinOp::Lt => format!("{s}lt"),
                        BinOp::Le => format!("{s}le"),
                        BinOp::Gt => format!("{s}gt"),
                        _ => format!("{s}ge"),
                    };
                    return (
                        self.ins("c", &format!("icmp {c} {t} {x}, {y}")),
                        DType::Bool,
                    );
                }
            }
        };
        (v, d)
    }

    /// Converts `x` from `from` to `to` as the evaluator does: float to integer
    /// saturates (NaN gives 0), bool is "not zero".
    pub fn cast(&mut self, x: &str, from: DType, to: DType) -> String {
        if from == to {
            return x.to_string();
        }
        if from == DType::BF16 {
            let w = self.ins("bf", &format!("zext i16 {x} to i32"));
            let w = self.ins("bf", &format!("shl i32 {w}, 16"));
            let f = self.ins("bf", &format!("bitcast i32 {w} to float"));
            return self.cast(&f, DType::F32, to);
        }
        if to == DType::BF16 {
            return if from.is_float() {
                self.round_bf16(x, from)
            } else {
                let f = self.cast(x, from, DType::F32);
                self.round_bf16(&f, DType::F32)
            };
        }
        let (ft, tt) = (reg_ty(from), reg_ty(to));
        let unsigned = |d: DType| d == DType::U8 || d == DType::Bool;
        let bits = |d: DType| match d {
            DType::Bool => 1,
            DType::I8 | DType::U8 => 8,
            DType::F16 | DType::BF16 => 16,
            DType::I32 => 32,
            DType::I64 => 64,
            DType::F32 => 32,
            _ => 64,
        };
        if to == DType::Bool {
            return if from.is_float() {
                self.ins("cb", &format!("fcmp une {ft} {x}, 0.0"))
            } else {
                self.ins("cb", &format!("icmp ne {ft} {x}, 0"))
            };
        }
        match (from.is_float(), to.is_float()) {
            (true, true) if bits(to) > bits(from) => {
                self.ins("cv", &format!("fpext {ft} {x} to {tt}"))
            }
            (true, true) => self.ins("cv", &format!("fptrunc {ft} {x} to {tt}")),
            (true, false) => {
                let s = if unsigned(to) { "fptoui" } else { "fptosi" };
                self.call(
                    &format!(
                        "llvm.{s}.sat.{tt}.{}",
                        if from == DType::F64 { "f64" } else { "f32" }
                    ),
                    tt,
                    &[(ft, x)],
                )
            }
            (false, true) => {
                let s = if unsigned(from) { "uitofp" } else { "sitofp" };
                self.ins("cv", &format!("{s} {ft} {x} to {tt}"))
            }
            (false, false) if bits(to) > bits(from) => {
                let s = if unsigned(from) { "zext" } else { "sext" };
                self.ins("cv", &format!("{s} {ft} {x} to {tt}"))
            }
            (false, false) if bits(to) < bits(from) => {
                self.ins("cv", &format!("trunc {ft} {x} to {tt}"))
            }
            (false, false) => x.to_string(),
        }
    }
}
