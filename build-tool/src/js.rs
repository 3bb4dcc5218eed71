//! JavaScript journeys: a package whose `main` (default `journey.js`)
//! `export default journey({ meta, run })`. The SDK's `build.mjs` bundles it
//! with the SDK (esbuild) and runs componentize-js with every WASI feature
//! disabled, so the component imports only cairn.

use super::tool::Tool;
use super::{
    BuildError, BuildRequest, Built, build_name, cached, finish, io, record_stamp, source_files,
    wit_dir,
};
use std::path::PathBuf;

const INSTALL_NODE: &str =
    "install Node.js 18 or newer (https://nodejs.org or your package manager)";

pub(super) fn build(request: &BuildRequest) -> Result<Built, BuildError> {
    let manifest_path = request.source.join("package.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).map_err(io(&manifest_path))?)
            .map_err(|e| {
                BuildError::Project(format!("{}: not JSON: {e}", manifest_path.display()))
            })?;
    let name = build_name(manifest["name"].as_str().unwrap_or("journey"));
    let entry = request
        .source
        .join(manifest["main"].as_str().unwrap_or("journey.js"));
    if !entry.is_file() {
        return Err(BuildError::Project(format!(
            "{} does not exist: set `main` in package.json to the journey's module",
            entry.display()
        )));
    }
    let sdk = match &request.sdk {
        Some(sdk) => sdk.join("js"),
        None => request.source.join("node_modules").join("cairn-journey"),
    };
    let script = sdk.join("build.mjs");
    if !script.is_file() {
        return Err(BuildError::MissingToolchain {
            language: "JavaScript",
            tool: "the cairn-journey package".into(),
            problem: format!("{} is missing", script.display()),
            install: format!(
                "add it to {}'s dependencies and run `npm install` there",
                request.source.display()
            ),
        });
    }
    if !sdk
        .join("node_modules")
        .join("@bytecodealliance")
        .join("componentize-js")
        .is_dir()
        && !request
            .source
            .join("node_modules")
            .join("@bytecodealliance")
            .join("componentize-js")
            .is_dir()
    {
        return Err(BuildError::MissingToolchain {
            language: "JavaScript",
            tool: "componentize-js".into(),
            problem: "it is not installed next to the SDK".into(),
            install: format!("run `npm install` in {}", sdk.display()),
        });
    }
    let mut inputs = source_files(&request.source);
    // The lockfile stands for the toolchain's versions.
    inputs.extend([
        sdk.join("index.js"),
        script.clone(),
        sdk.join("package-lock.json"),
    ]);
    let (reused, stamp) = cached(request, &name, &inputs);
    if let Some(built) = reused {
        return Ok(built);
    }
    let work = request.work_dir().join("cairn-js");
    let wit = wit_dir(&work.join("wit"))?;
    let out: PathBuf = work.join(format!("{name}.wasm"));
    let node = Tool {
        language: "JavaScript",
        program: request.tools.node.clone(),
        install: INSTALL_NODE,
    };
    let mut cmd = node.command();
    cmd.arg(&script)
        .arg("--entry")
        .arg(&entry)
        .arg("--wit")
        .arg(&wit)
        .arg("--out")
        .arg(&out);
    node.run(cmd)?;
    let bytes = std::fs::read(&out).map_err(io(&out))?;
    let built = finish(request, &name, &out, &bytes)?;
    record_stamp(request, &name, &stamp)?;
    Ok(built)
}
