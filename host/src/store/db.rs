//! The database: SQLite (one file in WAL mode, the embedded default) or
//! Postgres, through sqlx's `Any` driver, with one set of SQL written for
//! both (`$N` placeholders, standard SQL; the few statements that differ
//! branch on [`Backend`]). Migrations come from `migrations/sqlite` or
//! `migrations/postgres`.

use super::StoreError;
use super::types::*;
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
// Only the fixed RUN_COLUMNS list is formatted into SQL; values are bound.
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};
use std::sync::Arc;
use std::time::Duration;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Which database a store is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a URL names.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for any other URL.
    pub fn of(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Invalid(format!(
                "unsupported database URL {:?}: use sqlite://FILE or postgres://USER@HOST/DB",
                url.split('@').next_back().unwrap_or(url)
            )))
        }
    }

    fn migrator(self) -> &'static sqlx::migrate::Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        }
    }
}

/// The database, shared by the API, the scheduler and the CLI.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Serializes this process's writers; see [`WriteTx`].
    write_lock: Arc<tokio::sync::Mutex<()>>,
}

pub(super) const RUN_COLUMNS: &str = "id, tenant_id, journey_id, version, user_id, input, status, step, checkpoint, \
     wait, due_at, pending_wake, failure, exit_reason, seed, started_at, ceiling_at, updated_at, ended_at";

/// Per-connection SQLite settings. `synchronous = NORMAL` in WAL mode: a
/// commit is durable against a crash of the process (not of the machine)
/// without an fsync. Checkpoints run in the background (see
/// `checkpoint_wal`), not inline in whichever commit crosses 1,000 WAL
/// pages; after a burst, a rewound log is cut back to 64 MiB.
const SQLITE_SETTINGS: &str = "PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; \
     PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;";

