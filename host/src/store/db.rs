//! The database: SQLite (one file in WAL mode, the embedded default) or
//! Postgres, through sqlx's `Any` driver, with one set of SQL written for
//! both (`$N` placeholders, standard SQL; the few statements that differ
//! branch on [`Backend`]). Migrations come from `migrations/sqlite` or
//! `migrations/postgres`.

use super::StoreError;
use super::connections::{Reader, Readers, SQLITE_SETTINGS, TxConn, WriterSlot, open_sqlite};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
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
    /// Serializes this process's writers (see [`WriteTx`]), and holds the
    /// SQLite writer connection.
    write_lock: Arc<tokio::sync::Mutex<WriterSlot>>,
    /// Connections for the reads on every event's way.
    readers: Readers,
}

/// Per-connection Postgres settings. cairn's transactions never wait on
/// anything between statements (except `import`, which reads its input
/// inside one and lifts this), so a session idle inside one belongs to a
/// host that is frozen (SIGSTOP, a stalled VM): Postgres ends it after 10 s,
/// and the locks it held (its users, its runs' rows) pass to the live hosts.
const POSTGRES_SETTINGS: &str = "SET idle_in_transaction_session_timeout = 10000";

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
        let mut own_url = None;
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
                    // An in-process connection cannot drop: no ping before each use.
                    .test_before_acquire(false)
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
                    // A file has connections of its own; see `connections`.
                    own_url = Some(url);
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
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(POSTGRES_SETTINGS).await?;
                            Ok(())
                        })
                    })
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
        let writer = match &own_url {
            Some(url) => Some(open_sqlite(url).await?),
            None => None,
        };
        let write_lock = Arc::new(tokio::sync::Mutex::new(WriterSlot::new(writer)));
        let sqlite_file = own_url.is_some();
        let readers = Readers::new(own_url);
        if sqlite_file {
            tokio::spawn(checkpoint_wal(
                pool.clone(),
                readers.clone(),
                write_lock.clone(),
            ));
        }
        Ok(Store {
            pool,
            backend,
            write_lock,
            readers,
        })
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction that will write, on the SQLite writer (or a
    /// Postgres pool connection), holding this process's write lock.
    pub(super) async fn write_tx(&self) -> Result<WriteTx, StoreError> {
        let lock = self.write_lock.clone().lock_owned().await;
        Ok(WriteTx {
            tx: TxConn::begin(lock, &self.pool).await?,
            backend: self.backend,
        })
    }

    /// Holds this process's write lock for a single write statement (on
    /// the pool).
    pub(super) async fn write_lock(&self) -> tokio::sync::MutexGuard<'_, WriterSlot> {
        let mut writer = self.write_lock.lock().await;
        writer.settled().await;
        writer
    }

    /// A connection for a read on every event's way (a kept SQLite
    /// reader: no pool round trip); other reads use [`Store::pool`].
    pub(super) async fn reader(&self) -> Result<Reader, StoreError> {
        Ok(self.readers.get(&self.pool).await?)
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

/// How often the write-ahead log is copied into the database file.
///
/// Often, because the cost of a checkpoint falls on the commits running
/// beside it and grows with the frames it copies: at 1,000 events/s (about
/// 16,000 new frames a second), checkpoints once a second put event-to-resume
/// at p99 19 ms, every 200 ms at 11 ms, every 50 ms at 8 ms, which is where
/// no checkpointing at all lands too (`cargo bench --bench events -- latency`).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// How long the log grows (in 4 KiB frames: 16 MiB) before a checkpoint
/// holding the write lock lets the next writer rewind it.
///
/// That pass syncs the log and the database file while every writer
/// waits: when the disk stalls, so do ingest and commits (passes of
/// 12-105 ms were seen here during I/O pressure, each one a latency spike).
/// Every 50 ms it ran 20 times a second at 1,000 events/s; at this size,
/// about 4 times.
const REWIND_AT_FRAMES: i64 = 4_096;

/// Copies the write-ahead log into the database file every
/// [`CHECKPOINT_EVERY`], off the commit path, and keeps the log from growing
/// without bound.
///
/// A PASSIVE checkpoint never blocks writers and spares commits the fsync
/// (tens of milliseconds on a slow disk). But under a steady stream of
/// commits it never catches up: frames appended while it copies mean the log
/// is never completely backfilled when the next writer starts, so SQLite
/// never rewinds it and every commit appends to an ever larger file (800 MB
/// in ten seconds at 1,000 events/s). So once the log holds
/// [`REWIND_AT_FRAMES`], a second pass runs after the bulk pass while
/// holding this process's write lock: it copies only the frames that
/// arrived meanwhile, and the next writer rewinds the log to its start.
/// Ends when the pool closes.
async fn checkpoint_wal(
    pool: AnyPool,
    readers: Readers,
    write_lock: Arc<tokio::sync::Mutex<WriterSlot>>,
) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        every.tick().await;
        let mut result = match readers.get(&pool).await {
            Ok(mut reader) => checkpoint(&mut reader).await,
            Err(err) => Err(err),
        };
        if result
            .as_ref()
            .is_ok_and(|frames| *frames >= REWIND_AT_FRAMES)
        {
            let mut writers_wait = write_lock.lock().await;
            let writer = writers_wait
                .settled()
                .await
                .expect("a SQLite file has a writer");
            result = checkpoint(writer).await;
        }
        if let Err(err) = result {
            if pool.is_closed() {
                return;
            }
            tracing::warn!("WAL checkpoint failed (will retry): {err}");
        }
    }
}

