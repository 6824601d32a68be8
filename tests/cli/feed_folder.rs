//! The folder feed (`kind = "folder"`): files dropped in a folder are taken
//! once complete, in dependency order, moved to `done/` or `failed/`, and
//! never imported twice.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::support::{Run, TestEnv, each_backend};

/// A drop folder and the settings of a feed `drop` on it.
struct Drop {
    folder: PathBuf,
    config: String,
}

impl Drop {
    fn new(env: &TestEnv, settle: &str) -> Drop {
        Drop::with(env, settle, "")
    }

    /// With `more` settings of the feed, such as `[feeds.patterns]`.
    fn with(env: &TestEnv, settle: &str, more: &str) -> Drop {
        let folder = env.dir.path().join("drop");
        fs::create_dir(&folder).unwrap();
        let settings = format!(
            "[[feeds]]\nname = \"drop\"\nkind = \"folder\"\npath = \"{}\"\nsettle = \"{settle}\"\n{more}",
            folder.display()
        );
        Drop { folder, config: env.write("patron.toml", settings) }
    }

    /// Writes a file into the folder, last changed `seconds_ago`.
    fn put(&self, name: &str, contents: &str, seconds_ago: u64) -> PathBuf {
        let path = self.folder.join(name);
        fs::write(&path, contents).unwrap();
        changed_ago(&path, seconds_ago);
        path
    }

