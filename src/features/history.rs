//! Every customer's events, read from the database in one pass per table and
//! kept in memory as compact arrays grouped by customer, so features for any
//! number of cutoffs cost no further queries.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    QueryTrait, Select,
};

use crate::db::entities::{customer, interaction, loyalty_ledger, loyalty_tier_change, order, outbox};
use crate::db::raw;

/// An order as features see it: when, how much, which category (interned).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Order {
    pub at: i64,
    pub cents: i64,
    pub category: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Complaint {
    pub opened_at: i64,
    pub resolved_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LedgerEntry {
    pub at: i64,
    pub points: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TierChange {
    pub at: i64,
    pub tier: String,
}

/// One customer's events, each list in time order (orders strictly so).
#[derive(Debug, Clone, Copy, Default)]
pub struct CustomerEvents<'a> {
    pub signed_up_at: Option<i64>,
    pub orders: &'a [Order],
    pub complaints: &'a [Complaint],
    pub ledger: &'a [LedgerEntry],
    pub tier_changes: &'a [TierChange],
    pub messages: &'a [i64],
}

/// Items grouped by customer index: `items[starts[i]..starts[i + 1]]`.
#[derive(Debug)]
struct Grouped<T> {
    starts: Vec<usize>,
    items: Vec<T>,
}

impl<T> Grouped<T> {
    /// Groups `(customer index, item)` pairs, ordering each group by `key`.
    /// The pairs' memory is reused for the items, so grouping millions of
    /// orders does not hold two copies.
    fn new<K: Ord>(customers: usize, mut pairs: Vec<(usize, T)>, key: impl Fn(&T) -> K) -> Self {
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| key(&a.1).cmp(&key(&b.1))));
        let mut starts = Vec::with_capacity(customers + 1);
        for (position, (customer, _)) in pairs.iter().enumerate() {
            while starts.len() <= *customer {
                starts.push(position);
            }
        }
        starts.resize(customers + 1, pairs.len());
        let items = pairs.into_iter().map(|(_, item)| item).collect();
        Grouped { starts, items }
    }

    fn of(&self, customer: usize) -> &[T] {
        &self.items[self.starts[customer]..self.starts[customer + 1]]
    }
}

/// The events of every customer; customers in order of their database id.
#[derive(Debug)]
pub struct History {
    pub customer_ids: Vec<i64>,
    signed_up_at: Vec<Option<i64>>,
    orders: Grouped<Order>,
    complaints: Grouped<Complaint>,
    ledger: Grouped<LedgerEntry>,
    tier_changes: Grouped<TierChange>,
    messages: Grouped<i64>,
}

impl History {
    /// Reads every customer and their events. Customers and orders (the
    /// big tables) are read at the same time, on two connections.
    pub async fn load(db: &DatabaseConnection) -> Result<History, DbErr> {
        let (customers, orders) = if db.get_database_backend() == DbBackend::Sqlite {
            raw::with_connection(db, |connection| Ok((sqlite_customers(connection)?, sqlite_orders(connection)?)))
                .await?
        } else {
            let (customers, orders) = tokio::join!(load_customers(db), load_orders(db));
            (customers?, orders?)
        };
        let mut customers = customers;
        customers.sort_unstable_by_key(|c| c.0);
        let customer_ids: Vec<i64> = customers.iter().map(|c| c.0).collect();
        let index = |id: i64| customer_ids.binary_search(&id).ok();
        let n = customer_ids.len();
        let orders = orders.into_iter().filter_map(|(customer, order)| Some((index(customer)?, order))).collect();
        let orders = Grouped::new(n, orders, |o| o.at);
        let complaints = Grouped::new(n, load_complaints(db, &index).await?, |c| c.opened_at);
        let ledger = Grouped::new(n, load_ledger(db, &index).await?, |e| e.at);
        let tier_changes = Grouped::new(n, load_tier_changes(db, &index).await?, |c| c.at);
        let messages = Grouped::new(n, load_messages(db, &index).await?, |&at| at);
        let signed_up_at = customers.into_iter().map(|(_, s)| s).collect();
        Ok(History { customer_ids, signed_up_at, orders, complaints, ledger, tier_changes, messages })
    }

