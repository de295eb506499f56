//! The `.fir` printer: a deterministic rendering of a [`Module`] that the parser reads
//! back as the module's canonical form. Values are named by
//! [`Function::value_names`]; ops appear in [`Function::op_order`] (or, for a graph with
//! a cycle, in the same fallback order the names use), attributes sorted by name.

use crate::attr::{write_string, write_tensor, Attr};
use crate::graph::{quote_name, Function, Module, OpId, ValueId, WeightDecl, WeightSource};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write};

/// Notes to print as `; …` comment lines: after the `func` line (`None`) or after an op.
pub(crate) type Notes<'n> = &'n dyn Fn(&str, Option<OpId>) -> Vec<String>;

/// The whole module, with optional notes.
pub(crate) fn module_text(m: &Module, notes: Notes<'_>) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_module(&mut out, m, notes);
    out
}

/// One `func` item.
pub(crate) fn function_text(f: &Function, notes: Notes<'_>) -> String {
    let mut out = String::new();
    let _ = write_function(&mut out, f, notes);
    out
}

fn write_module(out: &mut String, m: &Module, notes: Notes<'_>) -> fmt::Result {
    write!(out, "module @{}", quote_name(&m.name))?;
    if !m.attrs.is_empty() {
        out.push(' ');
        write_attrs(out, &m.attrs)?;
    }
    out.push('\n');
    if !m.weights.is_empty() {
        out.push('\n');
        for w in &m.weights {
            write_weight(out, w)?;
        }
    }
    for f in &m.functions {
        out.push('\n');
        write_function(out, f, notes)?;
    }
    Ok(())
}

/// `{k = v, …}` in key order.
fn write_attrs(out: &mut String, attrs: &BTreeMap<String, Attr>) -> fmt::Result {
    out.push('{');
    for (i, (key, value)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write!(out, "{} = {value}", quote_name(key))?;
    }
    out.push('}');
    Ok(())
}

fn write_weight(out: &mut String, w: &WeightDecl) -> fmt::Result {
    write!(out, "weight @{} : {} = ", quote_name(&w.name), w.ty)?;
    match &w.source {
        WeightSource::Safetensors { file, tensor } => {
            out.push_str("safetensors(");
            write_string(out, file)?;
            out.push_str(", ");
            write_string(out, tensor)?;
            out.push(')');
        }
        WeightSource::Raw { file, offset } => {
            out.push_str("raw(");
            write_string(out, file)?;
            write!(out, ", offset = {offset})")?;
        }
        WeightSource::Inline(t) => write_tensor(out, t)?,
    }
    out.push('\n');
    Ok(())
}

/// Ops in print order: topological, or for a cycle the order `value_names` numbers in.
fn print_order(f: &Function) -> Vec<OpId> {
    f.op_order().unwrap_or_else(|cycle| {
        let on_cycle: HashSet<OpId> = cycle.ops.iter().copied().collect();
        let mut order: Vec<OpId> = f.op_ids().filter(|o| !on_cycle.contains(o)).collect();
        order.extend(cycle.ops);
        order
    })
}

/// Names for printing; values the function cannot name (dangling handles) get a quoted
/// placeholder that the parser will reject as undefined.
struct Names(HashMap<ValueId, String>);

impl Names {
    fn get(&self, v: ValueId) -> String {
        match self.0.get(&v) {
            Some(name) => name.clone(),
            None => format!("%{}", quote_name(&format!("<invalid {v}>"))),
        }
    }
}

fn type_text(f: &Function, v: ValueId) -> String {
    match f.try_value(v) {
        Some(data) => data.ty.to_string(),
        None => "<invalid type>".to_string(),
    }
}

fn write_function(out: &mut String, f: &Function, notes: Notes<'_>) -> fmt::Result {
    let names = Names(f.value_names());
    write!(out, "func @{}(", quote_name(&f.name))?;
    for (i, (name, v)) in f.params().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write!(out, "%{}: {}", quote_name(name), type_text(f, *v))?;
    }
    out.push_str(") -> (");
    for (i, (name, v)) in f.outputs().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write!(out, "{}: {}", quote_name(name), type_text(f, *v))?;
    }
    out.push_str(") {\n");
    write_notes(out, notes(&f.name, None));
    let order = print_order(f);
    let groups = f.dense_group_ids(&order);
    // Declarations come first, in dense order, so every annotation below refers back.
    let mut declared: Vec<(u32, u32)> = groups.iter().map(|(old, new)| (*new, *old)).collect();
    declared.sort_unstable();
    for (new, old) in declared {
        if let Some(kind) = f.group_kind(old) {
            writeln!(out, "  group {new} : {kind}")?;
        }
    }
    for id in order {
        write_op(out, f, id, &names, &groups)?;
        write_notes(out, notes(&f.name, Some(id)));
    }
    out.push_str("  return");
    for (i, (_, v)) in f.outputs().iter().enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        out.push_str(&names.get(*v));
    }
    out.push_str("\n}\n");
    Ok(())
}

/// `  %r0, %r1 = opname %a, @w {attr = v} : type0, type1 group 2`.
fn write_op(out: &mut String, f: &Function, id: OpId, names: &Names, groups: &BTreeMap<u32, u32>) -> fmt::Result {
    let Some(data) = f.op(id) else {
        return Ok(());
    };
    out.push_str("  ");
    let results: Vec<String> = data.results.iter().map(|r| names.get(*r)).collect();
    write!(out, "{} = {}", results.join(", "), data.op.name())?;
    for (i, v) in data.operands.iter().enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        out.push_str(&names.get(*v));
    }
    let attrs = data.op.attr_map();
    if !attrs.is_empty() {
        out.push(' ');
        write_attrs(out, &attrs)?;
    }
    out.push_str(" :");
    for (i, r) in data.results.iter().enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        out.push_str(&type_text(f, *r));
    }
    if let Some(g) = f.group(id).and_then(|g| groups.get(&g)) {
        write!(out, " group {g}")?;
    }
    out.push('\n');
    Ok(())
}

/// Each note as `  ; …` lines; control characters are escaped so the output still parses.
fn write_notes(out: &mut String, notes: Vec<String>) {
    for note in notes {
        for line in note.lines() {
            out.push_str("  ; ");
            for c in line.chars() {
                if c.is_control() && c != '\t' {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                } else {
                    out.push(c);
                }
            }
            out.push('\n');
        }
    }
}
