//! The outbox rows as the sender sees them: claimed in batches under a lease,
//! then each marked sent, retrying, failed or suppressed.
//!
//! States: `planned` → `sending` (claimed, leased) → `sent` | `retrying`
//! (back to `sending` when due) | `failed` | `suppressed` | `unknown` (the
//! message went out but the server's reply was lost: perhaps delivered, so
//! not sent again unless `delivery.resend_unknown`) | `expired` (not sent by
//! its `expires_at`: never sent). `control` rows are never sent; `held`
//! rows wait for their campaign's A/B winner (`campaign::winner` makes them
//! `planned`) and are not claimed before. A sender
//! renews the lease of every row it holds; a `sending` row whose lease ran
//! out belonged to a sender that died, and is claimed again.
//! `requeue` puts `failed` or `unknown` rows back to `planned` on request.
//!
//! A row is not claimed before its `not_before` (the campaign's send window
//! was closed at the fire time, or the sender found it closed and `defer`red
//! the row) nor from its `expires_at` on; `expire` marks the pending rows
//! past it. Every function takes the moment it acts at from the sender's
//! [`Clock`], so that a rehearsal (`patron send --now`) sees the outbox as
//! it would be then.

use chrono::{DateTime, Duration, Utc};
use sea_orm::Value;
use sea_orm::sea_query::{
    Alias, Cond, Expr, ExprTrait, Func, IntoIden, LockBehavior, LockType, Order, Query, SelectStatement, SimpleExpr,
    TableRef, UnionType, UpdateStatement, ValueTuple,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, TransactionTrait};

use super::feedback_log::{self, EventKind, NewEvent};
use crate::consent::suppressions::{self, Reason};
use crate::db::engine;
use crate::db::entities::outbox::State;

/// The sender's time: the system clock, or one moment given for a
/// rehearsal or a test (`patron send --now`), which does not move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    System,
    Fixed(DateTime<Utc>),
}

impl Clock {
    pub fn now(self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(at) => at,
        }
    }

    /// A fixed clock never reaches a later moment: waiting for one would never end.
    pub fn is_fixed(self) -> bool {
        matches!(self, Clock::Fixed(_))
    }
}

/// One claimed row and what the sender needs to know about its run.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub run_id: i64,
    pub customer_id: i64,
    pub variant: Option<String>,
    /// Including this one.
    pub attempts: i32,
    /// Never sent from this moment on.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The states a message is still on its way in.
pub const PENDING_STATES: [State; 4] = State::PENDING;

/// The rows due at `now`: planned and past their `not_before`, retrying
/// and past their next attempt (and `not_before`), or sending with a lease
/// that ran out (a sender died); none past its `expires_at`.
fn due(now: DateTime<Utc>) -> Cond {
    let any = due_kinds(now).into_iter().fold(Cond::any(), |any, kind| any.add(kind.rows));
    Cond::all().add(any).add(not_expired(now))
}

/// One kind of due row: a range of one index, so that rows waiting for
/// their window, their next attempt or their lease's end are not read.
struct DueKind {
    rows: SimpleExpr,
    /// The index's ordering column: the order its range is read in.
    index_order: &'static str,
}

/// The kinds of due rows, in the order a claim takes them: the messages
/// that have waited longest first (a dead sender's, then retries, then the
/// planned ones whose window opened), so that a backlog of new messages
/// does not hold them back. The planned rows are in two terms (a window
/// that opened, and none) so that each is a range of the `(state,
/// not_before)` index.
fn due_kinds(now: DateTime<Utc>) -> [DueKind; 4] {
    let window_passed = || Expr::col("not_before").is_null().or(Expr::col("not_before").lte(now));
    let state = |state: State| Expr::col("state").eq(state);
    [
        // On PostgreSQL a range of `ix_outbox_leases` (migration 24); SQLite
        // reads the rows being sent through `(state, not_before)`.
        DueKind { rows: lease_ran_out(now), index_order: "lease_until" },
        DueKind {
            rows: state(State::Retrying).and(Expr::col("next_attempt_at").lte(now)).and(window_passed()),
            index_order: "next_attempt_at",
        },
        DueKind { rows: state(State::Planned).and(Expr::col("not_before").lte(now)), index_order: "not_before" },
        DueKind { rows: state(State::Planned).and(Expr::col("not_before").is_null()), index_order: "not_before" },
    ]
}

