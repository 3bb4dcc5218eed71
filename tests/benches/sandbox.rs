//! What deploying and sandboxing cost, measured side by side in one run:
//!
//! - `deploy`: from `deploy` to the first step of a run on the new version
//!   committed, with the compiled artifact cached on disk and without;
//! - `limits`: a CPU-heavy step with the CPU limit (epoch interruption) and
//!   without any, alternating.
//!
//! `cargo bench -p cairn-tests --bench sandbox [-- deploy|limits]`

use cairn::clock::ManualClock;
use cairn::durable::StepEnv;
use cairn::engine::step::Wake;
use cairn::engine::{Engine, EngineConfig, Session, StepCall, StepResult};
use cairn::runtime::Runtime;
use cairn::scheduler::Scheduler;
use cairn::store::{DEFAULT_TENANT, Store};
use cairn_tests::{DAY, T0, component};
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "common.rs"]
mod common;
use common::{Stats, ms, selected, step_env};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if selected("deploy") {
        rt.block_on(deploy_to_first_run());
    }
    if selected("limits") {
        limits_overhead();
    }
}

/// Deploys into a fresh host (new database) and runs the first step.
async fn deploy_and_step(bytes: &[u8], cache: &Path) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(EngineConfig {
        cache_dir: Some(cache.to_path_buf()),
        max_instances: 8,
        ..EngineConfig::default()
    })
    .unwrap();
    let url = format!("sqlite://{}", dir.path().join("cairn.db").display());
    let store = Store::open(&url).await.unwrap();
    let clock = ManualClock::new(T0);
    let runtime = Runtime::new(engine, store, clock);
    let scheduler = Scheduler::new(runtime.clone());
    let started = Instant::now();
    let deployed = runtime
        .deploy(DEFAULT_TENANT, bytes.to_vec())
        .await
        .unwrap();
    runtime
        .start_run(
            DEFAULT_TENANT,
            &deployed.journey_id,
            "ada",
            r#"{"name":"Ada"}"#,
        )
        .await
        .unwrap();
    assert_eq!(scheduler.drain(T0).await.unwrap(), 1);
    started.elapsed()
}

async fn deploy_to_first_run() {
    println!("== deploy: from deploy to the first step committed on the new version ==");
    for name in ["welcome_series", "hostile"] {
        let bytes = component(name);
        let warm = tempfile::tempdir().unwrap();
        deploy_and_step(&bytes, warm.path()).await;
        let (mut cold, mut cached) = (Vec::new(), Vec::new());
        for _ in 0..15 {
            let fresh = tempfile::tempdir().unwrap();
            cold.push(deploy_and_step(&bytes, fresh.path()).await);
            cached.push(deploy_and_step(&bytes, warm.path()).await);
        }
        let (cold, cached) = (Stats::of(cold), Stats::of(cached));
        println!(
            "{name:<16} {:>4} KiB  uncached compile p50 {}  cached artifact p50 {}  ratio {:.1}x",
            bytes.len() / 1024,
            ms(cold.p50()),
            ms(cached.p50()),
            cold.p50().as_secs_f64() / cached.p50().as_secs_f64()
        );
    }
}

fn env(step: u32) -> StepEnv {
    step_env(step, T0 + u64::from(step) * 3_600_000, T0 + 30 * DAY)
}

/// Time of the step that hashes `rounds` rounds, on `engine`.
fn heavy_step(
    engine: &Engine,
    snapshot: &[u8],
    journey: &cairn::engine::LoadedJourney,
) -> Duration {
    let started = Instant::now();
    let out = Session::run_step(
        engine,
        journey,
        env(1),
        Some(snapshot),
        StepCall::Resume(Wake::TimerFired),
    )
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(out.result, StepResult::Done, "{:?}", out.result);
    elapsed
}

fn limits_overhead() {
    println!("== limits: a CPU-heavy step (20M hash rounds) with and without the CPU limit ==");
    let bytes = component("hostile");
    let engines = [true, false].map(|cpu_limit| {
        let engine = Engine::new(EngineConfig {
            max_instances: 4,
            cpu_limit,
            ..EngineConfig::default()
        })
        .unwrap();
        let journey = engine.load(&bytes).unwrap();
        let start = StepCall::Start {
            input: r#"{"attack": "work", "n": 20000000}"#.into(),
        };
        let first = Session::run_step(&engine, &journey, env(0), None, start).unwrap();
        (engine, journey, first.snapshot.unwrap())
    });
    let (mut limited, mut unlimited) = (Vec::new(), Vec::new());
    for _ in 0..21 {
        let (engine, journey, snapshot) = &engines[0];
        limited.push(heavy_step(engine, snapshot, journey));
        let (engine, journey, snapshot) = &engines[1];
        unlimited.push(heavy_step(engine, snapshot, journey));
    }
    let (limited, unlimited) = (Stats::of(limited), Stats::of(unlimited));
    println!(
        "epoch CPU limit p50 {}  no limit p50 {}  overhead {:+.1}%",
        ms(limited.p50()),
        ms(unlimited.p50()),
        (limited.p50().as_secs_f64() / unlimited.p50().as_secs_f64() - 1.0) * 100.0
    );
}
