//! A guest that panics or traps fails only its own run, with the reason recorded.

use cairn::store::RunStatus;
use cairn_tests::{DAY, Host};

#[tokio::test]
async fn a_panicking_journey_fails_only_its_run_with_the_panic_message() {
    let host = Host::new().await;
    let panicker = host.deploy("panicker").await;
    let welcome = host.deploy("welcome_series").await;
    let bad = host.start(&panicker, "bob", "{}").await;
    let bug = host.start(&panicker, "eve", r#"{"index": true}"#).await;
    let good = host.start(&welcome, "ada", r#"{"name":"Ada"}"#).await;
    assert_eq!(bad.status, RunStatus::Waiting);

    host.advance(DAY).await;
    let bad = host.run(bad.id).await;
    assert_eq!(bad.status, RunStatus::Failed);
    let reason = bad.failure.unwrap();
    assert!(reason.contains("journey bug for user bob"), "{reason}");
    assert!(reason.contains("panicked at"), "{reason}");
    let bug = host.run(bug.id).await;
    assert!(bug.failure.unwrap().contains("index out of bounds"));

    host.advance(3 * DAY).await;
    assert_eq!(host.run(good.id).await.status, RunStatus::Completed);
}
