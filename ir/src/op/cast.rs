//! `cast`: converts elements to another dtype.

use super::{arity, out, OpDef};
use crate::{Attr, Attrs, DType, Tensor, TensorType};

/// Converts to `to`. Float to integer truncates toward zero and saturates (NaN
/// becomes 0); integer to narrower integer wraps; anything to bool is `!= 0`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cast {
    pub to: DType,
}

impl Cast {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["cast"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(Cast { to: a.dtype("to")? })
    }
}

impl OpDef for Cast {
    fn mnemonic(&self) -> &'static str {
        "cast"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default().with("to", Attr::Type(self.to))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 1, 1)?;
        Ok(vec![out(self.to, inputs[0].shape.clone())?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs[0];
        let shape = x.shape().to_vec();
        Ok(vec![if x.dtype().is_float() {
            Tensor::from_f64(self.to, shape, &x.to_f64_vec())
        } else {
            Tensor::from_i64(self.to, shape, &x.to_i64_vec())
        }])
    }

    fn flops(&self, _: &[&TensorType], _: &[TensorType]) -> u64 {
        0
    }
}
