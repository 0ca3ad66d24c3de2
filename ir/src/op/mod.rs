//! The op table. Every op is defined once, in the module of its family: its
//! attributes, verifier and type inference (`infer`), reference semantics (`eval`)
//! and cost (`flops`). Later issues add each op's sharding rule in the same place.

mod attention;
mod binary;
mod cast;
mod conv;
mod fused;
mod gather;
mod layout;
mod matmul;
mod norm;
mod pool;
mod reduce;
mod resize;
mod unary;

pub use attention::Attention;
pub use binary::{Binary, BinaryKind, Where};
pub use cast::Cast;
pub use conv::{Conv, ConvTranspose};
pub use fused::Fused;
pub use gather::Gather;
pub use layout::{Concat, Expand, Pad, PadMode, Reshape, Slice, Tile, Transpose};
pub use matmul::MatMul;
pub use norm::{BatchNorm, LayerNorm, RmsNorm, Softmax};
pub use pool::{Pool, PoolKind};
pub use reduce::{Reduce, ReduceKind};
pub use resize::{CoordMode, NearestMode, Resize, ResizeMode};
pub use unary::{Unary, UnaryKind};

use crate::{Attrs, Tensor, TensorType};

/// What every op defines.
pub trait OpDef {
    /// The op's name in the text form (`add`, `conv`, ...).
    fn mnemonic(&self) -> &'static str;
    /// Attributes for the text form; [`Op::parse`] reads them back.
    fn attrs(&self) -> Attrs;
    /// Checks the operand types and infers the result types. The message of an
    /// error says what is wrong with the operands; callers add the node's name.
    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String>;
    /// Reference semantics: computes the results from operands whose types passed
    /// `infer`. Runtime faults (an index out of range) are errors, never panics.
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String>;
    /// Floating-point (or integer) operations the op performs, for estimates.
    fn flops(&self, inputs: &[&TensorType], outputs: &[TensorType]) -> u64;
}

macro_rules! op_table {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// An op of the tensor IR with its attributes.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op {
            $($variant($ty),)*
        }

        impl Op {
            /// The op's definition.
            pub fn def(&self) -> &dyn OpDef {
                match self {
                    $(Op::$variant(o) => o,)*
                }
            }

            /// Builds an op from its text-form mnemonic and attributes.
            pub fn parse(mnemonic: &str, attrs: &Attrs) -> Result<Op, String> {
                $(
                    if <$ty>::MNEMONICS.contains(&mnemonic) {
                        return <$ty>::parse(mnemonic, attrs).map(Op::$variant);
                    }
                )*
                Err(format!("unknown op '{mnemonic}'"))
            }

            /// Every mnemonic the text form knows.
            pub fn mnemonics() -> Vec<&'static str> {
                let mut all = Vec::new();
                $(all.extend_from_slice(<$ty>::MNEMONICS);)*
                all
            }
        }

        $(impl From<$ty> for Op {
            fn from(o: $ty) -> Op {
                Op::$variant(o)
            }
        })*
    };
}

op_table! {
    Unary(Unary),
    Binary(Binary),
    Where(Where),
    Cast(Cast),
    MatMul(MatMul),
    Conv(Conv),
    ConvTranspose(ConvTranspose),
    Pool(Pool),
    BatchNorm(BatchNorm),
    LayerNorm(LayerNorm),
    RmsNorm(RmsNorm),
    Softmax(Softmax),
    Attention(Attention),
    Reduce(Reduce),
    Reshape(Reshape),
    Transpose(Transpose),
    Concat(Concat),
    Slice(Slice),
    Expand(Expand),
    Tile(Tile),
    Pad(Pad),
    Gather(Gather),
    Resize(Resize),
    Fused(Fused),
}

impl Op {
    /// Shorthand for `self.def().mnemonic()`.
    pub fn mnemonic(&self) -> &'static str {
        self.def().mnemonic()
    }
}

/// How an op can take part in a fused kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusionClass {
    /// Each result element depends on the operand elements at the same
    /// (broadcast) index: unary, binary, where, cast, inference batch norm.
    Elementwise,
    /// Each result element is one operand element (or a fill) at a computed
    /// index: reshape, transpose, slice, expand, concat, pad, tile, gather, resize.
    Injective,
    /// Everything else: matmul, conv, pooling, reductions, normalizations,
    /// attention. A fused kernel has at most one anchor.
    Anchor,
}

impl Op {
    /// The op's fusion class.
    pub fn fusion_class(&self) -> FusionClass {
        match self {
            Op::Unary(_) | Op::Binary(_) | Op::Where(_) | Op::Cast(_) | Op::BatchNorm(_) => {
                FusionClass::Elementwise
            }
            Op::Reshape(_)
            | Op::Transpose(_)
            | Op::Slice(_)
            | Op::Expand(_)
            | Op::Concat(_)
            | Op::Pad(_)
            | Op::Tile(_)
            | Op::Gather(_)
            | Op::Resize(_) => FusionClass::Injective,
            _ => FusionClass::Anchor,
        }
    }
}

/// True for ops that fuse freely (elementwise or injective).
pub fn is_injective(op: &Op) -> bool {
    op.fusion_class() != FusionClass::Anchor
}

/// The extent of a window of `k` taps `d` apart, and `size + pad_begin + pad_end`,
/// refusing empty windows and sizes that overflow.
pub(crate) fn window(
    k: usize,
    d: usize,
    size: usize,
    pads: (usize, usize),
) -> Result<(usize, usize), String> {
    if k == 0 {
        return Err("a window (kernel) dim is 0".into());
    }
    let eff = (k - 1).checked_mul(d).and_then(|e| e.checked_add(1));
    let padded = size.checked_add(pads.0).and_then(|p| p.checked_add(pads.1));
    match (eff, padded) {
        (Some(e), Some(p)) => Ok((e, p)),
        _ => Err(format!(
            "window {k} with dilation {d} over size {size} with pads {pads:?} overflows"
        )),
    }
}

/// Checks the operand count.
pub(crate) fn arity(inputs: &[&TensorType], min: usize, max: usize) -> Result<(), String> {
    if inputs.len() < min || inputs.len() > max {
        let want = if min == max {
            format!("{min}")
        } else if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(format!("expects {want} operands, got {}", inputs.len()));
    }
    Ok(())
}

/// Requires a float operand.
pub(crate) fn want_float(t: &TensorType, what: &str) -> Result<(), String> {
    if !t.dtype.is_float() {
        return Err(format!("{what} must be a float tensor, got {t}"));
    }
    Ok(())
}

/// Requires two operands of one dtype.
pub(crate) fn same_dtype(a: &TensorType, b: &TensorType, what: &str) -> Result<(), String> {
    if a.dtype != b.dtype {
        return Err(format!("{what}: operand dtypes differ ({a} vs {b})"));
    }
    Ok(())
}

/// A result type with the given dtype and shape (checked against the size limit).
pub(crate) fn out(dtype: crate::DType, shape: Vec<usize>) -> Result<TensorType, String> {
    TensorType::new(dtype, shape)
}
