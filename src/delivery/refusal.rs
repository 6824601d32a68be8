//! The last check before a message goes: may this customer still get it? An
//! unsubscribe, a complaint, a withdrawn consent or a paused campaign that
//! arrived after the claim is honoured here.
//!
//! The sender's recorder asks for several messages at once, beside the
//! commit of the results it records (see `sender`), so the check costs no
//! round trip of its own per message.

use std::collections::HashMap;

use sea_orm::sea_query::{Alias, Cond, Expr, ExprTrait, Query, SelectStatement, UnionType};
use sea_orm::{ConnectionTrait, DbErr};

use super::campaign_pause;

/// One message about to go: whom to, for which run, and of what kind.
#[derive(Debug, Clone)]
pub struct Check {
    pub outbox_id: i64,
    pub run_id: i64,
    pub customer_id: i64,
    /// The address the message is written to.
    pub email: String,
    pub marketing: bool,
    pub topic: String,
}

/// Whether a message may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    None,
    /// Never: the row is settled as suppressed, with the reason.
    Never(&'static str),
    /// Not now: its campaign is paused; the row goes back to wait.
    NotNow,
}

/// Checks per statement: SQLite allows 500 terms in a compound select.
const CHECKS_PER_STATEMENT: usize = 100;

/// The refusal of each checked message, by outbox id: one statement per
/// hundred messages, each message looked up by primary key and unique address.
pub async fn refusals<C: ConnectionTrait>(db: &C, checks: &[Check]) -> Result<HashMap<i64, Refusal>, DbErr> {
    let mut refusals: HashMap<i64, Refusal> =
        checks.iter().map(|check| (check.outbox_id, Refusal::Never("the customer no longer exists"))).collect();
    let marketing: HashMap<i64, bool> = checks.iter().map(|check| (check.outbox_id, check.marketing)).collect();
    for chunk in checks.chunks(CHECKS_PER_STATEMENT) {
        let mut selects = chunk.iter().map(select);
        let Some(mut union) = selects.next() else { continue };
        for select in selects {
            union.union(UnionType::All, select);
        }
        for found in db.query_all(&union).await? {
            let outbox_id: i64 = found.try_get("", "outbox_id")?;
            let refusal = if found.try_get::<i64>("", "left_topic")? > 0 {
                Refusal::Never("the customer left the campaign's topic")
            } else if found.try_get::<i64>("", "suppressed")? > 0 {
                Refusal::Never("the address is suppressed")
            } else if marketing.get(&outbox_id).copied().unwrap_or(true)
                && !found.try_get::<bool>("", "marketing_consent")?
            {
                Refusal::Never("no marketing consent")
            } else if found.try_get::<i64>("", "paused")? > 0 {
                Refusal::NotNow
            } else {
                Refusal::None
            };
            refusals.insert(outbox_id, refusal);
        }
    }
    Ok(refusals)
}

/// The customer's consent and the counts that refuse the message; no row
/// when the customer is gone or erased.
fn select(check: &Check) -> SelectStatement {
    let left_topic = Query::select()
        .expr(Expr::col("customer_id").count())
        .from("topic_opt_outs")
        .and_where(Expr::col("customer_id").eq(check.customer_id))
        .and_where(Expr::col("topic").eq(check.topic.as_str()))
        .to_owned();
    let suppressions = Query::select()
        .expr(Expr::col("id").count())
        .from("suppressions")
        .cond_where(suppression_of(check.customer_id, &check.email))
        .to_owned();
    let paused = Query::select()
        .expr(Expr::col("id").count())
        .from_subquery(campaign_pause::paused_runs(), Alias::new("paused"))
        .and_where(Expr::col("id").eq(check.run_id))
        .to_owned();
    Query::select()
        .expr_as(Expr::val(check.outbox_id), Alias::new("outbox_id"))
        .column("marketing_consent")
        .expr_as(Expr::SubQuery(None, Box::new(suppressions.into())), Alias::new("suppressed"))
        .expr_as(Expr::SubQuery(None, Box::new(paused.into())), Alias::new("paused"))
        .expr_as(Expr::SubQuery(None, Box::new(left_topic.into())), Alias::new("left_topic"))
        .from("customers")
        .and_where(Expr::col("id").eq(check.customer_id))
        .and_where(Expr::col("erased_at").is_null())
        .to_owned()
}

/// A suppression of this customer: of their address, or of the person
/// (an unsubscribe or complaint under an address they no longer have; a
/// bounce belongs to the address only).
fn suppression_of(customer_id: i64, email: &str) -> Cond {
    Cond::any()
        .add(Expr::col("email").eq(email.to_lowercase()))
        .add(Expr::col("customer_id").eq(customer_id).and(Expr::col("reason").ne("bounced")))
}
