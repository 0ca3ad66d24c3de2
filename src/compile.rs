//! `kiln compile`: lowers a model for the CPU and writes what was asked for:
//! the kernel IR with the memory plan, the optimized LLVM IR, the assembly,
//! and the ahead-of-time artifact (an object file with a sequential
//! `kiln_<name>_run` entry, a C header, the weights file and a manifest);
//! or for a GPU architecture (`gpu`): the GPU kernel IR, the NVVM IR, and
//! the PTX with its weights and launch plan.

use crate::{Error, Model};
use kiln_backends::llvm::{self, CpuSpec};
use kiln_backends::TargetError;
use kiln_passes::lower::{lower, Program};
use std::path::{Path, PathBuf};

mod aot;
pub mod gpu;

/// What `kiln compile` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// `NAME.kir`: every kernel in kernel IR text, then the memory plan.
    KernelIr,
    /// `NAME.ll`: the optimized LLVM IR.
    Llvm,
    /// `NAME.s`: the assembly.
    Asm,
    /// `NAME.o`, `NAME.h`, `NAME.weights`, `NAME.json`: the AOT artifact.
    Object,
}

impl Emit {
    /// Parses a comma-separated `--emit` list.
    pub fn parse_list(s: &str) -> Result<Vec<Emit>, Error> {
        s.split(',')
            .map(|w| match w.trim() {
                "kernel-ir" => Ok(Emit::KernelIr),
                "llvm" => Ok(Emit::Llvm),
                "asm" => Ok(Emit::Asm),
                "obj" | "object" => Ok(Emit::Object),
                other => Err(Error::Usage(format!(
                    "--emit: unknown form '{other}'; forms: kernel-ir, llvm, asm, obj"
                ))),
            })
            .collect()
    }
}

/// The program a model lowers to for `spec` (optimized first if needed).
pub fn program(model: &Model, spec: &CpuSpec, threads: usize) -> Result<Program, Error> {
    let graph = optimized_graph(model)?;
    let opts = if spec.features.contains("+avx2") && spec.features.contains("+fma") {
        kiln_passes::lower::LowerOptions::avx2(threads.max(1))
    } else {
        kiln_passes::lower::LowerOptions::sse(threads.max(1))
    };
    Ok(lower(&graph, &opts))
}

/// A C identifier from a file stem.
pub fn c_name(stem: &str) -> String {
    let s = kiln_passes::lower::ident(stem);
    if s.starts_with(|c: char| c.is_ascii_digit()) || s.is_empty() {
        format!("m_{s}")
    } else {
        s
    }
}

