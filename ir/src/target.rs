//! The description of a device that passes see: peak rates, memory bandwidth,
//! cache sizes and per-kernel launch overhead. Passes know a device only through
//! this data (the cost model reads it); `kiln calibrate` measures the CPU's.

use crate::DType;

/// Cost parameters of one device.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// A short name (`cpu`, `sm_90`, ...).
    pub name: String,
    /// Peak f32 operations per second (an FMA counts as two).
    pub peak_f32: f64,
    /// Peak f16 / bf16 operations per second (tensor cores where there are some).
    pub peak_f16: f64,
    /// Peak f64 operations per second.
    pub peak_f64: f64,
    /// Main-memory bandwidth in bytes per second.
    pub bandwidth: f64,
    /// Cache sizes in bytes, innermost first (L1, L2, L3 or shared memory, L2).
    pub caches: Vec<u64>,
    /// Fixed cost of launching one kernel, in seconds.
    pub launch_overhead: f64,
    /// Parallel workers (cores, SMs).
    pub cores: usize,
}

impl Target {
    /// Defaults for a 2-core AVX2+FMA x86-64 machine (the measured development
    /// machine); `kiln calibrate` replaces peak and bandwidth with measurements.
    pub fn cpu_default() -> Target {
        Target {
            name: "cpu".into(),
            peak_f32: 200e9,
            peak_f16: 200e9,
            peak_f64: 100e9,
            bandwidth: 37e9,
            caches: vec![32 << 10, 512 << 10, 32 << 20],
            launch_overhead: 2e-6,
            cores: 2,
        }
    }

    /// An NVIDIA H100 SXM (dense tensor-core bf16/f16, HBM3): documented defaults.
    pub fn h100() -> Target {
        Target {
            name: "sm_90".into(),
            peak_f32: 67e12,
            peak_f16: 989e12,
            peak_f64: 67e12,
            bandwidth: 3.35e12,
            caches: vec![228 << 10, 50 << 20],
            launch_overhead: 4e-6,
            cores: 132,
        }
    }

    /// A generic NPU with a scratchpad and DMA: documented defaults.
    pub fn npu_default() -> Target {
        Target {
            name: "npu".into(),
            peak_f32: 4e12,
            peak_f16: 64e12,
            peak_f64: 0.5e12,
            bandwidth: 200e9,
            caches: vec![4 << 20],
            launch_overhead: 10e-6,
            cores: 8,
        }
    }

    /// Peak operations per second for a dtype (integers run at the f32 rate).
    pub fn peak(&self, dtype: DType) -> f64 {
        match dtype {
            DType::F16 | DType::BF16 => self.peak_f16,
            DType::F64 => self.peak_f64,
            _ => self.peak_f32,
        }
    }

    /// Roofline time of a kernel in seconds: `max(flops / peak, bytes / bandwidth)
    /// + launch overhead`.
    pub fn kernel_time(&self, flops: u64, bytes: u64, dtype: DType) -> f64 {
        (flops as f64 / self.peak(dtype)).max(bytes as f64 / self.bandwidth) + self.launch_overhead
    }
}
