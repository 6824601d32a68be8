//! Feeds: data patron pulls by itself on a schedule, so that campaigns fire
//! on today's data rather than on the last hand-run `patron import`. A feed
//! is a drop folder of CSV exports ([`folder`]) or one query per table on
//! the shop's database ([`sql`]); both land rows through the importer, with
//! its all-or-nothing rule, and a run that fails leaves patron's data as it
//! was, to be tried again at the next tick. [`state`] keeps what each feed
//! has done.

pub mod folder;
pub mod sql;
pub mod state;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use serde::Serialize;

use crate::config::{FeedKind, FeedSettings, Loaded};

/// One table landed by a feed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Landed {
    pub table: String,
    pub rows: u64,
    /// Rows that were new or changed.
    pub written: u64,
    /// The file name, or "query customers".
    pub source: String,
}

/// What one feed run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub landed: Vec<Landed>,
    /// What was left for later or skipped, and why.
    pub notes: Vec<String>,
    /// What was refused (a folder feed's rejected files); the rest landed.
    pub failed: Vec<String>,
}

impl Outcome {
    pub fn rows(&self) -> u64 {
        self.landed.iter().map(|landed| landed.rows).sum()
    }

    /// Rows new or changed: when above zero, what depends on the data
    /// (loyalty, scores) is out of date.
    pub fn written(&self) -> u64 {
        self.landed.iter().map(|landed| landed.written).sum()
    }
}

/// The feed named `name` in the settings, or an error listing the known ones.
pub fn find<'a>(loaded: &'a Loaded, name: &str) -> anyhow::Result<&'a FeedSettings> {
    let feeds = &loaded.settings.feeds;
    feeds.iter().find(|feed| feed.name == name).ok_or_else(|| {
        let known: Vec<&str> = feeds.iter().map(|feed| feed.name.as_str()).collect();
        match known.is_empty() {
            true => anyhow::anyhow!("no feed named `{name}`: no [[feeds]] are configured"),
            false => anyhow::anyhow!("no feed named `{name}`; the feeds are: {}", known.join(", ")),
        }
    })
}

/// Runs `feed` once, now, and records the run: its rows, or why it failed
/// (a run with rejected files counts as failed, though its good files landed).
pub async fn run(
    db: &DatabaseConnection,
    loaded: &Loaded,
    feed: &FeedSettings,
    now: DateTime<Utc>,
) -> anyhow::Result<Outcome> {
    let result = match feed.kind {
        FeedKind::Folder => folder::run(db, loaded, feed, now).await,
        FeedKind::Sql => sql::run(db, loaded, feed, now).await,
    };
    let recorded = match &result {
        Ok(outcome) if outcome.failed.is_empty() => Ok(outcome.rows()),
        Ok(outcome) => Err(outcome.failed.join("; ")),
        Err(error) => Err(format!("{error:#}")),
    };
    state::record_run(db, &feed.name, now, recorded.as_ref().map(|rows| *rows).map_err(String::as_str)).await?;
    result
}

/// A configured feed and what is recorded of it, for `feed list` and `status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed {
    pub name: String,
    pub kind: &'static str,
    /// The cron expression (UTC); empty: only by `patron feed run`.
    pub schedule: String,
    pub next_run_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub recorded: state::Recorded,
}

/// Every configured feed with its recorded state, in the settings' order.
pub async fn list(
    db: &impl sea_orm::ConnectionTrait,
    feeds: &[FeedSettings],
    now: DateTime<Utc>,
) -> Result<Vec<Listed>, sea_orm::DbErr> {
    let mut listed = Vec::with_capacity(feeds.len());
    for feed in feeds {
        listed.push(Listed {
            name: feed.name.clone(),
            kind: feed.kind.as_str(),
            schedule: feed.schedule.text().to_owned(),
            next_run_at: feed.schedule().and_then(|schedule| schedule.fires_after(now).next()),
            recorded: state::recorded(db, &feed.name).await?,
        });
    }
    Ok(listed)
}
