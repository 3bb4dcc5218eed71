//! Runs one step of a journey: a fresh instance, restored from the run's
//! last snapshot, called with `start` or `resume`, snapshotted again if it
//! reached a wait.
//!
//! [`Session`] is the unit: [`Session::run_step`] is what the scheduler uses
//! (fresh instance per step); tests also keep one session across several
//! calls to compare against a run that was never snapshotted.

use super::Engine;
use super::bindings::Journey;
use super::bindings::cairn::journey::types as wit;
use super::load::LoadedJourney;
use crate::durable::{StepEnv, StepRecord, StepState, Wait};
use crate::snapshot::{self, Snapshot, SnapshotError};
use wasmtime::Store;
use wasmtime::component::Instance;

/// What to call.
#[derive(Debug, Clone)]
pub enum StepCall {
    Start { input: String },
    Resume(Wake),
}

/// How a wait ended, as the host delivers it.
#[derive(Debug, Clone, PartialEq)]
pub enum Wake {
    TimerFired,
    Event {
        name: String,
        properties: String,
        timestamp: u64,
    },
    TimedOut,
}

/// Where the run stands after the step.
#[derive(Debug, Clone, PartialEq)]
pub enum StepResult {
    Waiting(Wait),
    Done,
    Failed(String),
    /// The host could not finish the step (its database did not answer): it
    /// is not committed, and runs again from the same snapshot.
    Deferred(String),
}

/// A finished step: its result, its effects, and the snapshot to store if it waits.
#[derive(Debug)]
pub struct StepOutcome {
    pub result: StepResult,
    pub record: StepRecord,
    /// The encoded snapshot, present when `result` is `Waiting`.
    pub snapshot: Option<Vec<u8>>,
    /// Uncompressed bytes of dirty pages in the snapshot.
    pub dirty_bytes: usize,
}

/// A live instance of one journey for one run.
pub struct Session<'a> {
    journey: &'a LoadedJourney,
    store: Store<StepState>,
    instance: Instance,
    bindings: Journey,
}

impl<'a> Session<'a> {
    /// A fresh instance, restored from `snapshot` if given.
    ///
    /// # Errors
    /// The snapshot does not belong to this journey, or restoring it failed.
    pub fn new(
        engine: &Engine,
        journey: &'a LoadedJourney,
        env: StepEnv,
        snapshot: Option<&[u8]>,
    ) -> Result<Self, SnapshotError> {
        let mut store = engine.new_store(env);
        let instance = journey
            .instance_pre
            .instantiate(&mut store)
            .map_err(|source| SnapshotError::Accessor {
                function: "instantiate".into(),
                source,
            })?;
        if let Some(bytes) = snapshot {
            let decoded = snapshot::encode::decode(bytes, &journey.binding)?;
            snapshot::restore::restore(&journey.access, &mut store, &instance, &decoded)?;
        }
        let bindings = journey
            .indices
            .load(&mut store, &instance)
            .map_err(|source| SnapshotError::Accessor {
                function: "exports".into(),
                source,
            })?;
        Ok(Session {
            journey,
            store,
            instance,
            bindings,
        })
    }

    /// Restores, calls, and snapshots: one whole step on a fresh instance.
    ///
    /// # Errors
    /// Only host-side failures (a snapshot that does not fit); guest traps
    /// are a `Failed` result.
    pub fn run_step(
        engine: &Engine,
        journey: &LoadedJourney,
        env: StepEnv,
        snapshot: Option<&[u8]>,
        call: StepCall,
    ) -> Result<StepOutcome, SnapshotError> {
        let _span =
            tracing::debug_span!("cairn.engine.step", run = env.run_id, step = env.step).entered();
        let mut session = Session::new(engine, journey, env, snapshot)?;
        let result = session.call(call);
        session.finish(result)
    }

    /// Calls the export; the result is not yet checked against the registered wait.
    pub fn call(&mut self, call: StepCall) -> Result<wit::Step, wasmtime::Error> {
        match call {
            StepCall::Start { input } => {
                let env = &self.store.data().env;
                let input = wit::StartInput {
                    user_id: env.user_id.clone(),
                    input,
                    started_at: env.started_at,
                };
                self.bindings.call_start(&mut self.store, &input)
            }
            StepCall::Resume(wake) => {
                let wake = match wake {
                    Wake::TimerFired => wit::Wake::TimerFired,
                    Wake::TimedOut => wit::Wake::TimedOut,
                    Wake::Event {
                        name,
                        properties,
                        timestamp,
                    } => wit::Wake::Event(wit::Event {
                        name,
                        properties,
                        timestamp,
                    }),
                };
                self.bindings.call_resume(&mut self.store, &wake)
            }
        }
    }

