//! Settings: the built-in defaults (`config/patron.toml`), an optional file and
//! `PATRON__SECTION__KEY` environment overrides, validated once at start.
//!
//! Secrets live apart from the other settings in [`Secrets`]: they can only come
//! from the environment or a file, and they never print (not even with `{:?}`).

pub mod feeds;
pub mod keys;
pub mod mailbox;
pub mod typed;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use config::{Config, Environment, File, FileFormat, Source};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::dkim::{self, Dkim};
use crate::schedule::Schedule;
pub use feeds::{FeedKind, FeedPatterns, FeedQueries, FeedSettings};
use mailbox::Mailbox;
pub use typed::{FromSetting, Typed};

/// The defaults, compiled in so that the binary is complete on its own.
pub const DEFAULTS_TOML: &str = include_str!("../../config/patron.toml");
const DEFAULTS_ORIGIN: &str = "the built-in defaults (config/patron.toml)";
const ENV_PREFIX: &str = "PATRON";

/// A setting that cannot be used, with the key, where it came from and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not `#[source]`: the message already holds the cause, and `{:#}` would repeat it.
    #[error("configuration: {0}")]
    Load(config::ConfigError),
    #[error("configuration: `{key}` (from {origin}): {problem}")]
    Invalid { key: String, origin: String, problem: String },
    /// Every problem found, each an `Invalid`.
    #[error("configuration: {} problems:{}", .0.len(), one_per_line(.0))]
    Several(Vec<ConfigError>),
}

/// Each problem on a line of its own, indented.
fn one_per_line(problems: &[ConfigError]) -> String {
    let line = |problem: &ConfigError| format!("\n  {}", problem.to_string().trim_start_matches("configuration: "));
    problems.iter().map(line).collect()
}

/// The problems found in the settings, each with its key and origin.
struct Problems<'a> {
    raw: &'a Config,
    found: Vec<ConfigError>,
}

impl<'a> Problems<'a> {
    fn new(raw: &'a Config) -> Self {
        Problems { raw, found: Vec::new() }
    }

    fn add(&mut self, key: &str, problem: impl Into<String>) {
        self.found.push(invalid(self.raw, key, problem));
    }

    /// The value of a typed setting, or its problem noted.
    fn value<'t, T>(&mut self, key: &str, setting: &'t Typed<T>) -> Option<&'t T> {
        setting.parsed().map_err(|problem| self.add(key, problem)).ok()
    }

    /// A duration that must be longer than zero.
    fn positive(&mut self, key: &str, setting: &Typed<chrono::Duration>) {
        if self.value(key, setting).is_some_and(|d| d.is_zero()) {
            self.add(key, "must be longer than 0s");
        }
    }

    fn finish(mut self) -> Result<(), ConfigError> {
        match self.found.len() {
            0 => Ok(()),
            1 => Err(self.found.remove(0)),
            _ => Err(ConfigError::Several(self.found)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub campaigns_dir: PathBuf,
    pub models_dir: PathBuf,
    pub database: DatabaseSettings,
    pub import: ImportSettings,
    pub campaigns: CampaignSettings,
    pub delivery: DeliverySettings,
    pub http: HttpSettings,
    pub daemon: DaemonSettings,
    pub loyalty: LoyaltySettings,
    pub log: LogSettings,
    pub smtp: SmtpSettings,
    pub unsubscribe: UnsubscribeSettings,
    pub report: ReportSettings,
    pub lifetime_value: LifetimeValueSettings,
    pub feedback: FeedbackSettings,
    pub dkim: DkimSettings,
    pub subscriptions: SubscriptionSettings,
    pub privacy: PrivacySettings,
    pub ui: UiSettings,
    /// `[[feeds]]`: none unless configured.
    #[serde(default)]
    pub feeds: Vec<FeedSettings>,
}

/// The subscription topics and what the preference page says of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSettings {
    pub topics: Vec<String>,
    pub record_ip: bool,
    /// language → topic → description.
    pub descriptions: BTreeMap<String, BTreeMap<String, String>>,
}

impl SubscriptionSettings {
    /// What the page says of `topic` in `language`, else in English, else its name.
    pub fn describe<'a>(&'a self, topic: &'a str, language: &str) -> &'a str {
        [language, "en"]
            .iter()
            .find_map(|l| self.descriptions.get(*l).and_then(|d| d.get(topic)))
            .map_or(topic, String::as_str)
    }
}

/// Erasure and retention; see `config/patron.toml` for each key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySettings {
    pub keep_anonymous_orders: bool,
    pub message_retention: Typed<Option<chrono::Duration>>,
    pub feedback_retention: Typed<Option<chrono::Duration>>,
    pub address_key_file: PathBuf,
    /// Only accepted from the environment; moved into [`Secrets`] and never serialized.
    #[serde(default, skip_serializing)]
    address_key: Option<SecretString>,
}

impl PrivacySettings {
    /// How long sent-message rows keep their details; `None`: for ever.
    pub fn message_retention(&self) -> Option<chrono::Duration> {
        *self.message_retention.get()
    }

    /// How long feedback events keep their address and diagnostic; `None`: for ever.
    pub fn feedback_retention(&self) -> Option<chrono::Duration> {
        *self.feedback_retention.get()
    }
}

