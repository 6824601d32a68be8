//! Customer-base models ("buy till you die"): BG/NBD for how many purchases
//! a customer will make and whether they are still a customer, Gamma-Gamma
//! for what those purchases will be worth, and from both a lifetime value.
//!
//! They are fitted when a propensity model is trained, on every customer's
//! repeat purchases before the training's `as_of`, and stored in the model
//! file; scoring applies them to each customer as of the scoring moment.

mod bgnbd;
mod gamma_gamma;
mod special;

use std::collections::HashMap;

use argmin::core::{CostFunction, Executor, State};
use argmin::solver::neldermead::NelderMead;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use bgnbd::BgNbd;
pub use gamma_gamma::{GammaGamma, Spending};

use crate::features::{CustomerBaseInputs, History, Repeats, repeats};

/// Customers a fit reads at most, sampled evenly, to bound its time on big
/// bases; more would not move the four parameters.
pub const MAX_FIT_CUSTOMERS: usize = 200_000;
/// Repeat buyers needed to fit either model.
pub const MIN_REPEAT_BUYERS: usize = 10;
/// Days in the discounting steps of the lifetime value.
const VALUE_STEP_DAYS: f64 = 30.0;

/// The fitted models and what they were fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerBase {
    /// Purchases before this moment were used.
    pub as_of: DateTime<Utc>,
    /// Customers with a purchase (sampled evenly above 200,000).
    pub customers: usize,
    /// Customers among them who bought on two days or more.
    pub repeat_buyers: usize,
    pub bgnbd: BgNbd,
    pub bgnbd_log_likelihood: f64,
    /// None when the repeat purchases carry no value to fit it on.
    pub gamma_gamma: Option<GammaGamma>,
}

/// How a lifetime value is counted: revenue expected over `horizon_days`,
/// discounted at `annual_discount_rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Valuation {
    pub horizon_days: f64,
    pub annual_discount_rate: f64,
}

/// What the models say of one customer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outlook {
    pub p_alive: f64,
    pub expected_orders_90d: f64,
    pub expected_orders_365d: f64,
    /// None without a fitted Gamma-Gamma model.
    pub clv: Option<f64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FitError {
    #[error(
        "{found} customers bought on two days or more before the cutoff; the customer-base models need {MIN_REPEAT_BUYERS}"
    )]
    TooFewRepeatBuyers { found: usize },
    #[error("the {model} fit did not converge to finite parameters")]
    NoConvergence { model: &'static str },
}

impl CustomerBase {
    /// Fits both models on the customers' purchases before `as_of`.
    pub fn fit(history: &History, as_of: DateTime<Utc>) -> Result<CustomerBase, FitError> {
        CustomerBase::fit_sample(history, as_of, MAX_FIT_CUSTOMERS)
    }

    /// [`CustomerBase::fit`] on an even sample of at most `max_customers`
    /// (training fits one per training window for the propensity model's
    /// inputs, where a smaller sample keeps it fast).
    pub fn fit_sample(history: &History, as_of: DateTime<Utc>, max_customers: usize) -> Result<CustomerBase, FitError> {
        let step = history.len().div_ceil(max_customers).max(1);
        let cutoff = as_of.timestamp();
        let started = std::time::Instant::now();
        let sample: Vec<Repeats> =
            (0..history.len()).step_by(step).filter_map(|i| repeats(history.events(i).orders, cutoff)).collect();
        let fitted = CustomerBase::fit_repeats(&sample, as_of);
        tracing::debug!(
            customers = sample.len(),
            seconds = started.elapsed().as_secs_f64(),
            "customer-base models fitted"
        );
        fitted
    }

