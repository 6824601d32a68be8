//! `patron report campaign|customers`: a table on the terminal, JSON with
//! `--json`, and with `--out` an HTML page with charts.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use sea_orm::DatabaseConnection;

use super::models::{parse_as_of, parse_horizon};
use crate::config::Settings;
use crate::report::campaign::{self, CampaignReport, Comparison};
use crate::report::customers::{self, Clv, CustomerReport, Valuing};
use crate::report::outlook::BaseOutlook;
use crate::report::{cents, html, money, p_phrase, p_value, percent, points, small_percent};
use crate::scoring;

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// What a campaign earned beyond its control group: conversions, revenue and uplift, per run and overall.
    ///
    /// An order counts when it is placed within [report] attribution_window after the message
    /// was sent (for the control group: after the run's planned time). Every customer a run
    /// targeted counts, delivered or not, so the comparison with the control group is fair.
    Campaign {
        /// The campaign's name (its `name`, or the name of its file without .toml), as `campaign list` shows it.
        name: String,
        /// Only this run (the ids are in the table of every run).
        #[arg(long, value_name = "ID")]
        run: Option<i64>,
        /// Also write campaign-NAME.html with charts (SVG) into this folder.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Where the value of the customer base lies: RFM grid, 80/20 curve, deciles, lifetime
    /// values, expected purchases and P(alive) from the customer-base models (checked against
    /// what happened), lifecycle stages and complaints.
    Customers {
        /// Look at the base as it was at this date (YYYY-MM-DD, the end of that day) or time
        /// [default: the latest order].
        #[arg(long, value_name = "DATE", value_parser = parse_as_of)]
        as_of: Option<DateTime<Utc>>,
        /// Check the customer-base models: fit them this long before the as-of date and set
        /// their expected purchases in the period up to it against the purchases made.
        #[arg(long, value_name = "DURATION", default_value = "90d", value_parser = parse_horizon)]
        check: i64,
        /// Also write customers.html with charts (SVG) into this folder.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print one JSON object instead of the tables.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(db: &DatabaseConnection, settings: &Settings, command: &ReportCommand) -> anyhow::Result<()> {
    match command {
        ReportCommand::Campaign { name, run, out, json } => {
            let window = settings.report.attribution_window();
            let report = campaign::report(db, name, *run, window, Utc::now()).await?;
            print_report(&report, *json, campaign_text, out.as_ref().map(|dir| html::write_campaign(dir, &report)))
        }
        ReportCommand::Customers { as_of, check, out, json } => {
            let valuing = Valuing {
                valuation: scoring::valuation(&settings.lifetime_value),
                check_days: *check,
                expected_years: settings.report.expected_years,
            };
            let report = customers::report(db, *as_of, &valuing).await?;
            print_report(&report, *json, customers_text, out.as_ref().map(|dir| html::write_customers(dir, &report)))
        }
    }
}

fn print_report<R: serde::Serialize>(
    report: &R,
    json: bool,
    text: fn(&R) -> String,
    page: Option<std::io::Result<PathBuf>>,
) -> anyhow::Result<()> {
    let page = page.transpose().map_err(crate::report::ReportError::Io)?;
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", text(report));
    }
    match page {
        // With --json, standard output holds only the JSON.
        Some(path) if json => eprintln!("report written to {}", path.display()),
        Some(path) => println!("report written to {}", path.display()),
        None => {}
    }
    Ok(())
}