/// A topic name: what campaign files, segments and the page's form use.
pub fn is_topic_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn validate_subscriptions(problems: &mut Problems, subscriptions: &SubscriptionSettings) {
    let topics = &subscriptions.topics;
    if topics.is_empty() {
        problems.add("subscriptions.topics", "name at least one topic");
    }
    if let Some(bad) = topics.iter().find(|t| !is_topic_name(t)) {
        let problem = format!("`{bad}`: a topic is 1 to 40 lower-case letters, digits, `_` or `-`");
        problems.add("subscriptions.topics", problem);
    }
    if let Some((i, twice)) = topics.iter().enumerate().find(|(i, t)| topics[..*i].contains(t)) {
        problems.add("subscriptions.topics", format!("`{twice}` is named twice (position {})", i + 1));
    }
    // Descriptions of other topics are ignored: the defaults describe the
    // default topics, and a file that names its own cannot remove them.
}

fn validate_privacy(problems: &mut Problems, privacy: &PrivacySettings) {
    problems.value("privacy.message_retention", &privacy.message_retention);
    problems.value("privacy.feedback_retention", &privacy.feedback_retention);
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Empty means the SQLite file `patron.db` in `data_dir`; see [`Settings::database_url`].
    pub url: String,
    pub max_connections: u32,
    pub busy_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSettings {
    pub batch_size: usize,
    pub max_reported_errors: usize,
}

/// Rules shared by every campaign: the default control group, the frequency
/// cap and how late a missed fire may still run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSettings {
    pub default_holdout: f64,
    pub frequency_cap: u32,
    pub frequency_window: Typed<chrono::Duration>,
    pub grace_period: Typed<chrono::Duration>,
    pub max_data_age: Typed<Option<chrono::Duration>>,
}

impl CampaignSettings {
    pub fn frequency_window(&self) -> chrono::Duration {
        *self.frequency_window.get()
    }

    pub fn grace_period(&self) -> chrono::Duration {
        *self.grace_period.get()
    }

    /// The staleness guard: campaigns that read the orders or the scores do
    /// not plan on data older than this; `None`: no guard.
    pub fn max_data_age(&self) -> Option<chrono::Duration> {
        *self.max_data_age.get()
    }
}

/// How the sender works; see `config/patron.toml` for each key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    pub transport: Typed<TransportKind>,
    pub file_dir: PathBuf,
    pub concurrency: usize,
    pub rate_per_second: u32,
    pub max_attempts: u32,
    pub retry_after: Typed<chrono::Duration>,
    pub retry_max: Typed<chrono::Duration>,
    pub lease: Typed<chrono::Duration>,
    pub resend_unknown: bool,
    pub message_id_domain: String,
    pub return_path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    File,
    Smtp,
}

impl FromSetting for TransportKind {
    fn from_setting(text: &str) -> Result<Self, String> {
        match text {
            "file" => Ok(TransportKind::File),
            "smtp" => Ok(TransportKind::Smtp),
            _ => Err("expected `file` or `smtp`".into()),
        }
    }
}

impl DeliverySettings {
    pub fn transport(&self) -> TransportKind {
        *self.transport.get()
    }

    pub fn retry_after(&self) -> chrono::Duration {
        *self.retry_after.get()
    }

    pub fn retry_max(&self) -> chrono::Duration {
        *self.retry_max.get()
    }

    pub fn lease(&self) -> chrono::Duration {
        *self.lease.get()
    }
}

/// What bounces and complaints do; see `config/patron.toml` for each key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackSettings {
    pub soft_bounce_limit: u32,
    pub soft_bounce_window: Typed<chrono::Duration>,
    pub aside_dir: PathBuf,
    pub max_complaint_rate: f64,
    pub max_bounce_rate: f64,
    pub min_sample: u64,
    pub rate_window: Typed<chrono::Duration>,
    /// `POST /webhooks/ses`: the SNS topic it accepts, and the certificate that signs its messages.
    pub ses_topic_arn: String,
    pub ses_certificate_file: PathBuf,
    /// `POST /webhooks/postmark`: the Basic user name (the password is a secret).
    pub postmark_user: String,
    pub postmark_password_file: PathBuf,
    /// Only accepted from the environment; moved into [`Secrets`] and never serialized.
    #[serde(default, skip_serializing)]
    postmark_password: Option<SecretString>,
    /// `POST /webhooks/sendgrid`: the Signed Event Webhook's public key, base64 DER.
    pub sendgrid_public_key: String,
    /// The IMAP mailbox the daemon polls for bounces (`imaps://user@host/INBOX`); empty: none.
    pub imap_url: String,
    pub imap_password_file: PathBuf,
    /// Only accepted from the environment; moved into [`Secrets`] and never serialized.
    #[serde(default, skip_serializing)]
    imap_password: Option<SecretString>,
    pub imap_poll_interval: Typed<chrono::Duration>,
    /// The folder read messages move to; empty: they stay, marked as read.
    pub imap_move_to: String,
}

impl FeedbackSettings {
    pub fn rate_window(&self) -> chrono::Duration {
        *self.rate_window.get()
    }

    pub fn soft_bounce_window(&self) -> chrono::Duration {
        *self.soft_bounce_window.get()
    }

    pub fn imap_poll_interval(&self) -> chrono::Duration {
        *self.imap_poll_interval.get()
    }
}

