//! Rows read through `COPY (query) TO STDOUT (FORMAT binary)` on
//! PostgreSQL: they arrive as one stream of bytes, each value in the
//! server's binary form, and are split into rows here, instead of each row
//! becoming an sqlx row whose values are decoded and type-checked one by
//! one. The sql feed reads its sources this way, and
//! [`Txn::scan`](super::engine::Txn::scan) its large reads.

use chrono::{DateTime, NaiveDate, Utc};

use super::binary_copy::{self, SIGNATURE};

/// `query` as a binary COPY of its rows.
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

/// A `timestamp` or `timestamptz` in binary form (a `timestamp` taken as UTC).
pub fn time(bytes: &[u8]) -> Result<DateTime<Utc>, String> {
    let micros = i64::from_be_bytes(array(bytes)?);
    if micros == i64::MAX || micros == i64::MIN {
        return Err("is infinity, which is no time a row changed or an event happened".into());
    }
    binary_copy::time_after_epoch(micros).ok_or_else(|| "is out of range".to_string())
}

pub fn date(bytes: &[u8]) -> Result<NaiveDate, String> {
    let days = i32::from_be_bytes(array(bytes)?);
    if days == i32::MAX || days == i32::MIN {
        return Err("is infinity, which is no date".into());
    }
    binary_copy::date_after_epoch(days).ok_or_else(|| "is out of range".to_string())
}

pub fn array<const N: usize>(bytes: &[u8]) -> Result<[u8; N], String> {
    bytes.try_into().map_err(|_| format!("has {} bytes where {N} were expected", bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
