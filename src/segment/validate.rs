//! Validation: checks a parsed [`Expr`] against the caller's known fields and types.

use std::cmp::Ordering;

use super::{CompareOp, Expr, Field, FieldType, Fields, ParseError, Span, Value};

/// What a field resolved to.
#[derive(Clone, Copy)]
enum Target {
    Typed(FieldType),
    /// `attributes.*`: strings or numbers.
    Attribute,
}

impl Target {
    fn accepts(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (Target::Typed(FieldType::Number), Value::Number(_))
                | (Target::Typed(FieldType::Days), Value::Number(_) | Value::Days(_))
                | (Target::Typed(FieldType::Text), Value::Text(_))
                | (Target::Typed(FieldType::Date), Value::Date(_))
                | (Target::Typed(FieldType::Bool), Value::Bool(_))
                | (Target::Attribute, Value::Number(_) | Value::Text(_))
        )
    }

    /// What the field is, and what it should be compared with.
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Target::Typed(FieldType::Number) => ("is a number", "a number such as 3"),
            Target::Typed(FieldType::Days) => ("is a number of days", "a number or a duration such as 30d"),
            Target::Typed(FieldType::Text) => ("is text", "a string such as \"north\""),
            Target::Typed(FieldType::Date) => ("is a date", "a date such as 2026-01-31"),
            Target::Typed(FieldType::Bool) => ("is true or false", "true or false"),
            Target::Attribute => ("is an attribute", "a string or a number"),
        }
    }

    /// Whether `<`, `>` and `between` make sense for this field and value.
    fn orderable(self, value: &Value) -> bool {
        match self {
            Target::Typed(FieldType::Text | FieldType::Bool) => false,
            Target::Attribute => !matches!(value, Value::Text(_)),
            Target::Typed(_) => true,
        }
    }
}

/// Returns every validation problem in `expr`, in source order.
pub(crate) fn check(text: &str, expr: &Expr, fields: &Fields) -> Vec<ParseError> {
    let mut errors = Vec::new();
    // An explicit stack: long `and`/`or` chains make deep trees.
    let mut pending = vec![expr];
    while let Some(node) = pending.pop() {
        let problem = match node {
            Expr::And(left, right) | Expr::Or(left, right) => {
                pending.extend([right.as_ref(), left.as_ref()]);
                None
            }
            Expr::Not(inner) => {
                pending.push(inner);
                None
            }
            Expr::Compare { field, op, value, span } => {
                check_predicate(fields, field, *span, |t| check_compare(t, field, *op, value))
            }
            Expr::Between { field, low, high, span } => {
                check_predicate(fields, field, *span, |t| check_between(t, field, low, high))
            }
            Expr::In { field, values, negated, span } => {
                check_predicate(fields, field, *span, |t| check_in(t, field, values, *negated))
            }
            Expr::IsNull { field, span, .. } => check_predicate(fields, field, *span, |_| None),
            Expr::Subscribed { topic, span } => check_topic(fields, topic, *span),
            Expr::History { campaign, span, .. } => check_campaign(fields, campaign, *span),
        };
        if let Some((offset, message)) = problem {
            errors.push(ParseError::at(text, offset, message));
        }
    }
    errors
}

fn check_topic(fields: &Fields, topic: &str, span: Span) -> Option<(usize, String)> {
    if fields.topics.iter().any(|known| known == topic) {
        return None;
    }
    let known: Vec<String> = fields.topics.iter().map(|t| format!("`{t}`")).collect();
    Some((span.start, format!("unknown topic `{topic}`; the topics ([subscriptions] topics) are {}", known.join(", "))))
}

/// A campaign named by a history function must be one of the campaign files.
fn check_campaign(fields: &Fields, campaign: &str, span: Span) -> Option<(usize, String)> {
    if fields.campaigns.iter().any(|known| known == campaign) {
        return None;
    }
    let names = fields.campaigns.iter().map(String::as_str);
    let message = match closest(campaign, names.clone()) {
        Some(known) => format!("unknown campaign `{campaign}`; did you mean `{known}`?"),
        None if fields.campaigns.is_empty() => format!("unknown campaign `{campaign}`; there are no campaign files"),
        None => {
            let known: Vec<String> = names.map(|n| format!("`{n}`")).collect();
            format!("unknown campaign `{campaign}`; the campaigns are {}", known.join(", "))
        }
    };
    Some((span.start, message))
}

