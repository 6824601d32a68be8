//! Delivery: messages out of the outbox and into mailboxes, and the way back
//! out of the list (unsubscribe).
//!
//! [`sender`] claims, renders and sends; [`recorder`] writes its results
//! in group commits (on PostgreSQL into [`result_log`], which moves them
//! into the outbox), and [`held`] keeps the leases of the rows it holds;
//! [`refusal`] is its last check before a message goes; [`outbox`] holds the row states;
//! [`pause`] records a sender waiting for a server it cannot use;
//! [`campaign_pause`] holds the campaigns whose sending is paused, and
//! [`breaker`] pauses those that draw too many complaints or bounces;
//! [`compose`] builds the MIME message and its headers; [`crate::dkim`] signs it;
//! [`transport`] speaks
//! SMTP (lettre) or writes files; [`unsubscribe`] signs links and records
//! suppressions; [`verp`] makes the envelope sender that brings a bounce
//! back to its outbox row; [`feedback_log`] records what came back;
//! [`test_send`] sends one campaign message to a tester, recorded nowhere.

pub mod breaker;
pub mod campaign_pause;
pub mod compose;
pub mod feedback_log;
pub mod held;
pub mod outbox;
pub mod pause;
pub mod recorder;
pub mod refusal;
pub mod result_log;
pub mod sender;
pub mod test_send;
pub mod transport;
pub mod unsubscribe;
pub mod verp;

use secrecy::SecretString;

pub use recorder::Report;
pub use sender::{Options, Sender};
pub use transport::Transport;
pub use unsubscribe::Signer;

/// The signer for unsubscribe links, when a secret is configured.
pub fn signer(secret: Option<&SecretString>) -> Option<Signer> {
    secret.cloned().map(Signer::new)
}
