//! Helpers shared by the end-to-end tests: where the journeys built from
//! source are, and how to start the host binary.

use std::path::PathBuf;

/// The component built from `sample-journeys/<name>` or `tests/journeys/<name>`
/// (`name` with underscores, e.g. `welcome_series`).
pub fn component_path(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CAIRN_TEST_COMPONENTS")).join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The bytes of a built journey component.
pub fn component(name: &str) -> Vec<u8> {
    std::fs::read(component_path(name)).expect("reading a built component")
}

/// The names of every sample journey (sample-journeys/*).
pub const SAMPLES: [&str; 3] = ["welcome_series", "trial_expiry", "ceiling_probe"];
