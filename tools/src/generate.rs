//! `ferrumc generate`: autoregressive text generation with a decoder's KV-cache `decode`
//! entry point. Prefill runs `decode` once over the whole prompt with empty (`past = 0`)
//! caches; every further step runs `decode` on the one newest token, feeding each
//! `present_<x>` output back as the `past_<x>` input. optimum's ONNX decoder convention works
//! the same way: `past_key_values.<x>` inputs fed from `present.<x>` outputs, and an
//! `attention_mask` input (all ones over the cache and the new tokens). The next token is
//! drawn from the last position's logits by [`sample`] (greedy, or temperature / top-k /
//! top-p / repetition penalty with a seeded generator, the `SamplingParams` fields of the
//! design seeds).
//! Token text needs the optional `tokenizers` feature; ids work without it.

use crate::input::CliError;
use crate::runnable::{open, pick_entry, shape_under, symbol_bounds, zeros};
use ferrumc_runtime::artifact::{DType as RtDType, EntryPoint, Placement};
use ferrumc_runtime::model::{Model, Tensor as RtTensor, TensorView};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How the next token is chosen (names follow the design seed's `SamplingParams`).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Logits are divided by this; `0` means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (`0`: all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (`1`: all).
    pub top_p: f32,
    /// Logits of tokens already in the sequence are divided (if positive) or multiplied (if
    /// negative) by this (`1`: off), as transformers' `repetition_penalty` does.
    pub repetition_penalty: f32,
    /// Seed of the generator that draws the tokens.
    pub rng_seed: u64,
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, repetition_penalty: 1.0, rng_seed: 0 }
    }

    fn validate(&self) -> Result<(), CliError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(CliError::new(format!("error: --temperature {} must be ≥ 0", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(CliError::new(format!("error: --top-p {} must be in (0, 1]", self.top_p)));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(CliError::new(format!("error: --repetition-penalty {} must be > 0", self.repetition_penalty)));
        }
        Ok(())
    }
}

/// A small deterministic generator (SplitMix64): the same seed gives the same tokens on
/// every machine, without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The index of the largest value (the lowest index among equals; NaN never wins).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] || logits[best].is_nan() && !v.is_nan() {
            best = i;
        }
    }
    best
}

/// Choose the next token from one position's logits. `history` is the sequence so far (for
/// the repetition penalty). Greedy when `temperature == 0`; otherwise penalty → temperature
/// → top-k → softmax → top-p → one draw from `rng`. Candidates are ordered by logit, ties by
/// lower id, so `top_k = 1` is exactly greedy.
pub fn sample(logits: &[f32], history: &[i64], params: &SamplingParams, rng: &mut Rng) -> usize {
    let mut scores = logits.to_vec();
    if params.repetition_penalty != 1.0 {
        for &id in history {
            if let Some(s) = usize::try_from(id).ok().and_then(|i| scores.get_mut(i)) {
                *s = if *s > 0.0 { *s / params.repetition_penalty } else { *s * params.repetition_penalty };
            }
        }
    }
    if params.temperature == 0.0 || scores.is_empty() {
        return argmax(&scores);
    }
    let mut order: Vec<usize> = (0..scores.len()).filter(|&i| !scores[i].is_nan()).collect();
    if order.is_empty() {
        return 0;
    }
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    if params.top_k > 0 {
        order.truncate(params.top_k);
    }
    let t = f64::from(params.temperature);
    let top = f64::from(scores[order[0]]) / t;
    let mut probs: Vec<f64> = order.iter().map(|&i| (f64::from(scores[i]) / t - top).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if params.top_p < 1.0 {
        let mut cumulative = 0.0;
        let mut keep = probs.len();
        for (n, p) in probs.iter().enumerate() {
            cumulative += p;
            if cumulative >= f64::from(params.top_p) {
                keep = n + 1;
                break;
            }
        }
        probs.truncate(keep);
        order.truncate(keep);
        let kept: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= kept);
    }
    let u = rng.next_f64();
    let mut cumulative = 0.0;
    for (n, p) in probs.iter().enumerate() {
        cumulative += p;
        if u < cumulative {
            return order[n];
        }
    }
    order[order.len() - 1]
}

