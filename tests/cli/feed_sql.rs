//! The sql feed (`kind = "sql"`) against real source servers: a PostgreSQL
//! database on the test server (`PATRON_TEST_POSTGRES_URL`), a MariaDB
//! database (`PATRON_TEST_MARIADB_URL`, e.g. `mysql://root@127.0.0.1:3306/test`,
//! which `.ci/run` sets) and an SQLite file. Each test makes a shop database
//! of its own with customers and orders that carry an `updated_at`, and
//! drops it at the end. Without a server's variable its tests are skipped
//! with a note; with it, a server that does not answer fails them.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor};

use crate::support::{Run, TestEnv, each_backend};

/// The engines a shop's database runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgres,
    MariaDb,
}

/// A shop's database on a test server, created for one test and dropped after it.
struct Shop {
    engine: Engine,
    admin_url: String,
    /// The shop database's URL, without a password.
    url: url::Url,
    name: String,
    /// A MariaDB account with a password, which the feed reads as.
    reader: Option<(String, String)>,
}

static SHOPS: AtomicU32 = AtomicU32::new(0);

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

/// Runs each statement on the database at `url`.
fn execute_on(engine: Engine, url: &str, statements: &[String]) {
    block_on(async {
        match engine {
            Engine::Postgres => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
                for statement in statements {
                    conn.execute(sqlx::raw_sql(AssertSqlSafe(statement.as_str()))).await.expect(statement);
                }
                conn.close().await.unwrap();
            }
            Engine::MariaDb => {
                let mut conn = sqlx::MySqlConnection::connect(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
                for statement in statements {
                    conn.execute(sqlx::raw_sql(AssertSqlSafe(statement.as_str()))).await.expect(statement);
                }
                conn.close().await.unwrap();
            }
        }
    })
}

impl Shop {
    /// A new shop database with its tables, or `None` (with a note) when
    /// the engine's server is not configured.
    fn create(engine: Engine) -> Option<Shop> {
        let variable = match engine {
            Engine::Postgres => "PATRON_TEST_POSTGRES_URL",
            Engine::MariaDb => "PATRON_TEST_MARIADB_URL",
        };
        let Some(admin_url) = std::env::var(variable).ok().filter(|url| !url.is_empty()) else {
            eprintln!("skipped: {variable} is not set (.ci/run sets it)");
            return None;
        };
        let name = format!(
            "shop_{}_{}_{}",
            std::process::id(),
            SHOPS.fetch_add(1, Ordering::SeqCst),
            chrono::Utc::now().timestamp_subsec_nanos()
        );
        execute_on(engine, &admin_url, &[format!("CREATE DATABASE {name}")]);
        let mut url = url::Url::parse(&admin_url).expect("a URL");
        url.set_path(&format!("/{name}"));
        let mut shop = Shop { engine, admin_url, url, name, reader: None };
        shop.execute(&shop.schema());
        if engine == Engine::MariaDb {
            shop.add_reader();
        }
        Some(shop)
    }

    /// Different time types on each engine, all of which serve as watermarks.
    fn schema(&self) -> Vec<String> {
        let statements: &[&str] = match self.engine {
            Engine::Postgres => &[
                "CREATE TABLE shop_customers (id integer PRIMARY KEY, email text NOT NULL, first_name varchar(100), \
                 vip boolean, updated_at timestamptz NOT NULL)",
                "CREATE TABLE shop_orders (id bigint PRIMARY KEY, customer_id integer NOT NULL, \
                 ordered_at timestamptz NOT NULL, total numeric(10,2) NOT NULL, category text, \
                 updated_at timestamp NOT NULL)",
            ],
            Engine::MariaDb => &[
                "CREATE TABLE shop_customers (id INT PRIMARY KEY, email VARCHAR(200) NOT NULL, \
                 first_name VARCHAR(100), vip BOOLEAN, updated_at DATETIME(6) NOT NULL)",
                "CREATE TABLE shop_orders (id BIGINT PRIMARY KEY, customer_id INT NOT NULL, \
                 ordered_at DATETIME NOT NULL, total DECIMAL(10,2) NOT NULL, category VARCHAR(40), \
                 updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
            ],
        };
        statements.iter().map(|s| s.to_string()).collect()
    }

    /// A MariaDB account that may only read the shop, with a password.
    fn add_reader(&mut self) {
        let user = format!("r{}", &self.name[5..]);
        let password = format!("pw-{}", self.name);
        self.execute_as_admin(&[
            format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"),
            format!("GRANT SELECT ON {}.* TO '{user}'@'%'", self.name),
        ]);
        self.reader = Some((user, password));
    }

