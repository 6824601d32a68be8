//! Import benchmark: `patron generate` data (1,000,000 customers by default,
//! about 3 million orders) imported into a fresh SQLite file by the real
//! binary. Prints rows per second and the peak resident memory of each import.
//!
//! `cargo bench --bench import`; `PATRON_BENCH_CUSTOMERS=100000` for a smaller run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const PATRON: &str = env!("CARGO_BIN_EXE_patron");

/// Runs the binary to completion; returns seconds and peak resident memory in MB.
// The child is reaped by `wait4`, which also reports its peak memory.
#[allow(clippy::zombie_processes)]
fn measure(dir: &Path, args: &[&str]) -> (f64, f64) {
    let started = Instant::now();
    let child = Command::new(PATRON)
        .args(args)
        .current_dir(dir)
        .env("PATRON__LOG__LEVEL", "warn")
        .spawn()
        .expect("start patron");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    assert!(waited > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "patron {args:?} failed");
    (seconds, usage.ru_maxrss as f64 / 1024.0)
}

/// Data rows in a CSV file, counted without holding it in memory: a child's
/// peak memory as reported by the kernel starts at its parent's at fork time.
fn lines(path: &Path) -> u64 {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("open generated file"));
    std::io::BufRead::split(file, b'\n').count() as u64 - 1
}

fn main() {
    let customers: u64 = std::env::var("PATRON_BENCH_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path();
    let (seconds, _) = measure(work, &["generate", "--customers", &customers.to_string(), "--seed", "42", "--out", "gen"]);
    println!("generate {customers} customers: {seconds:.1} s");
    let counts = [
        ("customers", lines(&work.join("gen/customers.csv"))),
        ("orders", lines(&work.join("gen/orders.csv"))),
        ("interactions", lines(&work.join("gen/interactions.csv"))),
    ];
    measure(work, &["migrate"]);
    for pass in ["first import", "re-import (unchanged)"] {
        for (what, rows) in counts {
            let file = format!("gen/{what}.csv");
            let (seconds, peak_mb) = measure(work, &["import", what, &file]);
            println!(
                "{pass:<22} {what:<12} {rows:>9} rows {seconds:>7.2} s {:>9.0} rows/s  peak {peak_mb:>6.1} MB",
                rows as f64 / seconds
            );
        }
    }
    let db = std::fs::metadata(work.join("data/patron.db")).map(|m| m.len()).unwrap_or(0);
    println!("database file: {:.0} MB", db as f64 / 1e6);
}
