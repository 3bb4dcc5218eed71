//! Builds the sample journeys and the test journeys from source, once per
//! change, into `<target>/guests`, and tells the tests where they are.
//!
//! Rust journeys need only the wasm32 target. The JavaScript, Python and C
//! journeys need componentize-js (npm), componentize-py and zig (PyPI): if
//! they are missing, this installs them into the checkout (`npm ci` in
//! `guest-sdk/js`) and into a virtualenv under `<target>/guests/venv`, so a
//! fresh clone's `cargo test` needs nothing else. Unchanged journeys are not
//! rebuilt (see the build tool's stamps).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Journeys in other languages than Rust, built one directory each.
const POLYGLOT: [&str; 6] = [
    "sample-journeys/welcome-series-js",
    "sample-journeys/welcome-series-py",
    "sample-journeys/welcome-series-c",
    "tests/journeys/probe-js",
    "tests/journeys/probe-py",
    "tests/journeys/greeter-zig",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target = out_dir.ancestors().nth(4).unwrap().to_path_buf();
    let guests = target.join("guests");

    for watched in ["sample-journeys", "tests/journeys", "guest-sdk", "wit"] {
        watch(&root.join(watched));
    }
    let components = guests.join("components");
    let sdk = root.join("guest-sdk");
    for source in ["sample-journeys", "tests/journeys"] {
        let request = cairn_build::BuildRequest {
            source: root.join(source),
            out_dir: components.clone(),
            target_dir: Some(guests.join("cargo")),
            show_progress: false,
            sdk: Some(sdk.clone()),
            tools: cairn_build::Tools::default(),
        };
        if let Err(err) = cairn_build::build(&request) {
            panic!("building {source} failed: {err}");
        }
    }
    let tools = toolchains(&sdk, &guests);
    for source in POLYGLOT {
        let request = cairn_build::BuildRequest {
            source: root.join(source),
            out_dir: components.clone(),
            target_dir: Some(guests.join("work")),
            show_progress: false,
            sdk: Some(sdk.clone()),
            tools: tools.clone(),
        };
        if let Err(err) = cairn_build::build(&request) {
            panic!("building {source} failed: {err}");
        }
    }
    println!(
        "cargo:rustc-env=CAIRN_TEST_COMPONENTS={}",
        components.display()
    );
    println!(
        "cargo:rustc-env=CAIRN_TEST_CACHE={}",
        guests.join("cwasm").display()
    );
    println!("cargo:rustc-env=CAIRN_TEST_NODE={}", tools.node.display());
    println!(
        "cargo:rustc-env=CAIRN_TEST_COMPONENTIZE_PY={}",
        tools.componentize_py.display()
    );
    println!(
        "cargo:rustc-env=CAIRN_TEST_PYTHON={}",
        tools.python.display()
    );
    println!(
        "cargo:rustc-env=CAIRN_TEST_SMTP_PYTHON={}",
        smtp_sink_python(&guests).display()
    );
}

/// A Python with aiosmtpd (PyPI) for the SMTP sink the delivery tests start.
fn smtp_sink_python(guests: &Path) -> PathBuf {
    let venv = guests.join("smtp-venv");
    let python = venv.join("bin/python");
    let has_aiosmtpd = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_aiosmtpd {
        println!(
            "cargo:warning=installing aiosmtpd (PyPI) into {}",
            venv.display()
        );
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "aiosmtpd==1.4.6"]));
    }
    python
}

/// The tools for the polyglot journeys, installing what is missing.
fn toolchains(sdk: &Path, guests: &Path) -> cairn_build::Tools {
    let js = sdk.join("js");
    if !js
        .join("node_modules/@bytecodealliance/componentize-js")
        .is_dir()
    {
        println!(
            "cargo:warning=installing componentize-js and esbuild: npm ci in {}",
            js.display()
        );
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&js));
    }
    let mut tools = cairn_build::Tools::default();
    let works = |program: &Path, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(&tools.componentize_py, &["--version"])
        && works(&tools.python, &["-m", "ziglang", "version"])
    {
        return tools;
    }
    let venv = guests.join("venv");
    let python = venv.join("bin/python");
    let componentize_py = venv.join("bin/componentize-py");
    if !(works(&componentize_py, &["--version"]) && works(&python, &["-m", "ziglang", "version"])) {
        println!(
            "cargo:warning=installing componentize-py and zig (PyPI) into {}",
            venv.display()
        );
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "componentize-py==0.25.1",
            "ziglang==0.17.1",
        ]));
    }
    tools.python = python;
    tools.componentize_py = componentize_py;
    tools
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// Re-run when any source file changes (not on `target/` or dependency churn).
fn watch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if ["target", "node_modules", "__pycache__"].contains(&name.as_ref())
            || name.starts_with('.')
        {
            continue;
        }
        if path.is_dir() {
            watch(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
