//! Builds a tensor-IR graph with the Rust API (a linear layer with a GELU written
//! out), prints its text form and evaluates it on the reference interpreter.
//!
//! ```sh
//! cargo run --example build_graph
//! ```

use kiln::ir::op::{Binary, BinaryKind, MatMul, Unary, UnaryKind};
use kiln::ir::{interp, ConstStyle, DType, Graph, Tensor, TensorType};
use std::collections::HashMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut g = Graph::new("linear_gelu");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![2, 3])?);
    let w = g.add_const(
        "w",
        Tensor::from_f64(DType::F32, vec![3, 2], &[0.5, -1.0, 0.25, 2.0, -0.5, 1.0]),
    );
    let half = g.add_const("half", Tensor::scalar_f64(DType::F32, 0.5));
    let one = g.add_const("one", Tensor::scalar_f64(DType::F32, 1.0));
    let rsqrt2 = g.add_const(
        "rsqrt2",
        Tensor::scalar_f64(DType::F32, std::f64::consts::FRAC_1_SQRT_2),
    );
    let bin = |kind| Binary { kind }.into();
    let h = g.add_node("proj", MatMul::default().into(), vec![x, w], &["h"])?[0];
    let s = g.add_node("scale", bin(BinaryKind::Mul), vec![h, rsqrt2], &["s"])?[0];
    let e = g.add_node(
        "erf",
        Unary {
            kind: UnaryKind::Erf,
        }
        .into(),
        vec![s],
        &["e"],
    )?[0];
    let p = g.add_node("plus1", bin(BinaryKind::Add), vec![e, one], &["p"])?[0];
    let hh = g.add_node("halve", bin(BinaryKind::Mul), vec![h, half], &["hh"])?[0];
    let y = g.add_node("gelu", bin(BinaryKind::Mul), vec![hh, p], &["y"])?[0];
    g.outputs = vec![y];
    g.verify()?;
    print!("{}", g.to_text(ConstStyle::Full));
    let xs = Tensor::from_f64(DType::F32, vec![2, 3], &[1.0, 2.0, 3.0, -1.0, 0.0, 1.0]);
    let out = interp::run(&g, &HashMap::from([("x".to_string(), xs)]))?;
    println!("y = {:?}", out[0].to_f64_vec());
    Ok(())
}
