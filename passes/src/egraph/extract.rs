//! Extraction that pays once for shared nodes. A greedy tree-cost pass gives an
//! acyclic start; local search then changes one class's choice at a time and keeps
//! a change when the DAG cost (each reachable class's chosen node counted once)
//! drops and the selection stays acyclic, until no change helps or time is up.

use super::analysis::EG;
use super::lang::ENode;
use egg::{Id, Language};
use std::collections::HashMap;
use std::time::Instant;

/// The chosen node (index into the class's nodes) of every class that has one.
pub type Choice = HashMap<Id, usize>;

/// Greedy tree-cost choice: the fixpoint of `cost(n) + Σ cost(children)` taking
/// a class's best only on strict improvement (which keeps the choice acyclic).
pub fn greedy(eg: &EG, cost: &dyn Fn(Id, usize) -> f64) -> Choice {
    let mut ids: Vec<Id> = eg.classes().map(|c| c.id).collect();
    ids.sort();
    let mut best: HashMap<Id, (f64, usize)> = HashMap::new();
    loop {
        let mut changed = false;
        for &c in &ids {
            for (i, n) in eg[c].nodes.iter().enumerate() {
                let kids: Option<f64> = n
                    .children()
                    .iter()
                    .map(|&k| best.get(&eg.find(k)).map(|b| b.0))
                    .sum();
                let Some(k) = kids else { continue };
                let total = cost(c, i) + k;
                if best.get(&c).is_none_or(|b| total < b.0 * (1.0 - 1e-12)) {
                    best.insert(c, (total, i));
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    best.into_iter().map(|(c, (_, i))| (c, i)).collect()
}

/// DAG cost of a choice from `roots`, or `None` when it has a cycle.
pub fn dag_cost(
    eg: &EG,
    choice: &Choice,
    roots: &[Id],
    cost: &dyn Fn(Id, usize) -> f64,
) -> Option<f64> {
    // 1 = on the stack, 2 = done.
    let mut state: HashMap<Id, u8> = HashMap::new();
    let mut total = 0.0;
    let mut stack: Vec<(Id, bool)> = roots.iter().map(|&r| (eg.find(r), false)).collect();
    while let Some((c, leaving)) = stack.pop() {
        if leaving {
            state.insert(c, 2);
            continue;
        }
        match state.get(&c) {
            Some(2) => continue,
            Some(_) => return None,
            None => {}
        }
        let &i = choice.get(&c)?;
        state.insert(c, 1);
        total += cost(c, i);
        stack.push((c, true));
        for &k in eg[c].nodes[i].children() {
            let k = eg.find(k);
            match state.get(&k) {
                Some(1) => return None,
                Some(_) => {}
                None => stack.push((k, false)),
            }
        }
    }
    Some(total)
}

/// Classes reachable from `roots` under `choice`, sorted.
fn reachable(eg: &EG, choice: &Choice, roots: &[Id]) -> Vec<Id> {
    let mut seen: Vec<Id> = Vec::new();
    let mut stack: Vec<Id> = roots.iter().map(|&r| eg.find(r)).collect();
    let mut set = std::collections::HashSet::new();
    while let Some(c) = stack.pop() {
        if !set.insert(c) {
            continue;
        }
        seen.push(c);
        if let Some(&i) = choice.get(&c) {
            stack.extend(eg[c].nodes[i].children().iter().map(|&k| eg.find(k)));
        }
    }
    seen.sort();
    seen
}

/// Improves `choice` by single-class changes under the DAG cost.
pub fn improve(
    eg: &EG,
    mut choice: Choice,
    roots: &[Id],
    cost: &dyn Fn(Id, usize) -> f64,
    deadline: Instant,
) -> Choice {
    let Some(mut best) = dag_cost(eg, &choice, roots, cost) else {
        return choice;
    };
    loop {
        let mut improved = false;
        for c in reachable(eg, &choice, roots) {
            let Some(&cur) = choice.get(&c) else { continue };
            for i in 0..eg[c].nodes.len() {
                if i == cur || Instant::now() > deadline {
                    continue;
                }
                let n: &ENode = &eg[c].nodes[i];
                if n.children()
                    .iter()
                    .any(|k| !choice.contains_key(&eg.find(*k)))
                {
                    continue;
                }
                let was = choice.insert(c, i).expect("chosen");
                match dag_cost(eg, &choice, roots, cost) {
                    Some(t) if t < best * (1.0 - 1e-9) => {
                        best = t;
                        improved = true;
                        break;
                    }
                    _ => {
                        choice.insert(c, was);
                    }
                }
            }
        }
        if !improved || Instant::now() > deadline {
            return choice;
        }
    }
}
