//! A PostgreSQL transaction on a pooled sqlx connection of its own.
//!
//! sea-orm's transaction hides its connection, and PostgreSQL's bulk
//! interface, `COPY`, needs it: this one runs its statements through sqlx
//! (sea-orm's own binding of sea-query values) and lends the connection to
//! [`PgTxn::copy_in`]. It implements sea-orm's [`ConnectionTrait`], so code
//! written for a `DatabaseTransaction` runs on it unchanged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::{Stream, StreamExt, TryStreamExt};
use sea_orm::sea_query::Value;
use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::{self, Postgres, Row, pool::PoolConnection};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Mutex;

use super::binary_copy::Wire;
use super::copy_out::{self, Rows};
use super::record::Column;

/// Bytes of `COPY` data sent per message: large enough that the messages
/// cost nothing, small enough that a bulk write holds one message's rows
/// in memory, not all of them.
pub const COPY_CHUNK: usize = 1 << 20;

pub struct PgTxn {
    connection: Mutex<PoolConnection<Postgres>>,
    /// A transaction is open: dropping the connection must not return it to
    /// the pool as it is.
    open: bool,
    /// The temporary tables made in this transaction (see `db::bulk`).
    temporary: std::sync::Mutex<HashSet<String>>,
    /// The column types of the tables copied into in binary (see `db::bulk`).
    column_types: std::sync::Mutex<HashMap<String, Arc<HashMap<String, String>>>>,
    /// The tables whose batches' external ids proved scattered (see
    /// [`PgTxn::rows_by_external_id`]).
    scattered: std::sync::Mutex<HashSet<String>>,
    /// The tables made or truncated in this transaction: rows copied
    /// straight into them are written frozen ([`PgTxn::copies_frozen_into`]).
    fresh: std::sync::Mutex<HashSet<String>>,
}

impl PgTxn {
    pub async fn begin(db: &DatabaseConnection) -> Result<PgTxn, DbErr> {
        let connection = db.get_postgres_connection_pool().acquire().await.map_err(connection_error)?;
        let mut txn = PgTxn {
            connection: Mutex::new(connection),
            open: false,
            temporary: Default::default(),
            column_types: Default::default(),
            scattered: Default::default(),
            fresh: Default::default(),
        };
        txn.execute_unprepared("BEGIN").await?;
        txn.open = true;
        Ok(txn)
    }

