//! Hand-computed ledgers for the loyalty rules.

use super::*;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{text}T12:00:00Z")).unwrap().with_timezone(&Utc)
}

fn rules() -> Rules {
    Rules {
        points_per_unit: 1.0,
        multipliers: BTreeMap::from([("books".to_owned(), 2.0)]),
        expiry_months: 12,
        basis: Basis::Spend,
        tiers: vec![("member".into(), 0.0), ("silver".into(), 500.0), ("gold".into(), 1500.0)],
        downgrade_grace: Duration::days(30),
    }
}

fn order(id: i64, day: &str, cents: i64, category: &str) -> Order {
    Order { id, at: utc(day), amount_cents: cents, category: Some(category.to_owned()) }
}

fn redemption(key: &str, day: &str, points: i64) -> Entry {
    Entry {
        kind: "redeem".into(),
        points: -points,
        source_key: key.into(),
        at: utc(day),
        expires_at: None,
        order_id: None,
    }
}

fn points(entries: &[Entry]) -> Vec<(String, i64)> {
    entries.iter().map(|e| (e.source_key.clone(), e.points)).collect()
}

#[test]
fn orders_earn_whole_units_times_the_category_multiplier() {
    let orders = [
        order(1, "2026-01-05", 1299, "music"),
        order(2, "2026-01-06", 3050, "books"),
        order(3, "2026-01-07", 99, "music"),
    ];
    let outcome = recompute(&rules(), &orders, &[], None, utc("2026-02-01"));
    // 12.99 → 12; 30.50 × 2 → 61; 0.99 → 0 points, so no entry.
    assert_eq!(points(&outcome.new_entries), [("order:1".into(), 12), ("order:2".into(), 61)]);
    assert_eq!(outcome.new_entries[0].expires_at, Some(utc("2027-01-05")));
    assert_eq!(outcome.tier_change, Some((None, "member".to_owned())));
    assert_eq!(outcome.account.as_ref().unwrap().joined_at, utc("2026-01-05"));
}

#[test]
fn redemptions_use_the_oldest_points_and_what_is_left_expires() {
    let orders = [order(1, "2025-01-10", 10_000, "music"), order(2, "2025-03-10", 5_000, "music")];
    let first = recompute(&rules(), &orders, &[], None, utc("2025-06-01"));
    let mut ledger = first.new_entries.clone();
    ledger.push(redemption("redemption:R1", "2025-06-15", 120));
    // The redemption takes all 100 of January's points and 20 of March's;
    // January's lot expires empty, March's expires with 30 left.
    let account = first.account.unwrap();
    let later = recompute(&rules(), &orders, &ledger, Some(&account), utc("2026-04-01"));
    assert_eq!(points(&later.new_entries), [("expire:order:2".into(), -30)]);
    assert_eq!(later.new_entries[0].at, utc("2026-03-10"));
    ledger.extend(later.new_entries);
    assert_eq!(ledger.iter().map(|e| e.points).sum::<i64>(), 0);
    // Nothing more is due: the same recompute adds nothing.
    let again = recompute(&rules(), &orders, &ledger, Some(&account), utc("2026-04-01"));
    assert!(again.new_entries.is_empty());
}

#[test]
fn points_expire_oldest_first_across_orders() {
    let orders = [
        order(1, "2025-01-10", 4_000, "music"),
        order(2, "2025-02-10", 3_000, "music"),
        order(3, "2025-05-10", 2_000, "music"),
    ];
    let ledger = [redemption("redemption:R1", "2025-03-01", 50)];
    let outcome = recompute(&rules(), &orders, &ledger, None, utc("2026-03-01"));
    // 40 + 30 earned before the redemption of 50: the oldest 40 go first,
    // then 10 of February's 30; order 3 (20) has not expired by March 2026.
    assert_eq!(
        points(&outcome.new_entries),
        [("order:1".into(), 40), ("order:2".into(), 30), ("order:3".into(), 20), ("expire:order:2".into(), -20)]
    );
}

#[test]
fn tiers_rise_at_the_threshold_at_once_and_fall_only_after_the_grace_period() {
    let rules = rules();
    let just_below = [order(1, "2025-01-10", 49_999, "music")];
    let member = recompute(&rules, &just_below, &[], None, utc("2025-01-11")).account.unwrap();
    assert_eq!(member.tier, "member");

    let at_threshold = [order(1, "2025-01-10", 49_999, "music"), order(2, "2025-01-12", 1, "music")];
    let up = recompute(&rules, &at_threshold, &[], Some(&member), utc("2025-01-12"));
    assert_eq!(up.tier_change, Some((Some("member".to_owned()), "silver".to_owned())));
    let silver = up.account.unwrap();

    // The orders leave the 12-month window on 2026-01-10 and -12; 30 days
    // of grace follow.
    assert_eq!(recompute(&rules, &at_threshold, &[], Some(&silver), utc("2026-02-05")).tier_change, None);
    let down = recompute(&rules, &at_threshold, &[], Some(&silver), utc("2026-02-12"));
    assert_eq!(down.tier_change, Some((Some("silver".to_owned()), "member".to_owned())));

    // An order during the grace period keeps the tier.
    let mut kept = at_threshold.to_vec();
    kept.push(order(3, "2026-01-20", 60_000, "music"));
    assert_eq!(recompute(&rules, &kept, &[], Some(&silver), utc("2026-02-12")).tier_change, None);
}

#[test]
fn gold_at_1500_and_orders_after_the_moment_do_not_count() {
    let orders = [order(1, "2025-05-01", 150_000, "music"), order(2, "2025-07-01", 100_000, "music")];
    let outcome = recompute(&rules(), &orders, &[], None, utc("2025-06-01"));
    assert_eq!(outcome.tier_change, Some((None, "gold".to_owned())));
    assert_eq!(points(&outcome.new_entries), [("order:1".into(), 1500)]);
}
