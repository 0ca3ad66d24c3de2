//! The tiled matrix product in LLVM IR, BLIS style: each task is one
//! (batch, M block, N block); per `kc` slice of K it packs the operands that
//! are not packed at compile time, then runs an `mr x nr` register-tile
//! micro-kernel (vector FMAs on broadcast A and two B vectors) over the
//! panels, adding into the task's block of sums. Edge tiles run the same full
//! micro-kernel on zero-padded panels. When K is done, the epilogue (bias,
//! activation, residual) runs over the block's valid part as a vectorizable
//! loop nest and stores the results.

use super::emit::Func;
use kiln_ir::kernel::{Expr, Gemm, Kernel, Operand, RowSplit, COL, ROW};
use kiln_ir::DType;

/// Emits a matrix product over tasks `range` (all tasks when `None`).
pub(crate) fn emit(f: &mut Func, g: &Gemm, range: Option<(&str, &str)>) -> Result<(), String> {
    let s =
        f.k.schedule
            .gemm
            .ok_or_else(|| format!("kernel '{}': matrix product without a schedule", f.k.name))?;
    let (mr, nr) = (s.mr, s.nr);
    let w = nr / 2;
    if !(nr % 2 == 0 && matches!(w, 4 | 8 | 16)) {
        return Err(format!(
            "kernel '{}': nr = {nr} is not two vectors of 4, 8 or 16",
            f.k.name
        ));
    }
    if s.a_lanes != 1 {
        return Err(format!(
            "kernel '{}': the LLVM backend packs one copy of each A element (a_lanes {})",
            f.k.name, s.a_lanes
        ));
    }
    let (m_ext, n_ext, k_ext) = (g.m.1, g.n.1, g.k.1);
    let tiles = g.tiles(&s);
    let total: usize = tiles.iter().product();
    let nc_r = s.nc.div_ceil(nr) * nr;
    let nk = k_ext.div_ceil(s.kc);
    let [a_off, b_off, p_off] = g.scratch_layout(&s, f.gemm_scratch);
    let apack = f.ins(
        "apk",
        &format!("getelementptr inbounds i8, ptr %scratch, i64 {a_off}"),
    );
    let bpack = f.ins(
        "bpk",
        &format!("getelementptr inbounds i8, ptr %scratch, i64 {b_off}"),
    );
    let part = f.ins(
        "part",
        &format!("getelementptr inbounds i8, ptr %scratch, i64 {p_off}"),
    );

    let total_s = total.to_string();
    let (lo, hi) = range.unwrap_or(("0", &total_s));
    let task = f.begin_loop(lo, hi);
    // Task index to (batch.., M block, N block), last fastest.
    let mut rest = task.0.clone();
    let mut idx = vec![String::new(); tiles.len()];
    for d in (0..tiles.len()).rev() {
        idx[d] = f.ins("ti", &format!("urem i64 {rest}, {}", tiles[d]));
        rest = f.ins("tq", &format!("udiv i64 {rest}, {}", tiles[d]));
    }
    for (b, v) in g.batch.iter().zip(&idx) {
        f.vars.insert(b.0.clone(), v.clone());
    }
    let nb = g.batch.len();
    let m0 = f.ins("m0", &format!("mul nuw nsw i64 {}, {}", idx[nb], s.mc));
    let n0 = f.ins("n0", &format!("mul nuw nsw i64 {}, {}", idx[nb + 1], s.nc));
    let mcur = min_rest(f, s.mc, m_ext, &m0);
    let ncur = min_rest(f, s.nc, n_ext, &n0);
    let mpan = f.ins("mp", &format!("add nuw nsw i64 {mcur}, {}", mr - 1));
    let mpan = f.ins("mp", &format!("udiv i64 {mpan}, {mr}"));
    let npan = f.ins("np", &format!("add nuw nsw i64 {ncur}, {}", nr - 1));
    let npan = f.ins("np", &format!("udiv i64 {npan}, {nr}"));

    let kb = f.begin_loop("0", &nk.to_string());
    let k0 = f.ins("k0", &format!("mul nuw nsw i64 {}, {}", kb.0, s.kc));
    let kcur = min_rest(f, s.kc, k_ext, &k0);
    if let Operand::Expr(e) = &g.a {
        pack(
            f,
            e,
            (&g.m.0, &g.k.0),
            (&m0, &mcur, &mpan),
            (&k0, &kcur),
            (mr, s.a_panel_stride()),
            &apack,
            true,
        )?;
    }
    if let Operand::Expr(e) = &g.b {
        pack(
            f,
            e,
            (&g.n.0, &g.k.0),
            (&n0, &ncur, &npan),
            (&k0, &kcur),
            (nr, s.b_panel_stride()),
            &bpack,
            false,
        )?;
    }
    let jr = f.begin_loop("0", &npan);
    let bptr = panel_ptr(
        f,
        &g.b,
        &bpack,
        (&n0, &jr.0, &k0),
        (nr, s.b_panel_stride(), k_ext),
    )?;
    let ir = f.begin_loop("0", &mpan);
    let aptr = panel_ptr(
        f,
        &g.a,
        &apack,
        (&m0, &ir.0, &k0),
        (mr, s.a_panel_stride(), k_ext),
    )?;
    let first = f.ins("fst", &format!("icmp eq i64 {}, 0", kb.0));
    let row = f.ins("cr", &format!("mul nuw nsw i64 {}, {}", ir.0, mr * nc_r));
    let col = f.ins("cc", &format!("mul nuw nsw i64 {}, {nr}", jr.0));
    let at = f.ins("ca", &format!("add nuw nsw i64 {row}, {col}"));
    let cptr = f.ins(
        "cp",
        &format!("getelementptr inbounds float, ptr {part}, i64 {at}"),
    );
    micro(f, &aptr, &bptr, &kcur, (mr, nr, w, nc_r), (&cptr, &first));
    f.end_loop(ir, None);
    f.end_loop(jr, None);
    f.end_loop(kb, None);

    if let Some(rows) = g.row_split() {
        row_epilogue(f, g, &rows, (&m0, &mcur), (&n0, &ncur), (&part, nc_r))?;
        f.end_loop(task, None);
        return Ok(());
    }
    // The epilogue over the valid part of the block.
    let i = f.begin_loop("0", &mcur);
    let j = f.begin_loop("0", &ncur);
    let ci = f.ins("ci", &format!("mul nuw nsw i64 {}, {nc_r}", i.0));
    let ci = f.ins("ci", &format!("add nuw nsw i64 {ci}, {}", j.0));
    let cp = f.ins(
        "cp",
        &format!("getelementptr inbounds float, ptr {part}, i64 {ci}"),
    );
    let c = f.ins("c", &format!("load float, ptr {cp}"));
    let mv = f.ins("mv", &format!("add nuw nsw i64 {m0}, {}", i.0));
    let nv = f.ins("nv", &format!("add nuw nsw i64 {n0}, {}", j.0));
    f.vars.insert(g.m.0.clone(), mv);
    f.vars.insert(g.n.0.clone(), nv);
    epilogue(f, g, &c)?;
    let meta =
        f.m.loop_meta(&["!\"llvm.loop.vectorize.enable\", i1 true".to_string()]);
    f.end_loop(j, Some(meta));
    f.end_loop(i, None);
    f.end_loop(task, None);
    Ok(())
}

