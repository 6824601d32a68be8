//! Scoring benchmark: `patron generate` data (1,000,000 customers by default)
//! imported into SQLite, then `patron train` and `patron score` as of the end
//! of the generated period. Prints the time of each step that `score`
//! reports, the whole run, and peak resident memory. `sync` runs before
//! each scoring (see `settle_disk`).
//!
//! `cargo bench --bench scoring`; `PATRON_BENCH_CUSTOMERS=100000` for a smaller run;
//! `PATRON_BENCH_DATABASE_URL=postgres://...` to run on PostgreSQL (that
//! database is emptied first).

mod support;

use support::{customers, generate_and_import, measure, settle_disk};

/// The last day of `patron generate`'s default period.
const AS_OF: &str = "2026-06-30";

fn main() {
    let customers = customers();
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path();
    generate_and_import(work, customers);
    let train = measure(work, &["train", "--as-of", AS_OF, "--horizon", "91d"]);
    println!("train (logistic)  {:>6.2} s  peak {:>6.1} MB", train.seconds, train.peak_mb);
    print!("{}", train.stdout);
    for pass in ["first score", "second score"] {
        settle_disk();
        let score = measure(work, &["score", "--as-of", AS_OF]);
        println!("{pass:<17} {:>6.2} s  peak {:>6.1} MB (whole command, with start-up)", score.seconds, score.peak_mb);
        print!("{}", score.stdout);
    }
}
