//! The GPU backend without a GPU: the example models mapped to GPU kernels
//! run on the CPU (`gpu-sim`) and match the interpreter; their PTX, for
//! sm_80 and sm_90 (and hand-written kernels for every architecture), is
//! assembled by ptxas (from the project venv's `nvidia-cuda-nvcc`, which
//! scripts/setup installs), whose `-v` report must show no spills.
//!
//! On a machine with an NVIDIA GPU, `cargo test --test gpu -- --ignored`
//! (scripts/gpu-check) runs the same models and awkward matrix products and
//! attention on the GPU itself (`cuda`) against the interpreter.

#[path = "../passes/tests/common/mod.rs"]
mod common;

use common::max_rel;
#[path = "ptxas/mod.rs"]
mod ptxas;

use kiln::{Bindings, Model};
use kiln_backends::{ptx, GpuSimBackend};
use kiln_ir::kernel::Kernel;
use kiln_ir::{interp, Tensor};
use kiln_passes::lower::Step;
use ptxas::assemble;
use std::path::Path;

/// A block-wide tree sum in shared memory (barriers between the steps) and
/// a tiled reversal (barriers inside a loop).
fn hand_written() -> Vec<Kernel> {
    let mut sum = String::from(
        "kernel \"block_sum\"(%x: in f32[300], %y: out f32[3], %s: shared f32[128]) {\n\
         let $v: f32 = f32:0.0\n\
         if (lt threadIdx.x 100) {\n\
           $v = %x[(add (mul blockIdx.x 100) threadIdx.x)]\n\
         }\n\
         %s[threadIdx.x] = $v\n\
         barrier\n",
    );
    for half in [64, 32, 16, 8, 4, 2, 1] {
        sum += &format!(
            "if (lt threadIdx.x {half}) {{\n\
               %s[threadIdx.x] = (add %s[threadIdx.x] %s[(add threadIdx.x {half})])\n\
             }}\n\
             barrier\n"
        );
    }
    sum += "if (eq threadIdx.x 0) {\n  %y[blockIdx.x] = %s[0]\n}\n\
            }\nschedule {\n  launch grid 3 1 1 block 128 1 1\n}\n";
    let rev = "kernel \"tile_reverse\"(%x: in f32[96], %o: out f32[96], %s: shared f32[32]) {\n\
         for t in 0..3 {\n\
           %s[threadIdx.x] = (tanh %x[(add (mul t 32) threadIdx.x)])\n\
           barrier\n\
           %o[(add (mul t 32) threadIdx.x)] = %s[(sub 31 threadIdx.x)]\n\
           barrier\n\
         }\n\
         }\nschedule {\n  launch grid 1 1 1 block 32 1 1\n}\n";
    let mut warp = String::from(
        "kernel \"warp_sum\"(%x: in f32[64], %n: in i32[64], %y: out f32[2], %c: out i32[2]) {\n\
         let $v: f32 = %x[(add (mul blockIdx.x 32) threadIdx.x)]\n\
         let $k: i32 = %n[(add (mul blockIdx.x 32) threadIdx.x)]\n\
         let $o: f32 = f32:0.0\n\
         let $p: i32 = i32:0\n",
    );
    for xor in [16, 8, 4, 2, 1] {
        warp += &format!(
            "shfl $o = $v xor {xor}\n$v = (add $v $o)\nshfl $p = $k xor {xor}\n$k = (max $k $p)\n"
        );
    }
    warp += "if (eq threadIdx.x 0) {\n  %y[blockIdx.x] = $v\n  %c[blockIdx.x] = $k\n}\n\
             }\nschedule {\n  launch grid 2 1 1 block 32 1 1\n}\n";
    let kn = "kernel \"async_kn\"(%x: in bf16[16, 16], %y: in bf16[16, 8], %o: out f32[16, 8], %a: shared bf16[16, 16], %b: shared bf16[16, 8]) {\n\
         cp.async 8 %a[(div threadIdx.x 2), (mul (rem threadIdx.x 2) 8)] = %x[(div threadIdx.x 2), (mul (rem threadIdx.x 2) 8)] if (lt threadIdx.x 31)\n\
         if (lt threadIdx.x 16) {\n\
           cp.async 8 %b[threadIdx.x, 0] = %y[threadIdx.x, 0] if (eq 0 0)\n\
         }\n\
         cp.async.commit\ncp.async.wait 0\nbarrier\n\
         let $c0: f32 = f32:0.0\nlet $c1: f32 = f32:0.0\nlet $c2: f32 = f32:0.0\nlet $c3: f32 = f32:0.0\n\
         mma.kn $c0 $c1 $c2 $c3 += %a[0, 0] %b[0, 0]\n\
         %o[(div threadIdx.x 4), (mul (rem threadIdx.x 4) 2)] = (add (add $c0 $c1) (add $c2 $c3))\n\
         }\nschedule {\n  launch grid 1 1 1 block 32 1 1\n}\n";
    [sum.as_str(), rev, &warp, kn]
        .iter()
        .map(|t| Kernel::parse(t).unwrap_or_else(|e| panic!("{e}\n{t}")))
        .collect()
}

