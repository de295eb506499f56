//! [`Kernel`] → Cranelift IR, with the `abi::KernelFn` signature.
//!
//! Shape of the generated function:
//! * entry: load the buffer pointers and dim values the kernel uses;
//! * the parallel loop over iterations `[begin, end)`: `p = iteration · tile`, the tile length
//!   `min(tile, extent - p)`;
//! * statements in order. Loops are SSA loops (the induction variable and reduction
//!   accumulators are block parameters, no stack slots).
//!
//! Vectorization: an innermost [`Stmt::Loop`] whose body only binds and stores f32 values,
//! and whose accesses use its variable with stride 1 (contiguous) or not at all (broadcast),
//! runs 4 lanes at a time (`f32x4`), then a scalar tail. A [`Stmt::Reduce`] with such a
//! value runs 8 elements per iteration in two `f32x4` accumulators (two independent
//! dependency chains), folds them, then finishes with a scalar tail. Everything else is
//! scalar. Mutable locals ([`Stmt::Assign`]) are Cranelift `Variable`s (the frontend builds
//! their SSA form); all other locals are plain SSA values. Sizes are recomputed from the dims where used; Cranelift's e-graph pass merges
//! and hoists them.
//!
//! Storage dtypes (see the kernel form's module doc): `i8`/`u8`/`i32` elements load with
//! `sload8`/`uload8`/`sload32` into `i64` and store with `istore8`/`istore32` (wrapping);
//! `f16`/`bf16` elements load as 16-bit integers converted to `f32` and store rounded to
//! nearest even ([`super::half`]). Only `f32` buffers take part in vector loops; kernels
//! over other dtypes run the scalar path. `f64` arithmetic, comparisons, `min`/`max` and
//! `sqrt` are native; `f64` `exp`, `log`, `tanh`, `erf`, `sin`, `cos`, `pow` and `fmod` call
//! the runtime's scalar f64 functions (`RuntimeFnTable::f64_math`), and an `f32` `fmod`
//! calls the f64 one on the widened operands (exact, since `fmod` is).

use super::{half, math};
use crate::kernel::*;
use crate::CodegenError;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, InstBuilder, MemFlagsData, SigRef, Signature, StackSlot, StackSlotData, StackSlotKind, Type, Value,
};
use cranelift_codegen::isa::{CallConv, TargetIsa};
use cranelift_frontend::{FunctionBuilder, Variable};
use ferrumc_ir::DType;
use ferrumc_runtime::abi::{RuntimeFnTable, ScalarMathF64};
use std::collections::{HashMap, HashSet};

const LANES: i64 = 4;
const VF32: Type = types::F32X4;

/// The signature of every kernel: `abi::KernelFn`.
pub fn kernel_signature(isa: &dyn TargetIsa) -> Signature {
    let ptr = isa.pointer_type();
    let mut sig = Signature::new(isa.default_call_conv());
    for t in [ptr, ptr, ptr, types::I64, types::I64] {
        sig.params.push(AbiParam::new(t));
    }
    sig
}

/// The signature of `abi::GemmFn`.
fn gemm_signature(ptr: Type, cc: CallConv) -> Signature {
    let mut sig = Signature::new(cc);
    for t in [types::I64, types::I64, types::I64, ptr, types::I64, ptr, types::I64, ptr, types::I64, types::I32] {
        sig.params.push(AbiParam::new(t));
    }
    sig
}

fn invalid(kernel: &Kernel, msg: impl std::fmt::Display) -> CodegenError {
    CodegenError::Invalid(format!("kernel `{}`: {msg}", kernel.name))
}

/// What a kernel's `[begin, end)` launch range counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchUnits {
    /// Parallel iterations (tiles): `JitKernels` and the tests' executor.
    Iterations,
    /// Elements of the parallel extent: the kernel runs the tiles whose first element lies
    /// in the range. Artifacts use this, since their schedules state the extent as a
    /// polynomial over the symbols, which cannot express `⌈extent / tile⌉`.
    Elements,
}

/// How an expression is evaluated: one element, or 4 lanes along `var`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Scalar,
    Vector(Var),
}

/// Translates one kernel into the function under construction in `b`.
pub(crate) struct Translator<'a, 'b> {
    pub b: &'a mut FunctionBuilder<'b>,
    k: &'a Kernel,
    ptr: Type,
    cc: CallConv,
    buffers: Vec<Value>,
    dims: Vec<Value>,
    table: Value,
    vars: HashMap<Var, Value>,
    tile_len: Option<Value>,
    /// Local → (value, is a vector).
    locals: HashMap<LocalId, (Value, bool)>,
    /// Locals reassigned somewhere in the kernel, and their variables once defined.
    mutable: HashSet<LocalId>,
    variables: HashMap<LocalId, Variable>,
    /// Scalar float locals kept in stack slots (see `Stmt::Let`), with their types.
    spilled: HashMap<LocalId, (StackSlot, Type)>,
    /// How many `Stmt::Loop`s enclose the statement being translated.
    loop_depth: usize,
    /// Imported signatures of the scalar f64 math calls (one and two operands).
    f64_sigs: Option<(SigRef, SigRef)>,
}

/// Which scalar f64 function of the runtime table a call uses.
#[derive(Clone, Copy)]
enum F64Fn {
    Exp,
    Log,
    Tanh,
    Erf,
    Sin,
    Cos,
    Pow,
    Fmod,
}

fn collect_assigned(body: &[Stmt], out: &mut HashSet<LocalId>) {
    for s in body {
        match s {
            Stmt::Assign { local, .. } => {
                out.insert(*local);
            }
            Stmt::Loop { body, .. } => collect_assigned(body, out),
            _ => {}
        }
    }
}

/// Whether `e` is the same for every value of `var` and evaluates without vectors.
fn invariant_scalar(e: &Expr, var: Var) -> bool {
    let mut ok = true;
    e.visit(&mut |x| match x {
        Expr::Load { .. } | Expr::LoadAt { .. } => ok = false,
        Expr::Index(ix) => ok &= ix.stride(var).terms.is_empty(),
        _ => {}
    });
    ok
}

impl<'a, 'b> Translator<'a, 'b> {
    /// Emit the whole function body (the builder must be fresh, with the kernel signature);
    /// `[begin, end)` counts parallel iterations.
    pub fn translate(b: &'a mut FunctionBuilder<'b>, k: &'a Kernel, isa: &dyn TargetIsa) -> Result<(), CodegenError> {
        Self::translate_launch(b, k, isa, LaunchUnits::Iterations)
    }

