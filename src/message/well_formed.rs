//! Whether an HTML template is well-formed: every element opened is closed,
//! in order (void elements such as `<br>` need no end tag), and html5ever's
//! tokenizer finds no syntax error. Browsers repair broken markup, each in
//! its own way, and mail clients less predictably still, so a campaign
//! refuses it before anyone receives the repair. The template's own syntax
//! (`{{ }}`, `{% %}`) is plain text to the tokenizer.

use std::cell::RefCell;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::{BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts};

/// Elements without content, which take no end tag.
const VOID: &[&str] =
    &["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"];

/// The first problem of `source`, with its line (from 1).
pub fn first_problem(source: &str) -> Option<(usize, String)> {
    let checker = Checker::default();
    let tokenizer = Tokenizer::new(checker, TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(source));
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    tokenizer.sink.problem.into_inner()
}

#[derive(Default)]
struct Checker {
    /// Open elements with the line each opened on.
    open: RefCell<Vec<(String, usize)>>,
    problem: RefCell<Option<(usize, String)>>,
}

impl Checker {
    fn found(&self, line: usize, message: String) {
        self.problem.borrow_mut().get_or_insert((line, message));
    }

    fn tag(&self, tag: &Tag, line: usize) {
        let name = tag.name.to_string();
        let void = VOID.contains(&name.as_str());
        let mut open = self.open.borrow_mut();
        match tag.kind {
            TagKind::StartTag if void || tag.self_closing => {}
            TagKind::StartTag => open.push((name, line)),
            TagKind::EndTag if void => {
                drop(open);
                self.found(line, format!("</{name}> ends <{name}>, which takes no end tag"));
            }
            TagKind::EndTag => match open.last() {
                Some((top, _)) if *top == name => {
                    open.pop();
                }
                Some((top, opened)) => {
                    let message = if open.iter().any(|(o, _)| *o == name) {
                        format!("</{name}> comes before the end of <{top}> (opened on line {opened})")
                    } else {
                        format!("</{name}> ends no open <{name}>")
                    };
                    drop(open);
                    self.found(line, message);
                }
                None => {
                    drop(open);
                    self.found(line, format!("</{name}> ends no open <{name}>"));
                }
            },
        }
    }
}

impl TokenSink for Checker {
    type Handle = ();

    fn process_token(&self, token: Token, line: u64) -> TokenSinkResult<()> {
        let line = usize::try_from(line).unwrap_or(usize::MAX);
        match token {
            Token::TagToken(tag) => self.tag(&tag, line),
            Token::ParseError(error) => self.found(line, format!("malformed HTML: {error}")),
            Token::EOFToken => {
                let unclosed = self.open.borrow().last().cloned();
                if let Some((name, opened)) = unclosed {
                    self.found(opened, format!("<{name}> is never closed"));
                }
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::first_problem;

    #[test]
    fn balanced_markup_with_void_elements_and_template_syntax_passes() {
        let html = "<!DOCTYPE html>\n<html><body>\n<p>Hi {{ customer.first_name }}<br>\n<img src=\"x.png\" alt=\"\">\
                    {% if clv > 100 %}<b>VIP</b>{% endif %}</p>\n<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>\n\
                    <hr/></body></html>\n";
        assert_eq!(first_problem(html), None);
    }

    #[test]
    fn each_kind_of_break_is_named_with_its_line() {
        assert_eq!(first_problem("<p>one\n<p>two</p>\n"), Some((1, "<p> is never closed".into())));
        assert_eq!(
            first_problem("<div>\n<b>bold</div>\n</b>"),
            Some((2, "</div> comes before the end of <b> (opened on line 2)".into()))
        );
        assert_eq!(first_problem("<p>x</p>\n</span>"), Some((2, "</span> ends no open <span>".into())));
        assert_eq!(first_problem("line<br></br>"), Some((1, "</br> ends <br>, which takes no end tag".into())));
        let (line, message) =
            first_problem("<p>\n<a href=\"x\" href=\"y\">dup</a></p>").expect("a duplicate attribute");
        assert_eq!(line, 2);
        assert!(message.starts_with("malformed HTML: "), "{message}");
    }
}