    pub fn len(&self) -> usize {
        self.customer_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.customer_ids.is_empty()
    }

    /// The events of the customer at `index` (in database id order).
    pub fn events(&self, index: usize) -> CustomerEvents<'_> {
        CustomerEvents {
            signed_up_at: self.signed_up_at[index],
            orders: self.orders.of(index),
            complaints: self.complaints.of(index),
            ledger: self.ledger.of(index),
            tier_changes: self.tier_changes.of(index),
            messages: self.messages.of(index),
        }
    }

    /// Every order time, for choosing training windows.
    pub fn order_times(&self) -> impl Iterator<Item = i64> + '_ {
        self.orders.items.iter().map(|o| o.at)
    }

    /// A fingerprint of the orders before `cutoff`, so that a model file
    /// tells which data it was trained on.
    pub fn fingerprint(&self, cutoff: i64) -> String {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for index in 0..self.len() {
            for o in self.orders.of(index).iter().filter(|o| o.at < cutoff) {
                hasher.update(&self.customer_ids[index].to_le_bytes());
                hasher.update(&o.at.to_le_bytes());
                hasher.update(&o.cents.to_le_bytes());
            }
        }
        format!("xxh3:{:016x}", hasher.digest())
    }
}

type Indexer<'a> = &'a (dyn Fn(i64) -> Option<usize> + Sync);

/// Customers: database id and sign-up time.
async fn load_customers(db: &DatabaseConnection) -> Result<Vec<(i64, Option<i64>)>, DbErr> {
    select_customers(db.get_database_backend()).into_tuple::<(i64, Option<i64>)>().stream(db).await?.try_collect().await
}

/// Orders by customer database id, categories interned as numbers.
async fn load_orders(db: &DatabaseConnection) -> Result<Vec<(i64, Order)>, DbErr> {
    let expected = order::Entity::find().count(db).await?;
    let mut categories = Categories::default();
    let mut rows =
        select_orders(db.get_database_backend()).into_tuple::<(i64, i64, i64, Option<String>)>().stream(db).await?;
    // Sized up front: growing by doubling would briefly hold one and a half
    // copies of the largest array patron keeps.
    let mut orders = Vec::with_capacity(expected as usize);
    while let Some((customer, at, cents, category)) = rows.try_next().await? {
        let category = category.map(|c| categories.intern(&c));
        orders.push((customer, Order { at, cents, category }));
    }
    Ok(orders)
}

/// [`load_customers`] on SQLite, in one read transaction with [`sqlite_orders`].
fn sqlite_customers(connection: &rusqlite::Connection) -> rusqlite::Result<Vec<(i64, Option<i64>)>> {
    let select = select_customers(DbBackend::Sqlite).build(DbBackend::Sqlite);
    raw::query(connection, &select, |row| Ok((row.get(0)?, row.get(1)?)))
}

/// [`load_orders`] on SQLite.
fn sqlite_orders(connection: &rusqlite::Connection) -> rusqlite::Result<Vec<(i64, Order)>> {
    let select = select_orders(DbBackend::Sqlite).build(DbBackend::Sqlite);
    let count: i64 = connection.query_row("SELECT count(*) FROM orders", [], |row| row.get(0))?;
    // Sized up front, as in `load_orders`.
    let mut orders = Vec::with_capacity(count as usize);
    let mut categories = Categories::default();
    raw::for_each(connection, &select, |row| {
        let category = row.get_ref(3)?.as_str_or_null()?.map(|c| categories.intern(c));
        orders.push((row.get(0)?, Order { at: row.get(1)?, cents: row.get(2)?, category }));
        Ok(())
    })?;
    Ok(orders)
}

/// Customers: database id, sign-up time in seconds.
fn select_customers(backend: DbBackend) -> Select<customer::Entity> {
    customer::Entity::find().select_only().column(customer::Column::Id).expr(epoch_seconds(backend, "signed_up_at"))
}

