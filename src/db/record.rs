//! Rows decoded by column name, the same way on both engines.
//!
//! A [`Record`] names the columns it reads; when a query starts, those names
//! are looked up once in the statement's result columns, and each row is
//! then read by position. A select whose columns are reordered still decodes
//! correctly, and one that lacks a column fails with the column's name.
//! Declare records with [`record!`](crate::db::record::record).

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::types::ValueRef;

use super::binary_copy::Wire;
use super::copy_out::{self, Rows};
use sea_orm::{DbErr, QueryResult, TryGetError, TryGetable};

/// A value of a result column, decodable from either engine.
pub trait Column: TryGetable + Sized {
    /// From SQLite's stored value (times as sqlx writes them: RFC 3339 text).
    fn from_sqlite(value: ValueRef<'_>) -> Result<Self, String>;

    /// From a field of PostgreSQL's binary COPY data (`None`: NULL) of a
    /// column of type `wire` ([`super::engine::Txn::scan`]).
    fn from_copied(value: Option<&[u8]>, wire: Wire) -> Result<Self, String>;
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
    /// Where each wanted column is, in the order wanted.
    pub fn all(&self) -> &[usize] {
        &self.0
    }

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
    /// A row of binary COPY data: its fields, and each result column's type.
    Copied {
        rows: &'r Rows,
        fields: &'r copy_out::Fields,
        wires: &'r [Option<Wire>],
    },
}

impl<'r> Fields<'r> {
    pub fn sqlite<R: Record>(row: &'r rusqlite::Row<'r>, positions: &'r Positions) -> Self {
        Fields { row: Row::Sqlite(row), columns: R::COLUMNS, positions, next: 0 }
    }

    pub fn postgres<R: Record>(row: &'r QueryResult, positions: &'r Positions) -> Self {
        Fields { row: Row::Postgres(row), columns: R::COLUMNS, positions, next: 0 }
    }

    /// A row of binary COPY data; `wires` are the result columns' types.
    pub fn copied<R: Record>(
        rows: &'r Rows,
        fields: &'r copy_out::Fields,
        wires: &'r [Option<Wire>],
        positions: &'r Positions,
    ) -> Self {
        Fields { row: Row::Copied { rows, fields, wires }, columns: R::COLUMNS, positions, next: 0 }
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
            Row::Copied { rows, fields, wires } => {
                let value =
                    fields.get(position).ok_or_else(|| DbErr::Custom(format!("column {name}: no such field")))?;
                let wire = wires[position].ok_or_else(|| DbErr::Custom(format!("column {name}: of no known type")))?;
                T::from_copied(value.as_ref().map(|range| rows.field(range)), wire)
                    .map_err(|e| DbErr::Custom(format!("column {name}: {e}")))
            }
        }
    }
}

/// Reads a whole record from `fields`.
pub fn read<R: Record>(mut fields: Fields<'_>) -> Result<R, DbErr> {
    R::read(&mut fields)
}

/// The types SQLite stores as they are, and how each reads from binary
/// COPY data: every wire type sqlx would decode it from, and more (an
/// integer of any width, a float of either).
macro_rules! sqlite_native {
    ($($ty:ty => |$bytes:ident, $wire:ident| $copied:expr),* $(,)?) => {$(
        impl Column for $ty {
            fn from_sqlite(value: ValueRef<'_>) -> Result<Self, String> {
                rusqlite::types::FromSql::column_result(value).map_err(|e| e.to_string())
            }

            fn from_copied(value: Option<&[u8]>, $wire: Wire) -> Result<Self, String> {
                let $bytes = value.ok_or("is NULL")?;
                $copied
            }
        }
    )*};
}
sqlite_native!(
    i64 => |bytes, wire| integer(bytes, wire),
    i32 => |bytes, wire| integer(bytes, wire)?.try_into().map_err(|_| "is out of range".to_string()),
    i16 => |bytes, wire| integer(bytes, wire)?.try_into().map_err(|_| "is out of range".to_string()),
    f64 => |bytes, wire| match wire {
        Wire::Float8 => Ok(f64::from_be_bytes(copy_out::array(bytes)?)),
        Wire::Float4 => Ok(f32::from_be_bytes(copy_out::array(bytes)?).into()),
        _ => Err(format!("is a {wire:?}, not a float")),
    },
    bool => |bytes, wire| match wire {
        Wire::Bool => Ok(bytes.first().is_some_and(|b| *b != 0)),
        _ => Err(format!("is a {wire:?}, not a boolean")),
    },
    String => |bytes, wire| match wire {
        Wire::Text => String::from_utf8(bytes.to_vec()).map_err(|_| "is not UTF-8 text".to_string()),
        _ => Err(format!("is a {wire:?}, not text")),
    },
);

