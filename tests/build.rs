//! Builds the sample journeys and the test journeys from source, once per
//! change, into `<target>/guests`, and tells the tests where they are.

use std::path::{Path, PathBuf};

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
    for source in ["sample-journeys", "tests/journeys"] {
        let request = cairn_build::BuildRequest {
            source: root.join(source),
            out_dir: components.clone(),
            target_dir: Some(guests.join("cargo")),
            show_progress: false,
        };
        if let Err(err) = cairn_build::build(&request) {
            panic!("building {source} failed: {err}");
        }
    }
    println!(
        "cargo:rustc-env=CAIRN_TEST_COMPONENTS={}",
        components.display()
    );
}

/// Re-run when any source file changes (not on `target/` churn).
fn watch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            watch(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
