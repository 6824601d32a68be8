//! Metrics against values worked out by hand.

use super::*;

const T: bool = true;
const F: bool = false;

fn assert_close(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 1e-12, "expected {expected}, got {actual}");
}

/// Scores k/20 for k = 20, 19, …, 1: twenty distinct scores, highest first.
fn twenty_descending() -> Vec<f64> {
    (1..=20).rev().map(|k| f64::from(k) / 20.0).collect()
}

#[test]
fn auc_is_one_when_every_buyer_outscores_every_non_buyer() {
    let auc = roc_auc(&[0.1, 0.2, 0.8, 0.9], &[F, F, T, T]).unwrap();
    assert_close(auc, 1.0);
}

#[test]
fn auc_is_zero_when_the_ranking_is_reversed() {
    let auc = roc_auc(&[0.9, 0.8, 0.2, 0.1], &[F, F, T, T]).unwrap();
    assert_close(auc, 0.0);
}

#[test]
fn auc_is_one_half_when_all_scores_tie() {
    let auc = roc_auc(&[0.3; 5], &[T, F, F, T, F]).unwrap();
    assert_close(auc, 0.5);
}

#[test]
fn auc_counts_tied_scores_as_half() {
    // Ascending: 0.1(F) rank 1, 0.35(T) rank 2, 0.4(F) and 0.4(T) share
    // rank 3.5, 0.8(T) rank 5. Buyer rank sum 2 + 3.5 + 5 = 10.5,
    // U = 10.5 - 3*4/2 = 4.5, AUC = 4.5 / (3 buyers * 2 non-buyers) = 0.75.
    // Pairwise check: 0.35 beats 0.1 only (1), 0.4 beats 0.1 and ties 0.4
    // (1.5), 0.8 beats both (2): 4.5 of 6 pairs.
    let auc = roc_auc(&[0.1, 0.4, 0.35, 0.8, 0.4], &[F, F, T, T, T]).unwrap();
    assert_close(auc, 0.75);
}

#[test]
fn auc_refuses_a_single_class() {
    assert_eq!(roc_auc(&[0.1, 0.2], &[F, F]), Err(MetricsError::OneClass { positives: 0, rows: 2 }));
    assert_eq!(roc_auc(&[0.1, 0.2, 0.3], &[T, T, T]), Err(MetricsError::OneClass { positives: 3, rows: 3 }));
}

#[test]
fn auc_refuses_empty_or_mismatched_input() {
    assert_eq!(roc_auc(&[], &[]), Err(MetricsError::Empty));
    assert_eq!(roc_auc(&[0.1], &[T, F]), Err(MetricsError::LengthMismatch));
}

#[test]
fn log_loss_is_the_mean_negative_log_likelihood() {
    // Buyer scored 0.9 costs -ln 0.9; non-buyer scored 0.2 costs -ln 0.8.
    let expected = (-(0.9f64.ln()) - 0.8f64.ln()) / 2.0;
    assert_close(log_loss(&[0.9, 0.2], &[T, F]), expected);
}

#[test]
fn log_loss_clips_certain_mistakes_to_a_finite_cost() {
    // A non-buyer scored exactly 1 is treated as scored 1 - 1e-15:
    // cost -ln(1e-15) = 15 ln 10 ≈ 34.54 (the subtraction 1 - (1 - 1e-15)
    // is not exact in f64, hence the looser tolerance).
    let loss = log_loss(&[1.0], &[F]);
    assert!((loss - 15.0 * 10f64.ln()).abs() < 0.01, "got {loss}");
}

#[test]
fn brier_is_the_mean_squared_error() {
    // (1 - 0.9)² = 0.01 and (0 - 0.2)² = 0.04, mean 0.025.
    assert_close(brier(&[0.9, 0.2], &[T, F]), 0.025);
}

#[test]
fn lift_compares_the_top_decile_with_the_base_rate() {
    // 20 customers, top decile = the 2 highest scores, both buyers, plus
    // 2 more buyers further down: base rate 4/20 = 0.2, top rate 1.0,
    // lift 1.0 / 0.2 = 5.
    let scores = twenty_descending();
    let mut labels = vec![F; 20];
    for i in [0, 1, 7, 15] {
        labels[i] = T;
    }
    assert_close(top_decile_lift(&scores, &labels), 5.0);
}

#[test]
fn lift_keeps_a_tied_group_whole_in_the_top_decile() {
    // The 3 highest scores tie, so all 3 are decile 1 (not 2 of 20): they
    // hold 2 buyers, rate 2/3; base rate 4/20 = 0.2; lift (2/3)/0.2 = 10/3.
    let mut scores = twenty_descending();
    scores[..3].fill(0.99);
    let mut labels = vec![F; 20];
    for i in [0, 2, 9, 12] {
        labels[i] = T;
    }
    assert_close(top_decile_lift(&scores, &labels), 10.0 / 3.0);
    // Reordering the tied group must not change anything.
    labels.swap(0, 1);
    assert_close(top_decile_lift(&scores, &labels), 10.0 / 3.0);
}

