//! A real SMTP server on loopback for the delivery tests: it speaks the
//! protocol over TCP (greeting, EHLO, MAIL, RCPT, DATA with dot-unstuffing,
//! RSET, NOOP, QUIT), keeps every message it accepts, and answers RCPT as
//! the test's policy says (451 for now, 550 for good). Written here rather
//! than taken from a crate because the tests need to script the replies.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The reply to `RCPT TO:<address>` for the `attempt`-th time (1-based).
pub type Policy = dyn Fn(&str, usize) -> &'static str + Send + Sync;

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    pub recipients: Vec<String>,
    pub data: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    rcpt_attempts: Mutex<HashMap<String, usize>>,
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
                let (shared, policy) = (accepting.clone(), policy.clone());
                std::thread::spawn(move || {
                    let _ = session(stream, &shared, &*policy);
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

fn session(stream: TcpStream, shared: &Shared, policy: &Policy) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 test.localhost ESMTP\r\n")?;
    let mut recipients = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || shared.stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command.split([' ', ':']).next().unwrap_or_default().to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => "250-test.localhost\r\n250 8BITMIME".into(),
            "HELO" | "MAIL" | "NOOP" => "250 OK".into(),
            "RSET" => {
                recipients.clear();
                "250 OK".into()
            }
            "RCPT" => {
                let address = command.split('<').nth(1).and_then(|a| a.split('>').next()).unwrap_or_default();
                let attempt = {
                    let mut attempts = shared.rcpt_attempts.lock().unwrap();
                    let n = attempts.entry(address.to_owned()).or_default();
                    *n += 1;
                    *n
                };
                let reply = policy(address, attempt);
                if reply.starts_with('2') {
                    recipients.push(address.to_owned());
                }
                reply.into()
            }
            "DATA" if recipients.is_empty() => "554 no valid recipients".into(),
            "DATA" => {
                writer.write_all(b"354 go ahead\r\n")?;
                let data = read_data(&mut reader)?;
                shared.received.lock().unwrap().push(Received { recipients: std::mem::take(&mut recipients), data });
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
