//! The connections a SQLite store keeps outside sqlx's pool: this process's
//! one writer, behind the write lock, and a few readers for the reads on
//! the way of every event (the send policy, the next deadline).
//!
//! The pool pings each connection it takes back, from a task it spawns:
//! on SQLite that is a round trip to the connection's worker thread and a
//! task hop on every use. A connection held here goes back without either
//! (at 1,000 events/s that saved about a fifth of the CPU per event). A
//! write transaction on the writer also sends its `BEGIN` with its first
//! statement ([`TxConn`]): one round trip less while the lock is held.
//! Postgres connections stay in the pool, which replaces the ones a
//! restart of the server broke.

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt, TryFutureExt, TryStreamExt};
use sqlx::any::{
    AnyArguments, AnyConnectOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo,
};
use sqlx::{
    Any, AnyConnection, AnyPool, AssertSqlSafe, ConnectOptions, Either, Execute, Executor, SqlStr,
};
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

/// Per-connection SQLite settings. `synchronous = NORMAL` in WAL mode: a
/// commit is durable against a crash of the process (not of the machine)
/// without an fsync. Checkpoints run in the background (see
/// `db::checkpoint_wal`), not inline in whichever commit crosses 1,000 WAL
/// pages; after a burst, a rewound log is cut back to 64 MiB.
pub(super) const SQLITE_SETTINGS: &str = "PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; \
     PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;";

/// Readers kept between uses; more at once are opened and closed.
const READERS_KEPT: usize = 4;

/// Opens a SQLite connection with cairn's settings.
pub(super) async fn open_sqlite(url: &str) -> Result<AnyConnection, sqlx::Error> {
    let mut conn = url.parse::<AnyConnectOptions>()?.connect().await?;
    conn.execute(SQLITE_SETTINGS).await?;
    Ok(conn)
}

/// What the write lock guards: the SQLite writer connection (none on
/// Postgres, whose writers take pool connections).
pub(super) struct WriterSlot {
    conn: Option<AnyConnection>,
    /// A transaction on `conn` began and did not end (its future was
    /// dropped): the next writer rolls it back first.
    open: bool,
}

impl WriterSlot {
    pub(super) fn new(conn: Option<AnyConnection>) -> Self {
        WriterSlot { conn, open: false }
    }

    /// The writer connection, if this store has one, with no transaction
    /// open: one a dropped writer left behind is rolled back first (it
    /// holds SQLite's write lock, which every other connection waits on).
    pub(super) async fn settled(&mut self) -> Option<&mut AnyConnection> {
        let conn = self.conn.as_mut()?;
        if std::mem::take(&mut self.open) {
            // Fails harmlessly when the dropped transaction never began.
            let _ = conn.execute("ROLLBACK").await;
        }
        Some(conn)
    }
}

/// Where a write transaction runs.
pub(super) enum TxConn {
    /// On the SQLite writer. `BEGIN IMMEDIATE` goes out with the first
    /// statement, in the same round trip to the connection's thread.
    Writer {
        slot: OwnedMutexGuard<WriterSlot>,
        begin_pending: bool,
    },
    /// On a pool connection (Postgres), holding the write lock.
    Pooled {
        tx: sqlx::Transaction<'static, sqlx::Any>,
        _lock: OwnedMutexGuard<WriterSlot>,
    },
}

/// Takes SQLite's write lock up front: a deferred transaction that reads
/// first and then writes fails at once (SQLITE_BUSY_SNAPSHOT) when another
/// process wrote in between.
const BEGIN: &str = "BEGIN IMMEDIATE";

impl TxConn {
    /// Starts a transaction on the writer, or on the pool if there is none.
    pub(super) async fn begin(
        mut slot: OwnedMutexGuard<WriterSlot>,
        pool: &AnyPool,
    ) -> Result<Self, sqlx::Error> {
        if slot.settled().await.is_none() {
            return Ok(TxConn::Pooled {
                tx: pool.begin().await?,
                _lock: slot,
            });
        }
        Ok(TxConn::Writer {
            slot,
            begin_pending: true,
        })
    }