    fn execute(&self, statements: &[String]) {
        execute_on(self.engine, self.url.as_str(), statements);
    }

    fn execute_as_admin(&self, statements: &[String]) {
        execute_on(self.engine, &self.admin_url, statements);
    }

    /// The URL the feed reads, through `port` when given (a proxy).
    fn feed_url(&self, port: Option<u16>) -> String {
        let mut url = self.url.clone();
        if let Some((user, _)) = &self.reader {
            url.set_username(user).unwrap();
        }
        if let Some(port) = port {
            url.set_host(Some(OTHER_LOOPBACK)).unwrap();
            url.set_port(Some(port)).unwrap();
        }
        url.to_string()
    }

    fn server_address(&self) -> String {
        let default_port = match self.engine {
            Engine::Postgres => 5432,
            Engine::MariaDb => 3306,
        };
        format!("{}:{}", self.url.host_str().unwrap(), self.url.port().unwrap_or(default_port))
    }

    /// `patron feed run shop --json` with the feed reading through `port`.
    fn run(&self, env: &TestEnv, port: Option<u16>) -> Run {
        let config = env.write("patron.toml", feed_settings(&self.feed_url(port)));
        let mut command = env.command(&["--config", &config, "feed", "run", "shop", "--json"]);
        if let Some((_, password)) = &self.reader {
            command.env("PATRON_FEED_SHOP_PASSWORD", password);
        }
        Run::from(command.output().expect("run patron"))
    }

    /// A run that must land; what it landed.
    fn landed(&self, env: &TestEnv) -> Value {
        let run = self.run(env, None);
        assert_eq!(run.code, 0, "{:?} from {:?}:\n{}\n{}", env.backend, self.engine, run.stdout, run.stderr);
        if let Some((_, password)) = &self.reader {
            assert!(!run.stderr.contains(password.as_str()), "the password was printed:\n{}", run.stderr);
        }
        serde_json::from_str(&run.stdout).expect("feed run --json prints JSON")
    }

    fn customers(&self, rows: &[(u32, &str, &str)]) {
        let values: Vec<String> = rows
            .iter()
            .map(|(id, first_name, updated_at)| {
                format!("({id}, 'c{id}@example.com', '{first_name}', {}, '{updated_at}')", id % 2 == 0)
            })
            .collect();
        self.execute(&[format!(
            "INSERT INTO shop_customers (id, email, first_name, vip, updated_at) VALUES {}",
            values.join(", ")
        )]);
    }

    /// Orders `ids` of customer `customer`, each of 10.50 plus its id.
    fn orders(&self, ids: std::ops::RangeInclusive<u32>, customer: u32, updated_at: &str) {
        let values: Vec<String> = ids
            .map(|id| format!("({id}, {customer}, '2026-02-01 12:00:00', {id}.50, 'books', '{updated_at}')"))
            .collect();
        self.execute(&[format!(
            "INSERT INTO shop_orders (id, customer_id, ordered_at, total, category, updated_at) VALUES {}",
            values.join(", ")
        )]);
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        let mut statements = vec![match self.engine {
            Engine::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            Engine::MariaDb => format!("DROP DATABASE IF EXISTS {}", self.name),
        }];
        if let Some((user, _)) = &self.reader {
            statements.push(format!("DROP USER IF EXISTS '{user}'@'%'"));
        }
        self.execute_as_admin(&statements);
    }
}

/// A feed `shop` on `url` with a customers and an orders query.
fn feed_settings(url: &str) -> String {
    format!(
        "[[feeds]]\nname = \"shop\"\nkind = \"sql\"\nurl = \"{url}\"\nbatch_size = 500\n[feeds.queries]\n\
         customers = \"select id as customer_id, email, first_name, vip, updated_at from shop_customers \
         where updated_at > :since order by updated_at, id\"\n\
         orders = \"select id as order_id, customer_id, ordered_at, total as amount, category, updated_at \
         from shop_orders where updated_at > :since order by updated_at, id\"\n"
    )
}

fn landed(table: &str, rows: u64, written: u64) -> Value {
    json!({"table": table, "rows": rows, "written": written, "source": format!("query {table}")})
}

fn outcome(customers: (u64, u64), orders: (u64, u64)) -> Value {
    json!({
        "landed": [landed("customers", customers.0, customers.1), landed("orders", orders.0, orders.1)],
        "notes": [],
        "failed": [],
    })
}

