//! The webhook provider: POSTs the rendered message as JSON.
//!
//! Headers:
//! - `Idempotency-Key`: the outbox key; a delivery repeated after a crash
//!   carries the same one, so the receiver can drop the repeat;
//! - `X-Cairn-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`
//!   when a secret is configured (the timestamp lets receivers refuse replays).
//!
//! A 2xx is delivered (the provider id is the response's `id` field or
//! `X-Message-Id` header, else `webhook:<status>`); 408, 429 and 5xx,
//! timeouts and connection failures are transient; other statuses,
//! redirects included (set the final URL), are permanent.

use super::{Failure, Outgoing, secret};
use crate::delivery::config::WebhookConfig;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Cairn-Signature";

/// One HTTP client (with its connection pool) for every webhook.
pub struct Webhook {
    client: reqwest::Client,
}

impl Default for Webhook {
    fn default() -> Self {
        Webhook {
            client: reqwest::Client::builder()
                .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
                // A redirect would turn the POST into a bodiless GET that
                // "succeeds": a 3xx is a failure naming the new location.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("the HTTP client builds"),
        }
    }
}

/// `t=<timestamp>,v1=<hex hmac>` over `"<timestamp>.<body>"`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

impl Webhook {
    /// POSTs `message` to the configured URL.
    ///
    /// # Errors
    /// [`Failure`] classified as above.
    pub async fn deliver(
        &self,
        config: &WebhookConfig,
        message: &Outgoing<'_>,
    ) -> Result<String, Failure> {
        let body = serde_json::to_vec(message).expect("a message serializes");
        let mut request = self
            .client
            .post(&config.url)
            .timeout(Duration::from_millis(config.timeout_ms))
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", message.key);
        if let Some(secret) = secret(config.secret.as_ref(), config.secret_env.as_ref())? {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            request = request.header(SIGNATURE_HEADER, sign(secret.as_bytes(), now, &body));
        }
        let response = request.body(body).send().await.map_err(|e| {
            let what = if e.is_timeout() {
                format!("timed out after {} ms", config.timeout_ms)
            } else {
                format!("{e}")
            };
            Failure::Transient(format!("webhook {}: {what}", config.url))
        })?;
        let status = response.status();
        let header_id = response
            .headers()
            .get("x-message-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            let body_id = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("id")
                        .map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_string))
                });
            return Ok(body_id
                .or(header_id)
                .unwrap_or_else(|| format!("webhook:{}", status.as_u16())));
        }
        let snippet: String = text.chars().take(200).collect();
        let why = format!("webhook {} answered {status}: {snippet}", config.url);
        if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
            Err(Failure::Transient(why))
        } else {
            Err(Failure::Permanent(why))
        }
    }
}
