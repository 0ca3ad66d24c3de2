//! Op attributes as they appear in the text form: `{axis = 1, perm = [0, 2, 1]}`.
//! Each op turns its fields into [`Attrs`] for printing and reads them back when
//! parsing; the typed accessors produce the error messages.

use crate::DType;
use std::fmt;

/// One attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f64),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Str(String),
    Type(DType),
}

/// An ordered attribute list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attrs(pub Vec<(String, Attr)>);

impl Attrs {
    /// Appends an attribute (builder style).
    pub fn with(mut self, name: &str, value: Attr) -> Self {
        self.0.push((name.to_string(), value));
        self
    }

    fn get(&self, name: &str) -> Result<&Attr, String> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
            .ok_or_else(|| format!("missing attribute '{name}'"))
    }

    /// True when the attribute is present.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// An integer attribute.
    pub fn int(&self, name: &str) -> Result<i64, String> {
        match self.get(name)? {
            Attr::Int(v) => Ok(*v),
            other => Err(format!(
                "attribute '{name}' must be an integer, got {other}"
            )),
        }
    }

    /// A non-negative integer attribute, as usize.
    pub fn usize(&self, name: &str) -> Result<usize, String> {
        let v = self.int(name)?;
        usize::try_from(v).map_err(|_| format!("attribute '{name}' must be >= 0, got {v}"))
    }

    /// A boolean attribute written as 0 or 1.
    pub fn flag(&self, name: &str) -> Result<bool, String> {
        match self.int(name)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("attribute '{name}' must be 0 or 1, got {v}")),
        }
    }

    /// A float attribute (integers are accepted).
    pub fn float(&self, name: &str) -> Result<f64, String> {
        match self.get(name)? {
            Attr::Float(v) => Ok(*v),
            Attr::Int(v) => Ok(*v as f64),
            other => Err(format!("attribute '{name}' must be a float, got {other}")),
        }
    }

    /// An integer list attribute.
    pub fn ints(&self, name: &str) -> Result<Vec<i64>, String> {
        match self.get(name)? {
            Attr::Ints(v) => Ok(v.clone()),
            Attr::Floats(v) if v.is_empty() => Ok(vec![]),
            other => Err(format!(
                "attribute '{name}' must be a list of integers, got {other}"
            )),
        }
    }

    /// A list of non-negative integers, as usize.
    pub fn usizes(&self, name: &str) -> Result<Vec<usize>, String> {
        self.ints(name)?
            .into_iter()
            .map(|v| {
                usize::try_from(v).map_err(|_| format!("attribute '{name}' must be >= 0, got {v}"))
            })
            .collect()
    }

    /// A float list attribute (integer lists are accepted).
    pub fn floats(&self, name: &str) -> Result<Vec<f64>, String> {
        match self.get(name)? {
            Attr::Floats(v) => Ok(v.clone()),
            Attr::Ints(v) => Ok(v.iter().map(|&x| x as f64).collect()),
            other => Err(format!(
                "attribute '{name}' must be a list of floats, got {other}"
            )),
        }
    }

    /// A string attribute.
    pub fn str(&self, name: &str) -> Result<&str, String> {
        match self.get(name)? {
            Attr::Str(s) => Ok(s),
            other => Err(format!("attribute '{name}' must be a string, got {other}")),
        }
    }

    /// A dtype attribute.
    pub fn dtype(&self, name: &str) -> Result<DType, String> {
        match self.get(name)? {
            Attr::Type(t) => Ok(*t),
            other => Err(format!("attribute '{name}' must be a dtype, got {other}")),
        }
    }
}

/// Formats a float so that parsing it gives the same `f64` back (`1.0`, `1e-5`, `inf`).
pub fn fmt_float(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v:?}")
    }
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attr::Int(v) => write!(f, "{v}"),
            Attr::Float(v) => f.write_str(&fmt_float(*v)),
            Attr::Ints(v) => {
                let s: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                write!(f, "[{}]", s.join(", "))
            }
            Attr::Floats(v) => {
                let s: Vec<String> = v.iter().map(|x| fmt_float(*x)).collect();
                write!(f, "[{}]", s.join(", "))
            }
            Attr::Str(s) => write!(f, "{s:?}"),
            Attr::Type(t) => write!(f, "{t}"),
        }
    }
}

impl fmt::Display for Attrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (n, a)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n} = {a}")?;
        }
        f.write_str("}")
    }
}
