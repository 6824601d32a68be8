//! The scheduler's work for one moment: which campaigns are due, planned in
//! priority order. The daemon calls [`Scheduler::tick`] every few seconds.
//! A fire held back for stale data is tried again at each tick while it is
//! within the grace period, so it plans as soon as fresh data has landed.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

use super::freshness::Staleness;
use super::plan::{self, Outcome, Refusal, Rules};
use super::spec::Campaign;
use super::winner;
use crate::schedule::{Due, due};

/// What a tick did for one campaign.
#[derive(Debug)]
pub enum Fired {
    Planned {
        campaign: String,
        at: DateTime<Utc>,
        run_id: i64,
        messages: usize,
        control: usize,
        missed: usize,
    },
    AlreadyPlanned {
        campaign: String,
        at: DateTime<Utc>,
    },
    Skipped {
        campaign: String,
        at: DateTime<Utc>,
        missed: usize,
    },
    /// Over the campaign's `max_audience`: recorded as refused, nothing planned.
    Refused {
        campaign: String,
        at: DateTime<Utc>,
        run_id: i64,
        refusal: Refusal,
    },
    /// Its data is older than the staleness guard allows: recorded as
    /// `stale`, nothing planned; tried again at the next ticks.
    Stale {
        campaign: String,
        at: DateTime<Utc>,
        run_id: i64,
        staleness: Staleness,
    },
    /// A fire held back before, tried again: the data is still stale, nothing was written.
    StillStale {
        campaign: String,
        at: DateTime<Utc>,
    },
}

pub struct Scheduler {
    rules: Rules,
    grace: Duration,
    /// When the scheduler first saw each campaign: a campaign never run
    /// fires only for times after that, not for times before it existed.
    first_seen: HashMap<String, DateTime<Utc>>,
    /// Campaigns whose A/B test is judged: a decision is final, so a tick
    /// need not ask the database again.
    judged: HashSet<String>,
}

impl Scheduler {
    pub fn new(rules: Rules, grace: Duration) -> Self {
        Scheduler { rules, grace, first_seen: HashMap::new(), judged: HashSet::new() }
    }

    /// New rules after the settings were reloaded; what was seen stays.
    pub fn set_rules(&mut self, rules: Rules, grace: Duration) {
        self.rules = rules;
        self.grace = grace;
    }

    /// When the scheduler first saw the campaign, if it has.
    pub fn first_seen(&self, campaign: &str) -> Option<DateTime<Utc>> {
        self.first_seen.get(campaign).copied()
    }

    /// Judges the A/B tests whose time is up (their held messages go out
    /// without waiting for another run), then plans every enabled campaign
    /// that is due at `now`, highest priority first, so that it wins the
    /// frequency cap over those planned after it.
    pub async fn tick<'a>(
        &mut self,
        db: &DatabaseConnection,
        campaigns: impl IntoIterator<Item = &'a Campaign>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Fired>, DbErr> {
        let enabled: Vec<&Campaign> = campaigns.into_iter().filter(|c| c.enabled).collect();
        for campaign in enabled.iter().filter(|c| c.winner.is_some()) {
            if self.judged.contains(&campaign.name) {
                continue;
            }
            if let Some(winner::Standing::Decided(_)) =
                winner::judge(db, campaign, self.rules.attribution_window, now).await?
            {
                self.judged.insert(campaign.name.clone());
            }
        }
        let mut due_campaigns: Vec<&Campaign> = enabled.into_iter().filter(|c| c.schedule.is_some()).collect();
        due_campaigns.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
        let mut fired = Vec::new();
        for campaign in due_campaigns {
            let schedule = campaign.schedule.as_ref().expect("filtered above");
            let first_seen = *self.first_seen.entry(campaign.name.clone()).or_insert(now);
            let settled = last_settled_fire(db, &campaign.name, now - self.grace).await?;
            // Never planned, but held back: it existed before its held fire (a restart must retry that).
            let since = settled.held.map_or(first_seen, |held| Ord::min(first_seen, held - Duration::seconds(1)));
            match due(schedule, settled.last.or(Some(since)), now, self.grace) {
                Due::Nothing => {}
                Due::Run { at, missed } => fired.push(self.run(db, campaign, at, missed).await?),
                Due::Skip { at, missed } => {
                    let detail = format!(
                        "fire time passed {} minutes before patron could plan it (grace period {} minutes); {missed} earlier fires also missed",
                        (now - at).num_minutes(),
                        self.grace.num_minutes()
                    );
                    plan::record_skipped(db, campaign, at, &detail).await?;
                    tracing::warn!(campaign = %campaign.name, %at, missed, "missed fire recorded as skipped");
                    fired.push(Fired::Skipped { campaign: campaign.name.clone(), at, missed });
                }
            }
        }
        Ok(fired)
    }

    async fn run(
        &self,
        db: &DatabaseConnection,
        campaign: &Campaign,
        at: DateTime<Utc>,
        missed: usize,
    ) -> Result<Fired, DbErr> {
        Ok(match plan::plan_run(db, campaign, &self.rules, at).await? {
            Outcome::Planned { run_id, plan } => {
                let (messages, control) = (plan.messages(), plan.control());
                tracing::info!(campaign = %campaign.name, %at, run_id, messages, control, missed, "campaign run planned");
                Fired::Planned { campaign: campaign.name.clone(), at, run_id, messages, control, missed }
            }
            Outcome::AlreadyPlanned { .. } => Fired::AlreadyPlanned { campaign: campaign.name.clone(), at },
            Outcome::Refused { run_id, refusal, .. } => {
                tracing::warn!(
                    campaign = %campaign.name,
                    %at,
                    run_id,
                    audience = refusal.audience,
                    max_audience = refusal.max_audience,
                    over_by = refusal.audience - refusal.max_audience,
                    "campaign run refused: its audience is over max_audience"
                );
                Fired::Refused { campaign: campaign.name.clone(), at, run_id, refusal }
            }
            Outcome::Stale { run_id, staleness, recorded_now: true } => {
                tracing::warn!(
                    campaign = %campaign.name,
                    %at,
                    run_id,
                    reason = %staleness,
                    "campaign run held back: its data is stale; it plans once fresh data arrives within the grace period"
                );
                Fired::Stale { campaign: campaign.name.clone(), at, run_id, staleness }
            }
            Outcome::Stale { recorded_now: false, .. } => Fired::StillStale { campaign: campaign.name.clone(), at },
        })
    }
}

