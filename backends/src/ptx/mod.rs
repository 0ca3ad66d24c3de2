//! The GPU backend's code generation: GPU kernels of the kernel IR (kernels
//! with a launch) to PTX through LLVM's NVPTX backend, for the architectures
//! in [`ARCHS`]. The LLVM IR comes from the same emitter as the CPU
//! backend's (`llvm::emit::gpu_kernel`), so expressions mean the same on both.

use crate::llvm::{self, CpuSpec};
use kiln_ir::kernel::Kernel;
use kiln_passes::lower::{Program, Step};

/// The GPU architectures kiln emits PTX for.
pub use crate::target::GPU_ARCHS as ARCHS;

/// A GPU architecture by name (`sm_80`, ..): the NVPTX target for it. LLVM
/// picks the PTX version the architecture needs (7.0 for sm_80 up to 8.0
/// for sm_90a).
pub fn arch(name: &str) -> Result<CpuSpec, String> {
    if !ARCHS.contains(&name) {
        return Err(format!(
            "unknown GPU architecture '{name}'; kiln emits PTX for {}",
            ARCHS.join(", ")
        ));
    }
    Ok(CpuSpec {
        triple: "nvptx64-nvidia-cuda".into(),
        cpu: name.into(),
        features: String::new(),
    })
}

/// The kernels as one LLVM IR module for `arch` (before optimization);
/// each kernel with the buffers that share memory with another.
fn module_of(
    kernels: &[(&Kernel, Vec<kiln_ir::kernel::BufId>)],
    arch: &CpuSpec,
) -> Result<String, String> {
    let mut m = llvm::emit::Module::default();
    for (k, aliased) in kernels {
        llvm::emit::gpu_kernel(&mut m, k, aliased)?;
    }
    let mut text = format!("target triple = \"{}\"\n\n", arch.triple);
    text.push_str(&m.finish(&arch.cpu, &arch.features));
    Ok(text)
}

/// Stand-alone kernels (no buffer shares memory) as one LLVM IR module.
pub fn module_text(kernels: &[&Kernel], arch: &CpuSpec) -> Result<String, String> {
    let ks: Vec<_> = kernels.iter().map(|k| (*k, Vec::new())).collect();
    module_of(&ks, arch)
}

/// Stand-alone kernels as one PTX module for `arch` (optimized at O3).
pub fn ptx(kernels: &[&Kernel], arch: &CpuSpec) -> Result<String, String> {
    let text = module_text(kernels, arch)?;
    llvm::optimized_text(&text, arch).map(|(_, asm)| asm)
}

/// A mapped program's kernels as one LLVM IR module for `arch`; buffers
/// the memory plan runs in place lose `noalias`.
pub fn program_module_text(p: &Program, arch: &CpuSpec) -> Result<String, String> {
    let ks: Vec<_> = p
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, st)| match st {
            Step::Kernel { kernel, .. } => Some((kernel, llvm::aliased(p, i))),
            Step::Host { .. } => None,
        })
        .collect();
    module_of(&ks, arch)
}

/// A mapped program's kernels as one PTX module for `arch`.
pub fn program_ptx(p: &Program, arch: &CpuSpec) -> Result<String, String> {
    let text = program_module_text(p, arch)?;
    llvm::optimized_text(&text, arch).map(|(_, asm)| asm)
}