#[test]
fn calibration_bins_hold_two_customers_each_out_of_twenty() {
    // Scores 1.00, 0.95, …, 0.05: decile d holds the scores at positions
    // 2(d-1) and 2(d-1)+1. Buyers at 1.00, 0.85 and 0.50.
    let scores = twenty_descending();
    let mut labels = vec![F; 20];
    for i in [0, 3, 10] {
        labels[i] = T;
    }
    let bins = calibration(&scores, &labels);
    assert_eq!(bins.len(), 10);
    for (k, bin) in bins.iter().enumerate() {
        assert_eq!(bin.decile as usize, k + 1);
        assert_eq!(bin.customers, 2);
    }
    // Decile 1: 1.00 (buyer) and 0.95 → mean 0.975, rate 1/2.
    assert_close(bins[0].mean_score, 0.975);
    assert_close(bins[0].buyer_rate, 0.5);
    // Decile 2: 0.90 and 0.85 (buyer) → mean 0.875, rate 1/2.
    assert_close(bins[1].mean_score, 0.875);
    assert_close(bins[1].buyer_rate, 0.5);
    // Decile 6: 0.50 (buyer) and 0.45 → mean 0.475, rate 1/2.
    assert_close(bins[5].mean_score, 0.475);
    assert_close(bins[5].buyer_rate, 0.5);
    // Decile 10: 0.10 and 0.05 → mean 0.075, no buyers.
    assert_close(bins[9].mean_score, 0.075);
    assert_close(bins[9].buyer_rate, 0.0);
}

#[test]
fn calibration_leaves_out_empty_deciles() {
    // n = 3: deciles 1, 4 and 7 (see deciles_work_for_fewer_than_ten).
    let bins = calibration(&[0.2, 0.9, 0.5], &[F, T, F]);
    let deciles: Vec<u8> = bins.iter().map(|b| b.decile).collect();
    assert_eq!(deciles, [1, 4, 7]);
    assert!(bins.iter().all(|b| b.customers == 1));
}

#[test]
fn deciles_give_tied_scores_the_decile_of_the_first_of_the_group() {
    // n = 4, descending positions: 0.9 → 0 → decile 0*10/4+1 = 1;
    // the 0.5s start at position 1 → 10/4 = 2 → decile 3 (both);
    // 0.1 at position 3 → 30/4 = 7 → decile 8.
    assert_eq!(deciles(&[0.9, 0.5, 0.5, 0.1]), [1, 3, 3, 8]);
}

#[test]
fn deciles_do_not_depend_on_input_order() {
    let scores = [0.3, 0.7, 0.7, 0.1, 0.7, 0.9, 0.3, 0.5, 0.2, 0.7, 0.6];
    let expected = deciles(&scores);
    let mut reversed = scores;
    reversed.reverse();
    let mut got = deciles(&reversed);
    got.reverse();
    assert_eq!(got, expected);
    // Every 0.7 shares a decile; 0.9 alone is decile 1; the 0.7 group
    // starts at position 1 of 11 → 10/11 = 0 → decile 1 too.
    assert_eq!(expected[1], 1);
    assert!([2, 4, 9].iter().all(|&i| expected[i] == expected[1]));
}

#[test]
fn deciles_work_for_fewer_than_ten_customers() {
    // Positions 0, 1, 2 of 3 → 0, 10/3 = 3, 20/3 = 6 → deciles 1, 4, 7.
    assert_eq!(deciles(&[0.2, 0.9, 0.5]), [7, 1, 4]);
    assert_eq!(deciles(&[0.4]), [1]);
    assert!(deciles(&[]).is_empty());
}

#[test]
fn roc_curve_has_the_hand_computed_vertices_and_its_area_is_the_auc() {
    // Descending groups: 0.8 {T}, 0.4 {F, T}, 0.35 {T}, 0.1 {F};
    // 3 buyers, 2 non-buyers.
    let m = evaluate(&[0.1, 0.4, 0.35, 0.8, 0.4], &[F, F, T, T, T]).unwrap();
    let third = 1.0 / 3.0;
    let expected = [[0.0, 0.0], [0.0, third], [0.5, 2.0 * third], [0.5, 1.0], [1.0, 1.0]];
    assert_eq!(m.roc_curve.len(), expected.len());
    for (got, want) in m.roc_curve.iter().zip(expected) {
        assert_close(got[0], want[0]);
        assert_close(got[1], want[1]);
    }
    let area: f64 = m.roc_curve.windows(2).map(|w| (w[1][0] - w[0][0]) * (w[1][1] + w[0][1]) / 2.0).sum();
    assert_close(area, m.roc_auc);
}