    /// `patron feed run drop --json`: the run and what it printed.
    fn run(&self, env: &TestEnv) -> (Run, Value) {
        let run = env.patron(&["--config", &self.config, "feed", "run", "drop", "--json"]);
        let outcome = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|_| panic!("no JSON on {:?}:\n{}\n{}", env.backend, run.stdout, run.stderr));
        (run, outcome)
    }

    fn files(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.folder.join(sub))
            .map(|dir| dir.map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn changed_ago(path: &Path, seconds: u64) {
    let file = fs::File::options().append(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(seconds)).unwrap();
}

fn landed(table: &str, rows: u64, written: u64, source: &str) -> Value {
    json!({"table": table, "rows": rows, "written": written, "source": source})
}

fn count(env: &TestEnv, table: &str) -> String {
    env.strings(&format!("SELECT CAST(COUNT(*) AS TEXT) FROM {table}")).remove(0)
}

#[test]
fn a_file_still_being_written_is_left_alone_until_it_is_complete() {
    each_backend(|env| {
        // A pattern broad enough to match the writer's temporary name too.
        let drop = Drop::with(env, "30s", "[feeds.patterns]\ncustomers = \"*customers*\"\n");
        let half = "customer_id,email\nC1,c1@example.com\nC2,c2@exa";
        let customers = drop.put("customers.csv", half, 0);
        let renamed_later = drop.put(".customers_late.csv.tmp", "customer_id,email\nC5,c5@example.com\n", 600);

        let (run, outcome) = drop.run(env);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(outcome["landed"], json!([]));
        assert_eq!(
            outcome["notes"],
            json!(["customers.csv: changed less than 30s ago, may still be written; left for the next run"])
        );
        assert_eq!(count(env, "customers"), "0");
        assert!(customers.exists());

        let mut file = fs::File::options().append(true).open(&customers).unwrap();
        std::io::Write::write_all(&mut file, b"mple.com\nC3,c3@example.com\n").unwrap();
        changed_ago(&customers, 60);
        let (run, outcome) = drop.run(env);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(outcome["landed"], json!([landed("customers", 3, 3, "customers.csv")]));
        assert_eq!(
            env.strings("SELECT email FROM customers ORDER BY external_id"),
            ["c1@example.com", "c2@example.com", "c3@example.com"]
        );
        assert_eq!(drop.files("done"), ["customers.csv"]);
        assert!(renamed_later.exists(), "a temporary name is not taken");

        fs::rename(&renamed_later, drop.folder.join("customers_late.csv")).unwrap();
        let (_, outcome) = drop.run(env);
        assert_eq!(outcome["landed"], json!([landed("customers", 1, 1, "customers_late.csv")]));
        assert_eq!(count(env, "customers"), "4");
        assert_eq!(drop.files("done"), ["customers.csv", "customers_late.csv"]);
    });
}

#[test]
fn orders_dropped_before_their_customers_land_after_them() {
    each_backend(|env| {
        let drop = Drop::new(env, "2s");
        drop.put(
            "orders.csv",
            "order_id,customer_id,ordered_at,amount\nO1,C1,2026-01-01,10\nO2,C2,2026-01-02,20\n",
            120,
        );
        drop.put("customers.csv", "customer_id,email\nC1,c1@example.com\nC2,c2@example.com\n", 60);

        let (run, outcome) = drop.run(env);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(
            outcome["landed"],
            json!([landed("customers", 2, 2, "customers.csv"), landed("orders", 2, 2, "orders.csv")])
        );
        assert_eq!(outcome["failed"], json!([]));
        assert_eq!(count(env, "orders"), "2");
        assert_eq!(drop.files("done"), ["customers.csv", "orders.csv"]);
        assert!(!drop.folder.join("failed").exists());
    });
}

#[test]
fn a_refused_file_goes_to_failed_with_its_report_and_the_good_files_still_land() {
    each_backend(|env| {
        let drop = Drop::new(env, "2s");
        drop.put("customers.csv", "customer_id,email\nC1,c1@example.com\n", 60);
        let header = "order_id,customer_id,ordered_at,amount\n";
        drop.put("orders_bad.csv", &format!("{header}B1,C1,2026-01-01,10\nB2,C1,2026-01-02,abc\n"), 60);
        drop.put("orders_good.csv", &format!("{header}G1,C1,2026-01-03,30\n"), 60);

        let (run, outcome) = drop.run(env);
        assert_eq!(run.code, 1, "a rejected file fails the command:\n{}", run.stdout);
        assert!(run.stderr.contains("feed drop: 1 file(s) rejected"), "{}", run.stderr);
        assert_eq!(
            outcome["landed"],
            json!([landed("customers", 1, 1, "customers.csv"), landed("orders", 1, 1, "orders_good.csv")])
        );
        assert_eq!(
            outcome["failed"],
            json!(["orders_bad.csv: rejected (1 problem(s)); moved to failed/orders_bad.csv with its report"])
        );
        assert_eq!(env.strings("SELECT external_id FROM orders"), ["G1"], "nothing of the refused file landed");
        assert_eq!(drop.files("failed"), ["orders_bad.csv", "orders_bad.csv.report.txt"]);
        let report = fs::read_to_string(drop.folder.join("failed/orders_bad.csv.report.txt")).unwrap();
        assert!(report.starts_with("orders_bad.csv: refused on "), "{report}");
        assert!(report.ends_with(
            "; nothing of it was imported.\nline 3, column `amount`, value `abc`: expected a decimal amount such as 19.99\n"
        ), "{report}");
        assert_eq!(drop.files("done"), ["customers.csv", "orders_good.csv"]);
    });
}

#[test]
fn the_same_file_dropped_again_is_skipped_and_kept_beside_the_first() {
    each_backend(|env| {
        let drop = Drop::new(env, "2s");
        let export = "customer_id,email,first_name\nC1,c1@example.com,Ann\n";
        drop.put("customers.csv", export, 60);
        let (_, outcome) = drop.run(env);
        assert_eq!(outcome["landed"], json!([landed("customers", 1, 1, "customers.csv")]));
        env.execute("UPDATE customers SET first_name = 'Changed since' WHERE external_id = 'C1'");

        drop.put("customers.csv", export, 60);
        drop.put("customers_copy.csv", export, 60);
        let (run, outcome) = drop.run(env);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(outcome["landed"], json!([]));
        let notes: Vec<&str> = outcome["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
        assert_eq!(notes.len(), 2, "{notes:?}");
        for (note, (name, moved)) in
            notes.iter().zip([("customers.csv", "customers.2.csv"), ("customers_copy.csv", "customers_copy.csv")])
        {
            assert!(note.starts_with(&format!("{name}: already imported on ")), "{note}");
            assert!(note.ends_with(&format!(" (as customers.csv), skipped; moved to done/{moved}")), "{note}");
        }
        assert_eq!(env.strings("SELECT first_name FROM customers"), ["Changed since"], "not imported again");
        assert_eq!(drop.files("done"), ["customers.2.csv", "customers.csv", "customers_copy.csv"]);
        assert_eq!(drop.files(""), ["done"]);
    });
}

#[test]
fn a_missing_drop_folder_fails_the_run_and_lands_nothing() {
    each_backend(|env| {
        let drop = Drop::new(env, "2s");
        fs::remove_dir(&drop.folder).unwrap();
        let run = env.patron(&["--config", &drop.config, "feed", "run", "drop"]);
        assert_eq!(run.code, 1, "{}", run.stdout);
        assert!(
            run.stderr.contains(&format!("cannot read the drop folder {}", drop.folder.display())),
            "{}",
            run.stderr
        );
        let listed = env.ok(&["--config", &drop.config, "feed", "list", "--json"]).stdout;
        let listed: Value = serde_json::from_str(&listed).unwrap();
        assert!(listed[0]["last_error"].as_str().unwrap().contains("cannot read the drop folder"), "{listed}");
    });
}
