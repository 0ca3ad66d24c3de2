//! Key-tiled kernels (fused attention): a collapsed loop nest whose last
//! index (the query) gets one thread each, and whose row body has a loop
//! over keys `j` reading inputs `X[b.., j, ..]` that are the same for every
//! query of a batch point (K and V). Each block takes one batch point and
//! [`QUERIES`] consecutive queries; the key loop runs in tiles of `bk` keys:
//! the block copies the tile of every such input into shared memory
//! (consecutive threads on consecutive elements, then a barrier), every
//! thread runs the loop body for its query over the tile from shared memory
//! (the attention kernel's online softmax stays as the CPU lowering wrote
//! it), and a second barrier guards the tiles' reuse. The key loop runs to
//! the extent of the block's last query (the extent may grow with the
//! query, as in causal attention, but not fall). Threads past the last query compute the last query's row again
//! and store nothing.

use super::matmul::{bin, int};
use kiln_ir::kernel::{BinOp, Buf, BufId, Expr, Kernel, Role, Stmt};
use std::collections::HashMap;

/// Queries (threads) per block, where there are that many.
pub const QUERIES: usize = 64;
/// Shared-memory bytes of one tile of every staged input.
pub const TILE_BYTES: usize = 32 * 1024;
/// Largest staged row per key (elements after the key index).
const MAX_ROW: usize = 256;

/// A window of an input read by key: loads `buf[prefix.., j, base + o..]`
/// with the key at dim `at`, each later dim `d` at a block-uniform `base[d]`
/// plus an offset below `width[d]`, staged as `tile[bk][prod(width)]`.
struct Staged {
    buf: BufId,
    at: usize,
    prefix: Vec<Expr>,
    base: Vec<Expr>,
    width: Vec<usize>,
    tile: BufId,
}

impl Staged {
    fn row(&self) -> usize {
        self.width.iter().product()
    }

    /// Whether `w` is the same window (a load of another width at the same
    /// base gets its own tile).
    fn same(&self, w: &Staged) -> bool {
        self.buf == w.buf
            && self.at == w.at
            && self.prefix == w.prefix
            && self.base == w.base
            && self.width == w.width
    }
}

