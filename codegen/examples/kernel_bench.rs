//! Throughput of JIT-compiled kernels on this machine (one thread, whole parallel range per
//! launch), next to a plain Rust loop computing the same thing. Run with
//! `cargo run -p ferrumc-codegen --example kernel_bench` (Cranelift's output does not depend
//! on the Rust profile).

use ferrumc_codegen::cpu::JitKernels;
use ferrumc_codegen::lower::lower_function;
use ferrumc_ir::text::parse_module;
use ferrumc_passes::{PassManager, PassOptions};
use ferrumc_runtime::abi::RuntimeFnTable;
use std::time::Instant;

unsafe extern "C" fn no_gemm(
    _: u64,
    _: u64,
    _: u64,
    _: *const f32,
    _: u64,
    _: *const u8,
    _: u64,
    _: *mut f32,
    _: u64,
    _: u32,
) {
}
unsafe extern "C" fn no_unary(_: *const f32, _: *mut f32, _: u64) {}

fn kernel(src: &str) -> (JitKernels, u64) {
    let mut m = parse_module(src).expect("bench module parses");
    PassManager::new(&["fusion-groups"], PassOptions::default()).unwrap().run(&mut m).unwrap();
    let groups = lower_function(&m.functions[0]).unwrap();
    let (_, g) = groups.into_iter().next().unwrap();
    let g = g.unwrap();
    let iters = g.kernel.parallel_iterations(&[]).unwrap();
    println!("{}", g.kernel);
    (JitKernels::compile(&[g.kernel]).unwrap(), iters)
}

/// The group's kernel from the general coordinate template instead (the fallback).
fn coords_kernel(src: &str) -> (JitKernels, u64) {
    let mut m = parse_module(src).expect("bench module parses");
    PassManager::new(&["fusion-groups"], PassOptions::default()).unwrap().run(&mut m).unwrap();
    let f = &m.functions[0];
    let ops: Vec<_> = f.op_order().unwrap();
    let g = ferrumc_codegen::lower::lower_ops(f, &ops, 0, "coords").unwrap();
    let iters = g.kernel.parallel_iterations(&[]).unwrap();
    (JitKernels::compile(&[g.kernel]).unwrap(), iters)
}

fn time(label: &str, bytes: f64, mut f: impl FnMut()) {
    f();
    let reps = 200;
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!("{label:<32} {:>9.1} µs  {:>6.2} GB/s", s * 1e6, bytes / s / 1e9);
}

