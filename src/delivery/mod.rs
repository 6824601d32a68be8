//! Delivery: messages out of the outbox and into mailboxes, and the way back
//! out of the list (unsubscribe).
//!
//! [`sender`] claims, renders and sends; [`outbox`] holds the row states;
//! [`pause`] records a sender waiting for a server it cannot use;
//! [`compose`] builds the MIME message and its headers; [`dkim`] signs it;
//! [`transport`] speaks
//! SMTP (lettre) or writes files; [`unsubscribe`] signs links and records
//! suppressions.

pub mod compose;
pub mod dkim;
pub mod outbox;
pub mod pause;
pub mod sender;
pub mod transport;
pub mod unsubscribe;

use secrecy::SecretString;

pub use sender::{Options, Report, Sender};
pub use transport::Transport;
pub use unsubscribe::Signer;

/// The signer for unsubscribe links, when a secret is configured.
pub fn signer(secret: Option<&SecretString>) -> Option<Signer> {
    secret.cloned().map(Signer::new)
}
