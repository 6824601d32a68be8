//! DKIM signing (RFC 6376) with the `[dkim]` key, and the keys and DNS
//! records of `patron dkim keygen`.
//!
//! Receivers trust mail that is signed for the sender's domain, and RFC 8058
//! asks them to honour one-click unsubscribe only when the signature covers
//! `List-Unsubscribe` and `List-Unsubscribe-Post`. lettre computes the
//! signature; this module reads the key, chooses the headers and makes keys.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use lettre::Message;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm, DkimSigningKey,
};
use lettre::message::header::HeaderName;
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _};
use rsa::pkcs8::der::zeroize::Zeroizing;
use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rsa::rand_core::{OsRng, RngCore as _};

/// The signature algorithms of RFC 6376 and RFC 8463.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    #[value(name = "rsa-sha256")]
    RsaSha256,
    #[value(name = "ed25519-sha256")]
    Ed25519Sha256,
}

impl Algorithm {
    /// The value of `dkim.algorithm`.
    pub fn parse(text: &str) -> Option<Algorithm> {
        match text {
            "rsa-sha256" => Some(Algorithm::RsaSha256),
            "ed25519-sha256" => Some(Algorithm::Ed25519Sha256),
            _ => None,
        }
    }

    /// The key type in the DNS record (`k=`).
    fn key_type(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa",
            Algorithm::Ed25519Sha256 => "ed25519",
        }
    }
}

/// The headers the signature covers. A name that a message lacks (the
/// unsubscribe headers of loyalty mail, Reply-To) is still listed: the
/// signature then also says the header was absent, so nobody can add it
/// later (RFC 6376, section 5.4). Not Content-Type: lettre writes a
/// multipart body's Content-Type with the body, where its signer does not
/// see it, so listing it would sign it as absent and break the signature.
const SIGNED_HEADERS: [&str; 9] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// RFC 8301: verifiers must refuse RSA keys shorter than 1024 bits.
const MIN_RSA_BITS: usize = 1024;
/// The size `keygen` makes (RFC 8301 recommends at least 2048).
const KEYGEN_RSA_BITS: usize = 2048;

/// The signer for one domain and selector. Its `Debug` never shows the key.
pub struct Dkim {
    selector: String,
    domain: String,
    config: DkimConfig,
}

impl fmt::Debug for Dkim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dkim").field("selector", &self.selector).field("domain", &self.domain).finish_non_exhaustive()
    }
}

impl Dkim {
    /// A signer from the private key's text: PEM (PKCS#1 or PKCS#8) for RSA;
    /// PKCS#8 PEM or the base64 32-byte seed for Ed25519. The error names the
    /// problem, never the key.
    pub fn new(selector: &str, domain: &str, algorithm: Algorithm, key: &str) -> Result<Dkim, String> {
        let key = signing_key(algorithm, key.trim())?;
        let headers = SIGNED_HEADERS.iter().map(|name| HeaderName::new_from_ascii_str(name)).collect();
        // Relaxed header canonicalization survives the refolding and
        // whitespace changes of relays; relaxed body likewise.
        let canonicalization =
            DkimCanonicalization { header: DkimCanonicalizationType::Relaxed, body: DkimCanonicalizationType::Relaxed };
        let config = DkimConfig::new(selector.to_owned(), domain.to_owned(), key, headers, canonicalization);
        Ok(Dkim { selector: selector.to_owned(), domain: domain.to_owned(), config })
    }

    /// Adds the DKIM-Signature header. Call it last: a header set afterwards
    /// is not covered, and one changed afterwards breaks the signature.
    pub fn sign(&self, message: &mut Message) {
        message.sign(&self.config);
    }
}

