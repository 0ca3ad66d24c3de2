//! Matrix products: `matmul` and `conv` (as an implicit GEMM: the image patch
//! matrix is never built, the B packing reads the image through the im2col
//! index). Constant operands are packed once, here, into the micro-kernel's
//! panel layout; the epilogue chain is applied at the store.

use super::access::{broadcast_ix, reshape_ix};
use super::body::{index_vars, Cx};
use kiln_ir::kernel::{BinOp, BufId, Expr, Gemm, GemmSchedule, Operand, Role, Stmt};
use kiln_ir::op::{Conv, MatMul};
use kiln_ir::{DType, Node, Tensor};

/// Binds `lets` (in order) into `e` by substitution: a matrix product's
/// epilogue is one expression.
fn inline_lets(lets: Vec<Stmt>, e: Expr) -> Result<Expr, String> {
    let mut e = e;
    for s in lets.into_iter().rev() {
        match s {
            Stmt::Let { name, init, .. } => e = e.subst_local(&name, &init),
            _ => return Err("unexpected statement in an operand".into()),
        }
    }
    Ok(e)
}

pub(crate) fn matmul(cx: &mut Cx, mm: &MatMul, node: &Node) -> Result<Vec<Stmt>, String> {
    let (av, bv) = (node.inputs[0], node.inputs[1]);
    let (ash, bsh) = (cx.a.shape(av).to_vec(), cx.a.shape(bv).to_vec());
    let out = cx.a.shape(node.outputs[0]).to_vec();
    if ash.len() < 2 || bsh.len() < 2 {
        return Err("matmul of a vector".into());
    }
    let dt = cx.a.dtype(node.outputs[0]);
    let half = matches!(dt, DType::BF16 | DType::F16) && cx.opts.half_matmul;
    if dt != DType::F32 && !half {
        return Err("matmul is compiled for f32 only".into());
    }
    let r = out.len();
    let (m, n) = (out[r - 2], out[r - 1]);
    let k = if mm.trans_a {
        ash[ash.len() - 2]
    } else {
        ash[ash.len() - 1]
    };
    let out_batch = out[..r - 2].to_vec();
    let a_batch = ash[..ash.len() - 2].to_vec();
    let b_batch = bsh[..bsh.len() - 2].to_vec();
    let fold = b_batch.iter().all(|&d| d == 1);
    let (mvar, nvar, kvar) = (Expr::var("m"), Expr::var("n"), Expr::var("k"));
    let (batch, bix, mix, mext) = if fold {
        let mtot = out_batch.iter().product::<usize>() * m;
        let mut full = out_batch.clone();
        full.push(m);
        let mut ix = reshape_ix(&[mtot], &full, std::slice::from_ref(&mvar));
        let mi = ix.pop().expect("m index");
        (Vec::new(), ix, mi, mtot)
    } else {
        let (ix, loops) = index_vars("b", &out_batch);
        (loops, ix, mvar.clone(), m)
    };
    let mut aix = broadcast_ix(&a_batch, &out_batch, &bix);
    if mm.trans_a {
        aix.extend([kvar.clone(), mix.clone()]);
    } else {
        aix.extend([mix.clone(), kvar.clone()]);
    }
    let mut bixs = broadcast_ix(&b_batch, &out_batch, &bix);
    if mm.trans_b {
        bixs.extend([nvar.clone(), kvar.clone()]);
    } else {
        bixs.extend([kvar.clone(), nvar.clone()]);
    }
    let ae = cx.a.value(av, &aix)?;
    let ae = Expr::cast(DType::F32, dt, inline_lets(cx.a.take_lets(), ae)?);
    let be = cx.a.value(bv, &bixs)?;
    let be = Expr::cast(DType::F32, dt, inline_lets(cx.a.take_lets(), be)?);
    let mut anchor_ix = bix;
    anchor_ix.extend([mix, nvar]);
    let acc = Expr::cast(dt, DType::F32, Expr::local("acc"));
    let (outb, index, value) = cx.chain(node.outputs[0], anchor_ix, acc)?;
    let value = inline_lets(cx.a.take_lets(), value)?;
    finish(
        cx,
        batch,
        (mext, n, k),
        (ae, be),
        (outb, index, value, None),
    )
}

