//! Amazon SES events delivered by SNS: `Notification` messages whose
//! `Message` is an SES bounce or complaint (as SES's notifications or its
//! event publishing write them).
//!
//! SNS signs each message (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA)
//! over a canonical string of its fields. The signature is checked against the
//! configured certificate (`feedback.ses_certificate_file`), never against the
//! `SigningCertURL` the request names, and its `TopicArn` must be the
//! configured one. A `SubscriptionConfirmation` is logged with its
//! `SubscribeURL`, for the operator to confirm by hand.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::RsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use serde::Deserialize;

use super::{Batch, Refused, json};
use crate::feedback::{EventKind, ProviderEvent};

/// The SNS topic accepted and the key its messages are signed with.
pub struct Ses {
    topic_arn: String,
    key: RsaPublicKey,
}

/// An SNS message as posted to an HTTP endpoint.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope {
    #[serde(rename = "Type")]
    kind: String,
    message_id: String,
    topic_arn: String,
    subject: Option<String>,
    message: String,
    timestamp: String,
    signature_version: String,
    signature: String,
    #[serde(rename = "SubscribeURL")]
    subscribe_url: Option<String>,
    token: Option<String>,
}

impl Ses {
    pub fn new(topic_arn: &str, key: RsaPublicKey) -> Self {
        Ses { topic_arn: topic_arn.to_owned(), key }
    }

    pub fn read(&self, body: &[u8]) -> Result<Batch, Refused> {
        let envelope: Envelope = json(body)?;
        let signed = string_to_sign(&envelope)?;
        if !verify(&self.key, &envelope.signature_version, signed.as_bytes(), &envelope.signature) {
            return Err(Refused::Unauthenticated(
                "the SNS signature does not verify with feedback.ses_certificate_file",
            ));
        }
        if envelope.topic_arn != self.topic_arn {
            return Err(Refused::Unauthenticated("the TopicArn is not feedback.ses_topic_arn"));
        }
        match envelope.kind.as_str() {
            "Notification" => Ok(events(&envelope.message, &envelope.message_id)),
            kind => {
                tracing::warn!(
                    topic = %envelope.topic_arn,
                    subscribe_url = envelope.subscribe_url.as_deref().unwrap_or_default(),
                    "SNS {kind} received; patron fetches nothing: to confirm the subscription, open its SubscribeURL"
                );
                Ok(Batch { events: Vec::new(), ignored: 1 })
            }
        }
    }
}

/// The string SNS signs: named fields, each name and value on a line of its own.
fn string_to_sign(envelope: &Envelope) -> Result<String, Refused> {
    let kind = envelope.kind.as_str();
    let required = |name: &str, value: Option<&'_ str>| -> Result<(), Refused> {
        value.map(|_| ()).ok_or_else(|| Refused::malformed(format!("an SNS {kind} without {name}")))
    };
    let fields: Vec<(&str, Option<&str>)> = match kind {
        "Notification" => vec![
            ("Message", Some(envelope.message.as_str())),
            ("MessageId", Some(envelope.message_id.as_str())),
            ("Subject", envelope.subject.as_deref()),
            ("Timestamp", Some(envelope.timestamp.as_str())),
            ("TopicArn", Some(envelope.topic_arn.as_str())),
            ("Type", Some(kind)),
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            required("SubscribeURL", envelope.subscribe_url.as_deref())?;
            required("Token", envelope.token.as_deref())?;
            vec![
                ("Message", Some(envelope.message.as_str())),
                ("MessageId", Some(envelope.message_id.as_str())),
                ("SubscribeURL", envelope.subscribe_url.as_deref()),
                ("Timestamp", Some(envelope.timestamp.as_str())),
                ("Token", envelope.token.as_deref()),
                ("TopicArn", Some(envelope.topic_arn.as_str())),
                ("Type", Some(kind)),
            ]
        }
        other => return Err(Refused::malformed(format!("an SNS message of unknown Type `{other}`"))),
    };
    let mut text = String::new();
    for (name, value) in fields {
        if let Some(value) = value {
            text.push_str(name);
            text.push('\n');
            text.push_str(value);
            text.push('\n');
        }
    }
    Ok(text)
}

