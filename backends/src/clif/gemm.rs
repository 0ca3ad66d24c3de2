//! The tiled matrix product in Cranelift, the same blocking as the LLVM
//! backend's (tasks of batch x M block x N block, operands packed per K slice
//! unless packed at compile time, sums kept in the task's block, epilogue when
//! K is done), with an `mr x nr` tile of 128-bit vector accumulators.

use super::avx2_tile;
use super::emit::{flags, Func};
use super::vector::{self, LANES};
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, AbiParam, FuncRef, InstBuilder, Signature, Value};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_module::{Linkage, Module, ModuleReloc};
use kiln_ir::kernel::{Expr, Gemm, Operand, RowSplit, COL, ROW};
use kiln_ir::DType;

/// Emits a matrix product over tasks `range` (all tasks when `None`).
pub(crate) fn emit(f: &mut Func, g: &Gemm, range: Option<(Value, Value)>) -> Result<(), String> {
    let s =
        f.k.schedule
            .gemm
            .ok_or_else(|| format!("kernel '{}': matrix product without a schedule", f.k.name))?;
    let (mr, nr) = (s.mr, s.nr);
    if nr % 4 != 0 {
        return Err(format!(
            "kernel '{}': nr = {nr} is not a multiple of 4",
            f.k.name
        ));
    }
    let (m_ext, n_ext, k_ext) = (g.m.1, g.n.1, g.k.1);
    let lanes = s.a_lanes;
    if lanes != 1 && lanes as i64 != LANES {
        return Err(format!(
            "kernel '{}': a_lanes = {lanes} is neither 1 nor {LANES}",
            f.k.name
        ));
    }
    let nc_r = s.nc.div_ceil(nr) * nr;
    let native = f.tile.native && lanes == 1 && (mr, nr) == avx2_tile::SHAPE;
    let tile = if native {
        native_fn(f)?
    } else {
        micro_fn(f, (mr, nr, nc_r), lanes)?
    };
    let tiles = g.tiles(&s);
    let total: usize = tiles.iter().product();
    let nk = k_ext.div_ceil(s.kc);
    let [a_off, b_off, p_off] = g.scratch_layout(&s, f.gemm_scratch);
    let scratch = f.params[3].expect("entry parameters");
    let apack = f.b.ins().iadd_imm_s(scratch, a_off as i64);
    let bpack = f.b.ins().iadd_imm_s(scratch, b_off as i64);
    let part = f.b.ins().iadd_imm_s(scratch, p_off as i64);

    let (lo, hi) = match range {
        Some(r) => r,
        None => (f.iconst(0), f.iconst(total as i64)),
    };
    let (t, task) = f.begin_loop(lo, hi);
    let mut rest = t;
    let mut idx = vec![rest; tiles.len()];
    for d in (0..tiles.len()).rev() {
        idx[d] = f.b.ins().urem_imm_u(rest, tiles[d] as i64);
        rest = f.b.ins().udiv_imm_u(rest, tiles[d] as i64);
    }
    for (b, v) in g.batch.iter().zip(&idx) {
        f.vars.insert(b.0.clone(), *v);
    }
    let nb = g.batch.len();
    let m0 = f.b.ins().imul_imm_s(idx[nb], s.mc as i64);
    let n0 = f.b.ins().imul_imm_s(idx[nb + 1], s.nc as i64);
    let mcur = min_rest(f, s.mc, m_ext, m0);
    let ncur = min_rest(f, s.nc, n_ext, n0);
    let mpan = ceil_div(f, mcur, mr);
    let npan = ceil_div(f, ncur, nr);

    let zero = f.iconst(0);
    let nkv = f.iconst(nk as i64);
    let (kb, kl) = f.begin_loop(zero, nkv);
    let k0 = f.b.ins().imul_imm_s(kb, s.kc as i64);
    let kcur = min_rest(f, s.kc, k_ext, k0);
    if let Operand::Expr(e) = &g.a {
        pack(
            f,
            e,
            (&g.m.0, &g.k.0),
            (m0, mcur, mpan),
            (k0, kcur),
            (mr, s.a_panel_stride(), lanes),
            apack,
            true,
        )?;
    }
    if let Operand::Expr(e) = &g.b {
        pack(
            f,
            e,
            (&g.n.0, &g.k.0),
            (n0, ncur, npan),
            (k0, kcur),
            (nr, s.b_panel_stride(), 1),
            bpack,
            false,
        )?;
    }
    let first = f.b.ins().icmp_imm_s(IntCC::Equal, kb, 0);
    let first = f.b.ins().uextend(types::I64, first);
    let (jr, jl) = f.begin_loop(zero, npan);
    let bptr = panel_ptr(
        f,
        &g.b,
        bpack,
        (n0, jr, k0),
        (nr, s.b_panel_stride(), k_ext, 1),
    );
    let (ir, il) = f.begin_loop(zero, mpan);
    let aptr = panel_ptr(
        f,
        &g.a,
        apack,
        (m0, ir, k0),
        (mr, s.a_panel_stride(), k_ext, lanes),
    );
    let row = f.b.ins().imul_imm_s(ir, (mr * nc_r * 4) as i64);
    let col = f.b.ins().imul_imm_s(jr, (nr * 4) as i64);
    let c = f.b.ins().iadd(part, row);
    let c = f.b.ins().iadd(c, col);
    if native {
        let ldc = f.iconst(nc_r as i64);
        f.b.ins().call(tile, &[aptr, bptr, kcur, c, first, ldc]);
    } else {
        f.b.ins().call(tile, &[aptr, bptr, kcur, c, first]);
    }
    f.end_loop(il);
    f.end_loop(jl);
    f.end_loop(kl);

    match g.row_split() {
        Some(rows) => row_epilogue(f, g, &rows, (m0, mcur), (n0, ncur), (part, nc_r))?,
        None => epilogue(f, g, (m0, mcur), (n0, ncur), (part, nc_r))?,
    }
    f.end_loop(task);
    Ok(())
}

