//! Campaign files: TOML in, a checked [`Campaign`] out, or every problem as
//! `file:line:col: message`.
//!
//! The file is first read into `Raw*` structs that keep each value's position
//! (unknown keys are errors there); then every value is checked in meaning:
//! the segment expression, the schedule and time zone, the addresses and the
//! templates. All problems are collected, not just the first.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono::Duration;
use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use crate::message::{Part, TemplateError, Templates, well_formed};
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
    pub audience: Audience,
    pub message: Message,
    pub variants: Vec<Variant>,
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
}

impl Message {
    /// Compiles the templates; they were checked when the file was loaded.
    pub fn templates(&self) -> Result<Templates, Vec<crate::message::TemplateError>> {
        Templates::compile(&self.parts)
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
    audience: RawAudience,
    message: RawMessage,
    #[serde(default)]
    variant: Vec<RawVariant>,
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
    let mut checker = Checker { file: path, text, topics, diagnostics: Vec::new() };
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
        let audience = self.audience(&raw.audience);
        let message = self.message(&raw.message);
        let variants = self.variants(&raw.variant, message.as_ref());
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
            audience: audience?,
            message: message?,
            variants: variants?,
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

    fn audience(&mut self, raw: &RawAudience) -> Option<Audience> {
        let known = compile::known_fields();
        let fields = Fields { known: &known, topics: self.topics };
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
        Some(Message { from: from?, reply_to: reply_to.map_or(Some(None), |r| r.map(Some))?, parts: parts? })
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
            let (Some(base), Some(overrides)) = (base, overrides) else {
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
    /// (see [`is_file_name`]) or the template itself.
    fn parts<const N: usize>(&mut self, parts: [(Part, Option<&Spanned<String>>); N]) -> Option<Vec<(Part, String)>> {
        let mut sources = Vec::new();
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
            let part_source = [(part, source.clone())];
            // A template over the render limits with sample data, so for most customers, is refused now.
            let errors = match Templates::compile(&part_source) {
                Ok(templates) => {
                    [templates.check_limits(&part_source), bulk_mail_rules(part, &source, &templates)].concat()
                }
                Err(errors) => errors,
            };
            if !errors.is_empty() {
                ok = false;
                for error in errors {
                    let message = format!("{} template: {}", part.key(), error.message);
                    match &file {
                        Some(file) => self.diagnostics.push(Diagnostic {
                            file: file.clone(),
                            line: error.line,
                            column: error.column,
                            message,
                        }),
                        None => self.inside(value, error.offset, message),
                    }
                }
            }
            sources.push((part, source));
        }
        ok.then_some(sources)
    }

    fn template_file(&mut self, value: &Spanned<String>) -> Option<(String, Option<PathBuf>)> {
        let folder = self.file.parent().unwrap_or(Path::new("."));
        let path = folder.join(value.get_ref());
        match std::fs::read_to_string(&path) {
            Ok(source) => Some((source, Some(path))),
            Err(e) => {
                self.at(value.span(), format!("cannot read template file {}: {e}", path.display()));
                None
            }
        }
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

/// `addr@example.com` or `Display Name <addr@example.com>`, on one line.
/// What bulk mail must be: every body part carries the unsubscribe link
/// (every campaign is marketing or loyalty mail), and HTML is well-formed.
fn bulk_mail_rules(part: Part, source: &str, templates: &Templates) -> Vec<TemplateError> {
    let mut errors = Vec::new();
    let mut found = |offset: usize, message: String| {
        let (line, column) = line_column(source, offset);
        errors.push(TemplateError { part, offset, line, column, message });
    };
    if part != Part::Subject && !templates.uses(part, "unsubscribe_url") {
        found(0, "no unsubscribe link: bulk mail must carry one; add {{ unsubscribe_url }}, in the footer say".into());
    }
    if part == Part::Html
        && let Some((line, message)) = well_formed::first_problem(source)
    {
        let offset = source.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
        found(offset, message);
    }
    errors
}

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
