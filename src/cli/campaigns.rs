//! `patron campaign validate|list|preview|run`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, SubsecRound, Utc};
use clap::Subcommand;
use sea_orm::DatabaseConnection;

use super::UsageError;
use crate::campaign::freshness::{self, DataTimes, Staleness, age, age_text, time_text};
use crate::campaign::plan::{self, Outcome, Plan, Rules};
use crate::campaign::scheduler::last_run;
use crate::campaign::window::{self, WindowZone};
use crate::campaign::winner::{self, Standing};
use crate::campaign::{Campaign, Catalog, Diagnostic, catalog, diff, spec};
use crate::config::{Loaded, Settings};
use crate::delivery::test_send::{self, TestSend};
use crate::message::{Part, context};
use crate::model::registry;
use crate::segment::compile::FIELDS;
use crate::segment::{Expr, Field};

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Check campaign files: TOML, fields, expressions, schedules, time zones,
    /// templates and addresses. Prints every problem as file:line:col.
    Validate {
        /// The files to check [default: every *.toml in the campaigns folder].
        files: Vec<PathBuf>,
    },
    /// List the campaigns with their schedule, next fire time and last run.
    List,
    /// Show who a campaign would reach now (the audience after each step),
    /// its next five fire times and one rendered sample message. Sends nothing.
    Preview { name: String },
    /// Plan a run of a campaign now: its outbox rows are written for sending.
    Run {
        name: String,
        /// Show the counts but write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Plan the fire of this moment instead of now (RFC 3339, such as
        /// 2026-12-01T09:00:00+01:00): a missed fire replayed, or a rehearsal.
        #[arg(long, value_name = "TIME", value_parser = parse_moment)]
        at: Option<DateTime<Utc>>,
    },
    /// Show whom the campaign would reach now, with its file as it is, against
    /// its last planned run: how many are added and removed, with a sample of
    /// customer ids. Writes nothing.
    Diff {
        name: String,
        /// How many customer ids to show on each side.
        #[arg(long, default_value_t = 10)]
        sample: usize,
    },
    /// Send one campaign message, rendered for a real customer, to an address of
    /// yours through the configured transport: the subject starts with [TEST], its
    /// unsubscribe link is a placeholder, and nothing is recorded (outbox, reports).
    Test {
        name: String,
        /// Where the test message goes.
        #[arg(long, value_name = "ADDRESS")]
        to: String,
        /// Render it for this customer (their customer id) [default: the first customer the
        /// campaign would reach now].
        #[arg(long, value_name = "ID")]
        customer: Option<String>,
        /// Use this A/B variant's message [default: the customer's own].
        #[arg(long)]
        variant: Option<String>,
    },
    /// Release a campaign paused by the circuit breaker (too many complaints or
    /// bounces): its waiting messages go out with the next send.
    Resume { name: String },
}

/// Exit code 2: a campaign file has problems (they are printed above).
#[derive(Debug, thiserror::Error)]
#[error("{0} problem(s) found in the campaign files")]
pub struct InvalidCampaigns(pub usize);

/// Exit code 2: `campaign run` reached more customers than the campaign's
/// `max_audience`; the run is recorded as refused.
#[derive(Debug, thiserror::Error)]
#[error("campaign `{campaign}`: {refusal}; run {run_id} recorded as refused, nothing was planned")]
pub struct RefusedRun {
    campaign: String,
    run_id: i64,
    refusal: plan::Refusal,
}

impl crate::failure::Failure for RefusedRun {
    /// The campaign file's audience is not what its author allowed.
    fn fault(&self) -> crate::failure::Fault {
        crate::failure::Fault::Input
    }
}

/// Exit code 75: `campaign run` was held back by the staleness guard; the
/// fire is recorded as `stale`, and the same fire plans once the data is fresh.
#[derive(Debug, thiserror::Error)]
#[error(
    "campaign `{campaign}` not planned: {staleness}; run {run_id} is recorded as stale. Once fresh data has landed \
     (an import or a feed), run it again: `--at {}` plans this same fire",
    at.to_rfc3339()
)]
pub struct StaleRun {
    campaign: String,
    run_id: i64,
    at: DateTime<Utc>,
    staleness: Staleness,
}

