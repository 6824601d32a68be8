//! The sender: claims due outbox rows, renders each message, hands it to the
//! transport with bounded concurrency and rate, and records what happened.
//!
//! Three parts run at once:
//! - the claimer (the caller's task) claims a batch, loads its recipients,
//!   re-checks suppressions and consent, renders, and queues the messages;
//! - `concurrency` workers each send one message at a time, after checking
//!   suppressions and consent once more just before its content goes;
//! - the recorder writes results in group commits and, beside each commit,
//!   makes those last checks for the workers' next messages, all in one
//!   statement ([`refusal`]): a worker hands in its result together with
//!   its next message, and gets back, once the result is committed, whether
//!   that message may go.
//!
//! A worker writes its next message's content only once the result of its
//! last one is committed (the envelope goes while the commit runs: the
//! server takes nothing before the content's end), so when patron dies at
//! most `concurrency` messages have been accepted by the server without
//! being recorded: those, and only those, are sent twice when their lease
//! runs out. While rows wait in the queue their leases are renewed, so that
//! no sender claims a row that is held.
//!
//! A pass ends early on a stop (SIGTERM, Ctrl-C) or when the server cannot
//! be used at all; every row not yet handed to an SMTP session then goes
//! back to the outbox at once, with its attempt not counted.
//!
//! Time comes from the options' [`Clock`]. Each claim is preceded by the
//! expiry of the rows past their `expires_at`, and the claim takes none of
//! them; a worker reads the clock once more right before a message's SMTP
//! transaction, so a message that waited in the queue past its expiry is
//! recorded `expired`, never sent. A row whose campaign's send window is
//! closed when the claimer comes to it (a retry, a dead sender's row, a
//! backlog past the window's end) goes back with its next opening as
//! `not_before`; a queued one whose window closed before a worker took it
//! goes back unsent and is deferred when claimed again.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sea_orm::sea_query::{Cond, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use tokio::sync::{Mutex, Notify, mpsc, oneshot, watch};

use super::breaker;
use super::compose::{self, Envelope};
use super::held::{Held, renew_loop};
use super::outbox::{self, Claimed, Clock, Fate};
use super::pause::{self, Backoff};
use super::recorder::{Ask, Checked, RECORDER_STOPPED, Record, Report, spawn_recorder};
use super::refusal::{Check, Refusal};
use super::result_log;
use super::transport::{Outcome, Session, Transport};
use super::unsubscribe::{Signer, Token};
use super::verp::ReturnPath;
use crate::campaign::{Campaign, Catalog, Kind};
use crate::config::Loaded;
use crate::dkim::Dkim;
use crate::message::Templates;
use crate::message::context::{self, Recipient};

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
    /// Send again a message whose reply was lost (at most one copy per such loss).
    pub resend_unknown: bool,
    /// The VERP envelope sender, when configured.
    pub return_path: Option<ReturnPath>,
    /// Signs every message when `[dkim]` is configured.
    pub dkim: Option<Arc<Dkim>>,
    /// When refusals at `RCPT` pause a campaign, as bounces reported later do.
    pub breaker: breaker::Limits,
    /// The moment rows are due, expire and are recorded at: the system clock,
    /// or a fixed moment for a rehearsal (`patron send --now`).
    pub clock: Clock,
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
            resend_unknown: delivery.resend_unknown,
            return_path: ReturnPath::from_settings(loaded),
            dkim: loaded.secrets.dkim.clone(),
            breaker: breaker::Limits::from_settings(&settings.feedback),
            clock: Clock::System,
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

/// Sending needs the unsubscribe key: every message carries an unsubscribe link.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} message(s) wait to be sent, and every message carries an unsubscribe link (List-Unsubscribe): \
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

/// A message ready for a worker, a row settled without sending, or one
/// whose send window is closed now.
enum Work {
    Send(Job),
    Settled { row: Claimed, fate: Fate },
    Deferred { row: Claimed, until: DateTime<Utc> },
}

