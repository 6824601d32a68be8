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

use chrono::{DateTime, NaiveDate, Utc};

use super::cells::{PgCell, Value};
use crate::db::binary_copy::{self, SIGNATURE};

/// What each `:since` becomes in the copied query: the watermark `since`
/// as a `timestamptz` constant.
pub fn since_literal(since: DateTime<Utc>) -> String {
    format!("'{}'::timestamptz", super::cells::time_text(since))
}

/// `query` (its `:since` already replaced by [`since_literal`]) as a binary COPY.
/// On lines of its own, so that a comment at its end stays one; a final
/// semicolon would end the statement inside the parentheses.
pub fn copy_statement(query: &str) -> String {
    let query = query.trim_end().trim_end_matches(';').trim_end();
    format!("COPY (\n{query}\n) TO STDOUT (FORMAT binary)")
}

/// Splits binary COPY data into rows as it arrives, in whatever pieces.
#[derive(Default)]
pub struct Rows {
    buffer: Vec<u8>,
    /// Where the next row starts in `buffer`.
    start: usize,
    header_read: bool,
    ended: bool,
}

/// Where each field of a row lies in [`Rows`]'s buffer; `None` for NULL.
pub type Fields = Vec<Option<std::ops::Range<usize>>>;

impl Rows {
    /// Takes the next piece of the data.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Reads the next whole row into `fields`; false when the rest of the
    /// row has not arrived yet, or at the end of the data.
    pub fn next(&mut self, fields: &mut Fields) -> Result<bool, String> {
        if !self.header_read && !self.read_header()? {
            return Ok(false);
        }
        let data = &self.buffer[self.start..];
        let Some(count) = data.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]])) else { return Ok(false) };
        if count == -1 {
            self.ended = true;
            self.start += 2;
            return Ok(false);
        }
        let mut at = 2;
        fields.clear();
        for _ in 0..count {
            let Some(length) = data.get(at..at + 4) else { return Ok(false) };
            let length = i32::from_be_bytes(length.try_into().expect("four bytes"));
            at += 4;
            if length < 0 {
                fields.push(None);
                continue;
            }
            let end = at + length as usize;
            if end > data.len() {
                return Ok(false);
            }
            fields.push(Some(self.start + at..self.start + end));
            at = end;
        }
        self.start += at;
        Ok(true)
    }

    /// Whether the trailer that ends the data was read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The bytes of a field [`Rows::next`] found.
    pub fn field(&self, range: &std::ops::Range<usize>) -> &[u8] {
        &self.buffer[range.clone()]
    }

    fn read_header(&mut self) -> Result<bool, String> {
        let fixed = SIGNATURE.len() + 8;
        let Some(header) = self.buffer.get(..fixed) else { return Ok(false) };
        if &header[..SIGNATURE.len()] != SIGNATURE {
            return Err("the source's COPY data has no binary signature".into());
        }
        let extension = u32::from_be_bytes(header[fixed - 4..].try_into().expect("four bytes")) as usize;
        if self.buffer.len() < fixed + extension {
            return Ok(false);
        }
        self.start = fixed + extension;
        self.header_read = true;
        Ok(true)
    }
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

/// A `timestamp` or `timestamptz` in binary form (a `timestamp` taken as UTC).
pub fn time(bytes: &[u8]) -> Result<DateTime<Utc>, String> {
    let micros = i64::from_be_bytes(array(bytes)?);
    if micros == i64::MAX || micros == i64::MIN {
        return Err("is infinity, which is no time a row changed or an event happened".into());
    }
    binary_copy::time_after_epoch(micros).ok_or_else(|| "is out of range".to_string())
}

fn date(bytes: &[u8]) -> Result<NaiveDate, String> {
    let days = i32::from_be_bytes(array(bytes)?);
    if days == i32::MAX || days == i32::MIN {
        return Err("is infinity, which is no date".into());
    }
    binary_copy::date_after_epoch(days).ok_or_else(|| "is out of range".to_string())
}

fn array<const N: usize>(bytes: &[u8]) -> Result<[u8; N], String> {
    bytes.try_into().map_err(|_| format!("has {} bytes where {N} were expected", bytes.len()))
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

    /// Binary COPY data: the header, then rows of fields (`None`: NULL), then the end mark.
    fn copy_data(rows: &[&[Option<&[u8]>]]) -> Vec<u8> {
        let mut data = SIGNATURE.to_vec();
        data.extend_from_slice(&0u32.to_be_bytes());
        data.extend_from_slice(&4u32.to_be_bytes());
        data.extend_from_slice(b"ext!");
        for row in rows {
            data.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for field in *row {
                match field {
                    Some(bytes) => {
                        data.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                        data.extend_from_slice(bytes);
                    }
                    None => data.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
        }
        data.extend_from_slice(&(-1i16).to_be_bytes());
        data
    }

    #[test]
    fn rows_are_found_whatever_pieces_the_data_arrives_in() {
        let data = copy_data(&[&[Some(b"a1"), None, Some(b"")], &[Some(b"b22"), Some(b"x"), None]]);
        for piece in [1, 3, 7, data.len()] {
            let mut rows = Rows::default();
            let (mut fields, mut found) = (Vec::new(), Vec::new());
            for bytes in data.chunks(piece) {
                rows.push(bytes);
                while rows.next(&mut fields).unwrap() {
                    let row: Vec<Option<Vec<u8>>> =
                        fields.iter().map(|f| f.as_ref().map(|range| rows.field(range).to_vec())).collect();
                    found.push(row);
                }
            }
            assert!(rows.ended(), "pieces of {piece}");
            let expected = vec![
                vec![Some(b"a1".to_vec()), None, Some(Vec::new())],
                vec![Some(b"b22".to_vec()), Some(b"x".to_vec()), None],
            ];
            assert_eq!(found, expected, "pieces of {piece}");
        }
    }

    #[test]
    fn data_without_the_binary_signature_is_refused() {
        let mut rows = Rows::default();
        rows.push(b"customer_id\temail\nC1\ta@example.com\n");
        assert!(rows.next(&mut Vec::new()).unwrap_err().contains("signature"));
    }

    #[test]
    fn the_copied_statement_keeps_a_final_comment_and_drops_a_final_semicolon() {
        assert_eq!(
            copy_statement("select 1 -- the end\n;  "),
            "COPY (\nselect 1 -- the end\n) TO STDOUT (FORMAT binary)"
        );
    }

    #[test]
    fn since_is_a_timestamptz_constant_with_microseconds() {
        let since = DateTime::from_timestamp_micros(1_772_357_400_000_250).unwrap();
        assert_eq!(since_literal(since), "'2026-03-01T09:30:00.000250Z'::timestamptz");
    }
}
