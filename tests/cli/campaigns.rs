//! Campaign files, planning and the scheduler against real databases.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use patron::campaign::plan::{self, Outcome, Rules};
use patron::campaign::scheduler::{Fired, Scheduler};
use patron::campaign::{Campaign, spec};
use patron::segment::{Expr, Field};

use crate::support::{TestEnv, connect, each_backend, runtime};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
}

/// The topics of `config/patron.toml`.
fn default_topics() -> Vec<String> {
    ["news", "offers", "loyalty"].map(String::from).to_vec()
}

/// A campaign from TOML text; its templates are inline.
fn campaign(name: &str, kind: &str, extra_top: &str, audience: &str) -> Campaign {
    let text = format!(
        "kind = \"{kind}\"\n{extra_top}\n[audience]\n{audience}\n\n[message]\nfrom = \"shop@example.com\"\n\
         subject = \"Hi {{{{ customer.first_name }}}}\"\ntext = \"Hello {{{{ unsubscribe_url }}}}\"\n"
    );
    spec::parse(Path::new(&format!("campaigns/{name}.toml")), &text, &default_topics())
        .unwrap_or_else(|e| panic!("{e:?}"))
}

const RULES: Rules = Rules {
    default_holdout: 0.0,
    frequency_cap: 3,
    frequency_window: Duration::days(7),
    attribution_window: Duration::days(7),
    max_data_age: None,
    max_score_age: Duration::hours(26),
};
const AT: &str = "2026-06-01T09:00:00Z";

/// The external ids of the customers with an outbox row in `run_id`, in state `state`.
fn outbox(env: &TestEnv, run_id: i64, state: &str) -> Vec<String> {
    env.strings(&format!(
        "SELECT c.external_id FROM outbox o JOIN customers c ON c.id = o.customer_id \
         WHERE o.run_id = {run_id} AND o.state = '{state}' ORDER BY c.external_id"
    ))
}

/// Imports CSV text as `what` (customers, orders or interactions).
fn import(env: &TestEnv, what: &str, csv: &str) {
    env.ok(&["import", what, &env.write(&format!("{what}.csv"), csv)]);
}

/// A message of an earlier run: one run row per (campaign, time), one outbox row.
fn past_message(env: &TestEnv, campaign: &str, kind: &str, customer: &str, at: &str, state: &str) {
    env.execute(&format!(
        "INSERT INTO campaign_runs (campaign, kind, scheduled_at, state, created_at) \
         SELECT '{campaign}', '{kind}', '{at}', 'planned', '{at}' WHERE NOT EXISTS \
         (SELECT 1 FROM campaign_runs WHERE campaign = '{campaign}' AND scheduled_at = '{at}')"
    ));
    env.execute(&format!(
        "INSERT INTO outbox (run_id, customer_id, state, attempts, created_at, updated_at) \
         SELECT r.id, c.id, '{state}', 0, '{at}', '{at}' FROM campaign_runs r, customers c \
         WHERE r.campaign = '{campaign}' AND r.scheduled_at = '{at}' AND c.external_id = '{customer}'"
    ));
}

/// K1..K11, each set up to meet (or just miss) one exclusion.
fn exclusion_fixture(env: &TestEnv) {
    let mut csv = String::from("customer_id,email,first_name,marketing_consent\n");
    for i in 1..=11 {
        let email = if i == 3 { "K3@Example.COM".to_owned() } else { format!("k{i}@example.com") };
        let consent = if i == 2 { "false" } else { "true" };
        csv.push_str(&format!("K{i},{email},T,{consent}\n"));
    }
    csv.push_str("OUT,out@example.com,U,true\n");
    import(env, "customers", &csv);
    import(
        env,
        "interactions",
        "interaction_id,customer_id,kind,opened_at,status,resolved_at\n\
             I1,K4,complaint,2026-05-20,open,\n\
             I2,K5,complaint,2026-05-01,resolved,2026-05-03\n\
             I3,K1,inquiry,2026-05-25,open,\n",
    );
    env.execute(
        "INSERT INTO suppressions (email, reason, created_at) VALUES ('k3@example.com', 'unsubscribed', '2026-05-01T00:00:00+00:00')",
    );
    // (campaign, kind, customer, day, state). Cooldown 30 days: K6
    // was reached 10 days ago, K7 40 days ago. Cap of 3 marketing messages in
    // 7 days: K8 has 3; K9 has 2 (a third is 8 days old); K10's are loyalty
    // mail and K11's are control entries, which do not count.
    let history: &[(&str, &str, &str, &str, &str)] = &[
        ("target", "marketing", "K6", "05-22", "sent"),
        ("target", "marketing", "K7", "04-22", "sent"),
        ("other", "marketing", "K8", "05-27", "sent"),
        ("other", "marketing", "K8", "05-28", "sending"),
        ("other", "marketing", "K8", "05-29", "planned"),
        ("other", "marketing", "K9", "05-27", "sent"),
        ("other", "marketing", "K9", "05-28", "sent"),
        ("other", "marketing", "K9", "05-24", "sent"),
        ("points", "loyalty", "K10", "05-27", "sent"),
        ("points", "loyalty", "K10", "05-28", "sent"),
        ("points", "loyalty", "K10", "05-29", "sent"),
        ("other", "marketing", "K11", "05-27", "control"),
        ("other", "marketing", "K11", "05-28", "control"),
        ("other", "marketing", "K11", "05-29", "control"),
    ];
    for (campaign, kind, customer, day, state) in history {
        past_message(env, campaign, kind, customer, &format!("2026-{day}T09:00:00+00:00"), state);
    }
}

