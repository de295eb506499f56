//! Unit tests of the `.fir` lexer, parser and printer: the documented example, every
//! hostile input class (truncation, control characters, huge claims, overflow), and
//! each name-resolution error with its position.

use super::*;
use crate::attr::Attr;
use crate::dim::Dim;
use crate::dtype::DType;
use crate::graph::{WeightDecl, WeightSource};
use crate::op::Op;
use crate::tensor::Tensor;

const EXAMPLE: &str = r#"; A two-layer MLP. Comments run from ';' to the end of the line.
module @tiny_mlp {producer = "hand-written"}

weight @fc1.weight : f32[16, 8] = safetensors("mlp.safetensors", "fc1.weight")
weight @fc1.bias : f32[16] = raw("mlp.bin", offset = 0)
weight @fc2.weight : f32[4, 16] = safetensors("mlp.safetensors", "fc2.weight")
weight @scale : f32[4] = dense<f32[4]: [1.0, 0.5, 0.25, 2.0]>

func @forward(%x: f32[?batch, 8]) -> (y: f32[?batch, 4]) {
  %0 = linear %x, @fc1.weight, @fc1.bias : f32[?batch, 16]
  %1 = relu %0 : f32[?batch, 16]
  %2 = linear %1, @fc2.weight : f32[?batch, 4]
  %3 = mul %2, @scale : f32[?batch, 4]
  return %3
}
"#;

/// The error text of parsing `src`, which must fail.
fn err(src: &str) -> String {
    match parse_module(src) {
        Ok(m) => panic!("expected an error, parsed {m:?}"),
        Err(e) => e.to_string(),
    }
}

/// A module wrapping one function body.
fn func(sig: &str, body: &str) -> String {
    format!("module @m\nfunc @f{sig} {{\n{body}\n}}\n")
}

#[test]
fn documented_example_parses_and_reprints() {
    let m = parse_module(EXAMPLE).unwrap();
    assert_eq!(m.name, "tiny_mlp");
    assert_eq!(m.attrs.get("producer"), Some(&Attr::Str("hand-written".into())));
    assert_eq!(m.weights.len(), 4);
    let f = m.function("forward").unwrap();
    assert_eq!(f.op_count(), 4);
    assert_eq!(f.params()[0].0, "x");
    assert_eq!(f.outputs()[0].0, "y");
    let printed = print_module(&m);
    let without_comment: String = EXAMPLE.lines().skip(1).map(|l| format!("{l}\n")).collect();
    assert_eq!(printed, without_comment);
    assert_eq!(parse_module(&printed).unwrap(), m.canonical().unwrap());
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    // Cuts between items can leave a valid (shorter) module; a cut inside the function
    // never does. Every cut must come back without panicking, positioned in the prefix.
    let body = EXAMPLE.find("func").unwrap() + 1..EXAMPLE.rfind('}').unwrap();
    for (cut, _) in EXAMPLE.char_indices() {
        let prefix = &EXAMPLE[..cut];
        match parse_module(prefix) {
            Ok(m) => assert!(!body.contains(&cut), "prefix of {cut} bytes parsed: {m:?}"),
            Err(e) => {
                assert!(e.line >= 1 && e.column >= 1);
                assert!(e.line <= prefix.lines().count() + 1, "{e} for a prefix of {cut} bytes");
            }
        }
    }
    // Cutting anywhere inside a literal-heavy line too.
    let literal = "module @m\nweight @w : f32[2, 2] = dense<f32[2, 2]: [1.5, -inf, nan, 1e-7]>\n";
    for (cut, _) in literal.char_indices().filter(|(i, _)| *i > "module @m\n".len() && *i < literal.len() - 1) {
        assert!(parse_module(&literal[..cut]).is_err(), "prefix {cut}");
    }
    assert!(parse_module(literal).is_ok());
}

#[test]
fn control_characters_are_rejected_with_position() {
    assert_eq!(err("module @m\n  \0"), "2:3: unexpected character U+0000");
    assert_eq!(err("module @m \u{7}"), "1:11: unexpected character U+0007");
    assert!(err("module @m {a = \"x\u{1}\"}").starts_with("1:18: unexpected character U+0001 in a string"));
    assert!(err("module @m ; bad \0 comment").starts_with("1:17: unexpected character U+0000 in a comment"));
    assert_eq!(err("module @m\n§"), "2:1: unexpected character `§`");
    // Columns count chars: the `é` in the string is one column.
    assert_eq!(err("module @\"é\" #"), "1:13: unexpected character `#`");
}

