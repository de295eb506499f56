//! End-to-end runs of the reference interpreter on randomly initialised "llama-ish"
//! graphs built with the graph API: embedding gather, in-graph position ids
//! (`shape` → `range`), rms_norm / rms_norm_residual, q/k/v projections, static
//! reshapes with symbolic dims, rotary embeddings, causal GQA attention, SwiGLU MLP,
//! lm_head and argmax. Checks shapes and finiteness (no numerical oracle here: the
//! numpy conformance suite covers values) and prints timings without asserting on them.

use ferrumc_ir::interp::run_function;
use ferrumc_ir::weights::{WeightError, WeightProvider};
use ferrumc_ir::{DType, Dim, Function, Module, Op, Tensor, TensorType, ValueId, WeightDecl, WeightSource};
use std::time::Instant;

/// Deterministic random weights generated on demand from the weight's name, so big
/// models need no files and no second copy inside the module.
struct RandomWeights {
    cos_sin: Option<(Tensor, Tensor)>,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl WeightProvider for RandomWeights {
    fn load(&self, decl: &WeightDecl) -> Result<Tensor, WeightError> {
        let shape: Vec<usize> = decl.ty.fixed_shape().unwrap().iter().map(|&d| d as usize).collect();
        if let Some((cos, sin)) = &self.cos_sin {
            if decl.name == "rope.cos" {
                return Ok(cos.clone());
            }
            if decl.name == "rope.sin" {
                return Ok(sin.clone());
            }
        }
        let n: usize = shape.iter().product();
        let mut state =
            decl.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        let values: Vec<f64> = if decl.name.contains("norm") {
            (0..n).map(|_| 1.0 + ((splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.1).collect()
        } else {
            let fan_in = *shape.last().unwrap_or(&1) as f64;
            let a = 1.0 / fan_in.sqrt();
            (0..n).map(|_| ((splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * a).collect()
        };
        Tensor::from_f64(decl.ty.dtype, shape, values)
            .map_err(|e| WeightError::Other { weight: decl.name.clone(), message: e.to_string() })
    }
}

#[derive(Clone, Copy)]
struct Cfg {
    hidden: i64,
    heads: i64,
    kv_heads: i64,
    inter: i64,
    vocab: i64,
    layers: usize,
    max_pos: i64,
}

fn ty(dims: &[Dim]) -> TensorType {
    TensorType::new(DType::F32, dims.to_vec())
}

fn d(n: i64) -> Dim {
    Dim::fixed(n)
}

fn rope_tables(max_pos: i64, half: i64) -> (Tensor, Tensor) {
    let mut c = Vec::new();
    let mut s = Vec::new();
    for p in 0..max_pos {
        for i in 0..half {
            let inv = 10000f64.powf(-(i as f64) / half as f64);
            c.push((p as f64 * inv).cos());
            s.push((p as f64 * inv).sin());
        }
    }
    let shape = vec![max_pos as usize, half as usize];
    (Tensor::from_f64(DType::F32, shape.clone(), c).unwrap(), Tensor::from_f64(DType::F32, shape, s).unwrap())
}

fn build(cfg: Cfg) -> Module {
    let mut m = Module::new("llama");
    let hd = cfg.hidden / cfg.heads;
    let kvd = cfg.kv_heads * hd;
    let seq = Dim::sym("seq");
    let mut f = Function::new("forward");
    let mut weight = |f: &mut Function, name: &str, dims: &[i64]| -> ValueId {
        let t = TensorType::fixed(DType::F32, dims);
        m.weights.push(WeightDecl {
            name: name.into(),
            ty: t.clone(),
            source: WeightSource::Raw { file: "random.bin".into(), offset: 0 },
        });
        f.weight(name, t)
    };
    let ids = f.add_param("ids", TensorType::new(DType::I64, vec![d(1), seq.clone()]));
    let embed = weight(&mut f, "embed", &[cfg.vocab, cfg.hidden]);
    let cos = weight(&mut f, "rope.cos", &[cfg.max_pos, hd / 2]);
    let sin = weight(&mut f, "rope.sin", &[cfg.max_pos, hd / 2]);
    let i64s = |dims: Vec<Dim>| TensorType::new(DType::I64, dims);
    // Position ids from the input's length: [0, seq) as [1, seq].
    let len1 = f.add_op1(Op::Shape { start: 1, end: Some(2) }, vec![ids], i64s(vec![d(1)]));
    let len = f.add_op1(Op::Squeeze { axes: vec![0] }, vec![len1], i64s(vec![]));
    let zero = f.add_op1(Op::Constant { value: Tensor::scalar_i64(DType::I64, 0) }, vec![], i64s(vec![]));
    let one = f.add_op1(Op::Constant { value: Tensor::scalar_i64(DType::I64, 1) }, vec![], i64s(vec![]));
    let pos1 = f.add_op1(Op::Range, vec![zero, len, one], i64s(vec![seq.clone()]));
    let pos = f.add_op1(Op::Unsqueeze { axes: vec![0] }, vec![pos1], i64s(vec![d(1), seq.clone()]));

    let hidden_ty = ty(&[d(1), seq.clone(), d(cfg.hidden)]);
    let mut x = f.add_op1(Op::Gather { axis: 0 }, vec![embed, ids], hidden_ty.clone());
    for l in 0..cfg.layers {
        let w = |n: &str| format!("layers.{l}.{n}");
        let ln1 = weight(&mut f, &w("input_norm"), &[cfg.hidden]);
        let wq = weight(&mut f, &w("q"), &[cfg.hidden, cfg.hidden]);
        let wk = weight(&mut f, &w("k"), &[kvd, cfg.hidden]);
        let wv = weight(&mut f, &w("v"), &[kvd, cfg.hidden]);
        let wo = weight(&mut f, &w("o"), &[cfg.hidden, cfg.hidden]);
        let ln2 = weight(&mut f, &w("post_norm"), &[cfg.hidden]);
        let wg = weight(&mut f, &w("gate"), &[cfg.inter, cfg.hidden]);
        let wu = weight(&mut f, &w("up"), &[cfg.inter, cfg.hidden]);
        let wd = weight(&mut f, &w("down"), &[cfg.hidden, cfg.inter]);

        let h = f.add_op1(Op::RmsNorm { epsilon: 1e-5 }, vec![x, ln1], hidden_ty.clone());
        let q = f.add_op1(Op::Linear, vec![h, wq], hidden_ty.clone());
        let k = f.add_op1(Op::Linear, vec![h, wk], ty(&[d(1), seq.clone(), d(kvd)]));
        let v = f.add_op1(Op::Linear, vec![h, wv], ty(&[d(1), seq.clone(), d(kvd)]));
        let heads = |f: &mut Function, t: ValueId, n: i64| {
            let r = f.add_op1(Op::Reshape { allowzero: false }, vec![t], ty(&[d(1), seq.clone(), d(n), d(hd)]));
            f.add_op1(Op::Transpose { perm: vec![0, 2, 1, 3] }, vec![r], ty(&[d(1), d(n), seq.clone(), d(hd)]))
        };
        let q4 = heads(&mut f, q, cfg.heads);
        let k4 = heads(&mut f, k, cfg.kv_heads);
        let v4 = heads(&mut f, v, cfg.kv_heads);
        let rot = Op::RotaryEmbedding { interleaved: false, rotary_dim: 0 };
        let q4 = f.add_op1(rot.clone(), vec![q4, cos, sin, pos], ty(&[d(1), d(cfg.heads), seq.clone(), d(hd)]));
        let k4 = f.add_op1(rot, vec![k4, cos, sin, pos], ty(&[d(1), d(cfg.kv_heads), seq.clone(), d(hd)]));
        let a = f.add_op1(
            Op::Attention { scale: None, causal: true },
            vec![q4, k4, v4],
            ty(&[d(1), d(cfg.heads), seq.clone(), d(hd)]),
        );
        let a =
            f.add_op1(Op::Transpose { perm: vec![0, 2, 1, 3] }, vec![a], ty(&[d(1), seq.clone(), d(cfg.heads), d(hd)]));
        let a = f.add_op1(Op::Reshape { allowzero: false }, vec![a], hidden_ty.clone());
        let o = f.add_op1(Op::Linear, vec![a, wo], hidden_ty.clone());
        let nr = f.add_op(
            Op::RmsNormResidual { epsilon: 1e-5 },
            vec![o, x, ln2],
            vec![hidden_ty.clone(), hidden_ty.clone()],
        );
        let res = f.op(nr).unwrap().results.clone();
        let (h2, resid) = (res[0], res[1]);
        let inter_ty = ty(&[d(1), seq.clone(), d(cfg.inter)]);
        let g = f.add_op1(Op::Linear, vec![h2, wg], inter_ty.clone());
        let u = f.add_op1(Op::Linear, vec![h2, wu], inter_ty.clone());
        let gu = f.add_op1(Op::SiluMul, vec![g, u], inter_ty);
        let dn = f.add_op1(Op::Linear, vec![gu, wd], hidden_ty.clone());
        x = f.add_op1(Op::Add, vec![resid, dn], hidden_ty.clone());
    }
    let norm = weight(&mut f, "final_norm", &[cfg.hidden]);
    let lm = weight(&mut f, "lm_head", &[cfg.vocab, cfg.hidden]);
    let h = f.add_op1(Op::RmsNorm { epsilon: 1e-5 }, vec![x, norm], hidden_ty);
    let logits = f.add_op1(Op::Linear, vec![h, lm], ty(&[d(1), seq.clone(), d(cfg.vocab)]));
    let next = f.add_op1(
        Op::ArgMax { axis: -1, keepdims: false, select_last_index: false },
        vec![logits],
        i64s(vec![d(1), seq]),
    );
    f.add_output("logits", logits);
    f.add_output("next", next);
    m.functions.push(f);
    m
}

fn run_llama(cfg: Cfg, seq: usize) -> f64 {
    let m = build(cfg);
    let provider = RandomWeights { cos_sin: Some(rope_tables(cfg.max_pos, cfg.hidden / cfg.heads / 2)) };
    let ids: Vec<i64> = (0..seq as i64).map(|i| (i * 7919) % cfg.vocab).collect();
    let input = Tensor::from_i64(DType::I64, vec![1, seq], ids).unwrap();
    let start = Instant::now();
    let out = run_function(&m, "forward", &[("ids".into(), input)], &provider).unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(out[0].0, "logits");
    assert_eq!(out[0].1.shape, vec![1, seq, cfg.vocab as usize]);
    assert!(out[0].1.to_f64_vec().iter().all(|v| v.is_finite()));
    assert_eq!(out[1].1.shape, vec![1, seq]);
    assert!(out[1].1.to_i64_vec().iter().all(|&t| (0..cfg.vocab).contains(&t)));
    secs
}

#[test]
fn two_layer_llama_runs() {
    let cfg = Cfg { hidden: 64, heads: 4, kv_heads: 2, inter: 128, vocab: 256, layers: 2, max_pos: 64 };
    let secs = run_llama(cfg, 16);
    eprintln!("2-layer llama-ish (hidden 64, seq 16): {secs:.3}s");
    // A different sequence length rebinds ?seq.
    run_llama(cfg, 5);
}

#[test]
fn lm_head_sized_linear_timing() {
    // linear [16, 576] x [49152, 576]^T: the lm_head of a 135M Llama at seq 16.
    let mut m = Module::new("lin");
    let mut f = Function::new("main");
    let x = f.add_param("x", TensorType::fixed(DType::F32, &[16, 576]));
    let wt = TensorType::fixed(DType::F32, &[49152, 576]);
    m.weights.push(WeightDecl {
        name: "lm_head".into(),
        ty: wt.clone(),
        source: WeightSource::Raw { file: "random.bin".into(), offset: 0 },
    });
    let w = f.weight("lm_head", wt);
    let y = f.add_op1(Op::Linear, vec![x, w], TensorType::fixed(DType::F32, &[16, 49152]));
    f.add_output("y", y);
    m.functions.push(f);
    let xs: Vec<f64> = (0..16 * 576).map(|i| ((i % 97) as f64 - 48.0) / 97.0).collect();
    let input = Tensor::from_f64(DType::F32, vec![16, 576], xs).unwrap();
    let provider = RandomWeights { cos_sin: None };
    // Weights are loaded on first use; time the load and the product separately.
    let decl = m.weight_decl("lm_head").unwrap().clone();
    let t0 = Instant::now();
    let w_tensor = provider.load(&decl).unwrap();
    let load = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let out = run_function(&m, "main", &[("x".into(), input)], &provider).unwrap();
    let total = t1.elapsed().as_secs_f64();
    assert_eq!(out[0].1.shape, vec![16, 49152]);
    // Spot-check one element against a direct dot product.
    let xv = out[0].1.to_f64_vec();
    let wv = w_tensor.to_f64_vec();
    let xin: Vec<f64> =
        (0..576).map(|i| (((3 * 576 + i) % 97) as f64 - 48.0) / 97.0).map(|v: f64| v as f32 as f64).collect();
    let expect: f64 = (0..576).map(|i| xin[i] * wv[1000 * 576 + i]).sum();
    assert!((xv[3 * 49152 + 1000] - expect).abs() < 1e-5 * (1.0 + expect.abs()));
    eprintln!("linear [16,576]x[49152,576]^T: {total:.3}s including weight generation ({load:.3}s of it)");
}

/// The full SmolLM-135M shape (30 layers, hidden 576, 9 heads / 3 kv heads, 1536 MLP,
/// vocab 49152) at seq 16: the interpreter must handle a real-sized model in seconds.
/// `cargo test -p ferrumc-ir --test interp_llama -- --nocapture` prints the time.
#[test]
fn smollm_135m_shape_forward() {
    let cfg = Cfg { hidden: 576, heads: 9, kv_heads: 3, inter: 1536, vocab: 49152, layers: 30, max_pos: 2048 };
    let secs = run_llama(cfg, 16);
    eprintln!("135M llama-ish forward, seq 16: {secs:.3}s (includes random weight generation)");
}
