//! The `cuda` target: the graph lowered and mapped to GPU kernels, their PTX
//! (for the device's architecture, or the one asked for) loaded through the
//! CUDA driver, which cudarc opens at run time (building kiln needs no CUDA;
//! where no driver or GPU is found the target says so). Constants are copied
//! to the device once; each run copies the inputs in, launches every kernel
//! in order on one stream with the plan's grid and block, and copies the
//! outputs back. Intermediates live in one device arena placed by the same
//! memory plan as on the CPU.

use crate::runtime::{ordered_inputs, StepTimes};
use crate::{Backend, Executable, TargetError};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use kiln_ir::kernel::Role;
use kiln_ir::{Graph, Tensor};
use kiln_passes::lower::{lower, LowerOptions, Program, SlotKind, Step};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Compiles graphs for the first CUDA device.
pub struct CudaBackend {
    /// The architecture to emit for; `None`: the device's own.
    pub arch: Option<&'static str>,
}

fn err(what: &str, e: impl std::fmt::Display) -> TargetError {
    TargetError::Backend(format!("cuda: {what}: {e}"))
}

/// The newest architecture kiln emits that a device of compute capability
/// `major.minor` runs.
fn arch_for(major: i32, minor: i32) -> Result<&'static str, TargetError> {
    Ok(match (major, minor) {
        (9, _) | (10.., _) => "sm_90",
        (8, 9) => "sm_89",
        (8, 6..=8) => "sm_86",
        (8, _) => "sm_80",
        _ => {
            return Err(TargetError::Backend(format!(
                "cuda: the device has compute capability {major}.{minor}; kiln's GPU kernels need sm_80 or newer"
            )))
        }
    })
}

/// A program loaded on the device.
pub struct CudaExecutable {
    program: Program,
    stream: Arc<CudaStream>,
    /// Each step's kernel.
    funcs: Vec<Option<CudaFunction>>,
    /// Each constant slot's device copy.
    consts: Vec<Option<CudaSlice<u8>>>,
    arena: Mutex<CudaSlice<u8>>,
    times: StepTimes,
}

