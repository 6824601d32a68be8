//! The sender: claims due outbox rows, renders each message, hands it to the
//! transport with bounded concurrency and rate, and records what happened.
//!
//! Three parts run at once:
//! - the claimer (the caller's task) claims a batch, loads its recipients,
//!   re-checks suppressions and consent, renders, and queues the messages;
//! - `concurrency` workers each send one message at a time;
//! - the recorder writes results in small transactions (group commit).
//!
//! A worker takes its next message only once the result of its last one is
//! committed, so when patron dies at most `concurrency` messages have been
//! accepted by the server without being recorded: those, and only those,
//! are sent twice when their lease runs out.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chrono::{Duration, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use tokio::sync::{Mutex, Notify, mpsc, oneshot, watch};

use super::compose::{self, Envelope, Rendered};
use super::outbox::{self, Claimed, Fate};
use super::transport::{Outcome, Session, Transport};
use super::unsubscribe::{Signer, Token};
use crate::campaign::{Campaign, Catalog, Kind};
use crate::config::Loaded;
use crate::message::context::{self, Recipient};
use crate::message::{Part, Templates};

/// How the sender behaves; from `[delivery]`, `[http]` and `[unsubscribe]`.
#[derive(Debug, Clone)]
pub struct Options {
    pub concurrency: usize,
    pub rate_per_second: u32,
    pub max_attempts: u32,
    pub retry_after: Duration,
    pub retry_max: Duration,
    pub lease: Duration,
    pub message_id_domain: String,
    pub public_url: String,
    pub unsubscribe_mailto: Option<String>,
}

impl Options {
    pub fn from_settings(loaded: &Loaded) -> Options {
        let settings = &loaded.settings;
        let delivery = &settings.delivery;
        let mailto = &settings.unsubscribe.mailto;
        Options {
            concurrency: delivery.concurrency,
            rate_per_second: delivery.rate_per_second,
            max_attempts: delivery.max_attempts,
            retry_after: delivery.retry_after(),
            retry_max: delivery.retry_max(),
            lease: delivery.lease(),
            message_id_domain: delivery.message_id_domain.clone(),
            public_url: settings.http.public_url.clone(),
            unsubscribe_mailto: (!mailto.is_empty()).then(|| mailto.clone()),
        }
    }

    /// Rows per claim: enough to keep every worker busy, few enough to be
    /// sent well within the lease at the configured rate.
    fn claim_size(&self) -> u64 {
        let busy = (self.concurrency * 32) as u64;
        match self.rate_per_second {
            0 => busy,
            rate => {
                let within_half_lease = u64::from(rate) * Ord::max(self.lease.num_seconds(), 1) as u64 / 2;
                Ord::min(busy, Ord::max(within_half_lease, 1))
            }
        }
    }
}

/// How many rows ended in each way during one drain.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub sent: u64,
    pub retrying: u64,
    pub failed: u64,
    pub suppressed: u64,
}

/// Sending needs the unsubscribe key for marketing mail.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} marketing message(s) wait to be sent, and marketing mail needs an unsubscribe link: \
     set PATRON__UNSUBSCRIBE__SECRET or unsubscribe.secret_file"
)]
pub struct MissingUnsubscribeSecret(pub u64);

pub struct Sender {
    db: DatabaseConnection,
    transport: Arc<Transport>,
    campaigns: Catalog,
    signer: Option<Signer>,
    options: Options,
}

/// A message ready for a worker, or a row settled without sending.
enum Work {
    Send { row: Claimed, message: lettre::Message, message_id: String, email: String },
    Settled { row: Claimed, fate: Fate },
}

/// What the recorder is asked to do.
enum Record {
    Done {
        row: Claimed,
        fate: Fate,
        ack: Option<oneshot::Sender<()>>,
    },
    /// Stopped before sending: give the row back.
    Release {
        row: Claimed,
    },
}

impl Sender {
    pub fn new(
        db: DatabaseConnection,
        transport: Transport,
        campaigns: Catalog,
        signer: Option<Signer>,
        options: Options,
    ) -> Sender {
        Sender { db, transport: Arc::new(transport), campaigns, signer, options }
    }

