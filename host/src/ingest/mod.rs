//! Events and contacts in. Ingest decides what an event means for each
//! journey (does it trigger an enrollment, does it exit the user's run) from
//! the journeys' `meta`; the store applies that plan, with idempotency keys,
//! the entry rules and the resumption of waiting runs, in one transaction.
//! Ingest never runs a journey itself: the scheduler does. Concurrent
//! callers' events are group-committed by one [`IngestWriter`].

mod writer;

pub use writer::{Handoff, IngestWriter};

use crate::durable::all_match;
use crate::engine::{EntryLimit, JourneyMeta};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An event as the API receives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingEvent {
    pub user_id: String,
    pub name: String,
    #[serde(default)]
    pub properties: Option<Value>,
    /// When it happened (unix ms); default: when it was received.
    #[serde(default)]
    pub timestamp: Option<u64>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl IncomingEvent {
    /// Checks the event and fills defaults.
    ///
    /// # Errors
    /// A message naming the bad field.
    pub fn validate(self, tenant: &str, received_at: u64) -> Result<NewEvent, String> {
        if self.user_id.trim().is_empty() {
            return Err("user_id must not be empty".into());
        }
        if self.name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        if self.user_id.len() > 256 || self.name.len() > 256 {
            return Err("user_id and name are limited to 256 bytes".into());
        }
        let properties = self
            .properties
            .unwrap_or_else(|| Value::Object(Default::default()));
        if !properties.is_object() {
            return Err(format!(
                "properties of event {:?} must be a JSON object",
                self.name
            ));
        }
        if matches!(&self.idempotency_key, Some(k) if k.is_empty() || k.len() > 256) {
            return Err("idempotency_key must be 1-256 bytes".into());
        }
        Ok(NewEvent {
            tenant_id: tenant.to_string(),
            user_id: self.user_id,
            name: self.name,
            properties,
            timestamp: self.timestamp.unwrap_or(received_at),
            idempotency_key: self.idempotency_key,
        })
    }
}

/// A validated event.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub tenant_id: String,
    pub user_id: String,
    pub name: String,
    pub properties: Value,
    pub timestamp: u64,
    pub idempotency_key: Option<String>,
}

/// A journey that events may trigger or exit: its active version's meta.
#[derive(Debug, Clone)]
pub struct ActiveJourney {
    pub tenant_id: String,
    pub id: String,
    pub version: String,
    pub enabled: bool,
    pub meta: JourneyMeta,
}

/// An enrollment an event asks for.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub journey_id: String,
    pub version: String,
    pub entry_limit: EntryLimit,
    pub ceiling_ms: u64,
    pub enabled: bool,
}

/// What one event means for the journeys.
#[derive(Debug, Clone, Default)]
pub struct EventPlan {
    /// Journeys whose trigger matches.
    pub enroll: Vec<Enrollment>,
    /// Journeys whose trigger event matches but whose conditions do not.
    pub conditions_not_met: Vec<String>,
    /// Journeys whose exit rules match: the user's run there ends.
    pub exit: Vec<String>,
}

/// Matches an event against the trigger and exit rules of its tenant's journeys.
pub fn plan(event: &NewEvent, journeys: &[ActiveJourney]) -> EventPlan {
    let mut plan = EventPlan::default();
    for journey in journeys.iter().filter(|j| j.tenant_id == event.tenant_id) {
        if journey
            .meta
            .exit_on
            .iter()
            .any(|rule| rule.event == event.name && all_match(&rule.conditions, &event.properties))
        {
            plan.exit.push(journey.id.clone());
        }
        let Some(trigger) = &journey.meta.trigger else {
            continue;
        };
        if trigger.event != event.name {
            continue;
        }
        if all_match(&trigger.conditions, &event.properties) {
            plan.enroll.push(Enrollment {
                journey_id: journey.id.clone(),
                version: journey.version.clone(),
                entry_limit: journey.meta.entry_limit,
                ceiling_ms: journey.meta.execution_timeout_ms,
                enabled: journey.enabled,
            });
        } else {
            plan.conditions_not_met.push(journey.id.clone());
        }
    }
    plan
}

