//! Orders: `order_id,customer_id,ordered_at,amount` and optional currency,
//! item count and category. The customer must exist.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Value;

use super::csv_file::{Cells, ColumnSpec, Columns};
use super::customer_refs::CustomerRef;
use super::{Table, fields};

pub struct Orders;

pub struct OrderRow {
    external_id: String,
    customer: CustomerRef,
    ordered_at: DateTime<Utc>,
    amount_cents: i64,
    currency: Option<String>,
    items: Option<i32>,
    category: Option<String>,
}

const OPTIONAL: &[&str] = &["currency", "items", "category"];
const COLUMNS: &[&str] = &["external_id", "customer_id", "ordered_at", "amount_cents", "currency", "items", "category"];

impl Table for Orders {
    type Row = OrderRow;
    const SPEC: ColumnSpec = ColumnSpec {
        required: &["order_id", "customer_id", "ordered_at", "amount"],
        optional: OPTIONAL,
        keeps_extra: false,
    };
    const ID_COLUMN: &'static str = "order_id";

    fn parse(cells: &mut Cells<'_>, _: &Columns) -> Option<OrderRow> {
        let external_id = cells.required("order_id", fields::external_id);
        let customer = cells.required("customer_id", fields::external_id);
        let ordered_at = cells.required("ordered_at", fields::timestamp);
        let amount_cents = cells.required("amount", fields::amount_cents);
        let currency = cells.optional("currency", currency_code);
        let items = cells.optional("items", fields::count);
        let category = cells.optional("category", category_name);
        Some(OrderRow {
            external_id: external_id?,
            customer: CustomerRef::new(customer?),
            ordered_at: ordered_at?,
            amount_cents: amount_cents?,
            currency,
            items,
            category,
        })
    }

    fn external_id(row: &OrderRow) -> &str {
        &row.external_id
    }

    fn customer(row: &mut Self::Row) -> Option<&mut CustomerRef> {
        Some(&mut row.customer)
    }

    const TABLE: &'static str = "orders";
    const COLUMNS: &'static [&'static str] = COLUMNS;

    fn updatable(columns: &Columns) -> Vec<&'static str> {
        let mut updatable = vec!["customer_id", "ordered_at", "amount_cents"];
        updatable.extend(OPTIONAL.iter().copied().filter(|c| columns.has(c)));
        updatable
    }

    fn values(r: OrderRow, out: &mut Vec<Value>) {
        out.extend([
            r.external_id.into(),
            r.customer.id().into(),
            r.ordered_at.into(),
            r.amount_cents.into(),
            r.currency.into(),
            r.items.into(),
            r.category.into(),
        ]);
    }
}

/// A three-letter currency code such as EUR, stored in upper case.
fn currency_code(text: &str) -> Result<String, String> {
    if text.len() == 3 && text.chars().all(|c| c.is_ascii_alphabetic()) {
        Ok(text.to_ascii_uppercase())
    } else {
        Err("expected a three-letter currency code such as EUR".into())
    }
}

/// A category name, compared without case: stored in lower case.
fn category_name(text: &str) -> Result<String, String> {
    if text.chars().count() > 100 || text.chars().any(char::is_control) {
        Err("must be at most 100 characters, without control characters".into())
    } else {
        Ok(text.to_lowercase())
    }
}