#[test]
fn errors_say_what_was_expected_and_found() {
    assert_eq!(
        err("module @m\nweight @w = f32[1] = raw(\"a\", offset = 0)"),
        "2:11: expected `:` after the weight name, found `=`"
    );
    assert_eq!(err("modul @m"), "1:1: expected `module` at the start of the file, found `modul`");
    assert_eq!(err("module @m\nfrob"), "2:1: expected `weight`, `func` or end of input, found `frob`");
    assert_eq!(err(""), "1:1: expected `module` at the start of the file, found end of input");
    assert_eq!(err("module m"), "1:8: expected the module name after `module` (like `@model`), found `m`");
    assert!(err("module @m\nweight @w : f32[1] = dense<f32[1]: [1.0]")
        .contains("expected `>` to close the `dense` literal, found end of input"));
    assert!(
        err("module @m {a = \"abc").contains("expected `\"` to close the string opened at 1:16, found end of input")
    );
    assert!(err("module @m {a = \"\\q\"}").contains("expected an escape"));
    assert!(err("module @m {a = \"\\u{110000}\"}").contains("not a unicode scalar value"));
    assert!(err("module @m {a = \"\\u{1234567}\"}").contains("1 to 6 hex digits"));
    assert!(err("module @m {a = 12ab}").contains("unexpected `a` right after the number"));
    assert!(err("module @m {a = - 1}").contains("expected a number right after `-`"));
    assert!(err("module @m {a = -nan}").contains("expected a number after `-`, found `nan`"));
    assert!(err("module @m {a = foo}").contains("expected an attribute value, found `foo`"));
}

#[test]
fn huge_claims_are_rejected_without_allocating() {
    let e = err("module @m\nweight @w : f32[100000000000] = dense<f32[100000000000]: [1.0]>");
    assert!(e.contains("expected 100000000000 elements for f32[100000000000], found 1"), "{e}");
    let e = err("module @m {a = dense<f32[4294967296, 4294967296, 4294967296]: []>}");
    assert!(e.contains("overflows"), "{e}");
    let e = err("module @m {a = dense<f32[2]: [1.0, 2.0, 3.0]>}");
    assert!(e.contains("too many elements: f32[2] has 2"), "{e}");
    let rank17 = format!("f32[{}]", vec!["1"; 17].join(", "));
    assert!(parse_type(&rank17).unwrap_err().message.contains("at most 16"));
    assert!(parse_type(&format!("f32[{}]", vec!["1"; 16].join(", "))).is_ok());
    assert!(err("module @m {a = int4<4294967298>}").contains("int4 group size"));
    assert!(err("module @m {a = int4<3>}").contains("int4 group size"));
    assert!(err("module @m {a = dense<f32[?n]: []>}").contains("static shape"));
}

#[test]
fn overflow_is_an_error() {
    assert!(err("module @m {a = 9223372036854775808}").contains("does not fit in 64 bits"));
    let m = parse_module("module @m {a = -9223372036854775808}").unwrap();
    assert_eq!(m.attrs["a"], Attr::Int(i64::MIN));
    assert!(err("module @m {a = 99999999999999999999999}").contains("does not fit"));
    assert!(err("module @m {a = 1e999}").contains("out of range"));
    assert!(parse_type("f32[9223372036854775808]").is_err());
    assert!(parse_type("f32[4294967296*4294967296]").unwrap_err().message.contains("overflows"));
    assert!(parse_type("f32[9223372036854775807+1]").unwrap_err().message.contains("overflows"));
    assert!(err("module @m\nweight @w : f32[1] = raw(\"f\", offset = 18446744073709551616)").contains("does not fit"));
    assert!(err("module @m\nweight @w : f32[1] = raw(\"f\", offset = -1)").contains("expected a byte offset"));
}

