//! The mail feedback loop through the binary: messages sent with a VERP
//! envelope sender, then bounces (as Postfix and Exim write them), an ARF
//! complaint and an unsubscribe request fed back through the pipe command,
//! a Maildir and an IMAP mailbox (Dovecot). Each lands on its outbox row and suppresses the address;
//! the same report twice counts once; what is not a report is kept aside;
//! the next run leaves the addresses out.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::delivery::{SECRET, count, customers, plan, send, smtp_env};
use crate::imap_server::Dovecot;
use crate::smtp_server::SmtpServer;
use crate::support::{Backend, Run, TestEnv, each_backend};

pub(crate) const RETURN_PATH: &str = "bounces+{token}@mail.shop.example";
pub(crate) const MAILTO: &str = "unsubscribe@shop.example";

fn sample(name: &str) -> String {
    let path = format!("{}/tests/data/feedback/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")).replace('\n', "\r\n")
}

/// A sample with its placeholders filled in.
pub(crate) fn report(name: &str, return_path: &str, message_id: &str, recipient: &str) -> String {
    sample(name)
        .replace("{{RETURN_PATH}}", return_path)
        .replace("{{MESSAGE_ID}}", message_id)
        .replace("{{RECIPIENT}}", recipient)
}

/// The settings every command of these tests shares with `patron send`.
pub(crate) fn feedback_env(command: &mut Command) -> &mut Command {
    command
        .env("PATRON__UNSUBSCRIBE__SECRET", SECRET)
        .env("PATRON__DELIVERY__RETURN_PATH", RETURN_PATH)
        .env("PATRON__UNSUBSCRIBE__MAILTO", MAILTO)
}

/// `patron feedback ingest` with `message` on standard input.
fn pipe(env: &TestEnv, message: &str) -> Run {
    let mut command = env.command(&["feedback", "ingest"]);
    feedback_env(&mut command).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("start patron feedback ingest");
    child.stdin.take().unwrap().write_all(message.as_bytes()).unwrap();
    Run::from(child.wait_with_output().unwrap())
}

fn maildir(env: &TestEnv, dir: &str) -> Run {
    let mut command = env.command(&["feedback", "ingest", "--maildir", dir]);
    Run::from(feedback_env(&mut command).output().unwrap())
}

/// The envelope sender and Message-ID of the message each address received.
pub(crate) struct Sent {
    pub(crate) verp: String,
    pub(crate) message_id: String,
}

pub(crate) fn sent_to(server: &SmtpServer, address: &str) -> Sent {
    let message = server.received().into_iter().find(|m| m.recipients == [address]).expect("a message to the address");
    let parsed = mail_parser::MessageParser::default().parse(&message.data).unwrap();
    Sent { verp: message.sender, message_id: format!("<{}>", parsed.message_id().unwrap()) }
}

pub(crate) fn suppressions(env: &TestEnv) -> Vec<String> {
    env.strings("SELECT email || ' ' || reason FROM suppressions ORDER BY email")
}

/// 20 customers, one run sent through the test SMTP server with VERP.
pub(crate) fn sent_campaign(env: &TestEnv) -> SmtpServer {
    customers(env, 20);
    plan(env);
    let server = SmtpServer::start();
    let mut command = env.command(&["send", "--until-empty"]);
    let run = Run::from(feedback_env(smtp_env(&mut command, server.port())).output().unwrap());
    assert_eq!(run.code, 0, "{}", run.stderr);
    server
}

#[test]
fn each_message_goes_out_with_its_own_signed_envelope_sender() {
    each_backend(|env| {
        let server = sent_campaign(env);
        let received = server.received();
        assert_eq!(received.len(), 20);
        let mut senders: Vec<&str> = received.iter().map(|m| m.sender.as_str()).collect();
        assert!(senders.iter().all(|s| s.starts_with("bounces+") && s.ends_with("@mail.shop.example")), "{senders:?}");
        senders.sort();
        senders.dedup();
        assert_eq!(senders.len(), 20, "one envelope sender per message");
        // The From header is still the campaign's sender.
        assert!(String::from_utf8_lossy(&received[0].data).contains("From: Shop <shop@example.com>"));
    });
}

