//! The staleness guard (`campaigns.max_data_age`): a campaign whose audience
//! reads the orders or the scores is held back on old data, recorded as
//! `stale` with the reason, and planned as the same run once fresh data has
//! landed; one that reads neither plans as usual.

use std::path::Path;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use patron::campaign::plan::Rules;
use patron::campaign::scheduler::{Fired, Scheduler};
use patron::campaign::{Campaign, spec};
use sea_orm::sea_query::{Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::support::{TestEnv, connect, each_backend, runtime};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
}

/// A daily 09:00 UTC campaign with this segment; templates inline.
fn daily(name: &str, segment: &str) -> Campaign {
    let text = format!(
        "schedule = \"0 9 * * *\"\ntimezone = \"UTC\"\n\n[audience]\nwhere = '{segment}'\nholdout = 0\n\n[message]\n\
         from = \"shop@example.com\"\nsubject = \"Hi\"\ntext = \"Hello {{{{ unsubscribe_url }}}}\"\n"
    );
    let topics = ["news", "offers", "loyalty"].map(String::from);
    spec::parse(Path::new(&format!("campaigns/{name}.toml")), &text, &topics).unwrap_or_else(|e| panic!("{e:?}"))
}

const RULES: Rules = Rules {
    default_holdout: 0.0,
    frequency_cap: 0,
    frequency_window: Duration::days(7),
    attribution_window: Duration::days(7),
    max_data_age: Some(Duration::hours(26)),
    max_score_age: Duration::hours(26),
};

/// A load of orders recorded at `at`, as an import or a feed landing records it.
async fn load_at(db: &DatabaseConnection, at: &str) {
    patron::feed::state::record_load(db, "import", "orders", 1, utc(at)).await.expect("record load");
}

/// Each run as `campaign fire-time state`, in fire order.
async fn runs(db: &DatabaseConnection) -> Vec<String> {
    let select = Query::select()
        .columns(["campaign", "scheduled_at", "state"])
        .from("campaign_runs")
        .order_by("scheduled_at", Order::Asc)
        .order_by("campaign", Order::Asc)
        .to_owned();
    let rows = db.query_all(&select).await.expect("runs");
    rows.iter()
        .map(|row| {
            let at: DateTime<Utc> = row.try_get("", "scheduled_at").unwrap();
            let (campaign, state): (String, String) =
                (row.try_get("", "campaign").unwrap(), row.try_get("", "state").unwrap());
            format!("{campaign} {} {state}", at.format("%m-%d %H:%M"))
        })
        .collect()
}

