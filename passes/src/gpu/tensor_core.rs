//! A bf16 or f16 matrix product on tensor cores (`mma.sync` m16n8k16, f32
//! sums): each block computes a `BM x BN` output tile with four warps in a
//! 2 x 2 arrangement, each warp a 32 x 32 tile as 2 x 4 `mma` tiles (32
//! sums per lane). The epilogue applies the product's value and mask to
//! each lane's sums where they lie inside the output.
//!
//! Where A is contiguous along K and B along N with rows, K and N multiples
//! of 8 (the usual case), the operands flow through two shared-memory
//! stages of 32 K steps filled by 16-byte `cp.async` copies (zero-filled
//! past the edges): the copies of the next stage are in flight while the
//! warps multiply the current one. A is stored `[m][k]` and B as it lies,
//! `[k][n]` (`mma.kn`), rows padded against bank conflicts. Otherwise the
//! threads load 16 K steps at a time synchronously, B transposed to
//! `[n][k]`, with clamped reads and zeros past the edges.

use super::matmul::{batch_vars, bin, bind, int, stage, store_one};
use kiln_ir::kernel::{BinOp, Buf, BufId, CopyAsync, Expr, Gemm, Kernel, Mma, Operand, Role, Stmt};
use kiln_ir::DType;

/// Output rows per block.
pub const BM: usize = 64;
/// Output columns per block.
pub const BN: usize = 64;
/// K steps per stage (one `mma`).
pub const BK: usize = 16;
/// Threads per block: four warps.
pub const THREADS: usize = 128;
/// `mma` tiles per warp along M (16 rows each) and N (8 columns each).
const MI: usize = 2;
const NJ: usize = 4;

/// The half-precision operand under an operand's cast to f32, with its
/// dtype, when it is a load from a bf16 or f16 buffer.
fn half_operand(k: &Kernel, op: &Operand) -> Option<(Expr, DType)> {
    match op {
        Operand::Expr(Expr::Cast(DType::F32, inner)) => match &**inner {
            Expr::Load(b, _) if matches!(k.buf(*b).dtype, DType::BF16 | DType::F16) => {
                Some(((**inner).clone(), k.buf(*b).dtype))
            }
            _ => None,
        },
        _ => None,
    }
}

/// The tensor-core kernel for `k` (body the matrix product `g`), when both
/// operands are loads of the same half-precision dtype.
pub fn mma(k: &Kernel, g: &Gemm) -> Option<Kernel> {
    let ((a, da), (b, db)) = (half_operand(k, &g.a)?, half_operand(k, &g.b)?);
    if da != db {
        return None;
    }
    let (m_ext, n_ext) = (g.m.1, g.n.1);
    let mut bufs = k.bufs.clone();
    let t = Expr::var("threadIdx.x");
    let warp = bin(BinOp::Div, t.clone(), int(32));
    let wm = Expr::times(bin(BinOp::Div, warp.clone(), int(2)), int(32));
    let wn = Expr::times(bin(BinOp::Rem, warp, int(2)), int(32));
    let m0 = Expr::times(Expr::var("blockIdx.y"), int(BM));
    let n0 = Expr::times(Expr::var("blockIdx.x"), int(BN));
    let (batch, batches) = batch_vars(g);
    let c = |i: usize, j: usize, e: usize| format!("mma_c{i}_{j}_{e}");

    let mut body = Vec::new();
    for i in 0..MI {
        for j in 0..NJ {
            for e in 0..4 {
                body.push(Stmt::Let {
                    name: c(i, j, e),
                    dtype: DType::F32,
                    init: Expr::lit(DType::F32, 0.0),
                });
            }
        }
    }
    let tiles = Tiles {
        g,
        batch: &batch,
        m0: &m0,
        n0: &n0,
        wm: &wm,
        wn: &wn,
    };
    match (&a, &b) {
        (Expr::Load(ab, ai), Expr::Load(bb, bi)) if aligned(k, g, (*ab, ai), (*bb, bi)) => {
            tiles.pipelined(&mut bufs, da, (*ab, ai), (*bb, bi), &mut body)
        }
        _ => tiles.synchronous(&mut bufs, da, (&a, &b), &mut body),
    }
    // Epilogue: lane l's sum e of tile (i, j) is element
    // (l / 4 + 8 (e / 2), 2 (l % 4) + e % 2) of that tile.
    let lane = bin(BinOp::Rem, t, int(32));
    for i in 0..MI {
        for j in 0..NJ {
            for e in 0..4 {
                let r = Expr::plus(bin(BinOp::Div, lane.clone(), int(4)), int(8 * (e / 2)));
                let cc = Expr::plus(
                    Expr::times(bin(BinOp::Rem, lane.clone(), int(4)), int(2)),
                    int(e % 2),
                );
                let m = Expr::plus(
                    Expr::plus(m0.clone(), wm.clone()),
                    Expr::plus(int(16 * i), r),
                );
                let n = Expr::plus(
                    Expr::plus(n0.clone(), wn.clone()),
                    Expr::plus(int(8 * j), cc),
                );
                body.push(store_one(g, &batch, (m, n), Expr::local(&c(i, j, e))));
            }
        }
    }
    Some(super::launched(
        k,
        bufs,
        body,
        [n_ext.div_ceil(BN), m_ext.div_ceil(BM), batches],
        [THREADS, 1, 1],
    ))
}