/// The epilogue over the valid part of the block: four columns at a time
/// where `vector_epilogue` allows, then one at a time (under the mask, if any).
fn epilogue(
    f: &mut Func,
    g: &Gemm,
    (m0, mcur): (Value, Value),
    (n0, ncur): (Value, Value),
    (part, nc_r): (Value, usize),
) -> Result<(), String> {
    let zero = f.iconst(0);
    let (i, iloop) = f.begin_loop(zero, mcur);
    let mv = f.b.ins().iadd(m0, i);
    f.vars.insert(g.m.0.clone(), mv);
    let row = f.b.ins().imul_imm_s(i, (nc_r * 4) as i64);
    let prow = f.b.ins().iadd(part, row);
    let mut from = zero;
    if vector_epilogue(f, g) {
        let vend = f.b.ins().band_imm_s(ncur, !(LANES - 1));
        let (j, jloop) = f.begin_loop_step(zero, vend, LANES);
        let cp = f.b.ins().imul_imm_s(j, 4);
        let cp = f.b.ins().iadd(prow, cp);
        let acc = f.b.ins().load(types::F32X4, flags(), cp, 0);
        let av = f.b.declare_var(types::F32X4);
        f.b.def_var(av, acc);
        f.vlocals.insert(g.acc.clone(), av);
        let nv = f.b.ins().iadd(n0, j);
        f.vars.insert(g.n.0.clone(), nv);
        let v = f.vexpr(&g.value, &g.n.0)?;
        let v = f.widen(v);
        let p = f.elem_ptr(g.out, &g.index)?;
        f.b.ins().store(flags(), v, p, 0);
        f.vlocals.clear();
        f.end_loop(jloop);
        from = vend;
    }
    let (j, jloop) = f.begin_loop(from, ncur);
    let cp = f.b.ins().imul_imm_s(j, 4);
    let cp = f.b.ins().iadd(prow, cp);
    let acc = f.b.ins().load(types::F32, flags(), cp, 0);
    let nv = f.b.ins().iadd(n0, j);
    f.vars.insert(g.n.0.clone(), nv);
    f.set_local(&g.acc, acc);
    match &g.mask {
        None => {
            let (v, _) = f.expr(&g.value)?;
            f.store(g.out, &g.index, v)?;
        }
        Some(m) => {
            let (c, _) = f.expr(m)?;
            let (yes, join) = (f.b.create_block(), f.b.create_block());
            f.b.ins().brif(c, yes, &[], join, &[]);
            f.b.switch_to_block(yes);
            let (v, _) = f.expr(&g.value)?;
            f.store(g.out, &g.index, v)?;
            f.b.ins().jump(join, &[]);
            f.b.switch_to_block(join);
        }
    }
    f.end_loop(jloop);
    f.end_loop(iloop);
    Ok(())
}

