//! When each outbox row may be sent: `not_before`, the earliest moment (a
//! campaign's send window that was closed at the fire time), and
//! `expires_at`, after which the message is never sent (state `expired`).
//! Both NULL for rows without a window or an expiry, and for rows planned
//! before this migration.
//!
//! The sender's claim looks the due planned rows up in (state, not_before),
//! so that a run waiting overnight for its window is not read at every
//! claim; its expiry of the pending rows looks them up in (state,
//! expires_at), an index of the rows that have an expiry only, which costs
//! the planning of campaigns without one nothing.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::timestamp_with_time_zone_null;

use super::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

const OUTBOX: &str = "outbox";
const COLUMNS: &[&str] = &["not_before", "expires_at"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in COLUMNS {
            let mut column = timestamp_with_time_zone_null(*column);
            manager.alter_table(Table::alter().table(OUTBOX).add_column(&mut column).to_owned()).await?;
        }
        manager.create_index(index(OUTBOX, &["state", "not_before"], false)).await?;
        let mut expiring = index(OUTBOX, &["state", "expires_at"], false);
        manager.create_index(expiring.and_where(Expr::col("expires_at").is_not_null()).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["ix_outbox_state_not_before", "ix_outbox_state_expires_at"] {
            manager.drop_index(Index::drop().name(name).table(OUTBOX).to_owned()).await?;
        }
        for column in COLUMNS {
            manager.alter_table(Table::alter().table(OUTBOX).drop_column(*column).to_owned()).await?;
        }
        Ok(())
    }
}
