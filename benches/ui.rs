//! Dashboard benchmark: each page of `/ui/` over HTTP from a running daemon
//! (`patron run`, `[ui] enabled`, on loopback), on `patron generate` data
//! (1,000,000 customers by default) imported, trained, scored, brought up to
//! date by a loyalty recompute, and a campaign run whose messages were sent
//! to Postfix's `smtp-sink`. Prints each page's first request after the
//! daemon started (cold: the customers page computes its report then) and
//! the median and slowest of the next ones (warm).
//!
//! `cargo bench --bench ui`; `PATRON_BENCH_CUSTOMERS=100000` for a smaller
//! run; `PATRON_BENCH_DATABASE_URL=postgres://...` to run on PostgreSQL
//! (that database is emptied first); `PATRON_BENCH_UI_DIR=DIR` prepares the
//! data in DIR once and reuses it on later runs (with the same database).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{PLANNING_CAMPAIGN, Sink, customers, free_port, generate_and_import, measure, measure_with, patron};

const AS_OF: &str = "2026-06-30";
/// Requests after the first one, for the warm figures.
const WARM: usize = 10;
/// Written once the data in a `PATRON_BENCH_UI_DIR` is complete.
const PREPARED: &str = "ui-bench-prepared";
const SECRET: (&str, &str) = ("PATRON__UNSUBSCRIBE__SECRET", "benchmark-unsubscribe-secret-of-32-bytes");

fn main() {
    let temporary = tempfile::tempdir().expect("temp dir");
    let work = std::env::var_os("PATRON_BENCH_UI_DIR").map_or_else(|| temporary.path().to_owned(), Into::into);
    if work.join(PREPARED).exists() {
        println!("reusing the data prepared in {}", work.display());
    } else {
        std::fs::create_dir_all(&work).expect("benchmark folder");
        prepare(&work, customers());
    }
    let daemon = Daemon::start(&work);
    // The first generated customer.
    let customer = "/ui/customers/lookup?id=C0000001";
    println!("{:<34} {:>10} {:>10} {:>10} {:>9}", "page", "cold ms", "warm ms", "warm max", "bytes");
    for path in ["/ui/", "/ui/campaigns", "/ui/campaigns/bench", "/ui/model", "/ui/customers", customer] {
        let (cold, bytes) = get(daemon.port, path);
        let mut warm: Vec<f64> = (0..WARM).map(|_| get(daemon.port, path).0).collect();
        warm.sort_by(f64::total_cmp);
        let median = (warm[WARM / 2 - 1] + warm[WARM / 2]) / 2.0;
        println!("{path:<34} {cold:>10.1} {median:>10.1} {:>10.1} {bytes:>9}", warm[WARM - 1]);
    }
}

/// Data for every page: a model promoted, scores, loyalty accounts, a
/// campaign run and its messages sent.
fn prepare(work: &Path, customers: u64) {
    generate_and_import(work, customers);
    for args in [
        &["train", "--as-of", AS_OF, "--horizon", "91d"][..],
        &["score", "--as-of", AS_OF],
        &["loyalty", "recompute", "--as-of", AS_OF],
    ] {
        let run = measure(work, args);
        println!("{:<34} {:>7.1} s", args.join(" "), run.seconds);
    }
    std::fs::create_dir_all(work.join("campaigns")).expect("campaigns folder");
    std::fs::write(work.join("campaigns/bench.toml"), PLANNING_CAMPAIGN).expect("campaign file");
    measure(work, &["campaign", "run", "bench"]);
    let port = free_port().to_string();
    let _sink = Sink::start(port.parse().expect("a port"));
    let env = [("PATRON__DELIVERY__TRANSPORT", "smtp"), ("PATRON__SMTP__PORT", port.as_str()), SECRET];
    print!("send: {}", measure_with(work, &["send"], &env).stdout);
    std::fs::write(work.join(PREPARED), "").expect("marker file");
}

/// `patron run` with the dashboard on a free loopback port and no timed
/// job of its own (no scoring, training or recompute during the
/// measurements), stopped on drop.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(work: &Path) -> Daemon {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut command = patron(work, &["run"]);
        command.envs([("PATRON__UI__ENABLED", "true"), ("PATRON__HTTP__LISTEN", listen.as_str()), SECRET]);
        for job in ["SCORE", "TRAIN", "LOYALTY", "RETENTION"] {
            command.env(format!("PATRON__DAEMON__{job}_SCHEDULE"), "");
        }
        let child = command.stdout(Stdio::null()).spawn().expect("start patron run");
        support::wait_for_port(port, "patron run");
        // Ready: migrated, campaigns loaded, the sender up; what it does at
        // start is done before the pages are timed.
        let deadline = Instant::now() + Duration::from_secs(120);
        while request(port, "/readyz").0 != 200 {
            assert!(Instant::now() < deadline, "patron run did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        Daemon { child, port }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request for a page: milliseconds to the whole answer, and its size.
fn get(port: u16, path: &str) -> (f64, usize) {
    let started = Instant::now();
    let (status, size) = request(port, path);
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(status, 200, "{path}");
    (millis, size)
}

/// A GET on a new connection: the status and the size of the answer.
fn request(port: u16, path: &str) -> (u16, usize) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the daemon");
    stream.set_read_timeout(Some(Duration::from_secs(300))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").expect("send request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read answer");
    let head = String::from_utf8_lossy(&answer[..answer.len().min(16)]).into_owned();
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, answer.len())
}
