//! The mail feedback loop: bounces, spam complaints and unsubscribe requests
//! that come back by mail become events (`feedback_events`) tied to the
//! outbox row they answer, and suppressions, so that patron stops mailing
//! dead addresses and people who complained before mailbox providers stop
//! patron.
//!
//! A report is tied to its message by the VERP token of the address it was
//! delivered to ([`verp`]), else by the Message-ID it quotes (which names the
//! outbox row and this installation), else by its recipient's latest
//! message. A report about no message of patron's changes nothing.

pub mod breaker;
pub mod maildir;
pub mod report;
pub mod webhook;

use chrono::{Duration, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, JoinType, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use sha2::{Digest, Sha256};

use crate::config::Loaded;
use crate::delivery::unsubscribe;
use crate::delivery::verp::ReturnPath;
use report::{Kind, Report};

/// What the intake needs besides the database.
#[derive(Debug, Clone)]
pub struct Rules {
    pub return_path: Option<ReturnPath>,
    /// The `unsubscribe.mailto` address: plain mail to it unsubscribes its sender.
    pub unsubscribe_mailto: Option<String>,
    /// Soft bounces of one address within the window that suppress it.
    pub soft_bounce_limit: u32,
    pub soft_bounce_window: Duration,
    pub breaker: breaker::Limits,
}

impl Rules {
    pub fn from_settings(loaded: &Loaded) -> Self {
        let settings = &loaded.settings;
        let mailto = settings.unsubscribe.mailto.trim();
        Rules {
            return_path: ReturnPath::from_settings(loaded),
            unsubscribe_mailto: (!mailto.is_empty()).then(|| mailto.to_owned()),
            soft_bounce_limit: settings.feedback.soft_bounce_limit,
            soft_bounce_window: settings.feedback.soft_bounce_window(),
            breaker: breaker::Limits {
                max_complaint_rate: settings.feedback.max_complaint_rate,
                max_bounce_rate: settings.feedback.max_bounce_rate,
                min_sample: settings.feedback.min_sample,
                window: settings.feedback.rate_window(),
            },
        }
    }
}

/// What became of one incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Its events: `new` recorded now, `repeated` already recorded from an earlier delivery of it.
    Recorded { new: usize, repeated: usize },
    /// Kept aside, with the reason: not a report, or about no message of patron's.
    Aside(String),
}

/// Reads incoming messages into events and suppressions.
pub struct Intake {
    db: DatabaseConnection,
    rules: Rules,
    installation: String,
}

/// The outbox row a report answers.
#[derive(Debug, Clone)]
struct Target {
    outbox_id: i64,
    run_id: i64,
    customer_id: i64,
    email: String,
}

/// What an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A permanent failure (5.x.x): the address is suppressed.
    HardBounce,
    /// A temporary failure (4.x.x, delayed): counted, suppresses at the limit.
    SoftBounce,
    /// A spam complaint: the address is suppressed.
    Complaint,
    /// A request to receive no more mail.
    Unsubscribe,
    /// A message kept aside: not a report, or about no message of patron's.
    Aside,
}

impl EventKind {
    /// The name in `feedback_events.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::HardBounce => "hard_bounce",
            EventKind::SoftBounce => "soft_bounce",
            EventKind::Complaint => "complaint",
            EventKind::Unsubscribe => "unsubscribe",
            EventKind::Aside => "aside",
        }
    }
}

/// An event a mail provider reports by webhook, once its request is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    pub kind: EventKind,
    pub recipient: String,
    /// The Message-ID patron gave the message, when the provider reports it.
    pub message_id: Option<String>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    /// The provider's id of the event, so that a webhook delivered twice counts once.
    pub event_id: String,
}

/// One event to record.
struct Event {
    kind: EventKind,
    status: Option<String>,
    diagnostic: Option<String>,
    /// The address the event is about, lower-cased.
    email: Option<String>,
    target: Option<Target>,
    matched_by: Option<&'static str>,
}

