//! Waits beyond the run's execution ceiling are refused at the import call.

use cairn::store::DEFAULT_TENANT;
use cairn::store::RunStatus;
use cairn_tests::{DAY, Host};

#[tokio::test]
async fn an_over_ceiling_wait_is_refused_and_the_journey_handles_it() {
    let host = Host::new().await;
    let journey = host.deploy("ceiling_probe").await;
    for wait in ["sleep", "sleep-until", "event"] {
        let input = format!(r#"{{"wait":"{wait}","handle":true}}"#);
        let run = host.start(&journey, &format!("user-{wait}"), &input).await;
        assert_eq!(run.status, RunStatus::Waiting, "{wait}: {:?}", run.failure);
        assert_eq!(run.checkpoint.as_deref(), Some("ceiling-refused"), "{wait}");
        // It fell back to waiting until the ceiling itself: 30 days after the start.
        assert_eq!(
            run.wait.as_ref().unwrap().deadline,
            run.ceiling_at,
            "{wait}"
        );
        assert_eq!(run.ceiling_at - run.started_at, 30 * DAY);
    }
    host.advance(30 * DAY).await;
    for run in host
        .runtime
        .store
        .runs(DEFAULT_TENANT, &Default::default())
        .await
        .unwrap()
    {
        assert_eq!(
            run.status,
            RunStatus::Completed,
            "{}: {:?}",
            run.user_id,
            run.failure
        );
        let outbox = host.outbox(run.id).await;
        assert_eq!(outbox[0].template, "final-notice");
    }
}

#[tokio::test]
async fn an_unhandled_over_ceiling_wait_fails_the_run_with_the_reason() {
    let host = Host::new().await;
    let journey = host.deploy("ceiling_probe").await;
    for wait in ["sleep", "sleep-until", "event"] {
        let input = format!(r#"{{"wait":"{wait}","handle":false}}"#);
        let run = host.start(&journey, &format!("user-{wait}"), &input).await;
        assert_eq!(run.status, RunStatus::Failed, "{wait}");
        let reason = run.failure.unwrap();
        assert!(
            reason.contains("exceeds the execution ceiling"),
            "{wait}: {reason}"
        );
        assert!(reason.contains("must end by"), "{wait}: {reason}");
    }
}
