//! Message templates (minijinja): checked when a campaign is validated, so
//! that an unknown variable is an error then, never an empty string at send
//! time; HTML parts are always escaped. Every render is bounded in work and
//! output size (see [`super::limits`]).

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use super::limits::{self, FUEL, MAX_OUTPUT_BYTES, RenderError};

use crate::segment::compile::FIELDS;
use crate::segment::line_column;

/// The parts of a message, each its own template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Subject,
    Html,
    Text,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Subject, Part::Html, Part::Text];

    /// The template name; only the HTML part's name ends in `.html`, which is
    /// what turns escaping on (and [`Templates`] forces it for that part anyway).
    fn template_name(self) -> &'static str {
        match self {
            Part::Subject => "subject.txt",
            Part::Html => "body.html",
            Part::Text => "body.txt",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Part::Subject => "subject",
            Part::Html => "html",
            Part::Text => "text",
        }
    }
}

/// A problem in one template; `line` and `column` are 1-based, in the template text.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    pub part: Part,
    /// Byte offset in the template text.
    pub offset: usize,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The variables a template may use, with the fields under them. `attributes`
/// holds whatever columns the customer import carried, so any name is allowed there.
const CUSTOMER_FIELDS: &[&str] = &["first_name", "last_name", "email", "external_id", "birthday", "attributes"];
/// The member's standing, as the loyalty segment fields.
const LOYALTY_FIELDS: &[&str] = &[
    "points",
    "tier",
    "tier_direction",
    "tier_changed_days_ago",
    "points_expiring_30d",
    "next_tier",
    "points_to_next_tier",
];
const CAMPAIGN_FIELDS: &[&str] = &["name", "description"];
const SCALARS: &[&str] = &[
    "propensity",
    "propensity_decile",
    "p_alive",
    "expected_orders_90d",
    "expected_orders_365d",
    "clv",
    "variant",
    "unsubscribe_url",
];

/// The compiled templates of one message (a campaign, or one of its variants).
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Templates {
    /// Compiles the given parts and checks every variable they use. All
    /// problems are returned, not just the first.
    pub fn compile(parts: &[(Part, String)]) -> Result<Templates, Vec<TemplateError>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.set_auto_escape_callback(|name| {
            if name == Part::Html.template_name() { AutoEscape::Html } else { AutoEscape::None }
        });
        env.set_formatter(|out, state, value| {
            // A missing value (say, no first name) prints as nothing, not "none".
            if value.is_none() { Ok(()) } else { minijinja::escape_formatter(out, state, value) }
        });
        let mut errors = Vec::new();
        for (part, source) in parts {
            match env.add_template_owned(part.template_name(), source.clone()) {
                Ok(()) => {
                    let template = env.get_template(part.template_name()).expect("just added");
                    let mut unknown: Vec<String> =
                        template.undeclared_variables(true).into_iter().filter(|v| !is_known(v)).collect();
                    unknown.sort();
                    errors.extend(unknown.iter().map(|name| unknown_variable(*part, source, name)));
                }
                Err(error) => errors.push(syntax_error(*part, source, &error)),
            }
        }
        if errors.is_empty() { Ok(Templates { env }) } else { Err(errors) }
    }

    /// Whether `part` uses the variable `name` anywhere (false without the part).
    pub fn uses(&self, part: Part, name: &str) -> bool {
        self.env
            .get_template(part.template_name())
            .is_ok_and(|template| template.undeclared_variables(false).contains(name))
    }

    /// Renders one part, or `None` when the message has no such part. A
    /// render over [`FUEL`] or [`MAX_OUTPUT_BYTES`] fails with a
    /// [`RenderError`] that names the limit.
    pub fn render(&self, part: Part, context: &Value) -> Option<Result<String, RenderError>> {
        let template = self.env.get_template(part.template_name()).ok()?;
        Some(limits::render(&template, part, context, MAX_OUTPUT_BYTES))
    }

    /// Renders every part once with [`limits::sample_variables`] and reports
    /// the parts over the limits. Other render errors are not reported: the
    /// sample is not the customers' data (a value it lacks may be there).
    pub fn check_limits(&self, parts: &[(Part, String)]) -> Vec<TemplateError> {
        let sample = limits::sample_variables();
        let mut errors = Vec::new();
        for (part, source) in parts {
            if let Some(Err(error)) = self.render(*part, &sample)
                && error.is_limit()
            {
                let offset = error.line().map_or(0, |line| line_start(source, line));
                let (line, column) = line_column(source, offset);
                let message = format!("with sample customer data, {error}");
                errors.push(TemplateError { part: *part, offset, line, column, message });
            }
        }
        errors
    }
}

