//! Tenant isolation on a real `cairn serve`: two tenants with API keys; one
//! can never list, read, wake, cancel, deploy into or change the other's
//! data, and guessing ids gets the same 404 as a missing id.

use cairn_tests::{Server, component};
use serde_json::json;
use std::process::Command;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn-under-test");

fn cairn(args: &[&str]) -> String {
    let out = Command::new(CAIRN).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cairn {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_tenant_cannot_see_or_touch_another_tenants_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cairn.db");
    let url = format!("sqlite://{}", db.display());
    let mut keys = Vec::new();
    for tenant in ["acme", "globex"] {
        cairn(&["tenant", "create", tenant, "--db", &url]);
        keys.push(cairn(&["key", "create", "--tenant", tenant, "--db", &url]));
    }
    let server = Server::start(CAIRN, &db, &dir.path().join("cache"));
    let acme = server.with_key(keys[0].trim());
    let globex = server.with_key(keys[1].trim());

    // Once keys exist, nothing is served without a valid one.
    let (status, body) = server.get_status("/v1/journeys").await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("requires an API key")
    );
    let (status, _) = server.with_key("cairn_guess").get_status("/v1/runs").await;
    assert_eq!(status, 401);

    let welcome = component("welcome_series");
    acme.register_templates().await;
    let (status, deployed) = acme.post_bytes("/v1/journeys", welcome.clone()).await;
    assert_eq!(status, 201, "{deployed}");
    let version = deployed["version"].as_str().unwrap().to_string();
    let signed_up = json!({"user_id": "ada", "name": "signed_up", "properties": {"name": "Ada"}});
    let (_, outcome) = acme.post("/v1/events", &signed_up).await;
    let run = outcome["enrolled"][0].as_i64().unwrap();

    // Lists are empty for the other tenant.
    for (path, field) in [
        ("/v1/journeys", "journeys"),
        ("/v1/runs", "runs"),
        ("/v1/outbox", "messages"),
        ("/v1/users/ada/skipped-enrollments", "skipped"),
        ("/v1/templates", "templates"),
        ("/v1/suppressions", "suppressions"),
    ] {
        let body = globex.get(path).await;
        assert_eq!(body[field], json!([]), "{path}: {body}");
    }
    // Guessed ids: exactly what a missing id gets.
    let (_, missing) = globex.get_status("/v1/runs/999999").await;
    let (status, guessed) = globex.get_status(&format!("/v1/runs/{run}")).await;
    assert_eq!(status, 404);
    assert_eq!(
        guessed["error"]
            .as_str()
            .unwrap()
            .replace(&run.to_string(), "N"),
        missing["error"].as_str().unwrap().replace("999999", "N")
    );
    let versions = format!("/v1/journeys/welcome-series/versions/{version}");
    let refusals = [
        globex
            .get_status("/v1/journeys/welcome-series/versions")
            .await,
        globex
            .post(&format!("/v1/runs/{run}/cancel"), &json!({}))
            .await,
        globex
            .post(
                "/v1/journeys/welcome-series/runs",
                &json!({"user_id": "ada"}),
            )
            .await,
        globex
            .post("/v1/journeys/welcome-series/disable", &json!({}))
            .await,
        globex
            .post(
                "/v1/journeys/welcome-series/activate",
                &json!({"version": version}),
            )
            .await,
        globex.delete(&versions).await,
        globex.get_status("/v1/templates/welcome").await,
        globex.get_status("/v1/outbox/1").await,
        globex.post("/v1/outbox/1/retry", &json!({})).await,
    ];
    for (status, body) in refusals {
        assert_eq!(status, 404, "{body}");
    }

    // The other tenant's events and deletions never reach acme's user of the same id.
    let (_, outcome) = globex
        .post(
            "/v1/events",
            &json!({"user_id": "ada", "name": "unsubscribed"}),
        )
        .await;
    assert_eq!(outcome["exited"], json!([]));
    // Idempotency keys are per tenant too.
    let keyed = json!({"user_id": "bob", "name": "signed_up", "idempotency_key": "k1"});
    assert_eq!(acme.post("/v1/events", &keyed).await.1["stored"], true);
    assert_eq!(globex.post("/v1/events", &keyed).await.1["stored"], true);

    // The same component deployed by the other tenant is its own journey.
    globex.register_templates().await;
    assert_eq!(globex.post_bytes("/v1/journeys", welcome).await.0, 201);
    let (_, theirs) = globex.post("/v1/events", &signed_up).await;
    assert_eq!(theirs["enrolled"].as_array().unwrap().len(), 1);
    assert_ne!(theirs["enrolled"][0], run);
    let (_, deleted) = globex.delete("/v1/users/ada").await;
    assert_eq!(
        deleted["exited"], theirs["enrolled"],
        "only their own ada's run"
    );

    let mine = acme.get(&format!("/v1/runs/{run}")).await;
    assert_eq!(mine["status"], "waiting", "{mine}");
    assert_eq!(mine["exit_reason"], json!(null));
    let mine = acme.get("/v1/journeys/welcome-series/versions").await;
    assert_eq!(mine["versions"].as_array().unwrap().len(), 1);
    assert_eq!(mine["versions"][0]["runs"]["waiting"], 2, "{mine}");
}

#[test]
fn serve_refuses_a_public_address_without_api_keys() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cairn.db").display());
    let out = Command::new(CAIRN)
        .args(["serve", "--listen", "0.0.0.0:0", "--db", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without API keys"),
        "{stderr}"
    );
}

#[test]
fn bad_tenant_input_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cairn.db").display());
    for (args, reason) in [
        (
            vec!["tenant", "create", "bad id"],
            "use 1-64 letters, digits",
        ),
        (
            vec![
                "tenant",
                "create",
                "acme",
                "--limits",
                r#"{"max_memory": 1}"#,
            ],
            "unknown field `max_memory`",
        ),
        (
            vec!["key", "create", "--tenant", "nobody"],
            "no tenant \"nobody\"",
        ),
    ] {
        let out = Command::new(CAIRN)
            .args(&args)
            .args(["--db", &url])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
}
