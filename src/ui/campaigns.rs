//! `/ui/campaigns`: every campaign with its schedule, next fire times in its
//! time zone and last runs; `/ui/campaigns/NAME`: the audience steps of its
//! last run and `report campaign`'s page (conversion and revenue against
//! the control group, deliverability, variants).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

use super::cache::{Cached, CampaignVersion};
use super::{Page, PageError, Ui};
use crate::campaign::Campaign;
use crate::model::report::escape;
use crate::report::campaign::DeliveryCounts;
use crate::report::html::{self, Charts, table};
use crate::report::{self, ReportError};

/// Runs shown per campaign on the list.
const LAST_RUNS: u64 = 5;

/// What the pages keep of one campaign (see [`super::cache`]): its results
/// page, and its last runs with their delivery counts for the list.
#[derive(Default)]
pub(super) struct Kept {
    results: Cached<CampaignVersion>,
    runs: Cached<CampaignVersion, Vec<(Run, DeliveryCounts)>>,
}

/// One recorded fire of a campaign.
struct Run {
    id: i64,
    scheduled_at: DateTime<Utc>,
    state: String,
    detail: Option<String>,
    step_counts: Option<serde_json::Value>,
}

pub(super) async fn list(State(ui): State<Ui>) -> Response {
    let sources = ui.sources();
    let page = async {
        let mut body = String::from(
            "<p>Every campaign file, its schedule and next fire times in its own time zone, and its last runs: \
             planned counts every customer of a run (control group included); a fire not planned says why.</p>\n",
        );
        let version = CampaignVersion::read(&ui.db, Utc::now()).await?;
        for campaign in sources.catalog.campaigns() {
            let kept = ui.kept_campaign(&campaign.name, &sources.catalog);
            let runs =
                kept.runs.get_or_make(version.clone(), async || runs_with_counts(&ui.db, &campaign.name).await).await?;
            body += &summary(campaign, &runs, Utc::now());
        }
        if sources.catalog.is_empty() {
            body += "<p>No campaign loads from the campaign folder.</p>\n";
        }
        Ok(Page { title: "Campaigns".into(), body })
    };
    ui.answer(page.await)
}

/// The newest runs of `campaign` with their delivery counts, newest first.
async fn runs_with_counts(db: &DatabaseConnection, campaign: &str) -> Result<Vec<(Run, DeliveryCounts)>, DbErr> {
    let runs = last_runs(db, campaign).await?;
    let counts = delivery_counts(db, &runs.iter().map(|r| r.id).collect::<Vec<_>>()).await?;
    Ok(runs
        .into_iter()
        .map(|run| {
            let delivery = counts.get(&run.id).copied().unwrap_or_default();
            (run, delivery)
        })
        .collect())
}

fn summary(campaign: &Campaign, runs: &[(Run, DeliveryCounts)], now: DateTime<Utc>) -> String {
    let name = escape(&campaign.name);
    let local = |at: DateTime<Utc>| at.with_timezone(&campaign.timezone).format("%Y-%m-%d %H:%M %Z").to_string();
    let schedule = match &campaign.schedule {
        Some(schedule) => {
            let next: Vec<String> = schedule.fires_after(now).take(3).map(local).collect();
            format!(
                "<code>{}</code> ({}); next: {}",
                escape(schedule.expression()),
                campaign.timezone.name(),
                if next.is_empty() { "none".to_owned() } else { next.join(", ") }
            )
        }
        None => "manual only".to_owned(),
    };
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|(run, d)| {
            let state = match &run.detail {
                Some(detail) if run.state != "planned" => format!("{}: {}", escape(&run.state), escape(detail)),
                _ => escape(&run.state),
            };
            let row = [d.planned, d.control, d.sent, d.failed, d.suppressed, d.waiting];
            let mut cells = vec![run.id.to_string(), local(run.scheduled_at), state];
            cells.extend(row.iter().map(u64::to_string));
            cells
        })
        .collect();
    let runs_table = if rows.is_empty() {
        "<p>No run yet.</p>\n".to_owned()
    } else {
        table(&["Run", "Planned for", "State", "Planned", "Control", "Sent", "Failed", "Suppressed", "Waiting"], &rows)
    };
    format!(
        "<h2><a href=\"/ui/campaigns/{}\">{name}</a></h2>\n<p>{} {}{}. Schedule: {schedule}.</p>\n{runs_table}",
        url_part(&campaign.name),
        campaign.kind.as_str(),
        if campaign.enabled { "campaign" } else { "campaign, <b>disabled</b>" },
        if campaign.description.is_empty() { String::new() } else { format!(": {}", escape(&campaign.description)) },
    )
}

/// The newest runs of `campaign`, newest first.
async fn last_runs(db: &DatabaseConnection, campaign: &str) -> Result<Vec<Run>, DbErr> {
    let select = Query::select()
        .columns(["id", "scheduled_at", "state", "detail", "step_counts"])
        .from("campaign_runs")
        .and_where(Expr::col("campaign").eq(campaign))
        .order_by("scheduled_at", Order::Desc)
        .limit(LAST_RUNS)
        .to_owned();
    let rows = db.query_all(&select).await?;
    rows.iter()
        .map(|row| {
            Ok(Run {
                id: row.try_get_by_index(0)?,
                scheduled_at: row.try_get_by_index(1)?,
                state: row.try_get_by_index(2)?,
                detail: row.try_get_by_index(3)?,
                step_counts: row.try_get_by_index(4)?,
            })
        })
        .collect()
}

