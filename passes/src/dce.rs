//! Dead-code elimination: drops nodes and constants that no graph output depends
//! on, keeping graph inputs (they are the interface) and node order.

use kiln_ir::{Graph, ValueId};
use std::collections::HashMap;

/// Removes every node and constant no output depends on.
pub fn dce(g: &Graph) -> Graph {
    let mut live = vec![false; g.values.len()];
    for &o in &g.outputs {
        live[o.0 as usize] = true;
    }
    let mut live_nodes = vec![false; g.nodes.len()];
    for (ni, n) in g.nodes.iter().enumerate().rev() {
        if n.outputs.iter().any(|o| live[o.0 as usize]) {
            live_nodes[ni] = true;
            for i in &n.inputs {
                live[i.0 as usize] = true;
            }
        }
    }
    let mut out = Graph::new(&g.name);
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    for &i in &g.inputs {
        let v = g.value(i);
        map.insert(i, out.add_input(&v.name, v.ty.clone()));
    }
    for (id, t) in g.constants() {
        if live[id.0 as usize] {
            map.insert(id, out.add_const(&g.value(id).name, t.clone()));
        }
    }
    for (ni, n) in g.nodes.iter().enumerate() {
        if !live_nodes[ni] {
            continue;
        }
        let ins = n.inputs.iter().map(|i| map[i]).collect();
        let names: Vec<&str> = n
            .outputs
            .iter()
            .map(|&o| g.value(o).name.as_str())
            .collect();
        let outs = out
            .add_node(&n.name, n.op.clone(), ins, &names)
            .expect("a verified graph's nodes re-infer");
        for (&o, &no) in n.outputs.iter().zip(&outs) {
            out.values[no.0 as usize].ty.sharding = g.value(o).ty.sharding.clone();
            map.insert(o, no);
        }
    }
    for (&i, &o) in g.inputs.iter().zip(&out.inputs) {
        out.values[o.0 as usize].ty.sharding = g.value(i).ty.sharding.clone();
    }
    out.outputs = g.outputs.iter().map(|o| map[o]).collect();

    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::op::{Binary, BinaryKind, Unary, UnaryKind};
    use kiln_ir::{interp, DType, Tensor, TensorType};
    use std::collections::HashMap;

    #[test]
    fn removes_dead_nodes_and_constants_and_keeps_meaning() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(DType::F32, vec![2, 3]).unwrap());
        let c = g.add_const("c", Tensor::from_f64(DType::F32, vec![3], &[1.0, 2.0, 3.0]));
        let dead_c = g.add_const("dead_c", Tensor::from_f64(DType::F32, vec![1], &[5.0]));
        let add = Binary {
            kind: BinaryKind::Add,
        };
        let y = g
            .add_node("add", add.clone().into(), vec![x, c], &["y"])
            .unwrap()[0];
        g.add_node("dead", add.into(), vec![y, dead_c], &["d"])
            .unwrap();
        let z = g
            .add_node(
                "exp",
                Unary {
                    kind: UnaryKind::Exp,
                }
                .into(),
                vec![y],
                &["z"],
            )
            .unwrap()[0];
        g.outputs = vec![z];
        g.verify().unwrap();
        let d = dce(&g);
        d.verify().unwrap();
        assert_eq!(d.nodes.len(), 2);
        assert!(d.find("dead_c").is_none() && d.find("d").is_none());
        let xs = Tensor::from_f64(DType::F32, vec![2, 3], &[0.1, -0.2, 0.3, 0.4, -0.5, 0.6]);
        let inputs = HashMap::from([("x".to_string(), xs)]);
        assert_eq!(
            interp::run(&g, &inputs).unwrap(),
            interp::run(&d, &inputs).unwrap()
        );
    }
}
