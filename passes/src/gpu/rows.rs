//! Row kernels (norms, softmax, row reductions) with one block per row: the
//! collapsed outer loops index the rows (`blockIdx.x`), and the row's inner
//! loops are spread over the block's threads, strided so consecutive threads
//! read consecutive elements. A loop of sums (`$s = $s + e`, or max/min)
//! gives each thread a partial from the identity; 32-bit partials combine
//! within each warp by butterfly shuffles, then across the block's warps
//! through one shared slot per warp (one barrier); other dtypes combine by
//! a tree in shared memory (a barrier per step). The total is folded into
//! the sum once;
//! a loop of stores writes its elements strided; the row's scalar lets run
//! in every thread (they see the same sums), and its scalar stores in
//! thread 0.

use kiln_ir::kernel::{BinOp, Buf, BufId, Expr, Kernel, Role, Stmt};
use kiln_ir::DType;
use std::collections::HashMap;

/// How a row's statement runs.
enum Part<'a> {
    /// A per-row scalar statement (every thread).
    Scalar(&'a Stmt),
    /// A per-row store (thread 0).
    Store(&'a Stmt),
    /// `for var in 0..n` of sums: `(local, op, term)`.
    Sums(&'a str, i64, Vec<(&'a str, BinOp, &'a Expr)>),
    /// `for var in 0..n` of stores (and lets).
    Each(&'a str, i64, &'a [Stmt]),
}

/// The loop's sums, when every statement is `$s = $s op e` with `op` add,
/// max or min, `e` not reading any of the loop's sums.
fn sums(body: &[Stmt]) -> Option<Vec<(&str, BinOp, &Expr)>> {
    let mut out = Vec::new();
    for s in body {
        let Stmt::Set { name, value } = s else {
            return None;
        };
        let Expr::Bin(op @ (BinOp::Add | BinOp::Max | BinOp::Min), a, e) = value else {
            return None;
        };
        if !matches!(&**a, Expr::Local(l) if l == name) {
            return None;
        }
        out.push((name.as_str(), *op, &**e));
    }
    let names: Vec<&str> = out.iter().map(|s| s.0).collect();
    let reads = out
        .iter()
        .any(|(_, _, e)| names.iter().any(|n| e.uses_local(n)));
    (!reads).then_some(out)
}

fn plan(body: &[Stmt]) -> Option<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    for s in body {
        parts.push(match s {
            Stmt::Let { .. } | Stmt::Set { .. } => Part::Scalar(s),
            Stmt::Store { .. } => Part::Store(s),
            Stmt::For {
                var,
                extent: Expr::Int(n),
                body,
            } => match sums(body) {
                Some(v) => Part::Sums(var, *n, v),
                None if body
                    .iter()
                    .all(|s| matches!(s, Stmt::Store { .. } | Stmt::Let { .. })) =>
                {
                    Part::Each(var, *n, body)
                }
                None => return None,
            },
            _ => return None,
        });
    }
    Some(parts)
}

fn identity(op: BinOp, d: DType) -> Expr {
    Expr::lit(
        d,
        match op {
            BinOp::Max => f64::NEG_INFINITY,
            BinOp::Min => f64::INFINITY,
            _ => 0.0,
        },
    )
}

/// The row kernel for `k`, whose body after its collapsed outer loops
/// (`rows` rows, each loop variable's value in `at`) is `body`; `None` when
/// the body is not of that shape or its inner loops are too short to share.
pub fn map(
    k: &Kernel,
    rows: usize,
    at: &dyn Fn(Expr) -> Vec<(String, Expr)>,
    body: &[Stmt],
) -> Option<Kernel> {
    let parts = plan(body)?;
    let longest = parts
        .iter()
        .map(|p| match p {
            Part::Sums(_, n, _) | Part::Each(_, n, _) => *n,
            _ => 0,
        })
        .max()?;
    if longest < 32 || rows == 0 || rows >= 1 << 31 {
        return None;
    }
    let threads = (longest as usize).next_power_of_two().clamp(32, 256);
    let t = Expr::var("threadIdx.x");
    let row_vars = at(Expr::var("blockIdx.x"));
    let sub = |e: &Expr| {
        e.rewrite(&|x| match x {
            Expr::Var(v) => row_vars
                .iter()
                .find(|(n, _)| n == v)
                .map(|(_, e)| e.clone()),
            _ => None,
        })
    };
    let mut bufs = k.bufs.clone();
    let mut dtypes: HashMap<&str, DType> = HashMap::new();
    let mut red: HashMap<DType, BufId> = HashMap::new();
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        match p {
            Part::Scalar(s) => {
                if let Stmt::Let { name, dtype, .. } = s {
                    dtypes.insert(name, *dtype);
                }
                out.push(s.map_exprs(&sub));
            }
            Part::Store(s) => out.push(Stmt::If {
                cond: Expr::bin(BinOp::Eq, t.clone(), Expr::Int(0)),
                body: vec![s.map_exprs(&sub)],
            }),
            Part::Each(var, n, stmts) => {
                out.push(strided(var, *n, threads, i, stmts, &sub));
            }
            Part::Sums(var, n, list) => {
                let mut terms = Vec::new();
                for (s, op, e) in list {
                    let d = *dtypes.get(s)?;
                    let part = format!("{s}_part{i}");
                    out.push(Stmt::Let {
                        name: part.clone(),
                        dtype: d,
                        init: identity(*op, d),
                    });
                    terms.push(Stmt::Set {
                        name: part,
                        value: Expr::bin(*op, Expr::local(&format!("{s}_part{i}")), (*e).clone()),
                    });
                }
                out.push(strided(var, *n, threads, i, &terms, &sub));
                for (s, op, _) in list {
                    let d = dtypes[s];
                    let part = format!("{s}_part{i}");
                    let warp = matches!(d, DType::F32 | DType::I32);
                    if warp {
                        butterfly(&part, *op, d, &mut out);
                    }
                    if warp && threads == 32 {
                        // One warp: every lane holds the total already.
                        out.push(Stmt::Set {
                            name: s.to_string(),
                            value: Expr::bin(*op, Expr::local(s), Expr::local(&part)),
                        });
                        continue;
                    }
                    let slots = if warp { threads / 32 } else { threads };
                    let buf = *red.entry(d).or_insert_with(|| {
                        let id = BufId(bufs.len() as u32);
                        bufs.push(Buf {
                            name: format!("row_reduce_{d}"),
                            dtype: d,
                            shape: vec![slots],
                            role: Role::Shared,
                        });
                        id
                    });
                    let total = if warp {
                        across_warps(buf, &part, *op, slots, &mut out)
                    } else {
                        tree(buf, &part, *op, threads, &mut out)
                    };
                    out.push(Stmt::Set {
                        name: s.to_string(),
                        value: Expr::bin(*op, Expr::local(s), total),
                    });
                    // Every thread has read the total before the buffer is reused.
                    out.push(Stmt::Barrier);
                }
            }
        }
    }
    Some(super::launched(k, bufs, out, [rows, 1, 1], [threads, 1, 1]))
}

