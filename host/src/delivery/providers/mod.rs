//! The providers a message is handed to: [`log`] (the default: nothing
//! leaves the machine), [`smtp`] (lettre; STARTTLS, TLS, auth) and
//! [`webhook`] (an HMAC-signed JSON POST with an idempotency key).
//!
//! Each says whether a failure is worth retrying: timeouts, refused
//! connections, 429 and 5xx (SMTP 4xx) are transient; everything else is
//! permanent and dead-letters the message at once.

pub mod log;
pub mod smtp;
pub mod webhook;

use super::config::ProviderConfig;
use super::templates::Rendered;
use serde::Serialize;

/// A rendered message on its way to a provider.
#[derive(Debug, Clone, Serialize)]
pub struct Outgoing<'a> {
    /// The outbox id.
    pub id: i64,
    /// The idempotency key (`run:step:call` or `run:label`).
    pub key: &'a str,
    pub tenant: &'a str,
    pub user_id: &'a str,
    pub channel: &'a str,
    /// Where it goes: the recipient, or the test-mode address.
    pub to: &'a str,
    /// The intended recipient when test mode redirected it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_to: Option<&'a str>,
    pub from: &'a str,
    pub template: &'a str,
    pub category: &'a str,
    pub props: &'a serde_json::Value,
    #[serde(flatten)]
    pub rendered: &'a Rendered,
    /// The one-click unsubscribe link (RFC 8058).
    pub unsubscribe_url: &'a str,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Worth retrying later.
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help.
    #[error("{0}")]
    Permanent(String),
}

/// Every provider, with what they keep between deliveries (an HTTP client,
/// SMTP connection pools).
#[derive(Default)]
pub struct Providers {
    webhook: webhook::Webhook,
    smtp: smtp::Smtp,
}

impl Providers {
    /// Hands a message to the provider `config` describes; returns the
    /// provider's id for it.
    ///
    /// # Errors
    /// [`Failure`], transient or permanent.
    pub async fn deliver(
        &self,
        config: &ProviderConfig,
        message: &Outgoing<'_>,
    ) -> Result<String, Failure> {
        match config {
            ProviderConfig::Log => Ok(log::deliver(message)),
            ProviderConfig::Smtp(smtp) => self.smtp.deliver(smtp, message).await,
            ProviderConfig::Webhook(hook) => self.webhook.deliver(hook, message).await,
        }
    }
}

/// A secret given inline or by the name of an environment variable.
///
/// # Errors
/// A permanent failure naming the unset variable.
fn secret(inline: Option<&String>, env: Option<&String>) -> Result<Option<String>, Failure> {
    match (inline, env) {
        (Some(value), _) => Ok(Some(value.clone())),
        (None, Some(var)) => std::env::var(var).map(Some).map_err(|_| {
            Failure::Permanent(format!(
                "provider misconfigured: environment variable {var} is not set on this host"
            ))
        }),
        (None, None) => Ok(None),
    }
}
