//! `patron run`: the long-running service. It wires together jobs that each
//! also run once from the command line:
//!
//! - the scheduler (leader only): campaign fires, the timed loyalty
//!   recompute, scoring and training, and fresh scores before a campaign
//!   plans on stale ones;
//! - the sender (every daemon), draining the outbox every `send_interval`;
//! - the HTTP server: unsubscribe links, `/healthz`, `/readyz`, `/metrics`;
//! - reloads of the settings and campaigns on SIGHUP and when a file in
//!   `campaigns/` changes;
//! - systemd notifications (ready, status, watchdog).
//!
//! SIGTERM or SIGINT stops planning, lets the sender finish or give back the
//! messages in flight within `stop_timeout`, and exits 0.

pub mod demo;
pub mod leader;
pub mod metrics;
pub mod systemd;
mod watch;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration as StdDuration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, watch as tokio_watch};

use crate::campaign::plan::Rules;
use crate::campaign::schedule::{self, Schedule};
use crate::campaign::scheduler::Scheduler;
use crate::campaign::{Campaign, Catalog};
use crate::config::Loaded;
use crate::delivery::{self, Options, Sender, Transport};
use crate::model::train::TrainRequest;
use crate::{db, http, model, scoring};
use leader::Leadership;
use metrics::Metrics;

/// What every task of the daemon shares.
pub struct Daemon {
    db: DatabaseConnection,
    /// The sender's connection (see `db::connect_for_delivery`).
    delivery_db: DatabaseConnection,
    loaded: RwLock<Loaded>,
    campaigns: RwLock<Catalog>,
    metrics: Metrics,
    ready: AtomicBool,
}

impl Daemon {
    fn loaded(&self) -> Loaded {
        self.loaded.read().expect("not poisoned").clone()
    }

    fn catalog(&self) -> Catalog {
        self.campaigns.read().expect("not poisoned").clone()
    }

    /// Re-reads the settings file (when `config_file` is given) and the
    /// campaigns; a broken file keeps its last good version, and settings
    /// that do not load leave the old ones in place.
    fn reload(&self, config_file: Option<&Path>) {
        if let Some(file) = config_file {
            match crate::config::load(Some(file)) {
                Ok(new) => {
                    let old = self.loaded();
                    if new.settings.database_url() != old.settings.database_url()
                        || new.settings.http.listen != old.settings.http.listen
                    {
                        tracing::warn!("database.url and http.listen take effect only after a restart");
                    }
                    *self.loaded.write().expect("not poisoned") = new;
                }
                Err(error) => tracing::error!("settings not reloaded, the old ones stay: {error}"),
            }
        }
        let folder = self.loaded().settings.campaigns_dir;
        let mut next = self.catalog();
        let report = next.reload(&folder);
        for diagnostic in &report.diagnostics {
            tracing::error!("{diagnostic}");
        }
        for name in &report.kept {
            tracing::warn!(campaign = %name, "campaign file has errors; its last good version keeps running");
        }
        self.metrics.campaign_file_errors.set(report.diagnostics.len() as i64);
        tracing::info!(campaigns = next.len(), "campaigns loaded");
        *self.campaigns.write().expect("not poisoned") = next;
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(mut loaded: Loaded, config_file: Option<&Path>, demo: bool) -> anyhow::Result<()> {
    systemd::status("starting: opening the database");
    let settings = loaded.settings.clone();
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
        metrics: Metrics::new(),
        ready: AtomicBool::new(false),
    });
    daemon.reload(None);
    if first_demo_run {
        demo::plan_every_campaign(&daemon.db, &daemon.catalog(), &daemon.loaded().settings).await?;
    }

    let (stop_tx, stop) = tokio_watch::channel(false);
    let (reload_tx, mut reload_rx) = mpsc::channel::<()>(4);
    let listener = http::bind(&settings.http).await?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(http::serve_on(listener, http::daemon_router(daemon.clone()), wait_for(stop.clone())));
    let _watcher = watch::campaigns(&settings.campaigns_dir, reload_tx.clone());
    tasks.spawn(send_loop(daemon.clone(), stop.clone()));
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
                daemon.reload(config_file);
            }
            Some(()) = reload_rx.recv() => daemon.reload(None),
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
        tracing::warn!("stop timeout reached; messages still in flight are sent again after their lease");
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

