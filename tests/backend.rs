//! Compiled CPU code (`cpu` by Cranelift, `cpu-llvm` by LLVM) and GPU
//! kernels run on the CPU (`gpu-sim`) against the reference interpreter: the
//! example models at one and two threads, and single ops and small fused
//! graphs with awkward shapes (sizes that are not multiples of the register
//! tile or the cache blocks, size-1 dims, broadcasting, K spanning several
//! K blocks, runtime- and compile-time-packed operands), each before and
//! after optimization.

#[path = "../passes/tests/common/mod.rs"]
mod common;

use common::{max_rel, random_inputs, B};
use kiln::{Bindings, Model};
use kiln_backends::runtime::Executor;
use kiln_backends::{ClifBackend, CpuTile, GpuSimBackend, LlvmBackend};
use kiln_ir::op::*;
use kiln_ir::{interp, DType, Graph, Tensor};
use kiln_passes::lower::Step;
use std::collections::HashMap;
use std::path::Path;

/// `g` compiled by both CPU backends, Cranelift's with each register tile
/// (the native AVX2 one where the host has it, and Cranelift's own), and
/// mapped to GPU kernels run on the CPU (`gpu-sim`).
fn executors(g: &Graph, threads: usize) -> Vec<(&'static str, Executor)> {
    let clif = |tile| ClifBackend { threads, tile }.executor(g);
    [
        ("cpu-llvm", LlvmBackend { threads }.executor(g)),
        ("cpu", clif(CpuTile::Native)),
        ("cpu (cranelift tile)", clif(CpuTile::Cranelift)),
        (
            "gpu-sim",
            GpuSimBackend {
                threads,
                arch: "sm_90",
            }
            .executor(g),
        ),
    ]
    .into_iter()
    .map(|(name, exe)| {
        (
            name,
            exe.unwrap_or_else(|e| panic!("{name}: compile failed: {e}\n{g}")),
        )
    })
    .collect()
}

/// Runs `g` compiled at `threads` by both backends and on the interpreter;
/// asserts agreement and that every step compiled to a kernel.
fn agree(g: &Graph, ins: &HashMap<String, Tensor>, threads: usize, tol: f64) {
    let want = interp::run(g, ins).unwrap();
    for (name, exe) in executors(g, threads) {
        agree_one(name, &exe, g, ins, &want, tol);
    }
}

fn agree_one(
    name: &str,
    exe: &Executor,
    g: &Graph,
    ins: &HashMap<String, Tensor>,
    want: &[Tensor],
    tol: f64,
) {
    let threads = exe.threads();
    for s in &exe.program().steps {
        if let Step::Host { name, reason, .. } = s {
            panic!("{name} ran on the host: {reason}\n{g}");
        }
    }
    let ordered: Vec<&Tensor> = g.inputs.iter().map(|v| &ins[&g.value(*v).name]).collect();
    let got = exe.run(&ordered).unwrap();
    for (w, o) in want.iter().zip(&got) {
        assert_eq!(w.ty(), o.ty());
        let e = max_rel(w, o);
        assert!(e <= tol, "{name}: error {e} at {threads} threads\n{g}");
    }
}

/// The graph as built and as optimized, on three random input sets.
fn check(g: Graph, tol: f64) {
    let opt = kiln_passes::optimize(&g, &kiln_ir::Target::cpu_default(), &Default::default())
        .unwrap()
        .graph;
    for seed in 0..3 {
        let ins = random_inputs(&g, seed);
        for h in [&g, &opt] {
            agree(h, &ins, 1 + seed as usize % 2, tol);
        }
    }
}

fn model(name: &str, batch: usize) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(format!("{name}.onnx"));
    let mut b = Bindings::default();
    b.dims.insert("batch".into(), batch);
    let mut m = Model::load(&p, &b).unwrap();
    let before = m.graph.clone();
    m.optimize(&kiln_ir::Target::cpu_default()).unwrap();
    let ins = m.random_inputs(5);
    let want = interp::run(&before, &ins).unwrap();
    for threads in [1, 2] {
        let ordered: Vec<&Tensor> = m
            .graph
            .inputs
            .iter()
            .map(|v| &ins[&m.graph.value(*v).name])
            .collect();
        for (backend, exe) in executors(&m.graph, threads) {
            tile_as_asked(backend, &exe);
            let got = exe.run(&ordered).unwrap();
            for (w, o) in want.iter().zip(&got) {
                let e = max_rel(w, o);
                assert!(
                    e <= 1e-4,
                    "{name} on {backend} at {threads} threads: error {e}"
                );
            }
        }
    }
}

