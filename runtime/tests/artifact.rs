//! End-to-end tests of the artifact format and the loader: a hand-built artifact (real
//! hand-assembled x86-64 code for one kernel, Rust `extern "C"` overrides for the others) run
//! with symbolic dims against an f64 reference; round trip; determinism; every single-byte
//! flip and every truncation rejected; version, CPU-feature, target and shape errors.

use ferrumc_runtime::abi::{RuntimeFnTable, FN_TABLE_VERSION};
use ferrumc_runtime::artifact::format::FORMAT_VERSION;
use ferrumc_runtime::artifact::writer::reseal;
use ferrumc_runtime::artifact::{
    Artifact, ArtifactBuilder, Binding, Bucket, DType, EntryPoint, Placement, Poly, Step, TensorSig,
};
use ferrumc_runtime::error::RuntimeError;
use ferrumc_runtime::model::{Model, Tensor};
use sha2::{Digest, Sha256};

/// `out[i] = in[i] + 1.0` for `i` in `[begin, end)`, `in = buffers[0]`, `out = buffers[1]`
/// (System V x86-64; assembled with GNU as, checked with objdump):
/// ```text
/// mov rax,[rdi]; mov r9,[rdi+8]; mov r10d,0x3f800000; movd xmm1,r10d
/// 1: cmp rcx,r8; jae 2f; movss xmm0,[rax+rcx*4]; addss xmm0,xmm1; movss [r9+rcx*4],xmm0
///    inc rcx; jmp 1b
/// 2: ret
/// ```
const ADD1_X86_64: [u8; 44] = [
    0x48, 0x8b, 0x07, 0x4c, 0x8b, 0x4f, 0x08, 0x41, 0xba, 0x00, 0x00, 0x80, 0x3f, 0x66, 0x41, 0x0f, 0x6e, 0xca, 0x4c,
    0x39, 0xc1, 0x73, 0x14, 0xf3, 0x0f, 0x10, 0x04, 0x88, 0xf3, 0x0f, 0x58, 0xc1, 0xf3, 0x41, 0x0f, 0x11, 0x04, 0x89,
    0x48, 0xff, 0xc1, 0xeb, 0xe7, 0xc3,
];
/// `ret` on x86-64 (a placeholder body for kernels the tests override).
const RET: [u8; 1] = [0xc3];

fn host_target() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

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

unsafe extern "C" fn exp_array(x: *const f32, y: *mut f32, n: u64) {
    for i in 0..n as usize {
        // SAFETY: the caller passes n valid elements.
        unsafe { *y.add(i) = (*x.add(i)).exp() };
    }
}

unsafe extern "C" fn tanh_array(x: *const f32, y: *mut f32, n: u64) {
    for i in 0..n as usize {
        // SAFETY: the caller passes n valid elements.
        unsafe { *y.add(i) = (*x.add(i)).tanh() };
    }
}

fn test_table() -> RuntimeFnTable {
    RuntimeFnTable {
        version: FN_TABLE_VERSION,
        sgemm: gemm_unused,
        sgemm_packed: gemm_unused,
        gemm_q8_0: gemm_unused,
        gemm_q4_0: gemm_unused,
        exp: exp_array,
        tanh: tanh_array,
        erf: tanh_array,
        attention_row: ferrumc_runtime::ukernels::scalar::attention_row,
        attention_row_masked: ferrumc_runtime::ukernels::scalar::attention_row_masked,
        silu_mul: ferrumc_runtime::ukernels::scalar::silu_mul,
        gemm_i8: ferrumc_runtime::ukernels::scalar::gemm_i8,
        topk: ferrumc_runtime::ukernels::topk::topk,
        sgemm_nt: ferrumc_runtime::ukernels::scalar::sgemm_nt,
        f64_math: ferrumc_runtime::ukernels::scalar_f64::SCALAR_MATH_F64,
    }
}

/// Rust version of `ADD1_X86_64` (for hosts that are not x86-64).
#[allow(dead_code)]
unsafe extern "C" fn add1(buffers: *const *mut u8, _dims: *const i64, _t: *const RuntimeFnTable, begin: u64, end: u64) {
    // SAFETY: the schedule binds [input, arena] with at least `end` f32 each.
    unsafe {
        let (x, y) = (*buffers as *const f32, *buffers.add(1) as *mut f32);
        for i in begin as usize..end as usize {
            *y.add(i) = *x.add(i) + 1.0;
        }
    }
}

/// Rows `[begin, end)` of `y[r, j] = exp(a[r, j]) · w[0] + n` with `n = dims[0]`; buffers
/// `[a, w, y]`; `exp` through the function table.
unsafe extern "C" fn exp_scale(
    buffers: *const *mut u8,
    dims: *const i64,
    t: *const RuntimeFnTable,
    begin: u64,
    end: u64,
) {
    // SAFETY: the schedule binds [arena rows, weight [1], output rows] and dims [n].
    unsafe {
        let (a, w, y) = (*buffers as *const f32, *buffers.add(1) as *const f32, *buffers.add(2) as *mut f32);
        let n = *dims as usize;
        for r in begin as usize..end as usize {
            ((*t).exp)(a.add(r * n), y.add(r * n), n as u64);
            for j in 0..n {
                *y.add(r * n + j) = *y.add(r * n + j) * *w + n as f32;
            }
        }
    }
}