/// A rendered message and what its last check needs.
struct Job {
    row: Claimed,
    message: lettre::Message,
    message_id: String,
    email: String,
    marketing: bool,
    topic: String,
    /// When the campaign's send window closes, if it has one: a message
    /// still queued then goes back, to be deferred to the next opening.
    window_closes: Option<DateTime<Utc>>,
}

impl Job {
    fn check(&self) -> Check {
        Check {
            outbox_id: self.row.id,
            run_id: self.row.run_id,
            customer_id: self.row.customer_id,
            email: self.email.clone(),
            marketing: self.marketing,
            topic: self.topic.clone(),
        }
    }
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

    /// Sends what is due. `until_empty`: keep going (waiting for retries, for
    /// the leases of a dead sender, and with back-off for a server that cannot
    /// be used) until nothing is pending. Otherwise one pass, which ends early
    /// when the server cannot be used (`Report::paused`). A `true` on `stop`
    /// ends the drain: rows not yet handed to the server go back at once.
    pub async fn drain(&self, until_empty: bool, mut stop: watch::Receiver<bool>) -> anyhow::Result<Report> {
        self.check_unsubscribe_secret().await?;
        let installation = crate::db::installation_id(&self.db).await?;
        let mut report = Report::default();
        let mut backoff = Backoff::default();
        loop {
            let pass = self.pass(until_empty, stop.clone(), &installation).await?;
            if pass.reached_server() {
                backoff.reset();
            }
            report.add(pass);
            let Some(reason) = report.paused.clone() else { break };
            if !until_empty || *stop.borrow() {
                break;
            }
            let (wait, since) = backoff.next(Utc::now());
            pause_logged(&self.db, &reason, since, wait).await;
            tokio::select! {
                _ = tokio::time::sleep(wait.to_std().unwrap_or_default()) => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        }
        let resumed = report.paused.is_none() && (report.any() || backoff.is_paused());
        if resumed && let Err(error) = pause::clear(&self.db, Utc::now()).await {
            tracing::warn!(%error, "clearing the sender's pause");
        }
        Ok(report)
    }

    /// One pass: claims and sends until nothing is due (or, with
    /// `until_empty`, until nothing is pending), a stop, or a server that
    /// cannot be used.
    async fn pass(&self, until_empty: bool, stop: watch::Receiver<bool>, installation: &str) -> anyhow::Result<Report> {
        let held = Arc::new(Held::default());
        let halt = Arc::new(Halt::default());
        let stop_watch = tokio::spawn(halt.clone().follow(stop));
        // Room for a whole claim: the claimer prepares the next one while
        // the workers send this one, instead of leaving them waiting.
        let queue = Ord::max(self.options.claim_size() as usize, self.options.concurrency * 4);
        let (work_tx, work_rx) = mpsc::channel::<Work>(queue);
        let (record_tx, record_rx) = mpsc::channel::<Record>(self.options.concurrency * 4);
        let clock = self.options.clock;
        // Nothing more can be recorded: the claimer stops (it may be waiting for
        // room in the queue of workers that are gone, or for them to go idle)
        // and the pass ends with the error.
        let broken = {
            let halt = halt.clone();
            move || halt.set(Halted::Failed)
        };
        let recorder = spawn_recorder(self.db.clone(), record_rx, held.clone(), broken, self.options.breaker, clock);
        let renewer = tokio::spawn(renew_loop(self.db.clone(), held.clone(), self.options.lease, clock));
        let (recorded_tx, recorded_rx) = oneshot::channel();
        let folder = tokio::spawn(result_log::fold_until(self.db.clone(), recorded_rx));
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
                    held: held.clone(),
                    halt: halt.clone(),
                };
                tokio::spawn(worker.run(work_rx.clone()))
            })
            .collect();
        let claimed = self.claim_loop(until_empty, installation, &work_tx, &record_tx, &held, &halt).await;
        // Whatever no worker has started on goes back now, not when its lease runs out.
        let unsent = held.take_queued();
        let released = outbox::release(&self.db, &unsent, clock.now()).await;
        if !unsent.is_empty() {
            tracing::info!(rows = unsent.len(), "gave back the messages not yet handed to the server");
        }
        drop(work_tx);
        for worker in workers {
            worker.await?;
        }
        drop(record_tx);
        let recorded = recorder.await?;
        let _ = recorded_tx.send(());
        let folded = folder.await?;
        renewer.abort();
        stop_watch.abort();
        let mut report = recorded?;
        report.expired += claimed?;
        released?;
        folded?;
        report.paused = halt.paused();
        Ok(report)
    }

    async fn claim_loop(
        &self,
        until_empty: bool,
        installation: &str,
        work_tx: &mpsc::Sender<Work>,
        record_tx: &mpsc::Sender<Record>,
        held: &Held,
        halt: &Halt,
    ) -> anyhow::Result<u64> {
        let mut cache = TemplateCache::default();
        let clock = self.options.clock;
        let mut expired = 0;
        while !halt.is_halted() {
            // Expired rows first: the claim skips them, and they are counted where the others are.
            let gone = outbox::expire(&self.db, clock.now()).await?;
            if gone > 0 {
                tracing::info!(rows = gone, "messages expired unsent");
            }
            expired += gone;
            let rows = outbox::claim(&self.db, self.options.claim_size(), self.options.lease, clock.now()).await?;
            if rows.is_empty() {
                tokio::select! {
                    _ = held.idle() => {}
                    _ = halt.wait() => return Ok(expired),
                }
                // A fixed clock never comes to what is due later.
                if !until_empty || clock.is_fixed() {
                    return Ok(expired);
                }
                // The results still in the log would look like rows other senders hold.
                result_log::fold(&self.db).await?;
                match outbox::next_due(&self.db, clock.now()).await? {
                    None => return Ok(expired),
                    Some(at) => {
                        let wait =
                            (at - clock.now()).to_std().unwrap_or_default().min(std::time::Duration::from_secs(1));
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = halt.wait() => {}
                        }
                        continue;
                    }
                }
            }
            tracing::debug!(rows = rows.len(), "claimed outbox rows");
            held.add(&rows);
            let mut deferred: HashMap<DateTime<Utc>, Vec<Claimed>> = HashMap::new();
            for work in self.prepare(rows, &mut cache, installation, clock.now()).await? {
                match work {
                    Work::Settled { row, fate } => {
                        held.start(row.id);
                        let _ = record_tx.send(Record::Done { row, fate, ask: None }).await;
                    }
                    Work::Deferred { row, until } => deferred.entry(until).or_default().push(row),
                    send => {
                        tokio::select! {
                            sent = work_tx.send(send) => {
                                if sent.is_err() {
                                    anyhow::bail!("the senders stopped unexpectedly");
                                }
                            }
                            _ = halt.wait() => return Ok(expired),
                        }
                    }
                }
            }
            for (until, rows) in deferred {
                tracing::debug!(rows = rows.len(), %until, "send window closed: messages wait for it to open");
                outbox::defer(&self.db, &rows, until, clock.now()).await?;
                held.remove(rows.iter().map(|row| row.id));
            }
        }
        Ok(expired)
    }

    async fn check_unsubscribe_secret(&self) -> anyhow::Result<()> {
        if self.signer.is_some() {
            return Ok(());
        }
        let pending = Query::select()
            .expr(Expr::col(("outbox", "id")).count())
            .from("outbox")
            .and_where(Expr::col(("outbox", "state")).is_in(outbox::PENDING_STATES))
            .to_owned();
        let count: i64 = self.db.query_one(&pending).await?.map_or(Ok(0), |row| row.try_get_by_index(0))?;
        if count > 0 { Err(MissingUnsubscribeSecret(count as u64).into()) } else { Ok(()) }
    }

    /// Turns claimed rows into messages, or settles them when they must not go.
    async fn prepare(
        &self,
        rows: Vec<Claimed>,
        cache: &mut TemplateCache,
        installation: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<Work>> {
        let runs = run_campaigns(&self.db, &rows).await?;
        let customer_ids: Vec<i64> = rows.iter().map(|r| r.customer_id).collect();
        let model_id = crate::model::registry::active(&self.db).await?.map(|m| m.id);
        let recipients = context::load(&self.db, &customer_ids, model_id).await?;
        let suppressed = suppressed_customers(&self.db, recipients.values()).await?;
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
                work.push(settle(retry_or_fail(&self.options, &row, error, now)));
                continue;
            };
            if suppressed.contains(&recipient.customer.id) {
                work.push(settle(Fate::Suppressed { reason: "the address is suppressed".into() }));
                continue;
            }
            if recipient.customer.erased_at.is_some() {
                work.push(settle(Fate::Suppressed { reason: "the customer was erased".into() }));
                continue;
            }
            if campaign.kind == Kind::Marketing && !recipient.customer.marketing_consent {
                work.push(settle(Fate::Suppressed { reason: "no marketing consent".into() }));
                continue;
            }
            // The campaign's window as the file says now: a retry or a backlog that
            // reaches past its end waits for the next opening.
            let mut window_closes = None;
            if let Some(window) = &campaign.send_window {
                let zone = window.zone_for(campaign.timezone, customer_zone(recipient));
                let opening = window.opening(now, zone);
                if opening > now {
                    work.push(Work::Deferred { row, until: opening });
                    continue;
                }
                window_closes = Some(window.closing(now, zone));
            }
            let message_id = compose::message_id(row.id, row.run_id, installation, &self.options.message_id_domain);
            let marketing = campaign.kind == Kind::Marketing;
            match self.message_for(&row, &message_id, campaign, recipient, cache) {
                Ok(message) => {
                    let email = recipient.customer.email.clone();
                    let topic = campaign.topic.clone();
                    work.push(Work::Send(Job { row, message, message_id, email, marketing, topic, window_closes }))
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
            let token = Token {
                customer_id: row.customer_id,
                campaign: campaign.name.clone(),
                topic: Some(campaign.topic.clone()),
            };
            let link = self.signer.as_ref().map(|s| s.link(&self.options.public_url, &token)).unwrap_or_default();
            let variables = recipient.variables(campaign.info(), variant, &link);
            let rendered = compose::render(&templates, &variables)?;
            let customer = &recipient.customer;
            let envelope = Envelope {
                from: &message.from,
                reply_to: message.reply_to.as_deref(),
                to_name: compose::display_name(customer.first_name.as_deref(), customer.last_name.as_deref()),
                to_email: &customer.email,
                message_id,
                // Every message, loyalty mail too (RFC 8058 one-click).
                unsubscribe: self
                    .signer
                    .is_some()
                    .then_some((link.as_str(), self.options.unsubscribe_mailto.as_deref())),
                return_path: self.options.return_path.as_ref().map(|r| r.address(row.id)),
            };
            let mut message = compose::compose(&envelope, rendered)?;
            if let Some(dkim) = &self.options.dkim {
                dkim.sign(&mut message);
            }
            Ok(message)
        })
    }
}