/// Resolves the field, then runs `check` on its type; returns an offset and message.
fn check_predicate(
    fields: &Fields,
    field: &Field,
    span: Span,
    check: impl FnOnce(Target) -> Option<String>,
) -> Option<(usize, String)> {
    let target = match field {
        Field::Attribute(_) => Target::Attribute,
        Field::DaysSinceReceived(campaign) => match check_campaign(fields, campaign, span) {
            Some(problem) => return Some(problem),
            None => Target::Typed(FieldType::Days),
        },
        Field::Named(name) => match fields.known.iter().find(|(known, _)| known == name) {
            Some((_, field_type)) => Target::Typed(*field_type),
            None => return Some((span.start, unknown_field(name, fields))),
        },
    };
    check(target).map(|message| (span.start, message))
}

pub(crate) fn unknown_field(name: &str, fields: &Fields) -> String {
    if let Some(known) = suggestion(name, fields) {
        return format!("unknown field `{name}`; did you mean `{known}`?");
    }
    if fields.known.is_empty() {
        return format!("unknown field `{name}`; no fields are available");
    }
    let names: Vec<String> = fields.known.iter().take(8).map(|(k, _)| format!("`{k}`")).collect();
    let more = if fields.known.len() > 8 { ", ..." } else { "" };
    format!("unknown field `{name}`; the fields are {}{more}", names.join(", "))
}

fn suggestion<'a>(name: &str, fields: &Fields<'a>) -> Option<&'a str> {
    closest(name, fields.known.iter().map(|(known, _)| *known))
}

/// The closest of `names`: within two edits, else the most similar if similar enough.
fn closest<'a>(name: &str, names: impl Iterator<Item = &'a str> + Clone) -> Option<&'a str> {
    let names = || names.clone();
    let by_edits = names()
        .map(|known| (known, strsim::damerau_levenshtein(name, known)))
        .min_by_key(|(_, distance)| *distance)
        .filter(|(_, distance)| *distance <= 2);
    let by_similarity = || {
        names()
            .map(|known| (known, strsim::jaro_winkler(name, known)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .filter(|(_, similarity)| *similarity >= 0.8)
    };
    by_edits.map(|(known, _)| known).or_else(|| by_similarity().map(|(known, _)| known))
}

fn mismatch(target: Target, field: &Field, value: &Value) -> Option<String> {
    if target.accepts(value) {
        return None;
    }
    let (is, expected) = target.describe();
    Some(format!("{field} {is}; compare it with {expected}, not {value}"))
}

fn not_orderable(target: Target, field: &Field, what: &str, value: &Value) -> Option<String> {
    if target.orderable(value) {
        return None;
    }
    let (is, _) = target.describe();
    let instead = match target {
        Target::Typed(FieldType::Bool) => "`=` or `!=`",
        _ => "`=`, `!=` or `in`",
    };
    Some(format!("{what} cannot be used on {field}, which {is} (here compared with {value}); use {instead}"))
}

fn check_compare(target: Target, field: &Field, op: CompareOp, value: &Value) -> Option<String> {
    mismatch(target, field, value).or_else(|| match op {
        CompareOp::Eq | CompareOp::Ne => None,
        _ => not_orderable(target, field, &format!("`{op}`"), value),
    })
}

fn check_between(target: Target, field: &Field, low: &Value, high: &Value) -> Option<String> {
    mismatch(target, field, low)
        .or_else(|| mismatch(target, field, high))
        .or_else(|| not_orderable(target, field, "`between`", low))
        .or_else(|| {
            (compare_values(low, high) == Some(Ordering::Greater)).then(|| {
                format!("empty range: `{field} between {low} and {high}` has its low bound above its high bound; write `between {high} and {low}`")
            })
        })
}

fn check_in(target: Target, field: &Field, values: &[Value], negated: bool) -> Option<String> {
    if let Some(problem) = values.iter().find_map(|v| mismatch(target, field, v)) {
        return Some(problem);
    }
    if let Some(first) = values.first() {
        let first_kind = std::mem::discriminant(first);
        if let Some(odd) = values.iter().find(|v| std::mem::discriminant(*v) != first_kind) {
            return Some(format!("a list must hold one type of value, but it mixes {first} and {odd}"));
        }
    }
    match target {
        Target::Typed(FieldType::Bool) => {
            let keyword = if negated { "not in" } else { "in" };
            Some(format!("`{keyword}` cannot be used on {field}, which is true or false; use `=` or `!=`"))
        }
        _ => None,
    }
}

/// Orders two bound values of compatible kinds; days and plain numbers mix.
fn compare_values(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x) | Value::Days(x), Value::Number(y) | Value::Days(y)) => x.partial_cmp(y),
        (Value::Date(x), Value::Date(y)) => Some(x.cmp(y)),
        _ => None,
    }
}
