//! Unsubscribe links: a token that names the customer and the campaign,
//! signed with HMAC-SHA256 so that nobody can make one for someone else, and
//! the suppression it records.
//!
//! A token is `base64url(customer id, campaign name) . base64url(tag)`. It
//! does not expire: an unsubscribe link must keep working in old mail.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use hmac::{Hmac, Mac};
use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::db::entities::customer;

/// What an unsubscribe token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub customer_id: i64,
    pub campaign: String,
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
        let campaign = String::from_utf8(campaign.to_vec()).map_err(|_| TokenError::Malformed)?;
        Ok(Token { customer_id, campaign })
    }

    /// The link for `token` under `public_url`.
    pub fn link(&self, public_url: &str, token: &Token) -> String {
        format!("{}/unsubscribe?token={}", public_url.trim_end_matches('/'), self.sign(token))
    }
}

/// Suppresses the customer's address for good (reason `unsubscribed`) and
/// withdraws their marketing consent, so that counts of consenting customers
/// leave them out. Doing it twice is harmless; false when the customer no
/// longer exists.
pub async fn record<C: ConnectionTrait>(db: &C, token: &Token) -> Result<bool, DbErr> {
    let Some(customer) = customer::Entity::find_by_id(token.customer_id).one(db).await? else {
        return Ok(false);
    };
    opt_out(db, &customer.email, Some(customer.id), &format!("campaign:{}", token.campaign)).await?;
    Ok(true)
}

/// An unsubscribe of `email`, however it came: the address is suppressed
/// and the consent of every customer with that address (or of `customer_id`)
/// is withdrawn.
pub async fn opt_out<C: ConnectionTrait>(
    db: &C,
    email: &str,
    customer_id: Option<i64>,
    source: &str,
) -> Result<(), DbErr> {
    suppress(db, email, customer_id, "unsubscribed", source).await?;
    let same_address = Expr::expr(Func::lower(Expr::col("email"))).eq(email.to_lowercase());
    let customers = same_address.or(Expr::col("id").eq(customer_id.unwrap_or(0)));
    let withdraw = Query::update().table("customers").value("marketing_consent", false).and_where(customers).to_owned();
    db.execute(&withdraw).await?;
    Ok(())
}

/// Adds a suppression for `email` unless the address is already suppressed.
pub async fn suppress<C: ConnectionTrait>(
    db: &C,
    email: &str,
    customer_id: Option<i64>,
    reason: &str,
    source: &str,
) -> Result<(), DbErr> {
    suppress_all(db, &[(email.to_owned(), customer_id, reason)], source).await
}

/// [`suppress`] for many addresses, `(email, customer id, reason)`, a few
/// hundred to a statement; the first reason of an address wins.
pub async fn suppress_all<C: ConnectionTrait>(
    db: &C,
    suppressions: &[(String, Option<i64>, &str)],
    source: &str,
) -> Result<(), DbErr> {
    let now = Utc::now();
    for chunk in suppressions.chunks(500) {
        let mut insert = Query::insert();
        insert.into_table("suppressions").columns(["email", "customer_id", "reason", "source", "created_at"]);
        for (email, customer_id, reason) in chunk {
            insert.values_panic([
                email.to_lowercase().into(),
                (*customer_id).into(),
                (*reason).into(),
                source.into(),
                now.into(),
            ]);
        }
        insert.on_conflict(OnConflict::column("email").do_nothing().to_owned());
        db.execute(&insert).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(SecretString::from("test-secret"))
    }

    #[test]
    fn a_signed_token_verifies_and_a_tampered_one_does_not() {
        let token = Token { customer_id: 42, campaign: "winback".into() };
        let text = signer().sign(&token);
        assert_eq!(signer().verify(&text), Ok(token.clone()));

        let other_key = Signer::new(SecretString::from("another-secret"));
        assert_eq!(other_key.verify(&text), Err(TokenError::BadSignature));

        // Another customer's id with our signature.
        let (_, tag) = text.split_once('.').unwrap();
        let mut forged = 43i64.to_be_bytes().to_vec();
        forged.extend_from_slice(b"winback");
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(forged));
        assert_eq!(signer().verify(&forged), Err(TokenError::BadSignature));

        for bad in ["", ".", "abc", "abc.def", "!!.!!", &text[..text.len() - 2]] {
            assert!(signer().verify(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn links_are_built_on_the_public_url() {
        let token = Token { customer_id: 7, campaign: "welcome".into() };
        let link = signer().link("https://mail.example.com/", &token);
        assert!(link.starts_with("https://mail.example.com/unsubscribe?token="), "{link}");
        let text = link.split_once("token=").unwrap().1;
        assert_eq!(signer().verify(text), Ok(token));
    }
}