/// Patron's customers: external id, email, first name.
fn patron_customers(env: &TestEnv) -> Vec<String> {
    env.strings(
        "SELECT external_id || ' ' || email || ' ' || COALESCE(first_name, '') FROM customers \
         ORDER BY CAST(external_id AS INTEGER)",
    )
}

/// Patron's orders: external id, customer, amount in cents.
fn patron_orders(env: &TestEnv) -> Vec<String> {
    env.strings(
        "SELECT o.external_id || ' ' || c.external_id || ' ' || CAST(o.amount_cents AS TEXT) \
         FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY CAST(o.external_id AS INTEGER)",
    )
}

fn watermarks(env: &TestEnv) -> Vec<String> {
    env.strings("SELECT table_name || ' ' || watermark FROM feed_watermarks WHERE feed = 'shop' ORDER BY table_name")
}

/// The database as a dump shows it, but for the tables that record runs
/// and loads (`feeds`, and `data_loads` unless `with_loads`).
fn data(env: &TestEnv, with_loads: bool) -> String {
    env.dump()
        .lines()
        .filter(|line| !line.starts_with("feeds:") && (with_loads || !line.starts_with("data_loads:")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// First run, an incremental run, a run with nothing new, and rows deleted in the source.
fn new_and_changed_rows_arrive_and_only_those(engine: Engine) {
    each_backend(|env| {
        let Some(shop) = Shop::create(engine) else { return };
        shop.customers(&[
            (1, "Ann", "2026-03-01 10:00:00"),
            (2, "O''Neil, \"Jr\"", "2026-03-01 10:00:01.250000"),
            (3, "Cy", "2026-03-01 10:00:02"),
        ]);
        shop.orders(1..=4, 1, "2026-03-01 11:00:00");
        shop.orders(5..=5, 3, "2026-03-01 11:30:00");

        assert_eq!(shop.landed(env), outcome((3, 3), (5, 5)), "first run from {engine:?} on {:?}", env.backend);
        assert_eq!(
            patron_customers(env),
            ["1 c1@example.com Ann", "2 c2@example.com O'Neil, \"Jr\"", "3 c3@example.com Cy"]
        );
        assert_eq!(patron_orders(env), ["1 1 150", "2 1 250", "3 1 350", "4 1 450", "5 3 550"]);
        let vip = env.strings("SELECT CAST(attributes AS TEXT) FROM customers WHERE external_id = '2'");
        assert!(vip[0].contains("\"vip\"") && vip[0].contains("\"true\""), "{vip:?}");
        assert_eq!(watermarks(env), ["customers 2026-03-01T10:00:02.000000Z", "orders 2026-03-01T11:30:00.000000Z"]);

        // Customer 2 changes address, customer 4 and their order arrive, order 1 is corrected.
        shop.execute(&[
            "UPDATE shop_customers SET email = 'new2@example.com', updated_at = '2026-03-02 09:00:00' WHERE id = 2"
                .into(),
            "UPDATE shop_orders SET total = 99.00, updated_at = '2026-03-02 09:05:00' WHERE id = 1".into(),
        ]);
        shop.customers(&[(4, "Dee", "2026-03-02 09:01:00")]);
        shop.orders(6..=6, 4, "2026-03-02 09:02:00");
        assert_eq!(shop.landed(env), outcome((2, 2), (2, 2)), "only the new and changed rows are read");
        assert_eq!(
            patron_customers(env),
            [
                "1 c1@example.com Ann",
                "2 new2@example.com O'Neil, \"Jr\"",
                "3 c3@example.com Cy",
                "4 c4@example.com Dee"
            ]
        );
        assert_eq!(patron_orders(env), ["1 1 9900", "2 1 250", "3 1 350", "4 1 450", "5 3 550", "6 4 650"]);
        assert_eq!(watermarks(env), ["customers 2026-03-02T09:01:00.000000Z", "orders 2026-03-02T09:05:00.000000Z"]);

        // Deleting in the source deletes nothing in patron, and a run with nothing new changes nothing.
        let before = data(env, false);
        shop.execute(&[
            "DELETE FROM shop_orders WHERE id = 5".into(),
            "DELETE FROM shop_customers WHERE id = 3".into(),
        ]);
        assert_eq!(shop.landed(env), outcome((0, 0), (0, 0)));
        assert_eq!(data(env, false), before);
        assert_eq!(patron_orders(env).len(), 6);
        // The run still counts as a load: patron is as fresh as the source.
        let loads =
            env.strings("SELECT source || ' ' || table_name || ' ' || CAST(rows AS TEXT) FROM data_loads ORDER BY id");
        assert_eq!(loads.len(), 6, "{loads:?}");
        assert_eq!(loads[4..], ["feed shop customers 0", "feed shop orders 0"]);
    });
}

#[test]
fn postgres_source_new_and_changed_rows_arrive_and_only_those() {
    new_and_changed_rows_arrive_and_only_those(Engine::Postgres);
}

#[test]
fn mariadb_source_new_and_changed_rows_arrive_and_only_those() {
    new_and_changed_rows_arrive_and_only_those(Engine::MariaDb);
}

/// The loopback address of this module's own listeners. Other tests take
/// a port on 127.0.0.1 by binding port 0 and letting it go before their
/// server binds it; a listener of ours given that port there would receive
/// their connections (and cut them). On 127.0.0.2 it never can.
const OTHER_LOOPBACK: &str = "127.0.0.2";

/// A TCP proxy to the source that cuts the connection once the server has
/// sent `limit` bytes: a source stopped in the middle of a run.
struct CuttingProxy {
    port: u16,
    relay: JoinHandle<u64>,
}

impl CuttingProxy {
    fn start(server: String, limit: u64) -> CuttingProxy {
        let listener = TcpListener::bind((OTHER_LOOPBACK, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let relay = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let client = loop {
                match listener.accept() {
                    Ok((client, _)) => break client,
                    Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                    Err(e) => panic!("patron never connected to the proxy: {e}"),
                }
            };
            client.set_nonblocking(false).unwrap();
            let upstream = TcpStream::connect(&server).unwrap();
            let (mut from_client, mut to_server) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_client, &mut to_server);
            });
            let (mut from_server, mut to_client) = (upstream, client);
            let mut sent = 0;
            let mut buffer = [0; 8192];
            while sent < limit {
                let read = match from_server.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => read.min((limit - sent) as usize),
                };
                if to_client.write_all(&buffer[..read]).is_err() {
                    break;
                }
                sent += read as u64;
            }
            let _ = to_client.shutdown(Shutdown::Both);
            let _ = from_server.shutdown(Shutdown::Both);
            sent
        });
        CuttingProxy { port, relay }
    }

    /// The bytes the server sent through before the cut.
    fn relayed(self) -> u64 {
        self.relay.join().expect("the proxy's thread")
    }
}

