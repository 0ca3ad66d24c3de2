//! Elementwise unary ops: math functions, activations and logical not.

use super::{arity, out, OpDef};
use crate::{Attr, Attrs, DType, Elems, Tensor, TensorType};

/// Which unary function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryKind {
    Neg,
    Abs,
    Sqrt,
    Exp,
    Log,
    Tanh,
    Erf,
    Sigmoid,
    Relu,
    Reciprocal,
    Floor,
    Ceil,
    Not,
    /// `x < 0 ? alpha * x : x`.
    LeakyRelu {
        alpha: f64,
    },
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid {
        alpha: f64,
        beta: f64,
    },
    /// `x * max(0, min(1, x / 6 + 1 / 2))`.
    HardSwish,
    /// `x * sigmoid(x)` (SiLU, Swish).
    Silu,
    /// `x * Φ(x)`, exactly (`x/2 * (1 + erf(x/√2))`), or with `tanh` the
    /// approximation `x/2 * (1 + tanh(√(2/π) * (x + 0.044715 x³)))`.
    Gelu {
        tanh: bool,
    },
}

/// An elementwise unary op.
#[derive(Clone, Debug, PartialEq)]
pub struct Unary {
    pub kind: UnaryKind,
}

impl Unary {
    pub(crate) const MNEMONICS: &'static [&'static str] = &[
        "neg",
        "abs",
        "sqrt",
        "exp",
        "log",
        "tanh",
        "erf",
        "sigmoid",
        "relu",
        "reciprocal",
        "floor",
        "ceil",
        "not",
        "leaky_relu",
        "hard_sigmoid",
        "hard_swish",
        "silu",
        "gelu",
    ];

    pub(crate) fn parse(m: &str, a: &Attrs) -> Result<Self, String> {
        use UnaryKind::*;
        let kind = match m {
            "neg" => Neg,
            "abs" => Abs,
            "sqrt" => Sqrt,
            "exp" => Exp,
            "log" => Log,
            "tanh" => Tanh,
            "erf" => Erf,
            "sigmoid" => Sigmoid,
            "relu" => Relu,
            "reciprocal" => Reciprocal,
            "floor" => Floor,
            "ceil" => Ceil,
            "not" => Not,
            "leaky_relu" => LeakyRelu {
                alpha: a.float("alpha")?,
            },
            "hard_sigmoid" => HardSigmoid {
                alpha: a.float("alpha")?,
                beta: a.float("beta")?,
            },
            "hard_swish" => HardSwish,
            "silu" => Silu,
            "gelu" => Gelu {
                tanh: a.has("approximate") && a.str("approximate")? == "tanh",
            },
            _ => return Err(format!("unknown unary op '{m}'")),
        };
        Ok(Unary { kind })
    }

    /// The function on one float.
    pub fn apply_f(&self, x: f64) -> f64 {
        use UnaryKind::*;
        match self.kind {
            Neg => -x,
            Abs => x.abs(),
            Sqrt => x.sqrt(),
            Exp => x.exp(),
            Log => x.ln(),
            Tanh => x.tanh(),
            Erf => libm::erf(x),
            Sigmoid => {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
                }
            }
            Relu => {
                if x > 0.0 || x.is_nan() {
                    x
                } else {
                    0.0
                }
            }
            Reciprocal => 1.0 / x,
            Floor => x.floor(),
            Ceil => x.ceil(),
            Not => (x == 0.0) as i64 as f64,
            LeakyRelu { alpha } => {
                if x < 0.0 {
                    alpha * x
                } else {
                    x
                }
            }
            HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Silu => x * (Unary { kind: Sigmoid }).apply_f(x),
            Gelu { tanh: false } => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            Gelu { tanh: true } => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
        }
    }

    fn apply_i(&self, x: i64) -> i64 {
        use UnaryKind::*;
        match self.kind {
            Neg => x.wrapping_neg(),
            Abs => x.wrapping_abs(),
            Relu => x.max(0),
            Not => (x == 0) as i64,
            _ => unreachable!("infer admits only neg/abs/relu/not on integers"),
        }
    }
}

impl OpDef for Unary {
    fn mnemonic(&self) -> &'static str {
        use UnaryKind::*;
        match self.kind {
            Neg => "neg",
            Abs => "abs",
            Sqrt => "sqrt",
            Exp => "exp",
            Log => "log",
            Tanh => "tanh",
            Erf => "erf",
            Sigmoid => "sigmoid",
            Relu => "relu",
            Reciprocal => "reciprocal",
            Floor => "floor",
            Ceil => "ceil",
            Not => "not",
            LeakyRelu { .. } => "leaky_relu",
            HardSigmoid { .. } => "hard_sigmoid",
            HardSwish => "hard_swish",
            Silu => "silu",
            Gelu { .. } => "gelu",
        }
    }

    fn attrs(&self) -> Attrs {
        match self.kind {
            UnaryKind::LeakyRelu { alpha } => Attrs::default().with("alpha", Attr::Float(alpha)),
            UnaryKind::HardSigmoid { alpha, beta } => Attrs::default()
                .with("alpha", Attr::Float(alpha))
                .with("beta", Attr::Float(beta)),
            UnaryKind::Gelu { tanh: true } => {
                Attrs::default().with("approximate", Attr::Str("tanh".into()))
            }
            _ => Attrs::default(),
        }
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 1, 1)?;
        let x = inputs[0];
        let ok = match self.kind {
            UnaryKind::Not => x.dtype == DType::Bool,
            UnaryKind::Neg | UnaryKind::Abs | UnaryKind::Relu => x.dtype.is_numeric(),
            _ => x.dtype.is_float(),
        };
        if !ok {
            return Err(format!("{} does not accept {x}", self.mnemonic()));
        }
        Ok(vec![out(x.dtype, x.shape.clone())?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0];
        let r = match x.elems() {
            Elems::F(v) => Elems::F(v.into_iter().map(|e| self.apply_f(e)).collect()),
            Elems::I(v) => Elems::I(v.into_iter().map(|e| self.apply_i(e)).collect()),
        };
        Ok(vec![Tensor::from_elems(x.dtype(), x.shape().to_vec(), &r)])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType]) -> u64 {
        inputs[0].numel() as u64
    }
}
