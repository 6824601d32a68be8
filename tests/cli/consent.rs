//! Consent per subscription topic through the binary: the one-click request
//! and the preference page leave a topic or everything, a campaign of
//! another topic still reaches the person, every change is on record with
//! its source, an import never turns consent back on after a later
//! unsubscribe, and the commands refuse bad input without changing anything.

use std::time::Duration;

use patron::delivery::Signer;
use patron::delivery::unsubscribe::Token;
use secrecy::SecretString;

use crate::delivery::{CAMPAIGN, SECRET, count, customers, http, serve};
use crate::support::{TestEnv, each_backend};

/// Customers 1..=n, the marketing campaign `hello` (topic `offers` by
/// default) and the campaign `letter` of topic `news`.
fn two_topics(env: &TestEnv, n: u32) {
    customers(env, n);
    env.write("campaigns/letter.toml", format!("topic = \"news\"\n{CAMPAIGN}"));
}

/// The addresses a run of `campaign` planned now.
fn planned(env: &TestEnv, campaign: &str) -> Vec<String> {
    // Runs are keyed by their second: the next one must not share it.
    std::thread::sleep(Duration::from_millis(1100));
    // Without the frequency cap, which the repeated runs would reach.
    let run =
        env.command(&["campaign", "run", campaign]).env("PATRON__CAMPAIGNS__FREQUENCY_CAP", "0").output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    env.strings(&format!(
        "SELECT c.email FROM outbox o JOIN customers c ON c.id = o.customer_id \
         WHERE o.run_id = (SELECT MAX(id) FROM campaign_runs WHERE campaign = '{campaign}') ORDER BY c.email"
    ))
}

fn link(customer_id: i64, campaign: &str, topic: &str) -> String {
    let token = Token { customer_id, campaign: campaign.into(), topic: Some(topic.into()) };
    format!("/unsubscribe?token={}", Signer::new(SecretString::from(SECRET)).sign(&token))
}

fn events(env: &TestEnv) -> Vec<String> {
    env.strings(
        "SELECT CAST(customer_id AS TEXT) || ' ' || COALESCE(topic, '*') || ' ' || COALESCE(old_state, '-') || '>' \
         || new_state || ' ' || source FROM consent_events ORDER BY id",
    )
}

#[test]
fn a_one_click_leaves_the_messages_topic_only_and_other_topics_still_reach_the_person() {
    each_backend(|env| {
        two_topics(env, 3);
        env.ok(&["campaign", "run", "hello"]);
        let (_serving, port) = serve(env);
        let (status, page) = http(port, "GET", &link(2, "hello", "offers"), "");
        assert_eq!(status, 200);
        assert!(
            page.contains("Offers and discounts") && page.contains("name=\"topic\" value=\"news\" checked"),
            "{page}"
        );
        assert_eq!(events(env), Vec::<String>::new(), "showing the page changes nothing");

        let (status, page) = http(port, "POST", &link(2, "hello", "offers"), "List-Unsubscribe=One-Click");
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Offers and discounts"), "{page}");
        assert_eq!(events(env), ["2 offers subscribed>unsubscribed one_click"]);
        assert_eq!(count(env, "SELECT COUNT(*) FROM suppressions"), 0, "a topic is not a suppression");
        // The run planned before the click: c2's message is held back just before sending.
        let send = env.command(&["send"]).env("PATRON__UNSUBSCRIBE__SECRET", SECRET).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&send.stdout),
            "2 sent, 0 to retry later, 0 failed, 1 suppressed, 0 unknown\n"
        );
        assert_eq!(
            env.strings("SELECT last_error FROM outbox WHERE state = 'suppressed'"),
            ["the customer left the campaign's topic"]
        );

        assert_eq!(planned(env, "hello"), ["c1@example.com", "c3@example.com"]);
        assert_eq!(planned(env, "letter"), ["c1@example.com", "c2@example.com", "c3@example.com"]);

        // The page's "from everything" button: the address is suppressed, no topic reaches it.
        let (status, _) = http(port, "POST", &link(3, "letter", "news"), "action=all");
        assert_eq!(status, 200);
        assert_eq!(env.strings("SELECT email || ' ' || reason FROM suppressions"), ["c3@example.com unsubscribed"]);
        assert_eq!(planned(env, "letter"), ["c1@example.com", "c2@example.com"]);
        assert_eq!(events(env).last().unwrap(), "3 * subscribed>unsubscribed preference_page");
    });
}

