//! A member of the loyalty programme and the tier they are in.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "loyalty_accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub customer_id: i64,
    pub tier: String,
    pub tier_since: DateTimeUtc,
    pub joined_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The balance (the ledger's sum), kept up to date by recomputes, redemptions and adjustments.
    pub points: i64,
    /// Points that expire within 30 days of the last recompute, unless used first.
    pub points_expiring_30d: i64,
    /// The next tier up and what is missing to reach it (in the tier basis); none in the top tier.
    pub next_tier: Option<String>,
    pub points_to_next_tier: Option<f64>,
    /// `up` or `down`: how the member reached their tier; none since joining.
    pub tier_direction: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
