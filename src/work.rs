//! Work that the running daemons share: a run of a job (scoring, the
//! loyalty recompute) split into ranges of customer ids. The leader starts
//! a run; every daemon, the leader too, takes one range at a time under a
//! lease, does it and marks it done in the same transaction as its writes,
//! and only if it still holds the range. A daemon that dies stops renewing
//! its lease, and the range is taken again once the lease has run out, so
//! adding a daemon shortens the run and losing one only delays it. The
//! leader finishes the run once every range is done (scoring then ranks
//! the whole base).

use std::ops::RangeInclusive;

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{
    Asterisk, BinOper, Expr, ExprTrait, IntoColumnRef, LockBehavior, LockType, Order, Query, SelectStatement,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, SqlErr, TransactionTrait};

use crate::db::engine::Txn;

/// The job of a scoring run.
pub const SCORING: &str = "score";
/// The job of a loyalty recompute.
pub const LOYALTY: &str = "loyalty";

/// Every job, in the order the leader finishes their runs.
pub const JOBS: [&str; 2] = [LOYALTY, SCORING];

/// Takes of one range before the run is given up: a range that fails
/// every time (a daemon crashing on it, say) must not hold the run forever.
pub const MAX_ATTEMPTS: i32 = 3;

/// One run of a job: what every range of it works with.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: i64,
    pub job: String,
    /// The model a scoring run scores with.
    pub model_id: Option<i64>,
    /// The moment the run computes for.
    pub as_of: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
}

/// A range taken by this daemon.
#[derive(Debug, Clone)]
pub struct Range {
    pub id: i64,
    pub run: Run,
    pub customers: RangeInclusive<i64>,
    /// This take included.
    pub attempts: i32,
}

/// The customers a piece of work covers: all, one range of ids, or an
/// even sample of the whole base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Customers {
    All,
    Range(RangeInclusive<i64>),
    /// The customers whose id is a multiple of `every`.
    Sample {
        every: i64,
    },
}

impl Customers {
    /// `select` limited to rows whose `column` (a customer id) is covered.
    pub fn limit(&self, mut select: SelectStatement, column: impl IntoColumnRef) -> SelectStatement {
        match self {
            Customers::All => {}
            Customers::Range(range) => {
                select.and_where(Expr::col(column).between(*range.start(), *range.end()));
            }
            Customers::Sample { every } => {
                select.and_where(Expr::col(column).modulo(*every).eq(0));
            }
        }
        select
    }

    /// An even sample of at most about `most` of `total` customers, or all
    /// of them when they are no more than that. Ids are assigned in
    /// sequence, so every n-th id is close to every n-th customer.
    pub fn sample(total: u64, most: u64) -> Customers {
        match total.div_ceil(Ord::max(most, 1)) {
            0 | 1 => Customers::All,
            every => Customers::Sample { every: every as i64 },
        }
    }
}

/// How far a run has come.
#[derive(Debug, Clone)]
pub struct Progress {
    pub run: Run,
    pub ranges: i64,
    pub done: i64,
    /// Ranges taken [`MAX_ATTEMPTS`] times and not done, whose last lease has
    /// run out: no daemon will take them again.
    pub given_up: i64,
}

impl Progress {
    /// Every range done or given up: the run can end.
    pub fn is_over(&self) -> bool {
        self.done + self.given_up >= self.ranges
    }
}

/// This daemon's name in `work_ranges.owner`: host, process and a random
/// number, so that a restarted daemon is never taken for its former self.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner(String);