#[test]
fn each_exclusion_removes_exactly_its_customers() {
    each_backend(|env| {
        exclusion_fixture(env);
        let audience = "where = 'first_name = \"T\"'\ncooldown = \"30d\"\nholdout = 0";
        let (run_id, plan, loyalty_ids) = runtime().block_on(async {
            let db = connect(env).await;
            let marketing = campaign("target", "marketing", "", audience);
            let Outcome::Planned { run_id, plan } = plan::plan_run(&db, &marketing, &RULES, utc(AT)).await.unwrap()
            else {
                panic!("a new fire is planned");
            };
            // Loyalty mail ignores consent, open complaints and the cap, not suppression or cooldown.
            let loyalty = campaign("target", "loyalty", "", audience);
            let later = plan::evaluate(&db, &loyalty, &RULES, utc("2026-06-01T10:00:00Z")).await.unwrap();
            (run_id, plan, later.chosen.iter().map(|c| c.customer_id.to_string()).collect::<Vec<_>>())
        });
        let counts: Vec<(&str, u64)> = plan.steps.iter().map(|s| (s.step, s.remaining)).collect();
        assert_eq!(
            counts,
            [
                ("segment", 11),
                ("consent", 10),
                ("suppression", 9),
                ("open_complaint", 8),
                ("cooldown", 7),
                ("frequency_cap", 6),
                ("order_limit", 6),
                ("holdout", 6)
            ]
        );
        assert_eq!(outbox(env, run_id, "planned"), ["K1", "K10", "K11", "K5", "K7", "K9"]);
        let stored = env.strings(&format!("SELECT CAST(step_counts AS TEXT) FROM campaign_runs WHERE id = {run_id}"));
        assert!(stored[0].contains("\"frequency_cap\""), "{stored:?}");
        let names = env.strings(&format!(
            "SELECT external_id FROM customers WHERE id IN ({}) ORDER BY external_id",
            loyalty_ids.join(",")
        ));
        // K1..K11 minus K3 (suppressed), K6 (cooldown) and everyone the
        // marketing run above just reached (also this campaign's cooldown).
        assert_eq!(names, ["K2", "K4", "K8"]);
    });
}

#[test]
fn the_same_fire_is_planned_once_even_by_two_planners_at_once() {
    each_backend(|env| {
        exclusion_fixture(env);
        let target = campaign("target", "marketing", "", "where = 'first_name = \"T\"'\nholdout = 0");
        runtime().block_on(async {
            let (first, second) = (connect(env).await, connect(env).await);
            let at = utc(AT);
            let (a, b) =
                tokio::join!(plan::plan_run(&first, &target, &RULES, at), plan::plan_run(&second, &target, &RULES, at));
            let outcomes = [a.unwrap(), b.unwrap()];
            let planned = outcomes.iter().filter(|o| matches!(o, Outcome::Planned { .. })).count();
            let already = outcomes.iter().filter(|o| matches!(o, Outcome::AlreadyPlanned { .. })).count();
            assert_eq!((planned, already), (1, 1));
            // A later attempt (a restart) plans nothing either.
            assert!(matches!(
                plan::plan_run(&first, &target, &RULES, at).await.unwrap(),
                Outcome::AlreadyPlanned { .. }
            ));
        });
        let runs = env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM campaign_runs WHERE campaign = 'target'");
        // The fixture's two earlier runs of `target`, plus this one.
        assert_eq!(runs, ["3"]);
        let rows = env.strings(
            "SELECT CAST(COUNT(*) AS TEXT) FROM outbox o JOIN campaign_runs r ON r.id = o.run_id \
             WHERE r.campaign = 'target' AND r.scheduled_at > '2026-05-30'",
        );
        // K1..K11 without K2 (consent), K3 (suppressed), K4 (complaint), K8 (cap); no cooldown here.
        assert_eq!(rows, ["7"]);
    });
}

/// Customers 1..=n (ids and external ids), all named T, all consenting.
fn numbered_customers(env: &TestEnv, n: u32) {
    env.numbered_customers(n, "'T'");
}

#[test]
fn the_control_group_is_near_its_share_and_stable() {
    each_backend(|env| {
        numbered_customers(env, 10000);
        let held = campaign("held", "marketing", "", "where = 'first_name = \"T\"'\nholdout = 0.2");
        let runs = runtime().block_on(async {
            let db = connect(env).await;
            let mut runs = Vec::new();
            for at in ["2026-06-01T09:00:00Z", "2026-06-08T09:00:00Z"] {
                let Outcome::Planned { run_id, plan } = plan::plan_run(&db, &held, &RULES, utc(at)).await.unwrap()
                else {
                    panic!("planned");
                };
                runs.push((run_id, plan));
            }
            runs
        });
        let mut groups = Vec::new();
        for (run_id, plan) in runs {
            assert_eq!(plan.chosen.len(), 10_000);
            let share = plan.control() as f64 / 10_000.0;
            assert!((share - 0.2).abs() <= 0.02, "control share {share}");
            groups.push(outbox(env, run_id, "control"));
            assert_eq!(groups.last().unwrap().len(), plan.control());
        }
        assert_eq!(groups[0], groups[1]);
    });
}