/// Whether a dotted variable path (as minijinja reports it) is one we provide.
fn is_known(path: &str) -> bool {
    let mut segments = path.split('.');
    let top = segments.next().unwrap_or_default();
    let second = segments.next();
    let third = segments.next();
    let nested_in = |allowed: &[&str]| second.is_none_or(|s| allowed.contains(&s));
    match top {
        "customer" => nested_in(CUSTOMER_FIELDS) && (third.is_none() || second == Some("attributes")),
        "features" => second.is_none_or(|s| feature_names().any(|f| f == s)) && third.is_none(),
        "loyalty" => nested_in(LOYALTY_FIELDS) && third.is_none(),
        "campaign" => nested_in(CAMPAIGN_FIELDS) && third.is_none(),
        _ => SCALARS.contains(&top) && second.is_none(),
    }
}

pub(super) fn feature_names() -> impl Iterator<Item = &'static str> {
    FIELDS.iter().filter(|f| f.2 == "feature_snapshots").map(|f| f.0)
}

fn unknown_variable(part: Part, source: &str, path: &str) -> TemplateError {
    let offset = find_identifier_path(source, path).unwrap_or(0);
    let (line, column) = line_column(source, offset);
    TemplateError { part, offset, line, column, message: format!("unknown variable `{path}`{}", hint(path)) }
}

/// Names the variables that exist where a path went wrong.
fn hint(path: &str) -> String {
    let top = path.split('.').next().unwrap_or_default();
    let fields: Option<Vec<&str>> = match top {
        "customer" => Some(CUSTOMER_FIELDS.to_vec()),
        "loyalty" => Some(LOYALTY_FIELDS.to_vec()),
        "campaign" => Some(CAMPAIGN_FIELDS.to_vec()),
        "features" => Some(feature_names().collect()),
        _ => None,
    };
    match fields {
        Some(fields) => format!(" (`{top}` has: {})", fields.join(", ")),
        None => "; the variables are customer, features, loyalty, campaign, propensity, \
                 propensity_decile, variant and unsubscribe_url"
            .into(),
    }
}

/// The byte offset of the first use of `path` (its last segment, after its
/// parents), so that an error points at the misspelt name.
fn find_identifier_path(source: &str, path: &str) -> Option<usize> {
    let mut from = 0;
    let mut found = None;
    for segment in path.split('.') {
        let at = find_identifier(&source[from..], segment)? + from;
        found = Some(at);
        from = at + segment.len();
    }
    found
}

