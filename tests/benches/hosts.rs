//! Many hosts on one database, side by side in one run:
//! `cargo bench -p cairn-tests --bench hosts [-- section]`.
//!
//! SQLite with one host beside Postgres (a local cluster with its default
//! durability) with 1, 2 and 3 hosts. The hosts are in this process, each
//! with its own connection pool, engine, scheduler and lease owner, all on
//! one virtual clock; they share this machine's cores with Postgres.
//!
//! - steps/s: 6,000 looper runs come due at once and the hosts' schedulers
//!   drain them (median of 3 rounds), with the CPU time the hosts and the
//!   Postgres processes used meanwhile (where the two cores went);
//! - event-to-resume latency at a sustained 1,000 events/s, the events sent
//!   to the hosts in turn (the ingesting host runs the step it resumed).

use cairn_tests::{Host, T0};
use std::time::Instant;

#[path = "common.rs"]
mod common;
use common::{ms, selected};

const MINUTE: u64 = 60_000;
const RUNS: usize = 6_000;
const USERS: usize = 5_000;
const RATE: u64 = 1_000;

/// The configurations measured, in order.
const SETUPS: [(&str, usize); 4] = [
    ("sqlite", 1),
    ("postgres", 1),
    ("postgres", 2),
    ("postgres", 3),
];

async fn hosts(backend: &str, n: usize) -> Vec<Host> {
    match backend {
        "sqlite" => vec![Host::new().await],
        _ => {
            let url = cairn_tests::postgres::durable_database().await;
            Host::cluster(&url, n).await
        }
    }
}

/// CPU seconds used so far by this process (the hosts) and by every
/// `postgres` process on the machine (the benchmark's cluster), from /proc.
fn cpu_seconds() -> (f64, f64) {
    fn ticks(stat: &str) -> Option<(String, u64)> {
        // "pid (comm) state ...": utime and stime are fields 14 and 15.
        let (head, rest) = stat.rsplit_once(") ")?;
        let comm = head.split_once(" (")?.1.to_string();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some((
            comm,
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
        ))
    }
    let hz = 100.0; // USER_HZ on Linux
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| ticks(&s))
        .map_or(0, |(_, t)| t);
    let mut postgres = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat"))
            && let Some((comm, t)) = ticks(&stat)
            && comm == "postgres"
        {
            postgres += t;
        }
    }
    (own as f64 / hz, postgres as f64 / hz)
}

/// Steps/s of the hosts' schedulers draining `RUNS` runs that came due at
/// once, per round, and the CPU the hosts and Postgres used over all rounds.
async fn steps_per_second(hosts: &[Host]) -> (Vec<f64>, (f64, f64, f64)) {
    let first = &hosts[0];
    let journey = first.deploy("looper").await;
    common::create_loopers(first, &journey, RUNS, T0).await;
    assert_eq!(first.drain().await, RUNS);
    let mut running = common::Running::start(hosts);
    let mut rates = Vec::new();
    let (cpu_hosts, cpu_postgres) = cpu_seconds();
    let wall = Instant::now();
    for _ in 0..3 {
        first.clock.advance(MINUTE);
        let started = Instant::now();
        for host in hosts {
            host.runtime.work.notify_one();
        }
        let mut steps = 0;
        while steps < RUNS {
            steps += running.next_commit().await.0.len();
        }
        rates.push(RUNS as f64 / started.elapsed().as_secs_f64());
    }
    let (hosts_after, postgres_after) = cpu_seconds();
    drop(running);
    (
        rates,
        (
            wall.elapsed().as_secs_f64(),
            hosts_after - cpu_hosts,
            postgres_after - cpu_postgres,
        ),
    )
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    common::block_on(async {
        if selected("steps throughput") {
            println!(
                "== steps/s: {RUNS} looper runs due at once, drained by every host (median of 3)"
            );
            for (backend, n) in SETUPS {
                let (rates, (wall, cpu_hosts, cpu_postgres)) =
                    steps_per_second(&hosts(backend, n).await).await;
                println!(
                    "{backend:>8} x {n} host(s): {:>6.0} steps/s  (rounds: {});  CPU over {wall:.1} s: hosts {cpu_hosts:.1} s, postgres {cpu_postgres:.1} s",
                    median(rates.clone()),
                    rates
                        .iter()
                        .map(|r| format!("{r:.0}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            println!();
        }
        if selected("latency event-to-resume") {
            println!(
                "== event-to-resume at a sustained {RATE} events/s ({USERS} runs waiting), events sent to the hosts in turn"
            );
            for (backend, n) in SETUPS {
                let measured = common::event_to_resume(&hosts(backend, n).await, USERS, RATE).await;
                println!(
                    "{backend:>8} x {n} host(s): p50 {}  p99 {}  max {}  (ingest alone p50 {}  p99 {}; {:.0} events/s)",
                    ms(measured.latency.p50()),
                    ms(measured.latency.p99()),
                    ms(measured.latency.max()),
                    ms(measured.ingest.p50()),
                    ms(measured.ingest.p99()),
                    USERS as f64 / measured.elapsed.as_secs_f64()
                );
            }
            println!();
        }
    });
}
