//! Robustness: truncated and mutated encodings of a real model, and random bytes,
//! must give an `Ok` or an `Err` from decoding, importing and interpreting, never a
//! panic.

use kiln_frontend::{decode_model, import_model, Bindings};
use kiln_ir::{interp, Tensor};
use std::path::Path;

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn seed_models() -> Vec<Vec<u8>> {
    // The conformance cases give many real encodings; fall back to a fixed few.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/onnx-node");
    let picks = [
        "test_conv_with_strides_padding",
        "test_resize_upsample_sizes_nearest",
        "test_slice_neg_steps",
        "test_layer_normalization_4d_axis1",
        "test_gemm_all_attributes",
        "test_reshape_negative_dim",
        "test_split_variable_parts_1d_opset18",
        "test_softmax_example_expanded",
    ];
    let v: Vec<Vec<u8>> = picks
        .iter()
        .filter_map(|p| std::fs::read(root.join(p).join("model.onnx")).ok())
        .collect();
    assert!(
        !v.is_empty(),
        "run scripts/setup to materialize the ONNX node tests in {}",
        root.display()
    );
    v
}

/// Returns true when the bytes imported (so the fuzzer reached the importer).
fn try_import(bytes: &[u8]) -> bool {
    if let Ok(m) = decode_model(bytes, Path::new("fuzz.onnx")) {
        let mut b = Bindings::default();
        for d in ["N", "batch", "seq"] {
            b.dims.insert(d.into(), 2);
        }
        if let Ok(imp) = import_model(&m, None, &b) {
            // What imports must also run (or fail cleanly) on the interpreter.
            let g = &imp.graph;
            if g.inputs.iter().all(|&i| g.value(i).ty.numel() <= 1 << 16) {
                let inputs = g
                    .inputs
                    .iter()
                    .map(|&i| {
                        let t = &g.value(i).ty;
                        (
                            g.value(i).name.clone(),
                            Tensor::from_f64(t.dtype, t.shape.clone(), &vec![0.5; t.numel()]),
                        )
                    })
                    .collect();
                let _ = interp::run(g, &inputs);
            }
            return true;
        }
    }
    false
}

#[test]
fn truncated_models_never_panic() {
    for bytes in seed_models() {
        for cut in 0..bytes.len() {
            let _ = try_import(&bytes[..cut]);
        }
    }
}

#[test]
fn mutated_models_never_panic() {
    let mut rng = Rng(7);
    let mut imported = 0;
    for bytes in seed_models() {
        for _ in 0..3000 {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.next() % 4 {
                let i = (rng.next() % b.len() as u64) as usize;
                b[i] = match rng.next() % 3 {
                    0 => rng.next() as u8,
                    1 => b[i] ^ (1 << (rng.next() % 8)),
                    _ => [0, 1, 0x7f, 0x80, 0xff][(rng.next() % 5) as usize],
                };
            }
            imported += try_import(&b) as usize;
        }
    }
    // Most single-byte mutations still decode: the importer itself was exercised.
    assert!(imported > 500, "only {imported} mutated models imported");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(11);
    for len in [0usize, 1, 2, 7, 64, 1000, 5000] {
        for _ in 0..300 {
            let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = try_import(&b);
        }
    }
}
