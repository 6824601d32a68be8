//! What the customer-base models (BG/NBD, Gamma-Gamma) say of each
//! customer, written by scoring beside the propensity: the probability of
//! still being a customer, the purchases expected in 90 and 365 days, and the
//! lifetime value. NULL for customers without a purchase, or when the active
//! model carries no customer-base fit.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const SCORES: &str = "scores";
const COLUMNS: &[&str] = &["p_alive", "expected_orders_90d", "expected_orders_365d", "clv"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in COLUMNS {
            let mut column = double_null(*column);
            manager.alter_table(Table::alter().table(SCORES).add_column(&mut column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in COLUMNS {
            manager.alter_table(Table::alter().table(SCORES).drop_column(*column).to_owned()).await?;
        }
        Ok(())
    }
}
