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

pub mod imap;
pub mod maildir;
pub mod report;
pub mod webhook;

use std::collections::{BTreeSet, HashMap};

use chrono::{Duration, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, JoinType, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr};
use sha2::{Digest, Sha256};

use crate::config::Loaded;
use crate::consent::{self, Origin, Source, suppressions, suppressions::Reason};
use crate::delivery::breaker;
pub use crate::delivery::feedback_log::EventKind;
use crate::delivery::feedback_log::{self, NewEvent};
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
            breaker: breaker::Limits::from_settings(&settings.feedback),
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

/// What one pass over a mailbox (a Maildir, an IMAP folder) did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub messages: usize,
    /// Events recorded now.
    pub events: usize,
    /// Events already recorded from an earlier delivery of the same report.
    pub repeated: usize,
    /// Messages kept aside.
    pub aside: usize,
}

impl Summary {
    pub fn add(&mut self, ingested: &Ingested) {
        self.messages += 1;
        match ingested {
            Ingested::Recorded { new, repeated } => {
                self.events += new;
                self.repeated += repeated;
            }
            Ingested::Aside(_) => self.aside += 1,
        }
    }
}

/// Reads incoming messages into events and suppressions.
pub struct Intake {
    db: DatabaseConnection,
    rules: Rules,
    installation: String,
}

/// Parses messages into reports without the database, so that a reader
/// thread can parse the next batch while the intake writes one.
#[derive(Debug, Clone)]
struct Parser {
    unsubscribe_mailto: Option<String>,
}

impl Parser {
    /// The report in `bytes` and what identifies it; `envelope_recipients`
    /// are addresses the message was delivered to that its headers may not
    /// show (the pipe's `$ORIGINAL_RECIPIENT`).
    fn parse(&self, bytes: &[u8], envelope_recipients: &[String]) -> Parsed {
        let report = report::parse(bytes, self.unsubscribe_mailto.as_deref());
        let key = match &report.report_id {
            Some(id) => format!("id:{id}"),
            None => format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
        };
        let mut return_addresses = envelope_recipients.to_vec();
        return_addresses.extend(report.return_addresses.iter().cloned());
        Parsed { report, key, return_addresses }
    }
}

/// Runs with new complaints or hard bounces in a transaction: their
/// campaigns' circuit breakers are checked once it is committed, once per
/// message or batch, since a check counts the campaign's recent sends.
type Tripped = BTreeSet<i64>;

/// The outbox row a report answers.
#[derive(Debug, Clone)]
struct Target {
    outbox_id: i64,
    run_id: i64,
    customer_id: i64,
    email: String,
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
        Event {
            kind: EventKind::Aside,
            status: None,
            diagnostic: Some(reason.to_owned()),
            email: None,
            target: None,
            matched_by: None,
        }
    }

    /// The event's key: the report it came from, its kind, address and status
    /// (a message kept aside: the report alone).
    fn fingerprint(&self, report: &str) -> String {
        if self.kind == EventKind::Aside {
            return format!("{report}|aside");
        }
        let about = self.email.as_deref().unwrap_or_default();
        format!("{report}|{}|{about}|{}", self.kind.as_str(), self.status.as_deref().unwrap_or(""))
    }
}

/// A message parsed, with what identifies it.
struct Parsed {
    report: Report,
    /// The report's own Message-ID, or a hash of its bytes.
    key: String,
    /// Where it was delivered (its VERP addresses), from the envelope and its headers.
    return_addresses: Vec<String>,
}

/// A message read but not recorded yet: its events, or why it is kept aside.
enum Reading {
    Events(Vec<Event>),
    Aside(String),
}

/// Where a message may be identified: its VERP addresses, its Message-ID, its recipient.
struct Clues<'a> {
    return_addresses: &'a [String],
    message_id: Option<&'a str>,
    recipient: Option<&'a str>,
}