impl crate::failure::Failure for StaleRun {
    /// Nothing is wrong with the command: it succeeds once fresh data has arrived.
    fn fault(&self) -> crate::failure::Fault {
        crate::failure::Fault::TryAgainLater
    }
}

/// Releases a paused campaign (a name not paused, perhaps no longer in the folder, is no error).
async fn resume(conn: &DatabaseConnection, name: &str) -> anyhow::Result<()> {
    if crate::delivery::campaign_pause::resume(conn, name).await? {
        tracing::info!(campaign = name, "campaign resumed");
        println!("{name}: resumed; its waiting messages go out with the next send");
    } else {
        println!("{name}: was not paused");
    }
    Ok(())
}

/// `validate` needs no database.
pub fn validate(settings: &Settings, files: &[PathBuf]) -> anyhow::Result<()> {
    let files = if files.is_empty() {
        catalog::campaign_files(&settings.campaigns_dir).map_err(|d| anyhow::anyhow!("{d}"))?
    } else {
        files.to_vec()
    };
    let mut problems: Vec<Diagnostic> = Vec::new();
    let mut valid = 0;
    for file in &files {
        match spec::load_file(file, &settings.subscriptions.topics) {
            Ok(_) => valid += 1,
            Err(diagnostics) => problems.extend(diagnostics),
        }
    }
    for problem in &problems {
        println!("{problem}");
    }
    println!("{valid} of {} campaign file(s) valid", files.len());
    if problems.is_empty() { Ok(()) } else { Err(InvalidCampaigns(problems.len()).into()) }
}

pub async fn run(conn: &DatabaseConnection, loaded: &Loaded, command: &CampaignCommand) -> anyhow::Result<()> {
    let settings = &loaded.settings;
    let catalog = load_catalog(settings);
    let rules = Rules::from(settings);
    match command {
        CampaignCommand::Validate { .. } => unreachable!("handled without a database"),
        CampaignCommand::List => list(conn, &catalog).await,
        CampaignCommand::Resume { name } => resume(conn, name).await,
        CampaignCommand::Preview { name } => {
            let campaign = find(&catalog, name)?;
            warn_if_scores_missing(conn, settings, campaign).await?;
            preview(conn, campaign, &rules).await
        }
        CampaignCommand::Test { name, to, customer, variant } => {
            let campaign = find(&catalog, name)?;
            let request = TestSend { to, customer: customer.as_deref(), variant: variant.as_deref() };
            let sent = test_send::send(conn, loaded, campaign, &rules, &request).await?;
            println!(
                "test message \"{}\" for customer {}{} sent to {to}: {}",
                sent.subject,
                sent.customer,
                sent.variant.map(|v| format!(" (variant {v})")).unwrap_or_default(),
                sent.reply
            );
            Ok(())
        }
        CampaignCommand::Diff { name, sample } => {
            let campaign = find(&catalog, name)?;
            warn_if_scores_missing(conn, settings, campaign).await?;
            print_diff(&diff::diff(conn, campaign, &rules, now(), *sample).await?);
            Ok(())
        }
        CampaignCommand::Run { name, dry_run: true, at } => {
            let campaign = find(&catalog, name)?;
            warn_if_scores_missing(conn, settings, campaign).await?;
            let started = Instant::now();
            let at = at.unwrap_or_else(now);
            let plan = plan::evaluate(conn, campaign, &rules, at).await?;
            print_steps(campaign, &plan);
            print_freshness(conn, campaign, &rules, at).await?;
            println!("dry run in {:.2} s: nothing was written", started.elapsed().as_secs_f64());
            Ok(())
        }
        CampaignCommand::Run { name, dry_run: false, at } => {
            let campaign = find(&catalog, name)?;
            warn_if_scores_missing(conn, settings, campaign).await?;
            let started = Instant::now();
            let at = at.unwrap_or_else(now);
            match plan::plan_run(conn, campaign, &rules, at).await? {
                Outcome::Planned { run_id, plan } => {
                    print_steps(campaign, &plan);
                    println!(
                        "run {run_id} planned in {:.2} s: {} message(s), {} in the control group",
                        started.elapsed().as_secs_f64(),
                        plan.messages(),
                        plan.control()
                    );
                }
                Outcome::AlreadyPlanned { run_id } => {
                    println!("already planned as run {run_id}; nothing written")
                }
                Outcome::Refused { run_id, plan, refusal } => {
                    print_steps(campaign, &plan);
                    return Err(RefusedRun { campaign: campaign.name.clone(), run_id, refusal }.into());
                }
                Outcome::Stale { run_id, staleness, .. } => {
                    return Err(StaleRun { campaign: campaign.name.clone(), run_id, at, staleness }.into());
                }
            }
            Ok(())
        }
    }
}

