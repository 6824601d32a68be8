//! Fitting the three algorithms with linfa, and turning what linfa learned
//! into the plain parameters a model file stores.
//!
//! Class imbalance: buyers are usually the minority, so each buyer counts
//! `buyer_weight` times in fitting (sample weights for the logistic
//! regression and a single tree, replicated rows for the forest). The probabilities are then brought back to the real buyer
//! rate: logistic regression by shifting the intercept by `ln(weight)`, trees
//! by using the unweighted buyer rate of the training customers in each leaf.

use linfa::prelude::*;
use linfa_ensemble::EnsembleLearnerParams;
use linfa_trees::{DecisionTree, TreeNode};
use ndarray::{Array1, Array2};
use ndarray_rand::rand::SeedableRng;
use ndarray_rand::rand::rngs::StdRng;

use super::error::TrainError;
use super::examples::Examples;
use super::logistic;
use super::preprocess::Preprocessor;
use super::{Algorithm, Node, Parameters, Tree};

/// Buyers never count more than this many times.
const MAX_BUYER_WEIGHT: f64 = 10.0;
const TREE_DEPTH: usize = 6;
const FOREST_DEPTH: usize = 8;
const FOREST_TREES: usize = 100;
/// Pseudo-customers at the overall buyer rate added to every leaf, so that a
/// small leaf does not claim a probability of exactly 0 or 1.
const LEAF_PRIOR: f64 = 10.0;
const SEED: u64 = 0x7061_7472_6f6e;

pub struct Fitted {
    pub parameters: Parameters,
    pub buyer_weight: f64,
}

/// The L2 penalties of the logistic regression that training tries on the
/// validation window (a tenfold grid from almost none); the trees take one.
const LOGISTIC_PENALTIES: &[f64] = &[1.0, 10.0, 100.0, 1000.0];

pub fn penalties(algorithm: Algorithm) -> &'static [f64] {
    match algorithm {
        Algorithm::Logistic => LOGISTIC_PENALTIES,
        Algorithm::Tree | Algorithm::Forest => &LOGISTIC_PENALTIES[..1],
    }
}

/// Fits `algorithm`; `penalty` is the logistic regression's L2 penalty.
pub fn fit(
    algorithm: Algorithm,
    scaling: &Preprocessor,
    examples: &Examples,
    penalty: f64,
) -> Result<Fitted, TrainError> {
    let x = scaled(scaling, examples);
    let y = Array1::from_iter(examples.labels.iter().copied());
    let buyers = examples.labels.iter().filter(|&&b| b).count() as f64;
    let others = examples.labels.len() as f64 - buyers;
    let buyer_weight = (others / buyers).round().clamp(1.0, MAX_BUYER_WEIGHT);
    let failed = |e: &dyn std::fmt::Display| TrainError::Fit(algorithm.name(), e.to_string());
    let parameters = match algorithm {
        Algorithm::Logistic => logistic(&x, &y, buyer_weight, penalty).map_err(|e| failed(&e))?,
        Algorithm::Tree => single_tree(&x, &y, buyer_weight).map_err(|e| failed(&e))?,
        Algorithm::Forest => forest(&x, &y, buyer_weight).map_err(|e| failed(&e))?,
    };
    Ok(Fitted { parameters, buyer_weight })
}

fn scaled(scaling: &Preprocessor, examples: &Examples) -> Array2<f64> {
    let columns = scaling.columns.len();
    let mut flat = Vec::with_capacity(examples.inputs.len());
    let mut row = Vec::with_capacity(columns);
    for inputs in examples.rows() {
        scaling.apply(inputs, &mut row);
        flat.extend_from_slice(&row);
    }
    Array2::from_shape_vec((examples.labels.len(), columns), flat).expect("rows of equal length")
}

/// The rows again, with every buyer repeated `weight` times.
fn balanced(x: &Array2<f64>, y: &Array1<bool>, weight: f64) -> (Array2<f64>, Array1<bool>) {
    let mut rows = Vec::new();
    for (i, &label) in y.iter().enumerate() {
        let copies = if label { weight as usize } else { 1 };
        rows.extend(std::iter::repeat_n(i, copies));
    }
    (x.select(ndarray::Axis(0), &rows), rows.iter().map(|&i| y[i]).collect())
}

