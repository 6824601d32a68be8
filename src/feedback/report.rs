//! What a message that came back says: a delivery status notification
//! (RFC 3464), a spam complaint in the Abuse Reporting Format (RFC 5965), an
//! unsubscribe request sent to the `unsubscribe.mailto` address, or none of
//! these. Pure: bytes in, a [`Report`] out. Nothing is guessed from free
//! text: a message without the machine-readable parts is not a report.

use mail_parser::{Message, MessageParser, MimeHeaders};

/// What one incoming message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A DSN with at least one failed or delayed recipient.
    Bounces(Vec<Bounce>),
    /// An ARF report: someone marked the message as spam (or fraud, a virus).
    Complaint { feedback_type: String, recipient: Option<String> },
    /// A message to the unsubscribe address, from this address.
    UnsubscribeRequest { from: String },
    /// Anything else, with the reason it is not used.
    NotAReport(String),
}

/// One recipient of a DSN that was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// The address the report names (Final-Recipient, else Original-Recipient).
    pub recipient: Option<String>,
    /// The enhanced status code, such as `5.1.1`.
    pub status: String,
    /// A permanent failure (5.x.x): the address is not tried again.
    pub permanent: bool,
    pub diagnostic: Option<String>,
}

/// A parsed incoming message: what it is and what can tie it to a message patron sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: Kind,
    /// The Message-ID of the message reported on, when the report quotes it.
    pub original_message_id: Option<String>,
    /// Addresses the report was delivered to, and the quoted message's
    /// Return-Path: where a VERP token can be.
    pub return_addresses: Vec<String>,
    /// The report's own Message-ID, which makes a second delivery of it recognisable.
    pub report_id: Option<String>,
}

/// Reads `bytes` as an incoming message. `unsubscribe_mailto` is the
/// address of `unsubscribe.mailto`, if configured.
pub fn parse(bytes: &[u8], unsubscribe_mailto: Option<&str>) -> Report {
    let Some(message) = MessageParser::default().parse(bytes) else {
        return Report {
            kind: Kind::NotAReport("not a mail message: no header found".into()),
            original_message_id: None,
            return_addresses: Vec::new(),
            report_id: None,
        };
    };
    let mut return_addresses = delivered_to(&message);
    let original = original_message(&message);
    if let Some(original) = &original {
        return_addresses.extend(original.return_path.iter().cloned());
    }
    let kind = match report_type(&message).as_deref() {
        Some("delivery-status") => delivery_status(&message),
        Some("feedback-report") => feedback_report(&message, original.as_ref()),
        Some(other) => {
            Kind::NotAReport(format!("a report of type `{other}`, neither delivery-status nor feedback-report"))
        }
        None => unsubscribe_request(&message, &return_addresses, unsubscribe_mailto),
    };
    Report {
        kind,
        original_message_id: original.and_then(|o| o.message_id),
        return_addresses,
        report_id: message.message_id().map(str::to_owned),
    }
}

/// The `report-type` of a `multipart/report` message, lower-cased.
fn report_type(message: &Message<'_>) -> Option<String> {
    let content_type = message.content_type()?;
    let is_report = content_type.ctype().eq_ignore_ascii_case("multipart")
        && content_type.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"));
    is_report.then(|| content_type.attribute("report-type").unwrap_or("").to_ascii_lowercase())
}

/// The addresses of the report's delivery headers, in the order a mail
/// server adds them.
fn delivered_to(message: &Message<'_>) -> Vec<String> {
    const HEADERS: [&str; 5] = ["delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to"];
    let mut addresses = Vec::new();
    for wanted in HEADERS {
        for (name, value) in message.headers_raw() {
            if name.eq_ignore_ascii_case(wanted) {
                addresses.extend(value.split(',').filter_map(bare_address));
            }
        }
    }
    addresses
}

/// `Name <a@b>`, `<a@b>` or `a@b` as `a@b`; `None` without an `@`.
fn bare_address(text: &str) -> Option<String> {
    let text = text.trim();
    let inner = match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => &text[open + 1..close],
        _ => text,
    };
    let inner = inner.trim();
    inner.contains('@').then(|| inner.to_owned())
}

/// What the report quotes of the message it is about.
struct Original {
    message_id: Option<String>,
    return_path: Option<String>,
    to: Option<String>,
}

/// The quoted message (`message/rfc822`) or its headers (`text/rfc822-headers`).
fn original_message(message: &Message<'_>) -> Option<Original> {
    for part in message.parts.iter().skip(1) {
        let Some(content_type) = part.content_type() else { continue };
        let (ctype, subtype) = (content_type.ctype(), content_type.subtype().unwrap_or(""));
        let quoted = match (ctype.to_ascii_lowercase().as_str(), subtype.to_ascii_lowercase().as_str()) {
            ("message", "rfc822" | "global") => part.message().map(original_of),
            ("text", "rfc822-headers") | ("message", "global-headers") => {
                MessageParser::default().parse_headers(part.contents()).as_ref().map(original_of)
            }
            _ => None,
        };
        if quoted.is_some() {
            return quoted;
        }
    }
    None
}

