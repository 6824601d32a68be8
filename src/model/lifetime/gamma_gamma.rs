//! The Gamma-Gamma model of spend (Fader, Hardie & Lee 2005, "RFM and CLV";
//! Colombo & Jiang 1999): each purchase's value is gamma-distributed around
//! a customer's own mean, and those means vary across customers (p, q,
//! gamma). Fitted to the mean value of each customer's repeat purchases, it
//! gives the value to expect from a customer's future purchases: their own
//! mean shrunk towards the base's, the more so the fewer purchases it rests on.

use serde::{Deserialize, Serialize};

use super::special::ln_gamma;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

impl GammaGamma {
    /// The parameters from their logarithms (the optimiser's space).
    pub fn from_logs(logs: &[f64]) -> Self {
        GammaGamma { p: logs[0].exp(), q: logs[1].exp(), gamma: logs[2].exp() }
    }

    /// The log-likelihood of `purchases` repeat purchases of mean value
    /// `mean_value` (> 0).
    pub fn log_likelihood(&self, purchases: u32, mean_value: f64) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        let x = f64::from(purchases);
        ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
            + q * gamma.ln()
            + (p * x - 1.0) * mean_value.ln()
            + p * x * x.ln()
            - (p * x + q) * (gamma + mean_value * x).ln()
    }

    /// The summed log-likelihood of `(purchases, mean value, weight)` triples.
    pub fn total_log_likelihood(&self, customers: &[(u32, f64, f64)]) -> f64 {
        customers.iter().map(|&(x, m, weight)| weight * self.log_likelihood(x, m)).sum()
    }

    /// [`total_log_likelihood`](Self::total_log_likelihood) of the customers
    /// `spending` was made of, at one logarithm per customer.
    pub fn spending_log_likelihood(&self, spending: &Spending) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        let by_purchases: f64 = spending
            .by_purchases
            .iter()
            .map(|&(x, weight)| weight * (ln_gamma(p * x + q) - ln_gamma(p * x) + p * x * x.ln()))
            .sum();
        let per_customer: f64 =
            spending.customers.iter().map(|&(x, total, weight)| weight * (p * x + q) * (gamma + total).ln()).sum();
        by_purchases + spending.weight * (q * gamma.ln() - ln_gamma(q)) + p * spending.x_ln_mean
            - spending.ln_mean
            - per_customer
    }

    /// The mean purchase value over the whole base; None where the model
    /// has no finite mean (q <= 1).
    pub fn base_mean(&self) -> Option<f64> {
        (self.q > 1.0).then(|| self.p * self.gamma / (self.q - 1.0))
    }

    /// The value to expect of a customer's next purchases, given the mean
    /// value of their `purchases` repeat purchases (the base's mean for a
    /// customer with none).
    pub fn expected_value(&self, purchases: u32, mean_value: Option<f64>) -> Option<f64> {
        let GammaGamma { p, q, gamma } = *self;
        match mean_value.filter(|_| purchases > 0) {
            Some(m) => {
                let x = f64::from(purchases);
                Some((gamma + m * x) * p / (p * x + q - 1.0))
            }
            None => self.base_mean(),
        }
    }
}

/// The repeat buyers of a Gamma-Gamma fit, with the parts of the
/// log-likelihood that do not depend on the parameters summed once: the fit
/// evaluates it hundreds of times, and three log-gammas and three
/// logarithms per customer each time made it seconds on a large base.
#[derive(Debug, Clone, Default)]
pub struct Spending {
    /// (purchases, summed weight) for each number of purchases.
    by_purchases: Vec<(f64, f64)>,
    /// (purchases, purchases × mean value, weight) for each customer.
    customers: Vec<(f64, f64, f64)>,
    weight: f64,
    /// Σ weight × purchases × ln(mean value), and Σ weight × ln(mean value).
    x_ln_mean: f64,
    ln_mean: f64,
}

impl Spending {
    /// From `(purchases, mean value, weight)` triples, as [`GammaGamma::total_log_likelihood`] takes.
    pub fn new(customers: &[(u32, f64, f64)]) -> Spending {
        let mut spending = Spending::default();
        let mut by_purchases = std::collections::BTreeMap::<u32, f64>::new();
        for &(purchases, mean, weight) in customers {
            let x = f64::from(purchases);
            *by_purchases.entry(purchases).or_default() += weight;
            spending.customers.push((x, x * mean, weight));
            spending.weight += weight;
            spending.x_ln_mean += weight * x * mean.ln();
            spending.ln_mean += weight * mean.ln();
        }
        spending.by_purchases = by_purchases.into_iter().map(|(x, w)| (f64::from(x), w)).collect();
        spending
    }
}
