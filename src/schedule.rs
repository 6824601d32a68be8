//! When something fires (a campaign, the daemon's timed jobs): a cron
//! expression read as wall-clock time in a time zone.
//!
//! The `cron` crate counts days of the week from Sunday = 1 (Quartz style);
//! marketers write standard cron, where 1 is Monday and 0 or 7 is Sunday, so
//! numeric days are rewritten as names first. Daylight saving: a wall-clock
//! time fires once; a time the clock skips fires when the clock jumps; a time
//! the clock passes twice fires the first time only.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// The cron crate's message on one line, without its echo of the rewritten
/// expression and caret line, with its range wording made exact (it says
/// "Minutes must be less than 59" for a limit of 59 inclusive).
fn cron_problem(message: &str) -> String {
    let lines: Vec<&str> = message.lines().collect();
    let after_caret = lines.iter().rposition(|line| line.trim() == "^").map_or(0, |at| at + 1);
    let problem = if after_caret < lines.len() { &lines[after_caret..] } else { &lines[..] };
    let one_line = problem.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.split_once(" must be less than ") {
        Some((field, rest)) => format!("{field} must be at most {}", rest.replacen(". (", " (", 1)),
        None => one_line,
    }
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    cron: cron::Schedule,
    pub timezone: Tz,
}

impl Schedule {
    /// Parses a 5-field (`min hour day month weekday`) or 6-field (seconds
    /// first) expression.
    pub fn parse(expression: &str, timezone: Tz) -> Result<Schedule, String> {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let with_seconds = match fields.len() {
            5 => format!("0 {}", standard_weekdays(&fields).join(" ")),
            6 => {
                let (seconds, rest) = fields.split_first().expect("six fields");
                format!("{seconds} {}", standard_weekdays(rest).join(" "))
            }
            n => {
                return Err(format!(
                    "a schedule has 5 fields (minute hour day-of-month month day-of-week, e.g. `0 9 * * MON`) \
                     or 6 with seconds first; `{expression}` has {n}"
                ));
            }
        };
        let cron = cron::Schedule::from_str(&with_seconds)
            .map_err(|e| format!("`{expression}` is not a valid cron schedule: {}", cron_problem(&e.to_string())))?;
        Ok(Schedule { expression: expression.to_owned(), cron, timezone })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The fire times strictly after `after`, in order.
    pub fn fires_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let local = wall_clock(after.with_timezone(&self.timezone).naive_local());
        let mut previous = None;
        self.cron
            .after(&local)
            .map(|wall| self.instant(wall.naive_utc()))
            .filter(move |&instant| instant > after)
            .filter(move |&instant| {
                let repeated = previous == Some(instant);
                previous = Some(instant);
                !repeated
            })
    }

    /// The latest fire time at or before `at`, if any within the cron's range.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Start two hours late in wall-clock terms: around a change back, a
        // later wall-clock time can be an earlier instant.
        let local = wall_clock(at.with_timezone(&self.timezone).naive_local() + Duration::hours(2));
        self.cron.after(&local).rev().map(|wall| self.instant(wall.naive_utc())).find(|&instant| instant <= at)
    }

    /// The instant a wall-clock time stands for (see the module doc).
    fn instant(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        match self.timezone.from_local_datetime(&wall) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
            LocalResult::None => first_instant_after_gap(self.timezone, wall),
        }
    }
}

/// A naive wall-clock time as a `DateTime<Utc>`, the form the cron crate iterates in.
fn wall_clock(naive: NaiveDateTime) -> DateTime<Utc> {
    Utc.from_utc_datetime(&naive.with_nanosecond(0).unwrap_or(naive))
}

/// Clocks jump on whole minutes; the first minute that exists is the jump.
/// Campaign send windows (`campaign::window`) open at the jump the same way.
pub(crate) fn first_instant_after_gap(timezone: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    let minute = wall.with_second(0).unwrap_or(wall);
    (1..=24 * 60)
        .find_map(|m| timezone.from_local_datetime(&(minute + Duration::minutes(m))).earliest())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&wall))
}

