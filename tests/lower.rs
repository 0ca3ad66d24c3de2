//! Lowering of the example models: after optimization every node becomes a
//! kernel (no host fallback on these models), and the lowered program, run by
//! the kernel IR's evaluator, computes what the interpreter computes, with
//! the LLVM backend's blocking and with the Cranelift backend's (A packed
//! four times over); every kernel's text parses back to itself.

use kiln::{Bindings, Model};
use kiln_ir::kernel::Kernel;
use kiln_ir::{interp, Target};
use kiln_passes::lower::{lower, LowerOptions, Step};
use std::path::Path;

fn load(name: &str) -> Model {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(format!("{name}.onnx"));
    let mut b = Bindings::default();
    b.dims.insert("batch".into(), 1);
    Model::load(&p, &b).unwrap()
}

fn check(name: &str, eval: bool) {
    check_with(name, eval, &LowerOptions::avx2(2));
}

fn check_with(name: &str, eval: bool, opts: &LowerOptions) {
    let mut m = load(name);
    let before = m.graph.clone();
    m.optimize(&Target::cpu_default()).unwrap();
    let p = lower(&m.graph, opts);
    for s in &p.steps {
        match s {
            Step::Host {
                name: n, reason, ..
            } => panic!("{name}: node {n} was not lowered: {reason}"),
            Step::Kernel { kernel, .. } => {
                let text = kernel.to_string();
                let back = Kernel::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
                assert_eq!(&back, kernel, "{name}: the kernel text does not parse back");
            }
        }
    }
    if !eval {
        return;
    }
    let ins = m.random_inputs(3);
    let want = interp::run(&before, &ins).unwrap();
    let ordered: Vec<_> = m
        .graph
        .inputs
        .iter()
        .map(|v| ins[&m.graph.value(*v).name].clone())
        .collect();
    let got = p.eval(&ordered).unwrap();
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w.ty(), g.ty());
        let (a, b) = (w.to_f64_vec(), g.to_f64_vec());
        let scale = a.iter().fold(1e-30f64, |s, v| s.max(v.abs()));
        let err = a
            .iter()
            .zip(&b)
            .fold(0.0f64, |e, (x, y)| e.max((x - y).abs() / scale));
        assert!(err <= 1e-4, "{name}: lowered differs by {err}");
    }
}

#[test]
fn small_cnn_lowers() {
    check("small_cnn", true);
}

/// Lowered only: the evaluator takes minutes on its 3x3 convolutions; the
/// backend suites run its kernels compiled against the interpreter.
#[test]
fn resnet_block_lowers() {
    check("resnet_block", false);
}

/// A packed four times over, at compile time (the convolutions' weights)
/// and at run time: the evaluator reads the copies the schedule says.
#[test]
fn small_cnn_lowers_for_cranelift() {
    check_with("small_cnn", true, &LowerOptions::cranelift(2));
}

#[test]
fn gpt2_block_lowers() {
    check("gpt2_block", true);
}