#[test]
fn types_and_dims() {
    let t = parse_type(" f32[?batch*?seq, 8, ?, ?past+?seq, 2*?n-1, -?a+3] ").unwrap();
    assert_eq!(t.to_string(), "f32[?batch*?seq, 8, ?, ?past+?seq, 2*?n-1, -?a+3]");
    assert_eq!(t.shape[0], Dim::sym("batch").mul(&Dim::sym("seq")));
    assert_eq!(t.shape[2], Dim::Unknown);
    assert_eq!(parse_type("i64[]").unwrap(), TensorType::scalar(DType::I64));
    assert_eq!(parse_type("int4<128>[4, 256]").unwrap().dtype, DType::Int4 { group_size: 128 });
    assert_eq!(parse_type("f32[?a*2*?b, 3*4]").unwrap().to_string(), "f32[2*?a*?b, 12]");
    assert_eq!(parse_type("f32[?a-?a]").unwrap().to_string(), "f32[0]");
    assert_eq!(parse_type("f32[-9223372036854775808*?a]").unwrap().to_string(), "f32[-9223372036854775808*?a]");
    assert_eq!(parse_type("f32[-3]").unwrap_err().to_string(), "1:5: dimension -3 is negative");
    assert_eq!(parse_type("f32[1-4]").unwrap_err().to_string(), "1:5: dimension -3 is negative");
    assert!(parse_type("f31[1]").unwrap_err().message.contains("unknown dtype `f31`"));
    assert!(parse_type("f32[?+1]").unwrap_err().message.contains("expected `,` or `]` in the shape, found `+`"));
    assert!(parse_type("f32[1] x").unwrap_err().message.contains("end of input after the type"));
    let long = format!("f32[?{}]", "a".repeat(200));
    assert!(parse_type(&long).unwrap_err().message.contains("longer than 128"));
}

#[test]
fn deep_or_long_input_does_not_recurse() {
    let brackets = format!("module @m {{a = {}}}", "[".repeat(100_000));
    assert!(err(&brackets).contains("expected a number in the list, found `[`"));
    let minus = format!("f32[{}1]", "-".repeat(100_000));
    assert!(parse_type(&minus).is_err());
    let sum = format!("f32[{}1]", "1+".repeat(10_000));
    assert_eq!(parse_type(&sum).unwrap().to_string(), "f32[10001]");
    let product = format!("f32[{}1]", "?a*".repeat(1_000));
    assert!(parse_type(&product).is_ok());
}

#[test]
fn undefined_and_duplicate_names() {
    let sig = "(%x: f32[2]) -> (y: f32[2])";
    assert_eq!(err(&func(sig, "  %0 = neg %7 : f32[2]\n  return %0")), "3:12: undefined value `%7`");
    assert_eq!(err(&func(sig, "  %0 = neg %0 : f32[2]\n  return %0")), "3:12: undefined value `%0`");
    assert_eq!(
        err(&func(sig, "  %0 = neg %x : f32[2]\n  %0 = neg %x : f32[2]\n  return %0")),
        "4:3: value `%0` is already defined"
    );
    assert_eq!(err(&func(sig, "  %x = neg %x : f32[2]\n  return %x")), "3:3: value `%x` is already defined");
    assert_eq!(
        err(&func(
            sig,
            "  %a, %a = topk %x {axis = 0, k = 1, largest = true, sorted = true} : f32[1], i64[1]\n  return %x"
        )),
        "3:7: value `%a` is already defined"
    );
    assert_eq!(err(&func(sig, "  %0 = neg @w : f32[2]\n  return %0")), "3:12: undefined weight `@w`");
    assert_eq!(err(&func("(%x: f32[2], %x: f32[2]) -> ()", "  return")), "2:21: parameter `%x` is already declared");
    assert_eq!(
        err(&func("(%x: f32[2]) -> (y: f32[2], y: f32[2])", "  return %x, %x")),
        "2:36: output `y` is already declared"
    );
    assert!(err(&func("(%0: f32[2]) -> ()", "  return")).contains("expected a parameter"));
    let dup_weight =
        "module @m\nweight @w : f32[1] = raw(\"a\", offset = 0)\nweight @w : f32[1] = raw(\"a\", offset = 4)\n";
    assert_eq!(err(dup_weight), "3:8: weight `@w` is already declared at 2:8");
    let dup_func = "module @m\nfunc @f() -> () {\n  return\n}\nfunc @f() -> () {\n  return\n}\n";
    assert_eq!(err(dup_func), "5:6: function `@f` is already defined at 2:6");
    assert!(err("module @m {a = 1, a = 2}").contains("1:19: attribute `a` is given twice"));
}

#[test]
fn weights_may_be_declared_after_use() {
    let src = "module @m\nfunc @f(%x: f32[2]) -> (y: f32[2], w: f32[2]) {\n  %0 = add %x, @w : f32[2]\n  return %0, @w\n}\nweight @w : f32[2] = dense<f32[2]: [1, 2.5]>\n";
    let m = parse_module(src).unwrap();
    let f = m.function("f").unwrap();
    let w = f.weight_values()["w"];
    assert_eq!(f.ty(w), &TensorType::fixed(DType::F32, &[2]));
    assert_eq!(
        m.weights[0].source,
        WeightSource::Inline(Tensor::from_f64(DType::F32, vec![2], vec![1.0, 2.5]).unwrap())
    );
    let bad = src.replace("w: f32[2]) {", "w: f32[3]) {");
    assert_eq!(err(&bad), "4:14: `@w` has type f32[2] but output `w` is declared as f32[3]");
}

