//! The LLVM CPU backend (`cpu-llvm`): a lowered program's kernels become one
//! LLVM module (textual IR from [`emit`]), optimized at O3 for the host CPU
//! and compiled in memory (JIT) or to an object file (AOT).

pub(crate) mod emit;
mod gemm;
mod math;

use crate::runtime::KernelFn;
use inkwell::context::Context;
use inkwell::execution_engine::ExecutionEngine;
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::module::Module;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target as LlvmTarget, TargetMachine,
    TargetTriple,
};
use inkwell::OptimizationLevel;
use kiln_ir::kernel::{BufId, Kernel};
use kiln_passes::lower::{Program, Step};
use std::mem::ManuallyDrop;

/// The machine code is for: a triple, a CPU name and its features.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuSpec {
    pub triple: String,
    pub cpu: String,
    pub features: String,
}

impl CpuSpec {
    /// The machine kiln runs on.
    pub fn host() -> Result<CpuSpec, String> {
        init()?;
        Ok(CpuSpec {
            triple: TargetMachine::get_default_triple()
                .as_str()
                .to_string_lossy()
                .into_owned(),
            cpu: TargetMachine::get_host_cpu_name().to_string(),
            features: TargetMachine::get_host_cpu_features().to_string(),
        })
    }

    /// Portable x86-64 with AVX2 and FMA (x86-64-v3): the AOT default.
    pub fn x86_64_v3() -> CpuSpec {
        CpuSpec {
            triple: "x86_64-unknown-linux-gnu".into(),
            cpu: "x86-64-v3".into(),
            features: "+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+lzcnt,+movbe,+popcnt,+sse4.2".into(),
        }
    }

    fn machine(&self, reloc: RelocMode, model: CodeModel) -> Result<TargetMachine, String> {
        init()?;
        let triple = TargetTriple::create(&self.triple);
        let t = LlvmTarget::from_triple(&triple)
            .map_err(|e| format!("target '{}': {e}", self.triple))?;
        t.create_target_machine(
            &triple,
            &self.cpu,
            &self.features,
            OptimizationLevel::Aggressive,
            reloc,
            model,
        )
        .ok_or_else(|| {
            format!(
                "LLVM has no target machine for {} ({})",
                self.triple, self.cpu
            )
        })
    }
}

fn init() -> Result<(), String> {
    LlvmTarget::initialize_nvptx(&InitializationConfig::default());
    LlvmTarget::initialize_native(&InitializationConfig::default())
}

/// Buffers of each kernel step that share memory with another (in-place).
pub(crate) fn aliased(p: &Program, step: usize) -> Vec<BufId> {
    let Step::Kernel { args, .. } = &p.steps[step] else {
        return Vec::new();
    };
    let roots: Vec<Option<usize>> = args.iter().map(|a| a.map(|s| p.root(s))).collect();
    (0..args.len())
        .filter(|&i| {
            roots[i].is_some()
                && roots
                    .iter()
                    .enumerate()
                    .any(|(j, r)| j != i && *r == roots[i])
        })
        .map(|i| BufId(i as u32))
        .collect()
}

/// The program's kernels as one LLVM IR module (before optimization).
pub fn module_text(p: &Program, spec: &CpuSpec) -> Result<String, String> {
    let mut m = emit::Module::default();
    for (i, st) in p.steps.iter().enumerate() {
        if let Step::Kernel { kernel, .. } = st {
            emit::kernel(&mut m, kernel, &aliased(p, i))?;
        }
    }
    let mut text = format!(
        "; kiln program '{}'\ntarget triple = \"{}\"\n\n",
        p.name.replace(['"', '\\'], "_"),
        spec.triple
    );
    text.push_str(&m.finish(&spec.cpu, &spec.features));
    Ok(text)
}

/// One kernel as LLVM IR text (for snapshots and `--emit llvm`).
pub fn kernel_text(k: &Kernel, spec: &CpuSpec) -> Result<String, String> {
    let mut m = emit::Module::default();
    emit::kernel(&mut m, k, &[])?;
    Ok(m.finish(&spec.cpu, &spec.features))
}

