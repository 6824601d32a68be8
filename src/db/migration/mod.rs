//! Schema migrations, applied in order by [`Migrator`]. A migration that has
//! shipped is never edited: change the schema with a new one.

use sea_orm_migration::{prelude::*, schema};

mod m20261123_000001_create_customers;
mod m20261123_000002_create_loyalty;
mod m20261123_000003_create_scoring;
mod m20261123_000004_create_campaigns;
mod m20261123_000005_planning_indexes;
mod m20261130_000006_loyalty_standing;
mod m20261201_000007_delivery_guarantees;
mod m20261201_000008_feedback_events;
mod m20261202_000009_consent;
mod m20261202_000010_derived_tables_without_foreign_keys;
mod m20261202_000011_shared_work;
mod m20261202_000012_bulk_tables_without_foreign_keys;
mod m20261203_000013_customer_base_outlook;
mod m20261203_000014_outbox_send_window;
mod m20261203_000015_variant_decisions;
mod m20261203_000016_feeds;
mod m20261203_000017_dashboard_records;
mod m20261204_000018_byte_ordered_external_ids;
mod m20261205_000019_suppressions_by_customer;
mod m20261205_000020_customer_statistics;
mod m20261207_000021_outbox_results;
mod m20261207_000022_outbox_retry_index;
mod m20261207_000023_pending_state_index;
mod m20261207_000024_outbox_lease_index;
mod m20261207_000025_scores_on_snapshots;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_create_customers::Migration),
            Box::new(m20261123_000002_create_loyalty::Migration),
            Box::new(m20261123_000003_create_scoring::Migration),
            Box::new(m20261123_000004_create_campaigns::Migration),
            Box::new(m20261123_000005_planning_indexes::Migration),
            Box::new(m20261130_000006_loyalty_standing::Migration),
            Box::new(m20261201_000007_delivery_guarantees::Migration),
            Box::new(m20261201_000008_feedback_events::Migration),
            Box::new(m20261202_000009_consent::Migration),
            Box::new(m20261202_000010_derived_tables_without_foreign_keys::Migration),
            Box::new(m20261202_000011_shared_work::Migration),
            Box::new(m20261202_000012_bulk_tables_without_foreign_keys::Migration),
            Box::new(m20261203_000013_customer_base_outlook::Migration),
            Box::new(m20261203_000014_outbox_send_window::Migration),
            Box::new(m20261203_000015_variant_decisions::Migration),
            Box::new(m20261203_000016_feeds::Migration),
            Box::new(m20261203_000017_dashboard_records::Migration),
            Box::new(m20261204_000018_byte_ordered_external_ids::Migration),
            Box::new(m20261205_000019_suppressions_by_customer::Migration),
            Box::new(m20261205_000020_customer_statistics::Migration),
            Box::new(m20261207_000021_outbox_results::Migration),
            Box::new(m20261207_000022_outbox_retry_index::Migration),
            Box::new(m20261207_000023_pending_state_index::Migration),
            Box::new(m20261207_000024_outbox_lease_index::Migration),
            Box::new(m20261207_000025_scores_on_snapshots::Migration),
        ]
    }
}

/// A foreign key from `table.column` to `target.id`.
fn foreign_key(
    table: &'static str,
    column: &'static str,
    target: &'static str,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_{column}"))
        .from(table, column)
        .to(target, "id")
        .on_delete(on_delete)
        .to_owned()
}

/// A (possibly unique) index on `columns` of `table`, named after them.
fn index(table: &'static str, columns: &[&'static str], unique: bool) -> IndexCreateStatement {
    let mut statement = Index::create();
    statement.name(format!("ix_{table}_{}", columns.join("_"))).table(table);
    for column in columns {
        statement.col(*column);
    }
    if unique {
        statement.unique();
    }
    statement.to_owned()
}

/// Creates `tables` and then `indexes`.
async fn create_all(
    manager: &SchemaManager<'_>,
    tables: Vec<TableCreateStatement>,
    indexes: Vec<IndexCreateStatement>,
) -> Result<(), DbErr> {
    for table in tables {
        manager.create_table(table).await?;
    }
    for index in indexes {
        manager.create_index(index).await?;
    }
    Ok(())
}

/// Drops `tables`, in the order given (dependents first).
async fn drop_all(manager: &SchemaManager<'_>, tables: &[&'static str]) -> Result<(), DbErr> {
    for table in tables {
        manager.drop_table(Table::drop().table(*table).to_owned()).await?;
    }
    Ok(())
}

/// The surrogate key `id`. On SQLite a plain INTEGER PRIMARY KEY is the rowid
/// and numbers new rows by itself; AUTOINCREMENT would add a write to
/// `sqlite_sequence` for every row inserted.
fn id_column(manager: &SchemaManager<'_>) -> ColumnDef {
    match manager.get_database_backend() {
        sea_orm::DbBackend::Sqlite => schema::big_integer("id").primary_key().take(),
        _ => schema::big_pk_auto("id"),
    }
}

/// When a row was created or last changed, set by the database so that bulk
/// imports need not send the same time with every row.
fn record_time(name: &'static str) -> ColumnDef {
    schema::timestamp_with_time_zone(name).default(Expr::current_timestamp()).take()
}
