//! Parsing of single CSV cells (dates, amounts, flags, addresses) into typed
//! values, with messages that say what was expected. Pure: no IO.

use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// A cell that could not be used: the reason, phrased for a marketer.
pub type CellResult<T> = Result<T, String>;

/// A timestamp: RFC 3339 (`2026-03-01T09:30:00Z`) or a date (`2026-03-01`, midnight UTC).
pub fn timestamp(text: &str) -> CellResult<DateTime<Utc>> {
    // A timestamp is tried first: the date's format string is parsed anew on
    // every try, and no text is both.
    let time = match DateTime::parse_from_rfc3339(text) {
        Ok(time) => time.with_timezone(&Utc),
        Err(_) => {
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                "expected a date YYYY-MM-DD or an RFC 3339 timestamp such as 2026-03-01T09:30:00Z".to_string()
            })?;
            return in_years(text, date).map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
        }
    };
    in_years(text, time.date_naive())?;
    Ok(time)
}

/// A calendar date, `YYYY-MM-DD`.
pub fn date(text: &str) -> CellResult<NaiveDate> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| "expected a date YYYY-MM-DD".to_string())?;
    in_years(text, date)
}

/// The years a date may have: outside them it is a typo, and the database's
/// date functions (SQLite's among them) do not all handle it.
pub const YEARS: std::ops::RangeInclusive<i32> = 1900..=2200;

fn in_years(text: &str, date: NaiveDate) -> CellResult<NaiveDate> {
    if YEARS.contains(&date.year()) {
        Ok(date)
    } else {
        Err(format!("`{text}`: the year must be between {} and {}", YEARS.start(), YEARS.end()))
    }
}

/// A non-negative decimal amount with at most two decimal places, in cents.
pub fn amount_cents(text: &str) -> CellResult<i64> {
    let value = Decimal::from_str_exact(text).map_err(|_| "expected a decimal amount such as 19.99".to_string())?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err("amount must not be negative".into());
    }
    if value.normalize().scale() > 2 {
        return Err("amount has more than two decimal places".into());
    }
    (value * Decimal::ONE_HUNDRED)
        .to_i64()
        .filter(|cents| *cents < i64::MAX / 1000)
        .ok_or_else(|| "amount is too large".into())
}

/// A yes/no flag: true/false, yes/no, y/n, 1/0 (any case).
pub fn flag(text: &str) -> CellResult<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "1" => Ok(true),
        "false" | "no" | "n" | "0" => Ok(false),
        _ => Err("expected true or false (also yes/no, 1/0)".into()),
    }
}

/// A non-negative whole number.
pub fn count(text: &str) -> CellResult<i32> {
    i32::from_str(text).ok().filter(|n| *n >= 0).ok_or_else(|| "expected a whole number, 0 or more".into())
}

/// An email address (syntax only); no line breaks can pass, so none can reach a header.
pub fn email(text: &str) -> CellResult<String> {
    if email_address::EmailAddress::is_valid(text) {
        Ok(text.to_owned())
    } else {
        Err("not a valid email address".into())
    }
}

/// An external id: not empty, at most 200 characters, no control characters.
pub fn external_id(text: &str) -> CellResult<String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.chars().count() > 200 || text.chars().any(char::is_control) {
        return Err("must be at most 200 characters, without control characters".into());
    }
    Ok(text.to_owned())
}

/// The most characters of a name: names reach the `To:` header, whose lines
/// RFC 5322 caps at 998 characters.
pub const MAX_NAME_CHARS: usize = 100;

/// The most characters of a custom attribute's value.
pub const MAX_ATTRIBUTE_CHARS: usize = 1000;

/// The most characters of a note.
pub const MAX_NOTE_CHARS: usize = 10_000;

/// One line of text of at most `max` characters, without control characters
/// (a line break in a name would start a new mail header).
pub fn one_line(text: &str, max: usize) -> CellResult<String> {
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters such as line breaks".into());
    }
    self::text(text, max)
}

