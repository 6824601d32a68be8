//! The values of a source's rows as text cells for the importer, decided per
//! column by its type once (the engine's own types, decoded exactly), so
//! that a row costs a decode and a write per cell and nothing else.
//! A NULL is an empty cell, as in an import file.

use std::fmt::Display;
use std::io::Write;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SecondsFormat, Timelike, Utc};
use rust_decimal::Decimal;
use sqlx::mysql::{MySql, MySqlRow, MySqlTypeInfo};
use sqlx::postgres::{PgTypeInfo, PgTypeKind, Postgres};
use sqlx::sqlite::{Sqlite, SqliteRow, SqliteTypeInfo};
use sqlx::{Database, Decode, Encode, Row, Type, TypeInfo, ValueRef};

use super::query::Dialect;

/// What the feed needs of a source engine: how each column of a query's
/// result is read, from the types the source describes.
pub trait Engine: Database {
    const DIALECT: Dialect;
    /// How a column's values are read.
    type Cell: Copy + Send + Sync;

    /// How to read a column of type `info`, or why it cannot be read.
    fn cell(info: &Self::TypeInfo) -> Result<Self::Cell, String>;
    /// How to read the watermark column, which must hold times.
    fn time_cell(info: &Self::TypeInfo) -> Result<Self::Cell, String>;
}

/// A source engine whose rows are read through a query with `:since`
/// bound, row by row (PostgreSQL's are copied: `copy_out`).
pub trait Queried: Engine {
    /// The value bound to `:since`.
    type Since: for<'q> Encode<'q, Self> + Type<Self> + Send + 'static;

    fn since(watermark: DateTime<Utc>) -> Self::Since;
    /// The value of column `index`.
    fn value(row: &Self::Row, index: usize, cell: Self::Cell) -> Result<Value<'_>, sqlx::Error>;
}

/// One value, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'r> {
    Null,
    Int(i64),
    UInt(u64),
    Float32(f32),
    Float64(f64),
    Decimal(Decimal),
    Bool(bool),
    Text(&'r str),
    Date(NaiveDate),
    Time(DateTime<Utc>),
}

impl Value<'_> {
    /// Appends the value as the text of one cell, as an import file would have it.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => {}
            Value::Int(v) => display(out, v),
            Value::UInt(v) => display(out, v),
            Value::Float32(v) => display(out, v),
            Value::Float64(v) => display(out, v),
            Value::Decimal(v) => display(out, v),
            Value::Bool(v) => display(out, v),
            Value::Text(text) => out.extend(text.as_bytes()),
            // ISO 8601: `2026-03-01`, and `2026-03-01T09:30:00.500Z` (RFC 3339).
            Value::Date(date) => write_date(out, *date),
            Value::Time(time) => write_time(out, *time),
        }
    }
}

/// A date as chrono displays it (`2026-03-01`), its digits written directly
/// rather than through the formatting machinery of `Display`: a feed writes
/// one or two dates or times for every row.
fn write_date(out: &mut Vec<u8>, date: NaiveDate) {
    let year = match u32::try_from(date.year()) {
        Ok(year) if year <= 9999 => year,
        // chrono writes a sign and as many digits as it takes.
        _ => return display(out, date),
    };
    digits(out, year, 4);
    out.push(b'-');
    digits(out, date.month(), 2);
    out.push(b'-');
    digits(out, date.day(), 2);
}

/// A time as the date, `T`, the time as chrono displays it (fractions of a
/// second in groups of three digits, none when whole) and `Z`.
fn write_time(out: &mut Vec<u8>, time: DateTime<Utc>) {
    let clock = time.time();
    let nanos = clock.nanosecond();
    if nanos >= 1_000_000_000 {
        // A leap second, which chrono writes as second 60.
        return display(out, format_args!("{}T{}Z", time.date_naive(), clock));
    }
    write_date(out, time.date_naive());
    out.push(b'T');
    digits(out, clock.hour(), 2);
    out.push(b':');
    digits(out, clock.minute(), 2);
    out.push(b':');
    digits(out, clock.second(), 2);
    match nanos {
        0 => {}
        _ if nanos.is_multiple_of(1_000_000) => fraction(out, nanos / 1_000_000, 3),
        _ if nanos.is_multiple_of(1_000) => fraction(out, nanos / 1_000, 6),
        _ => fraction(out, nanos, 9),
    }
    out.push(b'Z');
}

