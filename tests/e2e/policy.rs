//! The delivery policy at the send choke point, through a real journey (the
//! `courier` test journey reports every receipt): suppression, unsubscribes,
//! frequency caps, send windows in the user's zone across DST changes,
//! test mode, bad messages, declared templates, and local-time waits.

use cairn::delivery::DeliveryWorker;
use cairn::ingest::Identify;
use cairn::store::{DEFAULT_TENANT, Feedback, OutboxFilter, OutboxRow};
use cairn_tests::{Host, NowMs, T0, component};
use serde_json::{Value, json};

// T0 (2026-05-28T20:26:40Z, a Thursday) is 16:26 in New York and 22:26 in Berlin.

async fn contact(host: &Host, user: &str, email: Option<&str>, timezone: Option<&str>) {
    host.runtime
        .identify(
            DEFAULT_TENANT,
            Identify {
                user_id: user.into(),
                email: email.map(Into::into),
                timezone: timezone.map(Into::into),
                properties: None,
            },
        )
        .await
        .unwrap();
}

/// Runs the courier for `user` and returns its report (the receipts).
async fn courier(host: &Host, user: &str, input: Value) -> Vec<Value> {
    let run = host.start("courier", user, &input.to_string()).await;
    let checkpoint = run
        .checkpoint
        .unwrap_or_else(|| panic!("no report: {:?}", run.failure));
    serde_json::from_str::<Vec<Value>>(&checkpoint).unwrap()
}

fn sends(list: &[(&str, &str)]) -> Value {
    let send = |(template, category): &(&str, &str)| json!({"template": template, "category": category, "props": {"name": "Ada"}});
    json!({"sends": list.iter().map(send).collect::<Vec<_>>()})
}

