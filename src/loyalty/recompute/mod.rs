//! `patron loyalty recompute`: brings every member up to date as of a moment.
//!
//! A first run writes millions of entries and a nightly run reads tens of
//! thousands of members; both engines run the same statements and steps
//! through [`crate::db::engine`].

use std::collections::{HashMap, HashSet};
use std::time::{Duration as Elapsed, Instant};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use sea_orm::sea_query::{
    Asterisk, CaseStatement, Condition, Expr, ExprTrait, Func, JoinType, Query, SelectStatement, Value,
};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Select,
};
use serde::Serialize;

use super::CHUNK;
use super::engine::{self, Account, Basis, Entry, Member, Order, Outcome, Rules, Standing};
use crate::db::bulk::{BulkInsert, BulkUpdate};
use crate::db::engine::{Options, Txn, birthday_month_and_day};
use crate::db::entities::{customer, loyalty_account, loyalty_ledger, order};
use crate::db::record::record;
use crate::work::{self, Customers};

/// What a recompute changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub members: u64,
    pub new_members: u64,
    /// Members run through the rules because something may have changed for them.
    pub recomputed: u64,
    pub points_earned: i64,
    pub bonus_points: i64,
    pub points_expired: i64,
    pub upgrades: u64,
    pub downgrades: u64,
}

/// Brings every customer with orders or an account up to date as of `as_of`,
/// in one transaction. Only members for whom something may have changed (a
/// new order, no account yet, points expiring within 30 days, a birthday, a
/// 12-month value outside their tier) are loaded and run through the rules.
/// For everyone else only the distance to the next tier can move (orders
/// leave the 12-month window); one query finds those whose stored distance
/// is off. Their balance needs no check: every ledger write (recompute,
/// redemption, adjustment) updates the stored balance with it.
pub async fn recompute(db: &DatabaseConnection, rules: &Rules, as_of: DateTime<Utc>) -> Result<Report, DbErr> {
    // Reads first: the write lock is taken at the first write.
    let mut txn = begin(db, false).await?;
    let report = recompute_in(&mut txn, rules, as_of, &Customers::All).await?;
    txn.commit().await?;
    Ok(report)
}

/// Brings the members whose customer ids are in the range taken up to
/// date, as [`recompute`] does for all, in one transaction that also marks
/// the range done; None (and nothing written) if this daemon no longer
/// holds it.
pub async fn recompute_range(
    db: &DatabaseConnection,
    rules: &Rules,
    range: &work::Range,
    owner: &work::Owner,
) -> Result<Option<Report>, DbErr> {
    // Other daemons' ranges may be written at the same time: on SQLite a
    // transaction that read first could not take the write lock then.
    let mut txn = begin(db, true).await?;
    let report = recompute_in(&mut txn, rules, range.run.as_of, &Customers::Range(range.customers.clone())).await?;
    if !work::complete(&mut txn, range, owner, Utc::now()).await? {
        txn.rollback().await?;
        return Ok(None);
    }
    txn.commit().await?;
    Ok(Some(report))
}

async fn begin(db: &DatabaseConnection, write_lock_first: bool) -> Result<Txn, DbErr> {
    Txn::begin(db, Options { write_lock_first, cache_mb: Some(64), memory_map: true }).await
}

