//! A real SMTP server on loopback for the delivery tests: it speaks the
//! protocol over TCP (greeting, EHLO, AUTH PLAIN, MAIL, RCPT, DATA with
//! dot-unstuffing, RSET, NOOP, QUIT; PIPELINING offered unless the script
//! says not, and commands read as they come), keeps every message it receives, and
//! is scripted by the test: its answer to RCPT (451 for now, 550 for good),
//! what it does once a message's text has arrived (answer, answer late, or
//! hang up without answering), and the login it requires. Written here
//! rather than taken from a crate because the tests need to script faults.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The reply to `RCPT TO:<address>` for the `attempt`-th time (1-based).
pub type Policy = dyn Fn(&str, usize) -> &'static str + Send + Sync;

/// What the server does once a message's text has arrived, given its
/// first recipient and how many times a message to it arrived (1-based).
pub type AfterData = dyn Fn(&str, usize) -> Reply + Send + Sync;

/// The server's move after the end-of-data dot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 250 at once.
    Accept,
    /// 250 after a pause.
    AcceptAfter(Duration),
    /// Close the connection without a reply: the message arrived, but the
    /// sender cannot know it.
    HangUp,
}

/// How a test server behaves.
#[derive(Clone)]
pub struct Script {
    pub rcpt: Arc<Policy>,
    pub after_data: Arc<AfterData>,
    /// The user name and password AUTH PLAIN must carry; none: no login.
    pub login: Option<(String, String)>,
    /// Whether EHLO offers PIPELINING (RFC 2920).
    pub pipelining: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            rcpt: Arc::new(|_, _| "250 2.1.5 OK"),
            after_data: Arc::new(|_, _| Reply::Accept),
            login: None,
            pipelining: true,
        }
    }
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope sender (MAIL FROM), where bounces go.
    pub sender: String,
    pub recipients: Vec<String>,
    pub data: Vec<u8>,
    /// Whether the commands after MAIL had arrived with it, before its
    /// reply: the client pipelined its envelope.
    pub pipelined: bool,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    rcpt_attempts: Mutex<HashMap<String, usize>>,
    data_attempts: Mutex<HashMap<String, usize>>,
    logins_refused: Mutex<usize>,
    /// Transactions whose connection closed after DATA's go-ahead and
    /// before the content's end: discarded, as a server does.
    abandoned: Mutex<Vec<String>>,
    stopped: AtomicBool,
}

pub struct SmtpServer {
    pub address: SocketAddr,
    shared: Arc<Shared>,
}

impl SmtpServer {
    /// A server that accepts everything, on a free port.
    pub fn start() -> SmtpServer {
        SmtpServer::start_with("127.0.0.1:0", Arc::new(|_, _| "250 2.1.5 OK"))
    }

    pub fn start_with(address: &str, policy: Arc<Policy>) -> SmtpServer {
        SmtpServer::scripted(address, Script { rcpt: policy, ..Script::default() })
    }

    pub fn scripted(address: &str, script: Script) -> SmtpServer {
        let listener = TcpListener::bind(address).expect("bind the test SMTP server");
        let address = listener.local_addr().expect("address");
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (shared, script) = (accepting.clone(), script.clone());
                std::thread::spawn(move || {
                    let _ = session(stream, &shared, &script);
                });
            }
        });
        SmtpServer { address, shared }
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    /// How many times a RCPT for `address` was answered.
    pub fn rcpt_attempts(&self, address: &str) -> usize {
        self.shared.rcpt_attempts.lock().unwrap().get(address).copied().unwrap_or(0)
    }

    /// How many logins the server refused.
    /// The first recipient of each transaction abandoned mid-content.
    pub fn abandoned(&self) -> Vec<String> {
        self.shared.abandoned.lock().unwrap().clone()
    }

    pub fn logins_refused(&self) -> usize {
        *self.shared.logins_refused.lock().unwrap()
    }

    /// Waits until at least `n` messages arrived, or `timeout` passed.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.count() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.count() >= n
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.address);
    }
}

