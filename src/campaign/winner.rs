//! A/B winners: a campaign with a `[winner]` table sends its variants to a
//! test share of each run's audience and holds the rest (outbox state
//! `held`). Once `after` has passed since its first run, the test is judged
//! once: the best variant wins if it beats every other one at
//! `min_confidence`, else the first variant is kept. The held messages are
//! then released with the winner, and every later run sends the winner to
//! everyone. The test is judged once, at its end, not whenever a look finds
//! a difference: looking again and again until one shows up would crown a
//! variant by chance far more often than `1 - min_confidence` says.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use serde::Serialize;

use super::spec::{Campaign, Metric, WinnerRule};
use crate::db::entities::outbox::State as OutboxState;
use crate::report::attribution;
use crate::report::campaign::Arm;
use crate::report::stats;

/// What a judgement decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub winner: String,
    /// The winner beat every other variant at the campaign's confidence.
    pub significant: bool,
    /// The largest p-value of the best variant against each other one.
    pub p_value: Option<f64>,
    pub reason: String,
}

/// Where a campaign's A/B test stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    /// Judged, now or before: every message gets `winner`.
    Decided(Decision),
    /// The test runs until `until` (or has no run yet, `until` is `None`).
    Testing { until: Option<DateTime<Utc>> },
}

/// The variant of each message while the test runs and after it is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment<'a> {
    /// No `[winner]` table, or a customer in the test share: by the shares.
    Split,
    /// Outside the test share while the test runs: held for the winner.
    Held,
    Winner(&'a str),
}

/// Decides between the variants' arms (by name; a variant nobody got has
/// an empty arm). Ties go to the earlier variant in the file.
pub fn decide(rule: &WinnerRule, variants: &[String], arms: &BTreeMap<String, Arm>) -> Decision {
    let empty = Arm::default();
    let arm = |name: &String| arms.get(name).unwrap_or(&empty);
    let value = |arm: &Arm| match rule.metric {
        Metric::Conversion => arm.conversion_rate(),
        Metric::Revenue => arm.revenue_per_customer(),
    };
    let first = &variants[0];
    let best = variants.iter().fold(first, |best, name| {
        if value(arm(name)).unwrap_or(f64::MIN) > value(arm(best)).unwrap_or(f64::MIN) { name } else { best }
    });
    let others = variants.iter().filter(|name| *name != best);
    let p_values: Vec<f64> = others
        .map(|other| {
            let (b, o) = (arm(best), arm(other));
            let p = match rule.metric {
                Metric::Conversion => stats::compare_rates(b.proportion(), o.proportion()).map(|u| u.p_value),
                Metric::Revenue => stats::compare_means(b.revenue(), o.revenue()).and_then(|u| u.p_value),
            };
            let ahead = value(b).unwrap_or(f64::MIN) > value(o).unwrap_or(f64::MIN);
            if ahead { p.unwrap_or(1.0) } else { 1.0 }
        })
        .collect();
    let p_value = p_values.iter().copied().reduce(f64::max);
    let alpha = 1.0 - rule.min_confidence;
    let significant = p_value.is_some_and(|p| p < alpha);
    let figures = describe(rule.metric, variants, &arm);
    let p_text = p_value.map_or("no p-value".to_owned(), crate::report::p_phrase);
    let (winner, reason) = if significant {
        (best.clone(), format!("{best} wins on {}: {figures} ({p_text}, below {alpha:.3})", rule.metric.as_str()))
    } else {
        let reason = format!(
            "no variant won on {} ({figures}; {p_text}, not below {alpha:.3}): the first variant, {first}, is kept",
            rule.metric.as_str()
        );
        (first.clone(), reason)
    };
    Decision { winner, significant, p_value, reason }
}

/// Each variant's figure, as `A 2.0% of 700, B 6.1% of 700`.
fn describe<'a>(metric: Metric, variants: &'a [String], arm: &impl Fn(&'a String) -> &'a Arm) -> String {
    let figure = |a: &Arm| match metric {
        Metric::Conversion => crate::report::percent(a.conversion_rate()),
        Metric::Revenue => format!("{} per customer", crate::report::money(a.revenue_per_customer())),
    };
    let parts: Vec<String> =
        variants.iter().map(|name| format!("{name} {} of {}", figure(arm(name)), arm(name).customers)).collect();
    parts.join(", ")
}

