//! The graph container: an arena of SSA values (graph inputs, constants, node
//! results) and nodes kept in topological order. Constants hold their tensors by
//! shared reference. Nodes are added through [`Graph::add_node`], which infers
//! result types, so a graph built through the API is well typed by construction.

use crate::op::Op;
use crate::{IrError, Tensor, TensorType};
use std::collections::HashMap;

/// Index of a value in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Index of a node in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// Where a value comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueDef {
    /// A graph input, bound at run time.
    Input,
    /// A constant (weights, folded shapes).
    Const(Tensor),
    /// Result `index` of a node.
    Node(NodeId, usize),
}

/// An SSA value.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    pub ty: TensorType,
    pub def: ValueDef,
}

/// An op applied to values.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The node's name (from the model, for diagnostics).
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

/// A tensor program.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: &str) -> Self {
        Graph {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// The value behind an id.
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.0 as usize]
    }

    /// The node behind an id.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    fn push_value(&mut self, name: &str, ty: TensorType, def: ValueDef) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(Value {
            name: name.to_string(),
            ty,
            def,
        });
        id
    }

    /// Declares a graph input.
    pub fn add_input(&mut self, name: &str, ty: TensorType) -> ValueId {
        let id = self.push_value(name, ty, ValueDef::Input);
        self.inputs.push(id);
        id
    }

    /// Adds a constant.
    pub fn add_const(&mut self, name: &str, t: Tensor) -> ValueId {
        self.push_value(name, t.ty(), ValueDef::Const(t))
    }

    /// Appends a node, inferring its result types; results are named
    /// `output_names[i]`, or `<node>:<i>` where none is given.
    pub fn add_node(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<ValueId>,
        output_names: &[&str],
    ) -> Result<Vec<ValueId>, IrError> {
        let tys = self.infer(name, &op, &inputs)?;
        let node = NodeId(self.nodes.len() as u32);
        let outputs: Vec<ValueId> = tys
            .into_iter()
            .enumerate()
            .map(|(i, ty)| {
                let vname = output_names
                    .get(i)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| format!("{name}:{i}"));
                self.push_value(&vname, ty, ValueDef::Node(node, i))
            })
            .collect();
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs,
            outputs: outputs.clone(),
        });
        Ok(outputs)
    }

    /// Runs the op's inference on the given operands, wrapping errors with the
    /// node's name, op and operand types.
    pub fn infer(
        &self,
        name: &str,
        op: &Op,
        inputs: &[ValueId],
    ) -> Result<Vec<TensorType>, IrError> {
        let tys: Vec<&TensorType> = inputs.iter().map(|&v| &self.value(v).ty).collect();
        op.def().infer(&tys).map_err(|msg| IrError::Node {
            node: name.to_string(),
            op: op.mnemonic().to_string(),
            operands: tys
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            msg,
        })
    }

    /// How many times each value is used (by nodes and as graph outputs).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut n = vec![0; self.values.len()];
        for node in &self.nodes {
            for v in &node.inputs {
                n[v.0 as usize] += 1;
            }
        }
        for v in &self.outputs {
            n[v.0 as usize] += 1;
        }
        n
    }

    /// Looks up a value by name.
    pub fn find(&self, name: &str) -> Option<ValueId> {
        self.values
            .iter()
            .position(|v| v.name == name)
            .map(|i| ValueId(i as u32))
    }

    /// Constant tensors by value id.
    pub fn constants(&self) -> impl Iterator<Item = (ValueId, &Tensor)> {
        self.values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match &v.def {
                ValueDef::Const(t) => Some((ValueId(i as u32), t)),
                _ => None,
            })
    }

    /// Op counts by mnemonic, sorted by name.
    pub fn op_histogram(&self) -> Vec<(&'static str, usize)> {
        let mut h: HashMap<&'static str, usize> = HashMap::new();
        for n in &self.nodes {
            *h.entry(n.op.mnemonic()).or_default() += 1;
        }
        let mut v: Vec<_> = h.into_iter().collect();
        v.sort();
        v
    }

    /// Estimated operations of the whole graph.
    pub fn flops(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| {
                let ins: Vec<&TensorType> = n.inputs.iter().map(|&v| &self.value(v).ty).collect();
                let outs: Vec<TensorType> = n
                    .outputs
                    .iter()
                    .map(|&v| self.value(v).ty.clone())
                    .collect();
                n.op.def().flops(&ins, &outs)
            })
            .sum()
    }
}
