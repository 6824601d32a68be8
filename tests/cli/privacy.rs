//! What patron keeps and shows about people: an unsubscribe withdraws
//! consent, a person's suppression follows them to a new address, and debug
//! logs carry no names or addresses.

use std::time::Duration;

use patron::delivery::Signer;
use patron::delivery::unsubscribe::Token;
use secrecy::SecretString;

use crate::delivery::{SECRET, count, customers, http, plan, serve};
use crate::support::each_backend;

#[test]
fn an_unsubscribe_withdraws_consent_and_follows_the_person_to_a_new_address_but_a_bounce_does_not() {
    each_backend(|env| {
        customers(env, 4);
        plan(env);
        assert_eq!(env.status()["customers_with_consent"], 4);
        let (_serving, port) = serve(env);
        let signer = Signer::new(SecretString::from(SECRET));
        let token = signer.sign(&Token { customer_id: 2, campaign: "hello".into(), topic: None });
        assert_eq!(http(port, "POST", &format!("/unsubscribe?token={token}"), "List-Unsubscribe=One-Click").0, 200);
        assert_eq!(env.status()["customers_with_consent"], 3, "the unsubscribed customer no longer consents");

        // Customer 3's address bounced; then both change their address (and 2 consents again by import).
        env.execute("INSERT INTO suppressions (email, customer_id, reason, created_at) VALUES ('c3@example.com', 3, 'bounced', '2026-01-01T00:00:00+00:00')");
        env.execute("UPDATE customers SET email = 'new' || email, marketing_consent = TRUE WHERE id IN (2, 3)");
        std::thread::sleep(Duration::from_millis(1100));
        plan(env);
        let planned = env.strings(
            "SELECT c.email FROM outbox o JOIN customers c ON c.id = o.customer_id \
             WHERE o.run_id = (SELECT MAX(id) FROM campaign_runs) ORDER BY c.email",
        );
        assert_eq!(planned, ["c1@example.com", "c4@example.com", "newc3@example.com"]);
        assert_eq!(count(env, "SELECT COUNT(*) FROM suppressions"), 2);
    });
}

#[test]
fn debug_logs_of_a_send_carry_no_name_or_address() {
    each_backend(|env| {
        env.numbered_customers(3, "'Zebedee' || CAST(i AS TEXT)");
        std::fs::create_dir_all(env.dir.path().join("campaigns")).unwrap();
        // HTML only: the text part is made from it (html5ever logs what it parses at debug level).
        env.write(
            "campaigns/hello.toml",
            "kind = \"marketing\"\n\n[audience]\nwhere = 'first_name is not null'\nholdout = 0\n\n\
             [message]\nfrom = \"shop@example.com\"\nsubject = \"Hi {{ customer.first_name }}\"\n\
             html = \"<p>Hi {{ customer.first_name }} {{ customer.email }}</p><a href='{{ unsubscribe_url }}'>x</a>\"\n",
        );
        plan(env);
        let run = env
            .command(&["send"])
            .env("PATRON__UNSUBSCRIBE__SECRET", SECRET)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{stderr}");
        assert!(stderr.contains("DEBUG") || stderr.contains("TRACE"), "patron's own debug lines still show: {stderr}");
        assert!(!stderr.contains("Zebedee") && !stderr.contains("@example.com"), "{stderr}");
    });
}

const ADDRESS_KEY: &str = "an-address-key-for-the-erasure-tests";

const PEOPLE: &str = "customer_id,email,first_name,last_name,marketing_consent,consent_at\n\
    CUST-ZELDA-7,Zelda.Quux@Example.com,Zelda,Quux,true,2026-01-01\n\
    B,b@example.com,Bo,Bee,true,2026-01-01\n";

const THEIR_ORDERS: &str = "order_id,customer_id,ordered_at,amount,category\n\
    O1,CUST-ZELDA-7,2026-03-01,120.50,music\n\
    O2,CUST-ZELDA-7,2026-04-01,80.00,books\n\
    O3,B,2026-05-01,60.00,music\n";

const MAILED: &str = "kind = \"marketing\"\n\n[audience]\nwhere = 'marketing_consent = true'\nholdout = 0\n\n\
    [message]\nfrom = \"shop@example.com\"\nsubject = \"Hi {{ customer.first_name }}\"\n\
    text = \"Hi {{ customer.first_name }} {{ customer.last_name }}, {{ unsubscribe_url }}\"\n";