#[test]
fn bounces_and_complaints_land_on_their_outbox_rows_suppress_once_and_leave_the_next_run_out() {
    each_backend(|env| {
        let server = sent_campaign(env);
        let c3 = sent_to(&server, "c3@example.com");

        // A Postfix bounce through the pipe, tied by its VERP address alone.
        let bounce = report("postfix-hard-bounce.eml", &c3.verp, "<unknown@elsewhere.example>", "c3@example.com");
        let run = pipe(env, &bounce);
        assert_eq!((run.code, run.stdout.as_str()), (0, "1 event(s) recorded, 0 already recorded\n"), "{}", run.stderr);
        assert_eq!(suppressions(env), ["c3@example.com bounced"]);
        let event = env.strings(
            "SELECT f.kind || ' ' || f.status || ' ' || f.matched_by || ' ' || c.email FROM feedback_events f \
             JOIN outbox o ON o.id = f.outbox_id JOIN customers c ON c.id = o.customer_id",
        );
        assert_eq!(event, ["hard_bounce 5.1.1 verp c3@example.com"]);
        // The same report again changes nothing.
        let run = pipe(env, &bounce);
        assert_eq!((run.code, run.stdout.as_str()), (0, "0 event(s) recorded, 1 already recorded\n"), "{}", run.stderr);
        assert_eq!(count(env, "SELECT COUNT(*) FROM feedback_events"), 1);

        // A Maildir: an Exim bounce tied by the Message-ID it quotes, an ARF
        // complaint by the Return-Path it quotes, an unsubscribe request, a
        // report on a recipient only, and an out-of-office reply.
        let dir = env.path("Maildir");
        for folder in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(format!("{dir}/{folder}")).unwrap();
        }
        let c4 = sent_to(&server, "c4@example.com");
        let c5 = sent_to(&server, "c5@example.com");
        let messages = [
            ("1.exim", report("exim-hard-bounce.eml", "bounces@relay.shop.example", &c4.message_id, "c4@example.com")),
            ("2.arf", report("arf-complaint.eml", &c5.verp, "<redacted@example.com>", "")),
            ("3.unsubscribe", report("unsubscribe-request.eml", "", "", "C7@Example.com")),
            ("4.recipient", report("postfix-hard-bounce.eml", "bounces@relay.shop.example", "<x@y>", "c8@example.com")),
            ("5.ooo", report("not-a-report.eml", &c3.verp, "", "c3@example.com")),
        ];
        for (name, text) in &messages {
            std::fs::write(format!("{dir}/new/{name}"), text).unwrap();
        }
        let run = maildir(env, &dir);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stdout.ends_with(": 5 message(s), 4 event(s) recorded, 0 already recorded, 1 kept aside in failed/\n"),
            "{}",
            run.stdout
        );
        assert_eq!(
            suppressions(env),
            [
                "c3@example.com bounced",
                "c4@example.com bounced",
                "c5@example.com complained",
                "c7@example.com unsubscribed",
                "c8@example.com bounced"
            ]
        );
        // Each is a change of consent on record, with where it came from.
        let consent = env.strings(
            "SELECT CAST(customer_id AS TEXT) || ' ' || new_state || ' ' || source || ' ' || basis FROM consent_events",
        );
        for expected in [
            "3 suppressed bounce bounced (feedback:pipe)",
            "5 suppressed complaint complained (feedback:maildir)",
            "7 unsubscribed mailto feedback:maildir",
        ] {
            assert!(consent.iter().any(|e| e == expected), "{expected} not in {consent:?}");
        }
        let matched = env.strings("SELECT kind || ' ' || COALESCE(matched_by, '-') FROM feedback_events ORDER BY id");
        assert_eq!(
            matched,
            [
                "hard_bounce verp",
                "hard_bounce message-id",
                "complaint verp",
                "unsubscribe -",
                "hard_bounce recipient",
                "aside -"
            ]
        );
        assert_eq!(
            env.strings("SELECT CAST(marketing_consent AS TEXT) FROM customers WHERE email = 'c7@example.com'"),
            [consent_false(env)]
        );
        let mut used: Vec<String> = std::fs::read_dir(format!("{dir}/cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        used.sort();
        assert_eq!(used, ["1.exim:2,S", "2.arf:2,S", "3.unsubscribe:2,S", "4.recipient:2,S"]);
        let reason = std::fs::read_to_string(format!("{dir}/failed/5.ooo.reason")).unwrap();
        assert_eq!(reason, "neither a delivery report, a feedback report nor an unsubscribe request\n");
        assert!(std::fs::read_dir(format!("{dir}/new")).unwrap().next().is_none());

        // status counts the events by kind.
        let status = env.status();
        assert_eq!(status["feedback"]["hard_bounce"], 3);
        assert_eq!(status["feedback"]["complaint"], 1);
        assert_eq!(status["feedback"]["aside"], 1);
        // report campaign: per run, the messages that bounced or drew a complaint, and their share of the 20 sent.
        let text = env.ok(&["report", "campaign", "hello"]).stdout;
        let row = text.lines().skip_while(|l| !l.starts_with("bounces and complaints")).nth(2).unwrap_or_default();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells, ["1", "20", "3", "(15.00%)", "0", "(0.00%)", "1", "(5.00%)"], "{text}");

        // The next run leaves every suppressed address out, and sends them nothing.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        plan(env);
        let planned = env.strings(
            "SELECT c.email FROM outbox o JOIN customers c ON c.id = o.customer_id \
             WHERE o.state = 'planned' ORDER BY c.email",
        );
        assert_eq!(planned.len(), 15, "{planned:?}");
        for gone in ["c3@", "c4@", "c5@", "c7@", "c8@"] {
            assert!(!planned.iter().any(|p| p.starts_with(gone)), "{gone} planned again: {planned:?}");
        }
        let second = SmtpServer::start();
        assert_eq!(send(env, second.port(), &["--until-empty"]).code, 0);
        assert_eq!(second.rcpt_attempts("c3@example.com") + second.rcpt_attempts("c5@example.com"), 0);
    });
}

