//! GPU mapping: the kernels of a program lowered with
//! `LowerOptions::gpu()` become GPU kernels (kernels with a launch).
//! - A matrix product of bf16 operands runs on tensor cores
//!   ([`tensor_core`]); any other becomes a shared-memory tiled SIMT
//!   product ([`matmul`]).
//! - A loop nest collapses its perfectly nested constant loops into one
//!   index space. Where the rest is a row of sums and elementwise loops
//!   (norms, softmax, reductions), each point is a block ([`rows`]);
//!   where the innermost index's points share a loop's reads of an input
//!   (attention's keys and values), blocks of points stage those reads in
//!   shared memory tile by tile ([`attention`]); otherwise each point is a
//!   thread, consecutive threads on consecutive innermost indices
//!   (coalesced where the innermost index is the contiguous one), and the
//!   rest of the nest runs inside each thread.
//!
//! Every mapped kernel keeps its buffers in order (new ones, shared tiles,
//! go last), so a step's arguments stay valid.

pub mod attention;
pub mod matmul;
pub mod rows;
pub mod tensor_core;

use crate::lower::{Program, Step};
use kiln_ir::kernel::{BinOp, Buf, Expr, Kernel, Launch, Schedule, Stmt};

/// Threads per block of a mapped loop nest.
pub const LOOP_BLOCK: usize = 256;

/// `p` with every kernel mapped to the GPU.
pub fn map_program(p: &Program) -> Result<Program, String> {
    let mut out = p.clone();
    for st in &mut out.steps {
        if let Step::Kernel { kernel, args } = st {
            let g = map_kernel(kernel)?;
            args.resize(g.bufs.len(), None);
            *kernel = g;
        }
    }
    Ok(out)
}

/// One kernel mapped to the GPU.
pub fn map_kernel(k: &Kernel) -> Result<Kernel, String> {
    if k.schedule.launch.is_some() {
        return Ok(k.clone());
    }
    let g = match k.body.as_slice() {
        [Stmt::Gemm(g)] => match tensor_core::mma(k, g) {
            Some(tc) => tc,
            None => matmul::simt(k, g)?,
        },
        _ => loops(k),
    };
    g.verify()
        .map_err(|e| format!("GPU mapping of kernel '{}': {e}", k.name))?;
    Ok(g)
}

/// The GPU kernel that maps `k`: its name, `bufs` and `body`, launched on
/// `grid` blocks of `block` threads.
fn launched(
    k: &Kernel,
    bufs: Vec<Buf>,
    body: Vec<Stmt>,
    grid: [usize; 3],
    block: [usize; 3],
) -> Kernel {
    Kernel {
        name: k.name.clone(),
        bufs,
        body,
        schedule: Schedule {
            launch: Some(Launch { grid, block }),
            ..Schedule::default()
        },
    }
}

/// The global thread index of a 1-D launch of `block`-thread blocks.
fn global_index(block: usize) -> Expr {
    Expr::plus(
        Expr::times(Expr::var("blockIdx.x"), Expr::Int(block as i64)),
        Expr::var("threadIdx.x"),
    )
}

/// Each loop variable of `dims` (outermost first) from a flat index of their
/// space, innermost fastest.
fn unflatten(dims: &[(String, i64)], flat: &Expr) -> Vec<(String, Expr)> {
    let mut at = Vec::new();
    let mut stride = 1i64;
    for (i, (v, n)) in dims.iter().enumerate().rev() {
        let mut e = flat.clone();
        if stride > 1 {
            e = Expr::bin(BinOp::Div, e, Expr::Int(stride));
        }
        if i > 0 {
            e = Expr::bin(BinOp::Rem, e, Expr::Int(*n));
        }
        at.push((v.clone(), e));
        stride *= n;
    }
    at
}

fn loops(k: &Kernel) -> Kernel {
    let mut dims: Vec<(String, i64)> = Vec::new();
    let mut body: &[Stmt] = &k.body;
    while let [Stmt::For {
        var,
        extent: Expr::Int(n),
        body: inner,
    }] = body
    {
        dims.push((var.clone(), *n));
        body = inner;
    }
    let total: i64 = dims.iter().map(|d| d.1.max(0)).product();
    let decompose = |flat: Expr| unflatten(&dims, &flat);
    if let Some(r) = rows::map(k, total as usize, &decompose, body) {
        return r;
    }
    if let Some(a) = attention::map(k, &dims, body) {
        return a;
    }
    let block = (total.max(1) as usize).next_multiple_of(32).min(LOOP_BLOCK);
    let blocks = (total.max(1) as usize).div_ceil(block);
    let gid = global_index(block);
    let at = decompose(gid.clone());
    let sub = |e: &Expr| {
        e.rewrite(&|x| match x {
            Expr::Var(v) => at.iter().find(|(n, _)| n == v).map(|(_, e)| e.clone()),
            _ => None,
        })
    };
    let mut inner: Vec<Stmt> = body.iter().map(|s| s.map_exprs(&sub)).collect();
    if (blocks * block) as i64 != total.max(1) || total == 0 {
        inner = vec![Stmt::If {
            cond: Expr::bin(BinOp::Lt, gid, Expr::Int(total)),
            body: inner,
        }];
    }
    launched(k, k.bufs.clone(), inner, [blocks, 1, 1], [block, 1, 1])
}