/// A `sending` row whose sender died: its lease ran out, and no result of
/// it waits in the results log (`result_log`), which would mean that it got
/// an answer from the server before it died.
fn lease_ran_out(now: DateTime<Utc>) -> SimpleExpr {
    let logged = Query::select()
        .expr(Expr::val(1))
        .from("outbox_results")
        .and_where(Expr::col(("outbox_results", "outbox_id")).equals(("outbox", "id")))
        .to_owned();
    Expr::col("state").eq(State::Sending).and(Expr::col("lease_until").lt(now)).and(Expr::exists(logged).not())
}

fn not_expired(now: DateTime<Utc>) -> SimpleExpr {
    Expr::col("expires_at").is_null().or(Expr::col("expires_at").gt(now))
}

/// Claims up to `limit` rows that are due at `now`, for `lease`.
pub async fn claim(
    db: &DatabaseConnection,
    limit: u64,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<Claimed>, DbErr> {
    let update = claim_statement(db.get_database_backend(), limit, lease, now);
    let rows = if db.get_database_backend() == DbBackend::Postgres {
        let txn = db.begin().await?;
        read_in_index_order(&txn).await?;
        let rows = txn.query_all(&update).await?;
        txn.commit().await?;
        rows
    } else {
        db.query_all(&update).await?
    };
    let mut claimed: Vec<Claimed> = rows
        .iter()
        .map(|row| {
            Ok(Claimed {
                id: row.try_get("", "id")?,
                run_id: row.try_get("", "run_id")?,
                customer_id: row.try_get("", "customer_id")?,
                variant: row.try_get("", "variant")?,
                attempts: row.try_get("", "attempts")?,
                expires_at: row.try_get("", "expires_at")?,
            })
        })
        .collect::<Result<_, DbErr>>()?;
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

/// Makes the rest of the transaction's claim ([`claim_statement`]) read
/// each kind of due row by an index scan in the index's order
/// (PostgreSQL; nothing on SQLite). Before the outbox is analysed after a
/// large run was planned (autovacuum's next visit, or never where it is
/// off), the planner reads the whole outbox for each kind and sorts it, or
/// gathers every entry of the kind in a bitmap, dead ones too (each row
/// claimed and sent since the last vacuum): each claim of a send then read
/// every row. An index scan stops at the limit and marks the dead entries
/// it passes, so the next claims skip them. No JIT compilation: forbidding
/// a plan prices it so high that the server would compile the statement.
pub async fn read_in_index_order(txn: &impl ConnectionTrait) -> Result<(), DbErr> {
    engine::set_local(txn, &["jit = off", "enable_seqscan = off", "enable_bitmapscan = off"]).await
}

/// The statement [`claim`] runs.
pub fn claim_statement(backend: DbBackend, limit: u64, lease: Duration, now: DateTime<Utc>) -> UpdateStatement {
    Query::update()
        .table("outbox")
        .value("state", State::Sending)
        .value("lease_until", now + lease)
        .value("attempts", Expr::col("attempts").add(1))
        .value("updated_at", now)
        .and_where(Expr::col("id").in_subquery(claimable(backend, limit, now)))
        .returning(Query::returning().columns(["id", "run_id", "customer_id", "variant", "attempts", "expires_at"]))
        .to_owned()
}

/// The ids to claim. Each kind of due row is its own subquery, read in its
/// index's order (so that the engine reads the index, whatever its
/// statistics say) and stopped at `limit`, and the next kind is read only
/// if the rows are still short. As one `OR`, PostgreSQL gathered every
/// entry of every kind, live or dead (each row claimed or sent since the
/// last vacuum), into bitmaps before taking the first `limit`: the claims of
/// a large send cost it more than all the results. SQLite, once analysed,
/// read the whole table for it, past every sent row.
///
/// On PostgreSQL rows another sender is claiming are skipped (`FOR UPDATE
/// SKIP LOCKED`); SQLite has a single writer, so the claim is atomic there
/// by itself.
fn claimable(backend: DbBackend, limit: u64, now: DateTime<Utc>) -> SelectStatement {
    let mut kinds = due_kinds(now).into_iter().enumerate().map(|(n, kind)| {
        let mut rows = Query::select();
        rows.column("id")
            .from("outbox")
            .and_where(kind.rows)
            .and_where(not_expired(now))
            .and_where(not_paused())
            .order_by(kind.index_order, Order::Asc)
            .limit(limit);
        if backend == DbBackend::Postgres {
            rows.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        Query::select().column("id").from_subquery(rows, Alias::new(format!("due{n}"))).to_owned()
    });
    let mut union = kinds.next().expect("four kinds of due rows");
    for kind in kinds {
        union.union(UnionType::All, kind);
    }
    Query::select().column("id").from_subquery(union, Alias::new("due")).limit(limit).to_owned()
}

/// Marks `expired` every pending row whose `expires_at` is at or before
/// `now`, one waiting for an A/B winner too (a `sending` row only once its
/// lease ran out: until then it is a sender's, which checks the expiry
/// itself before sending). Returns how many.
pub async fn expire(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let waiting = Cond::any()
        .add(Expr::col("state").is_in([State::Planned, State::Retrying, State::Held]))
        .add(lease_ran_out(now));
    let update = Query::update()
        .table("outbox")
        .value("state", State::Expired)
        .value("last_error", EXPIRED)
        .value("lease_until", Option::<DateTime<Utc>>::None)
        .value("updated_at", now)
        .cond_where(waiting)
        .and_where(Expr::col("expires_at").lte(now))
        .to_owned();
    Ok(db.execute(&update).await?.rows_affected())
}

/// Why a row is `expired`.
const EXPIRED: &str = "not sent before it expired (the campaign's expires_after)";

/// What happened to one claimed row.
#[derive(Debug, Clone)]
pub enum Fate {
    Sent {
        message_id: String,
        reply: String,
    },
    /// Try again at `at`.
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    /// Never sent. `bounced`: suppress the address it was sent to.
    Failed {
        error: String,
        bounced: Option<String>,
    },
    /// Not sent because the customer may no longer get it (why).
    Suppressed {
        reason: String,
    },
    /// Sent, but the server's reply was lost: perhaps delivered.
    Unknown {
        message_id: String,
        error: String,
    },
    /// Not sent: its expiry came while it waited for a worker.
    Expired,
}

/// Writes the results of several rows: one statement when none of them is
/// a refused recipient (whose suppression and feedback event go with its
/// result, in one transaction). Commits do not wait for the disk (the
/// sender's connection, `db::connect_for_delivery`): that is safe when patron
/// dies, and after a power loss the last few results can be lost, which
/// sends those messages again (a duplicate, never a loss).
pub async fn record(db: &DatabaseConnection, results: &[(Claimed, Fate)], now: DateTime<Utc>) -> Result<(), DbErr> {
    if let Some(update) = record_in_one_statement(results, now) {
        return db.execute(&update).await.map(drop);
    }
    let txn = db.begin().await?;
    for (row, fate) in results {
        if let Fate::Failed { error, bounced: Some(email) } = fate {
            suppressions::suppress(&txn, email, Some(row.customer_id), Reason::Bounced, "smtp").await?;
            record_refusal(&txn, row, email, error, now).await?;
        }
    }
    for chunk in results.chunks(RESULTS_PER_STATEMENT) {
        txn.execute(&results_update(chunk, now)).await?;
    }
    txn.commit().await
}

/// The one statement that records `results`, when it can: no refused
/// recipient's suppression goes with them, and they fit in one. The
/// sender's usual group commit.
pub fn record_in_one_statement(results: &[(Claimed, Fate)], now: DateTime<Utc>) -> Option<UpdateStatement> {
    fits_one_statement(results).then(|| results_update(results, now))
}

/// Whether `results` can be written in one statement: they fit, and none is
/// a refused recipient.
pub(super) fn fits_one_statement(results: &[(Claimed, Fate)]) -> bool {
    let bounced = |fate: &Fate| matches!(fate, Fate::Failed { bounced: Some(_), .. });
    results.len() <= RESULTS_PER_STATEMENT && !results.iter().any(|(_, fate)| bounced(fate))
}

/// Results per statement: eight values each.
const RESULTS_PER_STATEMENT: usize = 500;

/// One UPDATE for many results, each row's new values from a `VALUES` list
/// (named `column1`, `column2`, ... on both engines): a statement per batch,
/// not per message.
fn results_update(results: &[(Claimed, Fate)], now: DateTime<Utc>) -> UpdateStatement {
    let tuples = results.iter().map(|(row, fate)| ValueTuple::Many(result_values(row, fate, now))).collect();
    let column = |name: &str| {
        let position = RESULT_COLUMNS.iter().position(|c| *c == name).expect("a result column");
        Expr::col(("results", format!("column{}", position + 1)))
    };
    let values = TableRef::ValuesList(tuples, Alias::new("results").into_iden());
    update_from_results(values, column, now.into(), still_sending())
}

/// The columns of a result, in the order of [`result_values`].
pub(super) const RESULT_COLUMNS: [&str; 8] =
    ["outbox_id", "attempts", "state", "sent_at", "message_id", "server_reply", "last_error", "next_attempt_at"];

/// The update of the outbox rows that results in `source` are for, the
/// result's column `name` being `column(name)`: this update and
/// `result_log`'s fold write results with it. A value a result does not set
/// is NULL and keeps the row's own (`COALESCE`). Only rows still held are
/// written (`held`: the row is still `sending`): a row whose lease ran out
/// may have been claimed by another sender, whose result counts instead.
pub(super) fn update_from_results(
    source: TableRef,
    column: impl Fn(&str) -> Expr,
    updated_at: SimpleExpr,
    held: SimpleExpr,
) -> UpdateStatement {
    let kept = |name: &str| Func::coalesce([column(name), Expr::col(("outbox", name.to_owned()))]);
    Query::update()
        .table("outbox")
        .value("state", column("state"))
        .value("sent_at", kept("sent_at"))
        .value("message_id", kept("message_id"))
        .value("server_reply", kept("server_reply"))
        .value("last_error", column("last_error"))
        .value("next_attempt_at", kept("next_attempt_at"))
        .value("updated_at", updated_at)
        .value("lease_until", Option::<DateTime<Utc>>::None)
        .from(source)
        .and_where(Expr::col(("outbox", "id")).eq(column("outbox_id")))
        .and_where(Expr::col(("outbox", "attempts")).eq(column("attempts")))
        .and_where(held)
        .to_owned()
}

/// `state = 'sending'` in a form no index answers, so that rows this
/// sender holds are found by their primary key. Statistics analysed while
/// nothing was being sent say that almost no row is `sending`; PostgreSQL
/// and SQLite then read the results' rows through a `(state, ...)` index,
/// every `sending` row (and on PostgreSQL every dead version of one) for
/// each commit: on PostgreSQL three times the time of the whole write.
pub(super) fn still_sending() -> SimpleExpr {
    Expr::cust(format!("(\"outbox\".\"state\" = '{}') IS TRUE", State::Sending.as_str()))
}

/// A result's values, in the order of [`RESULT_COLUMNS`].
pub(super) fn result_values(row: &Claimed, fate: &Fate, now: DateTime<Utc>) -> Vec<Value> {
    let none_text = || Value::String(None);
    let none_time = || Option::<DateTime<Utc>>::None.into();
    let (state, sent_at, message_id, server_reply, last_error, next_attempt_at): (
        State,
        Value,
        Value,
        Value,
        Value,
        Value,
    ) = match fate {
        Fate::Sent { message_id, reply } => {
            (State::Sent, now.into(), message_id.as_str().into(), reply.as_str().into(), none_text(), none_time())
        }
        Fate::Retry { at, error } => {
            (State::Retrying, none_time(), none_text(), none_text(), error.as_str().into(), (*at).into())
        }
        Fate::Failed { error, .. } => {
            (State::Failed, none_time(), none_text(), none_text(), error.as_str().into(), none_time())
        }
        Fate::Suppressed { reason } => {
            (State::Suppressed, none_time(), none_text(), none_text(), reason.as_str().into(), none_time())
        }
        Fate::Unknown { message_id, error } => {
            (State::Unknown, now.into(), message_id.as_str().into(), none_text(), error.as_str().into(), none_time())
        }
        Fate::Expired => (State::Expired, none_time(), none_text(), none_text(), EXPIRED.into(), none_time()),
    };
    vec![
        row.id.into(),
        row.attempts.into(),
        state.into(),
        sent_at,
        message_id,
        server_reply,
        last_error,
        next_attempt_at,
    ]
}

/// A recipient the mail server refused outright is a hard bounce like one
/// reported later by mail or webhook: it goes into `feedback_events` (kind
/// `hard_bounce`, source `smtp`), so that reports and the circuit breaker
/// count both. Once per outbox row.
async fn record_refusal<C: ConnectionTrait>(
    db: &C,
    row: &Claimed,
    email: &str,
    reply: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    // "permanent error (550): 5.1.1 <...>: User unknown": the enhanced status code, when the server gives one.
    let status = reply.split_whitespace().find(|word| is_enhanced_status(word));
    let email = email.to_lowercase();
    let event = NewEvent {
        received_at: now,
        kind: EventKind::HardBounce,
        status,
        diagnostic: Some(reply),
        email: Some(&email),
        message: Some((row.id, row.run_id, row.customer_id)),
        source: "smtp",
        matched_by: Some("outbox"),
        fingerprint: &format!("smtp:{}", row.id),
    };
    feedback_log::insert(db, &event).await.map(drop)
}

/// `5.1.1`: a class digit and two numbers (RFC 3463).
fn is_enhanced_status(code: &str) -> bool {
    let parts: Vec<&str> = code.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..].iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Gives rows back unsent (on a stop, or when the server cannot be used),
/// without counting the attempt: each only while this sender still holds it.
pub async fn release(db: &DatabaseConnection, rows: &[Claimed], now: DateTime<Utc>) -> Result<(), DbErr> {
    give_back(db, rows, None, now).await
}

/// Gives rows back like `release`, not to be claimed before `until`: the
/// campaign's send window was closed when the sender came to them (a
/// retry, a row whose lease ran out, a backlog past the window's end).
pub async fn defer(
    db: &DatabaseConnection,
    rows: &[Claimed],
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    give_back(db, rows, Some(until), now).await
}

async fn give_back(
    db: &DatabaseConnection,
    rows: &[Claimed],
    not_before: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for chunk in rows.chunks(100) {
        let mut update = Query::update();
        update
            .table("outbox")
            .value("state", Expr::cust("CASE WHEN attempts > 1 THEN 'retrying' ELSE 'planned' END"))
            .value("attempts", Expr::col("attempts").sub(1))
            .value("lease_until", Option::<DateTime<Utc>>::None)
            .value("updated_at", now)
            .and_where(still_sending())
            .cond_where(held_by_us(chunk));
        if let Some(not_before) = not_before {
            update.value("not_before", not_before);
        }
        db.execute(&update).await?;
    }
    Ok(())
}

/// Extends the lease of rows this sender holds, so that no sender (this
/// one included) claims them again while they wait for a worker.
pub async fn renew(
    db: &DatabaseConnection,
    rows: &[(i64, i32)],
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let until = now + lease;
    for chunk in rows.chunks(100) {
        let mut held = Cond::any();
        for (id, attempts) in chunk {
            held = held.add(Expr::col("id").eq(*id).and(Expr::col("attempts").eq(*attempts)));
        }
        let update = Query::update()
            .table("outbox")
            .value("lease_until", until)
            .and_where(still_sending())
            .cond_where(held)
            .to_owned();
        db.execute(&update).await?;
    }
    Ok(())
}

/// The rows still as this sender claimed them (same id and attempt count).
fn held_by_us(rows: &[Claimed]) -> Cond {
    rows.iter()
        .fold(Cond::any(), |any, row| any.add(Expr::col("id").eq(row.id).and(Expr::col("attempts").eq(row.attempts))))
}

/// Which rows `requeue` puts back.
#[derive(Debug, Clone, Default)]
pub struct Requeue {
    /// `failed` or `unknown`.
    pub state: String,
    pub run_id: Option<i64>,
    /// Only rows that reached their state at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// Puts `failed` or `unknown` rows back to `planned` with no attempt made,
/// so that the sender tries them again (suppressions and consent are still
/// checked before each message). Returns how many.
pub async fn requeue(db: &DatabaseConnection, which: &Requeue) -> Result<u64, DbErr> {
    let mut update = Query::update();
    update
        .table("outbox")
        .value("state", State::Planned)
        .value("attempts", 0)
        .value("next_attempt_at", Option::<DateTime<Utc>>::None)
        .value("lease_until", Option::<DateTime<Utc>>::None)
        .value("updated_at", Utc::now())
        .and_where(Expr::col("state").eq(which.state.as_str()));
    if let Some(run_id) = which.run_id {
        update.and_where(Expr::col("run_id").eq(run_id));
    }
    if let Some(since) = which.since {
        update.and_where(Expr::col("updated_at").gte(since));
    }
    Ok(db.execute(&update).await?.rows_affected())
}

/// When the next row becomes due at or after `now`, if any is pending:
/// `now` when one is due, else the earliest window opening, retry, lease
/// end or expiry (at which `expire` has work). `None`: nothing left to send.
///
/// Everything is read in one statement, so from one snapshot: read one query
/// at a time, a row whose result or give-back committed between two of them
/// (from `sending` to `retrying` or `planned`) was seen in none, and a drain
/// ended with it pending.
pub async fn next_due(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, DbErr> {
    let due_now =
        Query::select().column("id").from("outbox").cond_where(due(now)).and_where(not_paused()).limit(1).to_owned();
    // A retry waits for its window too: the later of the two.
    let retry_at = Expr::case(Expr::col("not_before").gt(Expr::col("next_attempt_at")), Expr::col("not_before"))
        .finally(Expr::col("next_attempt_at"));
    let pending = || Expr::col("state").is_in(PENDING_STATES);
    let moments: [(&str, SimpleExpr, SimpleExpr); 4] = [
        ("planned", Expr::col("state").eq(State::Planned), Expr::col("not_before")),
        ("retrying", Expr::col("state").eq(State::Retrying), retry_at.into()),
        ("sending", Expr::col("state").eq(State::Sending), Expr::col("lease_until")),
        ("expiring", pending(), Expr::col("expires_at")),
    ];
    let names = moments.each_ref().map(|(name, ..)| *name);
    let mut select = Query::select();
    select.expr_as(Expr::SubQuery(None, Box::new(due_now.into())), Alias::new("due_now"));
    for (name, rows, moment) in moments {
        // Each its own MIN over its own rows, so that each can use its own index.
        let earliest = Query::select()
            .expr(Expr::expr(moment).min())
            .from("outbox")
            .and_where(rows)
            .and_where(not_paused())
            .to_owned();
        select.expr_as(Expr::SubQuery(None, Box::new(earliest.into())), Alias::new(name));
    }
    let Some(row) = db.query_one(&select).await? else { return Ok(None) };
    if row.try_get::<Option<i64>>("", "due_now")?.is_some() {
        return Ok(Some(now));
    }
    let mut earliest: Option<DateTime<Utc>> = None;
    for name in names {
        let at: Option<DateTime<Utc>> = row.try_get("", name)?;
        earliest = earliest.into_iter().chain(at).min();
    }
    Ok(earliest)
}

/// Rows whose campaign is not paused: a paused campaign's rows wait, unclaimed.
fn not_paused() -> SimpleExpr {
    Expr::col("run_id").not_in_subquery(super::campaign_pause::paused_runs())
}

/// The wait before attempt `attempts + 1`: `first` doubled per attempt made,
/// at most `max`, with ±25% jitter so that many retries do not arrive at once.
pub fn backoff(attempts: i32, first: Duration, max: Duration) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let base =
        Ord::clamp(first.num_milliseconds().saturating_mul(1i64 << doublings), 0, Ord::max(max.num_milliseconds(), 0));
    let jitter = rand::random_range(0.75..1.25);
    Duration::milliseconds((base as f64 * jitter) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enhanced_status_code_is_a_class_and_two_numbers() {
        for code in ["5.1.1", "4.7.0", "5.7.26", "2.0.0", "5.123.999"] {
            assert!(is_enhanced_status(code), "{code}");
        }
        for code in ["550", "5.1", "6.1.1", "5.1.1.1", "5.x.1", "<c7@example.com>:", "5.1.1234"] {
            assert!(!is_enhanced_status(code), "{code}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter() {
        let first = Duration::seconds(60);
        let max = Duration::hours(1);
        for (attempts, expected) in [(1, 60.0), (2, 120.0), (3, 240.0), (7, 3600.0), (40, 3600.0)] {
            let wait = backoff(attempts, first, max).num_milliseconds() as f64 / 1000.0;
            assert!((expected * 0.75..=expected * 1.25).contains(&wait), "attempt {attempts}: {wait}s");
        }
        assert_eq!(backoff(3, Duration::zero(), max), Duration::zero());
    }
}
