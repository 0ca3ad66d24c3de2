//! Scalar expressions of the kernel IR: loop variables, locals, literals, buffer
//! loads with explicit index expressions, and arithmetic. Index arithmetic is
//! `i64`; the constructors fold constants so lowered index expressions stay
//! readable.

use crate::DType;

/// Index of a buffer in its kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub u32);

/// A unary scalar op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Abs,
    Sqrt,
    Exp,
    Log,
    Tanh,
    Erf,
    Floor,
    Ceil,
    /// Logical not of a bool.
    Not,
}

/// A binary scalar op. On floats `max`/`min` propagate NaN; on integers `div`
/// truncates toward zero and `rem` takes the dividend's sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Max,
    Min,
    Pow,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl UnOp {
    /// Every unary op with its text name.
    pub const ALL: [(UnOp, &'static str); 10] = [
        (UnOp::Neg, "neg"),
        (UnOp::Abs, "abs"),
        (UnOp::Sqrt, "sqrt"),
        (UnOp::Exp, "exp"),
        (UnOp::Log, "log"),
        (UnOp::Tanh, "tanh"),
        (UnOp::Erf, "erf"),
        (UnOp::Floor, "floor"),
        (UnOp::Ceil, "ceil"),
        (UnOp::Not, "not"),
    ];

    /// The op's text name.
    pub fn name(self) -> &'static str {
        UnOp::ALL
            .iter()
            .find(|(o, _)| *o == self)
            .map_or("?", |p| p.1)
    }
}

impl BinOp {
    /// Every binary op with its text name.
    pub const ALL: [(BinOp, &'static str); 16] = [
        (BinOp::Add, "add"),
        (BinOp::Sub, "sub"),
        (BinOp::Mul, "mul"),
        (BinOp::Div, "div"),
        (BinOp::Rem, "rem"),
        (BinOp::Max, "max"),
        (BinOp::Min, "min"),
        (BinOp::Pow, "pow"),
        (BinOp::Eq, "eq"),
        (BinOp::Ne, "ne"),
        (BinOp::Lt, "lt"),
        (BinOp::Le, "le"),
        (BinOp::Gt, "gt"),
        (BinOp::Ge, "ge"),
        (BinOp::And, "and"),
        (BinOp::Or, "or"),
    ];

    /// The op's text name.
    pub fn name(self) -> &'static str {
        BinOp::ALL
            .iter()
            .find(|(o, _)| *o == self)
            .map_or("?", |p| p.1)
    }

    /// True for comparisons (their result is a bool).
    pub fn is_compare(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
        )
    }
}

/// A scalar expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A loop variable (`i64`).
    Var(String),
    /// A scalar local declared by `let`.
    Local(String),
    /// An `i64` literal.
    Int(i64),
    /// A literal of another dtype (floats, narrow integers, bool as 0/1).
    Lit(DType, f64),
    /// An element of a buffer; one `i64` index per buffer dim.
    Load(BufId, Vec<Expr>),
    Un(UnOp, Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    /// `cond ? a : b`, `cond` a bool.
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    /// Conversion (floats round to nearest even; float to int truncates).
    Cast(DType, Box<Expr>),
}

impl Expr {
    /// A loop variable.
    pub fn var(name: &str) -> Expr {
        Expr::Var(name.to_string())
    }

    /// A local.
    pub fn local(name: &str) -> Expr {
        Expr::Local(name.to_string())
    }

    /// A float literal of `dtype`.
    pub fn lit(dtype: DType, v: f64) -> Expr {
        Expr::Lit(dtype, v)
    }

    /// A unary op.
    pub fn un(op: UnOp, a: Expr) -> Expr {
        Expr::Un(op, Box::new(a))
    }

