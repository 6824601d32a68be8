//! A seeded random-mutation run over a valid orders file: bytes flipped,
//! inserted and deleted, lines repeated, swapped and cut, cells replaced by
//! hostile values. Whatever the file, `patron import` exits 0 or 2, never
//! panics, leaves the database as it was when it exits 2, and reports counts
//! that match the database when it exits 0.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::support::{TestEnv, each_backend};

/// Cases per engine; each is one run of the binary.
const CASES: usize = 300;
const SEED: u64 = 18;

/// A valid orders file: every optional column, several date forms and amounts.
fn valid_orders() -> String {
    let mut text = String::from("order_id,customer_id,ordered_at,amount,currency,items,category\n");
    let dates = ["2026-01-02", "2025-12-31T23:59:59Z", "2026-03-01T10:30:00+01:00", "1999-07-04"];
    let amounts = ["10", "19.99", "0", "7.5", "1234.00"];
    let categories = ["books", "Garden", "", "toys & games", "\"home, kitchen\""];
    for i in 1..=30 {
        text.push_str(&format!(
            "O{i},C{},{},{},{},{},{}\n",
            i % 5 + 1,
            dates[i % dates.len()],
            amounts[i % amounts.len()],
            if i % 3 == 0 { "eur" } else { "" },
            if i % 4 == 0 { (i % 7).to_string() } else { String::new() },
            categories[i % categories.len()],
        ));
    }
    text
}

/// Bytes and cells that import code is most likely to mishandle.
const HOSTILE_BYTES: &[u8] = b"\",\r\n\0\xff\xc3 -9;\t";
const HOSTILE_CELLS: &[&str] = &[
    "",
    "-1",
    "1e400",
    "99999999999999999999999",
    "2026-02-30",
    "0000-01-01",
    "9999-12-31",
    "C404",
    "NaN",
    "=HYPERLINK(\"x\")",
    "'; DROP TABLE orders; --",
    "\"",
    "\"\"",
    "é",
    "\u{feff}",
    "1.001",
    "O1",
];

/// Applies one to three random mutations to `bytes`.
fn mutate(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..=3) {
        if bytes.is_empty() {
            bytes.extend_from_slice(b"order_id\n");
        }
        let at = rng.random_range(0..bytes.len());
        match rng.random_range(0..8) {
            0 => bytes[at] = rng.random(),
            1 => bytes.insert(at, *HOSTILE_BYTES.choose(rng).expect("not empty")),
            2 => {
                let end = (at + rng.random_range(1..20)).min(bytes.len());
                bytes.drain(at..end);
            }
            3 => bytes.truncate(at),
            4 | 5 => replace_cell(rng, bytes),
            _ => shuffle_lines(rng, bytes),
        }
    }
}

/// Replaces one cell (the text between two delimiters) with a hostile value.
fn replace_cell(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>) {
    let bounds: Vec<usize> =
        bytes.iter().enumerate().filter(|(_, b)| matches!(b, b',' | b'\n')).map(|(i, _)| i).collect();
    if bounds.len() < 2 {
        return;
    }
    let start = rng.random_range(0..bounds.len() - 1);
    let cell = HOSTILE_CELLS.choose(rng).expect("not empty");
    bytes.splice(bounds[start] + 1..bounds[start + 1], cell.bytes());
}

/// Repeats, swaps or drops a line.
fn shuffle_lines(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>) {
    let mut lines: Vec<Vec<u8>> = bytes.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    let (a, b) = (rng.random_range(0..lines.len()), rng.random_range(0..lines.len()));
    match rng.random_range(0..3) {
        0 => {
            let line = lines[a].clone();
            lines.insert(b, line);
        }
        1 => lines.swap(a, b),
        _ => {
            lines.remove(a);
        }
    }
    *bytes = lines.concat();
}

/// The counts of a report line: rows read, new or changed, unchanged, rejected.
fn reported_counts(stdout: &str) -> [u64; 4] {
    let counts = stdout
        .lines()
        .find_map(|line| line.split_once(": ").filter(|(_, rest)| rest.contains(" rows read, ")).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no report line in {stdout:?}"));
    let numbers: Vec<u64> = counts.split(", ").map(|part| part.split(' ').next().unwrap().parse().unwrap()).collect();
    numbers.try_into().expect("four counts")
}

fn all_rows(env: &TestEnv) -> Vec<String> {
    let mut rows = env.strings("SELECT external_id || '|' || email FROM customers ORDER BY external_id");
    rows.extend(env.strings("SELECT external_id FROM orders ORDER BY external_id"));
    rows
}

#[test]
fn a_few_hundred_mutated_orders_files_exit_0_or_2_and_the_database_matches_the_report() {
    each_backend(|env| {
        let customers: String = (1..=5).map(|i| format!("C{i},c{i}@example.com\n")).collect();
        env.ok(&["import", "customers", &env.write("customers.csv", format!("customer_id,email\n{customers}"))]);
        let valid = valid_orders();
        let run = env.ok(&["import", "orders", &env.write("valid.csv", &valid)]);
        assert_eq!(reported_counts(&run.stdout), [30, 30, 0, 0], "the unmutated file imports whole");
        env.execute("DELETE FROM orders");
        let before = all_rows(env);
        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        let (mut accepted, mut refused) = (0, 0);
        for case in 0..CASES {
            let mut bytes = valid.clone().into_bytes();
            mutate(&mut rng, &mut bytes);
            let skip_invalid = rng.random_bool(0.5);
            let file = env.write("mutated.csv", &bytes);
            let rejects = env.path("mutated.rejects.csv");
            let mut args = vec!["import", "orders", file.as_str()];
            if skip_invalid {
                args.extend(["--skip-invalid", "--rejects", rejects.as_str()]);
            }
            let run = env.command(&args).env("PATRON__IMPORT__BATCH_SIZE", "4").output().expect("run patron");
            let run = crate::support::Run::from(run);
            let context = format!(
                "case {case} (seed {SEED}, skip_invalid {skip_invalid}) on {:?}\nfile: {:?}\nstdout: {}\nstderr: {}",
                env.backend,
                String::from_utf8_lossy(&bytes),
                run.stdout,
                run.stderr
            );
            assert!(!run.stderr.contains("panicked"), "{context}");
            match run.code {
                0 => {
                    accepted += 1;
                    let [read, written, unchanged, rejected] = reported_counts(&run.stdout);
                    let orders = env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM orders");
                    assert_eq!(orders, [written.to_string()], "{context}");
                    assert_eq!((unchanged, read), (0, written + rejected), "{context}");
                    assert!(skip_invalid || rejected == 0, "{context}");
                    env.execute("DELETE FROM orders");
                }
                2 => {
                    refused += 1;
                    assert_eq!(all_rows(env), before, "{context}");
                }
                other => panic!("exit code {other}: {context}"),
            }
        }
        eprintln!("{:?}: {accepted} accepted, {refused} refused", env.backend);
        // The run means something only if both outcomes were reached often.
        assert!(accepted > CASES / 10 && refused > CASES / 10, "{accepted} accepted, {refused} refused");
    });
}
