//! Where messages go: an SMTP server (lettre's async SMTP client, one
//! connection per sender worker), or a folder of `.eml` files (the default for trials).

use std::path::{Path, PathBuf};

use anyhow::Context;
use lettre::Message;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use secrecy::ExposeSecret;
use tokio::net::TcpStream;

use crate::config::{Loaded, SmtpTls, TransportKind};

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server took it; its reply (or where the file went).
    Accepted(String),
    /// Worth trying again later: a 4xx reply, no connection, a timeout.
    Temporary(String),
    /// Refused for good (5xx). `bad_recipient`: the address itself was
    /// refused, so it is suppressed as bounced.
    Rejected { reply: String, bad_recipient: bool },
}

pub enum Transport {
    Smtp(Smtp),
    File(PathBuf),
}

/// How to reach the SMTP server. Each sender worker keeps its own
/// connection ([`Session`]) and sends its messages down it one after another.
///
/// Connections are made here rather than by lettre's pooled transport: its
/// sockets leave Nagle's algorithm on, and lettre writes the end-of-data dot
/// as a separate small write, which then waits for the server's delayed ACK,
/// 40 ms a message (lettre pull request #1159, not released yet). lettre still
/// speaks the protocol: EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA.
pub struct Smtp {
    host: String,
    port: u16,
    tls: SmtpTls,
    tls_parameters: Option<TlsParameters>,
    credentials: Option<Credentials>,
    timeout: std::time::Duration,
    hello: ClientId,
}

/// One worker's SMTP connection, made on first use and again after it breaks.
#[derive(Default)]
pub struct Session(Option<AsyncSmtpConnection>);

impl Transport {
    /// The configured transport. SMTP connections are opened on first use, so
    /// a server that is down now is only a reason to retry later.
    pub fn from_settings(loaded: &Loaded) -> anyhow::Result<Transport> {
        let delivery = &loaded.settings.delivery;
        match delivery.transport() {
            TransportKind::File => {
                std::fs::create_dir_all(&delivery.file_dir)
                    .with_context(|| format!("creating delivery.file_dir {}", delivery.file_dir.display()))?;
                Ok(Transport::File(delivery.file_dir.clone()))
            }
            TransportKind::Smtp => Smtp::from_settings(loaded).map(Transport::Smtp),
        }
    }

    /// Hands `message` over; `name` identifies it (the file name for the file transport).
    pub async fn send(&self, session: &mut Session, message: Message, name: &str) -> Outcome {
        match self {
            Transport::Smtp(smtp) => smtp.send(session, &message).await,
            Transport::File(dir) => match write_file(dir, name, &message.formatted()).await {
                Ok(path) => Outcome::Accepted(format!("written to {}", path.display())),
                Err(error) => Outcome::Temporary(format!("writing the message file: {error}")),
            },
        }
    }
}

impl Smtp {
    fn from_settings(loaded: &Loaded) -> anyhow::Result<Smtp> {
        let smtp = &loaded.settings.smtp;
        let tls_parameters = match smtp.tls() {
            SmtpTls::None => None,
            SmtpTls::StartTls | SmtpTls::Tls => {
                Some(TlsParameters::new(smtp.host.clone()).context("setting up TLS for the SMTP server")?)
            }
        };
        let credentials = if smtp.username.is_empty() {
            None
        } else {
            let password = loaded.secrets.smtp_password.as_ref().ok_or_else(|| {
                anyhow::anyhow!(
                    "smtp.username is set but there is no password: set PATRON__SMTP__PASSWORD or smtp.password_file"
                )
            })?;
            Some(Credentials::new(smtp.username.clone(), password.expose_secret().to_owned()))
        };
        Ok(Smtp {
            host: smtp.host.clone(),
            port: smtp.port,
            tls: smtp.tls(),
            tls_parameters,
            credentials,
            timeout: smtp.timeout().to_std().expect("checked: positive"),
            hello: ClientId::default(),
        })
    }

