//! The loyalty rules for one member, without IO: which ledger entries are
//! due (points for new orders, bonuses, expiry of old points), which tier the
//! member holds, and where they stand (balance, points about to expire,
//! distance to the next tier), as of a moment. Running it again on its own
//! output adds nothing: every entry has a `source_key` that names its cause.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc};

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
    /// Points on joining and on each birthday; 0 for none.
    pub welcome_bonus: i64,
    pub birthday_bonus: i64,
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
            welcome_bonus: settings.welcome_bonus,
            birthday_bonus: settings.birthday_bonus,
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

/// Entry kinds: `earn` (an order), `bonus` (welcome, birthday), `redeem`,
/// `adjust`, `expire` (what was left of a lot when it expired; 0 when it had
/// all been used, which marks the lot as settled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: String,
    pub points: i64,
    pub source_key: String,
    pub at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub order_id: Option<i64>,
}

/// The tier a member holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub tier: String,
    pub tier_since: DateTime<Utc>,
    pub joined_at: DateTime<Utc>,
    /// `up` or `down`: how the member reached the tier; `None` since joining.
    pub direction: Option<String>,
}

/// Where a member stands after a recompute: what segments and templates read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Standing {
    pub points: i64,
    /// Points that expire in the 30 days after the recompute, unless used first.
    pub points_expiring_30d: i64,
    /// The next tier up and what is missing to reach it, in the tier basis
    /// (currency units or points); `None` in the top tier.
    pub next_tier: Option<(String, f64)>,
}

/// One member's data, as loaded for [`recompute`].
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub customer_id: i64,
    pub birthday: Option<NaiveDate>,
    pub orders: &'a [Order],
    pub ledger: &'a [Entry],
    pub account: Option<&'a Account>,
}

/// What is due for one member.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub new_entries: Vec<Entry>,
    /// The account after this recompute, when it is new or its tier changed.
    pub account: Option<Account>,
    /// (from, to) when the tier changed (from is `None` for a new member).
    pub tier_change: Option<(Option<String>, String)>,
    pub standing: Standing,
}

const YEAR: Duration = Duration::days(365);
/// How far ahead `points_expiring_30d` looks.
const EXPIRY_NOTICE: Duration = Duration::days(30);
/// A birthday bonus missed by this many days (the daemon was down) is still given.
const BIRTHDAY_WINDOW_DAYS: i64 = 7;

impl Rules {
    /// Points for an order: whole currency units times the rate and the
    /// category's multiplier, rounded down.
    pub fn points_for(&self, order: &Order) -> i64 {
        let multiplier = order.category.as_ref().and_then(|c| self.multipliers.get(c)).copied().unwrap_or(1.0);
        let points = (order.amount_cents.max(0) as f64 / 100.0 * self.points_per_unit * multiplier).floor();
        points as i64
    }

    pub fn expiry(&self, earned: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.expiry_months > 0).then(|| earned.checked_add_months(Months::new(self.expiry_months))).flatten()
    }

    /// The index of the highest tier whose threshold `value` reaches.
    pub fn tier_for(&self, value: f64) -> usize {
        self.tiers.iter().rposition(|(_, threshold)| value >= *threshold).unwrap_or(0)
    }

    /// The index of a tier by name; `None` for a tier no longer in the rules.
    pub fn rank(&self, tier: &str) -> Option<usize> {
        self.tiers.iter().position(|(name, _)| name == tier)
    }

    /// The tier above `tier` and what `value` still lacks to reach it.
    pub fn next_tier(&self, tier: &str, value: f64) -> Option<(String, f64)> {
        let (name, threshold) = self.tiers.get(self.rank(tier)? + 1)?;
        Some((name.clone(), (threshold - value).max(0.0)))
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

    /// The bonus entry, kept by `source_key`, for points given at `at`.
    fn bonus(&self, points: i64, source_key: String, at: DateTime<Utc>) -> Entry {
        Entry { kind: "bonus".into(), points, source_key, at, expires_at: self.expiry(at), order_id: None }
    }

    /// The birthday bonus due as of `as_of`: within a week from the birthday
    /// (29 February counts as the 28th in other years), once a year, and
    /// only for a birthday on or after the day the member joined.
    fn birthday_bonus(&self, member: &Member, joined_at: DateTime<Utc>, as_of: DateTime<Utc>) -> Option<Entry> {
        let birthday = member.birthday.filter(|_| self.birthday_bonus > 0)?;
        let today = as_of.date_naive();
        [today.year(), today.year() - 1].into_iter().find_map(|year| {
            let day = birthday.with_year(year).or_else(|| NaiveDate::from_ymd_opt(year, 2, 28))?;
            let due = day <= today && (today - day).num_days() < BIRTHDAY_WINDOW_DAYS && day >= joined_at.date_naive();
            due.then(|| self.bonus(self.birthday_bonus, format!("birthday:{}:{year}", member.customer_id), as_of))
        })
    }
}

