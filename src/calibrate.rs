//! `kiln calibrate`: measures this CPU's peak f32 FLOP/s (register-resident FMA
//! chains on every core) and memory bandwidth (streaming reads of a buffer much
//! larger than the caches, on every core), and stores them as JSON where the
//! compiler looks for the CPU's cost parameters: `$KILN_CPU_TARGET`, else
//! `$XDG_CONFIG_HOME/kiln/cpu.json`, else `~/.config/kiln/cpu.json`.

use crate::Error;
use kiln_ir::Target;
use std::path::PathBuf;
use std::time::Instant;

/// Where the calibrated CPU parameters live, if a location can be named.
pub fn cpu_target_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KILN_CPU_TARGET") {
        return Some(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
    };
    Some(base.join("kiln").join("cpu.json"))
}

/// The CPU's cost parameters: calibrated ones when stored, else the defaults.
/// A stored file that cannot be read as calibration is an error (it names the file).
pub fn cpu_target() -> Result<Target, Error> {
    let mut t = Target::cpu_default();
    t.cores = cores();
    let Some(path) = cpu_target_path().filter(|p| p.is_file()) else {
        return Ok(t);
    };
    let bad = |m: String| {
        Error::Usage(format!(
            "{}: {m}; run `kiln calibrate` again",
            path.display()
        ))
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let num = |k: &str| {
        v[k].as_f64()
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| bad(format!("'{k}' must be a positive number")))
    };
    t.peak_f32 = num("peak_f32")?;
    t.peak_f16 = t.peak_f32;
    t.peak_f64 = t.peak_f32 / 2.0;
    t.bandwidth = num("bandwidth")?;
    t.cores = num("cores")? as usize;
    Ok(t)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// FMA work of one core: 12 independent 8-wide accumulators (enough to cover
/// FMA latency on two pipes), `iters` rounds. Returns the flops done.
fn fma_core(iters: usize) -> f64 {
    let mut acc = [[1.0f32; 8]; 12];
    let (a, b) = (
        std::hint::black_box([0.999_999f32; 8]),
        std::hint::black_box([1e-7f32; 8]),
    );
    for _ in 0..iters {
        for v in acc.iter_mut() {
            for l in 0..8 {
                v[l] = v[l].mul_add(a[l], b[l]);
            }
        }
    }
    std::hint::black_box(acc);
    (iters * 12 * 8 * 2) as f64
}

/// Streams through `buf` `rounds` times; returns the bytes read.
fn read_core(buf: &[f32], rounds: usize) -> f64 {
    let mut s = [0.0f32; 16];
    for _ in 0..rounds {
        for c in buf.chunks_exact(16) {
            for l in 0..16 {
                s[l] += c[l];
            }
        }
    }
    std::hint::black_box(s);
    (buf.len() * 4 * rounds) as f64
}

/// Runs `f` (one unit of work, returning its size) repeatedly on every core at
/// once for about 0.2 s, and returns the best total rate of 3 tries.
fn on_all_cores(n: usize, f: impl Fn(usize) -> f64 + Sync) -> f64 {
    (0..3)
        .map(|_| {
            let t0 = Instant::now();
            let work: f64 = std::thread::scope(|s| {
                let hs: Vec<_> = (0..n)
                    .map(|i| {
                        let f = &f;
                        s.spawn(move || {
                            let mut w = 0.0;
                            while t0.elapsed().as_secs_f64() < 0.2 {
                                w += f(i);
                            }
                            w
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
            });
            work / t0.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_core_avx2(iters: usize) -> f64 {
    fma_core(iters)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn read_core_avx2(buf: &[f32], rounds: usize) -> f64 {
    read_core(buf, rounds)
}

/// Measures and stores the CPU's parameters; returns them and where they went.
pub fn calibrate(out: Option<PathBuf>) -> Result<(Target, PathBuf), Error> {
    let n = cores();
    let iters = 100_000;
    #[cfg(target_arch = "x86_64")]
    let peak = if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the features were detected on this CPU just above.
        on_all_cores(n, |_| unsafe { fma_core_avx2(iters) })
    } else {
        on_all_cores(n, |_| fma_core(iters))
    };
    #[cfg(not(target_arch = "x86_64"))]
    let peak = on_all_cores(n, |_| fma_core(iters));
    let per = (64usize << 20) / 4;
    let bufs: Vec<Vec<f32>> = (0..n).map(|i| vec![i as f32 + 1.0; per]).collect();
    #[cfg(target_arch = "x86_64")]
    let bandwidth = if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the feature was detected on this CPU just above.
        on_all_cores(n, |i| unsafe { read_core_avx2(&bufs[i], 1) })
    } else {
        on_all_cores(n, |i| read_core(&bufs[i], 1))
    };
    #[cfg(not(target_arch = "x86_64"))]
    let bandwidth = on_all_cores(n, |i| read_core(&bufs[i], 1));
    let path = out.or_else(cpu_target_path).ok_or_else(|| {
        Error::Usage("no place to store the calibration: set HOME, XDG_CONFIG_HOME or KILN_CPU_TARGET, or pass --out".into())
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let json = serde_json::json!({ "peak_f32": peak, "bandwidth": bandwidth, "cores": n });
    std::fs::write(&path, format!("{json:#}\n")).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    let mut t = Target::cpu_default();
    t.peak_f32 = peak;
    t.bandwidth = bandwidth;
    t.cores = n;
    Ok((t, path))
}
