//! One outbox row's message: the rendered parts and the headers around them.

use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};

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
}

/// The Message-ID of outbox row `outbox_id`: the same on every attempt, so
/// that a message sent twice after a crash can be recognised as one.
pub fn message_id(outbox_id: i64, run_id: i64, domain: &str) -> String {
    format!("<{outbox_id}.{run_id}.patron@{domain}>")
}

/// Text for the plain part when the campaign has only an HTML template.
pub fn text_from_html(html: &str) -> String {
    // Rendering into a string cannot fail for lack of width at 78 columns.
    html2text::from_read(html.as_bytes(), 78).unwrap_or_else(|_| html.to_owned())
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
    let to_address = envelope.to_email.parse().map_err(|e| format!("recipient address: {e}"))?;
    let mut builder = Message::builder()
        .from(from)
        .to(Mailbox::new(envelope.to_name.clone(), to_address))
        .subject(rendered.subject)
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
    built.map_err(|e| format!("building the message: {e}"))
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
        }
    }

    fn rendered() -> Rendered {
        Rendered { subject: "Hello".into(), html: Some("<p>Hi</p>".into()), text: "Hi".into() }
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
    fn text_is_made_from_html_when_there_is_no_text_template() {
        let text = text_from_html("<h1>Welcome</h1><p>Thanks for your <b>first</b> order.</p>");
        assert!(text.contains("Welcome") && text.contains("Thanks for your") && !text.contains("<p>"), "{text}");
    }
}
