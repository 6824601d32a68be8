//! Reports for marketers: what a campaign earned against its control group
//! (`campaign`), and where the value of the customer base lies (`customers`).
//! Both return plain values that the CLI prints as a table or JSON; `html`
//! turns them into a page with SVG charts drawn by `charts`. Reports name
//! customers by their external id only, never by address or name.

pub mod attribution;
pub mod campaign;
pub mod charts;
pub mod customers;
pub mod html;
pub mod outlook;
pub mod stats;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{DatabaseConnection, DbErr, StreamTrait};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "campaign `{0}` has no runs to report on (see `patron campaign list` for the campaigns and their last run)"
    )]
    UnknownCampaign(String),
    #[error("campaign `{campaign}` has no run {run} (leave out --run to see every run)")]
    UnknownRun { campaign: String, run: i64 },
    #[error(transparent)]
    Database(#[from] DbErr),
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
}

impl crate::failure::Failure for ReportError {
    /// The user asked for something that does not exist, or the database failed.
    fn fault(&self) -> crate::failure::Fault {
        crate::failure::Fault::input_if(matches!(
            self,
            ReportError::UnknownCampaign(_) | ReportError::UnknownRun { .. }
        ))
    }
}

/// The runs of `campaign` as (id, scheduled time), oldest first.
async fn runs_of(db: &DatabaseConnection, campaign: &str) -> Result<Vec<(i64, DateTime<Utc>)>, DbErr> {
    let select = Query::select()
        .columns([Alias::new("id"), Alias::new("scheduled_at")])
        .from(Alias::new("campaign_runs"))
        .and_where(Expr::col(Alias::new("campaign")).eq(campaign))
        .order_by(Alias::new("scheduled_at"), Order::Asc)
        .order_by(Alias::new("id"), Order::Asc)
        .to_owned();
    let mut rows = std::pin::pin!(db.stream(&select).await?);
    let mut runs = Vec::new();
    while let Some(row) = rows.try_next().await? {
        runs.push((row.try_get_by_index(0)?, row.try_get_by_index(1)?));
    }
    Ok(runs)
}

// One formatter per kind of figure, shared by the terminal table and the page
// so that the same number always reads the same way.

/// A rate as a percentage: `12.3%`; `n/a` when there is none.
pub fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "n/a".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

/// A small rate (bounces, complaints) with two decimals: `0.12%`; `n/a` when there is none.
pub fn small_percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "n/a".to_owned(), |r| format!("{:.2}%", r * 100.0))
}

/// A difference of rates in percentage points: `+3.0 pp`.
pub fn points(difference: f64) -> String {
    format!("{:+.1} pp", difference * 100.0)
}

/// An amount in currency units: `1234.56`; `n/a` when there is none.
pub fn money(amount: Option<f64>) -> String {
    amount.map_or_else(|| "n/a".to_owned(), |a| format!("{a:.2}"))
}

/// Cents as an amount in currency units.
pub fn cents(amount: i64) -> String {
    money(Some(amount as f64 / 100.0))
}

/// A p-value: three decimals, or `< 0.001`.
pub fn p_value(p: f64) -> String {
    if p < 0.001 { "< 0.001".to_owned() } else { format!("{p:.3}") }
}

/// A p-value in a sentence: `p = 0.012`, or `p < 0.001`.
pub fn p_phrase(p: f64) -> String {
    if p < 0.001 { "p < 0.001".to_owned() } else { format!("p = {p:.3}") }
}
