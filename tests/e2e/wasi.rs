//! Resource-free WASI: a component importing WASI clocks and randomness
//! deploys, reads the step's logical time through them, and snapshots like
//! any other; anything that hands out a resource is refused at deploy.

use cairn::store::RunStatus;
use cairn_tests::{Host, T0};

#[tokio::test]
async fn wasi_clocks_and_random_read_the_steps_time_and_derived_randomness() {
    let host = Host::new().await;
    let journey = host.deploy("wasi_clock").await;
    let run = host.start(&journey, "ada", "{}").await;
    assert_eq!(run.status, RunStatus::Waiting, "{:?}", run.failure);
    host.advance(3_600_000).await;
    let run = host.run(run.id).await;
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.failure);

    let outbox = host.outbox(run.id).await;
    let props = &outbox[0].props;
    let (first, second) = (&props["first"], &props["second"]);
    assert_eq!(first["wall_ms"], props["first_ctx_now"]);
    assert_eq!(first["wall_ms"], T0);
    assert_eq!(second["wall_ms"], props["second_ctx_now"]);
    assert_eq!(second["wall_ms"], T0 + 3_600_000);
    assert_eq!(first["monotonic_ns"], T0 * 1_000_000);
    assert!(second["monotonic_ns"].as_u64() > first["monotonic_ns"].as_u64());
    assert_ne!(first["random"], second["random"]);
    assert_eq!(first["bytes"], 16);
}

#[test]
fn wasi_interfaces_that_hand_out_resources_are_refused() {
    let engine = cairn::engine::Engine::new(cairn::engine::EngineConfig {
        max_instances: 2,
        ..Default::default()
    })
    .unwrap();
    for import in [
        "wasi:io/streams@0.2.0",
        "wasi:io/poll@0.2.0",
        "wasi:cli/stdout@0.2.0",
    ] {
        let wasm =
            wat::parse_str(format!(r#"(component (import "{import}" (instance)))"#)).unwrap();
        let err = engine.load(&wasm).err().expect("refused").to_string();
        assert!(err.contains(import), "{err}");
        assert!(err.contains("only the resource-free WASI"), "{err}");
    }
}
