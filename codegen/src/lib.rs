//! Codegen: fusion groups to a target-neutral kernel form, then Cranelift, PTX and naga
//! backends (arrives with the codegen issue).
