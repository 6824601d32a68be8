//! Every customer's events, read from the database in one pass per table and
//! kept in memory as compact arrays grouped by customer, so features for any
//! number of cutoffs cost no further queries.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Asterisk, Expr, ExprTrait, Query, SelectStatement};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect, QueryTrait};

use crate::db::engine::{Options, Txn, epoch_seconds};
use crate::db::entities::{customer, interaction, loyalty_ledger, loyalty_tier_change, order, outbox};
use crate::db::record::{EpochSeconds, Record, record};
use crate::work::Customers;

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
    /// Reads the customers whose ids are in `customers` (every customer
    /// with None) and their events.
    pub async fn load_customers(
        db: &DatabaseConnection,
        customers: Option<&RangeInclusive<i64>>,
    ) -> Result<History, DbErr> {
        let within = customers.map_or(Customers::All, |range| Customers::Range(range.clone()));
        History::load_within(db, within).await
    }

    /// Reads an even sample of at most about `most` customers (every one
    /// when there are no more) and their events, so that a reader that
    /// samples anyway holds the same memory however large the base grows.
    pub async fn load_sample(db: &DatabaseConnection, most: u64) -> Result<History, DbErr> {
        let mut txn = Txn::begin(db, Options::default()).await?;
        let count = Query::select().expr(Expr::col(Asterisk).count()).from("customers").to_owned();
        let total = txn.values::<i64>(&count).await?.first().copied().unwrap_or(0);
        txn.rollback().await?;
        History::load_within(db, Customers::sample(total as u64, most)).await
    }

    /// Customers and orders (the big tables) are read at the same time on
    /// PostgreSQL, on two connections; on SQLite, whose reads block, one
    /// after the other.
    async fn load_within(db: &DatabaseConnection, within: Customers) -> Result<History, DbErr> {
        let (customers, orders) = tokio::join!(load_customers(db, &within), load_orders(db, &within));
        let mut customers = customers?;
        customers.sort_unstable_by_key(|c| c.id);
        let customer_ids: Vec<i64> = customers.iter().map(|c| c.id).collect();
        let index = |id: i64| customer_ids.binary_search(&id).ok();
        let n = customer_ids.len();
        let orders = orders?.into_iter().filter_map(|(customer, order)| Some((index(customer)?, order))).collect();
        // Orders at the same time are ordered by amount, so that which comes
        // first (the first order's value) does not depend on the order the
        // database returned them in, which differs between a whole-table
        // read and a read of a range of customers.
        let orders = Grouped::new(n, orders, |o| (o.at, o.cents));
        let mut txn = begin_read(db, &within).await?;
        let complaints = Grouped::new(n, load_complaints(&mut txn, &within, &index).await?, |c| c.opened_at);
        let ledger = Grouped::new(n, load_ledger(&mut txn, &within, &index).await?, |e| e.at);
        let tier_changes = Grouped::new(n, load_tier_changes(&mut txn, &within, &index).await?, |c| c.at);
        let messages = Grouped::new(n, load_messages(&mut txn, &within, &index).await?, |&at| at);
        txn.rollback().await?;
        let signed_up_at = customers.into_iter().map(|c| c.signed_up_at.map(|at| at.0)).collect();
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

record! {
    /// A customer: database id, sign-up time in seconds.
    struct CustomerRow {
        id: i64,
        signed_up_at: Option<EpochSeconds>,
    }
}

record! {
    /// An order: customer id, time in seconds, amount in cents, category.
    struct OrderRow {
        customer_id: i64,
        ordered_at: EpochSeconds,
        amount_cents: i64,
        category: Option<String>,
    }
}

/// A read transaction; for a range of customers, one that reads through
/// the tables' customer indexes ([`Txn::read_through_indexes`]).
async fn begin_read(db: &DatabaseConnection, within: &Customers) -> Result<Txn, DbErr> {
    let mut txn = Txn::begin(db, Options::default()).await?;
    if let Customers::Range(_) = within {
        txn.read_through_indexes().await?;
    }
    Ok(txn)
}

/// Customers, in a read transaction of their own.
async fn load_customers(db: &DatabaseConnection, within: &Customers) -> Result<Vec<CustomerRow>, DbErr> {
    let mut txn = begin_read(db, within).await?;
    let select = customer::Entity::find()
        .select_only()
        .column(customer::Column::Id)
        .expr_as(epoch_seconds(txn.backend(), "signed_up_at"), "signed_up_at")
        .into_query();
    let select = within.limit(select, "id");
    let customers = txn.scan_all(&select).await?;
    txn.rollback().await?;
    Ok(customers)
}

/// Orders by customer database id, categories interned as numbers, in a
/// read transaction of their own.
async fn load_orders(db: &DatabaseConnection, within: &Customers) -> Result<Vec<(i64, Order)>, DbErr> {
    let mut txn = begin_read(db, within).await?;
    // The whole table's orders are counted first, so that their array is
    // sized up front: growing by doubling would briefly hold one and a half
    // copies of the largest array patron keeps. A range's array is a part
    // of it, and counting the range's (or a sample's) rows would cost
    // about as much as reading them.
    let expected = match within {
        Customers::All => {
            let count = Query::select().expr(Expr::col(Asterisk).count()).from("orders").to_owned();
            txn.values::<i64>(&count).await?.first().copied().unwrap_or(0)
        }
        Customers::Range(_) | Customers::Sample { .. } => 0,
    };
    let select = order::Entity::find()
        .select_only()
        .column(order::Column::CustomerId)
        .expr_as(epoch_seconds(txn.backend(), "ordered_at"), "ordered_at")
        .columns([order::Column::AmountCents, order::Column::Category])
        .into_query();
    let select = within.limit(select, "customer_id");
    let mut orders = Vec::with_capacity(expected as usize);
    let mut categories = Categories::default();
    txn.scan(&select, |row: OrderRow| {
        let category = row.category.map(|c| categories.intern(c));
        orders.push((row.customer_id, Order { at: row.ordered_at.0, cents: row.amount_cents, category }));
        Ok(())
    })
    .await?;
    txn.rollback().await?;
    Ok(orders)
}

/// Category names as small numbers.
#[derive(Default)]
struct Categories(HashMap<String, u32>);

impl Categories {
    fn intern(&mut self, name: String) -> u32 {
        let next = self.0.len() as u32;
        *self.0.entry(name).or_insert(next)
    }
}

/// The rows of `select` within `within`, each made an item by `item` and
/// kept with its customer's index, if that customer was loaded.
async fn read_by_customer<R: Record, T: Send>(
    txn: &mut Txn,
    select: SelectStatement,
    within: &Customers,
    index: Indexer<'_>,
    item: impl Fn(R) -> (i64, T) + Send + Sync,
) -> Result<Vec<(usize, T)>, DbErr> {
    let select = within.limit(select, "customer_id");
    let mut items = Vec::new();
    txn.scan(&select, |row: R| {
        let (customer_id, item) = item(row);
        items.extend(index(customer_id).map(|customer| (customer, item)));
        Ok(())
    })
    .await?;
    Ok(items)
}

record! {
    struct ComplaintRow {
        customer_id: i64,
        opened_at: DateTime<Utc>,
        resolved_at: Option<DateTime<Utc>>,
    }
}

async fn load_complaints(
    txn: &mut Txn,
    within: &Customers,
    index: Indexer<'_>,
) -> Result<Vec<(usize, Complaint)>, DbErr> {
    let select = interaction::Entity::find()
        .select_only()
        .columns([interaction::Column::CustomerId, interaction::Column::OpenedAt, interaction::Column::ResolvedAt])
        .filter(interaction::Column::Kind.eq("complaint"))
        .into_query();
    read_by_customer(txn, select, within, index, |row: ComplaintRow| {
        let complaint =
            Complaint { opened_at: row.opened_at.timestamp(), resolved_at: row.resolved_at.map(|r| r.timestamp()) };
        (row.customer_id, complaint)
    })
    .await
}

record! {
    struct LedgerRow {
        customer_id: i64,
        occurred_at: DateTime<Utc>,
        points: i64,
    }
}

async fn load_ledger(
    txn: &mut Txn,
    within: &Customers,
    index: Indexer<'_>,
) -> Result<Vec<(usize, LedgerEntry)>, DbErr> {
    let select = loyalty_ledger::Entity::find()
        .select_only()
        .columns([
            loyalty_ledger::Column::CustomerId,
            loyalty_ledger::Column::OccurredAt,
            loyalty_ledger::Column::Points,
        ])
        .into_query();
    read_by_customer(txn, select, within, index, |row: LedgerRow| {
        (row.customer_id, LedgerEntry { at: row.occurred_at.timestamp(), points: row.points })
    })
    .await
}

record! {
    struct TierChangeRow {
        customer_id: i64,
        changed_at: DateTime<Utc>,
        to_tier: String,
    }
}

async fn load_tier_changes(
    txn: &mut Txn,
    within: &Customers,
    index: Indexer<'_>,
) -> Result<Vec<(usize, TierChange)>, DbErr> {
    let select = loyalty_tier_change::Entity::find()
        .select_only()
        .columns([
            loyalty_tier_change::Column::CustomerId,
            loyalty_tier_change::Column::ChangedAt,
            loyalty_tier_change::Column::ToTier,
        ])
        .into_query();
    read_by_customer(txn, select, within, index, |row: TierChangeRow| {
        (row.customer_id, TierChange { at: row.changed_at.timestamp(), tier: row.to_tier })
    })
    .await
}

record! {
    struct SentRow {
        customer_id: i64,
        sent_at: DateTime<Utc>,
    }
}

/// Times of the messages actually sent to each customer.
async fn load_messages(txn: &mut Txn, within: &Customers, index: Indexer<'_>) -> Result<Vec<(usize, i64)>, DbErr> {
    let select = outbox::Entity::find()
        .select_only()
        .columns([outbox::Column::CustomerId, outbox::Column::SentAt])
        .filter(outbox::Column::SentAt.is_not_null())
        .into_query();
    read_by_customer(txn, select, within, index, |row: SentRow| (row.customer_id, row.sent_at.timestamp())).await
}

#[cfg(test)]
impl<'a> CustomerEvents<'a> {
    /// Events for a hand-made history in tests.
    pub fn with_orders(orders: &'a [Order]) -> Self {
        CustomerEvents { orders, ..Default::default() }
    }
}