    /// [`Translator::translate`] with the meaning of `[begin, end)` chosen by `units`.
    pub fn translate_launch(
        b: &'a mut FunctionBuilder<'b>,
        k: &'a Kernel,
        isa: &dyn TargetIsa,
        units: LaunchUnits,
    ) -> Result<(), CodegenError> {
        if k.parallel.tile == 0 {
            return Err(invalid(k, "parallel tile of 0"));
        }
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let (bufs_ptr, dims_ptr, table, mut begin, mut end) = (params[0], params[1], params[2], params[3], params[4]);
        let tile = i64::from(k.parallel.tile);
        if units == LaunchUnits::Elements && tile > 1 {
            // Iteration i runs when its first element i·tile lies in [begin, end):
            // i ∈ [⌈begin/tile⌉, ⌈end/tile⌉), a partition for any chunk boundaries.
            let b1 = b.ins().iadd_imm_s(begin, tile - 1);
            begin = b.ins().udiv_imm_u(b1, tile);
            let e1 = b.ins().iadd_imm_s(end, tile - 1);
            end = b.ins().udiv_imm_u(e1, tile);
        }
        let flags = MemFlagsData::trusted().with_readonly();
        let ptr = isa.pointer_type();
        let buffers =
            (0..k.buffers.len()).map(|i| b.ins().load(ptr, flags, bufs_ptr, (i * 8) as i32)).collect::<Vec<_>>();
        let dims = (0..k.dims.len()).map(|i| b.ins().load(types::I64, flags, dims_ptr, (i * 8) as i32)).collect();
        let mut t = Translator {
            b,
            k,
            ptr,
            cc: isa.default_call_conv(),
            buffers,
            dims,
            table,
            vars: HashMap::new(),
            tile_len: None,
            locals: HashMap::new(),
            mutable: HashSet::new(),
            variables: HashMap::new(),
            spilled: HashMap::new(),
            loop_depth: 0,
            f64_sigs: None,
        };
        collect_assigned(&k.body, &mut t.mutable);
        t.emit_loop(begin, end, 1, &[], &mut |t, it, _| {
            let tile = i64::from(t.k.parallel.tile);
            let p = if tile == 1 { it } else { t.b.ins().imul_imm_s(it, tile) };
            t.vars.insert(Var::PARALLEL, p);
            let extent = t.size(&t.k.parallel.extent.clone())?;
            let rest = t.b.ins().isub(extent, p);
            let tile_v = t.b.ins().iconst(types::I64, tile);
            t.tile_len = Some(t.b.ins().smin(rest, tile_v));
            let body = t.k.body.clone();
            t.stmts(&body)?;
            Ok(Vec::new())
        })?;
        t.b.ins().return_(&[]);
        t.b.seal_all_blocks();
        Ok(())
    }

    // ------------------------------------------------------------------ loops

