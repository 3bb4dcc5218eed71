//! The same journey in Rust, JavaScript, Python and C: built from source by
//! `cairn build`'s toolchains, run through one scenario on a real SQLite
//! store (a fresh instance restored from the database at every step), they
//! produce the same timeline and the same outbox. Typed errors reach
//! JavaScript and Python code as exceptions it can catch; JavaScript and
//! Python runs continue in a second process from their snapshots.

use cairn::store::{DEFAULT_TENANT, RunStatus};
use cairn_tests::{DAY, Host, Server, artifact_cache, component};
use serde_json::{Value, json};

const LANGUAGES: [&str; 4] = [
    "welcome_series",
    "welcome_series_js",
    "welcome_series_py",
    "welcome_series_c",
];

/// What a run did, without what differs by construction (run ids, versions).
async fn observed(host: &Host, run: i64) -> (Vec<Value>, Vec<Value>) {
    let store = &host.runtime.store;
    let timeline = store
        .timeline(run)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind != "entered")
        .map(|e| {
            let mut detail = e.detail;
            for volatile in ["key", "snapshot_bytes", "event_id"] {
                if let Some(object) = detail.as_object_mut() {
                    object.remove(volatile);
                }
            }
            json!({ "step": e.step, "at": e.at, "kind": e.kind, "detail": detail })
        })
        .collect();
    let outbox = host
        .outbox(run)
        .await
        .into_iter()
        .map(|m| json!([m.step, m.template, m.props, m.category]))
        .collect();
    (timeline, outbox)
}

#[tokio::test]
async fn the_welcome_series_behaves_the_same_in_rust_javascript_python_and_c() {
    let host = Host::new().await;
    let mut runs = Vec::new();
    for language in LANGUAGES {
        host.runtime
            .deploy(DEFAULT_TENANT, component(language))
            .await
            .unwrap();
        // Each run pins the version that was active when it started.
        for branch in ["buys", "waits"] {
            let user = format!("{language}-{branch}");
            let run = host
                .runtime
                .start_run(DEFAULT_TENANT, "welcome-series", &user, r#"{"name":"Ada"}"#)
                .await
                .unwrap();
            // One seed for all: the A/B variant is drawn from it.
            sqlx::query("UPDATE runs SET seed = 7 WHERE id = ?")
                .bind(run.id)
                .execute(host.runtime.store.pool())
                .await
                .unwrap();
            runs.push((language, branch, user, run.id));
        }
    }
    host.drain().await;
    host.advance(DAY).await;
    host.advance(DAY).await;
    for (_, branch, user, _) in &runs {
        if *branch == "buys" {
            host.event(user, "purchased", json!({"item": "boots"}))
                .await;
        }
    }
    host.drain().await;
    host.advance(3 * DAY).await;

    let mut reference = std::collections::HashMap::new();
    for (language, branch, _, run) in &runs {
        let row = host.run(*run).await;
        assert_eq!(
            row.status,
            RunStatus::Completed,
            "{language} {branch}: {:?}",
            row.failure
        );
        let seen = observed(&host, *run).await;
        assert_eq!(seen.1.len(), 3, "{language} {branch}: {:?}", seen.1);
        match reference.get(branch) {
            None => {
                reference.insert(*branch, seen);
            }
            Some(expected) => {
                assert_eq!(&seen.0, &expected.0, "{language} {branch}: timeline");
                assert_eq!(&seen.1, &expected.1, "{language} {branch}: outbox");
            }
        }
    }
    let (_, outbox) = &reference["buys"];
    let thanks = &outbox[2][2];
    assert_eq!(thanks["item"], "boots");
    assert_eq!(thanks["history"].as_array().unwrap().len(), 3, "{thanks}");
    assert_eq!(
        thanks["tally"],
        json!({"converted": 1, "tips-sent": 1, "welcomed": 1})
    );
}

#[tokio::test]
async fn typed_errors_reach_javascript_and_python_as_exceptions_they_catch() {
    let host = Host::new().await;
    for probe in ["probe_js", "probe_py"] {
        let journey = host.deploy(probe).await;
        let run = host.start(&journey, "ada", "{}").await;
        assert_eq!(run.status, RunStatus::Waiting, "{probe}: {:?}", run.failure);
        assert_eq!(run.checkpoint.as_deref(), Some("ceiling-refused"));
        // It waits until the ceiling it caught instead of the 60 days it asked for.
        let wait = run.wait.clone().unwrap();
        assert_eq!(wait.deadline, run.ceiling_at, "{probe}");
        host.advance(30 * DAY).await;
        let run = host.run(run.id).await;
        assert_eq!(
            run.status,
            RunStatus::Completed,
            "{probe}: {:?}",
            run.failure
        );
        let outbox = host.outbox(run.id).await;
        let props = &outbox[0].props;
        assert_eq!(props["kind"], "exceeds-ceiling", "{probe}: {props}");
        assert_eq!(props["limit"], run.ceiling_at.to_string());
        assert_eq!(props["requested"], (run.started_at + 60 * DAY).to_string());
        assert!(
            props["message"]
                .as_str()
                .unwrap()
                .contains("execution ceiling")
        );
        // Local time comes from the host through each SDK.
        let ten = chrono::NaiveTime::from_hms_opt(10, 0, 0).unwrap();
        let berlin = cairn::delivery::localtime::zone("Europe/Berlin").unwrap();
        let monday_ten = cairn::delivery::localtime::next_local_time(
            run.ceiling_at,
            berlin,
            ten,
            &[chrono::Weekday::Mon],
        );
        assert_eq!(props["mondayTen"], monday_ten.to_string(), "{probe}");
        assert!(
            props["badLocal"]
                .as_str()
                .unwrap()
                .contains("25:00 is not a time of day"),
            "{probe}: {props}"
        );
        // Its heap held across both waits.
        assert_eq!(props["notes"]["started"], run.started_at.to_string());
        assert_eq!(
            props["seen"],
            json!([
                "refused:exceeds-ceiling",
                format!("woke:{}", run.ceiling_at)
            ])
        );
    }
}

#[tokio::test]
async fn a_zig_journey_on_the_c_sdk_keeps_its_globals_across_a_wait() {
    let host = Host::new().await;
    let journey = host.deploy("greeter_zig").await;
    let run = host.start(&journey, "ada", "{}").await;
    assert_eq!(run.status, RunStatus::Waiting, "{:?}", run.failure);
    host.advance(DAY).await;
    let run = host.run(run.id).await;
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.failure);
    assert_eq!(run.checkpoint.as_deref(), Some("greeted-twice"));
}

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn-under-test");