/// The key-tiled kernel for `k`, whose body below its collapsed loops
/// `dims` is `body`; `None` where it is not of that shape.
pub fn map(k: &Kernel, dims: &[(String, i64)], body: &[Stmt]) -> Option<Kernel> {
    let ((qv, q), batch) = dims.split_last()?;
    let q = usize::try_from(*q).ok()?;
    if q < 32 {
        return None;
    }
    let batch_vars: Vec<&str> = batch.iter().map(|d| d.0.as_str()).collect();
    let (at, j, extent, kbody, mut staged) = body.iter().enumerate().find_map(|(i, s)| {
        let Stmt::For { var, extent, body } = s else {
            return None;
        };
        let st = stageable(k, var, &batch_vars, body)?;
        Some((i, var, extent, body, st))
    })?;
    // The key tiles the block needs are those its last query reaches: the
    // extent must not fall as the query grows.
    let mut uniform = monotone(extent, qv);
    extent.walk(&mut |x| uniform &= !matches!(x, Expr::Local(_) | Expr::Load(..)));
    let keys = staged.iter().map(|s| k.buf(s.buf).shape[s.at]).min()?;
    let per_key: usize = staged
        .iter()
        .map(|s| s.row() * k.buf(s.buf).dtype.size())
        .sum();
    let bk = [64, 32, 16, 8]
        .into_iter()
        .find(|bk| bk * per_key <= TILE_BYTES)?;
    if !uniform || keys < 32 || staged.iter().any(|s| s.row() > MAX_ROW) {
        return None;
    }
    let threads = if q >= QUERIES { QUERIES } else { 32 };
    let tiles_q = q.div_ceil(threads);
    let points: usize = batch.iter().map(|d| d.1.max(0) as usize).product();
    let blocks = points.checked_mul(tiles_q)?;
    if blocks == 0 || blocks >= 1 << 31 {
        return None;
    }

    let mut bufs = k.bufs.clone();
    for s in &mut staged {
        let b = k.buf(s.buf);
        s.tile = BufId(bufs.len() as u32);
        let mut name = format!("{}_tile", b.name);
        let mut n = 1;
        while bufs.iter().any(|x| x.name == name) {
            n += 1;
            name = format!("{}_tile{n}", b.name);
        }
        bufs.push(Buf {
            name,
            dtype: b.dtype,
            shape: vec![bk, s.row()],
            role: Role::Shared,
        });
    }

    // The block's batch point (innermost fastest) and query tile.
    let block = Expr::var("blockIdx.x");
    let (point, qtile) = if tiles_q > 1 {
        (
            bin(BinOp::Div, block.clone(), int(tiles_q)),
            bin(BinOp::Rem, block, int(tiles_q)),
        )
    } else {
        (block, int(0))
    };
    let mut vars: HashMap<String, Expr> = super::unflatten(batch, &point).into_iter().collect();
    let first = Expr::times(qtile, int(threads));
    let query = Expr::plus(first.clone(), Expr::var("threadIdx.x"));
    let last = bin(BinOp::Min, Expr::plus(first, int(threads - 1)), int(q - 1));
    vars.insert(qv.clone(), bin(BinOp::Min, query.clone(), int(q - 1)));
    let bind = |e: &Expr, vars: &HashMap<String, Expr>| {
        e.rewrite(&|x| match x {
            Expr::Var(v) => vars.get(v).cloned(),
            _ => None,
        })
    };
    let guard = (tiles_q * threads != q).then(|| bin(BinOp::Lt, query, int(q)));
    let row = |s: &Stmt| guard_stores(&s.map_exprs(&|e| bind(e, &vars)), k, &guard);

    // Key tiles: every one the block's last query reaches.
    let mut at_last = vars.clone();
    at_last.insert(qv.clone(), last);
    let reach = bind(extent, &at_last);
    let tiles = bin(BinOp::Div, Expr::plus(reach, int(bk - 1)), int(bk));
    let (jt, jj) = (format!("{j}_tile"), format!("{j}_in"));
    let key0 = Expr::times(Expr::var(&jt), int(bk));
    let mut tile_body = Vec::new();
    for (n, s) in staged.iter().enumerate() {
        tile_body.push(stage(
            k,
            s,
            bk,
            threads,
            &key0,
            &format!("{j}_stage{n}"),
            &vars,
        ));
    }
    tile_body.push(Stmt::Barrier);
    let mut in_tile = vars.clone();
    in_tile.insert(j.clone(), Expr::plus(key0.clone(), Expr::var(&jj)));
    let keys_of = Keys {
        k,
        j,
        batch: &batch_vars,
        inner: body_extents(kbody),
    };
    let from_tile = |e: &Expr| bind(&keys_of.tiled(e, &staged, &jj), &in_tile);
    tile_body.push(Stmt::For {
        var: jj.clone(),
        extent: int(bk),
        body: vec![Stmt::If {
            cond: bin(
                BinOp::Lt,
                Expr::plus(key0, Expr::var(&jj)),
                bind(extent, &vars),
            ),
            body: kbody
                .iter()
                .map(|s| guard_stores(&s.map_exprs(&from_tile), k, &guard))
                .collect(),
        }],
    });
    tile_body.push(Stmt::Barrier);

    let mut out: Vec<Stmt> = body[..at].iter().map(row).collect();
    out.push(Stmt::For {
        var: jt,
        extent: tiles,
        body: tile_body,
    });
    out.extend(body[at + 1..].iter().map(row));
    Some(super::launched(
        k,
        bufs,
        out,
        [blocks, 1, 1],
        [threads, 1, 1],
    ))
}

