//! Model files: round trips and every kind of refused file.

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::model::lifetime::{BgNbd, CustomerBase, GammaGamma};
use crate::model::metrics::CalibrationBin;
use crate::model::preprocess::{ColumnScaling, Preprocessor, Transform};
use crate::model::{Algorithm, Metrics, TrainingWindow, Tree, ValidationWindow};

fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

/// One scaling per input, with varied transforms and awkward numbers.
fn scaling() -> Preprocessor {
    let transforms = [Transform::Identity, Transform::Log1p, Transform::SignedLog1p];
    let columns = MODEL_INPUTS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let i = i as f64;
            ColumnScaling {
                feature: (*name).to_owned(),
                transform: transforms[i as usize % 3],
                fill: 0.1 + 0.2 * i,
                min: -0.5 - i / 3.0,
                max: 1.7 + i * 123456.789 / 1000.0,
                mean: 0.3 * i - 1.1,
                std: 1.0 + i / 7.0,
            }
        })
        .collect();
    Preprocessor { columns }
}

fn metrics() -> Metrics {
    let calibration = (1..=10u8)
        .map(|d| CalibrationBin {
            decile: d,
            customers: 236,
            mean_score: 0.6 / f64::from(d),
            buyer_rate: 0.55 / f64::from(d) + 1e-17,
        })
        .collect();
    Metrics {
        rows: 2357,
        positives: 412,
        base_rate: 412.0 / 2357.0,
        roc_auc: 0.7723456789012345,
        log_loss: 0.41 + 1.0 / 3.0,
        brier: 0.1 + 0.2,
        top_decile_lift: 2.73,
        calibration,
        roc_curve: vec![[0.0, 0.0], [0.1, 1.0 / 3.0], [1.0, 1.0]],
        gains_curve: (0..=100).map(|k| [k as f64 / 100.0, (k as f64 / 100.0).sqrt()]).collect(),
    }
}

/// A complete model file around `parameters`.
fn model(parameters: Parameters) -> ModelFile {
    let algorithm = match parameters {
        Parameters::Logistic { .. } => Algorithm::Logistic,
        Parameters::Tree { .. } => Algorithm::Tree,
        Parameters::Forest { .. } => Algorithm::Forest,
    };
    let cutoffs = vec![day(1997, 4, 1), day(1996, 12, 31), day(1996, 10, 1)];
    ModelFile {
        schema_version: SCHEMA_VERSION,
        name: format!("{}-19971001T000000", algorithm.name()),
        algorithm,
        trained_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 30, 15).unwrap() + chrono::TimeDelta::nanoseconds(123_456_789),
        patron_version: env!("CARGO_PKG_VERSION").to_owned(),
        features: MODEL_INPUTS.iter().map(|s| s.to_string()).collect(),
        scaling: scaling(),
        parameters,
        training: TrainingWindow {
            as_of: day(1997, 10, 1),
            horizon_days: 91,
            cutoffs: cutoffs.clone(),
            rows: 5012,
            buyers: 731,
            buyer_weight: 6.0,
        },
        validation: ValidationWindow {
            cutoff: day(1997, 7, 2),
            horizon_days: 91,
            rows: 2357,
            buyers: 412,
            training_cutoffs: cutoffs[1..].to_vec(),
        },
        data_fingerprint: "xxh3:0123456789abcdef".to_owned(),
        metrics: metrics(),
        customer_base: Some(CustomerBase {
            as_of: day(1997, 10, 1),
            customers: 2357,
            repeat_buyers: 946,
            bgnbd: BgNbd { r: 0.2425945, alpha: 30.895, a: 0.7929, b: 2.4259 },
            bgnbd_log_likelihood: -14_169.1,
            gamma_gamma: Some(GammaGamma { p: 6.2496, q: 3.7442, gamma: 15.4435 }),
        }),
        customer_base_note: None,
    }
}

fn logistic() -> Parameters {
    let mut coefficients: Vec<f64> = (0..MODEL_INPUTS.len()).map(|i| (i as f64 * 0.37).sin() / 3.0).collect();
    coefficients[..4].copy_from_slice(&[0.1 + 0.2, 1e-300, -0.0, 123456.789]);
    Parameters::Logistic { intercept: -1.2345678901234567, coefficients }
}