/// The segment and order fields of `campaign` that `patron score` computes
/// (from `feature_snapshots` or the active model's `scores`), in order of use.
fn scored_fields(campaign: &Campaign) -> Vec<&'static str> {
    fn walk<'e>(expr: &'e Expr, names: &mut Vec<&'e str>) {
        match expr {
            Expr::And(a, b) | Expr::Or(a, b) => {
                walk(a, names);
                walk(b, names);
            }
            Expr::Not(e) => walk(e, names),
            Expr::Compare { field, .. }
            | Expr::Between { field, .. }
            | Expr::In { field, .. }
            | Expr::IsNull { field, .. } => {
                if let Field::Named(name) = field {
                    names.push(name);
                }
            }
            Expr::Subscribed { .. } | Expr::History { .. } => {}
        }
    }
    let mut names = Vec::new();
    walk(&campaign.audience.expr, &mut names);
    if let Some(order) = &campaign.audience.order {
        names.push(&order.field);
    }
    let mut scored = Vec::new();
    for name in names {
        let field =
            FIELDS.iter().find(|(n, _, table, ..)| *n == name && matches!(*table, "feature_snapshots" | "scores"));
        if let Some((n, ..)) = field
            && !scored.contains(n)
        {
            scored.push(*n);
        }
    }
    scored
}

/// Warns on stderr when the fields `campaign` selects on come from a scoring
/// that never ran or is older than `daemon.max_score_age`: without it the
/// campaign plans nobody (or plans on stale values), and says what to run.
async fn warn_if_scores_missing(
    conn: &DatabaseConnection,
    settings: &Settings,
    campaign: &Campaign,
) -> anyhow::Result<()> {
    let fields = scored_fields(campaign);
    if fields.is_empty() {
        return Ok(());
    }
    let fields = fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ");
    if registry::active(conn).await?.is_none() {
        eprintln!(
            "warning: campaign {} uses {fields}, which come from scoring, and there is no active model yet, \
             so no customer has these values: run `patron train`, then `patron score`",
            campaign.name
        );
        return Ok(());
    }
    match registry::last_scored_at(conn).await? {
        None => eprintln!(
            "warning: campaign {} uses {fields}, which come from scoring, and the active model has not scored \
             anyone yet, so no customer has these values: run `patron score`",
            campaign.name
        ),
        Some(at) if now() - at > settings.daemon.max_score_age() => eprintln!(
            "warning: campaign {} uses {fields}, which come from scoring, and the last scoring ({}) is older \
             than daemon.max_score_age ({}): run `patron score`",
            campaign.name,
            at.format("%Y-%m-%d %H:%M UTC"),
            settings.daemon.max_score_age
        ),
        Some(_) => {}
    }
    Ok(())
}

