//! Wall-clock time in a user's time zone: "next 09:00", "next Monday 10:00",
//! and the next opening of a send window.
//!
//! The daylight-saving policy is written once, in [`to_instant`]: a local
//! time that a spring-forward change skips moves later by the gap (02:30 in
//! New York on the March change is 03:30 EDT); a local time that a fall-back
//! change repeats takes its first, earlier occurrence. Day arithmetic is on
//! the calendar, so "tomorrow 09:00" stays 09:00 across a change.

use crate::clock::Millis;
use chrono::{DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// An IANA zone by name.
pub fn zone(name: &str) -> Option<Tz> {
    name.parse().ok()
}

/// The first valid zone among `candidates` (user, tenant default), else UTC.
/// An invalid name is skipped with a warning.
pub fn resolve_zone<'a>(candidates: impl IntoIterator<Item = Option<&'a str>>) -> Tz {
    for name in candidates.into_iter().flatten() {
        match zone(name) {
            Some(tz) => return tz,
            None => tracing::warn!(
                target: "cairn.delivery",
                "ignoring time zone {name:?}: not an IANA zone"
            ),
        }
    }
    Tz::UTC
}

/// `HH:MM` (24-hour clock).
///
/// # Errors
/// Not two numbers in range.
pub fn parse_clock(text: &str) -> Result<NaiveTime, String> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not HH:MM"))?;
    let (h, m): (u32, u32) = (
        h.parse().map_err(|_| format!("{text:?} is not HH:MM"))?,
        m.parse().map_err(|_| format!("{text:?} is not HH:MM"))?,
    );
    NaiveTime::from_hms_opt(h, m, 0).ok_or_else(|| format!("{text:?} is not a time of day"))
}

/// `mon` .. `sun` (or the full English name).
///
/// # Errors
/// Not a day of the week.
pub fn parse_weekday(text: &str) -> Result<Weekday, String> {
    text.parse::<Weekday>()
        .map_err(|_| format!("{text:?} is not a day of the week"))
}

/// The instant a local date and time in `tz` names, by the policy above.
pub fn to_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let local = date.and_time(time);
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, second) => first.min(second).with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: read the wall clock with the offset in force before
            // it, which lands the same distance past the gap's end.
            let before = tz.offset_from_utc_datetime(&(local - chrono::Duration::days(1)));
            let offset = chrono::Offset::fix(&before);
            Utc.from_utc_datetime(
                &(local - chrono::Duration::seconds(offset.local_minus_utc().into())),
            )
        }
    }
}

fn utc(ms: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms as i64).unwrap_or_default()
}

fn millis(t: DateTime<Utc>) -> Millis {
    t.timestamp_millis().max(0) as Millis
}

/// The first instant strictly after `now` at `time` in `tz`, on one of
/// `days` (any day if empty). Strictly after, so a journey that sleeps until
/// 09:00 and asks again at 09:00 gets tomorrow's.
pub fn next_local_time(now: Millis, tz: Tz, time: NaiveTime, days: &[Weekday]) -> Millis {
    let today = utc(now).with_timezone(&tz).date_naive();
    (0..=8)
        .filter_map(|d| today.checked_add_days(Days::new(d)))
        .filter(|date| days.is_empty() || days.contains(&date.weekday()))
        .map(|date| millis(to_instant(tz, date, time)))
        .find(|&at| at > now)
        .expect("every weekday occurs within eight days")
}

/// A send window resolved for one time zone.
#[derive(Debug, Clone)]
pub struct Window {
    pub start: NaiveTime,
    pub end: NaiveTime,
    /// The days a window opens on; empty means every day.
    pub days: Vec<Weekday>,
}

impl Window {
    /// From validated settings.
    ///
    /// # Errors
    /// A bad time or day (settings are validated when stored, so only corrupt ones).
    pub fn parse(config: &super::SendWindow) -> Result<Self, String> {
        Ok(Window {
            start: parse_clock(&config.start)?,
            end: parse_clock(&config.end)?,
            days: config
                .days
                .iter()
                .flatten()
                .map(|d| parse_weekday(d))
                .collect::<Result<_, _>>()?,
        })
    }