    /// Fits both models on these customers' repeat purchases (an even
    /// sample of them above 200,000).
    pub fn fit_repeats(customers: &[Repeats], as_of: DateTime<Utc>) -> Result<CustomerBase, FitError> {
        let sample: Vec<Repeats> = customers.iter().step_by(sample_step(customers.len())).copied().collect();
        let customers = &sample[..];
        let repeat_buyers = customers.iter().filter(|c| c.purchases > 0).count();
        if repeat_buyers < MIN_REPEAT_BUYERS {
            return Err(FitError::TooFewRepeatBuyers { found: repeat_buyers });
        }
        let (bgnbd, bgnbd_log_likelihood) = fit_bgnbd(customers)?;
        Ok(CustomerBase {
            as_of,
            customers: customers.len(),
            repeat_buyers,
            bgnbd,
            bgnbd_log_likelihood,
            gamma_gamma: fit_gamma_gamma(customers),
        })
    }

    /// The models' view of a customer with these purchases.
    pub fn outlook(&self, c: &Repeats, valuation: &Valuation) -> Outlook {
        let timing = self.timing(c, valuation);
        self.with_value(c, &timing)
    }

    /// What BG/NBD says of a purchase history, before any value is put on
    /// it; the lifetime value's purchases are each month's, discounted to today.
    fn timing(&self, c: &Repeats, valuation: &Valuation) -> Timing {
        let steps = (valuation.horizon_days / VALUE_STEP_DAYS).ceil().max(1.0) as usize;
        let mut before = 0.0;
        let mut discounted_purchases = 0.0;
        for step in 1..=steps {
            let t = valuation.horizon_days * step as f64 / steps as f64;
            let by_then = self.bgnbd.expected_purchases(c, t);
            discounted_purchases += (by_then - before) / (1.0 + valuation.annual_discount_rate).powf(t / 365.0);
            before = by_then;
        }
        Timing {
            p_alive: self.bgnbd.p_alive(c),
            expected_orders_90d: self.bgnbd.expected_purchases(c, 90.0),
            expected_orders_365d: self.bgnbd.expected_purchases(c, 365.0),
            discounted_purchases,
        }
    }

    fn with_value(&self, c: &Repeats, timing: &Timing) -> Outlook {
        let value = self.gamma_gamma.and_then(|g| g.expected_value(c.purchases, c.mean_value));
        Outlook {
            p_alive: timing.p_alive,
            expected_orders_90d: timing.expected_orders_90d,
            expected_orders_365d: timing.expected_orders_365d,
            clv: value.map(|v| v * timing.discounted_purchases),
        }
    }
}

/// BG/NBD's side of an outlook, which depends on the purchase days only.
#[derive(Debug, Clone, Copy)]
struct Timing {
    p_alive: f64,
    expected_orders_90d: f64,
    expected_orders_365d: f64,
    discounted_purchases: f64,
}

/// Outlooks of many customers. Customers with the same purchase days (in
/// whole days) share BG/NBD's side, which costs a few dozen series each; on
/// a big base most one-time buyers share theirs with others.
pub struct Outlooks<'a> {
    base: &'a CustomerBase,
    valuation: Valuation,
    seen: HashMap<(u32, u64, u64), Timing>,
}

impl<'a> Outlooks<'a> {
    pub fn new(base: &'a CustomerBase, valuation: Valuation) -> Self {
        Outlooks { base, valuation, seen: HashMap::new() }
    }

    pub fn of(&mut self, c: &Repeats) -> Outlook {
        let timing = *self.seen.entry(c.days_key()).or_insert_with(|| self.base.timing(c, &self.valuation));
        self.base.with_value(c, &timing)
    }
}

/// The propensity model's BG/NBD inputs of many customers, within its
/// horizon; customers with the same purchase days share them, as in
/// [`Outlooks`]. None for a customer who never bought, or without a fit.
pub struct BaseInputs<'a> {
    base: Option<&'a CustomerBase>,
    horizon_days: f64,
    seen: HashMap<(u32, u64, u64), CustomerBaseInputs>,
}

impl<'a> BaseInputs<'a> {
    pub fn new(base: Option<&'a CustomerBase>, horizon_days: f64) -> Self {
        BaseInputs { base, horizon_days, seen: HashMap::new() }
    }

