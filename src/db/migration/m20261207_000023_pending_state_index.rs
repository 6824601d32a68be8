//! On PostgreSQL the outbox's `(state, not_before)` index holds only the
//! rows still on their way (planned, retrying, sending, held): the rows a
//! claim and the next due time look for. A sent, failed, suppressed,
//! expired or control row then leaves no entry in it, so the sender's
//! fold, which makes each message's row `sent`, writes one index entry
//! fewer per message (the figures are in docs/benchmarks.md). Every query
//! of those rows names their state (`state = 'planned'`, `state IN
//! (...)`), which PostgreSQL proves within the index's condition.
//!
//! SQLite keeps the whole index: its planner uses a partial index only for
//! a query that repeats the index's condition word for word.
//!
//! The new index is made under another name before the old one goes, and
//! then takes its name, in one statement batch: one transaction.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The states of the rows still on their way, as stored.
const PENDING: &str = "'planned', 'retrying', 'sending', 'held'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace_index(manager, &format!(r#"WHERE "state" IN ({PENDING})"#)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        replace_index(manager, "").await
    }
}

/// Builds `(state, not_before)` again with the condition `condition`
/// (nothing: every row), on PostgreSQL.
pub(super) async fn replace_index(manager: &SchemaManager<'_>, condition: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(());
    }
    let replace = format!(
        r#"CREATE INDEX "ix_outbox_state_not_before_new" ON "outbox" ("state", "not_before") {condition};
           DROP INDEX "ix_outbox_state_not_before";
           ALTER INDEX "ix_outbox_state_not_before_new" RENAME TO "ix_outbox_state_not_before""#
    );
    manager.get_connection().execute_unprepared(&replace).await.map(drop)
}
