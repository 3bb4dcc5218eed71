//! A tenant's delivery settings: which provider serves each channel, the
//! sender, and the policy every send goes through (time zone, send window,
//! frequency cap, test mode, retries, suppression). Stored as JSON on the
//! tenant; every field is optional and [`DeliveryConfig::validate`] names the
//! first bad one.

use super::localtime::{parse_clock, zone};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Categories no unsubscribe, cap or send window applies to by default.
pub const TRANSACTIONAL: &str = "transactional";

/// A tenant's delivery settings. The default delivers every channel to the
/// log provider, so nothing leaves the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Providers by channel (`email`, `sms`, `push`, `webhook`); `*` serves
    /// the channels not named.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// The `From` of emails, e.g. `Acme <hello@acme.test>`.
    pub from: String,
    /// The zone for users without a valid `timezone` of their own (else UTC).
    pub default_timezone: Option<String>,
    /// Sends outside this local window are deferred to its next opening.
    pub send_window: Option<SendWindow>,
    /// At most `count` sends per recipient per window.
    pub frequency_cap: Option<FrequencyCap>,
    /// Redirects every email to one address (staging, QA).
    pub test_mode: Option<TestMode>,
    pub retry: RetryPolicy,
    /// Hard bounces at which an address is suppressed (complaints suppress at once).
    pub hard_bounce_threshold: u32,
    /// How long an unsubscribe link stays valid, in days.
    pub unsubscribe_link_days: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            providers: BTreeMap::from([("*".to_string(), ProviderConfig::Log)]),
            from: "cairn <noreply@localhost>".into(),
            default_timezone: None,
            send_window: None,
            frequency_cap: None,
            test_mode: None,
            retry: RetryPolicy::default(),
            hard_bounce_threshold: 1,
            unsubscribe_link_days: 60,
        }
    }
}

/// Where a channel's messages go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ProviderConfig {
    /// Writes each message to the host's log (target `cairn.delivery`).
    Log,
    Smtp(SmtpConfig),
    Webhook(WebhookConfig),
}

impl ProviderConfig {
    /// The provider's name, as recorded on outbox rows.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderConfig::Log => "log",
            ProviderConfig::Smtp(_) => "smtp",
            ProviderConfig::Webhook(_) => "webhook",
        }
    }

    /// How long one delivery may take before it counts as failed.
    pub fn timeout_ms(&self) -> u64 {
        match self {
            ProviderConfig::Log => 1_000,
            ProviderConfig::Smtp(c) => c.timeout_ms,
            ProviderConfig::Webhook(c) => c.timeout_ms,
        }
    }

    /// Whether the provider is told the message's idempotency key, so a
    /// delivery repeated after a crash is recognised by the receiver. SMTP
    /// has no such key: a delivery interrupted by a crash is dead-lettered
    /// for an operator instead of being sent again.
    pub fn deduplicates(&self) -> bool {
        !matches!(self, ProviderConfig::Smtp(_))
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a local relay or a test sink.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 587 for STARTTLS, 465 for TLS, 25 for none.
    pub port: Option<u16>,
    #[serde(default = "starttls")]
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// The password, or the name of an environment variable holding it.
    pub password: Option<String>,
    pub password_env: Option<String>,
    /// A PEM file of certificate authorities to trust besides the public
    /// ones (a private relay's CA), on every host.
    pub ca_file: Option<String>,
    #[serde(default = "smtp_timeout")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// The HMAC-SHA256 key of the `X-Cairn-Signature` header, or the name of
    /// an environment variable holding it. Without one, requests are unsigned.
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    #[serde(default = "webhook_timeout")]
    pub timeout_ms: u64,
}

/// Local opening hours for non-exempt sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendWindow {
    /// `HH:MM`, local time. A start after the end wraps midnight
    /// (`22:00`-`06:00`); equal start and end mean the whole day.
    pub start: String,
    pub end: String,
    /// The days a window opens on (`mon` .. `sun`); absent means every day.
    /// A window that wraps midnight belongs to the day it opens.
    pub days: Option<Vec<String>>,
    /// Categories sent at any hour.
    #[serde(default = "transactional_only")]
    pub exempt: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    pub count: u32,
    /// The sliding window, in milliseconds.
    pub window_ms: u64,
    /// Count per category instead of across all categories.
    #[serde(default)]
    pub per_category: bool,
    #[serde(default = "transactional_only")]
    pub exempt: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestMode {
    /// Every email goes here instead; the intended recipient is kept in the
    /// `X-Cairn-Original-Recipient` header.
    pub redirect_to: String,
}

