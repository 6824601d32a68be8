//! Who may open the dashboard: on a loopback address anyone who can reach
//! it; elsewhere only a request with a credential from `ui.credentials_file`
//! (a bearer token, or a Basic user and password), compared in constant time.

use std::net::SocketAddr;
use std::path::Path;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{ConfigError, Settings};
use crate::feedback::webhook::{header, same_secret};

/// One line of the credentials file.
#[derive(Debug)]
enum Credential {
    Token(SecretString),
    User { name: String, password: SecretString },
}

/// The credentials a request must show; none: the dashboard is open.
#[derive(Debug, Default)]
pub struct Access {
    credentials: Vec<Credential>,
}

impl Access {
    /// From `[ui]` and `http.listen`. Refuses a non-loopback address
    /// without credentials, and a credentials file that cannot be used.
    pub fn configure(settings: &Settings) -> Result<Access, ConfigError> {
        let file = &settings.ui.credentials_file;
        let problem = |problem: String| ConfigError::Invalid {
            key: "ui.credentials_file".into(),
            origin: "the settings".into(),
            problem,
        };
        let credentials = if file.as_os_str().is_empty() { Vec::new() } else { read(file).map_err(problem)? };
        let listen = &settings.http.listen;
        let loopback = listen.parse::<SocketAddr>().is_ok_and(|address| address.ip().is_loopback());
        if credentials.is_empty() && !loopback {
            return Err(problem(format!(
                "the dashboard ([ui] enabled) listens on {listen} (http.listen), which is not a loopback address: \
                 it needs credentials; set ui.credentials_file to a file of `token = ...` or `user:password` lines"
            )));
        }
        Ok(Access { credentials })
    }

    /// Whether the request's `Authorization` header carries a known credential.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if self.credentials.is_empty() {
            return true;
        }
        let Some((scheme, value)) = header(headers, "authorization").and_then(|v| v.split_once(' ')) else {
            return false;
        };
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.any(
                |c| matches!(c, Credential::Token(t) if same_secret(value.as_bytes(), t.expose_secret().as_bytes())),
            );
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = STANDARD.decode(value) else { return false };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else { return false };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        self.any(|c| match c {
            // Both compared, whatever the first gives.
            Credential::User { name, password: expected } => {
                same_secret(user, name.as_bytes()) & same_secret(password, expected.expose_secret().as_bytes())
            }
            Credential::Token(_) => false,
        })
    }

    /// Whether `matches` holds for some credential; every one is tried, so
    /// that the time taken does not tell which one matched.
    fn any(&self, matches: impl Fn(&Credential) -> bool) -> bool {
        self.credentials.iter().fold(false, |found, c| found | matches(c))
    }
}

/// The credentials in `file`; a line that is neither form is refused with its number.
fn read(file: &Path) -> Result<Vec<Credential>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let credentials = parse(&text).map_err(|(line, why)| format!("{}, line {line}: {why}", file.display()))?;
    if credentials.is_empty() {
        return Err(format!("{} holds no credential", file.display()));
    }
    Ok(credentials)
}

fn parse(text: &str) -> Result<Vec<Credential>, (usize, &'static str)> {
    let mut credentials = Vec::new();
    for (number, line) in text.lines().enumerate().map(|(i, line)| (i + 1, line.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let token = line.strip_prefix("token").map(str::trim_start).and_then(|rest| rest.strip_prefix('='));
        let credential = match (token, line.split_once(':')) {
            (Some(token), _) if !token.trim().is_empty() => Credential::Token(SecretString::from(token.trim())),
            (Some(_), _) => return Err((number, "the token is empty")),
            (None, Some((name, password))) if !name.is_empty() && !password.is_empty() => {
                Credential::User { name: name.to_owned(), password: SecretString::from(password) }
            }
            _ => return Err((number, "expected `token = SECRET` or `user:password` (neither part empty)")),
        };
        credentials.push(credential);
    }
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(text: &str) -> Access {
        Access { credentials: parse(text).unwrap() }
    }

    fn asking(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", value.parse().unwrap());
        headers
    }

    #[test]
    fn a_token_or_a_basic_user_from_the_file_is_let_in_and_nothing_else() {
        let access = access("# the marketing team\ntoken = s3cret-token\n\nalice:pass:word\n");
        assert!(access.allows(&asking("Bearer s3cret-token")));
        assert!(access.allows(&asking(&format!("Basic {}", STANDARD.encode("alice:pass:word")))));
        assert!(!access.allows(&asking("Bearer s3cret-toke")));
        assert!(!access.allows(&asking(&format!("Basic {}", STANDARD.encode("alice:pass")))));
        assert!(!access.allows(&asking(&format!("Basic {}", STANDARD.encode("token:s3cret-token")))));
        assert!(!access.allows(&asking("s3cret-token")));
        assert!(!access.allows(&HeaderMap::new()));
        assert!(Access::default().allows(&HeaderMap::new()), "no credentials: open");
    }

    #[test]
    fn a_line_of_neither_form_is_refused_with_its_number() {
        assert_eq!(
            parse("token = a\njust-a-word\n").err(),
            Some((2, "expected `token = SECRET` or `user:password` (neither part empty)"))
        );
        assert_eq!(parse("# c\ntoken =  \n").err(), Some((2, "the token is empty")));
        assert_eq!(parse(":pw\n").err().map(|e| e.0), Some(1));
    }
}