pub(crate) fn conv(cx: &mut Cx, c: &Conv, node: &Node) -> Result<Vec<Stmt>, String> {
    let (xv, wv) = (node.inputs[0], node.inputs[1]);
    let (xs, ws) = (cx.a.shape(xv).to_vec(), cx.a.shape(wv).to_vec());
    let out = cx.a.shape(node.outputs[0]).to_vec();
    if cx.a.dtype(node.outputs[0]) != DType::F32 {
        return Err("conv is compiled for f32 only".into());
    }
    let sp = xs.len() - 2;
    let g = c.group.max(1);
    let (cout, cg) = (ws[0], ws[1]);
    let mg = cout / g;
    let ksp = ws[2..].to_vec();
    let kg = cg * ksp.iter().product::<usize>();
    let osp = out[2..].to_vec();
    let np: usize = osp.iter().product();
    let (mvar, nvar, kvar) = (Expr::var("m"), Expr::var("n"), Expr::var("k"));
    let (bix, batch) = index_vars("b", &[xs[0], g]);
    let (nb, gi) = (bix[0].clone(), bix[1].clone());
    let co = Expr::plus(Expr::times(gi.clone(), Expr::Int(mg as i64)), mvar.clone());
    let mut kfull = vec![cg];
    kfull.extend(&ksp);
    let kix = reshape_ix(&[kg], &kfull, &[kvar]);
    let oix = reshape_ix(&[np], &osp, &[nvar]);
    let mut wix = vec![co.clone()];
    wix.extend(kix.iter().cloned());
    let ae = cx.a.value(wv, &wix)?;
    let ae = inline_lets(cx.a.take_lets(), ae)?;
    let mut xix = vec![
        nb.clone(),
        Expr::plus(Expr::times(gi, Expr::Int(cg as i64)), kix[0].clone()),
    ];
    let mut inside: Option<Expr> = None;
    for d in 0..sp {
        let (s, dl, p) = (c.strides[d] as i64, c.dilations[d] as i64, c.pads[d] as i64);
        let i = Expr::bin(
            BinOp::Sub,
            Expr::plus(
                Expr::times(oix[d].clone(), Expr::Int(s)),
                Expr::times(kix[d + 1].clone(), Expr::Int(dl)),
            ),
            Expr::Int(p),
        );
        let h = xs[d + 2] as i64;
        let max = (osp[d] as i64 - 1) * s + (ksp[d] as i64 - 1) * dl - p;
        if p == 0 && max < h {
            xix.push(i);
            continue;
        }
        let ok = Expr::bin(
            BinOp::And,
            Expr::bin(BinOp::Ge, i.clone(), Expr::Int(0)),
            Expr::bin(BinOp::Lt, i.clone(), Expr::Int(h)),
        );
        inside = Some(match inside {
            Some(a) => Expr::bin(BinOp::And, a, ok),
            None => ok,
        });
        xix.push(super::access::clamp(i, h));
    }
    let be = cx.a.value(xv, &xix)?;
    let be = inline_lets(cx.a.take_lets(), be)?;
    let be = match inside {
        Some(ok) => Expr::select(ok, be, Expr::lit(DType::F32, 0.0)),
        None => be,
    };
    let mut anchor = Expr::local("acc");
    if let Some(&bias) = node.inputs.get(2) {
        let b = cx.a.value(bias, std::slice::from_ref(&co))?;
        anchor = Expr::plus(anchor, b);
    }
    let mut anchor_ix = vec![nb, co];
    anchor_ix.extend(oix);
    let (outb, index, value) = cx.chain(node.outputs[0], anchor_ix, anchor)?;
    let value = inline_lets(cx.a.take_lets(), value)?;
    finish(
        cx,
        batch,
        (mg, np, kg),
        (ae, be),
        (outb, index, value, None),
    )
}

