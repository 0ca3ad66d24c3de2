//! Reading and decoding model files, with the size check that refuses a file
//! before decoding it.

use crate::proto::ModelProto;
use crate::ImportError;
use bytes::Bytes;
use prost::Message;
use std::path::Path;

/// Largest model file accepted (protobuf's own 2 GiB limit).
const MAX_MODEL_BYTES: u64 = 2 << 30;

/// Reads and decodes an ONNX model file.
pub fn read_model(path: &Path) -> Result<ModelProto, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(ImportError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("not a regular file"),
        });
    }
    if meta.len() > MAX_MODEL_BYTES {
        return Err(ImportError::FileTooLarge {
            path: path.to_path_buf(),
            bytes: meta.len(),
        });
    }
    // Decoding from the file's own buffer lets tensor data reference it: weights
    // are never copied after this read.
    let data = std::fs::read(path).map_err(io)?;
    decode(Bytes::from(data), path)
}

/// Decodes model bytes; `path` is only used in messages.
pub fn decode_model(data: &[u8], path: &Path) -> Result<ModelProto, ImportError> {
    decode(Bytes::copy_from_slice(data), path)
}

fn decode(data: Bytes, path: &Path) -> Result<ModelProto, ImportError> {
    let m = ModelProto::decode(data).map_err(|e| ImportError::Decode {
        path: path.to_path_buf(),
        msg: format!("{e} (is the file truncated or not an ONNX model?)"),
    })?;
    if m.graph.is_none() {
        return Err(ImportError::Decode {
            path: path.to_path_buf(),
            msg: "the model has no graph".into(),
        });
    }
    Ok(m)
}
