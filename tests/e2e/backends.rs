//! The store suite on both backends: the same scenarios, through the real
//! engine and runtime, on a SQLite file and on a Postgres database (a
//! throwaway cluster the tests start on loopback).

use cairn::delivery::DeliveryWorker;
use cairn::ingest::Identify;
use cairn::store::{Backend, DEFAULT_TENANT, Feedback, LEASE_MS, Lease, OutboxFilter, RunStatus};
use cairn_tests::{DAY, Host, NowMs, T0, component};
use serde_json::json;

/// Runs a scenario on both backends, as two tests.
macro_rules! on_both {
    ($scenario:ident) => {
        mod $scenario {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                super::$scenario(Host::on(Backend::Sqlite).await).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$scenario(Host::on(Backend::Postgres).await).await;
            }
        }
    };
}

/// Sign-up, a day's sleep, an event wait resolved by a purchase: steps,
/// snapshots, look-back, the outbox and the timeline.
async fn a_journey_runs_to_the_end(host: Host) {
    let journey = host.deploy("welcome_series").await;
    let run = host.start(&journey, "ada", r#"{"name":"Ada"}"#).await;
    assert_eq!(run.status, RunStatus::Waiting, "{:?}", run.failure);
    host.advance(DAY).await;
    let outcome = host
        .event("ada", "purchased", json!({"item": "boots"}))
        .await;
    assert_eq!(outcome.resumed, vec![run.id]);
    host.drain().await;
    let done = host.run(run.id).await;
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.failure);
    let templates: Vec<String> = host
        .outbox(run.id)
        .await
        .into_iter()
        .map(|m| m.template)
        .collect();
    assert_eq!(templates, ["welcome", "tips", "thank-you"]);
    let timeline = host.runtime.store.timeline(run.id).await.unwrap();
    assert!(
        timeline.iter().any(|e| e.kind == "completed"),
        "{timeline:?}"
    );
    // A repeated event changes nothing.
    let again = host.event("ada", "purchased", json!({})).await;
    assert!(again.resumed.is_empty());
}
on_both!(a_journey_runs_to_the_end);

