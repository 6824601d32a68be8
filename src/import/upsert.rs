//! The one write an import makes: a multi-row INSERT that updates a row with
//! the same external id only where a value differs, so that a re-import
//! rewrites nothing and counts as unchanged.
//!
//! The SQL text depends only on the table, the columns and the number of rows,
//! so it is built once (by sea-query) and reused with fresh bound values.

use sea_orm::sea_query::{Expr, InsertStatement, OnConflict, Query, Value};
use sea_orm::{DbBackend, Statement};

pub struct Upsert {
    backend: DbBackend,
    table: &'static str,
    columns: &'static [&'static str],
    /// The columns a re-import may change; the others are only set on insert.
    updatable: Vec<&'static str>,
    /// The SQL for the last row count used: every full batch shares it.
    cached: Option<(usize, String)>,
}

impl Upsert {
    pub fn new(
        backend: DbBackend,
        table: &'static str,
        columns: &'static [&'static str],
        updatable: Vec<&'static str>,
    ) -> Self {
        Upsert { backend, table, columns, updatable, cached: None }
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
        // Static text made from column names in this crate, never from input.
        let changed = self
            .updatable
            .iter()
            .map(|c| format!("{table}.{c} IS DISTINCT FROM excluded.{c}", table = self.table))
            .collect::<Vec<_>>()
            .join(" OR ");
        let mut set = self.updatable.clone();
        set.push("updated_at");
        insert.on_conflict(
            OnConflict::column("external_id").update_columns(set).action_and_where(Expr::cust(changed)).to_owned(),
        );
        insert
    }
}