/// Elements in one 16-byte `cp.async` of a half-precision operand.
const VEC: usize = 8;
/// K steps per stage of the pipelined kernel (two `mma` K steps).
const BK2: usize = 32;

/// Whether both operands can be copied into shared memory 16 bytes at a
/// time: A indexed `[.., k]` and B `[.., n]` (the variable alone in the
/// last index, and nowhere else), rows of a multiple of 8 elements, and K
/// and N multiples of 8 (16-byte aligned copies that lie wholly inside or
/// wholly outside the operand).
fn aligned(k: &Kernel, g: &Gemm, a: (BufId, &[Expr]), b: (BufId, &[Expr])) -> bool {
    let ok = |(buf, ix): (BufId, &[Expr]), unit: &str| {
        let Some((last, rest)) = ix.split_last() else {
            return false;
        };
        let b = k.buf(buf);
        b.role == Role::In
            && matches!(last, Expr::Var(v) if v == unit)
            && !rest.iter().any(|e| e.uses_var(unit))
            && b.shape.last().is_some_and(|d| d.is_multiple_of(VEC))
    };
    g.k.1.is_multiple_of(VEC) && g.n.1.is_multiple_of(VEC) && ok(a, &g.k.0) && ok(b, &g.n.0)
}

/// What both main loops share: the product, its batch variables, the
/// block's output origin and the warp's offset in the block tile.
struct Tiles<'a> {
    g: &'a Gemm,
    batch: &'a [(&'a str, Expr)],
    m0: &'a Expr,
    n0: &'a Expr,
    wm: &'a Expr,
    wn: &'a Expr,
}

