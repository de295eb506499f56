//! JSON forms of attribute values, tensor literals, tensor types and dim expressions,
//! in both directions. Decoding is written for untrusted input: every size is checked
//! before anything is allocated from it, and nothing recurses on the input's depth.

use super::JsonError;
use crate::attr::Attr;
use crate::dim::{self, Dim};
use crate::dtype::DType;
use crate::tensor::{Tensor, TensorData};
use crate::types::{TensorType, MAX_RANK};
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;

/// The largest element count a tensor type or literal in a document may claim (2^40).
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// The longest dim expression string accepted.
pub const MAX_DIM_TEXT: usize = 4096;

fn invalid(path: &str, message: impl Into<String>) -> JsonError {
    JsonError::Invalid { path: path.to_string(), message: message.into() }
}

// ---------------------------------------------------------------------- floats

/// A float as JSON: a number, or `"nan"`, `"inf"`, `"-inf"`.
pub(crate) fn float_to_value(x: f64) -> Value {
    match Number::from_f64(x) {
        Some(n) => Value::Number(n),
        None if x.is_nan() => Value::String("nan".to_string()),
        None if x > 0.0 => Value::String("inf".to_string()),
        None => Value::String("-inf".to_string()),
    }
}

/// Read a float written by [`float_to_value`]; integers are accepted too.
pub(crate) fn value_to_float(v: &Value, path: &str) -> Result<f64, JsonError> {
    match v {
        Value::Number(n) => {
            n.as_f64().ok_or_else(|| invalid(path, format!("number {n} is not representable as a float")))
        }
        Value::String(s) => match s.as_str() {
            "nan" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            _ => Err(invalid(path, format!("expected a number, \"nan\", \"inf\" or \"-inf\", found string {s:?}"))),
        },
        other => Err(invalid(path, format!("expected a number, found {}", kind_of(other)))),
    }
}

fn value_to_i64(v: &Value, path: &str) -> Result<i64, JsonError> {
    match v {
        Value::Number(n) if !n.is_f64() => {
            n.as_i64().ok_or_else(|| invalid(path, format!("integer {n} does not fit in a signed 64-bit integer")))
        }
        other => Err(invalid(path, format!("expected an integer, found {}", kind_of(other)))),
    }
}

/// A short description of a JSON value's kind, for error messages.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn tagged(key: &str, v: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.to_string(), v);
    Value::Object(map)
}

// ---------------------------------------------------------------------- attributes

/// The JSON form of an attribute (see the module docs of [`crate::json`]): the plain
/// JSON value when that reads back as the same attribute, a one-key tagged object
/// (`{"float": "nan"}`, `{"floats": []}`) otherwise.
pub fn attr_to_value(a: &Attr) -> Value {
    match a {
        Attr::Int(v) => Value::from(*v),
        Attr::Float(v) if v.is_finite() => float_to_value(*v),
        Attr::Float(v) => tagged("float", float_to_value(*v)),
        Attr::Bool(v) => Value::Bool(*v),
        Attr::Str(s) => Value::String(s.clone()),
        Attr::Ints(v) => Value::Array(v.iter().map(|x| Value::from(*x)).collect()),
        Attr::Floats(v) => {
            let items: Vec<Value> = v.iter().map(|x| float_to_value(*x)).collect();
            if !v.is_empty() && v.iter().all(|x| x.is_finite()) {
                Value::Array(items)
            } else {
                tagged("floats", Value::Array(items))
            }
        }
        Attr::DType(d) => tagged("dtype", Value::String(d.to_string())),
        Attr::Tensor(t) => tensor_to_value(t),
    }
}

