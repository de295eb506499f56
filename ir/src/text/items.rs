//! Module-level parsing: the `module` header, `weight` declarations and `func` bodies,
//! built through the graph API. Names are resolved here: values must be defined before
//! use, weights may be declared anywhere (their uses are resolved once the whole module
//! has been read), and every name clash is reported at the clashing token.

use super::lexer::{Pos, Tok, ValueName};
use super::parser::{AttrDict, Parser};
use super::ParseError;
use crate::graph::{quote_name, Function, GroupKind, Module, ValueId, WeightDecl, WeightSource};
use crate::op::{Op, OpBuildError};
use crate::types::TensorType;
use crate::DType;
use std::collections::{HashMap, HashSet};

type Result<T> = std::result::Result<T, ParseError>;

/// A returned weight whose type can only be checked once all weights are known.
#[derive(Debug)]
struct WeightReturn {
    weight: String,
    output: String,
    declared: TensorType,
    pos: Pos,
}

/// What a function still needs from the weight table.
#[derive(Debug, Default)]
struct WeightFixups {
    /// Each weight the function references, with its first use.
    first_uses: Vec<(String, Pos)>,
    returns: Vec<WeightReturn>,
}

/// A function being built, with its name scope.
#[derive(Debug)]
struct Body {
    f: Function,
    scope: HashMap<ValueName, ValueId>,
    fixups: WeightFixups,
}

/// Upper bound on a group id, so a hostile file cannot claim absurd ids (ids are dense
/// in printed text, so this is never a real limit).
const MAX_GROUP_ID: u64 = u32::MAX as u64;

/// A declared output: its name and type.
#[derive(Debug)]
struct OutputDecl {
    name: String,
    ty: TensorType,
}

/// Parse a whole module.
pub(crate) fn module(p: &mut Parser<'_>) -> Result<Module> {
    p.expect_keyword("module", "`module` at the start of the file")?;
    let (name, _) = p.at_name("the module name after `module` (like `@model`)")?;
    let mut module = Module::new(name);
    if p.at(&Tok::LBrace) {
        module.attrs = p.attr_dict()?.map;
    }
    let mut weight_positions: HashMap<String, Pos> = HashMap::new();
    let mut function_positions: HashMap<String, Pos> = HashMap::new();
    let mut fixups = Vec::new();
    loop {
        if p.at_keyword("weight") {
            let (decl, pos) = weight(p)?;
            if let Some(first) = weight_positions.get(&decl.name) {
                return Err(pos.error(format!("weight `@{}` is already declared at {first}", quote_name(&decl.name))));
            }
            weight_positions.insert(decl.name.clone(), pos);
            module.weights.push(decl);
        } else if p.at_keyword("func") {
            let (body, pos) = function(p)?;
            if let Some(first) = function_positions.get(&body.f.name) {
                return Err(
                    pos.error(format!("function `@{}` is already defined at {first}", quote_name(&body.f.name)))
                );
            }
            function_positions.insert(body.f.name.clone(), pos);
            fixups.push(body.fixups);
            module.functions.push(body.f);
        } else {
            p.expect_eof("`weight`, `func` or end of input")?;
            break;
        }
    }
    resolve_weights(&mut module, fixups)?;
    Ok(module)
}

/// Give every weight value its declared type, reporting undeclared weights and
/// returned weights whose type differs from the output's.
fn resolve_weights(module: &mut Module, fixups: Vec<WeightFixups>) -> Result<()> {
    let types: HashMap<&str, &TensorType> = module.weights.iter().map(|w| (w.name.as_str(), &w.ty)).collect();
    for (f, fixups) in module.functions.iter_mut().zip(fixups) {
        for (name, pos) in fixups.first_uses {
            let ty = types
                .get(name.as_str())
                .ok_or_else(|| pos.error(format!("undefined weight `@{}`", quote_name(&name))))?;
            if let Some(&v) = f.weight_values().get(&name) {
                f.set_type(v, (*ty).clone());
            }
        }
        for r in fixups.returns {
            if let Some(ty) = types.get(r.weight.as_str()) {
                check_output_type(&format!("@{}", quote_name(&r.weight)), ty, &r.output, &r.declared, r.pos)?;
            }
        }
    }
    Ok(())
}

fn check_output_type(value: &str, actual: &TensorType, output: &str, declared: &TensorType, pos: Pos) -> Result<()> {
    if actual == declared {
        return Ok(());
    }
    Err(pos.error(format!("`{value}` has type {actual} but output `{}` is declared as {declared}", quote_name(output))))
}