/// The epilogue of a row-masked product: per block row, the grid rows the
/// block's columns cover, and in each only the valid columns, so the inner
/// loop is a plain run of stores with no division and no branch.
fn row_epilogue(
    f: &mut Func,
    g: &Gemm,
    rows: &RowSplit,
    (m0, mcur): (&str, &str),
    (n0, ncur): (&str, &str),
    (part, ldc): (&str, usize),
) -> Result<(), String> {
    let n = g.n.0.clone();
    let (w, valid) = (rows.width, rows.valid);
    let r_lo = f.ins("rlo", &format!("udiv i64 {n0}, {w}"));
    let end = f.ins("nend", &format!("add nuw nsw i64 {n0}, {ncur}"));
    let last = f.ins("rhi", &format!("add nuw nsw i64 {end}, {}", w - 1));
    let r_hi = f.ins("rhi", &format!("udiv i64 {last}, {w}"));
    let i = f.begin_loop("0", mcur);
    let mv = f.ins("mv", &format!("add nuw nsw i64 {m0}, {}", i.0));
    f.vars.insert(g.m.0.clone(), mv);
    let r = f.begin_loop(&r_lo, &r_hi);
    f.vars.insert(ROW.into(), r.0.clone());
    let base = f.ins("rb", &format!("mul nuw nsw i64 {}, {w}", r.0));
    // Columns [max(0, n0 - base), min(valid, end - base)).
    let lo = f.ins("cl", &format!("sub nsw i64 {n0}, {base}"));
    let lo = f.call_intrinsic("llvm.smax.i64", &[&lo, "0"]);
    let hi = f.ins("ch", &format!("sub nsw i64 {end}, {base}"));
    let hi = f.call_intrinsic("llvm.smin.i64", &[&hi, &valid.to_string()]);
    let c = f.begin_loop(&lo, &hi);
    f.vars.insert(COL.into(), c.0.clone());
    let q = f.ins("q", &format!("add nuw nsw i64 {base}, {}", c.0));
    f.vars.insert(n.clone(), q.clone());
    let j = f.ins("qj", &format!("sub nsw i64 {q}, {n0}"));
    let at = f.ins("ci", &format!("mul nuw nsw i64 {}, {ldc}", i.0));
    let at = f.ins("ci", &format!("add nsw i64 {at}, {j}"));
    let cp = f.ins(
        "cp",
        &format!("getelementptr inbounds float, ptr {part}, i64 {at}"),
    );
    let acc = f.ins("c", &format!("load float, ptr {cp}"));
    f.set_local(&g.acc, DType::F32, &acc);
    let (v, _) = f.expr(&rows.value)?;
    f.store(g.out, &rows.index, &v)?;
    let meta =
        f.m.loop_meta(&["!\"llvm.loop.vectorize.enable\", i1 true".to_string()]);
    f.end_loop(c, Some(meta));
    f.end_loop(r, None);
    f.end_loop(i, None);
    Ok(())
}

