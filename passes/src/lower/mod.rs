//! Lowering from the tensor IR to kernels and a host plan: every node (a fused
//! kernel or a single op) becomes one kernel of the kernel IR, or a host step
//! that runs the reference semantics where no lowering exists yet (each says
//! why). Reshapes outside kernels become views. Memory planning places every
//! intermediate in one arena.

mod access;
mod attention;
mod body;
mod eval;
mod gemm;
mod norm;
mod plan;
mod reduce;

pub use plan::{plan_memory, Plan};

use kiln_ir::kernel::{Kernel, Role};
use kiln_ir::{Graph, Op, Tensor, TensorType, ValueDef};
use std::fmt::Write;
use std::sync::Arc;

/// What the lowering knows of the CPU it lowers for: vector lanes (f32) and
/// the matrix-product blocking (micro-tile `mr x nr`, cache blocks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowerOptions {
    pub lanes: usize,
    pub mr: usize,
    pub nr: usize,
    pub mc: usize,
    pub kc: usize,
    pub nc: usize,
    /// Copies of each A element in its packed panels (see
    /// `GemmSchedule::a_lanes`).
    pub a_lanes: usize,
    pub threads: usize,
    /// Pack constant matrix-product operands into panels at compile time
    /// (CPU); GPU kernels read them as they are.
    pub pack_constants: bool,
    /// Lower bf16 and f16 matrix products (sums in f32; the GPU maps them to
    /// tensor cores). The CPU backends compute in f32 and f64 only.
    pub half_matmul: bool,
}

impl LowerOptions {
    /// 256-bit vectors (AVX2 + FMA): a 6 x 16 micro-tile in 12 of the 16 ymm
    /// registers; A blocks of 144 x 256 stay in L2, B panels of 256 x 16 in L1.
    pub fn avx2(threads: usize) -> Self {
        LowerOptions {
            lanes: 8,
            mr: 6,
            nr: 16,
            mc: 144,
            kc: 256,
            nc: 2048,
            a_lanes: 1,
            threads: threads.max(1),
            pack_constants: true,
            half_matmul: false,
        }
    }

    /// 128-bit vectors: a 6 x 8 micro-tile.
    pub fn sse(threads: usize) -> Self {
        LowerOptions {
            lanes: 4,
            mr: 6,
            nr: 8,
            mc: 144,
            kc: 256,
            nc: 2048,
            a_lanes: 1,
            threads: threads.max(1),
            pack_constants: true,
            half_matmul: false,
        }
    }

    /// For GPU mapping (`gpu::map_program`): operands stay expressions, the
    /// CPU blocking is only a placeholder the mapping replaces.
    pub fn gpu() -> Self {
        LowerOptions {
            pack_constants: false,
            half_matmul: true,
            ..LowerOptions::avx2(1)
        }
    }

    /// The Cranelift backend's blocking where it has no native AVX2 tile: the
    /// 128-bit tile with A packed four times over, so that the tile multiplies by A from memory (one
    /// instruction) instead of broadcasting each element first.
    pub fn cranelift(threads: usize) -> Self {
        LowerOptions {
            a_lanes: 4,
            ..LowerOptions::sse(threads)
        }
    }
}

/// Index of a slot in a program.
pub type SlotId = usize;

/// Where a slot's data comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum SlotKind {
    /// Graph input `i`.
    Input(usize),
    /// A constant (weights, packed weights).
    Const(Tensor),
    /// Produced by a step; lives in the arena.
    Temp,
    /// The same bytes as another slot, with another shape.
    View(SlotId),
}

/// A tensor of the program.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub name: String,
    pub ty: TensorType,
    pub kind: SlotKind,
}

/// One step of the host plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A compiled kernel; `args[i]` is the slot bound to buffer `i` (`None` for
    /// per-thread scratch).
    Kernel {
        kernel: Kernel,
        args: Vec<Option<SlotId>>,
    },
    /// A node run by the reference semantics on the host.
    Host {
        name: String,
        op: Op,
        inputs: Vec<SlotId>,
        outputs: Vec<SlotId>,
        reason: String,
    },
}

/// A lowered graph: slots, steps in order, and the memory plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub name: String,
    pub slots: Vec<Slot>,
    pub steps: Vec<Step>,
    pub inputs: Vec<SlotId>,
    pub outputs: Vec<SlotId>,
    pub plan: Plan,
}

impl Program {
    /// The slot a view resolves to.
    pub fn root(&self, mut s: SlotId) -> SlotId {
        while let SlotKind::View(r) = self.slots[s].kind {
            s = r;
        }
        s
    }