// ---------------------------------------------------------------------- weights

/// `weight @name : type = source`; returns the declaration and the name's position.
fn weight(p: &mut Parser<'_>) -> Result<(WeightDecl, Pos)> {
    p.expect_keyword("weight", "`weight`")?;
    let (name, pos) = p.at_name("a weight name after `weight` (like `@fc1.weight`)")?;
    p.expect(&Tok::Colon, "`:` after the weight name")?;
    let ty = p.tensor_type()?;
    p.expect(&Tok::Equals, "`=` after the weight type")?;
    let source = weight_source(p, &ty)?;
    Ok((WeightDecl { name, ty, source }, pos))
}

fn weight_source(p: &mut Parser<'_>, ty: &TensorType) -> Result<WeightSource> {
    const WHAT: &str = "a weight source (`safetensors(…)`, `raw(…)` or `dense<…>`)";
    if p.at_keyword("safetensors") {
        p.bump()?;
        p.expect(&Tok::LParen, "`(` after `safetensors`")?;
        let file = string(p, "the file name (a string)")?;
        p.expect(&Tok::Comma, "`,` after the file name")?;
        let tensor = string(p, "the tensor name (a string)")?;
        p.expect(&Tok::RParen, "`)` after the tensor name")?;
        Ok(WeightSource::Safetensors { file, tensor })
    } else if p.at_keyword("raw") {
        p.bump()?;
        p.expect(&Tok::LParen, "`(` after `raw`")?;
        let file = string(p, "the file name (a string)")?;
        p.expect(&Tok::Comma, "`,` after the file name")?;
        p.expect_keyword("offset", "`offset`")?;
        p.expect(&Tok::Equals, "`=` after `offset`")?;
        let offset = p.offset("a byte offset (a non-negative integer)")?;
        p.expect(&Tok::RParen, "`)` after the offset")?;
        Ok(WeightSource::Raw { file, offset })
    } else if p.at_keyword("dense") {
        let pos = p.pos();
        let tensor = p.dense()?;
        let literal_ty = TensorType::fixed(tensor.dtype, &tensor.shape.iter().map(|&d| d as i64).collect::<Vec<_>>());
        if literal_ty != *ty {
            return Err(pos.error(format!("the literal has type {literal_ty} but the weight is declared as {ty}")));
        }
        Ok(WeightSource::Inline(tensor))
    } else {
        Err(p.unexpected(WHAT))
    }
}

fn string(p: &mut Parser<'_>, what: &str) -> Result<String> {
    if !matches!(p.peek(), Tok::Str(_)) {
        return Err(p.unexpected(what));
    }
    match p.bump()?.tok {
        Tok::Str(s) => Ok(s),
        _ => Err(p.unexpected(what)),
    }
}

// ---------------------------------------------------------------------- functions

/// `func @name(params) -> (outputs) { stmt* return … }`; returns the body and the
/// name's position.
fn function(p: &mut Parser<'_>) -> Result<(Body, Pos)> {
    p.expect_keyword("func", "`func`")?;
    let (name, pos) = p.at_name("a function name after `func` (like `@forward`)")?;
    let mut body = Body { f: Function::new(name), scope: HashMap::new(), fixups: WeightFixups::default() };
    p.expect(&Tok::LParen, "`(` to start the parameters")?;
    p.comma_list(&Tok::RParen, "the parameters", |p| param(p, &mut body))?;
    p.bump()?;
    p.expect(&Tok::Arrow, "`->` after the parameters")?;
    p.expect(&Tok::LParen, "`(` to start the outputs")?;
    let mut outputs: Vec<OutputDecl> = Vec::new();
    let mut output_names: HashSet<String> = HashSet::new();
    p.comma_list(&Tok::RParen, "the outputs", |p| {
        let (name, pos) = p.name("an output name (identifier or string)")?;
        if !output_names.insert(name.clone()) {
            return Err(pos.error(format!("output `{}` is already declared", quote_name(&name))));
        }
        p.expect(&Tok::Colon, "`:` after the output name")?;
        outputs.push(OutputDecl { name, ty: p.tensor_type()? });
        Ok(())
    })?;
    p.bump()?;
    p.expect(&Tok::LBrace, "`{` to start the function body")?;
    loop {
        match p.peek() {
            Tok::Value(_) => statement(p, &mut body)?,
            // Declarations come before the first op: after an op, `group N` is that op's
            // annotation (the lexer does not see line breaks).
            Tok::Ident("group") if body.f.op_count() == 0 => group_decl(p, &mut body)?,
            Tok::Ident("return") => break,
            _ => return Err(p.unexpected("an op (`%0 = …`), a `group` declaration or `return`")),
        }
    }
    ret(p, &mut body, &outputs)?;
    p.expect(&Tok::RBrace, "`}` after `return` to close the function")?;
    Ok((body, pos))
}