/// The epilogue of a row-masked product (a convolution over its padded
/// grid): per block row, the grid rows the block's columns cover, and in each
/// only the valid columns, four at a time where the split store is contiguous
/// along the column and its value has a vector form, so there is no division
/// and no branch per element.
fn row_epilogue(
    f: &mut Func,
    g: &Gemm,
    rows: &RowSplit,
    (m0, mcur): (Value, Value),
    (n0, ncur): (Value, Value),
    (part, ldc): (Value, usize),
) -> Result<(), String> {
    let (w, valid) = (rows.width, rows.valid);
    let acc = std::slice::from_ref(&g.acc);
    let vector = f.k.bufs[g.out.0 as usize].dtype == DType::F32
        && !rows
            .index
            .iter()
            .chain([&rows.value])
            .any(|e| e.uses_var(&g.n.0))
        && f.k.flat_stride(g.out, &rows.index, COL) == Some(1)
        && vector::class(f.k, &rows.value, COL, acc).is_some()
        && !rows.index.iter().any(|e| e.uses_local(&g.acc));
    let zero = f.iconst(0);
    let r_lo = f.b.ins().udiv_imm_u(n0, w);
    let end = f.b.ins().iadd(n0, ncur);
    let r_hi = ceil_div(f, end, w as usize);
    let (i, iloop) = f.begin_loop(zero, mcur);
    let mv = f.b.ins().iadd(m0, i);
    f.vars.insert(g.m.0.clone(), mv);
    let (r, rloop) = f.begin_loop(r_lo, r_hi);
    f.vars.insert(ROW.into(), r);
    let base = f.b.ins().imul_imm_s(r, w);
    // Columns [max(0, n0 - base), min(valid, end - base)) of this grid row,
    // whose sums sit at `part[i][base - n0 + col]`.
    let lo = f.b.ins().isub(n0, base);
    let lo = f.b.ins().smax(lo, zero);
    let hi = f.b.ins().isub(end, base);
    let vv = f.iconst(valid);
    let hi = f.b.ins().smin(hi, vv);
    let row = f.b.ins().imul_imm_s(i, ldc as i64);
    let off = f.b.ins().isub(base, n0);
    let at = f.b.ins().iadd(row, off);
    let at = f.b.ins().imul_imm_s(at, 4);
    let prow = f.b.ins().iadd(part, at);
    let mut from = lo;
    if vector {
        let len = f.b.ins().isub(hi, lo);
        let len = f.b.ins().smax(len, zero);
        let len = f.b.ins().band_imm_s(len, !(LANES - 1));
        let vend = f.b.ins().iadd(lo, len);
        let (c, cl) = f.begin_loop_step(lo, vend, LANES);
        f.vars.insert(COL.into(), c);
        let cp = f.b.ins().imul_imm_s(c, 4);
        let cp = f.b.ins().iadd(prow, cp);
        let sums = f.b.ins().load(types::F32X4, flags(), cp, 0);
        let av = f.b.declare_var(types::F32X4);
        f.b.def_var(av, sums);
        f.vlocals.insert(g.acc.clone(), av);
        let v = f.vexpr(&rows.value, COL)?;
        let v = f.widen(v);
        let p = f.elem_ptr(g.out, &rows.index)?;
        f.b.ins().store(flags(), v, p, 0);
        f.vlocals.clear();
        f.end_loop(cl);
        from = vend;
    }
    let (c, cl) = f.begin_loop(from, hi);
    f.vars.insert(COL.into(), c);
    let q = f.b.ins().iadd(base, c);
    f.vars.insert(g.n.0.clone(), q);
    let cp = f.b.ins().imul_imm_s(c, 4);
    let cp = f.b.ins().iadd(prow, cp);
    let sum = f.b.ins().load(types::F32, flags(), cp, 0);
    f.set_local(&g.acc, sum);
    let (v, _) = f.expr(&rows.value)?;
    f.store(g.out, &rows.index, v)?;
    f.end_loop(cl);
    f.end_loop(rloop);
    f.end_loop(iloop);
    Ok(())
}

/// Whether the epilogue runs four columns at a time: no mask, an `f32` store
/// contiguous along N, and a value with a vector form (the sum a vector).
fn vector_epilogue(f: &Func, g: &Gemm) -> bool {
    let n = &g.n.0;
    let acc = std::slice::from_ref(&g.acc);
    g.mask.is_none()
        && f.k.bufs[g.out.0 as usize].dtype == DType::F32
        && f.k.flat_stride(g.out, &g.index, n) == Some(1)
        && vector::class(f.k, &g.value, n, acc).is_some()
        && !g.index.iter().any(|e| e.uses_local(&g.acc))
}