impl CudaBackend {
    /// Lowers, maps, emits PTX and loads it with the constants on device 0.
    pub fn executable(&self, graph: &Graph) -> Result<CudaExecutable, TargetError> {
        graph.verify()?;
        // SAFETY: only tries to open the driver library (cudarc panics
        // instead of failing when a later call finds none).
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(TargetError::Backend(
                "cuda: no NVIDIA driver found (libcuda.so is loaded at run time; is this a machine with an NVIDIA GPU and its driver?)"
                    .into(),
            ));
        }
        let ctx = CudaContext::new(0).map_err(|e| {
            err(
                "no usable NVIDIA GPU (the driver library libcuda is loaded at run time)",
                e,
            )
        })?;
        let arch = match self.arch {
            Some(a) => a,
            None => {
                let (major, minor) = ctx
                    .compute_capability()
                    .map_err(|e| err("compute capability", e))?;
                arch_for(major, minor)?
            }
        };
        let p = lower(graph, &LowerOptions::gpu());
        let p = kiln_passes::gpu::map_program(&p).map_err(TargetError::Backend)?;
        for st in &p.steps {
            if let Step::Host { name, reason, .. } = st {
                return Err(TargetError::Backend(format!(
                    "cuda: node '{name}' has no GPU kernel ({reason})"
                )));
            }
        }
        let spec = crate::ptx::arch(arch).map_err(TargetError::Backend)?;
        let text = crate::ptx::program_ptx(&p, &spec).map_err(TargetError::Backend)?;
        let module = ctx
            .load_module(Ptx::from_src(text))
            .map_err(|e| err(&format!("loading the PTX for {arch}"), e))?;
        let funcs = p
            .steps
            .iter()
            .map(|st| match st {
                Step::Kernel { kernel, .. } => module
                    .load_function(&kernel.name)
                    .map(Some)
                    .map_err(|e| err(&format!("kernel '{}'", kernel.name), e)),
                Step::Host { .. } => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stream = ctx.default_stream();
        let used = p.used_slots();
        let mut consts = Vec::new();
        for (i, s) in p.slots.iter().enumerate() {
            consts.push(match (&s.kind, used[i]) {
                (SlotKind::Const(t), true) if !t.bytes().is_empty() => Some(
                    stream
                        .clone_htod(&t.bytes()[..])
                        .map_err(|e| err("copying constants", e))?,
                ),
                _ => None,
            });
        }
        let arena = stream
            .alloc_zeros::<u8>(p.plan.arena_bytes.max(1))
            .map_err(|e| err("allocating the arena", e))?;
        Ok(CudaExecutable {
            program: p,
            stream,
            funcs,
            consts,
            arena: Mutex::new(arena),
            times: StepTimes::default(),
        })
    }
}

impl Backend for CudaBackend {
    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>, TargetError> {
        Ok(Box::new(self.executable(graph)?))
    }
}

impl CudaExecutable {
    /// Runs on the graph inputs (in order); returns the outputs in order.
    pub fn run_ordered(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, TargetError> {
        let p = &self.program;
        let s = &self.stream;
        if inputs.len() != p.inputs.len() {
            return Err(TargetError::Backend(format!(
                "the program takes {} inputs, got {}",
                p.inputs.len(),
                inputs.len()
            )));
        }
        let mut ins: Vec<Option<CudaSlice<u8>>> = (0..p.slots.len()).map(|_| None).collect();
        for (&slot, t) in p.inputs.iter().zip(inputs) {
            let want = &p.slots[slot].ty;
            if &t.ty() != want {
                return Err(TargetError::Backend(format!(
                    "input '{}' must be {want}, got {}",
                    p.slots[slot].name,
                    t.ty()
                )));
            }
            if !t.bytes().is_empty() {
                ins[slot] = Some(
                    s.clone_htod(&t.bytes()[..])
                        .map_err(|e| err("input copy", e))?,
                );
            }
        }
        let arena = self.arena.lock().unwrap_or_else(|e| e.into_inner());
        let (arena_ptr, _sync) = arena.device_ptr(s);
        let mut guards = Vec::new();
        let mut in_ptr = vec![0u64; ins.len()];
        let mut const_ptr = vec![0u64; self.consts.len()];
        for (bufs, ptrs) in [(&ins, &mut in_ptr), (&self.consts, &mut const_ptr)] {
            for (b, p) in bufs.iter().zip(ptrs.iter_mut()) {
                if let Some(b) = b {
                    let (ptr, g) = b.device_ptr(s);
                    guards.push(g);
                    *p = ptr;
                }
            }
        }
        let ptr = |slot: usize| -> u64 {
            let r = p.root(slot);
            match (&p.slots[r].kind, p.plan.offsets[r]) {
                (SlotKind::Input(_), _) => in_ptr[r],
                (SlotKind::Const(_), _) => const_ptr[r],
                (_, Some(o)) => arena_ptr + o as u64,
                _ => 0,
            }
        };
        let mut times = vec![0.0; p.steps.len()];
        for ((st, f), time) in p.steps.iter().zip(&self.funcs).zip(&mut times) {
            let (Step::Kernel { kernel, args }, Some(f)) = (st, f) else {
                continue;
            };
            let launch = kernel.schedule.launch.ok_or_else(|| {
                TargetError::Backend(format!("kernel '{}' is not a GPU kernel", kernel.name))
            })?;
            let params: Vec<u64> = kernel
                .bufs
                .iter()
                .zip(args)
                .filter(|(b, _)| matches!(b.role, Role::In | Role::Out))
                .map(|(b, a)| match a.map(ptr) {
                    Some(at) if at != 0 => Ok(at),
                    _ => Err(TargetError::Backend(format!(
                        "kernel '{}': buffer '%{}' has no device memory",
                        kernel.name, b.name
                    ))),
                })
                .collect::<Result<_, _>>()?;
            let dim = |d: [usize; 3]| (d[0] as u32, d[1] as u32, d[2] as u32);
            let cfg = LaunchConfig {
                grid_dim: dim(launch.grid),
                block_dim: dim(launch.block),
                shared_mem_bytes: 0,
            };
            let t0 = std::time::Instant::now();
            let mut b = s.launch_builder(f);
            for v in &params {
                b.arg(v);
            }
            // SAFETY: the kernel's parameters are one device pointer per
            // global buffer in order, each to memory of the buffer's size.
            unsafe { b.launch(cfg) }
                .map_err(|e| err(&format!("launching '{}'", kernel.name), e))?;
            s.synchronize()
                .map_err(|e| err(&format!("running '{}'", kernel.name), e))?;
            *time = t0.elapsed().as_secs_f64();
        }
        drop(guards);
        self.times.add(&times);
        let mut outs = Vec::new();
        for &o in &p.outputs {
            let ty = &p.slots[o].ty;
            let n = ty.numel() * ty.dtype.size();
            let mut host = vec![0u8; n];
            if n > 0 {
                let r = p.root(o);
                let src = match (&p.slots[r].kind, p.plan.offsets[r]) {
                    (SlotKind::Input(_), _) => ins[r].as_ref().map(|b| b.slice(..n)),
                    (SlotKind::Const(_), _) => self.consts[r].as_ref().map(|b| b.slice(..n)),
                    (_, Some(off)) => Some(arena.slice(off..off + n)),
                    _ => None,
                }
                .ok_or_else(|| {
                    TargetError::Backend(format!("output '{}' has no memory", p.slots[o].name))
                })?;
                s.memcpy_dtoh(&src, &mut host)
                    .map_err(|e| err("output copy", e))?;
            }
            outs.push(
                Tensor::from_bytes(ty.dtype, ty.shape.clone(), bytes::Bytes::from(host))
                    .map_err(TargetError::Backend)?,
            );
        }
        Ok(outs)
    }
}

impl Executable for CudaExecutable {
    fn run(&self, inputs: &HashMap<String, Tensor>) -> Result<Vec<Tensor>, TargetError> {
        let ordered = ordered_inputs(&self.program, inputs).map_err(TargetError::Backend)?;
        self.run_ordered(&ordered)
    }

    fn take_step_times(&self) -> Vec<(String, f64)> {
        self.times.take(&self.program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_follow_compute_capability() {
        assert_eq!(arch_for(8, 0).unwrap(), "sm_80");
        assert_eq!(arch_for(8, 6).unwrap(), "sm_86");
        assert_eq!(arch_for(8, 9).unwrap(), "sm_89");
        assert_eq!(arch_for(9, 0).unwrap(), "sm_90");
        assert_eq!(arch_for(12, 0).unwrap(), "sm_90");
        let e = arch_for(7, 5).unwrap_err().to_string();
        assert!(e.contains("7.5") && e.contains("sm_80"), "{e}");
    }
}
