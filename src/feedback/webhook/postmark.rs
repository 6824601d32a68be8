//! Postmark's bounce, spam complaint and subscription change webhooks,
//! authenticated by the Basic credentials written into the webhook's URL
//! (`https://user:password@host/webhooks/postmark`), as Postmark documents.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{Batch, Refused, header, json, same_secret};
use crate::feedback::{EventKind, ProviderEvent};

/// The credentials Postmark's requests must carry.
pub struct Postmark {
    user: String,
    password: SecretString,
}

/// One webhook record (Postmark posts one per request).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Record {
    record_type: String,
    #[serde(rename = "ID")]
    id: Option<serde_json::Value>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    email: Option<String>,
    recipient: Option<String>,
    #[serde(rename = "MessageID")]
    message_id: Option<String>,
    description: Option<String>,
    details: Option<String>,
    suppress_sending: Option<bool>,
    suppression_reason: Option<String>,
    changed_at: Option<String>,
}

impl Postmark {
    pub fn new(user: &str, password: SecretString) -> Self {
        Postmark { user: user.to_owned(), password }
    }

    pub fn read(&self, headers: &HeaderMap, body: &[u8]) -> Result<Batch, Refused> {
        self.authenticate(headers)?;
        let record: Record = json(body)?;
        let mut batch = Batch::default();
        match event(&record)? {
            Some(event) => batch.events.push(event),
            None => batch.ignored += 1,
        }
        Ok(batch)
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refused> {
        const NO_CREDENTIALS: Refused = Refused::Unauthenticated("no Basic credentials");
        let value = header(headers, "authorization").ok_or(NO_CREDENTIALS)?;
        let (scheme, encoded) = value.split_once(' ').ok_or(NO_CREDENTIALS)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(NO_CREDENTIALS);
        }
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| NO_CREDENTIALS)?;
        let colon = decoded.iter().position(|&b| b == b':').ok_or(NO_CREDENTIALS)?;
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        // Both compared, whatever the first gives.
        let user_ok = same_secret(user, self.user.as_bytes());
        let password_ok = same_secret(password, self.password.expose_secret().as_bytes());
        if user_ok & password_ok {
            Ok(())
        } else {
            Err(Refused::Unauthenticated("wrong Basic credentials for feedback.postmark_user"))
        }
    }
}