fn campaign_text(r: &CampaignReport) -> String {
    let mut text = format!(
        "campaign {}: {} run(s), orders counted within {} days of sending\n\n",
        r.campaign,
        r.runs.len(),
        r.window_days
    );
    text += &format!(
        "{:>6}  {:<16}  {:>7}  {:>7}  {:>7}  {:>6}  {:>7}  {:>7}  {:>7}  {:>7}  {:>8}  {:>7}   {:<30}  {}\n",
        "run",
        "planned for",
        "planned",
        "sent",
        "failed",
        "suppr.",
        "unknown",
        "expired",
        "waiting",
        "control",
        "targeted",
        "control",
        "uplift (95% CI)",
        "p-value"
    );
    for run in &r.runs {
        let d = &run.delivery;
        let c = &run.comparison;
        let (uplift, p) = match c.conversion {
            Some(u) => {
                (format!("{} ({} to {})", points(u.absolute), points(u.ci_low), points(u.ci_high)), p_value(u.p_value))
            }
            None => ("n/a".to_owned(), "n/a".to_owned()),
        };
        text += &format!(
            "{:>6}  {}  {:>7}  {:>7}  {:>7}  {:>6}  {:>7}  {:>7}  {:>7}  {:>7}  {:>8}  {:>7}   {:<30}  {}{}\n",
            run.run_id,
            run.scheduled_at.format("%Y-%m-%d %H:%M"),
            d.planned,
            d.sent,
            d.failed,
            d.suppressed,
            d.unknown,
            d.expired,
            d.waiting,
            d.control,
            percent(c.treatment.conversion_rate()),
            percent(c.control.conversion_rate()),
            uplift,
            p,
            if run.window_complete { "" } else { "  (window still open)" },
        );
    }
    text += &deliverability_text(r);
    text += "\nall runs:\n";
    text += &comparison_text(&r.overall);
    if !r.variants.is_empty() {
        text += &variants_text(r);
    }
    text += &variant_tests_text(r);
    text
}

/// The variants against each other, and the A/B test's decision.
fn variant_tests_text(r: &CampaignReport) -> String {
    let mut text = String::new();
    for t in &r.variant_tests {
        let conversion = t.conversion.map_or("n/a".to_owned(), |u| {
            format!("{} ({} to {}), {}", points(u.absolute), points(u.ci_low), points(u.ci_high), p_phrase(u.p_value))
        });
        let revenue = t.revenue.map_or("n/a".to_owned(), |u| {
            let ci = u.ci.map_or("no interval".to_owned(), |(low, high)| format!("{low:+.2} to {high:+.2}"));
            format!("{:+.2} ({ci}), {}", u.absolute, u.p_value.map_or("no p-value".to_owned(), p_phrase))
        });
        text +=
            &format!("{} against {}: conversion {conversion}; revenue per customer {revenue}\n", t.variant, t.against);
    }
    if let Some(w) = &r.winner {
        text +=
            &format!("winner: {} (decided {}): {}\n", w.winner, w.decided_at.format("%Y-%m-%d %H:%M UTC"), w.reason);
    }
    if !text.is_empty() {
        text.insert_str(0, "\nthe variants against each other (95% CI):\n");
    }
    text
}

/// What came back from each run's messages: bounces and spam complaints.
fn deliverability_text(r: &CampaignReport) -> String {
    let mut text = format!(
        "\nbounces and complaints (share of the messages handed to the mail server):\n{:>6}  {:>8}  {:>16}  {:>16}  {:>16}\n",
        "run", "handed", "hard bounces", "soft bounces", "complaints"
    );
    for run in &r.runs {
        let f = &run.feedback;
        let cell = |n: u64, rate: Option<f64>| format!("{n} ({})", small_percent(rate));
        text += &format!(
            "{:>6}  {:>8}  {:>16}  {:>16}  {:>16}\n",
            run.run_id,
            run.delivery.sent + run.delivery.unknown + run.delivery.failed,
            cell(f.hard_bounces, f.hard_bounce_rate),
            cell(f.soft_bounces, f.soft_bounce_rate),
            cell(f.complaints, f.complaint_rate),
        );
    }
    text
}

