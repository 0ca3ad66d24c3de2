//! The ahead-of-time artifact: the program's kernels plus a sequential entry
//! `void kiln_<name>_run(const void *const *inputs, void *const *outputs,
//! const void *weights, void *work)` in one object file; the constants in a
//! weights file (each 64-byte aligned); a C header with the sizes; and a JSON
//! manifest. `work` is caller memory of `KILN_<NAME>_WORK_BYTES`, 64-byte
//! aligned: the arena of intermediates, then the kernels' scratch.

use crate::Model;
use kiln_backends::llvm::{self, CpuSpec};
use kiln_passes::lower::{Program, SlotKind, Step};
use std::fmt::Write;

/// The files of an AOT build, in memory.
pub struct Aot {
    pub object: Vec<u8>,
    pub header: String,
    pub weights: Vec<u8>,
    pub manifest: String,
}

fn align64(x: usize) -> usize {
    x.div_ceil(64) * 64
}

/// Builds the artifact of `p` under the C name `name`.
pub fn build(p: &Program, name: &str, model: &Model, spec: &CpuSpec) -> Result<Aot, String> {
    let mut p = p.clone();
    for st in &mut p.steps {
        match st {
            Step::Kernel { kernel, .. } => kernel.name = format!("kiln_{name}_{}", kernel.name),
            Step::Host {
                name: n, reason, ..
            } => {
                return Err(format!(
                "node '{n}' has no compiled kernel ({reason}); it cannot be compiled ahead of time"
            ))
            }
        }
    }
    // Constants into the weights file.
    let mut weights = Vec::new();
    let mut const_at = vec![None; p.slots.len()];
    let used = p.used_slots();
    for (i, s) in p.slots.iter().enumerate() {
        if let (SlotKind::Const(t), true) = (&s.kind, used[i]) {
            weights.resize(align64(weights.len()), 0);
            const_at[i] = Some(weights.len());
            weights.extend_from_slice(t.bytes());
        }
    }
    let arena = align64(p.plan.arena_bytes);
    let scratch = p
        .kernels()
        .map(|k| align64(k.scratch_bytes()))
        .max()
        .unwrap_or(0);
    let work = arena + scratch;

    let mut text = llvm::module_text(&p, spec)?;
    let mut f = String::new();
    let _ = writeln!(
        f,
        "define void @kiln_{name}_run(ptr %inputs, ptr %outputs, ptr %weights, ptr %work) #0 {{\nentry:"
    );
    let _ = writeln!(
        f,
        "  %scratch = getelementptr inbounds i8, ptr %work, i64 {arena}"
    );
    for i in 0..p.inputs.len() {
        let _ = writeln!(
            f,
            "  %inp{i} = getelementptr inbounds ptr, ptr %inputs, i64 {i}"
        );
        let _ = writeln!(f, "  %in{i} = load ptr, ptr %inp{i}, align 8");
    }
    let ptr = |f: &mut String, s: usize, tag: &str| -> Result<String, String> {
        let r = p.root(s);
        let v = format!("%{tag}");
        match (&p.slots[r].kind, p.plan.offsets[r], const_at[r]) {
            (SlotKind::Input(i), _, _) => return Ok(format!("%in{i}")),
            (SlotKind::Const(_), _, Some(o)) => {
                let _ = writeln!(
                    f,
                    "  {v} = getelementptr inbounds i8, ptr %weights, i64 {o}"
                );
            }
            (_, Some(o), _) => {
                let _ = writeln!(f, "  {v} = getelementptr inbounds i8, ptr %work, i64 {o}");
            }
            _ => return Err(format!("slot '{}' has no memory", p.slots[s].name)),
        }
        Ok(v)
    };
    for (si, st) in p.steps.iter().enumerate() {
        let Step::Kernel { kernel, args } = st else {
            continue;
        };
        let n = args.len();
        let _ = writeln!(f, "  %args{si} = alloca [{n} x ptr], align 8");
        let uses = kernel.used_bufs();
        for (ai, a) in args.iter().enumerate() {
            let v = match a {
                Some(s) if uses[ai] => ptr(&mut f, *s, &format!("s{si}a{ai}"))?,
                _ => "null".to_string(),
            };
            let _ = writeln!(
                f,
                "  %s{si}p{ai} = getelementptr inbounds ptr, ptr %args{si}, i64 {ai}"
            );
            let _ = writeln!(f, "  store ptr {v}, ptr %s{si}p{ai}, align 8");
        }
        let _ = writeln!(
            f,
            "  call void @{}(ptr %args{si}, i64 0, i64 {}, ptr %scratch)",
            kernel.name,
            kernel.tasks().max(1)
        );
    }
    for (j, &o) in p.outputs.iter().enumerate() {
        let bytes = p.slots[o].ty.numel() * p.slots[o].ty.dtype.size();
        let src = ptr(&mut f, o, &format!("src{j}"))?;
        let _ = writeln!(
            f,
            "  %outp{j} = getelementptr inbounds ptr, ptr %outputs, i64 {j}"
        );
        let _ = writeln!(f, "  %out{j} = load ptr, ptr %outp{j}, align 8");
        let _ = writeln!(
            f,
            "  call void @llvm.memcpy.p0.p0.i64(ptr %out{j}, ptr {src}, i64 {bytes}, i1 false)"
        );
    }
    f.push_str("  ret void\n}\n\ndeclare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)\n");
    text.push_str(&f);
    let object = llvm::object(&text, spec)?;

    let upper = name.to_ascii_uppercase();
    let mut h = format!(
        "/* Generated by kiln from model '{}'. Do not edit. */\n#ifndef KILN_{upper}_H\n#define KILN_{upper}_H\n\n",
        model.graph.name.replace("*/", "")
    );
    let _ = writeln!(
        h,
        "/* Bytes of caller memory `work` must hold (64-byte aligned). */"
    );
    let _ = writeln!(h, "#define KILN_{upper}_WORK_BYTES {work}u");
    let _ = writeln!(
        h,
        "/* Bytes of {name}.weights, to be loaded 64-byte aligned. */"
    );
    let _ = writeln!(h, "#define KILN_{upper}_WEIGHTS_BYTES {}u", weights.len());
    let _ = writeln!(h, "#define KILN_{upper}_NUM_INPUTS {}", p.inputs.len());
    let _ = writeln!(h, "#define KILN_{upper}_NUM_OUTPUTS {}\n", p.outputs.len());
    let io = |kind: &str, ids: &[usize], names: &[String]| {
        ids.iter()
            .enumerate()
            .map(|(i, &s)| {
                let t = &p.slots[s].ty;
                serde_json::json!({
                    "index": i,
                    "kind": kind,
                    "name": names.get(i).cloned().unwrap_or_else(|| p.slots[s].name.clone()),
                    "dtype": t.dtype.name(),
                    "shape": t.shape,
                    "bytes": t.numel() * t.dtype.size(),
                })
            })
            .collect::<Vec<_>>()
    };
    let in_names: Vec<String> = p.inputs.iter().map(|&s| p.slots[s].name.clone()).collect();
    let ins = io("input", &p.inputs, &in_names);
    let outs = io("output", &p.outputs, &model.output_names);
    for v in ins.iter().chain(&outs) {
        let _ = writeln!(
            h,
            "/* {} {}: \"{}\" {}{} ({} bytes) */",
            v["kind"].as_str().unwrap_or(""),
            v["index"],
            v["name"].as_str().unwrap_or("").replace("*/", ""),
            v["dtype"].as_str().unwrap_or(""),
            v["shape"],
            v["bytes"]
        );
    }
    let _ = writeln!(
        h,
        "\n/* Runs the model once on the calling thread. */\nvoid kiln_{name}_run(const void *const *inputs, void *const *outputs,\n    const void *weights, void *work);\n\n#endif"
    );
    let manifest = serde_json::to_string_pretty(&serde_json::json!({
        "model": model.graph.name,
        "entry": format!("kiln_{name}_run"),
        "triple": spec.triple,
        "cpu": spec.cpu,
        "inputs": ins,
        "outputs": outs,
        "weights_file": format!("{name}.weights"),
        "weights_bytes": weights.len(),
        "work_bytes": work,
        "kernels": p.kernels().count(),
    }))
    .expect("json")
        + "\n";
    Ok(Aot {
        object,
        header: h,
        weights,
        manifest,
    })
}