/// The entries, tier and standing due for one member as of `as_of`; orders
/// after `as_of` are ignored.
pub fn recompute(rules: &Rules, member: &Member, as_of: DateTime<Utc>) -> Outcome {
    let orders: Vec<Order> = member.orders.iter().filter(|o| o.at <= as_of).cloned().collect();
    let mut outcome = Outcome::default();
    if orders.is_empty() && member.account.is_none() {
        return outcome;
    }
    let value = rules.basis_value(&orders, as_of);
    let (account, tier_change) = tier(rules, member.account, &orders, value, as_of);
    let joined_at = account.as_ref().or(member.account).map_or(as_of, |a| a.joined_at);

    let known: HashSet<&str> = member.ledger.iter().map(|e| e.source_key.as_str()).collect();
    let earned = orders.iter().map(|o| Entry {
        kind: "earn".into(),
        points: rules.points_for(o),
        source_key: format!("order:{}", o.id),
        at: o.at,
        expires_at: rules.expiry(o.at),
        order_id: Some(o.id),
    });
    let welcome = (member.account.is_none() && rules.welcome_bonus > 0)
        .then(|| rules.bonus(rules.welcome_bonus, format!("welcome:{}", member.customer_id), joined_at));
    let birthday = rules.birthday_bonus(member, joined_at, as_of);
    let mut new_entries: Vec<Entry> = earned
        .filter(|e| e.points > 0)
        .chain(welcome)
        .chain(birthday)
        .filter(|e| !known.contains(e.source_key.as_str()))
        .collect();
    let all: Vec<Entry> = member.ledger.iter().chain(&new_entries).cloned().collect();
    let settled = settle_lots(&all, as_of + EXPIRY_NOTICE);
    let (due, coming): (Vec<Entry>, Vec<Entry>) = settled.into_iter().partition(|e| e.at <= as_of);
    new_entries.extend(due.into_iter().filter(|e| !known.contains(e.source_key.as_str())));

    let tier_now = account.as_ref().or(member.account).map(|a| a.tier.as_str()).unwrap_or_default();
    outcome.standing = Standing {
        points: member.ledger.iter().chain(&new_entries).map(|e| e.points).sum(),
        points_expiring_30d: coming.iter().map(|e| -e.points).sum(),
        next_tier: rules.next_tier(tier_now, value),
    };
    outcome.new_entries = new_entries;
    outcome.account = account;
    outcome.tier_change = tier_change;
    outcome
}

/// The new account when the member joins or changes tier, and the change.
fn tier(
    rules: &Rules,
    current: Option<&Account>,
    orders: &[Order],
    value: f64,
    as_of: DateTime<Utc>,
) -> (Option<Account>, Option<(Option<String>, String)>) {
    let target = rules.tier_for(value);
    let name = rules.tiers[target].0.clone();
    let Some(current) = current else {
        let joined_at = orders.iter().map(|o| o.at).min().unwrap_or(as_of);
        let account = Account { tier: name.clone(), tier_since: as_of, joined_at, direction: None };
        return (Some(account), Some((None, name)));
    };
    let direction = match rules.rank(&current.tier) {
        // A tier no longer in the rules: move to the one the member qualifies for.
        None => "down",
        Some(held) if target > held => "up",
        Some(held) if target < held && rules.below_throughout_grace(orders, rules.tiers[held].1, as_of) => "down",
        Some(_) => return (None, None),
    };
    let account = Account {
        tier: name.clone(),
        tier_since: as_of,
        joined_at: current.joined_at,
        direction: Some(direction.into()),
    };
    (Some(account), Some((Some(current.tier.clone()), name)))
}

/// The expiry entry of every lot (positive entry) that expires by `until`,
/// oldest points first: debits (redemptions, negative adjustments) use the
/// oldest unexpired points, and what is left of a lot when it expires is
/// written off (0 when nothing is left, which settles the lot).
fn settle_lots(ledger: &[Entry], until: DateTime<Utc>) -> Vec<Entry> {
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
        if let Some(expires) = lot.expires_at.filter(|at| *at <= until) {
            events.push((expires, 1, Event::Expire(i)));
        }
    }
    for debit in ledger.iter().filter(|e| e.points < 0 && e.kind != "expire") {
        events.push((debit.at, 2, Event::Debit(debit)));
    }
    events.sort_by_key(|(at, rank, _)| (*at, *rank));
    let mut remaining: Vec<Option<i64>> = vec![None; lots.len()];
    let mut settled = Vec::new();
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
            Event::Expire(i) => settled.push(Entry {
                kind: "expire".into(),
                points: -remaining[i].take().unwrap_or(0),
                source_key: format!("expire:{}", lots[i].source_key),
                at,
                expires_at: None,
                order_id: None,
            }),
        }
    }
    settled
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