/// `%name : type`.
fn param(p: &mut Parser<'_>, body: &mut Body) -> Result<()> {
    const WHAT: &str = "a parameter (like `%x: f32[?batch, 8]`)";
    let pos = p.pos();
    let name = match p.peek() {
        Tok::Value(ValueName::Name(_)) => match p.bump()?.tok {
            Tok::Value(name) => name,
            _ => return Err(p.unexpected(WHAT)),
        },
        _ => return Err(p.unexpected(WHAT)),
    };
    if body.scope.contains_key(&name) {
        return Err(pos.error(format!("parameter `{name}` is already declared")));
    }
    p.expect(&Tok::Colon, "`:` after the parameter name")?;
    let ty = p.tensor_type()?;
    if let ValueName::Name(text) = &name {
        let v = body.f.add_param(text.clone(), ty);
        body.scope.insert(name, v);
    }
    Ok(())
}

/// A group id after `group`.
fn group_id(p: &mut Parser<'_>) -> Result<(u32, Pos)> {
    let pos = p.pos();
    let Tok::Int(text) = *p.peek() else {
        return Err(p.unexpected("a group id (a non-negative integer) after `group`"));
    };
    let id =
        text.parse::<u64>().ok().filter(|n| *n <= MAX_GROUP_ID).ok_or_else(|| pos.error("group id out of range"))?;
    p.bump()?;
    Ok((id as u32, pos))
}

/// `group N : kind`: declares the kind of fusion group `N` (only before the first op).
fn group_decl(p: &mut Parser<'_>, body: &mut Body) -> Result<()> {
    p.expect_keyword("group", "`group`")?;
    let (id, pos) = group_id(p)?;
    if body.f.group_kind(id).is_some() {
        return Err(pos.error(format!("group {id} is already declared")));
    }
    p.expect(&Tok::Colon, "`:` after the group id")?;
    let kind_pos = p.pos();
    let Tok::Ident(name) = *p.peek() else {
        return Err(p.unexpected("a group kind"));
    };
    let kind = GroupKind::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = GroupKind::ALL.iter().map(|k| k.name()).collect();
        kind_pos.error(format!("unknown group kind `{name}` (expected one of {})", names.join(", ")))
    })?;
    p.bump()?;
    body.f.set_group_kind(id, kind);
    Ok(())
}

/// `%r, … = opname operands {attrs} : types [group N]`.
fn statement(p: &mut Parser<'_>, body: &mut Body) -> Result<()> {
    let results = result_names(p, body)?;
    p.expect(&Tok::Equals, "`=` after the result names")?;
    let op_pos = p.pos();
    let Tok::Ident(op_name) = *p.peek() else {
        return Err(p.unexpected("an op name"));
    };
    p.bump()?;
    let operands = operand_list(p, body)?.into_iter().map(|(v, _)| v).collect();
    let attrs = if p.at(&Tok::LBrace) { p.attr_dict()? } else { AttrDict::default() };
    p.expect(&Tok::Colon, "`:` before the result types")?;
    let types_pos = p.pos();
    let types = type_list(p)?;
    if types.len() != results.len() {
        return Err(types_pos.error(format!(
            "expected {} result type(s), one per result, found {}",
            results.len(),
            types.len()
        )));
    }
    let group = if p.at(&Tok::Ident("group")) {
        p.bump()?;
        let (g, pos) = group_id(p)?;
        if p.at(&Tok::Colon) {
            return Err(p
                .pos()
                .error("group declarations (`group N : kind`) must come before the first op of the function"));
        }
        if body.f.group_kind(g).is_none() {
            return Err(
                pos.error(format!("group {g} has no declared kind (declare it with `group {g} : <kind>` first)"))
            );
        }
        Some(g)
    } else {
        None
    };
    let op = build_op(op_name, op_pos, &attrs)?;
    let id = body.f.add_op(op, operands, types);
    body.f.set_group(id, group);
    let result_ids = body.f.op(id).map(|data| data.results.clone()).unwrap_or_default();
    for (name, v) in results.into_iter().zip(result_ids) {
        body.scope.insert(name, v);
    }
    Ok(())
}

