//! Planning on SQLite through its own statement loop ([`crate::db::raw`]):
//! the same statements, steps and rules as the sea-orm path in the parent
//! module, without sqlx's per-row cost on the segment's hundreds of
//! thousands of rows and the outbox's hundred thousand inserts.

use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect, QueryTrait, Statement, StatementBuilder};

use super::{
    Campaign, Candidate, Chosen, ExclusionQueries, Exclusions, Plan, Rules, finish_evaluation, log_written,
    record_step_counts, run_id_query, run_insert, segment,
};
use crate::db::entities::model;
use crate::db::raw;

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
    let active_model = model::Entity::find()
        .select_only()
        .column(model::Column::Id)
        .filter(model::Column::Active.eq(true))
        .build(DbBackend::Sqlite);
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
    let queries = ExclusionQueries::new(campaign, rules, at);
    let pairs =
        |select| raw::query(connection, &build(select), |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)));
    Ok(Exclusions {
        suppressed: pairs(&queries.suppressed)?.into_iter().map(|p| p.0).collect(),
        open_complaint: pairs(&queries.open_complaint)?.into_iter().map(|p| p.0).collect(),
        cooled_down: pairs(&queries.cooled_down)?.into_iter().map(|p| p.0).collect(),
        recent_messages: pairs(&queries.recent_messages)?.into_iter().collect(),
    })
}

/// One prepared INSERT run per row: SQLite's fastest way in.
fn insert_outbox(connection: &Connection, run_id: i64, chosen: &[Chosen], at: DateTime<Utc>) -> rusqlite::Result<()> {
    // As sqlx writes times, so that stored times compare alike.
    let now = Ord::max(Utc::now(), at).to_rfc3339_opts(SecondsFormat::AutoSi, false);
    let mut insert = connection.prepare(
        "INSERT INTO outbox (run_id, customer_id, state, variant, attempts, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
    )?;
    for row in chosen {
        let state = if row.control { "control" } else { "planned" };
        insert.execute(rusqlite::params![run_id, row.customer_id, state, row.variant, now])?;
    }
    Ok(())
}

fn build(statement: &impl StatementBuilder) -> Statement {
    DbBackend::Sqlite.build(statement)
}
