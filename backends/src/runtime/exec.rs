//! The executor of a lowered program with compiled kernels: constants copied
//! once into aligned memory, one arena for every intermediate (the memory
//! plan's offsets), per-thread scratch, kernels split into tasks over the pool,
//! and host steps run by the reference semantics.

use super::{AlignedBuf, KernelFn, Pool};
use bytes::Bytes;
use kiln_ir::Tensor;
use kiln_passes::lower::{Program, SlotKind, Step};
use std::any::Any;
use std::sync::Mutex;

impl crate::Executable for Executor {
    fn run(
        &self,
        inputs: &std::collections::HashMap<String, Tensor>,
    ) -> Result<Vec<Tensor>, crate::TargetError> {
        self.run_named(inputs).map_err(crate::TargetError::Backend)
    }

    fn take_step_times(&self) -> Vec<(String, f64)> {
        self.take_times()
    }
}

/// A program ready to run: its code, constants, memory and threads.
pub struct Executor {
    program: Program,
    fns: Vec<Option<KernelFn>>,
    consts: Vec<Option<AlignedBuf>>,
    memory: Mutex<(AlignedBuf, AlignedBuf)>,
    scratch_stride: usize,
    pool: Pool,
    /// Seconds spent in each step, summed over runs (`kiln bench --profile`).
    times: super::StepTimes,
    /// Whatever owns the machine code behind `fns`.
    _code: Box<dyn Any + Send + Sync>,
}

/// Pointers to pass to a kernel, shared by the threads that run it.
struct Args(Vec<*mut u8>);
// SAFETY: the pointers are into memory the executor owns or borrows for the
// whole run; kernels write disjoint parts of their outputs per task.
unsafe impl Sync for Args {}

impl Executor {
    /// Binds a program to its compiled kernel entries (one per step, `None`
    /// for host steps) and the object that keeps them alive.
    pub fn new(
        program: Program,
        fns: Vec<Option<KernelFn>>,
        threads: usize,
        code: Box<dyn Any + Send + Sync>,
    ) -> Result<Executor, String> {
        let used = program.used_slots();
        let consts = program
            .slots
            .iter()
            .zip(&used)
            .map(|(s, &u)| match &s.kind {
                SlotKind::Const(t) if u => Some(AlignedBuf::from_bytes(t.bytes())),
                _ => None,
            })
            .collect();
        for (i, s) in program.slots.iter().enumerate() {
            if s.kind == SlotKind::Temp && program.plan.offsets[i].is_none() && s.ty.numel() > 0 {
                let written = program.steps.iter().any(|st| match st {
                    Step::Kernel { args, .. } => {
                        args.iter().any(|a| a.map(|a| program.root(a)) == Some(i))
                    }
                    Step::Host { outputs, .. } => outputs.iter().any(|&o| program.root(o) == i),
                });
                if written {
                    return Err(format!("slot '{}' has no place in the memory plan", s.name));
                }
            }
        }
        let scratch = program
            .kernels()
            .map(|k| k.scratch_bytes())
            .max()
            .unwrap_or(0)
            .div_ceil(64)
            * 64;
        let pool = Pool::new(threads);
        let memory = Mutex::new((
            AlignedBuf::zeroed(program.plan.arena_bytes),
            AlignedBuf::zeroed(scratch * pool.threads()),
        ));
        Ok(Executor {
            program,
            fns,
            consts,
            memory,
            scratch_stride: scratch,
            pool,
            times: super::StepTimes::default(),
            _code: code,
        })
    }

    /// The program this runs.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Threads kernels run on.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Seconds spent in each step so far, summed over runs, with the step's
    /// name; and resets the sums.
    pub fn take_times(&self) -> Vec<(String, f64)> {
        self.times.take(&self.program)
    }

    /// Runs on inputs by name; returns the outputs in order.
    pub fn run_named(
        &self,
        inputs: &std::collections::HashMap<String, Tensor>,
    ) -> Result<Vec<Tensor>, String> {
        self.run(&super::ordered_inputs(&self.program, inputs)?)
    }

