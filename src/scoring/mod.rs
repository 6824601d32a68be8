//! `patron score`: every customer's features as of a moment, scored by the
//! active model. Writes the feature snapshots, replaces the model's scores
//! (with deciles, 1 = most likely to buy) and optionally exports a CSV.
//! `shared` splits the same work into ranges for several daemons.

pub mod shared;

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sea_orm::sea_query::{Asterisk, Expr, ExprTrait, Query, SimpleExpr, UpdateStatement};
use sea_orm::{DatabaseConnection, DbErr, EntityTrait, QueryOrder, QuerySelect};

use crate::config::LifetimeValueSettings;
use crate::db::bulk::{BulkInsert, repeated_time};
use crate::db::engine::{Options, Rewrite, Txn};
use crate::db::entities::customer;
use crate::failure::{Failure, Fault};
use crate::features::snapshot::{self, ScoreValues, SnapshotWriter};
use crate::features::{Features, History, compute, model_inputs};
use crate::model::ModelFile;
use crate::model::file::{self, ModelFileError};
use crate::model::lifetime::{BaseInputs, Outlook, Outlooks, Valuation};
use crate::model::{metrics, registry};
use crate::work;

const SCORE_COLUMNS: &[&str] = &[
    "model_id",
    "customer_id",
    "score",
    "decile",
    "scored_at",
    "p_alive",
    "expected_orders_90d",
    "expected_orders_365d",
    "clv",
];
/// Customers whose history `patron score` holds in memory at once, so
/// that its memory does not grow with the orders of a larger base.
const CUSTOMERS_PER_RANGE: u64 = 500_000;
/// Customers per chunk of features computed and snapshots written. On
/// SQLite each chunk's write hands the connection over and prepares its
/// statement again, so chunks are kept large.
const CUSTOMERS_PER_CHUNK: usize = 10_000;

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