/// Why a trigger did not enroll the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    AlreadyActive,
    EntryLimit,
    ConditionsNotMet,
    Disabled,
    UserDeleted,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::AlreadyActive => "already-active",
            SkipReason::EntryLimit => "entry-limit",
            SkipReason::ConditionsNotMet => "conditions-not-met",
            SkipReason::Disabled => "disabled",
            SkipReason::UserDeleted => "user-deleted",
        }
    }
}

/// A skipped enrollment, as reported to the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub journey: String,
    pub reason: SkipReason,
}

/// What ingesting one event did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventOutcome {
    /// False if the idempotency key was seen before: this is the original outcome.
    pub stored: bool,
    pub event_id: i64,
    /// Runs this event started.
    pub enrolled: Vec<i64>,
    /// Runs whose wait it resolved.
    pub resumed: Vec<i64>,
    /// Runs it ended through exit-on.
    pub exited: Vec<i64>,
    /// Triggers that did not enroll, and why.
    pub skipped: Vec<Skipped>,
}

/// A contact as `POST /v1/users` receives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identify {
    pub user_id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    /// Merged into the stored properties (a `null` value removes a key).
    #[serde(default)]
    pub properties: Option<Value>,
}

impl Identify {
    /// Checks the request.
    ///
    /// # Errors
    /// A message naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.user_id.trim().is_empty() || self.user_id.len() > 256 {
            return Err("user_id must be 1-256 bytes".into());
        }
        if matches!(&self.properties, Some(p) if !p.is_object()) {
            return Err("properties must be a JSON object".into());
        }
        if let Some(email) = &self.email
            && (email.len() > 320 || email.parse::<lettre::Address>().is_err())
        {
            return Err(format!("email {email:?} is not an address"));
        }
        if matches!(&self.timezone, Some(tz) if tz.is_empty() || tz.len() > 64) {
            return Err("timezone must be an IANA zone name such as Europe/Berlin".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::Condition;
    use crate::engine::EventRule;
    use serde_json::json;

    fn journey(id: &str, trigger: Option<EventRule>, exit_on: Vec<EventRule>) -> ActiveJourney {
        ActiveJourney {
            tenant_id: "t".into(),
            id: id.into(),
            version: format!("{id}-v1"),
            enabled: true,
            meta: JourneyMeta {
                id: id.into(),
                name: id.into(),
                trigger,
                exit_on,
                entry_limit: EntryLimit::Unlimited,
                execution_timeout_ms: 1000,
                templates: vec![],
            },
        }
    }

    fn rule(event: &str, conditions: Vec<Condition>) -> EventRule {
        EventRule {
            event: event.into(),
            conditions,
        }
    }

    fn event(name: &str, properties: Value) -> NewEvent {
        IncomingEvent {
            user_id: "ada".into(),
            name: name.into(),
            properties: Some(properties),
            timestamp: None,
            idempotency_key: None,
        }
        .validate("t", 5)
        .unwrap()
    }

    #[test]
    fn an_event_triggers_exits_and_misses_by_rule() {
        let pro = Condition {
            property: "plan".into(),
            op: "eq".into(),
            value: json!("pro"),
        };
        let journeys = [
            journey(
                "onboarding",
                Some(rule("signed_up", vec![])),
                vec![rule("deleted", vec![])],
            ),
            journey("pro-welcome", Some(rule("signed_up", vec![pro])), vec![]),
            journey(
                "winback",
                Some(rule("churned", vec![])),
                vec![rule("signed_up", vec![])],
            ),
        ];
        let plan = plan(&event("signed_up", json!({"plan": "free"})), &journeys);
        let enrolled: Vec<_> = plan.enroll.iter().map(|e| e.journey_id.as_str()).collect();
        assert_eq!(enrolled, ["onboarding"]);
        assert_eq!(plan.conditions_not_met, ["pro-welcome"]);
        assert_eq!(plan.exit, ["winback"]);
    }

    #[test]
    fn bad_events_are_refused_naming_the_field() {
        let bad = |user: &str, name: &str, props: Value| {
            IncomingEvent {
                user_id: user.into(),
                name: name.into(),
                properties: Some(props),
                timestamp: None,
                idempotency_key: None,
            }
            .validate("t", 0)
            .unwrap_err()
        };
        assert!(bad("", "x", json!({})).contains("user_id"));
        assert!(bad("ada", " ", json!({})).contains("name"));
        assert!(bad("ada", "x", json!([1])).contains("JSON object"));
    }
}