fn retry_or_fail(options: &Options, row: &Claimed, error: String, now: DateTime<Utc>) -> Fate {
    if row.attempts as u32 >= options.max_attempts {
        Fate::Failed { error: format!("gave up after {} attempts: {error}", row.attempts), bounced: None }
    } else {
        let at = now + outbox::backoff(row.attempts, options.retry_after, options.retry_max);
        Fate::Retry { at, error }
    }
}

/// The recipient's `timezone` attribute, when it is text.
fn customer_zone(recipient: &Recipient) -> Option<&str> {
    recipient.customer.attributes.get(crate::campaign::window::TIMEZONE_ATTRIBUTE)?.as_str()
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

/// The suppressed customers among the recipients.
async fn suppressed_customers<'a>(
    db: &DatabaseConnection,
    recipients: impl Iterator<Item = &'a Recipient>,
) -> Result<HashSet<i64>, DbErr> {
    let recipients: Vec<&Recipient> = recipients.collect();
    let mut suppressed = HashSet::new();
    for chunk in recipients.chunks(1000) {
        let by_email: HashMap<String, i64> =
            chunk.iter().map(|r| (r.customer.email.to_lowercase(), r.customer.id)).collect();
        let select = Query::select()
            .columns(["email", "customer_id", "reason"])
            .from("suppressions")
            .cond_where(
                Cond::any()
                    .add(Expr::col("email").is_in(by_email.keys().cloned()))
                    .add(Expr::col("customer_id").is_in(chunk.iter().map(|r| r.customer.id))),
            )
            .to_owned();
        for row in db.query_all(&select).await? {
            let email: String = row.try_get("", "email")?;
            let customer_id: Option<i64> = row.try_get("", "customer_id")?;
            let reason: String = row.try_get("", "reason")?;
            suppressed.extend(by_email.get(&email));
            if reason != "bounced" {
                suppressed.extend(customer_id);
            }
        }
    }
    Ok(suppressed)
}

