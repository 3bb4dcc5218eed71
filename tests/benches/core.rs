//! Core benchmarks, measured side by side in one run:
//! `cargo bench -p cairn-tests --bench core`.
//!
//! - snapshot size per sample journey (median over its waits);
//! - resume latency: load snapshot, restore, run to the next wait, snapshot,
//!   commit to a SQLite file, one run per tick (p50, p99), and the engine's
//!   part of it alone;
//! - resume cost at step ~1 vs step ~1000, beside the cost of replaying to
//!   that step (what a replay-based engine pays);
//! - throughput: journey steps per second with group commit;
//! - instantiate + restore, instrumentation route vs the guest_debug route.

use cairn::durable::StepEnv;
use cairn::engine::step::Wake;
use cairn::engine::{Engine, EngineConfig, Session, StepCall};
use cairn::store::{LEASE_MS, Lease};
use cairn_tests::{DAY, Host, NowMs, T0, component};
use std::time::{Duration, Instant};

#[path = "common.rs"]
mod common;
use common::{Stats, selected, step_env, us};

const MINUTE: u64 = 60_000;

fn env(step: u32) -> StepEnv {
    step_env(step, T0 + u64::from(step) * MINUTE, T0 + 365 * DAY)
}

fn main() {
    common::block_on(async {
        if selected("snapshot-sizes") {
            snapshot_sizes().await;
        }
        if selected("resume-latency history") {
            resume_latency_and_history().await;
        }
        if selected("throughput") {
            throughput().await;
        }
    });
    if selected("instantiate-restore") {
        instantiate_and_restore();
    }
}

