//! Campaign files: TOML in, a checked [`Campaign`] out, or every problem as
//! `file:line:col: message`.
//!
//! The file is first read into `Raw*` structs that keep each value's position
//! (unknown keys are errors there); then every value is checked in meaning:
//! the segment expression, the schedule and time zone, the send window and
//! expiry, the addresses and the templates. All problems are collected, not just the first.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono::Duration;
use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use super::window::{SendWindow, WindowZone};
use crate::message::library::{self, Folder};
use crate::message::{Library, Part, TemplateError, Templates, limits, well_formed};
use crate::schedule::{Schedule, parse_timezone};
use crate::segment::{self, Expr, FieldType, Fields, compile, line_column};

/// A problem at a place in a file; `line` and `column` are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Offers: need marketing consent, skip customers with an open complaint,
    /// and count against the frequency cap.
    Marketing,
    /// Loyalty-programme mail: honours unsubscribes and cooldowns, not the cap.
    Loyalty,
}

impl Kind {
    /// The subscription topic of a campaign file that names none.
    pub fn default_topic(self) -> &'static str {
        match self {
            Kind::Marketing => "offers",
            Kind::Loyalty => "loyalty",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Marketing => "marketing",
            Kind::Loyalty => "loyalty",
        }
    }
}

/// A checked campaign, ready to schedule and plan.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub name: String,
    pub file: PathBuf,
    pub description: String,
    pub enabled: bool,
    pub kind: Kind,
    /// The subscription topic: who left it is not in the audience.
    pub topic: String,
    /// Higher goes first when campaigns compete for the frequency cap.
    pub priority: i64,
    /// `None`: the campaign only runs when asked (`patron campaign run`).
    pub schedule: Option<Schedule>,
    pub timezone: Tz,
    /// The hours its messages may go out; `None`: at any hour.
    pub send_window: Option<SendWindow>,
    /// A message not sent this long after the run's fire time is never sent
    /// (state `expired`): birthday and flash-sale mail must not arrive late.
    pub expires_after: Option<Duration>,
    pub audience: Audience,
    pub message: Message,
    pub variants: Vec<Variant>,
    /// The A/B test's rule: send a test share first, then the winner.
    pub winner: Option<WinnerRule>,
}

/// `[winner]`: how the A/B test between the variants concludes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WinnerRule {
    pub metric: Metric,
    /// How long after the campaign's first run the test is judged.
    pub after: Duration,
    /// The confidence the best variant needs over each other one to win
    /// (1 - the largest p-value allowed).
    pub min_confidence: f64,
    /// The share of each run's audience that gets the variants while the
    /// test runs; the rest is held for the winner.
    pub test_share: f64,
}

/// What an A/B test compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// The share of customers who ordered within the attribution window.
    Conversion,
    /// Revenue per customer within the attribution window.
    Revenue,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Conversion => "conversion",
            Metric::Revenue => "revenue",
        }
    }
}

impl Campaign {
    /// What templates know of the campaign.
    pub fn info(&self) -> crate::message::context::CampaignInfo<'_> {
        crate::message::context::CampaignInfo { name: &self.name, description: &self.description }
    }

    /// The message of `variant` (its overrides applied), or the campaign's own.
    pub fn message_for(&self, variant: Option<&str>) -> &Message {
        variant.and_then(|name| self.variants.iter().find(|v| v.name == name)).map_or(&self.message, |v| &v.message)
    }
}

#[derive(Debug, Clone)]
pub struct Audience {
    /// The expression as written.
    pub segment: String,
    pub expr: Expr,
    pub order: Option<Order>,
    pub limit: Option<u64>,
    pub cooldown: Option<Duration>,
    /// `None`: the configured default.
    pub holdout: Option<f64>,
    /// The fat-finger guard: a run that would reach more customers (its
    /// control group included) is refused instead of planned.
    pub max_audience: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub field: String,
    pub descending: bool,
}