/// Two splits and three leaves.
fn tree(feature: usize, threshold: f64) -> Tree {
    Tree {
        nodes: vec![
            Node::Split { feature, threshold, left: 1, right: 2 },
            Node::Leaf { probability: 0.1 + 0.2 },
            Node::Split { feature: MODEL_INPUTS.len() - 1, threshold: -1e-300, left: 3, right: 4 },
            Node::Leaf { probability: 1.0 / 3.0 },
            Node::Leaf { probability: 0.9876543210987654 },
        ],
    }
}

/// Input vectors: all missing, some missing, out of the training range,
/// not numbers, and spread-out ordinary values.
fn inputs() -> Vec<Vec<Option<f64>>> {
    let n = MODEL_INPUTS.len();
    let mut vectors = vec![
        vec![None; n],
        (0..n).map(|i| (i % 2 == 0).then_some(0.1 + i as f64)).collect(),
        (0..n).map(|i| Some(if i % 2 == 0 { 1e12 } else { -1e12 })).collect(),
        (0..n).map(|i| Some([f64::NAN, f64::INFINITY, -0.0, 1e-300][i % 4])).collect(),
    ];
    let mut seed = 7u64;
    for _ in 0..20 {
        vectors.push(
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    Some((seed >> 11) as f64 / (1u64 << 53) as f64 * 40.0 - 10.0)
                })
                .collect(),
        );
    }
    vectors
}

/// Where two models differ, as `path: before != after` (exact, no JSON text involved).
fn first_difference(a: &ModelFile, b: &ModelFile) -> String {
    fn walk(path: String, a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
        use serde_json::Value::{Array, Object};
        match (a, b) {
            (Object(x), Object(y)) => x.iter().find_map(|(k, v)| walk(format!("{path}.{k}"), v, &y[k])),
            (Array(x), Array(y)) if x.len() == y.len() => {
                x.iter().zip(y).enumerate().find_map(|(i, (v, w))| walk(format!("{path}[{i}]"), v, w))
            }
            _ => (a != b).then(|| format!("{path}: {a} != {b}")),
        }
    }
    let (a, b) = (serde_json::to_value(a).unwrap(), serde_json::to_value(b).unwrap());
    walk(String::new(), &a, &b).unwrap_or_else(|| "no difference in the JSON values".to_owned())
}

fn error_of(result: Result<ModelFile, ModelFileError>) -> ModelFileError {
    result.expect_err("the file should be refused")
}

/// Saves `model` into a fresh directory and loads it back.
fn round_trip(model: &ModelFile) -> (tempfile::TempDir, PathBuf, Result<ModelFile, ModelFileError>) {
    let dir = tempfile::tempdir().unwrap();
    let saved = save(dir.path(), model).expect("saved");
    let loaded = load(&saved);
    (dir, saved, loaded)
}

#[test]
fn a_saved_model_loads_back_equal_and_scores_identically() {
    let forest = Parameters::Forest { trees: vec![tree(0, 0.1 + 0.2), tree(3, 123456.789)] };
    for original in [model(logistic()), model(Parameters::Tree { tree: tree(5, -0.0) }), model(forest)] {
        let (dir, saved, loaded) = round_trip(&original);
        let loaded = loaded.expect("loads");
        assert_eq!(saved, dir.path().join(format!("{}.json", original.name)));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for x in inputs() {
            let (before, after) = (original.score(&x, &mut a), loaded.score(&x, &mut b));
            assert!((0.0..=1.0).contains(&before), "{} gives {before} for {x:?}", original.name);
            assert_eq!(before.to_bits(), after.to_bits(), "{}: {before} then {after} for {x:?}", original.name);
        }
        assert!(loaded == original, "{}: {}", original.name, first_difference(&original, &loaded));

        let files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, vec![format!("{}.json", original.name)], "no temporary file is left");
    }
}

