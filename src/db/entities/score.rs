//! The propensity a model gave a customer, and its decile (1 = highest),
//! with the customer-base models' outlook.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "scores")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub model_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub customer_id: i64,
    pub score: f64,
    pub decile: i16,
    pub scored_at: DateTimeUtc,
    /// The customer-base models' outlook (migration 000013); NULL without one.
    pub p_alive: Option<f64>,
    pub expected_orders_90d: Option<f64>,
    pub expected_orders_365d: Option<f64>,
    pub clv: Option<f64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