/// What to generate.
#[derive(Debug)]
pub struct GenerateRequest<'a> {
    pub input: &'a Path,
    pub level: u8,
    pub prompt_ids: Option<&'a str>,
    pub prompt: Option<&'a str>,
    pub tokenizer: Option<&'a Path>,
    pub new_tokens: usize,
    pub sampling: SamplingParams,
    pub eos: Option<i64>,
    pub threads: Option<usize>,
    pub json: bool,
    /// Load an artifact onto huge pages (`Placement::HugePages`) instead of mapping it.
    pub huge_pages: bool,
}

/// The names and positions of a decode entry point's inputs and outputs.
struct DecodeSignature {
    ep: EntryPoint,
    /// Symbol of `input_ids`' second dim (the new-token count).
    seq_symbol: Option<String>,
    /// Symbol of the cache length (the dims of `past_*` not fixed by `input_ids`).
    past_symbol: Option<String>,
    /// For each `past_<x>` input, the index of its `present_<x>` output.
    cache_outputs: Vec<(String, usize)>,
    logits_output: usize,
}

/// The output a cache input is fed from: `past_<x>` ← `present_<x>` (ferrumc's HF
/// frontend), `past_key_values.<x>` ← `present.<x>` (optimum's ONNX exports).
fn present_name(past: &str) -> Option<String> {
    match past.strip_prefix("past_key_values.") {
        Some(rest) => Some(format!("present.{rest}")),
        None => past.strip_prefix("past_").map(|rest| format!("present_{rest}")),
    }
}

fn decode_signature(ep: &EntryPoint) -> Result<DecodeSignature, CliError> {
    let not_decoder = |why: String| {
        CliError::new(format!(
            "error: entry point `{}` is not a KV-cache decode entry point ({why}); `generate` needs \
             decode(input_ids, position_ids, past_*) -> (logits, present_*), or optimum's \
             (input_ids, attention_mask, position_ids, past_key_values.*) -> (logits, present.*)",
            ep.name
        ))
    };
    let input = |name: &str| ep.inputs.iter().find(|s| s.name == name);
    let ids = input("input_ids").ok_or_else(|| not_decoder("no `input_ids` input".into()))?;
    if ids.dtype != RtDType::I64 || ids.dims.len() != 2 {
        return Err(not_decoder(format!("`input_ids` is {}{}, not i64[batch, seq]", ids.dtype, ids.shape_string())));
    }
    let logits_output = ep
        .outputs
        .iter()
        .position(|o| o.name == "logits" && o.dtype == RtDType::F32 && o.dims.len() == 3)
        .ok_or_else(|| not_decoder("no f32 `logits` [batch, seq, vocab] output".into()))?;
    let mut cache_outputs = Vec::new();
    for s in &ep.inputs {
        if let Some(present) = present_name(&s.name) {
            let at = ep
                .outputs
                .iter()
                .position(|o| o.name == present)
                .ok_or_else(|| not_decoder(format!("input `{}` has no `{present}` output", s.name)))?;
            cache_outputs.push((s.name.clone(), at));
        } else if s.name == "attention_mask" && !(s.dtype == RtDType::I64 && s.dims.len() == 2) {
            return Err(not_decoder(format!(
                "`attention_mask` is {}{}, not i64[batch, keys]",
                s.dtype,
                s.shape_string()
            )));
        } else if !["input_ids", "position_ids", "attention_mask"].contains(&s.name.as_str()) {
            return Err(not_decoder(format!("unexpected input `{}`", s.name)));
        }
    }
    let ids_syms: Vec<&str> = ids.dims.iter().flat_map(|d| d.symbols()).collect();
    let past_symbol = ep
        .inputs
        .iter()
        .filter(|s| present_name(&s.name).is_some())
        .flat_map(|s| s.dims.iter().flat_map(|d| d.symbols()))
        .find(|s| !ids_syms.contains(s))
        .map(str::to_string);
    let seq_symbol = ids.dims[1].as_symbol().map(str::to_string);
    Ok(DecodeSignature { ep: ep.clone(), seq_symbol, past_symbol, cache_outputs, logits_output })
}

/// Token ids from `1,2,3` (spaces allowed).
fn parse_ids(text: &str) -> Result<Vec<i64>, CliError> {
    let ids: Option<Vec<i64>> = text.split(',').map(|t| t.trim().parse::<i64>().ok().filter(|&v| v >= 0)).collect();
    match ids {
        Some(ids) if !ids.is_empty() => Ok(ids),
        _ => Err(CliError::new(format!(
            "error: --prompt-ids `{text}` is not a comma-separated list of non-negative token ids"
        ))),
    }
}