#[test]
fn the_scheduler_holds_a_fire_on_stale_data_and_plans_it_once_a_load_lands_within_the_grace_period() {
    each_backend(|env| {
        env.numbered_customers(5, "'T'");
        // Reads the orders; the greeting reads only the customer record.
        let lapsed = daily("lapsed", "first_name is not null and not ordered_since_received(\"lapsed\")");
        let greet = daily("greet", "first_name is not null");
        runtime().block_on(async {
            let db = connect(env).await;
            load_at(&db, "2026-06-01T03:00:00Z").await;
            let mut scheduler = Scheduler::new(RULES, Duration::hours(6));
            let campaigns = [&lapsed, &greet];
            scheduler.tick(&db, campaigns, utc("2026-06-02T08:00:00Z")).await.unwrap();

            let fired = scheduler.tick(&db, campaigns, utc("2026-06-02T09:00:01Z")).await.unwrap();
            match &fired[..] {
                [
                    Fired::Planned { campaign: greeted, messages: 5, .. },
                    Fired::Stale { campaign, at, staleness, .. },
                ] => {
                    assert_eq!((campaign.as_str(), greeted.as_str()), ("lapsed", "greet"));
                    assert_eq!(*at, utc("2026-06-02T09:00:00Z"));
                    assert_eq!(
                        staleness.to_string(),
                        "data is 30h old, older than campaigns.max_data_age (26h): the newest import or feed was \
                         at 2026-06-01 03:00 UTC"
                    );
                }
                other => panic!("{other:?}"),
            }
            // Tried again at each tick, written and counted once.
            let fired = scheduler.tick(&db, campaigns, utc("2026-06-02T09:00:02Z")).await.unwrap();
            assert!(matches!(&fired[..], [Fired::StillStale { campaign, .. }] if campaign == "lapsed"), "{fired:?}");
            // A restarted scheduler, which never saw the campaign, retries the held fire too.
            let mut restarted = Scheduler::new(RULES, Duration::hours(6));
            let fired = restarted.tick(&db, campaigns, utc("2026-06-02T09:02:00Z")).await.unwrap();
            assert!(matches!(&fired[..], [Fired::StillStale { .. }]), "{fired:?}");

            // The feed lands at 09:04: the fire of 09:00 plans at 09:05, as the same run.
            load_at(&db, "2026-06-02T09:04:00Z").await;
            let fired = restarted.tick(&db, campaigns, utc("2026-06-02T09:05:00Z")).await.unwrap();
            assert!(
                matches!(&fired[..], [Fired::Planned { campaign, at, messages: 5, missed: 0, .. }]
                    if campaign == "lapsed" && *at == utc("2026-06-02T09:00:00Z")),
                "{fired:?}"
            );
            assert!(restarted.tick(&db, campaigns, utc("2026-06-02T09:06:00Z")).await.unwrap().is_empty());

            // Two days on, stale again; the grace period ends before any load:
            // the fire stays recorded as stale and is not tried again.
            let fired = restarted.tick(&db, campaigns, utc("2026-06-04T09:00:01Z")).await.unwrap();
            assert!(matches!(&fired[..], [Fired::Planned { .. }, Fired::Stale { .. }]), "{fired:?}");
            let after_grace = restarted.tick(&db, campaigns, utc("2026-06-04T15:00:02Z")).await.unwrap();
            assert!(after_grace.is_empty(), "{after_grace:?}");
            // The next fire on fresh data plans as usual.
            load_at(&db, "2026-06-05T08:00:00Z").await;
            let fired = restarted.tick(&db, campaigns, utc("2026-06-05T09:00:01Z")).await.unwrap();
            assert!(
                matches!(&fired[..], [_, Fired::Planned { campaign, missed: 0, .. }] if campaign == "lapsed"),
                "{fired:?}"
            );
            assert_eq!(
                runs(&db).await,
                [
                    "greet 06-02 09:00 planned",
                    "lapsed 06-02 09:00 planned",
                    "greet 06-04 09:00 planned",
                    "lapsed 06-04 09:00 stale",
                    "greet 06-05 09:00 planned",
                    "lapsed 06-05 09:00 planned",
                ]
            );
        });
        let held = env.strings(
            "SELECT detail FROM campaign_runs WHERE campaign = 'lapsed' AND state = 'planned' AND detail IS NOT NULL",
        );
        assert_eq!(held.len(), 1, "{held:?}");
        assert!(held[0].starts_with("held back until "), "{held:?}");
        assert!(held[0].ends_with(": data is 30h old, older than campaigns.max_data_age (26h): the newest import or feed was at 2026-06-01 03:00 UTC"), "{held:?}");
        // Five messages for each of the five runs planned.
        assert_eq!(env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM outbox"), ["25"]);
    });
}

#[test]
fn a_database_with_no_load_recorded_holds_back_a_campaign_on_the_orders_while_the_guard_is_on() {
    each_backend(|env| {
        env.numbered_customers(3, "'T'");
        let lapsed = daily("lapsed", "not ordered_since_received(\"lapsed\")");
        runtime().block_on(async {
            let db = connect(env).await;
            let mut scheduler = Scheduler::new(RULES, Duration::hours(6));
            scheduler.tick(&db, [&lapsed], utc("2026-06-02T08:00:00Z")).await.unwrap();
            let fired = scheduler.tick(&db, [&lapsed], utc("2026-06-02T09:00:00Z")).await.unwrap();
            match &fired[..] {
                [Fired::Stale { staleness, .. }] => assert_eq!(
                    staleness.to_string(),
                    "no import or feed has been recorded, so the data's age is unknown (campaigns.max_data_age is 26h)"
                ),
                other => panic!("{other:?}"),
            }
            // Without the guard, the same fire of the next day plans.
            let mut unguarded = Scheduler::new(Rules { max_data_age: None, ..RULES }, Duration::hours(6));
            unguarded.tick(&db, [&lapsed], utc("2026-06-03T08:00:00Z")).await.unwrap();
            let fired = unguarded.tick(&db, [&lapsed], utc("2026-06-03T09:00:00Z")).await.unwrap();
            assert!(matches!(&fired[..], [Fired::Planned { messages: 3, .. }]), "{fired:?}");
        });
    });
}

/// The project's shipped campaigns folder.
fn shipped() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("campaigns").display().to_string()
}