impl Event {
    fn aside(reason: &str) -> Self {
        Event { kind: EventKind::Aside, status: None, diagnostic: Some(reason.to_owned()), email: None, target: None, matched_by: None }
    }

    /// The event's key: the report it came from, its kind, address and status.
    fn fingerprint(&self, report: &str) -> String {
        let about = self.email.as_deref().unwrap_or_default();
        format!("{report}|{}|{about}|{}", self.kind.as_str(), self.status.as_deref().unwrap_or(""))
    }
}

/// Where a message may be identified: its VERP addresses, its Message-ID, its recipient.
struct Clues<'a> {
    return_addresses: &'a [String],
    message_id: Option<&'a str>,
    recipient: Option<&'a str>,
}

const NOT_OURS: &str = "a report about no message that patron sent (no VERP token, Message-ID or recipient of ours)";

impl Intake {
    pub async fn new(db: DatabaseConnection, rules: Rules) -> Result<Self, DbErr> {
        let installation = crate::db::installation_id(&db).await?;
        Ok(Intake { db, rules, installation })
    }

    /// Reads one message. `source` says where it came from (`pipe`,
    /// `maildir`, ...); `envelope_recipients` are addresses it was delivered
    /// to that its headers may not show (the pipe's `$ORIGINAL_RECIPIENT`).
    pub async fn ingest(&self, bytes: &[u8], source: &str, envelope_recipients: &[String]) -> Result<Ingested, DbErr> {
        let report = report::parse(bytes, self.rules.unsubscribe_mailto.as_deref());
        let report_key = match &report.report_id {
            Some(id) => format!("id:{id}"),
            None => format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
        };
        let mut return_addresses = envelope_recipients.to_vec();
        return_addresses.extend(report.return_addresses.iter().cloned());
        match self.events(&report, &return_addresses).await? {
            Ok(events) => self.record_all(&events, source, &report_key).await,
            Err(reason) => {
                self.record(&Event::aside(&reason), source, &format!("{report_key}|aside")).await?;
                Ok(Ingested::Aside(reason))
            }
        }
    }

    /// Records an event a provider reported by webhook.
    pub async fn ingest_event(&self, event: &ProviderEvent, source: &str) -> Result<Ingested, DbErr> {
        let report_key = format!("{source}:{}", event.event_id);
        let email = event.recipient.to_lowercase();
        let clues = Clues { return_addresses: &[], message_id: event.message_id.as_deref(), recipient: Some(&email) };
        let found = self.find_target(&clues).await?;
        if found.is_none() && event.kind != EventKind::Unsubscribe {
            self.record(&Event::aside(NOT_OURS), source, &format!("{report_key}|aside")).await?;
            return Ok(Ingested::Aside(NOT_OURS.into()));
        }
        let (target, matched_by) = found.map_or((None, None), |(t, m)| (Some(t), Some(m)));
        let email = Some(target.as_ref().map_or(email, |t| t.email.to_lowercase()));
        let recorded = Event {
            kind: event.kind,
            status: event.status.clone(),
            diagnostic: event.diagnostic.clone(),
            email,
            target,
            matched_by,
        };
        self.record_all(&[recorded], source, &report_key).await
    }

    async fn record_all(&self, events: &[Event], source: &str, report_key: &str) -> Result<Ingested, DbErr> {
        let (mut new, mut repeated) = (0, 0);
        for event in events {
            if self.record(event, source, &event.fingerprint(report_key)).await? {
                new += 1;
            } else {
                repeated += 1;
            }
        }
        Ok(Ingested::Recorded { new, repeated })
    }