/// `min(block, extent - at)`.
fn min_rest(f: &mut Func, block: usize, extent: usize, at: Value) -> Value {
    let e = f.iconst(extent as i64);
    let r = f.b.ins().isub(e, at);
    let bl = f.iconst(block as i64);
    f.b.ins().smin(r, bl)
}

fn ceil_div(f: &mut Func, x: Value, d: usize) -> Value {
    let x = f.b.ins().iadd_imm_s(x, d as i64 - 1);
    f.b.ins().udiv_imm_u(x, d as i64)
}

/// Packs one operand's slice into `[panels, kc, r, lanes]` (`lanes` copies of
/// each element), panels `stride` floats apart, zero past the valid rows.
#[allow(clippy::too_many_arguments)]
fn pack(
    f: &mut Func,
    e: &Expr,
    (xvar, kvar): (&str, &str),
    (x0, xcur, pans): (Value, Value, Value),
    (k0, kcur): (Value, Value),
    (r, stride, lanes): (usize, usize, usize),
    dst: Value,
    k_inner: bool,
) -> Result<(), String> {
    if !k_inner
        && lanes == 1
        && r as i64 % LANES == 0
        && vector::class(f.k, e, xvar, &[]) == Some(true)
    {
        return pack_rows(
            f,
            e,
            (xvar, kvar),
            (x0, xcur, pans),
            (k0, kcur),
            (r, stride),
            dst,
        );
    }
    let zero = f.iconst(0);
    let (p, pl) = f.begin_loop(zero, pans);
    let base = f.b.ins().imul_imm_s(p, r as i64);
    let left = f.b.ins().isub(xcur, base);
    let rv = f.iconst(r as i64);
    let valid = f.b.ins().smin(left, rv);
    let pbase = f.b.ins().imul_imm_s(p, stride as i64);
    let (outer, inner) = if k_inner {
        (valid, kcur)
    } else {
        (kcur, valid)
    };
    let (o, ol) = f.begin_loop(zero, outer);
    let mut from = zero;
    if k_inner
        && (lanes == 1 || lanes as i64 == LANES)
        && vector::class(f.k, e, kvar, &[]) == Some(true)
    {
        // A row contiguous along K: four K steps per load, each lane (or
        // its copies) stored from one shuffle.
        let xl = f.b.ins().iadd(base, o);
        let xg = f.b.ins().iadd(x0, xl);
        f.vars.insert(xvar.to_string(), xg);
        let vend = f.b.ins().band_imm_s(kcur, !(LANES - 1));
        let (n, nl) = f.begin_loop_step(zero, vend, LANES);
        let kg = f.b.ins().iadd(k0, n);
        f.vars.insert(kvar.to_string(), kg);
        let v = f.vexpr(e, kvar)?;
        for lane in 0..LANES {
            let s = f.b.ins().extractlane(v, lane as u8);
            let s = copies(f, s, lanes);
            let k = f.b.ins().iadd_imm_s(n, lane);
            store_packed(f, dst, (pbase, k, o), (r, lanes), s);
        }
        f.end_loop(nl);
        from = vend;
    }
    let (n, nl) = f.begin_loop(from, inner);
    let (xi, ki) = if k_inner { (o, n) } else { (n, o) };
    let xl = f.b.ins().iadd(base, xi);
    let xg = f.b.ins().iadd(x0, xl);
    f.vars.insert(xvar.to_string(), xg);
    let kg = f.b.ins().iadd(k0, ki);
    f.vars.insert(kvar.to_string(), kg);
    let (v, d) = f.expr(e)?;
    let v = f.cast(v, d, DType::F32);
    let v = copies(f, v, lanes);
    store_packed(f, dst, (pbase, ki, xi), (r, lanes), v);
    f.end_loop(nl);
    f.end_loop(ol);
    let (z, zl) = f.begin_loop(valid, rv);
    let (k, kl) = f.begin_loop(zero, kcur);
    let fz = f.b.ins().f32const(0.0);
    let fz = copies(f, fz, lanes);
    store_packed(f, dst, (pbase, k, z), (r, lanes), fz);
    f.end_loop(kl);
    f.end_loop(zl);
    f.end_loop(pl);
    Ok(())
}

