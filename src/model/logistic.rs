//! Logistic regression with sample weights, by Newton's method.
//!
//! It minimises the same objective as linfa's `LogisticRegression` on rows
//! repeated as often as their weight, Σ wᵢ·log-loss + ½·α·|coefficients|²
//! (the intercept unpenalised), but reads each row once per step instead of
//! repeating buyers, and converges in a handful of steps where linfa's
//! L-BFGS, whose gradient tolerance does not grow with the number of rows,
//! runs to its iteration limit on a big base. With a
//! few dozen inputs the Hessian is small, so each step is one pass over the
//! rows and a Cholesky solve. Hand-written (about 100 lines) because no
//! well-kept crate among patron's dependencies fits weighted logistic
//! regression, and a linear-algebra crate for one small solve is not worth
//! its build time.

/// Newton steps at most; from zero the fit takes 5 to 10.
const MAX_STEPS: usize = 100;
/// Converged when no parameter moves by more than this in a step.
const STEP_TOLERANCE: f64 = 1e-9;

/// A fitted model: P(label) = σ(intercept + coefficients · x).
#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    pub intercept: f64,
    pub coefficients: Vec<f64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LogisticError {
    #[error("no rows to fit on")]
    Empty,
    #[error("the inputs are linearly dependent (the Hessian is singular)")]
    Singular,
    #[error("no convergence in {MAX_STEPS} Newton steps")]
    NoConvergence,
}

/// Fits on the rows of `x` (row-major, `columns` values each) with their
/// `labels` and `weights`; `alpha` is the L2 penalty of the coefficients.
pub fn fit(x: &[f64], columns: usize, labels: &[bool], weights: &[f64], alpha: f64) -> Result<Logistic, LogisticError> {
    if labels.is_empty() {
        return Err(LogisticError::Empty);
    }
    let rows = Rows { x, columns, labels, weights };
    let mut beta = vec![0.0; columns + 1];
    let mut current = rows.evaluate(&beta, alpha);
    for _ in 0..MAX_STEPS {
        let step = cholesky_solve(current.hessian.clone(), &current.gradient, columns + 1)?;
        // Halve the step until the loss does not rise (rarely needed: the loss is convex).
        let mut scale = 1.0;
        let (candidate, evaluated) = loop {
            let candidate: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b - scale * s).collect();
            let evaluated = rows.evaluate(&candidate, alpha);
            if evaluated.loss <= current.loss * (1.0 + 1e-12) || scale < 1e-10 {
                break (candidate, evaluated);
            }
            scale /= 2.0;
        };
        let moved = beta.iter().zip(&candidate).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        (beta, current) = (candidate, evaluated);
        if moved <= STEP_TOLERANCE * (1.0 + beta.iter().map(|b| b.abs()).fold(0.0, f64::max)) {
            let intercept = beta.pop().expect("the intercept is last");
            return Ok(Logistic { intercept, coefficients: beta });
        }
    }
    Err(LogisticError::NoConvergence)
}

struct Rows<'a> {
    x: &'a [f64],
    columns: usize,
    labels: &'a [bool],
    weights: &'a [f64],
}

/// The loss, its gradient and its Hessian (row-major, full) at one point;
/// the intercept is the last parameter.
struct Evaluation {
    loss: f64,
    gradient: Vec<f64>,
    hessian: Vec<f64>,
}

impl Rows<'_> {
    fn evaluate(&self, beta: &[f64], alpha: f64) -> Evaluation {
        let d = self.columns + 1;
        let mut loss = 0.0;
        let mut gradient = vec![0.0; d];
        let mut hessian = vec![0.0; d * d];
        let mut row = vec![1.0; d];
        for ((x, &label), &weight) in self.x.chunks_exact(self.columns).zip(self.labels).zip(self.weights) {
            row[..self.columns].copy_from_slice(x);
            let z: f64 = row.iter().zip(beta).map(|(a, b)| a * b).sum();
            let p = sigmoid(z);
            loss += weight * softplus(if label { -z } else { z });
            let residual = weight * (p - f64::from(u8::from(label)));
            let curvature = weight * p * (1.0 - p);
            for i in 0..d {
                gradient[i] += residual * row[i];
                let scaled = curvature * row[i];
                // The upper triangle only; mirrored below.
                for j in i..d {
                    hessian[i * d + j] += scaled * row[j];
                }
            }
        }
        for i in 0..self.columns {
            loss += 0.5 * alpha * beta[i] * beta[i];
            gradient[i] += alpha * beta[i];
            hessian[i * d + i] += alpha;
        }
        for i in 0..d {
            for j in 0..i {
                hessian[i * d + j] = hessian[j * d + i];
            }
        }
        Evaluation { loss, gradient, hessian }
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 { 1.0 / (1.0 + (-z).exp()) } else { z.exp() / (1.0 + z.exp()) }
}

/// ln(1 + eᶻ) without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() }
}