/// Connections per host to Postgres (`CAIRN_DB_POOL` overrides).
const POSTGRES_POOL: u32 = 16;

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`:
    /// `sqlite://path/to/cairn.db`, `sqlite::memory:` or `postgres://...`.
    ///
    /// # Errors
    /// The database cannot be reached or migrated, or a newer cairn migrated it.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Store::connect(url, true).await
    }

    /// Opens the database at `url`; migrates it only if `migrate`, and
    /// otherwise refuses a schema older than this cairn's (a shared
    /// Postgres is migrated once, by `cairn migrate`, not by every host).
    ///
    /// # Errors
    /// As [`Store::open`], and [`StoreError::SchemaBehind`] when not migrating.
    pub async fn connect(url: &str, migrate: bool) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let memory = url.contains(":memory:");
        let pool = match backend {
            Backend::Sqlite => {
                let url = if memory || url.contains("mode=") {
                    url.to_string()
                } else if url.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                };
                let pool = AnyPoolOptions::new()
                    // An in-memory database lives in one connection.
                    .max_connections(if memory { 1 } else { 8 })
                    .min_connections(if memory { 1 } else { 0 })
                    .idle_timeout((!memory).then_some(Duration::from_secs(600)))
                    .max_lifetime((!memory).then_some(Duration::from_secs(3600)))
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            conn.execute(SQLITE_SETTINGS).await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?;
                if !memory {
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&pool)
                        .await?;
                }
                pool
            }
            Backend::Postgres => {
                let size = std::env::var("CAIRN_DB_POOL")
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(POSTGRES_POOL);
                AnyPoolOptions::new()
                    .max_connections(size)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?
            }
        };
        let current = refuse_newer_schema(&pool, backend).await?;
        if migrate {
            backend.migrator().run(&pool).await?;
        } else if current < schema_version() {
            return Err(StoreError::SchemaBehind {
                database: current,
                known: schema_version(),
            });
        }
        let write_lock: Arc<tokio::sync::Mutex<()>> = Default::default();
        if backend == Backend::Sqlite && !memory {
            tokio::spawn(checkpoint_wal(pool.clone(), write_lock.clone()));
        }
        Ok(Store {
            pool,
            backend,
            write_lock,
        })
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Registers a version (idempotent by hash) and makes it the journey's
    /// active one. Returns false if the tenant had deployed it before.
    ///
    /// # Errors
    /// A database failure.
    pub async fn deploy_version(
        &self,
        tenant: &str,
        version: NewVersion<'_>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let meta = serde_json::to_string(version.meta).expect("meta serializes");
        let mut tx = self.write_tx().await?;
        deactivate_previous(&mut tx, tenant, &version.meta.id, version.hash, now).await?;
        sqlx::query(
            "INSERT INTO journeys (tenant_id, id, name, active_version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT(tenant_id, id) DO UPDATE SET name = excluded.name,
                 active_version = excluded.active_version, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(&version.meta.id)
        .bind(&version.meta.name)
        .bind(version.hash)
        .bind(now as i64)
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO journey_versions (tenant_id, hash, journey_id, meta, component, deployed_at, activated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT(tenant_id, hash) DO UPDATE SET activated_at = excluded.activated_at,
                 deactivated_at = NULL, component = excluded.component, retired_at = NULL
             RETURNING CASE WHEN deployed_at = activated_at THEN 1 ELSE 0 END",
        )
        .bind(tenant)
        .bind(version.hash)
        .bind(&version.meta.id)
        .bind(meta)
        .bind(version.component)
        .bind(now as i64)
        .fetch_one(&mut *tx)
        .await?
        .get::<i64, _>(0)
            != 0;
        tx.commit().await?;
        Ok(inserted)
    }

    /// The component bytes of a tenant's version.
    ///
    /// # Errors
    /// A database failure; `Ok(None)` if the version is unknown.
    pub async fn version_component(
        &self,
        tenant: &str,
        hash: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT component FROM journey_versions WHERE tenant_id = $1 AND hash = $2",
        )
        .bind(tenant)
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every journey of a tenant with its active version.
    ///
    /// # Errors
    /// A database failure or corrupt meta.
    pub async fn journeys(&self, tenant: &str) -> Result<Vec<JourneySummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.id, j.name, j.active_version, v.meta,
                    (SELECT COUNT(*) FROM runs r WHERE r.tenant_id = j.tenant_id AND r.journey_id = j.id) AS runs
             FROM journeys j JOIN journey_versions v ON v.tenant_id = j.tenant_id AND v.hash = j.active_version
             WHERE j.tenant_id = $1 ORDER BY j.id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JourneySummary {
                    id: r.get("id"),
                    name: r.get("name"),
                    active_version: r.get("active_version"),
                    meta: serde_json::from_str(r.get("meta"))
                        .map_err(StoreError::corrupt("journey meta"))?,
                    runs: r.get("runs"),
                })
            })
            .collect()
    }

    /// Every tenant's journeys' active versions with their meta and whether they enroll.
    ///
    /// # Errors
    /// A database failure or corrupt meta.
    pub async fn active_journeys(&self) -> Result<Vec<crate::ingest::ActiveJourney>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.tenant_id, j.id, j.active_version, j.enabled, v.meta FROM journeys j
             JOIN journey_versions v ON v.tenant_id = j.tenant_id AND v.hash = j.active_version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::ingest::ActiveJourney {
                    tenant_id: r.get("tenant_id"),
                    id: r.get("id"),
                    version: r.get("active_version"),
                    enabled: r.get::<i64, _>("enabled") != 0,
                    meta: serde_json::from_str(r.get("meta"))
                        .map_err(StoreError::corrupt("journey meta"))?,
                })
            })
            .collect()
    }

    /// The active version of a journey and its execution ceiling.
    pub(super) async fn active_version(
        &self,
        tenant: &str,
        journey_id: &str,
    ) -> Result<(String, u64), StoreError> {
        let row = sqlx::query(
            "SELECT j.active_version, v.meta FROM journeys j
             JOIN journey_versions v ON v.tenant_id = j.tenant_id AND v.hash = j.active_version
             WHERE j.tenant_id = $1 AND j.id = $2",
        )
        .bind(tenant)
        .bind(journey_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::UnknownJourney(journey_id.to_string()))?;
        let meta: Value =
            serde_json::from_str(row.get("meta")).map_err(StoreError::corrupt("journey meta"))?;
        Ok((
            row.get("active_version"),
            meta["execution_timeout_ms"].as_u64().unwrap_or(0),
        ))
    }

    /// Creates a run on the journey's active version; its first step is due at once.
    ///
    /// # Errors
    /// [`StoreError::UnknownJourney`], [`StoreError::AlreadyActive`] if the
    /// user has an active or waiting run of this journey, [`StoreError::UserDeleted`],
    /// or a database failure.
    pub async fn create_run(
        &self,
        tenant: &str,
        journey_id: &str,
        user_id: &str,
        input: &str,
        now: u64,
    ) -> Result<RunRow, StoreError> {
        let (version, ceiling) = self.active_version(tenant, journey_id).await?;
        let mut tx = self.write_tx().await?;
        if user_deleted(&mut tx, tenant, user_id).await? {
            return Err(StoreError::UserDeleted(user_id.to_string()));
        }
        let new = NewRun {
            tenant,
            journey_id,
            version: &version,
            user_id,
            input,
            ceiling_ms: ceiling,
        };
        let run =
            insert_run(&mut tx, &new, now)
                .await?
                .ok_or_else(|| StoreError::AlreadyActive {
                    journey: journey_id.to_string(),
                    user: user_id.to_string(),
                })?;
        tx.commit().await?;
        Ok(run)
    }

    /// One run, whichever tenant it belongs to (the API checks the tenant).
    ///
    /// # Errors
    /// A database failure or a corrupt row.
    pub async fn run(&self, id: i64) -> Result<Option<RunRow>, StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| run_row(&r))
        .transpose()
    }

    /// A tenant's runs matching the filter, newest first (at most 1000).
    ///
    /// # Errors
    /// A database failure or a corrupt row.
    pub async fn runs(&self, tenant: &str, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE tenant_id = $5 AND ($1 IS NULL OR user_id = $1)
             AND ($2 IS NULL OR journey_id = $2) AND ($3 IS NULL OR status = $3)
             AND ($6 IS NULL OR version = $6) ORDER BY id DESC LIMIT $4"
        )))
        .bind(&filter.user_id)
        .bind(&filter.journey)
        .bind(&filter.status)
        .bind(i64::from(filter.limit.unwrap_or(100).min(1000)))
        .bind(tenant)
        .bind(&filter.version)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    /// Commits steps in one transaction (group commit). Returns, per step,
    /// whether it applied: a step whose run moved on (another worker, an exit)
    /// is discarded with all its effects.
    ///
    /// # Errors
    /// A database failure; nothing was committed.
    pub async fn commit_steps(&self, commits: &[StepCommit]) -> Result<Committed, StoreError> {
        let mut tx = self.write_tx().await?;
        let applied = super::commit::commit_steps(&mut tx, commits).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Starts a transaction that will write. `BEGIN IMMEDIATE` takes the
    /// write lock up front: a deferred transaction that reads first and then
    /// writes fails at once (SQLITE_BUSY_SNAPSHOT) when another writer
    /// committed in between, which waiting cannot fix.
    pub(super) async fn write_tx(&self) -> Result<WriteTx, StoreError> {
        let lock = self.write_lock.clone().lock_owned().await;
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx {
            tx,
            backend: self.backend,
            _lock: lock,
        })
    }

    /// Holds this process's write lock for a single write statement.
    pub(super) async fn write_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().await
    }

    /// The raw pool, for tests that inspect tables directly.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// The newest schema version this binary knows (both backends have the same).
