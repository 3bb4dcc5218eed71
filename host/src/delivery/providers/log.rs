//! The log provider: each message becomes one line on the host's log
//! (target `cairn.delivery`). The quick start's default, so a journey can be
//! tried without anything leaving the machine.

use super::Outgoing;

/// Logs the message; its id is `log:<outbox id>`.
pub fn deliver(message: &Outgoing<'_>) -> String {
    tracing::info!(
        target: "cairn.delivery",
        id = message.id,
        tenant = message.tenant,
        channel = message.channel,
        to = message.to,
        template = message.template,
        subject = message.rendered.subject.as_deref().unwrap_or(""),
        // One line per message: the body's newlines are escaped.
        body = ?message.rendered.text.as_deref().or(message.rendered.html.as_deref()).unwrap_or(""),
        "delivered to the log"
    );
    format!("log:{}", message.id)
}
