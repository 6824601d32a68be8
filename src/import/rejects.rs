//! The reject file of `--skip-invalid`: each refused row as it was read, after
//! its line number and the reasons, so that it can be fixed and imported again.
//! It is written under a temporary name in the same folder and renamed at the
//! end, so that an existing file of that name is replaced only by a whole one.

use std::fs::File;
use std::path::{Path, PathBuf};

use csv::{ByteRecord, Writer};

use super::RowError;

/// Created on the first refused row, so that a clean import leaves no file behind.
pub struct Rejects {
    path: PathBuf,
    header: Vec<String>,
    /// The file being written and its temporary path.
    writer: Option<(Writer<File>, PathBuf)>,
}

impl Rejects {
    pub fn new(path: PathBuf, columns: &[String]) -> Self {
        let mut header = vec!["line".to_owned(), "problem".to_owned()];
        header.extend(columns.iter().cloned());
        Rejects { path, header, writer: None }
    }

    pub fn write(&mut self, record: &ByteRecord, errors: &[RowError]) -> std::io::Result<()> {
        if self.writer.is_none() {
            let temporary = temporary_path(&self.path);
            // Flexible: a refused row may have more or fewer fields than the header.
            let mut writer = csv::WriterBuilder::new().flexible(true).from_path(&temporary)?;
            writer.write_record(&self.header)?;
            self.writer = Some((writer, temporary));
        }
        let (writer, _) = self.writer.as_mut().expect("created above");
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

    /// Flushes the file and gives it its name; returns its path when any row was refused.
    pub fn finish(&mut self) -> std::io::Result<Option<PathBuf>> {
        match self.writer.take() {
            Some((mut writer, temporary)) => {
                let renamed = writer.flush().and_then(|()| {
                    drop(writer);
                    std::fs::rename(&temporary, &self.path)
                });
                if let Err(e) = renamed {
                    let _ = std::fs::remove_file(&temporary);
                    return Err(e);
                }
                Ok(Some(self.path.clone()))
            }
            None => Ok(None),
        }
    }
}

impl Drop for Rejects {
    /// An import that failed leaves no half-written temporary file.
    fn drop(&mut self) {
        if let Some((writer, temporary)) = self.writer.take() {
            drop(writer);
            let _ = std::fs::remove_file(temporary);
        }
    }
}

/// `.<name>.<pid>.tmp` beside `path`.
fn temporary_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_else(|| "rejects.csv".as_ref()));
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Whether `rejects` names the same file as `input` (an existing file: by
/// device and inode on Unix; else by canonical path).
pub fn same_file(input: &Path, rejects: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(a), Ok(b)) = (std::fs::metadata(input), std::fs::metadata(rejects))
            && a.dev() == b.dev()
            && a.ino() == b.ino()
        {
            return true;
        }
    }
    match (canonical(input), canonical(rejects)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The canonical path; for a file that does not exist yet, its canonical folder and its name.
fn canonical(path: &Path) -> Option<PathBuf> {
    if let Ok(path) = path.canonicalize() {
        return Some(path);
    }
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.canonicalize().ok()?,
        _ => std::env::current_dir().ok()?.canonicalize().ok()?,
    };
    Some(parent.join(name))
}

fn describe(error: &RowError) -> String {
    match &error.column {
        Some(column) => format!("{column}: {}", error.reason),
        None => error.reason.clone(),
    }
}
