//! Snapshots of every emitted form for typical kernels (matmul + bias +
//! GELU, LayerNorm, Softmax, attention, a fused elementwise chain): the
//! kernel IR text, which must also parse back to the same kernel, the LLVM
//! IR the cpu-llvm backend emits for portable x86-64 (AVX2 + FMA) before
//! optimization, and the GPU mapping: its kernel IR and its PTX for sm_90
//! (ptxas must take it for sm_80 and sm_90 without spills).

#[path = "../passes/tests/common/mod.rs"]
mod common;
#[path = "ptxas/mod.rs"]
mod ptxas;

use common::B;
use kiln_backends::llvm::{kernel_text, CpuSpec};
use kiln_backends::ptx;
use kiln_ir::kernel::Kernel;
use kiln_ir::op::*;
use kiln_ir::{DType, Graph};
use kiln_passes::lower::{lower, LowerOptions};

fn kernels(g: Graph) -> Vec<Kernel> {
    lower(&optimized(g), &LowerOptions::avx2(1))
        .kernels()
        .cloned()
        .collect()
}

fn optimized(g: Graph) -> Graph {
    kiln_passes::optimize(&g, &kiln_ir::Target::cpu_default(), &Default::default())
        .unwrap()
        .graph
}

/// The graph's one kernel mapped to the GPU: its text (which must parse
/// back) and its PTX for sm_90.
fn snap_gpu(name: &str, g: Graph) {
    let p = kiln_passes::gpu::map_program(&lower(&optimized(g), &LowerOptions::gpu())).unwrap();
    let ks: Vec<&Kernel> = p.kernels().collect();
    assert_eq!(ks.len(), 1, "{name}: expected one fused GPU kernel");
    let text = ks[0].to_string();
    let back = Kernel::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
    assert_eq!(
        &back, ks[0],
        "{name}: the GPU kernel's text does not round-trip"
    );
    insta::assert_snapshot!(format!("{name}_gpu_kernel_ir"), text);
    let ptx = ptx::ptx(&ks, &ptx::arch("sm_90").unwrap()).unwrap();
    insta::assert_snapshot!(format!("{name}_ptx_sm90"), ptx.clone());
    // The canonical kernels must not spill, on either architecture.
    for arch in ["sm_80", "sm_90"] {
        let text = ptx::ptx(&ks, &ptx::arch(arch).unwrap()).unwrap();
        for (k, r) in ptxas::assemble(name, &text, arch) {
            assert_eq!(r.spill_bytes, 0, "{name} {arch}: {k} spills: {r:?}");
        }
    }
}

fn snap(name: &str, g: Graph) {
    snap_gpu(name, g.clone());
    let ks = kernels(g);
    assert_eq!(ks.len(), 1, "{name}: expected one fused kernel");
    let k = &ks[0];
    let text = k.to_string();
    let back = Kernel::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
    assert_eq!(&back, k, "{name}: the text form does not round-trip");
    insta::assert_snapshot!(format!("{name}_kernel_ir"), text);
    let ll = kernel_text(k, &CpuSpec::x86_64_v3()).unwrap();
    insta::assert_snapshot!(format!("{name}_llvm"), ll);
}

#[test]
fn matmul_bias_gelu() {
    let mut b = B::new(1);
    let x = b.input(&[8, 16]);
    let w = b.konst(&[16, 20]);
    let bias = b.konst(&[20]);
    let mm = MatMul {
        trans_a: false,
        trans_b: false,
    };
    let y = b.op(mm, &[x, w]);
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
    snap("matmul_bias_gelu", b.finish(&[y]));
}

/// A packed four times over is the Cranelift tile's layout; the LLVM
/// backend says so instead of reading it as one copy.
#[test]
fn llvm_refuses_a_lanes() {
    let mut b = B::new(1);
    let x = b.input(&[8, 16]);
    let w = b.konst(&[16, 20]);
    let mm = MatMul {
        trans_a: false,
        trans_b: false,
    };
    let y = b.op(mm, &[x, w]);
    let mut k = kernels(b.finish(&[y])).remove(0);
    let g = k.schedule.gemm.as_mut().expect("a matrix product");
    g.a_lanes = 4;
    let err = kernel_text(&k, &CpuSpec::x86_64_v3()).unwrap_err();
    assert!(err.contains("a_lanes 4"), "{err}");
}

