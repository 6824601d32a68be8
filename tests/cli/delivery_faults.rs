//! Delivery under faults, each scripted on the test SMTP server: an
//! unsubscribe, a topic left or consent withdrawn while a message is
//! claimed, a message held back after its envelope went out, a reply lost
//! after the message,
//! a server slower than the lease, a server down for longer than the retry
//! budget, a server that comes back and goes down again, two databases
//! sending for one domain, a database that refuses the results, and
//! SIGTERM to `patron send`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use patron::delivery::Signer;
use patron::delivery::unsubscribe::Token;
use secrecy::SecretString;

use crate::delivery::{
    SECRET, count, customers, free_port, http, per_recipient, plan, send, serve, smtp_env, spawn_send, wait_or_kill,
    wait_with_timeout,
};
use crate::smtp_server::{Reply, Script, SmtpServer};
use crate::support::{Backend, Run, TestEnv, backends, each_backend};

/// `patron send` with extra settings laid over the test's SMTP settings.
fn send_with(env: &TestEnv, port: u16, args: &[&str], extra: &[(&str, &str)]) -> Run {
    let mut command = env.command(&[&["send"], args].concat());
    smtp_env(&mut command, port);
    for (key, value) in extra {
        command.env(key, value);
    }
    Run::from(command.output().expect("run patron send"))
}

fn ids(env: &TestEnv, sql: &str) -> Vec<i64> {
    env.strings(sql).iter().map(|id| id.parse().unwrap()).collect()
}

#[test]
fn an_unsubscribe_that_arrives_while_its_message_is_claimed_stops_that_message() {
    each_backend(|env| {
        customers(env, 40);
        plan(env);
        let server = SmtpServer::start();
        let (_serving, port) = serve(env);

        let limits = [("PATRON__DELIVERY__RATE_PER_SECOND", "5"), ("PATRON__DELIVERY__CONCURRENCY", "2")];
        let mut sender = spawn_send(env, server.port(), &limits);
        assert!(server.wait_for(3, Duration::from_secs(30)), "sending did not start");
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'planned'"), 0, "every row is claimed");
        let signer = Signer::new(SecretString::from(SECRET));
        for customer_id in ids(env, "SELECT CAST(id AS TEXT) FROM customers ORDER BY id") {
            let token = signer.sign(&Token { customer_id, campaign: "hello".into(), topic: None });
            let target = format!("/unsubscribe?token={token}");
            assert_eq!(http(port, "POST", &target, "List-Unsubscribe=One-Click").0, 200);
        }
        let arrived_before = server.count();
        assert!(wait_with_timeout(&mut sender, Duration::from_secs(60)).success());

        // Only a message already past its check (one per worker) can still go.
        let arrived = server.count();
        assert!(arrived <= arrived_before + 2, "{arrived} arrived, {arrived_before} before the unsubscribes");
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'"), arrived as i64);
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'suppressed'"), 40 - arrived as i64);
        let reasons = env.strings("SELECT DISTINCT last_error FROM outbox WHERE state = 'suppressed'");
        assert_eq!(reasons, ["the address is suppressed"]);
    });
}

/// `patron send` with one worker, to a server that answers c1's message a
/// second late; returns once c1's message has arrived.
fn send_one_at_a_time_with_c1_answered_late(env: &TestEnv) -> (SmtpServer, std::process::Child) {
    let after_data =
        Arc::new(
            |to: &str, _: usize| {
                if to == "c1@example.com" { Reply::AcceptAfter(Duration::from_secs(1)) } else { Reply::Accept }
            },
        );
    let server = SmtpServer::scripted("127.0.0.1:0", Script { after_data, ..Script::default() });
    let sender = spawn_send(env, server.port(), &[("PATRON__DELIVERY__CONCURRENCY", "1")]);
    assert!(server.wait_for(1, Duration::from_secs(30)), "sending did not start");
    (server, sender)
}

