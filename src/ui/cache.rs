//! The customers page, kept until the data changes: reading every buyer's
//! orders takes seconds on a large base, and the figures only move when an
//! import or feed lands, a scoring runs or the loyalty programme is
//! brought up to date.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
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
        let newest_load = match db.query_one(&select).await? {
            Some(row) => row.try_get_by_index(0)?,
            None => None,
        };
        Ok(DataVersion {
            newest_load,
            scored_at: crate::model::registry::last_scored_at(db).await?,
            loyalty_at: crate::loyalty::last_recomputed_at(db).await?,
        })
    }
}

/// One page's content and the data version it was made from. The lock is
/// held while the page is made, so that visitors arriving meanwhile wait for
/// that one computation rather than each starting their own.
#[derive(Default)]
pub struct Cached {
    entry: Mutex<Option<(DataVersion, Arc<String>)>>,
}

impl Cached {
    /// The content for `version`: the kept one if made from it, else `make`'s.
    pub async fn get_or_make<E>(
        &self,
        version: DataVersion,
        make: impl AsyncFnOnce() -> Result<String, E>,
    ) -> Result<Arc<String>, E> {
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
