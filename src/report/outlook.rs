//! The customer-base models' view of the whole base for `report customers`:
//! what the buyers are worth (the spread of their lifetime values), how many
//! purchases they will make, how many are likely lost, and a check of the
//! models against what happened: fitted as of an earlier moment, their
//! expected purchases in the period up to the report's moment next to the
//! purchases that were made in it.
//!
//! The models are fitted here, as of the report's moment, rather than read
//! from the active model file, so that a report of any date stands alone.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::features::history::Order;
use crate::features::{DAY, Repeats, repeats};
use crate::model::lifetime::{CustomerBase, Outlook, Outlooks, Valuation};

/// P(alive) bands, upper bounds excluded (the last one included).
pub const ALIVE_BANDS: [(&str, f64); 3] = [
    ("likely lost (below 0.3)", 0.3),
    ("uncertain (0.3 to 0.7)", 0.7),
    ("likely active (0.7 and above)", f64::INFINITY),
];
/// Repeat-purchase groups of the check: 0 to 6 repeat purchase days, then 7 or more.
const CHECK_GROUPS: u32 = 7;

/// What the models say of the whole base as of the report's moment.
#[derive(Debug, Clone, Serialize)]
pub struct BaseOutlook {
    /// The fitted parameters and the customers they were fitted on.
    pub models: CustomerBase,
    /// Purchase days the buyers are expected to make in the next 90 and 365 days.
    pub expected_orders_90d: f64,
    pub expected_orders_365d: f64,
    pub alive: Vec<AliveBand>,
    /// None when the Gamma-Gamma model could not be fitted (see `clv_note`).
    pub clv: Option<ClvSpread>,
    pub clv_note: Option<String>,
    /// None when the models could not be fitted as of the check's start (see `check_note`).
    pub check: Option<Check>,
    pub check_note: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AliveBand {
    pub band: &'static str,
    pub customers: u64,
    pub expected_orders_365d: f64,
}

/// The buyers' lifetime values over `horizon_days`, discounted at `annual_discount_rate`.
#[derive(Debug, Clone, Serialize)]
pub struct ClvSpread {
    pub horizon_days: f64,
    pub annual_discount_rate: f64,
    pub customers: u64,
    pub total: f64,
    pub mean: f64,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    /// Ten groups by lifetime value, highest first, as the value deciles.
    pub deciles: Vec<ClvDecile>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClvDecile {
    pub decile: u32,
    pub customers: u64,
    pub mean: f64,
    /// Share of the whole base's lifetime value.
    pub share: Option<f64>,
}

/// The models fitted as of `fitted_as_of`, against the `days` after it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub fitted_as_of: DateTime<Utc>,
    pub days: i64,
    /// Buyers before `fitted_as_of`, the customers the models speak of.
    pub customers: u64,
    pub expected: f64,
    /// Their purchase days in the period (same-day orders count once).
    pub actual: u64,
    /// The same by the repeat purchase days each had made by `fitted_as_of`.
    pub groups: Vec<CheckGroup>,
}

impl Check {
    /// (expected − actual) / actual; None without a purchase in the period.
    pub fn error(&self) -> Option<f64> {
        (self.actual > 0).then(|| (self.expected - self.actual as f64) / self.actual as f64)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckGroup {
    /// "0" to "6", then "7+".
    pub repeat_purchases: String,
    pub customers: u64,
    pub expected: f64,
    pub actual: u64,
}

/// The outlook of buyers whose orders (each buyer's in time order) are
/// given; `Err` says why the models could not be fitted as of `as_of`.
pub fn outlook<B: AsRef<[Order]> + Sync>(
    buyers: &[B],
    as_of: DateTime<Utc>,
    valuation: Valuation,
    check_days: i64,
) -> Result<BaseOutlook, String> {
    // The check fits its own models: on a second thread, beside these
    // (on a million customers each side takes seconds).
    let (now, checked) = std::thread::scope(|scope| {
        let checked = scope.spawn(|| check(buyers, as_of, check_days));
        let now = outlooks_now(buyers, as_of, valuation);
        (now, checked.join().expect("the check's thread does not panic"))
    });
    let (models, each) = now?;
    let clv: Vec<f64> = each.iter().filter_map(|o| o.clv).collect();
    let clv_note = clv.is_empty().then(|| "no repeat purchase carries a value to fit the Gamma-Gamma model on".into());
    let (check, check_note) = match checked {
        Ok(check) => (Some(check), None),
        Err(why) => (None, Some(why)),
    };
    Ok(BaseOutlook {
        expected_orders_90d: each.iter().map(|o| o.expected_orders_90d).sum(),
        expected_orders_365d: each.iter().map(|o| o.expected_orders_365d).sum(),
        alive: alive_bands(each.iter().map(|o| (o.p_alive, o.expected_orders_365d))),
        clv: (!clv.is_empty()).then(|| clv_spread(clv, valuation)),
        clv_note,
        check,
        check_note,
        models,
    })
}

/// The models fitted as of `as_of`, and each buyer's outlook by them.
fn outlooks_now<B: AsRef<[Order]>>(
    buyers: &[B],
    as_of: DateTime<Utc>,
    valuation: Valuation,
) -> Result<(CustomerBase, Vec<Outlook>), String> {
    let cutoff = as_of.timestamp() + 1;
    let now: Vec<Repeats> = buyers.iter().filter_map(|orders| repeats(orders.as_ref(), cutoff)).collect();
    let models = CustomerBase::fit_repeats(&now, as_of).map_err(|e| e.to_string())?;
    let mut outlooks = Outlooks::new(&models, valuation);
    let each = now.iter().map(|c| outlooks.of(c)).collect();
    Ok((models, each))
}

fn alive_bands(customers: impl Iterator<Item = (f64, f64)>) -> Vec<AliveBand> {
    let mut bands: Vec<AliveBand> =
        ALIVE_BANDS.iter().map(|b| AliveBand { band: b.0, customers: 0, expected_orders_365d: 0.0 }).collect();
    for (p_alive, expected) in customers {
        let band = ALIVE_BANDS.iter().position(|b| p_alive < b.1).unwrap_or(ALIVE_BANDS.len() - 1);
        bands[band].customers += 1;
        bands[band].expected_orders_365d += expected;
    }
    bands
}

fn clv_spread(mut values: Vec<f64>, valuation: Valuation) -> ClvSpread {
    values.sort_by(|a, b| b.total_cmp(a));
    let n = values.len();
    let total: f64 = values.iter().sum();
    // The value below which a share q of the customers lie (values are highest first).
    let quantile = |q: f64| values[n - ((q * n as f64).ceil() as usize).clamp(1, n)];
    let mut deciles: Vec<ClvDecile> =
        (1..=10).map(|decile| ClvDecile { decile, customers: 0, mean: 0.0, share: None }).collect();
    for (i, &value) in values.iter().enumerate() {
        let d = &mut deciles[i * 10 / n];
        d.customers += 1;
        d.mean += value;
    }
    for d in &mut deciles {
        d.share = (total > 0.0).then(|| d.mean / total);
        d.mean = if d.customers > 0 { d.mean / d.customers as f64 } else { 0.0 };
    }
    ClvSpread {
        horizon_days: valuation.horizon_days,
        annual_discount_rate: valuation.annual_discount_rate,
        customers: n as u64,
        total,
        mean: total / n as f64,
        median: quantile(0.5),
        p90: quantile(0.9),
        p99: quantile(0.99),
        deciles,
    }
}

/// BG/NBD fitted `days` before `as_of`, its expected purchases in the days
/// up to `as_of` against the purchase days that came.
fn check<B: AsRef<[Order]>>(buyers: &[B], as_of: DateTime<Utc>, days: i64) -> Result<Check, String> {
    let start = as_of - Duration::days(days);
    let (from, to) = (start.timestamp() + 1, as_of.timestamp() + 1);
    let before: Vec<(Repeats, u64)> = buyers
        .iter()
        .map(AsRef::as_ref)
        .filter_map(|orders| Some((repeats(orders, from)?, purchase_days(orders, from, to))))
        .collect();
    let repeats_before: Vec<Repeats> = before.iter().map(|b| b.0).collect();
    let models = CustomerBase::fit_repeats(&repeats_before, start).map_err(|e| e.to_string())?;
    let mut groups: Vec<CheckGroup> = (0..=CHECK_GROUPS)
        .map(|k| CheckGroup {
            repeat_purchases: if k < CHECK_GROUPS { k.to_string() } else { format!("{k}+") },
            customers: 0,
            expected: 0.0,
            actual: 0,
        })
        .collect();
    let mut expected = std::collections::HashMap::new();
    for (c, actual) in &before {
        let group = &mut groups[c.purchases.min(CHECK_GROUPS) as usize];
        group.customers += 1;
        // Buyers with the same history in whole days expect the same.
        group.expected +=
            *expected.entry(c.days_key()).or_insert_with(|| models.bgnbd.expected_purchases(c, days as f64));
        group.actual += actual;
    }
    Ok(Check {
        fitted_as_of: start,
        days,
        customers: before.len() as u64,
        expected: groups.iter().map(|g| g.expected).sum(),
        actual: groups.iter().map(|g| g.actual).sum(),
        groups,
    })
}

/// Days with an order in `[from, to)`, each counted once.
fn purchase_days(orders: &[Order], from: i64, to: i64) -> u64 {
    let mut days = orders.iter().filter(|o| o.at >= from && o.at < to).map(|o| o.at.div_euclid(DAY));
    let Some(mut last) = days.next() else { return 0 };
    // Orders are in time order: a new purchase day starts wherever the day changes.
    1 + days.filter(|&day| std::mem::replace(&mut last, day) != day).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: i64) -> i64 {
        1_700_006_400 + n * DAY // a midnight, UTC
    }

    fn orders(days: &[i64]) -> Vec<Order> {
        days.iter().map(|&d| Order { at: day(d) + 3600, cents: 2_000, category: None }).collect()
    }

    #[test]
    fn purchase_days_count_each_day_once_within_the_period() {
        let mut o = orders(&[1, 5, 5, 9, 12]);
        o[2].at += 7200; // a second order on day 5
        assert_eq!(purchase_days(&o, day(5), day(12)), 2); // days 5 and 9; day 12 is outside
        assert_eq!(purchase_days(&o, day(13), day(20)), 0);
    }

    #[test]
    fn clv_spread_ranks_highest_first_and_shares_add_up() {
        let valuation = Valuation { horizon_days: 365.0, annual_discount_rate: 0.1 };
        let spread = clv_spread((1..=20).map(f64::from).collect(), valuation);
        assert_eq!((spread.customers, spread.total, spread.mean), (20, 210.0, 10.5));
        assert_eq!((spread.median, spread.p90, spread.p99), (10.0, 18.0, 20.0));
        assert_eq!((spread.deciles[0].customers, spread.deciles[0].mean), (2, 19.5));
        assert_eq!(spread.deciles[9].mean, 1.5);
        let shares: f64 = spread.deciles.iter().filter_map(|d| d.share).sum();
        assert!((shares - 1.0).abs() < 1e-12);
    }

    #[test]
    fn alive_bands_split_at_their_bounds() {
        let bands = alive_bands([(0.1, 0.5), (0.3, 1.0), (0.69, 2.0), (0.7, 4.0), (1.0, 8.0)].into_iter());
        let counts: Vec<(u64, f64)> = bands.iter().map(|b| (b.customers, b.expected_orders_365d)).collect();
        assert_eq!(counts, [(1, 0.5), (2, 3.0), (2, 12.0)]);
    }

    #[test]
    fn the_check_sets_the_models_expectation_against_the_purchases_that_came() {
        // 40 customers: half buy every 30 days from day 0 to day 300, half once on day 0 and never again.
        let steady: Vec<i64> = (0..=10).map(|k| k * 30).collect();
        let buyers: Vec<Vec<Order>> =
            (0..40).map(|i| if i % 2 == 0 { orders(&steady) } else { orders(&[0]) }).collect();
        let as_of = DateTime::from_timestamp(day(300) + DAY - 1, 0).unwrap();
        let check = check(&buyers, as_of, 90).expect("20 repeat buyers");
        assert_eq!(check.fitted_as_of, as_of - Duration::days(90));
        assert_eq!(check.customers, 40);
        // Days 240, 270 and 300 fall in the 90 days: 3 purchases by each steady buyer.
        assert_eq!(check.actual, 60);
        let seven = &check.groups[7];
        assert_eq!((seven.repeat_purchases.as_str(), seven.customers, seven.actual), ("7+", 20, 60));
        assert_eq!((check.groups[0].customers, check.groups[0].actual), (20, 0));
        assert!(check.expected > 0.0 && check.groups[7].expected > check.groups[0].expected, "{check:?}");
        assert_eq!(check.error(), Some((check.expected - 60.0) / 60.0));
        // Without repeat buyers before the check's start the models cannot be fitted.
        let once: Vec<Vec<Order>> = (0..40).map(|_| orders(&[0, 250])).collect();
        assert!(super::check(&once, as_of, 90).unwrap_err().contains("0 customers bought on two days or more"));
    }
}