#[test]
fn return_must_match_outputs() {
    let sig = "(%x: f32[2]) -> (y: f32[2])";
    assert_eq!(err(&func(sig, "  return")), "3:3: expected 1 return value(s), one per declared output, found 0");
    assert_eq!(err(&func(sig, "  return %x, %x")), "3:3: expected 1 return value(s), one per declared output, found 2");
    assert_eq!(
        err(&func("(%x: f32[3]) -> (y: f32[2])", "  return %x")),
        "3:10: `%x` has type f32[3] but output `y` is declared as f32[2]"
    );
    assert!(err(&func(sig, "  return %x\n  %0 = neg %x : f32[2]")).contains("expected `}` after `return`"));
    assert!(err(&func(sig, "  %0 = neg %x : f32[2], f32[2]\n  return %0"))
        .contains("expected 1 result type(s), one per result, found 2"));
}

#[test]
fn op_build_errors_point_at_the_culprit() {
    let sig = "(%x: f32[2]) -> (y: f32[2])";
    assert_eq!(err(&func(sig, "  %0 = frobnicate %x : f32[2]\n  return %0")), "3:8: unknown op `frobnicate`");
    assert_eq!(
        err(&func(sig, "  %0 = softmax %x : f32[2]\n  return %0")),
        "3:8: attribute `axis` of op `softmax` is required but missing"
    );
    assert!(err(&func(sig, "  %0 = softmax %x {axis = 0, bogus = 1} : f32[2]\n  return %0"))
        .starts_with("3:30: op `softmax` has no attribute `bogus`"));
    assert!(err(&func(sig, "  %0 = softmax %x {axis = 1.5} : f32[2]\n  return %0"))
        .starts_with("3:20: attribute `axis` of op `softmax` must be an integer"));
}

#[test]
fn dense_elements_follow_the_dtype() {
    let one = |lit: &str| match parse_module(&format!("module @m {{a = {lit}}}")) {
        Ok(m) => Ok(m.attrs["a"].clone()),
        Err(e) => Err(e.message),
    };
    let Ok(Attr::Tensor(t)) = one("dense<i8[3]: [1, -1, 300]>") else { panic!() };
    assert_eq!(t.to_i64_vec(), vec![1, -1, 44]);
    let Ok(Attr::Tensor(t)) = one("dense<bool[2]: [true, false]>") else { panic!() };
    assert_eq!(t.to_i64_vec(), vec![1, 0]);
    let Ok(Attr::Tensor(t)) = one("dense<f16[3]: [0.1, 65520, -inf]>") else { panic!() };
    assert_eq!(t.to_f64_vec(), vec![half::f16::from_f64(0.1).to_f64(), f64::INFINITY, f64::NEG_INFINITY]);
    let Ok(Attr::Tensor(t)) = one("dense<f32[]: [nan]>") else { panic!() };
    assert!(t.to_f64_vec()[0].is_nan());
    assert!(one("dense<i64[1]: [1.5]>").unwrap_err().contains("expected an integer (an i64 element), found `1.5`"));
    assert!(one("dense<bool[1]: [1]>").unwrap_err().contains("expected `true` or `false`"));
    assert!(one("dense<f32[1]: [true]>").unwrap_err().contains("expected a number (a f32 element)"));
    assert_eq!(one("[]"), Ok(Attr::Ints(vec![])));
    assert_eq!(one("[1, 2.5]"), Ok(Attr::Floats(vec![1.0, 2.5])));
    assert_eq!(one("[1, -2]"), Ok(Attr::Ints(vec![1, -2])));
    assert_eq!(one("int4<64>"), Ok(Attr::DType(DType::Int4 { group_size: 64 })));
    assert_eq!(one("\"a\\\"b\\\\c\\n\\t\\u{1F600}\""), Ok(Attr::Str("a\"b\\c\n\t😀".into())));
}

