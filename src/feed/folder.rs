//! The folder feed: CSV exports dropped in a folder, imported by the
//! importer exactly as `patron import` would, then moved to `done/` or,
//! when the importer refuses them, to `failed/` with its report beside
//! them. A file is taken only once its writer is done with it, and a file
//! whose bytes were imported before is never imported again.

use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use sha2::{Digest, Sha256};

use super::{Landed, Outcome, state};
use crate::config::{FeedPatterns, FeedSettings, Loaded};
use crate::failure::{Failure, Fault};
use crate::import::{self, ImportError};
use crate::loyalty::redemptions;

/// Where imported files go, inside the drop folder.
const DONE: &str = "done";
/// Where refused files go, each with its `<name>.report.txt`.
const FAILED: &str = "failed";

/// Imports every complete file of the drop folder that matches a pattern:
/// customers first, then orders, interactions and redemptions, each kind
/// in file name order, so that rows land after those they refer to. A
/// refused file goes to `failed/` and the others still land; a database
/// failure stops the run and leaves the file for the next one (the files
/// before it have landed and been moved).
pub async fn run(
    db: &DatabaseConnection,
    loaded: &Loaded,
    feed: &FeedSettings,
    now: DateTime<Utc>,
) -> anyhow::Result<Outcome> {
    let matchers = Matchers::new(&feed.patterns)?;
    let entries = list(&feed.path).with_context(|| format!("cannot read the drop folder {}", feed.path.display()))?;
    let (taken, notes) = pick(entries, &matchers, feed.settle(), SystemTime::now());
    let mut outcome = Outcome { notes, ..Outcome::default() };
    for (kind, name) in taken {
        take(db, loaded, feed, kind, &name, now, &mut outcome).await?;
    }
    Ok(outcome)
}

/// The kinds of file a folder feed takes, in the order they land.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FileKind {
    Customers,
    Orders,
    Interactions,
    Redemptions,
}

impl FileKind {
    const IN_ORDER: [FileKind; 4] =
        [FileKind::Customers, FileKind::Orders, FileKind::Interactions, FileKind::Redemptions];

    fn table(self) -> &'static str {
        match self {
            FileKind::Customers => "customers",
            FileKind::Orders => "orders",
            FileKind::Interactions => "interactions",
            FileKind::Redemptions => "redemptions",
        }
    }

    fn pattern(self, patterns: &FeedPatterns) -> &str {
        match self {
            FileKind::Customers => &patterns.customers,
            FileKind::Orders => &patterns.orders,
            FileKind::Interactions => &patterns.interactions,
            FileKind::Redemptions => &patterns.redemptions,
        }
    }
}

/// The feed's patterns, compiled. Matching ignores case: exports made on
/// Windows often arrive as `Customers.CSV`.
struct Matchers(Vec<(FileKind, glob::Pattern)>);

impl Matchers {
    fn new(patterns: &FeedPatterns) -> anyhow::Result<Matchers> {
        let compile = |kind: FileKind| {
            let pattern = kind.pattern(patterns);
            glob::Pattern::new(pattern)
                .map(|compiled| (kind, compiled))
                .with_context(|| format!("patterns.{} `{pattern}` is not a file name pattern", kind.table()))
        };
        FileKind::IN_ORDER.into_iter().map(compile).collect::<anyhow::Result<_>>().map(Matchers)
    }

    /// The kind of the file `name`: the first in landing order whose pattern matches.
    fn kind_of(&self, name: &str) -> Option<FileKind> {
        let options = glob::MatchOptions { case_sensitive: false, ..glob::MatchOptions::new() };
        self.0.iter().find(|(_, pattern)| pattern.matches_with(name, options)).map(|(kind, _)| *kind)
    }
}

/// A regular file in the drop folder.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    modified: SystemTime,
}

/// The regular files directly in `folder` (not `done/` and `failed/`).
fn list(folder: &Path) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(folder)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        // A name that is not UTF-8 cannot match a pattern: it is no export of ours.
        if let (true, Ok(name)) = (metadata.is_file(), entry.file_name().into_string()) {
            entries.push(Entry { name, modified: metadata.modified()? });
        }
    }
    Ok(entries)
}

/// Whether `name` is a writer's name for a file it has not finished:
/// hidden, or ending in `.tmp` or `.part`. It is taken after its rename.
fn is_temporary(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.') || lower.ends_with(".tmp") || lower.ends_with(".part")
}

/// Whether a file last changed at `modified` has been left alone for
/// `settle` by `clock`: a writer that still appends keeps it fresh.
fn settled(modified: SystemTime, clock: SystemTime, settle: chrono::Duration) -> bool {
    let settle = settle.to_std().unwrap_or_default();
    clock.duration_since(modified).is_ok_and(|unchanged| unchanged >= settle)
}

/// The files to take at `clock`, in landing order, and a note for each
/// matching file left for a later run because it is still being written.
fn pick(
    entries: Vec<Entry>,
    matchers: &Matchers,
    settle: chrono::Duration,
    clock: SystemTime,
) -> (Vec<(FileKind, String)>, Vec<String>) {
    let (mut taken, mut notes) = (Vec::new(), Vec::new());
    for entry in entries {
        let Some(kind) = matchers.kind_of(&entry.name).filter(|_| !is_temporary(&entry.name)) else { continue };
        if settled(entry.modified, clock, settle) {
            taken.push((kind, entry.name));
        } else {
            notes.push(format!(
                "{}: changed less than {}s ago, may still be written; left for the next run",
                entry.name,
                settle.num_seconds()
            ));
        }
    }
    taken.sort();
    notes.sort();
    (taken, notes)
}

