//! `patron score`: every customer's features as of a moment, scored by the
//! active model. Writes the feature snapshots, replaces the model's scores
//! (with deciles, 1 = most likely to buy) and optionally exports a CSV.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::TryStreamExt;
use rusqlite::{Transaction, TransactionBehavior};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use crate::db::bulk::{BulkInsert, repeated_time};
use crate::db::entities::{customer, score};
use crate::db::raw;
use crate::features::snapshot::SnapshotWriter;
use crate::features::{Features, History, compute, model_inputs};
use crate::model::ModelFile;
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
    let scores = if db.get_database_backend() == DbBackend::Sqlite {
        let scoring = |connection: &_| score_sqlite(connection, &history, &model, active.id, as_of, now, &mut report);
        raw::with_connection(db, scoring).await?
    } else {
        score_orm(db, &history, &model, active.id, as_of, now, &mut report).await?
    };
    if let Some(path) = export {
        export_csv(db, path, &history.customer_ids, &scores).await?;
    }
    Ok(report)
}

/// One chunk of customers with their features and scores.
struct Scored {
    range: (usize, usize),
    features: Vec<Features>,
    scores: Vec<f64>,
    features_time: Duration,
    scoring_time: Duration,
}

impl Scored {
    /// Features and scores of the customers from `start` to `end`.
    fn compute(history: &History, (start, end): (usize, usize), model: &ModelFile, as_of: DateTime<Utc>) -> Self {
        let clock = Instant::now();
        let features: Vec<Features> = (start..end).map(|i| compute(&history.events(i), as_of.timestamp())).collect();
        let features_time = clock.elapsed();
        let clock = Instant::now();
        let mut scratch = Vec::new();
        let scores = features.iter().map(|f| model.score(&model_inputs(f), &mut scratch)).collect();
        Scored { range: (start, end), features, scores, features_time, scoring_time: clock.elapsed() }
    }

    /// Adds this chunk's scores and times; its features, to write.
    fn collect(self, scores: &mut Vec<f64>, report: &mut ScoreReport) -> Vec<Features> {
        scores.extend(self.scores);
        report.features += self.features_time;
        report.scoring += self.scoring_time;
        self.features
    }
}

/// The chunks of customers written per snapshot statement.
fn chunks(customers: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..customers)
        .step_by(SNAPSHOTS_PER_STATEMENT)
        .map(move |start| (start, (start + SNAPSHOTS_PER_STATEMENT).min(customers)))
}

/// Scores and writes through sea-orm, in one transaction; the scores.
async fn score_orm(
    db: &DatabaseConnection,
    history: &History,
    model: &ModelFile,
    model_id: i64,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
    report: &mut ScoreReport,
) -> Result<Vec<f64>, DbErr> {
    let txn = db.begin().await?;
    crate::db::use_large_cache(&txn).await?;
    let mut snapshots = SnapshotWriter::new(txn.get_database_backend(), as_of, now);
    snapshots.clear(&txn).await?;
    let mut scores = Vec::with_capacity(history.len());
    for range in chunks(history.len()) {
        let features = Scored::compute(history, range, model, as_of).collect(&mut scores, report);
        let clock = Instant::now();
        snapshots.write(&txn, &history.customer_ids[range.0..range.1], &features).await?;
        report.write_snapshots += clock.elapsed();
    }
    let deciles = timed_deciles(&scores, report);
    let clock = Instant::now();
    write_scores(&txn, model_id, &history.customer_ids, &scores, &deciles, now).await?;
    txn.commit().await?;
    report.write_scores = clock.elapsed();
    Ok(scores)
}

/// [`score_orm`] on SQLite, through its own statement loop ([`raw`]).
fn score_sqlite(
    connection: &rusqlite::Connection,
    history: &History,
    model: &ModelFile,
    model_id: i64,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
    report: &mut ScoreReport,
) -> rusqlite::Result<Vec<f64>> {
    // 32 MB of page cache, set outside the transaction or SQLite ignores
    // it. Rows are written in key order, so half of `use_large_cache` is
    // enough; with the default 8 MB the writes took twice as long.
    connection.execute_batch("PRAGMA cache_size = -32768")?;
    let txn = Transaction::new_unchecked(connection, TransactionBehavior::Immediate)?;
    let mut snapshots = SnapshotWriter::new(DbBackend::Sqlite, as_of, now);
    let mut scores = Vec::with_capacity(history.len());
    // Features and scores are computed on a second thread while this one
    // writes the previous chunk's snapshots.
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel(2);
        scope.spawn(move || {
            for range in chunks(history.len()) {
                if sender.send(Scored::compute(history, range, model, as_of)).is_err() {
                    break; // the writer failed
                }
            }
        });
        for chunk in receiver {
            let (start, end) = chunk.range;
            let features = chunk.collect(&mut scores, report);
            let clock = Instant::now();
            snapshots.replace_sqlite(&txn, &history.customer_ids[start..end], &features)?;
            report.write_snapshots += clock.elapsed();
        }
        Ok::<_, rusqlite::Error>(())
    })?;
    let deciles = timed_deciles(&scores, report);
    let clock = Instant::now();
    replace_scores_sqlite(&txn, model_id, &history.customer_ids, &scores, &deciles, now)?;
    txn.commit()?;
    report.write_scores = clock.elapsed();
    Ok(scores)
}

/// [`write_scores`] on SQLite: each row replaced in place, as snapshots are
/// (see `SnapshotWriter::replace_sqlite`); deleting a million rows first
/// cost half a second more.
fn replace_scores_sqlite(
    connection: &rusqlite::Connection,
    model_id: i64,
    customer_ids: &[i64],
    scores: &[f64],
    deciles: &[u8],
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let scored_at = now.to_rfc3339_opts(SecondsFormat::AutoSi, false);
    let mut upsert = connection.prepare(
        "INSERT INTO scores (model_id, customer_id, score, decile, scored_at) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (model_id, customer_id) DO UPDATE \
         SET score = excluded.score, decile = excluded.decile, scored_at = excluded.scored_at",
    )?;
    for ((customer_id, score), decile) in customer_ids.iter().zip(scores).zip(deciles) {
        upsert.execute(rusqlite::params![model_id, customer_id, score, decile, scored_at])?;
    }
    Ok(())
}

fn timed_deciles(scores: &[f64], report: &mut ScoreReport) -> Vec<u8> {
    let clock = Instant::now();
    let deciles = metrics::deciles(scores);
    report.scoring += clock.elapsed();
    deciles
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
async fn export_csv(
    db: &DatabaseConnection,
    path: &Path,
    customer_ids: &[i64],
    scores: &[f64],
) -> Result<(), ScoreError> {
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
