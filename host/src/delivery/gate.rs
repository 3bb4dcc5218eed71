//! The single choke point a step's `send` goes through: [`SendGate`]
//! resolves the recipient and decides the message's fate before the receipt
//! is handed to the guest. [`StoreGate`] is the real one; [`OpenGate`]
//! queues everything, for running a component outside a host (deploy checks,
//! benchmarks).
//!
//! Steps run on blocking worker threads, so [`StoreGate`] reads the store
//! with `Handle::block_on`: one short read transaction per send. Nothing is
//! written until the step commits; a step re-run after a crash asks again.

use super::config::DeliveryConfig;
use super::policy::{Verdict, decide, user_zone};
use crate::clock::Millis;
use crate::durable::OutboxMessage;
use crate::store::Store;
use chrono_tz::Tz;
use std::sync::Arc;

/// A send, as the gate sees it.
#[derive(Debug)]
pub struct SendRequest<'a> {
    /// The run's user.
    pub user_id: &'a str,
    pub channel: &'a str,
    /// The explicit recipient; empty means the run's user.
    pub to: &'a str,
    pub template: &'a str,
    pub category: &'a str,
    /// The step's time.
    pub now: Millis,
    /// What the step sent before this call.
    pub earlier: &'a [OutboxMessage],
}

/// Where a send goes and what happens to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    /// The address the message is for (the user's email for an empty `to`;
    /// empty while the user has none, to be resolved at delivery).
    pub recipient: String,
    pub verdict: Verdict,
}

/// Why a send was not admitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The message itself is wrong; the journey gets `send-error.invalid`.
    #[error("{0}")]
    Invalid(String),
    /// The policy could not be evaluated (the database failed); the step traps.
    #[error("the delivery policy could not be checked: {0}")]
    Unavailable(String),
}

/// The delivery policy, as a step sees it.
pub trait SendGate: Send + Sync {
    /// Resolves a send's recipient and decides its fate.
    ///
    /// # Errors
    /// [`Refusal`]: the message is invalid, or the policy is unavailable.
    fn admit(&self, send: &SendRequest<'_>) -> Result<Admission, Refusal>;

    /// The user's time zone: theirs if valid, else the tenant's default, else UTC.
    ///
    /// # Errors
    /// The policy is unavailable.
    fn user_zone(&self, user_id: &str) -> Result<Tz, Refusal>;
}

/// Queues every message as it is, to `to` or the user id; zones are UTC.
#[derive(Debug, Default)]
pub struct OpenGate;

impl OpenGate {
    pub fn shared() -> Arc<dyn SendGate> {
        Arc::new(OpenGate)
    }
}

impl SendGate for OpenGate {
    fn admit(&self, send: &SendRequest<'_>) -> Result<Admission, Refusal> {
        Ok(Admission {
            recipient: if send.to.is_empty() {
                send.user_id
            } else {
                send.to
            }
            .to_string(),
            verdict: Verdict::Queued,
        })
    }

    fn user_zone(&self, _user_id: &str) -> Result<Tz, Refusal> {
        Ok(Tz::UTC)
    }
}

/// A tenant's policy over the store.
pub struct StoreGate {
    tenant: String,
    config: Arc<DeliveryConfig>,
    store: Store,
    handle: tokio::runtime::Handle,
}

impl StoreGate {
    /// Must be created inside the tokio runtime whose blocking threads run the steps.
    pub fn new(tenant: &str, config: Arc<DeliveryConfig>, store: Store) -> Self {
        StoreGate {
            tenant: tenant.to_string(),
            config,
            store,
            handle: tokio::runtime::Handle::current(),
        }
    }

    /// The admission, as an async function (benchmarks call it directly).
    ///
    /// # Errors
    /// See [`SendGate::admit`].
    pub async fn admit_async(&self, send: &SendRequest<'_>) -> Result<Admission, Refusal> {
        let explicit = (!send.to.is_empty()).then_some(send.to);
        let since = self
            .config
            .frequency_cap
            .as_ref()
            .map(|cap| send.now.saturating_sub(cap.window_ms));
        let recipient = self
            .store
            .recipient(
                &self.tenant,
                send.user_id,
                explicit,
                since,
                Some(send.template),
            )
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        if !recipient.template_registered {
            return Err(Refusal::Invalid(format!(
                "template {:?} is not registered: register it with PUT /v1/templates/{} (or `serve --templates DIR`)",
                send.template, send.template
            )));
        }
        let address = if send.channel == "email" {
            // A user without an address yet may get one before delivery,
            // which resolves it again (and dead-letters the message if not).
            let address = explicit
                .map(str::to_string)
                .or(recipient.email)
                .or_else(|| send.user_id.contains('@').then(|| send.user_id.to_string()))
                .unwrap_or_default();
            if !address.is_empty() {
                address.parse::<lettre::Address>().map_err(|e| {
                    Refusal::Invalid(format!("{address:?} is not an email address: {e}"))
                })?;
            }
            address
        } else {
            explicit.unwrap_or(send.user_id).to_string()
        };
        let earlier: Vec<&str> = send
            .earlier
            .iter()
            .filter(|m| m.verdict.delivers())
            .map(|m| m.category.as_str())
            .collect();
        Ok(Admission {
            recipient: address,
            verdict: decide(
                &self.config,
                &recipient.facts,
                send.category,
                &earlier,
                send.now,
            ),
        })
    }
}

impl SendGate for StoreGate {
    fn admit(&self, send: &SendRequest<'_>) -> Result<Admission, Refusal> {
        self.handle.block_on(self.admit_async(send))
    }

    fn user_zone(&self, user_id: &str) -> Result<Tz, Refusal> {
        let recipient = self
            .handle
            .block_on(
                self.store
                    .recipient(&self.tenant, user_id, None, None, None),
            )
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        Ok(user_zone(&self.config, &recipient.facts))
    }
}
