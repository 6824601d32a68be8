//! The source database of a sql feed: one connection, one read-only
//! snapshot for all of a run's queries, and each query's rows decoded into
//! records of text cells and handed to the importer.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use csv::ByteRecord;
use futures_util::TryStreamExt;
use secrecy::ExposeSecret;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Column, ConnectOptions, Connection, Executor, IntoArguments, SqlSafeStr, Statement};

use super::cells::{Engine, Queried, Value};
use super::query::Dialect;
use super::{copy_out, query};
use crate::config::FeedSettings;
use crate::import::records::{ReceiverGone, Sender};

/// How long connecting may take before the source counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the source may send nothing (the first row of a query that
/// sorts a large table included) before it counts as gone: a server that
/// stops answering without closing the connection would otherwise hold
/// the run, and patron's transaction, for good.
const SILENCE_LIMIT: Duration = Duration::from_secs(600);

/// The column that carries each row's time of change.
pub const WATERMARK_COLUMN: &str = "updated_at";

/// A connection to the source, inside its read-only snapshot.
pub enum Source {
    Postgres(PgConnection),
    MySql(MySqlConnection),
    Sqlite(SqliteConnection),
}

/// What streaming one query did.
#[derive(Debug, Default)]
pub struct Streamed {
    pub rows: u64,
    /// The newest `updated_at` among the rows.
    pub newest: Option<DateTime<Utc>>,
}

impl Streamed {
    /// Hands row number `self.rows`, filled into `record` and changed at
    /// `changed`, to the importer, sending the batch on every `batch_rows` rows.
    async fn hand_over(
        &mut self,
        sender: &mut Sender,
        record: &ByteRecord,
        changed: DateTime<Utc>,
        batch_rows: usize,
    ) -> Result<(), ReceiverGone> {
        // A clone is the exact size of the row.
        sender.push(record.clone());
        self.newest = self.newest.max(Some(changed));
        if self.rows.is_multiple_of(batch_rows as u64) {
            sender.send().await?;
        }
        Ok(())
    }
}

/// A row without its time of change, which the watermark needs.
fn no_time_of_change(number: u64) -> anyhow::Error {
    anyhow::anyhow!(
        "row {number}: `{WATERMARK_COLUMN}` is empty; every row needs the time it last changed \
         (coalesce it in the query)"
    )
}

/// Why streaming stopped.
pub enum StreamError {
    /// The importer stopped reading; its own error says why.
    ImportGone,
    /// The source failed: unreachable, a query it refused, the connection lost, a value it cannot read.
    Source(anyhow::Error),
}

impl From<ReceiverGone> for StreamError {
    fn from(_: ReceiverGone) -> Self {
        StreamError::ImportGone
    }
}

impl Source {
    /// Connects to the feed's source and opens the snapshot every query of
    /// the run reads, so that the orders of a run refer to customers the
    /// same run saw.
    pub async fn open(feed: &FeedSettings) -> anyhow::Result<Source> {
        let connecting = tokio::time::timeout(CONNECT_TIMEOUT, Source::connect(feed));
        let mut source = connecting.await.map_err(|_| anyhow::anyhow!("no answer within {CONNECT_TIMEOUT:?}"))??;
        source.begin().await.map_err(plain).context("cannot start a read-only snapshot")?;
        Ok(source)
    }

    /// Statements are not logged: a feed's queries take long by design,
    /// which sqlx would warn of as slow on every run.
    async fn connect(feed: &FeedSettings) -> anyhow::Result<Source> {
        let password = feed.password().map_err(anyhow::Error::msg)?;
        let password = password.as_ref().map(|p| p.expose_secret());
        let url = feed.url.as_str();
        if url.starts_with("postgres") {
            let mut options =
                PgConnectOptions::from_str(url)?.application_name("patron feed").disable_statement_logging();
            if let Some(password) = password {
                options = options.password(password);
            }
            Ok(Source::Postgres(options.connect().await.map_err(plain)?))
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            let mut options = MySqlConnectOptions::from_str(url)?.disable_statement_logging();
            if let Some(password) = password {
                options = options.password(password);
            }
            Ok(Source::MySql(options.connect().await.map_err(plain)?))
        } else {
            // Opened read-only: a feed never writes to the shop's database.
            let options = SqliteConnectOptions::from_str(url)?.read_only(true).disable_statement_logging();
            Ok(Source::Sqlite(options.connect().await.map_err(plain)?))
        }
    }

