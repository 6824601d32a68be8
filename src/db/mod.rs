//! The database: connecting (SQLite or PostgreSQL), the schema migrations and
//! the sea-orm entities. Every command goes through [`open`], which applies any
//! pending migration, so no command ever sees an old schema.

pub mod binary_copy;
pub mod bulk;
pub mod copy_out;
pub mod engine;
pub mod entities;
pub mod migration;
pub mod postgres;
pub mod record;

use std::time::Duration;

use anyhow::Context;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::config::{Settings, mask_url_password};
use migration::Migrator;

/// Switches off SQLite's count of the memory it holds. The count takes a
/// process-wide mutex and a size lookup on every allocation, and patron
/// never reads it. SQLite takes this
/// only before its first use and not while another thread uses it: call it
/// first thing in `main`. Later it changes nothing.
pub fn sqlite_without_memory_count() {
    // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int. Called before any
    // thread uses SQLite (see above); once SQLite is initialised it returns
    // SQLITE_MISUSE and leaves the count on, which is only slower.
    unsafe { rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0) };
}

/// Connects to the configured database and applies pending migrations.
pub async fn open(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let db = connect(settings).await?;
    Migrator::up(&db, None).await.context("applying database migrations")?;
    Ok(db)
}

/// Connects without migrating (for `patron migrate`, which reports what it applied).
pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    connect_with(settings, Durability::PowerLoss).await
}

/// A connection for the sender's records of what it sent. Its commits do
/// not wait for the disk (SQLite: `synchronous = NORMAL`; PostgreSQL:
/// `synchronous_commit = off`), still safe when patron itself dies: a result
/// lost to a power cut only sends that message again. See
/// `delivery::outbox::record`.
pub async fn connect_for_delivery(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    connect_with(settings, Durability::Process).await
}

/// The fewest connections of the sender's pool, whatever
/// `database.max_connections` says: on SQLite its recorder holds one for a
/// whole pass, and the claimer and the lease renewer need theirs.
const SENDER_CONNECTIONS: u32 = 3;

/// What a commit survives.
#[derive(Debug, Clone, Copy)]
enum Durability {
    /// A power cut: a commit waits for the disk.
    PowerLoss,
    /// patron dying, not a power cut.
    Process,
}

async fn connect_with(settings: &Settings, durability: Durability) -> anyhow::Result<DatabaseConnection> {
    let (synchronous, synchronous_commit) = match durability {
        Durability::PowerLoss => (SqliteSynchronous::Full, "on"),
        Durability::Process => (SqliteSynchronous::Normal, "off"),
    };
    let url = settings.database_url();
    if url.starts_with("sqlite:") && settings.database.url.is_empty() {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data_dir {}", settings.data_dir.display()))?;
    }
    let busy_timeout = Duration::from_millis(settings.database.busy_timeout_ms);
    let max_connections = match durability {
        Durability::PowerLoss => settings.database.max_connections,
        Durability::Process => settings.database.max_connections.max(SENDER_CONNECTIONS),
    };
    let mut options = ConnectOptions::new(url.clone());
    options
        .max_connections(max_connections)
        // A connection taken from the pool is pinged only after it sat idle
        // (one a server or firewall may have dropped): a ping on every take
        // was a second round trip for every statement.
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        .sqlx_logging(false)
        // SQLite: WAL lets readers run beside the writer; FULL makes a commit
        // survive power loss (plans rely on it); foreign keys are off
        // by default in SQLite and must be switched on per connection.
        .map_sqlx_sqlite_opts(move |opts| {
            opts.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .busy_timeout(busy_timeout)
                .foreign_keys(true)
                // 8 MB of page cache (imports ask for more, see
                // `use_large_cache`), and statement journals in memory: a
                // multi-row upsert journals the pages it touches, and on disk
                // that doubled the write cost of an import.
                .pragma("cache_size", "-8192")
                .pragma("temp_store", "memory")
                // The write-ahead log holds a whole import or scoring until
                // SQLite copies it back; afterwards it is cut to 64 MB
                // instead of keeping the size of the largest transaction.
                .pragma("journal_size_limit", "67108864")
        })
        .map_sqlx_postgres_opts(move |opts| opts.options([("synchronous_commit", synchronous_commit)]));
    Database::connect(options).await.with_context(|| format!("connecting to database {}", mask_url_password(&url)))
}

/// A write transaction from its start: on SQLite, a transaction that reads
/// and then writes fails at once (`SQLITE_BUSY`) when another connection,
/// the sender say, wrote in between, where one that starts as a writer waits.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let immediate = sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    };
    db.begin_with_options(immediate).await
}

/// Gives the connection behind `txn` 64 MB of SQLite page cache (nothing on
/// PostgreSQL). Bulk upserts touch index pages all over the file and ran much
/// slower with less; scans do not need it, and scoring's two concurrent
/// readers would otherwise hold 128 MB of cache between them.
pub async fn use_large_cache(txn: &impl ConnectionTrait) -> Result<(), DbErr> {
    if txn.get_database_backend() == DatabaseBackend::Sqlite {
        txn.execute_unprepared("PRAGMA cache_size = -65536").await?;
    }
    Ok(())
}

/// The rows of `select` (a select without columns) as `T`s, read from one
/// row in which SQLite gathered `columns` of every row as JSON: through
/// sqlx each row of a result crosses from SQLite's worker thread on its own,
/// which an import's lookups of thousands of rows per batch would pay for
/// every row. Numbers come back as numbers, text as text.
pub async fn sqlite_rows_as_json<T: serde::de::DeserializeOwned>(
    txn: &impl ConnectionTrait,
    columns: &[&str],
    mut select: sea_orm::sea_query::SelectStatement,
) -> Result<Vec<T>, DbErr> {
    // Static SQL around column names of this crate, never input.
    let quoted: Vec<String> = columns.iter().map(|c| format!(r#""{c}""#)).collect();
    select.expr(sea_orm::sea_query::Expr::cust(format!("json_group_array(json_array({}))", quoted.join(", "))));
    let row = txn.query_one(&select).await?.ok_or_else(|| DbErr::RecordNotFound("an aggregate's row".into()))?;
    let json: String = row.try_get_by_index(0)?;
    serde_json::from_str(&json).map_err(|e| DbErr::Custom(format!("rows gathered as JSON: {e}")))
}

/// Applies pending migrations and returns the names of those applied.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<Vec<String>> {
    let pending: Vec<String> =
        Migrator::get_pending_migrations(db).await?.iter().map(|m| m.name().to_owned()).collect();
    Migrator::up(db, None).await.context("applying database migrations")?;
    Ok(pending)
}

/// A short name of the engine, safe to show (no URL, no credentials).
pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DatabaseBackend::Sqlite => "sqlite",
        DatabaseBackend::Postgres => "postgres",
        _ => "other",
    }
}

/// The random id this database was given when it was created (migration
/// `000007`): it keeps Message-IDs of different databases apart.
pub async fn installation_id<C: ConnectionTrait>(db: &C) -> Result<String, DbErr> {
    let select = sea_orm::sea_query::Query::select().column("installation_id").from("installation").to_owned();
    match db.query_one(&select).await? {
        Some(row) => row.try_get_by_index(0),
        None => Err(DbErr::RecordNotFound("the installation id (migration 000007)".into())),
    }
}