/// Text of at most `max` characters, line breaks allowed.
pub fn text(text: &str, max: usize) -> CellResult<String> {
    let length = text.chars().count();
    if length > max {
        return Err(format!("is {length} characters long; at most {max} are allowed"));
    }
    Ok(text.to_owned())
}

/// One of `allowed` (compared without case), returned in lower case.
pub fn one_of(text: &str, allowed: &[&str]) -> CellResult<String> {
    let lower = text.to_ascii_lowercase();
    if allowed.contains(&lower.as_str()) { Ok(lower) } else { Err(format!("expected one of: {}", allowed.join(", "))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps_are_read_as_utc() {
        assert_eq!(timestamp("1997-01-05").unwrap().to_rfc3339(), "1997-01-05T00:00:00+00:00");
        assert_eq!(timestamp("2026-03-01T10:30:00+01:00").unwrap().to_rfc3339(), "2026-03-01T09:30:00+00:00");
        assert!(timestamp("1997-13-05").is_err());
        assert!(timestamp("05/01/1997").is_err());
    }

    #[test]
    fn dates_outside_the_years_1900_to_2200_are_refused_naming_the_value() {
        let refusal = |text: &str| format!("`{text}`: the year must be between 1900 and 2200");
        assert_eq!(timestamp("0000-01-01").unwrap_err(), refusal("0000-01-01"));
        assert_eq!(
            timestamp("-0001-01-01T00:00:00Z").unwrap_err(),
            "expected a date YYYY-MM-DD or an RFC 3339 timestamp such as 2026-03-01T09:30:00Z"
        );
        assert_eq!(timestamp("1899-12-31T23:59:59Z").unwrap_err(), refusal("1899-12-31T23:59:59Z"));
        assert_eq!(timestamp("2201-01-01").unwrap_err(), refusal("2201-01-01"));
        assert_eq!(date("0000-02-29").unwrap_err(), refusal("0000-02-29"));
        assert_eq!(date("-001-02-03").unwrap_err(), refusal("-001-02-03"));
        assert!(timestamp("1900-01-01").is_ok());
        assert!(timestamp("2200-12-31T23:59:59Z").is_ok());
        assert!(date("1900-01-01").is_ok());
        assert!(date("2200-12-31").is_ok());
        // A time zone that moves the instant out of the range is refused too.
        assert!(timestamp("2200-12-31T23:00:00-02:00").is_err());
    }

    #[test]
    fn amounts_become_exact_cents() {
        assert_eq!(amount_cents("19.99"), Ok(1999));
        assert_eq!(amount_cents("0"), Ok(0));
        assert_eq!(amount_cents("7.5"), Ok(750));
        assert_eq!(amount_cents("3.000"), Ok(300));
        assert_eq!(amount_cents("-1").unwrap_err(), "amount must not be negative");
        assert_eq!(amount_cents("1.999").unwrap_err(), "amount has more than two decimal places");
        assert!(amount_cents("12,50").is_err());
        assert!(amount_cents("abc").is_err());
    }

    #[test]
    fn flags_ids_and_choices() {
        assert_eq!(flag("Yes"), Ok(true));
        assert_eq!(flag("0"), Ok(false));
        assert!(flag("maybe").is_err());
        assert!(external_id("").is_err());
        assert!(external_id("a\tb").is_err());
        assert_eq!(one_of("Complaint", &["complaint", "inquiry"]), Ok("complaint".into()));
        assert!(email("ann@example.com").is_ok());
        assert!(email("ann@example.com\r\nBcc: x@y.z").is_err());
        assert!(email("not an address").is_err());
        assert_eq!(one_line("Ann", MAX_NAME_CHARS), Ok("Ann".into()));
        assert!(one_line("Ann\nBcc", MAX_NAME_CHARS).unwrap_err().contains("control characters"));
        assert_eq!(
            one_line(&"é".repeat(101), MAX_NAME_CHARS).unwrap_err(),
            "is 101 characters long; at most 100 are allowed"
        );
        assert_eq!(text("two\nlines", 9), Ok("two\nlines".into()));
        assert!(text("two\nlines", 8).is_err());
    }
}