async fn recompute_in(
    txn: &mut Txn,
    rules: &Rules,
    as_of: DateTime<Utc>,
    members: &Customers,
) -> Result<Report, DbErr> {
    let mut log = PhaseLog::new();
    let mut changed = HashSet::new();
    // The orders without points, or without an account, are an anti-join
    // of the orders with the ledger or the accounts.
    txn.hash_joins(false).await?;
    for (name, query) in change_queries(txn.backend(), rules, as_of, members) {
        changed.extend(txn.values::<i64>(&query).await?);
        log.found(name, changed.len());
    }
    txn.hash_joins(true).await?;
    let moved = txn.query::<MovedRow>(&moved_query(rules, as_of, members)).await?;
    let moved = moved.into_iter().map(|row| Moved::new(row, rules)).collect();
    let (changed, distances) = sort_out(rules, changed, moved);
    log.phase("changed members found");
    let mut report = Report { recomputed: changed.len() as u64, ..Report::default() };
    // On a first run every ledger is empty until this run writes it, and
    // each member is written once: nothing to read back. The indexes are
    // set aside only when the whole base is written.
    let first_run = txn.values::<i64>(&members.limit(any_ledger_entry(), "customer_id")).await?.is_empty();
    let set_aside = match members {
        Customers::All if first_run => Some(txn.set_aside_indexes("loyalty_ledger").await?),
        _ => None,
    };
    // From here on, lookups of a thousand members at a time.
    txn.without_jit().await?;
    for ids in changed.chunks(CHUNK) {
        let clock = Instant::now();
        let accounts = load_accounts(txn, ids).await?;
        let loaded = load_members(txn, ids, as_of, !first_run).await?;
        let outcomes = run_rules(rules, &accounts, ids, loaded, as_of);
        log.reading += clock.elapsed();
        count_all(&mut report, &outcomes, rules);
        let clock = Instant::now();
        write_outcomes(txn, &accounts, &outcomes, first_run, as_of).await?;
        log.writing += clock.elapsed();
    }
    if let Some(set_aside) = set_aside {
        txn.restore_indexes(set_aside).await?;
        // The tables were filled from nothing (PostgreSQL): without fresh
        // statistics the next night's lookups of a few members were
        // planned as scans of the whole ledger (reading took 31 s instead
        // of 1.5 s for 58,000 members of a million). Not on a range of a
        // shared run: each would hold the tables' ANALYZE lock until its
        // commit, and the daemons would take turns.
        for table in ["loyalty_ledger", "loyalty_accounts", "loyalty_tier_changes"] {
            txn.analyze(table).await?;
        }
    }
    log.members_done();
    let update =
        BulkUpdate::new("loyalty_accounts", "customer_id", &["next_tier", "points_to_next_tier", "updated_at"]);
    txn.update_rows(&update, distances.len(), |i, values| {
        let (customer_id, next_tier) = &distances[i];
        let (name, missing) = next_tier.clone().unzip();
        values.extend([(*customer_id).into(), name.into(), missing.into(), as_of.into()]);
    })
    .await?;
    log.phase("distances to the next tier written");
    let count = Query::select().expr(Expr::col(Asterisk).count()).from("loyalty_accounts").to_owned();
    let count = members.limit(count, "customer_id");
    report.members = txn.values::<i64>(&count).await?.first().copied().unwrap_or(0) as u64;
    log.phase("members counted");
    txn.execute(&super::recorded(as_of, report.recomputed, Utc::now())).await?;
    Ok(report)
}

/// A row if the ledger has any entry.
fn any_ledger_entry() -> SelectStatement {
    Query::select().expr(Expr::val(1i64)).from("loyalty_ledger").limit(1).to_owned()
}

/// The time of each step, logged at debug.
struct PhaseLog {
    started: Instant,
    /// Loading members and running the rules; writing what is due.
    reading: Elapsed,
    writing: Elapsed,
}

impl PhaseLog {
    fn new() -> Self {
        PhaseLog { started: Instant::now(), reading: Elapsed::ZERO, writing: Elapsed::ZERO }
    }

    fn phase(&self, name: &str) {
        tracing::debug!(seconds = self.started.elapsed().as_secs_f64(), "loyalty recompute: {name}");
    }

    fn found(&self, name: &str, members: usize) {
        tracing::debug!(seconds = self.started.elapsed().as_secs_f64(), members, "loyalty recompute: {name}");
    }

    fn members_done(&self) {
        tracing::debug!(
            reading_s = self.reading.as_secs_f64(),
            writing_s = self.writing.as_secs_f64(),
            "loyalty recompute: members read and written"
        );
        self.phase("changed members recomputed");
    }
}

/// The members to run through the rules, in id order, and the new distance
/// to the next tier of those whose tier holds but whose distance moved.
fn sort_out(rules: &Rules, mut changed: HashSet<i64>, moved: Vec<Moved>) -> (Vec<i64>, Vec<NewDistance>) {
    let mut distances = Vec::new();
    for moved in moved {
        if rules.rank(&moved.tier) != Some(rules.tier_for(moved.value)) {
            changed.insert(moved.customer_id);
        } else {
            let next_tier = rules.next_tier(&moved.tier, moved.value);
            if next_tier != moved.next_tier {
                distances.push((moved.customer_id, next_tier));
            }
        }
    }
    let mut changed: Vec<i64> = changed.into_iter().collect();
    changed.sort_unstable();
    distances.retain(|(id, _)| changed.binary_search(id).is_err());
    (changed, distances)
}