    async fn send(&self, session: &mut Session, message: &Message) -> Outcome {
        let bytes = message.formatted();
        let reused = session.0.as_ref().is_some_and(|c| !c.has_broken());
        let mut outcome = self.attempt(session, message.envelope(), &bytes).await;
        // A kept connection the server has since closed: try once on a new one.
        if reused && matches!(outcome, Err(Failure::Network(_))) {
            outcome = self.attempt(session, message.envelope(), &bytes).await;
        }
        match outcome {
            Ok(response) => {
                Outcome::Accepted(format!("{} {}", response.code(), response.message().collect::<Vec<_>>().join(" ")))
            }
            Err(Failure::Smtp(error)) => classify(&error),
            Err(Failure::Network(text)) => Outcome::Temporary(text),
        }
    }

    /// One try, within the timeout; the session is dropped when it breaks.
    async fn attempt(&self, session: &mut Session, envelope: &Envelope, bytes: &[u8]) -> Result<Response, Failure> {
        let result = tokio::time::timeout(self.timeout, async {
            if session.0.as_ref().is_none_or(AsyncSmtpConnection::has_broken) {
                session.0 = Some(self.connect().await?);
            }
            let connection = session.0.as_mut().expect("connected above");
            connection.send(envelope, bytes).await.map_err(Failure::from)
        })
        .await;
        let result = result.unwrap_or_else(|_| {
            Err(Failure::Network(format!("no answer from the SMTP server within {:?}", self.timeout)))
        });
        let broken = matches!(result, Err(Failure::Network(_)))
            || session.0.as_ref().is_some_and(AsyncSmtpConnection::has_broken);
        if broken {
            session.0 = None;
        }
        result
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        let address = (self.host.as_str(), self.port);
        let mut connection = match (self.tls, &self.tls_parameters) {
            // Implicit TLS: lettre makes the socket (with Nagle on, see above).
            (SmtpTls::Tls, Some(tls)) => {
                AsyncSmtpConnection::connect_tokio1(address, Some(self.timeout), &self.hello, Some(tls.clone()), None)
                    .await?
            }
            _ => {
                let tcp = TcpStream::connect(address)
                    .await
                    .map_err(|e| Failure::Network(format!("cannot connect to {}:{}: {e}", self.host, self.port)))?;
                tcp.set_nodelay(true).map_err(|e| Failure::Network(e.to_string()))?;
                let mut connection = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await?;
                if let (SmtpTls::StartTls, Some(tls)) = (self.tls, &self.tls_parameters) {
                    connection.starttls(tls.clone(), &self.hello).await?;
                }
                connection
            }
        };
        if let Some(credentials) = &self.credentials {
            connection.auth(&[Mechanism::Plain, Mechanism::Login], credentials).await?;
        }
        Ok(connection)
    }
}

/// Why an attempt failed: the server's answer, or no usable connection.
enum Failure {
    Smtp(lettre::transport::smtp::Error),
    Network(String),
}

impl From<lettre::transport::smtp::Error> for Failure {
    fn from(error: lettre::transport::smtp::Error) -> Self {
        if error.is_response() || error.is_permanent() || error.is_transient() {
            Failure::Smtp(error)
        } else {
            Failure::Network(error.to_string())
        }
    }
}

/// Reply codes that refuse the recipient's address itself (RFC 5321 4.2.3).
const BAD_RECIPIENT_CODES: [&str; 3] = ["550", "551", "553"];

fn classify(error: &lettre::transport::smtp::Error) -> Outcome {
    let reply = error.to_string();
    if error.is_permanent() {
        let code = error.status().map(|c| c.to_string()).unwrap_or_default();
        Outcome::Rejected { reply, bad_recipient: BAD_RECIPIENT_CODES.contains(&code.as_str()) }
    } else {
        Outcome::Temporary(reply)
    }
}

/// Writes the message under a temporary name and renames it, so that the
/// folder never holds half a message; sending it again replaces it.
async fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{name}.eml"));
    let partial = dir.join(format!(".{name}.eml.partial"));
    tokio::fs::write(&partial, bytes).await?;
    tokio::fs::rename(&partial, &path).await?;
    Ok(path)
}
