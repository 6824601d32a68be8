//! An entry of the append-only points ledger; the balance is the sum of the entries.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "loyalty_ledger")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub customer_id: i64,
    pub entry_kind: String,
    pub points: i64,
    /// What caused the entry ("order:42"); unique, so that no cause counts twice.
    #[sea_orm(unique)]
    pub source_key: String,
    pub order_id: Option<i64>,
    pub reason: Option<String>,
    pub occurred_at: DateTimeUtc,
    pub expires_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
