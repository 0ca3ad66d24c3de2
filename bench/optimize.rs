//! Optimizer benchmark (not a test): imports each example model, then times the
//! e-graph optimizer on it and reports the median time, the e-graph size and the
//! process's peak memory. Run with `cargo bench --bench optimize` after
//! `scripts/models`.

use kiln::{Bindings, Model};
use kiln_ir::Target;
use std::path::Path;
use std::time::Instant;

/// Peak resident memory of this process in MiB (Linux), if known.
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    println!(
        "{:<14}{:>12}{:>10}{:>10}{:>10}{:>12}",
        "model", "median_ms", "min_ms", "enodes", "kernels", "peak_MiB"
    );
    for name in [
        "mlp",
        "gpt2_block",
        "gpt2_4layers",
        "resnet_block",
        "small_cnn",
    ] {
        let path = dir.join(format!("{name}.onnx"));
        if !path.is_file() {
            eprintln!("skipping {name}: run scripts/models first");
            continue;
        }
        let mut b = Bindings::default();
        b.dims.insert("batch".into(), 1);
        let model = Model::load(&path, &b).expect("example models import");
        let target = Target::cpu_default();
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..7 {
            let t0 = Instant::now();
            let o = kiln_passes::optimize(&model.graph, &target, &kiln_passes::Options::default())
                .expect("optimizes");
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            last = Some(o);
        }
        times.sort_by(f64::total_cmp);
        let o = last.expect("ran");
        let enodes = o.phases.last().map_or(0, |p| p.nodes);
        let kernels = kiln_passes::graph_cost(&o.graph, &target).kernels;
        println!(
            "{name:<14}{:>12.1}{:>10.1}{enodes:>10}{kernels:>10}{:>12.0}",
            times[times.len() / 2],
            times[0],
            peak_rss_mib().unwrap_or(f64::NAN)
        );
    }
}
