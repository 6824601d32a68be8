//! How much one render of one template may cost: minijinja's fuel bounds its
//! work and the data it makes, a size-capped writer bounds its output. A
//! render over either fails with a [`RenderError`] naming the limit, so that
//! the sender fails that one message and goes on with the others.
//!
//! When a campaign file is checked, each template is also rendered once with
//! [`sample_variables`], so that a template over the limits for any customer
//! (`{{ "x" * 99999999 }}`, a loop in a loop over `[0] * 100000`) is refused
//! then. A template over the limits only for some data (behind an `if`) is
//! found at send time, one failed message per customer it hits.

use std::io;

use minijinja::{ErrorKind, Template, Value};

use super::template::Part;

/// The fuel of one render of one part. minijinja charges one fuel per
/// instruction and one per 64 bytes of data a template makes (strings, lists,
/// output, captured blocks), so this bounds one render to about 250,000
/// instructions and 16 MB of data made. Measured in the test build on this
/// project's 2-core machine under load: a loop runs out in 16 to 40 ms. The
/// shipped templates take under 40 fuel, a 300-row table of customer values
/// about 5,600, and the largest allowed output ([`MAX_OUTPUT_BYTES`]) costs
/// 16,384: ample room for real mail, little for a runaway loop. The budget is
/// per part and per message.
pub const FUEL: u64 = 250_000;

/// The most bytes one rendered part may have: 1 MiB. A marketing mail is
/// usually 20 to 100 KB (Gmail clips the HTML over 102 KB), so this is ten
/// times what any mail program shows, and a message of a 1 MiB HTML part and
/// the text made from it stays well under the 10 to 50 MB most SMTP servers
/// accept.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// Why one part did not render.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "the {} template needs more work than one message may take (its fuel of {FUEL} ran out{}): \
         a loop too long or a string too big?",
        part.key(),
        at_line(file.as_deref(), *line)
    )]
    OutOfFuel {
        part: Part,
        /// The layout or partial it ran out in; `None`: the part's own text.
        file: Option<String>,
        line: Option<usize>,
    },
    #[error("the {} template's output exceeds {limit} bytes", part.key())]
    TooLarge { part: Part, limit: usize },
    /// Any other error, as minijinja words it (see [`RenderError::reason`]).
    #[error("{error}")]
    Failed { part: Part, error: minijinja::Error },
}

impl RenderError {
    /// The error as one sentence that names the part, and the layout or
    /// partial when the error is in one.
    pub fn reason(&self) -> String {
        match self {
            RenderError::Failed { part, error } => {
                let inner = innermost(error);
                let what =
                    inner.detail().map_or_else(|| inner.kind().to_string(), |d| format!("{}: {d}", inner.kind()));
                format!("rendering the {} template: {what}{}", part.key(), at_line(self.file(), self.line()))
            }
            limit => limit.to_string(),
        }
    }

    /// Whether a limit was reached (rather than, say, an undefined value).
    pub fn is_limit(&self) -> bool {
        !matches!(self, RenderError::Failed { .. })
    }

    /// The 1-based template line where the render stopped, when known (in
    /// [`RenderError::file`] when that is given).
    pub fn line(&self) -> Option<usize> {
        match self {
            RenderError::OutOfFuel { line, .. } => *line,
            RenderError::TooLarge { .. } => None,
            RenderError::Failed { error, .. } => innermost(error).line(),
        }
    }

    /// The library file (layout or partial) the render stopped in, by name;
    /// `None` for the part's own text or when unknown.
    pub fn file(&self) -> Option<&str> {
        match self {
            RenderError::OutOfFuel { file, .. } => file.as_deref(),
            RenderError::TooLarge { .. } => None,
            RenderError::Failed { part, error } => innermost(error).name().filter(|name| *name != part.template_name()),
        }
    }
}

fn at_line(file: Option<&str>, line: Option<usize>) -> String {
    match (file, line) {
        (Some(file), Some(line)) => format!(" at line {line} of {file}"),
        (Some(file), None) => format!(" in {file}"),
        (None, Some(line)) => format!(" at line {line}"),
        (None, None) => String::new(),
    }
}

/// An in-memory `io::Write` that refuses any write past `limit` bytes.
#[derive(Debug)]
pub struct CappedWriter {
    buffer: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl CappedWriter {
    pub fn new(limit: usize) -> CappedWriter {
        CappedWriter { buffer: Vec::new(), limit, exceeded: false }
    }

    /// Whether a write was refused.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.buffer
    }
}

