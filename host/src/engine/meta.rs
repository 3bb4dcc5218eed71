//! The host's view of a journey's `meta`, checked at deploy.

use super::bindings::cairn::journey::types as wit;
use crate::durable::{Condition, Limits, op_name};
use serde::{Deserialize, Serialize};

/// An event name with property conditions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRule {
    pub event: String,
    pub conditions: Vec<Condition>,
}

/// How often one user may enter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EntryLimit {
    Once,
    OncePerPeriod { period_ms: u64 },
    Unlimited,
}

/// What a journey declares about itself, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JourneyMeta {
    pub id: String,
    pub name: String,
    pub trigger: Option<EventRule>,
    pub exit_on: Vec<EventRule>,
    pub entry_limit: EntryLimit,
    /// The run's execution ceiling, after applying the host default.
    pub execution_timeout_ms: u64,
    /// The templates its sends use; deploying checks they are registered.
    #[serde(default)]
    pub templates: Vec<String>,
}

impl JourneyMeta {
    /// Checks a journey's `meta` against the host's limits.
    ///
    /// # Errors
    /// A message naming the bad field.
    pub fn from_wit(meta: wit::JourneyMeta, limits: &Limits) -> Result<Self, String> {
        let id_ok = !meta.id.is_empty()
            && meta.id.len() <= 64
            && meta
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !meta.id.starts_with('-');
        if !id_ok {
            return Err(format!(
                "journey id {:?} is invalid: use 1-64 lowercase letters, digits and '-'",
                meta.id
            ));
        }
        let execution_timeout_ms = meta.execution_timeout.unwrap_or(limits.default_ceiling_ms);
        if execution_timeout_ms == 0 || execution_timeout_ms > limits.max_ceiling_ms {
            return Err(format!(
                "execution timeout of {execution_timeout_ms} ms is outside 1..={} ms (the host maximum)",
                limits.max_ceiling_ms
            ));
        }
        Ok(JourneyMeta {
            name: if meta.name.is_empty() {
                meta.id.clone()
            } else {
                meta.name
            },
            id: meta.id,
            trigger: meta.trigger.map(rule).transpose()?,
            exit_on: meta
                .exit_on
                .into_iter()
                .map(rule)
                .collect::<Result<_, _>>()?,
            entry_limit: match meta.entry_limit {
                wit::EntryLimit::Once => EntryLimit::Once,
                wit::EntryLimit::OncePerPeriod(period_ms) => {
                    EntryLimit::OncePerPeriod { period_ms }
                }
                wit::EntryLimit::Unlimited => EntryLimit::Unlimited,
            },
            execution_timeout_ms,
            templates: meta
                .templates
                .into_iter()
                .map(|name| {
                    crate::delivery::check_template_name(&name)
                        .map(|()| name)
                        .map_err(|why| format!("declared template: {why}"))
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

fn rule(rule: wit::EventRule) -> Result<EventRule, String> {
    if rule.event.trim().is_empty() {
        return Err("an event rule has an empty event name".into());
    }
    let conditions = rule
        .conditions
        .into_iter()
        .map(|c| {
            let value = serde_json::from_str(&c.value).map_err(|e| {
                format!(
                    "condition on {:?} of event {:?}: value is not JSON: {e}",
                    c.property, rule.event
                )
            })?;
            Ok(Condition {
                property: c.property,
                op: op_name(c.op).to_string(),
                value,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(EventRule {
        event: rule.event,
        conditions,
    })
}
