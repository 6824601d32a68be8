//! Planning a run: who a campaign reaches at one fire time.
//!
//! The audience is the segment, then each exclusion in turn (consent,
//! suppression, open complaint, cooldown, frequency cap), then the order and
//! limit, then the control group. The database evaluates the segment in one
//! query; the exclusions in small queries of their own (the suppressed, the
//! complainants, and one read of the recent outbox for both the cooldown
//! and the frequency cap), whose customers are looked up here:
//! probing every exclusion for each of a million customers in SQL cost more
//! than the segment itself. The count after each step is exact. The run and
//! its outbox rows are written in one transaction, and (campaign, fire time)
//! is unique, so a second planner of the same fire writes nothing. A fire
//! whose data is too old (`campaign::freshness`) is held back instead
//! ([`stale`]), and planned in place once the data is fresh.

pub mod stale;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use sea_orm::sea_query::{
    Alias, Cond, Expr, ExprTrait, Func, InsertStatement, OnConflict, Query, SelectStatement, SimpleExpr,
    UpdateStatement,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QuerySelect, QueryTrait, Value as DbValue};
use serde::Serialize;

use super::freshness::{self, Staleness};
use super::spec::{Campaign, Kind};
use super::window::{self, WindowZone};
use super::winner::{self, Assignment, Standing};
use crate::config::Settings;
use crate::db::bulk::{BulkInsert, repeated_time};
use crate::db::engine::{Options, Txn, as_double};
use crate::db::entities::model;
use crate::db::entities::outbox::State as OutboxState;
use crate::db::record::record;
use crate::features::snapshot;
use crate::model::registry;
use crate::scoring;
use crate::segment::compile::{self, Context, Scores};
use crate::segment::source;
use crate::segment::{Field, Value};

/// The steps, in the order they apply.
pub const STEPS: [&str; 8] =
    ["segment", "consent", "suppression", "open_complaint", "cooldown", "frequency_cap", "order_limit", "holdout"];

/// How many customers remain after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StepCount {
    pub step: &'static str,
    pub remaining: u64,
}

/// One customer chosen by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub customer_id: i64,
    /// In the control group: recorded, sent nothing.
    pub control: bool,
    pub variant: Option<String>,
    /// Outside the test share of a running A/B test: waits for the winner.
    pub held: bool,
    /// The variant is the A/B test's winner, not drawn by the shares.
    pub by_winner: bool,
    /// The customer's own time zone (their `timezone` attribute), when the
    /// campaign's send window follows it and the attribute names a zone.
    pub timezone: Option<Tz>,
}

impl Chosen {
    /// [`send_times`] of this customer.
    pub fn send_times(&self, campaign: &Campaign, at: DateTime<Utc>) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        send_times(campaign, self.timezone, at)
    }
}

/// When a message of a run fired at `at` may first go (`None`: at once, the
/// window being open at `at` or there being none) and when it expires
/// (`None`: never), for a customer in `customer_zone` ([`Chosen::timezone`]).
pub fn send_times(
    campaign: &Campaign,
    customer_zone: Option<Tz>,
    at: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let zone = customer_zone.unwrap_or(campaign.timezone);
    let not_before = campaign.send_window.map(|w| w.opening(at, zone)).filter(|&opening| opening > at);
    (not_before, campaign.expires_after.map(|after| at + after))
}

/// What a run reaches: the counts after each step and the chosen customers, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub steps: Vec<StepCount>,
    pub chosen: Vec<Chosen>,
}

impl Plan {
    /// How many get a message (the chosen minus the control group).
    pub fn messages(&self) -> usize {
        self.chosen.iter().filter(|c| !c.control).count()
    }

    pub fn control(&self) -> usize {
        self.chosen.iter().filter(|c| c.control).count()
    }

    /// Messages held for the winner of the campaign's A/B test.
    pub fn held(&self) -> usize {
        self.chosen.iter().filter(|c| c.held).count()
    }
}