/// `min(block, extent - at)`, or `min(block, at)`-style clamps: with
/// `extent == 0` just `block` (the caller clamps further).
fn min_rest(f: &mut Func, block: usize, extent: usize, at: &str) -> String {
    if extent == 0 {
        return block.to_string();
    }
    let r = f.ins("r", &format!("sub nsw i64 {extent}, {at}"));
    let c = f.ins("r", &format!("icmp slt i64 {r}, {block}"));
    f.ins("r", &format!("select i1 {c}, i64 {r}, i64 {block}"))
}

/// `min(a, total - base)`.
fn min_of(f: &mut Func, a: &str, total: &str, base: &str) -> String {
    let r = f.ins("r", &format!("sub nsw i64 {total}, {base}"));
    let c = f.ins("r", &format!("icmp slt i64 {r}, {a}"));
    f.ins("r", &format!("select i1 {c}, i64 {r}, i64 {a}"))
}

/// Packs one operand's slice into `[panels, kc, r]` (panels `stride` floats
/// apart): element `(x, k)` of the block starting at `x0`/`k0`, zero past
/// the valid `xcur` rows. A reads along K (`k_inner`), B along N: the
/// contiguous direction loops inside (B rows that are contiguous go through
/// `pack_rows`).
#[allow(clippy::too_many_arguments)]
fn pack(
    f: &mut Func,
    e: &Expr,
    (xvar, kvar): (&str, &str),
    (x0, xcur, pans): (&str, &str, &str),
    (k0, kcur): (&str, &str),
    (r, stride): (usize, usize),
    dst: &str,
    k_inner: bool,
) -> Result<(), String> {
    if !k_inner && reads_rows(f.k, e, xvar) {
        return pack_rows(f, e, (xvar, kvar), (x0, xcur), (k0, kcur), (r, stride), dst);
    }
    let p = f.begin_loop("0", pans);
    let base = f.ins("xb", &format!("mul nuw nsw i64 {}, {r}", p.0));
    let valid = min_rest(f, r, 0, &base);
    let valid = min_of(f, &valid, xcur, &base);
    let pbase = f.ins("pb", &format!("mul nuw nsw i64 {}, {stride}", p.0));
    let (outer, inner) = if k_inner {
        (valid.as_str(), kcur)
    } else {
        (kcur, valid.as_str())
    };
    let lo = f.begin_loop("0", outer);
    let li = f.begin_loop("0", inner);
    let (xi, ki) = if k_inner {
        (&lo.0, &li.0)
    } else {
        (&li.0, &lo.0)
    };
    let (xi, ki) = (xi.clone(), ki.clone());
    let xl = f.ins("xl", &format!("add nuw nsw i64 {base}, {xi}"));
    let xg = f.ins("xg", &format!("add nuw nsw i64 {x0}, {xl}"));
    f.vars.insert(xvar.to_string(), xg);
    let kg = f.ins("kg", &format!("add nuw nsw i64 {k0}, {ki}"));
    f.vars.insert(kvar.to_string(), kg);
    let (v, d) = f.expr(e)?;
    let v = f.cast(&v, d, DType::F32);
    let at = f.ins("at", &format!("mul nuw nsw i64 {ki}, {r}"));
    let at = f.ins("at", &format!("add nuw nsw i64 {at}, {xi}"));
    let at = f.ins("at", &format!("add nuw nsw i64 {at}, {pbase}"));
    let ptr = f.ins(
        "pp",
        &format!("getelementptr inbounds float, ptr {dst}, i64 {at}"),
    );
    f.line(&format!("store float {v}, ptr {ptr}"));
    f.end_loop(li, None);
    f.end_loop(lo, None);
    // Zero the rows past the edge so the micro-kernel may read them.
    let z = f.begin_loop(&valid, &r.to_string());
    let k = f.begin_loop("0", kcur);
    let at = f.ins("at", &format!("mul nuw nsw i64 {}, {r}", k.0));
    let at = f.ins("at", &format!("add nuw nsw i64 {at}, {}", z.0));
    let at = f.ins("at", &format!("add nuw nsw i64 {at}, {pbase}"));
    let ptr = f.ins(
        "pp",
        &format!("getelementptr inbounds float, ptr {dst}, i64 {at}"),
    );
    f.line(&format!("store float 0.0, ptr {ptr}"));
    f.end_loop(k, None);
    f.end_loop(z, None);
    f.end_loop(p, None);
    Ok(())
}

