//! `feedback.imap_url`: which IMAP mailbox the bounces are read from, checked
//! when the settings load (`feedback::imap` logs in to it).

use std::fmt::{self, Display};

/// Where the mailbox is: `imaps://USER@HOST[:PORT][/FOLDER]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub host: String,
    pub port: u16,
    /// `imaps://`: TLS from the first byte; `imap://`: none (this machine only).
    pub tls: bool,
    pub user: String,
    pub folder: String,
}

impl Mailbox {
    /// Reads `feedback.imap_url`; the problem, when it is not a usable mailbox.
    pub fn parse(text: &str) -> Result<Mailbox, String> {
        let url = url::Url::parse(text.trim()).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        let tls = match url.scheme() {
            "imaps" => true,
            "imap" => false,
            other => return Err(format!("expected imaps://USER@HOST/FOLDER, not {other}://")),
        };
        let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err("names no server: expected imaps://USER@HOST/FOLDER".into());
        }
        let user = decode(url.username());
        if user.is_empty() {
            return Err(
                "names no user: expected imaps://USER@HOST/FOLDER (an @ in the user name is written %40)".into()
            );
        }
        if url.password().is_some() {
            return Err(
                "must not hold the password: set PATRON__FEEDBACK__IMAP_PASSWORD or feedback.imap_password_file".into(),
            );
        }
        if !tls && !is_this_machine(&host) {
            return Err(format!(
                "imap:// sends the password unencrypted, so it is accepted only for a server on this machine, \
                 not {host}: use imaps://"
            ));
        }
        let folder = decode(url.path().trim_matches('/'));
        let folder = if folder.is_empty() { "INBOX".to_owned() } else { folder };
        Ok(Mailbox { port: url.port().unwrap_or(if tls { 993 } else { 143 }), host, tls, user, folder })
    }
}

/// The mailbox without its user name, for messages.
impl Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "imaps" } else { "imap" };
        write!(f, "{scheme}://{}:{}/{}", self.host, self.port, self.folder)
    }
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

fn is_this_machine(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
