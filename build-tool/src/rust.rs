//! Rust journeys: cargo builds each `cdylib` for `wasm32-unknown-unknown`,
//! with the small shadow stack; wit-bindgen already embedded the component
//! type, so wit-component wraps each module as it is.

use super::{BuildError, BuildRequest, Built, STACK_SIZE, TARGET, finish, io};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Builds every journey cdylib of the crate or workspace.
pub(super) fn build(request: &BuildRequest, manifest: &Path) -> Result<Vec<Built>, BuildError> {
    let target_dir = request.work_dir();
    let modules = cargo_build(manifest, &target_dir, request.show_progress)?;
    if modules.is_empty() {
        return Err(BuildError::NoCdylib(request.source.clone()));
    }
    modules
        .into_iter()
        .map(|(name, module)| {
            let bytes = std::fs::read(&module).map_err(io(&module))?;
            finish(request, &name, &module, &bytes)
        })
        .collect()
}

/// Runs cargo and returns (library name, .wasm path) for each cdylib built.
fn cargo_build(
    manifest: &Path,
    target_dir: &Path,
    show_progress: bool,
) -> Result<Vec<(String, PathBuf)>, BuildError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--message-format=json-render-diagnostics",
    ])
    .args(["--target", TARGET])
    .arg("--manifest-path")
    .arg(manifest)
    .arg("--target-dir")
    .arg(target_dir)
    .env(
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
        format!("-C link-arg=-zstack-size={STACK_SIZE}"),
    );
    // Started from a build script, cargo's own settings for the outer build
    // must not leak into this one.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdout(Stdio::piped());
    cmd.stderr(if show_progress {
        Stdio::inherit()
    } else {
        Stdio::piped()
    });
    let mut child = cmd.spawn().map_err(|e| no_cargo(&e))?;

    let stderr = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
            text
        })
    });
    let mut built = Vec::new();
    let mut diagnostics = String::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(io(manifest))?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        match msg["reason"].as_str() {
            Some("compiler-artifact") => {
                let is_cdylib = msg["target"]["crate_types"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "cdylib"));
                if !is_cdylib {
                    continue;
                }
                let name = msg["target"]["name"]
                    .as_str()
                    .unwrap_or("journey")
                    .replace('-', "_");
                if let Some(wasm) = msg["filenames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str())
                    .find(|f| f.ends_with(".wasm"))
                {
                    built.push((name, PathBuf::from(wasm)));
                }
            }
            Some("compiler-message") => {
                if let Some(rendered) = msg["message"]["rendered"].as_str() {
                    diagnostics.push_str(rendered);
                }
            }
            _ => {}
        }
    }
    let status = child.wait().map_err(|e| no_cargo(&e))?;
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    if !status.success() {
        if stderr.contains("can't find crate for `core`")
            || diagnostics.contains("can't find crate for `core`")
        {
            return Err(BuildError::MissingTarget);
        }
        return Err(BuildError::Compile {
            language: "Rust",
            output: format!("{diagnostics}{stderr}").trim().to_string(),
        });
    }
    Ok(built)
}

fn no_cargo(err: &std::io::Error) -> BuildError {
    BuildError::MissingToolchain {
        language: "Rust",
        tool: "cargo".into(),
        problem: format!("it could not be run ({err})"),
        install: "install Rust from https://rustup.rs".into(),
    }
}
