//! The recompute on SQLite through its own statement loop ([`raw`]): the
//! same statements, steps and rules as the sea-orm path in the parent
//! module, without sqlx's per-row cost on a first run's millions of orders
//! and entries and a nightly run's tens of thousands of members.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use sea_orm::{DbBackend, QueryTrait};

use super::{
    CHUNK, Loaded, Moved, PhaseLog, Report, accounts_query, birthdays_query, change_queries, count_all,
    distance_update, entry_from_row, ledger_query, moved_query, order_from_row, orders_query, outcome_writes,
    run_rules, sort_out,
};
use crate::db::entities::loyalty_account;
use crate::db::raw::{self, build, date, optional_time, time};
use crate::loyalty::engine::Rules;

/// [`super::recompute`] in one transaction that reads first and takes the
/// write lock at its first write, as the sea-orm path does.
pub(super) fn recompute(connection: &Connection, rules: &Rules, as_of: DateTime<Utc>) -> rusqlite::Result<Report> {
    // The memory map and cache must be set outside a transaction.
    connection.execute_batch("PRAGMA mmap_size = 4294967296; PRAGMA cache_size = -65536")?;
    let txn = Transaction::new_unchecked(connection, TransactionBehavior::Deferred)?;
    let mut log = PhaseLog::new();
    let mut changed = HashSet::new();
    for (name, query) in change_queries(DbBackend::Sqlite, rules, as_of) {
        raw::for_each(&txn, &build(&query), |row| {
            changed.insert(row.get(0)?);
            Ok(())
        })?;
        log.found(name, changed.len());
    }
    let moved = raw::query(&txn, &build(&moved_query(rules, as_of)), |row| {
        let columns = (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
        Ok(Moved::new(columns, rules))
    })?;
    let (changed, distances) = sort_out(rules, changed, moved);
    log.phase("changed members found");
    let mut report = Report { recomputed: changed.len() as u64, ..Report::default() };
    // On a first run every ledger is empty until this run writes it, and
    // each member is written once: nothing to read back.
    let first_run: bool = txn.query_row("SELECT NOT EXISTS (SELECT 1 FROM loyalty_ledger)", [], |row| row.get(0))?;
    let set_aside = if first_run { set_aside_ledger_indexes(&txn)? } else { Vec::new() };
    for ids in changed.chunks(CHUNK) {
        let clock = Instant::now();
        let accounts = load_accounts(&txn, ids)?;
        let loaded = load_members(&txn, ids, as_of, !first_run)?;
        let outcomes = run_rules(rules, &accounts, ids, loaded, as_of);
        log.reading += clock.elapsed();
        count_all(&mut report, &outcomes, rules);
        let clock = Instant::now();
        for insert in outcome_writes(&accounts, &outcomes, as_of) {
            raw::execute_cached(&txn, &build(&insert))?;
        }
        log.writing += clock.elapsed();
    }
    txn.execute_batch(&set_aside.join(";"))?;
    log.members_done();
    for (customer_id, next_tier) in distances {
        raw::execute_cached(&txn, &build(&distance_update(customer_id, next_tier, as_of)))?;
    }
    log.phase("distances to the next tier written");
    let members: i64 = txn.query_row("SELECT count(*) FROM loyalty_accounts", [], |row| row.get(0))?;
    report.members = members as u64;
    txn.commit()?;
    log.phase("committed");
    Ok(report)
}

/// Drops the ledger's secondary indexes and returns the statements that
/// build them again, to run once every entry is in: a first run writes one
/// entry per past order, and keeping three indexes in step row by row cost
/// most of its time. Within the transaction, so a failed run leaves them as
/// they were. The unique index on `source_key` stays: the inserts rely on it
/// to skip known entries.
fn set_aside_ledger_indexes(txn: &Transaction<'_>) -> rusqlite::Result<Vec<String>> {
    let mut indexes = txn.prepare(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'loyalty_ledger' AND sql IS NOT NULL",
    )?;
    let indexes: Vec<(String, String)> =
        indexes.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<_, _>>()?;
    for (name, _) in &indexes {
        txn.execute_batch(&format!(r#"DROP INDEX "{}""#, name.replace('"', r#""""#)))?;
    }
    Ok(indexes.into_iter().map(|(_, create)| create).collect())
}

fn load_accounts(connection: &Connection, ids: &[i64]) -> rusqlite::Result<HashMap<i64, loyalty_account::Model>> {
    let accounts = raw::query(connection, &accounts_query(ids).build(DbBackend::Sqlite), |row| {
        Ok(loyalty_account::Model {
            customer_id: row.get(0)?,
            tier: row.get(1)?,
            tier_since: time(row, 2)?,
            joined_at: time(row, 3)?,
            updated_at: time(row, 4)?,
            points: row.get(5)?,
            points_expiring_30d: row.get(6)?,
            next_tier: row.get(7)?,
            points_to_next_tier: row.get(8)?,
            tier_direction: row.get(9)?,
        })
    })?;
    Ok(accounts.into_iter().map(|a| (a.customer_id, a)).collect())
}

/// Orders, ledgers (unless `with_ledger` is false) and birthdays of `ids`,
/// read as the sea-orm path reads them.
fn load_members(
    connection: &Connection,
    ids: &[i64],
    as_of: DateTime<Utc>,
    with_ledger: bool,
) -> rusqlite::Result<Loaded> {
    let orders = raw::query(connection, &orders_query(ids, as_of).build(DbBackend::Sqlite), |row| {
        Ok(order_from_row((row.get(0)?, row.get(1)?, time(row, 2)?, row.get(3)?, row.get(4)?)))
    })?;
    let mut ledger = Vec::new();
    if with_ledger {
        ledger = raw::query(connection, &ledger_query(ids).build(DbBackend::Sqlite), |row| {
            let (customer, kind, points, key) = (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            Ok(entry_from_row((customer, kind, points, key, time(row, 4)?, optional_time(row, 5)?, row.get(6)?)))
        })?;
    }
    let birthdays =
        raw::query(connection, &birthdays_query(ids).build(DbBackend::Sqlite), |row| Ok((row.get(0)?, date(row, 1)?)))?;
    Ok(Loaded { orders, ledger, birthdays: birthdays.into_iter().collect() })
}
