//! The meaning of a GPU kernel as a CPU kernel (MCUDA-style thread-loop
//! fission): one parallel task per block; the body is cut at its barriers
//! into pieces, and each piece runs as a loop over the block's threads, so
//! every thread finishes a piece before any starts the next, which is what a
//! barrier promises. Shared buffers become per-task scratch (a task runs one
//! block at a time); a GPU thread's own scratch and a local that lives across
//! a barrier become scratch with one slice per thread of the block. Loops that contain a barrier have the
//! same extent in every thread (the verifier's rule) and wrap their pieces.
//! A warp's tensor-core step (`mma`) is a piece of its own, computed per warp
//! from shared memory into the lanes' sums as PTX lays them out. A warp
//! shuffle is a store of every lane's value to a block-wide array, a
//! barrier, and a read of the partner lane's slot (one array per shuffle,
//! so a later shuffle never overwrites what an earlier one still reads).
//! The reference evaluator and the `gpu-sim` target run GPU kernels this way.

use super::{BinOp, Buf, BufId, Expr, Kernel, Launch, Mma, Role, Schedule, Stmt, GPU_VARS};
use crate::{DType, IrError};
use std::collections::{HashMap, HashSet};

/// The loop variable over blocks in the CPU form.
pub const BLOCK_VAR: &str = "simt_block";
/// The loop variable over a block's threads in the CPU form, numbered per
/// piece (loop variables are unique in a kernel).
pub const THREAD_VAR: &str = "simt_thread";

/// Barrier-free statements run by every thread, or a uniform loop around
/// further pieces.
enum Piece {
    Threads(Vec<Stmt>),
    Warp(Mma),
    Loop {
        var: String,
        extent: Expr,
        body: Vec<Piece>,
    },
}

/// The CPU kernel that computes what GPU kernel `k` does: its buffers are
/// `k`'s (shared ones as scratch) followed by one scratch array per local
/// that crosses a barrier.
pub fn to_cpu(k: &Kernel) -> Result<Kernel, IrError> {
    let err = |msg: String| IrError::Kernel {
        kernel: k.name.clone(),
        msg,
    };
    let launch = k
        .schedule
        .launch
        .ok_or_else(|| err("not a GPU kernel (no launch)".into()))?;
    k.verify()?;
    let k = &desugar(k);
    let pieces = split(&k.body).map_err(err)?;

    // Locals declared in one piece and used in another live in arrays.
    let mut declared = Vec::new();
    let mut used = Vec::new();
    let mut n = 0;
    number(&pieces, &mut n, &mut |i, stmts| {
        for s in stmts {
            if let Stmt::Let { name, dtype, .. } = s {
                declared.push((name.clone(), *dtype, i));
            }
        }
        let mut names = HashSet::new();
        locals_in(stmts, &mut names);
        used.push(names);
    });
    let mut bufs: Vec<Buf> = k
        .bufs
        .iter()
        .map(|b| match b.role {
            Role::Shared => Buf {
                role: Role::Scratch,
                ..b.clone()
            },
            Role::Scratch => Buf {
                shape: [launch.threads()]
                    .into_iter()
                    .chain(b.shape.clone())
                    .collect(),
                ..b.clone()
            },
            _ => b.clone(),
        })
        .collect();
    let per_thread: Vec<BufId> = k.bufs_with(Role::Scratch);
    let mut promoted = HashMap::new();
    for (name, dtype, at) in declared {
        let crosses = used
            .iter()
            .enumerate()
            .any(|(i, names)| i != at && names.contains(&name));
        if crosses && !promoted.contains_key(&name) {
            let mut bname = format!("{name}_per_thread");
            while bufs.iter().any(|b| b.name == bname) {
                bname.push('_');
            }
            promoted.insert(name.clone(), (BufId(bufs.len() as u32), dtype));
            bufs.push(Buf {
                name: bname,
                dtype,
                shape: vec![launch.threads()],
                role: Role::Scratch,
            });
        }
    }

    let mut body = Vec::new();
    let mut cx = Emit {
        launch,
        promoted,
        per_thread,
        pieces: 0,
    };
    cx.emit(&pieces, &mut body).map_err(err)?;
    let cpu = Kernel {
        name: k.name.clone(),
        bufs,
        body: vec![Stmt::For {
            var: BLOCK_VAR.into(),
            extent: Expr::Int(launch.blocks() as i64),
            body,
        }],
        schedule: Schedule {
            parallel: true,
            ..Schedule::default()
        },
    };
    cpu.verify()?;
    Ok(cpu)
}

