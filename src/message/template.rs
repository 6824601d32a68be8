//! Message templates (minijinja): checked when a campaign is validated, so
//! that an unknown variable is an error then, never an empty string at send
//! time; HTML parts are always escaped, and so is every layout or partial
//! they use. Every render is bounded in work and output size (see
//! [`super::limits`]). Layouts and partials come from the message's
//! [`Library`], read when the campaign was loaded (see [`super::library`]).

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use super::library::{self, Library};
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

    /// The name of the part's own template in its environment. It starts
    /// with `/`, which no library name does ([`library::normalize`] refuses
    /// absolute paths), so that `{% include "body.html" %}` names a file of
    /// the campaigns folder, never the part itself.
    pub(super) fn template_name(self) -> &'static str {
        match self {
            Part::Subject => "/subject",
            Part::Html => "/html",
            Part::Text => "/text",
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
    /// The library file (a layout or partial the part uses) the problem is
    /// in, by name; `None`: the part's own text.
    pub file: Option<String>,
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
    parts: Vec<Compiled>,
    library: Library,
}

/// One part: an environment of its own, whose escaping (HTML for the HTML
/// part, none for the others) applies to every layout and partial it uses,
/// so that a partial shared by the HTML and text parts is escaped in one and
/// not the other.
struct Compiled {
    part: Part,
    env: Environment<'static>,
    /// The library files the part reaches, in the order first named.
    reached: Vec<String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Templates {
    /// Compiles the given parts, with the layouts and partials of `library`,
    /// and checks every variable they use, the library files a part reaches
    /// included. All problems are returned, not just the first.
    pub fn compile(parts: &[(Part, String)], library: &Library) -> Result<Templates, Vec<TemplateError>> {
        let mut errors = Vec::new();
        let mut compiled = Vec::new();
        for (part, source) in parts {
            let mut env = environment(*part, library);
            match env.add_template_owned(part.template_name(), source.clone()) {
                Ok(()) => {
                    let template = env.get_template(part.template_name()).expect("just added");
                    errors.extend(unknown_variables(*part, None, source, &template));
                }
                Err(error) => errors.push(syntax_error(*part, None, source, &error)),
            }
            let reached = library::reached(source, library);
            for name in &reached {
                let text = &library[name];
                match env.get_template(name) {
                    Ok(template) => errors.extend(unknown_variables(*part, Some(name), text, &template)),
                    Err(error) => errors.push(syntax_error(*part, Some(name), text, &error)),
                }
            }
            compiled.push(Compiled { part: *part, env, reached });
        }
        if errors.is_empty() { Ok(Templates { parts: compiled, library: library.clone() }) } else { Err(errors) }
    }

    fn part(&self, part: Part) -> Option<&Compiled> {
        self.parts.iter().find(|c| c.part == part)
    }

    /// Whether `part`, or a layout or partial it reaches, uses the variable
    /// `name` anywhere (false without the part).
    pub fn uses(&self, part: Part, name: &str) -> bool {
        let Some(compiled) = self.part(part) else { return false };
        std::iter::once(part.template_name()).chain(compiled.reached.iter().map(String::as_str)).any(|template| {
            compiled
                .env
                .get_template(template)
                .is_ok_and(|template| template.undeclared_variables(false).contains(name))
        })
    }

    /// The library files `part` reaches, by name with their text.
    pub fn files(&self, part: Part) -> impl Iterator<Item = (&str, &str)> {
        let reached = self.part(part).map_or(&[][..], |c| &c.reached[..]);
        reached.iter().map(|name| (name.as_str(), self.library[name].as_str()))
    }

    /// Renders one part, or `None` when the message has no such part. A
    /// render over [`FUEL`] or [`MAX_OUTPUT_BYTES`] fails with a
    /// [`RenderError`] that names the limit.
    pub fn render(&self, part: Part, context: &Value) -> Option<Result<String, RenderError>> {
        let template = self.part(part)?.env.get_template(part.template_name()).ok()?;
        Some(limits::render(&template, part, context, MAX_OUTPUT_BYTES))
    }

    /// Renders every part once with [`limits::sample_variables`] and reports
    /// the parts over the limits, at the line (of the part or of the library
    /// file) where the work ran out. Other render errors are not reported:
    /// the sample is not the customers' data (a value it lacks may be there).
    pub fn check_limits(&self, parts: &[(Part, String)]) -> Vec<TemplateError> {
        let sample = limits::sample_variables();
        let mut errors = Vec::new();
        for (part, source) in parts {
            if let Some(Err(error)) = self.render(*part, &sample)
                && error.is_limit()
            {
                let file = error.file().map(str::to_owned);
                let text = file.as_ref().and_then(|name| self.library.get(name)).unwrap_or(source);
                let offset = error.line().map_or(0, |line| line_start(text, line));
                let (line, column) = line_column(text, offset);
                let message = format!("with sample customer data, {error}");
                errors.push(TemplateError { part: *part, file, offset, line, column, message });
            }
        }
        errors
    }
}

/// The environment of one part: strict about undefined values, with the fuel
/// of one render, and a loader that serves the library and nothing else
/// (names as the campaign wrote them, normalized as they were when read).
fn environment(part: Part, library: &Library) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    let escape = if part == Part::Html { AutoEscape::Html } else { AutoEscape::None };
    env.set_auto_escape_callback(move |_| escape.clone());
    env.set_formatter(|out, state, value| {
        // A missing value (say, no first name) prints as nothing, not "none".
        if value.is_none() { Ok(()) } else { minijinja::escape_formatter(out, state, value) }
    });
    let library = library.clone();
    env.set_loader(move |name| Ok(library::normalize(name).ok().and_then(|name| library.get(&name).cloned())));
    env
}