#[test]
fn hand_written_kernels_assemble_for_every_arch_without_spills() {
    let ks = hand_written();
    let refs: Vec<&Kernel> = ks.iter().collect();
    for arch in ptx::ARCHS {
        let spec = ptx::arch(arch).unwrap();
        let text = ptx::ptx(&refs, &spec).unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert!(text.contains(&format!(".target {arch}")), "{text}");
        assert!(text.contains("bar.sync"), "{arch}: no barrier in\n{text}");
        assert!(
            text.contains(".shared"),
            "{arch}: no shared memory in\n{text}"
        );
        let shuffles = text.matches("shfl.sync.bfly.b32").count();
        assert_eq!(shuffles, 10, "{arch}: f32 and i32 shuffles in\n{text}");
        let reports = assemble("hand_written", &text, arch);
        let names: Vec<&str> = reports.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(names.len(), 4, "{arch}: ptxas reported {names:?}");
        for want in [
            "cp.async.cg.shared.global",
            "cp.async.wait_group",
            "mma.sync",
        ] {
            assert!(text.contains(want), "{arch}: no {want}");
        }
        for (k, r) in &reports {
            assert_eq!(r.spill_bytes, 0, "{arch}: {k} spills: {r:?}");
            assert!(r.registers > 0, "{arch}: {k}: no register count: {r:?}");
        }
    }
}

/// The warp sum's shuffles (f32 sum, i32 max) as the simulation runs them.
#[test]
fn warp_shuffles_reduce_each_warp() {
    let k = &hand_written()[2];
    let x: Vec<f64> = (0..64).map(|i| ((i * 7 % 19) as f64) - 9.0).collect();
    let n: Vec<f64> = (0..64).map(|i| ((i * 11 % 61) as f64) - 30.0).collect();
    let mut bufs = vec![x.clone(), n.clone(), vec![0.0; 2], vec![0.0; 2]];
    k.eval(&mut bufs).unwrap();
    for (w, (xs, ns)) in x.chunks(32).zip(n.chunks(32)).enumerate() {
        assert_eq!(bufs[2][w], xs.iter().sum::<f64>(), "warp {w}");
        assert_eq!(bufs[3][w], ns.iter().cloned().fold(f64::MIN, f64::max));
    }
}

#[test]
fn unknown_arch_is_refused_by_name() {
    let e = ptx::arch("sm_75").unwrap_err();
    assert!(e.contains("sm_75") && e.contains("sm_90a"), "{e}");
}

/// An example model (batch bound), optimized for the CPU cost model.
fn load(name: &str, batch: usize) -> (Model, kiln_ir::Graph) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(format!("{name}.onnx"));
    let mut b = Bindings::default();
    b.dims.insert("batch".into(), batch);
    let mut m = Model::load(&p, &b).unwrap_or_else(|e| panic!("{name}: {e}"));
    let before = m.graph.clone();
    m.optimize(&kiln_ir::Target::cpu_default()).unwrap();
    (m, before)
}

const MODELS: [(&str, usize); 5] = [
    ("small_cnn", 3),
    ("mlp", 2),
    ("gpt2_block", 1),
    ("resnet_block", 1),
    ("gpt2_4layers", 1),
];

#[test]
fn models_on_gpu_sim_match_the_interpreter() {
    for (name, batch) in MODELS {
        let (m, before) = load(name, batch);
        let ins = m.random_inputs(7);
        let want = interp::run(&before, &ins).unwrap();
        let exe = GpuSimBackend {
            threads: 2,
            arch: "sm_90",
        }
        .executor(&m.graph)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        for s in &exe.program().steps {
            if let Step::Host {
                name: n, reason, ..
            } = s
            {
                panic!("{name}: {n} ran on the host: {reason}");
            }
        }
        let ordered: Vec<&Tensor> = m
            .graph
            .inputs
            .iter()
            .map(|v| &ins[&m.graph.value(*v).name])
            .collect();
        let got = exe.run(&ordered).unwrap();
        for (w, o) in want.iter().zip(&got) {
            let e = max_rel(w, o);
            assert!(e <= 1e-4, "{name} on gpu-sim: error {e}");
        }
    }
}

