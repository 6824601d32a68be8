//! Features of a hand-made history, against values worked out by hand.

use super::history::{Complaint, LedgerEntry, Order, TierChange};
use super::*;

/// 2024-01-01T00:00:00Z: a midnight, so that day boundaries are exact.
const CUTOFF: i64 = 1_704_067_200;

fn at(days_before: f64) -> i64 {
    CUTOFF - (days_before * DAY as f64) as i64
}

fn order(days_before: f64, cents: i64, category: Option<u32>) -> Order {
    Order { at: at(days_before), cents, category }
}

fn orders() -> Vec<Order> {
    vec![
        order(400.0, 1000, Some(0)),
        order(100.0, 2000, Some(1)),
        // The same day as the order before: one purchase day, two orders.
        Order { at: at(100.0) + 3600, cents: 500, category: Some(1) },
        order(10.0, 3000, None),
        // After the cutoff: must be invisible.
        order(-1.0, 100_000, Some(2)),
    ]
}

#[test]
fn purchase_features_match_hand_computed_values_and_ignore_later_orders() {
    let orders = orders();
    let f = compute(&CustomerEvents::with_orders(&orders), CUTOFF);
    assert_eq!(f.orders_total, 4);
    assert_eq!(f.recency_days, Some(10.0));
    assert_eq!(f.first_order_value, Some(10.0));
    assert_eq!(f.monetary_total, 65.0);
    assert_eq!(f.monetary_mean, Some(16.25));
    // Purchase days 400, 100 and 10 days before: gaps 300 and 90.
    assert_eq!(f.frequency, 3);
    assert_eq!(f.gap_mean_days, Some(195.0));
    assert_eq!(f.gap_std_days, Some(105.0));
    assert_eq!(f.tenure_days, Some(400.0));
    assert_eq!((f.orders_30d, f.spend_30d), (1, 30.0));
    assert_eq!((f.orders_90d, f.spend_90d), (1, 30.0));
    assert_eq!((f.orders_365d, f.spend_365d), (3, 55.0));
    assert_eq!(f.distinct_categories, 2);
    // 30 spent in the last 90 days against 25 in the 90 days before.
    assert_eq!(f.spend_trend, Some(5.0 / 55.0));
    assert_eq!((f.complaints_open, f.complaints_365d), (0, 0));
    assert_eq!((f.loyalty_points, f.loyalty_tier.clone(), f.days_since_last_message), (None, None, None));
}

#[test]
fn complaints_loyalty_and_messages_count_only_what_happened_before_the_cutoff() {
    let orders = orders();
    let complaints = [
        Complaint { opened_at: at(400.0), resolved_at: Some(at(390.0)) },
        Complaint { opened_at: at(20.0), resolved_at: None },
        // Resolved only after the cutoff: still open at the cutoff.
        Complaint { opened_at: at(5.0), resolved_at: Some(at(-2.0)) },
        Complaint { opened_at: at(-1.0), resolved_at: None },
    ];
    let ledger = [
        LedgerEntry { at: at(50.0), points: 100 },
        LedgerEntry { at: at(5.0), points: -20 },
        LedgerEntry { at: at(-1.0), points: 500 },
    ];
    let tiers = [
        TierChange { at: at(60.0), tier: "silver".into() },
        TierChange { at: at(3.0), tier: "gold".into() },
        TierChange { at: at(-1.0), tier: "platinum".into() },
    ];
    let messages = [at(7.0), at(2.0), at(-1.0)];
    let events = CustomerEvents {
        signed_up_at: Some(at(500.0)),
        orders: &orders,
        complaints: &complaints,
        ledger: &ledger,
        tier_changes: &tiers,
        messages: &messages,
    };
    let f = compute(&events, CUTOFF);
    assert_eq!((f.complaints_open, f.complaints_365d), (2, 2));
    assert_eq!(f.loyalty_points, Some(80.0));
    assert_eq!(f.loyalty_tier.as_deref(), Some("gold"));
    assert_eq!(f.days_since_last_message, Some(2.0));
    // Signed up before the first order: tenure counts from the sign-up.
    assert_eq!(f.tenure_days, Some(500.0));
    let inputs = model_inputs(&f, None);
    assert_eq!(inputs.len(), MODEL_INPUTS.len());
    assert_eq!(
        inputs[MODEL_INPUTS.iter().position(|&n| n == "purchase_days_per_year").unwrap()],
        Some(3.0 * 365.0 / 500.0)
    );
    assert_eq!(inputs[MODEL_INPUTS.iter().position(|&n| n == "recency_to_gap").unwrap()], Some(10.0 / 195.0));
    let base = CustomerBaseInputs { expected_purchase_days: 0.7, p_alive: 0.9, p_purchase: 0.4 };
    let with_base = model_inputs(&f, Some(base));
    assert_eq!(with_base[MODEL_INPUTS.len() - 3..], [Some(0.7), Some(0.9), Some(0.4)]);
    assert_eq!(inputs[MODEL_INPUTS.len() - 3..], [None, None, None], "missing without a fitted model");
}

#[test]
fn a_customer_without_orders_before_the_cutoff_has_no_purchase_values() {
    let later = [order(-3.0, 500, None)];
    let events = CustomerEvents { signed_up_at: Some(at(30.0)), ..CustomerEvents::with_orders(&later) };
    let f = compute(&events, CUTOFF);
    assert_eq!((f.orders_total, f.frequency, f.monetary_total), (0, 0, 0.0));
    assert_eq!((f.recency_days, f.monetary_mean, f.gap_mean_days), (None, None, None));
    assert_eq!(f.tenure_days, Some(30.0));
    assert_eq!(f.spend_trend, None);
}
