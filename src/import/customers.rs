//! Customers: `customer_id,email` and optional names, birthday, sign-up time,
//! consent and the date consent was given (`consent_at`); any other column
//! is kept as a custom attribute. Consent goes through [`super::consent`].

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::DbErr;
use sea_orm::sea_query::Value;
use serde_json::Map;

use super::csv_file::{Cells, ColumnSpec, Columns};
use super::{Pending, Table, fields};
use crate::db::bulk::BulkTarget;

pub struct Customers;

pub struct CustomerRow {
    pub(super) external_id: String,
    pub(super) email: String,
    first_name: Option<String>,
    last_name: Option<String>,
    birthday: Option<NaiveDate>,
    signed_up_at: Option<DateTime<Utc>>,
    pub(super) marketing_consent: Option<bool>,
    /// When the consent in the file was given; not stored, it is the
    /// import's evidence against a later unsubscribe.
    pub(super) consent_at: Option<DateTime<Utc>>,
    attributes: Map<String, serde_json::Value>,
}

/// The optional columns stored in `customers`.
const OPTIONAL: &[&str] = &["first_name", "last_name", "birthday", "signed_up_at", "marketing_consent"];
/// Every optional column of the file.
const OPTIONAL_IN_FILE: &[&str] =
    &["first_name", "last_name", "birthday", "signed_up_at", "marketing_consent", "consent_at"];
const COLUMNS: &[&str] =
    &["external_id", "email", "first_name", "last_name", "birthday", "signed_up_at", "marketing_consent", "attributes"];

impl Table for Customers {
    type Row = CustomerRow;
    const SPEC: ColumnSpec =
        ColumnSpec { required: &["customer_id", "email"], optional: OPTIONAL_IN_FILE, keeps_extra: true };
    const ID_COLUMN: &'static str = "customer_id";

    fn parse(cells: &mut Cells<'_>, columns: &Columns) -> Option<CustomerRow> {
        let external_id = cells.required("customer_id", fields::external_id);
        let email = cells.required("email", fields::email);
        let first_name = cells.optional("first_name", name);
        let last_name = cells.optional("last_name", name);
        let birthday = cells.optional("birthday", fields::date);
        let signed_up_at = cells.optional("signed_up_at", fields::timestamp);
        let marketing_consent = cells.optional("marketing_consent", fields::flag);
        let consent_at = cells.optional("consent_at", fields::timestamp);
        let mut attributes = Map::new();
        for name in columns.extras(&Self::SPEC) {
            if let Some(value) = cells.optional(name, |t| fields::text(t, fields::MAX_ATTRIBUTE_CHARS)) {
                attributes.insert(name.to_owned(), serde_json::Value::String(value));
            }
        }
        Some(CustomerRow {
            external_id: external_id?,
            email: email?,
            first_name,
            last_name,
            birthday,
            signed_up_at,
            marketing_consent,
            consent_at,
            attributes,
        })
    }

    fn external_id(row: &CustomerRow) -> &str {
        &row.external_id
    }

    const HAS_CONSENT: bool = true;
    const LOOKED_UP_WHILE_WRITTEN: &'static [&'static str] = &["external_id"];

    async fn check_consent(
        txn: &impl BulkTarget,
        batch: &mut [Pending<CustomerRow>],
        guard: &super::consent::Guard,
        known: Option<super::consent::Known>,
    ) -> Result<super::consent::Checked, DbErr> {
        guard.check(txn, batch, known).await
    }

    const TABLE: &'static str = "customers";
    const COLUMNS: &'static [&'static str] = COLUMNS;

    fn updatable(columns: &Columns) -> Vec<&'static str> {
        updatable(columns)
    }

    fn values(r: CustomerRow, out: &mut Vec<Value>) {
        out.extend([
            r.external_id.into(),
            r.email.into(),
            r.first_name.into(),
            r.last_name.into(),
            r.birthday.into(),
            r.signed_up_at.into(),
            r.marketing_consent.unwrap_or(false).into(),
            Value::from(serde_json::Value::Object(r.attributes)),
        ]);
    }
}

/// What a re-import may change: the address, the optional columns the file
/// has (a column left out keeps its values), and the attributes when the file
/// has any.
fn updatable(columns: &Columns) -> Vec<&'static str> {
    let mut names = vec!["email"];
    names.extend(OPTIONAL.iter().copied().filter(|c| columns.has(c)));
    if columns.extras(&Customers::SPEC).next().is_some() {
        names.push("attributes");
    }
    names
}

/// A name: one line of text, short enough for a mail header.
fn name(text: &str) -> Result<String, String> {
    fields::one_line(text, fields::MAX_NAME_CHARS)
}