impl Failure for ScoreError {
    /// Something must be done first (train, import) or the model file is
    /// refused; or a file or the database failed.
    fn fault(&self) -> Fault {
        match self {
            ScoreError::NoActiveModel | ScoreError::NoCustomers => Fault::Input,
            ScoreError::ModelFile(e) => e.fault(),
            ScoreError::Export { .. } | ScoreError::Database(_) => Fault::Runtime,
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
    valuation: Valuation,
    as_of: DateTime<Utc>,
    export: Option<&Path>,
    now: DateTime<Utc>,
) -> Result<ScoreReport, ScoreError> {
    score_in_ranges(db, models_dir, valuation, as_of, export, now, CUSTOMERS_PER_RANGE).await
}

/// [`score`], holding the history of `customers_per_range` customers in
/// memory at a time.
pub async fn score_in_ranges(
    db: &DatabaseConnection,
    models_dir: &Path,
    valuation: Valuation,
    as_of: DateTime<Utc>,
    export: Option<&Path>,
    now: DateTime<Utc>,
    customers_per_range: u64,
) -> Result<ScoreReport, ScoreError> {
    let active = registry::active(db).await?.ok_or(ScoreError::NoActiveModel)?;
    let model = Arc::new(file::load(&models_dir.join(&active.file_name))?);
    let mut report = ScoreReport {
        model: model.name.clone(),
        customers: 0,
        load: Duration::ZERO,
        features: Duration::ZERO,
        scoring: Duration::ZERO,
        write_snapshots: Duration::ZERO,
        write_scores: Duration::ZERO,
        export: export.map(Path::to_owned),
    };
    let moment = Moment { as_of, valuation, now };
    let scored = score_and_write(db, &model, active.id, moment, customers_per_range, &mut report).await?;
    if let Some(path) = export {
        export_csv(db, path, &scored.customer_ids, &scored.scores).await?;
    }
    Ok(report)
}

/// The lifetime value as `[lifetime_value]` configures it.
pub fn valuation(settings: &LifetimeValueSettings) -> Valuation {
    Valuation { horizon_days: settings.horizon_days(), annual_discount_rate: settings.annual_discount_rate }
}

/// The moment customers are scored as of, how their value is counted, and
/// the time the scores are stamped with.
#[derive(Debug, Clone, Copy)]
struct Moment {
    as_of: DateTime<Utc>,
    valuation: Valuation,
    now: DateTime<Utc>,
}

/// One chunk of customers with their features, scores and outlooks.
struct Scored {
    range: (usize, usize),
    features: Vec<Features>,
    scores: Vec<f64>,
    outlooks: Vec<Option<Outlook>>,
    features_time: Duration,
    scoring_time: Duration,
}

impl Scored {
    /// Features, scores and outlooks of the customers from `start` to `end`.
    fn compute(
        history: &History,
        (start, end): (usize, usize),
        model: &ModelFile,
        as_of: DateTime<Utc>,
        valuation: &Valuation,
    ) -> Self {
        let clock = Instant::now();
        let features: Vec<Features> = (start..end).map(|i| compute(&history.events(i), as_of.timestamp())).collect();
        let features_time = clock.elapsed();
        let clock = Instant::now();
        let mut scratch = Vec::new();
        let mut base_inputs = BaseInputs::new(model.customer_base.as_ref(), model.training.horizon_days as f64);
        let scores = features
            .iter()
            .map(|f| model.score(&model_inputs(f, base_inputs.of(f.repeats.as_ref())), &mut scratch))
            .collect();
        let outlooks = match &model.customer_base {
            Some(base) => {
                let mut outlooks = Outlooks::new(base, *valuation);
                features.iter().map(|f| Some(outlooks.of(f.repeats.as_ref()?))).collect()
            }
            None => vec![None; features.len()],
        };
        Scored { range: (start, end), features, scores, outlooks, features_time, scoring_time: clock.elapsed() }
    }

    /// Adds this chunk's scores, outlooks and times; its features, to write.
    fn collect(
        self,
        scores: &mut Vec<f64>,
        outlooks: &mut Vec<Option<Outlook>>,
        report: &mut ScoreReport,
    ) -> Vec<Features> {
        scores.extend(self.scores);
        outlooks.extend(self.outlooks);
        report.features += self.features_time;
        report.scoring += self.scoring_time;
        self.features
    }
}

/// The chunks of customers.
fn chunks(customers: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..customers).step_by(CUSTOMERS_PER_CHUNK).map(move |start| (start, (start + CUSTOMERS_PER_CHUNK).min(customers)))
}

/// Every customer scored: database ids in order, and their scores.
#[derive(Default)]
struct AllScores {
    customer_ids: Vec<i64>,
    scores: Vec<f64>,
}

/// Scores every customer and writes the snapshots and scores in one
/// transaction, one range of `customers_per_range` customers at a time:
/// only a range's history is held in memory (and the next one's, read
/// meanwhile), and of the customers before it only their ids and scores.
/// Each range's scores are written with the range's own deciles; with more
/// than one range, one statement then ranks the whole base, changing the
/// rows near a decile's edge. The snapshots carry the scores too, and the
/// floors of the deciles are recorded beside them.
async fn score_and_write(
    db: &DatabaseConnection,
    model: &Arc<ModelFile>,
    model_id: i64,
    moment: Moment,
    customers_per_range: u64,
    report: &mut ScoreReport,
) -> Result<AllScores, ScoreError> {
    let ranges = work::customer_ranges(db, customers_per_range).await?;
    // 32 MB of SQLite page cache: rows are written in key order, so half of
    // what random upserts need is enough; with the default 8 MB the writes
    // took twice as long.
    let mut txn = Txn::begin(db, Options { write_lock_first: true, cache_mb: Some(32), memory_map: false }).await?;
    let mut snapshots = SnapshotWriter::replacing_all(&mut txn, moment.as_of, moment.now, model_id).await?;
    let scores_rewrite = begin_scores_rewrite(&mut txn, model_id).await?;
    let mut all = AllScores::default();
    let mut reading = HistoryReader::new(db, &ranges);
    while let Some(history) = reading.next(report).await? {
        let history = Arc::new(history);
        let range_scores = score_history(&mut txn, &mut snapshots, &history, model, moment, report).await?;
        let deciles = timed_deciles(&range_scores.scores, report);
        let clock = Instant::now();
        let written = Written {
            model_id,
            customer_ids: &history.customer_ids,
            scores: &range_scores.scores,
            deciles: &deciles,
            outlooks: &range_scores.outlooks,
        };
        insert_scores(&mut txn, scores_rewrite.target(), &written, moment.now).await?;
        report.write_scores += clock.elapsed();
        all.customer_ids.extend_from_slice(&history.customer_ids);
        all.scores.extend(range_scores.scores);
    }
    if all.scores.is_empty() {
        return Err(ScoreError::NoCustomers);
    }
    report.customers = all.scores.len();
    let clock = Instant::now();
    let floors = metrics::decile_floors(&mut all.scores.clone());
    if ranges.len() > 1 {
        txn.execute(&rank_statement(scores_rewrite.target(), model_id, &floors)).await?;
    }
    snapshot::record_deciles(&mut txn, model_id, &floors).await?;
    // Campaign segments read both tables next (joined, where the snapshots
    // do not carry the scores): their statistics are gathered as they take
    // the old ones' place, in the order segments join them.
    let rewrites = snapshots.into_rewrite().into_iter().chain([scores_rewrite]).collect();
    txn.finish_rewrites(rewrites).await?;
    txn.commit().await?;
    report.write_scores += clock.elapsed();
    Ok(all)
}

/// Reads the history of one range after the other, the next while the
/// caller scores and writes the last. Dropped, it stops its read.
struct HistoryReader {
    ranges: std::vec::IntoIter<Option<RangeInclusive<i64>>>,
    next: tokio::task::JoinSet<Result<History, DbErr>>,
    db: DatabaseConnection,
}

impl HistoryReader {
    fn new(db: &DatabaseConnection, ranges: &[RangeInclusive<i64>]) -> Self {
        // One range covers everyone: the tables are read whole, without bounds.
        let bounds: Vec<_> = match ranges {
            [_] => vec![None],
            _ => ranges.iter().cloned().map(Some).collect(),
        };
        let mut reader =
            HistoryReader { ranges: bounds.into_iter(), next: tokio::task::JoinSet::new(), db: db.clone() };
        reader.read_next();
        reader
    }

