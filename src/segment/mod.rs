//! Segment expressions: the filter language marketers write in campaign files.
//!
//! [`parse`] turns text such as `recency_days > 180 and frequency >= 2` into an
//! [`Expr`] and checks it against the fields the caller knows about.

use std::fmt;

pub mod compile;
mod dependencies;
#[cfg(test)]
mod error_tests;
#[cfg(test)]
mod fuzz_tests;
mod lexer;
mod parser;
pub mod source;
#[cfg(test)]
mod tests;
mod validate;

pub use dependencies::Dependencies;
pub use parser::MAX_DEPTH;
pub(crate) use validate::unknown_field;

/// Longest expression text accepted, in bytes.
pub const MAX_LEN: usize = 10_000;

/// The type of a known field, which decides which literals it may be compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Number,
    Days,
    Text,
    Date,
    Bool,
}

/// What the caller allows: name → type.
///
/// `attributes.*` is always allowed and accepts strings or numbers.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub known: &'a [(&'a str, FieldType)],
    /// The subscription topics `subscribed("...")` may name.
    pub topics: &'a [String],
    /// The campaigns the message-history functions (`received("...")`) may name.
    pub campaigns: &'a [String],
}

/// Byte offsets into the expression text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// A literal value. Durations are stored as [`Value::Days`], weeks converted to days.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Text(String),
    Bool(bool),
    Date(chrono::NaiveDate),
    Days(f64),
}

/// The left-hand side of a predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Named(String),
    /// `attributes.NAME`; holds `NAME`.
    Attribute(String),
    /// `days_since_received("campaign")`: days since the campaign's last
    /// message was sent to the customer (null if it never was).
    DaysSinceReceived(String),
}

/// A test on a customer's history with one campaign, the steps of a sequence
/// (`received("welcome")`, `not ordered_since_received("welcome")`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum History {
    /// A message of the campaign was sent to them, ever or within the last `within` days.
    Received { within: Option<f64> },
    /// They ordered after the campaign's last message to them was sent.
    OrderedSinceReceived,
    /// They ordered within the report's attribution window after a message of the campaign.
    Converted,
    /// They were in a run's control group of the campaign (recorded, sent nothing).
    InControlGroup,
}

impl History {
    /// The function's name in an expression.
    pub fn name(self) -> &'static str {
        match self {
            History::Received { .. } => "received",
            History::OrderedSinceReceived => "ordered_since_received",
            History::Converted => "converted",
            History::InControlGroup => "in_control_group",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        field: Field,
        op: CompareOp,
        value: Value,
        span: Span,
    },
    Between {
        field: Field,
        low: Value,
        high: Value,
        span: Span,
    },
    In {
        field: Field,
        values: Vec<Value>,
        negated: bool,
        span: Span,
    },
    IsNull {
        field: Field,
        negated: bool,
        span: Span,
    },
    /// `subscribed("offers")`: marketing consent, and the topic not left.
    Subscribed {
        topic: String,
        span: Span,
    },
    /// `received("welcome")` and the other tests on a campaign's history.
    History {
        test: History,
        campaign: String,
        span: Span,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A located problem; `line` and `column` are 1-based, `column` counts chars.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    pub offset: usize,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ParseError {
    /// Builds an error at byte `offset` of `text`, computing line and column.
    pub(crate) fn at(text: &str, offset: usize, message: String) -> Self {
        let (line, column) = line_column(text, offset);
        ParseError { offset, line, column, message }
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`; used
/// for every position patron reports (expressions, campaign files, templates).
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Named(name) => f.write_str(name),
            Field::Attribute(name) => write!(f, "attributes.{name}"),
            Field::DaysSinceReceived(campaign) => write!(f, "days_since_received({})", Value::Text(campaign.clone())),
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        })
    }
}

/// Renders a value the way it would be written in an expression.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(n) => write!(f, "{n}"),
            Value::Text(s) => write!(f, "\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            Value::Days(d) => write!(f, "{d}d"),
        }
    }
}

/// Parses `text` and validates it against `fields`.
///
/// A syntax error stops parsing and is returned alone; validation errors
/// (unknown fields, type mismatches, empty ranges) are all reported.
pub fn parse(text: &str, fields: &Fields) -> Result<Expr, Vec<ParseError>> {
    if text.len() > MAX_LEN {
        let message = format!("expression is too long ({} bytes; the limit is {MAX_LEN})", text.len());
        return Err(vec![ParseError::at(text, 0, message)]);
    }
    let tokens = lexer::tokenize(text).map_err(|e| vec![e])?;
    let expr = parser::parse_tokens(text, &tokens).map_err(|e| vec![e])?;
    let errors = validate::check(text, &expr, fields);
    if errors.is_empty() { Ok(expr) } else { Err(errors) }
}
