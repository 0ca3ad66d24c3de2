//! kiln's targets and backends. A backend turns a verified graph into something
//! that runs: the reference interpreter (the oracle for the rest), compiled
//! CPU code through Cranelift (`cpu`, pure Rust) or LLVM (`cpu-llvm`), and
//! GPU kernels as PTX (`ptx`), run on the CPU (`gpu-sim`) or through the CUDA
//! driver (`cuda`). Targets are named on the command line; asking for one
//! that is not built gives a clear error listing the ones that are.

#[cfg(feature = "cpu")]
mod clif;
#[cfg(feature = "cpu")]
mod cpu_clif;
#[cfg(feature = "cpu-llvm")]
mod cpu_llvm;
#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cpu-llvm")]
mod gpu_sim;
mod interp;
#[cfg(feature = "cpu-llvm")]
pub mod llvm;
#[cfg(feature = "cpu-llvm")]
pub mod ptx;
pub mod runtime;
mod target;

#[cfg(feature = "cpu")]
pub use cpu_clif::{ClifBackend, CpuTile};
#[cfg(feature = "cpu-llvm")]
pub use cpu_llvm::{host_lower_options, LlvmBackend};
#[cfg(feature = "cuda")]
pub use cuda::{CudaBackend, CudaExecutable};
#[cfg(feature = "cpu-llvm")]
pub use gpu_sim::GpuSimBackend;
pub use interp::InterpBackend;
pub use target::{Backend, Executable, Target, TargetError, GPU_ARCHS};
