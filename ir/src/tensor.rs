//! Tensor values: a type plus little-endian element bytes held in shared, reference
//! counted storage (weights are never copied per pass), and the conversions between
//! bytes and the interpreter's computing forms (`f64` for floats, `i64` for integers).

use crate::ty::checked_bytes;
use crate::{DType, TensorType};
use bytes::Bytes;
use half::{bf16, f16};

/// A dense tensor value.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: Bytes,
}

/// Element values in the interpreter's computing form.
#[derive(Clone, Debug, PartialEq)]
pub enum Elems {
    /// Floating-point elements, widened to `f64`.
    F(Vec<f64>),
    /// Integer and bool elements, widened to `i64`.
    I(Vec<i64>),
}

impl Elems {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Elems::F(v) => v.len(),
            Elems::I(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Tensor {
    /// A tensor over existing bytes; fails when the byte count does not match.
    pub fn from_bytes(dtype: DType, shape: Vec<usize>, data: Bytes) -> Result<Self, String> {
        let want = checked_bytes(dtype, &shape)?;
        if data.len() as u64 != want {
            return Err(format!(
                "{dtype}{} needs {want} bytes of data, got {}",
                crate::ty::ShapeDisplay(&shape),
                data.len()
            ));
        }
        Ok(Tensor { dtype, shape, data })
    }

    /// Rounds `f64` values to `dtype` (floats round to nearest, integers truncate
    /// toward zero and saturate, bool is `!= 0`).
    pub fn from_f64(dtype: DType, shape: Vec<usize>, vals: &[f64]) -> Self {
        debug_assert_eq!(vals.len(), shape.iter().product::<usize>());
        let mut out = Vec::with_capacity(vals.len() * dtype.size());
        for &v in vals {
            match dtype {
                DType::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
                DType::F64 => out.extend_from_slice(&v.to_le_bytes()),
                DType::F16 => out.extend_from_slice(&f16::from_f64(v).to_le_bytes()),
                DType::BF16 => out.extend_from_slice(&bf16::from_f64(v).to_le_bytes()),
                DType::I8 => out.push(v as i8 as u8),
                DType::U8 => out.push(v as u8),
                DType::I32 => out.extend_from_slice(&(v as i32).to_le_bytes()),
                DType::I64 => out.extend_from_slice(&(v as i64).to_le_bytes()),
                DType::Bool => out.push((v != 0.0) as u8),
            }
        }
        Tensor {
            dtype,
            shape,
            data: out.into(),
        }
    }

    /// Stores `i64` values as `dtype` (integers wrap, floats round, bool is `!= 0`).
    pub fn from_i64(dtype: DType, shape: Vec<usize>, vals: &[i64]) -> Self {
        debug_assert_eq!(vals.len(), shape.iter().product::<usize>());
        if dtype.is_float() {
            let f: Vec<f64> = vals.iter().map(|&v| v as f64).collect();
            return Tensor::from_f64(dtype, shape, &f);
        }
        let mut out = Vec::with_capacity(vals.len() * dtype.size());
        for &v in vals {
            match dtype {
                DType::I8 | DType::U8 => out.push(v as u8),
                DType::I32 => out.extend_from_slice(&(v as i32).to_le_bytes()),
                DType::I64 => out.extend_from_slice(&v.to_le_bytes()),
                DType::Bool => out.push((v != 0) as u8),
                _ => unreachable!("float dtypes handled above"),
            }
        }
        Tensor {
            dtype,
            shape,
            data: out.into(),
        }
    }

    /// Builds a tensor from elements in computing form.
    pub fn from_elems(dtype: DType, shape: Vec<usize>, elems: &Elems) -> Self {
        match elems {
            Elems::F(v) => Tensor::from_f64(dtype, shape, v),
            Elems::I(v) => Tensor::from_i64(dtype, shape, v),
        }
    }

    /// A scalar (rank 0) tensor.
    pub fn scalar_f64(dtype: DType, v: f64) -> Self {
        Tensor::from_f64(dtype, vec![], &[v])
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The raw little-endian bytes (shared, cheap to clone).
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The tensor's type (unsharded).
    pub fn ty(&self) -> TensorType {
        TensorType {
            dtype: self.dtype,
            shape: self.shape.clone(),
            sharding: None,
        }
    }

    /// The same data with another shape of equal element count.
    pub fn reshaped(&self, shape: Vec<usize>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), self.numel());
        Tensor {
            dtype: self.dtype,
            shape,
            data: self.data.clone(),
        }
    }

    /// Elements in computing form.
    pub fn elems(&self) -> Elems {
        if self.dtype.is_float() {
            Elems::F(self.to_f64_vec())
        } else {
            Elems::I(self.to_i64_vec())
        }
    }

    /// Every element as `f64` (integers convert exactly up to 2^53).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let d = &self.data[..];
        match self.dtype {
            DType::F32 => chunks::<4>(d)
                .map(|b| f32::from_le_bytes(b) as f64)
                .collect(),
            DType::F64 => chunks::<8>(d).map(f64::from_le_bytes).collect(),
            DType::F16 => chunks::<2>(d)
                .map(|b| f16::from_le_bytes(b).to_f64())
                .collect(),
            DType::BF16 => chunks::<2>(d)
                .map(|b| bf16::from_le_bytes(b).to_f64())
                .collect(),
            _ => self.to_i64_vec().into_iter().map(|v| v as f64).collect(),
        }
    }

    /// Every element as `i64` (floats truncate toward zero and saturate).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        let d = &self.data[..];
        match self.dtype {
            DType::I8 => d.iter().map(|&b| b as i8 as i64).collect(),
            DType::U8 => d.iter().map(|&b| b as i64).collect(),
            DType::Bool => d.iter().map(|&b| (b != 0) as i64).collect(),
            DType::I32 => chunks::<4>(d)
                .map(|b| i32::from_le_bytes(b) as i64)
                .collect(),
            DType::I64 => chunks::<8>(d).map(i64::from_le_bytes).collect(),
            _ => self.to_f64_vec().into_iter().map(|v| v as i64).collect(),
        }
    }
}

fn chunks<const N: usize>(d: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    d.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    })
}

impl Tensor {
    /// A tensor of `shape` whose elements are copied from this one: output element
    /// `i` is element `src[i]` of `self`, or `fill` (one element's bytes) when `None`.
    /// The data movement behind transposes, slices, broadcasts, gathers and pads.
    pub fn select(
        &self,
        shape: Vec<usize>,
        src: impl Iterator<Item = Option<usize>>,
        fill: &[u8],
    ) -> Tensor {
        let es = self.dtype.size();
        let n: usize = shape.iter().product();
        let mut out = Vec::with_capacity(n * es);
        for s in src {
            match s {
                Some(i) => out.extend_from_slice(&self.data[i * es..(i + 1) * es]),
                None => out.extend_from_slice(fill),
            }
        }
        debug_assert_eq!(out.len(), n * es);
        Tensor {
            dtype: self.dtype,
            shape,
            data: out.into(),
        }
    }
}
