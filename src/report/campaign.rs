//! `report campaign`: what a campaign earned beyond what its control group
//! shows would have happened anyway, per run, overall and per A/B variant.
//!
//! Treatment is every outbox row of a run that is not in the control group,
//! whether or not the message went out (intent to treat): dropping failed and
//! suppressed rows would compare a cleaned-up group against an untouched
//! control group and flatter the campaign.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use futures_util::TryStreamExt;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, StreamTrait};
use serde::Serialize;

use super::ReportError;
use super::attribution::{self, Exposure, Outcome};
use super::stats::{self, MeanUplift, Moments, Proportion, RateUplift};

/// The whole report of one campaign.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignReport {
    pub campaign: String,
    /// The attribution window in days (may be fractional for windows such as `36h`).
    pub window_days: f64,
    pub runs: Vec<RunReport>,
    /// Every run together: each (run, customer) row counts once.
    pub overall: Comparison,
    /// Each A/B variant's treatment rows against the whole control group
    /// (empty without variants). Control rows are assigned independently of
    /// the variant, so the whole control group is the fair comparison for each.
    pub variants: Vec<VariantReport>,
    /// Each variant after the first against the first, on their targeted
    /// customers: how the variants differ from each other, and how surely.
    pub variant_tests: Vec<VariantTest>,
    /// The A/B test's decision (a campaign with a `[winner]` table, judged).
    pub winner: Option<WinnerRecord>,
}

/// One variant's targeted customers against another's.
#[derive(Debug, Clone, Serialize)]
pub struct VariantTest {
    pub variant: String,
    pub against: String,
    pub conversion: Option<RateUplift>,
    pub revenue: Option<MeanUplift>,
}

/// A decision of `crate::campaign::winner`, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct WinnerRecord {
    pub winner: String,
    pub metric: String,
    pub significant: bool,
    pub p_value: Option<f64>,
    pub reason: String,
    pub decided_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: i64,
    pub scheduled_at: DateTime<Utc>,
    pub delivery: DeliveryCounts,
    pub feedback: FeedbackCounts,
    /// False while some window of the run has not ended yet: later orders can still count.
    pub window_complete: bool,
    pub comparison: Comparison,
}

/// Outbox rows by delivery state.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DeliveryCounts {
    /// Every row of the run: treatment and control.
    pub planned: u64,
    pub sent: u64,
    pub failed: u64,
    pub suppressed: u64,
    /// Sent, but the server's reply was lost: perhaps delivered.
    pub unknown: u64,
    /// Planned, sending, retrying or held for an A/B winner: not sent yet.
    pub waiting: u64,
    pub control: u64,
    /// Not sent by its expiry (`expires_after`): never sent.
    pub expired: u64,
}

impl DeliveryCounts {
    /// Counts `n` rows in `state`.
    pub fn add(&mut self, state: &str, n: u64) {
        use crate::db::entities::outbox::State;
        self.planned += n;
        let count = match State::parse(state) {
            Some(State::Sent) => &mut self.sent,
            Some(State::Failed) => &mut self.failed,
            Some(State::Suppressed) => &mut self.suppressed,
            Some(State::Unknown) => &mut self.unknown,
            Some(State::Control) => &mut self.control,
            Some(State::Expired) => &mut self.expired,
            Some(State::Planned | State::Sending | State::Retrying | State::Held) | None => &mut self.waiting,
        };
        *count += n;
    }
}

/// What came back from a run's messages (`feedback_events`): each figure
/// counts messages, not reports, and each rate is a share of the messages
/// handed to the mail server (sent, perhaps sent, or refused by it).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FeedbackCounts {
    pub hard_bounces: u64,
    pub soft_bounces: u64,
    pub complaints: u64,
    pub hard_bounce_rate: Option<f64>,
    pub soft_bounce_rate: Option<f64>,
    pub complaint_rate: Option<f64>,
}

impl FeedbackCounts {
    /// The counts `[hard bounces, soft bounces, complaints]` with their rates among `delivery`'s messages.
    fn new([hard_bounces, soft_bounces, complaints]: [u64; 3], delivery: &DeliveryCounts) -> Self {
        let handed_over = delivery.sent + delivery.unknown + delivery.failed;
        let rate = |n: u64| (handed_over > 0).then(|| n as f64 / handed_over as f64);
        FeedbackCounts {
            hard_bounces,
            soft_bounces,
            complaints,
            hard_bounce_rate: rate(hard_bounces),
            soft_bounce_rate: rate(soft_bounces),
            complaint_rate: rate(complaints),
        }
    }
}

