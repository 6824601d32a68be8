//! Which rows a segment's customers can be read from. Every customer joined
//! to their snapshot and score (`compile::from_customers`) always serves.
//! The snapshots with their scores (`compile::from_snapshots`) give the
//! same customers when the segment reads nothing else and no customer
//! without a snapshot can match it; the caller then takes consent and
//! erasure from the few customers who lack consent or are erased. On
//! PostgreSQL the join of every customer to their snapshot and score costs
//! several times a scan of one table, and most of a campaign's planning;
//! where the snapshots carry the scores (`compile::Scores`), that scan is
//! all a segment reads.
//! It relies on every snapshot's customer existing: no customer row is ever
//! deleted (an erasure keeps it, marked), and scoring writes snapshots only
//! of the customers it read.

use super::compile;
use super::{Expr, Field};

/// The truth values of SQL's three-valued logic: true, false, NULL.
type Truth = Option<bool>;

/// A set of truth values, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Possible(u8);

impl Possible {
    const ANY: Possible = Possible(0b111);

    fn of(value: Truth) -> Possible {
        Possible(match value {
            Some(true) => 0b001,
            Some(false) => 0b010,
            None => 0b100,
        })
    }

    fn values(self) -> impl Iterator<Item = Truth> {
        [Some(true), Some(false), None].into_iter().filter(move |&v| self.0 & Possible::of(v).0 != 0)
    }

    fn from_values(values: impl Iterator<Item = Truth>) -> Possible {
        Possible(values.fold(0, |bits, v| bits | Possible::of(v).0))
    }

    /// Every value of `op` over one value of each set.
    fn combine(self, other: Possible, op: fn(Truth, Truth) -> Truth) -> Possible {
        Possible::from_values(self.values().flat_map(|a| other.values().map(move |b| op(a, b))))
    }

    fn negated(self) -> Possible {
        Possible::from_values(self.values().map(|v| v.map(|v| !v)))
    }

    fn may_be_true(self) -> bool {
        self.0 & Possible::of(Some(true)).0 != 0
    }
}

fn and(a: Truth, b: Truth) -> Truth {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn or(a: Truth, b: Truth) -> Truth {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

/// Whether `field` is a column of the feature snapshots or of the scores.
pub fn in_snapshot_or_score(field: &Field) -> bool {
    table(field).is_some_and(|table| table == "feature_snapshots" || table == "scores")
}

fn table(field: &Field) -> Option<&'static str> {
    match field {
        Field::Named(name) => compile::field_entry(name).map(|f| f.2),
        Field::Attribute(_) | Field::DaysSinceReceived(_) => None,
    }
}

/// Whether the customers matching `expr` are the snapshots joined to the
/// scores that match it, less the erased: `expr` reads only snapshot and
/// score fields, and is never true for a customer without a snapshot
/// (whose snapshot fields are NULL, whose score may be anything).
pub fn readable_from_snapshots(expr: &Expr) -> bool {
    without_snapshot(expr).is_some_and(|possible| !possible.may_be_true())
}

/// The values `expr` may take for a customer without a snapshot; `None`
/// if it reads anything but snapshot and score fields.
fn without_snapshot(expr: &Expr) -> Option<Possible> {
    let test = |field: &Field, on_null: Truth| match table(field)? {
        "feature_snapshots" => Some(Possible::of(on_null)),
        "scores" => Some(Possible::ANY),
        _ => None,
    };
    match expr {
        Expr::And(a, b) => Some(without_snapshot(a)?.combine(without_snapshot(b)?, and)),
        Expr::Or(a, b) => Some(without_snapshot(a)?.combine(without_snapshot(b)?, or)),
        Expr::Not(inner) => Some(without_snapshot(inner)?.negated()),
        Expr::Compare { field, .. } | Expr::Between { field, .. } | Expr::In { field, .. } => test(field, None),
        Expr::IsNull { field, negated, .. } => test(field, Some(!negated)),
        Expr::Subscribed { .. } | Expr::History { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::tests::parse_known;

    fn readable(text: &str) -> bool {
        readable_from_snapshots(&parse_known(text))
    }

    #[test]
    fn a_segment_a_customer_without_a_snapshot_cannot_match_reads_from_the_snapshots() {
        assert!(readable("recency_days <= 365d and propensity_decile <= 5"));
        assert!(readable("frequency >= 2 or (orders_90d > 0 and propensity > 0.5)"));
        assert!(readable("not (recency_days > 30)"));
        assert!(readable("loyalty_tier is not null and propensity_decile is null"));
        // A score field alone may hold for a customer without a snapshot.
        assert!(!readable("propensity_decile <= 5"));
        assert!(!readable("recency_days <= 30 or propensity > 0.9"));
        // Unknown and unknown is unknown, and so is its negation.
        assert!(readable("not (recency_days <= 30 and frequency > 10)"));
        // Fields without a value in a missing snapshot make these true.
        assert!(!readable("recency_days is null"));
        assert!(!readable("not (recency_days > 30) or frequency is null"));
        // Unknown and false is false, whose negation is true.
        assert!(!readable("not (recency_days <= 30 and propensity > 0.5)"));
    }

    #[test]
    fn a_segment_reading_the_customer_or_their_history_reads_from_every_customer() {
        assert!(!readable("recency_days <= 30 and marketing_consent = true"));
        assert!(!readable("recency_days <= 30 and attributes.tier = \"gold\""));
        assert!(!readable("recency_days <= 30 and points > 100"));
        assert!(!readable("recency_days <= 30 and subscribed(\"offers\")"));
        assert!(!readable("recency_days <= 30 and not received(\"welcome\")"));
    }
}
