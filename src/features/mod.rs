//! Customer features as of a moment: recency, frequency, monetary value,
//! gaps, windows, cross-buying, complaints, loyalty and contact history.
//!
//! The maths here is pure (no IO, no clock): [`history`] loads the events
//! once, [`compute`] turns one customer's events into [`Features`] as of any
//! cutoff, and [`model_inputs`] derives the model's input vector. Training
//! (past cutoffs) and scoring (now) both go through [`compute`], so they
//! cannot drift apart.

pub mod history;
pub mod snapshot;

pub use history::{CustomerEvents, History};

/// Seconds in a day: all durations in features are in days.
pub const DAY: i64 = 86_400;

/// What a customer did before the cutoff. `None` where the quantity does not
/// exist (no orders yet, a single purchase day, no loyalty account).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Features {
    pub recency_days: Option<f64>,
    pub frequency: i32,
    pub orders_total: i32,
    pub monetary_total: f64,
    pub monetary_mean: Option<f64>,
    pub first_order_value: Option<f64>,
    pub tenure_days: Option<f64>,
    pub gap_mean_days: Option<f64>,
    pub gap_std_days: Option<f64>,
    pub orders_30d: i32,
    pub orders_90d: i32,
    pub orders_365d: i32,
    pub spend_30d: f64,
    pub spend_90d: f64,
    pub spend_365d: f64,
    pub distinct_categories: i32,
    /// Spend in the last 90 days against the 90 days before, in [-1, 1].
    pub spend_trend: Option<f64>,
    pub complaints_open: i32,
    pub complaints_365d: i32,
    pub loyalty_tier: Option<String>,
    pub loyalty_points: Option<f64>,
    pub days_since_last_message: Option<f64>,
    /// The purchase days as the customer-base models read them.
    pub repeats: Option<Repeats>,
}

/// A customer's purchase days as the customer-base models (BG/NBD,
/// Gamma-Gamma) read them, counted from the first: how many came after it,
/// how many days after it the last one was, and how many days the customer
/// has been watched since (to the last day before the cutoff, so that a
/// first purchase on that day is watched for 0 days).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Repeats {
    pub purchases: u32,
    pub last_days: f64,
    pub observed_days: f64,
    /// The mean value of the repeat purchase days; None without one.
    pub mean_value: Option<f64>,
}

impl Repeats {
    /// The purchase days alone, as a key: customers with the same one share
    /// their likelihood and their expected purchases.
    pub fn days_key(&self) -> (u32, u64, u64) {
        (self.purchases, self.last_days.to_bits(), self.observed_days.to_bits())
    }
}

/// The [`Repeats`] of the orders (in time order) before `cutoff`; None
/// without one.
pub fn repeats(orders: &[history::Order], cutoff: i64) -> Option<Repeats> {
    let orders = &orders[..orders.partition_point(|o| o.at < cutoff)];
    let first_day = orders.first()?.at.div_euclid(DAY);
    let last_day = orders.last()?.at.div_euclid(DAY);
    // Orders are in time order: a new purchase day starts wherever the day changes.
    let purchases = orders.windows(2).filter(|w| w[0].at.div_euclid(DAY) != w[1].at.div_euclid(DAY)).count() as u32;
    let repeat_cents: i64 = orders.iter().filter(|o| o.at.div_euclid(DAY) > first_day).map(|o| o.cents).sum();
    Some(Repeats {
        purchases,
        last_days: (last_day - first_day) as f64,
        observed_days: ((cutoff - 1).div_euclid(DAY) - first_day) as f64,
        mean_value: (purchases > 0).then(|| money(repeat_cents) / f64::from(purchases)),
    })
}

/// Computes a customer's features from the events strictly before `cutoff`
/// (seconds since the epoch); later events are invisible.
pub fn compute(events: &CustomerEvents<'_>, cutoff: i64) -> Features {
    let orders = &events.orders[..events.orders.partition_point(|o| o.at < cutoff)];
    let mut features = Features::default();
    purchases(&mut features, orders, cutoff);
    features.tenure_days = tenure(orders, events.signed_up_at, cutoff);
    complaints(&mut features, events, cutoff);
    loyalty(&mut features, events, cutoff);
    features.days_since_last_message =
        events.messages.iter().filter(|&&sent| sent < cutoff).max().map(|&sent| days(cutoff - sent));
    features.repeats = repeats(orders, cutoff);
    features
}

/// Recency, frequency, monetary value, gaps, windows and cross-buying.
fn purchases(f: &mut Features, orders: &[history::Order], cutoff: i64) {
    let (Some(first), Some(last)) = (orders.first(), orders.last()) else { return };
    f.orders_total = orders.len() as i32;
    f.recency_days = Some(days(cutoff - last.at));
    f.first_order_value = Some(money(first.cents));
    let total: i64 = orders.iter().map(|o| o.cents).sum();
    f.monetary_total = money(total);
    f.monetary_mean = Some(f.monetary_total / orders.len() as f64);
    let mut purchase_days: Vec<i64> = orders.iter().map(|o| o.at.div_euclid(DAY)).collect();
    purchase_days.dedup();
    f.frequency = purchase_days.len() as i32;
    let gaps: Vec<f64> = purchase_days.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    if !gaps.is_empty() {
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let variance = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        f.gap_mean_days = Some(mean);
        f.gap_std_days = Some(variance.sqrt());
    }
    let window = |length_days: i64| {
        let recent = orders.iter().filter(|o| o.at >= cutoff - length_days * DAY);
        recent.fold((0i32, 0i64), |(count, cents), o| (count + 1, cents + o.cents))
    };
    (f.orders_30d, f.spend_30d) = window(30).map_money();
    (f.orders_90d, f.spend_90d) = window(90).map_money();
    (f.orders_365d, f.spend_365d) = window(365).map_money();
    let earlier: i64 =
        orders.iter().filter(|o| o.at >= cutoff - 180 * DAY && o.at < cutoff - 90 * DAY).map(|o| o.cents).sum();
    let recent = window(90).1;
    f.spend_trend =
        Some(if recent + earlier == 0 { 0.0 } else { (recent - earlier) as f64 / (recent + earlier) as f64 });
    let mut categories: Vec<u32> = orders.iter().filter_map(|o| o.category).collect();
    categories.sort_unstable();
    categories.dedup();
    f.distinct_categories = categories.len() as i32;
}

