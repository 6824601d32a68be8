//! The loyalty programme through the binary: accrual, idempotence,
//! redemptions, adjustments, the statement and the tier-upgrade campaign, on
//! hand-computed numbers.

use std::path::Path;

use chrono::{Duration, Utc};

use crate::support::{TestEnv, each_backend};

fn import(env: &TestEnv, what: &str, csv: &str) -> crate::support::Run {
    env.patron(&["import", what, &env.write(&format!("{what}.csv"), csv)])
}

fn ledger(env: &TestEnv) -> Vec<String> {
    env.strings(
        "SELECT c.external_id || ' ' || l.entry_kind || ' ' || CAST(l.points AS TEXT) || ' ' || l.source_key \
         FROM loyalty_ledger l JOIN customers c ON c.id = l.customer_id ORDER BY c.external_id, l.occurred_at, l.id",
    )
}

const ORDERS: &str = "order_id,customer_id,ordered_at,amount,category\n\
    O1,A,2025-03-01,120.50,music\n\
    O2,A,2025-04-01,200.00,books\n\
    O3,B,2025-05-01,80.00,music\n\
    O4,B,2026-01-01,10.00,music\n";

#[test]
fn recompute_earns_once_redemptions_are_checked_and_the_statement_adds_up() {
    each_backend(|env| {
        assert_eq!(import(env, "customers", "customer_id,email\nA,a@example.com\nB,b@example.com\n").code, 0);
        assert_eq!(import(env, "orders", ORDERS).code, 0);
        let settings = [("PATRON__LOYALTY__CATEGORY_MULTIPLIERS__BOOKS", "2")];
        let recompute = |as_of: &str| {
            let mut command = env.command(&["loyalty", "recompute", "--as-of", as_of]);
            command.envs(settings);
            let run = crate::support::Run::from(command.output().unwrap());
            assert_eq!(run.code, 0, "{}", run.stderr);
            run.stdout
        };
        // A: 120 + 200 × 2 = 520 points; 320.50 spent, below silver (500). B: 80 (O4 comes after the date).
        // Each gets the welcome bonus (100, dated at the first order).
        let first = recompute("2025-06-30");
        assert!(
            first.starts_with("2 members (2 new): 600 points earned, 200 bonus, 0 expired; 0 upgrades, 0 downgrades"),
            "{first}"
        );
        assert_eq!(
            ledger(env),
            [
                "A earn 120 order:1",
                "A bonus 100 welcome:1",
                "A earn 400 order:2",
                "B earn 80 order:3",
                "B bonus 100 welcome:2"
            ]
        );
        assert_eq!(
            env.strings("SELECT c.external_id || ' ' || a.tier FROM loyalty_accounts a JOIN customers c ON c.id = a.customer_id ORDER BY 1"),
            ["A member", "B member"]
        );
        if env.backend == crate::support::Backend::Sqlite {
            // A first run sets the ledger's indexes aside while it writes; they are back.
            assert_eq!(
                env.strings(
                    "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'loyalty_ledger' ORDER BY name"
                ),
                [
                    "ix_loyalty_ledger_customer_id_occurred_at",
                    "ix_loyalty_ledger_expires_at",
                    "ix_loyalty_ledger_order_id",
                    "sqlite_autoindex_loyalty_ledger_1"
                ]
            );
        }

        // Importing the orders again and recomputing adds nothing.
        assert_eq!(import(env, "orders", ORDERS).code, 0);
        let again = recompute("2025-06-30");
        assert!(again.contains(": 0 points earned, 0 bonus, 0 expired;") && again.contains("(0 recomputed"), "{again}");
        assert_eq!(ledger(env).len(), 5);

        // A redemption above the balance refuses the whole file.
        let refused = import(
            env,
            "redemptions",
            "redemption_id,customer_id,points,redeemed_at\nR1,A,100,2025-07-01\nR2,B,181,2025-07-01\n",
        );
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert!(
            refused
                .stderr
                .contains("line 3: redemption `R2` of 181 points is above customer `B`'s balance of 180 points"),
            "{}",
            refused.stderr
        );
        assert_eq!(ledger(env).len(), 5, "nothing was imported");
        let accepted =
            import(env, "redemptions", "redemption_id,customer_id,points,redeemed_at\nR1,A,100,2025-07-01\n");
        assert_eq!(
            accepted.stdout,
            format!("{}: 1 redemptions read, 1 new, 0 already imported\n", env.path("redemptions.csv"))
        );
        let again = import(env, "redemptions", "redemption_id,customer_id,points,redeemed_at\nR1,A,100,2025-07-01\n");
        assert!(again.stdout.ends_with("1 redemptions read, 0 new, 1 already imported\n"), "{}", again.stdout);

        // A deduction above the balance is refused; an addition keeps its reason.
        let refused = env.patron(&["loyalty", "adjust", "A", "-521", "--reason", "typo"]);
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert!(
            refused.stderr.contains("an adjustment of -521 points is above customer `A`'s balance of 520 points"),
            "{}",
            refused.stderr
        );
        let added = env.ok(&["loyalty", "adjust", "A", "30", "--reason", "goodwill, ticket 12"]).stdout;
        assert_eq!(added, "customer A: +30 points (goodwill, ticket 12); balance 550 points\n");
        assert_eq!(
            env.strings("SELECT reason FROM loyalty_ledger WHERE entry_kind = 'adjust'"),
            ["goodwill, ticket 12"]
        );
        // The stored balance follows redemptions and adjustments.
        assert_eq!(
            env.strings("SELECT CAST(points AS TEXT) FROM loyalty_accounts ORDER BY customer_id"),
            ["550", "180"]
        );

        // Ten months on, A's first order (120.50) has left the 12-month window:
        // only A's distance to silver moves (500 - 200), without a recompute of
        // A. B's order O4 is now in the past: B is recomputed (500 - 80 - 10).
        let later = recompute("2026-03-02");
        assert!(
            later.contains(": 10 points earned, 0 bonus, 0 expired;") && later.contains("(1 recomputed"),
            "{later}"
        );
        assert_eq!(
            env.strings(
                "SELECT next_tier || ' ' || CAST(CAST(points_to_next_tier * 100 AS BIGINT) AS TEXT) \
                 FROM loyalty_accounts ORDER BY customer_id"
            ),
            ["silver 30000", "silver 41000"]
        );
        // Each recompute is recorded as it commits: the moment it computed
        // for and the members it ran through the rules (the dashboard reads
        // the last one's time).
        assert_eq!(
            env.strings(
                "SELECT SUBSTR(CAST(as_of AS TEXT), 1, 10) || ' ' || CAST(members_recomputed AS TEXT) \
                 FROM loyalty_recomputes ORDER BY id"
            ),
            ["2025-06-30 2", "2025-06-30 0", "2026-03-02 1"]
        );

        let show = env.ok(&["loyalty", "show", "A"]).stdout;
        assert!(show.starts_with("customer A: 550 points\ntier: member since "), "{show}");
        assert!(show.contains("  2025-07-01  redeem       -100  redemption:R1\n"), "{show}");
    });
}

