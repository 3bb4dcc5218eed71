//! Snapshots at wait points: instance dropped at every wait, restored from bytes.

use cairn::durable::StepEnv;
use cairn::engine::step::Wake;
use cairn::engine::{Engine, EngineConfig, Session, StepCall, StepResult};
use cairn_tests::{DAY, T0, component};

/// The environment of step `step` of run 7, whose logical time is `now`.
fn env(step: u32, now: u64) -> StepEnv {
    StepEnv {
        run_id: 7,
        step,
        user_id: "ada".into(),
        started_at: T0,
        ceiling_at: T0 + 10 * DAY,
        now,
        seed: 0x5eed,
        gate: cairn::delivery::OpenGate::shared(),
        limits: Default::default(),
    }
}

fn engine(guest_debug: bool) -> Engine {
    Engine::new(EngineConfig {
        guest_debug,
        max_instances: 8,
        ..EngineConfig::default()
    })
    .unwrap()
}

/// The welcome series' scenario: start, a day's sleep, then a purchase.
fn welcome_scenario() -> Vec<(StepCall, u64)> {
    vec![
        (
            StepCall::Start {
                input: r#"{"name":"Ada"}"#.into(),
            },
            T0,
        ),
        (StepCall::Resume(Wake::TimerFired), T0 + DAY),
        (
            StepCall::Resume(Wake::Event {
                name: "purchased".into(),
                properties: r#"{"item":"boots"}"#.into(),
                timestamp: T0 + 2 * DAY,
            }),
            T0 + 2 * DAY,
        ),
    ]
}

#[test]
fn welcome_series_survives_a_snapshot_at_every_wait() {
    let engine = engine(false);
    let journey = engine.load(&component("welcome_series")).unwrap();
    assert_eq!(journey.meta.id, "welcome-series");

    let start = StepCall::Start {
        input: r#"{"name":"Ada"}"#.into(),
    };
    let out = Session::run_step(&engine, &journey, env(0, T0), None, start).unwrap();
    let StepResult::Waiting(wait) = &out.result else {
        panic!("{:?}", out.result)
    };
    assert_eq!(wait.deadline, T0 + DAY);
    let timer = StepCall::Resume(Wake::TimerFired);
    let out = Session::run_step(
        &engine,
        &journey,
        env(1, T0 + DAY),
        out.snapshot.as_deref(),
        timer,
    )
    .unwrap();
    assert!(
        matches!(out.result, StepResult::Waiting(_)),
        "{:?}",
        out.result
    );
    let timeout = StepCall::Resume(Wake::TimedOut);
    let out = Session::run_step(
        &engine,
        &journey,
        env(2, T0 + 4 * DAY),
        out.snapshot.as_deref(),
        timeout,
    )
    .unwrap();
    assert_eq!(out.result, StepResult::Done);
    let reminder = &out.record.outbox[0];
    assert_eq!(reminder.template, "reminder");
    assert_eq!(
        reminder.props["history"],
        serde_json::json!([
            format!("welcomed@{T0}"),
            format!("tips-sent@{}", T0 + DAY),
            format!("reminded@{}", T0 + 4 * DAY)
        ])
    );
    assert_eq!(reminder.props["tally"]["welcomed"], 1);
}

/// The same journey run twice: once with a fresh instance restored from a
/// snapshot at every wait, once on one instance that is never snapshotted.
#[test]
fn a_snapshotted_run_equals_a_run_that_never_left_memory() {
    let engine = engine(false);
    let journey = engine.load(&component("welcome_series")).unwrap();
    let mut snapshotted = Vec::new();
    let mut snapshot: Option<Vec<u8>> = None;
    for (step, (call, now)) in welcome_scenario().into_iter().enumerate() {
        let out = Session::run_step(
            &engine,
            &journey,
            env(step as u32, now),
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
    }

    let scenario = welcome_scenario();
    let mut live = Session::new(&engine, &journey, env(0, T0), None).unwrap();
    let mut reference = Vec::new();
    for (step, (call, _)) in scenario.iter().cloned().enumerate() {
        let next_now = scenario.get(step + 1).map_or(T0, |(_, now)| *now);
        let (result, record) = live.step_in_place(call, env(step as u32 + 1, next_now));
        reference.push((result, record.outbox, record.effects));
    }
    assert_eq!(snapshotted, reference);
    assert_eq!(snapshotted[2].0, StepResult::Done);
}

/// A step re-run after a crash (its first attempt lost before commit) sees
/// the same time, the same randoms and the same send receipts.
#[test]
fn a_rerun_step_sees_the_same_now_randoms_and_receipts() {
    let engine = engine(false);
    let journey = engine.load(&component("welcome_series")).unwrap();
    let attempt = || {
        let start = StepCall::Start {
            input: r#"{"name":"Ada"}"#.into(),
        };
        Session::run_step(&engine, &journey, env(0, T0), None, start).unwrap()
    };
    let (lost, rerun) = (attempt(), attempt());
    assert!(lost.record.journal.iter().any(|j| j.import == "random-u64"));
    assert!(lost.record.journal.iter().any(|j| j.import == "now"));
    assert!(lost.record.journal.iter().any(|j| j.import == "send"));
    assert_eq!(lost.record.journal, rerun.record.journal);
    assert_eq!(lost.record.outbox, rerun.record.outbox);
    assert_eq!(lost.snapshot, rerun.snapshot, "even the heap is the same");

    // Another run (another seed) gets other randoms.
    let other = Session::run_step(
        &engine,
        &journey,
        StepEnv {
            seed: 0xfeed,
            gate: cairn::delivery::OpenGate::shared(),
            limits: Default::default(),
            ..env(0, T0)
        },
        None,
        StepCall::Start { input: "{}".into() },
    )
    .unwrap();
    let random = |o: &cairn::engine::StepOutcome| {
        o.record
            .journal
            .iter()
            .find(|j| j.import == "random-u64")
            .unwrap()
            .value
            .clone()
    };
    assert_ne!(random(&lost), random(&other));
}

/// The instrumented accessors and wasmtime's debug API read the same state.
#[test]
fn accessor_snapshots_are_byte_identical_to_the_debug_api_oracle() {
    use cairn::snapshot::{encode, oracle};
    let engine = engine(true);
    for name in cairn_tests::SAMPLES {
        let journey = engine.load(&component(name)).unwrap();
        let mut session = Session::new(&engine, &journey, env(0, T0), None).unwrap();
        let input = format!(
            r#"{{"name":"Ada","trial_ends_at":{},"wait":"sleep"}}"#,
            T0 + 10 * DAY
        );
        let (result, _) = session.step_in_place(StepCall::Start { input }, env(1, T0));
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
