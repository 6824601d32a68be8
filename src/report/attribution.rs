//! Which orders a campaign earned: a conversion is an order in the window
//! (start, start + window] after a customer's start, where the start is the
//! time the message was sent, or the run's scheduled time for the control
//! group and for messages never sent (intent to treat).
//!
//! Two queries per report, whatever the audience size: the campaign's outbox
//! rows with their run's time, then the orders of those customers in the span
//! the windows cover. The matching is done here, in memory, so that the window
//! arithmetic is the same on SQLite and PostgreSQL.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use futures_util::TryStreamExt;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order as SortOrder, Query, SelectStatement};
use sea_orm::{DatabaseConnection, DbErr, StreamTrait};

use crate::db::entities::outbox::State as OutboxState;

/// One outbox row of the campaign: a customer in one run, and when their window starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure {
    pub run_id: i64,
    pub customer_id: i64,
    /// The outbox state: planned, sending, sent, retrying, failed, suppressed or control.
    pub state: String,
    pub variant: Option<String>,
    /// The variant is an A/B test's winner, not drawn by the shares.
    pub by_winner: bool,
    pub start: DateTime<Utc>,
}

impl Exposure {
    pub fn is_control(&self) -> bool {
        self.state == OutboxState::Control.as_str()
    }
}

/// What one exposure earned in its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    pub converted: bool,
    pub revenue_cents: i64,
}

/// An order: customer, time and amount.
pub type OrderRow = (i64, DateTime<Utc>, i64);

/// The outcome of each exposure, in the same order. An order counts when
/// `start < ordered_at <= start + window`: an order at the moment of sending
/// was not caused by the message, and one exactly at the window's end still is.
pub fn attribute(exposures: &[Exposure], orders: &[OrderRow], window: Duration) -> Vec<Outcome> {
    let mut by_customer: HashMap<i64, Vec<(DateTime<Utc>, i64)>> = HashMap::new();
    for &(customer, at, cents) in orders {
        by_customer.entry(customer).or_default().push((at, cents));
    }
    exposures
        .iter()
        .map(|e| {
            let end = e.start + window;
            let mut outcome = Outcome::default();
            for &(at, cents) in by_customer.get(&e.customer_id).map_or(&[][..], Vec::as_slice) {
                if at > e.start && at <= end {
                    outcome.converted = true;
                    outcome.revenue_cents += cents;
                }
            }
            outcome
        })
        .collect()
}

/// The outbox rows of `campaign` (only run `run` when given), in run and customer order.
pub async fn load_exposures(db: &DatabaseConnection, campaign: &str, run: Option<i64>) -> Result<Vec<Exposure>, DbErr> {
    let select = exposures_query(campaign, run);
    let mut rows = std::pin::pin!(db.stream(&select).await?);
    let mut exposures = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let state: String = row.try_get_by_index(2)?;
        let sent_at: Option<DateTime<Utc>> = row.try_get_by_index(4)?;
        let scheduled_at: DateTime<Utc> = row.try_get_by_index(5)?;
        let start = if state == OutboxState::Control.as_str() { scheduled_at } else { sent_at.unwrap_or(scheduled_at) };
        exposures.push(Exposure {
            run_id: row.try_get_by_index(0)?,
            customer_id: row.try_get_by_index(1)?,
            state,
            variant: row.try_get_by_index(3)?,
            by_winner: row.try_get_by_index(6)?,
            start,
        });
    }
    Ok(exposures)
}

fn exposures_query(campaign: &str, run: Option<i64>) -> SelectStatement {
    let outbox = Alias::new("outbox");
    outbox_of(campaign, run)
        .column((outbox.clone(), Alias::new("run_id")))
        .column((outbox.clone(), Alias::new("customer_id")))
        .column((outbox.clone(), Alias::new("state")))
        .column((outbox.clone(), Alias::new("variant")))
        .column((outbox.clone(), Alias::new("sent_at")))
        .column((Alias::new("campaign_runs"), Alias::new("scheduled_at")))
        .column((outbox.clone(), Alias::new("by_winner")))
        .order_by((outbox.clone(), Alias::new("run_id")), SortOrder::Asc)
        .order_by((outbox, Alias::new("customer_id")), SortOrder::Asc)
        .to_owned()
}

