//! The `feature_snapshots` table: every customer's latest features, so that
//! segments and reports can filter on them. Replaced whole at each scoring,
//! in the scoring's transaction.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict, Query, Value};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, IdenStatic, Iterable};

use super::Features;
use crate::db::bulk::{BulkInsert, repeated_time};
use crate::db::entities::feature_snapshot;
use crate::db::raw;

/// The table's columns, in the entity's order, which `row_values` follows.
static COLUMNS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| feature_snapshot::Column::iter().map(|column| column.as_str()).collect());

/// A single-row INSERT that replaces the customer's row, for SQLite.
static UPSERT_SQL: LazyLock<String> = LazyLock::new(|| {
    debug_assert_eq!(COLUMNS[0], "customer_id", "the key comes first, as in `row_values`");
    let mut upsert = Query::insert();
    upsert
        .into_table("feature_snapshots")
        .columns(COLUMNS.iter().copied())
        .values_panic(COLUMNS.iter().map(|_| Expr::val(0i64)))
        .on_conflict(OnConflict::column("customer_id").update_columns(COLUMNS[1..].iter().copied()).to_owned());
    DbBackend::Sqlite.build(&upsert).sql
});

/// Writes snapshots into a transaction: [`SnapshotWriter::clear`] first,
/// then [`SnapshotWriter::write`] for each chunk of customers.
pub struct SnapshotWriter {
    insert: BulkInsert,
    as_of: Value,
    computed_at: Value,
}

impl SnapshotWriter {
    pub fn new(backend: DbBackend, as_of: DateTime<Utc>, computed_at: DateTime<Utc>) -> Self {
        SnapshotWriter {
            insert: BulkInsert::new(backend, "feature_snapshots", &COLUMNS),
            as_of: repeated_time(backend, as_of),
            computed_at: repeated_time(backend, computed_at),
        }
    }

    /// Removes every snapshot: each scoring replaces them all.
    pub async fn clear(&self, txn: &DatabaseTransaction) -> Result<(), DbErr> {
        txn.execute(&Query::delete().from_table("feature_snapshots").to_owned()).await.map(drop)
    }

    /// Writes the snapshots of `customer_ids` (one statement; at most about
    /// 1,300 customers, SQLite's limit of bound values).
    pub async fn write(
        &mut self,
        txn: &DatabaseTransaction,
        customer_ids: &[i64],
        features: &[Features],
    ) -> Result<(), DbErr> {
        let mut values = Vec::with_capacity(features.len() * COLUMNS.len());
        for (customer_id, f) in customer_ids.iter().zip(features) {
            row_values(&mut values, *customer_id, f, &self.as_of, &self.computed_at);
        }
        txn.execute_raw(self.insert.statement(values)).await.map(drop)
    }

    /// [`SnapshotWriter::write`] on SQLite, without [`SnapshotWriter::clear`]:
    /// each customer's row is replaced in place (one prepared statement run
    /// per customer, SQLite's fastest way in). Deleting a million rows first
    /// cost more than the writes; no stale row can remain, as every
    /// customer is rewritten and a deleted customer's row goes with it.
    pub fn replace_sqlite(
        &mut self,
        connection: &rusqlite::Connection,
        customer_ids: &[i64],
        features: &[Features],
    ) -> rusqlite::Result<()> {
        let mut insert = connection.prepare(&UPSERT_SQL)?;
        let mut values = Vec::with_capacity(COLUMNS.len());
        for (customer_id, f) in customer_ids.iter().zip(features) {
            values.clear();
            row_values(&mut values, *customer_id, f, &self.as_of, &self.computed_at);
            insert.execute(rusqlite::params_from_iter(values.iter().map(raw::Bound)))?;
        }
        Ok(())
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