/// Whether `e` varies along `var` and every load that does reads
/// consecutive elements along it.
fn reads_rows(k: &Kernel, e: &Expr, var: &str) -> bool {
    let mut ok = e.uses_var(var);
    e.walk(&mut |s| {
        if let Expr::Load(b, ix) = s {
            if ix.iter().any(|i| i.uses_var(var)) {
                ok &= k.flat_stride(*b, ix, var) == Some(1);
            }
        }
    });
    ok
}

/// Packs B whose rows are contiguous along N: K outermost, then whole
/// panels of `r` columns (a fixed-length run LLVM turns into vector moves),
/// then the last, partial panel and its zeros. Each K step reads one row of
/// the slice in order (an image row for a convolution) and does the K index
/// arithmetic once; panel by panel, each step gathered a few columns from
/// another row (another channel plane), and the short variable-length runs
/// became `memcpy` calls.
fn pack_rows(
    f: &mut Func,
    e: &Expr,
    (xvar, kvar): (&str, &str),
    (x0, xcur): (&str, &str),
    (k0, kcur): (&str, &str),
    (r, stride): (usize, usize),
    dst: &str,
) -> Result<(), String> {
    let full = f.ins("pf", &format!("udiv i64 {xcur}, {r}"));
    let rest = f.ins("pr", &format!("urem i64 {xcur}, {r}"));
    let o = f.begin_loop("0", kcur);
    let kg = f.ins("kg", &format!("add nuw nsw i64 {k0}, {}", o.0));
    f.vars.insert(kvar.to_string(), kg);
    let orow = f.ins("or", &format!("mul nuw nsw i64 {}, {r}", o.0));
    let p = f.begin_loop("0", &full);
    let base = f.ins("xb", &format!("mul nuw nsw i64 {}, {r}", p.0));
    let pb = f.ins("pb", &format!("mul nuw nsw i64 {}, {stride}", p.0));
    let pb = f.ins("pb", &format!("add nuw nsw i64 {pb}, {orow}"));
    let l = f.begin_loop("0", &r.to_string());
    pack_column(f, e, xvar, (x0, &base, &l.0), (&pb, dst))?;
    f.end_loop(l, None);
    f.end_loop(p, None);
    let base = f.ins("xb", &format!("mul nuw nsw i64 {full}, {r}"));
    let pb = f.ins("pb", &format!("mul nuw nsw i64 {full}, {stride}"));
    let pb = f.ins("pb", &format!("add nuw nsw i64 {pb}, {orow}"));
    let l = f.begin_loop("0", &rest);
    pack_column(f, e, xvar, (x0, &base, &l.0), (&pb, dst))?;
    f.end_loop(l, None);
    let some = f.ins("ps", &format!("icmp ne i64 {rest}, 0"));
    let zend = f.ins("ze", &format!("select i1 {some}, i64 {r}, i64 0"));
    let z = f.begin_loop(&rest, &zend);
    let at = f.ins("at", &format!("add nuw nsw i64 {pb}, {}", z.0));
    let ptr = f.ins(
        "pp",
        &format!("getelementptr inbounds float, ptr {dst}, i64 {at}"),
    );
    f.line(&format!("store float 0.0, ptr {ptr}"));
    f.end_loop(z, None);
    f.end_loop(o, None);
    Ok(())
}

