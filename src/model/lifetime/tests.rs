//! The customer-base models against values computed independently: SciPy's
//! `hyp2f1` and `gammaln` with the formulas of the papers (the script and
//! its output are in `tests/data/lifetime/README.md`), the parameters Fader,
//! Hardie & Lee publish for the CDNOW sample, and small cases worked by hand.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};

use super::special::hyp2f1;
use super::*;
use crate::features::history::Order;

/// The BG/NBD parameters published for the CDNOW sample, in weeks.
const CDNOW_WEEKS: BgNbd = BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
/// The Gamma-Gamma parameters published for the CDNOW sample.
const CDNOW_SPEND: GammaGamma = GammaGamma { p: 6.25, q: 3.74, gamma: 15.44 };

fn history(purchases: u32, last: f64, observed: f64) -> Repeats {
    Repeats { purchases, last_days: last, observed_days: observed, mean_value: None }
}

fn close(found: f64, expected: f64, relative: f64) -> bool {
    (found - expected).abs() <= relative * expected.abs().max(1e-300)
}

#[track_caller]
fn assert_close(found: f64, expected: f64, relative: f64) {
    assert!(close(found, expected, relative), "{found} is not within {relative} of {expected}");
}

#[test]
fn the_hypergeometric_series_matches_scipy() {
    assert_close(hyp2f1(2.243, 4.426, 5.219, 0.5), 3.614707706823282, 1e-12);
    assert_close(hyp2f1(0.243, 2.426, 2.219, 0.9), 1.9476311698186006, 1e-12);
    assert_close(hyp2f1(10.243, 12.426, 13.219, 0.95), 2420704913846.049, 1e-10);
    assert_eq!(hyp2f1(1.0, 1.0, 2.0, 0.0), 1.0);
    assert!(hyp2f1(1.0, 1.0, 2.0, 1.0).is_nan(), "outside the disc of convergence");
}

/// A history (x, t_x, T) in weeks, and its log-likelihood, P(alive), E[Y(39)]
/// and E[Y(52)] from SciPy.
type Case = ((u32, f64, f64), [f64; 4]);

const CASES: &[Case] = &[
    ((0, 0.0, 0.0), [0.0, 1.0, 1.1967231933207985, 1.446050595396398]),
    ((0, 0.0, 38.86), [-0.5547132764381585, 1.0, 0.19509805201125396, 0.2520730222824504]),
    ((2, 30.43, 38.86), [-9.45860630706627, 0.726578570080673, 1.226028174767135, 1.5587208064320937]),
    ((7, 35.0, 38.0), [-22.012920134497158, 0.8619910650934327, 4.556185276589776, 5.728681664346136]),
    ((1, 1.0, 38.86), [-4.346506788653022, 0.18763076600030265, 0.17974518109491675, 0.22984747407661765]),
    ((10, 10.0, 38.86), [-18.92437131465057, 0.00018539445725235425, 0.001349212965678716, 0.001694034167835342]),
];

#[test]
fn bgnbd_likelihood_p_alive_and_expected_purchases_match_scipy() {
    for &((x, t_x, t), [log_likelihood, p_alive, in_39, in_52]) in CASES {
        let c = history(x, t_x, t);
        let case = format!("x={x} t_x={t_x} T={t}");
        assert!((CDNOW_WEEKS.log_likelihood(&c) - log_likelihood).abs() < 1e-10, "{case}");
        assert_close(CDNOW_WEEKS.p_alive(&c), p_alive, 1e-10);
        assert_close(CDNOW_WEEKS.expected_purchases(&c, 39.0), in_39, 1e-9);
        assert_close(CDNOW_WEEKS.expected_purchases(&c, 52.0), in_52, 1e-9);
    }
}

#[test]
fn the_probability_of_a_purchase_within_a_horizon_is_one_less_the_likelihood_of_a_silent_horizon() {
    // Independently of the closed form: no purchase in (T, T+t] given the
    // history is L(x, t_x, T+t) / L(x, t_x, T), the likelihood (checked
    // against SciPy above) of the same history watched t longer.
    for &((x, t_x, t), _) in CASES {
        let c = history(x, t_x, t);
        let silent = (CDNOW_WEEKS.log_likelihood(&history(x, t_x, t + 39.0)) - CDNOW_WEEKS.log_likelihood(&c)).exp();
        assert_close(CDNOW_WEEKS.p_purchase_within(&c, 39.0), 1.0 - silent, 1e-10);
        assert!(CDNOW_WEEKS.p_purchase_within(&c, 39.0) <= CDNOW_WEEKS.p_alive(&c));
    }
    // A new customer: 1 - (alpha / (alpha + t))^r.
    assert_close(
        CDNOW_WEEKS.p_purchase_within(&history(0, 0.0, 0.0), 39.0),
        1.0 - (4.414f64 / 43.414).powf(0.243),
        1e-12,
    );
    assert_eq!(CDNOW_WEEKS.p_purchase_within(&history(2, 30.43, 38.86), 0.0), 0.0);
}

