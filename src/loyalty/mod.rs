//! The loyalty programme: points for orders, expiry, tiers and redemptions.
//!
//! [`engine`] applies the rules to one member without IO; [`recompute`]
//! loads the members for whom something may have changed, runs the engine,
//! and writes what is due in one transaction; this module also answers a
//! member's statement and balance. The ledger is append-only and every entry
//! is keyed by its cause (`order:ID`, `expire:order:ID`, `redemption:ID`), so
//! a recompute or a re-import never counts anything twice.

pub mod adjustments;
pub mod engine;
mod recompute;
pub mod redemptions;

pub use recompute::{Report, recompute, recompute_range};

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, InsertStatement, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;

use crate::db::entities::{customer, loyalty_account, loyalty_ledger, order};
use engine::{Order, Rules};

/// Members handled per round trip: bounded memory, and IN lists and
/// multi-row INSERTs well within SQLite's bound-value limit.
const CHUNK: usize = 1000;

/// A member's statement: balance, tier, progress and the latest entries.
#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    pub external_id: String,
    pub balance: i64,
    pub tier: Option<String>,
    pub tier_since: Option<DateTime<Utc>>,
    /// The next tier up and what is still missing to reach it.
    pub next_tier: Option<(String, f64)>,
    /// As of the last recompute.
    pub points_expiring_30d: i64,
    pub recent: Vec<(DateTime<Utc>, String, i64, String)>,
}

/// Looks a customer up by external id and builds the statement; `None` if unknown.
pub async fn statement(
    db: &DatabaseConnection,
    rules: &Rules,
    external_id: &str,
    as_of: DateTime<Utc>,
) -> Result<Option<Statement>, DbErr> {
    let Some(customer) = customer::Entity::find().filter(customer::Column::ExternalId.eq(external_id)).one(db).await?
    else {
        return Ok(None);
    };
    let entries = loyalty_ledger::Entity::find()
        .filter(loyalty_ledger::Column::CustomerId.eq(customer.id))
        .order_by_desc(loyalty_ledger::Column::OccurredAt)
        .order_by_desc(loyalty_ledger::Column::Id)
        .all(db)
        .await?;
    let account = loyalty_account::Entity::find_by_id(customer.id).one(db).await?;
    let orders = load_customer_orders(db, customer.id, as_of).await?;
    let value = rules.basis_value(&orders, as_of);
    let next_tier = account.as_ref().and_then(|a| rules.next_tier(&a.tier, value));
    Ok(Some(Statement {
        external_id: customer.external_id,
        balance: entries.iter().map(|e| e.points).sum(),
        tier: account.as_ref().map(|a| a.tier.clone()),
        tier_since: account.as_ref().map(|a| a.tier_since),
        next_tier,
        points_expiring_30d: account.as_ref().map_or(0, |a| a.points_expiring_30d),
        // A lot that expired after being used up leaves a 0-point entry: nothing to show.
        recent: entries
            .into_iter()
            .filter(|e| e.points != 0)
            .take(10)
            .map(|e| (e.occurred_at, e.entry_kind, e.points, e.source_key))
            .collect(),
    }))
}

async fn load_customer_orders(
    db: &DatabaseConnection,
    customer_id: i64,
    as_of: DateTime<Utc>,
) -> Result<Vec<Order>, DbErr> {
    Ok(order::Entity::find()
        .filter(order::Column::CustomerId.eq(customer_id))
        .filter(order::Column::OrderedAt.lte(as_of))
        .all(db)
        .await?
        .into_iter()
        .map(|o| Order { id: o.id, at: o.ordered_at, amount_cents: o.amount_cents, category: o.category })
        .collect())
}

/// The current balance of each of `customer_ids` (the sum of its ledger).
pub async fn balances<C: ConnectionTrait>(db: &C, customer_ids: &[i64]) -> Result<HashMap<i64, i64>, DbErr> {
    let mut balances = HashMap::new();
    for ids in customer_ids.chunks(CHUNK) {
        // Summed here: SUM of a bigint is a numeric on PostgreSQL.
        let rows: Vec<(i64, i64)> = loyalty_ledger::Entity::find()
            .select_only()
            .columns([loyalty_ledger::Column::CustomerId, loyalty_ledger::Column::Points])
            .filter(loyalty_ledger::Column::CustomerId.is_in(ids.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        for (customer, points) in rows {
            *balances.entry(customer).or_insert(0) += points;
        }
    }
    Ok(balances)
}

/// Keeps an account's stored balance in step with an entry written outside a
/// recompute (a redemption, an adjustment); a customer without an account
/// gets one at the next recompute, with the ledger's sum.
pub async fn add_to_balance<C: ConnectionTrait>(db: &C, customer_id: i64, points: i64) -> Result<(), DbErr> {
    let update = Query::update()
        .table("loyalty_accounts")
        .value("points", Expr::col("points").add(points))
        .and_where(Expr::col("customer_id").eq(customer_id))
        .to_owned();
    db.execute(&update).await.map(|_| ())
}

/// The record of a recompute (or a range of one) as of `as_of`, written in
/// its transaction: the dashboard reads when the last one ran from it.
fn recorded(as_of: DateTime<Utc>, recomputed: u64, now: DateTime<Utc>) -> InsertStatement {
    Query::insert()
        .into_table(RECOMPUTES)
        .columns(["as_of", "members_recomputed", "recomputed_at"])
        .values_panic([as_of.into(), (recomputed as i64).into(), now.into()])
        .to_owned()
}

const RECOMPUTES: &str = "loyalty_recomputes";

/// When a recompute last brought members up to date; `None` before the first.
pub async fn last_recomputed_at<C: ConnectionTrait>(db: &C) -> Result<Option<DateTime<Utc>>, DbErr> {
    let select = Query::select().expr(Expr::col("recomputed_at").max()).from(RECOMPUTES).to_owned();
    match db.query_one(&select).await? {
        Some(row) => row.try_get_by_index(0),
        None => Ok(None),
    }
}
