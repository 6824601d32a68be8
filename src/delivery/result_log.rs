//! The results log: on PostgreSQL the recorder's usual group commit appends
//! its results to `outbox_results` instead of updating their outbox rows,
//! and [`fold`] moves them into the outbox off the workers' path. The
//! workers wait for each commit before their next message's content (which
//! bounds the duplicates after a crash); an update of eight outbox rows
//! writes a new version of each and an entry in each of the table's
//! indexes whose condition it meets (four for a message sent), where an
//! insert here writes one entry per row. SQLite's
//! recorder keeps updating the outbox: its commits cost little.
//!
//! A result waits here for at most [`FOLD_EVERY`] while its sender runs,
//! and is folded when the pass ends; one left by a sender that died is
//! folded by the next pass. Until then its outbox row is `sending`, and no
//! claim takes it again (`outbox`'s due rows leave out a row with a result
//! here), so a crash between the append and the fold sends nothing twice.
//! A fold writes a result only to the row as it was claimed (same attempt,
//! still `sending`): it is the direct update's statement
//! (`outbox::update_from_results`) with the log as its source.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Expr, ExprTrait, IntoTableRef, PostgresQueryBuilder, Query, SimpleExpr, TableRef, UpdateStatement,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, TransactionSession, TransactionTrait};
use tokio::sync::oneshot;

use super::outbox::{self, Claimed, Fate};
use crate::db::engine;
use crate::db::entities::outbox::State;

/// How often a running sender folds its results into the outbox: how far
/// behind the outbox's states may be while it sends.
pub const FOLD_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The columns of a result ([`outbox::RESULT_COLUMNS`]) and then the moment it was recorded.
fn columns() -> impl Iterator<Item = &'static str> {
    outbox::RESULT_COLUMNS.into_iter().chain(["recorded_at"])
}

/// Appends `results` when they are the usual group commit on PostgreSQL
/// (one statement, no refused recipient, whose suppression and feedback
/// event go with its result in one transaction). `false`: not appended, for
/// `outbox::record` to write.
pub async fn append(db: &DatabaseConnection, results: &[(Claimed, Fate)], now: DateTime<Utc>) -> Result<bool, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres || !outbox::fits_one_statement(results) {
        return Ok(false);
    }
    let mut insert = Query::insert();
    insert.into_table("outbox_results").columns(columns());
    for (row, fate) in results {
        let mut values = outbox::result_values(row, fate, now);
        values.push(now.into());
        insert.values_panic(values.into_iter().map(SimpleExpr::from));
    }
    db.execute(&insert).await?;
    Ok(true)
}

/// Moves the logged results into their outbox rows (a row no longer as
/// its sender claimed it keeps its state, and its result goes).
pub async fn fold<C: ConnectionTrait + TransactionTrait>(db: &C) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let any = Query::select().expr(Expr::val(1)).from("outbox_results").limit(1).to_owned();
    if db.query_one(&any).await?.is_none() {
        return Ok(());
    }
    let txn = db.begin().await?;
    match backend {
        DbBackend::Postgres => {
            by_primary_key(&txn).await?;
            txn.execute_unprepared(&postgres_fold()).await?;
        }
        // One writer: the update and the delete in one transaction see the same rows.
        _ => {
            txn.execute(&update_from("outbox_results".into_table_ref().alias("r"), outbox::still_sending())).await?;
            txn.execute(&Query::delete().from_table("outbox_results").to_owned()).await?;
        }
    }
    txn.commit().await
}

/// The fold on PostgreSQL, in one statement: the rows it deletes are the
/// rows it writes. Rows another fold is moving are skipped, not waited for.
pub fn postgres_fold() -> String {
    let held = Expr::col(("outbox", "state")).equals(("r", CLAIMED_AS));
    let update = update_from("r".into_table_ref(), held).to_string(PostgresQueryBuilder);
    format!(
        r#"WITH "r" AS (DELETE FROM "outbox_results" WHERE "outbox_id" IN
             (SELECT "outbox_id" FROM "outbox_results" FOR UPDATE SKIP LOCKED)
             RETURNING *, '{sending}' AS "{CLAIMED_AS}") {update}"#,
        sending = State::Sending.as_str()
    )
}

/// The state a logged result's row was claimed in, a column of the fold's
/// results: compared with the outbox row's, it is a condition of the join,
/// which the planner does not price from the outbox's statistics alone.
/// Statistics taken while nothing was sending say that no row is
/// `sending`; a constant would then make the planner expect one outbox row
/// and read the whole outbox once for each result (seconds for a few
/// thousand results).
const CLAIMED_AS: &str = "claimed_as";

/// Makes the rest of the transaction's fold ([`postgres_fold`]) find each
/// result's outbox row by its primary key: a hash or merge join would read
/// the whole outbox (up to the last result's id) for each fold, however
/// few the results.
pub async fn by_primary_key(txn: &impl ConnectionTrait) -> Result<(), DbErr> {
    engine::set_local(txn, &["enable_hashjoin = off", "enable_mergejoin = off"]).await
}

/// The outbox's update from the results in `r` (`results`, named `r`) for
/// rows that are still `held` as claimed.
fn update_from(results: TableRef, held: SimpleExpr) -> UpdateStatement {
    let column = |name: &str| Expr::col(("r", name.to_owned()));
    outbox::update_from_results(results, column, Expr::col(("r", "recorded_at")), held)
}

/// Folds every [`FOLD_EVERY`] while a sender runs, and once more when
/// `done` comes (the pass's results are all recorded then). A failure on
/// the way is logged and tried again: the results are safe where they are;
/// the last fold's is returned.
pub async fn fold_until(db: DatabaseConnection, mut done: oneshot::Receiver<()>) -> Result<(), DbErr> {
    let mut ticks = tokio::time::interval(FOLD_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if let Err(error) = fold(&db).await {
                    tracing::warn!(%error, "moving the sender's results into the outbox");
                }
            }
            _ = &mut done => return fold(&db).await,
        }
    }
}
