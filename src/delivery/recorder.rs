//! The recorder: writes the workers' results in group commits and, beside
//! each commit, makes the last checks of their next messages
//! ([`refusal`]), answering each worker once its result is committed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbBackend, DbErr};
use tokio::sync::{mpsc, oneshot};

use super::breaker;
use super::held::Held;
use super::outbox::{self, Claimed, Clock, Fate};
use super::refusal::{self, Check, Refusal};
use super::result_log;
use crate::db::engine;

/// How many rows ended in each way during one drain.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub sent: u64,
    pub retrying: u64,
    pub failed: u64,
    pub suppressed: u64,
    /// Sent, but the server's reply was lost (state `unknown`).
    pub unknown: u64,
    /// Not sent by their expiry (state `expired`).
    pub expired: u64,
    /// Why the last pass stopped early: the SMTP server could not be used.
    pub paused: Option<String>,
}

impl Report {
    pub(super) fn add(&mut self, pass: Report) {
        self.sent += pass.sent;
        self.retrying += pass.retrying;
        self.failed += pass.failed;
        self.suppressed += pass.suppressed;
        self.unknown += pass.unknown;
        self.expired += pass.expired;
        self.paused = pass.paused;
    }

    /// Whether any row reached a result.
    pub fn any(&self) -> bool {
        self.sent + self.retrying + self.failed + self.suppressed + self.unknown + self.expired > 0
    }

    /// Whether the server answered for any message: a pause after that is a
    /// new one, which starts again from the first wait.
    pub fn reached_server(&self) -> bool {
        self.sent + self.retrying + self.failed + self.unknown > 0
    }
}

/// What the recorder is asked to do.
pub(super) enum Record {
    /// Write a result; then answer `ask`.
    Done { row: Claimed, fate: Fate, ask: Option<Ask> },
    /// Only a check: for a worker's message that follows no result of its own.
    Ask(Ask),
    /// Not sent (the server could not be used): give the row back.
    Release { row: Claimed },
}

/// A worker waiting for the results before it to be committed, and for the
/// check of its next message (`next`) when it has one.
pub(super) struct Ask {
    pub(super) next: Option<Check>,
    pub(super) answer: oneshot::Sender<Option<Checked>>,
}

/// The last check's verdict, or why it could not be made.
pub(super) type Checked = Result<Refusal, String>;

pub(super) const RECORDER_STOPPED: &str = "the recorder stopped";

/// Most results written per transaction.
const RECORD_BATCH: usize = 256;

/// Starts the recorder. On SQLite it runs on a thread of its own that drives
/// its connection directly: a group commit through sqlx costs a hand-off to
/// the connection's worker thread and back per statement, several times the
/// statement's own time, and the workers wait for every commit.
/// `broken` runs when nothing more can be recorded.
pub(super) fn spawn_recorder(
    db: DatabaseConnection,
    record_rx: mpsc::Receiver<Record>,
    held: Arc<Held>,
    broken: impl FnOnce() + Send + 'static,
    breaker: breaker::Limits,
    clock: Clock,
) -> tokio::task::JoinHandle<anyhow::Result<Report>> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return tokio::spawn(
            async move { on_failure(record_all(&db, record_rx, &held, &breaker, clock).await, broken) },
        );
    }
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let recorded = engine::with_sqlite_connection(&db, &runtime, |direct| {
            let checks = refusal::SqliteChecks::default();
            let recorder =
                SqliteRecorder { db: &db, direct, runtime: &runtime, held: &held, breaker: &breaker, clock, checks };
            recorder.record_all(record_rx)
        });
        on_failure(recorded.map_err(anyhow::Error::from).and_then(|recorded| recorded), broken)
    })
}

/// `recorded`, after running `broken` if it failed.
fn on_failure(recorded: anyhow::Result<Report>, broken: impl FnOnce()) -> anyhow::Result<Report> {
    if recorded.is_err() {
        broken();
    }
    recorded
}

/// What a batch of records asks for.
#[derive(Default)]
struct Batch {
    results: Vec<(Claimed, Fate)>,
    released: Vec<Claimed>,
    asks: Vec<Ask>,
}

