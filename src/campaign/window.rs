//! Send windows: the hours of the day in which a campaign's messages may go
//! out (`send_window = "09:00-20:00"`), in the campaign's time zone or in
//! each customer's (`send_window_zone = "customer"`).
//!
//! A moment is in the window when its local time of day is: from the start
//! (included) to the end (excluded). A start after the end wraps midnight:
//! `20:00-08:00` is open from 20:00 to midnight and from midnight to 08:00.
//! Daylight saving follows from reading local time: a start the clock skips
//! (02:30 on the night the clock jumps from 02:00 to 03:00) opens the window
//! at the jump, and a window that lies wholly in the skipped hour does not
//! open that day; in the hour the clock passes twice, each moment is in the
//! window if its local time is, so a window that ends in that hour reopens
//! for its repetition. Equal start and end are refused by the campaign file
//! check: they would mean no window or a window all day.
//!
//! Pure: the planner uses it to store each message's earliest moment
//! (`outbox.not_before`), the sender to hold back a message whose window
//! closed while it waited (a retry, a backlog).

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Whose time zone the window is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowZone {
    /// The campaign's `timezone`.
    Campaign,
    /// The customer's `timezone` attribute; the campaign's when the customer
    /// has none or it is not a time zone.
    Customer,
}

impl WindowZone {
    pub fn parse(text: &str) -> Result<WindowZone, String> {
        match text {
            "campaign" => Ok(WindowZone::Campaign),
            "customer" => Ok(WindowZone::Customer),
            _ => Err(format!("send_window_zone must be `campaign` or `customer`, not `{text}`")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WindowZone::Campaign => "campaign",
            WindowZone::Customer => "customer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub zone: WindowZone,
}

/// The customer attribute that names a customer's time zone.
pub const TIMEZONE_ATTRIBUTE: &str = "timezone";

impl SendWindow {
    /// `HH:MM-HH:MM` (24-hour clock, two digits each), start and end distinct.
    pub fn parse(text: &str, zone: WindowZone) -> Result<SendWindow, String> {
        let malformed = || format!("send_window must be two times of day such as `09:00-20:00`, not `{text}`");
        let (start, end) = text.split_once('-').ok_or_else(malformed)?;
        let time = |part: &str| -> Result<NaiveTime, String> {
            let part = part.trim();
            let (hours, minutes) = part.split_once(':').ok_or_else(malformed)?;
            let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
            if !two_digits(hours) || !two_digits(minutes) {
                return Err(malformed());
            }
            let (hours, minutes): (u32, u32) =
                (hours.parse().map_err(|_| malformed())?, minutes.parse().map_err(|_| malformed())?);
            NaiveTime::from_hms_opt(hours, minutes, 0)
                .ok_or_else(|| format!("`{part}` in send_window is not a time of day (00:00 to 23:59)"))
        };
        let (start, end) = (time(start)?, time(end)?);
        if start == end {
            return Err(format!(
                "send_window `{text}` opens and closes at the same time: leave send_window out to send at any hour"
            ));
        }
        Ok(SendWindow { start, end, zone })
    }

    /// As written: `09:00-20:00`.
    pub fn hours(&self) -> String {
        format!("{}-{}", self.start.format("%H:%M"), self.end.format("%H:%M"))
    }

    /// The zone the window is read in for a customer whose `timezone`
    /// attribute is `customer_zone`.
    pub fn zone_for(&self, campaign: Tz, customer_zone: Option<&str>) -> Tz {
        match self.zone {
            WindowZone::Campaign => campaign,
            WindowZone::Customer => customer_zone.and_then(parse_zone).unwrap_or(campaign),
        }
    }

    /// Whether a local time of day is in the window.
    fn contains(&self, time: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }

    /// Whether `at` is in the window, read in `zone`.
    pub fn is_open(&self, at: DateTime<Utc>, zone: Tz) -> bool {
        self.contains(at.with_timezone(&zone).time())
    }

    /// The first moment at or after `at` in the window: `at` itself when the
    /// window is open then, else its next opening.
    pub fn opening(&self, at: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
        if self.is_open(at, zone) {
            return at;
        }
        // The opening is today's or tomorrow's start; a day whose window
        // the clock skips whole moves it one day more.
        self.next_local(at, zone, self.start).find(|&t| self.is_open(t, zone)).unwrap_or(at)
    }

    /// The moment the window closes after `at`, for an `at` in the window.
    pub fn closing(&self, at: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
        self.next_local(at, zone, self.end).find(|&t| !self.is_open(t, zone)).unwrap_or(at)
    }

    /// The moments after `at` whose local time is `time`, day by day from
    /// `at`'s local date, a week ahead (a skipped time stands for the jump).
    fn next_local(&self, at: DateTime<Utc>, zone: Tz, time: NaiveTime) -> impl Iterator<Item = DateTime<Utc>> {
        let today = at.with_timezone(&zone).date_naive();
        (0..8).flat_map(move |days| instants(zone, today + Duration::days(days), time)).filter(move |&t| t > at)
    }
}

/// The moments a local date and time stand for: one, two in the hour the
/// clock passes twice, or the jump when the clock skips it.
fn instants(zone: Tz, date: NaiveDate, time: NaiveTime) -> Vec<DateTime<Utc>> {
    let wall = date.and_time(time);
    match zone.from_local_datetime(&wall) {
        LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
        LocalResult::Ambiguous(first, second) => vec![first.with_timezone(&Utc), second.with_timezone(&Utc)],
        LocalResult::None => vec![crate::schedule::first_instant_after_gap(zone, wall.with_second(0).unwrap_or(wall))],
    }
}

/// A customer's time zone attribute, if it names one (`Europe/Paris`).
pub fn parse_zone(text: &str) -> Option<Tz> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(text: &str) -> SendWindow {
        SendWindow::parse(text, WindowZone::Campaign).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn windows_parse_as_two_times_of_day_and_refuse_anything_else() {
        let nine_to_eight = window("09:00-20:00");
        assert_eq!(
            (nine_to_eight.start, nine_to_eight.end),
            (NaiveTime::from_hms_opt(9, 0, 0).unwrap(), NaiveTime::from_hms_opt(20, 0, 0).unwrap())
        );
        assert_eq!(window(" 20:00 - 08:30 ").hours(), "20:00-08:30");
        let malformed = "send_window must be two times of day such as `09:00-20:00`, not";
        for bad in ["9-20", "09:00", "9:00-20:00", "09:00-20", "09h00-20h00", "", "-", "09:00-20:00-21:00", "0900-2000"]
        {
            let error = SendWindow::parse(bad, WindowZone::Campaign).unwrap_err();
            assert!(error.starts_with(malformed), "{bad}: {error}");
        }
        assert_eq!(
            SendWindow::parse("25:00-08:00", WindowZone::Campaign),
            Err("`25:00` in send_window is not a time of day (00:00 to 23:59)".into())
        );
        assert_eq!(
            SendWindow::parse("09:00-09:60", WindowZone::Campaign),
            Err("`09:60` in send_window is not a time of day (00:00 to 23:59)".into())
        );
        assert_eq!(
            SendWindow::parse("09:00-09:00", WindowZone::Campaign),
            Err("send_window `09:00-09:00` opens and closes at the same time: leave send_window out to send at any hour".into())
        );
        assert_eq!(WindowZone::parse("customer"), Ok(WindowZone::Customer));
        assert!(WindowZone::parse("Customer").is_err());
    }

    #[test]
    fn a_moment_outside_the_window_waits_for_its_next_opening_and_one_inside_goes_at_once() {
        let w = window("09:00-20:00");
        let berlin = chrono_tz::Europe::Berlin;
        // 22:00 in Berlin (winter, UTC+1): the next morning at 09:00.
        assert_eq!(w.opening(utc("2026-12-01T21:00:00Z"), berlin), utc("2026-12-02T08:00:00Z"));
        // 07:00: the same morning.
        assert_eq!(w.opening(utc("2026-12-01T06:00:00Z"), berlin), utc("2026-12-01T08:00:00Z"));
        // The start is in the window, the end is not.
        assert_eq!(w.opening(utc("2026-12-01T08:00:00Z"), berlin), utc("2026-12-01T08:00:00Z"));
        assert_eq!(w.opening(utc("2026-12-01T19:00:00Z"), berlin), utc("2026-12-02T08:00:00Z"));
        assert_eq!(w.opening(utc("2026-12-01T18:59:59Z"), berlin), utc("2026-12-01T18:59:59Z"));
        assert_eq!(w.closing(utc("2026-12-01T10:00:00Z"), berlin), utc("2026-12-01T19:00:00Z"));
    }

    #[test]
    fn a_window_that_wraps_midnight_is_open_on_both_sides_of_it() {
        let w = window("20:00-08:00");
        let utc_zone = chrono_tz::UTC;
        for open in ["2026-12-01T20:00:00Z", "2026-12-01T23:59:00Z", "2026-12-02T00:00:00Z", "2026-12-02T07:59:59Z"] {
            assert_eq!(w.opening(utc(open), utc_zone), utc(open), "{open}");
        }
        assert_eq!(w.opening(utc("2026-12-02T08:00:00Z"), utc_zone), utc("2026-12-02T20:00:00Z"));
        assert_eq!(w.opening(utc("2026-12-02T12:00:00Z"), utc_zone), utc("2026-12-02T20:00:00Z"));
        // Open at 23:00: it closes the next morning, not at 08:00 that day.
        assert_eq!(w.closing(utc("2026-12-01T23:00:00Z"), utc_zone), utc("2026-12-02T08:00:00Z"));
        assert_eq!(w.closing(utc("2026-12-02T01:00:00Z"), utc_zone), utc("2026-12-02T08:00:00Z"));
        // Until midnight is a window too.
        let evening = window("18:00-00:00");
        assert_eq!(evening.opening(utc("2026-12-02T00:00:00Z"), utc_zone), utc("2026-12-02T18:00:00Z"));
        assert_eq!(evening.closing(utc("2026-12-02T19:00:00Z"), utc_zone), utc("2026-12-03T00:00:00Z"));
    }

    #[test]
    fn a_start_the_clock_skips_opens_at_the_jump_and_a_repeated_hour_is_read_as_local_time() {
        let berlin = chrono_tz::Europe::Berlin;
        // 29 March 2026: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        let w = window("02:30-20:00");
        assert_eq!(w.opening(utc("2026-03-28T23:00:00Z"), berlin), utc("2026-03-29T01:00:00Z"));
        // A window wholly in the skipped hour does not open that day.
        let skipped = window("02:00-02:30");
        assert_eq!(skipped.opening(utc("2026-03-28T23:00:00Z"), berlin), utc("2026-03-30T00:00:00Z"));
        // An ordinary window on that day: 09:00 CEST is 07:00 UTC.
        assert_eq!(window("09:00-20:00").opening(utc("2026-03-28T23:00:00Z"), berlin), utc("2026-03-29T07:00:00Z"));
        // 25 October 2026: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:00-03:00 happens twice.
        let w = window("02:30-20:00");
        // Before both: the first 02:30 (CEST, 00:30 UTC).
        assert_eq!(w.opening(utc("2026-10-24T22:00:00Z"), berlin), utc("2026-10-25T00:30:00Z"));
        // At 02:15 the second time (CET, 01:15 UTC): the second 02:30, which is after it.
        assert_eq!(w.opening(utc("2026-10-25T01:15:00Z"), berlin), utc("2026-10-25T01:30:00Z"));
        // A window ending at 02:30 closes at the first 02:30 and reopens for the repetition.
        let night = window("22:00-02:30");
        assert_eq!(night.closing(utc("2026-10-24T21:00:00Z"), berlin), utc("2026-10-25T00:30:00Z"));
        assert!(night.is_open(utc("2026-10-25T01:10:00Z"), berlin));
        assert_eq!(night.closing(utc("2026-10-25T01:10:00Z"), berlin), utc("2026-10-25T01:30:00Z"));
    }

    #[test]
    fn the_customers_zone_is_used_when_valid_and_the_campaigns_otherwise() {
        let berlin = chrono_tz::Europe::Berlin;
        let theirs = SendWindow::parse("09:00-20:00", WindowZone::Customer).unwrap();
        assert_eq!(theirs.zone_for(berlin, Some("America/New_York")), chrono_tz::America::New_York);
        assert_eq!(theirs.zone_for(berlin, Some(" Asia/Tokyo ")), chrono_tz::Asia::Tokyo);
        for fallback in [None, Some(""), Some("Mars/Olympus_Mons"), Some("42")] {
            assert_eq!(theirs.zone_for(berlin, fallback), berlin, "{fallback:?}");
        }
        let ours = SendWindow::parse("09:00-20:00", WindowZone::Campaign).unwrap();
        assert_eq!(ours.zone_for(berlin, Some("America/New_York")), berlin);
        // 22:00 in Berlin is 16:00 in New York: open there, closed here.
        let at = utc("2026-12-01T21:00:00Z");
        assert_eq!(theirs.opening(at, theirs.zone_for(berlin, Some("America/New_York"))), at);
        assert_eq!(theirs.opening(at, theirs.zone_for(berlin, Some("nowhere"))), utc("2026-12-02T08:00:00Z"));
    }
}