#[derive(Debug)]
pub enum Outcome {
    Planned {
        run_id: i64,
        plan: Plan,
    },
    /// This (campaign, fire time) was planned before (a restart, another daemon).
    AlreadyPlanned {
        run_id: i64,
    },
    /// The audience is larger than the campaign's `max_audience`: the run is
    /// recorded as `refused` with its step counts, and nothing is planned.
    Refused {
        run_id: i64,
        plan: Plan,
        refusal: Refusal,
    },
    /// The data the audience reads is older than the staleness guard
    /// allows: the fire is recorded as `stale` with the reason, and nothing
    /// is planned. `recorded_now` is false when it was held back before
    /// (a retry): nothing was written.
    Stale {
        run_id: i64,
        staleness: Staleness,
        recorded_now: bool,
    },
}

/// Why a run was refused: its audience against the campaign's `max_audience`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub audience: u64,
    pub max_audience: u64,
}

impl Refusal {
    /// The refusal of `plan`, if its audience is over the campaign's guard.
    pub fn of(campaign: &Campaign, plan: &Plan) -> Option<Refusal> {
        let audience = plan.chosen.len() as u64;
        let max_audience = campaign.audience.max_audience?;
        (audience > max_audience).then_some(Refusal { audience, max_audience })
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the audience of {} customers is over max_audience {} by {}",
            self.audience,
            self.max_audience,
            self.audience - self.max_audience
        )
    }
}

/// The global rules a plan follows, from the `[campaigns]` settings, the
/// report's attribution window, which `converted("...")` reads, and the
/// ages of data the staleness guard allows (`freshness`).
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub default_holdout: f64,
    pub frequency_cap: u32,
    pub frequency_window: Duration,
    pub attribution_window: Duration,
    /// `campaigns.max_data_age`; `None`: no guard.
    pub max_data_age: Option<Duration>,
    /// `daemon.max_score_age`, which the guard applies to the scores.
    pub max_score_age: Duration,
}

impl From<&Settings> for Rules {
    fn from(settings: &Settings) -> Self {
        let campaigns = &settings.campaigns;
        Rules {
            default_holdout: campaigns.default_holdout,
            frequency_cap: campaigns.frequency_cap,
            frequency_window: campaigns.frequency_window(),
            attribution_window: settings.report.attribution_window(),
            max_data_age: campaigns.max_data_age(),
            max_score_age: settings.daemon.max_score_age(),
        }
    }
}

/// Outbox states that count as a message for the frequency cap.
const MESSAGE_STATES: [OutboxState; 4] =
    [OutboxState::Planned, OutboxState::Retrying, OutboxState::Sending, OutboxState::Sent];

/// Works out the plan without writing anything (preview, dry run).
pub async fn evaluate(
    db: &DatabaseConnection,
    campaign: &Campaign,
    rules: &Rules,
    at: DateTime<Utc>,
) -> Result<Plan, DbErr> {
    // A transaction, so that every query sees the same data. No memory map:
    // for one read its page faults cost more than the reads it saves.
    let standing = winner::current(db, campaign).await?;
    let mut txn = Txn::begin(db, Options::default()).await?;
    let mut plan = evaluate_in(&mut txn, campaign, rules, at).await?;
    txn.rollback().await?;
    assign_variants(campaign, &mut plan, standing.as_ref());
    Ok(plan)
}

async fn evaluate_in(txn: &mut Txn, campaign: &Campaign, rules: &Rules, at: DateTime<Utc>) -> Result<Plan, DbErr> {
    let active_model = registry::find_active().select_only().column(model::Column::Id).into_query();
    let model_id = txn.values::<i64>(&active_model).await?.first().copied();
    let scores = match snapshot::recorded_deciles(txn).await? {
        Some((scored_by, floors)) if Some(scored_by) == model_id => {
            let score = || Expr::col((Alias::new("feature_snapshots"), Alias::new("score")));
            Scores::OnSnapshots { decile: scoring::decile_expression(score, &floors) }
        }
        _ => Scores::Joined(model_id),
    };
    let started = Instant::now();
    let exclusions = Exclusions::load(txn, campaign, rules, at).await?;
    let exclusions_loaded = started.elapsed();
    let source = Source::of(campaign);
    let segment = segment(campaign, rules, at, txn.backend(), scores, source);
    txn.parallel_reads().await?;
    let mut audience = txn.scan_all::<Candidate>(&segment).await?;
    if source == Source::Snapshots {
        take_consent_and_erasure(txn, &mut audience).await?;
    }
    let segment_read = started.elapsed();
    Ok(finish_evaluation(campaign, rules, &exclusions, audience, started, exclusions_loaded, segment_read))
}

