//! The circuit breaker: a campaign whose recent sends draw too many
//! complaints or hard bounces is paused before mailbox providers block the
//! sender (Gmail and Yahoo want spam complaints under 0.3%, better 0.1%).
//! Its queued messages wait until `patron campaign resume`.

use chrono::{Duration, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DbErr, TransactionTrait};

use super::campaign_pause;
use super::feedback_log::EventKind;
use super::result_log;
use crate::config::FeedbackSettings;
use crate::db::entities::outbox::State;

/// When a campaign is paused; see `[feedback]` in `config/patron.toml`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_complaint_rate: f64,
    pub max_bounce_rate: f64,
    /// Sends needed before a rate counts: one complaint in ten sends says little.
    pub min_sample: u64,
    /// How far back sends and events count.
    pub window: Duration,
}

impl Limits {
    pub fn from_settings(feedback: &FeedbackSettings) -> Limits {
        Limits {
            max_complaint_rate: feedback.max_complaint_rate,
            max_bounce_rate: feedback.max_bounce_rate,
            min_sample: feedback.min_sample,
            window: feedback.rate_window(),
        }
    }
}

/// A campaign's recent sends and what came back from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Messages handed to the mail server: sent, perhaps sent, or refused by it.
    pub sends: u64,
    pub complaints: u64,
    pub hard_bounces: u64,
}

/// Checks the campaign of run `run_id` after a complaint or hard bounce
/// (reported later, or a refusal at `RCPT`), and pauses it when a rate is
/// over its limit. The reason, when it was paused now.
pub async fn check<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    run_id: i64,
    limits: &Limits,
) -> Result<Option<String>, DbErr> {
    let Some(campaign) = campaign_of(db, run_id).await? else { return Ok(None) };
    // Counting reads the campaign's outbox rows: not again while it is paused.
    if campaign_pause::is_paused(db, &campaign).await? {
        return Ok(None);
    }
    // The sends whose results are still in the log count too.
    result_log::fold(db).await?;
    let counts = counts(db, &campaign, Utc::now() - limits.window).await?;
    let Some(reason) = over_limit(counts, limits) else { return Ok(None) };
    if !campaign_pause::pause(db, &campaign, &reason).await? {
        return Ok(None);
    }
    tracing::warn!(campaign, %reason, "campaign paused; `patron campaign resume {campaign}` releases it");
    Ok(Some(reason))
}

/// Why the counts are over a limit, if they are.
fn over_limit(counts: Counts, limits: &Limits) -> Option<String> {
    if counts.sends == 0 || counts.sends < limits.min_sample {
        return None;
    }
    let days = limits.window.num_days();
    let checks = [
        ("spam complaint", counts.complaints, "max_complaint_rate", limits.max_complaint_rate),
        ("hard bounce", counts.hard_bounces, "max_bounce_rate", limits.max_bounce_rate),
    ];
    checks.into_iter().find_map(|(what, n, key, limit)| {
        let rate = n as f64 / counts.sends as f64;
        (rate > limit).then(|| {
            format!(
                "{what} rate {:.2}% ({n} of {} sends in {days} days) is over feedback.{key} {}%",
                100.0 * rate,
                counts.sends,
                100.0 * limit
            )
        })
    })
}

async fn campaign_of<C: ConnectionTrait>(db: &C, run_id: i64) -> Result<Option<String>, DbErr> {
    let select =
        Query::select().column("campaign").from("campaign_runs").and_where(Expr::col("id").eq(run_id)).to_owned();
    db.query_one(&select).await?.map(|row| row.try_get_by_index(0)).transpose()
}

/// The sends of `campaign` since `since`, and the complaints and hard bounces received since.
pub async fn counts<C: ConnectionTrait>(db: &C, campaign: &str, since: chrono::DateTime<Utc>) -> Result<Counts, DbErr> {
    let runs =
        Query::select().column("id").from("campaign_runs").and_where(Expr::col("campaign").eq(campaign)).to_owned();
    let sends = Query::select()
        .expr(Expr::col("id").count())
        .from("outbox")
        .and_where(Expr::col("run_id").in_subquery(runs.clone()))
        .and_where(Expr::col("state").is_in([State::Sent, State::Unknown, State::Failed]))
        .and_where(Expr::col("updated_at").gte(since))
        .to_owned();
    let events = |kind: EventKind| {
        Query::select()
            .expr(Expr::col("id").count())
            .from("feedback_events")
            .and_where(Expr::col("run_id").in_subquery(runs.clone()))
            .and_where(Expr::col("kind").eq(kind.as_str()))
            .and_where(Expr::col("received_at").gte(since))
            .to_owned()
    };
    let select = Query::select()
        .expr_as(Expr::SubQuery(None, Box::new(sends.into())), Alias::new("sends"))
        .expr_as(Expr::SubQuery(None, Box::new(events(EventKind::Complaint).into())), Alias::new("complaints"))
        .expr_as(Expr::SubQuery(None, Box::new(events(EventKind::HardBounce).into())), Alias::new("hard_bounces"))
        .to_owned();
    let row = db.query_one(&select).await?.ok_or_else(|| DbErr::RecordNotFound("the campaign's counts".into()))?;
    let count = |name: &str| row.try_get::<i64>("", name).map(|n| u64::try_from(n).unwrap_or(0));
    Ok(Counts { sends: count("sends")?, complaints: count("complaints")?, hard_bounces: count("hard_bounces")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { max_complaint_rate: 0.001, max_bounce_rate: 0.05, min_sample: 1000, window: Duration::days(7) }
    }

    #[test]
    fn a_rate_counts_only_from_the_minimum_sample_and_trips_only_above_its_limit() {
        let counts = |sends, complaints, hard_bounces| Counts { sends, complaints, hard_bounces };
        assert_eq!(over_limit(counts(999, 10, 0), &limits()), None);
        assert_eq!(over_limit(counts(1000, 1, 50), &limits()), None, "0.1% and 5% are at the limits, not over");
        let reason = over_limit(counts(1000, 2, 0), &limits()).unwrap();
        assert_eq!(
            reason,
            "spam complaint rate 0.20% (2 of 1000 sends in 7 days) is over feedback.max_complaint_rate 0.1%"
        );
        let reason = over_limit(counts(2000, 0, 101), &limits()).unwrap();
        assert!(reason.starts_with("hard bounce rate 5.05% (101 of 2000 sends"), "{reason}");
        assert_eq!(over_limit(counts(0, 0, 0), &Limits { min_sample: 0, ..limits() }), None);
    }
}
