//! Conversion between the tensor IR and the e-graph. Going in, every value becomes
//! an e-class and remembers its name (and its node's name); coming out, the chosen
//! nodes are emitted in dependency order with the model's names where a class
//! holds a model value, so diagnostics keep pointing at the model.

use super::analysis::{TensorAnalysis, EG};
use super::extract::Choice;
use super::lang::{ENode, OpKey};
use egg::{Id, Language};
use kiln_ir::op::Reshape;
use kiln_ir::{Graph, IrError, ValueDef, ValueId};
use std::collections::{HashMap, HashSet};

/// The e-graph of a graph, with each value's class and names.
pub struct Loaded {
    pub eg: EG,
    /// The class of every value, by value index.
    pub class_of: Vec<Id>,
    /// The output classes.
    pub roots: Vec<Id>,
}

/// Puts a verified graph into a new e-graph.
pub fn load(g: &Graph, fold_limit: usize) -> Loaded {
    let inputs = g.inputs.iter().map(|&i| g.value(i).ty.clone()).collect();
    let mut eg = EG::new(TensorAnalysis::new(inputs, fold_limit));
    let mut class_of = vec![Id::from(0usize); g.values.len()];
    for (k, &i) in g.inputs.iter().enumerate() {
        class_of[i.0 as usize] = eg.add(ENode::Input(k as u32));
    }
    for (id, t) in g.constants() {
        let c = eg.analysis.intern(t);
        class_of[id.0 as usize] = eg.add(ENode::Const(c));
    }
    for n in &g.nodes {
        let args: Vec<Id> = n.inputs.iter().map(|v| class_of[v.0 as usize]).collect();
        for (k, &o) in n.outputs.iter().enumerate() {
            class_of[o.0 as usize] = eg.add(ENode::Op(OpKey::new(n.op.clone(), k), args.clone()));
        }
    }
    eg.rebuild();
    let roots = g.outputs.iter().map(|v| class_of[v.0 as usize]).collect();
    Loaded {
        eg,
        class_of,
        roots,
    }
}

