//! Provider webhooks through the binary: after a campaign is sent, the
//! documented payloads of Amazon SES (through SNS), Postmark and SendGrid,
//! signed or authenticated as each provider does, suppress the right
//! addresses once; a request that fails authentication gets 401 and changes
//! nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::delivery::{Serving, count, free_port, wait_for_port};
use crate::feedback::{feedback_env, sent_campaign, sent_to, suppressions};
use crate::support::{TestEnv, each_backend};

const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:patron-feedback";

/// `patron serve` with the feedback settings and `settings`, once it listens.
fn serve(env: &TestEnv, settings: &[(&str, &str)]) -> (Serving, u16) {
    let port = free_port();
    let mut command = env.command(&["serve"]);
    feedback_env(&mut command).env("PATRON__HTTP__LISTEN", format!("127.0.0.1:{port}"));
    for (key, value) in settings {
        command.env(key, value);
    }
    let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let serving = Serving(child);
    wait_for_port(port);
    (serving, port)
}

/// One JSON POST to 127.0.0.1:`port` with `headers`; the status code.
fn post(port: u16, target: &str, headers: &[(&str, String)], body: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to patron serve");
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n\
         {extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split(' ').nth(1).unwrap_or_default().parse().unwrap_or(0)
}

/// What a webhook may change: the events and the suppressions.
fn state(env: &TestEnv) -> (i64, Vec<String>) {
    (count(env, "SELECT COUNT(*) FROM feedback_events"), suppressions(env))
}

fn events(env: &TestEnv) -> Vec<String> {
    env.strings(
        "SELECT f.source || ' ' || f.kind || ' ' || COALESCE(f.matched_by, '-') || ' ' || COALESCE(f.email, '-') \
         FROM feedback_events f ORDER BY f.id",
    )
}

// --- Amazon SES through SNS ---

/// An RSA key and a self-signed certificate for it, as SNS signs with.
fn sns_signer() -> (rsa::RsaPrivateKey, String) {
    use x509_cert::builder::{Builder, CertificateBuilder, Profile};
    use x509_cert::der::EncodePem;
    use x509_cert::der::pem::LineEnding;
    use x509_cert::spki::SubjectPublicKeyInfoOwned;

    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
    let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).unwrap();
    let builder = CertificateBuilder::new(
        Profile::Root,
        x509_cert::serial_number::SerialNumber::from(1u32),
        x509_cert::time::Validity::from_now(Duration::from_secs(86_400)).unwrap(),
        x509_cert::name::Name::from_str("CN=sns.eu-west-1.amazonaws.com").unwrap(),
        spki,
        &signer,
    )
    .unwrap();
    let certificate = builder.build::<rsa::pkcs1v15::Signature>().unwrap();
    (key, certificate.to_pem(LineEnding::LF).unwrap())
}

/// An SNS message of `kind` carrying `message`, signed as SNS signs
/// (SignatureVersion `version`) over its canonical string.
fn sns(key: &rsa::RsaPrivateKey, version: u8, kind: &str, topic: &str, message: &str, id: &str) -> String {
    use rsa::signature::{SignatureEncoding, Signer};
    let mut fields = vec![("Message", message.to_owned()), ("MessageId", id.to_owned())];
    if kind == "SubscriptionConfirmation" {
        fields.push((
            "SubscribeURL",
            format!(
                "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic}&Token=2336412f37"
            ),
        ));
    }
    fields.push(("Timestamp", "2026-12-01T12:00:00.000Z".to_owned()));
    if kind == "SubscriptionConfirmation" {
        fields.push(("Token", "2336412f37".to_owned()));
    }
    fields.push(("TopicArn", topic.to_owned()));
    fields.push(("Type", kind.to_owned()));
    let canonical: String = fields.iter().map(|(name, value)| format!("{name}\n{value}\n")).collect();
    let signature = match version {
        1 => rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(key.clone()).sign(canonical.as_bytes()).to_vec(),
        _ => rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone()).sign(canonical.as_bytes()).to_vec(),
    };
    let mut body = serde_json::Map::new();
    for (name, value) in fields {
        body.insert(name.to_owned(), json!(value));
    }
    body.insert("SignatureVersion".into(), json!(version.to_string()));
    body.insert("Signature".into(), json!(STANDARD.encode(signature)));
    body.insert(
        "SigningCertURL".into(),
        json!("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem"),
    );
    body.insert("UnsubscribeURL".into(), json!("https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe"));
    serde_json::Value::Object(body).to_string()
}

