//! An IMAP mailbox of bounces and complaints (`feedback.imap_url`), read by
//! the daemon every `feedback.imap_poll_interval` and once by `patron
//! feedback ingest --imap`, for setups where the bounce address is a mailbox
//! at a provider rather than a pipe on a mail server of one's own.
//!
//! Unread messages are fetched without marking them (`BODY.PEEK`); only once
//! a message's events are committed is it marked as read (and moved to
//! `feedback.imap_move_to`), so a message is never lost: a database failure
//! leaves it unread, to be read at the next poll, and the same report read
//! twice counts once. A message kept aside is marked as read and flagged,
//! for a person to look at.

use std::collections::HashMap;
use std::fmt::{Debug, Display};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_imap::Client;
use futures_util::TryStreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::maildir::MAX_MESSAGE_BYTES;
use super::{Ingested, Intake, Summary};
use crate::config::Loaded;
pub use crate::config::mailbox::Mailbox;

/// How long one exchange with the server may take before the poll gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// How many UIDs one command names.
const UIDS_PER_COMMAND: usize = 200;

/// The most message bytes fetched and read in one transaction.
const BATCH_BYTES: usize = 32 << 20;

/// Everything a poll needs: the mailbox, its password and where read mail goes.
#[derive(Clone)]
pub struct Account {
    pub mailbox: Mailbox,
    password: SecretString,
    /// The folder read messages move to; `None`: they stay, marked as read.
    pub move_to: Option<String>,
}

impl Account {
    /// The account of `feedback.imap_url`, when it is set (checked when the settings were loaded).
    pub fn from_settings(loaded: &Loaded) -> Option<Account> {
        let feedback = &loaded.settings.feedback;
        let mailbox = Mailbox::parse(&feedback.imap_url).ok()?;
        let password = loaded.secrets.imap_password.clone()?;
        let move_to = (!feedback.imap_move_to.trim().is_empty()).then(|| feedback.imap_move_to.trim().to_owned());
        Some(Account { mailbox, password, move_to })
    }
}

/// Why a poll stopped. Messages not yet read stay unread for the next poll.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("{mailbox}: {problem}")]
    Server { mailbox: String, problem: String },
    #[error("database error while reading feedback: {0}")]
    Database(#[from] sea_orm::DbErr),
}

/// Reads the unread messages of the account's mailbox.
pub async fn poll(intake: &Intake, account: &Account) -> Result<Summary, ImapError> {
    let mailbox = &account.mailbox;
    let tcp = step(mailbox, "connecting", TcpStream::connect((mailbox.host.as_str(), mailbox.port))).await?;
    if !mailbox.tls {
        return read(intake, account, Client::new(tcp)).await;
    }
    let name = rustls::pki_types::ServerName::try_from(mailbox.host.clone())
        .map_err(|e| server_error(mailbox, format!("not a server name: {e}")))?;
    let tls = step(mailbox, "starting TLS", tls_connector().connect(name, tcp)).await?;
    read(intake, account, Client::new(tls)).await
}

