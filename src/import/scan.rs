//! A watch over the bytes of an import file as the csv reader pulls them, for
//! what the csv crate does not give: true line numbers (it counts a CRLF
//! line break at the start of the next record, so every line in a file from
//! Excel came out one too low: rust-csv issue 395), a limit on the size of a
//! record (`/dev/zero` would otherwise fill memory), and damaged quoting that
//! it reads leniently: a quote never closed takes in every line after it as
//! one cell, and text right after a closing quote means a quote inside a
//! quoted cell that was not doubled, which also takes in the lines between.
//!
//! The scanner follows RFC 4180 with the csv crate's defaults (`,`, `"`,
//! doubled quotes, CR, LF or CRLF line breaks). It only watches: the csv
//! reader still parses, and a record is matched to what was seen here by its
//! byte offset, so that the two can never drift apart by a record.

use std::collections::VecDeque;
use std::io::{self, Read};

/// The most bytes one record (a line, or several when a quoted cell holds
/// line breaks) may have. Real rows are a few hundred bytes; the longest
/// cell allowed (a 10,000-character note) fits many times over.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;

/// Damaged quoting found in a record: where its quote opened and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteFault {
    /// The byte offset of the quote that opened the cell.
    offset: u64,
    /// The line of that quote.
    pub opened_line: u64,
    pub problem: QuoteProblem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuoteProblem {
    /// The file ended inside the quoted cell.
    NeverClosed,
    /// The quoted cell closed and text followed, on `line`.
    TextAfterClosingQuote { line: u64 },
}

impl QuoteFault {
    /// The reason, phrased for the person fixing the file.
    pub fn reason(&self) -> String {
        match self.problem {
            QuoteProblem::NeverClosed => format!(
                "the quote opened on line {} is never closed, so every line after it would be read as part of \
                 one cell; close the quote, or double a quote meant inside the cell (\"\")",
                self.opened_line
            ),
            QuoteProblem::TextAfterClosingQuote { line } => format!(
                "text follows the quote that closes the cell opened on line {} (on line {line}), so the lines \
                 between would be read as part of one cell; double a quote meant inside a cell (\"\")",
                self.opened_line
            ),
        }
    }
}

/// Where the scanner is inside the CSV grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a cell (and of a record).
    CellStart,
    Unquoted,
    /// Inside a quoted cell opened at this offset and line.
    Quoted {
        offset: u64,
        line: u64,
    },
    /// Just after a quote inside a quoted cell: a doubled quote or the close.
    QuoteInQuoted {
        offset: u64,
        line: u64,
    },
}

/// Wraps the file given to the csv reader and watches every byte it reads.
pub struct Scanned<R> {
    inner: R,
    scanner: Scanner,
}

impl<R: Read> Scanned<R> {
    pub fn new(inner: R) -> Self {
        Scanned { inner, scanner: Scanner::default() }
    }

    /// The line of the record whose csv position is byte `start`.
    pub fn line_of_record(&mut self, start: u64) -> u64 {
        self.scanner.line_of_record(start)
    }

    /// The damaged quoting seen in the record that ends before byte `end`, if any.
    pub fn quote_fault_before(&mut self, end: u64) -> Option<QuoteFault> {
        self.scanner.fault_before(end)
    }
}

impl<R: Read> Read for Scanned<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        if read == 0 {
            self.scanner.end_of_file();
        }
        for &byte in &buf[..read] {
            self.scanner.byte(byte)?;
        }
        Ok(read)
    }
}

#[derive(Debug)]
struct Scanner {
    /// Bytes seen so far.
    offset: u64,
    /// The line the scanner is on, counting CR, LF and CRLF as one break each.
    line: u64,
    previous: u8,
    state: State,
    /// Where the record being scanned started.
    record_start: u64,
    record_line: u64,
    /// Line breaks seen but not yet passed by a record: (offset, byte).
    breaks: VecDeque<(u64, u8)>,
    /// The line at the last offset a record was placed at, and that offset.
    placed_line: u64,
    placed_offset: u64,
    placed_previous: Option<(u64, u8)>,
    faults: VecDeque<QuoteFault>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            offset: 0,
            line: 1,
            previous: 0,
            state: State::CellStart,
            record_start: 0,
            record_line: 1,
            breaks: VecDeque::new(),
            placed_line: 1,
            placed_offset: 0,
            placed_previous: None,
            faults: VecDeque::new(),
        }
    }
}