/// An SES bounce notification, with the original headers (Message-ID among them).
fn ses_bounce(recipient: &str, message_id: &str, feedback_id: &str) -> String {
    json!({
        "notificationType": "Bounce",
        "bounce": {
            "feedbackId": feedback_id,
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{
                "emailAddress": recipient, "action": "failed", "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown"
            }],
            "timestamp": "2026-12-01T12:00:00.000Z",
            "remoteMtaIp": "127.0.2.0",
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com"
        },
        "mail": {
            "timestamp": "2026-12-01T11:59:59.000Z",
            "source": "shop@example.com",
            "messageId": "0100017c1bb2c7d3-ses-own-id-000000",
            "destination": [recipient],
            "headersTruncated": false,
            "headers": [
                {"name": "From", "value": "Shop <shop@example.com>"},
                {"name": "To", "value": recipient},
                {"name": "Message-ID", "value": message_id}
            ],
            "commonHeaders": {"from": ["Shop <shop@example.com>"], "to": [recipient], "messageId": "0100017c1bb2c7d3-ses-own-id-000000"}
        }
    })
    .to_string()
}

fn ses_complaint(recipient: &str, feedback_id: &str) -> String {
    json!({
        "eventType": "Complaint",
        "complaint": {
            "feedbackId": feedback_id,
            "complaintSubType": null,
            "complainedRecipients": [{"emailAddress": recipient}],
            "timestamp": "2026-12-01T12:05:00.000Z",
            "userAgent": "ExampleCorp Feedback Loop (V0.01)",
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2026-12-01T12:04:00.000Z"
        },
        "mail": {"messageId": "0100017c1bb2c7d3-ses-own-id-000001", "destination": [recipient]}
    })
    .to_string()
}

#[test]
fn ses_bounces_and_complaints_through_sns_suppress_once_and_forgeries_get_401() {
    let (key, certificate) = sns_signer();
    let (other_key, _) = sns_signer();
    each_backend(|env| {
        let server = sent_campaign(env);
        let c3 = sent_to(&server, "c3@example.com");
        let pem = env.write("sns-certificate.pem", &certificate);
        let (_serving, port) =
            serve(env, &[("PATRON__FEEDBACK__SES_TOPIC_ARN", TOPIC), ("PATRON__FEEDBACK__SES_CERTIFICATE_FILE", &pem)]);
        let before = state(env);

        // A forged signature, a valid signature over another topic, a message
        // changed after signing: 401, nothing recorded.
        let bounce = ses_bounce("c3@example.com", &c3.message_id, "fb-1");
        let forged = sns(&other_key, 2, "Notification", TOPIC, &bounce, "m-1");
        assert_eq!(post(port, "/webhooks/ses", &[], &forged), 401);
        let foreign = sns(&key, 2, "Notification", "arn:aws:sns:eu-west-1:999999999999:other", &bounce, "m-1");
        assert_eq!(post(port, "/webhooks/ses", &[], &foreign), 401);
        let genuine = sns(&key, 2, "Notification", TOPIC, &bounce, "m-1");
        let tampered = genuine.replace("c3@example.com", "c4@example.com");
        assert_eq!(post(port, "/webhooks/ses", &[], &tampered), 401);
        assert_eq!(state(env), before);

        // The genuine bounce: matched by the Message-ID patron wrote, suppressed once.
        assert_eq!(post(port, "/webhooks/ses", &[], &genuine), 200);
        assert_eq!(suppressions(env), ["c3@example.com bounced"]);
        assert_eq!(events(env), ["ses hard_bounce message-id c3@example.com"]);
        let after = state(env);
        assert_eq!(post(port, "/webhooks/ses", &[], &genuine), 200, "SNS delivers again");
        assert_eq!(state(env), after);

        // A complaint (SignatureVersion 1, event publishing), by recipient.
        let complaint = sns(&key, 1, "Notification", TOPIC, &ses_complaint("c4@example.com", "fb-2"), "m-2");
        assert_eq!(post(port, "/webhooks/ses", &[], &complaint), 200);
        assert_eq!(suppressions(env), ["c3@example.com bounced", "c4@example.com complained"]);

        // A subscription confirmation is answered, never fetched; a body that
        // is not SNS's is malformed; unconfigured providers are not found.
        let confirmation = sns(&key, 2, "SubscriptionConfirmation", TOPIC, "You have chosen to subscribe", "m-3");
        let after = state(env);
        assert_eq!(post(port, "/webhooks/ses", &[], &confirmation), 200);
        assert_eq!(post(port, "/webhooks/ses", &[], "{\"Type\": 1}"), 400);
        assert_eq!(post(port, "/webhooks/postmark", &[], "{}"), 404);
        assert_eq!(post(port, "/webhooks/sendgrid", &[], "[]"), 404);
        assert_eq!(state(env), after);
    });
}

