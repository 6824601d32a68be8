//! The customers page's section on the customer-base models: their
//! parameters, the spread of lifetime values, P(alive) bands and the check
//! of expected against actual purchases, with two charts.

use std::io;

use super::{Charts, table};
use crate::report::charts::{self, Axes, BLUE, Bar, GREY};
use crate::report::customers::CustomerReport;
use crate::report::outlook::{BaseOutlook, Check, ClvSpread};
use crate::report::{money, percent};

/// The chart files of the section, when the models could be fitted.
pub const CLV_CHART: &str = "customers-clv.svg";
pub const CHECK_CHART: &str = "customers-check.svg";

/// The section's HTML, its charts where `charts` puts them.
pub fn section(charts: &Charts, r: &CustomerReport) -> io::Result<String> {
    let Some(o) = &r.outlook else {
        let why = r.outlook_note.as_deref().unwrap_or("no buyer");
        return Ok(format!(
            "<h2>Customer-base models</h2>\n<p class=\"note\">The customer-base models (BG/NBD and Gamma-Gamma) \
             could not be fitted as of this date: {}. The lifetime value below is a base-wide estimate \
             instead.</p>\n",
            super::escape(why)
        ));
    };
    let mut html = intro(o) + &alive_table(o);
    match (&o.clv, &o.clv_note) {
        (Some(clv), _) => {
            html += &clv_part(charts, clv)?;
        }
        (None, note) => {
            html += &format!(
                "<p class=\"note\">No lifetime value from the models: {}.</p>\n",
                super::escape(note.as_deref().unwrap_or("the Gamma-Gamma model could not be fitted"))
            );
        }
    }
    match (&o.check, &o.check_note) {
        (Some(check), _) => {
            html += &check_part(charts, check)?;
        }
        (None, note) => {
            html += &format!(
                "<h3>Check against what happened</h3>\n<p class=\"note\">Not made: {}.</p>\n",
                super::escape(note.as_deref().unwrap_or("no buyer before the check's start"))
            );
        }
    }
    Ok(html)
}

fn intro(o: &BaseOutlook) -> String {
    let m = &o.models;
    let b = &m.bgnbd;
    let spend = m.gamma_gamma.map_or_else(
        || "Gamma-Gamma: not fitted".to_owned(),
        |g| format!("Gamma-Gamma p = {:.4}, q = {:.4}, γ = {:.4}", g.p, g.q, g.gamma),
    );
    format!(
        "<h2>Customer-base models</h2>\n<p>BG/NBD (how many purchases each buyer will make and whether they are \
         still a customer) and Gamma-Gamma (what those purchases will be worth), fitted by maximum likelihood on \
         the purchase days of {} buyers ({} repeat buyers) before the as-of date: BG/NBD r = {:.4}, α = {:.4} days, \
         a = {:.4}, b = {:.4}; {spend}.</p>\n<p>The whole base is expected to buy on <b>{:.0}</b> days in the next \
         90 days and <b>{:.0}</b> in the next 365.</p>\n",
        m.customers, m.repeat_buyers, b.r, b.alpha, b.a, b.b, o.expected_orders_90d, o.expected_orders_365d
    )
}

fn alive_table(o: &BaseOutlook) -> String {
    let rows: Vec<Vec<String>> = o
        .alive
        .iter()
        .map(|b| vec![b.band.to_owned(), b.customers.to_string(), format!("{:.0}", b.expected_orders_365d)])
        .collect();
    format!(
        "<p>Buyers by the probability that they are still customers (P(alive)):</p>\n{}",
        table(&["P(alive)", "Customers", "Purchases expected in 365 days"], &rows)
    )
}

fn clv_part(charts: &Charts, c: &ClvSpread) -> io::Result<String> {
    let rows: Vec<Vec<String>> = c
        .deciles
        .iter()
        .map(|d| vec![d.decile.to_string(), d.customers.to_string(), money(Some(d.mean)), percent(d.share)])
        .collect();
    Ok(format!(
        "<h3>Customer lifetime value</h3>\n<p>Each buyer's expected purchases over the next {:.0} days (BG/NBD), \
         month by month, times their expected spend per purchase (Gamma-Gamma), discounted at {:.1}% a year \
         (the <code>[lifetime_value]</code> settings). {} buyers are worth <b>{}</b> in all: {} on average, \
         median {}, 90% below {}, 99% below {}.</p>\n{}{}",
        c.horizon_days,
        c.annual_discount_rate * 100.0,
        c.customers,
        money(Some(c.total)),
        money(Some(c.mean)),
        money(Some(c.median)),
        money(Some(c.p90)),
        money(Some(c.p99)),
        charts.figure(
            CLV_CHART,
            &clv_chart(c)?,
            "Mean lifetime value by decile",
            "Mean lifetime value of each tenth of the buyers, highest first."
        )?,
        table(&["Decile", "Customers", "Mean lifetime value", "Share of all"], &rows)
    ))
}

fn check_part(charts: &Charts, c: &Check) -> io::Result<String> {
    let rows: Vec<Vec<String>> = c
        .groups
        .iter()
        .map(|g| {
            vec![
                g.repeat_purchases.clone(),
                g.customers.to_string(),
                format!("{:.1}", g.expected),
                g.actual.to_string(),
            ]
        })
        .collect();
    let error = c.error().map_or("n/a".to_owned(), |e| format!("{:+.1}%", e * 100.0));
    Ok(format!(
        "<h3>Check against what happened</h3>\n<p>Fitted again as of {} on the purchases before it, the models \
         expected the {} buyers of that day to buy on <b>{:.0}</b> days in the {} days that followed; they bought \
         on <b>{}</b> ({error}). By the repeat purchases each had made by then:</p>\n{}{}",
        c.fitted_as_of.format("%Y-%m-%d %H:%M UTC"),
        c.customers,
        c.expected,
        c.days,
        c.actual,
        charts.figure(
            CHECK_CHART,
            &check_chart(c)?,
            "Expected and actual purchases",
            "Purchase days expected by the models (grey) and made (blue), by repeat purchases before the check."
        )?,
        table(&["Repeat purchases", "Customers", "Expected", "Made"], &rows)
    ))
}

fn clv_chart(c: &ClvSpread) -> io::Result<String> {
    let bars: Vec<Bar> = c
        .deciles
        .iter()
        .map(|d| Bar { label: d.decile.to_string(), value: d.mean, color: BLUE, interval: None })
        .collect();
    let axes = Axes {
        title: "Lifetime value by decile",
        x_desc: "Lifetime value decile (1 = most valuable 10%)",
        y_desc: "Mean lifetime value",
    };
    charts::bars(&axes, &bars, 0)
}

fn check_chart(c: &Check) -> io::Result<String> {
    let bars: Vec<Bar> = c
        .groups
        .iter()
        .flat_map(|g| {
            [
                Bar { label: g.repeat_purchases.clone(), value: g.expected, color: GREY, interval: None },
                Bar { label: String::new(), value: g.actual as f64, color: BLUE, interval: None },
            ]
        })
        .collect();
    let axes = Axes {
        title: "Expected (grey) and actual (blue) purchases",
        x_desc: "Repeat purchases before the check",
        y_desc: "Purchase days",
    };
    charts::bars(&axes, &bars, 0)
}