#[test]
fn a_topic_left_or_consent_withdrawn_while_sending_holds_back_the_messages_not_yet_handed_over() {
    each_backend(|env| {
        customers(env, 5);
        plan(env);
        // c1's message is answered a second late; meanwhile c3 leaves the
        // campaign's topic, c4 withdraws consent and c5 is suppressed, after
        // their rows were claimed and their messages rendered.
        let (server, mut sender) = send_one_at_a_time_with_c1_answered_late(env);
        env.execute(
            "INSERT INTO topic_opt_outs (customer_id, topic, created_at) VALUES (3, 'offers', CURRENT_TIMESTAMP)",
        );
        env.execute("UPDATE customers SET marketing_consent = FALSE WHERE id = 4");
        env.ok(&["suppressions", "add", "c5@example.com", "--reason", "complained"]);
        assert!(wait_with_timeout(&mut sender, Duration::from_secs(60)).success());

        assert_eq!(per_recipient(&server.received()).len(), 2);
        assert_eq!(
            env.strings(
                "SELECT c.email || ' ' || o.state || ' ' || COALESCE(o.last_error, '-') \
                 FROM outbox o JOIN customers c ON c.id = o.customer_id ORDER BY c.id"
            ),
            [
                "c1@example.com sent -",
                "c2@example.com sent -",
                "c3@example.com suppressed the customer left the campaign's topic",
                "c4@example.com suppressed no marketing consent",
                "c5@example.com suppressed the address is suppressed",
            ]
        );
    });
}

#[test]
fn a_message_held_back_at_its_last_check_after_its_envelope_went_out_is_abandoned_and_the_next_goes() {
    each_backend(|env| {
        customers(env, 3);
        plan(env);
        // c1's reply comes a second late; meanwhile c2 is suppressed. c2's
        // envelope goes out while c1's result commits, and its check (with
        // that commit) holds it back: the worker hangs up before its
        // content, so the server discards it, and c3 goes on a new connection.
        let (server, mut sender) = send_one_at_a_time_with_c1_answered_late(env);
        env.ok(&["suppressions", "add", "c2@example.com", "--reason", "unsubscribed"]);
        assert!(wait_with_timeout(&mut sender, Duration::from_secs(60)).success());

        assert_eq!(server.abandoned(), ["c2@example.com"]);
        let received: BTreeMap<String, usize> = per_recipient(&server.received()).into_iter().collect();
        assert_eq!(received, BTreeMap::from([("c1@example.com".into(), 1), ("c3@example.com".into(), 1)]));
        assert_eq!(
            env.strings(
                "SELECT c.email || ' ' || o.state FROM outbox o JOIN customers c ON c.id = o.customer_id ORDER BY c.id"
            ),
            ["c1@example.com sent", "c2@example.com suppressed", "c3@example.com sent"]
        );
    });
}