/// Packs B whose rows are contiguous along N (`r` a multiple of four): K
/// outermost, then the block's columns four at a time, so each step reads
/// one row of the slice in order (an image row for a convolution) and the K
/// index arithmetic is done once per row, not once per panel.
fn pack_rows(
    f: &mut Func,
    e: &Expr,
    (xvar, kvar): (&str, &str),
    (x0, xcur, pans): (Value, Value, Value),
    (k0, kcur): (Value, Value),
    (r, stride): (usize, usize),
    dst: Value,
) -> Result<(), String> {
    let zero = f.iconst(0);
    let (o, ol) = f.begin_loop(zero, kcur);
    let kg = f.b.ins().iadd(k0, o);
    f.vars.insert(kvar.to_string(), kg);
    let vend = f.b.ins().band_imm_s(xcur, !(LANES - 1));
    let (x, xl) = f.begin_loop_step(zero, vend, LANES);
    let xg = f.b.ins().iadd(x0, x);
    f.vars.insert(xvar.to_string(), xg);
    let v = f.vexpr(e, xvar)?;
    store_column(f, dst, (o, x), (r, stride), v);
    f.end_loop(xl);
    let (x, xl) = f.begin_loop(vend, xcur);
    let xg = f.b.ins().iadd(x0, x);
    f.vars.insert(xvar.to_string(), xg);
    let (v, d) = f.expr(e)?;
    let v = f.cast(v, d, DType::F32);
    store_column(f, dst, (o, x), (r, stride), v);
    f.end_loop(xl);
    f.end_loop(ol);
    // Zero past the last valid column of the last panel.
    let full = f.b.ins().imul_imm_s(pans, r as i64);
    let (x, xl) = f.begin_loop(xcur, full);
    let (k, kl) = f.begin_loop(zero, kcur);
    let fz = f.b.ins().f32const(0.0);
    store_column(f, dst, (k, x), (r, stride), fz);
    f.end_loop(kl);
    f.end_loop(xl);
    Ok(())
}

/// Stores `v` (a scalar or four columns inside one panel) at column `x`,
/// step `k` of a `[panels, kc, r]` pack (panels `stride` floats apart).
fn store_column(
    f: &mut Func,
    dst: Value,
    (k, x): (Value, Value),
    (r, stride): (usize, usize),
    v: Value,
) {
    let pan = f.b.ins().udiv_imm_u(x, r as i64);
    let lane = f.b.ins().urem_imm_u(x, r as i64);
    let pbase = f.b.ins().imul_imm_s(pan, stride as i64);
    store_packed(f, dst, (pbase, k, lane), (r, 1), v);
}

/// `v`, or `lanes` copies of it as one vector.
fn copies(f: &mut Func, v: Value, lanes: usize) -> Value {
    debug_assert!(lanes == 1 || lanes as i64 == LANES);
    if lanes == 1 {
        v
    } else {
        f.b.ins().splat(types::F32X4, v)
    }
}

/// Stores `v` (one value's `lanes` copies, or four columns of one row when
/// `lanes` is 1) at row `x`, step `k` of a pack whose panel starts at float
/// `pbase`.
fn store_packed(
    f: &mut Func,
    dst: Value,
    (pbase, k, x): (Value, Value, Value),
    (r, lanes): (usize, usize),
    v: Value,
) {
    let at = f.b.ins().imul_imm_s(k, r as i64);
    let at = f.b.ins().iadd(at, x);
    let at = f.b.ins().imul_imm_s(at, lanes as i64);
    let at = f.b.ins().iadd(at, pbase);
    let at = f.b.ins().imul_imm_s(at, 4);
    let p = f.b.ins().iadd(dst, at);
    f.b.ins().store(flags(), v, p, 0);
}

/// The first element of panel `p` at K offset `k0` (run-time or compile-time pack).
fn panel_ptr(
    f: &mut Func,
    op: &Operand,
    pack: Value,
    (x0, p, k0): (Value, Value, Value),
    (r, stride, k_ext, lanes): (usize, usize, usize, usize),
) -> Value {
    match op {
        Operand::Expr(_) => {
            let at = f.b.ins().imul_imm_s(p, (stride * 4) as i64);
            f.b.ins().iadd(pack, at)
        }
        Operand::Packed(b) => {
            let buf = f.bufs[b.0 as usize].0;
            let pan = f.b.ins().udiv_imm_u(x0, r as i64);
            let pan = f.b.ins().iadd(pan, p);
            let at = f.b.ins().imul_imm_s(pan, k_ext as i64);
            let at = f.b.ins().iadd(at, k0);
            let at = f.b.ins().imul_imm_s(at, (r * lanes * 4) as i64);
            f.b.ins().iadd(buf, at)
        }
    }
}

