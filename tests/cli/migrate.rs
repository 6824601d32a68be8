use crate::support::each_backend;

#[test]
fn migrate_creates_the_schema_from_an_empty_database_and_then_has_nothing_to_do() {
    each_backend(|env| {
        let first = env.ok(&["migrate"]);
        assert!(
            first.stdout.starts_with("applied 17 migration(s): m20261123_000001_create_customers"),
            "{}",
            first.stdout
        );
        let second = env.ok(&["migrate"]);
        assert_eq!(second.stdout.trim(), "database is up to date");
        let status = env.status();
        assert_eq!(status["customers"], 0);
        assert_eq!(status["orders"], 0);
        assert_eq!(status["interactions"], 0);
    });
}

#[test]
fn any_command_applies_pending_migrations_itself() {
    each_backend(|env| {
        let status = env.status();
        assert_eq!(status["customers"], 0);
        assert_eq!(env.ok(&["migrate"]).stdout.trim(), "database is up to date");
    });
}
