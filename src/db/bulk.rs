//! Bulk writes (imports, feature snapshots, scores, the outbox of a run, the
//! loyalty ledger): one description of the rows, written each engine's
//! fastest way.
//!
//! On SQLite, prepared INSERT statements (multi-row through sqlx for
//! imports, one row each through rusqlite on the `engine::Txn` paths). On
//! PostgreSQL, `COPY ... FROM STDIN`, in the binary format where every
//! column's type has a binary writer, else as text: straight into the table
//! when no row can meet an existing one (plain inserts, rewrites after
//! `engine::Txn::delete_before_rewrite`, and rows the caller knows are new),
//! else into a temporary table of the same columns, then one
//! `INSERT ... SELECT ... ON CONFLICT` into the real table, so that upserts
//! keep their rules and their counts of written rows.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::sea_query::{Alias, Expr, InsertStatement, OnConflict, PostgresQueryBuilder, Query, Value};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement, TransactionSession};

use super::binary_copy::{self, Wire};
use super::postgres::{COPY_CHUNK, PgTxn};

/// What a row whose key exists does.
enum Conflict {
    /// Fails the statement.
    Fail,
    /// Updates these columns where a value differs (the others are only set
    /// on insert), keyed on `external_id`.
    UpdateWhenChanged(Vec<&'static str>),
    /// Replaces these columns, keyed on `key`.
    Update { key: &'static [&'static str], columns: Vec<&'static str> },
    /// Keeps the existing row, keyed on `key`.
    Ignore(&'static [&'static str]),
    /// Replaces every other column, keyed on `key`: a rewrite of a whole set
    /// (see [`BulkInsert::rewrite`]).
    Rewrite(&'static [&'static str]),
}

pub struct BulkInsert {
    backend: DbBackend,
    table: &'static str,
    columns: &'static [&'static str],
    conflict: Conflict,
    /// The SQL for the last row count used: every full batch shares it.
    cached: Mutex<Option<(usize, String)>>,
    /// The columns' binary `COPY` types, once [`BulkInsert::learn_wire_types`]
    /// found that every column has one: batches are then made in the binary
    /// format (PostgreSQL).
    wire: OnceLock<Vec<Wire>>,
}

/// The rows of one batch, ready for [`BulkInsert::write`]: a statement, or
/// `COPY` text.
pub enum Batch {
    Statement {
        statement: Statement,
        rows: u64,
    },
    Copy {
        /// Rows known to be new: copied straight into the table.
        new: Vec<u8>,
        /// Rows that may exist: through the conflict rule.
        others: Vec<u8>,
        rows: u64,
        format: Format,
    },
}

impl BulkInsert {
    /// Plain inserts.
    pub fn new(backend: DbBackend, table: &'static str, columns: &'static [&'static str]) -> Self {
        BulkInsert {
            backend,
            table,
            columns,
            conflict: Conflict::Fail,
            cached: Mutex::new(None),
            wire: OnceLock::new(),
        }
    }

    /// Upserts on `external_id` that rewrite nothing when nothing changed, so
    /// that a re-import counts as unchanged.
    pub fn upsert(
        backend: DbBackend,
        table: &'static str,
        columns: &'static [&'static str],
        updatable: Vec<&'static str>,
    ) -> Self {
        BulkInsert { conflict: Conflict::UpdateWhenChanged(updatable), ..Self::new(backend, table, columns) }
    }