    /// A binary op, folding `i64` constants and identities of index arithmetic.
    pub fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
        use BinOp::*;
        match (op, &a, &b) {
            (Add, Expr::Int(x), Expr::Int(y)) => return Expr::Int(x.wrapping_add(*y)),
            (Sub, Expr::Int(x), Expr::Int(y)) => return Expr::Int(x.wrapping_sub(*y)),
            (Mul, Expr::Int(x), Expr::Int(y)) => return Expr::Int(x.wrapping_mul(*y)),
            (Div, Expr::Int(x), Expr::Int(y)) if *y != 0 => return Expr::Int(x / y),
            (Rem, Expr::Int(x), Expr::Int(y)) if *y != 0 => return Expr::Int(x % y),
            (Add | Sub, _, Expr::Int(0)) | (Mul | Div, _, Expr::Int(1)) => return a,
            (Add, Expr::Int(0), _) | (Mul, Expr::Int(1), _) => return b,
            (Mul, Expr::Int(0), _) | (Mul, _, Expr::Int(0)) => return Expr::Int(0),
            (Rem, _, Expr::Int(1)) => return Expr::Int(0),
            _ => {}
        }
        Expr::Bin(op, Box::new(a), Box::new(b))
    }

    /// `a + b`.
    pub fn plus(a: Expr, b: Expr) -> Expr {
        Expr::bin(BinOp::Add, a, b)
    }

    /// `a * b`.
    pub fn times(a: Expr, b: Expr) -> Expr {
        Expr::bin(BinOp::Mul, a, b)
    }

    /// `cond ? a : b`.
    pub fn select(c: Expr, a: Expr, b: Expr) -> Expr {
        Expr::Select(Box::new(c), Box::new(a), Box::new(b))
    }

    /// A conversion, dropped where `from == to`.
    pub fn cast(to: DType, from: DType, a: Expr) -> Expr {
        if to == from {
            a
        } else {
            Expr::Cast(to, Box::new(a))
        }
    }

    /// A load.
    pub fn load(buf: BufId, index: Vec<Expr>) -> Expr {
        Expr::Load(buf, index)
    }

    /// Calls `f` on every sub-expression, this one first.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Load(_, ix) => ix.iter().for_each(|e| e.walk(f)),
            Expr::Un(_, a) | Expr::Cast(_, a) => a.walk(f),
            Expr::Bin(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Select(c, a, b) => {
                c.walk(f);
                a.walk(f);
                b.walk(f);
            }
            Expr::Var(_) | Expr::Local(_) | Expr::Int(_) | Expr::Lit(..) => {}
        }
    }

    /// The step of an integer index along `var`: `Some(s)` for
    /// `s * var + (invariant)`, `None` when it is not affine in `var`.
    pub fn stride(&self, var: &str) -> Option<i64> {
        match self {
            Expr::Var(v) if v == var => Some(1),
            Expr::Bin(BinOp::Add, a, b) => a.stride(var)?.checked_add(b.stride(var)?),
            Expr::Bin(BinOp::Sub, a, b) => a.stride(var)?.checked_sub(b.stride(var)?),
            Expr::Bin(BinOp::Mul, a, b) => match (&**a, &**b) {
                (Expr::Int(c), x) | (x, Expr::Int(c)) => c.checked_mul(x.stride(var)?),
                _ => (!self.uses_var(var)).then_some(0),
            },
            _ => (!self.uses_var(var)).then_some(0),
        }
    }

    /// True if the expression reads local `l`.
    pub fn uses_local(&self, l: &str) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= matches!(e, Expr::Local(n) if n == l));
        found
    }

    /// True if the expression mentions loop variable `v`.
    pub fn uses_var(&self, v: &str) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= matches!(e, Expr::Var(n) if n == v));
        found
    }

    /// `self` with every subexpression for which `f` gives a replacement
    /// replaced (outermost first; a replacement is not visited again).
    pub fn rewrite(&self, f: &dyn Fn(&Expr) -> Option<Expr>) -> Expr {
        if let Some(e) = f(self) {
            return e;
        }
        let r = |x: &Expr| Box::new(x.rewrite(f));
        match self {
            Expr::Var(_) | Expr::Local(_) | Expr::Int(_) | Expr::Lit(..) => self.clone(),
            Expr::Load(b, ix) => Expr::Load(*b, ix.iter().map(|e| e.rewrite(f)).collect()),
            Expr::Un(o, a) => Expr::Un(*o, r(a)),
            Expr::Cast(d, a) => Expr::Cast(*d, r(a)),
            Expr::Bin(o, a, b) => Expr::Bin(*o, r(a), r(b)),
            Expr::Select(c, a, b) => Expr::Select(r(c), r(a), r(b)),
        }
    }

    /// Replaces loop variable `v` by `by` everywhere.
    pub fn subst(&self, v: &str, by: &Expr) -> Expr {
        match self {
            Expr::Var(n) if n == v => by.clone(),
            Expr::Var(_) | Expr::Local(_) | Expr::Int(_) | Expr::Lit(..) => self.clone(),
            Expr::Load(b, ix) => Expr::Load(*b, ix.iter().map(|e| e.subst(v, by)).collect()),
            Expr::Un(o, a) => Expr::un(*o, a.subst(v, by)),
            Expr::Cast(d, a) => Expr::Cast(*d, Box::new(a.subst(v, by))),
            Expr::Bin(o, a, b) => Expr::bin(*o, a.subst(v, by), b.subst(v, by)),
            Expr::Select(c, a, b) => Expr::select(c.subst(v, by), a.subst(v, by), b.subst(v, by)),
        }
    }

    /// Replaces local `name` by `by` everywhere.
    pub fn subst_local(&self, name: &str, by: &Expr) -> Expr {
        match self {
            Expr::Local(n) if n == name => by.clone(),
            Expr::Var(_) | Expr::Local(_) | Expr::Int(_) | Expr::Lit(..) => self.clone(),
            Expr::Load(b, ix) => {
                Expr::Load(*b, ix.iter().map(|e| e.subst_local(name, by)).collect())
            }
            Expr::Un(o, a) => Expr::un(*o, a.subst_local(name, by)),
            Expr::Cast(d, a) => Expr::Cast(*d, Box::new(a.subst_local(name, by))),
            Expr::Bin(o, a, b) => Expr::bin(*o, a.subst_local(name, by), b.subst_local(name, by)),
            Expr::Select(c, a, b) => Expr::select(
                c.subst_local(name, by),
                a.subst_local(name, by),
                b.subst_local(name, by),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
        Expr::Bin(op, Box::new(a), Box::new(b))
    }

    #[test]
    fn strides_of_affine_and_other_indices() {
        let j = || Expr::var("j");
        // 3 * (j - 2) + i: step 3 along j, 1 along i, 0 along k.
        let e = bin(
            BinOp::Add,
            bin(BinOp::Mul, Expr::Int(3), bin(BinOp::Sub, j(), Expr::Int(2))),
            Expr::var("i"),
        );
        assert_eq!(e.stride("j"), Some(3));
        assert_eq!(e.stride("i"), Some(1));
        assert_eq!(e.stride("k"), Some(0));
        assert_eq!(bin(BinOp::Div, j(), Expr::Int(2)).stride("j"), None);
        assert_eq!(bin(BinOp::Mul, j(), j()).stride("j"), None);
        assert_eq!(bin(BinOp::Mul, j(), j()).stride("i"), Some(0));
    }
}
