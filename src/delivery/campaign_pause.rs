//! Campaigns whose sending is paused (by the feedback loop's circuit
//! breaker): their messages wait in the outbox, unclaimed, until
//! `patron campaign resume` releases them.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DbErr};
use serde::Serialize;

const TABLE: &str = "campaign_pauses";

/// A paused campaign, for `status` and `/metrics`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CampaignPause {
    pub campaign: String,
    pub reason: String,
    pub since: DateTime<Utc>,
}

/// Pauses `campaign`; false when it was already paused (the first reason stays).
pub async fn pause<C: ConnectionTrait>(db: &C, campaign: &str, reason: &str) -> Result<bool, DbErr> {
    let insert = Query::insert()
        .into_table(TABLE)
        .columns(["campaign", "reason", "since"])
        .values_panic([campaign.into(), reason.into(), Utc::now().into()])
        .on_conflict(OnConflict::column("campaign").do_nothing().to_owned())
        .to_owned();
    Ok(db.execute(&insert).await?.rows_affected() == 1)
}

/// Whether `campaign` is paused.
pub async fn is_paused<C: ConnectionTrait>(db: &C, campaign: &str) -> Result<bool, DbErr> {
    let select =
        Query::select().column("campaign").from(TABLE).and_where(Expr::col("campaign").eq(campaign)).to_owned();
    Ok(db.query_one(&select).await?.is_some())
}

/// Releases `campaign`; false when it was not paused.
pub async fn resume<C: ConnectionTrait>(db: &C, campaign: &str) -> Result<bool, DbErr> {
    let delete = Query::delete().from_table(TABLE).and_where(Expr::col("campaign").eq(campaign)).to_owned();
    Ok(db.execute(&delete).await?.rows_affected() > 0)
}

pub async fn current<C: ConnectionTrait>(db: &C) -> Result<Vec<CampaignPause>, DbErr> {
    let select = Query::select()
        .columns(["campaign", "reason", "since"])
        .from(TABLE)
        .order_by("campaign", sea_orm::Order::Asc)
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| {
            Ok(CampaignPause {
                campaign: row.try_get("", "campaign")?,
                reason: row.try_get("", "reason")?,
                since: row.try_get("", "since")?,
            })
        })
        .collect()
}

/// The ids of the runs of paused campaigns, as a subquery for the claim.
pub fn paused_runs() -> SelectStatement {
    Query::select()
        .column(("r", "id"))
        .from_as("campaign_runs", Alias::new("r"))
        .inner_join(TABLE, Expr::col((TABLE, "campaign")).equals(("r", "campaign")))
        .to_owned()
}
