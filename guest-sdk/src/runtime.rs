//! Drives the journey's future from the `start` and `resume` exports.
//!
//! The suspended future, the id of the pending wait and the wake delivered by
//! `resume` live in one static. On wasm32 without threads that static is plain
//! linear memory, so the host's snapshot captures it with everything else.

use crate::__private::bindings::cairn::journey::durable;
use crate::__private::bindings::cairn::journey::types as wit;
use crate::{Ctx, Meta, Result, Start, Timestamp};
use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// The boxed future of a running journey.
pub type BoxedRun = Pin<Box<dyn Future<Output = Result<()>>>>;

/// A journey definition; implemented by the [`journey!`](crate::journey) macro.
pub trait Journey {
    /// The journey's description.
    fn meta() -> Meta;
    /// Begins the journey's future for one run.
    fn run(ctx: Ctx, start: Start) -> BoxedRun;
}

#[derive(Default)]
struct Suspended {
    run: Option<BoxedRun>,
    /// The wait registered during the current poll, if any.
    pending: Option<wit::WaitId>,
    /// The wake `resume` delivered for `pending`, until that wait takes it.
    wake: Option<(wit::WaitId, wit::Wake)>,
}

thread_local! {
    static SUSPENDED: RefCell<Suspended> = RefCell::new(Suspended::default());
}

/// Records the wait id a wait future registered.
pub(crate) fn register_pending(id: wit::WaitId) {
    SUSPENDED.with(|s| s.borrow_mut().pending = Some(id));
}

/// Takes the wake for wait `id`, if `resume` delivered it.
pub(crate) fn take_wake(id: wit::WaitId) -> Option<wit::Wake> {
    SUSPENDED.with(|s| {
        let mut s = s.borrow_mut();
        match &s.wake {
            Some((wake_id, _)) if *wake_id == id => s.wake.take().map(|(_, wake)| wake),
            _ => None,
        }
    })
}

/// Implements the world's exports for a [`Journey`].
pub struct Adapter<J>(PhantomData<J>);

impl<J: Journey> crate::__private::bindings::Guest for Adapter<J> {
    fn meta() -> wit::JourneyMeta {
        J::meta().into_wit()
    }

    fn start(input: wit::StartInput) -> wit::Step {
        install_panic_hook();
        let start = Start {
            user_id: input.user_id,
            input: input.input,
            started_at: Timestamp(input.started_at),
        };
        let run = J::run(Ctx::new(), start);
        SUSPENDED.with(|s| {
            *s.borrow_mut() = Suspended {
                run: Some(run),
                ..Suspended::default()
            }
        });
        drive()
    }

    fn resume(wake: wit::Wake) -> wit::Step {
        let delivered = SUSPENDED.with(|s| {
            let mut s = s.borrow_mut();
            match s.pending.take() {
                Some(id) => {
                    s.wake = Some((id, wake));
                    true
                }
                None => false,
            }
        });
        if !delivered {
            return wit::Step::Failed("resume called but the journey has no pending wait".into());
        }
        drive()
    }
}

/// Polls the journey once and reports where it stands.
fn drive() -> wit::Step {
    // Take the future out so its poll can borrow the static itself.
    let Some(mut run) = SUSPENDED.with(|s| s.borrow_mut().run.take()) else {
        return wit::Step::Failed("the journey has already finished".into());
    };
    let mut cx = Context::from_waker(Waker::noop());
    match run.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(())) => wit::Step::Done,
        Poll::Ready(Err(err)) => wit::Step::Failed(err.to_string()),
        Poll::Pending => SUSPENDED.with(|s| {
            let mut s = s.borrow_mut();
            match s.pending {
                Some(id) => {
                    s.run = Some(run);
                    wit::Step::Waiting(id)
                }
                None => wit::Step::Failed(
                    "the journey awaited something that is not a cairn wait; only sleep, \
                     sleep_until and wait_for_event may suspend a journey"
                        .into(),
                ),
            }
        }),
    }
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = match info.location() {
            Some(at) => format!("panicked at {}:{}: {}", at.file(), at.line(), payload(info)),
            None => format!("panicked: {}", payload(info)),
        };
        durable::report_panic(&message);
    }));
}

fn payload<'a>(info: &'a std::panic::PanicHookInfo<'_>) -> &'a str {
    if let Some(s) = info.payload().downcast_ref::<&str>() {
        s
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}
