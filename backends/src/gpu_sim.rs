//! The `gpu-sim` target: the graph lowered and mapped to GPU kernels exactly
//! as for the GPU (`kiln_passes::gpu`), then each GPU kernel turned into its
//! CPU meaning (`kiln_ir::kernel::simt::to_cpu`: blocks as parallel tasks,
//! thread loops cut at barriers, shared memory as per-task scratch) and
//! compiled by the LLVM CPU backend. This is how the numerics of the GPU
//! schedules are tested without a GPU.

use crate::llvm::Jit;
use crate::runtime::Executor;
use crate::{Backend, Executable, TargetError};
use kiln_ir::kernel::simt;
use kiln_ir::Graph;
use kiln_passes::lower::{lower, LowerOptions, Program, Step};

/// Runs GPU-mapped kernels on the CPU.
pub struct GpuSimBackend {
    /// Threads the blocks are spread over.
    pub threads: usize,
    /// The GPU architecture whose mapping is simulated (`ptx::ARCHS`).
    pub arch: &'static str,
}

impl GpuSimBackend {
    /// The graph lowered and mapped to GPU kernels (what the GPU runs).
    pub fn gpu_program(&self, graph: &Graph) -> Result<Program, TargetError> {
        graph.verify()?;
        let p = lower(graph, &LowerOptions::gpu());
        kiln_passes::gpu::map_program(&p).map_err(TargetError::Backend)
    }

    /// Lowers, maps, turns every GPU kernel into its CPU form and compiles.
    pub fn executor(&self, graph: &Graph) -> Result<Executor, TargetError> {
        let mut p = self.gpu_program(graph)?;
        for st in &mut p.steps {
            if let Step::Kernel { kernel, args } = st {
                let cpu = simt::to_cpu(kernel)?;
                args.resize(cpu.bufs.len(), None);
                *kernel = cpu;
            }
        }
        let threads = self.threads.max(1);
        let (jit, fns) = Jit::compile(&p).map_err(TargetError::Backend)?;
        Executor::new(p, fns, threads, Box::new(jit)).map_err(TargetError::Backend)
    }
}

impl Backend for GpuSimBackend {
    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>, TargetError> {
        Ok(Box::new(self.executor(graph)?))
    }
}
