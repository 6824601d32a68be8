//! Where messages go: an SMTP server (lettre's async SMTP client, one
//! connection per sender worker), or a folder of `.eml` files (the default for trials).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use lettre::Message;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
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
pub struct Session(Option<Connection>);

/// A connection, and whether its server takes the envelope's commands in
/// one write (PIPELINING, RFC 2920).
struct Connection {
    smtp: AsyncSmtpConnection,
    pipelining: bool,
}

impl Connection {
    fn has_broken(&self) -> bool {
        self.smtp.has_broken()
    }
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
        let go = std::future::ready(Ok::<(), std::convert::Infallible>(()));
        match self.send_when(session, message, name, go).await {
            Ok(outcome) => outcome,
        }
    }

    /// Hands `message` over once `go` allows it, or leaves it unsent with
    /// `go`'s reason. Over SMTP the envelope (MAIL, RCPT, DATA) is written
    /// while `go` is pending, and the content with its end, which is what
    /// makes the server take the message, only after: a sender waiting for
    /// its last result's commit spends that time on the next message's
    /// first round trip. A message `go` holds back is abandoned with its
    /// connection, and the server discards a message whose content never ended.
    pub async fn send_when<T>(
        &self,
        session: &mut Session,
        message: Message,
        name: &str,
        go: impl Future<Output = Result<(), T>>,
    ) -> Result<Outcome, T> {
        match self {
            Transport::Smtp(smtp) => smtp.send_when(session, &message, go).await,
            Transport::File(dir) => {
                go.await?;
                Ok(match write_file(dir, name, &message.formatted()).await {
                    Ok(path) => Outcome::Accepted(format!("written to {}", path.display())),
                    Err(error) => Outcome::Temporary(format!("writing the message file: {error}")),
                })
            }
        }
    }
}