/// Where `{token}` goes in `delivery.return_path`.
pub const RETURN_PATH_TOKEN: &str = "{token}";

/// `delivery.return_path`: `{token}` once, in what makes an address, and the
/// unsubscribe secret that signs the token.
fn validate_return_path(problems: &mut Problems, settings: &Settings, secrets: &Secrets) {
    let pattern = settings.delivery.return_path.as_str();
    if pattern.is_empty() {
        return;
    }
    let key = "delivery.return_path";
    if pattern.matches(RETURN_PATH_TOKEN).count() != 1 || !pattern.contains('@') {
        problems.add(key, "must hold `{token}` once, in an address such as bounces+{token}@example.com");
        return;
    }
    // The longest token: an outbox id of 19 digits, a dash, 20 hex digits.
    let longest = pattern.replace(RETURN_PATH_TOKEN, &format!("{}-{}", i64::MAX, "f".repeat(20)));
    if longest.parse::<lettre::Address>().is_err() || longest.split('@').next().is_some_and(|l| l.len() > 64) {
        problems.add(key, format!("`{pattern}` does not make a valid address with a token in it"));
    }
    if secrets.unsubscribe_secret.is_none() {
        problems.add(
            key,
            "its token is signed with the unsubscribe secret: set unsubscribe.secret_file or PATRON__UNSUBSCRIBE__SECRET",
        );
    }
}

/// The webhook settings: each provider wholly configured or not at all, its key readable.
fn validate_webhooks(problems: &mut Problems, feedback: &FeedbackSettings, secrets: &Secrets) {
    let topic = !feedback.ses_topic_arn.trim().is_empty();
    let certificate = !feedback.ses_certificate_file.as_os_str().is_empty();
    if topic && !certificate {
        problems.add("feedback.ses_certificate_file", "must be set with feedback.ses_topic_arn");
    }
    if certificate && !topic {
        problems.add("feedback.ses_topic_arn", "must be set with feedback.ses_certificate_file");
    }
    if certificate && let Err(problem) = keys::certificate_key(&feedback.ses_certificate_file) {
        problems.add("feedback.ses_certificate_file", problem);
    }
    let user = !feedback.postmark_user.is_empty();
    if user && secrets.postmark_password.is_none() {
        problems.add(
            "feedback.postmark_user",
            "needs a password: set PATRON__FEEDBACK__POSTMARK_PASSWORD or feedback.postmark_password_file",
        );
    }
    if !user && secrets.postmark_password.is_some() {
        problems.add("feedback.postmark_user", "must be set with the Postmark webhook password");
    }
    if feedback.postmark_user.contains(':') {
        problems.add("feedback.postmark_user", "must not contain `:`");
    }
    if !feedback.sendgrid_public_key.trim().is_empty()
        && let Err(problem) = keys::sendgrid_key(&feedback.sendgrid_public_key)
    {
        problems.add("feedback.sendgrid_public_key", problem);
    }
}

/// `feedback.imap_url`: a mailbox patron can log in to without sending its
/// password in the clear over a network.
fn validate_imap(problems: &mut Problems, feedback: &FeedbackSettings, secrets: &Secrets) {
    if feedback.imap_url.trim().is_empty() {
        return;
    }
    if let Err(problem) = Mailbox::parse(&feedback.imap_url) {
        problems.add("feedback.imap_url", problem);
    }
    if secrets.imap_password.is_none() {
        problems.add(
            "feedback.imap_url",
            "needs a password: set PATRON__FEEDBACK__IMAP_PASSWORD or feedback.imap_password_file",
        );
    }
}

fn validate_feedback(problems: &mut Problems, feedback: &FeedbackSettings) {
    if feedback.soft_bounce_limit == 0 {
        problems.add("feedback.soft_bounce_limit", "must be at least 1");
    }
    problems.positive("feedback.soft_bounce_window", &feedback.soft_bounce_window);
    problems.positive("feedback.rate_window", &feedback.rate_window);
    problems.positive("feedback.imap_poll_interval", &feedback.imap_poll_interval);
    for (key, rate) in [
        ("feedback.max_complaint_rate", feedback.max_complaint_rate),
        ("feedback.max_bounce_rate", feedback.max_bounce_rate),
    ] {
        if !(rate.is_finite() && (0.0..=1.0).contains(&rate)) {
            problems.add(key, "must be a share between 0 and 1, such as 0.001 for 0.1%");
        }
    }
}

/// The loyalty programme's rules; see `config/patron.toml` for each key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoyaltySettings {
    pub points_per_unit: f64,
    pub category_multipliers: std::collections::BTreeMap<String, f64>,
    pub expiry_months: u32,
    pub welcome_bonus: i64,
    pub birthday_bonus: i64,
    pub tier_basis: String,
    pub tiers: Vec<String>,
    pub downgrade_grace: Typed<chrono::Duration>,
}

impl LoyaltySettings {
    /// The tiers as (name, threshold), lowest first; checked when loaded.
    pub fn tiers(&self) -> Vec<(String, f64)> {
        self.tiers.iter().filter_map(|t| parse_tier(t).ok()).collect()
    }

    pub fn downgrade_grace(&self) -> chrono::Duration {
        *self.downgrade_grace.get()
    }
}

