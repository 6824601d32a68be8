use crate::support::{Backend, TestEnv};

#[test]
fn an_environment_override_changes_the_setting() {
    let env = TestEnv::new(Backend::Sqlite);
    let shown = env.command(&["config"]).env("PATRON__IMPORT__BATCH_SIZE", "7").output().unwrap();
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(shown.contains("batch_size = 7"), "{shown}");

    let other = env.path("elsewhere.db");
    let run = env.command(&["migrate"]).env("PATRON__DATABASE__URL", format!("sqlite://{other}")).output().unwrap();
    assert!(run.status.success());
    assert!(std::path::Path::new(&other).is_file(), "the overridden database file was not created");
}

#[test]
fn the_default_database_is_an_sqlite_file_in_data_dir() {
    let env = TestEnv::new(Backend::Sqlite);
    let run = env
        .command(&["migrate"])
        .env_remove("PATRON__DATABASE__URL")
        .env("PATRON__DATA_DIR", "state")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(env.dir.path().join("state/patron.db").is_file());
}

#[test]
fn a_bad_value_is_reported_by_its_key_and_origin_with_exit_code_2() {
    let env = TestEnv::new(Backend::Sqlite);
    let cases = [
        ("PATRON__IMPORT__BATCH_SIZE", "abc", "for key `import.batch_size` in the environment"),
        ("PATRON__IMPORT__BATCH_SIZE", "0", "`import.batch_size` (from the environment): must be between 1 and 3000"),
        ("PATRON__LOG__FORMAT", "xml", "`log.format` (from the environment): expected `text` or `json`"),
        (
            "PATRON__DATABASE__URL",
            "mysql://x",
            "`database.url` (from the environment): expected an sqlite:// or postgres:// URL",
        ),
    ];
    for (key, value, expected) in cases {
        let run = crate::support::Run::from(env.command(&["status"]).env(key, value).output().unwrap());
        assert_eq!(run.code, 2, "{key}={value}: {}", run.stderr);
        assert_eq!(
            run.stderr.matches(expected).count(),
            1,
            "{key}={value}: expected {expected:?} once in {}",
            run.stderr
        );
    }
}

#[test]
fn a_bad_value_in_a_config_file_names_the_file() {
    let env = TestEnv::new(Backend::Sqlite);
    let file = env.write("patron.toml", "[import]\nmax_reported_errors = \"many\"\n");
    let run = env.patron(&["--config", &file, "status"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("`import.max_reported_errors`") && run.stderr.contains("patron.toml"),
        "{}",
        run.stderr
    );

    let unknown = env.write("typo.toml", "[databse]\nurl = \"sqlite://x.db\"\n");
    let run = env.patron(&["--config", &unknown, "status"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("databse"), "{}", run.stderr);
}

#[test]
fn secrets_come_from_the_environment_or_a_file_and_never_print() {
    let env = TestEnv::new(Backend::Sqlite);
    let secret = "hunter2-very-secret";
    let run = env.command(&["config"]).env("PATRON__SMTP__PASSWORD", secret).env("RUST_LOG", "trace").output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{err}");
    assert!(out.contains("# smtp password: set"), "{out}");
    assert!(!out.contains(secret) && !err.contains(secret));

    let key = "a-signing-key-of-at-least-32-bytes-0123";
    let key_file = env.write("signing.key", format!("{key}\n"));
    let run = env.command(&["config"]).env("PATRON__UNSUBSCRIBE__SECRET_FILE", &key_file).output().unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(out.contains("# unsubscribe secret: set") && !out.contains(key), "{out}");

    let run = env
        .command(&["config"])
        .env("PATRON__FEEDBACK__IMAP_URL", "imaps://bounces%40shop.example@imap.example.com/INBOX")
        .env("PATRON__FEEDBACK__IMAP_PASSWORD", secret)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(out.contains("# feedback mailbox password: set") && !out.contains(secret), "{out}");
    // A mailbox with no password is refused with its key named.
    let run =
        env.command(&["config"]).env("PATRON__FEEDBACK__IMAP_URL", "imaps://u@imap.example.com/").output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("feedback.imap_url") && err.contains("needs a password"), "{err}");

    let in_file = env.write("leaky.toml", format!("[smtp]\npassword = \"{secret}\"\n"));
    let run = crate::support::Run::from(env.command(&["--config", &in_file, "config"]).output().unwrap());
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("secrets are not read from config files; set PATRON__SMTP__PASSWORD"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(secret));
    // Also when the environment sets the same secret, whose value would win.
    let in_file = env.write("leaky.toml", format!("[unsubscribe]\nsecret = \"{key}\"\n"));
    let run = env.command(&["--config", &in_file, "config"]).env("PATRON__UNSUBSCRIBE__SECRET", key).output().unwrap();
    let run = crate::support::Run::from(run);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stderr.contains("`unsubscribe.secret`") && run.stderr.contains("leaky.toml"), "{}", run.stderr);
    assert!(!run.stderr.contains(key));
}

