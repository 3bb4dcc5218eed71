//! Delivery: what happens to a message after a journey's `send`.
//!
//! - [`gate`]: the policy every send goes through when it is made, whose
//!   verdict is on the journey's receipt ([`policy`] decides, [`localtime`]
//!   knows time zones, send windows and daylight saving);
//! - [`worker`]: drains the outbox with leases, renders [`templates`], hands
//!   messages to [`providers`] (log, SMTP, webhook), retries transient
//!   failures with backoff and dead-letters the rest;
//! - [`config`]: a tenant's providers and policy settings;
//! - [`token`]: signed one-click unsubscribe links.
//!
//! Exactly once: a send is one outbox row (keyed by run, step and call,
//! written with the step). Delivery is at least once towards providers that
//! take an idempotency key (webhook, log) and at most once towards SMTP: a
//! message whose host stopped mid-delivery is sent again with the same key,
//! or, for SMTP, dead-lettered as "outcome unknown" for an operator.

pub mod config;
pub mod gate;
pub mod localtime;
pub mod policy;
pub mod providers;
pub mod templates;
pub mod token;
pub mod worker;

pub use config::{DeliveryConfig, FrequencyCap, ProviderConfig, SendWindow};
pub use gate::{Admission, OpenGate, Refusal, SendGate, SendRequest, StoreGate};
pub use policy::{Facts, Verdict};
pub use templates::{Parts, Rendered, check_template, check_template_name};
pub use worker::DeliveryWorker;
