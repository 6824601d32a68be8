//! Sequences: campaigns whose segments read the customer's message history
//! (`received`, `days_since_received`, `ordered_since_received`,
//! `converted`, `in_control_group`), planned with `campaign run --at` and sent
//! with `patron send`, on both engines. Time is driven by the test: each run
//! names its moment, and the moment each run's messages were sent is set
//! after `send` delivered them.

use crate::support::{TestEnv, each_backend};

/// A marketing campaign file of the sequence, with a holdout of `holdout`.
fn campaign_file(segment: &str, holdout: f64) -> String {
    format!(
        "[audience]\nwhere = \"{segment}\"\ncooldown = \"3650d\"\nholdout = {holdout}\n\n[message]\n\
         from = \"shop@example.com\"\nsubject = \"Hello\"\ntext = \"Hello {{{{ unsubscribe_url }}}}\"\n"
    )
}

fn write_campaign(env: &TestEnv, name: &str, segment: &str, holdout: f64) {
    env.write(&format!("campaigns/{name}.toml"), campaign_file(segment, holdout));
}

/// The customers of run `run_id` in outbox state `state`, by external id.
fn customers(env: &TestEnv, run_id: &str, state: &str) -> Vec<String> {
    env.strings(&format!(
        "SELECT c.external_id FROM outbox o JOIN customers c ON c.id = o.customer_id \
         WHERE o.run_id = {run_id} AND o.state = '{state}' ORDER BY c.external_id"
    ))
}

/// Whom a segment selects at `at`: a loyalty campaign (no frequency cap, no
/// holdout) planned once, its outbox read back.
fn selects(env: &TestEnv, probe: &str, segment: &str, at: &str) -> Vec<String> {
    write_campaign(env, probe, segment, 0.0);
    let text = std::fs::read_to_string(env.path(&format!("campaigns/{probe}.toml"))).unwrap();
    env.write(&format!("campaigns/{probe}.toml"), format!("kind = \"loyalty\"\n{text}"));
    let out =
        env.command(&["campaign", "run", probe, "--at", at]).env("PATRON__REPORT__ATTRIBUTION_WINDOW", "3d").output();
    let out = out.expect("run patron");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{probe}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let id = stdout.lines().find_map(|line| line.strip_prefix("run ")?.split(' ').next()).expect("run id").to_owned();
    customers(env, &id, "planned")
}

