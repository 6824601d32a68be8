//! Where messages go: an SMTP server (lettre's async SMTP client, one
//! connection per sender worker), or a folder of `.eml` files (the default for trials).

use std::path::{Path, PathBuf};

use anyhow::Context;
use lettre::Message;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
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
    /// The whole message went out but the server's reply to it never came
    /// (the connection broke or timed out): it may have been delivered.
    Unknown(String),
    /// The server could not be used at all (no connection, no greeting, TLS
    /// or login refused): a fault of the relay or the settings, not of the
    /// message, so no attempt is spent on it.
    Unusable(String),
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

/// A message the server is ready to take: its envelope was accepted (MAIL,
/// RCPT, DATA) and nothing of it can have been delivered yet. Only
/// [`Transport::hand_over`], which writes it, can deliver it, so a sender
/// may prepare the next message while the last one's result is recorded.
pub struct Ready {
    name: String,
    bytes: Vec<u8>,
}

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
        match self.prepare(session, &message, name).await {
            Ok(ready) => self.hand_over(session, ready).await,
            Err(outcome) => outcome,
        }
    }

    /// Everything before the message itself: on SMTP, connecting if needed
    /// and the envelope. The outcome instead when the server refused or
    /// could not be reached (nothing was delivered).
    pub async fn prepare(&self, session: &mut Session, message: &Message, name: &str) -> Result<Ready, Outcome> {
        let ready = Ready { name: name.to_owned(), bytes: message.formatted() };
        match self {
            Transport::Smtp(smtp) => match smtp.prepare(session, message.envelope(), &ready.bytes).await {
                Ok(()) => Ok(ready),
                Err(failure) => Err(failure.outcome()),
            },
            Transport::File(_) => Ok(ready),
        }
    }

    /// Writes a prepared message: the step after which it may be delivered.
    pub async fn hand_over(&self, session: &mut Session, ready: Ready) -> Outcome {
        match self {
            Transport::Smtp(smtp) => match smtp.write_message(session, &ready.bytes).await {
                Ok(response) => Outcome::Accepted(format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                )),
                Err(failure) => failure.outcome(),
            },
            Transport::File(dir) => match write_file(dir, &ready.name, &ready.bytes).await {
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

    /// Connects if needed and sends the envelope, within the timeout.
    async fn prepare(&self, session: &mut Session, envelope: &Envelope, bytes: &[u8]) -> Result<(), Failure> {
        let reused = session.0.as_ref().is_some_and(|c| !c.has_broken());
        let mut result = self.try_envelope(session, envelope, bytes).await;
        // A kept connection the server has since closed: try once on a new one.
        if reused && matches!(result, Err(Failure::Network(_))) {
            result = self.try_envelope(session, envelope, bytes).await;
        }
        result
    }

    async fn try_envelope(&self, session: &mut Session, envelope: &Envelope, bytes: &[u8]) -> Result<(), Failure> {
        let mut phase = Phase::Connecting;
        let result = tokio::time::timeout(self.timeout, async {
            if session.0.as_ref().is_none_or(AsyncSmtpConnection::has_broken) {
                session.0 = Some(self.connect().await?);
            }
            let connection = session.0.as_mut().expect("connected above");
            send_envelope(connection, envelope, bytes, &mut phase).await
        })
        .await;
        self.settle(session, result, phase).await
    }

    /// Writes the message of a prepared transaction and reads the reply,
    /// within the timeout.
    async fn write_message(&self, session: &mut Session, bytes: &[u8]) -> Result<Response, Failure> {
        let phase = Phase::AwaitingReply;
        let Some(connection) = session.0.as_mut() else {
            return Err(Failure::Network("the connection was lost before the message was written".into()));
        };
        let written =
            tokio::time::timeout(self.timeout, async { connection.message(bytes).await.map_err(step(phase)) }).await;
        self.settle(session, written, phase).await
    }

    /// The result of a step that had `self.timeout`; a connection that
    /// broke or timed out is dropped.
    async fn settle<T>(
        &self,
        session: &mut Session,
        result: Result<Result<T, Failure>, tokio::time::error::Elapsed>,
        phase: Phase,
    ) -> Result<T, Failure> {
        let result = result.unwrap_or_else(|_| {
            let text = format!("no answer from the SMTP server within {:?}", self.timeout);
            Err(phase.failure(text))
        });
        let broken = result.is_err() || session.0.as_ref().is_some_and(AsyncSmtpConnection::has_broken);
        // A refused command leaves the connection usable, but the next
        // message starts on a fresh one, as lettre itself does.
        if broken
            && let Some(mut connection) = session.0.take()
            && matches!(result, Err(Failure::Smtp(_)))
        {
            let _ = tokio::time::timeout(self.timeout, connection.abort()).await;
        }
        result
    }

    /// Connects, upgrades to TLS and logs in. Any failure here is the
    /// relay's or the settings' fault: [`Failure::Unusable`].
    async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        let unusable = |what: &str, error: lettre::transport::smtp::Error| {
            Failure::Unusable(format!("{what} {}:{}: {error}", self.host, self.port))
        };
        let address = (self.host.as_str(), self.port);
        let mut connection = match (self.tls, &self.tls_parameters) {
            // Implicit TLS: lettre makes the socket (with Nagle on, see above).
            (SmtpTls::Tls, Some(tls)) => {
                AsyncSmtpConnection::connect_tokio1(address, Some(self.timeout), &self.hello, Some(tls.clone()), None)
                    .await
                    .map_err(|e| unusable("cannot connect over TLS to", e))?
            }
            _ => {
                let tcp = TcpStream::connect(address)
                    .await
                    .map_err(|e| Failure::Unusable(format!("cannot connect to {}:{}: {e}", self.host, self.port)))?;
                tcp.set_nodelay(true).map_err(|e| Failure::Unusable(e.to_string()))?;
                let mut connection = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                    .await
                    .map_err(|e| unusable("no SMTP greeting from", e))?;
                if let (SmtpTls::StartTls, Some(tls)) = (self.tls, &self.tls_parameters) {
                    connection
                        .starttls(tls.clone(), &self.hello)
                        .await
                        .map_err(|e| unusable("STARTTLS failed with", e))?;
                }
                connection
            }
        };
        if let Some(credentials) = &self.credentials {
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| unusable("login (smtp.username, smtp.password) refused by", e))?;
        }
        Ok(connection)
    }
}

