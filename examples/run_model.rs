//! Loads an ONNX model through kiln's library API, runs it on the reference
//! interpreter with random inputs and prints each output's type and first values.
//!
//! ```sh
//! cargo run --example run_model -- models/resnet_block.onnx
//! ```

use kiln::{Bindings, Model, Target};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: run_model MODEL.onnx")?;
    let model = Model::load(path.as_ref(), &Bindings::default())?;
    let inputs = model.random_inputs(0);
    let outputs = model.run(Target::Interp, &inputs)?;
    for (name, t) in model.output_names.iter().zip(&outputs) {
        let head: Vec<f64> = t.to_f64_vec().into_iter().take(4).collect();
        println!("{name}: {} {head:?}", t.ty());
    }
    Ok(())
}
