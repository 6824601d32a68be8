//! `patron run`, the real binary: systemd notifications, graceful stop,
//! hot reload, metrics, and several daemons on one database.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_parser::MessageParser;

use crate::smtp_server::{Reply, Script, SmtpServer};
use crate::support::{Backend, TestEnv, each_backend};

const SECRET: &str = "test-unsubscribe-secret-of-32-bytes-or-more";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running daemon, its standard error collected, SIGKILLed if still running on drop.
pub(crate) struct Daemon {
    child: Child,
    pub(crate) port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    pub(crate) fn start(env: &TestEnv, settings: &[(&str, String)]) -> Daemon {
        let port = free_port();
        let mut command = env.command(&["run"]);
        command
            .env("PATRON__UNSUBSCRIBE__SECRET", SECRET)
            .env("PATRON__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("PATRON__DAEMON__SEND_INTERVAL", "1s")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in settings {
            command.env(key, value);
        }
        Daemon::from_command(command)
    }

    /// Starts `command` (a `patron run` with its standard error piped).
    fn from_command(mut command: std::process::Command) -> Daemon {
        let port = command
            .get_envs()
            .find(|(key, _)| *key == "PATRON__HTTP__LISTEN")
            .and_then(|(_, value)| value?.to_str()?.rsplit(':').next()?.parse().ok())
            .unwrap_or(0);
        let mut child = command.spawn().expect("start patron run");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let collected = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = collected.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Daemon { child, port, stderr }
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub(crate) fn wait_ready(&self) {
        let ready = wait_until(Duration::from_secs(60), || http(self.port, "/readyz").0 == 200);
        assert!(ready, "the daemon did not become ready:\n{}", self.stderr());
    }

    fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// SIGTERM, then the exit code.
    fn stop(mut self) -> i32 {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the daemon did not stop:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

/// GET `path` on 127.0.0.1:`port`: the status code and body (0 when nothing answers).
fn http(port: u16, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split(' ').nth(1).unwrap_or_default().parse().unwrap_or(0);
    (status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

fn count(env: &TestEnv, sql: &str) -> i64 {
    env.strings(&format!("SELECT CAST(({sql}) AS TEXT)"))[0].parse().unwrap()
}

/// Customers 1..=n with consent and addresses c<i>@example.com, and a campaigns folder.
fn customers(env: &TestEnv, n: u32) {
    env.numbered_customers(n, "'T'");
    std::fs::create_dir_all(env.dir.path().join("campaigns")).unwrap();
}

fn campaign(schedule: &str, subject: &str) -> String {
    let schedule = if schedule.is_empty() { String::new() } else { format!("schedule = \"{schedule}\"\n") };
    format!(
        "kind = \"marketing\"\n{schedule}\n[audience]\nwhere = 'first_name is not null'\nholdout = 0\n\n\
         [message]\nfrom = \"shop@example.com\"\nsubject = \"{subject}\"\ntext = \"Hello {{{{ unsubscribe_url }}}}\"\n"
    )
}

#[test]
fn systemd_hears_ready_and_the_watchdog_and_sigterm_exits_0() {
    let env = TestEnv::new(Backend::Sqlite);
    customers(&env, 1);
    let socket_path = env.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let daemon = Daemon::start(
        &env,
        &[("NOTIFY_SOCKET", socket_path.display().to_string()), ("WATCHDOG_USEC", "400000".to_owned())],
    );
    let mut messages: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buffer) {
            messages.extend(String::from_utf8_lossy(&buffer[..n]).lines().map(str::to_owned));
        }
        let ready_at = messages.iter().position(|m| m == "READY=1");
        if ready_at.is_some_and(|at| messages[at..].iter().filter(|m| *m == "WATCHDOG=1").count() >= 3) {
            break;
        }
    }
    let ready_at = messages.iter().position(|m| m == "READY=1").unwrap_or_else(|| panic!("no READY=1: {messages:?}"));
    assert!(messages[ready_at..].iter().filter(|m| *m == "WATCHDOG=1").count() >= 3, "{messages:?}");
    assert!(messages.iter().any(|m| m.starts_with("STATUS=running")), "{messages:?}");
    assert_eq!(http(daemon.port, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(http(daemon.port, "/readyz").0, 200);
    assert_eq!(daemon.stop(), 0);
}

#[test]
fn sigterm_mid_send_exits_0_and_a_restart_sends_the_rest_once() {
    each_backend(|env| {
        customers(env, 3000);
        env.write("campaigns/hello.toml", campaign("", "Hi"));
        env.ok(&["campaign", "run", "hello"]);
        let server = SmtpServer::start();
        let settings = [
            ("PATRON__DELIVERY__TRANSPORT", "smtp".to_owned()),
            ("PATRON__SMTP__PORT", server.port().to_string()),
            ("PATRON__DELIVERY__RATE_PER_SECOND", "500".to_owned()),
        ];
        let daemon = Daemon::start(env, &settings);
        assert!(server.wait_for(500, Duration::from_secs(60)), "{}", daemon.stderr());
        assert_eq!(daemon.stop(), 0);
        let at_stop = server.count();
        assert!(at_stop < 3000, "everything was sent before the stop");
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'sending'"), 0, "claimed rows are given back");

        let daemon = Daemon::start(env, &settings);
        assert!(server.wait_for(3000, Duration::from_secs(60)), "{}", daemon.stderr());
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(daemon.stop(), 0);
        let mut per_recipient: HashMap<String, usize> = HashMap::new();
        for message in server.received() {
            *per_recipient.entry(message.recipients[0].clone()).or_default() += 1;
        }
        assert_eq!(per_recipient.len(), 3000);
        assert!(per_recipient.values().all(|&n| n == 1), "a graceful stop sends nothing twice");
    });
}

/// The subjects of the .eml files in the mail folder.
fn subjects(mail: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(mail) else { return Vec::new() };
    entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "eml").then_some(path)
        })
        .filter_map(|path| {
            let bytes = std::fs::read(path).ok()?;
            Some(MessageParser::default().parse(&bytes)?.subject()?.to_owned())
        })
        .collect()
}

#[test]
fn an_edited_campaign_takes_effect_and_a_broken_edit_keeps_the_last_good_version() {
    let env = TestEnv::new(Backend::Sqlite);
    customers(&env, 1);
    let file = env.write("campaigns/pulse.toml", campaign("*/2 * * * * *", "v1"));
    let daemon = Daemon::start(&env, &[("PATRON__CAMPAIGNS__FREQUENCY_CAP", "0".to_owned())]);
    daemon.wait_ready();
    let mail = env.dir.path().join("data/mail");
    assert!(wait_until(Duration::from_secs(30), || subjects(&mail).contains(&"v1".to_owned())), "{}", daemon.stderr());

    std::fs::write(&file, campaign("*/2 * * * * *", "v2")).unwrap();
    assert!(wait_until(Duration::from_secs(30), || subjects(&mail).contains(&"v2".to_owned())), "{}", daemon.stderr());

    std::fs::write(&file, campaign("*/2 * * * * *", "v3").replace("[audience]", "[audience")).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || daemon.stderr().contains("pulse.toml:")),
        "the broken file is reported with its place:\n{}",
        daemon.stderr()
    );
    let before = subjects(&mail).iter().filter(|s| *s == "v2").count();
    assert!(
        wait_until(Duration::from_secs(30), || subjects(&mail).iter().filter(|s| *s == "v2").count() > before),
        "the last good version keeps running"
    );
    assert!(!subjects(&mail).contains(&"v3".to_owned()));
    let metrics = http(daemon.port, "/metrics").1;
    assert!(metrics.contains("patron_campaign_file_errors 1\n"), "{metrics}");
    assert_eq!(daemon.stop(), 0);
}