/// The register tile `exe`'s matrix products were blocked for: 6 x 16 for
/// cpu-llvm and for cpu where the host has the native AVX2 tile, Cranelift's
/// 6 x 8 over four copies of A otherwise.
fn tile_as_asked(backend: &str, exe: &Executor) {
    let native = ClifBackend {
        threads: 1,
        tile: CpuTile::Native,
    }
    .native_tile();
    let want = match backend {
        "cpu-llvm" | "gpu-sim" => None,
        "cpu" if native => Some((6, 16, 1)),
        _ => Some((6, 8, 4)),
    };
    for s in &exe.program().steps {
        if let (Step::Kernel { kernel, .. }, Some(want)) = (s, want) {
            if let Some(g) = kernel.schedule.gemm {
                assert_eq!((g.mr, g.nr, g.a_lanes), want, "{backend}: {}", kernel.name);
            }
        }
    }
}

#[test]
fn models_match_the_interpreter() {
    model("small_cnn", 3);
    model("mlp", 2);
    model("gpt2_block", 1);
    model("resnet_block", 1);
}

fn mm() -> MatMul {
    MatMul {
        trans_a: false,
        trans_b: false,
    }
}

#[test]
fn matmul_awkward_shapes() {
    // (M, K, N): single elements, primes, K over two K blocks, N over N blocks.
    for (i, &(m, k, n)) in [
        (1, 1, 1),
        (7, 13, 5),
        (6, 16, 16),
        (13, 300, 37),
        (65, 513, 33),
        (2, 600, 2100),
    ]
    .iter()
    .enumerate()
    {
        // Constant weights (packed at compile time), with a bias and GELU.
        let mut b = B::new(i as u64);
        let x = b.input(&[m, k]);
        let w = b.konst(&[k, n]);
        let bias = b.konst(&[n]);
        let y = b.op(mm(), &[x, w]);
        let y = b.op(
            Binary {
                kind: BinaryKind::Add,
            },
            &[y, bias],
        );
        let y = b.op(
            Unary {
                kind: UnaryKind::Gelu { tanh: false },
            },
            &[y],
        );
        check(b.finish(&[y]), 1e-4);
        // Both operands at run time, batched, with a size-1 batch broadcast.
        let mut b = B::new(i as u64);
        let x = b.input(&[3, m, k]);
        let w = b.input(&[1, k, n]);
        let y = b.op(mm(), &[x, w]);
        check(b.finish(&[y]), 1e-4);
    }
}

#[test]
fn conv_awkward_shapes() {
    // (N, C, H, W, F, kernel, stride, pad, group)
    for (i, &(n, c, h, w, f, k, s, p, gr)) in [
        (1, 3, 7, 9, 5, 3, 1, 1, 1),
        (2, 4, 11, 6, 8, 3, 2, 1, 2),
        (1, 8, 5, 5, 8, 1, 1, 0, 1),
        (1, 6, 9, 8, 6, 3, 1, 1, 6),
        (1, 2, 13, 13, 17, 5, 3, 2, 1),
    ]
    .iter()
    .enumerate()
    {
        let mut b = B::new(10 + i as u64);
        let x = b.input(&[n, c, h, w]);
        let wt = b.konst(&[f, c / gr, k, k]);
        let bias = b.konst(&[f]);
        let conv = Conv {
            strides: vec![s, s],
            pads: vec![p, p, p, p],
            dilations: vec![1, 1],
            group: gr,
        };
        let y = b.op(conv, &[x, wt, bias]);
        let y = b.op(
            Unary {
                kind: UnaryKind::Relu,
            },
            &[y],
        );
        check(b.finish(&[y]), 1e-4);
    }
}