/// Read an attribute from its JSON form (plain or tagged).
pub fn value_to_attr(v: &Value, path: &str) -> Result<Attr, JsonError> {
    match v {
        Value::Null => Err(invalid(path, "an attribute cannot be null")),
        Value::Bool(b) => Ok(Attr::Bool(*b)),
        Value::Number(n) if n.is_f64() => Ok(Attr::Float(value_to_float(v, path)?)),
        Value::Number(_) => Ok(Attr::Int(value_to_i64(v, path)?)),
        Value::String(s) => Ok(Attr::Str(s.clone())),
        Value::Array(items) => {
            if items.iter().all(|x| matches!(x, Value::Number(n) if !n.is_f64())) {
                let ints = items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| value_to_i64(x, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?;
                Ok(Attr::Ints(ints))
            } else if items.iter().all(Value::is_number) {
                let floats = items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| value_to_float(x, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?;
                Ok(Attr::Floats(floats))
            } else {
                let (i, bad) = items.iter().enumerate().find(|(_, x)| !x.is_number()).unwrap_or((0, &Value::Null));
                Err(invalid(
                    &format!("{path}[{i}]"),
                    format!(
                        "a list attribute holds only numbers, found {} (write {{\"floats\": [...]}} for nan/inf)",
                        kind_of(bad)
                    ),
                ))
            }
        }
        Value::Object(map) => object_to_attr(map, path),
    }
}

fn object_to_attr(map: &Map<String, Value>, path: &str) -> Result<Attr, JsonError> {
    let has = |k: &str| map.contains_key(k);
    if map.len() == 3 && has("dtype") && has("shape") && has("values") {
        return value_to_tensor(&Value::Object(map.clone()), path);
    }
    let mut entries = map.iter();
    let (Some((key, inner)), None) = (entries.next(), entries.next()) else {
        return Err(bad_object(map, path));
    };
    let inner_path = format!("{path}.{key}");
    match key.as_str() {
        "int" => Ok(Attr::Int(value_to_i64(inner, &inner_path)?)),
        "float" => Ok(Attr::Float(value_to_float(inner, &inner_path)?)),
        "bool" => match inner {
            Value::Bool(b) => Ok(Attr::Bool(*b)),
            other => Err(invalid(&inner_path, format!("expected true or false, found {}", kind_of(other)))),
        },
        "str" => match inner {
            Value::String(s) => Ok(Attr::Str(s.clone())),
            other => Err(invalid(&inner_path, format!("expected a string, found {}", kind_of(other)))),
        },
        "ints" => {
            let items = expect_array(inner, &inner_path)?;
            let ints = items
                .iter()
                .enumerate()
                .map(|(i, x)| value_to_i64(x, &format!("{inner_path}[{i}]")))
                .collect::<Result<_, _>>()?;
            Ok(Attr::Ints(ints))
        }
        "floats" => {
            let items = expect_array(inner, &inner_path)?;
            let floats = items
                .iter()
                .enumerate()
                .map(|(i, x)| value_to_float(x, &format!("{inner_path}[{i}]")))
                .collect::<Result<_, _>>()?;
            Ok(Attr::Floats(floats))
        }
        "dtype" => match inner {
            Value::String(s) => s.parse::<DType>().map(Attr::DType).map_err(|e| invalid(&inner_path, e.to_string())),
            other => Err(invalid(&inner_path, format!("expected a dtype string, found {}", kind_of(other)))),
        },
        _ => Err(bad_object(map, path)),
    }
}

fn bad_object(map: &Map<String, Value>, path: &str) -> JsonError {
    let keys: Vec<&str> = map.keys().take(8).map(String::as_str).collect();
    invalid(
        path,
        format!(
            "an attribute object must be {{\"dtype\", \"shape\", \"values\"}} (a tensor) or have exactly one of the keys \
             int, float, bool, str, ints, floats, dtype; found keys {keys:?}"
        ),
    )
}

fn expect_array<'a>(v: &'a Value, path: &str) -> Result<&'a Vec<Value>, JsonError> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(invalid(path, format!("expected an array, found {}", kind_of(other)))),
    }
}

fn expect_str<'a>(v: Option<&'a Value>, path: &str) -> Result<&'a str, JsonError> {
    match v {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(invalid(path, format!("expected a string, found {}", kind_of(other)))),
        None => Err(invalid(path, "missing")),
    }
}

