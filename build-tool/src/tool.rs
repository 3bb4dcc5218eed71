//! Running a language's external tools: captured output for errors, and a
//! missing tool reported with what to install.

use super::BuildError;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// How to find and install one tool.
pub(super) struct Tool {
    pub language: &'static str,
    pub program: PathBuf,
    pub install: &'static str,
}

impl Tool {
    pub fn command(&self) -> Command {
        Command::new(&self.program)
    }

    /// Runs `cmd` (made by [`Tool::command`]): Ok on success; the tool's
    /// output as a compile error on failure; install advice if it is missing.
    /// The output is always captured: these tools print nothing useful while
    /// they work, and their errors belong in the error.
    pub fn run(&self, cmd: Command) -> Result<(), BuildError> {
        self.output(cmd).map(drop)
    }

    /// Like [`Tool::run`], returning what the tool wrote to stdout.
    pub fn output(&self, mut cmd: Command) -> Result<Vec<u8>, BuildError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // componentize-py is Rust inside: no backtrace of its own frames.
            .env("RUST_BACKTRACE", "0");
        let output = cmd.output().map_err(|err| self.missing(err.to_string()))?;
        if output.status.success() {
            return Ok(output.stdout);
        }
        let mut text = String::from_utf8_lossy(&output.stderr).to_string();
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !stdout.trim().is_empty() {
            text = format!("{stdout}\n{text}");
        }
        if let Some(cut) = text.find("\nStack backtrace:") {
            text.truncate(cut);
        }
        Err(BuildError::Compile {
            language: self.language,
            output: text.trim().to_string(),
        })
    }

    pub fn missing(&self, problem: String) -> BuildError {
        BuildError::MissingToolchain {
            language: self.language,
            tool: self.program.display().to_string(),
            problem: if problem.contains("No such file") || problem.contains("not found") {
                "it was not found".to_string()
            } else {
                problem
            },
            install: self.install.to_string(),
        }
    }
}