/// The outbox rows that a batch names by VERP token or Message-ID, fetched
/// in one query, each with the Message-ID it was sent with.
#[derive(Default)]
struct Known(HashMap<i64, (Target, Option<String>)>);

const NOT_OURS: &str = "a report about no message that patron sent (no VERP token, Message-ID or recipient of ours)";

/// Rows per multi-row statement.
const ROWS_PER_STATEMENT: usize = 500;

impl Intake {
    pub async fn new(db: DatabaseConnection, rules: Rules) -> Result<Self, DbErr> {
        let installation = crate::db::installation_id(&db).await?;
        Ok(Intake { db, rules, installation })
    }

    /// Reads one message. `source` says where it came from (`pipe`,
    /// `maildir`, ...); `envelope_recipients` are addresses it was delivered
    /// to that its headers may not show (the pipe's `$ORIGINAL_RECIPIENT`).
    pub async fn ingest(&self, bytes: &[u8], source: &str, envelope_recipients: &[String]) -> Result<Ingested, DbErr> {
        let parsed = self.parser().parse(bytes, envelope_recipients);
        let mut ingested = self.read(vec![parsed], source).await?;
        Ok(ingested.remove(0))
    }

    /// Reads several messages in one transaction (all or none of them
    /// recorded): their outbox rows are looked up in one query and their
    /// events written in one statement, so a backlog is read at the speed of
    /// the database's bulk statements rather than of one round trip per row.
    pub async fn ingest_batch(&self, messages: &[Vec<u8>], source: &str) -> Result<Vec<Ingested>, DbErr> {
        let parser = self.parser();
        let parsed = messages.iter().map(|bytes| parser.parse(bytes, &[])).collect();
        self.read(parsed, source).await
    }

    /// Keeps aside a message that is not read at all (too large, say), with the reason.
    pub async fn set_aside(&self, reason: &str, source: &str, key: &str) -> Result<Ingested, DbErr> {
        let txn = self.begin().await?;
        let mut tripped = Tripped::new();
        self.record(&txn, &[(Event::aside(reason), format!("{key}|aside"))], source, &mut tripped).await?;
        self.commit(txn, tripped).await?;
        Ok(Ingested::Aside(reason.to_owned()))
    }

    /// Records an event a provider reported by webhook.
    pub async fn ingest_event(&self, event: &ProviderEvent, source: &str) -> Result<Ingested, DbErr> {
        let report_key = format!("{source}:{}", event.event_id);
        let txn = self.begin().await?;
        let email = event.recipient.to_lowercase();
        let named = event.message_id.as_deref().and_then(|m| outbox_id_of_message_id(m, &self.installation));
        let known = Known::fetch(&txn, named.into_iter().collect()).await?;
        let clues = Clues { return_addresses: &[], message_id: event.message_id.as_deref(), recipient: Some(&email) };
        let found = self.find_target(&txn, &clues, &known).await?;
        let reading = if found.is_none() && event.kind != EventKind::Unsubscribe {
            Reading::Aside(NOT_OURS.into())
        } else {
            let (target, matched_by) = found.map_or((None, None), |(t, m)| (Some(t), Some(m)));
            let email = Some(target.as_ref().map_or(email, |t| t.email.to_lowercase()));
            let (status, diagnostic) = (event.status.clone(), event.diagnostic.clone());
            Reading::Events(vec![Event { kind: event.kind, status, diagnostic, email, target, matched_by }])
        };
        let mut ingested = self.record_readings(txn, vec![(reading, report_key)], source).await?;
        Ok(ingested.remove(0))
    }

    /// What parses messages for this intake.
    fn parser(&self) -> Parser {
        Parser { unsubscribe_mailto: self.rules.unsubscribe_mailto.clone() }
    }