    /// Sends what is due. `until_empty`: keep going (waiting for retries and
    /// for the leases of a dead sender) until nothing is pending. A `true` on
    /// `stop` ends the drain early: queued messages are given back unsent.
    pub async fn drain(&self, until_empty: bool, mut stop: watch::Receiver<bool>) -> anyhow::Result<Report> {
        self.check_unsubscribe_secret().await?;
        let (work_tx, work_rx) = mpsc::channel::<Work>(self.options.concurrency * 4);
        let (record_tx, record_rx) = mpsc::channel::<Record>(self.options.concurrency * 4);
        let outstanding = Arc::new(Outstanding::default());
        let recorder = tokio::spawn(record_loop(self.db.clone(), record_rx, outstanding.clone()));
        let work_rx = Arc::new(Mutex::new(work_rx));
        let limiter = NonZeroU32::new(self.options.rate_per_second)
            .map(|rate| Arc::new(RateLimiter::direct(Quota::per_second(rate))));
        let workers: Vec<_> = (0..self.options.concurrency)
            .map(|_| {
                let worker = Worker {
                    transport: self.transport.clone(),
                    options: self.options.clone(),
                    limiter: limiter.clone(),
                    record_tx: record_tx.clone(),
                    stop: stop.clone(),
                };
                tokio::spawn(worker.run(work_rx.clone()))
            })
            .collect();
        let claimed = self.claim_loop(until_empty, &work_tx, &record_tx, &outstanding, &mut stop).await;
        drop(work_tx);
        for worker in workers {
            worker.await?;
        }
        drop(record_tx);
        let report = recorder.await??;
        claimed?;
        Ok(report)
    }