/// The steps after the segment, with the time of each phase logged.
fn finish_evaluation(
    campaign: &Campaign,
    rules: &Rules,
    exclusions: &Exclusions,
    audience: Vec<Candidate>,
    started: Instant,
    exclusions_loaded: std::time::Duration,
    segment_read: std::time::Duration,
) -> Plan {
    let plan = apply_steps(campaign, rules, exclusions, audience);
    tracing::debug!(
        campaign = %campaign.name,
        exclusions_s = exclusions_loaded.as_secs_f64(),
        segment_s = (segment_read - exclusions_loaded).as_secs_f64(),
        steps_s = (started.elapsed() - segment_read).as_secs_f64(),
        "audience evaluated"
    );
    plan
}

/// Plans the run of `campaign` for fire time `at`: the run, its step counts
/// and one outbox row per chosen customer, in one transaction. On data
/// older than the staleness guard allows, the fire is held back instead.
pub async fn plan_run(
    db: &DatabaseConnection,
    campaign: &Campaign,
    rules: &Rules,
    at: DateTime<Utc>,
) -> Result<Outcome, DbErr> {
    if let Some(staleness) = freshness::check(db, campaign, rules, at).await? {
        return stale::hold(db, campaign, at, staleness).await;
    }
    // An A/B test whose time is up is judged first, so this run sends the winner.
    let standing = winner::judge(db, campaign, rules.attribution_window, at).await?;
    // 100,000 outbox rows touch pages all over four indexes, hence the large cache.
    let options = Options { write_lock_first: true, cache_mb: Some(64), memory_map: true };
    let mut txn = Txn::begin(db, options).await?;
    let inserted = txn.execute(&run_insert(campaign, at, "planned", None)).await? > 0;
    if !inserted && !stale::take_over(&mut txn, campaign, at).await? {
        let run_id = run_id_in(&mut txn, campaign, at).await?;
        txn.rollback().await?;
        return Ok(Outcome::AlreadyPlanned { run_id });
    }
    let run_id = run_id_in(&mut txn, campaign, at).await?;
    let mut plan = evaluate_in(&mut txn, campaign, rules, at).await?;
    assign_variants(campaign, &mut plan, standing.as_ref());
    if let Some(refusal) = Refusal::of(campaign, &plan) {
        txn.execute(&refuse(run_id, &refusal)).await?;
        txn.execute(&record_step_counts(run_id, &plan)).await?;
        txn.commit().await?;
        return Ok(Outcome::Refused { run_id, plan, refusal });
    }
    let started = Instant::now();
    insert_outbox(&mut txn, campaign, run_id, &plan.chosen, at).await?;
    let inserted = started.elapsed();
    txn.execute(&record_step_counts(run_id, &plan)).await?;
    txn.commit().await?;
    log_written(campaign, run_id, &plan, started, inserted);
    Ok(Outcome::Planned { run_id, plan })
}

fn refuse(run_id: i64, refusal: &Refusal) -> UpdateStatement {
    Query::update()
        .table("campaign_runs")
        .value("state", "refused")
        .value("detail", format!("{refusal}; nothing was planned"))
        .and_where(Expr::col("id").eq(run_id))
        .to_owned()
}

fn record_step_counts(run_id: i64, plan: &Plan) -> UpdateStatement {
    let counts = serde_json::to_value(&plan.steps).expect("step counts serialize");
    Query::update().table("campaign_runs").value("step_counts", counts).and_where(Expr::col("id").eq(run_id)).to_owned()
}

fn log_written(campaign: &Campaign, run_id: i64, plan: &Plan, started: Instant, inserted: std::time::Duration) {
    tracing::debug!(
        campaign = %campaign.name,
        run_id,
        outbox_rows = plan.chosen.len(),
        insert_s = inserted.as_secs_f64(),
        commit_s = (started.elapsed() - inserted).as_secs_f64(),
        "run written"
    );
}

