//! Terms that rules add to the e-graph, and the rule type. A term is built bottom
//! up; each new node is typed by its op's inference before it is added, so a rule
//! whose instance does not type adds nothing. New e-nodes are recorded with the
//! rule that made them (for `--explain`).

use super::analysis::{infer, EG};
use super::lang::{ENode, OpKey};
use egg::Id;
use kiln_ir::{Op, Tensor};

/// An expression to add: existing classes, new ops over terms, new constants.
#[derive(Clone, Debug)]
pub enum Term {
    /// An existing e-class.
    Class(Id),
    /// Result `out` of `op` applied to terms.
    Node(Op, usize, Vec<Term>),
    /// A new constant.
    Const(Tensor),
}

/// Result 0 of `op` over `args`.
pub fn node(op: impl Into<Op>, args: Vec<Term>) -> Term {
    Term::Node(op.into(), 0, args)
}

/// An existing class.
pub fn class(id: Id) -> Term {
    Term::Class(id)
}

/// A rewrite: its name and a search that, given a class, returns terms equal to
/// classes (usually the class itself).
pub struct Rule {
    pub name: &'static str,
    pub search: fn(&EG, Id) -> Vec<(Id, Term)>,
}

/// New e-nodes with the rule that made them.
pub type Provenance = Vec<(ENode, &'static str)>;

/// Adds a term; `Err` (and nothing further added) when a node does not type.
pub fn add_term(
    eg: &mut EG,
    t: &Term,
    rule: &'static str,
    prov: &mut Provenance,
) -> Result<Id, String> {
    match t {
        Term::Class(c) => Ok(eg.find(*c)),
        Term::Const(t) => {
            let i = eg.analysis.intern(t);
            Ok(add_new(eg, ENode::Const(i), rule, prov))
        }
        Term::Node(op, out, args) => {
            let ids = args
                .iter()
                .map(|a| add_term(eg, a, rule, prov))
                .collect::<Result<Vec<Id>, String>>()?;
            infer(eg, op, *out, &ids)?;
            Ok(add_new(
                eg,
                ENode::Op(OpKey::new(op.clone(), *out), ids),
                rule,
                prov,
            ))
        }
    }
}

fn add_new(eg: &mut EG, n: ENode, rule: &'static str, prov: &mut Provenance) -> Id {
    if let Some(id) = eg.lookup(n.clone()) {
        return id;
    }
    prov.push((n.clone(), rule));
    eg.add(n)
}
