//! Shared work benchmark (PostgreSQL only): the daemons' scoring and first
//! loyalty recompute, split into ranges of customers, run by one daemon and
//! then by two on the same data (`patron generate`, 1,000,000 customers by
//! default). Prints per run the time from its start to its end, and per
//! daemon the ranges it did, their mean time and its peak memory.
//!
//! `PATRON_BENCH_DATABASE_URL=postgres://... cargo bench --bench sharing`
//! (that database is emptied first); `PATRON_BENCH_CUSTOMERS=100000` for a
//! smaller run.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{customers, generate_and_import, measure, postgres, settle_disk};

const PATRON: &str = env!("CARGO_BIN_EXE_patron");

fn main() {
    let Some(url) = postgres() else {
        eprintln!("the sharing benchmark runs on PostgreSQL: set PATRON_BENCH_DATABASE_URL");
        return;
    };
    let customers = customers();
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path();
    std::fs::create_dir_all(work.join("campaigns")).expect("campaigns folder");
    generate_and_import(work, customers);
    let train = measure(work, &["train", "--as-of", "2026-06-30", "--horizon", "91d"]);
    println!("train {:.1} s", train.seconds);
    for daemons in [1, 2] {
        for job in ["score", "loyalty"] {
            if job == "loyalty" {
                psql(
                    &url,
                    "DELETE FROM loyalty_tier_changes; DELETE FROM loyalty_ledger; DELETE FROM loyalty_accounts",
                );
            }
            settle_disk();
            run_shared(work, &url, job, daemons);
        }
    }
}

/// Starts `daemons` daemons whose `job` fires a few seconds later, waits
/// for the run to finish, stops them and prints the figures.
fn run_shared(dir: &Path, url: &str, job: &str, daemons: usize) {
    let fire = chrono::Utc::now() + chrono::Duration::seconds(8);
    let schedule = fire.format("%S %M %H * * *").to_string();
    let mut children: Vec<Child> = (0..daemons).map(|_| start_daemon(dir, url, job, &schedule)).collect();
    let started = Instant::now();
    let finished = format!("SELECT COUNT(*) FROM work_runs WHERE job = '{job}' AND finished_at IS NOT NULL");
    let before: u64 = psql(url, &finished).parse().expect("a count");
    while psql(url, &finished).parse::<u64>().expect("a count") == before {
        assert!(started.elapsed() < Duration::from_secs(3600), "the {job} run did not finish");
        std::thread::sleep(Duration::from_millis(500));
    }
    let last_run = format!("(SELECT MAX(id) FROM work_runs WHERE job = '{job}')");
    let seconds =
        psql(url, &format!("SELECT EXTRACT(EPOCH FROM finished_at - started_at) FROM work_runs WHERE id = {last_run}"));
    println!("{job:<8} {daemons} daemon(s): run {:>7.1} s", seconds.parse::<f64>().expect("seconds"));
    let per_owner = psql(
        url,
        &format!(
            "SELECT owner || '|' || COUNT(*) || ' ranges, mean ' \
             || ROUND(AVG(EXTRACT(EPOCH FROM done_at - taken_at))::numeric, 2) || ' s' \
             FROM work_ranges WHERE run_id = {last_run} GROUP BY owner"
        ),
    );
    for child in &mut children {
        // An owner is `host:pid:random`.
        let pid = format!(":{}:", child.id());
        let ranges = per_owner.lines().find(|line| line.contains(&pid)).and_then(|line| line.split_once('|'));
        let ranges = ranges.map_or("no ranges", |(_, figures)| figures).to_owned();
        let peak_mb = stop(child);
        println!("    daemon: {ranges}, peak {peak_mb:.0} MB");
    }
}

fn start_daemon(dir: &Path, url: &str, job: &str, schedule: &str) -> Child {
    let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("address").port();
    let (score, loyalty) = if job == "score" { (schedule, "") } else { ("", schedule) };
    Command::new(PATRON)
        .arg("run")
        .current_dir(dir)
        .env("PATRON__DATABASE__URL", url)
        .env("PATRON__LOG__LEVEL", "warn")
        .env("PATRON__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("PATRON__UNSUBSCRIBE__SECRET", "bench-unsubscribe-secret-of-32-bytes-or-more")
        .env("PATRON__DAEMON__SCORE_SCHEDULE", score)
        .env("PATRON__DAEMON__LOYALTY_SCHEDULE", loyalty)
        .env("PATRON__DAEMON__TRAIN_SCHEDULE", "")
        .env("PATRON__DAEMON__RETENTION_SCHEDULE", "")
        .stdout(Stdio::null())
        .spawn()
        .expect("start patron run")
}

/// SIGTERM, then the daemon's peak resident memory in MB.
fn stop(child: &mut Child) -> f64 {
    // SAFETY: signalling and reaping our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(waited > 0, "the daemon could not be reaped");
    usage.ru_maxrss as f64 / 1024.0
}

/// The output of one statement, trimmed.
fn psql(url: &str, sql: &str) -> String {
    let output = Command::new("psql").args([url, "-At", "-q", "-c", sql]).output().expect("run psql");
    assert!(output.status.success(), "psql failed: {sql}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8").trim().to_owned()
}
