//! The last check before a message goes: may this customer still get it? An
//! unsubscribe, a complaint, a withdrawn consent or a paused campaign that
//! arrived after the claim is honoured here.
//!
//! The sender's recorder asks for several messages at once, beside the
//! commit of the results it records (see `sender`), so the check costs no
//! round trip of its own per message.

use std::collections::HashMap;

use sea_orm::sea_query::{Alias, Cond, Expr, ExprTrait, Func, Query, SelectStatement, Value};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

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

/// The refusal of each checked message, by outbox id, each message looked
/// up by primary key and unique address, all in one statement of constant
/// text: the checks come as one JSON parameter ([`from_json`]), so that
/// PostgreSQL prepares the statement once per connection and keeps its
/// plan.
pub async fn refusals<C: ConnectionTrait>(db: &C, checks: &[Check]) -> Result<HashMap<i64, Refusal>, DbErr> {
    if checks.is_empty() {
        return Ok(HashMap::new());
    }
    let statement = from_json(db.get_database_backend(), checks_json(checks));
    let mut found = Vec::new();
    for row in db.query_all(&statement).await? {
        found.push(Found {
            outbox_id: row.try_get("", "outbox_id")?,
            marketing_consent: row.try_get("", "marketing_consent")?,
            suppressed: row.try_get("", "suppressed")?,
            paused: row.try_get("", "paused")?,
            left_topic: row.try_get("", "left_topic")?,
        });
    }
    Ok(judge(checks, found))
}

/// [`refusals`] on a SQLite connection that one thread drives, batch after
/// batch (the sender's recorder): the statement is built once, and each
/// batch binds its JSON.
pub struct SqliteChecks {
    statement: Statement,
    /// Where the JSON goes among the statement's values.
    json_at: usize,
}

impl Default for SqliteChecks {
    fn default() -> SqliteChecks {
        const SLOT: &str = "[]";
        let statement = DbBackend::Sqlite.build(&from_json(DbBackend::Sqlite, SLOT.to_owned()));
        let values = statement.values.as_ref().map_or(&[][..], |values| &values.0[..]);
        let json_at = values
            .iter()
            .position(|value| *value == Value::String(Some(SLOT.to_owned())))
            .expect("the statement binds the JSON of the checks");
        SqliteChecks { statement, json_at }
    }
}

impl SqliteChecks {
    pub fn refusals(&self, direct: &Direct<'_>, checks: &[Check]) -> Result<HashMap<i64, Refusal>, DbErr> {
        if checks.is_empty() {
            return Ok(HashMap::new());
        }
        let mut statement = self.statement.clone();
        if let Some(values) = statement.values.as_mut() {
            values.0[self.json_at] = Value::String(Some(checks_json(checks)));
        }
        Ok(judge(checks, direct.query_statement::<Found>(&statement)?))
    }
}

record! {
    /// A checked message's customer as the check found them.
    struct Found {
        outbox_id: i64,
        marketing_consent: bool,
        suppressed: bool,
        paused: bool,
        left_topic: bool,
    }
}

/// Each check's refusal from what was found; a customer not found is gone.
fn judge(checks: &[Check], found: Vec<Found>) -> HashMap<i64, Refusal> {
    let mut refusals: HashMap<i64, Refusal> =
        checks.iter().map(|check| (check.outbox_id, Refusal::Never("the customer no longer exists"))).collect();
    let marketing: HashMap<i64, bool> = checks.iter().map(|check| (check.outbox_id, check.marketing)).collect();
    for found in found {
        let refusal = if found.left_topic {
            Refusal::Never("the customer left the campaign's topic")
        } else if found.suppressed {
            Refusal::Never("the address is suppressed")
        } else if marketing.get(&found.outbox_id).copied().unwrap_or(true) && !found.marketing_consent {
            Refusal::Never("no marketing consent")
        } else if found.paused {
            Refusal::NotNow
        } else {
            Refusal::None
        };
        refusals.insert(found.outbox_id, refusal);
    }
    refusals
}

/// The checks as one JSON array: the parameter of [`from_json`].
fn checks_json(checks: &[Check]) -> String {
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
    serde_json::Value::Array(rows).to_string()
}

/// Every check in one select: the checks are the rows of `c`, read from
/// `json` ([`checks_json`]) bound as one value.
fn from_json(backend: DbBackend, json: String) -> SelectStatement {
    let postgres = backend == DbBackend::Postgres;
    let field = |name: &str, integer: bool| {
        let kind = match (postgres, integer) {
            (true, true) => "bigint",
            (true, false) => "text",
            (false, true) => "INTEGER",
            (false, false) => "TEXT",
        };
        let value = if postgres {
            format!("\"e\".\"value\" ->> '{name}'")
        } else {
            format!("json_extract(\"e\".\"value\", '$.{name}')")
        };
        Expr::cust(format!("CAST({value} AS {kind})"))
    };
    let elements = if postgres {
        Func::cust("json_array_elements").arg(Expr::val(json).cast_as("json"))
    } else {
        Func::cust("json_each").arg(Expr::val(json))
    };
    let given_rows = Query::select()
        .expr_as(field("outbox_id", true), Alias::new("outbox_id"))
        .expr_as(field("customer_id", true), Alias::new("customer_id"))
        .expr_as(field("run_id", true), Alias::new("run_id"))
        .expr_as(field("email", false), Alias::new("email"))
        .expr_as(field("topic", false), Alias::new("topic"))
        .from_function(elements, Alias::new("e"))
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

/// What a check is about: the columns of a row of checks.
struct Given {
    outbox_id: Expr,
    customer_id: Expr,
    run_id: Expr,
    /// In lower case, as suppressions keep addresses.
    email: Expr,
    topic: Expr,
}

/// The customer's consent and whether anything refuses the message; no
/// row when the customer is gone or erased. The caller adds the customers
/// to the `FROM`. Each refusal is an `EXISTS`, which stops at the first row
/// it finds: as `COUNT` subqueries the check cost PostgreSQL twice the time
/// (an aggregate to start and finish per message and refusal), and the
/// sender's workers wait for it.
fn select(given: Given) -> SelectStatement {
    let left_topic = Query::select()
        .expr(Expr::val(1))
        .from("topic_opt_outs")
        .and_where(Expr::col(("topic_opt_outs", "customer_id")).eq(given.customer_id.clone()))
        .and_where(Expr::col(("topic_opt_outs", "topic")).eq(given.topic))
        .to_owned();
    let suppressions = Query::select()
        .expr(Expr::val(1))
        .from("suppressions")
        .cond_where(suppression_of(given.customer_id, given.email))
        .to_owned();
    let paused = Query::select()
        .expr(Expr::val(1))
        .from_subquery(campaign_pause::paused_runs(), Alias::new("paused"))
        .and_where(Expr::col(("paused", "id")).eq(given.run_id))
        .to_owned();
    Query::select()
        .expr_as(given.outbox_id, Alias::new("outbox_id"))
        .column(("customers", "marketing_consent"))
        .expr_as(Expr::exists(suppressions), Alias::new("suppressed"))
        .expr_as(Expr::exists(paused), Alias::new("paused"))
        .expr_as(Expr::exists(left_topic), Alias::new("left_topic"))
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
