//! Feeds (`crate::feed`) and the record of every load of data: each feed's
//! last run, its watermark per table (advanced in the transaction that lands
//! the rows), the files a folder feed has imported (by digest, so that none
//! is imported twice), and `data_loads`, one row per successful import or
//! feed landing, which the staleness guard reads.

use sea_orm_migration::{prelude::*, schema::*};

use super::{create_all, id_column, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

const FEEDS: &str = "feeds";
const WATERMARKS: &str = "feed_watermarks";
const FILES: &str = "feed_files";
const LOADS: &str = "data_loads";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let feeds = Table::create()
            .table(FEEDS)
            .col(id_column(manager))
            .col(string("name"))
            .col(timestamp_with_time_zone_null("last_run_at"))
            .col(timestamp_with_time_zone_null("last_success_at"))
            .col(big_integer("last_rows").default(0))
            .col(text_null("last_error"))
            .to_owned();
        let watermarks = Table::create()
            .table(WATERMARKS)
            .col(id_column(manager))
            .col(string("feed"))
            .col(string("table_name"))
            .col(string("watermark"))
            .col(timestamp_with_time_zone("updated_at"))
            .to_owned();
        let files = Table::create()
            .table(FILES)
            .col(id_column(manager))
            .col(string("feed"))
            .col(string("digest"))
            .col(string("file_name"))
            .col(big_integer("rows"))
            .col(timestamp_with_time_zone("imported_at"))
            .to_owned();
        // `source`: "import" or "feed NAME"; `table_name`: what was loaded.
        let loads = Table::create()
            .table(LOADS)
            .col(id_column(manager))
            .col(string("source"))
            .col(string("table_name"))
            .col(big_integer("rows"))
            .col(timestamp_with_time_zone("loaded_at"))
            .to_owned();
        create_all(
            manager,
            vec![feeds, watermarks, files, loads],
            vec![
                index(FEEDS, &["name"], true),
                index(WATERMARKS, &["feed", "table_name"], true),
                index(FILES, &["feed", "digest"], true),
                index(LOADS, &["loaded_at"], false),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::drop_all(manager, &[LOADS, FILES, WATERMARKS, FEEDS]).await
    }
}
