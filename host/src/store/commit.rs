//! Group commit of executed steps: a fixed number of statements per batch,
//! whatever its size.
//!
//! 1. One guarded `UPDATE runs ... FROM (VALUES ...) RETURNING id` moves every
//!    run whose status and step are still what the step started from and
//!    whose lease this host still holds; the others (exited meanwhile, or
//!    whose lease expired and passed to another host) are discarded with all
//!    their effects.
//!    The same statement stores each waiting run's snapshot on its row.
//! 2. Multi-row inserts write one `steps` row per applied step (woken by,
//!    effects, journal, outcome) and the outbox rows.
//! 3. A new event wait looks back for events stored since its step began.
//!
//! On Postgres the transaction first locks the batch's users (see
//! `WriteTx::lock_users`), so an event another host ingests meanwhile is
//! either seen by the look-back or finds the wait registered.

use super::StoreError;
use super::db::{Backend, WriteTx};
use super::runs::deliver_event;
use super::types::*;
use crate::delivery::Verdict;
use crate::durable::{Effect, WaitKind, all_match};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Row};
use std::collections::HashSet;

/// Rows per multi-row statement: well under SQLite's 32,766 bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// Commits the steps: per step whether it applied, and how many new event
/// waits an already stored event satisfied at once (those runs are due now).
pub(super) async fn commit_steps(
    tx: &mut WriteTx,
    commits: &[StepCommit],
) -> Result<Committed, StoreError> {
    tx.lock_users(
        commits
            .iter()
            .map(|c| (c.tenant_id.as_str(), c.user_id.as_str())),
    )
    .await?;
    let mut applied_ids = HashSet::with_capacity(commits.len());
    for chunk in commits.chunks(ROWS_PER_STATEMENT) {
        applied_ids.extend(update_runs(tx, chunk).await?);
    }
    let applied: Vec<&StepCommit> = commits
        .iter()
        .filter(|c| applied_ids.contains(&c.run_id))
        .collect();

    for chunk in applied.chunks(ROWS_PER_STATEMENT) {
        insert_steps(tx, chunk).await?;
    }
    let outbox: Vec<(&StepCommit, &crate::durable::OutboxMessage)> = applied
        .iter()
        .flat_map(|c| c.record.outbox.iter().map(move |m| (*c, m)))
        .collect();
    for chunk in outbox.chunks(ROWS_PER_STATEMENT) {
        insert_outbox(tx, chunk).await?;
    }
    let mut redelivered = 0;
    for c in &applied {
        if let StepEnd::Waiting { wait, .. } = &c.end
            && let WaitKind::Event { name, filter } = &wait.kind
        {
            redelivered += usize::from(look_back(tx, c, name, filter).await?);
        }
    }
    Ok(Committed {
        applied: commits
            .iter()
            .map(|c| applied_ids.contains(&c.run_id))
            .collect(),
        redelivered,
    })
}

