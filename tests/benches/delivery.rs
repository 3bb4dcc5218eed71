//! Delivery benchmarks, side by side in one run:
//! `cargo bench -p cairn-tests --bench delivery [-- section]`.
//!
//! - outbox drain rate: messages rendered and delivered per second by one
//!   host's delivery worker, to the log provider and to a webhook receiver
//!   on loopback (HTTP/1.1, JSON, signed);
//! - policy latency: what the send gate adds to one `send` (median and p99),
//!   with the default settings and with a frequency cap and a send window,
//!   beside the open gate (no policy).

use cairn::delivery::{DeliveryWorker, OpenGate, SendGate, SendRequest};
use cairn::store::{DEFAULT_TENANT, OutboxFilter};
use cairn_tests::Host;
use cairn_tests::sinks::WebhookReceiver;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common.rs"]
mod common;
use common::{Stats, selected, us};

const MESSAGES: usize = 5_000;
const PER_RUN: usize = 100;

/// Queues `MESSAGES` welcome emails through courier runs (100 sends each).
async fn queue(host: &Host, round: usize) {
    let sends: Vec<_> = (0..PER_RUN)
        .map(|i| json!({"template": "welcome", "category": "bench", "props": {"name": format!("user {i}")}}))
        .collect();
    let input = json!({ "sends": sends }).to_string();
    for r in 0..MESSAGES / PER_RUN {
        host.runtime
            .start_run(
                DEFAULT_TENANT,
                "courier",
                &format!("r{round}-{r}@bench.test"),
                &input,
            )
            .await
            .unwrap();
    }
    host.drain().await;
}

async fn configure(host: &Host, settings: serde_json::Value) {
    host.runtime
        .store
        .set_delivery_config(DEFAULT_TENANT, &settings.to_string())
        .await
        .unwrap();
    host.runtime.forget_settings(DEFAULT_TENANT);
}

async fn drain_rate(host: &Host, round: usize, label: &str) {
    queue(host, round).await;
    let worker = DeliveryWorker::new(host.runtime.clone(), "http://cairn.bench");
    let started = Instant::now();
    let delivered = worker.drain().await.unwrap();
    let elapsed = started.elapsed();
    let sent = host
        .runtime
        .store
        .outbox(
            DEFAULT_TENANT,
            &OutboxFilter {
                status: Some("sent".into()),
                limit: Some(1000),
                ..OutboxFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(
        !sent.is_empty() && delivered >= MESSAGES,
        "{delivered} delivered"
    );
    println!(
        "{label:<28} {delivered:>6} messages in {:>6.2} s  {:>8.0} messages/s",
        elapsed.as_secs_f64(),
        delivered as f64 / elapsed.as_secs_f64()
    );
}

async fn drain_rates() {
    println!("\n== outbox drain rate (one host, render + deliver + record) ==");
    let host = Host::new().await;
    host.deploy("courier").await;
    drain_rate(&host, 0, "log provider").await;
    let hook = WebhookReceiver::start().await;
    configure(
        &host,
        json!({"providers": {"*": {"kind": "webhook", "url": hook.url, "secret": "bench"}}}),
    )
    .await;
    drain_rate(&host, 1, "webhook (loopback, signed)").await;
    assert_eq!(hook.received().len(), MESSAGES);
}

/// Times `gate.admit` for one send, `n` times, on a blocking thread (where steps run).
async fn admit_times(gate: Arc<dyn SendGate>, n: usize) -> Stats {
    tokio::task::spawn_blocking(move || {
        let samples = (0..n)
            .map(|i| {
                let user = format!("user-{}@bench.test", i % 100);
                let request = SendRequest {
                    user_id: &user,
                    channel: "email",
                    to: "",
                    template: "welcome",
                    category: "marketing",
                    now: cairn_tests::T0,
                    earlier: &[],
                };
                let started = Instant::now();
                let admitted = gate.admit(&request).unwrap();
                let took = started.elapsed();
                assert!(admitted.verdict.delivers());
                took
            })
            .collect::<Vec<Duration>>();
        Stats::of(samples)
    })
    .await
    .unwrap()
}

async fn policy_latency() {
    println!("\n== policy latency per send (2,000 sends, SQLite) ==");
    let host = Host::new().await;
    host.deploy("courier").await;
    // Some history for the cap's count to read.
    queue(&host, 0).await;
    let rows: Vec<(&str, Arc<dyn SendGate>)> = vec![
        ("open gate (no policy)", OpenGate::shared()),
        (
            "default settings",
            host.runtime
                .settings(DEFAULT_TENANT)
                .await
                .unwrap()
                .gate
                .clone(),
        ),
    ];
    let mut results = Vec::new();
    for (label, gate) in rows {
        results.push((label, admit_times(gate, 2_000).await));
    }
    configure(
        &host,
        json!({
            "frequency_cap": {"count": 1000, "window_ms": 86_400_000},
            "send_window": {"start": "00:00", "end": "00:00"},
            "default_timezone": "Europe/Berlin",
        }),
    )
    .await;
    let gate = host
        .runtime
        .settings(DEFAULT_TENANT)
        .await
        .unwrap()
        .gate
        .clone();
    results.push(("cap + window + zone", admit_times(gate, 2_000).await));
    for (label, stats) in results {
        println!(
            "{label:<24} p50 {:>9}  p99 {:>9}",
            us(stats.p50()),
            us(stats.p99())
        );
    }
}

fn main() {
    common::block_on(async {
        if selected("drain rate outbox") {
            drain_rates().await;
        }
        if selected("policy latency") {
            policy_latency().await;
        }
    });
}
