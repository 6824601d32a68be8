//! Customers, their orders and their interactions (complaints, inquiries, suggestions).

use sea_orm_migration::{prelude::*, schema::*};

use super::{create_all, drop_all, foreign_key, id_column, index, record_time};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let customers = Table::create()
            .table("customers")
            .col(id_column(manager))
            .col(string_uniq("external_id"))
            .col(string("email"))
            .col(string_null("first_name"))
            .col(string_null("last_name"))
            .col(date_null("birthday"))
            .col(timestamp_with_time_zone_null("signed_up_at"))
            .col(boolean("marketing_consent"))
            .col(json_binary("attributes"))
            .col(record_time("created_at"))
            .col(record_time("updated_at"))
            .to_owned();
        let orders = Table::create()
            .table("orders")
            .col(id_column(manager))
            .col(string_uniq("external_id"))
            .col(big_integer("customer_id"))
            .col(timestamp_with_time_zone("ordered_at"))
            .col(big_integer("amount_cents"))
            .col(string_null("currency"))
            .col(integer_null("items"))
            .col(string_null("category"))
            .col(record_time("created_at"))
            .col(record_time("updated_at"))
            .foreign_key(&mut foreign_key("orders", "customer_id", "customers", ForeignKeyAction::Cascade))
            .to_owned();
        let interactions = Table::create()
            .table("interactions")
            .col(id_column(manager))
            .col(string_uniq("external_id"))
            .col(big_integer("customer_id"))
            .col(string("kind"))
            .col(string("status"))
            .col(timestamp_with_time_zone("opened_at"))
            .col(timestamp_with_time_zone_null("resolved_at"))
            .col(string_null("channel"))
            .col(text_null("note"))
            .col(record_time("created_at"))
            .col(record_time("updated_at"))
            .foreign_key(&mut foreign_key("interactions", "customer_id", "customers", ForeignKeyAction::Cascade))
            .to_owned();
        create_all(
            manager,
            vec![customers, orders, interactions],
            vec![
                index("orders", &["customer_id", "ordered_at"], false),
                index("interactions", &["customer_id", "kind", "status"], false),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_all(manager, &["interactions", "orders", "customers"]).await
    }
}