/// Triggers, exit rules, idempotency keys, contacts (merge patch) and deletion.
async fn events_and_contacts(host: Host) {
    host.deploy("welcome_series").await;
    let signed_up = host
        .event_with_key("bo", "signed_up", json!({"name": "Bo"}), Some("k-1"))
        .await;
    assert_eq!(signed_up.enrolled.len(), 1);
    let repeated = host
        .event_with_key("bo", "signed_up", json!({"name": "Bo"}), Some("k-1"))
        .await;
    assert_eq!(
        (repeated.stored, repeated.enrolled.clone()),
        (false, signed_up.enrolled.clone())
    );
    let contact = |properties: serde_json::Value| Identify {
        user_id: "bo".into(),
        email: Some("bo@example.com".into()),
        timezone: None,
        properties: Some(properties),
    };
    host.runtime
        .identify(
            DEFAULT_TENANT,
            contact(json!({"plan": {"tier": "pro", "seats": 3}})),
        )
        .await
        .unwrap();
    let merged = host
        .runtime
        .identify(
            DEFAULT_TENANT,
            contact(json!({"plan": {"seats": null}, "vip": true})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged["properties"],
        json!({"plan": {"tier": "pro"}, "vip": true})
    );
    let exited = host.event("bo", "unsubscribed", json!({})).await;
    assert_eq!(exited.exited, signed_up.enrolled);
    let runs = host.runs_of("bo").await;
    assert_eq!(runs[0].status, RunStatus::Exited);
    host.runtime
        .store
        .delete_contact(DEFAULT_TENANT, "bo", T0)
        .await
        .unwrap();
    assert!(
        host.runtime
            .start_run(DEFAULT_TENANT, "welcome-series", "bo", "{}")
            .await
            .is_err()
    );
}
on_both!(events_and_contacts);

/// Versions, tenants and keys.
async fn versions_and_tenants(host: Host) {
    let store = &host.runtime.store;
    let v1 = host
        .runtime
        .deploy(DEFAULT_TENANT, component("greeter_v1"))
        .await
        .unwrap();
    let waiting = host.start("greeter", "ada", "{}").await;
    let v2 = host
        .runtime
        .deploy(DEFAULT_TENANT, component("greeter_v2"))
        .await
        .unwrap();
    let versions = store.versions(DEFAULT_TENANT, "greeter").await.unwrap();
    assert_eq!(versions[0].version, v2.version);
    assert!(versions[0].active && !versions[1].active);
    assert!(
        store
            .retire(DEFAULT_TENANT, "greeter", &v1.version, T0)
            .await
            .is_err(),
        "a run is on it"
    );
    host.advance(DAY).await;
    assert_eq!(host.run(waiting.id).await.status, RunStatus::Completed);
    store
        .retire(DEFAULT_TENANT, "greeter", &v1.version, T0)
        .await
        .unwrap();

    store
        .upsert_tenant("acme", "Acme", r#"{"max_step_cpu_ms": 500}"#, T0)
        .await
        .unwrap();
    let key = store.create_api_key("acme", "ci", T0).await.unwrap();
    assert_eq!(
        store.tenant_for_key(&key).await.unwrap().as_deref(),
        Some("acme")
    );
    assert!(store.api_keys_exist().await.unwrap());
    assert_eq!(store.revoke_api_keys("acme", "ci", T0).await.unwrap(), 1);
    assert_eq!(store.tenant_for_key(&key).await.unwrap(), None);
    assert_eq!(
        store
            .tenant_limits("acme")
            .await
            .unwrap()
            .unwrap()
            .max_step_cpu_ms,
        500
    );
}
on_both!(versions_and_tenants);

/// The send policy's read, delivery, dead letters, feedback and the backlog.
async fn delivery(host: Host) {
    host.deploy("courier").await;
    host.set_delivery(json!({"frequency_cap": {"count": 1, "window_ms": DAY}}))
        .await;
    let store = &host.runtime.store;
    store
        .set_preferences(DEFAULT_TENANT, "gone@example.com", Some(false), &[], T0)
        .await
        .unwrap();
    store
        .record_feedback(
            DEFAULT_TENANT,
            "angry@example.com",
            Feedback::Complaint,
            1,
            T0,
        )
        .await
        .unwrap();
    let sends = json!({"sends": [
        {"template": "welcome", "props": {"name": "A"}},
        {"template": "welcome", "props": {"name": "A"}},
    ]})
    .to_string();
    for user in ["ok@example.com", "gone@example.com", "angry@example.com"] {
        host.start("courier", user, &sends).await;
    }
    let report = |user: &'static str| {
        let host = &host;
        async move { host.runs_of(user).await[0].checkpoint.clone().unwrap() }
    };
    assert_eq!(
        report("ok@example.com").await,
        r#"["queued","frequency-capped"]"#
    );
    assert_eq!(
        report("gone@example.com").await,
        r#"["unsubscribed","unsubscribed"]"#
    );
    assert_eq!(
        report("angry@example.com").await,
        r#"["suppressed","suppressed"]"#
    );

    let worker = DeliveryWorker::new(host.runtime.clone(), "http://cairn.test");
    assert_eq!(worker.drain().await.unwrap(), 1);
    let sent = store
        .outbox(
            DEFAULT_TENANT,
            &OutboxFilter {
                status: Some("sent".into()),
                ..OutboxFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((sent.len(), sent[0].provider.as_deref()), (1, Some("log")));
    let backlog = store
        .backlog(host.clock.now_ms(), host.runtime.lease_now())
        .await
        .unwrap();
    assert_eq!(
        (backlog.outbox_due, backlog.outbox_dead, backlog.runs_due),
        (0, 0, 0)
    );
    let secret = store.host_secret("unsubscribe-links").await.unwrap();
    assert_eq!(
        secret,
        store.host_secret("unsubscribe-links").await.unwrap()
    );
}
on_both!(delivery);

/// `cairn serve --db postgres://...`: deploy, run, advance, deliver, health.
#[tokio::test]
async fn serve_runs_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let url = cairn_tests::postgres::database().await;
    let cairn = env!("CARGO_BIN_EXE_cairn-under-test");
    // A shared database is migrated once, explicitly: serve refuses it before.
    let refused = std::process::Command::new(cairn)
        .args(["serve", "--db", &url, "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("run `cairn migrate --db URL` first"),
        "{stderr}"
    );
    cairn_tests::migrate(cairn, &url);
    let server = cairn_tests::Server::start_on(
        env!("CARGO_BIN_EXE_cairn-under-test"),
        &url,
        dir.path(),
        &[],
    );
    let (status, _) = server
        .post_bytes("/v1/journeys", component("welcome_series"))
        .await;
    assert_eq!(status, 201);
    let (status, run) = server
        .post(
            "/v1/journeys/welcome-series/runs",
            &json!({"user_id": "ada@example.com", "input": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let path = format!("/v1/runs/{}", run["id"]);
    server.until(&path, |r| r["status"] == "waiting").await;
    server
        .post("/v1/clock/advance", &json!({"ms": 4 * DAY}))
        .await;
    server.until(&path, |r| r["status"] == "completed").await;
    let outbox = server
        .until(&format!("/v1/outbox?run_id={}", run["id"]), |o| {
            o["messages"]
                .as_array()
                .is_some_and(|m| m.len() == 3 && m.iter().all(|m| m["status"] == "sent"))
        })
        .await;
    assert_eq!(outbox["messages"][2]["template"], "reminder");
    let health = server.get("/v1/health").await;
    assert_eq!(health["database"]["reachable"], true, "{health}");
}

/// `cairn export` from SQLite, `cairn import` into Postgres: the runs that
/// were waiting finish there, on the version they started on.
#[tokio::test]
async fn a_sqlite_deployment_moves_to_postgres_and_its_waiting_runs_finish_there() {
    let sqlite = Host::on(Backend::Sqlite).await;
    let journey = sqlite.deploy("welcome_series").await;
    let mut waiting = Vec::new();
    for user in ["ada", "bo", "cy"] {
        waiting.push(sqlite.start(&journey, user, r#"{"name":"Pat"}"#).await);
    }
    sqlite.advance(DAY).await; // all three now wait for a purchase
    let mut export = Vec::new();
    let rows = sqlite.runtime.store.export(&mut export).await.unwrap();
    assert!(rows > 10, "{rows} rows");

    let url = cairn_tests::postgres::database().await;
    let target = cairn::store::Store::open(&url).await.unwrap();
    assert_eq!(target.import(&export[..]).await.unwrap(), rows);
    let refused = target.import(&export[..]).await.unwrap_err();
    assert!(
        refused.to_string().contains("already has journeys"),
        "{refused}"
    );
    drop(target);

    let postgres = Host::at(&url, tempfile::tempdir().unwrap()).await;
    postgres.clock.advance_to(sqlite.clock.now_ms());
    let outcome = postgres
        .event("ada", "purchased", json!({"item": "boots"}))
        .await;
    assert_eq!(outcome.resumed, vec![waiting[0].id]);
    postgres.advance(4 * DAY).await;
    for run in &waiting {
        let done = postgres.run(run.id).await;
        assert_eq!(
            (done.status, &done.version),
            (RunStatus::Completed, &run.version),
            "{:?}",
            done.failure
        );
        assert_eq!(postgres.outbox(run.id).await.len(), 3);
    }
    // New rows continue after the imported ids.
    let fresh = postgres.start(&journey, "dee", "{}").await;
    assert!(fresh.id > waiting[2].id);
}

/// Two hosts claiming from one Postgres at the same moment never take the
/// same run (FOR UPDATE SKIP LOCKED), and between them take every due run.
#[tokio::test]
async fn two_hosts_claiming_at_once_never_take_the_same_run() {
    let url = cairn_tests::postgres::database().await;
    let host = Host::at(&url, tempfile::tempdir().unwrap()).await;
    let journey = host.deploy("welcome_series").await;
    for i in 0..200 {
        host.runtime
            .start_run(DEFAULT_TENANT, &journey, &format!("user-{i}"), "{}")
            .await
            .unwrap();
    }
    // Each "host" has its own store (its own pool and in-process lock).
    let a = cairn::store::Store::open(&url).await.unwrap();
    let b = cairn::store::Store::open(&url).await.unwrap();
    let now = host.clock.now_ms();
    let lease_now = host.runtime.lease_now();
    let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
    let (lease_a, lease_b) = (
        Lease::new("host-a", lease_now, LEASE_MS),
        Lease::new("host-b", lease_now, LEASE_MS),
    );
    for _ in 0..4 {
        let (x, y) = tokio::join!(
            a.claim_due(&lease_a, now, 30),
            b.claim_due(&lease_b, now, 30)
        );
        from_a.extend(x.unwrap().into_iter().map(|d| d.run.id));
        from_b.extend(y.unwrap().into_iter().map(|d| d.run.id));
    }
    let mut all: Vec<i64> = from_a.iter().chain(&from_b).copied().collect();
    all.sort();
    let claimed = all.len();
    all.dedup();
    assert_eq!(all.len(), claimed, "a run was claimed twice");
    assert_eq!(claimed, 200, "every due run was claimed");
    assert!(!from_a.is_empty() && !from_b.is_empty());
}

/// SIGTERM hands back the leases a host holds: the run whose step it was
/// executing is free for another host at once, not after `--lease-ms`.
#[tokio::test]
async fn a_host_stopped_with_sigterm_hands_its_leases_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = cairn_tests::postgres::database().await;
    let cairn = env!("CARGO_BIN_EXE_cairn-under-test");
    cairn_tests::migrate(cairn, &url);
    // A lease far longer than the test: only a hand-back frees the run.
    let server = cairn_tests::Server::start_on(
        cairn,
        &url,
        dir.path(),
        &["--host-id", "leaving", "--lease-ms", "600000"],
    );
    let (status, _) = server
        .post_bytes("/v1/journeys", component("hostile"))
        .await;
    assert_eq!(status, 201);
    // An hour in, a step that spins until the CPU limit stops it (a second).
    let (status, run) = server
        .post(
            "/v1/journeys/hostile/runs",
            &json!({"user_id": "mallory", "input": {"attack": "loop"}}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let path = format!("/v1/runs/{}", run["id"]);
    server.until(&path, |r| r["status"] == "waiting").await;
    server
        .post("/v1/clock/advance", &json!({"ms": 2 * 3_600_000}))
        .await;
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let leased = || async {
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT status, lease_owner FROM runs WHERE id = $1",
        )
        .bind(run["id"].as_i64().unwrap())
        .fetch_one(&db)
        .await
        .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while leased().await.1.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the step was never claimed: {:?}",
            leased().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(server.terminate().success());
    // The step was abandoned, not committed, and nobody holds the run.
    assert_eq!(leased().await, ("waiting".to_string(), None));
    let step: i64 = sqlx::query_scalar("SELECT step FROM runs WHERE id = $1")
        .bind(run["id"].as_i64().unwrap())
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(step, 1, "the spinning step was not committed");
}
