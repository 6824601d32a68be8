//! What comes back from the mail world: bounces, complaints and unsubscribe
//! requests, one row per event, with the outbox row it was matched to (the
//! fingerprint makes a report delivered twice count once); and the campaigns
//! paused because too many of their recipients complained or bounced.

use sea_orm_migration::{prelude::*, schema::*};

use super::{create_all, id_column, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

const EVENTS: &str = "feedback_events";
const PAUSES: &str = "campaign_pauses";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let events = Table::create()
            .table(EVENTS)
            .col(id_column(manager))
            .col(timestamp_with_time_zone("received_at"))
            .col(string("kind"))
            .col(string_null("status"))
            .col(text_null("diagnostic"))
            .col(string_null("email"))
            .col(big_integer_null("outbox_id"))
            .col(big_integer_null("run_id"))
            .col(big_integer_null("customer_id"))
            .col(string("source"))
            .col(string_null("matched_by"))
            .col(string("fingerprint"))
            .to_owned();
        let indexes = vec![
            index(EVENTS, &["fingerprint"], true),
            index(EVENTS, &["email", "kind", "received_at"], false),
            index(EVENTS, &["run_id", "kind"], false),
        ];
        let pauses = Table::create()
            .table(PAUSES)
            .col(string("campaign").primary_key())
            .col(text("reason"))
            .col(timestamp_with_time_zone("since"))
            .to_owned();
        create_all(manager, vec![events, pauses], indexes).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::drop_all(manager, &[PAUSES, EVENTS]).await
    }
}
