//! Restore in a new process: `cairn serve` stopped mid-journey and started
//! again on the same database file finishes the run.

use cairn_tests::{DAY, component_path};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(db: &std::path::Path, cache: &std::path::Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_cairn-under-test"))
            .args([
                "serve",
                "--virtual-clock",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--db")
            .arg(format!("sqlite://{}", db.display()))
            .arg("--cache-dir")
            .arg(cache)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "cairn serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

async fn until(client: &reqwest::Client, url: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        if check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on {url}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_run_continues_in_a_new_process_from_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cairn.db");
    let cache = dir.path().join("cache");
    let client = reqwest::Client::new();

    let first = Server::start(&db, &cache);
    let wasm = std::fs::read(component_path("welcome_series")).unwrap();
    let deployed: Value = client
        .post(format!("{}/v1/journeys", first.base))
        .body(wasm)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deployed["journey_id"], "welcome-series");
    let run: Value = client
        .post(format!("{}/v1/journeys/welcome-series/runs", first.base))
        .json(&json!({"user_id": "ada", "input": {"name": "Ada"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!("{}/v1/runs/{}", first.base, run["id"]);
    until(&client, &url, |r| {
        r["status"] == "waiting" && r["step"] == 1
    })
    .await;
    client
        .post(format!("{}/v1/clock/advance", first.base))
        .json(&json!({"ms": DAY}))
        .send()
        .await
        .unwrap();
    until(&client, &url, |r| r["checkpoint"] == "tips-sent").await;
    first.kill();

    // A new process on the same file: only the snapshot in SQLite carries the heap.
    let second = Server::start(&db, &cache);
    let url = format!("{}/v1/runs/{}", second.base, run["id"]);
    client
        .post(format!("{}/v1/clock/advance", second.base))
        .json(&json!({"ms": 4 * DAY}))
        .send()
        .await
        .unwrap();
    let done = until(&client, &url, |r| r["status"] == "completed").await;
    assert!(
        done["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "completed")
    );
    let outbox: Value = client
        .get(format!("{}/v1/outbox?run_id={}", second.base, run["id"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reminder = &outbox["messages"][2];
    assert_eq!(reminder["template"], "reminder");
    assert_eq!(
        reminder["props"]["tally"],
        json!({"reminded": 1, "tips-sent": 1, "welcomed": 1})
    );
    second.kill();
}
