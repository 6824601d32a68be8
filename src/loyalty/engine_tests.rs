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
        welcome_bonus: 0,
        birthday_bonus: 0,
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

/// Customer 7 without a birthday.
fn recompute(
    rules: &Rules,
    orders: &[Order],
    ledger: &[Entry],
    account: Option<&Account>,
    as_of: DateTime<Utc>,
) -> Outcome {
    super::recompute(rules, &Member { customer_id: 7, birthday: None, orders, ledger, account }, as_of)
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
    assert_eq!(points(&later.new_entries), [("expire:order:1".into(), 0), ("expire:order:2".into(), -30)]);
    assert_eq!(later.new_entries[1].at, utc("2026-03-10"));
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
        [
            ("order:1".into(), 40),
            ("order:2".into(), 30),
            ("order:3".into(), 20),
            ("expire:order:1".into(), 0),
            ("expire:order:2".into(), -20)
        ]
    );
    assert_eq!(outcome.standing.points, 20);
    // Order 3's 20 points expire on 2026-05-10: within 30 days of 2026-04-15, not of 2026-03-01.
    assert_eq!(outcome.standing.points_expiring_30d, 0);
    let mut ledger = ledger.to_vec();
    ledger.extend(outcome.new_entries);
    let account = outcome.account.unwrap();
    let soon = recompute(&rules(), &orders, &ledger, Some(&account), utc("2026-04-15"));
    assert!(soon.new_entries.is_empty());
    assert_eq!((soon.standing.points, soon.standing.points_expiring_30d), (20, 20));
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
    assert_eq!(up.standing.next_tier, Some(("gold".to_owned(), 1000.0)));
    let silver = up.account.unwrap();
    assert_eq!(silver.direction.as_deref(), Some("up"));

    // The orders leave the 12-month window on 2026-01-10 and -12; 30 days
    // of grace follow.
    assert_eq!(recompute(&rules, &at_threshold, &[], Some(&silver), utc("2026-02-05")).tier_change, None);
    let down = recompute(&rules, &at_threshold, &[], Some(&silver), utc("2026-02-12"));
    assert_eq!(down.tier_change, Some((Some("silver".to_owned()), "member".to_owned())));
    assert_eq!(down.account.unwrap().direction.as_deref(), Some("down"));
    assert_eq!(down.standing.next_tier, Some(("silver".to_owned(), 500.0)));

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

/// Customer 7, born on 10 March.
fn with_birthday<'a>(orders: &'a [Order], ledger: &'a [Entry], account: Option<&'a Account>) -> Member<'a> {
    Member { customer_id: 7, birthday: NaiveDate::from_ymd_opt(1990, 3, 10), orders, ledger, account }
}

#[test]
fn the_welcome_bonus_comes_once_and_the_birthday_bonus_once_a_year_within_a_week() {
    let rules = Rules { welcome_bonus: 50, birthday_bonus: 100, ..rules() };
    let orders = [order(1, "2025-03-01", 1_000, "music")];
    let joined = super::recompute(&rules, &with_birthday(&orders, &[], None), utc("2025-03-02"));
    assert_eq!(points(&joined.new_entries), [("order:1".into(), 10), ("welcome:7".into(), 50)]);
    assert_eq!(joined.new_entries[1].at, utc("2025-03-01"));
    let account = joined.account.unwrap();
    let mut ledger = joined.new_entries;

    // The birthday (10 March) is granted from that day for a week, once.
    let on = |ledger: &[Entry], day: &str| {
        super::recompute(&rules, &with_birthday(&orders, ledger, Some(&account)), utc(day))
    };
    assert!(on(&ledger, "2025-03-09").new_entries.is_empty());
    let late = on(&ledger, "2025-03-16");
    assert_eq!(points(&late.new_entries), [("birthday:7:2025".into(), 100)]);
    assert_eq!(late.standing.points, 160);
    assert!(on(&ledger, "2025-03-17").new_entries.is_empty());
    ledger.extend(late.new_entries);
    assert!(on(&ledger, "2025-03-12").new_entries.is_empty());
}

#[test]
fn a_birthday_on_29_february_is_kept_on_the_28th_and_a_week_spans_new_year() {
    let rules = Rules { birthday_bonus: 100, ..rules() };
    let orders = [order(1, "2024-01-01", 1_000, "music")];
    let account =
        Account { tier: "member".into(), tier_since: utc("2024-01-01"), joined_at: utc("2024-01-01"), direction: None };
    let due = |birthday: (i32, u32, u32), as_of: &str| {
        let birthday = NaiveDate::from_ymd_opt(birthday.0, birthday.1, birthday.2);
        let member = Member { customer_id: 7, birthday, orders: &orders, ledger: &[], account: Some(&account) };
        points(&super::recompute(&rules, &member, utc(as_of)).new_entries)
            .into_iter()
            .filter(|(key, _)| key.starts_with("birthday"))
            .collect::<Vec<_>>()
    };
    assert_eq!(due((2000, 2, 29), "2025-02-28"), [("birthday:7:2025".into(), 100)]);
    assert_eq!(due((2000, 2, 29), "2024-02-29"), [("birthday:7:2024".into(), 100)]);
    assert_eq!(due((2000, 12, 30), "2026-01-02"), [("birthday:7:2025".into(), 100)]);
    assert!(due((2000, 12, 30), "2026-01-06").is_empty());
}