/// Imports one file unless its bytes were imported before, and moves it
/// out of the drop folder. `Err` only for what the next run may not meet
/// again: the database or the disk failing.
async fn take(
    db: &DatabaseConnection,
    loaded: &Loaded,
    feed: &FeedSettings,
    kind: FileKind,
    name: &str,
    now: DateTime<Utc>,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let path = feed.path.join(name);
    let digest = digest(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if let Some((first_name, imported_at)) = state::file_imported(db, &feed.name, &digest).await? {
        let moved = move_into(&feed.path.join(DONE), &path, name)?;
        outcome.notes.push(format!(
            "{name}: already imported on {} (as {first_name}), skipped; moved to {DONE}/{moved}",
            imported_at.format("%Y-%m-%d %H:%M UTC")
        ));
        return Ok(());
    }
    match import_file(db, loaded, kind, &path).await {
        Ok((rows, written)) => {
            state::remember_file(db, &feed.name, &digest, name, rows, now).await?;
            state::record_load(db, &format!("feed {}", feed.name), kind.table(), rows, now).await?;
            move_into(&feed.path.join(DONE), &path, name)?;
            tracing::info!(feed = %feed.name, file = name, rows, written, "feed: file imported");
            outcome.landed.push(Landed { table: kind.table().to_owned(), rows, written, source: name.to_owned() });
        }
        Err(error) if refused(&error) => {
            let (problems, report) = report(name, &error, now);
            let failed = feed.path.join(FAILED);
            let moved = move_into(&failed, &path, name)?;
            let report_path = failed.join(format!("{moved}.report.txt"));
            fs::write(&report_path, report).with_context(|| format!("cannot write {}", report_path.display()))?;
            tracing::warn!(feed = %feed.name, file = name, problems, "feed: file refused by the import");
            outcome
                .failed
                .push(format!("{name}: rejected ({problems} problem(s)); moved to {FAILED}/{moved} with its report"));
        }
        Err(error) => return Err(error.context(format!("{name}: not imported; left for the next run"))),
    }
    Ok(())
}

/// Imports the file with the importer of its kind: rows read and rows new or changed.
async fn import_file(
    db: &DatabaseConnection,
    loaded: &Loaded,
    kind: FileKind,
    path: &Path,
) -> anyhow::Result<(u64, u64)> {
    let table = match kind {
        FileKind::Customers => import::Kind::Customers,
        FileKind::Orders => import::Kind::Orders,
        FileKind::Interactions => import::Kind::Interactions,
        FileKind::Redemptions => {
            let imported = redemptions::import(db, path).await?;
            return Ok((imported.rows as u64, imported.new as u64));
        }
    };
    let report = import::import(db, table, path, &import::Options::from_settings(loaded)).await?;
    Ok((report.rows, report.written))
}

/// Whether the importer refused the file itself (its rows or its shape),
/// rather than failing on the database.
fn refused(error: &anyhow::Error) -> bool {
    let input = |fault: Option<Fault>| fault == Some(Fault::Input);
    input(error.downcast_ref::<ImportError>().map(Failure::fault))
        || input(error.downcast_ref::<redemptions::Refused>().map(Failure::fault))
        || error.downcast_ref::<csv::Error>().is_some_and(|csv| !matches!(csv.kind(), csv::ErrorKind::Io(_)))
}

/// The number of problems of a refused file, and the text of its report.
fn report(name: &str, error: &anyhow::Error, now: DateTime<Utc>) -> (u64, String) {
    let mut lines: Vec<String> = Vec::new();
    let mut total = 1;
    if let Some(ImportError::InvalidRows { errors, total: all, .. }) = error.downcast_ref::<ImportError>() {
        lines.extend(errors.iter().map(ToString::to_string));
        if *all > errors.len() as u64 {
            lines.push(format!("... and {} more", *all - errors.len() as u64));
        }
        total = *all;
    } else if let Some(ImportError::File { problem, .. }) = error.downcast_ref::<ImportError>() {
        lines.push(problem.clone());
    } else if let Some(refused) = error.downcast_ref::<redemptions::Refused>() {
        lines.extend(refused.problems.iter().cloned());
        total = refused.problems.len() as u64;
    } else {
        lines.push(format!("{error:#}"));
    }
    let when = now.format("%Y-%m-%d %H:%M:%S UTC");
    let text = format!("{name}: refused on {when}; nothing of it was imported.\n{}\n", lines.join("\n"));
    (total, text)
}

/// The SHA-256 of the file's bytes, in hex: the same export under another name is the same file.
fn digest(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Moves `file` (called `name`) into `folder`, created if missing, under
/// its name or, when that is taken, a numbered one (`orders.2.csv`): a
/// file already there is never replaced. Returns the name it got.
fn move_into(folder: &Path, file: &Path, name: &str) -> anyhow::Result<String> {
    fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let mut number = 1;
    loop {
        let candidate = numbered(name, number);
        let target = folder.join(&candidate);
        // A hard link refuses a name that exists, where a rename replaces it.
        let moved = match fs::hard_link(file, &target) {
            Ok(()) => fs::remove_file(file),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                number += 1;
                continue;
            }
            // A file system without hard links (some network shares).
            Err(_) if fs::symlink_metadata(&target).is_err() => fs::rename(file, &target),
            Err(error) => Err(error),
        };
        moved.with_context(|| format!("cannot move {} to {}", file.display(), target.display()))?;
        return Ok(candidate);
    }
}

/// `name` for 1, else `name` with `.number` before its extension.
fn numbered(name: &str, number: u32) -> String {
    match (number, name.rsplit_once('.')) {
        (1, _) => name.to_owned(),
        (_, Some((stem, extension))) if !stem.is_empty() => format!("{stem}.{number}.{extension}"),
        _ => format!("{name}.{number}"),
    }
}

#[cfg(test)]
mod tests;