/// Where `campaign`'s test stands at `now`, judging it if its time is up:
/// the decision is stored and the held messages released in one
/// transaction, and a decision another daemon stored first is taken as it is.
/// `None` for a campaign without a `[winner]` table.
pub async fn judge(
    db: &DatabaseConnection,
    campaign: &Campaign,
    window: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Standing>, DbErr> {
    let Some(rule) = &campaign.winner else { return Ok(None) };
    if let Some(decision) = stored(db, &campaign.name).await? {
        return Ok(Some(Standing::Decided(decision)));
    }
    let Some(first_run) = first_run(db, &campaign.name).await? else {
        return Ok(Some(Standing::Testing { until: None }));
    };
    let until = first_run + rule.after;
    if now < until {
        return Ok(Some(Standing::Testing { until: Some(until) }));
    }
    let arms = test_arms(db, &campaign.name, window, now).await?;
    let names: Vec<String> = campaign.variants.iter().map(|v| v.name.clone()).collect();
    let decision = decide(rule, &names, &arms);
    let decision = record(db, campaign, rule, &decision, &arms, now).await?;
    Ok(Some(Standing::Decided(decision)))
}

/// Where `campaign`'s test stands, without judging it (a preview writes
/// nothing): its stored decision, else still testing.
pub async fn current(db: &DatabaseConnection, campaign: &Campaign) -> Result<Option<Standing>, DbErr> {
    let Some(rule) = &campaign.winner else { return Ok(None) };
    if let Some(decision) = stored(db, &campaign.name).await? {
        return Ok(Some(Standing::Decided(decision)));
    }
    let until = first_run(db, &campaign.name).await?.map(|first| first + rule.after);
    Ok(Some(Standing::Testing { until }))
}

/// The variant a run gives its customers, from the test's standing.
pub fn assignment(standing: Option<&Standing>) -> Assignment<'_> {
    match standing {
        None => Assignment::Split,
        Some(Standing::Decided(decision)) => Assignment::Winner(&decision.winner),
        Some(Standing::Testing { .. }) => Assignment::Held,
    }
}

