//! Typed access to a node's ONNX attributes, with defaults and errors that name
//! the node.

use crate::proto::{attribute_proto::AttributeType, AttributeProto, NodeProto};
use crate::ImportError;

/// A node being converted: its proto, display name and the opset in force.
pub struct NodeCx<'a> {
    pub node: &'a NodeProto,
    pub name: String,
    pub op: &'a str,
    pub opset: i64,
}

impl<'a> NodeCx<'a> {
    /// An error about this node.
    pub fn err(&self, msg: impl Into<String>) -> ImportError {
        ImportError::Node {
            node: self.name.clone(),
            op: self.op.to_string(),
            msg: msg.into(),
        }
    }

    fn attr(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name() == name)
    }

    fn typed(
        &self,
        name: &str,
        want: AttributeType,
    ) -> Result<Option<&'a AttributeProto>, ImportError> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) if a.r#type() == want || a.r#type() == AttributeType::Undefined => Ok(Some(a)),
            Some(a) => Err(self.err(format!(
                "attribute '{name}' must be {}, got {}",
                want.as_str_name(),
                a.r#type().as_str_name()
            ))),
        }
    }

    /// An integer attribute, if present.
    pub fn int_opt(&self, name: &str) -> Result<Option<i64>, ImportError> {
        Ok(self.typed(name, AttributeType::Int)?.map(|a| a.i()))
    }

    /// An integer attribute with a default.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, ImportError> {
        Ok(self.int_opt(name)?.unwrap_or(default))
    }

    /// A float attribute with a default, widened through its shortest decimal
    /// form so that `1e-5` stays `1e-5` (not `9.99999974e-6`) in the IR.
    pub fn float(&self, name: &str, default: f32) -> Result<f64, ImportError> {
        let v = self
            .typed(name, AttributeType::Float)?
            .map(|a| a.f())
            .unwrap_or(default);
        Ok(v.to_string().parse().unwrap_or(v as f64))
    }

    /// An integer list attribute, if present.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, ImportError> {
        Ok(self
            .typed(name, AttributeType::Ints)?
            .map(|a| a.ints.clone()))
    }

    /// A float list attribute, if present.
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, ImportError> {
        Ok(self
            .typed(name, AttributeType::Floats)?
            .map(|a| a.floats.clone()))
    }

    /// A string attribute with a default.
    pub fn string(&self, name: &str, default: &str) -> Result<String, ImportError> {
        Ok(match self.typed(name, AttributeType::String)? {
            Some(a) => String::from_utf8_lossy(a.s()).into_owned(),
            None => default.to_string(),
        })
    }

    /// A tensor attribute, if present.
    pub fn tensor(&self, name: &str) -> Result<Option<&'a crate::proto::TensorProto>, ImportError> {
        Ok(self
            .typed(name, AttributeType::Tensor)?
            .and_then(|a| a.t.as_ref()))
    }

    /// True when the attribute is present.
    pub fn has(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }
}