/// Builds the graph of the chosen nodes. Graph inputs and output names are kept;
/// a class holding a model value gets that value's name (the earliest one) and
/// its node's name. Also returns the class each emitted node computes (`None` for
/// the views that keep output names).
pub fn emit(g: &Graph, l: &Loaded, choice: &Choice) -> Result<(Graph, Vec<Option<Id>>), IrError> {
    let eg = &l.eg;
    let mut value_name: HashMap<Id, &str> = HashMap::new();
    let mut node_name: HashMap<Id, &str> = HashMap::new();
    for (v, &c) in g.values.iter().zip(&l.class_of) {
        let c = eg.find(c);
        value_name.entry(c).or_insert(&v.name);
        if let ValueDef::Node(n, _) = v.def {
            node_name.entry(c).or_insert(&g.node(n).name);
        }
    }
    // Outputs keep their names: the first output of a class names it, and the
    // names of later outputs of the same class are kept free for their views.
    let mut reserved: HashSet<String> = HashSet::new();
    let mut named_by_output: HashSet<Id> = HashSet::new();
    let input_classes: HashSet<Id> = g
        .inputs
        .iter()
        .map(|v| eg.find(l.class_of[v.0 as usize]))
        .collect();
    for (&o, &r) in g.outputs.iter().zip(&l.roots) {
        let c = eg.find(r);
        let name = &g.value(o).name;
        if !input_classes.contains(&c) && named_by_output.insert(c) {
            value_name.insert(c, name);
        } else if value_name.get(&c).copied() != Some(name.as_str()) {
            reserved.insert(name.clone());
        }
    }
    // Post-order of the chosen DAG from the roots.
    let mut order: Vec<Id> = Vec::new();
    let mut done: HashSet<Id> = HashSet::new();
    let mut stack: Vec<(Id, bool)> = l.roots.iter().rev().map(|&r| (eg.find(r), false)).collect();
    let mut open: HashSet<Id> = HashSet::new();
    while let Some((c, leaving)) = stack.pop() {
        if leaving {
            open.remove(&c);
            if done.insert(c) {
                order.push(c);
            }
            continue;
        }
        if done.contains(&c) {
            continue;
        }
        if !open.insert(c) {
            return Err(IrError::Verify(format!(
                "the chosen nodes form a cycle through class {c}"
            )));
        }
        let &i = choice.get(&c).ok_or_else(|| {
            IrError::Verify(format!("extraction left class {c} without a choice"))
        })?;
        stack.push((c, true));
        for &k in eg[c].nodes[i].children().iter().rev() {
            stack.push((eg.find(k), false));
        }
    }
    let mut out = Graph::new(&g.name);
    let mut val: HashMap<Id, ValueId> = HashMap::new();
    let mut used: HashSet<String> = reserved.clone();
    let mut classes: Vec<Option<Id>> = Vec::new();
    let mut multi: HashMap<(OpKey, Vec<ValueId>), Vec<ValueId>> = HashMap::new();
    let mut counter = 0usize;
    let mut fresh = |base: &str, used: &mut HashSet<String>| -> String {
        let mut name = base.to_string();
        while !used.insert(name.clone()) {
            counter += 1;
            name = format!("{base}_{counter}");
        }
        name
    };
    for (k, &i) in g.inputs.iter().enumerate() {
        let v = g.value(i);
        let id = out.add_input(&v.name, v.ty.clone());
        used.insert(v.name.clone());
        if let Some(c) = eg.lookup(ENode::Input(k as u32)) {
            val.insert(eg.find(c), id);
        }
    }
    for &c in &order {
        if let ENode::Const(t) = &eg[c].nodes[choice[&c]] {
            if val.contains_key(&c) {
                continue;
            }
            let name = fresh(value_name.get(&c).copied().unwrap_or("folded"), &mut used);
            let id = out.add_const(&name, eg.analysis.consts[*t as usize].clone());
            val.insert(c, id);
        }
    }
    for &c in &order {
        let ENode::Op(k, args) = &eg[c].nodes[choice[&c]] else {
            continue;
        };
        let ins: Vec<ValueId> = args.iter().map(|a| val[&eg.find(*a)]).collect();
        let base = value_name.get(&c).copied().unwrap_or(k.mnemonic());
        let name = fresh(base, &mut used);
        let nname = node_name
            .get(&c)
            .map(|s| s.to_string())
            .unwrap_or_else(|| name.clone());
        // A multi-result op is emitted once for all the results chosen of it.
        let shared = (OpKey::new((*k.op).clone(), 0), ins.clone());
        if let Some(vs) = multi.get(&shared) {
            val.insert(c, vs[k.out]);
            continue;
        }
        let n_results = out.infer(&nname, &k.op, &ins)?.len();
        let names: Vec<String> = (0..n_results)
            .map(|i| {
                if i == k.out {
                    name.clone()
                } else {
                    fresh(&format!("{name}:{i}"), &mut used)
                }
            })
            .collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let results = out.add_node(&nname, (*k.op).clone(), ins, &refs)?;
        classes.push(Some(c));
        val.insert(c, results[k.out]);
        if n_results > 1 {
            multi.insert(shared, results);
        }
    }
    for (&o, &r) in g.outputs.iter().zip(&l.roots) {
        let want = &g.value(o).name;
        let have = val[&eg.find(r)];
        if out.value(have).name == *want {
            out.outputs.push(have);
            continue;
        }
        // Another name already holds this value: keep the output's name with a view.
        used.remove(want);
        let name = fresh(want, &mut used);
        let shape = out.value(have).ty.shape.clone();
        let id = out.add_node(&name, Reshape { shape }.into(), vec![have], &[&name])?[0];
        classes.push(None);
        out.outputs.push(id);
    }
    out.verify()?;
    Ok((out, classes))
}
