//! On PostgreSQL the feature snapshots and scores, which each scoring run
//! rewrites whole, lose their foreign keys: PostgreSQL checks a key row by
//! row, locking the customer (and model) row it points to, and copying a
//! million scores in took 27.5 s with the two checks against 3.5 s without
//! (2-core machine, PostgreSQL 15). Nothing relied on them: both tables are
//! written only with ids just read from `customers` and `models`, neither of
//! which is ever deleted (an erased customer stays as a shell, and erasure
//! deletes its snapshot and scores itself). SQLite keeps the keys: its
//! checks cost little, and dropping one means rebuilding the table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (table, constraint, column, referenced table).
const KEYS: [(&str, &str, &str, &str); 3] = [
    ("feature_snapshots", "fk_feature_snapshots_customer_id", "customer_id", "customers"),
    ("scores", "fk_scores_customer_id", "customer_id", "customers"),
    ("scores", "fk_scores_model_id", "model_id", "models"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for (table, name, _, _) in KEYS {
            manager.drop_foreign_key(ForeignKey::drop().name(name).table(table).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for (table, name, column, referenced) in KEYS {
            let key = ForeignKey::create()
                .name(name)
                .from(table, column)
                .to(referenced, "id")
                .on_delete(ForeignKeyAction::Cascade)
                .to_owned();
            manager.create_foreign_key(key).await?;
        }
        Ok(())
    }
}