/// Records a fire that was missed for too long: a run in state `skipped`,
/// so that it is neither planned later nor forgotten. False if one exists.
pub async fn record_skipped(
    db: &DatabaseConnection,
    campaign: &Campaign,
    at: DateTime<Utc>,
    detail: &str,
) -> Result<bool, DbErr> {
    let inserted = db.execute(&run_insert(campaign, at, "skipped", Some(detail))).await?.rows_affected();
    Ok(inserted > 0)
}

/// Inserts the run; nothing if (campaign, at) exists.
fn run_insert(campaign: &Campaign, at: DateTime<Utc>, state: &str, detail: Option<&str>) -> InsertStatement {
    Query::insert()
        .into_table("campaign_runs")
        .columns(["campaign", "kind", "scheduled_at", "state", "detail", "created_at"])
        .values_panic([
            campaign.name.clone().into(),
            campaign.kind.as_str().into(),
            at.into(),
            state.into(),
            detail.map(str::to_owned).into(),
            Utc::now().into(),
        ])
        .on_conflict(OnConflict::columns(["campaign", "scheduled_at"]).do_nothing().to_owned())
        .to_owned()
}

async fn run_id_in(txn: &mut Txn, campaign: &Campaign, at: DateTime<Utc>) -> Result<i64, DbErr> {
    let ids = txn.values::<i64>(&run_id_query(campaign, at)).await?;
    ids.first().copied().ok_or_else(|| DbErr::RecordNotFound("campaign run".into()))
}

fn run_id_query(campaign: &Campaign, at: DateTime<Utc>) -> SelectStatement {
    Query::select()
        .column("id")
        .from("campaign_runs")
        .and_where(Expr::col("campaign").eq(campaign.name.clone()))
        .and_where(Expr::col("scheduled_at").eq(at))
        .to_owned()
}

const OUTBOX_COLUMNS: &[&str] = &[
    "run_id",
    "customer_id",
    "state",
    "variant",
    "attempts",
    "created_at",
    "updated_at",
    "not_before",
    "expires_at",
    "by_winner",
];

async fn insert_outbox(
    txn: &mut Txn,
    campaign: &Campaign,
    run_id: i64,
    chosen: &[Chosen],
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let insert = BulkInsert::new(txn.backend(), "outbox", OUTBOX_COLUMNS);
    let now = repeated_time(txn.backend(), Ord::max(Utc::now(), at));
    // The send times depend on the customer's zone only: worked out once per zone.
    let backend = txn.backend();
    let time = |t: Option<DateTime<Utc>>| t.map_or(DbValue::ChronoDateTimeUtc(None), |t| repeated_time(backend, t));
    let mut by_zone: HashMap<Option<Tz>, [DbValue; 2]> = HashMap::new();
    let by_customer = in_customer_order(chosen);
    txn.insert_rows(&insert, chosen.len(), |i, values| {
        let row = &chosen[by_customer[i]];
        let times = by_zone.entry(row.timezone).or_insert_with(|| {
            let (not_before, expires_at) = row.send_times(campaign, at);
            [time(not_before), time(expires_at)]
        });
        values.extend(outbox_row(run_id, row, &now, times))
    })
    .await
}

/// The positions of `chosen` in customer id order, the order the rows are
/// written in: the two outbox indexes that lead with or follow the customer
/// ((run_id, customer_id) and (customer_id, sent_at)) then take their
/// entries in key order, page after page, instead of at random pages all
/// over them, which in any other order is most of PostgreSQL's write of a
/// large run. So a run's messages are sent in customer id order, not in
/// the campaign's order: the order chooses who is in the run, not who gets
/// the message first.
fn in_customer_order(chosen: &[Chosen]) -> Vec<usize> {
    let mut positions: Vec<usize> = (0..chosen.len()).collect();
    positions.sort_unstable_by_key(|&i| chosen[i].customer_id);
    positions
}

