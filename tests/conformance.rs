//! ONNX backend node-test conformance: every case whose ops kiln supports runs
//! through the importer and the reference interpreter and is compared with onnx's
//! expected outputs, and its optimized graph (the e-graph optimizer for the CPU
//! cost model) must agree with the imported one, and the optimized graph
//! compiled for the CPU by LLVM (`cpu-llvm`) and by Cranelift (`cpu`), and
//! mapped to GPU kernels run on the CPU (`gpu-sim`, sm_90), two threads
//! each, must give onnx's outputs too (f32: rtol 1e-4, atol 1e-5; other
//! dtypes as `tolerance` says); with `KILN_CUDA=1` (scripts/gpu-check, on a
//! machine with an NVIDIA GPU) the GPU itself (`cuda`) too. Prints `N
//! passed, N failed, N skipped` and a per-op table; fails when a case in
//! `tests/conformance/passing.txt` stops passing, or when fewer than 95% of
//! the single-node cases of the foundation op list pass.
//!
//! The cases are materialized by `scripts/setup` into `.cache/onnx-node`
//! (override with `KILN_ONNX_NODE_TESTS`). `KILN_UPDATE_PASSING=1` rewrites the
//! passing list; CI never sets it.

use kiln_frontend::{
    decode_model, import_model, proto::TensorProto, tensor_from_proto, Bindings, SUPPORTED,
};
use kiln_ir::{interp, DType, Tensor};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The op list of the foundation issue: the denominator of the 95% bar.
const FOUNDATION_OPS: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Sqrt",
    "Exp",
    "Log",
    "Tanh",
    "Erf",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Relu",
    "LeakyRelu",
    "Clip",
    "Neg",
    "Abs",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Max",
    "Min",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "Not",
    "And",
    "Or",
    "Cast",
    "MatMul",
    "Gemm",
    "Conv",
    "ConvTranspose",
    "BatchNormalization",
    "LayerNormalization",
    "Softmax",
    "LogSoftmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Reshape",
    "Transpose",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Concat",
    "Split",
    "Slice",
    "Gather",
    "Expand",
    "Pad",
    "Resize",
    "Shape",
    "ConstantOfShape",
    "Range",
    "Tile",
    "Identity",
    "Dropout",
    "Constant",
];

const KILN_DTYPES: &[i32] = &[1, 2, 3, 6, 7, 9, 10, 11, 16];

fn cases_dir() -> PathBuf {
    std::env::var_os("KILN_ONNX_NODE_TESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/onnx-node"))
}

fn read_pb(p: &Path) -> Result<Tensor, String> {
    let b = std::fs::read(p).map_err(|e| e.to_string())?;
    let t = TensorProto::decode(b.as_slice()).map_err(|e| e.to_string())?;
    tensor_from_proto(&t, None).map_err(|e| e.to_string())
}

/// (rtol, atol) per dtype.
fn tolerance(d: DType) -> (f64, f64) {
    match d {
        DType::F32 => (1e-4, 1e-5),
        DType::F64 => (1e-7, 1e-9),
        DType::F16 => (1e-3, 1e-3),
        DType::BF16 => (1e-2, 1e-2),
        _ => (0.0, 0.0),
    }
}

fn compare(name: &str, got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.shape() != want.shape() || got.dtype() != want.dtype() {
        return Err(format!(
            "output '{name}': got {}, expected {}",
            got.ty(),
            want.ty()
        ));
    }
    let (rtol, atol) = tolerance(want.dtype());
    for (i, (g, w)) in got.to_f64_vec().iter().zip(want.to_f64_vec()).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= atol + rtol * w.abs();
        if !ok {
            return Err(format!(
                "output '{name}' element {i}: got {g}, expected {w}"
            ));
        }
    }
    Ok(())
}

