//! The commands about propensity: `train`, `score` and `model ...`.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand};
use sea_orm::DatabaseConnection;

use crate::config::Settings;
use crate::model::registry::Promotion;
use crate::model::train::TrainRequest;
use crate::model::workflow::{self, TrainOutcome};
use crate::model::{Algorithm, ModelFile, report};
use crate::scoring;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Train on what was known at the end of this day (YYYY-MM-DD) or at this
    /// moment (RFC 3339); nothing later is used [default: now].
    #[arg(long, value_name = "DATE", value_parser = parse_as_of)]
    pub as_of: Option<DateTime<Utc>>,
    /// How far ahead to predict a purchase, in days (91d) or weeks (13w).
    #[arg(long, value_name = "DURATION", default_value = "91d", value_parser = parse_horizon)]
    pub horizon: i64,
    /// The kind of model.
    #[arg(long, value_enum, default_value = "logistic")]
    pub algorithm: Algorithm,
    /// Make the new model active even if it is worse than the active one.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Score on what was known at the end of this day (YYYY-MM-DD) or at this moment [default: now].
    #[arg(long, value_name = "DATE", value_parser = parse_as_of)]
    pub as_of: Option<DateTime<Utc>>,
    /// Also write every customer's score to this CSV file (customer_id,score).
    #[arg(long, value_name = "FILE.csv")]
    pub export: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// List the trained models, newest first; the active one is marked.
    List,
    /// Show a model's windows, metrics and calibration.
    Show { name: String },
    /// Make a model the one that scores customers.
    Activate { name: String },
    /// Write an HTML report with the ROC curve, gains chart and calibration plot.
    Report {
        /// The model [default: the active one].
        name: Option<String>,
        /// Folder for index.html and the charts.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

pub async fn train(db: &DatabaseConnection, settings: &Settings, args: &TrainArgs) -> anyhow::Result<()> {
    let now = Utc::now();
    let request =
        TrainRequest { as_of: args.as_of.unwrap_or(now), horizon_days: args.horizon, algorithm: args.algorithm };
    let started = std::time::Instant::now();
    let outcome = workflow::train_and_promote(db, &settings.models_dir, &request, args.force, now).await?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), model = %outcome.model.name, "training finished");
    print_trained(&outcome);
    Ok(())
}

fn print_trained(outcome: &TrainOutcome) {
    let m = &outcome.model;
    println!("trained {} ({}), saved to {}", m.name, m.algorithm.name(), outcome.path.display());
    println!(
        "validation from {} ({} days, {} customers, {} buyers): AUC {:.3}, log loss {:.3}, Brier {:.3}, top-decile lift {:.2}",
        m.validation.cutoff.format("%Y-%m-%d"),
        m.validation.horizon_days,
        m.validation.rows,
        m.validation.buyers,
        m.metrics.roc_auc,
        m.metrics.log_loss,
        m.metrics.brier,
        m.metrics.top_decile_lift
    );
    if let Some(reason) = &outcome.active_unusable {
        println!("note: {reason}");
    }
    if outcome.both_saved {
        println!(
            "the active model was trained on this window too, so both saved models were compared on it: new AUC {:.3}",
            outcome.new_auc
        );
    }
    match &outcome.promotion {
        Promotion::NoActiveModel => println!("it is now the active model"),
        Promotion::AtLeastAsGood { active, active_auc } => {
            println!(
                "it is now the active model (the previous one, {active}, had AUC {active_auc:.3} on the same window)"
            )
        }
        Promotion::Forced { active, active_auc } => {
            println!(
                "it is now the active model, forced (the previous one, {active}, had AUC {active_auc:.3} on the same window)"
            )
        }
        Promotion::Worse { active, active_auc } => println!(
            "it was NOT made active: {active} stays active with AUC {active_auc:.3} on the same window \
             (use `patron model activate {}` or train with --force to override)",
            m.name
        ),
    }
}

pub async fn score(db: &DatabaseConnection, settings: &Settings, args: &ScoreArgs) -> anyhow::Result<()> {
    let now = Utc::now();
    let as_of = args.as_of.unwrap_or(now);
    let report = scoring::score(
        db,
        &settings.models_dir,
        scoring::valuation(&settings.lifetime_value),
        as_of,
        args.export.as_deref(),
        now,
    )
    .await?;
    println!(
        "scored {} customers with {} as of {}",
        report.customers,
        report.model,
        as_of.format("%Y-%m-%d %H:%M:%S UTC")
    );
    println!(
        "timings: reading {:.2} s, features {:.2} s, scoring {:.2} s, writing snapshots {:.2} s, writing scores {:.2} s",
        report.load.as_secs_f64(),
        report.features.as_secs_f64(),
        report.scoring.as_secs_f64(),
        report.write_snapshots.as_secs_f64(),
        report.write_scores.as_secs_f64()
    );
    if let Some(path) = report.export {
        println!("scores exported to {}", path.display());
    }
    Ok(())
}

