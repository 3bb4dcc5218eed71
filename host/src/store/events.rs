//! Events and contacts: applying an ingest plan (exits, enrollments under the
//! entry rules, wait resumptions) exactly once per idempotency key, in one
//! transaction; identifying and deleting contacts; cancelling runs.

use super::StoreError;
use super::db::{Store, WriteTx};
use super::runs::{NewRun, RUN_COLUMNS, deliver_event, insert_run, run_row, user_deleted};
use super::types::*;
use crate::durable::{Wait, WaitKind, all_match};
use crate::engine::EntryLimit;
use crate::ingest::{EventOutcome, EventPlan, Identify, NewEvent, SkipReason, Skipped};
use serde_json::Value;
use sqlx::{AssertSqlSafe, Row};

impl Store {
    /// Applies events in order, in one transaction: each is stored once per
    /// idempotency key (a repeated key returns its original outcome and
    /// changes nothing), then exits, enrollments and resumptions follow its plan.
    ///
    /// # Errors
    /// A database failure; nothing was stored.
    ///
    /// With a `lease`, the runs the events resume are claimed for its owner
    /// in the same transaction and returned, ready to execute.
    pub async fn apply_events(
        &self,
        events: &[(NewEvent, EventPlan)],
        now: u64,
        lease: Option<&Lease>,
    ) -> Result<(Vec<EventOutcome>, Vec<DueRun>), StoreError> {
        let mut tx = self.write_tx().await?;
        tx.lock_users(
            events
                .iter()
                .map(|(e, _)| (e.tenant_id.as_str(), e.user_id.as_str())),
        )
        .await?;
        let mut outcomes = Vec::with_capacity(events.len());
        let mut due = Vec::new();
        for (event, plan) in events {
            outcomes.push(apply_event(&mut tx, event, plan, now, lease, &mut due).await?);
        }
        tx.commit().await?;
        Ok((outcomes, due))
    }