pub fn schema_version() -> i64 {
    SQLITE_MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Refuses a database that a newer cairn migrated: this binary's queries may
/// not fit its schema, and writing to it could damage it.
/// Returns the database's schema version (0: not migrated).
async fn refuse_newer_schema(pool: &AnyPool, backend: Backend) -> Result<i64, StoreError> {
    let exists = match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = '_sqlx_migrations' \
             AND table_schema = current_schema()"
        }
    };
    let migrated: i64 = sqlx::query_scalar(exists).fetch_one(pool).await?;
    if migrated == 0 {
        return Ok(0);
    }
    let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(pool)
        .await?;
    match newest {
        Some(database) if database > schema_version() => Err(StoreError::SchemaTooNew {
            database,
            known: schema_version(),
        }),
        newest => Ok(newest.unwrap_or(0)),
    }
}

/// Copies the write-ahead log into the database file once a second, off
/// the commit path, and keeps the log from growing without bound.
///
/// A PASSIVE checkpoint never blocks writers and spares commits the fsync
/// (tens of milliseconds on a slow disk). But under a steady stream of
/// commits it never catches up: frames appended while it copies mean the log
/// is never completely backfilled when the next writer starts, so SQLite
/// never rewinds it and every commit appends to an ever larger file (800 MB
/// in ten seconds at 1,000 events/s). So after the bulk pass, a second pass
/// runs while holding this process's write lock: it copies only the frames
/// that arrived meanwhile, and the next writer rewinds the log to its start.
/// Ends when the pool closes.
async fn checkpoint_wal(pool: AnyPool, write_lock: Arc<tokio::sync::Mutex<()>>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        every.tick().await;
        let mut result = checkpoint(&pool).await;
        if result.is_ok() {
            let _writers_wait = write_lock.lock().await;
            result = checkpoint(&pool).await;
        }
        if let Err(err) = result {
            if pool.is_closed() {
                return;
            }
            tracing::warn!("WAL checkpoint failed (will retry): {err}");
        }
    }
}