/// Increments the u64 counter in state buffer 0 and copies it to output `calls` (extent 1).
unsafe extern "C" fn count(buffers: *const *mut u8, _d: *const i64, _t: *const RuntimeFnTable, begin: u64, end: u64) {
    // SAFETY: the schedule binds [state (≥ 8 bytes), output i64 [1]].
    unsafe {
        let (s, o) = (*buffers as *mut u64, *buffers.add(1) as *mut i64);
        for _ in begin..end {
            *s += 1;
            *o = *s as i64;
        }
    }
}

fn sig(name: &str, dtype: DType, dims: Vec<Poly>) -> TensorSig {
    TensorSig { name: name.into(), dtype, dims, range: None }
}

const W: f32 = 0.5;

/// Entry `forward(x: f32[b, n], m: f32[2n]) -> (y: f32[b, n], calls: i64[1])`,
/// `y = exp(x + 1) · W + n`, `calls` counts runs since the last reset.
fn toy_builder() -> ArtifactBuilder {
    let (b, n) = (Poly::symbol("b"), Poly::symbol("n"));
    let mut a = ArtifactBuilder::new(&host_target());
    a.metadata("model", "toy").metadata("author", "tests");
    let k_add =
        if cfg!(target_arch = "x86_64") { a.add_kernel("add1", &ADD1_X86_64) } else { a.add_kernel("add1", &RET) };
    let k_exp = a.add_kernel("exp_scale", &RET);
    let k_count = a.add_kernel("count", &RET);
    let w = a.add_weight("w", DType::F32, &[1], &W.to_le_bytes()).unwrap();
    let kv = a.add_state("kv", 8);
    let ep = EntryPoint {
        name: "forward".into(),
        inputs: vec![sig("x", DType::F32, vec![b.clone(), n.clone()]), sig("m", DType::F32, vec![n.scale(2)])],
        outputs: vec![
            sig("y", DType::F32, vec![b.clone(), n.clone()]),
            sig("calls", DType::I64, vec![Poly::constant(1)]),
        ],
    };
    let arena_at = Poly::constant(64);
    let steps = vec![
        Step {
            kernel: k_add,
            bindings: vec![Binding::Input { index: 0 }, Binding::Arena { offset: arena_at.clone() }],
            dims: vec![],
            extent: b.mul(&n),
            grain: 4,
        },
        Step {
            kernel: k_exp,
            bindings: vec![
                Binding::Arena { offset: arena_at },
                Binding::Weight { index: w },
                Binding::Output { index: 0 },
            ],
            dims: vec![n.clone()],
            extent: b.clone(),
            grain: 1,
        },
        Step {
            kernel: k_count,
            bindings: vec![Binding::State { index: kv }, Binding::Output { index: 1 }],
            dims: vec![],
            extent: Poly::constant(1),
            grain: 0,
        },
    ];
    let buckets = vec![
        Bucket { bounds: vec![("b".into(), 1), ("n".into(), 64)], arena_size: n.scale(4).add(&Poly::constant(64)) },
        Bucket { bounds: vec![], arena_size: b.mul(&n).scale(4).add(&Poly::constant(64)) },
    ];
    a.add_entry_point(ep, steps, buckets);
    a
}

fn toy_model(bytes: &[u8]) -> Model {
    let m = Model::from_bytes(bytes).unwrap().with_fn_table(test_table()).unwrap();
    let m = m.with_kernel_override(1, exp_scale).unwrap().with_kernel_override(2, count).unwrap();
    if cfg!(target_arch = "x86_64") {
        m
    } else {
        m.with_kernel_override(0, add1).unwrap()
    }
}

fn run_forward(model: &mut Model, b: usize, n: usize) -> (Vec<f32>, Vec<f32>, i64) {
    let x: Vec<f32> = (0..b * n).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
    let xt = Tensor::from_f32(vec![b, n], &x).unwrap();
    let mt = Tensor::from_f32(vec![2 * n], &vec![0.0; 2 * n]).unwrap();
    let out = model.run("forward", &[("m", mt.view()), ("x", xt.view())]).unwrap();
    assert_eq!(out.len(), 2);
    // Tensors (inputs and outputs) are 64-byte aligned, so outputs fed back are bound in place.
    for t in [&xt, &mt, &out[0].1, &out[1].1] {
        assert_eq!(t.bytes().as_ptr() as usize % 64, 0, "{t:?} is not 64-byte aligned");
    }
    assert_eq!(out[0].0, "y");
    assert_eq!(out[0].1.shape(), &[b, n]);
    assert_eq!(out[1].0, "calls");
    (x, out[0].1.to_f32().unwrap(), out[1].1.to_i64().unwrap()[0])
}

