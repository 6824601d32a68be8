//! `report customers`: where the value of the customer base lies, as of a
//! moment: the RFM grid, the Pareto curve (the 80/20 rule), value deciles,
//! the customer-base models' outlook (lifetime values, expected purchases,
//! P(alive), checked against what happened; see [`super::outlook`]),
//! lifecycle stages and what complaints cost.
//!
//! The database is read in three set-wise queries (orders, interactions, the
//! customer count) and one for the external ids of the top customers; the
//! analysis is pure ([`analyse`]), so it is tested on hand-made histories.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use futures_util::TryStreamExt;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, StreamTrait};
use serde::Serialize;

use super::ReportError;
use super::outlook::{self, BaseOutlook};
use crate::db::engine::{Options, Txn};
use crate::db::record::record;
use crate::features::DAY;
use crate::features::history::Order;
use crate::model::lifetime::Valuation;

/// Recency bands of the RFM grid: days since the last order, upper bounds included.
pub const RECENCY_BANDS: [(&str, i64); 5] =
    [("0–30 days", 30), ("31–90 days", 90), ("91–180 days", 180), ("181–365 days", 365), ("over 365 days", i64::MAX)];
/// Frequency bands of the RFM grid: number of orders, upper bounds included.
pub const FREQUENCY_BANDS: [(&str, u64); 5] =
    [("1 order", 1), ("2 orders", 2), ("3–4 orders", 4), ("5–9 orders", 9), ("10+ orders", u64::MAX)];
/// How long after a resolved complaint purchases are counted.
pub const AFTER_COMPLAINT_DAYS: i64 = 180;
/// How many of the most valuable customers the report names (by external id).
pub const TOP_CUSTOMERS: usize = 10;

/// One customer's orders up to the as-of moment, oldest first, amounts in
/// cents: as the customer-base models read them, so that a million buyers'
/// orders are not copied for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Buyer {
    pub customer_id: i64,
    pub orders: Vec<Order>,
}

impl Buyer {
    fn value(&self) -> i64 {
        self.orders.iter().map(|o| o.cents).sum()
    }
}

impl AsRef<[Order]> for Buyer {
    fn as_ref(&self) -> &[Order] {
        &self.orders
    }
}

