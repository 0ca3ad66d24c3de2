//! The `cpu` target: lower the (optimized) graph with 128-bit blocking and
//! compile its kernels with Cranelift in memory (pure Rust, no LLVM needed),
//! then run them on the thread pool.

use crate::runtime::Executor;
use crate::{Backend, Executable, TargetError};
use kiln_ir::Graph;
use kiln_passes::lower::{lower, LowerOptions};

/// Compiles graphs with Cranelift for the host CPU.
pub struct ClifBackend {
    /// Threads compiled code runs on.
    pub threads: usize,
}

impl ClifBackend {
    /// Lowers and compiles `graph`.
    pub fn executor(&self, graph: &Graph) -> Result<Executor, TargetError> {
        graph.verify()?;
        let opts = LowerOptions::cranelift(self.threads);
        let p = lower(graph, &opts);
        let (code, fns) = crate::clif::compile(&p).map_err(TargetError::Backend)?;
        Executor::new(p, fns, self.threads, Box::new(code)).map_err(TargetError::Backend)
    }
}

impl Backend for ClifBackend {
    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>, TargetError> {
        Ok(Box::new(self.executor(graph)?))
    }
}
