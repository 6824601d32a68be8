//! The dashboard (`[ui] enabled`) of a real daemon: every page in headless
//! Chromium without a console error and with its charts, the campaign
//! page's figures equal to `report campaign --json`, no customer's address
//! on any page by default, and the access rules off loopback.
//!
//! `PATRON_TEST_SCREENSHOTS=DIR` saves the overview and the campaign page as
//! DIR/ui-overview.png and DIR/ui-campaign.png.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::daemon::Daemon;
use crate::delivery::{send, wait_with_timeout};
use crate::smtp_server::SmtpServer;
use crate::support::{Backend, TestEnv, each_backend, example};

/// 40 customers of the CDNow sample, a quarter of them held out.
const CAMPAIGN: &str = "kind = \"marketing\"\n\n[audience]\nwhere = 'first_name is not null'\nlimit = 40\n\
    holdout = 0.25\n\n[message]\nfrom = \"Shop <shop@example.com>\"\nsubject = \"Hi {{ customer.first_name }}\"\n\
    text = \"Hi {{ customer.first_name }}, unsubscribe: {{ unsubscribe_url }}\"\n";

/// The pages, each with the number of charts it draws on this data.
const PAGES: [(&str, usize); 6] = [
    ("/ui/", 1),
    ("/ui/campaigns", 0),
    ("/ui/campaigns/hello", 3),
    ("/ui/model", 3),
    ("/ui/customers", 6),
    ("/ui/customers/lookup?id=C0001", 0),
];

/// An HTTP/1.1 GET to 127.0.0.1:`port`: the status, the head and the body.
fn get(port: u16, target: &str, authorization: Option<&str>) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the daemon");
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let authorization = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{authorization}\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).unwrap_or_default().parse().unwrap_or(0);
    (status, head.to_ascii_lowercase(), decode_chunked(head, body))
}

/// The body of a chunked answer put back together.
fn decode_chunked(head: &str, body: &str) -> String {
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return body.to_owned();
    }
    let (mut out, mut rest) = (String::new(), body);
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

/// Example data, a scored model, and one run of `hello` sent to the test
/// SMTP server; the messages it received.
fn prepare(env: &TestEnv) -> u64 {
    for what in ["customers", "orders", "interactions"] {
        env.ok(&["import", what, &example(&format!("{what}.csv")).display().to_string()]);
    }
    env.ok(&["train", "--as-of", "1997-09-30", "--horizon", "91d", "--algorithm", "logistic"]);
    env.ok(&["score", "--as-of", "1997-09-30"]);
    std::fs::create_dir_all(env.dir.path().join("campaigns")).unwrap();
    env.write("campaigns/hello.toml", CAMPAIGN);
    env.ok(&["campaign", "run", "hello"]);
    let server = SmtpServer::start();
    send(env, server.port(), &["--until-empty"]);
    server.count() as u64
}

fn dashboard(env: &TestEnv, extra: &[(&str, String)]) -> Daemon {
    let mut settings = vec![("PATRON__UI__ENABLED", "true".to_owned())];
    settings.extend(extra.iter().cloned());
    let daemon = Daemon::start(env, &settings);
    daemon.wait_ready();
    daemon
}

#[test]
fn every_page_loads_in_a_real_browser_with_its_charts_the_reports_figures_and_no_address() {
    each_backend(|env| {
        let received = prepare(env);
        // The daemon must not send the new run's messages while the test
        // compares the page with the report it printed just before.
        let daemon = dashboard(env, &[("PATRON__DAEMON__SEND_INTERVAL", "1h".to_owned())]);
        for (page, _) in PAGES {
            let (status, head, _) = get(daemon.port, page, None);
            assert_eq!(status, 200, "{page}: {head}\n{}", daemon.stderr());
        }
        campaign_page_has_the_reports_figures(env, daemon.port, received);
        model_page_has_the_promotion(env, daemon.port);
        no_page_shows_an_address(env, daemon.port);
        every_page_in_the_browser(env, daemon.port);
        campaign_pages_follow_a_new_run(env, daemon.port);
    });
}