// ---------------------------------------------------------------------- tensor literals

/// A tensor literal as `{"dtype": "f32", "shape": [2], "values": [1.0, "nan"]}`: values
/// flattened row-major; floats as numbers (`"nan"`, `"inf"`, `"-inf"` when not finite),
/// integers as integers, bools as `true`/`false`.
pub fn tensor_to_value(t: &Tensor) -> Value {
    let values: Vec<Value> = match &t.data {
        TensorData::Float(v) => v.iter().map(|x| float_to_value(*x)).collect(),
        TensorData::Int(v) if t.dtype == DType::Bool => v.iter().map(|x| Value::Bool(*x != 0)).collect(),
        TensorData::Int(v) => v.iter().map(|x| Value::from(*x)).collect(),
    };
    let mut map = Map::new();
    map.insert("dtype".to_string(), Value::String(t.dtype.to_string()));
    map.insert("shape".to_string(), Value::Array(t.shape.iter().map(|d| Value::from(*d as u64)).collect()));
    map.insert("values".to_string(), Value::Array(values));
    Value::Object(map)
}

/// Read a tensor literal. The element count implied by `shape` is computed with checked
/// arithmetic, capped at [`MAX_ELEMENTS`], and compared with the number of values given
/// before any tensor storage is built.
pub fn value_to_tensor(v: &Value, path: &str) -> Result<Attr, JsonError> {
    let Value::Object(map) = v else {
        return Err(invalid(path, format!("expected a tensor object {{dtype, shape, values}}, found {}", kind_of(v))));
    };
    if let Some(extra) = map.keys().find(|k| !matches!(k.as_str(), "dtype" | "shape" | "values")) {
        return Err(invalid(
            &format!("{path}.{extra}"),
            "unexpected key in a tensor literal (keys: dtype, shape, values)",
        ));
    }
    let dtype_path = format!("{path}.dtype");
    let dtype: DType = expect_str(map.get("dtype"), &dtype_path)?
        .parse()
        .map_err(|e: crate::dtype::UnknownDType| invalid(&dtype_path, e.to_string()))?;
    let shape_path = format!("{path}.shape");
    let shape_items = expect_array(map.get("shape").unwrap_or(&Value::Null), &shape_path)?;
    if shape_items.len() > MAX_RANK {
        return Err(invalid(&shape_path, format!("rank {} exceeds the maximum {MAX_RANK}", shape_items.len())));
    }
    let mut shape = Vec::with_capacity(shape_items.len());
    let mut numel: u64 = 1;
    for (i, d) in shape_items.iter().enumerate() {
        let p = format!("{shape_path}[{i}]");
        let n = value_to_i64(d, &p)?;
        if n < 0 {
            return Err(invalid(&p, format!("negative dimension {n}")));
        }
        numel = numel
            .checked_mul(n as u64)
            .filter(|&c| c <= MAX_ELEMENTS)
            .ok_or_else(|| invalid(&shape_path, format!("element count exceeds the maximum 2^40 at dimension {i}")))?;
        shape.push(usize::try_from(n).map_err(|_| invalid(&p, "dimension does not fit in memory"))?);
    }
    let values_path = format!("{path}.values");
    let values = expect_array(map.get("values").unwrap_or(&Value::Null), &values_path)?;
    if values.len() as u64 != numel {
        return Err(invalid(
            &values_path,
            format!("shape {shape:?} has {numel} elements but {} values were given", values.len()),
        ));
    }
    let built = if dtype.is_float() || dtype.is_quantized() {
        let floats = values
            .iter()
            .enumerate()
            .map(|(i, x)| value_to_float(x, &format!("{values_path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Tensor::from_f64(dtype, shape, floats)
    } else if dtype == DType::Bool {
        let bools = values
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::Bool(b) => Ok(i64::from(*b)),
                Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => Ok(n.as_i64().unwrap_or(0)),
                other => Err(invalid(
                    &format!("{values_path}[{i}]"),
                    format!("expected true or false, found {}", kind_of(other)),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Tensor::from_i64(dtype, shape, bools)
    } else {
        let ints = values
            .iter()
            .enumerate()
            .map(|(i, x)| value_to_i64(x, &format!("{values_path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Tensor::from_i64(dtype, shape, ints)
    };
    built.map(Attr::Tensor).map_err(|e| invalid(path, e.to_string()))
}

/// [`value_to_tensor`], unwrapped.
pub(crate) fn value_to_tensor_literal(v: &Value, path: &str) -> Result<Tensor, JsonError> {
    match value_to_tensor(v, path)? {
        Attr::Tensor(t) => Ok(t),
        other => Err(invalid(path, format!("expected a tensor literal, found {}", other.kind()))),
    }
}

// ---------------------------------------------------------------------- dims and types

/// The contract's shape: static dims as they are, every other dim as `-1`.
pub fn seed_shape(ty: &TensorType) -> Vec<i64> {
    ty.shape.iter().map(|d| d.as_fixed().unwrap_or(-1)).collect()
}

/// The exact dims, as [`Dim`]'s display form.
pub fn dim_strings(ty: &TensorType) -> Vec<String> {
    ty.shape.iter().map(Dim::to_string).collect()
}

/// Parse a dim expression: `?` (unknown), or a sum/difference of terms, each a product
/// of integers and `?symbol`s, with an optional leading `-`
/// (`8`, `?batch`, `?a*?b+1`, `2*?seq-1`). The parser is a loop over the characters
/// (no recursion); coefficients are checked for `i64` overflow.
pub fn parse_dim(text: &str) -> Result<Dim, String> {
    if text.len() > MAX_DIM_TEXT {
        return Err(format!("dim expression is {} bytes long; the maximum is {MAX_DIM_TEXT}", text.len()));
    }
    let bytes = text.as_bytes();
    let skip_ws = |mut pos: usize| {
        while pos < bytes.len() && bytes[pos] == b' ' {
            pos += 1;
        }
        pos
    };
    if text.trim_matches(' ') == "?" {
        return Ok(Dim::Unknown);
    }
    const LIMIT: i128 = 1 << 63;
    let mut terms: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    let mut pos = skip_ws(0);
    let mut sign: i128 = 1;
    if bytes.get(pos) == Some(&b'-') {
        sign = -1;
        pos += 1;
    }
    loop {
        let mut coef: i128 = 1;
        let mut mono: Vec<String> = Vec::new();
        loop {
            pos = skip_ws(pos);
            match bytes.get(pos) {
                Some(c) if c.is_ascii_digit() => {
                    let start = pos;
                    let mut n: i128 = 0;
                    while let Some(d) = bytes.get(pos).filter(|d| d.is_ascii_digit()) {
                        n = n * 10 + i128::from(d - b'0');
                        if n > LIMIT {
                            return Err(format!("integer at offset {start} is out of range"));
                        }
                        pos += 1;
                    }
                    coef *= n;
                    if coef.abs() > LIMIT {
                        return Err(format!("coefficient out of range at offset {start}"));
                    }
                }
                Some(b'?') => {
                    let start = pos;
                    pos += 1;
                    while bytes.get(pos).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.') {
                        pos += 1;
                    }
                    let name = &text[start + 1..pos];
                    if name.is_empty() {
                        return Err(format!(
                            "`?` at offset {start} is only allowed as a whole dim, not inside an expression"
                        ));
                    }
                    if !dim::is_valid_symbol(name) {
                        return Err(format!("invalid symbol name `{name}` at offset {start}"));
                    }
                    mono.push(name.to_string());
                }
                Some(_) => {
                    let found = text[pos..].chars().next().unwrap_or(' ');
                    return Err(format!("expected a number or `?symbol` at offset {pos}, found `{found}`"));
                }
                None => return Err(format!("expected a number or `?symbol` at offset {pos}, found the end")),
            }
            pos = skip_ws(pos);
            if bytes.get(pos) == Some(&b'*') {
                pos += 1;
            } else {
                break;
            }
        }
        mono.sort();
        let value = i64::try_from(sign * coef).map_err(|_| "coefficient out of range".to_string())?;
        let entry = terms.entry(mono.clone()).or_insert(0);
        *entry = entry.checked_add(value).ok_or_else(|| "coefficient out of range".to_string())?;
        if *entry == 0 {
            terms.remove(&mono);
        }
        match bytes.get(pos) {
            None => break,
            Some(b'+') => sign = 1,
            Some(b'-') => sign = -1,
            Some(_) => {
                let found = text[pos..].chars().next().unwrap_or(' ');
                return Err(format!("expected `+`, `-`, `*` or the end at offset {pos}, found `{found}`"));
            }
        }
        pos += 1;
    }
    Ok(Dim::Expr(terms))
}

/// Build a tensor type from a document's `shape`, `dtype` and optional `dims`, checking
/// the rank (at most [`MAX_RANK`]), that `shape` and `dims` agree, that no static dim is
/// negative, and that the static dims' product stays within [`MAX_ELEMENTS`].
pub fn parse_type(shape: &[i64], dtype: &str, dims: Option<&[String]>, path: &str) -> Result<TensorType, JsonError> {
    let dtype: DType =
        dtype.parse().map_err(|e: crate::dtype::UnknownDType| invalid(&format!("{path}.dtype"), e.to_string()))?;
    let rank = dims.map_or(shape.len(), <[String]>::len);
    if rank > MAX_RANK || shape.len() > MAX_RANK {
        return Err(invalid(
            &format!("{path}.shape"),
            format!("rank {} exceeds the maximum {MAX_RANK}", rank.max(shape.len())),
        ));
    }
    let parsed: Vec<Dim> = match dims {
        Some(dims) => {
            if dims.len() != shape.len() {
                return Err(invalid(
                    &format!("{path}.dims"),
                    format!("{} dims given for a shape of rank {}", dims.len(), shape.len()),
                ));
            }
            let mut out = Vec::with_capacity(dims.len());
            for (i, (text, &seed)) in dims.iter().zip(shape).enumerate() {
                let p = format!("{path}.dims[{i}]");
                let d = parse_dim(text).map_err(|m| invalid(&p, format!("cannot parse dim `{}`: {m}", clip(text))))?;
                let expected = d.as_fixed().unwrap_or(-1);
                if let Some(n) = d.as_fixed().filter(|n| *n < 0) {
                    return Err(invalid(&p, format!("negative dimension {n}")));
                }
                if seed != expected {
                    return Err(invalid(
                        &format!("{path}.shape[{i}]"),
                        format!("{seed} disagrees with dims[{i}] = `{}` (expected {expected})", clip(text)),
                    ));
                }
                out.push(d);
            }
            out
        }
        None => {
            let mut out = Vec::with_capacity(shape.len());
            for (i, &n) in shape.iter().enumerate() {
                match n {
                    -1 => out.push(Dim::Unknown),
                    n if n < 0 => {
                        return Err(invalid(&format!("{path}.shape[{i}]"), format!("negative dimension {n}")))
                    }
                    n => out.push(Dim::fixed(n)),
                }
            }
            out
        }
    };
    let mut numel: u64 = 1;
    for d in &parsed {
        if let Some(n) = d.as_fixed() {
            numel = numel
                .checked_mul(n as u64)
                .filter(|&c| c <= MAX_ELEMENTS)
                .ok_or_else(|| invalid(&format!("{path}.shape"), "element count exceeds the maximum 2^40"))?;
        }
    }
    Ok(TensorType::new(dtype, parsed))
}

/// At most 64 characters of `s`, for quoting untrusted text in messages.
pub(crate) fn clip(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
