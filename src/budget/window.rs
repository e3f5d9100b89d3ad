//! Calendar windows for budgets: which hour, day, ISO week or month an
//! instant falls in, and when that window resets.
//!
//! A *window* is the half-open interval `[start, end)` of absolute instants
//! that share one calendar hour / day / week / month on the wall clock of a
//! time zone (UTC unless the policy names an IANA zone). Windows follow the
//! wall clock, so a day in a DST zone may last 23 or 25 hours, and the two
//! repeated 01:00 hours of a "fall back" night are two separate hour windows.
//!
//! Pure: the caller passes the instant in (the injectable clock), nothing
//! here reads the system time. Zone data comes from the system database when
//! present, else from the copy of tzdata bundled into the binary (`jiff`'s
//! `tzdb-bundle-always`), so a zone resolves on a machine without
//! `/usr/share/zoneinfo`.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

pub use super::rules::BudgetWindow;

/// Why a window could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// The configured time zone name is not in the IANA database (policy's fault).
    #[error("unknown time zone {name:?}: {source}")]
    UnknownZone {
        /// The name as configured.
        name: String,
        /// What the zone database said.
        source: jiff::Error,
    },
    /// The instant is so close to the ends of the representable range that
    /// its window cannot be expressed (ours: only reachable with a broken clock).
    #[error("window out of range: {0}")]
    OutOfRange(#[from] jiff::Error),
}

/// Resolve a policy's time zone setting: `"UTC"` (any case) or an IANA
/// name such as `"Europe/Berlin"`.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, WindowError> {
    if name.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|source| WindowError::UnknownZone {
        name: name.to_string(),
        source,
    })
}

/// One budget window: `start <= instant < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// First instant of the window.
    pub start: Timestamp,
    /// First instant of the next window (the reset time).
    pub end: Timestamp,
}

/// The window of kind `window`, on the wall clock of `tz`, that holds `instant`.
pub fn window_of(
    instant: Timestamp,
    window: BudgetWindow,
    tz: &TimeZone,
) -> Result<Window, WindowError> {
    let local = instant.to_zoned_datetime(tz.clone());
    let (start, end) = match window {
        BudgetWindow::Hour => {
            // Subtract the minutes and seconds past the local hour from the
            // absolute instant, rather than rebuilding a civil hh:00 and
            // resolving it: on a fall-back night 01:00 exists twice, and
            // resolving would put the second 01:xx into the first hour.
            // Zones with :30/:45 offsets come out right too.
            let past = i64::from(local.minute()) * 60 + i64::from(local.second());
            let start =
                instant.checked_sub(SignedDuration::new(past, local.subsec_nanosecond()))?;
            (start, start.checked_add(SignedDuration::from_hours(1))?)
        }
        BudgetWindow::Day => {
            let day = local.date();
            (day_start(day, tz)?, day_start(day.tomorrow()?, tz)?)
        }
        BudgetWindow::Week => {
            let day = local.date();
            let since_monday = Weekday::Monday.until(day.weekday());
            let monday = day.checked_sub(jiff::Span::new().days(since_monday))?;
            let next = monday.checked_add(jiff::Span::new().days(7))?;
            (day_start(monday, tz)?, day_start(next, tz)?)
        }
        BudgetWindow::Month => {
            let first = local.date().first_of_month();
            let next = first.last_of_month().tomorrow()?;
            (day_start(first, tz)?, day_start(next, tz)?)
        }
    };
    Ok(Window { start, end })
}

/// When the window holding `instant` resets: the `Retry-After` of a budget
/// refusal.
pub fn reset_at(
    instant: Timestamp,
    window: BudgetWindow,
    tz: &TimeZone,
) -> Result<Timestamp, WindowError> {
    Ok(window_of(instant, window, tz)?.end)
}

