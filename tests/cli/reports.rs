//! `patron report campaign|customers`: uplift figures against hand-computed
//! values, the attribution window at its edges, the Pareto share on the CDNOW
//! example data, and the pages and charts.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::support::{TestEnv, each_backend, example};

/// Customers 1..=n.
fn customers(env: &TestEnv, n: u32) {
    env.numbered_customers(n, "'Ann'");
}

/// A run of `campaign` planned at `at`.
fn run(env: &TestEnv, campaign: &str, at: &str) {
    env.execute(&format!(
        "INSERT INTO campaign_runs (campaign, kind, scheduled_at, state, created_at) \
         VALUES ('{campaign}', 'marketing', '{at}', 'planned', '{at}')"
    ));
}

/// Outbox rows of the run of `campaign` at `run_at` for customers first..=last,
/// in `state`, sent at `sent_at` when given.
fn outbox(env: &TestEnv, campaign: &str, run_at: &str, (first, last): (u32, u32), state: &str, sent_at: Option<&str>) {
    let sent = sent_at.map_or("NULL".to_owned(), |t| format!("'{t}'"));
    env.execute(&format!(
        "INSERT INTO outbox (run_id, customer_id, state, attempts, sent_at, created_at, updated_at) \
         SELECT r.id, c.id, '{state}', 1, {sent}, '{run_at}', '{run_at}' FROM campaign_runs r, customers c \
         WHERE r.campaign = '{campaign}' AND r.scheduled_at = '{run_at}' \
         AND CAST(c.external_id AS INTEGER) BETWEEN {first} AND {last}"
    ));
}

/// One order of `cents` at `at` for each of customers first..=last; `tag` keeps order ids unique.
fn orders(env: &TestEnv, tag: &str, (first, last): (u32, u32), at: &str, cents: i64) {
    env.execute(&format!(
        "INSERT INTO orders (external_id, customer_id, ordered_at, amount_cents) \
         SELECT '{tag}-' || c.external_id, c.id, '{at}', {cents} FROM customers c \
         WHERE CAST(c.external_id AS INTEGER) BETWEEN {first} AND {last}"
    ));
}

