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
    /// Compiled CPU code through Cranelift (JIT, pure Rust).
    Cpu,
    /// Compiled CPU code through LLVM (JIT in memory, or AOT objects).
    CpuLlvm,
    /// GPU kernels for an architecture (`ptx::ARCHS`), run on the CPU.
    GpuSim(&'static str),
    /// GPU kernels run on the first CUDA device, for its architecture or
    /// the one named.
    Cuda(Option<&'static str>),
}

/// The GPU architectures kiln compiles for.
pub const GPU_ARCHS: [&str; 5] = ["sm_80", "sm_86", "sm_89", "sm_90", "sm_90a"];

/// Targets kiln knows of, by name, with whether this build has them.
const KNOWN: &[(&str, Option<Target>)] = &[
    ("interp", Some(Target::Interp)),
    #[cfg(feature = "cpu")]
    ("cpu", Some(Target::Cpu)),
    #[cfg(not(feature = "cpu"))]
    ("cpu", None),
    #[cfg(feature = "cpu-llvm")]
    ("cpu-llvm", Some(Target::CpuLlvm)),
    #[cfg(not(feature = "cpu-llvm"))]
    ("cpu-llvm", None),
    #[cfg(feature = "cpu-llvm")]
    ("gpu-sim", Some(Target::GpuSim("sm_90"))),
    #[cfg(not(feature = "cpu-llvm"))]
    ("gpu-sim", None),
    #[cfg(feature = "cuda")]
    ("cuda", Some(Target::Cuda(None))),
    #[cfg(not(feature = "cuda"))]
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
    /// Compiling or running compiled code failed.
    #[error("{0}")]
    Backend(String),
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

    /// The target for GPU architecture `arch` (only GPU targets take one).
    pub fn with_gpu(self, arch: &str) -> Result<Target, TargetError> {
        let Some(a) = GPU_ARCHS.iter().find(|a| **a == arch) else {
            return Err(TargetError::Backend(format!(
                "unknown GPU architecture '{arch}'; kiln targets {}",
                GPU_ARCHS.join(", ")
            )));
        };
        match self {
            Target::GpuSim(_) => Ok(Target::GpuSim(a)),
            Target::Cuda(_) => Ok(Target::Cuda(Some(a))),
            t => Err(TargetError::Backend(format!(
                "--gpu {arch} given, but target '{t}' is not a GPU target"
            ))),
        }
    }

    /// The target's backend; compiled code runs on `threads` threads (0: one
    /// per core). Fails on a bad `KILN_CPU_TILE` for `cpu`.
    pub fn backend(self, threads: usize) -> Result<Box<dyn Backend>, TargetError> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        Ok(match self {
            Target::Interp => Box::new(crate::InterpBackend),
            #[cfg(feature = "cpu-llvm")]
            Target::CpuLlvm => Box::new(crate::LlvmBackend { threads }),
            #[cfg(not(feature = "cpu-llvm"))]
            Target::CpuLlvm => {
                let _ = threads;
                Box::new(crate::InterpBackend)
            }
            #[cfg(feature = "cpu-llvm")]
            Target::GpuSim(arch) => Box::new(crate::GpuSimBackend { threads, arch }),
            #[cfg(not(feature = "cpu-llvm"))]
            Target::GpuSim(_) => Box::new(crate::InterpBackend),
            #[cfg(feature = "cuda")]
            Target::Cuda(arch) => Box::new(crate::CudaBackend { arch }),
            #[cfg(not(feature = "cuda"))]
            Target::Cuda(_) => Box::new(crate::InterpBackend),
            #[cfg(feature = "cpu")]
            Target::Cpu => Box::new(crate::ClifBackend {
                threads,
                tile: crate::CpuTile::from_env()?,
            }),
            #[cfg(not(feature = "cpu"))]
            Target::Cpu => {
                let _ = threads;
                Box::new(crate::InterpBackend)
            }
        })
    }

    /// True for targets that run compiled kernels (they want an optimized graph).
    pub fn compiles(self) -> bool {
        self != Target::Interp
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Interp => "interp",
            Target::Cpu => "cpu",
            Target::CpuLlvm => "cpu-llvm",
            Target::GpuSim(_) => "gpu-sim",
            Target::Cuda(_) => "cuda",
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

    /// Seconds each step took, summed over the runs since the last call
    /// (compiled targets; empty elsewhere).
    fn take_step_times(&self) -> Vec<(String, f64)> {
        Vec::new()
    }
}