/// Copies a shipped campaign and its templates, with the layouts they extend,
/// into the test's `campaigns/`.
fn ship_campaign(env: &TestEnv, name: &str) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("campaigns");
    std::fs::create_dir_all(env.dir.path().join("campaigns/templates")).unwrap();
    env.write(&format!("campaigns/{name}.toml"), std::fs::read(shipped.join(format!("{name}.toml"))).unwrap());
    for extension in ["html", "txt"] {
        for file in [name, "layout"] {
            let template = format!("templates/{file}.{extension}");
            env.write(&format!("campaigns/{template}"), std::fs::read(shipped.join(&template)).unwrap());
        }
    }
}

#[test]
fn a_member_upgraded_yesterday_is_congratulated_once_and_never_again_for_that_upgrade() {
    each_backend(|env| {
        let day = |days_ago: i64| (Utc::now() - Duration::days(days_ago)).format("%Y-%m-%d").to_string();
        import(env, "customers", "customer_id,email,first_name\nA,a@example.com,Ann\nB,b@example.com,Bob\n");
        // A crosses silver (500) with the order of two days ago; B stays a member.
        let orders = format!(
            "order_id,customer_id,ordered_at,amount\nO1,A,{},300.00\nO2,A,{},250.00\nO3,B,{},100.00\n",
            day(40),
            day(2),
            day(40)
        );
        assert_eq!(import(env, "orders", &orders).code, 0);
        env.ok(&["loyalty", "recompute", "--as-of", &day(3)]);
        let upgrade = env.ok(&["loyalty", "recompute", "--as-of", &day(1)]).stdout;
        assert!(upgrade.contains("; 1 upgrades, 0 downgrades"), "{upgrade}");
        assert_eq!(
            env.strings("SELECT CAST(customer_id AS TEXT) || ' ' || tier || ' ' || tier_direction FROM loyalty_accounts WHERE tier_direction IS NOT NULL"),
            ["1 silver up"]
        );
        ship_campaign(env, "loyalty_tier_upgrade");

        let preview = env.ok(&["campaign", "preview", "loyalty_tier_upgrade"]).stdout;
        assert!(preview.contains("  segment                   1\n"), "{preview}");
        assert!(preview.contains("Subject: You are now silver, Ann!"), "{preview}");
        let first = env.ok(&["campaign", "run", "loyalty_tier_upgrade"]).stdout;
        assert!(first.ends_with("1 message(s), 0 in the control group\n"), "{first}");
        let recipients = "SELECT c.external_id FROM outbox o JOIN customers c ON c.id = o.customer_id";
        assert_eq!(env.strings(recipients), ["A"]);

        // The next days: the nightly recompute changes nothing, the cooldown keeps A out.
        let nightly = env.ok(&["loyalty", "recompute"]).stdout;
        assert!(nightly.contains("; 0 upgrades, 0 downgrades"), "{nightly}");
        // A run is identified by its second: the next one must be a later second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = env.ok(&["campaign", "run", "loyalty_tier_upgrade"]).stdout;
        assert!(second.ends_with("0 message(s), 0 in the control group\n"), "{second}");
        // A week on, the upgrade has left the segment itself (the cooldown no longer matters).
        let eight_days_ago = (Utc::now() - Duration::days(8)).format("%Y-%m-%d %H:%M:%S+00:00");
        env.execute(&format!("UPDATE loyalty_accounts SET tier_since = '{eight_days_ago}'"));
        let later = env.ok(&["campaign", "preview", "loyalty_tier_upgrade"]).stdout;
        assert!(later.contains("  segment                   0\n"), "{later}");
        assert_eq!(env.strings(recipients), ["A"]);
    });
}

