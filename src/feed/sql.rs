//! The sql feed: one query per table on the shop's own database
//! (PostgreSQL, MySQL/MariaDB or SQLite), each returning the columns of the
//! import file of its table plus `updated_at`, the time the row last
//! changed. `:since` in a query is bound to the feed's watermark for that
//! table: the newest `updated_at` landed so far, or the start of time on a
//! first run, which therefore loads everything.
//!
//! A run reads every query inside one read-only snapshot of the source and
//! lands every table in one transaction of patron's: each query's rows are
//! decoded into records of text cells, as an import file's would be, and
//! handed in batches through a bounded channel to the importer (its checks,
//! its upserts, its memory that does not grow with the rows), and the
//! watermark advances in the same transaction as the rows. Any failure, a
//! source that is down, a query it refuses, a connection lost mid-stream or
//! a row the importer refuses, rolls the whole run back: patron's data and
//! the watermarks stay as they were, and the next run tries again from the
//! same watermark.
//!
//! What `>` on the watermark misses: a row whose `updated_at` is older than
//! the watermark when it becomes visible, that is, one written by a
//! transaction that took its time and committed after a run had already
//! landed newer rows. A run sees such a row never. Where the shop's writes
//! can commit late, the query can look back a little itself
//! (`where updated_at > :since - interval '5 minutes'` on PostgreSQL): the
//! importer's upserts change nothing for a row landed before, so reading
//! rows twice costs only the reading.

mod cells;
mod copy_out;
mod query;
mod source;

use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{DatabaseConnection, DbBackend, TransactionTrait};

use super::{Landed, Outcome, state};
use crate::config::{FeedSettings, Loaded};
use crate::db::bulk::BulkTarget;
use crate::db::postgres::PgTxn;
use crate::import::{self, ImportError, Kind};
use source::{Source, StreamError};

/// Runs `feed` once: every query, landed in one transaction, or nothing.
pub async fn run(
    db: &DatabaseConnection,
    loaded: &Loaded,
    feed: &FeedSettings,
    now: DateTime<Utc>,
) -> anyhow::Result<Outcome> {
    let source =
        Source::open(feed).await.with_context(|| format!("feed {}: cannot read the source {}", feed.name, feed.url))?;
    // On PostgreSQL a transaction of our own, which can take COPY.
    let landed = match db.get_database_backend() {
        DbBackend::Postgres => land(PgTxn::begin(db).await?, source, loaded, feed, now).await,
        _ => land(db.begin().await?, source, loaded, feed, now).await,
    };
    landed.with_context(|| format!("feed {}: nothing of this run landed", feed.name))
}

/// Lands every query's rows in `txn` and commits, or rolls back on the
/// first error (the source is then dropped, which disconnects it).
async fn land(
    txn: impl BulkTarget,
    mut source: Source,
    loaded: &Loaded,
    feed: &FeedSettings,
    now: DateTime<Utc>,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    for (table, query) in feed.queries.in_dependency_order() {
        match land_query(&txn, source, loaded, feed, table, query, now).await {
            Ok((returned, landed)) => {
                source = returned;
                outcome.landed.push(landed);
            }
            Err(error) => {
                // The error says what went wrong; a failed rollback ends with
                // the transaction dropped, which rolls back too.
                let _ = txn.rollback().await;
                return Err(error);
            }
        }
    }
    source.close().await;
    txn.commit().await.context("committing")?;
    Ok(outcome)
}

