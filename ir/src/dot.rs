//! Graphviz export: [`to_dot`] draws a module as a DOT `digraph`, one cluster per
//! function.
//!
//! * inputs are ellipses (`%x: f32[?batch, 8]`), weights gray boxes (`@w: f32[4, 8]`),
//!   outputs inverted houses with the output's name;
//! * ops are `Mrecord` nodes with three rows: the op applied to its operands
//!   (`linear(%x, @w)`), its attributes in short form (long lists, tensor literals and
//!   strings abbreviated), and its results with their types;
//! * every operand and every output is an edge from the value's producer, labelled with
//!   the value's name and type (`%3: f32[?b, 16]`).
//!
//! Value names are those of the text printer ([`Function::value_names`]). The output is
//! deterministic: functions in module order, ops in [`Function::op_order`] (creation order
//! for ops on a cycle), weights by name. Every label is escaped: `"` and `\` always,
//! newlines as `\n`, other control characters shown as `\u{..}`, and in record labels
//! also `{`, `}`, `|`, `<`, `>`.

use crate::attr::Attr;
use crate::graph::{quote_name, Function, Module, OpId, ValueId};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::fmt::Write;

/// Render the module as a Graphviz digraph.
pub fn to_dot(m: &Module) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape(&m.name, false));
    out.push_str("  graph [rankdir=TB, fontname=\"Helvetica\", labelloc=t];\n");
    out.push_str("  node [fontname=\"Helvetica\", fontsize=10];\n");
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
    let _ = writeln!(out, "  label=\"module @{}\";", escape(&quote_name(&m.name), false));
    for (fi, f) in m.functions.iter().enumerate() {
        write_function(&mut out, fi, f);
    }
    out.push_str("}\n");
    out
}

fn write_function(out: &mut String, fi: usize, f: &Function) {
    let names = f.value_names();
    let order: Vec<OpId> = f.op_order().unwrap_or_else(|cycle| {
        let mut placed: Vec<OpId> = f.op_ids().filter(|o| !cycle.ops.contains(o)).collect();
        placed.extend(cycle.ops.iter().copied());
        placed
    });
    let name_of = |v: ValueId| names.get(&v).cloned().unwrap_or_else(|| format!("%<dangling {}>", v.0));
    let type_of = |v: ValueId| f.try_value(v).map(|d| d.ty.to_string()).unwrap_or_else(|| "?".to_string());
    let value_label = |v: ValueId| format!("{}: {}", name_of(v), type_of(v));

    let _ = writeln!(out, "  subgraph \"cluster_{}\" {{", escape(&f.name, false));
    let _ = writeln!(out, "    label=\"func @{}\";", escape(&quote_name(&f.name), false));
    out.push_str("    style=rounded;\n");

    // Where each value comes from: the node id that draws it.
    let mut source: HashMap<ValueId, String> = HashMap::new();
    for (i, (_, v)) in f.params().iter().enumerate() {
        let id = format!("f{fi}_in{i}");
        let _ = writeln!(out, "    \"{id}\" [shape=ellipse, label=\"{}\"];", escape(&value_label(*v), false));
        source.insert(*v, id);
    }
    for (i, (_, v)) in f.weight_values().iter().enumerate() {
        let id = format!("f{fi}_w{i}");
        let _ = writeln!(
            out,
            "    \"{id}\" [shape=box, style=filled, fillcolor=gray88, color=gray45, label=\"{}\"];",
            escape(&value_label(*v), false)
        );
        source.insert(*v, id);
    }
    for (pos, op) in order.iter().enumerate() {
        let Some(data) = f.op(*op) else { continue };
        let id = format!("f{fi}_op{pos}");
        let operands: Vec<String> = data.operands.iter().map(|v| name_of(*v)).collect();
        let mut rows = vec![escape(&format!("{}({})", data.op.name(), operands.join(", ")), true)];
        let attrs: Vec<String> = data.op.attrs().iter().map(|(k, a)| format!("{k}={}", short_attr(a))).collect();
        if !attrs.is_empty() {
            rows.push(attrs.iter().map(|a| escape(a, true)).collect::<Vec<_>>().join("\\n"));
        }
        rows.push(data.results.iter().map(|r| escape(&value_label(*r), true)).collect::<Vec<_>>().join("\\n"));
        let _ = writeln!(out, "    \"{id}\" [shape=Mrecord, label=\"{{{}}}\"];", rows.join("|"));
        for r in &data.results {
            source.insert(*r, id.clone());
        }
    }
    for (i, (name, _)) in f.outputs().iter().enumerate() {
        let _ = writeln!(
            out,
            "    \"f{fi}_out{i}\" [shape=invhouse, style=filled, fillcolor=lightblue, label=\"{}\"];",
            escape(name, false)
        );
    }

    // Edges, in op order then operand order, then outputs.
    let mut dangling: Vec<ValueId> = Vec::new();
    let mut edge = |out: &mut String, v: ValueId, target: &str| {
        let from = match source.get(&v) {
            Some(id) => id.clone(),
            None => {
                let id = format!("f{fi}_v{}", v.0);
                if !dangling.contains(&v) {
                    dangling.push(v);
                    let _ = writeln!(
                        out,
                        "    \"{id}\" [shape=octagon, color=red, label=\"{}\"];",
                        escape(&format!("dangling {}", value_label(v)), false)
                    );
                }
                id
            }
        };
        let _ = writeln!(out, "    \"{from}\" -> \"{target}\" [label=\"{}\"];", escape(&value_label(v), false));
    };
    for (pos, op) in order.iter().enumerate() {
        let Some(data) = f.op(*op) else { continue };
        let target = format!("f{fi}_op{pos}");
        for v in &data.operands {
            edge(out, *v, &target);
        }
    }
    for (i, (_, v)) in f.outputs().iter().enumerate() {
        edge(out, *v, &format!("f{fi}_out{i}"));
    }
    out.push_str("  }\n");
}

/// An attribute in short form: long lists and literals abbreviated.
fn short_attr(a: &Attr) -> String {
    const MAX_ITEMS: usize = 8;
    const MAX_CHARS: usize = 32;
    match a {
        Attr::Ints(v) if v.len() > MAX_ITEMS => {
            format!("{}, …]", Attr::Ints(v[..MAX_ITEMS].to_vec()).to_string().trim_end_matches(']'))
        }
        Attr::Floats(v) if v.len() > MAX_ITEMS => {
            format!("{}, …]", Attr::Floats(v[..MAX_ITEMS].to_vec()).to_string().trim_end_matches(']'))
        }
        Attr::Tensor(t) if t.numel() > 4 => short_tensor(t),
        Attr::Str(s) if s.chars().count() > MAX_CHARS => {
            let head: String = s.chars().take(MAX_CHARS).collect();
            format!("{}…", Attr::Str(head))
        }
        other => other.to_string(),
    }
}

fn short_tensor(t: &Tensor) -> String {
    let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
    format!("dense<{}[{}]: …>", t.dtype, dims.join(", "))
}

/// Escape text for a double-quoted DOT label: `"` and `\`, newlines as `\n`, other
/// control characters as visible `\u{..}`; with `record`, also the record-label
/// metacharacters `{ } | < >`.
pub fn escape(s: &str, record: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '{' | '}' | '|' | '<' | '>' if record => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}
