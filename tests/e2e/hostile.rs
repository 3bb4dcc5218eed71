//! A hostile journey fails only its own run, with the limit it hit named,
//! while a well-behaved journey on the same host goes on to complete.

use cairn::store::DEFAULT_TENANT;
use cairn::store::RunStatus;
use cairn_tests::{DAY, Host, T0, component};

#[tokio::test]
async fn every_attack_fails_only_its_own_run_naming_the_limit() {
    let host = Host::new().await;
    let hostile = host.deploy("hostile").await;
    let welcome = host.deploy("welcome_series").await;
    let attacks = [
        (
            "loop",
            "CPU limit exceeded: the step ran longer than 1000 ms",
        ),
        ("memory", "memory limit exceeded"),
        ("recursion", "stack overflow"),
        ("panic", "the hostile journey panicked on purpose"),
        ("huge-send", "message too large: the limit is 65536 bytes"),
        ("snapshot-bomb", "snapshot limit exceeded"),
        ("import-flood", "import-call limit exceeded"),
    ];
    let mut runs = Vec::new();
    for (i, (attack, _)) in attacks.iter().enumerate() {
        let input = format!(r#"{{"attack": "{attack}"}}"#);
        let run = host.start(&hostile, &format!("mallory-{i}"), &input).await;
        assert_eq!(run.status, RunStatus::Waiting, "{attack}");
        runs.push(run.id);
    }
    let good = host.start(&welcome, "ada", r#"{"name":"Ada"}"#).await;

    // Every attack runs in the same drain as the good journey's next step.
    host.advance(DAY).await;
    for (id, (attack, reason)) in runs.iter().zip(attacks) {
        let run = host.run(*id).await;
        assert_eq!(run.status, RunStatus::Failed, "{attack}");
        let failure = run.failure.unwrap_or_default();
        assert!(failure.contains(reason), "{attack}: {failure}");
    }
    host.advance(3 * DAY).await;
    let good = host.run(good.id).await;
    assert_eq!(good.status, RunStatus::Completed, "{:?}", good.failure);

    // The host still runs new work on the same pool slots.
    let again = host
        .start(
            &hostile,
            "mallory-again",
            r#"{"attack": "work", "n": 1000}"#,
        )
        .await;
    host.advance(DAY).await;
    assert_eq!(host.run(again.id).await.status, RunStatus::Completed);
}

#[tokio::test]
async fn a_tenants_own_limits_apply_to_its_runs_and_deploys_only() {
    let host = Host::new().await;
    let store = &host.runtime.store;
    let tight = r#"{"max_step_cpu_ms": 100, "max_memory_bytes": 8388608}"#;
    store
        .upsert_tenant("tight", "tight", tight, T0)
        .await
        .unwrap();
    store
        .upsert_tenant("tiny", "tiny", r#"{"max_memory_bytes": 65536}"#, T0)
        .await
        .unwrap();
    let hostile = component("hostile");
    host.runtime.deploy("tight", hostile.clone()).await.unwrap();
    host.runtime
        .deploy(DEFAULT_TENANT, hostile.clone())
        .await
        .unwrap();

    let start = |tenant: &'static str, user: &'static str, attack: &'static str| {
        let runtime = host.runtime.clone();
        async move {
            let input = format!(r#"{{"attack": "{attack}"}}"#);
            runtime
                .start_run(tenant, "hostile", user, &input)
                .await
                .unwrap()
                .id
        }
    };
    let tight_loop = start("tight", "a", "loop").await;
    let tight_memory = start("tight", "b", "memory").await;
    let default_memory = start(DEFAULT_TENANT, "c", "memory").await;
    host.drain().await;
    host.advance(DAY).await;

    for (id, expected) in [
        (tight_loop, "longer than 100 ms"),
        (tight_memory, "the limit is 8 MiB"),
        (default_memory, "the limit is 64 MiB"),
    ] {
        let reason = host.run(id).await.failure.unwrap_or_default();
        assert!(reason.contains(expected), "{reason}");
    }

    // A component whose memory starts above the tenant's limit never deploys.
    let err = host.runtime.deploy("tiny", hostile).await.unwrap_err();
    assert!(
        err.to_string().contains("above the memory limit of 64 KiB"),
        "{err}"
    );
}
