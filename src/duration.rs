//! Durations as marketers and operators write them: `30d`, `13w`, `6h`, `90m`, `30s`.

use chrono::Duration;

/// Parses a whole number followed by `w` (weeks), `d` (days), `h` (hours),
/// `m` (minutes) or `s` (seconds). Zero is allowed; at most ten years.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || format!("`{text}` is not a duration such as 30d, 13w, 6h, 90m or 30s");
    let trimmed = text.trim();
    let unit_at = trimmed.len().saturating_sub(1);
    let (number, unit) = (trimmed.get(..unit_at).ok_or_else(invalid)?, trimmed.get(unit_at..).ok_or_else(invalid)?);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let number: i64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "w" => number.checked_mul(7 * 24 * 3600),
        "d" => number.checked_mul(24 * 3600),
        "h" => number.checked_mul(3600),
        "m" => number.checked_mul(60),
        "s" => Some(number),
        _ => return Err(invalid()),
    };
    match seconds {
        Some(seconds) if seconds <= 3650 * 24 * 3600 => Ok(Duration::seconds(seconds)),
        _ => Err(format!("`{text}` is longer than ten years")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_errors() {
        assert_eq!(parse("30d"), Ok(Duration::days(30)));
        assert_eq!(parse("13w"), Ok(Duration::days(91)));
        assert_eq!(parse("6h"), Ok(Duration::hours(6)));
        assert_eq!(parse("90m"), Ok(Duration::minutes(90)));
        assert_eq!(parse("45s"), Ok(Duration::seconds(45)));
        assert_eq!(parse("0d"), Ok(Duration::zero()));
        for bad in ["", "d", "30", "30x", "-3d", "+3d", "3.5d", "é", "99999999999999999999d"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(parse("3651d"), Err("`3651d` is longer than ten years".into()));
    }
}
