//! Everything cairn persists, behind one narrow interface: journeys and
//! versions, runs, snapshots, the step journal, the outbox and its delivery,
//! events, contacts and their preferences, templates, and the run timeline. All SQL lives here; the engine never sees the database.
//!
//! Every run transition is a guarded UPDATE (`WHERE status = expected AND
//! step = n`), and a step's snapshot, wait, outbox rows, journal and timeline
//! commit in one transaction, so a step happened completely or not at all,
//! and a terminal run is never made active again.
//!
//! SQLite (WAL, one file) is the embedded backend; Postgres runs the same
//! methods and the same SQL (see [`db`] for how one text serves both).

mod audience;
mod claim;
mod commit;
mod connections;
mod db;
mod events;
mod outbox;
mod runs;
mod tenants;
mod timeline;
mod transfer;
mod types;
mod versions;

pub use audience::{Feedback, Preferences, Recipient, Suppression, TemplateRow, normalize_address};
pub use claim::{Backlog, LEASE_MS};
pub use db::{Backend, Store, schema_version};
pub use outbox::{Claimed, Delivered, Interrupted, OutboxFilter, OutboxRow};
pub use tenants::{DEFAULT_TENANT, TenantRow};
pub use types::*;
pub use versions::{RunCounts, VersionRow};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the statement failed; a retry may help.
    #[error("database error (a retry may help): {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A newer cairn migrated the database.
    #[error(
        "the database's schema (version {database}) is newer than this cairn's (version {known}): \
         run the cairn that migrated it, or a newer one"
    )]
    SchemaTooNew { database: i64, known: i64 },
    /// The database is not migrated to this cairn's schema.
    #[error(
        "the database's schema (version {database}) is older than this cairn's (version {known}): \
         run `cairn migrate --db URL` first"
    )]
    SchemaBehind { database: i64, known: i64 },
    /// Stored data does not decode; a retry will not help.
    #[error("corrupt stored data in {what}: {why}")]
    Corrupt { what: &'static str, why: String },
    #[error("unknown journey {0:?}")]
    UnknownJourney(String),
    #[error("user {user:?} already has an active run of journey {journey:?}")]
    AlreadyActive { journey: String, user: String },
    #[error("user {0:?} was deleted; no new runs start for them")]
    UserDeleted(String),
    #[error("no run {0}")]
    UnknownRun(i64),
    #[error("no message {0} in the outbox")]
    UnknownMessage(i64),
    #[error("journey {journey:?} has no version {version:?}")]
    UnknownVersion { journey: String, version: String },
    /// A request the store refuses as it stands (bad tenant limits, ...).
    #[error("{0}")]
    Invalid(String),
    #[error("version {version} of journey {journey:?} is in use: {why}")]
    VersionInUse {
        journey: String,
        version: String,
        why: String,
    },
    #[error("run {id} already ended ({status}); it cannot be cancelled")]
    RunEnded { id: i64, status: &'static str },
    /// The operating system gave no random seed for a new run.
    #[error("no randomness for the run's seed: {0}")]
    NoRandomness(String),
}

impl StoreError {
    pub(crate) fn corrupt(what: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
        move |e| StoreError::Corrupt {
            what,
            why: e.to_string(),
        }
    }
}
