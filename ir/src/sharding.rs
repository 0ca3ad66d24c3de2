//! The sharding slot of tensor types: per-dimension named mesh axes plus the axes a
//! value is still a pending (partial) sum over. Reserved now so that later sharding
//! work adds rules without changing every pass; nothing produces it yet except the
//! text form.

use std::fmt;

/// How a tensor is laid out over a device mesh.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sharding {
    /// For each tensor dimension, the mesh axes it is split over (major first).
    pub dims: Vec<Vec<String>>,
    /// Mesh axes over which the value is a partial sum still to be reduced.
    pub partial: Vec<String>,
}

impl fmt::Display for Sharding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("@[")?;
        for (i, axes) in self.dims.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{{{}}}", axes.join(", "))?;
        }
        f.write_str("]")?;
        if !self.partial.is_empty() {
            write!(f, " partial{{{}}}", self.partial.join(", "))?;
        }
        Ok(())
    }
}
