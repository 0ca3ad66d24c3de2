//! The readable text form of a graph: a printer and a parser that round-trip.
//!
//! ```text
//! graph "mlp"(%x: f32[2, 4]) {
//!   %w: f32[4, 3] = const dense<"0000803f...">
//!   %b: f32[3] = const [0.5, -1.0, 2.0]
//!   %h: f32[2, 3] = matmul(%x, %w) name "MatMul_0"
//!   %y: f32[2, 3] = add(%h, %b)
//!   return %y
//! }
//! ```
//! A node's `name "..."` is printed only where it differs from its first result's
//! name. Constants of up to 16 elements print as literals, larger ones as hex bytes
//! (or, for display, elided; an elided constant does not parse back).

use crate::attrs::fmt_float;
use crate::op::{Fused, Op};
use crate::{Attr, Attrs, DType, Graph, IrError, Sharding, Tensor, TensorType, ValueDef, ValueId};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

const LITERAL_MAX: usize = 16;

/// How constants are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstStyle {
    /// Every byte (the form that parses back).
    Full,
    /// Constants above this many bytes are shown as `elided<N bytes>`.
    Elide(usize),
}

fn bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')
}

fn value_ref(name: &str) -> String {
    if !name.is_empty() && name.chars().all(bare) {
        format!("%{name}")
    } else {
        format!("%{name:?}")
    }
}

fn literal(t: &Tensor) -> String {
    // f32/f16/bf16 values print as their shortest f32 form, which parses back to
    // the same bits after rounding to the dtype.
    let items: Vec<String> = if t.dtype() == DType::F64 {
        t.to_f64_vec().into_iter().map(fmt_float).collect()
    } else if t.dtype().is_float() {
        t.to_f64_vec()
            .into_iter()
            .map(|v| fmt_float(format!("{:?}", v as f32).parse().unwrap_or(v)))
            .collect()
    } else {
        t.to_i64_vec().into_iter().map(|v| v.to_string()).collect()
    };
    format!("[{}]", items.join(", "))
}

impl Graph {
    /// The text form with the given constant style.
    pub fn to_text(&self, style: ConstStyle) -> String {
        let mut s = String::new();
        let ins: Vec<String> = self
            .inputs
            .iter()
            .map(|&i| format!("{}: {}", value_ref(&self.value(i).name), self.value(i).ty))
            .collect();
        let _ = writeln!(s, "graph {:?}({}) {{", self.name, ins.join(", "));
        // Constants first (in value order), then nodes.
        for v in &self.values {
            if let ValueDef::Const(t) = &v.def {
                let body = if t.numel() <= LITERAL_MAX {
                    literal(t)
                } else {
                    match style {
                        ConstStyle::Elide(max) if t.bytes().len() > max => {
                            format!("elided<{} bytes>", t.bytes().len())
                        }
                        _ => {
                            let mut h = String::with_capacity(t.bytes().len() * 2 + 9);
                            h.push_str("dense<\"");
                            for b in t.bytes().iter() {
                                let _ = write!(h, "{b:02x}");
                            }
                            h.push_str("\">");
                            h
                        }
                    }
                };
                let _ = writeln!(s, "  {}: {} = const {body}", value_ref(&v.name), v.ty);
            }
        }
        for n in &self.nodes {
            let outs: Vec<String> = n
                .outputs
                .iter()
                .map(|&o| format!("{}: {}", value_ref(&self.value(o).name), self.value(o).ty))
                .collect();
            let args: Vec<String> = n
                .inputs
                .iter()
                .map(|&i| value_ref(&self.value(i).name))
                .collect();
            let _ = write!(
                s,
                "  {} = {}({})",
                outs.join(", "),
                n.op.mnemonic(),
                args.join(", ")
            );
            let attrs = n.op.def().attrs();
            if !attrs.0.is_empty() {
                let _ = write!(s, " {attrs}");
            }
            if let Op::Fused(f) = &n.op {
                let body = f.body.to_text(style);
                let _ = write!(s, " {}", body.trim_end().replace('\n', "\n  "));
            }
            let first = n.outputs.first().map(|&o| self.value(o).name.as_str());
            if first != Some(n.name.as_str()) {
                let _ = write!(s, " name {:?}", n.name);
            }
            s.push('\n');
        }
        let outs: Vec<String> = self
            .outputs
            .iter()
            .map(|&o| value_ref(&self.value(o).name))
            .collect();
        let _ = writeln!(s, "  return {}", outs.join(", "));
        s.push_str("}\n");
        s
    }

