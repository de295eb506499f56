//! Op and module attributes: the typed values an op carries besides its operands, their
//! text spelling, and the [`AttrField`] conversions the op table is generated from.

use crate::dtype::DType;
use crate::tensor::{Tensor, TensorData};
use std::fmt;

/// An attribute value as it appears in the text format and the JSON document.
#[derive(Debug, Clone)]
pub enum Attr {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    DType(DType),
    Tensor(Tensor),
}

impl PartialEq for Attr {
    fn eq(&self, other: &Attr) -> bool {
        match (self, other) {
            (Attr::Int(a), Attr::Int(b)) => a == b,
            (Attr::Float(a), Attr::Float(b)) => a.to_bits() == b.to_bits(),
            (Attr::Bool(a), Attr::Bool(b)) => a == b,
            (Attr::Str(a), Attr::Str(b)) => a == b,
            (Attr::Ints(a), Attr::Ints(b)) => a == b,
            (Attr::Floats(a), Attr::Floats(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (Attr::DType(a), Attr::DType(b)) => a == b,
            (Attr::Tensor(a), Attr::Tensor(b)) => a.bit_eq(b),
            _ => false,
        }
    }
}

impl Attr {
    /// A short name of the attribute's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Attr::Int(_) => "integer",
            Attr::Float(_) => "float",
            Attr::Bool(_) => "bool",
            Attr::Str(_) => "string",
            Attr::Ints(_) => "integer list",
            Attr::Floats(_) => "float list",
            Attr::DType(_) => "dtype",
            Attr::Tensor(_) => "tensor",
        }
    }
}

/// Write a float so that it reads back bit-exactly and always looks like a float
/// (`1.0`, `1e-5`, `nan`, `inf`, `-inf`).
pub fn write_float(f: &mut impl fmt::Write, v: f64) -> fmt::Result {
    if v.is_nan() {
        f.write_str("nan")
    } else if v.is_infinite() {
        f.write_str(if v > 0.0 { "inf" } else { "-inf" })
    } else {
        write!(f, "{v:?}")
    }
}

/// Write a float element of a tensor literal in the shortest form that reads back
/// exactly as `dtype` (f32 values print as f32, so `0.1` rather than `0.10000000149011612`).
pub fn write_float_as(f: &mut impl fmt::Write, v: f64, dtype: DType) -> fmt::Result {
    if dtype != DType::F64 && v.is_finite() && (v as f32) as f64 == v {
        let short = format!("{:?}", v as f32);
        // Only use the f32 spelling if it parses back to the same f64.
        if short.parse::<f64>().ok().map(f64::to_bits) == Some(v.to_bits())
            || short.parse::<f32>().map(|x| x as f64) == Ok(v)
        {
            return f.write_str(&short);
        }
    }
    write_float(f, v)
}

/// Write a tensor literal: `dense<f32[2, 2]: [1.0, 2.0, 3.0, 4.0]>` (elements flattened, row-major).
pub fn write_tensor(f: &mut impl fmt::Write, t: &Tensor) -> fmt::Result {
    write!(f, "dense<{}[", t.dtype)?;
    for (i, d) in t.shape.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{d}")?;
    }
    f.write_str("]: [")?;
    match &t.data {
        TensorData::Float(v) => {
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_float_as(f, *x, t.dtype)?;
            }
        }
        TensorData::Int(v) => {
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                if t.dtype == DType::Bool {
                    f.write_str(if *x != 0 { "true" } else { "false" })?;
                } else {
                    write!(f, "{x}")?;
                }
            }
        }
    }
    f.write_str("]>")
}

/// Write a string literal with `"`, `\\` and control characters (C0, DEL and C1) escaped.
pub fn write_string(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attr::Int(v) => write!(f, "{v}"),
            Attr::Float(v) => write_float(f, *v),
            Attr::Bool(v) => write!(f, "{v}"),
            Attr::Str(s) => write_string(f, s),
            Attr::Ints(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
            Attr::Floats(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_float(f, *x)?;
                }
                f.write_str("]")
            }
            Attr::DType(d) => write!(f, "{d}"),
            Attr::Tensor(t) => write_tensor(f, t),
        }
    }
}

