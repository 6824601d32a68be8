//! What the dashboard (`crate::ui`) reads without scanning big tables:
//! `model_activations`, one row each time a model was made active (by the
//! promotion after training, forced, or by hand), which the database did
//! not otherwise remember; `loyalty_recomputes`, one row per recompute (or
//! range of one) as it commits, instead of the newest of a million
//! `loyalty_accounts.updated_at`; and an index of the outbox rows by
//! `sent_at`, for the sends per hour of the last week. Only rows that were
//! sent are in it, so planning a campaign pays nothing for it.

use sea_orm_migration::{prelude::*, schema::*};

use super::{create_all, foreign_key, id_column, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

const ACTIVATIONS: &str = "model_activations";
const RECOMPUTES: &str = "loyalty_recomputes";
const OUTBOX: &str = "outbox";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `how`: "promoted" (as good as the active one, or none was),
        // "forced" (`train --force`) or "by hand" (`model activate`).
        let activations = Table::create()
            .table(ACTIVATIONS)
            .col(id_column(manager))
            .col(big_integer("model_id"))
            .col(string("how"))
            .col(timestamp_with_time_zone("activated_at"))
            .foreign_key(&mut foreign_key(ACTIVATIONS, "model_id", "models", ForeignKeyAction::Cascade))
            .to_owned();
        // `as_of`: the moment computed for; `recomputed_at`: when it committed.
        let recomputes = Table::create()
            .table(RECOMPUTES)
            .col(id_column(manager))
            .col(timestamp_with_time_zone("as_of"))
            .col(big_integer("members_recomputed"))
            .col(timestamp_with_time_zone("recomputed_at"))
            .to_owned();
        let mut sent = index(OUTBOX, &["sent_at"], false);
        create_all(
            manager,
            vec![activations, recomputes],
            vec![
                index(ACTIVATIONS, &["activated_at"], false),
                index(RECOMPUTES, &["recomputed_at"], false),
                sent.and_where(Expr::col("sent_at").is_not_null()).to_owned(),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("ix_outbox_sent_at").table(OUTBOX).to_owned()).await?;
        super::drop_all(manager, &[RECOMPUTES, ACTIVATIONS]).await
    }
}
