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
          {{ unsubscribe_url }}, in the footer say (of this template, or of a layout or partial it uses)"]
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

/// `GOOD` with top-level lines added after `priority` (line 4), so the first is line 5.
fn with_top_level(lines: &str) -> String {
    GOOD.replace("priority = 5\n", &format!("priority = 5\n{lines}"))
}

#[test]
fn a_send_window_and_an_expiry_load_with_their_zone() {
    let path = Path::new("campaigns/winback.toml");
    let campaign = parse(path, &with_top_level("send_window = \"20:00-08:00\"\nexpires_after = \"2d\"\n")).unwrap();
    let window = campaign.send_window.unwrap();
    assert_eq!((window.hours(), window.zone), ("20:00-08:00".to_owned(), WindowZone::Campaign));
    assert_eq!(campaign.expires_after, Some(Duration::days(2)));
    let campaign =
        parse(path, &with_top_level("send_window = \"09:00-20:00\"\nsend_window_zone = \"customer\"\n")).unwrap();
    assert_eq!(campaign.send_window.unwrap().zone, WindowZone::Customer);
    assert_eq!(campaign.expires_after, None);
    let campaign = parse(path, GOOD).unwrap();
    assert!(campaign.send_window.is_none() && campaign.expires_after.is_none());
}

#[test]
fn bad_send_windows_zones_and_expiries_are_each_located() {
    let found =
        errors(&with_top_level("send_window = \"9-20\"\nsend_window_zone = \"shop\"\nexpires_after = \"2 days\"\n"));
    assert_eq!(
        found,
        [
            "campaigns/winback.toml:6:20: send_window_zone must be `campaign` or `customer`, not `shop`",
            "campaigns/winback.toml:5:15: send_window must be two times of day such as `09:00-20:00`, not `9-20`",
            "campaigns/winback.toml:7:17: `2 days` is not a duration such as 30d, 13w, 6h, 90m or 30s",
        ]
    );
    assert_eq!(
        errors(&with_top_level("send_window = \"25:00-08:00\"\n")),
        ["campaigns/winback.toml:5:15: `25:00` in send_window is not a time of day (00:00 to 23:59)"]
    );
    assert_eq!(
        errors(&with_top_level("send_window = \"09:00-09:00\"\n")),
        ["campaigns/winback.toml:5:15: send_window `09:00-09:00` opens and closes at the same time: \
          leave send_window out to send at any hour"]
    );
    assert_eq!(
        errors(&with_top_level("send_window_zone = \"customer\"\n")),
        ["campaigns/winback.toml:5:20: send_window_zone needs a send_window such as `09:00-20:00`"]
    );
    assert_eq!(
        errors(&with_top_level("expires_after = \"0h\"\n")),
        ["campaigns/winback.toml:5:17: expires_after must be longer than 0"]
    );
}

/// A campaigns folder with these files; returns it and the path of its campaign file.
fn campaigns_folder(files: &[(&str, &str)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let folder = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = folder.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let file = folder.path().join("winback.toml");
    (folder, file)
}

fn problems(file: &Path, text: &str) -> Vec<String> {
    match parse(file, text) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
    }
}

const LAYOUT: &str =
    "<html><body>\n{% block content %}{% endblock %}\n{% include 'templates/footer.html' %}\n</body></html>\n";
const FOOTER: &str = "<p>Patron Records, 1 Main Street</p>\n<p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>\n";
const CHILD: &str =
    "{% extends \"templates/layout.html\" %}\n{% block content %}<p>Hi {{ customer.first_name }}</p>{% endblock %}\n";

#[test]
fn layouts_and_partials_are_read_with_the_campaign_file_and_carry_the_unsubscribe_link() {
    let (folder, file) = campaigns_folder(&[
        ("templates/layout.html", LAYOUT),
        ("templates/footer.html", FOOTER),
        ("templates/winback.html", CHILD),
        ("templates/other.html", "{% extends 'templates/layout.html' %}{% block content %}Other{% endblock %}"),
    ]);
    let text = with_line(17, "html = \"templates/winback.html\"") + "\nhtml = \"templates/other.html\"\n";
    let campaign = parse(&file, &text).unwrap_or_else(|e| panic!("{e:?}"));
    let library: Vec<&String> = campaign.message.library.keys().collect();
    assert_eq!(library, ["templates/footer.html", "templates/layout.html"]);
    assert!(campaign.message.parts.contains(&(Part::Html, CHILD.to_owned())));
    // Nothing is read when the message is rendered: the files may be gone.
    drop(folder);
    let variables = crate::message::limits::sample_variables();
    for (message, content) in [(&campaign.message, "<p>Hi Ana</p>"), (&campaign.variants[1].message, "Other")] {
        let html = message.templates().unwrap().render(Part::Html, &variables).unwrap().unwrap();
        assert!(html.contains(content) && html.contains("Patron Records, 1 Main Street"), "{html}");
        assert!(html.contains("https://unsubscribe.invalid/unsubscribe?token=sample"), "{html}");
    }
}

