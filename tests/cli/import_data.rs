use crate::support::{TestEnv, each_backend, example};

fn import(env: &TestEnv, what: &str, file: &str) -> String {
    env.ok(&["import", what, file]).stdout
}

#[test]
fn the_example_data_imports_completely_and_a_second_import_changes_nothing() {
    each_backend(|env| {
        let customers = example("customers.csv").display().to_string();
        let orders = example("orders.csv").display().to_string();
        let interactions = example("interactions.csv").display().to_string();
        assert!(import(env, "customers", &customers).contains("2357 rows read, 2357 new or changed"));
        assert!(import(env, "orders", &orders).contains("6919 rows read, 6919 new or changed"));
        assert!(import(env, "interactions", &interactions).contains("479 rows read, 479 new or changed"));
        let mut first = env.status();
        assert_eq!((first["customers"].as_u64(), first["orders"].as_u64()), (Some(2357), Some(6919)));
        assert_eq!(first["interactions"], 479);
        let first_loaded_at = first["data_loaded_at"].take();
        assert!(first_loaded_at.is_string(), "an import records the time of its load");

        assert!(import(env, "customers", &customers).contains("0 new or changed, 2357 unchanged"));
        assert!(import(env, "orders", &orders).contains("0 new or changed, 6919 unchanged"));
        assert!(import(env, "interactions", &interactions).contains("0 new or changed, 479 unchanged"));
        let mut second = env.status();
        // Only the time of the newest load moves: the data was confirmed fresh again.
        let loaded_at =
            |value: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap();
        assert!(loaded_at(&second["data_loaded_at"].take()) >= loaded_at(&first_loaded_at));
        assert_eq!(second, first);
    });
}

/// On PostgreSQL the stored rows of a batch are read with its least and
/// greatest ids written into the statement: ids with quotes and
/// backslashes must mean themselves there.
#[test]
fn ids_with_quotes_and_backslashes_are_found_again_by_a_second_import() {
    each_backend(|env| {
        let rows = [r"O'Brien", r"back\slash", r"E'\x27", r"\'; DROP TABLE customers; --", "plain"];
        let file = |email_domain: &str| {
            let lines: Vec<String> =
                rows.iter().enumerate().map(|(i, id)| format!("\"{id}\",c{i}@{email_domain}")).collect();
            format!("customer_id,email\n{}\n", lines.join("\n"))
        };
        let first = env.write("first.csv", file("example.com"));
        assert!(import(env, "customers", &first).contains("5 rows read, 5 new or changed"));
        assert!(import(env, "customers", &first).contains("0 new or changed, 5 unchanged"));
        let changed = env.write("changed.csv", file("example.org"));
        assert!(import(env, "customers", &changed).contains("5 new or changed, 0 unchanged"));
        let stored = env.strings("SELECT external_id || ' ' || email FROM customers ORDER BY id");
        let expected: Vec<String> = rows.iter().enumerate().map(|(i, id)| format!("{id} c{i}@example.org")).collect();
        assert_eq!(stored, expected);
    });
}