/// The outbox rows of `runs` by state, counted as `report campaign` counts them.
async fn delivery_counts(db: &DatabaseConnection, runs: &[i64]) -> Result<BTreeMap<i64, DeliveryCounts>, DbErr> {
    let mut counts: BTreeMap<i64, DeliveryCounts> = BTreeMap::new();
    if runs.is_empty() {
        return Ok(counts);
    }
    let select = Query::select()
        .columns(["run_id", "state"])
        .expr(Expr::col("id").count())
        .from("outbox")
        .and_where(Expr::col("run_id").is_in(runs.iter().copied()))
        .group_by_columns(["run_id", "state"])
        .to_owned();
    for row in db.query_all(&select).await? {
        let (run, state, n): (i64, String, i64) =
            (row.try_get_by_index(0)?, row.try_get_by_index(1)?, row.try_get_by_index(2)?);
        counts.entry(run).or_default().add(&state, u64::try_from(n).unwrap_or(0));
    }
    Ok(counts)
}

pub(super) async fn page(State(ui): State<Ui>, Path(name): Path<String>) -> Response {
    let sources = ui.sources();
    let window = sources.settings.report.attribution_window();
    let page = async {
        let campaign = sources.catalog.get(&name);
        let results = match campaign {
            // A campaign of the folder: its results are kept (see `cache`).
            Some(_) => {
                let version = CampaignVersion::read(&ui.db, Utc::now()).await?;
                let kept = ui.kept_campaign(&name, &sources.catalog);
                kept.results.get_or_make(version, async || results(&ui.db, &name, true, window).await).await?
            }
            None => Arc::new(results(&ui.db, &name, false, window).await?),
        };
        let body = campaign.map(about).unwrap_or_default() + &results;
        Ok(Page { title: format!("Campaign {name}"), body })
    };
    ui.answer(page.await)
}

/// What the database holds of a campaign: the audience steps of its last
/// run and `report campaign`'s page. A campaign that is `known` (its file
/// loads) and has not run yet says so; an unknown one is not found.
async fn results(
    db: &DatabaseConnection,
    name: &str,
    known: bool,
    window: chrono::Duration,
) -> Result<String, PageError> {
    let report = match report::campaign::report(db, name, None, window, Utc::now()).await {
        Ok(report) => Some(report),
        Err(ReportError::UnknownCampaign(_)) if known => None,
        Err(ReportError::UnknownCampaign(_)) => return Err(PageError::NotFound(format!("No campaign `{name}`."))),
        Err(error) => return Err(PageError::Failed(error.into())),
    };
    let last = last_runs(db, name).await?.into_iter().next();
    let mut body = last.as_ref().map(steps).unwrap_or_default();
    match &report {
        Some(report) => body += &html::campaign_body(report, &Charts::Inline)?,
        None => body += "<p>No run yet: nothing to report.</p>\n",
    }
    Ok(body)
}

/// The campaign's file, schedule and variants.
fn about(campaign: &Campaign) -> String {
    let variants: Vec<String> =
        campaign.variants.iter().map(|v| format!("{} ({:.0}%)", escape(&v.name), v.share * 100.0)).collect();
    format!(
        "<p>{} campaign from <code>{}</code>{}; topic {}; schedule {}.{}</p>\n",
        campaign.kind.as_str(),
        escape(&campaign.file.display().to_string()),
        if campaign.enabled { "" } else { ", <b>disabled</b>" },
        escape(&campaign.topic),
        campaign.schedule.as_ref().map_or("manual only".to_owned(), |s| format!(
            "<code>{}</code> ({})",
            escape(s.expression()),
            campaign.timezone.name()
        )),
        if variants.is_empty() { String::new() } else { format!(" Variants: {}.", variants.join(", ")) }
    )
}

/// The audience after each planning step of `run`, as planning recorded it.
fn steps(run: &Run) -> String {
    let Some(serde_json::Value::Array(steps)) = &run.step_counts else {
        return format!(
            "<h2>Last run</h2>\n<p>Run {} ({}): {}.</p>\n",
            run.id,
            super::when(Some(run.scheduled_at)),
            escape(run.detail.as_deref().unwrap_or(&run.state))
        );
    };
    let rows: Vec<Vec<String>> =
        steps.iter().map(|s| vec![escape(s["step"].as_str().unwrap_or("?")), s["remaining"].to_string()]).collect();
    format!(
        "<h2>Last run: audience step by step</h2>\n<p>Run {} ({}): the customers left after each step.</p>\n{}",
        run.id,
        super::when(Some(run.scheduled_at)),
        table(&["Step", "Customers"], &rows)
    )
}

/// `name` made safe for a path segment.
fn url_part(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>().replace('+', "%20")
}