/// The samples of a Prometheus text exposition, checking every line's form.
fn samples(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line == "# EOF" {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let metric = name.split('{').next().unwrap();
        assert!(
            metric.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && (!name.contains('{') || name.ends_with('}')),
            "not a metric name: {name:?}"
        );
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line:?}"));
        samples.insert(name.to_owned(), value);
    }
    samples
}

#[test]
fn metrics_parse_and_agree_with_the_database() {
    each_backend(|env| {
        customers(env, 40);
        env.write("campaigns/hello.toml", campaign("", "Hi"));
        env.ok(&["campaign", "run", "hello"]);
        env.execute(
            "INSERT INTO suppressions (email, reason, created_at) VALUES ('c7@example.com', 'unsubscribed', '2026-01-01')",
        );
        let daemon = Daemon::start(env, &[]);
        daemon.wait_ready();
        let scrape = || samples(&http(daemon.port, "/metrics").1);
        // The counters move when a send pass ends, just after its rows are committed.
        assert!(
            wait_until(Duration::from_secs(30), || scrape().get("patron_messages_sent_total") == Some(&39.0)),
            "{}",
            daemon.stderr()
        );
        let samples = scrape();
        assert_eq!(samples["patron_messages_sent_total"], 39.0);
        assert_eq!(samples["patron_messages_suppressed_total"], 1.0);
        assert_eq!(
            samples["patron_outbox_messages{state=\"sent\"}"],
            count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'") as f64
        );
        assert_eq!(samples["patron_outbox_messages{state=\"suppressed\"}"], 1.0);
        assert_eq!(samples["patron_campaign_file_errors"], 0.0);
        assert_eq!(daemon.stop(), 0);
    });
}