    /// Upserts on `key` that replace `update` (the other columns are only
    /// set on insert).
    pub fn update(
        backend: DbBackend,
        table: &'static str,
        columns: &'static [&'static str],
        key: &'static [&'static str],
        update: Vec<&'static str>,
    ) -> Self {
        BulkInsert { conflict: Conflict::Update { key, columns: update }, ..Self::new(backend, table, columns) }
    }

    /// Inserts that leave a row with the same `key` as it is.
    pub fn ignore_existing(
        backend: DbBackend,
        table: &'static str,
        columns: &'static [&'static str],
        key: &'static [&'static str],
    ) -> Self {
        BulkInsert { conflict: Conflict::Ignore(key), ..Self::new(backend, table, columns) }
    }

    /// Inserts that replace the row with the same `key`: a rewrite of a
    /// whole set. On PostgreSQL the old rows are deleted first (see
    /// `db::engine::Txn::delete_before_rewrite`) and the new ones copied in,
    /// so a row the delete missed fails the write; SQLite replaces in place.
    pub fn rewrite(
        backend: DbBackend,
        table: &'static str,
        columns: &'static [&'static str],
        key: &'static [&'static str],
    ) -> Self {
        BulkInsert { conflict: Conflict::Rewrite(key), ..Self::new(backend, table, columns) }
    }

    pub fn columns(&self) -> usize {
        self.columns.len()
    }

    /// The statement writing `values`: whole rows, `columns` values each, in order.
    pub fn statement(&self, values: Vec<Value>) -> Statement {
        let rows = values.len() / self.columns.len();
        let mut cached = self.cached.lock().expect("never poisoned: nothing panics holding it");
        if cached.as_ref().is_none_or(|(cached_rows, _)| *cached_rows != rows) {
            let mut insert = self.insert();
            for _ in 0..rows {
                insert.values_panic(self.columns.iter().map(|_| Expr::val(Value::BigInt(Some(0)))));
            }
            *cached = Some((rows, self.backend.build(&insert).sql));
        }
        let (_, sql) = cached.as_ref().expect("built above");
        Statement::from_sql_and_values(self.backend, sql.clone(), values)
    }

    /// A batch of `values` (whole rows, in column order) in the form its
    /// engine takes.
    pub fn batch(&self, values: Vec<Value>) -> Batch {
        self.batch_with_new(values, |_| false)
    }

    /// [`BulkInsert::batch`] where `is_new(i)` says that row `i` is known
    /// not to be in the table. On PostgreSQL those rows are copied straight
    /// into it, skipping the temporary table and the conflict rule (a first
    /// import of a million customers took half the time); a row that is
    /// there after all (another writer's, since) fails the write.
    pub fn batch_with_new(&self, values: Vec<Value>, is_new: impl Fn(usize) -> bool) -> Batch {
        let rows = (values.len() / self.columns.len()) as u64;
        match self.backend {
            DbBackend::Postgres => {
                let binary = self.wire.get().and_then(|types| binary_batch(&values, types, &is_new));
                if let Some((new, others)) = binary {
                    return Batch::Copy { new, others, rows, format: Format::Binary };
                }
                let (mut new, mut others) = (Vec::new(), Vec::new());
                for (i, row) in values.chunks(self.columns.len()).enumerate() {
                    copy_row(row, if is_new(i) { &mut new } else { &mut others });
                }
                Batch::Copy { new, others, rows, format: Format::Text }
            }
            _ => Batch::Statement { statement: self.statement(values), rows },
        }
    }

    /// Writes a batch; returns its row count and how many rows were written
    /// (new, or changed by an upsert).
    pub async fn write(&self, txn: &impl BulkTarget, batch: Batch) -> Result<(u64, u64), DbErr> {
        match batch {
            Batch::Statement { statement, rows } => Ok((rows, txn.execute_raw(statement).await?.rows_affected())),
            Batch::Copy { new, others, rows, format } => {
                let postgres = txn.postgres().ok_or_else(|| DbErr::Custom("COPY needs PostgreSQL".into()))?;
                let mut written = 0;
                if !new.is_empty() {
                    written += self.copy(postgres, format, true, all_at_once(new)).await?;
                }
                if !others.is_empty() {
                    written += self.copy(postgres, format, false, all_at_once(others)).await?;
                }
                Ok((rows, written))
            }
        }
    }

    /// Copies `rows` rows into the table on PostgreSQL, the values of row
    /// `i` put into the buffer by `row(i, buffer)`; how many were written.
    /// In the binary format when every column's type allows it.
    pub async fn copy_rows(
        &self,
        txn: &PgTxn,
        rows: usize,
        row: impl FnMut(usize, &mut Vec<Value>) + Send,
    ) -> Result<u64, DbErr> {
        let all: Vec<usize> = (0..rows).collect();
        self.copy_indexed(txn, &all, false, row).await
    }

    /// [`BulkInsert::copy_rows`] where `is_new(i)` says that row `i` is
    /// known not to be in the table: those rows are copied straight in
    /// (see [`BulkInsert::batch_with_new`]), the others keep the conflict
    /// rule. Each row is made once.
    pub async fn copy_rows_known_new(
        &self,
        txn: &PgTxn,
        rows: usize,
        is_new: impl Fn(usize) -> bool,
        mut row: impl FnMut(usize, &mut Vec<Value>) + Send,
    ) -> Result<u64, DbErr> {
        let (new, others): (Vec<usize>, Vec<usize>) = (0..rows).partition(|&i| is_new(i));
        let written = self.copy_indexed(txn, &new, true, &mut row).await?;
        Ok(written + self.copy_indexed(txn, &others, false, &mut row).await?)
    }

    /// Copies rows `indexes` (made by `row`), straight into the table when
    /// `new`, in the binary format when every column's type allows it.
    async fn copy_indexed(
        &self,
        txn: &PgTxn,
        indexes: &[usize],
        new: bool,
        mut row: impl FnMut(usize, &mut Vec<Value>) + Send,
    ) -> Result<u64, DbErr> {
        if indexes.is_empty() {
            return Ok(0);
        }
        let row = |i: usize, values: &mut Vec<Value>| row(indexes[i], values);
        match self.wire_types(txn).await? {
            Some(types) => {
                let mut failed = None;
                let fill = fill_binary_rows(indexes.len(), &types, row, &mut failed);
                let written = self.copy(txn, Format::Binary, new, fill).await;
                match failed {
                    Some(error) => Err(error),
                    None => written,
                }
            }
            None => self.copy(txn, Format::Text, new, fill_rows(indexes.len(), self.columns.len(), row)).await,
        }
    }

    /// Reads the columns' types, so that the batches made from now on are
    /// in the binary format if every column has one: the server then reads
    /// each value as stored instead of parsing its text (dates, times,
    /// numbers, JSON).
    pub async fn learn_wire_types(&self, txn: &PgTxn) -> Result<(), DbErr> {
        if let Some(types) = self.wire_types(txn).await? {
            let _ = self.wire.set(types);
        }
        Ok(())
    }

    /// The columns' types for a binary `COPY`, if every one has a binary
    /// writer (the transaction reads each table's types once).
    async fn wire_types(&self, txn: &PgTxn) -> Result<Option<Vec<Wire>>, DbErr> {
        let types = txn.column_types(self.table).await?;
        Ok(self.columns.iter().map(|c| types.get(*c).and_then(|t| Wire::of(t))).collect())
    }

    /// `COPY` data from `fill` (see [`PgTxn::copy_in`]) into the table:
    /// directly when no row can meet an existing one (`new`, or no conflict
    /// rule to keep), else through the temporary table and one
    /// `INSERT ... SELECT`.
    async fn copy(
        &self,
        txn: &PgTxn,
        format: Format,
        new: bool,
        fill: impl FnMut(&mut Vec<u8>) -> bool + Send,
    ) -> Result<u64, DbErr> {
        if new || matches!(self.conflict, Conflict::Fail | Conflict::Rewrite(_)) {
            let freeze = txn.copies_frozen_into(self.table);
            return txn.copy_in(&format.statement(self.table, self.columns, freeze), fill).await;
        }
        let temporary = format!("bulk_{}", self.table);
        if copy_into_temporary(txn, &temporary, self.table, self.columns, format, fill).await? == 0 {
            return Ok(0);
        }
        let mut insert = self.insert();
        let select = Query::select().columns(self.columns.iter().copied()).from(Alias::new(&temporary)).to_owned();
        insert.select_from(select).map_err(|e| DbErr::Custom(format!("bulk insert into {}: {e}", self.table)))?;
        Ok(txn.execute_unprepared(&insert.to_string(PostgresQueryBuilder)).await?.rows_affected())
    }

    /// The INSERT with its conflict rule, without rows.
    fn insert(&self) -> InsertStatement {
        let mut insert = Query::insert();
        insert.into_table(self.table).columns(self.columns.iter().copied());
        match &self.conflict {
            Conflict::Fail => {}
            Conflict::UpdateWhenChanged(updatable) => {
                insert.on_conflict(self.update_when_changed(updatable));
            }
            Conflict::Update { key, columns } => {
                insert.on_conflict(
                    OnConflict::columns(key.iter().copied()).update_columns(columns.iter().copied()).to_owned(),
                );
            }
            Conflict::Ignore(key) => {
                insert.on_conflict(OnConflict::columns(key.iter().copied()).do_nothing().to_owned());
            }
            Conflict::Rewrite(key) => {
                let others = self.columns.iter().copied().filter(|c| !key.contains(c));
                insert.on_conflict(OnConflict::columns(key.iter().copied()).update_columns(others).to_owned());
            }
        }
        insert
    }

    fn update_when_changed(&self, updatable: &[&'static str]) -> OnConflict {
        // Static text made from column names in this crate, never from input.
        let changed = updatable
            .iter()
            .map(|c| format!("{table}.{c} IS DISTINCT FROM excluded.{c}", table = self.table))
            .collect::<Vec<_>>()
            .join(" OR ");
        let mut set = updatable.to_vec();
        set.push("updated_at");
        OnConflict::column("external_id").update_columns(set).action_and_where(Expr::cust(changed)).to_owned()
    }
}