/// An interaction as the report needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub customer_id: i64,
    pub kind: String,
    pub status: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CustomerReport {
    pub as_of: DateTime<Utc>,
    /// Every customer in the database.
    pub customers: u64,
    /// Customers with at least one order by `as_of`: the base of every figure below but the lifecycle's "never bought".
    pub buyers: u64,
    pub orders: u64,
    pub revenue_cents: i64,
    pub rfm: Vec<RfmCell>,
    pub pareto: Pareto,
    pub deciles: Vec<Decile>,
    /// The customer-base models fitted as of `as_of`; None when they cannot
    /// be fitted, with the reason in `outlook_note`.
    pub outlook: Option<BaseOutlook>,
    pub outlook_note: Option<String>,
    /// The base-wide estimate, kept only where the models give no lifetime value.
    pub clv: Option<Clv>,
    pub lifecycle: Vec<StageCount>,
    pub complaints: Complaints,
    /// The most valuable customers, by external id (filled in by [`report`]).
    pub top_customers: Vec<TopCustomer>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RfmCell {
    pub recency: &'static str,
    pub frequency: &'static str,
    pub customers: u64,
    pub value_cents: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pareto {
    /// (share of customers, share of revenue), customers by value highest first, at every whole percent.
    pub curve: Vec<(f64, f64)>,
    /// ⌈20% of buyers⌉: the customers the top-20% share is about.
    pub top20_customers: u64,
    /// Their share of all revenue; `None` when the revenue is not positive.
    pub top20_share: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Decile {
    /// 1 is the most valuable tenth.
    pub decile: u32,
    pub customers: u64,
    pub value_cents: i64,
    pub share: Option<f64>,
}

/// How the report puts a value on customers.
#[derive(Debug, Clone, Copy)]
pub struct Valuing {
    /// The lifetime value's horizon and discount rate (`[lifetime_value]`).
    pub valuation: Valuation,
    /// Days before `as_of` the models are fitted again to check them against what came.
    pub check_days: i64,
    /// The heuristic's expected years (`[report] expected_years`).
    pub expected_years: f64,
}

/// Lifetime value = average order value × orders a year × expected years:
/// the estimate where the customer-base models cannot be fitted.
#[derive(Debug, Clone, Serialize)]
pub struct Clv {
    pub expected_years: f64,
    /// Over the 365 days before `as_of`; `None` without orders in that year.
    pub average_order_value: Option<f64>,
    /// Orders in that year per customer who ordered in it.
    pub orders_per_year_active: Option<f64>,
    /// Orders in that year per buyer of the whole base (lapsed ones included).
    pub orders_per_year_all: Option<f64>,
    /// For a customer who stays active.
    pub clv_active: Option<f64>,
    /// For the average customer of the base.
    pub clv_all: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageCount {
    pub stage: &'static str,
    pub customers: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Complaints {
    /// Interactions by (kind, status).
    pub by_kind_status: Vec<(String, String, u64)>,
    /// Days from opening to resolution of resolved complaints.
    pub resolution_days: Option<Spread>,
    /// Purchases after a resolved complaint against customers without one.
    pub after: Option<AfterComplaint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub count: u64,
    pub mean: f64,
    pub median: f64,
    pub p90: f64,
}

/// Purchases in the [`AFTER_COMPLAINT_DAYS`] after a complaint was resolved,
/// against customers who never complained over the same length of time from
/// the median resolution date. Both groups only hold customers who had bought
/// before their reference date, and only periods that ended by `as_of`.
#[derive(Debug, Clone, Serialize)]
pub struct AfterComplaint {
    pub reference: DateTime<Utc>,
    pub complainants: Group,
    pub others: Group,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Group {
    pub customers: u64,
    pub bought: u64,
    pub orders: u64,
    pub revenue_cents: i64,
}

impl Group {
    pub fn bought_share(&self) -> Option<f64> {
        (self.customers > 0).then(|| self.bought as f64 / self.customers as f64)
    }

    pub fn revenue_per_customer(&self) -> Option<f64> {
        (self.customers > 0).then(|| self.revenue_cents as f64 / 100.0 / self.customers as f64)
    }

    fn add(&mut self, orders: &[Order], from: DateTime<Utc>) {
        let (from, to) = (from.timestamp(), (from + Duration::days(AFTER_COMPLAINT_DAYS)).timestamp());
        let during: Vec<i64> = orders.iter().filter(|o| o.at > from && o.at <= to).map(|o| o.cents).collect();
        self.customers += 1;
        self.bought += u64::from(!during.is_empty());
        self.orders += during.len() as u64;
        self.revenue_cents += during.iter().sum::<i64>();
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TopCustomer {
    pub customer: String,
    pub orders: u64,
    pub value_cents: i64,
}

/// Loads what the report needs and analyses it. `as_of` defaults to the latest order.
pub async fn report(
    db: &DatabaseConnection,
    as_of: Option<DateTime<Utc>>,
    valuing: &Valuing,
) -> Result<CustomerReport, ReportError> {
    let as_of = match as_of {
        Some(at) => at,
        None => latest_order(db).await?.unwrap_or_else(Utc::now),
    };
    let buyers = load_buyers(db, as_of).await?;
    let interactions = load_interactions(db, as_of).await?;
    let customers = count_customers(db).await?;
    // Seconds of arithmetic on a large base: off the async runtime's
    // threads, so that the daemon (the dashboard) keeps answering meanwhile.
    let valuing = *valuing;
    let (mut report, buyers) = tokio::task::spawn_blocking(move || {
        let report = analyse(customers, &buyers, &interactions, as_of, &valuing);
        (report, buyers)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    report.top_customers = top_customers(db, &buyers).await?;
    Ok(report)
}

/// The whole analysis, pure. `buyers` hold only orders at or before `as_of`.
pub fn analyse(
    customers: u64,
    buyers: &[Buyer],
    interactions: &[Interaction],
    as_of: DateTime<Utc>,
    valuing: &Valuing,
) -> CustomerReport {
    let mut values: Vec<i64> = buyers.iter().map(Buyer::value).collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    let (outlook, outlook_note) = match outlook::outlook(buyers, as_of, valuing.valuation, valuing.check_days) {
        Ok(outlook) => (Some(outlook), None),
        Err(why) => (None, Some(why)),
    };
    let modelled_clv = outlook.as_ref().is_some_and(|o| o.clv.is_some());
    CustomerReport {
        as_of,
        customers,
        buyers: buyers.len() as u64,
        orders: buyers.iter().map(|b| b.orders.len() as u64).sum(),
        revenue_cents: values.iter().sum(),
        rfm: rfm(buyers, as_of),
        pareto: pareto(&values),
        deciles: deciles(&values),
        clv: (!modelled_clv).then(|| clv(buyers, as_of, valuing.expected_years)),
        outlook,
        outlook_note,
        lifecycle: lifecycle_counts(customers, buyers, as_of),
        complaints: complaints(buyers, interactions, as_of),
        top_customers: Vec::new(),
    }
}

fn rfm(buyers: &[Buyer], as_of: DateTime<Utc>) -> Vec<RfmCell> {
    let mut cells: Vec<RfmCell> = RECENCY_BANDS
        .iter()
        .flat_map(|r| {
            FREQUENCY_BANDS.iter().map(|f| RfmCell { recency: r.0, frequency: f.0, customers: 0, value_cents: 0 })
        })
        .collect();
    for buyer in buyers {
        let Some(last) = buyer.orders.last() else { continue };
        let days = (as_of.timestamp() - last.at) / DAY;
        let r = RECENCY_BANDS.iter().position(|b| days <= b.1).unwrap_or(RECENCY_BANDS.len() - 1);
        let count = buyer.orders.len() as u64;
        let f = FREQUENCY_BANDS.iter().position(|b| count <= b.1).unwrap_or(FREQUENCY_BANDS.len() - 1);
        let cell = &mut cells[r * FREQUENCY_BANDS.len() + f];
        cell.customers += 1;
        cell.value_cents += buyer.value();
    }
    cells
}

/// The Pareto curve of customer values sorted highest first; the top 20% are
/// the ⌈n/5⌉ most valuable customers.
pub fn pareto(values: &[i64]) -> Pareto {
    let n = values.len();
    // running[k]: the value of the k most valuable customers.
    let running: Vec<i64> = std::iter::once(0)
        .chain(values.iter().scan(0_i64, |sum, v| {
            *sum += v;
            Some(*sum)
        }))
        .collect();
    let total = running[n];
    let top20 = (n * 2).div_ceil(10);
    let share = |k: usize| running[k] as f64 / total as f64;
    let curve = if total > 0 {
        (0..=100).map(|pct| (f64::from(pct) / 100.0, share((n * pct as usize).div_ceil(100)))).collect()
    } else {
        Vec::new()
    };
    Pareto { curve, top20_customers: top20 as u64, top20_share: (total > 0).then(|| share(top20)) }
}

/// Ten groups by rank, most valuable first; customer i of n (from 0) is in decile ⌊10·i/n⌋ + 1.
fn deciles(values: &[i64]) -> Vec<Decile> {
    let total: i64 = values.iter().sum();
    let n = values.len();
    let mut deciles: Vec<Decile> =
        (1..=10).map(|decile| Decile { decile, customers: 0, value_cents: 0, share: None }).collect();
    for (i, &value) in values.iter().enumerate() {
        let d = &mut deciles[i * 10 / n];
        d.customers += 1;
        d.value_cents += value;
    }
    for d in &mut deciles {
        d.share = (total > 0).then(|| d.value_cents as f64 / total as f64);
    }
    deciles
}

fn clv(buyers: &[Buyer], as_of: DateTime<Utc>, expected_years: f64) -> Clv {
    let year_start = (as_of - Duration::days(365)).timestamp();
    let (mut orders, mut revenue, mut active) = (0u64, 0i64, 0u64);
    for buyer in buyers {
        let in_year: Vec<i64> = buyer.orders.iter().filter(|o| o.at > year_start).map(|o| o.cents).collect();
        active += u64::from(!in_year.is_empty());
        orders += in_year.len() as u64;
        revenue += in_year.iter().sum::<i64>();
    }
    let average_order_value = (orders > 0).then(|| revenue as f64 / 100.0 / orders as f64);
    let orders_per_year_active = (active > 0).then(|| orders as f64 / active as f64);
    let orders_per_year_all = (!buyers.is_empty() && orders > 0).then(|| orders as f64 / buyers.len() as f64);
    Clv {
        expected_years,
        average_order_value,
        orders_per_year_active,
        orders_per_year_all,
        clv_active: average_order_value.zip(orders_per_year_active).map(|(v, f)| v * f * expected_years),
        clv_all: average_order_value.zip(orders_per_year_all).map(|(v, f)| v * f * expected_years),
    }
}

/// The lifecycle stages, in the order they are tested and shown.
pub const STAGES: [&str; 6] = ["new", "won back", "active", "at risk", "lapsed", "never bought"];

/// A buyer's stage (see the README): new (first order in the last 90 days),
/// won back (an order in the last 180 days that came more than 365 days after
/// the one before), active (last order less than 180 days ago), at risk (180 to
/// 365 days ago), lapsed (longer ago).
pub fn stage(orders: &[Order], as_of: DateTime<Utc>) -> &'static str {
    let (Some(first), Some(last)) = (orders.first(), orders.last()) else { return "never bought" };
    let days_before = |days: i64| as_of.timestamp() - days * DAY;
    let recent = days_before(180);
    if first.at > days_before(90) {
        "new"
    } else if orders.windows(2).any(|w| w[1].at > recent && w[1].at - w[0].at > 365 * DAY) {
        "won back"
    } else if last.at > recent {
        "active"
    } else if last.at >= days_before(365) {
        "at risk"
    } else {
        "lapsed"
    }
}

fn lifecycle_counts(customers: u64, buyers: &[Buyer], as_of: DateTime<Utc>) -> Vec<StageCount> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for buyer in buyers {
        *counts.entry(stage(&buyer.orders, as_of)).or_default() += 1;
    }
    counts.insert("never bought", customers.saturating_sub(buyers.len() as u64));
    STAGES.iter().map(|&stage| StageCount { stage, customers: counts.get(stage).copied().unwrap_or(0) }).collect()
}

fn complaints(buyers: &[Buyer], interactions: &[Interaction], as_of: DateTime<Utc>) -> Complaints {
    let mut by_kind_status: BTreeMap<(String, String), u64> = BTreeMap::new();
    for i in interactions {
        *by_kind_status.entry((i.kind.clone(), i.status.clone())).or_default() += 1;
    }
    let resolved: Vec<&Interaction> =
        interactions.iter().filter(|i| i.kind == "complaint" && i.resolved_at.is_some()).collect();
    let days: Vec<f64> = resolved
        .iter()
        .filter_map(|i| i.resolved_at.map(|r| (r - i.opened_at).num_seconds() as f64 / 86_400.0))
        .collect();
    Complaints {
        by_kind_status: by_kind_status.into_iter().map(|((k, s), n)| (k, s, n)).collect(),
        resolution_days: spread(days),
        after: after_complaint(buyers, interactions, &resolved, as_of),
    }
}

fn spread(mut days: Vec<f64>) -> Option<Spread> {
    if days.is_empty() {
        return None;
    }
    days.sort_by(f64::total_cmp);
    let n = days.len();
    let quantile = |q: f64| days[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Some(Spread {
        count: n as u64,
        mean: days.iter().sum::<f64>() / n as f64,
        median: quantile(0.5),
        p90: quantile(0.9),
    })
}

fn after_complaint(
    buyers: &[Buyer],
    interactions: &[Interaction],
    resolved: &[&Interaction],
    as_of: DateTime<Utc>,
) -> Option<AfterComplaint> {
    let latest_start = as_of - Duration::days(AFTER_COMPLAINT_DAYS);
    // Each complainant's first resolved complaint whose following period has ended.
    let mut first_resolution: HashMap<i64, DateTime<Utc>> = HashMap::new();
    for i in resolved {
        let at = i.resolved_at.expect("resolved");
        if at <= latest_start {
            first_resolution.entry(i.customer_id).and_modify(|t| *t = Ord::min(*t, at)).or_insert(at);
        }
    }
    let mut times: Vec<DateTime<Utc>> = first_resolution.values().copied().collect();
    times.sort_unstable();
    let reference = *times.get(times.len().checked_sub(1)? / 2)?;
    let ever_complained: HashSet<i64> =
        interactions.iter().filter(|i| i.kind == "complaint").map(|i| i.customer_id).collect();
    let (mut complainants, mut others) = (Group::default(), Group::default());
    for buyer in buyers {
        let bought_before = |t: DateTime<Utc>| buyer.orders.first().is_some_and(|o| o.at <= t.timestamp());
        if let Some(&at) = first_resolution.get(&buyer.customer_id) {
            if bought_before(at) {
                complainants.add(&buyer.orders, at);
            }
        } else if !ever_complained.contains(&buyer.customer_id) && bought_before(reference) {
            others.add(&buyer.orders, reference);
        }
    }
    Some(AfterComplaint { reference, complainants, others })
}

async fn latest_order(db: &DatabaseConnection) -> Result<Option<DateTime<Utc>>, DbErr> {
    let select =
        Query::select().expr(Func::max(Expr::col(Alias::new("ordered_at")))).from(Alias::new("orders")).to_owned();
    match db.query_one(&select).await? {
        Some(row) => row.try_get_by_index(0),
        None => Ok(None),
    }
}

async fn count_customers(db: &DatabaseConnection) -> Result<u64, DbErr> {
    let select =
        Query::select().expr(Func::count(Expr::col(Alias::new("id")))).from(Alias::new("customers")).to_owned();
    let count: i64 = match db.query_one(&select).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    Ok(u64::try_from(count).unwrap_or(0))
}

record! {
    struct OrderRow {
        customer_id: i64,
        ordered_at: DateTime<Utc>,
        amount_cents: i64,
    }
}

/// Every buyer's orders up to `as_of`, in one streamed query (through the
/// engines' own drivers: millions of rows).
async fn load_buyers(db: &DatabaseConnection, as_of: DateTime<Utc>) -> Result<Vec<Buyer>, DbErr> {
    let select = Query::select()
        .columns(["customer_id", "ordered_at", "amount_cents"])
        .from("orders")
        .and_where(Expr::col("ordered_at").lte(as_of))
        .to_owned();
    let mut by_customer: HashMap<i64, Vec<Order>> = HashMap::new();
    let mut txn = Txn::begin(db, Options::default()).await?;
    txn.for_each(&select, |row: OrderRow| {
        let order = Order { at: row.ordered_at.timestamp(), cents: row.amount_cents, category: None };
        by_customer.entry(row.customer_id).or_default().push(order);
        Ok(())
    })
    .await?;
    txn.rollback().await?;
    let mut buyers: Vec<Buyer> = by_customer
        .into_iter()
        .map(|(customer_id, mut orders)| {
            orders.sort_unstable_by_key(|o| (o.at, o.cents));
            Buyer { customer_id, orders }
        })
        .collect();
    buyers.sort_unstable_by_key(|b| b.customer_id);
    Ok(buyers)
}

async fn load_interactions(db: &DatabaseConnection, as_of: DateTime<Utc>) -> Result<Vec<Interaction>, DbErr> {
    let select = Query::select()
        .columns(["customer_id", "kind", "status", "opened_at", "resolved_at"].map(Alias::new))
        .from(Alias::new("interactions"))
        .and_where(Expr::col(Alias::new("opened_at")).lte(as_of))
        .to_owned();
    let mut rows = std::pin::pin!(db.stream(&select).await?);
    let mut interactions = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let resolved_at: Option<DateTime<Utc>> = row.try_get_by_index(4)?;
        interactions.push(Interaction {
            customer_id: row.try_get_by_index(0)?,
            kind: row.try_get_by_index(1)?,
            status: row.try_get_by_index(2)?,
            opened_at: row.try_get_by_index(3)?,
            // A resolution after as_of has not happened yet at as_of.
            resolved_at: resolved_at.filter(|r| *r <= as_of),
        });
    }
    Ok(interactions)
}

/// The [`TOP_CUSTOMERS`] most valuable buyers with their external ids (one query).
async fn top_customers(db: &DatabaseConnection, buyers: &[Buyer]) -> Result<Vec<TopCustomer>, DbErr> {
    let mut ranked: Vec<(i64, i64, u64)> =
        buyers.iter().map(|b| (b.customer_id, b.value(), b.orders.len() as u64)).collect();
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(TOP_CUSTOMERS);
    if ranked.is_empty() {
        return Ok(Vec::new());
    }
    let select = Query::select()
        .columns([Alias::new("id"), Alias::new("external_id")])
        .from(Alias::new("customers"))
        .and_where(Expr::col(Alias::new("id")).is_in(ranked.iter().map(|r| r.0)))
        .to_owned();
    let mut external: HashMap<i64, String> = HashMap::new();
    for row in db.query_all(&select).await? {
        external.insert(row.try_get_by_index(0)?, row.try_get_by_index(1)?);
    }
    Ok(ranked
        .into_iter()
        .map(|(id, value_cents, orders)| TopCustomer {
            customer: external.remove(&id).unwrap_or_default(),
            orders,
            value_cents,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc) + Duration::days(n)
    }

    fn buyer(customer_id: i64, orders: &[(i64, i64)]) -> Buyer {
        Buyer { customer_id, orders: orders.iter().map(|&(d, cents)| order(d, cents)).collect() }
    }

    fn order(d: i64, cents: i64) -> Order {
        Order { at: day(d).timestamp(), cents, category: None }
    }

    #[test]
    fn pareto_share_of_the_top_fifth() {
        // 10 buyers worth 50, 20, 10, 5, 5, 4, 3, 1, 1, 1 (total 100): the top 2 hold 70%.
        let p = pareto(&[50, 20, 10, 5, 5, 4, 3, 1, 1, 1]);
        assert_eq!(p.top20_customers, 2);
        assert_eq!(p.top20_share, Some(0.7));
        assert_eq!(p.curve.len(), 101);
        assert_eq!((p.curve[0], p.curve[10], p.curve[100]), ((0.0, 0.0), (0.1, 0.5), (1.0, 1.0)));
        // 7 buyers: ⌈1.4⌉ = 2 are the top 20%.
        assert_eq!(pareto(&[3, 1, 1, 1, 1, 1, 1]).top20_share, Some(4.0 / 9.0));
        assert_eq!(pareto(&[]).top20_share, None);
    }

    #[test]
    fn deciles_split_by_rank() {
        let values: Vec<i64> = (1..=20).rev().collect(); // 20..1, total 210
        let d = deciles(&values);
        assert_eq!((d[0].customers, d[0].value_cents), (2, 39));
        assert_eq!((d[9].customers, d[9].value_cents), (2, 3));
        assert!((d[0].share.unwrap() - 39.0 / 210.0).abs() < 1e-12);
        // Three customers fill deciles 1, 4 and 7.
        let d = deciles(&[9, 5, 1]);
        let filled: Vec<u32> = d.iter().filter(|d| d.customers > 0).map(|d| d.decile).collect();
        assert_eq!(filled, [1, 4, 7]);
    }

    #[test]
    fn lifecycle_stages_at_their_edges() {
        let as_of = day(1000);
        let stage_of = |orders: &[i64]| {
            let orders: Vec<Order> = orders.iter().map(|&d| order(d, 1)).collect();
            stage(&orders, as_of)
        };
        assert_eq!(stage_of(&[911]), "new"); // first order 89 days ago
        assert_eq!(stage_of(&[910]), "active"); // exactly 90 days: no longer new
        assert_eq!(stage_of(&[100, 821]), "won back"); // back 179 days ago after 721 days
        assert_eq!(stage_of(&[100, 820]), "at risk"); // back exactly 180 days ago: no longer recent
        assert_eq!(stage_of(&[400, 900]), "won back"); // gap 500 days, back 100 days ago
        assert_eq!(stage_of(&[400, 766, 900]), "active"); // gaps of 366 and 134, but the 366 gap ended 234 days ago
        assert_eq!(stage_of(&[500, 820]), "at risk"); // 180 days ago exactly
        assert_eq!(stage_of(&[635]), "at risk"); // 365 days ago
        assert_eq!(stage_of(&[634]), "lapsed"); // 366 days ago
        assert_eq!(stage_of(&[]), "never bought");
    }

    #[test]
    fn rfm_clv_and_complaints_on_a_small_base() {
        let as_of = day(400);
        let buyers = [
            buyer(1, &[(10, 1000), (390, 3000)]), // recency 10, 2 orders
            buyer(2, &[(30, 500)]),               // recency 370, 1 order
            buyer(3, &[(50, 200), (60, 200), (200, 200)]),
        ];
        let interactions = [
            Interaction {
                customer_id: 2,
                kind: "complaint".into(),
                status: "resolved".into(),
                opened_at: day(110),
                resolved_at: Some(day(113)),
            },
            Interaction {
                customer_id: 3,
                kind: "complaint".into(),
                status: "open".into(),
                opened_at: day(120),
                resolved_at: None,
            },
            Interaction {
                customer_id: 1,
                kind: "inquiry".into(),
                status: "resolved".into(),
                opened_at: day(20),
                resolved_at: Some(day(21)),
            },
        ];
        let valuing = Valuing {
            valuation: Valuation { horizon_days: 365.0, annual_discount_rate: 0.1 },
            check_days: 90,
            expected_years: 3.0,
        };
        let r = analyse(4, &buyers, &interactions, as_of, &valuing);
        // Two repeat buyers are too few for the customer-base models: the heuristic stays, and says why.
        assert!(r.outlook.is_none());
        assert!(r.outlook_note.as_deref().is_some_and(|n| n.contains("2 customers bought on two days")), "{r:?}");
        let clv = r.clv.as_ref().expect("the heuristic where the models cannot be fitted");
        let cell =
            |rec: &str, freq: &str| r.rfm.iter().find(|c| c.recency == rec && c.frequency == freq).unwrap().clone();
        assert_eq!((cell("0–30 days", "2 orders").customers, cell("0–30 days", "2 orders").value_cents), (1, 4000));
        assert_eq!(cell("over 365 days", "1 order").customers, 1);
        assert_eq!(cell("181–365 days", "3–4 orders").customers, 1);
        assert_eq!(r.rfm.iter().map(|c| c.customers).sum::<u64>(), 3);

        // The year before day 400 is (35, 400]: orders 30.00, 2.00, 2.00, 2.00 by customers 1 and 3.
        // AOV 36/4 = 9.00; 4 orders by 2 active customers: 2 a year → 9 × 2 × 3 years = 54.
        // Over all 3 buyers: 4/3 a year → 9 × 4/3 × 3 = 36.
        assert!((clv.average_order_value.unwrap() - 9.0).abs() < 1e-9);
        assert!((clv.clv_active.unwrap() - 54.0).abs() < 1e-9);
        assert!((clv.clv_all.unwrap() - 36.0).abs() < 1e-9);

        let stages: Vec<(&str, u64)> = r.lifecycle.iter().map(|s| (s.stage, s.customers)).collect();
        assert_eq!(
            stages,
            [("new", 0), ("won back", 1), ("active", 0), ("at risk", 1), ("lapsed", 1), ("never bought", 1)]
        );

        assert_eq!(
            r.complaints.by_kind_status,
            [
                ("complaint".into(), "open".into(), 1),
                ("complaint".into(), "resolved".into(), 1),
                ("inquiry".into(), "resolved".into(), 1)
            ]
        );
        let spread = r.complaints.resolution_days.unwrap();
        assert_eq!((spread.count, spread.median), (1, 3.0));
        // Customer 2 (bought on day 30) resolved on day 113, bought nothing in (113, 293]. The reference is day 113:
        // customer 1 (never complained, bought on day 10) bought nothing in it either; customer 3
        // complained (open), so is in neither group.
        let after = r.complaints.after.unwrap();
        assert_eq!(after.reference, day(113));
        assert_eq!((after.complainants.customers, after.complainants.bought), (1, 0));
        assert_eq!((after.others.customers, after.others.bought), (1, 0));
    }
}