impl Batch {
    fn sort(records: impl Iterator<Item = Record>, report: &mut Report) -> Batch {
        let mut batch = Batch::default();
        for record in records {
            match record {
                Record::Done { row, fate, ask } => {
                    count(report, &fate);
                    batch.results.push((row, fate));
                    batch.asks.extend(ask);
                }
                Record::Ask(ask) => batch.asks.push(ask),
                Record::Release { row } => batch.released.push(row),
            }
        }
        batch
    }

    fn checks(&self) -> Vec<Check> {
        self.asks.iter().filter_map(|ask| ask.next.clone()).collect()
    }

    /// Out of `held` before the write, so that a claim taking a given-back
    /// row again (possible once the write commits) always comes after.
    fn leave(&self, held: &Held) {
        held.finish(self.results.iter().map(|(row, _)| row.id).chain(self.released.iter().map(|row| row.id)));
    }
}

async fn record_all(
    db: &DatabaseConnection,
    mut record_rx: mpsc::Receiver<Record>,
    held: &Held,
    breaker: &breaker::Limits,
    clock: Clock,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut records = Vec::with_capacity(RECORD_BATCH);
    let mut going = 0;
    while record_rx.recv_many(&mut records, RECORD_BATCH).await > 0 {
        gather(&mut record_rx, &mut records, going, LINGER).await;
        let batch = Batch::sort(records.drain(..), &mut report);
        // The checks need not wait for the results: they run beside them, on
        // a second connection; the answers go once both are done.
        let checks = batch.checks();
        batch.leave(held);
        let (written, refused) = tokio::join!(
            write(db, &batch.results, &batch.released, breaker, clock.now()),
            refusal::refusals(db, &checks)
        );
        written?;
        going = answer(batch.asks, refused);
    }
    Ok(report)
}

/// How long the recorder on PostgreSQL waits at most for the results of the
/// messages its last commit let go. Those messages go out together, so
/// their results come back within a round trip or two of the server; one
/// commit for all of them instead of one per few halves the commits, which
/// cost PostgreSQL more than the rows they write. A result that takes
/// longer (a slow or far server) goes in the next commit.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// Adds to `records` the results of the `going` messages as they come, for
/// at most `linger`: a result or a given-back row for each.
async fn gather(
    record_rx: &mut mpsc::Receiver<Record>,
    records: &mut Vec<Record>,
    going: usize,
    linger: std::time::Duration,
) {
    let deadline = tokio::time::Instant::now() + linger;
    let settled = |records: &[Record]| records.iter().filter(|record| !matches!(record, Record::Ask(_))).count();
    while settled(records) < going && records.len() < RECORD_BATCH {
        match tokio::time::timeout_at(deadline, record_rx.recv()).await {
            Ok(Some(record)) => records.push(record),
            Ok(None) | Err(_) => return,
        }
    }
}

/// The recorder on SQLite, on its own thread (see [`spawn_recorder`]).
struct SqliteRecorder<'a> {
    db: &'a DatabaseConnection,
    direct: &'a engine::Direct<'a>,
    runtime: &'a tokio::runtime::Handle,
    held: &'a Held,
    breaker: &'a breaker::Limits,
    clock: Clock,
    checks: refusal::SqliteChecks,
}

impl SqliteRecorder<'_> {
    fn record_all(&self, mut record_rx: mpsc::Receiver<Record>) -> anyhow::Result<Report> {
        let mut report = Report::default();
        let mut records = Vec::with_capacity(RECORD_BATCH);
        while self.runtime.block_on(record_rx.recv_many(&mut records, RECORD_BATCH)) > 0 {
            let batch = Batch::sort(records.drain(..), &mut report);
            batch.leave(self.held);
            self.write(&batch)?;
            let refused = self.checks.refusals(self.direct, &batch.checks());
            answer(batch.asks, refused);
        }
        Ok(report)
    }

    /// The usual batch (results only, none a refused recipient) in one
    /// statement on this connection; any other through the pool, as on
    /// PostgreSQL.
    fn write(&self, batch: &Batch) -> Result<(), DbErr> {
        let now = self.clock.now();
        if batch.released.is_empty() {
            if batch.results.is_empty() {
                return Ok(());
            }
            if let Some(update) = outbox::record_in_one_statement(&batch.results, now) {
                return self.direct.execute(&update).map(drop);
            }
        }
        self.runtime.block_on(write(self.db, &batch.results, &batch.released, self.breaker, now))
    }
}