fn a_source_stopped_mid_run_leaves_patron_unchanged(engine: Engine) {
    each_backend(|env| {
        let Some(shop) = Shop::create(engine) else { return };
        shop.customers(&[(1, "Ann", "2026-03-01 10:00:00"), (2, "Bo", "2026-03-01 10:00:00")]);
        shop.orders(1..=10, 1, "2026-03-01 11:00:00");
        assert_eq!(shop.landed(env), outcome((2, 2), (10, 10)));
        let before = data(env, true);
        let marks = watermarks(env);

        // New customers and a result of orders far larger than the cut.
        let customers: Vec<(u32, &str, &str)> = (3..=20).map(|id| (id, "New", "2026-03-02 08:00:00")).collect();
        shop.customers(&customers);
        shop.orders(11..=3010, 3, "2026-03-02 09:00:00");
        let limit = 32 * 1024;
        let proxy = CuttingProxy::start(shop.server_address(), limit);
        let run = shop.run(env, Some(proxy.port));
        assert_eq!(proxy.relayed(), limit, "the connection was cut before the run ended");
        assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("feed shop: nothing of this run landed: query orders:"),
            "the failure names the query the source stopped in:\n{}",
            run.stderr
        );
        assert_eq!(data(env, true), before, "the customers of the failed run were rolled back with the orders");
        assert_eq!(watermarks(env), marks);
        let listed: Value =
            serde_json::from_str(&env.ok(&["--config", &env.path("patron.toml"), "feed", "list", "--json"]).stdout)
                .unwrap();
        let error = listed[0]["last_error"].as_str().expect("the failure is recorded");
        assert!(error.contains("query orders"), "{error}");

        // The next run through a healthy connection lands it all.
        assert_eq!(shop.landed(env), outcome((18, 18), (3000, 3000)));
        assert_eq!(patron_customers(env).len(), 20);
        assert_eq!(patron_orders(env).len(), 3010);
        assert_eq!(watermarks(env), ["customers 2026-03-02T08:00:00.000000Z", "orders 2026-03-02T09:00:00.000000Z"]);
    });
}

