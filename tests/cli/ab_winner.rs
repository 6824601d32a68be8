//! A/B winners (`[winner]`): the test share gets the variants, the rest is
//! held; once `after` has passed the test is judged, the held messages go out
//! with the winner and later runs send the winner to everyone. Time is driven
//! by the test (`campaign run --at`, and the moment messages were sent set
//! after `send`).

use crate::support::{TestEnv, each_backend};

fn campaign_file(test_share: f64) -> String {
    format!(
        "[audience]\nwhere = \"marketing_consent = true\"\ncooldown = \"3650d\"\nholdout = 0\n\n\
         [message]\nfrom = \"shop@example.com\"\nsubject = \"Hello\"\ntext = \"Hello {{{{ unsubscribe_url }}}}\"\n\n\
         [[variant]]\nname = \"A\"\nshare = 0.5\n\n[[variant]]\nname = \"B\"\nshare = 0.5\nsubject = \"Hello again\"\n\n\
         [winner]\nmetric = \"conversion\"\nafter = \"3d\"\nmin_confidence = 0.95\ntest_share = {test_share}\n"
    )
}

fn count(env: &TestEnv, sql: &str) -> usize {
    env.strings(&format!("SELECT CAST(COUNT(*) AS TEXT) FROM outbox WHERE {sql}"))[0].parse().unwrap()
}

/// The external ids of run `run_id`'s rows in `variant`, in customer order.
fn of_variant(env: &TestEnv, run_id: &str, variant: &str) -> Vec<String> {
    env.strings(&format!(
        "SELECT c.external_id FROM outbox o JOIN customers c ON c.id = o.customer_id \
         WHERE o.run_id = {run_id} AND o.variant = '{variant}' ORDER BY c.id"
    ))
}

/// One order at `at` for every `every`-th customer of `customers`.
fn orders(env: &TestEnv, file: &str, customers: &[String], every: usize, at: &str) {
    let mut csv = String::from("order_id,customer_id,ordered_at,amount\n");
    for (i, customer) in customers.iter().enumerate().filter(|(i, _)| i % every == 0) {
        csv.push_str(&format!("{file}-{i},{customer},{at},25.00\n"));
    }
    env.ok(&["import", "orders", &env.write(&format!("{file}.csv"), csv)]);
}

fn report(env: &TestEnv, name: &str) -> serde_json::Value {
    let out = env.ok(&["report", "campaign", name, "--json"]).stdout;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn a_planted_difference_crowns_b_for_the_held_and_later_sends_and_no_difference_keeps_a() {
    each_backend(|env| {
        env.numbered_customers(2000, "'C'");
        std::fs::create_dir(env.dir.path().join("campaigns")).unwrap();
        env.write("campaigns/ab.toml", campaign_file(0.5));
        env.write("campaigns/same.toml", campaign_file(0.5));

        // The first run: half the audience gets A or B, the other half is held.
        let (first, out) = env.run_campaign_at("ab", "2026-06-01T10:00:00Z");
        let held = count(env, &format!("run_id = {first} AND state = 'held' AND variant IS NULL"));
        assert!((850..=1150).contains(&held), "{held} held of 2000");
        assert!(out.contains(&format!("held for the A/B test's winner ([winner]): {held} message(s)")), "{out}");
        env.send_as_of(&first, "2026-06-01T10:05:00+00:00");
        assert_eq!(count(env, &format!("run_id = {first} AND state = 'sent'")), 2000 - held, "held rows are not sent");

        // B converts at three times A's rate: every 20th A customer buys, every 7th B customer.
        let (a, b) = (of_variant(env, &first, "A"), of_variant(env, &first, "B"));
        orders(env, "a", &a, 20, "2026-06-02T12:00:00Z");
        orders(env, "b", &b, 7, "2026-06-02T12:00:00Z");

        // Before `after` (3 days) nothing is judged, and nothing held goes out.
        let (_, out) = env.run_campaign_at("ab", "2026-06-03T10:00:00Z");
        assert!(out.contains("0 message(s)"), "{out}");
        assert!(env.strings("SELECT winner FROM variant_decisions").is_empty());
        assert_eq!(count(env, &format!("run_id = {first} AND state = 'held'")), held);

        // Fifty newcomers, then a run after the test's end: B wins, the held
        // messages are released with B, and the newcomers all get B.
        let mut csv = String::from("customer_id,email,marketing_consent\n");
        for i in 1..=50 {
            csv.push_str(&format!("N{i},n{i}@example.com,true\n"));
        }
        env.ok(&["import", "customers", &env.write("newcomers.csv", csv)]);
        let (later, _) = env.run_campaign_at("ab", "2026-06-04T11:00:00Z");
        assert_eq!(env.strings("SELECT winner FROM variant_decisions WHERE campaign = 'ab'"), ["B"]);
        assert_eq!(count(env, "state = 'held'"), 0);
        assert_eq!(count(env, &format!("run_id = {first} AND state = 'planned' AND variant = 'B'")), held);
        assert_eq!(of_variant(env, &later, "B").len(), 50);
        assert!(of_variant(env, &later, "A").is_empty());

        let preview = env.ok(&["campaign", "preview", "ab"]).stdout;
        assert!(preview.contains("A/B test judged: B wins on conversion"), "{preview}");
        let r = report(env, "ab");
        assert_eq!(r["winner"]["winner"], "B", "{r:#}");
        assert_eq!(r["winner"]["significant"], true);
        let test = &r["variant_tests"][0];
        assert_eq!((test["variant"].as_str(), test["against"].as_str()), (Some("B"), Some("A")));
        assert!(test["conversion"]["p_value"].as_f64().unwrap() < 0.001, "{test:#}");
        let text = env.ok(&["report", "campaign", "ab"]).stdout;
        assert!(text.contains("B against A: conversion +"), "{text}");
        assert!(text.contains("winner: B (decided 2026-06-04 11:00 UTC): B wins on conversion: A "), "{text}");

        // No difference: every 10th customer of the test buys, whatever the
        // variant; when the time is up the first variant is kept.
        let waiting = env.ok(&["campaign", "preview", "same"]).stdout;
        assert!(
            waiting.contains(
                "A/B test on conversion: 50% of each run gets the variants, the rest waits for the winner, \
                 judged 3d after the first run"
            ),
            "{waiting}"
        );
        let (same, _) = env.run_campaign_at("same", "2026-07-01T10:00:00Z");
        env.send_as_of(&same, "2026-07-01T10:05:00+00:00");
        let mut everyone = of_variant(env, &same, "A");
        everyone.extend(of_variant(env, &same, "B"));
        everyone.sort_by_key(|id| id.parse::<u32>().unwrap_or(u32::MAX));
        orders(env, "same", &everyone, 10, "2026-07-02T12:00:00Z");
        env.run_campaign_at("same", "2026-07-05T10:00:00Z");
        assert_eq!(
            env.strings(
                "SELECT CAST(significant AS TEXT) || ' ' || winner FROM variant_decisions WHERE campaign = 'same'"
            ),
            [if env.backend == crate::support::Backend::Sqlite { "0 A" } else { "false A" }]
        );
        let r = report(env, "same");
        assert!(r["winner"]["reason"].as_str().unwrap().contains("the first variant, A, is kept"), "{r:#}");
    });
}
