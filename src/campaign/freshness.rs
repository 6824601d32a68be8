//! The staleness guard (`campaigns.max_data_age`): a campaign whose audience
//! reads the orders or the scores does not plan on data older than the
//! operator allows. A win-back planned while the order feed has been stuck
//! for days writes to customers who have ordered since.
//!
//! Ages are taken at the fire time, and a load that landed after it counts
//! as fresh: a fire held back at 09:00 plans at 09:05, once the feed landed.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use sea_orm::{DatabaseConnection, DbErr};

use super::plan::Rules;
use super::spec::Campaign;
use crate::model::registry;
use crate::segment::{Dependencies, Field};

/// What the audience of `campaign` reads: its segment and its order field.
pub fn dependencies(campaign: &Campaign) -> Dependencies {
    let order = campaign.audience.order.as_ref();
    let order = order.map_or(Dependencies::NONE, |order| Field::Named(order.field.clone()).dependencies());
    campaign.audience.expr.dependencies().and(order)
}

/// When the data a campaign may read was last brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataTimes {
    /// The newest successful import or feed landing.
    pub loaded_at: Option<DateTime<Utc>>,
    /// When the active model last scored the customers; the feature
    /// snapshots are written by the same scoring.
    pub scored_at: Option<DateTime<Utc>>,
}

impl DataTimes {
    pub async fn read(db: &DatabaseConnection) -> Result<DataTimes, DbErr> {
        let loaded_at = crate::feed::state::newest_load(db).await?;
        Ok(DataTimes { loaded_at, scored_at: registry::last_scored_at(db).await? })
    }
}

/// One reason the data is too old to plan on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// No import or feed is recorded, so the data's age is unknown.
    NoLoad { limit: Duration },
    /// The newest import or feed, at `at`, is `age` old at the fire time.
    Load { at: DateTime<Utc>, age: Duration, limit: Duration },
    /// The active model has not scored the customers.
    NoScores { limit: Duration },
    /// The last scoring, at `at`, is `age` old at the fire time.
    Scores { at: DateTime<Utc>, age: Duration, limit: Duration },
}

/// Why a fire is held back: every reason, the data's before the scores'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staleness(pub Vec<Stale>);

/// Whether a campaign that reads `reads` may plan at `at` on data last
/// brought up to date at `times`: `None` when it may (or without a guard).
pub fn judge(reads: Dependencies, times: &DataTimes, rules: &Rules, at: DateTime<Utc>) -> Option<Staleness> {
    let max_data_age = rules.max_data_age?;
    let mut reasons = Vec::new();
    // Scores are computed from the orders, so a segment on scores reads them too.
    if reads.orders || reads.scores {
        match times.loaded_at {
            None => reasons.push(Stale::NoLoad { limit: max_data_age }),
            Some(loaded) if age(loaded, at) > max_data_age => {
                reasons.push(Stale::Load { at: loaded, age: age(loaded, at), limit: max_data_age })
            }
            Some(_) => {}
        }
    }
    if reads.scores {
        let limit = rules.max_score_age;
        match times.scored_at {
            None => reasons.push(Stale::NoScores { limit }),
            Some(scored) if age(scored, at) > limit => {
                reasons.push(Stale::Scores { at: scored, age: age(scored, at), limit })
            }
            Some(_) => {}
        }
    }
    (!reasons.is_empty()).then_some(Staleness(reasons))
}

/// [`judge`] with the times read now; nothing is read for a campaign the
/// guard does not apply to.
pub async fn check(
    db: &DatabaseConnection,
    campaign: &Campaign,
    rules: &Rules,
    at: DateTime<Utc>,
) -> Result<Option<Staleness>, DbErr> {
    let reads = dependencies(campaign);
    if rules.max_data_age.is_none() || reads.is_none() {
        return Ok(None);
    }
    Ok(judge(reads, &DataTimes::read(db).await?, rules, at))
}

/// How old something from `since` is at `at`; never below zero.
pub fn age(since: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    (at - since).max(Duration::zero())
}

/// A duration to the minute, as a person reads it: `45s`, `20m`, `30h`,
/// `26h 30m`, `3d 4h`.
pub fn age_text(age: Duration) -> String {
    let minutes = age.num_minutes();
    let (hours, days) = (minutes / 60, minutes / (24 * 60));
    match minutes {
        0 => format!("{}s", age.num_seconds()),
        1..60 => format!("{minutes}m"),
        _ if hours < 48 && minutes % 60 == 0 => format!("{hours}h"),
        _ if hours < 48 => format!("{hours}h {}m", minutes % 60),
        _ if hours % 24 == 0 => format!("{days}d"),
        _ => format!("{days}d {}h", hours % 24),
    }
}