impl Owner {
    pub fn of_this_process() -> Owner {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = if host.trim().is_empty() { "localhost" } else { host.trim() };
        Owner(format!("{host}:{}:{:08x}", std::process::id(), rand::random::<u32>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Starts a run of `job`, split into ranges of `range_size` customers
/// (every customer id falls in exactly one range, including customers
/// imported while the run goes on). None if a run of the job is unfinished.
pub async fn start(
    db: &DatabaseConnection,
    job: &str,
    model_id: Option<i64>,
    as_of: DateTime<Utc>,
    range_size: u64,
    now: DateTime<Utc>,
) -> Result<Option<Run>, DbErr> {
    let txn = db.begin().await?;
    if unfinished_run(&txn, job).await?.is_some() {
        return Ok(None);
    }
    let insert = Query::insert()
        .into_table("work_runs")
        .columns(["job", "model_id", "as_of", "started_at"])
        .values_panic([job.into(), model_id.into(), as_of.into(), now.into()])
        .returning_col("id")
        .to_owned();
    let row = match txn.query_one(&insert).await {
        // Another daemon started one since the check (see migration 000011).
        Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => return Ok(None),
        row => row?.ok_or_else(|| DbErr::Custom("the new work run has no id".into()))?,
    };
    let id: i64 = row.try_get("", "id")?;
    let mut ranges =
        Query::insert().into_table("work_ranges").columns(["run_id", "first_customer", "last_customer"]).to_owned();
    for range in customer_ranges(&txn, range_size).await? {
        ranges.values_panic([id.into(), (*range.start()).into(), (*range.end()).into()]);
    }
    txn.execute(&ranges).await?;
    txn.commit().await?;
    Ok(Some(Run { id, job: job.to_owned(), model_id, as_of, started_at: now }))
}

/// Customer ids split into ranges of `range_size` customers each, the
/// first reaching down to any id and the last up to any: one range when
/// there are no more customers than that.
pub async fn customer_ranges(db: &impl ConnectionTrait, range_size: u64) -> Result<Vec<RangeInclusive<i64>>, DbErr> {
    let starts = range_starts(db, range_size).await?;
    Ok(starts
        .iter()
        .enumerate()
        .map(|(i, first)| *first..=starts.get(i + 1).map_or(i64::MAX, |next| next - 1))
        .collect())
}

/// The first customer id of each range: `i64::MIN` (so that the first
/// range reaches down to any id, as the last reaches up to any), then every
/// `range_size`-th id in order, found by the database.
async fn range_starts(db: &impl ConnectionTrait, range_size: u64) -> Result<Vec<i64>, DbErr> {
    let range_size = Ord::max(i64::try_from(range_size).unwrap_or(i64::MAX), 1);
    let numbered = Query::select()
        .column("id")
        .expr_as(Expr::cust("row_number() OVER (ORDER BY id)"), "position")
        .from("customers")
        .to_owned();
    let starts = Query::select()
        .column("id")
        .from_subquery(numbered, "numbered")
        .and_where(Expr::col("position").gt(1))
        .and_where(Expr::col("position").sub(1).binary(BinOper::Mod, range_size).eq(0))
        .order_by("id", Order::Asc)
        .to_owned();
    let mut result = vec![i64::MIN];
    for row in db.query_all(&starts).await? {
        result.push(row.try_get("", "id")?);
    }
    Ok(result)
}

/// Takes the next range nobody holds (never taken, or its lease ran out)
/// of an unfinished run, for `lease`; None when there is none.
pub async fn take(
    db: &DatabaseConnection,
    owner: &Owner,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Range>, DbErr> {
    let unfinished_runs =
        Query::select().column("id").from("work_runs").and_where(Expr::col("finished_at").is_null()).to_owned();
    let mut free = Query::select();
    free.column("id")
        .from("work_ranges")
        .and_where(Expr::col("done_at").is_null())
        .and_where(Expr::col("lease_until").is_null().or(Expr::col("lease_until").lt(now)))
        .and_where(Expr::col("attempts").lt(MAX_ATTEMPTS))
        .and_where(Expr::col("run_id").in_subquery(unfinished_runs))
        .order_by("id", Order::Asc)
        .limit(1);
    if db.get_database_backend() == DbBackend::Postgres {
        free.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let take = Query::update()
        .table("work_ranges")
        .value("owner", owner.as_str())
        .value("taken_at", now)
        .value("lease_until", now + lease)
        .value("attempts", Expr::col("attempts").add(1))
        .and_where(Expr::col("id").in_subquery(free))
        .returning(Query::returning().columns(["id", "run_id", "first_customer", "last_customer", "attempts"]))
        .to_owned();
    let Some(row) = db.query_one(&take).await? else { return Ok(None) };
    let run_id: i64 = row.try_get("", "run_id")?;
    let run = run_by_id(db, run_id).await?.ok_or_else(|| DbErr::RecordNotFound(format!("work run {run_id}")))?;
    Ok(Some(Range {
        id: row.try_get("", "id")?,
        run,
        customers: row.try_get("", "first_customer")?..=row.try_get("", "last_customer")?,
        attempts: row.try_get("", "attempts")?,
    }))
}

/// Extends the lease of a range this daemon still holds; false if it no
/// longer does (its lease ran out and another daemon took it).
pub async fn renew(
    db: &DatabaseConnection,
    range: &Range,
    owner: &Owner,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let renew = Query::update()
        .table("work_ranges")
        .value("lease_until", now + lease)
        .and_where(Expr::col("id").eq(range.id))
        .and_where(Expr::col("owner").eq(owner.as_str()))
        .and_where(Expr::col("done_at").is_null())
        .to_owned();
    Ok(db.execute(&renew).await?.rows_affected() == 1)
}

/// Marks the range done inside the transaction that wrote its results;
/// false if this daemon no longer holds it, and then the transaction must
/// be rolled back: the daemon that took it over writes the range.
pub async fn complete(txn: &mut Txn, range: &Range, owner: &Owner, now: DateTime<Utc>) -> Result<bool, DbErr> {
    let done = Query::update()
        .table("work_ranges")
        .value("done_at", now)
        .and_where(Expr::col("id").eq(range.id))
        .and_where(Expr::col("owner").eq(owner.as_str()))
        .and_where(Expr::col("done_at").is_null())
        .to_owned();
    Ok(txn.execute(&done).await? == 1)
}

/// The unfinished run of `job`, if any, and how far it has come.
pub async fn progress(db: &DatabaseConnection, job: &str, now: DateTime<Utc>) -> Result<Option<Progress>, DbErr> {
    let Some(run) = unfinished_run(db, job).await? else { return Ok(None) };
    let given_up = Expr::col("done_at")
        .is_null()
        .and(Expr::col("attempts").gte(MAX_ATTEMPTS))
        .and(Expr::col("lease_until").lt(now));
    let counts = Query::select()
        .expr_as(Expr::col(Asterisk).count(), "ranges")
        .expr_as(Expr::col("done_at").count(), "done")
        .expr_as(Expr::expr(Expr::case(given_up, 1).finally(0)).sum(), "given_up")
        .from("work_ranges")
        .and_where(Expr::col("run_id").eq(run.id))
        .to_owned();
    let row = db.query_one(&counts).await?.ok_or_else(|| DbErr::Custom("no count of work ranges".into()))?;
    let number = |column: &str| -> Result<i64, DbErr> { Ok(row.try_get::<Option<i64>>("", column)?.unwrap_or(0)) };
    Ok(Some(Progress { run, ranges: number("ranges")?, done: number("done")?, given_up: number("given_up")? }))
}

/// Ends a run (`done`, or `abandoned` when ranges were given up) inside
/// the transaction of its last step; false if it had already ended.
pub async fn finish(txn: &mut Txn, run: &Run, outcome: &str, now: DateTime<Utc>) -> Result<bool, DbErr> {
    let finish = Query::update()
        .table("work_runs")
        .value("finished_at", now)
        .value("outcome", outcome)
        .and_where(Expr::col("id").eq(run.id))
        .and_where(Expr::col("finished_at").is_null())
        .to_owned();
    Ok(txn.execute(&finish).await? == 1)
}

/// Ends a run that has no last step of its own, in a transaction of its own.
pub async fn finish_alone(
    db: &DatabaseConnection,
    run: &Run,
    outcome: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let mut txn = Txn::begin(db, crate::db::engine::Options::default()).await?;
    let finished = finish(&mut txn, run, outcome, now).await?;
    txn.commit().await?;
    Ok(finished)
}

const RUN_COLUMNS: [&str; 5] = ["id", "job", "model_id", "as_of", "started_at"];

fn run_of(row: &QueryResult) -> Result<Run, DbErr> {
    Ok(Run {
        id: row.try_get("", "id")?,
        job: row.try_get("", "job")?,
        model_id: row.try_get("", "model_id")?,
        as_of: row.try_get("", "as_of")?,
        started_at: row.try_get("", "started_at")?,
    })
}

async fn unfinished_run(db: &impl ConnectionTrait, job: &str) -> Result<Option<Run>, DbErr> {
    let select = Query::select()
        .columns(RUN_COLUMNS)
        .from("work_runs")
        .and_where(Expr::col("job").eq(job))
        .and_where(Expr::col("finished_at").is_null())
        .order_by("id", Order::Asc)
        .limit(1)
        .to_owned();
    db.query_one(&select).await?.as_ref().map(run_of).transpose()
}

async fn run_by_id(db: &impl ConnectionTrait, id: i64) -> Result<Option<Run>, DbErr> {
    let select = Query::select().columns(RUN_COLUMNS).from("work_runs").and_where(Expr::col("id").eq(id)).to_owned();
    db.query_one(&select).await?.as_ref().map(run_of).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_takes_every_nth_id_only_when_the_base_is_larger_than_asked() {
        assert_eq!(Customers::sample(0, 200_000), Customers::All);
        assert_eq!(Customers::sample(200_000, 200_000), Customers::All);
        assert_eq!(Customers::sample(200_001, 200_000), Customers::Sample { every: 2 });
        assert_eq!(Customers::sample(10_000_000, 200_000), Customers::Sample { every: 50 });
    }
}
