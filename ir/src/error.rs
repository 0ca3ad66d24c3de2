//! The IR's error type: every message names the node, op or text position at fault.

use thiserror::Error;

/// An error from building, verifying, parsing or interpreting a graph.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum IrError {
    /// A node's operands do not fit its op.
    #[error("node '{node}' ({op}): {msg}; operands: {operands}")]
    Node {
        node: String,
        op: String,
        operands: String,
        msg: String,
    },
    /// The graph breaks a structural rule.
    #[error("invalid graph: {0}")]
    Verify(String),
    /// The text form could not be parsed.
    #[error("line {line}, column {col}: {msg}")]
    Parse {
        line: usize,
        col: usize,
        msg: String,
    },
    /// A kernel of the kernel IR is malformed.
    #[error("kernel '{kernel}': {msg}")]
    Kernel { kernel: String, msg: String },
    /// Evaluation failed (bad inputs, or an op fault at run time).
    #[error("{0}")]
    Eval(String),
}
