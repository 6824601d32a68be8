//! `patron feed run|list`.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use sea_orm::DatabaseConnection;

use super::UsageError;
use crate::config::Loaded;
use crate::feed::{self, Listed, Outcome};

#[derive(Debug, Subcommand)]
pub enum FeedCommand {
    /// Run one feed once, now (the daemon runs them on their schedules).
    ///
    /// Exits with code 1 when the run failed (nothing of it landed) or a file was rejected.
    Run {
        /// The feed's name, as in [[feeds]].
        name: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every configured feed: schedule, last run, rows, watermarks, last error.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(conn: &DatabaseConnection, loaded: &Loaded, command: &FeedCommand) -> anyhow::Result<()> {
    match command {
        FeedCommand::Run { name, json } => {
            let feed = feed::find(loaded, name).map_err(|e| UsageError(e.to_string()))?;
            let outcome = feed::run(conn, loaded, feed, Utc::now()).await?;
            if *json {
                println!("{}", serde_json::to_string(&outcome)?);
            } else {
                print!("{}", outcome_text(name, &outcome));
            }
            match outcome.failed.len() {
                0 => Ok(()),
                n => anyhow::bail!("feed {name}: {n} file(s) rejected; see failed/ in its folder"),
            }
        }
        FeedCommand::List { json } => {
            let listed = feed::list(conn, &loaded.settings.feeds, Utc::now()).await?;
            if *json {
                println!("{}", serde_json::to_string(&listed)?);
            } else {
                print!("{}", list_text(&listed));
            }
            Ok(())
        }
    }
}

fn outcome_text(name: &str, outcome: &Outcome) -> String {
    let mut text = String::new();
    for landed in &outcome.landed {
        text.push_str(&format!(
            "{}: {} rows into {}, {} new or changed\n",
            landed.source, landed.rows, landed.table, landed.written
        ));
    }
    for line in outcome.notes.iter().chain(&outcome.failed) {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!("feed {name}: {} rows, {} new or changed\n", outcome.rows(), outcome.written()));
    text
}

fn list_text(listed: &[Listed]) -> String {
    if listed.is_empty() {
        return "no feeds are configured ([[feeds]] in the settings)\n".to_owned();
    }
    let at = |time: Option<DateTime<Utc>>| time.map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string());
    let mut text = String::new();
    for feed in listed {
        let recorded = &feed.recorded;
        let schedule = if feed.schedule.is_empty() { "by hand" } else { feed.schedule.as_str() };
        text.push_str(&format!(
            "{} ({}): schedule {schedule}, next {}; last run {}, last success {}, {} rows\n",
            feed.name,
            feed.kind,
            at(feed.next_run_at),
            at(recorded.last_run_at),
            at(recorded.last_success_at),
            recorded.last_rows
        ));
        for (table, watermark) in &recorded.watermarks {
            text.push_str(&format!("  watermark of {table}: {watermark}\n"));
        }
        if let Some(error) = &recorded.last_error {
            text.push_str(&format!("  last error: {error}\n"));
        }
    }
    text
}