/// Imports the native AVX2 tile, `(a, b, kcur, c, first, ldc)` (see
/// `avx2_tile`).
fn native_fn(f: &mut Func) -> Result<FuncRef, String> {
    let mut sig = Signature::new(f.module.isa().default_call_conv());
    sig.params = vec![AbiParam::new(types::I64); 6];
    let id = f
        .module
        .declare_function(avx2_tile::SYMBOL, Linkage::Import, &sig)
        .map_err(|e| format!("kernel '{}': {e}", f.k.name))?;
    Ok(f.module.declare_func_in_func(id, f.b.func))
}

/// Defines the register tile of `f`'s kernel as a function of its own,
/// `(a, b, kcur, c, first)`: `mr x nr/4` vector accumulators over `kcur`
/// steps, starting from zero when `first` is non-zero and from the block of
/// sums at `c` (row stride `ldc` floats) otherwise, stored back there. A
/// separate function keeps the enclosing loops' values out of its registers
/// (inline, Cranelift spills the panel pointers inside the K loop). It is
/// compiled without the e-graph optimizer (`f.tile.isa`): that pass would
/// schedule the unrolled K steps sum by sum, keeping every step's B vectors
/// live at once (spills), and would merge the repeated A loads that let each
/// multiply (or broadcast) read memory (see `k_loop`).
fn micro_fn(
    f: &mut Func,
    (mr, nr, ldc): (usize, usize, usize),
    lanes: usize,
) -> Result<FuncRef, String> {
    let name = format!("{}_tile", f.k.name);
    let mut sig = Signature::new(f.module.isa().default_call_conv());
    sig.params = vec![AbiParam::new(types::I64); 5];
    let id = f
        .module
        .declare_function(&name, Linkage::Local, &sig)
        .map_err(|e| format!("kernel '{}': {e}", f.k.name))?;
    let mut ctx = f.module.make_context();
    ctx.func.signature = sig;
    let mut fbc = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fbc);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let ps = b.block_params(entry).to_vec();
    micro(
        &mut b,
        (ps[0], ps[1], ps[2]),
        (mr, nr, ldc, lanes),
        (ps[3], ps[4]),
    );
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(f.tile.isa.frontend_config());
    let err = |e: String| format!("kernel '{name}': cranelift: {e}");
    ctx.compile(f.tile.isa, &mut ControlPlane::default())
        .map_err(|e| err(format!("{:?}", e.inner)))?;
    let code = ctx.compiled_code().expect("compiled above");
    let relocs: Vec<ModuleReloc> = code
        .buffer
        .relocs()
        .iter()
        .map(|r| ModuleReloc::from_mach_reloc(r, &ctx.func, id))
        .collect();
    let (align, bytes) = (code.buffer.alignment as u64, code.code_buffer());
    f.module
        .define_function_bytes(id, align, bytes, &relocs)
        .map_err(|e| err(e.to_string()))?;
    Ok(f.module.declare_func_in_func(id, f.b.func))
}

