//! One outbox row's message: the rendered parts and the headers around them.

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};

use crate::message::{Part, Templates};

/// The rendered parts of one message.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub html: Option<String>,
    /// Always present: its own template, or text made from the HTML part.
    pub text: String,
}

/// Who the message is from and to, and how to unsubscribe from it.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub from: &'a str,
    pub reply_to: Option<&'a str>,
    pub to_name: Option<String>,
    pub to_email: &'a str,
    pub message_id: &'a str,
    /// For marketing mail: the one-click link and, when configured, a mailto address.
    pub unsubscribe: Option<(&'a str, Option<&'a str>)>,
    /// The envelope sender (VERP), when configured; else the From address.
    pub return_path: Option<String>,
}

/// Subject, HTML and text of one message; the text part is made from the
/// HTML when the campaign has no text template. A part over the render limits
/// fails the message with a reason that names the limit.
pub fn render(templates: &Templates, variables: &minijinja::Value) -> Result<Rendered, String> {
    let part = |part: Part| -> Result<Option<String>, String> {
        templates.render(part, variables).transpose().map_err(|e| e.reason())
    };
    // A header is one line: line breaks (and any whitespace run) become one
    // space; compose refuses the other control characters.
    let subject = part(Part::Subject)?.unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
    let html = part(Part::Html)?;
    let text = match part(Part::Text)? {
        Some(text) => text,
        None => html.as_deref().map(text_from_html).transpose()?.unwrap_or_default(),
    };
    Ok(Rendered { subject, html, text })
}

/// The Message-ID of outbox row `outbox_id`: the same on every attempt, so
/// that a message sent twice after a crash can be recognised as one, and
/// unique across databases through their random `installation` id (row and
/// run ids start at 1 in every new database).
pub fn message_id(outbox_id: i64, run_id: i64, installation: &str, domain: &str) -> String {
    format!("<{outbox_id}.{run_id}.{installation}.patron@{domain}>")
}

/// How deep the elements of an HTML part may nest for the text part to be
/// made from it. html2text (html5ever's tree builder) takes time in the
/// square of the depth: `<div>`s 1,000 deep take about 5 ms, 10,000 deep
/// 0.7 s, 100,000 deep (500 KB, well within the output limit) over a minute
/// (measured in the test build on the 2-core machine under load). Real mail
/// nests a few dozen deep.
pub const MAX_HTML_DEPTH: usize = 1000;

/// Text for the plain part when the campaign has only an HTML template; an
/// error when the HTML nests deeper than [`MAX_HTML_DEPTH`].
pub fn text_from_html(html: &str) -> Result<String, String> {
    if nesting_depth(html) > MAX_HTML_DEPTH {
        return Err(format!(
            "the html template's output nests elements more than {MAX_HTML_DEPTH} deep, too deep to make \
             the text part from"
        ));
    }
    // Rendering into a string cannot fail for lack of width at 78 columns.
    Ok(html2text::from_read(html.as_bytes(), 78).unwrap_or_else(|_| html.to_owned()))
}

/// Elements that never have content, so never nest.
const VOID: &[&str] =
    &["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"];

/// Elements that end an open element of their group (a `<li>` an open `<li>`)
/// unless one of the scope elements is opened nearer, as HTML parsers do.
const IMPLIED_ENDS: &[(&[&str], &[&str])] = &[
    (&["p"], &["div", "td", "th", "li", "table", "blockquote", "body"]),
    (&["li"], &["ul", "ol"]),
    (&["dt", "dd"], &["dl"]),
    (&["td", "th"], &["tr", "table"]),
    (&["tr"], &["table"]),
    (&["option"], &["select"]),
];