/// A member and their next tier with the distance to it (`None` at the top).
type NewDistance = (i64, Option<(String, f64)>);

fn count_all(report: &mut Report, outcomes: &[(i64, Outcome)], rules: &Rules) {
    for (_, outcome) in outcomes {
        for entry in &outcome.new_entries {
            match entry.kind.as_str() {
                "earn" => report.points_earned += entry.points,
                "bonus" => report.bonus_points += entry.points,
                _ => report.points_expired -= entry.points,
            }
        }
        match &outcome.tier_change {
            Some((None, _)) => report.new_members += 1,
            Some((Some(from), to)) if rules.rank(to) > rules.rank(from) => report.upgrades += 1,
            Some(_) => report.downgrades += 1,
            None => {}
        }
    }
}

/// The stored account as the engine sees it, and its stored standing.
fn split(stored: &loyalty_account::Model) -> (Account, Standing) {
    let account = Account {
        tier: stored.tier.clone(),
        tier_since: stored.tier_since,
        joined_at: stored.joined_at,
        direction: stored.tier_direction.clone(),
    };
    let standing = Standing {
        points: stored.points,
        points_expiring_30d: stored.points_expiring_30d,
        next_tier: stored.next_tier.clone().zip(stored.points_to_next_tier),
    };
    (account, standing)
}

/// What is loaded for a chunk of members, besides their accounts.
struct Loaded {
    orders: Vec<(i64, Order)>,
    ledger: Vec<(i64, Entry)>,
    birthdays: HashMap<i64, NaiveDate>,
}

/// Orders up to `as_of`, ledgers (unless `with_ledger` is false) and birthdays of `ids`.
async fn load_members(txn: &mut Txn, ids: &[i64], as_of: DateTime<Utc>, with_ledger: bool) -> Result<Loaded, DbErr> {
    let orders = txn.query::<OrderRow>(&orders_query(ids, as_of).into_query()).await?;
    let ledger = if with_ledger { txn.query::<LedgerRow>(&ledger_query(ids).into_query()).await? } else { Vec::new() };
    let birthdays = txn.query::<BirthdayRow>(&birthdays_query(ids).into_query()).await?;
    Ok(Loaded {
        orders: orders.into_iter().map(OrderRow::into_order).collect(),
        ledger: ledger.into_iter().map(LedgerRow::into_entry).collect(),
        birthdays: birthdays.into_iter().map(|b| (b.id, b.birthday)).collect(),
    })
}

/// Runs the rules for each of `ids`.
fn run_rules(
    rules: &Rules,
    accounts: &HashMap<i64, loyalty_account::Model>,
    ids: &[i64],
    loaded: Loaded,
    as_of: DateTime<Utc>,
) -> Vec<(i64, Outcome)> {
    let mut orders = group(loaded.orders);
    let mut ledger = group(loaded.ledger);
    let outcomes = ids.iter().map(|&customer_id| {
        let account = accounts.get(&customer_id).map(|stored| split(stored).0);
        let member = Member {
            customer_id,
            birthday: loaded.birthdays.get(&customer_id).copied(),
            orders: &orders.remove(&customer_id).unwrap_or_default(),
            ledger: &ledger.remove(&customer_id).unwrap_or_default(),
            account: account.as_ref(),
        };
        (customer_id, engine::recompute(rules, &member, as_of))
    });
    outcomes.collect()
}

fn group<T>(rows: Vec<(i64, T)>) -> HashMap<i64, Vec<T>> {
    let mut grouped: HashMap<i64, Vec<T>> = HashMap::new();
    for (customer, row) in rows {
        grouped.entry(customer).or_default().push(row);
    }
    grouped
}