    /// The outbox rows a message names: by its VERP addresses and the Message-ID it quotes.
    fn named_rows(&self, parsed: &Parsed) -> Vec<i64> {
        let verp = parsed.return_addresses.iter().filter_map(|a| self.rules.return_path.as_ref()?.outbox_id(a));
        let quoted =
            parsed.report.original_message_id.as_deref().and_then(|m| outbox_id_of_message_id(m, &self.installation));
        verp.chain(quoted).collect()
    }

    /// Reads parsed messages in one transaction; what became of each.
    async fn read(&self, parsed: Vec<Parsed>, source: &str) -> Result<Vec<Ingested>, DbErr> {
        let txn = self.begin().await?;
        let known = Known::fetch(&txn, parsed.iter().flat_map(|p| self.named_rows(p)).collect()).await?;
        let mut readings = Vec::with_capacity(parsed.len());
        for message in parsed {
            let reading = self.reading(&txn, &message, &known).await?;
            readings.push((reading, message.key));
        }
        self.record_readings(txn, readings, source).await
    }

    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        crate::db::begin_write(&self.db).await
    }

    /// Records the readings (each with its report's key), commits, and checks
    /// the circuit breakers of the runs that drew complaints or hard bounces.
    async fn record_readings(
        &self,
        txn: DatabaseTransaction,
        readings: Vec<(Reading, String)>,
        source: &str,
    ) -> Result<Vec<Ingested>, DbErr> {
        let mut outcomes = Vec::with_capacity(readings.len());
        let mut rows = Vec::new();
        let mut owner = Vec::new();
        for (index, (reading, key)) in readings.into_iter().enumerate() {
            let events = match reading {
                Reading::Events(events) => {
                    outcomes.push(Ingested::Recorded { new: 0, repeated: 0 });
                    events
                }
                Reading::Aside(reason) => {
                    let event = Event::aside(&reason);
                    outcomes.push(Ingested::Aside(reason));
                    vec![event]
                }
            };
            for event in events {
                let fingerprint = event.fingerprint(&key);
                rows.push((event, fingerprint));
                owner.push(index);
            }
        }
        let mut tripped = Tripped::new();
        let fresh = self.record(&txn, &rows, source, &mut tripped).await?;
        self.commit(txn, tripped).await?;
        for (index, new) in owner.into_iter().zip(fresh) {
            if let Ingested::Recorded { new: recorded, repeated } = &mut outcomes[index] {
                *(if new { recorded } else { repeated }) += 1;
            }
        }
        Ok(outcomes)
    }

    /// Commits what was read, then checks the breakers of the runs it touched.
    async fn commit(&self, txn: DatabaseTransaction, tripped: Tripped) -> Result<(), DbErr> {
        txn.commit().await?;
        for run_id in tripped {
            breaker::check(&self.db, run_id, &self.rules.breaker).await?;
        }
        Ok(())
    }

    /// The events of a report, or why it is kept aside.
    async fn reading<C: ConnectionTrait>(&self, db: &C, message: &Parsed, known: &Known) -> Result<Reading, DbErr> {
        let report = &message.report;
        let failures = match &report.kind {
            Kind::NotAReport(reason) => return Ok(Reading::Aside(reason.clone())),
            Kind::UnsubscribeRequest { from } => {
                let email = Some(from.to_lowercase());
                let event = Event {
                    kind: EventKind::Unsubscribe,
                    status: None,
                    diagnostic: None,
                    email,
                    target: None,
                    matched_by: None,
                };
                return Ok(Reading::Events(vec![event]));
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
                return_addresses: &message.return_addresses,
                message_id: report.original_message_id.as_deref(),
                recipient: recipient.as_deref(),
            };
            let Some((target, matched_by)) = self.find_target(db, &clues, known).await? else {
                return Ok(Reading::Aside(NOT_OURS.into()));
            };
            let email = Some(target.email.to_lowercase());
            events.push(Event { kind, status, diagnostic, email, target: Some(target), matched_by: Some(matched_by) });
        }
        Ok(Reading::Events(events))
    }

    /// The outbox row a report answers: by VERP token, Message-ID (both among
    /// the `known` rows), then recipient.
    async fn find_target<C: ConnectionTrait>(
        &self,
        db: &C,
        clues: &Clues<'_>,
        known: &Known,
    ) -> Result<Option<(Target, &'static str)>, DbErr> {
        if let Some(return_path) = &self.rules.return_path {
            let by_token = clues.return_addresses.iter().find_map(|a| known.0.get(&return_path.outbox_id(a)?));
            if let Some((target, _)) = by_token {
                return Ok(Some((target.clone(), "verp")));
            }
        }
        if let Some(message_id) = clues.message_id
            && let Some(id) = outbox_id_of_message_id(message_id, &self.installation)
            && let Some((target, Some(sent_with))) = known.0.get(&id)
            // Stored as written in the header, with its angle brackets.
            && *sent_with == format!("<{}>", message_id.trim().trim_start_matches('<').trim_end_matches('>'))
        {
            return Ok(Some((target.clone(), "message-id")));
        }
        if let Some(recipient) = clues.recipient
            && let Some(target) = latest_sent_to(db, recipient).await?
        {
            return Ok(Some((target, "recipient")));
        }
        Ok(None)
    }

    /// Records events, each once per fingerprint, with what each new one
    /// does; whether each was new. Runs that drew a new complaint or hard
    /// bounce go into `tripped`.
    async fn record<C: ConnectionTrait>(
        &self,
        db: &C,
        events: &[(Event, String)],
        source: &str,
        tripped: &mut Tripped,
    ) -> Result<Vec<bool>, DbErr> {
        let now = Utc::now();
        let rows: Vec<NewEvent> = events
            .iter()
            .map(|(event, fingerprint)| NewEvent {
                received_at: now,
                kind: event.kind,
                status: event.status.as_deref(),
                diagnostic: event.diagnostic.as_deref(),
                email: event.email.as_deref(),
                message: event.target.as_ref().map(|t| (t.outbox_id, t.run_id, t.customer_id)),
                source,
                matched_by: event.matched_by,
                fingerprint,
            })
            .collect();
        let mut fresh = feedback_log::insert_all(db, &rows).await?;
        let mut to_suppress = Vec::new();
        let mut new = Vec::with_capacity(events.len());
        let effect_source = format!("feedback:{source}");
        for (event, fingerprint) in events {
            // The first of a fingerprint met twice in one batch is the new one.
            let is_new = fresh.remove(fingerprint.as_str());
            new.push(is_new);
            if !is_new {
                continue;
            }
            if let Some(reason) = self.suppression_for(db, event).await? {
                to_suppress.push((
                    event.email.clone().unwrap_or_default(),
                    event.target.as_ref().map(|t| t.customer_id),
                    reason,
                ));
            }
            if let (EventKind::Unsubscribe, Some(email)) = (event.kind, event.email.as_deref()) {
                // In order: what came before it in the batch is suppressed first.
                suppressions::suppress_all(db, &std::mem::take(&mut to_suppress), &effect_source).await?;
                let customer_id = event.target.as_ref().map(|t| t.customer_id);
                consent::leave_all(db, email, customer_id, &effect_source, &unsubscribe_origin(source)).await?;
            }
            if let (EventKind::Complaint | EventKind::HardBounce, Some(target)) = (event.kind, &event.target) {
                tripped.insert(target.run_id);
            }
        }
        suppressions::suppress_all(db, &to_suppress, &effect_source).await?;
        Ok(new)
    }

    /// The suppression a new event calls for, if any (an unsubscribe opts out instead).
    async fn suppression_for<C: ConnectionTrait>(&self, db: &C, event: &Event) -> Result<Option<Reason>, DbErr> {
        let Some(email) = event.email.as_deref() else { return Ok(None) };
        Ok(match event.kind {
            EventKind::HardBounce => Some(Reason::Bounced),
            EventKind::Complaint => Some(Reason::Complained),
            EventKind::SoftBounce if self.soft_bounces(db, email).await? >= i64::from(self.rules.soft_bounce_limit) => {
                Some(Reason::Bounced)
            }
            EventKind::SoftBounce | EventKind::Unsubscribe | EventKind::Aside => None,
        })
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

/// Where an unsubscribe request came from: a mailed request (the
/// List-Unsubscribe mailto, read from a pipe, Maildir or IMAP) or a provider's webhook.
fn unsubscribe_origin(source: &str) -> Origin {
    let kind = if matches!(source, "pipe" | "maildir" | "imap") { Source::Mailto } else { Source::Webhook };
    Origin::new(kind, format!("feedback:{source}"))
}

impl Known {
    /// Two lookups by primary key per few hundred rows (outbox rows, then
    /// their customers' addresses), rather than a join the planner may answer
    /// by hashing the whole customer table.
    async fn fetch<C: ConnectionTrait>(db: &C, mut ids: Vec<i64>) -> Result<Known, DbErr> {
        ids.sort_unstable();
        ids.dedup();
        let mut known = Known::default();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let rows = Query::select()
                .columns(["id", "run_id", "customer_id", "message_id"])
                .from("outbox")
                .and_where(Expr::col("id").is_in(chunk.iter().copied()))
                .to_owned();
            let rows = db.query_all(&rows).await?;
            let mut customer_ids: Vec<i64> =
                rows.iter().map(|r| r.try_get("", "customer_id")).collect::<Result<_, _>>()?;
            customer_ids.sort_unstable();
            customer_ids.dedup();
            let emails = Query::select()
                .columns(["id", "email"])
                .from("customers")
                .and_where(Expr::col("id").is_in(customer_ids))
                .to_owned();
            let emails: HashMap<i64, String> = db
                .query_all(&emails)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("", "id")?, r.try_get("", "email")?)))
                .collect::<Result<_, DbErr>>()?;
            for row in rows {
                let customer_id: i64 = row.try_get("", "customer_id")?;
                let Some(email) = emails.get(&customer_id) else { continue };
                let target = Target {
                    outbox_id: row.try_get("", "id")?,
                    run_id: row.try_get("", "run_id")?,
                    customer_id,
                    email: email.clone(),
                };
                known.0.insert(target.outbox_id, (target, row.try_get("", "message_id")?));
            }
        }
        Ok(known)
    }
}

