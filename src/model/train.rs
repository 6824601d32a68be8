//! Training on a time split: examples are customers as of past cutoffs,
//! labelled by whether they bought within the horizon after the cutoff.
//! Validation uses the latest window that ends by `as_of`; training uses the
//! windows before it, so nothing after `as_of` is ever seen and validation
//! never overlaps training.

use chrono::{DateTime, Utc};

pub use super::error::{MIN_CLASS_SIZE, TrainError};
pub use super::examples::Examples;
use super::fit::{self, Fitted};
use super::lifetime::{BaseInputs, CustomerBase, MAX_FIT_CUSTOMERS};
use super::preprocess::Preprocessor;
use super::{Algorithm, ModelFile, Parameters, SCHEMA_VERSION, TrainingWindow, ValidationWindow, metrics};
use crate::features::{DAY, History, MODEL_INPUTS, compute, model_inputs};

/// Windows a model is fitted on, at most.
const MAX_TRAINING_WINDOWS: i64 = 4;
/// Rows sampled per window, at most, to bound memory and time on big bases.
const MAX_ROWS_PER_WINDOW: usize = 100_000;
/// Customers the BG/NBD fit of each window's inputs reads at most: four
/// parameters settle long before, and there is one fit per window.
const MAX_INPUT_FIT_CUSTOMERS: usize = 20_000;
/// Customers whose history training reads at most: as many as its largest
/// sample, the customer-base fit's; the propensity examples read half of
/// them. Reading more would cost memory and change nothing but the sample.
pub const MAX_TRAINING_CUSTOMERS: u64 = MAX_FIT_CUSTOMERS as u64;

#[derive(Debug, Clone, Copy)]
pub struct TrainRequest {
    /// Nothing at or after this moment is used.
    pub as_of: DateTime<Utc>,
    pub horizon_days: i64,
    pub algorithm: Algorithm,
}

/// The customers known at each cutoff (bought or signed up before it),
/// with their inputs and whether they bought in `[cutoff, cutoff + horizon)`.
/// Bases larger than [`MAX_ROWS_PER_WINDOW`] are sampled evenly. The
/// BG/NBD inputs come from a fit on the purchases before each cutoff, as
/// scoring's come from the fit before the training's `as_of`.
pub fn examples(history: &History, cutoffs: &[i64], horizon_days: i64) -> Examples {
    let step = history.len().div_ceil(MAX_ROWS_PER_WINDOW).max(1);
    let mut examples = Examples::new(MODEL_INPUTS.len());
    for &cutoff in cutoffs {
        let end = cutoff + horizon_days * DAY;
        let base = CustomerBase::fit_sample(history, timestamp(cutoff), MAX_INPUT_FIT_CUSTOMERS).ok();
        let mut base_inputs = BaseInputs::new(base.as_ref(), horizon_days as f64);
        for index in (0..history.len()).step_by(step) {
            let events = history.events(index);
            let features = compute(&events, cutoff);
            if features.tenure_days.is_some() {
                let inputs = model_inputs(&features, base_inputs.of(features.repeats.as_ref()));
                examples.push(&inputs, events.orders.iter().any(|o| o.at >= cutoff && o.at < end));
            }
        }
    }
    examples
}

/// A trained model and the validation examples it was measured on, which
/// the promotion rule scores the active model on.
pub struct Trained {
    pub model: ModelFile,
    pub validation: Examples,
}

/// Trains a model as asked and returns it, ready to save; `now` names it.
///
/// The metrics come from fitting on the windows before the validation
/// window and scoring that window. The saved model is the same method fitted
/// again with the validation window included, so that it knows the latest
/// behaviour (customers' recency then spans the range it will meet when
/// scoring).
///
/// The customer-base models need nothing of the propensity model's work, so
/// they are fitted on a second thread meanwhile.
pub fn train(history: &History, request: &TrainRequest, now: DateTime<Utc>) -> Result<Trained, TrainError> {
    std::thread::scope(|scope| {
        let base = scope.spawn(|| {
            let step = Step::start();
            let fitted = CustomerBase::fit(history, request.as_of);
            step.done("customer-base models");
            fitted
        });
        let mut trained = propensity(history, request, now);
        let fitted = base.join().expect("the customer-base fit does not panic");
        if let Ok(Trained { model, .. }) = &mut trained {
            match fitted {
                Ok(base) => model.customer_base = Some(base),
                Err(e) => model.customer_base_note = Some(e.to_string()),
            }
        }
        trained
    })
}

