//! `patron send`, `patron serve` and `patron outbox retry`.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand, ValueEnum};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::sync::watch;

use super::UsageError;
use crate::campaign::Catalog;
use crate::config::Loaded;
use crate::db::entities::outbox::State as OutboxState;
use crate::delivery::outbox::{self, Clock, Requeue};
use crate::delivery::{self, Options, Sender, Transport};
use crate::feedback::webhook::Webhooks;
use crate::{db, http};

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Keep going until nothing is left to send: wait for retries that are
    /// due later, and for messages a stopped sender had claimed.
    #[arg(long)]
    pub until_empty: bool,
    /// For rehearsals and tests: act as if it were this moment (RFC 3339):
    /// the messages due then are sent, those expired by then expire, and
    /// results are recorded at it. The clock stands still, so nothing waits
    /// for later (`--until-empty` stops once nothing is due at that moment).
    /// Without it, the system clock.
    #[arg(long, hide = true, value_name = "TIME", value_parser = super::campaigns::parse_moment)]
    pub now: Option<DateTime<Utc>>,
}

/// The SMTP server could not be used; the messages went back unsent.
#[derive(Debug, thiserror::Error)]
#[error(
    "sending paused: {0}. The messages not sent wait in the outbox with no attempt spent; \
     run `patron send` again once the server works (or `patron send --until-empty`, which waits for it)"
)]
pub struct SendingPaused(pub String);

/// Sends what is due in the outbox; SIGTERM or Ctrl-C stops after the
/// messages in flight, and gives back those not yet sent.
pub async fn send(loaded: &Loaded, args: &SendArgs) -> anyhow::Result<()> {
    let settings = &loaded.settings;
    db::open(settings).await?;
    let conn = db::connect_for_delivery(settings).await?;
    let (campaigns, report) = Catalog::load(&settings.campaigns_dir, &settings.subscriptions.topics);
    for diagnostic in &report.diagnostics {
        tracing::warn!("{diagnostic}");
    }
    let transport = Transport::from_settings(loaded)?;
    let signer = delivery::signer(loaded.secrets.unsubscribe_secret.as_ref());
    let mut options = Options::from_settings(loaded);
    if let Some(now) = args.now {
        options.clock = Clock::Fixed(now);
    }
    let sender = Sender::new(conn, transport, campaigns, signer, options);
    let (stop_tx, stop) = watch::channel(false);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        let signal = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        };
        tracing::info!(signal, "stopping: finishing the messages in flight, giving back the rest");
        let _ = stop_tx.send(true);
    });
    let report = sender.drain(args.until_empty, stop).await?;
    tracing::info!(
        sent = report.sent,
        retrying = report.retrying,
        failed = report.failed,
        unknown = report.unknown,
        expired = report.expired,
        "send finished"
    );
    // Expiry is a campaign's choice: the count shows only when something expired.
    let expired = if report.expired > 0 { format!(", {} expired", report.expired) } else { String::new() };
    println!(
        "{} sent, {} to retry later, {} failed, {} suppressed, {} unknown{expired}",
        report.sent, report.retrying, report.failed, report.suppressed, report.unknown
    );
    match report.paused {
        Some(reason) => Err(SendingPaused(reason).into()),
        None => Ok(()),
    }
}

/// Runs the HTTP server (unsubscribe links) until Ctrl-C.
pub async fn serve(loaded: &Loaded) -> anyhow::Result<()> {
    let settings = &loaded.settings;
    let signer = delivery::signer(loaded.secrets.unsubscribe_secret.as_ref()).ok_or_else(|| {
        anyhow::anyhow!(
            "the unsubscribe server needs the key that signed the links: set PATRON__UNSUBSCRIBE__SECRET \
             or unsubscribe.secret_file"
        )
    })?;
    let conn = db::open(settings).await?;
    let mut router = http::router(conn.clone(), signer, settings.subscriptions.clone());
    if let Some(webhooks) = Webhooks::new(conn, loaded).await? {
        router = router.merge(http::webhook_router(Arc::new(webhooks)));
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    http::serve(&settings.http, router, shutdown).await
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Put failed messages, or messages whose delivery is unknown, back in the queue.
    ///
    /// They are sent by the next `patron send` (or the daemon), as if newly planned:
    /// suppressions and consent are checked again first. A message in state `unknown`
    /// may already have been delivered: re-queueing it can deliver a second copy.
    Retry(RetryArgs),
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Which messages.
    #[arg(long, value_enum, default_value = "failed")]
    pub state: RetryState,
    /// Only this campaign run (see `patron report campaign NAME`).
    #[arg(long, value_name = "ID")]
    pub run: Option<i64>,
    /// Only messages that reached their state on or after this day (YYYY-MM-DD, UTC) or time (RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RetryState {
    Failed,
    Unknown,
}

pub async fn outbox(conn: &DatabaseConnection, command: &OutboxCommand) -> anyhow::Result<()> {
    let OutboxCommand::Retry(args) = command;
    let since = args.since.as_deref().map(parse_since).transpose()?;
    if let Some(run) = args.run {
        let select = Query::select().column("id").from("campaign_runs").and_where(Expr::col("id").eq(run)).to_owned();
        if conn.query_one(&select).await?.is_none() {
            return Err(UsageError(format!("--run {run}: there is no campaign run with this id")).into());
        }
    }
    let state = match args.state {
        RetryState::Failed => OutboxState::Failed.as_str(),
        RetryState::Unknown => OutboxState::Unknown.as_str(),
    };
    let requeued = outbox::requeue(conn, &Requeue { state: state.into(), run_id: args.run, since }).await?;
    tracing::info!(requeued, state, "outbox rows re-queued");
    println!("{requeued} {state} message(s) re-queued");
    Ok(())
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, UsageError> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| UsageError(format!("--since {text}: expected a date such as 2026-12-01 or an RFC 3339 time")))
}
