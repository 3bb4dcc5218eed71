//! Write cairn journeys as `async` Rust functions.
//!
//! A journey is an `async fn` over a [`Ctx`] and the run's [`Start`]. Every
//! `.await` on a wait (`sleep`, `sleep_until`, `wait_for_event`) is a durable
//! wait point: the host snapshots the whole instance there and may resume it
//! days later, in another process. Code between waits runs normally; it need
//! not be deterministic.
//!
//! ```no_run
//! use cairn_journey::prelude::*;
//!
//! fn meta() -> Meta {
//!     Meta::new("welcome-series", "Welcome series")
//!         .trigger("signed_up")
//!         .exit_on("unsubscribed")
//!         .execution_timeout(days(7))
//! }
//!
//! async fn run(ctx: Ctx, start: Start) -> Result<()> {
//!     ctx.send(Email::to("").template("welcome"))?;
//!     ctx.sleep(days(1)).await?;
//!     match ctx.wait_for_event("purchased", days(3)).await? {
//!         Waited::Event(_) => ctx.checkpoint("converted"),
//!         Waited::TimedOut => {
//!             ctx.send(Email::to("").template("reminder"))?;
//!         }
//!     }
//!     Ok(())
//! }
//!
//! cairn_journey::journey!(meta: meta(), run: run);
//! ```
//!
//! Build it with `cairn build <crate dir>`: a `cdylib` for
//! `wasm32-unknown-unknown`, turned into a pure component that imports only
//! `cairn:journey/durable`.
//!
//! # The execution model
//! Each export call polls the journey's future once with a no-op waker. A
//! wait registers itself with the host on its first poll and returns
//! `Pending`; the export then reports `waiting`. `resume` hands the wake to the
//! pending wait and polls again. Only one wait may be pending at a time, so
//! do not `join!` two waits; a second registration fails with
//! [`WaitError::AlreadyWaiting`]. Awaiting a future that is not a cairn wait
//! and is not ready at once fails the run with a clear reason.
#![deny(missing_docs)]

// The generated bindings name this crate by its absolute path, so that the
// `journey!` macro expands the same way inside journey crates.
extern crate self as cairn_journey;

mod ctx;
mod meta;
mod runtime;
mod time;

#[doc(hidden)]
pub mod __private {
    //! Used by the `journey!` macro; not part of the public API.
    pub use crate::runtime::Adapter;
    pub use wit_bindgen;

    #[allow(missing_docs, clippy::all)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "journey",
            pub_export_macro: true,
            export_macro_name: "__export_journey_world",
            default_bindings_module: "::cairn_journey::__private::bindings",
            runtime_path: "::cairn_journey::__private::wit_bindgen::rt",
        });
    }
}

pub use ctx::{Ctx, EventWait, Wait};
pub use meta::{Condition, EntryLimit, EventRule, Meta};
pub use runtime::{BoxedRun, Journey};
pub use time::{Timestamp, days, hours, millis, minutes, seconds};

use __private::bindings::cairn::journey::types as wit;
use std::fmt;

/// A message for [`Ctx::send`].
pub use wit::Message;
pub use wit::{
    CeilingExceeded, Channel, Event, LocalTime, LogLevel, SendError, SendReceipt, SendStatus,
    WaitError, Weekday,
};

/// The input of a run, given to the journey function.
#[derive(Debug, Clone)]
pub struct Start {
    /// The user this run is for.
    pub user_id: String,
    /// The run's input as JSON text (`{}` when there is none).
    pub input: String,
    /// When the run started.
    pub started_at: Timestamp,
}

/// How a [`Ctx::wait_for_event`] ended.
#[derive(Debug, Clone)]
pub enum Waited {
    /// The event arrived in time.
    Event(Event),
    /// The timeout passed first.
    TimedOut,
}

/// Why a run failed: the text the host records as the failure reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Error(reason.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<&str> for Error {
    fn from(reason: &str) -> Self {
        Error(reason.to_string())
    }
}

impl From<String> for Error {
    fn from(reason: String) -> Self {
        Error(reason)
    }
}

impl From<WaitError> for Error {
    fn from(err: WaitError) -> Self {
        Error(match err {
            WaitError::ExceedsCeiling(c) => format!(
                "wait exceeds the execution ceiling: it would end at {} but the run must end by {}",
                Timestamp(c.requested),
                Timestamp(c.limit)
            ),
            WaitError::AlreadyWaiting(id) => {
                format!("a wait was registered while wait {id} was still pending")
            }
            WaitError::Invalid(why) => format!("invalid wait: {why}"),
        })
    }
}

impl From<SendError> for Error {
    fn from(err: SendError) -> Self {
        Error(match err {
            SendError::Invalid(why) => format!("invalid message: {why}"),
            SendError::TooLarge(limit) => format!("message too large: the limit is {limit} bytes"),
        })
    }
}

/// The result type of journey functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds an email [`Message`]: `Email::to(addr).template("welcome")`.
///
/// An empty address sends to the run's user.
pub struct Email;

impl Email {
    /// An email to `address` (empty: the run's user), with no template yet.
    pub fn to(address: impl Into<String>) -> Message {
        Message {
            channel: Channel::Email,
            to: address.into(),
            template: String::new(),
            props: "{}".to_string(),
            category: None,
            label: None,
        }
    }
}

impl Message {
    /// The template to render at delivery.
    pub fn template(mut self, name: impl Into<String>) -> Self {
        self.template = name.into();
        self
    }

    /// Template props as a JSON object.
    pub fn props(mut self, json: impl Into<String>) -> Self {
        self.props = json.into();
        self
    }

    /// The category for preferences and caps (default `default`).
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// An explicit idempotency label, unique within the run.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

impl LocalTime {
    /// `hour:minute` (24-hour clock) in the user's time zone, on any day.
    pub fn at(hour: u8, minute: u8) -> Self {
        LocalTime {
            hour,
            minute,
            weekdays: Vec::new(),
            timezone: None,
        }
    }

    /// Only on these days of the week.
    pub fn on(mut self, weekdays: &[Weekday]) -> Self {
        self.weekdays = weekdays.to_vec();
        self
    }

    /// In this IANA time zone (`Europe/Berlin`) instead of the user's.
    pub fn in_zone(mut self, zone: impl Into<String>) -> Self {
        self.timezone = Some(zone.into());
        self
    }
}

/// Generates the component exports for a journey.
///
/// `meta` is an expression of type [`Meta`]; `run` names an
/// `async fn(Ctx, Start) -> Result<()>`.
#[macro_export]
macro_rules! journey {
    (meta: $meta:expr, run: $run:path $(,)?) => {
        #[doc(hidden)]
        pub struct __CairnJourney;

        impl $crate::Journey for __CairnJourney {
            fn meta() -> $crate::Meta {
                $meta
            }

            fn run(ctx: $crate::Ctx, start: $crate::Start) -> $crate::BoxedRun {
                ::std::boxed::Box::pin($run(ctx, start))
            }
        }

        #[doc(hidden)]
        type __CairnJourneyExport = $crate::__private::Adapter<__CairnJourney>;

        $crate::__private::bindings::__export_journey_world!(
            __CairnJourneyExport with_types_in $crate::__private::bindings
        );
    };
}

/// Everything a journey usually needs, in one `use`.
pub mod prelude {
    pub use crate::{
        Channel, Ctx, Email, EntryLimit, Error, Event, EventRule, LocalTime, LogLevel, Message,
        Meta, Result, SendStatus, Start, Timestamp, WaitError, Waited, Weekday, days, hours,
        millis, minutes, seconds,
    };
}