/// The A/B variants side by side, each against the whole control group.
fn variants_text(r: &CampaignReport) -> String {
    let mut text = format!(
        "\nA/B variants (each against the whole control group, {} customers, {}):\n  {:<12}{:>10}{:>12}{:>14}   {:<36}{}\n",
        r.overall.control.customers,
        percent(r.overall.control.conversion_rate()),
        "variant",
        "targeted",
        "conversion",
        "revenue/cust.",
        "uplift (95% CI)",
        "p-value"
    );
    for v in &r.variants {
        let c = &v.comparison;
        let (uplift, p) = c.conversion.map_or_else(
            || ("n/a".to_owned(), "n/a".to_owned()),
            |u| (format!("{} ({} to {})", points(u.absolute), points(u.ci_low), points(u.ci_high)), p_value(u.p_value)),
        );
        text += &format!(
            "  {:<12}{:>10}{:>12}{:>14}   {uplift:<36}{p}\n",
            v.variant,
            c.treatment.customers,
            percent(c.treatment.conversion_rate()),
            money(c.treatment.revenue_per_customer())
        );
    }
    text
}

fn comparison_text(c: &Comparison) -> String {
    let (t, k) = (&c.treatment, &c.control);
    let mut text = format!("  {:<30}{:>14}{:>14}\n", "", "targeted", "control");
    for (label, a, b) in [
        ("customers", t.customers.to_string(), k.customers.to_string()),
        ("converted", t.conversions.to_string(), k.conversions.to_string()),
        ("conversion rate", percent(t.conversion_rate()), percent(k.conversion_rate())),
        ("revenue", cents(t.revenue_cents), cents(k.revenue_cents)),
        ("revenue per customer", money(t.revenue_per_customer()), money(k.revenue_per_customer())),
    ] {
        text += &format!("  {label:<30}{a:>14}{b:>14}\n");
    }
    for (label, value) in html::uplift_rows(c) {
        text += &format!("  {:<30}{value}\n", label.to_lowercase());
    }
    text
}

fn customers_text(r: &CustomerReport) -> String {
    let mut text = format!(
        "customers as of {}: {} customers, {} buyers, {} orders, revenue {}\n",
        r.as_of.format("%Y-%m-%d %H:%M UTC"),
        r.customers,
        r.buyers,
        r.orders,
        cents(r.revenue_cents)
    );
    text += &format!(
        "top 20% of buyers ({} customers) bring {} of revenue\n",
        r.pareto.top20_customers,
        percent(r.pareto.top20_share)
    );
    text += "\nRFM grid: customers (revenue)\n";
    text += &format!("  {:<16}", "recency");
    for band in customers::FREQUENCY_BANDS {
        text += &format!("{:>22}", band.0);
    }
    for band in customers::RECENCY_BANDS {
        text += &format!("\n  {:<16}", band.0);
        for cell in r.rfm.iter().filter(|c| c.recency == band.0) {
            text += &format!("{:>22}", format!("{} ({})", cell.customers, cents(cell.value_cents)));
        }
    }
    text += "\n\nvalue deciles (1 = most valuable):\n";
    for d in &r.deciles {
        text += &format!(
            "  {:>2}  {:>7} customers  {:>14}  {:>6}\n",
            d.decile,
            d.customers,
            cents(d.value_cents),
            percent(d.share)
        );
    }
    text += &outlook_text(r);
    text += "\nlifecycle stages:\n";
    for s in &r.lifecycle {
        text += &format!("  {:<14}{:>8}\n", s.stage, s.customers);
    }
    text += &complaints_text(r);
    text += "\nmost valuable customers:\n";
    for t in &r.top_customers {
        text += &format!("  {:<20}{:>5} orders{:>14}\n", t.customer, t.orders, cents(t.value_cents));
    }
    text
}

fn outlook_text(r: &CustomerReport) -> String {
    let mut text = String::new();
    match (&r.outlook, &r.outlook_note) {
        (Some(o), _) => text += &base_outlook_text(o),
        (None, Some(why)) => text += &format!("\ncustomer-base models not fitted: {why}\n"),
        (None, None) => {}
    }
    if let Some(c) = &r.clv {
        text += &heuristic_clv_text(c);
    }
    text
}

