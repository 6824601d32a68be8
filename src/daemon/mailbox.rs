//! The leader's reading of the `feedback.imap_url` mailbox every
//! `feedback.imap_poll_interval`, in a task of its own so that a slow mail
//! server never holds up a campaign's fire.

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;

use crate::config::Loaded;
use crate::feedback::{Intake, Rules, imap};

/// When the mailbox is read next, and the read under way.
#[derive(Default)]
pub struct MailboxPoll {
    next: Option<DateTime<Utc>>,
    running: Option<JoinHandle<()>>,
}

impl MailboxPoll {
    /// Starts a read when one is due and none is under way.
    pub fn tick(&mut self, db: &DatabaseConnection, loaded: &Loaded, now: DateTime<Utc>) {
        let busy = self.running.as_ref().is_some_and(|task| !task.is_finished());
        if busy || self.next.is_some_and(|at| at > now) {
            return;
        }
        let Some(account) = imap::Account::from_settings(loaded) else { return };
        self.next = Some(now + loaded.settings.feedback.imap_poll_interval());
        let (db, rules) = (db.clone(), Rules::from_settings(loaded));
        self.running = Some(tokio::spawn(read(db, rules, account)));
    }
}

async fn read(db: DatabaseConnection, rules: Rules, account: imap::Account) {
    let read = async {
        let intake = Intake::new(db, rules).await?;
        anyhow::Ok(imap::poll(&intake, &account).await?)
    };
    match read.await {
        Ok(summary) if summary.messages > 0 => tracing::info!(
            mailbox = %account.mailbox,
            messages = summary.messages,
            events = summary.events,
            repeated = summary.repeated,
            aside = summary.aside,
            "feedback mailbox read"
        ),
        Ok(_) => {}
        Err(error) => {
            tracing::warn!("reading the feedback mailbox: {error:#}; the unread messages wait for the next poll")
        }
    }
}