/// What [`last_settled_fire`] found.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settled {
    /// The latest fire the scheduler is done with.
    pub last: Option<DateTime<Utc>>,
    /// The earliest fire held back for stale data that is still retried.
    pub held: Option<DateTime<Utc>>,
}

/// The latest fire of `campaign` that is settled: planned, skipped,
/// refused, or held back for stale data before `retry_from` (the grace
/// period is over: it stays a fire skipped for stale data); and the earliest
/// held fire from `retry_from` on, which the scheduler tries again.
pub async fn last_settled_fire<C: ConnectionTrait>(
    db: &C,
    campaign: &str,
    retry_from: DateTime<Utc>,
) -> Result<Settled, DbErr> {
    let retried = Expr::col("state").eq(plan::stale::STATE).and(Expr::col("scheduled_at").gte(retry_from));
    let select = Query::select()
        .expr(Expr::case(retried.clone().not(), Expr::col("scheduled_at")).max())
        .expr(Expr::case(retried, Expr::col("scheduled_at")).min())
        .from("campaign_runs")
        .and_where(Expr::col("campaign").eq(campaign))
        .to_owned();
    match db.query_one(&select).await? {
        Some(row) => Ok(Settled { last: row.try_get_by_index(0)?, held: row.try_get_by_index(1)? }),
        None => Ok(Settled::default()),
    }
}

/// The latest fire recorded for a campaign and its state (`planned`,
/// `skipped`, `refused`, `stale`).
pub async fn last_run<C: ConnectionTrait>(db: &C, campaign: &str) -> Result<Option<(DateTime<Utc>, String)>, DbErr> {
    let select = Query::select()
        .columns(["scheduled_at", "state"])
        .from("campaign_runs")
        .and_where(Expr::col("campaign").eq(campaign))
        .order_by("scheduled_at", Order::Desc)
        .limit(1)
        .to_owned();
    match db.query_one(&select).await? {
        Some(row) => Ok(Some((row.try_get("", "scheduled_at")?, row.try_get("", "state")?))),
        None => Ok(None),
    }
}

/// The latest fire time recorded for a campaign (planned, skipped, refused
/// or held back for stale data).
pub async fn last_fire<C: ConnectionTrait>(db: &C, campaign: &str) -> Result<Option<DateTime<Utc>>, DbErr> {
    let select = Query::select()
        .expr(Expr::col("scheduled_at").max())
        .from("campaign_runs")
        .and_where(Expr::col("campaign").eq(campaign))
        .to_owned();
    match db.query_one(&select).await? {
        Some(row) => row.try_get_by_index(0),
        None => Ok(None),
    }
}