/// Per run of `campaign` (only `run` when given): the messages that drew a
/// hard bounce, a soft bounce, a complaint.
async fn feedback_of(
    db: &DatabaseConnection,
    campaign: &str,
    run: Option<i64>,
) -> Result<BTreeMap<i64, [u64; 3]>, DbErr> {
    let kinds = ["hard_bounce", "soft_bounce", "complaint"];
    let runs = Query::select()
        .column("id")
        .from("campaign_runs")
        .and_where(Expr::col("campaign").eq(campaign))
        .and_where_option(run.map(|id| Expr::col("id").eq(id)))
        .to_owned();
    let select = Query::select()
        .column("run_id")
        .column("kind")
        .expr_as(Expr::col("outbox_id").count_distinct(), Alias::new("messages"))
        .from("feedback_events")
        .and_where(Expr::col("run_id").in_subquery(runs))
        .and_where(Expr::col("kind").is_in(kinds))
        .group_by_col("run_id")
        .group_by_col("kind")
        .to_owned();
    let mut rows = std::pin::pin!(db.stream(&select).await?);
    let mut counts: BTreeMap<i64, [u64; 3]> = BTreeMap::new();
    while let Some(row) = rows.try_next().await? {
        let (run_id, kind): (i64, String) = (row.try_get("", "run_id")?, row.try_get("", "kind")?);
        let messages: i64 = row.try_get("", "messages")?;
        if let Some(slot) = kinds.iter().position(|k| *k == kind) {
            counts.entry(run_id).or_default()[slot] = u64::try_from(messages).unwrap_or(0);
        }
    }
    Ok(counts)
}

/// The stored A/B decision of `campaign`, if its test was judged.
pub async fn winner_of(db: &impl ConnectionTrait, campaign: &str) -> Result<Option<WinnerRecord>, DbErr> {
    let select = Query::select()
        .columns(["winner", "metric", "significant", "p_value", "reason", "decided_at"])
        .from("variant_decisions")
        .and_where(Expr::col("campaign").eq(campaign))
        .to_owned();
    let Some(row) = db.query_one(&select).await? else { return Ok(None) };
    Ok(Some(WinnerRecord {
        winner: row.try_get("", "winner")?,
        metric: row.try_get("", "metric")?,
        significant: row.try_get("", "significant")?,
        p_value: row.try_get("", "p_value")?,
        reason: row.try_get("", "reason")?,
        decided_at: row.try_get("", "decided_at")?,
    }))
}

/// Each variant after the first (by name) against the first, on the
/// customers whose variant was drawn: the winner's later sends are not a
/// random draw, and would tilt the comparison.
fn variant_tests(drawn: &BTreeMap<String, Arm>) -> Vec<VariantTest> {
    let mut arms = drawn.iter();
    let Some((first, base)) = arms.next() else { return Vec::new() };
    arms.map(|(variant, arm)| VariantTest {
        variant: variant.clone(),
        against: first.clone(),
        conversion: stats::compare_rates(arm.proportion(), base.proportion()),
        revenue: stats::compare_means(arm.revenue, base.revenue),
    })
    .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct VariantReport {
    pub variant: String,
    pub comparison: Comparison,
}

/// One arm's customers, conversions and revenue.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Arm {
    pub customers: u64,
    pub conversions: u64,
    pub revenue_cents: i64,
    #[serde(skip)]
    revenue: Moments,
}

impl Arm {
    pub fn add(&mut self, outcome: Outcome) {
        self.customers += 1;
        self.conversions += u64::from(outcome.converted);
        self.revenue_cents += outcome.revenue_cents;
        self.revenue.add(outcome.revenue_cents as f64 / 100.0);
    }

    pub fn conversion_rate(&self) -> Option<f64> {
        self.proportion().rate()
    }

    /// Revenue per customer in currency units.
    pub fn revenue_per_customer(&self) -> Option<f64> {
        self.revenue.mean()
    }

    pub fn proportion(&self) -> Proportion {
        Proportion { successes: self.conversions, trials: self.customers }
    }

