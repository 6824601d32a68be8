//! `/ui/customers`: `report customers`' page (Pareto, RFM grid, value
//! deciles, customer-base models, lifecycle, complaints), made on the first
//! view and kept until the data changes ([`super::cache`]).

use axum::extract::State;
use axum::response::Response;

use super::cache::DataVersion;
use super::{Page, PageError, Ui};
use crate::report::customers::{self, Valuing};
use crate::report::html::{self, Charts};

/// How long before the as-of date the customer-base models are fitted for
/// their check: `report customers`' default (`--check 90d`).
const CHECK_DAYS: i64 = 90;

pub(super) async fn page(State(ui): State<Ui>) -> Response {
    let settings = ui.sources().settings;
    let page = async {
        let version = DataVersion::read(&ui.db).await?;
        let body = ui
            .customers
            .get_or_make(version, async || {
                let valuing = Valuing {
                    valuation: crate::scoring::valuation(&settings.lifetime_value),
                    check_days: CHECK_DAYS,
                    expected_years: settings.report.expected_years,
                };
                let report = customers::report(&ui.db, None, &valuing).await.map_err(anyhow::Error::from)?;
                Ok::<_, PageError>(html::customers_body(&report, &Charts::Inline)?)
            })
            .await?;
        Ok(Page { title: "Customer value".into(), body: body.as_ref().clone() })
    };
    ui.answer(page.await)
}
