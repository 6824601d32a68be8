//! The records an import reads, one at a time with its line: parsed from
//! CSV text (a file), or handed over already split into cells, a batch at a
//! time, by a sql feed that decoded them from its query's rows, so that they
//! are never written as CSV text only to be parsed again. Either way the
//! first record is the header, and every record then goes through the same
//! checks.

use csv::ByteRecord;
use tokio::sync::mpsc;

use super::csv_file::FileReader;

/// Where an import's records come from.
pub enum Records {
    Csv(Box<FileReader>),
    Handed(Receiver),
}

/// A record read: its line, and what is wrong with its quoting, if anything.
pub struct Read {
    /// The line it starts on in a file; for handed records, the row's number
    /// (the header being row 0).
    pub line: u64,
    pub quote_fault: Option<String>,
}

impl Records {
    /// Reads the next record into `record`; `None` at the end. An error is
    /// the input's, in a few words: it cannot be read, or the feed failed.
    pub fn next(&mut self, record: &mut ByteRecord) -> Result<Option<Read>, String> {
        match self {
            Records::Csv(reader) => {
                if !reader.read_byte_record(record).map_err(|e| e.to_string())? {
                    return Ok(None);
                }
                let start = record.position().map_or(0, |p| p.byte());
                let end = reader.position().byte();
                let scanned = reader.get_mut();
                let line = scanned.line_of_record(start);
                Ok(Some(Read { line, quote_fault: scanned.quote_fault_before(end).map(|fault| fault.reason()) }))
            }
            Records::Handed(receiver) => Ok(receiver.next()?.map(|handed| {
                *record = handed;
                // The header is row 0, the first row of data row 1.
                Read { line: receiver.received - 1, quote_fault: None }
            })),
        }
    }

    /// Takes `record` to keep with its row, leaving in its place a record
    /// ready for the next read: for a file, one with room for a record of
    /// its size (grown from nothing, its buffers would be reallocated
    /// several times a row); handed records replace it whole.
    pub fn keep(&self, record: &mut ByteRecord) -> ByteRecord {
        let next = match self {
            Records::Csv(_) => ByteRecord::with_capacity(record.as_slice().len(), record.len()),
            Records::Handed(_) => ByteRecord::new(),
        };
        std::mem::replace(record, next)
    }
}

/// Batches in flight: the sender waits when the import is this far behind.
const BATCHES_IN_FLIGHT: usize = 2;

type Message = Result<Vec<ByteRecord>, String>;

/// The sending end of handed records, on the async side: records are pushed
/// into a batch, and [`Sender::send`] sends it on.
pub struct Sender {
    sender: mpsc::Sender<Message>,
    batch: Vec<ByteRecord>,
}

/// The receiving end, on the import's reading thread: every record, in
/// order, then the end, or the error the sender failed with.
pub struct Receiver {
    receiver: mpsc::Receiver<Message>,
    batch: std::vec::IntoIter<ByteRecord>,
    /// Records received so far, the header included.
    received: u64,
}

/// The import stopped reading (its own error says why).
#[derive(Debug)]
pub struct ReceiverGone;

/// A bounded channel of records, header first.
pub fn channel() -> (Sender, Receiver) {
    let (sender, receiver) = mpsc::channel(BATCHES_IN_FLIGHT);
    (Sender { sender, batch: Vec::new() }, Receiver { receiver, batch: Vec::new().into_iter(), received: 0 })
}

impl Sender {
    /// Adds a record to the batch not sent yet.
    pub fn push(&mut self, record: ByteRecord) {
        self.batch.push(record);
    }

    /// Sends the batch on, waiting while the import is behind.
    pub async fn send(&mut self) -> Result<(), ReceiverGone> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let capacity = self.batch.capacity();
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(capacity));
        self.sender.send(Ok(batch)).await.map_err(|_| ReceiverGone)
    }

    /// Makes the import fail with `error` instead of reaching the end.
    pub async fn fail(self, error: String) {
        // An import that is gone needs no telling.
        let _ = self.sender.send(Err(error)).await;
    }
}

impl Receiver {
    /// The next record, waiting for the sender; `None` at the end.
    fn next(&mut self) -> Result<Option<ByteRecord>, String> {
        loop {
            if let Some(record) = self.batch.next() {
                self.received += 1;
                return Ok(Some(record));
            }
            match self.receiver.blocking_recv() {
                Some(batch) => self.batch = batch?.into_iter(),
                None => return Ok(None),
            }
        }
    }
}