fn fraction(out: &mut Vec<u8>, value: u32, width: u32) {
    out.push(b'.');
    digits(out, value, width);
}

/// `value` in decimal, zero-padded to `width` digits (`value` has no more).
fn digits(out: &mut Vec<u8>, value: u32, width: u32) {
    for place in (0..width).rev() {
        out.push(b'0' + (value / 10u32.pow(place) % 10) as u8);
    }
}

/// A time as the importer and the watermark take it: RFC 3339 in UTC with microseconds.
pub fn time_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn display(out: &mut Vec<u8>, value: impl Display) {
    write!(out, "{value}").expect("writing to memory cannot fail");
}

/// Decodes column `index` as `T`, its type already matched to the
/// column's; `None` for NULL.
fn decode<'r, T, R: Row>(row: &'r R, index: usize) -> Result<Option<T>, sqlx::Error>
where
    T: Decode<'r, R::Database> + Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    row.try_get_unchecked(index)
}

fn unreadable(type_name: &str) -> String {
    format!("has the type {type_name}, which a feed cannot read; cast it to text in the query")
}

fn not_a_time(type_name: &str) -> String {
    format!("has the type {type_name}; the watermark must be a date and time (a timestamp) column")
}

#[derive(Debug, Clone, Copy)]
pub enum PgCell {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Bool,
    Text,
    /// An enum's label (text on the wire).
    Label,
    Date,
    Timestamp,
    TimestampTz,
}

impl Engine for Postgres {
    const DIALECT: Dialect = Dialect::Postgres;
    type Cell = PgCell;

    fn cell(info: &PgTypeInfo) -> Result<PgCell, String> {
        Ok(match info.name() {
            "INT2" => PgCell::Int2,
            "INT4" => PgCell::Int4,
            "INT8" => PgCell::Int8,
            "FLOAT4" => PgCell::Float4,
            "FLOAT8" => PgCell::Float8,
            "NUMERIC" => PgCell::Numeric,
            "BOOL" => PgCell::Bool,
            "DATE" => PgCell::Date,
            "TIMESTAMP" => PgCell::Timestamp,
            "TIMESTAMPTZ" => PgCell::TimestampTz,
            _ if <&str as Type<Postgres>>::compatible(info) => PgCell::Text,
            _ => match info.kind() {
                PgTypeKind::Enum(_) => PgCell::Label,
                // A domain's values are its base type's.
                PgTypeKind::Domain(base) => Self::cell(base)?,
                _ => return Err(unreadable(info.name())),
            },
        })
    }

