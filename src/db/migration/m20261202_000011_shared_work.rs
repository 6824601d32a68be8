//! Work that several daemons share (`crate::work`): a run of a job, with the
//! model and moment it works for, and the ranges of customer ids it is split
//! into, each taken by one daemon at a time under a lease.

use sea_orm_migration::{prelude::*, schema::*};

use super::{create_all, foreign_key, id_column, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

const RUNS: &str = "work_runs";
const RANGES: &str = "work_ranges";
const ONE_UNFINISHED_RUN: &str =
    "CREATE UNIQUE INDEX ux_work_runs_unfinished_job ON work_runs (job) WHERE finished_at IS NULL";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `outcome`: NULL while ranges remain, then `done` or `abandoned`.
        let runs = Table::create()
            .table(RUNS)
            .col(id_column(manager))
            .col(string("job"))
            .col(big_integer_null("model_id"))
            .col(timestamp_with_time_zone("as_of"))
            .col(timestamp_with_time_zone("started_at"))
            .col(timestamp_with_time_zone_null("finished_at"))
            .col(string_null("outcome"))
            .to_owned();
        // Customer ids `first_customer..=last_customer`; `owner` names the
        // daemon that took the range last, at `taken_at`, and holds it until
        // `lease_until`.
        let ranges = Table::create()
            .table(RANGES)
            .col(id_column(manager))
            .col(big_integer("run_id"))
            .col(big_integer("first_customer"))
            .col(big_integer("last_customer"))
            .col(string_null("owner"))
            .col(timestamp_with_time_zone_null("taken_at"))
            .col(timestamp_with_time_zone_null("lease_until"))
            .col(integer("attempts").default(0))
            .col(timestamp_with_time_zone_null("done_at"))
            .foreign_key(&mut foreign_key(RANGES, "run_id", RUNS, ForeignKeyAction::Cascade))
            .to_owned();
        create_all(
            manager,
            vec![runs, ranges],
            vec![index(RUNS, &["job", "finished_at"], false), index(RANGES, &["run_id", "done_at"], false)],
        )
        .await?;
        // At most one unfinished run per job, even if two daemons ever
        // believed they led (the same text on both engines).
        manager.get_connection().execute_unprepared(ONE_UNFINISHED_RUN).await.map(drop)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::drop_all(manager, &[RANGES, RUNS]).await
    }
}
