//! The engine seam of the paths that move millions of rows: planning,
//! scoring (with its history load and feature snapshots) and the loyalty
//! recompute are each written once, against [`Txn`]. What differs between
//! the engines lives here and nowhere else.
//!
//! On PostgreSQL a [`Txn`] is a sea-orm transaction. On SQLite it is a
//! pooled sqlx connection driven with rusqlite on the caller's thread: through
//! sqlx every row crosses a channel from the connection's worker thread and
//! costs about 1.7 µs, which was most of the time of these paths. Same file,
//! same pragmas, same pool. Statements are built by sea-query on both
//! engines and rows are decoded by column name ([`super::record`]).

use std::time::Instant;

use chrono::SecondsFormat;
use rusqlite::ToSql;
use rusqlite::types::{ToSqlOutput, Value as SqliteValue, ValueRef};
use sea_orm::sea_query::{
    Alias, DeleteStatement, Expr, ExprTrait, PostgresQueryBuilder, SelectStatement, SimpleExpr, SqliteQueryBuilder,
    Value,
};
use sea_orm::sqlx::Sqlite;
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::sqlite::LockedSqliteHandle;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, StatementBuilder};

use super::binary_copy::{self, Wire};
use super::bulk::{BulkInsert, BulkUpdate};
use super::postgres::{PgTxn, SetAside};
use super::record::{self, Column, Fields, Positions, Record};

/// How a transaction starts. Only SQLite acts on these; PostgreSQL's
/// defaults (row locks taken by each write, shared buffers) serve every path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Takes SQLite's write lock at the start. A transaction that reads and
    /// then writes otherwise fails at once (`SQLITE_BUSY`) if another
    /// connection wrote in between; one that only writes where nobody else
    /// does can leave it false and let readers run longer.
    pub write_lock_first: bool,
    /// SQLite page cache for this connection, MB (default 8). Upserts touch
    /// index pages all over the file and run much slower with less.
    pub cache_mb: Option<u32>,
    /// Reads the database file through a memory map: a segment scan touches
    /// most pages of three large tables, and read one `pread` at a time a
    /// third of its time went to the kernel.
    pub memory_map: bool,
}

/// A transaction on either engine. Dropped without [`Txn::commit`], it is
/// rolled back.
pub enum Txn {
    Sqlite(SqliteTxn),
    /// Boxed: PostgreSQL's transaction keeps its notes of the tables it
    /// wrote, several times the size of SQLite's.
    Postgres(Box<PgTxn>),
}

impl Txn {
    pub async fn begin(db: &DatabaseConnection, options: Options) -> Result<Txn, DbErr> {
        match db.get_database_backend() {
            DbBackend::Sqlite => SqliteTxn::begin(db, options).await.map(Txn::Sqlite),
            _ => PgTxn::begin(db).await.map(|txn| Txn::Postgres(Box::new(txn))),
        }
    }

    pub fn backend(&self) -> DbBackend {
        match self {
            Txn::Sqlite(_) => DbBackend::Sqlite,
            Txn::Postgres(_) => DbBackend::Postgres,
        }
    }

