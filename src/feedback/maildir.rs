//! A Maildir folder of bounces and complaints (as a mail server delivers
//! them): each message in `new/` is read, then moved to `cur/` when it was
//! used, or to `failed/` beside a `.reason` file when it was kept aside. A
//! message stays in `new/` only when the database failed, to be read again.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc::Sender;

use super::{Ingested, Intake, Parsed, Parser, Summary};

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

/// Messages parsed and waiting for their transaction: the paths and what was read from them.
struct Batch {
    paths: Vec<PathBuf>,
    parsed: Vec<Parsed>,
}

/// Reads every message in `dir/new`, in name order (delivery order for
/// most servers), in batches of one transaction each: a message moves out
/// of `new/` only once its batch is committed. Three steps overlap: a
/// thread reads and parses the next batch while one is written, and the
/// files of the batch before are moved meanwhile.
pub async fn ingest(intake: &Intake, dir: &Path) -> Result<Summary, MaildirError> {
    let new = dir.join("new");
    let (cur, failed) = (dir.join("cur"), dir.join("failed"));
    if !new.is_dir() {
        return Err(MaildirError::folder(dir, "not a Maildir folder: it has no `new` folder"));
    }
    for folder in [&cur, &failed] {
        std::fs::create_dir_all(folder).map_err(|e| MaildirError::folder(folder, e))?;
    }
    let paths = messages_in(&new)?;
    let (sender, mut batches) = tokio::sync::mpsc::channel(1);
    let parser = intake.parser();
    let reading = tokio::task::spawn_blocking(move || read_batches(paths, &parser, &sender));
    let mut summary = Summary::default();
    let mut filing: Option<Filing> = None;
    let written = async {
        while let Some(batch) = batches.recv().await {
            let Batch { paths, parsed } = batch?;
            let ingested = intake.read(parsed, "maildir").await?;
            ingested.iter().for_each(|i| summary.add(i));
            finish(filing.take(), &new).await?;
            let (cur, failed) = (cur.clone(), failed.clone());
            filing = Some(tokio::task::spawn_blocking(move || file_all(&paths, &ingested, &cur, &failed)));
        }
        Ok::<_, MaildirError>(())
    }
    .await;
    // The committed batches' files are moved even when a later one failed.
    drop(batches);
    let filed = finish(filing, &new).await;
    written?;
    filed?;
    reading.await.map_err(|e| MaildirError::folder(dir, format!("reader failed: {e}")))?;
    Ok(summary)
}

/// Moving a committed batch's files out of `new/`.
type Filing = tokio::task::JoinHandle<Result<(), MaildirError>>;

/// Waits for `filing`, if any, to have moved its files out of `new`.
async fn finish(filing: Option<Filing>, new: &Path) -> Result<(), MaildirError> {
    match filing {
        Some(task) => task.await.map_err(|e| MaildirError::folder(new, format!("moving messages failed: {e}")))?,
        None => Ok(()),
    }
}

/// Reads and parses the messages at `paths` in batches, handing each to
/// `sender`; stops at the first file that cannot be read, or when the
/// receiver is gone.
fn read_batches(paths: Vec<PathBuf>, parser: &Parser, sender: &Sender<Result<Batch, MaildirError>>) {
    let mut paths = paths.into_iter().peekable();
    while paths.peek().is_some() {
        let mut batch = Batch { paths: Vec::new(), parsed: Vec::new() };
        let mut bytes = 0;
        while let Some(path) = paths.next_if(|_| batch.paths.len() < BATCH_MESSAGES && bytes < BATCH_BYTES) {
            let message = match read_message(&path) {
                Ok(message) => message,
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            };
            bytes += message.len();
            batch.parsed.push(parser.parse(&message, &[]));
            batch.paths.push(path);
        }
        if sender.blocking_send(Ok(batch)).is_err() {
            return;
        }
    }
}

/// Files away each message of a committed batch (see [`file_away`]).
fn file_all(paths: &[PathBuf], ingested: &[Ingested], cur: &Path, failed: &Path) -> Result<(), MaildirError> {
    paths.iter().zip(ingested).try_for_each(|(path, ingested)| file_away(path, ingested, cur, failed))
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
