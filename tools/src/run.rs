//! `ferrumc run --interp`: bind `.npy` inputs to a function's parameters, evaluate it
//! with the reference interpreter, and write every output as `NAME.npy`.

use crate::input::{CliError, LoadedModule};
use ferrumc_ir::interp::run_function;
use ferrumc_ir::npy::{read_npy_file, write_npy};
use ferrumc_ir::weights::FileWeights;
use ferrumc_ir::{Tensor, TensorData};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Run `function` (default `forward`, else the first) and write/print its outputs.
pub fn run_interpreter(
    loaded: &LoadedModule,
    input_args: &[String],
    function: Option<&str>,
    output_dir: Option<&Path>,
) -> Result<(), CliError> {
    let m = &loaded.module;
    let func = match function {
        Some(name) => m.function(name).ok_or_else(|| {
            let names: Vec<&str> = m.functions.iter().map(|f| f.name.as_str()).collect();
            CliError::new(format!(
                "error: no function `{name}` in {} (it has: {})",
                loaded.path.display(),
                names.join(", ")
            ))
        })?,
        None => m
            .function("forward")
            .or_else(|| m.functions.first())
            .ok_or_else(|| CliError::new(format!("error: {} has no functions to run", loaded.path.display())))?,
    };

    let mut inputs: Vec<(String, Tensor)> = Vec::new();
    let mut seen = BTreeSet::new();
    for arg in input_args {
        let (name, file) = arg
            .split_once('=')
            .ok_or_else(|| CliError::new(format!("error: --input `{arg}` is not of the form NAME=FILE.npy")))?;
        if !seen.insert(name.to_string()) {
            return Err(CliError::new(format!("error: --input `{name}` is given twice")));
        }
        let tensor = read_input_tensor(Path::new(file))?;
        inputs.push((name.to_string(), tensor));
    }

    let weights = FileWeights::new(loaded.base_dir.clone());
    let outputs = run_function(m, &func.name, &inputs, &weights).map_err(|e| CliError::new(format!("error: {e}")))?;

    let files = write_outputs(&outputs, output_dir)?;
    for (name, tensor) in &outputs {
        println!("{name}: {}", summarize(tensor));
    }
    for path in &files {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Write every output as `DIR/NAME.npy` (when a directory is given); returns the paths.
/// Everything is encoded before the file system is touched, so a failure writes nothing.
pub fn write_outputs(outputs: &[(String, Tensor)], output_dir: Option<&Path>) -> Result<Vec<PathBuf>, CliError> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    if let Some(dir) = output_dir {
        for (name, tensor) in outputs {
            let file_name = output_file_name(name)?;
            let bytes = write_npy(tensor).map_err(|e| CliError::new(format!("error: output `{name}`: {e}")))?;
            files.push((dir.join(file_name), bytes));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::new(format!("error: {}: cannot create: {e}", dir.display())))?;
        for (path, bytes) in &files {
            std::fs::write(path, bytes)
                .map_err(|e| CliError::new(format!("error: {}: cannot write: {e}", path.display())))?;
        }
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// Read an input tensor: ONNX `TensorProto` for `.pb` files, `.npy` otherwise.
pub fn read_input_tensor(path: &Path) -> Result<Tensor, CliError> {
    let shown = path.display();
    if path.extension().is_some_and(|e| e == "pb") {
        let bytes = std::fs::read(path).map_err(|e| CliError::new(format!("error: {shown}: cannot read: {e}")))?;
        return ferrumc_onnx::read_tensor_proto(&bytes).map_err(|e| CliError::new(format!("error: {shown}: {e}")));
    }
    read_npy_file(path).map_err(|e| CliError::new(format!("error: {shown}: {e}")))
}

/// The file name for an output: `NAME.npy`, refusing names that are not plain file names.
fn output_file_name(name: &str) -> Result<String, CliError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        Ok(format!("{name}.npy"))
    } else {
        let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        Ok(format!("{}.npy", safe.trim_start_matches('.')))
    }
}

/// One-line description: dtype, shape and the first few values.
pub fn summarize(t: &Tensor) -> String {
    const SHOWN: usize = 8;
    let values: Vec<String> = match &t.data {
        TensorData::Float(v) => v.iter().take(SHOWN).map(|x| format!("{x:.6}")).collect(),
        TensorData::Int(v) => v.iter().take(SHOWN).map(|x| x.to_string()).collect(),
    };
    let more = if t.numel() > SHOWN { ", …" } else { "" };
    format!("{}{:?} [{}{}]", t.dtype, t.shape, values.join(", "), more)
}
