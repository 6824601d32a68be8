//! SQLite's own statement loop, for the few paths that move a million rows.
//!
//! Through sqlx every row crosses a channel from the connection's worker
//! thread and costs about 1.7 µs; planning and scoring read and write
//! millions of rows, and that transfer was most of their time. Here a pooled
//! sqlx connection is borrowed and driven with rusqlite on the caller's
//! thread: same file, same pragmas, same pool, no second connection setup.
//! Statements are still built by sea-query with bound values.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::ToSql;
use rusqlite::types::{ToSqlOutput, Value as SqliteValue, ValueRef};
use sea_orm::sea_query::Value;
use sea_orm::{DatabaseConnection, DbBackend, DbErr, Statement, StatementBuilder};

/// Runs `work` on a pooled connection of `db` (which must be SQLite),
/// blocking this thread (a worker of its own when the runtime has several).
/// `work` sees the connection as sqlx left it: no transaction open.
pub async fn with_connection<T>(
    db: &DatabaseConnection,
    work: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
) -> Result<T, DbErr> {
    let mut pooled = db.get_sqlite_connection_pool().acquire().await.map_err(sqlx_error)?;
    let mut handle = pooled.lock_handle().await.map_err(sqlx_error)?;
    // SAFETY: the handle is locked for this scope, so sqlx's worker does not
    // touch the connection meanwhile; rusqlite does not close a connection
    // made from a handle, and is dropped before the lock is released.
    let connection = unsafe { rusqlite::Connection::from_handle(handle.as_raw_handle().as_ptr()) }.map_err(error)?;
    let result = blocking(|| work(&connection)).map_err(error);
    drop(connection);
    result
}

/// Runs blocking work, telling a multi-threaded runtime to move its other
/// tasks off this thread meanwhile.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// A sea-query value bound by rusqlite, encoded the way sqlx-sqlite
/// encodes it (times as RFC 3339 text), so that comparisons with stored
/// values behave the same on both paths. Text is bound without a copy.
pub struct Bound<'a>(pub &'a Value);

impl ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use chrono::SecondsFormat;
        let integer = |v: Option<i64>| ToSqlOutput::Owned(v.map_or(SqliteValue::Null, SqliteValue::Integer));
        let text = |v: Option<String>| ToSqlOutput::Owned(v.map_or(SqliteValue::Null, SqliteValue::Text));
        Ok(match self.0 {
            Value::Bool(v) => integer(v.map(i64::from)),
            Value::TinyInt(v) => integer(v.map(i64::from)),
            Value::SmallInt(v) => integer(v.map(i64::from)),
            Value::Int(v) => integer(v.map(i64::from)),
            Value::BigInt(v) => integer(*v),
            Value::TinyUnsigned(v) => integer(v.map(i64::from)),
            Value::SmallUnsigned(v) => integer(v.map(i64::from)),
            Value::Unsigned(v) => integer(v.map(i64::from)),
            Value::Float(v) => ToSqlOutput::Owned(v.map_or(SqliteValue::Null, |v| SqliteValue::Real(v.into()))),
            Value::Double(v) => ToSqlOutput::Owned(v.map_or(SqliteValue::Null, SqliteValue::Real)),
            Value::String(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Bytes(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Value::String(None) | Value::Bytes(None) => ToSqlOutput::Owned(SqliteValue::Null),
            Value::Char(v) => text(v.map(String::from)),
            Value::Json(v) => text(v.as_ref().map(|v| v.to_string())),
            Value::ChronoDateTimeUtc(v) => text(v.map(|v| v.to_rfc3339_opts(SecondsFormat::AutoSi, false))),
            Value::ChronoDateTime(v) => text(v.map(|v| v.format("%F %T%.f").to_string())),
            Value::ChronoDate(v) => text(v.map(|v| v.format("%F").to_string())),
            other => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("no SQLite encoding for the bound value {other:?}").into(),
                ));
            }
        })
    }
}

/// The values of a statement, to bind.
fn bound(statement: &Statement) -> impl Iterator<Item = Bound<'_>> {
    statement.values.iter().flat_map(|values| values.0.iter().map(Bound))
}

/// A sea-query statement built for SQLite.
pub fn build(statement: &impl StatementBuilder) -> Statement {
    DbBackend::Sqlite.build(statement)
}

/// Runs a statement that returns no rows; how many rows it changed.
pub fn execute(connection: &rusqlite::Connection, statement: &Statement) -> rusqlite::Result<usize> {
    connection.execute(&statement.sql, rusqlite::params_from_iter(bound(statement)))
}

/// [`execute`] for a statement run many times with other values: prepared
/// once per connection (rusqlite's statement cache).
pub fn execute_cached(connection: &rusqlite::Connection, statement: &Statement) -> rusqlite::Result<usize> {
    connection.prepare_cached(&statement.sql)?.execute(rusqlite::params_from_iter(bound(statement)))
}

/// Every row of a query, each turned into a `T` by `read`.
pub fn query<T>(
    connection: &rusqlite::Connection,
    statement: &Statement,
    mut read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut all = Vec::new();
    for_each(connection, statement, |row| {
        all.push(read(row)?);
        Ok(())
    })?;
    Ok(all)
}

/// Calls `visit` with every row of a query.
pub fn for_each(
    connection: &rusqlite::Connection,
    statement: &Statement,
    mut visit: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut prepared = connection.prepare(&statement.sql)?;
    let mut rows = prepared.query(rusqlite::params_from_iter(bound(statement)))?;
    while let Some(row) = rows.next()? {
        visit(row)?;
    }
    Ok(())
}

/// A time column as sqlx writes it (RFC 3339 text; see [`Bound`]).
pub fn time(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    parse_time(index, row.get_ref(index)?.as_str()?)
}

/// [`time`] for a column that may be NULL.
pub fn optional_time(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    row.get_ref(index)?.as_str_or_null()?.map(|text| parse_time(index, text)).transpose()
}

/// A date column as sqlx writes it (`YYYY-MM-DD`).
pub fn date(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<NaiveDate> {
    parsed(index, NaiveDate::parse_from_str(row.get_ref(index)?.as_str()?, "%F"))
}

fn parse_time(index: usize, text: &str) -> rusqlite::Result<DateTime<Utc>> {
    parsed(index, DateTime::parse_from_rfc3339(text).map(|t| t.to_utc()))
}

fn parsed<T>(index: usize, result: Result<T, chrono::ParseError>) -> rusqlite::Result<T> {
    result.map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e.into()))
}

fn sqlx_error(error: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::SqlxError(error.into()))
}

fn error(error: rusqlite::Error) -> DbErr {
    DbErr::Custom(format!("SQLite: {error}"))
}
