//! The SMTP provider (lettre): STARTTLS (required, not opportunistic), TLS
//! from the first byte, or plain for a local relay; optional AUTH. One
//! connection pool per distinct configuration.
//!
//! Every email carries RFC 8058 one-click unsubscribe headers
//! (`List-Unsubscribe` + `List-Unsubscribe-Post`), a `Message-ID` derived
//! from the outbox id, and `X-Cairn-Key` (the idempotency key) so a message
//! can be traced back to its run. SMTP has no idempotency key a server
//! honours, so the worker never repeats an interrupted SMTP delivery.

use super::{Failure, Outgoing, secret};
use crate::delivery::config::{SmtpConfig, SmtpSecurity};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// SMTP connection pools, by configuration.
#[derive(Default)]
pub struct Smtp {
    transports: Mutex<HashMap<String, Transport>>,
}

impl Smtp {
    fn transport(&self, config: &SmtpConfig) -> Result<Transport, Failure> {
        let key = serde_json::to_string(config).expect("settings serialize");
        if let Some(transport) = self.transports.lock().expect("smtp lock").get(&key) {
            return Ok(transport.clone());
        }
        let misconfigured = |e: lettre::transport::smtp::Error| {
            Failure::Permanent(format!("smtp {}: provider misconfigured: {e}", config.host))
        };
        let mut builder = match config.security {
            SmtpSecurity::Tls => Transport::relay(&config.host).map_err(misconfigured)?,
            SmtpSecurity::Starttls => {
                Transport::starttls_relay(&config.host).map_err(misconfigured)?
            }
            SmtpSecurity::None => Transport::builder_dangerous(&config.host),
        };
        let port = config.port.unwrap_or(match config.security {
            SmtpSecurity::Tls => 465,
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::None => 25,
        });
        if let Some(path) = &config.ca_file
            && config.security != SmtpSecurity::None
        {
            let pem = std::fs::read(path).map_err(|e| {
                Failure::Permanent(format!(
                    "smtp {}: provider misconfigured: ca_file {path:?}: {e}",
                    config.host
                ))
            })?;
            let parameters = Certificate::from_pem(&pem)
                .and_then(|ca| {
                    TlsParameters::builder(config.host.clone())
                        .add_root_certificate(ca)
                        .build_rustls()
                })
                .map_err(misconfigured)?;
            builder = builder.tls(match config.security {
                SmtpSecurity::Tls => Tls::Wrapper(parameters),
                _ => Tls::Required(parameters),
            });
        }
        builder = builder
            .port(port)
            .timeout(Some(Duration::from_millis(config.timeout_ms)));
        if let (Some(user), Some(password)) = (
            &config.username,
            secret(config.password.as_ref(), config.password_env.as_ref())?,
        ) {
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let transport = builder.build();
        self.transports
            .lock()
            .expect("smtp lock")
            .insert(key, transport.clone());
        Ok(transport)
    }

    /// Sends one email; the id is the server's reply (`250 ... queued as X`).
    ///
    /// # Errors
    /// Permanent for a 5xx reply, a message that cannot be built or bad
    /// settings; transient for a 4xx reply, a timeout or a lost connection.
    pub async fn deliver(
        &self,
        config: &SmtpConfig,
        message: &Outgoing<'_>,
    ) -> Result<String, Failure> {
        let email = build(message)?;
        let transport = self.transport(config)?;
        match transport.send(email).await {
            Ok(response) => Ok(format!(
                "{} {}",
                response.code(),
                response.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) => {
                let why = format!("smtp {}: {e}", config.host);
                if e.is_permanent() || e.is_client() {
                    Err(Failure::Permanent(why))
                } else {
                    Err(Failure::Transient(why))
                }
            }
        }
    }
}

fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// The email for a rendered message.
///
/// # Errors
/// A permanent failure: no subject, a bad address.
pub fn build(message: &Outgoing<'_>) -> Result<Message, Failure> {
    let bad = |what: &str, e: &dyn std::fmt::Display| Failure::Permanent(format!("{what}: {e}"));
    let from: Mailbox = message
        .from
        .parse()
        .map_err(|e| bad("the From address", &e))?;
    let to: Mailbox = message.to.parse().map_err(|e| bad("the recipient", &e))?;
    let subject = message.rendered.subject.clone().ok_or_else(|| {
        Failure::Permanent(format!(
            "template {:?} has no subject block, which an email needs",
            message.template
        ))
    })?;
    let domain = from.email.domain().to_string();
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .message_id(Some(format!(
            "<cairn.{}.{}@{domain}>",
            message.tenant, message.id
        )))
        .raw_header(header(
            "List-Unsubscribe",
            format!("<{}>", message.unsubscribe_url),
        ))
        .raw_header(header(
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click".into(),
        ))
        .raw_header(header("X-Cairn-Key", message.key.to_string()));
    if let Some(original) = message.original_to {
        builder = builder.raw_header(header("X-Cairn-Original-Recipient", original.to_string()));
    }
    let rendered = message.rendered;
    let email = match (&rendered.text, &rendered.html) {
        (Some(text), Some(html)) => builder.multipart(MultiPart::alternative_plain_html(
            text.clone(),
            html.clone(),
        )),
        (Some(text), None) => builder.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(text.clone()),
        ),
        (None, Some(html)) => builder.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(html.clone()),
        ),
        (None, None) => {
            return Err(Failure::Permanent(format!(
                "template {:?} rendered no body",
                message.template
            )));
        }
    };
    email.map_err(|e| bad("the email cannot be built", &e))
}