    /// `for (iv = start; iv + step <= end; iv += step)` with loop-carried values; returns the
    /// carried values at exit. The body returns the next carried values.
    #[allow(clippy::type_complexity)]
    fn emit_loop(
        &mut self,
        start: Value,
        end: Value,
        step: i64,
        carried: &[(Value, Type)],
        body: &mut dyn FnMut(&mut Self, Value, &[Value]) -> Result<Vec<Value>, CodegenError>,
    ) -> Result<(Value, Vec<Value>), CodegenError> {
        let header = self.b.create_block();
        let body_block = self.b.create_block();
        let exit = self.b.create_block();
        self.b.append_block_param(header, types::I64);
        self.b.append_block_param(exit, types::I64);
        for (_, ty) in carried {
            self.b.append_block_param(header, *ty);
            self.b.append_block_param(exit, *ty);
        }
        let init: Vec<_> = std::iter::once(start).chain(carried.iter().map(|(v, _)| *v)).map(Into::into).collect();
        self.b.ins().jump(header, &init);
        self.b.switch_to_block(header);
        let hp = self.b.block_params(header).to_vec();
        let iv = hp[0];
        let next = self.b.ins().iadd_imm_s(iv, step);
        let cond = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, next, end);
        let exit_args: Vec<_> = hp.iter().map(|v| (*v).into()).collect();
        self.b.ins().brif(cond, body_block, &[], exit, &exit_args);
        self.b.switch_to_block(body_block);
        let new_carried = body(self, iv, &hp[1..])?;
        if new_carried.len() != carried.len() {
            return Err(invalid(self.k, "internal: loop-carried count mismatch"));
        }
        let back: Vec<_> = std::iter::once(next).chain(new_carried).map(Into::into).collect();
        self.b.ins().jump(header, &back);
        self.b.switch_to_block(exit);
        let ep = self.b.block_params(exit).to_vec();
        Ok((ep[0], ep[1..].to_vec()))
    }

    fn extent(&mut self, e: &Extent) -> Result<Value, CodegenError> {
        match e {
            Extent::Size(s) => self.size(s),
            Extent::ParallelTile => self.tile_len.ok_or_else(|| invalid(self.k, "tile used outside the parallel loop")),
        }
    }

    fn size(&mut self, s: &Size) -> Result<Value, CodegenError> {
        let mut total: Option<Value> = None;
        for (c, mono) in &s.terms {
            let mut term: Option<Value> = None;
            for j in mono {
                let d = *self.dims.get(*j as usize).ok_or_else(|| invalid(self.k, format!("dim {j} out of range")))?;
                term = Some(match term {
                    None => d,
                    Some(t) => self.b.ins().imul(t, d),
                });
            }
            let term = match term {
                None => self.b.ins().iconst(types::I64, *c),
                Some(t) if *c == 1 => t,
                Some(t) => self.b.ins().imul_imm_s(t, *c),
            };
            total = Some(match total {
                None => term,
                Some(acc) => self.b.ins().iadd(acc, term),
            });
        }
        Ok(total.unwrap_or_else(|| self.b.ins().iconst(types::I64, 0)))
    }

    fn index(&mut self, ix: &IndexExpr) -> Result<Value, CodegenError> {
        let mut acc = self.size(&ix.offset)?;
        for (v, stride) in &ix.terms {
            let vv = *self.vars.get(v).ok_or_else(|| invalid(self.k, format!("variable {v} used outside its loop")))?;
            let term = match stride.as_constant() {
                Some(1) => vv,
                Some(c) => self.b.ins().imul_imm_s(vv, c),
                None => {
                    let s = self.size(stride)?;
                    self.b.ins().imul(vv, s)
                }
            };
            acc = self.b.ins().iadd(acc, term);
        }
        Ok(acc)
    }

    /// A buffer's storage dtype, element size in bytes and compute type.
    fn elem_bytes(&self, buffer: u32) -> Result<(i64, DType, ScalarType), CodegenError> {
        let p = self.k.buffers.get(buffer as usize).ok_or_else(|| invalid(self.k, format!("no buffer b{buffer}")))?;
        let bytes = match p.dtype {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
            other => {
                return Err(invalid(self.k, format!("buffer b{buffer} of dtype {other} is not element-addressable")))
            }
        };
        let ty = ScalarType::of_dtype(p.dtype)
            .ok_or_else(|| invalid(self.k, format!("buffer b{buffer} of dtype {} has no compute type", p.dtype)))?;
        Ok((bytes, p.dtype, ty))
    }

    /// Load one element of storage dtype `dtype` at `addr`, as its compute type.
    fn load_scalar(&mut self, dtype: DType, addr: Value) -> Result<Value, CodegenError> {
        let flags = MemFlagsData::trusted();
        Ok(match dtype {
            DType::F32 => self.b.ins().load(types::F32, flags, addr, 0),
            DType::F64 => self.b.ins().load(types::F64, flags, addr, 0),
            DType::I64 => self.b.ins().load(types::I64, flags, addr, 0),
            DType::Bool => self.b.ins().load(types::I8, flags, addr, 0),
            DType::I32 => self.b.ins().sload32(flags, addr, 0),
            DType::I8 => self.b.ins().sload8(types::I64, flags, addr, 0),
            DType::U8 => self.b.ins().uload8(types::I64, flags, addr, 0),
            DType::F16 => {
                let h = self.b.ins().uload16(types::I32, flags, addr, 0);
                half::f16_to_f32(self.b, h)
            }
            DType::BF16 => {
                let h = self.b.ins().uload16(types::I32, flags, addr, 0);
                half::bf16_to_f32(self.b, h)
            }
            other => return Err(invalid(self.k, format!("load of a {other} element"))),
        })
    }

    /// Store the compute-typed `v` at `addr` as one element of storage dtype `dtype`.
    fn store_scalar(&mut self, dtype: DType, v: Value, addr: Value) -> Result<(), CodegenError> {
        let flags = MemFlagsData::trusted();
        match dtype {
            DType::F32 | DType::F64 | DType::I64 | DType::Bool => {
                self.b.ins().store(flags, v, addr, 0);
            }
            DType::I32 => {
                self.b.ins().istore32(flags, v, addr, 0);
            }
            DType::I8 | DType::U8 => {
                self.b.ins().istore8(flags, v, addr, 0);
            }
            DType::F16 | DType::BF16 => {
                let h = if dtype == DType::F16 { half::f32_to_f16(self.b, v) } else { half::f32_to_bf16(self.b, v) };
                self.b.ins().istore16(flags, h, addr, 0);
            }
            other => return Err(invalid(self.k, format!("store of a {other} element"))),
        }
        Ok(())
    }

    /// `v` (of compute type `ty`) as a buffer of `dtype` would store and load it.
    fn narrow(&mut self, dtype: DType, ty: ScalarType, v: Value) -> Result<Value, CodegenError> {
        Ok(match (dtype, ty) {
            (DType::I8 | DType::U8 | DType::I32, ScalarType::I64) => {
                let nt = if dtype == DType::I32 { types::I32 } else { types::I8 };
                let r = self.b.ins().ireduce(nt, v);
                if dtype == DType::U8 {
                    self.b.ins().uextend(types::I64, r)
                } else {
                    self.b.ins().sextend(types::I64, r)
                }
            }
            (DType::F16, ScalarType::F32) => {
                let h = half::f32_to_f16(self.b, v);
                half::f16_to_f32(self.b, h)
            }
            (DType::BF16, ScalarType::F32) => {
                let h = half::f32_to_bf16(self.b, v);
                half::bf16_to_f32(self.b, h)
            }
            (d, t) => return Err(invalid(self.k, format!("narrowing a {} to {d}", t.name()))),
        })
    }

    /// A call of the runtime's scalar f64 function `which` on `args` (f64 values).
    fn call_f64(&mut self, which: F64Fn, args: &[Value]) -> Value {
        let field = match which {
            F64Fn::Exp => std::mem::offset_of!(ScalarMathF64, exp),
            F64Fn::Log => std::mem::offset_of!(ScalarMathF64, log),
            F64Fn::Tanh => std::mem::offset_of!(ScalarMathF64, tanh),
            F64Fn::Erf => std::mem::offset_of!(ScalarMathF64, erf),
            F64Fn::Sin => std::mem::offset_of!(ScalarMathF64, sin),
            F64Fn::Cos => std::mem::offset_of!(ScalarMathF64, cos),
            F64Fn::Pow => std::mem::offset_of!(ScalarMathF64, pow),
            F64Fn::Fmod => std::mem::offset_of!(ScalarMathF64, fmod),
        };
        let offset = std::mem::offset_of!(RuntimeFnTable, f64_math) + field;
        let (one, two) = match self.f64_sigs {
            Some(s) => s,
            None => {
                let mut s1 = Signature::new(self.cc);
                s1.params.push(AbiParam::new(types::F64));
                s1.returns.push(AbiParam::new(types::F64));
                let mut s2 = s1.clone();
                s2.params.push(AbiParam::new(types::F64));
                let s = (self.b.import_signature(s1), self.b.import_signature(s2));
                self.f64_sigs = Some(s);
                s
            }
        };
        let sig = if args.len() == 2 { two } else { one };
        let fptr = self.b.ins().load(self.ptr, MemFlagsData::trusted().with_readonly(), self.table, offset as i32);
        let call = self.b.ins().call_indirect(sig, fptr, args);
        self.b.inst_results(call)[0]
    }

    /// The address of `buffers[buffer][base + ix]` (`base` evaluated as a scalar).
    fn address_at(&mut self, buffer: u32, base: Option<&Expr>, ix: &IndexExpr) -> Result<Value, CodegenError> {
        let (bytes, _, _) = self.elem_bytes(buffer)?;
        let mut i = self.index(ix)?;
        if let Some(base) = base {
            if base.ty(self.k) != Some(ScalarType::I64) {
                return Err(invalid(self.k, "a dynamic base must be an i64"));
            }
            let bv = self.expr(base, Mode::Scalar)?;
            i = self.b.ins().iadd(i, bv);
        }
        let off = self.b.ins().imul_imm_s(i, bytes);
        Ok(self.b.ins().iadd(self.buffers[buffer as usize], off))
    }

    fn raw_address(&mut self, r: &BufferRef) -> Result<Value, CodegenError> {
        let base =
            *self.buffers.get(r.buffer as usize).ok_or_else(|| invalid(self.k, format!("no buffer b{}", r.buffer)))?;
        if r.offset.terms.is_empty() && r.offset.offset.terms.is_empty() {
            return Ok(base);
        }
        let i = self.index(&r.offset)?;
        let off = match self.k.buffers[r.buffer as usize].dtype {
            DType::F32 => self.b.ins().imul_imm_s(i, 4),
            DType::I8 => i,
            // Block-quantized: whole blocks of 32 elements (the offset is a multiple of 32).
            DType::Q8_0 => {
                let blocks = self.b.ins().sshr_imm_s(i, 5);
                self.b.ins().imul_imm_s(blocks, 34)
            }
            DType::Q4_0 => {
                let blocks = self.b.ins().sshr_imm_s(i, 5);
                self.b.ins().imul_imm_s(blocks, 18)
            }
            other => return Err(invalid(self.k, format!("offset into a {other} buffer"))),
        };
        Ok(self.b.ins().iadd(base, off))
    }

    // ------------------------------------------------------------------ statements

    fn stmts(&mut self, body: &[Stmt]) -> Result<(), CodegenError> {
        for s in body {
            self.stmt(s, Mode::Scalar)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt, mode: Mode) -> Result<(), CodegenError> {
        match s {
            Stmt::Loop { var, extent, body } => {
                if mode != Mode::Scalar {
                    return Err(invalid(self.k, "nested loop inside a vector loop"));
                }
                let n = self.extent(extent)?;
                let zero = self.b.ins().iconst(types::I64, 0);
                let vectorize = body.iter().all(|s| self.vector_stmt_ok(s, *var));
                self.loop_depth += 1;
                let mut start = zero;
                if vectorize {
                    let (after, _) = self.emit_loop(zero, n, LANES, &[], &mut |t, iv, _| {
                        t.vars.insert(*var, iv);
                        for s in body {
                            t.stmt(s, Mode::Vector(*var))?;
                        }
                        Ok(Vec::new())
                    })?;
                    start = after;
                }
                self.emit_loop(start, n, 1, &[], &mut |t, iv, _| {
                    t.vars.insert(*var, iv);
                    for s in body {
                        t.stmt(s, Mode::Scalar)?;
                    }
                    Ok(Vec::new())
                })?;
                self.loop_depth -= 1;
                self.vars.remove(var);
                Ok(())
            }
            Stmt::Store { buffer, index, value } => self.store(*buffer, None, index, value, mode),
            Stmt::StoreAt { buffer, base, index, value } => self.store(*buffer, Some(base), index, value, mode),
            Stmt::Let { local, value } | Stmt::Assign { local, value } => {
                let want = self.k.locals.get(local.0 as usize).copied();
                if value.ty(self.k) != want || want.is_none() {
                    return Err(invalid(self.k, format!("local {local} bound to a value of another type")));
                }
                let v = self.expr(value, mode)?;
                if self.mutable.contains(local) {
                    if mode != Mode::Scalar {
                        return Err(invalid(self.k, "a mutable local in a vector loop"));
                    }
                    let var = match (self.variables.get(local), s) {
                        (Some(var), _) => *var,
                        (None, Stmt::Let { .. }) => {
                            let ty = self.b.func.dfg.value_type(v);
                            let var = self.b.declare_var(ty);
                            self.variables.insert(*local, var);
                            var
                        }
                        (None, _) => return Err(invalid(self.k, format!("local {local} assigned before its let"))),
                    };
                    self.b.def_var(var, v);
                } else if matches!(s, Stmt::Assign { .. }) {
                    return Err(invalid(self.k, "internal: assignment to an immutable local"));
                } else if self.loop_depth == 0 && matches!(want, Some(ScalarType::F32 | ScalarType::F64)) {
                    // A float computed once per parallel iteration (a norm's `1/sqrt(mean +
                    // eps)`) and used in inner loops: as a pure SSA value, Cranelift's e-graph
                    // places its `fdiv`/`sqrt` at the uses, inside the inner loops, once per
                    // element (4× the whole norm kernel's time). Stored to a stack slot here,
                    // it is computed once; the loops reload it (one L1 load per iteration).
                    // Locals bound inside loops stay SSA values (no store/load per element).
                    let ty = self.b.func.dfg.value_type(v);
                    let slot = self.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 8, 3));
                    self.b.ins().stack_store(self.ptr, v, slot, 0);
                    self.spilled.insert(*local, (slot, ty));
                } else {
                    self.locals.insert(*local, (v, matches!(mode, Mode::Vector(_))));
                }
                Ok(())
            }
            Stmt::Reduce { kind, var, extent, init, value, into } => {
                if mode != Mode::Scalar {
                    return Err(invalid(self.k, "reduction inside a vector loop"));
                }
                let ty = self.k.locals.get(into.0 as usize).copied();
                if ty == Some(ScalarType::Bool) || value.ty(self.k) != ty || init.ty(self.k) != ty {
                    return Err(invalid(self.k, "a reduction's value, init and result must be of one numeric type"));
                }
                let r = self.reduce(*kind, *var, extent, init, value)?;
                self.locals.insert(*into, (r, false));
                Ok(())
            }
            Stmt::CallMicroKernel { which, args } => {
                if mode != Mode::Scalar {
                    return Err(invalid(self.k, "call inside a vector loop"));
                }
                self.call(*which, args)
            }
            Stmt::CallAttentionRow(a) => {
                if mode != Mode::Scalar {
                    return Err(invalid(self.k, "call inside a vector loop"));
                }
                self.call_attention_row(a)
            }
            Stmt::BindVar { var, value } => {
                if value.ty(self.k) != Some(ScalarType::I64) {
                    return Err(invalid(self.k, format!("{var} bound to a non-i64 value")));
                }
                if self.vars.contains_key(var) {
                    return Err(invalid(self.k, format!("{var} bound twice")));
                }
                let v = self.expr(value, Mode::Scalar)?;
                self.vars.insert(*var, v);
                Ok(())
            }
            Stmt::CallSiluMul(a) => {
                if mode != Mode::Scalar {
                    return Err(invalid(self.k, "call inside a vector loop"));
                }
                self.call_silu_mul(a)
            }
            Stmt::CallTopK(a) if mode == Mode::Scalar => self.call_topk(a),
            Stmt::CallTopK(_) => Err(invalid(self.k, "call inside a vector loop")),
        }
    }

    fn store(
        &mut self,
        buffer: u32,
        base: Option<&Expr>,
        index: &IndexExpr,
        value: &Expr,
        mode: Mode,
    ) -> Result<(), CodegenError> {
        let (_, dtype, sty) = self.elem_bytes(buffer)?;
        let vty = value.ty(self.k).ok_or_else(|| invalid(self.k, "ill-typed stored value"))?;
        if vty != sty {
            return Err(invalid(self.k, format!("storing {} into a {} buffer", vty.name(), sty.name())));
        }
        // The store narrows anyway: an explicit narrowing to the same dtype is redundant.
        let value = match value {
            Expr::Unary(UnaryOp::Narrow(d), inner) if *d == dtype => &**inner,
            v => v,
        };
        let v = self.expr(value, mode)?;
        let addr = self.address_at(buffer, base, index)?;
        self.store_scalar(dtype, v, addr)
    }

    fn combine(&mut self, kind: ReduceKind, a: Value, b: Value) -> Value {
        if self.b.func.dfg.value_type(a) == types::I64 {
            return match kind {
                ReduceKind::Sum => self.b.ins().iadd(a, b),
                ReduceKind::Max => self.b.ins().smax(a, b),
                ReduceKind::Min => self.b.ins().smin(a, b),
            };
        }
        match kind {
            ReduceKind::Sum => self.b.ins().fadd(a, b),
            ReduceKind::Max => self.b.ins().fmax(a, b),
            ReduceKind::Min => self.b.ins().fmin(a, b),
        }
    }

    fn reduce(
        &mut self,
        kind: ReduceKind,
        var: Var,
        extent: &Extent,
        init: &Expr,
        value: &Expr,
    ) -> Result<Value, CodegenError> {
        let n = self.extent(extent)?;
        let init_v = self.expr(init, Mode::Scalar)?;
        let identity = match kind {
            ReduceKind::Sum => 0.0,
            ReduceKind::Max => f32::NEG_INFINITY,
            ReduceKind::Min => f32::INFINITY,
        };
        let zero = self.b.ins().iconst(types::I64, 0);
        let mut start = zero;
        let mut acc = init_v;
        let acc_ty = self.b.func.dfg.value_type(init_v);
        if acc_ty == types::F32 && self.vector_expr_ok(value, var, &HashSet::new()) {
            let id = math::fconst(self.b, VF32, identity);
            let (after, accs) = self.emit_loop(zero, n, 2 * LANES, &[(id, VF32), (id, VF32)], &mut |t, iv, accs| {
                t.vars.insert(var, iv);
                let v0 = t.expr(value, Mode::Vector(var))?;
                let iv1 = t.b.ins().iadd_imm_s(iv, LANES);
                t.vars.insert(var, iv1);
                let v1 = t.expr(value, Mode::Vector(var))?;
                let a0 = t.combine(kind, accs[0], v0);
                let a1 = t.combine(kind, accs[1], v1);
                Ok(vec![a0, a1])
            })?;
            start = after;
            let folded = self.combine(kind, accs[0], accs[1]);
            for lane in 0..LANES as u8 {
                let x = self.b.ins().extractlane(folded, lane);
                acc = self.combine(kind, acc, x);
            }
        }
        let (_, accs) = self.emit_loop(start, n, 1, &[(acc, acc_ty)], &mut |t, iv, accs| {
            t.vars.insert(var, iv);
            let v = t.expr(value, Mode::Scalar)?;
            Ok(vec![t.combine(kind, accs[0], v)])
        })?;
        self.vars.remove(&var);
        Ok(accs[0])
    }

    fn call(&mut self, which: MicroKernel, a: &MicroKernelArgs) -> Result<(), CodegenError> {
        let offset = match which {
            MicroKernel::Sgemm => std::mem::offset_of!(RuntimeFnTable, sgemm),
            MicroKernel::SgemmPacked => std::mem::offset_of!(RuntimeFnTable, sgemm_packed),
            MicroKernel::SgemmNt => std::mem::offset_of!(RuntimeFnTable, sgemm_nt),
            MicroKernel::GemmQ8_0 => std::mem::offset_of!(RuntimeFnTable, gemm_q8_0),
            MicroKernel::GemmQ4_0 => std::mem::offset_of!(RuntimeFnTable, gemm_q4_0),
            MicroKernel::GemmI8 => std::mem::offset_of!(RuntimeFnTable, gemm_i8),
        };
        if (which == MicroKernel::GemmI8) != a.scale.is_some() {
            return Err(invalid(self.k, format!("{} with a scale operand mismatch", which.name())));
        }
        let fptr = self.b.ins().load(self.ptr, MemFlagsData::trusted().with_readonly(), self.table, offset as i32);
        let mut sig = gemm_signature(self.ptr, self.cc);
        if a.scale.is_some() {
            sig.params.push(AbiParam::new(self.ptr));
        }
        let sig = self.b.import_signature(sig);
        let m = self.extent(&a.m)?;
        let n = self.extent(&a.n)?;
        let k = self.size(&a.k)?;
        let pa = self.raw_address(&a.a)?;
        let lda = self.size(&a.lda)?;
        let pb = self.raw_address(&a.b)?;
        let ldb = self.size(&a.ldb)?;
        let pc = self.raw_address(&a.c)?;
        let ldc = self.size(&a.ldc)?;
        let acc = self.b.ins().iconst(types::I32, i64::from(a.accumulate));
        let mut args = vec![m, n, k, pa, lda, pb, ldb, pc, ldc, acc];
        if let Some(s) = &a.scale {
            args.push(self.raw_address(s)?);
        }
        self.b.ins().call_indirect(sig, fptr, &args);
        Ok(())
    }

    fn dyn_address(&mut self, r: &DynRef) -> Result<Value, CodegenError> {
        if self.elem_bytes(r.buffer)?.1 != DType::F32 {
            return Err(invalid(self.k, format!("attention_row on a non-f32 buffer b{}", r.buffer)));
        }
        self.address_at(r.buffer, r.base.as_ref(), &r.index)
    }

    fn call_attention_row(&mut self, a: &AttentionRowArgs) -> Result<(), CodegenError> {
        let offset = match a.mask {
            None => std::mem::offset_of!(RuntimeFnTable, attention_row),
            Some(_) => std::mem::offset_of!(RuntimeFnTable, attention_row_masked),
        };
        let fptr = self.b.ins().load(self.ptr, MemFlagsData::trusted().with_readonly(), self.table, offset as i32);
        let mut sig = Signature::new(self.cc);
        let mask_params = a.mask.as_ref().map(|_| [self.ptr, types::I32]).into_iter().flatten();
        let params = [self.ptr, self.ptr, self.ptr].into_iter().chain(mask_params);
        for t in params.chain([types::I64, types::I64, types::I64, types::F32, self.ptr]) {
            sig.params.push(AbiParam::new(t));
        }
        let sig = self.b.import_signature(sig);
        if a.keys.ty(self.k) != Some(ScalarType::I64) {
            return Err(invalid(self.k, "attention_row's key count must be an i64"));
        }
        let q = self.dyn_address(&a.q)?;
        let k = self.dyn_address(&a.k)?;
        let v = self.dyn_address(&a.v)?;
        let mask = match &a.mask {
            None => None,
            Some(m) => {
                let kind = match self.elem_bytes(m.buffer)?.1 {
                    DType::F32 => ferrumc_runtime::abi::MASK_ADDITIVE,
                    DType::Bool => ferrumc_runtime::abi::MASK_KEEP,
                    other => return Err(invalid(self.k, format!("attention_row mask of dtype {other}"))),
                };
                let address = self.address_at(m.buffer, m.base.as_ref(), &m.index)?;
                Some([address, self.b.ins().iconst(types::I32, i64::from(kind))])
            }
        };
        let o = self.dyn_address(&a.o)?;
        let keys = self.expr(&a.keys, Mode::Scalar)?;
        let dk = self.b.ins().iconst(types::I64, a.dk);
        let dv = self.b.ins().iconst(types::I64, a.dv);
        let scale = self.b.ins().f32const(a.scale);
        let mut args = vec![q, k, v];
        args.extend(mask.into_iter().flatten());
        args.extend([keys, dk, dv, scale, o]);
        self.b.ins().call_indirect(sig, fptr, &args);
        Ok(())
    }

    fn call_silu_mul(&mut self, a: &SiluMulArgs) -> Result<(), CodegenError> {
        let offset = std::mem::offset_of!(RuntimeFnTable, silu_mul);
        let fptr = self.b.ins().load(self.ptr, MemFlagsData::trusted().with_readonly(), self.table, offset as i32);
        let mut sig = Signature::new(self.cc);
        for t in [self.ptr, self.ptr, self.ptr, types::I64] {
            sig.params.push(AbiParam::new(t));
        }
        let sig = self.b.import_signature(sig);
        let x = self.dyn_address(&a.x)?;
        let z = self.dyn_address(&a.z)?;
        let y = self.dyn_address(&a.y)?;
        let n = self.extent(&a.n)?;
        self.b.ins().call_indirect(sig, fptr, &[x, z, y, n]);
        Ok(())
    }

    fn call_topk(&mut self, a: &TopKArgs) -> Result<(), CodegenError> {
        use ferrumc_runtime::abi::elem_code;
        let dtype = self.k.buffers.get(a.x.buffer as usize).map(|b| b.dtype);
        let elem = match dtype {
            Some(DType::F32) => elem_code::F32,
            Some(DType::F64) => elem_code::F64,
            Some(DType::I64) => elem_code::I64,
            Some(DType::I32) => elem_code::I32,
            Some(DType::I8) => elem_code::I8,
            Some(DType::U8) => elem_code::U8,
            Some(DType::F16) => elem_code::F16,
            Some(DType::BF16) => elem_code::BF16,
            other => return Err(invalid(self.k, format!("topk on a {other:?} buffer"))),
        };
        let offset = std::mem::offset_of!(RuntimeFnTable, topk);
        let fptr = self.b.ins().load(self.ptr, MemFlagsData::trusted().with_readonly(), self.table, offset as i32);
        let mut sig = Signature::new(self.cc);
        let (p, i64t) = (self.ptr, types::I64);
        for t in [p, i64t, i64t, i64t, types::I32, types::I32, p, i64t, p, i64t] {
            sig.params.push(AbiParam::new(t));
        }
        let sig = self.b.import_signature(sig);
        let x = self.address_at(a.x.buffer, a.x.base.as_ref(), &a.x.index)?;
        let values = self.address_at(a.values.buffer, a.values.base.as_ref(), &a.values.index)?;
        let indices = self.address_at(a.indices.buffer, a.indices.base.as_ref(), &a.indices.index)?;
        let n = self.size(&a.n)?;
        let x_stride = self.size(&a.x_stride)?;
        let k = self.size(&a.k)?;
        let elem = self.b.ins().iconst(types::I32, i64::from(elem));
        let largest = self.b.ins().iconst(types::I32, i64::from(a.largest));
        let v_stride = self.size(&a.v_stride)?;
        let i_stride = self.size(&a.i_stride)?;
        self.b.ins().call_indirect(sig, fptr, &[x, n, x_stride, k, elem, largest, values, v_stride, indices, i_stride]);
        Ok(())
    }

    /// A unary op on an f64 scalar.
    fn unary_f64(&mut self, op: UnaryOp, x: Value) -> Result<Value, CodegenError> {
        Ok(match op {
            UnaryOp::Neg => self.b.ins().fneg(x),
            UnaryOp::Abs => self.b.ins().fabs(x),
            UnaryOp::Sqrt => self.b.ins().sqrt(x),
            UnaryOp::Rsqrt => {
                let s = self.b.ins().sqrt(x);
                let one = self.b.ins().f64const(1.0);
                self.b.ins().fdiv(one, s)
            }
            UnaryOp::Recip => {
                let one = self.b.ins().f64const(1.0);
                self.b.ins().fdiv(one, x)
            }
            UnaryOp::Exp => self.call_f64(F64Fn::Exp, &[x]),
            UnaryOp::Log => self.call_f64(F64Fn::Log, &[x]),
            UnaryOp::Tanh => self.call_f64(F64Fn::Tanh, &[x]),
            UnaryOp::Erf => self.call_f64(F64Fn::Erf, &[x]),
            UnaryOp::Sin => self.call_f64(F64Fn::Sin, &[x]),
            UnaryOp::Cos => self.call_f64(F64Fn::Cos, &[x]),
            UnaryOp::Sigmoid => {
                // e = e^-|x|; σ(x) = 1/(1+e) for x ≥ 0, e/(1+e) below (no overflow).
                let ax = self.b.ins().fabs(x);
                let nax = self.b.ins().fneg(ax);
                let e = self.call_f64(F64Fn::Exp, &[nax]);
                let one = self.b.ins().f64const(1.0);
                let den = self.b.ins().fadd(one, e);
                let pos = self.b.ins().fdiv(one, den);
                let neg = self.b.ins().fdiv(e, den);
                let zero = self.b.ins().f64const(0.0);
                let nonneg = self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, x, zero);
                self.b.ins().select(nonneg, pos, neg)
            }
            UnaryOp::Narrow(d) => return Err(invalid(self.k, format!("narrowing an f64 to {d}"))),
        })
    }

    // ------------------------------------------------------------------ vectorizability

    fn vector_stmt_ok(&self, s: &Stmt, var: Var) -> bool {
        match s {
            Stmt::Store { buffer, index, value } => {
                self.k.buffers.get(*buffer as usize).is_some_and(|b| b.dtype == DType::F32)
                    && index.stride(var).as_constant() == Some(1)
                    && self.vector_expr_ok(value, var, &HashSet::new())
            }
            Stmt::StoreAt { buffer, base, index, value } => {
                self.k.buffers.get(*buffer as usize).is_some_and(|b| b.dtype == DType::F32)
                    && index.stride(var).as_constant() == Some(1)
                    && invariant_scalar(base, var)
                    && self.vector_expr_ok(value, var, &HashSet::new())
            }
            Stmt::Let { local, value } => {
                self.k.locals.get(local.0 as usize) == Some(&ScalarType::F32)
                    && !self.mutable.contains(local)
                    && self.vector_expr_ok(value, var, &HashSet::new())
            }
            _ => false,
        }
    }

    /// Whether `e` can be evaluated 4 lanes at a time along `var`.
    fn vector_expr_ok(&self, e: &Expr, var: Var, _vector_locals: &HashSet<LocalId>) -> bool {
        let f32_buffer = |b: u32| self.k.buffers.get(b as usize).is_some_and(|b| b.dtype == DType::F32);
        let unit_or_zero = |ix: &IndexExpr| {
            let s = ix.stride(var);
            s.terms.is_empty() || s.as_constant() == Some(1)
        };
        match e {
            Expr::Load { buffer, index } => f32_buffer(*buffer) && unit_or_zero(index),
            Expr::LoadAt { buffer, base, index } => {
                f32_buffer(*buffer) && unit_or_zero(index) && invariant_scalar(base, var)
            }
            Expr::Const(c) => c.ty() == ScalarType::F32,
            Expr::Local(l) => self.k.locals.get(l.0 as usize) == Some(&ScalarType::F32),
            Expr::Unary(UnaryOp::Narrow(_), _) | Expr::Binary(BinaryOp::Fmod | BinaryOp::Pow, ..) => false,
            Expr::Unary(_, a) => self.vector_expr_ok(a, var, _vector_locals),
            Expr::Binary(_, a, b) => {
                self.vector_expr_ok(a, var, _vector_locals) && self.vector_expr_ok(b, var, _vector_locals)
            }
            Expr::Select(..) | Expr::Cast(..) | Expr::Dim(_) | Expr::Index(_) | Expr::Compare(..) => false,
        }
    }

    // ------------------------------------------------------------------ expressions

    fn expr(&mut self, e: &Expr, mode: Mode) -> Result<Value, CodegenError> {
        let ty = e.ty(self.k).ok_or_else(|| invalid(self.k, "ill-typed expression"))?;
        let vector = matches!(mode, Mode::Vector(_));
        if vector && ty != ScalarType::F32 {
            return Err(invalid(self.k, "internal: non-f32 value in a vector loop"));
        }
        let fty = if vector { VF32 } else { types::F32 };
        Ok(match e {
            Expr::Load { .. } | Expr::LoadAt { .. } => {
                let (buffer, base, index) = match e {
                    Expr::Load { buffer, index } => (buffer, None, index),
                    Expr::LoadAt { buffer, base, index } => (buffer, Some(&**base), index),
                    _ => return Err(invalid(self.k, "internal: not a load")),
                };
                let (_, dtype, _) = self.elem_bytes(*buffer)?;
                let addr = self.address_at(*buffer, base, index)?;
                let flags = MemFlagsData::trusted();
                match mode {
                    Mode::Vector(var) if !index.stride(var).terms.is_empty() => self.b.ins().load(VF32, flags, addr, 0),
                    Mode::Vector(_) => {
                        let s = self.b.ins().load(types::F32, flags, addr, 0);
                        self.b.ins().splat(VF32, s)
                    }
                    Mode::Scalar => self.load_scalar(dtype, addr)?,
                }
            }
            Expr::Const(c) => match c {
                Const::F32(v) => math::fconst(self.b, fty, *v),
                Const::F64(v) => self.b.ins().f64const(*v),
                Const::I64(v) => self.b.ins().iconst(types::I64, *v),
                Const::Bool(v) => self.b.ins().iconst(types::I8, i64::from(*v)),
            },
            Expr::Local(l) if self.mutable.contains(l) => {
                let var = *self
                    .variables
                    .get(l)
                    .ok_or_else(|| invalid(self.k, format!("local {l} used before it is bound")))?;
                let v = self.b.use_var(var);
                if vector {
                    self.b.ins().splat(VF32, v)
                } else {
                    v
                }
            }
            Expr::Local(l) if self.spilled.contains_key(l) => {
                let (slot, ty) = self.spilled[l];
                let v = self.b.ins().stack_load(self.ptr, ty, slot, 0);
                if vector {
                    self.b.ins().splat(VF32, v)
                } else {
                    v
                }
            }
            Expr::Local(l) => {
                let (v, is_vec) =
                    *self.locals.get(l).ok_or_else(|| invalid(self.k, format!("local {l} used before it is bound")))?;
                match (vector, is_vec) {
                    (true, false) => self.b.ins().splat(VF32, v),
                    (false, true) => return Err(invalid(self.k, format!("vector local {l} used outside its loop"))),
                    _ => v,
                }
            }
            Expr::Dim(s) => self.size(s)?,
            Expr::Index(ix) => self.index(ix)?,
            Expr::Compare(op, a, b) => {
                let at = a.ty(self.k).ok_or_else(|| invalid(self.k, "ill-typed comparison"))?;
                let x = self.expr(a, Mode::Scalar)?;
                let y = self.expr(b, Mode::Scalar)?;
                match at {
                    ScalarType::F32 | ScalarType::F64 => {
                        let cc = match op {
                            CmpOp::Lt => FloatCC::LessThan,
                            CmpOp::Le => FloatCC::LessThanOrEqual,
                            CmpOp::Eq => FloatCC::Equal,
                            CmpOp::Ne => FloatCC::OrderedNotEqual,
                            CmpOp::ULt => return Err(invalid(self.k, "unsigned comparison of floats")),
                        };
                        self.b.ins().fcmp(cc, x, y)
                    }
                    _ => {
                        let cc = match op {
                            CmpOp::Lt => IntCC::SignedLessThan,
                            CmpOp::Le => IntCC::SignedLessThanOrEqual,
                            CmpOp::Eq => IntCC::Equal,
                            CmpOp::Ne => IntCC::NotEqual,
                            CmpOp::ULt => IntCC::UnsignedLessThan,
                        };
                        self.b.ins().icmp(cc, x, y)
                    }
                }
            }
            Expr::Unary(op, a) => {
                let x = self.expr(a, mode)?;
                if ty == ScalarType::I64 {
                    match op {
                        UnaryOp::Neg => self.b.ins().ineg(x),
                        UnaryOp::Abs => self.b.ins().iabs(x),
                        UnaryOp::Narrow(d) => self.narrow(*d, ty, x)?,
                        other => return Err(invalid(self.k, format!("{} of an i64", other.name()))),
                    }
                } else if ty == ScalarType::Bool {
                    return Err(invalid(self.k, format!("{} of a bool", op.name())));
                } else if ty == ScalarType::F64 {
                    self.unary_f64(*op, x)?
                } else {
                    match op {
                        UnaryOp::Narrow(d) => {
                            if vector {
                                return Err(invalid(self.k, "internal: narrowing in a vector loop"));
                            }
                            self.narrow(*d, ty, x)?
                        }
                        UnaryOp::Neg => self.b.ins().fneg(x),
                        UnaryOp::Abs => self.b.ins().fabs(x),
                        UnaryOp::Sqrt => self.b.ins().sqrt(x),
                        UnaryOp::Rsqrt => {
                            let s = self.b.ins().sqrt(x);
                            let one = math::fconst(self.b, fty, 1.0);
                            self.b.ins().fdiv(one, s)
                        }
                        UnaryOp::Recip => {
                            let one = math::fconst(self.b, fty, 1.0);
                            self.b.ins().fdiv(one, x)
                        }
                        UnaryOp::Exp => math::exp(self.b, fty, x),
                        UnaryOp::Tanh => math::tanh(self.b, fty, x),
                        UnaryOp::Erf => math::erf(self.b, fty, x),
                        UnaryOp::Sigmoid => math::sigmoid(self.b, fty, x),
                        UnaryOp::Sin => math::sin_cos(self.b, fty, x, false),
                        UnaryOp::Cos => math::sin_cos(self.b, fty, x, true),
                        UnaryOp::Log => math::log(self.b, fty, x),
                    }
                }
            }
            Expr::Binary(op, a, b) => {
                let x = self.expr(a, mode)?;
                let y = self.expr(b, mode)?;
                match ty {
                    ScalarType::F32 => match op {
                        BinaryOp::Add => self.b.ins().fadd(x, y),
                        BinaryOp::Sub => self.b.ins().fsub(x, y),
                        BinaryOp::Mul => self.b.ins().fmul(x, y),
                        BinaryOp::Div => self.b.ins().fdiv(x, y),
                        BinaryOp::Max => self.b.ins().fmax(x, y),
                        BinaryOp::Min => self.b.ins().fmin(x, y),
                        BinaryOp::Rem => return Err(invalid(self.k, "rem of floats")),
                        BinaryOp::Fmod if !vector => {
                            let (xd, yd) = (self.b.ins().fpromote(types::F64, x), self.b.ins().fpromote(types::F64, y));
                            let r = self.call_f64(F64Fn::Fmod, &[xd, yd]);
                            self.b.ins().fdemote(types::F32, r)
                        }
                        BinaryOp::Fmod | BinaryOp::Pow => {
                            return Err(invalid(self.k, format!("{} of f32 values", op.name())))
                        }
                    },
                    ScalarType::F64 => match op {
                        BinaryOp::Add => self.b.ins().fadd(x, y),
                        BinaryOp::Sub => self.b.ins().fsub(x, y),
                        BinaryOp::Mul => self.b.ins().fmul(x, y),
                        BinaryOp::Div => self.b.ins().fdiv(x, y),
                        BinaryOp::Max => self.b.ins().fmax(x, y),
                        BinaryOp::Min => self.b.ins().fmin(x, y),
                        BinaryOp::Fmod => self.call_f64(F64Fn::Fmod, &[x, y]),
                        BinaryOp::Pow => self.call_f64(F64Fn::Pow, &[x, y]),
                        BinaryOp::Rem => return Err(invalid(self.k, "rem of floats")),
                    },
                    ScalarType::I64 => match op {
                        BinaryOp::Add => self.b.ins().iadd(x, y),
                        BinaryOp::Sub => self.b.ins().isub(x, y),
                        BinaryOp::Mul => self.b.ins().imul(x, y),
                        BinaryOp::Max => self.b.ins().smax(x, y),
                        BinaryOp::Min => self.b.ins().smin(x, y),
                        BinaryOp::Div => self.b.ins().sdiv(x, y),
                        BinaryOp::Rem => self.b.ins().srem(x, y),
                        BinaryOp::Fmod | BinaryOp::Pow => {
                            return Err(invalid(self.k, format!("{} of i64 values", op.name())))
                        }
                    },
                    ScalarType::Bool => return Err(invalid(self.k, format!("{} of bools", op.name()))),
                }
            }
            Expr::Select(c, a, b) => {
                let cv = self.expr(c, Mode::Scalar)?;
                let x = self.expr(a, mode)?;
                let y = self.expr(b, mode)?;
                self.b.ins().select(cv, x, y)
            }
            Expr::Cast(to, a) => {
                let from = a.ty(self.k).ok_or_else(|| invalid(self.k, "ill-typed cast operand"))?;
                let x = self.expr(a, mode)?;
                match (from, to) {
                    (f, t) if f == *t => x,
                    (ScalarType::F32 | ScalarType::F64, ScalarType::I64) => {
                        self.b.ins().fcvt_to_sint_sat(types::I64, x)
                    }
                    (ScalarType::I64, ScalarType::F32) => self.b.ins().fcvt_from_sint(types::F32, x),
                    (ScalarType::I64, ScalarType::F64) => self.b.ins().fcvt_from_sint(types::F64, x),
                    (ScalarType::F32, ScalarType::F64) => self.b.ins().fpromote(types::F64, x),
                    (ScalarType::F64, ScalarType::F32) => self.b.ins().fdemote(types::F32, x),
                    (ScalarType::Bool, ScalarType::I64) => self.b.ins().uextend(types::I64, x),
                    (ScalarType::Bool, ScalarType::F32 | ScalarType::F64) => {
                        let w = self.b.ins().uextend(types::I64, x);
                        let ft = if *to == ScalarType::F32 { types::F32 } else { types::F64 };
                        self.b.ins().fcvt_from_sint(ft, w)
                    }
                    (f, t) => return Err(invalid(self.k, format!("cast {} → {}", f.name(), t.name()))),
                }
            }
        })
    }
}
