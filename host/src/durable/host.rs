//! `impl Host` for `cairn:journey/durable` and `cairn:journey/types`.

use super::{Condition, Effect, OutboxMessage, StepState, Wait, WaitKind, op_name};
use crate::delivery::{Refusal, SendRequest, Verdict, localtime};
use crate::engine::bindings::cairn::journey::{durable, types as wit};
use serde_json::json;

impl wit::Host for StepState {}

impl StepState {
    /// Ends the step with a trap that is the host's fault, not the
    /// journey's: the step is not committed and runs again.
    fn unavailable(&mut self, refusal: Refusal) -> wasmtime::Error {
        let why = refusal.to_string();
        self.unavailable = Some(why.clone());
        wasmtime::Error::msg(why)
    }

    /// Registers the step's wait after checking it against the ceiling.
    fn register(&mut self, kind: WaitKind, deadline: u64) -> Result<u32, wit::WaitError> {
        if let Some(wait) = &self.record.wait {
            return Err(wit::WaitError::AlreadyWaiting(wait.id));
        }
        if deadline > self.env.ceiling_at {
            return Err(wit::WaitError::ExceedsCeiling(wit::CeilingExceeded {
                limit: self.env.ceiling_at,
                requested: deadline,
            }));
        }
        // One wait per step, so the step number makes the id unique within the run.
        let id = self.env.step + 1;
        // The wait is recorded on the run and in its timeline, and its id is
        // derived: it needs no journal entry.
        self.record.wait = Some(Wait {
            id,
            kind,
            deadline,
            registered_at: self.env.now,
        });
        Ok(id)
    }

    fn checked_text(&self, what: &str, text: &str) -> Result<(), String> {
        if text.len() > self.limits.max_text_bytes {
            return Err(format!(
                "{what} is {} bytes, the limit is {}",
                text.len(),
                self.limits.max_text_bytes
            ));
        }
        Ok(())
    }
}

fn level_name(level: wit::LogLevel) -> &'static str {
    match level {
        wit::LogLevel::Trace => "trace",
        wit::LogLevel::Debug => "debug",
        wit::LogLevel::Info => "info",
        wit::LogLevel::Warn => "warn",
        wit::LogLevel::Error => "error",
    }
}

fn weekday(day: wit::Weekday) -> chrono::Weekday {
    match day {
        wit::Weekday::Monday => chrono::Weekday::Mon,
        wit::Weekday::Tuesday => chrono::Weekday::Tue,
        wit::Weekday::Wednesday => chrono::Weekday::Wed,
        wit::Weekday::Thursday => chrono::Weekday::Thu,
        wit::Weekday::Friday => chrono::Weekday::Fri,
        wit::Weekday::Saturday => chrono::Weekday::Sat,
        wit::Weekday::Sunday => chrono::Weekday::Sun,
    }
}

fn channel_name(channel: wit::Channel) -> &'static str {
    match channel {
        wit::Channel::Email => "email",
        wit::Channel::Sms => "sms",
        wit::Channel::Push => "push",
        wit::Channel::Webhook => "webhook",
    }
}

impl durable::Host for StepState {
    fn sleep(&mut self, duration: u64) -> wasmtime::Result<Result<u32, wit::WaitError>> {
        self.call_index()?;
        let deadline = self.env.now.saturating_add(duration);
        Ok(self.register(WaitKind::Timer, deadline))
    }

    fn sleep_until(&mut self, at: u64) -> wasmtime::Result<Result<u32, wit::WaitError>> {
        self.call_index()?;
        Ok(self.register(WaitKind::Timer, at))
    }

