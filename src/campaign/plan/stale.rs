//! Fires held back by the staleness guard (`campaign::freshness`): recorded
//! once, in state `stale` with the reason, and planned in place, as the same
//! run, once the data is fresh. The scheduler retries such a fire while it
//! is within the grace period (`scheduler::last_settled_fire`); after that,
//! or once a later fire has run, the row stays as the record of a fire
//! skipped for stale data.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

use super::{Outcome, run_insert};
use crate::campaign::freshness::{Staleness, time_text};
use crate::campaign::spec::Campaign;
use crate::db::engine::Txn;

/// The state of a run held back for stale data.
pub const STATE: &str = "stale";

/// Records the fire as held back, unless it is recorded already: a held
/// fire is not written again at each retry, and a planned one stays planned.
pub(super) async fn hold(
    db: &DatabaseConnection,
    campaign: &Campaign,
    at: DateTime<Utc>,
    staleness: Staleness,
) -> Result<Outcome, DbErr> {
    if let Some(recorded) = recorded(db, campaign, at).await? {
        return Ok(recorded_before(recorded, staleness));
    }
    let insert = run_insert(campaign, at, STATE, Some(&staleness.to_string()));
    let inserted = db.execute(&insert).await?.rows_affected() > 0;
    let recorded = recorded(db, campaign, at).await?.ok_or_else(|| DbErr::RecordNotFound("campaign run".into()))?;
    Ok(match recorded {
        (run_id, _) if inserted => Outcome::Stale { run_id, staleness, recorded_now: true },
        // Another planner recorded the fire meanwhile.
        recorded => recorded_before(recorded, staleness),
    })
}

fn recorded_before((run_id, state): (i64, String), staleness: Staleness) -> Outcome {
    if state == STATE {
        Outcome::Stale { run_id, staleness, recorded_now: false }
    } else {
        Outcome::AlreadyPlanned { run_id }
    }
}

/// The id and state of the run of `campaign` fired at `at`, if recorded.
async fn recorded(
    db: &DatabaseConnection,
    campaign: &Campaign,
    at: DateTime<Utc>,
) -> Result<Option<(i64, String)>, DbErr> {
    let select = of_fire(campaign, at).columns(["id", "state"]).to_owned();
    match db.query_one(&select).await? {
        Some(row) => Ok(Some((row.try_get("", "id")?, row.try_get("", "state")?))),
        None => Ok(None),
    }
}

/// Turns the fire held back for stale data into a run being planned, its
/// detail saying how long it waited and why. False when there is none (or
/// another planner took it first: the update matches only a `stale` row).
pub(super) async fn take_over(txn: &mut Txn, campaign: &Campaign, at: DateTime<Utc>) -> Result<bool, DbErr> {
    let select = of_fire(campaign, at).column("detail").and_where(Expr::col("state").eq(STATE)).to_owned();
    let Some(reason) = txn.values::<Option<String>>(&select).await?.into_iter().next() else {
        return Ok(false);
    };
    let detail = format!("held back until {}: {}", time_text(Utc::now()), reason.unwrap_or_default());
    let update = Query::update()
        .table("campaign_runs")
        .value("state", "planned")
        .value("detail", detail)
        .and_where(Expr::col("campaign").eq(campaign.name.clone()))
        .and_where(Expr::col("scheduled_at").eq(at))
        .and_where(Expr::col("state").eq(STATE))
        .to_owned();
    Ok(txn.execute(&update).await? > 0)
}

/// `SELECT ... FROM campaign_runs` of one fire, no columns yet.
fn of_fire(campaign: &Campaign, at: DateTime<Utc>) -> SelectStatement {
    Query::select()
        .from("campaign_runs")
        .and_where(Expr::col("campaign").eq(campaign.name.clone()))
        .and_where(Expr::col("scheduled_at").eq(at))
        .to_owned()
}