    fn time_cell(info: &PgTypeInfo) -> Result<PgCell, String> {
        match Self::cell(info) {
            Ok(cell @ (PgCell::Timestamp | PgCell::TimestampTz)) => Ok(cell),
            _ => Err(not_a_time(info.name())),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum MySqlCell {
    Signed,
    Unsigned,
    Float,
    Double,
    Decimal,
    Bool,
    /// Character data, and binary strings holding UTF-8 text.
    Text,
    Date,
    /// `DATETIME` and `TIMESTAMP`, both in UTC (the session's time zone).
    DateTime,
}

impl Engine for MySql {
    const DIALECT: Dialect = Dialect::MySql;
    type Cell = MySqlCell;

    fn cell(info: &MySqlTypeInfo) -> Result<MySqlCell, String> {
        let name = info.name();
        Ok(match name {
            "BOOLEAN" => MySqlCell::Bool,
            "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => MySqlCell::Signed,
            "YEAR" => MySqlCell::Unsigned,
            _ if name.ends_with(" UNSIGNED") => MySqlCell::Unsigned,
            "FLOAT" => MySqlCell::Float,
            "DOUBLE" => MySqlCell::Double,
            "DECIMAL" => MySqlCell::Decimal,
            "DATE" => MySqlCell::Date,
            "DATETIME" | "TIMESTAMP" => MySqlCell::DateTime,
            "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" | "BINARY"
            | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => MySqlCell::Text,
            _ => return Err(unreadable(name)),
        })
    }

    fn time_cell(info: &MySqlTypeInfo) -> Result<MySqlCell, String> {
        match Self::cell(info) {
            Ok(MySqlCell::DateTime) => Ok(MySqlCell::DateTime),
            _ => Err(not_a_time(info.name())),
        }
    }
}

impl Queried for MySql {
    type Since = NaiveDateTime;

    /// A `DATETIME` parameter in UTC, compared as such with `DATETIME` and
    /// (in the session's UTC) `TIMESTAMP` columns.
    fn since(watermark: DateTime<Utc>) -> NaiveDateTime {
        watermark.naive_utc()
    }

    fn value(row: &MySqlRow, index: usize, cell: MySqlCell) -> Result<Value<'_>, sqlx::Error> {
        let value = match cell {
            MySqlCell::Signed => decode(row, index)?.map(Value::Int),
            MySqlCell::Unsigned => decode(row, index)?.map(Value::UInt),
            MySqlCell::Float => decode(row, index)?.map(Value::Float32),
            MySqlCell::Double => decode(row, index)?.map(Value::Float64),
            MySqlCell::Decimal => decode(row, index)?.map(Value::Decimal),
            MySqlCell::Bool => decode(row, index)?.map(Value::Bool),
            MySqlCell::Text => decode(row, index)?.map(utf8).transpose()?.map(Value::Text),
            MySqlCell::Date => decode(row, index)?.map(Value::Date),
            MySqlCell::DateTime => decode::<NaiveDateTime, _>(row, index)?.map(|t| Value::Time(t.and_utc())),
        };
        Ok(value.unwrap_or(Value::Null))
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, sqlx::Error> {
    std::str::from_utf8(bytes).map_err(|_| sqlx::Error::Decode("not UTF-8 text".into()))
}

#[derive(Debug, Clone, Copy)]
pub enum SqliteCell {
    /// As stored: SQLite's types belong to values, not columns.
    Stored,
    /// A time: a column declared `DATETIME` or `TIMESTAMP`, stored as text
    /// (`2026-03-01 09:30:00`, RFC 3339), Unix seconds or a Julian day.
    Time,
}

impl Engine for Sqlite {
    const DIALECT: Dialect = Dialect::Sqlite;
    type Cell = SqliteCell;

    fn cell(info: &SqliteTypeInfo) -> Result<SqliteCell, String> {
        Ok(match info.name() {
            "DATETIME" => SqliteCell::Time,
            _ => SqliteCell::Stored,
        })
    }

    /// Any column: an expression has no declared type, and its values say what they are.
    fn time_cell(_: &SqliteTypeInfo) -> Result<SqliteCell, String> {
        Ok(SqliteCell::Time)
    }
}

impl Queried for Sqlite {
    type Since = String;

    /// Text in SQLite's own format (that of `CURRENT_TIMESTAMP` and
    /// `datetime()`), so that it compares as text with the times SQLite writes.
    fn since(watermark: DateTime<Utc>) -> String {
        watermark.format("%Y-%m-%d %H:%M:%S%.f").to_string()
    }

    fn value(row: &SqliteRow, index: usize, cell: SqliteCell) -> Result<Value<'_>, sqlx::Error> {
        let raw = row.try_get_raw(index)?;
        if raw.is_null() {
            return Ok(Value::Null);
        }
        let stored = raw.type_info().name().to_owned();
        let value = match (cell, stored.as_str()) {
            (SqliteCell::Time, _) => decode(row, index)?.map(Value::Time),
            (SqliteCell::Stored, "INTEGER") => decode(row, index)?.map(Value::Int),
            (SqliteCell::Stored, "REAL") => decode(row, index)?.map(Value::Float64),
            (SqliteCell::Stored, "BLOB") => decode(row, index)?.map(utf8).transpose()?.map(Value::Text),
            (SqliteCell::Stored, _) => decode(row, index)?.map(Value::Text),
        };
        Ok(value.unwrap_or(Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: Value<'_>) -> String {
        let mut out = Vec::new();
        value.write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_are_written_as_the_importer_reads_them() {
        assert_eq!(text(Value::Null), "");
        assert_eq!(text(Value::Int(-42)), "-42");
        assert_eq!(text(Value::Float32(19.99)), "19.99");
        assert_eq!(text(Value::Float64(0.1)), "0.1");
        assert_eq!(text(Value::Decimal(Decimal::new(19990, 3))), "19.990");
        assert_eq!(text(Value::Bool(true)), "true");
        assert_eq!(text(Value::Date(NaiveDate::from_ymd_opt(2026, 3, 1).unwrap())), "2026-03-01");
        let time = DateTime::parse_from_rfc3339("2026-03-01T09:30:00.5+02:00").unwrap().with_timezone(&Utc);
        assert_eq!(text(Value::Time(time)), "2026-03-01T07:30:00.500Z");
        assert_eq!(crate::import::fields::timestamp(&text(Value::Time(time))), Ok(time));
        let whole = time - chrono::Duration::milliseconds(500);
        assert_eq!(text(Value::Time(whole)), "2026-03-01T07:30:00Z");
        let micros = whole + chrono::Duration::microseconds(7);
        assert_eq!(crate::import::fields::timestamp(&text(Value::Time(micros))), Ok(micros));
    }

    #[test]
    fn dates_and_times_are_written_as_chrono_displays_them() {
        let base = DateTime::parse_from_rfc3339("1999-12-31T23:59:59Z").unwrap().with_timezone(&Utc);
        let offsets = [0, 1, 7_000, 500_000, 123_456, 999_999, 86_400_000_000 * 400, -86_400_000_000 * 365 * 1900];
        for micros in offsets {
            for nanos in [0, 1, 250] {
                let time = base + chrono::Duration::microseconds(micros) + chrono::Duration::nanoseconds(nanos);
                let chrono = format!("{}T{}Z", time.date_naive(), time.time());
                assert_eq!(text(Value::Time(time)), chrono);
                assert_eq!(text(Value::Date(time.date_naive())), time.date_naive().to_string());
            }
        }
        let far = NaiveDate::from_ymd_opt(12_026, 1, 2).unwrap();
        assert_eq!(text(Value::Date(far)), "+12026-01-02");
        let before = NaiveDate::from_ymd_opt(-3, 1, 2).unwrap();
        assert_eq!(text(Value::Date(before)), "-0003-01-02");
        let leap =
            NaiveDate::from_ymd_opt(2016, 12, 31).unwrap().and_hms_milli_opt(23, 59, 59, 1_500).unwrap().and_utc();
        assert_eq!(text(Value::Time(leap)), "2016-12-31T23:59:60.500Z");
    }

    #[test]
    fn text_is_written_whole_without_quoting() {
        let awkward = "say \"hi\", then\r\nleave";
        assert_eq!(text(Value::Text(awkward)), awkward);
    }

    #[test]
    fn sqlite_binds_since_in_its_own_time_format() {
        let time = DateTime::parse_from_rfc3339("2026-03-01T09:30:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(<Sqlite as Queried>::since(time), "2026-03-01 09:30:00");
        let fraction = time + chrono::Duration::microseconds(250);
        assert_eq!(<Sqlite as Queried>::since(fraction), "2026-03-01 09:30:00.000250");
    }
}
