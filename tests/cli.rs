//! The `kiln` command line on the example models (built by `scripts/models`):
//! inspect's JSON contract, run's files and determinism, print's text form
//! (snapshot), and clear failures for bad input.

use kiln::npy;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn models() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    assert!(
        d.join("small_cnn.onnx").is_file(),
        "run scripts/models to build the example models in {}",
        d.display()
    );
    d
}

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("kiln runs")
}

fn ok(args: &[&str]) -> String {
    let o = kiln(args);
    assert!(
        o.status.success(),
        "kiln {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let o = kiln(args);
    assert!(!o.status.success(), "kiln {args:?} should fail");
    String::from_utf8(o.stderr).unwrap()
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn inspect_json_has_the_contract_keys() {
    let m = models().join("small_cnn.onnx");
    let out = ok(&["inspect", m.to_str().unwrap(), "--dim", "batch=2", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for k in [
        "inputs",
        "outputs",
        "op_histogram",
        "ops",
        "params",
        "param_bytes",
        "flops",
    ] {
        assert!(v.get(k).is_some(), "missing key {k} in {v}");
    }
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!([2, 3, 32, 32]));
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!([2, 10]));
    // Shape arithmetic (Shape/Gather/Concat/Slice) was folded away.
    let hist = v["op_histogram"].as_object().unwrap();
    assert!(
        !hist.contains_key("gather") && hist["conv"] == 2,
        "{hist:?}"
    );
    assert_eq!(
        v["param_bytes"].as_u64().unwrap(),
        4 * v["params"].as_u64().unwrap()
    );
    let text = ok(&["inspect", m.to_str().unwrap(), "--shape", "input=1x3x32x32"]);
    assert!(
        text.contains("input: f32[1, 3, 32, 32]") && text.contains("flops:"),
        "{text}"
    );
}

#[test]
fn run_writes_named_npy_files_deterministically() {
    let m = models().join("small_cnn.onnx");
    let (a, b, c) = (tmp("run-a"), tmp("run-b"), tmp("run-c"));
    let m = m.to_str().unwrap();
    let line = ok(&[
        "run",
        m,
        "--dim",
        "batch=3",
        "--seed",
        "5",
        "--out-dir",
        a.to_str().unwrap(),
    ]);
    assert!(
        line.contains("f32[3, 10]") && line.contains("min=") && line.contains("mean="),
        "{line}"
    );
    ok(&[
        "run",
        m,
        "--dim",
        "batch=3",
        "--seed",
        "5",
        "--out-dir",
        b.to_str().unwrap(),
    ]);
    ok(&[
        "run",
        m,
        "--dim",
        "batch=3",
        "--seed",
        "6",
        "--out-dir",
        c.to_str().unwrap(),
    ]);
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("outputs.json")).unwrap()).unwrap();
    let (name, file) = index.as_object().unwrap().iter().next().unwrap();
    let file = file.as_str().unwrap();
    assert!(
        file.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
        "{name} -> {file}"
    );
    let read = |d: &Path| std::fs::read(d.join(file)).unwrap();
    assert_eq!(read(&a), read(&b), "same seed, same bytes");
    assert_ne!(read(&a), read(&c), "another seed, other inputs");
    let probs = npy::read(&a.join(file), None).unwrap();
    assert_eq!(probs.shape(), &[3, 10]);
    for row in probs.to_f64_vec().chunks(10) {
        assert!(
            (row.iter().sum::<f64>() - 1.0).abs() < 1e-5,
            "softmax rows sum to 1"
        );
    }
    // Without --out-dir nothing is written.
    let none = tmp("run-none");
    std::fs::create_dir_all(&none).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(&none)
        .args(["run", m, "--dim", "batch=1"])
        .output()
        .unwrap();
    assert_eq!(std::fs::read_dir(&none).unwrap().count(), 0);
}

#[test]
fn run_uses_given_inputs() {
    let m = models().join("resnet_block.onnx");
    let dir = tmp("inputs");
    std::fs::create_dir_all(&dir).unwrap();
    // A zero input: conv+bn of zero is the folded bias, and the block ends in relu.
    let x = kiln::ir::Tensor::from_f64(
        kiln::ir::DType::F32,
        vec![1, 64, 56, 56],
        &vec![0.0; 64 * 56 * 56],
    );
    std::fs::write(dir.join("x.npy"), npy::encode(&x)).unwrap();
    let arg = format!("x={}", dir.join("x.npy").display());
    let out = ok(&[
        "run",
        m.to_str().unwrap(),
        "--input",
        &arg,
        "--out-dir",
        dir.join("o").to_str().unwrap(),
    ]);
    assert!(
        out.contains("f32[1, 64, 56, 56]") && out.contains("min=0.000000"),
        "{out}"
    );
    let bad = format!("nope={}", dir.join("x.npy").display());
    assert!(fails(&["run", m.to_str().unwrap(), "--input", &bad])
        .contains("--input names 'nope', which is not an input"));
}