/// An integer column of any width in binary COPY data.
fn integer(bytes: &[u8], wire: Wire) -> Result<i64, String> {
    match wire {
        Wire::Int8 => Ok(i64::from_be_bytes(copy_out::array(bytes)?)),
        Wire::Int4 => Ok(i32::from_be_bytes(copy_out::array(bytes)?).into()),
        Wire::Int2 => Ok(i16::from_be_bytes(copy_out::array(bytes)?).into()),
        _ => Err(format!("is a {wire:?}, not an integer")),
    }
}

/// A `timestamp` or `timestamptz` in binary COPY data.
fn time(bytes: &[u8], wire: Wire) -> Result<DateTime<Utc>, String> {
    match wire {
        Wire::Timestamp => copy_out::time(bytes),
        _ => Err(format!("is a {wire:?}, not a time")),
    }
}

impl Column for DateTime<Utc> {
    fn from_sqlite(value: ValueRef<'_>) -> Result<Self, String> {
        let text = value.as_str().map_err(|e| e.to_string())?;
        DateTime::parse_from_rfc3339(text).map(|t| t.to_utc()).map_err(|e| format!("{e}: {text:?}"))
    }

    fn from_copied(value: Option<&[u8]>, wire: Wire) -> Result<Self, String> {
        time(value.ok_or("is NULL")?, wire)
    }
}

/// A time in whole seconds since 1970: from SQLite, the integer that
/// `unixepoch()` computed; from PostgreSQL, the timestamp itself (see
/// [`epoch_seconds`](crate::db::engine::epoch_seconds)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSeconds(pub i64);

impl Column for EpochSeconds {
    fn from_sqlite(value: ValueRef<'_>) -> Result<Self, String> {
        i64::from_sqlite(value).map(EpochSeconds)
    }

    fn from_copied(value: Option<&[u8]>, wire: Wire) -> Result<Self, String> {
        time(value.ok_or("is NULL")?, wire).map(|at| EpochSeconds(at.timestamp()))
    }
}

impl TryGetable for EpochSeconds {
    fn try_get_by<I: sea_orm::ColIdx>(res: &QueryResult, index: I) -> Result<Self, TryGetError> {
        // `timestamp` rounds down, as the `FLOOR(EXTRACT(EPOCH ...))` it replaces did.
        DateTime::<Utc>::try_get_by(res, index).map(|at| EpochSeconds(at.timestamp()))
    }
}

impl Column for NaiveDate {
    fn from_sqlite(value: ValueRef<'_>) -> Result<Self, String> {
        let text = value.as_str().map_err(|e| e.to_string())?;
        NaiveDate::parse_from_str(text, "%F").map_err(|e| format!("{e}: {text:?}"))
    }

    fn from_copied(value: Option<&[u8]>, wire: Wire) -> Result<Self, String> {
        match wire {
            Wire::Date => copy_out::date(value.ok_or("is NULL")?),
            _ => Err(format!("is a {wire:?}, not a date")),
        }
    }
}

impl<T: Column> Column for Option<T> {
    fn from_sqlite(value: ValueRef<'_>) -> Result<Self, String> {
        match value {
            ValueRef::Null => Ok(None),
            value => T::from_sqlite(value).map(Some),
        }
    }

