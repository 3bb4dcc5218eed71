//! Event benchmarks, side by side in one run:
//! `cargo bench -p cairn-tests --bench events [-- section]`.
//!
//! - event-to-resume latency at a sustained 1,000 events/s: from the ingest
//!   call to the commit of the step the event woke (p50, p99);
//! - ingest throughput in batches of 1,000 (events that match nothing, and
//!   signups that enroll);
//! - host memory (RSS) holding 10k, 100k and 1M waiting runs
//!   (`CAIRN_BENCH_MAX_RUNS` caps the largest; default 1,000,000).

use cairn::store::DEFAULT_TENANT;
use cairn_tests::Host;
use std::time::{Duration, Instant};

#[path = "common.rs"]
mod common;
use common::{event, ms, selected, sign_up};

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
    // `CAIRN_BENCH_RATE` measures another rate (where the tail comes from).
    let rate: u64 = std::env::var("CAIRN_BENCH_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000);
    println!(
        "== event-to-resume latency at a sustained {rate} events/s ({USERS} runs waiting for the event)"
    );
    let host = common::bench_host().await;
    let measured = common::event_to_resume(std::slice::from_ref(&host), USERS, rate).await;
    println!(
        "{USERS} events in {:.1} s ({:.0}/s): event -> resumed step committed p50 {}  p99 {}  max {}  (target p99 <= 5 ms)",
        measured.elapsed.as_secs_f64(),
        USERS as f64 / measured.elapsed.as_secs_f64(),
        ms(measured.latency.p50()),
        ms(measured.latency.p99()),
        ms(measured.latency.max())
    );
    println!(
        "of which ingest (event stored, wait resolved, caller answered) p50 {}  p99 {}",
        ms(measured.ingest.p50()),
        ms(measured.ingest.p99())
    );
    println!(
        "per event: {} CPU (all threads), {:.1} thread switches\n",
        common::us(measured.cpu_per_event),
        measured.switches_per_event
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
    common::block_on(async {
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
