//! kiln's tensor IR: dtypes, tensor types (with the reserved sharding slot),
//! tensors held by shared reference, the op table (one definition per op), the
//! graph container with its verifier and text form, the reference interpreter
//! that defines what every op means, and the kernel IR one level below.

mod attrs;
mod dtype;
mod error;
mod graph;
pub mod interp;
pub mod kernel;
pub mod op;
pub mod shape;
mod sharding;
mod target;
mod tensor;
mod text;
mod ty;
mod verify;

pub use attrs::{Attr, Attrs};
pub use dtype::DType;
pub use error::IrError;
pub use graph::{Graph, Node, NodeId, Value, ValueDef, ValueId};
pub use op::{Op, OpDef};
pub use sharding::Sharding;
pub use target::Target;
pub use tensor::{Elems, Tensor};
pub use text::ConstStyle;
pub use ty::{checked_bytes, ShapeDisplay, TensorType, MAX_TENSOR_BYTES};