#[test]
fn runs_an_entry_point_with_symbolic_dims_against_an_f64_reference() {
    let bytes = toy_builder().build().unwrap();
    let mut model = toy_model(&bytes);
    model.init().unwrap();
    assert_eq!(model.metadata()["model"], "toy");
    assert_eq!(model.entry_points()[0].inputs[0].shape_string(), "[b, n]");
    assert_eq!(model.entry_points()[0].inputs[1].shape_string(), "[2*n]");
    let mut runs = 0;
    // (1, 5) uses the bounded bucket; the others the general one; 1000×3 spans many chunks.
    for (b, n) in [(1, 5), (3, 7), (2, 1), (1000, 3), (4, 0)] {
        let (x, y, calls) = run_forward(&mut model, b, n);
        runs += 1;
        assert_eq!(calls, runs);
        for (i, (&xi, &yi)) in x.iter().zip(&y).enumerate() {
            let want = (f64::from(xi) + 1.0).exp() * f64::from(W) + n as f64;
            // f32 add, exp and fma-free multiply-add: a few ulp of the result.
            assert!((f64::from(yi) - want).abs() <= 1e-6 * want.abs().max(1.0), "b={b} n={n} i={i}: {yi} vs {want}");
        }
    }
    model.reset().unwrap();
    model.drain().unwrap();
    assert_eq!(run_forward(&mut model, 2, 2).2, 1, "reset zeroes the state buffer");
}

/// Runs `forward` on `[b, n]` inputs and checks `y` against the f64 reference; returns the
/// outputs (the caller decides when they are dropped).
fn run_checked(model: &mut Model, b: usize, n: usize, seed: usize) -> Vec<(String, Tensor)> {
    let x: Vec<f32> = (0..b * n).map(|i| (((i + seed) * 37 % 23) as f32 - 11.0) / 7.0).collect();
    let xt = Tensor::from_f32(vec![b, n], &x).unwrap();
    let mt = Tensor::from_f32(vec![2 * n], &vec![0.0; 2 * n]).unwrap();
    let out = model.run("forward", &[("m", mt.view()), ("x", xt.view())]).unwrap();
    let y = out[0].1.to_f32().unwrap();
    assert_eq!(y.len(), b * n);
    for (i, (&xi, &yi)) in x.iter().zip(&y).enumerate() {
        let want = (f64::from(xi) + 1.0).exp() * f64::from(W) + n as f64;
        assert!((f64::from(yi) - want).abs() <= 1e-6 * want.abs().max(1.0), "b={b} n={n} i={i}: {yi} vs {want}");
    }
    out
}

#[test]
fn large_output_buffers_of_dropped_tensors_are_reused_and_live_ones_never_are() {
    let bytes = toy_builder().build().unwrap();
    let mut model = toy_model(&bytes);
    // y of 1024×300 f32 (1.2 MB) is a mapped buffer; 1024×260 (1.06 MB) fits in it.
    let first = run_checked(&mut model, 1024, 300, 0);
    let first_at = first[0].1.bytes().as_ptr();
    drop(first);
    let second = run_checked(&mut model, 1024, 260, 5);
    assert_eq!(second[0].1.bytes().as_ptr(), first_at, "a dropped output's buffer is reused");
    // While `second` lives its buffer is not handed out again, and a run leaves it intact.
    let kept = second[0].1.to_f32().unwrap();
    let third = run_checked(&mut model, 1024, 300, 9);
    assert_ne!(third[0].1.bytes().as_ptr(), second[0].1.bytes().as_ptr());
    assert_eq!(second[0].1.to_f32().unwrap(), kept, "a live output is never overwritten");
    // Clones own fresh memory; dropping the model first leaves tensors valid.
    let clone = third[0].1.clone();
    drop(model);
    assert_eq!(clone, third[0].1);
    drop(third);
}

#[test]
fn small_output_buffers_are_reused_at_their_exact_size_and_rewritten_whole() {
    let bytes = toy_builder().build().unwrap();
    let mut model = toy_model(&bytes);
    // 4×16 f32 (256 bytes) is a small buffer: reused for the same size, with every element
    // rewritten (`run_checked` checks them all) although it is not cleared in between.
    let first = run_checked(&mut model, 4, 16, 0);
    let first_at = first[0].1.bytes().as_ptr();
    drop(first);
    let second = run_checked(&mut model, 4, 16, 3);
    assert_eq!(second[0].1.bytes().as_ptr(), first_at, "a dropped small output's buffer is reused");
    // Another size does not take it; while `second` lives it is not handed out.
    let other = run_checked(&mut model, 4, 15, 1);
    assert_ne!(other[0].1.bytes().as_ptr(), first_at);
    let third = run_checked(&mut model, 4, 16, 7);
    assert_ne!(third[0].1.bytes().as_ptr(), second[0].1.bytes().as_ptr());
}