#[test]
fn f32_literals_round_trip_bit_exactly() {
    let mut bits: u32 = 0x1234_5678;
    let mut values = vec![0.1f32, -0.0, f32::MIN_POSITIVE, f32::MAX, f32::MIN, 1.0e-45, 3.4028235e38, 16777217.0];
    for _ in 0..20_000 {
        bits ^= bits << 13;
        bits ^= bits >> 17;
        bits ^= bits << 5;
        let v = f32::from_bits(bits);
        if v.is_finite() {
            values.push(v);
        }
    }
    let wide: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
    let t = Tensor::from_f64(DType::F32, vec![wide.len()], wide).unwrap();
    let mut m = Module::new("m");
    m.weights.push(WeightDecl {
        name: "w".into(),
        ty: TensorType::fixed(DType::F32, &[t.shape[0] as i64]),
        source: WeightSource::Inline(t),
    });
    assert_eq!(parse_module(&print_module(&m)).unwrap(), m);
}

#[test]
fn quoted_names_round_trip() {
    let mut m = Module::new("my model");
    m.attrs.insert("odd key".into(), Attr::Floats(vec![f64::NAN, -0.0]));
    let mut f = Function::new("onnx::f\"1\"");
    let x = f.add_param("0", TensorType::scalar(DType::F32));
    let y = f.add_param("a\\b\n\u{0}é", TensorType::scalar(DType::F32));
    let s = f.add_op1(Op::Add, vec![x, y], TensorType::scalar(DType::F32));
    f.add_output("", s);
    m.functions.push(f);
    let text = print_module(&m);
    assert!(text.contains("%\"0\""), "{text}");
    assert!(text.contains("%\"a\\\\b\\n\\u{0}é\""), "{text}");
    assert_eq!(parse_module(&text).unwrap(), m.canonical().unwrap());
}

#[test]
fn annotations_and_cycles_print() {
    let mut m = parse_module(EXAMPLE).unwrap();
    let f = m.function("forward").unwrap();
    let relu = f.op_ids().nth(1).unwrap();
    let text = print_module_annotated(&m, &|name, op| match op {
        None => vec![format!("in {name}")],
        Some(o) if o == relu => vec!["bad\nrelu\u{1}".into()],
        Some(_) => vec![],
    });
    assert!(text.contains("{\n  ; in forward\n  %0 = linear"), "{text}");
    assert!(text.contains("%1 = relu %0 : f32[?batch, 16]\n  ; bad\n  ; relu\\u{1}\n"), "{text}");
    assert_eq!(parse_module(&text).unwrap(), parse_module(EXAMPLE).unwrap().canonical().unwrap());

    // A cycle: op 0 (linear) now reads op 1's result.
    let f = m.function_mut("forward").unwrap();
    let ops: Vec<_> = f.op_ids().collect();
    let relu_out = f.op(ops[1]).unwrap().results[0];
    f.set_operand(ops[0], 0, relu_out);
    let text = print_function(&m, m.function("forward").unwrap());
    assert!(text.starts_with("func @forward(%x: f32[?batch, 8]) -> (y: f32[?batch, 4]) {\n"), "{text}");
    assert!(err(&format!("module @m\n{text}")).contains("undefined value"));
}

#[test]
fn empty_pieces_print_compactly() {
    let mut m = Module::new("m");
    assert_eq!(print_module(&m), "module @m\n");
    m.functions.push(Function::new("f"));
    assert_eq!(print_module(&m), "module @m\n\nfunc @f() -> () {\n  return\n}\n");
    assert_eq!(parse_module(&print_module(&m)).unwrap(), m);
}

#[test]
fn nan_op_attributes_and_quantized_literals_reprint() {
    // `Op`'s derived equality never equates NaN, so compare the text instead.
    let src = func(
        "(%x: f32[2]) -> (y: f32[2])",
        "  %0 = leaky_relu %x {alpha = nan} : f32[2]\n  %1 = clip %0 {max = -inf, min = -0.0} : f32[2]\n  \
         %2 = constant {value = dense<q8_0[32]: [0.1, -2.5, 1e-45, 3.4028235e38, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, \
         0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]>} : q8_0[32]\n  return %1",
    );
    let printed = print_module(&parse_module(&src).unwrap());
    assert!(printed.contains("{alpha = nan}"), "{printed}");
    assert!(printed.contains("{max = -inf, min = -0.0}"), "{printed}");
    assert!(printed.contains("[0.1, -2.5, 1e-45, 3.4028235e38, 0.0,"), "{printed}");
    assert_eq!(print_module(&parse_module(&printed).unwrap()), printed);
}

#[test]
fn crlf_and_tabs_are_whitespace() {
    let crlf = EXAMPLE.replace('\n', "\r\n").replace("  %", "\t%");
    assert_eq!(parse_module(&crlf).unwrap(), parse_module(EXAMPLE).unwrap());
}