struct Worker {
    transport: Arc<Transport>,
    options: Options,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    record_tx: mpsc::Sender<Record>,
    held: Arc<Held>,
    halt: Arc<Halt>,
}

/// A message a worker took while its last result was being written.
enum Carried {
    /// Checked with that result: the answer comes with its commit.
    Asked(Job, oneshot::Receiver<Option<Checked>>),
    /// Not checked yet (the rate did not allow it then).
    Unchecked(Job),
}

/// What a worker does with a message once its last check is known.
enum Decision {
    Send,
    /// Settled without sending.
    Settle(Fate),
    /// Not sent; the row goes back without spending its attempt.
    GiveBack,
    /// Not this worker's any more (the pass halted and gave it back).
    Drop,
}

/// How a worker's message ended.
enum Step {
    /// A result to record.
    Settled(Claimed, Fate),
    /// Nothing to record: given back or dropped.
    Unsettled,
    /// The recorder is gone.
    Stopped,
}

impl Worker {
    async fn run(self, work_rx: Arc<Mutex<mpsc::Receiver<Work>>>) {
        let mut session = Session::default();
        let mut carried: Option<Carried> = None;
        loop {
            let step = match carried.take() {
                Some(Carried::Asked(job, answered)) => self.send_after_commit(&mut session, job, answered).await,
                Some(Carried::Unchecked(job)) => self.send_alone(&mut session, job).await,
                None => match self.take(&work_rx).await {
                    Some(job) => self.send_alone(&mut session, job).await,
                    None => return,
                },
            };
            let (row, fate) = match step {
                Step::Settled(row, fate) => (row, fate),
                Step::Unsettled => continue,
                Step::Stopped => return,
            };
            // The next message is checked in the same round trip as this result.
            let next = self.take_ready(&work_rx);
            let asked = next.is_some() && self.may_send_now();
            let (answer, answered) = oneshot::channel();
            let ask = Ask { next: next.as_ref().filter(|_| asked).map(Job::check), answer };
            if self.record_tx.send(Record::Done { row, fate, ask: Some(ask) }).await.is_err() {
                return;
            }
            carried = match next {
                Some(job) if asked => Some(Carried::Asked(job, answered)),
                next => {
                    // Nothing more until this result is committed.
                    if answered.await.is_err() {
                        return;
                    }
                    next.map(Carried::Unchecked)
                }
            };
        }
    }