#[test]
fn the_preference_page_saves_the_topics_ticked_and_a_resubscribe_lifts_the_own_unsubscribe() {
    each_backend(|env| {
        two_topics(env, 2);
        env.execute("UPDATE customers SET attributes = '{\"locale\": \"fr-FR\"}' WHERE id = 1");
        let (_serving, port) = serve(env);
        let (_, page) = http(port, "GET", &link(1, "hello", "offers"), "");
        assert!(page.contains("lang=\"fr\"") && page.contains("Offres et réductions"), "{page}");

        // Only news ticked: offers and loyalty are left.
        let (status, page) = http(port, "POST", &link(1, "hello", "offers"), "topic=news&action=save");
        assert_eq!(status, 200, "{page}");
        assert_eq!(
            env.strings("SELECT topic FROM topic_opt_outs WHERE customer_id = 1 ORDER BY topic"),
            ["loyalty", "offers"]
        );
        assert_eq!(planned(env, "hello"), ["c2@example.com"]);
        assert_eq!(planned(env, "letter"), ["c1@example.com", "c2@example.com"]);

        // Nothing ticked is everything; ticking again later lifts that unsubscribe.
        http(port, "POST", &link(1, "hello", "offers"), "action=save");
        assert_eq!(count(env, "SELECT COUNT(*) FROM suppressions WHERE email = 'c1@example.com'"), 1);
        http(port, "POST", &link(1, "hello", "offers"), "topic=offers&topic=news&topic=loyalty&action=save");
        assert_eq!(count(env, "SELECT COUNT(*) FROM suppressions"), 0);
        assert_eq!(count(env, "SELECT COUNT(*) FROM topic_opt_outs"), 0);
        assert_eq!(planned(env, "hello"), ["c1@example.com", "c2@example.com"]);
        assert_eq!(
            events(env),
            [
                "1 offers subscribed>unsubscribed preference_page",
                "1 loyalty subscribed>unsubscribed preference_page",
                "1 * subscribed>unsubscribed preference_page",
                "1 * unsubscribed>subscribed preference_page",
                "1 offers unsubscribed>subscribed preference_page",
                "1 loyalty unsubscribed>subscribed preference_page",
            ]
        );
        // The basis names the campaign; no IP address unless subscriptions.record_ip.
        assert_eq!(env.strings("SELECT DISTINCT basis FROM consent_events"), ["campaign hello"]);
    });
}

#[test]
fn a_segment_can_ask_for_a_topic_and_the_shipped_files_name_known_topics() {
    each_backend(|env| {
        two_topics(env, 3);
        env.ok(&["customer", "unsubscribe", "1", "--topic", "news"]);
        env.write(
            "campaigns/readers.toml",
            CAMPAIGN.replace("where = 'first_name is not null'", "where = 'subscribed(\"news\")'"),
        );
        assert_eq!(planned(env, "readers"), ["c2@example.com", "c3@example.com"]);
        env.write(
            "campaigns/bad.toml",
            CAMPAIGN.replace("where = 'first_name is not null'", "where = 'subscribed(\"nws\")'"),
        );
        let run = env.patron(&["campaign", "validate"]);
        assert_eq!(run.code, 2, "{}", run.stdout);
        assert!(run.stdout.contains("bad.toml:4:") && run.stdout.contains("unknown topic `nws`"), "{}", run.stdout);
    });
}

const CUSTOMERS: &str = "customer_id,email,marketing_consent,consent_at\n\
    A,a@example.com,true,2026-01-01\n\
    B,b@example.com,true,2026-01-01\n\
    C,c@example.com,false,\n";

#[test]
fn an_import_keeps_consent_off_for_who_unsubscribed_after_the_files_consent_date_and_says_so() {
    each_backend(|env| {
        let file = env.write("customers.csv", CUSTOMERS);
        env.ok(&["import", "customers", &file]);
        assert_eq!(events(env), ["1 * ->subscribed import", "2 * ->subscribed import", "3 * ->unsubscribed import"]);
        assert_eq!(
            env.strings("SELECT basis FROM consent_events WHERE customer_id = 1"),
            [format!("{file} line 2, consent given 2026-01-01T00:00:00+00:00")]
        );
        env.ok(&["customer", "unsubscribe", "B", "--basis", "phone call"]);

        // The same file again, and one that gives consent to all three as of June.
        let run = env.ok(&["import", "customers", &file]);
        assert!(run.stdout.contains("1 row(s) asked for marketing consent and were kept off"), "{}", run.stdout);
        let june =
            env.write("june.csv", CUSTOMERS.replace("2026-01-01", "2026-06-01").replace("false,", "true,2026-06-01"));
        let run = env.ok(&["import", "customers", &june]);
        assert!(run.stdout.contains("1 row(s) asked"), "{}", run.stdout);
        // Only C's consent changed, from what was stored: one event, with its old state.
        assert_eq!(events(env)[3..], ["2 * subscribed>unsubscribed command", "3 * unsubscribed>subscribed import"]);
        assert_eq!(
            env.strings("SELECT external_id || ' ' || CAST(marketing_consent AS TEXT) FROM customers ORDER BY 1"),
            match env.backend {
                crate::support::Backend::Sqlite => ["A 1", "B 0", "C 1"],
                crate::support::Backend::Postgres => ["A true", "B false", "C true"],
            }
        );
        // Without a consent date, an unsubscribe of any time wins too.
        let undated = env.write("undated.csv", "customer_id,email,marketing_consent\nB,b@example.com,yes\n");
        assert!(env.ok(&["import", "customers", &undated]).stdout.contains("1 row(s) asked"));
        assert_eq!(count(env, "SELECT COUNT(*) FROM customers WHERE external_id = 'B' AND marketing_consent"), 0);
    });
}

