//! Delivery through the real binary: `patron send` against a real SMTP server
//! on loopback, crash recovery, and the unsubscribe server.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_parser::{MessageParser, MimeHeaders};

use crate::smtp_server::{Received, Script, SmtpServer};
use crate::support::{Backend, Run, TestEnv, each_backend};
use patron::delivery::{outbox, result_log};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};

pub(crate) const SECRET: &str = "test-unsubscribe-secret-of-32-bytes-or-more";

pub(crate) const CAMPAIGN: &str = "kind = \"marketing\"\n\n[audience]\nwhere = 'first_name is not null'\nholdout = 0\n\n\
    [message]\nfrom = \"Shop <shop@example.com>\"\nreply_to = \"care@example.com\"\n\
    subject = \"Hi {{ customer.first_name }}\"\n\
    html = \"<p>Hi {{ customer.first_name }}</p><p><a href='{{ unsubscribe_url }}'>Unsubscribe</a></p>\"\n\
    text = \"Hi {{ customer.first_name }}, unsubscribe: {{ unsubscribe_url }}\"\n";

/// Customers 1..=n with addresses c<i>@example.com; customer 1 has a hostile name.
pub(crate) fn customers(env: &TestEnv, n: u32) {
    env.numbered_customers(n, "CASE WHEN i = 1 THEN '<script>alert(1)</script>' ELSE 'T' || CAST(i AS TEXT) END");
    std::fs::create_dir_all(env.dir.path().join("campaigns")).unwrap();
    env.write("campaigns/hello.toml", CAMPAIGN);
}

/// Plans one run of the test campaign.
pub(crate) fn plan(env: &TestEnv) {
    env.ok(&["campaign", "run", "hello"]);
}

/// `patron send` settings for the SMTP server on `port`.
pub(crate) fn smtp_env(command: &mut Command, port: u16) -> &mut Command {
    command
        .env("PATRON__DELIVERY__TRANSPORT", "smtp")
        .env("PATRON__SMTP__PORT", port.to_string())
        .env("PATRON__SMTP__TIMEOUT", "5s")
        .env("PATRON__UNSUBSCRIBE__SECRET", SECRET)
        .env("PATRON__HTTP__PUBLIC_URL", "https://shop.example")
        .env("PATRON__DELIVERY__RETRY_AFTER", "1s")
        .env("PATRON__DELIVERY__RETRY_MAX", "2s")
}

pub(crate) fn send(env: &TestEnv, port: u16, args: &[&str]) -> Run {
    let mut command = env.command(&[&["send"], args].concat());
    Run::from(smtp_env(&mut command, port).output().expect("run patron send"))
}

pub(crate) fn count(env: &TestEnv, sql: &str) -> i64 {
    env.strings(&format!("SELECT CAST(({sql}) AS TEXT)"))[0].parse().unwrap()
}

/// How many messages each address received.
pub(crate) fn per_recipient(received: &[Received]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for message in received {
        for recipient in &message.recipients {
            *counts.entry(recipient.clone()).or_default() += 1;
        }
    }
    counts
}

/// `patron campaign test` with the SMTP server on `port`.
fn test_send(env: &TestEnv, port: u16, args: &[&str]) -> Run {
    let mut command = env.command(&[&["campaign", "test", "hello"], args].concat());
    Run::from(smtp_env(&mut command, port).output().expect("run patron campaign test"))
}

