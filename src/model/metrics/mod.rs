//! Evaluation maths for propensity-to-buy scores: ranking quality (AUC, lift,
//! gains), probability quality (log loss, Brier, calibration). Pure functions,
//! no IO, so the same numbers back the training log, the API and the report.
//!
//! Ranking convention used throughout: customers are ranked by descending
//! score, and customers with tied scores are never split apart by input order.
//! [`deciles`] gives a whole tied group the decile of its first member, and the
//! lift and calibration figures are built on that same assignment.

/// Everything we report about a model on a validation set.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Customers evaluated.
    pub rows: usize,
    /// Of them, buyers (label `true`).
    pub positives: usize,
    /// `positives / rows`.
    pub base_rate: f64,
    pub roc_auc: f64,
    /// Mean natural-log loss, probabilities clipped to `[1e-15, 1 - 1e-15]`.
    pub log_loss: f64,
    /// Mean squared error of the probability.
    pub brier: f64,
    /// Buyer rate in decile 1 (see [`deciles`]) divided by the base rate.
    pub top_decile_lift: f64,
    /// One bin per non-empty decile, decile 1 (highest scores) first. Deciles
    /// can be empty when there are fewer than 10 customers or large ties;
    /// those are left out rather than reported with made-up rates.
    pub calibration: Vec<CalibrationBin>,
    /// (false positive rate, true positive rate), from (0,0) to (1,1), at most
    /// [`CURVE_POINTS`] points.
    pub roc_curve: Vec<[f64; 2]>,
    /// (share of customers contacted, share of buyers captured) at 0%, 1%, …,
    /// 100%: exactly [`CURVE_POINTS`] points.
    pub gains_curve: Vec<[f64; 2]>,
}

/// Predicted versus actual buying for one score decile.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalibrationBin {
    /// 1 = the 10% highest scores.
    pub decile: u8,
    pub customers: usize,
    pub mean_score: f64,
    pub buyer_rate: f64,
}

/// Why a set of scores could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    #[error("no customers to evaluate")]
    Empty,
    #[error(
        "cannot evaluate a model on a single class: {positives} buyers among {rows} customers \
         (need at least one buyer and one non-buyer)"
    )]
    OneClass { positives: usize, rows: usize },
    #[error("scores and labels have different lengths")]
    LengthMismatch,
    #[error("score #{index} is {value}, which is not a probability in [0, 1]")]
    NotAProbability { index: usize, value: f64 },
}

/// Number of points on the sampled curves (0%, 1%, …, 100%).
pub const CURVE_POINTS: usize = 101;

/// Probabilities are clipped this far from 0 and 1 so a confident miss costs
/// a large but finite log loss.
const LOG_LOSS_EPS: f64 = 1e-15;

/// Validates the inputs and computes every metric.
///
/// # Errors
/// [`MetricsError::LengthMismatch`], [`MetricsError::Empty`],
/// [`MetricsError::NotAProbability`] for the first NaN or out-of-range score,
/// then [`MetricsError::OneClass`] when there are no buyers or no non-buyers.
pub fn evaluate(scores: &[f64], labels: &[bool]) -> Result<Metrics, MetricsError> {
    check_shape(scores, labels)?;
    if let Some((index, &value)) = scores.iter().enumerate().find(|(_, s)| !(0.0..=1.0).contains(*s)) {
        return Err(MetricsError::NotAProbability { index, value });
    }
    let roc_auc = roc_auc(scores, labels)?;
    let rows = scores.len();
    let positives = count_positives(labels);
    let groups = tie_groups(scores, labels);
    Ok(Metrics {
        rows,
        positives,
        base_rate: positives as f64 / rows as f64,
        roc_auc,
        log_loss: log_loss(scores, labels),
        brier: brier(scores, labels),
        top_decile_lift: top_decile_lift(scores, labels),
        calibration: calibration(scores, labels),
        roc_curve: roc_curve(&groups),
        gains_curve: gains_curve(&groups),
    })
}

