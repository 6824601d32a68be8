//! `patron run`: the long-running service. It wires together jobs that each
//! also run once from the command line:
//!
//! - the scheduler (leader only): campaign fires, the timed loyalty
//!   recompute, scoring and training, fresh scores before a campaign
//!   plans on stale ones, and reads of the feedback mailbox;
//! - the sender (every daemon), draining the outbox every `send_interval`,
//!   pausing with back-off while the SMTP server cannot be used, and started
//!   again if it ever dies (`/readyz` fails meanwhile);
//! - the HTTP server: unsubscribe links, `/healthz`, `/readyz`, `/metrics`;
//! - reloads of the settings (and secret files) and campaigns on SIGHUP, and
//!   of the campaigns when a file in `campaigns/` changes;
//! - systemd notifications (ready, status, watchdog).
//!
//! SIGTERM or SIGINT stops planning, gives back at once the messages not yet
//! handed to the SMTP server, lets those in flight finish within
//! `stop_timeout`, and exits 0.

pub mod demo;
mod feeds;
pub mod leader;
mod mailbox;
pub mod metrics;
mod routes;
mod shared;
pub mod systemd;
mod watch;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration as StdDuration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, watch as tokio_watch};

use crate::campaign::plan::Rules;
use crate::campaign::scheduler::Scheduler;
use crate::campaign::{Campaign, Catalog};
use crate::config::{Loaded, Typed};
use crate::delivery::pause::{self as delivery_pause, Backoff};
use crate::delivery::{self, Options, Sender, Transport};
use crate::feedback::webhook::Webhooks;
use crate::model::train::TrainRequest;
use crate::schedule::{self, Schedule};
use crate::{db, http, model, scoring, work};
use leader::Leadership;
use metrics::Metrics;

/// What every task of the daemon shares.
pub struct Daemon {
    db: DatabaseConnection,
    /// The sender's connection (see `db::connect_for_delivery`).
    delivery_db: DatabaseConnection,
    loaded: RwLock<Loaded>,
    campaigns: RwLock<Catalog>,
    /// The campaign files' errors at the last (re)load, for the dashboard.
    campaign_errors: RwLock<Vec<crate::campaign::spec::Diagnostic>>,
    metrics: Metrics,
    ready: AtomicBool,
    /// False while the sender task is dead and not yet started again.
    sender_up: AtomicBool,
    /// Bumped at each reload of the settings, so that a paused sender tries
    /// again at once with the new ones.
    reloaded: tokio_watch::Sender<u64>,
    /// This daemon's name on the ranges of shared work it takes.
    owner: work::Owner,
}

impl Daemon {
    fn loaded(&self) -> Loaded {
        self.loaded.read().expect("not poisoned").clone()
    }

    fn catalog(&self) -> Catalog {
        self.campaigns.read().expect("not poisoned").clone()
    }

    /// Re-reads the settings: defaults, the settings file when given, the
    /// environment and the secret files (a fixed SMTP password takes effect
    /// at the sender's next try). Settings that do not load leave the old
    /// ones in place.
    fn reload_settings(&self, config_file: Option<&Path>) {
        match crate::config::load(config_file) {
            Ok(new) => {
                let needing_restart = self.loaded().settings.changed_keys_needing_restart(&new.settings);
                if !needing_restart.is_empty() {
                    tracing::warn!("{} take(s) effect only after a restart", needing_restart.join(", "));
                }
                for warning in &new.warnings {
                    tracing::warn!("{warning}");
                }
                *self.loaded.write().expect("not poisoned") = new;
                self.reloaded.send_modify(|generation| *generation += 1);
                tracing::info!("settings reloaded");
            }
            Err(error) => tracing::error!("settings not reloaded, the old ones stay: {error}"),
        }
    }