/// Sender and templates (the template text itself, files already read).
#[derive(Debug, Clone)]
pub struct Message {
    pub from: String,
    pub reply_to: Option<String>,
    pub parts: Vec<(Part, String)>,
    /// The layouts and partials the parts extend, include or import, read
    /// with the campaign file: nothing is read from disk at send time.
    pub library: Library,
}

impl Message {
    /// Compiles the templates; they were checked when the file was loaded.
    pub fn templates(&self) -> Result<Templates, Vec<crate::message::TemplateError>> {
        Templates::compile(&self.parts, &self.library)
    }
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub share: f64,
    pub message: Message,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampaign {
    name: Option<Spanned<String>>,
    #[serde(default)]
    description: String,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    #[serde(default = "marketing")]
    kind: Kind,
    topic: Option<Spanned<String>>,
    #[serde(default)]
    priority: i64,
    schedule: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    send_window: Option<Spanned<String>>,
    send_window_zone: Option<Spanned<String>>,
    expires_after: Option<Spanned<String>>,
    audience: RawAudience,
    message: RawMessage,
    #[serde(default)]
    variant: Vec<RawVariant>,
    winner: Option<Spanned<RawWinner>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWinner {
    metric: Metric,
    after: Spanned<String>,
    #[serde(default = "default_confidence")]
    min_confidence: Spanned<f64>,
    #[serde(default = "default_test_share")]
    test_share: Spanned<f64>,
}

fn default_confidence() -> Spanned<f64> {
    Spanned::new(0..0, 0.95)
}

fn default_test_share() -> Spanned<f64> {
    Spanned::new(0..0, 0.2)
}

fn enabled_by_default() -> bool {
    true
}

fn marketing() -> Kind {
    Kind::Marketing
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudience {
    #[serde(rename = "where")]
    segment: Spanned<String>,
    order_by: Option<Spanned<String>>,
    limit: Option<Spanned<i64>>,
    cooldown: Option<Spanned<String>>,
    holdout: Option<Spanned<f64>>,
    max_audience: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    from: Spanned<String>,
    reply_to: Option<Spanned<String>>,
    subject: Spanned<String>,
    html: Option<Spanned<String>>,
    text: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: Spanned<String>,
    share: Spanned<f64>,
    from: Option<Spanned<String>>,
    reply_to: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    html: Option<Spanned<String>>,
    text: Option<Spanned<String>>,
}

/// Reads and checks one campaign file.
pub fn load_file(path: &Path, topics: &[String]) -> Result<Campaign, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic { file: path.to_owned(), line: 1, column: 1, message: format!("cannot read the file: {e}") }]
    })?;
    parse(path, &text, topics)
}