#[test]
fn suppressions_are_listed_added_removed_imported_and_exported_and_bad_input_changes_nothing() {
    each_backend(|env| {
        customers(env, 2);
        env.ok(&["suppressions", "add", "x@example.com", "--reason", "complained"]);
        env.ok(&["suppressions", "add", "2", "--reason", "bounced"]);
        let listed: serde_json::Value =
            serde_json::from_str(&env.ok(&["suppressions", "list", "--json"]).stdout).unwrap();
        let emails: Vec<&str> = listed.as_array().unwrap().iter().map(|e| e["email"].as_str().unwrap()).collect();
        assert_eq!(emails.len(), 2);
        assert!(emails.contains(&"c2@example.com") && emails.contains(&"x@example.com"), "{listed}");
        let bounced = env.ok(&["suppressions", "list", "--reason", "bounced", "--json"]).stdout;
        assert_eq!(serde_json::from_str::<serde_json::Value>(&bounced).unwrap().as_array().unwrap().len(), 1);
        assert_eq!(events(env), ["2 * ->suppressed command"]);

        let before =
            (count(env, "SELECT COUNT(*) FROM suppressions"), count(env, "SELECT COUNT(*) FROM consent_events"));
        let refused: [&[&str]; 8] = [
            &["suppressions", "add", "not-an-address@", "--reason", "manual"],
            &["suppressions", "add", "99", "--reason", "manual"],
            &["suppressions", "add", "y@example.com", "--reason", "spam"],
            &["suppressions", "remove", "x@example.com"],
            &["customer", "unsubscribe", "1", "--topic", "sport"],
            &["customer", "show", "99"],
            &["customer", "export", "99"],
            &["customer", "erase", "1"],
        ];
        for args in refused {
            let run = env.patron(args);
            assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        }
        let bad = env.write("bad.csv", "email,reason\nok@example.com,manual\nnope,manual\nz@example.com,spam\n");
        let run = env.patron(&["suppressions", "import", &bad]);
        assert_eq!(run.code, 2);
        assert!(
            run.stderr.contains("bad.csv: line 3, column `email`") && run.stderr.contains("line 4, column `reason`"),
            "{}",
            run.stderr
        );
        let after =
            (count(env, "SELECT COUNT(*) FROM suppressions"), count(env, "SELECT COUNT(*) FROM consent_events"));
        assert_eq!(after, before, "refused commands change nothing");

        env.ok(&["suppressions", "remove", "x@example.com", "--force"]);
        let good = env.write("good.csv", "email,reason\nA@example.com,manual\nb@example.com,\n");
        assert!(env.ok(&["suppressions", "import", &good]).stdout.contains("2 rows, 2 added"));
        let exported = env.path("list.csv");
        env.ok(&["suppressions", "export", &exported]);
        let text = std::fs::read_to_string(&exported).unwrap();
        let mut lines: Vec<&str> = text.lines().map(|l| l.rsplit_once(',').unwrap().0).collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "a@example.com,manual,import",
                "b@example.com,manual,import",
                "c2@example.com,bounced,command",
                "email,reason,source"
            ]
        );
    });
}

#[test]
fn with_record_ip_the_basis_of_a_web_change_keeps_the_clients_address() {
    each_backend(|env| {
        two_topics(env, 1);
        let port = crate::delivery::free_port();
        let child = env
            .command(&["serve"])
            .env("PATRON__UNSUBSCRIBE__SECRET", SECRET)
            .env("PATRON__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("PATRON__SUBSCRIPTIONS__RECORD_IP", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let _serving = crate::delivery::Serving(child);
        crate::delivery::wait_for_port(port);
        assert_eq!(http(port, "POST", &link(1, "hello", "offers"), "List-Unsubscribe=One-Click").0, 200);
        assert_eq!(env.strings("SELECT basis FROM consent_events"), ["campaign hello, from 127.0.0.1"]);
    });
}