/// `name:threshold`, for example `silver:500`.
fn parse_tier(text: &str) -> Result<(String, f64), String> {
    let (name, threshold) = text.split_once(':').ok_or_else(|| format!("`{text}` is not name:threshold"))?;
    let threshold: f64 = threshold.trim().parse().map_err(|_| format!("`{text}`: the threshold is not a number"))?;
    let name = name.trim();
    if name.is_empty() || !threshold.is_finite() || threshold < 0.0 {
        return Err(format!("`{text}` needs a name and a threshold of 0 or more"));
    }
    Ok((name.to_owned(), threshold))
}

/// `patron report`; see `config/patron.toml` for each key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    pub attribution_window: Typed<chrono::Duration>,
    pub expected_years: f64,
}

impl ReportSettings {
    pub fn attribution_window(&self) -> chrono::Duration {
        *self.attribution_window.get()
    }
}

fn validate_report(problems: &mut Problems, report: &ReportSettings) {
    problems.positive("report.attribution_window", &report.attribution_window);
    if !(report.expected_years.is_finite() && report.expected_years > 0.0 && report.expected_years <= 50.0) {
        problems.add("report.expected_years", "must be a number of years above 0 and at most 50");
    }
}

/// The `clv` field that scoring writes; see `config/patron.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifetimeValueSettings {
    pub horizon: Typed<chrono::Duration>,
    pub annual_discount_rate: f64,
}

impl LifetimeValueSettings {
    pub fn horizon_days(&self) -> f64 {
        self.horizon.get().num_seconds() as f64 / 86_400.0
    }
}

fn validate_lifetime_value(problems: &mut Problems, value: &LifetimeValueSettings) {
    problems.positive("lifetime_value.horizon", &value.horizon);
    if !(value.annual_discount_rate.is_finite() && (0.0..=1.0).contains(&value.annual_discount_rate)) {
        problems.add("lifetime_value.annual_discount_rate", "must be a rate between 0 and 1, such as 0.1 for 10 %");
    }
}

/// `patron run`; see `config/patron.toml` for each key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    pub score_schedule: Typed<Option<Schedule>>,
    pub train_schedule: Typed<Option<Schedule>>,
    pub loyalty_schedule: Typed<Option<Schedule>>,
    pub retention_schedule: Typed<Option<Schedule>>,
    pub max_score_age: Typed<chrono::Duration>,
    pub send_interval: Typed<chrono::Duration>,
    pub stop_timeout: Typed<chrono::Duration>,
    pub range_size: u64,
    pub work_lease: Typed<chrono::Duration>,
}

impl DaemonSettings {
    pub fn max_score_age(&self) -> chrono::Duration {
        *self.max_score_age.get()
    }

    pub fn send_interval(&self) -> chrono::Duration {
        *self.send_interval.get()
    }

    pub fn stop_timeout(&self) -> chrono::Duration {
        *self.stop_timeout.get()
    }

    pub fn work_lease(&self) -> chrono::Duration {
        *self.work_lease.get()
    }
}

/// The dashboard under `/ui/` (`crate::ui`); see `[ui]` in `config/patron.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiSettings {
    pub enabled: bool,
    pub show_personal_data: bool,
    /// Bearer tokens and Basic users, one a line; empty: none.
    pub credentials_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: String,
    pub public_url: String,
    pub max_connections: usize,
    pub header_timeout: Typed<chrono::Duration>,
}

impl HttpSettings {
    pub fn header_timeout(&self) -> chrono::Duration {
        *self.header_timeout.get()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    StartTls,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: Typed<LogLevel>,
    pub format: Typed<LogFormat>,
}

impl FromSetting for LogLevel {
    fn from_setting(text: &str) -> Result<Self, String> {
        match text {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            _ => Err("expected one of trace, debug, info, warn, error".into()),
        }
    }
}

impl FromSetting for LogFormat {
    fn from_setting(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected `text` or `json`".into()),
        }
    }
}

impl LogSettings {
    pub fn level(&self) -> LogLevel {
        *self.level.get()
    }

    pub fn format(&self) -> LogFormat {
        *self.format.get()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: Typed<SmtpTls>,
    pub username: String,
    pub timeout: Typed<chrono::Duration>,
    pub password_file: PathBuf,
    /// Only accepted from the environment; moved into [`Secrets`] and never serialized.
    #[serde(default, skip_serializing)]
    password: Option<SecretString>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeSettings {
    pub secret_file: PathBuf,
    pub mailto: String,
    /// Only accepted from the environment; moved into [`Secrets`] and never serialized.
    #[serde(default, skip_serializing)]
    secret: Option<SecretString>,
}

/// DKIM signing; see `config/patron.toml` for each key. An empty selector
/// signs nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSettings {
    pub selector: String,
    pub domain: String,
    pub algorithm: String,
    pub private_key_file: PathBuf,
    /// Only accepted from the environment; made into [`Secrets::dkim`] and never serialized.
    #[serde(default, skip_serializing)]
    private_key: Option<SecretString>,
}

impl FromSetting for SmtpTls {
    fn from_setting(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(SmtpTls::None),
            "starttls" => Ok(SmtpTls::StartTls),
            "tls" => Ok(SmtpTls::Tls),
            _ => Err("expected `none`, `starttls` or `tls`".into()),
        }
    }
}

