//! Recursive-descent parser: tokens to [`Expr`], with a nesting-depth limit.

use super::lexer::{Tok, Token};
use super::{Expr, Field, History, ParseError, Span, Value};

/// Maximum nesting of parentheses and `not`s.
pub const MAX_DEPTH: usize = 64;

const KEYWORDS: &[&str] = &["and", "or", "not", "between", "in", "is", "null", "true", "false"];

/// Parses a whole token stream (ending in [`Tok::End`]) into one expression.
pub(crate) fn parse_tokens(text: &str, tokens: &[Token]) -> Result<Expr, ParseError> {
    let mut parser = Parser { text, tokens, pos: 0, depth: 0 };
    let expr = parser.or_expr()?;
    match parser.peek() {
        Tok::End => Ok(expr),
        Tok::RParen => Err(parser.error_here("unmatched `)`".to_string())),
        _ => Err(parser.expected("`and`, `or` or end of expression")),
    }
}

struct Parser<'a> {
    text: &'a str,
    tokens: &'a [Token],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn current(&self) -> &Token {
        // The stream always ends with `End`, and `advance` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek(&self) -> &Tok {
        &self.current().tok
    }

    fn advance(&mut self) -> Token {
        let token = self.current().clone();
        if token.tok != Tok::End {
            self.pos += 1;
        }
        token
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Tok::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.at_keyword(keyword);
        if found {
            self.advance();
        }
        found
    }

    /// How the current token reads in a message: its source text, or "end of expression".
    fn found(&self) -> String {
        let span = &self.current().span;
        match (&self.current().tok, self.text.get(span.start..span.end)) {
            (Tok::End, _) | (_, None) => "end of expression".to_string(),
            (_, Some(source)) => format!("`{source}`"),
        }
    }

    fn error_here(&self, message: String) -> ParseError {
        ParseError::at(self.text, self.current().span.start, message)
    }

    fn expected(&self, what: &str) -> ParseError {
        self.error_here(format!("expected {what}, found {}", self.found()))
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let message =
                format!("expression is nested too deeply (more than {MAX_DEPTH} levels of parentheses or `not`)");
            return Err(self.error_here(message));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut expr = self.and_expr()?;
        while self.eat_keyword("or") {
            expr = Expr::Or(Box::new(expr), Box::new(self.and_expr()?));
        }
        Ok(expr)
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut expr = self.unary()?;
        while self.eat_keyword("and") {
            expr = Expr::And(Box::new(expr), Box::new(self.unary()?));
        }
        Ok(expr)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if !self.at_keyword("not") {
            return self.primary();
        }
        self.enter()?;
        self.advance();
        let inner = self.unary()?;
        self.depth -= 1;
        Ok(Expr::Not(Box::new(inner)))
    }

    /// Whether the current token is `name(`, a call of that function.
    fn at_call(&self, name: &str) -> bool {
        self.at_keyword(name) && self.tokens.get(self.pos + 1).is_some_and(|t| t.tok == Tok::LParen)
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        if self.at_call("subscribed") {
            return self.subscribed();
        }
        let tests = [
            History::Received { within: None },
            History::OrderedSinceReceived,
            History::Converted,
            History::InControlGroup,
        ];
        if let Some(test) = tests.into_iter().find(|test| self.at_call(test.name())) {
            return self.history(test);
        }
        if *self.peek() != Tok::LParen {
            return self.predicate();
        }
        self.enter()?;
        let open = self.advance().span.start;
        let inner = self.or_expr()?;
        match self.peek() {
            Tok::RParen => {
                self.advance();
                self.depth -= 1;
                Ok(inner)
            }
            Tok::End => {
                let at = ParseError::at(self.text, open, String::new());
                let message = format!("unclosed parenthesis opened at {}:{}", at.line, at.column);
                Err(self.error_here(message))
            }
            _ => Err(self.expected("`)`, `and` or `or`")),
        }
    }

    /// `subscribed("topic")`.
    fn subscribed(&mut self) -> Result<Expr, ParseError> {
        let start = self.advance().span.start;
        self.advance();
        let Tok::Str(topic) = self.peek().clone() else {
            return Err(self.expected("a topic name in quotes, as in `subscribed(\"offers\")`"));
        };
        self.advance();
        if *self.peek() != Tok::RParen {
            return Err(self.expected("`)` after the topic"));
        }
        self.advance();
        Ok(Expr::Subscribed { topic, span: self.span_from(start) })
    }

    /// `received("campaign")`, `received("campaign", within = 7d)` and the
    /// other history tests, which take the campaign alone.
    fn history(&mut self, test: History) -> Result<Expr, ParseError> {
        let start = self.advance().span.start;
        let campaign = self.campaign_argument(test.name())?;
        let test = match (test, self.peek()) {
            (History::Received { .. }, Tok::Comma) => {
                self.advance();
                History::Received { within: Some(self.within()?) }
            }
            (_, Tok::Comma) => {
                return Err(self.expected(&format!("`)`: `{}` takes the campaign only", test.name())));
            }
            _ => test,
        };
        self.close_call()?;
        Ok(Expr::History { test, campaign, span: self.span_from(start) })
    }

    /// `(` and the campaign name in quotes.
    fn campaign_argument(&mut self, function: &str) -> Result<String, ParseError> {
        self.advance();
        let Tok::Str(campaign) = self.peek().clone() else {
            return Err(self.expected(&format!("a campaign name in quotes, as in `{function}(\"welcome\")`")));
        };
        self.advance();
        Ok(campaign)
    }

    fn close_call(&mut self) -> Result<(), ParseError> {
        if *self.peek() != Tok::RParen {
            return Err(self.expected("`)`"));
        }
        self.advance();
        Ok(())
    }

    /// `within = 7d`, in days.
    fn within(&mut self) -> Result<f64, ParseError> {
        if !self.eat_keyword("within") {
            return Err(self.expected("`within = <duration>`, as in `received(\"welcome\", within = 7d)`"));
        }
        if *self.peek() != Tok::Op(super::CompareOp::Eq) {
            return Err(self.expected("`=` after `within`"));
        }
        self.advance();
        match *self.peek() {
            Tok::Duration(days) if days > 0.0 => {
                self.advance();
                Ok(days)
            }
            _ => Err(self.expected("a duration above zero such as 7d or 2w after `within =`")),
        }
    }

    fn field(&mut self) -> Result<(Field, usize), ParseError> {
        if self.at_call("days_since_received") {
            let start = self.advance().span.start;
            let campaign = self.campaign_argument("days_since_received")?;
            self.close_call()?;
            return Ok((Field::DaysSinceReceived(campaign), start));
        }
        let field = match self.peek() {
            Tok::Attribute(name) => Field::Attribute(name.clone()),
            Tok::Word(w) if !KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k)) => Field::Named(w.clone()),
            _ => return Err(self.expected("a field name or `(`")),
        };
        Ok((field, self.advance().span.start))
    }

    fn predicate(&mut self) -> Result<Expr, ParseError> {
        let (field, start) = self.field()?;
        let keyword = |w: &str, k: &str| w.eq_ignore_ascii_case(k);
        match self.peek().clone() {
            Tok::Op(op) => {
                let op_token = self.advance();
                let op_text = self.text.get(op_token.span.start..op_token.span.end).unwrap_or("");
                let value = self.value(&format!("after `{op_text}`"))?;
                Ok(Expr::Compare { field, op, value, span: self.span_from(start) })
            }
            Tok::Word(w) if keyword(&w, "between") => self.between(field, start),
            Tok::Word(w) if keyword(&w, "in") => self.in_list(field, start, false),
            Tok::Word(w) if keyword(&w, "not") => {
                self.advance();
                if !self.at_keyword("in") {
                    return Err(self.expected(&format!("`in` after `{field} not`")));
                }
                self.in_list(field, start, true)
            }
            Tok::Word(w) if keyword(&w, "is") => self.is_null(field, start),
            _ => {
                Err(self.expected(&format!("a comparison (`=`, `<`, `between`, `in`, `is null`, ...) after `{field}`")))
            }
        }
    }

    /// Span from `start` to the end of the last consumed token.
    fn span_from(&self, start: usize) -> Span {
        let end = self.pos.checked_sub(1).and_then(|i| self.tokens.get(i)).map_or(start, |t| t.span.end);
        Span { start, end }
    }

    fn between(&mut self, field: Field, start: usize) -> Result<Expr, ParseError> {
        self.advance();
        let low = self.value("after `between`")?;
        if !self.eat_keyword("and") {
            return Err(self.expected("`and` between the two bounds of `between`"));
        }
        let high = self.value("after `and`")?;
        Ok(Expr::Between { field, low, high, span: self.span_from(start) })
    }

    fn in_list(&mut self, field: Field, start: usize, negated: bool) -> Result<Expr, ParseError> {
        self.advance();
        if *self.peek() != Tok::LBracket {
            return Err(self.expected("`[` to start a list after `in`"));
        }
        self.advance();
        let mut values = vec![self.value("in the list (lists cannot be empty)")?];
        loop {
            match self.peek() {
                Tok::Comma => {
                    self.advance();
                    values.push(self.value("after `,` in the list")?);
                }
                Tok::RBracket => break,
                _ => return Err(self.expected("`,` or `]` in the list")),
            }
        }
        self.advance();
        Ok(Expr::In { field, values, negated, span: self.span_from(start) })
    }

    fn is_null(&mut self, field: Field, start: usize) -> Result<Expr, ParseError> {
        self.advance();
        let negated = self.eat_keyword("not");
        if !self.eat_keyword("null") {
            let after = if negated { "`is not`" } else { "`is`" };
            return Err(self.expected(&format!("`null` after {after}")));
        }
        Ok(Expr::IsNull { field, negated, span: self.span_from(start) })
    }

    fn value(&mut self, context: &str) -> Result<Value, ParseError> {
        let value = match self.peek() {
            Tok::Number(n) => Value::Number(*n),
            Tok::Duration(d) => Value::Days(*d),
            Tok::Date(d) => Value::Date(*d),
            Tok::Str(s) => Value::Text(s.clone()),
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
            Tok::Word(w) if w.eq_ignore_ascii_case("null") => {
                let message = format!("expected a value {context}, found `null`; use `is null` or `is not null`");
                return Err(self.error_here(message));
            }
            _ => return Err(self.expected(&format!("a value {context}"))),
        };
        self.advance();
        Ok(value)
    }
}