#[test]
fn order_and_limit_take_the_highest_first() {
    each_backend(|env| {
        numbered_customers(env, 20);
        env.execute(
            "INSERT INTO feature_snapshots (customer_id, as_of, computed_at, recency_days, monetary_total, spend_30d, \
             spend_90d, spend_365d, frequency, orders_total, orders_30d, orders_90d, orders_365d, distinct_categories, \
             complaints_open, complaints_365d) SELECT id, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, id % 7, id * 10, 0, 0, 0, \
             1, 1, 0, 0, 0, 1, 0, 0 FROM customers",
        );
        let top = campaign(
            "top",
            "marketing",
            "",
            "where = 'monetary_total >= 50'\norder_by = \"recency_days desc\"\nlimit = 4\nholdout = 0",
        );
        runtime().block_on(async {
            let db = connect(env).await;
            let plan = plan::evaluate(&db, &top, &RULES, utc(AT)).await.unwrap();
            let ids: Vec<i64> = plan.chosen.iter().map(|c| c.customer_id).collect();
            // recency = id % 7: 6 for ids 6, 13, 20; then 5 for 5 and 12. Ties by id.
            assert_eq!(ids, [6, 13, 20, 5]);
            assert_eq!(plan.steps[0].remaining, 16);
        });
    });
}

#[test]
fn the_scheduler_fires_once_folds_missed_fires_and_lets_priority_win_the_cap() {
    each_backend(|env| {
        exclusion_fixture(env);
        let rules = Rules { frequency_cap: 1, ..RULES };
        let daily = "schedule = \"0 9 * * *\"\ntimezone = \"UTC\"";
        let low = campaign(
            "low",
            "marketing",
            &format!("{daily}\npriority = 1"),
            "where = 'first_name = \"U\"'\nholdout = 0",
        );
        let high = campaign(
            "high",
            "marketing",
            &format!("{daily}\npriority = 9"),
            "where = 'first_name = \"U\"'\nholdout = 0",
        );
        runtime().block_on(async {
            let db = connect(env).await;
            let mut scheduler = Scheduler::new(rules, Duration::hours(2));
            // First sight: nothing fires for times before the campaigns existed.
            let fired = scheduler.tick(&db, [&low, &high], utc("2026-06-01T08:00:00Z")).await.unwrap();
            assert!(fired.is_empty(), "{fired:?}");
            // 09:00: both due; `high` goes first and takes the customer's one slot.
            let fired = scheduler.tick(&db, [&low, &high], utc("2026-06-01T09:00:05Z")).await.unwrap();
            let messages: Vec<(String, usize)> = fired
                .iter()
                .map(|f| match f {
                    Fired::Planned { campaign, messages, .. } => (campaign.clone(), *messages),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(messages, [("high".to_owned(), 1), ("low".to_owned(), 0)]);
            // A second scheduler (a restart, another daemon) at the same moment plans nothing.
            let mut other = Scheduler::new(rules, Duration::hours(2));
            assert!(other.tick(&db, [&low, &high], utc("2026-06-01T09:00:30Z")).await.unwrap().is_empty());
            // Down from 09:01 on day 1 until 10:00 on day 4: day 4's 09:00 runs once, days 2 and 3 fold into it.
            let fired = scheduler.tick(&db, [&high], utc("2026-06-04T10:00:00Z")).await.unwrap();
            assert!(
                matches!(&fired[..], [Fired::Planned { at, missed: 2, .. }] if *at == utc("2026-06-04T09:00:00Z")),
                "{fired:?}"
            );
            // Down past the grace period: recorded as skipped, nothing planned.
            let fired = scheduler.tick(&db, [&high], utc("2026-06-06T12:00:00Z")).await.unwrap();
            assert!(
                matches!(&fired[..], [Fired::Skipped { at, missed: 1, .. }] if *at == utc("2026-06-06T09:00:00Z")),
                "{fired:?}"
            );
            assert!(scheduler.tick(&db, [&high], utc("2026-06-06T12:01:00Z")).await.unwrap().is_empty());
        });
        let states = env.strings("SELECT state FROM campaign_runs WHERE campaign = 'high' ORDER BY scheduled_at");
        assert_eq!(states, ["planned", "planned", "skipped"]);
    });
}

#[test]
fn every_shipped_campaign_validates() {
    let env = TestEnv::new(crate::support::Backend::Sqlite);
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("campaigns");
    let run =
        env.command(&["campaign", "validate"]).env("PATRON__CAMPAIGNS_DIR", &shipped).output().expect("run patron");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{stdout}");
    let files = std::fs::read_dir(&shipped)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "toml"))
        .count();
    assert!(files >= 6);
    assert_eq!(stdout.trim(), format!("{files} of {files} campaign file(s) valid"));
}

