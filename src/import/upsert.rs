//! The one write an import makes: a multi-row INSERT that updates a row with
//! the same external id only where a value differs, so that a re-import
//! rewrites nothing and counts as unchanged.

use sea_orm::sea_query::{Expr, InsertStatement, OnConflict, Query, Value};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};

/// Builds and runs the upsert of `rows` into `table`; `columns` name the values
/// of each row in order, `updatable` those a re-import may change (the rest are
/// only set on insert). Returns the number of rows inserted or changed.
pub async fn upsert(
    txn: &DatabaseTransaction,
    table: &'static str,
    columns: &[&'static str],
    updatable: &[&'static str],
    rows: Vec<Vec<Value>>,
) -> Result<u64, DbErr> {
    if rows.is_empty() {
        return Ok(0);
    }
    let statement = statement(table, columns, updatable, rows);
    Ok(txn.execute(&statement).await?.rows_affected())
}

fn statement(
    table: &'static str,
    columns: &[&'static str],
    updatable: &[&'static str],
    rows: Vec<Vec<Value>>,
) -> InsertStatement {
    let mut insert = Query::insert();
    insert.into_table(table).columns(columns.iter().copied());
    for row in rows {
        insert.values_panic(row.into_iter().map(Expr::val));
    }
    // Static text made from column names in this crate, never from input.
    let changed = updatable
        .iter()
        .map(|c| format!("{table}.{c} IS DISTINCT FROM excluded.{c}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let mut set: Vec<&'static str> = updatable.to_vec();
    set.push("updated_at");
    insert.on_conflict(
        OnConflict::column("external_id")
            .update_columns(set)
            .action_and_where(Expr::cust(changed))
            .to_owned(),
    );
    insert
}