/// `n` Postfix bounces in `dir/new`, message `i` about customer `i % 20 + 1`
/// and returned to that customer's VERP address, each its own report
/// (Message-ID `<i.dsn@mx1.shop.example>`).
fn bounces_in_maildir(server: &SmtpServer, dir: &str, n: usize) {
    for folder in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(format!("{dir}/{folder}")).unwrap();
    }
    let addresses: Vec<String> = (1..=20).map(|i| format!("c{i}@example.com")).collect();
    let verps: Vec<Sent> = addresses.iter().map(|a| sent_to(server, a)).collect();
    for i in 1..=n {
        let (address, sent) = (&addresses[i % 20], &verps[i % 20]);
        let text = report("postfix-hard-bounce.eml", &sent.verp, "<unknown@elsewhere.example>", address)
            .replace("<20261201100002.4B1F52A0C41@mx1.shop.example>", &format!("<{i}.dsn@mx1.shop.example>"));
        std::fs::write(format!("{dir}/new/{i:05}.dsn"), text).unwrap();
    }
}

fn files_in(folder: &str) -> usize {
    std::fs::read_dir(folder).unwrap().count()
}

#[test]
fn a_maildir_of_several_batches_moves_out_only_what_was_committed() {
    each_backend(|env| {
        let server = sent_campaign(env);
        let dir = env.path("Maildir");
        // Three batches (500, 500, 200); the database refuses report 700, in the second.
        bounces_in_maildir(&server, &dir, 1200);
        env.execute(match env.backend {
            Backend::Sqlite => {
                "CREATE TRIGGER refuse_one BEFORE INSERT ON feedback_events \
                 WHEN NEW.fingerprint LIKE 'id:700.dsn@%' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            }
            Backend::Postgres => {
                "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.fingerprint LIKE 'id:700.dsn@%' THEN RAISE EXCEPTION 'refused by the test'; END IF; \
                 RETURN NEW; END $$; \
                 CREATE TRIGGER refuse_one BEFORE INSERT ON feedback_events \
                 FOR EACH ROW EXECUTE FUNCTION refuse_one()"
            }
        });
        let run = maildir(env, &dir);
        assert_ne!(run.code, 0, "{}", run.stdout);
        assert!(run.stderr.contains("refused by the test"), "{}", run.stderr);
        // The first batch is committed and filed; the second and third stay to be read again.
        assert_eq!(count(env, "SELECT COUNT(*) FROM feedback_events"), 500);
        assert_eq!((files_in(&format!("{dir}/cur")), files_in(&format!("{dir}/new"))), (500, 700));
        assert_eq!(suppressions(env).len(), 20);

        env.execute(match env.backend {
            Backend::Sqlite => "DROP TRIGGER refuse_one",
            Backend::Postgres => "DROP TRIGGER refuse_one ON feedback_events",
        });
        let run = maildir(env, &dir);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stdout
                .ends_with(": 700 message(s), 700 event(s) recorded, 0 already recorded, 0 kept aside in failed/\n"),
            "{}",
            run.stdout
        );
        assert_eq!(count(env, "SELECT COUNT(*) FROM feedback_events"), 1200);
        assert_eq!((files_in(&format!("{dir}/cur")), files_in(&format!("{dir}/new"))), (1200, 0));
        let per_message = "SELECT COUNT(DISTINCT fingerprint) FROM feedback_events WHERE kind = 'hard_bounce'";
        assert_eq!(count(env, per_message), 1200);
    });
}