/// Every account and ledger entry, by customer and source, without row ids.
fn loyalty_state(env: &TestEnv) -> Vec<String> {
    let mut state = ledger(env);
    state.extend(env.strings(
        "SELECT c.external_id || ' ' || a.tier || ' ' || CAST(a.points AS TEXT) || ' ' || \
         CAST(a.points_expiring_30d AS TEXT) || ' ' || COALESCE(a.next_tier, '-') \
         FROM loyalty_accounts a JOIN customers c ON c.id = a.customer_id ORDER BY c.external_id",
    ));
    state.extend(env.strings(
        "SELECT c.external_id || ' ' || COALESCE(t.from_tier, '-') || ' ' || t.to_tier FROM loyalty_tier_changes t \
         JOIN customers c ON c.id = t.customer_id ORDER BY c.external_id, t.changed_at, t.to_tier",
    ));
    state
}

#[test]
fn a_recompute_shared_in_ranges_by_two_daemons_writes_what_one_recompute_writes() {
    use patron::work::{self, Owner};

    each_backend(|env| {
        for what in ["customers", "orders"] {
            let file = crate::support::example(&format!("{what}.csv")).display().to_string();
            assert_eq!(env.patron(&["import", what, &file]).code, 0);
        }
        let as_of: chrono::DateTime<Utc> = "1997-12-31T00:00:00Z".parse().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let reports = runtime.block_on(async {
            let loaded = patron::config::load(None).expect("default settings");
            let mut settings = loaded.settings;
            settings.database.url = env.database_url.clone();
            let db = patron::db::open(&settings).await.expect("open database");
            let rules = patron::loyalty::engine::Rules::from(&settings.loyalty);
            work::start(&db, work::LOYALTY, None, as_of, 300, as_of).await.unwrap().expect("a new run");
            let worker = |owner: Owner| {
                let (db, rules) = (db.clone(), rules.clone());
                async move {
                    let mut reports = Vec::new();
                    while let Some(range) = work::take(&db, &owner, Duration::minutes(1), Utc::now()).await.unwrap() {
                        reports.push(patron::loyalty::recompute_range(&db, &rules, &range, &owner).await.unwrap());
                    }
                    reports
                }
            };
            let (first, second) = tokio::join!(
                tokio::spawn(worker(Owner::of_this_process())),
                tokio::spawn(worker(Owner::of_this_process()))
            );
            let progress = work::progress(&db, work::LOYALTY, Utc::now()).await.unwrap().expect("unfinished");
            assert_eq!((progress.ranges, progress.done), (8, 8), "2,357 customers in ranges of 300");
            assert!(work::finish_alone(&db, &progress.run, "done", Utc::now()).await.unwrap());
            first.unwrap().into_iter().chain(second.unwrap()).map(|report| report.expect("held")).collect::<Vec<_>>()
        });
        let members: u64 = reports.iter().map(|r| r.members).sum();
        assert_eq!(members, 2357, "every customer with orders is a member, in one range");
        let shared = loyalty_state(env);
        for table in ["loyalty_tier_changes", "loyalty_ledger", "loyalty_accounts"] {
            env.execute(&format!("DELETE FROM {table}"));
        }
        let one = env.patron(&["loyalty", "recompute", "--as-of", "1997-12-31T00:00:00Z"]);
        assert_eq!(one.code, 0, "{}", one.stderr);
        assert_eq!(shared, loyalty_state(env));
    });
}

#[test]
fn a_first_recompute_leaves_the_planner_statistics_of_the_tables_it_filled() {
    each_backend(|env| {
        if env.backend == crate::support::Backend::Sqlite {
            return; // SQLite's planner keeps no statistics patron refreshes
        }
        assert_eq!(import(env, "customers", "customer_id,email\nA,a@example.com\nB,b@example.com\n").code, 0);
        assert_eq!(import(env, "orders", ORDERS).code, 0);
        env.ok(&["loyalty", "recompute", "--as-of", "2026-06-30"]);
        // A table never analysed counts -1 rows; the planner then guesses,
        // and planned the next night's lookups as scans of the whole ledger.
        let counted = env.strings(
            "SELECT relname || ' ' || CAST(reltuples AS BIGINT) FROM pg_class \
             WHERE relname IN ('loyalty_ledger', 'loyalty_accounts', 'loyalty_tier_changes') ORDER BY relname",
        );
        let entries = env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM loyalty_ledger")[0].clone();
        assert_eq!(
            counted,
            ["loyalty_accounts 2".to_owned(), format!("loyalty_ledger {entries}"), "loyalty_tier_changes 2".to_owned()]
        );
    });
}