#[test]
fn a_segment_read_from_the_snapshots_leaves_out_the_erased_and_the_unconsenting_as_one_read_from_every_customer() {
    each_backend(|env| {
        // S3 does not consent; S4 is erased (a snapshot written since); S5 has no snapshot.
        import(
            env,
            "customers",
            "customer_id,email,first_name,marketing_consent\nS1,s1@example.com,T,true\nS2,s2@example.com,T,true\n\
             S3,s3@example.com,T,false\nS4,s4@example.com,T,true\nS5,s5@example.com,T,true\n",
        );
        env.execute("UPDATE customers SET erased_at = '2026-05-01T00:00:00+00:00' WHERE external_id = 'S4'");
        env.execute(
            "INSERT INTO feature_snapshots (customer_id, as_of, computed_at, recency_days, monetary_total, spend_30d, \
             spend_90d, spend_365d, frequency, orders_total, orders_30d, orders_90d, orders_365d, distinct_categories, \
             complaints_open, complaints_365d) SELECT id, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, \
             CASE WHEN external_id = 'S2' THEN 100 ELSE 10 END, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0 \
             FROM customers WHERE external_id <> 'S5'",
        );
        // The first reads only the snapshots; the second, the same customers, reads the customer too.
        let recent = "recency_days <= 30d";
        let recent_customers = "recency_days <= 30d and (marketing_consent = true or marketing_consent = false)";
        for segment in [recent, recent_customers, "not (recency_days > 30d)"] {
            let audience = format!("where = '{segment}'\nholdout = 0");
            let marketing = campaign("recent", "marketing", "", &audience);
            let steps = runtime().block_on(async {
                let db = connect(env).await;
                plan::evaluate(&db, &marketing, &RULES, utc(AT)).await.unwrap().steps
            });
            assert_eq!((steps[0].remaining, steps[1].remaining), (2, 1), "{segment}");
            assert_eq!(chosen(env, &marketing, AT), ["S1"], "{segment}");
            // Loyalty mail needs no consent.
            assert_eq!(chosen(env, &campaign("recent", "loyalty", "", &audience), AT), ["S1", "S3"], "{segment}");
        }
        // Only the customer without a snapshot has no recency.
        let missing = campaign("missing", "loyalty", "", "where = 'recency_days is null'\nholdout = 0");
        assert_eq!(chosen(env, &missing, AT), ["S5"]);
    });
}

#[test]
fn validate_prints_each_problem_with_its_place_and_exits_2() {
    let env = TestEnv::new(crate::support::Backend::Sqlite);
    std::fs::create_dir(env.dir.path().join("campaigns")).unwrap();
    env.write(
        "campaigns/broken.toml",
        "schedule = \"0 9 * * MON\"\ntimezone = \"Europe/Berln\"\n\n[audience]\nwhere = \"recncy_days > 180d\"\n\n\
         [message]\nfrom = \"shop@example.com\"\nsubject = \"Hi {{ customer.nickname }}\"\ntext = \"Hello {{ unsubscribe_url }}\"\n",
    );
    env.write(
        "campaigns/fine.toml",
        "[audience]\nwhere = \"frequency >= 2\"\n\n[message]\nfrom = \"shop@example.com\"\nsubject = \"Hi\"\ntext = \"Hello {{ unsubscribe_url }}\"\n",
    );
    let run = env.patron(&["campaign", "validate"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "./campaigns/broken.toml:2:12: unknown time zone `Europe/Berln`; did you mean `Europe/Berlin`?",
            "./campaigns/broken.toml:5:10: unknown field `recncy_days`; did you mean `recency_days`?",
            "./campaigns/broken.toml:9:27: subject template: unknown variable `customer.nickname` \
             (`customer` has: first_name, last_name, email, external_id, birthday, attributes)",
            "1 of 2 campaign file(s) valid",
        ]
    );
    assert!(run.stderr.contains("3 problem(s) found in the campaign files"), "{}", run.stderr);
}

/// The external ids of the customers a campaign would choose at `at`.
fn chosen(env: &TestEnv, campaign: &Campaign, at: &str) -> Vec<String> {
    let ids = runtime().block_on(async {
        let db = connect(env).await;
        let plan = plan::evaluate(&db, campaign, &RULES, utc(at)).await.unwrap();
        plan.chosen.iter().map(|c| c.customer_id.to_string()).collect::<Vec<_>>()
    });
    if ids.is_empty() {
        return Vec::new();
    }
    env.strings(&format!("SELECT external_id FROM customers WHERE id IN ({}) ORDER BY external_id", ids.join(",")))
}