async fn send_loop(daemon: Arc<Daemon>, mut stop: tokio_watch::Receiver<bool>) -> anyhow::Result<()> {
    loop {
        let loaded = daemon.loaded();
        let interval = loaded.settings.daemon.send_interval().to_std().unwrap_or_default();
        match drain_once(&daemon, &loaded, stop.clone()).await {
            Ok(report) => daemon.metrics.count_sent(&report),
            Err(error) => tracing::error!("sending: {error:#}"),
        }
        if pause(interval, &mut stop).await {
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
    if report.sent + report.failed + report.retrying + report.suppressed > 0 {
        tracing::info!(
            sent = report.sent,
            retrying = report.retrying,
            failed = report.failed,
            suppressed = report.suppressed,
            "messages handed over"
        );
    }
    Ok(report)
}

/// A timed job's cron expression (UTC) and its next time; empty: never.
struct Timer {
    schedule: Option<Schedule>,
    next: Option<DateTime<Utc>>,
}

impl Timer {
    /// The expression was checked when the settings were loaded.
    fn new(expression: &str, now: DateTime<Utc>) -> Timer {
        let schedule = (!expression.is_empty()).then(|| Schedule::parse(expression, chrono_tz::UTC).ok()).flatten();
        let next = schedule.as_ref().and_then(|s| s.fires_after(now).next());
        Timer { schedule, next }
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
    let mut scheduler = Scheduler::new(Rules::from(&settings.campaigns), settings.campaigns.grace_period());
    let now = Utc::now();
    let mut score_timer = Timer::new(&settings.daemon.score_schedule, now);
    let mut train_timer = Timer::new(&settings.daemon.train_schedule, now);
    let mut loyalty_timer = Timer::new(&settings.daemon.loyalty_schedule, now);
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
        if !leader {
            continue;
        }
        let loaded = daemon.loaded();
        let now = Utc::now();
        if loyalty_timer.due(now) {
            recompute_loyalty(&daemon.db, &loaded, now).await;
        }
        if train_timer.due(now) {
            train(&daemon.db, &loaded, now).await;
        }
        if score_timer.due(now) {
            score(&daemon.db, &loaded, now).await;
        }
        let catalog = daemon.catalog();
        let campaigns: Vec<&Campaign> = catalog.campaigns().collect();
        if scores_are_stale(&daemon.db, &loaded, now).await && any_due(&daemon.db, &scheduler, &campaigns, now).await {
            tracing::info!("a campaign is due and the scores are older than daemon.max_score_age: scoring first");
            score(&daemon.db, &loaded, now).await;
        }
        scheduler.set_rules(Rules::from(&loaded.settings.campaigns), loaded.settings.campaigns.grace_period());
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
    systemd::status("running: scoring customers");
    match scoring::score(db, &loaded.settings.models_dir, now, None, now).await {
        Ok(report) => tracing::info!(customers = report.customers, model = %report.model, "customers scored"),
        Err(error) => tracing::error!("scoring: {error}"),
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

/// Whether the daemon has started and not begun to stop (for `/readyz`).
pub fn is_ready(daemon: &Daemon) -> bool {
    daemon.ready.load(Ordering::SeqCst)
}

pub fn database(daemon: &Daemon) -> &DatabaseConnection {
    &daemon.db
}

pub fn metrics(daemon: &Daemon) -> &Metrics {
    &daemon.metrics
}

pub fn signer(daemon: &Daemon) -> Option<delivery::Signer> {
    delivery::signer(daemon.loaded().secrets.unsubscribe_secret.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_timer_fires_once_per_scheduled_time_and_an_empty_one_never() {
        let mut nightly = Timer::new("0 3 * * *", utc("2026-11-23T12:00:00Z"));
        assert!(!nightly.due(utc("2026-11-24T02:59:59Z")));
        assert!(nightly.due(utc("2026-11-24T03:00:00Z")));
        assert!(!nightly.due(utc("2026-11-24T03:00:01Z")), "once per fire");
        assert_eq!(nightly.next, Some(utc("2026-11-25T03:00:00Z")));
        let mut never = Timer::new("", utc("2026-11-23T12:00:00Z"));
        assert!(!never.due(utc("2030-01-01T00:00:00Z")));
    }
}
