//! Builds journey sources into pure cairn components.
//!
//! Used by `cairn build` and by the test suite's build script. A Rust journey
//! crate (or a workspace of them) is compiled by cargo for
//! `wasm32-unknown-unknown` and each `cdylib` it produces is wrapped into a
//! component by `wit-component`, using the component type that `wit-bindgen`
//! embedded. The result imports only `cairn:journey/*`: no WASI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The wasm target journeys are compiled for.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// The shadow-stack size journeys get, in bytes.
///
/// Rust's default is 1 MiB, placed first in linear memory. Every snapshot
/// compares the whole memory with its pristine image, so a smaller stack makes
/// every wait point cheaper; 256 KiB is ample for journey code.
pub const STACK_SIZE: u32 = 256 * 1024;

/// What to build and where.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// A cargo package or workspace directory (with a `Cargo.toml`).
    pub source: PathBuf,
    /// Where the components are written (`<name>.wasm`).
    pub out_dir: PathBuf,
    /// Cargo's target directory; default `<source>/target`.
    pub target_dir: Option<PathBuf>,
    /// Show cargo's progress on stderr (otherwise it is captured and shown on failure).
    pub show_progress: bool,
}

/// A component written by [`build`].
#[derive(Debug, Clone)]
pub struct Built {
    /// The cargo package's library name, e.g. `welcome_series`.
    pub name: String,
    /// The component file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: usize,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The source directory has no Cargo.toml.
    #[error(
        "{0} has no Cargo.toml: `cairn build` expects a Rust journey crate (other languages come later)"
    )]
    NotACrate(PathBuf),
    /// cargo could not be started.
    #[error("could not run cargo ({0}); install Rust from https://rustup.rs")]
    NoCargo(std::io::Error),
    /// The wasm target is missing from the toolchain.
    #[error("the {TARGET} target is not installed; run `rustup target add {TARGET}`")]
    MissingTarget,
    /// cargo reported compile errors.
    #[error("cargo build failed:\n{0}")]
    Compile(String),
    /// The crate builds no cdylib.
    #[error("{0} built no cdylib; add `[lib] crate-type = [\"cdylib\"]` to its Cargo.toml")]
    NoCdylib(PathBuf),
    /// wit-component refused the module.
    #[error("could not turn {module} into a component: {reason:#}")]
    Componentize {
        /// The core module that was refused.
        module: PathBuf,
        /// What wit-component said.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Builds every journey cdylib under `request.source` into a component.
///
/// # Errors
/// See [`BuildError`]; compile errors carry cargo's own diagnostics.
pub fn build(request: &BuildRequest) -> Result<Vec<Built>, BuildError> {
    let manifest = request.source.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(BuildError::NotACrate(request.source.clone()));
    }
    let target_dir = request
        .target_dir
        .clone()
        .unwrap_or_else(|| request.source.join("target"));
    let modules = cargo_build(&manifest, &target_dir, request.show_progress)?;
    if modules.is_empty() {
        return Err(BuildError::NoCdylib(request.source.clone()));
    }
    std::fs::create_dir_all(&request.out_dir).map_err(io(&request.out_dir))?;
    modules
        .into_iter()
        .map(|(name, module)| {
            let bytes = std::fs::read(&module).map_err(io(&module))?;
            let component = componentize(&bytes).map_err(|reason| BuildError::Componentize {
                module: module.clone(),
                reason,
            })?;
            let path = request.out_dir.join(format!("{name}.wasm"));
            write_if_changed(&path, &component)?;
            Ok(Built {
                name,
                path,
                size: component.len(),
            })
        })
        .collect()
}

/// Wraps a core module built with the cairn SDK into a component.
///
/// # Errors
/// wit-component's reason, e.g. a missing component-type section.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| format!("{e:#}"))
}

/// Keeps the file's mtime when nothing changed, so dependants do not rebuild.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).map_err(io(path))
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
    let mut child = cmd.spawn().map_err(BuildError::NoCargo)?;

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
    let status = child.wait().map_err(BuildError::NoCargo)?;
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    if !status.success() {
        if stderr.contains("can't find crate for `core`")
            || diagnostics.contains("can't find crate for `core`")
        {
            return Err(BuildError::MissingTarget);
        }
        return Err(BuildError::Compile(
            format!("{diagnostics}{stderr}").trim().to_string(),
        ));
    }
    Ok(built)
}