impl Scanner {
    fn byte(&mut self, byte: u8) -> io::Result<()> {
        let offset = self.offset;
        self.offset += 1;
        let line_break = byte == b'\n' || byte == b'\r';
        if line_break {
            self.breaks.push_back((offset, byte));
            // CR, LF and CRLF are one line break each.
            if !(byte == b'\n' && self.previous == b'\r') {
                self.line += 1;
            }
        }
        self.state = match self.state {
            State::CellStart if byte == b'"' => State::Quoted { offset, line: self.line },
            State::CellStart | State::Unquoted => match byte {
                b',' => State::CellStart,
                b'\r' | b'\n' => self.end_record(),
                _ => State::Unquoted,
            },
            State::Quoted { offset, line } if byte == b'"' => State::QuoteInQuoted { offset, line },
            quoted @ State::Quoted { .. } => quoted,
            State::QuoteInQuoted { offset, line } => match byte {
                b'"' => State::Quoted { offset, line },
                b',' => State::CellStart,
                b'\r' | b'\n' => self.end_record(),
                _ => {
                    let problem = QuoteProblem::TextAfterClosingQuote { line: self.line };
                    self.faults.push_back(QuoteFault { offset, opened_line: line, problem });
                    State::Unquoted
                }
            },
        };
        self.previous = byte;
        self.check_record_size()
    }

    fn end_record(&mut self) -> State {
        self.record_start = self.offset;
        self.record_line = self.line;
        State::CellStart
    }