/// The event a record reports, `None` for one that changes nothing here
/// (a delivery, an open, a reactivation, an auto-responder).
fn event(record: &Record) -> Result<Option<ProviderEvent>, Refused> {
    let id = record.id.as_ref().map(|id| id.to_string().trim_matches('"').to_owned());
    let (kind, recipient, event_id) = match record.record_type.as_str() {
        "Bounce" | "SpamComplaint" => {
            let kind = match record.kind.as_deref().unwrap_or_default() {
                "HardBounce" | "BadEmailAddress" => EventKind::HardBounce,
                "SoftBounce" | "Transient" | "DnsError" => EventKind::SoftBounce,
                "SpamComplaint" => EventKind::Complaint,
                "Unsubscribe" => EventKind::Unsubscribe,
                _ => return Ok(None),
            };
            let id = id.ok_or_else(|| Refused::malformed(format!("a {} record without ID", record.record_type)))?;
            (kind, record.email.as_deref(), format!("bounce:{id}"))
        }
        "SubscriptionChange" => {
            if record.suppress_sending != Some(true) {
                return Ok(None);
            }
            let kind = match record.suppression_reason.as_deref().unwrap_or_default() {
                "HardBounce" => EventKind::HardBounce,
                "SpamComplaint" => EventKind::Complaint,
                _ => EventKind::Unsubscribe,
            };
            let event_id = format!(
                "subscription:{}:{}:{}",
                record.message_id.as_deref().unwrap_or_default(),
                record.recipient.as_deref().unwrap_or_default(),
                record.changed_at.as_deref().unwrap_or_default()
            );
            (kind, record.recipient.as_deref(), event_id)
        }
        _ => return Ok(None),
    };
    let recipient = recipient
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Refused::malformed(format!("a {} record without its address", record.record_type)))?;
    Ok(Some(ProviderEvent {
        kind,
        recipient: recipient.to_owned(),
        // Postmark's MessageID is its own id, not the Message-ID patron wrote.
        message_id: None,
        status: None,
        diagnostic: record.details.clone().filter(|d| !d.is_empty()).or_else(|| record.description.clone()),
        event_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postmark() -> Postmark {
        Postmark::new("patron", SecretString::from("correct horse"))
    }

    fn basic(credentials: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", format!("Basic {}", STANDARD.encode(credentials)).parse().unwrap());
        headers
    }

    const BOUNCE: &str = r#"{"RecordType":"Bounce","MessageStream":"outbound","ID":4323372036854775807,"Type":"HardBounce",
        "TypeCode":1,"Name":"Hard bounce","Tag":"Test","MessageID":"883953f4-6105-42a2-a16a-77a8eac79483","ServerID":23,
        "Description":"The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details":"Test bounce details","Email":"john@example.com","From":"sender@example.com",
        "BouncedAt":"2019-11-05T16:33:54.9070259Z","DumpAvailable":true,"Inactive":true,"CanActivate":true,"Subject":"Test subject"}"#;

    #[test]
    fn only_the_configured_credentials_pass() {
        assert!(postmark().authenticate(&basic("patron:correct horse")).is_ok());
        for wrong in ["patron:correct hors", "patron:correct horse ", "Patron:correct horse", "patron", ":"] {
            assert!(matches!(postmark().authenticate(&basic(wrong)), Err(Refused::Unauthenticated(_))), "{wrong}");
        }
        assert!(postmark().authenticate(&HeaderMap::new()).is_err());
        let mut bearer = HeaderMap::new();
        bearer.insert("authorization", "Bearer cGF0cm9uOmNvcnJlY3QgaG9yc2U=".parse().unwrap());
        assert!(postmark().authenticate(&bearer).is_err());
        // A wrong password is refused before the body is read.
        assert!(matches!(postmark().read(&basic("patron:x"), b"not json"), Err(Refused::Unauthenticated(_))));
        assert!(matches!(postmark().read(&basic("patron:correct horse"), b"not json"), Err(Refused::Malformed(_))));
    }

    #[test]
    fn bounces_complaints_and_subscription_changes_map_to_events() {
        let read = |body: &str| postmark().read(&basic("patron:correct horse"), body.as_bytes()).unwrap();
        let batch = read(BOUNCE);
        assert_eq!(
            batch.events,
            [ProviderEvent {
                kind: EventKind::HardBounce,
                recipient: "john@example.com".into(),
                message_id: None,
                status: None,
                diagnostic: Some("Test bounce details".into()),
                event_id: "bounce:4323372036854775807".into(),
            }]
        );
        assert_eq!(read(&BOUNCE.replace("\"HardBounce\"", "\"SoftBounce\"")).events[0].kind, EventKind::SoftBounce);
        assert_eq!(read(&BOUNCE.replace("\"HardBounce\"", "\"AutoResponder\"")), Batch { events: vec![], ignored: 1 });
        let complaint =
            BOUNCE.replace("\"Bounce\"", "\"SpamComplaint\"").replace("\"HardBounce\"", "\"SpamComplaint\"");
        assert_eq!(read(&complaint).events[0].kind, EventKind::Complaint);

        let change = r#"{"RecordType":"SubscriptionChange","MessageID":"883953f4-6105-42a2-a16a-77a8eac79483","ServerID":123456,
            "MessageStream":"outbound","ChangedAt":"2020-02-01T10:53:34.416071Z","Recipient":"bounced-address@wildbit.com",
            "Origin":"Recipient","SuppressSending":true,"SuppressionReason":"ManualSuppression","Tag":"my-tag"}"#;
        let event = &read(change).events[0];
        assert_eq!((event.kind, event.recipient.as_str()), (EventKind::Unsubscribe, "bounced-address@wildbit.com"));
        assert_eq!(
            event.event_id,
            "subscription:883953f4-6105-42a2-a16a-77a8eac79483:bounced-address@wildbit.com:2020-02-01T10:53:34.416071Z"
        );
        assert_eq!(read(&change.replace("ManualSuppression", "SpamComplaint")).events[0].kind, EventKind::Complaint);
        assert_eq!(read(&change.replace("\"SuppressSending\":true", "\"SuppressSending\":false")).ignored, 1);
        assert_eq!(read(r#"{"RecordType":"Delivery","Recipient":"a@example.com"}"#).ignored, 1);

        let anonymous = BOUNCE.replace("\"Email\":\"john@example.com\",", "");
        assert!(matches!(
            postmark().read(&basic("patron:correct horse"), anonymous.as_bytes()),
            Err(Refused::Malformed(_))
        ));
    }
}