/// Zelda with orders, a complaint, loyalty points, a sent message, a spam
/// complaint and a change of consent; B beside her.
fn zelda(env: &crate::support::TestEnv) {
    env.ok(&["import", "customers", &env.write("people.csv", PEOPLE)]);
    env.ok(&["import", "orders", &env.write("orders.csv", THEIR_ORDERS)]);
    let complaint = "interaction_id,customer_id,kind,opened_at,status,resolved_at,note\n\
        I1,CUST-ZELDA-7,complaint,2026-04-02,resolved,2026-04-03,Zelda says the box was broken\n";
    env.ok(&["import", "interactions", &env.write("interactions.csv", complaint)]);
    env.ok(&["loyalty", "recompute"]);
    std::fs::create_dir_all(env.dir.path().join("campaigns")).unwrap();
    env.write("campaigns/hello.toml", MAILED);
    env.ok(&["campaign", "run", "hello"]);
    let run = env.command(&["send"]).env("PATRON__UNSUBSCRIBE__SECRET", SECRET).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    env.ok(&["customer", "unsubscribe", "CUST-ZELDA-7", "--topic", "news", "--basis", "ticket 4711"]);
    env.execute(
        "INSERT INTO feedback_events (received_at, kind, status, diagnostic, email, outbox_id, run_id, customer_id, source, matched_by, fingerprint) \
         SELECT CURRENT_TIMESTAMP, 'complaint', NULL, 'abuse report about zelda.quux@example.com', 'zelda.quux@example.com', o.id, o.run_id, o.customer_id, 'pipe', 'verp', 'test:1' \
         FROM outbox o JOIN customers c ON c.id = o.customer_id WHERE c.external_id = 'CUST-ZELDA-7'",
    );
}

#[test]
fn a_customer_export_holds_everything_about_the_person_and_matches_its_schema() {
    each_backend(|env| {
        zelda(env);
        let out = env.path("zelda.json");
        env.ok(&["customer", "export", "CUST-ZELDA-7", "--out", &out]);
        let exported: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let schema_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/customer-export.schema.json");
        let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        let problems: Vec<String> =
            validator.iter_errors(&exported).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(problems.is_empty(), "{problems:?}\n{exported:#}");

        assert_eq!(exported["customer"]["email"], "Zelda.Quux@Example.com");
        let array = |key: &str| exported[key].as_array().unwrap_or_else(|| panic!("{key}")).clone();
        assert_eq!(
            array("orders").iter().map(|o| o["external_id"].as_str().unwrap()).collect::<Vec<_>>(),
            ["O1", "O2"]
        );
        assert_eq!(array("interactions")[0]["kind"], "complaint");
        assert!(array("loyalty_ledger").iter().any(|e| e["entry_kind"] == "earn"), "{exported:#}");
        assert_eq!(array("messages")[0]["campaign"], "hello");
        assert_eq!(array("messages")[0]["state"], "sent");
        assert_eq!(array("feedback_events")[0]["kind"], "complaint");
        let history = array("consent_history");
        assert!(
            history.iter().any(|e| e["topic"] == "news" && e["source"] == "command" && e["basis"] == "ticket 4711"),
            "{history:?}"
        );
        assert!(history.iter().any(|e| e["source"] == "import" && e["new_state"] == "subscribed"), "{history:?}");
        assert_eq!(exported["consent"]["topics"][0], serde_json::json!({"topic": "news", "subscribed": false}));

        let shown = env.ok(&["customer", "show", "CUST-ZELDA-7"]).stdout;
        let news = shown.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["news", "unsubscribed"]);
        assert!(news && shown.contains("ticket 4711") && shown.contains("hello"), "{shown}");
    });
}

