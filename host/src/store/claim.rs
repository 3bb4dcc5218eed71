//! Claiming due steps with leases: a run's step is executed by exactly one
//! host at a time, and only the lease holder may commit it.

use super::StoreError;
use super::db::Store;
use super::runs::{RUN_COLUMNS, run_row};
use super::types::{DueRun, Lease};
use sqlx::{AssertSqlSafe, Row};

/// On Postgres, rows another host is claiming right now are skipped, not
/// waited for (SQLite has one writer and needs no such clause).
pub(super) fn skip_locked(backend: super::db::Backend) -> &'static str {
    match backend {
        super::db::Backend::Sqlite => "",
        super::db::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
    }
}

/// How long a claim holds by default (system time): far longer than a batch
/// of steps takes, short enough that another host resumes a dead host's
/// runs soon. The holder renews it while it works (`renew_leases`).
pub const LEASE_MS: u64 = 30_000;

impl Store {
    /// Leases up to `limit` runs whose next step is due at `now` (run time)
    /// and that no live lease holds at `lease.now` (system time), oldest due
    /// first. The claim records the user's highest event id in the same
    /// statement, so look-back after the step sees exactly the events stored
    /// since (a user's event ids follow commit order: see `lock_users`).
    ///
    /// # Errors
    /// A database failure; nothing was claimed.
    pub async fn claim_due(
        &self,
        lease: &Lease,
        now: u64,
        limit: u32,
    ) -> Result<Vec<DueRun>, StoreError> {
        // Most calls find nothing due: ask a reader first, and take the write
        // lock (which ingest and commits wait on) only when there is work.
        let any: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM runs WHERE status IN ('active', 'waiting') AND due_at <= $1
                                   AND (lease_until IS NULL OR lease_until < $2) LIMIT 1) AS due",
        )
        .bind(now as i64)
        .bind(lease.now as i64)
        .fetch_one(&mut *self.reader().await?)
        .await?;
        if any == 0 {
            return Ok(Vec::new());
        }
        let _writer = self.write_lock().await;
        let skip = skip_locked(self.backend());
        let rows = sqlx::query(AssertSqlSafe(format!(
            "UPDATE runs SET lease_owner = $1, lease_until = $2,
                 claim_watermark = (SELECT COALESCE(MAX(e.id), 0) FROM events e
                                    WHERE e.tenant_id = runs.tenant_id AND e.user_id = runs.user_id)
             WHERE id IN (SELECT id FROM runs WHERE status IN ('active', 'waiting') AND due_at <= $3
                          AND (lease_until IS NULL OR lease_until < $4) ORDER BY due_at, id LIMIT $5{skip})
             RETURNING {RUN_COLUMNS}, snapshot, claim_watermark"
        )))
        .bind(&lease.owner)
        .bind(lease.until as i64)
        .bind(now as i64)
        .bind(lease.now as i64)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        let mut due = rows
            .iter()
            .map(|r| {
                Ok(DueRun {
                    run: run_row(r)?,
                    snapshot: r.get("snapshot"),
                    watermark: r.get("claim_watermark"),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // RETURNING has no order: oldest due first.
        due.sort_by_key(|d| (d.run.due_at, d.run.id));
        Ok(due)
    }

    /// Keeps deferred steps' runs leased until `until` (system time), so
    /// they are claimed again then rather than at once.
    ///
    /// # Errors
    /// A database failure; the leases then run out on their own.
    pub async fn defer_steps(
        &self,
        owner: &str,
        runs: &[(i64, u32)],
        until: u64,
    ) -> Result<(), StoreError> {
        let _writer = self.write_lock().await;
        for (run, step) in runs {
            sqlx::query(
                "UPDATE runs SET lease_until = $1 WHERE id = $2 AND step = $3 AND lease_owner = $4",
            )
            .bind(until as i64)
            .bind(run)
            .bind(i64::from(*step))
            .bind(owner)
            .execute(self.pool())
            .await?;
        }
        Ok(())
    }

    /// Extends `owner`'s leases on `runs` to `until` (system time), while
    /// their steps wait or execute. A lease another host took meanwhile stays
    /// theirs. Returns how many were renewed.
    ///
    /// # Errors
    /// A database failure; the leases then run out on their own.
    pub async fn renew_leases(
        &self,
        owner: &str,
        runs: &[i64],
        until: u64,
    ) -> Result<u64, StoreError> {
        let mut renewed = 0;
        for chunk in runs.chunks(500) {
            let ids = (3..chunk.len() + 3)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut query = sqlx::query(AssertSqlSafe(format!(
                "UPDATE runs SET lease_until = $1 WHERE lease_owner = $2 AND id IN ({ids})"
            )))
            .bind(until as i64)
            .bind(owner);
            for id in chunk {
                query = query.bind(id);
            }
            let _writer = self.write_lock().await;
            renewed += query.execute(self.pool()).await?.rows_affected();
        }
        Ok(renewed)
    }

    /// Releases every lease `owner` holds: a host does this when it starts,
    /// for claims its previous life left behind, and when it stops.
    ///
    /// # Errors
    /// A database failure.
    pub async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        let _writer = self.write_lock().await;
        Ok(sqlx::query(
            "UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    /// The latest time the database has seen (a run's last change, an
    /// event's arrival): a virtual clock resumes from here after a restart.
    ///
    /// # Errors
    /// A database failure.
    pub async fn latest_time(&self) -> Result<u64, StoreError> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(t) FROM (SELECT MAX(updated_at) AS t FROM runs UNION ALL SELECT MAX(received_at) FROM events) AS latest",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(at.unwrap_or(0).max(0) as u64)
    }

    /// When the next run no host holds comes due, if any (`lease_now`:
    /// system time). A leased run is executing; if its host dies, it comes
    /// due again when the lease runs out, which the next poll finds.
    ///
    /// # Errors
    /// A database failure.
    pub async fn next_due_at(&self, lease_now: u64) -> Result<Option<u64>, StoreError> {
        // In due order, not MIN(): the scan stops at the first unleased run.
        let at: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT due_at FROM runs WHERE status IN ('active', 'waiting')
             AND (lease_until IS NULL OR lease_until < $1) ORDER BY due_at LIMIT 1",
        )
        .bind(lease_now as i64)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        Ok(at.flatten().map(|t| t as u64))
    }
}

/// What `GET /v1/health` reports about the work waiting in the database.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Backlog {
    /// Runs whose step is due and not leased to any host.
    pub runs_due: i64,
    /// Due runs a host holds a live lease on (executing now).
    pub runs_leased: i64,
    /// How long the oldest unleased due run has waited, in ms.
    pub oldest_due_ms: u64,
    /// Messages due for delivery, not yet claimed.
    pub outbox_due: i64,
    /// Messages a host is handing to a provider.
    pub outbox_sending: i64,
    /// Dead letters waiting for an operator.
    pub outbox_dead: i64,
}

impl Store {
    /// The backlog at `now` (run time) and `lease_now` (system time); every
    /// count reads a partial index, so it stays cheap with millions of runs.
    ///
    /// # Errors
    /// A database failure.
    pub async fn backlog(&self, now: u64, lease_now: u64) -> Result<Backlog, StoreError> {
        let row = sqlx::query(
            "SELECT
                 (SELECT COUNT(*) FROM runs WHERE status IN ('active', 'waiting') AND due_at <= $1
                     AND (lease_until IS NULL OR lease_until < $2)) AS runs_due,
                 (SELECT COUNT(*) FROM runs WHERE status IN ('active', 'waiting') AND due_at <= $1
                     AND lease_until >= $2) AS runs_leased,
                 (SELECT MIN(due_at) FROM runs WHERE status IN ('active', 'waiting') AND due_at <= $1
                     AND (lease_until IS NULL OR lease_until < $2)) AS oldest_due,
                 (SELECT COUNT(*) FROM outbox WHERE status = 'queued' AND not_before <= $1) AS outbox_due,
                 (SELECT COUNT(*) FROM outbox WHERE status = 'sending') AS outbox_sending,
                 (SELECT COUNT(*) FROM outbox WHERE status = 'dead') AS outbox_dead",
        )
        .bind(now as i64)
        .bind(lease_now as i64)
        .fetch_one(self.pool())
        .await?;
        let oldest: Option<i64> = row.get("oldest_due");
        Ok(Backlog {
            runs_due: row.get("runs_due"),
            runs_leased: row.get("runs_leased"),
            oldest_due_ms: oldest.map_or(0, |t| now.saturating_sub(t.max(0) as u64)),
            outbox_due: row.get("outbox_due"),
            outbox_sending: row.get("outbox_sending"),
            outbox_dead: row.get("outbox_dead"),
        })
    }
}