fn json(env: &TestEnv, args: &[&str]) -> Value {
    let run = env.ok(args);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn close(value: &Value, expected: f64, tolerance: f64) {
    let got = value.as_f64().unwrap_or_else(|| panic!("{value} is not a number"));
    assert!((got - expected).abs() <= tolerance, "{got} is not {expected} (±{tolerance})");
}

const RUN1: &str = "2026-03-01T10:00:00+00:00";
const SENT1: &str = "2026-03-01T12:00:00+00:00";
const RUN2: &str = "2026-05-01T10:00:00+00:00";

/// Run 1: 200 sent (6 buy 50.00), 100 control (none buy).
/// Run 2: 1000 sent (120 buy), 1000 control (90 buy).
fn two_runs(env: &TestEnv) {
    customers(env, 2000);
    run(env, "winback", RUN1);
    outbox(env, "winback", RUN1, (1, 200), "sent", Some(SENT1));
    outbox(env, "winback", RUN1, (201, 300), "control", None);
    orders(env, "r1", (1, 6), "2026-03-05T09:00:00+00:00", 5000);
    run(env, "winback", RUN2);
    outbox(env, "winback", RUN2, (1, 1000), "sent", Some(RUN2));
    outbox(env, "winback", RUN2, (1001, 2000), "control", None);
    orders(env, "r2t", (1, 120), "2026-05-10T09:00:00+00:00", 2000);
    orders(env, "r2c", (1001, 1090), "2026-05-10T09:00:00+00:00", 2000);
}

#[test]
fn campaign_uplift_interval_and_p_value_match_hand_computed_values() {
    each_backend(|env| {
        two_runs(env);
        let report = json(env, &["report", "campaign", "winback", "--json"]);
        let runs = report["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);

        // Run 1, no conversions in the control arm:
        // pt = 6/200 = 0.03, pc = 0; Wald SE = √(0.03·0.97/200) = 0.0120623 → CI 0.03 ± 0.0236418;
        // pooled p = 6/300 = 0.02, SE0 = √(0.02·0.98·(1/200 + 1/100)) = 0.0171464, z = 1.749636, p = 0.080181.
        // No relative uplift (from a control rate of zero). Revenue: 300.00 over 200 = 1.50 a customer
        // against 0: sample variance (6·50² − 300²/200)/199 = 73.11558, SE = √(73.11558/200) = 0.604630,
        // CI 1.5 ± 1.185046 = [0.314946, 2.685054]; incremental revenue 1.5 · 200 = 300.
        let first = &runs[0]["comparison"];
        assert_eq!(runs[0]["delivery"]["sent"], 200);
        assert_eq!(runs[0]["delivery"]["control"], 100);
        assert_eq!(runs[0]["delivery"]["planned"], 300);
        let u = &first["conversion"];
        close(&u["absolute"], 0.03, 1e-12);
        close(&u["ci_low"], 0.006_358_3, 1e-6);
        close(&u["ci_high"], 0.053_641_7, 1e-6);
        close(&u["p_value"], 0.080_181, 1e-5);
        assert!(u["relative"].is_null());
        close(&first["revenue"]["ci"][0], 0.314_946, 1e-5);
        close(&first["revenue"]["ci"][1], 2.685_054, 1e-5);
        close(&first["incremental_revenue"], 300.0, 1e-9);
        close(&first["incremental_conversions"], 6.0, 1e-9);

        // Run 2: pt = 0.12, pc = 0.09; Wald SE = √0.0001875 = 0.0136931 → CI [0.0031621, 0.0568379];
        // pooled p = 0.105, SE0 = 0.0137095, z = 2.188266, p = 0.028650; relative 0.03/0.09 = 1/3
        // with the log rate ratio interval exp(ln 4/3 ± 1.959964·0.1320774) − 1 = [0.0292343, 0.7272820];
        // incremental conversions 0.03 · 1000 = 30.
        let u = &runs[1]["comparison"]["conversion"];
        close(&u["absolute"], 0.03, 1e-12);
        close(&u["ci_low"], 0.003_162_1, 1e-6);
        close(&u["ci_high"], 0.056_837_9, 1e-6);
        close(&u["p_value"], 0.028_650, 1e-5);
        close(&u["relative"], 1.0 / 3.0, 1e-12);
        close(&u["relative_ci"][0], 0.029_234_3, 1e-6);
        close(&u["relative_ci"][1], 0.727_282_0, 1e-6);
        close(&runs[1]["comparison"]["incremental_conversions"], 30.0, 1e-9);

        // Overall: treatment 126 of 1200, control 90 of 1100.
        let overall = &report["overall"];
        assert_eq!(
            (overall["treatment"]["customers"].as_u64(), overall["treatment"]["conversions"].as_u64()),
            (Some(1200), Some(126))
        );
        assert_eq!(
            (overall["control"]["customers"].as_u64(), overall["control"]["conversions"].as_u64()),
            (Some(1100), Some(90))
        );

        // The terminal table shows the same figures, rounded.
        let text = env.ok(&["report", "campaign", "winback"]).stdout;
        for figure in ["+3.0 pp (+0.6 pp to +5.4 pp)", "0.080", "+3.0 pp (+0.3 pp to +5.7 pp)", "0.029"] {
            assert!(text.contains(figure), "{figure} missing from\n{text}");
        }

        // --run keeps one run.
        let one = json(env, &["report", "campaign", "winback", "--run", &runs[1]["run_id"].to_string(), "--json"]);
        assert_eq!(one["runs"].as_array().unwrap().len(), 1);
        assert_eq!(one["overall"]["treatment"]["customers"], 1000);
    });
}

#[test]
fn attribution_window_counts_an_order_at_its_end_but_not_at_its_start_or_a_second_later() {
    each_backend(|env| {
        customers(env, 8);
        let at = "2026-03-01T10:00:00+00:00";
        let sent = "2026-03-02T10:00:00+00:00";
        run(env, "welcome", at);
        outbox(env, "welcome", at, (1, 5), "sent", Some(sent));
        outbox(env, "welcome", at, (6, 7), "control", None);
        // Never sent: its window starts at the run's planned time (intent to treat).
        outbox(env, "welcome", at, (8, 8), "failed", None);
        orders(env, "a", (1, 1), sent, 100); // at the moment of sending: no
        orders(env, "b", (2, 2), "2026-03-02T10:00:01+00:00", 200); // a second later: yes
        orders(env, "c", (3, 3), "2026-04-01T10:00:00+00:00", 300); // exactly sent + 30d: yes
        orders(env, "d", (4, 4), "2026-04-01T10:00:01+00:00", 400); // a second after the end: no
        orders(env, "e", (5, 5), "2026-03-01T11:00:00+00:00", 500); // before sending: no
        orders(env, "f", (6, 6), "2026-03-31T10:00:00+00:00", 600); // control, planned time + 30d: yes
        orders(env, "g", (7, 7), at, 700); // control, at the planned time: no
        orders(env, "h", (8, 8), "2026-03-02T10:00:00+00:00", 800); // failed, planned time + 1d: yes

        let report = json(env, &["report", "campaign", "welcome", "--json"]);
        let overall = &report["overall"];
        assert_eq!(overall["treatment"]["customers"], 6);
        assert_eq!(overall["treatment"]["conversions"], 3);
        assert_eq!(overall["treatment"]["revenue_cents"], 200 + 300 + 800);
        assert_eq!(overall["control"]["conversions"], 1);
        assert_eq!(overall["control"]["revenue_cents"], 600);
        assert_eq!(report["runs"][0]["delivery"]["failed"], 1);

        // A one-day window: only the order a second after sending and the failed row's order at +1d.
        let mut command = env.command(&["report", "campaign", "welcome", "--json"]);
        let out = command.env("PATRON__REPORT__ATTRIBUTION_WINDOW", "1d").output().unwrap();
        let short: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(short["window_days"], 1.0);
        assert_eq!(short["overall"]["treatment"]["revenue_cents"], 200 + 800);
        assert_eq!(short["overall"]["control"]["conversions"], 0);
    });
}

#[test]
fn an_unknown_campaign_or_run_is_refused_with_exit_code_2() {
    each_backend(|env| {
        customers(env, 2);
        let unknown = env.patron(&["report", "campaign", "nosuch"]);
        assert_eq!(unknown.code, 2, "{}", unknown.stderr);
        assert!(unknown.stderr.contains("campaign `nosuch` has no runs to report on"), "{}", unknown.stderr);
        run(env, "welcome", RUN1);
        outbox(env, "welcome", RUN1, (1, 2), "sent", Some(SENT1));
        let bad_run = env.patron(&["report", "campaign", "welcome", "--run", "999999"]);
        assert_eq!(bad_run.code, 2, "{}", bad_run.stderr);
        assert!(bad_run.stderr.contains("campaign `welcome` has no run 999999"), "{}", bad_run.stderr);
        let bad_window = env
            .command(&["report", "campaign", "welcome"])
            .env("PATRON__REPORT__ATTRIBUTION_WINDOW", "0d")
            .output()
            .unwrap();
        assert_eq!(bad_window.status.code(), Some(2));
    });
}

/// The top-20% revenue share computed straight from orders.csv.
fn cdnow_top20_share() -> f64 {
    let mut reader = csv::Reader::from_path(example("orders.csv")).expect("orders.csv");
    let mut by_customer: HashMap<String, i64> = HashMap::new();
    for record in reader.records() {
        let record = record.unwrap();
        let (units, fraction) = record[3].split_once('.').unwrap_or((&record[3], "0"));
        let cents = units.parse::<i64>().unwrap() * 100 + format!("{fraction:0<2}").parse::<i64>().unwrap();
        *by_customer.entry(record[1].to_owned()).or_default() += cents;
    }
    let mut values: Vec<i64> = by_customer.into_values().collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    let top = (values.len() * 2).div_ceil(10);
    values[..top].iter().sum::<i64>() as f64 / values.iter().sum::<i64>() as f64
}

fn import_example(env: &TestEnv) {
    for what in ["customers", "orders", "interactions"] {
        env.ok(&["import", what, &example(&format!("{what}.csv")).display().to_string()]);
    }
}

#[test]
fn the_pareto_share_of_the_top_fifth_on_cdnow_matches_an_independent_sum() {
    each_backend(|env| {
        import_example(env);
        let report = json(env, &["report", "customers", "--json"]);
        let expected = cdnow_top20_share();
        close(&report["pareto"]["top20_share"], expected, 1e-12);
        assert_eq!(report["buyers"], 2357);
        assert_eq!(report["pareto"]["top20_customers"], 472);
        let text = env.ok(&["report", "customers"]).stdout;
        assert!(
            text.contains(&format!("top 20% of buyers (472 customers) bring {:.1}% of revenue", expected * 100.0)),
            "{text}"
        );
        // Reports name customers by external id, never by address or name.
        assert!(text.contains("C1901"), "{text}");
        assert!(!text.contains("@example.com"), "{text}");
    });
}

#[test]
fn the_customer_report_fits_the_customer_base_models_and_checks_them_against_the_cdnow_holdout() {
    each_backend(|env| {
        import_example(env);
        // Fitted as of the end of 1997-09-30, checked on the 39 weeks to 1998-06-30 (tests/data/lifetime:
        // 1,882 purchase days were made, SciPy's fit of BG/NBD expected 1,653.41).
        let args = ["report", "customers", "--as-of", "1998-06-30T23:59:59Z", "--check", "273d"];
        let report = json(env, &[&args[..], &["--json"]].concat());
        let check = &report["outlook"]["check"];
        assert_eq!(check["fitted_as_of"], "1997-09-30T23:59:59Z");
        assert_eq!((check["days"].as_i64(), check["customers"].as_u64()), (Some(273), Some(2357)));
        assert_eq!(check["actual"], 1882);
        close(&check["expected"], 1653.41, 1653.41 * 0.005);
        let groups = check["groups"].as_array().expect("groups");
        assert_eq!(groups.iter().map(|g| g["customers"].as_u64().unwrap()).sum::<u64>(), 2357);
        assert_eq!((groups[0]["repeat_purchases"].as_str(), groups[0]["customers"].as_u64()), (Some("0"), Some(1411)));
        // Every buyer has a lifetime value, so the base-wide estimate is gone.
        let outlook = &report["outlook"];
        assert_eq!(outlook["clv"]["customers"], 2357);
        assert!(report["clv"].is_null() && report["outlook_note"].is_null(), "{report}");
        let alive: u64 = outlook["alive"].as_array().unwrap().iter().map(|b| b["customers"].as_u64().unwrap()).sum();
        assert_eq!(alive, 2357);
        let text = env.ok(&args).stdout;
        assert!(text.contains("check: fitted as of 1997-09-30 23:59 UTC, 2357 buyers expected 165"), "{text}");
        assert!(text.contains("in the 273 days after, made 1882 (-12."), "{text}");

        // Before any repeat purchase the models cannot be fitted: the estimate stays and says why.
        let report = json(env, &["report", "customers", "--as-of", "1997-01-02", "--json"]);
        assert!(report["outlook"].is_null(), "{report}");
        let note = report["outlook_note"].as_str().expect("a reason");
        assert!(note.contains("customers bought on two days or more"), "{note}");
        assert!(report["clv"]["expected_years"].is_number(), "{report}");
    });
}

/// Checks that `html` is a whole page whose elements are balanced, and returns the images it links.
fn check_html(html: &str) -> Vec<String> {
    assert!(html.starts_with("<!DOCTYPE html>\n<html"), "{}", &html[..40.min(html.len())]);
    const VOID: [&str; 4] = ["meta", "img", "br", "hr"];
    let mut open: Vec<String> = Vec::new();
    let mut images = Vec::new();
    let mut rest = html.split_once('\n').unwrap().1;
    while let Some(start) = rest.find('<') {
        let end = start + rest[start..].find('>').expect("every tag is closed");
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        let name: String = tag.trim_start_matches('/').chars().take_while(char::is_ascii_alphanumeric).collect();
        if let Some(src) = tag.split("src=\"").nth(1) {
            images.push(src.split('"').next().unwrap().to_owned());
        }
        if tag.starts_with('/') {
            assert_eq!(open.pop().as_deref(), Some(name.as_str()), "unbalanced </{name}>");
        } else if !VOID.contains(&name.as_str()) {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "unclosed {open:?}");
    images
}

/// Checks that an SVG chart is well-formed XML with its title and both axis descriptions.
fn check_svg(path: &Path, texts: &[&str]) {
    let svg = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let words: Vec<&str> =
        doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::trim).collect();
    for text in texts {
        assert!(words.contains(text), "{} lacks {text:?}: {words:?}", path.display());
    }
}

#[test]
fn the_report_pages_are_whole_html_and_their_charts_well_formed_svg_with_titles_and_axes() {
    each_backend(|env| {
        import_example(env);
        let out = env.path("reports");
        env.ok(&["report", "customers", "--out", &out]);
        let html = std::fs::read_to_string(Path::new(&out).join("customers.html")).unwrap();
        let images = check_html(&html);
        assert_eq!(
            images,
            [
                "customers-pareto.svg",
                "customers-rfm.svg",
                "customers-deciles.svg",
                "customers-clv.svg",
                "customers-check.svg",
                "customers-lifecycle.svg"
            ]
        );
        assert!(!html.contains("@example.com") && !html.contains("Tara"), "personal data on the page");
        let dir = Path::new(&out);
        check_svg(
            &dir.join(&images[0]),
            &[
                "Pareto curve: share of revenue by share of customers",
                "Customers, most valuable first (%)",
                "Share of revenue (%)",
            ],
        );
        check_svg(
            &dir.join(&images[1]),
            &[
                "RFM grid: customers by recency and frequency",
                "Frequency (orders)",
                "Recency (days since the last order)",
                "1205",
            ],
        );
        check_svg(
            &dir.join(&images[2]),
            &["Share of revenue by value decile", "Value decile (1 = most valuable 10%)", "Share of revenue (%)"],
        );
        check_svg(
            &dir.join(&images[3]),
            &["Lifetime value by decile", "Lifetime value decile (1 = most valuable 10%)", "Mean lifetime value"],
        );
        check_svg(
            &dir.join(&images[4]),
            &["Expected (grey) and actual (blue) purchases", "Repeat purchases before the check", "7+"],
        );
        check_svg(&dir.join(&images[5]), &["Customers by lifecycle stage", "Lifecycle stage", "Customers", "won back"]);
        // The models replace the base-wide lifetime value estimate.
        assert!(html.contains("<h2>Customer-base models</h2>") && !html.contains("base-wide estimate"), "{html}");

        // A campaign with A/B variants on the same customers.
        run(env, "cross_sell", "1998-01-01T00:00:00+00:00");
        env.execute(
            "INSERT INTO outbox (run_id, customer_id, state, variant, attempts, sent_at, created_at, updated_at) \
             SELECT r.id, c.id, CASE WHEN c.id % 10 = 0 THEN 'control' ELSE 'sent' END, \
             CASE WHEN c.id % 2 = 0 THEN 'a' ELSE 'b' END, 1, r.scheduled_at, r.scheduled_at, r.scheduled_at \
             FROM campaign_runs r, customers c WHERE r.campaign = 'cross_sell'",
        );
        env.execute("UPDATE outbox SET sent_at = NULL WHERE state = 'control'");
        let run = env.ok(&["report", "campaign", "cross_sell", "--out", &out]);
        assert!(run.stdout.contains("A/B variants (each against the whole control group"), "{}", run.stdout);
        let variant_lines: Vec<&str> =
            run.stdout.lines().filter(|l| l.starts_with("  a ") || l.starts_with("  b ")).collect();
        assert_eq!(variant_lines.len(), 2, "{}", run.stdout);
        let html = std::fs::read_to_string(dir.join("campaign-cross_sell.html")).unwrap();
        let images = check_html(&html);
        assert_eq!(
            images,
            ["campaign-cross_sell-conversion.svg", "campaign-cross_sell-revenue.svg", "campaign-cross_sell-uplift.svg"]
        );
        assert!(html.contains("<h2>A/B variants</h2>"));
        check_svg(
            &dir.join(&images[0]),
            &[
                "cross_sell: conversion rate by group",
                "Group",
                "Conversion rate (%)",
                "Control",
                "Variant a",
                "Variant b",
            ],
        );
        check_svg(
            &dir.join(&images[1]),
            &["cross_sell: revenue per customer by group", "Group", "Revenue per customer"],
        );
        check_svg(
            &dir.join(&images[2]),
            &["cross_sell: conversion uplift per run (95% CI)", "Run", "Uplift (percentage points)"],
        );
    });
}
