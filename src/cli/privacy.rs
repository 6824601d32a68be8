//! `patron suppressions ...` and `patron customer ...`: who may be mailed,
//! and the rights of the people in the database (access, erasure).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};
use sea_orm::DatabaseConnection;
use serde_json::json;

use super::UsageError;
use super::models::parse_as_of;
use crate::config::Loaded;
use crate::consent::suppressions::{self, Reason};
use crate::consent::{self, Origin, Source};
use crate::db::entities::customer;
use crate::import::fields;
use crate::privacy::{self, dossier, erase, retention};

#[derive(Debug, Subcommand)]
pub enum SuppressionsCommand {
    /// The suppressed addresses, oldest first.
    List {
        #[arg(long, value_enum)]
        reason: Option<ReasonArg>,
        /// Only those added since: a date or an RFC 3339 time.
        #[arg(long, value_name = "DATE", value_parser = parse_as_of)]
        since: Option<DateTime<Utc>>,
        #[arg(long)]
        json: bool,
    },
    /// Suppress an address (or a customer's, by their id as in the customers file).
    Add {
        #[arg(value_name = "EMAIL|CUSTOMER")]
        who: String,
        #[arg(long, value_enum)]
        reason: ReasonArg,
        #[arg(long)]
        json: bool,
    },
    /// Lift the suppression of an address; a spam complaint only with --force.
    Remove {
        #[arg(value_name = "EMAIL|CUSTOMER")]
        who: String,
        /// Lift a `complained` suppression too (the person marked our mail as spam).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Add the addresses of a CSV file with the columns `email` and (optional) `reason`.
    ///
    /// Every row is checked first: one bad row and nothing is added (exit code 2).
    Import {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Write the whole list to a CSV file: email, reason, source, created_at.
    Export {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReasonArg {
    Unsubscribed,
    Bounced,
    Complained,
    Manual,
}

impl From<ReasonArg> for Reason {
    fn from(reason: ReasonArg) -> Reason {
        match reason {
            ReasonArg::Unsubscribed => Reason::Unsubscribed,
            ReasonArg::Bounced => Reason::Bounced,
            ReasonArg::Complained => Reason::Complained,
            ReasonArg::Manual => Reason::Manual,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// A customer's consent per topic and its history, suppressions, latest messages, loyalty standing.
    Show {
        /// The customer's id, as in the customers file.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Everything held about the customer, as one JSON document (GDPR Art. 15 and 20).
    Export {
        id: String,
        /// Write it to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// With --out: print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Erase the customer's personal data from every table (GDPR Art. 17).
    ///
    /// Orders stay as anonymous rows if privacy.keep_anonymous_orders is on; the address
    /// stays suppressed as a keyed hash (needs privacy.address_key), so that importing it
    /// again keeps it unsubscribed.
    Erase {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Unsubscribe the customer from one topic, or from everything (a request by phone, say).
    Unsubscribe {
        id: String,
        /// The topic; without it, everything.
        #[arg(long)]
        topic: Option<String>,
        /// Why, kept with the consent change (a ticket number).
        #[arg(long)]
        basis: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Subscribe the customer to topics again (they asked, and it is on record).
    Subscribe {
        id: String,
        /// A topic; repeat for several. Without it, every topic.
        #[arg(long)]
        topic: Vec<String>,
        #[arg(long)]
        basis: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn suppressions(db: &DatabaseConnection, command: &SuppressionsCommand) -> anyhow::Result<()> {
    match command {
        SuppressionsCommand::List { reason, since, json } => {
            let entries = suppressions::list(db, reason.map(Reason::from), *since).await?;
            if *json {
                println!("{}", serde_json::to_string(&entries)?);
            } else {
                for e in &entries {
                    println!(
                        "{}  {:<12} {}  {}",
                        e.created_at.format("%Y-%m-%d %H:%M"),
                        e.reason,
                        e.email,
                        e.source.as_deref().unwrap_or("-")
                    );
                }
                println!("{} suppressed address(es)", entries.len());
            }
            Ok(())
        }
        SuppressionsCommand::Add { who, reason, json } => {
            let (email, customer_id) = address_of(db, who).await?;
            let txn = crate::db::begin_write(db).await?;
            let added = suppressions::add(&txn, &email, customer_id, (*reason).into(), "command").await?;
            txn.commit().await?;
            let reason = Reason::from(*reason).as_str();
            print(*json, json!({"added": added, "reason": reason}), || {
                if added { format!("suppressed ({reason})") } else { "already suppressed; unchanged".to_owned() }
            })
        }
        SuppressionsCommand::Remove { who, force, json } => {
            let (email, _) = address_of(db, who).await?;
            let Some(current) = suppressions::reason_of(db, &email).await? else {
                return Err(UsageError(format!("`{who}` is not suppressed")).into());
            };
            if current == Reason::Complained.as_str() && !force {
                return Err(UsageError(format!(
                    "`{who}` complained (marked our mail as spam); lifting that needs --force"
                ))
                .into());
            }
            let txn = crate::db::begin_write(db).await?;
            let removed = suppressions::remove(&txn, &email, "patron suppressions remove").await?;
            txn.commit().await?;
            let reason = removed.map(Reason::as_str);
            print(*json, json!({"removed": reason}), || format!("suppression ({current}) lifted"))
        }
        SuppressionsCommand::Import { file, json } => {
            let rows = read_suppressions(file)?;
            let txn = crate::db::begin_write(db).await?;
            let mut added = 0;
            for (email, reason) in &rows {
                added += u64::from(suppressions::add(&txn, email, None, *reason, "import").await?);
            }
            txn.commit().await?;
            let unchanged = rows.len() as u64 - added;
            print(*json, json!({"rows": rows.len(), "added": added, "already": unchanged}), || {
                format!("{}: {} rows, {added} added, {unchanged} already suppressed", file.display(), rows.len())
            })
        }
        SuppressionsCommand::Export { file, json } => {
            let entries = suppressions::list(db, None, None).await?;
            write_suppressions(file, &entries)?;
            print(*json, json!({"file": file, "rows": entries.len()}), || {
                format!("{} suppressed address(es) written to {}", entries.len(), file.display())
            })
        }
    }
}

pub async fn customer(db: &DatabaseConnection, loaded: &Loaded, command: &CustomerCommand) -> anyhow::Result<()> {
    let settings = &loaded.settings;
    let topics = &settings.subscriptions.topics;
    match command {
        CustomerCommand::Show { id, json } => {
            let customer = known(db, id).await?;
            let dossier = dossier::collect(db, &customer, topics).await?;
            if *json {
                let summary = json!({
                    "customer_id": customer.external_id,
                    "consent": dossier.consent,
                    "consent_history": dossier.consent_history,
                    "suppressions": dossier.suppressions,
                    "recent_messages": dossier.messages.iter().rev().take(10).collect::<Vec<_>>(),
                    "loyalty": dossier.loyalty_account,
                });
                println!("{summary}");
            } else {
                print!("{}", show_text(&customer, &dossier));
            }
            Ok(())
        }
        CustomerCommand::Export { id, out, json } => {
            let customer = known(db, id).await?;
            let dossier = dossier::collect(db, &customer, topics).await?;
            let text = serde_json::to_string_pretty(&dossier)?;
            match out {
                None => println!("{text}"),
                Some(path) => {
                    write_whole(path, text.as_bytes())?;
                    print(*json, json!({"file": path, "bytes": text.len()}), || {
                        format!("written to {}", path.display())
                    })?;
                }
            }
            Ok(())
        }
        CustomerCommand::Erase { id, json } => {
            let key = loaded.secrets.address_key.as_ref().ok_or_else(|| {
                UsageError(
                    "erasing keeps a keyed hash of the address: set PATRON__PRIVACY__ADDRESS_KEY or privacy.address_key_file"
                        .into(),
                )
            })?;
            let customer = known(db, id).await?;
            let erased = erase::erase(db, &customer, key, settings.privacy.keep_anonymous_orders).await?;
            print(*json, serde_json::to_value(&erased)?, || {
                format!(
                    "customer erased: {} orders kept as anonymous rows, {} deleted; {} interactions, {} loyalty entries, \
                     {} consent events removed; {} messages cleared, {} cancelled; the address stays suppressed as a hash",
                    erased.orders_kept_anonymous,
                    erased.orders_deleted,
                    erased.interactions,
                    erased.loyalty_entries,
                    erased.consent_events,
                    erased.messages_cleared,
                    erased.messages_cancelled
                )
            })
        }
        CustomerCommand::Unsubscribe { id, topic, basis, json } => {
            let customer = known(db, id).await?;
            if let Some(topic) = topic {
                known_topic(topic, topics)?;
            }
            let origin = Origin::new(Source::Command, basis.clone());
            let txn = crate::db::begin_write(db).await?;
            match topic {
                Some(topic) => {
                    consent::leave_topic(&txn, customer.id, topic, &origin).await?;
                }
                None => consent::leave_all(&txn, &customer.email, Some(customer.id), "command", &origin).await?,
            }
            txn.commit().await?;
            let what = topic.as_deref().unwrap_or("everything");
            print(*json, json!({"unsubscribed": what}), || format!("unsubscribed from {what}"))
        }
        CustomerCommand::Subscribe { id, topic, basis, json } => {
            let customer = known(db, id).await?;
            for t in topic {
                known_topic(t, topics)?;
            }
            let standing = consent::standing(db, customer.id).await?.expect("the customer exists");
            let mut wanted: BTreeSet<String> =
                topics.iter().filter(|t| standing.consent && !standing.left.contains(*t)).cloned().collect();
            if topic.is_empty() {
                wanted.extend(topics.iter().cloned());
            } else {
                wanted.extend(topic.iter().cloned());
            }
            let origin = Origin::new(Source::Command, basis.clone());
            let txn = crate::db::begin_write(db).await?;
            consent::set_preferences(&txn, customer.id, &wanted, topics, "command", &origin).await?;
            txn.commit().await?;
            let list: Vec<&String> = wanted.iter().collect();
            print(*json, json!({"subscribed": list}), || {
                format!("subscribed to {}", wanted.iter().cloned().collect::<Vec<_>>().join(", "))
            })
        }
    }
}

/// `patron retention`: applies `privacy.message_retention` and `privacy.feedback_retention` now.
pub async fn retention(db: &DatabaseConnection, loaded: &Loaded, json: bool) -> anyhow::Result<()> {
    let retained = retention::apply(db, &loaded.settings.privacy, Utc::now()).await?;
    print(json, json!({"messages": retained.messages, "feedback_events": retained.feedback_events}), || {
        format!(
            "{} message(s) and {} feedback event(s) past their retention lost their details",
            retained.messages, retained.feedback_events
        )
    })
}

fn print(json: bool, value: serde_json::Value, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
    Ok(())
}

/// The customer with this external id; exit code 2 when there is none.
async fn known(db: &DatabaseConnection, id: &str) -> anyhow::Result<customer::Model> {
    Ok(privacy::find_customer(db, id)
        .await?
        .ok_or_else(|| UsageError(format!("no customer with customer_id `{id}`")))?)
}

fn known_topic(topic: &str, topics: &[String]) -> Result<(), UsageError> {
    if topics.iter().any(|t| t == topic) {
        return Ok(());
    }
    Err(UsageError(format!("unknown topic `{topic}`; the topics ([subscriptions] topics) are {}", topics.join(", "))))
}

/// An address as given (checked), or a customer's (by external id) with the customer.
async fn address_of(db: &DatabaseConnection, who: &str) -> anyhow::Result<(String, Option<i64>)> {
    if who.contains('@') {
        let email = fields::email(who).map_err(|problem| UsageError(format!("`{who}`: {problem}")))?;
        return Ok((email.to_lowercase(), None));
    }
    let customer = known(db, who).await?;
    Ok((customer.email.to_lowercase(), Some(customer.id)))
}

/// Every row of a suppressions file, checked; the first problems name file and line.
fn read_suppressions(file: &Path) -> anyhow::Result<Vec<(String, Reason)>> {
    let name = file.display();
    let mut reader = csv::Reader::from_path(file).map_err(|e| UsageError(format!("{name}: {e}")))?;
    let headers = reader.headers().map_err(|e| UsageError(format!("{name}: {e}")))?.clone();
    let column = |wanted: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(wanted));
    let email_at = column("email").ok_or_else(|| UsageError(format!("{name}: line 1: no `email` column")))?;
    let reason_at = column("reason");
    let (mut rows, mut problems) = (Vec::new(), Vec::new());
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                problems.push(format!("{name}: line {line}: {e}"));
                continue;
            }
        };
        let email = fields::email(record.get(email_at).unwrap_or_default().trim());
        let reason_text = reason_at.and_then(|i| record.get(i)).map(str::trim).filter(|r| !r.is_empty());
        let reason = reason_text.map_or(Some(Reason::Manual), Reason::parse);
        match (email, reason) {
            (Ok(email), Some(reason)) => rows.push((email.to_lowercase(), reason)),
            (Err(problem), _) => problems.push(format!("{name}: line {line}, column `email`: {problem}")),
            (_, None) => problems.push(format!(
                "{name}: line {line}, column `reason`: `{}` is not one of unsubscribed, bounced, complained, manual",
                reason_text.unwrap_or_default()
            )),
        }
    }
    if problems.is_empty() {
        return Ok(rows);
    }
    let shown: Vec<&String> = problems.iter().take(20).collect();
    Err(UsageError(format!(
        "{} problem(s); nothing was added:\n  {}",
        problems.len(),
        shown.iter().map(|p| p.as_str()).collect::<Vec<_>>().join("\n  ")
    ))
    .into())
}

fn write_suppressions(file: &Path, entries: &[suppressions::Entry]) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(["email", "reason", "source", "created_at"])?;
    for e in entries {
        writer.write_record([
            e.email.as_str(),
            &e.reason,
            e.source.as_deref().unwrap_or(""),
            &e.created_at.to_rfc3339(),
        ])?;
    }
    write_whole(file, &writer.into_inner()?)
}

/// Writes `bytes` to `path` through a temporary file, so that a failure leaves no half-written file.
fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes).map_err(|e| UsageError(format!("cannot write {}: {e}", partial.display())))?;
    std::fs::rename(&partial, path).map_err(|e| UsageError(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}

/// `patron customer show` as text.
fn show_text(customer: &customer::Model, dossier: &dossier::Dossier) -> String {
    let mut text = format!("customer {}\n", customer.external_id);
    let consent = &dossier.consent;
    text += &format!("marketing consent: {}\n", if consent.marketing { "yes" } else { "no" });
    for topic in &consent.topics {
        text += &format!("  {:<12} {}\n", topic.topic, if topic.subscribed { "subscribed" } else { "unsubscribed" });
    }
    text += &format!("suppressed: {}\n", consent.suppressed.unwrap_or("no"));
    text += "consent history:\n";
    for event in &dossier.consent_history {
        let field = |name: &str| event.get(name).and_then(|v| v.as_str()).unwrap_or("-").to_owned();
        text += &format!(
            "  {}  {:<10} {} -> {}  {} ({})\n",
            field("occurred_at"),
            event.get("topic").and_then(|v| v.as_str()).unwrap_or("all"),
            field("old_state"),
            field("new_state"),
            field("source"),
            field("basis")
        );
    }
    text += "recent messages:\n";
    for message in dossier.messages.iter().rev().take(10) {
        let field = |name: &str| message.get(name).and_then(|v| v.as_str()).unwrap_or("-").to_owned();
        text += &format!("  {:<20} {:<10} {}\n", field("campaign"), field("state"), field("sent_at"));
    }
    match &dossier.loyalty_account {
        Some(account) => {
            let tier = account.get("tier").and_then(|v| v.as_str()).unwrap_or("-");
            let points = account.get("points").map_or("-".to_owned(), ToString::to_string);
            text += &format!("loyalty: {tier}, {points} points\n");
        }
        None => text += "loyalty: not a member\n",
    }
    text
}