    /// Revenue per customer's running moments, in currency units.
    pub fn revenue(&self) -> Moments {
        self.revenue
    }
}

/// Treatment against control.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Comparison {
    pub treatment: Arm,
    pub control: Arm,
    /// `None` when an arm is empty (no control group, or nothing but control).
    pub conversion: Option<RateUplift>,
    pub revenue: Option<MeanUplift>,
    /// Conversions the campaign added: the rate uplift times the treated customers.
    pub incremental_conversions: Option<f64>,
    /// Revenue the campaign added, in currency units: revenue uplift per customer times the treated customers.
    pub incremental_revenue: Option<f64>,
}

impl Comparison {
    fn add(&mut self, exposure: &Exposure, outcome: Outcome) {
        if exposure.is_control() { self.control.add(outcome) } else { self.treatment.add(outcome) }
    }

    fn finish(mut self) -> Self {
        self.conversion = stats::compare_rates(self.treatment.proportion(), self.control.proportion());
        self.revenue = stats::compare_means(self.treatment.revenue, self.control.revenue);
        let treated = self.treatment.customers as f64;
        self.incremental_conversions = self.conversion.map(|u| u.absolute * treated);
        self.incremental_revenue = self.revenue.map(|u| u.absolute * treated);
        self
    }
}

/// Builds the report of `campaign` (only run `run` when given).
///
/// # Errors
/// [`ReportError::UnknownCampaign`] / [`ReportError::UnknownRun`] when there is nothing to report.
pub async fn report(
    db: &DatabaseConnection,
    campaign: &str,
    run: Option<i64>,
    window: Duration,
    now: DateTime<Utc>,
) -> Result<CampaignReport, ReportError> {
    let runs = super::runs_of(db, campaign).await?;
    if runs.is_empty() {
        return Err(ReportError::UnknownCampaign(campaign.to_owned()));
    }
    if let Some(id) = run.filter(|id| !runs.iter().any(|r| r.0 == *id)) {
        return Err(ReportError::UnknownRun { campaign: campaign.to_owned(), run: id });
    }
    let exposures = attribution::load_exposures(db, campaign, run).await?;
    let orders = attribution::load_orders(db, campaign, run, &exposures, window).await?;
    let outcomes = attribution::attribute(&exposures, &orders, window);
    let runs: Vec<(i64, DateTime<Utc>)> = runs.into_iter().filter(|r| run.is_none_or(|id| id == r.0)).collect();
    let mut report = summarise(campaign, &runs, &exposures, &outcomes, window, now);
    report.winner = winner_of(db, campaign).await?;
    let feedback = feedback_of(db, campaign, run).await?;
    for run in &mut report.runs {
        run.feedback = FeedbackCounts::new(feedback.get(&run.run_id).copied().unwrap_or_default(), &run.delivery);
    }
    Ok(report)
}

