//! SendGrid's Event Webhook, authenticated by its Signed Event Webhook: an
//! ECDSA P-256 / SHA-256 signature (`X-Twilio-Email-Event-Webhook-Signature`,
//! base64 DER) over the `X-Twilio-Email-Event-Webhook-Timestamp` header's
//! value followed by the raw body, checked with the configured public key.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::Deserialize;

use super::{Batch, Refused, header, json};
use crate::feedback::{EventKind, ProviderEvent};

pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

pub struct SendGrid {
    key: VerifyingKey,
}

/// One event of the posted array; only the fields used are read.
#[derive(Debug, Deserialize)]
struct Event {
    event: String,
    email: Option<String>,
    sg_event_id: Option<String>,
    #[serde(rename = "smtp-id")]
    smtp_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    reason: Option<String>,
    status: Option<String>,
}

impl SendGrid {
    pub fn new(key: VerifyingKey) -> Self {
        SendGrid { key }
    }

    pub fn read(&self, headers: &HeaderMap, body: &[u8]) -> Result<Batch, Refused> {
        let signature = header(headers, SIGNATURE_HEADER).ok_or(Refused::Unauthenticated("no signature header"))?;
        let timestamp = header(headers, TIMESTAMP_HEADER).ok_or(Refused::Unauthenticated("no timestamp header"))?;
        if !verify(&self.key, timestamp, body, signature) {
            return Err(Refused::Unauthenticated("the signature does not verify with feedback.sendgrid_public_key"));
        }
        let events: Vec<Event> = json(body)?;
        let mut batch = Batch::default();
        for event in &events {
            match provider_event(event) {
                Some(mapped) => batch.events.push(mapped),
                None => batch.ignored += 1,
            }
        }
        Ok(batch)
    }
}

/// Whether `signature` (base64 DER) signs the timestamp followed by the body.
fn verify(key: &VerifyingKey, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Ok(der) = STANDARD.decode(signature) else { return false };
    let Ok(signature) = Signature::from_der(&der) else { return false };
    // (r, s) and (r, n - s) sign alike; the verifier wants the low s.
    let signature = signature.normalize_s().unwrap_or(signature);
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    key.verify(&signed, &signature).is_ok()
}

