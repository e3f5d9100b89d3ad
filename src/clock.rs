//! The one wall clock: where every part of Outpost that needs "now" as a
//! date and time gets it, so tests can set it.
//!
//! Words:
//! - *wall time* is a [`Timestamp`] (an instant, UTC, nanoseconds): what
//!   audit records carry, what certificates are valid between, what budget
//!   windows are measured in. It can jump (NTP, a user setting the clock),
//!   so nothing here is for measuring durations or arming timers; those use
//!   `tokio::time::Instant`, which tests control differently;
//! - a [`Clock`] answers "what is the wall time now": the system's, or one a
//!   test chose ([`Clock::fixed`], [`Clock::from_fn`], [`ManualClock`]). It is
//!   handed to the parts that read it (audit writer and retention, OTLP
//!   shipper, CA and leaf cache, admin budget views) instead of each calling
//!   the system clock itself.
//!
//! Formatting lives here too, for the one form every audit record's `ts`
//! has: [`rfc3339_micros`].

use std::sync::{Arc, Mutex};

use jiff::fmt::temporal::DateTimePrinter;
use jiff::{SignedDuration, Timestamp};

/// Where "now" comes from. Cheap to clone (the system clock is a unit; a
/// test's clock is one `Arc`).
#[derive(Clone)]
pub struct Clock(Source);

#[derive(Clone)]
enum Source {
    System,
    Fn(Arc<dyn Fn() -> Timestamp + Send + Sync>),
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock stopped at `at`.
    pub fn fixed(at: Timestamp) -> Clock {
        Clock::from_fn(move || at)
    }

    /// A clock that asks `now` each time (tests: a gate that holds the
    /// caller, an offset from the system clock).
    pub fn from_fn(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Clock {
        Clock(Source::Fn(Arc::new(now)))
    }

    /// The wall time now.
    pub fn now(&self) -> Timestamp {
        match &self.0 {
            Source::System => Timestamp::now(),
            Source::Fn(now) => now(),
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Source::System => f.write_str("Clock::system"),
            Source::Fn(_) => f.write_str("Clock::from_fn"),
        }
    }
}

/// A clock that moves only when told (tests: day rollover, expiry). Clones
/// share one time; [`ManualClock::clock`] hands out the [`Clock`] to inject.
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<Mutex<Timestamp>>,
}

impl ManualClock {
    /// Stopped at `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Jump to `at` (backwards too: the system clock can).
    pub fn set(&self, at: Timestamp) {
        *self.lock() = at;
    }

    /// Move on by `by`, saturating at the end of time.
    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.lock();
        *now = now.saturating_add(by).unwrap_or(*now);
    }

    /// The time it shows.
    pub fn now(&self) -> Timestamp {
        *self.lock()
    }

    /// A [`Clock`] reading this one.
    pub fn clock(&self) -> Clock {
        let this = self.clone();
        Clock::from_fn(move || this.now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timestamp> {
        // A panic while holding the lock cannot leave a torn Timestamp.
        self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Prints whole microseconds, always six digits, `Z` for UTC.
const MICROS: DateTimePrinter = DateTimePrinter::new().precision(Some(6));

/// `t` as RFC 3339 UTC with microseconds, `2026-11-24T10:00:00.000001Z`:
/// the form of every audit record's `ts`, 27 bytes for years 0000-9999.
/// Sub-microsecond digits are cut off, not rounded, so a `ts` never names a
/// later instant than the one it records.
pub fn rfc3339_micros(t: Timestamp) -> String {
    MICROS.timestamp_to_string(&t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_nanos(n: i128) -> Timestamp {
        Timestamp::from_nanosecond(n).unwrap()
    }

    #[test]
    fn timestamps_have_six_digits_and_z() {
        let cases = [
            (1_795_000_000_123_456_789, "2026-11-18T11:06:40.123456Z"),
            // Whole seconds still print the fraction.
            (1_795_000_000_000_000_000, "2026-11-18T11:06:40.000000Z"),
            // Truncated, never rounded up into the next second.
            (1_795_000_000_999_999_999, "2026-11-18T11:06:40.999999Z"),
            (0, "1970-01-01T00:00:00.000000Z"),
            (1_000, "1970-01-01T00:00:00.000001Z"),
            // Before the epoch, and a year below 1000: still 4-digit years.
            (-1, "1969-12-31T23:59:59.999999Z"),
            (-30_610_310_400_000_000_000, "0999-12-31T00:00:00.000000Z"),
        ];
        for (nanos, want) in cases {
            let got = rfc3339_micros(at_nanos(nanos));
            assert_eq!(got, want, "{nanos}");
            assert_eq!(got.len(), 27, "{got}");
        }
    }

    #[test]
    fn formatted_timestamps_parse_back_to_the_microsecond() {
        let t = at_nanos(1_795_000_000_123_456_789);
        let back: Timestamp = rfc3339_micros(t).parse().unwrap();
        assert_eq!(back, at_nanos(1_795_000_000_123_456_000));
    }

    #[test]
    fn test_clocks_show_what_they_are_told() {
        let t = at_nanos(1_795_000_000_000_000_000);
        assert_eq!(Clock::fixed(t).now(), t);
        let manual = ManualClock::new(t);
        let clock = manual.clock();
        manual.advance(SignedDuration::from_hours(24));
        assert_eq!(clock.now(), t + SignedDuration::from_hours(24));
        manual.set(t);
        assert_eq!(clock.clone().now(), t);
        let system = Clock::system().now();
        assert!(system > t - SignedDuration::from_hours(24 * 365 * 2));
    }
}
