//! Delivery through real providers: `cairn serve` hands the welcome series'
//! emails to a real SMTP server and to a real webhook receiver on loopback;
//! the unsubscribe link works; transient failures retry with backoff, a
//! permanent one dead-letters at once, a dead letter retries on request; and
//! a host SIGKILLed between handing a message over and recording it delivers
//! it again with the same idempotency key (webhook) or dead-letters it as
//! "outcome unknown" (SMTP), never silently twice.

use cairn_tests::sinks::{SmtpSink, WebhookReceiver};
use cairn_tests::{Api, DAY, Server, component};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn-under-test");

/// A server with `delivery` settings, the welcome series deployed, and Ada
/// (with an email address) signed up: her welcome email is on its way.
async fn signed_up(dir: &std::path::Path, delivery: Value) -> (Server, i64) {
    let server = Server::start(CAIRN, &dir.join("cairn.db"), &dir.join("cache"));
    let (status, body) = server.put_text("/v1/delivery", &delivery.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = server
        .post_bytes("/v1/journeys", component("welcome_series"))
        .await;
    assert_eq!(status, 201);
    let (status, _) = server
        .post(
            "/v1/users",
            &json!({"user_id": "ada", "email": "ada@example.com"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .post(
            "/v1/events",
            &json!({"user_id": "ada", "name": "signed_up", "properties": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let run = body["enrolled"][0].as_i64().expect("enrolled");
    (server, run)
}

async fn message(api: &Api, run: i64, index: usize, status: &str) -> Value {
    let outbox = api
        .until(&format!("/v1/outbox?run_id={run}"), |o| {
            o["messages"][index]["status"] == status
        })
        .await;
    outbox["messages"][index].clone()
}

#[tokio::test]
async fn emails_reach_a_real_smtp_server_with_a_working_one_click_unsubscribe() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpSink::start();
    let settings = json!({
        "from": "Acme <hello@acme.test>",
        "providers": {"email": {"kind": "smtp", "host": "127.0.0.1", "port": smtp.port, "security": "none"}},
    });
    let (server, run) = signed_up(dir.path(), settings).await;

    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail.from, "hello@acme.test");
    assert_eq!(mail.to, ["ada@example.com"]);
    assert_eq!(mail.header("Subject").unwrap(), "Welcome to Acme, Ada!");
    assert_eq!(
        mail.header("List-Unsubscribe-Post").unwrap(),
        "List-Unsubscribe=One-Click"
    );
    assert!(
        mail.data.contains("multipart/alternative"),
        "text and html parts"
    );
    assert!(mail.data.contains("<p>Hi Ada,</p>"));
    let sent = message(&server, run, 0, "sent").await;
    assert_eq!(sent["provider"], "smtp");
    assert!(
        sent["provider_id"]
            .as_str()
            .unwrap()
            .contains("queued as sink-0")
    );
    assert_eq!(
        mail.header("X-Cairn-Key").unwrap(),
        sent["key"].as_str().unwrap()
    );

    // The one-click link: a mail client POSTs to it (RFC 8058).
    let link = mail.header("List-Unsubscribe").unwrap();
    let link = link.trim_start_matches('<').trim_end_matches('>');
    let path = link
        .strip_prefix(&server.base)
        .expect("the link points at this host");
    let (status, page) = server.get_text(path).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Stop receiving \"onboarding\" messages?"),
        "{page}"
    );
    let (status, page) = server
        .post_raw(
            path,
            "application/x-www-form-urlencoded",
            b"List-Unsubscribe=One-Click".to_vec(),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let prefs = server.get("/v1/users/ada/preferences").await;
    assert_eq!(
        prefs,
        json!({"subscribed": true, "categories": {"onboarding": false}})
    );
    let (status, page) = server
        .post_raw(&format!("{path}x"), "text/plain", vec![])
        .await;
    assert_eq!(status, 400, "a tampered token is refused");
    assert!(page.contains("signature"), "{page}");

    // A day later the tips email is an onboarding email: refused, never sent.
    server.post("/v1/clock/advance", &json!({"ms": DAY})).await;
    let tips = message(&server, run, 1, "unsubscribed").await;
    assert_eq!(tips["template"], "tips");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(smtp.mails().len(), 1);
}

fn verify_signature(secret: &str, header: &str, body: &[u8]) -> bool {
    let (t, v1) = header.split_once(",v1=").unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&hex::decode(v1).unwrap()).is_ok()
}

#[tokio::test]
async fn webhooks_are_signed_retried_with_backoff_and_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookReceiver::start().await;
    hook.fail_next(2);
    let settings = json!({
        "providers": {"*": {"kind": "webhook", "url": hook.url, "secret": "s3cret", "timeout_ms": 2000}},
        "retry": {"max_attempts": 3, "base_delay_ms": 1000, "max_delay_ms": 4000},
    });
    let (server, run) = signed_up(dir.path(), settings).await;

    // Two 503s, each retried once the (virtual) backoff has passed.
    for attempt in 1..=3 {
        let got = hook.wait_for(attempt).await;
        assert_eq!(got.len(), attempt, "no attempt before its backoff passed");
        server
            .post("/v1/clock/advance", &json!({"ms": 5_000}))
            .await;
    }
    let sent = message(&server, run, 0, "sent").await;
    assert_eq!(
        (sent["attempts"].as_u64(), &sent["provider_id"]),
        (Some(3), &json!("hook-3"))
    );
    let requests = hook.received();
    for request in &requests {
        assert_eq!(
            request.header("idempotency-key"),
            sent["key"].as_str().unwrap()
        );
        assert!(verify_signature(
            "s3cret",
            request.header("x-cairn-signature"),
            &request.body
        ));
    }
    let body = requests[2].json();
    assert_eq!(
        (&body["to"], &body["subject"]),
        (&json!("ada@example.com"), &json!("Welcome to Acme, Ada!"))
    );
    // The link in the webhook's body works like the one in an email.
    let link = body["unsubscribe_url"].as_str().unwrap();
    let path = link
        .strip_prefix(&server.base)
        .expect("the link points at this host");
    let (status, page) = server.post_raw(path, "text/plain", vec![]).await;
    assert_eq!(status, 200, "{page}");
    let prefs = server.get("/v1/users/ada/preferences").await;
    assert_eq!(prefs["categories"]["onboarding"], false);
    server
        .post(
            "/v1/users/ada/preferences",
            &json!({"categories": {"onboarding": true}}),
        )
        .await;

    // A 400 is permanent: dead at once. Retrying the dead letter delivers it.
    hook.reject(true);
    server.post("/v1/clock/advance", &json!({"ms": DAY})).await;
    let dead = message(&server, run, 1, "dead").await;
    assert_eq!(dead["attempts"], 1);
    assert!(
        dead["last_error"].as_str().unwrap().contains("400"),
        "{dead}"
    );
    let listed = server.get("/v1/outbox?status=dead").await;
    assert_eq!(listed["messages"][0]["id"], dead["id"]);
    hook.reject(false);
    let (status, retried) = server
        .post(&format!("/v1/outbox/{}/retry", dead["id"]), &json!({}))
        .await;
    assert_eq!((status, &retried["status"]), (200, &json!("queued")));
    message(&server, run, 1, "sent").await;
    let (status, refusal) = server
        .post(&format!("/v1/outbox/{}/retry", dead["id"]), &json!({}))
        .await;
    assert_eq!(status, 422);
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .contains("only dead letters")
    );

    // Always 503: dead after the third attempt.
    hook.fail_next(u32::MAX);
    server
        .post("/v1/clock/advance", &json!({"ms": 3 * DAY}))
        .await;
    // Move time past each backoff until the message gives up (bounded).
    let outbox = format!("/v1/outbox?run_id={run}");
    for _ in 0..100 {
        if server.get(&outbox).await["messages"][2]["status"] == "dead" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        server
            .post("/v1/clock/advance", &json!({"ms": 5_000}))
            .await;
    }
    let gave_up = message(&server, run, 2, "dead").await;
    assert!(
        gave_up["last_error"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 3 attempts"),
        "{gave_up}"
    );
}

#[tokio::test]
async fn a_host_killed_mid_delivery_redelivers_with_the_same_key_or_flags_smtp() {
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookReceiver::start().await;
    hook.hang(true);
    let settings =
        json!({"providers": {"*": {"kind": "webhook", "url": hook.url, "timeout_ms": 30000}}});
    let (server, run) = signed_up(dir.path(), settings).await;
    // The receiver has the message; the host has not heard back. Kill it.
    let first = hook.wait_for(1).await;
    message(&server, run, 0, "sending").await;
    server.kill();
    hook.hang(false);

    let server = Server::start(
        CAIRN,
        &dir.path().join("cairn.db"),
        &dir.path().join("cache"),
    );
    let sent = message(&server, run, 0, "sent").await;
    let both = hook.wait_for(2).await;
    assert_eq!(both.len(), 2, "delivered again exactly once");
    assert_eq!(
        both[1].header("idempotency-key"),
        first[0].header("idempotency-key")
    );
    assert_eq!(sent["attempts"], 2);
    assert_eq!(
        server.get(&format!("/v1/outbox?run_id={run}")).await["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // SMTP cannot recognise a repeat: the message is flagged, not resent.
    let smtp = SmtpSink::start();
    smtp.delay_replies(60);
    let settings = json!({"providers": {"email": {"kind": "smtp", "host": "127.0.0.1", "port": smtp.port, "security": "none"}}});
    let (status, _) = server.put_text("/v1/delivery", &settings.to_string()).await;
    assert_eq!(status, 200);
    server.post("/v1/clock/advance", &json!({"ms": DAY})).await;
    smtp.wait_for(1).await;
    message(&server, run, 1, "sending").await;
    server.kill();
    let server = Server::start(
        CAIRN,
        &dir.path().join("cairn.db"),
        &dir.path().join("cache"),
    );
    let flagged = message(&server, run, 1, "dead").await;
    assert!(
        flagged["last_error"]
            .as_str()
            .unwrap()
            .starts_with("outcome unknown"),
        "{flagged}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(smtp.mails().len(), 1, "not sent a second time on its own");
}

#[tokio::test]
async fn a_graceful_shutdown_finishes_the_delivery_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookReceiver::start().await;
    hook.hang(true);
    let settings =
        json!({"providers": {"*": {"kind": "webhook", "url": hook.url, "timeout_ms": 1500}}});
    let (server, run) = signed_up(dir.path(), settings).await;
    hook.wait_for(1).await;
    // SIGTERM while the receiver holds the request: the host waits for the
    // attempt to time out and records it, instead of leaving it `sending`.
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let db = format!("sqlite://{}", dir.path().join("cairn.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let (status, attempts, error): (String, i64, String) =
        sqlx::query_as("SELECT status, attempts, last_error FROM outbox WHERE run_id = ?")
            .bind(run)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), attempts),
        ("queued", 1),
        "recorded as a retry"
    );
    assert!(error.contains("timed out"), "{error}");
}

#[tokio::test]
async fn bad_settings_templates_and_feedback_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        CAIRN,
        &dir.path().join("cairn.db"),
        &dir.path().join("cache"),
    );
    let bad = [
        (
            r#"{"providers": {"email": {"kind": "smtp"}}}"#,
            "missing field `host`",
        ),
        (
            r#"{"providers": {"email": {"kind": "webhook", "url": "not a url"}}}"#,
            "url",
        ),
        (
            r#"{"send_window": {"start": "9", "end": "17:00"}}"#,
            "send_window.start",
        ),
        ("{not json", "delivery settings"),
    ];
    for (settings, why) in bad {
        let (status, body) = server.put_text("/v1/delivery", settings).await;
        assert_eq!(status, 422, "{settings}");
        assert!(
            body["error"].as_str().unwrap().contains(why),
            "{settings}: {body}"
        );
    }
    let (status, body) = server
        .put_text("/v1/templates/broken", "{% block text %}{{ oops }")
        .await;
    assert_eq!(status, 422);
    assert!(
        body["error"].as_str().unwrap().contains("does not compile"),
        "{body}"
    );
    let (status, body) = server
        .put_text(
            "/v1/templates/note",
            "{% block subject %}Hi{% endblock %}{% block text %}Hello {{ name }}{% endblock %}",
        )
        .await;
    assert_eq!(
        (status, &body["parts"]),
        (200, &json!({"subject": true, "text": true, "html": false}))
    );
    let (status, body) = server
        .post(
            "/v1/delivery-events",
            &json!({"type": "bounced", "address": "a@b.c"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = server
        .post(
            "/v1/delivery-events",
            &json!({"type": "complaint", "address": "nope"}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not an email address")
    );
    let (status, body) = server
        .post("/v1/users", &json!({"user_id": "bo", "email": "bo@"}))
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = server.get_text("/v1/unsubscribe?token=garbage").await;
    assert_eq!(status, 400);
}

/// A test CA and a `localhost` certificate it signed (openssl): (ca, cert, key).
fn certificates(dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    let path = |name: &str| dir.join(name);
    std::fs::write(
        path("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=cairn test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
        ],
    ];
    for args in steps {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    [path("ca.pem"), path("cert.pem"), path("key.pem")]
}

#[tokio::test]
async fn smtp_over_starttls_with_auth_and_over_tls_delivers_and_names_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = certificates(dir.path());
    let smtp = SmtpSink::start_with(&[
        "--starttls".as_ref(),
        cert.as_os_str(),
        key.as_os_str(),
        "--auth".as_ref(),
        "cairn".as_ref(),
        "pw".as_ref(),
    ]);
    let host = cairn_tests::Host::new().await;
    host.deploy("courier").await;
    let worker = cairn::delivery::DeliveryWorker::new(host.runtime.clone(), "http://cairn.test");
    let smtp_settings = |password: &str, ca_file: Option<&std::path::Path>| {
        json!({
            "providers": {"email": {
                "kind": "smtp", "host": "localhost", "port": smtp.port, "security": "starttls",
                "username": "cairn", "password": password, "ca_file": ca_file, "timeout_ms": 3000,
            }},
            "retry": {"max_attempts": 1},
        })
    };
    let send = |user: &'static str| {
        let host = &host;
        async move {
            let input = json!({"sends": [{"template": "welcome", "props": {"name": "Tls"}}]});
            let run = host.start("courier", user, &input.to_string()).await;
            host.outbox(run.id).await[0].id
        }
    };
    let status = |id: i64| {
        let host = &host;
        async move {
            let m = host
                .runtime
                .store
                .outbox_message("default", id)
                .await
                .unwrap()
                .unwrap();
            (m.status, m.last_error.unwrap_or_default())
        }
    };

    host.set_delivery(smtp_settings("pw", Some(&ca))).await;
    let good = send("tls@example.com").await;
    worker.drain().await.unwrap();
    assert_eq!(status(good).await.0, "sent", "{:?}", status(good).await);
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail.header("Subject").unwrap(), "Welcome to Acme, Tls!");

    host.set_delivery(smtp_settings("wrong", Some(&ca))).await;
    let refused = send("auth@example.com").await;
    worker.drain().await.unwrap();
    let (state, error) = status(refused).await;
    assert_eq!(state, "dead");
    assert!(error.contains("535"), "{error}");

    host.set_delivery(smtp_settings("pw", None)).await;
    let untrusted = send("ca@example.com").await;
    worker.drain().await.unwrap();
    let (state, error) = status(untrusted).await;
    assert_eq!(state, "dead");
    assert!(
        error.contains("gave up after 1 attempts") && error.to_lowercase().contains("certificate"),
        "{error}"
    );
    assert_eq!(smtp.mails().len(), 1);

    // TLS from the first byte (SMTPS), the other secure mode.
    let smtps = SmtpSink::start_with(&["--tls".as_ref(), cert.as_os_str(), key.as_os_str()]);
    host.set_delivery(json!({
        "providers": {"email": {
            "kind": "smtp", "host": "localhost", "port": smtps.port, "security": "tls",
            "ca_file": ca, "timeout_ms": 3000,
        }},
    }))
    .await;
    let wrapped = send("smtps@example.com").await;
    worker.drain().await.unwrap();
    assert_eq!(
        status(wrapped).await.0,
        "sent",
        "{:?}",
        status(wrapped).await
    );
    assert_eq!(smtps.wait_for(1).await[0].to, ["smtps@example.com"]);
}
