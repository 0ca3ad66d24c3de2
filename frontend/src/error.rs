//! Import errors. Each names the file, node, op or input at fault and says what to
//! do; none is a panic.

use std::path::PathBuf;
use thiserror::Error;

/// Why a model could not be imported.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read '{path}': {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is larger than a protobuf model may be.
    #[error("'{path}' is {bytes} bytes; ONNX protobuf files are limited to 2 GiB (larger weights belong in external data files)")]
    FileTooLarge { path: PathBuf, bytes: u64 },
    /// The protobuf is malformed or truncated.
    #[error("'{path}' is not a valid ONNX model: {msg}")]
    Decode { path: PathBuf, msg: String },
    /// An op kiln does not implement.
    #[error("node '{node}': op '{op}' (domain '{domain}', opset {opset}) is not supported by kiln; supported ops: {supported}")]
    UnsupportedOp {
        node: String,
        op: String,
        domain: String,
        opset: i64,
        supported: String,
    },
    /// The model imports an opset kiln does not know.
    #[error("the model uses opset {version} of domain '{domain}'; kiln supports the default domain at opsets 1 to 28")]
    Opset { domain: String, version: i64 },
    /// A node is malformed: wrong operand shapes or dtypes, bad attributes.
    #[error("node '{node}' ({op}): {msg}")]
    Node {
        node: String,
        op: String,
        msg: String,
    },
    /// A tensor (initializer, constant, external data) is unusable.
    #[error("tensor '{tensor}': {msg}")]
    Tensor { tensor: String, msg: String },
    /// A graph input's shape is not fully known.
    #[error("input '{input}' has unbound dimension {dim} ('{symbol}'); pass {hint}")]
    Unbound {
        input: String,
        dim: usize,
        symbol: String,
        hint: String,
    },
    /// A value that decides a shape is computed from a graph input at run time.
    #[error("node '{node}' ({op}): input {index} must be known at compile time, but it depends on graph input(s) {inputs}; pass their values (kiln run --input NAME=FILE.npy) so kiln can fold them")]
    NeedsValue {
        node: String,
        op: String,
        index: usize,
        inputs: String,
    },
    /// A `--shape`, `--dim` or input value does not fit the model.
    #[error("{0}")]
    Binding(String),
    /// The graph is malformed (undefined names, duplicate definitions).
    #[error("graph: {0}")]
    Graph(String),
    /// The IR rejected the imported graph.
    #[error(transparent)]
    Ir(#[from] kiln_ir::IrError),
}
