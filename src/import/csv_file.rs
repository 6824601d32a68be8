//! The shape of an import file: opening it, checking its header against the
//! columns a table expects, and turning each record into trimmed UTF-8 cells.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

use csv::{ByteRecord, Reader, ReaderBuilder};

use super::records::Records;
use super::scan::Scanned;
use super::{ImportError, RowError};

/// The csv reader of an import file, with the scanner watching its bytes.
pub type FileReader = Reader<Scanned<Box<dyn Read + Send>>>;

/// The columns a table reads: those that must be there and those that may.
pub struct ColumnSpec {
    pub required: &'static [&'static str],
    pub optional: &'static [&'static str],
    /// Whether columns outside both lists are kept (as customer attributes) or refused.
    pub keeps_extra: bool,
}

/// The header of one file, lower-cased and trimmed.
pub struct Columns {
    names: Vec<String>,
}

impl Columns {
    /// Reads and checks the header line, the first record.
    pub fn read(records: &mut Records, spec: &ColumnSpec, file: &str) -> Result<Self, ImportError> {
        let mut header = ByteRecord::new();
        let read = records
            .next(&mut header)
            .map_err(|e| ImportError::file(file, format!("cannot read the header line: {e}")))?
            .ok_or_else(|| ImportError::file(file, "the file is empty; expected a header line and rows"))?;
        if let Some(fault) = read.quote_fault {
            return Err(ImportError::file(file, format!("the header line: {fault}")));
        }
        let mut names = Vec::with_capacity(header.len());
        for (i, raw) in header.iter().enumerate() {
            let text = std::str::from_utf8(raw)
                .map_err(|_| ImportError::file(file, format!("line 1: header column {} is not valid UTF-8", i + 1)))?;
            names.push(text.trim_start_matches('\u{feff}').trim().to_ascii_lowercase());
        }
        let columns = Columns { names };
        columns.check(spec, file)?;
        Ok(columns)
    }

    fn check(&self, spec: &ColumnSpec, file: &str) -> Result<(), ImportError> {
        if self.names.len() > MAX_COLUMNS {
            return Err(ImportError::file(
                file,
                format!("line 1: the header has {} columns, more than the {MAX_COLUMNS} allowed", self.names.len()),
            ));
        }
        let missing: Vec<&str> = spec.required.iter().copied().filter(|c| !self.has(c)).collect();
        if !missing.is_empty() {
            return Err(ImportError::file(
                file,
                format!(
                    "line 1: missing required column(s) {}; the header must name {}",
                    quoted(&missing),
                    quoted(spec.required)
                ),
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(self.names.len());
        for (i, name) in self.names.iter().enumerate() {
            if name.is_empty() {
                return Err(ImportError::file(file, format!("line 1: header column {} has no name", i + 1)));
            }
            if !seen.insert(name) {
                return Err(ImportError::file(file, format!("line 1: column `{name}` appears twice in the header")));
            }
            let known = spec.required.contains(&name.as_str()) || spec.optional.contains(&name.as_str());
            if !known && !spec.keeps_extra {
                let allowed: Vec<&str> = spec.required.iter().chain(spec.optional).copied().collect();
                return Err(ImportError::file(
                    file,
                    format!("line 1: unknown column `{name}`; the columns are {}", quoted(&allowed)),
                ));
            }
        }
        Ok(())
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn name(&self, index: usize) -> &str {
        &self.names[index]
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The columns outside `spec`: the custom attributes.
    pub fn extras<'a>(&'a self, spec: &'a ColumnSpec) -> impl Iterator<Item = &'a str> + 'a {
        self.names.iter().map(String::as_str).filter(move |n| !spec.required.contains(n) && !spec.optional.contains(n))
    }

    /// The header as written to a reject file, after the line and reason columns.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The most columns a header may have (the known ones plus custom attributes).
pub const MAX_COLUMNS: usize = 1000;

/// Opens `path` for streaming; a missing file gets its own message.
pub fn open(path: &Path, file: &str) -> Result<File, ImportError> {
    File::open(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => ImportError::file(file, "no such file"),
        _ => ImportError::file(file, format!("cannot open: {e}")),
    })
}

/// The csv reader over `input`, read in large chunks.
pub fn reader(input: Box<dyn Read + Send>) -> FileReader {
    ReaderBuilder::new().has_headers(false).flexible(true).buffer_capacity(1 << 16).from_reader(Scanned::new(input))
}

/// The cells of one record, trimmed, checked for UTF-8 and for their count.
pub struct Cells<'a> {
    pub line: u64,
    columns: &'a Columns,
    values: Vec<&'a str>,
    pub errors: Vec<RowError>,
}

impl<'a> Cells<'a> {
    pub fn decode(record: &'a ByteRecord, columns: &'a Columns, line: u64) -> Result<Self, RowError> {
        if record.len() != columns.len() {
            return Err(RowError::new(
                line,
                None,
                None,
                format!("expected {} fields as in the header, found {}", columns.len(), record.len()),
            ));
        }
        let mut values = Vec::with_capacity(record.len());
        for (i, raw) in record.iter().enumerate() {
            let text = std::str::from_utf8(raw).map_err(|_| {
                RowError::new(line, Some(columns.name(i)), None, "not valid UTF-8 text; save the file as UTF-8".into())
            })?;
            if text.contains('\0') {
                // PostgreSQL refuses NUL in text; the file is at fault, so say where.
                return Err(RowError::new(line, Some(columns.name(i)), None, "contains a NUL byte".into()));
            }
            values.push(text.trim());
        }
        Ok(Cells { line, columns, values, errors: Vec::new() })
    }

    /// The trimmed cell of `column`, or `None` when the column is absent or the cell empty.
    pub fn get(&self, column: &str) -> Option<&'a str> {
        self.columns.index_of(column).map(|i| self.values[i]).filter(|v| !v.is_empty())
    }

    /// Parses a cell that must be present; records the problem and returns `None` otherwise.
    pub fn required<T>(&mut self, column: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        match self.get(column) {
            None => {
                self.errors.push(RowError::new(self.line, Some(column), None, "must not be empty".into()));
                None
            }
            Some(text) => self.parsed(column, text, parse),
        }
    }

    /// Parses a cell that may be empty.
    pub fn optional<T>(&mut self, column: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let text = self.get(column)?;
        self.parsed(column, text, parse)
    }

    fn parsed<T>(&mut self, column: &str, text: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        match parse(text) {
            Ok(value) => Some(value),
            Err(reason) => {
                self.errors.push(RowError::new(self.line, Some(column), Some(text), reason));
                None
            }
        }
    }

    /// Records a problem that involves more than one cell.
    pub fn problem(&mut self, column: &str, reason: impl Into<String>) {
        self.errors.push(RowError::new(self.line, Some(column), None, reason.into()));
    }
}
