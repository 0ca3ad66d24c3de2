//! What `kiln inspect` reports: inputs and outputs with types, op histogram,
//! parameter count and bytes, FLOP estimate; as text or one JSON object.

use kiln_ir::{Graph, TensorType};
use serde_json::{json, Value};
use std::fmt;

/// A model summary.
#[derive(Debug, Clone)]
pub struct Summary {
    pub inputs: Vec<(String, TensorType)>,
    pub outputs: Vec<(String, TensorType)>,
    pub op_histogram: Vec<(&'static str, usize)>,
    pub ops: usize,
    pub params: u64,
    pub param_bytes: u64,
    pub flops: u64,
}

impl Summary {
    /// Summarizes a graph; `output_names` are the model's names for its outputs.
    pub fn of(g: &Graph, output_names: &[String]) -> Summary {
        let io = |ids: &[kiln_ir::ValueId]| -> Vec<(String, TensorType)> {
            ids.iter()
                .map(|&i| (g.value(i).name.clone(), g.value(i).ty.clone()))
                .collect()
        };
        let mut outputs = io(&g.outputs);
        for (o, n) in outputs.iter_mut().zip(output_names) {
            o.0 = n.clone();
        }
        let (params, param_bytes) = g.constants().fold((0u64, 0u64), |(p, b), (_, t)| {
            (p + t.numel() as u64, b + t.bytes().len() as u64)
        });
        Summary {
            inputs: io(&g.inputs),
            outputs,
            op_histogram: g.op_histogram(),
            ops: g.nodes.len(),
            params,
            param_bytes,
            flops: g.flops(),
        }
    }

    /// The JSON form (keys `inputs`, `outputs`, `op_histogram`, `ops`, `params`,
    /// `param_bytes`, `flops`).
    pub fn to_json(&self) -> Value {
        let io = |v: &[(String, TensorType)]| -> Vec<Value> {
            v.iter()
                .map(|(n, t)| json!({"name": n, "dtype": t.dtype.name(), "shape": t.shape}))
                .collect()
        };
        let hist: serde_json::Map<String, Value> = self
            .op_histogram
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "inputs": io(&self.inputs),
            "outputs": io(&self.outputs),
            "op_histogram": hist,
            "ops": self.ops,
            "params": self.params,
            "param_bytes": self.param_bytes,
            "flops": self.flops,
        })
    }
}

fn si(v: u64) -> String {
    let v = v as f64;
    match v {
        v if v >= 1e9 => format!("{:.2} G", v / 1e9),
        v if v >= 1e6 => format!("{:.2} M", v / 1e6),
        v if v >= 1e3 => format!("{:.2} k", v / 1e3),
        v => format!("{v} "),
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "inputs:")?;
        for (n, t) in &self.inputs {
            writeln!(f, "  {n}: {t}")?;
        }
        writeln!(f, "outputs:")?;
        for (n, t) in &self.outputs {
            writeln!(f, "  {n}: {t}")?;
        }
        writeln!(f, "ops: {}", self.ops)?;
        for (k, v) in &self.op_histogram {
            writeln!(f, "  {k:<16} {v}")?;
        }
        writeln!(f, "params: {}({}B)", si(self.params), si(self.param_bytes))?;
        writeln!(f, "flops: {}FLOP", si(self.flops))
    }
}
