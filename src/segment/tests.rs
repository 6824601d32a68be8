//! Tests for segment-expression parsing and validation.

use chrono::NaiveDate;

use super::*;

const KNOWN: &[(&str, FieldType)] = &[
    ("recency_days", FieldType::Days),
    ("frequency", FieldType::Number),
    ("complaints_open", FieldType::Number),
    ("propensity_decile", FieldType::Number),
    ("propensity", FieldType::Number),
    ("first_name", FieldType::Text),
    ("loyalty_tier", FieldType::Text),
    ("signed_up_at", FieldType::Date),
    ("opted_in", FieldType::Bool),
    ("a", FieldType::Number),
    ("b", FieldType::Number),
    ("c", FieldType::Number),
];

pub(super) const EXAMPLES: &[&str] = &[
    "recency_days > 180 and frequency >= 2",
    "recency_days between 30d and 90d",
    "not (complaints_open > 0) or propensity_decile in [1, 2, 3]",
    "attributes.region = \"north\" and first_name is not null",
    "signed_up_at < 2026-01-01 and loyalty_tier in [\"gold\", \"silver\"]",
    "propensity >= 0.3",
];

static TOPICS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| vec!["news".into(), "offers".into()]);
static CAMPAIGNS: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| vec!["welcome".into(), "onboarding_2".into()]);

pub(super) fn fields() -> Fields<'static> {
    Fields { known: KNOWN, topics: &TOPICS, campaigns: &CAMPAIGNS }
}

/// `text` parsed against every field segments know (`compile::known_fields`).
pub(super) fn parse_known(text: &str) -> Expr {
    let known = compile::known_fields();
    let fields = Fields { known: &known, topics: &TOPICS, campaigns: &CAMPAIGNS };
    parse(text, &fields).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
}

pub(super) fn ok(text: &str) -> Expr {
    match parse(text, &fields()) {
        Ok(expr) => expr,
        Err(errors) => panic!("{text:?} should parse, got {errors:?}"),
    }
}

pub(super) fn errors(text: &str) -> Vec<ParseError> {
    match parse(text, &fields()) {
        Ok(expr) => panic!("{text:?} should fail, got {expr:?}"),
        Err(errors) => errors,
    }
}

/// The single error for `text`, as `line:column: message`.
pub(super) fn one_error(text: &str) -> String {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors[0].to_string()
}

fn named(name: &str) -> Field {
    Field::Named(name.to_string())
}

fn span(start: usize, end: usize) -> Span {
    Span { start, end }
}

fn cmp(name: &str, op: CompareOp, value: Value, start: usize, end: usize) -> Expr {
    Expr::Compare { field: named(name), op, value, span: span(start, end) }
}

fn and(l: Expr, r: Expr) -> Expr {
    Expr::And(Box::new(l), Box::new(r))
}

fn or(l: Expr, r: Expr) -> Expr {
    Expr::Or(Box::new(l), Box::new(r))
}

#[test]
fn every_example_parses() {
    for example in EXAMPLES {
        ok(example);
    }
}

#[test]
fn a_conjunction_of_comparisons_parses_to_an_and_tree() {
    let expected = and(
        cmp("recency_days", CompareOp::Gt, Value::Number(180.0), 0, 18),
        cmp("frequency", CompareOp::Ge, Value::Number(2.0), 23, 37),
    );
    assert_eq!(ok(EXAMPLES[0]), expected);
}

#[test]
fn between_with_durations_parses_to_days() {
    let expected = Expr::Between {
        field: named("recency_days"),
        low: Value::Days(30.0),
        high: Value::Days(90.0),
        span: span(0, 32),
    };
    assert_eq!(ok(EXAMPLES[1]), expected);
}

#[test]
fn not_and_in_list_parse_to_the_expected_tree() {
    let expected = or(
        Expr::Not(Box::new(cmp("complaints_open", CompareOp::Gt, Value::Number(0.0), 5, 24))),
        Expr::In {
            field: named("propensity_decile"),
            values: vec![Value::Number(1.0), Value::Number(2.0), Value::Number(3.0)],
            negated: false,
            span: span(29, 59),
        },
    );
    assert_eq!(ok(EXAMPLES[2]), expected);
}

#[test]
fn attributes_and_is_not_null_parse() {
    let expected = and(
        Expr::Compare {
            field: Field::Attribute("region".to_string()),
            op: CompareOp::Eq,
            value: Value::Text("north".to_string()),
            span: span(0, 27),
        },
        Expr::IsNull { field: named("first_name"), negated: true, span: span(32, 54) },
    );
    assert_eq!(ok(EXAMPLES[3]), expected);
}

