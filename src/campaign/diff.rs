//! `campaign diff`: whom a campaign would reach now, with its file as it is,
//! against whom its last planned run reached, so that an edit's effect is
//! seen before the next run sends anything. Both sides count every chosen
//! customer, the control group included; the difference also holds what
//! changed in the data since that run.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

use super::plan::{self, Rules};
use super::spec::Campaign;

/// The audience now against the last planned run's.
#[derive(Debug, Clone, PartialEq)]
pub struct AudienceDiff {
    /// None when the campaign was never planned: everyone is added.
    pub last_run: Option<LastRun>,
    pub now: usize,
    pub kept: usize,
    pub added: Side,
    pub removed: Side,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LastRun {
    pub id: i64,
    pub scheduled_at: DateTime<Utc>,
    pub customers: usize,
}

/// Customers on one side of the difference: how many, and the external ids
/// of the first few (by database id).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Side {
    pub count: usize,
    pub sample: Vec<String>,
}

/// Evaluates the campaign at `at` (writing nothing) and compares.
pub async fn diff(
    db: &DatabaseConnection,
    campaign: &Campaign,
    rules: &Rules,
    at: DateTime<Utc>,
    sample: usize,
) -> Result<AudienceDiff, DbErr> {
    let now: HashSet<i64> =
        plan::evaluate(db, campaign, rules, at).await?.chosen.iter().map(|c| c.customer_id).collect();
    let last_run = last_planned_run(db, &campaign.name).await?;
    let before = match &last_run {
        Some((id, _)) => run_customers(db, *id).await?,
        None => HashSet::new(),
    };
    let added = first_ids(now.difference(&before), sample);
    let removed = first_ids(before.difference(&now), sample);
    let names = external_ids(db, added.iter().chain(&removed)).await?;
    let side = |count: usize, ids: &[i64]| Side {
        count,
        sample: ids.iter().filter_map(|id| names.get(id).cloned()).collect(),
    };
    Ok(AudienceDiff {
        last_run: last_run.map(|(id, scheduled_at)| LastRun { id, scheduled_at, customers: before.len() }),
        now: now.len(),
        kept: now.intersection(&before).count(),
        added: side(now.difference(&before).count(), &added),
        removed: side(before.difference(&now).count(), &removed),
    })
}

/// The `n` smallest ids.
fn first_ids<'a>(ids: impl Iterator<Item = &'a i64>, n: usize) -> Vec<i64> {
    let mut ids: Vec<i64> = ids.copied().collect();
    ids.sort_unstable();
    ids.truncate(n);
    ids
}

async fn last_planned_run(db: &DatabaseConnection, campaign: &str) -> Result<Option<(i64, DateTime<Utc>)>, DbErr> {
    let select = Query::select()
        .columns(["id", "scheduled_at"])
        .from("campaign_runs")
        .and_where(Expr::col("campaign").eq(campaign))
        .and_where(Expr::col("state").eq("planned"))
        .order_by("scheduled_at", Order::Desc)
        .limit(1)
        .to_owned();
    match db.query_one(&select).await? {
        Some(row) => Ok(Some((row.try_get_by_index(0)?, row.try_get_by_index(1)?))),
        None => Ok(None),
    }
}

async fn run_customers(db: &DatabaseConnection, run_id: i64) -> Result<HashSet<i64>, DbErr> {
    let select =
        Query::select().column("customer_id").from("outbox").and_where(Expr::col("run_id").eq(run_id)).to_owned();
    db.query_all(&select).await?.iter().map(|row| row.try_get_by_index(0)).collect()
}

async fn external_ids(db: &DatabaseConnection, ids: impl Iterator<Item = &i64>) -> Result<HashMap<i64, String>, DbErr> {
    let ids: Vec<i64> = ids.copied().collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let select = Query::select()
        .columns(["id", "external_id"])
        .from("customers")
        .and_where(Expr::col("id").is_in(ids))
        .to_owned();
    db.query_all(&select).await?.iter().map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?))).collect()
}