/// `tokenizer.json` from `--tokenizer`, else beside the artifact or inside the model folder
/// (a file found there is ignored by a build without the `tokenizers` feature).
fn tokenizer_path(explicit: Option<&Path>, base_dir: &Path) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => Some(base_dir.join("tokenizer.json")).filter(|p| cfg!(feature = "tokenizers") && p.is_file()),
    }
}

/// `ferrumc generate`.
pub fn generate(req: &GenerateRequest<'_>) -> Result<(), CliError> {
    req.sampling.validate()?;
    let placement = if req.huge_pages { Placement::HugePages } else { Placement::Mapped };
    let mut runnable = open(req.input, req.level, req.threads, placement)?;
    let tokenizer = match tokenizer_path(req.tokenizer, &runnable.base_dir) {
        Some(p) => Some(text::Tokenizer::load(&p)?),
        None => None,
    };
    let prompt: Vec<i64> = match (req.prompt_ids, req.prompt) {
        (Some(ids), None) => parse_ids(ids)?,
        (None, Some(text)) => match &tokenizer {
            Some(t) => t.encode(text)?,
            None if !cfg!(feature = "tokenizers") => {
                return Err(CliError::new(
                    "error: --prompt needs tokenizer support, which this ferrumc was built without; rebuild with \
                     `--features tokenizers`, or pass --prompt-ids",
                ))
            }
            None => {
                return Err(CliError::new(format!(
                    "error: --prompt needs a tokenizer: no tokenizer.json in {} (pass --tokenizer PATH, or \
                     --prompt-ids)",
                    runnable.base_dir.display()
                )))
            }
        },
        _ => return Err(CliError::new("error: give exactly one of --prompt-ids and --prompt")),
    };
    if prompt.is_empty() {
        return Err(CliError::new("error: the prompt encodes to no tokens"));
    }
    let eps = runnable.model.entry_points();
    let ep = match eps.iter().find(|e| e.name == "decode") {
        Some(ep) => ep.clone(),
        // An ONNX decoder (optimum's export) has one entry point, `forward`, whose signature
        // carries the cache.
        None => match eps.iter().find(|e| decode_signature(e).is_ok()) {
            Some(ep) => ep.clone(),
            None => pick_entry(&runnable.model, Some("decode"), "decode")?,
        },
    };
    let sig = decode_signature(&ep)?;
    let vocab = check_vocab_and_bounds(&runnable.model, &sig, &prompt, req.new_tokens)?;

    let mut rng = Rng::new(req.sampling.rng_seed);
    let mut tokens = prompt.clone();
    let mut generated: Vec<i64> = Vec::new();
    let mut caches: BTreeMap<String, RtTensor> = BTreeMap::new();
    let mut step_ms: Vec<f64> = Vec::new();
    let model = &mut runnable.model;
    while generated.len() < req.new_tokens {
        // Prefill feeds the whole prompt; later steps only the newest token.
        let start = if caches.is_empty() { 0 } else { tokens.len() - 1 };
        let fed = &tokens[start..];
        let timer = Instant::now();
        let logits = run_step(model, &sig, fed, start, &mut caches)?;
        step_ms.push(timer.elapsed().as_secs_f64() * 1e3);
        let last = logits.get(logits.len().saturating_sub(vocab)..).unwrap_or(&[]);
        let next = sample(last, &tokens, &req.sampling, &mut rng) as i64;
        tokens.push(next);
        generated.push(next);
        if req.eos == Some(next) {
            break;
        }
    }

    let text = match &tokenizer {
        Some(t) => Some(t.decode(&generated)?),
        None => None,
    };
    let prefill_ms = step_ms.first().copied().unwrap_or(0.0);
    let decode_ms: f64 = step_ms.iter().skip(1).sum();
    let per_token = if step_ms.len() > 1 { decode_ms / (step_ms.len() - 1) as f64 } else { 0.0 };
    if req.json {
        let report = serde_json::json!({
            "prompt_ids": prompt,
            "generated_ids": generated,
            "text": text,
            "load_ms": runnable.load_time.as_secs_f64() * 1e3,
            "init_ms": runnable.init_time.as_secs_f64() * 1e3,
            "compile_ms": runnable.compile_time.map(|d| d.as_secs_f64() * 1e3),
            "prefill_ms": prefill_ms,
            "decode_ms_per_token": per_token,
        });
        println!("{report}");
    } else {
        let ids: Vec<String> = generated.iter().map(i64::to_string).collect();
        println!("generated: {}", ids.join(" "));
        if let Some(t) = text {
            println!("text: {t}");
        }
        eprintln!(
            "prompt {} token(s), prefill {prefill_ms:.2} ms, {} decode step(s) at {per_token:.3} ms/token",
            prompt.len(),
            step_ms.len().saturating_sub(1)
        );
    }
    Ok(())
}

