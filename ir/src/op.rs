//! The op set of ModelIR, with the semantics of every op documented on its variant.
//!
//! Conventions shared by all ops:
//! * Operands are SSA values; results are new SSA values. Every result has a declared
//!   [`TensorType`](crate::TensorType); `infer` checks declared against inferred types.
//! * Axes attributes may be negative (counted from the end, numpy style) and are
//!   normalised against the operand's rank.
//! * "Broadcast" means numpy/ONNX multidirectional broadcasting: shapes are right-aligned,
//!   a dim of 1 stretches to match the other, anything else must be equal.
//! * Elementwise ops compute in the operand dtype; the reference interpreter evaluates
//!   in f64 and rounds each result to its dtype.
//! * Ops whose output shape cannot be derived from operand *types* (static `reshape`,
//!   static `expand`, `split`, `range`, static `constant_of_shape`) take it from their
//!   declared result type, which may use symbolic dims; at run time those dims are
//!   evaluated with the symbol values bound by the function's inputs.
//!
//! The table below is the single source of truth for op names, operand/result arity and
//! attributes: the text format, the JSON document, the verifier and the interpreter all
//! read it.

use crate::attr::{string_enum, Attr, AttrField};
use crate::dtype::DType;
use crate::tensor::Tensor;
use std::collections::BTreeMap;

string_enum! {
    /// How `scatter_nd` combines updates with existing values.
    ScatterReduction { None = "none", Add = "add", Mul = "mul", Max = "max", Min = "min" }
}

string_enum! {
    /// Padding mode of `pad`.
    PadMode {
        /// Fill with `value`.
        Constant = "constant",
        /// Mirror without repeating the edge element.
        Reflect = "reflect",
        /// Repeat the edge element.
        Edge = "edge",
    }
}

string_enum! {
    /// Which GELU formula `gelu` uses.
    GeluApproximation {
        /// `0.5 * x * (1 + erf(x / sqrt(2)))`.
        None = "none",
        /// `0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`.
        Tanh = "tanh",
    }
}

/// Unbounded operand or result count.
pub const VARIADIC: usize = usize::MAX;

/// Output columns per panel of a `packed_linear` weight (the CPU matmul micro-kernel's NR).
pub const PACK_NR: usize = 16;