// --- Postmark ---

fn basic(credentials: &str) -> Vec<(&'static str, String)> {
    vec![("Authorization", format!("Basic {}", STANDARD.encode(credentials)))]
}

fn postmark_bounce(id: u64, kind: &str, email: &str) -> String {
    json!({
        "RecordType": if kind == "SpamComplaint" { "SpamComplaint" } else { "Bounce" },
        "MessageStream": "outbound",
        "ID": id,
        "Type": kind,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "Test",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"a_key": "a_value"},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email,
        "From": "shop@example.com",
        "BouncedAt": "2026-12-01T16:33:54.9070259Z",
        "DumpAvailable": true,
        "Inactive": true,
        "CanActivate": true,
        "Subject": "Hi"
    })
    .to_string()
}

#[test]
fn postmark_bounces_complaints_and_unsubscribes_with_its_basic_credentials_suppress_once() {
    each_backend(|env| {
        sent_campaign(env);
        let password = env.write("postmark-password", "a long webhook password\n");
        let (_serving, port) = serve(
            env,
            &[("PATRON__FEEDBACK__POSTMARK_USER", "postmark"), ("PATRON__FEEDBACK__POSTMARK_PASSWORD_FILE", &password)],
        );
        let before = state(env);
        let bounce = postmark_bounce(692560173, "HardBounce", "c5@example.com");
        assert_eq!(post(port, "/webhooks/postmark", &basic("postmark:a long webhook passworD"), &bounce), 401);
        assert_eq!(post(port, "/webhooks/postmark", &basic("other:a long webhook password"), &bounce), 401);
        assert_eq!(post(port, "/webhooks/postmark", &[], &bounce), 401);
        assert_eq!(state(env), before);

        let good = basic("postmark:a long webhook password");
        assert_eq!(post(port, "/webhooks/postmark", &good, &bounce), 200);
        assert_eq!(suppressions(env), ["c5@example.com bounced"]);
        let after = state(env);
        assert_eq!(post(port, "/webhooks/postmark", &good, &bounce), 200);
        assert_eq!(state(env), after);

        let complaint = postmark_bounce(692560174, "SpamComplaint", "c6@example.com");
        assert_eq!(post(port, "/webhooks/postmark", &good, &complaint), 200);
        let change = json!({
            "RecordType": "SubscriptionChange",
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "ServerID": 123456,
            "MessageStream": "outbound",
            "ChangedAt": "2026-12-01T10:53:34.416071Z",
            "Recipient": "C7@example.com",
            "Origin": "Recipient",
            "SuppressSending": true,
            "SuppressionReason": "ManualSuppression",
            "Tag": "my-tag",
            "Metadata": {"example": "value"}
        })
        .to_string();
        assert_eq!(post(port, "/webhooks/postmark", &good, &change), 200);
        assert_eq!(post(port, "/webhooks/postmark", &good, &change), 200);
        // A bounce of an address patron never mailed is kept aside, and still 200.
        assert_eq!(
            post(port, "/webhooks/postmark", &good, &postmark_bounce(1, "HardBounce", "nobody@example.org")),
            200
        );
        assert_eq!(post(port, "/webhooks/postmark", &good, "[not json"), 400);
        assert_eq!(
            suppressions(env),
            ["c5@example.com bounced", "c6@example.com complained", "c7@example.com unsubscribed"]
        );
        assert_eq!(
            events(env),
            [
                "postmark hard_bounce recipient c5@example.com",
                "postmark complaint recipient c6@example.com",
                "postmark unsubscribe recipient c7@example.com",
                "postmark aside - -",
            ]
        );
    });
}

// --- SendGrid ---

