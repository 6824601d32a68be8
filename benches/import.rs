//! Import benchmark: `patron generate` data (1,000,000 customers by default,
//! about 3 million orders) imported into a fresh SQLite file by the real
//! binary. Prints rows per second and the peak resident memory of each import.
//!
//! `cargo bench --bench import`; `PATRON_BENCH_CUSTOMERS=100000` for a smaller run;
//! `PATRON_BENCH_DATABASE_URL=postgres://...` to run on PostgreSQL (that
//! database is emptied first).

mod support;

use support::{customers, empty_database, generate, lines, measure};

fn main() {
    let customers = customers();
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path();
    empty_database();
    generate(work, customers);
    let counts = [
        ("customers", lines(&work.join("gen/customers.csv"))),
        ("orders", lines(&work.join("gen/orders.csv"))),
        ("interactions", lines(&work.join("gen/interactions.csv"))),
    ];
    measure(work, &["migrate"]);
    for pass in ["first import", "re-import (unchanged)"] {
        for (what, rows) in counts {
            let file = format!("gen/{what}.csv");
            let run = measure(work, &["import", what, &file]);
            println!(
                "{pass:<22} {what:<12} {rows:>9} rows {:>7.2} s {:>9.0} rows/s  peak {:>6.1} MB",
                run.seconds,
                rows as f64 / run.seconds,
                run.peak_mb
            );
        }
    }
    let db = std::fs::metadata(work.join("data/patron.db")).map(|m| m.len()).unwrap_or(0);
    println!("database file: {:.0} MB", db as f64 / 1e6);
}