/// A moment as the guard's reasons write it.
pub fn time_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Stale::NoLoad { limit } => write!(
                f,
                "no import or feed has been recorded, so the data's age is unknown (campaigns.max_data_age is {})",
                age_text(limit)
            ),
            Stale::Load { at, age, limit } => write!(
                f,
                "data is {} old, older than campaigns.max_data_age ({}): the newest import or feed was at {}",
                age_text(age),
                age_text(limit),
                time_text(at)
            ),
            Stale::NoScores { limit } => write!(
                f,
                "the active model has not scored the customers, so the scores' age is unknown \
                 (daemon.max_score_age is {})",
                age_text(limit)
            ),
            Stale::Scores { at, age, limit } => write!(
                f,
                "scores are {} old, older than daemon.max_score_age ({}): the last scoring was at {}",
                age_text(age),
                age_text(limit),
                time_text(at)
            ),
        }
    }
}

impl fmt::Display for Staleness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, reason) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{reason}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn rules(max_data_age: Option<Duration>) -> Rules {
        Rules {
            default_holdout: 0.0,
            frequency_cap: 0,
            frequency_window: Duration::days(7),
            attribution_window: Duration::days(7),
            max_data_age,
            max_score_age: Duration::hours(26),
        }
    }

    const AT: &str = "2026-12-03T09:00:00Z";

    fn times(loaded_at: Option<&str>, scored_at: Option<&str>) -> DataTimes {
        DataTimes { loaded_at: loaded_at.map(utc), scored_at: scored_at.map(utc) }
    }

    #[test]
    fn data_older_than_max_data_age_holds_back_a_segment_on_the_orders() {
        let guard = rules(Some(Duration::hours(26)));
        let old = times(Some("2026-12-02T03:00:00Z"), None);
        let staleness = judge(Dependencies::ORDERS, &old, &guard, utc(AT)).expect("stale");
        assert_eq!(
            staleness.to_string(),
            "data is 30h old, older than campaigns.max_data_age (26h): the newest import or feed was at \
             2026-12-02 03:00 UTC"
        );
        // At the limit it is fresh; a load after the fire time is fresh too.
        let at_limit = times(Some("2026-12-02T07:00:00Z"), None);
        assert_eq!(judge(Dependencies::ORDERS, &at_limit, &guard, utc(AT)), None);
        let after = times(Some("2026-12-03T09:05:00Z"), None);
        assert_eq!(judge(Dependencies::ORDERS, &after, &guard, utc(AT)), None);
    }

    #[test]
    fn no_load_recorded_is_stale_while_the_guard_is_on() {
        let staleness = judge(Dependencies::ORDERS, &DataTimes::default(), &rules(Some(Duration::hours(26))), utc(AT));
        assert_eq!(staleness, Some(Staleness(vec![Stale::NoLoad { limit: Duration::hours(26) }])));
        assert_eq!(
            staleness.unwrap().to_string(),
            "no import or feed has been recorded, so the data's age is unknown (campaigns.max_data_age is 26h)"
        );
    }

    #[test]
    fn a_segment_on_scores_needs_fresh_data_and_fresh_scores() {
        let guard = rules(Some(Duration::hours(26)));
        let both_old = times(Some("2026-11-30T09:00:00Z"), Some("2026-12-01T10:00:00Z"));
        assert_eq!(
            judge(Dependencies::SCORING, &both_old, &guard, utc(AT)).unwrap().to_string(),
            "data is 3d old, older than campaigns.max_data_age (26h): the newest import or feed was at \
             2026-11-30 09:00 UTC; scores are 47h old, older than daemon.max_score_age (26h): the last \
             scoring was at 2026-12-01 10:00 UTC"
        );
        let unscored = times(Some("2026-12-03T08:00:00Z"), None);
        assert_eq!(
            judge(Dependencies::SCORING, &unscored, &guard, utc(AT)),
            Some(Staleness(vec![Stale::NoScores { limit: Duration::hours(26) }]))
        );
        // Old scores do not hold back a segment on the orders alone.
        let old_scores = times(Some("2026-12-03T08:00:00Z"), Some("2026-11-01T00:00:00Z"));
        assert_eq!(judge(Dependencies::ORDERS, &old_scores, &guard, utc(AT)), None);
    }

    #[test]
    fn without_the_guard_or_dependencies_nothing_is_held_back() {
        let nothing = DataTimes::default();
        assert_eq!(judge(Dependencies::SCORING, &nothing, &rules(None), utc(AT)), None);
        assert_eq!(judge(Dependencies::NONE, &nothing, &rules(Some(Duration::hours(1))), utc(AT)), None);
    }

    #[test]
    fn ages_read_to_the_minute() {
        let texts: Vec<String> = [
            Duration::seconds(45),
            Duration::minutes(20),
            Duration::minutes(90),
            Duration::hours(26),
            Duration::hours(47) + Duration::minutes(59),
            Duration::hours(48),
            Duration::hours(76),
            Duration::days(7),
        ]
        .into_iter()
        .map(age_text)
        .collect();
        assert_eq!(texts, ["45s", "20m", "1h 30m", "26h", "47h 59m", "2d", "3d 4h", "7d"]);
        assert_eq!(age(utc(AT), utc("2026-12-03T08:00:00Z")), Duration::zero());
    }
}