impl io::Write for CappedWriter {
    /// All of `data` or nothing, so that the buffer only ever holds whole writes.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.exceeded || self.buffer.len().saturating_add(data.len()) > self.limit {
            self.exceeded = true;
            return Err(io::Error::other(format!("the output exceeds {} bytes", self.limit)));
        }
        self.buffer.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Renders `template` (whose environment has the fuel set) into at most
/// `limit` bytes.
pub(super) fn render(
    template: &Template<'_, '_>,
    part: Part,
    context: &Value,
    limit: usize,
) -> Result<String, RenderError> {
    let mut out = CappedWriter::new(limit);
    let rendered = template.render_captured_to(context.clone(), &mut out).map(drop);
    match rendered {
        _ if out.exceeded() => Err(RenderError::TooLarge { part, limit }),
        Ok(()) => {
            Ok(String::from_utf8(out.into_inner())
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
        }
        Err(error) if innermost(&error).kind() == ErrorKind::OutOfFuel => {
            let inner = innermost(&error);
            let file = inner.name().filter(|name| *name != template.name()).map(str::to_owned);
            Err(RenderError::OutOfFuel { part, file, line: inner.line() })
        }
        Err(error) => Err(RenderError::Failed { part, error }),
    }
}

/// The unsubscribe link of [`sample_variables`], which a campaign check
/// looks for in the rendered parts.
pub const SAMPLE_UNSUBSCRIBE_URL: &str = "https://unsubscribe.invalid/unsubscribe?token=sample";

/// The error where a render stopped: an error in an included template comes
/// wrapped in one at the `{% include %}`, as its source.
fn innermost(error: &minijinja::Error) -> &minijinja::Error {
    let mut inner = error;
    while let Some(source) = std::error::Error::source(inner).and_then(|e| e.downcast_ref::<minijinja::Error>()) {
        inner = source;
    }
    inner
}

/// Plausible variables of one customer, for the trial render of a campaign
/// check: every variable a template may use is present. The unsubscribe link
/// is marked safe, as the sender's is, so it renders unescaped in HTML too.
pub fn sample_variables() -> Value {
    let features: serde_json::Map<String, serde_json::Value> =
        super::template::feature_names().map(|name| (name.to_owned(), serde_json::Value::Null)).collect();
    let context = serde_json::json!({
        "customer": {
            "first_name": "Ana",
            "last_name": "Lima",
            "email": "ana.lima@example.com",
            "external_id": "C-1001",
            "birthday": "1990-04-12",
            "attributes": {},
        },
        "loyalty": {
            "points": 1200,
            "tier": "silver",
            "tier_direction": "up",
            "tier_changed_days_ago": 30,
            "points_expiring_30d": 100,
            "next_tier": "gold",
            "points_to_next_tier": 800,
        },
        "features": features,
        "propensity": 0.5,
        "propensity_decile": 5,
        "p_alive": 0.5,
        "expected_orders_90d": 0.4,
        "expected_orders_365d": 1.2,
        "clv": 120.0,
        "campaign": {"name": "sample", "description": ""},
        "variant": null,
    });
    let serde_json::Value::Object(context) = context else { unreachable!("json! of an object") };
    let mut variables: Vec<(String, Value)> =
        context.into_iter().map(|(k, v)| (k, Value::from(minijinja::value::Serde(v)))).collect();
    variables.push(("unsubscribe_url".to_owned(), Value::from_safe_string(SAMPLE_UNSUBSCRIBE_URL.to_owned())));
    Value::from_pairs(variables)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_capped_writer_takes_up_to_its_limit_and_nothing_past_it() {
        let mut out = CappedWriter::new(10);
        out.write_all(b"hello").unwrap();
        out.write_all(b"world").unwrap();
        assert!(!out.exceeded());
        let error = out.write_all(b"!").unwrap_err();
        assert!(error.to_string().contains("exceeds 10 bytes"), "{error}");
        assert!(out.exceeded());
        // Nothing of a refused write is kept, and nothing after it either.
        assert!(out.write(b"x").is_err());
        assert_eq!(out.into_inner(), b"helloworld");
    }

    #[test]
    fn a_write_across_the_limit_is_refused_whole() {
        let mut out = CappedWriter::new(10);
        out.write_all(b"12345678").unwrap();
        assert!(out.write(b"abc").is_err());
        assert_eq!(out.into_inner(), b"12345678");
    }
}