fn logistic(
    x: &Array2<f64>,
    y: &Array1<bool>,
    weight: f64,
    penalty: f64,
) -> Result<Parameters, logistic::LogisticError> {
    let weights: Vec<f64> = y.iter().map(|&b| if b { weight } else { 1.0 }).collect();
    let rows = x.as_slice().expect("standard layout");
    let labels = y.as_slice().expect("standard layout");
    let fitted = logistic::fit(rows, x.ncols(), labels, &weights, penalty)?;
    Ok(Parameters::Logistic { intercept: fitted.intercept - weight.ln(), coefficients: fitted.coefficients })
}

fn single_tree(x: &Array2<f64>, y: &Array1<bool>, weight: f64) -> Result<Parameters, linfa::Error> {
    let weights: Array1<f32> = y.iter().map(|&b| if b { weight as f32 } else { 1.0 }).collect();
    let total: f32 = weights.sum();
    let dataset = Dataset::new(x.clone(), y.clone()).with_weights(weights);
    let fitted = DecisionTree::params().max_depth(Some(TREE_DEPTH)).min_weight_leaf(total * 0.005).fit(&dataset)?;
    let all_features: Vec<usize> = (0..x.ncols()).collect();
    Ok(Parameters::Tree { tree: convert(fitted.root_node(), &all_features, x, y) })
}

fn forest(x: &Array2<f64>, y: &Array1<bool>, weight: f64) -> Result<Parameters, linfa::Error> {
    let (bx, by) = balanced(x, y, weight);
    let tree = DecisionTree::params().max_depth(Some(FOREST_DEPTH)).min_weight_leaf(bx.nrows() as f32 * 0.002);
    let fitted = EnsembleLearnerParams::new_fixed_rng(tree, StdRng::seed_from_u64(SEED))
        .ensemble_size(FOREST_TREES)
        .bootstrap_proportion(0.5)
        .feature_proportion(0.6)
        .fit(&Dataset::new(bx, by))?;
    let trees = fitted
        .models
        .iter()
        .zip(&fitted.model_features)
        .map(|(model, features)| convert(model.root_node(), features, x, y))
        .collect();
    Ok(Parameters::Forest { trees })
}

/// A linfa tree as a flat [`Tree`] over all inputs (`features` maps the
/// tree's own columns to input columns), with each leaf's probability
/// estimated from the unweighted training rows.
fn convert(root: &TreeNode<f64, bool>, features: &[usize], x: &Array2<f64>, y: &Array1<bool>) -> Tree {
    let mut tree = Tree { nodes: Vec::new() };
    push_node(&mut tree, root, features);
    let mut counts = vec![(0.0f64, 0.0f64); tree.nodes.len()];
    for (row, &label) in x.rows().into_iter().zip(y) {
        let leaf = tree.leaf(row.as_slice().expect("standard layout"));
        counts[leaf].0 += 1.0;
        counts[leaf].1 += f64::from(u8::from(label));
    }
    let rate = y.iter().filter(|&&b| b).count() as f64 / y.len() as f64;
    for (node, (n, buyers)) in tree.nodes.iter_mut().zip(counts) {
        if let Node::Leaf { probability } = node {
            *probability = (buyers + LEAF_PRIOR * rate) / (n + LEAF_PRIOR);
        }
    }
    tree
}

fn push_node(tree: &mut Tree, node: &TreeNode<f64, bool>, features: &[usize]) -> usize {
    let index = tree.nodes.len();
    tree.nodes.push(Node::Leaf { probability: 0.0 });
    if node.is_leaf() {
        return index;
    }
    let (feature, threshold, _) = node.split();
    let children = node.children();
    let (Some(left), Some(right)) = (children[0], children[1]) else { return index };
    let left = push_node(tree, left, features);
    let right = push_node(tree, right, features);
    tree.nodes[index] = Node::Split { feature: features[feature], threshold, left, right };
    index
}
