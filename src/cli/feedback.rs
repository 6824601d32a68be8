//! `patron feedback ingest`: bounces, spam complaints and unsubscribe
//! requests, one message on standard input (a mail server's pipe), the new
//! messages of a Maildir folder, or the unread ones of the IMAP mailbox.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Loaded;
use crate::db;
use crate::feedback::{Ingested, Intake, Rules, Summary, imap, maildir};

#[derive(Debug, Subcommand)]
pub enum FeedbackCommand {
    /// Read bounces (RFC 3464 delivery reports), spam complaints (ARF reports) and
    /// unsubscribe requests sent to unsubscribe.mailto.
    ///
    /// Without --maildir, one message is read on standard input, for a mail server's
    /// pipe (Postfix: `bounces: "|patron feedback ingest"`); a message that is not a
    /// report is kept in feedback.aside_dir. Exit code 75 (try again later) when the
    /// database cannot be used, so that the mail server keeps the message.
    Ingest(IngestArgs),
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Read every message in DIR/new instead: used ones move to DIR/cur, the others
    /// to DIR/failed with a .reason file beside them.
    #[arg(long, value_name = "DIR", conflicts_with = "imap")]
    pub maildir: Option<PathBuf>,
    /// Read the unread messages of the feedback.imap_url mailbox instead (as the
    /// daemon does every feedback.imap_poll_interval).
    #[arg(long)]
    pub imap: bool,
    /// The address the message was delivered to, if the mail server does not set
    /// $ORIGINAL_RECIPIENT or $RECIPIENT (which are read by themselves).
    #[arg(long, value_name = "ADDRESS")]
    pub recipient: Vec<String>,
}

/// Exit code 75 (EX_TEMPFAIL): the mail server keeps a piped message and tries again.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}; the message was not read (exit code 75: the mail server will try again)")]
pub struct TryAgainLater(pub anyhow::Error);

impl crate::failure::Failure for TryAgainLater {
    fn fault(&self) -> crate::failure::Fault {
        crate::failure::Fault::TryAgainLater
    }
}

pub async fn run(loaded: anyhow::Result<Loaded>, command: &FeedbackCommand) -> anyhow::Result<()> {
    let FeedbackCommand::Ingest(args) = command;
    if args.imap {
        return from_imap(&loaded?).await;
    }
    match &args.maildir {
        Some(dir) => from_maildir(&loaded?, dir).await,
        // Whatever goes wrong with a piped message, the mail server must keep it.
        None => from_stdin(loaded, &args.recipient).await.map_err(|e| TryAgainLater(e).into()),
    }
}

async fn intake(loaded: &Loaded) -> anyhow::Result<Intake> {
    let conn = db::open(&loaded.settings).await?;
    Ok(Intake::new(conn, Rules::from_settings(loaded)).await?)
}

async fn from_maildir(loaded: &Loaded, dir: &Path) -> anyhow::Result<()> {
    let intake = intake(loaded).await?;
    let summary = maildir::ingest(&intake, dir).await?;
    println!("{}: {} in failed/", dir.display(), described(&summary));
    Ok(())
}

async fn from_imap(loaded: &Loaded) -> anyhow::Result<()> {
    let Some(account) = imap::Account::from_settings(loaded) else {
        anyhow::bail!("feedback.imap_url is not set: there is no mailbox to read");
    };
    let intake = intake(loaded).await?;
    let summary = imap::poll(&intake, &account).await?;
    println!("{}: {} (flagged)", account.mailbox, described(&summary));
    Ok(())
}

fn described(summary: &Summary) -> String {
    format!(
        "{} message(s), {} event(s) recorded, {} already recorded, {} kept aside",
        summary.messages, summary.events, summary.repeated, summary.aside
    )
}

async fn from_stdin(loaded: anyhow::Result<Loaded>, recipients: &[String]) -> anyhow::Result<()> {
    let loaded = loaded?;
    let mut bytes = Vec::new();
    std::io::stdin().take(maildir::MAX_MESSAGE_BYTES).read_to_end(&mut bytes).context("reading standard input")?;
    let mut envelope = recipients.to_vec();
    envelope.extend(["ORIGINAL_RECIPIENT", "RECIPIENT"].into_iter().filter_map(|name| std::env::var(name).ok()));
    let intake = intake(&loaded).await?;
    match intake.ingest(&bytes, "pipe", &envelope).await? {
        Ingested::Recorded { new, repeated } => println!("{new} event(s) recorded, {repeated} already recorded"),
        Ingested::Aside(reason) => {
            let kept = keep_aside(&aside_dir(&loaded), &bytes, &reason)?;
            println!("kept aside in {}: {reason}", kept.display());
        }
    }
    Ok(())
}

fn aside_dir(loaded: &Loaded) -> PathBuf {
    let configured = &loaded.settings.feedback.aside_dir;
    if configured.as_os_str().is_empty() { loaded.settings.data_dir.join("feedback-aside") } else { configured.clone() }
}

/// Writes a message that is not used, and why, into `dir`.
fn keep_aside(dir: &Path, bytes: &[u8], reason: &str) -> anyhow::Result<PathBuf> {
    use sha2::Digest;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let digest = sha2::Sha256::digest(bytes);
    let name = format!("{}-{}.eml", chrono::Utc::now().format("%Y%m%dT%H%M%S"), hex::encode(&digest[..6]));
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    let mut reason_path = path.clone().into_os_string();
    reason_path.push(".reason");
    std::fs::write(&reason_path, format!("{reason}\n")).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