fn original_of(message: &Message<'_>) -> Original {
    Original {
        message_id: message.message_id().map(str::to_owned),
        return_path: message.header_raw("Return-Path").and_then(bare_address),
        to: message.header_raw("To").and_then(|to| to.split(',').find_map(bare_address)),
    }
}

/// The body of the first part of type `message/{subtype}` (or its `global-` form).
fn machine_part<'a>(message: &'a Message<'_>, subtype: &str) -> Option<&'a [u8]> {
    let global = format!("global-{subtype}");
    message.parts.iter().find_map(|part| {
        let content_type = part.content_type()?;
        let wanted = content_type.ctype().eq_ignore_ascii_case("message")
            && content_type
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case(subtype) || s.eq_ignore_ascii_case(&global));
        wanted.then(|| part.contents())
    })
}

/// The failed and delayed recipients of a DSN.
fn delivery_status(message: &Message<'_>) -> Kind {
    let Some(body) = machine_part(message, "delivery-status") else {
        return Kind::NotAReport("a delivery report without a message/delivery-status part".into());
    };
    let groups = field_groups(body);
    let mut bounces = Vec::new();
    // The first group is about the message; the others, one per recipient.
    for fields in groups.iter().skip(1) {
        let action = field(fields, "action").unwrap_or_default().to_ascii_lowercase();
        if action != "failed" && action != "delayed" {
            continue;
        }
        let Some(status) = field(fields, "status").and_then(status_code) else { continue };
        let recipient = field(fields, "final-recipient").or_else(|| field(fields, "original-recipient"));
        bounces.push(Bounce {
            recipient: recipient.and_then(|r| bare_address(typed_value(r))),
            permanent: action == "failed" && status.starts_with('5'),
            status,
            diagnostic: field(fields, "diagnostic-code").map(|d| typed_value(d).to_owned()),
        });
    }
    if bounces.is_empty() {
        Kind::NotAReport("a delivery report with no failed or delayed recipient".into())
    } else {
        Kind::Bounces(bounces)
    }
}

/// A complaint, from the `message/feedback-report` part of an ARF report.
fn feedback_report(message: &Message<'_>, original: Option<&Original>) -> Kind {
    let Some(body) = machine_part(message, "feedback-report") else {
        return Kind::NotAReport("a feedback report without a message/feedback-report part".into());
    };
    let fields = field_groups(body).into_iter().next().unwrap_or_default();
    let Some(feedback_type) = field(&fields, "feedback-type").map(str::to_ascii_lowercase) else {
        return Kind::NotAReport("a feedback report without a Feedback-Type".into());
    };
    if feedback_type == "not-spam" {
        return Kind::NotAReport("a feedback report of type not-spam".into());
    }
    let recipient =
        field(&fields, "original-rcpt-to").and_then(bare_address).or_else(|| original.and_then(|o| o.to.clone()));
    Kind::Complaint { feedback_type, recipient }
}

/// A plain message to the unsubscribe address: its sender wants no more mail.
fn unsubscribe_request(message: &Message<'_>, delivered_to: &[String], mailto: Option<&str>) -> Kind {
    let to_unsubscribe = mailto.is_some_and(|mailto| delivered_to.iter().any(|a| a.eq_ignore_ascii_case(mailto)));
    if !to_unsubscribe {
        return Kind::NotAReport("neither a delivery report, a feedback report nor an unsubscribe request".into());
    }
    match message.from().and_then(|from| from.first()).and_then(|a| a.address()) {
        Some(from) => Kind::UnsubscribeRequest { from: from.to_owned() },
        None => Kind::NotAReport("an unsubscribe request without a From address".into()),
    }
}

/// The fields of a machine-readable part: groups separated by blank lines,
/// `Name: value` with continuation lines unfolded; names lower-cased.
fn field_groups(body: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = String::from_utf8_lossy(body);
    let mut groups: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        let group = groups.last_mut().expect("never empty");
        if line.trim().is_empty() {
            if !group.is_empty() {
                groups.push(Vec::new());
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = group.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            group.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// `rfc822; a@b` as `a@b`: the value after its type.
fn typed_value(text: &str) -> &str {
    text.split_once(';').map_or(text, |(_, value)| value).trim()
}

/// An enhanced status code `class.subject.detail` with class 2, 4 or 5.
fn status_code(text: &str) -> Option<String> {
    let code = text.split_whitespace().next()?;
    let parts: Vec<&str> = code.split('.').collect();
    let valid = parts.len() == 3
        && ["2", "4", "5"].contains(&parts[0])
        && parts[1..].iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    valid.then(|| code.to_owned())
}

#[cfg(test)]
mod tests;