/// `for var in 0..n { stmts }` with element `j` in thread `j % threads`:
/// chunks of `threads` consecutive elements, one per thread.
fn strided(
    var: &str,
    n: i64,
    threads: usize,
    part: usize,
    stmts: &[Stmt],
    sub: &dyn Fn(&Expr) -> Expr,
) -> Stmt {
    let chunk = format!("{var}_chunk{part}");
    let j = Expr::plus(
        Expr::times(Expr::var(&chunk), Expr::Int(threads as i64)),
        Expr::var("threadIdx.x"),
    );
    let at =
        |e: &Expr| sub(e).rewrite(&|x| matches!(x, Expr::Var(v) if v == var).then(|| j.clone()));
    Stmt::For {
        var: chunk.clone(),
        extent: Expr::Int((n.max(0) as usize).div_ceil(threads) as i64),
        body: vec![Stmt::If {
            cond: Expr::bin(BinOp::Lt, j.clone(), Expr::Int(n)),
            body: stmts.iter().map(|s| s.map_exprs(&at)).collect(),
        }],
    }
}

/// Combines the 32 lanes of each warp into every lane's `local` by
/// butterfly shuffles (no shared memory, no barrier).
fn butterfly(local: &str, op: BinOp, d: DType, out: &mut Vec<Stmt>) {
    let other = format!("{local}_lane");
    out.push(Stmt::Let {
        name: other.clone(),
        dtype: d,
        init: identity(op, d),
    });
    for xor in [16, 8, 4, 2, 1] {
        out.push(Stmt::Shuffle {
            name: other.clone(),
            value: Expr::local(local),
            xor,
        });
        out.push(Stmt::Set {
            name: local.to_string(),
            value: Expr::bin(op, Expr::local(local), Expr::local(&other)),
        });
    }
}

/// After [`butterfly`]: lane 0 of each warp writes its warp's total to
/// `buf[warp]`, and every thread folds the `warps` totals (in order, so
/// all threads agree to the bit). Returns the expression of the total.
fn across_warps(buf: BufId, local: &str, op: BinOp, warps: usize, out: &mut Vec<Stmt>) -> Expr {
    let t = Expr::var("threadIdx.x");
    out.push(Stmt::If {
        cond: Expr::bin(
            BinOp::Eq,
            Expr::bin(BinOp::Rem, t.clone(), Expr::Int(32)),
            Expr::Int(0),
        ),
        body: vec![Stmt::Store {
            buf,
            index: vec![Expr::bin(BinOp::Div, t, Expr::Int(32))],
            value: Expr::local(local),
        }],
    });
    out.push(Stmt::Barrier);
    (1..warps).fold(Expr::load(buf, vec![Expr::Int(0)]), |acc, w| {
        Expr::bin(op, acc, Expr::load(buf, vec![Expr::Int(w as i64)]))
    })
}

/// Combines every thread's `local` into `buf[0]` by halving steps in
/// shared memory (dtypes a shuffle does not carry). Returns `buf[0]`.
fn tree(buf: BufId, local: &str, op: BinOp, threads: usize, out: &mut Vec<Stmt>) -> Expr {
    let t = Expr::var("threadIdx.x");
    out.push(Stmt::Store {
        buf,
        index: vec![t.clone()],
        value: Expr::local(local),
    });
    out.push(Stmt::Barrier);
    let mut half = threads / 2;
    while half >= 1 {
        let other = Expr::load(buf, vec![Expr::plus(t.clone(), Expr::Int(half as i64))]);
        out.push(Stmt::If {
            cond: Expr::bin(BinOp::Lt, t.clone(), Expr::Int(half as i64)),
            body: vec![Stmt::Store {
                buf,
                index: vec![t.clone()],
                value: Expr::bin(op, Expr::load(buf, vec![t.clone()]), other),
            }],
        });
        out.push(Stmt::Barrier);
        half /= 2;
    }
    Expr::load(buf, vec![Expr::Int(0)])
}
