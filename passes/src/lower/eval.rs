//! Reference semantics of a lowered program: runs every kernel with the kernel
//! IR's evaluator and every host step with the op's reference semantics, on
//! `f64` element vectors. Slow; it tests the lowering without a backend.

use super::{Program, SlotKind, Step};
use kiln_ir::kernel::{round_to, Role};
use kiln_ir::{IrError, Tensor};

impl Program {
    /// Runs the program on the graph's inputs (in order); returns the outputs.
    pub fn eval(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, IrError> {
        let mut data: Vec<Option<Vec<f64>>> = vec![None; self.slots.len()];
        for (i, s) in self.slots.iter().enumerate() {
            match &s.kind {
                SlotKind::Input(n) => {
                    let t = inputs
                        .get(*n)
                        .ok_or_else(|| IrError::Eval(format!("missing input {n}")))?;
                    data[i] = Some(t.to_f64_vec());
                }
                SlotKind::Const(t) => data[i] = Some(t.to_f64_vec()),
                _ => {}
            }
        }
        let get = |data: &[Option<Vec<f64>>], s: usize| -> Result<Vec<f64>, IrError> {
            data[self.root(s)].clone().ok_or_else(|| {
                IrError::Eval(format!("slot '{}' read before written", self.slots[s].name))
            })
        };
        for st in &self.steps {
            match st {
                Step::Kernel { kernel, args } => {
                    let mut bufs = Vec::new();
                    for (b, a) in kernel.bufs.iter().zip(args) {
                        bufs.push(match (b.role, a) {
                            (Role::In, Some(s)) => get(&data, *s)?,
                            _ => vec![0.0; b.numel()],
                        });
                    }
                    kernel.eval(&mut bufs).map_err(IrError::Eval)?;
                    for ((b, a), v) in kernel.bufs.iter().zip(args).zip(bufs) {
                        if let (Role::Out, Some(s)) = (b.role, a) {
                            data[self.root(*s)] = Some(v);
                        }
                    }
                }
                Step::Host {
                    name,
                    op,
                    inputs,
                    outputs,
                    ..
                } => {
                    let ts: Vec<Tensor> = inputs
                        .iter()
                        .map(|&s| {
                            let t = &self.slots[s].ty;
                            get(&data, s).map(|v| Tensor::from_f64(t.dtype, t.shape.clone(), &v))
                        })
                        .collect::<Result<_, _>>()?;
                    let refs: Vec<&Tensor> = ts.iter().collect();
                    let outs = op
                        .def()
                        .eval(&refs)
                        .map_err(|e| IrError::Eval(format!("node '{name}': {e}")))?;
                    for (o, t) in outputs.iter().zip(outs) {
                        data[self.root(*o)] = Some(t.to_f64_vec());
                    }
                }
            }
        }
        self.outputs
            .iter()
            .map(|&o| {
                let t = &self.slots[o].ty;
                let v: Vec<f64> = get(&data, o)?
                    .into_iter()
                    .map(|x| round_to(t.dtype, x))
                    .collect();
                Ok(Tensor::from_f64(t.dtype, t.shape.clone(), &v))
            })
            .collect()
    }
}