    pub async fn commit(mut self) -> Result<(), DbErr> {
        self.execute_unprepared("COMMIT").await?;
        self.open = false;
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<(), DbErr> {
        self.execute_unprepared("ROLLBACK").await?;
        self.open = false;
        Ok(())
    }

    /// Runs `copy` (a `COPY ... FROM STDIN`) with the data `fill` appends
    /// to its buffer, whole rows in the copy's format, about [`COPY_CHUNK`]
    /// bytes a call, until it returns false; how many rows were written.
    /// The rows are never all in memory at once.
    pub async fn copy_in(&self, copy: &str, mut fill: impl FnMut(&mut Vec<u8>) -> bool + Send) -> Result<u64, DbErr> {
        let mut connection = self.connection.lock().await;
        let mut writer = connection.copy_in_raw(copy).await.map_err(exec_error)?;
        let mut buffer = Vec::with_capacity(COPY_CHUNK + COPY_CHUNK / 4);
        loop {
            buffer.clear();
            let more = fill(&mut buffer);
            if !buffer.is_empty() {
                writer.send(buffer.as_slice()).await.map_err(exec_error)?;
            }
            if !more {
                break;
            }
        }
        writer.finish().await.map_err(exec_error)
    }

    /// The names and types of the columns `sql` returns, without running it.
    pub async fn describe(&self, sql: &str) -> Result<Vec<(String, Option<Wire>)>, DbErr> {
        use sqlx::{Column as _, Executor as _, SqlSafeStr as _, Statement as _, TypeInfo as _};
        let mut connection = self.connection.lock().await;
        let prepared = (&mut **connection)
            .prepare(sqlx::AssertSqlSafe(sql.to_owned()).into_sql_str())
            .await
            .map_err(query_error)?;
        let columns = prepared.columns().iter();
        Ok(columns.map(|c| (c.name().to_owned(), Wire::of(&c.type_info().name().to_lowercase()))).collect())
    }

    /// Calls `visit` with every row of `sql` read through a binary `COPY`
    /// (see [`super::copy_out`]), without holding the result.
    pub async fn copy_out(
        &self,
        sql: &str,
        mut visit: impl FnMut(&Rows, &copy_out::Fields) -> Result<(), DbErr> + Send,
    ) -> Result<(), DbErr> {
        let mut connection = self.connection.lock().await;
        let mut data = connection.copy_out_raw(copy_out::copy_statement(sql).as_str()).await.map_err(query_error)?;
        let (mut rows, mut fields) = (Rows::default(), Vec::new());
        while let Some(piece) = data.try_next().await.map_err(query_error)? {
            rows.push(&piece);
            while rows.next(&mut fields).map_err(DbErr::Custom)? {
                visit(&rows, &fields)?;
            }
        }
        if !rows.ended() {
            return Err(DbErr::Custom("binary COPY: the rows ended before their end mark".into()));
        }
        Ok(())
    }

    /// Calls `visit` with every row of `statement`, without holding the result.
    pub async fn for_each(
        &self,
        statement: Statement,
        mut visit: impl FnMut(QueryResult) -> Result<(), DbErr> + Send,
    ) -> Result<(), DbErr> {
        let mut connection = self.connection.lock().await;
        let mut rows = fetch(&mut connection, &statement);
        while let Some(row) = rows.next().await {
            visit(QueryResult::from(row.map_err(query_error)?))?;
        }
        Ok(())
    }

    /// Brings the planner's statistics of `table` up to date, rows written
    /// in this transaction included. Without them a table filled by a bulk
    /// write looks empty or small, and a lookup of a few thousand keys in it
    /// becomes a scan of the whole table, slower as the table grows.
    ///
    /// A column given a larger sample (`SET STATISTICS`, the customer column
    /// of the orders and the ledger) is analysed on its own: one `ANALYZE`
    /// of the whole table would take that larger sample for every column,
    /// at twice the time (figures in docs/benchmarks.md). Not for a table
    /// with an index on an expression, whose statistics only a whole-table
    /// `ANALYZE` gathers.
    pub async fn analyze(&self, table: &str) -> Result<(), DbErr> {
        let select = "SELECT a.attname::text, coalesce(a.attstattarget, -1) >= 0 \
                      FROM pg_attribute a WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 \
                      AND NOT a.attisdropped AND NOT EXISTS (SELECT 1 FROM pg_index x \
                      WHERE x.indrelid = a.attrelid AND x.indexprs IS NOT NULL) ORDER BY a.attnum";
        let columns: Vec<(String, bool)> = self.about_table(select, table).await?;
        let (own, shared): (Vec<_>, Vec<_>) = columns.into_iter().partition(|(_, own_sample)| *own_sample);
        if own.is_empty() {
            return self.execute_unprepared(&format!(r#"ANALYZE "{table}""#)).await.map(drop);
        }
        let shared: Vec<&str> = shared.iter().map(|(column, _)| column.as_str()).collect();
        if !shared.is_empty() {
            self.analyze_columns(table, &shared).await?;
        }
        for (column, _) in &own {
            self.analyze_columns(table, &[column]).await?;
        }
        Ok(())
    }

    /// [`PgTxn::analyze`] of the columns looked up while a bulk write
    /// grows the table: the row count and their distribution are all a
    /// lookup's plan needs, at a fraction of the cost.
    pub async fn analyze_columns(&self, table: &str, columns: &[&str]) -> Result<(), DbErr> {
        let columns = columns.iter().map(|c| format!(r#""{c}""#)).collect::<Vec<_>>().join(", ");
        self.execute_unprepared(&format!(r#"ANALYZE "{table}" ({columns})"#)).await.map(drop)
    }

    /// The rows `select` returns with `$1` bound to `keys` as one text
    /// array (`... WHERE "external_id" = ANY($1)`): one statement whatever
    /// the number of keys, prepared once per connection, each key an index
    /// probe (an `IN` list of thousands of values is parsed and bound value
    /// by value).
    pub async fn fetch_by_keys<R>(&self, select: &str, keys: &[&str]) -> Result<Vec<R>, DbErr>
    where
        R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let mut connection = self.connection.lock().await;
        sqlx::query_as(sqlx::AssertSqlSafe(select.to_owned()))
            .bind(keys)
            .fetch_all(&mut **connection)
            .await
            .map_err(query_error)
    }

    /// The rows `select` returns with `$1` bound to `texts` and `$2` to
    /// `ids`, each as one array, and `$3` to `text` (see
    /// [`PgTxn::fetch_by_keys`]).
    pub async fn fetch_by_texts_and_ids<R>(
        &self,
        select: &str,
        texts: &[&str],
        ids: &[i64],
        text: &str,
    ) -> Result<Vec<R>, DbErr>
    where
        R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let mut connection = self.connection.lock().await;
        sqlx::query_as(sqlx::AssertSqlSafe(select.to_owned()))
            .bind(texts)
            .bind(ids)
            .bind(text)
            .fetch_all(&mut **connection)
            .await
            .map_err(query_error)
    }

    /// The ids of the rows of `table` whose `external_id` is among `keys`,
    /// by external id.
    pub async fn ids_by_external_id(&self, table: &str, keys: &[&str]) -> Result<HashMap<String, i64>, DbErr> {
        let listed = r#""external_id", "id""#;
        if let Some(stored) = self.stored_in_range(table, listed, &[], keys).await? {
            return Ok(stored.into_iter().map(|(external_id, row)| (external_id, row.id)).collect());
        }
        let rows = self.rows_by_external_id(table, listed, keys).await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0).map_err(query_error)?, row.try_get(1).map_err(query_error)?)))
            .collect()
    }

    /// The `listed` columns (the external id first) of the rows of `table`
    /// whose `external_id` is among `keys`.
    ///
    /// Files usually come sorted by id, so a batch's ids lie close together
    /// in the `external_id` index: reading the range between the least and
    /// the greatest of them costs a third of looking each one up. The range read
    /// stops at twice the keys' number; a range that holds more (ids
    /// scattered over the table) is looked up key by key, and so is every
    /// later batch of `table` in this transaction. External ids are
    /// collated "C" (bytes), as Rust orders strings.
    async fn rows_by_external_id(&self, table: &str, listed: &str, keys: &[&str]) -> Result<Vec<PgRow>, DbErr> {
        let (Some(least), Some(greatest)) = (keys.iter().min(), keys.iter().max()) else { return Ok(Vec::new()) };
        let scattered = self.scattered.lock().expect("never poisoned: no code panics holding it").contains(table);
        let mut connection = self.connection.lock().await;
        if !scattered {
            let most = 2 * keys.len() + 16;
            let select = format!(
                r#"SELECT {listed} FROM "{table}" WHERE "external_id" BETWEEN $1 AND $2 ORDER BY "external_id" LIMIT $3"#
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(select))
                .bind(*least)
                .bind(*greatest)
                .bind(most as i64)
                .fetch_all(&mut **connection)
                .await
                .map_err(query_error)?;
            if rows.len() < most {
                let wanted: HashSet<&str> = keys.iter().copied().collect();
                let mut kept = Vec::with_capacity(keys.len().min(rows.len()));
                for row in rows {
                    if wanted.contains(row.try_get::<&str, _>(0).map_err(query_error)?) {
                        kept.push(row);
                    }
                }
                return Ok(kept);
            }
            self.scattered.lock().expect("never poisoned: no code panics holding it").insert(table.to_owned());
        }
        let select = format!(r#"SELECT {listed} FROM "{table}" WHERE "external_id" = ANY($1)"#);
        sqlx::query(sqlx::AssertSqlSafe(select)).bind(keys).fetch_all(&mut **connection).await.map_err(query_error)
    }

    /// The rows of `table` whose `external_id` is among `keys`: for each
    /// external id, the row's id and the stored values of `columns`,
    /// decoded by their types (see [`stored_value`]).
    pub async fn stored_by_external_id(
        &self,
        table: &str,
        columns: &[&str],
        keys: &[&str],
    ) -> Result<HashMap<String, StoredRow>, DbErr> {
        let types = self.column_types(table).await?;
        let types: Vec<&str> = columns.iter().map(|c| types.get(*c).map_or("", String::as_str)).collect();
        let listed: String = columns.iter().map(|c| format!(r#", "{c}""#)).collect();
        let listed = format!(r#""external_id", "id"{listed}"#);
        if let Some(stored) = self.stored_in_range(table, &listed, &types, keys).await? {
            return Ok(stored);
        }
        let rows = self.rows_by_external_id(table, &listed, keys).await?;
        let mut stored = HashMap::with_capacity(rows.len());
        for row in rows {
            let values = types.iter().enumerate().map(|(i, type_name)| stored_value(&row, i + 2, type_name)).collect();
            let id = row.try_get(1).map_err(query_error)?;
            stored.insert(row.try_get(0).map_err(query_error)?, StoredRow { id, values });
        }
        Ok(stored)
    }

    /// [`PgTxn::stored_by_external_id`] (and [`PgTxn::ids_by_external_id`],
    /// with no columns) of the range of external ids
    /// between the least and the greatest key (see
    /// [`PgTxn::rows_by_external_id`]), read through a binary `COPY`: the
    /// rows need no sqlx decoding, which was a third of the processor time
    /// of a re-import of unchanged orders. `None` when the table's ids are
    /// scattered, the range holding twice the keys or more, or a key cannot
    /// be written into the statement; the keys are then looked up through
    /// sqlx.
    async fn stored_in_range(
        &self,
        table: &str,
        listed: &str,
        types: &[&str],
        keys: &[&str],
    ) -> Result<Option<HashMap<String, StoredRow>>, DbErr> {
        let (Some(least), Some(greatest)) = (keys.iter().min(), keys.iter().max()) else {
            return Ok(Some(HashMap::new()));
        };
        if self.scattered.lock().expect("never poisoned: no code panics holding it").contains(table) {
            return Ok(None);
        }
        let (Some(least), Some(greatest)) = (text_literal(least), text_literal(greatest)) else { return Ok(None) };
        let most = 2 * keys.len() + 16;
        let select = format!(
            r#"SELECT {listed} FROM "{table}" WHERE "external_id" BETWEEN {least} AND {greatest} ORDER BY "external_id" LIMIT {most}"#
        );
        let wanted: HashSet<&str> = keys.iter().copied().collect();
        let mut stored = HashMap::with_capacity(keys.len());
        let mut read = 0;
        self.copy_out(&select, |rows, fields| {
            read += 1;
            let field = |i: usize| fields.get(i).cloned().flatten().map(|range| rows.field(&range));
            let external_id = field(0).and_then(|bytes| std::str::from_utf8(bytes).ok());
            let Some(external_id) = external_id.filter(|id| wanted.contains(id)) else { return Ok(()) };
            let id = i64::from_copied(field(1), Wire::Int8).map_err(|e| DbErr::Custom(format!("id {e}")))?;
            let values = types.iter().enumerate().map(|(i, type_name)| copied_value(field(i + 2), type_name)).collect();
            stored.insert(external_id.to_owned(), StoredRow { id, values });
            Ok(())
        })
        .await?;
        if read >= most {
            self.scattered.lock().expect("never poisoned: no code panics holding it").insert(table.to_owned());
            return Ok(None);
        }
        Ok(Some(stored))
    }

    /// The type of each column of `table`, by column name
    /// (`pg_type.typname`: `int8`, `float8`, `timestamptz`, ...), read once
    /// per transaction.
    pub async fn column_types(&self, table: &str) -> Result<Arc<HashMap<String, String>>, DbErr> {
        if let Some(known) = self.column_types.lock().expect("never poisoned: no code panics holding it").get(table) {
            return Ok(Arc::clone(known));
        }
        let select = "SELECT a.attname::text, t.typname::text FROM pg_attribute a \
                      JOIN pg_type t ON t.oid = a.atttypid \
                      WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped";
        let rows: Vec<(String, String)> = self.about_table(select, table).await?;
        let types = Arc::new(rows.into_iter().collect::<HashMap<_, _>>());
        let mut known = self.column_types.lock().expect("never poisoned: no code panics holding it");
        known.insert(table.to_owned(), Arc::clone(&types));
        Ok(types)
    }

    /// The rows of a catalogue query about `table`, which it names as `$1`
    /// (quoted, for `$1::text::regclass`).
    async fn about_table<R>(&self, select: &'static str, table: &str) -> Result<Vec<R>, DbErr>
    where
        R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let mut connection = self.connection.lock().await;
        sqlx::query_as(select).bind(format!(r#""{table}""#)).fetch_all(&mut **connection).await.map_err(query_error)
    }

    /// The rows of `table` as its statistics last counted them; `None`
    /// when they never did.
    pub async fn estimated_rows(&self, table: &str) -> Result<Option<u64>, DbErr> {
        let select = "SELECT reltuples::float8 FROM pg_class WHERE oid = $1::text::regclass";
        let rows: Vec<(f64,)> = self.about_table(select, table).await?;
        Ok(rows.first().filter(|(rows,)| *rows >= 0.0).map(|(rows,)| *rows as u64))
    }

    /// Whether `table`'s statistics are stale: never gathered, or the table
    /// has grown or shrunk by a tenth or more (autovacuum's own threshold)
    /// since they were, by its size in pages against the size the last
    /// `ANALYZE` (or `VACUUM`) noted, this transaction's included.
    ///
    /// Not by `n_mod_since_analyze`: an `ANALYZE` of some columns (as
    /// [`PgTxn::analyze`] and [`PgTxn::analyze_columns`] run) leaves that
    /// count as it was, and so do the rows a transaction wrote before its
    /// own `ANALYZE`, counted at its commit. Without autovacuum, every
    /// import then analysed the customers again.
    pub async fn statistics_stale(&self, table: &str) -> Result<bool, DbErr> {
        let select = "SELECT c.reltuples::float8, c.relpages::float8, \
                      (pg_relation_size(c.oid) / current_setting('block_size')::bigint)::float8 \
                      FROM pg_class c WHERE c.oid = $1::text::regclass";
        let rows: Vec<(f64, f64, f64)> = self.about_table(select, table).await?;
        Ok(rows.first().is_none_or(|&(rows, noted, pages)| rows < 0.0 || (pages - noted).abs() * 10.0 >= noted))
    }

    /// Whether `table` holds no row.
    pub async fn is_empty(&self, table: &str) -> Result<bool, DbErr> {
        let select = format!(r#"SELECT NOT EXISTS (SELECT 1 FROM "{table}")"#);
        let mut connection = self.connection.lock().await;
        sqlx::query_scalar(sqlx::AssertSqlSafe(select)).fetch_one(&mut **connection).await.map_err(query_error)
    }

    /// Whether `table` is empty, taking it, when it is, for this
    /// transaction alone until the commit: another writer could otherwise
    /// fill it between the answer and the write that relies on it, and
    /// [`PgTxn::set_aside_indexes`] needs the lock anyway. Readers of the
    /// table wait meanwhile (they would find it empty).
    ///
    /// A taken table that no foreign key refers to is also truncated (it is
    /// empty: nothing is lost), so that rows copied into it can be written
    /// frozen and marked visible to all (`COPY ... FREEZE`, see
    /// [`PgTxn::copies_frozen_into`]). Without that, the first statements
    /// to read the new rows write every page again to note that their
    /// writer committed, and no scan can skip the table's pages for an
    /// index alone until a `VACUUM`: when autovacuum is off or has not come
    /// yet, the next nightly loyalty run hashed the whole ledger where a
    /// lookup of its index would do.
    pub async fn take_if_empty(&self, table: &str) -> Result<bool, DbErr> {
        if !self.is_empty(table).await? {
            return Ok(false);
        }
        self.execute_unprepared(&format!(r#"LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE"#)).await?;
        if !self.is_empty(table).await? {
            return Ok(false);
        }
        if !self.is_referenced(table).await? {
            self.execute_unprepared(&format!(r#"TRUNCATE "{table}""#)).await?;
            self.note_fresh(table);
        }
        Ok(true)
    }

    /// Whether a foreign key of another table refers to `table` (which
    /// then cannot be truncated on its own).
    async fn is_referenced(&self, table: &str) -> Result<bool, DbErr> {
        let select = "SELECT 1 FROM pg_constraint WHERE contype = 'f' AND confrelid = $1::text::regclass";
        let rows: Vec<(i32,)> = self.about_table(select, table).await?;
        Ok(!rows.is_empty())
    }

    /// Whether rows copied into `table` in this transaction can be written
    /// frozen: it was made or truncated in it ([`PgTxn::rewrite_into`],
    /// [`PgTxn::take_if_empty`]), so that no other transaction sees its rows
    /// until this one commits.
    pub fn copies_frozen_into(&self, table: &str) -> bool {
        self.fresh.lock().expect("never poisoned: no code panics holding it").contains(table)
    }

    /// Notes that `table` was made or truncated in this transaction.
    fn note_fresh(&self, table: &str) {
        self.fresh.lock().expect("never poisoned: no code panics holding it").insert(table.to_owned());
    }

    /// Drops the indexes of `table` (taken by [`PgTxn::take_if_empty`]) for
    /// a bulk write of new rows, all but those on one of the `kept` columns
    /// alone (looked up during the write) and the unique ones (the primary
    /// key among them) that a foreign key relies on; returns the statements
    /// that build them again ([`PgTxn::restore_indexes`]). An index built
    /// once over every row sorts them; kept in step row by row it costs most
    /// of such a write, the primary key's too, though its keys come in order.
    pub async fn set_aside_indexes(&self, table: &str, kept: &[&str]) -> Result<SetAside, DbErr> {
        let select = "SELECT i.relname::text, pg_get_indexdef(x.indexrelid), c.conname::text, \
                      pg_get_constraintdef(c.oid), \
                      (SELECT array_agg(a.attname::text ORDER BY k.n) FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n) \
                       JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum) \
                      FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
                      LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid \
                      WHERE x.indrelid = $1::text::regclass \
                      AND (c.oid IS NULL OR c.contype IN ('u', 'p')) \
                      AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = x.indexrelid) \
                      ORDER BY i.relname";
        type Listed = (String, String, Option<String>, Option<String>, Option<Vec<String>>);
        let indexes: Vec<Listed> = self.about_table(select, table).await?;
        let mut rebuild = Vec::new();
        for (index, definition, constraint, constraint_definition, columns) in indexes {
            if let Some([column]) = columns.as_deref()
                && kept.contains(&column.as_str())
            {
                continue;
            }
            let (drop, build) = match (constraint, constraint_definition) {
                (Some(name), Some(definition)) => (
                    format!(r#"ALTER TABLE "{table}" DROP CONSTRAINT "{name}""#),
                    format!(r#"ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}"#),
                ),
                _ => (format!(r#"DROP INDEX "{index}""#), definition),
            };
            self.execute_unprepared(&drop).await?;
            rebuild.push(build);
        }
        Ok(SetAside(rebuild))
    }

    /// Builds again the indexes [`PgTxn::set_aside_indexes`] dropped.
    pub async fn restore_indexes(&self, set_aside: SetAside) -> Result<(), DbErr> {
        for statement in set_aside.0 {
            self.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    /// Starts rewriting every row of `table` into `next`, a new table of
    /// the same columns, defaults and constraints but no index yet, which
    /// [`PgTxn::swap_in`] puts in its place at the end. Rows copied into an
    /// empty table without indexes skip what a `DELETE` and `COPY` into the
    /// table itself cost: each new key checked against the deleted row it
    /// replaces, which stays in the index until the commit (a million
    /// feature snapshots: 2.0 s against 4.6 to 6.7 s). Other writers of
    /// `table` wait for this transaction; readers do not, but for the swap.
    /// Rows copied into `next` are written frozen (see
    /// [`PgTxn::take_if_empty`]): the first segment read after a scoring
    /// does not write the new tables' pages again to note the commit.
    pub async fn rewrite_into(&self, table: &str, next: &str) -> Result<(), DbErr> {
        self.execute_unprepared(&format!(
            r#"LOCK TABLE "{table}" IN SHARE ROW EXCLUSIVE MODE;
               CREATE TABLE "{next}" (LIKE "{table}" INCLUDING ALL EXCLUDING INDEXES)"#
        ))
        .await?;
        self.note_fresh(next);
        Ok(())
    }

    /// Readies `next` to take `table`'s place ([`PgTxn::rewrite_into`]):
    /// builds `table`'s indexes, grants and statistics on it. Returns the
    /// statements of the swap itself ([`PgTxn::swap_in`]).
    pub async fn prepare_swap(&self, table: &str, next: &str) -> Result<Swap, DbErr> {
        let select = "SELECT i.relname::text, pg_get_indexdef(x.indexrelid), c.contype::text \
                      FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
                      LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid \
                      WHERE x.indrelid = $1::text::regclass ORDER BY i.relname";
        let indexes: Vec<(String, String, Option<String>)> = self.about_table(select, table).await?;
        let mut build = Vec::new();
        let mut swap = vec![format!(r#"DROP TABLE "{table}""#), format!(r#"ALTER TABLE "{next}" RENAME TO "{table}""#)];
        for (i, (name, definition, constraint)) in indexes.iter().enumerate() {
            let built = format!("{next}_{i}");
            build.push(index_on(definition, &built, next)?);
            match constraint.as_deref() {
                Some("p") => build.push(format!(r#"ALTER TABLE "{next}" ADD PRIMARY KEY USING INDEX "{built}""#)),
                Some("u") => build.push(format!(r#"ALTER TABLE "{next}" ADD UNIQUE USING INDEX "{built}""#)),
                _ => {}
            }
            swap.push(format!(r#"ALTER INDEX "{built}" RENAME TO "{name}""#));
        }
        let grants: Vec<(String,)> = {
            let select = "SELECT format('GRANT %s ON %I TO %s', privilege_type, $2::text, \
                          CASE grantee WHEN 'PUBLIC' THEN 'PUBLIC' ELSE quote_ident(grantee) END) \
                          FROM information_schema.role_table_grants \
                          WHERE table_schema = current_schema() AND table_name = $1 AND grantee <> current_user";
            let mut connection = self.connection.lock().await;
            sqlx::query_as(select).bind(table).bind(next).fetch_all(&mut **connection).await.map_err(query_error)?
        };
        build.extend(grants.into_iter().map(|(grant,)| grant));
        // Statistics belong to the table, not its name: gathered before the
        // swap, the readers' wait stays short.
        build.push(format!(r#"ANALYZE "{next}""#));
        for statement in build {
            self.execute_unprepared(&statement).await?;
        }
        Ok(Swap { table: table.to_owned(), statements: swap })
    }

    /// Drops the old table and renames the new one (and its indexes) to
    /// it. Readers of the table wait from here to the commit, which follows.
    pub async fn swap_in(&self, swap: Swap) -> Result<(), DbErr> {
        for statement in &swap.statements {
            self.execute_unprepared(statement).await?;
        }
        self.column_types.lock().expect("never poisoned: no code panics holding it").remove(&swap.table);
        Ok(())
    }

    /// Whether a temporary table of this name was made in this transaction;
    /// notes that it now is.
    pub fn first_use_of(&self, temporary: &str) -> bool {
        self.temporary.lock().expect("never poisoned: no code panics holding it").insert(temporary.to_owned())
    }
}

/// The statements that build set-aside indexes again
/// ([`PgTxn::set_aside_indexes`], `engine::Txn::set_aside_indexes`).
#[must_use = "the indexes must be built again before the commit"]
pub struct SetAside(pub(super) Vec<String>);

/// The statements that put a rewritten table in the old one's place (see
/// [`PgTxn::prepare_swap`]).
pub struct Swap {
    table: String,
    statements: Vec<String>,
}

impl Drop for PgTxn {
    fn drop(&mut self) {
        // Closing the connection rolls the transaction back; returned to the
        // pool it would stay open under the next user.
        if self.open {
            self.connection.get_mut().close_on_drop();
        }
    }
}

/// An index as `definition` (`pg_get_indexdef`'s `CREATE [UNIQUE] INDEX
/// name ON table USING ...`) defines it, named `name`, on `table`.
fn index_on(definition: &str, name: &str, table: &str) -> Result<String, DbErr> {
    let unique = if definition.starts_with("CREATE UNIQUE INDEX ") { "UNIQUE " } else { "" };
    let using = definition
        .find(" USING ")
        .ok_or_else(|| DbErr::Custom(format!("an index definition without USING: {definition}")))?;
    Ok(format!(r#"CREATE {unique}INDEX "{name}" ON "{table}"{}"#, &definition[using..]))
}

/// A stored row as [`PgTxn::stored_by_external_id`] reads it.
pub struct StoredRow {
    pub id: i64,
    /// The values of the columns asked for, in their order.
    pub values: Vec<Option<Value>>,
}

/// Column `index` of `row`, of PostgreSQL type `type_name`, as the value a
/// bulk write would bind for it; `None` for a type the binary writer does
/// not know or a value that does not decode, which compares unequal to
/// every value.
fn stored_value(row: &PgRow, index: usize, type_name: &str) -> Option<Value> {
    let value = match (Wire::of(type_name)?, type_name) {
        // A `json` column travels as text in a COPY, but is bound as JSON.
        (Wire::Jsonb, _) | (Wire::Text, "json") => {
            Value::Json(row.try_get::<Option<serde_json::Value>, _>(index).ok()?.map(Box::new))
        }
        (Wire::Bool, _) => Value::Bool(row.try_get(index).ok()?),
        (Wire::Int2, _) => Value::SmallInt(row.try_get(index).ok()?),
        (Wire::Int4, _) => Value::Int(row.try_get(index).ok()?),
        (Wire::Int8, _) => Value::BigInt(row.try_get(index).ok()?),
        (Wire::Float4, _) => Value::Float(row.try_get(index).ok()?),
        (Wire::Float8, _) => Value::Double(row.try_get(index).ok()?),
        (Wire::Text, _) => Value::String(row.try_get(index).ok()?),
        (Wire::Timestamp, _) => Value::ChronoDateTimeUtc(row.try_get(index).ok()?),
        (Wire::Date, _) => Value::ChronoDate(row.try_get(index).ok()?),
    };
    Some(value)
}

/// A value of a column of PostgreSQL type `type_name` in binary `COPY`
/// data, as [`stored_value`] decodes it from an sqlx row: the same value
/// for the same stored one, and `None` where that gives `None`.
fn copied_value(bytes: Option<&[u8]>, type_name: &str) -> Option<Value> {
    let wire = Wire::of(type_name)?;
    let value = match (wire, type_name) {
        (Wire::Jsonb, _) | (Wire::Text, "json") => {
            // jsonb comes as a version byte (1), then the text.
            let text = match (bytes, wire) {
                (Some(bytes), Wire::Jsonb) => Some(bytes.strip_prefix(&[1])?),
                (bytes, _) => bytes,
            };
            Value::Json(text.map(serde_json::from_slice).transpose().ok()?.map(Box::new))
        }
        (Wire::Bool, _) => Value::Bool(Option::<bool>::from_copied(bytes, wire).ok()?),
        (Wire::Int2, _) => Value::SmallInt(Option::<i16>::from_copied(bytes, wire).ok()?),
        (Wire::Int4, _) => Value::Int(Option::<i32>::from_copied(bytes, wire).ok()?),
        (Wire::Int8, _) => Value::BigInt(Option::<i64>::from_copied(bytes, wire).ok()?),
        (Wire::Float4, _) => Value::Float(bytes.map(copy_out::array).transpose().ok()?.map(f32::from_be_bytes)),
        (Wire::Float8, _) => Value::Double(Option::<f64>::from_copied(bytes, wire).ok()?),
        (Wire::Text, _) => Value::String(Option::<String>::from_copied(bytes, wire).ok()?),
        // sqlx decodes a time with its zone only.
        (Wire::Timestamp, "timestamptz") => {
            Value::ChronoDateTimeUtc(Option::<chrono::DateTime<chrono::Utc>>::from_copied(bytes, wire).ok()?)
        }
        (Wire::Timestamp, _) => return None,
        (Wire::Date, _) => Value::ChronoDate(Option::<chrono::NaiveDate>::from_copied(bytes, wire).ok()?),
    };
    Some(value)
}

/// `text` as a PostgreSQL string literal whatever `standard_conforming_strings`
/// says: an escape string (`E'...'`) with its backslashes and quotes
/// doubled, so that no escape sequence is left in it. `None` for text with
/// a NUL, which PostgreSQL's text cannot hold.
fn text_literal(text: &str) -> Option<String> {
    (!text.contains('\0')).then(|| format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''")))
}

fn fetch<'c>(
    connection: &'c mut PoolConnection<Postgres>,
    statement: &'c Statement,
) -> impl Stream<Item = Result<PgRow, sqlx::Error>> + Send + 'c {
    let values = statement.values.clone().unwrap_or(sea_orm::Values(Vec::new()));
    sqlx::query_with(sqlx::AssertSqlSafe(statement.sql.as_str()), SqlxValues(values)).fetch(&mut **connection)
}

#[async_trait::async_trait]
impl ConnectionTrait for PgTxn {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        let mut connection = self.connection.lock().await;
        let values = statement.values.unwrap_or(sea_orm::Values(Vec::new()));
        let query = sqlx::query_with(sqlx::AssertSqlSafe(statement.sql), SqlxValues(values));
        query.execute(&mut **connection).await.map(ExecResult::from).map_err(exec_error)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let mut connection = self.connection.lock().await;
        let query = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()));
        query.execute(&mut **connection).await.map(ExecResult::from).map_err(exec_error)
    }

    async fn query_one_raw(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        let mut connection = self.connection.lock().await;
        let row = fetch(&mut connection, &statement).try_next().await.map_err(query_error)?;
        Ok(row.map(QueryResult::from))
    }

    async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut connection = self.connection.lock().await;
        let rows: Vec<PgRow> = fetch(&mut connection, &statement).try_collect().await.map_err(query_error)?;
        Ok(rows.into_iter().map(QueryResult::from).collect())
    }
}

fn connection_error(error: sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(error.into()))
}

fn exec_error(error: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(error.into()))
}

fn query_error(error: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(error.into()))
}

#[async_trait::async_trait]
impl sea_orm::TransactionSession for PgTxn {
    async fn commit(self) -> Result<(), DbErr> {
        PgTxn::commit(self).await
    }

    async fn rollback(self) -> Result<(), DbErr> {
        PgTxn::rollback(self).await
    }
}
