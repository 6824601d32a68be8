//! Unsubscribe links: a token that names the customer, the campaign and its
//! subscription topic, signed with HMAC-SHA256 so that nobody can make one
//! for someone else. What an unsubscribe changes is `consent`'s business.
//!
//! A token is `base64url(customer id, campaign name [LF topic]) . base64url(tag)`.
//! It does not expire: an unsubscribe link must keep working in old mail
//! (links made before topics existed name no topic).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// What an unsubscribe token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub customer_id: i64,
    pub campaign: String,
    /// The campaign's topic; `None` in links made before topics existed.
    pub topic: Option<String>,
}

/// Why a token was refused (the HTTP server answers 400 to all of them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the unsubscribe token is malformed")]
    Malformed,
    #[error("the unsubscribe token's signature does not match")]
    BadSignature,
    #[error("no unsubscribe secret is configured to check the token with")]
    NoKey,
}

/// Makes and checks tokens with the configured secret.
#[derive(Clone)]
pub struct Signer {
    key: SecretString,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([REDACTED])")
    }
}

impl Signer {
    pub fn new(key: SecretString) -> Self {
        Signer { key }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes()).expect("HMAC takes any key");
        mac.update(payload);
        mac
    }

    pub fn sign(&self, token: &Token) -> String {
        let mut payload = token.customer_id.to_be_bytes().to_vec();
        payload.extend_from_slice(token.campaign.as_bytes());
        if let Some(topic) = &token.topic {
            payload.push(b'\n');
            payload.extend_from_slice(topic.as_bytes());
        }
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(tag))
    }

    /// The token's content, if it is well formed and was signed with our key.
    pub fn verify(&self, text: &str) -> Result<Token, TokenError> {
        let (payload, tag) = text.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Malformed)?;
        if payload.len() < 8 {
            return Err(TokenError::Malformed);
        }
        // Constant-time comparison.
        self.mac(&payload).verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
        let (id, campaign) = payload.split_at(8);
        let customer_id = i64::from_be_bytes(id.try_into().expect("8 bytes"));
        let text = String::from_utf8(campaign.to_vec()).map_err(|_| TokenError::Malformed)?;
        let (campaign, topic) = match text.split_once('\n') {
            Some((campaign, topic)) => (campaign.to_owned(), Some(topic.to_owned())),
            None => (text, None),
        };
        Ok(Token { customer_id, campaign, topic })
    }

    /// The link for `token` under `public_url`.
    pub fn link(&self, public_url: &str, token: &Token) -> String {
        format!("{}/unsubscribe?token={}", public_url.trim_end_matches('/'), self.sign(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(SecretString::from("test-secret"))
    }

    #[test]
    fn a_signed_token_verifies_and_a_tampered_one_does_not() {
        let token = Token { customer_id: 42, campaign: "winback".into(), topic: Some("offers".into()) };
        let text = signer().sign(&token);
        assert_eq!(signer().verify(&text), Ok(token.clone()));

        let other_key = Signer::new(SecretString::from("another-secret"));
        assert_eq!(other_key.verify(&text), Err(TokenError::BadSignature));

        // Another customer's id with our signature.
        let (_, tag) = text.split_once('.').unwrap();
        let mut forged = 43i64.to_be_bytes().to_vec();
        forged.extend_from_slice(b"winback\noffers");
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(forged));
        assert_eq!(signer().verify(&forged), Err(TokenError::BadSignature));

        for bad in ["", ".", "abc", "abc.def", "!!.!!", &text[..text.len() - 2]] {
            assert!(signer().verify(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn links_are_built_on_the_public_url() {
        let token = Token { customer_id: 7, campaign: "welcome".into(), topic: None };
        let link = signer().link("https://mail.example.com/", &token);
        assert!(link.starts_with("https://mail.example.com/unsubscribe?token="), "{link}");
        let text = link.split_once("token=").unwrap().1;
        assert_eq!(signer().verify(text), Ok(token));
    }
}