/// `k` with each shuffle replaced by a store of the lane's value into a
/// shared array of its own, a barrier, and a read of the partner's slot
/// (`t ^ m` is `t + m` where bit `m` of `t` is clear, else `t - m`); each
/// asynchronous copy by its stores, done at once (so it has landed by any
/// wait), and commits and waits dropped.
fn desugar(k: &Kernel) -> Kernel {
    fn block(
        body: &[Stmt],
        bufs: &mut Vec<Buf>,
        threads: usize,
        lets: &mut HashMap<String, DType>,
    ) -> Vec<Stmt> {
        let mut out = Vec::new();
        for s in body {
            if let Stmt::Let { name, dtype, .. } = s {
                lets.insert(name.clone(), *dtype);
            }
            match s {
                Stmt::Shuffle { name, value, xor } => {
                    let buf = BufId(bufs.len() as u32);
                    let mut bname = format!("shfl{}", bufs.len());
                    while bufs.iter().any(|b| b.name == bname) {
                        bname.push('_');
                    }
                    bufs.push(Buf {
                        name: bname,
                        dtype: lets.get(name).copied().unwrap_or(DType::F32),
                        shape: vec![threads],
                        role: Role::Shared,
                    });
                    let (t, m) = (Expr::var("threadIdx.x"), Expr::Int(*xor as i64));
                    let bit = Expr::bin(
                        BinOp::Rem,
                        Expr::bin(BinOp::Div, t.clone(), m.clone()),
                        Expr::Int(2),
                    );
                    let partner = Expr::bin(
                        BinOp::Sub,
                        Expr::plus(t.clone(), m.clone()),
                        Expr::times(Expr::Int(2 * *xor as i64), bit),
                    );
                    out.push(Stmt::Store {
                        buf,
                        index: vec![t],
                        value: value.clone(),
                    });
                    out.push(Stmt::Barrier);
                    out.push(Stmt::Set {
                        name: name.clone(),
                        value: Expr::load(buf, vec![partner]),
                    });
                }
                Stmt::CopyAsync(c) => {
                    let at = |ix: &[Expr], e: usize| {
                        let mut ix = ix.to_vec();
                        if let Some(l) = ix.last_mut() {
                            *l = Expr::plus(l.clone(), Expr::Int(e as i64));
                        }
                        ix
                    };
                    let dtype = bufs[c.dst.0 as usize].dtype;
                    let copy = |e| Stmt::Store {
                        buf: c.dst,
                        index: at(&c.dst_at, e),
                        value: Expr::load(c.src, at(&c.src_at, e)),
                    };
                    let zero = |e| Stmt::Store {
                        buf: c.dst,
                        index: at(&c.dst_at, e),
                        value: Expr::lit(dtype, 0.0),
                    };
                    // The condition once, before any element lands.
                    let mut valid = format!("cp_valid{}", lets.len());
                    while lets.contains_key(&valid) {
                        valid.push('_');
                    }
                    lets.insert(valid.clone(), DType::Bool);
                    out.push(Stmt::Let {
                        name: valid.clone(),
                        dtype: DType::Bool,
                        init: c.valid.clone(),
                    });
                    out.push(Stmt::If {
                        cond: Expr::local(&valid),
                        body: (0..c.len).map(copy).collect(),
                    });
                    out.push(Stmt::If {
                        cond: Expr::un(super::UnOp::Not, Expr::local(&valid)),
                        body: (0..c.len).map(zero).collect(),
                    });
                }
                Stmt::AsyncCommit | Stmt::AsyncWait(_) => {}
                Stmt::For { var, extent, body } => out.push(Stmt::For {
                    var: var.clone(),
                    extent: extent.clone(),
                    body: block(body, bufs, threads, lets),
                }),
                Stmt::If { cond, body } => out.push(Stmt::If {
                    cond: cond.clone(),
                    body: block(body, bufs, threads, lets),
                }),
                _ => out.push(s.clone()),
            }
        }
        out
    }
    let mut bufs = k.bufs.clone();
    let threads = k.schedule.launch.map_or(1, |l| l.threads());
    let body = block(&k.body, &mut bufs, threads, &mut HashMap::new());
    Kernel {
        bufs,
        body,
        ..k.clone()
    }
}

/// Cuts `body` at its barriers.
fn split(body: &[Stmt]) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for s in body {
        if !has_barrier(s) {
            cur.push(s.clone());
            continue;
        }
        if !cur.is_empty() {
            out.push(Piece::Threads(std::mem::take(&mut cur)));
        }
        match s {
            Stmt::Barrier => {}
            Stmt::Mma(m) => out.push(Piece::Warp((**m).clone())),
            Stmt::For { var, extent, body } => out.push(Piece::Loop {
                var: var.clone(),
                extent: extent.clone(),
                body: split(body)?,
            }),
            _ => return Err("a barrier under an if".into()),
        }
    }
    if !cur.is_empty() {
        out.push(Piece::Threads(cur));
    }
    Ok(out)
}

fn has_barrier(s: &Stmt) -> bool {
    match s {
        Stmt::Barrier | Stmt::Mma(_) | Stmt::Shuffle { .. } => true,
        Stmt::For { body, .. } | Stmt::If { body, .. } => body.iter().any(has_barrier),
        _ => false,
    }
}

/// Calls `f` with each thread or warp piece's number (in order) and
/// statements (a warp piece as its `mma`).
fn number(pieces: &[Piece], n: &mut usize, f: &mut dyn FnMut(usize, &[Stmt])) {
    for p in pieces {
        match p {
            Piece::Threads(stmts) => {
                f(*n, stmts);
                *n += 1;
            }
            Piece::Warp(m) => {
                f(*n, &[Stmt::Mma(Box::new(m.clone()))]);
                *n += 1;
            }
            Piece::Loop { body, .. } => number(body, n, f),
        }
    }
}

