//! `/metrics` in the Prometheus text format: what this daemon did since it
//! started (counters) and what the database holds now (gauges, read at each
//! scrape, so they agree with `patron status`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sea_orm::DatabaseConnection;

use crate::campaign::scheduler::Fired;
use crate::config::FeedSettings;
use crate::delivery::Report;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    pub runs_planned: Counter,
    pub runs_skipped: Counter,
    pub runs_refused: Counter,
    pub runs_skipped_stale: Counter,
    pub messages_planned: Counter,
    pub messages_sent: Counter,
    pub messages_failed: Counter,
    pub messages_retried: Counter,
    pub messages_suppressed: Counter,
    pub messages_unknown: Counter,
    pub messages_expired: Counter,
    pub campaign_file_errors: Gauge,
    /// 1 while this daemon's sender waits for an SMTP server it cannot use.
    pub sending_paused: Gauge,
    outbox: Family<Labels, Gauge>,
    feedback: Family<Labels, Gauge>,
    campaigns_paused: Gauge,
    last_scoring: Gauge<f64, AtomicU64>,
    model_auc: Gauge<f64, AtomicU64>,
    feed_runs: Family<Labels, Counter>,
    feed_last_success: Family<Labels, Gauge<f64, AtomicU64>>,
    last_load: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("patron");
        let metrics = Metrics {
            registry: Registry::default(),
            runs_planned: Counter::default(),
            runs_skipped: Counter::default(),
            runs_refused: Counter::default(),
            runs_skipped_stale: Counter::default(),
            messages_planned: Counter::default(),
            messages_sent: Counter::default(),
            messages_failed: Counter::default(),
            messages_retried: Counter::default(),
            messages_suppressed: Counter::default(),
            messages_unknown: Counter::default(),
            messages_expired: Counter::default(),
            campaign_file_errors: Gauge::default(),
            sending_paused: Gauge::default(),
            outbox: Family::default(),
            feedback: Family::default(),
            campaigns_paused: Gauge::default(),
            last_scoring: Gauge::default(),
            model_auc: Gauge::default(),
            feed_runs: Family::default(),
            feed_last_success: Family::default(),
            last_load: Gauge::default(),
        };
        registry.register("runs_planned", "Campaign runs planned by this daemon", metrics.runs_planned.clone());
        registry.register("runs_skipped", "Missed fires recorded as skipped", metrics.runs_skipped.clone());
        registry.register(
            "runs_refused",
            "Runs refused because their audience was over the campaign's max_audience",
            metrics.runs_refused.clone(),
        );
        registry.register(
            "runs_skipped_stale",
            "Fires held back because their data was older than campaigns.max_data_age or their scores older than \
             daemon.max_score_age (each fire counted once; it plans once fresh data arrives within the grace period)",
            metrics.runs_skipped_stale.clone(),
        );
        registry.register(
            "messages_planned",
            "Messages planned (control group excluded)",
            metrics.messages_planned.clone(),
        );
        registry.register("messages_sent", "Messages the server accepted", metrics.messages_sent.clone());
        registry.register("messages_failed", "Messages that failed for good", metrics.messages_failed.clone());
        registry.register(
            "messages_retried",
            "Temporary failures, each to be retried",
            metrics.messages_retried.clone(),
        );
        registry.register(
            "messages_suppressed",
            "Messages not sent: suppressed or no consent",
            metrics.messages_suppressed.clone(),
        );
        registry.register(
            "messages_unknown",
            "Messages sent whose reply from the server was lost (perhaps delivered)",
            metrics.messages_unknown.clone(),
        );
        registry.register(
            "messages_expired",
            "Messages not sent by their campaign's expiry (expires_after), never sent",
            metrics.messages_expired.clone(),
        );
        registry.register(
            "sending_paused",
            "1 while sending is paused because the SMTP server cannot be used",
            metrics.sending_paused.clone(),
        );
        registry.register(
            "campaign_file_errors",
            "Problems in the campaign files at the last load",
            metrics.campaign_file_errors.clone(),
        );
        registry.register("outbox_messages", "Outbox rows by state, now", metrics.outbox.clone());
        registry.register(
            "feedback_events",
            "Bounces, complaints and unsubscribe requests read, by kind, now",
            metrics.feedback.clone(),
        );
        registry.register(
            "campaigns_paused",
            "Campaigns paused by the circuit breaker (too many complaints or bounces), now",
            metrics.campaigns_paused.clone(),
        );
        registry.register(
            "last_scoring_timestamp_seconds",
            "When the active model last scored customers",
            metrics.last_scoring.clone(),
        );
        registry.register("active_model_auc", "Validation ROC AUC of the active model", metrics.model_auc.clone());
        registry.register(
            "feed_runs",
            "Feed runs by this daemon, by feed and outcome (landed or failed)",
            metrics.feed_runs.clone(),
        );
        registry.register(
            "feed_last_success_timestamp_seconds",
            "When each configured feed last landed its data (0: never)",
            metrics.feed_last_success.clone(),
        );
        registry.register(
            "data_last_load_timestamp_seconds",
            "When the newest successful import or feed landing happened",
            metrics.last_load.clone(),
        );
        Metrics { registry, ..metrics }
    }

    pub fn count_fired(&self, fired: &[Fired]) {
        for fire in fired {
            match fire {
                Fired::Planned { messages, .. } => {
                    self.runs_planned.inc();
                    self.messages_planned.inc_by(*messages as u64);
                }
                Fired::Skipped { .. } => {
                    self.runs_skipped.inc();
                }
                Fired::Refused { .. } => {
                    self.runs_refused.inc();
                }
                Fired::Stale { .. } => {
                    self.runs_skipped_stale.inc();
                }
                Fired::StillStale { .. } => {}
                Fired::AlreadyPlanned { .. } => {}
            }
        }
    }

    pub fn count_sent(&self, report: &Report) {
        self.messages_sent.inc_by(report.sent);
        self.messages_failed.inc_by(report.failed);
        self.messages_retried.inc_by(report.retrying);
        self.messages_suppressed.inc_by(report.suppressed);
        self.messages_unknown.inc_by(report.unknown);
        self.messages_expired.inc_by(report.expired);
    }

    pub fn count_feed_run(&self, feed: &str, landed: bool) {
        let outcome = if landed { "landed" } else { "failed" };
        self.feed_runs
            .get_or_create(&vec![("feed".to_owned(), feed.to_owned()), ("outcome".to_owned(), outcome.to_owned())])
            .inc();
    }

    /// The text exposition, with the gauges read from the database now.
    pub async fn render(&self, db: &DatabaseConnection, feeds: &[FeedSettings]) -> anyhow::Result<String> {
        let status = crate::status::collect(db, feeds).await?;
        self.feed_last_success.clear();
        for feed in &status.feeds {
            let at = feed.recorded.last_success_at.map_or(0.0, |at| at.timestamp() as f64);
            self.feed_last_success.get_or_create(&vec![("feed".to_owned(), feed.name.clone())]).set(at);
        }
        if let Some(at) = status.data_loaded_at {
            self.last_load.set(at.timestamp() as f64);
        }
        self.outbox.clear();
        for (state, n) in &status.outbox {
            self.outbox.get_or_create(&vec![("state".to_owned(), state.clone())]).set(*n as i64);
        }
        self.feedback.clear();
        for (kind, n) in &status.feedback {
            self.feedback.get_or_create(&vec![("kind".to_owned(), kind.clone())]).set(*n as i64);
        }
        self.campaigns_paused.set(status.campaigns_paused.len() as i64);
        if let Some(model) = &status.active_model {
            self.model_auc.set(model.auc.unwrap_or(f64::NAN));
        }
        if let Some(at) = crate::model::registry::last_scored_at(db).await? {
            self.last_scoring.set(at.timestamp() as f64);
        }
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
