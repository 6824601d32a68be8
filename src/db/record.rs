//! Rows decoded by column name, the same way on both engines.
//!
//! A [`Record`] names the columns it reads; when a query starts, those names
//! are looked up once in the statement's result columns, and each row is
//! then read by position. A select whose columns are reordered still decodes
//! correctly, and one that lacks a column fails with the column's name.
//! Declare records with [`record!`](crate::db::record::record).

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::types::ValueRef;
use sea_orm::{DbErr, QueryResult, TryGetable};

/// A value of a result column, decodable from either engine.
pub trait Column: TryGetable + Sized {
    /// From SQLite's stored value (times as sqlx writes them: RFC 3339 text).
    fn from_sqlite(value: ValueRef<'_>) -> Result<Self, String>;
}

/// A type read from rows by column name.
pub trait Record: Sized {
    /// The columns read, in the order [`Record::read`] reads them.
    const COLUMNS: &'static [&'static str];
    fn read(fields: &mut Fields<'_>) -> Result<Self, DbErr>;
}

/// Declares a struct whose fields are read from the result columns of the
/// same names (see [`Record`]).
macro_rules! record {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])* $vis struct $name { $($(#[$fmeta])* $fvis $field: $ty),* }

        impl $crate::db::record::Record for $name {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];
            fn read(fields: &mut $crate::db::record::Fields<'_>) -> Result<Self, sea_orm::DbErr> {
                // Fields are evaluated in the order written, which is the order of COLUMNS.
                Ok($name { $($field: fields.column()?),* })
            }
        }
    };
    // A struct declared elsewhere (an entity's model): every field read from the column of its name.
    (impl $type:ty { $($field:ident),* $(,)? }) => {
        impl $crate::db::record::Record for $type {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];
            fn read(fields: &mut $crate::db::record::Fields<'_>) -> Result<Self, sea_orm::DbErr> {
                Ok(Self { $($field: fields.column()?),* })
            }
        }
    };
}
pub(crate) use record;

/// Where each of a record's columns is in a statement's results.
#[derive(Debug)]
pub struct Positions(Vec<usize>);

impl Positions {
    /// Finds `wanted` among `result_columns`, or names the first missing one.
    pub fn find<S: AsRef<str>>(wanted: &[&str], result_columns: &[S]) -> Result<Self, DbErr> {
        let position = |name: &&str| {
            result_columns.iter().position(|c| c.as_ref() == *name).ok_or_else(|| {
                let have: Vec<&str> = result_columns.iter().map(AsRef::as_ref).collect();
                DbErr::Custom(format!("the query returns no column {name} (it returns {})", have.join(", ")))
            })
        };
        wanted.iter().map(position).collect::<Result<_, _>>().map(Positions)
    }
}

/// One row, as a [`Record`] reads it: its columns in the record's order.
pub struct Fields<'r> {
    row: Row<'r>,
    columns: &'static [&'static str],
    positions: &'r Positions,
    next: usize,
}

enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r QueryResult),
}

impl<'r> Fields<'r> {
    pub fn sqlite<R: Record>(row: &'r rusqlite::Row<'r>, positions: &'r Positions) -> Self {
        Fields { row: Row::Sqlite(row), columns: R::COLUMNS, positions, next: 0 }
    }

    pub fn postgres<R: Record>(row: &'r QueryResult, positions: &'r Positions) -> Self {
        Fields { row: Row::Postgres(row), columns: R::COLUMNS, positions, next: 0 }
    }

    /// The record's next column, in the order of its `COLUMNS`.
    pub fn column<T: Column>(&mut self) -> Result<T, DbErr> {
        let (name, position) = (self.columns[self.next], self.positions.0[self.next]);
        self.next += 1;
        match &self.row {
            Row::Sqlite(row) => {
                let value = row.get_ref(position).map_err(|e| DbErr::Custom(format!("column {name}: {e}")))?;
                T::from_sqlite(value).map_err(|e| DbErr::Custom(format!("column {name}: {e}")))
            }
            Row::Postgres(row) => row.try_get_by_index(position),
        }
    }
}

/// Reads a whole record from `fields`.
pub fn read<R: Record>(mut fields: Fields<'_>) -> Result<R, DbErr> {
    R::read(&mut fields)
}

macro_rules! sqlite_native {
    ($($ty:ty),*) => {$(
        impl Column for $ty {
            fn from_sqlite(value: ValueRef<'_>) -> Result<Self, String> {
                rusqlite::types::FromSql::column_result(value).map_err(|e| e.to_string())
            }
        }
    )*};
}
sqlite_native!(i64, i32, i16, f64, bool, String);

impl Column for DateTime<Utc> {
    fn from_sqlite(value: ValueRef<'_>) -> Result<Self, String> {
        let text = value.as_str().map_err(|e| e.to_string())?;
        DateTime::parse_from_rfc3339(text).map(|t| t.to_utc()).map_err(|e| format!("{e}: {text:?}"))
    }
}