/// One outbox row's values, in the order of `OUTBOX_COLUMNS`; `now` as
/// `repeated_time` makes it, `times` its `not_before` and `expires_at`.
fn outbox_row(run_id: i64, row: &Chosen, now: &DbValue, times: &[DbValue; 2]) -> [DbValue; 10] {
    [
        run_id.into(),
        row.customer_id.into(),
        match (row.control, row.held) {
            (true, _) => OutboxState::Control,
            (false, true) => OutboxState::Held,
            (false, false) => OutboxState::Planned,
        }
        .into(),
        row.variant.clone().into(),
        0i32.into(),
        now.clone(),
        now.clone(),
        times[0].clone(),
        times[1].clone(),
        row.by_winner.into(),
    ]
}

record! {
    /// One customer in the segment ([`segment`]'s columns).
    #[derive(Debug, Clone)]
    struct Candidate {
        customer_id: i64,
        sort: Option<f64>,
        consent: bool,
        /// The `timezone` attribute, read only for a send window in the customer's zone.
        timezone: Option<String>,
    }
}

record! {
    /// A customer an exclusion removes ([`exclusion_queries`]).
    struct Excluded {
        customer_id: i64,
    }
}

record! {
    /// An outbox row of a recent run ([`recent_outbox`]).
    struct Recent {
        customer_id: i64,
        /// Of this campaign's runs within the cooldown.
        in_cooldown: bool,
        /// A marketing message within the frequency window.
        counted: bool,
    }
}

/// The customers each exclusion removes, whether in the segment or not.
#[derive(Debug, Default)]
struct Exclusions {
    /// Left the campaign's subscription topic.
    left_topic: HashSet<i64>,
    suppressed: HashSet<i64>,
    open_complaint: HashSet<i64>,
    cooled_down: HashSet<i64>,
    /// Marketing messages within the frequency window, by customer.
    recent_messages: HashMap<i64, i64>,
}

impl Exclusions {
    async fn load(txn: &mut Txn, campaign: &Campaign, rules: &Rules, at: DateTime<Utc>) -> Result<Self, DbErr> {
        let mut sets = Vec::with_capacity(3);
        for query in exclusion_queries(campaign) {
            let rows: Vec<Excluded> = txn.query(&query).await?;
            sets.push(rows.into_iter().map(|row| row.customer_id).collect());
        }
        let [left_topic, suppressed, open_complaint] = sets.try_into().expect("one set per query");
        let mut exclusions = Exclusions { left_topic, suppressed, open_complaint, ..Default::default() };
        let (cooled_down, recent_messages) = (&mut exclusions.cooled_down, &mut exclusions.recent_messages);
        txn.scan(&recent_outbox(campaign, rules, at), |row: Recent| {
            if row.in_cooldown {
                cooled_down.insert(row.customer_id);
            }
            if row.counted {
                *recent_messages.entry(row.customer_id).or_default() += 1;
            }
            Ok(())
        })
        .await?;
        Ok(exclusions)
    }
}

/// The query behind each exclusion that does not read the outbox, each
/// returning customer ids: left the campaign's topic, suppressed, open complaint.
fn exclusion_queries(campaign: &Campaign) -> [SelectStatement; 3] {
    [left_topic(&campaign.topic), suppressed_customers(), open_complainants()]
}