#[test]
fn a_changed_row_updates_its_record_and_columns_left_out_keep_their_values() {
    each_backend(|env| {
        let v1 = env.write(
            "v1.csv",
            "customer_id,email,first_name,marketing_consent,tier_hint\n\
             A1,ann@example.com,Ann,yes,gold\n\
             B2,bob@example.com,Bob,no,\n",
        );
        env.ok(&["import", "customers", &v1]);
        let v2 = env.write("v2.csv", "customer_id,email\nA1,ann.new@example.com\nB2,bob@example.com\n");
        let run = env.ok(&["import", "customers", &v2]);
        assert!(run.stdout.contains("2 rows read, 1 new or changed, 1 unchanged"), "{}", run.stdout);
        let rows = env.strings(
            "SELECT external_id || '|' || email || '|' || first_name || '|' || \
             CAST(marketing_consent AS TEXT) FROM customers ORDER BY external_id",
        );
        let consent = |v: bool| match (env.backend, v) {
            (crate::support::Backend::Sqlite, true) => "1",
            (crate::support::Backend::Sqlite, false) => "0",
            (_, true) => "true",
            (_, false) => "false",
        };
        assert_eq!(
            rows,
            vec![
                format!("A1|ann.new@example.com|Ann|{}", consent(true)),
                format!("B2|bob@example.com|Bob|{}", consent(false))
            ]
        );
        let attributes = env.strings("SELECT CAST(attributes AS TEXT) FROM customers WHERE external_id = 'A1'");
        assert_eq!(attributes[0].replace(' ', ""), r#"{"tier_hint":"gold"}"#);
    });
}

#[test]
fn skip_invalid_imports_exactly_the_good_rows_and_writes_the_rest_with_reasons() {
    each_backend(|env| {
        let customers = env.write("c.csv", "customer_id,email\nC1,c1@example.com\nC2,c2@example.com\n");
        env.ok(&["import", "customers", &customers]);
        let orders = env.write(
            "o.csv",
            "order_id,customer_id,ordered_at,amount\n\
             O1,C1,2026-01-02,10.00\n\
             O2,C1,2026-01-03,-4\n\
             O3,C2,2026-01-04T10:00:00Z,5.5\n\
             O4,NOPE,2026-01-05,1\n\
             O5,C2,yesterday,1\n\
             O6,C2,2026-01-06,7\n\
             O7,C2,2026-01-07,1,surplus\n",
        );
        let rejects = env.path("bad.csv");
        let run = env.ok(&["import", "orders", &orders, "--skip-invalid", "--rejects", &rejects]);
        assert!(run.stdout.contains("7 rows read, 3 new or changed, 0 unchanged, 4 rejected"), "{}", run.stdout);
        assert_eq!(env.strings("SELECT external_id FROM orders ORDER BY external_id"), vec!["O1", "O3", "O6"]);
        let written = std::fs::read_to_string(&rejects).expect("reject file");
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines[0], "line,problem,order_id,customer_id,ordered_at,amount");
        assert_eq!(lines[1], "3,amount: amount must not be negative,O2,C1,2026-01-03,-4");
        assert!(lines[2].starts_with("6,ordered_at: expected a date YYYY-MM-DD"), "{}", lines[2]);
        assert!(lines[2].ends_with(",O5,C2,yesterday,1"), "{}", lines[2]);
        assert_eq!(lines[3], r#"8,"expected 4 fields as in the header, found 5",O7,C2,2026-01-07,1,surplus"#);
        assert_eq!(lines[4], "5,customer_id: unknown customer; import the customers first,O4,NOPE,2026-01-05,1");
        assert_eq!(lines.len(), 5);
    });
}

/// Customer n of 300 that interaction n refers to: all over the customers' ids.
fn scattered_customer(n: usize) -> String {
    format!("C{:04}", (7 * n) % 300 + 1)
}

#[test]
fn interactions_whose_customers_are_scattered_over_many_batches_each_land_with_their_own_customer() {
    each_backend(|env| {
        let customers: String = (1..=300).map(|i| format!("C{i:04},c{i}@example.com\n")).collect();
        env.ok(&["import", "customers", &env.write("c.csv", format!("customer_id,email\n{customers}"))]);
        let mut rows = String::from("interaction_id,customer_id,kind,opened_at\n");
        for n in 1..=60 {
            let customer = if n == 44 { "C9999".to_owned() } else { scattered_customer(n) };
            rows += &format!("I{n:03},{customer},inquiry,2026-01-02\n");
        }
        let file = env.write("i.csv", rows);
        // On PostgreSQL the customers are looked up ahead of the writer on as
        // many as two more connections as the pool has room for, with one by
        // the writer itself; batches of 10 rows there (1 on SQLite).
        let unchanged = "0 new or changed, 59 unchanged";
        for (connections, landed) in [("8", "59 new or changed, 0 unchanged"), ("2", unchanged), ("1", unchanged)] {
            let rejects = env.path(&format!("rejects-{connections}.csv"));
            let args = ["import", "interactions", &file, "--skip-invalid", "--rejects", &rejects];
            let output = env
                .command(&args)
                .env("PATRON__IMPORT__BATCH_SIZE", "1")
                .env("PATRON__DATABASE__MAX_CONNECTIONS", connections)
                .output()
                .expect("run patron import");
            let run = crate::support::Run::from(output);
            assert_eq!(run.code, 0, "{}", run.stderr);
            assert!(run.stdout.contains(&format!("60 rows read, {landed}, 1 rejected")), "{}", run.stdout);
            let refused = std::fs::read_to_string(&rejects).expect("reject file");
            assert_eq!(
                refused.lines().nth(1),
                Some("45,customer_id: unknown customer; import the customers first,I044,C9999,inquiry,2026-01-02")
            );
            let landed = env.strings(
                "SELECT i.external_id || ' ' || c.external_id FROM interactions i \
                 JOIN customers c ON c.id = i.customer_id ORDER BY i.external_id",
            );
            let expected: Vec<String> =
                (1..=60).filter(|n| *n != 44).map(|n| format!("I{n:03} {}", scattered_customer(n))).collect();
            assert_eq!(landed, expected);
        }
    });
}

#[test]
fn interactions_keep_kind_status_and_times() {
    each_backend(|env| {
        let customers = env.write("c.csv", "customer_id,email\nC1,c1@example.com\n");
        env.ok(&["import", "customers", &customers]);
        let interactions = env.write(
            "i.csv",
            "interaction_id,customer_id,kind,opened_at,resolved_at,status\n\
             I1,C1,Complaint,2026-01-02,2026-01-05,\n\
             I2,C1,inquiry,2026-01-03,,\n\
             I3,C1,suggestion,2026-01-04,,closed\n",
        );
        env.ok(&["import", "interactions", &interactions]);
        let rows =
            env.strings("SELECT external_id || ':' || kind || ':' || status FROM interactions ORDER BY external_id");
        assert_eq!(rows, vec!["I1:complaint:resolved", "I2:inquiry:open", "I3:suggestion:closed"]);
        assert_eq!(env.status()["open_complaints"], 0);
    });
}

/// Imports in batches of two rows (twenty on PostgreSQL, where a batch is
/// ten statements' worth), so that several batches are written before the
/// bad row is read.
fn import_in_small_batches(env: &TestEnv, args: &[&str]) -> crate::support::Run {
    crate::support::Run::from(
        env.command(args).env("PATRON__IMPORT__BATCH_SIZE", "2").output().expect("run patron import"),
    )
}

#[test]
fn a_bad_row_after_written_batches_rejects_the_whole_file_and_escapes_land_exactly() {
    each_backend(|env| {
        let first = env.write("first.csv", "customer_id,email,first_name\nK1,k1@example.com,Kept\n");
        env.ok(&["import", "customers", &first]);
        let before = env.dump();
        // Backslashes, a literal \N, a tab and a line break (in an attribute)
        // and non-ASCII text: everything COPY's text format must escape.
        // Forty rows first, so that PostgreSQL's batches of twenty are
        // written before the bad row; the last batch mixes a changed row
        // (K1) with new ones.
        let filler: String = (1..=40).map(|i| format!("F{i:02},f{i}@example.com,Filler,\n")).collect();
        let file = env.write(
            "tricky.csv",
            format!(
                "customer_id,email,first_name,note\n{filler}\
                 K1,k1@example.com,Changed,\n\
                 T1,t1@example.com,back\\slash \\N,\"tab\there\"\n\
                 T2,t2@example.com,Zoë 😀,\"two\nlines\"\n\
                 T3,t3@example.com,Third,\n\
                 T4,t4@example.com,Fourth,\n\
                 T5,not-an-address,Bad,\n\
                 T6,t6@example.com,After,\n"
            ),
        );
        let refused = import_in_small_batches(env, &["import", "customers", &file]);
        assert_eq!(refused.code, 2, "{}\n{}", refused.stdout, refused.stderr);
        assert!(refused.stderr.contains("line 48, column `email`"), "{}", refused.stderr);
        assert_eq!(env.dump(), before, "a refused file leaves the database as it was");

        let landed = import_in_small_batches(env, &["import", "customers", &file, "--skip-invalid"]);
        assert_eq!(landed.code, 0, "{}\n{}", landed.stdout, landed.stderr);
        assert!(
            landed.stdout.contains("47 rows read, 46 new or changed, 0 unchanged, 1 rejected"),
            "{}",
            landed.stdout
        );
        let names = env.strings(
            "SELECT external_id || '|' || first_name FROM customers WHERE external_id NOT LIKE 'F%' ORDER BY external_id",
        );
        assert_eq!(
            names,
            ["K1|Changed", "T1|back\\slash \\N", "T2|Zoë 😀", "T3|Third", "T4|Fourth", "T6|After"].map(String::from)
        );
        assert_eq!(env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM customers WHERE external_id LIKE 'F%'"), ["40"]);
        let note = match env.backend {
            crate::support::Backend::Sqlite => "json_extract(attributes, '$.note')",
            _ => "CAST(attributes AS jsonb)->>'note'",
        };
        let notes = env.strings(&format!(
            "SELECT external_id || '=' || ({note}) FROM customers WHERE external_id IN ('T1', 'T2') ORDER BY external_id"
        ));
        assert_eq!(notes, ["T1=tab\there", "T2=two\nlines"].map(String::from));
    });
}

#[test]
fn orders_imported_again_with_new_changed_and_unchanged_rows_count_and_land_each_once() {
    each_backend(|env| {
        let customers = env.write("c.csv", "customer_id,email\nC1,c1@example.com\n");
        env.ok(&["import", "customers", &customers]);
        let first = env.write(
            "o1.csv",
            "order_id,customer_id,ordered_at,amount\nO1,C1,2026-01-02,10\nO2,C1,2026-01-03,20\nO3,C1,2026-01-04,30\n",
        );
        env.ok(&["import", "orders", &first]);
        // One batch holding a changed row, an unchanged one and a new one:
        // on PostgreSQL the new one is copied straight in, the unchanged
        // one left out and the changed one upserted.
        let second = env.write(
            "o2.csv",
            "order_id,customer_id,ordered_at,amount\nO2,C1,2026-01-03,25\nO4,C1,2026-01-05,40\nO3,C1,2026-01-04,30\n",
        );
        let run = env.ok(&["import", "orders", &second]);
        assert!(run.stdout.contains("3 rows read, 2 new or changed, 1 unchanged"), "{}", run.stdout);
        let rows =
            env.strings("SELECT external_id || '=' || CAST(amount_cents AS TEXT) FROM orders ORDER BY external_id");
        assert_eq!(rows, ["O1=1000", "O2=2500", "O3=3000", "O4=4000"].map(String::from));
    });
}

#[test]
fn a_re_import_writes_only_the_rows_whose_values_differ_and_leaves_the_others_as_they_were() {
    each_backend(|env| {
        let customers = env.write(
            "c1.csv",
            "customer_id,email,last_name,vip\nC1,c1@example.com,Ames,yes\nC2,c2@example.com,Bell,no\nC3,c3@example.com,,no\n",
        );
        env.ok(&["import", "customers", &customers]);
        let orders = env.write(
            "o1.csv",
            "order_id,customer_id,ordered_at,amount,currency\nO1,C1,2026-01-02,10,EUR\nO2,C1,2026-01-03,20,\n",
        );
        env.ok(&["import", "orders", &orders]);
        env.execute("UPDATE customers SET updated_at = '2020-01-01T00:00:00Z'");
        env.execute("UPDATE orders SET updated_at = '2020-01-01T00:00:00Z'");

        // C2's attribute and C3's empty name change; O2's currency goes
        // from nothing to USD; C1 and O1 are as stored.
        let customers = env.write(
            "c2.csv",
            "customer_id,email,last_name,vip\nC1,c1@example.com,Ames,yes\nC2,c2@example.com,Bell,yes\nC3,c3@example.com,Cole,no\n",
        );
        let run = env.ok(&["import", "customers", &customers]);
        assert!(run.stdout.contains("3 rows read, 2 new or changed, 1 unchanged"), "{}", run.stdout);
        let orders = env.write(
            "o2.csv",
            "order_id,customer_id,ordered_at,amount,currency\nO1,C1,2026-01-02,10,EUR\nO2,C1,2026-01-03,20,USD\nO3,C2,2026-01-04,30,EUR\n",
        );
        let run = env.ok(&["import", "orders", &orders]);
        assert!(run.stdout.contains("3 rows read, 2 new or changed, 1 unchanged"), "{}", run.stdout);

        let untouched = "CASE WHEN updated_at < '2021-01-01T00:00:00Z' THEN 'kept' ELSE 'rewritten' END";
        let customers = env.strings(&format!(
            "SELECT external_id || ' ' || COALESCE(last_name, '-') || ' ' || {untouched} FROM customers ORDER BY external_id"
        ));
        assert_eq!(customers, ["C1 Ames kept", "C2 Bell rewritten", "C3 Cole rewritten"].map(String::from));
        let orders = env.strings(&format!(
            "SELECT external_id || ' ' || COALESCE(currency, '-') || ' ' || {untouched} FROM orders ORDER BY external_id"
        ));
        assert_eq!(orders, ["O1 EUR kept", "O2 USD rewritten", "O3 EUR rewritten"].map(String::from));
    });
}

/// An order finds its customer by an external id of any characters (the
/// lookup of a batch's customers reads them back as JSON on SQLite).
#[test]
fn orders_find_customers_whose_ids_hold_quotes_backslashes_commas_and_accents() {
    each_backend(|env| {
        let ids = [r#"Q"uote"#, r"back\slash", "comma,id", "Zoë 7", "[1,2]", "plain"];
        let quoted = |id: &str| format!("\"{}\"", id.replace('"', "\"\""));
        let mut customers = String::from("customer_id,email\n");
        let mut orders = String::from("order_id,customer_id,ordered_at,amount\n");
        for (i, id) in ids.iter().enumerate() {
            customers.push_str(&format!("{},c{i}@example.com\n", quoted(id)));
            orders.push_str(&format!("O{i},{},2026-01-0{},{i}\n", quoted(id), i + 1));
        }
        import(env, "customers", &env.write("customers.csv", customers));
        let landed = import(env, "orders", &env.write("orders.csv", orders));
        assert!(landed.contains("6 rows read, 6 new or changed"), "{landed}");
        let pairs = env.strings(
            "SELECT o.external_id || ' ' || c.email FROM orders o JOIN customers c ON c.id = o.customer_id \
             ORDER BY o.external_id",
        );
        let expected: Vec<String> = (0..ids.len()).map(|i| format!("O{i} c{i}@example.com")).collect();
        assert_eq!(pairs, expected);
        let unknown = env.write("unknown.csv", "order_id,customer_id,ordered_at,amount\nO9,zoë 7,2026-01-09,1\n");
        let run = env.patron(&["import", "orders", &unknown]);
        assert!(run.stderr.contains("value `zoë 7`: unknown customer"), "ids are matched exactly:\n{}", run.stderr);
    });
}

/// Each index of `table` as `name oid definition` (PostgreSQL): a rebuilt
/// index has a new oid and the same definition.
fn indexes(env: &TestEnv, table: &str) -> Vec<(String, String, String)> {
    let listed = env.strings(&format!(
        "SELECT i.relname::text || '|' || x.indexrelid::bigint::text || '|' || pg_get_indexdef(x.indexrelid) \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = '{table}'::regclass ORDER BY 1"
    ));
    listed
        .iter()
        .map(|line| {
            let mut parts = line.splitn(3, '|').map(str::to_owned);
            (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
        })
        .collect()
}

/// The names of the indexes of `before` that `after` holds under a new oid.
fn rebuilt(before: &[(String, String, String)], after: &[(String, String, String)]) -> Vec<String> {
    let definitions = |all: &[(String, String, String)]| all.iter().map(|(n, _, d)| (n.clone(), d.clone())).collect();
    let (before_definitions, after_definitions): (Vec<_>, Vec<_>) = (definitions(before), definitions(after));
    assert_eq!(after_definitions, before_definitions, "the indexes are built again as they were");
    before.iter().zip(after).filter(|(b, a)| b.1 != a.1).map(|(b, _)| b.0.clone()).collect()
}

#[test]
fn on_postgresql_a_first_import_and_loyalty_run_build_their_tables_indexes_once_at_the_end() {
    each_backend(|env| {
        if env.backend != crate::support::Backend::Postgres {
            return;
        }
        env.ok(&["migrate"]);
        let tables = ["customers", "orders", "loyalty_ledger"];
        let before: Vec<_> = tables.iter().map(|table| indexes(env, table)).collect();
        for what in ["customers", "orders"] {
            import(env, what, &example(&format!("{what}.csv")).display().to_string());
        }
        env.ok(&["loyalty", "recompute", "--as-of", "1998-06-30"]);
        let after: Vec<_> = tables.iter().map(|table| indexes(env, table)).collect();
        // Copied frozen into the truncated table, the rows need no VACUUM for
        // a scan to skip their pages: every page is marked visible to all
        // (as counted by the ANALYZE at the end). Foreign keys refer to the
        // customers, which are therefore not truncated.
        for table in ["orders", "loyalty_ledger"] {
            let [visible, pages] = env.pages_visible_to_all(table);
            assert!(pages > 0 && visible == pages, "{table}: {visible} of {pages} pages visible to all");
        }
        // The customers' ids are looked up while they are written (for their
        // consent events): that index stays, and so does their primary key,
        // which foreign keys refer to. The other primary keys are built again.
        assert_eq!(rebuilt(&before[0], &after[0]), ["ix_customers_email_lower"]);
        assert_eq!(
            rebuilt(&before[1], &after[1]),
            ["ix_orders_customer_id_ordered_at", "orders_external_id_key", "orders_pkey"]
        );
        assert_eq!(
            rebuilt(&before[2], &after[2]),
            [
                "ix_loyalty_ledger_customer_id_occurred_at",
                "ix_loyalty_ledger_expires_at",
                "ix_loyalty_ledger_order_id",
                "loyalty_ledger_pkey",
                "loyalty_ledger_source_key_key"
            ]
        );
        let keys = env.strings(
            "SELECT conname::text || ' ' || contype::text FROM pg_constraint \
             WHERE conrelid IN ('orders'::regclass, 'loyalty_ledger'::regclass) AND contype IN ('p', 'u') ORDER BY 1",
        );
        assert_eq!(
            keys,
            ["loyalty_ledger_pkey p", "loyalty_ledger_source_key_key u", "orders_external_id_key u", "orders_pkey p"]
        );
        // Into tables that hold rows, the indexes are kept in step as rows come.
        let orders = env.write("more.csv", "order_id,customer_id,ordered_at,amount\nNEW-1,C0001,1998-07-01,10.00\n");
        let customers = env.write("one.csv", "customer_id,email\nNEW-C,new@example.com\n");
        import(env, "customers", &customers);
        import(env, "orders", &orders);
        env.ok(&["loyalty", "recompute", "--as-of", "1998-07-02"]);
        let again: Vec<_> = tables.iter().map(|table| indexes(env, table)).collect();
        for (table, (after, again)) in tables.iter().zip(after.iter().zip(&again)) {
            assert!(rebuilt(after, again).is_empty(), "{table}: an index was rebuilt");
        }
        assert_eq!(env.status()["orders"], 6920);
    });
}

/// How many times `table` was analysed by hand (PostgreSQL), once the
/// count has settled: a command's server process reports it as it exits.
fn analyses(env: &TestEnv, table: &str) -> u64 {
    let read = || -> u64 {
        let sql = format!("SELECT analyze_count::text FROM pg_stat_user_tables WHERE relname = '{table}'");
        env.strings(&sql).first().map_or(0, |count| count.parse().unwrap())
    };
    let mut last = read();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        match read() {
            now if now == last => return now,
            now => last = now,
        }
    }
}

/// Every import looks customers up, and analyses them first when their
/// statistics are stale. Once their own import analysed them, they are
/// not, though the server counts all their rows as changed since (the
/// count that an `ANALYZE` of some columns, or one before the commit of the
/// rows, leaves as it was); they are again once the table grew by a tenth.
#[test]
fn on_postgresql_the_customers_are_analysed_again_only_once_their_table_grew_by_a_tenth() {
    each_backend(|env| {
        if env.backend != crate::support::Backend::Postgres {
            return;
        }
        import(env, "customers", &example("customers.csv").display().to_string());
        let after_their_import = analyses(env, "customers");
        assert!(after_their_import >= 1, "the customers' import analyses them");
        import(env, "orders", &example("orders.csv").display().to_string());
        import(env, "interactions", &example("interactions.csv").display().to_string());
        assert_eq!(analyses(env, "customers"), after_their_import, "the customers were analysed again");
        // 2,357 customers, and 1,000 more written by other means.
        env.execute(
            "INSERT INTO customers (external_id, email, marketing_consent, attributes) \
             SELECT 'more-' || g, 'more-' || g || '@example.com', true, '{}' FROM generate_series(1, 1000) g",
        );
        let orders = env.write("one.csv", "order_id,customer_id,ordered_at,amount\nNEW-1,C0001,1998-07-01,10.00\n");
        import(env, "orders", &orders);
        assert_eq!(analyses(env, "customers"), after_their_import + 1, "the grown table was not analysed");
    });
}

#[test]
fn on_postgresql_an_import_analyses_its_table_only_when_it_changed_a_tenth_of_it_or_more() {
    each_backend(|env| {
        if env.backend != crate::support::Backend::Postgres {
            return;
        }
        let customers = example("customers.csv").display().to_string();
        let orders = example("orders.csv").display().to_string();
        import(env, "customers", &customers);
        import(env, "orders", &orders);
        let first = analyses(env, "orders");
        assert!(first >= 1, "a first import analyses its table");
        // Every column has statistics, the one analysed on its own too; the
        // customers' too, with their index on lower(email).
        for table in ["orders", "customers"] {
            let columns = "SELECT a.attname::text FROM pg_attribute a WHERE a.attnum > 0 AND NOT a.attisdropped \
                           AND a.attrelid = '{table}'::regclass ORDER BY 1";
            let analysed = "SELECT attname::text FROM pg_stats WHERE tablename = '{table}' ORDER BY 1";
            let columns = env.strings(&columns.replace("{table}", table));
            assert_eq!(env.strings(&analysed.replace("{table}", table)), columns, "{table}");
        }
        // The customer column's own target (1000) still holds: more than the default's 101 bounds.
        let bounds = "SELECT array_length(histogram_bounds::text::bigint[], 1)::text FROM pg_stats \
                      WHERE tablename = 'orders' AND attname = 'customer_id'";
        let bounds: usize = env.strings(bounds)[0].parse().unwrap();
        assert!(bounds > 101, "{bounds} histogram bounds");
        let expression = "SELECT count(*)::text FROM pg_stats WHERE tablename = 'ix_customers_email_lower'";
        assert_eq!(env.strings(expression), ["1"], "the expression index's statistics");
        assert!(import(env, "orders", &orders).contains("0 new or changed, 6919 unchanged"));
        assert_eq!(analyses(env, "orders"), first, "a re-import that changed nothing analysed the table");
        let original = std::fs::read_to_string(&orders).unwrap();
        let mut lines = original.lines();
        let mut changed = format!("{}\n", lines.next().unwrap());
        // Every eleventh order (629 of 6,919) costs a cent more: under a tenth.
        for (i, line) in lines.enumerate() {
            let mut cells: Vec<String> = line.split(',').map(str::to_owned).collect();
            if i % 11 == 0 {
                cells[3] = format!("{:.2}", cells[3].parse::<f64>().unwrap() + 0.01);
            }
            changed.push_str(&cells.join(","));
            changed.push('\n');
        }
        let changed = env.write("changed.csv", changed);
        assert!(import(env, "orders", &changed).contains("629 new or changed"));
        assert_eq!(analyses(env, "orders"), first, "a tenth of the table or less changed, yet it was analysed");
        let all = original.replacen(",USD,", ",EUR,", usize::MAX);
        let all = env.write("all.csv", all);
        assert!(import(env, "orders", &all).contains("6919 new or changed"));
        assert!(analyses(env, "orders") > first, "the whole table changed and was not analysed");
    });
}

#[test]
fn a_re_import_finds_its_stored_rows_whether_the_file_is_sorted_by_id_or_shuffled() {
    each_backend(|env| {
        import(env, "customers", &example("customers.csv").display().to_string());
        let orders = std::fs::read_to_string(example("orders.csv")).unwrap();
        let (header, rows) = orders.split_once('\n').unwrap();
        let rows: Vec<&str> = rows.lines().collect();
        // Every 100th order costs a cent more, and a new order joins, its id among the others.
        let mut changed: Vec<String> = rows.iter().map(|row| row.to_string()).collect();
        for row in changed.iter_mut().step_by(100) {
            let mut cells: Vec<String> = row.split(',').map(str::to_owned).collect();
            cells[3] = format!("{:.2}", cells[3].parse::<f64>().unwrap() + 0.01);
            *row = cells.join(",");
        }
        changed.push("O03000a,C0001,1997-02-01,10.00,USD,1,pop".to_owned());
        // The same rows in an order unrelated to their ids (7,919 is prime).
        let shuffled = |rows: &[String]| {
            let mut order: Vec<usize> = (0..rows.len()).collect();
            order.sort_by_key(|&i| (i * 7919) % rows.len());
            order.iter().map(|&i| rows[i].as_str()).collect::<Vec<_>>().join("\n")
        };
        let sorted: Vec<String> = rows.iter().map(|row| row.to_string()).collect();
        let files = [
            ("sorted.csv", sorted.join("\n"), "6919 rows read, 6919 new or changed, 0 unchanged"),
            ("again.csv", sorted.join("\n"), "6919 rows read, 0 new or changed, 6919 unchanged"),
            ("shuffled.csv", shuffled(&sorted), "6919 rows read, 0 new or changed, 6919 unchanged"),
            ("changed.csv", shuffled(&changed), "6920 rows read, 71 new or changed, 6849 unchanged"),
            ("changed_sorted.csv", changed.join("\n"), "6920 rows read, 0 new or changed, 6920 unchanged"),
        ];
        for (name, body, expected) in files {
            let file = env.write(name, format!("{header}\n{body}\n"));
            let run = env
                .command(&["import", "orders", &file])
                .env("PATRON__IMPORT__BATCH_SIZE", "500")
                .output()
                .expect("run patron import");
            let stdout = String::from_utf8_lossy(&run.stdout);
            assert!(
                stdout.contains(expected),
                "{name} on {:?}: {stdout}{}",
                env.backend,
                String::from_utf8_lossy(&run.stderr)
            );
        }
        assert_eq!(env.strings("SELECT CAST(COUNT(*) AS TEXT) FROM orders"), ["6920"]);
    });
}
