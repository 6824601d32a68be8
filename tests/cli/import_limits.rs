//! Inputs that used to be imported wrongly or destroy data: a reject file
//! naming the input, dates in years no shop has orders in, a NUL byte in a
//! cell, a header of a hundred thousand columns, a quote never closed, an
//! endless file, a name of a million letters. Each is refused with exit code
//! 2, naming its line, and the database and the input are left as they were.

use crate::support::{Run, TestEnv, each_backend};

const HEADER: &str = "order_id,customer_id,ordered_at,amount\n";
const HEADER_WITH_CATEGORY: &str = "order_id,customer_id,ordered_at,amount,category\n";

/// A database with customers C1 and C2 and one order.
fn with_customers(env: &TestEnv) {
    let customers = env.write("base_c.csv", "customer_id,email\nC1,c1@example.com\nC2,c2@example.com\n");
    env.ok(&["import", "customers", &customers]);
    let orders = env.write("base_o.csv", format!("{HEADER}O1,C1,2026-01-01,10\n"));
    env.ok(&["import", "orders", &orders]);
}

fn orders_table(env: &TestEnv) -> Vec<String> {
    env.strings(
        "SELECT external_id || '|' || CAST(amount_cents AS TEXT) || '|' || CAST(ordered_at AS TEXT) \
         FROM orders ORDER BY external_id",
    )
}

/// Runs `patron import <what> <file>` on `contents`: exit 2, each of `expected`
/// in the message, and no order changed.
fn refused(env: &TestEnv, what: &str, contents: &[u8], expected: &[&str]) -> Run {
    let file = env.write(&format!("bad_{what}.csv"), contents);
    let before = orders_table(env);
    let run = env.patron(&["import", what, &file]);
    assert_eq!(run.code, 2, "{what} on {:?}: {}\n{}", env.backend, run.stdout, run.stderr);
    for text in expected {
        assert!(run.stderr.contains(text), "expected {text:?} in:\n{}", run.stderr);
    }
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(orders_table(env), before);
    run
}

#[test]
fn a_reject_file_that_is_the_input_file_is_refused_and_the_input_is_left_whole() {
    each_backend(|env| {
        with_customers(env);
        let contents = format!("{HEADER}O2,C1,2026-01-02,1\nO3,C1,bad-date,1\nO4,C2,2026-01-03,2\n");
        let input = env.write("orders.csv", &contents);
        std::fs::create_dir(env.path("sub")).unwrap();
        std::fs::hard_link(&input, env.path("linked.csv")).unwrap();
        let before = orders_table(env);
        for rejects in [input.clone(), env.path("sub/../orders.csv"), "orders.csv".to_owned(), env.path("linked.csv")] {
            let run = env.patron(&["import", "orders", &input, "--skip-invalid", "--rejects", &rejects]);
            assert_eq!(run.code, 2, "--rejects {rejects}: {}\n{}", run.stdout, run.stderr);
            assert!(run.stderr.contains("is the input file; choose another --rejects path"), "{}", run.stderr);
            assert_eq!(std::fs::read_to_string(&input).unwrap(), contents);
            assert_eq!(orders_table(env), before);
        }
    });
}

