//! A run's timeline, read back from its run row and its `steps` rows: when
//! it entered, then per step what woke it, what it did and how it ended.

use super::StoreError;
use super::db::Store;
use super::types::TimelineEntry;
use serde_json::{Value, json};
use sqlx::Row;

impl Store {
    /// A run's timeline, oldest first; empty for an unknown run.
    ///
    /// # Errors
    /// A database failure or a corrupt row.
    pub async fn timeline(&self, run_id: i64) -> Result<Vec<TimelineEntry>, StoreError> {
        let Some(run) = self.run(run_id).await? else {
            return Ok(Vec::new());
        };
        let mut timeline = vec![TimelineEntry {
            step: 0,
            at: run.started_at,
            kind: "entered".into(),
            detail: json!({ "version": run.version, "input": run.input }),
        }];
        let rows = sqlx::query(
            "SELECT step, at, woken_by, event_id, effects, outcome, committed_at FROM steps
             WHERE run_id = $1 ORDER BY step",
        )
        .bind(run_id)
        .fetch_all(self.pool())
        .await?;
        for row in rows {
            let step = row.get::<i64, _>("step") as u32;
            let at = row.get::<i64, _>("at") as u64;
            let mut push = |kind: &str, detail: Value| {
                timeline.push(TimelineEntry {
                    step,
                    at,
                    kind: kind.to_string(),
                    detail,
                })
            };
            let event_id: Option<i64> = row.get("event_id");
            push(
                "woke",
                json!({ "by": row.get::<String, _>("woken_by"), "event_id": event_id }),
            );
            let effects: Vec<Value> = serde_json::from_str(row.get("effects"))
                .map_err(StoreError::corrupt("steps.effects"))?;
            for effect in effects {
                let kind = effect["kind"].as_str().unwrap_or("effect").to_string();
                push(&kind, effect);
            }
            let outcome: Value = serde_json::from_str(row.get("outcome"))
                .map_err(StoreError::corrupt("steps.outcome"))?;
            let kind = outcome["kind"].as_str().unwrap_or("outcome").to_string();
            // A wait's own `kind` (timer or event) names the entry's detail.
            let detail = outcome.get("detail").cloned().unwrap_or(outcome);
            push(&kind, detail);
        }
        if let (Some(reason), Some(at)) = (&run.exit_reason, run.ended_at) {
            timeline.push(TimelineEntry {
                step: run.step,
                at,
                kind: "exited".into(),
                detail: json!({ "reason": reason }),
            });
        }
        Ok(timeline)
    }
}