impl Column for NaiveDate {
    fn from_sqlite(value: ValueRef<'_>) -> Result<Self, String> {
        let text = value.as_str().map_err(|e| e.to_string())?;
        NaiveDate::parse_from_str(text, "%F").map_err(|e| format!("{e}: {text:?}"))
    }
}

impl<T: Column> Column for Option<T> {
    fn from_sqlite(value: ValueRef<'_>) -> Result<Self, String> {
        match value {
            ValueRef::Null => Ok(None),
            value => T::from_sqlite(value).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};
    use sea_orm::sea_query::{Alias, ColumnDef, Expr, ExprTrait, Query, Table};
    use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbErr};

    use crate::db::engine::{Options, Txn};

    record! {
        #[derive(Debug, PartialEq)]
        struct Sample {
            id: i64,
            name: String,
            at: DateTime<Utc>,
            score: Option<f64>,
        }
    }

    /// SQLite in a temporary file, and PostgreSQL when `PATRON_TEST_POSTGRES_URL` is set.
    async fn engines(dir: &std::path::Path) -> Vec<DatabaseConnection> {
        let mut all =
            vec![Database::connect(format!("sqlite://{}?mode=rwc", dir.join("t.db").display())).await.unwrap()];
        if let Some(url) = std::env::var("PATRON_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) {
            all.push(Database::connect(url).await.unwrap());
        }
        all
    }

    /// A table of its own per run, so that concurrent runs on one PostgreSQL do not meet.
    fn table_name() -> String {
        format!("record_test_{}_{}", std::process::id(), Utc::now().timestamp_subsec_nanos())
    }

    async fn create_with_one_row(db: &DatabaseConnection, table: &str) -> Sample {
        let create = Table::create()
            .table(Alias::new(table))
            .col(ColumnDef::new("id").big_integer())
            .col(ColumnDef::new("name").text())
            .col(ColumnDef::new("at").timestamp_with_time_zone())
            .col(ColumnDef::new("score").double())
            .to_owned();
        db.execute(&create).await.unwrap();
        let sample =
            Sample { id: 7, name: "seven".into(), at: Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(), score: None };
        let insert = Query::insert()
            .into_table(Alias::new(table))
            .columns(["id", "name", "at", "score"])
            .values_panic([sample.id.into(), sample.name.clone().into(), sample.at.into(), sample.score.into()])
            .to_owned();
        let mut txn = Txn::begin(db, Options::default()).await.unwrap();
        txn.execute(&insert).await.unwrap();
        txn.commit().await.unwrap();
        sample
    }

    async fn select(db: &DatabaseConnection, table: &str, columns: &[&str]) -> Result<Vec<Sample>, DbErr> {
        let mut select = Query::select();
        select.from(Alias::new(table));
        for column in columns {
            select.expr_as(Expr::col(Alias::new(*column)), Alias::new(*column));
        }
        let mut txn = Txn::begin(db, Options::default()).await?;
        let rows = txn.query::<Sample>(&select).await;
        txn.rollback().await?;
        rows
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_reads_its_columns_by_name_in_any_order_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        for db in engines(dir.path()).await {
            let table = table_name();
            let sample = create_with_one_row(&db, &table).await;
            let in_order = select(&db, &table, &["id", "name", "at", "score"]).await.unwrap();
            let reordered = select(&db, &table, &["score", "at", "id", "name"]).await.unwrap();
            assert_eq!(in_order, vec![sample]);
            assert_eq!(reordered, in_order, "{:?}", db.get_database_backend());
            let missing = select(&db, &table, &["id", "at", "score"]).await.unwrap_err().to_string();
            assert!(missing.contains("no column name (it returns id, at, score)"), "{missing}");
            db.execute_unprepared(&format!("DROP TABLE {table}")).await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_dropped_without_a_commit_leaves_nothing_and_its_connection_is_not_reused_open() {
        let dir = tempfile::tempdir().unwrap();
        for db in engines(dir.path()).await {
            let table = table_name();
            create_with_one_row(&db, &table).await;
            let mut txn = Txn::begin(&db, Options { write_lock_first: true, ..Options::default() }).await.unwrap();
            let delete = Query::delete().from_table(Alias::new(&table)).to_owned();
            assert_eq!(txn.execute(&delete).await.unwrap(), 1);
            drop(txn);
            // A new transaction that writes: on SQLite it would wait forever
            // (busy) if the dropped one were still open on a pooled connection.
            let mut txn = Txn::begin(&db, Options { write_lock_first: true, ..Options::default() }).await.unwrap();
            let count = Query::select().expr(Expr::col(Alias::new("id")).count()).from(Alias::new(&table)).to_owned();
            assert_eq!(txn.values::<i64>(&count).await.unwrap(), vec![1], "{:?}", db.get_database_backend());
            txn.commit().await.unwrap();
            db.execute_unprepared(&format!("DROP TABLE {table}")).await.unwrap();
        }
    }
}
