//! The steps behind `patron train` and `patron model ...`: train, compare
//! with the active model on the same validation window, save, register and
//! maybe activate; look models up by name.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;

use super::registry::{self, Promotion};
use super::train::{self, Examples, TrainRequest};
use super::{ModelFile, file, metrics};
use crate::db::entities::model;
use crate::features::{DAY, History};

pub struct TrainOutcome {
    pub model: ModelFile,
    pub path: PathBuf,
    pub promotion: Promotion,
    /// The new model's AUC in the comparison (see [`Comparison`]).
    pub new_auc: f64,
    pub both_saved: bool,
    /// Why the active model could not be compared, if it could not.
    pub active_unusable: Option<String>,
}

/// Trains a model, saves and registers it, and activates it when the
/// promotion rule (or `force`) allows.
pub async fn train_and_promote(
    db: &DatabaseConnection,
    models_dir: &Path,
    request: &TrainRequest,
    force: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<TrainOutcome> {
    let started = std::time::Instant::now();
    let history =
        History::load_sample(db, train::MAX_TRAINING_CUSTOMERS).await.context("reading the purchase history")?;
    tracing::debug!(customers = history.len(), seconds = started.elapsed().as_secs_f64(), "history read for training");
    // Seconds of processor work on a big base: on a blocking thread, so that
    // the daemon's runtime goes on serving and sending meanwhile.
    let request_copy = *request;
    let train::Trained { mut model, validation } =
        tokio::task::spawn_blocking(move || train::train(&history, &request_copy, now))
            .await
            .context("the training thread")??;
    model.name = unused_name(db, &model.name).await?;
    let (mut new_auc, mut both_saved) = (model.metrics.roc_auc, false);
    let (active, active_unusable) = match registry::active(db).await? {
        None => (None, None),
        Some(row) => match compare(&validation, models_dir, &row, &model) {
            Ok(comparison) => {
                (new_auc, both_saved) = (comparison.new_auc, comparison.both_saved);
                (Some((row.name, comparison.active_auc)), None)
            }
            Err(reason) => (None, Some(format!("the active model {} cannot be compared: {reason}", row.name))),
        },
    };
    let promotion = registry::promotion(new_auc, active, force);
    let path = file::save(models_dir, &model)?;
    let file_name = path.file_name().expect("a file").to_string_lossy().into_owned();
    let id = registry::register(db, &model, &file_name, now).await?;
    if promotion.activates() {
        registry::activate(db, id, registry::Activation::of(&promotion), now).await?;
    }
    Ok(TrainOutcome { model, path, promotion, new_auc, both_saved, active_unusable })
}

/// `name`, or `name-2`, `name-3`... if models trained in the same second exist.
async fn unused_name(db: &DatabaseConnection, name: &str) -> anyhow::Result<String> {
    let mut candidate = name.to_owned();
    for n in 2.. {
        if registry::find(db, &candidate).await?.is_none() {
            break;
        }
        candidate = format!("{name}-{n}");
    }
    Ok(candidate)
}

/// The new and the active model on the new model's validation window.
///
/// Normally the new model's held-out AUC meets the active model's. But the
/// saved model of every training is refit with its validation window, so an
/// active model may have learnt from this very window; then both saved
/// models are scored on it, so that neither starts ahead (an identical
/// retrain ties instead of losing).
struct Comparison {
    new_auc: f64,
    active_auc: f64,
    both_saved: bool,
}

fn compare(
    validation: &Examples,
    models_dir: &Path,
    active: &model::Model,
    new: &ModelFile,
) -> Result<Comparison, String> {
    let active = file::load(&models_dir.join(&active.file_name)).map_err(|e| e.to_string())?;
    let window = new.validation.cutoff.timestamp();
    let auc = |model: &ModelFile| {
        let scores = train::score_examples(model, validation);
        metrics::roc_auc(&scores, &validation.labels).map_err(|e| e.to_string())
    };
    let window_end = window + new.validation.horizon_days * DAY;
    let saw_window = active.training.cutoffs.iter().any(|cutoff| {
        let start = cutoff.timestamp();
        start < window_end && start + active.training.horizon_days * DAY > window
    });
    Ok(Comparison {
        new_auc: if saw_window { auc(new)? } else { new.metrics.roc_auc },
        active_auc: auc(&active)?,
        both_saved: saw_window,
    })
}

/// A registered model and its file, by name; the active one without a name.
pub async fn lookup(
    db: &DatabaseConnection,
    models_dir: &Path,
    name: Option<&str>,
) -> anyhow::Result<(model::Model, ModelFile)> {
    let row = match name {
        Some(name) => registry::find(db, name).await?.ok_or_else(|| unknown_model(name))?,
        None => registry::active(db).await?.ok_or_else(|| {
            anyhow::Error::new(LookupError("there is no active model; train one with `patron train`".into()))
        })?,
    };
    let file = file::load(&models_dir.join(&row.file_name))?;
    Ok((row, file))
}

fn unknown_model(name: &str) -> anyhow::Error {
    LookupError(format!("there is no model called `{name}`; `patron model list` shows the models")).into()
}

/// A model asked for by a name that does not exist (bad usage, exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

impl crate::failure::Failure for LookupError {
    /// A model asked for by a name that does not exist.
    fn fault(&self) -> crate::failure::Fault {
        crate::failure::Fault::Input
    }
}
