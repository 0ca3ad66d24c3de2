//! `kiln compile --target sm_XX`: the model lowered and mapped to GPU
//! kernels, as one PTX module, a weights file (constants, each 256-byte
//! aligned) and a JSON launch plan: the device buffers (inputs, weights at
//! offsets, one arena of intermediates at offsets), then every launch in
//! order with its kernel, grid and block dims, static shared-memory bytes
//! and arguments. Building needs no GPU and no CUDA.

use crate::Model;
use kiln_backends::ptx;
use kiln_ir::kernel::Role;
use kiln_passes::lower::{Program, SlotKind, Step};

/// The files of a GPU build, in memory.
pub struct GpuBuild {
    pub ptx: String,
    pub weights: Vec<u8>,
    pub manifest: String,
}

/// The program lowered for the GPU and mapped (`kiln_passes::gpu`).
pub fn program(graph: &kiln_ir::Graph) -> Result<Program, String> {
    let p = kiln_passes::lower::lower(graph, &kiln_passes::lower::LowerOptions::gpu());
    kiln_passes::gpu::map_program(&p)
}

/// Builds the PTX, weights and launch plan of mapped program `p` for `arch`.
pub fn build(p: &Program, name: &str, model: &Model, arch: &str) -> Result<GpuBuild, String> {
    for st in &p.steps {
        if let Step::Host {
            name: n, reason, ..
        } = st
        {
            return Err(format!(
                "node '{n}' has no compiled kernel ({reason}); the GPU target needs every step compiled"
            ));
        }
    }
    let text = ptx::program_ptx(p, &ptx::arch(arch)?)?;

    let (weights, const_at) = super::weights(p, 256);
    // Where a slot's bytes live on the device.
    let place = |s: usize| -> serde_json::Value {
        let r = p.root(s);
        let bytes = p.slots[s].ty.numel() * p.slots[s].ty.dtype.size();
        match (&p.slots[r].kind, p.plan.offsets[r], const_at[r]) {
            (SlotKind::Input(i), _, _) => serde_json::json!({"input": i, "bytes": bytes}),
            (_, _, Some(o)) => serde_json::json!({"weights": o, "bytes": bytes}),
            (_, Some(o), _) => serde_json::json!({"arena": o, "bytes": bytes}),
            _ => serde_json::json!({"unplaced": p.slots[s].name}),
        }
    };
    let mut launches = Vec::new();
    for st in &p.steps {
        let Step::Kernel { kernel: k, args } = st else {
            continue;
        };
        let launch = k
            .schedule
            .launch
            .ok_or_else(|| format!("kernel '{}' is not mapped to the GPU", k.name))?;
        let mut params = Vec::new();
        let mut shared = 0;
        for (b, a) in k.bufs.iter().zip(args) {
            match (b.role, a) {
                (Role::Shared, _) => shared += b.bytes(),
                (Role::Scratch, _) => {}
                (_, Some(s)) => {
                    let mut v = place(*s);
                    v["buffer"] = b.name.clone().into();
                    params.push(v);
                }
                (_, None) => {
                    return Err(format!(
                        "kernel '{}': buffer '%{}' is bound to nothing",
                        k.name, b.name
                    ))
                }
            }
        }
        launches.push(serde_json::json!({
            "kernel": k.name,
            "grid": launch.grid,
            "block": launch.block,
            "shared_bytes": shared,
            "args": params,
        }));
    }
    let io = |ids: &[usize], names: &[String]| {
        ids.iter()
            .enumerate()
            .map(|(i, &s)| {
                let t = &p.slots[s].ty;
                let mut v = place(s);
                v["name"] = names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| p.slots[s].name.clone())
                    .into();
                v["dtype"] = t.dtype.name().into();
                v["shape"] = serde_json::json!(t.shape);
                v
            })
            .collect::<Vec<_>>()
    };
    let in_names: Vec<String> = p.inputs.iter().map(|&s| p.slots[s].name.clone()).collect();
    let manifest = serde_json::to_string_pretty(&serde_json::json!({
        "model": model.graph.name,
        "arch": arch,
        "ptx_file": format!("{name}.ptx"),
        "weights_file": format!("{name}.weights"),
        "weights_bytes": weights.len(),
        "arena_bytes": p.plan.arena_bytes,
        "inputs": io(&p.inputs, &in_names),
        "outputs": io(&p.outputs, &model.output_names),
        "launches": launches,
    }))
    .expect("json")
        + "\n";
    Ok(GpuBuild {
        ptx: text,
        weights,
        manifest,
    })
}
