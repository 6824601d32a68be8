//! The sender's results as an append-only log (`outbox_results`), folded
//! into their outbox rows later. The workers wait for each group commit of
//! results; updating their outbox rows writes a new version of each and an
//! entry in each of the outbox's seven indexes, an insert here one index
//! entry a row. On PostgreSQL, where that difference is most of the wait,
//! the recorder appends here and `delivery::result_log` moves the rows into
//! the outbox off the workers' path (the figures are in docs/benchmarks.md);
//! SQLite's recorder writes the outbox itself.

use sea_orm_migration::{prelude::*, schema::*};

use super::{create_all, drop_all, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // No primary key: the rows are only inserted, and read and deleted
        // all together; the outbox row's id finds a pending result.
        let results = Table::create()
            .table("outbox_results")
            .col(big_integer("outbox_id"))
            .col(integer("attempts"))
            .col(string("state"))
            .col(timestamp_with_time_zone_null("sent_at"))
            .col(string_null("message_id"))
            .col(string_null("server_reply"))
            .col(string_null("last_error"))
            .col(timestamp_with_time_zone_null("next_attempt_at"))
            .col(timestamp_with_time_zone("recorded_at"))
            .to_owned();
        create_all(manager, vec![results], vec![index("outbox_results", &["outbox_id"], false)]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_all(manager, &["outbox_results"]).await
    }
}