    fn wait_for_event(
        &mut self,
        name: String,
        timeout: u64,
        filter: Vec<wit::Condition>,
    ) -> wasmtime::Result<Result<u32, wit::WaitError>> {
        self.call_index()?;
        if name.trim().is_empty() {
            return Ok(Err(wit::WaitError::Invalid(
                "the event name is empty".into(),
            )));
        }
        if let Err(why) = self.checked_text("the event name", &name) {
            return Ok(Err(wit::WaitError::Invalid(why)));
        }
        let mut conditions = Vec::with_capacity(filter.len());
        for c in filter {
            let value = match serde_json::from_str(&c.value) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(Err(wit::WaitError::Invalid(format!(
                        "the filter value for {:?} is not JSON: {e}",
                        c.property
                    ))));
                }
            };
            conditions.push(Condition {
                property: c.property,
                op: op_name(c.op).to_string(),
                value,
            });
        }
        let deadline = self.env.now.saturating_add(timeout);
        let kind = WaitKind::Event {
            name,
            filter: conditions,
        };
        Ok(self.register(kind, deadline))
    }

    fn checkpoint(&mut self, label: String) -> wasmtime::Result<()> {
        self.call_index()?;
        let label = truncate(label, self.limits.max_text_bytes);
        self.effect(Effect::Checkpoint { label });
        Ok(())
    }

    fn send(
        &mut self,
        message: wit::Message,
    ) -> wasmtime::Result<Result<wit::SendReceipt, wit::SendError>> {
        let call = self.call_index()?;
        let size = message.to.len()
            + message.template.len()
            + message.props.len()
            + message.category.as_ref().map_or(0, String::len)
            + message.label.as_ref().map_or(0, String::len);
        if size > self.limits.max_message_bytes {
            return Ok(Err(wit::SendError::TooLarge(
                self.limits.max_message_bytes as u32,
            )));
        }
        if message.template.trim().is_empty() {
            return Ok(Err(wit::SendError::Invalid(
                "the template name is empty".into(),
            )));
        }
        let props: serde_json::Value = match serde_json::from_str(&message.props) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(_) => {
                return Ok(Err(wit::SendError::Invalid(
                    "props must be a JSON object".into(),
                )));
            }
            Err(e) => {
                return Ok(Err(wit::SendError::Invalid(format!(
                    "props are not JSON: {e}"
                ))));
            }
        };
        let key = match &message.label {
            Some(label) if !label.is_empty() => format!("{}:{label}", self.env.run_id),
            _ => format!("{}:{}:{call}", self.env.run_id, self.env.step),
        };
        if self.record.outbox.iter().any(|m| m.key == key) {
            return Ok(Err(wit::SendError::Invalid(format!(
                "the label {:?} was already used in this step",
                message.label.unwrap_or_default()
            ))));
        }
        let category = message
            .category
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let channel = channel_name(message.channel);
        let request = SendRequest {
            user_id: &self.env.user_id,
            channel,
            to: &message.to,
            template: &message.template,
            category: &category,
            now: self.env.now,
            earlier: &self.record.outbox,
        };
        let admission = match self.env.gate.admit(&request) {
            Ok(admission) => admission,
            Err(Refusal::Invalid(why)) => return Ok(Err(wit::SendError::Invalid(why))),
            Err(refusal @ Refusal::Unavailable(_)) => return Err(self.unavailable(refusal)),
        };
        let status = match admission.verdict {
            Verdict::Queued => wit::SendStatus::Queued,
            Verdict::Suppressed => wit::SendStatus::Suppressed,
            Verdict::Unsubscribed => wit::SendStatus::Unsubscribed,
            Verdict::FrequencyCapped => wit::SendStatus::FrequencyCapped,
            Verdict::DeferredUntil(at) => wit::SendStatus::DeferredUntil(at),
        };
        self.record.outbox.push(OutboxMessage {
            key: key.clone(),
            channel: channel.to_string(),
            recipient: admission.recipient,
            template: message.template.clone(),
            props,
            category,
            verdict: admission.verdict,
        });
        self.effect(Effect::Send {
            key: key.clone(),
            template: message.template,
            status: match admission.verdict {
                Verdict::DeferredUntil(at) => {
                    format!("deferred-until {}", crate::clock::format(at))
                }
                verdict => verdict.outbox_status().to_string(),
            },
        });
        self.journal(
            call,
            "send",
            json!({ "key": key, "verdict": admission.verdict }),
        );
        Ok(Ok(wit::SendReceipt { key, status }))
    }

    fn next_local_time(&mut self, at: wit::LocalTime) -> wasmtime::Result<Result<u64, String>> {
        let call = self.call_index()?;
        let Some(time) = chrono::NaiveTime::from_hms_opt(at.hour.into(), at.minute.into(), 0)
        else {
            return Ok(Err(format!(
                "{:02}:{:02} is not a time of day (hour 0-23, minute 0-59)",
                at.hour, at.minute
            )));
        };
        let zone = match &at.timezone {
            Some(name) => match localtime::zone(name) {
                Some(zone) => zone,
                None => return Ok(Err(format!("{name:?} is not an IANA time zone"))),
            },
            None => self
                .env
                .gate
                .user_zone(&self.env.user_id)
                .map_err(|refusal| self.unavailable(refusal))?,
        };
        let days: Vec<chrono::Weekday> = at.weekdays.iter().map(|d| weekday(*d)).collect();
        let instant = localtime::next_local_time(self.env.now, zone, time, &days);
        self.journal(
            call,
            "next-local-time",
            json!({ "zone": zone.name(), "at": instant }),
        );
        Ok(Ok(instant))
    }

    fn now(&mut self) -> wasmtime::Result<u64> {
        let call = self.call_index()?;
        let now = self.env.now;
        self.journal(call, "now", json!(now));
        Ok(now)
    }

    fn log(&mut self, level: wit::LogLevel, message: String) -> wasmtime::Result<()> {
        self.call_index()?;
        let message = truncate(message, self.limits.max_text_bytes);
        if !self.log_budget(message.len()) {
            return Ok(());
        }
        tracing::event!(
            target: "cairn.journey",
            tracing::Level::INFO,
            run = self.env.run_id,
            level = level_name(level),
            "{message}"
        );
        self.effect(Effect::Log {
            level: level_name(level).to_string(),
            message,
        });
        Ok(())
    }

    fn random_u64(&mut self) -> wasmtime::Result<u64> {
        let call = self.call_index()?;
        let value = derive_random(self.env.seed, self.env.step, call);
        self.journal(call, "random-u64", json!(value));
        Ok(value)
    }

    fn report_panic(&mut self, message: String) -> wasmtime::Result<()> {
        // Not counted against the import-call limit: a panic's message is
        // what explains the failure.
        self.record.panic = Some(truncate(message, self.limits.max_text_bytes));
        Ok(())
    }
}

/// The `chunk`th 8 random bytes of a call that asks for many; chunk 0 is
/// what [`derive_random`] gives.
pub(super) fn derive_random_chunk(seed: u64, step: u32, call: u32, chunk: u64) -> u64 {
    derive_random(seed ^ chunk.wrapping_mul(0xD1B5_4A32_D192_ED03), step, call)
}

/// A random value determined by (seed, step, call): SplitMix64's finalizer
/// over the seed offset by the position, so every call of every step differs.
fn derive_random(seed: u64, step: u32, call: u32) -> u64 {
    let position = (u64::from(step) << 32) | u64::from(call);
    let mut z = seed.wrapping_add(position.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::derive_random;
    use std::collections::HashSet;

    #[test]
    fn derived_randoms_repeat_for_the_same_position_and_differ_elsewhere() {
        assert_eq!(derive_random(42, 3, 1), derive_random(42, 3, 1));
        let values: HashSet<u64> = (0..50)
            .flat_map(|step| (0..50).map(move |call| derive_random(42, step, call)))
            .chain((0..50).map(|call| derive_random(43, 0, call)))
            .collect();
        assert_eq!(values.len(), 2550);
    }
}