    /// A message checked on its own, then sent if it may go.
    async fn send_alone(&self, session: &mut Session, job: Job) -> Step {
        let Some(checked) = self.check_alone(&job).await else { return Step::Unsettled };
        let now = self.options.clock.now();
        let Job { row, message, message_id, email, window_closes, .. } = job;
        let decision = match self.decide(&row, window_closes, checked, now) {
            Decision::Send => {
                let verdict = std::future::ready(Decision::Send);
                self.deliver(session, &row, message, message_id, email, verdict).await
            }
            decision => decision,
        };
        self.conclude(row, decision).await
    }

    /// A message checked with the worker's last result. Its SMTP transaction
    /// begins while that result is committed, and its content goes only
    /// once the commit and the check are answered: this is what bounds the
    /// duplicates after a crash by the concurrency.
    async fn send_after_commit(
        &self,
        session: &mut Session,
        job: Job,
        answered: oneshot::Receiver<Option<Checked>>,
    ) -> Step {
        // The last look at the clock before the SMTP transaction: a row
        // claimed before its expiry may have waited past it in the queue.
        let now = self.options.clock.now();
        let Job { row, message, message_id, email, window_closes, .. } = job;
        let verdict = async {
            let checked = answered.await.ok().flatten().unwrap_or_else(|| Err(RECORDER_STOPPED.to_owned()));
            self.decide(&row, window_closes, checked, now)
        };
        let due = row.expires_at.is_none_or(|expires_at| now < expires_at) && window_closes.is_none_or(|c| now < c);
        let decision = if due {
            self.deliver(session, &row, message, message_id, email, verdict).await
        } else {
            // Settled without a transaction.
            verdict.await
        };
        self.conclude(row, decision).await
    }

