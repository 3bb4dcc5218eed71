//! The delivery worker: drains the outbox.
//!
//! One loop per host: recover messages a stopped host left `sending`, claim
//! a batch of due messages with a lease, deliver them concurrently, record
//! every outcome in one transaction, and sleep until the next message comes
//! due or a step sends one.
//!
//! At delivery a message is checked again against unsubscribes and the
//! suppression list (either may have changed since the send, e.g. during a
//! send-window deferral), its template is rendered with its props, test
//! mode redirects it, and the tenant's provider for its channel gets it.

use super::config::{DeliveryConfig, TRANSACTIONAL};
use super::providers::{Failure, Outgoing, Providers};
use super::templates::render;
use super::token::Unsubscribe;
use crate::clock::Millis;
use crate::runtime::Runtime;
use crate::store::{Claimed, Delivered, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// How long a claimed message stays leased: longer than any provider's
/// timeout (settings allow at most [`MAX_PROVIDER_TIMEOUT_MS`]).
pub const DELIVERY_LEASE_MS: u64 = 120_000;
/// The longest provider timeout the settings accept.
pub const MAX_PROVIDER_TIMEOUT_MS: u64 = 60_000;

/// Drains the outbox of every tenant.
#[derive(Clone)]
pub struct DeliveryWorker {
    runtime: Runtime,
    providers: Arc<Providers>,
    /// Where this host is reached from outside, for unsubscribe links.
    public_url: Arc<str>,
    batch: u32,
    concurrency: usize,
}

impl DeliveryWorker {
    /// A worker whose unsubscribe links start with `public_url`
    /// (e.g. `https://cairn.example.com`).
    pub fn new(runtime: Runtime, public_url: &str) -> Self {
        DeliveryWorker {
            runtime,
            providers: Arc::default(),
            public_url: public_url.trim_end_matches('/').into(),
            batch: 128,
            concurrency: 32,
        }
    }

    /// Runs until `stop` turns true. A batch in flight is finished
    /// (delivered and recorded) first, so a graceful shutdown leaves no
    /// message `sending`.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        if let Err(err) = self.recover(true).await {
            tracing::error!(target: "cairn.delivery", "recovering interrupted deliveries failed: {err}");
        }
        let mut last_recovery = std::time::Instant::now();
        let stopping = |stop: &tokio::sync::watch::Receiver<bool>| *stop.borrow();
        while !stopping(&stop) {
            if last_recovery.elapsed() > Duration::from_secs(5) {
                last_recovery = std::time::Instant::now();
                if let Err(err) = self.recover(false).await {
                    tracing::error!(target: "cairn.delivery", "recovering expired leases failed: {err}");
                }
            }
            let delivered = match self.drain_while(|| !stopping(&stop)).await {
                Ok(n) => n,
                Err(err) => {
                    tracing::error!(target: "cairn.delivery", "delivery failed, retrying: {err}");
                    0
                }
            };
            if delivered > 0 {
                continue;
            }
            let wait = match self.runtime.store.next_delivery_at().await {
                Ok(Some(at)) => {
                    Duration::from_millis(at.saturating_sub(self.runtime.now()).clamp(1, 1_000))
                }
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = tokio::time::timeout(wait, self.runtime.deliveries.notified()) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Delivers every message due now, batch after batch; returns how many
    /// outcomes were recorded.
    ///
    /// # Errors
    /// A database failure; claimed messages are recovered when their lease ends.
    pub async fn drain(&self) -> Result<usize, StoreError> {
        self.drain_while(|| true).await
    }

    async fn drain_while(&self, go_on: impl Fn() -> bool) -> Result<usize, StoreError> {
        let mut total = 0;
        while go_on() {
            let now = self.runtime.now();
            let claimed = self
                .runtime
                .store
                .claim_deliveries(
                    self.runtime.host_id(),
                    now,
                    self.runtime.lease_now() + DELIVERY_LEASE_MS,
                    self.batch,
                )
                .await?;
            if claimed.is_empty() {
                break;
            }
            let results = self.deliver_all(claimed).await;
            total += self
                .runtime
                .store
                .record_deliveries(self.runtime.host_id(), &results, self.runtime.now())
                .await?;
        }
        Ok(total)
    }

    /// Settles messages whose host stopped mid-delivery: sent again (same
    /// idempotency key) where the provider recognises repeats, else
    /// dead-lettered as "outcome unknown".
    async fn recover(&self, startup: bool) -> Result<(), StoreError> {
        let store = &self.runtime.store;
        let interrupted = store
            .interrupted_deliveries(self.runtime.host_id(), self.runtime.lease_now(), startup)
            .await?;
        for message in interrupted {
            let redeliver = match self.runtime.settings(&message.tenant_id).await {
                Ok(settings) => settings
                    .delivery
                    .provider(&message.channel)
                    .is_none_or(super::ProviderConfig::deduplicates),
                Err(_) => false,
            };
            let error = if redeliver {
                "interrupted: the host stopped during delivery; delivering again with the same idempotency key"
            } else {
                "outcome unknown: the host stopped after handing the message to SMTP and before \
                 recording the result, so it may or may not have arrived; retry it \
                 (POST /v1/outbox/{id}/retry) if it did not"
            };
            tracing::warn!(target: "cairn.delivery", id = message.id, "{error}");
            store
                .settle_interrupted(message.id, redeliver, error, self.runtime.now())
                .await?;
        }
        Ok(())
    }

    async fn deliver_all(&self, claimed: Vec<Claimed>) -> Vec<(i64, Delivered)> {
        let mut results = Vec::with_capacity(claimed.len());
        let mut tasks = JoinSet::new();
        for message in claimed {
            if tasks.len() >= self.concurrency
                && let Some(done) = tasks.join_next().await
            {
                results.push(done.expect("a delivery task panicked"));
            }
            let worker = self.clone();
            tasks.spawn(async move {
                let id = message.id;
                (id, worker.deliver(message).await)
            });
        }
        while let Some(done) = tasks.join_next().await {
            results.push(done.expect("a delivery task panicked"));
        }
        results
    }

    /// One attempt at one message.
    async fn deliver(&self, message: Claimed) -> Delivered {
        let settings = match self.runtime.settings(&message.tenant_id).await {
            Ok(settings) => settings,
            Err(err) => {
                return retry_later(
                    &DeliveryConfig::default(),
                    &message,
                    &err.to_string(),
                    self.runtime.now(),
                );
            }
        };
        let config = &settings.delivery;
        match self.prepare_and_send(config, &message).await {
            Ok(delivered) => delivered,
            Err(Failure::Permanent(error)) => Delivered::Dead { error },
            Err(Failure::Transient(error)) => {
                retry_later(config, &message, &error, self.runtime.now())
            }
        }
    }

    async fn prepare_and_send(
        &self,
        config: &DeliveryConfig,
        message: &Claimed,
    ) -> Result<Delivered, Failure> {
        let store = &self.runtime.store;
        let unavailable = |e: StoreError| Failure::Transient(format!("database: {e}"));
        let provider = config.provider(&message.channel).ok_or_else(|| {
            Failure::Permanent(format!(
                "no provider for channel {:?}: add one (or \"*\") to the tenant's delivery settings",
                message.channel
            ))
        })?;
        // Policy again: an unsubscribe or a bounce may have come in since the send.
        let known = (!message.recipient.is_empty()).then_some(message.recipient.as_str());
        let recipient = store
            .recipient(&message.tenant_id, &message.user_id, known, None, None)
            .await
            .map_err(unavailable)?;
        let address = match known {
            Some(address) => address.to_string(),
            None if message.channel != "email" => message.user_id.clone(),
            None => recipient.email.clone().ok_or_else(|| {
                Failure::Permanent(format!(
                    "user {:?} has no email address: give one with POST /v1/users, then retry the message",
                    message.user_id
                ))
            })?,
        };
        let now_facts = recipient.facts;
        if let Some(reason) = now_facts.suppressed {
            return Ok(Delivered::Refused {
                status: "suppressed",
                reason: format!("suppressed before delivery: {reason}"),
            });
        }
        if message.category != TRANSACTIONAL
            && (now_facts.unsubscribed_all || now_facts.unsubscribed.contains(&message.category))
        {
            return Ok(Delivered::Refused {
                status: "unsubscribed",
                reason: "the user unsubscribed before delivery".into(),
            });
        }
        let source = store
            .template(&message.tenant_id, &message.template)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                Failure::Permanent(format!(
                    "template {:?} is not registered (was it deleted after the send?)",
                    message.template
                ))
            })?;
        let unsubscribe_url = self.unsubscribe_url(config, message).await?;
        let mut context = match &message.props {
            serde_json::Value::Object(props) => props.clone(),
            _ => serde_json::Map::new(),
        };
        context.insert(
            "cairn".into(),
            serde_json::json!({
                "user_id": message.user_id,
                "recipient": address,
                "unsubscribe_url": unsubscribe_url,
            }),
        );
        let rendered = render(
            &message.template,
            &source,
            &serde_json::Value::Object(context),
        )
        .map_err(Failure::Permanent)?;
        let redirect = config
            .test_mode
            .as_ref()
            .filter(|_| message.channel == "email")
            .map(|t| t.redirect_to.as_str());
        let outgoing = Outgoing {
            id: message.id,
            key: &message.key,
            tenant: &message.tenant_id,
            user_id: &message.user_id,
            channel: &message.channel,
            to: redirect.unwrap_or(&address),
            original_to: redirect.map(|_| address.as_str()),
            from: &config.from,
            template: &message.template,
            category: &message.category,
            props: &message.props,
            rendered: &rendered,
            unsubscribe_url: &unsubscribe_url,
        };
        let timeout =
            Duration::from_millis(provider.timeout_ms().min(MAX_PROVIDER_TIMEOUT_MS) + 1_000);
        let provider_id =
            tokio::time::timeout(timeout, self.providers.deliver(provider, &outgoing))
                .await
                .map_err(|_| Failure::Transient(format!("{} timed out", provider.kind())))??;
        tracing::debug!(target: "cairn.delivery", id = message.id, provider = provider.kind(), "delivered");
        Ok(Delivered::Sent {
            provider: provider.kind(),
            provider_id,
            delivered_to: outgoing.to.to_string(),
        })
    }

    /// The one-click link: the message's category, or every category for a
    /// transactional one (which itself is never unsubscribed).
    async fn unsubscribe_url(
        &self,
        config: &DeliveryConfig,
        message: &Claimed,
    ) -> Result<String, Failure> {
        let secret = self
            .runtime
            .unsubscribe_secret()
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        let category = if message.category == TRANSACTIONAL {
            "*"
        } else {
            &message.category
        };
        let token = Unsubscribe {
            tenant: message.tenant_id.clone(),
            user_id: message.user_id.clone(),
            category: category.to_string(),
            expires_at: self.runtime.lease_now()
                + u64::from(config.unsubscribe_link_days) * 86_400_000,
        }
        .sign(&secret);
        Ok(format!("{}/v1/unsubscribe?token={token}", self.public_url))
    }
}

/// A transient failure: try again after a backoff, or give up.
fn retry_later(config: &DeliveryConfig, message: &Claimed, error: &str, now: Millis) -> Delivered {
    if message.attempts >= config.retry.max_attempts {
        return Delivered::Dead {
            error: format!("gave up after {} attempts: {error}", message.attempts),
        };
    }
    let mut bytes = [0u8; 8];
    let jitter = match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes) as f64 / u64::MAX as f64,
        Err(_) => 0.5,
    };
    Delivered::Retry {
        error: error.to_string(),
        at: now + config.retry.backoff_ms(message.attempts, jitter),
    }
}
