//! Scoring benchmark: `patron generate` data (1,000,000 customers by default)
//! imported into SQLite, then `patron train` and `patron score` as of the end
//! of the generated period. Prints the time of each step that `score`
//! reports, the whole run, and peak resident memory. `sync` runs before
//! each scoring (see `settle_disk`).
//!
//! `cargo bench --bench scoring`; `PATRON_BENCH_CUSTOMERS=100000` for a smaller run;
//! `PATRON_BENCH_DATABASE_URL=postgres://...` to run on PostgreSQL (that
//! database is emptied first). With `PATRON_BENCH_PANDAS=path/to/rescore_pandas.py`
//! (the baseline in `../shared/bench/`; `PATRON_BENCH_PYTHON` names the
//! interpreter, `python3` by default) the pandas + scikit-learn pipeline runs
//! on the same CSV files after patron, and its training is set against patron's.

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
    if let Ok(script) = std::env::var("PATRON_BENCH_PANDAS") {
        pandas_baseline(work, &script, train.seconds);
    }
}

/// Runs the pandas pipeline on the generated CSV files and prints its steps
/// and how its training (read, features, labels, fit) compares with patron's.
fn pandas_baseline(work: &std::path::Path, script: &str, patron_train: f64) {
    let python = std::env::var("PATRON_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    settle_disk();
    let output = std::process::Command::new(python)
        .args([script, &work.join("gen").display().to_string(), AS_OF])
        .output()
        .expect("run the pandas pipeline");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let line = String::from_utf8_lossy(&output.stdout);
    println!("pandas            {}", line.trim());
    let steps: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
    let training: f64 = ["read", "features_train", "labels", "fit"].iter().filter_map(|k| steps[k].as_f64()).sum();
    println!("pandas training   {training:>6.2} s; patron's training {:.1}x as fast", training / patron_train);
}