    /// The events of a report, or why it is kept aside.
    async fn events(&self, report: &Report, return_addresses: &[String]) -> Result<Result<Vec<Event>, String>, DbErr> {
        let failures = match &report.kind {
            Kind::NotAReport(reason) => return Ok(Err(reason.clone())),
            Kind::UnsubscribeRequest { from } => {
                let email = Some(from.to_lowercase());
                let event = Event { kind: EventKind::Unsubscribe, status: None, diagnostic: None, email, target: None, matched_by: None };
                return Ok(Ok(vec![event]));
            }
            Kind::Complaint { feedback_type, recipient } => {
                vec![(EventKind::Complaint, None, Some(format!("feedback type {feedback_type}")), recipient.clone())]
            }
            Kind::Bounces(bounces) => bounces
                .iter()
                .map(|b| {
                    let kind = if b.permanent { EventKind::HardBounce } else { EventKind::SoftBounce };
                    (kind, Some(b.status.clone()), b.diagnostic.clone(), b.recipient.clone())
                })
                .collect(),
        };
        let mut events = Vec::with_capacity(failures.len());
        for (kind, status, diagnostic, recipient) in failures {
            let clues = Clues {
                return_addresses,
                message_id: report.original_message_id.as_deref(),
                recipient: recipient.as_deref(),
            };
            let Some((target, matched_by)) = self.find_target(&clues).await? else {
                return Ok(Err(NOT_OURS.into()));
            };
            let email = Some(target.email.to_lowercase());
            events.push(Event { kind, status, diagnostic, email, target: Some(target), matched_by: Some(matched_by) });
        }
        Ok(Ok(events))
    }

    /// The outbox row a report answers: by VERP token, Message-ID, then recipient.
    async fn find_target(&self, clues: &Clues<'_>) -> Result<Option<(Target, &'static str)>, DbErr> {
        if let Some(return_path) = &self.rules.return_path {
            for address in clues.return_addresses {
                if let Some(id) = return_path.outbox_id(address)
                    && let Some(target) = self.target(Expr::col(("o", "id")).eq(id)).await?
                {
                    return Ok(Some((target, "verp")));
                }
            }
        }
        if let Some(message_id) = clues.message_id
            && let Some(id) = outbox_id_of_message_id(message_id, &self.installation)
        {
            // Stored as written in the header, with its angle brackets.
            let bracketed = format!("<{}>", message_id.trim().trim_start_matches('<').trim_end_matches('>'));
            let ours = Expr::col(("o", "id")).eq(id).and(Expr::col(("o", "message_id")).eq(bracketed));
            if let Some(target) = self.target(ours).await? {
                return Ok(Some((target, "message-id")));
            }
        }
        if let Some(recipient) = clues.recipient {
            let latest_to = Expr::expr(Func::lower(Expr::col(("c", "email")))).eq(recipient.to_lowercase());
            if let Some(target) = self.target(latest_to.and(Expr::col(("o", "state")).eq("sent"))).await? {
                return Ok(Some((target, "recipient")));
            }
        }
        Ok(None)
    }

    /// The latest outbox row matching `condition`, with its customer's address.
    async fn target(&self, condition: sea_orm::sea_query::SimpleExpr) -> Result<Option<Target>, DbErr> {
        let select = Query::select()
            .expr_as(Expr::col(("o", "id")), Alias::new("outbox_id"))
            .expr_as(Expr::col(("o", "run_id")), Alias::new("run_id"))
            .expr_as(Expr::col(("o", "customer_id")), Alias::new("customer_id"))
            .expr_as(Expr::col(("c", "email")), Alias::new("email"))
            .from_as("outbox", Alias::new("o"))
            .join_as(JoinType::InnerJoin, "customers", Alias::new("c"), Expr::col(("c", "id")).equals(("o", "customer_id")))
            .and_where(condition)
            .order_by(("o", "id"), Order::Desc)
            .limit(1)
            .to_owned();
        let Some(row) = self.db.query_one(&select).await? else { return Ok(None) };
        Ok(Some(Target {
            outbox_id: row.try_get("", "outbox_id")?,
            run_id: row.try_get("", "run_id")?,
            customer_id: row.try_get("", "customer_id")?,
            email: row.try_get("", "email")?,
        }))
    }