    async fn claim_loop(
        &self,
        until_empty: bool,
        work_tx: &mpsc::Sender<Work>,
        record_tx: &mpsc::Sender<Record>,
        outstanding: &Outstanding,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut cache = TemplateCache::default();
        while !*stop.borrow() {
            let rows = outbox::claim(&self.db, self.options.claim_size(), self.options.lease).await?;
            if rows.is_empty() {
                outstanding.idle().await?;
                if !until_empty {
                    return Ok(());
                }
                match outbox::next_due(&self.db).await? {
                    None => return Ok(()),
                    Some(at) => {
                        let wait =
                            (at - Utc::now()).to_std().unwrap_or_default().min(std::time::Duration::from_secs(1));
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = stop.changed() => {}
                        }
                        continue;
                    }
                }
            }
            tracing::debug!(rows = rows.len(), "claimed outbox rows");
            for work in self.prepare(rows, &mut cache).await? {
                outstanding.add();
                match work {
                    Work::Settled { row, fate } => {
                        let _ = record_tx.send(Record::Done { row, fate, ack: None }).await;
                    }
                    send => {
                        if work_tx.send(send).await.is_err() {
                            anyhow::bail!("the senders stopped unexpectedly");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn check_unsubscribe_secret(&self) -> anyhow::Result<()> {
        if self.signer.is_some() {
            return Ok(());
        }
        let pending = Query::select()
            .expr(Expr::col(("outbox", "id")).count())
            .from("outbox")
            .inner_join("campaign_runs", Expr::col(("campaign_runs", "id")).equals(("outbox", "run_id")))
            .and_where(Expr::col(("outbox", "state")).is_in(outbox::PENDING_STATES))
            .and_where(Expr::col(("campaign_runs", "kind")).eq(Kind::Marketing.as_str()))
            .to_owned();
        let count: i64 = self.db.query_one(&pending).await?.map_or(Ok(0), |row| row.try_get_by_index(0))?;
        if count > 0 { Err(MissingUnsubscribeSecret(count as u64).into()) } else { Ok(()) }
    }

    /// Turns claimed rows into messages, or settles them when they must not go.
    async fn prepare(&self, rows: Vec<Claimed>, cache: &mut TemplateCache) -> anyhow::Result<Vec<Work>> {
        let runs = run_campaigns(&self.db, &rows).await?;
        let customer_ids: Vec<i64> = rows.iter().map(|r| r.customer_id).collect();
        let model_id = crate::model::registry::active(&self.db).await?.map(|m| m.id);
        let recipients = context::load(&self.db, &customer_ids, model_id).await?;
        let suppressed = suppressed_addresses(&self.db, recipients.values()).await?;
        let mut work = Vec::with_capacity(rows.len());
        for row in rows {
            let settle = |fate| Work::Settled { row: row.clone(), fate };
            let Some(recipient) = recipients.get(&row.customer_id) else {
                work.push(settle(Fate::Suppressed { reason: "the customer no longer exists".into() }));
                continue;
            };
            let campaign_name = runs.get(&row.run_id).map(String::as_str).unwrap_or_default();
            let Some(campaign) = self.campaigns.get(campaign_name) else {
                let error = format!("campaign `{campaign_name}` is not among the valid campaign files");
                work.push(settle(retry_or_fail(&self.options, &row, error)));
                continue;
            };
            if suppressed.contains(&recipient.customer.email.to_lowercase()) {
                work.push(settle(Fate::Suppressed { reason: "the address is suppressed".into() }));
                continue;
            }
            if campaign.kind == Kind::Marketing && !recipient.customer.marketing_consent {
                work.push(settle(Fate::Suppressed { reason: "no marketing consent".into() }));
                continue;
            }
            let message_id = compose::message_id(row.id, row.run_id, &self.options.message_id_domain);
            match self.message_for(&row, &message_id, campaign, recipient, cache) {
                Ok(message) => {
                    work.push(Work::Send { row, message, message_id, email: recipient.customer.email.clone() })
                }
                Err(error) => work.push(settle(Fate::Failed { error, bounced: None })),
            }
        }
        Ok(work)
    }

    fn message_for(
        &self,
        row: &Claimed,
        message_id: &str,
        campaign: &Campaign,
        recipient: &Recipient,
        cache: &mut TemplateCache,
    ) -> Result<lettre::Message, String> {
        let variant = row.variant.as_deref();
        let message = campaign.message_for(variant);
        let templates = cache.get(campaign, variant)?;
        // Rendering (bounded in work and size) and composing fail this message
        // alone, even by a panic.
        compose::guarded(|| {
            let token = Token { customer_id: row.customer_id, campaign: campaign.name.clone() };
            let link = self.signer.as_ref().map(|s| s.link(&self.options.public_url, &token)).unwrap_or_default();
            let variables = recipient.variables(campaign, variant, &link);
            let rendered = render(&templates, &variables)?;
            let customer = &recipient.customer;
            let envelope = Envelope {
                from: &message.from,
                reply_to: message.reply_to.as_deref(),
                to_name: compose::display_name(customer.first_name.as_deref(), customer.last_name.as_deref()),
                to_email: &customer.email,
                message_id,
                unsubscribe: (campaign.kind == Kind::Marketing)
                    .then_some((link.as_str(), self.options.unsubscribe_mailto.as_deref())),
            };
            compose::compose(&envelope, rendered)
        })
    }
}

fn retry_or_fail(options: &Options, row: &Claimed, error: String) -> Fate {
    if row.attempts as u32 >= options.max_attempts {
        Fate::Failed { error: format!("gave up after {} attempts: {error}", row.attempts), bounced: None }
    } else {
        let at = Utc::now() + outbox::backoff(row.attempts, options.retry_after, options.retry_max);
        Fate::Retry { at, error }
    }
}

/// Subject, HTML and text of one message; the text part is made from the
/// HTML when the campaign has no text template. A part over the render limits
/// fails the message with a reason that names the limit.
fn render(templates: &Templates, variables: &minijinja::Value) -> Result<Rendered, String> {
    let part = |part: Part| -> Result<Option<String>, String> {
        templates.render(part, variables).transpose().map_err(|e| e.reason())
    };
    // A header is one line: line breaks (and any whitespace run) become one
    // space; compose refuses the other control characters.
    let subject = part(Part::Subject)?.unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
    let html = part(Part::Html)?;
    let text = match part(Part::Text)? {
        Some(text) => text,
        None => html.as_deref().map(compose::text_from_html).transpose()?.unwrap_or_default(),
    };
    Ok(Rendered { subject, html, text })
}

/// Compiled templates per campaign and variant, for the life of a drain.
#[derive(Default)]
struct TemplateCache(HashMap<(String, Option<String>), Arc<Templates>>);

impl TemplateCache {
    fn get(&mut self, campaign: &Campaign, variant: Option<&str>) -> Result<Arc<Templates>, String> {
        let key = (campaign.name.clone(), variant.map(str::to_owned));
        if let Some(templates) = self.0.get(&key) {
            return Ok(templates.clone());
        }
        let message = campaign.message_for(variant);
        let templates = Arc::new(message.templates().map_err(|errors| {
            let first = errors.first().map(|e| e.message.clone()).unwrap_or_default();
            format!("the campaign's templates do not compile: {first}")
        })?);
        self.0.insert(key, templates.clone());
        Ok(templates)
    }
}

/// The campaign name of each run the rows belong to.
async fn run_campaigns(db: &DatabaseConnection, rows: &[Claimed]) -> Result<HashMap<i64, String>, DbErr> {
    let run_ids: HashSet<i64> = rows.iter().map(|r| r.run_id).collect();
    let select = Query::select()
        .columns(["id", "campaign"])
        .from("campaign_runs")
        .and_where(Expr::col("id").is_in(run_ids))
        .to_owned();
    db.query_all(&select).await?.iter().map(|row| Ok((row.try_get("", "id")?, row.try_get("", "campaign")?))).collect()
}

/// The suppressed addresses among the recipients' (lower case).
async fn suppressed_addresses<'a>(
    db: &DatabaseConnection,
    recipients: impl Iterator<Item = &'a Recipient>,
) -> Result<HashSet<String>, DbErr> {
    let emails: Vec<String> = recipients.map(|r| r.customer.email.to_lowercase()).collect();
    let mut suppressed = HashSet::new();
    for chunk in emails.chunks(2000) {
        let select = Query::select()
            .column("email")
            .from("suppressions")
            .and_where(Expr::col("email").is_in(chunk.iter().cloned()))
            .to_owned();
        for row in db.query_all(&select).await? {
            suppressed.insert(row.try_get_by_index(0)?);
        }
    }
    Ok(suppressed)
}

struct Worker {
    transport: Arc<Transport>,
    options: Options,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    record_tx: mpsc::Sender<Record>,
    stop: watch::Receiver<bool>,
}

impl Worker {
    async fn run(self, work_rx: Arc<Mutex<mpsc::Receiver<Work>>>) {
        let mut session = Session::default();
        loop {
            let work = work_rx.lock().await.recv().await;
            let Some(Work::Send { row, message, message_id, email }) = work else { return };
            if *self.stop.borrow() {
                let _ = self.record_tx.send(Record::Release { row }).await;
                continue;
            }
            if let Some(limiter) = &self.limiter {
                limiter.until_ready().await;
            }
            let fate = self.send(&mut session, &row, message, message_id, email).await;
            let (ack, acked) = oneshot::channel();
            if self.record_tx.send(Record::Done { row, fate, ack: Some(ack) }).await.is_err() {
                return;
            }
            // The next message only once this result is committed: this is
            // what bounds the duplicates after a crash by the concurrency.
            if acked.await.is_err() {
                return;
            }
        }
    }

    async fn send(
        &self,
        session: &mut Session,
        row: &Claimed,
        message: lettre::Message,
        message_id: String,
        email: String,
    ) -> Fate {
        match self.transport.send(session, message, &row.id.to_string()).await {
            Outcome::Accepted(reply) => Fate::Sent { message_id, reply },
            Outcome::Temporary(error) => {
                tracing::debug!(outbox_id = row.id, attempt = row.attempts, %error, "temporary delivery failure");
                retry_or_fail(&self.options, row, error)
            }
            Outcome::Rejected { reply, bad_recipient } => {
                tracing::debug!(outbox_id = row.id, %reply, "message rejected");
                Fate::Failed { error: reply, bounced: bad_recipient.then_some(email) }
            }
        }
    }
}

/// Rows queued or in flight, so that the claimer can wait for all results.
#[derive(Default)]
struct Outstanding {
    count: AtomicUsize,
    changed: Notify,
    /// The recorder stopped on an error: nothing more will be recorded.
    broken: AtomicBool,
}

impl Outstanding {
    fn add(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    fn done(&self, n: usize) {
        self.count.fetch_sub(n, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn break_down(&self) {
        self.broken.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Waits until every queued row is recorded; an error if the recorder broke down.
    async fn idle(&self) -> anyhow::Result<()> {
        loop {
            let notified = self.changed.notified();
            if self.broken.load(Ordering::SeqCst) {
                anyhow::bail!("recording delivery results failed");
            }
            if self.count.load(Ordering::SeqCst) == 0 {
                return Ok(());
            }
            notified.await;
        }
    }
}

/// Most results written per transaction.
const RECORD_BATCH: usize = 256;

async fn record_loop(
    db: DatabaseConnection,
    record_rx: mpsc::Receiver<Record>,
    outstanding: Arc<Outstanding>,
) -> anyhow::Result<Report> {
    let recorded = record_all(&db, record_rx, &outstanding).await;
    if recorded.is_err() {
        outstanding.break_down();
    }
    recorded
}

async fn record_all(
    db: &DatabaseConnection,
    mut record_rx: mpsc::Receiver<Record>,
    outstanding: &Outstanding,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while record_rx.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let mut results = Vec::with_capacity(batch.len());
        let mut acks = Vec::new();
        let mut released = Vec::new();
        for record in batch.drain(..) {
            match record {
                Record::Done { row, fate, ack } => {
                    count(&mut report, &fate);
                    results.push((row, fate));
                    acks.extend(ack);
                }
                Record::Release { row } => released.push(row),
            }
        }
        outbox::record(db, &results).await?;
        outbox::release(db, &released).await?;
        for ack in acks {
            let _ = ack.send(());
        }
        outstanding.done(results.len() + released.len());
    }
    Ok(report)
}

fn count(report: &mut Report, fate: &Fate) {
    match fate {
        Fate::Sent { .. } => report.sent += 1,
        Fate::Retry { .. } => report.retrying += 1,
        Fate::Failed { .. } => report.failed += 1,
        Fate::Suppressed { .. } => report.suppressed += 1,
    }
}