#[test]
fn a_second_daemon_on_the_same_sqlite_file_refuses_to_start() {
    let env = TestEnv::new(Backend::Sqlite);
    customers(&env, 1);
    let first = Daemon::start(&env, &[]);
    first.wait_ready();
    let second =
        env.command(&["run"]).env("PATRON__HTTP__LISTEN", format!("127.0.0.1:{}", free_port())).output().unwrap();
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another patron daemon is already running on"), "{stderr}");
    assert_eq!(first.stop(), 0);
}

#[test]
fn two_daemons_on_postgresql_plan_each_fire_once_and_the_survivor_takes_over() {
    let Some(env) = crate::support::backends().contains(&Backend::Postgres).then(|| TestEnv::new(Backend::Postgres))
    else {
        return;
    };
    customers(&env, 20);
    env.write("campaigns/minutely.toml", campaign("* * * * *", "Every minute"));
    let server = SmtpServer::start();
    let settings = [
        ("PATRON__DELIVERY__TRANSPORT", "smtp".to_owned()),
        ("PATRON__SMTP__PORT", server.port().to_string()),
        ("PATRON__CAMPAIGNS__FREQUENCY_CAP", "0".to_owned()),
        ("PATRON__DELIVERY__LEASE", "5s".to_owned()),
        // The lease covers the concurrency times the SMTP timeout.
        ("PATRON__DELIVERY__CONCURRENCY", "1".to_owned()),
        ("PATRON__SMTP__TIMEOUT", "5s".to_owned()),
    ];
    let mut daemons = vec![Daemon::start(&env, &settings), Daemon::start(&env, &settings)];
    for daemon in &daemons {
        daemon.wait_ready();
    }
    let runs = || count(&env, "SELECT COUNT(*) FROM campaign_runs WHERE state = 'planned'");
    let unsent = || count(&env, "SELECT COUNT(*) FROM outbox WHERE state <> 'sent'");
    assert!(wait_until(Duration::from_secs(75), || runs() >= 1), "no fire planned");
    // Killed between fires, not while sending (a kill mid-send may repeat a few messages).
    assert!(wait_until(Duration::from_secs(30), || unsent() == 0), "the first fire was not sent");
    let leader = daemons.iter().position(|d| d.stderr().contains("now runs the scheduler")).expect("one daemon leads");
    assert_eq!(daemons.iter().filter(|d| d.stderr().contains("now runs the scheduler")).count(), 1);
    let killed_at = Instant::now();
    let mut old_leader = daemons.remove(leader);
    old_leader.child.kill().unwrap();
    old_leader.child.wait().unwrap();
    let survivor = &daemons[0];
    assert!(
        wait_until(Duration::from_secs(30), || survivor.stderr().contains("now runs the scheduler")),
        "the survivor did not take over:\n{}",
        survivor.stderr()
    );
    eprintln!("takeover after {:.1} s", killed_at.elapsed().as_secs_f64());
    let fires_before = runs();
    assert!(wait_until(Duration::from_secs(130), || runs() >= fires_before + 2), "the survivor plans the next fires");
    assert!(wait_until(Duration::from_secs(30), || unsent() == 0));
    let runs_now = runs();
    let scheduled: HashSet<String> =
        env.strings("SELECT CAST(scheduled_at AS TEXT) FROM campaign_runs").into_iter().collect();
    assert_eq!(scheduled.len() as i64, runs_now, "each fire is planned once");
    let received = server.received();
    let ids: HashSet<String> = received
        .iter()
        .map(|m| MessageParser::default().parse(&m.data).unwrap().message_id().unwrap().to_owned())
        .collect();
    assert_eq!(received.len() as i64, runs_now * 20, "each message is sent once");
    assert_eq!(ids.len(), received.len());
}

#[test]
fn a_campaign_due_on_stale_scores_scores_everyone_first() {
    let env = TestEnv::new(Backend::Sqlite);
    for what in ["customers", "orders"] {
        env.ok(&["import", what, &crate::support::example(&format!("{what}.csv")).display().to_string()]);
    }
    env.ok(&["train", "--as-of", "1997-09-30", "--horizon", "91d"]);
    env.ok(&["score", "--as-of", "1997-09-30"]);
    let scored_before = env.strings("SELECT CAST(MAX(scored_at) AS TEXT) FROM scores");
    std::fs::create_dir_all(env.dir.path().join("campaigns")).unwrap();
    env.write("campaigns/pulse.toml", campaign("*/2 * * * * *", "Hi"));
    let daemon = Daemon::start(&env, &[("PATRON__DAEMON__MAX_SCORE_AGE", "0s".to_owned())]);
    assert!(
        wait_until(Duration::from_secs(60), || daemon.stderr().contains("customers scored")),
        "{}",
        daemon.stderr()
    );
    let stderr = daemon.stderr();
    assert!(stderr.contains("a campaign is due and the scores are older than daemon.max_score_age"), "{stderr}");
    assert_ne!(env.strings("SELECT CAST(MAX(scored_at) AS TEXT) FROM scores"), scored_before);
    assert_eq!(daemon.stop(), 0);
}

