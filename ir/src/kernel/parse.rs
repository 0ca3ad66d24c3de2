//! The kernel IR's text form (parser): reads back what `print.rs` writes, then
//! verifies the kernel. Errors name the line and what was expected.

use super::{
    BinOp, Buf, BufId, CopyAsync, Expr, Gemm, GemmSchedule, Kernel, Launch, Mma, Operand, Role,
    Schedule, Stmt, UnOp,
};
use crate::{DType, IrError};

impl Kernel {
    /// Parses a kernel from its text form and verifies it.
    pub fn parse(text: &str) -> Result<Kernel, IrError> {
        let mut p = Parser {
            s: text.as_bytes(),
            pos: 0,
            bufs: Vec::new(),
        };
        let k = p.kernel()?;
        k.verify()?;
        Ok(k)
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    bufs: Vec<Buf>,
}

fn word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl Parser<'_> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, IrError> {
        let before = &self.s[..self.pos.min(self.s.len())];
        let line = before.iter().filter(|c| **c == b'\n').count() + 1;
        let col = before.iter().rev().take_while(|c| **c != b'\n').count() + 1;
        Err(IrError::Parse {
            line,
            col,
            msg: format!("kernel text: {}", msg.into()),
        })
    }

    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, t: &str) -> bool {
        self.ws();
        if self.s[self.pos..].starts_with(t.as_bytes()) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &str) -> Result<(), IrError> {
        if self.eat(t) {
            Ok(())
        } else {
            self.err(format!("expected '{t}'"))
        }
    }

    fn word(&mut self) -> Result<String, IrError> {
        self.ws();
        let start = self.pos;
        while self.pos < self.s.len() && (word_char(self.s[self.pos]) || self.s[self.pos] == b'.') {
            if self.s[self.pos..].starts_with(b"..") {
                break;
            }
            self.pos += 1;
        }
        if start == self.pos {
            return self.err("expected a name");
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn keyword(&mut self, k: &str) -> Result<(), IrError> {
        let save = self.pos;
        match self.word() {
            Ok(w) if w == k => Ok(()),
            _ => {
                self.pos = save;
                self.err(format!("expected '{k}'"))
            }
        }
    }

    fn number_text(&mut self) -> Result<String, IrError> {
        self.ws();
        let start = self.pos;
        while self.pos < self.s.len() {
            let c = self.s[self.pos];
            let exp_sign = (c == b'-' || c == b'+')
                && self.pos > start
                && matches!(self.s[self.pos - 1], b'e' | b'E');
            let dot = c == b'.' && !self.s[self.pos..].starts_with(b"..");
            if c.is_ascii_alphanumeric() || (c == b'-' && self.pos == start) || exp_sign || dot {
                self.pos += 1;
            } else {
                break;
            }
        }
        if start == self.pos {
            return self.err("expected a number");
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn usize(&mut self) -> Result<usize, IrError> {
        let t = self.number_text()?;
        t.parse().or_else(|_| self.err(format!("bad count '{t}'")))
    }

    fn dtype(&mut self) -> Result<DType, IrError> {
        let w = self.word()?;
        DType::from_name(&w).map_or_else(|| self.err(format!("unknown dtype '{w}'")), Ok)
    }

    fn string(&mut self) -> Result<String, IrError> {
        self.expect("\"")?;
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos] != b'"' {
            self.pos += 1;
        }
        let s = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
        self.expect("\"")?;
        Ok(s)
    }

    fn kernel(&mut self) -> Result<Kernel, IrError> {
        self.keyword("kernel")?;
        let name = self.string()?;
        self.expect("(")?;
        while !self.eat(")") {
            if !self.bufs.is_empty() {
                self.expect(",")?;
            }
            self.expect("%")?;
            let bname = self.word()?;
            self.expect(":")?;
            let role = match self.word()?.as_str() {
                "in" => Role::In,
                "out" => Role::Out,
                "scratch" => Role::Scratch,
                "shared" => Role::Shared,
                r => return self.err(format!("unknown buffer role '{r}'")),
            };
            let dtype = self.dtype()?;
            self.expect("[")?;
            let mut shape = Vec::new();
            while !self.eat("]") {
                if !shape.is_empty() {
                    self.expect(",")?;
                }
                shape.push(self.usize()?);
            }
            self.bufs.push(Buf {
                name: bname,
                dtype,
                shape,
                role,
            });
        }
        let body = self.block()?;
        let schedule = self.schedule()?;
        self.ws();
        if self.pos != self.s.len() {
            return self.err("text after the schedule");
        }
        Ok(Kernel {
            name,
            bufs: std::mem::take(&mut self.bufs),
            body,
            schedule,
        })
    }

    fn schedule(&mut self) -> Result<Schedule, IrError> {
        self.keyword("schedule")?;
        self.expect("{")?;
        let mut s = Schedule::default();
        while !self.eat("}") {
            match self.word()?.as_str() {
                "parallel" => s.parallel = true,
                "vectorize" => {
                    let v = self.word()?;
                    s.vectorize.push((v, self.usize()? as u32));
                }
                "unroll" => {
                    let v = self.word()?;
                    s.unroll.push((v, self.usize()? as u32));
                }
                "gemm" => {
                    let mut vals = [0usize; 5];
                    for (i, key) in ["mr", "nr", "mc", "kc", "nc"].iter().enumerate() {
                        self.keyword(key)?;
                        vals[i] = self.usize()?;
                    }
                    let [mr, nr, mc, kc, nc] = vals;
                    let a_lanes = if self.keyword("a_lanes").is_ok() {
                        self.usize()?
                    } else {
                        1
                    };
                    s.gemm = Some(GemmSchedule {
                        mr,
                        nr,
                        mc,
                        kc,
                        nc,
                        a_lanes,
                    });
                }
                "launch" => {
                    let mut dims = [[0usize; 3]; 2];
                    for (d, key) in dims.iter_mut().zip(["grid", "block"]) {
                        self.keyword(key)?;
                        for x in d.iter_mut() {
                            *x = self.usize()?;
                        }
                    }
                    s.launch = Some(Launch {
                        grid: dims[0],
                        block: dims[1],
                    });
                }
                w => return self.err(format!("unknown schedule item '{w}'")),
            }
        }
        Ok(s)
    }

    fn block(&mut self) -> Result<Vec<Stmt>, IrError> {
        self.expect("{")?;
        let mut body = Vec::new();
        while !self.eat("}") {
            body.push(self.stmt()?);
        }
        Ok(body)
    }

    fn buf_ref(&mut self) -> Result<BufId, IrError> {
        self.expect("%")?;
        let name = self.word()?;
        match self.bufs.iter().position(|b| b.name == name) {
            Some(i) => Ok(BufId(i as u32)),
            None => self.err(format!("unknown buffer '%{name}'")),
        }
    }

    fn index(&mut self) -> Result<Vec<Expr>, IrError> {
        self.expect("[")?;
        let mut ix = Vec::new();
        while !self.eat("]") {
            if !ix.is_empty() {
                self.expect(",")?;
            }
            ix.push(self.expr()?);
        }
        Ok(ix)
    }

    /// A two-element index `[e, e]`.
    fn pair(&mut self) -> Result<[Expr; 2], IrError> {
        let ix = self.index()?;
        match <[Expr; 2]>::try_from(ix) {
            Ok(p) => Ok(p),
            Err(_) => self.err("expected a two-element index"),
        }
    }

    fn range(&mut self) -> Result<(String, Expr), IrError> {
        let v = self.word()?;
        self.keyword("in")?;
        self.expect("0")?;
        self.expect("..")?;
        Ok((v, self.expr()?))
    }

    fn const_range(&mut self) -> Result<(String, usize), IrError> {
        let (v, e) = self.range()?;
        match e {
            Expr::Int(n) if n >= 0 => Ok((v, n as usize)),
            _ => self.err("a matrix product's extents must be constants"),
        }
    }

    fn stmt(&mut self) -> Result<Stmt, IrError> {
        match self.peek() {
            Some(b'$') => {
                self.pos += 1;
                let name = self.word()?;
                self.expect("=")?;
                Ok(Stmt::Set {
                    name,
                    value: self.expr()?,
                })
            }
            Some(b'%') => {
                let buf = self.buf_ref()?;
                let index = self.index()?;
                self.expect("=")?;
                Ok(Stmt::Store {
                    buf,
                    index,
                    value: self.expr()?,
                })
            }
            _ => match self.word()?.as_str() {
                "for" => {
                    let (var, extent) = self.range()?;
                    let body = self.block()?;
                    Ok(Stmt::For { var, extent, body })
                }
                "let" => {
                    self.expect("$")?;
                    let name = self.word()?;
                    self.expect(":")?;
                    let dtype = self.dtype()?;
                    self.expect("=")?;
                    Ok(Stmt::Let {
                        name,
                        dtype,
                        init: self.expr()?,
                    })
                }
                "gemm" => self.gemm(),
                "if" => {
                    let cond = self.expr()?;
                    let body = self.block()?;
                    Ok(Stmt::If { cond, body })
                }
                "barrier" => Ok(Stmt::Barrier),
                "shfl" => {
                    self.expect("$")?;
                    let name = self.word()?;
                    self.expect("=")?;
                    let value = self.expr()?;
                    self.keyword("xor")?;
                    let w = self.word()?;
                    let Ok(xor) = w.parse() else {
                        return self.err(format!("shfl lane mask '{w}' is not a number"));
                    };
                    Ok(Stmt::Shuffle { name, value, xor })
                }
                w @ ("mma" | "mma.kn") => {
                    let b_kn = w == "mma.kn";
                    let mut acc: [String; 4] = Default::default();
                    for a in acc.iter_mut() {
                        self.expect("$")?;
                        *a = self.word()?;
                    }
                    self.expect("+=")?;
                    let a = self.buf_ref()?;
                    let a_at = self.pair()?;
                    let b = self.buf_ref()?;
                    let [b0, b1] = self.pair()?;
                    let b_at = if b_kn { [b1, b0] } else { [b0, b1] };
                    Ok(Stmt::Mma(Box::new(Mma {
                        a,
                        a_at,
                        b,
                        b_at,
                        b_kn,
                        acc,
                    })))
                }
                "cp.async" => {
                    let w = self.word()?;
                    let Ok(len) = w.parse() else {
                        return self.err(format!("cp.async length '{w}' is not a number"));
                    };
                    let dst = self.buf_ref()?;
                    let dst_at = self.index()?;
                    self.expect("=")?;
                    let src = self.buf_ref()?;
                    let src_at = self.index()?;
                    self.keyword("if")?;
                    let valid = self.expr()?;
                    Ok(Stmt::CopyAsync(Box::new(CopyAsync {
                        dst,
                        dst_at,
                        src,
                        src_at,
                        len,
                        valid,
                    })))
                }
                "cp.async.commit" => Ok(Stmt::AsyncCommit),
                "cp.async.wait" => {
                    let w = self.word()?;
                    let Ok(n) = w.parse() else {
                        return self.err(format!("cp.async.wait count '{w}' is not a number"));
                    };
                    Ok(Stmt::AsyncWait(n))
                }
                w => self.err(format!("unknown statement '{w}'")),
            },
        }
    }

    fn operand(&mut self, name: &str) -> Result<Operand, IrError> {
        self.keyword(name)?;
        self.expect("=")?;
        let save = self.pos;
        if self.word().ok().as_deref() == Some("packed") {
            return Ok(Operand::Packed(self.buf_ref()?));
        }
        self.pos = save;
        Ok(Operand::Expr(self.expr()?))
    }

    fn gemm(&mut self) -> Result<Stmt, IrError> {
        self.expect("$")?;
        let acc = self.word()?;
        self.keyword("batch")?;
        self.expect("(")?;
        let mut batch = Vec::new();
        while !self.eat(")") {
            if !batch.is_empty() {
                self.expect(",")?;
            }
            batch.push(self.const_range()?);
        }
        let m = self.const_range()?;
        let n = self.const_range()?;
        let k = self.const_range()?;
        self.expect("{")?;
        let a = self.operand("a")?;
        let b = self.operand("b")?;
        let out = self.buf_ref()?;
        let index = self.index()?;
        self.expect("=")?;
        let value = self.expr()?;
        let mask = if self.eat("if") {
            Some(self.expr()?)
        } else {
            None
        };
        self.expect("}")?;
        Ok(Stmt::Gemm(Box::new(Gemm {
            batch,
            m,
            n,
            k,
            a,
            b,
            acc,
            out,
            index,
            value,
            mask,
        })))
    }

    fn expr(&mut self) -> Result<Expr, IrError> {
        match self.peek() {
            Some(b'$') => {
                self.pos += 1;
                Ok(Expr::Local(self.word()?))
            }
            Some(b'%') => {
                let b = self.buf_ref()?;
                Ok(Expr::Load(b, self.index()?))
            }
            Some(b'(') => {
                self.pos += 1;
                let op = self.word()?;
                let e = if op == "select" {
                    let c = self.expr()?;
                    let a = self.expr()?;
                    Expr::select(c, a, self.expr()?)
                } else if op == "cast" {
                    let d = self.dtype()?;
                    Expr::Cast(d, Box::new(self.expr()?))
                } else if let Some((u, _)) = UnOp::ALL.iter().find(|(_, n)| *n == op) {
                    Expr::Un(*u, Box::new(self.expr()?))
                } else if let Some((b, _)) = BinOp::ALL.iter().find(|(_, n)| *n == op) {
                    let a = self.expr()?;
                    Expr::Bin(*b, Box::new(a), Box::new(self.expr()?))
                } else {
                    return self.err(format!("unknown scalar op '{op}'"));
                };
                self.expect(")")?;
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() || c == b'-' => {
                let t = self.number_text()?;
                t.parse()
                    .map(Expr::Int)
                    .or_else(|_| self.err(format!("bad integer '{t}'")))
            }
            Some(_) => {
                let w = self.word()?;
                if let Some(d) = DType::from_name(&w) {
                    if self.eat(":") {
                        let t = self.number_text()?;
                        let v: f64 = t
                            .parse()
                            .or_else(|_| self.err(format!("bad literal '{t}'")))?;
                        return Ok(Expr::Lit(d, v));
                    }
                }
                Ok(Expr::Var(w))
            }
            None => self.err("unexpected end of text"),
        }
    }
}