/// The pure half of [`report`]: counts and comparisons from attributed exposures.
pub fn summarise(
    campaign: &str,
    runs: &[(i64, DateTime<Utc>)],
    exposures: &[Exposure],
    outcomes: &[Outcome],
    window: Duration,
    now: DateTime<Utc>,
) -> CampaignReport {
    let mut per_run: BTreeMap<i64, (DeliveryCounts, Comparison, bool)> =
        runs.iter().map(|r| (r.0, (DeliveryCounts::default(), Comparison::default(), r.1 + window <= now))).collect();
    let mut overall = Comparison::default();
    let mut variants: BTreeMap<String, Comparison> = BTreeMap::new();
    // The variants as drawn by their shares, without the winner's later sends.
    let mut drawn: BTreeMap<String, Arm> = BTreeMap::new();
    for (exposure, &outcome) in exposures.iter().zip(outcomes) {
        let entry = per_run.entry(exposure.run_id).or_default();
        entry.0.add(&exposure.state, 1);
        entry.1.add(exposure, outcome);
        entry.2 &= exposure.start + window <= now;
        overall.add(exposure, outcome);
        if let (Some(variant), false) = (&exposure.variant, exposure.is_control()) {
            variants.entry(variant.clone()).or_default().add(exposure, outcome);
            if !exposure.by_winner {
                drawn.entry(variant.clone()).or_default().add(outcome);
            }
        }
    }
    let variants: Vec<VariantReport> = variants
        .into_iter()
        .map(|(variant, mut comparison)| {
            comparison.control = overall.control;
            VariantReport { variant, comparison: comparison.finish() }
        })
        .collect();
    let variant_tests = variant_tests(&drawn);
    let runs = runs
        .iter()
        .map(|&(run_id, scheduled_at)| {
            let (delivery, comparison, window_complete) = per_run.remove(&run_id).unwrap_or_default();
            let feedback = FeedbackCounts::default();
            RunReport { run_id, scheduled_at, delivery, feedback, window_complete, comparison: comparison.finish() }
        })
        .collect();
    CampaignReport {
        campaign: campaign.to_owned(),
        window_days: window.num_seconds() as f64 / 86_400.0,
        runs,
        overall: overall.finish(),
        variants,
        variant_tests,
        winner: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-03-{day:02}T00:00:00Z")).unwrap().with_timezone(&Utc)
    }

    fn row(run_id: i64, customer_id: i64, state: &str, variant: &str) -> Exposure {
        Exposure {
            run_id,
            customer_id,
            state: state.into(),
            variant: Some(variant.into()),
            by_winner: false,
            start: at(1),
        }
    }

    #[test]
    fn counts_arms_variants_and_incremental_figures() {
        // Run 1: A sent (bought 30), A failed (no), B sent (bought 10), control (bought 20), control (no).
        // Run 2: A sent (no), control (no).
        let exposures = [
            row(1, 1, "sent", "A"),
            row(1, 2, "failed", "A"),
            row(1, 3, "sent", "B"),
            row(1, 4, "control", "A"),
            row(1, 5, "control", "B"),
            row(2, 1, "sent", "A"),
            row(2, 6, "control", "B"),
        ];
        let bought = |cents| Outcome { converted: true, revenue_cents: cents };
        let none = Outcome::default();
        let outcomes = [bought(3000), none, bought(1000), bought(2000), none, none, none];
        let runs = [(1, at(1)), (2, at(1))];
        let r = summarise("winback", &runs, &exposures, &outcomes, Duration::days(30), at(31));

        let run1 = &r.runs[0];
        assert_eq!(
            (run1.delivery.planned, run1.delivery.sent, run1.delivery.failed, run1.delivery.control),
            (5, 2, 1, 2)
        );
        assert!(run1.window_complete);
        // Treatment 2 of 3 (intent to treat keeps the failed row), control 1 of 2.
        let c = run1.comparison.conversion.unwrap();
        assert!((c.absolute - (2.0 / 3.0 - 0.5)).abs() < 1e-12);
        // Incremental conversions: (2/3 - 1/2) · 3 = 0.5.
        assert!((run1.comparison.incremental_conversions.unwrap() - 0.5).abs() < 1e-12);
        // Revenue per customer: 40/3 against 20/2 → 3.3333 · 3 = 10 extra.
        assert!((run1.comparison.incremental_revenue.unwrap() - 10.0).abs() < 1e-9);

        // Overall: treatment 2 of 4, control 1 of 3.
        assert_eq!((r.overall.treatment.customers, r.overall.treatment.conversions), (4, 2));
        assert_eq!((r.overall.control.customers, r.overall.control.conversions), (3, 1));
        // Variant A: 1 of 3 treated converted; B: 1 of 1; both against the whole control group.
        let names: Vec<_> = r.variants.iter().map(|v| v.variant.as_str()).collect();
        assert_eq!(names, ["A", "B"]);
        assert_eq!(
            (r.variants[0].comparison.treatment.conversions, r.variants[0].comparison.treatment.customers),
            (1, 3)
        );
        assert_eq!(r.variants[1].comparison.control.customers, 3);
        assert_eq!(r.variants[1].comparison.conversion.unwrap().treatment_rate, 1.0);
    }

    #[test]
    fn a_run_without_a_control_group_has_no_uplift_and_an_open_window_is_flagged() {
        let exposures = [row(1, 1, "sent", "A")];
        let r = summarise("welcome", &[(1, at(1))], &exposures, &[Outcome::default()], Duration::days(30), at(15));
        assert!(r.runs[0].comparison.conversion.is_none());
        assert!(r.runs[0].comparison.incremental_revenue.is_none());
        assert!(!r.runs[0].window_complete);
    }
}
