//! Running compiled artifacts in tests: ModelIR tensors to and from the runtime's tensors,
//! compiling a module with `ferrumc_codegen::compile`, running an entry point through
//! `ferrumc_runtime::Model` with the shipped micro-kernels, and comparing it with the
//! reference interpreter on the same optimized module (the differential check every
//! compiled-path test uses).

use crate::compare::{assert_close, Tolerance};
use ferrumc_codegen::compile::{compile_module, optimize_module, CompileOptions};
use ferrumc_ir::interp::run_function;
use ferrumc_ir::weights::WeightProvider;
use ferrumc_ir::{DType, Module, Tensor};
use ferrumc_runtime::artifact::DType as RtDType;
use ferrumc_runtime::model::{Model, Tensor as RtTensor};

fn runtime_dtype(d: DType) -> Option<RtDType> {
    Some(match d {
        DType::F32 => RtDType::F32,
        DType::F16 => RtDType::F16,
        DType::BF16 => RtDType::BF16,
        DType::F64 => RtDType::F64,
        DType::I64 => RtDType::I64,
        DType::I32 => RtDType::I32,
        DType::I8 => RtDType::I8,
        DType::U8 => RtDType::U8,
        DType::Bool => RtDType::Bool,
        _ => return None,
    })
}

fn ir_dtype(d: RtDType) -> Option<DType> {
    Some(match d {
        RtDType::F32 => DType::F32,
        RtDType::F16 => DType::F16,
        RtDType::BF16 => DType::BF16,
        RtDType::F64 => DType::F64,
        RtDType::I64 => DType::I64,
        RtDType::I32 => DType::I32,
        RtDType::I8 => DType::I8,
        RtDType::U8 => DType::U8,
        RtDType::Bool => DType::Bool,
        _ => return None,
    })
}

/// A ModelIR tensor as a runtime tensor (same little-endian bytes).
pub fn to_runtime(t: &Tensor) -> Result<RtTensor, String> {
    let dtype = runtime_dtype(t.dtype).ok_or_else(|| format!("dtype {} has no runtime form", t.dtype))?;
    RtTensor::new(dtype, t.shape.clone(), t.to_le_bytes().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

/// A runtime tensor as a ModelIR tensor.
pub fn from_runtime(t: &RtTensor) -> Result<Tensor, String> {
    let dtype = ir_dtype(t.dtype()).ok_or_else(|| format!("runtime dtype {:?} has no IR form", t.dtype()))?;
    Tensor::from_le_bytes(dtype, t.shape().to_vec(), t.bytes()).map_err(|e| e.to_string())
}

/// Compile `m` with `options` (errors as text).
pub fn compile(m: &Module, weights: &dyn WeightProvider, options: &CompileOptions) -> Result<Vec<u8>, String> {
    compile_module(m, weights, options).map_err(|e| format!("compile -O{}: {e}", options.level))
}

/// Load `bytes` with the shipped micro-kernels and run `entry` on `inputs`.
pub fn run_compiled(bytes: &[u8], entry: &str, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, String> {
    let mut model = Model::from_bytes(bytes)
        .and_then(|m| m.with_fn_table(ferrumc_runtime::ukernels::fn_table()))
        .map_err(|e| format!("load: {e}"))?;
    let rt: Vec<(String, RtTensor)> =
        inputs.iter().map(|(n, t)| Ok((n.clone(), to_runtime(t)?))).collect::<Result<_, String>>()?;
    let views: Vec<(&str, _)> = rt.iter().map(|(n, t)| (n.as_str(), t.view())).collect();
    let outputs = model.run(entry, &views).map_err(|e| format!("@{entry}: run: {e}"))?;
    outputs.iter().map(|(n, t)| Ok((n.clone(), from_runtime(t)?))).collect()
}

/// Compare named outputs pairwise (same names, same order).
pub fn compare_outputs(
    label: &str,
    got: &[(String, Tensor)],
    want: &[(String, Tensor)],
    tol: Tolerance,
) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{label}: {} outputs, the reference has {}", got.len(), want.len()));
    }
    for ((gn, g), (wn, w)) in got.iter().zip(want) {
        if gn != wn {
            return Err(format!("{label}: output `{gn}` where the reference has `{wn}`"));
        }
        assert_close(&format!("{label}/{gn}"), g, w, tol)?;
    }
    Ok(())
}

/// The differential check: compile `m`, run each `(function, inputs)` compiled, and compare
/// with the interpreter on the optimized module the kernels were made from (for quantized
/// weights that is the only fair oracle).
pub fn check_compiled(
    label: &str,
    m: &Module,
    weights: &dyn WeightProvider,
    options: &CompileOptions,
    runs: &[(String, Vec<(String, Tensor)>)],
    tol: Tolerance,
) -> Result<(), String> {
    let bytes = compile(m, weights, options).map_err(|e| format!("{label}: {e}"))?;
    let optimized = optimize_module(m, options).map_err(|e| format!("{label}: {e}"))?;
    for (function, inputs) in runs {
        let got = run_compiled(&bytes, function, inputs).map_err(|e| format!("{label}: {e}"))?;
        let want = run_function(&optimized, function, inputs, weights)
            .map_err(|e| format!("{label}: @{function}: interpreter: {e}"))?;
        compare_outputs(&format!("{label} @{function}"), &got, &want, tol)?;
    }
    Ok(())
}