    /// Records `event` and what it does, once per fingerprint; true when new.
    async fn record(&self, event: &Event, source: &str, fingerprint: &str) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        let target = event.target.as_ref();
        let insert = Query::insert()
            .into_table("feedback_events")
            .columns([
                "received_at", "kind", "status", "diagnostic", "email", "outbox_id", "run_id", "customer_id", "source",
                "matched_by", "fingerprint",
            ])
            .values_panic([
                Utc::now().into(),
                event.kind.as_str().into(),
                event.status.clone().into(),
                event.diagnostic.clone().into(),
                event.email.clone().into(),
                target.map(|t| t.outbox_id).into(),
                target.map(|t| t.run_id).into(),
                target.map(|t| t.customer_id).into(),
                source.into(),
                event.matched_by.into(),
                fingerprint.into(),
            ])
            .on_conflict(OnConflict::column("fingerprint").do_nothing().to_owned())
            .to_owned();
        let new = txn.execute(&insert).await?.rows_affected() == 1;
        if new {
            self.apply(&txn, event, source).await?;
            let trips = matches!(event.kind, EventKind::Complaint | EventKind::HardBounce);
            if let (true, Some(target)) = (trips, target) {
                breaker::check(&txn, target.run_id, &self.rules.breaker).await?;
            }
        }
        txn.commit().await?;
        Ok(new)
    }

    /// What a new event does to the address it is about.
    async fn apply<C: ConnectionTrait>(&self, db: &C, event: &Event, source: &str) -> Result<(), DbErr> {
        let Some(email) = event.email.as_deref() else { return Ok(()) };
        let customer_id = event.target.as_ref().map(|t| t.customer_id);
        let source = format!("feedback:{source}");
        match event.kind {
            EventKind::HardBounce => unsubscribe::suppress(db, email, customer_id, "bounced", &source).await,
            EventKind::SoftBounce if self.soft_bounces(db, email).await? >= i64::from(self.rules.soft_bounce_limit) => {
                unsubscribe::suppress(db, email, customer_id, "bounced", &source).await
            }
            EventKind::Complaint => unsubscribe::suppress(db, email, customer_id, "complained", &source).await,
            EventKind::Unsubscribe => unsubscribe::opt_out(db, email, customer_id, &source).await,
            EventKind::SoftBounce | EventKind::Aside => Ok(()),
        }
    }

    /// Soft bounces of `email` within the window, this one included.
    async fn soft_bounces<C: ConnectionTrait>(&self, db: &C, email: &str) -> Result<i64, DbErr> {
        let since = Utc::now() - self.rules.soft_bounce_window;
        let count = Query::select()
            .expr(Expr::col("id").count())
            .from("feedback_events")
            .and_where(Expr::col("email").eq(email))
            .and_where(Expr::col("kind").eq(EventKind::SoftBounce.as_str()))
            .and_where(Expr::col("received_at").gte(since))
            .to_owned();
        let row = db.query_one(&count).await?.ok_or_else(|| DbErr::RecordNotFound("a count".into()))?;
        row.try_get_by_index(0)
    }
}

/// The outbox row named by a Message-ID patron made for this installation:
/// `<outbox.run.installation.patron@domain>`.
fn outbox_id_of_message_id(message_id: &str, installation: &str) -> Option<i64> {
    let inner = message_id.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, _domain) = inner.split_once('@')?;
    let mut parts = local.split('.');
    let (outbox, _run, install, tag) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (install == installation && tag == "patron" && parts.next().is_none()).then(|| outbox.parse().ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_names_its_outbox_row_only_for_this_installation() {
        assert_eq!(outbox_id_of_message_id("<17.3.abc.patron@mail.example.com>", "abc"), Some(17));
        assert_eq!(outbox_id_of_message_id(" <17.3.abc.patron@mail.example.com> ", "abc"), Some(17));
        assert_eq!(outbox_id_of_message_id("<17.3.abc.patron@mail.example.com>", "xyz"), None);
        assert_eq!(outbox_id_of_message_id("<17.3.abc.other@mail.example.com>", "abc"), None);
        assert_eq!(outbox_id_of_message_id("<x.3.abc.patron@mail.example.com>", "abc"), None);
        assert_eq!(outbox_id_of_message_id("<20261201.3F2A1@mx.example.com>", "abc"), None);
    }
}