    /// Runs on the graph inputs (in order); returns the outputs in order.
    pub fn run(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let p = &self.program;
        if inputs.len() != p.inputs.len() {
            return Err(format!(
                "the program takes {} inputs, got {}",
                p.inputs.len(),
                inputs.len()
            ));
        }
        let mut owned: Vec<Option<AlignedBuf>> = (0..p.slots.len()).map(|_| None).collect();
        for (&s, t) in p.inputs.iter().zip(inputs) {
            let want = &p.slots[s].ty;
            if &t.ty() != want {
                return Err(format!(
                    "input '{}' must be {want}, got {}",
                    p.slots[s].name,
                    t.ty()
                ));
            }
            owned[s] = Some(AlignedBuf::from_bytes(t.bytes()));
        }
        let mut mem = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let (arena, scratch) = &mut *mem;
        let ptr = |s: usize| -> *mut u8 {
            let r = p.root(s);
            match (&p.slots[r].kind, p.plan.offsets[r]) {
                (SlotKind::Input(_), _) => {
                    owned[r].as_ref().map_or(std::ptr::null_mut(), |b| b.ptr())
                }
                (SlotKind::Const(_), _) => self.consts[r]
                    .as_ref()
                    .map_or(std::ptr::null_mut(), |b| b.ptr()),
                // SAFETY: the plan keeps every offset inside the arena.
                (_, Some(o)) => unsafe { arena.ptr().add(o) },
                _ => std::ptr::null_mut(),
            }
        };
        let bytes_of = |s: usize| p.slots[s].ty.numel() * p.slots[s].ty.dtype.size();
        let scratch_base = scratch.ptr() as usize;
        let mut times = vec![0.0; p.steps.len()];
        for ((st, f), time) in p.steps.iter().zip(&self.fns).zip(&mut times) {
            let t0 = std::time::Instant::now();
            match (st, f) {
                (Step::Kernel { kernel, args }, Some(f)) => {
                    let a = Args(
                        args.iter()
                            .map(|a| a.map_or(std::ptr::null_mut(), ptr))
                            .collect(),
                    );
                    let tasks = kernel.tasks().max(1);
                    let stride = self.scratch_stride;
                    let call = |t: usize, lo: usize, hi: usize| {
                        let a = &a;
                        // SAFETY: `a` points at buffers of the kernel's shapes,
                        // scratch holds `stride` bytes per thread, and tasks
                        // `lo..hi` are this call's alone.
                        unsafe {
                            f(
                                a.0.as_ptr(),
                                lo as i64,
                                hi as i64,
                                (scratch_base as *mut u8).add(t * stride),
                            )
                        }
                    };
                    if kernel.schedule.parallel {
                        self.pool.run(tasks, &call);
                    } else {
                        call(0, 0, 1);
                    }
                }
                (
                    Step::Host {
                        name,
                        op,
                        inputs,
                        outputs,
                        ..
                    },
                    _,
                ) => {
                    let ts: Vec<Tensor> = inputs
                        .iter()
                        .map(|&s| {
                            let ty = &p.slots[s].ty;
                            // SAFETY: the slot's memory holds `bytes_of(s)` bytes.
                            let b = unsafe { std::slice::from_raw_parts(ptr(s), bytes_of(s)) };
                            Tensor::from_bytes(
                                ty.dtype,
                                ty.shape.clone(),
                                Bytes::copy_from_slice(b),
                            )
                        })
                        .collect::<Result<_, _>>()?;
                    let refs: Vec<&Tensor> = ts.iter().collect();
                    let outs = op
                        .def()
                        .eval(&refs)
                        .map_err(|e| format!("node '{name}': {e}"))?;
                    for (&o, t) in outputs.iter().zip(outs) {
                        let n = bytes_of(o);
                        if t.bytes().len() != n {
                            return Err(format!(
                                "node '{name}': output of {} bytes, expected {n}",
                                t.bytes().len()
                            ));
                        }
                        // SAFETY: the slot's memory holds `n` bytes, disjoint from `t`.
                        unsafe { std::ptr::copy_nonoverlapping(t.bytes().as_ptr(), ptr(o), n) };
                    }
                }
                (Step::Kernel { kernel, .. }, None) => {
                    return Err(format!("kernel '{}' was not compiled", kernel.name));
                }
            }
            *time = t0.elapsed().as_secs_f64();
        }
        self.times.add(&times);
        p.outputs
            .iter()
            .map(|&o| {
                let ty = &p.slots[o].ty;
                let n = bytes_of(o);
                let src = ptr(o);
                let b = if n == 0 {
                    Bytes::new()
                } else {
                    // SAFETY: the slot's memory holds `n` bytes.
                    Bytes::copy_from_slice(unsafe { std::slice::from_raw_parts(src, n) })
                };
                Tensor::from_bytes(ty.dtype, ty.shape.clone(), b)
            })
            .collect()
    }
}
