//! What the benchmarks share: running the real binary and measuring it.

// Each benchmark compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const PATRON: &str = env!("CARGO_BIN_EXE_patron");

/// One finished run of the binary.
pub struct Measured {
    pub seconds: f64,
    /// Peak resident memory, MB.
    pub peak_mb: f64,
    /// Processor time, user and system, seconds.
    pub cpu_user: f64,
    pub cpu_system: f64,
    pub stdout: String,
}

/// Runs the binary to completion and measures it.
// The child is reaped by `wait4`, which also reports its peak memory.
#[allow(clippy::zombie_processes)]
pub fn measure(dir: &Path, args: &[&str]) -> Measured {
    measure_with(dir, args, &[])
}

/// [`measure`] with extra environment variables (settings).
#[allow(clippy::zombie_processes)]
pub fn measure_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Measured {
    let started = Instant::now();
    let mut child = patron(dir, args).envs(env.iter().copied()).stdout(Stdio::piped()).spawn().expect("start patron");
    let mut stdout = String::new();
    // A few lines at most: reading to the end also waits for the child to close its output.
    child.stdout.take().expect("piped").read_to_string(&mut stdout).expect("read stdout");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    assert!(waited > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "patron {args:?} failed");
    let time = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Measured {
        seconds,
        peak_mb: usage.ru_maxrss as f64 / 1024.0,
        cpu_user: time(usage.ru_utime),
        cpu_system: time(usage.ru_stime),
        stdout,
    }
}

/// The binary with `args`, started in `dir`, logging warnings only, on the
/// PostgreSQL database of [`postgres`] if any.
pub fn patron(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(PATRON);
    command
        .args(args)
        .current_dir(dir)
        .env("PATRON__LOG__LEVEL", "warn")
        .envs(postgres().map(|url| ("PATRON__DATABASE__URL", url)));
    command
}

/// A port free on loopback now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something listens on `port` on loopback.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Postfix's `smtp-sink` on loopback in the background, stopped on drop.
pub struct Sink(std::process::Child);

impl Sink {
    pub fn start(port: u16) -> Sink {
        let child = Command::new("/usr/sbin/smtp-sink")
            .args(["-u", "nobody", &format!("127.0.0.1:{port}"), "1000"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start smtp-sink (Debian package postfix)");
        wait_for_port(port, "smtp-sink");
        Sink(child)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lets the kernel write the previous run's pages to disk first. Scoring and
/// the loyalty recompute run once a day, while back to back the previous
/// run's write-back competes with this run's reads and its commit (it
/// doubled some runs' time on the 2-core virtual machine).
pub fn settle_disk() {
    let synced = Command::new("sync").status().expect("run sync");
    assert!(synced.success(), "sync failed");
}

/// Data rows in a CSV file, counted without holding it in memory: a child's
/// peak memory as reported by the kernel starts at its parent's at fork time.
pub fn lines(path: &Path) -> u64 {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("open generated file"));
    std::io::BufRead::split(file, b'\n').count() as u64 - 1
}

/// `PATRON_BENCH_CUSTOMERS`, by default one million.
pub fn customers() -> u64 {
    std::env::var("PATRON_BENCH_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// `PATRON_BENCH_DATABASE_URL`, a PostgreSQL database to run on (emptied
/// by [`empty_database`]); SQLite in the run's folder without it.
pub fn postgres() -> Option<String> {
    std::env::var("PATRON_BENCH_DATABASE_URL").ok().filter(|url| url.starts_with("postgres"))
}

/// Empties the PostgreSQL database of [`postgres`], if any.
pub fn empty_database() {
    if let Some(url) = postgres() {
        let sql = "DROP SCHEMA public CASCADE; CREATE SCHEMA public";
        let status = Command::new("psql").args([url.as_str(), "-q", "-c", sql]).status().expect("run psql");
        assert!(status.success(), "psql failed: {sql}");
    }
}

/// Generates synthetic data into `dir/gen` (seed 42).
pub fn generate(dir: &Path, customers: u64) {
    let run = measure(dir, &["generate", "--customers", &customers.to_string(), "--seed", "42", "--out", "gen"]);
    println!("generate {customers} customers: {:.1} s", run.seconds);
}

/// `dir/customers.csv`: customers C1..Cn with consent, at c<i>@example.com.
pub fn write_customers(dir: &Path, n: u64) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(dir.join("customers.csv")).expect("csv"));
    writeln!(file, "customer_id,email,first_name,marketing_consent").unwrap();
    for i in 1..=n {
        writeln!(file, "C{i},c{i}@example.com,Name{i},true").unwrap();
    }
}

/// Generates synthetic data (see [`generate`]) and imports all three files into `dir`'s database.
pub fn generate_and_import(dir: &Path, customers: u64) {
    empty_database();
    generate(dir, customers);
    for what in ["customers", "orders", "interactions"] {
        measure(dir, &["import", what, &format!("gen/{what}.csv")]);
    }
}

/// A campaign over scored customers: the most promising 100,000 of the last
/// year, 10 % of them held out.
pub const PLANNING_CAMPAIGN: &str = r#"description = "Benchmark: the most promising buyers of the last year"
schedule = "0 9 * * MON"

[audience]
# Decile 1 holds the highest scores: deciles 1 to 5 are the more likely half,
# about 47 % of the million together with the recency condition.
where = "recency_days <= 365d and propensity_decile <= 5"
order_by = "propensity desc"
limit = 100000
cooldown = "30d"
holdout = 0.1

[message]
from = "shop@example.com"
subject = "Hello {{ customer.first_name }}"
text = "Hello. Unsubscribe: {{ unsubscribe_url }}"
"#;