/// The body of the register tile (see `micro_fn`): a K loop unrolled
/// `UNROLL` times, then one for the remaining steps. Each sum is updated with
/// a multiply and an add: the add's destination can reuse its accumulator's
/// register, where Cranelift's x86 FMA ties a multiplicand and costs a copy
/// per update (Zen 3 issues two multiplies and two adds per cycle, the same
/// rate as two FMAs).
fn micro(
    b: &mut FunctionBuilder,
    (a, bpan, kcur): (Value, Value, Value),
    (mr, nr, ldc, lanes): (usize, usize, usize, usize),
    (c, first): (Value, Value),
) {
    let nv = nr / 4;
    let vt = types::F32X4;
    let zero = b.ins().f32const(0.0);
    let zv = b.ins().splat(vt, zero);
    let mut acc = Vec::new();
    for i in 0..mr {
        for v in 0..nv {
            let off = ((i * ldc + v * 4) * 4) as i32;
            let old = b.ins().load(vt, flags(), c, off);
            let init = b.ins().select(first, zv, old);
            let var = b.declare_var(vt);
            b.def_var(var, init);
            acc.push(var);
        }
    }
    let ap = b.declare_var(types::I64);
    b.def_var(ap, a);
    let bp = b.declare_var(types::I64);
    b.def_var(bp, bpan);
    let main = b.ins().band_imm_s(kcur, -(UNROLL as i64));
    let len = b.ins().imul_imm_s(main, (mr * lanes * 4) as i64);
    let main_end = b.ins().iadd(a, len);
    let len = b.ins().imul_imm_s(kcur, (mr * lanes * 4) as i64);
    let end = b.ins().iadd(a, len);
    let panels = Panels {
        ap,
        bp,
        acc: &acc,
        mr,
        nr,
        lanes,
    };
    k_loop(b, &panels, main_end, UNROLL);
    k_loop(b, &panels, end, 1);
    for i in 0..mr {
        for v in 0..nv {
            let off = ((i * ldc + v * 4) * 4) as i32;
            let val = b.use_var(acc[i * nv + v]);
            b.ins().store(flags(), val, c, off);
        }
    }
}

/// K steps of the register tile per trip of its main loop: fewer pointer
/// updates and branches per multiply.
const UNROLL: usize = 4;

/// The tile's panel pointers and sums, as variables.
struct Panels<'a> {
    ap: Variable,
    bp: Variable,
    acc: &'a [Variable],
    mr: usize,
    nr: usize,
    /// Copies of each A element in the panel: 1 (broadcast each) or 4 (a
    /// vector ready for the multiply).
    lanes: usize,
}

/// A loop over the K steps until the A pointer reaches `end`, `unroll` steps
/// per trip (the caller makes the distance a multiple of it). Every product
/// loads its own copy of its A value, so that the load has one use and
/// Cranelift folds it into the instruction: with four copies packed
/// (`lanes` 4) into the multiply itself (`vmulps xmm, xmm, m128`: two
/// instructions per update), with one into `vbroadcastss` from memory (three
/// per update); a broadcast shared by two products would go through a
/// register (`vmovss` + `vbroadcastss xmm`, half the loop's rate on Zen 3).
/// A tile harness measured ~29 GFLOP/s with one copy, ~33 with four.
///
/// Tested at the top: the sums leave the loop as the head's parameters, so
/// each new sum has one use (the back edge); a sum used by the back edge and
/// after the loop counts as used twice, and Cranelift then folds no load into
/// the chain's instructions (use counts propagate through it).
fn k_loop(b: &mut FunctionBuilder, p: &Panels, end: Value, unroll: usize) {
    let (mr, nr) = (p.mr, p.nr);
    let nv = nr / 4;
    let vt = types::F32X4;
    let (head, body, exit) = (b.create_block(), b.create_block(), b.create_block());
    b.ins().jump(head, &[]);
    b.switch_to_block(head);
    let pa = b.use_var(p.ap);
    let more = b.ins().icmp(IntCC::SignedLessThan, pa, end);
    b.ins().brif(more, body, &[], exit, &[]);
    b.switch_to_block(body);
    let pa = b.use_var(p.ap);
    let pb = b.use_var(p.bp);
    for u in 0..unroll {
        let bvs: Vec<Value> = (0..nv)
            .map(|v| b.ins().load(vt, flags(), pb, ((u * nr + v * 4) * 4) as i32))
            .collect();
        for i in 0..mr {
            for (v, bv) in bvs.iter().enumerate() {
                let off = ((u * mr + i) * p.lanes * 4) as i32;
                let sp = if p.lanes == 1 {
                    let s = b.ins().load(types::F32, flags(), pa, off);
                    b.ins().splat(vt, s)
                } else {
                    b.ins().load(vt, flags(), pa, off)
                };
                let var = p.acc[i * nv + v];
                let cur = b.use_var(var);
                let t = b.ins().fmul(sp, *bv);
                let n = b.ins().fadd(cur, t);
                b.def_var(var, n);
            }
        }
    }
    let next = b.ins().iadd_imm_s(pa, (unroll * mr * p.lanes * 4) as i64);
    b.def_var(p.ap, next);
    let nb = b.ins().iadd_imm_s(pb, (unroll * nr * 4) as i64);
    b.def_var(p.bp, nb);
    b.ins().jump(head, &[]);
    b.switch_to_block(exit);
}