/// A stride-1 2-D convolution that reads its input already padded, with one
/// extra zero row (`[N, C, Hp + 1, Wp]` made by a step before, read here as
/// `[N, C, (Hp + 1) * Wp]`): over
/// the "virtual" output grid of `OH x Wp` positions, element `(k, q)` of B is
/// `flat[b, c, q + kh * Wp + kw]`, linear in `q` with no bounds checks, so
/// packing it is a copy. The `Wp - OW` extra columns per row are computed and
/// masked off at the store.
pub(crate) fn conv_flat(
    cx: &mut Cx,
    c: &Conv,
    node: &Node,
    wp: usize,
) -> Result<Vec<Stmt>, String> {
    let (xv, wv) = (node.inputs[0], node.inputs[1]);
    let (xs, ws) = (cx.a.shape(xv).to_vec(), cx.a.shape(wv).to_vec());
    let out = cx.a.shape(node.outputs[0]).to_vec();
    let (cin, cout, kh, kw) = (ws[1], ws[0], ws[2], ws[3]);
    let (oh, ow) = (out[2], out[3]);
    let hp = xs[2] + c.pads[0] + c.pads[2];
    let len = (hp + 1) * wp;
    let flat =
        cx.a.add_buf("flat", DType::F32, vec![xs[0], cin, len], Role::In);
    cx.flat = Some(flat);
    let (mvar, nvar, kvar) = (Expr::var("m"), Expr::var("n"), Expr::var("k"));
    let (bix, batch) = index_vars("b", &[xs[0]]);
    let kix = reshape_ix(&[cin * kh * kw], &[cin, kh, kw], &[kvar]);
    let mut wix = vec![mvar.clone()];
    wix.extend(kix.iter().cloned());
    let ae = cx.a.value(wv, &wix)?;
    let ae = inline_lets(cx.a.take_lets(), ae)?;
    let shift = Expr::plus(
        Expr::times(kix[1].clone(), Expr::Int(wp as i64)),
        kix[2].clone(),
    );
    let be = Expr::load(
        flat,
        vec![
            bix[0].clone(),
            kix[0].clone(),
            Expr::plus(nvar.clone(), shift),
        ],
    );
    let mut anchor = Expr::local("acc");
    if let Some(&bias) = node.inputs.get(2) {
        let b = cx.a.value(bias, std::slice::from_ref(&mvar))?;
        anchor = Expr::plus(anchor, b);
    }
    let col = Expr::bin(BinOp::Rem, nvar.clone(), Expr::Int(wp as i64));
    let mask = Expr::bin(BinOp::Lt, col.clone(), Expr::Int(ow as i64));
    let row = Expr::bin(BinOp::Div, nvar, Expr::Int(wp as i64));
    let anchor_ix = vec![
        bix[0].clone(),
        mvar,
        row,
        Expr::bin(BinOp::Min, col, Expr::Int(ow as i64 - 1)),
    ];
    let (outb, index, value) = cx.chain(node.outputs[0], anchor_ix, anchor)?;
    let value = inline_lets(cx.a.take_lets(), value)?;
    finish(
        cx,
        batch,
        (cout, oh * wp, cin * kh * kw),
        (ae, be),
        (outb, index, value, Some(mask)),
    )
}

/// Chooses the blocking, packs constant operands, and builds the statement.
fn finish(
    cx: &mut Cx,
    batch: Vec<(String, usize)>,
    (m, n, k): (usize, usize, usize),
    (ae, be): (Expr, Expr),
    (out, index, value, mask): (BufId, Vec<Expr>, Expr, Option<Expr>),
) -> Result<Vec<Stmt>, String> {
    let o = cx.opts;
    let (mr, nr) = (o.mr, o.nr);
    let kc = o.kc.min(k.max(1));
    let mc = (o.mc.min(m.div_ceil(mr) * mr)).max(mr);
    // Enough N blocks for every thread (four tasks each where the product is
    // large), never narrower than four micro-panels.
    let tasks_m: usize = batch.iter().map(|b| b.1).product::<usize>() * m.div_ceil(mc);
    let want = (4 * o.threads).div_ceil(tasks_m).max(1);
    let mut nc = n.div_ceil(want).div_ceil(nr) * nr;
    nc = nc.clamp(4 * nr, o.nc).min(n.div_ceil(nr) * nr);
    let s = GemmSchedule {
        mr,
        nr,
        mc,
        kc,
        nc,
        a_lanes: o.a_lanes,
    };
    let batch_vars: Vec<&str> = batch.iter().map(|b| b.0.as_str()).collect();
    let a = pack(
        cx,
        ae,
        ("m", m, k),
        (mr, o.a_lanes),
        &batch_vars,
        "packed_a",
    );
    let b = pack(cx, be, ("n", n, k), (nr, 1), &batch_vars, "packed_b");
    cx.schedule.gemm = Some(s);
    cx.schedule.parallel = true;
    Ok(vec![Stmt::Gemm(Box::new(Gemm {
        batch,
        m: ("m".into(), m),
        n: ("n".into(), n),
        k: ("k".into(), k),
        a,
        b,
        acc: "acc".into(),
        out,
        index,
        value,
        mask,
    }))])
}