    /// Re-reads the campaigns; a broken file keeps its last good version.
    fn reload_campaigns(&self) {
        let settings = self.loaded().settings;
        let mut next = self.catalog();
        let report = next.reload(&settings.campaigns_dir, &settings.subscriptions.topics);
        for diagnostic in &report.diagnostics {
            tracing::error!("{diagnostic}");
        }
        for name in &report.kept {
            tracing::warn!(campaign = %name, "campaign file has errors; its last good version keeps running");
        }
        self.metrics.campaign_file_errors.set(report.diagnostics.len() as i64);
        tracing::info!(campaigns = next.len(), "campaigns loaded");
        *self.campaigns.write().expect("not poisoned") = next;
        *self.campaign_errors.write().expect("not poisoned") = report.diagnostics;
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(mut loaded: Loaded, config_file: Option<&Path>, demo: bool) -> anyhow::Result<()> {
    let settings = loaded.settings.clone();
    // Checked first: a dashboard open to the network is refused before anything starts.
    let ui_access = settings.ui.enabled.then(|| crate::ui::Access::configure(&settings)).transpose()?;
    systemd::status("starting: opening the database");
    let db = db::open(&settings).await?;
    let mut leadership = Leadership::acquire(&settings.database_url())?;
    let first_demo_run = if demo {
        systemd::status("starting: preparing the demo data");
        demo::prepare(&db, &mut loaded).await.context("preparing the demo")?
    } else {
        false
    };
    let delivery_db = db::connect_for_delivery(&settings).await?;
    let daemon = Arc::new(Daemon {
        db,
        delivery_db,
        loaded: RwLock::new(loaded),
        campaigns: RwLock::new(Catalog::default()),
        campaign_errors: RwLock::new(Vec::new()),
        metrics: Metrics::new(),
        ready: AtomicBool::new(false),
        sender_up: AtomicBool::new(true),
        reloaded: tokio_watch::channel(0).0,
        owner: work::Owner::of_this_process(),
    });
    daemon.reload_campaigns();
    if first_demo_run {
        demo::plan_every_campaign(&daemon.db, &daemon.catalog(), &daemon.loaded().settings).await?;
    }

    let (stop_tx, stop) = tokio_watch::channel(false);
    let (reload_tx, mut reload_rx) = mpsc::channel::<()>(4);
    let listener = http::bind(&settings.http).await?;
    let mut tasks = tokio::task::JoinSet::new();
    let mut router = routes::router(daemon.clone());
    // The webhooks keep the [feedback] settings the daemon started with.
    if let Some(webhooks) = Webhooks::new(daemon.db.clone(), &daemon.loaded()).await? {
        router = router.merge(http::webhook_router(Arc::new(webhooks)));
    }
    if let Some(access) = ui_access {
        router = router.merge(routes::dashboard(daemon.clone(), access));
    }
    tasks.spawn(http::serve_on(listener, router, wait_for(stop.clone())));
    let _watcher = watch::campaigns(&settings.campaigns_dir, reload_tx.clone());
    let sender_daemon = daemon.clone();
    let sender_stop = stop.clone();
    tasks.spawn(async move {
        let daemon = sender_daemon.clone();
        supervise(&daemon.sender_up, StdDuration::from_secs(1), sender_stop.clone(), move || {
            send_loop(sender_daemon.clone(), sender_stop.clone())
        })
        .await
    });
    let scheduler_daemon = daemon.clone();
    let scheduler_stop = stop.clone();
    let first_leadership_check = leadership.is_leader().await;
    tasks.spawn(async move { schedule_loop(scheduler_daemon, leadership, scheduler_stop).await });
    if let Some(interval) = systemd::watchdog_interval() {
        tasks.spawn(watchdog_loop(interval, stop.clone()));
    }

    daemon.ready.store(true, Ordering::SeqCst);
    systemd::ready();
    let role = if first_leadership_check { "scheduler and sender" } else { "sender (another daemon schedules)" };
    systemd::status(&format!("running: {role}; {} campaigns", daemon.catalog().len()));
    tracing::info!(role, http = %settings.http.listen, "patron is running");
    if demo {
        demo::explain(&daemon.loaded().settings);
    }

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the settings and campaigns");
                daemon.reload_settings(config_file);
                daemon.reload_campaigns();
            }
            Some(()) = reload_rx.recv() => daemon.reload_campaigns(),
        }
    }

    tracing::info!("stopping: no more planning; finishing the messages in flight");
    systemd::stopping();
    daemon.ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let stop_timeout = daemon.loaded().settings.daemon.stop_timeout().to_std().unwrap_or_default();
    let finished = tokio::time::timeout(stop_timeout, async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Err(error)) = joined {
                tracing::error!("{error:#}");
            }
        }
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            "stop timeout reached; the messages still in flight at the SMTP server are sent again after their lease"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for(mut stop: tokio_watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Sleeps for `duration`, or less if the daemon stops; true if it stopped.
async fn pause(duration: StdDuration, stop: &mut tokio_watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = stop.wait_for(|stopped| *stopped) => true,
    };
    stopped || *stop.borrow()
}