macro_rules! define_ops {
    ($(
        $(#[$doc:meta])*
        $variant:ident $name:literal [$min_in:expr, $max_in:expr] -> [$min_out:expr, $max_out:expr]
        $({ $($field:ident : $ty:ty),* $(,)? })? ;
    )*) => {
        /// An operation of the IR. See the module docs for shared conventions.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Op {
            $( $(#[$doc])* $variant $({ $($field: $ty),* })?, )*
        }

        impl Op {
            /// Every op name, in table order.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The op's name in the text format and the JSON document (`layer_type`).
            pub fn name(&self) -> &'static str {
                match self { $( Op::$variant { .. } => $name, )* }
            }

            /// Allowed operand counts (inclusive; `VARIADIC` for no upper bound).
            pub fn operand_range(&self) -> (usize, usize) {
                match self { $( Op::$variant { .. } => ($min_in, $max_in), )* }
            }

            /// Allowed result counts (inclusive; `VARIADIC` for no upper bound).
            pub fn result_range(&self) -> (usize, usize) {
                match self { $( Op::$variant { .. } => ($min_out, $max_out), )* }
            }

            /// The attributes, in declaration order; absent optional attributes are omitted.
            #[allow(unused_variables)]
            pub fn attrs(&self) -> Vec<(&'static str, Attr)> {
                match self {
                    $( Op::$variant $({ $($field),* })? => {
                        #[allow(unused_mut)]
                        let mut out: Vec<(&'static str, Attr)> = Vec::new();
                        $($( if let Some(a) = AttrField::to_attr($field) { out.push((stringify!($field), a)); } )*)?
                        out
                    } )*
                }
            }

            /// Build an op from its name and attributes. Unknown names, unknown
            /// attributes, missing required attributes and mistyped values are errors.
            pub fn from_parts(name: &str, attrs: &BTreeMap<String, Attr>) -> Result<Op, OpBuildError> {
                let op = match name {
                    $( $name => {
                        #[allow(unused_variables)]
                        let known: &[&str] = &[$($(stringify!($field)),*)?];
                        if let Some(extra) = attrs.keys().find(|k| !known.contains(&k.as_str())) {
                            return Err(OpBuildError::UnknownAttr { op: name.to_string(), attr: extra.clone(), known: known.iter().map(|s| s.to_string()).collect() });
                        }
                        Op::$variant $({ $($field: AttrField::from_attr(attrs.get(stringify!($field))).map_err(|message| OpBuildError::BadAttr { op: name.to_string(), attr: stringify!($field).to_string(), message })?),* })?
                    } )*
                    _ => return Err(OpBuildError::UnknownOp(name.to_string())),
                };
                Ok(op)
            }
        }
    };
}

/// Why `Op::from_parts` refused a name/attribute combination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpBuildError {
    #[error("unknown op `{0}`")]
    UnknownOp(String),
    #[error("op `{op}` has no attribute `{attr}` (its attributes: {})", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownAttr { op: String, attr: String, known: Vec<String> },
    #[error("attribute `{attr}` of op `{op}` {message}")]
    BadAttr { op: String, attr: String, message: String },
}

define_ops! {
    // ---------------------------------------------------------------- constants
    /// `constant {value}` → the literal tensor `value`. Result type: the literal's dtype and shape.
    Constant "constant" [0, 0] -> [1, 1] { value: Tensor };

    // ---------------------------------------------------------------- unary elementwise
    /// `neg x` → `-x`. Numeric dtypes.
    Neg "neg" [1, 1] -> [1, 1];
    /// `abs x` → `|x|`. Numeric dtypes.
    Abs "abs" [1, 1] -> [1, 1];
    /// `sqrt x` → `√x` (NaN below zero). Float dtypes.
    Sqrt "sqrt" [1, 1] -> [1, 1];
    /// `rsqrt x` → `1/√x`. Float dtypes.
    Rsqrt "rsqrt" [1, 1] -> [1, 1];
    /// `reciprocal x` → `1/x`. Float dtypes.
    Reciprocal "reciprocal" [1, 1] -> [1, 1];
    /// `exp x` → `eˣ`. Float dtypes.
    Exp "exp" [1, 1] -> [1, 1];
    /// `log x` → natural logarithm. Float dtypes.
    Log "log" [1, 1] -> [1, 1];
    /// `tanh x`. Float dtypes.
    Tanh "tanh" [1, 1] -> [1, 1];
    /// `erf x`, the Gauss error function. Float dtypes.
    Erf "erf" [1, 1] -> [1, 1];
    /// `sigmoid x` → `1 / (1 + e⁻ˣ)`. Float dtypes.
    Sigmoid "sigmoid" [1, 1] -> [1, 1];
    /// `relu x` → `max(x, 0)`. Numeric dtypes.
    Relu "relu" [1, 1] -> [1, 1];
    /// `silu x` → `x · sigmoid(x)`. Float dtypes.
    Silu "silu" [1, 1] -> [1, 1];
    /// `softplus x` → `ln(1 + eˣ)`. Float dtypes.
    Softplus "softplus" [1, 1] -> [1, 1];
    /// `sin x` (radians). Float dtypes.
    Sin "sin" [1, 1] -> [1, 1];
    /// `cos x` (radians). Float dtypes.
    Cos "cos" [1, 1] -> [1, 1];
    /// `floor x`. Float dtypes.
    Floor "floor" [1, 1] -> [1, 1];
    /// `ceil x`. Float dtypes.
    Ceil "ceil" [1, 1] -> [1, 1];
    /// `round x`, halves to even (ONNX Round). Float dtypes.
    Round "round" [1, 1] -> [1, 1];
    /// `sign x` → -1, 0 or 1 (0 for NaN stays NaN). Numeric dtypes.
    Sign "sign" [1, 1] -> [1, 1];
    /// `not x` → logical negation. Bool only.
    Not "not" [1, 1] -> [1, 1];
    /// `isnan x` → bool, true where x is NaN. Float operand.
    IsNan "isnan" [1, 1] -> [1, 1];
    /// `identity x` → x unchanged.
    Identity "identity" [1, 1] -> [1, 1];
    /// `gelu x {approximate}`: GELU with the exact erf form (`"none"`) or the tanh
    /// approximation (`"tanh"`). Float dtypes.
    Gelu "gelu" [1, 1] -> [1, 1] { approximate: GeluApproximation };
    /// `leaky_relu x {alpha}` → `x` if `x ≥ 0` else `alpha·x`. Float dtypes.
    LeakyRelu "leaky_relu" [1, 1] -> [1, 1] { alpha: f64 };
    /// `clip x {min?, max?}` → `min(max(x, min), max)`; absent bounds do not clip. Numeric.
    Clip "clip" [1, 1] -> [1, 1] { min: Option<f64>, max: Option<f64> };
    /// `cast x {to}` → x converted to dtype `to`. Float→int truncates toward zero (NaN → 0,
    /// out-of-range saturates to i64 then wraps to the target width); int→narrower int wraps;
    /// anything→bool is `x != 0`; bool→number is 0/1. To a block-quantized dtype (`q8_0`,
    /// `q4_0`, `int4<G>`; float `x` only, static last dim a multiple of the block length):
    /// quantizes each block of the last dim with the reference quantizers of
    /// [`crate::quant`] (GGML `quantize_row_q8_0_ref` / `quantize_row_q4_0_ref`; symmetric
    /// max/7 for `int4<G>`) and the result holds the values dequantized from those blocks.
    /// Such a result may only feed `quantized_linear`'s weight; weight-derived casts are
    /// how passes quantize weights at compile time.
    Cast "cast" [1, 1] -> [1, 1] { to: DType };

    // ---------------------------------------------------------------- binary elementwise (broadcasting)
    /// `add a, b` → `a + b`. Same numeric dtype; broadcast. Integer overflow wraps.
    Add "add" [2, 2] -> [1, 1];
    /// `sub a, b` → `a - b`.
    Sub "sub" [2, 2] -> [1, 1];
    /// `mul a, b` → `a · b`.
    Mul "mul" [2, 2] -> [1, 1];
    /// `div a, b` → `a / b`; integers truncate toward zero; integer division by zero is a run-time error.
    Div "div" [2, 2] -> [1, 1];
    /// `pow a, b` → `aᵇ`. The exponent may have any numeric dtype; the result has `a`'s.
    Pow "pow" [2, 2] -> [1, 1];
    /// `max a, b` → elementwise maximum (NaN propagates).
    Max "max" [2, 2] -> [1, 1];
    /// `min a, b` → elementwise minimum (NaN propagates).
    Min "min" [2, 2] -> [1, 1];
    /// `mod a, b` → remainder with the sign of the divisor (Python `%`, ONNX Mod fmod=0).
    Mod "mod" [2, 2] -> [1, 1];
    /// `fmod a, b` → remainder with the sign of the dividend (C `fmod`, ONNX Mod fmod=1).
    Fmod "fmod" [2, 2] -> [1, 1];
    /// `and a, b` → logical and. Bool.
    And "and" [2, 2] -> [1, 1];
    /// `or a, b` → logical or. Bool.
    Or "or" [2, 2] -> [1, 1];
    /// `xor a, b` → logical xor. Bool.
    Xor "xor" [2, 2] -> [1, 1];
    /// `equal a, b` → bool `a == b`.
    Equal "equal" [2, 2] -> [1, 1];
    /// `less a, b` → bool `a < b`.
    Less "less" [2, 2] -> [1, 1];
    /// `less_equal a, b` → bool `a ≤ b`.
    LessEqual "less_equal" [2, 2] -> [1, 1];
    /// `greater a, b` → bool `a > b`.
    Greater "greater" [2, 2] -> [1, 1];
    /// `greater_equal a, b` → bool `a ≥ b`.
    GreaterEqual "greater_equal" [2, 2] -> [1, 1];
    /// `where cond, a, b` → `cond ? a : b`, all three broadcast together; `cond` is bool.
    Where "where" [3, 3] -> [1, 1];

    // ---------------------------------------------------------------- reductions
    /// `reduce_sum x {axes, keepdims}` → sum over `axes` (distinct; empty = no reduction,
    /// the identity). `keepdims` keeps reduced axes as size 1. Accumulates in f64.
    ReduceSum "reduce_sum" [1, 1] -> [1, 1] { axes: Vec<i64>, keepdims: bool };
    /// `reduce_mean` → arithmetic mean over `axes`.
    ReduceMean "reduce_mean" [1, 1] -> [1, 1] { axes: Vec<i64>, keepdims: bool };
    /// `reduce_max` → maximum over `axes`; over an empty extent, the lowest value of the dtype
    /// (−∞ for floats, `false` for bool).
    ReduceMax "reduce_max" [1, 1] -> [1, 1] { axes: Vec<i64>, keepdims: bool };
    /// `reduce_min` → minimum over `axes`; over an empty extent, the highest value of the dtype.
    ReduceMin "reduce_min" [1, 1] -> [1, 1] { axes: Vec<i64>, keepdims: bool };
    /// `reduce_prod` → product over `axes`.
    ReduceProd "reduce_prod" [1, 1] -> [1, 1] { axes: Vec<i64>, keepdims: bool };
    /// `reduce_sum_square` → `Σ x²` over `axes`.
    ReduceSumSquare "reduce_sum_square" [1, 1] -> [1, 1] { axes: Vec<i64>, keepdims: bool };
    /// `reduce_l1` → `Σ |x|` over `axes`.
    ReduceL1 "reduce_l1" [1, 1] -> [1, 1] { axes: Vec<i64>, keepdims: bool };
    /// `reduce_l2` → `√(Σ x²)` over `axes`.
    ReduceL2 "reduce_l2" [1, 1] -> [1, 1] { axes: Vec<i64>, keepdims: bool };
    /// `reduce_log_sum_exp` → `ln Σ eˣ` over `axes` (computed stably).
    ReduceLogSumExp "reduce_log_sum_exp" [1, 1] -> [1, 1] { axes: Vec<i64>, keepdims: bool };
    /// `argmax x {axis, keepdims, select_last_index}` → i64 index of the maximum along
    /// `axis` (first occurrence unless `select_last_index`).
    ArgMax "argmax" [1, 1] -> [1, 1] { axis: i64, keepdims: bool, select_last_index: bool };
    /// `argmin` → i64 index of the minimum along `axis`.
    ArgMin "argmin" [1, 1] -> [1, 1] { axis: i64, keepdims: bool, select_last_index: bool };
    /// `softmax x {axis}` → `exp(x - max) / Σ exp(x - max)` along `axis`. Float.
    Softmax "softmax" [1, 1] -> [1, 1] { axis: i64 };
    /// `log_softmax x {axis}` → `x - max - ln Σ exp(x - max)` along `axis`. Float.
    LogSoftmax "log_softmax" [1, 1] -> [1, 1] { axis: i64 };
    /// `cumsum x {axis, exclusive, reverse}` → running sum along `axis` (ONNX CumSum).
    CumSum "cumsum" [1, 1] -> [1, 1] { axis: i64, exclusive: bool, reverse: bool };
    /// `topk x {axis, k, largest, sorted}` → (values, i64 indices) of the `k` largest
    /// (or smallest) elements along `axis`; ties keep the lower index first.
    TopK "topk" [1, 1] -> [2, 2] { axis: i64, k: i64, largest: bool, sorted: bool };

    // ---------------------------------------------------------------- linear algebra
    /// `matmul a, b` → numpy `matmul`: 1-D operands are promoted (and the added dim
    /// removed afterwards), leading batch dims broadcast, contraction over `a`'s last and
    /// `b`'s second-to-last dim. Accumulates in f64.
    MatMul "matmul" [2, 2] -> [1, 1];
    /// `gemm a, b[, c] {alpha, beta, trans_a, trans_b}` → `alpha·op(a)·op(b) + beta·c`
    /// with 2-D `a`, `b` (op = transpose when the flag is set) and `c` broadcast to the result.
    Gemm "gemm" [2, 3] -> [1, 1] { alpha: f64, beta: f64, trans_a: bool, trans_b: bool };
    /// `linear x, w[, bias]` → `x · wᵀ + bias` with `w: [out, in]`, `x: [..., in]`,
    /// `bias: [out]`; result `[..., out]`. The KernelOps `linear` family.
    Linear "linear" [2, 3] -> [1, 1];
    /// `quantized_linear x, w[, bias]` or `quantized_linear x, w, scale[, bias]`: like
    /// `linear` but `w: [out, in]` is stored quantized. With a block dtype (`q8_0`,
    /// `q4_0`, `int4<G>`) the scales live in the blocks (3 operands at most); with an `i8`
    /// weight, `scale: f32[out]` gives one scale per output channel
    /// (`w_real[o, i] = scale[o] · w[o, i]`). Computes as dequantize-then-`linear`.
    QuantizedLinear "quantized_linear" [2, 4] -> [1, 1];
    /// `packed_linear x, wp[, bias] {out_features}`: `linear` with the weight prepacked into
    /// the CPU micro-kernel's panel layout. With `N = out_features` and `NR = 16`
    /// ([`PACK_NR`]), `wp: [ceil(N/16), in, 16]` holds `wp[p, k, j] = w[16p + j, k]` (zero for
    /// `16p + j ≥ N`), `x: [..., in]`, `bias: [N]`; result `[..., N]` =
    /// `linear x, w[, bias]`. Float dtypes; `wp` and `bias` have x's dtype.
    PackedLinear "packed_linear" [2, 3] -> [1, 1] { out_features: i64 };

    // ---------------------------------------------------------------- shape and data movement
    /// `reshape x` (result type gives the target) or `reshape x, shape {allowzero}` with an
    /// i64 1-D `shape` (ONNX semantics: `-1` infers one dim, `0` copies the input dim
    /// unless `allowzero`). Element count is preserved; data order is row-major.
    Reshape "reshape" [1, 2] -> [1, 1] { allowzero: bool };
    /// `transpose x {perm}` → dims permuted: result dim `i` is input dim `perm[i]`.
    Transpose "transpose" [1, 1] -> [1, 1] { perm: Vec<i64> };
    /// `concat x0, x1, … {axis}` → operands joined along `axis`; other dims must match.
    Concat "concat" [1, VARIADIC] -> [1, 1] { axis: i64 };
    /// `split x {axis}` → pieces along `axis` whose sizes are the results' declared dims
    /// on that axis (they must add up to the input dim).
    Split "split" [1, 1] -> [1, VARIADIC] { axis: i64 };
    /// `slice x {axes, starts, ends, steps}` or `slice x, starts, ends {axes, steps}` (i64
    /// 1-D `starts`/`ends` operands): ONNX Slice, with negative indices counted from the end
    /// and clamped, negative steps walking backwards. `steps` empty means all 1.
    Slice "slice" [1, 3] -> [1, 1] { axes: Vec<i64>, starts: Vec<i64>, ends: Vec<i64>, steps: Vec<i64> };
    /// `gather data, indices {axis}` → ONNX Gather: result shape is
    /// `data.shape[:axis] + indices.shape + data.shape[axis+1:]`; negative indices wrap once;
    /// out-of-range indices are a run-time error.
    Gather "gather" [2, 2] -> [1, 1] { axis: i64 };
    /// `gather_elements data, indices {axis}` → ONNX GatherElements (result has `indices`' shape).
    GatherElements "gather_elements" [2, 2] -> [1, 1] { axis: i64 };
    /// `gather_nd data, indices {batch_dims}` → ONNX GatherND.
    GatherNd "gather_nd" [2, 2] -> [1, 1] { batch_dims: i64 };
    /// `scatter_nd data, indices, updates {reduction}` → ONNX ScatterND: a copy of `data`
    /// with `updates` written (or combined) at the index tuples in `indices`.
    ScatterNd "scatter_nd" [3, 3] -> [1, 1] { reduction: ScatterReduction };
    /// `expand x` (result type gives the target) or `expand x, shape` (i64 1-D): numpy
    /// broadcast of `x` against the target shape (ONNX Expand: the result is the
    /// broadcast of both, so a target dim of 1 keeps the input dim).
    Expand "expand" [1, 2] -> [1, 1];
    /// `squeeze x {axes}` → the listed size-1 dims removed.
    Squeeze "squeeze" [1, 1] -> [1, 1] { axes: Vec<i64> };
    /// `unsqueeze x {axes}` → size-1 dims inserted at `axes` (positions in the result).
    Unsqueeze "unsqueeze" [1, 1] -> [1, 1] { axes: Vec<i64> };
    /// `shape x {start, end?}` → i64 1-D tensor of `x`'s dims `[start, end)` (clamped).
    Shape "shape" [1, 1] -> [1, 1] { start: i64, end: Option<i64> };
    /// `constant_of_shape {value}` (result type gives the shape) or
    /// `constant_of_shape shape {value}` with i64 1-D `shape`: a tensor filled with the
    /// scalar literal `value`, whose dtype is the result's.
    ConstantOfShape "constant_of_shape" [0, 1] -> [1, 1] { value: Tensor };
    /// `range start, limit, delta` (scalars of one numeric dtype) → 1-D
    /// `[start, start+delta, …)` with `max(ceil((limit-start)/delta), 0)` elements.
    Range "range" [3, 3] -> [1, 1];
    /// `trilu x {upper, k}` → lower (`upper=false`: keep `j ≤ i + k`) or upper (keep
    /// `j ≥ i + k`) triangle of the last two dims, zero elsewhere.
    Trilu "trilu" [1, 1] -> [1, 1] { upper: bool, k: i64 };
    /// `pad x {pads, mode, value}` → `pads = [begin_0, …, begin_n, end_0, …, end_n]`
    /// (negative crops), filled per `mode`.
    Pad "pad" [1, 1] -> [1, 1] { pads: Vec<i64>, mode: PadMode, value: f64 };
    /// `tile x {repeats}` → `x` repeated `repeats[i]` times along dim `i`.
    Tile "tile" [1, 1] -> [1, 1] { repeats: Vec<i64> };

    // ---------------------------------------------------------------- normalisation
    /// `layer_norm x, scale[, bias] {axis, epsilon}` → normalise over dims `[axis, rank)`:
    /// `(x - mean) / √(var + epsilon) · scale + bias` (population variance); `scale` and
    /// `bias` broadcast to the normalised dims.
    LayerNorm "layer_norm" [2, 3] -> [1, 1] { axis: i64, epsilon: f64 };
    /// `rms_norm x, weight {epsilon}` → `x / √(mean(x², last dim) + epsilon) · weight`,
    /// `weight: [hidden]`. The KernelOps NormOps `rms_norm`.
    RmsNorm "rms_norm" [2, 2] -> [1, 1] { epsilon: f64 };
    /// `rms_norm_residual x, residual, weight {epsilon}` → `(rms_norm(x + residual,
    /// weight), x + residual)`: the normalised value and the updated residual stream.
    RmsNormResidual "rms_norm_residual" [3, 3] -> [2, 2] { epsilon: f64 };

    // ---------------------------------------------------------------- fused LLM ops
    /// `rotary_embedding x, cos, sin, position_ids {interleaved, rotary_dim}`: rotary
    /// position embedding on `x: [batch, heads, seq, head_dim]` with tables
    /// `cos, sin: [max_pos, rotary_dim/2]` indexed by `position_ids: i64 [batch, seq]`.
    /// Only the first `rotary_dim` (0 = all of `head_dim`, must be even) features rotate.
    /// Pairs are `(i, i + rotary_dim/2)` (half-split, Llama/NeoX) or `(2i, 2i+1)` when
    /// `interleaved` (GPT-J): `(a, b) → (a·cos − b·sin, b·cos + a·sin)`.
    RotaryEmbedding "rotary_embedding" [4, 4] -> [1, 1] { interleaved: bool, rotary_dim: i64 };
    /// `attention q, k, v[, mask][, past_k, past_v] {scale?, causal}` — scaled dot-product
    /// attention with grouped-query heads. Layout `[batch, heads, seq, head_dim]`:
    /// `q: [B, H, S, D]`, `k, v: [B, Hkv, S_new, D]` (`Dv` may differ for `v`), `H` a
    /// multiple of `Hkv` (query head `h` reads kv head `h / (H/Hkv)`). With a KV cache
    /// (`past_k, past_v: [B, Hkv, P, D]`, 5 or 6 operands) the keys/values are
    /// `concat(past, new)` along the sequence and two more results return them
    /// (`present_k, present_v`). Scores are `q·kᵀ · scale` (default `1/√D`), plus `mask`
    /// (float, broadcast to `[B, H, S, T]`; or bool where `false` means masked out);
    /// with `causal`, query `i` sees key `j` only if `j ≤ i + (T − S)` (bottom-right
    /// aligned, so decode steps attend to the whole prefix). Softmax over keys, then `·v`.
    /// A fully masked row yields zeros.
    Attention "attention" [3, 6] -> [1, 3] { scale: Option<f64>, causal: bool };
    /// `silu_mul gate, up` → `silu(gate) · up` (SwiGLU). Same shape and dtype.
    SiluMul "silu_mul" [2, 2] -> [1, 1];
    /// `sample logits[, history] {temperature, top_k, top_p, repetition_penalty, seed}` →
    /// i64 token ids, one per row of `logits: [..., vocab]` (result drops the last dim).
    /// Per row `r`: logits of token ids in `history: i64 [..., H]` (negative ids ignored)
    /// are divided by `repetition_penalty` when positive and multiplied when not;
    /// `temperature == 0` then gives the argmax; otherwise logits are divided by the
    /// temperature, only the `top_k` largest are kept (0 = all), softmax is taken, the
    /// smallest prefix of the descending probabilities (ties by lower id) whose sum
    /// reaches `top_p` is kept, and the token is the first whose running sum exceeds
    /// `u · total`, where `u = (splitmix64(seed + r·γ) >> 11) · 2⁻⁵³` with `γ =
    /// 0x9E3779B97F4A7C15` and Vigna's `splitmix64(x)`: `z = x + γ; z = (z ^ (z >> 30)) ·
    /// 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) · 0x94D049BB133111EB; z ^ (z >> 31)`
    /// (wrapping u64 arithmetic) — so row `r` gets output `r + 1` of a generator seeded with
    /// `seed`. The repetition penalty applies once per distinct id in `history`.
    Sample "sample" [1, 2] -> [1, 1] { temperature: f64, top_k: i64, top_p: f64, repetition_penalty: f64, seed: i64 };
}

impl Op {
    /// True for ops that read and write elementwise with one operand.
    pub fn is_unary_elementwise(&self) -> bool {
        matches!(
            self,
            Op::Neg
                | Op::Abs
                | Op::Sqrt
                | Op::Rsqrt
                | Op::Reciprocal
                | Op::Exp
                | Op::Log
                | Op::Tanh
                | Op::Erf
                | Op::Sigmoid
                | Op::Relu
                | Op::Silu
                | Op::Softplus
                | Op::Sin
                | Op::Cos
                | Op::Floor
                | Op::Ceil
                | Op::Round
                | Op::Sign
                | Op::Not
                | Op::IsNan
                | Op::Identity
                | Op::Gelu { .. }
                | Op::LeakyRelu { .. }
                | Op::Clip { .. }
                | Op::Cast { .. }
        )
    }

    /// True for broadcasting binary elementwise ops.
    pub fn is_binary_elementwise(&self) -> bool {
        matches!(
            self,
            Op::Add
                | Op::Sub
                | Op::Mul
                | Op::Div
                | Op::Pow
                | Op::Max
                | Op::Min
                | Op::Mod
                | Op::Fmod
                | Op::And
                | Op::Or
                | Op::Xor
                | Op::Equal
                | Op::Less
                | Op::LessEqual
                | Op::Greater
                | Op::GreaterEqual
        )
    }

    /// True for the comparison ops, whose result is bool.
    pub fn is_comparison(&self) -> bool {
        matches!(self, Op::Equal | Op::Less | Op::LessEqual | Op::Greater | Op::GreaterEqual)
    }

    /// For reductions: the axes and keepdims flag.
    pub fn reduction(&self) -> Option<(&[i64], bool)> {
        match self {
            Op::ReduceSum { axes, keepdims }
            | Op::ReduceMean { axes, keepdims }
            | Op::ReduceMax { axes, keepdims }
            | Op::ReduceMin { axes, keepdims }
            | Op::ReduceProd { axes, keepdims }
            | Op::ReduceSumSquare { axes, keepdims }
            | Op::ReduceL1 { axes, keepdims }
            | Op::ReduceL2 { axes, keepdims }
            | Op::ReduceLogSumExp { axes, keepdims } => Some((axes, *keepdims)),
            _ => None,
        }
    }

    /// The attributes as a name-sorted map (the stable order the printer uses).
    pub fn attr_map(&self) -> BTreeMap<String, Attr> {
        self.attrs().into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_rebuilds_from_its_parts() {
        let ops = vec![
            Op::Softmax { axis: -1 },
            Op::Clip { min: Some(0.0), max: None },
            Op::Gelu { approximate: GeluApproximation::Tanh },
            Op::Attention { scale: None, causal: true },
            Op::Add,
            Op::PackedLinear { out_features: 40 },
        ];
        for op in ops {
            let rebuilt = Op::from_parts(op.name(), &op.attr_map()).unwrap();
            assert_eq!(rebuilt, op);
        }
    }

    #[test]
    fn bad_parts_are_named() {
        let err = Op::from_parts("softmax", &BTreeMap::new()).unwrap_err();
        assert_eq!(err.to_string(), "attribute `axis` of op `softmax` is required but missing");
        let attrs = BTreeMap::from([("axis".to_string(), Attr::Int(0)), ("bogus".to_string(), Attr::Int(1))]);
        assert!(Op::from_parts("softmax", &attrs).unwrap_err().to_string().contains("no attribute `bogus`"));
        assert!(matches!(Op::from_parts("frobnicate", &BTreeMap::new()), Err(OpBuildError::UnknownOp(_))));
        let names: std::collections::HashSet<_> = Op::NAMES.iter().collect();
        assert_eq!(names.len(), Op::NAMES.len(), "op names are unique");
    }
}