/// Check the ids fit the vocabulary and the whole run fits the artifact's dim bounds, before
/// running anything; returns the vocabulary size.
fn check_vocab_and_bounds(
    model: &Model,
    sig: &DecodeSignature,
    prompt: &[i64],
    new_tokens: usize,
) -> Result<usize, CliError> {
    let vocab = sig.ep.outputs[sig.logits_output].dims[2]
        .as_constant()
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| CliError::new("error: the decode entry point's vocabulary size is not a constant"))?;
    if let Some(bad) = prompt.iter().find(|&&id| usize::try_from(id).map_or(true, |i| i >= vocab)) {
        return Err(CliError::new(format!("error: prompt token id {bad} is outside the vocabulary (size {vocab})")));
    }
    let bounds = symbol_bounds(model, &sig.ep.name);
    if let Some(max_seq) = sig.seq_symbol.as_ref().and_then(|s| bounds.get(s)) {
        if prompt.len() as i64 > *max_seq {
            return Err(CliError::new(format!(
                "error: the prompt has {} tokens but the artifact accepts at most {max_seq} per step (recompile with \
                 --max-dim {}={})",
                prompt.len(),
                sig.seq_symbol.as_deref().unwrap_or("seq"),
                prompt.len()
            )));
        }
    }
    // The last step runs with past = prompt + new_tokens - 2 (the last token is never fed).
    let largest_past = i64::try_from(prompt.len().saturating_add(new_tokens).saturating_sub(2)).unwrap_or(i64::MAX);
    if let Some(max_past) = sig.past_symbol.as_ref().and_then(|s| bounds.get(s)) {
        if new_tokens > 1 && largest_past > *max_past {
            return Err(CliError::new(format!(
                "error: a {}-token prompt plus {new_tokens} new tokens needs a KV cache of {largest_past} positions, \
                 but the artifact accepts {} ≤ {max_past} (generate at most {} tokens, or recompile with --max-dim \
                 {}={largest_past})",
                prompt.len(),
                sig.past_symbol.as_deref().unwrap_or("past"),
                (*max_past as usize + 2).saturating_sub(prompt.len()),
                sig.past_symbol.as_deref().unwrap_or("past"),
            )));
        }
    }
    Ok(vocab)
}

