//! The `feature_snapshots` table: every customer's latest features, so that
//! segments and reports can filter on them. Replaced whole at each scoring,
//! in the scoring's transaction, or a range of customers at a time when
//! daemons share the scoring. Each row carries the score and outlook of the
//! model it was scored with; `snapshot_deciles` records that model and its
//! decile floors once every row carries its scores, so that a segment can
//! read the snapshots alone (see `segment::compile::Scores`).

use std::ops::RangeInclusive;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query, Value};
use sea_orm::{DbBackend, DbErr, IdenStatic, Iterable};

use super::Features;
use crate::db::bulk::{BulkInsert, repeated_time};
use crate::db::engine::{Rewrite, Txn};
use crate::db::entities::feature_snapshot;
use crate::db::record::record;

/// The table's columns, in the entity's order, which `row_values` follows.
static COLUMNS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| feature_snapshot::Column::iter().map(|column| column.as_str()).collect());

/// The table [`SnapshotWriter::replacing_all`] fills, which then takes
/// `feature_snapshots`' place.
const NEXT: &str = "feature_snapshots_next";

/// Writes snapshots into a transaction: [`SnapshotWriter::replacing_all`]
/// or [`SnapshotWriter::clear_range`] first, then [`SnapshotWriter::write`]
/// for each chunk of customers (then, replacing all, the rewrite's end).
pub struct SnapshotWriter {
    insert: BulkInsert,
    stamp: Stamp,
    rewrite: Option<Rewrite>,
}

/// What every row of a scoring run's snapshots shares.
struct Stamp {
    as_of: Value,
    computed_at: Value,
    model_id: Value,
}

/// What the model said of one customer, written beside their features.
#[derive(Debug, Clone, Copy)]
pub struct ScoreValues {
    pub score: f64,
    pub p_alive: Option<f64>,
    pub expected_orders_90d: Option<f64>,
    pub expected_orders_365d: Option<f64>,
    pub clv: Option<f64>,
}

impl SnapshotWriter {
    /// Writes into `feature_snapshots` as it is, the scores of `model_id`
    /// beside the features.
    pub fn new(backend: DbBackend, as_of: DateTime<Utc>, computed_at: DateTime<Utc>, model_id: i64) -> Self {
        Self::into_table(backend, "feature_snapshots", as_of, computed_at, model_id)
    }

    fn into_table(
        backend: DbBackend,
        table: &'static str,
        as_of: DateTime<Utc>,
        computed_at: DateTime<Utc>,
        model_id: i64,
    ) -> Self {
        debug_assert_eq!(COLUMNS[0], "customer_id", "the key comes first, as in `row_values`");
        SnapshotWriter {
            insert: BulkInsert::rewrite(backend, table, &COLUMNS, &["customer_id"]),
            stamp: Stamp {
                as_of: repeated_time(backend, as_of),
                computed_at: repeated_time(backend, computed_at),
                model_id: model_id.into(),
            },
            rewrite: None,
        }
    }

    /// Replaces every snapshot: each scoring rewrites them all into a fresh
    /// table, and a deleted customer's row goes with the old one (see
    /// `Txn::begin_rewrite`).
    pub async fn replacing_all(
        txn: &mut Txn,
        as_of: DateTime<Utc>,
        computed_at: DateTime<Utc>,
        model_id: i64,
    ) -> Result<Self, DbErr> {
        let rewrite = txn.begin_rewrite("feature_snapshots", NEXT, None).await?;
        let mut writer = Self::into_table(txn.backend(), rewrite.target(), as_of, computed_at, model_id);
        writer.rewrite = Some(rewrite);
        Ok(writer)
    }

    /// The rewrite begun by [`SnapshotWriter::replacing_all`], for the
    /// caller to finish (`Txn::finish_rewrites`) once every row is written.
    pub fn into_rewrite(self) -> Option<Rewrite> {
        self.rewrite
    }