fn find_identifier(text: &str, name: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(name).map(|(i, _)| i).find(|&i| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

fn syntax_error(part: Part, source: &str, error: &minijinja::Error) -> TemplateError {
    let offset = match error.range() {
        Some(range) => range.start,
        None => line_start(source, error.line().unwrap_or(1)),
    };
    let (line, column) = line_column(source, offset);
    let message = error.detail().map_or_else(|| error.kind().to_string(), |d| format!("{}: {d}", error.kind()));
    TemplateError { part, offset, line, column, message }
}

/// The byte offset where 1-based `line` starts.
fn line_start(text: &str, line: usize) -> usize {
    text.match_indices('\n').nth(line.saturating_sub(2)).map_or(0, |(i, _)| if line <= 1 { 0 } else { i + 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(part: Part, source: &str) -> Result<Templates, Vec<TemplateError>> {
        Templates::compile(&[(part, source.to_owned())])
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let parts = [
            (Part::Html, "<p>Hi {{ customer.first_name }}</p>".to_owned()),
            (Part::Text, "Hi {{ customer.first_name }}".to_owned()),
        ];
        let templates = Templates::compile(&parts).unwrap();
        let context = Value::from(minijinja::value::Serde(
            serde_json::json!({"customer": {"first_name": "<script>alert(1)</script>"}}),
        ));
        let html = templates.render(Part::Html, &context).unwrap().unwrap();
        assert_eq!(html, "<p>Hi &lt;script&gt;alert(1)&lt;&#x2f;script&gt;</p>");
        let text = templates.render(Part::Text, &context).unwrap().unwrap();
        assert_eq!(text, "Hi <script>alert(1)</script>");
        assert!(templates.render(Part::Subject, &context).is_none());
    }

    #[test]
    fn a_missing_value_prints_as_nothing_and_default_fills_it() {
        let templates = compile(Part::Text, "Hi {{ customer.first_name }}!{{ customer.last_name or 'x' }}").unwrap();
        let context = Value::from(minijinja::value::Serde(
            serde_json::json!({"customer": {"first_name": null, "last_name": null}}),
        ));
        assert_eq!(templates.render(Part::Text, &context).unwrap().unwrap(), "Hi !x");
    }

    #[test]
    fn unknown_variables_are_located() {
        let errors = compile(Part::Html, "<p>\n  {{ customer.first_nme }} {{ discount }}</p>").unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!((errors[0].line, errors[0].column), (2, 15));
        assert!(errors[0].message.starts_with("unknown variable `customer.first_nme` (`customer` has: first_name"));
        assert_eq!((errors[1].line, errors[1].column), (2, 31));
        assert!(errors[1].message.starts_with("unknown variable `discount`; the variables are"));
    }

    #[test]
    fn known_variables_pass() {
        let source = "{{ customer.attributes.shoe_size }} {{ features.recency_days }} {{ loyalty.points }} \
                      {{ propensity }} {{ campaign.name }} {{ unsubscribe_url }} {% for x in [1] %}{{ x }}{% endfor %}";
        assert!(compile(Part::Text, source).is_ok());
        assert!(compile(Part::Text, "{{ features.nope }}").is_err());
        assert!(compile(Part::Text, "{{ customer.first_name.x }}").is_err());
    }

    #[test]
    fn syntax_errors_are_located() {
        let errors = compile(Part::Text, "line one\nHello {{ customer.first_name }").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].message.contains("syntax error"), "{}", errors[0].message);
    }

    #[test]
    fn a_render_over_the_fuel_or_the_output_size_fails_with_the_limit_named() {
        let context = limits::sample_variables();
        let loops = "{% for i in [0] * 100000 %}{% for j in [0] * 100000 %}{% endfor %}{% endfor %}";
        let started = std::time::Instant::now();
        let error = compile(Part::Html, loops).unwrap().render(Part::Html, &context).unwrap().unwrap_err();
        eprintln!("out of fuel after {:?}", started.elapsed());
        assert!(matches!(error, RenderError::OutOfFuel { part: Part::Html, line: Some(1) }), "{error:?}");
        assert_eq!(
            error.reason(),
            "the html template needs more work than one message may take (its fuel of 250000 ran out at line 1): \
             a loop too long or a string too big?"
        );
        // `~` makes a new string each time: charged as data, refused before it is made.
        let made = compile(Part::Text, "{% set s = 'x' * 4000000 %}{{ s | length }}").unwrap();
        assert_eq!(made.render(Part::Text, &context).unwrap().unwrap(), "4000000");
        let concat = "{% set s = 'x' * 4000000 %}{{ s ~ s ~ s ~ s }}";
        let error = compile(Part::Text, concat).unwrap().render(Part::Text, &context).unwrap().unwrap_err();
        assert!(matches!(error, RenderError::OutOfFuel { .. }), "{error:?}");
        let big = compile(Part::Subject, "{% for i in [0] * 2000 %}{{ 'x' * 1000 }}{% endfor %}").unwrap();
        let error = big.render(Part::Subject, &context).unwrap().unwrap_err();
        assert_eq!(error.reason(), format!("the subject template's output exceeds {MAX_OUTPUT_BYTES} bytes"));
        // Just under the cap is fine.
        let fits = compile(Part::Text, &format!("{{{{ 'x' * {MAX_OUTPUT_BYTES} }}}}")).unwrap();
        assert_eq!(fits.render(Part::Text, &context).unwrap().unwrap().len(), MAX_OUTPUT_BYTES);
        // Other errors are worded as before.
        let undefined = compile(Part::Text, "{{ customer.first_name }}").unwrap();
        let empty = Value::from(minijinja::value::Serde(serde_json::json!({"customer": {}})));
        let error = undefined.render(Part::Text, &empty).unwrap().unwrap_err();
        assert!(!error.is_limit() && error.reason().starts_with("rendering the text template: undefined value"));
    }

    #[test]
    fn the_limits_are_checked_with_sample_data_but_other_errors_are_left_to_real_data() {
        let parts = [
            (Part::Subject, "Hi {{ customer.first_name }}".to_owned()),
            (Part::Html, "<p>\n{{ features.recency_days + 1 }}</p>".to_owned()),
            (
                Part::Text,
                "line one\n{% for i in [0] * 100000 %}{% for j in [0] * 100000 %}{% endfor %}{% endfor %}".into(),
            ),
        ];
        let errors = Templates::compile(&parts).unwrap().check_limits(&parts);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].part, errors[0].line, errors[0].column), (Part::Text, 2, 1));
        assert!(errors[0].message.starts_with("with sample customer data, the text template needs more work"));
        let guarded = [(Part::Html, "{% if customer.first_name == 'X' %}{{ 'x' * 2000000 }}{% endif %}".to_owned())];
        assert!(Templates::compile(&guarded).unwrap().check_limits(&guarded).is_empty());
    }

    #[test]
    fn a_strict_undefined_fails_at_render() {
        let templates = compile(Part::Text, "{{ customer.first_name }}").unwrap();
        let context = Value::from(minijinja::value::Serde(serde_json::json!({"customer": {}})));
        assert!(templates.render(Part::Text, &context).unwrap().is_err());
    }
}