    pub fn of(&mut self, c: Option<&Repeats>) -> Option<CustomerBaseInputs> {
        let (bgnbd, c) = (self.base?.bgnbd, c?);
        let horizon_days = self.horizon_days;
        Some(*self.seen.entry(c.days_key()).or_insert_with(|| CustomerBaseInputs {
            expected_purchase_days: bgnbd.expected_purchases(c, horizon_days),
            p_alive: bgnbd.p_alive(c),
            p_purchase: bgnbd.p_purchase_within(c, horizon_days),
        }))
    }
}

/// Every how many customers a fit reads one, so that it reads at most [`MAX_FIT_CUSTOMERS`].
fn sample_step(customers: usize) -> usize {
    customers.div_ceil(MAX_FIT_CUSTOMERS).max(1)
}

/// BG/NBD by maximum likelihood; customers with the same history in whole
/// days are counted once with their number as weight.
fn fit_bgnbd(customers: &[Repeats]) -> Result<(BgNbd, f64), FitError> {
    let mut counts: HashMap<(u32, u64, u64), f64> = HashMap::new();
    for c in customers {
        *counts.entry(c.days_key()).or_default() += 1.0;
    }
    let mut weighted: Vec<(Repeats, f64)> = counts
        .into_iter()
        .map(|((purchases, last, observed), n)| {
            let (last_days, observed_days) = (f64::from_bits(last), f64::from_bits(observed));
            (Repeats { purchases, last_days, observed_days, mean_value: None }, n)
        })
        .collect();
    weighted.sort_unstable_by_key(|a| a.0.purchases);
    let total = customers.len() as f64;
    let logs = maximise(&[0.0; 4], |logs| BgNbd::from_logs(logs).total_log_likelihood(&weighted) / total)
        .ok_or(FitError::NoConvergence { model: "BG/NBD" })?;
    let model = BgNbd::from_logs(&logs);
    Ok((model, model.total_log_likelihood(&weighted)))
}

/// Gamma-Gamma by maximum likelihood on the repeat buyers whose repeat
/// purchases carry a value; None with too few of them.
fn fit_gamma_gamma(customers: &[Repeats]) -> Option<GammaGamma> {
    let spending: Vec<(u32, f64, f64)> = customers
        .iter()
        .filter_map(|c| Some((c.purchases, c.mean_value.filter(|&m| m > 0.0)?, 1.0)))
        .filter(|&(x, _, _)| x > 0)
        .collect();
    if spending.len() < MIN_REPEAT_BUYERS {
        return None;
    }
    let total = spending.len() as f64;
    let spending = Spending::new(&spending);
    let logs = maximise(&[0.0; 3], |logs| GammaGamma::from_logs(logs).spending_log_likelihood(&spending) / total)?;
    Some(GammaGamma::from_logs(&logs))
}

/// The objective's maximum, by Nelder-Mead from `start` (in the logarithms
/// of the parameters), restarted once from the point it found so that a
/// collapsed simplex does not stop it short. None if it ends on a
/// non-finite value.
fn maximise(start: &[f64], objective: impl Fn(&[f64]) -> f64) -> Option<Vec<f64>> {
    let mut best = start.to_vec();
    for _ in 0..2 {
        let simplex = std::iter::once(best.clone())
            .chain((0..best.len()).map(|i| {
                let mut vertex = best.clone();
                vertex[i] += 0.5;
                vertex
            }))
            .collect();
        let solver = NelderMead::new(simplex).with_sd_tolerance(1e-12).ok()?;
        let result = Executor::new(Negated(&objective), solver).configure(|state| state.max_iters(5_000)).run().ok()?;
        best = result.state().get_best_param()?.clone();
    }
    let value = objective(&best);
    (value.is_finite() && best.iter().all(|v| v.is_finite())).then_some(best)
}

/// The optimiser minimises; non-finite values (parameters out of range)
/// count as the worst.
struct Negated<F>(F);

impl<F: Fn(&[f64]) -> f64> CostFunction for Negated<F> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, logs: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let value = (self.0)(logs);
        Ok(if value.is_finite() { -value } else { f64::MAX })
    }
}

#[cfg(test)]
mod tests;
