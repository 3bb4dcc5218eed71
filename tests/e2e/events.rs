//! Event-driven journeys: triggers, entry rules, exit-on, idempotent ingest,
//! contacts and cancellation, in one process with a real SQLite file.

use cairn::ingest::{SkipReason, Skipped};
use cairn::store::{DEFAULT_TENANT, LEASE_MS, Lease, RunStatus};
use cairn_tests::{DAY, Host, NowMs, T0};
use serde_json::json;

const HOUR: u64 = 3_600_000;

fn skipped(journey: &str, reason: SkipReason) -> Vec<Skipped> {
    vec![Skipped {
        journey: journey.into(),
        reason,
    }]
}

#[tokio::test]
async fn a_trigger_enrolls_and_a_later_event_completes_the_run() {
    let host = Host::new().await;
    host.deploy("welcome_series").await;
    let signed_up = host.event("ada", "signed_up", json!({"name": "Ada"})).await;
    assert_eq!(signed_up.enrolled.len(), 1);
    let run = signed_up.enrolled[0];
    host.drain().await;
    assert_eq!(
        host.run(run).await.input,
        r#"{"name":"Ada"}"#,
        "the trigger's properties are the input"
    );
    host.advance(DAY).await;
    assert_eq!(
        host.event("ada", "purchased", json!({"item": "hat"}))
            .await
            .resumed,
        vec![run]
    );
    host.drain().await;
    assert_eq!(host.run(run).await.checkpoint.as_deref(), Some("converted"));

    // The same flow without the purchase times out into a reminder.
    let bob = host.event("bob", "signed_up", json!({})).await.enrolled[0];
    host.drain().await;
    host.advance(DAY).await;
    host.advance(3 * DAY).await;
    let bob = host.run(bob).await;
    assert_eq!(
        (bob.status, bob.checkpoint.as_deref()),
        (RunStatus::Completed, Some("reminded"))
    );
}

#[tokio::test]
async fn entry_limits_once_once_per_period_and_unlimited() {
    let host = Host::new().await;
    host.deploy("welcome_series").await; // once
    host.deploy("abandoned_cart").await; // once per 7 days, cart_value > 0
    host.deploy("trial_expiry").await; // unlimited

    // once: a second signup, even after the first run ended, enrolls nobody.
    let first = host.event("ada", "signed_up", json!({})).await;
    assert_eq!(first.enrolled.len(), 1);
    host.runtime
        .cancel_run(DEFAULT_TENANT, first.enrolled[0])
        .await
        .unwrap();
    let again = host.event("ada", "signed_up", json!({})).await;
    assert_eq!(
        again.skipped,
        skipped("welcome-series", SkipReason::EntryLimit)
    );

    // conditions: an empty cart does not enroll.
    let empty = host
        .event("ada", "cart_abandoned", json!({"cart_value": 0}))
        .await;
    assert_eq!(
        empty.skipped,
        skipped("abandoned-cart", SkipReason::ConditionsNotMet)
    );
    // once per period: a week apart enrolls again, three days apart does not.
    let cart = json!({"cart_value": 42});
    let run = host
        .event("ada", "cart_abandoned", cart.clone())
        .await
        .enrolled[0];
    host.drain().await;
    host.advance(2 * DAY).await;
    assert_eq!(host.run(run).await.status, RunStatus::Completed);
    host.clock.advance(DAY);
    let soon = host.event("ada", "cart_abandoned", cart.clone()).await;
    assert_eq!(
        soon.skipped,
        skipped("abandoned-cart", SkipReason::EntryLimit)
    );
    host.clock.advance(4 * DAY);
    assert_eq!(
        host.event("ada", "cart_abandoned", cart)
            .await
            .enrolled
            .len(),
        1
    );

    // unlimited: one live run at a time, a new one after it ends.
    let ends = json!({"trial_ends_at": T0 + 30 * DAY});
    let trial = host
        .event("ada", "trial_started", ends.clone())
        .await
        .enrolled[0];
    let twice = host.event("ada", "trial_started", ends.clone()).await;
    assert_eq!(
        twice.skipped,
        skipped("trial-expiry", SkipReason::AlreadyActive)
    );
    host.runtime
        .cancel_run(DEFAULT_TENANT, trial)
        .await
        .unwrap();
    assert_eq!(
        host.event("ada", "trial_started", ends)
            .await
            .enrolled
            .len(),
        1
    );

    // Every skip is recorded with its reason.
    let recorded = host
        .runtime
        .store
        .skipped_enrollments(DEFAULT_TENANT, "ada")
        .await
        .unwrap();
    let reasons: Vec<_> = recorded
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "already-active",
            "entry-limit",
            "conditions-not-met",
            "entry-limit"
        ]
    );
}

