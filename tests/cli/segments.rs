//! Segment expressions select exactly the hand-expected customers of a fixture.

use patron::segment::{self, Fields, compile};
use sea_orm::{ConnectionTrait, Database};

use crate::support::{TestEnv, each_backend};

const CUSTOMERS: &str = "customer_id,email,first_name,birthday,signed_up_at,marketing_consent,region,visits\n\
    A1,a1@example.com,Ann,1990-05-01,2025-01-10,true,north,3\n\
    A2,a2@example.com,Bob,,2025-06-01,false,south,12\n\
    A3,a3@example.com,,,2026-02-01,true,north,\n\
    A4,a4@example.com,Dan,,2026-03-01,true,,x7\n\
    A5,a5@example.com,Eve,,2024-12-01,true,east,7.5\n";

/// Customer, snapshot (recency, frequency, open complaints, tier) and score (propensity, decile).
type FixtureRow = (&'static str, f64, i32, i32, Option<&'static str>, f64, i32);

/// A4 has neither a snapshot nor a score.
const FIXTURE: &[FixtureRow] = &[
    ("A1", 10.0, 5, 0, Some("gold"), 0.9, 1),
    ("A2", 200.0, 1, 1, None, 0.2, 8),
    ("A3", 45.0, 2, 0, Some("silver"), 0.5, 4),
    ("A5", 400.0, 3, 0, Some("gold"), 0.1, 10),
];

fn load_fixture(env: &TestEnv) {
    env.ok(&["import", "customers", &env.write("c.csv", CUSTOMERS)]);
    env.execute(
        "INSERT INTO models (name, algorithm, file_name, trained_at, validation_auc, active, created_at) \
         VALUES ('m', 'logistic', 'm.json', CURRENT_TIMESTAMP, 0.8, TRUE, CURRENT_TIMESTAMP)",
    );
    for (id, recency, frequency, complaints, tier, propensity, decile) in FIXTURE {
        let tier = tier.map_or("NULL".to_owned(), |t| format!("'{t}'"));
        env.execute(&format!(
            "INSERT INTO feature_snapshots (customer_id, as_of, computed_at, recency_days, monetary_total, spend_30d, \
             spend_90d, spend_365d, frequency, orders_total, orders_30d, orders_90d, orders_365d, distinct_categories, \
             complaints_open, complaints_365d, loyalty_tier) \
             SELECT id, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, {recency}, 0, 0, 0, 0, {frequency}, {frequency}, 0, 0, 0, 1, \
             {complaints}, {complaints}, {tier} FROM customers WHERE external_id = '{id}'"
        ));
        env.execute(&format!(
            "INSERT INTO scores (model_id, customer_id, score, decile, scored_at) \
             SELECT (SELECT id FROM models), id, {propensity}, {decile}, CURRENT_TIMESTAMP FROM customers WHERE external_id = '{id}'"
        ));
    }
}

fn segment(env: &TestEnv, text: &str) -> Vec<String> {
    let known = compile::known_fields();
    let expr = segment::parse(text, &Fields { known: &known, topics: &[], campaigns: &[] })
        .unwrap_or_else(|e| panic!("{text}: {e:?}"));
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let db = Database::connect(&env.database_url).await.expect("connect");
        let backend = db.get_database_backend();
        let model: i64 = db
            .query_one_raw(sea_orm::Statement::from_string(backend, "SELECT id FROM models"))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        let context = compile::Context {
            backend,
            now: chrono::Utc::now(),
            today: chrono::Utc::now().date_naive(),
            attribution_window: chrono::Duration::days(7),
            scores: compile::Scores::Joined(Some(model)),
        };
        let select = compile::select_customers(&expr, &context);
        let rows = db.query_all_raw(backend.build(&select)).await.unwrap_or_else(|e| panic!("{text}: {e}"));
        rows.iter().map(|r| r.try_get_by_index::<String>(1).unwrap()).collect()
    })
}

#[test]
fn each_segment_selects_exactly_the_expected_customers() {
    each_backend(|env| {
        load_fixture(env);
        let cases: &[(&str, &[&str])] = &[
            ("recency_days > 180 and frequency >= 2", &["A5"]),
            ("recency_days between 30d and 90d", &["A3"]),
            // A4 has no snapshot: NOT of an unknown value selects nobody.
            ("not (complaints_open > 0) or propensity_decile in [1, 2, 3]", &["A1", "A3", "A5"]),
            (r#"attributes.region = "north" and first_name is not null"#, &["A1"]),
            (r#"signed_up_at < 2026-01-01 and loyalty_tier in ["gold", "silver"]"#, &["A1", "A5"]),
            ("propensity >= 0.3", &["A1", "A3"]),
            ("birthday = 1990-05-01", &["A1"]),
            ("marketing_consent = false", &["A2"]),
            ("loyalty_tier is null", &["A2", "A4"]),
            (r#"attributes.region not in ["north", "south"]"#, &["A5"]),
            // A value that is not a number (A4's `x7`) matches no numeric comparison.
            ("attributes.visits > 5", &["A2", "A5"]),
            ("attributes.visits between 1 and 5", &["A1"]),
        ];
        for (text, expected) in cases {
            assert_eq!(segment(env, text), *expected, "{text} on {:?}", env.backend);
        }
    });
}
