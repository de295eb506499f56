//! Bench: the runtime's fixed cost per schedule step (binding buffers, evaluating dims,
//! launching chunks on the thread pool) with kernels that do almost nothing, so the number is
//! the overhead a decode step pays per kernel launch.
//!
//! `cargo run --release -p ferrumc-runtime --example run_overhead [steps] [runs]`

use ferrumc_runtime::abi::{RuntimeFnTable, FN_TABLE_VERSION};
use ferrumc_runtime::artifact::{ArtifactBuilder, Binding, Bucket, DType, EntryPoint, Poly, Step, TensorSig};
use ferrumc_runtime::model::{Model, Tensor};
use std::time::Instant;

unsafe extern "C" fn gemm_unused(
    _m: u64,
    _n: u64,
    _k: u64,
    _a: *const f32,
    _lda: u64,
    _b: *const u8,
    _ldb: u64,
    _c: *mut f32,
    _ldc: u64,
    _acc: u32,
) {
}

unsafe extern "C" fn unary_unused(_x: *const f32, _y: *mut f32, _n: u64) {}

/// Writes `begin` into the arena slot of each iteration (touches memory, nothing more).
unsafe extern "C" fn touch(buffers: *const *mut u8, _d: *const i64, _t: *const RuntimeFnTable, begin: u64, end: u64) {
    // SAFETY: the schedule binds an arena of at least `extent` u64.
    unsafe {
        let a = *buffers as *mut u64;
        for i in begin..end {
            *a.add(i as usize) = begin;
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let steps = args.first().copied().unwrap_or(300);
    let runs = args.get(1).copied().unwrap_or(200);
    let table = RuntimeFnTable {
        version: FN_TABLE_VERSION,
        sgemm: gemm_unused,
        sgemm_packed: gemm_unused,
        gemm_q8_0: gemm_unused,
        gemm_q4_0: gemm_unused,
        exp: unary_unused,
        tanh: unary_unused,
        erf: unary_unused,
        attention_row: ferrumc_runtime::ukernels::scalar::attention_row,
        attention_row_masked: ferrumc_runtime::ukernels::scalar::attention_row_masked,
        silu_mul: ferrumc_runtime::ukernels::scalar::silu_mul,
        gemm_i8: ferrumc_runtime::ukernels::scalar::gemm_i8,
        topk: ferrumc_runtime::ukernels::topk::topk,
        sgemm_nt: ferrumc_runtime::ukernels::scalar::sgemm_nt,
        f64_math: ferrumc_runtime::ukernels::scalar_f64::SCALAR_MATH_F64,
    };
    for (label, extent, grain) in [("inline (1 chunk)", 1, 0), ("parallel (1 chunk per thread)", 64, 1)] {
        let mut b = ArtifactBuilder::new(&format!("{}-unknown-linux-gnu", std::env::consts::ARCH));
        let k = b.add_kernel("touch", &[0xc3]);
        let sig = TensorSig { name: "x".into(), dtype: DType::F32, dims: vec![Poly::symbol("t")], range: None };
        let ep = EntryPoint { name: "f".into(), inputs: vec![sig], outputs: vec![] };
        let step = Step {
            kernel: k,
            bindings: vec![Binding::Arena { offset: Poly::constant(0) }],
            dims: vec![Poly::symbol("t")],
            extent: Poly::constant(extent),
            grain,
        };
        b.add_entry_point(ep, vec![step; steps], vec![Bucket { bounds: vec![], arena_size: Poly::constant(8 * 64) }]);
        let mut model = Model::from_bytes(&b.build()?)?.with_fn_table(table)?.with_kernel_override(k, touch)?;
        model.init()?;
        let x = Tensor::from_f32(vec![16], &[0.0; 16])?;
        for _ in 0..10 {
            model.run("f", &[("x", x.view())])?;
        }
        // 20 batches; on a shared machine the minimum and median are the meaningful numbers.
        let mut per_run: Vec<f64> = (0..20)
            .map(|_| {
                let t0 = Instant::now();
                for _ in 0..runs.div_ceil(20) {
                    model.run("f", &[("x", x.view())]).map(drop).unwrap_or_else(|e| panic!("{e}"));
                }
                t0.elapsed().as_secs_f64() / runs.div_ceil(20) as f64
            })
            .collect();
        per_run.sort_by(f64::total_cmp);
        let (min, median) = (per_run[0] * 1e6, per_run[10] * 1e6);
        println!(
            "{label}: {steps} steps, per run min {min:.1} µs / median {median:.1} µs, per step min {:.2} µs / median {:.2} µs ({} threads)",
            min / steps as f64,
            median / steps as f64,
            model.threads()
        );
    }
    Ok(())
}