#[test]
fn models_compile_to_ptx_that_ptxas_accepts() {
    for (name, batch) in MODELS {
        let (m, _) = load(name, batch);
        let p = GpuSimBackend {
            threads: 1,
            arch: "sm_90",
        }
        .gpu_program(&m.graph)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let kernels: Vec<&Kernel> = p.kernels().collect();
        assert!(!kernels.is_empty());
        for arch in ["sm_80", "sm_90"] {
            let text = ptx::program_ptx(&p, &ptx::arch(arch).unwrap())
                .unwrap_or_else(|e| panic!("{name} {arch}: {e}"));
            let reports = assemble(name, &text, arch);
            assert_eq!(reports.len(), kernels.len(), "{name} {arch}: {reports:?}");
            for (k, r) in &reports {
                assert_eq!(r.spill_bytes, 0, "{name} {arch}: {k} spills: {r:?}");
            }
        }
    }
}

/// bf16 and f16 matrix products (awkward sizes, a batch) run on tensor
/// cores: the PTX holds `mma.sync` for sm_80 and sm_90 and ptxas takes it
/// without spills, and gpu-sim's results match the interpreter to
/// half-precision rounding.
#[test]
fn half_matmul_runs_on_tensor_cores() {
    use common::{random_inputs, B};
    use kiln_ir::op::MatMul;
    use kiln_ir::DType;
    // K and N multiples of 8 take the cp.async pipeline (edges zero-filled:
    // M 70, K 40 half a stage); the others load synchronously.
    let shapes = [
        (1, 16, 16, 8),
        (1, 40, 72, 24),
        (1, 65, 33, 130),
        (3, 7, 20, 9),
        (2, 70, 40, 136),
        (1, 257, 296, 136),
    ];
    for (dt, name) in [(DType::BF16, "bf16"), (DType::F16, "f16")] {
        for (i, &(batch, m, k, n)) in shapes.iter().enumerate() {
            let mut b = B::new(i as u64);
            let x = b.input_of(dt, &[batch, m, k]);
            let w = b.input_of(dt, &[batch, k, n]);
            let mm = MatMul {
                trans_a: false,
                trans_b: false,
            };
            let y = b.op(mm, &[x, w]);
            let g = b.finish(&[y]);
            let sim = GpuSimBackend {
                threads: 2,
                arch: "sm_90",
            };
            let p = sim.gpu_program(&g).unwrap();
            let kernels: Vec<&Kernel> = p.kernels().collect();
            assert_eq!(kernels.len(), 1, "{g}");
            let text = kernels[0].to_string();
            assert!(
                text.contains("mma $") || text.contains("mma.kn $"),
                "{name}: not on tensor cores:\n{text}"
            );
            let pipelined = k % 8 == 0 && n % 8 == 0;
            assert_eq!(
                text.contains("cp.async 8 "),
                pipelined,
                "{name} {m}x{k}x{n}:\n{text}"
            );
            let want_mma = format!("mma.sync.aligned.m16n8k16.row.col.f32.{name}.{name}.f32");
            for arch in ["sm_80", "sm_90"] {
                let ptx = ptx::ptx(&kernels, &ptx::arch(arch).unwrap()).unwrap();
                assert!(ptx.contains(&want_mma), "{name} {arch}: no {want_mma}");
                for want in ["cp.async.cg.shared.global", "cp.async.wait_group"] {
                    assert_eq!(ptx.contains(want), pipelined, "{name} {arch}: {want}");
                }
                for (kn, r) in assemble(&format!("{name}_mm{i}"), &ptx, arch) {
                    assert_eq!(r.spill_bytes, 0, "{arch}: {kn} spills: {r:?}");
                }
            }
            let ins = random_inputs(&g, 3);
            let want = interp::run(&g, &ins).unwrap();
            let exe = sim.executor(&g).unwrap();
            let ordered: Vec<&Tensor> = g.inputs.iter().map(|v| &ins[&g.value(*v).name]).collect();
            let got = exe.run(&ordered).unwrap();
            let e = max_rel(&want[0], &got[0]);
            assert!(e <= 1e-2, "{name} {batch}x{m}x{k}x{n}: error {e}");
        }
    }
}