#[test]
fn a_customer_seen_once_on_the_last_day_is_alive_with_the_base_rate_ahead() {
    // T = 0: nothing is known of them but that they bought once, so the
    // likelihood is 1 and they can expect what a new customer does,
    // (a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))].
    let new = history(0, 0.0, 0.0);
    assert!(CDNOW_WEEKS.log_likelihood(&new).abs() < 1e-12);
    assert_eq!(CDNOW_WEEKS.p_alive(&new), 1.0);
    let BgNbd { r, alpha, a, b } = CDNOW_WEEKS;
    let t = 78.0;
    let unconditional =
        (a + b - 1.0) / (a - 1.0) * (1.0 - (alpha / (alpha + t)).powf(r) * hyp2f1(r, b, a + b - 1.0, t / (alpha + t)));
    assert_close(CDNOW_WEEKS.expected_purchases(&new, t), unconditional, 1e-10);
    assert_close(unconditional, 1.8605190579427455, 1e-10);
    assert_eq!(CDNOW_WEEKS.expected_purchases(&new, 0.0), 0.0);
}

#[test]
fn customers_with_many_purchases_or_long_silences_get_finite_values() {
    for c in [history(400, 700.0, 700.0), history(400, 1.0, 3000.0), history(1, 0.0, 0.0), history(0, 0.0, 5000.0)] {
        let values = [
            CDNOW_WEEKS.log_likelihood(&c),
            CDNOW_WEEKS.p_alive(&c),
            CDNOW_WEEKS.expected_purchases(&c, 52.0),
            CDNOW_WEEKS.expected_purchases(&c, 5200.0),
        ];
        assert!(values.iter().all(|v| v.is_finite()), "{c:?}: {values:?}");
        assert!((0.0..=1.0).contains(&values[1]), "{c:?}");
    }
}

#[test]
fn gamma_gamma_likelihood_and_expected_value_match_scipy() {
    for (mean, x, log_likelihood, expected) in [
        (20.0, 1, -3.5941964929492016, 24.638487208008897),
        (50.0, 4, -4.868536915102737, 48.540014419610664),
        (100.0, 10, -7.147752691601852, 97.27927651747395),
    ] {
        assert!((CDNOW_SPEND.log_likelihood(x, mean) - log_likelihood).abs() < 1e-10, "m={mean} x={x}");
        assert_close(CDNOW_SPEND.expected_value(x, Some(mean)).unwrap(), expected, 1e-12);
    }
    // p gamma / (q - 1): what a customer without a repeat purchase is worth per purchase.
    assert_close(CDNOW_SPEND.base_mean().unwrap(), 35.21897810218978, 1e-12);
    assert_eq!(CDNOW_SPEND.expected_value(0, None), CDNOW_SPEND.base_mean());
    assert_eq!(GammaGamma { q: 0.9, ..CDNOW_SPEND }.base_mean(), None);
}

#[test]
fn the_bgnbd_summed_likelihood_is_the_sum_of_each_customer_s_in_whole_days_or_not() {
    let history =
        |purchases, last_days, observed_days| Repeats { purchases, last_days, observed_days, mean_value: None };
    let customers = [
        (history(0, 0.0, 30.0), 4.0),
        (history(2, 10.0, 30.0), 1.0),
        (history(2, 12.5, 40.25), 2.0),
        (history(5, 300.0, 365.0), 1.0),
    ];
    let model = BgNbd { r: 0.24, alpha: 4.4 * 7.0, a: 0.79, b: 2.43 };
    let each: f64 = customers.iter().map(|(c, weight)| weight * model.log_likelihood(c)).sum();
    assert_close(model.total_log_likelihood(&customers), each, 1e-12);
}

#[test]
fn the_gamma_gamma_summed_likelihood_is_the_sum_of_each_customer_s() {
    let customers = [(1, 20.0, 3.0), (4, 50.0, 1.0), (4, 12.5, 2.0), (10, 100.0, 1.0)];
    let spending = Spending::new(&customers);
    for model in [CDNOW_SPEND, GammaGamma { p: 1.5, q: 0.8, gamma: 40.0 }] {
        assert_close(model.spending_log_likelihood(&spending), model.total_log_likelihood(&customers), 1e-12);
    }
}

