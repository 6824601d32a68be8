//! CSV import of customers, orders and interactions.
//!
//! A file is streamed (constant memory but for a 16-byte fingerprint per id,
//! to catch an id given twice) and written in batches inside one transaction.
//! By default any bad row rejects the whole file and the database is left
//! as it was; with `skip_invalid` the good rows land and the bad ones go to a
//! reject file with their reasons. Rows are upserted on their external id, so
//! importing a file twice changes nothing.

mod csv_file;
mod customer_refs;
mod customers;
pub mod fields;
mod interactions;
mod orders;
mod rejects;
mod upsert;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use csv::ByteRecord;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use xxhash_rust::xxh3::{Xxh3Builder, xxh3_128};

use csv_file::{Cells, ColumnSpec, Columns};
use rejects::Rejects;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Customers,
    Orders,
    Interactions,
}

/// How to import.
#[derive(Debug, Clone)]
pub struct Options {
    /// Import the good rows and write the bad ones to `rejects_path`.
    pub skip_invalid: bool,
    /// Where rejected rows go; default: the input path with `.rejects.csv` appended.
    pub rejects_path: Option<PathBuf>,
    pub batch_size: usize,
    pub max_reported_errors: usize,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub rows: u64,
    /// Rows that were new or differed from the database.
    pub written: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub rejects_file: Option<PathBuf>,
}

/// A problem with one row: where it is, which cell, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub column: Option<String>,
    pub value: Option<String>,
    pub reason: String,
}

impl RowError {
    fn new(line: u64, column: Option<&str>, value: Option<&str>, reason: String) -> Self {
        let value = value.map(|v| {
            if v.chars().count() > 60 { format!("{}…", v.chars().take(60).collect::<String>()) } else { v.to_owned() }
        });
        RowError { line, column: column.map(str::to_owned), value, reason }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(column) = &self.column {
            write!(f, ", column `{column}`")?;
        }
        if let Some(value) = &self.value {
            write!(f, ", value `{value}`")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Why an import did not happen. Every variant leaves the database unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file as a whole cannot be read: missing, empty, a bad header.
    #[error("{file}: {problem}")]
    File { file: String, problem: String },
    /// Some rows are bad and `skip_invalid` was not given.
    #[error("{}", invalid_rows_message(.file, .errors, .total))]
    InvalidRows { file: String, errors: Vec<RowError>, total: u64 },
    #[error("database error during import: {0}")]
    Database(#[from] DbErr),
}

impl ImportError {
    fn file(file: &str, problem: impl Into<String>) -> Self {
        ImportError::File { file: file.to_owned(), problem: problem.into() }
    }

    /// True when the input is at fault (exit code 2), false for a runtime failure.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, ImportError::Database(_))
    }
}

fn invalid_rows_message(file: &str, errors: &[RowError], total: &u64) -> String {
    let mut text = format!(
        "{file}: {total} problem(s) found; nothing was imported (fix them, or pass --skip-invalid to import the valid rows):"
    );
    for error in errors {
        text.push_str(&format!("\n  {file}: {error}"));
    }
    let more = total.saturating_sub(errors.len() as u64);
    if more > 0 {
        text.push_str(&format!("\n  ... and {more} more"));
    }
    text
}

/// A row that parsed, waiting in a batch; the raw record goes to the reject
/// file if a later check (an unknown customer) refuses it.
struct Pending<R> {
    line: u64,
    raw: ByteRecord,
    row: R,
}

/// One kind of import file: its columns, how a row parses and how a batch is written.
trait Table {
    type Row: Send + Sync;
    const SPEC: ColumnSpec;
    const ID_COLUMN: &'static str;

    fn parse(cells: &mut Cells<'_>, columns: &Columns) -> Option<Self::Row>;
    fn external_id(row: &Self::Row) -> &str;

    /// Fills in references to other tables; returns the rows that refer to nothing.
    async fn resolve(
        txn: &DatabaseTransaction,
        batch: &mut [Pending<Self::Row>],
    ) -> Result<Vec<(usize, RowError)>, DbErr>;

    /// Upserts the rows; returns how many were new or changed.
    async fn write(
        txn: &DatabaseTransaction,
        rows: &[&Self::Row],
        columns: &Columns,
        now: DateTime<Utc>,
    ) -> Result<u64, DbErr>;
}

/// Imports one file of `kind` into `db`.
pub async fn import(db: &DatabaseConnection, kind: Kind, path: &Path, options: &Options) -> Result<Report, ImportError> {
    match kind {
        Kind::Customers => run::<customers::Customers>(db, path, options).await,
        Kind::Orders => run::<orders::Orders>(db, path, options).await,
        Kind::Interactions => run::<interactions::Interactions>(db, path, options).await,
    }
}

/// The state of one import while it streams.
struct Run<R> {
    file: String,
    options: Options,
    now: DateTime<Utc>,
    batch: Vec<Pending<R>>,
    seen_ids: HashSet<u128, Xxh3Builder>,
    errors: Vec<RowError>,
    error_total: u64,
    rejects: Rejects,
    report: Report,
}

async fn run<T: Table>(db: &DatabaseConnection, path: &Path, options: &Options) -> Result<Report, ImportError> {
    let file = path.display().to_string();
    let mut reader = csv_file::open(path, &file)?;
    let columns = Columns::read(&mut reader, &T::SPEC, &file)?;
    let rejects_path = options.rejects_path.clone().unwrap_or_else(|| default_rejects_path(path));
    let mut run = Run::<T::Row> {
        file: file.clone(),
        options: options.clone(),
        now: Utc::now(),
        batch: Vec::with_capacity(options.batch_size),
        seen_ids: HashSet::with_hasher(Xxh3Builder::new()),
        errors: Vec::new(),
        error_total: 0,
        rejects: Rejects::new(rejects_path, columns.names()),
        report: Report { rows: 0, written: 0, unchanged: 0, rejected: 0, rejects_file: None },
    };
    let txn = db.begin().await?;
    let mut record = ByteRecord::new();
    loop {
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| ImportError::file(&file, format!("cannot read: {e}")))?;
        if !more {
            break;
        }
        run.report.rows += 1;
        let line = record.position().map_or(run.report.rows + 1, |p| p.line());
        run.take::<T>(&record, &columns, line)?;
        if run.batch.len() >= options.batch_size {
            run.flush::<T>(&txn, &columns).await?;
        }
    }
    run.flush::<T>(&txn, &columns).await?;
    run.finish(txn).await
}

fn default_rejects_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".rejects.csv");
    PathBuf::from(name)
}