impl SmtpSettings {
    pub fn tls(&self) -> SmtpTls {
        *self.tls.get()
    }

    pub fn timeout(&self) -> chrono::Duration {
        *self.timeout.get()
    }
}

/// Secrets, each from the environment or a file. `Debug` shows `[REDACTED]`.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub smtp_password: Option<SecretString>,
    pub unsubscribe_secret: Option<SecretString>,
    /// The DKIM signer, made from the key when `dkim.selector` is set.
    pub dkim: Option<Arc<Dkim>>,
    /// The password of `POST /webhooks/postmark`'s Basic credentials.
    pub postmark_password: Option<SecretString>,
    /// The password of the `feedback.imap_url` mailbox.
    pub imap_password: Option<SecretString>,
    /// The key of the hash that stands for an erased person's address.
    pub address_key: Option<SecretString>,
}

impl From<config::ConfigError> for ConfigError {
    fn from(error: config::ConfigError) -> Self {
        ConfigError::Load(error)
    }
}

/// Everything patron needs to start: the settings and the secrets.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    pub secrets: Secrets,
    /// Problems that do not stop patron (a secret file others can read), to
    /// be logged once logging is set up.
    pub warnings: Vec<String>,
}

/// Loads the defaults, then `file` when given, then the environment, and validates.
pub fn load(file: Option<&Path>) -> Result<Loaded, ConfigError> {
    let raw = layered(file)?;
    if let Some(file) = file {
        refuse_secrets_in_file(file)?;
    }
    let mut settings: Settings = raw.clone().try_deserialize()?;
    // Every problem at once: the settings', then those of the secrets and
    // of the settings that need them.
    let mut problems = Problems::new(&raw);
    let secrets = take_secrets(&raw, &mut settings).map_err(|error| problems.found.push(error)).ok();
    validate(&mut problems, &settings);
    if let Some(secrets) = &secrets {
        validate_return_path(&mut problems, &settings, secrets);
        validate_webhooks(&mut problems, &settings.feedback, secrets);
        validate_imap(&mut problems, &settings.feedback, secrets);
    }
    problems.finish()?;
    let secrets = secrets.expect("secrets that cannot be read are one of the problems");
    let warnings = readable_secret_files(&settings);
    Ok(Loaded { settings, secrets, warnings })
}

/// The keys a secret must never be given under in a settings file.
const SECRET_KEYS: [(&str, &str); 6] = [
    ("privacy", "address_key"),
    ("smtp", "password"),
    ("unsubscribe", "secret"),
    ("dkim", "private_key"),
    ("feedback", "postmark_password"),
    ("feedback", "imap_password"),
];

/// A secret written into the settings file is refused, even when the
/// environment also sets it (the environment's value would silently win).
fn refuse_secrets_in_file(file: &Path) -> Result<(), ConfigError> {
    let Ok(own) = Config::builder().add_source(File::from(file).format(FileFormat::Toml)).build() else {
        return Ok(()); // a file that does not parse is reported by the layered load
    };
    for (section, leaf) in SECRET_KEYS {
        let key = format!("{section}.{leaf}");
        if own.get::<config::Value>(&key).is_ok() {
            let env_name = format!("{ENV_PREFIX}__{}__{}", section.to_uppercase(), leaf.to_uppercase());
            return Err(ConfigError::Invalid {
                key,
                origin: file.display().to_string(),
                problem: format!("secrets are not read from config files; set {env_name} or `{section}.{leaf}_file`"),
            });
        }
    }
    Ok(())
}

/// Secret files that users other than the owner can read.
fn readable_secret_files(settings: &Settings) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let files = [
        ("smtp.password_file", &settings.smtp.password_file),
        ("unsubscribe.secret_file", &settings.unsubscribe.secret_file),
        ("dkim.private_key_file", &settings.dkim.private_key_file),
        ("feedback.postmark_password_file", &settings.feedback.postmark_password_file),
        ("feedback.imap_password_file", &settings.feedback.imap_password_file),
        ("privacy.address_key_file", &settings.privacy.address_key_file),
        ("ui.credentials_file", &settings.ui.credentials_file),
    ];
    files
        .into_iter()
        .filter(|(_, path)| !path.as_os_str().is_empty())
        .filter_map(|(key, path)| {
            let mode = std::fs::metadata(path).ok()?.permissions().mode();
            (mode & 0o077 != 0).then(|| {
                format!("{key}: {} can be read by other users (mode {:o}); chmod 600 it", path.display(), mode & 0o777)
            })
        })
        .collect()
}

/// The shortest unsubscribe secret accepted: 256 bits, the HMAC-SHA256 key size.
pub const MIN_UNSUBSCRIBE_SECRET_BYTES: usize = 32;

fn layered(file: Option<&Path>) -> Result<Config, ConfigError> {
    let mut builder = Config::builder().add_source(File::from_str(DEFAULTS_TOML, FileFormat::Toml));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::Invalid {
                key: "--config".into(),
                origin: "the command line".into(),
                problem: format!("{} does not exist or is not a file", path.display()),
            });
        }
        builder = builder.add_source(File::from(path).format(FileFormat::Toml));
    }
    let env = Environment::with_prefix(ENV_PREFIX).prefix_separator("__").separator("__").try_parsing(true);
    Ok(builder.add_source(env).build()?)
}

