//! Larger statistics samples for the customer column of the orders and the
//! loyalty ledger (PostgreSQL; SQLite has no such setting). Each customer
//! has a few rows in these tables, and the default sample of 30,000 rows
//! from tens of millions saw most customers once: PostgreSQL then guessed
//! far too few customers. The loyalty recompute's tiers query
//! sized its aggregation by that guess and spilled it to disk, and each
//! chunk's lookup of a thousand members was expected to return a hundred
//! thousand rows (the figures are in docs/benchmarks.md).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tables and their customer column whose sample is enlarged.
const COLUMNS: [(&str, &str); 2] = [("orders", "customer_id"), ("loyalty_ledger", "customer_id")];

/// Rows sampled are 300 times the target: 300,000 instead of 30,000.
const STATISTICS_TARGET: i32 = 1000;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_statistics(manager, STATISTICS_TARGET).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // -1: the server's default_statistics_target again.
        set_statistics(manager, -1).await
    }
}

async fn set_statistics(manager: &SchemaManager<'_>, target: i32) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(());
    }
    for (table, column) in COLUMNS {
        // Sampled again at once, rather than at autovacuum's next visit.
        let alter = format!(
            r#"ALTER TABLE "{table}" ALTER COLUMN "{column}" SET STATISTICS {target}; ANALYZE "{table}" ("{column}")"#
        );
        manager.get_connection().execute_unprepared(&alter).await?;
    }
    Ok(())
}
