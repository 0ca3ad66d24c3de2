//! The facade's error: everything a user can get wrong, each with its cause.

use thiserror::Error;

/// An error from loading, running or writing results.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Import(#[from] kiln_frontend::ImportError),
    #[error(transparent)]
    Target(#[from] kiln_backends::TargetError),
    #[error(transparent)]
    Ir(#[from] kiln_ir::IrError),
    #[error(transparent)]
    Opt(#[from] kiln_passes::egraph::OptError),
    /// A bad command-line value or input file.
    #[error("{0}")]
    Usage(String),
    /// Writing results failed.
    #[error("cannot write '{path}': {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}
