//! The e-graph language: graph inputs, constants (by index into the analysis's
//! constant table) and ops of the tensor IR (fused kernels included), each e-node
//! naming one result of its op. An op is keyed by its text form, so two nodes with
//! equal ops and operands are one e-node.

use egg::{Id, Language};
use kiln_ir::{ConstStyle, Op};
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// An op with the result it names; compared and hashed by its text key.
#[derive(Clone, Debug)]
pub struct OpKey {
    key: Arc<str>,
    /// The op.
    pub op: Arc<Op>,
    /// Which result of the op this e-node is.
    pub out: usize,
}

impl OpKey {
    /// Keys result `out` of `op`.
    pub fn new(op: Op, out: usize) -> OpKey {
        let mut key = format!("{} {}", op.mnemonic(), op.def().attrs());
        if let Op::Fused(f) = &op {
            key.push_str(&f.body.to_text(ConstStyle::Full));
        }
        if out > 0 {
            key.push_str(&format!(" #{out}"));
        }
        OpKey {
            key: key.into(),
            op: Arc::new(op),
            out,
        }
    }

    /// The op's mnemonic.
    pub fn mnemonic(&self) -> &'static str {
        self.op.mnemonic()
    }
}

impl PartialEq for OpKey {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}
impl Eq for OpKey {}
impl Hash for OpKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.key.hash(h)
    }
}
impl PartialOrd for OpKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for OpKey {
    fn cmp(&self, o: &Self) -> Ordering {
        self.key.cmp(&o.key)
    }
}

/// An e-node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ENode {
    /// Graph input `i`.
    Input(u32),
    /// Constant `i` of the analysis's table.
    Const(u32),
    /// An op applied to e-classes.
    Op(OpKey, Vec<Id>),
}

impl ENode {
    /// The op, for op nodes.
    pub fn op(&self) -> Option<&OpKey> {
        match self {
            ENode::Op(k, _) => Some(k),
            _ => None,
        }
    }
}

/// What distinguishes e-nodes apart from their operands.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Disc {
    Input(u32),
    Const(u32),
    Op(Arc<str>),
}

impl Language for ENode {
    type Discriminant = Disc;

    fn discriminant(&self) -> Disc {
        match self {
            ENode::Input(i) => Disc::Input(*i),
            ENode::Const(i) => Disc::Const(*i),
            ENode::Op(k, _) => Disc::Op(k.key.clone()),
        }
    }

    fn matches(&self, other: &Self) -> bool {
        self.discriminant() == other.discriminant() && self.len() == other.len()
    }

    fn children(&self) -> &[Id] {
        match self {
            ENode::Op(_, c) => c,
            _ => &[],
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            ENode::Op(_, c) => c,
            _ => &mut [],
        }
    }
}