    /// Interprets the export's result and, if the journey waits, snapshots it.
    ///
    /// # Errors
    /// Capturing the snapshot failed.
    pub fn finish(
        mut self,
        called: Result<wit::Step, wasmtime::Error>,
    ) -> Result<StepOutcome, SnapshotError> {
        let result = self.interpret(called);
        let record = std::mem::take(&mut self.store.data_mut().record);
        let (snapshot, dirty_bytes) = match &result {
            StepResult::Waiting(_) => {
                let snap = self.capture()?;
                let dirty = snap.dirty_bytes();
                (
                    Some(snapshot::encode::encode(&snap, &self.journey.binding)),
                    dirty,
                )
            }
            _ => (None, 0),
        };
        let limit = self.store.data().limits().max_snapshot_bytes;
        if let Some(bytes) = snapshot.as_ref().filter(|s| s.len() > limit) {
            return Ok(StepOutcome {
                result: StepResult::Failed(format!(
                    "snapshot limit exceeded: the instance's state at its wait is {} KiB compressed \
                     ({} KiB of changed memory), the limit is {} KiB",
                    bytes.len() >> 10,
                    dirty_bytes >> 10,
                    limit >> 10
                )),
                record,
                snapshot: None,
                dirty_bytes,
            });
        }
        Ok(StepOutcome {
            result,
            record,
            snapshot,
            dirty_bytes,
        })
    }

    /// Like [`Self::finish`], but keeps the instance alive for another step.
    pub fn step_in_place(&mut self, call: StepCall, env: StepEnv) -> (StepResult, StepRecord) {
        let called = self.call(call);
        let result = self.interpret(called);
        let record = self.store.data_mut().next_step(env);
        (result, record)
    }

    fn interpret(&mut self, called: Result<wit::Step, wasmtime::Error>) -> StepResult {
        let state = self.store.data_mut();
        match called {
            Ok(wit::Step::Waiting(id)) => match &state.record.wait {
                Some(wait) if wait.id == id => StepResult::Waiting(wait.clone()),
                Some(wait) => StepResult::Failed(format!(
                    "the journey reported waiting on wait {id}, but registered wait {}",
                    wait.id
                )),
                None => StepResult::Failed(format!(
                    "the journey reported waiting on wait {id} without registering a wait"
                )),
            },
            Ok(wit::Step::Done) => StepResult::Done,
            Ok(wit::Step::Failed(reason)) => StepResult::Failed(reason),
            Err(_) if state.unavailable.is_some() => {
                StepResult::Deferred(state.unavailable.clone().unwrap_or_default())
            }
            Err(trap) => StepResult::Failed(trap_reason(state, &trap)),
        }
    }

    /// The instance's current state as a snapshot (not encoded).
    ///
    /// # Errors
    /// An accessor call failed.
    pub fn capture(&mut self) -> Result<Snapshot, SnapshotError> {
        snapshot::capture::capture(
            &self.journey.access,
            &mut self.store,
            &self.instance,
            &self.journey.pristine,
        )
    }

    /// The store, for the debug-API oracle in tests.
    pub fn store_mut(&mut self) -> &mut Store<StepState> {
        &mut self.store
    }
}

/// Why a call trapped, in words an author can act on.
fn trap_reason(state: &StepState, trap: &wasmtime::Error) -> String {
    if let Some(panic) = &state.record.panic {
        return panic.clone();
    }
    if let Some(limit) = &state.limiter.hit {
        return limit.clone();
    }
    match trap.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "CPU limit exceeded: the step ran longer than {} ms",
            state.limits().max_step_cpu_ms
        ),
        Some(wasmtime::Trap::StackOverflow) => "stack overflow (too deep recursion)".to_string(),
        Some(t) => format!("trapped: {t}"),
        None => format!("trapped: {trap:#}"),
    }
}
