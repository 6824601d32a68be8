//! The command line: what each command is for, in a marketer's words, and the
//! dispatch from a parsed command to the library.

mod campaigns;
mod delivery;
mod dkim;
mod feedback;
mod feeds;
mod loyalty;
mod models;
mod privacy;
mod reports;

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};
use sea_orm::DatabaseConnection;
use secrecy::SecretString;

use crate::config::{self, ConfigError, Loaded};
use crate::failure::{Failure, Fault};
use crate::import::{self, ImportError, Kind};
use crate::{db, generate, logging, status};

#[derive(Debug, Parser)]
#[command(
    name = "patron",
    version,
    about = "Database marketing on autopilot: customers, purchase propensity, campaigns and loyalty mail.",
    long_about = "patron keeps your customer and order database, predicts who is likely to buy, and \
                  sends targeted campaigns and loyalty emails on the schedules written in campaigns/.\n\n\
                  Settings come from built-in defaults, the file given with --config, and environment \
                  variables PATRON__SECTION__KEY (for example PATRON__DATABASE__URL)."
)]
pub struct Cli {
    /// Settings file (TOML) laid over the built-in defaults; see config/patron.toml.
    #[arg(long, global = true, value_name = "FILE", env = "PATRON_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the database tables (every other command does this by itself).
    Migrate,
    /// Load customers, orders or interactions from a CSV file with a header line.
    ///
    /// Importing the same file again changes nothing; a changed row updates its record.
    /// If any row is bad, nothing is imported and every problem is listed (exit code 2),
    /// unless --skip-invalid is given.
    Import(ImportArgs),
    /// Show what the database holds: customers, orders, complaints, runs, outbox.
    Status {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write realistic synthetic customers, orders and interactions (CSV) for trials and benchmarks.
    Generate(GenerateArgs),
    /// Show the settings in effect (secrets are only reported as set or not set).
    Config,
    /// Learn who is likely to buy from the purchase history, and check it on the latest weeks.
    ///
    /// Customers as of past cutoffs are labelled by whether they bought within the horizon
    /// after the cutoff. The model is checked on the latest window that ends by --as-of and
    /// trained on the windows before it, so nothing after --as-of is used. The new model
    /// becomes active only if it is at least as good as the active one on the same window.
    Train(models::TrainArgs),
    /// Give every customer a propensity score (probability of buying) with the active model.
    Score(models::ScoreArgs),
    /// List, inspect, activate and report on trained models.
    #[command(subcommand)]
    Model(models::ModelCommand),
    /// Validate, list, preview and run the campaigns in the campaigns folder.
    #[command(subcommand)]
    Campaign(campaigns::CampaignCommand),
    /// Run the data feeds of the settings ([[feeds]]) by hand, and see what they did.
    #[command(subcommand)]
    Feed(feeds::FeedCommand),
    /// Keep the loyalty programme up to date, and show a member's statement.
    #[command(subcommand)]
    Loyalty(loyalty::LoyaltyCommand),
    /// Send the planned messages that are due (SMTP or files, see [delivery] in the settings).
    ///
    /// A message the server refuses for now is retried later; one it refuses for good
    /// is marked failed and its address suppressed. Without --until-empty, retries that
    /// are not yet due are left for the next run. A server that cannot be reached (or
    /// refuses TLS or the login) spends no attempt: the messages go back to the outbox
    /// and send exits with code 1, or with --until-empty waits for the server.
    /// SIGTERM or Ctrl-C: the messages in flight finish, the others go back at once.
    Send(delivery::SendArgs),
    /// Look after the outbox: re-queue failed messages or those whose delivery is unknown.
    #[command(subcommand)]
    Outbox(delivery::OutboxCommand),
    /// Read what comes back from the mail world: bounces, spam complaints, unsubscribe requests.
    #[command(subcommand)]
    Feedback(feedback::FeedbackCommand),
    /// The suppression list: addresses that get no mail at all (unsubscribed, bounced, complained).
    #[command(subcommand)]
    Suppressions(privacy::SuppressionsCommand),
    /// One customer: consent and its history, everything held about them (export), erasure.
    #[command(subcommand)]
    Customer(privacy::CustomerCommand),
    /// Clear message and feedback details older than privacy.message_retention and
    /// privacy.feedback_retention now (the daemon does it nightly).
    Retention {
        #[arg(long)]
        json: bool,
    },
    /// Run the HTTP server that answers the unsubscribe links in mail.
    Serve,
    /// DKIM: make a signing key and the DNS record that publishes it (see [dkim] in the settings).
    #[command(subcommand)]
    Dkim(dkim::DkimCommand),
    /// Reports: what a campaign earned against its control group, and where the customer value lies.
    #[command(subcommand)]
    Report(reports::ReportCommand),
    /// Run patron as a service: plan campaigns on their schedules, send, score, serve HTTP.
    ///
    /// Runs until SIGTERM or Ctrl-C. SIGHUP, or any change in the campaigns folder,
    /// reloads the campaigns (a broken file keeps its last good version running).
    Run {
        /// First run on an empty database: generate synthetic customers, train, score and
        /// plan every campaign once, writing mail to files (see the README's quick start).
        #[arg(long)]
        demo: bool,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What the file holds.
    #[arg(value_enum)]
    pub what: ImportKind,
    /// The CSV file.
    pub file: PathBuf,
    /// Import the good rows and write the bad ones, with the reason, to a reject file.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Where --skip-invalid writes rejected rows [default: FILE.rejects.csv].
    #[arg(long, value_name = "FILE", requires = "skip_invalid")]
    pub rejects: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImportKind {
    /// customer_id,email[,first_name,last_name,birthday,signed_up_at,marketing_consent,...]
    Customers,
    /// order_id,customer_id,ordered_at,amount[,currency,items,category]
    Orders,
    /// interaction_id,customer_id,kind,opened_at[,status,resolved_at,channel,note]
    Interactions,
    /// redemption_id,customer_id,points,redeemed_at[,reason] (refused whole if one is above the balance)
    Redemptions,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// How many customers (orders are about three per customer).
    #[arg(long)]
    pub customers: u64,
    /// Random seed: the same seed gives the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Folder for customers.csv, orders.csv and interactions.csv.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// First day customers join.
    #[arg(long, default_value = "2024-07-01")]
    pub start: NaiveDate,
    /// Last day of activity.
    #[arg(long, default_value = "2026-06-30")]
    pub end: NaiveDate,
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(args) => run_generate(&args),
        Command::Dkim(command) => dkim::run(&command),
        Command::Config => {
            let loaded = load(cli.config.as_deref())?;
            print!("{}", loaded.settings.to_display_toml());
            println!("\n# secrets");
            println!("# smtp password: {}", secret_state(&loaded.secrets.smtp_password));
            println!("# unsubscribe secret: {}", secret_state(&loaded.secrets.unsubscribe_secret));
            println!("# dkim private key: {}", if loaded.secrets.dkim.is_some() { "set" } else { "not set" });
            println!("# postmark webhook password: {}", secret_state(&loaded.secrets.postmark_password));
            println!("# feedback mailbox password: {}", secret_state(&loaded.secrets.imap_password));
            println!("# erased-address key: {}", secret_state(&loaded.secrets.address_key));
            Ok(())
        }
        Command::Send(args) => delivery::send(&load(cli.config.as_deref())?, &args).await,
        Command::Serve => delivery::serve(&load(cli.config.as_deref())?).await,
        Command::Feedback(command) => feedback::run(load(cli.config.as_deref()).map_err(Into::into), &command).await,
        Command::Run { demo } => crate::daemon::run(load(cli.config.as_deref())?, cli.config.as_deref(), demo).await,
        Command::Campaign(campaigns::CampaignCommand::Validate { files }) => {
            let loaded = load(cli.config.as_deref())?;
            campaigns::validate(&loaded.settings, &files)
        }
        command => {
            let loaded = load(cli.config.as_deref())?;
            let conn = match command {
                Command::Migrate => db::connect(&loaded.settings).await?,
                _ => db::open(&loaded.settings).await?,
            };
            let result = run_on_database(&conn, &loaded, command).await;
            // On SQLite the last connection to close checkpoints the
            // write-ahead log and deletes it. Left behind, it is read whole
            // by the next command that opens the file (a million-row scoring
            // leaves about 1 GB of it).
            let closed = conn.close().await;
            result?;
            closed.context("closing the database")
        }
    }
}

/// The commands that work on the database.
async fn run_on_database(conn: &DatabaseConnection, loaded: &Loaded, command: Command) -> anyhow::Result<()> {
    let settings = &loaded.settings;
    match command {
        Command::Migrate => {
            let applied = db::migrate(conn).await?;
            if applied.is_empty() {
                println!("database is up to date");
            } else {
                println!("applied {} migration(s): {}", applied.len(), applied.join(", "));
            }
            Ok(())
        }
        Command::Import(args) => run_import(conn, loaded, &args).await,
        Command::Train(args) => models::train(conn, settings, &args).await,
        Command::Score(args) => models::score(conn, settings, &args).await,
        Command::Model(command) => models::model(conn, settings, &command).await,
        Command::Campaign(command) => campaigns::run(conn, loaded, &command).await,
        Command::Loyalty(command) => loyalty::run(conn, settings, &command).await,
        Command::Feed(command) => feeds::run(conn, loaded, &command).await,
        Command::Report(command) => reports::run(conn, settings, &command).await,
        Command::Outbox(command) => delivery::outbox(conn, &command).await,
        Command::Suppressions(command) => privacy::suppressions(conn, &command).await,
        Command::Customer(command) => privacy::customer(conn, loaded, &command).await,
        Command::Retention { json } => privacy::retention(conn, loaded, json).await,
        Command::Status { json } => {
            let status = status::collect(conn, &settings.feeds).await?;
            if json {
                println!("{}", serde_json::to_string(&status)?);
            } else {
                print!("{}", status.to_text());
            }
            Ok(())
        }
        Command::Generate(_)
        | Command::Dkim(_)
        | Command::Config
        | Command::Send(_)
        | Command::Serve
        | Command::Feedback(_)
        | Command::Run { .. } => {
            unreachable!("handled before connecting")
        }
    }
}

fn load(file: Option<&Path>) -> Result<Loaded, ConfigError> {
    let loaded = config::load(file)?;
    logging::init(&loaded.settings.log);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    Ok(loaded)
}

fn secret_state(secret: &Option<SecretString>) -> &'static str {
    if secret.is_some() { "set" } else { "not set" }
}

async fn run_import(conn: &DatabaseConnection, loaded: &Loaded, args: &ImportArgs) -> anyhow::Result<()> {
    let kind = match args.what {
        ImportKind::Customers => Kind::Customers,
        ImportKind::Orders => Kind::Orders,
        ImportKind::Interactions => Kind::Interactions,
        ImportKind::Redemptions => {
            let imported = crate::loyalty::redemptions::import(conn, &args.file).await?;
            crate::feed::state::record_load(conn, "import", "redemptions", imported.rows as u64, chrono::Utc::now())
                .await?;
            println!(
                "{}: {} redemptions read, {} new, {} already imported",
                args.file.display(),
                imported.rows,
                imported.new,
                imported.already_imported
            );
            return Ok(());
        }
    };
    let options = import::Options {
        skip_invalid: args.skip_invalid,
        rejects_path: args.rejects.clone(),
        ..import::Options::from_settings(loaded)
    };
    let started = std::time::Instant::now();
    let report = import::import(conn, kind, &args.file, &options).await?;
    crate::feed::state::record_load(conn, "import", kind.table(), report.rows, chrono::Utc::now()).await?;
    tracing::info!(rows = report.rows, seconds = started.elapsed().as_secs_f64(), "import finished");
    println!(
        "{}: {} rows read, {} new or changed, {} unchanged, {} rejected",
        args.file.display(),
        report.rows,
        report.written,
        report.unchanged,
        report.rejected
    );
    if report.consent_kept_off > 0 {
        println!(
            "{} row(s) asked for marketing consent and were kept off: the person unsubscribed or was suppressed \
             after the file's consent_at (or the file gives none)",
            report.consent_kept_off
        );
    }
    if let Some(path) = report.rejects_file {
        println!("rejected rows and their reasons: {}", path.display());
    }
    Ok(())
}

fn run_generate(args: &GenerateArgs) -> anyhow::Result<()> {
    if args.end < args.start {
        return Err(UsageError(format!("--end {} is before --start {}", args.end, args.start)).into());
    }
    let spec = generate::Spec { customers: args.customers, seed: args.seed, start: args.start, end: args.end };
    let counts = generate::generate(&spec, &args.out).context("generating synthetic data")?;
    println!(
        "wrote {} customers, {} orders and {} interactions to {}",
        counts.customers,
        counts.orders,
        counts.interactions,
        args.out.display()
    );
    Ok(())
}

/// A command used wrongly, found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for an error: what its [`Failure`] says, 1 for any other error.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    FAILURES.iter().find_map(|fault_of| fault_of(error)).unwrap_or(Fault::Runtime).exit_code()
}

