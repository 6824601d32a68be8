//! Turning a segment expression into a sea-orm condition over a customer,
//! their feature snapshot and the active model's score. Column names come
//! from the fixed table below, never from the expression; every literal is
//! a bound value.

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use sea_orm::sea_query::{Alias, Condition, Expr as Sql, ExprTrait, Query, SelectStatement, SimpleExpr};
use sea_orm::{DbBackend, Value as DbValue};

use super::dependencies::Dependencies;
use super::{CompareOp, Expr, Field, FieldType, History, Value};

/// A field a segment can use: its name, type, table and column, and what
/// it reads that can go stale (`segment::dependencies`).
pub type FieldEntry = (&'static str, FieldType, &'static str, &'static str, Dependencies);

/// Every field a segment can use.
pub const FIELDS: &[FieldEntry] = &[
    ("recency_days", FieldType::Days, "feature_snapshots", "recency_days", Dependencies::SCORING),
    ("frequency", FieldType::Number, "feature_snapshots", "frequency", Dependencies::SCORING),
    ("orders_total", FieldType::Number, "feature_snapshots", "orders_total", Dependencies::SCORING),
    ("monetary_total", FieldType::Number, "feature_snapshots", "monetary_total", Dependencies::SCORING),
    ("monetary_mean", FieldType::Number, "feature_snapshots", "monetary_mean", Dependencies::SCORING),
    ("first_order_value", FieldType::Number, "feature_snapshots", "first_order_value", Dependencies::SCORING),
    ("tenure_days", FieldType::Days, "feature_snapshots", "tenure_days", Dependencies::SCORING),
    ("gap_mean_days", FieldType::Days, "feature_snapshots", "gap_mean_days", Dependencies::SCORING),
    ("gap_std_days", FieldType::Days, "feature_snapshots", "gap_std_days", Dependencies::SCORING),
    ("orders_30d", FieldType::Number, "feature_snapshots", "orders_30d", Dependencies::SCORING),
    ("orders_90d", FieldType::Number, "feature_snapshots", "orders_90d", Dependencies::SCORING),
    ("orders_365d", FieldType::Number, "feature_snapshots", "orders_365d", Dependencies::SCORING),
    ("spend_30d", FieldType::Number, "feature_snapshots", "spend_30d", Dependencies::SCORING),
    ("spend_90d", FieldType::Number, "feature_snapshots", "spend_90d", Dependencies::SCORING),
    ("spend_365d", FieldType::Number, "feature_snapshots", "spend_365d", Dependencies::SCORING),
    ("distinct_categories", FieldType::Number, "feature_snapshots", "distinct_categories", Dependencies::SCORING),
    ("spend_trend", FieldType::Number, "feature_snapshots", "spend_trend", Dependencies::SCORING),
    ("complaints_open", FieldType::Number, "feature_snapshots", "complaints_open", Dependencies::SCORING),
    ("complaints_365d", FieldType::Number, "feature_snapshots", "complaints_365d", Dependencies::SCORING),
    ("loyalty_points", FieldType::Number, "feature_snapshots", "loyalty_points", Dependencies::SCORING),
    ("loyalty_tier", FieldType::Text, "feature_snapshots", "loyalty_tier", Dependencies::SCORING),
    ("days_since_last_message", FieldType::Days, "feature_snapshots", "days_since_last_message", Dependencies::SCORING),
    ("first_name", FieldType::Text, "customers", "first_name", Dependencies::NONE),
    ("last_name", FieldType::Text, "customers", "last_name", Dependencies::NONE),
    ("birthday", FieldType::Date, "customers", "birthday", Dependencies::NONE),
    ("signed_up_at", FieldType::Date, "customers", "signed_up_at", Dependencies::NONE),
    ("marketing_consent", FieldType::Bool, "customers", "marketing_consent", Dependencies::NONE),
    ("propensity", FieldType::Number, "scores", "score", Dependencies::SCORING),
    ("propensity_decile", FieldType::Number, "scores", "decile", Dependencies::SCORING),
    // The customer-base models' outlook, written by scoring beside the propensity.
    ("p_alive", FieldType::Number, "scores", "p_alive", Dependencies::SCORING),
    ("expected_orders_90d", FieldType::Number, "scores", "expected_orders_90d", Dependencies::SCORING),
    ("expected_orders_365d", FieldType::Number, "scores", "expected_orders_365d", Dependencies::SCORING),
    ("clv", FieldType::Number, "scores", "clv", Dependencies::SCORING),
    // Computed when the segment is evaluated, from the base tables: triggers
    // such as "birthday today" must not wait for the next feature snapshot.
    ("birthday_today", FieldType::Bool, LIVE, "birthday_today", Dependencies::NONE),
    ("days_since_complaint_resolved", FieldType::Days, LIVE, "days_since_complaint_resolved", Dependencies::ORDERS),
    // The loyalty account as the last recompute (or redemption) left it.
    ("points", FieldType::Number, LIVE, "points", Dependencies::ORDERS),
    ("tier", FieldType::Text, LIVE, "tier", Dependencies::ORDERS),
    ("tier_direction", FieldType::Text, LIVE, "tier_direction", Dependencies::ORDERS),
    ("tier_changed_days_ago", FieldType::Days, LIVE, "tier_changed_days_ago", Dependencies::ORDERS),
    ("points_expiring_30d", FieldType::Number, LIVE, "points_expiring_30d", Dependencies::ORDERS),
    ("next_tier", FieldType::Text, LIVE, "next_tier", Dependencies::ORDERS),
    ("points_to_next_tier", FieldType::Number, LIVE, "points_to_next_tier", Dependencies::ORDERS),
];

/// The entry of `FIELDS` named `name`, if any.
pub fn field_entry(name: &str) -> Option<&'static FieldEntry> {
    FIELDS.iter().find(|f| f.0 == name)
}