async fn snapshot_sizes() {
    println!("== snapshot size per wait (zstd), median over the journey's waits");
    let host = Host::new().await;
    let cases = [
        ("welcome_series", r#"{"name":"Ada"}"#.to_string()),
        (
            "trial_expiry",
            format!(r#"{{"trial_ends_at":{}}}"#, T0 + 14 * DAY),
        ),
        ("ceiling_probe", r#"{"wait":"event"}"#.to_string()),
        ("looper", r#"{"n":20}"#.to_string()),
    ];
    let mut all: Vec<u64> = Vec::new();
    for (name, input) in cases {
        let journey = host.deploy(name).await;
        let run = host.start(&journey, name, &input).await;
        for _ in 0..40 {
            host.advance(DAY).await;
        }
        let mut sizes: Vec<u64> = host
            .runtime
            .store
            .timeline(run.id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == "wait")
            .filter_map(|e| e.detail["snapshot_bytes"].as_u64())
            .collect();
        sizes.sort();
        all.extend(&sizes);
        println!(
            "{name:<16} waits {:>3}  median {:>5} B  max {:>5} B  final status {:?}",
            sizes.len(),
            sizes[sizes.len() / 2],
            sizes[sizes.len() - 1],
            host.run(run.id).await.status
        );
    }
    all.sort();
    println!(
        "{:<16} median {} B (target <= 8192 B)\n",
        "all samples",
        all[all.len() / 2]
    );
}

async fn resume_latency_and_history() {
    println!("== resume latency: one due run per tick, SQLite file, full path");
    let host = Host::new().await;
    let journey = host.deploy("looper").await;
    let run = host.start(&journey, "bench", r#"{"n":1000000}"#).await;
    let mut ticks = Vec::new();
    for _ in 0..1100 {
        host.clock.advance(MINUTE);
        let now = host.clock.now_ms();
        let t = Instant::now();
        let report = host.scheduler.tick(now).await.unwrap();
        ticks.push(t.elapsed());
        assert_eq!(report.committed, 1);
    }
    assert_eq!(host.run(run.id).await.step, 1101);
    let all = Stats::of(ticks[50..].to_vec());
    println!(
        "tick with 1 resume      p50 {}  p99 {}  (target p50 <= 1 ms)",
        us(all.p50()),
        us(all.p99())
    );

    // The engine's share: restore + run + snapshot, no database.
    let engine = host.runtime.engine.clone();
    let loaded = host
        .runtime
        .journey(&run.tenant_id, &run.version)
        .await
        .unwrap();
    let due = host
        .runtime
        .store
        .claim_due(
            &Lease::new("bench", host.runtime.lease_now(), LEASE_MS),
            i64::MAX as u64,
            1,
        )
        .await
        .unwrap();
    let mut snapshot = due[0].snapshot.clone().unwrap();
    let mut engine_only = Vec::new();
    for i in 0..1000 {
        let t = Instant::now();
        let out = Session::run_step(
            &engine,
            &loaded,
            env(2000 + i),
            Some(&snapshot),
            StepCall::Resume(Wake::TimerFired),
        )
        .unwrap();
        engine_only.push(t.elapsed());
        snapshot = out.snapshot.unwrap();
    }
    let engine_only = Stats::of(engine_only);
    println!(
        "engine only (restore, run, snapshot)  p50 {}  p99 {}  -> database share of a tick ~{}",
        us(engine_only.p50()),
        us(engine_only.p99()),
        us(all.p50().saturating_sub(engine_only.p50()))
    );

    // Where the database's time goes: claiming due work vs committing a step.
    let mut claim = Vec::new();
    let mut round_trip = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        // Nothing is due at this time: the cost of one claim statement.
        host.runtime
            .store
            .claim_due(
                &Lease::new("bench", host.runtime.lease_now(), LEASE_MS),
                host.clock.now_ms(),
                1,
            )
            .await
            .unwrap();
        claim.push(t.elapsed());
        let t = Instant::now();
        sqlx::query("SELECT 1")
            .execute(host.runtime.store.pool())
            .await
            .unwrap();
        round_trip.push(t.elapsed());
    }
    let (claim, round_trip) = (Stats::of(claim), Stats::of(round_trip));
    println!(
        "  database p50: claim statement {}  one round trip (SELECT 1) {}  -> commit ~{}",
        us(claim.p50()),
        us(round_trip.p50()),
        us(all
            .p50()
            .saturating_sub(engine_only.p50())
            .saturating_sub(claim.p50()))
    );

    // Where the engine's time goes.
    let mut phases = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for i in 0..1000u32 {
        let t = Instant::now();
        let mut session = Session::new(&engine, &loaded, env(5000 + i), Some(&snapshot)).unwrap();
        let restored = t.elapsed();
        let t = Instant::now();
        let called = session.call(StepCall::Resume(Wake::TimerFired));
        let ran = t.elapsed();
        let t = Instant::now();
        let snap = session.capture().unwrap();
        let captured = t.elapsed();
        let t = Instant::now();
        let bytes = cairn::snapshot::encode::encode(&snap, loaded.binding());
        let encoded = t.elapsed();
        assert!(called.is_ok() && !bytes.is_empty());
        for (phase, d) in phases.iter_mut().zip([restored, ran, captured, encoded]) {
            phase.push(d);
        }
    }
    let [restored, ran, captured, encoded] = phases.map(Stats::of);
    println!(
        "  phases p50: instantiate+decode+restore {}  run {}  capture {}  encode {}  (memory {} KiB)",
        us(restored.p50()),
        us(ran.p50()),
        us(captured.p50()),
        us(encoded.p50()),
        loaded.pristine_bytes() / 1024
    );

    println!("\n== resume cost in history length (engine only, alternating in one loop)");
    // Snapshots of one looper run at step 1 and at step 1000.
    let mut at_step = Vec::new();
    let mut snap = None;
    for step in 0..=1000u32 {
        let call = if step == 0 {
            StepCall::Start {
                input: r#"{"n":1000000}"#.into(),
            }
        } else {
            StepCall::Resume(Wake::TimerFired)
        };
        let out = Session::run_step(&engine, &loaded, env(step), snap.as_deref(), call).unwrap();
        snap = out.snapshot;
        if step == 1 || step == 1000 {
            at_step.push((step, snap.clone().unwrap()));
        }
    }
    let (mut early, mut late) = (Vec::new(), Vec::new());
    for _ in 0..1000 {
        for (step, snapshot) in &at_step {
            let t = Instant::now();
            Session::run_step(
                &engine,
                &loaded,
                env(step + 1),
                Some(snapshot),
                StepCall::Resume(Wake::TimerFired),
            )
            .unwrap();
            if *step == 1 {
                early.push(t.elapsed())
            } else {
                late.push(t.elapsed())
            }
        }
    }
    let (early, late) = (Stats::of(early), Stats::of(late));
    println!(
        "resume at step 2: p50 {}   at step 1001: p50 {}   ratio {:.2} (snapshots {} B vs {} B)",
        us(early.p50()),
        us(late.p50()),
        late.p50().as_secs_f64() / early.p50().as_secs_f64(),
        at_step[0].1.len(),
        at_step[1].1.len()
    );
    // A replay engine re-executes every earlier step to reach step k.
    for k in [1u32, 1000] {
        let mut samples = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let mut session = Session::new(&engine, &loaded, env(0), None).unwrap();
            session.step_in_place(
                StepCall::Start {
                    input: r#"{"n":1000000}"#.into(),
                },
                env(1),
            );
            for step in 1..k {
                session.step_in_place(StepCall::Resume(Wake::TimerFired), env(step + 1));
            }
            samples.push(t.elapsed());
        }
        println!(
            "replay to step {k:>4} (no database, no journal): p50 {}  vs snapshot resume at step 1001 {}",
            us(Stats::of(samples).p50()),
            us(late.p50())
        );
    }
    println!();
}

async fn throughput() {
    println!("== throughput: journey steps/s with group commit (256 per transaction)");
    for workers in [1, 2] {
        throughput_with(workers).await;
    }
}

async fn throughput_with(workers: usize) {
    println!("-- {workers} step worker(s)");
    const RUNS: usize = 10_000;
    let mut host = common::bench_host().await;
    host.scheduler = host.scheduler.clone().with_parallelism(workers);
    let journey = host.deploy("looper").await;
    let t = Instant::now();
    common::create_loopers(&host, &journey, RUNS, T0).await;
    let created = t.elapsed();
    let t = Instant::now();
    let started = host.drain().await;
    let start_secs = t.elapsed().as_secs_f64();
    host.clock.advance(MINUTE);
    let t = Instant::now();
    let resumed = host.drain().await;
    let resume_secs = t.elapsed().as_secs_f64();
    assert_eq!((started, resumed), (RUNS, RUNS));
    println!(
        "{RUNS} runs created in {:.2} s; pipelined drain: first steps {:.0}/s, resume steps {:.0}/s (target >= 10,000/s)",
        created.as_secs_f64(),
        started as f64 / start_secs,
        resumed as f64 / resume_secs
    );
    // Where a batch's time goes, one sequential tick at a time.
    host.clock.advance(MINUTE);
    let (mut steps, mut claim, mut execute, mut commit) =
        (0, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    loop {
        let report = host.scheduler.tick(host.clock.now_ms()).await.unwrap();
        if report.committed == 0 {
            break;
        }
        steps += report.committed;
        claim += report.claim;
        execute += report.execute;
        commit += report.commit;
    }
    let per_step = |d: Duration| us(d / steps as u32);
    println!(
        "  sequential ticks, per step: claim {}  execute {} (on all cores)  commit {}\n",
        per_step(claim),
        per_step(execute),
        per_step(commit)
    );
}

fn instantiate_and_restore() {
    println!("== instantiate + restore: instrumentation route vs guest_debug route");
    let make = |guest_debug| {
        Engine::new(EngineConfig {
            guest_debug,
            max_instances: 16,
            ..EngineConfig::default()
        })
        .unwrap()
    };
    let (fast, debug) = (make(false), make(true));
    let bytes = component("welcome_series");
    let (fast_j, debug_j) = (fast.load(&bytes).unwrap(), debug.load(&bytes).unwrap());
    let out = Session::run_step(
        &fast,
        &fast_j,
        env(0),
        None,
        StepCall::Start { input: "{}".into() },
    )
    .unwrap();
    let snapshot = out.snapshot.unwrap();
    let mut rows = Vec::new();
    for (label, engine, journey) in [
        ("instrumented", &fast, &fast_j),
        ("guest_debug", &debug, &debug_j),
    ] {
        let mut plain = Vec::new();
        let mut restored = Vec::new();
        for _ in 0..300 {
            let t = Instant::now();
            drop(Session::new(engine, journey, env(1), None).unwrap());
            plain.push(t.elapsed());
            let t = Instant::now();
            drop(Session::new(engine, journey, env(1), Some(&snapshot)).unwrap());
            restored.push(t.elapsed());
        }
        let (plain, restored) = (Stats::of(plain), Stats::of(restored));
        println!(
            "{label:<13} instantiate p50 {}   instantiate+restore p50 {}",
            us(plain.p50()),
            us(restored.p50())
        );
        rows.push(restored.p50());
    }
    println!(
        "guest_debug / instrumented (instantiate+restore): {:.1}x",
        rows[1].as_secs_f64() / rows[0].as_secs_f64()
    );
}
