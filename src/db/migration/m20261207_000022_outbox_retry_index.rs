//! The outbox's index for retries, `(state, next_attempt_at)`, holds only
//! the rows that have a next attempt. The claim reads it for the retrying
//! rows due (`next_attempt_at <= now`, which no row without one matches);
//! every other state is found through `(state, not_before)`. Planned rows,
//! and the new version of each row a result updates, then leave no entry
//! in it: one index less to write for each of a large run's rows.
//!
//! The new index takes a new name and is made before the old one goes:
//! SQLite runs these statements on any of the pool's connections, and one
//! that has not yet read the schema since the drop would still see the
//! old name taken.

use sea_orm_migration::prelude::*;

use super::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

const OUTBOX: &str = "outbox";
const COLUMNS: &[&str] = &["state", "next_attempt_at"];
const ALL_ROWS: &str = "ix_outbox_state_next_attempt_at";
const WITH_NEXT_ATTEMPT: &str = "ix_outbox_next_attempts";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut retries = index(OUTBOX, COLUMNS, false);
        retries.name(WITH_NEXT_ATTEMPT).and_where(Expr::col("next_attempt_at").is_not_null());
        manager.create_index(retries).await?;
        manager.drop_index(Index::drop().name(ALL_ROWS).table(OUTBOX).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_index(index(OUTBOX, COLUMNS, false)).await?;
        manager.drop_index(Index::drop().name(WITH_NEXT_ATTEMPT).table(OUTBOX).to_owned()).await
    }
}