#[test]
fn a_file_with_another_schema_version_is_refused() {
    let mut newer = model(logistic());
    newer.schema_version = 2;
    let (_dir, saved, loaded) = round_trip(&newer);
    let error = error_of(loaded);
    assert!(matches!(&error, ModelFileError::SchemaVersion { found, .. } if found == "2"), "{error:?}");
    assert!(!error.is_io());
    let message = error.to_string();
    assert!(message.contains(&saved.display().to_string()), "{message}");
    assert!(message.contains("schema version 2"), "{message}");
}

#[test]
fn a_file_with_another_feature_list_is_refused() {
    let mut other = model(logistic());
    other.features.retain(|f| f != "loyalty_points");
    other.features.push("loyalty_tier".to_owned());
    let error = error_of(round_trip(&other).2);
    let expected = "missing: [loyalty_points]; unknown: [loyalty_tier]";
    assert!(matches!(&error, ModelFileError::Features { difference, .. } if difference == expected), "{error:?}");
    assert!(error.to_string().contains(expected), "{error}");

    let mut reordered = model(logistic());
    reordered.features.swap(0, 1);
    let error = error_of(round_trip(&reordered).2);
    assert!(matches!(&error, ModelFileError::Features { .. }), "{error:?}");
    assert!(error.to_string().contains("(the same features in another order)"), "{error}");
}

#[test]
fn a_tree_pointing_outside_itself_is_refused_as_damaged() {
    let inputs = MODEL_INPUTS.len();
    let broken_trees = [
        // The right child of the second split is past the end.
        {
            let mut t = tree(0, 0.5);
            t.nodes[2] = Node::Split { feature: 1, threshold: 0.0, left: 3, right: 5 };
            t
        },
        // A child before its parent would loop for ever.
        {
            let mut t = tree(0, 0.5);
            t.nodes[2] = Node::Split { feature: 1, threshold: 0.0, left: 0, right: 4 };
            t
        },
        // A split on an input that does not exist.
        tree(inputs, 0.5),
        // A leaf that is not a probability.
        {
            let mut t = tree(0, 0.5);
            t.nodes[1] = Node::Leaf { probability: 1.5 };
            t
        },
        Tree { nodes: vec![] },
    ];
    for broken in broken_trees {
        let as_forest = Parameters::Forest { trees: vec![tree(0, 0.5), broken.clone()] };
        for parameters in [Parameters::Tree { tree: broken.clone() }, as_forest] {
            let error = error_of(round_trip(&model(parameters)).2);
            assert!(
                matches!(&error, ModelFileError::Damaged { reason, .. } if reason == "a tree with a node that points outside it"),
                "{broken:?}: {error:?}"
            );
        }
    }
    let error = error_of(round_trip(&model(Parameters::Forest { trees: vec![] })).2);
    assert!(
        matches!(&error, ModelFileError::Damaged { reason, .. } if reason == "a forest without trees"),
        "{error:?}"
    );
}

#[test]
fn a_logistic_model_with_the_wrong_number_of_coefficients_is_refused() {
    let inputs = MODEL_INPUTS.len();
    for count in [inputs - 1, inputs + 1, 0] {
        let parameters = Parameters::Logistic { intercept: 0.5, coefficients: vec![0.25; count] };
        let error = error_of(round_trip(&model(parameters)).2);
        let expected = format!("{count} coefficients for {inputs} features");
        assert!(matches!(&error, ModelFileError::Damaged { reason, .. } if *reason == expected), "{error:?}");
        assert!(error.to_string().contains("is not a readable patron model"), "{error}");
    }
}

#[test]
fn not_json_is_refused_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let whole = save(dir.path(), &model(logistic())).expect("saved");
    let text = std::fs::read_to_string(&whole).unwrap();
    for (name, content) in [("empty", ""), ("text", "not a model"), ("truncated", &text[..text.len() / 2])] {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, content).unwrap();
        let error = error_of(load(&path));
        assert!(matches!(&error, ModelFileError::Damaged { .. }), "{name}: {error:?}");
        assert!(error.to_string().contains(&path.display().to_string()), "{error}");
    }
    let missing = dir.path().join("missing.json");
    assert!(error_of(load(&missing)).is_io(), "a missing file is a read failure, not a refusal");
}
