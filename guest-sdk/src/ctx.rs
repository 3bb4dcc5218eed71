//! The durable context: the journey's only way to wait, send, and read time.
//!
//! When to use which:
//! - [`Ctx::sleep`] for relative delays ("a day later");
//! - [`Ctx::sleep_until`] for calendar deadlines ("when the trial ends");
//! - [`Ctx::wait_for_event`] to react to what the user does, with a timeout;
//! - [`Ctx::checkpoint`] to mark a milestone operators can see;
//! - [`Ctx::send`] to queue a message through the host's delivery policy;
//! - [`Ctx::next_local_time`] for "next 09:00 in the user's time zone",
//!   to pass to `sleep_until` (the host has the time-zone database).

use crate::__private::bindings::cairn::journey::durable;
use crate::__private::bindings::cairn::journey::types as wit;
use crate::runtime::{register_pending, take_wake};
use crate::time::to_millis;
use crate::{
    Condition, LocalTime, LogLevel, Message, SendError, SendReceipt, Timestamp, WaitError, Waited,
};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The durable context of a run. It is `Copy`: pass it freely.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    _private: (),
}

impl Ctx {
    pub(crate) fn new() -> Self {
        Ctx { _private: () }
    }

    /// Waits for `duration`.
    ///
    /// # Errors
    /// [`WaitError::ExceedsCeiling`] if the wait would end after the run's execution ceiling.
    pub fn sleep(&self, duration: Duration) -> Wait {
        Wait::new(Request::Sleep(to_millis(duration)))
    }

    /// Waits until `at` (at once if it has passed).
    ///
    /// # Errors
    /// [`WaitError::ExceedsCeiling`] if `at` is after the run's execution ceiling.
    pub fn sleep_until(&self, at: Timestamp) -> Wait {
        Wait::new(Request::SleepUntil(at.0))
    }

    /// Waits for the user's event `name` or for `timeout`, whichever comes first.
    /// Narrow it with [`EventWait::filter`].
    ///
    /// # Errors
    /// [`WaitError::ExceedsCeiling`] if the timeout would end after the run's execution ceiling.
    pub fn wait_for_event(&self, name: impl Into<String>, timeout: Duration) -> EventWait {
        EventWait {
            wait: Wait::new(Request::Event {
                name: name.into(),
                timeout: to_millis(timeout),
                filter: Vec::new(),
            }),
        }
    }

    /// Records a milestone in the run's timeline.
    pub fn checkpoint(&self, label: &str) {
        durable::checkpoint(label);
    }

    /// Queues a message through the host's delivery policy.
    ///
    /// # Errors
    /// [`SendError`] if the message is malformed or too large.
    pub fn send(&self, message: Message) -> Result<SendReceipt, SendError> {
        durable::send(&message)
    }

    /// The first instant after now when the clock in the user's time zone
    /// reads `at`: pass it to [`Ctx::sleep_until`].
    ///
    /// ```no_run
    /// # use cairn_journey::prelude::*;
    /// # async fn f(ctx: Ctx) -> Result<()> {
    /// let monday_ten = ctx.next_local_time(LocalTime::at(10, 0).on(&[Weekday::Monday]))?;
    /// ctx.sleep_until(monday_ten).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The hour, minute or time zone is invalid (the reason is in the error).
    pub fn next_local_time(&self, at: LocalTime) -> Result<Timestamp, crate::Error> {
        durable::next_local_time(&at)
            .map(Timestamp)
            .map_err(|why| crate::Error::new(format!("invalid local time: {why}")))
    }

    /// The step's time: when its wait ended (virtual in simulation). It does
    /// not advance during a step, and relative waits count from it.
    pub fn now(&self) -> Timestamp {
        Timestamp(durable::now())
    }

    /// A random number from the host (the same on a re-run of a crashed step).
    pub fn random_u64(&self) -> u64 {
        durable::random_u64()
    }

    /// Writes a line to the run's log.
    pub fn log(&self, level: LogLevel, message: &str) {
        durable::log(level, message);
    }

    /// Writes an info line to the run's log.
    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, message);
    }
}

enum Request {
    Sleep(u64),
    SleepUntil(u64),
    Event {
        name: String,
        timeout: u64,
        filter: Vec<wit::Condition>,
    },
}

enum State {
    Unregistered(Request),
    Registered(wit::WaitId),
    Finished,
}

/// A durable wait; registers with the host when first polled.
#[must_use = "a wait does nothing until it is awaited"]
pub struct Wait {
    state: State,
}

impl Wait {
    fn new(request: Request) -> Self {
        Wait {
            state: State::Unregistered(request),
        }
    }

    fn poll_wake(&mut self) -> Poll<Result<wit::Wake, WaitError>> {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Unregistered(request) => {
                let registered = match request {
                    Request::Sleep(ms) => durable::sleep(ms),
                    Request::SleepUntil(at) => durable::sleep_until(at),
                    Request::Event {
                        name,
                        timeout,
                        filter,
                    } => durable::wait_for_event(&name, timeout, &filter),
                };
                match registered {
                    Ok(id) => {
                        register_pending(id);
                        self.state = State::Registered(id);
                        Poll::Pending
                    }
                    Err(err) => Poll::Ready(Err(err)),
                }
            }
            State::Registered(id) => match take_wake(id) {
                Some(wake) => Poll::Ready(Ok(wake)),
                None => {
                    self.state = State::Registered(id);
                    Poll::Pending
                }
            },
            State::Finished => panic!("a cairn wait was polled after it completed"),
        }
    }
}

impl Future for Wait {
    type Output = Result<(), WaitError>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_wake().map(|r| r.map(|_| ()))
    }
}

/// A wait for an event with a timeout; see [`Ctx::wait_for_event`].
#[must_use = "a wait does nothing until it is awaited"]
pub struct EventWait {
    wait: Wait,
}

impl EventWait {
    /// Only an event whose properties satisfy `condition` ends the wait.
    pub fn filter(mut self, condition: Condition) -> Self {
        if let State::Unregistered(Request::Event { filter, .. }) = &mut self.wait.state {
            filter.push(condition.into_wit());
        }
        self
    }
}

impl Future for EventWait {
    type Output = Result<Waited, WaitError>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().wait.poll_wake().map(|r| {
            r.map(|wake| match wake {
                wit::Wake::Event(event) => Waited::Event(event),
                wit::Wake::TimedOut | wit::Wake::TimerFired => Waited::TimedOut,
            })
        })
    }
}
