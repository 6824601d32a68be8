//! On PostgreSQL the tables written in bulk lose their foreign keys too:
//! orders and interactions (imports), the loyalty ledger, accounts and tier
//! changes (the recompute), the outbox (planning) and consent events.
//! PostgreSQL checks a key row by row, locking the row it points to, which
//! cost about 20 microseconds a row (migration 000010 measured it on
//! scores): most of an import of orders, and most of a first loyalty run,
//! which writes nearly six million rows with seven million checks. Nothing
//! relied on them: every writer resolves its ids itself (an import refuses a
//! row whose customer is unknown, the recompute and the planner write ids
//! they just read), customers, models and campaign runs are never deleted,
//! and erasure deletes a person's rows itself, ledger before orders. SQLite
//! keeps the keys: its checks cost little, and dropping one means
//! rebuilding the table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (table, column, referenced table, on delete), named as `foreign_key` names them.
const KEYS: [(&str, &str, &str, ForeignKeyAction); 9] = [
    ("orders", "customer_id", "customers", ForeignKeyAction::Cascade),
    ("interactions", "customer_id", "customers", ForeignKeyAction::Cascade),
    ("loyalty_accounts", "customer_id", "customers", ForeignKeyAction::Cascade),
    ("loyalty_ledger", "customer_id", "customers", ForeignKeyAction::Cascade),
    ("loyalty_ledger", "order_id", "orders", ForeignKeyAction::SetNull),
    ("loyalty_tier_changes", "customer_id", "customers", ForeignKeyAction::Cascade),
    ("outbox", "run_id", "campaign_runs", ForeignKeyAction::Cascade),
    ("outbox", "customer_id", "customers", ForeignKeyAction::Cascade),
    ("consent_events", "customer_id", "customers", ForeignKeyAction::Cascade),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for (table, column, _, _) in KEYS {
            let name = format!("fk_{table}_{column}");
            manager.drop_foreign_key(ForeignKey::drop().name(name).table(table).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for (table, column, referenced, on_delete) in KEYS {
            manager.create_foreign_key(super::foreign_key(table, column, referenced, on_delete)).await?;
        }
        Ok(())
    }
}