    fn read_next(&mut self) {
        if let Some(range) = self.ranges.next() {
            let db = self.db.clone();
            self.next.spawn(async move { History::load_customers(&db, range.as_ref()).await });
        }
    }

    /// The next range's history, once read (the wait counted as reading);
    /// None after the last.
    async fn next(&mut self, report: &mut ScoreReport) -> Result<Option<History>, DbErr> {
        let clock = Instant::now();
        let Some(read) = self.next.join_next().await else { return Ok(None) };
        let history =
            read.map_err(|_| DbErr::Custom("reading the history of a range of customers stopped".into()))??;
        report.load += clock.elapsed();
        self.read_next();
        Ok(Some(history))
    }
}

/// One range's scores and outlooks, customers in the order of its history.
struct RangeScores {
    scores: Vec<f64>,
    outlooks: Vec<Option<Outlook>>,
}

/// Computes the features, scores and outlooks of `history`'s customers and
/// writes their snapshots. The features and scores of the next chunk are
/// computed on a second thread while this one writes the previous chunk.
async fn score_history(
    txn: &mut Txn,
    snapshots: &mut SnapshotWriter,
    history: &Arc<History>,
    model: &Arc<ModelFile>,
    moment: Moment,
    report: &mut ScoreReport,
) -> Result<RangeScores, DbErr> {
    let mut scores = Vec::with_capacity(history.len());
    let mut outlooks = Vec::with_capacity(history.len());
    let (mut chunks, computing) =
        compute_in_background(Arc::clone(history), Arc::clone(model), moment.as_of, moment.valuation);
    while let Some(chunk) = chunks.recv().await {
        let (start, end) = chunk.range;
        let features = chunk.collect(&mut scores, &mut outlooks, report);
        let clock = Instant::now();
        let (chunk_scores, chunk_outlooks) = (&scores[start..end], &outlooks[start..end]);
        let values = |i: usize| score_values(chunk_scores[i], chunk_outlooks[i]);
        snapshots.write(txn, &history.customer_ids[start..end], &features, values).await?;
        report.write_snapshots += clock.elapsed();
    }
    if computing.join().is_err() || scores.len() != history.len() {
        return Err(DbErr::Custom("computing the features stopped before every customer was scored".into()));
    }
    Ok(RangeScores { scores, outlooks })
}

/// A customer's score and outlook as their snapshot carries them.
fn score_values(score: f64, outlook: Option<Outlook>) -> ScoreValues {
    ScoreValues {
        score,
        p_alive: outlook.map(|o| o.p_alive),
        expected_orders_90d: outlook.map(|o| o.expected_orders_90d),
        expected_orders_365d: outlook.map(|o| o.expected_orders_365d),
        clv: outlook.and_then(|o| o.clv),
    }
}

/// Computes the chunks on a thread of their own, two at most waiting; the
/// thread stops early when the receiver is dropped (the writer failed).
fn compute_in_background(
    history: Arc<History>,
    model: Arc<ModelFile>,
    as_of: DateTime<Utc>,
    valuation: Valuation,
) -> (tokio::sync::mpsc::Receiver<Scored>, std::thread::JoinHandle<()>) {
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    let computing = std::thread::spawn(move || {
        for range in chunks(history.len()) {
            if sender.blocking_send(Scored::compute(&history, range, &model, as_of, &valuation)).is_err() {
                break;
            }
        }
    });
    (receiver, computing)
}

fn timed_deciles(scores: &[f64], report: &mut ScoreReport) -> Vec<u8> {
    let clock = Instant::now();
    let deciles = metrics::deciles(scores);
    report.scoring += clock.elapsed();
    deciles
}

/// Scores to write: customer `customer_ids[i]` scored `scores[i]`, in
/// decile `deciles[i]`, with the outlook `outlooks[i]`.
struct Written<'a> {
    model_id: i64,
    customer_ids: &'a [i64],
    scores: &'a [f64],
    deciles: &'a [u8],
    outlooks: &'a [Option<Outlook>],
}

