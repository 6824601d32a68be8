//! Suppressions looked up by customer as well as by address. An unsubscribe
//! or complaint follows the person to a new address, so the sender's last
//! check before each message, its check of each claim and the planner ask
//! for a customer's suppressions too. Without this index every such check
//! read the whole table, and a long suppression list slowed sending to a
//! crawl (the figures are in docs/benchmarks.md).

use sea_orm_migration::prelude::*;

use super::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_index(index("suppressions", &["customer_id"], false)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("ix_suppressions_customer_id").table("suppressions").to_owned()).await
    }
}