/// How far an attempt got, which decides what a broken connection means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    /// MAIL, RCPT and DATA: nothing can have been delivered yet.
    Envelope,
    /// The message was written: only the server's reply is missing.
    AwaitingReply,
}

impl Phase {
    /// The failure of a connection that broke or went silent in this phase.
    fn failure(self, text: String) -> Failure {
        match self {
            Phase::Connecting => Failure::Unusable(text),
            Phase::Envelope => Failure::Network(text),
            Phase::AwaitingReply => Failure::NoReply(format!("the message was sent but {text}")),
        }
    }
}

/// MAIL, RCPT and DATA, step by step (as lettre's own `send` does before
/// the message), so that a reply lost after the message can be told apart.
async fn send_envelope(
    connection: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    bytes: &[u8],
    phase: &mut Phase,
) -> Result<(), Failure> {
    *phase = Phase::Envelope;
    let mut options = Vec::new();
    let non_ascii_address =
        envelope.from().into_iter().chain(envelope.to()).any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii_address {
        if !connection.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(Failure::Network("the address is not ASCII and the server does not offer SMTPUTF8".into()));
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !bytes.is_ascii() {
        if !connection.server_info().supports_feature(Extension::EightBitMime) {
            return Err(Failure::Network("the message is not ASCII and the server does not offer 8BITMIME".into()));
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    connection.command(Mail::new(envelope.from().cloned(), options)).await.map_err(step(Phase::Envelope))?;
    for recipient in envelope.to() {
        connection.command(Rcpt::new(recipient.clone(), vec![])).await.map_err(step(Phase::Envelope))?;
    }
    connection.command(Data).await.map_err(step(Phase::Envelope))?;
    Ok(())
}

/// What a lettre error in `phase` means ([`step_failure`]), for `map_err`.
fn step(phase: Phase) -> impl Fn(lettre::transport::smtp::Error) -> Failure {
    move |error| step_failure(phase, error)
}

/// A 4xx or 5xx reply is the server's answer; anything else (a broken
/// connection, a timeout, no complete reply: lettre's "incomplete response"
/// at end of stream) is a connection that failed in this phase.
fn step_failure(phase: Phase, error: lettre::transport::smtp::Error) -> Failure {
    if error.is_permanent() || error.is_transient() { Failure::Smtp(error) } else { phase.failure(error.to_string()) }
}

/// Why a step failed.
enum Failure {
    /// The server answered with a refusal.
    Smtp(lettre::transport::smtp::Error),
    /// The connection broke before the message was written.
    Network(String),
    /// The connection broke after the message was written.
    NoReply(String),
    /// No usable connection at all.
    Unusable(String),
}

impl Failure {
    fn outcome(self) -> Outcome {
        match self {
            Failure::Smtp(error) => classify(&error),
            Failure::Network(text) => Outcome::Temporary(text),
            Failure::NoReply(text) => Outcome::Unknown(text),
            Failure::Unusable(text) => Outcome::Unusable(text),
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
