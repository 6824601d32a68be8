//! The reading half of an import, on a thread of its own so that parsing the
//! next rows overlaps with writing the last batch: it streams the records,
//! parses each and hands over chunks of rows in their order.

use std::collections::HashSet;
use std::sync::Arc;

use csv::ByteRecord;
use tokio::sync::mpsc::Sender;
use xxhash_rust::xxh3::{Xxh3Builder, xxh3_128};

use super::csv_file::{Cells, Columns};
use super::customer_refs::Known;
use super::records::Records;
use super::{ImportError, Pending, RowError, Table};

/// A record as the reader saw it: a row to write, or refused with its reasons.
pub enum Parsed<R> {
    Row(Pending<R>),
    Refused(ByteRecord, Vec<RowError>),
}

/// Records in the order read, and the customers their rows refer to when
/// those were looked up ahead (`customer_refs::look_ahead`).
pub struct Chunk<R> {
    pub records: Vec<Parsed<R>>,
    pub customers: Option<Known>,
}

impl<R> Chunk<R> {
    fn new(records: Vec<Parsed<R>>) -> Self {
        Chunk { records, customers: None }
    }
}

/// Reads every record, sending chunks of at most `batch_size` rows; returns
/// the number of records read. Stops early when the writer has gone away.
pub fn read_all<T: Table>(
    mut records: Records,
    columns: Arc<Columns>,
    file: String,
    batch_size: usize,
    chunks: Sender<Chunk<T::Row>>,
) -> Result<u64, ImportError> {
    let mut seen_ids = SeenIds::new();
    let mut chunk = Vec::with_capacity(batch_size);
    let mut rows_in_chunk = 0;
    let mut record = ByteRecord::new();
    let mut count = 0u64;
    while let Some(read) =
        records.next(&mut record).map_err(|e| ImportError::file(&file, format!("cannot read: {e}")))?
    {
        count += 1;
        let parsed = match read.quote_fault {
            Some(fault) => Parsed::Refused(record.clone(), vec![RowError::new(read.line, None, None, fault)]),
            None => parse::<T>(&mut record, &records, &columns, read.line, &mut seen_ids),
        };
        rows_in_chunk += usize::from(matches!(parsed, Parsed::Row(_)));
        chunk.push(parsed);
        if rows_in_chunk >= batch_size {
            if chunks.blocking_send(Chunk::new(std::mem::take(&mut chunk))).is_err() {
                return Ok(count);
            }
            rows_in_chunk = 0;
        }
    }
    if !chunk.is_empty() {
        let _ = chunks.blocking_send(Chunk::new(chunk));
    }
    Ok(count)
}

/// The ids read so far, as 16-byte fingerprints: an id given twice is
/// found without keeping the ids. They are spread over 256 sets by their
/// first byte, so that a set that grows copies only its own share: one set
/// would briefly hold its old and its new table, one and a half times the
/// memory of every id read, when it grows in a file of millions of rows.
struct SeenIds(Vec<HashSet<u128, Xxh3Builder>>);

impl SeenIds {
    fn new() -> Self {
        SeenIds((0..256).map(|_| HashSet::with_hasher(Xxh3Builder::new())).collect())
    }

    /// True the first time `id` is seen.
    fn insert(&mut self, id: &str) -> bool {
        let fingerprint = xxh3_128(id.as_bytes());
        self.0[(fingerprint >> 120) as usize].insert(fingerprint)
    }
}

fn parse<T: Table>(
    record: &mut ByteRecord,
    records: &Records,
    columns: &Columns,
    line: u64,
    seen_ids: &mut SeenIds,
) -> Parsed<T::Row> {
    let mut cells = match Cells::decode(record, columns, line) {
        Ok(cells) => cells,
        Err(error) => return Parsed::Refused(record.clone(), vec![error]),
    };
    let parsed = T::parse(&mut cells, columns);
    let errors = std::mem::take(&mut cells.errors);
    match parsed {
        Some(row) if errors.is_empty() => {
            let id = T::external_id(&row);
            if seen_ids.insert(id) {
                Parsed::Row(Pending { line, raw: records.keep(record), row })
            } else {
                let error = RowError::new(
                    line,
                    Some(T::ID_COLUMN),
                    Some(id),
                    "this id appears more than once in the file".into(),
                );
                Parsed::Refused(record.clone(), vec![error])
            }
        }
        _ => Parsed::Refused(record.clone(), errors),
    }
}

#[cfg(test)]
mod tests {
    use super::SeenIds;

    #[test]
    fn every_id_is_new_once_and_seen_after_whichever_set_it_falls_in() {
        let mut seen = SeenIds::new();
        let ids: Vec<String> = (0..20_000).map(|i| format!("C{i}")).collect();
        assert!(ids.iter().all(|id| seen.insert(id)), "a first sighting counted as a repeat");
        assert!(ids.iter().all(|id| !seen.insert(id)), "a repeat counted as new");
        assert!(seen.0.iter().all(|set| !set.is_empty()), "20,000 ids fill every one of the 256 sets");
        assert_eq!(seen.0.iter().map(|set| set.len()).sum::<usize>(), 20_000);
    }
}
