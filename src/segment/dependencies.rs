//! Which data that can go stale a segment reads: the staleness guard
//! (`campaign::freshness`) holds a campaign back only on the data its
//! audience depends on, so a birthday greeting still goes out while the
//! order feed is late. Each field's dependencies are a column of the field
//! table (`compile::FIELDS`), never a second list of names.

use super::compile;
use super::{Expr, Field, History};

/// The data a field or a segment reads that arrives or is computed on a
/// schedule of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dependencies {
    /// The shop's orders and interactions, which arrive by import or feed
    /// (read directly, or through the loyalty accounts they earn points on).
    pub orders: bool,
    /// What scoring computed from them: the feature snapshots and the
    /// active model's scores, as old as the last scoring.
    pub scores: bool,
}

impl Dependencies {
    /// Patron's own records or data that does not age (names, consent, messages sent).
    pub const NONE: Dependencies = Dependencies { orders: false, scores: false };
    /// Computed from the orders when the segment is evaluated.
    pub const ORDERS: Dependencies = Dependencies { orders: true, scores: false };
    /// Computed from the orders by the last scoring.
    pub const SCORING: Dependencies = Dependencies { orders: true, scores: true };

    /// What either reads.
    pub fn and(self, other: Dependencies) -> Dependencies {
        Dependencies { orders: self.orders || other.orders, scores: self.scores || other.scores }
    }

    pub fn is_none(self) -> bool {
        self == Dependencies::NONE
    }
}

impl Field {
    /// What the field reads, from its row of the field table.
    pub fn dependencies(&self) -> Dependencies {
        match self {
            Field::Named(name) => compile::field_entry(name).map_or(Dependencies::NONE, |f| f.4),
            // Attributes come with the customer record; the messages sent are patron's own.
            Field::Attribute(_) | Field::DaysSinceReceived(_) => Dependencies::NONE,
        }
    }
}

impl History {
    /// What the test reads besides the campaign's own messages.
    pub fn dependencies(self) -> Dependencies {
        match self {
            History::OrderedSinceReceived | History::Converted => Dependencies::ORDERS,
            History::Received { .. } | History::InControlGroup => Dependencies::NONE,
        }
    }
}

impl Expr {
    /// What the whole expression reads.
    pub fn dependencies(&self) -> Dependencies {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => a.dependencies().and(b.dependencies()),
            Expr::Not(inner) => inner.dependencies(),
            Expr::Compare { field, .. }
            | Expr::Between { field, .. }
            | Expr::In { field, .. }
            | Expr::IsNull { field, .. } => field.dependencies(),
            Expr::Subscribed { .. } => Dependencies::NONE,
            Expr::History { test, .. } => test.dependencies(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::compile::FIELDS;
    use crate::segment::tests::parse_known;

    fn dependencies_of(text: &str) -> Dependencies {
        parse_known(text).dependencies()
    }

    #[test]
    fn order_history_in_the_snapshot_depends_on_the_orders_and_the_last_scoring() {
        for text in ["recency_days > 180", "frequency >= 2", "monetary_total between 10 and 20", "spend_30d = 0"] {
            assert_eq!(dependencies_of(text), Dependencies::SCORING, "{text}");
        }
    }

    #[test]
    fn scores_and_the_outlook_depend_on_the_last_scoring() {
        for text in
            ["propensity > 0.5", "propensity_decile <= 3", "p_alive < 0.2", "clv > 100", "expected_orders_90d > 1"]
        {
            assert_eq!(dependencies_of(text), Dependencies::SCORING, "{text}");
        }
    }

    #[test]
    fn fields_computed_from_the_orders_at_planning_depend_on_the_orders_only() {
        for text in [
            "not ordered_since_received(\"welcome\")",
            "converted(\"welcome\")",
            "points > 100",
            "tier = \"gold\"",
            "days_since_complaint_resolved < 3d",
        ] {
            assert_eq!(dependencies_of(text), Dependencies::ORDERS, "{text}");
        }
    }

    #[test]
    fn customer_records_consent_and_messages_sent_depend_on_nothing_that_goes_stale() {
        for text in [
            "birthday_today = true",
            "first_name is not null and marketing_consent = true",
            "signed_up_at < 2026-01-01",
            "attributes.region = \"north\"",
            "subscribed(\"offers\")",
            "received(\"welcome\") and not in_control_group(\"welcome\")",
            "days_since_received(\"welcome\") > 3d",
        ] {
            assert_eq!(dependencies_of(text), Dependencies::NONE, "{text}");
        }
    }

    #[test]
    fn an_expression_depends_on_what_any_of_its_parts_reads() {
        assert_eq!(dependencies_of("birthday_today = true or points > 10"), Dependencies::ORDERS);
        assert_eq!(dependencies_of("not (birthday_today = true and propensity > 0.1)"), Dependencies::SCORING);
        assert_eq!(dependencies_of("first_name in [\"A\", \"B\"] and received(\"welcome\")"), Dependencies::NONE);
        assert_eq!(Dependencies::ORDERS.and(Dependencies::NONE), Dependencies::ORDERS);
        assert!(Dependencies::NONE.is_none() && !Dependencies::ORDERS.is_none());
    }

    #[test]
    fn every_field_of_the_table_states_its_dependencies() {
        // A snapshot or score column is computed by scoring; a customer column is not.
        for field in FIELDS {
            let expected = match field.2 {
                "feature_snapshots" | "scores" => Some(Dependencies::SCORING),
                "customers" => Some(Dependencies::NONE),
                _ => None,
            };
            if let Some(expected) = expected {
                assert_eq!(field.4, expected, "{}", field.0);
            }
        }
    }
}