/// Loyalty fields read straight from the member's account row.
const ACCOUNT_COLUMNS: &[&str] =
    &["points", "tier", "tier_direction", "points_expiring_30d", "next_tier", "points_to_next_tier"];

/// The "table" of fields computed at evaluation time rather than read from a column.
const LIVE: &str = "live";

/// When a segment is evaluated: `now` for the "days since" fields, `today`
/// (in the campaign's time zone) for "birthday today", and the report's
/// attribution window for `converted("...")`; where the active model's
/// scores are read from.
#[derive(Debug, Clone)]
pub struct Context {
    pub backend: DbBackend,
    pub now: DateTime<Utc>,
    pub today: NaiveDate,
    pub attribution_window: chrono::Duration,
    pub scores: Scores,
}

/// Where a segment reads the active model's scores (the fields of the
/// `scores` table above).
#[derive(Debug, Clone, PartialEq)]
pub enum Scores {
    /// The `scores` table, joined by customer and the active model's id
    /// (None: no active model, and no customer has a score).
    Joined(Option<i64>),
    /// The snapshots' own columns, when every snapshot carries the active
    /// model's scores (`features::snapshot::recorded_deciles`), with the
    /// decile of the snapshot's score by the recorded floors as `decile`:
    /// one table read instead of a join.
    OnSnapshots { decile: SimpleExpr },
}

/// The names and types for [`super::parse`].
pub fn known_fields() -> Vec<(&'static str, FieldType)> {
    FIELDS.iter().map(|&(name, kind, ..)| (name, kind)).collect()
}

/// `SELECT customers.id, customers.external_id` of the customers in the
/// segment, by customer id. `expr` must come from [`super::parse`] with
/// [`known_fields`].
pub fn select_customers(expr: &Expr, context: &Context) -> SelectStatement {
    let customers = Alias::new("customers");
    let mut select = from_customers(&context.scores);
    select
        .column((customers.clone(), Alias::new("id")))
        .column((customers.clone(), Alias::new("external_id")))
        .cond_where(condition(expr, context))
        .and_where(Sql::col((customers.clone(), Alias::new("erased_at"))).is_null())
        .order_by((customers, Alias::new("id")), sea_orm::sea_query::Order::Asc);
    select
}

/// `FROM customers` joined to their feature snapshot (and their score, as
/// `scores` says): what every field reads from. No columns selected yet.
pub fn from_customers(scores: &Scores) -> SelectStatement {
    let customers = Alias::new("customers");
    let mut select = Query::select();
    select.from(customers.clone()).left_join(
        Alias::new("feature_snapshots"),
        Sql::col((Alias::new("feature_snapshots"), Alias::new("customer_id")))
            .equals((customers.clone(), Alias::new("id"))),
    );
    join_scores(&mut select, scores, (customers, Alias::new("id")));
    select
}

/// `FROM feature_snapshots` (joined to the scores, as `scores` says): the
/// rows of a segment that `source::readable_from_snapshots` allows, without
/// the customers' own columns. No columns selected yet.
pub fn from_snapshots(scores: &Scores) -> SelectStatement {
    let mut select = Query::select();
    select.from(Alias::new("feature_snapshots"));
    join_scores(&mut select, scores, (Alias::new("feature_snapshots"), Alias::new("customer_id")));
    select
}

