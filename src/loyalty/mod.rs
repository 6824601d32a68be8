//! The loyalty programme: points for orders, expiry, tiers and redemptions.
//!
//! [`engine`] applies the rules to one member without IO; this module loads
//! every member's orders and ledger, runs the engine, and writes what is due
//! in one transaction. The ledger is append-only and every entry is keyed by
//! its cause (`order:ID`, `expire:order:ID`, `redemption:ID`), so a recompute
//! or a re-import never counts anything twice.

pub mod adjustments;
pub mod engine;
pub mod redemptions;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use sea_orm::sea_query::{CaseStatement, Condition, Expr, ExprTrait, JoinType, OnConflict, Query, SelectStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use serde::Serialize;

use crate::db::entities::{customer, loyalty_account, loyalty_ledger, order};
use engine::{Account, Basis, Entry, Member, Order, Outcome, Rules, Standing};

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

/// Members handled per round trip: bounded memory, and IN lists and
/// multi-row INSERTs well within SQLite's bound-value limit.
const CHUNK: usize = 1000;

/// Brings every customer with orders or an account up to date as of `as_of`,
/// in one transaction. Only members for whom something may have changed (a
/// new order, no account yet, points expiring within 30 days, a birthday, a
/// 12-month value outside their tier) are loaded and run through the rules.
/// For everyone else only the distance to the next tier can move (orders
/// leave the 12-month window); one query finds those whose stored distance
/// is off. Their balance needs no check: every ledger write (recompute,
/// redemption, adjustment) updates the stored balance with it.
pub async fn recompute(db: &DatabaseConnection, rules: &Rules, as_of: DateTime<Utc>) -> Result<Report, DbErr> {
    let txn = db.begin().await?;
    crate::db::use_memory_map(&txn).await?;
    crate::db::use_large_cache(&txn).await?;
    let started = std::time::Instant::now();
    let phase = |name: &str| tracing::debug!(seconds = started.elapsed().as_secs_f64(), "loyalty recompute: {name}");
    let mut changed = changed_members(&txn, rules, as_of).await?;
    let mut distances = Vec::new();
    for moved in moved_standings(&txn, rules, as_of).await? {
        if rules.rank(&moved.tier) != Some(rules.tier_for(moved.value)) {
            changed.insert(moved.customer_id);
        } else {
            let next_tier = rules.next_tier(&moved.tier, moved.value);
            if next_tier != moved.next_tier {
                distances.push((moved.customer_id, next_tier));
            }
        }
    }
    phase("changed members found");
    let mut changed: Vec<i64> = changed.into_iter().collect();
    changed.sort_unstable();

    let mut report = Report { recomputed: changed.len() as u64, ..Report::default() };
    // Time spent loading and running the rules, and writing, logged at debug.
    let (mut reading, mut writing) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for ids in changed.chunks(CHUNK) {
        let clock = std::time::Instant::now();
        let accounts = load_accounts(&txn, ids).await?;
        let outcomes = recompute_members(&txn, rules, &accounts, ids, as_of).await?;
        reading += clock.elapsed();
        for (_, outcome) in &outcomes {
            count(&mut report, outcome, rules);
        }
        let clock = std::time::Instant::now();
        write_outcomes(&txn, &accounts, &outcomes, as_of).await?;
        writing += clock.elapsed();
    }
    tracing::debug!(
        reading_s = reading.as_secs_f64(),
        writing_s = writing.as_secs_f64(),
        "loyalty recompute: members read and written"
    );
    phase("changed members recomputed");
    for (customer_id, next_tier) in distances.into_iter().filter(|(id, _)| changed.binary_search(id).is_err()) {
        let (name, missing) = next_tier.unzip();
        let update = Query::update()
            .table("loyalty_accounts")
            .values([("next_tier", name.into()), ("points_to_next_tier", missing.into()), ("updated_at", as_of.into())])
            .and_where(Expr::col("customer_id").eq(customer_id))
            .to_owned();
        txn.execute(&update).await?;
    }
    phase("distances to the next tier written");
    report.members = PaginatorTrait::count(loyalty_account::Entity::find(), &txn).await?;
    txn.commit().await?;
    phase("committed");
    Ok(report)
}

fn count(report: &mut Report, outcome: &Outcome, rules: &Rules) {
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

/// Loads the members `ids` (orders up to `as_of`, ledger, birthday) and runs the rules for each.
async fn recompute_members(
    txn: &DatabaseTransaction,
    rules: &Rules,
    accounts: &HashMap<i64, loyalty_account::Model>,
    ids: &[i64],
    as_of: DateTime<Utc>,
) -> Result<Vec<(i64, Outcome)>, DbErr> {
    let mut orders = group(load_orders(txn, ids, as_of).await?);
    let mut ledger = group(load_ledger(txn, ids).await?);
    let birthdays: HashMap<i64, NaiveDate> = customer::Entity::find()
        .select_only()
        .columns([customer::Column::Id, customer::Column::Birthday])
        .filter(customer::Column::Id.is_in(ids.iter().copied()))
        .filter(customer::Column::Birthday.is_not_null())
        .into_tuple::<(i64, NaiveDate)>()
        .all(txn)
        .await?
        .into_iter()
        .collect();
    let outcomes = ids.iter().map(|&customer_id| {
        let account = accounts.get(&customer_id).map(|stored| split(stored).0);
        let member = Member {
            customer_id,
            birthday: birthdays.get(&customer_id).copied(),
            orders: &orders.remove(&customer_id).unwrap_or_default(),
            ledger: &ledger.remove(&customer_id).unwrap_or_default(),
            account: account.as_ref(),
        };
        (customer_id, engine::recompute(rules, &member, as_of))
    });
    Ok(outcomes.collect())
}

fn group<T>(rows: Vec<(i64, T)>) -> HashMap<i64, Vec<T>> {
    let mut grouped: HashMap<i64, Vec<T>> = HashMap::new();
    for (customer, row) in rows {
        grouped.entry(customer).or_default().push(row);
    }
    grouped
}

/// Writes the new entries, the accounts (new, changed tier or moved standing) and the tier changes.
async fn write_outcomes(
    txn: &DatabaseTransaction,
    accounts: &HashMap<i64, loyalty_account::Model>,
    outcomes: &[(i64, Outcome)],
    as_of: DateTime<Utc>,
) -> Result<(), DbErr> {
    let entries: Vec<(i64, &Entry)> = outcomes
        .iter()
        .flat_map(|(customer, outcome)| outcome.new_entries.iter().map(move |e| (*customer, e)))
        .collect();
    for chunk in entries.chunks(CHUNK) {
        txn.execute(&insert_entries(chunk, as_of)).await?;
    }
    let rows: Vec<(i64, Account, Standing)> = outcomes
        .iter()
        .filter_map(|(customer, outcome)| {
            let stored = accounts.get(customer).map(split);
            let account = outcome.account.clone().or_else(|| stored.as_ref().map(|(a, _)| a.clone()))?;
            let unchanged = outcome.account.is_none() && stored.is_some_and(|(_, s)| s == outcome.standing);
            (!unchanged).then(|| (*customer, account, outcome.standing.clone()))
        })
        .collect();
    if !rows.is_empty() {
        txn.execute(&upsert_accounts(&rows, as_of)).await?;
    }
    let changes: Vec<(i64, &Option<String>, &String)> = outcomes
        .iter()
        .filter_map(|(customer, outcome)| outcome.tier_change.as_ref().map(|(from, to)| (*customer, from, to)))
        .collect();
    if !changes.is_empty() {
        let mut insert = Query::insert();
        insert.into_table("loyalty_tier_changes").columns(["customer_id", "from_tier", "to_tier", "changed_at"]);
        for (customer, from, to) in changes {
            insert.values_panic([customer.into(), from.clone().into(), to.clone().into(), as_of.into()]);
        }
        txn.execute(&insert).await?;
    }
    Ok(())
}

fn insert_entries(entries: &[(i64, &Entry)], now: DateTime<Utc>) -> sea_orm::sea_query::InsertStatement {
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
    for (customer, entry) in entries {
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
    insert
}

/// Inserts or rewrites the accounts (all but `joined_at`, which never changes).
fn upsert_accounts(rows: &[(i64, Account, Standing)], now: DateTime<Utc>) -> sea_orm::sea_query::InsertStatement {
    let mut insert = Query::insert();
    insert.into_table("loyalty_accounts").columns([
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
    ]);
    for (customer, account, standing) in rows {
        let (next_tier, missing) = standing.next_tier.clone().unzip();
        insert.values_panic([
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
        ]);
    }
    insert.on_conflict(
        OnConflict::column("customer_id")
            .update_columns([
                "tier",
                "tier_since",
                "updated_at",
                "points",
                "points_expiring_30d",
                "next_tier",
                "points_to_next_tier",
                "tier_direction",
            ])
            .to_owned(),
    );
    insert
}

async fn load_accounts(txn: &DatabaseTransaction, ids: &[i64]) -> Result<HashMap<i64, loyalty_account::Model>, DbErr> {
    let accounts = loyalty_account::Entity::find()
        .filter(loyalty_account::Column::CustomerId.is_in(ids.iter().copied()))
        .all(txn)
        .await?;
    Ok(accounts.into_iter().map(|a| (a.customer_id, a)).collect())
}

/// A member whose tier or stored distance to the next tier may no longer
/// match their 12-month value.
struct Moved {
    customer_id: i64,
    tier: String,
    next_tier: Option<(String, f64)>,
    value: f64,
}

/// The members whose held tier differs from the one their 12-month value
/// reaches, or whose stored next tier or distance to it differs from what
/// the value gives; worked out in the database, so that only those rows
/// come back. The tiers are bound values; the caller checks each row again
/// with [`Rules`].
async fn moved_standings(txn: &DatabaseTransaction, rules: &Rules, as_of: DateTime<Utc>) -> Result<Vec<Moved>, DbErr> {
    let divisor = if rules.basis == Basis::Spend { "100.0" } else { "1.0" };
    // Fixed text: a number literal chosen above, never input.
    let value = || Expr::cust(format!(r#"(COALESCE("v"."total", 0) / {divisor})"#));
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
        .add(Expr::cust_with_exprs("$1 IS DISTINCT FROM $2", [Expr::col(("a", "next_tier")), next_name.clone()]))
        .add(
            Condition::all().add(next_name.is_not_null()).add(
                Condition::any()
                    .add(stored_missing.clone().is_null())
                    .add(Expr::cust_with_expr("ABS($1)", stored_missing.sub(missing)).gt(0.000001)),
            ),
        );
    let query = Query::select()
        .columns([("a", "customer_id"), ("a", "tier"), ("a", "next_tier"), ("a", "points_to_next_tier")])
        .expr(Expr::cust(r#"COALESCE("v"."total", 0)"#))
        .from_as("loyalty_accounts", "a")
        .join_subquery(
            JoinType::LeftJoin,
            basis_totals(rules, as_of),
            "v",
            Expr::col(("v", "customer_id")).equals(("a", "customer_id")),
        )
        .cond_where(moved)
        .to_owned();
    let divisor = if rules.basis == Basis::Spend { 100.0 } else { 1.0 };
    let rows = txn.query_all(&query).await?;
    rows.iter()
        .map(|row| {
            let next_tier: Option<String> = row.try_get_by_index(2)?;
            let missing: Option<f64> = row.try_get_by_index(3)?;
            Ok(Moved {
                customer_id: row.try_get_by_index(0)?,
                tier: row.try_get_by_index(1)?,
                next_tier: next_tier.zip(missing),
                value: row.try_get_by_index::<i64>(4)? as f64 / divisor,
            })
        })
        .collect()
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
/// from now that are not settled; a birthday in the last week.
async fn changed_members(
    txn: &DatabaseTransaction,
    rules: &Rules,
    as_of: DateTime<Utc>,
) -> Result<HashSet<i64>, DbErr> {
    let not_exists = |query: SelectStatement| Expr::exists(query).not();
    let unearned = Query::select()
        .distinct()
        .column(("o", "customer_id"))
        .from_as("orders", "o")
        .and_where(Expr::col(("o", "ordered_at")).lte(as_of))
        .cond_where(
            Condition::any()
                .add(not_exists(
                    Query::select()
                        .expr(Expr::val(1))
                        .from_as("loyalty_ledger", "l")
                        .and_where(Expr::col(("l", "order_id")).equals(("o", "id")))
                        .to_owned(),
                ))
                .add(not_exists(
                    Query::select()
                        .expr(Expr::val(1))
                        .from_as("loyalty_accounts", "a")
                        .and_where(Expr::col(("a", "customer_id")).equals(("o", "customer_id")))
                        .to_owned(),
                )),
        )
        .to_owned();
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
    let mut queries = vec![unearned, unsettled];
    if rules.birthday_bonus > 0 {
        queries.push(birthdays_in_last_week(txn.get_database_backend(), as_of));
    }
    let mut changed = HashSet::new();
    for (query, name) in queries.iter().zip(["unearned orders or no account", "unsettled lots", "birthdays"]) {
        let started = std::time::Instant::now();
        for row in txn.query_all(query).await? {
            changed.insert(row.try_get_by_index::<i64>(0)?);
        }
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            members = changed.len(),
            "loyalty recompute: {name}"
        );
    }
    Ok(changed)
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
    let month_day = match backend {
        DbBackend::Sqlite => r#"strftime('%m-%d', "customers"."birthday")"#,
        _ => r#"to_char("customers"."birthday", 'MM-DD')"#,
    };
    Query::select()
        .column(("loyalty_accounts", "customer_id"))
        .from("loyalty_accounts")
        .inner_join("customers", Expr::col(("customers", "id")).equals(("loyalty_accounts", "customer_id")))
        .and_where(Expr::cust(month_day).is_in(days))
        .to_owned()
}

/// id, customer, time, amount in cents, category.
type OrderRow = (i64, i64, DateTime<Utc>, i64, Option<String>);
/// customer, kind, points, source key, time, expiry, order.
type LedgerRow = (i64, String, i64, String, DateTime<Utc>, Option<DateTime<Utc>>, Option<i64>);

async fn load_orders(txn: &DatabaseTransaction, ids: &[i64], as_of: DateTime<Utc>) -> Result<Vec<(i64, Order)>, DbErr> {
    let rows = order::Entity::find()
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
        .into_tuple::<OrderRow>()
        .all(txn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, customer, at, amount_cents, category)| (customer, Order { id, at, amount_cents, category }))
        .collect())
}

async fn load_ledger(txn: &DatabaseTransaction, ids: &[i64]) -> Result<Vec<(i64, Entry)>, DbErr> {
    let rows = loyalty_ledger::Entity::find()
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
        .into_tuple::<LedgerRow>()
        .all(txn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(customer, kind, points, source_key, at, expires_at, order_id)| {
            (customer, Entry { kind, points, source_key, at, expires_at, order_id })
        })
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
