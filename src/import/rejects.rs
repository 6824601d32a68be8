//! The reject file of `--skip-invalid`: each refused row as it was read, after
//! its line number and the reasons, so that it can be fixed and imported again.

use std::fs::File;
use std::path::PathBuf;

use csv::{ByteRecord, Writer};

use super::RowError;

/// Created on the first refused row, so that a clean import leaves no file behind.
pub struct Rejects {
    path: PathBuf,
    header: Vec<String>,
    writer: Option<Writer<File>>,
}

impl Rejects {
    pub fn new(path: PathBuf, columns: &[String]) -> Self {
        let mut header = vec!["line".to_owned(), "problem".to_owned()];
        header.extend(columns.iter().cloned());
        Rejects { path, header, writer: None }
    }

    pub fn write(&mut self, record: &ByteRecord, errors: &[RowError]) -> std::io::Result<()> {
        if self.writer.is_none() {
            // Flexible: a refused row may have more or fewer fields than the header.
            let mut writer = csv::WriterBuilder::new().flexible(true).from_path(&self.path)?;
            writer.write_record(&self.header)?;
            self.writer = Some(writer);
        }
        let writer = self.writer.as_mut().expect("created above");
        let line = errors.first().map_or(0, |e| e.line).to_string();
        let problem = errors.iter().map(describe).collect::<Vec<_>>().join("; ");
        let mut row = ByteRecord::new();
        row.push_field(line.as_bytes());
        row.push_field(problem.as_bytes());
        for field in record {
            row.push_field(field);
        }
        writer.write_byte_record(&row)?;
        Ok(())
    }

    /// Flushes the file; returns its path when any row was refused.
    pub fn finish(&mut self) -> std::io::Result<Option<PathBuf>> {
        match self.writer.as_mut() {
            Some(writer) => {
                writer.flush()?;
                Ok(Some(self.path.clone()))
            }
            None => Ok(None),
        }
    }
}

fn describe(error: &RowError) -> String {
    match &error.column {
        Some(column) => format!("{column}: {}", error.reason),
        None => error.reason.clone(),
    }
}