impl<R: Send + Sync> Run<R> {
    /// Parses one record into the batch, or records why it cannot be imported.
    fn take<T: Table<Row = R>>(&mut self, record: &ByteRecord, columns: &Columns, line: u64) -> Result<(), ImportError> {
        let mut cells = match Cells::decode(record, columns, line) {
            Ok(cells) => cells,
            Err(error) => return self.refuse(record, vec![error]),
        };
        let parsed = T::parse(&mut cells, columns);
        let errors = std::mem::take(&mut cells.errors);
        match parsed {
            Some(row) if errors.is_empty() => {
                let id = T::external_id(&row);
                if !self.seen_ids.insert(xxh3_128(id.as_bytes())) {
                    let error = RowError::new(
                        line,
                        Some(T::ID_COLUMN),
                        Some(id),
                        "this id appears more than once in the file".into(),
                    );
                    return self.refuse(record, vec![error]);
                }
                self.batch.push(Pending { line, raw: record.clone(), row });
                Ok(())
            }
            _ => self.refuse(record, errors),
        }
    }

    /// Records a refused row: listed in the error report, and written to the reject file.
    fn refuse(&mut self, record: &ByteRecord, errors: Vec<RowError>) -> Result<(), ImportError> {
        self.report.rejected += 1;
        if self.options.skip_invalid {
            self.rejects
                .write(record, &errors)
                .map_err(|e| ImportError::file(&self.file, format!("cannot write the reject file: {e}")))?;
        }
        for error in errors {
            self.error_total += 1;
            if self.errors.len() < self.options.max_reported_errors {
                self.errors.push(error);
            }
        }
        Ok(())
    }

    /// Whether rows are still written: always with `skip_invalid`, else only while all rows were good.
    fn writing(&self) -> bool {
        self.options.skip_invalid || self.error_total == 0
    }

    async fn flush<T: Table<Row = R>>(&mut self, txn: &DatabaseTransaction, columns: &Columns) -> Result<(), ImportError> {
        let mut batch = std::mem::take(&mut self.batch);
        let unresolved = T::resolve(txn, &mut batch).await?;
        let mut refused = vec![false; batch.len()];
        for (index, error) in unresolved {
            refused[index] = true;
            let raw = batch[index].raw.clone();
            self.refuse(&raw, vec![error])?;
        }
        if self.writing() {
            let rows: Vec<&R> =
                batch.iter().zip(&refused).filter(|(_, refused)| !**refused).map(|(p, _)| &p.row).collect();
            let written = T::write(txn, &rows, columns, self.now).await?;
            self.report.written += written;
            self.report.unchanged += rows.len() as u64 - written;
        }
        batch.clear();
        self.batch = batch;
        Ok(())
    }

    async fn finish(mut self, txn: DatabaseTransaction) -> Result<Report, ImportError> {
        if !self.writing() {
            txn.rollback().await?;
            return Err(ImportError::InvalidRows { file: self.file, errors: self.errors, total: self.error_total });
        }
        self.report.rejects_file = self
            .rejects
            .finish()
            .map_err(|e| ImportError::file(&self.file, format!("cannot write the reject file: {e}")))?;
        txn.commit().await?;
        Ok(self.report)
    }
}