/// How the database shows `false` as text.
fn consent_false(env: &TestEnv) -> String {
    match env.backend {
        crate::support::Backend::Sqlite => "0".into(),
        _ => "false".into(),
    }
}

#[test]
fn soft_bounces_suppress_at_the_limit_and_forged_reports_change_nothing() {
    each_backend(|env| {
        let server = sent_campaign(env);
        let c6 = sent_to(&server, "c6@example.com");
        let delayed = report("postfix-delayed.eml", &c6.verp, &c6.message_id, "c6@example.com");
        for attempt in 1..=3 {
            // Each notice of the mail server is a report of its own.
            let notice =
                delayed.replace("<20261201140002.4B1F52A0C41@", &format!("<2026120114000{attempt}.4B1F52A0C41@"));
            assert_eq!(pipe(env, &notice).code, 0);
            let expected: &[&str] = if attempt < 3 { &[] } else { &["c6@example.com bounced"] };
            assert_eq!(suppressions(env), expected, "after {attempt} soft bounce(s)");
        }

        // A token that was not signed by patron, a foreign Message-ID and a
        // stranger's address: kept aside, nothing suppressed.
        let forged_verp = c6.verp.replacen("bounces+", "bounces+9", 1);
        let forged = report("postfix-hard-bounce.eml", &forged_verp, "<1.1.other.patron@x>", "stranger@example.org");
        let run = pipe(env, &forged);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(run.stdout.starts_with("kept aside in "), "{}", run.stdout);
        assert!(run.stdout.contains("a report about no message that patron sent"), "{}", run.stdout);
        assert_eq!(suppressions(env), ["c6@example.com bounced"]);
        let kept = std::fs::read_dir(env.path("data/feedback-aside")).unwrap().count();
        assert_eq!(kept, 2, "the message and its .reason file");
    });
}

#[test]
fn a_piped_message_that_cannot_be_recorded_exits_75_so_the_mail_server_keeps_it() {
    let env = TestEnv::new(crate::support::Backend::Sqlite);
    let message = report("postfix-hard-bounce.eml", "bounces+1-00@x.example", "<a@b>", "c1@example.com");
    let mut command = env.command(&["feedback", "ingest"]);
    command.env("PATRON__DATABASE__URL", format!("sqlite://{}/missing/dir/patron.db", env.path("")));
    feedback_env(&mut command).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(message.as_bytes()).unwrap();
    let run = Run::from(child.wait_with_output().unwrap());
    assert_eq!(run.code, 75, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("the mail server will try again"), "{}", run.stderr);
}

