//! C journeys (and Zig through translate-c): every `.c` file in the
//! directory, compiled by `zig cc` as a wasm32 reactor together with the C
//! SDK (`cairn.c`) and bindings that wit-bindgen's C generator writes from
//! the WIT contract. No libc I/O is used, so the module imports only cairn.

use super::tool::Tool;
use super::{
    BuildError, BuildRequest, Built, STACK_SIZE, build_name, cached, files_with_extension, finish,
    io, record_stamp,
};
use std::path::{Path, PathBuf};

const INSTALL: &str = "install zig with `pip install ziglang==0.17.1` (cairn runs `python3 -m ziglang`; \
                       set CAIRN_PYTHON to use another Python)";

pub(super) fn build(request: &BuildRequest) -> Result<Built, BuildError> {
    let sources = files_with_extension(&request.source, "c")?;
    let sdk = c_sdk(request)?;
    let dir_name = request
        .source
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| "journey".into());
    let name = build_name(&dir_name);
    let mut inputs = sources.clone();
    inputs.extend(files_with_extension(&request.source, "h")?);
    inputs.extend([sdk.join("cairn.h"), sdk.join("cairn.c")]);
    let (reused, stamp) = cached(request, &name, &inputs);
    if let Some(built) = reused {
        return Ok(built);
    }
    let work = request.work_dir().join("cairn-c");
    let generated = work.join("gen");
    generate_bindings(&generated)?;
    let core = work.join(format!("{name}.core.wasm"));
    let zig = Tool {
        language: "C",
        program: request.tools.python.clone(),
        install: INSTALL,
    };
    let mut cmd = zig.command();
    cmd.args([
        "-m",
        "ziglang",
        "cc",
        "--target=wasm32-wasi",
        "-O2",
        "-mexec-model=reactor",
    ])
    .arg(format!("-I{}", generated.display()))
    .arg(format!("-I{}", sdk.display()))
    .arg(format!("-I{}", request.source.display()))
    .args(&sources)
    .arg(sdk.join("cairn.c"))
    .arg(generated.join("journey.c"))
    .arg(generated.join("journey_component_type.o"))
    .arg(format!("-Wl,-z,stack-size={STACK_SIZE}"))
    .arg("-Wl,--strip-debug")
    .arg("-o")
    .arg(&core);
    match zig.run(cmd) {
        Err(BuildError::Compile { output, .. }) if output.contains("No module named ziglang") => {
            return Err(zig.missing("its ziglang module is not installed".into()));
        }
        other => other?,
    }
    let bytes = std::fs::read(&core).map_err(io(&core))?;
    let built = finish(request, &name, &core, &bytes)?;
    record_stamp(request, &name, &stamp)?;
    Ok(built)
}

/// The C SDK directory (`cairn.h`, `cairn.c`).
fn c_sdk(request: &BuildRequest) -> Result<PathBuf, BuildError> {
    let sdk = match &request.sdk {
        Some(sdk) => sdk.join("c"),
        None => request.source.clone(),
    };
    if sdk.join("cairn.h").is_file() && sdk.join("cairn.c").is_file() {
        Ok(sdk)
    } else {
        Err(BuildError::MissingToolchain {
            language: "C",
            tool: "the cairn C SDK".into(),
            problem: format!("cairn.h and cairn.c are not in {}", sdk.display()),
            install: "pass `cairn build --sdk <cairn>/guest-sdk`, or copy guest-sdk/c/cairn.{h,c} \
                      next to the journey"
                .into(),
        })
    }
}

/// Writes `journey.h`, `journey.c` and `journey_component_type.o` into `dir`.
fn generate_bindings(dir: &Path) -> Result<(), BuildError> {
    use wit_bindgen_core::wit_parser::Resolve;
    let mut resolve = Resolve::default();
    let package = resolve
        .push_str("journey.wit", super::WIT)
        .map_err(failed)?;
    let world = resolve
        .select_world(&[package], Some("journey"))
        .map_err(failed)?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .map_err(failed)?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for (name, bytes) in files.iter() {
        let path = dir.join(name);
        super::write_if_changed(&path, bytes)?;
    }
    Ok(())
}

fn failed(e: impl std::fmt::Display) -> BuildError {
    BuildError::Project(format!("generating the C bindings: {e:#}"))
}
