//! kiln's graph passes over the tensor IR: dead-code elimination, the cost model,
//! the e-graph optimizer, and the lowering to kernels with memory planning. Each pass takes a verified graph and returns a
//! verified graph with the same meaning (tested against the reference
//! interpreter).

pub mod cost;
mod dce;
pub mod egraph;
pub mod gpu;
pub mod lower;

pub use cost::{graph_cost, GraphCost};
pub use dce::dce;
pub use egraph::{optimize, Optimized, Options};