/// Solves `a · x = b` for a symmetric positive definite `a` (n × n, row-major).
fn cholesky_solve(mut a: Vec<f64>, b: &[f64], n: usize) -> Result<Vec<f64>, LogisticError> {
    // a becomes L (lower triangle), a = L·Lᵀ. A pivot that cancels down to
    // rounding noise of its diagonal means a singular matrix.
    for j in 0..n {
        let original = a[j * n + j];
        let diagonal = original - (0..j).map(|k| a[j * n + k] * a[j * n + k]).sum::<f64>();
        if diagonal <= 1e-12 * original.abs() || !diagonal.is_finite() {
            return Err(LogisticError::Singular);
        }
        let pivot = diagonal.sqrt();
        a[j * n + j] = pivot;
        for i in j + 1..n {
            let sum: f64 = (0..j).map(|k| a[i * n + k] * a[j * n + k]).sum();
            a[i * n + j] = (a[i * n + j] - sum) / pivot;
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| a[i * n + k] * y[k]).sum::<f64>()) / a[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| a[k * n + i] * x[k]).sum::<f64>()) / a[i * n + i];
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use linfa::prelude::*;
    use ndarray::{Array1, Array2};

    use super::*;

    /// 600 rows of 3 inputs whose labels follow σ(0.5 + x₀ − 2x₁ + 0·x₂), from a fixed sequence.
    fn sample() -> (Vec<f64>, Vec<bool>) {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut x, mut labels) = (Vec::new(), Vec::new());
        for _ in 0..600 {
            let row = [uniform() * 4.0 - 2.0, uniform() * 2.0 - 1.0, uniform() * 6.0 - 3.0];
            labels.push(uniform() < sigmoid(0.5 + row[0] - 2.0 * row[1]));
            x.extend_from_slice(&row);
        }
        (x, labels)
    }

    #[test]
    fn it_finds_the_optimum_linfa_finds_for_the_same_objective() {
        let (x, labels) = sample();
        let ours = fit(&x, 3, &labels, &vec![1.0; labels.len()], 1.0).unwrap();
        let dataset = Dataset::new(Array2::from_shape_vec((600, 3), x).unwrap(), Array1::from(labels));
        let theirs = linfa_logistic::LogisticRegression::default()
            .alpha(1.0)
            .gradient_tolerance(1e-10)
            .max_iterations(1000)
            .fit(&dataset)
            .unwrap();
        let sign = if theirs.labels().pos.class { 1.0 } else { -1.0 };
        assert!((ours.intercept - sign * theirs.intercept()).abs() < 1e-6, "{ours:?} vs {}", theirs.intercept());
        for (a, b) in ours.coefficients.iter().zip(theirs.params()) {
            assert!((a - sign * b).abs() < 1e-6, "{ours:?} vs {}", theirs.params());
        }
        // And the planted coefficients, roughly (600 rows).
        assert!((ours.coefficients[0] - 1.0).abs() < 0.3 && (ours.coefficients[1] + 2.0).abs() < 0.5, "{ours:?}");
    }

    #[test]
    fn a_weight_counts_as_that_many_copies_of_the_row() {
        let (x, labels) = sample();
        let weights: Vec<f64> = labels.iter().map(|&l| if l { 3.0 } else { 1.0 }).collect();
        let weighted = fit(&x, 3, &labels, &weights, 1.0).unwrap();
        let (mut copies_x, mut copies_labels) = (Vec::new(), Vec::new());
        for (row, &label) in x.chunks_exact(3).zip(&labels) {
            for _ in 0..if label { 3 } else { 1 } {
                copies_x.extend_from_slice(row);
                copies_labels.push(label);
            }
        }
        let copied = fit(&copies_x, 3, &copies_labels, &vec![1.0; copies_labels.len()], 1.0).unwrap();
        assert!((weighted.intercept - copied.intercept).abs() < 1e-9);
        for (a, b) in weighted.coefficients.iter().zip(&copied.coefficients) {
            assert!((a - b).abs() < 1e-9);
        }
    }

    #[test]
    fn separable_rows_stay_finite_with_the_penalty_and_dependent_inputs_are_refused_without_it() {
        let x = [-2.0, -1.0, 1.0, 2.0];
        let labels = [false, false, true, true];
        let model = fit(&x, 1, &labels, &[1.0; 4], 1.0).unwrap();
        assert!(model.coefficients[0].is_finite() && model.coefficients[0] > 0.0, "{model:?}");
        // Two equal columns and no penalty: no unique optimum.
        let twins = [1.0, 1.0, -1.0, -1.0, 0.5, 0.5, -0.5, -0.5];
        let labels = [true, false, true, false];
        assert_eq!(fit(&twins, 2, &labels, &[1.0; 4], 0.0), Err(LogisticError::Singular));
        assert_eq!(fit(&[], 2, &[], &[], 1.0), Err(LogisticError::Empty));
    }
}
