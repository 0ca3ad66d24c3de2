//! The Cranelift CPU backend (`cpu`, pure Rust, JIT): every kernel of a
//! lowered program becomes one Cranelift function with the same entry ABI as
//! the LLVM backend (`args`, `lo`, `hi`, `scratch`), compiled in memory for
//! the host. Loops are tested at the bottom, four-lane where `vector` allows.
//! The matrix product calls a register tile: the native 6 x 16 AVX2 one
//! (`avx2_tile`) where the host has it and the blocking is 6 x 16, else a
//! 6 x 8 tile of 128-bit vectors that Cranelift compiles as a function of its
//! own, without the e-graph optimizer.

mod avx2_tile;
mod emit;
mod gemm;
mod vector;

use crate::runtime::KernelFn;
use cranelift_codegen::ir::{types, AbiParam};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use kiln_passes::lower::{Program, Step};

/// Compiled code in memory.
pub struct ClifCode {
    module: Option<JITModule>,
}

// SAFETY: the module is only touched at compile time and when dropped; the
// machine code is immutable and may run on any thread.
unsafe impl Send for ClifCode {}
unsafe impl Sync for ClifCode {}

impl Drop for ClifCode {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: no kernel of this module runs any more (its executor
            // owns this value and is being dropped).
            unsafe { m.free_memory() };
        }
    }
}

/// The host's instruction set at Cranelift optimization level `opt`.
fn host_isa(opt: &str) -> Result<OwnedTargetIsa, String> {
    let mut flags = settings::builder();
    for (k, v) in [
        ("opt_level", opt),
        ("is_pic", "false"),
        ("use_colocated_libcalls", "false"),
    ] {
        flags
            .set(k, v)
            .map_err(|e| format!("cranelift setting {k}: {e}"))?;
    }
    cranelift_native::builder()
        .map_err(|e| format!("cranelift: this host is not supported: {e}"))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| format!("cranelift: {e}"))
}

/// Whether this host runs matrix products on the native 6 x 16 AVX2 tile
/// (`avx2_tile`) when the blocking asks for it.
pub fn native_tile_available() -> bool {
    avx2_tile::available()
}

/// Compiles every kernel step of `p`; returns the code and each step's entry.
/// Matrix products blocked 6 x 16 call the native AVX2 tile when `native`
/// and the host has it; every other tile is compiled by Cranelift.
pub fn compile(p: &Program, native: bool) -> Result<(ClifCode, Vec<Option<KernelFn>>), String> {
    let isa = host_isa("speed")?;
    // Cranelift's register tile is compiled without the e-graph optimizer,
    // so its instructions stay in the order written (see `gemm::micro_fn`).
    let tile_isa = host_isa("none")?;
    let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
    let native = match avx2_tile::address() {
        Some(at) if native => {
            builder.symbol(avx2_tile::SYMBOL, at);
            true
        }
        _ => false,
    };
    let tile = emit::Tile {
        isa: &*tile_isa,
        native,
    };
    let mut module = JITModule::new(builder);
    let mut ctx = module.make_context();
    let mut ids = Vec::new();
    for st in &p.steps {
        let Step::Kernel { kernel, .. } = st else {
            ids.push(None);
            continue;
        };
        ctx.func.signature.params = vec![AbiParam::new(types::I64); 4];
        emit::kernel(&mut module, tile, &mut ctx.func, kernel)?;
        let id = module
            .declare_function(&kernel.name, Linkage::Export, &ctx.func.signature)
            .map_err(|e| format!("kernel '{}': {e}", kernel.name))?;
        module
            .define_function(id, &mut ctx)
            .map_err(|e| format!("kernel '{}': cranelift: {e:?}", kernel.name))?;
        module.clear_context(&mut ctx);
        ids.push(Some(id));
    }
    module
        .finalize_definitions()
        .map_err(|e| format!("cranelift: {e}"))?;
    let fns = ids
        .into_iter()
        .map(|id| {
            id.map(|id| {
                let ptr = module.get_finalized_function(id);
                // SAFETY: every kernel has the `KernelFn` signature.
                unsafe { std::mem::transmute::<*const u8, KernelFn>(ptr) }
            })
        })
        .collect();
    Ok((
        ClifCode {
            module: Some(module),
        },
        fns,
    ))
}