/// Area under the ROC curve, computed as the Mann–Whitney U statistic with
/// mid-ranks: the probability that a random buyer outscores a random
/// non-buyer, tied pairs counting 1/2. O(n log n).
///
/// # Errors
/// Mismatched lengths, empty input, or a single class (AUC is undefined).
/// Scores need not be probabilities here.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64, MetricsError> {
    check_shape(scores, labels)?;
    let rows = scores.len();
    let positives = count_positives(labels);
    if positives == 0 || positives == rows {
        return Err(MetricsError::OneClass { positives, rows });
    }
    let mut order: Vec<usize> = (0..rows).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));

    // Sum of the (1-based, mid-) ranks of the buyers.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < rows {
        let end = group_end(&order, start, scores);
        // Ranks start+1 ..= end share their mean.
        let mid_rank = (start + 1 + end) as f64 / 2.0;
        let group_positives = order[start..end].iter().filter(|&&i| labels[i]).count();
        rank_sum += mid_rank * group_positives as f64;
        start = end;
    }
    let p = positives as f64;
    let n = (rows - positives) as f64;
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Mean negative log-likelihood (natural log), probabilities clipped to
/// `[1e-15, 1 - 1e-15]`. Expects equal, non-empty lengths (as checked by
/// [`evaluate`]); NaN for empty input.
pub fn log_loss(scores: &[f64], labels: &[bool]) -> f64 {
    debug_assert_eq!(scores.len(), labels.len());
    let total: f64 = scores
        .iter()
        .zip(labels)
        .map(|(&s, &y)| {
            let p = s.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
            if y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    total / scores.len() as f64
}

/// Mean squared difference between score and outcome (1 = bought). Expects
/// equal, non-empty lengths; NaN for empty input.
pub fn brier(scores: &[f64], labels: &[bool]) -> f64 {
    debug_assert_eq!(scores.len(), labels.len());
    let total: f64 = scores.iter().zip(labels).map(|(&s, &y)| (s - f64::from(u8::from(y))).powi(2)).sum();
    total / scores.len() as f64
}

/// Buyer rate among customers in decile 1 (see [`deciles`]) divided by the
/// overall buyer rate. When ties straddle the 10% cut the whole tied group is
/// in decile 1, so the "top decile" can hold more than 10% of customers; this
/// keeps the figure independent of input order. NaN without buyers.
pub fn top_decile_lift(scores: &[f64], labels: &[bool]) -> f64 {
    debug_assert_eq!(scores.len(), labels.len());
    let (mut top, mut top_buyers) = (0usize, 0usize);
    for (d, &y) in deciles(scores).into_iter().zip(labels) {
        if d == 1 {
            top += 1;
            top_buyers += usize::from(y);
        }
    }
    let base_rate = count_positives(labels) as f64 / labels.len() as f64;
    (top_buyers as f64 / top as f64) / base_rate
}

/// Decile of every score, 1 = the 10% highest. Ties must get the same decile
/// (assign by the rank of the first of the tied group), so the result does not depend on input order.
///
/// Precisely: with customers sorted by descending score, a tied group whose
/// first member sits at 0-based position `i` gets decile `i * 10 / n + 1`
/// (integer division). For n < 10 some deciles stay empty, e.g. n = 3 gives
/// deciles 1, 4 and 7.
pub fn deciles(scores: &[f64]) -> Vec<u8> {
    let n = scores.len();
    let order = descending_order(scores);
    let mut result = vec![0u8; n];
    let mut start = 0;
    while start < n {
        let end = group_end(&order, start, scores);
        // start < n, so start * 10 / n < 10 and always fits in a u8.
        let decile = (start * 10 / n) as u8 + 1;
        for &i in &order[start..end] {
            result[i] = decile;
        }
        start = end;
    }
    result
}

/// The lowest score of each of the deciles 1 to 9 as [`deciles`] assigns
/// them: a score's decile is 1 plus how many of these it is below. With
/// them a database ranks the scores it holds in one statement, without
/// sending each row's decile back. Sorts `scores`.
pub fn decile_floors(scores: &mut [f64]) -> Vec<f64> {
    let n = scores.len();
    if n == 0 {
        return Vec::new();
    }
    scores.sort_unstable_by(|a, b| b.total_cmp(a));
    // Decile d ends before position ceil(d * n / 10): a tied group starting
    // there or later is ranked below it.
    (1..10).map(|d| scores[(d * n).div_ceil(10) - 1]).collect()
}

/// The decile of `score` from [`decile_floors`].
pub fn decile_from_floors(score: f64, floors: &[f64]) -> u8 {
    1 + floors.iter().filter(|&&floor| score < floor).count() as u8
}

/// Calibration table over the [`deciles`] assignment, empty deciles omitted.
fn calibration(scores: &[f64], labels: &[bool]) -> Vec<CalibrationBin> {
    let mut customers = [0usize; 10];
    let mut score_sum = [0.0f64; 10];
    let mut buyers = [0usize; 10];
    for ((d, &s), &y) in deciles(scores).into_iter().zip(scores).zip(labels) {
        let k = usize::from(d - 1);
        customers[k] += 1;
        score_sum[k] += s;
        buyers[k] += usize::from(y);
    }
    (0..10)
        .filter(|&k| customers[k] > 0)
        .map(|k| CalibrationBin {
            decile: k as u8 + 1,
            customers: customers[k],
            mean_score: score_sum[k] / customers[k] as f64,
            buyer_rate: buyers[k] as f64 / customers[k] as f64,
        })
        .collect()
}

/// Cumulative (customers, buyers) after each group of tied scores, highest
/// scores first, starting at (0, 0). These are the only places a curve can
/// bend: inside a tied group nobody can tell buyers from non-buyers.
fn tie_groups(scores: &[f64], labels: &[bool]) -> Vec<(usize, usize)> {
    let order = descending_order(scores);
    let mut points = vec![(0, 0)];
    let mut buyers = 0;
    let mut start = 0;
    while start < order.len() {
        let end = group_end(&order, start, scores);
        buyers += order[start..end].iter().filter(|&&i| labels[i]).count();
        points.push((end, buyers));
        start = end;
    }
    points
}

/// ROC vertices, thinned to at most [`CURVE_POINTS`] by keeping evenly spaced
/// vertices (always the first and last), which keeps it monotone.
fn roc_curve(groups: &[(usize, usize)]) -> Vec<[f64; 2]> {
    let &(rows, positives) = groups.last().unwrap_or(&(0, 0));
    let negatives = (rows - positives) as f64;
    let vertex = |&(c, p): &(usize, usize)| [(c - p) as f64 / negatives, p as f64 / positives as f64];
    if groups.len() <= CURVE_POINTS {
        return groups.iter().map(vertex).collect();
    }
    let last = groups.len() - 1;
    (0..CURVE_POINTS).map(|k| vertex(&groups[k * last / (CURVE_POINTS - 1)])).collect()
}

/// Share of buyers captured when contacting the top 0%, 1%, …, 100%. A cut
/// falling inside a tied group takes that group's buyers pro rata (linear
/// interpolation), so the curve does not depend on input order.
fn gains_curve(groups: &[(usize, usize)]) -> Vec<[f64; 2]> {
    let &(rows, positives) = groups.last().unwrap_or(&(0, 0));
    if rows == 0 {
        return Vec::new();
    }
    let mut segment = 1; // groups[segment - 1] .. groups[segment] holds the cut
    (0..CURVE_POINTS)
        .map(|k| {
            let share = k as f64 / (CURVE_POINTS - 1) as f64;
            let contacted = share * rows as f64;
            while segment < groups.len() - 1 && (groups[segment].0 as f64) < contacted {
                segment += 1;
            }
            let (c0, p0) = groups[segment - 1];
            let (c1, p1) = groups[segment];
            let within = (contacted - c0 as f64) / (c1 - c0) as f64;
            let buyers = p0 as f64 + within * (p1 - p0) as f64;
            [share, buyers / positives as f64]
        })
        .collect()
}

fn check_shape(scores: &[f64], labels: &[bool]) -> Result<(), MetricsError> {
    if scores.len() != labels.len() {
        return Err(MetricsError::LengthMismatch);
    }
    if scores.is_empty() {
        return Err(MetricsError::Empty);
    }
    Ok(())
}

fn count_positives(labels: &[bool]) -> usize {
    labels.iter().filter(|&&y| y).count()
}

/// Indices sorted by descending score; `total_cmp` gives NaN a fixed place.
fn descending_order(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// End (exclusive) of the run of equal scores in `order` starting at `start`.
/// Uses `==` so that -0.0 and 0.0, adjacent after a `total_cmp` sort, tie.
fn group_end(order: &[usize], start: usize, scores: &[f64]) -> usize {
    let first = scores[order[start]];
    start + order[start..].iter().take_while(|&&i| scores[i] == first).count()
}

#[cfg(test)]
mod tests;
