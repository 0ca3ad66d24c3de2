//! `kiln compile`: lowers a model for the CPU and writes what was asked for:
//! the kernel IR with the memory plan, the optimized LLVM IR, the assembly,
//! and the ahead-of-time artifact (an object file with a sequential
//! `kiln_<name>_run` entry, a C header, the weights file and a manifest).

use crate::{Error, Model};
use kiln_backends::llvm::{self, CpuSpec};
use kiln_backends::TargetError;
use kiln_passes::lower::{lower, Program};
use std::path::{Path, PathBuf};

mod aot;

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
    let graph = if model.optimized {
        model.graph.clone()
    } else {
        let t = crate::calibrate::cpu_target()?;
        kiln_passes::optimize(&model.graph, &t, &kiln_passes::Options::default())?.graph
    };
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
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let name = c_name(name);
    let p = program(model, spec, 1)?;
    let mut files = Vec::new();
    if emit.contains(&Emit::KernelIr) {
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
        files.push(write(dir.join(format!("{name}.kir")), text.as_bytes())?);
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
