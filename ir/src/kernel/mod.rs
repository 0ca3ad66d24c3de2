//! The kernel IR, one level below the tensor IR: a kernel is a loop nest (or a
//! tiled matrix product) over buffers, with explicit index expressions, scalar
//! locals for reductions, and a [`Schedule`] kept apart from the computation.
//!
//! ```text
//! kernel "row_sum"(%x: in f32[4, 8], %y: out f32[4]) {
//!   for i in 0..4 {
//!     let $s: f32 = f32:0
//!     for j in 0..8 {
//!       $s = (add $s %x[i, j])
//!     }
//!     %y[i] = $s
//!   }
//! }
//! schedule {
//!   parallel
//! }
//! ```
//! The first loop of a parallel kernel (or the tile space of its matrix product)
//! is split into tasks that run on the thread pool; `Kernel::tasks` counts them.
//!
//! A GPU kernel has a [`Launch`] in its schedule: its body runs once per
//! thread of a grid of blocks, reads the reserved variables `threadIdx.x|y|z`
//! and `blockIdx.x|y|z`, may hold `shared` buffers (one per block) and
//! `barrier`s (every thread of the block waits there; only in control flow
//! that is the same for the whole block), warp-level tensor-core steps
//! (`mma`), butterfly shuffles (`shfl`) and asynchronous copies into shared
//! memory (`cp.async`). `simt::to_cpu` gives its meaning as
//! a CPU kernel, which is how the evaluator and `gpu-sim` run it.

mod eval;
mod expr;
mod parse;
mod print;
mod rows;
pub mod simt;
mod verify;

pub use eval::round_to;
pub use expr::{BinOp, BufId, Expr, UnOp};
pub use rows::{RowSplit, COL, ROW};

use crate::DType;

/// How a kernel uses a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Read: a graph value (input, constant or another kernel's result).
    In,
    /// Written: the kernel's result.
    Out,
    /// Per-thread scratch, undefined on entry (packed panels, local rows).
    Scratch,
    /// GPU shared memory: one per block, undefined on entry.
    Shared,
}

impl Role {
    /// The role's text name.
    pub fn name(self) -> &'static str {
        match self {
            Role::In => "in",
            Role::Out => "out",
            Role::Scratch => "scratch",
            Role::Shared => "shared",
        }
    }
}

/// A buffer a kernel reads or writes: row-major, dense.
#[derive(Clone, Debug, PartialEq)]
pub struct Buf {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub role: Role,
}

impl Buf {
    /// Elements in the buffer.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes in the buffer.
    pub fn bytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }
}

/// One operand of a matrix product.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// Element `(m, k)` of A or `(k, n)` of B, read and packed at run time.
    Expr(Expr),
    /// Packed at compile time: A as `[ceil(M/mr), K, mr]` (with a last dim of
    /// `a_lanes` copies when that is more than 1), B as
    /// `[ceil(N/nr), K, nr]`, zero-padded. The same for every batch index.
    Packed(BufId),
}

/// `out[index] = value` for every `(batch.., m, n)` (where `mask`, when given,
/// is true), where the local `acc` holds `sum_k a(batch.., m, k) *
/// b(batch.., k, n)` accumulated in f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    pub batch: Vec<(String, usize)>,
    pub m: (String, usize),
    pub n: (String, usize),
    pub k: (String, usize),
    pub a: Operand,
    pub b: Operand,
    pub acc: String,
    pub out: BufId,
    pub index: Vec<Expr>,
    pub value: Expr,
    pub mask: Option<Expr>,
}