/// One `decode` run on `fed` (batch 1) at positions `start..`; updates `caches` (empty
/// before prefill) from the `present_*` outputs and returns the logits.
fn run_step(
    model: &mut Model,
    sig: &DecodeSignature,
    fed: &[i64],
    start: usize,
    caches: &mut BTreeMap<String, RtTensor>,
) -> Result<Vec<f32>, CliError> {
    let err = |e: ferrumc_runtime::error::RuntimeError| CliError::new(format!("error: {}: {e}", sig.ep.name));
    let ids = RtTensor::from_i64(vec![1, fed.len()], fed).map_err(err)?;
    let positions: Vec<i64> = (start..start + fed.len()).map(|p| p as i64).collect();
    let pos = RtTensor::from_i64(vec![1, fed.len()], &positions).map_err(err)?;
    if caches.is_empty() {
        // Empty caches: batch 1, past 0, the other dims as declared.
        let mut syms = BTreeMap::new();
        if let Some(b) = sig.ep.inputs.iter().find(|s| s.name == "input_ids").and_then(|s| s.dims[0].as_symbol()) {
            syms.insert(b.to_string(), 1i64);
        }
        if let Some(p) = &sig.past_symbol {
            syms.insert(p.clone(), 0);
        }
        for (name, _) in &sig.cache_outputs {
            let Some(s) = sig.ep.inputs.iter().find(|s| &s.name == name) else { continue };
            let shape = shape_under(s, &syms).map_err(|e| CliError::new(format!("error: input `{name}`: {e}")))?;
            caches.insert(name.clone(), zeros(s, shape)?);
        }
    }
    let mask = RtTensor::from_i64(vec![1, start + fed.len()], &vec![1; start + fed.len()]).map_err(err)?;
    let mut views: Vec<(&str, TensorView<'_>)> = vec![("input_ids", ids.view())];
    if sig.ep.inputs.iter().any(|s| s.name == "position_ids") {
        views.push(("position_ids", pos.view()));
    }
    if sig.ep.inputs.iter().any(|s| s.name == "attention_mask") {
        views.push(("attention_mask", mask.view()));
    }
    views.extend(caches.iter().map(|(n, t)| (n.as_str(), t.view())));
    let mut outs = model.run(&sig.ep.name, &views).map_err(err)?;
    let mut logits = None;
    for (i, (_, t)) in outs.drain(..).enumerate() {
        if i == sig.logits_output {
            logits = t.to_f32();
        } else if let Some((past, _)) = sig.cache_outputs.iter().find(|(_, at)| *at == i) {
            caches.insert(past.clone(), t);
        }
    }
    logits.ok_or_else(|| CliError::new("error: decode returned no f32 logits"))
}

/// Text ↔ ids through a Hugging Face `tokenizer.json` (the `tokenizers` feature); without
/// the feature, asking for text is a clear error.
mod text {
    use crate::input::CliError;
    use std::path::Path;

    #[cfg(feature = "tokenizers")]
    #[derive(Debug)]
    pub struct Tokenizer(tokenizers::Tokenizer);

    #[cfg(feature = "tokenizers")]
    impl Tokenizer {
        pub fn load(path: &Path) -> Result<Self, CliError> {
            tokenizers::Tokenizer::from_file(path)
                .map(Self)
                .map_err(|e| CliError::new(format!("error: {}: {e}", path.display())))
        }

        pub fn encode(&self, text: &str) -> Result<Vec<i64>, CliError> {
            let enc = self.0.encode(text, true).map_err(|e| CliError::new(format!("error: tokenizer: {e}")))?;
            Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
        }

        pub fn decode(&self, ids: &[i64]) -> Result<String, CliError> {
            let ids: Vec<u32> = ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect();
            self.0.decode(&ids, true).map_err(|e| CliError::new(format!("error: tokenizer: {e}")))
        }
    }

    #[cfg(not(feature = "tokenizers"))]
    #[derive(Debug)]
    pub struct Tokenizer;

    #[cfg(not(feature = "tokenizers"))]
    impl Tokenizer {
        pub fn load(path: &Path) -> Result<Self, CliError> {
            Err(CliError::new(format!(
                "error: {}: this ferrumc was built without tokenizer support; rebuild with `--features tokenizers`, \
                 or pass --prompt-ids and omit --tokenizer",
                path.display()
            )))
        }

        pub fn encode(&self, _text: &str) -> Result<Vec<i64>, CliError> {
            Ok(Vec::new())
        }

        pub fn decode(&self, _ids: &[i64]) -> Result<String, CliError> {
            Ok(String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_one_is_greedy_and_sampling_is_seeded() {
        let mut rng = Rng::new(7);
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let greedy = argmax(&logits);
        let k1 = SamplingParams { temperature: 0.8, top_k: 1, ..SamplingParams::greedy() };
        for _ in 0..20 {
            assert_eq!(sample(&logits, &[], &k1, &mut rng), greedy);
        }
        let p = SamplingParams { temperature: 1.0, top_k: 10, top_p: 0.9, repetition_penalty: 1.0, rng_seed: 3 };
        let draw = |seed| {
            let mut r = Rng::new(seed);
            (0..30).map(|_| sample(&logits, &[], &p, &mut r)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn top_p_keeps_the_nucleus_only() {
        // Probabilities ≈ [0.64, 0.24, 0.09, 0.03]: top-p 0.5 keeps only token 0.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let p = SamplingParams { temperature: 1.0, top_p: 0.5, ..SamplingParams::greedy() };
        let mut rng = Rng::new(1);
        assert!((0..100).all(|_| sample(&logits, &[], &p, &mut rng) == 0));
        // Without truncation every token shows up.
        let p = SamplingParams { temperature: 1.0, ..SamplingParams::greedy() };
        let mut seen = [false; 4];
        (0..2000).for_each(|_| seen[sample(&logits, &[], &p, &mut rng)] = true);
        assert_eq!(seen, [true; 4]);
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let logits = [2.0f32, 1.9, -1.0];
        let p = SamplingParams { repetition_penalty: 2.0, ..SamplingParams::greedy() };
        assert_eq!(sample(&logits, &[0], &p, &mut Rng::new(0)), 1);
        assert_eq!(sample(&logits, &[], &p, &mut Rng::new(0)), 0);
    }
}
