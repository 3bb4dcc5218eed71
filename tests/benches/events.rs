//! Event benchmarks, side by side in one run:
//! `cargo bench -p cairn-tests --bench events [-- section]`.
//!
//! - event-to-resume latency at a sustained 1,000 events/s: from the ingest
//!   call to the commit of the step the event woke (p50, p99);
//! - ingest throughput in batches of 1,000 (events that match nothing, and
//!   signups that enroll);
//! - host memory (RSS) holding 10k, 100k and 1M waiting runs
//!   (`CAIRN_BENCH_MAX_RUNS` caps the largest; default 1,000,000).

use cairn::ingest::IncomingEvent;
use cairn::store::DEFAULT_TENANT;
use cairn_tests::{DAY, Host};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[path = "common.rs"]
mod common;
use common::{Stats, ms, selected};

fn event(user: String, name: &str) -> IncomingEvent {
    IncomingEvent {
        user_id: user,
        name: name.into(),
        properties: None,
        timestamp: None,
        idempotency_key: None,
    }
}

/// Signs up users `from..to` in batches of 1,000; their run ids in order.
async fn sign_up(host: &Host, from: usize, to: usize) -> Vec<i64> {
    let mut runs = Vec::with_capacity(to - from);
    let mut start = from;
    while start < to {
        let end = (start + 1_000).min(to);
        let batch = (start..end)
            .map(|i| event(format!("user-{i}"), "signed_up"))
            .collect();
        for outcome in host
            .runtime
            .ingest_events(DEFAULT_TENANT, batch)
            .await
            .unwrap()
        {
            runs.extend(outcome.enrolled);
        }
        start = end;
    }
    runs
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

async fn event_to_resume() {
    const USERS: usize = 10_000;
    const RATE: u64 = 1_000;
    println!(
        "== event-to-resume latency at a sustained {RATE} events/s ({USERS} runs waiting for the event)"
    );
    let host = common::bench_host().await;
    host.deploy("welcome_series").await;
    let runs = sign_up(&host, 0, USERS).await;
    host.drain().await;
    host.advance(DAY).await; // everyone now waits for "purchased"
    let user_of: HashMap<i64, usize> = runs.iter().enumerate().map(|(i, r)| (*r, i)).collect();

    let mut committed = host.runtime.committed.subscribe();
    let scheduler = tokio::spawn(host.scheduler.clone().run());
    let start = Instant::now();
    // Events arrive on their own schedule, from concurrent producers.
    let sender = {
        let runtime = host.runtime.clone();
        tokio::spawn(async move {
            let mut sent = Vec::with_capacity(USERS);
            let mut calls = Vec::with_capacity(USERS);
            for i in 0..USERS {
                tokio::time::sleep_until(
                    (start + Duration::from_micros(i as u64 * 1_000_000 / RATE)).into(),
                )
                .await;
                let at = Instant::now();
                sent.push(at);
                let runtime = runtime.clone();
                calls.push(tokio::spawn(async move {
                    let outcome = runtime
                        .ingest_events(
                            DEFAULT_TENANT,
                            vec![event(format!("user-{i}"), "purchased")],
                        )
                        .await;
                    assert_eq!(outcome.unwrap()[0].resumed.len(), 1);
                    at.elapsed()
                }));
            }
            let mut ingest = Vec::with_capacity(USERS);
            for call in calls {
                ingest.push(call.await.unwrap());
            }
            (sent, ingest)
        })
    };
    let mut resumed_at = vec![None; USERS];
    let mut seen = 0;
    while seen < USERS {
        let runs = tokio::time::timeout(Duration::from_secs(60), committed.recv())
            .await
            .expect("steps stopped committing")
            .expect("the commit channel lagged");
        let now = Instant::now();
        for run in runs.iter() {
            if let Some(&user) = user_of.get(run)
                && resumed_at[user].is_none()
            {
                resumed_at[user] = Some(now);
                seen += 1;
            }
        }
    }
    let (sent, ingest) = sender.await.unwrap();
    let ingest = Stats::of(ingest);
    scheduler.abort();
    let elapsed = sent.last().unwrap().duration_since(start);
    let latencies = Stats::of(
        sent.iter()
            .zip(&resumed_at)
            .map(|(s, r)| r.unwrap().duration_since(*s))
            .collect(),
    );
    println!(
        "{USERS} events in {:.1} s ({:.0}/s): event -> resumed step committed p50 {}  p99 {}  max {}  (target p99 <= 5 ms)",
        elapsed.as_secs_f64(),
        USERS as f64 / elapsed.as_secs_f64(),
        ms(latencies.p50()),
        ms(latencies.p99()),
        ms(latencies.max())
    );
    println!(
        "of which ingest (event stored, wait resolved, caller answered) p50 {}  p99 {}\n",
        ms(ingest.p50()),
        ms(ingest.p99())
    );
}

async fn ingest_throughput() {
    println!("== ingest throughput, batches of 1,000 events");
    let host = Host::new().await;
    host.deploy("welcome_series").await;
    host.deploy("abandoned_cart").await;
    for (label, name) in [
        ("events matching no journey", "page_viewed"),
        ("signups that enroll a run", "signed_up"),
    ] {
        let mut total = Duration::ZERO;
        let mut events = 0;
        for b in 0..20 {
            let batch: Vec<_> = (0..1_000)
                .map(|i| event(format!("user-{b}-{i}"), name))
                .collect();
            let t = Instant::now();
            host.runtime
                .ingest_events(DEFAULT_TENANT, batch)
                .await
                .unwrap();
            total += t.elapsed();
            events += 1_000;
        }
        println!(
            "{label:<28} {:>8.0} events/s",
            events as f64 / total.as_secs_f64()
        );
    }
    println!();
}

async fn memory() {
    let max: usize = std::env::var("CAIRN_BENCH_MAX_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!(
        "== host memory with many waiting runs (runs created through ingest, first step executed)"
    );
    let host = Host::new().await;
    host.deploy("welcome_series").await;
    println!("{:>9} runs  RSS {:>7.1} MiB", 0, rss_mib());
    let mut created = 0;
    for level in [10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|l| *l <= max)
    {
        let t = Instant::now();
        sign_up(&host, created, level).await;
        host.drain().await;
        created = level;
        let db = std::fs::metadata(host.dir.path().join("cairn.db")).map_or(0, |m| m.len());
        let waiting: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = 'waiting'")
            .fetch_one(host.runtime.store.pool())
            .await
            .unwrap();
        println!(
            "{waiting:>9} runs  RSS {:>7.1} MiB   database {:>6.0} MiB   (created and started in {:.0} s)",
            rss_mib(),
            db as f64 / (1 << 20) as f64,
            t.elapsed().as_secs_f64()
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if selected("latency event-to-resume") {
            event_to_resume().await;
        }
        if selected("ingest throughput") {
            ingest_throughput().await;
        }
        if selected("memory rss") {
            memory().await;
        }
    });
}