    /// `None` if the window is open at `now` in `tz`, else when it next opens.
    pub fn next_opening(&self, now: Millis, tz: Tz) -> Option<Millis> {
        let today = utc(now).with_timezone(&tz).date_naive();
        // Yesterday's window may wrap midnight into today.
        for offset in -1i64..=8 {
            let Some(day) = today.checked_add_signed(chrono::Duration::days(offset)) else {
                continue;
            };
            if !self.days.is_empty() && !self.days.contains(&day.weekday()) {
                continue;
            }
            let opens = millis(to_instant(tz, day, self.start));
            let closes = if self.start < self.end {
                millis(to_instant(tz, day, self.end))
            } else {
                // Wraps midnight, or (start == end) lasts the whole day.
                let next = day.checked_add_days(Days::new(1))?;
                millis(to_instant(tz, next, self.end))
            };
            if opens <= now && now < closes {
                return None;
            }
            if opens > now {
                return Some(opens);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Millis {
        let date = NaiveDate::from_ymd_opt(y, mo, d).unwrap();
        millis(to_instant(
            tz,
            date,
            NaiveTime::from_hms_opt(h, mi, 0).unwrap(),
        ))
    }

    fn iso(ms: Millis) -> String {
        utc(ms).format("%Y-%m-%dT%H:%MZ").to_string()
    }

    fn window(start: &str, end: &str, days: &[&str]) -> Window {
        Window::parse(&crate::delivery::SendWindow {
            start: start.into(),
            end: end.into(),
            days: (!days.is_empty()).then(|| days.iter().map(|d| d.to_string()).collect()),
            exempt: vec![],
        })
        .unwrap()
    }

    #[test]
    fn a_skipped_time_moves_later_and_a_repeated_one_takes_the_first() {
        let ny = zone("America/New_York").unwrap();
        let berlin = zone("Europe/Berlin").unwrap();
        // New York springs forward at 02:00 on 2026-03-08: 02:30 does not exist.
        assert_eq!(iso(at(ny, 2026, 3, 8, 2, 30)), "2026-03-08T07:30Z"); // 03:30 EDT
        // ... and falls back at 02:00 on 2026-11-01: 01:30 happens twice.
        assert_eq!(iso(at(ny, 2026, 11, 1, 1, 30)), "2026-11-01T05:30Z"); // 01:30 EDT
        // Berlin springs forward at 02:00 on 2026-03-29, falls back at 03:00 on 2026-10-25.
        assert_eq!(iso(at(berlin, 2026, 3, 29, 2, 30)), "2026-03-29T01:30Z"); // 03:30 CEST
        assert_eq!(iso(at(berlin, 2026, 10, 25, 2, 30)), "2026-10-25T00:30Z"); // 02:30 CEST
    }

    #[test]
    fn next_local_time_keeps_the_wall_clock_across_a_change_and_is_strictly_later() {
        let ny = zone("America/New_York").unwrap();
        let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        // Saturday 2026-03-07 10:00 EST: the next 09:00 is Sunday's, which is EDT.
        let now = at(ny, 2026, 3, 7, 10, 0);
        assert_eq!(
            iso(next_local_time(now, ny, nine, &[])),
            "2026-03-08T13:00Z"
        );
        // At exactly 09:00 the next one is tomorrow's.
        let nine_today = at(ny, 2026, 3, 7, 9, 0);
        assert_eq!(
            iso(next_local_time(nine_today, ny, nine, &[])),
            "2026-03-08T13:00Z"
        );
        // Next Monday 10:00 from a Monday afternoon is a week later.
        let monday = at(ny, 2026, 3, 2, 15, 0);
        let ten = NaiveTime::from_hms_opt(10, 0, 0).unwrap();
        assert_eq!(
            iso(next_local_time(monday, ny, ten, &[Weekday::Mon])),
            "2026-03-09T14:00Z"
        );
    }

    #[test]
    fn a_window_defers_to_its_next_opening_in_the_users_zone() {
        let berlin = zone("Europe/Berlin").unwrap();
        let office = window("09:00", "20:00", &[]);
        assert_eq!(
            office.next_opening(at(berlin, 2026, 6, 1, 12, 0), berlin),
            None
        );
        assert_eq!(
            office
                .next_opening(at(berlin, 2026, 6, 1, 21, 0), berlin)
                .map(iso),
            Some("2026-06-02T07:00Z".into())
        );
        assert_eq!(
            office
                .next_opening(at(berlin, 2026, 6, 1, 7, 0), berlin)
                .map(iso),
            Some("2026-06-01T07:00Z".into())
        );
        // The night before Berlin's spring change opens at 09:00 CEST (07:00Z).
        assert_eq!(
            office
                .next_opening(at(berlin, 2026, 3, 28, 22, 0), berlin)
                .map(iso),
            Some("2026-03-29T07:00Z".into())
        );
        // Weekdays only: Friday night waits for Monday.
        let weekdays = window("09:00", "17:00", &["mon", "tue", "wed", "thu", "fri"]);
        assert_eq!(
            weekdays
                .next_opening(at(berlin, 2026, 6, 5, 18, 0), berlin)
                .map(iso),
            Some("2026-06-08T07:00Z".into())
        );
    }

    #[test]
    fn a_window_that_wraps_midnight_belongs_to_the_day_it_opens() {
        let ny = zone("America/New_York").unwrap();
        let night = window("22:00", "06:00", &["fri"]);
        // Saturday 03:00 is inside Friday's night window.
        assert_eq!(night.next_opening(at(ny, 2026, 6, 6, 3, 0), ny), None);
        // Saturday 07:00 is not; the next one opens next Friday 22:00.
        assert_eq!(
            night.next_opening(at(ny, 2026, 6, 6, 7, 0), ny).map(iso),
            Some("2026-06-13T02:00Z".into())
        );
        // A window opening in a skipped hour opens at the gap's end.
        let early = window("02:30", "05:00", &[]);
        assert_eq!(
            early.next_opening(at(ny, 2026, 3, 8, 1, 0), ny).map(iso),
            Some("2026-03-08T07:30Z".into())
        );
        // Equal start and end: always open.
        assert_eq!(
            window("08:00", "08:00", &[]).next_opening(at(ny, 2026, 6, 6, 7, 0), ny),
            None
        );
    }

    #[test]
    fn an_invalid_zone_falls_through_to_the_next_candidate() {
        assert_eq!(
            resolve_zone([Some("Nowhere/Special"), Some("Europe/Berlin")]),
            zone("Europe/Berlin").unwrap()
        );
        assert_eq!(resolve_zone([None, Some("bogus")]), Tz::UTC);
    }
}