    /// For each slot, whether running the program touches its memory (a
    /// constant only a packed copy replaces is not).
    pub fn used_slots(&self) -> Vec<bool> {
        let mut used = vec![false; self.slots.len()];
        for st in &self.steps {
            match st {
                Step::Kernel { kernel, args } => {
                    for (u, a) in kernel.used_bufs().into_iter().zip(args) {
                        if let (true, Some(s)) = (u, a) {
                            used[self.root(*s)] = true;
                        }
                    }
                }
                Step::Host {
                    inputs, outputs, ..
                } => {
                    for &s in inputs.iter().chain(outputs) {
                        used[self.root(s)] = true;
                    }
                }
            }
        }
        for &o in &self.outputs {
            used[self.root(o)] = true;
        }
        used
    }

    /// The kernels, in step order.
    pub fn kernels(&self) -> impl Iterator<Item = &Kernel> {
        self.steps.iter().filter_map(|s| match s {
            Step::Kernel { kernel, .. } => Some(kernel),
            Step::Host { .. } => None,
        })
    }

    /// The plan as text: one line per step with its slots and arena offsets,
    /// then the arena size (`kiln inspect --plan`).
    pub fn plan_text(&self) -> String {
        let mut s = String::new();
        let slot = |i: SlotId| {
            let r = self.root(i);
            let at = match (&self.slots[r].kind, self.plan.offsets[r]) {
                (SlotKind::Input(n), _) => format!("input {n}"),
                (SlotKind::Const(_), _) => "const".to_string(),
                (_, Some(o)) => format!("arena+{o}"),
                _ => "?".to_string(),
            };
            format!("%{} {} @{}", self.slots[i].name, self.slots[i].ty, at)
        };
        for (i, st) in self.steps.iter().enumerate() {
            match st {
                Step::Kernel { kernel, args } => {
                    let ins: Vec<String> = kernel
                        .bufs
                        .iter()
                        .zip(args)
                        .filter(|(b, a)| b.role == Role::In && a.is_some())
                        .map(|(_, a)| slot(a.unwrap_or_default()))
                        .collect();
                    let outs: Vec<String> = kernel
                        .bufs
                        .iter()
                        .zip(args)
                        .filter(|(b, _)| b.role == Role::Out)
                        .filter_map(|(_, a)| a.map(slot))
                        .collect();
                    let _ = writeln!(
                        s,
                        "{i:>3} kernel {} tasks {} scratch {} B\n      in  {}\n      out {}",
                        kernel.name,
                        kernel.tasks(),
                        kernel.scratch_bytes(),
                        ins.join(", "),
                        outs.join(", ")
                    );
                }
                Step::Host {
                    name,
                    op,
                    outputs,
                    reason,
                    ..
                } => {
                    let outs: Vec<String> = outputs.iter().map(|&o| slot(o)).collect();
                    let _ = writeln!(
                        s,
                        "{i:>3} host {name} ({}): {reason}\n      out {}",
                        op.mnemonic(),
                        outs.join(", ")
                    );
                }
            }
        }
        for (a, b) in &self.plan.in_place {
            let _ = writeln!(
                s,
                "in place: %{} reuses %{}",
                self.slots[*a].name, self.slots[*b].name
            );
        }
        let _ = writeln!(
            s,
            "arena {} bytes ({} without reuse)",
            self.plan.arena_bytes, self.plan.naive_bytes
        );
        s
    }
}

/// Lowers a verified graph.
pub fn lower(g: &Graph, opts: &LowerOptions) -> Program {
    let mut slots: Vec<Slot> = g
        .values
        .iter()
        .map(|v| Slot {
            name: v.name.clone(),
            ty: v.ty.clone(),
            kind: match &v.def {
                ValueDef::Input => SlotKind::Input(0),
                ValueDef::Const(t) => SlotKind::Const(t.clone()),
                ValueDef::Node(..) => SlotKind::Temp,
            },
        })
        .collect();
    for (i, &v) in g.inputs.iter().enumerate() {
        slots[v.0 as usize].kind = SlotKind::Input(i);
    }
    let mut cx = Lowerer {
        slots,
        steps: Vec::new(),
        opts,
        count: 0,
    };
    let map: Vec<SlotId> = (0..g.values.len()).collect();
    for node in &g.nodes {
        cx.node(g, node, &map);
    }
    let Lowerer { slots, steps, .. } = cx;
    let mut p = Program {
        name: g.name.clone(),
        slots,
        steps,
        inputs: g.inputs.iter().map(|v| v.0 as usize).collect(),
        outputs: g.outputs.iter().map(|v| v.0 as usize).collect(),
        plan: Plan::default(),
    };
    p.plan = plan_memory(&p);
    p
}

