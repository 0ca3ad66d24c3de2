//! `fused`: one kernel's worth of computation, produced by the optimizer. Its body
//! is a small graph whose inputs are the kernel's operands; its meaning is the
//! body's, run on the interpreter. The text form prints the body inline.

use super::OpDef;
use crate::{Attrs, Graph, Op, Tensor, TensorType};
use std::collections::HashMap;
use std::sync::Arc;

/// A fused kernel: the body computes the results from the operands.
#[derive(Clone, Debug, PartialEq)]
pub struct Fused {
    pub body: Arc<Graph>,
}

impl Fused {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["fused"];

    pub(crate) fn parse(_: &str, _: &Attrs) -> Result<Self, String> {
        Err("a fused op needs its body graph".into())
    }

    /// The op that decides the kernel's shape (matmul, conv, attention, a
    /// reduction or normalization), if the body has one; `None` for a purely
    /// elementwise or data-movement kernel.
    pub fn anchor(&self) -> Option<&Op> {
        self.body
            .nodes
            .iter()
            .map(|n| &n.op)
            .find(|op| !super::is_injective(op))
    }

    /// A short name for the kind of kernel (`matmul+3`, `elementwise`, ...): the
    /// anchor's mnemonic and how many other ops ride along.
    pub fn kind(&self) -> String {
        let n = self.body.nodes.len();
        match self.anchor() {
            Some(a) if n == 1 => a.mnemonic().to_string(),
            Some(a) => format!("{}+{}", a.mnemonic(), n - 1),
            None => "elementwise".to_string(),
        }
    }
}

impl OpDef for Fused {
    fn mnemonic(&self) -> &'static str {
        "fused"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default()
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let b = &self.body;
        if inputs.len() != b.inputs.len() {
            return Err(format!(
                "the body takes {} operands, got {}",
                b.inputs.len(),
                inputs.len()
            ));
        }
        for (i, (t, &p)) in inputs.iter().zip(&b.inputs).enumerate() {
            let want = &b.value(p).ty;
            if t.dtype != want.dtype || t.shape != want.shape {
                return Err(format!("operand {i} is {t}, the body expects {want}"));
            }
        }
        b.verify().map_err(|e| format!("body: {e}"))?;
        Ok(b.outputs
            .iter()
            .map(|&o| {
                let t = &b.value(o).ty;
                TensorType {
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    sharding: None,
                }
            })
            .collect())
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let b = &self.body;
        let named: HashMap<String, Tensor> = b
            .inputs
            .iter()
            .zip(inputs)
            .map(|(&p, &t)| (b.value(p).name.clone(), t.clone()))
            .collect();
        crate::interp::run(b, &named).map_err(|e| format!("in the fused body: {e}"))
    }

    fn flops(&self, _: &[&TensorType], _: &[TensorType]) -> u64 {
        self.body.flops()
    }
}
