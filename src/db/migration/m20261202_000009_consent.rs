//! Consent per subscription topic, with its history: the topics a customer
//! left (`topic_opt_outs`; everything else follows `marketing_consent`), every
//! change of consent with its source and basis (`consent_events`, appended
//! only), and when a customer was erased (only an anonymous shell row is kept
//! so that campaign totals and kept orders still add up).

use sea_orm_migration::{prelude::*, schema::*};

use super::{create_all, foreign_key, id_column, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

const OPT_OUTS: &str = "topic_opt_outs";
const EVENTS: &str = "consent_events";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let opt_outs = Table::create()
            .table(OPT_OUTS)
            .col(big_integer("customer_id"))
            .col(string("topic"))
            .col(timestamp_with_time_zone("created_at"))
            .primary_key(Index::create().col("customer_id").col("topic"))
            .foreign_key(&mut foreign_key(OPT_OUTS, "customer_id", "customers", ForeignKeyAction::Cascade))
            .to_owned();
        // `topic` NULL: marketing as a whole (or a suppression of the address).
        let events = Table::create()
            .table(EVENTS)
            .col(id_column(manager))
            .col(timestamp_with_time_zone("occurred_at"))
            .col(big_integer_null("customer_id"))
            .col(string_null("topic"))
            .col(string_null("old_state"))
            .col(string("new_state"))
            .col(string("source"))
            .col(text_null("basis"))
            .foreign_key(&mut foreign_key(EVENTS, "customer_id", "customers", ForeignKeyAction::Cascade))
            .to_owned();
        create_all(manager, vec![opt_outs, events], vec![index(EVENTS, &["customer_id", "occurred_at"], false)])
            .await?;
        let mut erased_at = timestamp_with_time_zone_null("erased_at");
        manager.alter_table(Table::alter().table("customers").add_column(&mut erased_at).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table("customers").drop_column("erased_at").to_owned()).await?;
        super::drop_all(manager, &[EVENTS, OPT_OUTS]).await
    }
}
