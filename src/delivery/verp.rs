//! VERP: each message's envelope sender (where bounces go) names its outbox
//! row, so that a bounce finds the message it answers even when the report
//! quotes nothing of it. The token is `{outbox id}-{tag}`, the tag an
//! HMAC-SHA256 of the id under the unsubscribe secret (with its own prefix,
//! so a tag is never valid as anything else), cut to 80 bits and written in
//! lower-case hex: mail servers may change the case of a local part.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::config::RETURN_PATH_TOKEN as PLACEHOLDER;

const TAG_BYTES: usize = 10;

/// Makes return paths and reads them back.
#[derive(Clone)]
pub struct ReturnPath {
    /// The text before and after `{token}`, lower-cased for matching.
    prefix: String,
    suffix: String,
    key: SecretString,
}

impl std::fmt::Debug for ReturnPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReturnPath({}{PLACEHOLDER}{})", self.prefix, self.suffix)
    }
}

impl ReturnPath {
    /// `pattern` such as `bounces+{token}@example.com`; `None` without exactly one `{token}`.
    pub fn new(pattern: &str, key: SecretString) -> Option<Self> {
        let (prefix, suffix) = pattern.split_once(PLACEHOLDER)?;
        if suffix.contains(PLACEHOLDER) || !suffix.contains('@') {
            return None;
        }
        Some(ReturnPath { prefix: prefix.to_ascii_lowercase(), suffix: suffix.to_ascii_lowercase(), key })
    }

    /// The configured return path, when `delivery.return_path` is set (the
    /// settings check that the unsubscribe secret is there to sign it).
    pub fn from_settings(loaded: &crate::config::Loaded) -> Option<Self> {
        let pattern = loaded.settings.delivery.return_path.as_str();
        let key = loaded.secrets.unsubscribe_secret.clone()?;
        if pattern.is_empty() { None } else { ReturnPath::new(pattern, key) }
    }

    /// The envelope sender of outbox row `outbox_id`.
    pub fn address(&self, outbox_id: i64) -> String {
        format!("{}{outbox_id}-{}{}", self.prefix, self.tag(outbox_id), self.suffix)
    }

    /// The outbox row named by `address`, if it is one of ours with a valid tag.
    pub fn outbox_id(&self, address: &str) -> Option<i64> {
        let address = address.trim().trim_start_matches('<').trim_end_matches('>').to_ascii_lowercase();
        let token = address.strip_prefix(&self.prefix)?.strip_suffix(&self.suffix)?;
        let (id, tag) = token.split_once('-')?;
        let id: i64 = id.parse().ok().filter(|id| *id > 0)?;
        let tag = hex::decode(tag).ok().filter(|tag| tag.len() == TAG_BYTES)?;
        // Constant-time comparison with the leading bytes of the MAC.
        self.mac(id).verify_truncated_left(&tag).ok()?;
        Some(id)
    }

    fn mac(&self, outbox_id: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes()).expect("HMAC takes any key");
        mac.update(b"patron-verp:");
        mac.update(&outbox_id.to_be_bytes());
        mac
    }

    fn tag(&self, outbox_id: i64) -> String {
        hex::encode(&self.mac(outbox_id).finalize().into_bytes()[..TAG_BYTES])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn return_path() -> ReturnPath {
        ReturnPath::new("Bounces+{token}@Mail.Example.com", SecretString::from("k".repeat(32))).unwrap()
    }

    #[test]
    fn an_address_names_its_outbox_row_and_survives_a_change_of_case() {
        let verp = return_path();
        let address = verp.address(4711);
        assert!(address.starts_with("bounces+4711-") && address.ends_with("@mail.example.com"), "{address}");
        assert!(address.split('@').next().unwrap().len() <= 64);
        assert_eq!(verp.outbox_id(&address), Some(4711));
        assert_eq!(verp.outbox_id(&format!("<{}>", address.to_uppercase())), Some(4711));
    }

    #[test]
    fn a_forged_or_foreign_address_names_nothing() {
        let verp = return_path();
        let address = verp.address(4711);
        let forged = address.replace("4711-", "4712-");
        assert_eq!(verp.outbox_id(&forged), None);
        let short = address.replacen(&address[13..15], "", 1);
        assert_eq!(verp.outbox_id(&short), None);
        assert_eq!(verp.outbox_id("bounces+4711@mail.example.com"), None);
        assert_eq!(verp.outbox_id("someone@example.com"), None);
        let other_key =
            ReturnPath::new("bounces+{token}@mail.example.com", SecretString::from("x".repeat(32))).unwrap();
        assert_eq!(other_key.outbox_id(&address), None);
    }

    #[test]
    fn a_pattern_needs_one_token_and_a_domain() {
        let key = || SecretString::from("k".repeat(32));
        assert!(ReturnPath::new("bounces@example.com", key()).is_none());
        assert!(ReturnPath::new("{token}{token}@example.com", key()).is_none());
        assert!(ReturnPath::new("bounces+{token}", key()).is_none());
        assert!(ReturnPath::new("{token}@example.com", key()).is_some());
    }
}
