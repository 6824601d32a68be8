//! The latest features of a customer, as of a date (see the scoring migration).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "feature_snapshots")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub customer_id: i64,
    pub as_of: DateTimeUtc,
    pub computed_at: DateTimeUtc,
    pub recency_days: Option<f64>,
    pub monetary_mean: Option<f64>,
    pub first_order_value: Option<f64>,
    pub tenure_days: Option<f64>,
    pub gap_mean_days: Option<f64>,
    pub gap_std_days: Option<f64>,
    pub spend_trend: Option<f64>,
    pub loyalty_points: Option<f64>,
    pub days_since_last_message: Option<f64>,
    pub monetary_total: f64,
    pub spend_30d: f64,
    pub spend_90d: f64,
    pub spend_365d: f64,
    pub frequency: i32,
    pub orders_total: i32,
    pub orders_30d: i32,
    pub orders_90d: i32,
    pub orders_365d: i32,
    pub distinct_categories: i32,
    pub complaints_open: i32,
    pub complaints_365d: i32,
    pub loyalty_tier: Option<String>,
    /// The model whose score and outlook follow (migration 25); None in
    /// snapshots written before it.
    pub model_id: Option<i64>,
    pub score: Option<f64>,
    pub p_alive: Option<f64>,
    pub expected_orders_90d: Option<f64>,
    pub expected_orders_365d: Option<f64>,
    pub clv: Option<f64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