/// `%r (',' %r)*`, each name fresh in the function.
fn result_names(p: &mut Parser<'_>, body: &Body) -> Result<Vec<ValueName>> {
    let mut results = Vec::new();
    let mut fresh: HashSet<ValueName> = HashSet::new();
    loop {
        let pos = p.pos();
        if !matches!(p.peek(), Tok::Value(_)) {
            return Err(p.unexpected("a result name (like `%0`)"));
        }
        let Tok::Value(name) = p.bump()?.tok else {
            return Err(pos.error("expected a result name"));
        };
        if body.scope.contains_key(&name) || !fresh.insert(name.clone()) {
            return Err(pos.error(format!("value `{name}` is already defined")));
        }
        results.push(name);
        if !p.eat(&Tok::Comma)? {
            return Ok(results);
        }
    }
}

/// `type (',' type)*`.
fn type_list(p: &mut Parser<'_>) -> Result<Vec<TensorType>> {
    let mut types = vec![p.tensor_type()?];
    while p.eat(&Tok::Comma)? {
        types.push(p.tensor_type()?);
    }
    Ok(types)
}

/// The op table's verdict on a name and attributes, positioned at the culprit: the
/// offending attribute's name, or the op name.
fn build_op(name: &str, name_pos: Pos, attrs: &AttrDict) -> Result<Op> {
    Op::from_parts(name, &attrs.map).map_err(|e| {
        let pos = match &e {
            OpBuildError::UnknownOp(_) => name_pos,
            OpBuildError::UnknownAttr { attr, .. } | OpBuildError::BadAttr { attr, .. } => {
                attrs.positions.get(attr).copied().unwrap_or(name_pos)
            }
        };
        pos.error(e.to_string())
    })
}

/// `(operand (',' operand)*)?` where an operand is `%value` or `@weight`.
fn operand_list(p: &mut Parser<'_>, body: &mut Body) -> Result<Vec<(ValueId, Pos)>> {
    let mut operands = Vec::new();
    if !matches!(p.peek(), Tok::Value(_) | Tok::At(_)) {
        return Ok(operands);
    }
    loop {
        operands.push(operand(p, body)?);
        if !p.eat(&Tok::Comma)? {
            return Ok(operands);
        }
    }
}

fn operand(p: &mut Parser<'_>, body: &mut Body) -> Result<(ValueId, Pos)> {
    const WHAT: &str = "an operand (`%value` or `@weight`)";
    let pos = p.pos();
    if !matches!(p.peek(), Tok::Value(_) | Tok::At(_)) {
        return Err(p.unexpected(WHAT));
    }
    match p.bump()?.tok {
        Tok::Value(name) => match body.scope.get(&name) {
            Some(&v) => Ok((v, pos)),
            None => Err(pos.error(format!("undefined value `{name}`"))),
        },
        Tok::At(weight) => {
            if !body.f.weight_values().contains_key(&weight) {
                body.fixups.first_uses.push((weight.clone(), pos));
            }
            // The declared type is filled in once the whole module has been read.
            Ok((body.f.weight(&weight, TensorType::scalar(DType::F32)), pos))
        }
        _ => Err(pos.error(format!("expected {WHAT}"))),
    }
}

/// `return operands`, one per declared output, each of the declared type.
fn ret(p: &mut Parser<'_>, body: &mut Body, outputs: &[OutputDecl]) -> Result<()> {
    let pos = p.expect_keyword("return", "`return`")?.pos;
    let operands = operand_list(p, body)?;
    if operands.len() != outputs.len() {
        return Err(pos.error(format!(
            "expected {} return value(s), one per declared output, found {}",
            outputs.len(),
            operands.len()
        )));
    }
    for ((v, pos), output) in operands.into_iter().zip(outputs) {
        let weight = match body.f.try_value(v).map(|data| &data.def) {
            Some(crate::graph::ValueDef::Weight { name }) => Some(name.clone()),
            _ => None,
        };
        match weight {
            Some(weight) => body.fixups.returns.push(WeightReturn {
                weight,
                output: output.name.clone(),
                declared: output.ty.clone(),
                pos,
            }),
            None => {
                if let Some(data) = body.f.try_value(v).filter(|data| data.ty != output.ty) {
                    let name = body.scope.iter().find(|(_, id)| **id == v).map(|(n, _)| n.to_string());
                    check_output_type(&name.unwrap_or_default(), &data.ty, &output.name, &output.ty, pos)?;
                }
            }
        }
        body.f.add_output(output.name.clone(), v);
    }
    Ok(())
}