/// A Rust type that can be stored as an op attribute. `None` from `to_attr` means
/// "absent" (only `Option` fields do that); `from_attr(None)` is a missing attribute.
pub trait AttrField: Sized {
    fn to_attr(&self) -> Option<Attr>;
    fn from_attr(attr: Option<&Attr>) -> Result<Self, String>;
}

fn missing() -> String {
    "is required but missing".to_string()
}

fn wrong(expected: &str, got: &Attr) -> String {
    format!("must be {expected}, found {} `{got}`", got.kind())
}

impl AttrField for i64 {
    fn to_attr(&self) -> Option<Attr> {
        Some(Attr::Int(*self))
    }
    fn from_attr(attr: Option<&Attr>) -> Result<Self, String> {
        match attr {
            Some(Attr::Int(v)) => Ok(*v),
            Some(other) => Err(wrong("an integer", other)),
            None => Err(missing()),
        }
    }
}

impl AttrField for f64 {
    fn to_attr(&self) -> Option<Attr> {
        Some(Attr::Float(*self))
    }
    fn from_attr(attr: Option<&Attr>) -> Result<Self, String> {
        match attr {
            Some(Attr::Float(v)) => Ok(*v),
            Some(Attr::Int(v)) => Ok(*v as f64),
            Some(other) => Err(wrong("a float", other)),
            None => Err(missing()),
        }
    }
}

impl AttrField for bool {
    fn to_attr(&self) -> Option<Attr> {
        Some(Attr::Bool(*self))
    }
    fn from_attr(attr: Option<&Attr>) -> Result<Self, String> {
        match attr {
            Some(Attr::Bool(v)) => Ok(*v),
            Some(other) => Err(wrong("true or false", other)),
            None => Err(missing()),
        }
    }
}

impl AttrField for Vec<i64> {
    fn to_attr(&self) -> Option<Attr> {
        Some(Attr::Ints(self.clone()))
    }
    fn from_attr(attr: Option<&Attr>) -> Result<Self, String> {
        match attr {
            Some(Attr::Ints(v)) => Ok(v.clone()),
            Some(Attr::Floats(v)) if v.is_empty() => Ok(Vec::new()),
            Some(other) => Err(wrong("a list of integers", other)),
            None => Err(missing()),
        }
    }
}

impl AttrField for DType {
    fn to_attr(&self) -> Option<Attr> {
        Some(Attr::DType(*self))
    }
    fn from_attr(attr: Option<&Attr>) -> Result<Self, String> {
        match attr {
            Some(Attr::DType(v)) => Ok(*v),
            Some(other) => Err(wrong("a dtype", other)),
            None => Err(missing()),
        }
    }
}

impl AttrField for Tensor {
    fn to_attr(&self) -> Option<Attr> {
        Some(Attr::Tensor(self.clone()))
    }
    fn from_attr(attr: Option<&Attr>) -> Result<Self, String> {
        match attr {
            Some(Attr::Tensor(v)) => Ok(v.clone()),
            Some(other) => Err(wrong("a dense<…> tensor literal", other)),
            None => Err(missing()),
        }
    }
}

impl<T: AttrField> AttrField for Option<T> {
    fn to_attr(&self) -> Option<Attr> {
        self.as_ref().and_then(T::to_attr)
    }
    fn from_attr(attr: Option<&Attr>) -> Result<Self, String> {
        match attr {
            None => Ok(None),
            Some(a) => T::from_attr(Some(a)).map(Some),
        }
    }
}

/// Declare a closed set of string-valued attribute choices (`mode = "constant"`).
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl $crate::attr::AttrField for $name {
            fn to_attr(&self) -> Option<$crate::attr::Attr> {
                Some($crate::attr::Attr::Str(self.as_str().to_string()))
            }
            fn from_attr(attr: Option<&$crate::attr::Attr>) -> Result<Self, String> {
                let choices = [$($text),+].join("\", \"");
                match attr {
                    Some($crate::attr::Attr::Str(s)) => $name::parse(s)
                        .ok_or_else(|| format!("must be one of \"{choices}\", found \"{s}\"")),
                    Some(other) => Err(format!("must be one of \"{choices}\", found {} `{other}`", other.kind())),
                    None => Err("is required but missing".to_string()),
                }
            }
        }
    };
}
pub(crate) use string_enum;