/// First instant of `day` in `tz`. Midnight itself may not exist (zones that
/// switch DST at 00:00, e.g. America/Santiago); jiff's start-of-day then
/// gives the first instant after the gap.
fn day_start(day: Date, tz: &TimeZone) -> Result<Timestamp, WindowError> {
    Ok(day
        .to_zoned_datetime(tz.clone())?
        .start_of_day()?
        .timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn span(instant: &str, window: BudgetWindow, zone: &str) -> (Timestamp, Timestamp) {
        let tz = parse_time_zone(zone).unwrap();
        let w = window_of(ts(instant), window, &tz).unwrap();
        (w.start, w.end)
    }

    #[test]
    fn utc_windows() {
        let at = "2025-03-12T15:42:07.5Z";
        assert_eq!(
            span(at, BudgetWindow::Hour, "UTC"),
            (ts("2025-03-12T15:00:00Z"), ts("2025-03-12T16:00:00Z"))
        );
        assert_eq!(
            span(at, BudgetWindow::Day, "UTC"),
            (ts("2025-03-12T00:00:00Z"), ts("2025-03-13T00:00:00Z"))
        );
        // 2025-03-12 is a Wednesday.
        assert_eq!(
            span(at, BudgetWindow::Week, "UTC"),
            (ts("2025-03-10T00:00:00Z"), ts("2025-03-17T00:00:00Z"))
        );
        assert_eq!(
            span(at, BudgetWindow::Month, "UTC"),
            (ts("2025-03-01T00:00:00Z"), ts("2025-04-01T00:00:00Z"))
        );
    }

    #[test]
    fn boundaries_are_half_open() {
        let (start, end) = span("2025-03-12T00:00:00Z", BudgetWindow::Day, "UTC");
        assert_eq!(start, ts("2025-03-12T00:00:00Z"));
        assert_eq!(end, ts("2025-03-13T00:00:00Z"));
        let (start, _) = span("2025-03-12T23:59:59.999999999Z", BudgetWindow::Day, "UTC");
        assert_eq!(start, ts("2025-03-12T00:00:00Z"));
    }

    #[test]
    fn month_end_and_leap_february() {
        assert_eq!(
            span("2024-02-29T23:59:59Z", BudgetWindow::Month, "UTC"),
            (ts("2024-02-01T00:00:00Z"), ts("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            span("2025-04-30T23:00:00Z", BudgetWindow::Month, "UTC"),
            (ts("2025-04-01T00:00:00Z"), ts("2025-05-01T00:00:00Z"))
        );
    }

    #[test]
    fn year_end() {
        assert_eq!(
            span("2025-12-31T23:59:59Z", BudgetWindow::Month, "UTC"),
            (ts("2025-12-01T00:00:00Z"), ts("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            span("2025-12-31T23:30:00Z", BudgetWindow::Day, "UTC").1,
            ts("2026-01-01T00:00:00Z")
        );
        // ISO week spanning the year: 2025-12-29 is a Monday.
        assert_eq!(
            span("2026-01-01T12:00:00Z", BudgetWindow::Week, "UTC"),
            (ts("2025-12-29T00:00:00Z"), ts("2026-01-05T00:00:00Z"))
        );
    }

    #[test]
    fn week_starts_monday_sunday_belongs_to_previous_week() {
        // 2025-03-16 is a Sunday; 2025-03-17 a Monday.
        assert_eq!(
            span("2025-03-16T23:59:00Z", BudgetWindow::Week, "UTC").0,
            ts("2025-03-10T00:00:00Z")
        );
        assert_eq!(
            span("2025-03-17T00:00:00Z", BudgetWindow::Week, "UTC").0,
            ts("2025-03-17T00:00:00Z")
        );
    }

    #[test]
    fn zone_shifts_the_day() {
        // 23:30 UTC on the 31st is already January in Berlin (UTC+1).
        assert_eq!(
            span("2025-12-31T23:30:00Z", BudgetWindow::Month, "Europe/Berlin"),
            (ts("2025-12-31T23:00:00Z"), ts("2026-01-31T23:00:00Z"))
        );
        // India is UTC+05:30: its hours start at :30 UTC.
        assert_eq!(
            span("2025-06-01T10:10:00Z", BudgetWindow::Hour, "Asia/Kolkata"),
            (ts("2025-06-01T09:30:00Z"), ts("2025-06-01T10:30:00Z"))
        );
    }

    #[test]
    fn dst_spring_forward_day_is_23_hours() {
        // New York, 2025-03-09: 02:00 EST jumps to 03:00 EDT.
        let (start, end) = span(
            "2025-03-09T12:00:00-04:00",
            BudgetWindow::Day,
            "America/New_York",
        );
        assert_eq!(start, ts("2025-03-09T05:00:00Z"));
        assert_eq!(end, ts("2025-03-10T04:00:00Z"));
        assert_eq!(end.duration_since(start), SignedDuration::from_hours(23));
        // The hour before the gap ends where the wall clock reads 03:00.
        assert_eq!(
            span(
                "2025-03-09T01:30:00-05:00",
                BudgetWindow::Hour,
                "America/New_York"
            ),
            (ts("2025-03-09T06:00:00Z"), ts("2025-03-09T07:00:00Z"))
        );
    }

    #[test]
    fn dst_fall_back_day_is_25_hours_and_repeated_hour_is_two_windows() {
        // New York, 2025-11-02: 02:00 EDT falls back to 01:00 EST.
        let (start, end) = span(
            "2025-11-02T12:00:00-05:00",
            BudgetWindow::Day,
            "America/New_York",
        );
        assert_eq!(end.duration_since(start), SignedDuration::from_hours(25));
        let first = span(
            "2025-11-02T01:30:00-04:00",
            BudgetWindow::Hour,
            "America/New_York",
        );
        let second = span(
            "2025-11-02T01:30:00-05:00",
            BudgetWindow::Hour,
            "America/New_York",
        );
        assert_eq!(
            first,
            (ts("2025-11-02T05:00:00Z"), ts("2025-11-02T06:00:00Z"))
        );
        assert_eq!(
            second,
            (ts("2025-11-02T06:00:00Z"), ts("2025-11-02T07:00:00Z"))
        );
    }

    #[test]
    fn month_in_zone_across_dst() {
        // Berlin, March 2025: starts at UTC+1, ends at UTC+2.
        assert_eq!(
            span("2025-03-15T12:00:00Z", BudgetWindow::Month, "Europe/Berlin"),
            (ts("2025-02-28T23:00:00Z"), ts("2025-03-31T22:00:00Z"))
        );
    }

    #[test]
    fn midnight_gap_starts_day_after_the_gap() {
        // Santiago, 2024-09-08: 00:00 -04 jumps to 01:00 -03; the day
        // starts at 01:00 local = 04:00Z.
        assert_eq!(
            span(
                "2024-09-08T12:00:00Z",
                BudgetWindow::Day,
                "America/Santiago"
            )
            .0,
            ts("2024-09-08T04:00:00Z")
        );
    }

    #[test]
    fn reset_is_window_end_and_unknown_zone_is_an_error() {
        let tz = TimeZone::UTC;
        assert_eq!(
            reset_at(ts("2025-03-12T15:42:00Z"), BudgetWindow::Hour, &tz).unwrap(),
            ts("2025-03-12T16:00:00Z")
        );
        assert!(matches!(
            parse_time_zone("Mars/Olympus_Mons"),
            Err(WindowError::UnknownZone { .. })
        ));
        assert!(parse_time_zone("utc").is_ok());
    }
}