#[test]
fn a_short_unsubscribe_secret_is_refused_and_a_readable_secret_file_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new(Backend::Sqlite);
    let run =
        crate::support::Run::from(env.command(&["config"]).env("PATRON__UNSUBSCRIBE__SECRET", "x").output().unwrap());
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("`unsubscribe.secret` (from the environment): the unsubscribe secret must be at least 32 bytes"),
        "{}",
        run.stderr
    );

    let key_file = env.write("signing.key", "k".repeat(32));
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = crate::support::Run::from(
        env.command(&["status"]).env("PATRON__UNSUBSCRIBE__SECRET_FILE", &key_file).output().unwrap(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("unsubscribe.secret_file") && run.stderr.contains("can be read by other users (mode 644)"),
        "{}",
        run.stderr
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = crate::support::Run::from(
        env.command(&["status"]).env("PATRON__UNSUBSCRIBE__SECRET_FILE", &key_file).output().unwrap(),
    );
    assert!(!run.stderr.contains("can be read by other users"), "{}", run.stderr);
}

#[test]
fn bad_delivery_and_schedule_settings_are_refused_with_their_key() {
    let env = TestEnv::new(Backend::Sqlite);
    let cases = [
        (
            "PATRON__DAEMON__LOYALTY_SCHEDULE",
            "61 2 * * *",
            "`daemon.loyalty_schedule` (from the environment): `61 2 * * *` is not a valid cron schedule: Minutes must be at most 59",
        ),
        (
            "PATRON__DELIVERY__RETRY_AFTER",
            "0s",
            "`delivery.retry_after` (from the environment): must be longer than 0s",
        ),
        (
            "PATRON__DELIVERY__RETRY_MAX",
            "30s",
            "`delivery.retry_max` (from the environment): must be at least delivery.retry_after (1m)",
        ),
        ("PATRON__SMTP__PORT", "0", "`smtp.port` (from the environment): must be a port number from 1 to 65535"),
    ];
    for (key, value, expected) in cases {
        let run = crate::support::Run::from(env.command(&["status"]).env(key, value).output().unwrap());
        assert_eq!(run.code, 2, "{key}={value}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{key}={value}: expected {expected:?} in {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    }
}

#[test]
fn usage_errors_exit_with_2_and_every_command_has_help() {
    let env = TestEnv::new(Backend::Sqlite);
    assert_eq!(env.patron(&["import", "products", "x.csv"]).code, 2);
    assert_eq!(env.patron(&["frobnicate"]).code, 2);
    for command in ["migrate", "import", "status", "generate", "config"] {
        let run = env.ok(&[command, "--help"]);
        assert!(run.stdout.contains("Usage: patron"), "{command}: {}", run.stdout);
    }
}

#[test]
fn own_topics_replace_the_defaults_and_a_bad_topic_name_is_refused_with_its_key() {
    let env = TestEnv::new(Backend::Sqlite);
    let own = env.write("own.toml", "[subscriptions]\ntopics = [\"deals\", \"events\"]\n");
    std::fs::create_dir_all(env.dir.path().join("campaigns")).unwrap();
    env.write(
        "campaigns/sale.toml",
        "topic = \"deals\"\n[audience]\nwhere = 'subscribed(\"events\")'\n\n[message]\nfrom = \"shop@example.com\"\nsubject = \"S\"\ntext = \"T {{ unsubscribe_url }}\"\n",
    );
    let run = env.command(&["--config", &own, "campaign", "validate"]).output().unwrap();
    let printed = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success() && printed.contains("1 of 1 campaign file(s) valid"), "{printed}");
    let shown = env.command(&["--config", &own, "config"]).output().unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains("topics = [\"deals\", \"events\"]"));

    // The default topics are gone: a campaign of kind marketing must name one.
    env.write("campaigns/sale.toml", "[audience]\nwhere = 'frequency > 1'\n\n[message]\nfrom = \"shop@example.com\"\nsubject = \"S\"\ntext = \"T {{ unsubscribe_url }}\"\n");
    let run = env.command(&["--config", &own, "campaign", "validate"]).output().unwrap();
    let printed = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(2), "{printed}");
    assert!(
        printed.contains("topic `offers` is not one of the topics in [subscriptions]: `deals`, `events`"),
        "{printed}"
    );

    let bad = env.write("bad.toml", "[subscriptions]\ntopics = [\"Big Deals\"]\n");
    let run = env.command(&["--config", &bad, "config"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`subscriptions.topics`") && stderr.contains("`Big Deals`"), "{stderr}");
}

#[test]
fn every_bad_setting_is_reported_at_once_each_with_its_key_and_origin() {
    let env = TestEnv::new(Backend::Sqlite);
    let file = env.write("patron.toml", "[daemon]\nscore_schedule = \"0 25 * * *\"\n");
    let run = crate::support::Run::from(
        env.command(&["--config", &file, "status"])
            .env("PATRON__LOG__LEVEL", "loud")
            .env("PATRON__DELIVERY__LEASE", "0s")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("configuration: 3 problems:"), "{}", run.stderr);
    for expected in [
        "`log.level` (from the environment): expected one of trace, debug, info, warn, error",
        "`delivery.lease` (from the environment): must be longer than 0s",
        "): `0 25 * * *` is not a valid cron schedule",
    ] {
        assert_eq!(run.stderr.matches(expected).count(), 1, "expected {expected:?} once in {}", run.stderr);
    }
    let schedule = run.stderr.lines().find(|l| l.contains("`daemon.score_schedule` (from ")).unwrap_or_default();
    assert!(schedule.contains("patron.toml"), "the schedule's problem names its file: {}", run.stderr);
}

#[test]
fn bad_feeds_are_refused_each_with_its_key_and_file_and_a_good_one_is_listed() {
    let env = TestEnv::new(Backend::Sqlite);
    let file = env.write(
        "feeds.toml",
        "[[feeds]]\nname = \"drop\"\nkind = \"folder\"\n\n\
         [[feeds]]\nname = \"shop\"\nkind = \"sql\"\nurl = \"postgres://reader:hunter2@db/shop\"\n\
         [feeds.queries]\norders = \"select * from orders\"\n\n\
         [[feeds]]\nname = \"shop\"\nkind = \"folder\"\npath = \"in\"\nschedule = \"every day\"\n",
    );
    let run = env.patron(&["--config", &file, "feed", "list"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    for expected in [
        "`feeds[0].path` (from ",
        "feed `drop`: a folder feed needs the `path` of its drop folder",
        "`feeds[1].url`",
        "PATRON_FEED_SHOP_PASSWORD, not in the URL",
        "`feeds[1].queries.orders`",
        "`feeds[2].name`",
        "two feeds are named `shop`",
        "`feeds[2].schedule`",
    ] {
        assert!(run.stderr.contains(expected), "missing {expected:?} in:\n{}", run.stderr);
    }
    assert!(run.stderr.contains("feeds.toml"), "{}", run.stderr);
    assert!(!run.stderr.contains("hunter2"), "the password never prints:\n{}", run.stderr);

    let good = env.write("good.toml", "[[feeds]]\nname = \"drop\"\nkind = \"folder\"\npath = \"in\"\n");
    let listed = env.ok(&["--config", &good, "feed", "list"]).stdout;
    assert!(listed.contains("drop (folder): schedule by hand"), "{listed}");
    let run = env.patron(&["--config", &good, "feed", "run", "nope"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no feed named `nope`; the feeds are: drop"), "{}", run.stderr);
}