/// Writes the new entries, the accounts (new, changed tier or moved
/// standing) and the tier changes of a chunk, in bulk (`db::bulk`). On a
/// first run no entry exists yet, and an account exists only if loaded:
/// the rows known new skip the conflict rules on PostgreSQL.
async fn write_outcomes(
    txn: &mut Txn,
    accounts: &HashMap<i64, loyalty_account::Model>,
    outcomes: &[(i64, Outcome)],
    first_run: bool,
    as_of: DateTime<Utc>,
) -> Result<(), DbErr> {
    let backend = txn.backend();
    let entries: Vec<(i64, &Entry)> = outcomes
        .iter()
        .flat_map(|(customer, outcome)| outcome.new_entries.iter().map(move |e| (*customer, e)))
        .collect();
    let ledger = BulkInsert::ignore_existing(backend, "loyalty_ledger", LEDGER_COLUMNS, &["source_key"]);
    txn.insert_rows_known_new(
        &ledger,
        entries.len(),
        |_| first_run,
        |i, values| values.extend(ledger_row(entries[i], as_of)),
    )
    .await?;
    let rows: Vec<(i64, Account, Standing)> = outcomes
        .iter()
        .filter_map(|(customer, outcome)| {
            let stored = accounts.get(customer).map(split);
            let account = outcome.account.clone().or_else(|| stored.as_ref().map(|(a, _)| a.clone()))?;
            let unchanged = outcome.account.is_none() && stored.is_some_and(|(_, s)| s == outcome.standing);
            (!unchanged).then(|| (*customer, account, outcome.standing.clone()))
        })
        .collect();
    let rewritten = ACCOUNT_COLUMNS.iter().copied().filter(|c| !["customer_id", "joined_at"].contains(c)).collect();
    let upsert = BulkInsert::update(backend, "loyalty_accounts", ACCOUNT_COLUMNS, &["customer_id"], rewritten);
    let is_new = |i: usize| !accounts.contains_key(&rows[i].0);
    txn.insert_rows_known_new(&upsert, rows.len(), is_new, |i, values| values.extend(account_row(&rows[i], as_of)))
        .await?;
    let changes: Vec<(i64, &Option<String>, &String)> = outcomes
        .iter()
        .filter_map(|(customer, outcome)| outcome.tier_change.as_ref().map(|(from, to)| (*customer, from, to)))
        .collect();
    let insert =
        BulkInsert::new(backend, "loyalty_tier_changes", &["customer_id", "from_tier", "to_tier", "changed_at"]);
    txn.insert_rows(&insert, changes.len(), |i, values| {
        let (customer, from, to) = changes[i];
        values.extend([customer.into(), from.clone().into(), to.clone().into(), as_of.into()]);
    })
    .await
}

const LEDGER_COLUMNS: &[&str] =
    &["customer_id", "entry_kind", "points", "source_key", "order_id", "occurred_at", "expires_at", "created_at"];

fn ledger_row((customer, entry): (i64, &Entry), now: DateTime<Utc>) -> [Value; 8] {
    [
        customer.into(),
        entry.kind.clone().into(),
        entry.points.into(),
        entry.source_key.clone().into(),
        entry.order_id.into(),
        entry.at.into(),
        entry.expires_at.into(),
        now.into(),
    ]
}

/// The account columns written; all but the key and `joined_at` (which
/// never changes) are rewritten on an existing account.
const ACCOUNT_COLUMNS: &[&str] = &[
    "customer_id",
    "tier",
    "tier_since",
    "joined_at",
    "updated_at",
    "points",
    "points_expiring_30d",
    "next_tier",
    "points_to_next_tier",
    "tier_direction",
];

fn account_row((customer, account, standing): &(i64, Account, Standing), now: DateTime<Utc>) -> [Value; 10] {
    let (next_tier, missing) = standing.next_tier.clone().unzip();
    [
        (*customer).into(),
        account.tier.clone().into(),
        account.tier_since.into(),
        account.joined_at.into(),
        now.into(),
        standing.points.into(),
        standing.points_expiring_30d.into(),
        next_tier.into(),
        missing.into(),
        account.direction.clone().into(),
    ]
}

async fn load_accounts(txn: &mut Txn, ids: &[i64]) -> Result<HashMap<i64, loyalty_account::Model>, DbErr> {
    let accounts = txn.query::<loyalty_account::Model>(&accounts_query(ids).into_query()).await?;
    Ok(accounts.into_iter().map(|a| (a.customer_id, a)).collect())
}

