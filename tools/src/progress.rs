//! The `ferrumc compile` progress bar (indicatif, on stderr, only when stderr is a terminal):
//! a spinner while the pass pipeline runs, then per entry point a bar over its fusion groups
//! (each group loads/evaluates the weights it reads and compiles its kernel).

use ferrumc_codegen::compile::{CompileProgress, ProgressHook};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// A progress bar for one compilation; inert when stderr is not a terminal.
#[derive(Debug)]
pub struct CompileBar {
    bar: Option<ProgressBar>,
}

impl CompileBar {
    /// A bar on stderr if it is a terminal, else nothing.
    pub fn for_stderr() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { bar }
    }

    /// The hook to put in `CompileOptions::progress`.
    pub fn hook(&self) -> ProgressHook {
        let Some(bar) = self.bar.clone() else { return ProgressHook::default() };
        ProgressHook::new(move |event| match event {
            CompileProgress::Optimizing => {
                if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
                    bar.set_style(style);
                }
                bar.set_message("optimizing");
            }
            CompileProgress::Function { function, groups } => {
                if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} groups [{elapsed}]")
                    .map(|s| s.progress_chars("=> "))
                {
                    bar.set_style(style);
                }
                bar.set_length(groups as u64);
                bar.set_position(0);
                bar.set_message(format!("@{function}: weights + kernels"));
            }
            CompileProgress::Group => bar.inc(1),
        })
    }

    /// Remove the bar (before the final message is printed).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
