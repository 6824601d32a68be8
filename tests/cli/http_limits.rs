//! The HTTP server's limits (issue 17): connections that send nothing, or
//! their headers a byte at a time, cannot keep an unsubscribe from being
//! answered. `patron serve` runs with systemd's default soft limit of 1,024
//! open files, as a service without `LimitNOFILE` would.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use patron::delivery::Signer;
use patron::delivery::unsubscribe::Token;
use secrecy::SecretString;

use crate::support::{Backend, TestEnv, each_backend};

const SECRET: &str = "test-unsubscribe-secret-of-32-bytes-or-more";

/// The soft open-file limit systemd gives a service by default.
const SERVICE_OPEN_FILES: libc::rlim_t = 1024;

/// How long any answer may take before the test gives up on it.
const ANSWER_WITHIN: Duration = Duration::from_secs(20);

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Raises this test process's soft open-file limit to at least `wanted`
/// (within the hard limit): the tests hold thousands of sockets.
fn raise_own_open_files(wanted: libc::rlim_t) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}

/// Starts `patron serve` with the soft open-file limit of a systemd service
/// (the hard limit stays as it is) and `settings`; its log goes to `serve.log`.
fn serve(env: &TestEnv, settings: &[(&str, &str)]) -> (Serving, u16) {
    let port = free_port();
    let log = std::fs::File::create(env.path("serve.log")).unwrap();
    let mut command = env.command(&["serve"]);
    command
        .env("PATRON__UNSUBSCRIBE__SECRET", SECRET)
        .env("PATRON__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .envs(settings.iter().copied())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: getrlimit and setrlimit are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit.rlim_cur = SERVICE_OPEN_FILES.min(limit.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let serving = Serving(command.spawn().expect("start patron serve"));
    let deadline = Instant::now() + ANSWER_WITHIN;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "patron serve did not start:\n{}", log_of(env));
        std::thread::sleep(Duration::from_millis(50));
    }
    (serving, port)
}

fn log_of(env: &TestEnv) -> String {
    std::fs::read_to_string(env.path("serve.log")).unwrap_or_default()
}

/// `count` connections that send nothing. Each must at least reach the
/// server's listen queue within [`ANSWER_WITHIN`].
fn idle_connections(port: u16, count: usize) -> Vec<TcpStream> {
    let address = (std::net::Ipv4Addr::LOCALHOST, port).into();
    (0..count)
        .map(|i| {
            TcpStream::connect_timeout(&address, ANSWER_WITHIN)
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}: the server no longer takes connections"))
        })
        .collect()
}

/// Three customers (c1..c3@example.com) and the one-click unsubscribe target
/// for c2, signed as `patron send` signs it.
fn customers_and_link(env: &TestEnv) -> String {
    env.numbered_customers(3, "'T'");
    let customer_id =
        env.strings("SELECT CAST(id AS TEXT) FROM customers WHERE email = 'c2@example.com'")[0].parse().unwrap();
    let signer = Signer::new(SecretString::from(SECRET));
    signer.link("", &Token { customer_id, campaign: "hello".into(), topic: None })
}

/// Sends a request on a new connection and reads the whole answer; an error
/// if none comes within [`ANSWER_WITHIN`].
fn request(port: u16, method: &str, target: &str, body: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("no answer within {ANSWER_WITHIN:?}: {e}"))?;
    let status = response.split(' ').nth(1).unwrap_or_default().parse().unwrap_or(0);
    Ok((status, response))
}

/// True if the server closes `stream` (end of file or a reset) within [`ANSWER_WITHIN`].
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted),
    }
}

fn assert_unsubscribed(env: &TestEnv) {
    assert_eq!(
        env.strings("SELECT email || ' ' || reason || ' ' || source FROM suppressions"),
        ["c2@example.com unsubscribed campaign:hello"]
    );
}

#[test]
fn two_thousand_idle_connections_do_not_stop_a_one_click_unsubscribe() {
    raise_own_open_files(8192);
    each_backend(|env| {
        let target = customers_and_link(env);
        let (_serving, port) = serve(env, &[]);
        // More than the 1,024 descriptors the server starts with: it raises
        // its soft limit to the hard one, and caps its connections below it.
        let _idle = idle_connections(port, 2000);
        let answer = request(port, "POST", &target, "List-Unsubscribe=One-Click");
        let (status, response) = answer.unwrap_or_else(|e| panic!("{:?}: {e}\n{}", env.backend, log_of(env)));
        assert_eq!(status, 200, "{response}");
        assert!(response.contains("You are unsubscribed"), "{response}");
        assert_unsubscribed(env);
    });
}

#[test]
fn connections_beyond_the_cap_are_served_once_idle_and_slow_ones_time_out() {
    raise_own_open_files(8192);
    // The cap is the HTTP server's, whatever the database.
    let env = TestEnv::new(Backend::Sqlite);
    let target = customers_and_link(&env);
    let (_serving, port) =
        serve(&env, &[("PATRON__HTTP__MAX_CONNECTIONS", "100"), ("PATRON__HTTP__HEADER_TIMEOUT", "2s")]);

    // A kept-alive connection is closed once idle for the header timeout.
    let mut kept_alive = TcpStream::connect(("127.0.0.1", port)).unwrap();
    kept_alive.write_all(format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).unwrap();
    kept_alive.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    let mut head = [0; 12];
    kept_alive.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(closed_by_server(&mut kept_alive), "an idle kept-alive connection stays open");

    // Headers sent a line at a time never finish: closed at the header timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"POST /unsubscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    let started = Instant::now();
    let cut_off = loop {
        std::thread::sleep(Duration::from_millis(250));
        if slow.write_all(b"X-Slow: 1\r\n").is_err() {
            break true;
        }
        if started.elapsed() > ANSWER_WITHIN {
            break false;
        }
    };
    assert!(cut_off, "a client sending its headers slowly keeps its connection");

    // 300 connections that send nothing: 100 are accepted, the rest wait in
    // the listen queue, and the unsubscribe after them is answered once the
    // idle ones ahead of it have timed out.
    let mut idle = idle_connections(port, 300);
    let answer = request(port, "POST", &target, "List-Unsubscribe=One-Click");
    let (status, response) = answer.unwrap_or_else(|e| panic!("{e}\n{}", log_of(&env)));
    assert_eq!(status, 200, "{response}");
    assert_unsubscribed(&env);
    assert!(closed_by_server(&mut idle[0]), "the first idle connection is still open");
    assert!(log_of(&env).contains("max_connections=100"), "{}", log_of(&env));
}