record!(impl loyalty_account::Model {
    customer_id,
    tier,
    tier_since,
    joined_at,
    updated_at,
    points,
    points_expiring_30d,
    next_tier,
    points_to_next_tier,
    tier_direction,
});

/// The accounts of `ids`.
fn accounts_query(ids: &[i64]) -> Select<loyalty_account::Entity> {
    use loyalty_account::Column;
    loyalty_account::Entity::find()
        .select_only()
        .columns([
            Column::CustomerId,
            Column::Tier,
            Column::TierSince,
            Column::JoinedAt,
            Column::UpdatedAt,
            Column::Points,
            Column::PointsExpiring30d,
            Column::NextTier,
            Column::PointsToNextTier,
            Column::TierDirection,
        ])
        .filter(Column::CustomerId.is_in(ids.iter().copied()))
}

/// A member whose tier or stored distance to the next tier may no longer
/// match their 12-month value.
struct Moved {
    customer_id: i64,
    tier: String,
    next_tier: Option<(String, f64)>,
    value: f64,
}

record! {
    /// The columns of [`moved_query`]: the stored tier, next tier and distance, the 12-month value.
    struct MovedRow {
        customer_id: i64,
        tier: String,
        next_tier: Option<String>,
        points_to_next_tier: Option<f64>,
        total: i64,
    }
}

impl Moved {
    fn new(row: MovedRow, rules: &Rules) -> Self {
        let divisor = if rules.basis == Basis::Spend { 100.0 } else { 1.0 };
        Moved {
            customer_id: row.customer_id,
            tier: row.tier,
            next_tier: row.next_tier.zip(row.points_to_next_tier),
            value: row.total as f64 / divisor,
        }
    }
}

