//! The daemon's feeds: each runs on its schedule, before the loyalty
//! recompute and scoring of the same tick, so that what depends on the data
//! is computed on the data just landed. A run that fails leaves patron's
//! data as it was and is tried again after a back-off (a minute, doubling
//! up to half an hour, never later than its next scheduled time), without
//! holding up the other feeds.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::{Daemon, Timer};
use crate::config::{FeedSettings, Loaded};
use crate::feed;

/// The first wait before a failed feed is tried again, and the longest.
const FIRST_RETRY: Duration = Duration::minutes(1);
const LONGEST_RETRY: Duration = Duration::minutes(30);

/// Each feed's timer and, after a failure, when it is tried again.
#[derive(Default)]
pub struct Feeds {
    timers: HashMap<String, FeedTimer>,
}

struct FeedTimer {
    timer: Timer,
    retry: Option<Retry>,
}

struct Retry {
    at: DateTime<Utc>,
    failures: u32,
}

impl Retry {
    fn after(failures: u32, now: DateTime<Utc>, next_scheduled: Option<DateTime<Utc>>) -> Retry {
        let wait = FIRST_RETRY * 2i32.saturating_pow(failures.saturating_sub(1).min(10));
        let at = now + wait.min(LONGEST_RETRY);
        Retry { at: next_scheduled.map_or(at, |next| at.min(next)), failures }
    }
}

impl Feeds {
    /// Runs every feed that is due (in the settings' order); true when one
    /// of them landed new or changed rows.
    pub async fn tick(&mut self, daemon: &Daemon, loaded: &Loaded, now: DateTime<Utc>) -> bool {
        let feeds = &loaded.settings.feeds;
        self.timers.retain(|name, _| feeds.iter().any(|feed| &feed.name == name));
        let mut refreshed = false;
        for feed in feeds {
            if self.due(feed, now) {
                refreshed |= self.run(daemon, loaded, feed, now).await;
            }
        }
        refreshed
    }

    /// Whether `feed`'s time, or its retry's, has come.
    fn due(&mut self, feed: &FeedSettings, now: DateTime<Utc>) -> bool {
        let entry = self
            .timers
            .entry(feed.name.clone())
            .or_insert_with(|| FeedTimer { timer: Timer::new(&feed.schedule, now), retry: None });
        entry.timer.follow(&feed.schedule, now);
        let scheduled = entry.timer.due(now);
        let retry = entry.retry.as_ref().is_some_and(|retry| retry.at <= now);
        scheduled || retry
    }

    async fn run(&mut self, daemon: &Daemon, loaded: &Loaded, feed: &FeedSettings, now: DateTime<Utc>) -> bool {
        super::systemd::status(&format!("running: feed {}", feed.name));
        let outcome = feed::run(&daemon.db, loaded, feed, now).await;
        let entry = self.timers.get_mut(&feed.name).expect("made by due");
        match outcome {
            Ok(outcome) if outcome.failed.is_empty() => {
                entry.retry = None;
                daemon.metrics.count_feed_run(&feed.name, true);
                tracing::info!(feed = %feed.name, rows = outcome.rows(), written = outcome.written(), "feed landed");
                outcome.written() > 0
            }
            Ok(outcome) => {
                // The rejected files are in failed/: trying them again changes nothing.
                daemon.metrics.count_feed_run(&feed.name, false);
                tracing::error!(feed = %feed.name, rejected = outcome.failed.len(), "feed: {}", outcome.failed.join("; "));
                outcome.written() > 0
            }
            Err(error) => {
                let failures = entry.retry.as_ref().map_or(0, |retry| retry.failures) + 1;
                let retry = Retry::after(failures, now, entry.timer.next);
                tracing::error!(feed = %feed.name, retry_at = %retry.at, "feed failed, nothing of it landed: {error:#}");
                entry.retry = Some(retry);
                daemon.metrics.count_feed_run(&feed.name, false);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_failed_feed_is_retried_sooner_and_sooner_never_after_its_next_time() {
        let now = utc("2026-12-03T02:00:00Z");
        assert_eq!(Retry::after(1, now, None).at, utc("2026-12-03T02:01:00Z"));
        assert_eq!(Retry::after(3, now, None).at, utc("2026-12-03T02:04:00Z"));
        assert_eq!(Retry::after(9, now, None).at, utc("2026-12-03T02:30:00Z"), "at most half an hour");
        let next = utc("2026-12-03T02:02:00Z");
        assert_eq!(Retry::after(3, now, Some(next)).at, next, "never after the next scheduled run");
    }
}