/// TLS with the Mozilla roots compiled in, as the SMTP client has.
fn tls_connector() -> tokio_rustls::TlsConnector {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn read<T>(intake: &Intake, account: &Account, mut client: Client<T>) -> Result<Summary, ImapError>
where
    T: AsyncRead + AsyncWrite + Unpin + Debug + Send,
{
    let mailbox = &account.mailbox;
    let greeting = step(mailbox, "reading the greeting", client.read_response()).await?;
    if greeting.is_none() {
        return Err(server_error(mailbox, "the server closed the connection before greeting"));
    }
    let login = client.login(&mailbox.user, account.password.expose_secret());
    let mut session = step(mailbox, "logging in", async { login.await.map_err(|(error, _)| error) }).await?;
    let selected = step(mailbox, "opening the folder", session.select(&mailbox.folder)).await?;
    let validity = selected.uid_validity.unwrap_or(0);
    let mut unread: Vec<u32> = step(mailbox, "searching", session.uid_search("UNSEEN")).await?.into_iter().collect();
    unread.sort_unstable();
    let mut summary = Summary::default();
    for batch in unread.chunks(UIDS_PER_COMMAND) {
        let sizes = sizes(&mut session, mailbox, batch).await?;
        let (fitting, oversized): (Vec<u32>, Vec<u32>) = batch
            .iter()
            .filter(|uid| sizes.contains_key(uid))
            .partition(|uid| u64::from(sizes[uid]) <= MAX_MESSAGE_BYTES);
        for uid in oversized {
            let reason = format!("larger than {} MiB: not a report", MAX_MESSAGE_BYTES >> 20);
            let ingested = intake.set_aside(&reason, "imap", &format!("imap:{mailbox}:{validity}:{uid}")).await?;
            summary.add(&ingested);
            mark(&mut session, account, uid, &ingested).await?;
        }
        for lot in lots(&fitting, &sizes) {
            let (uids, messages): (Vec<u32>, Vec<Vec<u8>>) =
                bodies(&mut session, mailbox, &lot).await?.into_iter().unzip();
            let ingested = intake.ingest_batch(&messages, "imap").await?;
            for (uid, ingested) in uids.into_iter().zip(ingested) {
                summary.add(&ingested);
                mark(&mut session, account, uid, &ingested).await?;
            }
        }
    }
    // The work is done and marked; a failed goodbye changes nothing.
    let _ = tokio::time::timeout(STEP_TIMEOUT, session.logout()).await;
    Ok(summary)
}

/// `uids` in lots of at most [`BATCH_BYTES`] together, each fetched and read
/// in one transaction (a larger message is a lot of its own).
fn lots(uids: &[u32], sizes: &HashMap<u32, u32>) -> Vec<Vec<u32>> {
    let mut lots: Vec<Vec<u32>> = Vec::new();
    let mut bytes = 0;
    for &uid in uids {
        let size = sizes.get(&uid).map_or(0, |&s| s as usize);
        match lots.last_mut() {
            Some(lot) if bytes + size <= BATCH_BYTES => lot.push(uid),
            _ => {
                lots.push(vec![uid]);
                bytes = 0;
            }
        }
        bytes += size;
    }
    lots
}

async fn sizes<T>(
    session: &mut async_imap::Session<T>,
    mailbox: &Mailbox,
    uids: &[u32],
) -> Result<HashMap<u32, u32>, ImapError>
where
    T: AsyncRead + AsyncWrite + Unpin + Debug + Send,
{
    let fetched = fetch(session, mailbox, uids, "(UID RFC822.SIZE)", "reading message sizes").await?;
    Ok(fetched.iter().filter_map(|f| Some((f.uid?, f.size?))).collect())
}

/// The messages `uids` that are still there, in the order asked.
async fn bodies<T>(
    session: &mut async_imap::Session<T>,
    mailbox: &Mailbox,
    uids: &[u32],
) -> Result<Vec<(u32, Vec<u8>)>, ImapError>
where
    T: AsyncRead + AsyncWrite + Unpin + Debug + Send,
{
    let fetched = fetch(session, mailbox, uids, "BODY.PEEK[]", "fetching messages").await?;
    let mut by_uid: HashMap<u32, Vec<u8>> = fetched.iter().filter_map(|f| Some((f.uid?, f.body()?.to_vec()))).collect();
    Ok(uids.iter().filter_map(|uid| Some((*uid, by_uid.remove(uid)?))).collect())
}

/// `UID FETCH` of `uids` (without marking them read: only PEEK queries are asked).
async fn fetch<T>(
    session: &mut async_imap::Session<T>,
    mailbox: &Mailbox,
    uids: &[u32],
    query: &str,
    what: &str,
) -> Result<Vec<async_imap::types::Fetch>, ImapError>
where
    T: AsyncRead + AsyncWrite + Unpin + Debug + Send,
{
    let set = uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    step(mailbox, what, async { session.uid_fetch(&set, query).await?.try_collect::<Vec<_>>().await }).await
}

/// Marks a message whose events are recorded as read (and moves it), or one
/// kept aside as read and flagged.
async fn mark<T>(
    session: &mut async_imap::Session<T>,
    account: &Account,
    uid: u32,
    ingested: &Ingested,
) -> Result<(), ImapError>
where
    T: AsyncRead + AsyncWrite + Unpin + Debug + Send,
{
    let mailbox = &account.mailbox;
    let flags = match ingested {
        Ingested::Recorded { .. } => "+FLAGS.SILENT (\\Seen)",
        Ingested::Aside(_) => "+FLAGS.SILENT (\\Seen \\Flagged)",
    };
    step(mailbox, "marking a message as read", async {
        session.uid_store(uid.to_string(), flags).await?.try_collect::<Vec<_>>().await
    })
    .await?;
    if let (Ingested::Recorded { .. }, Some(folder)) = (ingested, &account.move_to) {
        step(mailbox, &format!("moving a message to {folder}"), session.uid_mv(uid.to_string(), folder)).await?;
    }
    Ok(())
}

/// One exchange with the server, within [`STEP_TIMEOUT`].
async fn step<T, E: Display>(
    mailbox: &Mailbox,
    what: &str,
    exchange: impl Future<Output = Result<T, E>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(STEP_TIMEOUT, exchange).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(server_error(mailbox, format!("{what}: {error}"))),
        Err(_) => Err(server_error(mailbox, format!("{what}: no answer within {} s", STEP_TIMEOUT.as_secs()))),
    }
}

fn server_error(mailbox: &Mailbox, problem: impl Into<String>) -> ImapError {
    ImapError::Server { mailbox: mailbox.to_string(), problem: problem.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailbox_url_names_server_user_and_folder() {
        let m = Mailbox::parse("imaps://bounces%40shop.example@imap.example.com/Bounces").unwrap();
        assert_eq!(
            m,
            Mailbox {
                host: "imap.example.com".into(),
                port: 993,
                tls: true,
                user: "bounces@shop.example".into(),
                folder: "Bounces".into()
            }
        );
        assert_eq!(m.to_string(), "imaps://imap.example.com:993/Bounces");
        let m = Mailbox::parse("imap://bounces@127.0.0.1:10143").unwrap();
        assert_eq!((m.port, m.tls, m.folder.as_str()), (10143, false, "INBOX"));
        assert!(Mailbox::parse("imap://u@[::1]/INBOX").is_ok());
    }

    #[test]
    fn messages_are_read_in_lots_of_at_most_32_mib() {
        let mib = 1 << 20;
        let sizes: HashMap<u32, u32> = [(1, 10 * mib), (2, 20 * mib), (3, 5 * mib), (4, 40 * mib), (5, 1)].into();
        assert_eq!(lots(&[1, 2, 3, 4, 5], &sizes), [vec![1, 2], vec![3], vec![4], vec![5]]);
        assert!(lots(&[], &sizes).is_empty());
    }

    #[test]
    fn a_mailbox_url_that_would_leak_the_password_or_lacks_a_part_is_refused() {
        let problem = |url| Mailbox::parse(url).unwrap_err();
        assert!(problem("imap://u@imap.example.com/INBOX").contains("unencrypted"), "plain IMAP over a network");
        assert!(problem("imaps://u:secret@imap.example.com/").contains("must not hold the password"));
        assert!(problem("imaps://imap.example.com/").contains("names no user"));
        assert!(problem("pop3s://u@pop.example.com/").contains("not pop3s://"));
        assert!(problem("imap.example.com").contains("is not a URL"));
    }
}
