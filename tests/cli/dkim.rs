//! DKIM through the binary: `patron dkim keygen`, then mail sent with the
//! key checked by an independent verifier (mail-auth) against the printed
//! DNS record; and the settings that are refused.

use std::borrow::Borrow;
use std::hash::Hash;
use std::os::unix::fs::PermissionsExt;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt};

use crate::delivery::{SECRET, customers, plan};
use crate::support::{Backend, Run, TestEnv, each_backend};

pub(crate) const LOYALTY: &str = "kind = \"loyalty\"\n\n[audience]\nwhere = 'first_name is not null'\nholdout = 0\n\n\
    [message]\nfrom = \"Club <club@shop.example>\"\nsubject = \"Your points, {{ customer.first_name }}\"\n\
    text = \"Hi {{ customer.first_name }}, thanks for being a member. {{ unsubscribe_url }}\"\n";

/// One DNS TXT record, as a verifier's cache: nothing else resolves, and
/// nothing is asked of a real DNS server.
struct OneRecord {
    name: String,
    record: Txt,
}

impl OneRecord {
    /// From a zone-file line `NAME IN TXT "part" "part"...` as keygen prints it.
    fn from_zone_line(line: &str) -> OneRecord {
        let (name, strings) = line.trim().split_once(" IN TXT ").expect("NAME IN TXT \"...\"");
        let parts: Vec<&str> = strings.split('"').skip(1).step_by(2).collect();
        assert!(parts.iter().all(|p| p.len() <= 255), "a DNS string is at most 255 bytes: {line}");
        let text = parts.concat();
        let key = DomainKey::parse(text.as_bytes()).expect("a DKIM key record");
        OneRecord { name: name.to_owned(), record: Txt::from(key) }
    }
}

impl ResolverCache<String, Txt> for OneRecord {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        String: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        (self.name.borrow() == name).then(|| self.record.clone())
    }

    fn remove<Q>(&self, _: &Q) -> Option<Txt>
    where
        String: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _: String, _: Txt, _: std::time::Instant) {}
}

/// mail-auth's verdict on `raw`'s one signature, and the headers it covers.
fn verify(raw: &[u8], record: &OneRecord) -> (DkimResult, Vec<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let message = AuthenticatedMessage::parse(raw).expect("a parsable message");
        // A resolver that is never asked: the record comes from the cache.
        let authenticator = MessageAuthenticator::new_cloudflare().unwrap();
        let results = authenticator.verify_dkim(Parameters::new(&message).with_txt_cache(record)).await;
        assert_eq!(results.len(), 1, "one signature");
        let signed = results[0].signature().map(|s| s.h.iter().map(|h| h.to_ascii_lowercase()).collect());
        (results[0].result().clone(), signed.unwrap_or_default())
    })
}

/// `patron dkim keygen` into `file`; returns the printed record.
fn keygen(env: &TestEnv, algorithm: &str, file: &str) -> String {
    let run = env.ok(&[
        "dkim",
        "keygen",
        "--selector",
        "s2026",
        "--domain",
        "shop.example",
        "--algorithm",
        algorithm,
        "--out",
        file,
    ]);
    run.stdout
}

/// Replaces the first `from` after byte `at` of `raw`.
fn tampered(raw: &[u8], at: usize, from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(raw.to_vec()).unwrap();
    let found = at + text[at..].find(from).expect("text to tamper with");
    format!("{}{to}{}", &text[..found], &text[found + from.len()..]).into_bytes()
}