fn run_case(dir: &Path, model: &kiln_frontend::proto::ModelProto) -> Result<(), String> {
    let gp = model.graph.as_ref().ok_or("no graph")?;
    let sets: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        v.sort();
        v
    };
    if sets.is_empty() {
        return Err("skip: no tensor data sets".into());
    }
    for set in sets {
        let mut b = Bindings::default();
        let mut inputs = HashMap::new();
        let inits: BTreeSet<&str> = gp.initializer.iter().map(|t| t.name()).collect();
        let real_inputs: Vec<&str> = gp
            .input
            .iter()
            .map(|i| i.name())
            .filter(|n| !inits.contains(n))
            .collect();
        for (i, name) in real_inputs.iter().enumerate() {
            let t = read_pb(&set.join(format!("input_{i}.pb")))?;
            b.shapes.insert(name.to_string(), t.shape().to_vec());
            b.values.insert(name.to_string(), t.clone());
            inputs.insert(name.to_string(), t);
        }
        let imported = import_model(model, Some(dir), &b).map_err(|e| e.to_string())?;
        for f in &imported.frozen {
            inputs.remove(f);
        }
        let outs = interp::run(&imported.graph, &inputs).map_err(|e| e.to_string())?;
        for (i, (name, got)) in imported.output_names.iter().zip(&outs).enumerate() {
            let want = read_pb(&set.join(format!("output_{i}.pb")))?;
            compare(name, got, &want)?;
        }
        // The optimized graph must compute what the imported one does.
        let opt = kiln_passes::optimize(
            &imported.graph,
            &kiln_ir::Target::cpu_default(),
            &kiln_passes::Options::default(),
        )
        .map_err(|e| format!("optimize: {e}"))?;
        let opt_outs = interp::run(&opt.graph, &inputs).map_err(|e| format!("optimized: {e}"))?;
        for ((name, got), want) in imported.output_names.iter().zip(&opt_outs).zip(&outs) {
            compare(name, got, want).map_err(|m| format!("optimized: {m}"))?;
        }
        // Compiled code (the optimized graph, two threads) against onnx's outputs.
        let llvm = kiln_backends::LlvmBackend { threads: 2 }
            .executor(&opt.graph)
            .map_err(|e| format!("cpu-llvm: {e}"))?;
        let clif = kiln_backends::ClifBackend {
            threads: 2,
            tile: kiln_backends::CpuTile::Native,
        }
        .executor(&opt.graph)
        .map_err(|e| format!("cpu: {e}"))?;
        let sim = kiln_backends::GpuSimBackend {
            threads: 2,
            arch: "sm_90",
        }
        .executor(&opt.graph)
        .map_err(|e| format!("gpu-sim: {e}"))?;
        let ordered: Vec<&Tensor> = opt
            .graph
            .inputs
            .iter()
            .map(|v| &inputs[&opt.graph.value(*v).name])
            .collect();
        let mut runs = Vec::new();
        for (backend, exe) in [("cpu-llvm", llvm), ("cpu", clif), ("gpu-sim", sim)] {
            for st in &exe.program().steps {
                let c = match st {
                    kiln_passes::lower::Step::Kernel { .. } => &KERNELS,
                    kiln_passes::lower::Step::Host { .. } => &HOST_STEPS,
                };
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            runs.push((backend, exe.run(&ordered).map_err(|e| e.to_string())));
        }
        if std::env::var_os("KILN_CUDA").is_some() {
            let got = kiln_backends::CudaBackend { arch: None }
                .executable(&opt.graph)
                .and_then(|exe| exe.run_ordered(&ordered))
                .map_err(|e| e.to_string());
            runs.push(("cuda", got));
        }
        for (backend, outs) in runs {
            let outs = outs.map_err(|e| format!("{backend}: {e}"))?;
            for (i, (name, got)) in imported.output_names.iter().zip(&outs).enumerate() {
                let want = read_pb(&set.join(format!("output_{i}.pb")))?;
                compare(name, got, &want).map_err(|m| format!("{backend}: {m}"))?;
            }
        }
    }
    Ok(())
}

