use crate::support::{Backend, TestEnv, each_backend};

fn generate(env: &TestEnv, seed: &str, out: &str) -> String {
    env.ok(&["generate", "--customers", "2000", "--seed", seed, "--out", out]).stdout
}

fn read(env: &TestEnv, dir: &str, file: &str) -> String {
    std::fs::read_to_string(env.dir.path().join(dir).join(file)).expect("generated file")
}

#[test]
fn the_same_seed_gives_the_same_files_and_another_seed_other_files() {
    let env = TestEnv::new(Backend::Sqlite);
    generate(&env, "7", "a");
    generate(&env, "7", "b");
    generate(&env, "8", "c");
    for file in ["customers.csv", "orders.csv", "interactions.csv"] {
        assert_eq!(read(&env, "a", file), read(&env, "b", file), "{file} differs for the same seed");
    }
    assert_ne!(read(&env, "a", "orders.csv"), read(&env, "c", "orders.csv"));
}

#[test]
fn generated_data_is_realistic_and_imports_cleanly() {
    each_backend(|env| {
        let summary = generate(env, "1", "gen");
        let orders = read(env, "gen", "orders.csv").lines().count() - 1;
        assert!(summary.starts_with(&format!("wrote 2000 customers, {orders} orders")), "{summary}");
        // About three orders per customer, most buying once or twice (as in CDNOW).
        assert!((4_000..=8_000).contains(&orders), "{orders} orders for 2000 customers");
        let categories: std::collections::BTreeSet<String> =
            read(env, "gen", "orders.csv").lines().skip(1).map(|l| l.rsplit(',').next().unwrap().to_owned()).collect();
        assert_eq!(categories.len(), 6, "{categories:?}");
        let interactions = read(env, "gen", "interactions.csv");
        assert!(interactions.lines().filter(|l| l.contains(",complaint,")).count() > 20);

        for (what, file) in
            [("customers", "customers.csv"), ("orders", "orders.csv"), ("interactions", "interactions.csv")]
        {
            let path = env.dir.path().join("gen").join(file).display().to_string();
            env.ok(&["import", what, &path]);
        }
        let status = env.status();
        assert_eq!(status["customers"], 2000);
        assert_eq!(status["orders"].as_u64(), Some(orders as u64));
    });
}
