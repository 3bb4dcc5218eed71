//! What delivery policy reads and the operator writes about recipients:
//! preferences (unsubscribes), the suppression list, templates, a tenant's
//! delivery settings, and the host secret that signs unsubscribe links.

use super::StoreError;
use super::db::Backend;
use super::db::Store;
use crate::clock::Millis;
use crate::delivery::{DeliveryConfig, Facts, Parts, check_template};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};

/// A user's subscription state: everything, and per category.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// False once the user unsubscribed from everything.
    #[serde(default = "yes")]
    pub subscribed: bool,
    /// Per-category choices; a category not listed is subscribed.
    #[serde(default)]
    pub categories: std::collections::BTreeMap<String, bool>,
}

fn yes() -> bool {
    true
}

/// A provider's report about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Feedback {
    HardBounce,
    SoftBounce,
    Complaint,
}

/// A suppression-list entry.
#[derive(Debug, Clone, Serialize)]
pub struct Suppression {
    pub address: String,
    pub hard_bounces: i64,
    pub soft_bounces: i64,
    pub complaints: i64,
    pub reason: Option<String>,
    pub suppressed_at: Option<Millis>,
}

/// A registered template, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateRow {
    pub name: String,
    pub parts: serde_json::Value,
    pub updated_at: Millis,
}

/// Everything delivery needs to know about a recipient at once.
#[derive(Debug, Clone, Default)]
pub struct Recipient {
    /// The contact's email, if it has one (and was not deleted).
    pub email: Option<String>,
    /// Whether the template asked about is registered (true if none was).
    pub template_registered: bool,
    pub facts: Facts,
}

/// Addresses are compared without (ASCII) case, as SQL `lower` does.
pub fn normalize_address(address: &str) -> String {
    address.trim().to_ascii_lowercase()
}

