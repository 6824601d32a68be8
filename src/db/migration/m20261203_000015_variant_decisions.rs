//! The A/B winners of campaigns with a `[winner]` table (`crate::campaign::winner`):
//! one decision per campaign, taken once, with the figures it rested on; and
//! on each outbox row whether its variant is the winner's (`by_winner`)
//! rather than drawn by the variants' shares, so that comparisons between
//! variants count only the drawn ones.

use sea_orm_migration::{prelude::*, schema::*};

use super::{create_all, id_column, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

const DECISIONS: &str = "variant_decisions";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `significant`: the winner beat every other variant at the campaign's
        // confidence; false when the time was up and the first variant was kept.
        // `arms`: each variant's customers, conversions and revenue (JSON).
        let decisions = Table::create()
            .table(DECISIONS)
            .col(id_column(manager))
            .col(string("campaign"))
            .col(string("winner"))
            .col(string("metric"))
            .col(boolean("significant"))
            .col(double_null("p_value"))
            .col(text("reason"))
            .col(json_null("arms"))
            .col(timestamp_with_time_zone("decided_at"))
            .to_owned();
        // Unique by campaign: two daemons judging at once record one decision.
        create_all(manager, vec![decisions], vec![index(DECISIONS, &["campaign"], true)]).await?;
        let by_winner = Table::alter().table("outbox").add_column(boolean("by_winner").default(false)).to_owned();
        manager.alter_table(by_winner).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table("outbox").drop_column("by_winner").to_owned()).await?;
        super::drop_all(manager, &[DECISIONS]).await
    }
}