/// The windows of inputs that loop `j` of `body` reads the same way for
/// every query: each load of such an input has `j` at one dim and nowhere
/// else, only batch variables before it, and after it indices that split
/// into a block-uniform base and an inner loop variable (or span the dim).
/// `None` when there is none.
fn stageable(k: &Kernel, j: &str, batch: &[&str], body: &[Stmt]) -> Option<Vec<Staged>> {
    let mut loads: Vec<(BufId, Vec<Expr>)> = Vec::new();
    Stmt::each_expr(body, &mut |e| {
        e.walk(&mut |x| {
            if let Expr::Load(b, ix) = x {
                loads.push((*b, ix.clone()));
            }
        })
    });
    let inner = body_extents(body);
    let mut out: Vec<Staged> = Vec::new();
    for (b, ix) in &loads {
        if k.buf(*b).role != Role::In {
            continue;
        }
        if let Some((w, _)) = window(k, *b, ix, j, batch, &inner) {
            if w.row() > 0 && !out.iter().any(|s| s.same(&w)) {
                out.push(w);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The constant extents of the loops in `body`, by variable.
fn body_extents(body: &[Stmt]) -> HashMap<String, usize> {
    fn walk(body: &[Stmt], out: &mut HashMap<String, usize>) {
        for s in body {
            match s {
                Stmt::For { var, extent, body } => {
                    if let Expr::Int(n) = extent {
                        out.insert(var.clone(), (*n).max(0) as usize);
                    }
                    walk(body, out);
                }
                Stmt::If { body, .. } => walk(body, out),
                _ => {}
            }
        }
    }
    let mut out = HashMap::new();
    walk(body, &mut out);
    out
}

/// The window load `buf[ix]` reads with key `j`, and its offsets in the
/// window per dim after the key; `None` where the load is not of that form.
fn window(
    k: &Kernel,
    buf: BufId,
    ix: &[Expr],
    j: &str,
    batch: &[&str],
    inner: &HashMap<String, usize>,
) -> Option<(Staged, Vec<Expr>)> {
    let block_uniform = |e: &Expr| {
        let mut ok = true;
        e.walk(&mut |x| match x {
            Expr::Var(v) => ok &= batch.contains(&v.as_str()),
            Expr::Local(_) | Expr::Load(..) => ok = false,
            _ => {}
        });
        ok
    };
    let at = ix
        .iter()
        .position(|e| matches!(e, Expr::Var(v) if v == j))?;
    if !ix[..at].iter().all(block_uniform) || ix[at + 1..].iter().any(|e| e.uses_var(j)) {
        return None;
    }
    let shape = &k.buf(buf).shape;
    let (mut base, mut width, mut offs) = (Vec::new(), Vec::new(), Vec::new());
    for (e, &dim) in ix[at + 1..].iter().zip(&shape[at + 1..]) {
        let mut terms = Vec::new();
        addends(e, &mut terms);
        let (uni, rest): (Vec<&Expr>, Vec<&Expr>) =
            terms.into_iter().partition(|t| block_uniform(t));
        let b = uni.into_iter().cloned().fold(Expr::Int(0), Expr::plus);
        match rest.as_slice() {
            [] => {
                base.push(b);
                width.push(1);
                offs.push(Expr::Int(0));
            }
            [Expr::Var(v)] if inner.contains_key(v) => {
                base.push(b);
                width.push(inner[v].min(dim));
                offs.push(Expr::var(v));
            }
            _ => {
                base.push(Expr::Int(0));
                width.push(dim);
                offs.push(e.clone());
            }
        }
    }
    let w = Staged {
        buf,
        at,
        prefix: ix[..at].to_vec(),
        base,
        width,
        tile: BufId(0),
    };
    Some((w, offs))
}

/// The terms of a sum.
fn addends<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::Bin(BinOp::Add, a, b) => {
            addends(a, out);
            addends(b, out);
        }
        _ => out.push(e),
    }
}

/// Whether `e` never decreases as loop variable `v` grows.
fn monotone(e: &Expr, v: &str) -> bool {
    match e {
        _ if !e.uses_var(v) => true,
        Expr::Var(_) => true,
        Expr::Bin(BinOp::Add | BinOp::Min | BinOp::Max, a, b) => monotone(a, v) && monotone(b, v),
        Expr::Bin(BinOp::Sub, a, b) => monotone(a, v) && !b.uses_var(v),
        Expr::Bin(BinOp::Mul, a, b) => match (&**a, &**b) {
            (Expr::Int(c), x) | (x, Expr::Int(c)) => *c >= 0 && monotone(x, v),
            _ => false,
        },
        Expr::Bin(BinOp::Div, a, b) => matches!(**b, Expr::Int(c) if c > 0) && monotone(a, v),
        _ => false,
    }
}

/// The copy of tile `key0..key0 + bk` of a staged window into its shared
/// tile: element `e` of the tile by thread `e % threads`.
fn stage(
    k: &Kernel,
    s: &Staged,
    bk: usize,
    threads: usize,
    key0: &Expr,
    var: &str,
    vars: &HashMap<String, Expr>,
) -> Stmt {
    let bind = |p: &Expr| {
        p.rewrite(&|x| match x {
            Expr::Var(v) => vars.get(v).cloned(),
            _ => None,
        })
    };
    let row = s.row();
    let total = bk * row;
    let e = Expr::plus(
        Expr::times(Expr::var(var), int(threads)),
        Expr::var("threadIdx.x"),
    );
    let (r, c) = if row > 1 {
        (
            bin(BinOp::Div, e.clone(), int(row)),
            bin(BinOp::Rem, e.clone(), int(row)),
        )
    } else {
        (e.clone(), int(0))
    };
    let key = Expr::plus(key0.clone(), r.clone());
    let mut index: Vec<Expr> = s.prefix.iter().map(bind).collect();
    index.push(key.clone());
    let mut below = row;
    for (b, &w) in s.base.iter().zip(&s.width) {
        below /= w;
        let mut x = c.clone();
        if below > 1 {
            x = bin(BinOp::Div, x, int(below));
        }
        if w > 1 && below * w < row {
            x = bin(BinOp::Rem, x, int(w));
        }
        index.push(Expr::plus(bind(b), if w == 1 { int(0) } else { x }));
    }
    let mut cond = bin(BinOp::Lt, key, int(k.buf(s.buf).shape[s.at]));
    if !total.is_multiple_of(threads) {
        cond = bin(BinOp::And, bin(BinOp::Lt, e, int(total)), cond);
    }
    Stmt::For {
        var: var.to_string(),
        extent: int(total.div_ceil(threads)),
        body: vec![Stmt::If {
            cond,
            body: vec![Stmt::Store {
                buf: s.tile,
                index: vec![r, c],
                value: Expr::load(s.buf, index),
            }],
        }],
    }
}

/// Where loop `j` reads: the kernel, the batch variables, the extents of
/// the loops inside it.
struct Keys<'a> {
    k: &'a Kernel,
    j: &'a str,
    batch: &'a [&'a str],
    inner: HashMap<String, usize>,
}