/// Compiled kernels and host steps the compiled runs used (printed at the end).
static KERNELS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static HOST_STEPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[derive(Default)]
struct Row {
    passed: usize,
    failed: usize,
}

#[test]
fn onnx_node_conformance() {
    let root = cases_dir();
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}); run scripts/setup to materialize the ONNX node tests",
                root.display()
            )
        })
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() > 1000,
        "expected the ONNX node tests in {}, found {} cases",
        root.display(),
        names.len()
    );

    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let (mut elig, mut elig_passed) = (0, 0);
    let mut table: BTreeMap<String, Row> = BTreeMap::new();
    let mut passing = BTreeSet::new();
    let mut failures = Vec::new();
    for name in &names {
        let dir = root.join(name);
        let bytes = std::fs::read(dir.join("model.onnx")).expect("model.onnx readable");
        let Ok(model) = decode_model(&bytes, &dir) else {
            skipped += 1;
            continue;
        };
        let gp = model.graph.as_ref().expect("decode_model checks the graph");
        let ops: BTreeSet<&str> = gp.node.iter().map(|n| n.op_type()).collect();
        if !ops.iter().all(|o| SUPPORTED.contains(o)) {
            skipped += 1;
            continue;
        }
        let dtypes_ok = gp.input.iter().chain(&gp.output).all(|vi| {
            match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                Some(kiln_frontend::proto::type_proto::Value::TensorType(t)) => {
                    KILN_DTYPES.contains(&t.elem_type())
                }
                _ => false,
            }
        });
        let single =
            gp.node.len() == 1 && FOUNDATION_OPS.contains(&gp.node[0].op_type()) && dtypes_ok;
        let result = std::panic::catch_unwind(|| run_case(&dir, &model))
            .unwrap_or_else(|_| Err("PANIC".to_string()));
        let key = if gp.node.len() == 1 {
            gp.node[0].op_type().to_string()
        } else {
            "(multi-node)".to_string()
        };
        match result {
            Err(m) if m.starts_with("skip:") => {
                skipped += 1;
                continue;
            }
            Ok(()) => {
                passed += 1;
                passing.insert(name.clone());
                table.entry(key).or_default().passed += 1;
                if single {
                    elig_passed += 1;
                }
            }
            Err(m) => {
                failed += 1;
                failures.push(format!("{name}: {}", m.lines().next().unwrap_or("")));
                table.entry(key).or_default().failed += 1;
            }
        }
        if single {
            elig += 1;
        }
    }

    println!("{:<24} {:>6} {:>6}", "op", "passed", "failed");
    for (op, r) in &table {
        println!("{op:<24} {:>6} {:>6}", r.passed, r.failed);
    }
    println!("\nfailures:");
    for f in &failures {
        println!("  {f}");
    }
    let pct = 100.0 * elig_passed as f64 / elig.max(1) as f64;
    println!("\nsingle-node cases of the foundation op list (kiln dtypes): {elig_passed}/{elig} pass ({pct:.1}%)");
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    println!(
        "cpu-llvm, cpu and gpu-sim ran {} compiled kernels and {} host steps",
        KERNELS.load(std::sync::atomic::Ordering::Relaxed),
        HOST_STEPS.load(std::sync::atomic::Ordering::Relaxed)
    );

    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/passing.txt");
    if std::env::var_os("KILN_UPDATE_PASSING").is_some() {
        let text: String = passing.iter().map(|n| format!("{n}\n")).collect();
        std::fs::write(&list, text).expect("write passing list");
    }
    let expected = std::fs::read_to_string(&list).unwrap_or_default();
    let regressed: Vec<&str> = expected
        .lines()
        .filter(|n| !n.is_empty() && !passing.contains(*n))
        .collect();
    assert!(
        regressed.is_empty(),
        "cases that used to pass now fail: {regressed:?}"
    );
    assert!(
        pct >= 95.0,
        "only {pct:.1}% of the foundation single-node cases pass (need 95%)"
    );
}