/// Days since the customer first bought or signed up, whichever came first.
fn tenure(orders: &[history::Order], signed_up_at: Option<i64>, cutoff: i64) -> Option<f64> {
    let signed_up = signed_up_at.filter(|&at| at < cutoff);
    let start = match (orders.first().map(|o| o.at), signed_up) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(days(cutoff - start))
}

fn complaints(f: &mut Features, events: &CustomerEvents<'_>, cutoff: i64) {
    for complaint in events.complaints.iter().filter(|c| c.opened_at < cutoff) {
        if complaint.resolved_at.is_none_or(|resolved| resolved >= cutoff) {
            f.complaints_open += 1;
        }
        if complaint.opened_at >= cutoff - 365 * DAY {
            f.complaints_365d += 1;
        }
    }
}

/// Points are the ledger's sum before the cutoff; the tier is the latest change before it.
fn loyalty(f: &mut Features, events: &CustomerEvents<'_>, cutoff: i64) {
    let entries: Vec<_> = events.ledger.iter().filter(|e| e.at < cutoff).collect();
    if !entries.is_empty() {
        f.loyalty_points = Some(entries.iter().map(|e| e.points as f64).sum());
    }
    f.loyalty_tier = events.tier_changes.iter().filter(|c| c.at < cutoff).max_by_key(|c| c.at).map(|c| c.tier.clone());
}

trait MapMoney {
    fn map_money(self) -> (i32, f64);
}

impl MapMoney for (i32, i64) {
    fn map_money(self) -> (i32, f64) {
        (self.0, money(self.1))
    }
}

fn days(seconds: i64) -> f64 {
    seconds as f64 / DAY as f64
}

fn money(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// The inputs a model sees, in this order. Changing the list changes the
/// model file format: files with another list are refused.
pub const MODEL_INPUTS: &[&str] = &[
    "recency_days",
    "frequency",
    "orders_total",
    "monetary_total",
    "monetary_mean",
    "first_order_value",
    "tenure_days",
    "gap_mean_days",
    "gap_std_days",
    "orders_30d",
    "orders_90d",
    "orders_365d",
    "spend_30d",
    "spend_90d",
    "spend_365d",
    "distinct_categories",
    "spend_trend",
    "complaints_open",
    "complaints_365d",
    "loyalty_points",
    "days_since_last_message",
    "purchase_days_per_year",
    "recency_to_gap",
    "expected_purchase_days",
    "p_alive",
    "p_purchase_within_horizon",
];

/// What the fitted BG/NBD model says of a customer as of the cutoff: the
/// purchase days it expects within the propensity model's horizon, the
/// probability that the customer is still a customer, and the probability
/// that they buy at least once within the horizon. Fitted on the
/// purchases before the same cutoff as the other inputs (see
/// [`crate::model::train`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomerBaseInputs {
    pub expected_purchase_days: f64,
    pub p_alive: f64,
    pub p_purchase: f64,
}

/// The model's input vector; `None` where a value does not exist (the model
/// fills it in). Two are derived: how often the customer buys over their
/// tenure, and how overdue they are against their usual gap; the last two
/// are the BG/NBD model's (missing for customers who never bought, or where
/// the model could not be fitted).
pub fn model_inputs(f: &Features, base: Option<CustomerBaseInputs>) -> Vec<Option<f64>> {
    let per_year = f.tenure_days.map(|t| f64::from(f.frequency) * 365.0 / t.max(1.0));
    let overdue = f.recency_days.zip(f.gap_mean_days).map(|(r, g)| r / g.max(1.0));
    vec![
        f.recency_days,
        Some(f.frequency.into()),
        Some(f.orders_total.into()),
        Some(f.monetary_total),
        f.monetary_mean,
        f.first_order_value,
        f.tenure_days,
        f.gap_mean_days,
        f.gap_std_days,
        Some(f.orders_30d.into()),
        Some(f.orders_90d.into()),
        Some(f.orders_365d.into()),
        Some(f.spend_30d),
        Some(f.spend_90d),
        Some(f.spend_365d),
        Some(f.distinct_categories.into()),
        f.spend_trend,
        Some(f.complaints_open.into()),
        Some(f.complaints_365d.into()),
        f.loyalty_points,
        f.days_since_last_message,
        per_year,
        overdue,
        base.map(|b| b.expected_purchase_days),
        base.map(|b| b.p_alive),
        base.map(|b| b.p_purchase),
    ]
}

#[cfg(test)]
mod tests;
