//! Attention as one blocked kernel with an online softmax: per query row, a
//! running maximum and sum and an output row in per-thread scratch, so no
//! `[Sq x Sk]` score buffer exists. Causal masking shortens the key loop.

use super::access::{add, mul, sub};
use super::body::{index_vars, nest, Cx};
use kiln_ir::kernel::{BinOp, Expr, Role, Stmt, UnOp};
use kiln_ir::op::Attention;
use kiln_ir::{DType, Node};

pub(crate) fn lower(cx: &mut Cx, at: &Attention, node: &Node) -> Result<Vec<Stmt>, String> {
    let (qv, kv, vv) = (node.inputs[0], node.inputs[1], node.inputs[2]);
    let d = cx.a.dtype(qv);
    if d != DType::F32 && d != DType::F64 {
        return Err("attention is compiled for f32 and f64".into());
    }
    let qs = cx.a.shape(qv).to_vec();
    let r = qs.len();
    let (sq, dk) = (qs[r - 2], qs[r - 1]);
    let sk = cx.a.shape(kv)[r - 2];
    let dv = cx.a.shape(vv)[r - 1];
    let (bix, mut loops) = index_vars("b", &qs[..r - 2]);
    let (i, j, c) = (Expr::var("i"), Expr::var("j"), Expr::var("c"));
    let at_ix = |last2: [Expr; 2]| {
        let mut v = bix.clone();
        v.extend(last2);
        v
    };
    let acc = cx.a.add_buf("row", d, vec![dv], Role::Scratch);
    let lit = |x: f64| Expr::lit(d, x);
    // Scores: s = scale * q[i] . k[j].
    let qe = cx.a.value(qv, &at_ix([i.clone(), Expr::var("d")]))?;
    let ke = cx.a.value(kv, &at_ix([j.clone(), Expr::var("d")]))?;
    let mut dot = cx.a.take_lets();
    dot.push(Stmt::Set {
        name: "s".into(),
        value: add(Expr::local("s"), mul(qe, ke)),
    });
    let ve = cx.a.value(vv, &at_ix([j.clone(), c.clone()]))?;
    let mut axpy = cx.a.take_lets();
    axpy.push(Stmt::Store {
        buf: acc,
        index: vec![c.clone()],
        value: add(
            mul(Expr::load(acc, vec![c.clone()]), Expr::local("corr")),
            mul(Expr::local("p"), ve),
        ),
    });
    let key_body = vec![
        Stmt::Let {
            name: "s".into(),
            dtype: d,
            init: lit(0.0),
        },
        loop_("d", Expr::Int(dk as i64), dot),
        Stmt::Set {
            name: "s".into(),
            value: mul(Expr::local("s"), lit(at.scale)),
        },
        Stmt::Let {
            name: "mx".into(),
            dtype: d,
            init: Expr::bin(BinOp::Max, Expr::local("m"), Expr::local("s")),
        },
        Stmt::Let {
            name: "corr".into(),
            dtype: d,
            init: Expr::un(UnOp::Exp, sub(Expr::local("m"), Expr::local("mx"))),
        },
        Stmt::Let {
            name: "p".into(),
            dtype: d,
            init: Expr::un(UnOp::Exp, sub(Expr::local("s"), Expr::local("mx"))),
        },
        Stmt::Set {
            name: "l".into(),
            value: add(mul(Expr::local("l"), Expr::local("corr")), Expr::local("p")),
        },
        loop_("c", Expr::Int(dv as i64), axpy),
        Stmt::Set {
            name: "m".into(),
            value: Expr::local("mx"),
        },
    ];
    let keys = if at.causal {
        Expr::bin(
            BinOp::Min,
            Expr::plus(i.clone(), Expr::Int(1)),
            Expr::Int(sk as i64),
        )
    } else {
        Expr::Int(sk as i64)
    };
    let out_value = Expr::bin(
        BinOp::Div,
        Expr::load(acc, vec![c.clone()]),
        Expr::local("l"),
    );
    let store = cx.epilogue(node.outputs[0], at_ix([i.clone(), c.clone()]), out_value)?;
    let row = vec![
        Stmt::Let {
            name: "m".into(),
            dtype: d,
            init: lit(f64::NEG_INFINITY),
        },
        Stmt::Let {
            name: "l".into(),
            dtype: d,
            init: lit(0.0),
        },
        loop_(
            "c",
            Expr::Int(dv as i64),
            vec![Stmt::Store {
                buf: acc,
                index: vec![c.clone()],
                value: lit(0.0),
            }],
        ),
        loop_("j", keys, key_body),
        loop_("c", Expr::Int(dv as i64), store),
    ];
    loops.push(("i".into(), sq));
    let body = nest(&loops, row);
    cx.schedule.parallel = loops[0].1 > 1;
    let _ = c;
    Ok(rename_loops(body))
}

fn loop_(var: &str, extent: Expr, body: Vec<Stmt>) -> Stmt {
    Stmt::For {
        var: var.into(),
        extent,
        body,
    }
}

/// Loop variables must be unique in a kernel: the three `c` loops of a row
/// become `c`, `c1`, `c2`.
fn rename_loops(body: Vec<Stmt>) -> Vec<Stmt> {
    fn go(s: Vec<Stmt>, seen: &mut Vec<String>) -> Vec<Stmt> {
        s.into_iter()
            .map(|st| match st {
                Stmt::For { var, extent, body } => {
                    let mut name = var.clone();
                    let mut n = 0;
                    while seen.contains(&name) {
                        n += 1;
                        name = format!("{var}{n}");
                    }
                    seen.push(name.clone());
                    let body = if name != var {
                        body.into_iter()
                            .map(|b| subst_stmt(b, &var, &Expr::var(&name)))
                            .collect()
                    } else {
                        body
                    };
                    Stmt::For {
                        var: name,
                        extent,
                        body: go(body, seen),
                    }
                }
                other => other,
            })
            .collect()
    }
    go(body, &mut Vec::new())
}

/// Replaces loop variable `v` in a statement.
pub(crate) fn subst_stmt(s: Stmt, v: &str, by: &Expr) -> Stmt {
    match s {
        Stmt::For { var, extent, body } => Stmt::For {
            var,
            extent: extent.subst(v, by),
            body: body.into_iter().map(|b| subst_stmt(b, v, by)).collect(),
        },
        Stmt::Let { name, dtype, init } => Stmt::Let {
            name,
            dtype,
            init: init.subst(v, by),
        },
        Stmt::Set { name, value } => Stmt::Set {
            name,
            value: value.subst(v, by),
        },
        Stmt::Store { buf, index, value } => Stmt::Store {
            buf,
            index: index.iter().map(|e| e.subst(v, by)).collect(),
            value: value.subst(v, by),
        },
        other => other,
    }
}
