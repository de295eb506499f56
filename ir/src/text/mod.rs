//! The `.fir` text format: ModelIR written as text (grammar in `docs/text-format.md`).
//!
//! [`print_module`] renders a module deterministically; [`parse_module`] reads it back,
//! so `parse_module(&print_module(&m))` equals `m.canonical()`. The parser is a
//! hand-written lexer (`lexer`) and recursive descent (`parser` for types, dims,
//! attributes and literals, `items` for modules, weights and functions). It never
//! panics on any input, never allocates from a size the input only claims, and reports
//! every error as `line:column: expected X, found Y`. It checks names and the shape of
//! the text, not the semantics of ops: the verifier does that.

mod items;
mod lexer;
mod parser;
mod printer;

#[cfg(test)]
mod tests;

use crate::graph::{Function, Module, OpId};
use crate::types::TensorType;

/// A parse error at a 1-based `line:column` (columns count chars).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The module as `.fir` text.
pub fn print_module(m: &Module) -> String {
    printer::module_text(m, &|_, _| Vec::new())
}

/// Just the `func` item of `f` (a function of `m`).
pub fn print_function(m: &Module, f: &Function) -> String {
    let _ = m;
    printer::function_text(f, &|_, _| Vec::new())
}

/// Like [`print_module`], but after each op line prints `  ; <note>` lines given by
/// `notes(function_name, Some(op))`, and after each `func` header line the notes for
/// `(function_name, None)`. Used to show verifier errors inline.
pub fn print_module_annotated(m: &Module, notes: &dyn Fn(&str, Option<OpId>) -> Vec<String>) -> String {
    printer::module_text(m, notes)
}

/// Parse a whole `.fir` module.
pub fn parse_module(src: &str) -> Result<Module, ParseError> {
    let mut p = parser::Parser::new(src)?;
    items::module(&mut p)
}

/// Parse a tensor type alone, e.g. `f32[?batch, 8]` (surrounding whitespace allowed).
pub fn parse_type(src: &str) -> Result<TensorType, ParseError> {
    let mut p = parser::Parser::new(src)?;
    let ty = p.tensor_type()?;
    p.expect_eof("end of input after the type")?;
    Ok(ty)
}

/// Parse a tensor literal alone, e.g. `dense<f32[2]: [1.0, 2.0]>` (used by filetests and
/// tools that take literal inputs).
pub fn parse_tensor_literal(src: &str) -> Result<crate::tensor::Tensor, ParseError> {
    let mut p = parser::Parser::new(src)?;
    let t = p.dense()?;
    p.expect_eof("end of input after the literal")?;
    Ok(t)
}
