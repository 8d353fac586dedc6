//! The lexer: turns source text into [`Token`]s, one at a time.
//!
//! Tokens carry byte spans into the text; identifiers and numbers are read back
//! from the source through their span. Whitespace separates tokens and is
//! otherwise skipped; the parsers that care about it (matrix literals,
//! declarations separated by newlines) look at the gap between two spans.

use crate::error::{Error, ErrorKind, Result};
use crate::syntax::ast::Span;

/// The kind of a token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tok {
    /// A numeric literal with its value: `2`, `2.5`, `.5`, `1e-3`.
    Num(f64),
    /// An ASCII identifier `[A-Za-z_][A-Za-z0-9_]*`; the name is the span's text.
    Ident,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `^`
    Caret,
    /// `.*`
    DotStar,
    /// `./`
    DotSlash,
    /// `.^`
    DotCaret,
    /// `'` (postfix transpose)
    Quote,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `;`
    Semi,
    /// `,`
    Comma,
    /// `:` (declarations only)
    Colon,
    /// `..` (ranges in declarations only)
    DotDot,
    /// The end of the text (an empty span at its end).
    Eof,
}

/// A token and where it was written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Token {
    /// What it is.
    pub kind: Tok,
    /// Its bytes in the source.
    pub span: Span,
}

/// A streaming lexer over one source text.
#[derive(Clone, Debug)]
pub struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

/// Longest token text quoted verbatim in an error message.
const QUOTE_MAX: usize = 40;

/// Quote the text of `span` for an error message: `` `x` ``, or
/// "the end of the input" for an empty span.
pub fn describe(src: &str, span: Span) -> String {
    let text = src.get(span.range()).unwrap_or("");
    if text.is_empty() {
        return "the end of the input".to_string();
    }
    format!("`{}`", clip(text))
}

