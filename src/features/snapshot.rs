//! The `feature_snapshots` table: every customer's latest features, so that
//! segments and reports can filter on them. Replaced whole at each scoring,
//! in the scoring's transaction, or a range of customers at a time when
//! daemons share the scoring.

use std::ops::RangeInclusive;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query, Value};
use sea_orm::{DbBackend, DbErr, IdenStatic, Iterable};

use super::Features;
use crate::db::bulk::{BulkInsert, repeated_time};
use crate::db::engine::{Rewrite, Txn};
use crate::db::entities::feature_snapshot;

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
    as_of: Value,
    computed_at: Value,
    rewrite: Option<Rewrite>,
}

impl SnapshotWriter {
    /// Writes into `feature_snapshots` as it is.
    pub fn new(backend: DbBackend, as_of: DateTime<Utc>, computed_at: DateTime<Utc>) -> Self {
        Self::into_table(backend, "feature_snapshots", as_of, computed_at)
    }

    fn into_table(backend: DbBackend, table: &'static str, as_of: DateTime<Utc>, computed_at: DateTime<Utc>) -> Self {
        debug_assert_eq!(COLUMNS[0], "customer_id", "the key comes first, as in `row_values`");
        SnapshotWriter {
            insert: BulkInsert::rewrite(backend, table, &COLUMNS, &["customer_id"]),
            as_of: repeated_time(backend, as_of),
            computed_at: repeated_time(backend, computed_at),
            rewrite: None,
        }
    }

    /// Replaces every snapshot: each scoring rewrites them all into a fresh
    /// table, and a deleted customer's row goes with the old one (see
    /// `Txn::begin_rewrite`).
    pub async fn replacing_all(txn: &mut Txn, as_of: DateTime<Utc>, computed_at: DateTime<Utc>) -> Result<Self, DbErr> {
        let rewrite = txn.begin_rewrite("feature_snapshots", NEXT, None).await?;
        let mut writer = Self::into_table(txn.backend(), rewrite.target(), as_of, computed_at);
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

    /// Writes the snapshots of `customer_ids`, replacing their rows.
    pub async fn write(&mut self, txn: &mut Txn, customer_ids: &[i64], features: &[Features]) -> Result<(), DbErr> {
        let (as_of, computed_at) = (&self.as_of, &self.computed_at);
        txn.insert_rows(&self.insert, customer_ids.len(), |i, values| {
            row_values(values, customer_ids[i], &features[i], as_of, computed_at)
        })
        .await
    }
}

fn row_values(out: &mut Vec<Value>, customer_id: i64, f: &Features, as_of: &Value, computed_at: &Value) {
    out.extend([
        customer_id.into(),
        as_of.clone(),
        computed_at.clone(),
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
    ]);
}
