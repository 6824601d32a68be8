//! Lexer: turns segment-expression text into tokens with byte spans.

use chrono::NaiveDate;

use super::{CompareOp, ParseError, Span};

/// The kinds of token a segment expression is made of.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A bare word: a keyword (`and`, `true`, ...) or a field name.
    Word(String),
    /// `attributes.NAME`; holds `NAME`.
    Attribute(String),
    Number(f64),
    /// A duration literal, already converted to days.
    Duration(f64),
    Date(NaiveDate),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Op(CompareOp),
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// Splits `text` into tokens, ending with a single [`Tok::End`].
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut lexer = Lexer { text, pos: 0 };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        let done = token.tok == Tok::End;
        tokens.push(token);
        if done {
            return Ok(tokens);
        }
    }
}

struct Lexer<'t> {
    text: &'t str,
    pos: usize,
}

impl<'t> Lexer<'t> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.text[self.pos..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat_while(&mut self, keep: impl Fn(char) -> bool) -> &'t str {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.bump();
        }
        &self.text[start..self.pos]
    }

    fn error(&self, offset: usize, message: String) -> ParseError {
        ParseError::at(self.text, offset, message)
    }

    fn next_token(&mut self) -> Result<Token, ParseError> {
        self.eat_while(char::is_whitespace);
        let start = self.pos;
        let tok = match self.peek() {
            None => Tok::End,
            Some(quote @ ('"' | '\'')) => self.string(quote)?,
            Some(c) if c.is_ascii_alphabetic() || c == '_' => self.word()?,
            Some(c) if c.is_ascii_digit() => self.numeric()?,
            Some('-') if self.peek_second().is_some_and(|c| c.is_ascii_digit()) => self.numeric()?,
            Some(c) => self.punctuation(c)?,
        };
        Ok(Token { tok, span: Span { start, end: self.pos } })
    }

    fn punctuation(&mut self, c: char) -> Result<Tok, ParseError> {
        let start = self.pos;
        self.bump();
        let followed_by_eq = self.peek() == Some('=');
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ',' => Tok::Comma,
            '=' => Tok::Op(CompareOp::Eq),
            '<' if followed_by_eq => Tok::Op(CompareOp::Le),
            '<' => Tok::Op(CompareOp::Lt),
            '>' if followed_by_eq => Tok::Op(CompareOp::Ge),
            '>' => Tok::Op(CompareOp::Gt),
            '!' if followed_by_eq => Tok::Op(CompareOp::Ne),
            _ => return Err(self.error(start, format!("unexpected character `{c}`"))),
        };
        if matches!(tok, Tok::Op(CompareOp::Le | CompareOp::Ge | CompareOp::Ne)) {
            self.bump();
        }
        Ok(tok)
    }

    fn word(&mut self) -> Result<Tok, ParseError> {
        let start = self.pos;
        let word = self.eat_while(|c| c.is_ascii_alphanumeric() || c == '_').to_string();
        if word != "attributes" || self.peek() != Some('.') {
            return Ok(Tok::Word(word));
        }
        self.bump();
        let name = self.eat_while(|c| c.is_ascii_alphanumeric() || c == '_');
        if name.is_empty() {
            let found = self.peek().map_or("end of expression".to_string(), |c| format!("`{c}`"));
            let message = format!("expected an attribute name after `attributes.`, found {found}");
            return Err(self.error(start, message));
        }
        Ok(Tok::Attribute(name.to_string()))
    }

    /// A string in double quotes, or in single quotes (easier inside a TOML
    /// string: `where = "received('welcome')"`).
    fn string(&mut self, quote: char) -> Result<Tok, ParseError> {
        let start = self.pos;
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error(start, "unterminated string".to_string())),
                Some(c) if c == quote => return Ok(Tok::Str(value)),
                Some('\\') => {
                    let escape_at = self.pos - 1;
                    match self.bump() {
                        Some(c @ ('"' | '\'' | '\\')) => value.push(c),
                        Some(c) => {
                            let message =
                                format!("unknown escape `\\{c}` in string; only `\\\"`, `\\'` and `\\\\` are allowed");
                            return Err(self.error(escape_at, message));
                        }
                        None => return Err(self.error(start, "unterminated string".to_string())),
                    }
                }
                Some(c) => value.push(c),
            }
        }
    }

    /// Numbers, dates and durations: read the whole run, then classify it.
    fn numeric(&mut self) -> Result<Tok, ParseError> {
        let start = self.pos;
        self.bump();
        self.eat_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        let raw = &self.text[start..self.pos];
        classify_numeric(raw).map_err(|message| self.error(start, message))
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn classify_numeric(raw: &str) -> Result<Tok, String> {
    if let Some(tok) = parse_date(raw)? {
        return Ok(tok);
    }
    if let Some((digits, per_unit)) = split_duration(raw) {
        return match digits.parse::<f64>() {
            Ok(n) if (n * per_unit).is_finite() => Ok(Tok::Duration(n * per_unit)),
            _ => Err(format!("duration `{raw}` is too large")),
        };
    }
    let unsigned = raw.strip_prefix('-').unwrap_or(raw);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    if !all_digits(whole) || !all_digits(fraction) {
        return Err(format!(
            "invalid number `{raw}`; expected a number such as 12 or 0.5, a date such as 2026-01-31, or a duration such as 30d or 2w"
        ));
    }
    match raw.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(Tok::Number(n)),
        _ => Err(format!("number `{raw}` is too large")),
    }
}

/// `<int>d` or `<int>w`, returning the digits and the number of days per unit.
fn split_duration(raw: &str) -> Option<(&str, f64)> {
    let (digits, per_unit) = match raw.as_bytes().last()? {
        b'd' => (&raw[..raw.len() - 1], 1.0),
        b'w' => (&raw[..raw.len() - 1], 7.0),
        _ => return None,
    };
    all_digits(digits).then_some((digits, per_unit))
}

/// Anything shaped like `DDDD-DD-DD` must be a real calendar date.
fn parse_date(raw: &str) -> Result<Option<Tok>, String> {
    let parts: Vec<&str> = raw.split('-').collect();
    let shaped = matches!(parts.as_slice(), [y, m, d]
        if y.len() == 4 && m.len() == 2 && d.len() == 2 && parts.iter().all(|p| all_digits(p)));
    if !shaped {
        return Ok(None);
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(|date| Some(Tok::Date(date)))
        .map_err(|_| format!("invalid date `{raw}`; no such day in the calendar"))
}