fn main() {
    let table = RuntimeFnTable {
        version: ferrumc_runtime::abi::FN_TABLE_VERSION,
        sgemm: no_gemm,
        sgemm_packed: no_gemm,
        gemm_q8_0: no_gemm,
        gemm_q4_0: no_gemm,
        exp: no_unary,
        tanh: no_unary,
        erf: no_unary,
        attention_row: ferrumc_runtime::ukernels::scalar::attention_row,
        attention_row_masked: ferrumc_runtime::ukernels::scalar::attention_row_masked,
        silu_mul: ferrumc_runtime::ukernels::scalar::silu_mul,
        gemm_i8: ferrumc_runtime::ukernels::scalar::gemm_i8,
        topk: ferrumc_runtime::ukernels::topk::topk,
        sgemm_nt: ferrumc_runtime::ukernels::scalar::sgemm_nt,
        f64_math: ferrumc_runtime::ukernels::scalar_f64::SCALAR_MATH_F64,
    };
    let (rows, n) = (128usize, 1536usize);
    let g: Vec<f32> = (0..rows * n).map(|i| (i as f32 * 0.001).sin()).collect();
    let u: Vec<f32> = (0..rows * n).map(|i| (i as f32 * 0.002).cos()).collect();
    let mut y = vec![0f32; rows * n];

    let (k, iters) = kernel(&format!(
        "module @m\nfunc @f(%g: f32[{rows}, {n}], %u: f32[{rows}, {n}]) -> (y: f32[{rows}, {n}]) {{\n  %0 = silu_mul %g, %u : f32[{rows}, {n}]\n  return %0\n}}\n"
    ));
    let f = k.get(0).unwrap();
    let bytes = (3 * rows * n * 4) as f64;
    time("silu_mul 128x1536 (jit)", bytes, || {
        let ptrs = [g.as_ptr() as *mut u8, u.as_ptr() as *mut u8, y.as_mut_ptr() as *mut u8];
        // SAFETY: buffers match the kernel's static shapes.
        unsafe { f(ptrs.as_ptr(), std::ptr::null(), &table, 0, iters) };
    });
    time("silu_mul 128x1536 (rust loop)", bytes, || {
        for i in 0..rows * n {
            let x = g[i];
            y[i] = x / (1.0 + (-x).exp()) * u[i];
        }
        std::hint::black_box(&y);
    });

    let h = 576usize;
    let x: Vec<f32> = (0..rows * h).map(|i| (i as f32 * 0.003).sin()).collect();
    let w: Vec<f32> = (0..h).map(|i| 1.0 + i as f32 * 1e-3).collect();
    let mut out = vec![0f32; rows * h];
    let (k, iters) = kernel(&format!(
        "module @m\nfunc @f(%x: f32[{rows}, {h}], %w: f32[{h}]) -> (y: f32[{rows}, {h}]) {{\n  %0 = rms_norm %x, %w {{epsilon = 1e-5}} : f32[{rows}, {h}]\n  return %0\n}}\n"
    ));
    let f = k.get(0).unwrap();
    let bytes = (2 * rows * h * 4) as f64;
    time("rms_norm 128x576 (jit)", bytes, || {
        let ptrs = [x.as_ptr() as *mut u8, w.as_ptr() as *mut u8, out.as_mut_ptr() as *mut u8];
        // SAFETY: as above.
        unsafe { f(ptrs.as_ptr(), std::ptr::null(), &table, 0, iters) };
    });
    time("rms_norm 128x576 (rust loop)", bytes, || {
        for r in 0..rows {
            let row = &x[r * h..(r + 1) * h];
            let ss: f32 = row.iter().map(|v| v * v).sum();
            let s = 1.0 / (ss / h as f32 + 1e-5).sqrt();
            for j in 0..h {
                out[r * h + j] = row[j] * s * w[j];
            }
        }
        std::hint::black_box(&out);
    });

    // cumsum along rows: the scan template (O(n) per row) against the coordinate template's
    // per-element reduction (O(n²) per row), on a shorter row so the latter finishes.
    let c = 256usize;
    let xs: Vec<f32> = (0..rows * c).map(|i| (i as f32 * 0.003).sin()).collect();
    let mut ys = vec![0f32; rows * c];
    let src = format!(
        "module @m\nfunc @f(%x: f32[{rows}, {c}]) -> (y: f32[{rows}, {c}]) {{\n  %0 = cumsum %x {{axis = 1, exclusive = false, reverse = false}} : f32[{rows}, {c}]\n  return %0\n}}\n"
    );
    let bytes = (2 * rows * c * 4) as f64;
    for (label, (k, iters)) in
        [("cumsum 128x256 (scan)", kernel(&src)), ("cumsum 128x256 (coords)", coords_kernel(&src))]
    {
        let f = k.get(0).unwrap();
        time(label, bytes, || {
            let ptrs = [xs.as_ptr() as *mut u8, ys.as_mut_ptr() as *mut u8];
            // SAFETY: as above.
            unsafe { f(ptrs.as_ptr(), std::ptr::null(), &table, 0, iters) };
        });
    }

    // topk through the runtime helper, k = n/2 (a quadratic formulation would rank n² pairs).
    let kk = n / 2;
    let (mut tv, mut ti) = (vec![0f32; rows * kk], vec![0i64; rows * kk]);
    let (k, iters) = kernel(&format!(
        "module @m\nfunc @f(%x: f32[{rows}, {n}]) -> (v: f32[{rows}, {kk}], i: i64[{rows}, {kk}]) {{\n  %0, %1 = topk %x {{axis = 1, k = {kk}, largest = true, sorted = true}} : f32[{rows}, {kk}], i64[{rows}, {kk}]\n  return %0, %1\n}}\n"
    ));
    let f = k.get(0).unwrap();
    time("topk 128x1536 k=768 (helper)", (rows * n * 4) as f64, || {
        let ptrs = [g.as_ptr() as *mut u8, tv.as_mut_ptr() as *mut u8, ti.as_mut_ptr() as *mut u8];
        // SAFETY: as above.
        unsafe { f(ptrs.as_ptr(), std::ptr::null(), &table, 0, iters) };
    });
}