    /// Removes the snapshots of the customers in `range`, which a shared
    /// scoring run rewrites one range at a time.
    pub async fn clear_range(&self, txn: &mut Txn, range: &RangeInclusive<i64>) -> Result<(), DbErr> {
        let delete = Query::delete()
            .from_table("feature_snapshots")
            .and_where(Expr::col("customer_id").between(*range.start(), *range.end()))
            .to_owned();
        txn.delete_before_rewrite(&delete).await
    }

    /// Writes the snapshots of `customer_ids`, replacing their rows; the
    /// model's word on `customer_ids[i]` is `scores(i)`.
    pub async fn write(
        &mut self,
        txn: &mut Txn,
        customer_ids: &[i64],
        features: &[Features],
        scores: impl Fn(usize) -> ScoreValues + Sync,
    ) -> Result<(), DbErr> {
        let stamp = &self.stamp;
        txn.insert_rows(&self.insert, customer_ids.len(), |i, values| {
            row_values(values, customer_ids[i], &features[i], &scores(i), stamp)
        })
        .await
    }
}

fn row_values(out: &mut Vec<Value>, customer_id: i64, f: &Features, s: &ScoreValues, stamp: &Stamp) {
    out.extend([
        customer_id.into(),
        stamp.as_of.clone(),
        stamp.computed_at.clone(),
        f.recency_days.into(),
        f.monetary_mean.into(),
        f.first_order_value.into(),
        f.tenure_days.into(),
        f.gap_mean_days.into(),
        f.gap_std_days.into(),
        f.spend_trend.into(),
        f.loyalty_points.into(),
        f.days_since_last_message.into(),
        f.monetary_total.into(),
        f.spend_30d.into(),
        f.spend_90d.into(),
        f.spend_365d.into(),
        f.frequency.into(),
        f.orders_total.into(),
        f.orders_30d.into(),
        f.orders_90d.into(),
        f.orders_365d.into(),
        f.distinct_categories.into(),
        f.complaints_open.into(),
        f.complaints_365d.into(),
        f.loyalty_tier.clone().into(),
        stamp.model_id.clone(),
        s.score.into(),
        s.p_alive.into(),
        s.expected_orders_90d.into(),
        s.expected_orders_365d.into(),
        s.clv.into(),
    ]);
}

/// The table of the decile floors of the scores every snapshot carries.
const DECILES: &str = "snapshot_deciles";

/// Records that every snapshot now carries the scores of `model_id`, ranked
/// into deciles by `floors` (`model::metrics::decile_floors`), as the
/// `scores` table has them.
pub async fn record_deciles(txn: &mut Txn, model_id: i64, floors: &[f64]) -> Result<(), DbErr> {
    forget_deciles(txn).await?;
    let mut insert = Query::insert();
    insert.into_table(DECILES).columns(["decile", "model_id", "floor"]);
    for (i, floor) in floors.iter().enumerate() {
        insert.values_panic([(i as i16 + 1).into(), model_id.into(), (*floor).into()]);
    }
    if !floors.is_empty() {
        txn.execute(&insert).await?;
    }
    Ok(())
}

/// Forgets the record of [`record_deciles`]: some snapshots are about to
/// carry other scores, or scores ranked by their own range's floors.
pub async fn forget_deciles(txn: &mut Txn) -> Result<(), DbErr> {
    txn.execute(&Query::delete().from_table(DECILES).to_owned()).await.map(drop)
}

record! {
    struct DecileFloor {
        model_id: i64,
        floor: f64,
    }
}

/// The model whose scores every snapshot carries and their decile floors,
/// 1 to 9, as [`record_deciles`] recorded them; None if not recorded.
pub async fn recorded_deciles(txn: &mut Txn) -> Result<Option<(i64, Vec<f64>)>, DbErr> {
    let select = Query::select().columns(["model_id", "floor"]).from(DECILES).order_by("decile", Order::Asc).to_owned();
    let floors: Vec<DecileFloor> = txn.query(&select).await?;
    let Some(model_id) = floors.first().map(|f| f.model_id) else { return Ok(None) };
    Ok(Some((model_id, floors.into_iter().map(|f| f.floor).collect())))
}
