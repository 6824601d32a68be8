//! `/ui/`: what the daemon is doing now. Data freshness, the outbox by
//! state, sends per hour over the last week, each campaign's complaint and
//! bounce rates against the circuit breaker's limits, pauses, feeds, and the
//! errors of the campaign files.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Duration, DurationRound, Utc};
use futures_util::TryStreamExt;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{DatabaseConnection, DbErr, StreamTrait};

use super::{Page, PageError, Sources, Ui, when};
use crate::db::entities::outbox::State as OutboxState;
use crate::delivery::breaker::{self, Limits};
use crate::model::report::escape;
use crate::report::charts::{self, Axes};
use crate::report::html::{Charts, table};
use crate::report::small_percent;

/// Hours in the sends chart.
const HOURS: i64 = 7 * 24;

pub(super) async fn page(State(ui): State<Ui>) -> Response {
    ui.answer(overview(&ui.db, &ui.sources(), Utc::now()).await)
}

async fn overview(db: &DatabaseConnection, sources: &Sources, now: DateTime<Utc>) -> Result<Page, PageError> {
    let body = [
        freshness(db, sources, now).await?,
        outbox(db).await?,
        sends_chart(db, now).await?,
        rates(db, sources, now).await?,
        pauses(db, now).await?,
        file_errors(sources),
    ]
    .concat();
    Ok(Page { title: "Overview".into(), body })
}

async fn freshness(db: &DatabaseConnection, sources: &Sources, now: DateTime<Utc>) -> Result<String, DbErr> {
    let mut rows = vec![
        vec!["Last import or feed".to_owned(), when(crate::feed::state::newest_load(db).await?)],
        vec!["Last scoring".to_owned(), when(crate::model::registry::last_scored_at(db).await?)],
        vec!["Last loyalty recompute".to_owned(), when(crate::loyalty::last_recomputed_at(db).await?)],
    ];
    for feed in crate::feed::list(db, &sources.settings.feeds, now).await? {
        let recorded = &feed.recorded;
        let outcome = match &recorded.last_error {
            Some(error) => format!("<span class=\"bad\">failed: {}</span>", escape(error)),
            None if recorded.last_run_at.is_some() => format!("{} rows", recorded.last_rows),
            None => "never run".to_owned(),
        };
        rows.push(vec![
            format!("Feed {}", escape(&feed.name)),
            format!(
                "last success {}; last run {}: {outcome}",
                when(recorded.last_success_at),
                when(recorded.last_run_at)
            ),
        ]);
    }
    Ok(format!("<h2>Data</h2>\n{}", table(&["", "When"], &rows)))
}

async fn outbox(db: &DatabaseConnection) -> Result<String, DbErr> {
    let states = crate::status::outbox_by_state(db).await?;
    if states.is_empty() {
        return Ok("<h2>Outbox</h2>\n<p>Empty: no campaign has planned a message yet.</p>\n".into());
    }
    let rows: Vec<Vec<String>> = states.iter().map(|(state, n)| vec![escape(state), n.to_string()]).collect();
    Ok(format!("<h2>Outbox</h2>\n{}", table(&["State", "Messages"], &rows)))
}

/// Messages handed to the mail server in each of the last [`HOURS`] hours.
async fn sends_per_hour(db: &DatabaseConnection, first_hour: DateTime<Utc>) -> Result<Vec<u64>, DbErr> {
    let select = Query::select()
        .column("sent_at")
        .from("outbox")
        .and_where(Expr::col("sent_at").gte(first_hour))
        .and_where(Expr::col("state").is_in([OutboxState::Sent, OutboxState::Unknown]))
        .to_owned();
    let mut counts = vec![0; HOURS as usize];
    let mut rows = std::pin::pin!(db.stream(&select).await?);
    while let Some(row) = rows.try_next().await? {
        let sent_at: DateTime<Utc> = row.try_get_by_index(0)?;
        if let Some(count) = usize::try_from((sent_at - first_hour).num_hours()).ok().and_then(|h| counts.get_mut(h)) {
            *count += 1;
        }
    }
    Ok(counts)
}