/// The test share's arms: each variant's messages (not the control group,
/// not the held) with what they earned within the attribution window, up
/// to `now`.
async fn test_arms(
    db: &DatabaseConnection,
    campaign: &str,
    window: Duration,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, Arm>, DbErr> {
    let exposures: Vec<_> = attribution::load_exposures(db, campaign, None)
        .await?
        .into_iter()
        .filter(|e| e.variant.is_some() && !e.is_control() && e.state != OutboxState::Held.as_str() && e.start <= now)
        .collect();
    let mut orders = attribution::load_orders(db, campaign, None, &exposures, window).await?;
    orders.retain(|&(_, at, _)| at <= now);
    let outcomes = attribution::attribute(&exposures, &orders, window);
    let mut arms: BTreeMap<String, Arm> = BTreeMap::new();
    for (exposure, outcome) in exposures.iter().zip(outcomes) {
        let variant = exposure.variant.clone().expect("filtered on a variant");
        arms.entry(variant).or_default().add(outcome);
    }
    Ok(arms)
}

async fn first_run(db: &DatabaseConnection, campaign: &str) -> Result<Option<DateTime<Utc>>, DbErr> {
    let select = Query::select()
        .expr(Expr::col("scheduled_at").min())
        .from("campaign_runs")
        .and_where(Expr::col("campaign").eq(campaign))
        .and_where(Expr::col("state").eq("planned"))
        .to_owned();
    let row = db.query_one(&select).await?;
    row.map_or(Ok(None), |row| row.try_get_by_index(0))
}

async fn stored(db: &impl ConnectionTrait, campaign: &str) -> Result<Option<Decision>, DbErr> {
    let record = crate::report::campaign::winner_of(db, campaign).await?;
    Ok(record.map(|r| Decision { winner: r.winner, significant: r.significant, p_value: r.p_value, reason: r.reason }))
}

/// Stores the decision and releases the held messages with the winner; if
/// another daemon decided first, its decision stands and is returned.
async fn record(
    db: &DatabaseConnection,
    campaign: &Campaign,
    rule: &WinnerRule,
    decision: &Decision,
    arms: &BTreeMap<String, Arm>,
    now: DateTime<Utc>,
) -> Result<Decision, DbErr> {
    let txn = db.begin().await?;
    let arms_json = serde_json::to_value(arms).expect("arms serialize");
    let insert = Query::insert()
        .into_table("variant_decisions")
        .columns(["campaign", "winner", "metric", "significant", "p_value", "reason", "arms", "decided_at"])
        .values_panic([
            campaign.name.clone().into(),
            decision.winner.clone().into(),
            rule.metric.as_str().into(),
            decision.significant.into(),
            decision.p_value.into(),
            decision.reason.clone().into(),
            arms_json.into(),
            now.into(),
        ])
        .on_conflict(OnConflict::column("campaign").do_nothing().to_owned())
        .to_owned();
    if txn.execute(&insert).await?.rows_affected() == 0 {
        let theirs = stored(&txn, &campaign.name).await?.ok_or_else(|| DbErr::RecordNotFound("decision".into()))?;
        txn.commit().await?;
        return Ok(theirs);
    }
    let released = txn.execute(&release_held(&campaign.name, &decision.winner, now)).await?.rows_affected();
    txn.commit().await?;
    tracing::info!(
        campaign = %campaign.name,
        winner = %decision.winner,
        significant = decision.significant,
        p_value = decision.p_value,
        released,
        reason = %decision.reason,
        "A/B test judged"
    );
    Ok(decision.clone())
}

/// The held messages of the campaign become planned, with the winner (and
/// marked so, to be left out of comparisons between the variants).
fn release_held(campaign: &str, winner: &str, now: DateTime<Utc>) -> sea_orm::sea_query::UpdateStatement {
    let runs =
        Query::select().column("id").from("campaign_runs").and_where(Expr::col("campaign").eq(campaign)).to_owned();
    Query::update()
        .table("outbox")
        .value("state", OutboxState::Planned)
        .value("variant", winner)
        .value("by_winner", true)
        .value("updated_at", now)
        .and_where(Expr::col("state").eq(OutboxState::Held))
        .and_where(Expr::col("run_id").in_subquery(runs))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::attribution::Outcome;

    fn rule(metric: Metric) -> WinnerRule {
        WinnerRule { metric, after: Duration::days(3), min_confidence: 0.95, test_share: 0.2 }
    }

    /// An arm of `customers` of whom `buyers` bought for `cents` each.
    fn arm(customers: u64, buyers: u64, cents: i64) -> Arm {
        let mut arm = Arm::default();
        for i in 0..customers {
            let bought = i < buyers;
            arm.add(Outcome { converted: bought, revenue_cents: if bought { cents } else { 0 } });
        }
        arm
    }

    fn names() -> Vec<String> {
        vec!["A".into(), "B".into()]
    }

    #[test]
    fn a_clear_difference_in_conversion_crowns_the_better_variant() {
        // 20 of 1000 against 60 of 1000: z = 4.56, p = 5.0e-6.
        let arms = BTreeMap::from([("A".into(), arm(1000, 20, 1000)), ("B".into(), arm(1000, 60, 1000))]);
        let decision = decide(&rule(Metric::Conversion), &names(), &arms);
        assert_eq!(decision.winner, "B");
        assert!(decision.significant);
        assert!(decision.p_value.unwrap() < 1e-5, "{decision:?}");
        assert_eq!(decision.reason, "B wins on conversion: A 2.0% of 1000, B 6.0% of 1000 (p < 0.001, below 0.050)");
    }

    #[test]
    fn no_significant_difference_keeps_the_first_variant_even_when_another_leads() {
        // 50 of 1000 against 58 of 1000: z = 0.79, p = 0.429.
        let arms = BTreeMap::from([("A".into(), arm(1000, 50, 1000)), ("B".into(), arm(1000, 58, 1000))]);
        let decision = decide(&rule(Metric::Conversion), &names(), &arms);
        assert_eq!(decision.winner, "A");
        assert!(!decision.significant);
        assert!((decision.p_value.unwrap() - 0.4287).abs() < 1e-3, "{decision:?}");
        assert!(decision.reason.contains("the first variant, A, is kept"), "{}", decision.reason);
    }

    #[test]
    fn revenue_compares_means_and_an_empty_arm_never_wins() {
        let arms = BTreeMap::from([("A".into(), arm(500, 50, 1000)), ("B".into(), arm(500, 50, 4000))]);
        let decision = decide(&rule(Metric::Revenue), &names(), &arms);
        assert_eq!((decision.winner.as_str(), decision.significant), ("B", true), "{decision:?}");
        let arms = BTreeMap::from([("A".into(), arm(500, 50, 1000))]);
        let decision = decide(&rule(Metric::Revenue), &names(), &arms);
        assert_eq!((decision.winner.as_str(), decision.significant), ("A", false), "{decision:?}");
    }
}