/// Names of the locals `stmts` declare, read or assign, at any depth.
fn locals_in(stmts: &[Stmt], out: &mut HashSet<String>) {
    let expr = |e: &Expr, out: &mut HashSet<String>| {
        e.walk(&mut |x| {
            if let Expr::Local(l) = x {
                out.insert(l.clone());
            }
        })
    };
    for s in stmts {
        match s {
            Stmt::For { extent, body, .. } => {
                expr(extent, out);
                locals_in(body, out);
            }
            Stmt::If { cond, body } => {
                expr(cond, out);
                locals_in(body, out);
            }
            Stmt::Let { name, init: e, .. } | Stmt::Set { name, value: e } => {
                out.insert(name.clone());
                expr(e, out);
            }
            Stmt::Store { index, value, .. } => {
                index.iter().chain([value]).for_each(|e| expr(e, out));
            }
            Stmt::Mma(m) => {
                out.extend(m.acc.iter().cloned());
                m.a_at.iter().chain(&m.b_at).for_each(|e| expr(e, out));
            }
            Stmt::Shuffle { name, value, .. } => {
                out.insert(name.clone());
                expr(value, out);
            }
            Stmt::CopyAsync(c) => {
                let exprs = c.dst_at.iter().chain(&c.src_at).chain([&c.valid]);
                exprs.for_each(|e| expr(e, out));
            }
            Stmt::Gemm(_) | Stmt::Barrier | Stmt::AsyncCommit | Stmt::AsyncWait(_) => {}
        }
    }
}

/// Each reserved variable's value in terms of the block and thread loop
/// variables: `x` fastest, then `y`, then `z`.
fn ids(launch: &Launch, thread: &str) -> HashMap<&'static str, Expr> {
    let mut out = HashMap::new();
    for (name, dim, axis) in GPU_VARS {
        let (dims, var) = if dim == 0 {
            (&launch.grid, BLOCK_VAR)
        } else {
            (&launch.block, thread)
        };
        let below: usize = dims[..axis].iter().product();
        let mut e = Expr::var(var);
        if below > 1 {
            e = Expr::bin(super::BinOp::Div, e, Expr::Int(below as i64));
        }
        if axis < 2 || below > 1 {
            e = Expr::bin(super::BinOp::Rem, e, Expr::Int(dims[axis] as i64));
        }
        out.insert(name, e);
    }
    out
}

/// Emits pieces, numbering their thread loops.
struct Emit {
    launch: Launch,
    promoted: HashMap<String, (BufId, DType)>,
    /// GPU per-thread scratch buffers (indexed by the thread first).
    per_thread: Vec<BufId>,
    pieces: usize,
}

impl Emit {
    fn emit(&mut self, pieces: &[Piece], out: &mut Vec<Stmt>) -> Result<(), String> {
        for p in pieces {
            match p {
                Piece::Threads(stmts) => {
                    let var = format!("{THREAD_VAR}{}", self.pieces);
                    self.pieces += 1;
                    let sub = Subst {
                        ids: ids(&self.launch, &var),
                        promoted: &self.promoted,
                        per_thread: &self.per_thread,
                        thread: &var,
                    };
                    out.push(Stmt::For {
                        body: stmts.iter().map(|s| sub.stmt(s)).collect(),
                        var,
                        extent: Expr::Int(self.launch.threads() as i64),
                    });
                }
                Piece::Warp(m) => out.push(self.warp(m)?),
                Piece::Loop { var, extent, body } => {
                    let mut inner = Vec::new();
                    self.emit(body, &mut inner)?;
                    // A uniform extent uses only blockIdx and outer loops.
                    let sub = Subst {
                        ids: ids(&self.launch, THREAD_VAR),
                        promoted: &self.promoted,
                        per_thread: &self.per_thread,
                        thread: THREAD_VAR,
                    };
                    out.push(Stmt::For {
                        var: var.clone(),
                        extent: sub.expr(extent),
                        body: inner,
                    });
                }
            }
        }
        Ok(())
    }
}

