//! Loyalty benchmark: `patron loyalty recompute` over `patron generate` data
//! (1,000,000 customers and about 2.8 million orders by default) in SQLite,
//! twice: the first run writes every order's points, member and tier; the
//! second finds nothing new.
//!
//! `cargo bench --bench loyalty`; `PATRON_BENCH_CUSTOMERS=100000` for a smaller run.

mod support;

use support::{customers, generate_and_import, measure};

const AS_OF: &str = "2026-06-30";

fn main() {
    let customers = customers();
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path();
    generate_and_import(work, customers);
    for pass in ["first recompute", "second recompute"] {
        let run = measure(work, &["loyalty", "recompute", "--as-of", AS_OF]);
        println!("{pass:<17} {:>6.2} s  peak {:>6.1} MB", run.seconds, run.peak_mb);
        print!("{}", run.stdout);
    }
}