#[test]
fn a_due_win_back_on_an_old_import_is_held_back_with_its_reason_and_runs_once_a_feed_lands() {
    each_backend(|env| {
        for what in ["customers", "orders"] {
            env.ok(&["import", what, &crate::support::example(&format!("{what}.csv")).display().to_string()]);
        }
        env.ok(&["train", "--as-of", "1997-09-30", "--horizon", "91d", "--algorithm", "logistic"]);
        env.ok(&["score", "--as-of", "1997-09-30"]);
        std::fs::create_dir(env.dir.path().join("drop")).unwrap();
        let config = env.write(
            "patron.toml",
            format!(
                "campaigns_dir = \"{}\"\n\n[campaigns]\nmax_data_age = \"26h\"\n\n[[feeds]]\nname = \"shop\"\n\
                 kind = \"folder\"\npath = \"{}\"\nsettle = \"0s\"\n",
                shipped(),
                env.path("drop")
            ),
        );
        let patron = |args: &[&str]| {
            let mut all = vec!["--config", config.as_str()];
            all.extend_from_slice(args);
            env.patron(&all)
        };

        // The imports were 30 hours before the win-back's fire; the scores are fresh.
        let at = Utc::now().trunc_subsecs(0);
        let imported = at - Duration::hours(30);
        env.execute(&format!("UPDATE data_loads SET loaded_at = '{}'", imported.to_rfc3339()));
        let reason = format!(
            "data is 30h old, older than campaigns.max_data_age (26h): the newest import or feed was at {}",
            imported.format("%Y-%m-%d %H:%M UTC")
        );

        let preview = patron(&["campaign", "preview", "winback"]);
        assert_eq!(preview.code, 0, "{}", preview.stderr);
        let data_line = preview.stdout.lines().find(|l| l.starts_with("data: ")).unwrap_or_default().to_owned();
        assert!(
            data_line
                .starts_with(&format!("data: newest import or feed at {} (30h", imported.format("%Y-%m-%d %H:%M UTC"))),
            "{}",
            preview.stdout
        );
        assert!(data_line.contains("; last scoring at "), "{data_line}");
        assert!(
            preview.stdout.contains("staleness guard: a run would be held back: data is 30h"),
            "{}",
            preview.stdout
        );

        let at_text = at.to_rfc3339();
        let held = patron(&["campaign", "run", "winback", "--at", &at_text]);
        assert_eq!(held.code, 75, "{}\n{}", held.stdout, held.stderr);
        assert!(
            held.stderr.contains(&format!(
                "campaign `winback` not planned: {reason}; run 1 is recorded as stale. Once fresh data has landed (an \
                 import or a feed), run it again: `--at {at_text}` plans this same fire"
            )),
            "{}",
            held.stderr
        );
        assert_eq!(env.strings("SELECT state || ': ' || detail FROM campaign_runs"), [format!("stale: {reason}")]);
        assert_eq!(env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM outbox"), ["0"]);
        let list = patron(&["campaign", "list"]).stdout;
        let winback = list.lines().find(|l| l.starts_with("winback ")).unwrap_or_default();
        assert!(winback.ends_with(" (stale)"), "{list}");
        // Run again while the data is still old: held back, nothing more written.
        assert_eq!(patron(&["campaign", "run", "winback", "--at", &at_text]).code, 75);
        assert_eq!(env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM campaign_runs"), ["1"]);

        // The birthday greeting reads only the customer records: the guard lets it through.
        let birthday = patron(&["campaign", "run", "birthday", "--at", &at_text]);
        assert_eq!(birthday.code, 0, "{}", birthday.stderr);
        assert!(birthday.stdout.contains(" planned in "), "{}", birthday.stdout);

        // The shop's feed lands a late order; the same fire now plans its audience.
        env.write(
            "drop/orders_late.csv",
            "order_id,customer_id,ordered_at,amount,currency,items,category\nO99999,C0001,1998-06-30,10.00,USD,1,pop\n",
        );
        let fed = patron(&["feed", "run", "shop"]);
        assert_eq!(fed.code, 0, "{}\n{}", fed.stdout, fed.stderr);
        let planned = patron(&["campaign", "run", "winback", "--at", &at_text]);
        assert_eq!(planned.code, 0, "{}", planned.stderr);
        let messages: u64 = planned
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("run 1 planned in ")?.split(": ").nth(1)?.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{}", planned.stdout));
        assert!(messages > 0, "{}", planned.stdout);
        let winback = env.strings("SELECT state || ' ' || detail FROM campaign_runs WHERE campaign = 'winback'");
        assert_eq!(winback.len(), 1, "{winback:?}");
        assert!(winback[0].starts_with("planned held back until ") && winback[0].ends_with(&reason), "{winback:?}");
        assert_eq!(
            env.strings(
                "SELECT CAST(COUNT(*) AS TEXT) FROM outbox o JOIN campaign_runs r ON r.id = o.run_id \
                 WHERE r.campaign = 'winback' AND o.state = 'planned'"
            ),
            [messages.to_string()]
        );
        let preview = patron(&["campaign", "preview", "winback"]).stdout;
        assert!(preview.contains("staleness guard: fresh enough (data within campaigns.max_data_age 26h, scores within daemon.max_score_age 26h)"), "{preview}");
    });
}

#[test]
fn a_max_data_age_that_is_not_a_duration_or_is_zero_is_refused_with_its_key() {
    let env = TestEnv::new(crate::support::Backend::Sqlite);
    let cases = [
        ("26", "`campaigns.max_data_age` (from the environment): `26` is not a duration such as 30d, 13w, 6h"),
        ("0s", "`campaigns.max_data_age` (from the environment): must be longer than 0s; leave it empty for no guard"),
    ];
    for (value, expected) in cases {
        let run = env.command(&["status"]).env("PATRON__CAMPAIGNS__MAX_DATA_AGE", value).output().unwrap();
        let run = crate::support::Run::from(run);
        assert_eq!(run.code, 2, "{value}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{value}: expected {expected:?} in {}", run.stderr);
    }
    let config = env.ok(&["config"]).stdout;
    assert!(config.contains("max_data_age = \"\"\n"), "{config}");
}
