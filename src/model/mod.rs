//! Propensity models: what a trained model is ([`ModelFile`]), how it turns
//! a customer's inputs into a probability of buying, and the pieces around
//! it (training, files, the registry of models, metrics and reports).
//!
//! Prediction is pure: a model file holds everything needed (scaling and
//! parameters), so a model scores the same before and after a round-trip
//! through its file.

mod error;
mod examples;
pub mod file;
mod fit;
pub mod lifetime;
mod logistic;
pub mod metrics;
pub mod preprocess;
pub mod registry;
pub mod report;
pub mod train;
pub mod workflow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use metrics::Metrics;
use preprocess::Preprocessor;

/// Bumped whenever the file layout or the meaning of a field changes.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Logistic regression (fitted by Newton's method, `model::logistic`): the default.
    Logistic,
    /// One decision tree (linfa-trees).
    Tree,
    /// A random forest of decision trees (linfa-ensemble).
    Forest,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Logistic => "logistic",
            Algorithm::Tree => "tree",
            Algorithm::Forest => "forest",
        }
    }
}

/// A trained model and everything known about how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    pub schema_version: u32,
    pub name: String,
    pub algorithm: Algorithm,
    pub trained_at: DateTime<Utc>,
    pub patron_version: String,
    /// The model's inputs, in order; must equal [`crate::features::MODEL_INPUTS`].
    pub features: Vec<String>,
    pub scaling: Preprocessor,
    pub parameters: Parameters,
    pub training: TrainingWindow,
    pub validation: ValidationWindow,
    /// A hash of the orders the model could see, to tell data sets apart.
    pub data_fingerprint: String,
    /// Measured on the validation window, which training never saw.
    pub metrics: Metrics,
    /// BG/NBD and Gamma-Gamma fitted as of `training.as_of`; None in files
    /// from before they existed, or where the base had too few repeat
    /// buyers (`customer_base_note` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_base: Option<lifetime::CustomerBase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_base_note: Option<String>,
}

/// Training examples: customers as of each cutoff, labelled by whether they
/// bought within the horizon after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingWindow {
    pub as_of: DateTime<Utc>,
    pub horizon_days: i64,
    pub cutoffs: Vec<DateTime<Utc>>,
    pub rows: usize,
    pub buyers: usize,
    /// Each buyer counted this many times in fitting, to balance the classes;
    /// the probabilities are corrected back to the real buyer rate.
    pub buyer_weight: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationWindow {
    pub cutoff: DateTime<Utc>,
    pub horizon_days: i64,
    pub rows: usize,
    pub buyers: usize,
    /// The cutoffs of the fit that was scored on this window (the saved
    /// model is refit with this window included).
    pub training_cutoffs: Vec<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Parameters {
    Logistic { intercept: f64, coefficients: Vec<f64> },
    Tree { tree: Tree },
    Forest { trees: Vec<Tree> },
}

/// A decision tree as a flat list of nodes; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Node {
    /// Inputs with `x[feature] < threshold` go left, the others right.
    Split { feature: usize, threshold: f64, left: usize, right: usize },
    /// The buyer rate of the training customers that end here.
    Leaf { probability: f64 },
}

impl Tree {
    /// The index of the leaf that `x` ends in.
    pub fn leaf(&self, x: &[f64]) -> usize {
        let mut index = 0;
        while let Node::Split { feature, threshold, left, right } = self.nodes[index] {
            index = if x[feature] < threshold { left } else { right };
        }
        index
    }

    pub fn probability(&self, x: &[f64]) -> f64 {
        match self.nodes[self.leaf(x)] {
            Node::Leaf { probability } => probability,
            Node::Split { .. } => unreachable!("leaf() stops at a leaf"),
        }
    }
}

impl Parameters {
    /// The probability of buying for scaled inputs `x`.
    pub fn probability(&self, x: &[f64]) -> f64 {
        match self {
            Parameters::Logistic { intercept, coefficients } => {
                let z = intercept + coefficients.iter().zip(x).map(|(w, v)| w * v).sum::<f64>();
                1.0 / (1.0 + (-z).exp())
            }
            Parameters::Tree { tree } => tree.probability(x),
            Parameters::Forest { trees } => trees.iter().map(|t| t.probability(x)).sum::<f64>() / trees.len() as f64,
        }
    }
}

impl ModelFile {
    /// The probability that a customer with these inputs buys within the horizon.
    pub fn score(&self, inputs: &[Option<f64>], scratch: &mut Vec<f64>) -> f64 {
        self.scaling.apply_options(inputs, scratch);
        self.parameters.probability(scratch)
    }
}