#[test]
fn a_three_step_sequence_follows_each_customers_history_and_never_sends_twice() {
    each_backend(|env| {
        std::fs::create_dir(env.dir.path().join("campaigns")).unwrap();
        let mut csv = String::from("customer_id,email,marketing_consent\n");
        for i in 1..=6 {
            csv.push_str(&format!("S{i},s{i}@example.com,true\n"));
        }
        env.ok(&["import", "customers", &env.write("customers.csv", csv)]);
        // S2 buys a day after the welcome, S3 bought before it, S4 after step
        // 2, and S5's order lies after every moment planned here.
        let orders = "order_id,customer_id,ordered_at,amount\n\
                      O2,S2,2026-06-02T12:00:00Z,20.00\nO3,S3,2026-05-20T12:00:00Z,30.00\n\
                      O4,S4,2026-06-06T12:00:00Z,40.00\nO5,S5,2026-06-20T12:00:00Z,50.00\n";
        env.ok(&["import", "orders", &env.write("orders.csv", orders)]);

        write_campaign(env, "welcome", "marketing_consent = true", 0.0);
        write_campaign(
            env,
            "welcome_2",
            "days_since_received('welcome') >= 3d and not ordered_since_received('welcome')",
            0.0,
        );
        write_campaign(
            env,
            "welcome_3",
            "days_since_received('welcome_2') >= 4d and not ordered_since_received('welcome')",
            0.0,
        );
        env.ok(&["campaign", "validate"]);

        let (welcome, _) = env.run_campaign_at("welcome", "2026-06-01T10:00:00Z");
        env.send_as_of(&welcome, "2026-06-01T10:05:00+00:00");
        assert_eq!(customers(env, &welcome, "sent"), ["S1", "S2", "S3", "S4", "S5", "S6"]);
        // S7 arrives after the welcome went out: never step 1, so never step 2.
        env.ok(&[
            "import",
            "customers",
            &env.write("late.csv", "customer_id,email,marketing_consent\nS7,s7@example.com,true\n"),
        ]);

        // Two days on, nobody is due; three days and an hour on, all but the
        // buyer since the welcome (S2) and the customer who never got it (S7).
        let (early, _) = env.run_campaign_at("welcome_2", "2026-06-03T10:00:00Z");
        assert!(customers(env, &early, "planned").is_empty());
        let (step_2, _) = env.run_campaign_at("welcome_2", "2026-06-04T11:00:00Z");
        assert_eq!(customers(env, &step_2, "planned"), ["S1", "S3", "S4", "S5", "S6"]);
        env.send_as_of(&step_2, "2026-06-04T11:05:00+00:00");
        let (again, _) = env.run_campaign_at("welcome_2", "2026-06-05T11:00:00Z");
        assert!(customers(env, &again, "planned").is_empty(), "step 2 is never sent twice");

        // Step 3, four days after step 2: not S4, who bought in between; S5's
        // order is still in the future.
        let (not_yet, _) = env.run_campaign_at("welcome_3", "2026-06-08T11:00:00Z");
        assert!(customers(env, &not_yet, "planned").is_empty(), "3 days 23 hours after step 2");
        let (step_3, _) = env.run_campaign_at("welcome_3", "2026-06-08T12:00:00Z");
        assert_eq!(customers(env, &step_3, "planned"), ["S1", "S3", "S5", "S6"]);
        env.send_as_of(&step_3, "2026-06-08T12:05:00+00:00");
        let (again, _) = env.run_campaign_at("welcome_3", "2026-06-09T12:00:00Z");
        assert!(customers(env, &again, "planned").is_empty(), "step 3 is never sent twice");

        // The other history tests, as of 2026-06-10 (attribution window 3 days).
        let at = "2026-06-10T00:00:00Z";
        assert_eq!(selects(env, "p1", "received('welcome_3')", at), ["S1", "S3", "S5", "S6"]);
        assert!(selects(env, "p2", "received('welcome', within = 2d)", at).is_empty());
        assert_eq!(selects(env, "p3", "received('welcome_2', within = 6d)", at), ["S1", "S3", "S4", "S5", "S6"]);
        assert_eq!(selects(env, "p4", "converted('welcome')", at), ["S2"]);
        assert_eq!(selects(env, "p5", "converted('welcome_2')", at), ["S4"]);
        assert_eq!(
            selects(env, "p6", "days_since_received('welcome') between 8d and 9d", at),
            ["S1", "S2", "S3", "S4", "S5", "S6"]
        );
        assert_eq!(selects(env, "p7", "days_since_received('welcome_3') is null", at), ["S2", "S4", "S7"]);

        // The control group of a campaign with a holdout.
        write_campaign(env, "held", "marketing_consent = true", 0.5);
        let (held, _) = env.run_campaign_at("held", "2026-06-11T10:00:00Z");
        let control = customers(env, &held, "control");
        assert!(!control.is_empty() && control.len() < 7, "{control:?}");
        assert_eq!(selects(env, "p8", "in_control_group('held')", "2026-06-12T00:00:00Z"), control);
        assert!(selects(env, "p9", "in_control_group('held')", "2026-06-11T09:00:00Z").is_empty(), "before the run");
    });
}

#[test]
fn a_history_function_naming_an_unknown_campaign_is_refused_with_a_suggestion() {
    each_backend(|env| {
        std::fs::create_dir(env.dir.path().join("campaigns")).unwrap();
        write_campaign(env, "welcome", "marketing_consent = true", 0.0);
        write_campaign(env, "welcome_2", "days_since_received('welcom') >= 3d and not received('nothing')", 0.0);
        let run = env.patron(&["campaign", "validate"]);
        assert_eq!(run.code, 2, "{}", run.stdout);
        let out = format!("{}{}", run.stdout, run.stderr);
        assert!(out.contains("welcome_2.toml:2:10: unknown campaign `welcom`; did you mean `welcome`?"), "{out}");
        assert!(
            out.contains("welcome_2.toml:2:54: unknown campaign `nothing`; the campaigns are `welcome`, `welcome_2`"),
            "{out}"
        );
    });
}
