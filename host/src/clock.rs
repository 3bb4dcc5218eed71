//! Every "now" in cairn comes from a [`Clock`]: the system clock in
//! production, a [`ManualClock`] for simulation, `serve --virtual-clock` and tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Milliseconds since the unix epoch.
pub type Millis = u64;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time in unix milliseconds.
    fn now(&self) -> Millis;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to: days of waits pass in microseconds.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Millis) -> Arc<Self> {
        Arc::new(ManualClock(AtomicU64::new(start)))
    }

    /// Moves the clock forward by `ms`; returns the new time.
    pub fn advance(&self, ms: Millis) -> Millis {
        self.0.fetch_add(ms, Ordering::SeqCst) + ms
    }

    /// Moves the clock to `at` if that is later; time never goes back.
    pub fn advance_to(&self, at: Millis) -> Millis {
        self.0.fetch_max(at, Ordering::SeqCst).max(at)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// Formats unix milliseconds as RFC 3339 UTC.
pub fn format(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{ms}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_never_goes_back() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.advance(500), 1_500);
        assert_eq!(clock.advance_to(1_200), 1_500);
        assert_eq!(clock.advance_to(9_000), 9_000);
        assert_eq!(clock.now(), 9_000);
    }

    #[test]
    fn instants_format_as_rfc3339() {
        assert_eq!(format(0), "1970-01-01T00:00:00.000Z");
    }
}