/// Each page in headless Chromium: its charts, no console error; the
/// screenshots when asked for.
fn every_page_in_the_browser(env: &TestEnv, port: u16) {
    let Some(browser) = Browser::start() else { return };
    for (page, charts) in PAGES {
        browser.open(&format!("http://127.0.0.1:{port}{page}"));
        let found = browser.call(
            "POST",
            &format!("/session/{}/elements", browser.session),
            Some(json!({"using": "css selector", "value": "figure svg"})),
        );
        assert_eq!(found["value"].as_array().map(Vec::len), Some(charts), "{page}: charts");
        let errors = console_errors(&browser);
        assert!(errors.is_empty(), "{page}: console errors {errors:?}");
        let name = match page {
            "/ui/" => "ui-overview.png",
            "/ui/campaigns/hello" => "ui-campaign.png",
            _ => continue,
        };
        if let (Some(dir), Backend::Sqlite) = (std::env::var_os("PATRON_TEST_SCREENSHOTS"), env.backend) {
            let shot = browser.call("GET", &format!("/session/{}/screenshot", browser.session), None);
            let png = STANDARD.decode(shot["value"].as_str().expect("a screenshot")).unwrap();
            std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
        }
    }
}

/// A run made after the campaign pages were first shown is on them at the
/// next view: what the dashboard keeps of a campaign follows its data.
fn campaign_pages_follow_a_new_run(env: &TestEnv, port: u16) {
    let (_, _, list_before) = get(port, "/ui/campaigns", None);
    env.ok(&["campaign", "run", "hello"]);
    let report: Value = serde_json::from_str(&env.ok(&["report", "campaign", "hello", "--json"]).stdout).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "a second run: {report}");
    let (_, _, page) = get(port, "/ui/campaigns/hello", None);
    for run in runs {
        let d = &run["delivery"];
        let counts: String = ["planned", "sent", "failed", "suppressed", "unknown", "expired", "waiting", "control"]
            .iter()
            .map(|k| format!("<td class=\"num\">{}</td>", d[k]))
            .collect();
        assert!(page.contains(&counts), "run {} counts {counts} not in the page", run["run_id"]);
    }
    let newest = runs.iter().filter_map(|run| run["run_id"].as_i64()).max().unwrap();
    let second = format!("<tr><td class=\"num\">{newest}</td>");
    assert!(!list_before.contains(&second), "{second} listed before the run");
    let (_, _, list) = get(port, "/ui/campaigns", None);
    assert!(list.contains(&second), "{second} not listed after the run");
}

/// The model trained in `prepare` was promoted (there was none active), and the page says so.
fn model_page_has_the_promotion(env: &TestEnv, port: u16) {
    let active = env.status()["active_model"]["name"].as_str().expect("an active model").to_owned();
    let (_, _, page) = get(port, "/ui/model", None);
    let promotions = page.split_once("<h2>Promotions</h2>").expect("a promotions section").1;
    let row = promotions.split("<tr>").find(|row| row.contains(&active)).expect("a row of the active model");
    assert!(row.contains(">promoted<"), "{row}");
}

