//! The loyalty rules for one member, without IO: which ledger entries are
//! due (points for new orders, expiry of old points) and which tier the
//! member holds, as of a moment. Running it again on its own output adds
//! nothing: every entry has a `source_key` that names its cause.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Months, Utc};

use crate::config::LoyaltySettings;

/// What tiers are measured by, over the last 12 months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Order amounts, in currency units.
    Spend,
    /// Points earned from orders.
    Points,
}

#[derive(Debug, Clone)]
pub struct Rules {
    pub points_per_unit: f64,
    pub multipliers: BTreeMap<String, f64>,
    /// 0: points never expire.
    pub expiry_months: u32,
    pub basis: Basis,
    /// (name, threshold), lowest first; the first threshold is 0.
    pub tiers: Vec<(String, f64)>,
    pub downgrade_grace: Duration,
}

impl From<&LoyaltySettings> for Rules {
    fn from(settings: &LoyaltySettings) -> Self {
        Rules {
            points_per_unit: settings.points_per_unit,
            multipliers: settings.category_multipliers.clone(),
            expiry_months: settings.expiry_months,
            basis: if settings.tier_basis == "points" { Basis::Points } else { Basis::Spend },
            tiers: settings.tiers(),
            downgrade_grace: settings.downgrade_grace(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub amount_cents: i64,
    pub category: Option<String>,
}

/// Entry kinds: `earn` (an order), `redeem`, `adjust`, `expire`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: String,
    pub points: i64,
    pub source_key: String,
    pub at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub order_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub tier: String,
    pub tier_since: DateTime<Utc>,
    pub joined_at: DateTime<Utc>,
}

/// What is due for one member.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub new_entries: Vec<Entry>,
    /// The account after this recompute, when it is new or its tier changed.
    pub account: Option<Account>,
    /// (from, to) when the tier changed (from is `None` for a new member).
    pub tier_change: Option<(Option<String>, String)>,
}

const YEAR: Duration = Duration::days(365);

impl Rules {
    /// Points for an order: whole currency units times the rate and the
    /// category's multiplier, rounded down.
    pub fn points_for(&self, order: &Order) -> i64 {
        let multiplier = order.category.as_ref().and_then(|c| self.multipliers.get(c)).copied().unwrap_or(1.0);
        let points = (order.amount_cents.max(0) as f64 / 100.0 * self.points_per_unit * multiplier).floor();
        points as i64
    }

    fn expiry(&self, earned: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.expiry_months > 0).then(|| earned.checked_add_months(Months::new(self.expiry_months))).flatten()
    }

    /// The index of the highest tier whose threshold `value` reaches.
    fn tier_for(&self, value: f64) -> usize {
        self.tiers.iter().rposition(|(_, threshold)| value >= *threshold).unwrap_or(0)
    }

    /// Spend or earned points in the 12 months up to and including `at`,
    /// summed as integers (cents, points) so that a threshold is met exactly.
    pub fn basis_value(&self, orders: &[Order], at: DateTime<Utc>) -> f64 {
        let in_window = orders.iter().filter(|o| o.at <= at && o.at > at - YEAR);
        match self.basis {
            Basis::Spend => in_window.map(|o| o.amount_cents).sum::<i64>() as f64 / 100.0,
            Basis::Points => in_window.map(|o| self.points_for(o)).sum::<i64>() as f64,
        }
    }

    /// Whether the member stayed below `threshold` for the whole grace period
    /// before `as_of`. The 12-month value only rises at an order, so checking
    /// the start of the period and each order in it covers every moment.
    fn below_throughout_grace(&self, orders: &[Order], threshold: f64, as_of: DateTime<Utc>) -> bool {
        let start = as_of - self.downgrade_grace;
        std::iter::once(start)
            .chain(orders.iter().map(|o| o.at).filter(|at| *at > start && *at <= as_of))
            .chain(std::iter::once(as_of))
            .all(|at| self.basis_value(orders, at) < threshold)
    }
}

