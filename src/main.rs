//! The `kiln` command line: inspect, run and print models.

use clap::{Args, Parser, Subcommand};
use kiln::{npy, Bindings, Error, Model, Target};
use kiln_ir::{ConstStyle, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "kiln: an ahead-of-time compiler for accelerator kernels"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show a model's inputs, outputs, op histogram, parameters and FLOPs.
    #[command(after_help = "Example:\n  kiln inspect models/small_cnn.onnx --dim batch=2 --json")]
    Inspect {
        #[command(flatten)]
        model: ModelArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Print the lowered program instead: each kernel or host step with its
        /// buffers' arena offsets, and the arena size.
        #[arg(long)]
        plan: bool,
    },
    /// Compile a model for the CPU: the AOT artifact, or the kernel IR, LLVM IR, assembly.
    #[command(
        after_help = "--target x86_64 builds for any x86-64 with AVX2 and FMA (x86-64-v3);\n\
--target cpu-llvm for this machine's CPU. The AOT artifact (--emit obj, the default) is\n\
NAME.o, NAME.h, NAME.weights and NAME.json; see examples/aot for a C program using it.\n\n\
Examples:\n  kiln compile models/mlp.onnx --target x86_64 -o build/mlp\n  \
kiln compile models/gpt2_block.onnx --emit kernel-ir,llvm,asm -o build/gpt2"
    )]
    Compile {
        #[command(flatten)]
        model: ModelArgs,
        /// x86_64 (portable, AVX2+FMA), cpu-llvm (this CPU), or a GPU:
        /// sm_80, sm_86, sm_89, sm_90, sm_90a (PTX and a launch plan).
        #[arg(long, default_value = "cpu-llvm")]
        target: String,
        /// Comma-separated forms: kernel-ir, llvm, asm, obj.
        #[arg(long, default_value = "obj")]
        emit: String,
        /// Output folder (created if missing).
        #[arg(short = 'o', long = "out", value_name = "DIR")]
        out: PathBuf,
    },
    /// Run a model and write its outputs as .npy files.
    #[command(
        after_help = "Inputs not given with --input get deterministic random data from --seed:\n\
floats uniform in [-1, 1); integers used as Gather indices uniform in [0, axis size),\n\
other integers uniform in [0, 10); bools true/false with equal chance.\n\
Without --out-dir nothing is written; only the summary lines are printed.\n\n\
Example:\n  kiln run models/mlp.onnx --seed 1 --out-dir out/mlp\n  kiln run models/gpt2_block.onnx --target cpu-llvm --threads 2"
    )]
    Run {
        #[command(flatten)]
        model: ModelArgs,
        /// Where to run: interp (the reference interpreter), cpu (kernels
        /// compiled by Cranelift; matrix products on a native AVX2 tile where
        /// the host has one, unless KILN_CPU_TILE=cranelift), cpu-llvm
        /// (compiled by LLVM for this CPU), gpu-sim (the GPU kernels for
        /// --gpu, run on the CPU) or cuda (on the first NVIDIA GPU, through
        /// its driver).
        #[arg(long, default_value = "interp")]
        target: String,
        /// GPU architecture for GPU targets: sm_80, sm_86, sm_89, sm_90, sm_90a.
        #[arg(long)]
        gpu: Option<String>,
        /// Threads for compiled targets (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// An input's value: NAME=FILE.npy (repeatable).
        #[arg(long = "input", value_name = "NAME=FILE.npy")]
        inputs: Vec<String>,
        /// Seed for the random inputs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write <output>.npy files and outputs.json here.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Time a model on a target: one JSON line with the median and spread.
    #[command(
        after_help = "Inputs are random (seed 0). Prints one JSON object: model, target, threads,\n\
iters, median_ms, p10_ms, p90_ms, gflops (the model's FLOPs over the median),\n\
kernels_ms (the median over runs of the time inside the steps: on cuda, the\n\
kernels, each timed on the host to its synchronize, without the input and output\n\
copies).\n\n\
Example:\n  kiln bench models/gpt2_block.onnx --target cpu-llvm --threads 2 --iters 50"
    )]
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Where to run: interp, cpu, cpu-llvm, gpu-sim or cuda.
        #[arg(long, default_value = "cpu-llvm")]
        target: String,
        /// GPU architecture for GPU targets: sm_80, sm_86, sm_89, sm_90, sm_90a.
        #[arg(long)]
        gpu: Option<String>,
        /// Threads for compiled targets (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Timed runs.
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Also print each kernel's mean time (stderr).
        #[arg(long)]
        profile: bool,
    },
    /// Measure this CPU's peak FLOP/s and memory bandwidth for the cost model.
    #[command(
        after_help = "The figures are stored as JSON in $KILN_CPU_TARGET, else\n\
$XDG_CONFIG_HOME/kiln/cpu.json, else ~/.config/kiln/cpu.json (or --out FILE),\n\
where `kiln ... --opt` finds them.\n\nExample:\n  kiln calibrate"
    )]
    Calibrate {
        /// Write the figures here instead.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the model as kiln tensor IR text.
    #[command(after_help = "Example:\n  kiln print models/gpt2_block.onnx | less")]
    Print {
        #[command(flatten)]
        model: ModelArgs,
        /// Print every constant's bytes (the form `Graph::parse` reads back).
        #[arg(long)]
        full: bool,
    },
}