#[test]
fn a_reply_lost_after_the_message_is_recorded_unknown_and_sent_again_only_on_request() {
    each_backend(|env| {
        customers(env, 10);
        plan(env);
        // The first copy to c5 arrives, but the server hangs up instead of answering.
        let after_data =
            Arc::new(|to: &str, n: usize| if to == "c5@example.com" && n == 1 { Reply::HangUp } else { Reply::Accept });
        let server = SmtpServer::scripted("127.0.0.1:0", Script { after_data, ..Script::default() });
        let run = send(env, server.port(), &["--until-empty"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.stdout, "9 sent, 0 to retry later, 0 failed, 0 suppressed, 1 unknown\n");
        assert_eq!(per_recipient(&server.received())["c5@example.com"], 1, "not sent again");
        let row = "FROM outbox o JOIN customers c ON c.id = o.customer_id WHERE c.email = 'c5@example.com'";
        assert_eq!(env.strings(&format!("SELECT o.state {row}")), ["unknown"]);
        assert_eq!(env.strings(&format!("SELECT CAST(o.attempts AS TEXT) {row}")), ["1"]);
        assert_eq!(env.status()["outbox"]["unknown"], 1);
        let report: serde_json::Value =
            serde_json::from_str(&env.ok(&["report", "campaign", "hello", "--json"]).stdout).unwrap();
        assert_eq!(report["runs"][0]["delivery"]["unknown"], 1, "{report}");

        // Nothing re-queues it by itself; `outbox retry` does, on request.
        assert_eq!(
            send(env, server.port(), &["--until-empty"]).stdout,
            "0 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n"
        );
        assert_eq!(env.patron(&["outbox", "retry", "--run", "999"]).code, 2);
        assert_eq!(env.patron(&["outbox", "retry", "--since", "yesterday"]).code, 2);
        assert_eq!(
            env.ok(&["outbox", "retry", "--state", "unknown", "--since", "2026-01-01"]).stdout,
            "1 unknown message(s) re-queued\n"
        );
        assert_eq!(
            send(env, server.port(), &[]).stdout,
            "1 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n"
        );
        assert_eq!(per_recipient(&server.received())["c5@example.com"], 2);
        assert_eq!(env.strings(&format!("SELECT o.state {row}")), ["sent"]);
    });
}

#[test]
fn with_resend_unknown_a_lost_reply_costs_at_most_one_extra_copy() {
    each_backend(|env| {
        customers(env, 3);
        plan(env);
        let after_data =
            Arc::new(|to: &str, n: usize| if to == "c2@example.com" && n == 1 { Reply::HangUp } else { Reply::Accept });
        let server = SmtpServer::scripted("127.0.0.1:0", Script { after_data, ..Script::default() });
        let run = send_with(env, server.port(), &["--until-empty"], &[("PATRON__DELIVERY__RESEND_UNKNOWN", "true")]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.stdout, "3 sent, 1 to retry later, 0 failed, 0 suppressed, 0 unknown\n");
        assert_eq!(per_recipient(&server.received())["c2@example.com"], 2);
    });
}

#[test]
fn a_lease_shorter_than_the_queue_never_makes_one_sender_send_twice() {
    each_backend(|env| {
        customers(env, 30);
        plan(env);
        let after_data = Arc::new(|_: &str, _: usize| Reply::AcceptAfter(Duration::from_millis(200)));
        let server = SmtpServer::scripted("127.0.0.1:0", Script { after_data, ..Script::default() });
        // 30 rows claimed at once take 6 s to send, three times the lease.
        let short = [
            ("PATRON__DELIVERY__LEASE", "2s"),
            ("PATRON__DELIVERY__CONCURRENCY", "1"),
            ("PATRON__SMTP__TIMEOUT", "1s"),
        ];
        let run = send_with(env, server.port(), &["--until-empty"], &short);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.stdout, "30 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n");
        let counts = per_recipient(&server.received());
        assert_eq!(counts.len(), 30);
        assert!(counts.values().all(|&n| n == 1), "{counts:?}");

        // A lease that cannot cover the sessions' timeouts is refused at start.
        let refused = send_with(
            env,
            server.port(),
            &[],
            &[("PATRON__DELIVERY__LEASE", "2s"), ("PATRON__DELIVERY__CONCURRENCY", "8")],
        );
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert!(refused.stderr.contains("delivery.lease"), "{}", refused.stderr);
    });
}

#[test]
fn a_server_down_longer_than_the_retry_budget_spends_no_attempt_and_nothing_fails() {
    each_backend(|env| {
        customers(env, 50);
        plan(env);
        let port = free_port();
        // One pass while the server is down: the messages go back, exit code 1.
        let once = send(env, port, &[]);
        assert_eq!(once.code, 1, "{}", once.stderr);
        assert!(once.stderr.contains("sending paused") && once.stderr.contains("cannot connect"), "{}", once.stderr);
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'planned' AND attempts = 0"), 50);

        // Two attempts a second apart would be the whole retry budget.
        let mut sender = spawn_send(env, port, &[("PATRON__DELIVERY__MAX_ATTEMPTS", "2")]);
        std::thread::sleep(Duration::from_secs(6));
        assert!(sender.try_wait().unwrap().is_none(), "the sender waits for the server");
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state IN ('failed', 'retrying')"), 0);
        let paused = &env.status()["sending_paused"];
        assert_eq!(paused.as_array().map(Vec::len), Some(1), "{paused}");
        assert!(paused[0]["reason"].as_str().unwrap().contains("cannot connect"), "{paused}");

        let server = SmtpServer::start_with(&format!("127.0.0.1:{port}"), Arc::new(|_, _| "250 OK"));
        // The paused sender tries again after 1, 2, 4, 8, 16, 32 ... s: on a
        // loaded machine the server may come up just after a try, so allow more
        // than the gap to the one after next.
        assert!(wait_with_timeout(&mut sender, Duration::from_secs(150)).success());
        let counts = per_recipient(&server.received());
        assert_eq!(counts.len(), 50);
        assert!(counts.values().all(|&n| n == 1));
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'sent' AND attempts = 1"), 50);
        assert_eq!(env.status()["sending_paused"], serde_json::json!([]));
    });
}

