//! The `ferrumc` command-line driver: import, verify, optimize (`opt`), compile to an
//! artifact (`compile`), run (an artifact, or the reference interpreter), `inspect` an
//! artifact and DOT export of ModelIR modules. Every failure prints one `error:` line (or a list of
//! verifier errors) and exits non-zero; nothing is written unless the command succeeds.

mod artifact_cmd;
mod bench;
mod generate;
mod input;
mod opt;
mod progress;
mod run;
mod runnable;

use clap::{Parser, Subcommand};
use ferrumc_ir::{json, text};
use input::{load_module, write_output, CliError};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "ferrumc",
    version,
    about = "A compiler for neural-network models with ahead-of-time kernel generation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read a model and write it as ModelIR text (.fir) or a ModelIR JSON document (.json).
    Import {
        /// The model: a Hugging Face folder or config.json, a `.onnx`, `.fir` or ModelIR `.json` file.
        input: PathBuf,
        /// Where to write; the extension picks the format (`.fir` or `.json`). Default: `.fir` text on stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Check a model against every IR invariant and print all errors found.
    Verify {
        /// The model: a Hugging Face folder or config.json, a `.onnx`, `.fir` or ModelIR `.json` file.
        input: PathBuf,
    },
    /// Compile a model into one artifact file (machine code, schedule, memory plan, weights).
    Compile {
        /// The model: a Hugging Face folder or config.json, a `.onnx`, `.fir` or ModelIR `.json` file.
        input: PathBuf,
        /// Where to write the artifact (e.g. `model.ferrumc`).
        #[arg(short, long)]
        output: PathBuf,
        /// Optimization level (`-O0` .. `-O3`, default 2).
        #[arg(short = 'O', value_name = "LEVEL", value_parser = clap::value_parser!(u8).range(0..=3))]
        level: Option<u8>,
        /// Quantize linear weights: q8_0, q4_0 or int8 (per output channel), the schemes the CPU
        /// micro-kernels run (dequantized inside the kernel).
        #[arg(long, value_name = "SCHEME")]
        quantize: Option<String>,
        /// Largest value of a symbolic dim the artifact accepts, `NAME=N` (repeatable; default:
        /// `seq`/`past` 128, others 64). The arena is planned for these values, and shape
        /// inference may rely on them (a fixed 64-row causal mask cut to `seq` has `seq` rows
        /// when `seq=64` or less is given).
        #[arg(long = "max-dim", value_name = "NAME=N")]
        max_dims: Vec<String>,
        /// Fix an input at compile time, `NAME=FILE.npy` (or `.pb`; repeatable): it becomes a
        /// constant and leaves the entry point's signature, so shapes computed from it (a
        /// reshape target, range bounds) become static.
        #[arg(long = "bind-input", value_name = "NAME=FILE")]
        bind_inputs: Vec<String>,
    },
    /// Print an artifact's header, entry points, schedule, kernels, arena sizes and weights.
    Inspect {
        /// The artifact file.
        input: PathBuf,
    },
    /// Run a compiled artifact, or a model compiled in memory (`-O2`, nothing written), or with
    /// `--interp` a model through the reference interpreter, on `.npy` inputs; writes each
    /// output as `NAME.npy`.
    Run {
        /// A compiled artifact (recognized by its magic), or a model: a Hugging Face folder or
        /// config.json, a `.onnx`, `.fir` or ModelIR `.json` file.
        input: PathBuf,
        /// Execute the model with the reference interpreter.
        #[arg(long)]
        interp: bool,
        /// Inputs as `NAME=FILE` (`.npy`, or ONNX TensorProto `.pb`), one per function parameter.
        #[arg(long = "input", value_name = "NAME=FILE")]
        inputs: Vec<String>,
        /// The function to run (default: `forward` if present, else the first function).
        #[arg(long)]
        function: Option<String>,
        /// Directory for the `NAME.npy` outputs (created if missing).
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
    /// Time an entry point: load (timed separately), warm up, then time N runs; print median,
    /// min, p90 and mean milliseconds. A model that is not an artifact is compiled in memory first.
    Bench {
        /// A compiled artifact, or a model (Hugging Face folder or config.json, `.onnx`, `.fir`,
        /// ModelIR `.json`), compiled in memory (nothing written) before timing.
        input: PathBuf,
        /// Inputs as `NAME=FILE` (`.npy`, or ONNX TensorProto `.pb`).
        #[arg(long = "input", value_name = "NAME=FILE")]
        inputs: Vec<String>,
        /// Zero-filled inputs as `NAME=SHAPE`, e.g. `past_key_0=1x2x128x16`.
        #[arg(long = "zeros", value_name = "NAME=SHAPE")]
        zeros: Vec<String>,
        /// Synthesize every `past_*` input not given as zeros with this past length (KV-cache
        /// decode at context N).
        #[arg(long, value_name = "N")]
        past: Option<usize>,
        /// The entry point (default: `forward` if present, else the first).
        #[arg(long)]
        function: Option<String>,
        /// Untimed runs before timing.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Timed runs.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        iters: u64,
        /// Threads kernels run on, the caller's included (default: all available).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
        threads: Option<u64>,
        /// Optimization level for a model compiled in memory (`-O0` .. `-O3`, default 2).
        #[arg(short = 'O', value_name = "LEVEL", value_parser = clap::value_parser!(u8).range(0..=3))]
        level: Option<u8>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Copy an artifact onto transparent huge pages instead of mapping the file: a slower
        /// load (a copy into fresh memory), faster weight streaming (see the README).
        #[arg(long)]
        huge_pages: bool,
    },
    /// Generate tokens with a decoder's KV-cache `decode` entry point: prefill the prompt,
    /// then one token per step (greedy by default; sampling with --temperature/--top-k/--top-p).
    Generate {
        /// A compiled artifact with a `decode` entry point, or a decoder model (e.g. a Hugging
        /// Face folder), compiled in memory first.
        input: PathBuf,
        /// The prompt as token ids, e.g. `1,2,3`.
        #[arg(long, value_name = "IDS", conflicts_with = "prompt", required_unless_present = "prompt")]
        prompt_ids: Option<String>,
        /// The prompt as text (needs a tokenizer and the `tokenizers` build feature).
        #[arg(long)]
        prompt: Option<String>,
        /// The `tokenizer.json` (default: `tokenizer.json` beside the artifact / in the model folder).
        #[arg(long, value_name = "PATH")]
        tokenizer: Option<PathBuf>,
        /// New tokens to generate.
        #[arg(short = 'n', long = "max-new-tokens", default_value_t = 16)]
        new_tokens: usize,
        /// Greedy decoding (the default unless a sampling option is given).
        #[arg(long, conflicts_with_all = ["temperature", "top_k", "top_p", "seed"])]
        greedy: bool,
        /// Sample with this temperature (default 1.0 once any sampling option is given; 0 = greedy).
        #[arg(long)]
        temperature: Option<f32>,
        /// Sample only among the K most likely tokens (0: all).
        #[arg(long)]
        top_k: Option<usize>,
        /// Sample only from the smallest set of tokens whose probability reaches P (nucleus).
        #[arg(long)]
        top_p: Option<f32>,
        /// Seed of the sampler's random generator (default 0).
        #[arg(long)]
        seed: Option<u64>,
        /// Divide positive / multiply negative logits of tokens already present by this.
        #[arg(long, default_value_t = 1.0)]
        repetition_penalty: f32,
        /// Stop after generating this token id.
        #[arg(long, value_name = "ID")]
        eos: Option<i64>,
        /// Threads kernels run on, the caller's included (default: all available).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
        threads: Option<u64>,
        /// Optimization level for a model compiled in memory (`-O0` .. `-O3`, default 2).
        #[arg(short = 'O', value_name = "LEVEL", value_parser = clap::value_parser!(u8).range(0..=3))]
        level: Option<u8>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Copy an artifact onto transparent huge pages instead of mapping the file (see `bench`).
        #[arg(long)]
        huge_pages: bool,
    },
    /// Run optimization passes (by name or an -O preset) and write the optimized module.
    Opt {
        /// The model: a Hugging Face folder or config.json, a `.onnx`, `.fir` or ModelIR `.json` file.
        #[arg(required_unless_present = "list_passes")]
        input: Option<PathBuf>,
        /// Where to write; the extension picks the format (`.fir` or `.json`). Default: `.fir` text on stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Comma-separated pass names; dependencies are pulled in and ordered automatically.
        #[arg(long, value_name = "a,b,c")]
        passes: Option<String>,
        /// Optimization level preset (`-O0` .. `-O3`); `--passes` then run after it.
        #[arg(short = 'O', value_name = "LEVEL", value_parser = clap::value_parser!(u8).range(0..=3))]
        level: Option<u8>,
        /// Quantize linear weights: int8 (per channel), q8_0, q4_0, int4 or int4:G (group size G).
        #[arg(long, value_name = "SCHEME")]
        quantize: Option<String>,
        /// Largest value of a symbolic dim, `NAME=N` (repeatable): shape inference may rely on
        /// it, as `compile --max-dim` does (`min(seq, 64)` is `seq` when `seq=64` or less).
        #[arg(long = "max-dim", value_name = "NAME=N")]
        max_dims: Vec<String>,
        /// Print the module to stderr after every pass.
        #[arg(long)]
        print_ir_after_all: bool,
        /// Print the module to stderr after the named pass (repeatable).
        #[arg(long, value_name = "PASS")]
        print_ir_after: Vec<String>,
        /// Print a table of what each pass did and how long it took (stderr).
        #[arg(long)]
        stats: bool,
        /// List every pass with its summary and dependencies, and the -O presets.
        #[arg(long)]
        list_passes: bool,
    },
    /// Write a Graphviz DOT rendering of a model.
    Dot {
        /// The model: a Hugging Face folder or config.json, a `.onnx`, `.fir` or ModelIR `.json` file.
        input: PathBuf,
        /// Where to write the `.dot` text. Default: stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

/// A reader that stops early (`ferrumc inspect m.ferrumc | head`) closes stdout; Rust ignores
/// SIGPIPE, so the next `println!` panics. That is the reader's choice, not an error of ours:
/// end quietly with the status a SIGPIPE death reports (128 + 13), as other CLI tools do.
fn exit_quietly_on_closed_stdout() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_on_closed_stdout();
    // Usage errors exit with status 1 like every other error (clap's default is 2);
    // `--help` and `--version` print and succeed.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::FAILURE } else { ExitCode::SUCCESS };
        }
    };
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> Result<(), CliError> {
    match command {
        Command::Import { input, output } => {
            let loaded = load_module(&input)?;
            loaded.verified()?;
            let wants_json = output.as_ref().is_some_and(|p| p.extension().is_some_and(|e| e == "json"));
            let rendered = if wants_json {
                json::to_json_string(&loaded.module).map_err(|e| CliError::new(format!("error: cannot export: {e}")))?
            } else {
                text::print_module(&loaded.module)
            };
            write_output(output.as_deref(), rendered.as_bytes())?;
            if let Some(warning) = input::weight_location_warning(&loaded, output.as_deref()) {
                eprintln!("{warning}");
            }
            Ok(())
        }
        Command::Verify { input } => {
            let loaded = load_module(&input)?;
            loaded.verified()?;
            let m = &loaded.module;
            println!(
                "{}: ok ({} function(s), {} op(s), {} weight(s))",
                input.display(),
                m.functions.len(),
                m.op_count(),
                m.weights.len()
            );
            Ok(())
        }
        Command::Compile { input, output, level, quantize, max_dims, bind_inputs } => {
            let loaded = load_module(&input)?;
            loaded.verified()?;
            artifact_cmd::compile(&loaded, level.unwrap_or(2), quantize.as_deref(), &max_dims, &bind_inputs, &output)
        }
        Command::Inspect { input } => artifact_cmd::inspect(&input),
        Command::Run { input, interp, inputs, function, output_dir } => {
            if !interp {
                return artifact_cmd::run(&input, &inputs, function.as_deref(), output_dir.as_deref());
            }
            if artifact_cmd::is_artifact(&input) {
                return Err(CliError::new(format!(
                    "error: {} is a compiled artifact; --interp runs models, not artifacts",
                    input.display()
                )));
            }
            let loaded = load_module(&input)?;
            loaded.verified()?;
            run::run_interpreter(&loaded, &inputs, function.as_deref(), output_dir.as_deref())
        }
        Command::Bench { input, inputs, zeros, past, function, warmup, iters, threads, level, json, huge_pages } => {
            bench::bench(&bench::BenchRequest {
                input: &input,
                level: level.unwrap_or(2),
                inputs: runnable::InputArgs { files: &inputs, zeros: &zeros, past },
                function: function.as_deref(),
                warmup,
                iters: usize::try_from(iters).unwrap_or(usize::MAX),
                threads: threads.map(|t| usize::try_from(t).unwrap_or(1)),
                json,
                huge_pages,
            })
        }
        Command::Generate {
            input,
            prompt_ids,
            prompt,
            tokenizer,
            new_tokens,
            greedy,
            temperature,
            top_k,
            top_p,
            seed,
            repetition_penalty,
            eos,
            threads,
            level,
            json,
            huge_pages,
        } => {
            let sampled = !greedy && (temperature.is_some() || top_k.is_some() || top_p.is_some() || seed.is_some());
            let sampling = if sampled {
                generate::SamplingParams {
                    temperature: temperature.unwrap_or(1.0),
                    top_k: top_k.unwrap_or(0),
                    top_p: top_p.unwrap_or(1.0),
                    repetition_penalty,
                    rng_seed: seed.unwrap_or(0),
                }
            } else {
                generate::SamplingParams { repetition_penalty, ..generate::SamplingParams::greedy() }
            };
            generate::generate(&generate::GenerateRequest {
                input: &input,
                level: level.unwrap_or(2),
                prompt_ids: prompt_ids.as_deref(),
                prompt: prompt.as_deref(),
                tokenizer: tokenizer.as_deref(),
                new_tokens,
                sampling,
                eos,
                threads: threads.map(|t| usize::try_from(t).unwrap_or(1)),
                json,
                huge_pages,
            })
        }
        Command::Opt {
            input,
            output,
            passes,
            level,
            quantize,
            max_dims,
            print_ir_after_all,
            print_ir_after,
            stats,
            list_passes,
        } => opt::run_opt(opt::OptRequest {
            input,
            output,
            passes,
            level,
            quantize,
            max_dims,
            print_ir_after_all,
            print_ir_after,
            stats,
            list_passes,
        }),
        Command::Dot { input, output } => {
            let loaded = load_module(&input)?;
            write_output(output.as_deref(), ferrumc_ir::dot::to_dot(&loaded.module).as_bytes())
        }
    }
}
