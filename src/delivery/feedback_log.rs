//! The one writer of `feedback_events`: what came back from a message. The
//! sender records a recipient its SMTP server refused outright; `feedback/`
//! records the reports that come back later by mail and webhook. Both count
//! in reports and in the circuit breaker.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr};

/// Rows per multi-row statement: 11 values each, well within SQLite's and
/// PostgreSQL's limits on a statement's parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// What an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A permanent failure (5.x.x): the address is suppressed.
    HardBounce,
    /// A temporary failure (4.x.x, delayed): counted, suppresses at the limit.
    SoftBounce,
    /// A spam complaint: the address is suppressed.
    Complaint,
    /// A request to receive no more mail.
    Unsubscribe,
    /// A message kept aside: not a report, or about no message of patron's.
    Aside,
}

impl EventKind {
    /// The name in `feedback_events.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::HardBounce => "hard_bounce",
            EventKind::SoftBounce => "soft_bounce",
            EventKind::Complaint => "complaint",
            EventKind::Unsubscribe => "unsubscribe",
            EventKind::Aside => "aside",
        }
    }
}

/// One row of `feedback_events`.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub received_at: DateTime<Utc>,
    pub kind: EventKind,
    pub status: Option<&'a str>,
    pub diagnostic: Option<&'a str>,
    /// The address it is about, lower-cased.
    pub email: Option<&'a str>,
    /// The outbox row, its run and customer, when known.
    pub message: Option<(i64, i64, i64)>,
    /// Where it came from: `smtp`, `pipe`, `maildir`, `imap`, a provider.
    pub source: &'a str,
    /// How it was tied to its outbox row.
    pub matched_by: Option<&'a str>,
    /// What makes it the same event when it comes again.
    pub fingerprint: &'a str,
}

/// Records `event` unless one with its fingerprint is recorded; true when new.
pub async fn insert<C: ConnectionTrait>(db: &C, event: &NewEvent<'_>) -> Result<bool, DbErr> {
    Ok(!insert_all(db, std::slice::from_ref(event)).await?.is_empty())
}

/// Records each of `events` unless one with its fingerprint is recorded, a
/// few hundred to a statement; the fingerprints recorded now.
pub async fn insert_all<C: ConnectionTrait>(db: &C, events: &[NewEvent<'_>]) -> Result<HashSet<String>, DbErr> {
    let mut recorded = HashSet::new();
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let mut insert = Query::insert();
        insert.into_table("feedback_events").columns([
            "received_at",
            "kind",
            "status",
            "diagnostic",
            "email",
            "outbox_id",
            "run_id",
            "customer_id",
            "source",
            "matched_by",
            "fingerprint",
        ]);
        for event in chunk {
            let (outbox_id, run_id, customer_id) =
                event.message.map_or((None, None, None), |(o, r, c)| (Some(o), Some(r), Some(c)));
            insert.values_panic([
                event.received_at.into(),
                event.kind.as_str().into(),
                event.status.map(str::to_owned).into(),
                event.diagnostic.map(str::to_owned).into(),
                event.email.map(str::to_owned).into(),
                outbox_id.into(),
                run_id.into(),
                customer_id.into(),
                event.source.into(),
                event.matched_by.map(str::to_owned).into(),
                event.fingerprint.into(),
            ]);
        }
        insert.on_conflict(OnConflict::column("fingerprint").do_nothing().to_owned()).returning_col("fingerprint");
        for row in db.query_all(&insert).await? {
            recorded.insert(row.try_get_by_index::<String>(0)?);
        }
    }
    Ok(recorded)
}
