//! Running a lowered program: the thread pool, 64-byte aligned memory, and the
//! executor that binds slots to memory and calls compiled kernels (shared by
//! the CPU backends).

mod exec;
mod mem;
mod pool;
mod steps;

pub use exec::Executor;
pub use mem::AlignedBuf;
pub use pool::Pool;
pub use steps::{ordered_inputs, StepTimes};

/// A compiled kernel's entry: buffer pointers, the task range `lo..hi`, and
/// this thread's scratch memory.
pub type KernelFn = unsafe extern "C" fn(*const *mut u8, i64, i64, *mut u8);
