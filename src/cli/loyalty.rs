//! `patron loyalty recompute|show|adjust`.

use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use sea_orm::DatabaseConnection;

use super::UsageError;
use super::models::parse_as_of;
use crate::config::Settings;
use crate::loyalty::{self, engine::Rules};

#[derive(Debug, Subcommand)]
pub enum LoyaltyCommand {
    /// Bring every member up to date: points for new orders, expired points, tiers.
    ///
    /// Running it again changes nothing until something new happens.
    Recompute {
        /// The moment to compute as of: a date (its last second) or an RFC 3339 time [default: now].
        #[arg(long, value_name = "DATE", value_parser = parse_inclusive_as_of)]
        as_of: Option<DateTime<Utc>>,
    },
    /// A member's balance, tier, progress to the next tier and latest ledger entries.
    Show {
        /// The customer's id, as in the customers file.
        customer_id: String,
    },
    /// Add points to a member's balance, or deduct them (a negative number), with a reason.
    ///
    /// Added points expire like earned ones; a deduction may not take the balance below zero.
    Adjust {
        /// The customer's id, as in the customers file.
        customer_id: String,
        /// Points to add; negative (`-50`) to deduct.
        #[arg(allow_negative_numbers = true)]
        points: i64,
        /// Why, kept on the ledger entry (for example a ticket number).
        #[arg(long)]
        reason: String,
    },
}

/// The loyalty rules count everything up to and including the moment, so a
/// date means its last second: orders dated the next day (at midnight) stay out.
fn parse_inclusive_as_of(text: &str) -> Result<DateTime<Utc>, String> {
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(date) => Ok(date.and_hms_opt(23, 59, 59).expect("a valid time").and_utc()),
        Err(_) => parse_as_of(text),
    }
}

pub async fn run(db: &DatabaseConnection, settings: &Settings, command: &LoyaltyCommand) -> anyhow::Result<()> {
    let rules = Rules::from(&settings.loyalty);
    match command {
        LoyaltyCommand::Recompute { as_of } => {
            let as_of = as_of.unwrap_or_else(Utc::now);
            let started = std::time::Instant::now();
            let report = loyalty::recompute(db, &rules, as_of).await?;
            println!(
                "{} members ({} new): {} points earned, {} bonus, {} expired; {} upgrades, {} downgrades \
                 ({} recomputed, {:.2} s)",
                report.members,
                report.new_members,
                report.points_earned,
                report.bonus_points,
                report.points_expired,
                report.upgrades,
                report.downgrades,
                report.recomputed,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        LoyaltyCommand::Adjust { customer_id, points, reason } => {
            let balance = loyalty::adjustments::adjust(db, &rules, customer_id, *points, reason, Utc::now()).await?;
            println!("customer {customer_id}: {points:+} points ({reason}); balance {balance} points");
            Ok(())
        }
        LoyaltyCommand::Show { customer_id } => {
            let statement = loyalty::statement(db, &rules, customer_id, Utc::now())
                .await?
                .ok_or_else(|| UsageError(format!("no customer with customer_id `{customer_id}`")))?;
            println!("customer {}: {} points", statement.external_id, statement.balance);
            match (&statement.tier, statement.tier_since) {
                (Some(tier), Some(since)) => println!("tier: {tier} since {}", since.format("%Y-%m-%d")),
                _ => println!("tier: not a member yet (run `patron loyalty recompute`)"),
            }
            if let Some((next, missing)) = &statement.next_tier {
                let unit = if settings.loyalty.tier_basis == "points" { "points" } else { "of spend" };
                println!("next tier: {next}, {missing:.2} more {unit} within 12 months");
            }
            if statement.points_expiring_30d > 0 {
                println!("expiring within 30 days: {} points", statement.points_expiring_30d);
            }
            println!("latest entries:");
            for (at, kind, points, source) in &statement.recent {
                println!("  {}  {kind:<8} {points:>8}  {source}", at.format("%Y-%m-%d"));
            }
            Ok(())
        }
    }
}