    pub async fn commit(self) -> Result<(), DbErr> {
        match self {
            Txn::Sqlite(mut txn) => txn.finish("COMMIT").await,
            Txn::Postgres(txn) => txn.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        match self {
            Txn::Sqlite(mut txn) => txn.finish("ROLLBACK").await,
            Txn::Postgres(txn) => txn.rollback().await,
        }
    }

    /// Runs a statement that returns no rows; how many rows it changed.
    pub async fn execute(&mut self, statement: &impl StatementBuilder) -> Result<u64, DbErr> {
        match self {
            Txn::Sqlite(txn) => {
                let statement = DbBackend::Sqlite.build(statement);
                txn.run(|c| Ok(c.execute(&statement.sql, rusqlite::params_from_iter(bound(&statement)))? as u64)).await
            }
            Txn::Postgres(txn) => Ok(txn.execute(statement).await?.rows_affected()),
        }
    }

    /// Runs statements in turn (on SQLite each distinct text prepared once).
    pub async fn execute_all<S: StatementBuilder + Send>(&mut self, statements: Vec<S>) -> Result<(), DbErr> {
        match self {
            Txn::Sqlite(txn) => {
                let statements: Vec<Statement> = statements.iter().map(|s| DbBackend::Sqlite.build(s)).collect();
                txn.run(|c| {
                    for statement in &statements {
                        c.prepare_cached(&statement.sql)?.execute(rusqlite::params_from_iter(bound(statement)))?;
                    }
                    Ok(())
                })
                .await
            }
            Txn::Postgres(txn) => {
                for statement in &statements {
                    txn.execute(statement).await?;
                }
                Ok(())
            }
        }
    }

    /// Every row of `select` as an `R`.
    pub async fn query<R: Record + Send>(&mut self, select: &SelectStatement) -> Result<Vec<R>, DbErr> {
        let mut all = Vec::new();
        self.for_each(select, |row: R| {
            all.push(row);
            Ok(())
        })
        .await?;
        Ok(all)
    }

    /// Calls `visit` with every row of `select`, read as an `R`, without
    /// holding the whole result.
    pub async fn for_each<R: Record>(
        &mut self,
        select: &SelectStatement,
        mut visit: impl FnMut(R) -> Result<(), DbErr> + Send,
    ) -> Result<(), DbErr> {
        match self {
            Txn::Sqlite(txn) => {
                let statement = DbBackend::Sqlite.build(select);
                txn.run(|c| read_rows(&mut c.prepare(&statement.sql)?, &statement, visit)).await
            }
            Txn::Postgres(txn) => {
                let mut positions = None;
                txn.for_each(DbBackend::Postgres.build(select), |row| {
                    if positions.is_none() {
                        positions = Some(Positions::find(R::COLUMNS, &row.column_names())?);
                    }
                    let positions = positions.as_ref().expect("found above");
                    visit(record::read(Fields::postgres::<R>(&row, positions))?)
                })
                .await
            }
        }
    }

    /// Calls `visit` with every row of `select`, as [`Txn::for_each`] does,
    /// for reads of many rows. On PostgreSQL they come through a binary
    /// `COPY` ([`super::copy_out`]) when every value bound can be written
    /// into the statement's text (`COPY` takes no parameters; see
    /// [`inlined`]) and every column read has a type the reader knows. It
    /// costs one more round trip first, to learn the types.
    pub async fn scan<R: Record>(
        &mut self,
        select: &SelectStatement,
        mut visit: impl FnMut(R) -> Result<(), DbErr> + Send,
    ) -> Result<(), DbErr> {
        if let Txn::Postgres(txn) = self
            && let Some(sql) = inlined(select)
        {
            let columns = txn.describe(&sql).await?;
            let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
            let positions = Positions::find(R::COLUMNS, &names)?;
            let wires: Vec<Option<Wire>> = columns.iter().map(|(_, wire)| *wire).collect();
            if positions.all().iter().all(|&position| wires[position].is_some()) {
                return txn
                    .copy_out(&sql, |rows, fields| {
                        visit(record::read(Fields::copied::<R>(rows, fields, &wires, &positions))?)
                    })
                    .await;
            }
        }
        self.for_each(select, visit).await
    }

    /// Every row of `select` as an `R`, read as [`Txn::scan`] reads them.
    pub async fn scan_all<R: Record + Send>(&mut self, select: &SelectStatement) -> Result<Vec<R>, DbErr> {
        let mut all = Vec::new();
        self.scan(select, |row: R| {
            all.push(row);
            Ok(())
        })
        .await?;
        Ok(all)
    }

    /// The values of a select of one column.
    pub async fn values<T: Column + Send>(&mut self, select: &SelectStatement) -> Result<Vec<T>, DbErr> {
        match self {
            Txn::Sqlite(txn) => {
                let statement = DbBackend::Sqlite.build(select);
                txn.run(|c| {
                    let mut prepared = c.prepare(&statement.sql)?;
                    let mut rows = prepared.query(rusqlite::params_from_iter(bound(&statement)))?;
                    let mut all = Vec::new();
                    while let Some(row) = rows.next()? {
                        all.push(T::from_sqlite(row.get_ref(0)?).map_err(|e| visit_error(DbErr::Custom(e)))?);
                    }
                    Ok(all)
                })
                .await
            }
            Txn::Postgres(txn) => {
                let mut all = Vec::new();
                txn.for_each(DbBackend::Postgres.build(select), |row| {
                    all.push(row.try_get_by_index(0)?);
                    Ok(())
                })
                .await?;
                Ok(all)
            }
        }
    }

    /// Writes `rows` rows through `insert`, the values of row `i` put into
    /// the buffer by `row(i, buffer)` in the order of the insert's columns.
    /// SQLite runs one prepared single-row statement per row (its fastest
    /// way in); PostgreSQL takes `COPY` (see [`BulkInsert`]).
    pub async fn insert_rows(
        &mut self,
        insert: &BulkInsert,
        rows: usize,
        mut row: impl FnMut(usize, &mut Vec<Value>) + Send,
    ) -> Result<(), DbErr> {
        let columns = insert.columns();
        match self {
            Txn::Sqlite(txn) => {
                let sql = insert.statement(vec![Value::BigInt(None); columns]).sql;
                txn.run(|c| {
                    let mut prepared = c.prepare(&sql)?;
                    let mut values = Vec::with_capacity(columns);
                    for i in 0..rows {
                        values.clear();
                        row(i, &mut values);
                        prepared.execute(rusqlite::params_from_iter(values.iter().map(Bound)))?;
                    }
                    Ok(())
                })
                .await
            }
            Txn::Postgres(txn) => insert.copy_rows(txn, rows, row).await.map(drop),
        }
    }

    /// [`Txn::insert_rows`] where `is_new(i)` says that row `i` is known not
    /// to be in the table: on PostgreSQL those are copied straight in
    /// (`BulkInsert::copy_rows_known_new`); SQLite's statement is the same
    /// for every row.
    pub async fn insert_rows_known_new(
        &mut self,
        insert: &BulkInsert,
        rows: usize,
        is_new: impl Fn(usize) -> bool,
        row: impl FnMut(usize, &mut Vec<Value>) + Send,
    ) -> Result<(), DbErr> {
        match self {
            Txn::Postgres(txn) => insert.copy_rows_known_new(txn, rows, is_new, row).await.map(drop),
            Txn::Sqlite(_) => self.insert_rows(insert, rows, row).await,
        }
    }

    /// Updates `rows` rows through `update`, the values of row `i` (its
    /// key, then the columns) put into the buffer by `row(i, buffer)`.
    pub async fn update_rows(
        &mut self,
        update: &BulkUpdate,
        rows: usize,
        mut row: impl FnMut(usize, &mut Vec<Value>) + Send,
    ) -> Result<(), DbErr> {
        match self {
            Txn::Sqlite(txn) => {
                let sql = update.sqlite_statement();
                let width = update.width();
                txn.run(|c| {
                    let mut prepared = c.prepare(&sql)?;
                    let mut values = Vec::with_capacity(width);
                    for i in 0..rows {
                        values.clear();
                        row(i, &mut values);
                        // The key comes first in the row and last in the statement.
                        values.rotate_left(1);
                        prepared.execute(rusqlite::params_from_iter(values.iter().map(Bound)))?;
                    }
                    Ok(())
                })
                .await
            }
            Txn::Postgres(txn) => update.copy_rows(txn, rows, row).await.map(drop),
        }
    }

    /// Updates the planner's statistics of a table this transaction
    /// rewrote, on PostgreSQL (see [`PgTxn::analyze`]); SQLite's planner
    /// does without.
    pub async fn analyze(&mut self, table: &str) -> Result<(), DbErr> {
        match self {
            Txn::Sqlite(_) => Ok(()),
            Txn::Postgres(txn) => txn.analyze(table).await,
        }
    }

    /// Deletes the rows a rewrite is about to replace, on PostgreSQL only.
    /// SQLite replaces each row in place through an upsert (see
    /// [`BulkInsert::rewrite`]): deleting a million rows first cost more
    /// than the writes there, and no stale row can remain as long as the
    /// rewrite covers every row `delete` would remove.
    pub async fn delete_before_rewrite(&mut self, delete: &DeleteStatement) -> Result<(), DbErr> {
        match self {
            Txn::Sqlite(_) => Ok(()),
            Txn::Postgres(txn) => txn.execute(delete).await.map(drop),
        }
    }

    /// Starts replacing every row of `table`: the rows are written into
    /// `next` ([`Rewrite::target`]), a new table of the same columns, which
    /// takes `table`'s place at [`Txn::finish_rewrites`] with its indexes.
    /// Rows written into an empty table cost a fraction of replacing rows in
    /// place on either engine (docs/benchmarks.md). `kept` selects whole
    /// rows of `table` to carry over. `table` must have no column drawing
    /// on a sequence, and no other table's foreign key may refer to it.
    pub async fn begin_rewrite(
        &mut self,
        table: &'static str,
        next: &'static str,
        kept: Option<SelectStatement>,
    ) -> Result<Rewrite, DbErr> {
        match self {
            Txn::Sqlite(txn) => {
                let kept = kept.map(|kept| kept.to_string(SqliteQueryBuilder));
                txn.run(|c| sqlite_rewrite_into(c, table, next, kept.as_deref())).await?;
            }
            Txn::Postgres(txn) => {
                txn.rewrite_into(table, next).await?;
                if let Some(kept) = kept {
                    let copy = format!(r#"INSERT INTO "{next}" {}"#, kept.to_string(PostgresQueryBuilder));
                    txn.execute_unprepared(&copy).await?;
                }
            }
        }
        Ok(Rewrite { table, target: next })
    }

    /// Ends rewrites begun by [`Txn::begin_rewrite`]: the rows written
    /// replace the tables'. Readers see the old rows until the commit; on
    /// PostgreSQL they wait from the swap to the commit. Every table is
    /// readied (indexes, statistics) before the first is swapped, and they
    /// are swapped in the order given, which must be the order in which
    /// readers lock them (the order of a query's `FROM` and joins): a
    /// reader holding one and waiting for another that this transaction
    /// already swapped would otherwise deadlock with it.
    pub async fn finish_rewrites(&mut self, rewrites: Vec<Rewrite>) -> Result<(), DbErr> {
        match self {
            Txn::Sqlite(txn) => {
                txn.run(|c| rewrites.iter().try_for_each(|r| sqlite_swap_in(c, r.table, r.target))).await
            }
            Txn::Postgres(txn) => {
                let mut swaps = Vec::with_capacity(rewrites.len());
                for rewrite in &rewrites {
                    swaps.push(txn.prepare_swap(rewrite.table, rewrite.target).await?);
                }
                for swap in swaps {
                    txn.swap_in(swap).await?;
                }
                Ok(())
            }
        }
    }

    /// Plans the rest of the transaction's statements without JIT
    /// compilation (PostgreSQL; nothing on SQLite), for a run of many small
    /// lookups: PostgreSQL compiles any statement whose estimated cost is
    /// high, and an overestimate of a lookup's rows made each lookup pay for
    /// a compilation, which at ten million customers cost more than the
    /// lookups themselves.
    pub async fn without_jit(&mut self) -> Result<(), DbErr> {
        self.planner_setting("jit = off").await
    }

    /// Whether the planner may join by hashing in the transaction's next
    /// statements (PostgreSQL; nothing on SQLite), for anti-joins of two
    /// large tables each indexed by the key: merging the two indexes
    /// beats the hash join the planner prices lower, whose table of
    /// millions of keys spills to disk. Allowed again means the server's
    /// own setting.
    pub async fn hash_joins(&mut self, allowed: bool) -> Result<(), DbErr> {
        self.planner_setting(if allowed { "enable_hashjoin = DEFAULT" } else { "enable_hashjoin = off" }).await
    }

    /// Lets the planner read the rest of the transaction's large results
    /// with parallel workers (PostgreSQL; nothing on SQLite). It prices
    /// handing each row from a worker to the leader so high that a join
    /// returning half a million rows runs in one process, slower than the
    /// parallel plan.
    pub async fn parallel_reads(&mut self) -> Result<(), DbErr> {
        self.planner_setting("parallel_tuple_cost = 0").await
    }

    /// Plans the rest of the transaction's reads through indexes and
    /// without JIT compilation (PostgreSQL; nothing on SQLite), for reads of
    /// one range of customers after another. The planner prices a range
    /// read through an index on (customer, time) as mostly random page
    /// reads, whatever the order the rows lie in, and would otherwise scan
    /// the whole table (in parallel) for each range.
    pub async fn read_through_indexes(&mut self) -> Result<(), DbErr> {
        self.without_jit().await?;
        self.planner_setting("enable_seqscan = off").await
    }

    /// `SET LOCAL setting` on PostgreSQL ([`set_local`]).
    async fn planner_setting(&mut self, setting: &str) -> Result<(), DbErr> {
        match self {
            Txn::Sqlite(_) => Ok(()),
            Txn::Postgres(txn) => set_local(&**txn, &[setting]).await,
        }
    }

    /// Drops the indexes of `table`, for a write of millions of rows, and
    /// returns what builds them again ([`Txn::restore_indexes`]): keeping
    /// them in step row by row cost most of such a write. Within the
    /// transaction, so a failure leaves them as they were. On SQLite unique
    /// indexes stay (inserts rely on them). On PostgreSQL only an empty
    /// table's go, its primary key too (rows copied straight in need none),
    /// and the table is then this transaction's until the commit
    /// ([`PgTxn::take_if_empty`]): dropping an index locks it against every
    /// reader.
    pub async fn set_aside_indexes(&mut self, table: &str) -> Result<SetAside, DbErr> {
        let txn = match self {
            Txn::Sqlite(txn) => txn,
            Txn::Postgres(txn) if txn.take_if_empty(table).await? => return txn.set_aside_indexes(table, &[]).await,
            Txn::Postgres(_) => return Ok(SetAside(Vec::new())),
        };
        let table = table.to_owned();
        let indexes: Vec<(String, String)> = txn
            .run(|c| {
                let mut listed = c.prepare(
                    "SELECT name, sql FROM sqlite_schema \
                     WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL AND sql NOT LIKE 'CREATE UNIQUE%'",
                )?;
                let rows = listed.query_map([&table], |row| Ok((row.get(0)?, row.get(1)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        txn.run(|c| {
            for (name, _) in &indexes {
                c.execute_batch(&format!(r#"DROP INDEX "{}""#, name.replace('"', r#""""#)))?;
            }
            Ok(())
        })
        .await?;
        Ok(SetAside(indexes.into_iter().map(|(_, create)| create).collect()))
    }

    /// Builds again the indexes [`Txn::set_aside_indexes`] dropped.
    pub async fn restore_indexes(&mut self, set_aside: SetAside) -> Result<(), DbErr> {
        match self {
            Txn::Sqlite(txn) if !set_aside.0.is_empty() => {
                txn.run(|c| Ok(c.execute_batch(&set_aside.0.join(";"))?)).await
            }
            Txn::Sqlite(_) => Ok(()),
            Txn::Postgres(txn) => txn.restore_indexes(set_aside).await,
        }
    }
}

// The SQL the paths write differently for each engine.

/// A timestamp column to read as whole seconds since the epoch
/// ([`EpochSeconds`](crate::db::record::EpochSeconds)). SQLite computes them:
/// far cheaper than parsing millions of stored texts in Rust. PostgreSQL
/// sends the timestamp as it is, a number of microseconds that decodes at
/// no cost, where its own `EXTRACT(EPOCH ...)` computes in `numeric`.
pub fn epoch_seconds(backend: DbBackend, column: &'static str) -> SimpleExpr {
    // Static SQL around a column name of this crate, never input.
    match backend {
        DbBackend::Sqlite => Expr::cust(format!("unixepoch({column})")),
        _ => Expr::cust(column),
    }
}

/// The month and day (`MM-DD`) of `customers.birthday`.
pub fn birthday_month_and_day(backend: DbBackend) -> SimpleExpr {
    match backend {
        DbBackend::Sqlite => Expr::cust(r#"strftime('%m-%d', "customers"."birthday")"#),
        _ => Expr::cust(r#"to_char("customers"."birthday", 'MM-DD')"#),
    }
}

/// `value` as a floating-point number.
pub fn as_double(backend: DbBackend, value: SimpleExpr) -> SimpleExpr {
    let real = if backend == DbBackend::Sqlite { "REAL" } else { "DOUBLE PRECISION" };
    Expr::expr(value).cast_as(Alias::new(real))
}

/// A table being rewritten whole (see [`Txn::begin_rewrite`]).
#[must_use = "the rewrite must be finished before the commit"]
pub struct Rewrite {
    table: &'static str,
    target: &'static str,
}

impl Rewrite {
    /// The table the rows are written into.
    pub fn target(&self) -> &'static str {
        self.target
    }
}

/// A pooled SQLite connection in a transaction begun by rusqlite.
pub struct SqliteTxn {
    pooled: PoolConnection<Sqlite>,
    /// A transaction is open: dropping the connection must not return it to
    /// the pool as it is.
    open: bool,
}

impl SqliteTxn {
    async fn begin(db: &DatabaseConnection, options: Options) -> Result<SqliteTxn, DbErr> {
        let pooled = db.get_sqlite_connection_pool().acquire().await.map_err(sqlx_error)?;
        let mut txn = SqliteTxn { pooled, open: false };
        // Pragmas first: SQLite ignores a new cache or map size inside a transaction.
        let mut pragmas = String::new();
        if options.memory_map {
            pragmas.push_str("PRAGMA mmap_size = 4294967296;");
        }
        if let Some(mb) = options.cache_mb {
            pragmas.push_str(&format!("PRAGMA cache_size = -{};", u64::from(mb) * 1024));
        }
        txn.run(|c| Ok(c.execute_batch(&pragmas)?)).await?;
        let begin = if options.write_lock_first { "BEGIN IMMEDIATE" } else { "BEGIN DEFERRED" };
        // Waiting for the write lock inside SQLite would block this thread,
        // and with it any task on it that holds the lock (two planners in one
        // task, say): the wait is a sleep of this task instead, as long as
        // the connection's busy timeout.
        let started = Instant::now();
        loop {
            let (began, timeout) = txn.run(|c| begin_without_waiting(c, begin)).await?;
            if began {
                break;
            }
            if started.elapsed() >= timeout {
                return Err(DbErr::Custom("SQLite: database is locked".into()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        txn.open = true;
        Ok(txn)
    }

    async fn finish(&mut self, sql: &str) -> Result<(), DbErr> {
        self.run(|c| Ok(c.execute_batch(sql)?)).await?;
        self.open = false;
        Ok(())
    }

    /// Runs `work` on the connection, blocking this thread (a worker of its
    /// own when the runtime has several).
    async fn run<T>(&mut self, work: impl FnOnce(&rusqlite::Connection) -> Result<T, Failed>) -> Result<T, DbErr> {
        let mut handle = self.pooled.lock_handle().await.map_err(sqlx_error)?;
        borrowed(&mut handle, |connection| blocking(|| work(connection)).map_err(sqlite_error))?
    }
}

/// Runs `work` with rusqlite on the connection of a locked sqlx handle.
fn borrowed<T>(handle: &mut LockedSqliteHandle<'_>, work: impl FnOnce(&rusqlite::Connection) -> T) -> Result<T, DbErr> {
    // SAFETY: the handle is locked for this scope, so sqlx's worker does
    // not touch the connection meanwhile; rusqlite does not close a
    // connection made from a handle, and is dropped before the lock is.
    let connection = unsafe { rusqlite::Connection::from_handle(handle.as_raw_handle().as_ptr()) }
        .map_err(|e| sqlite_error(e.into()))?;
    let result = work(&connection);
    drop(connection);
    Ok(result)
}

/// Calls `visit` with every row `prepared` returns for `statement`'s values, read as an `R`.
fn read_rows<R: Record>(
    prepared: &mut rusqlite::Statement<'_>,
    statement: &Statement,
    mut visit: impl FnMut(R) -> Result<(), DbErr>,
) -> Result<(), Failed> {
    let positions = Positions::find(R::COLUMNS, &prepared.column_names()).map_err(visit_error)?;
    let mut rows = prepared.query(rusqlite::params_from_iter(bound(statement)))?;
    while let Some(row) = rows.next()? {
        record::read(Fields::sqlite::<R>(row, &positions)).and_then(&mut visit).map_err(visit_error)?;
    }
    Ok(())
}

impl Drop for SqliteTxn {
    fn drop(&mut self) {
        // Closing the connection rolls the transaction back; returned to the
        // pool it would stay open under the next user.
        if self.open {
            self.pooled.close_on_drop();
        }
    }
}

/// Runs `work` with a pooled SQLite connection driven by rusqlite on this
/// thread and locked for the whole of `work`: for a long run of small
/// statements (the sender's group commits), where a [`Txn`]'s hand-off to
/// sqlx's worker thread per call costs more than the statement itself.
/// Blocks this thread throughout: call it from a thread of its own
/// (`spawn_blocking`), with `runtime` the runtime the pool belongs to.
pub fn with_sqlite_connection<T>(
    db: &DatabaseConnection,
    runtime: &tokio::runtime::Handle,
    work: impl FnOnce(&Direct<'_>) -> T,
) -> Result<T, DbErr> {
    let mut pooled = runtime.block_on(db.get_sqlite_connection_pool().acquire()).map_err(sqlx_error)?;
    let mut handle = runtime.block_on(pooled.lock_handle()).map_err(sqlx_error)?;
    borrowed(&mut handle, |connection| work(&Direct(connection)))
}

/// A SQLite connection this thread drives directly ([`with_sqlite_connection`]);
/// each statement runs on its own (autocommit), prepared once per text.
pub struct Direct<'c>(&'c rusqlite::Connection);

impl Direct<'_> {
    /// Runs a statement that returns no rows; how many rows it changed.
    pub fn execute(&self, statement: &impl StatementBuilder) -> Result<u64, DbErr> {
        let statement = DbBackend::Sqlite.build(statement);
        let changed = self
            .0
            .prepare_cached(&statement.sql)
            .and_then(|mut prepared| prepared.execute(rusqlite::params_from_iter(bound(&statement))));
        changed.map(|n| n as u64).map_err(|e| sqlite_error(e.into()))
    }

    /// Every row of a statement built for SQLite, as an `R`.
    pub fn query_statement<R: Record>(&self, statement: &Statement) -> Result<Vec<R>, DbErr> {
        let mut all = Vec::new();
        let mut prepared = self.0.prepare_cached(&statement.sql).map_err(|e| sqlite_error(e.into()))?;
        read_rows(&mut prepared, statement, |row: R| {
            all.push(row);
            Ok(())
        })
        .map_err(sqlite_error)?;
        Ok(all)
    }
}

/// [`Txn::begin_rewrite`] on SQLite: `next` made from `table`'s own
/// `CREATE TABLE` statement (its indexes come at the swap), with the `kept`
/// rows copied in.
fn sqlite_rewrite_into(c: &rusqlite::Connection, table: &str, next: &str, kept: Option<&str>) -> Result<(), Failed> {
    let create: String =
        c.query_row("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1", [table], |row| row.get(0))?;
    let header = format!(r#"CREATE TABLE "{table}""#);
    let Some(columns) = create.strip_prefix(&header) else {
        return Err(Failed::Row(DbErr::Custom(format!(
            "table {table} is not made the way patron makes tables: {create}"
        ))));
    };
    c.execute_batch(&format!(r#"DROP TABLE IF EXISTS "{next}"; CREATE TABLE "{next}"{columns}"#))?;
    if let Some(kept) = kept {
        c.execute_batch(&format!(r#"INSERT INTO "{next}" {kept}"#))?;
    }
    Ok(())
}

/// [`Txn::finish_rewrites`] on SQLite, for one table: `table` dropped, `next` renamed to
/// it, and `table`'s own indexes made again, under their names.
fn sqlite_swap_in(c: &rusqlite::Connection, table: &str, next: &str) -> Result<(), Failed> {
    let mut listed =
        c.prepare("SELECT sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL")?;
    let indexes: Vec<String> = listed.query_map([table], |row| row.get(0))?.collect::<Result<_, _>>()?;
    c.execute_batch(&format!(r#"DROP TABLE "{table}"; ALTER TABLE "{next}" RENAME TO "{table}""#))?;
    c.execute_batch(&indexes.join(";"))?;
    Ok(())
}

/// Runs `begin` unless another connection holds the write lock; whether it
/// began, and the connection's busy timeout.
fn begin_without_waiting(c: &rusqlite::Connection, begin: &str) -> Result<(bool, std::time::Duration), Failed> {
    let timeout: i64 = c.query_row("PRAGMA busy_timeout", [], |row| row.get(0))?;
    let timeout = std::time::Duration::from_millis(u64::try_from(timeout).unwrap_or(0));
    c.busy_timeout(std::time::Duration::ZERO)?;
    let began = c.execute_batch(begin);
    c.busy_timeout(timeout)?;
    match began {
        Ok(()) => Ok((true, timeout)),
        Err(error) if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => Ok((false, timeout)),
        Err(error) => Err(error.into()),
    }
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
struct Bound<'a>(&'a Value);

impl ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
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
            // A LIMIT or OFFSET; no count of rows comes near i64::MAX.
            Value::BigUnsigned(v) => integer(v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))),
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

/// What stops work on a SQLite connection: SQLite itself, or a row that
/// does not decode or that its visitor refuses.
enum Failed {
    Sqlite(rusqlite::Error),
    Row(DbErr),
}

impl From<rusqlite::Error> for Failed {
    fn from(error: rusqlite::Error) -> Self {
        Failed::Sqlite(error)
    }
}

/// `select` with its values written into its text, if every one is an
/// integer, a finite double, a boolean, a time or NULL: values whose
/// literal means what the bound value means. Text is never written in (its
/// quoting would be this crate's to get right), nor a single-precision
/// float (its literal would be compared as a double).
pub(crate) fn inlined(select: &SelectStatement) -> Option<String> {
    let (_, values) = select.build(PostgresQueryBuilder);
    let plain = |value: &Value| match value {
        _ if binary_copy::is_null(value) => true,
        Value::Double(Some(v)) => v.is_finite(),
        Value::Bool(_)
        | Value::TinyInt(_)
        | Value::SmallInt(_)
        | Value::Int(_)
        | Value::BigInt(_)
        | Value::TinyUnsigned(_)
        | Value::SmallUnsigned(_)
        | Value::Unsigned(_)
        | Value::BigUnsigned(_)
        | Value::ChronoDate(_)
        | Value::ChronoDateTime(_)
        | Value::ChronoDateTimeUtc(_) => true,
        _ => false,
    };
    values.iter().all(plain).then(|| select.to_string(PostgresQueryBuilder))
}

fn visit_error(error: DbErr) -> Failed {
    Failed::Row(error)
}

fn sqlite_error(error: Failed) -> DbErr {
    match error {
        Failed::Sqlite(error) => DbErr::Custom(format!("SQLite: {error}")),
        Failed::Row(error) => error,
    }
}

fn sqlx_error(error: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::SqlxError(error.into()))
}

/// `SET LOCAL` each of `settings` on PostgreSQL, in one round trip, until
/// the transaction `txn` ends; nothing on SQLite, whose planner has no such
/// settings. For the statements whose plan the planner gets wrong from its
/// statistics alone.
pub async fn set_local(txn: &impl ConnectionTrait, settings: &[&str]) -> Result<(), DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres || settings.is_empty() {
        return Ok(());
    }
    let statements: Vec<String> = settings.iter().map(|setting| format!("SET LOCAL {setting}")).collect();
    txn.execute_unprepared(&statements.join("; ")).await.map(drop)
}
