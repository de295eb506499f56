//! `quantize-weights`: Weight-only quantization of linear weights (int8 per channel, q8_0, q4_0, int4<G>).
//!
//! Every `linear x, w[, bias]` whose `w` is a weight-derived float `[out, in]` matrix becomes
//! a `quantized_linear` over a weight-derived quantization of `w` (codegen evaluates those
//! ops once, at compile time):
//!
//! * block schemes: `quantized_linear x, cast(w){to = q8_0 | q4_0 | int4<G>}[, bias]`; the
//!   blocks run along `in`, so a linear whose `in` is not a multiple of the block length is
//!   skipped with a warning;
//! * `int8` (per output channel, symmetric): `s = max(reduce_max(abs(w), [1]) / 127, tiny)`,
//!   `wq = cast(round(w / s), i8)`, `quantized_linear x, wq, squeeze(s), bias`.
//!
//! The embedding `gather` table is left alone (only `linear` weights are touched); a weight
//! shared with other users stays for them. Bounds measured on the HF fixtures are asserted
//! in `tests/tests/quantization.rs`.

use crate::pass::{OptimizationPass, OptimizationResult, PassError, PassOptions, QuantScheme};
use crate::weight_prep::{
    add1, erase_dead, megabytes, refresh, replace_op, storage_bytes, weight_linears, WeightLinear,
};
use ferrumc_ir::{DType, Function, Module, Op, Tensor, ValueDef, ValueId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The `quantize-weights` pass.
#[derive(Debug)]
pub struct QuantizeWeights;

/// Smallest per-channel scale: keeps all-zero rows finite (they quantize to 0).
const MIN_SCALE: f64 = 1e-30;

fn block_dtype(scheme: QuantScheme) -> Option<DType> {
    match scheme {
        QuantScheme::Int8PerChannel => None,
        QuantScheme::Q8_0 => Some(DType::Q8_0),
        QuantScheme::Q4_0 => Some(DType::Q4_0),
        QuantScheme::Int4 { group_size } => Some(DType::Int4 { group_size }),
    }
}

/// Storage bytes of the quantized form of an `[out, in]` weight.
fn quantized_bytes(scheme: QuantScheme, out: i64, inp: i64) -> u64 {
    match block_dtype(scheme) {
        Some(d) => storage_bytes(d, out, inp),
        None => storage_bytes(DType::I8, out, inp) + storage_bytes(DType::F32, 1, out),
    }
}

/// The operands `quantized_linear` takes after `x`: the quantized weight (and scales).
fn quantize(f: &mut Function, scheme: QuantScheme, l: &WeightLinear) -> Result<Vec<ValueId>, String> {
    if let Some(dtype) = block_dtype(scheme) {
        return Ok(vec![add1(f, Op::Cast { to: dtype }, vec![l.w])?]);
    }
    let w = if l.dtype == DType::F32 { l.w } else { add1(f, Op::Cast { to: DType::F32 }, vec![l.w])? };
    let constant =
        |f: &mut Function, v: f64| add1(f, Op::Constant { value: Tensor::scalar_f64(DType::F32, v) }, vec![]);
    let abs = add1(f, Op::Abs, vec![w])?;
    let amax = add1(f, Op::ReduceMax { axes: vec![1], keepdims: true }, vec![abs])?;
    let c127 = constant(f, 127.0)?;
    let s = add1(f, Op::Div, vec![amax, c127])?;
    let tiny = constant(f, MIN_SCALE)?;
    let s = add1(f, Op::Max, vec![s, tiny])?;
    let ratio = add1(f, Op::Div, vec![w, s])?;
    let rounded = add1(f, Op::Round, vec![ratio])?;
    let wq = add1(f, Op::Cast { to: DType::I8 }, vec![rounded])?;
    let scale = add1(f, Op::Squeeze { axes: vec![1] }, vec![s])?;
    Ok(vec![wq, scale])
}

/// What was quantized, for the stats: each quantized weight once (keyed by weight name, or
/// by function and value for weights derived by ops), however many functions use it.
#[derive(Default)]
struct Tally {
    linears: usize,
    /// key → (bytes before, bytes after, the module weight it is, if it is one directly).
    weights: BTreeMap<String, (u64, u64, Option<String>)>,
    /// Module weights still read by an op this pass did not create.
    still_read: BTreeSet<String>,
}

fn quantize_function(f: &mut Function, scheme: QuantScheme, tally: &mut Tally, warnings: &mut Vec<String>) {
    let block = block_dtype(scheme).map_or(1, |d| d.block_len() as i64);
    // Ops created from here on belong to this pass (op ids only grow).
    let first_new = f.op_ids().map(|o| o.0 + 1).max().unwrap_or(0);
    // One quantized copy per weight value, however many linears share it.
    let mut done: HashMap<ValueId, Vec<ValueId>> = HashMap::new();
    for l in weight_linears(f) {
        let Some(l) = refresh(f, &l) else { continue };
        if !matches!(l.dtype, DType::F32 | DType::F16 | DType::BF16) {
            continue;
        }
        if l.in_features % block != 0 {
            warnings.push(format!(
                "{}: a linear with in = {} is not quantized ({scheme} needs a multiple of {block})",
                f.name, l.in_features
            ));
            continue;
        }
        let q = match done.get(&l.w) {
            Some(q) => q.clone(),
            None => match quantize(f, scheme, &l) {
                Ok(q) => {
                    let weight = match &f.value(l.w).def {
                        ValueDef::Weight { name } => Some(name.clone()),
                        _ => None,
                    };
                    let key = weight.clone().unwrap_or_else(|| format!("{}/{}", f.name, l.w));
                    let before = storage_bytes(l.dtype, l.out_features, l.in_features);
                    let after = quantized_bytes(scheme, l.out_features, l.in_features);
                    tally.weights.insert(key, (before, after, weight));
                    done.insert(l.w, q.clone());
                    q
                }
                Err(e) => {
                    warnings.push(format!("{}: a linear is not quantized: {e}", f.name));
                    continue;
                }
            },
        };
        let mut operands = vec![l.x];
        operands.extend(q);
        operands.extend(l.bias);
        match add1(f, Op::QuantizedLinear, operands) {
            Ok(y) => {
                replace_op(f, l.op, l.result, y);
                tally.linears += 1;
            }
            Err(e) => {
                warnings.push(format!("{}: a linear is not quantized: {e}", f.name));
                if let Some(q) = done.remove(&l.w) {
                    erase_dead(f, q);
                }
            }
        }
    }
    for (name, &w) in f.weight_values() {
        let old_reader = f.value(w).uses.iter().any(|u| u.op.0 < first_new) || f.outputs().iter().any(|(_, o)| *o == w);
        if old_reader {
            tally.still_read.insert(name.clone());
        }
    }
}

impl OptimizationPass for QuantizeWeights {
    fn name(&self) -> &'static str {
        "quantize-weights"
    }

    fn summary(&self) -> &'static str {
        "Weight-only quantization of linear weights (int8 per channel, q8_0, q4_0, int4<G>)"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        // Works on `linear` ops: ONNX graphs have `matmul` by a weight until fuse-linear runs.
        vec!["fuse-linear"]
    }

    fn is_applicable(&self, _module: &Module, options: &PassOptions) -> bool {
        options.quantize.is_some()
    }

    fn apply(&self, module: &mut Module, options: &PassOptions) -> Result<OptimizationResult, PassError> {
        let Some(scheme) = options.quantize else { return Ok(OptimizationResult::unchanged()) };
        let mut tally = Tally::default();
        let mut result = OptimizationResult::unchanged();
        for f in &mut module.functions {
            quantize_function(f, scheme, &mut tally, &mut result.warnings);
        }
        if tally.linears == 0 {
            return Ok(result);
        }
        result.applied = true;
        let before: u64 = tally.weights.values().map(|w| w.0).sum();
        let after: u64 = tally.weights.values().map(|w| w.1).sum();
        // A weight is only freed when nothing but the quantization reads it any more (an
        // embedding gather sharing a tied head keeps it alive).
        let freed: u64 = tally
            .weights
            .values()
            .filter(|w| w.2.as_ref().is_some_and(|name| !tally.still_read.contains(name)))
            .map(|w| w.0)
            .sum();
        result.stats.memory_saved = freed.saturating_sub(after);
        result.notes.push(format!(
            "{} linear weights quantized to {scheme}, {} → {}",
            tally.weights.len(),
            megabytes(before),
            megabytes(after)
        ));
        Ok(result)
    }
}