fn signing_key(algorithm: Algorithm, text: &str) -> Result<DkimSigningKey, String> {
    match algorithm {
        Algorithm::RsaSha256 => {
            let key = rsa::RsaPrivateKey::from_pkcs1_pem(text)
                .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(text))
                .map_err(|_| "not an RSA private key in PEM (PKCS#1 or PKCS#8)".to_owned())?;
            let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
            if bits < MIN_RSA_BITS {
                return Err(format!("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are needed (2048 advised)"));
            }
            // lettre reads PKCS#1 only.
            let pkcs1 = key.to_pkcs1_pem(LineEnding::LF).map_err(|e| format!("converting the RSA key: {e}"))?;
            DkimSigningKey::new(&pkcs1, DkimSigningAlgorithm::Rsa).map_err(|e| e.to_string())
        }
        Algorithm::Ed25519Sha256 => {
            let seed = if text.starts_with("-----BEGIN ") {
                let key = ed25519_dalek::SigningKey::from_pkcs8_pem(text)
                    .map_err(|_| "not an Ed25519 private key in PKCS#8 PEM".to_owned())?;
                BASE64.encode(key.to_bytes())
            } else {
                text.to_owned()
            };
            DkimSigningKey::new(&seed, DkimSigningAlgorithm::Ed25519)
                .map_err(|_| "not an Ed25519 private key (PKCS#8 PEM, or the 32-byte seed in base64)".to_owned())
        }
    }
}

/// A new key pair: the private key as PKCS#8 PEM, and the public key as it
/// goes into the DNS record (`p=`).
pub struct NewKey {
    pub private_pem: Zeroizing<String>,
    pub public: Vec<u8>,
}

/// Makes a key pair from the operating system's random numbers.
pub fn generate(algorithm: Algorithm) -> Result<NewKey, String> {
    match algorithm {
        Algorithm::RsaSha256 => {
            let key = rsa::RsaPrivateKey::new(&mut OsRng, KEYGEN_RSA_BITS).map_err(|e| e.to_string())?;
            let private_pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?;
            // RFC 6376: the DER SubjectPublicKeyInfo, as `openssl rsa -pubout` writes it.
            let public = key.to_public_key().to_public_key_der().map_err(|e| e.to_string())?.into_vec();
            Ok(NewKey { private_pem, public })
        }
        Algorithm::Ed25519Sha256 => {
            let mut seed = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(seed.as_mut());
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let private_pem = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, LineEnding::LF)
                .map_err(|e| e.to_string())?;
            // RFC 8463: the raw 32-byte public key.
            Ok(NewKey { private_pem, public: key.verifying_key().to_bytes().to_vec() })
        }
    }
}

/// The TXT record to publish, in zone-file form, its text split into
/// strings of at most 255 bytes (the limit of one DNS character-string).
pub fn dns_record(selector: &str, domain: &str, algorithm: Algorithm, public: &[u8]) -> String {
    let text = format!("v=DKIM1; k={}; p={}", algorithm.key_type(), BASE64.encode(public));
    // The text is ASCII, so any byte offset is a character boundary.
    let strings: Vec<String> =
        text.as_bytes().chunks(255).map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk))).collect();
    format!("{selector}._domainkey.{domain}. IN TXT {}", strings.join(" "))
}