/// A statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `for var in 0..extent { body }`; the extent may use enclosing loop vars.
    For {
        var: String,
        extent: Expr,
        body: Vec<Stmt>,
    },
    /// Declares a scalar local, visible to the rest of the enclosing block.
    Let {
        name: String,
        dtype: DType,
        init: Expr,
    },
    /// Assigns a local.
    Set { name: String, value: Expr },
    /// Writes one buffer element.
    Store {
        buf: BufId,
        index: Vec<Expr>,
        value: Expr,
    },
    /// A tiled matrix product with its epilogue.
    Gemm(Box<Gemm>),
    /// `if cond { body }` (`cond` a bool).
    If { cond: Expr, body: Vec<Stmt> },
    /// GPU kernels: every thread of the block waits here until all have
    /// arrived (and sees their earlier writes to shared and global memory).
    Barrier,
    /// GPU kernels, a warp-wide tensor-core step (`mma.sync` m16n8k16, f32
    /// sums): see [`Mma`].
    Mma(Box<Mma>),
    /// GPU kernels, a warp-wide butterfly exchange (`shfl.sync.bfly`): every
    /// lane evaluates `value` (f32 or i32), and local `name` of lane `l`
    /// takes the value of lane `l ^ xor` (`xor` 1, 2, 4, 8 or 16). Only where
    /// the whole block arrives, in blocks of whole warps.
    Shuffle { name: String, value: Expr, xor: u32 },
    /// GPU kernels, an asynchronous copy (`cp.async`, sm_80+) of `len`
    /// consecutive elements (4, 8 or 16 bytes, along the last dim) from
    /// global input `src` at `src_at` to shared buffer `dst` at `dst_at`, or
    /// zeros where `valid` is false (then nothing is read, but `src_at` must
    /// still lie inside `src`). Both addresses must be aligned to the copy's
    /// size. The copy lands at the latest at the `cp.async.wait` that
    /// retires its group; other threads see it after a barrier after that.
    CopyAsync(Box<CopyAsync>),
    /// GPU kernels: closes the thread's group of asynchronous copies
    /// issued since the last commit.
    AsyncCommit,
    /// GPU kernels: waits until at most `n` of the thread's committed
    /// groups are still in flight.
    AsyncWait(u32),
}

/// See [`Stmt::CopyAsync`].
#[derive(Clone, Debug, PartialEq)]
pub struct CopyAsync {
    pub dst: BufId,
    pub dst_at: Vec<Expr>,
    pub src: BufId,
    pub src_at: Vec<Expr>,
    pub len: usize,
    pub valid: Expr,
}

/// `D = A B + C` for one warp over a 16 x 8 tile and 16 K steps, A and B
/// half-precision (`bf16` or `f16`) in shared memory: A's rows
/// `a_at[0]..+16` and K columns `a_at[1]..+16` of `a` (row-major `[m][k]`),
/// B's N positions `b_at[0]..+8` and K positions `b_at[1]..+16` of `b`,
/// stored `[n][k]`, or `[k][n]` where `b_kn` (text `mma.kn`, positions
/// written in index order). The sums live in the four f32 locals `acc` of each lane
/// `l` of the warp as PTX lays them out: `acc[e]` is element
/// `(l / 4 + 8 (e / 2), 2 (l % 4) + e % 2)` of the tile. The positions must
/// be the same in every lane of a warp (they may use the warp's number).
#[derive(Clone, Debug, PartialEq)]
pub struct Mma {
    pub a: BufId,
    pub a_at: [Expr; 2],
    pub b: BufId,
    pub b_at: [Expr; 2],
    pub b_kn: bool,
    pub acc: [String; 4],
}

impl Mma {
    /// The tile position `(row, col)` of lane `lane`'s sum `e`.
    pub fn element(lane: usize, e: usize) -> (usize, usize) {
        (lane / 4 + 8 * (e / 2), 2 * (lane % 4) + e % 2)
    }
}

impl Stmt {
    /// Calls `f` on every expression of `body` at any depth (extents,
    /// conditions, values, indices, positions; not inside matrix products).
    pub fn each_expr(body: &[Stmt], f: &mut dyn FnMut(&Expr)) {
        for s in body {
            match s {
                Stmt::For {
                    extent: e, body, ..
                }
                | Stmt::If { cond: e, body } => {
                    f(e);
                    Stmt::each_expr(body, f);
                }
                Stmt::Let { init: e, .. }
                | Stmt::Set { value: e, .. }
                | Stmt::Shuffle { value: e, .. } => f(e),
                Stmt::Store { index, value, .. } => {
                    index.iter().for_each(&mut *f);
                    f(value);
                }
                Stmt::CopyAsync(c) => {
                    c.src_at.iter().chain(&c.dst_at).for_each(&mut *f);
                    f(&c.valid);
                }
                Stmt::Mma(m) => m.a_at.iter().chain(&m.b_at).for_each(&mut *f),
                Stmt::Gemm(_) | Stmt::Barrier | Stmt::AsyncCommit | Stmt::AsyncWait(_) => {}
            }
        }
    }