/// Orders: customer id, time in seconds, amount in cents, category.
fn select_orders(backend: DbBackend) -> Select<order::Entity> {
    order::Entity::find()
        .select_only()
        .column(order::Column::CustomerId)
        .expr(epoch_seconds(backend, "ordered_at"))
        .columns([order::Column::AmountCents, order::Column::Category])
}

/// Category names as small numbers.
#[derive(Default)]
struct Categories(HashMap<String, u32>);

impl Categories {
    fn intern(&mut self, name: &str) -> u32 {
        let next = self.0.len() as u32;
        match self.0.get(name) {
            Some(&number) => number,
            None => *self.0.entry(name.to_owned()).or_insert(next),
        }
    }
}

/// A timestamp column as whole seconds since the epoch, computed by the
/// database: far cheaper than parsing millions of timestamps in Rust.
fn epoch_seconds(backend: DbBackend, column: &'static str) -> SimpleExpr {
    // Static SQL around a column name of this crate, never input.
    match backend {
        DbBackend::Sqlite => Expr::cust(format!("unixepoch({column})")),
        _ => Expr::cust(format!("CAST(FLOOR(EXTRACT(EPOCH FROM {column})) AS BIGINT)")),
    }
}

async fn load_complaints(db: &DatabaseConnection, index: Indexer<'_>) -> Result<Vec<(usize, Complaint)>, DbErr> {
    let rows: Vec<(i64, chrono::DateTime<chrono::Utc>, Option<chrono::DateTime<chrono::Utc>>)> =
        interaction::Entity::find()
            .select_only()
            .columns([interaction::Column::CustomerId, interaction::Column::OpenedAt, interaction::Column::ResolvedAt])
            .filter(interaction::Column::Kind.eq("complaint"))
            .into_tuple()
            .all(db)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(customer, opened, resolved)| {
            let complaint = Complaint { opened_at: opened.timestamp(), resolved_at: resolved.map(|r| r.timestamp()) };
            Some((index(customer)?, complaint))
        })
        .collect())
}

async fn load_ledger(db: &DatabaseConnection, index: Indexer<'_>) -> Result<Vec<(usize, LedgerEntry)>, DbErr> {
    let rows: Vec<(i64, chrono::DateTime<chrono::Utc>, i64)> = loyalty_ledger::Entity::find()
        .select_only()
        .columns([
            loyalty_ledger::Column::CustomerId,
            loyalty_ledger::Column::OccurredAt,
            loyalty_ledger::Column::Points,
        ])
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(customer, at, points)| Some((index(customer)?, LedgerEntry { at: at.timestamp(), points })))
        .collect())
}

async fn load_tier_changes(db: &DatabaseConnection, index: Indexer<'_>) -> Result<Vec<(usize, TierChange)>, DbErr> {
    let rows: Vec<(i64, chrono::DateTime<chrono::Utc>, String)> = loyalty_tier_change::Entity::find()
        .select_only()
        .columns([
            loyalty_tier_change::Column::CustomerId,
            loyalty_tier_change::Column::ChangedAt,
            loyalty_tier_change::Column::ToTier,
        ])
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(customer, at, tier)| Some((index(customer)?, TierChange { at: at.timestamp(), tier })))
        .collect())
}

/// Times of the messages actually sent to each customer.
async fn load_messages(db: &DatabaseConnection, index: Indexer<'_>) -> Result<Vec<(usize, i64)>, DbErr> {
    let rows: Vec<(i64, chrono::DateTime<chrono::Utc>)> = outbox::Entity::find()
        .select_only()
        .columns([outbox::Column::CustomerId, outbox::Column::SentAt])
        .filter(outbox::Column::SentAt.is_not_null())
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(|(customer, at)| Some((index(customer)?, at.timestamp()))).collect())
}

#[cfg(test)]
impl<'a> CustomerEvents<'a> {
    /// Events for a hand-made history in tests.
    pub fn with_orders(orders: &'a [Order]) -> Self {
        CustomerEvents { orders, ..Default::default() }
    }
}
