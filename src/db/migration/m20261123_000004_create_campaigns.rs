//! Campaign runs, the outbox (one row per customer per run) and suppressions.

use sea_orm_migration::{prelude::*, schema::*};

use super::{create_all, drop_all, foreign_key, id_column, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // (campaign, scheduled_at) is unique: a second planner of the same fire plans nothing.
        let runs = Table::create()
            .table("campaign_runs")
            .col(id_column(manager))
            .col(string("campaign"))
            .col(string("kind"))
            .col(timestamp_with_time_zone("scheduled_at"))
            .col(string("state"))
            .col(json_null("step_counts"))
            .col(text_null("detail"))
            .col(timestamp_with_time_zone("created_at"))
            .col(timestamp_with_time_zone_null("finished_at"))
            .to_owned();
        let outbox = Table::create()
            .table("outbox")
            .col(id_column(manager))
            .col(big_integer("run_id"))
            .col(big_integer("customer_id"))
            .col(string("state"))
            .col(string_null("variant"))
            .col(integer("attempts"))
            .col(timestamp_with_time_zone_null("next_attempt_at"))
            .col(timestamp_with_time_zone_null("lease_until"))
            .col(string_null("message_id"))
            .col(timestamp_with_time_zone_null("sent_at"))
            .col(text_null("last_error"))
            .col(text_null("server_reply"))
            .col(timestamp_with_time_zone("created_at"))
            .col(timestamp_with_time_zone("updated_at"))
            .foreign_key(&mut foreign_key("outbox", "run_id", "campaign_runs", ForeignKeyAction::Cascade))
            .foreign_key(&mut foreign_key("outbox", "customer_id", "customers", ForeignKeyAction::Cascade))
            .to_owned();
        // Keyed by address, not by customer: a suppression outlives an erased customer.
        let suppressions = Table::create()
            .table("suppressions")
            .col(id_column(manager))
            .col(string_uniq("email"))
            .col(big_integer_null("customer_id"))
            .col(string("reason"))
            .col(string_null("source"))
            .col(timestamp_with_time_zone("created_at"))
            .foreign_key(&mut foreign_key("suppressions", "customer_id", "customers", ForeignKeyAction::SetNull))
            .to_owned();
        create_all(
            manager,
            vec![runs, outbox, suppressions],
            vec![
                index("campaign_runs", &["campaign", "scheduled_at"], true),
                index("outbox", &["run_id", "customer_id"], true),
                index("outbox", &["state", "next_attempt_at"], false),
                index("outbox", &["customer_id", "sent_at"], false),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_all(manager, &["outbox", "suppressions", "campaign_runs"]).await
    }
}
