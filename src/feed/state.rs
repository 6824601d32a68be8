//! What patron keeps of its feeds (migration 000016): each feed's last run,
//! its watermark per table, the files a folder feed imported, and a record
//! of every load of data for the staleness guard. Every function takes a
//! connection or an open transaction, so that a watermark advances in the
//! transaction that lands its rows.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, DbErr};

/// A feed's watermark for `table`: the newest `updated_at` landed.
pub async fn watermark(conn: &impl ConnectionTrait, feed: &str, table: &str) -> Result<Option<String>, DbErr> {
    let select = Query::select()
        .column("watermark")
        .from("feed_watermarks")
        .and_where(Expr::col("feed").eq(feed))
        .and_where(Expr::col("table_name").eq(table))
        .to_owned();
    match conn.query_one(&select).await? {
        Some(row) => Ok(Some(row.try_get("", "watermark")?)),
        None => Ok(None),
    }
}

pub async fn set_watermark(
    conn: &impl ConnectionTrait,
    feed: &str,
    table: &str,
    value: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let upsert = Query::insert()
        .into_table("feed_watermarks")
        .columns(["feed", "table_name", "watermark", "updated_at"])
        .values_panic([feed.into(), table.into(), value.into(), now.into()])
        .on_conflict(OnConflict::columns(["feed", "table_name"]).update_columns(["watermark", "updated_at"]).to_owned())
        .to_owned();
    conn.execute(&upsert).await.map(|_| ())
}

/// The file name and time of an earlier import of a file with `digest`.
pub async fn file_imported(
    conn: &impl ConnectionTrait,
    feed: &str,
    digest: &str,
) -> Result<Option<(String, DateTime<Utc>)>, DbErr> {
    let select = Query::select()
        .columns(["file_name", "imported_at"])
        .from("feed_files")
        .and_where(Expr::col("feed").eq(feed))
        .and_where(Expr::col("digest").eq(digest))
        .to_owned();
    match conn.query_one(&select).await? {
        Some(row) => Ok(Some((row.try_get("", "file_name")?, row.try_get("", "imported_at")?))),
        None => Ok(None),
    }
}

pub async fn remember_file(
    conn: &impl ConnectionTrait,
    feed: &str,
    digest: &str,
    file_name: &str,
    rows: u64,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let insert = Query::insert()
        .into_table("feed_files")
        .columns(["feed", "digest", "file_name", "rows", "imported_at"])
        .values_panic([feed.into(), digest.into(), file_name.into(), (rows as i64).into(), now.into()])
        .on_conflict(OnConflict::columns(["feed", "digest"]).do_nothing().to_owned())
        .to_owned();
    conn.execute(&insert).await.map(|_| ())
}

/// Records a successful load: `source` is "import" or "feed NAME".
pub async fn record_load(
    conn: &impl ConnectionTrait,
    source: &str,
    table: &str,
    rows: u64,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let insert = Query::insert()
        .into_table("data_loads")
        .columns(["source", "table_name", "rows", "loaded_at"])
        .values_panic([source.into(), table.into(), (rows as i64).into(), now.into()])
        .to_owned();
    conn.execute(&insert).await.map(|_| ())
}

/// The time of the newest successful import or feed landing.
pub async fn newest_load(conn: &impl ConnectionTrait) -> Result<Option<DateTime<Utc>>, DbErr> {
    let select =
        Query::select().column("loaded_at").from("data_loads").order_by("loaded_at", Order::Desc).limit(1).to_owned();
    match conn.query_one(&select).await? {
        Some(row) => Ok(Some(row.try_get("", "loaded_at")?)),
        None => Ok(None),
    }
}

/// A feed's last run as recorded.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Recorded {
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Rows landed by the last successful run.
    pub last_rows: u64,
    /// Why the last run failed; empty after a success.
    pub last_error: Option<String>,
    /// Each table's watermark.
    pub watermarks: Vec<(String, String)>,
}

/// Records a run of `feed` at `now`: `Ok(rows landed)` or `Err(why)`.
pub async fn record_run(
    conn: &impl ConnectionTrait,
    feed: &str,
    now: DateTime<Utc>,
    result: Result<u64, &str>,
) -> Result<(), DbErr> {
    let (success, rows, error) = match result {
        Ok(rows) => (Some(now), rows as i64, None),
        Err(why) => (None, 0, Some(why.to_owned())),
    };
    let mut on_conflict = OnConflict::column("name");
    on_conflict.update_columns(["last_run_at", "last_error"]);
    if success.is_some() {
        on_conflict.update_columns(["last_success_at", "last_rows"]);
    }
    let upsert = Query::insert()
        .into_table("feeds")
        .columns(["name", "last_run_at", "last_success_at", "last_rows", "last_error"])
        .values_panic([feed.into(), now.into(), success.into(), rows.into(), error.into()])
        .on_conflict(on_conflict)
        .to_owned();
    conn.execute(&upsert).await.map(|_| ())
}

/// What is recorded of `feed`; the default if it never ran.
pub async fn recorded(conn: &impl ConnectionTrait, feed: &str) -> Result<Recorded, DbErr> {
    let select = Query::select()
        .columns(["last_run_at", "last_success_at", "last_rows", "last_error"])
        .from("feeds")
        .and_where(Expr::col("name").eq(feed))
        .to_owned();
    let mut recorded = match conn.query_one(&select).await? {
        Some(row) => Recorded {
            last_run_at: row.try_get("", "last_run_at")?,
            last_success_at: row.try_get("", "last_success_at")?,
            last_rows: u64::try_from(row.try_get::<i64>("", "last_rows")?).unwrap_or(0),
            last_error: row.try_get("", "last_error")?,
            watermarks: Vec::new(),
        },
        None => Recorded::default(),
    };
    let select = Query::select()
        .columns(["table_name", "watermark"])
        .from("feed_watermarks")
        .and_where(Expr::col("feed").eq(feed))
        .order_by("table_name", Order::Asc)
        .to_owned();
    for row in conn.query_all(&select).await? {
        recorded.watermarks.push((row.try_get("", "table_name")?, row.try_get("", "watermark")?));
    }
    Ok(recorded)
}
