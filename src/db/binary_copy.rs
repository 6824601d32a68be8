//! PostgreSQL's binary `COPY` format, for the bulk writes of numbers
//! (feature snapshots, scores, ledgers): the server reads each value as it
//! is stored instead of parsing text, and the client writes eight bytes
//! instead of formatting a float. The sql feed's reader
//! (`feed::sql::copy_out`) takes the format's signature and its epoch
//! conversions from here.
//!
//! The binary format needs each value in its column's exact type (an
//! `int4` column takes four bytes, not eight), so the types are read from
//! the catalogue first; a table with a column of another type (`numeric`,
//! say) is written as text.

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::DbErr;
use sea_orm::sea_query::Value;

/// The signature that opens binary COPY data, both ways.
pub const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// What follows the signature here: no flags, no header extension.
const FLAGS_AND_NO_EXTENSION: &[u8] = &[0; 8];
/// The end of the data: a row of -1 fields.
const TRAILER: &[u8] = &(-1i16).to_be_bytes();

/// A column type the binary writer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Jsonb,
    Timestamp,
    Date,
}

impl Wire {
    /// The wire type of a column of PostgreSQL type `name` (`pg_type.typname`).
    pub fn of(name: &str) -> Option<Wire> {
        Some(match name {
            "bool" => Wire::Bool,
            "int2" => Wire::Int2,
            "int4" => Wire::Int4,
            "int8" => Wire::Int8,
            "float4" => Wire::Float4,
            "float8" => Wire::Float8,
            "text" | "varchar" | "bpchar" | "json" => Wire::Text,
            "jsonb" => Wire::Jsonb,
            "timestamptz" | "timestamp" => Wire::Timestamp,
            "date" => Wire::Date,
            _ => return None,
        })
    }
}

/// The start of the data.
pub fn header(out: &mut Vec<u8>) {
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(FLAGS_AND_NO_EXTENSION);
}

/// The end of the data.
pub fn trailer(out: &mut Vec<u8>) {
    out.extend_from_slice(TRAILER);
}

/// Appends one row: `values[i]` as a value of `types[i]`.
pub fn row(values: &[Value], types: &[Wire], out: &mut Vec<u8>) -> Result<(), DbErr> {
    out.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for (value, wire) in values.iter().zip(types) {
        field(value, *wire, out)?;
    }
    Ok(())
}

/// Microseconds and days are counted from PostgreSQL's epoch, 2000-01-01.
const EPOCH_SECONDS: i64 = 946_684_800;
const EPOCH_DAYS_FROM_CE: i32 = 730_120;

fn field(value: &Value, wire: Wire, out: &mut Vec<u8>) -> Result<(), DbErr> {
    let mismatch = || DbErr::Custom(format!("binary COPY: {value:?} cannot be written as {wire:?}"));
    let mut sized = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    if is_null(value) {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return Ok(());
    }
    match wire {
        Wire::Bool => match value {
            Value::Bool(Some(v)) => sized(&[u8::from(*v)]),
            _ => return Err(mismatch()),
        },
        Wire::Int2 => {
            sized(&i16::try_from(integer(value).ok_or_else(mismatch)?).map_err(|_| mismatch())?.to_be_bytes())
        }
        Wire::Int4 => {
            sized(&i32::try_from(integer(value).ok_or_else(mismatch)?).map_err(|_| mismatch())?.to_be_bytes())
        }
        Wire::Int8 => sized(&integer(value).ok_or_else(mismatch)?.to_be_bytes()),
        Wire::Float4 => sized(&(float(value).ok_or_else(mismatch)? as f32).to_be_bytes()),
        Wire::Float8 => sized(&float(value).ok_or_else(mismatch)?.to_be_bytes()),
        Wire::Text => match value {
            Value::String(Some(v)) => sized(v.as_bytes()),
            Value::Char(Some(v)) => sized(v.to_string().as_bytes()),
            Value::Json(Some(v)) => sized(v.to_string().as_bytes()),
            _ => return Err(mismatch()),
        },
        Wire::Jsonb => {
            let text = match value {
                Value::Json(Some(v)) => v.to_string(),
                Value::String(Some(v)) => v.clone(),
                _ => return Err(mismatch()),
            };
            let mut bytes = Vec::with_capacity(text.len() + 1);
            bytes.push(1); // jsonb's binary format version
            bytes.extend_from_slice(text.as_bytes());
            sized(&bytes)
        }
        Wire::Timestamp => {
            let time = match value {
                Value::ChronoDateTimeUtc(Some(v)) => *v,
                Value::ChronoDateTime(Some(v)) => v.and_utc(),
                _ => return Err(mismatch()),
            };
            sized(&micros_since_epoch(time).to_be_bytes())
        }
        Wire::Date => match value {
            Value::ChronoDate(Some(v)) => sized(&days_since_epoch(*v).to_be_bytes()),
            _ => return Err(mismatch()),
        },
    }
    Ok(())
}

