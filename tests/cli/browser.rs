//! The preference page in a real headless browser (Debian's Chromium,
//! driven through ChromeDriver's WebDriver protocol): opening the link
//! changes nothing, the form's checkboxes and buttons change exactly what
//! they say.
//!
//! Without ChromeDriver on the machine the test is skipped with a note,
//! unless `PATRON_TEST_CHROMEDRIVER` names it (as `.ci/run` does), in which
//! case a missing or broken browser fails it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use patron::delivery::Signer;
use patron::delivery::unsubscribe::Token;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::delivery::{CAMPAIGN, SECRET, count, customers, free_port, serve, wait_for_port};
use crate::support::each_backend;

/// A ChromeDriver process and one headless Chromium session.
pub(crate) struct Browser {
    driver: Child,
    port: u16,
    pub(crate) session: String,
    /// Held while the browser lives (dropped after the driver is stopped).
    _turn: MutexGuard<'static, ()>,
}

/// One browser at a time: the tests that use one run in parallel with the
/// rest, and two drivers (each with a Chromium) would only slow both.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// ChromeDriver listening on a free port. Another process may take the port
/// between its choice and the driver's start (the driver then exits while
/// the port answers for someone else), so a driver that exited is started
/// again on another port.
fn start_driver(binary: &Path) -> (Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut driver = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        wait_for_port(port);
        // A driver that finds its port taken exits at once, but the port
        // answers (for its holder) before that: give it the moment to.
        std::thread::sleep(Duration::from_millis(300));
        if driver.try_wait().expect("chromedriver's state").is_none() {
            return (driver, port);
        }
    }
    panic!("chromedriver exited at start five times: its ports were taken");
}

impl Browser {
    pub(crate) fn start() -> Option<Browser> {
        let binary = match std::env::var_os("PATRON_TEST_CHROMEDRIVER") {
            Some(path) => PathBuf::from(path),
            None if Path::new("/usr/bin/chromedriver").exists() => PathBuf::from("/usr/bin/chromedriver"),
            None => {
                eprintln!(
                    "skipped: ChromeDriver is not installed (apt-get install chromium chromium-driver; .ci/run does)"
                );
                return None;
            }
        };
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (driver, port) = start_driver(&binary);
        let options = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,2400"]
        }, "goog:loggingPrefs": {"browser": "ALL"}}}});
        let mut browser = Browser { driver, port, session: String::new(), _turn: turn };
        let created = browser.call("POST", "/session", Some(options));
        browser.session = created["value"]["sessionId"].as_str().expect("a session id").to_owned();
        Some(browser)
    }

    /// One WebDriver command; its JSON answer, which must not be an error.
    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let value = self.try_call(method, path, body);
        assert!(value["value"].get("error").is_none(), "{method} {path}: {value}");
        value
    }

    /// One WebDriver command; its JSON answer, an error or not.
    pub(crate) fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to chromedriver");
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let body = read_answer(stream);
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
    }

    pub(crate) fn open(&self, url: &str) {
        self.call("POST", &format!("/session/{}/url", self.session), Some(json!({"url": url})));
    }

    fn click(&self, css: &str) {
        let found = self.call(
            "POST",
            &format!("/session/{}/element", self.session),
            Some(json!({"using": "css selector", "value": css})),
        );
        let element =
            found["value"].as_object().and_then(|o| o.values().next()).and_then(Value::as_str).expect("element");
        self.call("POST", &format!("/session/{}/element/{element}/click", self.session), Some(json!({})));
    }

    /// The page's visible text once it contains `expected`.
    fn wait_for_text(&self, expected: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let source = self.call("GET", &format!("/session/{}/source", self.session), None);
            let text = source["value"].as_str().unwrap_or_default().to_owned();
            if text.contains(expected) {
                return text;
            }
            assert!(Instant::now() < deadline, "`{expected}` never showed: {text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The body of an HTTP answer, by its Content-Length (ChromeDriver keeps
/// the connection open whatever the request says).
fn read_answer(stream: TcpStream) -> Vec<u8> {
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    body
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(|| self.call("DELETE", &format!("/session/{}", self.session), None));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn link(port: u16, customer_id: i64) -> String {
    let token = Token { customer_id, campaign: "hello".into(), topic: Some("offers".into()) };
    format!("http://127.0.0.1:{port}/unsubscribe?token={}", Signer::new(SecretString::from(SECRET)).sign(&token))
}

#[test]
fn the_preference_page_works_in_a_real_browser_and_opening_it_changes_nothing() {
    each_backend(|env| {
        let Some(browser) = Browser::start() else { return };
        customers(env, 2);
        env.write("campaigns/letter.toml", format!("topic = \"news\"\n{CAMPAIGN}"));
        let (_serving, port) = serve(env);

        browser.open(&link(port, 1));
        browser.wait_for_text("Your email preferences");
        assert_eq!(count(env, "SELECT COUNT(*) FROM consent_events"), 0, "opening the page changes nothing");
        // Untick "news", then save: customer 1 leaves news only.
        browser.click("input[name=topic][value=news]");
        browser.click("button[value=save]");
        browser.wait_for_text("Your choices are saved");
        assert_eq!(env.strings("SELECT CAST(customer_id AS TEXT) || ' ' || topic FROM topic_opt_outs"), ["1 news"]);

        // Customer 2: the button for the message's topic.
        browser.open(&link(port, 2));
        browser.click("button[value=topic]");
        browser.wait_for_text("You are unsubscribed");
        assert_eq!(
            env.strings("SELECT CAST(customer_id AS TEXT) || ' ' || topic FROM topic_opt_outs ORDER BY 1"),
            ["1 news", "2 offers"]
        );
        assert_eq!(count(env, "SELECT COUNT(*) FROM suppressions"), 0);
        assert_eq!(
            env.strings("SELECT source FROM consent_events ORDER BY id"),
            ["preference_page", "preference_page"]
        );
    });
}