impl Store {
    /// What policy needs about `user_id` (and `address`, or the contact's
    /// email): unsubscribes, suppression, time zone, and, when `since` is
    /// given, the messages queued or sent to the user since then; with
    /// `template`, whether it is registered. One statement: a send pays for
    /// one round trip to the database.
    ///
    /// # Errors
    /// A database failure, or stored JSON that does not decode.
    pub async fn recipient(
        &self,
        tenant: &str,
        user_id: &str,
        address: Option<&str>,
        since: Option<Millis>,
        template: Option<&str>,
    ) -> Result<Recipient, StoreError> {
        // JSON aggregation is the one dialect difference.
        let (agg, array) = match self.backend() {
            Backend::Sqlite => ("json_group_array", "json_array"),
            Backend::Postgres => ("json_agg", "json_build_array"),
        };
        let sql = format!(
            "SELECT c.email, c.timezone,
                 CASE WHEN $5 IS NULL OR EXISTS (SELECT 1 FROM templates t WHERE t.tenant_id = $1 AND t.name = $5)
                     THEN 1 ELSE 0 END AS template_registered,
                 COALESCE((SELECT CAST({agg}(p.category) AS TEXT) FROM preferences p
                     WHERE p.tenant_id = $1 AND p.user_id = $2 AND p.subscribed = 0), '[]') AS unsubscribed,
                 (SELECT s.reason FROM suppressions s WHERE s.tenant_id = $1 AND s.suppressed_at IS NOT NULL
                     AND s.address = lower(COALESCE($3, c.email, CASE WHEN $2 LIKE '%@%' THEN $2 END)))
                     AS suppressed,
                 CASE WHEN $4 IS NULL THEN '[]' ELSE COALESCE(
                     (SELECT CAST({agg}({array}(category, n)) AS TEXT) FROM
                         (SELECT o.category, COUNT(*) AS n FROM outbox o
                          WHERE o.tenant_id = $1 AND o.user_id = $2 AND o.created_at > $4
                            AND o.status IN ('queued', 'sending', 'sent')
                          GROUP BY o.category) AS recent), '[]') END AS recent
             FROM (SELECT 1 AS one) AS here LEFT JOIN contacts c
                 ON c.tenant_id = $1 AND c.user_id = $2 AND c.deleted_at IS NULL"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant)
            .bind(user_id)
            .bind(address)
            .bind(since.map(|t| t as i64))
            .bind(template)
            .fetch_one(&mut *self.reader().await?)
            .await?;
        let unsubscribed: Vec<String> = serde_json::from_str(row.get("unsubscribed"))
            .map_err(StoreError::corrupt("preferences"))?;
        let recent: Vec<(String, u32)> =
            serde_json::from_str(row.get("recent")).map_err(StoreError::corrupt("outbox"))?;
        Ok(Recipient {
            email: row.get("email"),
            template_registered: row.get::<i64, _>("template_registered") != 0,
            facts: Facts {
                suppressed: row.get("suppressed"),
                unsubscribed_all: unsubscribed.iter().any(|c| c == "*"),
                unsubscribed,
                recent_sends: recent,
                timezone: row.get("timezone"),
            },
        })
    }

    /// A user's preferences.
    ///
    /// # Errors
    /// A database failure.
    pub async fn preferences(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<Preferences, StoreError> {
        let rows = sqlx::query(
            "SELECT category, subscribed FROM preferences WHERE tenant_id = $1 AND user_id = $2 ORDER BY category",
        )
        .bind(tenant)
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        let mut prefs = Preferences {
            subscribed: true,
            ..Preferences::default()
        };
        for row in rows {
            let category: String = row.get("category");
            let subscribed = row.get::<i64, _>("subscribed") != 0;
            if category == "*" {
                prefs.subscribed = subscribed;
            } else {
                prefs.categories.insert(category, subscribed);
            }
        }
        Ok(prefs)
    }

    /// Sets the given choices (others keep theirs). `subscribed` is `None`
    /// to leave the global choice alone.
    ///
    /// # Errors
    /// A database failure.
    pub async fn set_preferences(
        &self,
        tenant: &str,
        user_id: &str,
        subscribed: Option<bool>,
        categories: &[(String, bool)],
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let all = subscribed.map(|s| ("*".to_string(), s));
        for (category, subscribed) in all.iter().chain(categories) {
            sqlx::query(
                "INSERT INTO preferences (tenant_id, user_id, category, subscribed, updated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT(tenant_id, user_id, category) DO UPDATE SET subscribed = $4, updated_at = $5",
            )
            .bind(tenant)
            .bind(user_id)
            .bind(category)
            .bind(i64::from(*subscribed))
            .bind(now as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a bounce or complaint; returns the entry, suppressed once a
    /// complaint arrives or hard bounces reach `hard_bounce_threshold`.
    ///
    /// # Errors
    /// A database failure.
    pub async fn record_feedback(
        &self,
        tenant: &str,
        address: &str,
        feedback: Feedback,
        hard_bounce_threshold: u32,
        now: Millis,
    ) -> Result<Suppression, StoreError> {
        let (hard, soft, complaint) = match feedback {
            Feedback::HardBounce => (1, 0, 0),
            Feedback::SoftBounce => (0, 1, 0),
            Feedback::Complaint => (0, 0, 1),
        };
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "INSERT INTO suppressions (tenant_id, address, hard_bounces, soft_bounces, complaints, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT(tenant_id, address) DO UPDATE SET
                 hard_bounces = suppressions.hard_bounces + $3,
                 soft_bounces = suppressions.soft_bounces + $4,
                 complaints = suppressions.complaints + $5, updated_at = $6
             RETURNING hard_bounces, complaints, suppressed_at",
        )
        .bind(tenant)
        .bind(normalize_address(address))
        .bind(hard)
        .bind(soft)
        .bind(complaint)
        .bind(now as i64)
        .fetch_one(&mut *tx)
        .await?;
        let (hard_bounces, complaints, suppressed_at): (i64, i64, Option<i64>) =
            (row.get(0), row.get(1), row.get(2));
        let reason = if complaints > 0 {
            Some("complaint".to_string())
        } else if hard_bounces >= i64::from(hard_bounce_threshold) {
            Some(format!("{hard_bounces} hard bounce(s)"))
        } else {
            None
        };
        if let (Some(reason), None) = (&reason, suppressed_at) {
            sqlx::query(
                "UPDATE suppressions SET suppressed_at = $1, reason = $2 WHERE tenant_id = $3 AND address = $4",
            )
            .bind(now as i64)
            .bind(reason)
            .bind(tenant)
            .bind(normalize_address(address))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(self
            .suppressions(tenant, Some(address))
            .await?
            .pop()
            .expect("the entry was just written"))
    }

    /// The suppression list (or one address's entry).
    ///
    /// # Errors
    /// A database failure.
    pub async fn suppressions(
        &self,
        tenant: &str,
        address: Option<&str>,
    ) -> Result<Vec<Suppression>, StoreError> {
        let rows = sqlx::query(
            "SELECT address, hard_bounces, soft_bounces, complaints, reason, suppressed_at FROM suppressions
             WHERE tenant_id = $1 AND ($2 IS NULL OR address = $2) ORDER BY address LIMIT 1000",
        )
        .bind(tenant)
        .bind(address.map(normalize_address))
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| Suppression {
                address: r.get("address"),
                hard_bounces: r.get("hard_bounces"),
                soft_bounces: r.get("soft_bounces"),
                complaints: r.get("complaints"),
                reason: r.get("reason"),
                suppressed_at: r
                    .get::<Option<i64>, _>("suppressed_at")
                    .map(|t| t as Millis),
            })
            .collect())
    }

    /// Lifts an address's suppression and forgets its bounces. False if it had none.
    ///
    /// # Errors
    /// A database failure.
    pub async fn unsuppress(&self, tenant: &str, address: &str) -> Result<bool, StoreError> {
        let _writer = self.write_lock().await;
        Ok(
            sqlx::query("DELETE FROM suppressions WHERE tenant_id = $1 AND address = $2")
                .bind(tenant)
                .bind(normalize_address(address))
                .execute(self.pool())
                .await?
                .rows_affected()
                > 0,
        )
    }

    /// Registers (or replaces) a template after checking it compiles.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a template that does not compile or lacks
    /// a body; a database failure.
    pub async fn put_template(
        &self,
        tenant: &str,
        name: &str,
        source: &str,
        now: Millis,
    ) -> Result<Parts, StoreError> {
        let parts = check_template(name, source).map_err(StoreError::Invalid)?;
        let _writer = self.write_lock().await;
        sqlx::query(
            "INSERT INTO templates (tenant_id, name, source, parts, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT(tenant_id, name) DO UPDATE SET source = $3, parts = $4, updated_at = $5",
        )
        .bind(tenant)
        .bind(name)
        .bind(source)
        .bind(serde_json::to_string(&parts).expect("parts serialize"))
        .bind(now as i64)
        .execute(self.pool())
        .await?;
        Ok(parts)
    }

    /// A template's source.
    ///
    /// # Errors
    /// A database failure.
    pub async fn template(&self, tenant: &str, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT source FROM templates WHERE tenant_id = $1 AND name = $2")
                .bind(tenant)
                .bind(name)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Which of `names` the tenant has not registered.
    ///
    /// # Errors
    /// A database failure.
    pub async fn missing_templates(
        &self,
        tenant: &str,
        names: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut missing = Vec::new();
        for name in names {
            if self.template(tenant, name).await?.is_none() {
                missing.push(name.clone());
            }
        }
        Ok(missing)
    }

    /// Every template of a tenant.
    ///
    /// # Errors
    /// A database failure or a corrupt row.
    pub async fn templates(&self, tenant: &str) -> Result<Vec<TemplateRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, parts, updated_at FROM templates WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TemplateRow {
                    name: r.get("name"),
                    parts: serde_json::from_str(r.get("parts"))
                        .map_err(StoreError::corrupt("templates.parts"))?,
                    updated_at: r.get::<i64, _>("updated_at") as Millis,
                })
            })
            .collect()
    }

