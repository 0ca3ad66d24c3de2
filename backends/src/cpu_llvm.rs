//! The `cpu-llvm` target: lower the (optimized) graph for this CPU's vector
//! width, compile its kernels through LLVM in memory, and run them on the
//! thread pool.

use crate::llvm::Jit;
use crate::runtime::Executor;
use crate::{Backend, Executable, TargetError};
use kiln_ir::Graph;
use kiln_passes::lower::{lower, LowerOptions};

/// Compiles graphs with LLVM for the host CPU.
pub struct LlvmBackend {
    /// Threads compiled code runs on.
    pub threads: usize,
}

/// Lowering options for the host: 256-bit blocking with AVX2 and FMA, else 128-bit.
pub fn host_lower_options(threads: usize) -> LowerOptions {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return LowerOptions::avx2(threads);
    }
    LowerOptions::sse(threads)
}

impl LlvmBackend {
    /// Lowers and compiles `graph`.
    pub fn executor(&self, graph: &Graph) -> Result<Executor, TargetError> {
        graph.verify()?;
        let p = lower(graph, &host_lower_options(self.threads));
        let (jit, fns) = Jit::compile(&p).map_err(TargetError::Backend)?;
        Executor::new(p, fns, self.threads, Box::new(jit)).map_err(TargetError::Backend)
    }
}

impl Backend for LlvmBackend {
    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>, TargetError> {
        Ok(Box::new(self.executor(graph)?))
    }
}