    /// What becomes of a message once its last check is known. From here on
    /// a row to send is this worker's: a halt no longer gives it back.
    fn decide(
        &self,
        row: &Claimed,
        window_closes: Option<DateTime<Utc>>,
        checked: Checked,
        now: DateTime<Utc>,
    ) -> Decision {
        if self.halt.is_halted() || !self.held.start(row.id) {
            return Decision::Drop;
        }
        match checked {
            Ok(Refusal::Never(reason)) => Decision::Settle(Fate::Suppressed { reason: reason.into() }),
            Ok(Refusal::NotNow) => Decision::GiveBack,
            Ok(Refusal::None) if row.expires_at.is_some_and(|expires_at| now >= expires_at) => {
                Decision::Settle(Fate::Expired)
            }
            // Given back; claimed again, it is deferred to the next opening.
            Ok(Refusal::None) if window_closes.is_some_and(|closes| now >= closes) => Decision::GiveBack,
            Ok(Refusal::None) => Decision::Send,
            Err(error) => Decision::Settle(retry_or_fail(&self.options, row, error, now)),
        }
    }

    /// A message's fate to record, or its row given back.
    async fn conclude(&self, row: Claimed, decision: Decision) -> Step {
        match decision {
            Decision::Settle(fate) => Step::Settled(row, fate),
            Decision::GiveBack => match self.record_tx.send(Record::Release { row }).await {
                Ok(()) => Step::Unsettled,
                Err(_) => Step::Stopped,
            },
            Decision::Send | Decision::Drop => Step::Unsettled,
        }
    }

    /// The next message in the queue, waiting for one; `None` when the queue is closed.
    async fn take(&self, work_rx: &Mutex<mpsc::Receiver<Work>>) -> Option<Job> {
        loop {
            match work_rx.lock().await.recv().await? {
                Work::Send(job) if self.held.is_queued(job.row.id) => return Some(job),
                _ => continue, // given back on a halt
            }
        }
    }

    /// The next message if one is queued now. Never waits: a worker waiting
    /// for the queue holds its lock, and the queue is empty then.
    fn take_ready(&self, work_rx: &Mutex<mpsc::Receiver<Work>>) -> Option<Job> {
        let mut work_rx = work_rx.try_lock().ok()?;
        while let Ok(work) = work_rx.try_recv() {
            if let Work::Send(job) = work
                && self.held.is_queued(job.row.id)
            {
                return Some(job);
            }
        }
        None
    }

    /// Whether the rate allows a message now (taking its place if it does).
    fn may_send_now(&self) -> bool {
        self.limiter.as_ref().is_none_or(|limiter| limiter.check().is_ok())
    }

    /// Waits for the rate, then has the message checked on its own; `None`
    /// when the pass is halted meanwhile (the row is given back with the
    /// other queued ones).
    async fn check_alone(&self, job: &Job) -> Option<Checked> {
        if let Some(limiter) = &self.limiter {
            tokio::select! {
                _ = limiter.until_ready() => {}
                _ = self.halt.wait() => return None,
            }
        }
        let (answer, answered) = oneshot::channel();
        let stopped = || Err(RECORDER_STOPPED.to_owned());
        if self.record_tx.send(Record::Ask(Ask { next: Some(job.check()), answer })).await.is_err() {
            return Some(stopped());
        }
        Some(answered.await.ok().flatten().unwrap_or_else(stopped))
    }

