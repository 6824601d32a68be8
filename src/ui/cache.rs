//! Pages kept until their data changes. The customers page reads every
//! buyer's orders (seconds on a large base), and its figures only move when
//! an import or feed lands, a scoring runs or the loyalty programme is
//! brought up to date. A campaign's results read each of its messages and
//! their recipients' orders (half a second for 100,000 messages); they move
//! with those, with new runs, sends, mail feedback and A/B decisions, and
//! with the clock (attribution windows close), so they are kept at most a
//! minute.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use tokio::sync::Mutex;

/// What changes when the data does: the newest load, scoring and loyalty recompute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataVersion {
    newest_load: Option<i64>,
    scored_at: Option<DateTime<Utc>>,
    loyalty_at: Option<DateTime<Utc>>,
}

impl DataVersion {
    pub async fn read(db: &DatabaseConnection) -> Result<DataVersion, DbErr> {
        let select = Query::select().expr(Expr::col("id").max()).from("data_loads").to_owned();
        Ok(DataVersion {
            newest_load: newest(db, &select).await?,
            scored_at: crate::model::registry::last_scored_at(db).await?,
            loyalty_at: crate::loyalty::last_recomputed_at(db).await?,
        })
    }
}

/// What changes when a campaign's results may: the data, and the newest
/// run, message sent, feedback event and A/B decision anywhere (each one
/// indexed read), and the minute, which covers the rest: messages that fail
/// or expire, and attribution windows that close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignVersion {
    data: DataVersion,
    newest_run: Option<i64>,
    newest_send: Option<DateTime<Utc>>,
    newest_feedback: Option<i64>,
    newest_decision: Option<i64>,
    minute: i64,
}

impl CampaignVersion {
    pub async fn read(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<CampaignVersion, DbErr> {
        let newest_id = |table: &'static str| Query::select().expr(Expr::col("id").max()).from(table).to_owned();
        // The partial index of sent rows answers this one.
        let newest_send = Query::select()
            .expr(Expr::col("sent_at").max())
            .from("outbox")
            .and_where(Expr::col("sent_at").is_not_null())
            .to_owned();
        Ok(CampaignVersion {
            data: DataVersion::read(db).await?,
            newest_run: newest(db, &newest_id("campaign_runs")).await?,
            newest_send: newest(db, &newest_send).await?,
            newest_feedback: newest(db, &newest_id("feedback_events")).await?,
            newest_decision: newest(db, &newest_id("variant_decisions")).await?,
            minute: now.timestamp().div_euclid(60),
        })
    }
}

/// The one value of a `SELECT max(...)`: None on an empty table.
async fn newest<T: sea_orm::TryGetable>(db: &DatabaseConnection, select: &SelectStatement) -> Result<Option<T>, DbErr> {
    match db.query_one(select).await? {
        Some(row) => row.try_get_by_index(0),
        None => Ok(None),
    }
}

/// One page's content (or what it is made of) and the version of the data
/// it was made from. The lock is held while the page is made, so that
/// visitors arriving meanwhile wait for that one computation rather than
/// each starting their own.
pub struct Cached<V = DataVersion, T = String> {
    entry: Mutex<Option<(V, Arc<T>)>>,
}

impl<V, T> Default for Cached<V, T> {
    fn default() -> Self {
        Cached { entry: Mutex::new(None) }
    }
}

impl<V: PartialEq, T> Cached<V, T> {
    /// The content for `version`: the kept one if made from it, else `make`'s.
    pub async fn get_or_make<E>(&self, version: V, make: impl AsyncFnOnce() -> Result<T, E>) -> Result<Arc<T>, E> {
        let mut entry = self.entry.lock().await;
        if let Some((kept, content)) = entry.as_ref()
            && *kept == version
        {
            return Ok(content.clone());
        }
        let content = Arc::new(make().await?);
        *entry = Some((version, content.clone()));
        Ok(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_content_is_made_again_only_when_the_data_version_changes() {
        let cache = Cached::default();
        let version = |load| DataVersion { newest_load: Some(load), scored_at: None, loyalty_at: None };
        let made = std::sync::atomic::AtomicU32::new(0);
        let make = || async {
            let n = made.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            Ok::<_, ()>(format!("page {n}"))
        };
        assert_eq!(*cache.get_or_make(version(1), make).await.unwrap(), "page 1");
        assert_eq!(*cache.get_or_make(version(1), make).await.unwrap(), "page 1");
        assert_eq!(*cache.get_or_make(version(2), make).await.unwrap(), "page 2");
        assert_eq!(*cache.get_or_make(version(2), async || Err(())).await.unwrap(), "page 2");
        assert!(cache.get_or_make(version(3), async || Err::<String, _>(())).await.is_err());
    }
}
