//! `patron score`: every customer's features as of a moment, scored by the
//! active model. Writes the feature snapshots, replaces the model's scores
//! (with deciles, 1 = most likely to buy) and optionally exports a CSV.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use crate::db::bulk::{BulkInsert, repeated_time};
use crate::db::entities::{customer, score};
use crate::features::snapshot::SnapshotWriter;
use crate::features::{Features, History, compute, model_inputs};
use crate::model::file::{self, ModelFileError};
use crate::model::{metrics, registry};

const SCORE_COLUMNS: &[&str] = &["model_id", "customer_id", "score", "decile", "scored_at"];
/// Rows per INSERT, within SQLite's limit of 32,766 bound values.
const SCORES_PER_STATEMENT: usize = 5000;
const SNAPSHOTS_PER_STATEMENT: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("there is no active model to score with; train one with `patron train`")]
    NoActiveModel,
    #[error("there are no customers to score; import customers first with `patron import customers FILE`")]
    NoCustomers,
    #[error(transparent)]
    ModelFile(#[from] ModelFileError),
    #[error("cannot write the export file {path}: {source}")]
    Export { path: PathBuf, source: std::io::Error },
    #[error("database error while scoring: {0}")]
    Database(#[from] DbErr),
}

impl ScoreError {
    /// Something must be done first (train, import) or the model file is refused.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            ScoreError::NoActiveModel | ScoreError::NoCustomers => true,
            ScoreError::ModelFile(e) => !e.is_io(),
            ScoreError::Export { .. } | ScoreError::Database(_) => false,
        }
    }
}

/// What a scoring run did, and how long each step took.
#[derive(Debug)]
pub struct ScoreReport {
    pub model: String,
    pub customers: usize,
    pub load: Duration,
    pub features: Duration,
    pub scoring: Duration,
    pub write_snapshots: Duration,
    pub write_scores: Duration,
    pub export: Option<PathBuf>,
}

/// Scores every customer as of `as_of` with the active model. Snapshots
/// and scores are replaced in one transaction: readers see the old set or
/// the new one, never a mix.
pub async fn score(
    db: &DatabaseConnection,
    models_dir: &Path,
    as_of: DateTime<Utc>,
    export: Option<&Path>,
    now: DateTime<Utc>,
) -> Result<ScoreReport, ScoreError> {
    let active = registry::active(db).await?.ok_or(ScoreError::NoActiveModel)?;
    let model = file::load(&models_dir.join(&active.file_name))?;
    let started = Instant::now();
    let history = History::load(db).await?;
    if history.is_empty() {
        return Err(ScoreError::NoCustomers);
    }
    let mut report = ScoreReport {
        model: model.name.clone(),
        customers: history.len(),
        load: started.elapsed(),
        features: Duration::ZERO,
        scoring: Duration::ZERO,
        write_snapshots: Duration::ZERO,
        write_scores: Duration::ZERO,
        export: export.map(Path::to_owned),
    };
    let txn = db.begin().await?;
    crate::db::use_large_cache(&txn).await?;
    let mut snapshots = SnapshotWriter::new(txn.get_database_backend(), as_of, now);
    snapshots.clear(&txn).await?;
    let mut scores = Vec::with_capacity(history.len());
    let mut scratch = Vec::new();
    for start in (0..history.len()).step_by(SNAPSHOTS_PER_STATEMENT) {
        let end = (start + SNAPSHOTS_PER_STATEMENT).min(history.len());
        let clock = Instant::now();
        let features: Vec<Features> = (start..end).map(|i| compute(&history.events(i), as_of.timestamp())).collect();
        report.features += clock.elapsed();
        let clock = Instant::now();
        scores.extend(features.iter().map(|f| model.score(&model_inputs(f), &mut scratch)));
        report.scoring += clock.elapsed();
        let clock = Instant::now();
        snapshots.write(&txn, &history.customer_ids[start..end], &features).await?;
        report.write_snapshots += clock.elapsed();
    }
    let clock = Instant::now();
    let deciles = metrics::deciles(&scores);
    report.scoring += clock.elapsed();
    let clock = Instant::now();
    write_scores(&txn, active.id, &history.customer_ids, &scores, &deciles, now).await?;
    txn.commit().await?;
    report.write_scores = clock.elapsed();
    if let Some(path) = export {
        export_csv(db, path, &history.customer_ids, &scores).await?;
    }
    Ok(report)
}

/// Replaces the scores of `model_id`.
async fn write_scores(
    txn: &DatabaseTransaction,
    model_id: i64,
    customer_ids: &[i64],
    scores: &[f64],
    deciles: &[u8],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    score::Entity::delete_many().filter(score::Column::ModelId.eq(model_id)).exec(txn).await?;
    let mut insert = BulkInsert::new(txn.get_database_backend(), "scores", SCORE_COLUMNS);
    let scored_at = repeated_time(txn.get_database_backend(), now);
    for start in (0..customer_ids.len()).step_by(SCORES_PER_STATEMENT) {
        let end = (start + SCORES_PER_STATEMENT).min(customer_ids.len());
        let mut values = Vec::with_capacity((end - start) * SCORE_COLUMNS.len());
        for i in start..end {
            values.extend([
                model_id.into(),
                customer_ids[i].into(),
                scores[i].into(),
                i16::from(deciles[i]).into(),
                scored_at.clone(),
            ]);
        }
        txn.execute_raw(insert.statement(values)).await?;
    }
    Ok(())
}

/// `customer_id,score` (the external id) for every customer, written whole
/// or not at all. External ids are streamed from the database rather than
/// kept beside the history, which would cost 50 MB on a million customers.
async fn export_csv(db: &DatabaseConnection, path: &Path, customer_ids: &[i64], scores: &[f64]) -> Result<(), ScoreError> {
    let failed = |source: std::io::Error| ScoreError::Export { path: path.to_owned(), source };
    let temporary = path.with_extension("csv.tmp");
    let mut writer = csv::Writer::from_path(&temporary).map_err(|e| failed(e.into()))?;
    writer.write_record(["customer_id", "score"]).map_err(|e| failed(e.into()))?;
    let mut customers = customer::Entity::find()
        .select_only()
        .columns([customer::Column::Id, customer::Column::ExternalId])
        .order_by_asc(customer::Column::Id)
        .into_tuple::<(i64, String)>()
        .stream(db)
        .await?;
    while let Some((id, external_id)) = customers.try_next().await? {
        // Customers added since the history was read have no score yet.
        if let Ok(index) = customer_ids.binary_search(&id) {
            writer.write_record([external_id.as_str(), &scores[index].to_string()]).map_err(|e| failed(e.into()))?;
        }
    }
    let file = writer.into_inner().map_err(|e| failed(e.into_error()))?;
    file.sync_all().map_err(failed)?;
    std::fs::rename(&temporary, path).map_err(failed)
}