/// The event that changes something here; deliveries, opens, clicks,
/// deferrals and drops for other reasons are ignored.
fn provider_event(event: &Event) -> Option<ProviderEvent> {
    let kind = match event.event.as_str() {
        "bounce" if event.kind.as_deref() == Some("blocked") => EventKind::SoftBounce,
        "bounce" => EventKind::HardBounce,
        "dropped" => match event.reason.as_deref().unwrap_or_default() {
            "Bounced Address" => EventKind::HardBounce,
            "Spam Reporting Address" => EventKind::Complaint,
            "Unsubscribed Address" => EventKind::Unsubscribe,
            _ => return None,
        },
        "spamreport" => EventKind::Complaint,
        "unsubscribe" | "group_unsubscribe" => EventKind::Unsubscribe,
        _ => return None,
    };
    let (Some(recipient), Some(event_id)) = (&event.email, &event.sg_event_id) else {
        tracing::warn!(event = %event.event, "SendGrid event without email or sg_event_id ignored");
        return None;
    };
    Some(ProviderEvent {
        kind,
        recipient: recipient.clone(),
        message_id: event.smtp_id.clone(),
        status: event.status.clone().filter(|s| !s.is_empty()),
        diagnostic: event.reason.clone(),
        event_id: event_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    fn signed(key: &SigningKey, timestamp: &str, body: &[u8]) -> HeaderMap {
        let signature: Signature = key.sign(&[timestamp.as_bytes(), body].concat());
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, STANDARD.encode(signature.to_der().as_bytes()).parse().unwrap());
        headers.insert(TIMESTAMP_HEADER, timestamp.parse().unwrap());
        headers
    }

    const EVENTS: &str = r#"[
        {"email":"a@example.com","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"bounce",
         "category":"cat facts","sg_event_id":"6g4ZI7SA-xmRDv57GoPIPw==","sg_message_id":"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
         "reason":"500 unknown recipient","status":"5.0.0","type":"bounce"},
        {"email":"b@example.com","timestamp":1513299569,"event":"bounce","sg_event_id":"b1","reason":"blocked","status":"4.0.0","type":"blocked"},
        {"email":"c@example.com","timestamp":1513299569,"event":"spamreport","sg_event_id":"s1"},
        {"email":"d@example.com","timestamp":1513299569,"event":"group_unsubscribe","sg_event_id":"u1","asm_group_id":10},
        {"email":"e@example.com","timestamp":1513299569,"event":"dropped","sg_event_id":"d1","reason":"Bounced Address","status":"5.0.0"},
        {"email":"f@example.com","timestamp":1513299569,"event":"dropped","sg_event_id":"d2","reason":"Invalid SMTPAPI header"},
        {"email":"g@example.com","timestamp":1513299569,"event":"delivered","sg_event_id":"x1","response":"250 OK"},
        {"email":"h@example.com","timestamp":1513299569,"event":"open","sg_event_id":"x2"}
    ]"#;

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let verifying = *key.verifying_key();
        let body = b"[{\"event\":\"open\"}]";
        let headers = signed(&key, "1700000000", body);
        let signature = header(&headers, SIGNATURE_HEADER).unwrap();
        assert!(verify(&verifying, "1700000000", body, signature));
        assert!(!verify(&verifying, "1700000001", body, signature));
        assert!(!verify(&verifying, "1700000000", b"[{\"event\":\"open\"} ]", signature));
        assert!(!verify(&verifying, "1700000000", body, "AAAA"));
        let other = SigningKey::random(&mut rand_core::OsRng);
        assert!(!verify(other.verifying_key(), "1700000000", body, signature));

        // The key as SendGrid shows it: base64 DER.
        let shown = STANDARD.encode(verifying.to_public_key_der().unwrap().as_bytes());
        let sendgrid = SendGrid::new(crate::config::keys::sendgrid_key(&shown).unwrap());
        assert_eq!(sendgrid.read(&headers, body).unwrap().ignored, 1);
        assert!(matches!(sendgrid.read(&headers, b"[]"), Err(Refused::Unauthenticated(_))));
        assert!(matches!(sendgrid.read(&HeaderMap::new(), body), Err(Refused::Unauthenticated(_))));
        let not_json = signed(&key, "1", b"{");
        assert!(matches!(sendgrid.read(&not_json, b"{"), Err(Refused::Malformed(_))));
        assert!(crate::config::keys::sendgrid_key("bm90IGEga2V5").is_err());
    }

    #[test]
    fn events_map_by_kind_type_and_drop_reason() {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let batch =
            SendGrid::new(*key.verifying_key()).read(&signed(&key, "1", EVENTS.as_bytes()), EVENTS.as_bytes()).unwrap();
        let kinds: Vec<(&str, EventKind)> = batch.events.iter().map(|e| (e.recipient.as_str(), e.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("a@example.com", EventKind::HardBounce),
                ("b@example.com", EventKind::SoftBounce),
                ("c@example.com", EventKind::Complaint),
                ("d@example.com", EventKind::Unsubscribe),
                ("e@example.com", EventKind::HardBounce),
            ]
        );
        assert_eq!(batch.ignored, 3);
        let first = &batch.events[0];
        assert_eq!(first.message_id.as_deref(), Some("<14c5d75ce93.dfd.64b469@ismtpd-555>"));
        assert_eq!(
            (first.status.as_deref(), first.diagnostic.as_deref()),
            (Some("5.0.0"), Some("500 unknown recipient"))
        );
        assert_eq!(first.event_id, "6g4ZI7SA-xmRDv57GoPIPw==");
    }
}