impl Session {
    /// Closes the connection, mid-transaction or not.
    fn hang_up(&mut self) {
        self.0 = None;
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

    async fn send_when<T>(
        &self,
        session: &mut Session,
        message: &Message,
        go: impl Future<Output = Result<(), T>>,
    ) -> Result<Outcome, T> {
        let bytes = message.formatted();
        let envelope = message.envelope();
        let opened = self.open(session, envelope, &bytes).await;
        let waiting = Instant::now();
        if let Err(reason) = go.await {
            session.hang_up();
            return Err(reason);
        }
        // The server may have given up on a transaction left open this long.
        let opened = if opened.is_ok() && waiting.elapsed() >= self.timeout {
            session.hang_up();
            self.open(session, envelope, &bytes).await
        } else {
            opened
        };
        let result = match opened {
            Ok(()) => self.finish(session, &bytes).await,
            Err(failure) => Err(failure),
        };
        Ok(match result {
            Ok(response) => {
                Outcome::Accepted(format!("{} {}", response.code(), response.message().collect::<Vec<_>>().join(" ")))
            }
            Err(Failure::Smtp(error)) => classify(&error),
            Err(Failure::Network(text)) => Outcome::Temporary(text),
            Err(Failure::NoReply(text)) => Outcome::Unknown(text),
            Err(Failure::Unusable(text)) => Outcome::Unusable(text),
        })
    }

    /// Connects if need be and writes the envelope, up to the server's
    /// go-ahead for the content. A kept connection the server has since
    /// closed is replaced once.
    async fn open(&self, session: &mut Session, envelope: &Envelope, bytes: &[u8]) -> Result<(), Failure> {
        let reused = session.0.as_ref().is_some_and(|c| !c.has_broken());
        let opened = self.try_open(session, envelope, bytes).await;
        if reused && matches!(opened, Err(Failure::Network(_))) {
            return self.try_open(session, envelope, bytes).await;
        }
        opened
    }

    async fn try_open(&self, session: &mut Session, envelope: &Envelope, bytes: &[u8]) -> Result<(), Failure> {
        let mut phase = Phase::Connecting;
        let result = tokio::time::timeout(self.timeout, async {
            if session.0.as_ref().is_none_or(Connection::has_broken) {
                session.0 = Some(self.connect().await?);
            }
            let connection = session.0.as_mut().expect("connected above");
            write_envelope(connection, envelope, bytes, &mut phase).await
        })
        .await;
        self.settle(session, result, phase).await
    }

    /// Writes the content of the transaction [`Smtp::open`] began, with its
    /// end, and reads the server's reply.
    async fn finish(&self, session: &mut Session, bytes: &[u8]) -> Result<Response, Failure> {
        let Some(connection) = session.0.as_mut() else {
            return Err(Failure::Network("the connection closed before the message was written".into()));
        };
        let result = tokio::time::timeout(self.timeout, write_content(connection, bytes)).await;
        self.settle(session, result, Phase::AwaitingReply).await
    }

    /// A step's result within the timeout, which is a failure of the phase
    /// it struck in. The session is dropped when it broke; a refused command
    /// leaves the connection usable, but the next message starts on a fresh
    /// one, as lettre itself does.
    async fn settle<R>(
        &self,
        session: &mut Session,
        result: Result<Result<R, Failure>, tokio::time::error::Elapsed>,
        phase: Phase,
    ) -> Result<R, Failure> {
        let result = result.unwrap_or_else(|_| {
            let text = format!("no answer from the SMTP server within {:?}", self.timeout);
            Err(phase.failure(text))
        });
        let broken = result.is_err() || session.0.as_ref().is_some_and(Connection::has_broken);
        if broken
            && let Some(mut connection) = session.0.take()
            && matches!(result, Err(Failure::Smtp(_)))
        {
            let _ = tokio::time::timeout(self.timeout, connection.smtp.abort()).await;
        }
        result
    }

    /// Connects, upgrades to TLS and logs in. Any failure here is the
    /// relay's or the settings' fault: [`Failure::Unusable`].
    async fn connect(&self) -> Result<Connection, Failure> {
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
        // Before the login, which a new EHLO might undo on some servers.
        let pipelining =
            offers_pipelining(&mut connection, &self.hello).await.map_err(|e| unusable("EHLO refused by", e))?;
        if let Some(credentials) = &self.credentials {
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| unusable("login (smtp.username, smtp.password) refused by", e))?;
        }
        Ok(Connection { smtp: connection, pipelining })
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

/// MAIL, RCPT and DATA, step by step, so that a reply lost after the
/// message (see [`write_content`]) can be told apart from a refusal before
/// it (lettre's own `send` does not say which). With PIPELINING the
/// envelope goes in one write and the message with its end in another: two
/// round trips instead of four.
async fn write_envelope(
    connection: &mut Connection,
    envelope: &Envelope,
    bytes: &[u8],
    phase: &mut Phase,
) -> Result<(), Failure> {
    *phase = Phase::Envelope;
    let step = |phase: Phase| move |error: lettre::transport::smtp::Error| step_failure(phase, error);
    let smtp = &mut connection.smtp;
    let mut options = Vec::new();
    let non_ascii_address =
        envelope.from().into_iter().chain(envelope.to()).any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii_address {
        if !smtp.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(Failure::Network("the address is not ASCII and the server does not offer SMTPUTF8".into()));
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !bytes.is_ascii() {
        if !smtp.server_info().supports_feature(Extension::EightBitMime) {
            return Err(Failure::Network("the message is not ASCII and the server does not offer 8BITMIME".into()));
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = Mail::new(envelope.from().cloned(), options);
    let recipients: Vec<Rcpt> = envelope.to().iter().map(|to| Rcpt::new(to.clone(), vec![])).collect();
    if connection.pipelining {
        // lettre writes a command's text as it is and reads one reply: the
        // group is MAIL's "command", the other replies are read in order. A
        // refusal ends the attempt, and the connection with it.
        let group = format!("{mail}{}{Data}", recipients.iter().map(ToString::to_string).collect::<String>());
        smtp.command(group).await.map_err(step(Phase::Envelope))?;
        for _ in 0..=recipients.len() {
            smtp.read_response().await.map_err(step(Phase::Envelope))?;
        }
    } else {
        smtp.command(mail).await.map_err(step(Phase::Envelope))?;
        for recipient in recipients {
            smtp.command(recipient).await.map_err(step(Phase::Envelope))?;
        }
        smtp.command(Data).await.map_err(step(Phase::Envelope))?;
    }
    Ok(())
}

/// The message and its end, after [`write_envelope`]; the server's reply.
async fn write_content(connection: &mut Connection, bytes: &[u8]) -> Result<Response, Failure> {
    let smtp = &mut connection.smtp;
    let sent = match std::str::from_utf8(bytes) {
        Ok(text) => smtp.command(Content(text)).await,
        // Not UTF-8 (8BITMIME in another charset): lettre writes the end on its own.
        Err(_) => smtp.message(bytes).await,
    };
    sent.map_err(|error| step_failure(Phase::AwaitingReply, error))
}

/// Whether the server offers PIPELINING. lettre keeps only the EHLO
/// keywords it uses itself, so the question is asked again.
async fn offers_pipelining(
    connection: &mut AsyncSmtpConnection,
    hello: &ClientId,
) -> Result<bool, lettre::transport::smtp::Error> {
    let reply = connection.command(Ehlo::new(hello.clone())).await?;
    let keyword = |line: &str| line.split_whitespace().next().is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"));
    Ok(reply.message().skip(1).any(keyword))
}

/// A message's text as SMTP carries it, written at once with its end: a
/// dot that starts a line doubled (RFC 5321 4.5.2, as lettre's `message`
/// does), then `CRLF . CRLF`. lettre's `message` writes the end on its own,
/// a second segment for the server to wait for.
struct Content<'a>(&'a str);

impl std::fmt::Display for Content<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, line) in self.0.split("\r\n").enumerate() {
            if n > 0 {
                f.write_str("\r\n")?;
            }
            if line.starts_with('.') {
                f.write_str(".")?;
            }
            f.write_str(line)?;
        }
        f.write_str("\r\n.\r\n")
    }
}

/// A 4xx or 5xx reply is the server's answer; anything else (a broken
/// connection, a timeout, no complete reply: lettre's "incomplete response"
/// at end of stream) is a connection that failed in this phase.
fn step_failure(phase: Phase, error: lettre::transport::smtp::Error) -> Failure {
    if error.is_permanent() || error.is_transient() { Failure::Smtp(error) } else { phase.failure(error.to_string()) }
}

/// Why an attempt failed.
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

#[cfg(test)]
mod tests {
    use super::Content;

    #[test]
    fn a_message_is_written_with_its_leading_dots_doubled_and_its_end() {
        let text = ".first\r\nmiddle.\r\n.\r\n..two\r\n\r\nlast";
        assert_eq!(Content(text).to_string(), "..first\r\nmiddle.\r\n..\r\n...two\r\n\r\nlast\r\n.\r\n");
        // A line ends at CRLF only, as lettre's own writer has it.
        assert_eq!(Content("a\n.b\r.c").to_string(), "a\n.b\r.c\r\n.\r\n");
        assert_eq!(Content("ends\r\n").to_string(), "ends\r\n\r\n.\r\n");
    }
}
