//! Run lifecycle: events resume waits, terminal runs stay terminal, a
//! crashed step re-runs without a second outbox row.

use cairn::store::{RunStatus, StepCommit, StepEnd};
use cairn_tests::{DAY, Host};
use serde_json::json;

#[tokio::test]
async fn an_event_resumes_the_waiting_run_and_later_events_change_nothing() {
    let host = Host::new().await;
    let journey = host.deploy("welcome_series").await;
    let run = host.start(&journey, "ada", r#"{"name":"Ada"}"#).await;
    host.advance(DAY).await;
    assert_eq!(
        host.run(run.id).await.wait.unwrap().deadline,
        host.run(run.id).await.due_at.unwrap()
    );

    let outcome = host
        .runtime
        .ingest_event("ada", "purchased", json!({"item": "boots"}), None, None)
        .await
        .unwrap();
    assert_eq!(outcome.resumed, vec![run.id]);
    host.drain().await;
    let done = host.run(run.id).await;
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.checkpoint.as_deref(), Some("converted"));
    let outbox = host.runtime.store.outbox(Some(run.id)).await.unwrap();
    let templates: Vec<_> = outbox.iter().map(|m| m.template.as_str()).collect();
    assert_eq!(templates, ["welcome", "tips", "thank-you"]);
    assert_eq!(outbox[2].props["item"], "boots");

    // A completed run is never resurrected.
    let again = host
        .runtime
        .ingest_event("ada", "purchased", json!({}), None, None)
        .await
        .unwrap();
    assert!(again.resumed.is_empty());
    host.advance(10 * DAY).await;
    let still = host.run(run.id).await;
    assert_eq!(
        (still.status, still.step),
        (RunStatus::Completed, done.step)
    );
    assert_eq!(
        host.runtime.store.outbox(Some(run.id)).await.unwrap().len(),
        3
    );
}

#[tokio::test]
async fn an_event_for_another_user_or_name_does_not_wake_the_run() {
    let host = Host::new().await;
    let journey = host.deploy("welcome_series").await;
    let run = host.start(&journey, "ada", "{}").await;
    host.advance(DAY).await;
    for (user, name) in [("bob", "purchased"), ("ada", "viewed")] {
        let outcome = host
            .runtime
            .ingest_event(user, name, json!({}), None, None)
            .await
            .unwrap();
        assert!(outcome.resumed.is_empty(), "{user} {name}");
    }
    host.drain().await;
    assert_eq!(host.run(run.id).await.status, RunStatus::Waiting);
}

#[tokio::test]
async fn a_step_that_crashed_before_commit_reruns_without_a_second_outbox_row() {
    let host = Host::new().await;
    let journey = host.deploy("welcome_series").await;
    let run = host
        .runtime
        .start_run(&journey, "ada", r#"{"name":"Ada"}"#)
        .await
        .unwrap();

    // The host crashed after the step ran (and sent) but before it committed:
    // the step's work is lost, the run is still due.
    let (due, watermark) = host
        .runtime
        .store
        .due_runs(cairn_tests::T0, 10, &[])
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    drop((due, watermark));

    host.drain().await;
    let after = host.run(run.id).await;
    assert_eq!(after.status, RunStatus::Waiting);
    let outbox = host.runtime.store.outbox(Some(run.id)).await.unwrap();
    assert_eq!(outbox.len(), 1, "the welcome email is queued exactly once");
    // Keyed by (run, step, call): the welcome email is call 1 of step 0, after the A/B draw.
    assert_eq!(outbox[0].key, format!("{}:0:1", run.id));

    // A stale commit of the same step (a second worker) is refused by the guard.
    let stale = StepCommit {
        run_id: run.id,
        user_id: "ada".into(),
        expected_status: RunStatus::Active,
        expected_step: 0,
        end: StepEnd::Completed,
        record: Default::default(),
        woken_by: "started".into(),
        event_id: None,
        at: cairn_tests::T0,
        event_watermark: 0,
        now: cairn_tests::T0,
    };
    assert_eq!(
        host.runtime.store.commit_steps(&[stale]).await.unwrap(),
        vec![false]
    );
    assert_eq!(host.run(run.id).await.status, RunStatus::Waiting);
}

#[tokio::test]
async fn an_event_that_arrives_while_the_registering_step_runs_is_delivered() {
    let host = Host::new().await;
    let journey = host.deploy("welcome_series").await;
    let run = host.start(&journey, "ada", "{}").await;
    host.clock.advance(DAY);
    // The step that will register wait-for-event("purchased") is claimed...
    let (due, watermark) = host
        .runtime
        .store
        .due_runs(cairn_tests::T0 + DAY, 10, &[])
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    // ...the event lands before that step commits (no run is waiting for it yet)...
    let outcome = host
        .runtime
        .ingest_event("ada", "purchased", json!({"item": "hat"}), None, None)
        .await
        .unwrap();
    assert!(outcome.resumed.is_empty());
    // ...and the step commits with the watermark from when it began.
    let journey = host.runtime.journey(&run.version).await.unwrap();
    let env = cairn::durable::StepEnv {
        run_id: run.id,
        step: 1,
        user_id: "ada".into(),
        started_at: run.started_at,
        ceiling_at: run.ceiling_at,
        now: cairn_tests::T0 + DAY,
        seed: run.seed,
    };
    let outcome = cairn::engine::Session::run_step(
        &host.runtime.engine,
        &journey,
        env,
        due[0].snapshot.as_deref(),
        cairn::engine::StepCall::Resume(cairn::engine::step::Wake::TimerFired),
    )
    .unwrap();
    let cairn::engine::StepResult::Waiting(wait) = outcome.result else {
        panic!()
    };
    let commit = StepCommit {
        run_id: run.id,
        user_id: "ada".into(),
        expected_status: RunStatus::Waiting,
        expected_step: 1,
        end: StepEnd::Waiting {
            wait,
            snapshot: outcome.snapshot.unwrap(),
        },
        record: outcome.record,
        woken_by: "timer-fired".into(),
        event_id: None,
        at: cairn_tests::T0 + DAY,
        event_watermark: watermark,
        now: cairn_tests::T0 + DAY,
    };
    assert_eq!(
        host.runtime.store.commit_steps(&[commit]).await.unwrap(),
        vec![true]
    );
    host.drain().await;
    let done = host.run(run.id).await;
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.checkpoint.as_deref(), Some("converted"));
}