    /// The connection, and the statement that must precede the next one
    /// (which the caller sends with it).
    fn next_statement(&mut self) -> (&mut AnyConnection, Option<&'static str>) {
        match self {
            TxConn::Writer {
                slot,
                begin_pending,
            } => {
                let begin = std::mem::take(begin_pending).then(|| {
                    // From here on a dropped transaction must be rolled back.
                    slot.open = true;
                    BEGIN
                });
                (slot.conn.as_mut().expect("the writer is there"), begin)
            }
            TxConn::Pooled { tx, .. } => (tx, None),
        }
    }

    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            // Nothing was written.
            TxConn::Writer {
                begin_pending: true,
                ..
            } => Ok(()),
            TxConn::Writer { mut slot, .. } => {
                slot.conn
                    .as_mut()
                    .expect("the writer is there")
                    .execute("COMMIT")
                    .await?;
                slot.open = false;
                Ok(())
            }
            TxConn::Pooled { tx, .. } => tx.commit().await,
        }
    }
}

/// Statements run in the transaction through this executor: the first one
/// carries the pending `BEGIN` (one round trip less with the write lock
/// held). A statement's future must be awaited once created, as every
/// `sqlx` call site does.
impl<'c> Executor<'c> for &'c mut TxConn {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let (conn, before) = self.next_statement();
        match before {
            None => conn.fetch_many(query),
            // The first result is the BEGIN's, whose rows_affected is
            // SQLite's count of the last change before it: drop it.
            Some(before) => match preceded(before, query) {
                Ok(query) => {
                    let mut first = true;
                    conn.fetch_many(query)
                        .try_filter(move |step| {
                            let begin = std::mem::take(&mut first) && step.is_left();
                            std::future::ready(!begin)
                        })
                        .boxed()
                }
                Err(err) => futures_util::stream::once(async move { Err(err) }).boxed(),
            },
        }
    }

    /// The `Any` driver's own `fetch_optional` looks at the first result
    /// only, which with a pending `BEGIN` is the `BEGIN`'s: this takes the
    /// first row of all of them (the statements here return a row or few).
    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        self.fetch_many(query)
            .try_filter_map(|step| async move { Ok(step.right()) })
            .try_collect::<Vec<AnyRow>>()
            .map_ok(|rows| rows.into_iter().next())
            .boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.next_statement().0.prepare_with(sql, parameters)
    }

    // sqlx's `offline` feature (on through `macros`) adds this to the trait.
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.next_statement().0.describe(sql)
    }
}

/// `query` with `before` in front of it, as one multi-statement query.
fn preceded<'q>(
    before: &str,
    mut query: impl Execute<'q, Any>,
) -> Result<sqlx::query::Query<'static, Any, AnyArguments>, sqlx::Error> {
    let persistent = query.persistent();
    let arguments = query
        .take_arguments()
        .map_err(sqlx::Error::Encode)?
        .unwrap_or_default();
    let sql = format!("{before}; {}", query.sql().as_str());
    Ok(sqlx::query_with(AssertSqlSafe(sql), arguments).persistent(persistent))
}

impl std::fmt::Debug for TxConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TxConn::Writer { .. } => "TxConn::Writer",
            TxConn::Pooled { .. } => "TxConn::Pooled",
        })
    }
}

/// SQLite readers kept between uses (none for Postgres).
#[derive(Clone)]
pub(super) struct Readers {
    /// The database URL to open more at; `None` means use the pool.
    url: Option<Arc<str>>,
    kept: Arc<Mutex<Vec<AnyConnection>>>,
}

impl Readers {
    pub(super) fn new(sqlite_url: Option<String>) -> Self {
        Readers {
            url: sqlite_url.map(Into::into),
            kept: Arc::default(),
        }
    }

    /// A connection to read on: a kept SQLite reader, a new one, or a pool connection.
    pub(super) async fn get(&self, pool: &AnyPool) -> Result<Reader, sqlx::Error> {
        let Some(url) = &self.url else {
            return Ok(Reader::Pooled(pool.acquire().await?));
        };
        let kept = self.kept.lock().expect("readers lock").pop();
        let conn = match kept {
            Some(conn) => conn,
            None => open_sqlite(url).await?,
        };
        Ok(Reader::Kept {
            conn: Some(conn),
            home: self.kept.clone(),
        })
    }
}

