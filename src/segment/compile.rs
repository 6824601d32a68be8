//! Turning a segment expression into a sea-orm condition over a customer,
//! their feature snapshot and the active model's score. Column names come
//! from the fixed table below, never from the expression; every literal is
//! a bound value.

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use sea_orm::sea_query::{Alias, Condition, Expr as Sql, ExprTrait, Query, SelectStatement, SimpleExpr};
use sea_orm::{DbBackend, Value as DbValue};

use super::{CompareOp, Expr, Field, FieldType, Value};

/// Every field a segment can use: its name, type, table and column.
pub const FIELDS: &[(&str, FieldType, &str, &str)] = &[
    ("recency_days", FieldType::Days, "feature_snapshots", "recency_days"),
    ("frequency", FieldType::Number, "feature_snapshots", "frequency"),
    ("orders_total", FieldType::Number, "feature_snapshots", "orders_total"),
    ("monetary_total", FieldType::Number, "feature_snapshots", "monetary_total"),
    ("monetary_mean", FieldType::Number, "feature_snapshots", "monetary_mean"),
    ("first_order_value", FieldType::Number, "feature_snapshots", "first_order_value"),
    ("tenure_days", FieldType::Days, "feature_snapshots", "tenure_days"),
    ("gap_mean_days", FieldType::Days, "feature_snapshots", "gap_mean_days"),
    ("gap_std_days", FieldType::Days, "feature_snapshots", "gap_std_days"),
    ("orders_30d", FieldType::Number, "feature_snapshots", "orders_30d"),
    ("orders_90d", FieldType::Number, "feature_snapshots", "orders_90d"),
    ("orders_365d", FieldType::Number, "feature_snapshots", "orders_365d"),
    ("spend_30d", FieldType::Number, "feature_snapshots", "spend_30d"),
    ("spend_90d", FieldType::Number, "feature_snapshots", "spend_90d"),
    ("spend_365d", FieldType::Number, "feature_snapshots", "spend_365d"),
    ("distinct_categories", FieldType::Number, "feature_snapshots", "distinct_categories"),
    ("spend_trend", FieldType::Number, "feature_snapshots", "spend_trend"),
    ("complaints_open", FieldType::Number, "feature_snapshots", "complaints_open"),
    ("complaints_365d", FieldType::Number, "feature_snapshots", "complaints_365d"),
    ("loyalty_points", FieldType::Number, "feature_snapshots", "loyalty_points"),
    ("loyalty_tier", FieldType::Text, "feature_snapshots", "loyalty_tier"),
    ("days_since_last_message", FieldType::Days, "feature_snapshots", "days_since_last_message"),
    ("first_name", FieldType::Text, "customers", "first_name"),
    ("last_name", FieldType::Text, "customers", "last_name"),
    ("birthday", FieldType::Date, "customers", "birthday"),
    ("signed_up_at", FieldType::Date, "customers", "signed_up_at"),
    ("marketing_consent", FieldType::Bool, "customers", "marketing_consent"),
    ("propensity", FieldType::Number, "scores", "score"),
    ("propensity_decile", FieldType::Number, "scores", "decile"),
    // The customer-base models' outlook, written by scoring beside the propensity.
    ("p_alive", FieldType::Number, "scores", "p_alive"),
    ("expected_orders_90d", FieldType::Number, "scores", "expected_orders_90d"),
    ("expected_orders_365d", FieldType::Number, "scores", "expected_orders_365d"),
    ("clv", FieldType::Number, "scores", "clv"),
    // Computed when the segment is evaluated, from the base tables: triggers
    // such as "birthday today" must not wait for the next feature snapshot.
    ("birthday_today", FieldType::Bool, LIVE, "birthday_today"),
    ("days_since_complaint_resolved", FieldType::Days, LIVE, "days_since_complaint_resolved"),
    // The loyalty account as the last recompute (or redemption) left it.
    ("points", FieldType::Number, LIVE, "points"),
    ("tier", FieldType::Text, LIVE, "tier"),
    ("tier_direction", FieldType::Text, LIVE, "tier_direction"),
    ("tier_changed_days_ago", FieldType::Days, LIVE, "tier_changed_days_ago"),
    ("points_expiring_30d", FieldType::Number, LIVE, "points_expiring_30d"),
    ("next_tier", FieldType::Text, LIVE, "next_tier"),
    ("points_to_next_tier", FieldType::Number, LIVE, "points_to_next_tier"),
];

/// Loyalty fields read straight from the member's account row.
const ACCOUNT_COLUMNS: &[&str] =
    &["points", "tier", "tier_direction", "points_expiring_30d", "next_tier", "points_to_next_tier"];

/// The "table" of fields computed at evaluation time rather than read from a column.
const LIVE: &str = "live";

/// When a segment is evaluated: `now` for the "days since" fields, `today`
/// (in the campaign's time zone) for "birthday today".
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub backend: DbBackend,
    pub now: DateTime<Utc>,
    pub today: NaiveDate,
}

/// The names and types for [`super::parse`].
pub fn known_fields() -> Vec<(&'static str, FieldType)> {
    FIELDS.iter().map(|&(name, kind, _, _)| (name, kind)).collect()
}

/// `SELECT customers.id, customers.external_id` of the customers in the
/// segment, by customer id. Scores are those of `model_id` (the active model).
/// `expr` must come from [`super::parse`] with [`known_fields`].
pub fn select_customers(expr: &Expr, context: &Context, model_id: Option<i64>) -> SelectStatement {
    let customers = Alias::new("customers");
    let mut select = from_customers(model_id);
    select
        .column((customers.clone(), Alias::new("id")))
        .column((customers.clone(), Alias::new("external_id")))
        .cond_where(condition(expr, context))
        .and_where(Sql::col((customers.clone(), Alias::new("erased_at"))).is_null())
        .order_by((customers, Alias::new("id")), sea_orm::sea_query::Order::Asc);
    select
}

/// `FROM customers` joined to their feature snapshot and their score by
/// `model_id`: what every field reads from. No columns selected yet.
pub fn from_customers(model_id: Option<i64>) -> SelectStatement {
    let customers = Alias::new("customers");
    let mut select = Query::select();
    select
        .from(customers.clone())
        .left_join(
            Alias::new("feature_snapshots"),
            Sql::col((Alias::new("feature_snapshots"), Alias::new("customer_id")))
                .equals((customers.clone(), Alias::new("id"))),
        )
        .left_join(
            Alias::new("scores"),
            Condition::all()
                .add(Sql::col((Alias::new("scores"), Alias::new("customer_id"))).equals((customers, Alias::new("id"))))
                .add(Sql::col((Alias::new("scores"), Alias::new("model_id"))).eq(model_id.unwrap_or(-1))),
        );
    select
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
    }
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
            let (_, _, table, column) =
                FIELDS.iter().find(|f| f.0 == name).expect("the validator only lets known fields through");
            if *table == LIVE {
                live_column(column, context)
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