    /// Hands the message to the transport once `verdict` says it may go:
    /// what became of it (`Settle`), or `verdict`'s reason not to send it.
    /// When the server cannot be used at all the pass is halted and the row
    /// goes back without spending its attempt.
    async fn deliver(
        &self,
        session: &mut Session,
        row: &Claimed,
        message: lettre::Message,
        message_id: String,
        email: String,
        verdict: impl Future<Output = Decision>,
    ) -> Decision {
        let go = async {
            match verdict.await {
                Decision::Send => Ok(()),
                decision => Err(decision),
            }
        };
        let outcome = match self.transport.send_when(session, message, &row.id.to_string(), go).await {
            Ok(outcome) => outcome,
            Err(decision) => return decision,
        };
        let fate = match outcome {
            Outcome::Accepted(reply) => Fate::Sent { message_id, reply },
            Outcome::Temporary(error) => {
                tracing::debug!(outbox_id = row.id, attempt = row.attempts, %error, "temporary delivery failure");
                retry_or_fail(&self.options, row, error, self.options.clock.now())
            }
            Outcome::Rejected { reply, bad_recipient } => {
                tracing::debug!(outbox_id = row.id, %reply, "message rejected");
                Fate::Failed { error: reply, bounced: bad_recipient.then_some(email) }
            }
            Outcome::Unknown(error) => {
                tracing::warn!(outbox_id = row.id, %error, "the server's reply to a message was lost");
                if self.options.resend_unknown {
                    retry_or_fail(&self.options, row, error, self.options.clock.now())
                } else {
                    Fate::Unknown { message_id, error }
                }
            }
            Outcome::Unusable(reason) => {
                self.halt.pause(reason);
                return Decision::GiveBack;
            }
        };
        Decision::Settle(fate)
    }
}

/// Logs a pause and records it for `status`.
pub async fn pause_logged(db: &DatabaseConnection, reason: &str, since: DateTime<Utc>, wait: Duration) {
    tracing::warn!(%reason, wait_seconds = wait.num_seconds(), "the SMTP server cannot be used: sending paused, no attempt spent");
    if let Err(error) = pause::record(db, reason, since, Utc::now() + wait).await {
        tracing::warn!(%error, "recording the sender's pause");
    }
}

/// Why a pass stops early: a stop was asked for, the server cannot be
/// used, or the results cannot be recorded.
#[derive(Default)]
struct Halt {
    state: std::sync::Mutex<Option<Halted>>,
    changed: Notify,
}

#[derive(Debug, Clone)]
enum Halted {
    Stopped,
    Paused(String),
    Failed,
}

impl Halt {
    fn set(&self, halted: Halted) {
        let mut state = self.state.lock().expect("not poisoned");
        if state.is_none() {
            *state = Some(halted);
        }
        drop(state);
        self.changed.notify_waiters();
    }

    fn pause(&self, reason: String) {
        self.set(Halted::Paused(reason));
    }

    fn is_halted(&self) -> bool {
        self.state.lock().expect("not poisoned").is_some()
    }

    fn paused(&self) -> Option<String> {
        match &*self.state.lock().expect("not poisoned") {
            Some(Halted::Paused(reason)) => Some(reason.clone()),
            _ => None,
        }
    }

    /// Resolves once the pass is halted.
    async fn wait(&self) {
        loop {
            let notified = self.changed.notified();
            if self.is_halted() {
                return;
            }
            notified.await;
        }
    }

    /// Halts the pass when `stop` turns true.
    async fn follow(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if stop.wait_for(|stopped| *stopped).await.is_ok() {
            self.set(Halted::Stopped);
        }
    }
}

impl crate::failure::Failure for MissingUnsubscribeSecret {
    /// The secret is a setting to provide.
    fn fault(&self) -> crate::failure::Fault {
        crate::failure::Fault::Input
    }
}
