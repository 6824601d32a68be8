//! `patron loyalty adjust`: a manual correction of a member's points, with
//! the reason on the ledger entry. A deduction may not take the balance
//! below zero.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait};

use super::engine::Rules;
use crate::db::entities::customer;

/// Why an adjustment was refused; nothing was written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("no customer with customer_id `{0}`")]
    UnknownCustomer(String),
    #[error("an adjustment needs a reason (--reason)")]
    NoReason,
    #[error("an adjustment of 0 points changes nothing")]
    Zero,
    #[error("an adjustment of {points} points is above customer `{customer}`'s balance of {balance} points")]
    AboveBalance { customer: String, points: i64, balance: i64 },
}

/// Adds `points` (negative to deduct) to the customer's ledger at `now` and
/// returns the new balance. Added points expire like earned ones.
pub async fn adjust(
    db: &DatabaseConnection,
    rules: &Rules,
    external_id: &str,
    points: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<i64> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Refused::NoReason.into());
    }
    if points == 0 {
        return Err(Refused::Zero.into());
    }
    let txn = db.begin().await?;
    let customer_id = customer::Entity::find()
        .filter(customer::Column::ExternalId.eq(external_id))
        .one(&txn)
        .await?
        .ok_or_else(|| Refused::UnknownCustomer(external_id.to_owned()))?
        .id;
    let balance = super::balances(&txn, &[customer_id]).await?.get(&customer_id).copied().unwrap_or(0);
    if balance + points < 0 {
        return Err(Refused::AboveBalance { customer: external_id.to_owned(), points, balance }.into());
    }
    let insert = Query::insert()
        .into_table("loyalty_ledger")
        .columns([
            "customer_id",
            "entry_kind",
            "points",
            "source_key",
            "reason",
            "occurred_at",
            "expires_at",
            "created_at",
        ])
        .values_panic([
            customer_id.into(),
            "adjust".into(),
            points.into(),
            // Unique per customer and moment: an adjustment is never replayed.
            format!("adjust:{customer_id}:{}", now.timestamp_micros()).into(),
            reason.to_owned().into(),
            now.into(),
            (if points > 0 { rules.expiry(now) } else { None }).into(),
            now.into(),
        ])
        .to_owned();
    txn.execute(&insert).await?;
    super::add_to_balance(&txn, customer_id, points).await?;
    txn.commit().await?;
    Ok(balance + points)
}

impl crate::failure::Failure for Refused {
    /// The adjustment asked for is refused.
    fn fault(&self) -> crate::failure::Fault {
        crate::failure::Fault::Input
    }
}
