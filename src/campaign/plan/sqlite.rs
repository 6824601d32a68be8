//! Planning on SQLite through its own statement loop ([`crate::db::raw`]):
//! the same statements, steps and rules as the sea-orm path in the parent
//! module, without sqlx's per-row cost on the segment's hundreds of
//! thousands of rows and the outbox's hundred thousand inserts.

use std::time::Instant;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use sea_orm::{DbBackend, QuerySelect, QueryTrait};

use super::{
    Campaign, Candidate, Chosen, Exclusions, OUTBOX_COLUMNS, Plan, Rules, exclusion_queries, finish_evaluation,
    log_written, outbox_row, record_step_counts, run_id_query, run_insert, segment,
};
use crate::db::bulk::{BulkInsert, repeated_time};
use crate::db::entities::model;
use crate::db::raw::{self, build};
use crate::model::registry;

/// Works out the plan in a read transaction, writing nothing.
pub fn evaluate(
    connection: &Connection,
    campaign: &Campaign,
    rules: &Rules,
    at: DateTime<Utc>,
) -> rusqlite::Result<Plan> {
    let txn = Transaction::new_unchecked(connection, TransactionBehavior::Deferred)?;
    evaluate_in(&txn, campaign, rules, at)
}

/// Plans the run in one write transaction: the run id and plan, or `None`
/// when (campaign, at) was planned before.
pub fn plan_run(
    connection: &Connection,
    campaign: &Campaign,
    rules: &Rules,
    at: DateTime<Utc>,
) -> rusqlite::Result<Option<(i64, Plan)>> {
    // The memory map and cache must be set outside a transaction.
    connection.execute_batch("PRAGMA mmap_size = 4294967296; PRAGMA cache_size = -65536")?;
    let txn = Transaction::new_unchecked(connection, TransactionBehavior::Immediate)?;
    if raw::execute(&txn, &build(&run_insert(campaign, at, "planned", None)))? == 0 {
        return Ok(None);
    }
    let run_id: i64 = raw::query(&txn, &build(&run_id_query(campaign, at)), |row| row.get(0))?[0];
    let plan = evaluate_in(&txn, campaign, rules, at)?;
    let started = Instant::now();
    insert_outbox(&txn, run_id, &plan.chosen, at)?;
    let inserted = started.elapsed();
    raw::execute(&txn, &build(&record_step_counts(run_id, &plan)))?;
    txn.commit()?;
    log_written(campaign, run_id, &plan, started, inserted);
    Ok(Some((run_id, plan)))
}

fn evaluate_in(
    connection: &Connection,
    campaign: &Campaign,
    rules: &Rules,
    at: DateTime<Utc>,
) -> rusqlite::Result<Plan> {
    let active_model = registry::find_active().select_only().column(model::Column::Id).build(DbBackend::Sqlite);
    let model_id = raw::query(connection, &active_model, |row| row.get::<_, i64>(0))?.first().copied();
    let started = Instant::now();
    let exclusions = load_exclusions(connection, campaign, rules, at)?;
    let exclusions_loaded = started.elapsed();
    let audience = raw::query(connection, &build(&segment(campaign, at, DbBackend::Sqlite, model_id)), |row| {
        Ok(Candidate { customer_id: row.get(0)?, sort: row.get(1)?, consent: row.get(2)? })
    })?;
    let segment_read = started.elapsed();
    Ok(finish_evaluation(campaign, rules, &exclusions, audience, started, exclusions_loaded, segment_read))
}

fn load_exclusions(
    connection: &Connection,
    campaign: &Campaign,
    rules: &Rules,
    at: DateTime<Utc>,
) -> rusqlite::Result<Exclusions> {
    let results = exclusion_queries(campaign, rules, at)
        .map(|select| raw::query(connection, &build(&select), |row| Ok((row.get(0)?, row.get(1)?))));
    let [a, b, c, d, e] = results;
    Ok(Exclusions::from_results([a?, b?, c?, d?, e?]))
}

/// One prepared INSERT run per row: SQLite's fastest way in.
fn insert_outbox(connection: &Connection, run_id: i64, chosen: &[Chosen], at: DateTime<Utc>) -> rusqlite::Result<()> {
    let Some(first) = chosen.first() else { return Ok(()) };
    let now = repeated_time(DbBackend::Sqlite, Ord::max(Utc::now(), at));
    let one_row = BulkInsert::new(DbBackend::Sqlite, "outbox", OUTBOX_COLUMNS)
        .statement(outbox_row(run_id, first, &now).to_vec());
    let mut insert = connection.prepare(&one_row.sql)?;
    for row in chosen {
        insert.execute(rusqlite::params_from_iter(outbox_row(run_id, row, &now).iter().map(raw::Bound)))?;
    }
    Ok(())
}
