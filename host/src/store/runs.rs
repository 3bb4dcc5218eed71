//! Runs: creating one (the entry into a journey), reading them, and the
//! row helpers every run query shares (the column list, decoding, the
//! guarded event delivery).

use super::StoreError;
use super::db::{Store, WriteTx};
use super::types::*;
use sqlx::any::AnyRow;
// Only the fixed RUN_COLUMNS list is formatted into SQL; values are bound.
use sqlx::{AssertSqlSafe, Row};

pub(super) const RUN_COLUMNS: &str = "id, tenant_id, journey_id, version, user_id, input, status, step, checkpoint, \
     wait, due_at, pending_wake, failure, exit_reason, seed, started_at, ceiling_at, updated_at, ended_at";

impl Store {
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
        .fetch_optional(self.pool())
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
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(run_row).collect()
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
                                    ELSE (SELECT COALESCE(MAX(e.id), 0) FROM events e
                                          WHERE e.tenant_id = runs.tenant_id AND e.user_id = runs.user_id) END
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