#[test]
fn message_ids_differ_between_two_fresh_databases_and_stay_with_their_row() {
    for backend in backends() {
        let message_ids: Vec<String> = [TestEnv::new(backend), TestEnv::new(backend)]
            .iter()
            .map(|env| {
                customers(env, 1);
                plan(env);
                let run = env.command(&["send"]).env("PATRON__UNSUBSCRIBE__SECRET", SECRET).output().unwrap();
                assert!(run.status.success());
                let id = env.strings("SELECT message_id FROM outbox")[0].clone();
                let file = std::fs::read_dir(env.dir.path().join("data/mail")).unwrap().next().unwrap().unwrap();
                let text = std::fs::read_to_string(file.path()).unwrap();
                assert!(text.contains(&format!("Message-ID: {id}")), "{text}");
                id
            })
            .collect();
        for id in &message_ids {
            assert!(id.starts_with("<1.1.") && id.ends_with(".patron@patron.localhost>"), "{id}");
        }
        assert_ne!(message_ids[0], message_ids[1], "the same outbox and run ids in two databases");
    }
}

#[test]
fn sigterm_to_send_finishes_the_messages_in_flight_and_gives_back_the_rest_at_once() {
    each_backend(|env| {
        customers(env, 40);
        plan(env);
        let after_data = Arc::new(|_: &str, _: usize| Reply::AcceptAfter(Duration::from_millis(300)));
        let server = SmtpServer::scripted("127.0.0.1:0", Script { after_data, ..Script::default() });
        let mut sender = spawn_send(env, server.port(), &[("PATRON__DELIVERY__CONCURRENCY", "2")]);
        assert!(server.wait_for(4, Duration::from_secs(30)), "sending did not start");
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(sender.id() as libc::pid_t, libc::SIGTERM) };
        let status = wait_with_timeout(&mut sender, Duration::from_secs(20));
        let mut stderr = String::new();
        std::io::Read::read_to_string(sender.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("SIGTERM"), "{stderr}");

        let arrived = server.count() as i64;
        assert!(arrived < 40, "everything was sent before the stop");
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'sending'"), 0);
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'"), arrived, "in flight: finished");
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'planned' AND attempts = 0"), 40 - arrived);
    });
}

#[test]
fn a_pause_after_the_server_took_messages_again_starts_from_the_first_wait() {
    each_backend(|env| {
        customers(env, 30);
        plan(env);
        let port = free_port();
        let log = env.path("send.log");
        let mut command = env.command(&["send", "--until-empty"]);
        smtp_env(&mut command, port).env("PATRON__DELIVERY__CONCURRENCY", "1").stdout(std::process::Stdio::null());
        let mut sender = command.stderr(std::fs::File::create(&log).unwrap()).spawn().expect("start patron send");
        let pauses = || -> Vec<i64> {
            let text = std::fs::read_to_string(&log).unwrap();
            text.lines()
                .filter_map(|line| line.split("wait_seconds=").nth(1))
                .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
                .collect()
        };
        // Down at first: the waits grow, 1 s, 2 s, ...
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while pauses().len() < 2 {
            assert!(std::time::Instant::now() < deadline, "no pauses logged: {:?}", std::fs::read_to_string(&log));
            std::thread::sleep(Duration::from_millis(50));
        }
        // Up: it takes three messages, then hangs up on each one after.
        let taken = std::sync::atomic::AtomicUsize::new(0);
        let after_data = Arc::new(move |_: &str, _: usize| {
            if taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3 { Reply::Accept } else { Reply::HangUp }
        });
        let server = SmtpServer::scripted(&format!("127.0.0.1:{port}"), Script { after_data, ..Script::default() });
        assert!(server.wait_for(3, Duration::from_secs(60)), "the sender did not come back");
        let came_back = chrono::Utc::now();
        let before = pauses().len();
        // Down again, once the fourth message was hung up on: a server
        // stopped before it arrived would drop the session unanswered.
        assert!(server.wait_for(4, Duration::from_secs(60)), "no fourth message");
        drop(server);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while pauses().len() == before {
            assert!(std::time::Instant::now() < deadline, "no pause after the server went down again");
            std::thread::sleep(Duration::from_millis(50));
        }
        let waits = pauses();
        assert!(waits[..before].windows(2).all(|w| w[1] == 2 * w[0]), "{waits:?}");
        assert_eq!(waits[before], 1, "a new pause starts from the first wait: {waits:?}");
        let paused = &env.status()["sending_paused"];
        let since: chrono::DateTime<chrono::Utc> = paused[0]["since"].as_str().unwrap().parse().unwrap();
        assert!(since >= came_back, "the new pause's start, not the first's: {paused}");

        // Up for good: the rest goes.
        let server = SmtpServer::start_with(&format!("127.0.0.1:{port}"), Arc::new(|_, _| "250 OK"));
        assert!(wait_with_timeout(&mut sender, Duration::from_secs(60)).success());
        // The hung-up messages are `unknown`, not sent again; every other one went once.
        let unknown = count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'unknown'");
        assert!(unknown >= 1);
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'"), 30 - unknown);
        assert_eq!(server.count() as i64, 30 - 3 - unknown);
        assert_eq!(env.status()["sending_paused"], serde_json::json!([]));
    });
}

