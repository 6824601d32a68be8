use std::path::Path;

use super::*;

/// The default topics of `config/patron.toml`.
fn default_topics() -> Vec<String> {
    ["news", "offers", "loyalty"].map(String::from).to_vec()
}

fn parse(path: &Path, text: &str) -> Result<Campaign, Vec<Diagnostic>> {
    super::parse(path, text, &default_topics())
}

const GOOD: &str = r#"description = "Win back lapsed repeat buyers"
schedule = "0 9 * * MON"
timezone = "Europe/Berlin"
priority = 5

[audience]
where = "frequency >= 2 and recency_days between 180d and 540d"
order_by = "propensity desc"
limit = 5000
cooldown = "90d"
holdout = 0.2

[message]
from = "Patron Shop <shop@example.com>"
subject = "We miss you, {{ customer.first_name }}"
text = "Hello {{ customer.first_name }}, come back! {{ unsubscribe_url }}"
html = "<p>Hello {{ customer.first_name }}</p><p><a href='{{ unsubscribe_url }}'>Unsubscribe</a></p>"

[[variant]]
name = "plain"
share = 0.5

[[variant]]
name = "discount"
share = 0.5
subject = "10% off for you, {{ customer.first_name }}"
"#;

fn errors(text: &str) -> Vec<String> {
    match parse(Path::new("campaigns/winback.toml"), text) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
    }
}

/// `GOOD` with one line replaced.
fn with_line(line: usize, replacement: &str) -> String {
    let mut lines: Vec<&str> = GOOD.lines().collect();
    lines[line - 1] = replacement;
    lines.join("\n")
}

#[test]
fn a_good_file_loads_with_defaults_filled_in() {
    let campaign = parse(Path::new("campaigns/winback.toml"), GOOD).unwrap();
    assert_eq!(campaign.name, "winback");
    assert_eq!(campaign.kind, Kind::Marketing);
    assert!(campaign.enabled);
    assert_eq!(campaign.priority, 5);
    assert_eq!(campaign.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(campaign.schedule.as_ref().unwrap().expression(), "0 9 * * MON");
    assert_eq!(campaign.audience.order, Some(Order { field: "propensity".into(), descending: true }));
    assert_eq!(campaign.audience.limit, Some(5000));
    assert_eq!(campaign.audience.cooldown, Some(Duration::days(90)));
    assert_eq!(campaign.audience.holdout, Some(0.2));
    assert_eq!(campaign.variants.len(), 2);
    let discount = &campaign.variants[1].message;
    assert!(discount.parts.contains(&(Part::Subject, "10% off for you, {{ customer.first_name }}".into())));
    assert!(discount.parts.iter().any(|(p, _)| *p == Part::Html));
}

#[test]
fn bad_toml_is_located() {
    assert_eq!(errors(&with_line(4, "priority = = 5")), ["campaigns/winback.toml:4:12: extra `=`, expected nothing"]);
}

#[test]
fn an_unknown_key_is_located() {
    let found = errors(&with_line(10, "cooldwn = \"90d\""));
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("campaigns/winback.toml:10:1: unknown field `cooldwn`, expected one of"), "{found:?}");
}

#[test]
fn an_unknown_field_in_the_expression_points_into_it() {
    assert_eq!(
        errors(&with_line(7, "where = \"frequency >= 2 and recncy_days > 180d\"")),
        ["campaigns/winback.toml:7:29: unknown field `recncy_days`; did you mean `recency_days`?"]
    );
    // In a multi-line literal string, positions count from the string's own lines.
    let multi = GOOD.replace(
        "where = \"frequency >= 2 and recency_days between 180d and 540d\"",
        "where = '''\nfrequency >= 2\n  and recncy_days > 180d'''",
    );
    assert_eq!(
        errors(&multi),
        ["campaigns/winback.toml:9:7: unknown field `recncy_days`; did you mean `recency_days`?"]
    );
}

#[test]
fn a_bad_schedule_is_located() {
    let found = errors(&with_line(2, "schedule = \"0 9 * * MONDAYS\""));
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("campaigns/winback.toml:2:12: `0 9 * * MONDAYS` is not a valid cron schedule"),
        "{found:?}"
    );
    let found = errors(&with_line(2, "schedule = \"0 9 * *\""));
    assert!(found[0].starts_with("campaigns/winback.toml:2:12: a schedule has 5 fields"), "{found:?}");
}

#[test]
fn a_bad_time_zone_is_located() {
    assert_eq!(
        errors(&with_line(3, "timezone = \"Europe/Berln\"")),
        ["campaigns/winback.toml:3:12: unknown time zone `Europe/Berln`; did you mean `Europe/Berlin`?"]
    );
}

