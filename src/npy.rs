//! Reading and writing NumPy `.npy` files (format versions 1 to 3, little-endian,
//! C order). bf16 has no NumPy dtype: it is written as f32 (exact) and read from
//! f32 files.

use kiln_ir::{DType, Tensor};
use std::path::Path;

/// Largest header accepted.
const MAX_HEADER: usize = 1 << 16;

fn descr(d: DType) -> &'static str {
    match d {
        DType::F32 | DType::BF16 => "<f4",
        DType::F16 => "<f2",
        DType::F64 => "<f8",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::Bool => "|b1",
    }
}

fn dtype_of_descr(s: &str) -> Option<DType> {
    Some(match s {
        "<f4" => DType::F32,
        "<f2" => DType::F16,
        "<f8" => DType::F64,
        "|i1" | "<i1" => DType::I8,
        "|u1" | "<u1" => DType::U8,
        "<i4" => DType::I32,
        "<i8" => DType::I64,
        "|b1" => DType::Bool,
        _ => return None,
    })
}

/// Encodes a tensor as `.npy` bytes.
pub fn encode(t: &Tensor) -> Vec<u8> {
    let t = if t.dtype() == DType::BF16 {
        Tensor::from_f64(DType::F32, t.shape().to_vec(), &t.to_f64_vec())
    } else {
        t.clone()
    };
    let shape = match t.shape() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        descr(t.dtype())
    );
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(t.bytes());
    out
}

/// Decodes `.npy` bytes; `want` converts bf16 requests from f32 files.
pub fn decode(data: &[u8], want: Option<DType>) -> Result<Tensor, String> {
    if data.len() < 10 || &data[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let (hlen, start) = match data[6] {
        1 => (u16::from_le_bytes([data[8], data[9]]) as usize, 10),
        2 | 3 if data.len() >= 12 => (
            u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    if hlen > MAX_HEADER || start + hlen > data.len() {
        return Err("truncated .npy header".into());
    }
    let header =
        std::str::from_utf8(&data[start..start + hlen]).map_err(|_| "header is not text")?;
    let field = |key: &str| -> Result<&str, String> {
        let k = format!("'{key}':");
        let i = header.find(&k).ok_or(format!("header lacks '{key}'"))? + k.len();
        Ok(header[i..].trim_start())
    };
    let d = field("descr")?;
    let d = d
        .strip_prefix('\'')
        .and_then(|s| s.split('\'').next())
        .ok_or("bad descr")?;
    let mut dtype = dtype_of_descr(d).ok_or_else(|| {
        format!("dtype '{d}' is not supported (use little-endian f4, f2, f8, i1, u1, i4, i8 or b1)")
    })?;
    if field("fortran_order")?.starts_with("True") {
        return Err(
            "Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into(),
        );
    }
    let s = field("shape")?;
    let s = s
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("bad shape")?;
    let shape = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse::<usize>()
                .map_err(|_| format!("bad dimension '{x}'"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let body = &data[start + hlen..];
    let need = kiln_ir::checked_bytes(dtype, &shape)? as usize;
    if body.len() != need {
        return Err(format!(
            "data is {} bytes, shape {shape:?} of {dtype} needs {need}",
            body.len()
        ));
    }
    let mut t = Tensor::from_bytes(dtype, shape, bytes::Bytes::copy_from_slice(body))?;
    if want == Some(DType::BF16) && dtype == DType::F32 {
        t = Tensor::from_f64(DType::BF16, t.shape().to_vec(), &t.to_f64_vec());
        dtype = DType::BF16;
    }
    debug_assert_eq!(t.dtype(), dtype);
    Ok(t)
}

/// Reads a `.npy` file.
pub fn read(path: &Path, want: Option<DType>) -> Result<Tensor, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    decode(&data, want).map_err(|m| format!("'{}': {m}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_dtype_and_rank() {
        for d in DType::ALL {
            for shape in [vec![], vec![3], vec![2, 0, 4], vec![1, 2, 3]] {
                let n: usize = shape.iter().product();
                let vals: Vec<f64> = (0..n).map(|i| i as f64 * 0.5 - 1.0).collect();
                let t = Tensor::from_f64(d, shape.clone(), &vals);
                let back = decode(&encode(&t), Some(d)).unwrap();
                assert_eq!(back, t, "{d} {shape:?}");
            }
        }
    }

    #[test]
    fn rejects_bad_files_with_reasons() {
        assert!(decode(b"hello", None).unwrap_err().contains("magic"));
        let t = Tensor::from_f64(DType::F32, vec![4], &[1.0; 4]);
        let mut b = encode(&t);
        b.truncate(b.len() - 1);
        assert!(decode(&b, None).unwrap_err().contains("needs 16"));
        let mut c = encode(&t);
        let at = c.windows(3).position(|w| w == b"<f4").unwrap();
        c[at] = b'>';
        assert!(decode(&c, None).unwrap_err().contains("not supported"));
    }
}