/// `text`, cut to at most [`QUOTE_MAX`] bytes (marked with `…`).
fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= QUOTE_MAX {
        return text.into();
    }
    let mut cut = QUOTE_MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut]).into()
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src`.
    pub fn new(src: &'a str) -> Lexer<'a> {
        Lexer { src, pos: 0 }
    }

    /// The text being lexed.
    pub fn src(&self) -> &'a str {
        self.src
    }

    fn byte(&self, at: usize) -> Option<u8> {
        self.src.as_bytes().get(at).copied()
    }

    /// The next token; after the end of the text, [`Tok::Eof`] forever.
    pub fn next_token(&mut self) -> Result<Token> {
        let bytes = self.src.as_bytes();
        // Skip whitespace (ASCII fast path, then any Unicode whitespace).
        loop {
            match self.byte(self.pos) {
                Some(b) if b.is_ascii_whitespace() => self.pos += 1,
                Some(b) if b >= 0x80 => match self.src[self.pos..].chars().next() {
                    Some(c) if c.is_whitespace() => self.pos += c.len_utf8(),
                    _ => break,
                },
                _ => break,
            }
        }
        let start = self.pos;
        let Some(b) = self.byte(start) else {
            return Ok(Token {
                kind: Tok::Eof,
                span: Span::new(start, start),
            });
        };
        let next = self.byte(start + 1);
        let (kind, len) = match b {
            b'0'..=b'9' => return self.number(),
            b'.' if next.is_some_and(|n| n.is_ascii_digit()) => return self.number(),
            b'A'..=b'Z' | b'a'..=b'z' | b'_' => {
                let len = bytes[start..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .unwrap_or(bytes.len() - start);
                (Tok::Ident, len)
            }
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'*' => (Tok::Star, 1),
            b'/' => (Tok::Slash, 1),
            b'^' => (Tok::Caret, 1),
            b'\'' => (Tok::Quote, 1),
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b';' => (Tok::Semi, 1),
            b',' => (Tok::Comma, 1),
            b':' => (Tok::Colon, 1),
            b'.' => match next {
                Some(b'*') => (Tok::DotStar, 2),
                Some(b'/') => (Tok::DotSlash, 2),
                Some(b'^') => (Tok::DotCaret, 2),
                Some(b'.') => (Tok::DotDot, 2),
                _ => {
                    let hint = if next == Some(b'\'') {
                        "`.'` is not needed: all values are real, so write `'` to transpose"
                    } else {
                        "a `.` starts a number (`.5`) or an elementwise operator (`.*`, `./`, `.^`)"
                    };
                    return Err(Error::at(ErrorKind::Syntax, Span::new(start, start + 1), "unexpected `.`").hint(hint));
                }
            },
            _ => return Err(self.unknown_char()),
        };
        self.pos = start + len;
        Ok(Token {
            kind,
            span: Span::new(start, self.pos),
        })
    }

    /// Lex a number starting at `self.pos` (a digit, or a `.` before a digit).
    fn number(&mut self) -> Result<Token> {
        let start = self.pos;
        let digits = |lx: &Lexer<'_>, mut at: usize| {
            while lx.byte(at).is_some_and(|b| b.is_ascii_digit()) {
                at += 1;
            }
            at
        };
        let mut end = digits(self, start);
        // A dot belongs to the number unless it starts `.*`, `./`, `.^` or `..`
        // (so `2.*x` is `2 .* x` and `1..5` is a range).
        if self.byte(end) == Some(b'.') && !matches!(self.byte(end + 1), Some(b'*' | b'/' | b'^' | b'.')) {
            end = digits(self, end + 1);
        }
        if matches!(self.byte(end), Some(b'e' | b'E')) {
            let mut at = end + 1;
            if matches!(self.byte(at), Some(b'+' | b'-')) {
                at += 1;
            }
            if self.byte(at).is_some_and(|b| b.is_ascii_digit()) {
                end = digits(self, at);
            }
        }
        if self.byte(end).is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(self.name_after_number(start, end));
        }
        let span = Span::new(start, end);
        let text = &self.src[start..end];
        let value: f64 = text.parse().map_err(|_| {
            Error::at(ErrorKind::Syntax, span, format!("malformed number `{text}`"))
                .hint("numbers look like `2`, `2.5`, `.5`, `1e-3` or `1.5E+2`")
        })?;
        if !value.is_finite() {
            return Err(Error::at(ErrorKind::Syntax, span, "number too large")
                .hint("numbers must be finite (at most about 1.8e308)"));
        }
        self.pos = end;
        Ok(Token {
            kind: Tok::Num(value),
            span,
        })
    }

    /// The error for a name glued to the number `start..end`, as in `2x`.
    #[cold]
    fn name_after_number(&self, start: usize, end: usize) -> Error {
        let bytes = self.src.as_bytes();
        let name_end = bytes[end..]
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
            .map_or(bytes.len(), |p| end + p);
        let num = clip(&self.src[start..end]);
        let name = clip(&self.src[end..name_end]);
        let hint = if name.starts_with(['e', 'E']) {
            format!("an exponent needs digits (`{num}e3`); for a product write `{num}*{name}`")
        } else {
            format!("write `{num}*{name}` for a product")
        };
        Error::at(
            ErrorKind::Syntax,
            Span::new(start, name_end),
            "a number cannot be directly followed by a name",
        )
        .hint(hint)
    }

    /// The error for a character that starts no token, with a hint for common
    /// look-alikes.
    fn unknown_char(&self) -> Error {
        let c = self.src[self.pos..].chars().next().unwrap_or('\u{FFFD}');
        let span = Span::new(self.pos, self.pos + c.len_utf8());
        let hint = match c {
            '×' | '·' | '⋅' | '∗' => "write `*` for a product".to_string(),
            '−' | '–' | '—' => "write the ASCII minus `-`".to_string(),
            '’' | '‘' | '′' | '`' | 'ᵀ' => "write the ASCII apostrophe `'` to transpose".to_string(),
            '²' => "write `^2` for a square".to_string(),
            '³' => "write `^3` for a cube".to_string(),
            '{' | '}' => "group with `(` and `)`".to_string(),
            '=' => "write only the expression (no `f =`); declare names as `name: kind`".to_string(),
            _ => "the language has numbers, names, `+ - * / ^ .* ./ .^ '`, \
                  parentheses, brackets, `,` and `;`"
                .to_string(),
        };
        Error::at(ErrorKind::Syntax, span, format!("unexpected character `{c}`")).hint(hint)
    }
}