/// Checks campaign text as if read from `path`; templates are read relative
/// to the file's folder. `topics` are the configured subscription topics.
pub fn parse(path: &Path, text: &str, topics: &[String]) -> Result<Campaign, Vec<Diagnostic>> {
    let mut checker = Checker { file: path, text, topics, folder: Folder::of(path), diagnostics: Vec::new() };
    let raw: RawCampaign = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(error) => {
            let offset = error.span().map_or(0, |span| span.start);
            checker.at_offset(offset, error.message().trim_end().to_owned());
            return Err(checker.diagnostics);
        }
    };
    let campaign = checker.campaign(raw);
    if checker.diagnostics.is_empty() { Ok(campaign.expect("no problems, so built")) } else { Err(checker.diagnostics) }
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    topics: &'a [String],
    /// The campaigns folder, where template files are read (each once).
    folder: Folder,
    diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn campaign(&mut self, raw: RawCampaign) -> Option<Campaign> {
        let name = self.name(raw.name.as_ref());
        let timezone = match &raw.timezone {
            Some(tz) => self.check(tz.span(), parse_timezone(tz.get_ref())),
            None => Some(chrono_tz::UTC),
        };
        let schedule = match (&raw.schedule, timezone) {
            (Some(schedule), Some(tz)) => {
                self.check(schedule.span(), Schedule::parse(schedule.get_ref(), tz)).map(Some)
            }
            (None, _) => Some(None),
            (Some(_), None) => None,
        };
        let topic = self.topic(raw.topic.as_ref(), raw.kind);
        let send_window = self.send_window(raw.send_window.as_ref(), raw.send_window_zone.as_ref());
        let expires_after = raw.expires_after.as_ref().map(|e| self.expires_after(e));
        let audience = self.audience(&raw.audience, name.as_deref());
        let message = self.message(&raw.message);
        let variants = self.variants(&raw.variant, message.as_ref());
        let winner = raw.winner.as_ref().map(|w| self.winner(w, raw.variant.len()));
        Some(Campaign {
            name: name?,
            file: self.file.to_owned(),
            description: raw.description,
            enabled: raw.enabled,
            kind: raw.kind,
            topic: topic?,
            priority: raw.priority,
            schedule: schedule?,
            timezone: timezone?,
            send_window: send_window?,
            expires_after: expires_after.map_or(Some(None), |e| e.map(Some))?,
            audience: audience?,
            message: message?,
            variants: variants?,
            winner: winner.map_or(Some(None), |w| w.map(Some))?,
        })
    }

    fn name(&mut self, name: Option<&Spanned<String>>) -> Option<String> {
        let (text, span) = match name {
            Some(name) => (name.get_ref().clone(), Some(name.span())),
            None => (self.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(), None),
        };
        let valid = !text.is_empty()
            && text.len() <= 100
            && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if valid {
            return Some(text);
        }
        let message = format!("campaign name `{text}` must be 1 to 100 letters, digits, `-` or `_`");
        match span {
            Some(span) => self.at(span, message),
            None => self.at_offset(0, format!("{message} (it comes from the file name; set `name`)")),
        }
        None
    }

    /// `send_window` read in `send_window_zone` (the campaign's by default);
    /// `Some(None)` without a window, `None` when either key is wrong.
    fn send_window(
        &mut self,
        window: Option<&Spanned<String>>,
        zone: Option<&Spanned<String>>,
    ) -> Option<Option<SendWindow>> {
        let parsed_zone = match zone {
            Some(zone) => self.check(zone.span(), WindowZone::parse(zone.get_ref())),
            None => Some(WindowZone::Campaign),
        };
        let Some(window) = window else {
            if let Some(zone) = zone {
                self.at(zone.span(), "send_window_zone needs a send_window such as `09:00-20:00`".into());
                return None;
            }
            return Some(None);
        };
        let parsed = SendWindow::parse(window.get_ref(), parsed_zone.unwrap_or(WindowZone::Campaign));
        match (self.check(window.span(), parsed), parsed_zone) {
            (Some(window), Some(_)) => Some(Some(window)),
            _ => None,
        }
    }

    /// A positive duration: zero would expire every message at once.
    fn expires_after(&mut self, raw: &Spanned<String>) -> Option<Duration> {
        let checked = crate::duration::parse(raw.get_ref()).and_then(|d| {
            if d > Duration::zero() { Ok(d) } else { Err("expires_after must be longer than 0".to_owned()) }
        });
        self.check(raw.span(), checked)
    }

    /// `[winner]`: needs two variants or more; each value in its range.
    fn winner(&mut self, raw: &Spanned<RawWinner>, variants: usize) -> Option<WinnerRule> {
        let table = raw.get_ref();
        if variants < 2 {
            let message = format!("[winner] needs two [[variant]] tables or more to choose from; there are {variants}");
            self.at(raw.span(), message);
        }
        let after = self.check(
            table.after.span(),
            crate::duration::parse(table.after.get_ref())
                .and_then(|d| if d > Duration::zero() { Ok(d) } else { Err("after must be longer than 0".to_owned()) }),
        );
        let confidence = *table.min_confidence.get_ref();
        let min_confidence = self.check(
            table.min_confidence.span(),
            if (0.5..1.0).contains(&confidence) {
                Ok(confidence)
            } else {
                Err(format!("min_confidence must be at least 0.5 and below 1, such as 0.95; not {confidence}"))
            },
        );
        let share = *table.test_share.get_ref();
        let test_share = self.check(
            table.test_share.span(),
            if share > 0.0 && share <= 1.0 {
                Ok(share)
            } else {
                Err(format!("test_share must be above 0 and at most 1, such as 0.2; not {share}"))
            },
        );
        (variants >= 2).then_some(())?;
        Some(WinnerRule {
            metric: table.metric,
            after: after?,
            min_confidence: min_confidence?,
            test_share: test_share?,
        })
    }

    /// The file's `topic`, else the kind's; one of the configured topics.
    fn topic(&mut self, topic: Option<&Spanned<String>>, kind: Kind) -> Option<String> {
        let name = topic.map_or(kind.default_topic(), |t| t.get_ref().as_str());
        if self.topics.iter().any(|known| known == name) {
            return Some(name.to_owned());
        }
        let known: Vec<String> = self.topics.iter().map(|t| format!("`{t}`")).collect();
        let message = format!("topic `{name}` is not one of the topics in [subscriptions]: {}", known.join(", "));
        match topic {
            Some(topic) => self.at(topic.span(), message),
            None => {
                self.at_offset(0, format!("{message} (it is the default of kind `{}`; set `topic`)", kind.as_str()))
            }
        }
        None
    }

    fn audience(&mut self, raw: &RawAudience, own_name: Option<&str>) -> Option<Audience> {
        let known = compile::known_fields();
        let mut campaigns = campaign_names(self.file.parent().unwrap_or(Path::new(".")));
        campaigns.extend(own_name.filter(|name| !campaigns.iter().any(|known| known == name)).map(str::to_owned));
        let fields = Fields { known: &known, topics: self.topics, campaigns: &campaigns };
        let expr = match segment::parse(raw.segment.get_ref(), &fields) {
            Ok(expr) => Some(expr),
            Err(errors) => {
                for error in errors {
                    self.inside(&raw.segment, error.offset, error.message);
                }
                None
            }
        };
        let order = raw.order_by.as_ref().and_then(|order| {
            let checked = parse_order(order.get_ref(), &fields);
            self.check(order.span(), checked)
        });
        let limit = raw.limit.as_ref().and_then(|limit| self.at_least_one(limit, "limit"));
        let max_audience = raw.max_audience.as_ref().and_then(|max| self.at_least_one(max, "max_audience"));
        let cooldown = raw.cooldown.as_ref().and_then(|c| self.check(c.span(), crate::duration::parse(c.get_ref())));
        let holdout = raw.holdout.as_ref().and_then(|h| {
            let value = *h.get_ref();
            let checked = if (0.0..=0.5).contains(&value) {
                Ok(value)
            } else {
                Err(format!("holdout must be between 0 and 0.5, not {value}"))
            };
            self.check(h.span(), checked)
        });
        let failed = (raw.order_by.is_some() && order.is_none())
            || (raw.limit.is_some() && limit.is_none())
            || (raw.cooldown.is_some() && cooldown.is_none())
            || (raw.holdout.is_some() && holdout.is_none())
            || (raw.max_audience.is_some() && max_audience.is_none());
        if failed {
            return None;
        }
        let segment = raw.segment.get_ref().clone();
        Some(Audience { segment, expr: expr?, order, limit, cooldown, holdout, max_audience })
    }

    /// A whole number of customers, at least one.
    fn at_least_one(&mut self, raw: &Spanned<i64>, key: &str) -> Option<u64> {
        let value = *raw.get_ref();
        let checked =
            u64::try_from(value).ok().filter(|&n| n > 0).ok_or(format!("{key} must be at least 1, not {value}"));
        self.check(raw.span(), checked)
    }

    fn message(&mut self, raw: &RawMessage) -> Option<Message> {
        let from = self.address(&raw.from);
        let reply_to = raw.reply_to.as_ref().map(|r| self.address(r));
        if raw.html.is_none() && raw.text.is_none() {
            self.at(raw.subject.span(), "the message needs `html` or `text` (or both) next to `subject`".into());
            return None;
        }
        let parts = self.parts([
            (Part::Subject, Some(&raw.subject)),
            (Part::Html, raw.html.as_ref()),
            (Part::Text, raw.text.as_ref()),
        ]);
        let (parts, library) = parts?;
        let library = Library::new(library);
        Some(Message { from: from?, reply_to: reply_to.map_or(Some(None), |r| r.map(Some))?, parts, library })
    }

    fn variants(&mut self, raw: &[RawVariant], base: Option<&Message>) -> Option<Vec<Variant>> {
        let mut variants = Vec::new();
        let mut ok = true;
        for (i, variant) in raw.iter().enumerate() {
            let name = variant.name.get_ref();
            if raw[..i].iter().any(|earlier| earlier.name.get_ref() == name) {
                self.at(variant.name.span(), format!("a variant named `{name}` is already defined above"));
                ok = false;
            }
            let share = *variant.share.get_ref();
            if !(share > 0.0 && share <= 1.0) {
                self.at(variant.share.span(), format!("share must be above 0 and at most 1, not {share}"));
                ok = false;
            }
            let from = variant.from.as_ref().map(|f| self.address(f));
            let reply_to = variant.reply_to.as_ref().map(|r| self.address(r));
            let overrides = self.parts([
                (Part::Subject, variant.subject.as_ref()),
                (Part::Html, variant.html.as_ref()),
                (Part::Text, variant.text.as_ref()),
            ]);
            let (Some(base), Some((overrides, library))) = (base, overrides) else {
                ok = false;
                continue;
            };
            // `Some(None)`: given but invalid, and already reported.
            ok &= !matches!(from, Some(None)) && !matches!(reply_to, Some(None));
            let mut message = base.clone();
            if let Some(Some(from)) = from {
                message.from = from;
            }
            if let Some(Some(reply_to)) = reply_to {
                message.reply_to = Some(reply_to);
            }
            for (part, source) in overrides {
                message.parts.retain(|(p, _)| *p != part);
                message.parts.push((part, source));
            }
            // The base's files as well: the parts not overridden still use them.
            if !library.is_empty() {
                let mut merged = (*message.library).clone();
                merged.extend(library);
                message.library = Library::new(merged);
            }
            variants.push(Variant { name: name.clone(), share, message });
        }
        let total: f64 = raw.iter().map(|v| *v.share.get_ref()).sum();
        if let Some(first) = raw.first()
            && (total - 1.0).abs() > 1e-6
        {
            self.at(first.share.span(), format!("the variants' shares must add up to 1; they add up to {total}"));
            ok = false;
        }
        ok.then_some(variants)
    }

    /// Reads and compiles the given template parts; a value is a file name
    /// (see [`is_file_name`]) or the template itself. With the parts come the
    /// layouts and partials they reach (see [`crate::message::library`]),
    /// each checked where it is: in its own file.
    fn parts<const N: usize>(
        &mut self,
        parts: [(Part, Option<&Spanned<String>>); N],
    ) -> Option<(Vec<(Part, String)>, library::Files)> {
        let mut sources = Vec::new();
        let mut library = library::Files::new();
        let mut ok = true;
        for (part, value) in parts {
            let Some(value) = value else { continue };
            let source = if part != Part::Subject && is_file_name(value.get_ref()) {
                self.template_file(value)
            } else {
                Some((value.get_ref().clone(), None))
            };
            let Some((source, file)) = source else {
                ok = false;
                continue;
            };
            let mut errors = self.folder.gather(part, &source, file.as_deref(), &mut library);
            let part_source = [(part, source.clone())];
            // A template over the render limits with sample data, so for most customers, is refused now.
            if errors.is_empty() {
                errors = match Templates::compile(&part_source, &Library::new(library.clone())) {
                    Ok(templates) => {
                        [templates.check_limits(&part_source), bulk_mail_rules(part, &source, &templates)].concat()
                    }
                    Err(errors) => errors,
                };
            }
            if !errors.is_empty() {
                ok = false;
                for error in errors {
                    let message = format!("{} template: {}", part.key(), error.message);
                    // A layout two parts or variants share is reported once.
                    let place = error.file.as_ref().or(file.as_ref()).map(|name| self.folder.path(name));
                    let diagnostic = match place {
                        Some(path) => Diagnostic { file: path, line: error.line, column: error.column, message },
                        None => {
                            self.inside(value, error.offset, message);
                            continue;
                        }
                    };
                    if !self.diagnostics.contains(&diagnostic) {
                        self.diagnostics.push(diagnostic);
                    }
                }
            }
            sources.push((part, source));
        }
        ok.then_some((sources, library))
    }

    /// The text of the template file a part names, and its name in the
    /// campaigns folder: a path relative to that folder that does not leave it.
    fn template_file(&mut self, value: &Spanned<String>) -> Option<(String, Option<String>)> {
        let read = library::normalize(value.get_ref())
            .and_then(|name| self.folder.read(&name).map(|source| (source, Some(name))));
        self.check(value.span(), read)
    }

    fn address(&mut self, value: &Spanned<String>) -> Option<String> {
        let checked = check_mailbox(value.get_ref()).map(|()| value.get_ref().clone());
        self.check(value.span(), checked)
    }

    fn check<T>(&mut self, span: Range<usize>, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.at(span, message)).ok()
    }

    fn at(&mut self, span: Range<usize>, message: String) {
        self.at_offset(span.start, message);
    }

    /// A problem at byte `offset` of the text of a string value.
    fn inside(&mut self, value: &Spanned<String>, offset: usize, message: String) {
        let start = content_offset(self.text, value.span(), offset);
        self.at_offset(start, message);
    }

    fn at_offset(&mut self, offset: usize, message: String) {
        let (line, column) = crate::segment::line_column(self.text, offset);
        self.diagnostics.push(Diagnostic { file: self.file.to_owned(), line, column, message });
    }
}