/// The campaigns that load; problems in the others are printed to stderr.
fn load_catalog(settings: &Settings) -> Catalog {
    let (catalog, report) = Catalog::load(&settings.campaigns_dir, &settings.subscriptions.topics);
    for problem in &report.diagnostics {
        eprintln!("warning: {problem}");
    }
    catalog
}

fn find<'a>(catalog: &'a Catalog, name: &str) -> anyhow::Result<&'a Campaign> {
    catalog.get(name).ok_or_else(|| {
        let names: Vec<&str> = catalog.campaigns().map(|c| c.name.as_str()).collect();
        UsageError(format!("no valid campaign named `{name}`; the campaigns are: {}", names.join(", "))).into()
    })
}

/// A moment given on the command line (RFC 3339), to the second.
pub(crate) fn parse_moment(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(0))
        .map_err(|e| format!("`{text}` is not a moment such as 2026-12-01T09:00:00+01:00: {e}"))
}

/// Now, to the second: fire times and manual runs are whole seconds.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

async fn list(conn: &DatabaseConnection, catalog: &Catalog) -> anyhow::Result<()> {
    println!(
        "{:<24} {:<10} {:<8} {:<18} {:<18} {:<22} LAST RUN",
        "NAME", "KIND", "ENABLED", "SCHEDULE", "TIMEZONE", "NEXT FIRE"
    );
    for campaign in catalog.campaigns() {
        let next = campaign.schedule.as_ref().and_then(|s| s.fires_after(Utc::now()).next());
        // A fire not planned says why: skipped, refused, stale.
        let last = last_run(conn, &campaign.name).await?.map(|(at, state)| match state.as_str() {
            "planned" => local_time(campaign, at),
            _ => format!("{} ({state})", local_time(campaign, at)),
        });
        println!(
            "{:<24} {:<10} {:<8} {:<18} {:<18} {:<22} {}",
            campaign.name,
            campaign.kind.as_str(),
            if campaign.enabled { "yes" } else { "no" },
            campaign.schedule.as_ref().map_or("manual", |s| s.expression()),
            campaign.timezone.name(),
            next.map_or("-".into(), |t| local_time(campaign, t)),
            last.unwrap_or_else(|| "never".into()),
        );
    }
    Ok(())
}

fn local_time(campaign: &Campaign, at: DateTime<Utc>) -> String {
    at.with_timezone(&campaign.timezone).format("%Y-%m-%d %H:%M %Z").to_string()
}

async fn preview(conn: &DatabaseConnection, campaign: &Campaign, rules: &Rules) -> anyhow::Result<()> {
    let at = now();
    let plan = plan::evaluate(conn, campaign, rules, at).await?;
    println!("campaign {} ({}): {}", campaign.name, campaign.kind.as_str(), campaign.description);
    print_steps(campaign, &plan);
    print_freshness(conn, campaign, rules, at).await?;
    print_send_rules(campaign, &plan, at);
    print_ab_test(conn, campaign).await?;
    match &campaign.schedule {
        Some(schedule) => {
            println!("next fire times ({}):", campaign.timezone.name());
            for fire in schedule.fires_after(at).take(5) {
                let sends = send_times(campaign, &plan, fire).map(|s| format!(": sent {s}")).unwrap_or_default();
                println!("  {}{sends}", local_time(campaign, fire));
            }
        }
        None => println!("no schedule: runs only with `patron campaign run {}`", campaign.name),
    }
    match plan.chosen.iter().find(|c| !c.control) {
        Some(sample) => print_sample(conn, campaign, sample).await,
        None => {
            println!("no sample message: nobody would get this campaign now");
            Ok(())
        }
    }
}

