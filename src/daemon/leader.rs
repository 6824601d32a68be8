//! Who plans: one daemon per database runs the scheduler and the timed jobs;
//! every daemon sends.
//!
//! On PostgreSQL the leader holds a session-level advisory lock on a
//! connection of its own; when it dies the server drops the lock and another
//! daemon's next try takes it. On SQLite only one daemon may use a file at
//! all: it holds an exclusive lock on `<database>.daemon-lock`, and a second
//! one refuses to start.

use std::fs::File;
use std::path::{Path, PathBuf};

use sea_orm::sqlx::{self, Connection, postgres::PgConnection};

/// The advisory lock key: "patron" in ASCII, so that it is recognisable in `pg_locks`.
const ADVISORY_KEY: i64 = 0x7061_7472_6f6e;

/// A second daemon on the same SQLite file.
#[derive(Debug, thiserror::Error)]
#[error("another patron daemon is already running on {database} (it holds {lock}); stop it first")]
pub struct AlreadyRunning {
    pub database: String,
    pub lock: PathBuf,
}

pub enum Leadership {
    /// SQLite: we are the only daemon, so always the leader. The open file holds the lock.
    Sole(#[allow(dead_code)] File),
    /// PostgreSQL: leader while this connection holds the advisory lock.
    Elected { url: String, connection: Option<PgConnection> },
}

impl Leadership {
    /// The lock file for an SQLite database, or the election for PostgreSQL.
    pub fn acquire(database_url: &str) -> anyhow::Result<Leadership> {
        match sqlite_path(database_url) {
            Some(path) => {
                let lock = PathBuf::from(format!("{}.daemon-lock", path.display()));
                let file = File::options().create(true).truncate(false).write(true).open(&lock)?;
                match file.try_lock() {
                    Ok(()) => Ok(Leadership::Sole(file)),
                    Err(_) => Err(AlreadyRunning { database: path.display().to_string(), lock }.into()),
                }
            }
            None => Ok(Leadership::Elected { url: database_url.to_owned(), connection: None }),
        }
    }

    /// Whether this daemon leads now: keeps the lock if it has it, tries to
    /// take it if not. A lost connection loses the lock (and the server
    /// releases it), so the answer is checked on every call.
    pub async fn is_leader(&mut self) -> bool {
        match self {
            Leadership::Sole(_) => true,
            Leadership::Elected { url, connection } => {
                if let Some(held) = connection {
                    if sqlx::query("SELECT 1").execute(&mut *held).await.is_ok() {
                        return true;
                    }
                    tracing::warn!("lost the scheduler lock's database connection");
                    *connection = None;
                }
                match try_lock(url).await {
                    Ok(Some(held)) => {
                        tracing::info!("this daemon now runs the scheduler");
                        *connection = Some(held);
                        true
                    }
                    Ok(None) => false,
                    Err(error) => {
                        tracing::warn!(%error, "cannot try the scheduler lock");
                        false
                    }
                }
            }
        }
    }
}

async fn try_lock(url: &str) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut connection = PgConnection::connect(url).await?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(ADVISORY_KEY).fetch_one(&mut connection).await?;
    if locked {
        Ok(Some(connection))
    } else {
        let _ = connection.close().await;
        Ok(None)
    }
}

/// The file of an `sqlite:` URL (`sqlite://PATH` or `sqlite:PATH`, options cut off).
fn sqlite_path(url: &str) -> Option<&Path> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    Some(Path::new(rest.split('?').next().unwrap_or(rest)))
}

impl crate::failure::Failure for AlreadyRunning {
    /// The operator started a second daemon.
    fn fault(&self) -> crate::failure::Fault {
        crate::failure::Fault::Input
    }
}