async fn sends_chart(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<String, PageError> {
    let this_hour = now.duration_trunc(Duration::hours(1)).map_err(anyhow::Error::from)?;
    let first_hour = this_hour - Duration::hours(HOURS - 1);
    let counts = sends_per_hour(db, first_hour).await?;
    let label = |i: usize| (first_hour + Duration::hours(i as i64)).format("%a %H:00").to_string();
    let axes = Axes { title: "Messages sent per hour, last 7 days", x_desc: "Hour (UTC)", y_desc: "Messages" };
    let svg = charts::timeline(&axes, &counts, 7, &label)?;
    let total: u64 = counts.iter().sum();
    let caption = format!("{total} messages handed to the mail server in the last 7 days, by hour.");
    Ok(format!("<h2>Sending</h2>\n{}", Charts::Inline.figure("sends.svg", &svg, "Messages sent per hour", &caption)?))
}

/// Each campaign's recent rates, as the circuit breaker counts them.
async fn rates(db: &DatabaseConnection, sources: &Sources, now: DateTime<Utc>) -> Result<String, DbErr> {
    let limits = Limits::from_settings(&sources.settings.feedback);
    let since = now - limits.window;
    let mut rows = Vec::new();
    for campaign in sources.catalog.campaigns() {
        let counts = breaker::counts(db, &campaign.name, since).await?;
        if counts.sends == 0 {
            continue;
        }
        let rate = |n: u64, limit: f64| {
            let rate = n as f64 / counts.sends as f64;
            let text = format!("{n} ({})", small_percent(Some(rate)));
            if rate > limit && counts.sends >= limits.min_sample {
                format!("<span class=\"bad\">{text}</span>")
            } else {
                text
            }
        };
        rows.push(vec![
            escape(&campaign.name),
            counts.sends.to_string(),
            rate(counts.complaints, limits.max_complaint_rate),
            rate(counts.hard_bounces, limits.max_bounce_rate),
        ]);
    }
    let intro = format!(
        "<h2>Complaints and bounces</h2>\n<p>Each campaign's messages handed to the mail server in the last {} days, \
         and the spam complaints and hard bounces received about them since. A campaign is paused when a rate goes \
         over its limit (complaints {}, hard bounces {}) once it has sent {} messages.</p>\n",
        limits.window.num_days(),
        small_percent(Some(limits.max_complaint_rate)),
        small_percent(Some(limits.max_bounce_rate)),
        limits.min_sample
    );
    if rows.is_empty() {
        return Ok(intro + "<p>No campaign has sent in that time.</p>\n");
    }
    Ok(intro + &table(&["Campaign", "Sent", "Complaints", "Hard bounces"], &rows))
}

async fn pauses(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<String, DbErr> {
    let campaigns = crate::delivery::campaign_pause::current(db).await?;
    let senders = crate::delivery::pause::current(db, now).await?;
    let mut rows: Vec<Vec<String>> = campaigns
        .iter()
        .map(|p| {
            vec![
                format!("campaign {}", escape(&p.campaign)),
                when(Some(p.since)),
                format!(
                    "{} (<code>patron campaign resume {}</code> releases it)",
                    escape(&p.reason),
                    escape(&p.campaign)
                ),
            ]
        })
        .collect();
    rows.extend(senders.iter().map(|p| {
        vec![
            format!("sender {}", escape(&p.sender)),
            when(Some(p.since)),
            format!("{}; next try {}", escape(&p.reason), when(Some(p.retry_at))),
        ]
    }));
    if rows.is_empty() {
        return Ok("<h2>Pauses</h2>\n<p>No campaign and no sender is paused.</p>\n".into());
    }
    Ok(format!("<h2>Pauses</h2>\n{}", table(&["Paused", "Since", "Why"], &rows)))
}

fn file_errors(sources: &Sources) -> String {
    if sources.file_errors.is_empty() {
        return "<h2>Campaign files</h2>\n<p>Every file of the campaign folder loads.</p>\n".into();
    }
    let rows: Vec<Vec<String>> = sources
        .file_errors
        .iter()
        .map(|d| vec![format!("{}:{}:{}", escape(&d.file.display().to_string()), d.line, d.column), escape(&d.message)])
        .collect();
    format!(
        "<h2>Campaign files</h2>\n<p class=\"bad\">{} error(s) in the campaign folder; a broken file keeps its last \
         good version running.</p>\n{}",
        rows.len(),
        table(&["Where", "Error"], &rows)
    )
}