#[test]
fn an_include_that_leaves_the_campaigns_folder_is_refused_where_it_is() {
    let (folder, file) = campaigns_folder(&[(
        "templates/winback.html",
        "<p>Hi</p>\n<p>{% include \"../../etc/passwd\" %}</p>\n{% include '/etc/passwd' %}{{ unsubscribe_url }}\n",
    )]);
    let template = folder.path().join("templates/winback.html");
    assert_eq!(
        problems(&file, &with_line(17, "html = \"templates/winback.html\"")),
        [
            format!(
                "{}:2:15: html template: {{% include %}}: `../../etc/passwd` escapes the campaigns folder: template \
                 paths are relative to that folder and may not leave it",
                template.display()
            ),
            format!(
                "{}:3:12: html template: {{% include %}}: `/etc/passwd` is an absolute path, outside the campaigns \
                 folder: template paths are relative to that folder, such as \"templates/layout.html\"",
                template.display()
            ),
        ]
    );
    // Inline, the place is in the campaign file; a template file named by the campaign obeys the same rule.
    let inline = with_line(16, "text = \"Hi {% include '../secrets.txt' %} {{ unsubscribe_url }}\"");
    let found = problems(&file, &inline);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(&format!(
            "{}:16:23: text template: {{% include %}}: `../secrets.txt` escapes",
            file.display()
        )),
        "{found:?}"
    );
    let found = problems(&file, &with_line(17, "html = \"../winback.html\""));
    assert_eq!(
        found,
        [format!(
            "{}:17:8: `../winback.html` escapes the campaigns folder: template paths are relative to that folder and \
             may not leave it",
            file.display()
        )]
    );
    // A missing partial is named where it is included.
    let missing = with_line(16, "text = \"{% include 'templates/footer.txt' %}\"");
    let found = problems(&file, &missing);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(&format!(
            "{}:16:20: text template: {{% include \"templates/footer.txt\" %}}: cannot read template file {}",
            file.display(),
            folder.path().join("templates/footer.txt").display()
        )),
        "{found:?}"
    );
}

#[test]
fn a_layout_without_the_link_or_a_block_that_drops_it_is_refused() {
    let (folder, file) = campaigns_folder(&[
        ("templates/layout.html", LAYOUT),
        ("templates/footer.html", "<p>Patron Records, 1 Main Street</p>\n"),
        ("templates/winback.html", CHILD),
        (
            "templates/linked.html",
            "{% block content %}{% endblock %}{% block footer %}{{ unsubscribe_url }}{% endblock %}",
        ),
        ("templates/dropped.html", "{% extends 'templates/linked.html' %}{% block footer %}Bye{% endblock %}"),
    ]);
    let template = folder.path().join("templates/winback.html");
    assert_eq!(
        problems(&file, &with_line(17, "html = \"templates/winback.html\"")),
        [format!(
            "{}:1:1: html template: no unsubscribe link: bulk mail must carry one; add {{{{ unsubscribe_url }}}}, in \
             the footer say (of this template, or of a layout or partial it uses)",
            template.display()
        )]
    );
    let found = problems(&file, &with_line(17, "html = \"templates/dropped.html\""));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("html template: no unsubscribe link in the message rendered with sample"), "{found:?}");
}

#[test]
fn each_file_of_a_layout_is_checked_on_its_own_text_and_reported_once() {
    let (folder, file) = campaigns_folder(&[
        (
            "templates/layout.html",
            "<div>\n{% block content %}{% endblock %}\n</span>\n{{ unsubscribe_url }}{{ discount }}",
        ),
        ("templates/winback.html", CHILD),
        ("templates/plain.html", "{% extends 'templates/layout.html' %}"),
    ]);
    // The variant's HTML extends the same broken layout: its problems are reported once.
    let text = with_line(17, "html = \"templates/winback.html\"") + "\nhtml = \"templates/plain.html\"\n";
    let layout = folder.path().join("templates/layout.html");
    assert_eq!(
        problems(&file, &text),
        [format!(
            "{}:4:25: html template: unknown variable `discount`; the variables are customer, features, loyalty, \
                 campaign, propensity, propensity_decile, variant and unsubscribe_url",
            layout.display()
        ),]
    );
    std::fs::write(&layout, "<div>\n{% block content %}{% endblock %}\n</span>\n{{ unsubscribe_url }}").unwrap();
    assert_eq!(
        problems(&file, &text),
        [format!("{}:3:1: html template: </span> ends no open <span>", layout.display())]
    );
}
