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
        let token = signer.sign(&Token { customer_id: 2, campaign: "hello".into() });
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
