//! Tenants, their limits, and the API keys that map to them. A key is shown
//! once when it is created; the database keeps only its sha-256.

use super::StoreError;
use super::db::Store;
use crate::durable::Limits;
use sha2::{Digest, Sha256};
use sqlx::Row;

/// The tenant of the key-free single-tenant mode (the quick start).
pub const DEFAULT_TENANT: &str = "default";

/// A tenant as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub limits: serde_json::Value,
    pub keys: i64,
}

/// The sha-256 of an API key, as stored.
fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl Store {
    /// Creates a tenant, or updates its name and limits. `limits` is JSON with
    /// any fields of [`Limits`]; the others keep their defaults.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for limits that do not parse, or a database failure.
    pub async fn upsert_tenant(
        &self,
        id: &str,
        name: &str,
        limits: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        serde_json::from_str::<Limits>(limits)
            .map_err(|e| StoreError::Invalid(format!("tenant limits: {e}")))?;
        if id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(StoreError::Invalid(format!(
                "tenant id {id:?}: use 1-64 letters, digits, '-' or '_'"
            )));
        }
        let _writer = self.write_lock().await;
        sqlx::query(
            "INSERT INTO tenants (id, name, limits, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT(id) DO UPDATE SET name = $2, limits = $3",
        )
        .bind(id)
        .bind(name)
        .bind(limits)
        .bind(now as i64)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every tenant with its limits and how many live keys it has.
    ///
    /// # Errors
    /// A database failure.
    pub async fn tenants(&self) -> Result<Vec<TenantRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.id, t.name, t.limits,
                    (SELECT COUNT(*) FROM api_keys k WHERE k.tenant_id = t.id AND k.revoked_at IS NULL) AS keys
             FROM tenants t ORDER BY t.id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TenantRow {
                    id: r.get("id"),
                    name: r.get("name"),
                    limits: serde_json::from_str(r.get("limits"))
                        .map_err(StoreError::corrupt("tenants.limits"))?,
                    keys: r.get("keys"),
                })
            })
            .collect()
    }

    /// A tenant's limits; `None` for an unknown tenant.
    ///
    /// # Errors
    /// A database failure or limits that no longer parse.
    pub async fn tenant_limits(&self, tenant: &str) -> Result<Option<Limits>, StoreError> {
        let limits: Option<String> = sqlx::query_scalar("SELECT limits FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(self.pool())
            .await?;
        limits
            .map(|l| serde_json::from_str(&l).map_err(StoreError::corrupt("tenants.limits")))
            .transpose()
    }

    /// Creates an API key for a tenant and returns it: the only time it is shown.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an unknown tenant, or a database failure.
    pub async fn create_api_key(
        &self,
        tenant: &str,
        label: &str,
        now: u64,
    ) -> Result<String, StoreError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| StoreError::NoRandomness(e.to_string()))?;
        let key = format!("cairn_{}", hex::encode(secret));
        let _writer = self.write_lock().await;
        let inserted = sqlx::query(
            "INSERT INTO api_keys (hash, tenant_id, label, created_at)
             SELECT $1, id, $2, $3 FROM tenants WHERE id = $4",
        )
        .bind(key_hash(&key))
        .bind(label)
        .bind(now as i64)
        .bind(tenant)
        .execute(self.pool())
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Invalid(format!("no tenant {tenant:?}")));
        }
        Ok(key)
    }

    /// Revokes every key of a tenant with this label; how many.
    ///
    /// # Errors
    /// A database failure.
    pub async fn revoke_api_keys(
        &self,
        tenant: &str,
        label: &str,
        now: u64,
    ) -> Result<u64, StoreError> {
        let _writer = self.write_lock().await;
        Ok(sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE tenant_id = $2 AND label = $3 AND revoked_at IS NULL",
        )
        .bind(now as i64)
        .bind(tenant)
        .bind(label)
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    /// The tenant a live key belongs to.
    ///
    /// # Errors
    /// A database failure.
    pub async fn tenant_for_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT tenant_id FROM api_keys WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash(key))
        .fetch_optional(self.pool())
        .await?)
    }

    /// Whether any live API key exists (then every request needs one).
    ///
    /// # Errors
    /// A database failure.
    pub async fn api_keys_exist(&self) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM (SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1) AS live",
            )
                .fetch_one(self.pool())
                .await?
                > 0,
        )
    }
}
