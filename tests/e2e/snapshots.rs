//! Snapshots at wait points: instance dropped at every wait, restored from bytes.

use cairn::clock::ManualClock;
use cairn::durable::StepEnv;
use cairn::engine::step::Wake;
use cairn::engine::{Engine, EngineConfig, Session, StepCall, StepResult};
use cairn_tests::component;

const DAY: u64 = 86_400_000;
const T0: u64 = 1_780_000_000_000;

fn env(step: u32) -> StepEnv {
    StepEnv {
        run_id: 7,
        step,
        user_id: "ada".into(),
        started_at: T0,
        ceiling_at: T0 + 10 * DAY,
    }
}

#[test]
fn welcome_series_survives_a_snapshot_at_every_wait() {
    let clock = ManualClock::new(T0);
    let engine = Engine::new(EngineConfig::default(), clock.clone()).unwrap();
    let journey = engine.load(&component("welcome_series")).unwrap();
    assert_eq!(journey.meta.id, "welcome-series");

    let out = Session::run_step(
        &engine,
        &journey,
        env(0),
        None,
        StepCall::Start {
            input: r#"{"name":"Ada"}"#.into(),
        },
    )
    .unwrap();
    let StepResult::Waiting(wait) = &out.result else {
        panic!("{:?}", out.result)
    };
    assert_eq!(wait.deadline, T0 + DAY);
    let snap = out.snapshot.unwrap();
    eprintln!("snapshot {} bytes, dirty {}", snap.len(), out.dirty_bytes);

    clock.advance(DAY);
    let out = Session::run_step(
        &engine,
        &journey,
        env(1),
        Some(&snap),
        StepCall::Resume(Wake::TimerFired),
    )
    .unwrap();
    assert!(
        matches!(out.result, StepResult::Waiting(_)),
        "{:?}",
        out.result
    );
    let snap = out.snapshot.unwrap();
    clock.advance(3 * DAY);
    let out = Session::run_step(
        &engine,
        &journey,
        env(2),
        Some(&snap),
        StepCall::Resume(Wake::TimedOut),
    )
    .unwrap();
    assert_eq!(out.result, StepResult::Done);
    let reminder = &out.record.outbox[0];
    assert_eq!(reminder.template, "reminder");
    eprintln!("{}", reminder.props);
    assert_eq!(reminder.props["tally"]["welcomed"], 1);
}
