//! Loyalty benchmark: `patron loyalty recompute` over `patron generate` data
//! (1,000,000 customers and about 2.8 million orders by default) in SQLite,
//! three times: the first run writes every order's points, bonus, member and
//! tier; the second, as of the same moment, finds nothing new; the third is
//! the next night's run (birthdays, points expiring, tiers moving).
//!
//! `cargo bench --bench loyalty`; `PATRON_BENCH_CUSTOMERS=100000` for a smaller run;
//! `PATRON_BENCH_DATABASE_URL=postgres://...` to run on PostgreSQL (that
//! database is emptied first).

mod support;

use support::{customers, generate_and_import, measure, settle_disk};

const PASSES: [(&str, &str); 3] =
    [("first recompute", "2026-06-30"), ("same moment again", "2026-06-30"), ("next night", "2026-07-01")];

fn main() {
    let customers = customers();
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path();
    generate_and_import(work, customers);
    for (pass, as_of) in PASSES {
        settle_disk();
        let run = measure(work, &["loyalty", "recompute", "--as-of", as_of]);
        println!("{pass:<17} {:>6.2} s  peak {:>6.1} MB", run.seconds, run.peak_mb);
        print!("{}", run.stdout);
    }
}
