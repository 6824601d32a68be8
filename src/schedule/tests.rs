use chrono::{Duration, Utc};

use super::*;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn next(schedule: &Schedule, after: &str, n: usize) -> Vec<String> {
    schedule.fires_after(utc(after)).take(n).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).collect()
}

fn berlin(expression: &str) -> Schedule {
    Schedule::parse(expression, chrono_tz::Europe::Berlin).unwrap()
}

#[test]
fn standard_weekday_numbers_mean_what_cron_users_expect() {
    // 2026-11-23 is a Monday.
    let utc_schedule = |e| Schedule::parse(e, chrono_tz::UTC).unwrap();
    assert_eq!(next(&utc_schedule("0 9 * * 1"), "2026-11-22T00:00:00Z", 1), ["2026-11-23T09:00:00Z"]);
    assert_eq!(next(&utc_schedule("0 9 * * MON"), "2026-11-22T00:00:00Z", 1), ["2026-11-23T09:00:00Z"]);
    assert_eq!(next(&utc_schedule("0 9 * * 0"), "2026-11-23T00:00:00Z", 1), ["2026-11-29T09:00:00Z"]);
    assert_eq!(next(&utc_schedule("0 9 * * 7"), "2026-11-23T00:00:00Z", 1), ["2026-11-29T09:00:00Z"]);
    assert_eq!(
        next(&utc_schedule("0 9 * * 1-5"), "2026-11-27T10:00:00Z", 2),
        ["2026-11-30T09:00:00Z", "2026-12-01T09:00:00Z"]
    );
    assert_eq!(
        next(&utc_schedule("0 9 * * sat,sunday"), "2026-11-23T00:00:00Z", 2),
        ["2026-11-28T09:00:00Z", "2026-11-29T09:00:00Z"]
    );
    assert_eq!(next(&utc_schedule("30 0 9 1 JAN *"), "2026-11-23T00:00:00Z", 1), ["2027-01-01T09:00:30Z"]);
}

#[test]
fn an_out_of_range_field_names_its_inclusive_limit_on_one_line() {
    let problem = Schedule::parse("60 9 * * *", chrono_tz::UTC).unwrap_err();
    assert_eq!(problem, "`60 9 * * *` is not a valid cron schedule: Minutes must be at most 59 ('60' specified.)");
    let problem = Schedule::parse("0 9 * * MON x", chrono_tz::UTC).unwrap_err();
    assert!(!problem.contains('\n'), "{problem}");
}

#[test]
fn bad_schedules_are_refused_with_the_reason() {
    for bad in ["", "* * *", "0 9 * * MON 2026 x", "61 9 * * *", "0 25 * * *", "0 9 * * FUNDAY", "0 9 32 * *"] {
        assert!(Schedule::parse(bad, chrono_tz::UTC).is_err(), "{bad:?} should be refused");
    }
    let error = Schedule::parse("0 9 * *", chrono_tz::UTC).unwrap_err();
    assert!(error.contains("has 4"), "{error}");
}

#[test]
fn berlin_spring_forward_fires_once_at_the_jump() {
    // 2026-03-29: clocks go from 02:00 CET to 03:00 CEST (01:00 UTC).
    assert_eq!(
        next(&berlin("30 2 * * *"), "2026-03-27T12:00:00Z", 3),
        ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
    );
    // Hourly: 02:00 does not exist, 03:00 comes once.
    assert_eq!(
        next(&berlin("0 * * * *"), "2026-03-28T23:30:00Z", 3),
        ["2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"]
    );
}

#[test]
fn berlin_fall_back_fires_once_at_the_first_pass() {
    // 2026-10-25: clocks go from 03:00 CEST back to 02:00 CET (01:00 UTC).
    assert_eq!(
        next(&berlin("30 2 * * *"), "2026-10-24T12:00:00Z", 3),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z", "2026-10-27T01:30:00Z"]
    );
    // Asked during the second pass through 02:xx, the 02:30 already fired.
    assert_eq!(next(&berlin("30 2 * * *"), "2026-10-25T01:10:00Z", 1), ["2026-10-26T01:30:00Z"]);
    // A 09:00 campaign keeps 09:00 local time: 07:00 UTC in summer, 08:00 in winter.
    assert_eq!(next(&berlin("0 9 * * *"), "2026-10-24T12:00:00Z", 2), ["2026-10-25T08:00:00Z", "2026-10-26T08:00:00Z"]);
}

#[test]
fn new_york_changes() {
    let ny = Schedule::parse("30 2 * * *", chrono_tz::America::New_York).unwrap();
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
    assert_eq!(next(&ny, "2026-03-07T12:00:00Z", 2), ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]);
    // 2026-11-01: 02:00 EDT goes back to 01:00 EST; 01:30 comes twice, fires once.
    let ny = Schedule::parse("30 1 * * *", chrono_tz::America::New_York).unwrap();
    assert_eq!(next(&ny, "2026-10-31T12:00:00Z", 2), ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]);
}

#[test]
fn latest_fire_at_or_before() {
    let schedule = berlin("0 9 * * *");
    assert_eq!(schedule.latest_at_or_before(utc("2026-11-23T08:00:00Z")), Some(utc("2026-11-23T08:00:00Z")));
    assert_eq!(schedule.latest_at_or_before(utc("2026-11-23T07:59:59Z")), Some(utc("2026-11-22T08:00:00Z")));
    // Around the change back: 02:30 CEST (00:30 UTC) is the latest at 01:10 UTC.
    assert_eq!(
        berlin("30 2 * * *").latest_at_or_before(utc("2026-10-25T01:10:00Z")),
        Some(utc("2026-10-25T00:30:00Z"))
    );
}

#[test]
fn a_missed_fire_runs_once_within_the_grace_period_else_is_skipped() {
    let schedule = berlin("0 * * * *");
    let last = utc("2026-11-23T08:00:00Z");
    let grace = Duration::hours(2);
    assert_eq!(due(&schedule, Some(last), utc("2026-11-23T08:59:00Z"), grace), Due::Nothing);
    assert_eq!(
        due(&schedule, Some(last), utc("2026-11-23T09:00:00Z"), grace),
        Due::Run { at: utc("2026-11-23T09:00:00Z"), missed: 0 }
    );
    // Down from 08:30 to 12:20: the 12:00 fire runs once; 09, 10 and 11 are folded in.
    assert_eq!(
        due(&schedule, Some(last), utc("2026-11-23T12:20:00Z"), grace),
        Due::Run { at: utc("2026-11-23T12:00:00Z"), missed: 3 }
    );
    let daily = berlin("0 9 * * *");
    assert_eq!(
        due(&daily, Some(utc("2026-11-20T08:00:00Z")), utc("2026-11-23T11:00:00Z"), grace),
        Due::Skip { at: utc("2026-11-23T08:00:00Z"), missed: 2 }
    );
    assert_eq!(due(&daily, None, utc("2026-11-23T08:00:00Z"), grace), Due::Nothing);
}

#[test]
fn time_zone_names() {
    assert_eq!(parse_timezone("Europe/Berlin"), Ok(chrono_tz::Europe::Berlin));
    assert_eq!(
        parse_timezone("Europe/Berln"),
        Err("unknown time zone `Europe/Berln`; did you mean `Europe/Berlin`?".into())
    );
    assert!(parse_timezone("Mars/Olympus").unwrap_err().contains("IANA"));
}
