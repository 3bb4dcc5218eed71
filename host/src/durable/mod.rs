//! The durable context: the store data of one step and one `impl Host` per
//! WIT interface.
//!
//! A step's imports never write to the database. They check and record:
//! waits (checked against the run's execution ceiling), checkpoints, sends,
//! logs, and a journal of every value the host handed out. The engine returns
//! all of it with the step's outcome, and the store commits it in one
//! transaction with the snapshot, so a step either happened completely or not
//! at all. Only `send` and `next-local-time` read, through the delivery
//! policy's [`crate::delivery::SendGate`]; when that read fails the step is
//! not the journey's fault and is deferred, not failed.
//!
//! Every value a step receives is a function of (run, step, call index):
//! `now` is the step's logical time, `random-u64` is derived from the run's
//! seed, a send's receipt key is `run:step:call`. A step re-run after a crash
//! therefore sees exactly what the lost attempt saw, without anything being
//! written before the step commits; the journal records those values for audit.
//!
//! When a journey should use which wait:
//! - `sleep(d)`: a relative delay ("a day after signing up");
//! - `sleep-until(t)`: a calendar deadline ("when the trial ends");
//! - `wait-for-event(name, timeout, filter)`: react to the user, or give up after `timeout`;
//! - `checkpoint(label)`: a milestone operators can see, no waiting;
//! - `send(message)`: queue a message; exactly once per (run, step, call);
//!   the delivery policy's verdict is on the receipt;
//! - `next-local-time(at)`: "next 09:00 in the user's time zone", for `sleep-until`.
//!
//! A failure the journey can handle is a WIT error value (`wait-error`,
//! `send-error`); a broken host invariant is a trap. The two never mix.

mod condition;
mod host;
mod limits;
pub mod wasi;

pub use condition::all_match;
pub use limits::{Limits, StepLimiter, human_bytes};

use crate::clock::Millis;
use crate::delivery::{SendGate, Verdict};
use crate::engine::bindings::cairn::journey::types as wit;
use crate::snapshot::ScanBuffer;
use crate::snapshot::capture::HasScan;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Who and where a step runs: fixed for the whole step.
#[derive(Clone)]
pub struct StepEnv {
    pub run_id: i64,
    /// The step number: 0 for `start`, then one more per resume.
    pub step: u32,
    pub user_id: String,
    /// When the run started.
    pub started_at: Millis,
    /// The latest instant any wait may end: `started_at + execution ceiling`.
    pub ceiling_at: Millis,
    /// The step's logical time: when its wait came due (or the run was
    /// created). `now()` returns it and relative waits count from it.
    pub now: Millis,
    /// The run's random seed: `random-u64` is a function of (seed, step, call).
    pub seed: u64,
    /// The limits of the run's tenant.
    pub limits: Arc<Limits>,
    /// The delivery policy of the run's tenant, which every send goes through.
    pub gate: Arc<dyn SendGate>,
}

/// A property condition on an event, as stored with a wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub property: String,
    pub op: String,
    pub value: serde_json::Value,
}

/// What a registered wait waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum WaitKind {
    /// `sleep` or `sleep-until`: fires at the deadline.
    Timer,
    /// `wait-for-event`: the event, or a timeout at the deadline.
    Event {
        name: String,
        filter: Vec<Condition>,
    },
}

/// The wait a step registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wait {
    pub id: u32,
    #[serde(flatten)]
    pub kind: WaitKind,
    /// When the timer fires or the event wait times out.
    pub deadline: Millis,
    /// When the wait was registered.
    pub registered_at: Millis,
}

/// A message `send` accepted, to be written to the outbox with the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// The idempotency key: the label, or `run:step:call`.
    pub key: String,
    pub channel: String,
    pub recipient: String,
    pub template: String,
    pub props: serde_json::Value,
    pub category: String,
    /// What the delivery policy decided when the send was made.
    pub verdict: Verdict,
}

/// Something a step did that the run's timeline keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Effect {
    Checkpoint {
        label: String,
    },
    Send {
        key: String,
        template: String,
        /// The policy's verdict: `queued`, `suppressed`, `deferred-until <time>`, ...
        #[serde(default)]
        status: String,
    },
    Log {
        level: String,
        message: String,
    },
}