#[test]
fn birthdays_and_resolved_complaints_are_computed_when_the_campaign_runs() {
    each_backend(|env| {
        import(
            env,
            "customers",
            "customer_id,email,birthday,marketing_consent\n\
                 B1,b1@example.com,1990-06-02,true\nB2,b2@example.com,1990-06-01,true\n\
                 B3,b3@example.com,2000-02-29,true\nB4,b4@example.com,,true\n\
                 C1,c1@example.com,,true\nC2,c2@example.com,,true\nC3,c3@example.com,,true\n\
                 C4,c4@example.com,,true\nC5,c5@example.com,,true\n",
        );
        import(
            env,
            "interactions",
            "interaction_id,customer_id,kind,opened_at,status,resolved_at\n\
                 I1,C1,complaint,2026-05-20,resolved,2026-05-27T00:00:00Z\n\
                 I2,C2,complaint,2026-05-20,resolved,2026-05-31T00:00:00Z\n\
                 I3,C3,complaint,2026-05-20,open,\n\
                 I4,C4,complaint,2026-05-01,closed,2026-05-20T00:00:00Z\n\
                 I5,C5,complaint,2026-05-01,resolved,2026-05-20T00:00:00Z\n\
                 I6,C5,complaint,2026-05-21,resolved,2026-05-28T00:00:00Z\n\
                 I7,B1,inquiry,2026-05-21,resolved,2026-05-28T00:00:00Z\n",
        );
        let birthday = |zone: &str| {
            campaign(
                "birthday",
                "loyalty",
                &format!("timezone = \"{zone}\""),
                "where = 'birthday_today = true'\nholdout = 0",
            )
        };
        // 23:30 UTC on 1 June is already 2 June in Tokyo.
        assert_eq!(chosen(env, &birthday("Asia/Tokyo"), "2026-06-01T23:30:00Z"), ["B1"]);
        assert_eq!(chosen(env, &birthday("UTC"), "2026-06-01T23:30:00Z"), ["B2"]);
        // 29 February birthdays are celebrated on 28 February in other years.
        assert_eq!(chosen(env, &birthday("UTC"), "2027-02-28T12:00:00Z"), ["B3"]);
        assert_eq!(chosen(env, &birthday("UTC"), "2028-02-28T12:00:00Z"), Vec::<String>::new());
        assert_eq!(chosen(env, &birthday("UTC"), "2028-02-29T12:00:00Z"), ["B3"]);
        let followup = campaign(
            "followup",
            "loyalty",
            "",
            "where = 'days_since_complaint_resolved between 3d and 7d'\nholdout = 0",
        );
        // Resolved 5.98 days before (C1) and, for the latest of two, 4.98 days (C5).
        assert_eq!(chosen(env, &followup, "2026-06-01T23:30:00Z"), ["C1", "C5"]);
    });
}