/// A trigger that fails every result that marks a message sent: where each
/// engine's recorder writes it (on PostgreSQL, the results log).
fn refuse_sent_results(env: &TestEnv) {
    env.execute(match env.backend {
        Backend::Sqlite => {
            "CREATE TRIGGER refuse_results BEFORE UPDATE OF state ON outbox WHEN NEW.state = 'sent' \
             BEGIN SELECT RAISE(ABORT, 'results refused by the test'); END"
        }
        Backend::Postgres => {
            "CREATE FUNCTION refuse_results() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'results refused by the test'; END $$; \
             CREATE TRIGGER refuse_results BEFORE INSERT ON outbox_results FOR EACH ROW \
             WHEN (NEW.state = 'sent') EXECUTE FUNCTION refuse_results()"
        }
    });
}

#[test]
fn a_result_a_dead_sender_logged_is_folded_into_its_row_and_its_message_not_sent_again() {
    each_backend(|env| {
        customers(env, 2);
        plan(env);
        // A sender died after logging the server's answer for the first row
        // and before it was folded into the outbox: the row is still
        // `sending`, and its lease has run out.
        env.execute(
            "UPDATE outbox SET state = 'sending', attempts = 1, lease_until = '2000-01-01 00:00:00+00' \
             WHERE id = (SELECT MIN(id) FROM outbox)",
        );
        env.execute(
            "INSERT INTO outbox_results (outbox_id, attempts, state, sent_at, message_id, server_reply, \
             recorded_at) SELECT MIN(id), 1, 'sent', '2000-01-01 00:00:00+00', '<logged@test>', '250 logged', \
             '2000-01-01 00:00:00+00' FROM outbox",
        );
        let server = SmtpServer::start();
        let run = send(env, server.port(), &["--until-empty"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.stdout, "1 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n");
        assert_eq!(server.received().iter().flat_map(|m| m.recipients.clone()).collect::<Vec<_>>(), ["c2@example.com"]);
        assert_eq!(
            env.strings("SELECT state || ' ' || message_id || ' ' || server_reply FROM outbox ORDER BY id")[0],
            "sent <logged@test> 250 logged"
        );
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'"), 2);
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox_results"), 0);
    });
}

#[test]
fn a_database_that_refuses_the_results_ends_the_send_with_its_error_and_nothing_more_goes() {
    each_backend(|env| {
        // More rows than one worker's queue holds: the claimer fills it again
        // while the first result is being refused.
        customers(env, 100);
        plan(env);
        refuse_sent_results(env);
        let server = SmtpServer::start();
        let mut sender = spawn_send(env, server.port(), &[("PATRON__DELIVERY__CONCURRENCY", "1")]);
        let status = wait_or_kill(&mut sender, Duration::from_secs(30)).expect("patron send hung");
        let stderr = std::io::read_to_string(sender.stderr.take().unwrap()).unwrap();
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("results refused by the test"), "{stderr}");
        // The second message waited for the first result: its content never went.
        assert_eq!(server.count(), 1);
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'"), 0);
        // The rest went back: only the row whose result was refused, and the
        // next one if its worker had started on it, stay claimed until their
        // lease runs out.
        let claimed = count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'sending'");
        assert!((1..=2).contains(&claimed), "{claimed} rows left claimed");
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'planned'"), 100 - claimed);
    });
}