/// Streams one query's rows into the importer and advances its watermark;
/// gives the source back for the next query.
async fn land_query(
    txn: &impl BulkTarget,
    source: Source,
    loaded: &Loaded,
    feed: &FeedSettings,
    table: &str,
    query: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<(Source, Landed)> {
    let started = Instant::now();
    let kind = kind_of(table);
    let since = match state::watermark(txn, &feed.name, table).await? {
        Some(text) => parse_watermark(&text).with_context(|| format!("the watermark of {table}"))?,
        None => start_of_time(),
    };
    let (sender, receiver) = import::records::channel();
    let input = import::Source::records(format!("feed {}, query {table}", feed.name), receiver);
    let options = import::Options::from_settings(loaded);
    // Reading the source is a task of its own, so that decoding its rows
    // runs beside the import's building of batches.
    let reading = tokio::spawn(source.stream(query.to_owned(), since, feed.batch_size, sender));
    let imported = import::import_into(txn, kind, input, &options).await;
    let (source, streamed) = reading.await.context("the source's reader failed")?;
    let streamed = match (streamed, imported.as_ref()) {
        (Ok(streamed), _) => streamed,
        (Err(StreamError::Source(error)), _) => return Err(error.context(format!("query {table}"))),
        (Err(StreamError::ImportGone), Ok(_)) => anyhow::bail!("query {table}: the import stopped reading early"),
        // The import stopped first: its error follows.
        (Err(StreamError::ImportGone), Err(_)) => Default::default(),
    };
    let report = imported.map_err(|error| refused(table, error))?;
    if let Some(newest) = streamed.newest.filter(|newest| *newest > since) {
        state::set_watermark(txn, &feed.name, table, &cells::time_text(newest), now).await?;
    }
    // Even a run that found nothing new is a load: patron is as fresh as the source.
    state::record_load(txn, &format!("feed {}", feed.name), table, report.rows, now).await?;
    tracing::info!(
        feed = %feed.name,
        table,
        rows = report.rows,
        written = report.written,
        seconds = started.elapsed().as_secs_f64(),
        "feed query landed"
    );
    let landed = Landed {
        table: table.to_owned(),
        rows: report.rows,
        written: report.written,
        source: format!("query {table}"),
    };
    Ok((source, landed))
}

fn kind_of(table: &str) -> Kind {
    match table {
        "customers" => Kind::Customers,
        "orders" => Kind::Orders,
        _ => Kind::Interactions,
    }
}

/// The watermark before a first run: older than any row of a shop (and
/// within the range of every source engine's time types).
fn start_of_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(1900, 1, 1, 0, 0, 0).single().expect("a valid time")
}

fn parse_watermark(text: &str) -> anyhow::Result<DateTime<Utc>> {
    let time = DateTime::parse_from_rfc3339(text).with_context(|| format!("`{text}` is not an RFC 3339 time"))?;
    Ok(time.with_timezone(&Utc))
}

/// The importer's refusal, in the feed's terms: its lines are the rows of
/// the query's result, and there is no file to fix.
/// The cells' values are left out: the daemon logs a failed run, and a log
/// carries no personal data (the column and the reason find the row).
fn refused(table: &str, error: ImportError) -> anyhow::Error {
    match error {
        ImportError::InvalidRows { errors, total, .. } => {
            let mut text = format!("query {table}: {total} problem(s) in its rows:");
            for error in &errors {
                let column = error.column.as_ref().map(|column| format!(", column `{column}`")).unwrap_or_default();
                text.push_str(&format!("\n  row {}{column}: {}", error.line, error.reason));
            }
            let more = total.saturating_sub(errors.len() as u64);
            if more > 0 {
                text.push_str(&format!("\n  ... and {more} more"));
            }
            anyhow::anyhow!(text)
        }
        ImportError::File { problem, .. } => {
            let problem =
                problem.strip_prefix("line 1: ").map_or(problem.clone(), |rest| format!("its columns: {rest}"));
            anyhow::anyhow!("query {table}: {problem}")
        }
        ImportError::Database(error) => anyhow::Error::new(error).context(format!("landing the rows of query {table}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watermark_reads_back_as_the_time_it_was_written_from() {
        let time = Utc.with_ymd_and_hms(2026, 3, 1, 9, 30, 0).unwrap() + chrono::Duration::microseconds(123_456);
        let text = cells::time_text(time);
        assert_eq!(text, "2026-03-01T09:30:00.123456Z");
        assert_eq!(parse_watermark(&text).unwrap(), time);
        assert!(parse_watermark("yesterday").is_err());
    }

    #[test]
    fn a_refused_header_is_the_querys_columns_and_row_problems_keep_their_lines() {
        let header = ImportError::File {
            file: "feed shop, query orders".into(),
            problem: "line 1: missing required column(s) `amount`; the header must name `order_id`".into(),
        };
        let text = refused("orders", header).to_string();
        assert_eq!(
            text,
            "query orders: its columns: missing required column(s) `amount`; the header must name `order_id`"
        );
        let rows = ImportError::InvalidRows {
            file: "feed shop, query orders".into(),
            errors: vec![import::RowError {
                line: 3,
                column: Some("amount".into()),
                value: Some("-1".into()),
                reason: "amount must not be negative".into(),
            }],
            total: 4,
        };
        let text = refused("orders", rows).to_string();
        assert!(text.starts_with("query orders: 4 problem(s) in its rows"), "{text}");
        assert!(text.contains("\n  row 3, column `amount`: amount must not be negative"), "{text}");
        assert!(!text.contains("-1"), "no cell values: {text}");
        assert!(text.ends_with("\n  ... and 3 more"), "{text}");
    }
}