/// The members whose held tier differs from the one their 12-month value
/// reaches, or whose stored next tier or distance to it differs from what
/// the value gives; worked out in the database, so that only those rows
/// come back ([`MovedRow`]). The tiers are bound values; the caller checks
/// each row again with [`Rules`].
fn moved_query(rules: &Rules, as_of: DateTime<Utc>, members: &Customers) -> SelectStatement {
    let divisor = if rules.basis == Basis::Spend { "100.0" } else { "1.0" };
    // Fixed text: a number literal chosen above, never input. In floating
    // point, as the rules engine computes it (on PostgreSQL an integer
    // divided by `100.0` would be `numeric`, much slower to compute on).
    let value = || Expr::cust(format!(r#"(CAST(COALESCE("v"."total", 0) AS DOUBLE PRECISION) / {divisor})"#));
    let tier = || Expr::col(("a", "tier"));
    let mut held = CaseStatement::new();
    let mut target = CaseStatement::new();
    for (rank, (name, _)) in rules.tiers.iter().enumerate() {
        held = held.case(tier().eq(name.as_str()), rank as i64);
    }
    // Highest threshold first: the first that the value reaches wins.
    for (rank, (_, threshold)) in rules.tiers.iter().enumerate().rev() {
        target = target.case(value().gte(*threshold), rank as i64);
    }
    let (next_name, next_threshold): (Expr, Expr) = if rules.tiers.len() < 2 {
        (Expr::null(), Expr::null())
    } else {
        let (mut name, mut threshold) = (CaseStatement::new(), CaseStatement::new());
        for pair in rules.tiers.windows(2) {
            name = name.case(tier().eq(pair[0].0.as_str()), pair[1].0.as_str());
            threshold = threshold.case(tier().eq(pair[0].0.as_str()), pair[1].1);
        }
        (Expr::Case(Box::new(name)), Expr::Case(Box::new(threshold)))
    };
    let missing = Expr::Case(Box::new(
        CaseStatement::new().case(next_threshold.clone().sub(value()).gt(0), next_threshold.sub(value())).finally(0),
    ));
    let stored_missing = Expr::col(("a", "points_to_next_tier"));
    let moved = Condition::any()
        .add(Expr::Case(Box::new(held.finally(-1))).ne(Expr::Case(Box::new(target.finally(0)))))
        .add(distinct_from(Expr::col(("a", "next_tier")), next_name.clone()))
        .add(
            Condition::all().add(next_name.is_not_null()).add(
                Condition::any()
                    .add(stored_missing.clone().is_null())
                    .add(Expr::expr(Func::abs(stored_missing.sub(missing))).gt(0.000001)),
            ),
        );
    let query = Query::select()
        .columns([("a", "customer_id"), ("a", "tier"), ("a", "next_tier"), ("a", "points_to_next_tier")])
        .expr_as(Expr::cust(r#"COALESCE("v"."total", 0)"#), "total")
        .from_as("loyalty_accounts", "a")
        .join_subquery(
            JoinType::LeftJoin,
            members.limit(basis_totals(rules, as_of), "customer_id"),
            "v",
            Expr::col(("v", "customer_id")).equals(("a", "customer_id")),
        )
        .cond_where(moved)
        .to_owned();
    members.limit(query, ("a", "customer_id"))
}

/// `a IS DISTINCT FROM b`, spelled out in operators both engines share.
/// (Custom SQL with `$1` is only filled in on PostgreSQL: on SQLite it
/// became a named parameter that nothing was bound to.)
fn distinct_from(a: Expr, b: Expr) -> Condition {
    Condition::any()
        .add(a.clone().ne(b.clone()))
        .add(a.clone().is_null().and(b.clone().is_not_null()))
        .add(a.is_not_null().and(b.is_null()))
}

/// `customer_id, total`: every member's 12-month value up to and including
/// `as_of`, as an integer in the tier basis: spend in cents from the orders,
/// or points earned from the ledger's `earn` entries.
fn basis_totals(rules: &Rules, as_of: DateTime<Utc>) -> SelectStatement {
    let since = as_of - Duration::days(365);
    let (table, sum, time) = match rules.basis {
        Basis::Spend => ("orders", "CAST(SUM(amount_cents) AS BIGINT)", "ordered_at"),
        Basis::Points => ("loyalty_ledger", "CAST(SUM(points) AS BIGINT)", "occurred_at"),
    };
    let mut query = Query::select();
    query
        .column("customer_id")
        .expr_as(Expr::cust(sum), "total")
        .from(table)
        .and_where(Expr::col(time).gt(since))
        .and_where(Expr::col(time).lte(as_of))
        .group_by_col("customer_id");
    if rules.basis == Basis::Points {
        query.and_where(Expr::col("entry_kind").eq("earn"));
    }
    query
}

/// Customers for whom something happened that the aggregates cannot show:
/// an order without points yet or no account; points expiring by 30 days
/// from now that are not settled; a birthday in the last week. Each
/// query's name is for the debug log.
fn change_queries(
    backend: DbBackend,
    rules: &Rules,
    as_of: DateTime<Utc>,
    members: &Customers,
) -> Vec<(&'static str, SelectStatement)> {
    let not_exists = |query: SelectStatement| Expr::exists(query).not();
    // No row of `table` whose `column` is the order's `order_column`.
    let none_in = |table: &'static str, column: &'static str, order_column: &'static str| {
        not_exists(
            Query::select()
                .expr(Expr::val(1))
                .from_as(table, "x")
                .and_where(Expr::col(("x", column)).equals(("o", order_column)))
                .to_owned(),
        )
    };
    let no_points = none_in("loyalty_ledger", "order_id", "id");
    let no_account = none_in("loyalty_accounts", "customer_id", "customer_id");
    let orders_where = |condition: Condition| {
        Query::select()
            .column(("o", "customer_id"))
            .from_as("orders", "o")
            .and_where(Expr::col(("o", "ordered_at")).lte(as_of))
            .cond_where(condition)
            .to_owned()
    };
    let unearned = match backend {
        // PostgreSQL runs an `OR` of two `NOT EXISTS` as two index probes for
        // every order, and each alone as an anti-join. Without `DISTINCT`:
        // hashing a first run's million customers at times took PostgreSQL 15
        // minutes (its hash table, sized for every group, cleared again and
        // again); the ids are gathered into a set anyway.
        DbBackend::Postgres => vec![
            ("unearned orders", orders_where(Condition::all().add(no_points))),
            ("orders and no account", orders_where(Condition::all().add(no_account))),
        ],
        _ => vec![(
            "unearned orders or no account",
            orders_where(Condition::any().add(no_points).add(no_account)).distinct().to_owned(),
        )],
    };
    let unsettled = Query::select()
        .distinct()
        .column(("l", "customer_id"))
        .from_as("loyalty_ledger", "l")
        .and_where(Expr::col(("l", "points")).gt(0))
        .and_where(Expr::col(("l", "expires_at")).lte(as_of + Duration::days(30)))
        .and_where(not_exists(
            Query::select()
                .expr(Expr::val(1))
                .from_as("loyalty_ledger", "e")
                .and_where(Expr::col(("e", "source_key")).eq(Expr::cust(r#"'expire:' || "l"."source_key""#)))
                .to_owned(),
        ))
        .to_owned();
    let mut queries: Vec<_> =
        unearned.into_iter().map(|(name, query)| (name, members.limit(query, ("o", "customer_id")))).collect();
    queries.push(("unsettled lots", members.limit(unsettled, ("l", "customer_id"))));
    if rules.birthday_bonus > 0 {
        let birthdays = birthdays_in_last_week(backend, as_of);
        queries.push(("birthdays", members.limit(birthdays, ("loyalty_accounts", "customer_id"))));
    }
    queries
}

/// Members whose birthday (month and day) fell in the 7 days up to `as_of`.
fn birthdays_in_last_week(backend: DbBackend, as_of: DateTime<Utc>) -> SelectStatement {
    let mut days: Vec<String> = Vec::new();
    for back in 0..7 {
        let day = as_of.date_naive() - Duration::days(back);
        days.push(day.format("%m-%d").to_string());
        if (day.month(), day.day()) == (2, 28) && !day.leap_year() {
            days.push("02-29".into());
        }
    }
    Query::select()
        .column(("loyalty_accounts", "customer_id"))
        .from("loyalty_accounts")
        .inner_join("customers", Expr::col(("customers", "id")).equals(("loyalty_accounts", "customer_id")))
        .and_where(birthday_month_and_day(backend).is_in(days))
        .to_owned()
}

record! {
    /// An order of [`orders_query`].
    struct OrderRow {
        id: i64,
        customer_id: i64,
        ordered_at: DateTime<Utc>,
        amount_cents: i64,
        category: Option<String>,
    }
}

impl OrderRow {
    fn into_order(self) -> (i64, Order) {
        let OrderRow { id, customer_id, ordered_at, amount_cents, category } = self;
        (customer_id, Order { id, at: ordered_at, amount_cents, category })
    }
}

record! {
    /// A ledger entry of [`ledger_query`].
    struct LedgerRow {
        customer_id: i64,
        entry_kind: String,
        points: i64,
        source_key: String,
        occurred_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        order_id: Option<i64>,
    }
}

impl LedgerRow {
    fn into_entry(self) -> (i64, Entry) {
        let LedgerRow { customer_id, entry_kind, points, source_key, occurred_at, expires_at, order_id } = self;
        (customer_id, Entry { kind: entry_kind, points, source_key, at: occurred_at, expires_at, order_id })
    }
}

record! {
    /// A birthday of [`birthdays_query`].
    struct BirthdayRow {
        id: i64,
        birthday: NaiveDate,
    }
}

/// The orders of `ids` up to `as_of`.
fn orders_query(ids: &[i64], as_of: DateTime<Utc>) -> Select<order::Entity> {
    order::Entity::find()
        .select_only()
        .columns([
            order::Column::Id,
            order::Column::CustomerId,
            order::Column::OrderedAt,
            order::Column::AmountCents,
            order::Column::Category,
        ])
        .filter(order::Column::CustomerId.is_in(ids.iter().copied()))
        .filter(order::Column::OrderedAt.lte(as_of))
}

/// The ledgers of `ids`, oldest entry first.
fn ledger_query(ids: &[i64]) -> Select<loyalty_ledger::Entity> {
    loyalty_ledger::Entity::find()
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
        .filter(loyalty_ledger::Column::CustomerId.is_in(ids.iter().copied()))
        .order_by_asc(loyalty_ledger::Column::Id)
}

/// The birthdays of those of `ids` who gave one.
fn birthdays_query(ids: &[i64]) -> Select<customer::Entity> {
    customer::Entity::find()
        .select_only()
        .columns([customer::Column::Id, customer::Column::Birthday])
        .filter(customer::Column::Id.is_in(ids.iter().copied()))
        .filter(customer::Column::Birthday.is_not_null())
}
