//! A Maildir folder of bounces and complaints (as a mail server delivers
//! them): each message in `new/` is read, then moved to `cur/` when it was
//! used, or to `failed/` beside a `.reason` file when it was kept aside. A
//! message stays in `new/` only when the database failed, to be read again.

use std::path::{Path, PathBuf};

use super::{Ingested, Intake, Summary};

/// The most bytes read of one message: a report quotes the start of the
/// original, and a larger file is not a report.
pub const MAX_MESSAGE_BYTES: u64 = 10 << 20;

/// Why a Maildir could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MaildirError {
    #[error("{path}: {problem}")]
    Folder { path: String, problem: String },
    #[error("database error while reading feedback: {0}")]
    Database(#[from] sea_orm::DbErr),
}

impl MaildirError {
    fn folder(path: &Path, problem: impl std::fmt::Display) -> Self {
        MaildirError::Folder { path: path.display().to_string(), problem: problem.to_string() }
    }
}

/// Messages read in one transaction, up to [`BATCH_BYTES`] together.
const BATCH_MESSAGES: usize = 500;
const BATCH_BYTES: usize = 32 << 20;

/// Reads every message in `dir/new`, in name order (delivery order for
/// most servers), in batches of one transaction each: a message moves out
/// of `new/` only once its batch is committed.
pub async fn ingest(intake: &Intake, dir: &Path) -> Result<Summary, MaildirError> {
    let new = dir.join("new");
    let (cur, failed) = (dir.join("cur"), dir.join("failed"));
    if !new.is_dir() {
        return Err(MaildirError::folder(dir, "not a Maildir folder: it has no `new` folder"));
    }
    for folder in [&cur, &failed] {
        std::fs::create_dir_all(folder).map_err(|e| MaildirError::folder(folder, e))?;
    }
    let mut summary = Summary::default();
    let mut paths = messages_in(&new)?.into_iter().peekable();
    while paths.peek().is_some() {
        let (mut batch, mut messages, mut bytes) = (Vec::new(), Vec::new(), 0);
        while let Some(path) = paths.next_if(|_| batch.len() < BATCH_MESSAGES && bytes < BATCH_BYTES) {
            let message = read_message(&path)?;
            bytes += message.len();
            messages.push(message);
            batch.push(path);
        }
        let ingested = intake.ingest_batch(&messages, "maildir").await?;
        for (path, ingested) in batch.iter().zip(ingested) {
            summary.add(&ingested);
            file_away(path, &ingested, &cur, &failed)?;
        }
    }
    Ok(summary)
}

/// Moves a message that was read to `cur/`, or one kept aside to `failed/` beside its reason.
fn file_away(path: &Path, ingested: &Ingested, cur: &Path, failed: &Path) -> Result<(), MaildirError> {
    let name = path.file_name().expect("a file in new/").to_owned();
    match ingested {
        Ingested::Recorded { .. } => {
            let mut seen = name;
            seen.push(":2,S");
            move_to(path, &cur.join(seen))
        }
        Ingested::Aside(reason) => {
            let target = failed.join(&name);
            move_to(path, &target)?;
            let mut reason_file = target.into_os_string();
            reason_file.push(".reason");
            std::fs::write(&reason_file, format!("{reason}\n"))
                .map_err(|e| MaildirError::folder(Path::new(&reason_file), e))
        }
    }
}

/// The regular files of `folder` (Maildir names never start with a dot).
fn messages_in(folder: &Path) -> Result<Vec<PathBuf>, MaildirError> {
    let entries = std::fs::read_dir(folder).map_err(|e| MaildirError::folder(folder, e))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    paths.sort();
    Ok(paths)
}

fn read_message(path: &Path) -> Result<Vec<u8>, MaildirError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| MaildirError::folder(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_MESSAGE_BYTES).read_to_end(&mut bytes).map_err(|e| MaildirError::folder(path, e))?;
    Ok(bytes)
}

fn move_to(from: &Path, to: &Path) -> Result<(), MaildirError> {
    std::fs::rename(from, to)
        .map_err(|e| MaildirError::folder(from, format!("cannot move it to {}: {e}", to.display())))
}
