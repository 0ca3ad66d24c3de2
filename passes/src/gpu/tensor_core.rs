//! A bf16 or f16 matrix product on tensor cores (`mma.sync` m16n8k16, f32
//! sums):
//! each block computes a `BM x BN` output tile with four warps in a 2 x 2
//! arrangement, each warp a 32 x 32 tile as 2 x 4 `mma` tiles (32 sums per
//! lane). A and B are staged through shared memory `BK` = 16 K steps at a
//! time, A as `[m][k]` and B transposed to `[n][k]` (the layouts `mma.sync
//! .row.col` reads), loaded coalesced along K for A and along N for B, with
//! clamped reads and zeros past the edges. The epilogue applies the
//! product's value and mask to each lane's sums where they lie inside the
//! output.

use super::matmul::{batch_vars, bin, int, stage, store_one};
use kiln_ir::kernel::{
    BinOp, Buf, BufId, Expr, Gemm, Kernel, Launch, Mma, Operand, Role, Schedule, Stmt,
};
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
    let (m_ext, n_ext, k_ext) = (g.m.1, g.n.1, g.k.1);
    let mut bufs = k.bufs.clone();
    let mut shared = |name: &str| {
        let id = BufId(bufs.len() as u32);
        bufs.push(Buf {
            name: name.into(),
            dtype: da,
            shape: vec![BM.max(BN), BK],
            role: Role::Shared,
        });
        id
    };
    let (a_s, b_s) = (shared("a_tile"), shared("b_tile"));
    let t = Expr::var("threadIdx.x");
    let warp = bin(BinOp::Div, t.clone(), int(32));
    let wm = Expr::times(bin(BinOp::Div, warp.clone(), int(2)), int(32));
    let wn = Expr::times(bin(BinOp::Rem, warp, int(2)), int(32));
    let m0 = Expr::times(Expr::var("blockIdx.y"), int(BM));
    let n0 = Expr::times(Expr::var("blockIdx.x"), int(BN));
    let (batch, batches) = batch_vars(g);
    let zero = Expr::lit(da, 0.0);
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
    let k0 = Expr::times(Expr::var("mma_kt"), int(BK));
    // A as [m][k]; B read along N, stored transposed as [n][k].
    let load_a = stage(
        ("mma_ra", BM * BK / THREADS, THREADS),
        BK,
        &a,
        &batch,
        (&g.m.0, m0.clone(), m_ext),
        (&g.k.0, k0.clone(), k_ext),
        (a_s, false),
        zero.clone(),
    );
    let load_b = stage(
        ("mma_rb", BK * BN / THREADS, THREADS),
        BN,
        &b,
        &batch,
        (&g.k.0, k0, k_ext),
        (&g.n.0, n0.clone(), n_ext),
        (b_s, true),
        zero,
    );
    let mut steps = vec![load_a, load_b, Stmt::Barrier];
    for i in 0..MI {
        for j in 0..NJ {
            steps.push(Stmt::Mma(Box::new(Mma {
                a: a_s,
                a_at: [Expr::plus(wm.clone(), int(16 * i)), int(0)],
                b: b_s,
                b_at: [Expr::plus(wn.clone(), int(8 * j)), int(0)],
                acc: [0, 1, 2, 3].map(|e| c(i, j, e)),
            })));
        }
    }
    steps.push(Stmt::Barrier);
    body.push(Stmt::For {
        var: "mma_kt".into(),
        extent: int(k_ext.div_ceil(BK)),
        body: steps,
    });
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
    Some(Kernel {
        name: k.name.clone(),
        bufs,
        body,
        schedule: Schedule {
            launch: Some(Launch {
                grid: [n_ext.div_ceil(BN), m_ext.div_ceil(BM), batches],
                block: [THREADS, 1, 1],
            }),
            ..Schedule::default()
        },
    })
}