/// Writes a batch of results and given-back rows.
async fn write(
    db: &DatabaseConnection,
    results: &[(Claimed, Fate)],
    released: &[Claimed],
    breaker: &breaker::Limits,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if !results.is_empty() && !result_log::append(db, results, now).await? {
        outbox::record(db, results, now).await?;
    }
    outbox::release(db, released, now).await?;
    // A refused recipient is a hard bounce: its campaign may be over the limit now.
    let refused: BTreeSet<i64> = results
        .iter()
        .filter(|(_, fate)| matches!(fate, Fate::Failed { bounced: Some(_), .. }))
        .map(|(row, _)| row.run_id)
        .collect();
    for run_id in refused {
        breaker::check(db, run_id, breaker).await?;
    }
    Ok(())
}

/// Tells each worker that its results are committed, and whether its next
/// message may go. Returns how many may.
fn answer(asks: Vec<Ask>, refused: Result<HashMap<i64, Refusal>, DbErr>) -> usize {
    let mut going = 0;
    for ask in asks {
        let checked = ask.next.map(|check| match &refused {
            Ok(refusals) => {
                Ok(refusals.get(&check.outbox_id).copied().unwrap_or(Refusal::Never("the customer no longer exists")))
            }
            Err(error) => Err(format!("checking suppressions: {error}")),
        });
        going += usize::from(matches!(checked, Some(Ok(Refusal::None))));
        let _ = ask.answer.send(checked);
    }
    going
}

fn count(report: &mut Report, fate: &Fate) {
    match fate {
        Fate::Sent { .. } => report.sent += 1,
        Fate::Retry { .. } => report.retrying += 1,
        Fate::Failed { .. } => report.failed += 1,
        Fate::Suppressed { .. } => report.suppressed += 1,
        Fate::Unknown { .. } => report.unknown += 1,
        Fate::Expired => report.expired += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(id: i64) -> Claimed {
        Claimed { id, run_id: 1, customer_id: id, variant: None, attempts: 1, expires_at: None }
    }

    fn sent(id: i64) -> Record {
        Record::Done {
            row: claimed(id),
            fate: Fate::Sent { message_id: format!("<{id}@test>"), reply: "250".into() },
            ask: None,
        }
    }

    fn ids(records: &[Record]) -> Vec<i64> {
        records
            .iter()
            .filter_map(|record| if let Record::Done { row, .. } = record { Some(row.id) } else { None })
            .collect()
    }

    #[tokio::test]
    async fn the_recorder_waits_for_the_results_of_the_messages_it_let_go() {
        let (record_tx, mut record_rx) = mpsc::channel(16);
        let mut records = vec![sent(1)];
        tokio::spawn(async move {
            for id in [2, 3] {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                record_tx.send(sent(id)).await.unwrap();
            }
            // Not awaited: gather has what it waits for before this one.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let _ = record_tx.send(sent(4)).await;
        });
        gather(&mut record_rx, &mut records, 3, std::time::Duration::from_secs(60)).await;
        assert_eq!(ids(&records), [1, 2, 3]);
    }

    #[tokio::test]
    async fn the_recorder_writes_what_it_has_when_a_result_is_late() {
        let (record_tx, mut record_rx) = mpsc::channel(16);
        let mut records = vec![sent(1)];
        record_tx.send(sent(2)).await.unwrap();
        // Three went; the third has not come back within the linger.
        gather(&mut record_rx, &mut records, 3, std::time::Duration::from_millis(10)).await;
        assert_eq!(ids(&records), [1, 2]);
        drop(record_tx);
    }

    #[tokio::test]
    async fn a_check_is_not_a_result_the_recorder_waits_for() {
        let (record_tx, mut record_rx) = mpsc::channel(16);
        let (answer, _answered) = oneshot::channel();
        let mut records = vec![Record::Ask(Ask { next: None, answer })];
        record_tx.send(sent(1)).await.unwrap();
        gather(&mut record_rx, &mut records, 1, std::time::Duration::from_secs(60)).await;
        assert_eq!(records.len(), 2);
        assert_eq!(ids(&records), [1]);
    }
}
