//! References from an imported row to a customer by external id, resolved
//! for a whole batch with one query.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::{Pending, RowError};
use crate::db::entities::customer;

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
    txn: &impl ConnectionTrait,
    batch: &mut [Pending<R>],
    customer_of: impl Fn(&mut R) -> &mut CustomerRef,
) -> Result<Vec<(usize, RowError)>, DbErr> {
    let mut wanted: Vec<String> = batch.iter_mut().map(|p| customer_of(&mut p.row).external_id.clone()).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let known: HashMap<String, i64> = customer::Entity::find()
        .select_only()
        .column(customer::Column::ExternalId)
        .column(customer::Column::Id)
        .filter(customer::Column::ExternalId.is_in(wanted))
        .into_tuple::<(String, i64)>()
        .all(txn)
        .await?
        .into_iter()
        .collect();
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