/// `SELECT ... FROM outbox JOIN campaign_runs` for the rows of `campaign` (of run `run` when given).
fn outbox_of(campaign: &str, run: Option<i64>) -> SelectStatement {
    let outbox = Alias::new("outbox");
    let mut select = Query::select()
        .from(outbox.clone())
        .inner_join(Alias::new("campaign_runs"), run_col("id").equals((outbox, Alias::new("run_id"))))
        .and_where(run_col("campaign").eq(campaign))
        .to_owned();
    if let Some(run) = run {
        select.and_where(run_col("id").eq(run));
    }
    select
}

/// The orders of the exposed customers (of `campaign`, run `run` when given) that may fall in some exposure's window:
/// one query over the span from the earliest start to the latest window end.
pub async fn load_orders(
    db: &DatabaseConnection,
    campaign: &str,
    run: Option<i64>,
    exposures: &[Exposure],
    window: Duration,
) -> Result<Vec<OrderRow>, DbErr> {
    let (Some(first), Some(last)) = (exposures.iter().map(|e| e.start).min(), exposures.iter().map(|e| e.start).max())
    else {
        return Ok(Vec::new());
    };
    let customers = outbox_of(campaign, run).column((Alias::new("outbox"), Alias::new("customer_id"))).to_owned();
    let select = Query::select()
        .columns([Alias::new("customer_id"), Alias::new("ordered_at"), Alias::new("amount_cents")])
        .from(Alias::new("orders"))
        .and_where(Expr::col(Alias::new("customer_id")).in_subquery(customers))
        .and_where(Expr::col(Alias::new("ordered_at")).gt(first))
        .and_where(Expr::col(Alias::new("ordered_at")).lte(last + window))
        .to_owned();
    let mut rows = std::pin::pin!(db.stream(&select).await?);
    let mut orders = Vec::new();
    while let Some(row) = rows.try_next().await? {
        orders.push((row.try_get_by_index(0)?, row.try_get_by_index(1)?, row.try_get_by_index(2)?));
    }
    Ok(orders)
}

fn run_col(column: &'static str) -> Expr {
    Expr::col((Alias::new("campaign_runs"), Alias::new(column)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn exposure(customer_id: i64, state: &str, start: &str) -> Exposure {
        Exposure { run_id: 1, customer_id, state: state.into(), variant: None, by_winner: false, start: at(start) }
    }

    #[test]
    fn the_window_is_open_at_the_start_and_closed_at_the_end() {
        let start = "2026-03-01T10:00:00Z";
        let exposures: Vec<Exposure> = (1..=5).map(|c| exposure(c, "sent", start)).collect();
        let orders = [
            (1, at("2026-03-01T10:00:00Z"), 100), // exactly at the start: not caused
            (2, at("2026-03-01T10:00:01Z"), 200), // a second later: counts
            (3, at("2026-03-31T10:00:00Z"), 300), // exactly at start + 30d: counts
            (4, at("2026-03-31T10:00:01Z"), 400), // a second after the end: does not
            (5, at("2026-02-28T10:00:00Z"), 500), // before: does not
            (5, at("2026-03-10T00:00:00Z"), 50),  // two in the window add up
            (5, at("2026-03-20T00:00:00Z"), 70),
            (6, at("2026-03-10T00:00:00Z"), 9999), // a customer not in the run
        ];
        let outcomes = attribute(&exposures, &orders, Duration::days(30));
        let got: Vec<(bool, i64)> = outcomes.iter().map(|o| (o.converted, o.revenue_cents)).collect();
        assert_eq!(got, [(false, 0), (true, 200), (true, 300), (false, 0), (true, 120)]);
    }

    #[test]
    fn each_run_of_a_customer_has_its_own_window() {
        let exposures = [exposure(1, "control", "2026-01-01T00:00:00Z"), exposure(1, "sent", "2026-02-01T00:00:00Z")];
        let orders = [(1, at("2026-01-15T00:00:00Z"), 10)];
        let outcomes = attribute(&exposures, &orders, Duration::days(7));
        assert_eq!(outcomes, [Outcome::default(), Outcome::default()]);
        let outcomes = attribute(&exposures, &orders, Duration::days(31));
        assert_eq!(outcomes, [Outcome { converted: true, revenue_cents: 10 }, Outcome::default()]);
    }
}