impl Keys<'_> {
    /// `e` with loads of staged windows read from their tiles at key `jj`.
    fn tiled(&self, e: &Expr, staged: &[Staged], jj: &str) -> Expr {
        e.rewrite(&|x| {
            let Expr::Load(b, ix) = x else {
                return None;
            };
            let (w, offs) = window(self.k, *b, ix, self.j, self.batch, &self.inner)?;
            let s = staged.iter().find(|s| s.same(&w))?;
            let mut flat = int(0);
            for (o, w) in offs.iter().zip(&s.width) {
                flat = Expr::plus(Expr::times(flat, int(*w)), self.tiled(o, staged, jj));
            }
            Some(Expr::load(s.tile, vec![Expr::var(jj), flat]))
        })
    }
}

/// `s` with each store to a graph buffer under `guard` (when given).
fn guard_stores(s: &Stmt, k: &Kernel, guard: &Option<Expr>) -> Stmt {
    let Some(g) = guard else {
        return s.clone();
    };
    let block = |b: &[Stmt]| b.iter().map(|s| guard_stores(s, k, guard)).collect();
    match s {
        Stmt::Store { buf, .. } if k.buf(*buf).role != Role::Scratch => Stmt::If {
            cond: g.clone(),
            body: vec![s.clone()],
        },
        Stmt::For { var, extent, body } => Stmt::For {
            var: var.clone(),
            extent: extent.clone(),
            body: block(body),
        },
        Stmt::If { cond, body } => Stmt::If {
            cond: cond.clone(),
            body: block(body),
        },
        _ => s.clone(),
    }
}
