//! Target names and the backend interface every target implements.

use kiln_ir::{Graph, Tensor};
use std::collections::HashMap;
use std::fmt;
use thiserror::Error;

/// A compilation target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The reference interpreter.
    Interp,
}

/// Targets kiln knows of, by name, with whether this build has them.
const KNOWN: &[(&str, Option<Target>)] = &[
    ("interp", Some(Target::Interp)),
    ("cpu", None),
    ("cpu-llvm", None),
    ("gpu-sim", None),
    ("cuda", None),
];

/// Why a target cannot be used.
#[derive(Debug, Error)]
pub enum TargetError {
    /// The name is not a target.
    #[error("unknown target '{0}'; targets: {1}")]
    Unknown(String, String),
    /// The target exists in kiln's plan but this build does not have it.
    #[error("target '{0}' is not available in this build of kiln; available: {1}")]
    Unavailable(String, String),
    /// Running failed.
    #[error(transparent)]
    Run(#[from] kiln_ir::IrError),
}

impl Target {
    /// Parses a target name.
    pub fn from_name(s: &str) -> Result<Target, TargetError> {
        let available = || {
            KNOWN
                .iter()
                .filter(|(_, t)| t.is_some())
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match KNOWN.iter().find(|(n, _)| *n == s) {
            Some((_, Some(t))) => Ok(*t),
            Some((n, None)) => Err(TargetError::Unavailable(n.to_string(), available())),
            None => Err(TargetError::Unknown(
                s.to_string(),
                KNOWN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            )),
        }
    }

    /// The target's backend.
    pub fn backend(self) -> Box<dyn Backend> {
        match self {
            Target::Interp => Box::new(crate::InterpBackend),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Interp => "interp",
        })
    }
}

/// Turns graphs into executables.
pub trait Backend {
    /// Prepares a verified graph for running.
    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>, TargetError>;
}

/// A compiled graph.
pub trait Executable {
    /// Runs on named inputs; returns the outputs in graph order.
    fn run(&self, inputs: &HashMap<String, Tensor>) -> Result<Vec<Tensor>, TargetError>;
}