#[derive(Args)]
struct ModelArgs {
    /// The ONNX model file.
    model: PathBuf,
    /// Optimize the graph (e-graph rewrites, fusion) for the CPU cost model first.
    #[arg(long)]
    opt: bool,
    /// With --opt: show which rules produced the node that computes this value.
    #[arg(long, value_name = "NODE")]
    explain: Option<String>,
    /// Bind an input's full shape: NAME=D1xD2x... (repeatable).
    #[arg(long = "shape", value_name = "NAME=D1xD2x..")]
    shapes: Vec<String>,
    /// Bind a symbolic dim: SYM=N (repeatable).
    #[arg(long = "dim", value_name = "SYM=N")]
    dims: Vec<String>,
}

fn split_kv<'a>(s: &'a str, flag: &str) -> Result<(&'a str, &'a str), Error> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| Error::Usage(format!("{flag} expects NAME=VALUE, got '{s}'")))
}

fn bindings(m: &ModelArgs) -> Result<Bindings, Error> {
    let mut b = Bindings::default();
    for s in &m.shapes {
        let (k, v) = split_kv(s, "--shape")?;
        let dims = if v.is_empty() {
            vec![]
        } else {
            v.split('x')
                .map(|d| d.parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    Error::Usage(format!(
                        "--shape {s}: dims must be numbers joined by 'x', like 1x3x224x224"
                    ))
                })?
        };
        b.shapes.insert(k.to_string(), dims);
    }
    for s in &m.dims {
        let (k, v) = split_kv(s, "--dim")?;
        let n = v
            .parse::<usize>()
            .map_err(|_| Error::Usage(format!("--dim {s}: the value must be a number")))?;
        b.dims.insert(k.to_string(), n);
    }
    Ok(b)
}

/// A file name for an output: characters outside [A-Za-z0-9._-] become '_'.
fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        format!("_{s}")
    } else {
        s
    }
}

