//! The kernel IR's text form (printer). `parse.rs` reads it back; the two
//! round-trip, and snapshot tests pin lowered kernels in this form.

use super::{Expr, Gemm, Kernel, Operand, Schedule, Stmt};
use std::fmt::{self, Write};

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: Vec<String> = self
            .bufs
            .iter()
            .map(|b| {
                let dims: Vec<String> = b.shape.iter().map(|d| d.to_string()).collect();
                format!(
                    "%{}: {} {}[{}]",
                    b.name,
                    b.role.name(),
                    b.dtype,
                    dims.join(", ")
                )
            })
            .collect();
        writeln!(f, "kernel {:?}({}) {{", self.name, params.join(", "))?;
        let mut s = String::new();
        for st in &self.body {
            stmt(self, st, 1, &mut s);
        }
        f.write_str(&s)?;
        writeln!(f, "}}")?;
        schedule(&self.schedule, f)
    }
}

fn schedule(s: &Schedule, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "schedule {{")?;
    if s.parallel {
        writeln!(f, "  parallel")?;
    }
    for (v, w) in &s.vectorize {
        writeln!(f, "  vectorize {v} {w}")?;
    }
    for (v, u) in &s.unroll {
        writeln!(f, "  unroll {v} {u}")?;
    }
    if let Some(g) = s.gemm {
        write!(
            f,
            "  gemm mr {} nr {} mc {} kc {} nc {}",
            g.mr, g.nr, g.mc, g.kc, g.nc
        )?;
        if g.a_lanes != 1 {
            write!(f, " a_lanes {}", g.a_lanes)?;
        }
        writeln!(f)?;
    }
    if let Some(l) = s.launch {
        let [g, b] = [l.grid, l.block];
        writeln!(
            f,
            "  launch grid {} {} {} block {} {} {}",
            g[0], g[1], g[2], b[0], b[1], b[2]
        )?;
    }
    writeln!(f, "}}")
}

fn indent(depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn stmt(k: &Kernel, s: &Stmt, depth: usize, out: &mut String) {
    indent(depth, out);
    match s {
        Stmt::For { var, extent, body } => {
            let _ = writeln!(out, "for {var} in 0..{} {{", expr(k, extent));
            for b in body {
                stmt(k, b, depth + 1, out);
            }
            indent(depth, out);
            out.push_str("}\n");
        }
        Stmt::Let { name, dtype, init } => {
            let _ = writeln!(out, "let ${name}: {dtype} = {}", expr(k, init));
        }
        Stmt::Set { name, value } => {
            let _ = writeln!(out, "${name} = {}", expr(k, value));
        }
        Stmt::Store { buf, index, value } => {
            let _ = writeln!(
                out,
                "%{}[{}] = {}",
                k.buf(*buf).name,
                exprs(k, index),
                expr(k, value)
            );
        }
        Stmt::Gemm(g) => gemm(k, g, depth, out),
        Stmt::If { cond, body } => {
            let _ = writeln!(out, "if {} {{", expr(k, cond));
            for b in body {
                stmt(k, b, depth + 1, out);
            }
            indent(depth, out);
            out.push_str("}\n");
        }
        Stmt::Barrier => out.push_str("barrier\n"),
        Stmt::Shuffle { name, value, xor } => {
            let _ = writeln!(out, "shfl ${name} = {} xor {xor}", expr(k, value));
        }
        Stmt::Mma(m) => {
            let (word, b_at) = if m.b_kn {
                ("mma.kn", [m.b_at[1].clone(), m.b_at[0].clone()])
            } else {
                ("mma", m.b_at.clone())
            };
            let _ = writeln!(
                out,
                "{word} ${} ${} ${} ${} += %{}[{}] %{}[{}]",
                m.acc[0],
                m.acc[1],
                m.acc[2],
                m.acc[3],
                k.buf(m.a).name,
                exprs(k, &m.a_at),
                k.buf(m.b).name,
                exprs(k, &b_at)
            );
        }
        Stmt::CopyAsync(c) => {
            let _ = writeln!(
                out,
                "cp.async {} %{}[{}] = %{}[{}] if {}",
                c.len,
                k.buf(c.dst).name,
                exprs(k, &c.dst_at),
                k.buf(c.src).name,
                exprs(k, &c.src_at),
                expr(k, &c.valid)
            );
        }
        Stmt::AsyncCommit => out.push_str("cp.async.commit\n"),
        Stmt::AsyncWait(n) => {
            let _ = writeln!(out, "cp.async.wait {n}");
        }
    }
}

fn gemm(k: &Kernel, g: &Gemm, depth: usize, out: &mut String) {
    let batch: Vec<String> = g
        .batch
        .iter()
        .map(|(v, n)| format!("{v} in 0..{n}"))
        .collect();
    let _ = writeln!(
        out,
        "gemm ${} batch({}) {} in 0..{} {} in 0..{} {} in 0..{} {{",
        g.acc,
        batch.join(", "),
        g.m.0,
        g.m.1,
        g.n.0,
        g.n.1,
        g.k.0,
        g.k.1
    );
    for (name, op) in [("a", &g.a), ("b", &g.b)] {
        indent(depth + 1, out);
        let _ = match op {
            Operand::Expr(e) => writeln!(out, "{name} = {}", expr(k, e)),
            Operand::Packed(b) => writeln!(out, "{name} = packed %{}", k.buf(*b).name),
        };
    }
    indent(depth + 1, out);
    let _ = write!(
        out,
        "%{}[{}] = {}",
        k.buf(g.out).name,
        exprs(k, &g.index),
        expr(k, &g.value)
    );
    match &g.mask {
        Some(m) => {
            let _ = writeln!(out, " if {}", expr(k, m));
        }
        None => out.push('\n'),
    }
    indent(depth, out);
    out.push_str("}\n");
}

fn exprs(k: &Kernel, es: &[Expr]) -> String {
    es.iter().map(|e| expr(k, e)).collect::<Vec<_>>().join(", ")
}

/// An expression in the text form.
pub(crate) fn expr(k: &Kernel, e: &Expr) -> String {
    match e {
        Expr::Var(v) => v.clone(),
        Expr::Local(v) => format!("${v}"),
        Expr::Int(i) => i.to_string(),
        Expr::Lit(d, v) => format!("{d}:{v:?}"),
        Expr::Load(b, ix) => format!("%{}[{}]", k.buf(*b).name, exprs(k, ix)),
        Expr::Un(o, a) => format!("({} {})", o.name(), expr(k, a)),
        Expr::Bin(o, a, b) => format!("({} {} {})", o.name(), expr(k, a), expr(k, b)),
        Expr::Select(c, a, b) => format!("(select {} {} {})", expr(k, c), expr(k, a), expr(k, b)),
        Expr::Cast(d, a) => format!("(cast {d} {})", expr(k, a)),
    }
}
