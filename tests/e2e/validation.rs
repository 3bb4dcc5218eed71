//! Deploy refuses what cannot run safely, with a message naming the problem.

use cairn::engine::{Engine, EngineConfig};

fn engine() -> Engine {
    Engine::new(EngineConfig {
        max_instances: 4,
        ..EngineConfig::default()
    })
    .unwrap()
}

fn refusal(bytes: &[u8]) -> String {
    match engine().load(bytes) {
        Ok(_) => panic!("the component was accepted"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn a_component_importing_wasi_is_refused_naming_the_import() {
    for import in [
        "wasi:filesystem/types@0.2.0",
        "wasi:sockets/tcp@0.2.0",
        "wasi:cli/environment@0.2.0",
    ] {
        let wasm =
            wat::parse_str(format!(r#"(component (import "{import}" (instance)))"#)).unwrap();
        let err = refusal(&wasm);
        assert!(err.contains(import), "{err}");
        assert!(err.contains("resources a snapshot cannot carry"), "{err}");
    }
}

#[test]
fn malformed_bytes_and_core_modules_are_refused() {
    let err = refusal(b"definitely not wasm");
    assert!(err.contains("not a valid WebAssembly binary"), "{err}");
    let core = wat::parse_str("(module)").unwrap();
    let err = refusal(&core);
    assert!(err.contains("core wasm module, not a component"), "{err}");
}

#[test]
fn a_component_without_the_journey_exports_is_refused() {
    let wasm = wat::parse_str("(component)").unwrap();
    let err = refusal(&wasm);
    assert!(err.contains("missing meta, start, resume"), "{err}");
}

#[test]
fn every_sample_journey_deploys() {
    let engine = engine();
    for name in cairn_tests::SAMPLES {
        let journey = engine.load(&cairn_tests::component(name)).unwrap();
        assert_eq!(journey.meta.id, name.replace('_', "-"));
    }
}

#[test]
fn code_that_changes_a_table_is_refused_naming_the_instruction() {
    let wasm = wat::parse_str(
        r#"(component (core module
            (table 1 funcref)
            (func (drop (table.grow 0 (ref.null func) (i32.const 1))))))"#,
    )
    .unwrap();
    let err = refusal(&wasm);
    assert!(err.contains("table.grow"), "{err}");
    assert!(err.contains("may not change tables"), "{err}");
}

#[test]
fn a_memory_declared_above_the_limit_is_refused() {
    // 2,000 pages of 64 KiB: 125 MiB, above the default 64 MiB.
    let wasm = wat::parse_str(
        r#"(component
            (core module $m (memory 2000) (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (export "meta" (func $f))
            (export "start" (func $f))
            (export "resume" (func $f)))"#,
    )
    .unwrap();
    let err = refusal(&wasm);
    assert!(err.contains("memory of 125 MiB"), "{err}");
    assert!(err.contains("memory limit of 64 MiB"), "{err}");
}