impl Emit {
    /// One warp step per warp: each lane's four sums gain their row of A
    /// times their column of B over the 16 K steps, in f32.
    fn warp(&mut self, m: &Mma) -> Result<Stmt, String> {
        let n = self.pieces;
        self.pieces += 1;
        let (warp, lane, kk) = (
            format!("simt_warp{n}"),
            format!("simt_lane{n}"),
            format!("simt_k{n}"),
        );
        let base = format!("simt_warp_base{n}");
        // Positions as lane 0 of the warp sees them.
        let sub = Subst {
            ids: ids(&self.launch, &base),
            promoted: &self.promoted,
            per_thread: &self.per_thread,
            thread: &base,
        };
        let first = Expr::times(Expr::var(&warp), Expr::Int(32));
        let at = |e: &Expr| {
            sub.expr(e)
                .rewrite(&|x| matches!(x, Expr::Var(v) if *v == base).then(|| first.clone()))
        };
        let thread = Expr::plus(first.clone(), Expr::var(&lane));
        let (l, k) = (Expr::var(&lane), Expr::var(&kk));
        let half = |e: Expr| Expr::Cast(DType::F32, Box::new(e));
        let mut sums = Vec::new();
        for (e, acc) in m.acc.iter().enumerate() {
            let Some(&(buf, _)) = self.promoted.get(acc) else {
                return Err(format!("mma sum '${acc}' is not declared before the mma"));
            };
            let row = Expr::plus(
                Expr::bin(BinOp::Div, l.clone(), Expr::Int(4)),
                Expr::Int(8 * (e as i64 / 2)),
            );
            let col = Expr::plus(
                Expr::times(Expr::bin(BinOp::Rem, l.clone(), Expr::Int(4)), Expr::Int(2)),
                Expr::Int(e as i64 % 2),
            );
            let a = Expr::load(
                m.a,
                vec![
                    Expr::plus(at(&m.a_at[0]), row),
                    Expr::plus(at(&m.a_at[1]), k.clone()),
                ],
            );
            let (bn, bk) = (
                Expr::plus(at(&m.b_at[0]), col),
                Expr::plus(at(&m.b_at[1]), k.clone()),
            );
            let b = Expr::load(m.b, if m.b_kn { vec![bk, bn] } else { vec![bn, bk] });
            let mine = vec![thread.clone()];
            sums.push(Stmt::Store {
                buf,
                index: mine.clone(),
                value: Expr::plus(Expr::load(buf, mine), Expr::times(half(a), half(b))),
            });
        }
        Ok(Stmt::For {
            var: warp,
            extent: Expr::Int((self.launch.threads() / 32) as i64),
            body: vec![Stmt::For {
                var: lane,
                extent: Expr::Int(32),
                body: vec![Stmt::For {
                    var: kk,
                    extent: Expr::Int(16),
                    body: sums,
                }],
            }],
        })
    }
}

/// Replaces reserved variables by their values in one piece (thread loop
/// variable `thread`) and promoted locals by the thread's array element.
struct Subst<'a> {
    ids: HashMap<&'static str, Expr>,
    promoted: &'a HashMap<String, (BufId, DType)>,
    per_thread: &'a [BufId],
    thread: &'a str,
}

