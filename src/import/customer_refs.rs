//! References from an imported row to a customer by external id, resolved
//! for a whole batch with one query.

use std::collections::HashMap;

use sea_orm::DbErr;
use sea_orm::sea_query::{Expr, ExprTrait, Query};

use super::{Pending, RowError};
use crate::db::bulk::BulkTarget;

/// A customer's external id, and its database id once resolved.
pub struct CustomerRef {
    external_id: String,
    id: i64,
}

impl CustomerRef {
    pub fn new(external_id: String) -> Self {
        CustomerRef { external_id, id: 0 }
    }

    pub fn id(&self) -> i64 {
        self.id
    }
}

/// Looks up the customers of a batch; returns the rows whose customer is unknown.
pub async fn resolve_customers<R>(
    txn: &impl BulkTarget,
    batch: &mut [Pending<R>],
    customer_of: impl Fn(&mut R) -> &mut CustomerRef,
) -> Result<Vec<(usize, RowError)>, DbErr> {
    let mut wanted: Vec<String> = batch.iter_mut().map(|p| customer_of(&mut p.row).external_id.clone()).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let known = known_customers(txn, wanted).await?;
    let mut unknown = Vec::new();
    for (index, pending) in batch.iter_mut().enumerate() {
        let line = pending.line;
        let reference = customer_of(&mut pending.row);
        match known.get(&reference.external_id) {
            Some(id) => reference.id = *id,
            None => unknown.push((
                index,
                RowError::new(
                    line,
                    Some("customer_id"),
                    Some(&reference.external_id),
                    "unknown customer; import the customers first".into(),
                ),
            )),
        }
    }
    Ok(unknown)
}

/// The ids of the customers among `external_ids`, by external id.
pub(super) async fn known_customers(
    txn: &impl BulkTarget,
    external_ids: Vec<String>,
) -> Result<HashMap<String, i64>, DbErr> {
    if let Some(postgres) = txn.postgres() {
        let keys: Vec<&str> = external_ids.iter().map(String::as_str).collect();
        return postgres.ids_by_external_id("customers", &keys).await;
    }
    let select = Query::select().from("customers").and_where(Expr::col("external_id").is_in(external_ids)).to_owned();
    let pairs: Vec<(String, i64)> = crate::db::sqlite_rows_as_json(txn, &["external_id", "id"], select).await?;
    Ok(pairs.into_iter().collect())
}