/// One value the host handed the guest, keyed by its call index in the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub call: u32,
    pub import: String,
    pub value: serde_json::Value,
}

/// Everything a step produced besides its result.
#[derive(Debug, Clone, Default)]
pub struct StepRecord {
    /// What the step did, in order (all at the step's logical time).
    pub effects: Vec<Effect>,
    pub outbox: Vec<OutboxMessage>,
    pub journal: Vec<JournalEntry>,
    pub wait: Option<Wait>,
    pub panic: Option<String>,
}

/// The store data of one step.
pub struct StepState {
    pub env: StepEnv,
    limits: Arc<Limits>,
    pub(crate) limiter: StepLimiter,
    calls: u32,
    log_bytes: usize,
    pub record: StepRecord,
    /// Set when the host could not answer an import (its database failed):
    /// the step is not the journey's fault and runs again later.
    pub(crate) unavailable: Option<String>,
    scan: ScanBuffer,
}

impl StepState {
    pub fn new(env: StepEnv) -> Self {
        let limits = env.limits.clone();
        StepState {
            env,
            limiter: StepLimiter::new(&limits),
            limits,
            calls: 0,
            log_bytes: 0,
            record: StepRecord::default(),
            unavailable: None,
            scan: ScanBuffer::Idle,
        }
    }

    /// Starts a new step on the same instance (the no-snapshot reference runs use this).
    pub fn next_step(&mut self, env: StepEnv) -> StepRecord {
        self.env = env;
        self.calls = 0;
        self.log_bytes = 0;
        self.unavailable = None;
        std::mem::take(&mut self.record)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counts an import call and returns its index within the step.
    ///
    /// # Errors
    /// A trap once the step made more calls than the import-call limit allows.
    fn call_index(&mut self) -> wasmtime::Result<u32> {
        if self.calls >= self.limits.max_import_calls {
            let why = format!(
                "import-call limit exceeded: the step made more than {} calls to the host",
                self.limits.max_import_calls
            );
            self.limiter.hit = Some(why.clone());
            return Err(wasmtime::Error::msg(why));
        }
        self.calls += 1;
        Ok(self.calls - 1)
    }

    /// Charges a log line to the step's log budget. Past the budget lines are
    /// dropped, and the first dropped line is replaced by a notice saying so.
    fn log_budget(&mut self, bytes: usize) -> bool {
        if self.log_bytes > self.limits.max_step_log_bytes {
            return false;
        }
        self.log_bytes += bytes;
        if self.log_bytes > self.limits.max_step_log_bytes {
            self.effect(Effect::Log {
                level: "warn".into(),
                message: format!(
                    "log limit reached: the step logged more than {} bytes; its further lines are dropped",
                    self.limits.max_step_log_bytes
                ),
            });
            return false;
        }
        true
    }

    fn journal(&mut self, call: u32, import: &str, value: serde_json::Value) {
        self.record.journal.push(JournalEntry {
            call,
            import: import.to_string(),
            value,
        });
    }

    fn effect(&mut self, effect: Effect) {
        self.record.effects.push(effect);
    }
}

impl std::fmt::Debug for StepEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepEnv")
            .field("run_id", &self.run_id)
            .field("step", &self.step)
            .field("user_id", &self.user_id)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl HasScan for StepState {
    fn scan_buffer(&mut self) -> &mut ScanBuffer {
        &mut self.scan
    }
}

/// The wire names of WIT enums, for records and logs.
pub(crate) fn op_name(op: wit::ConditionOp) -> &'static str {
    match op {
        wit::ConditionOp::Eq => "eq",
        wit::ConditionOp::Neq => "neq",
        wit::ConditionOp::Gt => "gt",
        wit::ConditionOp::Gte => "gte",
        wit::ConditionOp::Lt => "lt",
        wit::ConditionOp::Lte => "lte",
        wit::ConditionOp::Exists => "exists",
        wit::ConditionOp::Contains => "contains",
    }
}
