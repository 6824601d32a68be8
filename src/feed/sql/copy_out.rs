//! PostgreSQL sources read through `COPY (query) TO STDOUT (FORMAT binary)`:
//! the rows arrive as one stream of bytes and each value is written as its
//! cell's text straight from the server's binary form, instead of each row
//! becoming an sqlx row whose values are decoded one by one.
//!
//! COPY takes no parameters: `:since` becomes a timestamp literal written
//! from the watermark's time (digits and separators only, never text from
//! elsewhere). As a constant, the server plans with it as it would with a
//! bound value (a first run scans the table, a later one can use an index
//! on `updated_at`) and compares each row with it as it is, where a value
//! read from a setting was parsed again for every row.

use std::io::Write;

use chrono::{DateTime, Utc};

use super::cells::{PgCell, Value};
use crate::db::copy_out::{array, date, time};

/// What each `:since` becomes in the copied query: the watermark `since`
/// as a `timestamptz` constant.
pub fn since_literal(since: DateTime<Utc>) -> String {
    format!("'{}'::timestamptz", super::cells::time_text(since))
}

/// Appends the text of a value of `cell` in binary form, as an import file
/// would have it (see [`Value::write`]).
pub fn write(cell: PgCell, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    match cell {
        PgCell::Int2 => Value::Int(i16::from_be_bytes(array(bytes)?).into()).write(out),
        PgCell::Int4 => Value::Int(i32::from_be_bytes(array(bytes)?).into()).write(out),
        PgCell::Int8 => Value::Int(i64::from_be_bytes(array(bytes)?)).write(out),
        PgCell::Float4 => Value::Float32(f32::from_be_bytes(array(bytes)?)).write(out),
        PgCell::Float8 => Value::Float64(f64::from_be_bytes(array(bytes)?)).write(out),
        PgCell::Numeric => write_numeric(bytes, out)?,
        PgCell::Bool => Value::Bool(bytes.first().is_some_and(|b| *b != 0)).write(out),
        PgCell::Text | PgCell::Label => {
            std::str::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())?;
            out.extend_from_slice(bytes);
        }
        PgCell::Date => Value::Date(date(bytes)?).write(out),
        PgCell::Timestamp | PgCell::TimestampTz => Value::Time(time(bytes)?).write(out),
    }
    Ok(())
}

/// A `numeric` in binary form written in decimal with its scale, as
/// PostgreSQL writes it (`12.50`): base-10000 digits, the weight of the
/// first, the sign and the number of decimal places.
fn write_numeric(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let word = |i: usize| -> Result<u16, String> {
        bytes.get(2 * i..2 * i + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(|| "is cut short".to_string())
    };
    let (count, weight, sign, scale) = (word(0)? as usize, word(1)? as i16, word(2)?, word(3)? as usize);
    match sign {
        0x0000 => {}
        0x4000 => out.push(b'-'),
        0xC000 => return Err("is NaN, which is no number".into()),
        _ => return Err("is infinite, which is no number".into()),
    }
    let digit = |i: i32| -> Result<u16, String> {
        let digit = if i < 0 || i as usize >= count { 0 } else { word(4 + i as usize)? };
        if digit > 9999 { Err("is not a valid numeric".into()) } else { Ok(digit) }
    };
    // The whole part, the first group without its leading zeros.
    if weight < 0 {
        out.push(b'0');
    } else {
        for i in 0..=i32::from(weight) {
            let group = digit(i)?;
            if i == 0 { write!(out, "{group}") } else { write!(out, "{group:04}") }
                .expect("writing to memory cannot fail");
        }
    }
    if scale > 0 {
        out.push(b'.');
        let mut written = 0;
        let mut i = i32::from(weight) + 1;
        while written < scale {
            let mut group = [0u8; 4];
            write!(&mut group[..], "{:04}", digit(i)?).expect("four digits fit");
            let take = (scale - written).min(4);
            out.extend_from_slice(&group[..take]);
            written += take;
            i += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `numeric` in binary form: base-10000 digits, weight, sign, scale.
    fn numeric(digits: &[u16], weight: i16, sign: u16, scale: u16) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [digits.len() as u16, weight as u16, sign, scale].into_iter().chain(digits.iter().copied()) {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        bytes
    }

    fn text(cell: PgCell, bytes: &[u8]) -> Result<String, String> {
        let mut out = Vec::new();
        write(cell, bytes, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn numerics_are_written_with_their_scale_as_postgresql_writes_them() {
        let cases: &[(&[u16], i16, u16, u16, &str)] = &[
            (&[12, 5000], 0, 0, 2, "12.50"),
            (&[12, 3456, 7000], 1, 0, 1, "123456.7"),
            (&[500], -1, 0x4000, 2, "-0.05"),
            (&[5000], -2, 0, 5, "0.00005"),
            (&[], 0, 0, 2, "0.00"),
            (&[1], 1, 0, 0, "10000"),
            (&[42], 0, 0, 0, "42"),
        ];
        for &(digits, weight, sign, scale, expected) in cases {
            assert_eq!(text(PgCell::Numeric, &numeric(digits, weight, sign, scale)).unwrap(), expected);
        }
        let nan = text(PgCell::Numeric, &numeric(&[], 0, 0xC000, 0)).unwrap_err();
        assert!(nan.contains("NaN"), "{nan}");
        assert!(text(PgCell::Numeric, &numeric(&[10_000], 0, 0, 0)).is_err());
        assert!(text(PgCell::Numeric, &[0, 1]).is_err(), "cut short");
    }

    #[test]
    fn times_dates_and_plain_values_read_as_the_importer_takes_them() {
        let micros: i64 = 826_795_800_500_000; // 2026-03-14T09:30:00.5Z
        assert_eq!(text(PgCell::TimestampTz, &micros.to_be_bytes()).unwrap(), "2026-03-14T09:30:00.500Z");
        assert_eq!(time(&micros.to_be_bytes()).unwrap().to_rfc3339(), "2026-03-14T09:30:00.500+00:00");
        assert!(time(&i64::MAX.to_be_bytes()).unwrap_err().contains("infinity"));
        assert_eq!(text(PgCell::Date, &(-1i32).to_be_bytes()).unwrap(), "1999-12-31");
        assert_eq!(text(PgCell::Date, &0i32.to_be_bytes()).unwrap(), "2000-01-01");
        assert_eq!(text(PgCell::Timestamp, &0i64.to_be_bytes()).unwrap(), "2000-01-01T00:00:00Z");
        assert!(text(PgCell::Date, &(i32::MAX - 1).to_be_bytes()).unwrap_err().contains("out of range"));
        assert_eq!(text(PgCell::Int4, &(-7i32).to_be_bytes()).unwrap(), "-7");
        assert_eq!(text(PgCell::Int2, &3i16.to_be_bytes()).unwrap(), "3");
        assert_eq!(text(PgCell::Float8, &0.1f64.to_be_bytes()).unwrap(), "0.1");
        assert_eq!(text(PgCell::Bool, &[1]).unwrap(), "true");
        assert_eq!(text(PgCell::Text, "Zoë".as_bytes()).unwrap(), "Zoë");
        assert!(text(PgCell::Text, &[0xff]).is_err());
        assert!(text(PgCell::Int8, &[0, 1]).unwrap_err().contains("2 bytes where 8"));
    }

    #[test]
    fn since_is_a_timestamptz_constant_with_microseconds() {
        let since = DateTime::from_timestamp_micros(1_772_357_400_000_250).unwrap();
        assert_eq!(since_literal(since), "'2026-03-01T09:30:00.000250Z'::timestamptz");
    }
}
