//! Reductions over axes and pooling windows: one loop nest over the result,
//! an inner nest over the reduced elements accumulating in a local.

use super::access::{add, cast, clamp, div};
use super::body::{index_vars, nest, Cx};
use kiln_ir::kernel::{BinOp, Expr, Stmt};
use kiln_ir::op::{Pool, PoolKind, Reduce, ReduceKind};
use kiln_ir::{DType, Node};

pub(crate) fn reduce(cx: &mut Cx, r: &Reduce, node: &Node) -> Result<Vec<Stmt>, String> {
    let xv = node.inputs[0];
    let shape = cx.a.shape(xv).to_vec();
    let d = cx.a.dtype(xv);
    if !d.is_float() && r.kind != ReduceKind::Sum {
        return Err(format!("{:?} of {d} is not compiled yet", r.kind));
    }
    if !d.is_numeric() {
        return Err(format!("reduction of {d}"));
    }
    let kept: Vec<usize> = (0..shape.len())
        .map(|i| if r.axes.contains(&i) { 1 } else { shape[i] })
        .collect();
    let inner: Vec<usize> = (0..shape.len())
        .map(|i| if r.axes.contains(&i) { shape[i] } else { 1 })
        .collect();
    let (oix, loops) = index_vars("o", &kept);
    let (iix, ils) = index_vars("r", &inner);
    let ix: Vec<Expr> = (0..shape.len())
        .map(|i| {
            if r.axes.contains(&i) {
                iix[i].clone()
            } else {
                oix[i].clone()
            }
        })
        .collect();
    let lit = |v: f64| super::access::lit(d, v);
    let (init, op) = match r.kind {
        ReduceKind::Sum | ReduceKind::Mean => (0.0, BinOp::Add),
        ReduceKind::Max => (f64::NEG_INFINITY, BinOp::Max),
        ReduceKind::Min => (f64::INFINITY, BinOp::Min),
    };
    let x = cx.a.value(xv, &ix)?;
    let mut b = cx.a.take_lets();
    b.push(Stmt::Set {
        name: "acc".into(),
        value: Expr::bin(op, Expr::local("acc"), x),
    });
    let count: usize = inner.iter().product();
    let mut result = Expr::local("acc");
    if r.kind == ReduceKind::Mean {
        result = div(result, lit(count as f64));
    }
    let anchor_ix: Vec<Expr> = if r.keepdims {
        oix.clone()
    } else {
        (0..shape.len())
            .filter(|i| !r.axes.contains(i))
            .map(|i| oix[i].clone())
            .collect()
    };
    let mut row = vec![Stmt::Let {
        name: "acc".into(),
        dtype: d,
        init: lit(init),
    }];
    row.extend(nest(&ils, b));
    row.extend(cx.epilogue(node.outputs[0], anchor_ix, result)?);
    if let Some((v, e)) = ils.last() {
        cx.vectorize(v, *e);
    }
    cx.parallel_if(&loops, shape.iter().product());
    Ok(nest(&loops, row))
}

pub(crate) fn pool(cx: &mut Cx, p: &Pool, node: &Node) -> Result<Vec<Stmt>, String> {
    let xv = node.inputs[0];
    let xs = cx.a.shape(xv).to_vec();
    let out = cx.a.shape(node.outputs[0]).to_vec();
    let d = cx.a.dtype(xv);
    if !d.is_float() {
        return Err(format!("pooling of {d}"));
    }
    let nsp = xs.len() - 2;
    let (oix, loops) = index_vars("o", &out);
    let (wix, wls) = index_vars("w", &p.kernel);
    let mut ix = vec![oix[0].clone(), oix[1].clone()];
    let mut inside: Option<Expr> = None;
    let mut padded: Option<Expr> = None;
    let and = |a: Option<Expr>, b: Expr| {
        Some(match a {
            Some(a) => Expr::bin(BinOp::And, a, b),
            None => b,
        })
    };
    for dd in 0..nsp {
        let pos = Expr::bin(
            BinOp::Sub,
            Expr::plus(
                Expr::times(oix[dd + 2].clone(), Expr::Int(p.strides[dd] as i64)),
                Expr::times(wix[dd].clone(), Expr::Int(p.dilations[dd] as i64)),
            ),
            Expr::Int(p.pads[dd] as i64),
        );
        let h = xs[dd + 2] as i64;
        inside = and(
            inside,
            Expr::bin(
                BinOp::And,
                Expr::bin(BinOp::Ge, pos.clone(), Expr::Int(0)),
                Expr::bin(BinOp::Lt, pos.clone(), Expr::Int(h)),
            ),
        );
        padded = and(
            padded,
            Expr::bin(
                BinOp::Lt,
                pos.clone(),
                Expr::Int(h + p.pads[nsp + dd] as i64),
            ),
        );
        ix.push(clamp(pos, h));
    }
    let inside = inside.unwrap_or(Expr::Lit(DType::Bool, 1.0));
    let padded = padded.unwrap_or(Expr::Lit(DType::Bool, 1.0));
    let x = cx.a.value(xv, &ix)?;
    let mut b = cx.a.take_lets();
    let lit = |v: f64| Expr::lit(d, v);
    let result = match p.kind {
        PoolKind::Max => {
            b.push(Stmt::Set {
                name: "acc".into(),
                value: Expr::bin(
                    BinOp::Max,
                    Expr::local("acc"),
                    Expr::select(inside, x, lit(f64::NEG_INFINITY)),
                ),
            });
            Expr::local("acc")
        }
        PoolKind::Avg => {
            b.push(Stmt::Set {
                name: "acc".into(),
                value: add(
                    Expr::local("acc"),
                    Expr::select(inside.clone(), x, lit(0.0)),
                ),
            });
            let counted = if p.count_include_pad { padded } else { inside };
            b.push(Stmt::Set {
                name: "cnt".into(),
                value: add(Expr::local("cnt"), cast(d, DType::Bool, counted)),
            });
            div(Expr::local("acc"), Expr::local("cnt"))
        }
    };
    let init = if p.kind == PoolKind::Max {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    let mut row = vec![
        Stmt::Let {
            name: "acc".into(),
            dtype: d,
            init: lit(init),
        },
        Stmt::Let {
            name: "cnt".into(),
            dtype: d,
            init: lit(0.0),
        },
    ];
    row.extend(nest(&wls, b));
    row.extend(cx.epilogue(node.outputs[0], oix, result)?);
    cx.parallel_if(
        &loops,
        out.iter().product::<usize>() * p.kernel.iter().product::<usize>(),
    );
    Ok(nest(&loops, row))
}