fn session(stream: TcpStream, shared: &Shared, script: &Script) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 test.localhost ESMTP\r\n")?;
    let mut recipients = Vec::new();
    let mut sender = String::new();
    let mut pipelined = false;
    let mut logged_in = script.login.is_none();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || shared.stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command.split([' ', ':']).next().unwrap_or_default().to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => {
                let login = if script.login.is_some() { "250-AUTH PLAIN\r\n" } else { "" };
                let pipelining = if script.pipelining { "250-PIPELINING\r\n" } else { "" };
                format!("250-test.localhost\r\n{login}{pipelining}250 8BITMIME")
            }
            "AUTH" => {
                logged_in = login_matches(&command, script.login.as_ref());
                if logged_in {
                    "235 2.7.0 Authentication successful".into()
                } else {
                    *shared.logins_refused.lock().unwrap() += 1;
                    "535 5.7.8 Authentication credentials invalid".into()
                }
            }
            "MAIL" if !logged_in => "530 5.7.0 Authentication required".into(),
            "MAIL" => {
                sender = angle_bracketed(&command).to_owned();
                pipelined = !reader.buffer().is_empty();
                "250 OK".into()
            }
            "HELO" | "NOOP" => "250 OK".into(),
            "RSET" => {
                recipients.clear();
                "250 OK".into()
            }
            "RCPT" => {
                let address = angle_bracketed(&command);
                let attempt = count_attempt(&shared.rcpt_attempts, address);
                let reply = (script.rcpt)(address, attempt);
                if reply.starts_with('2') {
                    recipients.push(address.to_owned());
                }
                reply.into()
            }
            "DATA" if recipients.is_empty() => "554 no valid recipients".into(),
            "DATA" => {
                writer.write_all(b"354 go ahead\r\n")?;
                let first = recipients.first().cloned().unwrap_or_default();
                let data = match read_data(&mut reader) {
                    Ok(data) => data,
                    Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                        shared.abandoned.lock().unwrap().push(first);
                        return Ok(());
                    }
                    Err(error) => return Err(error),
                };
                let attempt = count_attempt(&shared.data_attempts, &first);
                shared.received.lock().unwrap().push(Received {
                    sender: sender.clone(),
                    recipients: std::mem::take(&mut recipients),
                    data,
                    pipelined,
                });
                match (script.after_data)(&first, attempt) {
                    Reply::Accept => {}
                    Reply::AcceptAfter(pause) => std::thread::sleep(pause),
                    Reply::HangUp => return Ok(()),
                }
                "250 2.0.0 queued".into()
            }
            "QUIT" => {
                writer.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => "502 not implemented".into(),
        };
        writer.write_all(format!("{reply}\r\n").as_bytes())?;
    }
}

/// The address in `<...>` of a MAIL or RCPT command.
fn angle_bracketed(command: &str) -> &str {
    command.split('<').nth(1).and_then(|a| a.split('>').next()).unwrap_or_default()
}

/// Counts one more attempt for `key`; returns the count.
fn count_attempt(attempts: &Mutex<HashMap<String, usize>>, key: &str) -> usize {
    let mut attempts = attempts.lock().unwrap();
    let n = attempts.entry(key.to_owned()).or_default();
    *n += 1;
    *n
}

/// Whether `AUTH PLAIN <base64 of \0user\0password>` carries the expected login.
fn login_matches(command: &str, expected: Option<&(String, String)>) -> bool {
    use base64::Engine;
    let Some((user, password)) = expected else { return false };
    let mut words = command.split_whitespace().skip(1);
    if !words.next().is_some_and(|m| m.eq_ignore_ascii_case("PLAIN")) {
        return false;
    }
    let Some(decoded) = words.next().and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok()) else {
        return false;
    };
    decoded == format!("\0{user}\0{password}").into_bytes()
}

/// The message up to the lone dot, with leading dots unstuffed.
fn read_data(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" {
            return Ok(data);
        }
        let unstuffed = if line.starts_with(b"..") { &line[1..] } else { &line[..] };
        data.extend_from_slice(unstuffed);
    }
}