fn base_outlook_text(o: &BaseOutlook) -> String {
    let m = &o.models.bgnbd;
    let mut text = format!(
        "\ncustomer-base models (BG/NBD r {:.4}, alpha {:.4} days, a {:.4}, b {:.4}; {} buyers, {} repeat buyers):\n",
        m.r, m.alpha, m.a, m.b, o.models.customers, o.models.repeat_buyers
    );
    text += &format!(
        "expected purchases of the whole base: {:.0} in the next 90 days, {:.0} in the next 365 days\n",
        o.expected_orders_90d, o.expected_orders_365d
    );
    for band in &o.alive {
        text += &format!(
            "  {:<32}{:>8} customers, {:>10.0} purchases expected in 365 days\n",
            band.band, band.customers, band.expected_orders_365d
        );
    }
    match (&o.clv, &o.clv_note) {
        (Some(c), _) => {
            text += &format!(
                "lifetime value over {:.0} days at {:.1}% a year: {} in all, mean {}, median {}, 90% below {}, \
                 99% below {} ({} customers)\n",
                c.horizon_days,
                c.annual_discount_rate * 100.0,
                money(Some(c.total)),
                money(Some(c.mean)),
                money(Some(c.median)),
                money(Some(c.p90)),
                money(Some(c.p99)),
                c.customers
            );
            for d in &c.deciles {
                text += &format!(
                    "  {:>2}  {:>7} customers  mean {:>12}  {:>6}\n",
                    d.decile,
                    d.customers,
                    money(Some(d.mean)),
                    percent(d.share)
                );
            }
        }
        (None, Some(why)) => text += &format!("no lifetime value from the models: {why}\n"),
        (None, None) => {}
    }
    match (&o.check, &o.check_note) {
        (Some(c), _) => {
            text += &format!(
                "check: fitted as of {}, {} buyers expected {:.0} purchase days in the {} days after, made {} ({})\n",
                c.fitted_as_of.format("%Y-%m-%d %H:%M UTC"),
                c.customers,
                c.expected,
                c.days,
                c.actual,
                c.error().map_or("n/a".to_owned(), |e| format!("{:+.1}%", e * 100.0))
            );
            for g in &c.groups {
                text += &format!(
                    "  {:>3} repeat purchases: {:>7} customers, expected {:>9.1}, made {:>7}\n",
                    g.repeat_purchases, g.customers, g.expected, g.actual
                );
            }
        }
        (None, Some(why)) => text += &format!("check not made: {why}\n"),
        (None, None) => {}
    }
    text
}

fn heuristic_clv_text(c: &Clv) -> String {
    format!(
        "\nlifetime value, base-wide estimate ({} years): active customer {}, average buyer {} (order value {})\n",
        c.expected_years,
        money(c.clv_active),
        money(c.clv_all),
        money(c.average_order_value)
    )
}

fn complaints_text(r: &CustomerReport) -> String {
    let c = &r.complaints;
    let mut text = String::from("\ninteractions by kind and status:\n");
    for (kind, status, n) in &c.by_kind_status {
        text += &format!("  {kind:<12}{status:<10}{n:>8}\n");
    }
    if let Some(s) = &c.resolution_days {
        text += &format!(
            "complaints resolved: {} in {:.1} days on average (median {:.1}, 90% within {:.1})\n",
            s.count, s.mean, s.median, s.p90
        );
    }
    if let Some(a) = &c.after {
        for (label, g) in [("after a resolved complaint", &a.complainants), ("without a complaint", &a.others)] {
            text += &format!(
                "{label}: {} customers, {} bought within {} days, revenue per customer {}\n",
                g.customers,
                percent(g.bought_share()),
                customers::AFTER_COMPLAINT_DAYS,
                money(g.revenue_per_customer())
            );
        }
    }
    text
}
