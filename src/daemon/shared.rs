//! Shared work in the daemon (`crate::work`): every daemon takes ranges of
//! the running jobs, renewing its lease while it works; the leader starts
//! the runs and ends them once their ranges are done.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::watch as tokio_watch;

use super::Daemon;
use crate::config::Loaded;
use crate::{scoring, work};

/// Whether the timed scoring and loyalty recompute are split among the
/// daemons: on PostgreSQL (several daemons share one only there), unless
/// `daemon.range_size` is 0.
pub(super) fn shares_work(db: &DatabaseConnection, loaded: &Loaded) -> bool {
    db.get_database_backend() == sea_orm::DbBackend::Postgres && loaded.settings.daemon.range_size > 0
}

pub(super) async fn start_run(db: &DatabaseConnection, loaded: &Loaded, job: &str, now: DateTime<Utc>) {
    let size = loaded.settings.daemon.range_size;
    let started = match job {
        work::SCORING => scoring::shared::start(db, size, now).await.map_err(anyhow::Error::from),
        _ => work::start(db, job, None, now, size, now).await.map_err(anyhow::Error::from),
    };
    match started {
        Ok(Some(run)) => tracing::info!(job, run = run.id, "work split into ranges for the running daemons"),
        Ok(None) => tracing::info!(job, "the last shared run is still going; no new one started"),
        Err(error) => tracing::error!(job, "starting shared work: {error:#}"),
    }
}

/// Takes ranges of shared work one after the other until none is left or
/// the daemon stops, renewing the lease of the range in hand as it goes.
pub(super) async fn take_work(daemon: &Daemon, loaded: &Loaded, stop: &tokio_watch::Receiver<bool>) {
    let lease = loaded.settings.daemon.work_lease();
    while !*stop.borrow() {
        let range = match work::take(&daemon.db, &daemon.owner, lease, Utc::now()).await {
            Ok(Some(range)) => range,
            Ok(None) => return,
            Err(error) => return tracing::error!("taking shared work: {error}"),
        };
        let (run, id, job) = (range.run.id, range.id, range.run.job.as_str());
        let outcome = tokio::select! {
            outcome = do_range(daemon, loaded, &range) => outcome,
            never = keep_lease(daemon, &range, lease) => match never {},
        };
        match outcome {
            Ok(true) => tracing::debug!(job, run, range = id, "range of shared work done"),
            Ok(false) => tracing::warn!(job, run, range = id, "a range's lease ran out; another daemon does it"),
            Err(error) => tracing::error!(job, run, range = id, "shared work: {error:#}"),
        }
    }
}

/// Does a range of its run's job; false if another daemon took it over.
async fn do_range(daemon: &Daemon, loaded: &Loaded, range: &work::Range) -> anyhow::Result<bool> {
    let (db, owner) = (&daemon.db, &daemon.owner);
    match range.run.job.as_str() {
        work::SCORING => {
            let outcome = scoring::shared::score_range(
                db,
                &loaded.settings.models_dir,
                scoring::valuation(&loaded.settings.lifetime_value),
                range,
                owner,
            )
            .await?;
            Ok(outcome != scoring::shared::RangeOutcome::Lost)
        }
        work::LOYALTY => {
            let rules = crate::loyalty::engine::Rules::from(&loaded.settings.loyalty);
            Ok(crate::loyalty::recompute_range(db, &rules, range, owner).await?.is_some())
        }
        other => anyhow::bail!("unknown job `{other}`"),
    }
}

/// Renews the lease on `range` every third of it, for as long as it is polled.
async fn keep_lease(daemon: &Daemon, range: &work::Range, lease: chrono::Duration) -> std::convert::Infallible {
    let every = (lease / 3).to_std().unwrap_or(StdDuration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        match work::renew(&daemon.db, range, &daemon.owner, lease, Utc::now()).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(range = range.id, "lost the lease on a range of shared work"),
            Err(error) => tracing::warn!(range = range.id, "renewing the lease on a range: {error}"),
        }
    }
}

pub(super) async fn unfinished(db: &DatabaseConnection, job: &str) -> bool {
    matches!(work::progress(db, job, Utc::now()).await, Ok(Some(_)))
}

/// Ends each shared run whose ranges are all done (or given up); true when
/// no run is left unfinished, so that planning may go on.
pub(super) async fn finish_runs(db: &DatabaseConnection, now: DateTime<Utc>) -> bool {
    let mut all_finished = true;
    for job in work::JOBS {
        all_finished &= finish_run(db, job, now).await;
    }
    all_finished
}

async fn finish_run(db: &DatabaseConnection, job: &str, now: DateTime<Utc>) -> bool {
    let progress = match work::progress(db, job, now).await {
        Ok(Some(progress)) => progress,
        Ok(None) => return true,
        Err(error) => {
            tracing::error!(job, "reading the shared run: {error}");
            return false;
        }
    };
    if !progress.is_over() {
        return false;
    }
    let outcome = if progress.given_up > 0 { "abandoned" } else { "done" };
    let finished = match job {
        work::SCORING => scoring::shared::finish(db, &progress, now).await.map(|f| f.map(|f| f.customers as u64)),
        _ => work::finish_alone(db, &progress.run, outcome, now).await.map(|f| f.then_some(0)).map_err(Into::into),
    };
    let run = progress.run.id;
    match finished {
        Ok(Some(_)) if progress.given_up > 0 => tracing::error!(
            job,
            run,
            given_up = progress.given_up,
            "shared run finished without some ranges, each failed {} times; their customers were left as they were",
            work::MAX_ATTEMPTS
        ),
        Ok(Some(customers)) if job == work::SCORING => tracing::info!(customers, run, "customers scored"),
        Ok(Some(_)) => tracing::info!(run, ranges = progress.ranges, "loyalty recomputed"),
        Ok(None) => {}
        Err(error) => {
            tracing::error!(job, "finishing the shared run: {error}");
            return false;
        }
    }
    true
}
