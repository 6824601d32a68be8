//! The statistics of a campaign report, pure: the uplift of a conversion rate
//! with a Wald 95% confidence interval and the two-sided p-value of the pooled
//! two-proportion z-test, and the difference of two means (revenue per
//! customer) with a Welch-type interval.
//!
//! The normal distribution comes from `libm::erfc` (the musl port kept by the
//! Rust project) rather than a statistics crate: Φ(z) = erfc(-z/√2)/2 is all
//! that is needed.

use serde::Serialize;

/// The 97.5% quantile of the standard normal distribution: a 95% interval is ±Z95 standard errors.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Conversions (successes) out of customers (trials) in one arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Proportion {
    pub successes: u64,
    pub trials: u64,
}

impl Proportion {
    /// `None` for an empty arm: there is no rate to speak of.
    pub fn rate(self) -> Option<f64> {
        (self.trials > 0).then(|| self.successes as f64 / self.trials as f64)
    }
}

/// Treatment against control for a conversion rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateUplift {
    pub treatment_rate: f64,
    pub control_rate: f64,
    /// Treatment rate minus control rate (percentage points / 100).
    pub absolute: f64,
    /// 95% Wald interval of `absolute`.
    pub ci_low: f64,
    pub ci_high: f64,
    /// `absolute / control_rate`; `None` when the control arm had no conversions
    /// (a relative change from zero is not defined).
    pub relative: Option<f64>,
    /// 95% interval of `relative` from the log of the rate ratio (delta method),
    /// `exp(ln RR ± Z95·√((1−pt)/xt + (1−pc)/xc)) − 1`; `None` unless both arms converted.
    pub relative_ci: Option<(f64, f64)>,
    /// Two-sided p-value of the pooled z-test; 1 when neither arm varies
    /// (both all or nothing), where the data give no evidence of a difference.
    pub p_value: f64,
}

/// Compares two conversion rates; `None` when either arm is empty.
///
/// With no conversions in one arm its variance term is zero, so the interval
/// rests on the other arm alone (the Wald interval's known weakness at the
/// edges); nothing divides by zero, so there is never a NaN.
pub fn compare_rates(treatment: Proportion, control: Proportion) -> Option<RateUplift> {
    let (pt, pc) = (treatment.rate()?, control.rate()?);
    let (nt, nc) = (treatment.trials as f64, control.trials as f64);
    let absolute = pt - pc;
    let se = (pt * (1.0 - pt) / nt + pc * (1.0 - pc) / nc).sqrt();
    let pooled = (treatment.successes + control.successes) as f64 / (nt + nc);
    let pooled_se = (pooled * (1.0 - pooled) * (1.0 / nt + 1.0 / nc)).sqrt();
    let p_value = if pooled_se > 0.0 { two_sided_p(absolute / pooled_se) } else { 1.0 };
    Some(RateUplift {
        treatment_rate: pt,
        control_rate: pc,
        absolute,
        ci_low: absolute - Z95 * se,
        ci_high: absolute + Z95 * se,
        relative: (pc > 0.0).then(|| absolute / pc),
        relative_ci: relative_interval(treatment, control),
        p_value,
    })
}

fn relative_interval(treatment: Proportion, control: Proportion) -> Option<(f64, f64)> {
    if treatment.successes == 0 || control.successes == 0 {
        return None;
    }
    let (pt, pc) = (treatment.rate()?, control.rate()?);
    let log_ratio = (pt / pc).ln();
    let se = ((1.0 - pt) / treatment.successes as f64 + (1.0 - pc) / control.successes as f64).sqrt();
    Some(((log_ratio - Z95 * se).exp() - 1.0, (log_ratio + Z95 * se).exp() - 1.0))
}

/// The two-sided p-value of a standard normal statistic: P(|Z| ≥ |z|) = erfc(|z|/√2).
pub fn two_sided_p(z: f64) -> f64 {
    libm::erfc(z.abs() / std::f64::consts::SQRT_2).clamp(0.0, 1.0)
}

