//! On PostgreSQL the rows being sent are indexed by their lease, not by
//! `(state, not_before)`: `ix_outbox_leases` holds the `sending` rows by
//! `lease_until`, and `(state, not_before)` holds the planned, retrying and
//! held rows only. Each claim looks for a dead sender's rows (`sending`,
//! lease run out); through `(state, not_before)` it read every row being
//! sent to find none (thousands in the middle of a large send; the figures
//! are in docs/benchmarks.md), where the lease's range holds only the rows
//! whose lease ran out. A claim writes one entry for the row it makes `sending`
//! either way: in this index instead of the other.
//!
//! SQLite keeps its whole `(state, not_before)` index, which has the
//! `sending` rows (see migration 23).

use sea_orm_migration::prelude::*;

use super::m20261207_000023_pending_state_index::replace_index;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The states `(state, not_before)` holds: on their way, and not being sent.
const WAITING: &str = "'planned', 'retrying', 'held'";

/// Migration 23's states, for the way back.
const PENDING: &str = "'planned', 'retrying', 'sending', 'held'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        let leases = r#"CREATE INDEX "ix_outbox_leases" ON "outbox" ("lease_until") WHERE "state" = 'sending'"#;
        manager.get_connection().execute_unprepared(leases).await?;
        replace_index(manager, &format!(r#"WHERE "state" IN ({WAITING})"#)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        replace_index(manager, &format!(r#"WHERE "state" IN ({PENDING})"#)).await?;
        manager.get_connection().execute_unprepared(r#"DROP INDEX "ix_outbox_leases""#).await.map(drop)
    }
}