    /// Parses the text form (see the module docs). Types written in the text are
    /// checked against each op's inference.
    pub fn parse(text: &str) -> Result<Graph, IrError> {
        Parser::new(text)?.graph()
    }
}

impl std::fmt::Display for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text(ConstStyle::Full))
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Value(String),
    Ident(String),
    Str(String),
    Num(String),
    Punct(char),
    Eof,
}

struct Parser {
    toks: Vec<(Tok, usize, usize)>,
    pos: usize,
    names: HashMap<String, ValueId>,
}

fn lex(text: &str) -> Result<Vec<(Tok, usize, usize)>, IrError> {
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let mut out = Vec::new();
    let perr = |line, col, msg: String| IrError::Parse { line, col, msg };
    while i < chars.len() {
        let c = chars[i];
        let (l0, c0) = (line, col);
        let adv = |i: &mut usize, line: &mut usize, col: &mut usize| {
            if chars[*i] == '\n' {
                *line += 1;
                *col = 1;
            } else {
                *col += 1;
            }
            *i += 1;
        };
        if c.is_whitespace() {
            adv(&mut i, &mut line, &mut col);
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                adv(&mut i, &mut line, &mut col);
            }
            continue;
        }
        let string = |i: &mut usize,
                      line: &mut usize,
                      col: &mut usize|
         -> Result<String, IrError> {
            adv(i, line, col);
            let mut s = String::new();
            loop {
                let Some(&c) = chars.get(*i) else {
                    return Err(perr(l0, c0, "unterminated string".into()));
                };
                adv(i, line, col);
                match c {
                    '"' => return Ok(s),
                    '\\' => {
                        let Some(&e) = chars.get(*i) else {
                            return Err(perr(l0, c0, "unterminated string".into()));
                        };
                        adv(i, line, col);
                        match e {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            '0' => s.push('\0'),
                            '\\' | '"' | '\'' => s.push(e),
                            'u' => {
                                let mut hex = String::new();
                                if chars.get(*i) != Some(&'{') {
                                    return Err(perr(*line, *col, "bad \\u escape".into()));
                                }
                                adv(i, line, col);
                                while let Some(&h) = chars.get(*i) {
                                    adv(i, line, col);
                                    if h == '}' {
                                        break;
                                    }
                                    hex.push(h);
                                }
                                let ch = u32::from_str_radix(&hex, 16)
                                    .ok()
                                    .and_then(char::from_u32)
                                    .ok_or_else(|| perr(*line, *col, "bad \\u escape".into()))?;
                                s.push(ch);
                            }
                            _ => return Err(perr(*line, *col, format!("unknown escape \\{e}"))),
                        }
                    }
                    c => s.push(c),
                }
            }
        };
        let tok = if c == '%' {
            adv(&mut i, &mut line, &mut col);
            if chars.get(i) == Some(&'"') {
                Tok::Value(string(&mut i, &mut line, &mut col)?)
            } else {
                let mut s = String::new();
                while i < chars.len() && bare(chars[i]) {
                    s.push(chars[i]);
                    adv(&mut i, &mut line, &mut col);
                }
                if s.is_empty() {
                    return Err(perr(l0, c0, "expected a value name after '%'".into()));
                }
                Tok::Value(s)
            }
        } else if c == '"' {
            Tok::Str(string(&mut i, &mut line, &mut col)?)
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let mut s = String::new();
            if c == '-' {
                s.push(c);
                adv(&mut i, &mut line, &mut col);
            }
            while i < chars.len() {
                let d = chars[i];
                let sign_after_exp = matches!(d, '+' | '-') && s.ends_with(['e', 'E']);
                if !(d.is_ascii_alphanumeric() || d == '.' || sign_after_exp) {
                    break;
                }
                s.push(d);
                adv(&mut i, &mut line, &mut col);
            }
            Tok::Num(s)
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut s = String::new();
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                s.push(chars[i]);
                adv(&mut i, &mut line, &mut col);
            }
            Tok::Ident(s)
        } else if "(){}[]<>,:=@-".contains(c) {
            adv(&mut i, &mut line, &mut col);
            Tok::Punct(c)
        } else {
            return Err(perr(l0, c0, format!("unexpected character '{c}'")));
        };
        out.push((tok, l0, c0));
    }
    out.push((Tok::Eof, line, col));
    Ok(out)
}

