//! Interactions: complaints, inquiries and suggestions, with their status and
//! times. The customer must exist.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Value;

use super::csv_file::{Cells, ColumnSpec, Columns};
use super::customer_refs::CustomerRef;
use super::{Table, fields};

pub struct Interactions;

pub struct InteractionRow {
    external_id: String,
    customer: CustomerRef,
    kind: String,
    status: String,
    opened_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    channel: Option<String>,
    note: Option<String>,
}

pub const KINDS: &[&str] = &["complaint", "inquiry", "suggestion"];
pub const STATUSES: &[&str] = &["open", "resolved", "closed"];
const OPTIONAL: &[&str] = &["status", "resolved_at", "channel", "note"];
const COLUMNS: &[&str] =
    &["external_id", "customer_id", "kind", "status", "opened_at", "resolved_at", "channel", "note"];

impl Table for Interactions {
    type Row = InteractionRow;
    const SPEC: ColumnSpec = ColumnSpec {
        required: &["interaction_id", "customer_id", "kind", "opened_at"],
        optional: OPTIONAL,
        keeps_extra: false,
    };
    const ID_COLUMN: &'static str = "interaction_id";

    fn parse(cells: &mut Cells<'_>, _: &Columns) -> Option<InteractionRow> {
        let external_id = cells.required("interaction_id", fields::external_id);
        let customer = cells.required("customer_id", fields::external_id);
        let kind = cells.required("kind", |t| fields::one_of(t, KINDS));
        let opened_at = cells.required("opened_at", fields::timestamp);
        let resolved_at = cells.optional("resolved_at", fields::timestamp);
        let status = cells.optional("status", |t| fields::one_of(t, STATUSES));
        let channel = cells.optional("channel", |t| fields::one_line(t, 100).map(|c| c.to_lowercase()));
        let note = cells.optional("note", |t| fields::text(t, fields::MAX_NOTE_CHARS));
        if let (Some(opened), Some(resolved)) = (opened_at, resolved_at)
            && resolved < opened
        {
            cells.problem("resolved_at", "is before opened_at");
        }
        if status.as_deref() == Some("open") && resolved_at.is_some() {
            cells.problem("status", "is open but resolved_at is given");
        }
        // Without a status, a resolution time means resolved.
        let status = status.unwrap_or_else(|| if resolved_at.is_some() { "resolved" } else { "open" }.to_owned());
        Some(InteractionRow {
            external_id: external_id?,
            customer: CustomerRef::new(customer?),
            kind: kind?,
            status,
            opened_at: opened_at?,
            resolved_at,
            channel,
            note,
        })
    }

    fn external_id(row: &InteractionRow) -> &str {
        &row.external_id
    }

    fn customer(row: &mut Self::Row) -> Option<&mut CustomerRef> {
        Some(&mut row.customer)
    }

    const TABLE: &'static str = "interactions";
    const COLUMNS: &'static [&'static str] = COLUMNS;

    fn updatable(columns: &Columns) -> Vec<&'static str> {
        let mut updatable = vec!["customer_id", "kind", "opened_at"];
        // The status is derived when absent, so it follows resolved_at as well.
        if columns.has("status") || columns.has("resolved_at") {
            updatable.push("status");
        }
        updatable.extend(["resolved_at", "channel", "note"].into_iter().filter(|c| columns.has(c)));
        updatable
    }

    fn values(r: InteractionRow, out: &mut Vec<Value>) {
        out.extend([
            r.external_id.into(),
            r.customer.id().into(),
            r.kind.into(),
            r.status.into(),
            r.opened_at.into(),
            r.resolved_at.into(),
            r.channel.into(),
            r.note.into(),
        ]);
    }
}