impl Tiles<'_> {
    fn acc(i: usize, j: usize) -> [String; 4] {
        [0, 1, 2, 3].map(|e| format!("mma_c{i}_{j}_{e}"))
    }

    /// Stages of `BK` K steps loaded by the threads (clamped reads, zeros
    /// past the edges), a barrier, one `mma` K step, a barrier.
    fn synchronous(
        &self,
        bufs: &mut Vec<Buf>,
        dt: DType,
        (a, b): (&Expr, &Expr),
        body: &mut Vec<Stmt>,
    ) {
        let g = self.g;
        let mut shared = |name: &str| {
            let id = BufId(bufs.len() as u32);
            bufs.push(Buf {
                name: name.into(),
                dtype: dt,
                shape: vec![BM.max(BN), BK],
                role: Role::Shared,
            });
            id
        };
        let (a_s, b_s) = (shared("a_tile"), shared("b_tile"));
        let zero = Expr::lit(dt, 0.0);
        let k0 = Expr::times(Expr::var("mma_kt"), int(BK));
        // A as [m][k]; B read along N, stored transposed as [n][k].
        let load_a = stage(
            ("mma_ra", BM * BK / THREADS, THREADS),
            BK,
            a,
            self.batch,
            (&g.m.0, self.m0.clone(), g.m.1),
            (&g.k.0, k0.clone(), g.k.1),
            (a_s, false),
            zero.clone(),
        );
        let load_b = stage(
            ("mma_rb", BK * BN / THREADS, THREADS),
            BN,
            b,
            self.batch,
            (&g.k.0, k0, g.k.1),
            (&g.n.0, self.n0.clone(), g.n.1),
            (b_s, true),
            zero,
        );
        let mut steps = vec![load_a, load_b, Stmt::Barrier];
        for i in 0..MI {
            for j in 0..NJ {
                steps.push(Stmt::Mma(Box::new(Mma {
                    a: a_s,
                    a_at: [Expr::plus(self.wm.clone(), int(16 * i)), int(0)],
                    b: b_s,
                    b_at: [Expr::plus(self.wn.clone(), int(8 * j)), int(0)],
                    b_kn: false,
                    acc: Self::acc(i, j),
                })));
            }
        }
        steps.push(Stmt::Barrier);
        body.push(Stmt::For {
            var: "mma_kt".into(),
            extent: int(g.k.1.div_ceil(BK)),
            body: steps,
        });
    }

    /// Two shared-memory stages of `BK2` K steps filled by 16-byte
    /// `cp.async` copies: while the warps multiply one stage, the copies of
    /// the next are in flight. A is stored `[stage, m][k]`, B as it lies in
    /// memory, `[stage, k][n]` (`mma.kn`).
    fn pipelined(
        &self,
        bufs: &mut Vec<Buf>,
        dt: DType,
        a: (BufId, &[Expr]),
        b: (BufId, &[Expr]),
        body: &mut Vec<Stmt>,
    ) {
        let g = self.g;
        let mut shared = |name: &str, shape: Vec<usize>| {
            let id = BufId(bufs.len() as u32);
            bufs.push(Buf {
                name: name.into(),
                dtype: dt,
                shape,
                role: Role::Shared,
            });
            id
        };
        // Rows padded by one 16-byte piece, so the rows a warp's fragment
        // loads read start in different shared-memory banks.
        let a_s = shared("a_stages", vec![2 * BM, BK2 + VEC]);
        let b_s = shared("b_stages", vec![2 * BK2, BN + VEC]);
        let tiles = g.k.1.div_ceil(BK2);
        let kt = Expr::var("mma_kt");
        let next = Expr::plus(kt.clone(), int(1));
        let stage_of = |t: Expr| bin(BinOp::Rem, t, int(2));
        body.extend(self.copies((a_s, a), (b_s, b), &int(0), &int(0), "mma_cp0"));
        body.push(Stmt::AsyncCommit);
        let mut steps = vec![
            Stmt::If {
                cond: bin(BinOp::Lt, next.clone(), int(tiles)),
                body: self.copies(
                    (a_s, a),
                    (b_s, b),
                    &next,
                    &stage_of(next.clone()),
                    "mma_cpn",
                ),
            },
            Stmt::AsyncCommit,
            Stmt::AsyncWait(1),
            Stmt::Barrier,
        ];
        let s = stage_of(kt);
        for kk in [0, 16] {
            for i in 0..MI {
                for j in 0..NJ {
                    steps.push(Stmt::Mma(Box::new(Mma {
                        a: a_s,
                        a_at: [
                            Expr::plus(
                                Expr::times(s.clone(), int(BM)),
                                Expr::plus(self.wm.clone(), int(16 * i)),
                            ),
                            int(kk),
                        ],
                        b: b_s,
                        b_at: [
                            Expr::plus(self.wn.clone(), int(8 * j)),
                            Expr::plus(Expr::times(s.clone(), int(BK2)), int(kk)),
                        ],
                        b_kn: true,
                        acc: Self::acc(i, j),
                    })));
                }
            }
        }
        steps.push(Stmt::Barrier);
        body.push(Stmt::For {
            var: "mma_kt".into(),
            extent: int(tiles),
            body: steps,
        });
    }

    /// The copies of K tile `kt` into stage `s`: each thread's share of A's
    /// `BM x BK2` and B's `BK2 x BN` in 16-byte pieces, consecutive threads
    /// on consecutive pieces of a row. Addresses are clamped inside the
    /// operand; pieces past its edges are zeros.
    fn copies(
        &self,
        (a_s, (ab, ai)): (BufId, (BufId, &[Expr])),
        (b_s, (bb, bi)): (BufId, (BufId, &[Expr])),
        kt: &Expr,
        s: &Expr,
        prefix: &str,
    ) -> Vec<Stmt> {
        let g = self.g;
        let t = Expr::var("threadIdx.x");
        let k0 = Expr::times(kt.clone(), int(BK2));
        let mut out = Vec::new();
        // (operand, its shared stages, rows and pieces per row of a stage,
        // the row's and the piece's axes as (var, origin, extent)).
        let plan = [
            (
                ab,
                ai,
                a_s,
                BM,
                BK2 / VEC,
                (&g.m.0, self.m0.clone(), g.m.1),
                (&g.k.0, k0.clone(), g.k.1),
            ),
            (
                bb,
                bi,
                b_s,
                BK2,
                BN / VEC,
                (&g.k.0, k0.clone(), g.k.1),
                (&g.n.0, self.n0.clone(), g.n.1),
            ),
        ];
        for (n, (buf, ix, dst, rows, pieces, row_axis, col_axis)) in plan.into_iter().enumerate() {
            let var = format!("{prefix}_{n}");
            let e = Expr::plus(t.clone(), Expr::times(Expr::var(&var), int(THREADS)));
            let (r, p) = (
                bin(BinOp::Div, e.clone(), int(pieces)),
                bin(BinOp::Rem, e, int(pieces)),
            );
            let col = Expr::times(p, int(VEC));
            let (rg, cg) = (
                Expr::plus(row_axis.1.clone(), r.clone()),
                Expr::plus(col_axis.1.clone(), col.clone()),
            );
            let mut vars = self.batch.to_vec();
            vars.push((row_axis.0, bin(BinOp::Min, rg.clone(), int(row_axis.2 - 1))));
            vars.push((
                col_axis.0,
                bin(BinOp::Min, cg.clone(), int(col_axis.2 - VEC)),
            ));
            let valid = bin(
                BinOp::And,
                bin(BinOp::Lt, rg, int(row_axis.2)),
                bin(BinOp::Lt, cg, int(col_axis.2)),
            );
            out.push(Stmt::For {
                var,
                extent: int(rows * pieces / THREADS),
                body: vec![Stmt::CopyAsync(Box::new(CopyAsync {
                    dst,
                    dst_at: vec![Expr::plus(Expr::times(s.clone(), int(rows)), r), col],
                    src: buf,
                    src_at: ix.iter().map(|x| bind(x, &vars)).collect(),
                    len: VEC,
                    valid,
                }))],
            });
        }
        out
    }
}
