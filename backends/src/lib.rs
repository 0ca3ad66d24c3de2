//! kiln's targets and backends. A backend turns a verified graph into something
//! that runs; the reference interpreter is the first (and the oracle for the
//! rest). Targets are named on the command line; asking for one that is not built
//! gives a clear error listing the ones that are.

mod interp;
mod target;

pub use interp::InterpBackend;
pub use target::{Backend, Executable, Target, TargetError};