#[tokio::test]
async fn concurrent_duplicate_triggers_enroll_the_user_once() {
    let host = Host::new().await;
    host.deploy("trial_expiry").await;
    let ends = json!({"trial_ends_at": T0 + 30 * DAY});
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let runtime = host.runtime.clone();
            let ends = ends.clone();
            tokio::spawn(async move {
                let event = cairn::ingest::IncomingEvent {
                    user_id: "ada".into(),
                    name: "trial_started".into(),
                    properties: Some(ends),
                    timestamp: None,
                    idempotency_key: None,
                };
                runtime
                    .ingest_events(DEFAULT_TENANT, vec![event])
                    .await
                    .unwrap()
                    .remove(0)
            })
        })
        .collect();
    let mut enrolled = 0;
    for task in tasks {
        let outcome = task.await.unwrap();
        enrolled += outcome.enrolled.len();
        if outcome.enrolled.is_empty() {
            assert_eq!(
                outcome.skipped,
                skipped("trial-expiry", SkipReason::AlreadyActive)
            );
        }
    }
    assert_eq!(enrolled, 1);
}

#[tokio::test]
async fn a_disabled_journey_enrolls_nobody_until_enabled() {
    let host = Host::new().await;
    host.deploy("welcome_series").await;
    host.runtime
        .set_enabled(DEFAULT_TENANT, "welcome-series", false)
        .await
        .unwrap();
    let off = host.event("ada", "signed_up", json!({})).await;
    assert_eq!(off.skipped, skipped("welcome-series", SkipReason::Disabled));
    host.runtime
        .set_enabled(DEFAULT_TENANT, "welcome-series", true)
        .await
        .unwrap();
    assert_eq!(
        host.event("ada", "signed_up", json!({}))
            .await
            .enrolled
            .len(),
        1
    );
}

#[tokio::test]
async fn exit_on_ends_a_sleeping_run_and_a_waiting_run_at_once() {
    let host = Host::new().await;
    host.deploy("abandoned_cart").await;
    host.deploy("welcome_series").await;
    let cart = host
        .event("ada", "cart_abandoned", json!({"cart_value": 10}))
        .await
        .enrolled[0];
    let welcome = host.event("ada", "signed_up", json!({})).await.enrolled[0];
    host.drain().await;
    host.advance(DAY).await; // cart: reminded, sleeping a day; welcome: waiting for purchased

    let placed = host.event("ada", "order_placed", json!({})).await;
    assert_eq!(placed.exited, vec![cart]);
    let unsubscribed = host.event("ada", "unsubscribed", json!({})).await;
    assert_eq!(unsubscribed.exited, vec![welcome]);
    for (id, reason) in [
        (cart, "exit-on:order_placed"),
        (welcome, "exit-on:unsubscribed"),
    ] {
        let run = host.run(id).await;
        assert_eq!(run.status, RunStatus::Exited);
        assert_eq!(run.exit_reason.as_deref(), Some(reason));
        assert_eq!(run.due_at, None, "the wait is cancelled");
    }
    let sends_before = host
        .runtime
        .store
        .outbox(DEFAULT_TENANT, &Default::default())
        .await
        .unwrap()
        .len();
    host.advance(5 * DAY).await;
    assert_eq!(
        host.runtime
            .store
            .outbox(DEFAULT_TENANT, &Default::default())
            .await
            .unwrap()
            .len(),
        sends_before
    );
    // A purchase after the exit resumes nothing: exited is terminal.
    assert!(
        host.event("ada", "purchased", json!({}))
            .await
            .resumed
            .is_empty()
    );
    let timeline = host.runtime.store.timeline(welcome).await.unwrap();
    assert_eq!(timeline.last().unwrap().kind, "exited");
}

#[tokio::test]
async fn an_exit_that_races_a_running_step_discards_the_step_and_its_sends() {
    let host = Host::new().await;
    host.deploy("abandoned_cart").await;
    let run = host
        .event("ada", "cart_abandoned", json!({"cart_value": 10}))
        .await
        .enrolled[0];
    host.drain().await;
    host.clock.advance(HOUR);
    // The step that would send the reminder is claimed and executing...
    let scheduler = host.scheduler.clone();
    let now = host.clock.now_ms();
    let claim = host
        .runtime
        .store
        .claim_due(
            &Lease::new("racer", host.runtime.lease_now(), LEASE_MS),
            now,
            10,
        )
        .await
        .unwrap();
    assert_eq!(claim.len(), 1);
    // ...when the order lands.
    assert_eq!(
        host.event("ada", "order_placed", json!({})).await.exited,
        vec![run]
    );
    // The exit dropped the lease; nothing is due any more, and a commit of
    // the raced step is refused by the guard.
    assert_eq!(scheduler.drain(now).await.unwrap(), 0);
    let commit = cairn::store::StepCommit {
        run_id: run,
        tenant_id: DEFAULT_TENANT.into(),
        user_id: "ada".into(),
        expected_status: RunStatus::Waiting,
        expected_step: 1,
        end: cairn::store::StepEnd::Completed,
        record: Default::default(),
        woken_by: "timer-fired".into(),
        event_id: None,
        at: now,
        event_watermark: claim[0].watermark,
        lease_owner: "racer".into(),
        now,
    };
    assert_eq!(
        host.runtime
            .store
            .commit_steps(&[commit])
            .await
            .unwrap()
            .applied,
        vec![false]
    );
    let after = host.run(run).await;
    assert_eq!(after.status, RunStatus::Exited);
    assert!(host.outbox(run).await.is_empty());
}

