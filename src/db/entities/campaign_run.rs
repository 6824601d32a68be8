//! One fire of a campaign; (campaign, scheduled_at) is unique.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "campaign_runs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub campaign: String,
    pub kind: String,
    pub scheduled_at: DateTimeUtc,
    pub state: String,
    /// The audience size after each planning step, by step name.
    pub step_counts: Option<Json>,
    #[sea_orm(column_type = "Text", nullable)]
    pub detail: Option<String>,
    pub created_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
