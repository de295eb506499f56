//! `ferrumc opt`: run optimization passes over a model and write the result.

use crate::input::{load_module, write_output, CliError};
use ferrumc_ir::{json, text};
use ferrumc_passes::{manager, registry, PassManager, PassOptions, QuantScheme};
use std::path::{Path, PathBuf};

/// What `ferrumc opt` was asked to do.
#[derive(Debug)]
pub struct OptRequest {
    pub input: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub passes: Option<String>,
    pub level: Option<u8>,
    pub quantize: Option<String>,
    pub max_dims: Vec<String>,
    pub print_ir_after_all: bool,
    pub print_ir_after: Vec<String>,
    pub stats: bool,
    pub list_passes: bool,
}

/// `--list-passes`: every pass with its summary and dependencies.
pub fn list_passes() -> String {
    let width = registry::all().iter().map(|p| p.name().len()).max().unwrap_or(0);
    let mut out = String::new();
    for pass in registry::all() {
        let deps = pass.dependencies();
        let deps = if deps.is_empty() { String::new() } else { format!(" [after: {}]", deps.join(", ")) };
        out.push_str(&format!("{:<width$}  {}{}\n", pass.name(), pass.summary(), deps));
    }
    out.push_str("\nPresets (-O<level>):\n");
    for level in 0..=3u8 {
        let names = manager::preset(level).unwrap_or_default();
        out.push_str(&format!(
            "  -O{level}: {}\n",
            if names.is_empty() { "(none)".to_string() } else { names.join(",") }
        ));
    }
    out
}

pub fn run_opt(request: OptRequest) -> Result<(), CliError> {
    if request.list_passes {
        return write_output(None, list_passes().as_bytes());
    }
    let input = request.input.as_deref().ok_or_else(|| CliError::new("error: `opt` needs an input model"))?;
    let mut options =
        PassOptions { dim_bounds: crate::artifact_cmd::parse_max_dims(&request.max_dims)?, ..PassOptions::default() };
    if let Some(scheme) = &request.quantize {
        options.quantize =
            Some(QuantScheme::parse(scheme).map_err(|e| CliError::new(format!("error: --quantize: {e}")))?);
    }
    let listed: Vec<&str> = request
        .passes
        .as_deref()
        .map(|p| p.split(',').map(str::trim).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    if request.quantize.is_some() && !listed.contains(&"quantize-weights") && request.level.is_none() {
        return Err(CliError::new("error: --quantize needs -O<level> or `quantize-weights` in --passes"));
    }
    let mut extra = listed.clone();
    if request.quantize.is_some() && request.level.is_none() && !extra.contains(&"quantize-weights") {
        extra.push("quantize-weights");
    }
    let manager = match request.level {
        // With a level, the preset places quantize-weights after fusion.
        Some(level) => PassManager::for_level(level, &extra, options),
        None if listed.is_empty() => {
            return Err(CliError::new("error: nothing to run: give --passes a,b,c or -O<level> (see --list-passes)"))
        }
        None => PassManager::new(&extra, options),
    }
    .map_err(|e| CliError::new(format!("error: {e}")))?;
    for name in &request.print_ir_after {
        if registry::find(name).is_none() {
            return Err(CliError::new(format!("error: --print-ir-after: unknown pass `{name}`")));
        }
    }
    let loaded = load_module(input)?;
    loaded.verified()?;
    let location_warning = crate::input::weight_location_warning(&loaded, request.output.as_deref());
    let mut module = loaded.module;
    let after_all = request.print_ir_after_all;
    let after: Vec<String> = request.print_ir_after.clone();
    let mut manager = manager.after_each_pass(move |pass, m| {
        if after_all || after.iter().any(|a| a == pass) {
            eprintln!("// ----- IR after {pass} ----- //\n{}", text::print_module(m));
        }
    });
    let records = manager.run(&mut module).map_err(|e| CliError::new(format!("error: {}: {e}", input.display())))?;
    if request.stats {
        eprint!("{}", manager::format_stats(&records));
    }
    let wants_json = request.output.as_deref().is_some_and(|p| p.extension().is_some_and(|e| e == "json"));
    let rendered = if wants_json {
        json::to_json_string(&module).map_err(|e| CliError::new(format!("error: cannot export: {e}")))?
    } else {
        text::print_module(&module)
    };
    write_output(request.output.as_deref().map(Path::new), rendered.as_bytes())?;
    if let Some(warning) = location_warning {
        eprintln!("{warning}");
    }
    Ok(())
}