/// Copies a folder of the repository (the shipped campaigns) into the test directory.
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() { copy_folder(&path, &target) } else { std::fs::copy(&path, &target).map(|_| ()).unwrap() }
    }
}

#[test]
fn the_demo_fills_an_empty_database_and_writes_mail_from_the_shipped_campaigns() {
    let env = TestEnv::new(Backend::Sqlite);
    copy_folder(&Path::new(env!("CARGO_MANIFEST_DIR")).join("campaigns"), &env.dir.path().join("campaigns"));
    let mut command = env.command(&["run", "--demo"]);
    command
        .env("PATRON__HTTP__LISTEN", format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let daemon = Daemon::from_command(command);
    let mail = env.dir.path().join("data/mail");
    assert!(
        wait_until(Duration::from_secs(120), || subjects(&mail).len() >= 100),
        "no mail after two minutes:\n{}",
        daemon.stderr()
    );
    let stderr = daemon.stderr();
    for step in ["demo: synthetic data imported", "demo: model trained", "demo: customers scored", "demo: run planned"]
    {
        assert!(stderr.contains(step), "missing `{step}`:\n{stderr}");
    }
    assert!(!stderr.contains("@example"), "no address in the log at info");
    assert_eq!(env.status()["customers"], 5000);
    assert_eq!(daemon.stop(), 0);
}

#[test]
fn a_refused_login_pauses_sending_without_spending_attempts_until_sighup_brings_the_right_password() {
    each_backend(|env| {
        customers(env, 20);
        env.write("campaigns/hello.toml", campaign("", "Hi"));
        env.ok(&["campaign", "run", "hello"]);
        let login = Some(("patron".to_owned(), "right".to_owned()));
        let server = SmtpServer::scripted("127.0.0.1:0", Script { login, ..Script::default() });
        let password_file = env.write("smtp-password", "wrong\n");
        let settings = [
            ("PATRON__DELIVERY__TRANSPORT", "smtp".to_owned()),
            ("PATRON__SMTP__PORT", server.port().to_string()),
            ("PATRON__SMTP__USERNAME", "patron".to_owned()),
            ("PATRON__SMTP__PASSWORD_FILE", password_file),
        ];
        let daemon = Daemon::start(env, &settings);
        daemon.wait_ready();
        assert!(wait_until(Duration::from_secs(30), || server.logins_refused() >= 2), "{}", daemon.stderr());
        assert_eq!(server.count(), 0);
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state IN ('failed', 'retrying')"), 0);
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE attempts > 0 AND state <> 'sending'"), 0);
        let metrics = samples(&http(daemon.port, "/metrics").1);
        assert_eq!(metrics["patron_sending_paused"], 1.0);
        let paused = &env.status()["sending_paused"];
        assert!(paused[0]["reason"].as_str().is_some_and(|r| r.contains("535")), "{paused}");
        assert_eq!(http(daemon.port, "/readyz").0, 200, "a paused sender is alive");

        env.write("smtp-password", "right\n");
        daemon.signal(libc::SIGHUP);
        assert!(server.wait_for(20, Duration::from_secs(30)), "{}", daemon.stderr());
        assert!(wait_until(Duration::from_secs(10), || count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'")
            == 20));
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE attempts = 1"), 20, "one attempt each");
        assert_eq!(samples(&http(daemon.port, "/metrics").1)["patron_sending_paused"], 0.0);
        assert_eq!(daemon.stop(), 0);
    });
}

#[test]
fn a_stop_timeout_leaves_only_the_messages_in_flight_claimed() {
    each_backend(|env| {
        customers(env, 100);
        env.write("campaigns/hello.toml", campaign("", "Hi"));
        env.ok(&["campaign", "run", "hello"]);
        // Each reply takes 3 s, longer than the daemon may take to stop.
        let after_data = Arc::new(|_: &str, _: usize| Reply::AcceptAfter(Duration::from_secs(3)));
        let server = SmtpServer::scripted("127.0.0.1:0", Script { after_data, ..Script::default() });
        let settings = [
            ("PATRON__DELIVERY__TRANSPORT", "smtp".to_owned()),
            ("PATRON__SMTP__PORT", server.port().to_string()),
            ("PATRON__SMTP__TIMEOUT", "10s".to_owned()),
            ("PATRON__DELIVERY__CONCURRENCY", "2".to_owned()),
            ("PATRON__DAEMON__STOP_TIMEOUT", "1s".to_owned()),
        ];
        let daemon = Daemon::start(env, &settings);
        assert!(server.wait_for(1, Duration::from_secs(30)), "{}", daemon.stderr());
        assert!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'sending'") > 2, "a batch is claimed");
        assert_eq!(daemon.stop(), 0);
        let sending = count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'sending'");
        assert!(sending <= 2, "{sending} rows left claimed; only the two in flight may be");
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'planned' AND attempts = 0"), 100 - sending);
    });
}

#[test]
fn the_leader_reads_the_feedback_mailbox_every_poll_interval() {
    each_backend(|env| {
        let Some(imap) = crate::imap_server::Dovecot::start() else { return };
        let sent = crate::feedback::sent_campaign(env);
        let c3 = crate::feedback::sent_to(&sent, "c3@example.com");
        let settings = [
            ("PATRON__DELIVERY__RETURN_PATH", crate::feedback::RETURN_PATH.to_owned()),
            ("PATRON__FEEDBACK__IMAP_URL", imap.url("INBOX")),
            ("PATRON__FEEDBACK__IMAP_PASSWORD", crate::imap_server::PASSWORD.to_owned()),
            ("PATRON__FEEDBACK__IMAP_POLL_INTERVAL", "1s".to_owned()),
        ];
        let daemon = Daemon::start(env, &settings);
        daemon.wait_ready();
        let bounce = crate::feedback::report("postfix-hard-bounce.eml", &c3.verp, "<a@b>", "c3@example.com");
        imap.deliver("INBOX", &[bounce]);
        let read =
            wait_until(Duration::from_secs(30), || crate::feedback::suppressions(env) == ["c3@example.com bounced"]);
        assert!(read, "the bounce was not read:\n{}\n{}", daemon.stderr(), imap.log());
        assert!(wait_until(Duration::from_secs(10), || imap.flags("INBOX") == [["Seen"]]), "{:?}", imap.flags("INBOX"));
        assert!(daemon.stderr().contains("feedback mailbox read"), "{}", daemon.stderr());
        assert_eq!(daemon.stop(), 0);
    });
}

/// An unsubscribe link for customer 1 signed with `key`.
fn link_signed_with(key: &str) -> String {
    use patron::delivery::unsubscribe::{Signer, Token};
    let token = Signer::new(secrecy::SecretString::from(key)).sign(&Token {
        customer_id: 1,
        campaign: "hello".into(),
        topic: None,
    });
    format!("/unsubscribe?token={token}")
}

#[test]
fn sighup_brings_a_new_unsubscribe_key_to_the_running_server_and_a_changed_schedule_fires() {
    each_backend(|env| {
        customers(env, 1);
        let (old_key, new_key) =
            ("the-old-unsubscribe-key-of-32-bytes-or-more", "the-new-unsubscribe-key-of-32-bytes-or-more");
        let key_file = env.write("unsubscribe-key", old_key);
        let settings = |loyalty_schedule: &str, http_connections: u32| {
            format!(
                "[unsubscribe]\nsecret_file = \"{key_file}\"\n\n[daemon]\nloyalty_schedule = \"{loyalty_schedule}\"\n\n\
                 [http]\nmax_connections = {http_connections}\n"
            )
        };
        let config = env.write("patron.toml", settings("0 0 1 1 *", 500));
        let port = free_port();
        let mut command = env.command(&["--config", &config, "run"]);
        command.env("PATRON__HTTP__LISTEN", format!("127.0.0.1:{port}")).stdout(Stdio::null()).stderr(Stdio::piped());
        let daemon = Daemon::from_command(command);
        daemon.wait_ready();
        assert_eq!(http(port, &link_signed_with(old_key)).0, 200, "{}", daemon.stderr());
        assert_eq!(http(port, &link_signed_with(new_key)).0, 400);

        env.write("unsubscribe-key", new_key);
        env.write("patron.toml", settings("* * * * * *", 400));
        daemon.signal(libc::SIGHUP);
        let reloaded = wait_until(Duration::from_secs(20), || daemon.stderr().contains("settings reloaded"));
        assert!(reloaded, "{}", daemon.stderr());
        assert_eq!(http(port, &link_signed_with(new_key)).0, 200, "links signed with the new key work");
        assert_eq!(http(port, &link_signed_with(old_key)).0, 400, "and those with the old key no longer");
        assert!(
            daemon.stderr().contains("http.max_connections take(s) effect only after a restart"),
            "the one setting read at start that changed is named:\n{}",
            daemon.stderr()
        );
        // The yearly recompute became one every second.
        let fired = wait_until(Duration::from_secs(20), || daemon.stderr().contains("loyalty recomputed"));
        assert!(fired, "the new schedule did not fire:\n{}", daemon.stderr());
        assert_eq!(daemon.stop(), 0);
    });
}

/// The pid in `owner` (`host:pid:random`).
fn owner_pid(owner: &str) -> u32 {
    owner.split(':').nth(1).and_then(|pid| pid.parse().ok()).expect("host:pid:random")
}

#[test]
fn two_daemons_on_postgresql_share_the_scoring_and_the_range_of_a_killed_one_is_taken_over() {
    let Some(env) = crate::support::backends().contains(&Backend::Postgres).then(|| TestEnv::new(Backend::Postgres))
    else {
        return;
    };
    for what in ["customers", "orders"] {
        env.ok(&["import", what, &crate::support::example(&format!("{what}.csv")).display().to_string()]);
    }
    env.ok(&["train", "--as-of", "1997-09-30", "--horizon", "91d"]);
    std::fs::create_dir_all(env.dir.path().join("campaigns")).unwrap();
    // One fire, 15 s from now: both daemons are up by then. A range per
    // customer, so that the run lasts seconds: a daemon looks for ranges
    // once a second, and ranges of ten customers were all done by the
    // leader within a second once (2,357 customers in 0.78 s).
    let fire = chrono::Utc::now() + chrono::Duration::seconds(15);
    let settings = [
        ("PATRON__DAEMON__SCORE_SCHEDULE", fire.format("%S %M %H * * *").to_string()),
        ("PATRON__DAEMON__RANGE_SIZE", "1".to_owned()),
        ("PATRON__DAEMON__WORK_LEASE", "3s".to_owned()),
    ];
    let mut daemons = vec![Daemon::start(&env, &settings), Daemon::start(&env, &settings)];
    for daemon in &daemons {
        daemon.wait_ready();
    }
    let held = |pid: u32| {
        env.strings("SELECT owner FROM work_ranges WHERE done_at IS NULL AND owner IS NOT NULL")
            .iter()
            .filter(|owner| owner_pid(owner) == pid)
            .count()
    };
    let takers = || {
        let owners = env.strings("SELECT DISTINCT owner FROM work_ranges WHERE done_at IS NOT NULL");
        owners.iter().map(|o| owner_pid(o)).collect::<HashSet<u32>>()
    };
    let pids: Vec<u32> = daemons.iter().map(|d| d.child.id()).collect();
    assert!(
        wait_until(Duration::from_secs(60), || takers().len() == 2),
        "both daemons score ranges:\n{}\n{}",
        daemons[0].stderr(),
        daemons[1].stderr()
    );
    // Stopped while it holds a range, so that the kill lands mid-range.
    let victim = (0..100)
        .find_map(|_| {
            let index = pids.iter().position(|&pid| held(pid) > 0)?;
            daemons[index].signal(libc::SIGSTOP);
            if held(pids[index]) > 0 {
                return Some(index);
            }
            daemons[index].signal(libc::SIGCONT);
            std::thread::sleep(Duration::from_millis(20));
            None
        })
        .expect("a daemon caught holding a range");
    let victim_pid = pids[victim];
    let held_ranges = env.strings(&format!(
        "SELECT CAST(id AS TEXT) FROM work_ranges WHERE done_at IS NULL AND owner LIKE '%:{victim_pid}:%'"
    ));
    assert!(!held_ranges.is_empty());
    let mut killed = daemons.remove(victim);
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let finished = || count(&env, "SELECT COUNT(*) FROM work_runs WHERE outcome = 'done'") == 1;
    assert!(wait_until(Duration::from_secs(120), finished), "the survivor finishes the run:\n{}", daemons[0].stderr());
    for range in &held_ranges {
        let taken_over = env.strings(&format!(
            "SELECT CAST(attempts AS TEXT) || ' ' || owner FROM work_ranges WHERE id = {range} AND done_at IS NOT NULL"
        ));
        assert_eq!(taken_over.len(), 1, "range {range} is done");
        let (attempts, owner) = taken_over[0].split_once(' ').unwrap();
        assert_eq!((attempts, owner_pid(owner)), ("2", pids[1 - victim]), "range {range} taken over");
    }
    let per_daemon = env.strings("SELECT owner || ' ' || CAST(COUNT(*) AS TEXT) FROM work_ranges GROUP BY owner");
    eprintln!("ranges done per daemon: {per_daemon:?}; taken over: {held_ranges:?}");
    assert_eq!(per_daemon.len(), 2, "the killed daemon's finished ranges stay done");
    let customers = count(&env, "SELECT COUNT(*) FROM customers");
    assert_eq!(customers, 2357);
    assert_eq!(count(&env, "SELECT COUNT(*) FROM scores"), customers, "one score per customer");
    assert_eq!(count(&env, "SELECT COUNT(DISTINCT customer_id) FROM scores"), customers);
    assert_eq!(count(&env, "SELECT COUNT(*) FROM feature_snapshots"), customers);
    // The same scores and deciles as one scoring of everyone at the run's moment.
    let rows = || {
        env.strings("SELECT CAST(customer_id AS TEXT) || ' ' || CAST(score AS TEXT) || ' ' || CAST(decile AS TEXT) FROM scores ORDER BY customer_id")
    };
    let shared = rows();
    let as_of =
        env.strings("SELECT to_char(as_of AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM work_runs");
    assert_eq!(daemons.remove(0).stop(), 0);
    env.ok(&["score", "--as-of", &as_of[0]]);
    assert_eq!(shared, rows());
}

#[test]
fn a_fire_on_stale_data_is_held_back_counted_once_and_planned_once_an_import_lands() {
    each_backend(|env| {
        customers(env, 4);
        env.write(
            "campaigns/lapsed.toml",
            "kind = \"marketing\"\nschedule = \"*/30 * * * * *\"\n\n[audience]\n\
             where = 'first_name is not null and not ordered_since_received(\"lapsed\")'\nholdout = 0\n\n\
             [message]\nfrom = \"shop@example.com\"\nsubject = \"Hi\"\ntext = \"Hello {{ unsubscribe_url }}\"\n",
        );
        let settings = [
            ("PATRON__CAMPAIGNS__MAX_DATA_AGE", "1h".to_owned()),
            ("PATRON__CAMPAIGNS__FREQUENCY_CAP", "0".to_owned()),
        ];
        let daemon = Daemon::start(env, &settings);
        daemon.wait_ready();
        // The customers came without an import: nothing tells how old the orders are.
        let stale = "SELECT COUNT(*) FROM campaign_runs WHERE state = 'stale'";
        assert!(wait_until(Duration::from_secs(60), || count(env, stale) == 1), "{}", daemon.stderr());
        let run_id = count(env, "SELECT MIN(id) FROM campaign_runs");
        let scrape = || samples(&http(daemon.port, "/metrics").1);
        assert_eq!(scrape()["patron_runs_skipped_stale_total"], 1.0);
        // Tried again at each tick, the fire is counted once.
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(scrape()["patron_runs_skipped_stale_total"], 1.0);
        assert_eq!(count(env, "SELECT COUNT(*) FROM campaign_runs"), 1);
        let logged = daemon.stderr();
        assert!(logged.contains("campaign run held back: its data is stale"), "{logged}");
        assert!(logged.contains("no import or feed has been recorded"), "{logged}");

        let orders = env.write(
            "orders.csv",
            "order_id,customer_id,ordered_at,amount,currency,items,category\nO1,1,2026-01-01,10.00,USD,1,pop\n",
        );
        env.ok(&["import", "orders", &orders]);
        let planned = format!("SELECT COUNT(*) FROM campaign_runs WHERE id = {run_id} AND state = 'planned'");
        assert!(wait_until(Duration::from_secs(20), || count(env, &planned) == 1), "{}", daemon.stderr());
        assert_eq!(count(env, &format!("SELECT COUNT(*) FROM outbox WHERE run_id = {run_id}")), 4);
        let samples = scrape();
        assert_eq!(samples["patron_runs_planned_total"], 1.0);
        assert_eq!(samples["patron_runs_skipped_stale_total"], 1.0);
        assert_eq!(daemon.stop(), 0);
    });
}

#[test]
fn the_daemon_expires_the_messages_past_their_expiry_unsent_and_counts_them() {
    each_backend(|env| {
        customers(env, 3);
        env.write("campaigns/hello.toml", format!("expires_after = \"1h\"\n{}", campaign("", "Hi")));
        // Fired two hours ago: its messages expired an hour ago, before any sender came.
        let fired =
            (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        env.ok(&["campaign", "run", "hello", "--at", &fired]);
        let daemon = Daemon::start(env, &[]);
        daemon.wait_ready();
        let scrape = || samples(&http(daemon.port, "/metrics").1);
        assert!(
            wait_until(Duration::from_secs(30), || scrape().get("patron_messages_expired_total") == Some(&3.0)),
            "{}",
            daemon.stderr()
        );
        let samples = scrape();
        assert_eq!(samples["patron_outbox_messages{state=\"expired\"}"], 3.0);
        assert_eq!(samples["patron_messages_sent_total"], 0.0);
        assert_eq!(count(env, "SELECT COUNT(*) FROM outbox WHERE state = 'expired'"), 3);
        assert_eq!(daemon.stop(), 0);
    });
}

/// The settings file of the feed test: a drop folder fed every second, and
/// a sql feed whose source cannot be reached.
fn feeds_config(env: &TestEnv) -> String {
    let drop = env.path("drop");
    env.write(
        "feeds.toml",
        format!(
            "[[feeds]]\nname = \"drop\"\nkind = \"folder\"\nschedule = \"* * * * * *\"\npath = \"{drop}\"\nsettle = \"0s\"\n\n\
             [[feeds]]\nname = \"shop\"\nkind = \"sql\"\nschedule = \"* * * * * *\"\n\
             url = \"postgres://patron@127.0.0.1:1/shop\"\n\
             [feeds.queries]\ncustomers = \"select * from customers where updated_at > :since\"\n"
        ),
    )
}

#[test]
fn a_feed_that_lands_rows_brings_loyalty_and_scores_up_to_date_and_a_failing_one_holds_nothing_up() {
    each_backend(|env| {
        for what in ["customers", "orders"] {
            env.ok(&["import", what, &crate::support::example(&format!("{what}.csv")).display().to_string()]);
        }
        env.ok(&["train", "--as-of", "1997-09-30", "--horizon", "91d"]);
        let config = feeds_config(env);
        std::fs::create_dir_all(env.dir.path().join("drop")).unwrap();
        std::fs::create_dir_all(env.dir.path().join("campaigns")).unwrap();
        env.write(
            "drop/orders.csv",
            "order_id,customer_id,ordered_at,amount\nFEED-O1,FEED-1,2026-11-30T10:00:00Z,42.50\n",
        );
        env.write(
            "drop/customers.csv",
            "customer_id,email,first_name,marketing_consent\nFEED-1,feed1@example.com,Fay,true\n",
        );
        let mut command = env.command(&["--config", &config, "run"]);
        let port = free_port();
        command
            .env("PATRON__UNSUBSCRIBE__SECRET", SECRET)
            .env("PATRON__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let daemon = Daemon::from_command(command);
        daemon.wait_ready();
        let landed = wait_until(Duration::from_secs(90), || {
            let stderr = daemon.stderr();
            stderr.contains("feed landed")
                && stderr.contains("loyalty recomputed")
                && stderr.contains("customers scored")
        });
        let stderr = daemon.stderr();
        assert!(landed, "{stderr}");
        let landed_at = stderr.find("feed landed").unwrap();
        assert!(stderr.find("loyalty recomputed").unwrap() > landed_at, "the recompute follows the landing:\n{stderr}");
        assert!(stderr.find("customers scored").unwrap() > landed_at, "so does the scoring:\n{stderr}");
        assert!(stderr.contains("feed failed, nothing of it landed"), "{stderr}");
        assert!(!stderr.contains("feed1@example.com"), "no address in the log");
        assert_eq!(
            env.strings(
                "SELECT CAST(COUNT(*) AS TEXT) FROM scores JOIN customers ON customers.id = scores.customer_id \
                 WHERE customers.external_id = 'FEED-1'"
            ),
            ["1"],
            "the customer the feed brought is scored"
        );
        assert_eq!(env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM orders WHERE external_id = 'FEED-O1'"), ["1"]);
        assert!(env.dir.path().join("drop/done/orders.csv").exists());

        let samples = samples(&http(daemon.port, "/metrics").1);
        assert!(samples["patron_feed_last_success_timestamp_seconds{feed=\"drop\"}"] > 1.7e9);
        assert_eq!(samples["patron_feed_last_success_timestamp_seconds{feed=\"shop\"}"], 0.0);
        assert!(samples["patron_feed_runs_total{feed=\"shop\",outcome=\"failed\"}"] >= 1.0);
        assert!(samples["patron_data_last_load_timestamp_seconds"] > 1.7e9);
        assert_eq!(daemon.stop(), 0);

        let listed: serde_json::Value =
            serde_json::from_str(&env.ok(&["--config", &config, "feed", "list", "--json"]).stdout).unwrap();
        assert_eq!(listed[0]["name"], "drop");
        assert!(listed[0]["last_success_at"].is_string(), "{listed}");
        assert_eq!(listed[0]["last_error"], serde_json::Value::Null);
        assert_eq!(listed[1]["name"], "shop");
        assert_eq!(listed[1]["last_success_at"], serde_json::Value::Null);
        assert!(listed[1]["last_error"].as_str().unwrap().to_lowercase().contains("refused"), "{listed}");
        let status =
            serde_json::from_str::<serde_json::Value>(&env.ok(&["--config", &config, "status", "--json"]).stdout)
                .unwrap();
        assert_eq!(status["feeds"].as_array().unwrap().len(), 2);
        assert!(status["data_loaded_at"].is_string());
    });
}
