//! kiln's graph passes over the tensor IR. Each pass takes a verified graph and
//! returns a verified graph with the same meaning (tested against the reference
//! interpreter).

mod dce;

pub use dce::dce;
