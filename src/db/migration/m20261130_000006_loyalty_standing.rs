//! Where each loyalty member stands, kept on the account by every recompute
//! (and by redemptions and adjustments) so that segments and templates read
//! one row instead of summing the ledger; and the indexes that let a
//! recompute find what changed without reading every order and entry.

use sea_orm_migration::{prelude::*, schema::*};

use super::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

const ACCOUNTS: &str = "loyalty_accounts";

fn standing_columns() -> Vec<ColumnDef> {
    vec![
        big_integer("points").default(0).take(),
        big_integer("points_expiring_30d").default(0).take(),
        string_null("next_tier"),
        double_null("points_to_next_tier"),
        string_null("tier_direction"),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for mut column in standing_columns() {
            manager.alter_table(Table::alter().table(ACCOUNTS).add_column(&mut column).to_owned()).await?;
        }
        manager.create_index(index("loyalty_ledger", &["order_id"], false)).await?;
        manager.create_index(index("loyalty_ledger", &["expires_at"], false)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["ix_loyalty_ledger_order_id", "ix_loyalty_ledger_expires_at"] {
            manager.drop_index(Index::drop().name(name).table("loyalty_ledger").to_owned()).await?;
        }
        for column in ["points", "points_expiring_30d", "next_tier", "points_to_next_tier", "tier_direction"] {
            manager.alter_table(Table::alter().table(ACCOUNTS).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
