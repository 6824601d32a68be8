//! The rows a sender holds: claimed by this pass, their results not yet
//! recorded. Their leases are renewed while they wait, so that no other
//! sender claims them, and a pass ends only once none is left.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Duration;
use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

use super::outbox::{self, Claimed, Clock};

/// The rows this sender holds (claimed, result not yet recorded): queued
/// for a worker, or busy (handed to an SMTP session, or being recorded).
#[derive(Default)]
pub(super) struct Held {
    rows: std::sync::Mutex<HashMap<i64, (Claimed, bool)>>,
    changed: Notify,
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (Claimed, bool)>> {
        self.rows.lock().expect("not poisoned")
    }

    pub(super) fn add(&self, rows: &[Claimed]) {
        self.lock().extend(rows.iter().map(|row| (row.id, (row.clone(), false))));
    }

    pub(super) fn is_queued(&self, id: i64) -> bool {
        self.lock().get(&id).is_some_and(|(_, busy)| !busy)
    }

    /// Marks a queued row busy; false if it is no longer held (given back).
    pub(super) fn start(&self, id: i64) -> bool {
        match self.lock().get_mut(&id) {
            Some((_, busy)) if !*busy => {
                *busy = true;
                true
            }
            _ => false,
        }
    }

    /// Takes every row no worker has started on.
    pub(super) fn take_queued(&self) -> Vec<Claimed> {
        let mut rows = self.lock();
        let queued: Vec<i64> = rows.iter().filter(|(_, (_, busy))| !busy).map(|(id, _)| *id).collect();
        let taken = queued.iter().filter_map(|id| rows.remove(id)).map(|(row, _)| row).collect();
        drop(rows);
        self.changed.notify_waiters();
        taken
    }

    pub(super) fn remove(&self, ids: impl IntoIterator<Item = i64>) {
        let mut rows = self.lock();
        for id in ids {
            rows.remove(&id);
        }
        drop(rows);
        self.changed.notify_waiters();
    }

    /// Lets go of rows a worker started on, whose results or give-backs are
    /// being written. A row given back can be claimed again by this pass
    /// once that write commits; its new entry is queued, not started, and
    /// stays: dropping it would leave the row `sending` until its lease ran out.
    pub(super) fn finish(&self, ids: impl IntoIterator<Item = i64>) {
        let mut rows = self.lock();
        for id in ids {
            if rows.get(&id).is_some_and(|(_, busy)| *busy) {
                rows.remove(&id);
            }
        }
        drop(rows);
        self.changed.notify_waiters();
    }

    /// Every held row's id and attempt count, for the lease renewal.
    pub(super) fn leases(&self) -> Vec<(i64, i32)> {
        self.lock().values().map(|(row, _)| (row.id, row.attempts)).collect()
    }

    /// Waits until every held row is recorded (or its record is being
    /// written). A recorder that fails halts the pass instead.
    pub(super) async fn idle(&self) {
        loop {
            let notified = self.changed.notified();
            if self.lock().is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// Renews the leases of the held rows four times per lease.
pub(super) async fn renew_loop(db: DatabaseConnection, held: Arc<Held>, lease: Duration, clock: Clock) {
    let every = (lease / 4).to_std().unwrap_or_default().max(std::time::Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let leases = held.leases();
        if leases.is_empty() {
            continue;
        }
        if let Err(error) = outbox::renew(&db, &leases, lease, clock.now()).await {
            tracing::warn!(%error, rows = leases.len(), "renewing the leases of held messages");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(id: i64) -> Claimed {
        Claimed { id, run_id: 1, customer_id: id, variant: None, attempts: 1, expires_at: None }
    }

    #[test]
    fn a_row_given_back_and_claimed_again_stays_held_when_its_first_claim_is_settled() {
        let held = Held::default();
        held.add(&[claimed(1), claimed(2)]);
        assert!(held.start(1) && held.start(2));
        // Row 1 was given back (the server could not be used) and the
        // claimer took it again before the recorder let go of it.
        held.add(&[claimed(1)]);
        held.finish([1, 2]);
        assert!(held.is_queued(1), "the new claim of row 1 was dropped");
        assert_eq!(held.take_queued().iter().map(|row| row.id).collect::<Vec<_>>(), [1]);
        assert!(held.lock().is_empty());
    }
}