#[test]
fn bad_invocations_fail_with_clear_messages() {
    let m = models().join("small_cnn.onnx");
    let m = m.to_str().unwrap();
    assert!(fails(&["inspect", m]).contains("--dim batch=N"));
    assert!(
        fails(&["run", m, "--dim", "batch=1", "--target", "tpu"]).contains("unknown target 'tpu'")
    );
    // The cuda target loads the driver at run time: without one it says so.
    let cuda = kiln(&["run", m, "--dim", "batch=1", "--target", "cuda"]);
    if !cuda.status.success() {
        let e = String::from_utf8_lossy(&cuda.stderr);
        assert!(
            e.contains("no NVIDIA driver found") || e.contains("no usable NVIDIA GPU"),
            "{e}"
        );
    }
    assert!(fails(&["inspect", m, "--shape", "input=1xAx3"]).contains("numbers joined by 'x'"));
    assert!(fails(&["inspect", "/nonexistent/model.onnx"])
        .contains("cannot read '/nonexistent/model.onnx'"));
    for verb in ["inspect", "run", "print"] {
        let help = ok(&[verb, "--help"]);
        assert!(help.contains("Example:"), "{verb} --help lacks an example");
    }
}

#[test]
fn print_small_cnn_snapshot() {
    let m = models().join("small_cnn.onnx");
    let text = ok(&["print", m.to_str().unwrap(), "--dim", "batch=1"]);
    insta::assert_snapshot!(text);
    // The full form parses back to the same graph.
    let full = ok(&["print", m.to_str().unwrap(), "--dim", "batch=1", "--full"]);
    let g = kiln::ir::Graph::parse(&full).unwrap();
    assert_eq!(g.to_text(kiln::ir::ConstStyle::Full), full);
}

/// `kiln compile --target sm_90` writes the PTX, the weights and a launch
/// plan whose launches name kernels of the PTX with their grid, block and
/// arguments; `--gpu` picks the architecture gpu-sim simulates, and a bad
/// one (or one given to a CPU target) is refused by name.
#[test]
fn gpu_compile_writes_ptx_and_a_launch_plan() {
    let m = models().join("small_cnn.onnx");
    let m = m.to_str().unwrap();
    let dir = tmp("gpu");
    let d = dir.to_str().unwrap();
    let out = ok(&[
        "compile", m, "--dim", "batch=2", "--target", "sm_90", "-o", d,
    ]);
    for ext in ["ptx", "weights", "json"] {
        assert!(out.contains(&format!("small_cnn.{ext}")), "{out}");
    }
    let ptx = std::fs::read_to_string(dir.join("small_cnn.ptx")).unwrap();
    assert!(ptx.contains(".target sm_90"));
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("small_cnn.json")).unwrap())
            .unwrap();
    assert_eq!(plan["arch"], "sm_90");
    let launches = plan["launches"].as_array().unwrap();
    assert!(!launches.is_empty());
    for l in launches {
        let k = l["kernel"].as_str().unwrap();
        assert!(ptx.contains(&format!(".entry {k}(")), "{k} not in the PTX");
        let threads: u64 = l["block"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .product();
        assert!((1..=1024).contains(&threads), "{k}: block {}", l["block"]);
        assert!(
            !l["args"].as_array().unwrap().is_empty(),
            "{k}: no arguments"
        );
    }
    let weights = std::fs::metadata(dir.join("small_cnn.weights"))
        .unwrap()
        .len();
    assert_eq!(plan["weights_bytes"].as_u64(), Some(weights));
    ok(&[
        "run", m, "--dim", "batch=1", "--target", "gpu-sim", "--gpu", "sm_80",
    ]);
    assert!(
        fails(&["run", m, "--dim", "batch=1", "--target", "gpu-sim", "--gpu", "sm_75"])
            .contains("unknown GPU architecture 'sm_75'")
    );
    assert!(
        fails(&["run", m, "--dim", "batch=1", "--target", "cpu", "--gpu", "sm_90"])
            .contains("not a GPU target")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
