//! Journeys and their versions: deploying one (it becomes active), which one
//! is active, how many runs each holds, when an old one drained, rolling
//! back, and retiring what nothing uses.

use super::StoreError;
use super::db::{Store, WriteTx};
use super::types::*;
use serde_json::Value;
use sqlx::Row;

/// One version of a journey, for operators.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VersionRow {
    /// The content hash (sha-256 of the component as deployed).
    pub version: String,
    pub active: bool,
    pub deployed_at: u64,
    /// When it was last made the active version.
    pub activated_at: u64,
    /// Runs on this version by status.
    pub runs: RunCounts,
    /// When it stopped taking new runs and its last run ended; `None` while
    /// it is active or has active or waiting runs.
    pub drained_at: Option<u64>,
    pub retired_at: Option<u64>,
}

/// Runs by status.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunCounts {
    pub active: i64,
    pub waiting: i64,
    pub completed: i64,
    pub failed: i64,
    pub exited: i64,
}

impl RunCounts {
    /// Runs that still need this version's component.
    pub fn live(&self) -> i64 {
        self.active + self.waiting
    }
}

impl Store {
    /// The versions of a tenant's journey: the active one first, then the
    /// most recently active, then the most recently deployed.
    ///
    /// # Errors
    /// [`StoreError::UnknownJourney`], or a database failure.
    pub async fn versions(
        &self,
        tenant: &str,
        journey: &str,
    ) -> Result<Vec<VersionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT v.hash, v.deployed_at, v.activated_at, v.retired_at, CASE WHEN j.active_version = v.hash THEN 1 ELSE 0 END AS active,
                    COUNT(r.id) FILTER (WHERE r.status = 'active') AS active_runs,
                    COUNT(r.id) FILTER (WHERE r.status = 'waiting') AS waiting,
                    COUNT(r.id) FILTER (WHERE r.status = 'completed') AS completed,
                    COUNT(r.id) FILTER (WHERE r.status = 'failed') AS failed,
                    COUNT(r.id) FILTER (WHERE r.status = 'exited') AS exited,
                    MAX(r.ended_at) AS last_ended, v.deactivated_at
             FROM journey_versions v
             JOIN journeys j ON j.tenant_id = v.tenant_id AND j.id = v.journey_id
             LEFT JOIN runs r ON r.tenant_id = v.tenant_id AND r.version = v.hash
             WHERE v.tenant_id = $1 AND v.journey_id = $2
             GROUP BY v.tenant_id, v.hash, j.active_version
             ORDER BY active DESC, v.activated_at DESC, v.deployed_at DESC, v.hash",
        )
        .bind(tenant)
        .bind(journey)
        .fetch_all(self.pool())
        .await?;
        if rows.is_empty() {
            return Err(StoreError::UnknownJourney(journey.to_string()));
        }
        Ok(rows
            .iter()
            .map(|r| {
                let runs = RunCounts {
                    active: r.get("active_runs"),
                    waiting: r.get("waiting"),
                    completed: r.get("completed"),
                    failed: r.get("failed"),
                    exited: r.get("exited"),
                };
                let active = r.get::<i64, _>("active") != 0;
                let replaced_at: Option<i64> = r.get("deactivated_at");
                let last_ended: Option<i64> = r.get("last_ended");
                let drained_at = match (active, runs.live(), replaced_at) {
                    (false, 0, Some(replaced)) => {
                        Some(replaced.max(last_ended.unwrap_or(0)) as u64)
                    }
                    _ => None,
                };
                VersionRow {
                    version: r.get("hash"),
                    active,
                    deployed_at: r.get::<i64, _>("deployed_at") as u64,
                    activated_at: r.get::<i64, _>("activated_at") as u64,
                    runs,
                    drained_at,
                    retired_at: r.get::<Option<i64>, _>("retired_at").map(|t| t as u64),
                }
            })
            .collect())
    }

    /// Makes a deployed version the active one again (a rollback): new runs
    /// use it; runs on other versions stay where they are.
    ///
    /// # Errors
    /// [`StoreError::UnknownVersion`] (also for a retired one), or a database failure.
    pub async fn activate(
        &self,
        tenant: &str,
        journey: &str,
        version: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let found = sqlx::query(
            "UPDATE journey_versions SET activated_at = $1, deactivated_at = NULL
             WHERE tenant_id = $2 AND journey_id = $3 AND hash = $4 AND retired_at IS NULL",
        )
        .bind(now as i64)
        .bind(tenant)
        .bind(journey)
        .bind(version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if found == 0 {
            return Err(StoreError::UnknownVersion {
                journey: journey.to_string(),
                version: version.to_string(),
            });
        }
        deactivate_previous(&mut tx, tenant, journey, version, now).await?;
        sqlx::query(
            "UPDATE journeys SET active_version = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4",
        )
        .bind(version)
        .bind(now as i64)
        .bind(tenant)
        .bind(journey)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Retires a version nothing uses any more: not active, no active or
    /// waiting runs. Its component bytes are dropped; its ended runs and
    /// their timelines stay. Deploying the same component again revives it.
    ///
    /// # Errors
    /// [`StoreError::UnknownVersion`], [`StoreError::VersionInUse`] for the
    /// active version or one with live runs, or a database failure.
    pub async fn retire(
        &self,
        tenant: &str,
        journey: &str,
        version: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "SELECT CASE WHEN j.active_version = v.hash THEN 1 ELSE 0 END AS active,
                    (SELECT COUNT(*) FROM runs r WHERE r.tenant_id = v.tenant_id AND r.version = v.hash
                     AND r.status IN ('active', 'waiting')) AS live
             FROM journey_versions v JOIN journeys j ON j.tenant_id = v.tenant_id AND j.id = v.journey_id
             WHERE v.tenant_id = $1 AND v.journey_id = $2 AND v.hash = $3",
        )
        .bind(tenant)
        .bind(journey)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::UnknownVersion {
            journey: journey.to_string(),
            version: version.to_string(),
        })?;
        let (active, live): (bool, i64) = (row.get::<i64, _>("active") != 0, row.get("live"));
        if active || live > 0 {
            return Err(StoreError::VersionInUse {
                journey: journey.to_string(),
                version: version.to_string(),
                why: if active {
                    "it is the active version; activate another one first".to_string()
                } else {
                    format!("{live} active or waiting runs are on it")
                },
            });
        }
        sqlx::query(
            "UPDATE journey_versions SET retired_at = $1, component = $4
             WHERE tenant_id = $2 AND hash = $3 AND retired_at IS NULL",
        )
        .bind(now as i64)
        .bind(tenant)
        .bind(version)
        .bind(Vec::<u8>::new())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
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
        .fetch_optional(self.pool())
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
        .fetch_all(self.pool())
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
        .fetch_all(self.pool())
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
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::UnknownJourney(journey_id.to_string()))?;
        let meta: Value =
            serde_json::from_str(row.get("meta")).map_err(StoreError::corrupt("journey meta"))?;
        Ok((
            row.get("active_version"),
            meta["execution_timeout_ms"].as_u64().unwrap_or(0),
        ))
    }
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