/// Runs the task that `start` makes, and starts it again whenever it dies (a
/// panic) until `stop`; `up` is false from its death to its restart.
async fn supervise<Start, Task>(
    up: &AtomicBool,
    restart_after: StdDuration,
    mut stop: tokio_watch::Receiver<bool>,
    mut start: Start,
) -> anyhow::Result<()>
where
    Start: FnMut() -> Task,
    Task: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    loop {
        up.store(true, Ordering::SeqCst);
        match tokio::spawn(start()).await {
            Ok(result) => return result,
            Err(error) => {
                up.store(false, Ordering::SeqCst);
                tracing::error!("the sender task died ({error}); starting it again");
                if pause(restart_after, &mut stop).await {
                    return Ok(());
                }
            }
        }
    }
}

async fn send_loop(daemon: Arc<Daemon>, mut stop: tokio_watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut backoff = Backoff::default();
    let mut reloaded = daemon.reloaded.subscribe();
    loop {
        let loaded = daemon.loaded();
        let mut wait = loaded.settings.daemon.send_interval().to_std().unwrap_or_default();
        match drain_once(&daemon, &loaded, stop.clone()).await {
            Ok(report) => {
                daemon.metrics.count_sent(&report);
                if let Some(reason) = &report.paused {
                    if report.reached_server() {
                        backoff.reset();
                    }
                    let (next_try, since) = backoff.next(Utc::now());
                    daemon.metrics.sending_paused.set(1);
                    delivery::sender::pause_logged(&daemon.delivery_db, reason, since, next_try).await;
                    wait = next_try.to_std().unwrap_or_default();
                } else if backoff.is_paused() {
                    backoff.reset();
                    daemon.metrics.sending_paused.set(0);
                    tracing::info!("the SMTP server works again: sending resumed");
                    if let Err(error) = delivery_pause::clear(&daemon.delivery_db, Utc::now()).await {
                        tracing::warn!(%error, "clearing the sender's pause");
                    }
                }
            }
            Err(error) => tracing::error!("sending: {error:#}"),
        }
        reloaded.borrow_and_update();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
            // New settings (a fixed password, say): try again now.
            _ = reloaded.changed() => {}
        }
        if *stop.borrow() {
            return Ok(());
        }
    }
}

async fn drain_once(
    daemon: &Daemon,
    loaded: &Loaded,
    stop: tokio_watch::Receiver<bool>,
) -> anyhow::Result<delivery::Report> {
    let transport = Transport::from_settings(loaded)?;
    let signer = delivery::signer(loaded.secrets.unsubscribe_secret.as_ref());
    let sender =
        Sender::new(daemon.delivery_db.clone(), transport, daemon.catalog(), signer, Options::from_settings(loaded));
    let report = sender.drain(false, stop).await?;
    if report.any() {
        tracing::info!(
            sent = report.sent,
            retrying = report.retrying,
            failed = report.failed,
            suppressed = report.suppressed,
            unknown = report.unknown,
            expired = report.expired,
            "messages handed over"
        );
    }
    Ok(report)
}

