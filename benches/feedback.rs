//! Feedback intake benchmark: `patron feedback ingest --maildir` over
//! 100,000 delivery status notifications as Postfix writes them, each
//! returned to its message's own VERP address, for as many sent messages:
//! messages per second and peak memory.
//!
//! `cargo bench --bench feedback`; `PATRON_BENCH_MESSAGES=10000` for a
//! smaller run. SQLite by default; `PATRON_BENCH_DATABASE_URL` (a PostgreSQL
//! database, emptied first, with `psql` on the PATH) for another engine.

mod support;

use std::path::Path;
use std::process::Command;

use patron::delivery::verp::ReturnPath;
use secrecy::SecretString;
use support::{measure_with, write_customers};

const SECRET: &str = "benchmark-unsubscribe-secret-of-32-bytes";
const RETURN_PATH: &str = "bounces+{token}@mail.shop.example";

const CAMPAIGN: &str = r#"kind = "marketing"

[audience]
where = "first_name is not null"
holdout = 0

[message]
from = "Shop <shop@example.com>"
subject = "Our winter offers"
text = "Hello {{ customer.first_name }}. Unsubscribe: {{ unsubscribe_url }}"
"#;

fn main() {
    let messages: u64 = std::env::var("PATRON_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path();
    let database = std::env::var("PATRON_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}/patron.db?mode=rwc", work.display()));
    if database.starts_with("postgres") {
        empty_postgres(&database);
    }
    let env = [
        ("PATRON__DATABASE__URL", database.as_str()),
        ("PATRON__UNSUBSCRIBE__SECRET", SECRET),
        ("PATRON__DELIVERY__RETURN_PATH", RETURN_PATH),
    ];
    write_customers(work, messages);
    measure_with(work, &["import", "customers", "customers.csv"], &env);
    std::fs::create_dir(work.join("campaigns")).expect("campaigns folder");
    std::fs::write(work.join("campaigns/bench.toml"), CAMPAIGN).expect("campaign file");
    measure_with(work, &["campaign", "run", "bench"], &env);
    // As if sent: the sender's speed is the delivery benchmark's business.
    execute(&database, "UPDATE outbox SET state = 'sent', sent_at = updated_at WHERE state = 'planned'");
    write_maildir(&work.join("Maildir"), messages);

    let run = measure_with(work, &["feedback", "ingest", "--maildir", "Maildir"], &env);
    print!("{}", run.stdout);
    let engine = database.split(':').next().unwrap_or_default();
    println!(
        "feedback ingest --maildir ({engine}): {messages} DSNs in {:.2} s = {:.0} messages/s, peak memory {:.0} MB",
        run.seconds,
        messages as f64 / run.seconds,
        run.peak_mb
    );
}

/// One Postfix DSN per outbox row 1..=n, returned to the row's VERP address
/// (which decides the row; the recipient it names is c<i>@example.com).
fn write_maildir(dir: &Path, n: u64) {
    for folder in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(dir.join(folder)).expect("Maildir");
    }
    let sample = format!("{}/tests/data/feedback/postfix-hard-bounce.eml", env!("CARGO_MANIFEST_DIR"));
    let template = std::fs::read_to_string(&sample).expect("the sample DSN").replace('\n', "\r\n");
    let verp = ReturnPath::new(RETURN_PATH, SecretString::from(SECRET)).expect("a VERP pattern");
    for i in 1..=n {
        let message = template
            .replace("{{RETURN_PATH}}", &verp.address(i as i64))
            .replace("{{RECIPIENT}}", &format!("c{i}@example.com"))
            .replace("{{MESSAGE_ID}}", &format!("<unknown-{i}@elsewhere.example>"))
            .replace("<20261201100002.4B1F52A0C41@mx1.shop.example>", &format!("<{i}.dsn@mx1.shop.example>"));
        std::fs::write(dir.join("new").join(format!("{i:09}.bench")), message).expect("a message");
    }
}

fn execute(database: &str, sql: &str) {
    if database.starts_with("postgres") {
        let status = Command::new("psql").args([database, "-q", "-c", sql]).status().expect("run psql");
        assert!(status.success(), "psql failed: {sql}");
    } else {
        let path = database.trim_start_matches("sqlite://").split('?').next().unwrap_or_default();
        rusqlite::Connection::open(path).and_then(|db| db.execute(sql, [])).expect(sql);
    }
}

fn empty_postgres(database: &str) {
    execute(database, "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
}
