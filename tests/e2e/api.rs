//! The HTTP API on a real `cairn serve`: bad input gets a 4xx naming the
//! problem and stores nothing; the ingestion shapes and the run lifecycle.

use cairn_tests::{Server, component_path};
use serde_json::{Value, json};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn-under-test");

async fn server_with_welcome() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        CAIRN,
        &dir.path().join("cairn.db"),
        &dir.path().join("cache"),
    );
    let wasm = std::fs::read(component_path("welcome_series")).unwrap();
    assert_eq!(server.post_bytes("/v1/journeys", wasm).await.0, 201);
    (server, dir)
}

async fn event_count(server: &Server) -> usize {
    let runs = server.get("/v1/runs?limit=1000").await;
    runs["runs"].as_array().unwrap().len()
}

#[tokio::test]
async fn bad_requests_get_a_clear_4xx_and_store_nothing() {
    let (server, _dir) = server_with_welcome().await;
    let json_type = "application/json";
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "/v1/events",
            json_type,
            b"{not json".to_vec(),
            400,
            "Failed to parse the request body as JSON",
        ),
        (
            "/v1/events",
            json_type,
            br#"{"name":"signed_up"}"#.to_vec(),
            422,
            "user_id",
        ),
        (
            "/v1/events",
            json_type,
            br#"{"user_id":"","name":"signed_up"}"#.to_vec(),
            422,
            "user_id must not be empty",
        ),
        (
            "/v1/events",
            json_type,
            br#"{"user_id":"a","name":"x","properties":[1]}"#.to_vec(),
            422,
            "JSON object",
        ),
        (
            "/v1/events",
            json_type,
            br#"{"batch":[]}"#.to_vec(),
            422,
            "batch is empty",
        ),
        (
            "/v1/events",
            json_type,
            br#"{"batch":[{"user_id":"a","name":"signed_up"},{"user_id":"b","name":""}]}"#.to_vec(),
            422,
            "event 1: name must not be empty",
        ),
        (
            "/v1/events",
            json_type,
            b"{\"user_id\":\"\xff\xfe\",\"name\":\"x\"}".to_vec(),
            400,
            "invalid unicode",
        ),
        (
            "/v1/events",
            "text/plain",
            br#"{"user_id":"a","name":"x"}"#.to_vec(),
            415,
            "application/json",
        ),
        (
            "/v1/journeys/nope/runs",
            json_type,
            br#"{"user_id":"a"}"#.to_vec(),
            404,
            "unknown journey",
        ),
        (
            "/v1/journeys/welcome-series/runs",
            json_type,
            br#"{"user":"a"}"#.to_vec(),
            422,
            "unknown field",
        ),
        (
            "/v1/users",
            json_type,
            br#"{"user_id":"a","email":"no-at-sign"}"#.to_vec(),
            422,
            "not an address",
        ),
        (
            "/v1/journeys",
            "application/wasm",
            b"\0asm junk".to_vec(),
            422,
            "not a valid WebAssembly binary",
        ),
    ];
    for (path, content_type, body, status, message) in cases {
        let (got, text) = server.post_raw(path, content_type, body).await;
        assert_eq!(got, status, "{path}: {text}");
        assert!(
            text.contains(message),
            "{path}: expected {message:?} in {text}"
        );
    }
    // Oversized: more than the 256 KiB default.
    let big =
        json!({"user_id": "a", "name": "signed_up", "properties": {"blob": "x".repeat(300 << 10)}});
    let (got, text) = server
        .post_raw("/v1/events", json_type, big.to_string().into_bytes())
        .await;
    assert_eq!(got, 413, "{text}");
    assert_eq!(event_count(&server).await, 0, "nothing was stored");
    let (got, _) = server
        .post_raw("/v1/runs/77/cancel", json_type, vec![])
        .await;
    assert_eq!(got, 404);
}

#[tokio::test]
async fn events_singly_and_in_batches_with_idempotency_keys() {
    let (server, _dir) = server_with_welcome().await;
    let (status, first) = server
        .post(
            "/v1/events",
            &json!({"user_id": "ada", "name": "signed_up", "idempotency_key": "s-ada"}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        (
            first["stored"].clone(),
            first["enrolled"].as_array().unwrap().len()
        ),
        (json!(true), 1)
    );
    let (status, again) = server
        .post(
            "/v1/events",
            &json!({"user_id": "ada", "name": "signed_up", "idempotency_key": "s-ada"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["stored"], json!(false));
    assert_eq!(again["enrolled"], first["enrolled"], "the original outcome");

    let batch: Vec<Value> = (0..50)
        .map(|i| json!({"user_id": format!("u{i}"), "name": "signed_up", "idempotency_key": format!("s-{i}")}))
        .collect();
    let (status, results) = server.post("/v1/events", &json!({ "batch": batch })).await;
    assert_eq!(status, 202);
    let results = results["results"].as_array().unwrap();
    assert_eq!(results.len(), 50);
    assert!(
        results
            .iter()
            .all(|r| r["enrolled"].as_array().unwrap().len() == 1)
    );
    server
        .until("/v1/runs?status=waiting&limit=1000", |r| {
            r["runs"].as_array().unwrap().len() == 51
        })
        .await;

    let run = first["enrolled"][0].as_i64().unwrap();
    let (status, cancelled) = server
        .post(&format!("/v1/runs/{run}/cancel"), &json!({}))
        .await;
    assert_eq!(
        (status, &cancelled["exit_reason"]),
        (200, &json!("cancelled"))
    );
    let (status, again) = server
        .post(&format!("/v1/runs/{run}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 409, "{again}");
    let shown = server.get(&format!("/v1/runs/{run}")).await;
    assert_eq!(
        shown["timeline"].as_array().unwrap().last().unwrap()["kind"],
        "exited"
    );
}

#[tokio::test]
async fn health_reports_the_database_and_the_backlog_without_a_key() {
    let (server, _dir) = server_with_welcome().await;
    let (status, health) = server.get_status("/v1/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"]["reachable"], true);
    let backlog = &health["backlog"];
    for field in [
        "runs_due",
        "runs_leased",
        "outbox_due",
        "outbox_sending",
        "outbox_dead",
    ] {
        assert_eq!(backlog[field], 0, "{field}: {health}");
    }
    // A message nobody can take becomes a dead letter, which the backlog shows.
    let nowhere = json!({
        "providers": {"*": {"kind": "webhook", "url": "http://127.0.0.1:9/closed"}},
        "retry": {"max_attempts": 1},
    });
    assert_eq!(
        server
            .put_text("/v1/delivery", &nowhere.to_string())
            .await
            .0,
        200
    );
    let (status, _) = server
        .post(
            "/v1/users",
            &json!({"user_id": "ada", "email": "ada@example.com"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post(
            "/v1/journeys/welcome-series/runs",
            &json!({"user_id": "ada", "input": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(status, 201);
    let health = server
        .until("/v1/health", |h| h["backlog"]["outbox_dead"] == 1)
        .await;
    assert_eq!(health["backlog"]["runs_due"], 0, "{health}");
}