/// Where the campaign's A/B test (`[winner]`) stands.
async fn print_ab_test(conn: &DatabaseConnection, campaign: &Campaign) -> anyhow::Result<()> {
    let (Some(rule), Some(standing)) = (&campaign.winner, winner::current(conn, campaign).await?) else {
        return Ok(());
    };
    let share = format!("{:.0}%", rule.test_share * 100.0);
    match standing {
        Standing::Decided(decision) => println!("A/B test judged: {}", decision.reason),
        Standing::Testing { until: Some(until) } => println!(
            "A/B test on {}: {share} of each run gets the variants, the rest waits for the winner, judged {}",
            rule.metric.as_str(),
            local_time(campaign, until)
        ),
        Standing::Testing { until: None } => println!(
            "A/B test on {}: {share} of each run gets the variants, the rest waits for the winner, judged {} after the first run",
            rule.metric.as_str(),
            duration_text(rule.after)
        ),
    }
    Ok(())
}

/// How old the data the audience reads is at `at` (the newest import or
/// feed, and the last scoring when it reads scores), and whether the
/// staleness guard would hold a run at `at` back.
async fn print_freshness(
    conn: &DatabaseConnection,
    campaign: &Campaign,
    rules: &Rules,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    let reads = freshness::dependencies(campaign);
    if reads.is_none() {
        if rules.max_data_age.is_some() {
            println!("data: the audience reads neither orders nor scores; the staleness guard does not apply");
        }
        return Ok(());
    }
    let times = DataTimes::read(conn).await?;
    let when = |time: Option<DateTime<Utc>>| {
        time.map_or("never".to_owned(), |t| format!("at {} ({} old)", time_text(t), age_text(age(t, at))))
    };
    let scoring = if reads.scores { format!("; last scoring {}", when(times.scored_at)) } else { String::new() };
    println!("data: newest import or feed {}{scoring}", when(times.loaded_at));
    match (rules.max_data_age, freshness::judge(reads, &times, rules, at)) {
        (None, _) => println!("staleness guard: off (campaigns.max_data_age is empty)"),
        (Some(_), Some(staleness)) => println!("staleness guard: a run would be held back: {staleness}"),
        (Some(max_data_age), None) => {
            let scores = if reads.scores {
                format!(", scores within daemon.max_score_age {}", age_text(rules.max_score_age))
            } else {
                String::new()
            };
            println!(
                "staleness guard: fresh enough (data within campaigns.max_data_age {}{scores})",
                age_text(max_data_age)
            )
        }
    }
    Ok(())
}

/// The send window with its zone, the expiry, and when the messages of a
/// run now would go out.
fn print_send_rules(campaign: &Campaign, plan: &Plan, at: DateTime<Utc>) {
    if let Some(window) = &campaign.send_window {
        match window.zone {
            WindowZone::Campaign => println!("send window: {} ({})", window.hours(), campaign.timezone.name()),
            WindowZone::Customer => println!(
                "send window: {} in each customer's time zone (their `{}` attribute; {} without a valid one)",
                window.hours(),
                window::TIMEZONE_ATTRIBUTE,
                campaign.timezone.name()
            ),
        }
    }
    if let Some(after) = campaign.expires_after {
        let after = duration_text(after);
        println!("expires_after: {after} (a message not sent within {after} of its run's fire time is never sent)");
    }
    if let Some(sends) = send_times(campaign, plan, at) {
        println!("a run now would be sent {sends}");
    }
}

/// When the messages of a run fired at `at` would go out and when they
/// would expire, for the customers of `plan` (whose time zones a window
/// may follow); `None` for a campaign with neither a window nor an expiry.
fn send_times(campaign: &Campaign, plan: &Plan, at: DateTime<Utc>) -> Option<String> {
    if campaign.send_window.is_none() && campaign.expires_after.is_none() {
        return None;
    }
    // The times depend on the customer's time zone only (the campaign's when nobody is reached).
    let mut zones: Vec<Option<chrono_tz::Tz>> = Vec::new();
    for chosen in plan.chosen.iter().filter(|c| !c.control) {
        if !zones.contains(&chosen.timezone) {
            zones.push(chosen.timezone);
        }
    }
    if zones.is_empty() {
        zones.push(None);
    }
    let times: Vec<_> = zones.iter().map(|&zone| plan::send_times(campaign, zone, at)).collect();
    let first = times.iter().map(|(from, _)| from.unwrap_or(at)).min()?;
    let last = times.iter().map(|(from, _)| from.unwrap_or(at)).max()?;
    let mut text = if last == at {
        "at once".to_owned()
    } else if first == last {
        format!("from {}", local_time(campaign, first))
    } else {
        format!("from {} to {}, by the customers' time zones", local_time(campaign, first), local_time(campaign, last))
    };
    if let Some(expires) = campaign.expires_after.map(|after| at + after) {
        text += &format!(", expiring {}", local_time(campaign, expires));
        if first >= expires {
            text += " (before the window opens: nothing would be sent)";
        } else if last >= expires {
            text += " (before the window opens for some customers)";
        }
    }
    Some(text)
}