/// Whether `name` can be a DKIM selector or domain: dot-separated labels of
/// letters, digits and inner hyphens (underscores are allowed too, as some
/// providers use them in selectors).
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::compose::{Envelope, Rendered, compose};

    fn message(unsubscribe: Option<(&str, Option<&str>)>) -> Message {
        let envelope = Envelope {
            from: "Shop <news@shop.example>",
            reply_to: None,
            to_name: Some("Ana".into()),
            to_email: "ana@example.com",
            message_id: "<1.2.patron@mail.shop.example>",
            unsubscribe,
            return_path: None,
        };
        compose(&envelope, Rendered { subject: "Hello".into(), html: None, text: "Hi".into() }).unwrap()
    }

    fn pem(key: &NewKey) -> &str {
        key.private_pem.as_str()
    }

    #[test]
    fn a_generated_key_loads_and_signs_once_with_the_unsubscribe_headers_covered() {
        for algorithm in [Algorithm::RsaSha256, Algorithm::Ed25519Sha256] {
            let key = generate(algorithm).unwrap();
            let dkim = Dkim::new("s1", "shop.example", algorithm, pem(&key)).unwrap();
            let mut signed = message(Some(("https://shop.example/u?t=1", None)));
            dkim.sign(&mut signed);
            let text = String::from_utf8(signed.formatted()).unwrap().replace("\r\n ", " ");
            let header = text.lines().find(|l| l.starts_with("DKIM-Signature: ")).expect("a signature");
            assert_eq!(text.matches("DKIM-Signature").count(), 1);
            let name = if algorithm == Algorithm::RsaSha256 { "rsa-sha256" } else { "ed25519-sha256" };
            for tag in [&format!("a={name};"), "d=shop.example;", "s=s1;", "c=relaxed/relaxed;"] {
                assert!(header.contains(tag), "{tag} in {header}");
            }
            assert!(
                header.contains(
                    "h=from:to:subject:date:message-id:reply-to:mime-version:list-unsubscribe:\
                     list-unsubscribe-post;"
                ),
                "{header}"
            );
            // The Debug form names the signer, never the key.
            assert_eq!(format!("{dkim:?}"), "Dkim { selector: \"s1\", domain: \"shop.example\", .. }");
        }
    }

    #[test]
    fn rsa_keys_load_as_pkcs1_or_pkcs8_and_ed25519_also_as_a_base64_seed() {
        let rsa = rsa::RsaPrivateKey::from_pkcs8_pem(pem(&generate(Algorithm::RsaSha256).unwrap())).unwrap();
        let pkcs1 = rsa.to_pkcs1_pem(LineEnding::CRLF).unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert!(Dkim::new("s", "d.example", Algorithm::RsaSha256, &format!("\n{}\n", pkcs1.as_str())).is_ok());
        let ed = ed25519_dalek::SigningKey::from_pkcs8_pem(pem(&generate(Algorithm::Ed25519Sha256).unwrap())).unwrap();
        let seed = format!("{}\n", BASE64.encode(ed.to_bytes()));
        assert!(Dkim::new("s", "d.example", Algorithm::Ed25519Sha256, &seed).is_ok());
    }

    #[test]
    fn a_bad_key_is_refused_without_showing_it() {
        let ed = generate(Algorithm::Ed25519Sha256).unwrap();
        let problem = Dkim::new("s", "d.example", Algorithm::RsaSha256, pem(&ed)).unwrap_err();
        assert_eq!(problem, "not an RSA private key in PEM (PKCS#1 or PKCS#8)");
        let rsa = generate(Algorithm::RsaSha256).unwrap();
        let problem = Dkim::new("s", "d.example", Algorithm::Ed25519Sha256, pem(&rsa)).unwrap_err();
        assert_eq!(problem, "not an Ed25519 private key in PKCS#8 PEM");
        let problem = Dkim::new("s", "d.example", Algorithm::Ed25519Sha256, "c2VjcmV0").unwrap_err();
        assert_eq!(problem, "not an Ed25519 private key (PKCS#8 PEM, or the 32-byte seed in base64)");
        let short = rsa::RsaPrivateKey::new(&mut OsRng, 512).unwrap().to_pkcs8_pem(LineEnding::LF).unwrap();
        let problem = Dkim::new("s", "d.example", Algorithm::RsaSha256, &short).unwrap_err();
        assert_eq!(problem, "the RSA key has 512 bits; at least 1024 are needed (2048 advised)");
    }

    #[test]
    fn the_dns_record_is_split_into_strings_of_255_bytes() {
        let rsa = generate(Algorithm::RsaSha256).unwrap();
        let record = dns_record("s1", "shop.example", Algorithm::RsaSha256, &rsa.public);
        let (name, strings) = record.split_once(" IN TXT ").unwrap();
        assert_eq!(name, "s1._domainkey.shop.example.");
        let parts: Vec<&str> = strings.split('"').skip(1).step_by(2).collect();
        // 2048 bits: 294 bytes of DER, 392 of base64, 410 with the tags.
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [255, 155]);
        assert_eq!(strings, format!("\"{}\" \"{}\"", parts[0], parts[1]));
        assert!(parts[0].starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"));
        let ed = generate(Algorithm::Ed25519Sha256).unwrap();
        let record = dns_record("s1", "shop.example", Algorithm::Ed25519Sha256, &ed.public);
        assert_eq!(record.len(), "s1._domainkey.shop.example. IN TXT \"v=DKIM1; k=ed25519; p=\"".len() + 44);
    }

    #[test]
    fn selectors_and_domains_are_dns_names() {
        for good in ["s1", "mail-2026", "shop.example", "a_b.example", "x"] {
            assert!(is_dns_name(good), "{good}");
        }
        for bad in ["", "a b", "shop..example", "-a.example", "a-.example", ".example", "a.example.", "é.example"] {
            assert!(!is_dns_name(bad), "{bad}");
        }
        assert!(!is_dns_name(&"a".repeat(64)));
    }
}