fn sendgrid_headers(key: &p256::ecdsa::SigningKey, timestamp: &str, body: &str) -> Vec<(&'static str, String)> {
    use p256::ecdsa::signature::Signer;
    let signature: p256::ecdsa::Signature = key.sign(format!("{timestamp}{body}").as_bytes());
    vec![
        ("X-Twilio-Email-Event-Webhook-Signature", STANDARD.encode(signature.to_der().as_bytes())),
        ("X-Twilio-Email-Event-Webhook-Timestamp", timestamp.to_owned()),
    ]
}

#[test]
fn sendgrid_signed_events_suppress_once_and_a_bad_signature_gets_401() {
    use p256::pkcs8::EncodePublicKey;
    let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let shown = STANDARD.encode(key.verifying_key().to_public_key_der().unwrap().as_bytes());
    each_backend(|env| {
        let server = sent_campaign(env);
        let c8 = sent_to(&server, "c8@example.com");
        let (_serving, port) = serve(env, &[("PATRON__FEEDBACK__SENDGRID_PUBLIC_KEY", &shown)]);
        let body = json!([
            {"email": "c8@example.com", "timestamp": 1764590400, "smtp-id": c8.message_id, "event": "bounce",
             "category": ["newsletter"], "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
             "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
             "reason": "500 unknown recipient", "status": "5.0.0", "type": "bounce"},
            {"email": "c9@example.com", "timestamp": 1764590401, "event": "spamreport", "sg_event_id": "S1"},
            {"email": "c10@example.com", "timestamp": 1764590402, "event": "group_unsubscribe", "sg_event_id": "U1", "asm_group_id": 10},
            {"email": "c11@example.com", "timestamp": 1764590403, "event": "delivered", "sg_event_id": "D1", "response": "250 OK"},
            {"email": "c12@example.com", "timestamp": 1764590404, "event": "bounce", "sg_event_id": "B2", "type": "blocked", "status": "4.0.0"}
        ])
        .to_string();
        let before = state(env);
        let mut wrong_time = sendgrid_headers(&key, "1764590500", &body);
        wrong_time[1].1 = "1764590501".into();
        assert_eq!(post(port, "/webhooks/sendgrid", &wrong_time, &body), 401);
        let other = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        assert_eq!(post(port, "/webhooks/sendgrid", &sendgrid_headers(&other, "1764590500", &body), &body), 401);
        assert_eq!(post(port, "/webhooks/sendgrid", &[], &body), 401);
        assert_eq!(state(env), before);

        let headers = sendgrid_headers(&key, "1764590500", &body);
        assert_eq!(post(port, "/webhooks/sendgrid", &headers, &body), 200);
        assert_eq!(
            suppressions(env),
            ["c10@example.com unsubscribed", "c8@example.com bounced", "c9@example.com complained"]
        );
        assert_eq!(
            events(env),
            [
                "sendgrid hard_bounce message-id c8@example.com",
                "sendgrid complaint recipient c9@example.com",
                "sendgrid unsubscribe recipient c10@example.com",
                "sendgrid soft_bounce recipient c12@example.com",
            ]
        );
        let after = state(env);
        assert_eq!(post(port, "/webhooks/sendgrid", &headers, &body), 200, "SendGrid retries");
        assert_eq!(state(env), after);
        let not_json = sendgrid_headers(&key, "1764590600", "{");
        assert_eq!(post(port, "/webhooks/sendgrid", &not_json, "{"), 400);
        assert_eq!(state(env), after);
    });
}

#[test]
fn a_half_configured_provider_is_refused_at_start_naming_its_key() {
    let env = TestEnv::new(crate::support::Backend::Sqlite);
    let run = env.command(&["config"]).env("PATRON__FEEDBACK__SES_TOPIC_ARN", TOPIC).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("feedback.ses_certificate_file"));
    let run = env.command(&["config"]).env("PATRON__FEEDBACK__POSTMARK_USER", "postmark").output().unwrap();
    assert!(String::from_utf8_lossy(&run.stderr).contains("PATRON__FEEDBACK__POSTMARK_PASSWORD"));
    let run = env.command(&["config"]).env("PATRON__FEEDBACK__SENDGRID_PUBLIC_KEY", "bm90IGEga2V5").output().unwrap();
    assert!(String::from_utf8_lossy(&run.stderr).contains("feedback.sendgrid_public_key"), "{run:?}");
    let file = env.write("settings.toml", "[feedback]\npostmark_password = \"x\"\n");
    let run = env.command(&["--config", &file, "config"]).output().unwrap();
    assert!(String::from_utf8_lossy(&run.stderr).contains("secrets are not read from config files"), "{run:?}");
}