async fn checkpoint(pool: &AnyPool) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(pool)
        .await
        .map(drop)
}

/// A write transaction holding this process's write lock.
///
/// SQLite has one writer. When a second writer finds the lock taken, its
/// busy handler *sleeps* (1, 2, 5, 10, ... up to 100 ms) before it retries,
/// which puts tens of milliseconds on an event's way to its run. Writers in
/// this process therefore queue on an async mutex first, which hands over
/// the moment the holder commits; SQLite then never sees a busy lock. (One
/// process writes a SQLite file; several hosts share Postgres instead.)
pub(super) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    pub(super) backend: Backend,
    _lock: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// Resolves a run's event wait with `event`, exactly once: the first event
/// wins, and a wait whose deadline has passed has already timed out. With a
/// `lease`, the same statement claims the now-due run for its owner, and the
/// run comes back ready to execute (no separate claim).
pub(super) async fn deliver_event(
    tx: &mut WriteTx,
    run_id: i64,
    step: i64,
    event: &PendingEvent,
    now: u64,
    lease: Option<&Lease>,
) -> Result<Option<DueRun>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "UPDATE runs SET pending_wake = $1, due_at = $2, updated_at = $2, lease_owner = $3, lease_until = $4,
             claim_watermark = CASE WHEN $3 IS NULL THEN claim_watermark
                                    ELSE (SELECT COALESCE(MAX(id), 0) FROM events) END
         WHERE id = $5 AND status = 'waiting' AND step = $6 AND pending_wake IS NULL AND due_at > $2
           AND ($7 IS NULL OR lease_until IS NULL OR lease_until < $7)
         RETURNING {RUN_COLUMNS}, snapshot, claim_watermark"
    )))
    .bind(serde_json::to_string(event).expect("event serializes"))
    .bind(now as i64)
    .bind(lease.map(|l| l.owner.as_str()))
    .bind(lease.map(|l| l.until as i64))
    .bind(run_id)
    .bind(step)
    .bind(lease.map(|l| l.now as i64))
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok(DueRun {
            run: run_row(&r)?,
            snapshot: r.get("snapshot"),
            watermark: r.get::<Option<i64>, _>("claim_watermark").unwrap_or(0),
        })
    })
    .transpose()
}