#[test]
fn mail_sent_with_a_generated_key_verifies_against_the_printed_record_on_both_engines() {
    each_backend(|env| {
        customers(env, 2);
        // Loyalty mail: a single text part, no unsubscribe headers.
        env.write("campaigns/club.toml", LOYALTY);
        for (algorithm, k) in [("rsa-sha256", "rsa"), ("ed25519-sha256", "ed25519")] {
            let key_file = env.path(&format!("{k}.key"));
            let printed = keygen(env, algorithm, &key_file);
            assert!(
                printed.starts_with(&format!("s2026._domainkey.shop.example. IN TXT \"v=DKIM1; k={k}; p=")),
                "{printed}"
            );
            assert_eq!(printed.lines().count(), 1, "{printed}");
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
            let key = std::fs::read_to_string(&key_file).unwrap();
            assert!(key.starts_with("-----BEGIN PRIVATE KEY-----\n"), "PKCS#8 PEM");
            // An existing key is never overwritten.
            let again =
                env.patron(&["dkim", "keygen", "--selector", "x", "--domain", "shop.example", "--out", &key_file]);
            assert_eq!(again.code, 2, "{}", again.stderr);
            assert!(again.stderr.contains("already exists"), "{}", again.stderr);
            assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);

            std::thread::sleep(std::time::Duration::from_millis(1100)); // a new run for each algorithm
            plan(env);
            env.ok(&["campaign", "run", "club"]);
            let mail_dir = env.path(&format!("mail-{k}"));
            let sent = env
                .command(&["send"])
                .env("PATRON__UNSUBSCRIBE__SECRET", SECRET)
                .env("PATRON__DELIVERY__FILE_DIR", &mail_dir)
                .env("PATRON__DKIM__SELECTOR", "s2026")
                .env("PATRON__DKIM__DOMAIN", "shop.example")
                .env("PATRON__DKIM__ALGORITHM", algorithm)
                .env("PATRON__DKIM__PRIVATE_KEY_FILE", &key_file)
                .output()
                .unwrap();
            let sent = Run::from(sent);
            assert_eq!(sent.stdout, "4 sent, 0 to retry later, 0 failed, 0 suppressed, 0 unknown\n", "{}", sent.stderr);
            assert!(!sent.stderr.contains("PRIVATE KEY"), "{}", sent.stderr);

            let record = OneRecord::from_zone_line(&printed);
            // Another key published under the same name does not verify the mail.
            let other_record = OneRecord::from_zone_line(&keygen(env, algorithm, &env.path(&format!("{k}-other.key"))));
            let files: Vec<_> = std::fs::read_dir(&mail_dir).unwrap().map(|e| e.unwrap().path()).collect();
            assert_eq!(files.len(), 4);

            for file in files {
                let raw = std::fs::read(&file).unwrap();
                let text = String::from_utf8_lossy(&raw);
                assert_eq!(text.matches("DKIM-Signature:").count(), 1, "signed once: {text}");
                assert!(text.contains(&format!("a={algorithm}")) && text.contains("c=relaxed/relaxed"), "{text}");
                let (result, signed) = verify(&raw, &record);
                assert_eq!(result, DkimResult::Pass, "{algorithm} on {:?}: {text}", env.backend);
                for header in
                    ["from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"]
                {
                    assert!(signed.iter().any(|h| h == header), "{header} not signed: {signed:?}");
                }

                let body = text.find("\r\n\r\n").unwrap();
                let changed_body = tampered(&raw, body, "Hi ", "Hj ");
                assert_ne!(verify(&changed_body, &record).0, DkimResult::Pass, "a changed body must fail");
                // Every message, loyalty mail too, has the one-click headers.
                let at = text.find("List-Unsubscribe:").expect("a List-Unsubscribe header");
                let changed_link = tampered(&raw, at, "token=", "token=x");
                assert_ne!(verify(&changed_link, &record).0, DkimResult::Pass, "a changed List-Unsubscribe must fail");
                assert_ne!(verify(&raw, &other_record).0, DkimResult::Pass, "another key must fail");
            }
        }
    });
}

#[test]
fn without_a_selector_nothing_is_signed() {
    let env = TestEnv::new(Backend::Sqlite);
    customers(&env, 1);
    plan(&env);
    let key_file = env.path("unused.key");
    keygen(&env, "rsa-sha256", &key_file);
    let run = env
        .command(&["send"])
        .env("PATRON__UNSUBSCRIBE__SECRET", SECRET)
        .env("PATRON__DKIM__DOMAIN", "shop.example")
        .env("PATRON__DKIM__PRIVATE_KEY_FILE", &key_file)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let mail = std::fs::read_dir(env.dir.path().join("data/mail")).unwrap().next().unwrap().unwrap().path();
    assert!(!std::fs::read_to_string(mail).unwrap().contains("DKIM-Signature"));
}