/// Updates of many rows, each found by its key: on SQLite one prepared
/// UPDATE per row, on PostgreSQL the new values copied into a temporary
/// table and one `UPDATE ... FROM` it.
pub struct BulkUpdate {
    table: &'static str,
    key: &'static str,
    /// The columns set, in the order of the values after the key.
    columns: &'static [&'static str],
}

impl BulkUpdate {
    pub fn new(table: &'static str, key: &'static str, columns: &'static [&'static str]) -> Self {
        BulkUpdate { table, key, columns }
    }

    /// Values per row: the key, then the columns.
    pub fn width(&self) -> usize {
        self.columns.len() + 1
    }

    /// The statement updating one row, its values bound as `?` in the
    /// order of [`BulkUpdate::width`]'s row (SQLite).
    pub fn sqlite_statement(&self) -> String {
        let set = self.columns.iter().map(|c| format!(r#""{c}" = ?"#)).collect::<Vec<_>>().join(", ");
        format!(r#"UPDATE "{}" SET {set} WHERE "{}" = ?"#, self.table, self.key)
    }

    /// Copies `rows` rows of new values into a temporary table and updates
    /// the table from it (PostgreSQL); the row's values are the key, then
    /// the columns.
    pub async fn copy_rows(
        &self,
        txn: &PgTxn,
        rows: usize,
        row: impl FnMut(usize, &mut Vec<Value>) + Send,
    ) -> Result<u64, DbErr> {
        if rows == 0 {
            return Ok(0);
        }
        let mut all = vec![self.key];
        all.extend_from_slice(self.columns);
        let temporary = format!("bulk_update_{}", self.table);
        copy_into_temporary(txn, &temporary, self.table, &all, Format::Text, fill_rows(rows, all.len(), row)).await?;
        let set = self.columns.iter().map(|c| format!(r#""{c}" = new."{c}""#)).collect::<Vec<_>>().join(", ");
        let update = format!(
            r#"UPDATE "{table}" SET {set} FROM "{temporary}" AS new WHERE "{table}"."{key}" = new."{key}""#,
            table = self.table,
            key = self.key
        );
        Ok(txn.execute_unprepared(&update).await?.rows_affected())
    }
}

/// A transaction a [`Batch`] can be written in.
pub trait BulkTarget: ConnectionTrait + TransactionSession + Send {
    /// The PostgreSQL transaction that takes `COPY`, if this is one.
    fn postgres(&self) -> Option<&PgTxn>;
}

impl BulkTarget for DatabaseTransaction {
    fn postgres(&self) -> Option<&PgTxn> {
        None
    }
}

impl BulkTarget for PgTxn {
    fn postgres(&self) -> Option<&PgTxn> {
        Some(self)
    }
}

/// Copies the rows `fill` makes into `temporary`, a table of `columns` of
/// `table` made on its first use in the transaction and emptied on the next
/// ones; how many rows it now holds.
async fn copy_into_temporary(
    txn: &PgTxn,
    temporary: &str,
    table: &str,
    columns: &[&str],
    format: Format,
    fill: impl FnMut(&mut Vec<u8>) -> bool + Send,
) -> Result<u64, DbErr> {
    let prepare = if txn.first_use_of(temporary) {
        format!(
            r#"CREATE TEMPORARY TABLE "{temporary}" ON COMMIT DROP AS SELECT {} FROM "{table}" WITH NO DATA"#,
            quoted_list(columns)
        )
    } else {
        format!(r#"TRUNCATE "{temporary}""#)
    };
    txn.execute_unprepared(&prepare).await?;
    txn.copy_in(&format.statement(temporary, columns, false), fill).await
}

/// The format of `COPY` data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Binary,
}

impl Format {
    /// `COPY` of `columns` into `table` from the client, in this format;
    /// the rows written frozen if `freeze` ([`PgTxn::copies_frozen_into`]).
    fn statement(self, table: &str, columns: &[&str], freeze: bool) -> String {
        let options = match (self, freeze) {
            (Format::Text, false) => "",
            (Format::Text, true) => " WITH (FREEZE)",
            (Format::Binary, false) => " WITH (FORMAT binary)",
            (Format::Binary, true) => " WITH (FORMAT binary, FREEZE)",
        };
        format!(r#"COPY "{table}" ({}) FROM STDIN{options}"#, quoted_list(columns))
    }
}

/// [`fill_rows`] in the binary format: the header, the rows, the trailer.
/// A value that does not fit its column ends the data early and is kept in
/// `failed` (the copy then fails as incomplete, and the caller reports it).
fn fill_binary_rows<'a>(
    rows: usize,
    types: &'a [Wire],
    mut row: impl FnMut(usize, &mut Vec<Value>) + Send + 'a,
    failed: &'a mut Option<DbErr>,
) -> impl FnMut(&mut Vec<u8>) -> bool + Send + 'a {
    let mut values = Vec::with_capacity(types.len());
    let mut next = 0;
    move |data| {
        if next == 0 {
            binary_copy::header(data);
        }
        while next < rows && data.len() < COPY_CHUNK {
            values.clear();
            row(next, &mut values);
            if let Err(error) = binary_copy::row(&values, types, data) {
                *failed = Some(error);
                return false;
            }
            next += 1;
        }
        if next < rows {
            return true;
        }
        binary_copy::trailer(data);
        false
    }
}

/// A [`PgTxn::copy_in`] source of `rows` rows of `width` values each, row
/// `i` made by `row(i, buffer)`.
fn fill_rows(
    rows: usize,
    width: usize,
    mut row: impl FnMut(usize, &mut Vec<Value>) + Send,
) -> impl FnMut(&mut Vec<u8>) -> bool + Send {
    let mut values = Vec::with_capacity(width);
    let mut next = 0;
    move |data| {
        while next < rows && data.len() < COPY_CHUNK {
            values.clear();
            row(next, &mut values);
            copy_row(&values, data);
            next += 1;
        }
        next < rows
    }
}

/// The rows of `values` in the binary format, split as
/// [`BulkInsert::batch_with_new`] splits them; `None` if a value does not
/// fit its column's type (the batch is then made as text, whose errors the
/// server reports).
fn binary_batch(values: &[Value], types: &[Wire], is_new: impl Fn(usize) -> bool) -> Option<(Vec<u8>, Vec<u8>)> {
    let (mut new, mut others) = (Vec::new(), Vec::new());
    for (i, row) in values.chunks(types.len()).enumerate() {
        let data = if is_new(i) { &mut new } else { &mut others };
        if data.is_empty() {
            binary_copy::header(data);
        }
        binary_copy::row(row, types, data).ok()?;
    }
    for data in [&mut new, &mut others] {
        if !data.is_empty() {
            binary_copy::trailer(data);
        }
    }
    Some((new, others))
}

/// A [`PgTxn::copy_in`] source of `data`, whole rows already in `COPY`'s format.
fn all_at_once(data: Vec<u8>) -> impl FnMut(&mut Vec<u8>) -> bool + Send {
    let mut data = Some(data);
    move |buffer| {
        buffer.extend(data.take().unwrap_or_default());
        false
    }
}

/// Column names for SQL, quoted (names of this crate, never input).
fn quoted_list(columns: &[&str]) -> String {
    columns.iter().map(|c| format!(r#""{c}""#)).collect::<Vec<_>>().join(", ")
}

/// Appends one row in `COPY`'s text format: values separated by tabs, `\N`
/// for NULL, backslash escapes for the separators.
fn copy_row(values: &[Value], out: &mut Vec<u8>) {
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        copy_value(value, out);
    }
    out.push(b'\n');
}

fn copy_value(value: &Value, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let number = |out: &mut Vec<u8>, n: &dyn std::fmt::Display| drop(write!(out, "{n}"));
    match value {
        Value::Bool(Some(v)) => out.push(if *v { b't' } else { b'f' }),
        Value::TinyInt(Some(v)) => number(out, v),
        Value::SmallInt(Some(v)) => number(out, v),
        Value::Int(Some(v)) => number(out, v),
        Value::BigInt(Some(v)) => number(out, v),
        Value::TinyUnsigned(Some(v)) => number(out, v),
        Value::SmallUnsigned(Some(v)) => number(out, v),
        Value::Unsigned(Some(v)) => number(out, v),
        Value::BigUnsigned(Some(v)) => number(out, v),
        Value::Float(Some(v)) => copy_float(f64::from(*v), out),
        Value::Double(Some(v)) => copy_float(*v, out),
        Value::String(Some(v)) => copy_text(v, out),
        Value::Char(Some(v)) => copy_text(&v.to_string(), out),
        Value::Json(Some(v)) => copy_text(&v.to_string(), out),
        Value::ChronoDateTimeUtc(Some(v)) => {
            out.extend_from_slice(v.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_bytes())
        }
        Value::ChronoDateTime(Some(v)) => drop(write!(out, "{}", v.format("%F %T%.f"))),
        Value::ChronoDate(Some(v)) => drop(write!(out, "{}", v.format("%F"))),
        Value::Bytes(Some(v)) => {
            out.extend_from_slice(br"\\x");
            v.iter().for_each(|b| drop(write!(out, "{b:02x}")));
        }
        _ => out.extend_from_slice(br"\N"),
    }
}

fn copy_float(v: f64, out: &mut Vec<u8>) {
    match v {
        v if v.is_nan() => out.extend_from_slice(b"NaN"),
        v if v.is_infinite() => out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" }),
        // Rust's shortest text that reads back to the same number.
        v => drop(write!(out, "{v:?}")),
    }
}

fn copy_text(text: &str, out: &mut Vec<u8>) {
    for byte in text.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(br"\\"),
            b'\t' => out.extend_from_slice(br"\t"),
            b'\n' => out.extend_from_slice(br"\n"),
            b'\r' => out.extend_from_slice(br"\r"),
            other => out.push(other),
        }
    }
}

/// A time bound into many rows of a bulk write. SQLite stores times as text,
/// and formatting the same time for every row cost more than the rest of the
/// row: the text is made once here, exactly as sqlx would make it.
pub fn repeated_time(backend: DbBackend, time: DateTime<Utc>) -> Value {
    match backend {
        DbBackend::Sqlite => time.to_rfc3339_opts(SecondsFormat::AutoSi, false).into(),
        _ => time.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_its_separators_and_writes_null_as_backslash_n() {
        let mut out = Vec::new();
        let values = [
            Value::String(Some("a\tb\nc\\d\re".into())),
            Value::BigInt(None),
            Value::Bool(Some(true)),
            Value::Double(Some(0.1)),
            Value::Double(Some(f64::NAN)),
            Value::ChronoDateTimeUtc(Some(DateTime::from_timestamp(86_400, 5_000_000).unwrap())),
        ];
        copy_row(&values, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "a\\tb\\nc\\\\d\\re\t\\N\tt\t0.1\tNaN\t1970-01-02T00:00:00.005Z\n");
    }

    #[test]
    fn a_binary_batch_splits_new_rows_from_others_each_with_header_and_trailer() {
        let types = [Wire::Text, Wire::Int8];
        let values = [
            Value::String(Some("a".into())),
            Value::BigInt(Some(1)),
            Value::String(Some("b".into())),
            Value::BigInt(None),
            Value::String(Some("c".into())),
            Value::BigInt(Some(3)),
        ];
        let (new, others) = binary_batch(&values, &types, |i| i != 1).unwrap();
        let framed = |rows: &[&[Value]]| {
            let mut data = Vec::new();
            binary_copy::header(&mut data);
            for row in rows {
                binary_copy::row(row, &types, &mut data).unwrap();
            }
            binary_copy::trailer(&mut data);
            data
        };
        assert_eq!(new, framed(&[&values[0..2], &values[4..6]]));
        assert_eq!(others, framed(&[&values[2..4]]));
        let (new, others) = binary_batch(&values, &types, |_| true).unwrap();
        assert_eq!((new, others.len()), (framed(&[&values[0..2], &values[2..4], &values[4..6]]), 0));
    }

    #[test]
    fn a_value_that_does_not_fit_its_column_leaves_the_batch_to_text() {
        let values = [Value::BigInt(Some(1 << 40))];
        assert!(binary_batch(&values, &[Wire::Int4], |_| true).is_none());
        let insert = BulkInsert::new(DbBackend::Postgres, "t", &["n"]);
        let _ = insert.wire.set(vec![Wire::Int4]);
        match insert.batch_with_new(values.to_vec(), |_| true) {
            Batch::Copy { new, format, .. } => assert_eq!((new, format), (b"1099511627776\n".to_vec(), Format::Text)),
            Batch::Statement { .. } => panic!("PostgreSQL batches are copied"),
        }
    }
}