#[test]
fn template_errors_are_located_inline_and_in_files() {
    let found = errors(&with_line(15, "subject = \"We miss you, {{ customer.first_name \""));
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("campaigns/winback.toml:15:"), "{found:?}");
    assert!(found[0].contains("subject template: syntax error"), "{found:?}");

    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir(folder.path().join("templates")).unwrap();
    std::fs::write(folder.path().join("templates/winback.html"), "<p>Hi</p>\n<p>{% if x %}</p>\n").unwrap();
    let text = with_line(17, "html = \"templates/winback.html\"");
    let file = folder.path().join("winback.toml");
    let found: Vec<String> = parse(&file, &text).unwrap_err().iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 1);
    let template = folder.path().join("templates/winback.html");
    assert!(found[0].starts_with(&format!("{}:2:", template.display())), "{found:?}");

    let text = with_line(17, "html = \"templates/missing.html\"");
    let found: Vec<String> = parse(&file, &text).unwrap_err().iter().map(ToString::to_string).collect();
    assert!(found[0].starts_with(&format!("{}:17:8: cannot read template file", file.display())), "{found:?}");
}

#[test]
fn a_body_without_the_unsubscribe_link_and_html_that_is_not_well_formed_are_refused_where_they_are() {
    assert_eq!(
        errors(&with_line(16, "text = \"Hello {{ customer.first_name }}\"")),
        ["campaigns/winback.toml:16:9: text template: no unsubscribe link: bulk mail must carry one; add \
          {{ unsubscribe_url }}, in the footer say"]
    );
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("winback.html"),
        "<table>\n<tr><td>Hi</td>\n</table>\n<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>\n",
    )
    .unwrap();
    let file = folder.path().join("winback.toml");
    let found: Vec<String> =
        parse(&file, &with_line(17, "html = \"winback.html\"")).unwrap_err().iter().map(ToString::to_string).collect();
    let template = folder.path().join("winback.html");
    assert_eq!(
        found,
        [format!(
            "{}:3:1: html template: </table> comes before the end of <tr> (opened on line 2)",
            template.display()
        )]
    );
}

#[test]
fn an_unknown_template_variable_is_located() {
    assert_eq!(
        errors(&with_line(16, "text = \"Hello {{ customer.frist_name }} {{ unsubscribe_url }}\"")),
        ["campaigns/winback.toml:16:27: text template: unknown variable `customer.frist_name` \
          (`customer` has: first_name, last_name, email, external_id, birthday, attributes)"]
    );
}

#[test]
fn bad_values_are_each_reported() {
    let text = GOOD
        .replace("limit = 5000", "limit = 0")
        .replace("holdout = 0.2", "holdout = 0.9")
        .replace("cooldown = \"90d\"", "cooldown = \"90 days\"")
        .replace("order_by = \"propensity desc\"", "order_by = \"loyalty_tier desc\"")
        .replace("from = \"Patron Shop <shop@example.com>\"", "from = \"shop at example\"");
    let found = errors(&text);
    assert_eq!(
        found,
        [
            "campaigns/winback.toml:8:12: order_by needs a number or a duration field; `loyalty_tier` is not one",
            "campaigns/winback.toml:9:9: limit must be at least 1, not 0",
            "campaigns/winback.toml:10:12: `90 days` is not a duration such as 30d, 13w, 6h, 90m or 30s",
            "campaigns/winback.toml:11:11: holdout must be between 0 and 0.5, not 0.9",
            "campaigns/winback.toml:14:8: `shop at example` is not an address such as `shop@example.com` or `Shop <shop@example.com>`",
        ]
    );
}

#[test]
fn variant_shares_must_add_up() {
    let text = GOOD.replacen("share = 0.5", "share = 0.3", 1);
    assert_eq!(
        errors(&text),
        ["campaigns/winback.toml:21:9: the variants' shares must add up to 1; they add up to 0.8"]
    );
}

#[test]
fn the_name_defaults_to_the_file_stem_and_must_be_usable() {
    let campaign = parse(Path::new("campaigns/spring-sale_2.toml"), GOOD).unwrap();
    assert_eq!(campaign.name, "spring-sale_2");
    let found: Vec<String> =
        parse(Path::new("campaigns/spring sale.toml"), GOOD).unwrap_err().iter().map(ToString::to_string).collect();
    assert!(found[0].contains("campaign name `spring sale` must be"), "{found:?}");
}

#[test]
fn arbitrary_input_never_panics() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let alphabet: Vec<char> = "[]{}=\"'\n #.,<>abcdefhilmnorstuwy0123456789_-*/\\".chars().collect();
    let path = Path::new("campaigns/fuzz.toml");
    for _ in 0..3_000 {
        let len = rng.random_range(0..200);
        let text: String = (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect();
        let _ = parse(path, &text);
    }
    // Every prefix of a good file, and the good file with each byte changed.
    for end in (0..GOOD.len()).filter(|&i| GOOD.is_char_boundary(i)) {
        let _ = parse(path, &GOOD[..end]);
    }
    let bytes = GOOD.as_bytes();
    for i in 0..bytes.len() {
        for replacement in [b'"', b'\n', b'=', b'x', b'\\', b'['] {
            let mut changed = bytes.to_vec();
            changed[i] = replacement;
            if let Ok(text) = String::from_utf8(changed) {
                let _ = parse(path, &text);
            }
        }
    }
}
