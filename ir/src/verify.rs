//! The verifier: structural and type rules every graph must satisfy between passes
//! (ids in range, single definition, topological order and hence no cycles, unique
//! names, types that match each op's inference, defined outputs).

use crate::{Graph, IrError, NodeId, ValueDef, ValueId};
use std::collections::HashSet;

impl Graph {
    /// Checks every rule; the error names the first offending value or node.
    pub fn verify(&self) -> Result<(), IrError> {
        let err = |m: String| Err(IrError::Verify(m));
        let nv = self.values.len();
        let in_range = |v: ValueId| (v.0 as usize) < nv;
        let mut names = HashSet::new();
        for v in &self.values {
            if !names.insert(v.name.as_str()) {
                return err(format!("value name '{}' is defined twice", v.name));
            }
        }
        for (i, v) in self.values.iter().enumerate() {
            match &v.def {
                ValueDef::Input => {
                    if !self.inputs.contains(&ValueId(i as u32)) {
                        return err(format!("value '{}' is an input not listed as one", v.name));
                    }
                }
                ValueDef::Const(t) => {
                    if t.dtype() != v.ty.dtype || t.shape() != v.ty.shape {
                        return err(format!(
                            "constant '{}' holds {} but is typed {}",
                            v.name,
                            t.ty(),
                            v.ty
                        ));
                    }
                }
                ValueDef::Node(n, k) => {
                    let ok = self
                        .nodes
                        .get(n.0 as usize)
                        .and_then(|node| node.outputs.get(*k))
                        .is_some_and(|&o| o.0 as usize == i);
                    if !ok {
                        return err(format!(
                            "value '{}' claims to be result {k} of node {} which does not define it",
                            v.name, n.0
                        ));
                    }
                }
            }
        }
        for &i in &self.inputs {
            if !in_range(i) || self.value(i).def != ValueDef::Input {
                return err(format!("graph input {} is not an input value", i.0));
            }
        }
        let mut defined: HashSet<ValueId> = (0..nv as u32)
            .map(ValueId)
            .filter(|&v| !matches!(self.value(v).def, ValueDef::Node(..)))
            .collect();
        for (ni, node) in self.nodes.iter().enumerate() {
            for &v in &node.inputs {
                if !in_range(v) {
                    return err(format!("node '{}' uses unknown value {}", node.name, v.0));
                }
                if !defined.contains(&v) {
                    return err(format!(
                        "node '{}' uses '{}' before it is defined (nodes out of order or a cycle)",
                        node.name,
                        self.value(v).name
                    ));
                }
            }
            for (k, &o) in node.outputs.iter().enumerate() {
                if !in_range(o) || self.value(o).def != ValueDef::Node(NodeId(ni as u32), k) {
                    return err(format!(
                        "node '{}' result {k} is not defined by it exactly once",
                        node.name
                    ));
                }
                defined.insert(o);
            }
            let tys = self.infer(&node.name, &node.op, &node.inputs)?;
            if tys.len() != node.outputs.len() {
                return err(format!(
                    "node '{}' ({}) has {} results, its op defines {}",
                    node.name,
                    node.op.mnemonic(),
                    node.outputs.len(),
                    tys.len()
                ));
            }
            for (t, &o) in tys.iter().zip(&node.outputs) {
                let have = &self.value(o).ty;
                if t.dtype != have.dtype || t.shape != have.shape {
                    return err(format!(
                        "node '{}' ({}) result '{}' is typed {have}, inference gives {t}",
                        node.name,
                        node.op.mnemonic(),
                        self.value(o).name
                    ));
                }
            }
        }
        for &o in &self.outputs {
            if !in_range(o) {
                return err(format!("graph output {} is not a value", o.0));
            }
        }
        Ok(())
    }
}
