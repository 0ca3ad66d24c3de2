//! Elementwise binary ops with numpy broadcasting (arithmetic, comparisons, logic)
//! and the three-operand select `where`.

use super::{arity, out, same_dtype, OpDef};
use crate::shape::{broadcast, broadcast_map};
use crate::{Attrs, DType, Elems, Tensor, TensorType};

/// Which binary function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    Equal,
    Less,
    Greater,
    LessEqual,
    GreaterEqual,
    And,
    Or,
}

/// An elementwise binary op.
#[derive(Clone, Debug, PartialEq)]
pub struct Binary {
    pub kind: BinaryKind,
}

const KINDS: [(BinaryKind, &str); 14] = [
    (BinaryKind::Add, "add"),
    (BinaryKind::Sub, "sub"),
    (BinaryKind::Mul, "mul"),
    (BinaryKind::Div, "div"),
    (BinaryKind::Pow, "pow"),
    (BinaryKind::Max, "max"),
    (BinaryKind::Min, "min"),
    (BinaryKind::Equal, "eq"),
    (BinaryKind::Less, "lt"),
    (BinaryKind::Greater, "gt"),
    (BinaryKind::LessEqual, "le"),
    (BinaryKind::GreaterEqual, "ge"),
    (BinaryKind::And, "and"),
    (BinaryKind::Or, "or"),
];

impl BinaryKind {
    fn is_compare(self) -> bool {
        use BinaryKind::*;
        matches!(self, Equal | Less | Greater | LessEqual | GreaterEqual)
    }

    fn is_logic(self) -> bool {
        matches!(self, BinaryKind::And | BinaryKind::Or)
    }
}

impl Binary {
    pub(crate) const MNEMONICS: &'static [&'static str] = &[
        "add", "sub", "mul", "div", "pow", "max", "min", "eq", "lt", "gt", "le", "ge", "and", "or",
    ];

    pub(crate) fn parse(m: &str, _: &Attrs) -> Result<Self, String> {
        KINDS
            .iter()
            .find(|(_, n)| *n == m)
            .map(|(kind, _)| Binary { kind: *kind })
            .ok_or_else(|| format!("unknown binary op '{m}'"))
    }

    /// The function on floats; comparisons return 0.0 or 1.0.
    pub fn apply_f(&self, a: f64, b: f64) -> f64 {
        use BinaryKind::*;
        match self.kind {
            Add => a + b,
            Sub => a - b,
            Mul => a * b,
            Div => a / b,
            Pow => a.powf(b),
            Max => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.max(b)
                }
            }
            Min => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.min(b)
                }
            }
            Equal => (a == b) as i64 as f64,
            Less => (a < b) as i64 as f64,
            Greater => (a > b) as i64 as f64,
            LessEqual => (a <= b) as i64 as f64,
            GreaterEqual => (a >= b) as i64 as f64,
            And => (a != 0.0 && b != 0.0) as i64 as f64,
            Or => (a != 0.0 || b != 0.0) as i64 as f64,
        }
    }

    /// The function on integers (wrapping; division truncates toward zero).
    pub fn apply_i(&self, a: i64, b: i64) -> Result<i64, String> {
        use BinaryKind::*;
        Ok(match self.kind {
            Add => a.wrapping_add(b),
            Sub => a.wrapping_sub(b),
            Mul => a.wrapping_mul(b),
            Div => {
                if b == 0 {
                    return Err("integer division by zero".into());
                }
                a.wrapping_div(b)
            }
            Pow => int_pow(a, b),
            Max => a.max(b),
            Min => a.min(b),
            Equal => (a == b) as i64,
            Less => (a < b) as i64,
            Greater => (a > b) as i64,
            LessEqual => (a <= b) as i64,
            GreaterEqual => (a >= b) as i64,
            And => (a != 0 && b != 0) as i64,
            Or => (a != 0 || b != 0) as i64,
        })
    }
}

fn int_pow(a: i64, b: i64) -> i64 {
    if b < 0 {
        return match a {
            1 => 1,
            -1 => {
                if b % 2 == 0 {
                    1
                } else {
                    -1
                }
            }
            _ => 0,
        };
    }
    let mut r: i64 = 1;
    for _ in 0..b.min(64) {
        r = r.wrapping_mul(a);
    }
    r
}

