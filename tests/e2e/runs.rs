//! Run lifecycle: events resume waits, terminal runs stay terminal, a
//! crashed step re-runs without a second outbox row, leases fence commits.

use cairn::engine::step::Wake;
use cairn::engine::{Session, StepCall, StepResult};
use cairn::store::{DEFAULT_TENANT, LEASE_MS, Lease};
use cairn::store::{RunStatus, StepCommit, StepEnd};
use cairn_tests::{DAY, Host, T0};
use serde_json::json;

#[tokio::test]
async fn an_event_resumes_the_waiting_run_and_later_events_change_nothing() {
    let host = Host::new().await;
    let journey = host.deploy("welcome_series").await;
    let run = host.start(&journey, "ada", r#"{"name":"Ada"}"#).await;
    host.advance(DAY).await;

    let outcome = host
        .event("ada", "purchased", json!({"item": "boots"}))
        .await;
    assert_eq!(outcome.resumed, vec![run.id]);
    host.drain().await;
    let done = host.run(run.id).await;
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.checkpoint.as_deref(), Some("converted"));
    let outbox = host.outbox(run.id).await;
    let templates: Vec<_> = outbox.iter().map(|m| m.template.as_str()).collect();
    assert_eq!(templates, ["welcome", "tips", "thank-you"]);
    assert_eq!(outbox[2].props["item"], "boots");

    // A completed run is never resurrected.
    let again = host.event("ada", "purchased", json!({})).await;
    assert!(again.resumed.is_empty());
    host.advance(10 * DAY).await;
    let still = host.run(run.id).await;
    assert_eq!(
        (still.status, still.step),
        (RunStatus::Completed, done.step)
    );
    assert_eq!(host.outbox(run.id).await.len(), 3);
}