#[test]
fn postgres_source_stopped_mid_run_leaves_patron_unchanged() {
    a_source_stopped_mid_run_leaves_patron_unchanged(Engine::Postgres);
}

#[test]
fn mariadb_source_stopped_mid_run_leaves_patron_unchanged() {
    a_source_stopped_mid_run_leaves_patron_unchanged(Engine::MariaDb);
}

#[test]
fn a_bad_row_refuses_the_whole_run_and_names_the_row() {
    each_backend(|env| {
        let Some(shop) = Shop::create(Engine::Postgres) else { return };
        shop.customers(&[(1, "Ann", "2026-03-01 10:00:00")]);
        shop.orders(1..=3, 1, "2026-03-01 11:00:00");
        shop.execute(&["UPDATE shop_orders SET total = -2.00 WHERE id = 2".into()]);
        env.ok(&["migrate"]);
        let before = data(env, true);
        let run = shop.run(env, None);
        assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(
                "feed shop: nothing of this run landed: query orders: 1 problem(s) in its rows:\n  row 2, column \
                 `amount`: amount must not be negative"
            ),
            "{}",
            run.stderr
        );
        assert_eq!(data(env, true), before, "the customers of the refused run did not land either");
        assert!(watermarks(env).is_empty());
    });
}

/// Every PostgreSQL type a feed reads arrives as an import file would have
/// it: dates, times with fractions, flags, labels, domains, integers,
/// floating-point numbers and numerics of any scale, and NULL as nothing.
#[test]
fn postgres_source_values_of_every_readable_type_arrive_as_an_import_file_has_them() {
    each_backend(|env| {
        let Some(shop) = Shop::create(Engine::Postgres) else { return };
        shop.execute(&[
            "CREATE TYPE tier AS ENUM ('bronze', 'gold')".into(),
            "CREATE DOMAIN shop_code AS varchar(8) CHECK (VALUE <> '')".into(),
            "CREATE TABLE shop_people (id bigint PRIMARY KEY, email text NOT NULL, birthday date, \
             signed_up_at timestamp(6), marketing_consent boolean, tier tier, code shop_code, visits smallint, \
             score real, ratio double precision, balance numeric, updated_at timestamptz NOT NULL)"
                .into(),
            "INSERT INTO shop_people VALUES \
             (1, 'a@example.com', '1985-02-28', '2024-07-01 08:15:30.25', true, 'gold', 'X1', -3, 1.5, 0.125, \
              123456789.000, '2026-03-01 10:00:00+00'), \
             (2, 'b@example.com', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, -0.05, \
              '2026-03-01 10:00:00.5+00')"
                .into(),
        ]);
        let query = "select id as customer_id, email, birthday, signed_up_at, marketing_consent, tier, code, \
                     visits, score, ratio, balance, updated_at from shop_people where updated_at > :since";
        let settings = format!(
            "[[feeds]]\nname = \"shop\"\nkind = \"sql\"\nurl = \"{}\"\n[feeds.queries]\ncustomers = \"{query}\"\n",
            shop.feed_url(None)
        );
        let config = env.write("patron.toml", settings);
        env.ok(&["--config", &config, "feed", "run", "shop"]);

        let signed_up = match env.backend {
            crate::support::Backend::Sqlite => "strftime('%Y-%m-%d %H:%M:%f', signed_up_at)",
            crate::support::Backend::Postgres => "to_char(signed_up_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')",
        };
        let rows = env.strings(&format!(
            "SELECT external_id || ' ' || COALESCE(CAST(birthday AS TEXT), '-') || ' ' || COALESCE({signed_up}, '-') \
             || ' ' || CASE WHEN marketing_consent THEN 'yes' ELSE 'no' END FROM customers ORDER BY external_id"
        ));
        assert_eq!(rows, ["1 1985-02-28 2024-07-01 08:15:30.250 yes", "2 - - no"]);
        let attributes: Vec<Value> = env
            .strings("SELECT CAST(attributes AS TEXT) FROM customers ORDER BY external_id")
            .iter()
            .map(|text| serde_json::from_str(text).expect("attributes are JSON"))
            .collect();
        assert_eq!(
            attributes,
            [
                json!({"tier": "gold", "code": "X1", "visits": "-3", "score": "1.5", "ratio": "0.125",
                       "balance": "123456789.000"}),
                json!({"balance": "-0.05"}),
            ]
        );
        assert_eq!(
            env.strings("SELECT table_name || ' ' || watermark FROM feed_watermarks WHERE feed = 'shop'"),
            ["customers 2026-03-01T10:00:00.500000Z"]
        );
    });
}