#[test]
fn norms_and_reductions() {
    for (i, shape) in [vec![1, 1], vec![3, 7], vec![2, 5, 33], vec![4, 1, 768]]
        .into_iter()
        .enumerate()
    {
        let last = shape.len() - 1;
        let mut b = B::new(20 + i as u64);
        let x = b.input(&shape);
        let gamma = b.konst(&[shape[last]]);
        let beta = b.konst(&[shape[last]]);
        let ln = LayerNorm {
            axis: last,
            epsilon: 1e-5,
            stash: DType::F32,
        };
        let y = b.op(ln, &[x, gamma, beta]);
        let sm = b.op(
            Softmax {
                axis: last,
                log: false,
            },
            &[x],
        );
        let lsm = b.op(
            Softmax {
                axis: last,
                log: true,
            },
            &[x],
        );
        let r = b.op(
            Reduce {
                kind: ReduceKind::Sum,
                axes: vec![0],
                keepdims: false,
            },
            &[x],
        );
        let mx = b.op(
            Reduce {
                kind: ReduceKind::Max,
                axes: vec![last],
                keepdims: true,
            },
            &[x],
        );
        check(b.finish(&[y, sm, lsm, r, mx]), 1e-4);
    }
}

#[test]
fn elementwise_math_and_broadcasting() {
    let mut b = B::new(30);
    let x = b.input(&[3, 1, 37]);
    let y = b.input(&[1, 5, 37]);
    let big = b.splat(&[1], 40.0);
    let xs = b.op(
        Binary {
            kind: BinaryKind::Mul,
        },
        &[x, big],
    );
    let mut outs = Vec::new();
    for kind in [
        UnaryKind::Exp,
        UnaryKind::Tanh,
        UnaryKind::Erf,
        UnaryKind::Sigmoid,
        UnaryKind::Abs,
        UnaryKind::Floor,
        UnaryKind::Silu,
        UnaryKind::Gelu { tanh: true },
    ] {
        outs.push(b.op(Unary { kind }, &[xs]));
        outs.push(b.op(Unary { kind }, &[x]));
    }
    let s = b.op(
        Binary {
            kind: BinaryKind::Sub,
        },
        &[x, y],
    );
    let d = b.op(
        Binary {
            kind: BinaryKind::Div,
        },
        &[x, y],
    );
    let mx = b.op(
        Binary {
            kind: BinaryKind::Max,
        },
        &[x, y],
    );
    let lt = b.op(
        Binary {
            kind: BinaryKind::Less,
        },
        &[x, y],
    );
    let wh = b.op(Where, &[lt, s, d]);
    let ci = b.op(Cast { to: DType::I32 }, &[xs]);
    let cf = b.op(Cast { to: DType::F32 }, &[ci]);
    outs.extend([mx, wh, cf]);
    check(b.finish(&outs), 1e-4);
}

#[test]
fn pools_and_layout() {
    let mut b = B::new(40);
    let x = b.input(&[2, 3, 9, 7]);
    let pool = |kind| Pool {
        kind,
        kernel: vec![3, 2],
        strides: vec![2, 2],
        pads: vec![1, 0, 1, 1],
        dilations: vec![1, 1],
        ceil_mode: false,
        count_include_pad: false,
    };
    let mp = b.op(pool(PoolKind::Max), &[x]);
    let ap = b.op(pool(PoolKind::Avg), &[x]);
    let t = b.op(
        Transpose {
            perm: vec![0, 2, 3, 1],
        },
        &[x],
    );
    let sl = b.op(
        Slice {
            starts: vec![0, 0, 1, 5],
            ends: vec![2, 3, 8, 0],
            steps: vec![1, 1, 2, -1],
        },
        &[x],
    );
    let c = b.op(Concat { axis: 1 }, &[x, x]);
    check(b.finish(&[mp, ap, t, sl, c]), 1e-5);
}

#[test]
fn attention_causal_and_not() {
    for (i, &(bh, sq, sk, d, causal)) in [
        (2, 5, 5, 8, true),
        (3, 7, 11, 16, false),
        (1, 1, 1, 4, true),
        // Key-tiled on the GPU: queries not a multiple of the block, keys
        // not a multiple of the tile, one block of queries.
        (2, 70, 70, 64, true),
        (1, 33, 100, 24, false),
        (3, 64, 40, 8, true),
        (2, 40, 100, 32, true),
    ]
    .iter()
    .enumerate()
    {
        let mut b = B::new(50 + i as u64);
        let q = b.input(&[bh, sq, d]);
        let k = b.input(&[bh, sk, d]);
        let v = b.input(&[bh, sk, d]);
        let a = Attention {
            scale: 1.0 / (d as f64).sqrt(),
            causal,
        };
        let y = b.op(a, &[q, k, v]);
        check(b.finish(&[y]), 1e-4);
    }
}
