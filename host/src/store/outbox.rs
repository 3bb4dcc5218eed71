//! The outbox as a delivery queue: claim due messages with a lease, record
//! what the provider said, recover messages whose host stopped mid-delivery,
//! list them, and retry dead letters.
//!
//! Every result is written only by the lease's owner while the message is
//! still `sending`, so a host whose lease was taken over cannot overwrite the
//! newer attempt's outcome.

use super::StoreError;
use super::db::Store;
use crate::clock::Millis;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

/// An outbox row.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub key: String,
    pub run_id: i64,
    pub step: u32,
    pub user_id: String,
    pub channel: String,
    pub recipient: String,
    pub template: String,
    pub props: serde_json::Value,
    pub category: String,
    pub status: String,
    /// Not delivered before this instant (a send window's opening, a retry's backoff).
    pub not_before: Millis,
    pub attempts: u32,
    pub provider: Option<String>,
    pub provider_id: Option<String>,
    pub delivered_to: Option<String>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub sent_at: Option<Millis>,
}

/// Filters for listing the outbox.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxFilter {
    pub run_id: Option<i64>,
    pub user_id: Option<String>,
    pub status: Option<String>,
    pub limit: Option<u32>,
}

/// A message claimed for delivery.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub tenant_id: String,
    pub key: String,
    pub user_id: String,
    pub channel: String,
    pub recipient: String,
    pub template: String,
    pub props: serde_json::Value,
    pub category: String,
    /// Including this one.
    pub attempts: u32,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivered {
    Sent {
        provider: &'static str,
        provider_id: String,
        delivered_to: String,
    },
    /// A transient failure: try again at `at`.
    Retry { error: String, at: Millis },
    /// A permanent failure, or retries exhausted.
    Dead { error: String },
    /// Policy refused it at delivery (unsubscribed or suppressed meanwhile).
    Refused {
        status: &'static str,
        reason: String,
    },
}

/// A message found `sending` whose host stopped (or whose lease ran out).
#[derive(Debug, Clone)]
pub struct Interrupted {
    pub id: i64,
    pub tenant_id: String,
    pub channel: String,
}

const COLUMNS: &str = "id, key, run_id, step, user_id, channel, recipient, template, props, category, status, \
     not_before, attempts, provider, provider_id, delivered_to, last_error, created_at, sent_at";

fn outbox_row(r: &AnyRow) -> Result<OutboxRow, StoreError> {
    Ok(OutboxRow {
        id: r.get("id"),
        key: r.get("key"),
        run_id: r.get("run_id"),
        step: r.get::<i64, _>("step") as u32,
        user_id: r.get("user_id"),
        channel: r.get("channel"),
        recipient: r.get("recipient"),
        template: r.get("template"),
        props: serde_json::from_str(r.get("props")).map_err(StoreError::corrupt("outbox.props"))?,
        category: r.get("category"),
        status: r.get("status"),
        not_before: r.get::<i64, _>("not_before") as Millis,
        attempts: r.get::<i64, _>("attempts") as u32,
        provider: r.get("provider"),
        provider_id: r.get("provider_id"),
        delivered_to: r.get("delivered_to"),
        last_error: r.get("last_error"),
        created_at: r.get::<i64, _>("created_at") as Millis,
        sent_at: r.get::<Option<i64>, _>("sent_at").map(|t| t as Millis),
    })
}

impl Store {
    /// A tenant's outbox rows, oldest first (at most `limit`, default and maximum 1000).
    ///
    /// # Errors
    /// A database failure or a corrupt row.
    pub async fn outbox(
        &self,
        tenant: &str,
        filter: &OutboxFilter,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE tenant_id = $1 AND ($2 IS NULL OR run_id = $2)
             AND ($3 IS NULL OR user_id = $3) AND ($4 IS NULL OR status = $4) ORDER BY id LIMIT $5"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant)
            .bind(filter.run_id)
            .bind(&filter.user_id)
            .bind(&filter.status)
            .bind(i64::from(filter.limit.unwrap_or(1000).min(1000)))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(outbox_row).collect()
    }

