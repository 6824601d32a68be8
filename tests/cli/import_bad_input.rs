//! Every kind of bad input gets its own message, exit code 2, and leaves the
//! database exactly as it was, even when good rows came before the bad one.

use crate::support::{TestEnv, each_backend};

const GOOD_ORDER: &str = "O9,C1,2026-02-01,3.00\n";

fn baseline(env: &TestEnv) -> (serde_json::Value, Vec<String>) {
    let customers = env.write("base_c.csv", "customer_id,email\nC1,c1@example.com\nC2,c2@example.com\n");
    env.ok(&["import", "customers", &customers]);
    let orders = env.write("base_o.csv", "order_id,customer_id,ordered_at,amount\nO1,C1,2026-01-01,10\n");
    env.ok(&["import", "orders", &orders]);
    (env.status(), all_rows(env))
}

fn all_rows(env: &TestEnv) -> Vec<String> {
    let mut rows = env.strings("SELECT external_id || '|' || email FROM customers ORDER BY external_id");
    rows.extend(env.strings(
        "SELECT external_id || '|' || CAST(amount_cents AS TEXT) || '|' || CAST(ordered_at AS TEXT) \
         FROM orders ORDER BY external_id",
    ));
    rows
}

/// Imports `contents` as `what` (batches of one row, so that good rows before
/// the bad one are written before it is found) and checks the refusal.
fn refused(env: &TestEnv, what: &str, contents: &[u8], expected: &[&str]) {
    let file = env.write(&format!("bad_{what}.csv"), contents);
    let (before, rows_before) = (env.status(), all_rows(env));
    let run = env.command(&["import", what, &file]).env("PATRON__IMPORT__BATCH_SIZE", "1").output().unwrap();
    let run = crate::support::Run::from(run);
    assert_eq!(
        run.code,
        2,
        "{what} import of {:?} on {:?}: {}",
        String::from_utf8_lossy(contents),
        env.backend,
        run.stderr
    );
    for text in expected {
        assert!(run.stderr.contains(text), "expected {text:?} in:\n{}", run.stderr);
    }
    assert_eq!(env.status(), before, "database changed after {:?}", String::from_utf8_lossy(contents));
    assert_eq!(all_rows(env), rows_before);
}

#[test]
fn each_bad_input_has_its_own_message_exit_code_2_and_changes_nothing() {
    each_backend(|env| {
        let (start, rows) = baseline(env);
        let header = "order_id,customer_id,ordered_at,amount\n";
        let orders = |bad: &str| format!("{header}{GOOD_ORDER}{bad}").into_bytes();

        let mut not_utf8 = orders("").to_vec();
        not_utf8.extend_from_slice(b"O2,C\xff1,2026-01-02,1\n");
        refused(env, "orders", &not_utf8, &["line 3, column `customer_id`: not valid UTF-8"]);
        refused(
            env,
            "orders",
            b"order_id,customer_id,amount\nO2,C1,1\n",
            &["line 1: missing required column(s) `ordered_at`"],
        );
        refused(
            env,
            "orders",
            &orders("O2,C1,2026-01-02,1,extra\n"),
            &["line 3: expected 4 fields as in the header, found 5"],
        );
        refused(
            env,
            "orders",
            &orders("O2,C1,02/01/2026,1\n"),
            &["line 3, column `ordered_at`, value `02/01/2026`: expected a date YYYY-MM-DD or an RFC 3339 timestamp"],
        );
        refused(
            env,
            "orders",
            &orders("O2,C1,2026-01-02,1.2.3\n"),
            &["line 3, column `amount`, value `1.2.3`: expected a decimal amount"],
        );
        refused(
            env,
            "orders",
            &orders("O2,C1,2026-01-02,-5\n"),
            &["line 3, column `amount`, value `-5`: amount must not be negative"],
        );
        refused(
            env,
            "orders",
            &orders("O2,C404,2026-01-02,5\n"),
            &["line 3, column `customer_id`, value `C404`: unknown customer; import the customers first"],
        );
        refused(
            env,
            "orders",
            &orders("O9,C2,2026-01-02,5\n"),
            &["line 3, column `order_id`, value `O9`: this id appears more than once in the file"],
        );
        refused(env, "orders", b"", &["the file is empty"]);
        let missing = env.path("missing.csv");
        let run = env.patron(&["import", "orders", &missing]);
        assert_eq!(run.code, 2);
        assert!(run.stderr.contains("missing.csv: no such file"), "{}", run.stderr);

        refused(
            env,
            "customers",
            b"customer_id,email\nC3,c3@example.com\nC4,not-an-address\n",
            &["line 3, column `email`, value `not-an-address`: not a valid email address"],
        );
        refused(
            env,
            "interactions",
            b"interaction_id,customer_id,kind,opened_at,resolved_at\nI1,C1,complaint,2026-01-05,2026-01-02\nI2,C1,praise,2026-01-05,\n",
            &["line 2, column `resolved_at`: is before opened_at", "line 3, column `kind`, value `praise`: expected one of: complaint, inquiry, suggestion"],
        );
        refused(
            env,
            "orders",
            b"order_id,customer_id,ordered_at,amount,colour\n",
            &["line 1: unknown column `colour`"],
        );
        assert_eq!(env.status(), start);
        assert_eq!(all_rows(env), rows);
    });
}

#[test]
fn every_bad_line_is_listed_up_to_the_cap_with_a_count_of_the_rest() {
    each_backend(|env| {
        baseline(env);
        let mut file = String::from("order_id,customer_id,ordered_at,amount\n");
        for n in 0..60 {
            file.push_str(&format!("X{n},C1,2026-01-01,-1\n"));
        }
        let path = env.write("many.csv", file);
        let run = env.patron(&["import", "orders", &path]);
        assert_eq!(run.code, 2);
        assert!(run.stderr.contains("60 problem(s) found; nothing was imported"), "{}", run.stderr);
        assert!(run.stderr.contains("line 51, column `amount`"));
        assert!(!run.stderr.contains("line 52,"));
        assert!(run.stderr.contains("... and 10 more"));
    });
}