#[test]
fn a_source_that_is_down_is_an_error_naming_it() {
    each_backend(|env| {
        let closed = TcpListener::bind((OTHER_LOOPBACK, 0)).unwrap().local_addr().unwrap().port();
        let url = format!("postgres://shop@{OTHER_LOOPBACK}:{closed}/shop");
        let config = env.write("patron.toml", feed_settings(&url));
        env.ok(&["migrate"]);
        let run = env.patron(&["--config", &config, "feed", "run", "shop"]);
        assert_eq!(run.code, 1);
        assert!(run.stderr.contains(&format!("feed shop: cannot read the source {url}")), "{}", run.stderr);
        assert!(watermarks(env).is_empty());
    });
}

#[test]
fn an_sqlite_source_feeds_its_rows_and_then_only_the_changed_ones() {
    each_backend(|env| {
        let shop = env.dir.path().join("shop.db");
        let db = rusqlite::Connection::open(&shop).unwrap();
        db.execute_batch(
            "CREATE TABLE shop_customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, first_name TEXT, \
             vip BOOLEAN, updated_at DATETIME NOT NULL);
             CREATE TABLE shop_orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, ordered_at DATETIME, \
             total REAL NOT NULL, category TEXT, updated_at DATETIME NOT NULL);
             INSERT INTO shop_customers VALUES (1, 'c1@example.com', 'Ann', 1, '2026-03-01 10:00:00'),
                                               (2, 'c2@example.com', NULL, 0, '2026-03-01 10:00:05');
             INSERT INTO shop_orders VALUES (1, 1, '2026-02-01 12:00:00', 19.99, 'books', '2026-03-01 11:00:00');",
        )
        .unwrap();
        let config = env.write("patron.toml", feed_settings(&format!("sqlite://{}", shop.display())));
        let run = |env: &TestEnv| -> Value {
            let out = env.ok(&["--config", &config, "feed", "run", "shop", "--json"]).stdout;
            serde_json::from_str(&out).unwrap()
        };
        assert_eq!(run(env), outcome((2, 2), (1, 1)));
        assert_eq!(patron_customers(env), ["1 c1@example.com Ann", "2 c2@example.com "]);
        assert_eq!(patron_orders(env), ["1 1 1999"]);
        let ordered = env.strings("SELECT CAST(ordered_at AS TEXT) FROM orders");
        assert!(ordered[0].starts_with("2026-02-01") && ordered[0].contains("12:00:00"), "{ordered:?}");
        db.execute_batch(
            "UPDATE shop_orders SET total = 5, updated_at = '2026-03-03 08:00:00' WHERE id = 1;
             INSERT INTO shop_orders VALUES (2, 2, '2026-03-02 12:00:00', 7.5, NULL, '2026-03-03 08:00:00.5');",
        )
        .unwrap();
        assert_eq!(run(env), outcome((0, 0), (2, 2)));
        assert_eq!(patron_orders(env), ["1 1 500", "2 2 750"]);
        assert_eq!(watermarks(env), ["customers 2026-03-01T10:00:05.000000Z", "orders 2026-03-03T08:00:00.500000Z"]);

        // A query without its watermark, or a row without a time of change, lands nothing.
        let before = data(env, true);
        db.execute_batch("UPDATE shop_customers SET first_name = 'Zed', updated_at = '2026-03-04 08:00:00'").unwrap();
        let without = feed_settings(&format!("sqlite://{}", shop.display()))
            .replace(", updated_at from shop_orders", " from shop_orders");
        let run = env.patron(&["--config", &env.write("patron.toml", without), "feed", "run", "shop"]);
        assert_eq!(run.code, 1);
        assert!(run.stderr.contains("query orders: the query returns no `updated_at` column"), "{}", run.stderr);
        let null_time = feed_settings(&format!("sqlite://{}", shop.display())).replace(
            "category, updated_at from shop_orders where updated_at > :since",
            "category, NULL AS updated_at from shop_orders where updated_at > :since or id = 1",
        );
        let run = env.patron(&["--config", &env.write("patron.toml", null_time), "feed", "run", "shop"]);
        assert_eq!(run.code, 1);
        assert!(run.stderr.contains("query orders: row 1: `updated_at` is empty"), "{}", run.stderr);
        assert_eq!(data(env, true), before, "the changed customers did not land without the orders");
    });
}
