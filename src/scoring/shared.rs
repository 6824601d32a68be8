//! Scoring shared by the running daemons (`crate::work`): the leader
//! starts a run for the active model, each daemon scores one range of
//! customers at a time and writes its snapshots and scores in one
//! transaction with the range marked done, and the leader finishes the run
//! by ranking the whole base into deciles (and recording the floors beside
//! the snapshots, when no range was given up). Each range holds only its own
//! customers' history in memory.
//!
//! Readers see each range change as it commits, so a campaign could plan
//! on a mix of old and new scores: the daemon plans nothing while a run is
//! unfinished. Until the run finishes, a range's deciles are its own.

use std::path::Path;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{DatabaseConnection, DbErr, EntityTrait};

use super::{ScoreError, Scored, Written, rank_statement, score_values, write_range_scores};
use crate::db::engine::{Options, Txn};
use crate::db::entities::model as model_entity;
use crate::features::History;
use crate::features::snapshot::{self, SnapshotWriter};
use crate::model::file;
use crate::model::lifetime::Valuation;
use crate::model::{metrics, registry};
use crate::work::{self, Owner, Progress, Range, Run};

/// What became of a range this daemon took.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Written and marked done: this many customers.
    Scored { customers: usize },
    /// Its lease ran out and another daemon took it over; nothing written.
    Lost,
}

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Finished {
    pub customers: usize,
    /// Ranges given up after [`work::MAX_ATTEMPTS`] takes: their customers
    /// keep their former scores.
    pub given_up: i64,
}

/// Starts a run scoring every customer as of `now` with the active model,
/// in ranges of `range_size` customers; None if a run is still going.
pub async fn start(db: &DatabaseConnection, range_size: u64, now: DateTime<Utc>) -> Result<Option<Run>, ScoreError> {
    let active = registry::active(db).await?.ok_or(ScoreError::NoActiveModel)?;
    Ok(work::start(db, work::SCORING, Some(active.id), now, range_size, now).await?)
}

/// Scores the customers of `range` with its run's model and writes their
/// snapshots and scores, if this daemon still holds the range at the end.
pub async fn score_range(
    db: &DatabaseConnection,
    models_dir: &Path,
    valuation: Valuation,
    range: &Range,
    owner: &Owner,
) -> Result<RangeOutcome, ScoreError> {
    let model_id = range.run.model_id.ok_or(ScoreError::NoActiveModel)?;
    let row = model_entity::Entity::find_by_id(model_id).one(db).await?.ok_or(ScoreError::NoActiveModel)?;
    let model = file::load(&models_dir.join(&row.file_name))?;
    let history = History::load_customers(db, Some(&range.customers)).await?;
    let as_of = range.run.as_of;
    let (history, scored) = tokio::task::spawn_blocking(move || {
        let scored = Scored::compute(&history, (0, history.len()), &model, as_of, &valuation);
        (history, scored)
    })
    .await
    .map_err(|_| DbErr::Custom("computing the features of a range of customers stopped".into()))?;
    let deciles = metrics::deciles(&scored.scores);
    let mut txn = Txn::begin(db, Options { write_lock_first: true, cache_mb: Some(32), memory_map: false }).await?;
    let mut snapshots = SnapshotWriter::new(txn.backend(), as_of, range.run.started_at, model_id);
    snapshots.clear_range(&mut txn, &range.customers).await?;
    let values = |i: usize| score_values(scored.scores[i], scored.outlooks[i]);
    snapshots.write(&mut txn, &history.customer_ids, &scored.features, values).await?;
    let written = Written {
        model_id,
        customer_ids: &history.customer_ids,
        scores: &scored.scores,
        deciles: &deciles,
        outlooks: &scored.outlooks,
    };
    write_range_scores(&mut txn, &written, &range.customers, range.run.started_at).await?;
    // Ranked by its own floors until the run finishes: no longer the
    // recorded ones. Last, so that other daemons' ranges wait for this
    // row lock only through the commit.
    snapshot::forget_deciles(&mut txn).await?;
    if !work::complete(&mut txn, range, owner, chrono::Utc::now()).await? {
        txn.rollback().await?;
        return Ok(RangeOutcome::Lost);
    }
    txn.commit().await?;
    Ok(RangeOutcome::Scored { customers: history.len() })
}

/// Ends a run whose ranges are all done (or given up): ranks every score
/// of its model into deciles in one statement and refreshes the planner's
/// statistics. None if another daemon finished it first.
pub async fn finish(
    db: &DatabaseConnection,
    progress: &Progress,
    now: DateTime<Utc>,
) -> Result<Option<Finished>, ScoreError> {
    let run = &progress.run;
    let model_id = run.model_id.ok_or(ScoreError::NoActiveModel)?;
    let mut txn = Txn::begin(db, Options { write_lock_first: true, ..Options::default() }).await?;
    let select =
        Query::select().column("score").from("scores").and_where(Expr::col("model_id").eq(model_id)).to_owned();
    let mut scores: Vec<f64> = txn.values(&select).await?;
    let customers = scores.len();
    let floors = metrics::decile_floors(&mut scores);
    drop(scores);
    let rank = rank_statement("scores", model_id, &floors);
    txn.execute(&rank).await?;
    txn.analyze("scores").await?;
    txn.analyze("feature_snapshots").await?;
    // A range given up keeps its former snapshots, perhaps another model's.
    if progress.given_up == 0 {
        snapshot::record_deciles(&mut txn, model_id, &floors).await?;
    }
    let outcome = if progress.given_up > 0 { "abandoned" } else { "done" };
    if !work::finish(&mut txn, run, outcome, now).await? {
        txn.rollback().await?;
        return Ok(None);
    }
    txn.commit().await?;
    Ok(Some(Finished { customers, given_up: progress.given_up }))
}