/// Replaces the scores of `written.model_id` of the customers in `range`.
async fn write_range_scores(
    txn: &mut Txn,
    written: &Written<'_>,
    range: &RangeInclusive<i64>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let delete = Query::delete()
        .from_table("scores")
        .and_where(Expr::col("model_id").eq(written.model_id))
        .and_where(Expr::col("customer_id").between(*range.start(), *range.end()))
        .to_owned();
    txn.delete_before_rewrite(&delete).await?;
    insert_scores(txn, "scores", written, now).await
}

/// Begins the rewrite of the scores (`Txn::begin_rewrite`), the other
/// models' scores carried over: the scores of `model_id` are then written
/// into its target, which takes the old table's place once the caller
/// finishes it.
async fn begin_scores_rewrite(txn: &mut Txn, model_id: i64) -> Result<Rewrite, DbErr> {
    let others =
        Query::select().column(Asterisk).from("scores").and_where(Expr::col("model_id").ne(model_id)).to_owned();
    txn.begin_rewrite("scores", "scores_next", Some(others)).await
}

/// Ranks the scores of `model_id` in `table` into deciles by `floors`
/// (`metrics::decile_floors` of all of them), changing only the rows whose
/// decile differs.
fn rank_statement(table: &'static str, model_id: i64, floors: &[f64]) -> UpdateStatement {
    let decile = decile_expression(|| Expr::col("score"), floors);
    Query::update()
        .table(table)
        .value("decile", decile.clone())
        .and_where(Expr::col("model_id").eq(model_id))
        .and_where(Expr::col("decile").ne(decile))
        .to_owned()
}

/// The decile of the score `score()` reads, by `floors`
/// (`metrics::decile_from_floors` in SQL): `CASE WHEN score >= floor1 THEN
/// 1 ... WHEN score IS NOT NULL THEN 10 END`, NULL without a score.
pub fn decile_expression(score: impl Fn() -> SimpleExpr, floors: &[f64]) -> SimpleExpr {
    let mut whens = floors.iter().map(|floor| score().gte(*floor)).chain([score().is_not_null()]);
    let mut case = Expr::case(whens.next().expect("the last test is always there"), 1);
    for (i, when) in whens.enumerate() {
        case = case.case(when, i as i32 + 2);
    }
    case.into()
}

/// Writes `written` into `table` (`scores` or the table replacing it).
async fn insert_scores(
    txn: &mut Txn,
    table: &'static str,
    written: &Written<'_>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let Written { model_id, customer_ids, scores, deciles, outlooks } = *written;
    let insert = BulkInsert::rewrite(txn.backend(), table, SCORE_COLUMNS, &["model_id", "customer_id"]);
    let scored_at = repeated_time(txn.backend(), now);
    txn.insert_rows(&insert, customer_ids.len(), |i, values| {
        values.extend([
            model_id.into(),
            customer_ids[i].into(),
            scores[i].into(),
            i16::from(deciles[i]).into(),
            scored_at.clone(),
            outlooks[i].map(|o| o.p_alive).into(),
            outlooks[i].map(|o| o.expected_orders_90d).into(),
            outlooks[i].map(|o| o.expected_orders_365d).into(),
            outlooks[i].and_then(|o| o.clv).into(),
        ])
    })
    .await
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