/// A connection lent for reads; a kept one goes back when dropped.
pub(crate) enum Reader {
    Kept {
        conn: Option<AnyConnection>,
        home: Arc<Mutex<Vec<AnyConnection>>>,
    },
    Pooled(sqlx::pool::PoolConnection<sqlx::Any>),
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Reader::Kept { conn, home } = self
            && let Some(conn) = conn.take()
        {
            let mut kept = home.lock().expect("readers lock");
            if kept.len() < READERS_KEPT {
                kept.push(conn);
            }
        }
    }
}

impl std::ops::Deref for Reader {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            Reader::Kept { conn, .. } => conn.as_ref().expect("lent until dropped"),
            Reader::Pooled(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Reader {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Reader::Kept { conn, .. } => conn.as_mut().expect("lent until dropped"),
            Reader::Pooled(conn) => conn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use sqlx::Row;

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        (Store::open(&url).await.unwrap(), dir)
    }

    async fn count(store: &Store) -> i64 {
        sqlx::query("SELECT COUNT(*) FROM host_secrets")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get(0)
    }

    #[tokio::test]
    async fn the_first_statement_reports_its_own_changes_not_the_last_transactions() {
        let (store, _dir) = store().await;
        let mut tx = store.write_tx().await.unwrap();
        let inserted =
            sqlx::query("INSERT INTO host_secrets (name, value) VALUES ('a', x'00'), ('b', x'00')")
                .execute(&mut *tx)
                .await
                .unwrap();
        assert_eq!(inserted.rows_affected(), 2);
        tx.commit().await.unwrap();
        // SQLite still counts the 2 rows above when the next BEGIN runs.
        let mut tx = store.write_tx().await.unwrap();
        let none = sqlx::query("UPDATE host_secrets SET value = x'01' WHERE name = 'z'")
            .execute(&mut *tx)
            .await
            .unwrap();
        assert_eq!(none.rows_affected(), 0);
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn a_dropped_transaction_is_rolled_back_before_the_next_write() {
        let (store, _dir) = store().await;
        let mut tx = store.write_tx().await.unwrap();
        sqlx::query("INSERT INTO host_secrets (name, value) VALUES ('a', x'00')")
            .execute(&mut *tx)
            .await
            .unwrap();
        drop(tx);
        assert_eq!(count(&store).await, 0, "nothing committed");
        // A single statement on the pool would wait out the busy timeout
        // behind the writer's open transaction if it were not rolled back.
        let started = std::time::Instant::now();
        store.release_leases("nobody").await.unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let mut tx = store.write_tx().await.unwrap();
        let row = sqlx::query(
            "INSERT INTO host_secrets (name, value) VALUES ('b', x'00') RETURNING name",
        )
        .fetch_optional(&mut *tx)
        .await
        .unwrap()
        .expect("RETURNING gives the row");
        assert_eq!(row.get::<String, _>(0), "b");
        tx.commit().await.unwrap();
        assert_eq!(count(&store).await, 1);
    }

    #[tokio::test]
    async fn a_failing_first_statement_fails_the_call_and_leaves_nothing() {
        let (store, _dir) = store().await;
        let mut tx = store.write_tx().await.unwrap();
        let err = sqlx::query("INSERT INTO no_such_table VALUES (1)")
            .execute(&mut *tx)
            .await;
        assert!(err.is_err(), "{err:?}");
        drop(tx);
        let mut tx = store.write_tx().await.unwrap();
        sqlx::query("INSERT INTO host_secrets (name, value) VALUES ('c', x'00')")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count(&store).await, 1);
    }

    #[tokio::test]
    async fn a_transaction_that_wrote_nothing_commits_nothing() {
        let (store, _dir) = store().await;
        let tx = store.write_tx().await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.write_tx().await.unwrap();
        sqlx::query("INSERT INTO host_secrets (name, value) VALUES ('d', x'00')")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count(&store).await, 1);
    }
}