/// Every CDNOW customer's purchase days before 1997-10-01, in days.
fn cdnow_repeats() -> Vec<Repeats> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/example-data/cdnow/orders.csv");
    let mut orders: HashMap<String, Vec<Order>> = HashMap::new();
    for record in csv::Reader::from_path(path).expect("orders.csv").records() {
        let record = record.expect("a record");
        let date = chrono::NaiveDate::parse_from_str(&record[2], "%Y-%m-%d").expect("a date");
        let at = date.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
        let cents = (record[3].parse::<f64>().expect("an amount") * 100.0).round() as i64;
        orders.entry(record[1].to_owned()).or_default().push(Order { at, cents, category: None });
    }
    let cutoff = Utc.with_ymd_and_hms(1997, 10, 1, 0, 0, 0).unwrap().timestamp();
    orders
        .into_values()
        .filter_map(|mut orders| {
            orders.sort_by_key(|o| o.at);
            repeats(&orders, cutoff)
        })
        .collect()
}

#[test]
fn the_published_cdnow_parameters_are_reproduced_within_one_percent() {
    let customers = cdnow_repeats();
    assert_eq!(customers.len(), 2357);
    assert_eq!(customers.iter().map(|c| c.purchases).sum::<u32>(), 2457);
    let as_of = Utc.with_ymd_and_hms(1997, 10, 1, 0, 0, 0).unwrap();
    let base = CustomerBase::fit_repeats(&customers, as_of).expect("a fit");
    assert_eq!((base.customers, base.repeat_buyers), (2357, 946));
    let BgNbd { r, alpha, a, b } = base.bgnbd;
    // Days here, weeks in the paper: only the time scale alpha differs.
    for (found, published) in [(r, 0.243), (alpha / 7.0, 4.414), (a, 0.793), (b, 2.426)] {
        assert_close(found, published, 0.01);
    }
    // -9582.4 in weeks; each repeat purchase's density is 7 times smaller in days.
    let in_weeks = base.bgnbd_log_likelihood + 2457.0 * 7f64.ln();
    assert!((in_weeks - -9582.43).abs() < 0.05, "log-likelihood {in_weeks}");
    let GammaGamma { p, q, gamma } = base.gamma_gamma.expect("a spend model");
    for (found, published) in [(p, 6.25), (q, 3.74), (gamma, 15.44)] {
        assert_close(found, published, 0.01);
    }
}

#[test]
fn too_few_repeat_buyers_are_refused_with_the_count() {
    let as_of = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut customers = vec![history(0, 0.0, 30.0); 100];
    customers.extend(vec![history(2, 10.0, 30.0); 3]);
    assert_eq!(CustomerBase::fit_repeats(&customers, as_of), Err(FitError::TooFewRepeatBuyers { found: 3 }));
}

#[test]
fn lifetime_value_is_the_expected_value_of_the_purchases_discounted_month_by_month() {
    let base = CustomerBase {
        as_of: Utc.with_ymd_and_hms(1997, 10, 1, 0, 0, 0).unwrap(),
        customers: 2357,
        repeat_buyers: 946,
        bgnbd: BgNbd { alpha: CDNOW_WEEKS.alpha * 7.0, ..CDNOW_WEEKS },
        bgnbd_log_likelihood: 0.0,
        gamma_gamma: Some(CDNOW_SPEND),
    };
    let c = Repeats { purchases: 4, last_days: 200.0, observed_days: 260.0, mean_value: Some(50.0) };
    let undiscounted = Valuation { horizon_days: 365.0, annual_discount_rate: 0.0 };
    let purchases = base.bgnbd.expected_purchases(&c, 365.0);
    assert_close(base.outlook(&c, &undiscounted).clv.unwrap(), 48.540014419610664 * purchases, 1e-12);
    // At 10 % a year, each month's purchases are worth less the later they come.
    let discounted = base.outlook(&c, &Valuation { annual_discount_rate: 0.10, ..undiscounted }).clv.unwrap();
    assert!(discounted < 48.540014419610664 * purchases);
    assert!(discounted > 48.540014419610664 * purchases / 1.10);
    let outlook = base.outlook(&c, &undiscounted);
    let mut many = Outlooks::new(&base, undiscounted);
    assert_eq!(many.of(&c), outlook);
    let cheaper = Repeats { mean_value: Some(10.0), ..c };
    assert_eq!(many.of(&cheaper), base.outlook(&cheaper, &undiscounted), "same days, another value");
    assert_close(outlook.expected_orders_365d, purchases, 1e-15);
    assert!(outlook.expected_orders_90d < purchases);
    // Without a spend model there is no value, and the rest still stands.
    let no_spend = CustomerBase { gamma_gamma: None, ..base };
    assert_eq!(no_spend.outlook(&c, &undiscounted).clv, None);
}