pub(super) fn run_row(r: &AnyRow) -> Result<RunRow, StoreError> {
    let status: String = r.get("status");
    let wait: Option<String> = r.get("wait");
    let pending: Option<String> = r.get("pending_wake");
    Ok(RunRow {
        id: r.get("id"),
        tenant_id: r.get("tenant_id"),
        journey_id: r.get("journey_id"),
        version: r.get("version"),
        user_id: r.get("user_id"),
        input: r.get("input"),
        status: RunStatus::parse(&status).ok_or(StoreError::Corrupt {
            what: "runs.status",
            why: status.clone(),
        })?,
        step: r.get::<i64, _>("step") as u32,
        checkpoint: r.get("checkpoint"),
        wait: wait
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(StoreError::corrupt("runs.wait"))?,
        due_at: r.get::<Option<i64>, _>("due_at").map(|t| t as u64),
        pending_event: pending
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(StoreError::corrupt("runs.pending_wake"))?,
        failure: r.get("failure"),
        exit_reason: r.get("exit_reason"),
        seed: r.get::<i64, _>("seed") as u64,
        started_at: r.get::<i64, _>("started_at") as u64,
        ceiling_at: r.get::<i64, _>("ceiling_at") as u64,
        updated_at: r.get::<i64, _>("updated_at") as u64,
        ended_at: r.get::<Option<i64>, _>("ended_at").map(|t| t as u64),
    })
}

/// A run to insert.
pub(super) struct NewRun<'a> {
    pub tenant: &'a str,
    pub journey_id: &'a str,
    pub version: &'a str,
    pub user_id: &'a str,
    pub input: &'a str,
    pub ceiling_ms: u64,
}

/// Inserts a run unless the user already has an active or waiting run of
/// this journey (`None` then: the unique index refused it).
pub(super) async fn insert_run(
    tx: &mut WriteTx,
    run: &NewRun<'_>,
    now: u64,
) -> Result<Option<RunRow>, StoreError> {
    let seed = getrandom::u64().map_err(|e| StoreError::NoRandomness(e.to_string()))?;
    let row = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO runs (tenant_id, journey_id, version, user_id, input, status, step, due_at, seed,
         started_at, ceiling_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'active', 0, $6, $7, $6, $8, $6)
         ON CONFLICT DO NOTHING RETURNING {RUN_COLUMNS}"
    )))
    .bind(run.tenant)
    .bind(run.journey_id)
    .bind(run.version)
    .bind(run.user_id)
    .bind(run.input)
    .bind(now as i64)
    .bind(seed as i64)
    .bind(now.saturating_add(run.ceiling_ms) as i64)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(run_row).transpose()
}

/// Records when a journey's active version stops being active because
/// `next` replaces it (nothing, if `next` is already the active one).
pub(super) async fn deactivate_previous(
    tx: &mut WriteTx,
    tenant: &str,
    journey: &str,
    next: &str,
    now: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE journey_versions SET deactivated_at = $1
         WHERE tenant_id = $2 AND journey_id = $3 AND hash != $4
           AND hash = (SELECT active_version FROM journeys WHERE tenant_id = $2 AND id = $3)",
    )
    .bind(now as i64)
    .bind(tenant)
    .bind(journey)
    .bind(next)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether the contact was deleted (GDPR): no new runs for them.
pub(super) async fn user_deleted(
    tx: &mut WriteTx,
    tenant: &str,
    user_id: &str,
) -> Result<bool, StoreError> {
    let deleted: Option<Option<i64>> =
        sqlx::query_scalar("SELECT deleted_at FROM contacts WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(matches!(deleted, Some(Some(_))))
}