/// Parses and optimizes a module at O3 for `spec`.
fn optimized<'c>(ctx: &'c Context, text: &str, tm: &TargetMachine) -> Result<Module<'c>, String> {
    let buf = MemoryBuffer::create_from_memory_range_copy(text.as_bytes(), "kiln");
    let module = ctx
        .create_module_from_ir(buf)
        .map_err(|e| format!("LLVM rejected the emitted IR: {e}"))?;
    module.set_triple(&tm.get_triple());
    module.set_data_layout(&tm.get_target_data().get_data_layout());
    module
        .verify()
        .map_err(|e| format!("emitted IR does not verify: {e}"))?;
    module
        .run_passes("default<O3>", tm, PassBuilderOptions::create())
        .map_err(|e| format!("LLVM optimization failed: {e}"))?;
    Ok(module)
}

/// Optimized LLVM IR and assembly of a module (`kiln compile --emit`).
pub fn optimized_text(text: &str, spec: &CpuSpec) -> Result<(String, String), String> {
    let ctx = Context::create();
    let tm = spec.machine(RelocMode::PIC, CodeModel::Default)?;
    let module = optimized(&ctx, text, &tm)?;
    let asm = tm
        .write_to_memory_buffer(&module, FileType::Assembly)
        .map_err(|e| format!("LLVM code generation failed: {e}"))?;
    Ok((
        module.print_to_string().to_string(),
        String::from_utf8_lossy(asm.as_slice()).into_owned(),
    ))
}

/// A relocatable object file for `spec` (position-independent).
pub fn object(text: &str, spec: &CpuSpec) -> Result<Vec<u8>, String> {
    let ctx = Context::create();
    let tm = spec.machine(RelocMode::PIC, CodeModel::Default)?;
    let module = optimized(&ctx, text, &tm)?;
    let obj = tm
        .write_to_memory_buffer(&module, FileType::Object)
        .map_err(|e| format!("LLVM code generation failed: {e}"))?;
    Ok(obj.as_slice().to_vec())
}

/// Compiled code in memory: the execution engine, and the context it lives in.
pub struct Jit {
    engine: ManuallyDrop<ExecutionEngine<'static>>,
    ctx: *mut Context,
}

// SAFETY: the engine and its context are only touched through `&self` to look
// up addresses at compile time and dropped together; the machine code itself
// is immutable and may run on any thread.
unsafe impl Send for Jit {}
unsafe impl Sync for Jit {}

impl Drop for Jit {
    fn drop(&mut self) {
        // SAFETY: the engine borrows the context, so it goes first; the
        // context came from `Box::into_raw` in `Jit::compile`.
        unsafe {
            ManuallyDrop::drop(&mut self.engine);
            drop(Box::from_raw(self.ctx));
        }
    }
}

impl Jit {
    /// Compiles a module for the host and returns the code with the entry of
    /// each kernel step (`None` for host steps).
    pub fn compile(p: &Program) -> Result<(Jit, Vec<Option<KernelFn>>), String> {
        let spec = CpuSpec::host()?;
        let text = module_text(p, &spec)?;
        let tm = spec.machine(RelocMode::Default, CodeModel::JITDefault)?;
        let ctx = Box::into_raw(Box::new(Context::create()));
        // SAFETY: `ctx` lives until `Jit` drops, after the engine.
        let ctx_ref: &'static Context = unsafe { &*ctx };
        let built = optimized(ctx_ref, &text, &tm).and_then(|module| {
            module
                .create_jit_execution_engine(OptimizationLevel::Aggressive)
                .map_err(|e| format!("LLVM JIT: {e}"))
        });
        let engine = match built {
            Ok(e) => e,
            Err(e) => {
                // SAFETY: nothing borrows the context any more.
                unsafe { drop(Box::from_raw(ctx)) };
                return Err(e);
            }
        };
        let jit = Jit {
            engine: ManuallyDrop::new(engine),
            ctx,
        };
        let mut fns = Vec::new();
        for st in &p.steps {
            fns.push(match st {
                Step::Kernel { kernel, .. } => {
                    let addr = jit.engine.get_function_address(&kernel.name).map_err(|e| {
                        format!("kernel '{}' missing from the JIT: {e}", kernel.name)
                    })?;
                    // SAFETY: every kernel entry has the `KernelFn` signature.
                    Some(unsafe { std::mem::transmute::<usize, KernelFn>(addr) })
                }
                Step::Host { .. } => None,
            });
        }
        Ok((jit, fns))
    }
}
