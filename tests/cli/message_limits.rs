//! Messages that cannot be built fail alone: a template over the render limits
//! (fuel, output size) or a customer name with a line break fails its own
//! message with the reason, the others are sent, and no row stays `sending`.
//! Templates over the limits for any customer are refused by `campaign validate`.

use std::collections::HashMap;
use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::delivery::smtp_env;
use crate::smtp_server::{Received, SmtpServer};
use crate::support::{Backend, Run, TestEnv, each_backend};

/// A campaign `hello` to everyone with a first name, with this HTML template.
fn campaign(html: &str) -> String {
    format!(
        "kind = \"marketing\"\n\n[audience]\nwhere = 'first_name is not null'\nholdout = 0\n\n\
         [message]\nfrom = \"Shop <shop@example.com>\"\nsubject = \"Hi {{{{ customer.first_name }}}}\"\n\
         html = '''<p>Hi {{{{ customer.first_name }}}}</p>{html}<a href='{{{{ unsubscribe_url }}}}'>Unsubscribe</a>'''\n\
         text = \"Hi {{{{ customer.first_name }}}}, unsubscribe: {{{{ unsubscribe_url }}}}\"\n"
    )
}

/// Customers 1..=n (c<i>@example.com, first name T<i>) and the campaign, planned.
fn planned(env: &TestEnv, n: u32, html: &str) {
    env.numbered_customers(n, "'T' || CAST(i AS TEXT)");
    std::fs::create_dir_all(env.dir.path().join("campaigns")).unwrap();
    env.write("campaigns/hello.toml", campaign(html));
    env.ok(&["campaign", "run", "hello"]);
}

/// Runs `command` to its end, or kills it and fails the test after `timeout`.
fn run_within(env: &TestEnv, command: &mut Command, timeout: Duration) -> Run {
    let (out, err) = (env.dir.path().join("run.stdout"), env.dir.path().join("run.stderr"));
    let mut child = command
        .stdout(Stdio::from(File::create(&out).unwrap()))
        .stderr(Stdio::from(File::create(&err).unwrap()))
        .spawn()
        .expect("start patron");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{:?} did not finish within {timeout:?}", command.get_args().collect::<Vec<_>>());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(out).unwrap(),
        stderr: std::fs::read_to_string(err).unwrap(),
    }
}

/// `patron send --until-empty` to the SMTP server on `port`, within a minute.
fn send(env: &TestEnv, port: u16) -> Run {
    let mut command = env.command(&["send", "--until-empty"]);
    run_within(env, smtp_env(&mut command, port), Duration::from_secs(60))
}

/// The outbox by state, as `state count` lines in state order.
fn states(env: &TestEnv) -> Vec<String> {
    env.strings("SELECT state || ' ' || CAST(COUNT(*) AS TEXT) FROM outbox GROUP BY state ORDER BY state")
}

/// `address: last_error` of each failed row.
fn failures(env: &TestEnv) -> Vec<String> {
    env.strings(
        "SELECT c.email || ': ' || o.last_error FROM outbox o JOIN customers c ON c.id = o.customer_id \
         WHERE o.state = 'failed' ORDER BY c.email",
    )
}

/// How many messages each address received.
fn per_recipient(received: &[Received]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for message in received {
        for recipient in &message.recipients {
            *counts.entry(recipient.clone()).or_default() += 1;
        }
    }
    counts
}