/// A PASSIVE checkpoint; returns how many frames the log holds.
async fn checkpoint(conn: &mut sqlx::AnyConnection) -> Result<i64, sqlx::Error> {
    use sqlx::Row;
    // (busy, frames in the log, frames copied)
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(conn)
        .await?;
    Ok(row.try_get(1).unwrap_or(0))
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
    tx: TxConn,
    pub(super) backend: Backend,
}

impl WriteTx {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Serializes this transaction with every other one, on any host, that
    /// touches the same users' events or runs, until it commits.
    ///
    /// Ingest (which stores a user's events and hands them to the waits it
    /// finds) and the group commit (which registers waits and looks back
    /// for events stored meanwhile) would otherwise miss each other on
    /// Postgres: each reads before the other's write is committed. Under
    /// the lock, a user's events also get their ids in commit order, which
    /// makes a per-user watermark sound. Locks are taken in one statement,
    /// in key order, before any row is touched, so two such transactions
    /// never deadlock. SQLite has one writer and needs none of it.
    pub(super) async fn lock_users<'a>(
        &mut self,
        users: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), sqlx::Error> {
        if self.backend == Backend::Sqlite {
            return Ok(());
        }
        let mut keys: Vec<i64> = users
            .into_iter()
            .map(|(tenant, user)| user_lock_key(tenant, user))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(());
        }
        let mut sql =
            String::from("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(k) FROM (VALUES ");
        for i in 1..=keys.len() {
            if i > 1 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${i}::BIGINT)"));
        }
        sql.push_str(") AS v(k) ORDER BY k) AS locked");
        let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
        for key in keys {
            query = query.bind(key);
        }
        query.fetch_one(&mut self.tx).await?;
        Ok(())
    }
}

/// The advisory lock key of a user: FNV-1a over tenant and user id, the
/// same on every host and every build.
fn user_lock_key(tenant: &str, user: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tenant.bytes().chain([0]).chain(user.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

impl std::ops::Deref for WriteTx {
    type Target = TxConn;
    fn deref(&self) -> &TxConn {
        &self.tx
    }
}

/// Statements take `&mut *tx`: the transaction's executor (see [`TxConn`]).
impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut TxConn {
        &mut self.tx
    }
}