/// The variables `template` (the part's own, or the library file `file`)
/// uses that patron does not provide, each at its first use in `source`.
fn unknown_variables(
    part: Part,
    file: Option<&str>,
    source: &str,
    template: &minijinja::Template<'_, '_>,
) -> Vec<TemplateError> {
    let mut unknown: Vec<String> = template.undeclared_variables(true).into_iter().filter(|v| !is_known(v)).collect();
    unknown.sort();
    unknown.iter().map(|name| unknown_variable(part, file, source, name)).collect()
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

fn unknown_variable(part: Part, file: Option<&str>, source: &str, path: &str) -> TemplateError {
    let offset = find_identifier_path(source, path).unwrap_or(0);
    let (line, column) = line_column(source, offset);
    let message = format!("unknown variable `{path}`{}", hint(path));
    TemplateError { part, file: file.map(str::to_owned), offset, line, column, message }
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

fn syntax_error(part: Part, file: Option<&str>, source: &str, error: &minijinja::Error) -> TemplateError {
    let offset = match error.range() {
        Some(range) => range.start,
        None => line_start(source, error.line().unwrap_or(1)),
    };
    let (line, column) = line_column(source, offset);
    let message = error.detail().map_or_else(|| error.kind().to_string(), |d| format!("{}: {d}", error.kind()));
    TemplateError { part, file: file.map(str::to_owned), offset, line, column, message }
}

/// The byte offset where 1-based `line` starts.
fn line_start(text: &str, line: usize) -> usize {
    text.match_indices('\n').nth(line.saturating_sub(2)).map_or(0, |(i, _)| if line <= 1 { 0 } else { i + 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(part: Part, source: &str) -> Result<Templates, Vec<TemplateError>> {
        Templates::compile(&[(part, source.to_owned())], &Library::default())
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let parts = [
            (Part::Html, "<p>Hi {{ customer.first_name }}</p>".to_owned()),
            (Part::Text, "Hi {{ customer.first_name }}".to_owned()),
        ];
        let templates = Templates::compile(&parts, &Library::default()).unwrap();
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
        assert!(matches!(error, RenderError::OutOfFuel { part: Part::Html, file: None, line: Some(1) }), "{error:?}");
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
        // In a partial, the error names it.
        let files = library(&[("name.txt", "\n{{ customer.first_name }}")]);
        let partial = Templates::compile(&[(Part::Text, "{% include 'name.txt' %}".to_owned())], &files).unwrap();
        let error = partial.render(Part::Text, &empty).unwrap().unwrap_err();
        assert_eq!(
            error.reason(),
            "rendering the text template: undefined value: `customer.first_name` is undefined at line 2 of name.txt"
        );
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
        let errors = Templates::compile(&parts, &Library::default()).unwrap().check_limits(&parts);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].part, errors[0].line, errors[0].column), (Part::Text, 2, 1));
        assert!(errors[0].message.starts_with("with sample customer data, the text template needs more work"));
        let guarded = [(Part::Html, "{% if customer.first_name == 'X' %}{{ 'x' * 2000000 }}{% endif %}".to_owned())];
        assert!(Templates::compile(&guarded, &Library::default()).unwrap().check_limits(&guarded).is_empty());
    }

    fn library(files: &[(&str, &str)]) -> Library {
        Library::new(files.iter().map(|(name, text)| ((*name).to_owned(), (*text).to_owned())).collect())
    }

    fn sample() -> Value {
        limits::sample_variables()
    }

    #[test]
    fn a_part_renders_its_layout_and_partials_from_the_library_and_from_nothing_else() {
        let files = library(&[
            (
                "templates/layout.html",
                "<main>{% block content %}{% endblock %}</main>{% include 'templates/footer.html' %}",
            ),
            ("templates/footer.html", "<footer><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></footer>"),
            // A file named like the part's own template is a file, not the part.
            ("body.html", "<i>the file</i>"),
        ]);
        let html = "{% extends \"./templates/layout.html\" %}{% block content %}Hi {{ customer.first_name }}\
                    {% include 'body.html' %}{% endblock %}";
        let templates = Templates::compile(&[(Part::Html, html.to_owned())], &files).unwrap();
        assert_eq!(
            templates.render(Part::Html, &sample()).unwrap().unwrap(),
            format!(
                "<main>Hi Ana<i>the file</i></main><footer><a href=\"{}\">Unsubscribe</a></footer>",
                limits::SAMPLE_UNSUBSCRIBE_URL
            )
        );
        assert_eq!(
            templates.files(Part::Html).map(|(name, _)| name).collect::<Vec<_>>(),
            ["templates/layout.html", "body.html", "templates/footer.html"]
        );
        // A name the library lacks is not found, even when a file of that name exists.
        let cargo = "{% include '../Cargo.toml' %}{% include 'Cargo.toml' %}";
        let templates = Templates::compile(&[(Part::Text, cargo.to_owned())], &files).unwrap();
        let error = templates.render(Part::Text, &sample()).unwrap().unwrap_err();
        assert_eq!(
            error.reason(),
            "rendering the text template: template not found: tried to include non-existing template '../Cargo.toml' \
             at line 1"
        );
    }

    #[test]
    fn a_partial_is_escaped_in_the_html_part_and_not_in_the_text_part() {
        let files = library(&[("name.txt", "{{ customer.first_name }}")]);
        let include = "{% include 'name.txt' %}".to_owned();
        let templates = Templates::compile(&[(Part::Html, include.clone()), (Part::Text, include)], &files).unwrap();
        let context = Value::from(minijinja::value::Serde(serde_json::json!({"customer": {"first_name": "<b>"}})));
        assert_eq!(templates.render(Part::Html, &context).unwrap().unwrap(), "&lt;b&gt;");
        assert_eq!(templates.render(Part::Text, &context).unwrap().unwrap(), "<b>");
    }

    #[test]
    fn uses_and_the_variable_check_follow_layouts_and_partials() {
        let files = library(&[
            ("with_link.txt", "{% block body %}{% endblock %}\n{% include 'footer.txt' %}"),
            ("footer.txt", "Unsubscribe: {{ unsubscribe_url }}"),
            ("without_link.txt", "{% block body %}{% endblock %}\nBye"),
            ("macros.txt", "{% macro greet(name) %}Hi {{ name }}{% endmacro %}"),
        ]);
        let child = |layout: &str| {
            format!(
                "{{% extends '{layout}' %}}{{% from 'macros.txt' import greet %}}\
                 {{% block body %}}{{{{ greet(customer.first_name) }}}}{{{{ super() }}}}{{% endblock %}}"
            )
        };
        let with = Templates::compile(&[(Part::Text, child("with_link.txt"))], &files).unwrap();
        assert!(with.uses(Part::Text, "unsubscribe_url"));
        assert!(!with.uses(Part::Html, "unsubscribe_url"));
        assert_eq!(
            with.render(Part::Text, &sample()).unwrap().unwrap(),
            format!("Hi Ana\nUnsubscribe: {}", limits::SAMPLE_UNSUBSCRIBE_URL)
        );
        let without = Templates::compile(&[(Part::Text, child("without_link.txt"))], &files).unwrap();
        assert!(!without.uses(Part::Text, "unsubscribe_url"));

        let broken = library(&[
            ("layout.txt", "line one\n  {{ customer.frist_name }}{% include 'bad.txt' %}"),
            ("bad.txt", "ok\n{{ customer.first_name }"),
        ]);
        let errors = Templates::compile(&[(Part::Text, "{% extends 'layout.txt' %}".to_owned())], &broken).unwrap_err();
        let found: Vec<(Option<&str>, usize, usize, &str)> =
            errors.iter().map(|e| (e.file.as_deref(), e.line, e.column, &e.message[..20])).collect();
        assert_eq!(
            found,
            [(Some("layout.txt"), 2, 15, "unknown variable `cu"), (Some("bad.txt"), 2, 24, "syntax error: unexpe")]
        );
    }

    #[test]
    fn running_out_of_fuel_in_a_partial_is_located_in_it() {
        let files = library(&[(
            "loops.txt",
            "one\n{% for i in [0] * 100000 %}{% for j in [0] * 100000 %}{% endfor %}{% endfor %}",
        )]);
        let parts = [(Part::Text, "Hi\n{% include 'loops.txt' %}".to_owned())];
        let templates = Templates::compile(&parts, &files).unwrap();
        let error = templates.render(Part::Text, &sample()).unwrap().unwrap_err();
        assert!(
            matches!(&error, RenderError::OutOfFuel { file: Some(f), line: Some(2), .. } if f == "loops.txt"),
            "{error:?}"
        );
        assert!(error.reason().contains("ran out at line 2 of loops.txt"), "{}", error.reason());
        let errors = templates.check_limits(&parts);
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].file.as_deref(), errors[0].line, errors[0].column), (Some("loops.txt"), 2, 1));
    }

    #[test]
    fn a_strict_undefined_fails_at_render() {
        let templates = compile(Part::Text, "{{ customer.first_name }}").unwrap();
        let context = Value::from(minijinja::value::Serde(serde_json::json!({"customer": {}})));
        assert!(templates.render(Part::Text, &context).unwrap().is_err());
    }
}
