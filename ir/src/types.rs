//! Tensor types: an element dtype plus a shape of [`Dim`]s, spelled `f32[?batch, 8]`.

use crate::dim::Dim;
use crate::dtype::DType;
use std::collections::HashMap;
use std::fmt;

/// The static type of an SSA value. Rank is always known; individual dims may be symbolic.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<Dim>,
}

/// Largest rank the IR accepts; real models stay far below it and it bounds hostile input.
pub const MAX_RANK: usize = 16;

impl TensorType {
    pub fn new(dtype: DType, shape: Vec<Dim>) -> TensorType {
        TensorType { dtype, shape }
    }

    /// A type with all-static dims.
    pub fn fixed(dtype: DType, dims: &[i64]) -> TensorType {
        TensorType { dtype, shape: dims.iter().map(|&d| Dim::fixed(d)).collect() }
    }

    /// A rank-0 tensor.
    pub fn scalar(dtype: DType) -> TensorType {
        TensorType { dtype, shape: Vec::new() }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The static dims, if every dim is static.
    pub fn fixed_shape(&self) -> Option<Vec<i64>> {
        self.shape.iter().map(Dim::as_fixed).collect()
    }

    /// The element count as a dim expression.
    pub fn numel(&self) -> Dim {
        self.shape.iter().fold(Dim::fixed(1), |acc, d| acc.mul(d))
    }

    /// Concrete shape under symbol bindings.
    pub fn eval_shape(&self, bindings: &HashMap<String, i64>) -> Option<Vec<i64>> {
        self.shape.iter().map(|d| d.eval(bindings)).collect()
    }

    /// True if every dim is static or symbolic (no `?`).
    pub fn is_known(&self) -> bool {
        self.shape.iter().all(Dim::is_known)
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Debug for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
