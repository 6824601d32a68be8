//! Send windows and expiry through the binary: runs planned at a given
//! moment (`campaign run --at`) and senders run as of a given moment (`send
//! --now`), against the project's SMTP server, so no test waits for a clock.

use std::sync::Arc;

use crate::delivery::{count, per_recipient, send};
use crate::smtp_server::SmtpServer;
use crate::support::{TestEnv, each_backend};

/// A campaign in Berlin's time zone with `extra` top-level keys.
fn campaign(extra: &str) -> String {
    format!(
        "kind = \"marketing\"\ntimezone = \"Europe/Berlin\"\n{extra}\n\n[audience]\nwhere = 'first_name is not null'\n\
         holdout = 0\n\n[message]\nfrom = \"Shop <shop@example.com>\"\nsubject = \"Hi {{{{ customer.first_name }}}}\"\n\
         text = \"Hi {{{{ customer.first_name }}}}, unsubscribe: {{{{ unsubscribe_url }}}}\"\n"
    )
}

/// Customers 1..=n (c<i>@example.com) and the campaign `hello`.
fn setup(env: &TestEnv, n: u32, extra: &str) {
    env.numbered_customers(n, "'T' || CAST(i AS TEXT)");
    std::fs::create_dir_all(env.dir.path().join("campaigns")).unwrap();
    env.write("campaigns/hello.toml", campaign(extra));
}

fn plan_at(env: &TestEnv, at: &str) {
    env.ok(&["campaign", "run", "hello", "--at", at]);
}

fn send_at(env: &TestEnv, server: &SmtpServer, now: &str) -> String {
    let run = send(env, server.port(), &["--until-empty", "--now", now]);
    assert_eq!(run.code, 0, "send --now {now}: {}", run.stderr);
    run.stdout
}

#[test]
fn a_message_planned_after_its_window_closed_is_sent_when_it_opens_the_next_morning() {
    each_backend(|env| {
        setup(env, 3, "send_window = \"09:00-20:00\"");
        plan_at(env, "2026-12-01T22:00:00+01:00");
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE not_before IS NOT NULL AND expires_at IS NULL"), 3);
        let server = SmtpServer::start();

        for now in ["2026-12-01T22:30:00+01:00", "2026-12-02T08:59:59+01:00"] {
            assert_eq!(send_at(env, &server, now), "0 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n");
        }
        assert_eq!(server.count(), 0);
        assert_eq!(env.status()["outbox"]["planned"], 3);

        assert_eq!(
            send_at(env, &server, "2026-12-02T09:00:00+01:00"),
            "3 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n"
        );
        let counts = per_recipient(&server.received());
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&n| n == 1));
        assert_eq!(env.status()["outbox"]["sent"], 3);
    });
}

#[test]
fn a_run_planned_inside_its_window_is_sent_at_once() {
    each_backend(|env| {
        setup(env, 2, "send_window = \"20:00-08:00\"");
        // 23:00 is inside a window that wraps midnight.
        plan_at(env, "2026-12-01T23:00:00+01:00");
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE not_before IS NULL"), 2);
        let server = SmtpServer::start();
        assert_eq!(
            send_at(env, &server, "2026-12-01T23:00:00+01:00"),
            "2 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n"
        );
    });
}

#[test]
fn an_expired_message_is_never_sent_and_is_counted_as_expired() {
    each_backend(|env| {
        // Planned at 22:00 for a window that opens at 09:00, expiring at midnight.
        setup(env, 3, "send_window = \"09:00-20:00\"\nexpires_after = \"2h\"");
        plan_at(env, "2026-12-01T22:00:00+01:00");
        let server = SmtpServer::start();
        assert_eq!(
            send_at(env, &server, "2026-12-01T23:59:59+01:00"),
            "0 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n"
        );
        assert_eq!(
            send_at(env, &server, "2026-12-02T09:00:00+01:00"),
            "0 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown, 3 expired\n"
        );
        assert_eq!(server.count(), 0);
        let status = env.status();
        assert_eq!(status["outbox"]["expired"], 3, "{status}");
        assert!(status["outbox"].get("planned").is_none(), "{status}");
        let report: serde_json::Value =
            serde_json::from_str(&env.ok(&["report", "campaign", "hello", "--json"]).stdout).unwrap();
        let delivery = &report["runs"][0]["delivery"];
        assert_eq!((delivery["expired"].as_u64(), delivery["waiting"].as_u64()), (Some(3), Some(0)), "{report}");
        let text = env.ok(&["status"]).stdout;
        assert!(text.contains("outbox:          3 expired"), "{text}");
        // Never sent later either.
        assert_eq!(
            send_at(env, &server, "2026-12-02T10:00:00+01:00"),
            "0 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n"
        );
        assert_eq!(server.count(), 0);
    });
}

