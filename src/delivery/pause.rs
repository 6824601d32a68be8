//! A sender that cannot use its SMTP server (no connection, TLS or login
//! refused) pauses instead of spending the messages' attempts, and waits
//! longer each time. The pause is written to `delivery_pauses` so that
//! `patron status` can say so from another process.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde::Serialize;

/// One paused sender, as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Pause {
    /// Host and process id of the sender.
    pub sender: String,
    pub reason: String,
    pub since: DateTime<Utc>,
    pub retry_at: DateTime<Utc>,
}

/// A paused sender tries again at least this often, so a pause not renewed
/// for three times as long belonged to a process that is gone.
pub const MAX_WAIT: Duration = Duration::minutes(5);
const FIRST_WAIT: Duration = Duration::seconds(1);

/// The waits between tries while the server cannot be used: 1 s, doubling, at most [`MAX_WAIT`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    since: Option<DateTime<Utc>>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST_WAIT, since: None }
    }
}

impl Backoff {
    /// The wait before the next try, and when the pause began.
    pub fn next(&mut self, now: DateTime<Utc>) -> (Duration, DateTime<Utc>) {
        let wait = self.next;
        self.next = Ord::min(self.next * 2, MAX_WAIT);
        (wait, *self.since.get_or_insert(now))
    }

    pub fn is_paused(&self) -> bool {
        self.since.is_some()
    }

    /// The server works again: the next pause starts from the first wait.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// This process, as it appears in `delivery_pauses`.
pub fn sender_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

/// Records (or renews) this sender's pause, which began at `since`.
pub async fn record(
    db: &DatabaseConnection,
    reason: &str,
    since: DateTime<Utc>,
    retry_at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let insert = Query::insert()
        .into_table("delivery_pauses")
        .columns(["sender", "reason", "since", "retry_at", "updated_at"])
        .values_panic([sender_name().into(), reason.into(), since.into(), retry_at.into(), Utc::now().into()])
        .on_conflict(
            OnConflict::column("sender").update_columns(["reason", "since", "retry_at", "updated_at"]).to_owned(),
        )
        .to_owned();
    db.execute(&insert).await.map(|_| ())
}

/// This sender works again; pauses of processes long gone go too.
pub async fn clear(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<(), DbErr> {
    let delete = Query::delete()
        .from_table("delivery_pauses")
        .cond_where(Expr::col("sender").eq(sender_name()).or(Expr::col("updated_at").lt(now - MAX_WAIT * 3)))
        .to_owned();
    db.execute(&delete).await.map(|_| ())
}

/// The senders paused now (renewed within three times the longest wait).
pub async fn current<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<Vec<Pause>, DbErr> {
    let select = Query::select()
        .columns(["sender", "reason", "since", "retry_at"])
        .from("delivery_pauses")
        .and_where(Expr::col("updated_at").gte(now - MAX_WAIT * 3))
        .order_by("sender", sea_orm::Order::Asc)
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| {
            Ok(Pause {
                sender: row.try_get("", "sender")?,
                reason: row.try_get("", "reason")?,
                since: row.try_get("", "since")?,
                retry_at: row.try_get("", "retry_at")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_one_second_up_to_five_minutes_and_reset() {
        let now = Utc::now();
        let mut backoff = Backoff::default();
        assert!(!backoff.is_paused());
        let waits: Vec<i64> = (0..12).map(|_| backoff.next(now).0.num_seconds()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert!(backoff.is_paused());
        assert_eq!(backoff.next(now + Duration::hours(1)).1, now, "the pause began at the first wait");
        backoff.reset();
        assert_eq!(backoff.next(now).0, FIRST_WAIT);
    }
}