#[test]
fn roc_curve_is_thinned_monotone_and_runs_from_origin_to_one_one() {
    let (scores, labels) = pseudo_random_sample(1000);
    let roc = evaluate(&scores, &labels).unwrap().roc_curve;
    assert!(roc.len() <= CURVE_POINTS, "{} points", roc.len());
    assert_eq!(roc.first(), Some(&[0.0, 0.0]));
    assert_eq!(roc.last(), Some(&[1.0, 1.0]));
    assert!(roc.windows(2).all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]));
}

#[test]
fn gains_curve_runs_from_nobody_to_everybody_in_one_percent_steps() {
    let (scores, labels) = pseudo_random_sample(137);
    let gains = evaluate(&scores, &labels).unwrap().gains_curve;
    assert_eq!(gains.len(), CURVE_POINTS);
    assert_eq!(gains[0], [0.0, 0.0]);
    assert_eq!(gains[100], [1.0, 1.0]);
    assert_close(gains[37][0], 0.37);
    assert!(gains.windows(2).all(|w| w[0][1] <= w[1][1]));
}

#[test]
fn gains_curve_of_a_perfect_model_reaches_all_buyers_at_their_share() {
    // 10 customers, the 2 highest are the buyers: contacting 10% (1
    // customer) reaches 1/2 of buyers, 20% reaches all; 5% is half a
    // customer, so half of the first buyer: 1/4.
    let scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05];
    let labels = [T, T, F, F, F, F, F, F, F, F];
    let gains = evaluate(&scores, &labels).unwrap().gains_curve;
    assert_close(gains[5][1], 0.25);
    assert_close(gains[10][1], 0.5);
    assert_close(gains[20][1], 1.0);
    assert_close(gains[60][1], 1.0);
}

#[test]
fn gains_curve_is_the_diagonal_when_all_scores_tie() {
    let gains = evaluate(&[0.5; 7], &[T, F, F, T, F, F, F]).unwrap().gains_curve;
    for (k, point) in gains.iter().enumerate() {
        assert_close(point[1], k as f64 / 100.0);
    }
}

#[test]
fn evaluate_fills_in_the_summary_figures() {
    let m = evaluate(&[0.9, 0.2, 0.6, 0.1], &[T, F, T, F]).unwrap();
    assert_eq!((m.rows, m.positives), (4, 2));
    assert_close(m.base_rate, 0.5);
    assert_close(m.roc_auc, 1.0);
    // Brier: (0.01 + 0.04 + 0.16 + 0.01) / 4 = 0.055.
    assert_close(m.brier, 0.055);
    // Top decile is 0.9 alone (a buyer): rate 1 / base rate 0.5 = 2.
    assert_close(m.top_decile_lift, 2.0);
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(serde_json::from_str::<Metrics>(&json).unwrap(), m);
}

#[test]
fn evaluate_rejects_scores_that_are_not_probabilities() {
    for bad in [f64::NAN, 1.5, -0.1, f64::INFINITY] {
        let err = evaluate(&[0.2, bad], &[T, F]).unwrap_err();
        assert!(
            matches!(err, MetricsError::NotAProbability { index: 1, value } if value.to_bits() == bad.to_bits()),
            "{err:?}"
        );
    }
    assert_eq!(
        evaluate(&[0.2, 1.5], &[T, F]).unwrap_err().to_string(),
        "score #1 is 1.5, which is not a probability in [0, 1]"
    );
}

#[test]
fn evaluate_rejects_empty_mismatched_and_one_class_input() {
    assert_eq!(evaluate(&[], &[]), Err(MetricsError::Empty));
    assert_eq!(evaluate(&[0.5], &[]), Err(MetricsError::LengthMismatch));
    assert_eq!(evaluate(&[0.5, 0.6], &[T, T]), Err(MetricsError::OneClass { positives: 2, rows: 2 }));
}

/// Deterministic scores in [0, 1] with labels that loosely follow them.
fn pseudo_random_sample(n: usize) -> (Vec<f64>, Vec<bool>) {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let score = (next() * 1000.0).round() / 1000.0; // some ties
            (score, next() < score)
        })
        .unzip()
}

#[test]
fn decile_floors_give_every_score_the_decile_that_deciles_gives() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for n in (1..60).chain([997, 1000, 1003]) {
        // Few distinct values, so that tied groups straddle decile edges.
        let scores: Vec<f64> = (0..n).map(|_| f64::from(rng.random_range(0..12u8)) / 11.0).collect();
        let expected = deciles(&scores);
        let floors = decile_floors(&mut scores.clone());
        let from_floors: Vec<u8> = scores.iter().map(|&s| decile_from_floors(s, &floors)).collect();
        assert_eq!(from_floors, expected, "n = {n}");
    }
    assert_eq!(decile_floors(&mut [0.2, 0.9, 0.5]), [0.9, 0.9, 0.9, 0.5, 0.5, 0.5, 0.2, 0.2, 0.2]);
    assert!(decile_floors(&mut []).is_empty());
}
