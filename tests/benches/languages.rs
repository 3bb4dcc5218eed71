//! The welcome series in each language, side by side in one run: component
//! size, cold compile (one run: it takes seconds), load from the artifact
//! cache, instantiate, snapshot size (median over its waits) and resume
//! latency (instantiate, restore, run to the next wait, snapshot, encode;
//! the engine's part of a step, without the database).
//!
//! `cargo bench -p cairn-tests --bench languages`

use cairn::durable::StepEnv;
use cairn::engine::step::Wake;
use cairn::engine::{Engine, EngineConfig, LoadedJourney, Session, StepCall};
use cairn_tests::{DAY, T0, component};
use std::time::{Duration, Instant};

#[path = "common.rs"]
mod common;
use common::{Stats, ms, step_env, us};

const LANGUAGES: [(&str, &str); 4] = [
    ("Rust", "welcome_series"),
    ("JavaScript", "welcome_series_js"),
    ("Python", "welcome_series_py"),
    ("C", "welcome_series_c"),
];

fn env(step: u32) -> StepEnv {
    step_env(step, T0 + u64::from(step) * DAY, T0 + 10 * DAY)
}

fn engine(cache: Option<&std::path::Path>) -> Engine {
    Engine::new(EngineConfig {
        max_instances: 16,
        cache_dir: cache.map(|c| c.to_path_buf()),
        ..EngineConfig::default()
    })
    .unwrap()
}

struct Row {
    size: usize,
    cold: Duration,
    cached: Duration,
    instantiate: Duration,
    snapshot: usize,
    resume: Duration,
}

fn measure(bytes: &[u8]) -> Row {
    let started = Instant::now();
    let journey: LoadedJourney = engine(None).load(bytes).unwrap();
    let cold = started.elapsed();
    drop(journey);

    let cache = tempfile::tempdir().unwrap();
    let cached_engine = engine(Some(cache.path()));
    cached_engine.load(bytes).unwrap();
    let cached = Stats::of(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                cached_engine.load(bytes).unwrap();
                t.elapsed()
            })
            .collect(),
    )
    .p50();

    let journey = cached_engine.load(bytes).unwrap();
    let instantiate = Stats::of(
        (0..50)
            .map(|_| {
                let t = Instant::now();
                drop(Session::new(&cached_engine, &journey, env(0), None).unwrap());
                t.elapsed()
            })
            .collect(),
    )
    .p50();

    let start = StepCall::Start {
        input: r#"{"name":"Ada"}"#.into(),
    };
    let first = Session::run_step(&cached_engine, &journey, env(0), None, start).unwrap();
    let after_start = first.snapshot.unwrap();
    let resume = || {
        Session::run_step(
            &cached_engine,
            &journey,
            env(1),
            Some(&after_start),
            StepCall::Resume(Wake::TimerFired),
        )
        .unwrap()
    };
    let second = resume().snapshot.unwrap();
    let mut sizes = [after_start.len(), second.len()];
    sizes.sort();
    let resume = Stats::of(
        (0..30)
            .map(|_| {
                let t = Instant::now();
                resume();
                t.elapsed()
            })
            .collect(),
    )
    .p50();
    Row {
        size: bytes.len(),
        cold,
        cached,
        instantiate,
        snapshot: sizes[0].midpoint(sizes[1]),
        resume,
    }
}

fn main() {
    println!("== the welcome series in four languages (medians; cold compile is one run)");
    println!(
        "{:<11} {:>10} {:>13} {:>12} {:>12} {:>10} {:>12}",
        "language", "component", "cold compile", "cached load", "instantiate", "snapshot", "resume"
    );
    for (language, name) in LANGUAGES {
        let row = measure(&component(name));
        println!(
            "{language:<11} {:>7} KiB {:>13} {:>12} {:>12} {:>6} KiB {:>12}",
            row.size / 1024,
            ms(row.cold),
            ms(row.cached),
            us(row.instantiate),
            row.snapshot / 1024,
            us(row.resume)
        );
    }
}
