//! The host CPU backend: [`Kernel`]s to machine code through Cranelift.
//!
//! The target ISA and the [`cranelift_module::Module`] are parameters: [`define_kernel`]
//! adds one kernel to any module (a [`JITModule`] for tests and `ferrumc run`, an
//! `ObjectModule` for artifacts), and [`host_isa`] builds the ISA of this machine
//! (`cranelift-native`, `opt_level = speed`). [`JitKernels`] is the JIT convenience used by
//! tests. How kernels are translated is described in [`translate`].

pub mod half;
pub mod math;
pub mod translate;

use crate::kernel::Kernel;
use crate::CodegenError;
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};
use ferrumc_runtime::abi::KernelFn;

fn backend(e: impl std::fmt::Display) -> CodegenError {
    CodegenError::Backend(e.to_string())
}

/// The ISA of the machine we run on, optimizing for speed.
pub fn host_isa() -> Result<OwnedTargetIsa, CodegenError> {
    let mut flags = settings::builder();
    flags.set("opt_level", "speed").map_err(backend)?;
    flags.set("is_pic", "false").map_err(backend)?;
    let isa = cranelift_native::builder().map_err(backend)?;
    isa.finish(settings::Flags::new(flags)).map_err(backend)
}

/// Build the Cranelift function of `kernel` into `ctx` (for the module's ISA), verified.
pub fn build_function(
    module: &dyn Module,
    kernel: &Kernel,
    ctx: &mut Context,
    fctx: &mut FunctionBuilderContext,
) -> Result<(), CodegenError> {
    let isa = module.isa();
    ctx.func.signature = translate::kernel_signature(isa);
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, fctx);
        translate::Translator::translate(&mut b, kernel, isa)?;
        b.finalize(isa.frontend_config());
    }
    cranelift_codegen::verify_function(&ctx.func, isa)
        .map_err(|e| CodegenError::Backend(format!("kernel `{}` failed the Cranelift verifier: {e}", kernel.name)))?;
    Ok(())
}

/// Declare and define `kernel` in `module` under the kernel's name.
pub fn define_kernel<M: Module>(module: &mut M, kernel: &Kernel, linkage: Linkage) -> Result<FuncId, CodegenError> {
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    build_function(module, kernel, &mut ctx, &mut fctx)?;
    let id = module.declare_function(&kernel.name, linkage, &ctx.func.signature).map_err(backend)?;
    module.define_function(id, &mut ctx).map_err(|e| backend(format!("kernel `{}`: {e:?}", kernel.name)))?;
    // The ABI promises machine code that needs no relocation at load time.
    let relocs = ctx.compiled_code().map(|c| c.buffer.relocs().len()).unwrap_or(0);
    if relocs > 0 {
        return Err(backend(format!("kernel `{}` needs {relocs} relocation(s)", kernel.name)));
    }
    module.clear_context(&mut ctx);
    Ok(id)
}

/// The Cranelift IR text of `kernel` (after translation, before optimization).
pub fn clif_text(kernel: &Kernel) -> Result<String, CodegenError> {
    let module = JITModule::new(JITBuilder::with_isa(host_isa()?, cranelift_module::default_libcall_names()));
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    build_function(&module, kernel, &mut ctx, &mut fctx)?;
    Ok(ctx.func.display().to_string())
}

/// Kernels compiled in memory for this process. The function pointers stay valid as long
/// as this value lives.
pub struct JitKernels {
    module: Option<JITModule>,
    fns: Vec<KernelFn>,
}

impl std::fmt::Debug for JitKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitKernels").field("kernels", &self.fns.len()).finish()
    }
}

impl JitKernels {
    /// Compile `kernels` for the host.
    pub fn compile(kernels: &[Kernel]) -> Result<JitKernels, CodegenError> {
        let mut module = JITModule::new(JITBuilder::with_isa(host_isa()?, cranelift_module::default_libcall_names()));
        let mut ids = Vec::with_capacity(kernels.len());
        for k in kernels {
            ids.push(define_kernel(&mut module, k, Linkage::Local)?);
        }
        module.finalize_definitions().map_err(backend)?;
        let fns = ids
            .into_iter()
            .map(|id| {
                let ptr = module.get_finalized_function(id);
                // SAFETY: the function was defined with `kernel_signature`, which is the
                // C ABI signature of `KernelFn`.
                unsafe { std::mem::transmute::<*const u8, KernelFn>(ptr) }
            })
            .collect();
        Ok(JitKernels { module: Some(module), fns })
    }

    /// The i-th kernel's entry point (valid while `self` lives).
    pub fn get(&self, i: usize) -> Option<KernelFn> {
        self.fns.get(i).copied()
    }

    pub fn len(&self) -> usize {
        self.fns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fns.is_empty()
    }
}

impl Drop for JitKernels {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: the pointers in `fns` die with `self`; nothing else refers to the code.
            unsafe { m.free_memory() };
        }
    }
}