/// Lex all of `src`; the last token is [`Tok::Eof`].
pub fn tokenize(src: &str) -> Result<Vec<Token>> {
    let mut lexer = Lexer::new(src);
    let mut out = Vec::new();
    loop {
        let t = lexer.next_token()?;
        out.push(t);
        if t.kind == Tok::Eof {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens as compact strings: numbers by value, names by text, others by symbol.
    fn lex(src: &str) -> Vec<String> {
        tokenize(src)
            .unwrap()
            .iter()
            .filter(|t| t.kind != Tok::Eof)
            .map(|t| match t.kind {
                Tok::Num(v) => format!("{v}"),
                _ => src[t.span.range()].to_string(),
            })
            .collect()
    }

    fn err(src: &str) -> (Span, String) {
        let e = tokenize(src).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax);
        assert!(e.hint.is_some(), "no hint for {src:?}");
        (e.span().unwrap(), e.message)
    }

    #[test]
    fn numbers() {
        assert_eq!(
            lex("2 2.5 .5 1e-3 1.5E+2 2. 7e2"),
            ["2", "2.5", "0.5", "0.001", "150", "2", "700"]
        );
        let toks = tokenize("12.5e1").unwrap();
        assert_eq!(toks[0].kind, Tok::Num(125.0));
        assert_eq!(toks[0].span, Span::new(0, 6));
    }

    #[test]
    fn dot_operators_after_numbers() {
        assert_eq!(lex("2.*x"), ["2", ".*", "x"]);
        assert_eq!(lex("2./x"), ["2", "./", "x"]);
        assert_eq!(lex("2.^x"), ["2", ".^", "x"]);
        assert_eq!(lex("2.5.*x"), ["2.5", ".*", "x"]);
        assert_eq!(lex("1..95"), ["1", "..", "95"]);
        assert_eq!(lex("x.^-0.5"), ["x", ".^", "-", "0.5"]);
    }

    #[test]
    fn operators_and_punctuation() {
        assert_eq!(
            lex("a+b-c*d/e^f.*g./h.^i'(x)[1;2],k:"),
            [
                "a", "+", "b", "-", "c", "*", "d", "/", "e", "^", "f", ".*", "g", "./", "h", ".^", "i", "'", "(", "x",
                ")", "[", "1", ";", "2", "]", ",", "k", ":"
            ]
        );
        assert_eq!(lex("  W_1\t\n x2 _y "), ["W_1", "x2", "_y"]);
        let toks = tokenize("  ").unwrap();
        assert_eq!(
            toks,
            [Token {
                kind: Tok::Eof,
                span: Span::new(2, 2)
            }]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(err("x $ y"), (Span::new(2, 3), "unexpected character `$`".into()));
        // Multi-byte characters are spanned whole.
        assert_eq!(err("a × b"), (Span::new(2, 4), "unexpected character `×`".into()));
        assert_eq!(tokenize("a × b").unwrap_err().hint.unwrap(), "write `*` for a product");
        assert_eq!(err("x.y"), (Span::new(1, 2), "unexpected `.`".into()));
        assert_eq!(err("x.'"), (Span::new(1, 2), "unexpected `.`".into()));
        assert_eq!(
            err("1 + 2x"),
            (Span::new(4, 6), "a number cannot be directly followed by a name".into())
        );
        assert_eq!(tokenize("2x").unwrap_err().hint.unwrap(), "write `2*x` for a product");
        assert_eq!(
            err("3e"),
            (Span::new(0, 2), "a number cannot be directly followed by a name".into())
        );
        assert_eq!(err("1e999"), (Span::new(0, 5), "number too large".into()));
        let long = format!("x + {}", "y".repeat(100));
        assert_eq!(describe(&long, Span::new(4, 104)), format!("`{}…`", "y".repeat(40)));
        assert_eq!(describe("x", Span::new(1, 1)), "the end of the input");
    }
}