#[test]
fn a_test_send_reaches_the_server_marked_test_and_changes_nothing_in_the_database() {
    each_backend(|env| {
        customers(env, 3);
        plan(env);
        let before = env.dump();
        let server = SmtpServer::start();
        let run = test_send(env, server.port(), &["--to", "marketer@shop.example", "--customer", "2"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stdout.starts_with("test message \"[TEST] Hi T2\" for customer 2 sent to marketer@shop.example: "),
            "{}",
            run.stdout
        );
        let received = server.received();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].recipients, ["marketer@shop.example"]);
        let message = MessageParser::default().parse(&received[0].data).expect("a message");
        assert_eq!(message.subject(), Some("[TEST] Hi T2"));
        let text = message.body_text(0).expect("a text part");
        assert!(text.contains("Hi T2, unsubscribe: https://unsubscribe-link-made-when-sent.invalid/"), "{text}");
        assert!(message.header("List-Unsubscribe").is_none(), "a test message carries no working unsubscribe header");
        // Without --customer: the first customer the campaign reaches (customer 1, whose name is escaped in HTML).
        let run = test_send(env, server.port(), &["--to", "marketer@shop.example"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let html =
            MessageParser::default().parse(&server.received()[1].data).unwrap().body_html(0).unwrap().into_owned();
        assert!(html.contains("&lt;script&gt;"), "{html}");
        // Nothing of either send is in the database: outbox, runs, feedback.
        assert_eq!(env.dump(), before);

        for (args, error) in [
            (&["--to", "not an address"][..], "--to `not an address` is not an email address"),
            (&["--to", "m@shop.example", "--customer", "99"], "no customer with id `99`"),
            (&["--to", "m@shop.example", "--variant", "b"], "campaign `hello` has no variant `b` (its variants: [])"),
        ] {
            let run = test_send(env, server.port(), args);
            assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
            assert!(run.stderr.contains(error), "{args:?}: {}", run.stderr);
        }
        assert_eq!(server.count(), 2);
    });
}

#[test]
fn a_run_of_1000_arrives_once_each_rendered_with_its_headers() {
    each_backend(|env| {
        customers(env, 1000);
        plan(env);
        let server = SmtpServer::start();
        let run = send(env, server.port(), &["--until-empty"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.stdout, "1000 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n");

        let received = server.received();
        let counts = per_recipient(&received);
        assert_eq!(received.len(), 1000);
        assert_eq!(counts.len(), 1000);
        assert!(counts.values().all(|&n| n == 1));
        let mut message_ids = std::collections::HashSet::new();
        for message in &received {
            let parsed = MessageParser::default().parse(&message.data).expect("a parsable message");
            let to = parsed.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap().to_owned();
            assert_eq!(message.recipients, std::slice::from_ref(&to));
            let i: u32 = to.trim_start_matches('c').trim_end_matches("@example.com").parse().unwrap();
            let name = if i == 1 { "<script>alert(1)</script>".to_owned() } else { format!("T{i}") };
            assert_eq!(parsed.subject(), Some(format!("Hi {name}").as_str()));
            assert_eq!(parsed.from().and_then(|a| a.first()).and_then(|a| a.address()), Some("shop@example.com"));
            assert_eq!(parsed.reply_to().and_then(|a| a.first()).and_then(|a| a.address()), Some("care@example.com"));
            assert!(parsed.date().is_some());
            assert!(parsed.content_type().is_some_and(|c| c.subtype() == Some("alternative")));
            let html = parsed.body_html(0).expect("an HTML part").into_owned();
            let text = parsed.body_text(0).expect("a text part").into_owned();
            let link = parsed.header_raw("List-Unsubscribe").expect("List-Unsubscribe").trim().to_owned();
            assert!(link.starts_with("<https://shop.example/unsubscribe?token=") && link.ends_with('>'), "{link}");
            let link = link.trim_matches(['<', '>']);
            assert_eq!(parsed.header_raw("List-Unsubscribe-Post").map(str::trim), Some("List-Unsubscribe=One-Click"));
            assert!(text.starts_with(&format!("Hi {name}, unsubscribe: {link}")), "{text}");
            // Patron's own URL goes into the HTML as it is; customer data stays escaped.
            assert!(html.contains(&format!("<a href='{link}'>Unsubscribe</a>")), "{html}");
            assert!(html.contains("href='https://shop.example/unsubscribe?token="), "{html}");
            if i == 1 {
                assert!(!html.contains("<script>"), "{html}");
                assert!(html.contains("<p>Hi &lt;script&gt;alert(1)&lt;&#x2f;script&gt;</p>"), "{html}");
            } else {
                assert!(html.contains(&format!("<p>Hi T{i}</p>")), "{html}");
            }
            let message_id = parsed.message_id().expect("a Message-ID").to_owned();
            assert!(message_id.ends_with(".patron@patron.localhost"), "{message_id}");
            message_ids.insert(format!("<{message_id}>"));
        }
        assert_eq!(message_ids.len(), 1000);
        let recorded = env.strings("SELECT message_id FROM outbox WHERE state = 'sent'");
        assert_eq!(recorded.into_iter().collect::<std::collections::HashSet<_>>(), message_ids);
        assert_eq!(env.status()["outbox"]["sent"], 1000);

        // Nothing is sent twice.
        let again = send(env, server.port(), &["--until-empty"]);
        assert_eq!(again.stdout, "0 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n");
        assert_eq!(server.count(), 1000);
    });
}

#[test]
fn refused_for_now_is_retried_and_refused_for_good_is_failed_and_suppressed() {
    each_backend(|env| {
        customers(env, 20);
        plan(env);
        let policy = Arc::new(|address: &str, attempt: usize| match address {
            "c3@example.com" | "c4@example.com" | "c5@example.com" if attempt <= 2 => "451 4.3.0 try again later",
            "c7@example.com" => "550 5.1.1 no such user",
            _ => "250 2.1.5 OK",
        });
        let server = SmtpServer::start_with("127.0.0.1:0", policy);
        let run = send(env, server.port(), &["--until-empty"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.stdout, "19 sent, 6 to retry later, 1 failed, 0 suppressed, 0 unknown\n");

        let counts = per_recipient(&server.received());
        assert_eq!(counts.len(), 19);
        assert!(counts.values().all(|&n| n == 1));
        assert!(!counts.contains_key("c7@example.com"));
        for address in ["c3@example.com", "c4@example.com", "c5@example.com"] {
            assert_eq!(server.rcpt_attempts(address), 3, "{address}");
        }
        assert_eq!(server.rcpt_attempts("c7@example.com"), 1, "a permanent refusal is never retried");
        let failed = env.strings(
            "SELECT c.email || ' ' || o.last_error FROM outbox o JOIN customers c ON c.id = o.customer_id \
             WHERE o.state = 'failed'",
        );
        assert_eq!(failed.len(), 1);
        assert!(failed[0].starts_with("c7@example.com ") && failed[0].contains("550"), "{failed:?}");
        assert_eq!(env.strings("SELECT email || ' ' || reason FROM suppressions"), ["c7@example.com bounced"]);
        assert_eq!(env.strings("SELECT CAST(attempts AS TEXT) FROM outbox o JOIN customers c ON c.id = o.customer_id WHERE c.email = 'c4@example.com'"), ["3"]);
        // The refusal is a hard bounce in the feedback records and the report: 1 of the 20 messages handed over.
        let events = env.strings("SELECT kind || ' ' || status || ' ' || source || ' ' || email FROM feedback_events");
        assert_eq!(events, ["hard_bounce 5.1.1 smtp c7@example.com"]);
        let report: serde_json::Value =
            serde_json::from_str(&env.ok(&["report", "campaign", "hello", "--json"]).stdout).unwrap();
        let feedback = &report["runs"][0]["feedback"];
        assert_eq!((feedback["hard_bounces"].as_u64(), feedback["hard_bounce_rate"].as_f64()), (Some(1), Some(0.05)));

        // A later run leaves the bounced address out, and a new send sends nothing to it.
        std::thread::sleep(Duration::from_millis(1100));
        plan(env);
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'planned'"), 19);
        send(env, server.port(), &["--until-empty"]);
        assert_eq!(server.rcpt_attempts("c7@example.com"), 1);
    });
}

#[test]
fn the_envelope_goes_in_one_write_only_to_a_server_that_offers_pipelining_and_dotted_lines_arrive_whole() {
    each_backend(|env| {
        customers(env, 12);
        // Lines that are a dot, or start with one, must be stuffed on the way.
        let text = "text = \"Hi {{ customer.first_name }}\\n.\\n..two dots\\n.one dot\\nunsubscribe: {{ unsubscribe_url }}\"\n";
        let campaign = CAMPAIGN.lines().filter(|line| !line.starts_with("text =")).collect::<Vec<_>>().join("\n");
        env.write("campaigns/hello.toml", format!("{campaign}\n{text}"));
        for pipelining in [true, false] {
            plan(env);
            let rcpt = Arc::new(|address: &str, attempt: usize| match address {
                "c3@example.com" if attempt == 1 => "451 4.3.0 try again later",
                "c7@example.com" => "550 5.1.1 no such user",
                _ => "250 2.1.5 OK",
            });
            let script = Script { rcpt, pipelining, ..Script::default() };
            let server = SmtpServer::scripted("127.0.0.1:0", script);
            let run = send(env, server.port(), &["--until-empty"]);
            assert_eq!(run.code, 0, "{}", run.stderr);
            // c7's refusal suppresses it: the second run leaves it out.
            let failed = u8::from(pipelining);
            assert_eq!(run.stdout, format!("11 sent, 1 to retry later, {failed} failed, 0 suppressed, 0 unknown\n"));
            let received = server.received();
            assert_eq!(received.len(), 11);
            assert!(received.iter().all(|message| message.pipelined == pipelining), "pipelining {pipelining}");
            for message in &received {
                let parsed = MessageParser::default().parse(&message.data).expect("a parsable message");
                let text = parsed.body_text(0).expect("a text part").into_owned();
                assert!(text.contains("\r\n.\r\n..two dots\r\n.one dot\r\nunsubscribe: "), "{text:?}");
            }
            std::thread::sleep(Duration::from_millis(1100));
        }
    });
}

/// A port nothing listens on (yet).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) fn spawn_send(env: &TestEnv, port: u16, extra: &[(&str, &str)]) -> Child {
    let mut command = env.command(&["send", "--until-empty"]);
    smtp_env(&mut command, port).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (key, value) in extra {
        command.env(key, value);
    }
    command.spawn().expect("start patron send")
}

/// The child's exit status; a failure (and the child killed, not left
/// running) after `timeout`.
pub(crate) fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    wait_or_kill(child, timeout).unwrap_or_else(|| panic!("patron send did not finish in {timeout:?}"))
}

/// The child's exit status, or `None` (and the child killed) after `timeout`.
pub(crate) fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// What each PostgreSQL session on the test's database is doing (none on
/// SQLite): for a sender that hangs, whether it waits for a lock.
fn server_sessions(env: &TestEnv) -> Vec<String> {
    if env.backend != Backend::Postgres {
        return Vec::new();
    }
    env.strings(
        "SELECT concat_ws(' | ', state, wait_event_type, wait_event, left(query, 160)) \
         FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
}

#[test]
fn a_sender_killed_mid_run_loses_nothing_and_repeats_at_most_its_concurrency() {
    each_backend(|env| {
        customers(env, 10_000);
        plan(env);
        let server = SmtpServer::start();
        // A short lease, so that the restarted sender need not wait long;
        // it must cover the concurrency times the SMTP timeout, which must
        // leave the test server time to answer on a loaded machine.
        let settings = [
            ("PATRON__DELIVERY__LEASE", "24s"),
            ("PATRON__DELIVERY__CONCURRENCY", "8"),
            ("PATRON__SMTP__TIMEOUT", "3s"),
        ];
        let mut child = spawn_send(env, server.port(), &settings);
        assert!(server.wait_for(3000, Duration::from_secs(120)), "only {} arrived", server.count());
        child.kill().expect("kill -9");
        child.wait().unwrap();
        let at_kill = server.count();
        assert!(at_kill < 10_000, "the sender finished before it was killed");

        // Its log goes to a file: a pipe nobody reads until the end could fill and stop it.
        let log = env.path("restarted.log");
        let mut command = env.command(&["send", "--until-empty"]);
        smtp_env(&mut command, server.port()).envs(settings).stdout(Stdio::null());
        let mut restarted = command.stderr(std::fs::File::create(&log).unwrap()).spawn().expect("start patron send");
        let status = wait_or_kill(&mut restarted, Duration::from_secs(300));
        if status.is_none_or(|status| !status.success()) {
            let outbox = env.status()["outbox"].clone();
            let stderr = std::fs::read_to_string(&log).unwrap_or_default();
            let sessions = server_sessions(env);
            panic!(
                "the restarted sender ended with {status:?} on {:?}; outbox {outbox}; \
                 database sessions {sessions:?}:\n{stderr}",
                env.backend
            );
        }
        let counts = per_recipient(&server.received());
        assert_eq!(counts.len(), 10_000, "every message arrives");
        let duplicates: usize = counts.values().map(|n| n - 1).sum();
        eprintln!("kill -9 after {at_kill} messages: {duplicates} duplicate(s) on {:?}", env.backend);
        assert!(duplicates <= 8, "{duplicates} duplicates, more than the concurrency");
        assert_eq!(env.status()["outbox"]["sent"], 10_000);
    });
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; the status code and body.
pub(crate) fn http(port: u16, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to patron serve");
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap_or_default().parse().unwrap_or(0);
    (status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// Waits until something listens on `port`.
pub(crate) fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "patron serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) struct Serving(pub Child);

/// Starts `patron serve` on a free port, once it listens.
pub(crate) fn serve(env: &TestEnv) -> (Serving, u16) {
    let port = free_port();
    let child = env
        .command(&["serve"])
        .env("PATRON__UNSUBSCRIBE__SECRET", SECRET)
        .env("PATRON__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let serving = Serving(child);
    wait_for_port(port);
    (serving, port)
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_one_click_from_the_mail_leaves_its_topic_at_once_and_a_tampered_token_changes_nothing() {
    each_backend(|env| {
        customers(env, 3);
        plan(env);
        // The file transport (the default): one .eml file per message.
        let run = env.command(&["send"]).env("PATRON__UNSUBSCRIBE__SECRET", SECRET).output().unwrap();
        let printed = String::from_utf8_lossy(&run.stdout);
        assert_eq!(printed, "3 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n");
        let mail_dir = env.dir.path().join("data/mail");
        let files: Vec<_> = std::fs::read_dir(&mail_dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 3);
        let token_of = |address: &str| {
            files
                .iter()
                .map(|path| std::fs::read(path).unwrap())
                .find_map(|bytes| {
                    let parsed = MessageParser::default().parse(&bytes)?;
                    let to = parsed.to()?.first()?.address()?.to_owned();
                    let header = parsed.header_raw("List-Unsubscribe")?.trim().to_owned();
                    (to == address).then(|| header.split("token=").nth(1).unwrap().trim_end_matches('>').to_owned())
                })
                .expect("a message to the address")
        };
        let token = token_of("c2@example.com");

        // A second run is planned before the unsubscribe arrives.
        std::thread::sleep(Duration::from_millis(1100));
        plan(env);

        let (_serving, port) = serve(env);

        let mut tampered = token.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        for bad in
            [format!("/unsubscribe?token={tampered}"), "/unsubscribe".to_owned(), "/unsubscribe?token=x.y".into()]
        {
            assert_eq!(http(port, "POST", &bad, "List-Unsubscribe=One-Click").0, 400, "{bad}");
            assert_eq!(http(port, "GET", &bad, "").0, 400, "{bad}");
        }
        let (status, page) = http(port, "GET", &format!("/unsubscribe?token={token}"), "");
        assert_eq!(status, 200);
        assert!(page.contains("<form method=\"post\""), "{page}");
        assert_eq!(count(env, "SELECT COUNT(*) FROM suppressions"), 0, "neither a GET nor a bad token suppresses");

        let one_click = format!("/unsubscribe?token={token}");
        assert_eq!(http(port, "POST", &one_click, "List-Unsubscribe=One-Click").0, 200);
        assert_eq!(http(port, "POST", &one_click, "List-Unsubscribe=One-Click").0, 200, "twice is harmless");
        // The link in the mail names the campaign's topic: the one-click leaves it.
        assert_eq!(env.strings("SELECT CAST(customer_id AS TEXT) || ' ' || topic FROM topic_opt_outs"), ["2 offers"]);
        assert_eq!(count(env, "SELECT COUNT(*) FROM suppressions"), 0);

        // The run planned before: suppressed just before sending.
        let run = env.command(&["send"]).env("PATRON__UNSUBSCRIBE__SECRET", SECRET).output().unwrap();
        let printed = String::from_utf8_lossy(&run.stdout);
        assert_eq!(printed, "2 sent, 0 to retry later, 0 failed, 1 suppressed, 0 unknown\n");
        // The next run: left out when planning.
        std::thread::sleep(Duration::from_millis(1100));
        plan(env);
        assert_eq!(
            env.strings(
                "SELECT c.email FROM outbox o JOIN customers c ON c.id = o.customer_id \
                 WHERE o.state = 'planned' ORDER BY c.email"
            ),
            ["c1@example.com", "c3@example.com"]
        );
    });
}

#[test]
fn mail_of_any_kind_is_refused_without_an_unsubscribe_secret() {
    each_backend(|env| {
        customers(env, 2);
        // Loyalty mail alone: it carries the unsubscribe headers too.
        env.write("campaigns/hello.toml", crate::dkim::LOYALTY);
        plan(env);
        let run = env.patron(&["send"]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains("2 message(s) wait to be sent, and every message carries an unsubscribe link"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("PATRON__UNSUBSCRIBE__SECRET"), "{}", run.stderr);
        assert_eq!(env.status()["outbox"]["planned"], 2);
    });
}

/// The plan of a statement on the test's database.
fn plan_of(env: &TestEnv, statement: &impl sea_orm::StatementBuilder) -> String {
    plan_with(env, statement, false)
}

/// The plan of a statement on the test's database, with the planner
/// settings of a claim (`outbox::read_in_index_order`) when `claiming`.
fn plan_with(env: &TestEnv, statement: &impl sea_orm::StatementBuilder, claiming: bool) -> String {
    crate::support::runtime().block_on(async {
        let connection = crate::support::connect(env).await;
        let db = connection.begin().await.expect("begin");
        if claiming {
            outbox::read_in_index_order(&db).await.expect("planner settings");
        }
        let built = db.get_database_backend().build(statement);
        let explain = match env.backend {
            Backend::Sqlite => "EXPLAIN QUERY PLAN",
            Backend::Postgres => "EXPLAIN",
        };
        let statement = Statement::from_sql_and_values(
            built.db_backend,
            format!("{explain} {}", built.sql),
            built.values.map(|values| values.0).unwrap_or_default(),
        );
        let rows = db.query_all_raw(statement).await.expect("explain");
        db.rollback().await.expect("rollback");
        let column = match env.backend {
            Backend::Sqlite => "detail",
            Backend::Postgres => "QUERY PLAN",
        };
        rows.iter().map(|row| row.try_get::<String>("", column).unwrap()).collect::<Vec<_>>().join("\n")
    })
}

/// The plan of the statement that records a batch of results.
fn plan_of_recording(env: &TestEnv, results: &[(outbox::Claimed, outbox::Fate)]) -> String {
    plan_of(env, &outbox::record_in_one_statement(results, chrono::Utc::now()).expect("one statement"))
}

#[test]
fn a_claim_reads_the_due_rows_from_the_state_indexes_and_stops_at_its_limit() {
    each_backend(|env| {
        customers(env, 10_000);
        plan(env);
        // As in the middle of a send: rows claimed and sent since the last vacuum.
        env.execute("UPDATE outbox SET state = 'sent' WHERE id <= 300");
        let backend = match env.backend {
            Backend::Sqlite => sea_orm::DbBackend::Sqlite,
            Backend::Postgres => sea_orm::DbBackend::Postgres,
        };
        let claim = || outbox::claim_statement(backend, 256, chrono::Duration::minutes(5), chrono::Utc::now());
        for statistics in ["as planned", "analysed"] {
            if statistics == "analysed" {
                env.execute("ANALYZE");
            }
            let plan = plan_with(env, &claim(), true);
            assert!(
                plan.contains("ix_outbox_state_not_before"),
                "{statistics}: the planned rows are not read by state:\n{plan}"
            );
            // The index of the rows with a next attempt only (migration 22).
            assert!(
                plan.contains("ix_outbox_next_attempts"),
                "{statistics}: the retrying rows are not read by their next attempt:\n{plan}"
            );
            match env.backend {
                Backend::Sqlite => {
                    assert!(!plan.contains("SCAN outbox"), "{statistics}: the whole outbox is read:\n{plan}")
                }
                // A bitmap holds every matching entry, live or dead, before
                // the limit, and marks none dead for the next claim.
                Backend::Postgres => {
                    assert!(!plan.contains("Bitmap"), "{statistics}: the due rows are gathered in bitmaps:\n{plan}");
                    assert!(
                        plan.contains("Index Scan using ix_outbox_state_not_before on outbox"),
                        "{statistics}: the planned rows are not read in the index's order:\n{plan}"
                    );
                    // Only the rows whose lease ran out, not every row being sent (migration 24).
                    assert!(
                        plan.contains("Index Scan using ix_outbox_leases on outbox"),
                        "{statistics}: a dead sender's rows are not read by their lease:\n{plan}"
                    );
                    // (`outbox` alone is the table updated, whose few rows may be
                    // joined by reading it: the due rows are read as `outbox_N`.)
                    assert!(
                        !plan.contains("Seq Scan on outbox outbox_"),
                        "{statistics}: the whole outbox is read for the due rows:\n{plan}"
                    );
                }
            }
        }
    });
}

#[test]
fn a_claim_takes_a_dead_senders_messages_and_retries_before_the_backlog_of_planned_ones() {
    each_backend(|env| {
        customers(env, 10);
        plan(env);
        let now = chrono::Utc::now();
        let a_minute_ago = now - chrono::Duration::minutes(1);
        let claimed = crate::support::runtime().block_on(async {
            let db = crate::support::connect(env).await;
            let set = |id: i64, state: &str, moment: &'static str| {
                Query::update()
                    .table("outbox")
                    .value("state", state)
                    .value(moment, a_minute_ago)
                    .and_where(Expr::col("id").eq(id))
                    .to_owned()
            };
            // A dead sender's message, a retry that is due, a window that opened.
            for update in [
                set(10, "sending", "lease_until"),
                set(9, "retrying", "next_attempt_at"),
                set(8, "planned", "not_before"),
            ] {
                assert_eq!(db.execute(&update).await.expect("update").rows_affected(), 1);
            }
            outbox::claim(&db, 3, chrono::Duration::minutes(5), now).await.expect("claim")
        });
        assert_eq!(claimed.iter().map(|row| row.id).collect::<Vec<_>>(), [8, 9, 10]);
    });
}

#[test]
fn results_are_found_by_their_primary_key_even_when_the_statistics_say_nothing_is_being_sent() {
    each_backend(|env| {
        // Enough rows that reading the whole table is not the cheaper way.
        customers(env, 10_000);
        plan(env);
        // Statistics taken while nothing was being sent, as after planning.
        env.execute("ANALYZE");
        let claimed = crate::support::runtime().block_on(async {
            let db = crate::support::connect(env).await;
            outbox::claim(&db, 300, chrono::Duration::minutes(5), chrono::Utc::now()).await.expect("claim")
        });
        assert_eq!(claimed.len(), 300);
        let sent = |row: &outbox::Claimed| outbox::Fate::Sent {
            message_id: format!("<{}@test>", row.id),
            reply: "250 ok".into(),
        };
        let results: Vec<_> = claimed.iter().take(8).map(|row| (row.clone(), sent(row))).collect();
        let plan = plan_of_recording(env, &results);
        assert!(!plan.contains("ix_outbox_state"), "the results are read through a state index:\n{plan}");
        let by_key = match env.backend {
            Backend::Sqlite => "INTEGER PRIMARY KEY",
            Backend::Postgres => "outbox_pkey",
        };
        assert!(plan.contains(by_key), "the results are not read by their primary key:\n{plan}");
    });
}

#[test]
fn a_fold_finds_each_logged_result_by_its_primary_key_even_when_the_statistics_say_nothing_is_being_sent() {
    each_backend(|env| {
        // The results log is PostgreSQL's: SQLite's sender writes its results into the outbox.
        if env.backend != Backend::Postgres {
            return;
        }
        customers(env, 10_000);
        plan(env);
        // Statistics taken while nothing was being sent, as after planning.
        env.execute("ANALYZE");
        let plan = crate::support::runtime().block_on(async {
            let db = crate::support::connect(env).await;
            let now = chrono::Utc::now();
            let claimed = outbox::claim(&db, 3_000, chrono::Duration::minutes(5), now).await.expect("claim");
            let results: Vec<_> = claimed
                .iter()
                .map(|row| {
                    let fate = outbox::Fate::Sent { message_id: format!("<{}@test>", row.id), reply: "250 ok".into() };
                    (row.clone(), fate)
                })
                .collect();
            for chunk in results.chunks(250) {
                assert!(result_log::append(&db, chunk, now).await.expect("append"), "not logged");
            }
            let txn = db.begin().await.expect("begin");
            result_log::by_primary_key(&txn).await.expect("planner settings");
            let explain = format!("EXPLAIN {}", result_log::postgres_fold());
            let rows = txn.query_all_raw(Statement::from_string(db.get_database_backend(), explain)).await;
            txn.rollback().await.expect("rollback");
            result_log::fold(&db).await.expect("fold");
            let plan: Vec<String> =
                rows.expect("explain").iter().map(|row| row.try_get("", "QUERY PLAN").unwrap()).collect();
            plan.join("\n")
        });
        assert!(plan.contains("Index Scan using outbox_pkey on outbox"), "not read by primary key:\n{plan}");
        assert!(!plan.contains("Seq Scan on outbox "), "the whole outbox is read:\n{plan}");
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'"), 3_000);
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'planned'"), 7_000);
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox_results"), 0);
    });
}
