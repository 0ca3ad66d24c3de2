//! kiln's ONNX frontend: decodes model files (vendored onnx.proto, no protoc),
//! resolves external data safely, binds symbolic input dims, folds the shape
//! arithmetic exporters emit, and lowers every node to the tensor IR.

mod attrs;
mod error;
mod import;
mod load;
mod ops;
pub mod proto;
mod tensor;

pub use error::ImportError;
pub use import::{import_file, import_model, Bindings, Imported};
pub use load::{decode_model, read_model};
pub use ops::{const_operands, SUPPORTED};
pub use tensor::{dtype_of, elem_type_of, tensor_from_proto, tensor_to_proto};