/// The browser's console messages of level SEVERE since the last call.
fn console_errors(browser: &Browser) -> Vec<String> {
    let log =
        browser.try_call("POST", &format!("/session/{}/se/log", browser.session), Some(json!({"type": "browser"})));
    let entries = log["value"].as_array().unwrap_or_else(|| panic!("no browser log: {log}"));
    entries
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Each run's delivery counts, and both groups' customers, conversions and rates.
fn campaign_page_has_the_reports_figures(env: &TestEnv, port: u16, received: u64) {
    let run = env.ok(&["report", "campaign", "hello", "--json"]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let (_, _, page) = get(port, "/ui/campaigns/hello", None);
    let cell = |v: &Value| format!("<td class=\"num\">{v}</td>");
    let rate = |group: &Value| match group["customers"].as_u64().unwrap() {
        0 => "n/a".to_owned(),
        n => format!("{:.1}%", group["conversions"].as_u64().unwrap() as f64 / n as f64 * 100.0),
    };
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    for run in runs {
        let d = &run["delivery"];
        let counts: String = ["planned", "sent", "failed", "suppressed", "unknown", "expired", "waiting", "control"]
            .iter()
            .map(|k| cell(&d[k]))
            .collect();
        assert!(page.contains(&counts), "run {} counts {counts} not in the page", run["run_id"]);
        assert_eq!(d["planned"].as_u64(), Some(40));
        assert_eq!(d["sent"].as_u64(), Some(received), "every message sent, none to the control group");
        assert_eq!(d["control"].as_u64(), Some(40 - received));
        let c = &run["comparison"];
        let rates =
            format!("<td class=\"num\">{}</td><td class=\"num\">{}</td>", rate(&c["treatment"]), rate(&c["control"]));
        assert!(page.contains(&rates), "{rates} not in the page");
    }
    let (t, k) = (&report["overall"]["treatment"], &report["overall"]["control"]);
    for (label, key) in [("Customers", "customers"), ("Converted", "conversions")] {
        let row = format!("<tr><th>{label}</th>{}{}</tr>", cell(&t[key]), cell(&k[key]));
        assert!(page.contains(&row), "{row} not in the page");
    }
    assert!(page.contains("<td class=\"num\">order_limit</td><td class=\"num\">40</td>"), "the audience steps");
}

/// Every address-like word of every page is masked: none is a customer's.
fn no_page_shows_an_address(env: &TestEnv, port: u16) {
    let emails: HashSet<String> = env.strings("SELECT email FROM customers").into_iter().collect();
    assert!(emails.contains("tara.schmidt.0001@example.com"));
    for (page, _) in PAGES {
        let (_, _, body) = get(port, page, None);
        let words = body.split(|c: char| c.is_whitespace() || "<>\"'(),;".contains(c));
        let shown: Vec<&str> = words.filter(|w| emails.contains(*w)).collect();
        assert!(shown.is_empty(), "{page} shows {shown:?}");
    }
    let (_, _, customer) = get(port, "/ui/customers/lookup?id=C0001", None);
    assert!(customer.contains("t•••@example.com"), "the address is there, masked");
}

#[test]
fn off_loopback_the_dashboard_needs_a_credential_and_sends_its_security_headers() {
    let env = TestEnv::new(Backend::Sqlite);
    env.ok(&["migrate"]);
    let port = crate::delivery::free_port();
    let anywhere = ("PATRON__HTTP__LISTEN", format!("0.0.0.0:{port}"));

    let mut refused = env
        .command(&["run"])
        .env("PATRON__UI__ENABLED", "true")
        .env(anywhere.0, &anywhere.1)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(&mut refused, Duration::from_secs(60));
    let mut stderr = String::new();
    refused.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ui.credentials_file") && stderr.contains("not a loopback address"), "{stderr}");

    let file = env.write("ui-credentials", "# who may look\ntoken = a-long-random-token\nmarketing:pass word\n");
    let daemon = dashboard(&env, &[anywhere, ("PATRON__UI__CREDENTIALS_FILE", file)]);
    let basic = |user_password: &str| format!("Basic {}", STANDARD.encode(user_password));
    for (authorization, expected) in [
        (None, 401),
        (Some("Bearer wrong-token".to_owned()), 401),
        (Some(basic("marketing:wrong")), 401),
        (Some("Bearer a-long-random-token".to_owned()), 200),
        (Some(basic("marketing:pass word")), 200),
    ] {
        let (status, head, _) = get(daemon.port, "/ui/", authorization.as_deref());
        assert_eq!(status, expected, "{authorization:?}: {head}");
        if status == 401 {
            assert!(head.contains("www-authenticate: basic realm=\"patron\""), "{head}");
        }
        for header in [
            "content-security-policy: default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'",
            "x-frame-options: deny",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
            "cache-control: no-store",
        ] {
            assert!(head.contains(header), "{authorization:?}: no `{header}` in {head}");
        }
    }
    assert_eq!(get(daemon.port, "/healthz", None).0, 200, "only the dashboard is behind the credential");
}