/// Retries of transient failures: exponential backoff with full jitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Deliveries tried before the message is dead-lettered.
    pub max_attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay_ms: 1_000,
            max_delay_ms: 3_600_000,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, given a random `jitter` in
    /// `0..=1`: uniformly up to `base * 2^(attempt-1)`, capped, never zero.
    pub fn backoff_ms(&self, attempt: u32, jitter: f64) -> u64 {
        let ceiling = self
            .base_delay_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(32))
            .min(self.max_delay_ms);
        ((ceiling as f64 * jitter.clamp(0.0, 1.0)) as u64).max(ceiling / 10)
    }
}

fn starttls() -> SmtpSecurity {
    SmtpSecurity::Starttls
}
fn smtp_timeout() -> u64 {
    30_000
}
fn webhook_timeout() -> u64 {
    10_000
}
fn transactional_only() -> Vec<String> {
    vec![TRANSACTIONAL.to_string()]
}

/// The channels a provider may be named for.
const CHANNELS: [&str; 5] = ["email", "sms", "push", "webhook", "*"];

impl DeliveryConfig {
    /// Parses and validates settings given as JSON.
    ///
    /// # Errors
    /// The JSON does not parse, or a field is invalid; the message names it.
    pub fn parse(json: &str) -> Result<Self, String> {
        let config: DeliveryConfig =
            serde_json::from_str(json).map_err(|e| format!("delivery settings: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field a delivery would trip over later.
    ///
    /// # Errors
    /// A message naming the first bad field.
    pub fn validate(&self) -> Result<(), String> {
        for (channel, provider) in &self.providers {
            if !CHANNELS.contains(&channel.as_str()) {
                return Err(format!(
                    "providers: unknown channel {channel:?} (use email, sms, push, webhook or *)"
                ));
            }
            match provider {
                ProviderConfig::Log => {}
                ProviderConfig::Smtp(smtp) => {
                    if smtp.host.trim().is_empty() {
                        return Err(format!("providers.{channel}: smtp needs a host"));
                    }
                    if smtp.password.is_some() && smtp.password_env.is_some() {
                        return Err(format!(
                            "providers.{channel}: give password or password_env, not both"
                        ));
                    }
                    if smtp.username.is_some()
                        != (smtp.password.is_some() || smtp.password_env.is_some())
                    {
                        return Err(format!(
                            "providers.{channel}: smtp authentication needs both username and password"
                        ));
                    }
                    positive(smtp.timeout_ms, channel, "timeout_ms")?;
                    if let Some(path) = &smtp.ca_file {
                        let pem = std::fs::read(path)
                            .map_err(|e| format!("providers.{channel}.ca_file {path:?}: {e}"))?;
                        lettre::transport::smtp::client::Certificate::from_pem(&pem)
                            .map_err(|e| format!("providers.{channel}.ca_file {path:?}: {e}"))?;
                    }
                }
                ProviderConfig::Webhook(hook) => {
                    let url = reqwest::Url::parse(&hook.url)
                        .map_err(|e| format!("providers.{channel}: url {:?}: {e}", hook.url))?;
                    if !matches!(url.scheme(), "http" | "https") {
                        return Err(format!(
                            "providers.{channel}: url {:?} is not http(s)",
                            hook.url
                        ));
                    }
                    if hook.secret.is_some() && hook.secret_env.is_some() {
                        return Err(format!(
                            "providers.{channel}: give secret or secret_env, not both"
                        ));
                    }
                    positive(hook.timeout_ms, channel, "timeout_ms")?;
                }
            }
        }
        self.from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| format!("from {:?} is not an address: {e}", self.from))?;
        if let Some(name) = &self.default_timezone {
            zone(name).ok_or_else(|| format!("default_timezone {name:?} is not an IANA zone"))?;
        }
        if let Some(window) = &self.send_window {
            parse_clock(&window.start).map_err(|e| format!("send_window.start: {e}"))?;
            parse_clock(&window.end).map_err(|e| format!("send_window.end: {e}"))?;
            for day in window.days.iter().flatten() {
                super::localtime::parse_weekday(day)
                    .map_err(|e| format!("send_window.days: {e}"))?;
            }
            if window.days.as_ref().is_some_and(Vec::is_empty) {
                return Err("send_window.days is empty: the window would never open".into());
            }
        }
        if let Some(cap) = &self.frequency_cap
            && (cap.count == 0 || cap.window_ms == 0)
        {
            return Err("frequency_cap: count and window_ms must be positive".into());
        }
        if let Some(test) = &self.test_mode {
            test.redirect_to
                .parse::<lettre::Address>()
                .map_err(|e| format!("test_mode.redirect_to {:?}: {e}", test.redirect_to))?;
        }
        if self.retry.max_attempts == 0 {
            return Err("retry.max_attempts must be at least 1".into());
        }
        if self.hard_bounce_threshold == 0 {
            return Err("hard_bounce_threshold must be at least 1".into());
        }
        if self.unsubscribe_link_days == 0 {
            return Err("unsubscribe_link_days must be at least 1".into());
        }
        Ok(())
    }

    /// The provider of a channel: its own, else `*`.
    pub fn provider(&self, channel: &str) -> Option<&ProviderConfig> {
        self.providers
            .get(channel)
            .or_else(|| self.providers.get("*"))
    }
}

fn positive(value: u64, channel: &str, field: &str) -> Result<(), String> {
    let max = super::worker::MAX_PROVIDER_TIMEOUT_MS;
    if value == 0 || value > max {
        return Err(format!("providers.{channel}.{field} must be 1..={max}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_logs_everything_and_bad_settings_name_their_field() {
        let config = DeliveryConfig::parse("{}").unwrap();
        assert_eq!(config.provider("email"), Some(&ProviderConfig::Log));
        let bad = [
            (
                r#"{"providers": {"fax": {"kind": "log"}}}"#,
                "unknown channel",
            ),
            (
                r#"{"providers": {"email": {"kind": "smtp", "host": ""}}}"#,
                "needs a host",
            ),
            (
                r#"{"providers": {"*": {"kind": "webhook", "url": "ftp://x"}}}"#,
                "not http",
            ),
            (
                r#"{"providers": {"*": {"kind": "carrier-pigeon"}}}"#,
                "unknown variant",
            ),
            (
                r#"{"default_timezone": "Mars/Olympus"}"#,
                "not an IANA zone",
            ),
            (
                r#"{"send_window": {"start": "25:00", "end": "08:00"}}"#,
                "send_window.start",
            ),
            (
                r#"{"send_window": {"start": "09:00", "end": "17:00", "days": ["funday"]}}"#,
                "funday",
            ),
            (
                r#"{"test_mode": {"redirect_to": "not an address"}}"#,
                "redirect_to",
            ),
            (r#"{"from": "nobody"}"#, "not an address"),
            (
                r#"{"frequency_cap": {"count": 0, "window_ms": 1}}"#,
                "positive",
            ),
            (
                r#"{"providers": {"*": {"kind": "webhook", "url": "http://x", "timeout_ms": 600000}}}"#,
                "1..=",
            ),
            (r#"{"colour": "blue"}"#, "unknown field"),
        ];
        for (json, why) in bad {
            let err = DeliveryConfig::parse(json).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let retry = RetryPolicy {
            max_attempts: 10,
            base_delay_ms: 100,
            max_delay_ms: 1_000,
        };
        assert_eq!(retry.backoff_ms(1, 1.0), 100);
        assert_eq!(retry.backoff_ms(3, 1.0), 400);
        assert_eq!(retry.backoff_ms(9, 1.0), 1_000);
        assert_eq!(
            retry.backoff_ms(3, 0.0),
            40,
            "never zero: a tenth of the ceiling"
        );
    }
}