    fn from_copied(value: Option<&[u8]>, wire: Wire) -> Result<Self, String> {
        value.map(|bytes| T::from_copied(Some(bytes), wire)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, NaiveDate, TimeZone, Utc};
    use sea_orm::sea_query::{Alias, ColumnDef, Expr, ExprTrait, Query, SelectStatement, Table};
    use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbErr};

    use super::{EpochSeconds, Record};
    use crate::db::engine::{Options, Txn, epoch_seconds, inlined};

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

    record! {
        /// A column of each type a record reads.
        #[derive(Debug, PartialEq)]
        struct Wide {
            small: i16,
            medium: i32,
            big: i64,
            double: Option<f64>,
            flag: bool,
            name: Option<String>,
            at: DateTime<Utc>,
            day: Option<NaiveDate>,
        }
    }

    record! {
        /// Columns of [`Wide`]'s table read as the widest integer and float.
        struct Widened {
            small: i64,
            medium: i64,
            single: f64,
        }
    }

    fn wide_rows() -> Vec<Wide> {
        let moon = Utc.with_ymd_and_hms(1969, 7, 20, 20, 17, 40).unwrap() + chrono::Duration::milliseconds(500);
        vec![
            Wide { small: -1, medium: -2, big: -3, double: None, flag: false, name: None, at: moon, day: None },
            Wide {
                small: 1,
                medium: 2,
                big: 3_000_000_000,
                double: Some(0.1),
                flag: true,
                name: Some("Zoë's".into()),
                at: Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(),
                day: NaiveDate::from_ymd_opt(2026, 3, 4),
            },
        ]
    }

    async fn create_wide(db: &DatabaseConnection, table: &str) {
        let create = Table::create()
            .table(Alias::new(table))
            .col(ColumnDef::new("small").small_integer())
            .col(ColumnDef::new("medium").integer())
            .col(ColumnDef::new("big").big_integer())
            .col(ColumnDef::new("single").float())
            .col(ColumnDef::new("double").double())
            .col(ColumnDef::new("flag").boolean())
            .col(ColumnDef::new("name").text())
            .col(ColumnDef::new("at").timestamp_with_time_zone())
            .col(ColumnDef::new("day").date())
            .to_owned();
        db.execute(&create).await.unwrap();
        let mut insert = Query::insert();
        let columns = Wide::COLUMNS.iter().chain(&["single"]).map(|c| Alias::new(*c));
        insert.into_table(Alias::new(table)).columns(columns);
        for row in wide_rows() {
            insert.values_panic([
                row.small.into(),
                row.medium.into(),
                row.big.into(),
                row.double.into(),
                row.flag.into(),
                row.name.into(),
                row.at.into(),
                row.day.into(),
                (f32::from(row.small) / 2.0).into(),
            ]);
        }
        let mut txn = Txn::begin(db, Options::default()).await.unwrap();
        txn.execute(&insert).await.unwrap();
        txn.commit().await.unwrap();
    }

