//! The `ferrumc` command-line driver: import, verify, optimize (`opt`), compile to an
//! artifact (`compile`), run (an artifact, or the reference interpreter), `inspect` an
//! artifact and DOT export of ModelIR modules. Every failure prints one `error:` line (or a list of
//! verifier errors) and exits non-zero; nothing is written unless the command succeeds.

mod artifact_cmd;
mod input;
mod opt;
mod run;

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
        /// Quantize linear weights: q8_0 or q4_0 (the schemes the CPU kernels run).
        #[arg(long, value_name = "SCHEME")]
        quantize: Option<String>,
        /// Largest value of a symbolic dim the artifact accepts, `NAME=N` (repeatable; default:
        /// `seq`/`past` 128, others 64). The arena is planned for these values.
        #[arg(long = "max-dim", value_name = "NAME=N")]
        max_dims: Vec<String>,
    },
    /// Print an artifact's header, entry points, schedule, kernels, arena sizes and weights.
    Inspect {
        /// The artifact file.
        input: PathBuf,
    },
    /// Run a compiled artifact, or (with `--interp`) a model through the reference interpreter,
    /// on `.npy` inputs and write each output as `NAME.npy`.
    Run {
        /// A compiled artifact (recognized by its magic), or a model: a Hugging Face folder or
        /// config.json, a `.onnx`, `.fir` or ModelIR `.json` file (needs `--interp`).
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

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Command::Compile { input, output, level, quantize, max_dims } => {
            let loaded = load_module(&input)?;
            loaded.verified()?;
            artifact_cmd::compile(&loaded, level.unwrap_or(2), quantize.as_deref(), &max_dims, &output)
        }
        Command::Inspect { input } => artifact_cmd::inspect(&input),
        Command::Run { input, interp, inputs, function, output_dir } => {
            if artifact_cmd::is_artifact(&input) {
                if interp {
                    return Err(CliError::new(format!(
                        "error: {} is a compiled artifact; --interp runs models, not artifacts",
                        input.display()
                    )));
                }
                return artifact_cmd::run(&input, &inputs, function.as_deref(), output_dir.as_deref());
            }
            if !interp {
                return Err(CliError::new(format!(
                    "error: {} is not a compiled artifact; compile it with `ferrumc compile`, or pass --interp to \
                     run the reference interpreter",
                    input.display()
                )));
            }
            let loaded = load_module(&input)?;
            loaded.verified()?;
            run::run_interpreter(&loaded, &inputs, function.as_deref(), output_dir.as_deref())
        }
        Command::Opt {
            input,
            output,
            passes,
            level,
            quantize,
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