#[test]
fn the_reject_file_replaces_an_old_one_whole_and_leaves_no_temporary_file() {
    each_backend(|env| {
        with_customers(env);
        let input = env.write("orders.csv", format!("{HEADER}O2,C1,2026-01-02,1\nO3,C1,bad-date,1\n"));
        let rejects = env.write("rejects.csv", "old contents\n");
        let run = env.ok(&["import", "orders", &input, "--skip-invalid", "--rejects", &rejects]);
        assert!(run.stdout.contains("2 rows read, 1 new or changed, 0 unchanged, 1 rejected"), "{}", run.stdout);
        let written = std::fs::read_to_string(&rejects).unwrap();
        assert!(written.starts_with("line,problem,order_id,customer_id,ordered_at,amount\n3,"), "{written}");
        let names: Vec<String> = std::fs::read_dir(env.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    });
}

#[test]
fn an_order_dated_in_year_0_or_after_2200_is_refused_with_its_line_and_nothing_changes() {
    each_backend(|env| {
        with_customers(env);
        let contents = format!("{HEADER}O2,C1,2026-01-02,1\nO3,C1,0000-01-01,1\nO4,C2,2201-01-01T00:00:00Z,2\n");
        let run = refused(
            env,
            "orders",
            contents.as_bytes(),
            &["line 3, column `ordered_at`", "line 4, column `ordered_at`"],
        );
        assert!(run.stderr.contains("the year must be between 1900 and 2200"), "{}", run.stderr);
    });
}

#[test]
fn a_nul_byte_in_a_cell_is_refused_with_its_line_and_column() {
    each_backend(|env| {
        with_customers(env);
        let contents = format!("{HEADER_WITH_CATEGORY}O2,C1,2026-01-02,1,books\nO3,C2,2026-01-03,2,bo\0oks\n");
        let run = refused(env, "orders", contents.as_bytes(), &["line 3, column `category`", "contains a NUL byte"]);
        assert!(!run.stderr.contains("INSERT"), "{}", run.stderr);
    });
}

#[test]
fn a_header_of_a_million_columns_is_refused_and_a_repeated_column_named() {
    each_backend(|env| {
        with_customers(env);
        // Valid but for its width: customers keep extra columns as attributes.
        let mut wide = "customer_id,email".to_owned();
        for i in 0..100_000 {
            wide.push_str(&format!(",c{i}"));
        }
        refused(
            env,
            "customers",
            format!("{wide}\n").as_bytes(),
            &["line 1: the header has 100002 columns, more than the 1000 allowed"],
        );
        let repeated = "customer_id,email,first_name,email\nC9,c9@example.com,A,c9@example.com\n";
        refused(env, "customers", repeated.as_bytes(), &["line 1: column `email` appears twice in the header"]);
    });
}

#[test]
fn lines_are_numbered_the_same_in_crlf_files_as_in_lf_files() {
    each_backend(|env| {
        with_customers(env);
        let lf = format!("{HEADER}O2,C1,2026-01-02,1\n\nO3,C1,bad-date,1\nO4,C2,2026-01-03,x\n");
        refused(env, "orders", lf.as_bytes(), &["line 4, column `ordered_at`", "line 5, column `amount`"]);
        let crlf = lf.replace('\n', "\r\n");
        let run = refused(env, "orders", crlf.as_bytes(), &["line 4, column `ordered_at`", "line 5, column `amount`"]);
        assert!(!run.stderr.contains("line 3"), "{}", run.stderr);
    });
}

fn interactions(env: &TestEnv) -> Vec<String> {
    env.strings("SELECT external_id || '|' || COALESCE(note, '') FROM interactions ORDER BY external_id")
}

#[test]
fn a_quote_left_open_in_a_note_is_refused_instead_of_taking_in_the_rows_after_it() {
    each_backend(|env| {
        with_customers(env);
        let header = "interaction_id,customer_id,kind,opened_at,note\n";
        let never_closed = format!(
            "{header}I1,C1,complaint,2026-01-02,\"late, again\"\nI2,C1,inquiry,2026-01-03,\"size?\nI3,C2,complaint,2026-01-04,x\n"
        );
        let closed_later = format!(
            "{header}I1,C1,complaint,2026-01-02,\"size?\nI2,C1,inquiry,2026-01-03,\"late\"\nI3,C2,complaint,2026-01-04,x\n"
        );
        for (contents, reason) in [
            (never_closed, "line 3: the quote opened on line 3 is never closed"),
            (closed_later, "line 2: text follows the quote that closes the cell opened on line 2 (on line 3)"),
        ] {
            let file = env.write("notes.csv", &contents);
            let run = env.patron(&["import", "interactions", &file]);
            assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
            assert!(run.stderr.contains(reason), "expected {reason:?} in:\n{}", run.stderr);
            assert!(interactions(env).is_empty());
            // With --skip-invalid the damaged record is rejected whole, with its reason.
            let rejects = env.path("notes.rejects.csv");
            let run = env.ok(&["import", "interactions", &file, "--skip-invalid", "--rejects", &rejects]);
            assert!(run.stdout.contains("1 rejected"), "{}", run.stdout);
            let (_, problem) = reason.split_once(": ").unwrap();
            let written = std::fs::read_to_string(&rejects).unwrap();
            assert!(written.contains(problem), "expected {problem:?} in:\n{written}");
            env.execute("DELETE FROM interactions");
        }
    });
}

#[test]
fn an_endless_file_or_an_oversized_record_is_refused_without_filling_memory() {
    each_backend(|env| {
        with_customers(env);
        refused(env, "orders", b"", &["the file is empty"]);
        let run = env.patron(&["import", "orders", "/dev/zero"]);
        assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("/dev/zero: cannot read the header line: line 1: the record is longer than 1 MiB"),
            "{}",
            run.stderr
        );
        let mut open_quote = format!("{HEADER_WITH_CATEGORY}O2,C1,2026-01-02,1,\"books\n").into_bytes();
        open_quote.extend(std::iter::repeat_n(b"O3,C1,2026-01-02,1,books\n".as_slice(), 50_000).flatten());
        refused(
            env,
            "orders",
            &open_quote,
            &["line 2: the record is longer than 1 MiB; the quote opened on line 2 is still open there"],
        );
    });
}

#[test]
fn a_name_of_a_million_letters_is_refused_with_its_line_and_column() {
    each_backend(|env| {
        env.ok(&["migrate"]);
        let customers = format!(
            "customer_id,email,first_name\nC1,c1@example.com,Ann\nC2,c2@example.com,{}\n",
            "a".repeat(1_000_000)
        );
        let file = env.write("names.csv", &customers);
        let run = env.patron(&["import", "customers", &file]);
        assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains("line 3, column `first_name`"), "{}", run.stderr);
        assert!(run.stderr.contains("is 1000000 characters long; at most 100 are allowed"), "{}", run.stderr);
        assert_eq!(env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM customers"), ["0"]);
    });
}