/// A timed job's cron expression (UTC) and its next time; empty: never.
struct Timer {
    expression: String,
    schedule: Option<Schedule>,
    next: Option<DateTime<Utc>>,
}

impl Timer {
    fn new(setting: &Typed<Option<Schedule>>, now: DateTime<Utc>) -> Timer {
        let schedule = setting.get().clone();
        let next = schedule.as_ref().and_then(|s| s.fires_after(now).next());
        Timer { expression: setting.text().to_owned(), schedule, next }
    }

    /// Takes the schedule of reloaded settings, when it changed.
    fn follow(&mut self, setting: &Typed<Option<Schedule>>, now: DateTime<Utc>) {
        if setting.text() != self.expression {
            *self = Timer::new(setting, now);
        }
    }

    /// Whether the job's time has come; if so, the next time is set.
    fn due(&mut self, now: DateTime<Utc>) -> bool {
        match self.next {
            Some(at) if at <= now => {
                self.next = self.schedule.as_ref().and_then(|s| s.fires_after(now).next());
                true
            }
            _ => false,
        }
    }
}

async fn schedule_loop(
    daemon: Arc<Daemon>,
    mut leadership: Leadership,
    mut stop: tokio_watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let loaded = daemon.loaded();
    let settings = &loaded.settings;
    let mut scheduler = Scheduler::new(Rules::from(settings), settings.campaigns.grace_period());
    let now = Utc::now();
    let mut score_timer = Timer::new(&settings.daemon.score_schedule, now);
    let mut train_timer = Timer::new(&settings.daemon.train_schedule, now);
    let mut loyalty_timer = Timer::new(&settings.daemon.loyalty_schedule, now);
    let mut retention_timer = Timer::new(&settings.daemon.retention_schedule, now);
    let mut feedback_mailbox = mailbox::MailboxPoll::default();
    let mut feeds = feeds::Feeds::default();
    let mut was_leader = false;
    loop {
        if pause(StdDuration::from_secs(1), &mut stop).await {
            return Ok(());
        }
        let leader = leadership.is_leader().await;
        if leader != was_leader {
            systemd::status(if leader {
                "running: scheduler and sender"
            } else {
                "running: sender (another daemon schedules)"
            });
            was_leader = leader;
        }
        let loaded = daemon.loaded();
        if shared::shares_work(&daemon.db, &loaded) {
            shared::take_work(&daemon, &loaded, &stop).await;
        }
        if !leader {
            continue;
        }
        let now = Utc::now();
        let schedules = &loaded.settings.daemon;
        loyalty_timer.follow(&schedules.loyalty_schedule, now);
        train_timer.follow(&schedules.train_schedule, now);
        score_timer.follow(&schedules.score_schedule, now);
        retention_timer.follow(&schedules.retention_schedule, now);
        // Feeds first: the loyalty recompute and scoring after them see
        // their rows, and a feed that landed some brings both up to date.
        let refreshed = feeds.tick(&daemon, &loaded, now).await;
        if retention_timer.due(now) {
            apply_retention(&daemon.db, &loaded, now).await;
        }
        let loyalty_due = loyalty_timer.due(now);
        if loyalty_due || refreshed {
            if shared::shares_work(&daemon.db, &loaded) {
                shared::start_run(&daemon.db, &loaded, work::LOYALTY, now).await;
            } else {
                recompute_loyalty(&daemon.db, &loaded, now).await;
            }
        }
        if train_timer.due(now) {
            train(&daemon.db, &loaded, now).await;
        }
        let score_due = score_timer.due(now);
        if score_due || (refreshed && has_active_model(&daemon.db).await) {
            score(&daemon.db, &loaded, now).await;
        }
        feedback_mailbox.tick(&daemon.db, &loaded, now);
        let catalog = daemon.catalog();
        let campaigns: Vec<&Campaign> = catalog.campaigns().collect();
        if !shared::unfinished(&daemon.db, work::SCORING).await
            && scores_are_stale(&daemon.db, &loaded, now).await
            && any_due(&daemon.db, &scheduler, &campaigns, now).await
        {
            tracing::info!("a campaign is due and the scores are older than daemon.max_score_age: scoring first");
            score(&daemon.db, &loaded, now).await;
        }
        if shared::shares_work(&daemon.db, &loaded) {
            // The leader takes ranges too, then ends each run whose ranges
            // are all done; campaigns wait for unfinished ones.
            shared::take_work(&daemon, &loaded, &stop).await;
            if !shared::finish_runs(&daemon.db, Utc::now()).await {
                continue;
            }
        }
        scheduler.set_rules(Rules::from(&loaded.settings), loaded.settings.campaigns.grace_period());
        match scheduler.tick(&daemon.db, campaigns.iter().copied(), now).await {
            Ok(fired) => daemon.metrics.count_fired(&fired),
            Err(error) => tracing::error!("planning: {error}"),
        }
    }
}