#[test]
fn loads_from_a_file_through_mmap() {
    let bytes = toy_builder().build().unwrap();
    let path = std::env::temp_dir().join(format!("ferrumc-artifact-test-{}.fcm", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let loaded = Model::load(&path);
    std::fs::remove_file(&path).unwrap();
    let m = loaded.unwrap().with_fn_table(test_table()).unwrap().with_threads(3);
    let mut m = m.with_kernel_override(1, exp_scale).unwrap().with_kernel_override(2, count).unwrap();
    if !cfg!(target_arch = "x86_64") {
        m = m.with_kernel_override(0, add1).unwrap();
    }
    let (_, y, _) = run_forward(&mut m, 2, 3);
    assert_eq!(y.len(), 6);
    assert!(matches!(Model::load("/nonexistent/ferrumc.fcm"), Err(RuntimeError::Io(_))));
}

#[test]
fn both_placements_load_the_same_bytes_and_reject_a_flip_in_any_piece() {
    // Bodies of one piece, of several with a partial last piece, and of exactly two whole
    // pieces (the resident read then hashes no partial piece).
    let piece = ferrumc_runtime::artifact::format::CHECKSUM_PIECE;
    let build = |weight_len: usize, note: usize| {
        let mut b = toy_builder();
        let values: Vec<u8> = (0..weight_len).map(|i| (i * 13 % 241) as u8).collect();
        b.add_weight("big", DType::U8, &[weight_len as u64], &values).unwrap();
        b.metadata("note", &"x".repeat(note));
        (b.build().unwrap(), values)
    };
    let body_len = |bytes: &[u8]| bytes.len() - 32;
    // Weights are padded to 64 bytes, so a metadata note of the right length (one byte per
    // byte) makes the body exactly two pieces.
    let exact = (0..128).find(|&n| body_len(&build(piece, n).0) % 64 == 0).map(|n| {
        let w = piece + 2 * piece - body_len(&build(piece, n).0);
        build(w, n)
    });
    let cases = [build(16, 0), build(5 << 20, 0), exact.expect("a note length that aligns the body")];
    assert_eq!(body_len(&cases[2].0), 2 * piece, "the whole-pieces case is set up");
    let path = std::env::temp_dir().join(format!("ferrumc-placement-test-{}.fcm", std::process::id()));
    for (bytes, values) in &cases {
        std::fs::write(&path, bytes).unwrap();
        for placement in [Placement::Mapped, Placement::HugePages] {
            let a = Artifact::open_with(&path, placement).unwrap();
            assert_eq!(a.weight("big").unwrap().2, values.as_slice(), "{placement:?}");
            assert_eq!(a.manifest(), Artifact::from_bytes(bytes).unwrap().manifest());
        }
        let end = body_len(bytes);
        for at in [9, piece - 1, piece, end - 1, end, bytes.len() - 1].into_iter().filter(|&i| i < bytes.len()) {
            let mut t = bytes.clone();
            t[at] ^= 0x20;
            std::fs::write(&path, &t).unwrap();
            for placement in [Placement::Mapped, Placement::HugePages] {
                let r = Artifact::open_with(&path, placement);
                assert!(matches!(r, Err(RuntimeError::Tampered)), "byte {at} of {}, {placement:?}", t.len());
            }
        }
    }
    std::fs::remove_file(&path).unwrap();
}

#[cfg(target_arch = "x86_64")]
#[test]
fn hand_assembled_code_runs_from_the_executable_mapping() {
    let mut a = ArtifactBuilder::new(&host_target());
    a.add_kernel("ret", &RET);
    a.add_kernel("add1", &ADD1_X86_64);
    let art = Artifact::from_bytes(&a.build().unwrap()).unwrap();
    assert_eq!(art.manifest().kernels[1].code_offset, 16, "kernels are 16-byte aligned in CODE");
    let x: Vec<f32> = (0..10).map(|i| i as f32 * 0.25).collect();
    let mut y = vec![-7.0f32; 10];
    let buffers = [x.as_ptr() as *mut u8, y.as_mut_ptr() as *mut u8];
    let table = test_table();
    // SAFETY: both kernels follow the KernelFn ABI; add1 reads buffers[0][2..8] and writes
    // buffers[1][2..8], both 10 f32 long.
    unsafe {
        (art.kernel_fn(0).unwrap())(buffers.as_ptr(), std::ptr::null(), &table, 0, 0);
        (art.kernel_fn(1).unwrap())(buffers.as_ptr(), std::ptr::null(), &table, 2, 8);
    }
    for i in 0..10 {
        let want = if (2..8).contains(&i) { x[i] + 1.0 } else { -7.0 };
        assert_eq!(y[i], want, "i={i}");
    }
    assert!(art.kernel_fn(2).is_none());
}

#[test]
fn round_trip_is_equal() {
    let b = toy_builder();
    let bytes = b.build().unwrap();
    let art = Artifact::from_bytes(&bytes).unwrap();
    assert_eq!(art.manifest(), b.manifest());
    assert_eq!(art.manifest().fn_table_version, FN_TABLE_VERSION);
    assert_eq!(art.manifest().ferrumc_version, env!("CARGO_PKG_VERSION"));
    let (dt, shape, w) = art.weight("w").unwrap();
    assert_eq!((dt, shape, w), (DType::F32, &[1u64][..], &W.to_le_bytes()[..]));
    assert_eq!(w.as_ptr() as usize % 64, 0, "weights are 64-byte aligned in memory");
    assert_eq!(&art.code()[..1], if cfg!(target_arch = "x86_64") { &ADD1_X86_64[..1] } else { &RET[..] });
}

#[test]
fn building_is_deterministic() {
    let one = toy_builder().build().unwrap();
    let two = toy_builder().build().unwrap();
    assert_eq!(one, two);
    // Metadata order and CPU-feature order do not matter.
    let mut a = toy_builder();
    a.metadata("z", "1").metadata("a", "2").require_cpu_feature("sse2").require_cpu_feature("sse");
    let mut b = toy_builder();
    b.metadata("a", "2").metadata("z", "1").require_cpu_feature("sse").require_cpu_feature("sse2");
    assert_eq!(a.build().unwrap(), b.build().unwrap());
    assert_ne!(one, a.build().unwrap());
}

#[test]
fn equal_weight_bytes_are_stored_once_and_every_name_still_reads_them() {
    let a: Vec<u8> = (0..4096u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let mut other = a.clone();
    other[4095] ^= 1;
    let mut one = toy_builder();
    one.add_weight("a", DType::F32, &[1024, 4], &a).unwrap();
    let single = one.build().unwrap();
    let mut b = toy_builder();
    b.add_weight("a", DType::F32, &[1024, 4], &a).unwrap();
    b.add_weight("a_again", DType::F32, &[1024, 4], &a).unwrap();
    b.add_weight("a_as_bytes", DType::U8, &[16384], &a).unwrap();
    b.add_weight("almost_a", DType::F32, &[1024, 4], &other).unwrap();
    let bytes = b.build().unwrap();
    let art = Artifact::from_bytes(&bytes).unwrap();
    let ws = &art.manifest().weights;
    let offset = |name: &str| ws.iter().find(|w| w.name == name).unwrap().offset;
    assert_eq!(offset("a"), offset("a_again"));
    assert_eq!(offset("a"), offset("a_as_bytes"));
    assert_ne!(offset("a"), offset("almost_a"));
    assert_eq!(art.weight("a_again").unwrap(), (DType::F32, &[1024u64, 4][..], &a[..]));
    assert_eq!(art.weight("a_as_bytes").unwrap(), (DType::U8, &[16384u64][..], &a[..]));
    assert_eq!(art.weight("almost_a").unwrap().2, &other[..]);
    // Only `almost_a` (plus its alignment padding) and the three table entries were added.
    let growth = bytes.len() - single.len();
    assert!(growth >= other.len() && growth < other.len() + 256, "{growth}");
}

#[test]
fn streaming_writes_the_same_bytes_as_build() {
    let mut b = toy_builder();
    let big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 253) as u8).collect();
    b.add_weight("big", DType::U8, &[big.len() as u64], &big).unwrap();
    b.add_weight("big_again", DType::U8, &[big.len() as u64], &big).unwrap();
    b.add_weight("odd", DType::U8, &[3], &[1, 2, 3]).unwrap();
    for builder in [toy_builder(), b] {
        let mut streamed = Vec::new();
        let n = builder.write_to(&mut streamed).unwrap();
        assert_eq!(n as usize, streamed.len());
        assert!(streamed == builder.build().unwrap(), "streamed bytes differ");
    }
    // A builder `build` refuses is refused by `write_to` too, before anything is written.
    let mut bad = toy_builder();
    bad.require_cpu_feature("b").require_cpu_feature("a");
    bad.add_entry_point(
        EntryPoint { name: "broken".into(), inputs: vec![], outputs: vec![] },
        vec![Step { kernel: 99, bindings: vec![], dims: vec![], extent: Poly::constant(1), grain: 0 }],
        vec![Bucket { bounds: vec![], arena_size: Poly::constant(0) }],
    );
    assert!(bad.build().is_err());
    let mut sink = Vec::new();
    assert!(bad.write_to(&mut sink).is_err());
    assert!(sink.is_empty());
}

#[test]
fn every_single_byte_flip_is_rejected() {
    let bytes = toy_builder().build().unwrap();
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x5a;
        match Artifact::from_bytes(&t) {
            Err(RuntimeError::BadMagic) => assert!(i < 8, "byte {i}"),
            Err(RuntimeError::Tampered) => assert!(i >= 8, "byte {i}"),
            other => panic!("byte {i}: {other:?}"),
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = toy_builder().build().unwrap();
    for len in 0..bytes.len() {
        let r = Artifact::from_bytes(&bytes[..len]);
        assert!(matches!(r, Err(RuntimeError::BadMagic | RuntimeError::Tampered)), "len {len}: {r:?}");
    }
}

#[test]
fn corrupt_contents_with_a_valid_checksum_never_panic() {
    // The checksum catches accidents; these check the decoder itself: every byte changed to
    // several values and resealed must give an error or a consistent artifact, never a panic.
    let bytes = toy_builder().build().unwrap();
    let mut errors = 0;
    for i in 8..bytes.len() - 32 {
        for v in [0x00, 0x01, 0x7f, 0xff] {
            let mut t = bytes.clone();
            if t[i] == v {
                continue;
            }
            t[i] = v;
            reseal(&mut t);
            if Artifact::from_bytes(&t).is_err() {
                errors += 1;
            }
        }
    }
    assert!(errors > 100, "{errors}");
}

#[test]
fn wrong_format_and_fn_table_versions_are_reported() {
    let mut b = toy_builder();
    b.format_version(FORMAT_VERSION + 1);
    let r = Artifact::from_bytes(&b.build_unchecked());
    assert!(
        matches!(r, Err(RuntimeError::UnsupportedVersion { found, supported: FORMAT_VERSION }) if found == FORMAT_VERSION + 1),
        "{r:?}"
    );
    let mut b = toy_builder();
    b.fn_table_version(FN_TABLE_VERSION + 1);
    let r = Artifact::from_bytes(&b.build_unchecked());
    assert!(matches!(r, Err(RuntimeError::FnTableVersion { .. })), "{r:?}");
    let mut bad_table = test_table();
    bad_table.version += 1;
    let m = Model::from_bytes(&toy_builder().build().unwrap()).unwrap();
    assert!(matches!(m.with_fn_table(bad_table), Err(RuntimeError::FnTableVersion { .. })));
}

#[test]
fn an_intact_version_1_file_sealed_with_sha256_is_an_old_version_not_tampered() {
    // Version 1 ended in a SHA-256 of the body; reproduce such a file exactly.
    let mut b = toy_builder();
    b.format_version(1);
    let mut bytes = b.build_unchecked();
    let body_len = bytes.len() - 32;
    let digest = Sha256::digest(&bytes[..body_len]);
    bytes[body_len..].copy_from_slice(&digest);
    let r = Artifact::from_bytes(&bytes);
    assert!(matches!(r, Err(RuntimeError::UnsupportedVersion { found: 1, supported: FORMAT_VERSION })), "{r:?}");
    // The same file with one body byte changed is tampered, whatever its version field says.
    for i in [8, 12, body_len / 2, body_len - 1] {
        let mut t = bytes.clone();
        t[i] ^= 0x01;
        assert!(matches!(Artifact::from_bytes(&t), Err(RuntimeError::Tampered)), "byte {i}");
    }
}

#[test]
fn the_checksum_is_the_xxh3_tree_of_the_body() {
    // An independent reference of the documented tree: XXH3-128 of every 4 MiB piece, then
    // XXH3-128 (seeds 0 and 1) of those digests and the body length; small bodies (one
    // piece) and bodies of several pieces (hashed in parallel, a partial last piece).
    use xxhash_rust::xxh3::{xxh3_128, xxh3_128_with_seed};
    for weight_len in [4usize, 3 << 20, 9 << 20] {
        let mut b = toy_builder();
        let values: Vec<u8> = (0..weight_len).map(|i| (i * 7 % 251) as u8).collect();
        b.add_weight("big", DType::U8, &[weight_len as u64], &values).unwrap();
        let bytes = b.build().unwrap();
        let body = &bytes[..bytes.len() - 32];
        let mut leaves: Vec<u8> = body.chunks(4 << 20).flat_map(|p| xxh3_128(p).to_le_bytes()).collect();
        leaves.extend_from_slice(&(body.len() as u64).to_le_bytes());
        let mut want = xxh3_128_with_seed(&leaves, 0).to_le_bytes().to_vec();
        want.extend_from_slice(&xxh3_128_with_seed(&leaves, 1).to_le_bytes());
        assert_eq!(&bytes[body.len()..], want.as_slice(), "{weight_len}");
        // Streaming (`write_to`) seals the same bytes as `build`.
        let mut streamed = Vec::new();
        b.write_to(&mut streamed).unwrap();
        assert_eq!(streamed, bytes, "{weight_len}");
        assert!(Artifact::from_bytes(&bytes).is_ok());
    }
}

#[test]
fn an_intact_version_2_file_sealed_with_blake3_is_an_old_version_not_tampered() {
    let mut b = toy_builder();
    b.format_version(2);
    let mut bytes = b.build_unchecked();
    let body_len = bytes.len() - 32;
    let digest = *blake3::hash(&bytes[..body_len]).as_bytes();
    bytes[body_len..].copy_from_slice(&digest);
    let r = Artifact::from_bytes(&bytes);
    assert!(matches!(r, Err(RuntimeError::UnsupportedVersion { found: 2, supported: FORMAT_VERSION })), "{r:?}");
    let mut t = bytes.clone();
    t[body_len / 2] ^= 0x01;
    assert!(matches!(Artifact::from_bytes(&t), Err(RuntimeError::Tampered)));
}

#[test]
fn missing_cpu_feature_and_wrong_target_are_reported() {
    let mut b = toy_builder();
    b.require_cpu_feature("avx512vnni_fake");
    match Artifact::from_bytes(&b.build().unwrap()) {
        Err(RuntimeError::MissingCpuFeature(f)) => assert_eq!(f, "avx512vnni_fake"),
        other => panic!("{other:?}"),
    }
    for target in ["riscv1024-unknown-none", "x86_64-pc-windows-msvc"] {
        let mut b = ArtifactBuilder::new(target);
        b.add_kernel("k", &RET);
        let r = Artifact::from_bytes(&b.build().unwrap());
        if cfg!(windows) && target.contains("windows") {
            continue;
        }
        assert!(matches!(r, Err(RuntimeError::WrongTarget { .. })), "{target}: {r:?}");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn present_cpu_features_load() {
    let mut b = toy_builder();
    b.require_cpu_feature("sse2");
    assert!(Artifact::from_bytes(&b.build().unwrap()).is_ok());
}

#[test]
fn run_time_errors_name_the_culprit() {
    let mut model = toy_model(&toy_builder().build().unwrap());
    let x = Tensor::from_f32(vec![3, 5], &[0.0; 15]).unwrap();
    let m_ok = Tensor::from_f32(vec![10], &[0.0; 10]).unwrap();
    let m_bad = Tensor::from_f32(vec![11], &[0.0; 11]).unwrap();
    match model.run("forward", &[("x", x.view()), ("m", m_bad.view())]) {
        Err(RuntimeError::ShapeMismatch { input, expected, found }) => {
            assert_eq!((input.as_str(), expected.as_str(), found.as_str()), ("m", "[10]", "[11]"));
        }
        other => panic!("{other:?}"),
    }
    let x1 = Tensor::from_f32(vec![15], &[0.0; 15]).unwrap();
    match model.run("forward", &[("x", x1.view()), ("m", m_ok.view())]) {
        Err(RuntimeError::ShapeMismatch { input, .. }) => assert_eq!(input, "x"),
        other => panic!("{other:?}"),
    }
    let xi = Tensor::from_i64(vec![3, 5], &[0; 15]).unwrap();
    let r = model.run("forward", &[("x", xi.view()), ("m", m_ok.view())]);
    assert!(matches!(r, Err(RuntimeError::DTypeMismatch { expected: DType::F32, found: DType::I64, .. })), "{r:?}");
    let r = model.run("forward", &[("x", x.view())]);
    assert!(matches!(&r, Err(RuntimeError::MissingInput { input, .. }) if input == "m"), "{r:?}");
    let r = model.run("forward", &[("x", x.view()), ("m", m_ok.view()), ("x", x.view())]);
    assert!(matches!(&r, Err(RuntimeError::UnexpectedInput { input, .. }) if input == "x"), "{r:?}");
    let r = model.run("forward", &[("x", x.view()), ("m", m_ok.view()), ("q", x.view())]);
    assert!(matches!(&r, Err(RuntimeError::UnexpectedInput { input, .. }) if input == "q"), "{r:?}");
    assert!(matches!(model.run("nope", &[]), Err(RuntimeError::UnknownEntryPoint(e)) if e == "nope"));
    let mut no_table = Model::from_bytes(&toy_builder().build().unwrap()).unwrap();
    assert!(matches!(no_table.run("forward", &[("x", x.view()), ("m", m_ok.view())]), Err(RuntimeError::NoFnTable)));
    assert!(Tensor::from_f32(vec![2, 2], &[0.0; 3]).is_err());
    // Still usable after errors.
    assert!(model.run("forward", &[("x", x.view()), ("m", m_ok.view())]).is_ok());
}

#[test]
fn builder_rejects_inconsistent_artifacts() {
    let mut b = toy_builder();
    let ep =
        EntryPoint { name: "g".into(), inputs: vec![], outputs: vec![sig("y", DType::F32, vec![Poly::symbol("t")])] };
    b.add_entry_point(ep, vec![], vec![Bucket { bounds: vec![], arena_size: Poly::constant(0) }]);
    assert!(matches!(b.build(), Err(RuntimeError::Malformed { section: "ENTRY_POINTS", .. })), "unbindable symbol");
    let mut b = toy_builder();
    let ep = EntryPoint { name: "g".into(), inputs: vec![], outputs: vec![] };
    let step = Step { kernel: 9, bindings: vec![], dims: vec![], extent: Poly::constant(1), grain: 0 };
    b.add_entry_point(ep, vec![step], vec![Bucket { bounds: vec![], arena_size: Poly::constant(0) }]);
    assert!(matches!(b.build(), Err(RuntimeError::Malformed { section: "SCHEDULE", .. })), "kernel index");
    let mut b = toy_builder();
    assert!(b.add_weight("bad", DType::F32, &[3], &[0; 8]).is_err());
    assert!(b.add_weight("q", DType::Q8_0, &[2, 32], &[0; 68]).is_ok());
    assert!(b.build().is_ok());
}

/// Adds 1 to u32 elements `[begin, end)` of buffer 0.
unsafe extern "C" fn bump(buffers: *const *mut u8, _d: *const i64, _t: *const RuntimeFnTable, begin: u64, end: u64) {
    // SAFETY: the schedule binds an arena of at least `extent` u32.
    unsafe {
        let a = *buffers as *mut u32;
        for i in begin as usize..end as usize {
            *a.add(i) += 1;
        }
    }
}

/// Copies `n = dims[0]` u32 from buffer 0 to buffer 1 (extent 1).
unsafe extern "C" fn copy_out(buffers: *const *mut u8, d: *const i64, _t: *const RuntimeFnTable, begin: u64, end: u64) {
    // SAFETY: buffers [arena, output], both `dims[0]` u32.
    unsafe {
        if begin < end {
            std::ptr::copy_nonoverlapping(*buffers as *const u32, *buffers.add(1) as *mut u32, *d as usize);
        }
    }
}

#[test]
fn every_chunk_of_every_launch_runs_exactly_once() {
    // Steps with extents 0..=6 over an n-element arena prefix and one with extent n: on teams
    // of 1..=5 threads, chunk counts vary between launches (workers sit some out). Element i
    // must end up bumped once per step whose extent exceeds i.
    let n = 1000i64;
    let mut b = ArtifactBuilder::new(&host_target());
    let k_bump = b.add_kernel("bump", &RET);
    let k_copy = b.add_kernel("copy_out", &RET);
    let ep = EntryPoint {
        name: "f".into(),
        inputs: vec![sig("x", DType::F32, vec![Poly::symbol("t")])],
        outputs: vec![sig("y", DType::I32, vec![Poly::constant(n)])],
    };
    let arena = Binding::Arena { offset: Poly::constant(0) };
    let mut steps = Vec::new();
    let extents: Vec<i64> = (0..300).map(|s| if s % 8 == 7 { n } else { s % 7 }).collect();
    for &e in &extents {
        steps.push(Step {
            kernel: k_bump,
            bindings: vec![arena.clone()],
            dims: vec![],
            extent: Poly::constant(e),
            grain: 1,
        });
    }
    steps.push(Step {
        kernel: k_copy,
        bindings: vec![arena, Binding::Output { index: 0 }],
        dims: vec![Poly::constant(n)],
        extent: Poly::constant(1),
        grain: 0,
    });
    b.add_entry_point(ep, steps, vec![Bucket { bounds: vec![], arena_size: Poly::constant(4 * n) }]);
    let bytes = b.build().unwrap();
    let x = Tensor::from_f32(vec![1], &[0.0]).unwrap();
    for threads in 1..=5 {
        let m = Model::from_bytes(&bytes).unwrap().with_fn_table(test_table()).unwrap().with_threads(threads);
        let mut m = m.with_kernel_override(k_bump, bump).unwrap().with_kernel_override(k_copy, copy_out).unwrap();
        for run in 1..=3u32 {
            let out = m.run("f", &[("x", x.view())]).unwrap();
            assert_eq!(m.threads(), threads);
            let y: Vec<u32> =
                out[0].1.bytes().chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            for (i, &v) in y.iter().enumerate() {
                // The arena persists between runs of the entry point (it is scratch, not reset).
                let want = run * extents.iter().filter(|&&e| e > i as i64).count() as u32;
                assert_eq!(v, want, "threads {threads} run {run} element {i}");
            }
        }
    }
}

#[test]
fn integer_inputs_outside_their_recorded_range_are_refused_before_running() {
    let mut a = ArtifactBuilder::new(&host_target());
    let ids = TensorSig { range: Some((-10, 9)), ..sig("ids", DType::I64, vec![Poly::symbol("n")]) };
    let ep = EntryPoint { name: "lookup".into(), inputs: vec![ids], outputs: vec![] };
    a.add_entry_point(ep, vec![], vec![Bucket { bounds: vec![], arena_size: Poly::constant(0) }]);
    let bytes = a.build().unwrap();
    let mut model = Model::from_bytes(&bytes).unwrap().with_fn_table(test_table()).unwrap();
    assert_eq!(model.entry_points()[0].inputs[0].range, Some((-10, 9)), "the range survives the round trip");
    let run = |model: &mut Model, values: &[i64]| {
        let t = Tensor::from_i64(vec![values.len()], values).unwrap();
        model.run("lookup", &[("ids", t.view())]).map(|_| ())
    };
    assert!(run(&mut model, &[0, 9, -10, 3]).is_ok());
    for (values, index, value) in [(&[0, 10, 3][..], 1, 10), (&[-11][..], 0, -11), (&[1, 2, i64::MAX][..], 2, i64::MAX)]
    {
        match run(&mut model, values) {
            Err(RuntimeError::ValueOutOfRange { input, index: i, value: v, lo: -10, hi: 9 }) => {
                assert_eq!((input.as_str(), i, v), ("ids", index, value));
            }
            other => panic!("{values:?}: expected ValueOutOfRange, got {other:?}"),
        }
    }
}
