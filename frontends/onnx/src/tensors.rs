//! ONNX `TensorProto` ↔ [`Tensor`]: data types, typed data fields and `raw_data`.

use crate::proto::{data_type as dt, TensorProto, DATA_LOCATION_EXTERNAL};
use ferrumc_ir::tensor::checked_numel;
use ferrumc_ir::types::MAX_RANK;
use ferrumc_ir::{DType, Tensor};
use half::{bf16, f16};

/// The ferrumc dtype of an ONNX data type code.
pub fn onnx_dtype(code: i32) -> Result<DType, String> {
    Ok(match code {
        dt::FLOAT => DType::F32,
        dt::UINT8 => DType::U8,
        dt::INT8 => DType::I8,
        dt::INT32 => DType::I32,
        dt::INT64 => DType::I64,
        dt::BOOL => DType::Bool,
        dt::FLOAT16 => DType::F16,
        dt::DOUBLE => DType::F64,
        dt::BFLOAT16 => DType::BF16,
        other => return Err(format!("ONNX element type {} is not supported by ferrumc", dt::name(other))),
    })
}

/// Checked shape of a tensor proto: non-negative dims, bounded rank, no element-count overflow.
pub fn proto_shape(t: &TensorProto) -> Result<Vec<usize>, String> {
    if t.dims.len() > MAX_RANK {
        return Err(format!("rank {} exceeds the maximum rank {MAX_RANK}", t.dims.len()));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        shape.push(usize::try_from(d).map_err(|_| format!("negative dim {d} in dims {:?}", t.dims))?);
    }
    checked_numel(&shape).ok_or_else(|| format!("dims {:?} overflow the element count", t.dims))?;
    Ok(shape)
}

/// Decode a tensor proto whose data is inline (raw_data or a typed field). External data
/// is the importer's business and is refused here.
pub fn tensor_from_proto(t: &TensorProto) -> Result<Tensor, String> {
    if t.data_location == DATA_LOCATION_EXTERNAL || !t.external_data.is_empty() {
        return Err("the tensor keeps its data in an external file".into());
    }
    let dtype = onnx_dtype(t.data_type)?;
    let shape = proto_shape(t)?;
    let numel = checked_numel(&shape).unwrap_or(usize::MAX);
    if !t.raw_data.is_empty() || numel == 0 && typed_len(t) == 0 {
        return Tensor::from_le_bytes(dtype, shape, &t.raw_data).map_err(|e| format!("raw_data: {e}"));
    }
    let count = |field: &str, n: usize| {
        if n == numel {
            Ok(())
        } else {
            Err(format!("{field} holds {n} elements but dims {:?} need {numel}", t.dims))
        }
    };
    let r = match t.data_type {
        dt::FLOAT => {
            count("float_data", t.float_data.len())?;
            Tensor::from_f64(dtype, shape, t.float_data.iter().map(|&x| f64::from(x)).collect())
        }
        dt::DOUBLE => {
            count("double_data", t.double_data.len())?;
            Tensor::from_f64(dtype, shape, t.double_data.clone())
        }
        dt::INT64 => {
            count("int64_data", t.int64_data.len())?;
            Tensor::from_i64(dtype, shape, t.int64_data.clone())
        }
        dt::INT32 | dt::INT8 | dt::UINT8 | dt::BOOL => {
            count("int32_data", t.int32_data.len())?;
            Tensor::from_i64(dtype, shape, t.int32_data.iter().map(|&x| i64::from(x)).collect())
        }
        dt::FLOAT16 | dt::BFLOAT16 => {
            count("int32_data", t.int32_data.len())?;
            let vals = t
                .int32_data
                .iter()
                .map(|&x| {
                    let bits = x as u16;
                    if t.data_type == dt::FLOAT16 {
                        f16::from_bits(bits).to_f64()
                    } else {
                        bf16::from_bits(bits).to_f64()
                    }
                })
                .collect();
            Tensor::from_f64(dtype, shape, vals)
        }
        _ => return Err(format!("element type {} is not supported", dt::name(t.data_type))),
    };
    r.map_err(|e| e.to_string())
}

fn typed_len(t: &TensorProto) -> usize {
    t.float_data.len() + t.double_data.len() + t.int32_data.len() + t.int64_data.len() + t.uint64_data.len()
}

/// Encode a tensor as a `TensorProto` with `raw_data` (tests and tools).
pub fn tensor_to_proto(name: &str, t: &Tensor) -> Result<TensorProto, String> {
    let data_type = match t.dtype {
        DType::F32 => dt::FLOAT,
        DType::U8 => dt::UINT8,
        DType::I8 => dt::INT8,
        DType::I32 => dt::INT32,
        DType::I64 => dt::INT64,
        DType::Bool => dt::BOOL,
        DType::F16 => dt::FLOAT16,
        DType::F64 => dt::DOUBLE,
        DType::BF16 => dt::BFLOAT16,
        other => return Err(format!("dtype {other} has no ONNX element type")),
    };
    Ok(TensorProto {
        dims: t.shape.iter().map(|&d| d as i64).collect(),
        data_type,
        name: name.to_string(),
        raw_data: t.to_le_bytes().map_err(|e| e.to_string())?.into(),
        ..Default::default()
    })
}
