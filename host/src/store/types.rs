//! The rows and requests the store deals in.

use crate::durable::{StepRecord, Wait};
use crate::engine::JourneyMeta;
use serde::{Deserialize, Serialize};

/// Lifecycle of a run; terminal states are never left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Its first step is due.
    Active,
    /// Suspended at a wait.
    Waiting,
    Completed,
    Failed,
    Exited,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Active => "active",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Exited => "exited",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => RunStatus::Active,
            "waiting" => RunStatus::Waiting,
            "completed" => RunStatus::Completed,
            "failed" => RunStatus::Failed,
            "exited" => RunStatus::Exited,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Exited
        )
    }
}

/// A journey version to register.
pub struct NewVersion<'a> {
    pub hash: &'a str,
    pub meta: &'a JourneyMeta,
    pub component: &'a [u8],
}

/// A journey and its active version.
#[derive(Debug, Clone, Serialize)]
pub struct JourneySummary {
    pub id: String,
    pub name: String,
    pub active_version: String,
    pub meta: serde_json::Value,
    pub runs: i64,
}

/// An event that resolved a wait, kept on the run until it is resumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingEvent {
    pub event_id: i64,
    pub name: String,
    pub properties: serde_json::Value,
    pub timestamp: u64,
}

/// One run as stored.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub tenant_id: String,
    pub journey_id: String,
    pub version: String,
    pub user_id: String,
    pub input: String,
    pub status: RunStatus,
    pub step: u32,
    pub checkpoint: Option<String>,
    pub wait: Option<Wait>,
    pub due_at: Option<u64>,
    pub pending_event: Option<PendingEvent>,
    pub failure: Option<String>,
    /// Why an exited run ended: `exit-on:<event>`, `cancelled`, `user-deleted`.
    pub exit_reason: Option<String>,
    /// The run's random seed (never shown: it would make randoms predictable).
    #[serde(skip)]
    pub seed: u64,
    pub started_at: u64,
    pub ceiling_at: u64,
    pub updated_at: u64,
    pub ended_at: Option<u64>,
}

/// A lease to take on runs as they become due: who holds it and until when
/// (system time), and the system time now (an older lease has expired).
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub until: u64,
    pub now: u64,
}

impl Lease {
    /// A lease for `owner` taken at `now` (system time) for `duration_ms`.
    pub fn new(owner: &str, now: u64, duration_ms: u64) -> Self {
        Lease {
            owner: owner.to_string(),
            until: now.saturating_add(duration_ms),
            now,
        }
    }
}

/// A run whose next step is due, claimed by this host, with what it needs to run it.
#[derive(Debug, Clone)]
pub struct DueRun {
    pub run: RunRow,
    pub snapshot: Option<Vec<u8>>,
    /// The highest event id when the step was claimed.
    pub watermark: i64,
}

/// How a step ended, as the store records it.
#[derive(Debug, Clone)]
pub enum StepEnd {
    Waiting { wait: Wait, snapshot: Vec<u8> },
    Completed,
    Failed(String),
}

/// A step to commit: guarded by the run's status and step when it was claimed.
#[derive(Debug, Clone)]
pub struct StepCommit {
    pub run_id: i64,
    pub tenant_id: String,
    pub user_id: String,
    pub expected_status: RunStatus,
    pub expected_step: u32,
    pub end: StepEnd,
    pub record: StepRecord,
    /// What woke the step, for the timeline (`started`, `timer-fired`, `event:<name>`, `timed-out`).
    pub woken_by: String,
    /// The event that woke it, if one did.
    pub event_id: Option<i64>,
    /// The step's logical time (what `now()` returned).
    pub at: u64,
    /// The highest event id when the step was claimed: later events may satisfy the new wait.
    pub event_watermark: i64,
    /// The host that claimed the step; only it may commit it.
    pub lease_owner: String,
    pub now: u64,
}

/// What a group commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Per step, whether it applied.
    pub applied: Vec<bool>,
    /// New event waits that an event stored meanwhile satisfied at once.
    pub redelivered: usize,
}

/// A run's timeline entry.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub step: u32,
    pub at: u64,
    pub kind: String,
    pub detail: serde_json::Value,
}

/// Filters for listing runs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunFilter {
    pub user_id: Option<String>,
    pub journey: Option<String>,
    pub status: Option<String>,
    /// The version (content hash) the runs are on.
    pub version: Option<String>,
    pub limit: Option<u32>,
}