/// The latest message sent to `recipient`, with its customer's address.
async fn latest_sent_to<C: ConnectionTrait>(db: &C, recipient: &str) -> Result<Option<Target>, DbErr> {
    let select = Query::select()
        .expr_as(Expr::col(("o", "id")), Alias::new("outbox_id"))
        .expr_as(Expr::col(("o", "run_id")), Alias::new("run_id"))
        .expr_as(Expr::col(("o", "customer_id")), Alias::new("customer_id"))
        .expr_as(Expr::col(("c", "email")), Alias::new("email"))
        .from_as("outbox", Alias::new("o"))
        .join_as(JoinType::InnerJoin, "customers", Alias::new("c"), Expr::col(("c", "id")).equals(("o", "customer_id")))
        .and_where(Expr::expr(Func::lower(Expr::col(("c", "email")))).eq(recipient.to_lowercase()))
        .and_where(Expr::col(("o", "state")).eq(crate::db::entities::outbox::State::Sent))
        .order_by(("o", "id"), Order::Desc)
        .limit(1)
        .to_owned();
    let Some(row) = db.query_one(&select).await? else { return Ok(None) };
    Ok(Some(Target {
        outbox_id: row.try_get("", "outbox_id")?,
        run_id: row.try_get("", "run_id")?,
        customer_id: row.try_get("", "customer_id")?,
        email: row.try_get("", "email")?,
    }))
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
