//! `cairn serve --journeys DIR` deploys what lands in the directory while it
//! serves; a broken file is refused with the reason logged and the previous
//! version keeps serving; a restart reuses the compiled artifacts.

use cairn_tests::{Server, component};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn-under-test");

/// Writes `bytes` as `dir/name` atomically, as a build step should.
fn place(dir: &Path, name: &str, bytes: &[u8]) {
    let staging = dir.with_extension("staging");
    std::fs::write(&staging, bytes).unwrap();
    std::fs::rename(&staging, dir.join(name)).unwrap();
}

fn active_version(journeys: &Value, id: &str) -> Option<String> {
    journeys["journeys"]
        .as_array()?
        .iter()
        .find(|j| j["id"] == id)
        .map(|j| j["active_version"].as_str().unwrap().to_string())
}

async fn wait_for_log(log: &Path, needle: &str, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(needle).count() >= count {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_journeys_directory_hot_loads_and_refuses_broken_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, cache) = (tmp.path().join("cairn.db"), tmp.path().join("cache"));
    let log = db.with_extension("log");
    let journeys = tmp.path().join("journeys");
    std::fs::create_dir(&journeys).unwrap();
    place(&journeys, "welcome.wasm", &component("welcome_series"));
    let dir_arg = journeys.to_str().unwrap();
    let server = Server::start_with(CAIRN, &db, &cache, &["--journeys", dir_arg]);
    // Deployed at start.
    assert!(active_version(&server.get("/v1/journeys").await, "welcome-series").is_some());

    // A new file deploys while serving; runs start on it.
    place(&journeys, "greeter.wasm", &component("greeter_v1"));
    let listed = server
        .until("/v1/journeys", |j| active_version(j, "greeter").is_some())
        .await;
    let v1 = active_version(&listed, "greeter").unwrap();
    let (status, run) = server
        .post("/v1/journeys/greeter/runs", &json!({"user_id": "ada"}))
        .await;
    assert_eq!(status, 201, "{run}");

    // A broken build overwrites it: refused, logged, v1 keeps serving.
    std::fs::write(journeys.join("greeter.wasm"), b"\0asm broken").unwrap();
    let text = wait_for_log(&log, "previous version keeps serving", 1).await;
    let refusal = text.lines().find(|l| l.contains("keeps serving")).unwrap();
    assert!(refusal.contains("greeter.wasm"), "{refusal}");
    assert!(
        refusal.contains("not a valid WebAssembly binary"),
        "{refusal}"
    );
    let listed = server.get("/v1/journeys").await;
    assert_eq!(active_version(&listed, "greeter").as_deref(), Some(&*v1));

    // The fixed build deploys as v2; the waiting run stays on v1.
    place(&journeys, "greeter.wasm", &component("greeter_v2"));
    let listed = server
        .until("/v1/journeys", |j| {
            active_version(j, "greeter").is_some_and(|v| v != v1)
        })
        .await;
    let v2 = active_version(&listed, "greeter").unwrap();
    let versions = server.get("/v1/journeys/greeter/versions").await;
    let versions = versions["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], v2.as_str());
    assert_eq!(versions[1]["runs"]["waiting"], 1);
    let run = server.get(&format!("/v1/runs/{}", run["id"])).await;
    assert_eq!(run["version"], v1.as_str());

    // A restart deploys the directory again from the artifact cache.
    let compiled = std::fs::read_to_string(&log)
        .unwrap()
        .matches("compiled a component")
        .count();
    assert!(compiled >= 3, "welcome, greeter v1 and v2 were compiled");
    server.kill();
    let server = Server::start_with(CAIRN, &db, &cache, &["--journeys", dir_arg]);
    assert!(active_version(&server.get("/v1/journeys").await, "greeter").is_some());
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("compiled a component").count(),
        compiled,
        "{text}"
    );
}

#[tokio::test]
async fn the_templates_directory_registers_new_and_changed_templates_while_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, cache) = (tmp.path().join("cairn.db"), tmp.path().join("cache"));
    let templates = tmp.path().join("templates");
    std::fs::create_dir_all(templates.join("billing")).unwrap();
    let body = |text: &str| {
        format!(
            "{{% block subject %}}{text}{{% endblock %}}{{% block text %}}{text}{{% endblock %}}"
        )
    };
    place(&templates, "note.jinja", body("first").as_bytes());
    let dir_arg = templates.to_str().unwrap();
    let server = Server::start_with(CAIRN, &db, &cache, &["--templates", dir_arg]);
    let (status, source) = server.get_text("/v1/templates/note").await;
    assert_eq!((status, source), (200, body("first")));

    // A changed file and a new one in a subdirectory register while serving.
    place(&templates, "note.jinja", body("second").as_bytes());
    place(
        &templates.join("billing"),
        "receipt.jinja",
        body("receipt").as_bytes(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.get_text("/v1/templates/note").await.1 != body("second")
        || server.get_text("/v1/templates/billing/receipt").await.0 != 200
    {
        assert!(Instant::now() < deadline, "the changes were not registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A template that no longer compiles is refused; the previous one stays.
    place(&templates, "note.jinja", b"{% block text %}{{ broken");
    wait_for_log(&db.with_extension("log"), "template refused", 1).await;
    assert_eq!(
        server.get_text("/v1/templates/note").await.1,
        body("second")
    );
}