/// The names of the campaign files in `folder` (their `name`, else the file
/// name), which the message-history functions of a segment may name. A file
/// that does not parse still lends its file name: its own problems are
/// reported on it, not on every segment that names it.
fn campaign_names(folder: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|e| e == "toml"))
        .filter_map(|path| {
            let named = std::fs::read_to_string(&path).ok().and_then(|text| {
                let table: toml::Table = toml::from_str(&text).ok()?;
                table.get("name")?.as_str().map(str::to_owned)
            });
            named.or_else(|| path.file_stem().map(|stem| stem.to_string_lossy().into_owned()))
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A single-line value ending in a template file extension names a file;
/// anything else is the template itself.
fn is_file_name(value: &str) -> bool {
    let extensions = [".html", ".htm", ".txt", ".j2", ".jinja"];
    !value.contains('\n')
        && !value.contains("{{")
        && !value.contains('<')
        && extensions.iter().any(|e| value.ends_with(e))
}

/// `field` or `field asc|desc`: a number or duration field.
fn parse_order(text: &str, fields: &Fields) -> Result<Order, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (field, descending) = match words.as_slice() {
        [field] => (*field, false),
        [field, direction] if direction.eq_ignore_ascii_case("asc") => (*field, false),
        [field, direction] if direction.eq_ignore_ascii_case("desc") => (*field, true),
        _ => {
            return Err(format!("order_by is a field and `asc` or `desc`, such as `propensity desc`; not `{text}`"));
        }
    };
    match fields.known.iter().find(|(name, _)| *name == field) {
        Some((_, FieldType::Number | FieldType::Days)) => Ok(Order { field: field.to_owned(), descending }),
        Some(_) => Err(format!("order_by needs a number or a duration field; `{field}` is not one")),
        None => Err(segment::unknown_field(field, fields)),
    }
}

/// What bulk mail must be: every body part carries the unsubscribe link
/// (every campaign is marketing or loyalty mail), and HTML is well-formed.
/// The link may be in a layout or partial the part uses; it must also be in
/// the part rendered with sample data, so that a block replacing the
/// layout's footer cannot drop it. Each HTML file (the part's own and each
/// layout or partial of the HTML part) is checked on its own text, so that a
/// problem is located in the file where it is.
fn bulk_mail_rules(part: Part, source: &str, templates: &Templates) -> Vec<TemplateError> {
    let mut errors = Vec::new();
    let mut found = |file: Option<&str>, text: &str, offset: usize, message: String| {
        let (line, column) = line_column(text, offset);
        errors.push(TemplateError { part, file: file.map(str::to_owned), offset, line, column, message });
    };
    if part != Part::Subject {
        if !templates.uses(part, "unsubscribe_url") {
            let message = "no unsubscribe link: bulk mail must carry one; add {{ unsubscribe_url }}, in the footer \
                           say (of this template, or of a layout or partial it uses)";
            found(None, source, 0, message.into());
        } else if let Some(Ok(rendered)) = templates.render(part, &limits::sample_variables())
            && !rendered.contains(limits::SAMPLE_UNSUBSCRIBE_URL)
        {
            let message = "no unsubscribe link in the message rendered with sample customer data: does a block \
                           replace the layout's footer, or an `if` leave the link out?";
            found(None, source, 0, message.into());
        }
    }
    if part == Part::Html {
        let files = std::iter::once((None, source)).chain(templates.files(part).map(|(name, text)| (Some(name), text)));
        for (file, text) in files {
            if let Some((line, message)) = well_formed::first_problem(text) {
                let offset = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
                found(file, text, offset, message);
            }
        }
    }
    errors
}

/// `addr@example.com` or `Display Name <addr@example.com>`, on one line.
fn check_mailbox(text: &str) -> Result<(), String> {
    if text.chars().any(char::is_control) {
        return Err("an address must not contain line breaks or control characters".into());
    }
    let address = match text.trim().strip_suffix('>') {
        Some(rest) => rest.rsplit_once('<').map(|(_, address)| address).unwrap_or(rest),
        None => text.trim(),
    };
    if email_address::EmailAddress::is_valid(address) {
        Ok(())
    } else {
        Err(format!("`{text}` is not an address such as `shop@example.com` or `Shop <shop@example.com>`"))
    }
}

/// The byte offset in the file of byte `offset` of a string value's text,
/// allowing for the quotes and for escapes in basic strings.
fn content_offset(file: &str, span: Range<usize>, offset: usize) -> usize {
    let raw = file.get(span.clone()).unwrap_or_default();
    let (open, basic) = if raw.starts_with("\"\"\"") {
        (3, true)
    } else if raw.starts_with("'''") {
        (3, false)
    } else if raw.starts_with('"') {
        (1, true)
    } else if raw.starts_with('\'') {
        (1, false)
    } else {
        return span.start;
    };
    let mut body = &raw[open..];
    let mut start = span.start + open;
    // A newline right after the opening triple quote is not part of the value.
    if open == 3 {
        let skip = if body.starts_with("\r\n") { 2 } else { usize::from(body.starts_with('\n')) };
        body = &body[skip..];
        start += skip;
    }
    if !basic {
        return start + offset;
    }
    let (mut raw_at, mut value_at) = (0, 0);
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        raw_at = i;
        if value_at >= offset {
            break;
        }
        if c != '\\' {
            value_at += c.len_utf8();
            continue;
        }
        let escape_len = match chars.peek().map(|&(_, e)| e) {
            Some('u') => 4,
            Some('U') => 8,
            _ => 0,
        };
        for _ in 0..=escape_len {
            chars.next();
        }
        value_at += if escape_len > 0 { 2 } else { 1 };
        raw_at = chars.peek().map_or(body.len(), |&(j, _)| j);
    }
    start + raw_at
}

#[cfg(test)]
mod tests;
