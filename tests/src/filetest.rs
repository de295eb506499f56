//! The golden filetest format.
//!
//! A filetest is one `.fir` file under `tests/filetests/<suite>/`:
//!
//! ```text
//! ; test: <command>
//! ; input: x = dense<f32[2]: [1.0, 2.0]>     (directives, command-specific)
//! module @case
//! ...
//! ; expected:
//! ; <expected output, one line per comment line>
//! ```
//!
//! Everything before the `; expected:` line is the input (the directives are ordinary
//! comments, so the input is a valid `.fir` module); the comment lines after it are the
//! expected output. Setting `FERRUMC_BLESS=1` rewrites the expected section with what the
//! command produced.

use std::path::Path;

/// The marker separating input from expected output.
pub const EXPECTED_MARKER: &str = "; expected:";

/// A parsed filetest.
#[derive(Debug, Clone)]
pub struct FileTest {
    /// The value of the `; test:` directive.
    pub command: String,
    /// Other `; key: value` directives from the header, in order.
    pub directives: Vec<(String, String)>,
    /// The input text (header included).
    pub input: String,
    /// The expected lines (comment prefix removed).
    pub expected: Vec<String>,
}

impl FileTest {
    /// Split a filetest file into its parts.
    pub fn parse(text: &str) -> Result<FileTest, String> {
        let (input, expected_text) = match text.find(&format!("\n{EXPECTED_MARKER}")) {
            Some(pos) => (&text[..=pos], &text[pos + 1 + EXPECTED_MARKER.len()..]),
            None => (text, ""),
        };
        let mut command = None;
        let mut directives = Vec::new();
        for line in input.lines() {
            let Some(comment) = line.strip_prefix(';') else { break };
            let Some((key, value)) = comment.trim().split_once(':') else { continue };
            let (key, value) = (key.trim().to_string(), value.trim().to_string());
            if key == "test" {
                command = Some(value);
            } else {
                directives.push((key, value));
            }
        }
        let command = command.ok_or("the file does not start with a `; test: <command>` line")?;
        let expected = expected_text
            .lines()
            .skip_while(|l| l.trim().is_empty())
            .map(|l| l.strip_prefix("; ").or_else(|| l.strip_prefix(';')).unwrap_or(l).to_string())
            .collect::<Vec<_>>();
        let expected = trim_trailing_empty(expected);
        Ok(FileTest { command, directives, input: input.to_string(), expected })
    }

    /// Values of every directive named `key`.
    pub fn directive_values(&self, key: &str) -> Vec<&str> {
        self.directives.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }
}

fn trim_trailing_empty(mut lines: Vec<String>) -> Vec<String> {
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    lines
}

/// Whether expectations should be rewritten instead of checked.
pub fn blessing() -> bool {
    std::env::var("FERRUMC_BLESS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Check `actual` against the file's expectation, or rewrite the file when blessing.
pub fn check_or_bless(path: &Path, test: &FileTest, actual: &[String]) -> Result<(), String> {
    let actual = trim_trailing_empty(actual.to_vec());
    if blessing() {
        let mut text = test.input.trim_end().to_string();
        text.push('\n');
        text.push_str(EXPECTED_MARKER);
        text.push('\n');
        for line in &actual {
            if line.is_empty() {
                text.push_str(";\n");
            } else {
                text.push_str("; ");
                text.push_str(line);
                text.push('\n');
            }
        }
        return std::fs::write(path, text).map_err(|e| format!("cannot bless {}: {e}", path.display()));
    }
    if actual == test.expected {
        return Ok(());
    }
    let mut msg = format!("output differs from the expectation in {}\n", path.display());
    let n = actual.len().max(test.expected.len());
    for i in 0..n {
        let (a, e) = (actual.get(i), test.expected.get(i));
        if a != e {
            msg.push_str(&format!(
                "first difference at expected line {}:\n  expected: {}\n  actual:   {}\n",
                i + 1,
                e.map_or("<missing>", String::as_str),
                a.map_or("<missing>", String::as_str)
            ));
            break;
        }
    }
    msg.push_str("\nfull actual output:\n");
    for line in &actual {
        msg.push_str(line);
        msg.push('\n');
    }
    msg.push_str("\n(run with FERRUMC_BLESS=1 to accept)");
    Err(msg)
}