fn write(path: PathBuf, bytes: &[u8]) -> Result<PathBuf, Error> {
    std::fs::write(&path, bytes).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

fn make_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// The constants `p` reads, end to end (each `align`-byte aligned), and
/// each slot's offset there.
pub(crate) fn weights(p: &Program, align: usize) -> (Vec<u8>, Vec<Option<usize>>) {
    let mut weights = Vec::new();
    let mut at = vec![None; p.slots.len()];
    let used = p.used_slots();
    for (i, s) in p.slots.iter().enumerate() {
        if let (kiln_passes::lower::SlotKind::Const(t), true) = (&s.kind, used[i]) {
            weights.resize(weights.len().next_multiple_of(align), 0);
            at[i] = Some(weights.len());
            weights.extend_from_slice(t.bytes());
        }
    }
    (weights, at)
}

fn backend(e: String) -> Error {
    Error::Target(TargetError::Backend(e))
}

/// Writes the asked-for forms of `model` into `dir` (created if missing);
/// returns the files written.
pub fn compile_to_dir(
    model: &Model,
    name: &str,
    emit: &[Emit],
    spec: &CpuSpec,
    dir: &Path,
) -> Result<Vec<PathBuf>, Error> {
    make_dir(dir)?;
    let name = c_name(name);
    let p = program(model, spec, 1)?;
    let mut files = Vec::new();
    if emit.contains(&Emit::KernelIr) {
        files.push(write(
            dir.join(format!("{name}.kir")),
            kernel_ir_text(&p).as_bytes(),
        )?);
    }
    if emit.contains(&Emit::Llvm) || emit.contains(&Emit::Asm) {
        let text = llvm::module_text(&p, spec).map_err(backend)?;
        let (ir, asm) = llvm::optimized_text(&text, spec).map_err(backend)?;
        if emit.contains(&Emit::Llvm) {
            files.push(write(dir.join(format!("{name}.ll")), ir.as_bytes())?);
        }
        if emit.contains(&Emit::Asm) {
            files.push(write(dir.join(format!("{name}.s")), asm.as_bytes())?);
        }
    }
    if emit.contains(&Emit::Object) {
        let a = aot::build(&p, &name, model, spec).map_err(backend)?;
        files.push(write(dir.join(format!("{name}.o")), &a.object)?);
        files.push(write(dir.join(format!("{name}.h")), a.header.as_bytes())?);
        files.push(write(dir.join(format!("{name}.weights")), &a.weights)?);
        files.push(write(
            dir.join(format!("{name}.json")),
            a.manifest.as_bytes(),
        )?);
    }
    Ok(files)
}

/// The optimized graph of `model` (optimized for this CPU's cost model
/// unless `optimize` already ran).
fn optimized_graph(model: &Model) -> Result<kiln_ir::Graph, Error> {
    if model.optimized {
        return Ok(model.graph.clone());
    }
    let t = crate::calibrate::cpu_target()?;
    Ok(kiln_passes::optimize(&model.graph, &t, &kiln_passes::Options::default())?.graph)
}

/// Writes the asked-for forms of `model` for GPU architecture `arch` into
/// `dir`: `NAME.kir` (GPU kernel IR and memory plan), `NAME.ll` (optimized
/// NVVM IR), `NAME.ptx` (asm), and for obj the PTX with `NAME.weights` and
/// the launch plan `NAME.json`. Returns the files written.
pub fn compile_gpu_to_dir(
    model: &Model,
    name: &str,
    emit: &[Emit],
    arch: &str,
    dir: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let spec = kiln_backends::ptx::arch(arch).map_err(Error::Usage)?;
    make_dir(dir)?;
    let name = c_name(name);
    let p = gpu::program(&optimized_graph(model)?).map_err(backend)?;
    let mut files = Vec::new();
    if emit.contains(&Emit::KernelIr) {
        files.push(write(
            dir.join(format!("{name}.kir")),
            kernel_ir_text(&p).as_bytes(),
        )?);
    }
    if emit.contains(&Emit::Llvm) {
        let text = kiln_backends::ptx::program_module_text(&p, &spec).map_err(backend)?;
        let (ir, _) = llvm::optimized_text(&text, &spec).map_err(backend)?;
        files.push(write(dir.join(format!("{name}.ll")), ir.as_bytes())?);
    }
    if emit.contains(&Emit::Object) {
        let b = gpu::build(&p, &name, model, arch).map_err(backend)?;
        files.push(write(dir.join(format!("{name}.ptx")), b.ptx.as_bytes())?);
        files.push(write(dir.join(format!("{name}.weights")), &b.weights)?);
        files.push(write(
            dir.join(format!("{name}.json")),
            b.manifest.as_bytes(),
        )?);
    } else if emit.contains(&Emit::Asm) {
        let ptx = kiln_backends::ptx::program_ptx(&p, &spec).map_err(backend)?;
        files.push(write(dir.join(format!("{name}.ptx")), ptx.as_bytes())?);
    }
    Ok(files)
}

/// Every kernel in kernel IR text, then the memory plan as comments.
fn kernel_ir_text(p: &Program) -> String {
    let mut text = String::new();
    for k in p.kernels() {
        text.push_str(&k.to_string());
        text.push('\n');
    }
    text.push_str("// memory plan\n");
    for line in p.plan_text().lines() {
        text.push_str("// ");
        text.push_str(line);
        text.push('\n');
    }
    text
}