    fn check_record_size(&self) -> io::Result<()> {
        if self.offset - self.record_start <= MAX_RECORD_BYTES {
            return Ok(());
        }
        let why = match self.state {
            State::Quoted { line, .. } | State::QuoteInQuoted { line, .. } => format!(
                "the quote opened on line {line} is still open there: close it, or double a quote meant inside \
                 the cell (\"\")"
            ),
            _ => "is this a CSV file?".to_owned(),
        };
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("line {}: the record is longer than {} MiB; {why}", self.record_line, MAX_RECORD_BYTES >> 20),
        ))
    }

    fn end_of_file(&mut self) {
        if let State::Quoted { offset, line } = self.state {
            self.faults.push_back(QuoteFault { offset, opened_line: line, problem: QuoteProblem::NeverClosed });
            // Reported once, even if the reader asks again.
            self.state = State::Unquoted;
        }
    }

    /// The line of the first byte at or after `start` that is not a line
    /// break: the csv reader puts a record's start before the breaks that it
    /// skips (the LF of a CRLF, blank lines).
    fn line_of_record(&mut self, start: u64) -> u64 {
        let mut first = start.max(self.placed_offset);
        while let Some(&(offset, byte)) = self.breaks.front() {
            if offset > first {
                break;
            }
            if offset == first {
                first += 1;
            }
            let after_cr = self.placed_previous == Some((offset.wrapping_sub(1), b'\r'));
            if !(byte == b'\n' && after_cr) {
                self.placed_line += 1;
            }
            self.placed_previous = Some((offset, byte));
            self.breaks.pop_front();
        }
        self.placed_offset = first;
        self.placed_line
    }

    fn fault_before(&mut self, end: u64) -> Option<QuoteFault> {
        let mut found = None;
        while self.faults.front().is_some_and(|f| f.offset < end) {
            let fault = self.faults.pop_front();
            found = found.or(fault);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use csv::{ByteRecord, ReaderBuilder};

    /// Each record's line and quote fault, as the import reads them.
    fn read(text: &[u8]) -> io::Result<Vec<(String, u64, Option<QuoteFault>)>> {
        let mut reader = ReaderBuilder::new().has_headers(false).flexible(true).from_reader(Scanned::new(text));
        let mut record = ByteRecord::new();
        let mut out = Vec::new();
        while reader.read_byte_record(&mut record).map_err(io::Error::other)? {
            let start = record.position().expect("records have positions").byte();
            let end = reader.position().byte();
            let line = reader.get_mut().line_of_record(start);
            let fault = reader.get_mut().quote_fault_before(end);
            out.push((String::from_utf8_lossy(&record[0]).into_owned(), line, fault));
        }
        Ok(out)
    }

    fn lines(text: &[u8]) -> Vec<(String, u64)> {
        read(text).unwrap().into_iter().map(|(first, line, _)| (first, line)).collect()
    }

    #[test]
    fn lines_are_the_same_with_lf_crlf_and_cr_breaks() {
        let expected = vec![("h".to_owned(), 1), ("a".to_owned(), 2), ("b".to_owned(), 3)];
        assert_eq!(lines(b"h,x\na,1\nb,2\n"), expected);
        assert_eq!(lines(b"h,x\r\na,1\r\nb,2\r\n"), expected);
        assert_eq!(lines(b"h,x\ra,1\rb,2"), expected);
    }

    #[test]
    fn blank_lines_and_quoted_line_breaks_count() {
        let expected = vec![("h".to_owned(), 1), ("a".to_owned(), 4), ("b".to_owned(), 6)];
        assert_eq!(lines(b"h,x\n\n\na,\"one\ntwo\"\nb,2\n"), expected);
        assert_eq!(lines(b"h,x\r\n\r\n\r\na,\"one\r\ntwo\"\r\nb,2\r\n"), expected);
    }

    #[test]
    fn a_quote_never_closed_is_a_fault_of_the_record_it_opens() {
        let records = read(b"h,note\na,\"fine\"\nb,\"oops\nc,1\nd,2\n").unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].2, None);
        let fault = records[2].2.clone().expect("the open quote is a fault");
        assert_eq!((records[2].0.as_str(), records[2].1), ("b", 3));
        assert_eq!(fault.opened_line, 3);
        assert_eq!(fault.problem, QuoteProblem::NeverClosed);
    }

    #[test]
    fn text_after_a_closing_quote_is_a_fault_naming_both_lines() {
        let records = read(b"h,note\nb,\"oops\nc,\"x\"\nd,2\n").unwrap();
        assert_eq!(records.len(), 3, "c's line is taken into b's note: {records:?}");
        let fault = records[1].2.clone().expect("a fault");
        assert_eq!(fault.problem, QuoteProblem::TextAfterClosingQuote { line: 3 });
        assert!(fault.reason().contains("opened on line 2 (on line 3)"), "{}", fault.reason());
        assert_eq!(records[2].2, None);
    }

    #[test]
    fn doubled_quotes_and_quotes_inside_unquoted_cells_are_no_fault() {
        let records = read(b"h,note\na,\"say \"\"hi\"\"\"\nb,5\" screen\n").unwrap();
        assert!(records.iter().all(|r| r.2.is_none()), "{records:?}");
    }

    #[test]
    fn a_record_longer_than_the_limit_is_an_error_naming_its_line() {
        let mut text = b"h,x\na,1\nb,".to_vec();
        text.extend(std::iter::repeat_n(b'z', MAX_RECORD_BYTES as usize));
        let error = read(&text).unwrap_err().to_string();
        assert!(error.contains("line 3: the record is longer than 1 MiB"), "{error}");
        let zeros = io::repeat(0).take(8 * MAX_RECORD_BYTES);
        let mut reader = ReaderBuilder::new().has_headers(false).from_reader(Scanned::new(zeros));
        let error = reader.read_byte_record(&mut ByteRecord::new()).unwrap_err().to_string();
        assert!(error.contains("line 1: the record is longer than 1 MiB"), "{error}");
    }
}