/// The state of one lowering: slots and steps so far.
struct Lowerer<'a> {
    slots: Vec<Slot>,
    steps: Vec<Step>,
    opts: &'a LowerOptions,
    count: usize,
}

impl Lowerer<'_> {
    /// Lowers one node of `g`, whose values live in the slots `map` names.
    /// A fused body that does not lower as one kernel is split into its
    /// nodes, each lowered on its own.
    fn node(&mut self, g: &Graph, node: &kiln_ir::Node, map: &[SlotId]) {
        let slot = |v: kiln_ir::ValueId| map[v.0 as usize];
        if let Op::Reshape(_) = node.op {
            self.slots[slot(node.outputs[0])].kind = SlotKind::View(slot(node.inputs[0]));
            return;
        }
        let consts: Vec<Option<Tensor>> = node
            .inputs
            .iter()
            .map(|&v| const_of(&self.slots, slot(v)))
            .collect();
        let body = match &node.op {
            Op::Fused(f) => Ok(Arc::clone(&f.body)),
            op => single(g, node, op).map(Arc::new),
        };
        let name = kernel_name(&node.name, self.count);
        self.count += 1;
        let refs: Vec<Option<&Tensor>> = consts.iter().map(|c| c.as_ref()).collect();
        // A stride-1 convolution first pads and flattens its input (one
        // step), then runs as a matrix product on it (see `gemm::conv_flat`).
        let mut flat_slot = None;
        let flat = body
            .as_ref()
            .ok()
            .and_then(|b| flat_conv(b).map(|f| (Arc::clone(b), f)));
        let lowered = match flat {
            Some((b, (pad_body, wp))) => {
                let pad =
                    body::lower_body(&format!("{name}_pad"), &pad_body, &refs, self.opts, None)
                        .and_then(|pad| {
                            body::lower_body(&name, &b, &refs, self.opts, Some(wp))
                                .map(|conv| (pad, conv))
                        });
                match pad {
                    Ok((pad, conv)) => {
                        let out = pad_body.value(pad_body.outputs[0]);
                        self.slots.push(Slot {
                            name: format!("{}.flat", node.name),
                            ty: out.ty.clone(),
                            kind: SlotKind::Temp,
                        });
                        let s = self.slots.len() - 1;
                        flat_slot = Some(s);
                        let mut args: Vec<Option<SlotId>> =
                            node.inputs.iter().map(|&v| Some(slot(v))).collect();
                        args.push(Some(s));
                        self.steps.push(Step::Kernel {
                            kernel: pad.kernel,
                            args,
                        });
                        Ok(conv)
                    }
                    Err(_) => body
                        .as_ref()
                        .map_err(String::clone)
                        .and_then(|b| body::lower_body(&name, b, &refs, self.opts, None)),
                }
            }
            None => body
                .as_ref()
                .map_err(String::clone)
                .and_then(|b| body::lower_body(&name, b, &refs, self.opts, None)),
        };
        match (lowered, &node.op) {
            (Ok(l), _) => {
                let mut extra = l.extra.into_iter();
                let mut args = Vec::new();
                let (mut i, mut o) = (0, 0);
                for (bi, b) in l.kernel.bufs.iter().enumerate() {
                    args.push(match b.role {
                        Role::Scratch | Role::Shared => None,
                        Role::In if l.flat == Some(kiln_ir::kernel::BufId(bi as u32)) => flat_slot,
                        Role::Out => {
                            o += 1;
                            Some(slot(node.outputs[o - 1]))
                        }
                        Role::In if i < node.inputs.len() => {
                            i += 1;
                            Some(slot(node.inputs[i - 1]))
                        }
                        Role::In => {
                            let t = extra.next().expect("one constant per packed buffer");
                            self.slots.push(Slot {
                                name: format!("{}.{}", name, b.name),
                                ty: t.ty(),
                                kind: SlotKind::Const(t),
                            });
                            Some(self.slots.len() - 1)
                        }
                    });
                }
                self.steps.push(Step::Kernel {
                    kernel: l.kernel,
                    args,
                });
            }
            (Err(_), Op::Fused(f)) if f.body.nodes.len() > 1 => self.split(&f.body, node, map),
            (Err(reason), _) => self.steps.push(Step::Host {
                name: node.name.clone(),
                op: node.op.clone(),
                inputs: node.inputs.iter().map(|&v| slot(v)).collect(),
                outputs: node.outputs.iter().map(|&v| slot(v)).collect(),
                reason,
            }),
        }
    }

    /// Lowers the nodes of a fused body one by one: its inputs and outputs
    /// are the fused node's slots, its intermediates new temporaries.
    fn split(&mut self, body: &Graph, node: &kiln_ir::Node, map: &[SlotId]) {
        let mut inner: Vec<Option<SlotId>> = vec![None; body.values.len()];
        for (b, o) in body.inputs.iter().zip(&node.inputs) {
            inner[b.0 as usize] = Some(map[o.0 as usize]);
        }
        for (b, o) in body.outputs.iter().zip(&node.outputs) {
            inner[b.0 as usize].get_or_insert(map[o.0 as usize]);
        }
        let inner: Vec<SlotId> = inner
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.unwrap_or_else(|| {
                    let v = &body.values[i];
                    self.slots.push(Slot {
                        name: format!("{}.{}", node.name, v.name),
                        ty: v.ty.clone(),
                        kind: match &v.def {
                            ValueDef::Const(t) => SlotKind::Const(t.clone()),
                            _ => SlotKind::Temp,
                        },
                    });
                    self.slots.len() - 1
                })
            })
            .collect();
        for n in &body.nodes {
            self.node(body, n, &inner);
        }
    }
}

