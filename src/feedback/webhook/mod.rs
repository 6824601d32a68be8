//! Bounces, complaints and unsubscribes that mail providers report by webhook:
//! `POST /webhooks/{provider}` for Amazon SES (through SNS), Postmark and
//! SendGrid. Each request is authenticated as its provider documents (an SNS
//! signature checked against a configured certificate, Basic credentials, an
//! ECDSA signature) before anything in it is read; its events then go through
//! [`Intake::ingest_event`], like the reports that come back by mail.

pub mod postmark;
pub mod sendgrid;
pub mod ses;

use axum::http::HeaderMap;
use sea_orm::{DatabaseConnection, DbErr};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Ingested, Intake, ProviderEvent, Rules};
use crate::config::Loaded;

/// The largest request body a webhook reads.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Why a request is refused; nothing in it is recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No such provider, or it is not configured (404).
    #[error("no webhook for this provider is configured")]
    NotConfigured,
    /// The request is not the provider's (401).
    #[error("authentication failed: {0}")]
    Unauthenticated(&'static str),
    /// The body is not what the provider sends (400).
    #[error("malformed request: {0}")]
    Malformed(String),
}

impl Refused {
    fn malformed(what: impl std::fmt::Display) -> Self {
        Refused::Malformed(what.to_string())
    }
}

/// The events of one authenticated request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    pub events: Vec<ProviderEvent>,
    /// Events that change nothing here (deliveries, opens, a subscription confirmation).
    pub ignored: usize,
}

/// The configured providers, each with what authenticates its requests.
#[derive(Default)]
pub struct Providers {
    ses: Option<ses::Ses>,
    postmark: Option<postmark::Postmark>,
    sendgrid: Option<sendgrid::SendGrid>,
}

impl Providers {
    /// The providers set in `[feedback]` (the settings were validated on load).
    pub fn from_loaded(loaded: &Loaded) -> anyhow::Result<Self> {
        let feedback = &loaded.settings.feedback;
        let ses = if feedback.ses_topic_arn.trim().is_empty() {
            None
        } else {
            let key = crate::config::keys::certificate_key(&feedback.ses_certificate_file)
                .map_err(|e| anyhow::anyhow!("feedback.ses_certificate_file: {e}"))?;
            Some(ses::Ses::new(feedback.ses_topic_arn.trim(), key))
        };
        let postmark = match (&loaded.secrets.postmark_password, feedback.postmark_user.is_empty()) {
            (Some(password), false) => Some(postmark::Postmark::new(&feedback.postmark_user, password.clone())),
            _ => None,
        };
        let sendgrid = if feedback.sendgrid_public_key.trim().is_empty() {
            None
        } else {
            let key = crate::config::keys::sendgrid_key(&feedback.sendgrid_public_key)
                .map_err(|e| anyhow::anyhow!("feedback.sendgrid_public_key: {e}"))?;
            Some(sendgrid::SendGrid::new(key))
        };
        Ok(Providers { ses, postmark, sendgrid })
    }

    pub fn any(&self) -> bool {
        self.ses.is_some() || self.postmark.is_some() || self.sendgrid.is_some()
    }

    /// Authenticates a request to `/webhooks/{provider}` and reads its events;
    /// the source they are recorded under comes with them.
    pub fn read(&self, provider: &str, headers: &HeaderMap, body: &[u8]) -> Result<(&'static str, Batch), Refused> {
        match provider {
            "ses" => self.ses.as_ref().ok_or(Refused::NotConfigured)?.read(body).map(|b| ("ses", b)),
            "postmark" => {
                self.postmark.as_ref().ok_or(Refused::NotConfigured)?.read(headers, body).map(|b| ("postmark", b))
            }
            "sendgrid" => {
                self.sendgrid.as_ref().ok_or(Refused::NotConfigured)?.read(headers, body).map(|b| ("sendgrid", b))
            }
            _ => Err(Refused::NotConfigured),
        }
    }
}

/// What became of an accepted request's events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub recorded: usize,
    pub repeated: usize,
    /// About no message of patron's: kept aside.
    pub aside: usize,
    pub ignored: usize,
}

/// The webhooks: the configured providers and the intake their events go to.
pub struct Webhooks {
    providers: Providers,
    intake: Intake,
}

impl Webhooks {
    /// The webhooks of `loaded`'s settings; `None` when no provider is configured.
    pub async fn new(db: DatabaseConnection, loaded: &Loaded) -> anyhow::Result<Option<Self>> {
        let providers = Providers::from_loaded(loaded)?;
        if !providers.any() {
            return Ok(None);
        }
        let intake = Intake::new(db, Rules::from_settings(loaded)).await?;
        Ok(Some(Webhooks { providers, intake }))
    }

    /// Handles one request: refused as a whole, or each event recorded.
    pub async fn receive(
        &self,
        provider: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Result<Received, Refused>, DbErr> {
        let (source, batch) = match self.providers.read(provider, headers, body) {
            Ok(read) => read,
            Err(refused) => return Ok(Err(refused)),
        };
        let mut received = Received { ignored: batch.ignored, ..Received::default() };
        for event in &batch.events {
            match self.intake.ingest_event(event, source).await? {
                Ingested::Recorded { new, repeated } => {
                    received.recorded += new;
                    received.repeated += repeated;
                }
                Ingested::Aside(_) => received.aside += 1,
            }
        }
        Ok(Ok(received))
    }
}

/// Whether two secrets are equal, in time that depends on neither (their
/// digests are compared, so not even on their lengths).
pub(crate) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    Sha256::digest(given).ct_eq(&Sha256::digest(expected)).into()
}

/// A header's value as text, if present and text.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The provider's JSON body.
pub(crate) fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refused> {
    serde_json::from_slice(body).map_err(|e| Refused::malformed(format!("not the provider's JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cret", b"s3cret "));
        assert!(!same_secret(b"", b"s3cret"));
    }

    #[test]
    fn an_unknown_or_unconfigured_provider_is_not_found() {
        let providers = Providers::default();
        for name in ["ses", "postmark", "sendgrid", "mailgun"] {
            assert_eq!(providers.read(name, &HeaderMap::new(), b"{}"), Err(Refused::NotConfigured));
        }
    }
}