    /// Creates or updates a contact; `properties` are merged (null removes a key).
    ///
    /// # Errors
    /// [`StoreError::UserDeleted`] for a deleted contact, or a database failure.
    pub async fn identify(
        &self,
        tenant: &str,
        contact: &Identify,
        now: u64,
    ) -> Result<Value, StoreError> {
        let mut tx = self.write_tx().await?;
        if user_deleted(&mut tx, tenant, &contact.user_id).await? {
            return Err(StoreError::UserDeleted(contact.user_id.clone()));
        }
        // Merged here, not in SQL, so both databases merge the same way
        // (RFC 7396: objects merge recursively, a null removes the key).
        let stored: Option<String> = sqlx::query_scalar(
            "SELECT properties FROM contacts WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(tenant)
        .bind(&contact.user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let mut properties = match stored {
            Some(text) => {
                serde_json::from_str(&text).map_err(StoreError::corrupt("contacts.properties"))?
            }
            None => Value::Object(Default::default()),
        };
        if let Some(patch) = &contact.properties {
            merge_patch(&mut properties, patch);
        }
        let row = sqlx::query(
            "INSERT INTO contacts (tenant_id, user_id, email, timezone, properties, created_at, updated_at)
             VALUES ($6, $1, $2, $3, $4, $5, $5)
             ON CONFLICT(tenant_id, user_id) DO UPDATE SET email = COALESCE($2, contacts.email),
                 timezone = COALESCE($3, contacts.timezone), properties = $4, updated_at = $5
             RETURNING user_id, email, timezone, properties, created_at, updated_at",
        )
        .bind(&contact.user_id)
        .bind(&contact.email)
        .bind(&contact.timezone)
        .bind(properties.to_string())
        .bind(now as i64)
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(serde_json::json!({
            "user_id": row.get::<String, _>("user_id"),
            "email": row.get::<Option<String>, _>("email"),
            "timezone": row.get::<Option<String>, _>("timezone"),
            "properties": serde_json::from_str::<Value>(row.get("properties"))
                .map_err(StoreError::corrupt("contacts.properties"))?,
            "created_at": row.get::<i64, _>("created_at"),
            "updated_at": row.get::<i64, _>("updated_at"),
        }))
    }

    /// Soft-deletes a contact (GDPR): erases their personal data, exits
    /// their active and waiting runs, and refuses new runs. Returns the exited runs.
    ///
    /// # Errors
    /// A database failure.
    pub async fn delete_contact(
        &self,
        tenant: &str,
        user_id: &str,
        now: u64,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.write_tx().await?;
        tx.lock_users([(tenant, user_id)]).await?;
        sqlx::query(
            "INSERT INTO contacts (tenant_id, user_id, properties, created_at, updated_at, deleted_at)
             VALUES ($3, $1, '{}', $2, $2, $2)
             ON CONFLICT(tenant_id, user_id) DO UPDATE SET email = NULL, timezone = NULL, properties = '{}',
                 updated_at = $2, deleted_at = COALESCE(contacts.deleted_at, $2)",
        )
        .bind(user_id)
        .bind(now as i64)
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
        let exited = exit_runs(&mut tx, tenant, None, Some(user_id), "user-deleted", now).await?;
        tx.commit().await?;
        Ok(exited)
    }

    /// Ends a run at once (`exited`, reason `cancelled`); its wait is cancelled
    /// and its snapshot kept for inspection.
    ///
    /// # Errors
    /// [`StoreError::UnknownRun`] (also for another tenant's run),
    /// [`StoreError::RunEnded`], or a database failure.
    pub async fn cancel_run(&self, tenant: &str, id: i64, now: u64) -> Result<RunRow, StoreError> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE runs SET status = 'exited', exit_reason = 'cancelled', ended_at = $1, updated_at = $1,
                 wait_event = NULL, due_at = NULL, pending_wake = NULL, lease_owner = NULL, lease_until = NULL
             WHERE id = $2 AND tenant_id = $3 AND status IN ('active', 'waiting') RETURNING {RUN_COLUMNS}"
        )))
        .bind(now as i64)
        .bind(id)
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        match row {
            Some(row) => run_row(&row),
            None => match self.run(id).await?.filter(|r| r.tenant_id == tenant) {
                Some(run) => Err(StoreError::RunEnded {
                    id,
                    status: run.status.as_str(),
                }),
                None => Err(StoreError::UnknownRun(id)),
            },
        }
    }

    /// Turns enrollment on or off for a journey; its runs go on either way.
    ///
    /// # Errors
    /// [`StoreError::UnknownJourney`], or a database failure.
    pub async fn set_enabled(
        &self,
        tenant: &str,
        journey_id: &str,
        enabled: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        let _writer = self.write_lock().await;
        let changed = sqlx::query(
            "UPDATE journeys SET enabled = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4",
        )
        .bind(i64::from(enabled))
        .bind(now as i64)
        .bind(tenant)
        .bind(journey_id)
        .execute(self.pool())
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::UnknownJourney(journey_id.to_string()));
        }
        Ok(())
    }

    /// Skipped enrollments of a user, newest first (at most 100).
    ///
    /// # Errors
    /// A database failure.
    pub async fn skipped_enrollments(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<Vec<Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT event_id, journey_id, reason, at FROM skipped_enrollments
             WHERE tenant_id = $1 AND user_id = $2 ORDER BY id DESC LIMIT 100",
        )
        .bind(tenant)
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "event_id": r.get::<i64, _>("event_id"),
                    "journey": r.get::<String, _>("journey_id"),
                    "reason": r.get::<String, _>("reason"),
                    "at": r.get::<i64, _>("at"),
                })
            })
            .collect())
    }
}