/// Joins the active model's scores to `customer_id`, unless the snapshots
/// carry them.
fn join_scores(select: &mut SelectStatement, scores: &Scores, customer_id: (Alias, Alias)) {
    if let Scores::Joined(model_id) = scores {
        select.left_join(
            Alias::new("scores"),
            Condition::all()
                .add(Sql::col((Alias::new("scores"), Alias::new("customer_id"))).equals(customer_id))
                .add(Sql::col((Alias::new("scores"), Alias::new("model_id"))).eq(model_id.unwrap_or(-1))),
        );
    }
}

/// A column of the `scores` table, or what stands for it on the snapshots.
fn score_column(column: &'static str, scores: &Scores) -> SimpleExpr {
    match scores {
        Scores::Joined(_) => Sql::col((Alias::new("scores"), Alias::new(column))),
        Scores::OnSnapshots { decile } if column == "decile" => decile.clone(),
        Scores::OnSnapshots { .. } => Sql::col((Alias::new("feature_snapshots"), Alias::new(column))),
    }
}

/// The condition an expression stands for.
pub fn condition(expr: &Expr, context: &Context) -> Condition {
    match expr {
        Expr::And(a, b) => Condition::all().add(condition(a, context)).add(condition(b, context)),
        Expr::Or(a, b) => Condition::any().add(condition(a, context)).add(condition(b, context)),
        Expr::Not(inner) => condition(inner, context).not(),
        Expr::Compare { field, op, value, .. } => {
            let (column, value) = (column(field, value, context), bound(field, value));
            Condition::all().add(match op {
                CompareOp::Eq => column.eq(value),
                CompareOp::Ne => column.ne(value),
                CompareOp::Lt => column.lt(value),
                CompareOp::Le => column.lte(value),
                CompareOp::Gt => column.gt(value),
                CompareOp::Ge => column.gte(value),
            })
        }
        Expr::Between { field, low, high, .. } => {
            Condition::all().add(column(field, low, context).between(bound(field, low), bound(field, high)))
        }
        Expr::In { field, values, negated, .. } => {
            let column = column(field, &values[0], context);
            let values: Vec<DbValue> = values.iter().map(|v| bound(field, v)).collect();
            Condition::all().add(if *negated { column.is_not_in(values) } else { column.is_in(values) })
        }
        Expr::IsNull { field, negated, .. } => {
            let column = column(field, &Value::Text(String::new()), context);
            Condition::all().add(if *negated { column.is_not_null() } else { column.is_null() })
        }
        Expr::Subscribed { topic, .. } => subscribed(topic),
        Expr::History { test, campaign, .. } => history(*test, campaign, context),
    }
}

/// The outbox rows of one campaign's runs, `o` joined to its run `r`; the
/// campaign is the first value bound.
const CAMPAIGN_OUTBOX: &str = r#""outbox" AS "o" JOIN "campaign_runs" AS "r" ON "r"."id" = "o"."run_id"
    WHERE "r"."campaign" = ?"#;