impl OpDef for Binary {
    fn mnemonic(&self) -> &'static str {
        KINDS.iter().find(|(k, _)| *k == self.kind).unwrap().1
    }

    fn attrs(&self) -> Attrs {
        Attrs::default()
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 2, 2)?;
        let (a, b) = (inputs[0], inputs[1]);
        let m = self.mnemonic();
        if self.kind == BinaryKind::Pow {
            if !a.dtype.is_numeric() || !b.dtype.is_numeric() {
                return Err(format!("pow needs numeric operands, got {a} and {b}"));
            }
        } else {
            same_dtype(a, b, m)?;
            let ok = if self.kind.is_logic() {
                a.dtype == DType::Bool
            } else if self.kind == BinaryKind::Equal {
                true
            } else {
                a.dtype.is_numeric()
            };
            if !ok {
                return Err(format!("{m} does not accept {a}"));
            }
        }
        let shape = broadcast(&a.shape, &b.shape)
            .ok_or_else(|| format!("{m}: shapes {a} and {b} do not broadcast"))?;
        let dtype = if self.kind.is_compare() {
            DType::Bool
        } else {
            a.dtype
        };
        Ok(vec![out(dtype, shape)?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let (a, b) = (inputs[0], inputs[1]);
        let shape = broadcast(a.shape(), b.shape()).ok_or("shapes do not broadcast")?;
        let ma = broadcast_map(a.shape(), &shape);
        let mb = broadcast_map(b.shape(), &shape);
        let out_dtype = if self.kind.is_compare() {
            DType::Bool
        } else {
            a.dtype()
        };
        // Pow mixes dtypes: compute in the base's domain.
        let r = if a.dtype().is_float() || (b.dtype().is_float() && self.kind != BinaryKind::Pow) {
            let (va, vb) = (a.to_f64_vec(), b.to_f64_vec());
            Elems::F(
                ma.iter()
                    .zip(&mb)
                    .map(|(&i, &j)| self.apply_f(va[i], vb[j]))
                    .collect(),
            )
        } else if self.kind == BinaryKind::Pow && b.dtype().is_float() {
            let (va, vb) = (a.to_f64_vec(), b.to_f64_vec());
            Elems::F(
                ma.iter()
                    .zip(&mb)
                    .map(|(&i, &j)| va[i].powf(vb[j]))
                    .collect(),
            )
        } else {
            let (va, vb) = (a.to_i64_vec(), b.to_i64_vec());
            Elems::I(
                ma.iter()
                    .zip(&mb)
                    .map(|(&i, &j)| self.apply_i(va[i], vb[j]))
                    .collect::<Result<_, _>>()?,
            )
        };
        Ok(vec![Tensor::from_elems(out_dtype, shape, &r)])
    }

    fn flops(&self, _: &[&TensorType], outputs: &[TensorType]) -> u64 {
        outputs[0].numel() as u64
    }
}

/// `where(cond, x, y)`: picks from `x` where `cond` is true, else from `y`, with
/// three-way broadcasting.
#[derive(Clone, Debug, PartialEq)]
pub struct Where;

impl Where {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["where"];

    pub(crate) fn parse(_: &str, _: &Attrs) -> Result<Self, String> {
        Ok(Where)
    }
}

impl OpDef for Where {
    fn mnemonic(&self) -> &'static str {
        "where"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default()
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 3, 3)?;
        let (c, x, y) = (inputs[0], inputs[1], inputs[2]);
        if c.dtype != DType::Bool {
            return Err(format!("where: condition must be bool, got {c}"));
        }
        same_dtype(x, y, "where")?;
        let shape = broadcast(&c.shape, &x.shape)
            .and_then(|s| broadcast(&s, &y.shape))
            .ok_or_else(|| format!("where: shapes {c}, {x} and {y} do not broadcast"))?;
        Ok(vec![out(x.dtype, shape)?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let (c, x, y) = (inputs[0], inputs[1], inputs[2]);
        let shape = broadcast(c.shape(), x.shape())
            .and_then(|s| broadcast(&s, y.shape()))
            .ok_or("shapes do not broadcast")?;
        let (mc, mx, my) = (
            broadcast_map(c.shape(), &shape),
            broadcast_map(x.shape(), &shape),
            broadcast_map(y.shape(), &shape),
        );
        let vc = c.to_i64_vec();
        let pick = |i: usize| vc[mc[i]] != 0;
        let r = match (x.elems(), y.elems()) {
            (Elems::F(vx), Elems::F(vy)) => Elems::F(
                (0..mc.len())
                    .map(|i| if pick(i) { vx[mx[i]] } else { vy[my[i]] })
                    .collect(),
            ),
            (Elems::I(vx), Elems::I(vy)) => Elems::I(
                (0..mc.len())
                    .map(|i| if pick(i) { vx[mx[i]] } else { vy[my[i]] })
                    .collect(),
            ),
            _ => return Err("where: operand dtypes differ".into()),
        };
        Ok(vec![Tensor::from_elems(x.dtype(), shape, &r)])
    }

    fn flops(&self, _: &[&TensorType], outputs: &[TensorType]) -> u64 {
        outputs[0].numel() as u64
    }
}