async fn scores_are_stale(db: &DatabaseConnection, loaded: &Loaded, now: DateTime<Utc>) -> bool {
    match model::registry::last_scored_at(db).await {
        Ok(Some(at)) => now - at > loaded.settings.daemon.max_score_age(),
        // No active model: nothing to refresh with.
        Ok(None) => model::registry::active(db).await.ok().flatten().is_some(),
        Err(_) => false,
    }
}

async fn has_active_model(db: &DatabaseConnection) -> bool {
    matches!(model::registry::active(db).await, Ok(Some(_)))
}

async fn any_due(db: &DatabaseConnection, scheduler: &Scheduler, campaigns: &[&Campaign], now: DateTime<Utc>) -> bool {
    for campaign in campaigns.iter().filter(|c| c.enabled) {
        let Some(schedule) = &campaign.schedule else { continue };
        let last = crate::campaign::scheduler::last_fire(db, &campaign.name).await.ok().flatten();
        let last = last.or_else(|| scheduler.first_seen(&campaign.name));
        if matches!(schedule::due(schedule, last, now, chrono::Duration::MAX), schedule::Due::Run { .. }) {
            return true;
        }
    }
    false
}

async fn score(db: &DatabaseConnection, loaded: &Loaded, now: DateTime<Utc>) {
    if shared::shares_work(db, loaded) {
        return shared::start_run(db, loaded, work::SCORING, now).await;
    }
    systemd::status("running: scoring customers");
    match scoring::score(
        db,
        &loaded.settings.models_dir,
        scoring::valuation(&loaded.settings.lifetime_value),
        now,
        None,
        now,
    )
    .await
    {
        Ok(report) => tracing::info!(customers = report.customers, model = %report.model, "customers scored"),
        Err(error) => tracing::error!("scoring: {error}"),
    }
}

async fn apply_retention(db: &DatabaseConnection, loaded: &Loaded, now: DateTime<Utc>) {
    match crate::privacy::retention::apply(db, &loaded.settings.privacy, now).await {
        Ok(retained) => tracing::info!(
            messages = retained.messages,
            feedback_events = retained.feedback_events,
            "details past their retention cleared"
        ),
        Err(error) => tracing::error!("retention: {error}"),
    }
}

async fn recompute_loyalty(db: &DatabaseConnection, loaded: &Loaded, now: DateTime<Utc>) {
    systemd::status("running: loyalty recompute");
    let rules = crate::loyalty::engine::Rules::from(&loaded.settings.loyalty);
    match crate::loyalty::recompute(db, &rules, now).await {
        Ok(report) => tracing::info!(
            members = report.members,
            recomputed = report.recomputed,
            earned = report.points_earned,
            bonus = report.bonus_points,
            expired = report.points_expired,
            upgrades = report.upgrades,
            downgrades = report.downgrades,
            "loyalty recomputed"
        ),
        Err(error) => tracing::error!("loyalty recompute: {error}"),
    }
}

