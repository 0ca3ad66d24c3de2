//! A matrix product as a SIMT GPU kernel: each block computes a `BM x BN`
//! tile of the output with `THREADS` threads, each thread a `TM x TN`
//! register tile. A and B are staged through shared memory `BK` steps of K
//! at a time (A stored K-major so a thread's `TM` values sit together);
//! consecutive threads load consecutive K of A and consecutive N of B, so
//! row-major operands are read coalesced. Loads past the edges read a
//! clamped element and select zero, so no thread reads out of bounds and the
//! inner loop has no branches. The epilogue applies the product's value and
//! mask per element where it lies inside the output.

use kiln_ir::kernel::{BinOp, Buf, BufId, Expr, Gemm, Kernel, Operand, Role, Stmt};
use kiln_ir::DType;

/// Output rows per block.
pub const BM: usize = 64;
/// Output columns per block.
pub const BN: usize = 64;
/// K steps per shared-memory stage.
pub const BK: usize = 16;
/// Output rows per thread.
pub const TM: usize = 4;
/// Output columns per thread.
pub const TN: usize = 4;
/// Threads per block.
pub const THREADS: usize = (BM / TM) * (BN / TN);

pub(super) fn int(v: usize) -> Expr {
    Expr::Int(v as i64)
}

pub(super) fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    Expr::bin(op, a, b)
}

/// Each batch variable of `g` from `blockIdx.z` (the last batch dim
/// fastest), and the number of batches.
pub(super) fn batch_vars(g: &Gemm) -> (Vec<(&str, Expr)>, usize) {
    let mut batch: Vec<(&str, Expr)> = Vec::new();
    let mut stride = 1;
    for (v, n) in g.batch.iter().rev() {
        let mut e = Expr::var("blockIdx.z");
        if stride > 1 {
            e = bin(BinOp::Div, e, int(stride));
        }
        e = bin(BinOp::Rem, e, int(*n));
        batch.push((v.as_str(), e));
        stride *= n;
    }
    (batch, stride)
}

/// The epilogue of output element `(m, n)`: where it lies inside the output
/// (and the product's mask holds), the sum `sum` goes through the product's
/// value into its store.
pub(super) fn store_one(g: &Gemm, batch: &[(&str, Expr)], (m, n): (Expr, Expr), sum: Expr) -> Stmt {
    let mut vars = batch.to_vec();
    vars.push((g.m.0.as_str(), m.clone()));
    vars.push((g.n.0.as_str(), n.clone()));
    let mut cond = bin(
        BinOp::And,
        bin(BinOp::Lt, m, int(g.m.1)),
        bin(BinOp::Lt, n, int(g.n.1)),
    );
    if let Some(mask) = &g.mask {
        cond = bin(BinOp::And, cond, bind(mask, &vars));
    }
    Stmt::If {
        cond,
        body: vec![
            Stmt::Let {
                name: g.acc.clone(),
                dtype: DType::F32,
                init: sum,
            },
            Stmt::Store {
                buf: g.out,
                index: g.index.iter().map(|e| bind(e, &vars)).collect(),
                value: bind(&g.value, &vars),
            },
        ],
    }
}

/// One axis of an operand tile: the product's loop variable it walks, the
/// tile's origin along it, and the product's extent there.
pub(super) type Axis<'a> = (&'a str, Expr, usize);

/// `for var in 0..count { buf[..] = .. }` staging an operand tile into
/// shared memory: element `e = threadIdx.x + threads * var` of the tile is
/// `(o, i) = (e / inner, e % inner)` along the axes `outer` and `inner_axis`
/// (consecutive threads on consecutive `i`), stored at `[o, i]` or, with
/// `transpose`, `[i, o]`. Past the product's edges a clamped element is read
/// and `zero` selected, so no thread reads out of bounds.
#[allow(clippy::too_many_arguments)]
pub(super) fn stage(
    (var, count, threads): (&str, usize, usize),
    inner: usize,
    operand: &Expr,
    batch: &[(&str, Expr)],
    outer: Axis,
    inner_axis: Axis,
    (buf, transpose): (BufId, bool),
    zero: Expr,
) -> Stmt {
    let e = Expr::plus(
        Expr::var("threadIdx.x"),
        Expr::times(Expr::var(var), int(threads)),
    );
    let (o, i) = (
        bin(BinOp::Div, e.clone(), int(inner)),
        bin(BinOp::Rem, e, int(inner)),
    );
    let (og, ig) = (
        Expr::plus(outer.1, o.clone()),
        Expr::plus(inner_axis.1, i.clone()),
    );
    let clamp = |a: Expr, n: usize| bin(BinOp::Min, a, int(n.max(1) - 1));
    let mut vars = batch.to_vec();
    vars.push((outer.0, clamp(og.clone(), outer.2)));
    vars.push((inner_axis.0, clamp(ig.clone(), inner_axis.2)));
    let inside = bin(
        BinOp::And,
        bin(BinOp::Lt, og, int(outer.2)),
        bin(BinOp::Lt, ig, int(inner_axis.2)),
    );
    Stmt::For {
        var: var.into(),
        extent: int(count),
        body: vec![Stmt::Store {
            buf,
            index: if transpose { vec![i, o] } else { vec![o, i] },
            value: Expr::select(inside, bind(operand, &vars), zero),
        }],
    }
}