/// Every customer of 1..=n but `except` got exactly one message.
fn assert_arrived_once_each(server: &SmtpServer, n: u32, except: u32) {
    let counts = per_recipient(&server.received());
    let mut expected: Vec<String> = (1..=n).filter(|&i| i != except).map(|i| format!("c{i}@example.com")).collect();
    let mut got: Vec<String> = counts.keys().cloned().collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

/// Two nested loops over 100,000 items: ten billion turns, for customer T2 only
/// (behind an `if`, so validation cannot see it).
const LOOPS_FOR_T2: &str = "{% if customer.first_name == 'T2' %}{% for i in [0] * 100000 %}\
    {% for j in [0] * 100000 %}{% endfor %}{% endfor %}{% endif %}";

#[test]
fn a_template_out_of_fuel_fails_its_message_and_the_others_are_sent() {
    each_backend(|env| {
        planned(env, 5, LOOPS_FOR_T2);
        let server = SmtpServer::start();
        let started = Instant::now();
        let run = send(env, server.port());
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
        assert_eq!(states(env), ["failed 1", "sent 4"]);
        let failed = failures(env);
        assert_eq!(failed.len(), 1);
        assert!(
            failed[0].starts_with("c2@example.com: the html template needs more work than one message may take")
                && failed[0].contains("fuel of 250000 ran out"),
            "{failed:?}"
        );
        assert_arrived_once_each(&server, 5, 2);
    });
}

#[test]
fn a_template_over_the_output_size_fails_its_message_and_the_others_are_sent() {
    each_backend(|env| {
        planned(env, 5, "{% if customer.first_name == 'T3' %}{{ 'x' * 2000000 }}{% endif %}");
        let server = SmtpServer::start();
        let run = send(env, server.port());
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(states(env), ["failed 1", "sent 4"]);
        assert_eq!(failures(env), ["c3@example.com: the html template's output exceeds 1048576 bytes"]);
        assert_arrived_once_each(&server, 5, 3);
    });
}

#[test]
fn a_line_break_in_a_name_written_straight_into_the_database_fails_only_its_message() {
    each_backend(|env| {
        planned(env, 7, "");
        // As a CRM sync or a manual fix could write it; import refuses such names.
        env.execute("UPDATE customers SET first_name = 'Eve\r\nBcc: evil@example.com' WHERE email = 'c2@example.com'");
        let server = SmtpServer::start();
        let run = send(env, server.port());
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(states(env), ["failed 1", "sent 6"]);
        assert_eq!(failures(env), ["c2@example.com: the customer's name contains a line break or control character"]);
        assert_arrived_once_each(&server, 7, 2);
        assert_eq!(server.rcpt_attempts("evil@example.com"), 0);
        assert!(server.received().iter().all(|m| !String::from_utf8_lossy(&m.data).contains("evil@example.com")));

        // A second send has nothing left to do: the failed row is not retried.
        let again = send(env, server.port());
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert_eq!(states(env), ["failed 1", "sent 6"]);
        assert_eq!(server.count(), 6);
    });
}

#[test]
fn preview_of_a_template_out_of_fuel_stops_with_the_reason() {
    each_backend(|env| {
        // Every customer's name starts with T, the validation sample's does not.
        let loops = LOOPS_FOR_T2.replace("customer.first_name == 'T2'", "customer.first_name[:1] == 'T'");
        planned(env, 3, &loops);
        let run = run_within(env, &mut env.command(&["campaign", "preview", "hello"]), Duration::from_secs(60));
        assert_ne!(run.code, 0, "{}", run.stdout);
        assert!(run.stderr.contains("the html template needs more work than one message may take"), "{}", run.stderr);
    });
}

#[test]
fn validate_refuses_templates_over_the_limits_with_sample_data() {
    let env = TestEnv::new(Backend::Sqlite);
    std::fs::create_dir(env.dir.path().join("campaigns")).unwrap();
    let file = |name: &str, html: &str| env.write(&format!("campaigns/{name}.toml"), campaign(html));
    file("concat", "\n{% set s = 'x' * 99999999 %}{{ s ~ s ~ s ~ s }}");
    file("loops", &LOOPS_FOR_T2.replace("customer.first_name == 'T2'", "true"));
    file("big", "{{ 'x' * 2000000 }}");
    // Over the limits only for some data: found when sending, one message at a time.
    file("guarded", LOOPS_FOR_T2);
    let started = Instant::now();
    let run = env.patron(&["campaign", "validate"]);
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "./campaigns/big.toml:10:11: html template: with sample customer data, \
             the html template's output exceeds 1048576 bytes",
            "./campaigns/concat.toml:11:1: html template: with sample customer data, the html template needs \
             more work than one message may take (its fuel of 250000 ran out at line 2): \
             a loop too long or a string too big?",
            "./campaigns/loops.toml:10:11: html template: with sample customer data, the html template needs \
             more work than one message may take (its fuel of 250000 ran out at line 1): \
             a loop too long or a string too big?",
            "1 of 4 campaign file(s) valid",
        ]
    );
}