/// Stores column `base + l` of the slice (at `x0`) at `dst[pb + l]`.
fn pack_column(
    f: &mut Func,
    e: &Expr,
    xvar: &str,
    (x0, base, l): (&str, &str, &str),
    (pb, dst): (&str, &str),
) -> Result<(), String> {
    let xl = f.ins("xl", &format!("add nuw nsw i64 {base}, {l}"));
    let xg = f.ins("xg", &format!("add nuw nsw i64 {x0}, {xl}"));
    f.vars.insert(xvar.to_string(), xg);
    let (v, d) = f.expr(e)?;
    let v = f.cast(&v, d, DType::F32);
    let at = f.ins("at", &format!("add nuw nsw i64 {pb}, {l}"));
    let ptr = f.ins(
        "pp",
        &format!("getelementptr inbounds float, ptr {dst}, i64 {at}"),
    );
    f.line(&format!("store float {v}, ptr {ptr}"));
    Ok(())
}

/// The first element of panel `p` of the block at `x0`, K slice at `k0`: in
/// the run-time pack (`[panels, kc, r]`, panels `stride` floats apart) or in
/// the compile-time one (`[ceil(X/r), K, r]`).
fn panel_ptr(
    f: &mut Func,
    op: &Operand,
    pack: &str,
    (x0, p, k0): (&str, &str, &str),
    (r, stride, k_ext): (usize, usize, usize),
) -> Result<String, String> {
    match op {
        Operand::Expr(_) => {
            let at = f.ins("pa", &format!("mul nuw nsw i64 {p}, {stride}"));
            Ok(f.ins(
                "pa",
                &format!("getelementptr inbounds float, ptr {pack}, i64 {at}"),
            ))
        }
        Operand::Packed(b) => {
            let buf = f.bufs[b.0 as usize].0.clone();
            let pan = f.ins("pa", &format!("udiv i64 {x0}, {r}"));
            let pan = f.ins("pa", &format!("add nuw nsw i64 {pan}, {p}"));
            let at = f.ins("pa", &format!("mul nuw nsw i64 {pan}, {k_ext}"));
            let at = f.ins("pa", &format!("add nuw nsw i64 {at}, {k0}"));
            let at = f.ins("pa", &format!("mul nuw nsw i64 {at}, {r}"));
            Ok(f.ins(
                "pa",
                &format!("getelementptr inbounds float, ptr {buf}, i64 {at}"),
            ))
        }
    }
}