#[test]
fn a_campaign_whose_complaints_pass_the_limit_is_paused_until_resumed_and_loses_nothing() {
    each_backend(|env| {
        customers(env, 2000);
        plan(env);
        let server = SmtpServer::start();
        let settings = [
            ("PATRON__DELIVERY__RETURN_PATH", RETURN_PATH),
            ("PATRON__UNSUBSCRIBE__MAILTO", MAILTO),
            ("PATRON__DELIVERY__RATE_PER_SECOND", "100"),
            ("PATRON__FEEDBACK__MIN_SAMPLE", "100"),
        ];
        let mut sender = crate::delivery::spawn_send(env, server.port(), &settings);
        assert!(server.wait_for(300, std::time::Duration::from_secs(120)), "only {} arrived", server.count());
        // One complaint in a few hundred sends: over 0.1%.
        let first = server.received()[0].clone();
        let parsed = mail_parser::MessageParser::default().parse(&first.data).unwrap();
        let complaint = report("arf-complaint.eml", &first.sender, &format!("<{}>", parsed.message_id().unwrap()), "");
        let mut command = env.command(&["feedback", "ingest"]);
        command.env("PATRON__FEEDBACK__MIN_SAMPLE", "100");
        feedback_env(&mut command).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        child.stdin.take().unwrap().write_all(complaint.as_bytes()).unwrap();
        let ingested = Run::from(child.wait_with_output().unwrap());
        assert_eq!(ingested.code, 0, "{}", ingested.stderr);

        // The sender stops sending the campaign and, with nothing else due, finishes.
        assert!(crate::delivery::wait_with_timeout(&mut sender, std::time::Duration::from_secs(120)).success());
        let at_pause = server.count();
        assert!(at_pause < 2000, "every message went out before the pause");
        let status = env.status();
        assert_eq!(status["campaigns_paused"][0]["campaign"], "hello");
        let reason = status["campaigns_paused"][0]["reason"].as_str().unwrap().to_owned();
        assert!(reason.starts_with("spam complaint rate "), "{reason}");
        let waiting = count(env, "SELECT COUNT(*) FROM outbox WHERE state IN ('planned', 'retrying')");
        assert_eq!(waiting as usize + at_pause, 2000, "every message not sent waits");
        // A send while paused sends nothing.
        assert_eq!(send(env, server.port(), &["--until-empty"]).code, 0);
        assert_eq!(server.count(), at_pause);

        let run = env.ok(&["campaign", "resume", "hello"]);
        assert_eq!(run.stdout, "hello: resumed; its waiting messages go out with the next send\n");
        assert_eq!(send(env, server.port(), &["--until-empty"]).code, 0);
        let counts = crate::delivery::per_recipient(&server.received());
        assert_eq!(counts.len(), 2000, "every message arrives");
        assert!(counts.values().all(|n| *n == 1), "none twice");
        assert_eq!(env.status()["campaigns_paused"].as_array().unwrap().len(), 0);
    });
}

/// `patron feedback ingest --imap` on the Dovecot test server's `INBOX`.
pub(crate) fn imap_env<'a>(command: &'a mut Command, server: &Dovecot) -> &'a mut Command {
    feedback_env(command)
        .env("PATRON__FEEDBACK__IMAP_URL", server.url("INBOX"))
        .env("PATRON__FEEDBACK__IMAP_PASSWORD", crate::imap_server::PASSWORD)
        .env("PATRON__FEEDBACK__IMAP_MOVE_TO", "Processed")
}

fn from_imap(env: &TestEnv, server: &Dovecot) -> Run {
    let mut command = env.command(&["feedback", "ingest", "--imap"]);
    Run::from(imap_env(&mut command, server).output().unwrap())
}

