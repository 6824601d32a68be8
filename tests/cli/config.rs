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
    let run = env.command(&["migrate"]).env_remove("PATRON__DATABASE__URL").env("PATRON__DATA_DIR", "state").output().unwrap();
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
        ("PATRON__DATABASE__URL", "mysql://x", "`database.url` (from the environment): expected an sqlite:// or postgres:// URL"),
    ];
    for (key, value, expected) in cases {
        let run = crate::support::Run::from(env.command(&["status"]).env(key, value).output().unwrap());
        assert_eq!(run.code, 2, "{key}={value}: {}", run.stderr);
        assert_eq!(run.stderr.matches(expected).count(), 1, "{key}={value}: expected {expected:?} once in {}", run.stderr);
    }
}

#[test]
fn a_bad_value_in_a_config_file_names_the_file() {
    let env = TestEnv::new(Backend::Sqlite);
    let file = env.write("patron.toml", "[import]\nmax_reported_errors = \"many\"\n");
    let run = env.patron(&["--config", &file, "status"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("`import.max_reported_errors`") && run.stderr.contains("patron.toml"), "{}", run.stderr);

    let unknown = env.write("typo.toml", "[databse]\nurl = \"sqlite://x.db\"\n");
    let run = env.patron(&["--config", &unknown, "status"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("databse"), "{}", run.stderr);
}

#[test]
fn secrets_come_from_the_environment_or_a_file_and_never_print() {
    let env = TestEnv::new(Backend::Sqlite);
    let secret = "hunter2-very-secret";
    let run = env
        .command(&["config"])
        .env("PATRON__SMTP__PASSWORD", secret)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{err}");
    assert!(out.contains("# smtp password: set"), "{out}");
    assert!(!out.contains(secret) && !err.contains(secret));

    let key_file = env.write("signing.key", format!("{secret}\n"));
    let run = env.command(&["config"]).env("PATRON__UNSUBSCRIBE__SECRET_FILE", &key_file).output().unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(out.contains("# unsubscribe secret: set") && !out.contains(secret), "{out}");

    let in_file = env.write("leaky.toml", format!("[smtp]\npassword = \"{secret}\"\n"));
    let run = crate::support::Run::from(env.command(&["--config", &in_file, "config"]).output().unwrap());
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("secrets are not read from config files; set PATRON__SMTP__PASSWORD"), "{}", run.stderr);
    assert!(!run.stderr.contains(secret));
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