/// Where the value of `key` came from, for error messages. (Values keep their
/// origin only inside tables; `Config::get` would drop it.)
fn origin_of(raw: &Config, key: &str) -> String {
    let (table, leaf) = match key.rsplit_once('.') {
        Some((section, leaf)) => (raw.get_table(section).ok(), leaf),
        None => (raw.collect().ok(), key),
    };
    table
        .and_then(|table| table.get(leaf).and_then(|value| value.origin().map(str::to_owned)))
        .unwrap_or_else(|| DEFAULTS_ORIGIN.to_owned())
}

fn invalid(raw: &Config, key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), origin: origin_of(raw, key), problem: problem.into() }
}

fn take_secrets(raw: &Config, settings: &mut Settings) -> Result<Secrets, ConfigError> {
    let smtp_password = secret_from(raw, "smtp.password", settings.smtp.password.take(), &settings.smtp.password_file)?;
    let unsubscribe_secret =
        secret_from(raw, "unsubscribe.secret", settings.unsubscribe.secret.take(), &settings.unsubscribe.secret_file)?;
    if let Some(secret) = &unsubscribe_secret
        && secret.expose_secret().len() < MIN_UNSUBSCRIBE_SECRET_BYTES
    {
        let key = if settings.unsubscribe.secret_file.as_os_str().is_empty() {
            "unsubscribe.secret"
        } else {
            "unsubscribe.secret_file"
        };
        return Err(invalid(
            raw,
            key,
            format!(
                "the unsubscribe secret must be at least {MIN_UNSUBSCRIBE_SECRET_BYTES} bytes long \
                 (`openssl rand -hex 32` makes one)"
            ),
        ));
    }
    let postmark_password = secret_from(
        raw,
        "feedback.postmark_password",
        settings.feedback.postmark_password.take(),
        &settings.feedback.postmark_password_file,
    )?;
    let imap_password = secret_from(
        raw,
        "feedback.imap_password",
        settings.feedback.imap_password.take(),
        &settings.feedback.imap_password_file,
    )?;
    let address_key = secret_from(
        raw,
        "privacy.address_key",
        settings.privacy.address_key.take(),
        &settings.privacy.address_key_file,
    )?;
    let dkim = dkim_signer(raw, &mut settings.dkim)?;
    Ok(Secrets { smtp_password, unsubscribe_secret, dkim, postmark_password, imap_password, address_key })
}

/// The DKIM signer when `dkim.selector` is set. The key is read and checked
/// here, so that a bad one stops patron at start rather than every message.
fn dkim_signer(raw: &Config, settings: &mut DkimSettings) -> Result<Option<Arc<Dkim>>, ConfigError> {
    let inline = settings.private_key.take();
    let algorithm = dkim::Algorithm::parse(&settings.algorithm)
        .ok_or_else(|| invalid(raw, "dkim.algorithm", "expected `rsa-sha256` or `ed25519-sha256`"))?;
    if settings.selector.is_empty() {
        return Ok(None);
    }
    if !dkim::is_dns_name(&settings.selector) {
        return Err(invalid(raw, "dkim.selector", "expected a DNS label such as `mail2026`"));
    }
    if !dkim::is_dns_name(&settings.domain) {
        return Err(invalid(raw, "dkim.domain", "expected the signing domain, such as shop.example.com"));
    }
    let file = &settings.private_key_file;
    let key = secret_from(raw, "dkim.private_key", inline, file)?.ok_or_else(|| {
        invalid(
            raw,
            "dkim.private_key_file",
            "dkim.selector is set but there is no key: set `dkim.private_key_file` or PATRON__DKIM__PRIVATE_KEY",
        )
    })?;
    let (key_name, source) = if file.as_os_str().is_empty() {
        ("dkim.private_key", "PATRON__DKIM__PRIVATE_KEY".to_owned())
    } else {
        ("dkim.private_key_file", file.display().to_string())
    };
    let signer = Dkim::new(&settings.selector, &settings.domain, algorithm, key.expose_secret())
        .map_err(|problem| invalid(raw, key_name, format!("{source}: {problem}")))?;
    Ok(Some(Arc::new(signer)))
}

/// A secret from the environment (`key`) or from the file named by `file_key`, never both.
/// The secret `key` (`section.leaf`), given in the environment or in the
/// file named by `key_file`, not both.
fn secret_from(
    raw: &Config,
    key: &str,
    inline: Option<SecretString>,
    file: &Path,
) -> Result<Option<SecretString>, ConfigError> {
    let file_key = &format!("{key}_file");
    let env_name = format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase());
    if inline.is_some() && origin_of(raw, key) != "the environment" {
        return Err(invalid(
            raw,
            key,
            format!("secrets are not read from config files; set {env_name} or `{file_key}`"),
        ));
    }
    let from_file = !file.as_os_str().is_empty();
    match (inline, from_file) {
        (Some(_), true) => Err(invalid(raw, file_key, format!("give either {env_name} or `{file_key}`, not both"))),
        (Some(secret), false) => Ok(Some(secret)),
        (None, true) => read_secret_file(raw, file_key, file).map(Some),
        (None, false) => Ok(None),
    }
}