/// The standard normal distribution function Φ.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

/// Running count, sum and sum of squares of one arm's values (revenue per customer).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Moments {
    pub n: u64,
    pub sum: f64,
    pub sum_squares: f64,
}

impl Moments {
    pub fn add(&mut self, value: f64) {
        self.n += 1;
        self.sum += value;
        self.sum_squares += value * value;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The sample variance (n - 1 in the denominator); `None` below two values.
    pub fn variance(&self) -> Option<f64> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        // Rounding can leave a tiny negative number when all values are equal.
        Some(((self.sum_squares - self.sum * self.sum / n) / (n - 1.0)).max(0.0))
    }
}

/// Treatment against control for a mean (revenue per customer).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanUplift {
    pub treatment_mean: f64,
    pub control_mean: f64,
    pub absolute: f64,
    /// 95% interval with Welch's standard error (each arm's own variance); `None`
    /// when an arm has fewer than two customers.
    pub ci: Option<(f64, f64)>,
    /// Two-sided p-value of the difference with the same standard error
    /// (normal approximation, sound for the hundreds of customers an arm
    /// has); 1 when neither arm varies, `None` below two customers an arm.
    pub p_value: Option<f64>,
}

/// Compares two means; `None` when either arm is empty.
pub fn compare_means(treatment: Moments, control: Moments) -> Option<MeanUplift> {
    let (mt, mc) = (treatment.mean()?, control.mean()?);
    let absolute = mt - mc;
    let se = treatment
        .variance()
        .zip(control.variance())
        .map(|(vt, vc)| (vt / treatment.n as f64 + vc / control.n as f64).sqrt());
    let ci = se.map(|se| (absolute - Z95 * se, absolute + Z95 * se));
    let p_value = se.map(|se| if se > 0.0 { two_sided_p(absolute / se) } else { 1.0 });
    Some(MeanUplift { treatment_mean: mt, control_mean: mc, absolute, ci, p_value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) {
        assert!((a - b).abs() <= tolerance, "{a} is not {b} (±{tolerance})");
    }

    #[test]
    fn uplift_interval_and_p_value_match_the_hand_computation() {
        // Treatment 120 of 1000, control 90 of 1000.
        // pt = 0.12, pc = 0.09, difference 0.03.
        // Wald SE = √(0.12·0.88/1000 + 0.09·0.91/1000) = √0.0001875 = 0.0136931
        // CI = 0.03 ± 1.959964·0.0136931 = 0.03 ± 0.0268379 → [0.0031621, 0.0568379]
        // pooled p = 210/2000 = 0.105; SE0 = √(0.105·0.895·(2/1000)) = 0.0137095
        // z = 0.03/0.0137095 = 2.188266; two-sided p = 2·(1 − Φ(2.188266)) = 0.028650
        // relative uplift = 0.03/0.09 = 0.3333; ln RR = ln(4/3) = 0.2876821,
        // SE = √(0.88/120 + 0.91/90) = √0.0174444 = 0.1320774,
        // CI = exp(0.2876821 ± 0.2588670) − 1 → [0.0292343, 0.7272820]
        let u = compare_rates(Proportion { successes: 120, trials: 1000 }, Proportion { successes: 90, trials: 1000 })
            .unwrap();
        close(u.absolute, 0.03, 1e-12);
        close(u.ci_low, 0.003_162_1, 1e-6);
        close(u.ci_high, 0.056_837_9, 1e-6);
        close(u.p_value, 0.028_650, 1e-5);
        close(u.relative.unwrap(), 1.0 / 3.0, 1e-12);
        let (low, high) = u.relative_ci.unwrap();
        close(low, 0.029_234_3, 1e-6);
        close(high, 0.727_282_0, 1e-6);
    }

    #[test]
    fn zero_conversions_in_the_control_arm_give_finite_figures_and_no_relative_uplift() {
        // Treatment 6 of 200, control 0 of 100.
        // pt = 0.03, pc = 0; Wald SE = √(0.03·0.97/200 + 0) = 0.0120623
        // CI = 0.03 ± 0.0236418 → [0.0063583, 0.0536417]
        // pooled p = 6/300 = 0.02; SE0 = √(0.02·0.98·(1/200 + 1/100)) = 0.0171464
        // z = 1.749636; two-sided p = 0.080181
        let u =
            compare_rates(Proportion { successes: 6, trials: 200 }, Proportion { successes: 0, trials: 100 }).unwrap();
        close(u.absolute, 0.03, 1e-12);
        close(u.ci_low, 0.006_358_3, 1e-6);
        close(u.ci_high, 0.053_641_7, 1e-6);
        close(u.p_value, 0.080_181, 1e-5);
        assert_eq!((u.relative, u.relative_ci), (None, None));
    }

    #[test]
    fn zero_conversions_in_the_treatment_arm_give_a_negative_uplift() {
        // Mirror of the case above: the sign flips, the p-value does not.
        let u =
            compare_rates(Proportion { successes: 0, trials: 100 }, Proportion { successes: 6, trials: 200 }).unwrap();
        close(u.absolute, -0.03, 1e-12);
        close(u.ci_low, -0.053_641_7, 1e-6);
        close(u.ci_high, -0.006_358_3, 1e-6);
        close(u.p_value, 0.080_181, 1e-5);
        close(u.relative.unwrap(), -1.0, 1e-12);
        assert_eq!(u.relative_ci, None);
    }

    #[test]
    fn no_conversions_anywhere_is_no_evidence_and_no_nan() {
        let u = compare_rates(Proportion { successes: 0, trials: 50 }, Proportion { successes: 0, trials: 5 }).unwrap();
        assert_eq!(
            (u.absolute, u.ci_low, u.ci_high, u.p_value, u.relative, u.relative_ci),
            (0.0, 0.0, 0.0, 1.0, None, None)
        );
    }

    #[test]
    fn an_empty_arm_gives_no_comparison() {
        let some = Proportion { successes: 1, trials: 10 };
        assert_eq!(compare_rates(some, Proportion::default()), None);
        assert_eq!(compare_rates(Proportion::default(), some), None);
    }

    #[test]
    fn normal_distribution_matches_tables() {
        close(normal_cdf(0.0), 0.5, 1e-15);
        close(normal_cdf(Z95), 0.975, 1e-12);
        close(normal_cdf(-1.0), 0.158_655_253_931_457, 1e-12);
        close(two_sided_p(Z95), 0.05, 1e-12);
        close(two_sided_p(-2.575_829_303_548_901), 0.01, 1e-12);
    }

    #[test]
    fn revenue_difference_uses_welch_standard_error() {
        // Treatment revenues 0, 0, 10, 20, 30: mean 12, sample variance 170.
        // Control revenues 0, 5, 5, 10: mean 5, sample variance 16.6667.
        // SE = √(170/5 + 16.6667/4) = √38.1667 = 6.177918
        // CI = 7 ± 1.959964·6.177918 = 7 ± 12.108496 → [−5.108496, 19.108496]
        let mut t = Moments::default();
        [0.0, 0.0, 10.0, 20.0, 30.0].into_iter().for_each(|v| t.add(v));
        let mut c = Moments::default();
        [0.0, 5.0, 5.0, 10.0].into_iter().for_each(|v| c.add(v));
        let u = compare_means(t, c).unwrap();
        close(u.absolute, 7.0, 1e-12);
        let (low, high) = u.ci.unwrap();
        close(low, -5.108_496, 1e-5);
        close(high, 19.108_496, 1e-5);
    }

    #[test]
    fn a_single_customer_arm_has_a_mean_but_no_interval() {
        let mut t = Moments::default();
        t.add(4.0);
        let mut c = Moments::default();
        c.add(1.0);
        c.add(3.0);
        let u = compare_means(t, c).unwrap();
        assert_eq!((u.absolute, u.ci), (2.0, None));
        assert_eq!(compare_means(Moments::default(), c), None);
    }
}
