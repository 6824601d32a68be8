//! Planning benchmark: a campaign over `patron generate` data (1,000,000
//! customers by default) in SQLite, scored by a trained model: segment,
//! exclusions, order by propensity, limit 100,000, control group, outbox
//! insert. `campaign run` reports its own planning time; the whole command
//! (start-up, loading the campaign files) and its peak memory are measured too.
//!
//! `cargo bench --bench planning`; `PATRON_BENCH_CUSTOMERS=100000` for a smaller run;
//! `PATRON_BENCH_DATABASE_URL=postgres://...` to run on PostgreSQL (that
//! database is emptied first).

mod support;

use support::{PLANNING_CAMPAIGN, customers, generate_and_import, measure};

const AS_OF: &str = "2026-06-30";

fn main() {
    let customers = customers();
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path();
    generate_and_import(work, customers);
    measure(work, &["train", "--as-of", AS_OF]);
    measure(work, &["score", "--as-of", AS_OF]);
    std::fs::create_dir(work.join("campaigns")).expect("campaigns folder");
    std::fs::write(work.join("campaigns/bench.toml"), PLANNING_CAMPAIGN).expect("campaign file");
    for (pass, args) in [
        ("dry run", &["campaign", "run", "bench", "--dry-run"][..]),
        ("first run", &["campaign", "run", "bench"][..]),
        // A second later: the first run's 100,000 are now in the cooldown.
        ("second run", &["campaign", "run", "bench"][..]),
    ] {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let run = measure(work, args);
        println!("{pass:<11} {:>6.2} s  peak {:>6.1} MB (whole command)", run.seconds, run.peak_mb);
        print!("{}", run.stdout);
    }
}
