//! The report pages: one self-contained HTML file per report (no scripts, no
//! external assets) beside its SVG charts, so that the folder can be zipped,
//! mailed or served as static files. Customers appear by external id only.

mod outlook;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::campaign::{CampaignReport, Comparison};
use super::charts::{self, Axes, BLUE, Bar, GREY};
use super::customers::{Clv, CustomerReport, FREQUENCY_BANDS, RECENCY_BANDS};
use super::stats::Z95;
use super::{cents, money, p_value, percent, points, small_percent};
use crate::model::report::escape;

pub(crate) const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:66rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.5}
table{border-collapse:collapse;margin:1rem 0}
th,td{border:1px solid #ccc;padding:.35rem .7rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.num{text-align:right;white-space:nowrap}
figure{margin:1.5rem 0}
img{max-width:100%;border:1px solid #ddd}
figcaption{color:#555;font-size:.95rem}
.note{color:#555}
";

fn page(title: &str, body: &str) -> String {
    let title = escape(title);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
         <style>\n{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n{body}</body>\n</html>\n"
    )
}

/// Defined beside the model report, which the report pages build on.
pub use crate::model::report::Charts;

pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let head: String = header.iter().map(|h| format!("<th>{h}</th>")).collect();
    let body: String = rows
        .iter()
        .map(|row| {
            let cells: String = row.iter().map(|c| format!("<td class=\"num\">{c}</td>")).collect();
            format!("<tr>{cells}</tr>\n")
        })
        .collect();
    format!("<table>\n<tr>{head}</tr>\n{body}</table>\n")
}

/// A file-name-safe form of a campaign name.
fn slug(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

// ------------------------------------------------------------- campaign

/// Writes `campaign-NAME.html` and its charts into `dir` (created if missing); returns the page's path.
pub fn write_campaign(dir: &Path, report: &CampaignReport) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let body = campaign_body(report, &Charts::Files(dir))?;
    let path = dir.join(format!("campaign-{}.html", slug(&report.campaign)));
    fs::write(&path, page(&format!("Campaign report: {}", report.campaign), &body))?;
    Ok(path)
}

/// The campaign page's content, below its title.
pub fn campaign_body(report: &CampaignReport, charts: &Charts) -> io::Result<String> {
    let stem = format!("campaign-{}", slug(&report.campaign));
    Ok([
        campaign_intro(report),
        overall_section(&report.overall),
        charts.figure(
            &format!("{stem}-conversion.svg"),
            &conversion_chart(report)?,
            "Conversion rate by group",
            "Conversion rate of the control group and of the customers \
               the campaign targeted (each A/B variant separately), with 95% confidence intervals.",
        )?,
        charts.figure(
            &format!("{stem}-revenue.svg"),
            &revenue_chart(report)?,
            "Revenue per customer by group",
            "Revenue per customer in the attribution window, by group.",
        )?,
        charts.figure(
            &format!("{stem}-uplift.svg"),
            &uplift_chart(report)?,
            "Uplift per run",
            "The conversion-rate uplift of each run in percentage points, with its 95% \
               confidence interval. A bar whose interval crosses zero is not distinguishable from no effect.",
        )?,
        runs_section(report),
        deliverability_section(report),
        variants_section(report),
        variant_tests_section(report),
    ]
    .concat())
}

fn campaign_intro(report: &CampaignReport) -> String {
    format!(
        "<p>An order counts for a customer when it is placed within {:.0} days after the message was sent \
         (for the control group, and for messages not sent, after the run's planned time); an order at the very \
         moment of sending does not count. <b>Targeted</b> means every customer the run chose for a message, \
         whether or not the message was delivered (failed and suppressed ones included): that is the honest \
         comparison with the control group, which was chosen the same way and sent nothing.</p>\n\
         <p class=\"note\">The uplift is the targeted group's conversion rate minus the control group's, with a 95% \
         confidence interval (Wald, ±{Z95:.2} standard errors); the p-value is the chance of a difference at least \
         this large if the campaign had no effect (pooled two-proportion z-test). Incremental conversions and \
         revenue are the uplift per customer times the customers targeted.</p>\n",
        report.window_days
    )
}

fn overall_section(c: &Comparison) -> String {
    let (t, k) = (&c.treatment, &c.control);
    let rows = [
        ("Customers", t.customers.to_string(), k.customers.to_string()),
        ("Converted", t.conversions.to_string(), k.conversions.to_string()),
        ("Conversion rate", percent(t.conversion_rate()), percent(k.conversion_rate())),
        ("Revenue", cents(t.revenue_cents), cents(k.revenue_cents)),
        ("Revenue per customer", money(t.revenue_per_customer()), money(k.revenue_per_customer())),
    ];
    let arms: String = rows
        .iter()
        .map(|(label, a, b)| format!("<tr><th>{label}</th><td class=\"num\">{a}</td><td class=\"num\">{b}</td></tr>\n"))
        .collect();
    let uplift: String = uplift_rows(c)
        .iter()
        .map(|(label, value)| format!("<tr><th>{label}</th><td class=\"num\" colspan=\"2\">{value}</td></tr>\n"))
        .collect();
    format!("<h2>All runs</h2>\n<table>\n<tr><th></th><th>Targeted</th><th>Control</th></tr>\n{arms}{uplift}</table>\n")
}

/// The uplift figures of a comparison as (label, value) pairs; shared with the terminal table.
pub fn uplift_rows(c: &Comparison) -> Vec<(&'static str, String)> {
    let Some(u) = c.conversion else {
        return vec![("Uplift", "n/a: no control group (or no targeted customers) to compare with".to_owned())];
    };
    let relative = match (u.relative, u.relative_ci) {
        (None, _) => "n/a (the control group did not convert)".to_owned(),
        (Some(r), None) => format!("{:+.1}%", r * 100.0),
        (Some(r), Some((lo, hi))) => format!("{:+.1}% (95% CI {:+.1}% to {:+.1}%)", r * 100.0, lo * 100.0, hi * 100.0),
    };
    let revenue = c.revenue.map_or_else(String::new, |r| match r.ci {
        Some((lo, hi)) => format!("{:+.2} (95% CI {lo:+.2} to {hi:+.2})", r.absolute),
        None => format!("{:+.2}", r.absolute),
    });
    vec![
        ("Uplift (absolute)", format!("{} (95% CI {} to {})", points(u.absolute), points(u.ci_low), points(u.ci_high))),
        ("Uplift (relative)", relative),
        ("p-value", p_value(u.p_value)),
        ("Incremental conversions", c.incremental_conversions.map_or_else(String::new, |v| format!("{v:+.1}"))),
        ("Revenue uplift per customer", revenue),
        ("Incremental revenue", c.incremental_revenue.map_or_else(String::new, |v| format!("{v:+.2}"))),
    ]
}

fn runs_section(report: &CampaignReport) -> String {
    let rows: Vec<Vec<String>> = report
        .runs
        .iter()
        .map(|r| {
            let d = &r.delivery;
            let c = &r.comparison;
            let uplift = c.conversion.map_or_else(
                || "n/a".to_owned(),
                |u| format!("{} ({} to {})", points(u.absolute), points(u.ci_low), points(u.ci_high)),
            );
            vec![
                r.run_id.to_string(),
                r.scheduled_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                d.planned.to_string(),
                d.sent.to_string(),
                d.failed.to_string(),
                d.suppressed.to_string(),
                d.unknown.to_string(),
                d.expired.to_string(),
                d.waiting.to_string(),
                d.control.to_string(),
                percent(c.treatment.conversion_rate()),
                percent(c.control.conversion_rate()),
                uplift,
                c.conversion.map_or_else(|| "n/a".to_owned(), |u| p_value(u.p_value)),
                c.incremental_revenue.map_or_else(|| "n/a".to_owned(), |v| format!("{v:+.2}")),
                if r.window_complete { "yes" } else { "no, still open" }.to_owned(),
            ]
        })
        .collect();
    let header = [
        "Run",
        "Planned for",
        "Planned",
        "Sent",
        "Failed",
        "Suppressed",
        "Unknown",
        "Expired",
        "Waiting",
        "Control",
        "Targeted rate",
        "Control rate",
        "Uplift (95% CI)",
        "p-value",
        "Incremental revenue",
        "Window over",
    ];
    format!(
        "<h2>Runs</h2>\n<p>Planned counts every customer of the run, the control group included; waiting messages \
         are not sent yet; unknown ones reached the server, whose reply was lost; expired ones were not sent before \
         the campaign's expiry and never will be. While a run's window is still open, later orders can still count.</p>\n{}",
        table(&header, &rows)
    )
}

fn deliverability_section(report: &CampaignReport) -> String {
    let rows: Vec<Vec<String>> = report
        .runs
        .iter()
        .map(|r| {
            let f = &r.feedback;
            vec![
                r.run_id.to_string(),
                (r.delivery.sent + r.delivery.unknown + r.delivery.failed).to_string(),
                format!("{} ({})", f.hard_bounces, small_percent(f.hard_bounce_rate)),
                format!("{} ({})", f.soft_bounces, small_percent(f.soft_bounce_rate)),
                format!("{} ({})", f.complaints, small_percent(f.complaint_rate)),
            ]
        })
        .collect();
    let header = ["Run", "Handed to the mail server", "Hard bounces", "Soft bounces", "Spam complaints"];
    format!(
        "<h2>Deliverability</h2>\n<p>Messages of each run that bounced or drew a spam complaint, as the mail \
         server answered or reported later (bounces, feedback loops, provider webhooks), with their share of the \
         messages handed to the mail server. Mailbox providers want complaints under 0.3%.</p>\n{}",
        table(&header, &rows)
    )
}

fn variants_section(report: &CampaignReport) -> String {
    if report.variants.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = report
        .variants
        .iter()
        .map(|v| {
            let c = &v.comparison;
            let mut row = vec![
                escape(&v.variant),
                c.treatment.customers.to_string(),
                percent(c.treatment.conversion_rate()),
                money(c.treatment.revenue_per_customer()),
            ];
            row.extend(uplift_rows(c).into_iter().take(3).map(|(_, value)| value));
            row
        })
        .collect();
    let header =
        ["Variant", "Targeted", "Conversion rate", "Revenue per customer", "Uplift vs control", "Relative", "p-value"];
    format!(
        "<h2>A/B variants</h2>\n<p>Each variant's targeted customers against the whole control group (the control \
         group is drawn independently of the variant).</p>\n{}",
        table(&header, &rows)
    )
}

/// The variants against each other, and the A/B test's decision.
fn variant_tests_section(report: &CampaignReport) -> String {
    if report.variant_tests.is_empty() && report.winner.is_none() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = report
        .variant_tests
        .iter()
        .map(|t| {
            let conversion = t.conversion.map_or(["n/a".to_owned(), "n/a".to_owned()], |u| {
                [format!("{} ({} to {})", points(u.absolute), points(u.ci_low), points(u.ci_high)), p_value(u.p_value)]
            });
            let revenue = t.revenue.map_or(["n/a".to_owned(), "n/a".to_owned()], |u| {
                let ci = u.ci.map_or(String::new(), |(low, high)| format!(" ({low:+.2} to {high:+.2})"));
                [format!("{:+.2}{ci}", u.absolute), u.p_value.map_or("n/a".to_owned(), p_value)]
            });
            let mut row = vec![format!("{} against {}", escape(&t.variant), escape(&t.against))];
            row.extend(conversion.into_iter().chain(revenue));
            row
        })
        .collect();
    let header =
        ["Variants", "Conversion difference (95% CI)", "p-value", "Revenue per customer difference", "p-value"];
    let decision = report.winner.as_ref().map_or(String::new(), |w| {
        format!(
            "<p><strong>Winner: {}</strong> (decided {}): {}</p>\n",
            escape(&w.winner),
            w.decided_at.format("%Y-%m-%d %H:%M UTC"),
            escape(&w.reason)
        )
    });
    format!(
        "<h2>Variants against each other</h2>\n<p>Each variant's targeted customers against the first variant's.</p>\n{}{decision}",
        table(&header, &rows)
    )
}

/// The 95% Wald interval of one rate, for the whiskers.
fn rate_interval(successes: u64, trials: u64) -> Option<(f64, f64)> {
    (trials > 0).then(|| {
        let p = successes as f64 / trials as f64;
        let half = Z95 * (p * (1.0 - p) / trials as f64).sqrt();
        ((p - half).max(0.0) * 100.0, (p + half).min(1.0) * 100.0)
    })
}

fn conversion_chart(report: &CampaignReport) -> io::Result<String> {
    let arm = |label: String, customers: u64, conversions: u64, color| Bar {
        label,
        value: if customers > 0 { conversions as f64 / customers as f64 * 100.0 } else { 0.0 },
        color,
        interval: rate_interval(conversions, customers),
    };
    let control = &report.overall.control;
    let mut bars = vec![arm("Control".to_owned(), control.customers, control.conversions, GREY)];
    if report.variants.is_empty() {
        let t = &report.overall.treatment;
        bars.push(arm("Targeted".to_owned(), t.customers, t.conversions, BLUE));
    }
    for v in &report.variants {
        let t = &v.comparison.treatment;
        bars.push(arm(format!("Variant {}", v.variant), t.customers, t.conversions, BLUE));
    }
    let title = format!("{}: conversion rate by group", report.campaign);
    charts::bars(&Axes { title: &title, x_desc: "Group", y_desc: "Conversion rate (%)" }, &bars, 1)
}

fn revenue_chart(report: &CampaignReport) -> io::Result<String> {
    let arm = |label: &str, value: Option<f64>, color| Bar {
        label: label.to_owned(),
        value: value.unwrap_or(0.0),
        color,
        interval: None,
    };
    let mut bars = vec![arm("Control", report.overall.control.revenue_per_customer(), GREY)];
    if report.variants.is_empty() {
        bars.push(arm("Targeted", report.overall.treatment.revenue_per_customer(), BLUE));
    }
    for v in &report.variants {
        bars.push(arm(&format!("Variant {}", v.variant), v.comparison.treatment.revenue_per_customer(), BLUE));
    }
    let title = format!("{}: revenue per customer by group", report.campaign);
    charts::bars(&Axes { title: &title, x_desc: "Group", y_desc: "Revenue per customer" }, &bars, 2)
}

fn uplift_chart(report: &CampaignReport) -> io::Result<String> {
    let bars: Vec<Bar> = report
        .runs
        .iter()
        .map(|r| {
            let u = r.comparison.conversion;
            Bar {
                label: format!("run {}", r.run_id),
                value: u.map_or(0.0, |u| u.absolute * 100.0),
                color: BLUE,
                interval: u.map(|u| (u.ci_low * 100.0, u.ci_high * 100.0)),
            }
        })
        .collect();
    let title = format!("{}: conversion uplift per run (95% CI)", report.campaign);
    charts::bars(&Axes { title: &title, x_desc: "Run", y_desc: "Uplift (percentage points)" }, &bars, 1)
}

// ------------------------------------------------------------ customers

/// The chart files of the customers page that are always there, in the order they appear.
pub const CUSTOMER_CHARTS: [&str; 4] =
    ["customers-pareto.svg", "customers-rfm.svg", "customers-deciles.svg", "customers-lifecycle.svg"];

/// Writes `customers.html` and its charts into `dir` (created if missing); returns the page's path.
/// The customer-base models' charts come after the deciles when the models could be fitted.
pub fn write_customers(dir: &Path, report: &CustomerReport) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let body = customers_body(report, &Charts::Files(dir))?;
    let path = dir.join("customers.html");
    fs::write(&path, page("Customer value report", &body))?;
    Ok(path)
}

/// The customers page's content, below its title.
pub fn customers_body(report: &CustomerReport, charts: &Charts) -> io::Result<String> {
    let [pareto, rfm, deciles, lifecycle] = CUSTOMER_CHARTS;
    Ok([
        customers_intro(report),
        charts.figure(pareto, &pareto_chart(report)?, "Pareto curve", &pareto_caption(report))?,
        charts.figure(
            rfm,
            &rfm_chart(report)?,
            "RFM grid",
            "Customers by recency (days since the last order) and frequency (number of orders), \
               with the revenue of each group. Top left: recent, frequent buyers.",
        )?,
        rfm_table(report),
        charts.figure(
            deciles,
            &deciles_chart(report)?,
            "Revenue by value decile",
            "Each tenth of the buyers, most valuable first, and its share of revenue.",
        )?,
        deciles_table(report),
        outlook::section(charts, report)?,
        report.clv.as_ref().map(clv_section).unwrap_or_default(),
        charts.figure(
            lifecycle,
            &lifecycle_chart(report)?,
            "Lifecycle stages",
            "Customers by lifecycle stage (definitions below).",
        )?,
        lifecycle_table(report),
        complaints_section(report),
        top_customers_section(report),
    ]
    .concat())
}

fn customers_intro(r: &CustomerReport) -> String {
    format!(
        "<p>As of {}: {} customers, {} of whom have bought; {} orders worth {} in all.</p>\n",
        r.as_of.format("%Y-%m-%d %H:%M UTC"),
        r.customers,
        r.buyers,
        r.orders,
        cents(r.revenue_cents)
    )
}

fn pareto_caption(r: &CustomerReport) -> String {
    let share = percent(r.pareto.top20_share);
    format!(
        "The Pareto curve: the share of revenue brought by the most valuable customers. The {} most valuable buyers \
         (the top 20%) bring <b>{share}</b> of all revenue; the 80/20 rule would say 80%.",
        r.pareto.top20_customers
    )
}

fn rfm_table(r: &CustomerReport) -> String {
    let mut header = vec!["Recency \\ Frequency"];
    header.extend(FREQUENCY_BANDS.iter().map(|b| b.0));
    let rows: Vec<Vec<String>> = RECENCY_BANDS
        .iter()
        .map(|band| {
            let mut row = vec![band.0.to_owned()];
            row.extend(
                r.rfm
                    .iter()
                    .filter(|c| c.recency == band.0)
                    .map(|c| format!("{} ({})", c.customers, cents(c.value_cents))),
            );
            row
        })
        .collect();
    format!("<p>Customers (and their revenue) in each cell:</p>\n{}", table(&header, &rows))
}

fn deciles_table(r: &CustomerReport) -> String {
    let rows: Vec<Vec<String>> = r
        .deciles
        .iter()
        .map(|d| vec![d.decile.to_string(), d.customers.to_string(), cents(d.value_cents), percent(d.share)])
        .collect();
    table(&["Decile", "Customers", "Revenue", "Share of revenue"], &rows)
}

fn clv_section(c: &Clv) -> String {
    let rows = vec![
        vec!["Average order value (last 365 days)".to_owned(), money(c.average_order_value)],
        vec![
            "Orders a year per active customer".to_owned(),
            c.orders_per_year_active.map_or("n/a".into(), |v| format!("{v:.2}")),
        ],
        vec![
            "Orders a year per buyer (lapsed included)".to_owned(),
            c.orders_per_year_all.map_or("n/a".into(), |v| format!("{v:.2}")),
        ],
        vec!["Expected years".to_owned(), format!("{}", c.expected_years)],
        vec!["Lifetime value of an active customer".to_owned(), money(c.clv_active)],
        vec!["Lifetime value of an average buyer".to_owned(), money(c.clv_all)],
    ];
    format!(
        "<h2>Customer lifetime value, base-wide estimate</h2>\n<p>The customer-base models give no lifetime value \
         here (see above), so this page estimates one for the whole base: average order value × orders a year × \
         expected years (the <code>[report] expected_years</code> setting), from the orders of the 365 days before \
         the as-of date.</p>\n{}",
        table(&["", "Value"], &rows)
    )
}

fn lifecycle_table(r: &CustomerReport) -> String {
    let rows: Vec<Vec<String>> =
        r.lifecycle.iter().map(|s| vec![s.stage.to_owned(), s.customers.to_string()]).collect();
    format!(
        "<p><b>new</b>: first order less than 90 days ago; <b>won back</b>: an order less than 180 days ago that came \
         more than 365 days after the one before; <b>active</b>: last order less than 180 days ago; <b>at risk</b>: \
         180 to 365 days ago; <b>lapsed</b>: longer ago; <b>never bought</b>: no order yet. The first that applies \
         wins.</p>\n{}",
        table(&["Stage", "Customers"], &rows)
    )
}

fn complaints_section(r: &CustomerReport) -> String {
    let c = &r.complaints;
    let rows: Vec<Vec<String>> =
        c.by_kind_status.iter().map(|(k, s, n)| vec![escape(k), escape(s), n.to_string()]).collect();
    let resolution = c.resolution_days.as_ref().map_or_else(
        || "<p>No complaint has been resolved yet.</p>\n".to_owned(),
        |s| {
            format!(
                "<p>{} resolved complaints took {:.1} days on average to resolve (median {:.1}, 90% within {:.1}).</p>\n",
                s.count, s.mean, s.median, s.p90
            )
        },
    );
    let after = c.after.as_ref().map_or_else(
        || "<p>No resolved complaint is old enough to compare purchases after it.</p>\n".to_owned(),
        |a| {
            let group = |g: &super::customers::Group| {
                vec![
                    g.customers.to_string(),
                    percent(g.bought_share()),
                    g.orders.to_string(),
                    money(g.revenue_per_customer()),
                ]
            };
            let mut complainants = vec!["After a resolved complaint".to_owned()];
            complainants.extend(group(&a.complainants));
            let mut others = vec![format!("No complaint (from {})", a.reference.format("%Y-%m-%d"))];
            others.extend(group(&a.others));
            format!(
                "<p>Purchases in the {} days after a complaint was resolved, against customers who never complained \
                 over the same length of time from the median resolution date (only customers who had bought \
                 before).</p>\n{}",
                super::customers::AFTER_COMPLAINT_DAYS,
                table(&["", "Customers", "Bought again", "Orders", "Revenue per customer"], &[complainants, others])
            )
        },
    );
    format!(
        "<h2>Complaints and other interactions</h2>\n{}{resolution}{after}",
        table(&["Kind", "Status", "Count"], &rows)
    )
}

fn top_customers_section(r: &CustomerReport) -> String {
    let rows: Vec<Vec<String>> =
        r.top_customers.iter().map(|t| vec![escape(&t.customer), t.orders.to_string(), cents(t.value_cents)]).collect();
    format!("<h2>Most valuable customers</h2>\n{}", table(&["Customer id", "Orders", "Revenue"], &rows))
}

fn pareto_chart(r: &CustomerReport) -> io::Result<String> {
    let points: Vec<(f64, f64)> = r.pareto.curve.iter().map(|&(x, y)| (x * 100.0, y * 100.0)).collect();
    let axes = Axes {
        title: "Pareto curve: share of revenue by share of customers",
        x_desc: "Customers, most valuable first (%)",
        y_desc: "Share of revenue (%)",
    };
    charts::share_curve(&axes, &points, 20.0)
}

fn rfm_chart(r: &CustomerReport) -> io::Result<String> {
    let columns: Vec<&str> = FREQUENCY_BANDS.iter().map(|b| b.0).collect();
    let rows: Vec<&str> = RECENCY_BANDS.iter().map(|b| b.0).collect();
    let cells: Vec<(u64, String)> = r.rfm.iter().map(|c| (c.customers, c.customers.to_string())).collect();
    let axes = Axes {
        title: "RFM grid: customers by recency and frequency",
        x_desc: "Frequency (orders)",
        y_desc: "Recency (days since the last order)",
    };
    charts::heat_map(&axes, &columns, &rows, &cells)
}

fn deciles_chart(r: &CustomerReport) -> io::Result<String> {
    let bars: Vec<Bar> = r
        .deciles
        .iter()
        .map(|d| Bar {
            label: d.decile.to_string(),
            value: d.share.unwrap_or(0.0) * 100.0,
            color: BLUE,
            interval: None,
        })
        .collect();
    let axes = Axes {
        title: "Share of revenue by value decile",
        x_desc: "Value decile (1 = most valuable 10%)",
        y_desc: "Share of revenue (%)",
    };
    charts::bars(&axes, &bars, 0)
}

fn lifecycle_chart(r: &CustomerReport) -> io::Result<String> {
    let bars: Vec<Bar> = r
        .lifecycle
        .iter()
        .map(|s| Bar { label: s.stage.to_owned(), value: s.customers as f64, color: BLUE, interval: None })
        .collect();
    let axes = Axes { title: "Customers by lifecycle stage", x_desc: "Lifecycle stage", y_desc: "Customers" };
    charts::bars(&axes, &bars, 0)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};

    use super::*;
    use crate::report::attribution::{Exposure, Outcome};
    use crate::report::campaign::summarise;

    #[test]
    fn a_campaign_page_escapes_names_and_links_its_charts_by_a_safe_file_name() {
        let at = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let exposure = |customer_id, state: &str| Exposure {
            run_id: 7,
            customer_id,
            state: state.into(),
            variant: Some("<b>".into()),
            by_winner: false,
            start: at,
        };
        let report = summarise(
            "spring <&> sale",
            &[(7, at)],
            &[exposure(1, "sent"), exposure(2, "control")],
            &[Outcome { converted: true, revenue_cents: 500 }, Outcome::default()],
            Duration::days(30),
            at + Duration::days(31),
        );
        let dir = tempfile::tempdir().unwrap();
        let page = write_campaign(dir.path(), &report).unwrap();
        assert_eq!(page, dir.path().join("campaign-spring_____sale.html"));
        let html = fs::read_to_string(&page).unwrap();
        assert!(html.contains("<title>Campaign report: spring &lt;&amp;&gt; sale</title>"));
        assert!(html.contains("<td class=\"num\">&lt;b&gt;</td>"), "the variant name is escaped");
        assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
        for chart in ["conversion", "revenue", "uplift"] {
            let file = format!("campaign-spring_____sale-{chart}.svg");
            assert!(html.contains(&format!("<img src=\"{file}\"")), "{chart} not linked");
            let svg = fs::read_to_string(dir.path().join(&file)).unwrap();
            let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{file}: {e}"));
            let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).map(str::trim).collect();
            assert!(texts.iter().any(|t| t.starts_with("spring <&> sale: ")), "{file}: {texts:?}");
        }
    }
}