async fn train(db: &DatabaseConnection, loaded: &Loaded, now: DateTime<Utc>) {
    systemd::status("running: training a model");
    let request = TrainRequest { as_of: now, horizon_days: 91, algorithm: model::Algorithm::Logistic };
    match model::workflow::train_and_promote(db, &loaded.settings.models_dir, &request, false, now).await {
        Ok(outcome) => tracing::info!(
            model = %outcome.model.name,
            auc = outcome.new_auc,
            activated = outcome.promotion.activates(),
            "model trained"
        ),
        Err(error) => tracing::error!("training: {error:#}"),
    }
}

async fn watchdog_loop(interval: StdDuration, mut stop: tokio_watch::Receiver<bool>) -> anyhow::Result<()> {
    loop {
        systemd::watchdog();
        if pause(interval, &mut stop).await {
            return Ok(());
        }
    }
}

/// The key that checks unsubscribe links now (a reload may have changed it).
fn signer(daemon: &Daemon) -> Option<delivery::Signer> {
    delivery::signer(daemon.loaded().secrets.unsubscribe_secret.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_that_dies_is_reported_down_and_started_again() {
        use std::sync::atomic::AtomicUsize;
        let up = Arc::new(AtomicBool::new(false));
        let starts = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop) = tokio_watch::channel(false);
        let supervisor = {
            let (up, starts) = (up.clone(), starts.clone());
            tokio::spawn(async move {
                supervise(&up, StdDuration::from_millis(300), stop.clone(), move || {
                    let start = starts.fetch_add(1, Ordering::SeqCst);
                    let mut stop = stop.clone();
                    async move {
                        if start == 0 {
                            panic!("the first run dies");
                        }
                        let _ = stop.wait_for(|stopped| *stopped).await;
                        Ok(())
                    }
                })
                .await
            })
        };
        let seen_down = wait_until(|| !up.load(Ordering::SeqCst)).await;
        assert!(seen_down, "a dead task is reported down");
        assert!(wait_until(|| starts.load(Ordering::SeqCst) == 2 && up.load(Ordering::SeqCst)).await, "and restarted");
        stop_tx.send(true).unwrap();
        supervisor.await.unwrap().unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 2);
    }

    /// Polls `done` for up to 10 s.
    async fn wait_until(done: impl Fn() -> bool) -> bool {
        for _ in 0..2000 {
            if done() {
                return true;
            }
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
        false
    }

    #[test]
    fn a_timer_fires_once_per_scheduled_time_and_an_empty_one_never() {
        let mut nightly = Timer::new(&Typed::new("0 3 * * *"), utc("2026-11-23T12:00:00Z"));
        assert!(!nightly.due(utc("2026-11-24T02:59:59Z")));
        assert!(nightly.due(utc("2026-11-24T03:00:00Z")));
        assert!(!nightly.due(utc("2026-11-24T03:00:01Z")), "once per fire");
        assert_eq!(nightly.next, Some(utc("2026-11-25T03:00:00Z")));
        let mut never = Timer::new(&Typed::new(""), utc("2026-11-23T12:00:00Z"));
        assert!(!never.due(utc("2030-01-01T00:00:00Z")));
    }

    #[test]
    fn a_timer_takes_a_changed_expression_and_keeps_its_next_time_for_the_same_one() {
        let mut timer = Timer::new(&Typed::new("0 3 * * *"), utc("2026-11-23T12:00:00Z"));
        timer.follow(&Typed::new("0 3 * * *"), utc("2026-11-24T01:00:00Z"));
        assert_eq!(timer.next, Some(utc("2026-11-24T03:00:00Z")));
        timer.follow(&Typed::new("30 1 * * *"), utc("2026-11-24T01:00:00Z"));
        assert_eq!(timer.next, Some(utc("2026-11-24T01:30:00Z")));
        timer.follow(&Typed::new(""), utc("2026-11-24T01:00:00Z"));
        assert_eq!(timer.next, None);
    }
}
