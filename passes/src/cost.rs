//! The cost model: every kernel is timed by the roofline of the target,
//! `max(flops / peak, bytes / bandwidth) + launch overhead`, where bytes are the
//! kernel's distinct operands read once and its results written once. Reshapes
//! are views (free, not kernels). The same model prices e-nodes for extraction
//! and whole graphs for reports.

use kiln_ir::{Graph, Op, Target, TensorType};

/// Estimates for one graph.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GraphCost {
    /// Nodes in the graph.
    pub ops: usize,
    /// Nodes that run as kernels (all but views).
    pub kernels: usize,
    /// Operations.
    pub flops: u64,
    /// Bytes read and written by the kernels.
    pub bytes_moved: u64,
    /// Estimated time in milliseconds.
    pub est_time_ms: f64,
}

/// True for ops that are views of their operand (no kernel, no data movement).
pub fn is_view(op: &Op) -> bool {
    matches!(op, Op::Reshape(_))
}

/// Flops, bytes and time of one kernel computing `outs` from operands `ins`, of
/// which the distinct ones total `bytes_in`.
pub fn kernel(
    target: &Target,
    op: &Op,
    ins: &[&TensorType],
    bytes_in: u64,
    outs: &[TensorType],
) -> (u64, u64, f64) {
    if is_view(op) {
        return (0, 0, 0.0);
    }
    let flops = op.def().flops(ins, outs);
    let bytes = bytes_in + outs.iter().map(|t| t.bytes() as u64).sum::<u64>();
    let dtype = outs.first().map_or(kiln_ir::DType::F32, |t| t.dtype);
    (flops, bytes, target.kernel_time(flops, bytes, dtype))
}

/// The estimates of a graph on a target.
pub fn graph_cost(g: &Graph, target: &Target) -> GraphCost {
    let mut c = GraphCost {
        ops: g.nodes.len(),
        ..Default::default()
    };
    let mut secs = 0.0;
    for n in &g.nodes {
        let mut distinct = n.inputs.clone();
        distinct.sort();
        distinct.dedup();
        let bytes_in = distinct.iter().map(|&v| g.value(v).ty.bytes() as u64).sum();
        let ins: Vec<&TensorType> = n.inputs.iter().map(|&v| &g.value(v).ty).collect();
        let outs: Vec<TensorType> = n.outputs.iter().map(|&v| g.value(v).ty.clone()).collect();
        let (f, b, t) = kernel(target, &n.op, &ins, bytes_in, &outs);
        if !is_view(&n.op) {
            c.kernels += 1;
        }
        c.flops += f;
        c.bytes_moved += b;
        secs += t;
    }
    c.est_time_ms = secs * 1e3;
    c
}