/// The register tile: `mr x (nr / w)` vector accumulators over `kcur` steps,
/// starting from zero on the first K slice (`first`) and from the block of
/// sums at `c` (row stride `ldc`) after, and stored back there.
fn micro(
    f: &mut Func,
    a: &str,
    b: &str,
    kcur: &str,
    (mr, nr, w, ldc): (usize, usize, usize, usize),
    (c, first): (&str, &str),
) {
    let nv = nr / w;
    let vt = format!("<{w} x float>");
    let fma = format!("llvm.fma.v{w}f32");
    f.m.declare(&format!("declare {vt} @{fma}({vt}, {vt}, {vt})"));
    let cps: Vec<Vec<String>> = (0..mr)
        .map(|i| {
            (0..nv)
                .map(|v| {
                    f.ins(
                        "cq",
                        &format!(
                            "getelementptr inbounds float, ptr {c}, i64 {}",
                            i * ldc + v * w
                        ),
                    )
                })
                .collect()
        })
        .collect();
    let init: Vec<Vec<String>> = cps
        .iter()
        .map(|row| {
            row.iter()
                .map(|p| {
                    let old = f.ins("ci", &format!("load {vt}, ptr {p}, align 4"));
                    f.ins(
                        "ci",
                        &format!("select i1 {first}, {vt} zeroinitializer, {vt} {old}"),
                    )
                })
                .collect()
        })
        .collect();
    let head = f.label("mk");
    let body = f.label("mkb");
    let exit = f.label("mkx");
    let pre = f.block.clone();
    let kk = f.fresh("kk");
    let kn = f.fresh("kkn");
    let acc: Vec<Vec<String>> = (0..mr)
        .map(|_| (0..nv).map(|_| f.fresh("c")).collect())
        .collect();
    let nxt: Vec<Vec<String>> = (0..mr)
        .map(|_| (0..nv).map(|_| f.fresh("cn")).collect())
        .collect();
    f.line(&format!("br label %{head}"));
    f.start(&head);
    f.line(&format!("{kk} = phi i64 [ 0, %{pre} ], [ {kn}, %{body} ]"));
    for i in 0..mr {
        for v in 0..nv {
            f.line(&format!(
                "{} = phi {vt} [ {}, %{pre} ], [ {}, %{body} ]",
                acc[i][v], init[i][v], nxt[i][v]
            ));
        }
    }
    let cond = f.ins("mc", &format!("icmp slt i64 {kk}, {kcur}"));
    f.line(&format!("br i1 {cond}, label %{body}, label %{exit}"));
    f.start(&body);
    let bo = f.ins("bo", &format!("mul nuw nsw i64 {kk}, {nr}"));
    let bvs: Vec<String> = (0..nv)
        .map(|v| {
            let o = f.ins("bo", &format!("add nuw nsw i64 {bo}, {}", v * w));
            let p = f.ins(
                "bp",
                &format!("getelementptr inbounds float, ptr {b}, i64 {o}"),
            );
            f.ins("bv", &format!("load {vt}, ptr {p}, align 4"))
        })
        .collect();
    let ao = f.ins("ao", &format!("mul nuw nsw i64 {kk}, {mr}"));
    for i in 0..mr {
        let o = f.ins("ao", &format!("add nuw nsw i64 {ao}, {i}"));
        let p = f.ins(
            "ap",
            &format!("getelementptr inbounds float, ptr {a}, i64 {o}"),
        );
        let s = f.ins("as", &format!("load float, ptr {p}, align 4"));
        let ins = f.ins(
            "ai",
            &format!("insertelement {vt} poison, float {s}, i64 0"),
        );
        let sp = f.ins(
            "av",
            &format!("shufflevector {vt} {ins}, {vt} poison, <{w} x i32> zeroinitializer"),
        );
        for v in 0..nv {
            f.line(&format!(
                "{} = call {vt} @{fma}({vt} {sp}, {vt} {}, {vt} {})",
                nxt[i][v], bvs[v], acc[i][v]
            ));
        }
    }
    f.line(&format!("{kn} = add nuw nsw i64 {kk}, 1"));
    let meta =
        f.m.loop_meta(&["!\"llvm.loop.unroll.count\", i32 4".to_string()]);
    f.line(&format!("br label %{head}, !llvm.loop {meta}"));
    f.start(&exit);
    for (row, ps) in acc.iter().zip(&cps) {
        for (a, p) in row.iter().zip(ps) {
            f.line(&format!("store {vt} {a}, ptr {p}, align 4"));
        }
    }
}

/// The epilogue for one element: `acc = total`, then `out[index] = value`
/// where the mask (if any) holds.
fn epilogue(f: &mut Func, g: &Gemm, total: &str) -> Result<(), String> {
    f.set_local(&g.acc, DType::F32, total);
    let Some(m) = &g.mask else {
        let (v, _) = f.expr(&g.value)?;
        return f.store(g.out, &g.index, &v);
    };
    let (c, _) = f.expr(m)?;
    let (yes, join) = (f.label("mask"), f.label("masked"));
    f.line(&format!("br i1 {c}, label %{yes}, label %{join}"));
    f.start(&yes);
    let (v, _) = f.expr(&g.value)?;
    f.store(g.out, &g.index, &v)?;
    f.line(&format!("br label %{join}"));
    f.start(&join);
    Ok(())
}