impl Subst<'_> {
    fn stmt(&self, s: &Stmt) -> Stmt {
        let e = |x: &Expr| self.expr(x);
        let block = |b: &[Stmt]| b.iter().map(|s| self.stmt(s)).collect();
        let slot = |name: &str| {
            self.promoted
                .get(name)
                .map(|(b, _)| (*b, vec![Expr::var(self.thread)]))
        };
        match s {
            Stmt::For { var, extent, body } => Stmt::For {
                var: var.clone(),
                extent: e(extent),
                body: block(body),
            },
            Stmt::If { cond, body } => Stmt::If {
                cond: e(cond),
                body: block(body),
            },
            Stmt::Let { name, dtype, init } => match slot(name) {
                Some((buf, index)) => Stmt::Store {
                    buf,
                    index,
                    value: e(init),
                },
                None => Stmt::Let {
                    name: name.clone(),
                    dtype: *dtype,
                    init: e(init),
                },
            },
            Stmt::Set { name, value } => match slot(name) {
                Some((buf, index)) => Stmt::Store {
                    buf,
                    index,
                    value: e(value),
                },
                None => Stmt::Set {
                    name: name.clone(),
                    value: e(value),
                },
            },
            Stmt::Store { buf, index, value } => Stmt::Store {
                buf: *buf,
                index: self.index(*buf, index),
                value: e(value),
            },
            Stmt::Gemm(_)
            | Stmt::Barrier
            | Stmt::Mma(_)
            | Stmt::Shuffle { .. }
            | Stmt::CopyAsync(_)
            | Stmt::AsyncCommit
            | Stmt::AsyncWait(_) => s.clone(),
        }
    }

    /// An index of `buf`, with the thread first for per-thread scratch.
    fn index(&self, buf: BufId, index: &[Expr]) -> Vec<Expr> {
        let own = self
            .per_thread
            .contains(&buf)
            .then(|| Expr::var(self.thread));
        own.into_iter()
            .chain(index.iter().map(|x| self.expr(x)))
            .collect()
    }

    fn expr(&self, x: &Expr) -> Expr {
        x.rewrite(&|e| match e {
            Expr::Var(v) => self.ids.get(v.as_str()).cloned(),
            Expr::Load(b, ix) if self.per_thread.contains(b) => {
                Some(Expr::load(*b, self.index(*b, ix)))
            }
            Expr::Local(l) => self
                .promoted
                .get(l)
                .map(|(b, _)| Expr::load(*b, vec![Expr::var(self.thread)])),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, inputs: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let k = Kernel::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut bufs: Vec<Vec<f64>> = k.bufs.iter().map(|b| vec![0.0; b.numel()]).collect();
        for (b, x) in bufs.iter_mut().zip(inputs) {
            b.clone_from(x);
        }
        k.eval(&mut bufs).unwrap();
        bufs
    }

    /// A tree sum in shared memory over 100 values per block of 128
    /// threads: each step reads what other threads wrote before the last
    /// barrier, and `$v` is read after the barriers (a promoted local).
    #[test]
    fn block_tree_sum_honours_barriers() {
        let mut text = String::from(
            "kernel \"sum\"(%x: in f32[300], %y: out f32[3], %z: out f32[384], %s: shared f32[128]) {\n\
             let $v: f32 = f32:0.0\n\
             if (lt threadIdx.x 100) {\n\
               $v = %x[(add (mul blockIdx.x 100) threadIdx.x)]\n\
             }\n\
             %s[threadIdx.x] = $v\n\
             barrier\n",
        );
        for half in [64, 32, 16, 8, 4, 2, 1] {
            text += &format!(
                "if (lt threadIdx.x {half}) {{\n\
                   %s[threadIdx.x] = (add %s[threadIdx.x] %s[(add threadIdx.x {half})])\n\
                 }}\n\
                 barrier\n"
            );
        }
        text += "if (eq threadIdx.x 0) {\n  %y[blockIdx.x] = %s[0]\n}\n\
                 %z[(add (mul blockIdx.x 128) threadIdx.x)] = (mul $v %s[0])\n\
                 }\nschedule {\n  launch grid 3 1 1 block 128 1 1\n}\n";
        let x: Vec<f64> = (0..300).map(|i| ((i * 37 % 17) as f64) - 8.0).collect();
        let out = run(&text, std::slice::from_ref(&x));
        for b in 0..3 {
            let want: f64 = x[b * 100..b * 100 + 100].iter().sum();
            assert_eq!(out[1][b], want, "block {b}");
            for t in 0..128 {
                let v = if t < 100 { x[b * 100 + t] } else { 0.0 };
                assert_eq!(out[2][b * 128 + t], v * want, "block {b} thread {t}");
            }
        }
        let cpu = to_cpu(&Kernel::parse(&text).unwrap()).unwrap();
        assert_eq!(cpu.bufs.last().unwrap().name, "v_per_thread");
        assert_eq!(cpu.bufs[3].role, Role::Scratch);
    }

    /// 2-D grid and block: every thread writes its own ids.
    #[test]
    fn ids_follow_x_fastest() {
        let text = "kernel \"ids\"(%o: out i64[3, 2, 4, 8, 4]) {\n\
             %o[blockIdx.y, blockIdx.x, threadIdx.y, threadIdx.x, 0] = threadIdx.x\n\
             %o[blockIdx.y, blockIdx.x, threadIdx.y, threadIdx.x, 1] = threadIdx.y\n\
             %o[blockIdx.y, blockIdx.x, threadIdx.y, threadIdx.x, 2] = blockIdx.x\n\
             %o[blockIdx.y, blockIdx.x, threadIdx.y, threadIdx.x, 3] = (add threadIdx.z blockIdx.z)\n\
             }\nschedule {\n  launch grid 2 3 1 block 8 4 1\n}\n";
        let o = &run(text, &[])[0];
        for (by, bx, ty, tx) in (0..3).flat_map(|a| {
            (0..2).flat_map(move |b| (0..4).flat_map(move |c| (0..8).map(move |d| (a, b, c, d))))
        }) {
            let at = (((by * 2 + bx) * 4 + ty) * 8 + tx) * 4;
            assert_eq!(&o[at..at + 4], &[tx as f64, ty as f64, bx as f64, 0.0]);
        }
    }

    /// A uniform loop around barriers: each tile is staged in shared memory
    /// and read back reversed, which needs both barriers.
    #[test]
    fn barriers_inside_uniform_loops() {
        let text = "kernel \"rev\"(%x: in f32[96], %o: out f32[96], %s: shared f32[32]) {\n\
             for t in 0..3 {\n\
               %s[threadIdx.x] = %x[(add (mul t 32) threadIdx.x)]\n\
               barrier\n\
               %o[(add (mul t 32) threadIdx.x)] = %s[(sub 31 threadIdx.x)]\n\
               barrier\n\
             }\n\
             }\nschedule {\n  launch grid 1 1 1 block 32 1 1\n}\n";
        let x: Vec<f64> = (0..96).map(|i| i as f64).collect();
        let o = &run(text, &[x])[1];
        for t in 0..3 {
            for i in 0..32 {
                assert_eq!(o[t * 32 + i], (t * 32 + 31 - i) as f64);
            }
        }
    }

    /// A GPU thread's scratch is its own, across barriers too.
    #[test]
    fn per_thread_scratch_is_private() {
        let text = "kernel \"own\"(%o: out f32[64], %r: scratch f32[2]) {\n\
             %r[0] = (cast f32 threadIdx.x)\n\
             barrier\n\
             %r[1] = (mul %r[0] f32:2.0)\n\
             %o[(add (mul blockIdx.x 32) threadIdx.x)] = (add %r[0] %r[1])\n\
             }\nschedule {\n  launch grid 2 1 1 block 32 1 1\n}\n";
        let o = &run(text, &[])[0];
        for (i, v) in o.iter().enumerate() {
            assert_eq!(*v, 3.0 * (i % 32) as f64, "thread {i}");
        }
    }

    /// Barriers only where the whole block arrives; GPU-only constructs
    /// only in GPU kernels.
    #[test]
    fn misplaced_gpu_constructs_are_refused() {
        let bad = [
            (
                "if (lt threadIdx.x 3) {\n barrier\n}\n",
                "launch grid 1 1 1 block 32 1 1",
                "barrier under an if",
            ),
            (
                "for i in 0..threadIdx.x {\n barrier\n}\n",
                "launch grid 1 1 1 block 32 1 1",
                "differs between threads",
            ),
            ("barrier\n", "", "barrier outside a GPU kernel"),
            ("%o[0] = threadIdx.x\n", "", "outside its loop"),
            ("%o[0] = 1\n", "launch grid 1 0 1 block 32 1 1", "positive"),
            (
                "%o[0] = 1\n",
                "launch grid 1 1 1 block 64 32 1",
                "at most 1024",
            ),
        ];
        for (body, sched, want) in bad {
            let text =
                format!("kernel \"k\"(%o: out i64[4]) {{\n{body}}}\nschedule {{\n  {sched}\n}}\n");
            let e = Kernel::parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{body}: {e}");
        }
        let mma = |pos: &str, accs: &str| {
            format!(
                "kernel \"k\"(%a: shared bf16[32, 32], %b: shared bf16[16, 32]) {{\n\
                 let $c0: f32 = f32:0.0\nlet $c1: f32 = f32:0.0\nlet $c2: f32 = f32:0.0\nlet $c3: f32 = f32:0.0\n\
                 mma {accs} += %a[{pos}] %b[0, 0]\n}}\nschedule {{\n  launch grid 1 1 1 block 64 1 1\n}}\n"
            )
        };
        let all = "$c0 $c1 $c2 $c3";
        assert!(Kernel::parse(&mma("(mul (div threadIdx.x 32) 16), 16", all)).is_ok());
        for (pos, accs, want) in [
            ("0, 1", all, "even constant"),
            ("0, 24", all, "even constant"),
            ("20, 0", all, "outside"),
            ("(rem threadIdx.x 32), 0", all, "every lane of a warp"),
            ("0, 0", "$c0 $c1 $c0 $c3", "named twice"),
        ] {
            let e = Kernel::parse(&mma(pos, accs)).unwrap_err().to_string();
            assert!(e.contains(want), "{pos} {accs}: {e}");
        }
        let shared = "kernel \"k\"(%s: shared f32[4]) {\n}\nschedule {\n}\n";
        let e = Kernel::parse(shared).unwrap_err().to_string();
        assert!(e.contains("outside a GPU kernel"), "{e}");
    }

    /// A warp's tensor-core step: each lane's sums land where the layout
    /// says, and add onto their starting values.
    #[test]
    fn mma_follows_the_fragment_layout() {
        let idx = |r: &str, w: usize| {
            let e = format!("(add threadIdx.x (mul {r} 32))");
            format!("(div {e} {w}), (rem {e} {w})")
        };
        let text = format!(
            "kernel \"mma\"(%x: in bf16[20, 16], %y: in bf16[9, 16], %o: out f32[16, 8], %a: shared bf16[20, 16], %b: shared bf16[9, 16]) {{\n\
             for r in 0..10 {{\n  %a[{ia}] = %x[{ia}]\n}}\n\
             for q in 0..4 {{\n  %b[{ib}] = %y[{ib}]\n}}\n\
             if (lt threadIdx.x 16) {{\n  %b[8, threadIdx.x] = %y[8, threadIdx.x]\n}}\n\
             barrier\n\
             let $c0: f32 = f32:1.0\nlet $c1: f32 = f32:2.0\nlet $c2: f32 = f32:3.0\nlet $c3: f32 = f32:4.0\n\
             mma $c0 $c1 $c2 $c3 += %a[(add (div threadIdx.x 32) 3), 0] %b[1, 0]\n\
             %o[(div threadIdx.x 4), (mul (rem threadIdx.x 4) 2)] = $c0\n\
             %o[(div threadIdx.x 4), (add (mul (rem threadIdx.x 4) 2) 1)] = $c1\n\
             %o[(add (div threadIdx.x 4) 8), (mul (rem threadIdx.x 4) 2)] = $c2\n\
             %o[(add (div threadIdx.x 4) 8), (add (mul (rem threadIdx.x 4) 2) 1)] = $c3\n\
             }}\nschedule {{\n  launch grid 1 1 1 block 32 1 1\n}}\n",
            ia = idx("r", 16),
            ib = idx("q", 16),
        );
        let x: Vec<f64> = (0..320)
            .map(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0)
            .collect();
        let y: Vec<f64> = (0..144)
            .map(|i| ((i * 5 % 13) as f64 - 6.0) / 8.0)
            .collect();
        let o = &run(&text, &[x.clone(), y.clone()])[2];
        for i in 0..16 {
            for j in 0..8 {
                let start = [1.0, 2.0, 3.0, 4.0][2 * (i / 8) + j % 2];
                let want: f64 = start
                    + (0..16)
                        .map(|k| x[(i + 3) * 16 + k] * y[(j + 1) * 16 + k])
                        .sum::<f64>();
                assert_eq!(o[i * 8 + j], want, "({i}, {j})");
            }
        }
        for lane in [0, 5, 31] {
            for e in 0..4 {
                let (r, c) = Mma::element(lane, e);
                assert!(r < 16 && c < 8);
            }
        }
    }

    /// Butterfly shuffles: each lane gets its partner's value, in loops
    /// too, and five steps give every lane its warp's sum.
    #[test]
    fn shuffles_exchange_between_partner_lanes() {
        let text = "kernel \"shfl\"(%x: in f32[128], %p: out f32[128, 5], %s: out f32[128]) {\n\
             let $v: f32 = %x[(add (mul blockIdx.x 64) threadIdx.x)]\n\
             let $o: f32 = f32:0.0\n\
             for r in 0..5 {\n\
               shfl $o = (mul $v f32:2.0) xor 4\n\
               %p[(add (mul blockIdx.x 64) threadIdx.x), r] = $o\n\
             }\n\
             shfl $o = $v xor 16\n$v = (add $v $o)\n\
             shfl $o = $v xor 8\n$v = (add $v $o)\n\
             shfl $o = $v xor 4\n$v = (add $v $o)\n\
             shfl $o = $v xor 2\n$v = (add $v $o)\n\
             shfl $o = $v xor 1\n$v = (add $v $o)\n\
             %s[(add (mul blockIdx.x 64) threadIdx.x)] = $v\n\
             }\nschedule {\n  launch grid 2 1 1 block 64 1 1\n}\n";
        let x: Vec<f64> = (0..128).map(|i| ((i * 13 % 29) as f64) - 14.0).collect();
        let out = run(text, std::slice::from_ref(&x));
        for t in 0..128 {
            for r in 0..5 {
                assert_eq!(out[1][t * 5 + r], 2.0 * x[t ^ 4], "lane {t} round {r}");
            }
            let w = t / 32 * 32;
            let want: f64 = x[w..w + 32].iter().sum();
            assert_eq!(out[2][t], want, "thread {t}");
        }
        let k = Kernel::parse(text).unwrap();
        assert_eq!(Kernel::parse(&k.to_string()).unwrap(), k);
        let bad = [
            (
                "if (lt threadIdx.x 3) {\n shfl $o = $v xor 1\n}\n",
                64,
                "under an if",
            ),
            ("shfl $o = $v xor 3\n", 64, "lane mask 3"),
            ("shfl $o = $v xor 32\n", 64, "lane mask 32"),
            ("shfl $o = $v xor 1\n", 48, "whole warps"),
            ("shfl $o = (cast f64 $v) xor 1\n", 64, "shfl of f64"),
            ("shfl $n = $v xor 1\n", 64, "undeclared local"),
        ];
        for (body, threads, want) in bad {
            let text = format!(
                "kernel \"k\"(%o: out i64[4]) {{\nlet $v: f32 = f32:1.0\nlet $o: f32 = f32:0.0\n{body}}}\n\
                 schedule {{\n  launch grid 1 1 1 block {threads} 1 1\n}}\n"
            );
            let e = Kernel::parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{body}: {e}");
        }
    }

    /// `cp.async` pieces (zeros where not valid) and `mma.kn` (B stored
    /// `[k][n]`): the sums are A times B with A's second row of pieces
    /// zeroed.
    #[test]
    fn async_copies_and_kn_mma() {
        let text = "kernel \"kn\"(%x: in bf16[16, 16], %y: in bf16[16, 8], %o: out f32[16, 8], %a: shared bf16[16, 16], %b: shared bf16[16, 8]) {\n\
             cp.async 8 %a[(div threadIdx.x 2), (mul (rem threadIdx.x 2) 8)] = %x[(div threadIdx.x 2), (mul (rem threadIdx.x 2) 8)] if (lt (rem threadIdx.x 2) 1)\n\
             if (lt threadIdx.x 16) {\n\
               cp.async 8 %b[threadIdx.x, 0] = %y[threadIdx.x, 0] if (eq 0 0)\n\
             }\n\
             cp.async.commit\ncp.async.wait 0\nbarrier\n\
             let $c0: f32 = f32:0.0\nlet $c1: f32 = f32:0.0\nlet $c2: f32 = f32:0.0\nlet $c3: f32 = f32:0.0\n\
             mma.kn $c0 $c1 $c2 $c3 += %a[0, 0] %b[0, 0]\n\
             %o[(div threadIdx.x 4), (mul (rem threadIdx.x 4) 2)] = $c0\n\
             %o[(div threadIdx.x 4), (add (mul (rem threadIdx.x 4) 2) 1)] = $c1\n\
             %o[(add (div threadIdx.x 4) 8), (mul (rem threadIdx.x 4) 2)] = $c2\n\
             %o[(add (div threadIdx.x 4) 8), (add (mul (rem threadIdx.x 4) 2) 1)] = $c3\n\
             }\nschedule {\n  launch grid 1 1 1 block 32 1 1\n}\n";
        let k = Kernel::parse(text).unwrap();
        assert_eq!(Kernel::parse(&k.to_string()).unwrap(), k);
        let x: Vec<f64> = (0..256)
            .map(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0)
            .collect();
        let y: Vec<f64> = (0..128)
            .map(|i| ((i * 5 % 13) as f64 - 6.0) / 8.0)
            .collect();
        let o = &run(text, &[x.clone(), y.clone()])[2];
        for i in 0..16 {
            for j in 0..8 {
                let want: f64 = (0..8).map(|k| x[i * 16 + k] * y[k * 8 + j]).sum();
                assert_eq!(o[i * 8 + j], want, "({i}, {j})");
            }
        }
        // Reads only after a wait and then a barrier, on every path (a
        // copy at the end of a loop reaches the next iteration's read).
        for (from, to) in [
            ("cp.async.wait 0\nbarrier\n", ""),
            ("cp.async.wait 0\nbarrier\n", "barrier\n"),
            ("cp.async.wait 0\nbarrier\n", "cp.async.wait 0\n"),
            (
                "cp.async.wait 0\nbarrier\n",
                "cp.async.wait 0\nif (eq threadIdx.x 0) {\nbarrier\n}\n",
            ),
        ] {
            let e = Kernel::parse(&text.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("read before its cp.async copies") || e.contains("under an if"),
                "{to}: {e}"
            );
        }
        let looped = "kernel \"l\"(%x: in f32[64], %o: out f32[32], %s: shared f32[32]) {\n\
             for t in 0..2 {\n\
               %o[threadIdx.x] = %s[threadIdx.x]\n\
               cp.async 1 %s[threadIdx.x] = %x[(add (mul t 32) threadIdx.x)] if (eq 0 0)\n\
               cp.async.commit\n\
             }\n\
             }\nschedule {\n  launch grid 1 1 1 block 32 1 1\n}\n";
        let e = Kernel::parse(looped).unwrap_err().to_string();
        assert!(e.contains("'%s' is read before"), "{e}");
        let waited = looped.replace(
            "cp.async.commit\n",
            "cp.async.commit\ncp.async.wait 0\nbarrier\n",
        );
        assert!(Kernel::parse(&waited).is_ok());
        // An mma after plain stores to its operands needs a barrier too.
        let stored = text.replace(
            "cp.async.commit\ncp.async.wait 0\nbarrier\n",
            "cp.async.commit\ncp.async.wait 0\nbarrier\n%b[0, 0] = bf16:1.0\n",
        );
        let e = Kernel::parse(&stored).unwrap_err().to_string();
        assert!(e.contains("mma reads '%b' after stores"), "{e}");
        assert!(Kernel::parse(&stored.replace("bf16:1.0\n", "bf16:1.0\nbarrier\n")).is_ok());
        for (bad, want) in [
            (
                "cp.async 8 %a[0, 4] = %x[0, 0] if (eq 0 0)",
                "multiple of 8",
            ),
            (
                "cp.async 8 %a[0, (add (mul threadIdx.x 8) 4)] = %x[0, 0] if (eq 0 0)",
                "multiple of 8",
            ),
            ("cp.async 16 %a[0, 0] = %x[0, 0] if (eq 0 0)", "32 bytes"),
            (
                "cp.async 8 %a[0, 0] = %o[0, 0] if (eq 0 0)",
                "from a global input",
            ),
        ] {
            let t = text.replace("cp.async.commit", bad);
            let e = Kernel::parse(&t).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    /// A copy's condition is read once, before any element lands (here the
    /// condition reads the element the copy overwrites).
    #[test]
    fn async_copy_condition_is_read_once() {
        let text = "kernel \"c\"(%x: in f32[32], %o: out f32[32], %a: shared f32[32]) {\n\
             %a[threadIdx.x] = f32:0.0\n\
             barrier\n\
             cp.async 1 %a[threadIdx.x] = %x[threadIdx.x] if (eq %a[threadIdx.x] f32:0.0)\n\
             cp.async.commit\ncp.async.wait 0\nbarrier\n\
             %o[threadIdx.x] = %a[threadIdx.x]\n\
             }\nschedule {\n  launch grid 1 1 1 block 32 1 1\n}\n";
        let x: Vec<f64> = (0..32).map(|i| i as f64 + 1.0).collect();
        assert_eq!(run(text, std::slice::from_ref(&x))[1], x);
    }

    /// The text form keeps launches, ifs, barriers and shared buffers.
    #[test]
    fn gpu_kernels_print_and_parse_back() {
        let text = "kernel \"k\"(%x: in f32[64], %s: shared f32[64]) {\n  if (lt threadIdx.x 3) {\n    %s[threadIdx.x] = %x[threadIdx.x]\n  }\n  barrier\n}\nschedule {\n  launch grid 2 1 1 block 64 1 1\n}\n";
        let k = Kernel::parse(text).unwrap();
        assert_eq!(k.to_string(), text);
    }
}