#[test]
fn a_run_over_max_audience_is_refused_planning_nothing_and_a_run_within_it_is_planned() {
    each_backend(|env| {
        numbered_customers(env, 30);
        std::fs::create_dir(env.dir.path().join("campaigns")).unwrap();
        let file = |max: u32| {
            format!(
                "[audience]\nwhere = 'first_name = \"T\"'\nholdout = 0.1\nmax_audience = {max}\n\n[message]\n\
                 from = \"shop@example.com\"\nsubject = \"Hi\"\ntext = \"Hello {{{{ unsubscribe_url }}}}\"\n"
            )
        };
        env.write("campaigns/everyone.toml", file(25));
        let dry = env.ok(&["campaign", "run", "everyone", "--dry-run"]).stdout;
        assert!(dry.contains("max_audience: the audience of 30 customers is over max_audience 25 by 5"), "{dry}");
        let run = env.patron(&["campaign", "run", "everyone"]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains(
                "campaign `everyone`: the audience of 30 customers is over max_audience 25 by 5; run 1 recorded as \
                 refused, nothing was planned"
            ),
            "{}",
            run.stderr
        );
        let runs = env.strings("SELECT state || ': ' || detail FROM campaign_runs");
        assert_eq!(runs, ["refused: the audience of 30 customers is over max_audience 25 by 5; nothing was planned"]);
        assert_eq!(env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM outbox"), ["0"]);
        // The step counts are kept, so the report shows what the run would have reached.
        assert_eq!(
            env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM campaign_runs WHERE step_counts IS NOT NULL"),
            ["1"]
        );

        // The scheduler refuses the same way, and a guard the audience fits in lets the run through.
        let guarded = campaign(
            "guarded",
            "marketing",
            "schedule = \"0 9 * * *\"",
            "where = 'first_name = \"T\"'\nmax_audience = 29",
        );
        let roomy = campaign(
            "roomy",
            "marketing",
            "schedule = \"0 9 * * *\"",
            "where = 'first_name = \"T\"'\nmax_audience = 30",
        );
        runtime().block_on(async {
            let db = connect(env).await;
            let mut scheduler = Scheduler::new(RULES, Duration::hours(2));
            scheduler.tick(&db, [&guarded, &roomy], utc("2026-06-01T08:00:00Z")).await.unwrap();
            let fired = scheduler.tick(&db, [&guarded, &roomy], utc("2026-06-01T09:00:01Z")).await.unwrap();
            assert!(
                matches!(&fired[..], [
                    Fired::Refused { campaign, refusal, .. },
                    Fired::Planned { messages: 30, .. }
                ] if campaign == "guarded" && refusal.audience == 30 && refusal.max_audience == 29),
                "{fired:?}"
            );
        });
        let states = env.strings("SELECT campaign || ' ' || state FROM campaign_runs ORDER BY campaign");
        assert_eq!(states, ["everyone refused", "guarded refused", "roomy planned"]);
        assert_eq!(env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM outbox"), ["30"]);

        env.write("campaigns/everyone.toml", file(0));
        let invalid = env.patron(&["campaign", "validate"]);
        assert_eq!(invalid.code, 2);
        assert!(
            invalid.stdout.contains("everyone.toml:4:16: max_audience must be at least 1, not 0"),
            "{}",
            invalid.stdout
        );
    });
}

#[test]
fn diff_shows_who_an_edit_adds_and_removes_against_the_last_planned_run() {
    each_backend(|env| {
        env.numbered_customers(12, "'T' || CAST(i AS TEXT)");
        std::fs::create_dir(env.dir.path().join("campaigns")).unwrap();
        let file = |names: &str| {
            format!(
                "[audience]\nwhere = 'first_name in [{names}]'\nholdout = 0\n\n[message]\nfrom = \"shop@example.com\"\n\
                 subject = \"Hi\"\ntext = \"Hello {{{{ unsubscribe_url }}}}\"\n"
            )
        };
        env.write("campaigns/pick.toml", file("\"T1\", \"T2\", \"T3\""));
        let first = env.ok(&["campaign", "diff", "pick"]).stdout;
        assert!(first.starts_with("never planned before: every customer is new\n"), "{first}");
        assert!(first.contains("now: 3 customers: 0 in both, 3 added, 0 removed"), "{first}");
        env.ok(&["campaign", "run", "pick"]);

        // The edit drops T1 and adds T4, T5 and T10.
        env.write("campaigns/pick.toml", file("\"T2\", \"T3\", \"T4\", \"T5\", \"T10\""));
        let diff = env.ok(&["campaign", "diff", "pick", "--sample", "2"]).stdout;
        assert!(diff.starts_with("last planned run 1 ("), "{diff}");
        assert!(diff.contains("): 3 customers\n"), "{diff}");
        assert!(diff.contains("now: 5 customers: 2 in both, 3 added, 1 removed"), "{diff}");
        assert!(diff.contains("added (first 2 by customer): 4, 5\n"), "{diff}");
        assert!(diff.contains("removed (first 1 by customer): 1\n"), "{diff}");
        // Nothing was written.
        assert_eq!(env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM campaign_runs"), ["1"]);
        assert_eq!(env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM outbox"), ["3"]);
    });
}

#[test]
fn preview_and_run_from_the_command_line() {
    each_backend(|env| {
        import(
            env,
            "customers",
            "customer_id,email,first_name,marketing_consent\nP1,p1@example.com,<b>Ann</b>,true\nP2,p2@example.com,Bob,false\n",
        );
        std::fs::create_dir(env.dir.path().join("campaigns")).unwrap();
        env.write(
            "campaigns/hello.toml",
            "schedule = \"0 9 * * MON\"\ntimezone = \"America/New_York\"\n\n[audience]\nwhere = 'first_name is not null'\n\
             holdout = 0\n\n[message]\nfrom = \"Shop <shop@example.com>\"\nsubject = \"Hi {{ customer.first_name }}\"\n\
             html = \"<p>Hi {{ customer.first_name }}</p><a href='{{ unsubscribe_url }}'>Unsubscribe</a>\"\n",
        );
        let preview = env.ok(&["campaign", "preview", "hello"]).stdout;
        assert!(preview.contains("  segment                   2\n  consent                   1\n"), "{preview}");
        assert_eq!(preview.matches(" 09:00 E").count(), 5, "five fire times at 09:00 New York time:\n{preview}");
        assert!(preview.contains("  Subject: Hi <b>Ann</b>\n"), "{preview}");
        assert!(preview.contains("<p>Hi &lt;b&gt;Ann&lt;&#x2f;b&gt;</p>"), "{preview}");

        let dry = env.ok(&["campaign", "run", "hello", "--dry-run"]).stdout;
        assert!(dry.contains("nothing was written"), "{dry}");
        assert_eq!(env.status()["campaign_runs"], 0);
        let run = env.ok(&["campaign", "run", "hello"]).stdout;
        assert!(run.contains("planned in") && run.ends_with("1 message(s), 0 in the control group\n"), "{run}");
        assert_eq!(env.strings("SELECT state FROM outbox"), ["planned"]);

        let unknown = env.patron(&["campaign", "preview", "helo"]);
        assert_eq!(unknown.code, 2);
        assert!(
            unknown.stderr.contains("no valid campaign named `helo`; the campaigns are: hello"),
            "{}",
            unknown.stderr
        );
    });
}

#[test]
fn preview_and_run_say_to_train_and_score_when_a_segment_uses_scores_that_were_never_computed() {
    each_backend(|env| {
        import(env, "customers", "customer_id,email,first_name,marketing_consent\nS1,s1@example.com,Sam,true\n");
        std::fs::create_dir(env.dir.path().join("campaigns")).unwrap();
        let body =
            "\n\n[message]\nfrom = \"shop@example.com\"\nsubject = \"Hi\"\ntext = \"Hello {{ unsubscribe_url }}\"\n";
        env.write(
            "campaigns/scored.toml",
            format!(
                "[audience]\nwhere = 'frequency >= 1 and propensity_decile <= 3'\norder_by = 'propensity desc'{body}"
            ),
        );
        env.write("campaigns/plain.toml", format!("[audience]\nwhere = 'first_name is not null'{body}"));
        let advice = "warning: campaign scored uses `frequency`, `propensity_decile`, `propensity`, which come from \
                      scoring, and there is no active model yet, so no customer has these values: run `patron train`, \
                      then `patron score`";
        let commands: [&[&str]; 3] = [
            &["campaign", "preview", "scored"],
            &["campaign", "run", "scored", "--dry-run"],
            &["campaign", "run", "scored"],
        ];
        for args in commands {
            let run = env.ok(args);
            assert!(run.stderr.contains(advice), "{args:?}: {}", run.stderr);
        }
        // A segment on customer data alone needs no scoring and gets no warning.
        let plain = env.ok(&["campaign", "preview", "plain"]);
        assert!(!plain.stderr.contains("warning"), "{}", plain.stderr);
    });
}

/// The predicates of `campaign`'s segment on `propensity` or `propensity_decile`, as written.
fn score_predicates(campaign: &Campaign) -> Vec<String> {
    fn walk(expr: &Expr, text: &str, found: &mut Vec<String>) {
        match expr {
            Expr::And(a, b) | Expr::Or(a, b) => {
                walk(a, text, found);
                walk(b, text, found);
            }
            Expr::Not(e) => walk(e, text, found),
            Expr::Compare { field, span, .. }
            | Expr::Between { field, span, .. }
            | Expr::In { field, span, .. }
            | Expr::IsNull { field, span, .. } => {
                if matches!(field, Field::Named(n) if n.starts_with("propensity")) {
                    found.push(text[span.start..span.end].to_owned());
                }
            }
            Expr::Subscribed { .. } | Expr::History { .. } => {}
        }
    }
    let mut found = Vec::new();
    walk(&campaign.audience.expr, &campaign.audience.segment, &mut found);
    found
}

#[test]
fn shipped_campaigns_on_scores_pick_likelier_buyers_and_warn_when_scores_are_missing_or_stale() {
    each_backend(|env| {
        for what in ["customers", "orders", "interactions"] {
            env.ok(&["import", what, &crate::support::example(&format!("{what}.csv")).display().to_string()]);
        }
        env.ok(&["train", "--as-of", "1997-09-30", "--horizon", "91d", "--algorithm", "logistic"]);
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("campaigns");
        let preview = |name: &str| {
            let run = env.command(&["campaign", "preview", name]).env("PATRON__CAMPAIGNS_DIR", &shipped).output();
            crate::support::Run::from(run.expect("run patron"))
        };
        let unscored = preview("develop");
        assert_eq!(unscored.code, 0, "{}", unscored.stderr);
        assert!(
            unscored.stderr.contains(
                "and the active model has not scored anyone yet, so no customer has these values: \
                                      run `patron score`"
            ),
            "{}",
            unscored.stderr
        );

        env.ok(&["score", "--as-of", "1997-09-30"]);
        let fresh = preview("develop");
        assert!(!fresh.stderr.contains("warning"), "{}", fresh.stderr);

        // Decile 1 is the most likely tenth: what a shipped campaign asks of the
        // scores must select customers with a higher mean score than everyone's.
        let mean = |filter: &str| -> f64 {
            env.strings(&format!("SELECT CAST(AVG(score) AS TEXT) FROM scores {filter}"))[0].parse().unwrap()
        };
        let base = mean("");
        let (catalog, _) = patron::campaign::Catalog::load(&shipped, &default_topics());
        let mut checked = Vec::new();
        for shipped_campaign in catalog.campaigns() {
            for predicate in score_predicates(shipped_campaign) {
                let only = campaign("only", "marketing", "", &format!("where = '{predicate}'\nholdout = 0"));
                let ids = runtime().block_on(async {
                    let db = connect(env).await;
                    let plan = plan::evaluate(&db, &only, &RULES, utc(AT)).await.unwrap();
                    plan.chosen.iter().map(|c| c.customer_id.to_string()).collect::<Vec<_>>()
                });
                assert!(!ids.is_empty(), "{}: `{predicate}` selects nobody", shipped_campaign.name);
                let chosen = mean(&format!("WHERE customer_id IN ({})", ids.join(",")));
                assert!(
                    chosen > base,
                    "{}: `{predicate}` selects a mean score of {chosen:.3}, below everyone's {base:.3}",
                    shipped_campaign.name
                );
                checked.push(format!("{}: {predicate}", shipped_campaign.name));
            }
            if let Some(order) = &shipped_campaign.audience.order
                && order.field.starts_with("propensity")
            {
                assert_eq!(order.descending, order.field == "propensity", "{}", shipped_campaign.name);
            }
        }
        assert_eq!(checked, ["develop: propensity_decile <= 4"]);

        // Scores older than daemon.max_score_age (26 hours by default) are stale.
        env.execute("UPDATE scores SET scored_at = '2026-01-01T00:00:00+00:00'");
        let stale = preview("develop");
        assert!(
            stale.stderr.contains(
                "and the last scoring (2026-01-01 00:00 UTC) is older than daemon.max_score_age \
                                   (26h): run `patron score`"
            ),
            "{}",
            stale.stderr
        );
    });
}

/// A campaign `news` to everyone with a first name, with these HTML and text templates.
const NEWS: &str = "[audience]\nwhere = 'first_name is not null'\nholdout = 0\n\n[message]\n\
    from = \"Shop <shop@example.com>\"\nsubject = \"News for {{ customer.first_name }}\"\n\
    html = \"templates/news.html\"\ntext = \"templates/news.txt\"\n";

const FOOTER_ADDRESS: &str = "Patron Records, 1 Example Street, 10115 Berlin";

#[test]
fn a_layout_carries_its_footer_and_unsubscribe_link_into_the_previewed_and_sent_message() {
    each_backend(|env| {
        env.numbered_customers(2, "'T' || CAST(i AS TEXT)");
        std::fs::create_dir_all(env.dir.path().join("campaigns/templates/partials")).unwrap();
        env.write(
            "campaigns/templates/layout.html",
            "<html><body>\n{% block content %}{% endblock %}\n{% include \"templates/partials/footer.html\" %}\n\
             </body></html>\n",
        );
        env.write(
            "campaigns/templates/partials/footer.html",
            format!("<p>{FOOTER_ADDRESS}<br>\n<a href=\"{{{{ unsubscribe_url }}}}\">Unsubscribe</a></p>\n"),
        );
        env.write(
            "campaigns/templates/layout.txt",
            format!(
                "{{% block content %}}{{% endblock %}}\n--\n{FOOTER_ADDRESS}\nUnsubscribe: {{{{ unsubscribe_url }}}}\n"
            ),
        );
        env.write(
            "campaigns/templates/news.html",
            "{% extends \"templates/layout.html\" %}\n{% block content %}<p>Hello {{ customer.first_name }}</p>{% endblock %}\n",
        );
        env.write(
            "campaigns/templates/news.txt",
            "{% extends \"templates/layout.txt\" %}\n{% block content %}Hello {{ customer.first_name }}\n{% endblock %}\n",
        );
        env.write("campaigns/news.toml", NEWS);
        assert_eq!(env.ok(&["campaign", "validate"]).stdout, "1 of 1 campaign file(s) valid\n");

        let preview = env.ok(&["campaign", "preview", "news"]).stdout;
        let html = preview.split("--- html part ---\n").nth(1).expect("an html part").split("--- text part ---").next();
        assert_eq!(
            html,
            Some(
                "<html><body>\n<p>Hello T1</p>\n<p>Patron Records, 1 Example Street, 10115 Berlin<br>\n\
                 <a href=\"https://unsubscribe-link-made-when-sent.invalid/\">Unsubscribe</a></p>\n</body></html>\n\n"
            ),
            "{preview}"
        );
        assert!(
            preview.contains(&format!(
                "--- text part ---\nHello T1\n\n--\n{FOOTER_ADDRESS}\nUnsubscribe: https://unsubscribe-link-made-when-sent.invalid/\n"
            )),
            "{preview}"
        );

        env.ok(&["campaign", "run", "news"]);
        let run = env.command(&["send"]).env("PATRON__UNSUBSCRIBE__SECRET", crate::delivery::SECRET).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            "2 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n"
        );
        let mail = std::fs::read_dir(env.dir.path().join("data/mail")).unwrap();
        let mut bodies = 0;
        for file in mail {
            let bytes = std::fs::read(file.unwrap().path()).unwrap();
            let message = mail_parser::MessageParser::default().parse(&bytes).expect("a message");
            let (html, text) = (message.body_html(0).unwrap(), message.body_text(0).unwrap());
            for body in [&html, &text] {
                assert!(body.contains(FOOTER_ADDRESS), "{body}");
                assert!(body.contains("http://localhost:8025/unsubscribe?token="), "{body}");
            }
            assert!(html.contains("<p>Hello T") && text.starts_with("Hello T"), "{html}\n{text}");
            bodies += 1;
        }
        assert_eq!(bodies, 2);

        // The same layout without the link: refused, where the template that uses it is.
        env.write("campaigns/templates/partials/footer.html", format!("<p>{FOOTER_ADDRESS}</p>\n"));
        let refused = env.patron(&["campaign", "validate"]);
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert_eq!(
            refused.stdout,
            "./campaigns/templates/news.html:1:1: html template: no unsubscribe link: bulk mail must carry one; add \
             {{ unsubscribe_url }}, in the footer say (of this template, or of a layout or partial it uses)\n\
             0 of 1 campaign file(s) valid\n"
        );
    });
}

#[test]
fn a_template_name_outside_the_campaigns_folder_or_missing_is_refused_with_its_place() {
    let env = TestEnv::new(crate::support::Backend::Sqlite);
    std::fs::create_dir_all(env.dir.path().join("campaigns/templates")).unwrap();
    env.write(
        "campaigns/templates/news.html",
        "<p>Hi</p>\n<p>{% include \"../../etc/passwd\" %}</p>\n<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>\n",
    );
    env.write("campaigns/templates/news.txt", "{% extends 'templates/layout.txt' %}\n");
    env.write("campaigns/news.toml", NEWS.replace("subject = \"News", "subject = \"{% include '/etc/passwd' %}News"));
    let run = env.patron(&["campaign", "validate"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "./campaigns/news.toml:7:23: subject template: {% include %}: `/etc/passwd` is an absolute path, outside \
             the campaigns folder: template paths are relative to that folder, such as \"templates/layout.html\"",
            "./campaigns/templates/news.html:2:15: html template: {% include %}: `../../etc/passwd` escapes the \
             campaigns folder: template paths are relative to that folder and may not leave it",
            "./campaigns/templates/news.txt:1:12: text template: {% extends \"templates/layout.txt\" %}: cannot read \
             template file ./campaigns/templates/layout.txt: No such file or directory (os error 2)",
            "0 of 1 campaign file(s) valid",
        ]
    );
    assert!(!run.stdout.contains("root:"), "{}", run.stdout);
}