#[test]
fn dates_and_string_lists_parse() {
    let Expr::And(left, right) = ok(EXAMPLES[4]) else { panic!("expected And") };
    let date = NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date");
    assert_eq!(*left, cmp("signed_up_at", CompareOp::Lt, Value::Date(date), 0, 25));
    let Expr::In { values, negated: false, .. } = *right else { panic!("expected In") };
    assert_eq!(values, vec![Value::Text("gold".into()), Value::Text("silver".into())]);
}

#[test]
fn not_binds_tighter_than_and_which_binds_tighter_than_or() {
    let expected = or(
        cmp("a", CompareOp::Eq, Value::Number(1.0), 0, 5),
        and(
            cmp("b", CompareOp::Eq, Value::Number(2.0), 9, 14),
            Expr::Not(Box::new(cmp("c", CompareOp::Eq, Value::Number(3.0), 23, 28))),
        ),
    );
    assert_eq!(ok("a = 1 or b = 2 and not c = 3"), expected);
}

#[test]
fn keywords_are_case_insensitive_and_weeks_become_days() {
    assert!(matches!(ok("NOT a = 1 AND b Is NoT NuLl"), Expr::And(..)));
    let expected = Expr::In {
        field: named("recency_days"),
        values: vec![Value::Days(14.0), Value::Days(21.0)],
        negated: true,
        span: span(0, 29),
    };
    assert_eq!(ok("recency_days NOT IN [2w, 21d]"), expected);
}

#[test]
fn string_escapes_are_decoded() {
    let expr = ok(r#"first_name = "say \"hi\" \\ bye""#);
    let Expr::Compare { value, .. } = expr else { panic!("expected Compare") };
    assert_eq!(value, Value::Text(r#"say "hi" \ bye"#.to_string()));
}

#[test]
fn subscribed_names_a_configured_topic() {
    let text = "subscribed(\"offers\") and not subscribed(\"news\")";
    let expected = Expr::And(
        Box::new(Expr::Subscribed { topic: "offers".into(), span: span(0, 20) }),
        Box::new(Expr::Not(Box::new(Expr::Subscribed { topic: "news".into(), span: span(29, 47) }))),
    );
    assert_eq!(ok(text), expected);

    let errors = parse("frequency > 1 and subscribed(\"ofers\")", &fields()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].column, 19);
    assert!(
        errors[0].message.contains("unknown topic `ofers`") && errors[0].message.contains("`offers`"),
        "{errors:?}"
    );

    let errors = parse("subscribed(offers)", &fields()).unwrap_err();
    assert!(errors[0].message.contains("a topic name in quotes"), "{errors:?}");
}

#[test]
fn history_functions_parse_with_single_or_double_quotes() {
    let text = "days_since_received('welcome') >= 3d and not ordered_since_received(\"welcome\")";
    let expected = and(
        Expr::Compare {
            field: Field::DaysSinceReceived("welcome".into()),
            op: CompareOp::Ge,
            value: Value::Days(3.0),
            span: span(0, 36),
        },
        Expr::Not(Box::new(Expr::History {
            test: History::OrderedSinceReceived,
            campaign: "welcome".into(),
            span: span(45, 78),
        })),
    );
    assert_eq!(ok(text), expected);
    let Expr::History { test, .. } = ok("received('welcome', within = 2w)") else { panic!("expected History") };
    assert_eq!(test, History::Received { within: Some(14.0) });
    assert!(matches!(ok("converted('welcome')"), Expr::History { test: History::Converted, .. }));
    assert!(matches!(ok("in_control_group('onboarding_2')"), Expr::History { test: History::InControlGroup, .. }));
    assert!(matches!(ok("first_name = 'it\\'s'"), Expr::Compare { value: Value::Text(t), .. } if t == "it's"));
}

#[test]
fn history_functions_name_known_campaigns_and_take_their_arguments_only() {
    assert_eq!(one_error("received('welcom')"), "1:1: unknown campaign `welcom`; did you mean `welcome`?");
    assert_eq!(
        one_error("frequency > 1 and converted('zzz')"),
        "1:19: unknown campaign `zzz`; the campaigns are `welcome`, `onboarding_2`"
    );
    assert_eq!(
        one_error("days_since_received('welcome') = 'x'"),
        "1:1: days_since_received(\"welcome\") is a number of days; compare it with a number or a duration such as 30d, not \"x\""
    );
    assert_eq!(
        one_error("converted('welcome', within = 2d)"),
        "1:20: expected `)`: `converted` takes the campaign only, found `,`"
    );
    assert_eq!(
        one_error("received('welcome', within = 0d)"),
        "1:30: expected a duration above zero such as 7d or 2w after `within =`, found `0d`"
    );
    assert_eq!(
        one_error("received(welcome)"),
        "1:10: expected a campaign name in quotes, as in `received(\"welcome\")`, found `welcome`"
    );
}