    /// Removes a template; false if there was none. Sends already queued
    /// with it are dead-lettered at delivery with a clear reason.
    ///
    /// # Errors
    /// A database failure.
    pub async fn delete_template(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let _writer = self.write_lock().await;
        Ok(
            sqlx::query("DELETE FROM templates WHERE tenant_id = $1 AND name = $2")
                .bind(tenant)
                .bind(name)
                .execute(self.pool())
                .await?
                .rows_affected()
                > 0,
        )
    }

    /// A tenant's delivery settings; `None` for an unknown tenant.
    ///
    /// # Errors
    /// A database failure or settings that no longer parse.
    pub async fn delivery_config(
        &self,
        tenant: &str,
    ) -> Result<Option<DeliveryConfig>, StoreError> {
        let json: Option<String> = sqlx::query_scalar("SELECT delivery FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(self.pool())
            .await?;
        json.map(|j| {
            DeliveryConfig::parse(&j).map_err(|why| StoreError::Corrupt {
                what: "tenants.delivery",
                why,
            })
        })
        .transpose()
    }

    /// Replaces a tenant's delivery settings after validating them.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] naming the bad field or an unknown tenant; a database failure.
    pub async fn set_delivery_config(
        &self,
        tenant: &str,
        json: &str,
    ) -> Result<DeliveryConfig, StoreError> {
        let config = DeliveryConfig::parse(json).map_err(StoreError::Invalid)?;
        let _writer = self.write_lock().await;
        let updated = sqlx::query("UPDATE tenants SET delivery = $1 WHERE id = $2")
            .bind(json)
            .bind(tenant)
            .execute(self.pool())
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::Invalid(format!("no tenant {tenant:?}")));
        }
        Ok(config)
    }

    /// The host-wide secret named `name`, created at first use.
    ///
    /// # Errors
    /// A database failure, or no randomness for a new secret.
    pub async fn host_secret(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        if let Some(secret) = sqlx::query_scalar("SELECT value FROM host_secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?
        {
            return Ok(secret);
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| StoreError::NoRandomness(e.to_string()))?;
        let _writer = self.write_lock().await;
        // Another host may have won the race: keep whichever was first.
        sqlx::query(
            "INSERT INTO host_secrets (name, value) VALUES ($1, $2) ON CONFLICT(name) DO NOTHING",
        )
        .bind(name)
        .bind(&secret[..])
        .execute(self.pool())
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM host_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(self.pool())
                .await?,
        )
    }
}