/// A duration as a campaign file writes it: `2d`, `36h`, `90m`, `45s`.
fn duration_text(duration: chrono::Duration) -> String {
    let seconds = duration.num_seconds();
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn print_steps(campaign: &Campaign, plan: &Plan) {
    println!("audience after each step:");
    for step in &plan.steps {
        println!("  {:<16} {:>10}", step.step, step.remaining);
    }
    match (campaign.audience.max_audience, plan::Refusal::of(campaign, plan)) {
        (_, Some(refusal)) => println!("max_audience: {refusal}; a run would be refused"),
        (Some(max), None) => println!("max_audience: {} customers, within {max}", plan.chosen.len()),
        (None, None) => {}
    }
    if plan.held() > 0 {
        println!("held for the A/B test's winner ([winner]): {} message(s)", plan.held());
    }
}

fn print_diff(d: &diff::AudienceDiff) {
    match &d.last_run {
        Some(run) => println!(
            "last planned run {} ({}): {} customers",
            run.id,
            run.scheduled_at.format("%Y-%m-%d %H:%M UTC"),
            run.customers
        ),
        None => println!("never planned before: every customer is new"),
    }
    println!(
        "now: {} customers: {} in both, {} added, {} removed (the control group counts on both sides)",
        d.now, d.kept, d.added.count, d.removed.count
    );
    for (label, side) in [("added", &d.added), ("removed", &d.removed)] {
        if side.count > 0 {
            println!("{label} (first {} by customer): {}", side.sample.len(), side.sample.join(", "));
        }
    }
}

/// Renders the message the first chosen customer would get.
async fn print_sample(conn: &DatabaseConnection, campaign: &Campaign, sample: &plan::Chosen) -> anyhow::Result<()> {
    let model_id = registry::active(conn).await?.map(|m| m.id);
    // The real link, with a signed token, is made when the message is sent.
    let link = "https://unsubscribe-link-made-when-sent.invalid/";
    let variant = sample.variant.as_deref();
    let Some(variables) =
        context::for_customer(conn, sample.customer_id, campaign.info(), variant, model_id, link).await?
    else {
        return Ok(());
    };
    let message = campaign.message_for(variant);
    let templates = message.templates().map_err(|errors| anyhow::anyhow!("{} template problem(s)", errors.len()))?;
    println!("sample message{}:", variant.map(|v| format!(" (variant {v})")).unwrap_or_default());
    println!("  From: {}", message.from);
    if let Some(reply_to) = &message.reply_to {
        println!("  Reply-To: {reply_to}");
    }
    for part in Part::ALL {
        if let Some(rendered) = templates.render(part, &variables) {
            let rendered = rendered.with_context(|| format!("rendering the {} template", part.key()))?;
            match part {
                Part::Subject => println!("  Subject: {rendered}\n"),
                _ => println!("--- {} part ---\n{rendered}\n", part.key()),
            }
        }
    }
    Ok(())
}

impl crate::failure::Failure for InvalidCampaigns {
    /// The campaign files have problems.
    fn fault(&self) -> crate::failure::Fault {
        crate::failure::Fault::Input
    }
}
