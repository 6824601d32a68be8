//! Delivery benchmark: `patron send` into Postfix's `smtp-sink` on loopback,
//! for 10,000 and 100,000 planned messages, next to Postfix's own
//! `smtp-source` at the same concurrency against the same sink.
//!
//! Needs Debian's `postfix` package (`smtp-sink`, `smtp-source` in
//! /usr/sbin). `cargo bench --bench delivery`; `PATRON_BENCH_MESSAGES=10000`
//! for one size only; `PATRON_BENCH_DATABASE_URL=postgres://...` to run on
//! PostgreSQL (that database is emptied first).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use support::{Sink, empty_database, free_port, measure, measure_with, write_customers};

const CONCURRENCY: usize = 8;

const CAMPAIGN: &str = r#"kind = "marketing"

[audience]
where = "first_name is not null"
holdout = 0

[message]
from = "Shop <shop@example.com>"
subject = "Something for you, {{ customer.first_name }}"
html = """<html><body><h1>Hello {{ customer.first_name }}</h1>
<p>We picked a few things we think you will like. Come and see them before the weekend.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>"""
text = """Hello {{ customer.first_name }},

We picked a few things we think you will like. Come and see them before the weekend.

Unsubscribe: {{ unsubscribe_url }}"""
"#;

fn main() {
    let sizes: Vec<u64> = match std::env::var("PATRON_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()) {
        Some(n) => vec![n],
        None => vec![10_000, 100_000],
    };
    for messages in sizes {
        bench(messages);
    }
}

fn bench(messages: u64) {
    empty_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path();
    write_customers(work, messages);
    measure(work, &["import", "customers", "customers.csv"]);
    std::fs::create_dir(work.join("campaigns")).expect("campaigns folder");
    std::fs::write(work.join("campaigns/bench.toml"), CAMPAIGN).expect("campaign file");
    measure(work, &["campaign", "run", "bench"]);
    let size = sample_size(work);

    let port = free_port();
    let _sink = Sink::start(port);
    let port_text = port.to_string();
    let concurrency = CONCURRENCY.to_string();
    let env = [
        ("PATRON__DELIVERY__TRANSPORT", "smtp"),
        ("PATRON__SMTP__PORT", port_text.as_str()),
        ("PATRON__DELIVERY__CONCURRENCY", concurrency.as_str()),
        ("PATRON__UNSUBSCRIBE__SECRET", "benchmark-unsubscribe-secret-of-32-bytes"),
    ];
    let run = measure_with(work, &["send"], &env);
    let patron_rate = messages as f64 / run.seconds;
    print!("{}", run.stdout);

    let started = Instant::now();
    let status = Command::new("/usr/sbin/smtp-source")
        .args(["-s", &concurrency, "-m", &messages.to_string(), "-l", &size.to_string()])
        .args(["-f", "shop@example.com", "-t", "c1@example.com", &format!("127.0.0.1:{port}")])
        .status()
        .expect("run smtp-source (Debian package postfix)");
    assert!(status.success(), "smtp-source failed");
    let source_rate = messages as f64 / started.elapsed().as_secs_f64();
    println!(
        "{messages:>7} messages of ~{size} bytes, {CONCURRENCY} sessions: patron send {patron_rate:>7.0}/s \
         (peak {:.1} MB, {:.2} s, processor {:.2} s user {:.2} s system), smtp-source {source_rate:>7.0}/s, \
         ratio {:.2}",
        run.peak_mb,
        run.seconds,
        run.cpu_user,
        run.cpu_system,
        patron_rate / source_rate
    );
}

/// Customers C1..Cn, all with consent.
/// The size of one message as patron writes it (the file transport, one customer),
/// so that smtp-source sends messages of the same size.
fn sample_size(dir: &Path) -> usize {
    let sample = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        sample.path().join("c.csv"),
        "customer_id,email,first_name,marketing_consent\nC1,c1@example.com,Name1,true\n",
    )
    .unwrap();
    std::fs::create_dir(sample.path().join("campaigns")).unwrap();
    std::fs::copy(dir.join("campaigns/bench.toml"), sample.path().join("campaigns/bench.toml")).unwrap();
    // Always in an SQLite file of the sample's own folder, never in the
    // benchmark's PostgreSQL database, whose planned messages it would send.
    let own_database = ("PATRON__DATABASE__URL", "");
    measure_with(sample.path(), &["import", "customers", "c.csv"], &[own_database]);
    measure_with(sample.path(), &["campaign", "run", "bench"], &[own_database]);
    measure_with(
        sample.path(),
        &["send"],
        &[own_database, ("PATRON__UNSUBSCRIBE__SECRET", "benchmark-unsubscribe-secret-of-32-bytes")],
    );
    let mail = std::fs::read_dir(sample.path().join("data/mail")).unwrap().next().unwrap().unwrap().path();
    std::fs::metadata(mail).unwrap().len() as usize
}
