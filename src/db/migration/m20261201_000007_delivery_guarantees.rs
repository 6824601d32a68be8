//! What the sender needs beyond the outbox: an installation id, made once,
//! that keeps Message-IDs apart between databases (a rebuilt one, or staging
//! and production sending for one domain); and the pauses of senders that
//! cannot use their SMTP server, for `patron status`.

use sea_orm_migration::sea_query::Query;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let installation = Table::create()
            .table("installation")
            .col(integer("id").primary_key())
            .col(string("installation_id"))
            .col(timestamp_with_time_zone("created_at"))
            .to_owned();
        manager.create_table(installation).await?;
        let insert = Query::insert()
            .into_table("installation")
            .columns(["id", "installation_id", "created_at"])
            .values_panic([1.into(), random_id().into(), chrono::Utc::now().into()])
            .to_owned();
        manager.get_connection().execute(&insert).await?;
        let pauses = Table::create()
            .table("delivery_pauses")
            .col(string("sender").primary_key())
            .col(text("reason"))
            .col(timestamp_with_time_zone("since"))
            .col(timestamp_with_time_zone("retry_at"))
            .col(timestamp_with_time_zone("updated_at"))
            .to_owned();
        manager.create_table(pauses).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::drop_all(manager, &["delivery_pauses", "installation"]).await
    }
}

/// 128 random bits as 32 hexadecimal digits.
fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