/// Whether `signature` (base64) signs `signed` with `key`, by SignatureVersion.
fn verify(key: &RsaPublicKey, version: &str, signed: &[u8], signature: &str) -> bool {
    let Ok(bytes) = STANDARD.decode(signature.trim()) else { return false };
    let Ok(signature) = Signature::try_from(bytes.as_slice()) else { return false };
    match version {
        "1" => VerifyingKey::<sha1::Sha1>::new(key.clone()).verify(signed, &signature).is_ok(),
        "2" => VerifyingKey::<sha2::Sha256>::new(key.clone()).verify(signed, &signature).is_ok(),
        _ => false,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesEvent {
    notification_type: Option<String>,
    event_type: Option<String>,
    #[serde(default)]
    mail: Mail,
    bounce: Option<Bounce>,
    complaint: Option<Complaint>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mail {
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    common_headers: CommonHeaders,
}

#[derive(Debug, Deserialize)]
struct Header {
    name: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommonHeaders {
    message_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bounce {
    bounce_type: String,
    #[serde(default)]
    bounced_recipients: Vec<BouncedRecipient>,
    feedback_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BouncedRecipient {
    email_address: String,
    status: Option<String>,
    diagnostic_code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Complaint {
    #[serde(default)]
    complained_recipients: Vec<ComplainedRecipient>,
    feedback_id: Option<String>,
    complaint_feedback_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ComplainedRecipient {
    email_address: String,
}

/// The events of an SES notification; anything but a bounce or a complaint
/// (a delivery, SNS's own test message) is ignored.
fn events(message: &str, sns_message_id: &str) -> Batch {
    let Ok(event) = serde_json::from_str::<SesEvent>(message) else {
        return Batch { events: Vec::new(), ignored: 1 };
    };
    let message_id = patron_message_id(&event.mail);
    let kind = event.event_type.as_deref().or(event.notification_type.as_deref()).unwrap_or_default();
    let mut batch = Batch::default();
    match (kind, &event.bounce, &event.complaint) {
        ("Bounce", Some(bounce), _) => {
            let kind = if bounce.bounce_type == "Permanent" { EventKind::HardBounce } else { EventKind::SoftBounce };
            let event_id = bounce.feedback_id.as_deref().unwrap_or(sns_message_id);
            for recipient in &bounce.bounced_recipients {
                batch.events.push(ProviderEvent {
                    kind,
                    recipient: recipient.email_address.clone(),
                    message_id: message_id.clone(),
                    status: recipient.status.clone(),
                    diagnostic: recipient
                        .diagnostic_code
                        .clone()
                        .or_else(|| Some(format!("SES {} bounce", bounce.bounce_type))),
                    event_id: event_id.to_owned(),
                });
            }
        }
        ("Complaint", _, Some(complaint)) => {
            let event_id = complaint.feedback_id.as_deref().unwrap_or(sns_message_id);
            for recipient in &complaint.complained_recipients {
                batch.events.push(ProviderEvent {
                    kind: EventKind::Complaint,
                    recipient: recipient.email_address.clone(),
                    message_id: message_id.clone(),
                    status: None,
                    diagnostic: complaint.complaint_feedback_type.clone(),
                    event_id: event_id.to_owned(),
                });
            }
        }
        _ => batch.ignored += 1,
    }
    batch
}

/// The Message-ID patron gave the message: its header, as SES quotes it
/// (`mail.headers`); SES's own `mail.messageId` is another id altogether.
fn patron_message_id(mail: &Mail) -> Option<String> {
    mail.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("Message-ID"))
        .map(|h| h.value.clone())
        .or_else(|| mail.common_headers.message_id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::RsaPrivateKey;
    use rsa::pkcs1v15::SigningKey;
    use rsa::signature::{SignatureEncoding, Signer};

    fn key() -> RsaPrivateKey {
        RsaPrivateKey::new(&mut rand_core::OsRng, 1024).unwrap()
    }

    fn envelope(message: &str, subject: Option<&str>) -> Envelope {
        Envelope {
            kind: "Notification".into(),
            message_id: "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324".into(),
            topic_arn: "arn:aws:sns:us-west-2:123456789012:ses-feedback".into(),
            subject: subject.map(Into::into),
            message: message.into(),
            timestamp: "2026-12-01T12:00:00.000Z".into(),
            signature_version: "1".into(),
            signature: String::new(),
            subscribe_url: None,
            token: None,
        }
    }

    #[test]
    fn the_string_to_sign_names_each_field_and_leaves_out_a_missing_subject() {
        let text = string_to_sign(&envelope("{\"a\":\n1}", None)).unwrap();
        assert_eq!(
            text,
            "Message\n{\"a\":\n1}\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\nTimestamp\n2026-12-01T12:00:00.000Z\n\
             TopicArn\narn:aws:sns:us-west-2:123456789012:ses-feedback\nType\nNotification\n"
        );
        let with_subject = string_to_sign(&envelope("m", Some("Hi"))).unwrap();
        assert!(with_subject.contains("MessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\nSubject\nHi\nTimestamp\n"));
        let mut confirmation = envelope("m", None);
        confirmation.kind = "SubscriptionConfirmation".into();
        assert!(matches!(string_to_sign(&confirmation), Err(Refused::Malformed(_))));
        confirmation.subscribe_url = Some("https://sns.example/confirm".into());
        confirmation.token = Some("tok".into());
        let text = string_to_sign(&confirmation).unwrap();
        assert!(
            text.contains("SubscribeURL\nhttps://sns.example/confirm\nTimestamp\n")
                && text.contains("Token\ntok\nTopicArn\n")
        );
    }

    #[test]
    fn both_signature_versions_verify_and_a_changed_byte_or_version_does_not() {
        let private = key();
        let public = private.to_public_key();
        let text = b"Message\nm\nType\nNotification\n";
        let v1 = STANDARD.encode(SigningKey::<sha1::Sha1>::new(private.clone()).sign(text).to_bytes());
        let v2 = STANDARD.encode(SigningKey::<sha2::Sha256>::new(private).sign(text).to_bytes());
        assert!(verify(&public, "1", text, &v1));
        assert!(verify(&public, "2", text, &v2));
        assert!(!verify(&public, "2", text, &v1), "a SHA-1 signature is not a version 2 one");
        assert!(!verify(&public, "1", b"Message\nM\nType\nNotification\n", &v1));
        assert!(!verify(&public, "3", text, &v2));
        assert!(!verify(&public, "1", text, "not base64!"));
        assert!(!verify(&key().to_public_key(), "1", text, &v1), "another key");
    }

    #[test]
    fn bounces_and_complaints_map_to_events_with_patron_s_message_id() {
        let bounce = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General",
            "bouncedRecipients":[{"emailAddress":"a@example.com","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],
            "timestamp":"2026-12-01T12:00:00.000Z","feedbackId":"0100-fb1"},
            "mail":{"messageId":"0100-ses-id","headers":[{"name":"From","value":"shop@example.com"},{"name":"Message-ID","value":"<7.1.abc.patron@example.com>"}],
            "commonHeaders":{"messageId":"0100-ses-id"}}}"#;
        let batch = events(bounce, "sns-1");
        assert_eq!(
            batch.events,
            [ProviderEvent {
                kind: EventKind::HardBounce,
                recipient: "a@example.com".into(),
                message_id: Some("<7.1.abc.patron@example.com>".into()),
                status: Some("5.1.1".into()),
                diagnostic: Some("smtp; 550 5.1.1 user unknown".into()),
                event_id: "0100-fb1".into(),
            }]
        );
        let transient = bounce.replace("Permanent", "Transient").replace("\"notificationType\"", "\"eventType\"");
        assert_eq!(events(&transient, "sns-1").events[0].kind, EventKind::SoftBounce);

        let complaint = r#"{"eventType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"b@example.com"}],
            "complaintFeedbackType":"abuse"},"mail":{"messageId":"0100-ses-id"}}"#;
        let batch = events(complaint, "sns-2");
        assert_eq!(batch.events.len(), 1);
        let event = &batch.events[0];
        assert_eq!(
            (event.kind, event.recipient.as_str(), event.event_id.as_str()),
            (EventKind::Complaint, "b@example.com", "sns-2")
        );
        assert_eq!(event.message_id, None);

        assert_eq!(events(r#"{"eventType":"Delivery","mail":{}}"#, "x"), Batch { events: vec![], ignored: 1 });
        assert_eq!(events("Successfully validated SNS topic", "x"), Batch { events: vec![], ignored: 1 });
    }
}