/// The fields with a standard day-of-week (last field) rewritten with names.
fn standard_weekdays(fields: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
    if let Some(last) = out.last_mut() {
        *last = last.split(',').map(weekday_item).collect::<Vec<_>>().join(",");
    }
    out
}

const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
/// What completes a short name into a full one (SUN+DAY, TUE+SDAY, ...).
const FULL_SUFFIXES: [&str; 5] = ["DAY", "SDAY", "NESDAY", "RSDAY", "URDAY"];

/// One comma-separated item: `*`, `N`, `N-M`, each optionally `/STEP`, with
/// numbers (0 or 7 = Sunday) or names. Anything else is left for the cron
/// crate to report.
fn weekday_item(item: &str) -> String {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, step.parse::<usize>().ok().filter(|s| *s > 0)),
        None => (item, Some(1)),
    };
    let Some(step) = step else {
        return item.to_owned();
    };
    let bounds = match range.split_once('-') {
        _ if range == "*" => Some((0, 6)),
        Some((low, high)) => weekday_number(low).zip(weekday_number(high).map(|h| if h == 0 { 7 } else { h })),
        None if item.contains('/') => weekday_number(range).map(|low| (low, 6)),
        None => weekday_number(range).map(|day| (day, day)),
    };
    match bounds {
        Some((low, high)) if low <= high => {
            (low..=high).step_by(step).map(|d| WEEKDAYS[d % 7]).collect::<Vec<_>>().join(",")
        }
        _ => item.to_owned(),
    }
}

fn weekday_number(text: &str) -> Option<usize> {
    if let Ok(n) = text.parse::<usize>() {
        return (n <= 7).then_some(n);
    }
    let upper = text.to_ascii_uppercase();
    WEEKDAYS.iter().position(|short| {
        upper == *short || upper.strip_prefix(short).is_some_and(|rest| FULL_SUFFIXES.contains(&rest))
    })
}

/// Parses an IANA time zone name, suggesting the closest one when it is unknown.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        let closest = chrono_tz::TZ_VARIANTS
            .iter()
            .map(|tz| (strsim::jaro_winkler(name, tz.name()), tz.name()))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match closest {
            Some((similarity, suggestion)) if similarity > 0.85 => {
                format!("unknown time zone `{name}`; did you mean `{suggestion}`?")
            }
            _ => format!("unknown time zone `{name}`; use an IANA name such as `Europe/Berlin` or `UTC`"),
        }
    })
}

/// What the scheduler should do about a campaign now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    Nothing,
    /// Plan the run of this fire time; `missed` earlier fires are folded into it.
    Run {
        at: DateTime<Utc>,
        missed: usize,
    },
    /// The latest fire is older than the grace period: record it as skipped.
    Skip {
        at: DateTime<Utc>,
        missed: usize,
    },
}

/// Most missed fires counted for the record, so that a long outage of an
/// every-minute schedule costs nothing.
const MISSED_COUNT_LIMIT: usize = 10_000;

/// Decides from `last`: the latest fire recorded for the campaign, or, for a
/// campaign never run, when the scheduler started watching it (so that a new
/// campaign does not fire for times before it existed). `None` waits.
pub fn due(schedule: &Schedule, last: Option<DateTime<Utc>>, now: DateTime<Utc>, grace: Duration) -> Due {
    let Some(last) = last else {
        return Due::Nothing;
    };
    let Some(latest) = schedule.latest_at_or_before(now).filter(|&t| t > last) else {
        return Due::Nothing;
    };
    let missed = schedule.fires_after(last).take_while(|&t| t < latest).take(MISSED_COUNT_LIMIT).count();
    if now - latest <= grace { Due::Run { at: latest, missed } } else { Due::Skip { at: latest, missed } }
}

#[cfg(test)]
mod tests;
