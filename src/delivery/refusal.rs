//! The last check before a message goes: may this customer still get it? An
//! unsubscribe, a complaint, a withdrawn consent or a paused campaign that
//! arrived after the claim is honoured here.
//!
//! The sender's recorder asks for several messages at once, beside the
//! commit of the results it records (see `sender`), so the check costs no
//! round trip of its own per message.

use std::collections::HashMap;

use sea_orm::sea_query::{Alias, Cond, Expr, ExprTrait, Func, Query, SelectStatement, UnionType};
use sea_orm::{ConnectionTrait, DbBackend, DbErr};

use super::campaign_pause;
use crate::db::engine::Direct;
use crate::db::record::record;

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

/// Checks per statement on SQLite, which allows 500 terms in a compound select.
const CHECKS_PER_STATEMENT: usize = 100;

/// The refusal of each checked message, by outbox id, each message looked
/// up by primary key and unique address.
pub async fn refusals<C: ConnectionTrait>(db: &C, checks: &[Check]) -> Result<HashMap<i64, Refusal>, DbErr> {
    let mut found = Vec::new();
    for statement in statements(db.get_database_backend(), checks) {
        for row in db.query_all(&statement).await? {
            found.push(Found {
                outbox_id: row.try_get("", "outbox_id")?,
                marketing_consent: row.try_get("", "marketing_consent")?,
                suppressed: row.try_get("", "suppressed")?,
                paused: row.try_get("", "paused")?,
                left_topic: row.try_get("", "left_topic")?,
            });
        }
    }
    Ok(judge(checks, found))
}

/// [`refusals`] on a SQLite connection this thread drives (the recorder's).
pub fn refusals_on_sqlite(direct: &Direct<'_>, checks: &[Check]) -> Result<HashMap<i64, Refusal>, DbErr> {
    let mut found = Vec::new();
    for statement in statements(DbBackend::Sqlite, checks) {
        found.extend(direct.query::<Found>(&statement)?);
    }
    Ok(judge(checks, found))
}

record! {
    /// A checked message's customer as the check found them.
    struct Found {
        outbox_id: i64,
        marketing_consent: bool,
        suppressed: i64,
        paused: i64,
        left_topic: i64,
    }
}

/// Each check's refusal from what was found; a customer not found is gone.
fn judge(checks: &[Check], found: Vec<Found>) -> HashMap<i64, Refusal> {
    let mut refusals: HashMap<i64, Refusal> =
        checks.iter().map(|check| (check.outbox_id, Refusal::Never("the customer no longer exists"))).collect();
    let marketing: HashMap<i64, bool> = checks.iter().map(|check| (check.outbox_id, check.marketing)).collect();
    for found in found {
        let refusal = if found.left_topic > 0 {
            Refusal::Never("the customer left the campaign's topic")
        } else if found.suppressed > 0 {
            Refusal::Never("the address is suppressed")
        } else if marketing.get(&found.outbox_id).copied().unwrap_or(true) && !found.marketing_consent {
            Refusal::Never("no marketing consent")
        } else if found.paused > 0 {
            Refusal::NotNow
        } else {
            Refusal::None
        };
        refusals.insert(found.outbox_id, refusal);
    }
    refusals
}

/// On PostgreSQL one statement of constant text whatever the number of
/// checks, prepared once per connection and whose plan the server can keep:
/// the checks come as one JSON parameter. A `UNION ALL` of one select per check was planned
/// anew for each group commit, and its planning cost more than its run.
/// On SQLite, whose statements cost little to prepare, that union.
fn statements(backend: DbBackend, checks: &[Check]) -> Vec<SelectStatement> {
    if backend == DbBackend::Postgres {
        return vec![from_json(checks)];
    }
    checks
        .chunks(CHECKS_PER_STATEMENT)
        .filter_map(|chunk| {
            let mut selects = chunk.iter().map(|check| {
                let given = Given {
                    outbox_id: Expr::val(check.outbox_id),
                    customer_id: Expr::val(check.customer_id),
                    run_id: Expr::val(check.run_id),
                    email: Expr::val(check.email.to_lowercase()),
                    topic: Expr::val(check.topic.as_str()),
                };
                let mut select = select(given);
                select.from("customers").and_where(Expr::col("id").eq(check.customer_id));
                select
            });
            let mut union = selects.next()?;
            for select in selects {
                union.union(UnionType::All, select);
            }
            Some(union)
        })
        .collect()
}

