//! The journey's self-description: id, trigger, exit rules, limits.

use crate::__private::bindings::cairn::journey::types as wit;
use crate::time::to_millis;
use std::time::Duration;

/// How often one user may enter the journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryLimit {
    /// At most once, ever.
    Once,
    /// At most once per period.
    OncePerPeriod(Duration),
    /// Whenever the trigger fires (still one active run per user).
    Unlimited,
}

/// A property condition: `Condition::eq("plan", "\"pro\"")`. Values are JSON text.
#[derive(Debug, Clone)]
pub struct Condition(pub(crate) wit::Condition);

macro_rules! condition_ctor {
    ($($(#[$doc:meta])* $name:ident => $op:ident),* $(,)?) => {
        impl Condition {
            $(
                $(#[$doc])*
                pub fn $name(property: impl Into<String>, json_value: impl Into<String>) -> Self {
                    Condition(wit::Condition {
                        property: property.into(),
                        op: wit::ConditionOp::$op,
                        value: json_value.into(),
                    })
                }
            )*
        }
    };
}

condition_ctor! {
    /// The property equals the JSON value.
    eq => Eq,
    /// The property is missing or differs from the JSON value.
    neq => Neq,
    /// The property is greater than the JSON value.
    gt => Gt,
    /// The property is greater than or equal to the JSON value.
    gte => Gte,
    /// The property is less than the JSON value.
    lt => Lt,
    /// The property is less than or equal to the JSON value.
    lte => Lte,
    /// The string property contains the value, or the array property has it.
    contains => Contains,
}

impl Condition {
    /// The property is present.
    pub fn exists(property: impl Into<String>) -> Self {
        Condition(wit::Condition {
            property: property.into(),
            op: wit::ConditionOp::Exists,
            value: "null".to_string(),
        })
    }

    pub(crate) fn into_wit(self) -> wit::Condition {
        self.0
    }
}

/// An event name with conditions on its properties.
#[derive(Debug, Clone)]
pub struct EventRule {
    event: String,
    conditions: Vec<Condition>,
}

impl EventRule {
    /// Matches every event called `event`.
    pub fn new(event: impl Into<String>) -> Self {
        EventRule {
            event: event.into(),
            conditions: Vec::new(),
        }
    }

    /// Also requires `condition` to hold.
    pub fn when(mut self, condition: Condition) -> Self {
        self.conditions.push(condition);
        self
    }

    fn into_wit(self) -> wit::EventRule {
        wit::EventRule {
            event: self.event,
            conditions: self
                .conditions
                .into_iter()
                .map(Condition::into_wit)
                .collect(),
        }
    }
}

impl From<&str> for EventRule {
    fn from(event: &str) -> Self {
        EventRule::new(event)
    }
}

/// What a journey declares about itself. Defaults: no trigger, no exit
/// events, entry limit `Unlimited`, the host's execution ceiling.
#[derive(Debug, Clone)]
pub struct Meta {
    id: String,
    name: String,
    trigger: Option<EventRule>,
    exit_on: Vec<EventRule>,
    entry_limit: EntryLimit,
    execution_timeout: Option<Duration>,
    templates: Vec<String>,
}

impl Meta {
    /// A journey with a stable `id` (lowercase, digits, `-`) and a display name.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Meta {
            id: id.into(),
            name: name.into(),
            trigger: None,
            exit_on: Vec::new(),
            entry_limit: EntryLimit::Unlimited,
            execution_timeout: None,
            templates: Vec::new(),
        }
    }

    /// The event that enrolls a user (a name, or an [`EventRule`] with conditions).
    pub fn trigger(mut self, rule: impl Into<EventRule>) -> Self {
        self.trigger = Some(rule.into());
        self
    }

    /// An event that ends the user's run at once; may be given several times.
    pub fn exit_on(mut self, rule: impl Into<EventRule>) -> Self {
        self.exit_on.push(rule.into());
        self
    }

    /// How often one user may enter.
    pub fn entry_limit(mut self, limit: EntryLimit) -> Self {
        self.entry_limit = limit;
        self
    }

    /// The run's execution ceiling: no wait may end later than `start + timeout`.
    pub fn execution_timeout(mut self, timeout: Duration) -> Self {
        self.execution_timeout = Some(timeout);
        self
    }

    /// Declares a template the journey sends: deploying fails until the
    /// host has it registered. May be given several times.
    pub fn template(mut self, name: impl Into<String>) -> Self {
        self.templates.push(name.into());
        self
    }

    pub(crate) fn into_wit(self) -> wit::JourneyMeta {
        wit::JourneyMeta {
            id: self.id,
            name: self.name,
            trigger: self.trigger.map(EventRule::into_wit),
            exit_on: self.exit_on.into_iter().map(EventRule::into_wit).collect(),
            entry_limit: match self.entry_limit {
                EntryLimit::Once => wit::EntryLimit::Once,
                EntryLimit::OncePerPeriod(p) => wit::EntryLimit::OncePerPeriod(to_millis(p)),
                EntryLimit::Unlimited => wit::EntryLimit::Unlimited,
            },
            execution_timeout: self.execution_timeout.map(to_millis),
            templates: self.templates,
        }
    }
}