impl Parser {
    fn new(text: &str) -> Result<Self, IrError> {
        Ok(Parser {
            toks: lex(text)?,
            pos: 0,
            names: HashMap::new(),
        })
    }

    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, IrError> {
        let (_, line, col) = self.toks[self.pos];
        Err(IrError::Parse {
            line,
            col,
            msg: msg.into(),
        })
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].0.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn punct(&mut self, c: char) -> Result<(), IrError> {
        if *self.peek() == Tok::Punct(c) {
            self.next();
            Ok(())
        } else {
            self.err(format!("expected '{c}', found {:?}", self.peek()))
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if *self.peek() == Tok::Punct(c) {
            self.next();
            true
        } else {
            false
        }
    }

    fn keyword(&mut self, k: &str) -> Result<(), IrError> {
        match self.peek() {
            Tok::Ident(s) if s == k => {
                self.next();
                Ok(())
            }
            t => self.err(format!("expected '{k}', found {t:?}")),
        }
    }

    fn ident(&mut self) -> Result<String, IrError> {
        match self.next() {
            Tok::Ident(s) => Ok(s),
            t => {
                self.pos -= 1;
                self.err(format!("expected a name, found {t:?}"))
            }
        }
    }

    fn value_name(&mut self) -> Result<String, IrError> {
        match self.peek().clone() {
            Tok::Value(s) => {
                self.next();
                Ok(s)
            }
            t => self.err(format!("expected a %value, found {t:?}")),
        }
    }

    fn string(&mut self) -> Result<String, IrError> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                Ok(s)
            }
            t => self.err(format!("expected a string, found {t:?}")),
        }
    }

    fn usize(&mut self) -> Result<usize, IrError> {
        match self.peek().clone() {
            Tok::Num(s) => match s.parse() {
                Ok(v) => {
                    self.next();
                    Ok(v)
                }
                Err(_) => self.err(format!("expected a dimension, found {s}")),
            },
            t => self.err(format!("expected a dimension, found {t:?}")),
        }
    }

    fn ty(&mut self) -> Result<TensorType, IrError> {
        let d = self.ident()?;
        let Some(dtype) = DType::from_name(&d) else {
            self.pos -= 1;
            return self.err(format!("unknown dtype '{d}'"));
        };
        self.punct('[')?;
        let mut shape = Vec::new();
        if !self.eat(']') {
            loop {
                shape.push(self.usize()?);
                if self.eat(']') {
                    break;
                }
                self.punct(',')?;
            }
        }
        let mut t = match TensorType::new(dtype, shape) {
            Ok(t) => t,
            Err(m) => return self.err(m),
        };
        if self.eat('@') {
            t.sharding = Some(self.sharding()?);
        }
        Ok(t)
    }

    fn axis_set(&mut self) -> Result<Vec<String>, IrError> {
        self.punct('{')?;
        let mut v = Vec::new();
        if !self.eat('}') {
            loop {
                v.push(self.ident()?);
                if self.eat('}') {
                    break;
                }
                self.punct(',')?;
            }
        }
        Ok(v)
    }

    fn sharding(&mut self) -> Result<Sharding, IrError> {
        self.punct('[')?;
        let mut dims = Vec::new();
        if !self.eat(']') {
            loop {
                dims.push(self.axis_set()?);
                if self.eat(']') {
                    break;
                }
                self.punct(',')?;
            }
        }
        let partial = if matches!(self.peek(), Tok::Ident(s) if s == "partial") {
            self.next();
            self.axis_set()?
        } else {
            Vec::new()
        };
        Ok(Sharding { dims, partial })
    }

    fn number(&mut self) -> Result<(f64, bool), IrError> {
        let neg = self.eat('-');
        let (v, is_float) = match self.next() {
            Tok::Num(s) => {
                let is_float = s.contains(['.', 'e', 'E']);
                match s.parse::<f64>() {
                    Ok(v) => (v, is_float),
                    Err(_) => {
                        self.pos -= 1;
                        return self.err(format!("bad number '{s}'"));
                    }
                }
            }
            Tok::Ident(s) if s == "inf" => (f64::INFINITY, true),
            Tok::Ident(s) if s == "nan" => (f64::NAN, true),
            t => {
                self.pos -= 1;
                return self.err(format!("expected a number, found {t:?}"));
            }
        };
        Ok((if neg { -v } else { v }, is_float))
    }

    fn int_text(&mut self) -> Result<i64, IrError> {
        let neg = self.eat('-');
        match self.next() {
            Tok::Num(s) => match format!("{}{s}", if neg { "-" } else { "" }).parse::<i64>() {
                Ok(v) => Ok(v),
                Err(_) => {
                    self.pos -= 1;
                    self.err(format!("bad integer '{s}'"))
                }
            },
            t => {
                self.pos -= 1;
                self.err(format!("expected an integer, found {t:?}"))
            }
        }
    }

    fn attr_value(&mut self) -> Result<Attr, IrError> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                Ok(Attr::Str(s))
            }
            Tok::Ident(s) if DType::from_name(&s).is_some() => {
                self.next();
                Ok(Attr::Type(DType::from_name(&s).unwrap()))
            }
            Tok::Punct('[') => {
                self.next();
                let mut items = Vec::new();
                if !self.eat(']') {
                    loop {
                        items.push(self.number()?);
                        if self.eat(']') {
                            break;
                        }
                        self.punct(',')?;
                    }
                }
                if items.iter().any(|(_, f)| *f) {
                    Ok(Attr::Floats(items.into_iter().map(|(v, _)| v).collect()))
                } else {
                    Ok(Attr::Ints(
                        items.into_iter().map(|(v, _)| v as i64).collect(),
                    ))
                }
            }
            _ => {
                let save = self.pos;
                let (v, is_float) = self.number()?;
                if is_float {
                    Ok(Attr::Float(v))
                } else {
                    self.pos = save;
                    Ok(Attr::Int(self.int_text()?))
                }
            }
        }
    }

    fn attrs(&mut self) -> Result<Attrs, IrError> {
        let mut a = Attrs::default();
        if !self.eat('{') {
            return Ok(a);
        }
        if self.eat('}') {
            return Ok(a);
        }
        loop {
            let name = self.ident()?;
            self.punct('=')?;
            let v = self.attr_value()?;
            a.0.push((name, v));
            if self.eat('}') {
                return Ok(a);
            }
            self.punct(',')?;
        }
    }

    fn constant(&mut self, ty: &TensorType) -> Result<Tensor, IrError> {
        match self.peek().clone() {
            Tok::Punct('[') => {
                self.next();
                let mut vals = Vec::new();
                let mut ints = Vec::new();
                if !self.eat(']') {
                    loop {
                        if ty.dtype.is_float() {
                            vals.push(self.number()?.0);
                        } else {
                            ints.push(self.int_text()?);
                        }
                        if self.eat(']') {
                            break;
                        }
                        self.punct(',')?;
                    }
                }
                let n = vals.len().max(ints.len());
                if n != ty.numel() {
                    return self.err(format!(
                        "constant of type {ty} needs {} values, got {n}",
                        ty.numel()
                    ));
                }
                Ok(if ty.dtype.is_float() {
                    Tensor::from_f64(ty.dtype, ty.shape.clone(), &vals)
                } else {
                    Tensor::from_i64(ty.dtype, ty.shape.clone(), &ints)
                })
            }
            Tok::Ident(s) if s == "dense" => {
                self.next();
                self.punct('<')?;
                let hex = self.string()?;
                self.punct('>')?;
                if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return self.err("dense data must be an even number of hex digits");
                }
                let bytes: Vec<u8> = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
                    .collect();
                match Tensor::from_bytes(ty.dtype, ty.shape.clone(), bytes.into()) {
                    Ok(t) => Ok(t),
                    Err(m) => self.err(m),
                }
            }
            Tok::Ident(s) if s == "elided" => self.err(
                "constant data is elided in this text; print it with full constants to parse it",
            ),
            t => self.err(format!("expected constant data, found {t:?}")),
        }
    }

    fn graph(&mut self) -> Result<Graph, IrError> {
        let g = self.graph_body()?;
        if *self.peek() != Tok::Eof {
            return self.err("unexpected text after the graph");
        }
        Ok(g)
    }

    /// One `graph "name"(..) { .. }`, with its own value names (so a fused op's
    /// body may reuse names of the enclosing graph).
    fn graph_body(&mut self) -> Result<Graph, IrError> {
        let outer = std::mem::take(&mut self.names);
        let g = self.graph_scope();
        self.names = outer;
        g
    }

    fn graph_scope(&mut self) -> Result<Graph, IrError> {
        self.keyword("graph")?;
        let name = self.string()?;
        let mut g = Graph::new(&name);
        self.punct('(')?;
        if !self.eat(')') {
            loop {
                let v = self.value_name()?;
                self.punct(':')?;
                let ty = self.ty()?;
                let id = g.add_input(&v, ty);
                self.declare(&v, id)?;
                if self.eat(')') {
                    break;
                }
                self.punct(',')?;
            }
        }
        self.punct('{')?;
        loop {
            if matches!(self.peek(), Tok::Ident(s) if s == "return") {
                self.next();
                break;
            }
            let mut outs = vec![];
            loop {
                let v = self.value_name()?;
                self.punct(':')?;
                let ty = self.ty()?;
                outs.push((v, ty));
                if !self.eat(',') {
                    break;
                }
            }
            self.punct('=')?;
            if matches!(self.peek(), Tok::Ident(s) if s == "const") {
                self.next();
                if outs.len() != 1 {
                    return self.err("a constant defines exactly one value");
                }
                let (v, ty) = &outs[0];
                let t = self.constant(ty)?;
                let id = g.add_const(v, t);
                g.values[id.0 as usize].ty.sharding = ty.sharding.clone();
                self.declare(v, id)?;
                continue;
            }
            let mnemonic = self.ident()?;
            self.punct('(')?;
            let mut args = Vec::new();
            if !self.eat(')') {
                loop {
                    let a = self.value_name()?;
                    args.push(self.lookup(&a, "use")?);
                    if self.eat(')') {
                        break;
                    }
                    self.punct(',')?;
                }
            }
            let body = if mnemonic == "fused" {
                Some(self.graph_body()?)
            } else {
                None
            };
            let attrs = self.attrs()?;
            let node_name = if matches!(self.peek(), Tok::Ident(s) if s == "name") {
                self.next();
                self.string()?
            } else {
                outs[0].0.clone()
            };
            let parsed = match body {
                Some(b) => Ok(Op::Fused(Fused { body: Arc::new(b) })),
                None => Op::parse(&mnemonic, &attrs),
            };
            let op = match parsed {
                Ok(op) => op,
                Err(m) => return self.err(format!("{mnemonic}: {m}")),
            };
            let names: Vec<&str> = outs.iter().map(|(n, _)| n.as_str()).collect();
            let ids = match g.add_node(&node_name, op, args, &names) {
                Ok(ids) => ids,
                Err(e) => return self.err(e.to_string()),
            };
            if ids.len() != outs.len() {
                return self.err(format!(
                    "{mnemonic} defines {} results, the text names {}",
                    ids.len(),
                    outs.len()
                ));
            }
            for (id, (v, ty)) in ids.iter().zip(&outs) {
                let have = &mut g.values[id.0 as usize].ty;
                if have.dtype != ty.dtype || have.shape != ty.shape {
                    return self.err(format!(
                        "%{v} is written as {ty} but {mnemonic} gives {have}"
                    ));
                }
                have.sharding = ty.sharding.clone();
                self.declare(v, *id)?;
            }
        }
        if !self.eat('}') {
            loop {
                let v = self.value_name()?;
                g.outputs.push(self.lookup(&v, "return")?);
                if self.eat('}') {
                    break;
                }
                self.punct(',')?;
            }
        }
        Ok(g)
    }

    fn declare(&mut self, v: &str, id: ValueId) -> Result<(), IrError> {
        if self.names.insert(v.to_string(), id).is_some() {
            return self.err(format!("%{v} is defined twice"));
        }
        Ok(())
    }

    fn lookup(&self, v: &str, what: &str) -> Result<ValueId, IrError> {
        match self.names.get(v) {
            Some(&id) => Ok(id),
            None => self.err(format!("{what} of undefined value %{v}")),
        }
    }
}
