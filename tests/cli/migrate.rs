use crate::support::{Backend, each_backend};

#[test]
fn migrate_creates_the_schema_from_an_empty_database_and_then_has_nothing_to_do() {
    each_backend(|env| {
        let first = env.ok(&["migrate"]);
        assert!(
            first.stdout.starts_with("applied 25 migration(s): m20261123_000001_create_customers"),
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
fn suppressions_are_indexed_by_customer_for_the_checks_before_each_message() {
    each_backend(|env| {
        env.ok(&["migrate"]);
        let sql = match env.backend {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'suppressions' ORDER BY 1"
            }
            Backend::Postgres => "SELECT indexname::text FROM pg_indexes WHERE tablename = 'suppressions' ORDER BY 1",
        };
        assert!(env.strings(sql).contains(&"ix_suppressions_customer_id".to_owned()), "{:?}", env.backend);
    });
}

#[test]
fn postgresql_samples_more_rows_of_the_customer_column_of_orders_and_ledger() {
    each_backend(|env| {
        if env.backend != Backend::Postgres {
            return;
        }
        env.ok(&["migrate"]);
        let targets = env.strings(
            "SELECT c.relname::text || ' ' || CAST(a.attstattarget AS TEXT) FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid \
             WHERE c.relname IN ('orders', 'loyalty_ledger') AND a.attname = 'customer_id' ORDER BY 1",
        );
        assert_eq!(targets, ["loyalty_ledger 1000", "orders 1000"]);
    });
}

#[test]
fn on_postgresql_the_outbox_indexes_the_waiting_messages_by_state_and_those_being_sent_by_lease() {
    each_backend(|env| {
        env.ok(&["migrate"]);
        let definition = match env.backend {
            Backend::Sqlite => "SELECT sql FROM sqlite_master WHERE name = 'ix_outbox_state_not_before'",
            Backend::Postgres => "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_outbox_state_not_before'",
        };
        let definition = env.strings(definition).concat();
        match env.backend {
            // SQLite's planner would not use the index for `state = 'planned'`.
            Backend::Sqlite => assert!(!definition.contains("WHERE"), "{definition}"),
            Backend::Postgres => {
                let condition = definition.split_once("WHERE").map(|(_, condition)| condition).unwrap_or_default();
                for state in ["'planned'", "'retrying'", "'held'"] {
                    assert!(condition.contains(state), "{state} not in: {definition}");
                }
                // The rows being sent are in the leases' index (migration 24).
                for state in ["'sending'", "'sent'", "'control'", "'failed'"] {
                    assert!(!condition.contains(state), "{state} in: {definition}");
                }
                let leases =
                    env.strings("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_outbox_leases'").concat();
                assert!(leases.ends_with(r#"(lease_until) WHERE ((state)::text = 'sending'::text)"#), "{leases}");
            }
        }
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

#[test]
fn external_ids_compare_byte_by_byte_on_postgresql() {
    each_backend(|env| {
        if env.backend != Backend::Postgres {
            return;
        }
        env.ok(&["migrate"]);
        let collations = env.strings(
            "SELECT table_name::text || ' ' || COALESCE(collation_name::text, 'default') \
             FROM information_schema.columns WHERE column_name = 'external_id' \
             AND table_name IN ('customers', 'orders', 'interactions') ORDER BY 1",
        );
        assert_eq!(collations, ["customers C", "interactions C", "orders C"]);
        // Equality is unchanged: an import finds its customers by external id.
        let customers = env.write("customers.csv", "customer_id,email\nC-é1,a@example.com\nc-e2,b@example.com\n");
        let orders = env.write(
            "orders.csv",
            "order_id,customer_id,ordered_at,amount\nO1,C-é1,2026-01-02T10:00:00Z,5.00\nO2,c-e2,2026-01-03T10:00:00Z,6.00\n",
        );
        env.ok(&["import", "customers", &customers]);
        env.ok(&["import", "orders", &orders]);
        let owners = env.strings(
            "SELECT o.external_id || ' ' || c.external_id FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY 1",
        );
        assert_eq!(owners, ["O1 C-é1", "O2 c-e2"]);
    });
}