async fn apply_event(
    tx: &mut WriteTx,
    event: &NewEvent,
    plan: &EventPlan,
    now: u64,
    lease: Option<&Lease>,
    due: &mut Vec<DueRun>,
) -> Result<EventOutcome, StoreError> {
    let tenant = event.tenant_id.as_str();
    if let Some(original) = seen_before(tx, event).await? {
        return Ok(original);
    }
    // A key another user's event took on another host since the check above:
    // the insert waits for that transaction and then does nothing.
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO events (tenant_id, user_id, name, properties, timestamp, received_at, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id",
    )
    .bind(tenant)
    .bind(&event.user_id)
    .bind(&event.name)
    .bind(event.properties.to_string())
    .bind(event.timestamp as i64)
    .bind(now as i64)
    .bind(&event.idempotency_key)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(event_id) = inserted else {
        return seen_before(tx, event)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                what: "events.idempotency_key",
                why: "a conflicting key that cannot be read".into(),
            });
    };
    let mut outcome = EventOutcome {
        stored: true,
        event_id,
        ..EventOutcome::default()
    };

    // Exits first: an event that both exits and resumes a run exits it.
    for journey in &plan.exit {
        let reason = format!("exit-on:{}", event.name);
        outcome.exited.extend(
            exit_runs(
                tx,
                tenant,
                Some(journey),
                Some(&event.user_id),
                &reason,
                now,
            )
            .await?,
        );
    }

    let deleted = !plan.enroll.is_empty() && user_deleted(tx, tenant, &event.user_id).await?;
    for journey in &plan.conditions_not_met {
        outcome.skipped.push(Skipped {
            journey: journey.clone(),
            reason: SkipReason::ConditionsNotMet,
        });
    }
    for enrollment in &plan.enroll {
        let refused = if deleted {
            Some(SkipReason::UserDeleted)
        } else if !enrollment.enabled {
            Some(SkipReason::Disabled)
        } else {
            entry_refusal(
                tx,
                tenant,
                &enrollment.journey_id,
                &event.user_id,
                enrollment.entry_limit,
                now,
            )
            .await?
        };
        if let Some(reason) = refused {
            outcome.skipped.push(Skipped {
                journey: enrollment.journey_id.clone(),
                reason,
            });
            continue;
        }
        let input = event.properties.to_string();
        let run = NewRun {
            tenant,
            journey_id: &enrollment.journey_id,
            version: &enrollment.version,
            user_id: &event.user_id,
            input: &input,
            ceiling_ms: enrollment.ceiling_ms,
        };
        match insert_run(tx, &run, now).await? {
            Some(run) => outcome.enrolled.push(run.id),
            None => outcome.skipped.push(Skipped {
                journey: enrollment.journey_id.clone(),
                reason: SkipReason::AlreadyActive,
            }),
        }
    }
    for skipped in &outcome.skipped {
        sqlx::query(
            "INSERT INTO skipped_enrollments (tenant_id, event_id, journey_id, user_id, reason, at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tenant)
        .bind(event_id)
        .bind(&skipped.journey)
        .bind(&event.user_id)
        .bind(skipped.reason.as_str())
        .bind(now as i64)
        .execute(&mut **tx)
        .await?;
    }

    // Hand the event to the user's runs waiting for it whose filter matches.
    let waiting = sqlx::query(
        "SELECT id, step, wait FROM runs WHERE status = 'waiting' AND tenant_id = $1 AND user_id = $2
         AND wait_event = $3 AND pending_wake IS NULL",
    )
    .bind(tenant)
    .bind(&event.user_id)
    .bind(&event.name)
    .fetch_all(&mut **tx)
    .await?;
    let pending = PendingEvent {
        event_id,
        name: event.name.clone(),
        properties: event.properties.clone(),
        timestamp: event.timestamp,
    };
    for row in waiting {
        let wait: Wait =
            serde_json::from_str(row.get("wait")).map_err(StoreError::corrupt("runs.wait"))?;
        let WaitKind::Event { filter, .. } = &wait.kind else {
            continue;
        };
        if all_match(filter, &event.properties) {
            let id: i64 = row.get("id");
            if let Some(run) = deliver_event(tx, id, row.get("step"), &pending, now, lease).await? {
                outcome.resumed.push(id);
                if lease.is_some() {
                    due.push(run);
                }
            }
        }
    }

    // The outcome is what a repeated key gets back; without a key nobody can ask.
    if event.idempotency_key.is_some() {
        sqlx::query("UPDATE events SET outcome = $1 WHERE id = $2")
            .bind(serde_json::to_string(&outcome).expect("an outcome serializes"))
            .bind(event_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(outcome)
}

/// What an event with the same idempotency key did, if one was stored
/// (`stored: false` marks the answer as a repeat).
async fn seen_before(
    tx: &mut WriteTx,
    event: &NewEvent,
) -> Result<Option<EventOutcome>, StoreError> {
    let Some(key) = &event.idempotency_key else {
        return Ok(None);
    };
    let seen: Option<Option<String>> = sqlx::query_scalar(
        "SELECT outcome FROM events WHERE tenant_id = $1 AND idempotency_key = $2",
    )
    .bind(&event.tenant_id)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    seen.map(|outcome| {
        let mut original: EventOutcome = serde_json::from_str(outcome.as_deref().unwrap_or("{}"))
            .map_err(StoreError::corrupt("events.outcome"))?;
        original.stored = false;
        Ok(original)
    })
    .transpose()
}

/// Whether the entry rules refuse a new run of `journey` for `user`.
async fn entry_refusal(
    tx: &mut WriteTx,
    tenant: &str,
    journey: &str,
    user: &str,
    limit: EntryLimit,
    now: u64,
) -> Result<Option<SkipReason>, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS runs, MAX(started_at) AS last,
                COUNT(*) FILTER (WHERE status IN ('active', 'waiting')) AS live
         FROM runs WHERE tenant_id = $1 AND journey_id = $2 AND user_id = $3",
    )
    .bind(tenant)
    .bind(journey)
    .bind(user)
    .fetch_one(&mut **tx)
    .await?;
    let (runs, last, live): (i64, Option<i64>, Option<i64>) =
        (row.get("runs"), row.get("last"), row.get("live"));
    if live.unwrap_or(0) > 0 {
        return Ok(Some(SkipReason::AlreadyActive));
    }
    Ok(match limit {
        EntryLimit::Once if runs > 0 => Some(SkipReason::EntryLimit),
        EntryLimit::OncePerPeriod { period_ms }
            if last.is_some_and(|last| now < (last as u64).saturating_add(period_ms)) =>
        {
            Some(SkipReason::EntryLimit)
        }
        _ => None,
    })
}

/// Ends the active and waiting runs of a journey and/or a user: status
/// `exited`, wait cancelled, lease dropped, snapshot kept for inspection.
async fn exit_runs(
    tx: &mut WriteTx,
    tenant: &str,
    journey: Option<&str>,
    user: Option<&str>,
    reason: &str,
    now: u64,
) -> Result<Vec<i64>, StoreError> {
    let rows = sqlx::query(
        "UPDATE runs SET status = 'exited', exit_reason = $1, ended_at = $2, updated_at = $2,
             wait_event = NULL, due_at = NULL, pending_wake = NULL, lease_owner = NULL, lease_until = NULL
         WHERE status IN ('active', 'waiting') AND tenant_id = $5 AND ($3 IS NULL OR journey_id = $3)
             AND ($4 IS NULL OR user_id = $4)
         RETURNING id",
    )
    .bind(reason)
    .bind(now as i64)
    .bind(journey)
    .bind(user)
    .bind(tenant)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// JSON merge patch (RFC 7396): objects merge recursively, `null` removes a key.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let object = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            object.remove(key);
        } else {
            merge_patch(object.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}
