//! Retention: after `privacy.message_retention`, a sent message's row keeps
//! only what reports count (state, times, campaign), not the server's reply
//! or last error (which can quote the address); after
//! `privacy.feedback_retention`, a bounce or complaint keeps its kind and
//! campaign, not its address or diagnostic. The daemon applies it nightly.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DbErr};

use crate::config::PrivacySettings;
use crate::delivery::outbox::PENDING_STATES;

/// How many rows lost their details.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Retained {
    pub messages: u64,
    pub feedback_events: u64,
}

/// Clears the details older than the retention periods, as of `now`.
pub async fn apply<C: ConnectionTrait>(
    db: &C,
    privacy: &PrivacySettings,
    now: DateTime<Utc>,
) -> Result<Retained, DbErr> {
    let mut retained = Retained::default();
    if let Some(period) = privacy.message_retention() {
        let clear = Query::update()
            .table("outbox")
            .value("server_reply", Option::<String>::None)
            .value("last_error", Option::<String>::None)
            .and_where(Expr::col("updated_at").lt(now - period))
            .and_where(Expr::col("state").is_not_in(PENDING_STATES))
            .and_where(Expr::col("server_reply").is_not_null().or(Expr::col("last_error").is_not_null()))
            .to_owned();
        retained.messages = db.execute(&clear).await?.rows_affected();
    }
    if let Some(period) = privacy.feedback_retention() {
        let clear = Query::update()
            .table("feedback_events")
            .value("email", Option::<String>::None)
            .value("diagnostic", Option::<String>::None)
            .and_where(Expr::col("received_at").lt(now - period))
            .and_where(Expr::col("email").is_not_null().or(Expr::col("diagnostic").is_not_null()))
            .to_owned();
        retained.feedback_events = db.execute(&clear).await?.rows_affected();
    }
    Ok(retained)
}
