//! Sql feed benchmark: `patron generate` data (1,000,000 customers by
//! default, about 3 million orders) copied into a PostgreSQL source database,
//! then fed into a fresh SQLite file by the real binary: a first run, and an
//! incremental run after 1% of the customers and orders changed. For
//! comparison, the CSV import of the same files into another fresh SQLite
//! file. Prints rows per second and peak resident memory of each run.
//!
//! `cargo bench --bench feeds`; `PATRON_BENCH_CUSTOMERS=100000` for a smaller
//! run; `PATRON_BENCH_SOURCE_URL` names the PostgreSQL server the source
//! database is made on (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! it is dropped at the end.

mod support;

use std::path::Path;
use std::process::Command;

use support::{customers, generate, lines, measure, measure_with, settle_disk};

/// The source's tables: the generated files' columns, typed as a shop
/// would type them, plus `updated_at`, indexed for the incremental queries.
const SCHEMA: &str = "
CREATE TABLE customers (customer_id text PRIMARY KEY, email text NOT NULL, first_name text, last_name text,
  birthday date, signed_up_at timestamptz, marketing_consent boolean, region text, channel text,
  updated_at timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00');
CREATE TABLE orders (order_id text PRIMARY KEY, customer_id text NOT NULL, ordered_at timestamptz NOT NULL,
  amount numeric(12,2) NOT NULL, currency text, items integer, category text,
  updated_at timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00');";

const CUSTOMER_COLUMNS: &str =
    "customer_id, email, first_name, last_name, birthday, signed_up_at, marketing_consent, region, channel";
const ORDER_COLUMNS: &str = "order_id, customer_id, ordered_at, amount, currency, items, category";

/// 1% of each table, changed now: the ids ending in `00`.
const CHANGES: &str = "
UPDATE customers SET first_name = first_name || 'e', updated_at = now() WHERE customer_id LIKE '%00';
UPDATE orders SET amount = amount + 1, updated_at = now() WHERE order_id LIKE '%00';";

/// A source database on the benchmark's PostgreSQL server, dropped when done.
struct SourceDatabase {
    admin: String,
    url: String,
    name: String,
}

impl SourceDatabase {
    fn create() -> SourceDatabase {
        let admin = std::env::var("PATRON_BENCH_SOURCE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!("patron_bench_source_{}", std::process::id());
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let mut url = url::Url::parse(&admin).expect("PATRON_BENCH_SOURCE_URL is a URL");
        url.set_path(&format!("/{name}"));
        let source = SourceDatabase { admin, url: url.to_string(), name };
        psql(&source.url, SCHEMA);
        source
    }

    /// Copies a generated file into `table` (psql's `\copy`, that is `COPY ... FROM STDIN`).
    fn copy(&self, table: &str, columns: &str, file: &Path) {
        let copy = format!("\\copy {table} ({columns}) FROM '{}' WITH (FORMAT csv, HEADER true)", file.display());
        psql(&self.url, &copy);
    }
}

impl Drop for SourceDatabase {
    fn drop(&mut self) {
        psql(&self.admin, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn psql(url: &str, sql: &str) {
    let status = Command::new("psql").args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]).status().expect("run psql");
    assert!(status.success(), "psql failed: {sql}");
}

/// A feed `bench` reading both tables of `url`.
fn feed_settings(url: &str) -> String {
    format!(
        "[[feeds]]\nname = \"bench\"\nkind = \"sql\"\nurl = \"{url}\"\n[feeds.queries]\n\
         customers = \"select {CUSTOMER_COLUMNS}, updated_at from customers where updated_at > :since\"\n\
         orders = \"select {ORDER_COLUMNS}, updated_at from orders where updated_at > :since\"\n"
    )
}

fn report(what: &str, rows: u64, run: &support::Measured) {
    println!(
        "{what:<34} {rows:>9} rows {:>7.2} s {:>9.0} rows/s  peak {:>6.1} MB  cpu {:>6.1} s",
        run.seconds,
        rows as f64 / run.seconds,
        run.peak_mb,
        run.cpu_user + run.cpu_system
    );
}

fn main() {
    assert!(support::postgres().is_none(), "the feed benchmark lands into SQLite: unset PATRON_BENCH_DATABASE_URL");
    let customers = customers();
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path();
    generate(work, customers);
    let customer_rows = lines(&work.join("gen/customers.csv"));
    let order_rows = lines(&work.join("gen/orders.csv"));

    let source = SourceDatabase::create();
    let started = std::time::Instant::now();
    source.copy("customers", CUSTOMER_COLUMNS, &work.join("gen/customers.csv"));
    source.copy("orders", ORDER_COLUMNS, &work.join("gen/orders.csv"));
    psql(&source.url, "CREATE INDEX ON customers (updated_at); CREATE INDEX ON orders (updated_at); ANALYZE");
    println!("source database filled: {:.1} s", started.elapsed().as_secs_f64());

    // The CSV import of the same files, into a fresh SQLite file of its own.
    let csv = work.join("csv");
    std::fs::create_dir(&csv).unwrap();
    measure(&csv, &["migrate"]);
    let mut csv_seconds = 0.0;
    for (what, rows) in [("customers", customer_rows), ("orders", order_rows)] {
        settle_disk();
        let run = measure(&csv, &["import", what, &format!("../gen/{what}.csv")]);
        report(&format!("csv import {what}"), rows, &run);
        csv_seconds += run.seconds;
    }
    let all_rows = customer_rows + order_rows;
    println!(
        "{:<34} {all_rows:>9} rows {csv_seconds:>7.2} s {:>9.0} rows/s",
        "csv import, both",
        all_rows as f64 / csv_seconds
    );

    let feed = work.join("feed");
    std::fs::create_dir(&feed).unwrap();
    std::fs::write(feed.join("patron.toml"), feed_settings(&source.url)).unwrap();
    // At info, each query's time is logged ("feed query landed").
    let run_feed =
        || measure_with(&feed, &["--config", "patron.toml", "feed", "run", "bench"], &[("PATRON__LOG__LEVEL", "info")]);
    measure(&feed, &["migrate"]);
    settle_disk();
    let first = run_feed();
    assert_eq!(rows_landed(&first.stdout), all_rows, "the first run loads everything");
    report("feed first run (customers+orders)", all_rows, &first);
    print!("{}", first.stdout);

    psql(&source.url, CHANGES);
    settle_disk();
    let incremental = run_feed();
    report("feed incremental run (1% changed)", rows_landed(&incremental.stdout), &incremental);
    print!("{}", incremental.stdout);
}

/// The rows of a run, from its last line (`feed bench: N rows, ...`).
fn rows_landed(stdout: &str) -> u64 {
    let last = stdout.lines().last().unwrap_or_default();
    let rows = last.strip_prefix("feed bench: ").and_then(|rest| rest.split(' ').next());
    rows.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no row count in {stdout:?}"))
}
