//! Multi-row INSERTs for bulk writes (imports, feature snapshots, scores).
//!
//! The SQL text depends only on the table, the columns, the conflict rule and
//! the number of rows, so it is built once (by sea-query) and reused with
//! fresh bound values.

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::sea_query::{Expr, InsertStatement, OnConflict, Query, Value};
use sea_orm::{DbBackend, Statement};

/// What a row whose key exists does.
enum Conflict {
    /// Fails the statement.
    Fail,
    /// Updates these columns where a value differs (the others are only set
    /// on insert), keyed on `external_id`.
    UpdateWhenChanged(Vec<&'static str>),
    /// Replaces every other column, keyed on these columns.
    Replace(&'static [&'static str]),
}

pub struct BulkInsert {
    backend: DbBackend,
    table: &'static str,
    columns: &'static [&'static str],
    conflict: Conflict,
    /// The SQL for the last row count used: every full batch shares it.
    cached: Option<(usize, String)>,
}

impl BulkInsert {
    /// Plain inserts.
    pub fn new(backend: DbBackend, table: &'static str, columns: &'static [&'static str]) -> Self {
        BulkInsert { backend, table, columns, conflict: Conflict::Fail, cached: None }
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

    /// Inserts that replace the row with the same `key`: a rewrite of a
    /// whole set, in place (see `db::engine::Txn::delete_before_rewrite`).
    pub fn replace(
        backend: DbBackend,
        table: &'static str,
        columns: &'static [&'static str],
        key: &'static [&'static str],
    ) -> Self {
        BulkInsert { conflict: Conflict::Replace(key), ..Self::new(backend, table, columns) }
    }

    pub fn columns(&self) -> usize {
        self.columns.len()
    }

    /// The statement writing `values`: whole rows, `columns` values each, in order.
    pub fn statement(&mut self, values: Vec<Value>) -> Statement {
        let rows = values.len() / self.columns.len();
        if self.cached.as_ref().is_none_or(|(cached_rows, _)| *cached_rows != rows) {
            let sql = self.backend.build(&self.insert(rows)).sql;
            self.cached = Some((rows, sql));
        }
        let (_, sql) = self.cached.as_ref().expect("built above");
        Statement::from_sql_and_values(self.backend, sql.clone(), values)
    }

    /// The INSERT for `rows` rows; the values are placeholders, bound later.
    fn insert(&self, rows: usize) -> InsertStatement {
        let mut insert = Query::insert();
        insert.into_table(self.table).columns(self.columns.iter().copied());
        for _ in 0..rows {
            insert.values_panic(self.columns.iter().map(|_| Expr::val(Value::BigInt(Some(0)))));
        }
        match &self.conflict {
            Conflict::Fail => {}
            Conflict::UpdateWhenChanged(updatable) => {
                insert.on_conflict(self.update_when_changed(updatable));
            }
            Conflict::Replace(key) => {
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

/// A time bound into many rows of a bulk write. SQLite stores times as text,
/// and formatting the same time for every row cost more than the rest of the
/// row: the text is made once here, exactly as sqlx would make it.
pub fn repeated_time(backend: DbBackend, time: DateTime<Utc>) -> Value {
    match backend {
        DbBackend::Sqlite => time.to_rfc3339_opts(SecondsFormat::AutoSi, false).into(),
        _ => time.into(),
    }
}
