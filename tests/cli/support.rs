//! The test harness: a temporary working directory and database per test, and
//! helpers to run the binary and read the database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use sea_orm::{ConnectionTrait, Database, FromQueryResult, Statement};

/// The engines a test runs against: SQLite always, PostgreSQL when configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    if postgres_admin_url().is_some() {
        all.push(Backend::Postgres);
    }
    all
}

fn postgres_admin_url() -> Option<String> {
    std::env::var("PATRON_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())
}

/// The example data shipped with the project.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("example-data/cdnow").join(name)
}

/// One test's world: a working directory and an empty database.
pub struct TestEnv {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub database_url: String,
    postgres_database: Option<String>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

impl TestEnv {
    pub fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let database_url = format!("sqlite://{}", dir.path().join("patron.db").display());
                TestEnv { backend, dir, database_url, postgres_database: None }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url().expect("PATRON_TEST_POSTGRES_URL");
                let name = format!(
                    "patron_t{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst),
                    chrono::Utc::now().timestamp_subsec_nanos()
                );
                admin_execute(&admin, &format!("CREATE DATABASE {name}"));
                let mut url = url::Url::parse(&admin).expect("PATRON_TEST_POSTGRES_URL is a URL");
                url.set_path(&format!("/{name}"));
                TestEnv { backend, dir, database_url: url.to_string(), postgres_database: Some(name) }
            }
        }
    }

    /// A command for the binary, run in the test's directory on the test's database.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_patron"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("PATRON_CONFIG")
            .env("PATRON__DATABASE__URL", &self.database_url);
        command
    }

    pub fn patron(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run patron"))
    }

    /// Runs a command that must succeed.
    pub fn ok(&self, args: &[&str]) -> Run {
        let run = self.patron(args);
        assert_eq!(run.code, 0, "{:?} on {:?} failed:\n{}\n{}", args, self.backend, run.stdout, run.stderr);
        run
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"]).stdout).expect("status --json prints JSON")
    }

    /// Writes a file into the test directory and returns its path as text.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write test file");
        path.display().to_string()
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The rows of a query with one text column, in order (test-only SQL).
    pub fn strings(&self, sql: &str) -> Vec<String> {
        block_on(async {
            let db = Database::connect(&self.database_url).await.expect("connect");
            let backend = db.get_database_backend();
            let rows = db.query_all_raw(Statement::from_string(backend, sql.to_owned())).await.expect("query");
            rows.iter().map(|r| r.try_get_by_index::<String>(0).expect("text column")).collect()
        })
    }

    /// The pages of `table` marked visible to all, and all its pages, as its
    /// statistics last counted them (PostgreSQL).
    pub fn pages_visible_to_all(&self, table: &str) -> [i64; 2] {
        let counted = self.strings(&format!(
            "SELECT relallvisible::bigint::text || ' ' || relpages::bigint::text FROM pg_class WHERE oid = '{table}'::regclass"
        ));
        let numbers: Vec<i64> = counted[0].split(' ').map(|n| n.parse().unwrap()).collect();
        [numbers[0], numbers[1]]
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let (Some(name), Some(admin)) = (&self.postgres_database, postgres_admin_url()) {
            admin_execute(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

fn admin_execute(admin_url: &str, sql: &str) {
    block_on(async {
        let db = Database::connect(admin_url).await.expect("connect to PATRON_TEST_POSTGRES_URL");
        db.execute_unprepared(sql).await.expect("admin statement");
        db.close().await.expect("close");
    });
}

/// The outcome of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `test` once per backend.
pub fn each_backend(test: impl Fn(&TestEnv)) {
    for backend in backends() {
        test(&TestEnv::new(backend));
    }
}

impl TestEnv {
    /// Migrates and adds customers 1..=n (ids and external ids), all consenting,
    /// with addresses c<i>@example.com and the first name `first_name`, an SQL
    /// expression over `i`.
    pub fn numbered_customers(&self, n: u32, first_name: &str) {
        self.ok(&["migrate"]);
        self.execute(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO customers (external_id, email, first_name, marketing_consent, attributes) \
             SELECT CAST(i AS TEXT), 'c' || CAST(i AS TEXT) || '@example.com', {first_name}, TRUE, '{{}}' FROM n"
        ));
    }

    /// Every row of every table as JSON text, one line per table: what a
    /// database dump holds.
    pub fn dump(&self) -> String {
        block_on(async {
            let db = Database::connect(&self.database_url).await.expect("connect");
            let backend = db.get_database_backend();
            let tables = match self.backend {
                Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
                Backend::Postgres => "SELECT CAST(tablename AS TEXT) FROM pg_tables WHERE schemaname = 'public'",
            };
            let names = db.query_all_raw(Statement::from_string(backend, tables)).await.expect("tables");
            let mut dump = String::new();
            for name in names {
                let name: String = name.try_get_by_index(0).expect("table name");
                let select = Statement::from_string(backend, format!("SELECT * FROM \"{name}\""));
                let rows = sea_orm::JsonValue::find_by_statement(select).all(&db).await.expect("rows");
                dump.push_str(&format!("{name}: {}\n", serde_json::Value::from(rows)));
            }
            dump
        })
    }

    /// Plans campaign `name` at the moment `at` (`campaign run --at`);
    /// returns the run id and what the command printed.
    pub fn run_campaign_at(&self, name: &str, at: &str) -> (String, String) {
        let out = self.ok(&["campaign", "run", name, "--at", at]).stdout;
        let id = out.lines().find_map(|line| line.strip_prefix("run ")?.split(' ').next()).map(str::to_owned);
        (id.unwrap_or_else(|| panic!("no run id in:\n{out}")), out)
    }

    /// Sends every message that is due (`patron send`, with an unsubscribe
    /// secret), then records that run `run_id`'s messages went out at
    /// `sent_at`: time driven by the test.
    pub fn send_as_of(&self, run_id: &str, sent_at: &str) {
        let secret = "test-unsubscribe-secret-of-32-bytes-or-more";
        let out = self.command(&["send"]).env("PATRON__UNSUBSCRIBE__SECRET", secret).output().expect("run patron send");
        assert!(out.status.success(), "send failed: {}", String::from_utf8_lossy(&out.stderr));
        self.execute(&format!("UPDATE outbox SET sent_at = '{sent_at}' WHERE run_id = {run_id} AND state = 'sent'"));
    }

    /// Runs test-only SQL (fixtures the commands cannot make yet).
    pub fn execute(&self, sql: &str) {
        block_on(async {
            let db = Database::connect(&self.database_url).await.expect("connect");
            db.execute_unprepared(sql).await.expect("fixture statement");
        })
    }
}

/// A runtime for tests that call the library directly.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// The test's database, opened (and migrated) by the library with the default settings.
pub async fn connect(env: &TestEnv) -> sea_orm::DatabaseConnection {
    let mut settings = patron::config::load(None).expect("default settings").settings;
    settings.database.url = env.database_url.clone();
    patron::db::open(&settings).await.expect("open database")
}