async fn outbox(host: &Host, user: &str) -> Vec<OutboxRow> {
    let filter = OutboxFilter {
        user_id: Some(user.into()),
        ..OutboxFilter::default()
    };
    host.runtime
        .store
        .outbox(DEFAULT_TENANT, &filter)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_policy_branch_is_decided_at_send_and_written_on_the_receipt() {
    let host = Host::new().await;
    host.deploy("courier").await;
    host.set_delivery(json!({
        "default_timezone": "America/New_York",
        "send_window": {"start": "09:00", "end": "20:00"},
        "frequency_cap": {"count": 2, "window_ms": 86_400_000},
    }))
    .await;
    let worker = DeliveryWorker::new(host.runtime.clone(), "http://cairn.test");

    // New York, 16:26: inside the window; the third marketing send is capped.
    contact(&host, "ny", Some("ny@example.com"), None).await;
    let mixed = sends(&[
        ("welcome", "marketing"),
        ("welcome", "marketing"),
        ("welcome", "marketing"),
        ("welcome", "transactional"),
    ]);
    assert_eq!(
        courier(&host, "ny", mixed).await,
        [
            json!("queued"),
            json!("queued"),
            json!("frequency-capped"),
            json!("queued")
        ]
    );

    // Berlin, 22:26: deferred to 09:00 CEST tomorrow; transactional goes now.
    contact(
        &host,
        "berlin",
        Some("berlin@example.com"),
        Some("Europe/Berlin"),
    )
    .await;
    let nine_berlin = 1_780_038_000_000; // 2026-05-29T07:00Z
    assert_eq!(
        courier(
            &host,
            "berlin",
            sends(&[("welcome", "marketing"), ("welcome", "transactional")])
        )
        .await,
        [json!({"deferred-until": nine_berlin}), json!("queued")]
    );
    // An invalid zone is ignored: the tenant's default (New York) applies.
    contact(
        &host,
        "lost",
        Some("lost@example.com"),
        Some("Atlantis/Capital"),
    )
    .await;
    assert_eq!(
        courier(&host, "lost", sends(&[("welcome", "marketing")])).await,
        [json!("queued")]
    );

    // Unsubscribed from everything, or from one category; transactional is exempt.
    contact(&host, "gone", Some("gone@example.com"), None).await;
    host.runtime
        .store
        .set_preferences(DEFAULT_TENANT, "gone", Some(false), &[], T0)
        .await
        .unwrap();
    contact(&host, "picky", Some("picky@example.com"), None).await;
    host.runtime
        .store
        .set_preferences(
            DEFAULT_TENANT,
            "picky",
            None,
            &[("marketing".into(), false)],
            T0,
        )
        .await
        .unwrap();
    let both = sends(&[("welcome", "marketing"), ("welcome", "transactional")]);
    assert_eq!(
        courier(&host, "gone", both.clone()).await,
        [json!("unsubscribed"), json!("queued")]
    );
    assert_eq!(
        courier(
            &host,
            "picky",
            sends(&[("welcome", "marketing"), ("welcome", "product")])
        )
        .await,
        [json!("unsubscribed"), json!("queued")]
    );

    // A complaint suppresses at once; a hard bounce only at the threshold (2 here).
    contact(&host, "angry", Some("Angry@Example.com"), None).await;
    let store = &host.runtime.store;
    store
        .record_feedback(
            DEFAULT_TENANT,
            "angry@example.com",
            Feedback::Complaint,
            2,
            T0,
        )
        .await
        .unwrap();
    contact(&host, "bouncy", Some("bouncy@example.com"), None).await;
    let once = store
        .record_feedback(
            DEFAULT_TENANT,
            "bouncy@example.com",
            Feedback::HardBounce,
            2,
            T0,
        )
        .await
        .unwrap();
    assert_eq!(once.suppressed_at, None);
    assert_eq!(
        courier(&host, "angry", both.clone()).await,
        [json!("suppressed"), json!("suppressed")]
    );
    assert_eq!(
        courier(&host, "bouncy", both).await,
        [json!("queued"), json!("queued")]
    );

    // Bad messages get errors the journey can read; nothing is queued for them.
    let bad = json!({"sends": [
        {"template": "no-such-template"},
        {"template": "welcome", "to": "not an address"},
        {"template": "welcome", "props": {"blob": "x".repeat(70_000)}},
    ]});
    let report = courier(&host, "ny2", bad).await;
    assert!(
        report[0]["error"]
            .as_str()
            .unwrap()
            .contains("\"no-such-template\" is not registered"),
        "{report:?}"
    );
    assert!(
        report[1]["error"]
            .as_str()
            .unwrap()
            .contains("is not an email address"),
        "{report:?}"
    );
    assert!(
        report[2]["error"].as_str().unwrap().contains("too large"),
        "{report:?}"
    );
    assert!(outbox(&host, "ny2").await.is_empty());

    // Delivery: everything due goes out; the deferred one waits for 09:00 Berlin.
    worker.drain().await.unwrap();
    let statuses = |rows: Vec<OutboxRow>| rows.into_iter().map(|m| m.status).collect::<Vec<_>>();
    assert_eq!(
        statuses(outbox(&host, "ny").await),
        ["sent", "sent", "frequency-capped", "sent"]
    );
    assert_eq!(statuses(outbox(&host, "berlin").await), ["queued", "sent"]);
    assert_eq!(outbox(&host, "berlin").await[0].not_before, nine_berlin);

    // A user who unsubscribes while a message waits for the window is spared it.
    host.runtime
        .store
        .set_preferences(DEFAULT_TENANT, "berlin", Some(false), &[], T0)
        .await
        .unwrap();
    host.clock.advance(nine_berlin - T0);
    worker.drain().await.unwrap();
    let spared = &outbox(&host, "berlin").await[0];
    assert_eq!(spared.status, "unsubscribed");
    assert_eq!(
        spared.last_error.as_deref(),
        Some("the user unsubscribed before delivery")
    );

    // Test mode sends every email to one address and says who it was for.
    host.set_delivery(json!({"test_mode": {"redirect_to": "qa@acme.test"}}))
        .await;
    courier(&host, "picky", sends(&[("welcome", "product")])).await;
    worker.drain().await.unwrap();
    let redirected = outbox(&host, "picky").await.pop().unwrap();
    assert_eq!(
        (
            redirected.status.as_str(),
            redirected.delivered_to.as_deref()
        ),
        ("sent", Some("qa@acme.test"))
    );
    assert_eq!(redirected.recipient, "picky@example.com");

    // A provider whose secret is missing on this host: a dead letter saying so.
    host.set_delivery(json!({"providers": {"*": {
        "kind": "webhook", "url": "http://127.0.0.1:9/hook", "secret_env": "CAIRN_TEST_NO_SUCH_SECRET",
    }}}))
    .await;
    courier(&host, "picky", sends(&[("welcome", "product")])).await;
    worker.drain().await.unwrap();
    let misconfigured = outbox(&host, "picky").await.pop().unwrap();
    assert_eq!(misconfigured.status, "dead");
    assert!(
        misconfigured
            .last_error
            .unwrap()
            .contains("CAIRN_TEST_NO_SUCH_SECRET is not set"),
        "the missing variable is named"
    );

    // A webhook that redirects is not followed (it would turn into a GET).
    let hook = cairn_tests::sinks::WebhookReceiver::start().await;
    let moved = hook.url.replace("/hook", "/moved");
    host.set_delivery(json!({"providers": {"*": {"kind": "webhook", "url": moved}}}))
        .await;
    courier(&host, "picky", sends(&[("welcome", "product")])).await;
    worker.drain().await.unwrap();
    let redirected = outbox(&host, "picky").await.pop().unwrap();
    assert_eq!(redirected.status, "dead");
    assert!(redirected.last_error.unwrap().contains("301"));
    assert!(hook.received().is_empty());

    // A user without an address is dead-lettered at delivery, saying why.
    courier(&host, "nomail", sends(&[("welcome", "product")])).await;
    worker.drain().await.unwrap();
    let dead = outbox(&host, "nomail").await.pop().unwrap();
    assert_eq!(dead.status, "dead");
    assert!(dead.last_error.unwrap().contains("has no email address"));
}

#[tokio::test]
async fn local_times_and_send_windows_follow_dst_in_new_york_and_berlin() {
    let host = Host::new().await;
    host.deploy("courier").await;
    contact(
        &host,
        "ny",
        Some("ny@example.com"),
        Some("America/New_York"),
    )
    .await;

    // Saturday 2026-10-31 12:00 EDT: the next 01:30 falls back and is ambiguous; the first one counts.
    host.clock.advance(1_793_462_400_000 - T0);
    let report = courier(&host, "ny", json!({"local": {"hour": 1, "minute": 30}})).await;
    assert_eq!(report, [json!({"local": 1_793_511_000_000u64})]); // 2026-11-01T05:30Z (EDT)
    host.advance(1_793_511_000_000 - host.clock.now_ms()).await;
    let run = host.runs_of("ny").await.remove(0);
    let report: Vec<Value> = serde_json::from_str(&run.checkpoint.unwrap()).unwrap();
    assert_eq!(report[1], json!({"woke": 1_793_511_000_000u64}));

    // "Next Monday 10:00": Monday 2026-11-02, now EST.
    let report = courier(&host, "ny-monday", json!({"local": {"hour": 10, "minute": 0, "weekdays": ["monday"], "zone": "America/New_York"}})).await;
    assert_eq!(report, [json!({"local": 1_793_631_600_000u64})]); // 2026-11-02T15:00Z

    // Berlin springs forward at 02:00 on 2027-03-28: 02:30 moves to 03:30 CEST.
    host.clock.advance(1_806_184_800_000 - host.clock.now_ms()); // 2027-03-27T22:00Z, 23:00 CET
    contact(
        &host,
        "berlin",
        Some("b@example.com"),
        Some("Europe/Berlin"),
    )
    .await;
    let report = courier(&host, "berlin", json!({"local": {"hour": 2, "minute": 30}})).await;
    assert_eq!(report, [json!({"local": 1_806_197_400_000u64})]); // 2027-03-28T01:30Z

    // A window across the same change: 09:00 CEST is 07:00Z.
    host.set_delivery(json!({"send_window": {"start": "09:00", "end": "20:00"}}))
        .await;
    contact(
        &host,
        "berlin-2",
        Some("b2@example.com"),
        Some("Europe/Berlin"),
    )
    .await;
    let report = courier(&host, "berlin-2", sends(&[("welcome", "marketing")])).await;
    assert_eq!(report, [json!({"deferred-until": 1_806_217_200_000u64})]);
    // A window that wraps midnight (22:00-06:00) in New York, asked at 18:00
    // EDT (New York changed two weeks earlier): it opens at 22:00 EDT.
    host.set_delivery(json!({"send_window": {"start": "22:00", "end": "06:00"}}))
        .await;
    let report = courier(&host, "ny-night", sends(&[("welcome", "marketing")])).await;
    assert_eq!(
        report,
        [json!("queued")],
        "no zone of its own: UTC 22:00 is inside the window"
    );
    contact(
        &host,
        "ny-late",
        Some("late@example.com"),
        Some("America/New_York"),
    )
    .await;
    let report = courier(&host, "ny-late", sends(&[("welcome", "marketing")])).await;
    assert_eq!(report, [json!({"deferred-until": 1_806_199_200_000u64})]); // 2027-03-28T02:00Z

    // Bad local times are errors the journey sees.
    let report = courier(&host, "x", json!({"local": {"hour": 25, "minute": 0}})).await;
    assert!(
        report[0]["error"]
            .as_str()
            .unwrap()
            .contains("not a time of day"),
        "{report:?}"
    );
    let report = courier(
        &host,
        "y",
        json!({"local": {"hour": 9, "minute": 0, "zone": "Mars/Base"}}),
    )
    .await;
    assert!(
        report[0]["error"]
            .as_str()
            .unwrap()
            .contains("not an IANA time zone"),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_journey_declaring_an_unregistered_template_is_refused_at_deploy() {
    let host = Host::new().await;
    host.runtime
        .store
        .upsert_tenant("bare", "bare", "{}", T0)
        .await
        .unwrap();
    let err = host
        .runtime
        .deploy("bare", component("courier"))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("declares template(s) welcome"),
        "{message}"
    );
    host.runtime
        .store
        .put_template(
            "bare",
            "welcome",
            "{% block subject %}Hi{% endblock %}{% block text %}Hi{% endblock %}",
            T0,
        )
        .await
        .unwrap();
    host.runtime
        .deploy("bare", component("courier"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_step_whose_policy_check_hits_a_database_failure_runs_again_instead_of_failing() {
    let host = Host::new().await;
    host.deploy("courier").await;
    let pool = host.runtime.store.pool();
    // Break the policy's read: the table it joins is gone for a moment.
    sqlx::query("ALTER TABLE templates RENAME TO templates_away")
        .execute(pool)
        .await
        .unwrap();
    let input = sends(&[("welcome", "marketing")]).to_string();
    let run = host
        .runtime
        .start_run(DEFAULT_TENANT, "courier", "ada@example.com", &input)
        .await
        .unwrap();
    host.drain().await;
    let waiting = host.run(run.id).await;
    assert_eq!(
        (waiting.status, waiting.step, waiting.failure),
        (cairn::store::RunStatus::Active, 0, None),
        "not failed and not committed"
    );
    assert!(outbox(&host, "ada@example.com").await.is_empty());

    // The database recovers; after the short deferral the step runs again.
    sqlx::query("ALTER TABLE templates_away RENAME TO templates")
        .execute(pool)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    host.drain().await;
    let done = host.run(run.id).await;
    assert_eq!(
        done.status,
        cairn::store::RunStatus::Completed,
        "{:?}",
        done.failure
    );
    assert_eq!(done.checkpoint.as_deref(), Some(r#"["queued"]"#));
}