/// A customer's history with one campaign, as of `context.now`: messages sent
/// (state `sent`) and control-group entries count up to that moment, so a
/// plan for an earlier moment sees the history it would have seen then.
fn history(test: History, campaign: &str, context: &Context) -> Condition {
    let (campaign, now) = (DbValue::from(campaign.to_owned()), DbValue::from(context.now));
    let sent_by_now =
        format!(r#"SELECT "o"."customer_id" FROM {CAMPAIGN_OUTBOX} AND "o"."state" = 'sent' AND "o"."sent_at" <= ?"#);
    let expr = match test {
        History::Received { within: None } => {
            custom(context, format!(r#""customers"."id" IN ({sent_by_now})"#), vec![campaign, now])
        }
        History::Received { within: Some(days) } => {
            let since = DbValue::from(context.now - days_duration(days));
            let sql = format!(r#""customers"."id" IN ({sent_by_now} AND "o"."sent_at" >= ?)"#);
            custom(context, sql, vec![campaign, now, since])
        }
        History::InControlGroup => {
            let sql = format!(
                r#""customers"."id" IN (SELECT "o"."customer_id" FROM {CAMPAIGN_OUTBOX}
                    AND "o"."state" = 'control' AND "r"."scheduled_at" <= ?)"#
            );
            custom(context, sql, vec![campaign, now])
        }
        History::OrderedSinceReceived => {
            let sql = format!(
                r#"EXISTS (SELECT 1 FROM "orders" WHERE "orders"."customer_id" = "customers"."id"
                    AND "orders"."ordered_at" > {LAST_RECEIVED} AND "orders"."ordered_at" <= ?)"#
            );
            custom(context, sql, vec![campaign, now.clone(), now])
        }
        History::Converted => converted(campaign, context),
    };
    Condition::all().add(expr)
}

/// When the campaign's last message to the customer was sent, as of the
/// second value bound (the first is the campaign); NULL if none was.
const LAST_RECEIVED: &str = r#"(SELECT MAX("o"."sent_at") FROM "outbox" AS "o" JOIN "campaign_runs" AS "r"
    ON "r"."id" = "o"."run_id" WHERE "o"."customer_id" = "customers"."id" AND "r"."campaign" = ?
    AND "o"."state" = 'sent' AND "o"."sent_at" <= ?)"#;

/// An order within the attribution window after a sent message of the
/// campaign, `(sent_at, sent_at + window]`, as `report campaign` counts a
/// conversion, and no later than now.
fn converted(campaign: DbValue, context: &Context) -> SimpleExpr {
    let window_days = context.attribution_window.num_seconds() as f64 / 86_400.0;
    let within_window = match context.backend {
        DbBackend::Sqlite => r#"julianday("b"."ordered_at") <= julianday("o"."sent_at") + ?"#,
        _ => r#""b"."ordered_at" <= "o"."sent_at" + make_interval(secs => ? * 86400.0)"#,
    };
    let sql = format!(
        r#""customers"."id" IN (SELECT "o"."customer_id" FROM "outbox" AS "o"
            JOIN "campaign_runs" AS "r" ON "r"."id" = "o"."run_id"
            JOIN "orders" AS "b" ON "b"."customer_id" = "o"."customer_id" AND "b"."ordered_at" > "o"."sent_at"
                AND {within_window}
            WHERE "r"."campaign" = ? AND "o"."state" = 'sent' AND "b"."ordered_at" <= ?)"#
    );
    custom(context, sql, vec![window_days.into(), campaign, context.now.into()])
}

/// Days since the campaign's last message to the customer; NULL if never.
fn days_since_received(campaign: &str, context: &Context) -> SimpleExpr {
    let now = DbValue::from(context.now);
    let values = vec![now.clone(), campaign.to_owned().into(), now];
    match context.backend {
        DbBackend::Sqlite => custom(context, format!("(julianday(?) - julianday({LAST_RECEIVED}))"), values),
        _ => custom(
            context,
            format!("(EXTRACT(EPOCH FROM (CAST(? AS TIMESTAMPTZ) - {LAST_RECEIVED})) / 86400.0)"),
            values,
        ),
    }
}

/// Custom SQL written with `?` for each bound value, in order; PostgreSQL's
/// builder reads `$1`, `$2`, ... instead.
fn custom(context: &Context, sql: String, values: Vec<DbValue>) -> SimpleExpr {
    let sql = match context.backend {
        DbBackend::Sqlite => sql,
        _ => {
            let mut numbered = String::with_capacity(sql.len() + 8);
            for (i, piece) in sql.split('?').enumerate() {
                if i > 0 {
                    numbered.push_str(&format!("${i}"));
                }
                numbered.push_str(piece);
            }
            numbered
        }
    };
    Sql::cust_with_values(sql, values)
}

/// A number of days as a duration, to the second.
fn days_duration(days: f64) -> chrono::Duration {
    chrono::Duration::seconds((days * 86_400.0).round() as i64)
}

/// Consents to marketing and has not left `topic`.
fn subscribed(topic: &str) -> Condition {
    let (customers, opt_outs) = (Alias::new("customers"), Alias::new("topic_opt_outs"));
    let left_topic = Query::select()
        .expr(Sql::val(1))
        .from(opt_outs.clone())
        .and_where(
            Sql::col((opt_outs.clone(), Alias::new("customer_id"))).equals((customers.clone(), Alias::new("id"))),
        )
        .and_where(Sql::col((opt_outs, Alias::new("topic"))).eq(topic))
        .to_owned();
    Condition::all()
        .add(Sql::col((customers, Alias::new("marketing_consent"))).eq(true))
        .add(Sql::exists(left_topic).not())
}