/// The guarded transition of every run in `chunk`; the ids that moved.
async fn update_runs(tx: &mut WriteTx, chunk: &[StepCommit]) -> Result<Vec<i64>, StoreError> {
    let mut sql = String::from(
        "WITH v(id, status, step, checkpoint, wait, wait_event, due_at, snapshot, failure, updated_at, \
         ended_at, expected_status, expected_step, lease_owner) AS (",
    );
    sql.push_str(&values(tx.backend, chunk.len(), 14));
    sql.push_str(
        ") UPDATE runs SET status = v.status, step = v.step, checkpoint = COALESCE(v.checkpoint, runs.checkpoint), \
         wait = v.wait, wait_event = v.wait_event, due_at = v.due_at, pending_wake = NULL, failure = v.failure, \
         snapshot = CASE v.status WHEN 'waiting' THEN v.snapshot WHEN 'completed' THEN NULL ELSE runs.snapshot END, \
         updated_at = v.updated_at, ended_at = v.ended_at, lease_owner = NULL, lease_until = NULL \
         FROM v WHERE runs.id = v.id AND runs.status = v.expected_status AND runs.step = v.expected_step \
         AND runs.lease_owner = v.lease_owner \
         RETURNING runs.id",
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for c in chunk {
        let checkpoint = c.record.effects.iter().rev().find_map(|e| match e {
            Effect::Checkpoint { label } => Some(label.clone()),
            _ => None,
        });
        let (status, wait, wait_event, due_at, failure, ended_at) = match &c.end {
            StepEnd::Waiting { wait, .. } => (
                RunStatus::Waiting,
                Some(serde_json::to_string(wait).expect("a wait serializes")),
                match &wait.kind {
                    WaitKind::Event { name, .. } => Some(name.clone()),
                    WaitKind::Timer => None,
                },
                Some(wait.deadline as i64),
                None,
                None,
            ),
            StepEnd::Completed => (
                RunStatus::Completed,
                None,
                None,
                None,
                None,
                Some(c.now as i64),
            ),
            StepEnd::Failed(reason) => (
                RunStatus::Failed,
                None,
                None,
                None,
                Some(reason.clone()),
                Some(c.now as i64),
            ),
        };
        q = q
            .bind(c.run_id)
            .bind(status.as_str())
            .bind(i64::from(c.expected_step) + 1)
            .bind(checkpoint)
            .bind(wait)
            .bind(wait_event)
            .bind(due_at)
            .bind(match &c.end {
                StepEnd::Waiting { snapshot, .. } => Some(snapshot.as_slice()),
                _ => None,
            })
            .bind(failure)
            .bind(c.now as i64)
            .bind(ended_at)
            .bind(c.expected_status.as_str())
            .bind(i64::from(c.expected_step))
            .bind(c.lease_owner.as_str());
    }
    let rows = q.fetch_all(&mut **tx).await?;
    Ok(rows.iter().map(|r| r.get::<i64, _>(0)).collect())
}

/// One `steps` row per applied step: what woke it, its effects and journal, how it ended.
async fn insert_steps(tx: &mut WriteTx, applied: &[&StepCommit]) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO steps (run_id, step, at, woken_by, event_id, effects, journal, outcome, committed_at) {}",
        values(tx.backend, applied.len(), 9)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for c in applied {
        let outcome = match &c.end {
            StepEnd::Waiting { wait, snapshot } => {
                let mut detail = serde_json::to_value(wait).expect("a wait serializes");
                detail["snapshot_bytes"] = json!(snapshot.len());
                json!({ "kind": "wait", "detail": detail })
            }
            StepEnd::Completed => json!({ "kind": "completed", "detail": {} }),
            StepEnd::Failed(reason) => json!({ "kind": "failed", "detail": { "reason": reason } }),
        };
        q = q
            .bind(c.run_id)
            .bind(i64::from(c.expected_step))
            .bind(c.at as i64)
            .bind(c.woken_by.as_str())
            .bind(c.event_id)
            .bind(serde_json::to_string(&c.record.effects).expect("effects serialize"))
            .bind(serde_json::to_string(&c.record.journal).expect("a journal serializes"))
            .bind(outcome.to_string())
            .bind(c.now as i64);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

async fn insert_outbox(
    tx: &mut WriteTx,
    rows: &[(&StepCommit, &crate::durable::OutboxMessage)],
) -> Result<(), StoreError> {
    // The key is (run, step, call) or the journey's label: a send is queued once.
    let sql = format!(
        "INSERT INTO outbox (tenant_id, key, run_id, step, user_id, channel, recipient, template, \
         props, category, status, not_before, created_at, updated_at) {} ON CONFLICT(run_id, key) DO NOTHING",
        values(tx.backend, rows.len(), 14)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for (c, m) in rows {
        let not_before = match m.verdict {
            Verdict::DeferredUntil(at) => at,
            _ => 0,
        };
        q = q
            .bind(c.tenant_id.as_str())
            .bind(m.key.as_str())
            .bind(c.run_id)
            .bind(i64::from(c.expected_step))
            .bind(c.user_id.as_str())
            .bind(m.channel.as_str())
            .bind(m.recipient.as_str())
            .bind(m.template.as_str())
            .bind(m.props.to_string())
            .bind(m.category.as_str())
            .bind(m.verdict.outbox_status())
            .bind(not_before as i64)
            .bind(c.now as i64)
            .bind(c.now as i64);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

/// `VALUES (..), (..)` for `rows` rows of `columns` placeholders: `$N` for
/// Postgres, `?` for SQLite, which would search its list of named
/// parameters for each of thousands of `$N` (a group commit took 4x longer).
fn values(backend: Backend, rows: usize, columns: usize) -> String {
    let mut sql = String::from("VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => sql.push_str(&format!("${}", row * columns + column + 1)),
            }
        }
        sql.push(')');
    }
    sql
}

/// An event stored after the step began may already satisfy the wait it registered.
async fn look_back(
    tx: &mut WriteTx,
    c: &StepCommit,
    name: &str,
    filter: &[crate::durable::Condition],
) -> Result<bool, StoreError> {
    let candidates = sqlx::query(
        "SELECT id, properties, timestamp FROM events
         WHERE tenant_id = $1 AND user_id = $2 AND name = $3 AND id > $4 ORDER BY id",
    )
    .bind(&c.tenant_id)
    .bind(&c.user_id)
    .bind(name)
    .bind(c.event_watermark)
    .fetch_all(&mut **tx)
    .await?;
    for row in candidates {
        let properties: Value = serde_json::from_str(row.get("properties"))
            .map_err(StoreError::corrupt("events.properties"))?;
        if all_match(filter, &properties) {
            let event = PendingEvent {
                event_id: row.get("id"),
                name: name.to_string(),
                properties,
                timestamp: row.get::<i64, _>("timestamp") as u64,
            };
            let delivered = deliver_event(
                tx,
                c.run_id,
                i64::from(c.expected_step + 1),
                &event,
                c.now,
                None,
            )
            .await?;
            return Ok(delivered.is_some());
        }
    }
    Ok(false)
}

impl super::db::Store {
    /// Commits steps in one transaction (group commit). Returns, per step,
    /// whether it applied: a step whose run moved on (another worker, an exit)
    /// is discarded with all its effects.
    ///
    /// # Errors
    /// A database failure; nothing was committed.
    pub async fn commit_steps(&self, commits: &[StepCommit]) -> Result<Committed, StoreError> {
        let mut tx = self.write_tx().await?;
        let applied = commit_steps(&mut tx, commits).await?;
        tx.commit().await?;
        Ok(applied)
    }
}