    /// `self` with every expression (extents, conditions, values, indices;
    /// not inside matrix products) passed through `f`.
    pub fn map_exprs(&self, f: &dyn Fn(&Expr) -> Expr) -> Stmt {
        let block = |b: &[Stmt]| b.iter().map(|s| s.map_exprs(f)).collect();
        match self {
            Stmt::For { var, extent, body } => Stmt::For {
                var: var.clone(),
                extent: f(extent),
                body: block(body),
            },
            Stmt::If { cond, body } => Stmt::If {
                cond: f(cond),
                body: block(body),
            },
            Stmt::Let { name, dtype, init } => Stmt::Let {
                name: name.clone(),
                dtype: *dtype,
                init: f(init),
            },
            Stmt::Set { name, value } => Stmt::Set {
                name: name.clone(),
                value: f(value),
            },
            Stmt::Shuffle { name, value, xor } => Stmt::Shuffle {
                name: name.clone(),
                value: f(value),
                xor: *xor,
            },
            Stmt::Store { buf, index, value } => Stmt::Store {
                buf: *buf,
                index: index.iter().map(f).collect(),
                value: f(value),
            },
            Stmt::Mma(m) => Stmt::Mma(Box::new(Mma {
                a_at: m.a_at.clone().map(|e| f(&e)),
                b_at: m.b_at.clone().map(|e| f(&e)),
                ..(**m).clone()
            })),
            Stmt::CopyAsync(c) => Stmt::CopyAsync(Box::new(CopyAsync {
                dst_at: c.dst_at.iter().map(f).collect(),
                src_at: c.src_at.iter().map(f).collect(),
                valid: f(&c.valid),
                ..(**c).clone()
            })),
            Stmt::Gemm(_) | Stmt::Barrier | Stmt::AsyncCommit | Stmt::AsyncWait(_) => self.clone(),
        }
    }
}

/// Register and cache blocking of a matrix product (BLIS style): an `mr x nr`
/// micro-tile in registers, A packed in `mc x kc` blocks, B in `kc x nc` panels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmSchedule {
    pub mr: usize,
    pub nr: usize,
    pub mc: usize,
    pub kc: usize,
    pub nc: usize,
    /// Copies of each A element in its packed panel (`[kc][mr][a_lanes]`):
    /// 1, or the vector width when the register tile multiplies by A from
    /// memory instead of broadcasting it.
    pub a_lanes: usize,
}

impl GemmSchedule {
    /// Floats from one run-time packed panel of `r` rows (`lanes` copies of
    /// each element) to the next: a `kc x r x lanes` panel plus one cache
    /// line, so that a pack writing the same row of every panel (B, one row
    /// of the slice at a time) does not send all its stores to one cache set
    /// (a panel's bytes are a multiple of 4 KiB for the usual blockings).
    pub fn panel_stride(&self, r: usize, lanes: usize) -> usize {
        self.kc * r * lanes + 16
    }

    /// Floats from one run-time packed A panel to the next.
    pub fn a_panel_stride(&self) -> usize {
        self.panel_stride(self.mr, self.a_lanes)
    }

    /// Floats from one run-time packed B panel to the next.
    pub fn b_panel_stride(&self) -> usize {
        self.panel_stride(self.nr, 1)
    }
}

/// A GPU kernel's threads: `grid` blocks of `block` threads, `x` fastest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    pub grid: [usize; 3],
    pub block: [usize; 3],
}

impl Launch {
    /// Threads per block.
    pub fn threads(&self) -> usize {
        self.block.iter().product()
    }

    /// Blocks in the grid.
    pub fn blocks(&self) -> usize {
        self.grid.iter().product()
    }
}

/// The reserved variables of a GPU kernel, with the launch dim (`0` grid,
/// `1` block) and axis each one indexes.
pub const GPU_VARS: [(&str, usize, usize); 6] = [
    ("threadIdx.x", 1, 0),
    ("threadIdx.y", 1, 1),
    ("threadIdx.z", 1, 2),
    ("blockIdx.x", 0, 0),
    ("blockIdx.y", 0, 1),
    ("blockIdx.z", 0, 2),
];

