//! C and Zig journeys: every `.c` file in the directory (and its one `.zig`
//! root file, which imports the SDK's declarations as module `cairn`,
//! translated from `cairn.h`), compiled by zig as a wasm32 reactor together
//! with the C SDK (`cairn.c`) and bindings that wit-bindgen's C generator
//! writes from the WIT contract. No libc I/O is used, so the module imports
//! only cairn.

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
    inputs.extend(files_with_extension(&request.source, "zig")?);
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
    let includes = [
        format!("-I{}", generated.display()),
        format!("-I{}", sdk.display()),
        format!("-I{}", request.source.display()),
    ];
    let c_inputs = sources
        .iter()
        .cloned()
        .chain([
            sdk.join("cairn.c"),
            generated.join("journey.c"),
            generated.join("journey_component_type.o"),
        ])
        .collect::<Vec<_>>();
    let mut cmd = zig.command();
    match zig_root(request)? {
        None => {
            cmd.args([
                "-m",
                "ziglang",
                "cc",
                "--target=wasm32-wasi",
                "-O2",
                "-mexec-model=reactor",
            ])
            .args(&includes)
            .args(&c_inputs)
            .arg(format!("-Wl,-z,stack-size={STACK_SIZE}"))
            .arg("-Wl,--strip-debug")
            .arg("-o")
            .arg(&core);
        }
        Some(root) => {
            // The Zig file imports the SDK's declarations as module `cairn`.
            let mut translate = zig.command();
            translate
                .args([
                    "-m",
                    "ziglang",
                    "translate-c",
                    "-target",
                    "wasm32-wasi",
                    "-lc",
                ])
                .arg(sdk.join("cairn.h"));
            let declarations = work.join("cairn.zig");
            let zig_decls = zig_step(&zig, translate)?;
            std::fs::write(&declarations, zig_decls).map_err(io(&declarations))?;
            let target = ["-target", "wasm32-wasi", "-O", "ReleaseSmall"];
            cmd.args(["-m", "ziglang", "build-exe"])
                .args(target)
                .args([
                    "-mexec-model=reactor",
                    "-fno-entry",
                    "-rdynamic",
                    "-lc",
                    "-fstrip",
                ])
                .arg("--stack")
                .arg(STACK_SIZE.to_string())
                .args(&includes)
                .args(&c_inputs)
                .args(["--dep", "cairn"])
                .arg(format!("-Mroot={}", root.display()))
                .args(target)
                .arg(format!("-Mcairn={}", declarations.display()))
                .arg(format!("-femit-bin={}", core.display()));
        }
    }
    zig_step(&zig, cmd)?;
    let bytes = std::fs::read(&core).map_err(io(&core))?;
    let built = finish(request, &name, &core, &bytes)?;
    record_stamp(request, &name, &stamp)?;
    Ok(built)
}

/// Runs one zig step; a Python without the ziglang module means zig is missing.
fn zig_step(zig: &Tool, cmd: std::process::Command) -> Result<Vec<u8>, BuildError> {
    match zig.output(cmd) {
        Err(BuildError::Compile { output, .. }) if output.contains("No module named ziglang") => {
            Err(zig.missing("its ziglang module is not installed".into()))
        }
        other => other,
    }
}

/// The Zig journey's root file: the directory's one `.zig` file, if any.
fn zig_root(request: &BuildRequest) -> Result<Option<PathBuf>, BuildError> {
    let files = files_with_extension(&request.source, "zig")?;
    match files.len() {
        0 | 1 => Ok(files.into_iter().next()),
        _ => Err(BuildError::Project(format!(
            "{} has several .zig files: keep one root file that imports the others",
            request.source.display()
        ))),
    }
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
