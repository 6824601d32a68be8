//! `patron status`: what the database holds, as text or one JSON object.

use std::collections::BTreeMap;

use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};
use serde::Serialize;

use crate::db::{self, entities};

/// Counts of what patron holds. Later parts add their own fields.
#[derive(Debug, Serialize)]
pub struct Status {
    pub database: &'static str,
    pub customers: u64,
    pub customers_with_consent: u64,
    pub orders: u64,
    pub interactions: u64,
    pub open_complaints: u64,
    pub loyalty_members: u64,
    pub models: u64,
    /// The model that scores customers, if any.
    pub active_model: Option<ActiveModel>,
    pub campaign_runs: u64,
    /// Outbox rows by state (planned, sent, failed, ...).
    pub outbox: BTreeMap<String, u64>,
    pub suppressions: u64,
    /// Feedback events by kind (hard_bounce, soft_bounce, complaint, unsubscribe, aside).
    pub feedback: BTreeMap<String, u64>,
    /// Campaigns paused by the circuit breaker, with the reason.
    pub campaigns_paused: Vec<crate::delivery::campaign_pause::CampaignPause>,
    /// Senders waiting for an SMTP server they cannot use.
    pub sending_paused: Vec<crate::delivery::pause::Pause>,
    /// The newest successful import or feed landing.
    pub data_loaded_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The configured feeds and their last runs.
    pub feeds: Vec<crate::feed::Listed>,
}

#[derive(Debug, Serialize)]
pub struct ActiveModel {
    pub name: String,
    pub algorithm: String,
    /// ROC AUC on its validation window.
    pub auc: Option<f64>,
}

pub async fn collect(db: &DatabaseConnection, feeds: &[crate::config::FeedSettings]) -> Result<Status, DbErr> {
    use entities::{campaign_run, customer, interaction, loyalty_account, model, order, suppression};
    let open_complaints = interaction::Entity::find()
        .filter(interaction::Column::Kind.eq("complaint"))
        .filter(interaction::Column::Status.eq("open"));
    Ok(Status {
        database: db::backend_name(db),
        customers: customer::Entity::find().count(db).await?,
        customers_with_consent: customer::Entity::find()
            .filter(customer::Column::MarketingConsent.eq(true))
            .count(db)
            .await?,
        orders: order::Entity::find().count(db).await?,
        interactions: interaction::Entity::find().count(db).await?,
        open_complaints: open_complaints.count(db).await?,
        loyalty_members: loyalty_account::Entity::find().count(db).await?,
        models: model::Entity::find().count(db).await?,
        active_model: crate::model::registry::active(db).await?.map(|m| ActiveModel {
            name: m.name,
            algorithm: m.algorithm,
            auc: m.validation_auc,
        }),
        campaign_runs: campaign_run::Entity::find().count(db).await?,
        outbox: outbox_by_state(db).await?,
        suppressions: suppression::Entity::find().count(db).await?,
        feedback: feedback_by_kind(db).await?,
        campaigns_paused: crate::delivery::campaign_pause::current(db).await?,
        sending_paused: crate::delivery::pause::current(db, chrono::Utc::now()).await?,
        data_loaded_at: crate::feed::state::newest_load(db).await?,
        feeds: crate::feed::list(db, feeds, chrono::Utc::now()).await?,
    })
}

/// Outbox rows by state (planned, sent, failed, ...).
pub async fn outbox_by_state(db: &DatabaseConnection) -> Result<BTreeMap<String, u64>, DbErr> {
    use entities::outbox;
    Ok(outbox::Entity::find()
        .select_only()
        .column(outbox::Column::State)
        .column_as(outbox::Column::Id.count(), "n")
        .group_by(outbox::Column::State)
        .into_tuple::<(String, i64)>()
        .all(db)
        .await?
        .into_iter()
        .map(|(state, n)| (state, n as u64))
        .collect())
}

async fn feedback_by_kind(db: &DatabaseConnection) -> Result<BTreeMap<String, u64>, DbErr> {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Expr, ExprTrait, Query};
    let select = Query::select()
        .column("kind")
        .expr(Expr::col("id").count())
        .from("feedback_events")
        .group_by_col("kind")
        .to_owned();
    let mut counts = BTreeMap::new();
    for row in db.query_all(&select).await? {
        let (kind, n): (String, i64) = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
        counts.insert(kind, n as u64);
    }
    Ok(counts)
}

impl Status {
    /// The status for a terminal, one line per table.
    pub fn to_text(&self) -> String {
        let outbox = if self.outbox.is_empty() {
            "empty".to_owned()
        } else {
            self.outbox.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ")
        };
        format!(
            "database:        {}\n\
             customers:       {} ({} with marketing consent)\n\
             orders:          {}\n\
             interactions:    {} ({} open complaints)\n\
             loyalty members: {}\n\
             models:          {}{}\n\
             campaign runs:   {}\n\
             outbox:          {}\n\
             suppressions:    {}\n\
             feedback:        {}\n{}",
            self.database,
            self.customers,
            self.customers_with_consent,
            self.orders,
            self.interactions,
            self.open_complaints,
            self.loyalty_members,
            self.models,
            self.active_model.as_ref().map_or(String::new(), |m| {
                let auc = m.auc.map_or("-".to_owned(), |a| format!("{a:.3}"));
                format!(" (active: {}, validation AUC {auc})", m.name)
            }),
            self.campaign_runs,
            outbox,
            self.suppressions,
            if self.feedback.is_empty() {
                "none".to_owned()
            } else {
                self.feedback.iter().map(|(kind, n)| format!("{n} {kind}")).collect::<Vec<_>>().join(", ")
            },
            self.pauses_text(),
        )
    }

    /// One line per paused campaign and per paused sender.
    fn pauses_text(&self) -> String {
        let campaigns = self.campaigns_paused.iter().map(|p| {
            format!(
                "campaign paused: {} since {}: {} (`patron campaign resume {}` releases it)\n",
                p.campaign,
                p.since.format("%Y-%m-%d %H:%M:%S UTC"),
                p.reason,
                p.campaign
            )
        });
        let senders = self.sending_paused.iter().map(|p| {
            format!(
                "sending paused:  {} since {}, next try {}: {}\n",
                p.sender,
                p.since.format("%Y-%m-%d %H:%M:%S UTC"),
                p.retry_at.format("%H:%M:%S"),
                p.reason
            )
        });
        campaigns.chain(senders).chain(self.feeds_text()).collect()
    }

    /// The newest load, and a line per feed: its last run and any error.
    fn feeds_text(&self) -> Vec<String> {
        let at = |time: Option<chrono::DateTime<chrono::Utc>>| {
            time.map_or("never".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        };
        let mut lines = vec![format!("data loaded:     {}\n", at(self.data_loaded_at))];
        for feed in &self.feeds {
            let recorded = &feed.recorded;
            let outcome = match &recorded.last_error {
                Some(error) => format!("failed: {error}"),
                None if recorded.last_run_at.is_some() => format!("{} rows", recorded.last_rows),
                None => "never run".to_owned(),
            };
            lines.push(format!(
                "feed {}:  last success {}; last run {}: {outcome}\n",
                feed.name,
                at(recorded.last_success_at),
                at(recorded.last_run_at)
            ));
        }
        lines
    }
}