/// The time `micros` after PostgreSQL's epoch (the inverse of
/// [`micros_since_epoch`]); `None` beyond chrono's range.
pub fn time_after_epoch(micros: i64) -> Option<DateTime<Utc>> {
    micros.checked_add(EPOCH_SECONDS * 1_000_000).and_then(DateTime::from_timestamp_micros)
}

/// The day `days` after PostgreSQL's epoch (the inverse of
/// [`days_since_epoch`]); `None` beyond chrono's range.
pub fn date_after_epoch(days: i32) -> Option<NaiveDate> {
    days.checked_add(EPOCH_DAYS_FROM_CE).and_then(NaiveDate::from_num_days_from_ce_opt)
}

fn micros_since_epoch(time: DateTime<Utc>) -> i64 {
    (time.timestamp() - EPOCH_SECONDS) * 1_000_000 + i64::from(time.timestamp_subsec_micros())
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    chrono::Datelike::num_days_from_ce(&date) - EPOCH_DAYS_FROM_CE
}

/// Whether `value` is a NULL, of whatever type.
pub fn is_null(value: &Value) -> bool {
    matches!(
        value,
        Value::Bool(None)
            | Value::TinyInt(None)
            | Value::SmallInt(None)
            | Value::Int(None)
            | Value::BigInt(None)
            | Value::TinyUnsigned(None)
            | Value::SmallUnsigned(None)
            | Value::Unsigned(None)
            | Value::BigUnsigned(None)
            | Value::Float(None)
            | Value::Double(None)
            | Value::String(None)
            | Value::Char(None)
            | Value::Json(None)
            | Value::ChronoDateTimeUtc(None)
            | Value::ChronoDateTime(None)
            | Value::ChronoDate(None)
            | Value::Bytes(None)
    )
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::TinyInt(Some(v)) => Some(i64::from(*v)),
        Value::SmallInt(Some(v)) => Some(i64::from(*v)),
        Value::Int(Some(v)) => Some(i64::from(*v)),
        Value::BigInt(Some(v)) => Some(*v),
        Value::TinyUnsigned(Some(v)) => Some(i64::from(*v)),
        Value::SmallUnsigned(Some(v)) => Some(i64::from(*v)),
        Value::Unsigned(Some(v)) => Some(i64::from(*v)),
        Value::BigUnsigned(Some(v)) => i64::try_from(*v).ok(),
        _ => None,
    }
}

fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Float(Some(v)) => Some(f64::from(*v)),
        Value::Double(Some(v)) => Some(*v),
        other => integer(other).map(|v| v as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_postgresql_reads_them() {
        let mut out = Vec::new();
        let time = DateTime::from_timestamp(EPOCH_SECONDS + 1, 5_000).unwrap();
        let date = NaiveDate::from_ymd_opt(2000, 1, 3).unwrap();
        let values = [
            Value::BigInt(Some(7)),
            Value::Double(Some(0.5)),
            Value::BigInt(None),
            Value::ChronoDateTimeUtc(Some(time)),
            Value::ChronoDate(Some(date)),
            Value::String(Some("é".into())),
        ];
        let types = [Wire::Int4, Wire::Float8, Wire::Int8, Wire::Timestamp, Wire::Date, Wire::Text];
        row(&values, &types, &mut out).unwrap();
        let mut expected = 6i16.to_be_bytes().to_vec();
        for field in [
            &7i32.to_be_bytes()[..],
            &0.5f64.to_be_bytes(),
            &[],
            &1_000_005i64.to_be_bytes(),
            &2i32.to_be_bytes(),
            "é".as_bytes(),
        ] {
            if field.is_empty() {
                expected.extend_from_slice(&(-1i32).to_be_bytes());
            } else {
                expected.extend_from_slice(&(field.len() as i32).to_be_bytes());
                expected.extend_from_slice(field);
            }
        }
        assert_eq!(out, expected);
    }

    #[test]
    fn a_value_too_large_for_its_column_is_refused_by_name() {
        let error = row(&[Value::BigInt(Some(1 << 40))], &[Wire::Int4], &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("BigInt(Some(1099511627776)) cannot be written as Int4"), "{error}");
    }
}