    /// One outbox row of a tenant.
    ///
    /// # Errors
    /// A database failure or a corrupt row.
    pub async fn outbox_message(
        &self,
        tenant: &str,
        id: i64,
    ) -> Result<Option<OutboxRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE tenant_id = $1 AND id = $2");
        sqlx::query(AssertSqlSafe(sql))
            .bind(tenant)
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(outbox_row)
            .transpose()
    }

    /// Leases up to `limit` queued messages due at `now` to `owner` until
    /// `lease_until` (system time) and counts the attempt.
    ///
    /// # Errors
    /// A database failure or a corrupt row.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<Claimed>, StoreError> {
        let _writer = self.write_lock().await;
        let skip = super::claim::skip_locked(self.backend());
        let rows = sqlx::query(AssertSqlSafe(format!(
            "UPDATE outbox SET status = 'sending', lease_owner = $1, lease_until = $2,
                 attempts = attempts + 1, updated_at = $3
             WHERE id IN (SELECT id FROM outbox WHERE status = 'queued' AND not_before <= $3
                          ORDER BY not_before, id LIMIT $4{skip})
             RETURNING id, tenant_id, key, user_id, channel, recipient, template, props, category, attempts"
        )))
        .bind(owner)
        .bind(lease_until as i64)
        .bind(now as i64)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Claimed {
                    id: r.get("id"),
                    tenant_id: r.get("tenant_id"),
                    key: r.get("key"),
                    user_id: r.get("user_id"),
                    channel: r.get("channel"),
                    recipient: r.get("recipient"),
                    template: r.get("template"),
                    props: serde_json::from_str(r.get("props"))
                        .map_err(StoreError::corrupt("outbox.props"))?,
                    category: r.get("category"),
                    attempts: r.get::<i64, _>("attempts") as u32,
                })
            })
            .collect()
    }

    /// Records attempts' outcomes, each only if `owner` still holds its lease.
    /// Returns how many were recorded.
    ///
    /// # Errors
    /// A database failure; nothing was recorded and the leases expire.
    pub async fn record_deliveries(
        &self,
        owner: &str,
        results: &[(i64, Delivered)],
        now: Millis,
    ) -> Result<usize, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut recorded = 0;
        for (id, result) in results {
            let (status, not_before, provider, provider_id, delivered_to, error, sent_at) =
                match result {
                    Delivered::Sent {
                        provider,
                        provider_id,
                        delivered_to,
                    } => (
                        "sent",
                        None,
                        Some(*provider),
                        Some(provider_id.as_str()),
                        Some(delivered_to.as_str()),
                        None,
                        Some(now),
                    ),
                    Delivered::Retry { error, at } => (
                        "queued",
                        Some(*at),
                        None,
                        None,
                        None,
                        Some(error.as_str()),
                        None,
                    ),
                    Delivered::Dead { error } => {
                        ("dead", None, None, None, None, Some(error.as_str()), None)
                    }
                    Delivered::Refused { status, reason } => {
                        (*status, None, None, None, None, Some(reason.as_str()), None)
                    }
                };
            recorded += sqlx::query(
                "UPDATE outbox SET status = $1, not_before = COALESCE($2, not_before),
                     provider = COALESCE($3, provider), provider_id = $4, delivered_to = $5,
                     last_error = $6, sent_at = $7, lease_owner = NULL, lease_until = NULL, updated_at = $8
                 WHERE id = $9 AND status = 'sending' AND lease_owner = $10",
            )
            .bind(status)
            .bind(not_before.map(|t| t as i64))
            .bind(provider)
            .bind(provider_id)
            .bind(delivered_to)
            .bind(error)
            .bind(sent_at.map(|t| t as i64))
            .bind(now as i64)
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected() as usize;
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// Messages left `sending` by a host that stopped: those whose lease ran
    /// out by `lease_now`, and, at startup, every one this host's previous
    /// life held (it has nothing in flight yet).
    ///
    /// # Errors
    /// A database failure.
    pub async fn interrupted_deliveries(
        &self,
        owner: &str,
        lease_now: Millis,
        startup: bool,
    ) -> Result<Vec<Interrupted>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, channel FROM outbox WHERE status = 'sending'
             AND (lease_until < $1 OR ($2 = 1 AND lease_owner = $3)) ORDER BY id LIMIT 1000",
        )
        .bind(lease_now as i64)
        .bind(i64::from(startup))
        .bind(owner)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| Interrupted {
                id: r.get("id"),
                tenant_id: r.get("tenant_id"),
                channel: r.get("channel"),
            })
            .collect())
    }

    /// Settles an interrupted message: queued again to be delivered with the
    /// same idempotency key, or dead-lettered with `error` when its provider
    /// cannot recognise a repeat.
    ///
    /// # Errors
    /// A database failure.
    pub async fn settle_interrupted(
        &self,
        id: i64,
        redeliver: bool,
        error: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let _writer = self.write_lock().await;
        sqlx::query(
            "UPDATE outbox SET status = CASE WHEN $1 = 1 THEN 'queued' ELSE 'dead' END, last_error = $2,
                 lease_owner = NULL, lease_until = NULL, updated_at = $3
             WHERE id = $4 AND status = 'sending'",
        )
        .bind(i64::from(redeliver))
        .bind(error)
        .bind(now as i64)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Queues a dead letter again with a fresh set of attempts.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] if the message is unknown or not dead; a database failure.
    pub async fn retry_dead(
        &self,
        tenant: &str,
        id: i64,
        now: Millis,
    ) -> Result<OutboxRow, StoreError> {
        {
            let _writer = self.write_lock().await;
            let updated = sqlx::query(
                "UPDATE outbox SET status = 'queued', not_before = 0, attempts = 0, updated_at = $1
                 WHERE tenant_id = $2 AND id = $3 AND status = 'dead'",
            )
            .bind(now as i64)
            .bind(tenant)
            .bind(id)
            .execute(self.pool())
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(match self.outbox_message(tenant, id).await? {
                    None => StoreError::UnknownMessage(id),
                    Some(message) => StoreError::Invalid(format!(
                        "message {id} is {}, not dead: only dead letters are retried",
                        message.status
                    )),
                });
            }
        }
        Ok(self
            .outbox_message(tenant, id)
            .await?
            .expect("the row was just updated"))
    }

    /// When the next queued message comes due, if any.
    ///
    /// # Errors
    /// A database failure.
    pub async fn next_delivery_at(&self) -> Result<Option<Millis>, StoreError> {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT MIN(not_before) FROM outbox WHERE status = 'queued'")
                .fetch_one(self.pool())
                .await?;
        Ok(at.map(|t| t.max(0) as Millis))
    }
}