#[test]
fn a_retrying_message_and_one_whose_lease_ran_out_are_not_sent_after_their_expiry() {
    each_backend(|env| {
        setup(env, 3, "expires_after = \"1h\"");
        plan_at(env, "2026-12-01T22:00:00+01:00");
        let policy = Arc::new(|address: &str, _attempt: usize| match address {
            "c2@example.com" => "451 4.3.0 try again later",
            _ => "250 2.1.5 OK",
        });
        let server = SmtpServer::start_with("127.0.0.1:0", policy);
        // c3's row was claimed by a sender that died: its lease ran out at 22:10.
        env.execute(
            "UPDATE outbox SET state = 'sending', attempts = 1, lease_until = '2026-12-01T21:10:00+00:00' \
             WHERE customer_id = 3",
        );
        // At 22:05 the lease still holds c3; c2 is refused for now and retried later; c1 goes.
        let mut command = env.command(&["send", "--now", "2026-12-01T22:05:00+01:00"]);
        let run = crate::support::Run::from(
            crate::delivery::smtp_env(&mut command, server.port()).output().expect("run patron send"),
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.stdout, "1 sent, 1 to retry later, 0 failed, 0 suppressed, 0 unknown\n");
        assert_eq!(server.rcpt_attempts("c2@example.com"), 1);
        // At 23:00 both have expired: neither is tried again.
        assert_eq!(
            send_at(env, &server, "2026-12-01T23:00:00+01:00"),
            "0 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown, 2 expired\n"
        );
        assert_eq!(server.rcpt_attempts("c2@example.com"), 1);
        assert_eq!(server.rcpt_attempts("c3@example.com"), 0);
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'expired' AND lease_until IS NULL"), 2);
        assert_eq!(env.status()["outbox"]["sent"], 1);
    });
}

#[test]
fn a_window_in_the_customers_zone_sends_each_customer_in_their_own_hours() {
    each_backend(|env| {
        setup(env, 3, "send_window = \"09:00-20:00\"\nsend_window_zone = \"customer\"");
        // Customer 2 lives in New York; customer 3's zone is not one, so Berlin's applies, as for customer 1.
        env.execute("UPDATE customers SET attributes = '{\"timezone\": \"America/New_York\"}' WHERE id = 2");
        env.execute("UPDATE customers SET attributes = '{\"timezone\": \"Atlantis/Capital\"}' WHERE id = 3");
        // 22:00 in Berlin is 16:00 in New York.
        plan_at(env, "2026-12-01T22:00:00+01:00");
        let server = SmtpServer::start();
        assert_eq!(
            send_at(env, &server, "2026-12-01T22:30:00+01:00"),
            "1 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n"
        );
        assert_eq!(server.received()[0].recipients, ["c2@example.com"]);
        assert_eq!(
            send_at(env, &server, "2026-12-02T09:00:00+01:00"),
            "2 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n"
        );
        assert_eq!(per_recipient(&server.received()).len(), 3);
    });
}

#[test]
fn a_retry_that_comes_after_the_window_closed_waits_for_it_to_open_again() {
    each_backend(|env| {
        setup(env, 2, "send_window = \"09:00-20:00\"");
        plan_at(env, "2026-12-01T19:58:00+01:00");
        let policy = Arc::new(|address: &str, attempt: usize| match address {
            "c2@example.com" if attempt == 1 => "451 4.3.0 try again later",
            _ => "250 2.1.5 OK",
        });
        let server = SmtpServer::start_with("127.0.0.1:0", policy);
        assert_eq!(
            send_at(env, &server, "2026-12-01T19:58:00+01:00"),
            "1 sent, 1 to retry later, 0 failed, 0 suppressed, 0 unknown\n"
        );
        // The retry is due at 20:30, after the window closed: it waits for 09:00.
        assert_eq!(
            send_at(env, &server, "2026-12-01T20:30:00+01:00"),
            "0 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n"
        );
        assert_eq!(server.rcpt_attempts("c2@example.com"), 1);
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'retrying' AND not_before IS NOT NULL"), 1);
        assert_eq!(
            send_at(env, &server, "2026-12-02T08:30:00+01:00"),
            "0 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n"
        );
        assert_eq!(
            send_at(env, &server, "2026-12-02T09:00:00+01:00"),
            "1 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n"
        );
        assert_eq!(server.rcpt_attempts("c2@example.com"), 2);
    });
}

#[test]
fn preview_shows_the_window_the_expiry_and_when_the_next_runs_would_go_out() {
    each_backend(|env| {
        env.numbered_customers(2, "'T' || CAST(i AS TEXT)");
        std::fs::create_dir_all(env.dir.path().join("campaigns")).unwrap();
        let file = campaign("schedule = \"0 22 * * *\"\nsend_window = \"09:00-20:00\"\nexpires_after = \"2d\"")
            .replace("Europe/Berlin", "UTC");
        env.write("campaigns/hello.toml", file);
        let out = env.ok(&["campaign", "preview", "hello"]).stdout;
        assert!(out.contains("\nsend window: 09:00-20:00 (UTC)\n"), "{out}");
        assert!(
            out.contains("\nexpires_after: 2d (a message not sent within 2d of its run's fire time is never sent)\n"),
            "{out}"
        );
        assert!(out.contains("\na run now would be sent "), "{out}");
        let fires: Vec<&str> = out.lines().filter(|line| line.starts_with("  20") && line.contains(": sent")).collect();
        assert_eq!(fires.len(), 5, "{out}");
        for line in fires {
            let day = chrono::NaiveDate::parse_from_str(&line[2..12], "%Y-%m-%d").unwrap();
            let (next, after) = (day + chrono::Duration::days(1), day + chrono::Duration::days(2));
            assert_eq!(line, format!("  {day} 22:00 UTC: sent from {next} 09:00 UTC, expiring {after} 22:00 UTC"));
        }

        env.write("campaigns/hello.toml", campaign("send_window = \"09:00-20:00\"\nsend_window_zone = \"customer\""));
        let out = env.ok(&["campaign", "preview", "hello"]).stdout;
        assert!(
            out.contains(
                "\nsend window: 09:00-20:00 in each customer's time zone (their `timezone` attribute; \
                 Europe/Berlin without a valid one)\n"
            ),
            "{out}"
        );
    });
}