#[tokio::test]
async fn the_same_idempotency_key_changes_state_once() {
    let host = Host::new().await;
    host.deploy("welcome_series").await;
    let first = host
        .event_with_key("ada", "signed_up", json!({}), Some("k1"))
        .await;
    let second = host
        .event_with_key("ada", "signed_up", json!({}), Some("k1"))
        .await;
    assert!(first.stored && !second.stored);
    assert_eq!(
        (second.event_id, &second.enrolled),
        (first.event_id, &first.enrolled)
    );

    // Concurrently: one event stored, one run.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let runtime = host.runtime.clone();
            tokio::spawn(async move {
                let event = cairn::ingest::IncomingEvent {
                    user_id: "bob".into(),
                    name: "signed_up".into(),
                    properties: None,
                    timestamp: None,
                    idempotency_key: Some("k2".into()),
                };
                runtime
                    .ingest_events(DEFAULT_TENANT, vec![event])
                    .await
                    .unwrap()
                    .remove(0)
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        stored += usize::from(task.await.unwrap().stored);
    }
    assert_eq!(stored, 1);
    let filter = cairn::store::RunFilter {
        user_id: Some("bob".into()),
        ..Default::default()
    };
    assert_eq!(
        host.runtime
            .store
            .runs(DEFAULT_TENANT, &filter)
            .await
            .unwrap()
            .len(),
        1
    );
    let events: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE idempotency_key = 'k2'")
            .fetch_one(host.runtime.store.pool())
            .await
            .unwrap();
    assert_eq!(events, 1);
}

#[tokio::test]
async fn deleting_a_user_exits_their_runs_and_refuses_new_ones() {
    let host = Host::new().await;
    host.deploy("welcome_series").await;
    let identify = |props: serde_json::Value| cairn::ingest::Identify {
        user_id: "ada".into(),
        email: Some("ada@example.com".into()),
        timezone: Some("Europe/Berlin".into()),
        properties: Some(props),
    };
    host.runtime
        .identify(DEFAULT_TENANT, identify(json!({"plan": "pro", "seats": 3})))
        .await
        .unwrap();
    let merged = host
        .runtime
        .identify(DEFAULT_TENANT, identify(json!({"seats": 5, "plan": null})))
        .await
        .unwrap();
    assert_eq!(merged["properties"], json!({"seats": 5}));

    let run = host.event("ada", "signed_up", json!({})).await.enrolled[0];
    host.drain().await;
    assert_eq!(
        host.runtime
            .delete_user(DEFAULT_TENANT, "ada")
            .await
            .unwrap(),
        vec![run]
    );
    let run = host.run(run).await;
    assert_eq!(
        (run.status, run.exit_reason.as_deref()),
        (RunStatus::Exited, Some("user-deleted"))
    );
    let after = host.event("ada", "signed_up", json!({})).await;
    assert_eq!(
        after.skipped,
        skipped("welcome-series", SkipReason::UserDeleted)
    );
    let err = host
        .runtime
        .identify(DEFAULT_TENANT, identify(json!({})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("was deleted"), "{err}");
    let email: Option<String> =
        sqlx::query_scalar("SELECT email FROM contacts WHERE user_id = 'ada'")
            .fetch_one(host.runtime.store.pool())
            .await
            .unwrap();
    assert_eq!(email, None, "personal data is erased");
}

#[tokio::test]
async fn cancelling_a_run_exits_it_and_a_second_cancel_says_why_not() {
    let host = Host::new().await;
    let journey = host.deploy("welcome_series").await;
    let run = host.start(&journey, "ada", "{}").await;
    let cancelled = host
        .runtime
        .cancel_run(DEFAULT_TENANT, run.id)
        .await
        .unwrap();
    assert_eq!(
        (cancelled.status, cancelled.exit_reason.as_deref()),
        (RunStatus::Exited, Some("cancelled"))
    );
    let err = host
        .runtime
        .cancel_run(DEFAULT_TENANT, run.id)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already ended (exited)"), "{err}");
    let err = host
        .runtime
        .cancel_run(DEFAULT_TENANT, 9999)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no run 9999"), "{err}");
}