    async fn begin(&mut self) -> Result<(), sqlx::Error> {
        match self {
            Source::Postgres(conn) => {
                conn.execute(sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")).await?;
            }
            Source::MySql(conn) => {
                let begin = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
                             START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY";
                conn.execute(sqlx::raw_sql(begin)).await?;
            }
            Source::Sqlite(conn) => {
                conn.execute(sqlx::raw_sql("BEGIN")).await?;
            }
        }
        Ok(())
    }

    /// Ends the snapshot and disconnects. Nothing was written, so a
    /// failure here changes nothing and is not an error of the run.
    pub async fn close(self) {
        const END: &str = "ROLLBACK";
        let ended = match self {
            Source::Postgres(mut conn) => conn.execute(sqlx::raw_sql(END)).await.map(drop).and(conn.close().await),
            Source::MySql(mut conn) => conn.execute(sqlx::raw_sql(END)).await.map(drop).and(conn.close().await),
            Source::Sqlite(mut conn) => conn.execute(sqlx::raw_sql(END)).await.map(drop).and(conn.close().await),
        };
        if let Err(error) = ended {
            tracing::debug!("closing a feed's source: {error}");
        }
    }

    /// Runs `query` with `:since` bound to `since` and hands its rows to
    /// the importer through `sender`, `batch_rows` at a time: the query's
    /// columns but `updated_at` as the header, then a record per row. On an
    /// error the importer's reading fails too, so that the import stops.
    /// Owns the source while it runs (a task of its own) and gives it back.
    pub async fn stream(
        mut self,
        query: String,
        since: DateTime<Utc>,
        batch_rows: usize,
        mut sender: Sender,
    ) -> (Source, Result<Streamed, StreamError>) {
        let streamed = match &mut self {
            Source::Postgres(conn) => copy(conn, &query, since, batch_rows, &mut sender).await,
            Source::MySql(conn) => stream::<MySql>(conn, &query, since, batch_rows, &mut sender).await,
            Source::Sqlite(conn) => stream::<Sqlite>(conn, &query, since, batch_rows, &mut sender).await,
        };
        if let Err(StreamError::Source(error)) = &streamed {
            sender.fail(format!("{error:#}")).await;
        }
        (self, streamed)
    }
}

/// The columns of a query's result, and how each is read.
struct Layout<DB: Engine> {
    /// The columns written, with how each is read; `updated_at` is not one.
    cells: Vec<(usize, DB::Cell)>,
    names: Vec<String>,
    updated_at: (usize, DB::Cell),
    /// How many columns the query returns.
    width: usize,
}

impl<DB: Engine> Layout<DB> {
    fn of(columns: &[DB::Column]) -> anyhow::Result<Self> {
        let mut cells = Vec::with_capacity(columns.len());
        let mut names = Vec::with_capacity(columns.len());
        let mut updated_at = None;
        for (index, column) in columns.iter().enumerate() {
            let name = column.name();
            let cell = if name.eq_ignore_ascii_case(WATERMARK_COLUMN) {
                DB::time_cell(column.type_info()).map(|cell| updated_at = Some((index, cell)))
            } else {
                DB::cell(column.type_info()).map(|cell| {
                    cells.push((index, cell));
                    names.push(name.to_owned());
                })
            };
            cell.map_err(|problem| anyhow::anyhow!("column `{name}` {problem}"))?;
        }
        let updated_at = updated_at.ok_or_else(|| {
            anyhow::anyhow!(
                "the query returns no `{WATERMARK_COLUMN}` column; each row needs the time it last changed, \
                 which the feed keeps as its watermark"
            )
        })?;
        Ok(Layout { cells, names, updated_at, width: columns.len() })
    }