#[test]
fn bounces_in_an_imap_mailbox_are_read_once_marked_and_moved_and_the_rest_flagged() {
    each_backend(|env| {
        let Some(imap) = Dovecot::start() else { return };
        let server = sent_campaign(env);
        let (c3, c5) = (sent_to(&server, "c3@example.com"), sent_to(&server, "c5@example.com"));
        let bounce = report("postfix-hard-bounce.eml", &c3.verp, "<unknown@elsewhere.example>", "c3@example.com");
        let complaint = report("arf-complaint.eml", &c5.verp, "<redacted@example.com>", "");
        let other = report("not-a-report.eml", &c3.verp, "", "c3@example.com");
        imap.deliver("Processed", &[]);
        imap.deliver("INBOX", &[bounce.clone(), complaint, other]);

        let run = from_imap(env, &imap);
        assert_eq!(run.code, 0, "{}\n{}", run.stderr, imap.log());
        let mailbox = format!("imap://127.0.0.1:{}/INBOX", imap.port());
        assert_eq!(
            run.stdout,
            format!("{mailbox}: 3 message(s), 2 event(s) recorded, 0 already recorded, 1 kept aside (flagged)\n")
        );
        assert_eq!(suppressions(env), ["c3@example.com bounced", "c5@example.com complained"]);
        let events = env.strings(
            "SELECT kind || ' ' || source || ' ' || COALESCE(matched_by, '-') FROM feedback_events ORDER BY id",
        );
        assert_eq!(events, ["hard_bounce imap verp", "complaint imap verp", "aside imap -"]);
        // The reports moved to Processed, read; the other message stays, read and flagged.
        assert_eq!(imap.flags("Processed"), [["Seen"], ["Seen"]]);
        assert_eq!(imap.flags("INBOX"), [["Flagged", "Seen"]]);

        // A poll with nothing unread reads nothing; the same bounce delivered
        // again is read and counts once.
        let run = from_imap(env, &imap);
        assert_eq!(
            run.stdout,
            format!("{mailbox}: 0 message(s), 0 event(s) recorded, 0 already recorded, 0 kept aside (flagged)\n")
        );
        imap.deliver("INBOX", &[bounce]);
        let run = from_imap(env, &imap);
        assert_eq!(
            run.stdout,
            format!("{mailbox}: 1 message(s), 0 event(s) recorded, 1 already recorded, 0 kept aside (flagged)\n")
        );
        assert_eq!(count(env, "SELECT COUNT(*) FROM feedback_events"), 3);

        // A wrong password: a clear error naming the mailbox, and nothing read.
        imap.deliver("INBOX", &[report("postfix-hard-bounce.eml", &c5.verp, "<x@y>", "c5@example.com")]);
        let mut command = env.command(&["feedback", "ingest", "--imap"]);
        imap_env(&mut command, &imap).env("PATRON__FEEDBACK__IMAP_PASSWORD", "wrong");
        let run = Run::from(command.output().unwrap());
        assert_ne!(run.code, 0);
        assert!(run.stderr.contains(&format!("{mailbox}: logging in: ")), "{}", run.stderr);
        assert!(!run.stderr.contains("wrong"), "the password is never shown: {}", run.stderr);
        assert_eq!(imap.flags("INBOX"), [vec!["Flagged", "Seen"], vec![]]);
    });
}

#[test]
fn a_campaign_whose_recipients_are_refused_over_the_limit_is_paused_by_the_sender_itself() {
    each_backend(|env| {
        customers(env, 1000);
        plan(env);
        // Every fifth address does not exist: 20% hard bounces at RCPT, over the 5% limit.
        let policy = std::sync::Arc::new(|address: &str, _: usize| {
            let number: u32 = address.trim_start_matches('c').split('@').next().unwrap().parse().unwrap();
            if number.is_multiple_of(5) { "550 5.1.1 no such user" } else { "250 2.1.5 OK" }
        });
        let server = SmtpServer::start_with("127.0.0.1:0", policy);
        let mut command = env.command(&["send", "--until-empty"]);
        smtp_env(&mut command, server.port())
            .env("PATRON__DELIVERY__RATE_PER_SECOND", "200")
            .env("PATRON__FEEDBACK__MIN_SAMPLE", "100");
        let run = Run::from(feedback_env(&mut command).output().unwrap());
        assert_eq!(run.code, 0, "{}", run.stderr);

        let status = env.status();
        let reason = status["campaigns_paused"][0]["reason"].as_str().unwrap_or_default().to_owned();
        assert!(reason.starts_with("hard bounce rate "), "{status}");
        let handed = count(env, "SELECT COUNT(*) FROM outbox WHERE state IN ('sent', 'failed')");
        let waiting = count(env, "SELECT COUNT(*) FROM outbox WHERE state IN ('planned', 'retrying')");
        assert!(handed < 1000 && handed + waiting == 1000, "{handed} handed over, {waiting} waiting");
        let refused = count(env, "SELECT COUNT(*) FROM feedback_events WHERE kind = 'hard_bounce' AND source = 'smtp'");
        assert_eq!(refused, count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'failed'"));
    });
}
