//! TensorProto ↔ IR tensors: dtype mapping, raw and typed data fields, and external
//! data files, which must stay inside the model's folder.

use crate::proto::{tensor_proto, TensorProto};
use crate::ImportError;
use bytes::Bytes;
use kiln_ir::{checked_bytes, DType, Tensor};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

/// The IR dtype of an ONNX element type, or an error naming the type.
pub fn dtype_of(elem_type: i32) -> Result<DType, String> {
    use tensor_proto::DataType as D;
    let d = D::try_from(elem_type).map_err(|_| format!("unknown element type {elem_type}"))?;
    Ok(match d {
        D::Float => DType::F32,
        D::Float16 => DType::F16,
        D::Bfloat16 => DType::BF16,
        D::Double => DType::F64,
        D::Int8 => DType::I8,
        D::Uint8 => DType::U8,
        D::Int32 => DType::I32,
        D::Int64 => DType::I64,
        D::Bool => DType::Bool,
        other => {
            return Err(format!(
                "element type {} is not supported (kiln supports f32, f16, bf16, f64, i8, u8, i32, i64, bool)",
                other.as_str_name()
            ))
        }
    })
}

/// The ONNX element type of an IR dtype.
pub fn elem_type_of(d: DType) -> i32 {
    use tensor_proto::DataType as D;
    (match d {
        DType::F32 => D::Float,
        DType::F16 => D::Float16,
        DType::BF16 => D::Bfloat16,
        DType::F64 => D::Double,
        DType::I8 => D::Int8,
        DType::U8 => D::Uint8,
        DType::I32 => D::Int32,
        DType::I64 => D::Int64,
        DType::Bool => D::Bool,
    }) as i32
}

/// Converts a TensorProto; `model_dir` is where external data files may live.
pub fn tensor_from_proto(t: &TensorProto, model_dir: Option<&Path>) -> Result<Tensor, ImportError> {
    let err = |msg: String| ImportError::Tensor {
        tensor: t.name().to_string(),
        msg,
    };
    let dtype = dtype_of(t.data_type()).map_err(err)?;
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| err(format!("negative dimension {d}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = checked_bytes(dtype, &shape).map_err(err)? as usize;
    let n: usize = shape.iter().product();
    let data: Bytes = if t.data_location() == tensor_proto::DataLocation::External {
        let dir = model_dir.ok_or_else(|| err("external data needs the model's folder".into()))?;
        read_external(t, dir, bytes).map_err(err)?
    } else if !t.raw_data().is_empty() || n == 0 {
        t.raw_data.clone().unwrap_or_default()
    } else {
        typed_data(t, dtype, n).map_err(err)?
    };
    Tensor::from_bytes(dtype, shape, data).map_err(err)
}

fn typed_data(t: &TensorProto, dtype: DType, n: usize) -> Result<Bytes, String> {
    let have = match dtype {
        DType::F32 => t.float_data.len(),
        DType::F64 => t.double_data.len(),
        DType::I64 => t.int64_data.len(),
        _ => t.int32_data.len(),
    };
    if have != n {
        return Err(format!("holds {have} values, its shape needs {n}"));
    }
    let mut out = Vec::with_capacity(n * dtype.size());
    match dtype {
        DType::F32 => t
            .float_data
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F64 => t
            .double_data
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::I64 => t
            .int64_data
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::I32 => t
            .int32_data
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        // f16 / bf16 store their bit patterns in int32_data.
        DType::F16 | DType::BF16 => t
            .int32_data
            .iter()
            .for_each(|v| out.extend_from_slice(&(*v as u16).to_le_bytes())),
        DType::I8 | DType::U8 => t.int32_data.iter().for_each(|v| out.push(*v as u8)),
        DType::Bool => t.int32_data.iter().for_each(|v| out.push((*v != 0) as u8)),
    }
    Ok(out.into())
}

/// Reads an external data range. The location must be a relative path inside the
/// model's folder (no `..`, no absolute paths, no links leading out of it).
fn read_external(t: &TensorProto, dir: &Path, want: usize) -> Result<Bytes, String> {
    let field = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key() == k)
            .map(|e| e.value())
    };
    let loc = field("location").ok_or("external data without a 'location'")?;
    let rel = Path::new(loc);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "external data location '{loc}' leaves the model's folder; only relative paths inside it are allowed"
        ));
    }
    let num = |k: &str| -> Result<Option<u64>, String> {
        field(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("external data {k} '{v}' is not a number"))
            })
            .transpose()
    };
    let offset = num("offset")?.unwrap_or(0);
    let length = num("length")?;
    if let Some(l) = length {
        if l != want as u64 {
            return Err(format!(
                "external data length {l} does not match the {want} bytes its shape needs"
            ));
        }
    }
    let path = dir.join(rel);
    let real_dir = dir
        .canonicalize()
        .map_err(|e| format!("model folder: {e}"))?;
    let real = path
        .canonicalize()
        .map_err(|e| format!("external data file '{}': {e}", path.display()))?;
    if !real.starts_with(&real_dir) {
        return Err(format!(
            "external data file '{loc}' resolves outside the model's folder"
        ));
    }
    let mut f = std::fs::File::open(&real)
        .map_err(|e| format!("external data file '{}': {e}", path.display()))?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    if offset.checked_add(want as u64).is_none_or(|end| end > size) {
        return Err(format!(
            "external data file '{}' is {size} bytes, too short for {want} bytes at offset {offset}",
            path.display()
        ));
    }
    f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; want];
    f.read_exact(&mut buf)
        .map_err(|e| format!("reading '{}': {e}", path.display()))?;
    Ok(buf.into())
}

/// Builds a TensorProto holding `t` as raw data.
pub fn tensor_to_proto(name: &str, t: &Tensor) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        data_type: Some(elem_type_of(t.dtype())),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        raw_data: Some(t.bytes().clone()),
        ..Default::default()
    }
}