#[test]
fn an_erased_customer_is_nowhere_afterwards_and_their_address_stays_suppressed() {
    each_backend(|env| {
        zelda(env);
        let runs = env.strings(
            "SELECT CAST(run_id AS TEXT) || ':' || CAST(COUNT(*) AS TEXT) FROM outbox GROUP BY run_id ORDER BY 1",
        );
        let b_points = count(
            env,
            "SELECT SUM(points) FROM loyalty_ledger l JOIN customers c ON c.id = l.customer_id WHERE c.external_id = 'B'",
        );
        let orders = count(env, "SELECT COUNT(*) FROM orders");
        let before_erasure = std::time::SystemTime::now();
        std::thread::sleep(Duration::from_millis(1100));

        let erase = env
            .command(&["customer", "erase", "CUST-ZELDA-7", "--json"])
            .env("PATRON__PRIVACY__ADDRESS_KEY", ADDRESS_KEY)
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        let logs = String::from_utf8_lossy(&erase.stderr);
        assert!(erase.status.success(), "{logs}");
        let erased: serde_json::Value = serde_json::from_slice(&erase.stdout).unwrap();
        assert_eq!(erased["orders_kept_anonymous"], 2);
        assert_eq!(erased["interactions"], 1);
        let report = env.command(&["report", "campaign", "hello"]).env("RUST_LOG", "debug").output().unwrap();
        let report = format!("{}{}", String::from_utf8_lossy(&report.stdout), String::from_utf8_lossy(&report.stderr));

        let personal = ["zelda", "quux", "cust-zelda-7"];
        let dump = env.dump().to_lowercase();
        for text in [&dump, &logs.to_lowercase(), &report.to_lowercase()] {
            for word in personal {
                assert!(!text.contains(word), "`{word}` found after the erasure:\n{text}");
            }
        }
        for file in files_under(env.dir.path()) {
            // SQLite's -wal and -shm files go when the test's last connection closes, on its own thread.
            let (Ok(metadata), Ok(bytes)) = (file.metadata(), std::fs::read(&file)) else { continue };
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            if metadata.modified().unwrap() < before_erasure || name.ends_with(".csv") || name.ends_with(".json") {
                continue; // the test's own input files, and what was written before the erasure
            }
            let bytes = bytes.to_ascii_lowercase();
            for word in personal {
                assert!(!bytes.windows(word.len()).any(|w| w == word.as_bytes()), "`{word}` in {}", file.display());
            }
        }

        assert_eq!(
            env.strings(
                "SELECT CAST(run_id AS TEXT) || ':' || CAST(COUNT(*) AS TEXT) FROM outbox GROUP BY run_id ORDER BY 1"
            ),
            runs
        );
        assert_eq!(
            count(
                env,
                "SELECT SUM(points) FROM loyalty_ledger l JOIN customers c ON c.id = l.customer_id WHERE c.external_id = 'B'"
            ),
            b_points
        );
        assert_eq!(count(env, "SELECT COUNT(*) FROM orders"), orders, "orders stay as anonymous rows");
        assert_eq!(
            env.strings("SELECT new_state || ' ' || source FROM consent_events WHERE new_state = 'erased'"),
            ["erased erasure"]
        );

        // The same address imported again: suppressed as before, and left out of campaigns.
        let run = env
            .command(&["import", "customers", &env.path("people.csv")])
            .env("PATRON__PRIVACY__ADDRESS_KEY", ADDRESS_KEY)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&run.stdout).contains("1 row(s) asked for marketing consent and were kept off"),
            "{run:?}"
        );
        assert_eq!(
            env.strings("SELECT email || ' ' || reason FROM suppressions"),
            ["zelda.quux@example.com unsubscribed"]
        );
        std::thread::sleep(Duration::from_millis(1100));
        env.ok(&["campaign", "run", "hello"]);
        assert_eq!(
            env.strings("SELECT c.external_id FROM outbox o JOIN customers c ON c.id = o.customer_id WHERE o.run_id = (SELECT MAX(id) FROM campaign_runs)"),
            ["B"]
        );
    });
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(files_under(&path)) } else { files.push(path) }
    }
    files
}

#[test]
fn retention_clears_old_message_and_bounce_details_and_keeps_recent_ones() {
    each_backend(|env| {
        customers(env, 2);
        plan(env);
        env.execute(
            "UPDATE outbox SET state = 'sent', server_reply = '250 ok for c1@example.com', \
             updated_at = CASE WHEN customer_id = 1 THEN '2020-01-01T00:00:00+00:00' ELSE updated_at END",
        );
        for (id, at) in [(1, "2020-01-01T00:00:00+00:00"), (2, "2099-01-01T00:00:00+00:00")] {
            env.execute(&format!(
                "INSERT INTO feedback_events (received_at, kind, diagnostic, email, source, fingerprint) \
                 VALUES ('{at}', 'hard_bounce', '550 no such user c{id}@example.com', 'c{id}@example.com', 'pipe', 'f{id}')"
            ));
        }
        let run = env.ok(&["retention", "--json"]);
        let retained: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(retained, serde_json::json!({"messages": 1, "feedback_events": 1}));
        assert_eq!(
            env.strings("SELECT CAST(customer_id AS TEXT) || ' ' || COALESCE(server_reply, '-') FROM outbox ORDER BY customer_id"),
            ["1 -", "2 250 ok for c1@example.com"]
        );
        assert_eq!(
            env.strings(
                "SELECT fingerprint || ' ' || kind || ' ' || COALESCE(email, '-') FROM feedback_events ORDER BY id"
            ),
            ["f1 hard_bounce -", "f2 hard_bounce c2@example.com"]
        );
        assert_eq!(
            env.ok(&["retention"]).stdout,
            "0 message(s) and 0 feedback event(s) past their retention lost their details\n"
        );
    });
}
