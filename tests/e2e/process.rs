//! Restore in a new process: `cairn serve` stopped mid-journey and started
//! again on the same database file finishes the run.

use cairn_tests::{DAY, Server, component_path};
use serde_json::json;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn-under-test");

#[tokio::test]
async fn a_run_continues_in_a_new_process_from_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cairn.db");
    let cache = dir.path().join("cache");

    let first = Server::start(CAIRN, &db, &cache);
    let wasm = std::fs::read(component_path("welcome_series")).unwrap();
    let (status, deployed) = first.post_bytes("/v1/journeys", wasm).await;
    assert_eq!(
        (status, &deployed["journey_id"]),
        (201, &json!("welcome-series"))
    );
    let (_, run) = first
        .post(
            "/v1/journeys/welcome-series/runs",
            &json!({"user_id": "ada", "input": {"name": "Ada"}}),
        )
        .await;
    let run_path = format!("/v1/runs/{}", run["id"]);
    first
        .until(&run_path, |r| r["status"] == "waiting" && r["step"] == 1)
        .await;
    first.post("/v1/clock/advance", &json!({"ms": DAY})).await;
    first
        .until(&run_path, |r| r["checkpoint"] == "tips-sent")
        .await;
    first.kill();

    // A new process on the same file: only the snapshot in SQLite carries the heap.
    let second = Server::start(CAIRN, &db, &cache);
    second
        .post("/v1/clock/advance", &json!({"ms": 4 * DAY}))
        .await;
    let done = second
        .until(&run_path, |r| r["status"] == "completed")
        .await;
    assert!(
        done["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "completed")
    );
    let outbox = second
        .get(&format!("/v1/outbox?run_id={}", run["id"]))
        .await;
    let reminder = &outbox["messages"][2];
    assert_eq!(reminder["template"], "reminder");
    assert_eq!(
        reminder["props"]["tally"],
        json!({"reminded": 1, "tips-sent": 1, "welcomed": 1})
    );
    second.kill();
}
