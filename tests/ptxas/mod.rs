//! ptxas for the tests: the one scripts/setup installs into the project venv
//! (the `nvidia-cuda-nvcc` wheel) or `KILN_PTXAS`; assembling a PTX module
//! and reading its `-v` report (registers and spills per kernel).

use std::path::PathBuf;
use std::process::Command;

/// ptxas: `KILN_PTXAS`, else the one scripts/setup put in `.venv`.
pub fn ptxas() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_PTXAS") {
        return p.into();
    }
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|py| {
        py.flatten().find_map(|d| {
            let nv = d.path().join("site-packages/nvidia");
            std::fs::read_dir(nv).ok()?.flatten().find_map(|c| {
                let p = c.path().join("bin/ptxas");
                p.is_file().then_some(p)
            })
        })
    });
    found.unwrap_or_else(|| {
        panic!(
            "no ptxas under {}: run scripts/setup (installs nvidia-cuda-nvcc into .venv) \
             or set KILN_PTXAS",
            lib.display()
        )
    })
}

/// What ptxas reported for one kernel.
#[derive(Debug, Default)]
pub struct Report {
    pub registers: usize,
    pub spill_bytes: usize,
}

/// Assembles `ptx` for `arch`; panics with ptxas's message if it refuses.
/// Returns the `-v` report per kernel.
pub fn assemble(name: &str, ptx: &str, arch: &str) -> Vec<(String, Report)> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ptx");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}.{arch}.ptx"));
    std::fs::write(&src, ptx).unwrap();
    let out = Command::new(ptxas())
        .arg(format!("-arch={arch}"))
        .arg("-v")
        .arg(&src)
        .arg("-o")
        .arg(dir.join(format!("{name}.{arch}.cubin")))
        .output()
        .expect("ptxas runs");
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ptxas -arch={arch} refused {name}:\n{log}\n{ptx}"
    );
    let mut reports: Vec<(String, Report)> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let k = rest.split('\'').next().unwrap_or_default().to_string();
            reports.push((k, Report::default()));
        } else if let Some((_, r)) = reports.last_mut() {
            let num = |key: &str| -> usize {
                line.split(key)
                    .next()
                    .and_then(|a| a.split_whitespace().last())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            if line.contains("spill stores") {
                r.spill_bytes += num(" bytes spill stores") + num(" bytes spill loads");
            }
            if line.contains("Used ") {
                r.registers = line
                    .split("Used ")
                    .nth(1)
                    .and_then(|a| a.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            }
        }
    }
    reports
}