/// The error types that end commands, each deciding its own fault.
const FAILURES: &[fn(&anyhow::Error) -> Option<Fault>] = &[
    fault_of::<feedback::TryAgainLater>,
    fault_of::<ConfigError>,
    fault_of::<UsageError>,
    fault_of::<campaigns::InvalidCampaigns>,
    fault_of::<campaigns::RefusedRun>,
    fault_of::<campaigns::StaleRun>,
    fault_of::<crate::delivery::test_send::TestSendError>,
    fault_of::<crate::delivery::sender::MissingUnsubscribeSecret>,
    fault_of::<crate::daemon::leader::AlreadyRunning>,
    fault_of::<crate::loyalty::redemptions::Refused>,
    fault_of::<crate::loyalty::adjustments::Refused>,
    fault_of::<crate::model::workflow::LookupError>,
    fault_of::<crate::model::file::ModelFileError>,
    fault_of::<crate::model::train::TrainError>,
    fault_of::<crate::scoring::ScoreError>,
    fault_of::<ImportError>,
    fault_of::<crate::report::ReportError>,
];

fn fault_of<E: Failure>(error: &anyhow::Error) -> Option<Fault> {
    error.downcast_ref::<E>().map(Failure::fault)
}

impl crate::failure::Failure for UsageError {
    /// A command used wrongly.
    fn fault(&self) -> crate::failure::Fault {
        crate::failure::Fault::Input
    }
}