/// How deep the elements of `html` nest, at least (stopping once past
/// [`MAX_HTML_DEPTH`]): open tags push, end tags pop to their element, void
/// and self-closed elements do not nest, and the common implied ends (`<p>`,
/// `<li>`, `<td>`, `<tr>`...) are followed. Linear in the length of `html`.
fn nesting_depth(html: &str) -> usize {
    let html = html.to_ascii_lowercase();
    let mut open: Vec<&str> = Vec::new();
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut deepest = 0;
    let mut rest = html.as_str();
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        if let Some(comment) = rest.strip_prefix("!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let closing = rest.starts_with('/');
        let tag = &rest[usize::from(closing)..];
        let name = &tag[..tag.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(tag.len())];
        let end = rest.find('>').unwrap_or(rest.len());
        let self_closed = rest[..end].ends_with('/');
        rest = &rest[end..];
        if name.is_empty() || VOID.contains(&name) {
            continue;
        }
        if closing {
            if counts.get(name).is_some_and(|&n| n > 0) {
                while let Some(top) = open.pop() {
                    *counts.entry(top).or_default() -= 1;
                    if top == name {
                        break;
                    }
                }
            }
            continue;
        }
        if self_closed {
            continue;
        }
        if let Some((group, scope)) = IMPLIED_ENDS.iter().find(|(group, _)| group.contains(&name))
            && group.iter().any(|g| counts.get(g).is_some_and(|&n| n > 0))
        {
            // Only the nearest few levels: enough for real mail, and linear.
            let nearest = open.iter().rev().take(64).position(|n| group.contains(n) || scope.contains(n));
            if let Some(up) = nearest
                && group.contains(&open[open.len() - 1 - up])
            {
                for top in open.drain(open.len() - 1 - up..) {
                    *counts.entry(top).or_default() -= 1;
                }
            }
        }
        open.push(name);
        *counts.entry(name).or_default() += 1;
        deepest = deepest.max(open.len());
        if deepest > MAX_HTML_DEPTH {
            break;
        }
        if name == "style" || name == "script" {
            let close = format!("</{name}");
            rest = rest.find(&close).map_or("", |at| &rest[at..]);
        }
    }
    deepest
}

const LIST_UNSUBSCRIBE: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe");
const LIST_UNSUBSCRIBE_POST: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe-Post");

/// Builds the MIME message (multipart/alternative when there is an HTML part).
///
/// Every header value is checked for line breaks and control characters
/// first: the customer's name and the subject carry data that other writers
/// of the database may have put there, and lettre panics on a line break in
/// a display name instead of returning an error.
pub fn compose(envelope: &Envelope<'_>, rendered: Rendered) -> Result<Message, String> {
    one_line("the customer's name", envelope.to_name.as_deref().unwrap_or_default())?;
    one_line("the customer's address", envelope.to_email)?;
    one_line("the subject", &rendered.subject)?;
    one_line("the sender", envelope.from)?;
    one_line("the reply-to address", envelope.reply_to.unwrap_or_default())?;
    one_line("the Message-ID", envelope.message_id)?;
    if let Some((link, mailto)) = envelope.unsubscribe {
        one_line("the unsubscribe link", link)?;
        one_line("the unsubscribe address", mailto.unwrap_or_default())?;
    }
    let from: Mailbox = envelope.from.parse().map_err(|e| format!("sender `{}`: {e}", envelope.from))?;
    let to_address: Address = envelope.to_email.parse().map_err(|e| format!("recipient address: {e}"))?;
    let mut builder = Message::builder();
    if let Some(return_path) = &envelope.return_path {
        let sender: Address = return_path.parse().map_err(|e| format!("return path `{return_path}`: {e}"))?;
        let smtp_envelope = lettre::address::Envelope::new(Some(sender), vec![to_address.clone()])
            .map_err(|e| format!("envelope: {e}"))?;
        builder = builder.envelope(smtp_envelope);
    }
    let mut builder = builder
        .from(from)
        .to(Mailbox::new(envelope.to_name.clone(), to_address))
        .raw_header(subject(rendered.subject))
        .date_now()
        .message_id(Some(envelope.message_id.to_owned()));
    if let Some(reply_to) = envelope.reply_to {
        builder = builder.reply_to(reply_to.parse().map_err(|e| format!("reply-to `{reply_to}`: {e}"))?);
    }
    if let Some((link, mailto)) = envelope.unsubscribe {
        // RFC 2369 and RFC 8058: the https link first, one-click by POST.
        let mut value = format!("<{link}>");
        if let Some(address) = mailto {
            value.push_str(&format!(", <mailto:{address}?subject=unsubscribe>"));
        }
        builder = builder
            .raw_header(HeaderValue::new(LIST_UNSUBSCRIBE, value))
            .raw_header(HeaderValue::new(LIST_UNSUBSCRIBE_POST, "List-Unsubscribe=One-Click".to_owned()));
    }
    let built = match rendered.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(rendered.text, html)),
        None => builder.body(rendered.text),
    };
    let message = built.map_err(|e| format!("building the message: {e}"))?;
    header_lines_fit(&message)?;
    Ok(message)
}