/// The entries and tier due for one member as of `as_of`. `orders` and
/// `ledger` are the member's; orders after `as_of` are ignored.
pub fn recompute(
    rules: &Rules,
    orders: &[Order],
    ledger: &[Entry],
    account: Option<&Account>,
    as_of: DateTime<Utc>,
) -> Outcome {
    let orders: Vec<Order> = orders.iter().filter(|o| o.at <= as_of).cloned().collect();
    let mut outcome = Outcome::default();
    if orders.is_empty() && account.is_none() {
        return outcome;
    }
    let known: HashSet<&str> = ledger.iter().map(|e| e.source_key.as_str()).collect();
    let earned: Vec<Entry> = orders
        .iter()
        .map(|o| Entry {
            kind: "earn".into(),
            points: rules.points_for(o),
            source_key: format!("order:{}", o.id),
            at: o.at,
            expires_at: rules.expiry(o.at),
            order_id: Some(o.id),
        })
        .filter(|e| !known.contains(e.source_key.as_str()) && e.points > 0)
        .collect();
    let mut all: Vec<Entry> = ledger.iter().cloned().chain(earned.iter().cloned()).collect();
    let expired = expiries(&all, as_of);
    let expired: Vec<Entry> = expired.into_iter().filter(|e| !known.contains(e.source_key.as_str())).collect();
    all.extend(expired.iter().cloned());
    outcome.new_entries = earned.into_iter().chain(expired).collect();

    let target = rules.tier_for(rules.basis_value(&orders, as_of));
    match account {
        None => {
            let tier = rules.tiers[target].0.clone();
            let joined_at = orders.iter().map(|o| o.at).min().unwrap_or(as_of);
            outcome.account = Some(Account { tier: tier.clone(), tier_since: as_of, joined_at });
            outcome.tier_change = Some((None, tier));
        }
        Some(current) => {
            let held = rules.tiers.iter().position(|(name, _)| *name == current.tier);
            let change = match held {
                // A tier no longer in the rules: move to the one the member qualifies for.
                None => true,
                Some(held) if target > held => true,
                Some(held) if target < held => rules.below_throughout_grace(&orders, rules.tiers[held].1, as_of),
                Some(_) => false,
            };
            if change {
                let tier = rules.tiers[target].0.clone();
                outcome.account = Some(Account { tier: tier.clone(), tier_since: as_of, joined_at: current.joined_at });
                outcome.tier_change = Some((Some(current.tier.clone()), tier));
            }
        }
    }
    outcome
}

/// The expiry entries due by `as_of`, oldest points first: debits
/// (redemptions, negative adjustments) use the oldest unexpired points, and
/// what is left of a lot when it expires is written off.
fn expiries(ledger: &[Entry], as_of: DateTime<Utc>) -> Vec<Entry> {
    enum Event<'a> {
        Earn(usize),
        Expire(usize),
        Debit(&'a Entry),
    }
    let lots: Vec<&Entry> = {
        let mut lots: Vec<&Entry> = ledger.iter().filter(|e| e.points > 0).collect();
        lots.sort_by(|a, b| (a.at, &a.source_key).cmp(&(b.at, &b.source_key)));
        lots
    };
    let mut events: Vec<(DateTime<Utc>, u8, Event)> = Vec::new();
    for (i, lot) in lots.iter().enumerate() {
        events.push((lot.at, 0, Event::Earn(i)));
        if let Some(expires) = lot.expires_at.filter(|at| *at <= as_of) {
            events.push((expires, 1, Event::Expire(i)));
        }
    }
    for debit in ledger.iter().filter(|e| e.points < 0 && e.kind != "expire") {
        events.push((debit.at, 2, Event::Debit(debit)));
    }
    events.sort_by_key(|(at, rank, _)| (*at, *rank));
    let mut remaining: Vec<Option<i64>> = vec![None; lots.len()];
    let mut due = Vec::new();
    for (at, _, event) in events {
        match event {
            Event::Earn(i) => remaining[i] = Some(lots[i].points),
            Event::Debit(debit) => {
                let mut owed = -debit.points;
                for left in remaining.iter_mut().flatten() {
                    let used = owed.min(*left);
                    *left -= used;
                    owed -= used;
                    if owed == 0 {
                        break;
                    }
                }
            }
            Event::Expire(i) => {
                let left = remaining[i].take().unwrap_or(0);
                if left > 0 {
                    due.push(Entry {
                        kind: "expire".into(),
                        points: -left,
                        source_key: format!("expire:{}", lots[i].source_key),
                        at,
                        expires_at: None,
                        order_id: None,
                    });
                }
            }
        }
    }
    due
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