#[tokio::test]
async fn an_event_for_another_user_or_name_does_not_wake_the_run() {
    let host = Host::new().await;
    let journey = host.deploy("welcome_series").await;
    let run = host.start(&journey, "ada", "{}").await;
    host.advance(DAY).await;
    for (user, name) in [("bob", "purchased"), ("ada", "viewed")] {
        let outcome = host.event(user, name, json!({})).await;
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
        .start_run(DEFAULT_TENANT, &journey, "ada", r#"{"name":"Ada"}"#)
        .await
        .unwrap();

    // This host claimed the step, ran it (and sent), and died before committing.
    let store = &host.runtime.store;
    let claimed = store
        .claim_due(
            &Lease::new("local", host.runtime.lease_now(), LEASE_MS),
            T0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    drop(claimed);
    // While the lease lives, nobody else runs the step...
    assert!(
        store
            .claim_due(
                &Lease::new("other", host.runtime.lease_now(), LEASE_MS),
                T0,
                10
            )
            .await
            .unwrap()
            .is_empty()
    );
    // ...and the restarted host takes its own claims back.
    assert_eq!(store.release_leases("local").await.unwrap(), 1);

    host.drain().await;
    let after = host.run(run.id).await;
    assert_eq!(after.status, RunStatus::Waiting);
    let outbox = host.outbox(run.id).await;
    assert_eq!(outbox.len(), 1, "the welcome email is queued exactly once");
    // Keyed by (run, step, call): the welcome email is call 1 of step 0, after the A/B draw.
    assert_eq!(outbox[0].key, format!("{}:0:1", run.id));

    // A stale commit of the same step (a second worker) is refused by the guard.
    let stale = StepCommit {
        run_id: run.id,
        tenant_id: DEFAULT_TENANT.into(),
        user_id: "ada".into(),
        expected_status: RunStatus::Active,
        expected_step: 0,
        end: StepEnd::Completed,
        record: Default::default(),
        woken_by: "started".into(),
        event_id: None,
        at: T0,
        event_watermark: 0,
        lease_owner: "local".into(),
        now: T0,
    };
    assert_eq!(
        store.commit_steps(&[stale]).await.unwrap().applied,
        vec![false]
    );
    assert_eq!(host.run(run.id).await.status, RunStatus::Waiting);
}

/// Runs one claimed step by hand, as the scheduler would, into its commit.
fn execute(
    host: &Host,
    due: &cairn::store::DueRun,
    owner: &str,
    wake: Wake,
    journey: &cairn::engine::LoadedJourney,
) -> StepCommit {
    let run = &due.run;
    let env = cairn::durable::StepEnv {
        run_id: run.id,
        step: run.step,
        user_id: run.user_id.clone(),
        started_at: run.started_at,
        ceiling_at: run.ceiling_at,
        now: run.due_at.unwrap(),
        seed: run.seed,
        gate: cairn::delivery::OpenGate::shared(),
        limits: Default::default(),
    };
    let call = StepCall::Resume(wake);
    let out = Session::run_step(
        &host.runtime.engine,
        journey,
        env,
        due.snapshot.as_deref(),
        call,
    )
    .unwrap();
    let StepResult::Waiting(wait) = out.result else {
        panic!("{:?}", out.result)
    };
    StepCommit {
        run_id: run.id,
        tenant_id: DEFAULT_TENANT.into(),
        user_id: run.user_id.clone(),
        expected_status: run.status,
        expected_step: run.step,
        end: StepEnd::Waiting {
            wait,
            snapshot: out.snapshot.unwrap(),
        },
        record: out.record,
        woken_by: "timer-fired".into(),
        event_id: None,
        at: run.due_at.unwrap(),
        event_watermark: due.watermark,
        lease_owner: owner.into(),
        now: run.due_at.unwrap(),
    }
}

#[tokio::test]
async fn an_event_that_arrives_while_the_registering_step_runs_is_delivered() {
    let host = Host::new().await;
    let journey = host.deploy("welcome_series").await;
    let run = host.start(&journey, "ada", "{}").await;
    host.clock.advance(DAY);
    let store = &host.runtime.store;
    // The step that will register wait-for-event("purchased") is claimed...
    let due = store
        .claim_due(
            &Lease::new("local", host.runtime.lease_now(), LEASE_MS),
            T0 + DAY,
            10,
        )
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    // ...the event lands before that step commits (no run is waiting for it yet)...
    let outcome = host.event("ada", "purchased", json!({"item": "hat"})).await;
    assert!(outcome.resumed.is_empty());
    // ...and the step commits with the watermark from its claim.
    let loaded = host
        .runtime
        .journey(&run.tenant_id, &run.version)
        .await
        .unwrap();
    let commit = execute(&host, &due[0], "local", Wake::TimerFired, &loaded);
    assert_eq!(
        store.commit_steps(&[commit]).await.unwrap().applied,
        vec![true]
    );
    host.drain().await;
    let done = host.run(run.id).await;
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.checkpoint.as_deref(), Some("converted"));
}

/// The same race across two hosts on one Postgres, many times at once:
/// host B commits steps that register `wait-for-event("purchased")` while
/// host A ingests each user's purchase. Neither transaction sees the other's
/// uncommitted write, so without the per-user lock both could miss: A finds
/// no waiting run, B's look-back finds no event. Every run must be resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_an_event_ingested_on_one_host_while_another_registers_the_wait_is_never_lost()
{
    const USERS: usize = 300;
    let url = cairn_tests::postgres::database().await;
    let a = Host::at(&url, tempfile::tempdir().unwrap()).await;
    let b = Host::at(&url, tempfile::tempdir().unwrap()).await;
    let journey = a.deploy("welcome_series").await;
    for i in 0..USERS {
        a.runtime
            .start_run(DEFAULT_TENANT, &journey, &format!("user-{i}"), "{}")
            .await
            .unwrap();
    }
    assert_eq!(a.drain().await, USERS);
    b.clock.advance(DAY);
    a.clock.advance(DAY);
    // Host B claims and executes every step that registers the wait...
    let due = b
        .runtime
        .store
        .claim_due(
            &Lease::new("host-b", b.runtime.lease_now(), LEASE_MS),
            T0 + DAY,
            USERS as u32,
        )
        .await
        .unwrap();
    assert_eq!(due.len(), USERS);
    let loaded = b
        .runtime
        .journey(DEFAULT_TENANT, &due[0].run.version)
        .await
        .unwrap();
    let commits: Vec<StepCommit> = due
        .iter()
        .map(|d| execute(&b, d, "host-b", Wake::TimerFired, &loaded))
        .collect();

    // ...and commits each one at the moment host A ingests that user's purchase.
    for commit in &commits {
        let (applied, _) = tokio::join!(
            b.runtime.store.commit_steps(std::slice::from_ref(commit)),
            a.event(&commit.user_id, "purchased", json!({"item": "hat"}))
        );
        assert_eq!(applied.unwrap().applied, [true]);
    }
    let lost: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM runs WHERE status = 'waiting' AND pending_wake IS NULL",
    )
    .fetch_one(a.runtime.store.pool())
    .await
    .unwrap();
    assert_eq!(
        lost, 0,
        "purchases lost between ingest and the wait's commit"
    );
}

/// A heartbeat renews only the leases its host still holds.
#[tokio::test]
async fn renewing_leases_extends_this_hosts_claims_and_never_takes_anothers() {
    let host = Host::new().await;
    let journey = host.deploy("welcome_series").await;
    let mine = host.start(&journey, "ada", "{}").await;
    let theirs = host.start(&journey, "bob", "{}").await;
    host.clock.advance(DAY);
    let store = &host.runtime.store;
    let now = host.runtime.lease_now();
    let claimed = store
        .claim_due(&Lease::new("host-a", now, 1_000), T0 + DAY, 1)
        .await
        .unwrap();
    assert_eq!(claimed[0].run.id, mine.id);
    let claimed = store
        .claim_due(&Lease::new("host-b", now, 1_000), T0 + DAY, 1)
        .await
        .unwrap();
    assert_eq!(claimed[0].run.id, theirs.id);
    let renewed = store
        .renew_leases("host-a", &[mine.id, theirs.id], now + 60_000)
        .await
        .unwrap();
    assert_eq!(renewed, 1);
    // Past the first lease, host-a still holds its run; host-b's is free.
    let later = Lease::new("host-c", now + 2_000, 1_000);
    let free = store.claim_due(&later, T0 + DAY, 10).await.unwrap();
    let ids: Vec<i64> = free.iter().map(|d| d.run.id).collect();
    assert_eq!(ids, [theirs.id]);
}

#[tokio::test]
async fn a_host_whose_lease_passed_to_another_cannot_commit() {
    lease_fencing(Host::new().await).await;
}

#[tokio::test]
async fn on_postgres_a_host_whose_lease_passed_to_another_cannot_commit() {
    lease_fencing(Host::on(cairn::store::Backend::Postgres).await).await;
}

async fn lease_fencing(host: Host) {
    let journey = host.deploy("welcome_series").await;
    let run = host.start(&journey, "ada", "{}").await;
    host.clock.advance(DAY);
    let store = &host.runtime.store;
    let lease_now = host.runtime.lease_now();
    let stalled = store
        .claim_due(&Lease::new("host-a", lease_now, LEASE_MS), T0 + DAY, 10)
        .await
        .unwrap();
    // host-a stalls past its lease; host-b claims the same step and commits it.
    let later = lease_now + LEASE_MS + 1;
    let taken = store
        .claim_due(&Lease::new("host-b", later, LEASE_MS), T0 + DAY, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    let loaded = host
        .runtime
        .journey(&run.tenant_id, &run.version)
        .await
        .unwrap();
    let late = execute(&host, &stalled[0], "host-a", Wake::TimerFired, &loaded);
    let fresh = execute(&host, &taken[0], "host-b", Wake::TimerFired, &loaded);
    // host-a wakes up and tries to commit first: fenced off by the lease.
    assert_eq!(
        store.commit_steps(&[late]).await.unwrap().applied,
        vec![false]
    );
    assert_eq!(
        store.commit_steps(&[fresh]).await.unwrap().applied,
        vec![true]
    );
    let outbox = host.outbox(run.id).await;
    assert_eq!(outbox.iter().filter(|m| m.template == "tips").count(), 1);
}
