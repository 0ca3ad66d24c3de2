//! The `cpu` target: lower the (optimized) graph and compile its kernels with
//! Cranelift in memory (pure Rust, no LLVM needed), then run them on the
//! thread pool. Matrix products run on the native 6 x 16 AVX2 tile where the
//! host has AVX2 and FMA (256-bit blocking), else on Cranelift's 128-bit
//! tile; `KILN_CPU_TILE=cranelift` asks for Cranelift's everywhere.

use crate::runtime::Executor;
use crate::{Backend, Executable, TargetError};
use kiln_ir::Graph;
use kiln_passes::lower::{lower, LowerOptions};

/// Compiles graphs with Cranelift for the host CPU.
pub struct ClifBackend {
    /// Threads compiled code runs on.
    pub threads: usize,
    /// The register tile of matrix products.
    pub tile: CpuTile,
}

/// Which register tile the `cpu` target's matrix products run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuTile {
    /// The native 6 x 16 AVX2 tile where the host has AVX2 and FMA, else
    /// Cranelift's.
    #[default]
    Native,
    /// Cranelift's 128-bit 6 x 8 tile on every host.
    Cranelift,
}

impl CpuTile {
    /// The choice named by `KILN_CPU_TILE` (`native`, the default when unset,
    /// or `cranelift`).
    pub fn from_env() -> Result<CpuTile, TargetError> {
        match std::env::var("KILN_CPU_TILE") {
            Err(std::env::VarError::NotPresent) => Ok(CpuTile::Native),
            Ok(v) if v == "native" => Ok(CpuTile::Native),
            Ok(v) if v == "cranelift" => Ok(CpuTile::Cranelift),
            Ok(v) => Err(TargetError::Backend(format!(
                "KILN_CPU_TILE='{v}': expected 'native' or 'cranelift'"
            ))),
            Err(e) => Err(TargetError::Backend(format!("KILN_CPU_TILE: {e}"))),
        }
    }
}

impl ClifBackend {
    /// Whether matrix products run on the native AVX2 tile: asked for, and
    /// the host has AVX2 and FMA.
    pub fn native_tile(&self) -> bool {
        self.tile == CpuTile::Native && crate::clif::native_tile_available()
    }

    /// Lowers and compiles `graph`.
    pub fn executor(&self, graph: &Graph) -> Result<Executor, TargetError> {
        graph.verify()?;
        let native = self.native_tile();
        let opts = if native {
            LowerOptions::avx2(self.threads)
        } else {
            LowerOptions::cranelift(self.threads)
        };
        let p = lower(graph, &opts);
        let (code, fns) = crate::clif::compile(&p, native).map_err(TargetError::Backend)?;
        Executor::new(p, fns, self.threads, Box::new(code)).map_err(TargetError::Backend)
    }
}

impl Backend for ClifBackend {
    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>, TargetError> {
        Ok(Box::new(self.executor(graph)?))
    }
}