/// How a kernel runs, apart from what it computes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schedule {
    /// Split the first loop (or the matrix product's tiles) across threads.
    pub parallel: bool,
    /// Loops to vectorize, with the vector width in elements.
    pub vectorize: Vec<(String, u32)>,
    /// Loops to unroll, with the factor.
    pub unroll: Vec<(String, u32)>,
    /// Blocking of the kernel's matrix product.
    pub gemm: Option<GemmSchedule>,
    /// Present for GPU kernels: the grid and block the body runs on.
    pub launch: Option<Launch>,
}

/// A kernel: buffers, a body, and its schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub bufs: Vec<Buf>,
    pub body: Vec<Stmt>,
    pub schedule: Schedule,
}

impl Kernel {
    /// The buffer behind an id.
    pub fn buf(&self, id: BufId) -> &Buf {
        &self.bufs[id.0 as usize]
    }

    /// The buffers with a role, in order.
    pub fn bufs_with(&self, role: Role) -> Vec<BufId> {
        (0..self.bufs.len() as u32)
            .map(BufId)
            .filter(|b| self.buf(*b).role == role)
            .collect()
    }

    /// For each buffer, whether the body reads or writes it (a matrix
    /// product reading a packed copy leaves the original unused).
    pub fn used_bufs(&self) -> Vec<bool> {
        fn expr(e: &Expr, used: &mut [bool]) {
            e.walk(&mut |x| {
                if let Expr::Load(b, _) = x {
                    used[b.0 as usize] = true;
                }
            });
        }
        fn block(body: &[Stmt], used: &mut [bool]) {
            for s in body {
                match s {
                    Stmt::For { extent, body, .. } => {
                        expr(extent, used);
                        block(body, used);
                    }
                    Stmt::Let { init: e, .. }
                    | Stmt::Set { value: e, .. }
                    | Stmt::Shuffle { value: e, .. } => expr(e, used),
                    Stmt::If { cond, body } => {
                        expr(cond, used);
                        block(body, used);
                    }
                    Stmt::Barrier | Stmt::AsyncCommit | Stmt::AsyncWait(_) => {}
                    Stmt::CopyAsync(c) => {
                        used[c.dst.0 as usize] = true;
                        used[c.src.0 as usize] = true;
                        c.dst_at
                            .iter()
                            .chain(&c.src_at)
                            .chain([&c.valid])
                            .for_each(|e| expr(e, used));
                    }
                    Stmt::Mma(m) => {
                        used[m.a.0 as usize] = true;
                        used[m.b.0 as usize] = true;
                        m.a_at.iter().chain(&m.b_at).for_each(|e| expr(e, used));
                    }
                    Stmt::Store { buf, index, value } => {
                        used[buf.0 as usize] = true;
                        index.iter().chain([value]).for_each(|e| expr(e, used));
                    }
                    Stmt::Gemm(g) => {
                        used[g.out.0 as usize] = true;
                        for op in [&g.a, &g.b] {
                            match op {
                                Operand::Expr(e) => expr(e, used),
                                Operand::Packed(b) => used[b.0 as usize] = true,
                            }
                        }
                        g.index
                            .iter()
                            .chain([&g.value])
                            .chain(&g.mask)
                            .for_each(|e| expr(e, used));
                    }
                }
            }
        }
        let mut used = vec![false; self.bufs.len()];
        block(&self.body, &mut used);
        used
    }

    /// Number of tasks the kernel splits into: the extent of its first loop, or
    /// of its matrix product's tile space, when parallel; else 1.
    pub fn tasks(&self) -> usize {
        if !self.schedule.parallel {
            return 1;
        }
        match self.body.first() {
            Some(Stmt::For {
                extent: Expr::Int(n),
                ..
            }) => (*n).max(0) as usize,
            Some(Stmt::Gemm(g)) => match self.schedule.gemm {
                Some(s) => g.tiles(&s).iter().product(),
                None => 1,
            },
            _ => 1,
        }
    }