/// The propensity model, its metrics and its validation examples.
fn propensity(history: &History, request: &TrainRequest, now: DateTime<Utc>) -> Result<Trained, TrainError> {
    let horizon = request.horizon_days * DAY;
    let validation_cutoff = request.as_of.timestamp() - horizon;
    let first_order = history.order_times().min().ok_or(TrainError::NoOrders)?;
    // Newest first: validation, then the training windows before it.
    let cutoffs: Vec<i64> =
        (0..=MAX_TRAINING_WINDOWS).map(|k| validation_cutoff - k * horizon).filter(|&c| c > first_order).collect();
    if cutoffs.len() < 2 {
        let (as_of, first) = (date(request.as_of.timestamp()), date(first_order));
        return Err(TrainError::NoWindow { as_of, horizon: request.horizon_days, first });
    }
    let earlier = &cutoffs[1..];
    let step = Step::start();
    let training = examples(history, earlier, request.horizon_days);
    check_size(&training, "training", *earlier.last().expect("not empty"), validation_cutoff)?;
    let validation = examples(history, &[validation_cutoff], request.horizon_days);
    check_size(&validation, "validation", validation_cutoff, validation_cutoff + horizon)?;
    let step = step.done("held-out examples");

    let algorithm = request.algorithm;
    let (scaling, held_out, penalty) = held_out_model(algorithm, &training, &validation)?;
    let scores = finite_scores(&scaling, &held_out.parameters, &validation, algorithm)?;
    let metrics =
        metrics::evaluate(&scores, &validation.labels).map_err(|e| TrainError::Fit(algorithm.name(), e.to_string()))?;
    drop(training);
    let step = step.done("held-out fit and metrics");

    let latest = &cutoffs[..cutoffs.len().min(MAX_TRAINING_WINDOWS as usize)];
    let training = examples(history, latest, request.horizon_days);
    let step = step.done("final examples");
    let (scaling, Fitted { parameters, buyer_weight }) = fitted_model(algorithm, &training, penalty)?;
    step.done("final fit");
    let model = ModelFile {
        schema_version: SCHEMA_VERSION,
        name: format!("{}-{}", algorithm.name(), now.format("%Y%m%dT%H%M%S")),
        algorithm,
        trained_at: now,
        patron_version: env!("CARGO_PKG_VERSION").to_owned(),
        features: MODEL_INPUTS.iter().map(|s| s.to_string()).collect(),
        scaling,
        parameters,
        training: TrainingWindow {
            as_of: request.as_of,
            horizon_days: request.horizon_days,
            cutoffs: latest.iter().map(|&c| timestamp(c)).collect(),
            rows: training.labels.len(),
            buyers: training.buyers(),
            buyer_weight,
        },
        validation: ValidationWindow {
            cutoff: timestamp(validation_cutoff),
            horizon_days: request.horizon_days,
            rows: validation.labels.len(),
            buyers: validation.buyers(),
            training_cutoffs: earlier.iter().map(|&c| timestamp(c)).collect(),
        },
        data_fingerprint: history.fingerprint(request.as_of.timestamp()),
        metrics,
        customer_base: None,
        customer_base_note: None,
    };
    finite_scores(&model.scaling, &model.parameters, &validation, algorithm)?;
    Ok(Trained { model, validation })
}

/// Times the steps of a training, logged at debug level (where the time goes on big bases).
struct Step(std::time::Instant);

impl Step {
    fn start() -> Step {
        Step(std::time::Instant::now())
    }

    fn done(self, step: &str) -> Step {
        tracing::debug!(step, seconds = self.0.elapsed().as_secs_f64(), "training step done");
        Step::start()
    }
}

fn fitted_model(algorithm: Algorithm, training: &Examples, penalty: f64) -> Result<(Preprocessor, Fitted), TrainError> {
    let scaling = Preprocessor::fit(MODEL_INPUTS, training);
    let fitted = fit::fit(algorithm, &scaling, training, penalty)?;
    Ok((scaling, fitted))
}

/// The held-out fit, with the penalty (of the logistic regression; the
/// trees have none) whose fit gives the validation window the lowest log
/// loss: the final fit uses the same. Chosen on the validation window, which
/// lies before `as_of`, so the choice sees nothing that scoring will judge.
fn held_out_model(
    algorithm: Algorithm,
    training: &Examples,
    validation: &Examples,
) -> Result<(Preprocessor, Fitted, f64), TrainError> {
    let mut best: Option<(f64, Preprocessor, Fitted, f64)> = None;
    for &penalty in fit::penalties(algorithm) {
        let (scaling, fitted) = fitted_model(algorithm, training, penalty)?;
        let scores = finite_scores(&scaling, &fitted.parameters, validation, algorithm)?;
        let loss = metrics::log_loss(&scores, &validation.labels);
        tracing::debug!(penalty, loss, "held-out fit");
        if best.as_ref().is_none_or(|b| loss < b.0) {
            best = Some((loss, scaling, fitted, penalty));
        }
    }
    let (_, scaling, fitted, penalty) = best.expect("every algorithm has a penalty to try");
    Ok((scaling, fitted, penalty))
}

/// The scores of a fitted model on `examples`, refused if any is not finite.
fn finite_scores(
    scaling: &Preprocessor,
    parameters: &Parameters,
    examples: &Examples,
    algorithm: Algorithm,
) -> Result<Vec<f64>, TrainError> {
    let scores = scores(scaling, parameters, examples);
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(TrainError::NotFinite(algorithm.name()));
    }
    Ok(scores)
}

/// The scores `model` gives the examples.
pub fn score_examples(model: &ModelFile, examples: &Examples) -> Vec<f64> {
    scores(&model.scaling, &model.parameters, examples)
}

fn scores(scaling: &Preprocessor, parameters: &Parameters, examples: &Examples) -> Vec<f64> {
    let mut scratch = Vec::new();
    examples
        .rows()
        .map(|row| {
            scaling.apply(row, &mut scratch);
            parameters.probability(&scratch)
        })
        .collect()
}

fn check_size(examples: &Examples, window: &'static str, from: i64, to: i64) -> Result<(), TrainError> {
    let buyers = examples.buyers();
    let others = examples.labels.len() - buyers;
    if buyers < MIN_CLASS_SIZE || others < MIN_CLASS_SIZE {
        return Err(TrainError::TooLittle { window, from: date(from), to: date(to), buyers, others });
    }
    Ok(())
}

fn timestamp(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).expect("cutoffs lie within chrono's range")
}

fn date(seconds: i64) -> String {
    timestamp(seconds).format("%Y-%m-%d").to_string()
}
