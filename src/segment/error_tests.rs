//! Error tests: positions and wording of syntax and validation errors.

use super::MAX_DEPTH;
use super::MAX_LEN;
use super::tests::{errors, ok, one_error};

#[test]
fn an_unknown_field_is_reported_at_its_start_with_a_suggestion() {
    assert_eq!(one_error("recncy_days > 3"), "1:1: unknown field `recncy_days`; did you mean `recency_days`?");
}

#[test]
fn a_far_off_unknown_field_lists_the_known_fields_instead() {
    let message = one_error("zzzzzzzzzzzz = 1");
    assert!(message.starts_with("1:1: unknown field `zzzzzzzzzzzz`; the fields are `recency_days`"), "{message}");
}

#[test]
fn a_missing_value_is_reported_at_the_end_of_the_expression() {
    assert_eq!(one_error("frequency > "), "1:13: expected a value after `>`, found end of expression");
}

#[test]
fn an_error_on_the_second_line_reports_line_two_and_its_column() {
    let text = "frequency >= 2\n  and recncy_days > 3";
    assert_eq!(one_error(text), "2:7: unknown field `recncy_days`; did you mean `recency_days`?");
    let syntax = "frequency >= 2\n  and é = = 3";
    assert_eq!(one_error(syntax), "2:7: unexpected character `é`");
}

#[test]
fn an_unterminated_string_is_reported_at_its_opening_quote() {
    assert_eq!(one_error("first_name = \"abc"), "1:14: unterminated string");
    assert_eq!(one_error("first_name = \"abc\\"), "1:14: unterminated string");
}

#[test]
fn an_unclosed_parenthesis_names_where_it_was_opened() {
    assert_eq!(one_error("a = 1 and (b = 2"), "1:17: unclosed parenthesis opened at 1:11");
}

#[test]
fn a_stray_closing_parenthesis_is_unmatched() {
    assert_eq!(one_error("a = 1)"), "1:6: unmatched `)`");
}

#[test]
fn an_impossible_date_is_rejected() {
    assert_eq!(one_error("signed_up_at < 2026-02-30"), "1:16: invalid date `2026-02-30`; no such day in the calendar");
}

#[test]
fn a_string_compared_with_a_days_field_is_a_type_mismatch() {
    assert_eq!(
        one_error("recency_days > \"abc\""),
        "1:1: recency_days is a number of days; compare it with a number or a duration such as 30d, not \"abc\""
    );
}

#[test]
fn ordering_text_or_bool_fields_is_rejected() {
    let text = one_error("first_name < \"m\"");
    assert!(text.starts_with("1:1: `<` cannot be used on first_name, which is text"), "{text}");
    let flag = one_error("opted_in >= true");
    assert!(flag.starts_with("1:1: `>=` cannot be used on opted_in, which is true or false"), "{flag}");
    let list = one_error("opted_in in [true]");
    assert!(list.starts_with("1:1: `in` cannot be used on opted_in"), "{list}");
}

#[test]
fn dates_numbers_and_attributes_reject_the_wrong_literals() {
    assert!(
        one_error("signed_up_at = 30d")
            .contains("signed_up_at is a date; compare it with a date such as 2026-01-31, not 30d")
    );
    assert!(one_error("frequency = 2w").contains("frequency is a number; compare it with a number such as 3, not 14d"));
    assert!(
        one_error("attributes.x = true")
            .contains("attributes.x is an attribute; compare it with a string or a number, not true")
    );
    assert!(one_error("frequency in [1, \"x\"]").contains("not \"x\""));
    assert!(one_error("recency_days in [1, 2d]").contains("mixes 1 and 2d"));
}

#[test]
fn a_between_with_its_bounds_reversed_is_an_empty_range() {
    assert_eq!(
        one_error("recency_days between 90d and 30d"),
        "1:1: empty range: `recency_days between 90d and 30d` has its low bound above its high bound; write `between 30d and 90d`"
    );
}

#[test]
fn every_validation_error_is_reported_in_source_order() {
    let found = errors("recncy > 1 or first_name < \"a\" and (not frequency = \"x\" or c between 3 and 1)");
    let positions: Vec<(usize, usize)> = found.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(positions, vec![(1, 1), (1, 15), (1, 41), (1, 60)]);
    assert_eq!(found[0].message, "unknown field `recncy`; did you mean `recency_days`?");
}

#[test]
fn syntax_errors_say_what_was_expected_and_what_was_found() {
    assert_eq!(one_error("a = 1 b = 2"), "1:7: expected `and`, `or` or end of expression, found `b`");
    assert_eq!(one_error("and = 1"), "1:1: expected a field name or `(`, found `and`");
    assert_eq!(one_error("a in []"), "1:7: expected a value in the list (lists cannot be empty), found `]`");
    assert_eq!(one_error("a is 3"), "1:6: expected `null` after `is`, found `3`");
    assert_eq!(one_error("a = null"), "1:5: expected a value after `=`, found `null`; use `is null` or `is not null`");
    assert_eq!(one_error("a between 1 or 2"), "1:13: expected `and` between the two bounds of `between`, found `or`");
    assert!(one_error("a = 12x").starts_with("1:5: invalid number `12x`"));
}

#[test]
fn nesting_beyond_the_depth_limit_is_an_error() {
    let deep = format!("{}a = 1{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
    assert!(one_error(&deep).contains("nested too deeply"));
    let nots = format!("{}a = 1", "not ".repeat(MAX_DEPTH + 1));
    assert!(one_error(&nots).contains("nested too deeply"));
    let fine = format!("{}a = 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    ok(&fine);
}

#[test]
fn a_hundred_thousand_open_parentheses_return_an_error_without_overflowing() {
    assert!(one_error(&"(".repeat(100_000)).contains("too long"));
    assert!(one_error(&"(".repeat(MAX_LEN)).contains("nested too deeply"));
}

#[test]
fn a_long_flat_chain_of_ors_validates_without_recursion_trouble() {
    let chain = vec!["a = 1"; 1_000].join(" or ");
    assert!(chain.len() <= MAX_LEN);
    ok(&chain);
}
