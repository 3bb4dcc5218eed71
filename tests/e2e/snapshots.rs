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

/// The same journey run twice: once with a fresh instance restored from a
/// snapshot at every wait, once on one instance that is never snapshotted.
#[test]
fn a_snapshotted_run_equals_a_run_that_never_left_memory() {
    let clock = ManualClock::new(T0);
    let engine = Engine::new(EngineConfig::default(), clock.clone()).unwrap();
    let journey = engine.load(&component("welcome_series")).unwrap();
    let wakes = [
        StepCall::Start {
            input: r#"{"name":"Ada"}"#.into(),
        },
        StepCall::Resume(Wake::TimerFired),
        StepCall::Resume(Wake::Event {
            name: "purchased".into(),
            properties: r#"{"item":"boots"}"#.into(),
            timestamp: T0 + 2 * DAY,
        }),
    ];
    let advances = [DAY, DAY, 0];

    let mut snapshotted = Vec::new();
    let mut snapshot: Option<Vec<u8>> = None;
    for (step, call) in wakes.iter().cloned().enumerate() {
        let out = Session::run_step(
            &engine,
            &journey,
            env(step as u32),
            snapshot.as_deref(),
            call,
        )
        .unwrap();
        snapshotted.push((
            out.result.clone(),
            out.record.outbox.clone(),
            out.record.effects.clone(),
        ));
        snapshot = out.snapshot;
        clock.advance(advances[step]);
    }

    let clock2 = ManualClock::new(T0);
    let engine2 = Engine::new(EngineConfig::default(), clock2.clone()).unwrap();
    let journey2 = engine2.load(&component("welcome_series")).unwrap();
    let mut live = Session::new(&engine2, &journey2, env(0), None).unwrap();
    let mut reference = Vec::new();
    for (step, call) in wakes.iter().cloned().enumerate() {
        let (result, record) = live.step_in_place(call, env(step as u32 + 1));
        reference.push((result, record.outbox, record.effects));
        clock2.advance(advances[step]);
    }
    assert_eq!(snapshotted, reference);
    assert_eq!(snapshotted[2].0, StepResult::Done);
}

/// The instrumented accessors and wasmtime's debug API read the same state.
#[test]
fn accessor_snapshots_are_byte_identical_to_the_debug_api_oracle() {
    use cairn::snapshot::{encode, oracle};
    let clock = ManualClock::new(T0);
    let engine = Engine::new(
        EngineConfig {
            guest_debug: true,
            ..EngineConfig::default()
        },
        clock.clone(),
    )
    .unwrap();
    for name in cairn_tests::SAMPLES {
        let journey = engine.load(&component(name)).unwrap();
        let mut session = Session::new(&engine, &journey, env(0), None).unwrap();
        let input = format!(
            r#"{{"name":"Ada","trial_ends_at":{},"wait":"sleep"}}"#,
            T0 + 10 * DAY
        );
        let (result, _) = session.step_in_place(StepCall::Start { input }, env(1));
        assert!(
            matches!(result, StepResult::Waiting(_)),
            "{name}: {result:?}"
        );
        let via_accessors = session.capture().unwrap();
        let via_debug =
            oracle::capture_via_debug_api(session.store_mut(), journey.pristine()).unwrap();
        assert!(via_accessors.dirty_bytes() > 0, "{name}");
        assert_eq!(
            encode::encode(&via_accessors, journey.binding()),
            encode::encode(&via_debug, journey.binding()),
            "{name}"
        );
    }
}