#[test]
fn layer_norm() {
    let mut b = B::new(2);
    let x = b.input(&[4, 24]);
    let g = b.konst(&[24]);
    let be = b.konst(&[24]);
    let ln = LayerNorm {
        axis: 1,
        epsilon: 1e-5,
        stash: DType::F32,
    };
    let y = b.op(ln, &[x, g, be]);
    snap("layer_norm", b.finish(&[y]));
}

#[test]
fn softmax() {
    let mut b = B::new(3);
    let x = b.input(&[4, 24]);
    let y = b.op(
        Softmax {
            axis: 1,
            log: false,
        },
        &[x],
    );
    snap("softmax", b.finish(&[y]));
}

#[test]
fn attention() {
    let mut b = B::new(4);
    let q = b.input(&[2, 6, 8]);
    let k = b.input(&[2, 6, 8]);
    let v = b.input(&[2, 6, 8]);
    let a = Attention {
        scale: 0.125,
        causal: true,
    };
    let y = b.op(a, &[q, k, v]);
    snap("attention", b.finish(&[y]));
}

/// Flash attention on the GPU: K and V tiles staged in shared memory, the
/// online softmax per query thread; 40 queries (two blocks of 32, the last
/// partly idle) and 80 keys (a full tile of 64 and a partial one).
#[test]
fn attention_tiled() {
    let mut b = B::new(4);
    let q = b.input(&[2, 40, 16]);
    let k = b.input(&[2, 80, 16]);
    let v = b.input(&[2, 80, 16]);
    let a = Attention {
        scale: 0.25,
        causal: false,
    };
    let y = b.op(a, &[q, k, v]);
    let g = b.finish(&[y]);
    let p =
        kiln_passes::gpu::map_program(&lower(&optimized(g.clone()), &LowerOptions::gpu())).unwrap();
    let text = p.kernels().next().unwrap().to_string();
    for want in [
        "%in1_tile: shared f32[64, 16]",
        "%in2_tile: shared f32[64, 16]",
        "barrier",
    ] {
        assert!(text.contains(want), "no '{want}' in\n{text}");
    }
    snap_gpu("attention_tiled", g);
}

#[test]
fn fused_elementwise() {
    let mut b = B::new(5);
    let x = b.input(&[3, 50]);
    let y = b.input(&[50]);
    let s = b.op(
        Binary {
            kind: BinaryKind::Mul,
        },
        &[x, y],
    );
    let t = b.op(
        Unary {
            kind: UnaryKind::Tanh,
        },
        &[s],
    );
    let u = b.op(
        Binary {
            kind: BinaryKind::Add,
        },
        &[t, x],
    );
    snap("fused_elementwise", b.finish(&[u]));
}

/// A bf16 matrix product: on the GPU, a tensor-core (`mma.sync`) kernel.
#[test]
fn bf16_matmul_mma() {
    let mut b = B::new(6);
    let x = b.input_of(DType::BF16, &[40, 72]);
    let w = b.input_of(DType::BF16, &[72, 24]);
    let mm = MatMul {
        trans_a: false,
        trans_b: false,
    };
    let y = b.op(mm, &[x, w]);
    snap_gpu("bf16_matmul_mma", b.finish(&[y]));
}

/// LayerNorm over rows long enough to share: on the GPU one block per row,
/// sums combined in shared memory.
#[test]
fn layer_norm_rows() {
    let mut b = B::new(7);
    let x = b.input(&[4, 96]);
    let g = b.konst(&[96]);
    let be = b.konst(&[96]);
    let ln = LayerNorm {
        axis: 1,
        epsilon: 1e-5,
        stash: DType::F32,
    };
    let y = b.op(ln, &[x, g, be]);
    snap_gpu("layer_norm_rows", b.finish(&[y]));
}