/// `patron config` with `[dkim]` set for shop.example and `extra` variables.
fn config_with(env: &TestEnv, extra: &[(&str, &str)]) -> Run {
    let mut command = env.command(&["config"]);
    command.env("PATRON__DKIM__SELECTOR", "s2026").env("PATRON__DKIM__DOMAIN", "shop.example");
    for (key, value) in extra {
        command.env(key, value);
    }
    Run::from(command.output().unwrap())
}

#[test]
fn a_missing_or_unreadable_key_is_refused_at_load_naming_the_key_and_file() {
    let env = TestEnv::new(Backend::Sqlite);
    let missing = env.path("missing.key");
    let run = config_with(&env, &[("PATRON__DKIM__PRIVATE_KEY_FILE", &missing)]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("`dkim.private_key_file` (from the environment): cannot read"), "{}", run.stderr);
    assert!(run.stderr.contains(&missing), "{}", run.stderr);

    let run = config_with(&env, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("`dkim.private_key_file`") && run.stderr.contains("no key"), "{}", run.stderr);

    // A good key for the other algorithm, and text that is no key, are refused without showing them.
    let ed25519 = env.path("ed25519.key");
    keygen(&env, "ed25519-sha256", &ed25519);
    let bad = env
        .write("bad.key", "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LWJ1dC1icm9rZW4=\n-----END RSA PRIVATE KEY-----\n");
    for file in [&ed25519, &bad] {
        let run = config_with(&env, &[("PATRON__DKIM__PRIVATE_KEY_FILE", file.as_str())]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        let expected = format!("`dkim.private_key_file` (from the environment): {file}: not an RSA private key");
        assert!(run.stderr.contains(&expected), "{}", run.stderr);
        assert!(!run.stderr.contains("c2VjcmV0") && !run.stderr.contains("BEGIN"), "{}", run.stderr);
    }
    let run =
        config_with(&env, &[("PATRON__DKIM__PRIVATE_KEY", "c2VjcmV0"), ("PATRON__DKIM__ALGORITHM", "ed25519-sha256")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("`dkim.private_key` (from the environment): PATRON__DKIM__PRIVATE_KEY: not an Ed25519"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("c2VjcmV0"), "{}", run.stderr);

    let run = config_with(&env, &[("PATRON__DKIM__ALGORITHM", "rsa-sha1")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("`dkim.algorithm` (from the environment): expected `rsa-sha256` or `ed25519-sha256`"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_key_comes_from_the_environment_or_a_file_never_from_the_settings_file() {
    let env = TestEnv::new(Backend::Sqlite);
    let key_file = env.path("ed25519.key");
    keygen(&env, "ed25519-sha256", &key_file);
    let pem = std::fs::read_to_string(&key_file).unwrap();
    let run = config_with(&env, &[("PATRON__DKIM__PRIVATE_KEY", &pem), ("PATRON__DKIM__ALGORITHM", "ed25519-sha256")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("# dkim private key: set"), "{}", run.stdout);
    assert!(!run.stdout.contains("PRIVATE KEY-----"), "{}", run.stdout);

    let settings = env.write("patron.toml", format!("[dkim]\nselector = \"s\"\nprivate_key = '''{pem}'''\n"));
    let run = env.patron(&["--config", &settings, "config"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("`dkim.private_key`") && run.stderr.contains("PATRON__DKIM__PRIVATE_KEY"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("PRIVATE KEY-----"), "{}", run.stderr);
}

#[test]
fn keygen_refuses_a_bad_selector_or_domain_with_exit_code_2() {
    let env = TestEnv::new(Backend::Sqlite);
    let out = env.path("k.key");
    for (selector, domain) in [("bad selector", "shop.example"), ("s", "shop..example"), ("s", "shop-.example")] {
        let run = env.patron(&["dkim", "keygen", "--selector", selector, "--domain", domain, "--out", &out]);
        assert_eq!(run.code, 2, "{selector} {domain}: {}", run.stderr);
        assert!(run.stderr.contains("is not a DNS name"), "{}", run.stderr);
    }
    assert!(!std::path::Path::new(&out).exists());
}
