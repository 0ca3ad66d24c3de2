//! Row-wise normalizations: layer norm (two-pass mean and variance), RMS norm
//! and (log-)softmax (max, then sum of exponentials). One row per inner loop
//! nest; rows are split across threads; the epilogue applies at the last pass.

use super::access::{add, broadcast_ix, cast, div, mul, sub};
use super::body::{index_vars, nest, Cx};
use kiln_ir::kernel::{BinOp, Expr, Stmt, UnOp};
use kiln_ir::{Node, Op};

pub(crate) fn lower(cx: &mut Cx, node: &Node) -> Result<Vec<Stmt>, String> {
    let xv = node.inputs[0];
    let shape = cx.a.shape(xv).to_vec();
    let d = cx.a.dtype(xv);
    let lit = |v: f64| Expr::lit(d, v);
    // Reduced dims: `axis..` for the norms, the one axis for softmax.
    let (axis, softmax) = match &node.op {
        Op::LayerNorm(l) => (l.axis, None),
        Op::RmsNorm(r) => (r.axis, None),
        Op::Softmax(s) => (s.axis, Some(s.log)),
        _ => return Err("not a normalization".into()),
    };
    let red: Vec<usize> = match softmax {
        Some(_) => vec![axis],
        None => (axis..shape.len()).collect(),
    };
    let outer_shape: Vec<usize> = (0..shape.len())
        .map(|i| if red.contains(&i) { 1 } else { shape[i] })
        .collect();
    let (oix, loops) = index_vars("o", &outer_shape);
    let n: usize = red.iter().map(|&i| shape[i]).product();
    // One pass over the row with loop prefix `p`: the element index and loops.
    let pass = |p: &str| {
        let inner: Vec<usize> = (0..shape.len())
            .map(|i| if red.contains(&i) { shape[i] } else { 1 })
            .collect();
        let (iix, ils) = index_vars(p, &inner);
        let ix: Vec<Expr> = oix
            .iter()
            .zip(&iix)
            .enumerate()
            .map(|(i, (o, r))| {
                if red.contains(&i) {
                    r.clone()
                } else {
                    o.clone()
                }
            })
            .collect();
        (ix, ils)
    };
    let mut row = Vec::new();
    let reduce = |cx: &mut Cx,
                  prefix: &str,
                  acc: &str,
                  init: f64,
                  f: &dyn Fn(Expr, Expr) -> Expr,
                  row: &mut Vec<Stmt>|
     -> Result<(), String> {
        let (ix, ils) = pass(prefix);
        let x = cx.a.value(xv, &ix)?;
        let mut b = cx.a.take_lets();
        b.push(Stmt::Set {
            name: acc.into(),
            value: f(Expr::local(acc), x),
        });
        row.push(Stmt::Let {
            name: acc.into(),
            dtype: d,
            init: Expr::lit(d, init),
        });
        row.extend(nest(&ils, b));
        if let Some((v, e)) = ils.last() {
            cx.vectorize(v, *e);
        }
        Ok(())
    };
    let (ix, ils) = pass("r");
    let y = match (&node.op, softmax) {
        (Op::Softmax(_), Some(log)) => {
            reduce(
                cx,
                "p",
                "mx",
                f64::NEG_INFINITY,
                &|a, x| Expr::bin(BinOp::Max, a, x),
                &mut row,
            )?;
            reduce(
                cx,
                "q",
                "sum",
                0.0,
                &|a, x| add(a, Expr::un(UnOp::Exp, sub(x, Expr::local("mx")))),
                &mut row,
            )?;
            let x = cx.a.value(xv, &ix)?;
            let e = sub(x, Expr::local("mx"));
            if log {
                sub(e, Expr::un(UnOp::Log, Expr::local("sum")))
            } else {
                row.push(Stmt::Let {
                    name: "inv".into(),
                    dtype: d,
                    init: div(lit(1.0), Expr::local("sum")),
                });
                mul(Expr::un(UnOp::Exp, e), Expr::local("inv"))
            }
        }
        (Op::LayerNorm(l), _) => {
            reduce(cx, "p", "sum", 0.0, &|a, x| add(a, x), &mut row)?;
            row.push(Stmt::Let {
                name: "mean".into(),
                dtype: d,
                init: div(Expr::local("sum"), lit(n as f64)),
            });
            reduce(
                cx,
                "q",
                "var",
                0.0,
                &|a, x| {
                    let c = sub(x, Expr::local("mean"));
                    add(a, mul(c.clone(), c))
                },
                &mut row,
            )?;
            row.push(inv_sqrt("var", n, l.epsilon, d));
            for (k, local) in [(1, "mean"), (2, "inv")] {
                let v = node.outputs[k];
                if cx.a.uses(v) == 0 {
                    continue;
                }
                let Some(p) = cx.a.g.outputs.iter().position(|o| *o == v) else {
                    return Err("layer_norm statistics used inside a kernel".into());
                };
                let sd = cx.a.dtype(v);
                row.push(Stmt::Store {
                    buf: cx.outs[p],
                    index: oix.clone(),
                    value: cast(sd, d, Expr::local(local)),
                });
            }
            let x = cx.a.value(xv, &ix)?;
            let mut y = mul(sub(x, Expr::local("mean")), Expr::local("inv"));
            for (k, &pv) in node.inputs.iter().enumerate().skip(1) {
                let ps = cx.a.shape(pv).to_vec();
                let pix = broadcast_ix(&ps, &shape[l.axis..], &ix[l.axis..]);
                let p = cx.a.value(pv, &pix)?;
                y = if k == 1 { mul(y, p) } else { add(y, p) };
            }
            y
        }
        (Op::RmsNorm(rn), _) => {
            reduce(
                cx,
                "p",
                "ss",
                0.0,
                &|a, x| add(a, mul(x.clone(), x)),
                &mut row,
            )?;
            row.push(inv_sqrt("ss", n, rn.epsilon, d));
            let x = cx.a.value(xv, &ix)?;
            let ps = cx.a.shape(node.inputs[1]).to_vec();
            let pix = broadcast_ix(&ps, &shape[rn.axis..], &ix[rn.axis..]);
            let p = cx.a.value(node.inputs[1], &pix)?;
            mul(mul(x, Expr::local("inv")), p)
        }
        _ => return Err("not a normalization".into()),
    };
    let store = cx.epilogue(node.outputs[0], ix, y)?;
    row.extend(nest(&ils, store));
    if let Some((v, e)) = ils.last() {
        cx.vectorize(v, *e);
    }
    cx.parallel_if(&loops, shape.iter().product());
    Ok(nest(&loops, row))
}

/// `let $inv = 1 / sqrt($sum / n + eps)`: the scale of LayerNorm (variance)
/// and RMSNorm (mean square).
fn inv_sqrt(sum: &str, n: usize, eps: f64, d: kiln_ir::DType) -> Stmt {
    let lit = |v: f64| Expr::lit(d, v);
    let mean = Expr::bin(BinOp::Div, Expr::local(sum), lit(n as f64));
    Stmt::Let {
        name: "inv".into(),
        dtype: d,
        init: Expr::bin(
            BinOp::Div,
            lit(1.0),
            Expr::un(UnOp::Sqrt, Expr::plus(mean, lit(eps))),
        ),
    }
}