    /// Every row of `select`, read by [`Txn::scan`].
    async fn scanned(db: &DatabaseConnection, select: &SelectStatement) -> Vec<Wide> {
        let mut txn = Txn::begin(db, Options::default()).await.unwrap();
        let rows = txn.scan_all(select).await.unwrap();
        txn.rollback().await.unwrap();
        rows
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scan_reads_every_type_as_a_query_does_whether_its_values_can_be_copied_or_not() {
        let dir = tempfile::tempdir().unwrap();
        for db in engines(dir.path()).await {
            let table = table_name();
            create_wide(&db, &table).await;
            let mut select = Query::select();
            select.from(Alias::new(&table)).columns(Wide::COLUMNS.iter().map(|c| Alias::new(*c)));
            select.order_by(Alias::new("big"), sea_orm::sea_query::Order::Asc);
            // Numbers and a time: copied on PostgreSQL.
            let copied = select
                .clone()
                .and_where(Expr::col(Alias::new("big")).gt(-10))
                .and_where(Expr::col(Alias::new("at")).lt(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()))
                .to_owned();
            // A text value: never written into a statement's text.
            let bound = select.clone().and_where(Expr::col(Alias::new("name")).eq("Zoë's")).to_owned();
            let backend = db.get_database_backend();
            assert!(inlined(&copied).is_some_and(|sql| sql.contains("-10")), "{backend:?}");
            assert_eq!(inlined(&bound), None);
            assert_eq!(inlined(&select.clone().and_where(Expr::col(Alias::new("single")).lt(1.5f32)).to_owned()), None);
            assert_eq!(scanned(&db, &copied).await, wide_rows(), "{backend:?}");
            assert_eq!(scanned(&db, &bound).await, wide_rows().split_off(1), "{backend:?}");
            let mut txn = Txn::begin(&db, Options::default()).await.unwrap();
            assert_eq!(txn.query::<Wide>(&copied).await.unwrap(), wide_rows(), "{backend:?}");
            // Copied, an integer or float of any width reads into the widest.
            let mut widened = Vec::new();
            let narrow = copied.clone().columns([Alias::new("single")]).to_owned();
            txn.scan(&narrow, |row: Widened| {
                widened.push((row.small, row.medium, row.single));
                Ok(())
            })
            .await
            .unwrap();
            assert_eq!(widened, vec![(-1, -2, -0.5), (1, 2, 0.5)], "{backend:?}");
            txn.rollback().await.unwrap();
            db.execute_unprepared(&format!("DROP TABLE {table}")).await.unwrap();
        }
    }

    record! {
        struct Seconds {
            at: EpochSeconds,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn epoch_seconds_are_the_whole_seconds_of_the_stored_time_on_both_engines() {
        let dir = tempfile::tempdir().unwrap();
        for db in engines(dir.path()).await {
            let table = table_name();
            create_with_one_row(&db, &table).await;
            let later = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap() + chrono::Duration::milliseconds(900);
            let update = Query::update().table(Alias::new(&table)).value(Alias::new("at"), later).to_owned();
            db.execute(&update).await.unwrap();
            let select = Query::select()
                .expr_as(epoch_seconds(db.get_database_backend(), "at"), Alias::new("at"))
                .from(Alias::new(&table))
                .to_owned();
            let mut txn = Txn::begin(&db, Options::default()).await.unwrap();
            let read: Vec<Seconds> = txn.query(&select).await.unwrap();
            txn.rollback().await.unwrap();
            let seconds: Vec<i64> = read.into_iter().map(|row| row.at.0).collect();
            assert_eq!(seconds, vec![later.timestamp()], "{:?}", db.get_database_backend());
            assert_eq!(later.timestamp(), 1_772_600_767);
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

    /// The planner settings of a ranged read hold for its transaction only:
    /// the pool's connection plans the next transaction's statements as
    /// the server's settings say.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_through_indexes_only_within_their_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::connect(format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display())).await.unwrap();
        let mut txn = Txn::begin(&db, Options::default()).await.unwrap();
        txn.read_through_indexes().await.unwrap();
        assert_eq!(txn.values::<i64>(&Query::select().expr(Expr::val(1)).to_owned()).await.unwrap(), [1]);
        txn.rollback().await.unwrap();

        let Some(url) = std::env::var("PATRON_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else { return };
        // One connection: every transaction below runs on the same one.
        let db = Database::connect(sea_orm::ConnectOptions::new(url).max_connections(1).to_owned()).await.unwrap();
        let settings = Query::select()
            .expr(Expr::cust("current_setting('enable_seqscan') || ' ' || current_setting('jit')"))
            .to_owned();
        let read = |db: &DatabaseConnection, through_indexes: bool| {
            let (db, settings) = (db.clone(), settings.clone());
            async move {
                let mut txn = Txn::begin(&db, Options::default()).await.unwrap();
                if through_indexes {
                    txn.read_through_indexes().await.unwrap();
                }
                let read = txn.values::<String>(&settings).await.unwrap();
                // Committed: a rollback would undo even a setting for the session.
                txn.commit().await.unwrap();
                read
            }
        };
        let before = read(&db, false).await;
        assert_eq!(read(&db, true).await, ["off off"]);
        assert_ne!(before, ["off off"], "the server's own settings differ");
        assert_eq!(read(&db, false).await, before);
    }
}