/// The longest line RFC 5322 allows, without its CRLF.
pub const MAX_LINE_CHARS: usize = 998;

/// Checks that every header line fits RFC 5322's limit: lettre folds at
/// spaces, so a long value without one (a name of thousands of letters in
/// `To:` or the subject) would give a line that servers refuse or cut.
fn header_lines_fit(message: &Message) -> Result<(), String> {
    let mut header = "";
    for line in message.headers().to_string().split("\r\n") {
        if !line.starts_with([' ', '\t']) {
            header = line.split_once(':').map_or(line, |(name, _)| name);
        }
        if line.len() > MAX_LINE_CHARS {
            return Err(format!(
                "the {header} header has a line of {} characters, longer than the {MAX_LINE_CHARS} that RFC 5322 allows",
                line.len()
            ));
        }
    }
    Ok(())
}

const SUBJECT: HeaderName = HeaderName::new_from_ascii_str("Subject");

/// The Subject header. lettre encodes only words with non-ASCII characters,
/// so customer data such as a name `=?utf-8?b?...?=` would reach the header
/// as an encoded word that mail programs decode and show as something else
/// (display spoofing): a subject with `=?` is encoded whole instead.
fn subject(text: String) -> HeaderValue {
    if !text.contains("=?") {
        return HeaderValue::new(SUBJECT, text);
    }
    let mut encoded = String::new();
    {
        let mut writer = email_encoding::headers::writer::EmailWriter::new(&mut encoded, "Subject: ".len(), 0, false);
        // Writing into a String cannot fail.
        let _ = email_encoding::headers::rfc2047::encode(&text, &mut writer);
    }
    HeaderValue::dangerous_new_pre_encoded(SUBJECT, text, encoded)
}

/// A header value must be one line of text: no CR, LF or other control
/// character (a tab included), so that nothing can start a header of its own.
fn one_line(what: &str, value: &str) -> Result<(), String> {
    if value.chars().any(char::is_control) {
        Err(format!("{what} contains a line break or control character"))
    } else {
        Ok(())
    }
}

/// Runs `build` (rendering and composing one message) so that a panic in it,
/// say in a dependency, becomes that message's failure instead of taking the
/// sender down.
pub fn guarded<T>(build: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(build)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        tracing::error!(panic = %what, "building a message panicked; that message fails");
        Err(format!("building the message panicked: {what}"))
    })
}

