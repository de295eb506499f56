//! The Cranelift backend's f16/bf16 loads and stores (`cpu/half.rs`, integer code) against
//! the `half` crate, bit for bit: every one of the 65536 f16 and bf16 bit patterns loaded as
//! f32, and f32 → f16 / bf16 stores (round to nearest even) on about a million f32 bit
//! patterns spread over the whole range plus, for every f16, its exact midpoints with the
//! next one (ties) and their neighbours one f32 ulp away. NaN must give a NaN (the payload is
//! not compared); everything else must be identical, signed zeros and subnormals included.

use ferrumc_codegen::cpu::JitKernels;
use ferrumc_codegen::kernel::*;
use ferrumc_ir::DType;
use half::{bf16, f16};

mod common;

/// `out[i] = in[i]` for `n` elements, converting between the buffers' dtypes.
fn convert_kernel(from: DType, to: DType, n: i64) -> Kernel {
    let index = IndexExpr::var(Var(1), Size::constant(1));
    Kernel {
        name: format!("convert_{from}_{to}"),
        buffers: vec![
            BufferParam { dtype: from, role: BufferRole::Input },
            BufferParam { dtype: to, role: BufferRole::Output },
        ],
        dims: vec![],
        parallel: LoopExtent { extent: Size::constant(1), tile: 1 },
        locals: vec![],
        body: vec![Stmt::Loop {
            var: Var(1),
            extent: Extent::Size(Size::constant(n)),
            body: vec![Stmt::Store { buffer: 1, index: index.clone(), value: Expr::Load { buffer: 0, index } }],
        }],
    }
}

/// Run `convert_kernel(from, to)` on raw element bytes.
fn run(from: DType, to: DType, input: &[u8], n: usize, out_bytes: usize) -> Vec<u8> {
    let jit = JitKernels::compile(&[convert_kernel(from, to, n as i64)]).expect("conversion kernel compiles");
    let f = jit.get(0).expect("one kernel");
    let mut out = vec![0u8; n * out_bytes];
    let buffers = [input.as_ptr() as *mut u8, out.as_mut_ptr()];
    let table = common::reference_table();
    // SAFETY: both buffers hold `n` elements of their dtype; the kernel has no dims.
    unsafe { f(buffers.as_ptr(), std::ptr::null(), &table, 0, 1) };
    out
}

#[test]
fn every_half_loads_exactly() {
    let bits: Vec<u16> = (0..=u16::MAX).collect();
    let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
    for (dtype, reference) in [
        (DType::F16, (|b| f16::from_bits(b).to_f32()) as fn(u16) -> f32),
        (DType::BF16, |b| bf16::from_bits(b).to_f32()),
    ] {
        let out = run(dtype, DType::F32, &bytes, bits.len(), 4);
        for (k, &b) in bits.iter().enumerate() {
            let got = f32::from_le_bytes([out[4 * k], out[4 * k + 1], out[4 * k + 2], out[4 * k + 3]]);
            let want = reference(b);
            let ok = if want.is_nan() { got.is_nan() } else { got.to_bits() == want.to_bits() };
            assert!(ok, "{dtype} bits {b:#06x}: loaded {got:e} ({:#010x}), expected {want:e}", got.to_bits());
        }
    }
}

#[test]
fn f32_stores_round_to_nearest_even() {
    let mut values: Vec<u32> = (0..1_048_576u64).map(|k| (k * 4099) as u32).collect();
    // Each f16's midpoint with its successor (a tie) and one f32 ulp either side.
    for h in 0..0x7bffu16 {
        let (lo, hi) = (f16::from_bits(h).to_f32() as f64, f16::from_bits(h + 1).to_f32() as f64);
        let mid = ((lo + hi) / 2.0) as f32;
        for m in [mid, -mid] {
            values.extend([m.to_bits().wrapping_sub(1), m.to_bits(), m.to_bits() + 1]);
        }
    }
    values.extend([0x7f80_0000, 0xff80_0000, 0x7fc0_0000, 0x7f80_0001, 0x477f_f000, 0x477f_efff, 0x8000_0000]);
    let bytes: Vec<u8> = values.iter().flat_map(|b| b.to_le_bytes()).collect();
    for (dtype, reference) in
        [(DType::F16, (|x| f16::from_f32(x).to_f32()) as fn(f32) -> f32), (DType::BF16, |x| bf16::from_f32(x).to_f32())]
    {
        let out = run(DType::F32, dtype, &bytes, values.len(), 2);
        for (k, &v) in values.iter().enumerate() {
            let h = u16::from_le_bytes([out[2 * k], out[2 * k + 1]]);
            let got = if dtype == DType::F16 { f16::from_bits(h).to_f32() } else { bf16::from_bits(h).to_f32() };
            let want = reference(f32::from_bits(v));
            let ok = if want.is_nan() { got.is_nan() } else { got.to_bits() == want.to_bits() };
            assert!(ok, "{dtype} store of {:e} ({v:#010x}): got {got:e}, expected {want:e}", f32::from_bits(v));
        }
    }
}