fn stats(t: &Tensor) -> String {
    let v = t.to_f64_vec();
    if v.is_empty() {
        return "empty".into();
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    format!("min={min:.6} max={max:.6} mean={mean:.6}")
}

/// Loads the model, optimizing it when asked; returns the graph before
/// optimization too.
fn load(m: &ModelArgs, b: &Bindings) -> Result<(Model, Option<kiln_ir::Graph>), Error> {
    let mut model = Model::load(&m.model, b)?;
    if !m.opt && m.explain.is_none() {
        return Ok((model, None));
    }
    let before = model.graph.clone();
    let opt = model.optimize(&kiln::calibrate::cpu_target()?)?;
    if let Some(name) = &m.explain {
        explain(&opt, name)?;
    }
    Ok((model, Some(before)))
}

/// Prints how the optimized node computing `name` came about.
fn explain(opt: &kiln_passes::Optimized, name: &str) -> Result<(), Error> {
    let g = &opt.graph;
    let id = g.find(name).ok_or_else(|| {
        Error::Usage(format!(
            "--explain: the optimized graph has no value '{name}'; see `kiln print --opt`"
        ))
    })?;
    let mut stack = vec![id];
    let mut seen = std::collections::HashSet::new();
    while let Some(v) = stack.pop() {
        if !seen.insert(v) {
            continue;
        }
        let kiln_ir::ValueDef::Node(n, _) = g.value(v).def else {
            continue;
        };
        let node = g.node(n);
        let vname = &g.value(v).name;
        match opt.origin.get(vname) {
            Some(rule) => {
                let what = match &node.op {
                    kiln_ir::Op::Fused(f) => format!("fused kernel ({})", f.kind()),
                    op => op.mnemonic().to_string(),
                };
                println!("%{vname} = {what}: made by rule '{rule}'");
                stack.extend(&node.inputs);
            }
            None => println!("%{vname} = {}: as the model wrote it", node.op.mnemonic()),
        }
    }
    Ok(())
}

/// The target named by `--target`, for the `--gpu` architecture if given.
fn target(name: &str, gpu: Option<&str>) -> Result<Target, Error> {
    let t = Target::from_name(name)?;
    Ok(match gpu {
        Some(g) => t.with_gpu(g)?,
        None => t,
    })
}

fn run(
    m: &ModelArgs,
    target: Target,
    threads: usize,
    inputs: &[String],
    seed: u64,
    out_dir: Option<&Path>,
) -> Result<(), Error> {
    let mut b = bindings(m)?;
    let mut given = BTreeMap::new();
    for s in inputs {
        let (k, v) = split_kv(s, "--input")?;
        let t = npy::read(Path::new(v), None).map_err(Error::Usage)?;
        given.insert(k.to_string(), t);
    }
    b.values = given.clone();
    let (model, _) = load(m, &b)?;
    let mut feed: HashMap<String, Tensor> = model.random_inputs(seed);
    for (k, t) in given {
        if model.frozen.contains(&k) {
            continue;
        }
        let slot = feed
            .get_mut(&k)
            .expect("the importer checked --input names");
        let want = &model
            .graph
            .value(model.graph.find(&k).expect("feed keys are inputs"))
            .ty;
        let t = if t.dtype() == want.dtype {
            t
        } else if t.dtype() == kiln_ir::DType::F32 && want.dtype == kiln_ir::DType::BF16 {
            Tensor::from_f64(want.dtype, t.shape().to_vec(), &t.to_f64_vec())
        } else {
            return Err(Error::Usage(format!(
                "--input {k}: the file holds {}, the model wants {want}",
                t.ty()
            )));
        };
        *slot = t;
    }
    let outs = model.compile(target, threads)?.run(&feed)?;
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut index = serde_json::Map::new();
    let mut used = std::collections::HashSet::new();
    for (name, t) in model.output_names.iter().zip(&outs) {
        println!("{name}: {} {}", t.ty(), stats(t));
        if let Some(dir) = out_dir {
            let mut stem = file_stem(name);
            while !used.insert(stem.clone()) {
                stem.push('_');
            }
            let file = format!("{stem}.npy");
            let path = dir.join(&file);
            std::fs::write(&path, npy::encode(t))
                .map_err(|source| Error::Write { path, source })?;
            index.insert(name.clone(), serde_json::Value::String(file));
        }
    }
    if let Some(dir) = out_dir {
        let path = dir.join("outputs.json");
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(index)).expect("json");
        std::fs::write(&path, text + "\n").map_err(|source| Error::Write { path, source })?;
    }
    Ok(())
}

