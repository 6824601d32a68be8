//! The loyalty programme: points for orders, expiry, tiers and redemptions.
//!
//! [`engine`] applies the rules to one member without IO; this module loads
//! every member's orders and ledger, runs the engine, and writes what is due
//! in one transaction. The ledger is append-only and every entry is keyed by
//! its cause (`order:ID`, `expire:order:ID`, `redemption:ID`), so a recompute
//! or a re-import never counts anything twice.

pub mod engine;
pub mod redemptions;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde::Serialize;

use crate::db::entities::{customer, loyalty_account, loyalty_ledger, order};
use engine::{Account, Entry, Order, Outcome, Rules};

/// What a recompute changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub members: u64,
    pub new_members: u64,
    pub points_earned: i64,
    pub points_expired: i64,
    pub upgrades: u64,
    pub downgrades: u64,
}

/// Applies the rules to every customer with orders or an account, as of `as_of`.
pub async fn recompute(db: &DatabaseConnection, rules: &Rules, as_of: DateTime<Utc>) -> Result<Report, DbErr> {
    let orders = load_orders(db, as_of).await?;
    let ledger = load_ledger(db).await?;
    let accounts = load_accounts(db).await?;
    let mut members: Vec<i64> = orders.keys().chain(accounts.keys()).copied().collect();
    members.sort_unstable();
    members.dedup();
    let mut report = Report { members: members.len() as u64, ..Report::default() };
    let mut due: Vec<(i64, Outcome)> = Vec::new();
    for customer_id in members {
        let outcome = engine::recompute(
            rules,
            orders.get(&customer_id).map_or(&[], Vec::as_slice),
            ledger.get(&customer_id).map_or(&[], Vec::as_slice),
            accounts.get(&customer_id),
            as_of,
        );
        count(&mut report, &outcome, rules);
        if outcome != Outcome::default() {
            due.push((customer_id, outcome));
        }
    }
    write(db, &due, as_of).await?;
    Ok(report)
}

fn count(report: &mut Report, outcome: &Outcome, rules: &Rules) {
    for entry in &outcome.new_entries {
        match entry.kind.as_str() {
            "earn" => report.points_earned += entry.points,
            _ => report.points_expired -= entry.points,
        }
    }
    let rank = |tier: &str| rules.tiers.iter().position(|(name, _)| name == tier);
    match &outcome.tier_change {
        Some((None, _)) => report.new_members += 1,
        Some((Some(from), to)) if rank(to) > rank(from) => report.upgrades += 1,
        Some(_) => report.downgrades += 1,
        None => {}
    }
}

/// Rows per INSERT, well within SQLite's bound-value limit.
const ROWS_PER_STATEMENT: usize = 1000;

async fn write(db: &DatabaseConnection, due: &[(i64, Outcome)], now: DateTime<Utc>) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    let entries: Vec<(i64, &Entry)> =
        due.iter().flat_map(|(customer, outcome)| outcome.new_entries.iter().map(move |e| (*customer, e))).collect();
    for chunk in entries.chunks(ROWS_PER_STATEMENT) {
        let mut insert = Query::insert();
        insert.into_table("loyalty_ledger").columns([
            "customer_id",
            "entry_kind",
            "points",
            "source_key",
            "order_id",
            "occurred_at",
            "expires_at",
            "created_at",
        ]);
        for (customer, entry) in chunk {
            insert.values_panic([
                (*customer).into(),
                entry.kind.clone().into(),
                entry.points.into(),
                entry.source_key.clone().into(),
                entry.order_id.into(),
                entry.at.into(),
                entry.expires_at.into(),
                now.into(),
            ]);
        }
        insert.on_conflict(OnConflict::column("source_key").do_nothing().to_owned());
        txn.execute(&insert).await?;
    }
    for (customer, outcome) in due {
        if let Some(account) = &outcome.account {
            let upsert = Query::insert()
                .into_table("loyalty_accounts")
                .columns(["customer_id", "tier", "tier_since", "joined_at", "updated_at"])
                .values_panic([
                    (*customer).into(),
                    account.tier.clone().into(),
                    account.tier_since.into(),
                    account.joined_at.into(),
                    now.into(),
                ])
                .on_conflict(
                    OnConflict::column("customer_id").update_columns(["tier", "tier_since", "updated_at"]).to_owned(),
                )
                .to_owned();
            txn.execute(&upsert).await?;
        }
        if let Some((from, to)) = &outcome.tier_change {
            let change = Query::insert()
                .into_table("loyalty_tier_changes")
                .columns(["customer_id", "from_tier", "to_tier", "changed_at"])
                .values_panic([(*customer).into(), from.clone().into(), to.clone().into(), now.into()])
                .to_owned();
            txn.execute(&change).await?;
        }
    }
    txn.commit().await
}

