//! What the bench targets share: section selection and percentiles.
// Each bench target includes this file and uses a part of it.
#![allow(dead_code)]

use cairn::durable::StepEnv;
use std::time::Duration;

/// The environment of step `step` of a benchmark run at `now`: run 1,
/// started at [`cairn_tests::T0`], with the default limits.
pub fn step_env(step: u32, now: u64, ceiling_at: u64) -> StepEnv {
    StepEnv {
        run_id: 1,
        step,
        user_id: "bench".into(),
        started_at: cairn_tests::T0,
        ceiling_at,
        now,
        seed: 7,
        gate: cairn::delivery::OpenGate::shared(),
        limits: Default::default(),
    }
}

/// The host a benchmark measures: SQLite, or Postgres (a local cluster with
/// default durability) when `CAIRN_BENCH_DB=postgres`.
pub async fn bench_host() -> cairn_tests::Host {
    match std::env::var("CAIRN_BENCH_DB").as_deref() {
        Ok("postgres") => {
            let url = cairn_tests::postgres::durable_database().await;
            cairn_tests::Host::at(&url, tempfile::tempdir().unwrap()).await
        }
        _ => cairn_tests::Host::new().await,
    }
}

/// Whether to run `section`: every section whose names contain one of the
/// arguments (`cargo bench -p cairn-tests --bench core -- throughput`), or
/// all of them when there is none.
pub fn selected(section: &str) -> bool {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    args.is_empty() || args.iter().any(|a| section.contains(a.as_str()))
}

/// Samples, sorted, for percentiles.
pub struct Stats(Vec<Duration>);

impl Stats {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Stats(samples)
    }

    pub fn pct(&self, p: f64) -> Duration {
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i]
    }

    pub fn p50(&self) -> Duration {
        self.pct(0.5)
    }

    pub fn p99(&self) -> Duration {
        self.pct(0.99)
    }

    pub fn max(&self) -> Duration {
        *self.0.last().expect("at least one sample")
    }
}

/// Microseconds, one decimal.
pub fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Milliseconds, two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
