//! The BG/NBD model (Fader, Hardie & Lee 2005, "Counting Your Customers the
//! Easy Way"): while alive, a customer buys at a Poisson rate drawn from a
//! gamma distribution (r, alpha); after each purchase they drop out with a
//! probability drawn from a beta distribution (a, b). Fitted to each
//! customer's repeat purchases, it gives their expected purchases in any
//! horizon and the probability that they are still a customer.

use serde::{Deserialize, Serialize};

use super::special::{hyp2f1, ln_gamma};
use crate::features::Repeats;

/// The four parameters, in days (`alpha` is a time scale).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

impl BgNbd {
    /// The parameters from their logarithms (the optimiser's space, where
    /// every value is allowed).
    pub fn from_logs(logs: &[f64]) -> Self {
        BgNbd { r: logs[0].exp(), alpha: logs[1].exp(), a: logs[2].exp(), b: logs[3].exp() }
    }

    /// The log-likelihood of one customer's history (equation 6 of the paper).
    pub fn log_likelihood(&self, c: &Repeats) -> f64 {
        self.constant_part(c.purchases) + self.history_part(c)
    }

    /// The summed log-likelihood of many histories; those with the same
    /// number of repeat purchases share their log-gamma terms, so sorting
    /// by it (as [`super::fit`] does) computes each once.
    pub fn total_log_likelihood(&self, customers: &[(Repeats, f64)]) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let logs = DayLogs::new(alpha, customers);
        let mut total = 0.0;
        let mut per_purchases = (u32::MAX, 0.0, 0.0);
        for (c, weight) in customers {
            let x = f64::from(c.purchases);
            if per_purchases.0 != c.purchases {
                per_purchases = (c.purchases, self.constant_part(c.purchases), a.ln() - (b + x - 1.0).ln());
            }
            let survived = -(r + x) * logs.of(c.observed_days);
            let history = if c.purchases == 0 {
                survived
            } else {
                log_add_exp(survived, per_purchases.2 - (r + x) * logs.of(c.last_days))
            };
            total += weight * (per_purchases.1 + history);
        }
        total
    }

    /// The terms that depend on the number of repeat purchases only.
    fn constant_part(&self, purchases: u32) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let x = f64::from(purchases);
        ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + ln_gamma(a + b) + ln_gamma(b + x)
            - ln_gamma(b)
            - ln_gamma(a + b + x)
    }

    /// Alive through the whole period, or dropped out after the last purchase.
    fn history_part(&self, c: &Repeats) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let x = f64::from(c.purchases);
        let survived = -(r + x) * (alpha + c.observed_days).ln();
        if c.purchases == 0 {
            return survived;
        }
        let dropped = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + c.last_days).ln();
        log_add_exp(survived, dropped)
    }

    /// The probability that the customer has not dropped out by the end of
    /// the period; 1 for a customer who never bought again (in this model
    /// one can only drop out after a purchase).
    pub fn p_alive(&self, c: &Repeats) -> f64 {
        1.0 / (1.0 + self.dead_odds(c))
    }

    /// The odds of having dropped out against being alive.
    fn dead_odds(&self, c: &Repeats) -> f64 {
        if c.purchases == 0 {
            return 0.0;
        }
        let BgNbd { r, alpha, a, b } = *self;
        let x = f64::from(c.purchases);
        let ratio = ((alpha + c.observed_days) / (alpha + c.last_days)).ln();
        a / (b + x - 1.0) * ((r + x) * ratio).exp()
    }

    /// The probability of at least one purchase in the `horizon_days` after
    /// the end of the period: alive, and the Poisson clock rings within the
    /// horizon, P(alive) [1 - ((alpha+T)/(alpha+T+t))^(r+x)] (a customer
    /// who does not buy cannot drop out meanwhile). What a propensity model
    /// predicts, where the expected purchases also count the repeats.
    pub fn p_purchase_within(&self, c: &Repeats, horizon_days: f64) -> f64 {
        if horizon_days <= 0.0 {
            return 0.0;
        }
        let BgNbd { r, alpha, .. } = *self;
        let x = f64::from(c.purchases);
        let quiet = ((alpha + c.observed_days) / (alpha + c.observed_days + horizon_days)).powf(r + x);
        self.p_alive(c) * (1.0 - quiet)
    }

    /// The expected number of purchases in the `horizon_days` after the end
    /// of the period (equation 10 of the paper). The hypergeometric term is
    /// taken through Euler's transformation, 2F1(r+x, b+x; a+b+x-1; z) =
    /// (1-z)^(a-1-r-x) 2F1(a+b-1-r, a-1; a+b+x-1; z), whose series converges
    /// fast and does not overflow for customers with many purchases.
    pub fn expected_purchases(&self, c: &Repeats, horizon_days: f64) -> f64 {
        if horizon_days <= 0.0 {
            return 0.0;
        }
        let BgNbd { r, alpha, a, b } = *self;
        let x = f64::from(c.purchases);
        let remaining = (alpha + c.observed_days) / (alpha + c.observed_days + horizon_days);
        let series = hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, 1.0 - remaining);
        let bought = (a + b + x - 1.0) / (a - 1.0) * (1.0 - remaining.powf(a - 1.0) * series);
        bought / (1.0 + self.dead_odds(c))
    }
}

/// ln(e^p + e^q) without overflow.
fn log_add_exp(p: f64, q: f64) -> f64 {
    let (high, low) = if p > q { (p, q) } else { (q, p) };
    high + (low - high).exp().ln_1p()
}

/// ln(alpha + d) for every whole number of days d up to the longest
/// observed, computed once per evaluation of the likelihood: the histories
/// are in whole days, so a fit's hundreds of evaluations over a large base
/// need a few thousand logarithms each instead of two per customer.
struct DayLogs {
    alpha: f64,
    table: Vec<f64>,
}

impl DayLogs {
    fn new(alpha: f64, customers: &[(Repeats, f64)]) -> DayLogs {
        let longest = customers.iter().map(|(c, _)| c.observed_days).fold(0.0, f64::max);
        // Beyond 100 years of days a history is not in days at all: no table.
        let days = if longest <= 36_525.0 { longest as usize + 1 } else { 0 };
        DayLogs { alpha, table: (0..days).map(|d| (alpha + d as f64).ln()).collect() }
    }

    fn of(&self, days: f64) -> f64 {
        let whole = days as usize;
        match self.table.get(whole) {
            Some(&log) if whole as f64 == days => log,
            _ => (self.alpha + days).ln(),
        }
    }
}