/// For a body whose one anchor is a 2-D, stride-1, dilation-1, ungrouped
/// f32 convolution with a kernel larger than 1x1: the body that computes its
/// input padded (`[N, C, Hp + 1, Wp]`, read flat by the product), and `Wp`.
fn flat_conv(body: &Graph) -> Option<(Graph, usize)> {
    use kiln_ir::op::{Pad, PadMode};
    let anchors: Vec<&kiln_ir::Node> = body
        .nodes
        .iter()
        .filter(|n| !access::composable(&n.op))
        .collect();
    let [node] = anchors.as_slice() else {
        return None;
    };
    let Op::Conv(c) = &node.op else { return None };
    let x = body.value(node.inputs[0]).ty.clone();
    let w = &body.value(node.inputs[1]).ty.shape;
    let ok = x.shape.len() == 4
        && x.dtype == kiln_ir::DType::F32
        && c.group <= 1
        && c.strides.iter().all(|&s| s == 1)
        && c.dilations.iter().all(|&d| d == 1)
        && w[2] * w[3] > 1;
    if !ok {
        return None;
    }
    let wp = x.shape[3] + c.pads[1] + c.pads[3];
    let mut g = body.clone();
    // One extra zero row at the bottom covers the reads past the last
    // row's end (at most KW - 1 <= Wp elements).
    let p = [0, 0, c.pads[0], c.pads[1], 0, 0, c.pads[2] + 1, c.pads[3]];
    let pad = Op::Pad(Pad {
        pads: p.iter().map(|&x| x as i64).collect(),
        mode: PadMode::Constant,
        value: 0.0,
    });
    let out = g
        .add_node("flat", pad, vec![node.inputs[0]], &["flat"])
        .ok()?[0];
    g.outputs = vec![out];
    Some((crate::dce(&g), wp))
}

/// `s` as an identifier body: lower-case letters, digits and `_` only.
pub fn ident(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A kernel name from a node name.
fn kernel_name(node: &str, i: usize) -> String {
    format!("k{i}_{}", ident(node).trim_matches('_'))
}

/// The constant a slot holds (through views, reshaped), if any.
fn const_of(slots: &[Slot], mut s: SlotId) -> Option<Tensor> {
    let ty = slots[s].ty.clone();
    while let SlotKind::View(r) = slots[s].kind {
        s = r;
    }
    match &slots[s].kind {
        SlotKind::Const(t) => Some(t.reshaped(ty.shape)),
        _ => None,
    }
}

/// A one-node body for a node that is not fused.
fn single(g: &Graph, node: &kiln_ir::Node, op: &Op) -> Result<Graph, String> {
    let mut b = Graph::new(&node.name);
    let ins: Vec<_> = node
        .inputs
        .iter()
        .enumerate()
        .map(|(i, v)| b.add_input(&format!("a{i}"), g.value(*v).ty.clone()))
        .collect();
    let outs = b
        .add_node(&node.name, op.clone(), ins, &[])
        .map_err(|e| e.to_string())?;
    b.outputs = outs;
    Ok(b)
}
