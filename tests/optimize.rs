//! The optimizer on the example models (built by `scripts/models`): the optimized
//! graph computes what the imported one does on the interpreter; gpt2_block gets
//! its attention, GELU and layer norms recognized, at most a third as many kernels
//! as ONNX nodes, and at least halves the bytes moved; the optimized IR of every
//! model is pinned by a snapshot; `kiln inspect --opt --json` keeps its contract.

use kiln::{Bindings, Model};
use kiln_ir::{interp, Graph, Op, Target};
use kiln_passes::graph_cost;
use std::path::{Path, PathBuf};
use std::process::Command;

fn model_path(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(format!("{name}.onnx"));
    assert!(p.is_file(), "run scripts/models to build {}", p.display());
    p
}

fn load(name: &str) -> Model {
    let mut b = Bindings::default();
    b.dims.insert("batch".into(), 2);
    Model::load(&model_path(name), &b).unwrap()
}

/// Every op of a graph, fused bodies included.
fn all_ops(g: &Graph) -> Vec<&Op> {
    let mut v = Vec::new();
    for n in &g.nodes {
        match &n.op {
            Op::Fused(f) => v.extend(all_ops(&f.body)),
            op => v.push(op),
        }
    }
    v
}

fn count(g: &Graph, m: &str) -> usize {
    all_ops(g).iter().filter(|o| o.mnemonic() == m).count()
}

fn check_model(name: &str) -> (Graph, Graph) {
    let mut m = load(name);
    let before = m.graph.clone();
    m.optimize(&Target::cpu_default()).unwrap();
    let ins = m.random_inputs(7);
    let want = interp::run(&before, &ins).unwrap();
    let got = interp::run(&m.graph, &ins).unwrap();
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w.ty(), g.ty());
        let (a, b) = (w.to_f64_vec(), g.to_f64_vec());
        let scale = a.iter().fold(1e-30f64, |s, v| s.max(v.abs()));
        let err = a
            .iter()
            .zip(&b)
            .fold(0.0f64, |e, (x, y)| e.max((x - y).abs() / scale));
        assert!(err <= 1e-5, "{name}: optimized differs by {err}");
    }
    insta::assert_snapshot!(
        format!("optimized_{name}"),
        m.graph.to_text(kiln_ir::ConstStyle::Elide(64))
    );
    (before, m.graph)
}

#[test]
fn mlp_optimized_agrees() {
    let (_, g) = check_model("mlp");
    assert_eq!(count(&g, "gelu"), 2);
}

#[test]
fn resnet_block_optimized_agrees() {
    let (_, g) = check_model("resnet_block");
    assert_eq!(
        count(&g, "batch_norm"),
        0,
        "batch norms fold into the convs"
    );
}

#[test]
fn small_cnn_optimized_agrees() {
    check_model("small_cnn");
}

#[test]
fn gpt2_4layers_optimized_agrees() {
    let (_, g) = check_model("gpt2_4layers");
    assert_eq!(count(&g, "attention"), 4);
}

#[test]
fn gpt2_block_is_recognized_fused_and_moves_half_the_bytes() {
    let (before, g) = check_model("gpt2_block");
    assert_eq!(count(&g, "attention"), 1);
    assert!(all_ops(&g)
        .iter()
        .any(|o| matches!(o, Op::Attention(a) if a.causal)));
    assert_eq!(count(&g, "gelu"), 1);
    assert_eq!(count(&g, "layer_norm"), 2);
    assert_eq!(count(&g, "matmul"), 4, "one QKV matmul, out-proj, fc1, fc2");
    let t = Target::cpu_default();
    let (b, a) = (graph_cost(&before, &t), graph_cost(&g, &t));
    let onnx_nodes = 35;
    assert!(
        a.kernels * 3 <= onnx_nodes,
        "{} kernels for {onnx_nodes} ONNX nodes",
        a.kernels
    );
    assert!(
        a.bytes_moved * 2 <= b.bytes_moved,
        "bytes {} -> {}",
        b.bytes_moved,
        a.bytes_moved
    );
}

#[test]
fn optimization_is_deterministic() {
    let once = |_: u32| {
        let mut m = load("gpt2_block");
        m.optimize(&Target::cpu_default()).unwrap();
        m.graph.to_text(kiln_ir::ConstStyle::Full)
    };
    assert_eq!(once(0), once(1));
}

#[test]
fn inspect_opt_json_has_before_and_after() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["inspect", "--opt", "--json"])
        .arg(model_path("gpt2_block"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for side in ["before", "after"] {
        for k in [
            "ops",
            "kernels",
            "flops",
            "bytes_moved",
            "est_time_ms",
            "op_histogram",
        ] {
            assert!(!v[side][k].is_null(), "missing {side}.{k}");
        }
    }
    assert!(v["after"]["kernels"].as_u64() < v["before"]["kernels"].as_u64());
}

#[test]
fn explain_names_the_rules() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["print", "--opt", "--explain", "add_94"])
        .arg(model_path("gpt2_block"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("made by rule 'fuse'"), "{text}");
}

#[test]
fn calibration_is_stored_and_used() {
    let dir = std::env::temp_dir().join(format!("kiln-calibrate-{}", std::process::id()));
    let file = dir.join("cpu.json");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["calibrate", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(v["peak_f32"].as_f64().unwrap() > 1e8 && v["bandwidth"].as_f64().unwrap() > 1e8);
    let inspect = |path: &Path| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .env("KILN_CPU_TARGET", path)
            .args(["inspect", "--opt"])
            .arg(model_path("resnet_block"))
            .output()
            .unwrap()
    };
    assert!(inspect(&file).status.success());
    std::fs::write(&file, "{\"peak_f32\": -1}").unwrap();
    let bad = inspect(&file);
    assert!(!bad.status.success());
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(
        msg.contains("cpu.json") && msg.contains("peak_f32"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
