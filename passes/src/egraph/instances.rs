//! Rule instances as graphs, for soundness tests: each match of a rule in a graph
//! becomes a copy of the graph where the matched value is computed by the rule's
//! right-hand side instead, so the interpreter can run both sides.

use super::convert::{emit, load, Loaded};
use super::extract::Choice;
use super::lang::ENode;
use super::term::{add_term, Rule};
use super::OptError;
use egg::{Id, Language};
use kiln_ir::Graph;

/// Every rule the saturation phases run, by name.
pub fn all_rules() -> Vec<&'static Rule> {
    [
        super::rules::algebra::RULES,
        super::rules::recognize::RULES,
        super::rules::merge::RULES,
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The graphs of up to `limit` instances of rule `name` in `g`.
pub fn instances(g: &Graph, name: &str, limit: usize) -> Result<Vec<Graph>, OptError> {
    let rule = all_rules()
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| OptError::Broken(format!("no rule named '{name}'")))?;
    let probe = load(g, 1 << 24);
    let mut ids: Vec<Id> = probe.eg.classes().map(|c| c.id).collect();
    ids.sort();
    let mut matches = Vec::new();
    for c in ids {
        for (target, term) in (rule.search)(&probe.eg, c) {
            matches.push((c, target, term));
        }
    }
    let mut out = Vec::new();
    for (_, target, term) in matches.into_iter().take(limit) {
        let mut l = load(g, 1 << 24);
        let mut prov = Vec::new();
        let Ok(t) = add_term(&mut l.eg, &term, rule.name, &mut prov) else {
            continue;
        };
        let root = l.eg[t].nodes[0].clone();
        l.eg.union(target, t);
        l.eg.rebuild();
        if let Some(m) = &l.eg.analysis.broken {
            return Err(OptError::Broken(m.clone()));
        }
        out.push(emit_with(g, &l, root)?);
    }
    Ok(out)
}

/// Emits the graph choosing `root` where its class has it, else each class's
/// node as the model wrote it (or any node of classes the term made).
fn emit_with(g: &Graph, l: &Loaded, root: ENode) -> Result<Graph, OptError> {
    let eg = &l.eg;
    let canon = |n: &ENode| n.clone().map_children(|k| eg.find(k));
    let root = canon(&root);
    let mut choice = Choice::new();
    // The model's own nodes first, in graph order, then the rest.
    let original: Vec<ENode> = load(g, 1 << 24)
        .eg
        .classes()
        .flat_map(|c| c.nodes.clone())
        .collect();
    for c in eg.classes() {
        let nodes: Vec<ENode> = c.nodes.iter().map(canon).collect();
        let pick = nodes
            .iter()
            .position(|n| *n == root)
            .or_else(|| {
                nodes.iter().position(|n| {
                    original
                        .iter()
                        .any(|o| o.discriminant() == n.discriminant())
                })
            })
            .unwrap_or(0);
        choice.insert(c.id, pick);
    }
    Ok(emit(g, l, &choice)?.0)
}
