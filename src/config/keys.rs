//! The keys the provider webhooks check signatures with, read and checked
//! when the settings load (`feedback::webhook` uses them).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey as _;
use rsa::RsaPublicKey;
use x509_cert::Certificate;
use x509_cert::der::{DecodePem, Encode};

/// The public key of the certificate in the PEM file at `path`.
pub fn certificate_key(path: &Path) -> Result<RsaPublicKey, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    key_of_certificate(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

/// The RSA key of a PEM certificate.
pub fn key_of_certificate(pem: &[u8]) -> Result<RsaPublicKey, String> {
    let certificate = Certificate::from_pem(pem).map_err(|e| format!("not a PEM certificate ({e})"))?;
    let spki = certificate.tbs_certificate.subject_public_key_info.to_der().map_err(|e| e.to_string())?;
    RsaPublicKey::from_public_key_der(&spki).map_err(|e| format!("its key is not an RSA key ({e})"))
}

/// The verification key, base64 DER (SubjectPublicKeyInfo) as SendGrid shows
/// it; a PEM `PUBLIC KEY` block is accepted too.
pub fn sendgrid_key(text: &str) -> Result<VerifyingKey, String> {
    let base64: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD.decode(base64).map_err(|e| format!("not base64 ({e})"))?;
    VerifyingKey::from_public_key_der(&der).map_err(|e| format!("not an ECDSA P-256 public key ({e})"))
}