/// Packs an operand at compile time when it reads only constants and not the
/// batch: panels of `r` rows (`[ceil(x/r), K, r]`, zero-padded; with a last
/// dim of `lanes` copies of each element when `lanes` is more than 1).
fn pack(
    cx: &mut Cx,
    e: Expr,
    (xvar, x, k): (&str, usize, usize),
    (r, lanes): (usize, usize),
    batch: &[&str],
    name: &str,
) -> Operand {
    if !cx.opts.pack_constants || batch.iter().any(|b| e.uses_var(b)) {
        return Operand::Expr(e);
    }
    let mut data: Vec<Option<Vec<f32>>> = Vec::new();
    let mut ok = true;
    e.walk(&mut |s| {
        if let Expr::Load(b, _) = s {
            let i = b.0 as usize;
            match cx.consts.get(i).copied().flatten() {
                Some(t) if t.dtype() == DType::F32 && i < cx.a.g.inputs.len() => {
                    if data.len() <= i {
                        data.resize(i + 1, None);
                    }
                    if data[i].is_none() {
                        data[i] = Some(t.to_f64_vec().into_iter().map(|v| v as f32).collect());
                    }
                }
                _ => ok = false,
            }
        }
        if matches!(s, Expr::Local(_)) {
            ok = false;
        }
    });
    if !ok || x * k * lanes > (1 << 28) {
        return Operand::Expr(e);
    }
    let shapes: Vec<Vec<usize>> = cx.a.bufs.iter().map(|b| b.shape.clone()).collect();
    let panels = x.div_ceil(r);
    let mut out = vec![0f32; panels * k * r * lanes];
    for xi in 0..x {
        for ki in 0..k {
            match ceval(&e, (xvar, xi as i64), ki as i64, &data, &shapes) {
                Some(v) => {
                    let at = (((xi / r) * k + ki) * r + xi % r) * lanes;
                    out[at..at + lanes].fill(v as f32);
                }
                None => return Operand::Expr(e),
            }
        }
    }
    let mut shape = vec![panels, k, r];
    if lanes > 1 {
        shape.push(lanes);
    }
    let t = Tensor::from_f64(
        DType::F32,
        shape.clone(),
        &out.iter().map(|v| *v as f64).collect::<Vec<_>>(),
    );
    let id = cx.a.add_buf(name, DType::F32, shape, Role::In);
    cx.extra.push(t);
    Operand::Packed(id)
}

/// Evaluates an operand expression on constants at `(x, k)`; `None` where the
/// expression needs more than integer index arithmetic and constant loads.
fn ceval(
    e: &Expr,
    x: (&str, i64),
    k: i64,
    data: &[Option<Vec<f32>>],
    shapes: &[Vec<usize>],
) -> Option<f64> {
    Some(match e {
        Expr::Var(v) if v == x.0 => x.1 as f64,
        Expr::Var(v) if v == "k" => k as f64,
        Expr::Int(i) => *i as f64,
        Expr::Lit(_, v) => *v,
        Expr::Load(b, ix) => {
            let d = data.get(b.0 as usize)?.as_ref()?;
            let shape = &shapes[b.0 as usize];
            let mut at = 0usize;
            for (i, n) in ix.iter().zip(shape) {
                let i = ceval(i, x, k, data, shapes)? as i64;
                if i < 0 || i as usize >= *n {
                    return None;
                }
                at = at * n + i as usize;
            }
            *d.get(at)? as f64
        }
        Expr::Bin(op, a, b) => {
            let (p, q) = (ceval(a, x, k, data, shapes)?, ceval(b, x, k, data, shapes)?);
            match op {
                BinOp::Add => p + q,
                BinOp::Sub => p - q,
                BinOp::Mul => p * q,
                BinOp::Div if q != 0.0 && index_only(a) && index_only(b) => (p / q).trunc(),
                BinOp::Rem if q != 0.0 && index_only(a) && index_only(b) => p % q,
                BinOp::Min => p.min(q),
                BinOp::Max => p.max(q),
                BinOp::Lt => (p < q) as u8 as f64,
                BinOp::Ge => (p >= q) as u8 as f64,
                BinOp::And => (p != 0.0 && q != 0.0) as u8 as f64,
                _ => return None,
            }
        }
        Expr::Select(c, a, b) => {
            if ceval(c, x, k, data, shapes)? != 0.0 {
                ceval(a, x, k, data, shapes)?
            } else {
                ceval(b, x, k, data, shapes)?
            }
        }
        _ => return None,
    })
}

/// True for pure index arithmetic (no loads or typed literals).
fn index_only(e: &Expr) -> bool {
    let mut ok = true;
    e.walk(&mut |s| ok &= !matches!(s, Expr::Load(..) | Expr::Lit(..)));
    ok
}
