//! Each feature snapshot carries the score and outlook of the model that
//! scoring wrote it with, and `snapshot_deciles` names that model and the
//! decile floors its scores were ranked by, once every snapshot carries
//! them. A campaign's segment then reads one table instead of joining the
//! snapshots to the scores, which on PostgreSQL was most of its planning
//! (the figures are in docs/benchmarks.md). The `scores` table stays: it
//! holds every model's scores, with their deciles.
//!
//! Snapshots written before this migration carry no score, and no floors
//! are recorded until the next scoring: segments join the scores until then.

use sea_orm_migration::{prelude::*, schema::*};

use super::{create_all, drop_all};

#[derive(DeriveMigrationName)]
pub struct Migration;

const SNAPSHOTS: &str = "feature_snapshots";
const SCORE_COLUMNS: &[&str] = &["score", "p_alive", "expected_orders_90d", "expected_orders_365d", "clv"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        let mut model = big_integer_null("model_id");
        manager.alter_table(Table::alter().table(SNAPSHOTS).add_column(&mut model).to_owned()).await?;
        for column in SCORE_COLUMNS {
            let mut column = double_null(*column);
            manager.alter_table(Table::alter().table(SNAPSHOTS).add_column(&mut column).to_owned()).await?;
        }
        // One row per decile floor, 1 to 9; none while the snapshots'
        // scores are not all of one model ranked together.
        let deciles = Table::create()
            .table("snapshot_deciles")
            .col(small_integer("decile").primary_key())
            .col(big_integer("model_id"))
            .col(double("floor"))
            .to_owned();
        create_all(manager, vec![deciles], vec![]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_all(manager, &["snapshot_deciles"]).await?;
        for column in SCORE_COLUMNS.iter().chain(&["model_id"]) {
            manager.alter_table(Table::alter().table(SNAPSHOTS).drop_column(*column).to_owned()).await?;
        }
        Ok(())
    }
}
