//! References from an imported row to a customer by external id, resolved
//! for a whole batch with one query: in the import's transaction, or ahead
//! of the writer on a connection of their own ([`look_ahead`]).

use std::collections::HashMap;

use sea_orm::DbErr;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use tokio::sync::mpsc::{Receiver, Sender};

use super::reading::{Chunk, Parsed};
use super::{Pending, RowError};
use crate::db::bulk::BulkTarget;
use crate::db::postgres::PgTxn;

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

/// Customers' ids by external id.
pub type Known = HashMap<String, i64>;

/// The customer a row refers to, if its kind of row refers to one.
pub type CustomerOf<R> = fn(&mut R) -> Option<&mut CustomerRef>;

/// Fills in the customers of a batch, from `known` when they were looked up
/// ahead, else with one query in `txn`; returns the rows whose customer is
/// unknown.
pub async fn resolve_customers<R>(
    txn: &impl BulkTarget,
    batch: &mut [Pending<R>],
    customer_of: CustomerOf<R>,
    known: Option<Known>,
) -> Result<Vec<(usize, RowError)>, DbErr> {
    let known = match known {
        Some(known) => known,
        None => {
            let wanted = wanted(batch.iter_mut().map(|pending| &mut pending.row), customer_of);
            if wanted.is_empty() {
                return Ok(Vec::new());
            }
            known_customers(txn, wanted).await?
        }
    };
    let mut unknown = Vec::new();
    for (index, pending) in batch.iter_mut().enumerate() {
        let line = pending.line;
        let Some(reference) = customer_of(&mut pending.row) else { continue };
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

/// The customers' external ids the rows refer to, sorted, each once.
fn wanted<'a, R: 'a>(rows: impl Iterator<Item = &'a mut R>, customer_of: CustomerOf<R>) -> Vec<String> {
    let mut wanted: Vec<String> =
        rows.filter_map(|row| customer_of(row).map(|reference| reference.external_id.clone())).collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// The ids of the customers among `external_ids`, by external id.
pub(super) async fn known_customers(txn: &impl BulkTarget, external_ids: Vec<String>) -> Result<Known, DbErr> {
    if let Some(postgres) = txn.postgres() {
        let keys: Vec<&str> = external_ids.iter().map(String::as_str).collect();
        return postgres.ids_by_external_id("customers", &keys).await;
    }
    let select = Query::select().from("customers").and_where(Expr::col("external_id").is_in(external_ids)).to_owned();
    let pairs: Vec<(String, i64)> = crate::db::sqlite_rows_as_json(txn, &["external_id", "id"], select).await?;
    Ok(pairs.into_iter().collect())
}

/// Looks up the customers of each chunk the reader sends, in `sides`
/// (transactions of their own, on PostgreSQL), and passes the chunk on to
/// the writer with them. The lookups of the next chunk then run while the
/// writer writes the last one, instead of before it: when the customers'
/// ids are scattered over their index (an interactions file), each batch
/// looks up every key on its own, most of the import's time on the server.
/// With two sides each looks up half of a chunk's ids, side by side.
/// Only for an import whose transaction writes no customers, so that the
/// ones it needs are committed and the sides see the same (each statement
/// reads the rows committed when it starts, in any transaction). A lookup
/// that fails leaves this and the later chunks to the writer's own.
pub async fn look_ahead<R>(
    sides: Vec<PgTxn>,
    customer_of: CustomerOf<R>,
    mut chunks: Receiver<Chunk<R>>,
    looked_up: Sender<Chunk<R>>,
) {
    let mut failed = false;
    while let Some(mut chunk) = chunks.recv().await {
        if !failed {
            let rows = chunk.records.iter_mut().filter_map(|parsed| match parsed {
                Parsed::Row(pending) => Some(&mut pending.row),
                Parsed::Refused(..) => None,
            });
            match look_up(&sides, &wanted(rows, customer_of)).await {
                Ok(known) => chunk.customers = Some(known),
                Err(error) => {
                    tracing::debug!(%error, "looking up customers ahead; the import looks them up itself");
                    failed = true;
                }
            }
        }
        if looked_up.send(chunk).await.is_err() {
            break;
        }
    }
    for side in sides {
        let _ = side.rollback().await;
    }
}

/// The customers among `wanted` (sorted), each side looking up its share:
/// a run of neighbouring ids, so that a range read still fits it.
async fn look_up(sides: &[PgTxn], wanted: &[String]) -> Result<Known, DbErr> {
    let share = wanted.len().div_ceil(sides.len()).max(1);
    let lookups = sides.iter().zip(wanted.chunks(share)).map(|(side, keys)| async move {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        side.ids_by_external_id("customers", &keys).await
    });
    let mut known = Known::with_capacity(wanted.len());
    for found in futures_util::future::try_join_all(lookups).await? {
        known.extend(found);
    }
    Ok(known)
}
