//! The loyalty programme: one account per member, an append-only points ledger
//! and the history of tier changes.

use sea_orm_migration::{prelude::*, schema::*};

use super::{create_all, drop_all, foreign_key, id_column, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let accounts = Table::create()
            .table("loyalty_accounts")
            .col(big_integer("customer_id").primary_key())
            .col(string("tier"))
            .col(timestamp_with_time_zone("tier_since"))
            .col(timestamp_with_time_zone("joined_at"))
            .col(timestamp_with_time_zone("updated_at"))
            .foreign_key(&mut foreign_key("loyalty_accounts", "customer_id", "customers", ForeignKeyAction::Cascade))
            .to_owned();
        // `source_key` makes every entry idempotent ("order:42", "redemption:R-7"):
        // replaying an import can never add the same points twice.
        let ledger = Table::create()
            .table("loyalty_ledger")
            .col(id_column(manager))
            .col(big_integer("customer_id"))
            .col(string("entry_kind"))
            .col(big_integer("points"))
            .col(string_uniq("source_key"))
            .col(big_integer_null("order_id"))
            .col(string_null("reason"))
            .col(timestamp_with_time_zone("occurred_at"))
            .col(timestamp_with_time_zone_null("expires_at"))
            .col(timestamp_with_time_zone("created_at"))
            .foreign_key(&mut foreign_key("loyalty_ledger", "customer_id", "customers", ForeignKeyAction::Cascade))
            .foreign_key(&mut foreign_key("loyalty_ledger", "order_id", "orders", ForeignKeyAction::SetNull))
            .to_owned();
        let tier_changes = Table::create()
            .table("loyalty_tier_changes")
            .col(id_column(manager))
            .col(big_integer("customer_id"))
            .col(string_null("from_tier"))
            .col(string("to_tier"))
            .col(timestamp_with_time_zone("changed_at"))
            .foreign_key(&mut foreign_key(
                "loyalty_tier_changes",
                "customer_id",
                "customers",
                ForeignKeyAction::Cascade,
            ))
            .to_owned();
        create_all(
            manager,
            vec![accounts, ledger, tier_changes],
            vec![
                index("loyalty_ledger", &["customer_id", "occurred_at"], false),
                index("loyalty_tier_changes", &["customer_id", "changed_at"], false),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_all(manager, &["loyalty_tier_changes", "loyalty_ledger", "loyalty_accounts"]).await
    }
}