/// Every check in one select: the checks are the rows of `c`, read from a
/// JSON array bound as one value.
fn from_json(checks: &[Check]) -> SelectStatement {
    let rows: Vec<serde_json::Value> = checks
        .iter()
        .map(|check| {
            serde_json::json!({
                "outbox_id": check.outbox_id,
                "customer_id": check.customer_id,
                "run_id": check.run_id,
                "email": check.email.to_lowercase(),
                "topic": check.topic,
            })
        })
        .collect();
    let field = |name: &str, kind: &str| Expr::cust(format!("CAST(\"e\".\"value\" ->> '{name}' AS {kind})"));
    let given_rows = Query::select()
        .expr_as(field("outbox_id", "bigint"), Alias::new("outbox_id"))
        .expr_as(field("customer_id", "bigint"), Alias::new("customer_id"))
        .expr_as(field("run_id", "bigint"), Alias::new("run_id"))
        .expr_as(field("email", "text"), Alias::new("email"))
        .expr_as(field("topic", "text"), Alias::new("topic"))
        .from_function(
            Func::cust("json_array_elements")
                .arg(Expr::val(serde_json::Value::Array(rows).to_string()).cast_as("json")),
            Alias::new("e"),
        )
        .to_owned();
    let c = |column: &str| Expr::col((Alias::new("c"), Alias::new(column)));
    let given = Given {
        outbox_id: c("outbox_id"),
        customer_id: c("customer_id"),
        run_id: c("run_id"),
        email: c("email"),
        topic: c("topic"),
    };
    let mut select = select(given);
    select
        .from_subquery(given_rows, Alias::new("c"))
        .inner_join("customers", Expr::col(("customers", "id")).equals((Alias::new("c"), Alias::new("customer_id"))));
    select
}

/// What a check is about, as values or as the columns of a row of checks.
struct Given {
    outbox_id: Expr,
    customer_id: Expr,
    run_id: Expr,
    /// In lower case, as suppressions keep addresses.
    email: Expr,
    topic: Expr,
}

/// The customer's consent and the counts that refuse the message; no row
/// when the customer is gone or erased. The caller adds the customers to
/// the `FROM`.
fn select(given: Given) -> SelectStatement {
    let left_topic = Query::select()
        .expr(Expr::col(("topic_opt_outs", "customer_id")).count())
        .from("topic_opt_outs")
        .and_where(Expr::col(("topic_opt_outs", "customer_id")).eq(given.customer_id.clone()))
        .and_where(Expr::col(("topic_opt_outs", "topic")).eq(given.topic))
        .to_owned();
    let suppressions = Query::select()
        .expr(Expr::col(("suppressions", "id")).count())
        .from("suppressions")
        .cond_where(suppression_of(given.customer_id, given.email))
        .to_owned();
    let paused = Query::select()
        .expr(Expr::col("id").count())
        .from_subquery(campaign_pause::paused_runs(), Alias::new("paused"))
        .and_where(Expr::col(("paused", "id")).eq(given.run_id))
        .to_owned();
    Query::select()
        .expr_as(given.outbox_id, Alias::new("outbox_id"))
        .column(("customers", "marketing_consent"))
        .expr_as(Expr::SubQuery(None, Box::new(suppressions.into())), Alias::new("suppressed"))
        .expr_as(Expr::SubQuery(None, Box::new(paused.into())), Alias::new("paused"))
        .expr_as(Expr::SubQuery(None, Box::new(left_topic.into())), Alias::new("left_topic"))
        .and_where(Expr::col(("customers", "erased_at")).is_null())
        .to_owned()
}

/// A suppression of this customer: of their address, or of the person
/// (an unsubscribe or complaint under an address they no longer have; a
/// bounce belongs to the address only).
fn suppression_of(customer_id: Expr, email: Expr) -> Cond {
    Cond::any().add(Expr::col(("suppressions", "email")).eq(email)).add(
        Expr::col(("suppressions", "customer_id"))
            .eq(customer_id)
            .and(Expr::col(("suppressions", "reason")).ne("bounced")),
    )
}