    fn header(&self) -> ByteRecord {
        self.names.iter().collect()
    }
}

impl<DB: Queried> Layout<DB> {
    /// Puts the cells of one row into `record` (each value written as text
    /// in `scratch` first); returns its time of change.
    fn fill(
        &self,
        row: &DB::Row,
        number: u64,
        record: &mut ByteRecord,
        scratch: &mut Vec<u8>,
    ) -> anyhow::Result<DateTime<Utc>> {
        let (index, cell) = self.updated_at;
        let changed = match DB::value(row, index, cell) {
            Ok(Value::Time(time)) => time,
            Ok(_) => return Err(no_time_of_change(number)),
            Err(error) => return Err(plain(error).context(format!("row {number}, column `{WATERMARK_COLUMN}`"))),
        };
        record.clear();
        for (position, &(index, cell)) in self.cells.iter().enumerate() {
            let value = DB::value(row, index, cell)
                .map_err(plain)
                .with_context(|| format!("row {number}, column `{}`", self.names[position]))?;
            scratch.clear();
            value.write(scratch);
            record.push_field(scratch);
        }
        Ok(changed)
    }
}

async fn stream<DB: Queried>(
    conn: &mut DB::Connection,
    query: &str,
    since: DateTime<Utc>,
    batch_rows: usize,
    sender: &mut Sender,
) -> Result<Streamed, StreamError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
{
    let failed = |error: anyhow::Error| StreamError::Source(error);
    let prepared = query::prepare(query, DB::DIALECT).map_err(|problem| failed(anyhow::anyhow!(problem)))?;
    let sql = AssertSqlSafe(prepared.sql).into_sql_str();
    let statement = silence_limited((&mut *conn).prepare(sql)).await.map_err(failed)?;
    let layout = Layout::<DB>::of(statement.columns()).map_err(failed)?;
    sender.push(layout.header());
    let mut bound = statement.query();
    for _ in 0..prepared.binds {
        bound = bound.bind(DB::since(since));
    }
    let mut rows = bound.fetch(&mut *conn);
    let mut streamed = Streamed::default();
    let (mut record, mut scratch) = (ByteRecord::new(), Vec::new());
    while let Some(row) = silence_limited(rows.try_next()).await.map_err(failed)? {
        streamed.rows += 1;
        let changed = layout.fill(&row, streamed.rows, &mut record, &mut scratch).map_err(failed)?;
        streamed.hand_over(sender, &record, changed, batch_rows).await?;
    }
    sender.send().await?;
    Ok(streamed)
}

impl Layout<Postgres> {
    /// [`Layout::fill`] for a row of binary COPY data, its fields in `rows`.
    fn fill_copied(
        &self,
        rows: &crate::db::copy_out::Rows,
        fields: &crate::db::copy_out::Fields,
        number: u64,
        record: &mut ByteRecord,
        scratch: &mut Vec<u8>,
    ) -> anyhow::Result<DateTime<Utc>> {
        if fields.len() != self.width {
            anyhow::bail!("row {number} has {} columns where the query has {}", fields.len(), self.width);
        }
        let field = |index: usize| fields[index].as_ref().map(|range| rows.field(range));
        let changed = match field(self.updated_at.0) {
            Some(bytes) => crate::db::copy_out::time(bytes)
                .map_err(|problem| anyhow::anyhow!("row {number}, column `{WATERMARK_COLUMN}`: the value {problem}"))?,
            None => return Err(no_time_of_change(number)),
        };
        record.clear();
        for (position, &(index, cell)) in self.cells.iter().enumerate() {
            scratch.clear();
            if let Some(bytes) = field(index) {
                copy_out::write(cell, bytes, scratch).map_err(|problem| {
                    anyhow::anyhow!("row {number}, column `{}`: the value {problem}", self.names[position])
                })?;
            }
            record.push_field(scratch);
        }
        Ok(changed)
    }
}

/// [`stream`] on PostgreSQL: the query is described once (its columns'
/// types), then its rows are read through a binary `COPY` (see `copy_out`),
/// with the watermark written for `:since` as a constant.
async fn copy(
    conn: &mut PgConnection,
    query: &str,
    since: DateTime<Utc>,
    batch_rows: usize,
    sender: &mut Sender,
) -> Result<Streamed, StreamError> {
    let failed = |error: anyhow::Error| StreamError::Source(error);
    let prepared = query::prepare(query, Dialect::Postgres).map_err(|problem| failed(anyhow::anyhow!(problem)))?;
    let statement =
        silence_limited((&mut *conn).prepare(AssertSqlSafe(prepared.sql).into_sql_str())).await.map_err(failed)?;
    let layout = Layout::<Postgres>::of(statement.columns()).map_err(failed)?;
    sender.push(layout.header());
    let copied = query::replace_since(query, Dialect::Postgres, &copy_out::since_literal(since))
        .map_err(|problem| failed(anyhow::anyhow!(problem)))?;
    let mut data =
        silence_limited(conn.copy_out_raw(&crate::db::copy_out::copy_statement(&copied))).await.map_err(failed)?;
    let (mut rows, mut fields) = (crate::db::copy_out::Rows::default(), Vec::new());
    let (mut record, mut scratch) = (ByteRecord::new(), Vec::new());
    let mut streamed = Streamed::default();
    while let Some(piece) = silence_limited(data.try_next()).await.map_err(failed)? {
        rows.push(&piece);
        while rows.next(&mut fields).map_err(|problem| failed(anyhow::anyhow!(problem)))? {
            streamed.rows += 1;
            let changed =
                layout.fill_copied(&rows, &fields, streamed.rows, &mut record, &mut scratch).map_err(failed)?;
            streamed.hand_over(sender, &record, changed, batch_rows).await?;
        }
    }
    if !rows.ended() {
        return Err(failed(anyhow::anyhow!("the source's rows ended before their end mark")));
    }
    sender.send().await?;
    Ok(streamed)
}

/// `step`, failing when the source says nothing for [`SILENCE_LIMIT`].
async fn silence_limited<T>(step: impl Future<Output = Result<T, sqlx::Error>>) -> anyhow::Result<T> {
    match tokio::time::timeout(SILENCE_LIMIT, step).await {
        Ok(result) => result.map_err(plain),
        Err(_) => anyhow::bail!("the source sent nothing for {} minutes", SILENCE_LIMIT.as_secs() / 60),
    }
}

/// The source's error in one line: what the server said, without the
/// chain of causes that repeats it (and, on PostgreSQL, names a line of
/// the server's own code).
fn plain(error: sqlx::Error) -> anyhow::Error {
    match error {
        sqlx::Error::Database(error) => anyhow::anyhow!("the source database says: {}", error.message()),
        sqlx::Error::ColumnDecode { source, .. } => anyhow::anyhow!("{source}"),
        other => anyhow::anyhow!("{other}"),
    }
}