/// The name to show beside the recipient's address, if the customer has one.
pub fn display_name(first: Option<&str>, last: Option<&str>) -> Option<String> {
    let name = [first, last].into_iter().flatten().map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>();
    if name.is_empty() { None } else { Some(name.join(" ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope<'a>(unsubscribe: Option<(&'a str, Option<&'a str>)>) -> Envelope<'a> {
        Envelope {
            from: "Shop <news@shop.example>",
            reply_to: Some("care@shop.example"),
            to_name: display_name(Some("Ana"), Some("Lima")),
            to_email: "ana@example.com",
            message_id: "<1.2.patron@mail.shop.example>",
            unsubscribe,
            return_path: None,
        }
    }

    fn rendered() -> Rendered {
        Rendered { subject: "Hello".into(), html: Some("<p>Hi</p>".into()), text: "Hi".into() }
    }

    #[test]
    fn an_encoded_word_in_customer_data_is_shown_as_written_not_decoded() {
        let spoof = "=?utf-8?b?UGFzc3dvcmQgcmVzZXQ=?="; // "Password reset"
        let mut parts = rendered();
        parts.subject = format!("Hi {spoof}");
        let mut to = envelope(None);
        to.to_name = Some(spoof.to_owned());
        let bytes = compose(&to, parts).unwrap().formatted();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains(&format!("Subject: Hi {spoof}")), "{text}");
        let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(parsed.subject(), Some(format!("Hi {spoof}").as_str()));
        let name = parsed.to().and_then(|a| a.first()).and_then(|a| a.name()).unwrap();
        assert_eq!(name, spoof);
        // An ordinary subject stays as lettre writes it.
        let plain = String::from_utf8(compose(&envelope(None), rendered()).unwrap().formatted()).unwrap();
        assert!(plain.contains("Subject: Hello\r\n"), "{plain}");
    }

    #[test]
    fn a_header_line_longer_than_998_characters_is_refused_naming_the_header() {
        let mut long_name = envelope(None);
        long_name.to_name = Some("a".repeat(1_000_000));
        assert_eq!(
            compose(&long_name, rendered()).unwrap_err(),
            "the To header has a line of 1000022 characters, longer than the 998 that RFC 5322 allows"
        );
        let mut long_subject = rendered();
        long_subject.subject = "b".repeat(2000);
        assert!(compose(&envelope(None), long_subject).unwrap_err().starts_with("the Subject header has a line"));
        // Long values with spaces are folded by lettre and pass.
        let mut folded = rendered();
        folded.subject = "word ".repeat(400);
        let text = String::from_utf8(compose(&envelope(None), folded).unwrap().formatted()).unwrap();
        assert!(text.split("\r\n").all(|line| line.len() <= MAX_LINE_CHARS));
    }

    #[test]
    fn the_return_path_is_the_envelope_sender_and_the_from_header_stays() {
        let plain = compose(&envelope(None), rendered()).unwrap();
        assert_eq!(plain.envelope().from().map(|a| a.to_string()), Some("news@shop.example".into()));
        let mut verp = envelope(None);
        verp.return_path = Some("bounces+7-00ff@mail.shop.example".into());
        let message = compose(&verp, rendered()).unwrap();
        assert_eq!(message.envelope().from().map(|a| a.to_string()), Some("bounces+7-00ff@mail.shop.example".into()));
        assert_eq!(message.envelope().to().iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["ana@example.com"]);
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(text.contains("From: Shop <news@shop.example>\r\n"), "{text}");
    }

    #[test]
    fn marketing_mail_carries_one_click_unsubscribe_headers() {
        let unsubscribe = Some(("https://shop.example/unsubscribe?token=abc", Some("unsubscribe@shop.example")));
        let message = compose(&envelope(unsubscribe), rendered()).unwrap();
        // Long headers are folded onto continuation lines; unfold them.
        let text = String::from_utf8(message.formatted()).unwrap().replace("\r\n ", " ");
        assert!(text.contains(
            "List-Unsubscribe: <https://shop.example/unsubscribe?token=abc>, \
             <mailto:unsubscribe@shop.example?subject=unsubscribe>\r\n"
        ));
        assert!(text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        assert!(text.contains("Message-ID: <1.2.patron@mail.shop.example>\r\n"));
        assert!(text.contains("To: \"Ana Lima\" <ana@example.com>\r\n"), "{text}");
        assert!(text.contains("Content-Type: multipart/alternative"));
    }

    #[test]
    fn other_mail_has_no_unsubscribe_headers_and_a_bad_sender_is_reported() {
        let text = String::from_utf8(compose(&envelope(None), rendered()).unwrap().formatted()).unwrap();
        assert!(!text.contains("List-Unsubscribe"));
        let mut bad = envelope(None);
        bad.from = "not an address";
        assert!(compose(&bad, rendered()).unwrap_err().starts_with("sender `not an address`"));
    }

    #[test]
    fn a_line_break_or_control_character_in_a_header_value_is_refused_before_lettre_sees_it() {
        let mut injected = envelope(None);
        injected.to_name = display_name(Some("Eve\r\nBcc: evil@example.com"), Some("Lima"));
        assert_eq!(
            compose(&injected, rendered()).unwrap_err(),
            "the customer's name contains a line break or control character"
        );
        let mut bell = envelope(None);
        bell.to_name = Some("Eve\u{7}".into());
        assert!(compose(&bell, rendered()).unwrap_err().starts_with("the customer's name contains"));
        let subject = Rendered { subject: "Hi\rBcc: evil@example.com".into(), ..rendered() };
        assert_eq!(
            compose(&envelope(None), subject).unwrap_err(),
            "the subject contains a line break or control character"
        );
        let mut from = envelope(None);
        from.from = "Shop <news@shop.example>\r\nBcc: evil@example.com";
        assert!(compose(&from, rendered()).unwrap_err().starts_with("the sender contains"));
        let mut reply_to = envelope(None);
        reply_to.reply_to = Some("care@shop.example\nBcc: evil@example.com");
        assert!(compose(&reply_to, rendered()).unwrap_err().starts_with("the reply-to address contains"));
        let mut link = envelope(Some(("https://shop.example/u?t=1\r\nBcc: evil@example.com", None)));
        link.to_name = None;
        assert!(compose(&link, rendered()).unwrap_err().starts_with("the unsubscribe link contains"));
        // A name that only looks like a header stays inside the To header (encoded).
        let mut odd = envelope(None);
        odd.to_name = Some("Ana \"Bcc: x@y\" O'Neil, Jr.".into());
        let text = String::from_utf8(compose(&odd, rendered()).unwrap().formatted()).unwrap();
        assert!(text.lines().any(|l| l.starts_with("To: ") && l.ends_with(" <ana@example.com>")), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("Bcc")), "{text}");
    }

    #[test]
    fn a_panic_while_building_becomes_the_message_s_failure() {
        assert_eq!(guarded(|| Ok::<_, String>(1)), Ok(1));
        assert_eq!(guarded(|| Err::<(), _>("no".to_owned())), Err("no".to_owned()));
        let error = guarded::<()>(|| panic!("a Display implementation returned an error unexpectedly"));
        assert_eq!(
            error.unwrap_err(),
            "building the message panicked: a Display implementation returned an error unexpectedly"
        );
        let number = 7;
        let error = guarded::<()>(|| panic!("formatted {number}"));
        assert_eq!(error.unwrap_err(), "building the message panicked: formatted 7");
    }

    #[test]
    fn html_nested_too_deep_for_the_text_part_is_refused_and_real_mail_is_not() {
        assert_eq!(nesting_depth("<div><p>a<br>b<img src=x /><p>c</div><!-- <div><div> -->"), 2);
        assert_eq!(nesting_depth("<ul><li>a<li>b<li><b>c</b></ul>"), 3);
        assert_eq!(nesting_depth("<table><tr><td>a<td>b<tr><td><table><tr><td>c</table></table>"), 6);
        assert_eq!(nesting_depth("<style>p > a { color: red } a<b {}</style><P>x</P>"), 1);
        // A long mail with implied ends stays shallow.
        let rows = "<tr><td>Shoes<td>42<td><a href='x'>buy</a>".repeat(5000);
        let mail =
            format!("<!DOCTYPE html><html><body><table>{rows}</table>{}</body></html>", "<p>Thanks".repeat(5000));
        assert_eq!(nesting_depth(&mail), 6);
        assert!(text_from_html(&mail).is_ok());
        let deep = "<div>".repeat(100_000);
        let started = std::time::Instant::now();
        assert_eq!(
            text_from_html(&deep).unwrap_err(),
            "the html template's output nests elements more than 1000 deep, too deep to make the text part from"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
        assert!(text_from_html(&"<div>".repeat(MAX_HTML_DEPTH)).is_ok());
    }

    #[test]
    fn text_is_made_from_html_when_there_is_no_text_template() {
        let text = text_from_html("<h1>Welcome</h1><p>Thanks for your <b>first</b> order.</p>").unwrap();
        assert!(text.contains("Welcome") && text.contains("Thanks for your") && !text.contains("<p>"), "{text}");
    }
}