/// Replaces loop variables by expressions.
pub(super) fn bind(e: &Expr, vars: &[(&str, Expr)]) -> Expr {
    e.rewrite(&|x| match x {
        Expr::Var(v) => vars.iter().find(|(n, _)| n == v).map(|(_, e)| e.clone()),
        _ => None,
    })
}

/// The GPU kernel for kernel `k`, whose body is the matrix product `g`.
pub fn simt(k: &Kernel, g: &Gemm) -> Result<Kernel, String> {
    let operand = |op: &Operand| match op {
        Operand::Expr(e) => Ok(e.clone()),
        Operand::Packed(_) => Err(format!(
            "kernel '{}': GPU mapping needs unpacked operands (LowerOptions::gpu)",
            k.name
        )),
    };
    let (a, b) = (operand(&g.a)?, operand(&g.b)?);
    let (m_ext, n_ext, k_ext) = (g.m.1, g.n.1, g.k.1);
    let mut bufs = k.bufs.clone();
    let mut shared = |name: &str, shape: Vec<usize>| {
        let id = BufId(bufs.len() as u32);
        bufs.push(Buf {
            name: name.into(),
            dtype: DType::F32,
            shape,
            role: Role::Shared,
        });
        id
    };
    let a_s = shared("a_tile", vec![BK, BM]);
    let b_s = shared("b_tile", vec![BK, BN]);

    let t = Expr::var("threadIdx.x");
    let tx = bin(BinOp::Rem, t.clone(), int(BN / TN));
    let ty = bin(BinOp::Div, t.clone(), int(BN / TN));
    let m0 = Expr::times(Expr::var("blockIdx.y"), int(BM));
    let n0 = Expr::times(Expr::var("blockIdx.x"), int(BN));
    let (batch, batches) = batch_vars(g);

    let c = |i: usize, j: usize| format!("mm_c{i}_{j}");
    let mut body = Vec::new();
    for i in 0..TM {
        for j in 0..TN {
            body.push(Stmt::Let {
                name: c(i, j),
                dtype: DType::F32,
                init: Expr::lit(DType::F32, 0.0),
            });
        }
    }
    let kt = Expr::var("mm_kt");
    let k0 = Expr::times(kt.clone(), int(BK));
    let zero = Expr::lit(DType::F32, 0.0);
    // A tile stored K-major ([k][m]) so a thread's TM values sit together.
    let load_a = stage(
        ("mm_ra", BM * BK / THREADS, THREADS),
        BK,
        &a,
        &batch,
        (&g.m.0, m0.clone(), m_ext),
        (&g.k.0, k0.clone(), k_ext),
        (a_s, true),
        zero.clone(),
    );
    let load_b = stage(
        ("mm_rb", BK * BN / THREADS, THREADS),
        BN,
        &b,
        &batch,
        (&g.k.0, k0, k_ext),
        (&g.n.0, n0.clone(), n_ext),
        (b_s, false),
        zero,
    );
    // The register tile over one stage.
    let kk = Expr::var("mm_kk");
    let mut step = Vec::new();
    for i in 0..TM {
        step.push(Stmt::Let {
            name: format!("mm_a{i}"),
            dtype: DType::F32,
            init: Expr::load(
                a_s,
                vec![
                    kk.clone(),
                    Expr::plus(Expr::times(ty.clone(), int(TM)), int(i)),
                ],
            ),
        });
    }
    for j in 0..TN {
        step.push(Stmt::Let {
            name: format!("mm_b{j}"),
            dtype: DType::F32,
            init: Expr::load(
                b_s,
                vec![
                    kk.clone(),
                    Expr::plus(Expr::times(tx.clone(), int(TN)), int(j)),
                ],
            ),
        });
    }
    for i in 0..TM {
        for j in 0..TN {
            step.push(Stmt::Set {
                name: c(i, j),
                value: Expr::plus(
                    Expr::local(&c(i, j)),
                    Expr::times(
                        Expr::local(&format!("mm_a{i}")),
                        Expr::local(&format!("mm_b{j}")),
                    ),
                ),
            });
        }
    }
    body.push(Stmt::For {
        var: "mm_kt".into(),
        extent: int(k_ext.div_ceil(BK)),
        body: vec![
            load_a,
            load_b,
            Stmt::Barrier,
            Stmt::For {
                var: "mm_kk".into(),
                extent: int(BK),
                body: step,
            },
            Stmt::Barrier,
        ],
    });
    // Epilogue.
    for i in 0..TM {
        for j in 0..TN {
            let m = Expr::plus(
                m0.clone(),
                Expr::plus(Expr::times(ty.clone(), int(TM)), int(i)),
            );
            let n = Expr::plus(
                n0.clone(),
                Expr::plus(Expr::times(tx.clone(), int(TN)), int(j)),
            );
            body.push(store_one(g, &batch, (m, n), Expr::local(&c(i, j))));
        }
    }
    Ok(super::launched(
        k,
        bufs,
        body,
        [n_ext.div_ceil(BN), m_ext.div_ceil(BM), batches],
        [THREADS, 1, 1],
    ))
}