#[tokio::test]
async fn javascript_and_python_runs_continue_in_a_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cairn.db");
    let server = Server::start(CAIRN, &db, &artifact_cache());
    let mut users = Vec::new();
    for language in ["welcome_series_js", "welcome_series_py"] {
        let (status, body) = server.post_bytes("/v1/journeys", component(language)).await;
        assert_eq!(status, 201, "{body}");
        let user = format!("ada-{language}");
        let (status, run) = server
            .post(
                "/v1/journeys/welcome-series/runs",
                &json!({"user_id": user, "input": {"name": "Ada"}}),
            )
            .await;
        assert_eq!(status, 201, "{run}");
        users.push((user, run["id"].as_i64().unwrap()));
    }
    server.post("/v1/clock/advance", &json!({"ms": DAY})).await;
    for (_, run) in &users {
        server
            .until(&format!("/v1/runs/{run}"), |r| {
                r["checkpoint"] == "tips-sent"
            })
            .await;
    }
    server.kill();

    let server = Server::start(CAIRN, &db, &artifact_cache());
    for (user, run) in &users {
        let event = json!({"user_id": user, "name": "purchased", "properties": {"item": "boots"}});
        let (status, outcome) = server.post("/v1/events", &event).await;
        assert_eq!(
            (status, &outcome["resumed"]),
            (202, &json!([run])),
            "{outcome}"
        );
        let done = server
            .until(&format!("/v1/runs/{run}"), |r| r["status"] == "completed")
            .await;
        assert_eq!(done["checkpoint"], "converted");
        let outbox = server.get(&format!("/v1/outbox?run_id={run}")).await;
        let thanks = &outbox["messages"][2]["props"];
        assert_eq!(thanks["history"].as_array().unwrap().len(), 3, "{thanks}");
        assert_eq!(thanks["item"], "boots");
    }
}
