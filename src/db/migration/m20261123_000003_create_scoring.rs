//! Scoring: registered models, the latest feature snapshot per customer and
//! the scores each model gave.

use sea_orm_migration::{prelude::*, schema::*};

use super::{create_all, drop_all, foreign_key, id_column, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let models = Table::create()
            .table("models")
            .col(id_column(manager))
            .col(string_uniq("name"))
            .col(string("algorithm"))
            .col(string("file_name"))
            .col(timestamp_with_time_zone("trained_at"))
            .col(double_null("validation_auc"))
            .col(boolean("active"))
            .col(timestamp_with_time_zone("created_at"))
            .to_owned();
        let snapshots = feature_snapshots();
        let scores = Table::create()
            .table("scores")
            .col(big_integer("model_id"))
            .col(big_integer("customer_id"))
            .col(double("score"))
            .col(small_integer("decile"))
            .col(timestamp_with_time_zone("scored_at"))
            .primary_key(Index::create().col("model_id").col("customer_id"))
            .foreign_key(&mut foreign_key("scores", "model_id", "models", ForeignKeyAction::Cascade))
            .foreign_key(&mut foreign_key("scores", "customer_id", "customers", ForeignKeyAction::Cascade))
            .to_owned();
        create_all(manager, vec![models, snapshots, scores], vec![index("scores", &["model_id", "decile"], false)])
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_all(manager, &["scores", "feature_snapshots", "models"]).await
    }
}

/// One row per customer: the features as of `as_of`, so that segments can filter on them.
fn feature_snapshots() -> TableCreateStatement {
    let mut table = Table::create();
    table
        .table("feature_snapshots")
        .col(big_integer("customer_id").primary_key())
        .col(timestamp_with_time_zone("as_of"))
        .col(timestamp_with_time_zone("computed_at"));
    for name in [
        "recency_days",
        "monetary_mean",
        "first_order_value",
        "tenure_days",
        "gap_mean_days",
        "gap_std_days",
        "spend_trend",
        "loyalty_points",
        "days_since_last_message",
    ] {
        table.col(double_null(name));
    }
    for name in ["monetary_total", "spend_30d", "spend_90d", "spend_365d"] {
        table.col(double(name));
    }
    for name in [
        "frequency",
        "orders_total",
        "orders_30d",
        "orders_90d",
        "orders_365d",
        "distinct_categories",
        "complaints_open",
        "complaints_365d",
    ] {
        table.col(integer(name));
    }
    table
        .col(string_null("loyalty_tier"))
        .foreign_key(&mut foreign_key("feature_snapshots", "customer_id", "customers", ForeignKeyAction::Cascade))
        .to_owned()
}
