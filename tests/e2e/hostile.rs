//! A hostile journey fails only its own run, with the limit it hit named,
//! while a well-behaved journey on the same host goes on to complete.

use cairn::store::RunStatus;
use cairn_tests::{DAY, Host};

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
