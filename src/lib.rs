//! kiln: an ahead-of-time compiler for accelerator kernels. This facade ties the
//! crates together for the CLI and for frameworks: load a model (ONNX today),
//! inspect it, run it on a target, and compile it ahead of time.
//!
//! ```no_run
//! let model = kiln::Model::load("models/mlp.onnx".as_ref(), &Default::default())?;
//! let inputs = model.random_inputs(0);
//! let outputs = model.run(kiln::Target::Interp, &inputs)?;
//! # Ok::<(), kiln::Error>(())
//! ```

pub mod calibrate;
#[cfg(feature = "cpu-llvm")]
pub mod compile;
mod error;
mod model;
pub mod npy;
mod random;
mod summary;

pub use error::Error;
pub use kiln_backends::Target;
pub use kiln_frontend::Bindings;
pub use kiln_ir as ir;
pub use model::Model;
pub use summary::Summary;