/// NVPTX has no libm: log is emitted through lg2 (LogSoftmax assembles),
/// and pow is refused by name instead of aborting inside LLVM.
#[test]
fn gpu_math_without_libm() {
    use common::B;
    use kiln_ir::op::{Binary, BinaryKind, Softmax};
    let sim = GpuSimBackend {
        threads: 1,
        arch: "sm_90",
    };
    let mut b = B::new(9);
    let x = b.input(&[3, 40]);
    let y = b.op(Softmax { axis: 1, log: true }, &[x]);
    let p = sim.gpu_program(&b.finish(&[y])).unwrap();
    let text = ptx::program_ptx(&p, &ptx::arch("sm_80").unwrap()).unwrap();
    assert!(text.contains("lg2.approx"), "{text}");
    assemble("log_softmax", &text, "sm_80");
    let mut b = B::new(10);
    let x = b.input(&[3, 40]);
    let e = b.input(&[3, 40]);
    let y = b.op(
        Binary {
            kind: BinaryKind::Pow,
        },
        &[x, e],
    );
    let p = sim.gpu_program(&b.finish(&[y])).unwrap();
    let err = ptx::program_ptx(&p, &ptx::arch("sm_90").unwrap()).unwrap_err();
    assert!(err.contains("pow is not emitted for the GPU"), "{err}");
}

/// The inputs of `g` in its input order.
fn ordered<'a>(
    g: &kiln_ir::Graph,
    ins: &'a std::collections::HashMap<String, Tensor>,
) -> Vec<&'a Tensor> {
    g.inputs.iter().map(|v| &ins[&g.value(*v).name]).collect()
}

#[test]
#[ignore = "needs an NVIDIA GPU and its driver: scripts/gpu-check runs it"]
fn models_on_cuda_match_the_interpreter() {
    for (name, batch) in MODELS {
        let (m, before) = load(name, batch);
        let ins = m.random_inputs(7);
        let want = interp::run(&before, &ins).unwrap();
        let exe = kiln_backends::CudaBackend { arch: None }
            .executable(&m.graph)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = exe.run_ordered(&ordered(&m.graph, &ins)).unwrap();
        for (w, o) in want.iter().zip(&got) {
            let e = max_rel(w, o);
            println!("{name} on cuda: max relative error {e:.2e}");
            assert!(e <= 1e-4, "{name} on cuda: error {e}");
        }
    }
}

/// Matrix products (tensor cores for bf16 and f16, SIMT for f32) and
/// attention (causal and not) at sizes that are not multiples of the tiles.
#[test]
#[ignore = "needs an NVIDIA GPU and its driver: scripts/gpu-check runs it"]
fn awkward_kernels_on_cuda_match_the_interpreter() {
    use common::{random_inputs, B};
    use kiln_ir::op::{Attention, MatMul};
    use kiln_ir::DType;
    let cuda = kiln_backends::CudaBackend { arch: None };
    let check = |g: kiln_ir::Graph, tol: f64, what: &str| {
        let ins = random_inputs(&g, 5);
        let want = interp::run(&g, &ins).unwrap();
        let exe = cuda
            .executable(&g)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let got = exe.run_ordered(&ordered(&g, &ins)).unwrap();
        let e = max_rel(&want[0], &got[0]);
        assert!(e <= tol, "{what} on cuda: error {e}");
    };
    for (dt, tol) in [(DType::BF16, 1e-2), (DType::F16, 1e-2), (DType::F32, 1e-4)] {
        for (i, &(batch, m, k, n)) in [
            (1, 16, 16, 8),
            (1, 65, 33, 130),
            (3, 7, 20, 9),
            (1, 257, 300, 129),
            // cp.async pipeline: several K stages, edges in M, K and N.
            (2, 70, 40, 136),
            (1, 257, 296, 136),
        ]
        .iter()
        .enumerate()
        {
            let mut b = B::new(i as u64);
            let x = b.input_of(dt, &[batch, m, k]);
            let w = b.input_of(dt, &[batch, k, n]);
            let mm = MatMul {
                trans_a: false,
                trans_b: false,
            };
            let y = b.op(mm, &[x, w]);
            check(
                b.finish(&[y]),
                tol,
                &format!("{dt} matmul {batch}x{m}x{k}x{n}"),
            );
        }
    }
    for (i, &(bh, sq, sk, d, causal)) in [
        (2, 70, 70, 64, true),
        (1, 33, 100, 24, false),
        (3, 5, 5, 8, true),
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
        check(
            b.finish(&[y]),
            1e-4,
            &format!("attention {bh}x{sq}x{sk}x{d}"),
        );
    }
}
