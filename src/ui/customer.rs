//! `/ui/customers/lookup?id=EXTERNAL_ID`: one customer, from the dossier
//! `patron customer show` and `export` read (`privacy::dossier`): profile,
//! consent and its history, orders, scores, loyalty, messages and feedback.

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::{Page, PageError, Ui};
use crate::model::report::escape;
use crate::privacy::{self, dossier};
use crate::report::cents;
use crate::report::html::table;

/// Rows shown of each long list, newest first.
const NEWEST: usize = 20;

#[derive(Deserialize)]
pub(super) struct Lookup {
    id: Option<String>,
}

pub(super) async fn page(State(ui): State<Ui>, Query(lookup): Query<Lookup>) -> Response {
    let topics = ui.sources().settings.subscriptions.topics;
    let page = async {
        let id = lookup.id.as_deref().map(str::trim).unwrap_or_default();
        if id.is_empty() {
            return Err(PageError::NotFound("Give a customer id to look up.".into()));
        }
        let Some(customer) = privacy::find_customer(&ui.db, id).await? else {
            return Err(PageError::NotFound(format!("No customer with customer id `{id}`.")));
        };
        let dossier = dossier::collect(&ui.db, &customer, &topics).await?;
        Ok(Page { title: format!("Customer {id}"), body: body(&dossier) })
    };
    ui.answer(page.await)
}

fn body(d: &dossier::Dossier) -> String {
    let orders_total: i64 = d.orders.iter().filter_map(|o| o["amount_cents"].as_i64()).sum();
    [
        section(
            "Profile",
            std::slice::from_ref(&d.customer),
            &["external_id", "first_name", "last_name", "email", "signed_up_at"],
        ),
        consent(&d.consent),
        section_of(
            "Consent history",
            &d.consent_history,
            &["occurred_at", "topic", "old_state", "new_state", "source"],
        ),
        format!("<h2>Orders</h2>\n<p>{} orders worth {} in all.</p>\n", d.orders.len(), cents(orders_total)),
        newest_table(&d.orders, &["ordered_at", "external_id", "amount_cents", "items", "category"]),
        section_of(
            "Scores",
            &d.scores,
            &["model_id", "score", "decile", "p_alive", "expected_orders_90d", "scored_at"],
        ),
        match &d.loyalty_account {
            Some(account) => section(
                "Loyalty",
                std::slice::from_ref(account),
                &["tier", "points", "points_expiring_30d", "next_tier", "tier_since"],
            ),
            None => "<h2>Loyalty</h2>\n<p>Not a member.</p>\n".to_owned(),
        },
        section_of("Messages", &d.messages, &["campaign", "state", "variant", "sent_at", "created_at"]),
        section_of(
            "Bounces, complaints and unsubscribes",
            &d.feedback_events,
            &["received_at", "kind", "source", "email"],
        ),
    ]
    .concat()
}

fn consent(c: &dossier::ConsentNow) -> String {
    let mut rows = vec![vec!["marketing".to_owned(), yes(c.marketing).to_owned()]];
    rows.extend(c.topics.iter().map(|t| vec![escape(&t.topic), yes(t.subscribed).to_owned()]));
    rows.push(vec!["suppressed".to_owned(), c.suppressed.unwrap_or("no").to_owned()]);
    format!("<h2>Consent</h2>\n{}", table(&["", "Subscribed"], &rows))
}

fn yes(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn section(title: &str, rows: &[Value], columns: &[&str]) -> String {
    format!("<h2>{title}</h2>\n{}", newest_table(rows, columns))
}

/// A section that says so when it has no rows.
fn section_of(title: &str, rows: &[Value], columns: &[&str]) -> String {
    if rows.is_empty() {
        return format!("<h2>{title}</h2>\n<p>None.</p>\n");
    }
    section(title, rows, columns)
}

/// The newest [`NEWEST`] of `rows` (kept oldest first), newest first.
fn newest_table(rows: &[Value], columns: &[&str]) -> String {
    let cells: Vec<Vec<String>> =
        rows.iter().rev().take(NEWEST).map(|row| columns.iter().map(|c| cell(c, &row[*c])).collect()).collect();
    let header: Vec<String> = columns.iter().map(|c| c.replace('_', " ")).collect();
    table(&header.iter().map(String::as_str).collect::<Vec<_>>(), &cells)
}

fn cell(column: &str, value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => escape(text),
        Value::Number(n) if column.ends_with("_cents") => n.as_i64().map_or_else(|| n.to_string(), cents),
        Value::Number(n) => {
            n.as_f64().filter(|f| f.fract() != 0.0).map_or_else(|| n.to_string(), |f| format!("{f:.3}"))
        }
        other => escape(&other.to_string()),
    }
}