fn main_inner(cli: Cli) -> Result<(), Error> {
    match cli.cmd {
        Cmd::Inspect { model, json, plan } => {
            let (m, before) = load(&model, &bindings(&model)?)?;
            if plan {
                let spec = kiln_backends::llvm::CpuSpec::host().map_err(Error::Usage)?;
                print!("{}", kiln::compile::program(&m, &spec, 1)?.plan_text());
                return Ok(());
            }
            let Some(before) = before else {
                let s = m.summary();
                if json {
                    println!("{}", s.to_json());
                } else {
                    print!("{s}");
                }
                return Ok(());
            };
            let t = kiln::calibrate::cpu_target()?;
            let stats = |g: &kiln_ir::Graph| {
                let c = kiln_passes::graph_cost(g, &t);
                let hist: serde_json::Map<String, serde_json::Value> = g
                    .op_histogram()
                    .into_iter()
                    .map(|(k, n)| (k.to_string(), n.into()))
                    .collect();
                serde_json::json!({
                    "ops": c.ops,
                    "kernels": c.kernels,
                    "flops": c.flops,
                    "bytes_moved": c.bytes_moved,
                    "est_time_ms": c.est_time_ms,
                    "op_histogram": hist,
                })
            };
            let (b, a) = (stats(&before), stats(&m.graph));
            if json {
                println!("{}", serde_json::json!({"before": b, "after": a}));
            } else {
                println!("{:<14}{:>16}{:>16}", "", "before", "after");
                for k in ["ops", "kernels", "flops", "bytes_moved", "est_time_ms"] {
                    let f = |v: &serde_json::Value| match v[k].as_f64() {
                        Some(x) if k == "est_time_ms" => format!("{x:.3}"),
                        _ => v[k].to_string(),
                    };
                    println!("{k:<14}{:>16}{:>16}", f(&b), f(&a));
                }
                println!("kernels after: {}", kernel_list(&m.graph));
            }
            Ok(())
        }
        Cmd::Run {
            model,
            target: name,
            gpu,
            threads,
            inputs,
            seed,
            out_dir,
        } => run(
            &model,
            target(&name, gpu.as_deref())?,
            threads,
            &inputs,
            seed,
            out_dir.as_deref(),
        ),
        Cmd::Bench {
            model,
            target: name,
            gpu,
            threads,
            iters,
            warmup,
            profile,
        } => {
            let (m, _) = load(&model, &bindings(&model)?)?;
            let t = target(&name, gpu.as_deref())?;
            let exe = m.compile(t, threads)?;
            let feed = m.random_inputs(0);
            for _ in 0..warmup {
                exe.run(&feed)?;
            }
            exe.take_step_times();
            let mut ms = Vec::with_capacity(iters.max(1));
            // Per run, the time inside its steps; per step, the total.
            let mut inside = Vec::with_capacity(iters.max(1));
            let mut per_step: Vec<(String, f64)> = Vec::new();
            for _ in 0..iters.max(1) {
                let t0 = std::time::Instant::now();
                exe.run(&feed)?;
                ms.push(t0.elapsed().as_secs_f64() * 1e3);
                let steps = exe.take_step_times();
                inside.push(steps.iter().map(|s| s.1).sum::<f64>() * 1e3);
                if per_step.is_empty() {
                    per_step = steps;
                } else {
                    per_step
                        .iter_mut()
                        .zip(&steps)
                        .for_each(|(a, b)| a.1 += b.1);
                }
            }
            if profile {
                for (name, t) in &per_step {
                    eprintln!("{:>10.3} ms  {name}", t * 1e3 / ms.len() as f64);
                }
            }
            let median = |v: &mut Vec<f64>, f: f64| {
                v.sort_by(f64::total_cmp);
                v[((v.len() - 1) as f64 * f).round() as usize]
            };
            let kernels_ms = median(&mut inside, 0.5);
            let q = |f: f64| median(&mut ms.clone(), f);
            let threads = if threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                threads
            };
            let flops = m.graph.flops() as f64;
            println!(
                "{}",
                serde_json::json!({
                    "model": model.model.display().to_string(),
                    "target": t.to_string(),
                    "threads": threads,
                    "iters": ms.len(),
                    "median_ms": q(0.5),
                    "p10_ms": q(0.1),
                    "p90_ms": q(0.9),
                    "gflops": flops / (q(0.5) * 1e6),
                    "kernels_ms": kernels_ms,
                })
            );
            Ok(())
        }
        Cmd::Compile {
            model,
            target,
            emit,
            out,
        } => {
            let gpu = kiln_backends::GPU_ARCHS.contains(&target.as_str());
            let spec = match target.as_str() {
                _ if gpu => None,
                "x86_64" => Some(kiln_backends::llvm::CpuSpec::x86_64_v3()),
                "cpu-llvm" => Some(kiln_backends::llvm::CpuSpec::host().map_err(Error::Usage)?),
                t => {
                    return Err(Error::Usage(format!(
                        "kiln compile: target '{t}' is not compiled ahead of time; targets: x86_64, cpu-llvm, {}",
                        kiln_backends::GPU_ARCHS.join(", ")
                    )))
                }
            };
            let emit = kiln::compile::Emit::parse_list(&emit)?;
            let (m, _) = load(&model, &bindings(&model)?)?;
            let stem = model
                .model
                .file_stem()
                .map_or("model".into(), |s| s.to_string_lossy().into_owned());
            let files = match spec {
                Some(spec) => kiln::compile::compile_to_dir(&m, &stem, &emit, &spec, &out)?,
                None => kiln::compile::compile_gpu_to_dir(&m, &stem, &emit, &target, &out)?,
            };
            for f in files {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
        Cmd::Calibrate { out } => {
            let (t, path) = kiln::calibrate::calibrate(out)?;
            println!(
                "peak f32: {:.1} GFLOP/s on {} cores; memory bandwidth: {:.1} GB/s; stored in {}",
                t.peak_f32 / 1e9,
                t.cores,
                t.bandwidth / 1e9,
                path.display()
            );
            Ok(())
        }
        Cmd::Print { model, full } => {
            let (m, _) = load(&model, &bindings(&model)?)?;
            let style = if full {
                ConstStyle::Full
            } else {
                ConstStyle::Elide(256)
            };
            print!("{}", m.graph.to_text(style));
            Ok(())
        }
    }
}

/// Kernels of a graph by kind, e.g. `matmul+2 x3, attention x1`.
fn kernel_list(g: &kiln_ir::Graph) -> String {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for n in &g.nodes {
        if kiln_passes::cost::is_view(&n.op) {
            continue;
        }
        let k = match &n.op {
            kiln_ir::Op::Fused(f) => f.kind(),
            op => op.mnemonic().to_string(),
        };
        *kinds.entry(k).or_default() += 1;
    }
    kinds
        .iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match main_inner(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
