//! On PostgreSQL the external ids of customers, orders and interactions
//! compare byte by byte (`COLLATE "C"`). They are the shop's opaque keys,
//! looked up for every imported row and kept in a unique index that every
//! insert descends; under the database's default collation each of those
//! comparisons goes through the locale (`strcoll`), even under a libc
//! `C.UTF-8`, which PostgreSQL does not treat as `C` (the gain on imports:
//! docs/benchmarks.md). Equality is the same under both, and ids in ASCII
//! sort the same. SQLite compares bytes already.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 3] = ["customers", "orders", "interactions"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_collation(manager, r#"COLLATE "C""#).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_collation(manager, "").await
    }
}

/// Retypes each table's `external_id` (the type it has, `varchar`) with
/// `collation`, or the default when empty; its unique index is rebuilt.
async fn set_collation(manager: &SchemaManager<'_>, collation: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for table in TABLES {
        let sql = format!(r#"ALTER TABLE "{table}" ALTER COLUMN external_id TYPE varchar {collation}"#);
        manager.get_connection().execute_unprepared(&sql).await?;
    }
    Ok(())
}
