//! Import an ONNX model, print its IR, run it on the reference interpreter and compare
//! with expected outputs: `onnx_run MODEL.onnx --in NAME=FILE.npy... [--want FILE.npy...]`.

use ferrumc_ir::interp::run_function;
use ferrumc_ir::npy::read_npy_file;
use ferrumc_ir::weights::FileWeights;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().ok_or("usage: onnx_run MODEL.onnx --in NAME=FILE.npy... [--want FILE.npy...]")?;
    let path = Path::new(model);
    let m = ferrumc_onnx::import_onnx(path)?;
    println!("{}", ferrumc_ir::text::print_module(&m));
    let (mut inputs, mut wants, mut mode) = (Vec::new(), Vec::new(), "");
    for a in &args[1..] {
        match a.as_str() {
            "--in" | "--want" => mode = if a == "--in" { "in" } else { "want" },
            _ if mode == "in" => {
                let (n, f) = a.split_once('=').ok_or("--in takes NAME=FILE.npy")?;
                inputs.push((n.to_string(), read_npy_file(Path::new(f))?));
            }
            _ => wants.push(read_npy_file(Path::new(a))?),
        }
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let outs = run_function(&m, "forward", &inputs, &FileWeights::new(dir))?;
    for (k, (name, t)) in outs.iter().enumerate() {
        let max_err = wants
            .get(k)
            .map(|w| t.to_f64_vec().iter().zip(w.to_f64_vec()).map(|(a, b)| (a - b).abs()).fold(0.0f64, f64::max));
        println!("output {name}: {} {:?}, max abs error {max_err:?}", t.dtype, t.shape);
    }
    Ok(())
}
