//! Properties of the generated Cranelift IR: vector loops where strides allow them,
//! micro-kernel calls through the table, refusal (not panic) of ill-formed kernels, and
//! mutable locals with data-dependent addressing run on concrete buffers.

mod common;

use ferrumc_codegen::cpu::{clif_text, JitKernels};
use ferrumc_codegen::kernel::*;
use ferrumc_codegen::CodegenError;
use ferrumc_ir::DType;

#[test]
fn contiguous_loops_and_reductions_use_f32x4() {
    let (_, groups) = common::lower(
        "module @m
func @forward(%x: f32[?t, 64], %w: f32[64]) -> (y: f32[?t, 64]) {
  %0 = rms_norm %x, %w {epsilon = 1e-5} : f32[?t, 64]
  return %0
}
",
    );
    let clif = clif_text(&groups[0].kernel).unwrap();
    assert!(clif.contains("f32x4"), "{clif}");
    assert!(clif.contains("extractlane"), "reduction folds its vector accumulators:\n{clif}");
}

#[test]
fn strided_loops_stay_scalar_and_calls_go_through_the_table() {
    let (_, groups) = common::lower(
        "module @m
func @forward(%x: f32[?t, 64], %wt: f32[64, 40]) -> (y: f32[?t, 40]) {
  %0 = matmul %x, %wt : f32[?t, 40]
  return %0
}
",
    );
    let clif = clif_text(&groups[0].kernel).unwrap();
    assert!(clif.contains("call_indirect"), "{clif}");
    assert!(!clif.contains("f32x4"), "{clif}");
}

#[test]
fn ill_formed_kernels_are_errors() {
    let base = Kernel {
        name: "bad".into(),
        buffers: vec![BufferParam { dtype: DType::F32, role: BufferRole::Output }],
        dims: vec![],
        parallel: LoopExtent { extent: Size::constant(4), tile: 1 },
        locals: vec![],
        body: vec![],
    };
    let mut unbound_var = base.clone();
    unbound_var.body =
        vec![Stmt::Store { buffer: 0, index: IndexExpr::var(Var(7), Size::constant(1)), value: Expr::f32(1.0) }];
    let mut bad_buffer = base.clone();
    bad_buffer.body = vec![Stmt::Store { buffer: 3, index: IndexExpr::default(), value: Expr::f32(1.0) }];
    let mut bad_type = base.clone();
    bad_type.body = vec![Stmt::Store { buffer: 0, index: IndexExpr::default(), value: Expr::Const(Const::I64(1)) }];
    let mut unbound_local = base.clone();
    unbound_local.locals = vec![ScalarType::F32];
    unbound_local.body = vec![Stmt::Store { buffer: 0, index: IndexExpr::default(), value: Expr::Local(LocalId(0)) }];
    for k in [unbound_var, bad_buffer, bad_type, unbound_local] {
        assert!(matches!(JitKernels::compile(&[k]), Err(CodegenError::Invalid(_))));
    }
}

/// The same kernels go into an object file (the artifact path) through `define_kernel`.
#[test]
fn kernels_emit_into_an_object_module() {
    use cranelift_module::{Linkage, Module};
    use cranelift_object::{ObjectBuilder, ObjectModule};
    let (_, groups) = common::lower(
        "module @m
func @forward(%x: f32[?t, 64], %w: f32[64], %wt: f32[64, 40]) -> (y: f32[?t, 40]) {
  %0 = rms_norm %x, %w {epsilon = 1e-5} : f32[?t, 64]
  %1 = matmul %0, %wt : f32[?t, 40]
  %2 = gelu %1 {approximate = \"none\"} : f32[?t, 40]
  return %2
}
",
    );
    let isa = ferrumc_codegen::cpu::host_isa().unwrap();
    let builder = ObjectBuilder::new(isa, "kernels", cranelift_module::default_libcall_names()).unwrap();
    let mut module = ObjectModule::new(builder);
    for g in &groups {
        ferrumc_codegen::cpu::define_kernel(&mut module, &g.kernel, Linkage::Export).unwrap();
    }
    assert!(module.declarations().get_functions().count() >= 2);
    let bytes = module.finish().emit().unwrap();
    assert!(bytes.len() > 64);
}

/// A kernel with a mutable local (running sum over `i1`, stored after every step), a
/// data-dependent load (`LoadAt` through an index read from an i64 buffer) and integer
/// division/remainder, run on concrete buffers and checked against the same loops in Rust.
#[test]
fn mutable_locals_and_data_dependent_addressing_run_correctly() {
    let n = 5i64;
    let k = Kernel {
        name: "mutable".into(),
        buffers: vec![
            BufferParam { dtype: DType::F32, role: BufferRole::Input },
            BufferParam { dtype: DType::I64, role: BufferRole::Input },
            BufferParam { dtype: DType::F32, role: BufferRole::Output },
        ],
        dims: vec![],
        parallel: LoopExtent { extent: Size::constant(2), tile: 1 },
        locals: vec![ScalarType::F32, ScalarType::I64],
        body: vec![
            Stmt::Let { local: LocalId(0), value: Expr::f32(0.0) },
            // base = (ids[p] % 3) · n
            Stmt::Let {
                local: LocalId(1),
                value: Expr::binary(
                    BinaryOp::Mul,
                    Expr::binary(
                        BinaryOp::Rem,
                        Expr::Load { buffer: 1, index: IndexExpr::var(Var::PARALLEL, Size::constant(1)) },
                        Expr::i64(3),
                    ),
                    Expr::i64(n),
                ),
            },
            Stmt::Loop {
                var: Var(1),
                extent: Extent::Size(Size::constant(n)),
                body: vec![
                    Stmt::Assign {
                        local: LocalId(0),
                        value: Expr::binary(
                            BinaryOp::Add,
                            Expr::Local(LocalId(0)),
                            Expr::load_at(0, Expr::Local(LocalId(1)), IndexExpr::var(Var(1), Size::constant(1))),
                        ),
                    },
                    Stmt::Store {
                        buffer: 2,
                        index: IndexExpr::var(Var::PARALLEL, Size::constant(n)).plus_var(Var(1), &Size::constant(1)),
                        value: Expr::Local(LocalId(0)),
                    },
                ],
            },
        ],
    };
    let jit = JitKernels::compile(std::slice::from_ref(&k)).unwrap();
    let data: Vec<f32> = (0..3 * n).map(|x| x as f32 * 0.5).collect();
    let ids: Vec<i64> = vec![7, 2];
    let mut out = vec![0f32; 2 * n as usize];
    let ptrs = [data.as_ptr() as *mut u8, ids.as_ptr() as *mut u8, out.as_mut_ptr() as *mut u8];
    let table = common::reference_table();
    let f = jit.get(0).unwrap();
    // SAFETY: buffers match the kernel's indexing (ids % 3 < 3 rows of n).
    unsafe { f(ptrs.as_ptr(), std::ptr::null(), &table, 0, 2) };
    for (p, &id) in ids.iter().enumerate() {
        let mut acc = 0f32;
        for i in 0..n as usize {
            acc += data[(id % 3) as usize * n as usize + i];
            assert_eq!(out[p * n as usize + i], acc, "p {p} i {i}");
        }
    }
    // Assigning a local before its `let` is refused, not a panic.
    let mut bad = k.clone();
    bad.body.remove(0);
    assert!(matches!(JitKernels::compile(&[bad]), Err(CodegenError::Invalid(_))));
}