/// id, customer, time, amount in cents, category.
type OrderRow = (i64, i64, DateTime<Utc>, i64, Option<String>);
/// customer, kind, points, source key, time, expiry, order.
type LedgerRow = (i64, String, i64, String, DateTime<Utc>, Option<DateTime<Utc>>, Option<i64>);

async fn load_orders(db: &DatabaseConnection, as_of: DateTime<Utc>) -> Result<HashMap<i64, Vec<Order>>, DbErr> {
    // Streamed row by row: collecting the result first held every row twice.
    let mut rows = order::Entity::find()
        .select_only()
        .columns([
            order::Column::Id,
            order::Column::CustomerId,
            order::Column::OrderedAt,
            order::Column::AmountCents,
            order::Column::Category,
        ])
        .filter(order::Column::OrderedAt.lte(as_of))
        .into_tuple::<OrderRow>()
        .stream(db)
        .await?;
    let mut by_customer: HashMap<i64, Vec<Order>> = HashMap::new();
    while let Some((id, customer, at, amount_cents, category)) = rows.try_next().await? {
        by_customer.entry(customer).or_default().push(Order { id, at, amount_cents, category });
    }
    Ok(by_customer)
}

async fn load_ledger(db: &DatabaseConnection) -> Result<HashMap<i64, Vec<Entry>>, DbErr> {
    let mut by_customer: HashMap<i64, Vec<Entry>> = HashMap::new();
    let mut rows = loyalty_ledger::Entity::find()
        .select_only()
        .columns([
            loyalty_ledger::Column::CustomerId,
            loyalty_ledger::Column::EntryKind,
            loyalty_ledger::Column::Points,
            loyalty_ledger::Column::SourceKey,
            loyalty_ledger::Column::OccurredAt,
            loyalty_ledger::Column::ExpiresAt,
            loyalty_ledger::Column::OrderId,
        ])
        .order_by_asc(loyalty_ledger::Column::Id)
        .into_tuple::<LedgerRow>()
        .stream(db)
        .await?;
    while let Some((customer, kind, points, source_key, at, expires_at, order_id)) = rows.try_next().await? {
        by_customer.entry(customer).or_default().push(Entry { kind, points, source_key, at, expires_at, order_id });
    }
    Ok(by_customer)
}

async fn load_accounts(db: &DatabaseConnection) -> Result<HashMap<i64, Account>, DbErr> {
    Ok(loyalty_account::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|a| (a.customer_id, Account { tier: a.tier, tier_since: a.tier_since, joined_at: a.joined_at }))
        .collect())
}

/// A member's statement: balance, tier, progress and the latest entries.
#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    pub external_id: String,
    pub balance: i64,
    pub tier: Option<String>,
    pub tier_since: Option<DateTime<Utc>>,
    /// The next tier up and what is still missing to reach it.
    pub next_tier: Option<(String, f64)>,
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
    let held = account.as_ref().and_then(|a| rules.tiers.iter().position(|(name, _)| *name == a.tier));
    let next_tier = held
        .and_then(|held| rules.tiers.get(held + 1))
        .map(|(name, threshold)| (name.clone(), (threshold - value).max(0.0)));
    Ok(Some(Statement {
        external_id: customer.external_id,
        balance: entries.iter().map(|e| e.points).sum(),
        tier: account.as_ref().map(|a| a.tier.clone()),
        tier_since: account.as_ref().map(|a| a.tier_since),
        next_tier,
        recent: entries.into_iter().take(10).map(|e| (e.occurred_at, e.entry_kind, e.points, e.source_key)).collect(),
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
    for ids in customer_ids.chunks(ROWS_PER_STATEMENT) {
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