pub async fn model(db: &DatabaseConnection, settings: &Settings, command: &ModelCommand) -> anyhow::Result<()> {
    let dir = &settings.models_dir;
    match command {
        ModelCommand::List => {
            let models = crate::model::registry::list(db).await?;
            if models.is_empty() {
                println!("no models yet; train one with `patron train`");
            }
            for m in models {
                let auc = m.validation_auc.map_or("-".to_owned(), |a| format!("{a:.3}"));
                let mark = if m.active { "  (active)" } else { "" };
                println!(
                    "{}  {}  trained {}  AUC {auc}{mark}",
                    m.name,
                    m.algorithm,
                    m.trained_at.format("%Y-%m-%d %H:%M")
                );
            }
        }
        ModelCommand::Show { name } => {
            let (row, file) = workflow::lookup(db, dir, Some(name)).await?;
            print!("{}", describe(&file, row.active));
            let activations = crate::model::registry::activations(db).await?;
            print!("{}", activations_text(activations.iter().filter(|a| a.model == row.name)));
        }
        ModelCommand::Activate { name } => {
            let (row, file) = workflow::lookup(db, dir, Some(name)).await?;
            crate::model::registry::activate(db, row.id, crate::model::registry::Activation::ByHand, Utc::now())
                .await?;
            println!("{} is now the active model (validation AUC {:.3})", file.name, file.metrics.roc_auc);
        }
        ModelCommand::Report { name, out } => {
            let (row, file) = workflow::lookup(db, dir, name.as_deref()).await?;
            let page = report::of_file(&file, row.active, |input| report::write_report(out, input))?;
            println!("report written to {}", page.display());
        }
    }
    Ok(())
}

/// `patron model show`: the model's facts and metrics as text.
fn describe(m: &ModelFile, active: bool) -> String {
    let mut text = format!(
        "name:        {}{}\nalgorithm:   {}\ntrained at:  {}\ndata:        {}\ntraining:    {}\nvalidation:  {}\n",
        m.name,
        if active { " (active)" } else { "" },
        m.algorithm.name(),
        m.trained_at.format("%Y-%m-%d %H:%M:%S UTC"),
        m.data_fingerprint,
        report::training_text(m),
        report::validation_text(m)
    );
    let x = &m.metrics;
    text += &format!(
        "metrics:     AUC {:.3}, log loss {:.4}, Brier {:.4}, top-decile lift {:.2}, buyer rate {:.3}\n",
        x.roc_auc, x.log_loss, x.brier, x.top_decile_lift, x.base_rate
    );
    text += "calibration: decile  customers  mean score  buyer rate\n";
    for bin in &x.calibration {
        text += &format!(
            "             {:>6}  {:>9}  {:>10.3}  {:>10.3}\n",
            bin.decile, bin.customers, bin.mean_score, bin.buyer_rate
        );
    }
    text + &customer_base_text(m)
}

/// When and how the model was made active, newest first.
fn activations_text<'a>(activations: impl Iterator<Item = &'a crate::model::registry::Activated>) -> String {
    let lines: Vec<String> =
        activations.map(|a| format!("{} ({})", a.at.format("%Y-%m-%d %H:%M:%S UTC"), a.how)).collect();
    if lines.is_empty() {
        return "activated:   never (none recorded)\n".to_owned();
    }
    format!("activated:   {}\n", lines.join(", "))
}

/// The fitted BG/NBD and Gamma-Gamma parameters, or why there are none.
fn customer_base_text(m: &ModelFile) -> String {
    let Some(base) = &m.customer_base else {
        let why = m.customer_base_note.as_deref().unwrap_or("the file is from before patron fitted them");
        return format!("customer base: not fitted ({why})\n");
    };
    let g = &base.bgnbd;
    let mut text = format!(
        "customer base: fitted as of {} on {} customers ({} bought again)\n\
         BG/NBD:      r {:.4}, alpha {:.4} days, a {:.4}, b {:.4} (log-likelihood {:.1})\n",
        base.as_of.format("%Y-%m-%d %H:%M UTC"),
        base.customers,
        base.repeat_buyers,
        g.r,
        g.alpha,
        g.a,
        g.b,
        base.bgnbd_log_likelihood
    );
    text += &match base.gamma_gamma {
        Some(s) => format!("Gamma-Gamma: p {:.4}, q {:.4}, gamma {:.4}\n", s.p, s.q, s.gamma),
        None => "Gamma-Gamma: not fitted (no repeat purchase with a value); clv is empty\n".to_owned(),
    };
    text
}

/// `--as-of`: a date means the end of that day (UTC), a timestamp that moment.
pub fn parse_as_of(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let next = date.succ_opt().ok_or("date out of range")?;
        return Ok(next.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("`{text}` is not a date YYYY-MM-DD or an RFC 3339 timestamp"))
}

/// `--horizon`: whole days (`91d`) or weeks (`13w`), at least one day.
pub fn parse_horizon(text: &str) -> Result<i64, String> {
    let invalid = || format!("`{text}` is not a duration such as 91d or 13w");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let number: i64 = number.parse().map_err(|_| invalid())?;
    let days = match unit {
        "d" => number,
        "w" => number * 7,
        _ => return Err(invalid()),
    };
    if !(1..=3650).contains(&days) {
        return Err(format!("`{text}` must be between 1 day and 10 years"));
    }
    Ok(days)
}
