//! Tensor types: dtype, static shape and the optional sharding slot, with the size
//! limits that keep absurd shapes from reaching an allocation.

use crate::{DType, Sharding};
use std::fmt;

/// Largest tensor the IR accepts, in bytes (16 GiB). Anything larger is refused at
/// type construction, before memory is touched.
pub const MAX_TENSOR_BYTES: u64 = 16 << 30;

/// The type of one SSA value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub sharding: Option<Sharding>,
}

impl TensorType {
    /// An unsharded tensor type. Fails when the tensor would exceed [`MAX_TENSOR_BYTES`].
    pub fn new(dtype: DType, shape: Vec<usize>) -> Result<Self, String> {
        checked_bytes(dtype, &shape)?;
        Ok(TensorType {
            dtype,
            shape,
            sharding: None,
        })
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of bytes.
    pub fn bytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }

    /// Rank (number of dimensions).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
}

/// Bytes of a tensor of this dtype and shape, or an error naming the shape when it
/// overflows or exceeds [`MAX_TENSOR_BYTES`].
pub fn checked_bytes(dtype: DType, shape: &[usize]) -> Result<u64, String> {
    let mut n: u64 = dtype.size() as u64;
    for &d in shape {
        n = n
            .checked_mul(d as u64)
            .filter(|&n| n <= MAX_TENSOR_BYTES)
            .ok_or_else(|| {
                format!(
                    "tensor {dtype}{} is larger than the {} GiB limit",
                    ShapeDisplay(shape),
                    MAX_TENSOR_BYTES >> 30
                )
            })?;
    }
    Ok(n)
}

/// Formats a shape as `[2, 3]`.
pub struct ShapeDisplay<'a>(pub &'a [usize]);

impl fmt::Display for ShapeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, ShapeDisplay(&self.shape))?;
        if let Some(s) = &self.sharding {
            write!(f, "{s}")?;
        }
        Ok(())
    }
}