/// The steps after the segment, each counted.
fn apply_steps(campaign: &Campaign, rules: &Rules, excluded: &Exclusions, mut audience: Vec<Candidate>) -> Plan {
    let marketing = campaign.kind == Kind::Marketing;
    let capped = marketing && rules.frequency_cap > 0;
    let mut steps = Vec::with_capacity(STEPS.len());
    let mut record = |step: &'static str, remaining: usize| steps.push(StepCount { step, remaining: remaining as u64 });
    record("segment", audience.len());
    // Marketing needs consent; no mail of a topic the customer left.
    audience.retain(|c| (!marketing || c.consent) && !excluded.left_topic.contains(&c.customer_id));
    record("consent", audience.len());
    audience.retain(|c| !excluded.suppressed.contains(&c.customer_id));
    record("suppression", audience.len());
    audience.retain(|c| !marketing || !excluded.open_complaint.contains(&c.customer_id));
    record("open_complaint", audience.len());
    audience.retain(|c| !excluded.cooled_down.contains(&c.customer_id));
    record("cooldown", audience.len());
    audience.retain(|c| {
        !capped || excluded.recent_messages.get(&c.customer_id).copied().unwrap_or(0) < i64::from(rules.frequency_cap)
    });
    record("frequency_cap", audience.len());
    order(&mut audience, campaign);
    if let Some(limit) = campaign.audience.limit {
        audience.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    record("order_limit", audience.len());
    let holdout = campaign.audience.holdout.unwrap_or(rules.default_holdout);
    let chosen: Vec<Chosen> = audience
        .iter()
        .map(|c| Chosen {
            customer_id: c.customer_id,
            control: in_control_group(&campaign.name, c.customer_id, holdout),
            variant: variant_of(campaign, c.customer_id),
            held: false,
            by_winner: false,
            timezone: c.timezone.as_deref().and_then(window::parse_zone),
        })
        .collect();
    record("holdout", chosen.iter().filter(|c| !c.control).count());
    Plan { steps, chosen }
}

/// By the order field (customers without a value last), then by customer id,
/// so that the same data always gives the same plan.
fn order(audience: &mut [Candidate], campaign: &Campaign) {
    let descending = campaign.audience.order.as_ref().is_some_and(|o| o.descending);
    audience.sort_by(|a, b| {
        let by_value = match (a.sort, b.sort) {
            (Some(x), Some(y)) if descending => y.total_cmp(&x),
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        by_value.then(a.customer_id.cmp(&b.customer_id))
    });
}

/// A number in [0, 1) fixed by the text: the same customer lands on the same
/// side every time the campaign is planned.
fn unit_hash(parts: &[&str]) -> f64 {
    let hash = xxhash_rust::xxh3::xxh3_64(parts.join("\u{0}").as_bytes());
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a customer is in the campaign's control group.
pub fn in_control_group(campaign: &str, customer_id: i64, holdout: f64) -> bool {
    unit_hash(&[campaign, "holdout", &customer_id.to_string()]) < holdout
}

/// The variants of a campaign with a `[winner]` table: while its test runs,
/// the customers outside the test share are held (no variant yet); once it
/// is judged, everyone gets the winner.
fn assign_variants(campaign: &Campaign, plan: &mut Plan, standing: Option<&Standing>) {
    let Some(rule) = &campaign.winner else { return };
    let assignment = winner::assignment(standing);
    for chosen in &mut plan.chosen {
        match assignment {
            Assignment::Split => {}
            Assignment::Winner(name) => {
                chosen.variant = Some(name.to_owned());
                chosen.by_winner = true;
            }
            Assignment::Held
                if chosen.control || in_test_share(&campaign.name, chosen.customer_id, rule.test_share) => {}
            Assignment::Held => {
                chosen.variant = None;
                chosen.held = true;
            }
        }
    }
}

/// Whether a customer is in the test share of the campaign's A/B test
/// (drawn apart from the variant and the control group).
fn in_test_share(campaign: &str, customer_id: i64, share: f64) -> bool {
    unit_hash(&[campaign, "test", &customer_id.to_string()]) < share
}

/// The A/B variant of a customer, by share; `None` without variants.
fn variant_of(campaign: &Campaign, customer_id: i64) -> Option<String> {
    let point = unit_hash(&[&campaign.name, "variant", &customer_id.to_string()]);
    let mut cumulative = 0.0;
    for variant in &campaign.variants {
        cumulative += variant.share;
        if point < cumulative {
            return Some(variant.name.clone());
        }
    }
    campaign.variants.last().map(|v| v.name.clone())
}

/// Where a campaign's segment is read from (`segment::source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Every customer, joined to their snapshot and score.
    Customers,
    /// The snapshots joined to the scores; consent and erasure are taken
    /// from the customers after ([`take_consent_and_erasure`]).
    Snapshots,
}

impl Source {
    /// The snapshots when the segment and the order field read nothing
    /// else, the customer's zone is not needed, and no customer without a
    /// snapshot can match.
    fn of(campaign: &Campaign) -> Source {
        let order_read = campaign
            .audience
            .order
            .as_ref()
            .is_none_or(|order| source::in_snapshot_or_score(&Field::Named(order.field.clone())));
        let zone_read = matches!(campaign.send_window, Some(window) if window.zone == WindowZone::Customer);
        if order_read && !zone_read && source::readable_from_snapshots(&campaign.audience.expr) {
            Source::Snapshots
        } else {
            Source::Customers
        }
    }
}

/// The customers in the segment: id, order value, marketing consent (from
/// the snapshots: true, for [`take_consent_and_erasure`] to correct).
fn segment(
    campaign: &Campaign,
    rules: &Rules,
    at: DateTime<Utc>,
    backend: DbBackend,
    scores: Scores,
    source: Source,
) -> SelectStatement {
    let today = at.with_timezone(&campaign.timezone).date_naive();
    let context = Context { backend, now: at, today, attribution_window: rules.attribution_window, scores };
    let customers = Alias::new("customers");
    let (mut select, customer_id, consent, timezone) = match source {
        Source::Customers => (
            compile::from_customers(&context.scores),
            Expr::col((customers.clone(), Alias::new("id"))),
            Expr::col((customers.clone(), Alias::new("marketing_consent"))),
            customer_timezone(campaign, &context),
        ),
        Source::Snapshots => (
            compile::from_snapshots(&context.scores),
            Expr::col((Alias::new("feature_snapshots"), Alias::new("customer_id"))),
            Expr::val(true),
            Expr::val(DbValue::String(None)),
        ),
    };
    select
        .expr_as(customer_id, "customer_id")
        .expr_as(sort_value(campaign, &context), "sort")
        .expr_as(consent, "consent")
        .expr_as(timezone, "timezone")
        .cond_where(compile::condition(&campaign.audience.expr, &context));
    if source == Source::Customers {
        select.and_where(Expr::col((customers, Alias::new("erased_at"))).is_null());
    }
    select
}

record! {
    /// A customer without marketing consent, or erased ([`withheld_customers`]).
    struct Withheld {
        customer_id: i64,
        erased: bool,
    }
}

/// A segment read from the snapshots: the erased leave it, and the
/// customers without marketing consent lose it. Both are read in one scan
/// of the customers, which returns only them.
async fn take_consent_and_erasure(txn: &mut Txn, audience: &mut Vec<Candidate>) -> Result<(), DbErr> {
    let withheld: HashMap<i64, bool> =
        txn.scan_all::<Withheld>(&withheld_customers()).await?.into_iter().map(|w| (w.customer_id, w.erased)).collect();
    audience.retain_mut(|candidate| match withheld.get(&candidate.customer_id) {
        Some(&erased) => {
            candidate.consent = false;
            !erased
        }
        None => true,
    });
    Ok(())
}

/// The customers without marketing consent or erased, and which.
fn withheld_customers() -> SelectStatement {
    Query::select()
        .expr_as(Expr::col("id"), "customer_id")
        .expr_as(Expr::col("erased_at").is_not_null(), "erased")
        .from("customers")
        .cond_where(Cond::any().add(Expr::col("marketing_consent").eq(false)).add(Expr::col("erased_at").is_not_null()))
        .to_owned()
}

/// The customer's `timezone` attribute as text when the campaign's send
/// window is read in the customer's zone, else NULL (nothing to read).
fn customer_timezone(campaign: &Campaign, context: &Context) -> SimpleExpr {
    match campaign.send_window {
        Some(window) if window.zone == WindowZone::Customer => {
            let attribute = Field::Attribute(window::TIMEZONE_ATTRIBUTE.to_owned());
            // As text on both engines: SQLite's json_extract gives a number or a document as such.
            compile::column(&attribute, &Value::Text(String::new()), context).cast_as(Alias::new("TEXT"))
        }
        _ => Expr::val(DbValue::String(None)),
    }
}

/// The customers who left `topic`.
fn left_topic(topic: &str) -> SelectStatement {
    Query::select().column("customer_id").from("topic_opt_outs").and_where(Expr::col("topic").eq(topic)).to_owned()
}

/// The order field as a floating-point number, or NULL without an order.
fn sort_value(campaign: &Campaign, context: &Context) -> SimpleExpr {
    let Some(order) = &campaign.audience.order else { return Expr::val(DbValue::Double(None)) };
    let column = compile::column(&Field::Named(order.field.clone()), &Value::Number(0.0), context);
    as_double(context.backend, column)
}

/// The customers whose address is suppressed, or who themselves
/// unsubscribed or complained under an address they no longer have (a
/// bounce belongs to the address only). Both sides of the address match are
/// lower-cased, so that the index on customers' lower-cased address serves it.
fn suppressed_customers() -> SelectStatement {
    let (customers, suppressions) = (Alias::new("customers"), Alias::new("suppressions"));
    let by_address = Func::lower(Expr::col((customers.clone(), Alias::new("email"))))
        .eq(Func::lower(Expr::col((suppressions.clone(), Alias::new("email")))));
    let by_person = Expr::col((customers.clone(), Alias::new("id")))
        .equals((suppressions.clone(), Alias::new("customer_id")))
        .and(Expr::col((suppressions.clone(), Alias::new("reason"))).ne("bounced"));
    Query::select()
        .distinct()
        .expr_as(Expr::col((customers.clone(), Alias::new("id"))), "customer_id")
        .from(suppressions)
        .inner_join(customers, by_address.or(by_person))
        .to_owned()
}

fn open_complainants() -> SelectStatement {
    Query::select()
        .distinct()
        .column("customer_id")
        .from("interactions")
        .and_where(Expr::col("kind").eq("complaint"))
        .and_where(Expr::col("status").eq("open"))
        .to_owned()
}

/// The outbox rows the cooldown or the frequency cap count, each marked
/// with which: those of this campaign's runs fired in (at - cooldown, at]
/// (sent, planned or control; none without a cooldown), and the marketing
/// messages (not control entries) of runs fired in (at - frequency window,
/// at]. One read of the recent outbox for both, counted here: grouping
/// by customer in SQL makes PostgreSQL sort the rows first, which costs
/// more than reading them.
fn recent_outbox(campaign: &Campaign, rules: &Rules, at: DateTime<Utc>) -> SelectStatement {
    let cooldown = campaign.audience.cooldown.unwrap_or_else(Duration::zero);
    let in_cooldown = run_col("campaign").eq(campaign.name.as_str()).and(run_col("scheduled_at").gt(at - cooldown));
    let outbox = Alias::new("outbox");
    let counted = run_col("kind")
        .eq(Kind::Marketing.as_str())
        .and(Expr::col((outbox.clone(), Alias::new("state"))).is_in(MESSAGE_STATES))
        .and(run_col("scheduled_at").gt(at - rules.frequency_window));
    Query::select()
        .column((outbox.clone(), Alias::new("customer_id")))
        .expr_as(in_cooldown.clone(), "in_cooldown")
        .expr_as(counted.clone(), "counted")
        .from(outbox.clone())
        .inner_join(Alias::new("campaign_runs"), run_col("id").equals((outbox, Alias::new("run_id"))))
        .and_where(run_col("scheduled_at").lte(at))
        .and_where(in_cooldown.or(counted))
        .to_owned()
}

fn run_col(column: &'static str) -> Expr {
    Expr::col((Alias::new("campaign_runs"), Alias::new(column)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_group_is_stable_and_near_its_share() {
        let held: Vec<i64> = (1..=10_000).filter(|&id| in_control_group("winback", id, 0.1)).collect();
        let share = held.len() as f64 / 10_000.0;
        assert!((share - 0.1).abs() < 0.02, "share {share}");
        let again: Vec<i64> = (1..=10_000).filter(|&id| in_control_group("winback", id, 0.1)).collect();
        assert_eq!(held, again);
        // Another campaign draws another group.
        let other: Vec<i64> = (1..=10_000).filter(|&id| in_control_group("welcome", id, 0.1)).collect();
        assert_ne!(held, other);
        assert!(!(1..=1000).any(|id| in_control_group("winback", id, 0.0)));
    }
}
