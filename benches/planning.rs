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

use support::{customers, generate_and_import, measure};

const AS_OF: &str = "2026-06-30";

const CAMPAIGN: &str = r#"description = "Benchmark: the most promising buyers of the last year"
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

fn main() {
    let customers = customers();
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path();
    generate_and_import(work, customers);
    measure(work, &["train", "--as-of", AS_OF]);
    measure(work, &["score", "--as-of", AS_OF]);
    std::fs::create_dir(work.join("campaigns")).expect("campaigns folder");
    std::fs::write(work.join("campaigns/bench.toml"), CAMPAIGN).expect("campaign file");
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