    /// The step of `buf[index]`'s flat offset along `var` (`None` when an
    /// index is not affine in it).
    pub fn flat_stride(&self, buf: BufId, index: &[Expr], var: &str) -> Option<i64> {
        let shape = &self.bufs[buf.0 as usize].shape;
        let (mut s, mut dim) = (0i64, 1i64);
        for (e, &d) in index.iter().zip(shape).rev() {
            s = s.checked_add(e.stride(var)?.checked_mul(dim)?)?;
            dim = dim.checked_mul(d as i64)?;
        }
        Some(s)
    }

    /// Bytes of per-thread scratch the kernel needs (its scratch buffers laid end
    /// to end, each 64-byte aligned, plus the matrix product's packing buffers).
    pub fn scratch_bytes(&self) -> usize {
        let mut total = 0;
        for b in &self.bufs {
            if b.role == Role::Scratch {
                total += b.bytes().div_ceil(64) * 64;
            }
        }
        if let (Some(Stmt::Gemm(g)), Some(s)) = (self.body.first(), self.schedule.gemm) {
            total += g.scratch_bytes(&s);
        }
        total
    }
}

impl Gemm {
    /// Tiles per dim of the task space: each batch extent, then M blocks of
    /// `mc` and N blocks of `nc`.
    pub fn tiles(&self, s: &GemmSchedule) -> Vec<usize> {
        let mut t: Vec<usize> = self.batch.iter().map(|b| b.1).collect();
        t.push(self.m.1.div_ceil(s.mc));
        t.push(self.n.1.div_ceil(s.nc));
        t
    }

    /// Byte offsets of the packed A block, the packed B panel and the block
    /// of sums in a thread's scratch, the product's part starting at `base`
    /// (each 64-byte aligned; unused parts take no room).
    pub fn scratch_layout(&self, s: &GemmSchedule, base: usize) -> [usize; 3] {
        let align = |x: usize| x.div_ceil(64) * 64;
        let (mc, nc) = (s.mc.div_ceil(s.mr) * s.mr, s.nc.div_ceil(s.nr) * s.nr);
        let a_size = if matches!(self.a, Operand::Expr(_)) {
            mc / s.mr * s.a_panel_stride() * 4
        } else {
            0
        };
        let b_size = if matches!(self.b, Operand::Expr(_)) {
            nc / s.nr * s.b_panel_stride() * 4
        } else {
            0
        };
        let a = align(base);
        let b = align(a + a_size);
        [a, b, align(b + b_size)]
    }

    /// Per-thread packing and accumulation bytes: a packed A block (`mc x kc`
    /// in panels of `a_panel_stride` floats) and a packed B block (`kc x nc`,
    /// panels of `b_panel_stride`) where they pack at run time, and the
    /// `mc x nc` block of sums the epilogue reads.
    pub fn scratch_bytes(&self, s: &GemmSchedule) -> usize {
        let mc = s.mc.div_ceil(s.mr) * s.mr;
        let nc = s.nc.div_ceil(s.nr) * s.nr;
        let mut f = 0;
        if matches!(self.a, Operand::Expr(_)) {
            f += mc / s.mr * s.a_panel_stride();
        }
        if matches!(self.b, Operand::Expr(_)) {
            f += nc / s.nr * s.b_panel_stride();
        }
        f += mc * nc;
        f * 4 + 3 * 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_strides_scale_by_the_inner_dims() {
        let k = Kernel::parse(
            "kernel \"t\"(%x: in f32[3, 5], %y: out f32[3]) {\n  for i in 0..3 {\n    %y[i] = %x[i, 0]\n  }\n}\nschedule {\n}\n",
        )
        .unwrap();
        let ix = |a: Expr, b: Expr| vec![a, b];
        let (i, j) = (Expr::var("i"), Expr::var("j"));
        let x = BufId(0);
        assert_eq!(k.flat_stride(x, &ix(i.clone(), j.clone()), "j"), Some(1));
        assert_eq!(k.flat_stride(x, &ix(i.clone(), j.clone()), "i"), Some(5));
        assert_eq!(k.flat_stride(x, &ix(j.clone(), j.clone()), "j"), Some(6));
        let half = Expr::Bin(BinOp::Div, Box::new(j), Box::new(Expr::Int(2)));
        assert_eq!(k.flat_stride(x, &ix(i, half), "j"), None);
    }
}