/// The column of a field; an attribute is read from the JSON document, as a
/// number when it is compared with a number.
pub fn column(field: &Field, compared_with: &Value, context: &Context) -> SimpleExpr {
    match field {
        Field::Named(name) => {
            let (_, _, table, column, _) = field_entry(name).expect("the validator only lets known fields through");
            if *table == LIVE {
                live_column(column, context)
            } else if *table == "scores" {
                score_column(column, &context.scores)
            } else {
                Sql::col((Alias::new(*table), Alias::new(*column)))
            }
        }
        Field::Attribute(name) => match (context.backend, compared_with) {
            // `$."name"` is a JSON path; NAME is letters, digits and `_` only.
            // Compared with a number, a value that is not a number is NULL
            // (matches nothing) instead of an error or a silent zero.
            (DbBackend::Sqlite, Value::Number(_)) => Sql::cust_with_values(
                r#"(SELECT CASE WHEN v GLOB '*[0-9]*' AND NOT v GLOB '*[^0-9.+-]*' THEN CAST(v AS REAL) END
                    FROM (SELECT trim(json_extract("customers"."attributes", ?)) AS v))"#,
                [json_path(name)],
            ),
            (DbBackend::Sqlite, _) => {
                Sql::cust_with_values(r#"json_extract("customers"."attributes", ?)"#, [json_path(name)])
            }
            (_, Value::Number(_)) => Sql::cust_with_values(
                r#"(CASE WHEN trim("customers"."attributes" ->> $1) ~ '^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)$'
                    THEN CAST(trim("customers"."attributes" ->> $1) AS DOUBLE PRECISION) END)"#,
                [name.clone()],
            ),
            _ => Sql::cust_with_values(r#"("customers"."attributes" ->> $1)"#, [name.clone()]),
        },
        Field::DaysSinceReceived(campaign) => days_since_received(campaign, context),
    }
}

/// The fields computed at evaluation time. Fixed SQL; the times are bound.
fn live_column(name: &str, context: &Context) -> SimpleExpr {
    let sqlite = context.backend == DbBackend::Sqlite;
    match name {
        "birthday_today" => {
            // Someone born on 29 February celebrates on the 28th in other years.
            let today = context.today.format("%m-%d").to_string();
            let (month, day) = (context.today.month(), context.today.day());
            let leap_day =
                if (month, day) == (2, 28) && !context.today.leap_year() { "02-29".to_owned() } else { today.clone() };
            if sqlite {
                Sql::cust_with_values(r#"(strftime('%m-%d', "customers"."birthday") IN (?, ?))"#, [today, leap_day])
            } else {
                Sql::cust_with_values(r#"(to_char("customers"."birthday", 'MM-DD') IN ($1, $2))"#, [today, leap_day])
            }
        }
        "days_since_complaint_resolved" => {
            let last_resolved = r#"(SELECT MAX("interactions"."resolved_at") FROM "interactions"
                WHERE "interactions"."customer_id" = "customers"."id" AND "interactions"."kind" = 'complaint'
                AND "interactions"."status" <> 'open')"#;
            if sqlite {
                let now = context.now.to_rfc3339_opts(SecondsFormat::AutoSi, false);
                Sql::cust_with_values(format!("(julianday(?) - julianday({last_resolved}))"), [now])
            } else {
                Sql::cust_with_values(
                    format!("(EXTRACT(EPOCH FROM (CAST($1 AS TIMESTAMPTZ) - {last_resolved})) / 86400.0)"),
                    [context.now],
                )
            }
        }
        "tier_changed_days_ago" => {
            let since = account_column("tier_since");
            if sqlite {
                let now = context.now.to_rfc3339_opts(SecondsFormat::AutoSi, false);
                Sql::cust_with_values(format!("(julianday(?) - julianday({since}))"), [now])
            } else {
                Sql::cust_with_values(
                    format!("(EXTRACT(EPOCH FROM (CAST($1 AS TIMESTAMPTZ) - {since})) / 86400.0)"),
                    [context.now],
                )
            }
        }
        column if ACCOUNT_COLUMNS.contains(&column) => Sql::cust(account_column(column)),
        _ => unreachable!("every live field is listed here"),
    }
}

/// A column of the customer's loyalty account (NULL for a non-member), as a
/// subquery: evaluated only by segments that use it, by primary key.
fn account_column(column: &str) -> String {
    format!(
        r#"(SELECT "loyalty_accounts"."{column}" FROM "loyalty_accounts"
            WHERE "loyalty_accounts"."customer_id" = "customers"."id")"#
    )
}

fn json_path(name: &str) -> String {
    format!("$.\"{name}\"")
}

fn bound(field: &Field, value: &Value) -> DbValue {
    match value {
        Value::Number(n) | Value::Days(n) => (*n).into(),
        Value::Text(text) => text.clone().into(),
        Value::Bool(b) => (*b).into(),
        // The birthday is a calendar date; the other dates are moments.
        Value::Date(date) if matches!(field, Field::Named(name) if name == "birthday") => (*date).into(),
        Value::Date(date) => midnight(*date).into(),
    }
}

/// A date compares as the start of that day, UTC.
fn midnight(date: NaiveDate) -> chrono::DateTime<chrono::Utc> {
    date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}