fn read_secret_file(raw: &Config, file_key: &str, file: &Path) -> Result<SecretString, ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| invalid(raw, file_key, format!("cannot read {}: {e}", file.display())))?;
    let trimmed = text.trim_end_matches(['\r', '\n']);
    if trimmed.is_empty() {
        return Err(invalid(raw, file_key, format!("{} is empty", file.display())));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

fn validate(problems: &mut Problems, settings: &Settings) {
    let url = settings.database.url.as_str();
    let known_scheme = ["sqlite:", "postgres://", "postgresql://"].iter().any(|s| url.starts_with(s));
    if !url.is_empty() && !known_scheme {
        problems
            .add("database.url", "expected an sqlite:// or postgres:// URL, or empty for the SQLite file in data_dir");
    }
    if settings.database.max_connections == 0 {
        problems.add("database.max_connections", "must be at least 1");
    }
    if !(1..=3000).contains(&settings.import.batch_size) {
        problems.add("import.batch_size", "must be between 1 and 3000");
    }
    problems.value("log.level", &settings.log.level);
    problems.value("log.format", &settings.log.format);
    validate_campaigns(problems, &settings.campaigns);
    validate_delivery(problems, settings);
    validate_daemon(problems, &settings.daemon);
    validate_loyalty(problems, &settings.loyalty);
    validate_report(problems, &settings.report);
    validate_lifetime_value(problems, &settings.lifetime_value);
    validate_feedback(problems, &settings.feedback);
    validate_subscriptions(problems, &settings.subscriptions);
    validate_privacy(problems, &settings.privacy);
    validate_feeds(problems, &settings.feeds);
    if settings.import.max_reported_errors == 0 {
        problems.add("import.max_reported_errors", "must be at least 1");
    }
    for (key, path) in [
        ("data_dir", &settings.data_dir),
        ("campaigns_dir", &settings.campaigns_dir),
        ("models_dir", &settings.models_dir),
    ] {
        if path.as_os_str().is_empty() {
            problems.add(key, "must not be empty");
        }
    }
}

fn validate_feeds(problems: &mut Problems, feeds: &[FeedSettings]) {
    for (index, problem) in feeds::name_problems(feeds) {
        problems.add(&format!("feeds[{index}].name"), problem);
    }
    for (index, feed) in feeds.iter().enumerate() {
        for (key, problem) in feed.problems() {
            problems.add(&format!("feeds[{index}].{key}"), format!("feed `{}`: {problem}", feed.name));
        }
    }
}

fn validate_campaigns(problems: &mut Problems, campaigns: &CampaignSettings) {
    if !(0.0..=0.5).contains(&campaigns.default_holdout) {
        problems.add("campaigns.default_holdout", "must be between 0 and 0.5");
    }
    problems.value("campaigns.frequency_window", &campaigns.frequency_window);
    problems.value("campaigns.grace_period", &campaigns.grace_period);
    if let Some(Some(age)) = problems.value("campaigns.max_data_age", &campaigns.max_data_age)
        && age.is_zero()
    {
        problems.add("campaigns.max_data_age", "must be longer than 0s; leave it empty for no guard");
    }
}

fn validate_loyalty(problems: &mut Problems, loyalty: &LoyaltySettings) {
    if !(loyalty.points_per_unit.is_finite() && loyalty.points_per_unit >= 0.0) {
        problems.add("loyalty.points_per_unit", "must be a number of 0 or more");
    }
    if let Some((category, _)) = loyalty.category_multipliers.iter().find(|(_, m)| !(m.is_finite() && **m >= 0.0)) {
        problems.add("loyalty.category_multipliers", format!("`{category}` needs a multiplier of 0 or more"));
    }
    for (key, bonus) in
        [("loyalty.welcome_bonus", loyalty.welcome_bonus), ("loyalty.birthday_bonus", loyalty.birthday_bonus)]
    {
        if bonus < 0 {
            problems.add(key, "must be 0 or more points");
        }
    }
    if !["spend", "points"].contains(&loyalty.tier_basis.as_str()) {
        problems.add("loyalty.tier_basis", "expected `spend` or `points`");
    }
    validate_tiers(problems, &loyalty.tiers);
    problems.value("loyalty.downgrade_grace", &loyalty.downgrade_grace);
}

fn validate_tiers(problems: &mut Problems, texts: &[String]) {
    let mut tiers = Vec::new();
    for text in texts {
        match parse_tier(text) {
            Ok(tier) => tiers.push(tier),
            Err(problem) => return problems.add("loyalty.tiers", problem),
        }
    }
    if tiers.first().is_none_or(|t| t.1 != 0.0) {
        problems.add("loyalty.tiers", "the first tier must have threshold 0, such as \"member:0\"");
    }
    if tiers.windows(2).any(|pair| pair[1].1 <= pair[0].1) {
        problems.add("loyalty.tiers", "thresholds must rise from one tier to the next");
    }
}

fn validate_daemon(problems: &mut Problems, daemon: &DaemonSettings) {
    problems.value("daemon.score_schedule", &daemon.score_schedule);
    problems.value("daemon.train_schedule", &daemon.train_schedule);
    problems.value("daemon.loyalty_schedule", &daemon.loyalty_schedule);
    problems.value("daemon.retention_schedule", &daemon.retention_schedule);
    problems.value("daemon.max_score_age", &daemon.max_score_age);
    problems.positive("daemon.send_interval", &daemon.send_interval);
    problems.value("daemon.stop_timeout", &daemon.stop_timeout);
    problems.positive("daemon.work_lease", &daemon.work_lease);
}

fn validate_delivery(problems: &mut Problems, settings: &Settings) {
    let delivery = &settings.delivery;
    let transport = problems.value("delivery.transport", &delivery.transport).copied();
    if !(1..=256).contains(&delivery.concurrency) {
        problems.add("delivery.concurrency", "must be between 1 and 256");
    }
    if delivery.max_attempts == 0 {
        problems.add("delivery.max_attempts", "must be at least 1");
    }
    if settings.smtp.port == 0 {
        problems.add("smtp.port", "must be a port number from 1 to 65535");
    }
    problems.positive("delivery.retry_after", &delivery.retry_after);
    problems.positive("delivery.retry_max", &delivery.retry_max);
    problems.positive("delivery.lease", &delivery.lease);
    problems.positive("smtp.timeout", &settings.smtp.timeout);
    if let (Ok(after), Ok(max)) = (delivery.retry_after.parsed(), delivery.retry_max.parsed())
        && max < after
    {
        problems.add("delivery.retry_max", format!("must be at least delivery.retry_after ({})", delivery.retry_after));
    }
    if let (Some(TransportKind::Smtp), Ok(timeout), Ok(lease)) =
        (transport, settings.smtp.timeout.parsed(), delivery.lease.parsed())
    {
        let needed = *timeout * delivery.concurrency as i32;
        if *lease < needed {
            let problem = format!(
                "must be at least delivery.concurrency x smtp.timeout ({} x {} = {}s), so that no message \
                 waits in a sender longer than its lease",
                delivery.concurrency,
                settings.smtp.timeout,
                needed.num_seconds()
            );
            problems.add("delivery.lease", problem);
        }
    }
    if delivery.message_id_domain.is_empty() || delivery.message_id_domain.contains(['<', '>', '@', ' ']) {
        problems.add("delivery.message_id_domain", "must be a domain name such as mail.example.com");
    }
    problems.value("smtp.tls", &settings.smtp.tls);
    if transport == Some(TransportKind::Smtp) && settings.smtp.host.is_empty() {
        problems.add("smtp.host", "must be set when delivery.transport is `smtp`");
    }
    validate_http(problems, &settings.http);
    let mailto = &settings.unsubscribe.mailto;
    if !mailto.is_empty() && mailto.parse::<email_address::EmailAddress>().is_err() {
        problems.add("unsubscribe.mailto", "expected an email address");
    }
}

fn validate_http(problems: &mut Problems, http: &HttpSettings) {
    if http.listen.parse::<std::net::SocketAddr>().is_err() {
        problems.add("http.listen", "expected an address and port such as 127.0.0.1:8025");
    }
    match url::Url::parse(&http.public_url) {
        Ok(url) if ["http", "https"].contains(&url.scheme()) && url.query().is_none() => {}
        _ => problems.add("http.public_url", "expected an http(s) URL such as https://mail.example.com"),
    }
    if http.max_connections == 0 {
        problems.add("http.max_connections", "must be at least 1");
    }
    problems.positive("http.header_timeout", &http.header_timeout);
}

/// The settings read once, when the daemon starts: a reload that changes one
/// of them cannot apply it, and says so.
const READ_AT_START: [&str; 12] = [
    "database.max_connections",
    "database.busy_timeout_ms",
    "http.listen",
    "http.max_connections",
    "http.header_timeout",
    "log.level",
    "log.format",
    "feedback.ses_topic_arn",
    "feedback.ses_certificate_file",
    "feedback.postmark_user",
    "feedback.postmark_password_file",
    "feedback.sendgrid_public_key",
];

impl Settings {
    /// The keys whose new value in `new` takes effect only after a restart
    /// of the daemon (`database.url` stands for the database in effect).
    pub fn changed_keys_needing_restart(&self, new: &Settings) -> Vec<&'static str> {
        let (old_values, new_values) = (toml::Value::try_from(self).ok(), toml::Value::try_from(new).ok());
        let value = |all: &Option<toml::Value>, key: &str| {
            let (section, leaf) = key.split_once('.').expect("section.key");
            all.as_ref().and_then(|v| v.get(section)).and_then(|v| v.get(leaf)).cloned()
        };
        let mut changed: Vec<&'static str> =
            READ_AT_START.into_iter().filter(|key| value(&old_values, key) != value(&new_values, key)).collect();
        if self.database_url() != new.database_url() {
            changed.insert(0, "database.url");
        }
        changed
    }

    /// The database URL in effect: the configured one, or the SQLite file in `data_dir`.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("patron.db").display())
        } else {
            self.database.url.clone()
        }
    }

    /// The settings as TOML, with any password in the database URL masked.
    pub fn to_display_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database.url = mask_url_password(&self.database.url);
        // Plain structs of strings, numbers and paths always serialize.
        toml::to_string(&shown).unwrap_or_default()
    }
}

/// Replaces the password of a URL with `***`, so that a URL can be shown or logged.
pub fn mask_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => raw.to_owned(),
    }
}

impl crate::failure::Failure for ConfigError {
    /// A setting that cannot be used.
    fn fault(&self) -> crate::failure::Fault {
        crate::failure::Fault::Input
    }
}
