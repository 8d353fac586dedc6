//! Declarations: `W: matrix(m, n); x: vector(n); a: scalar; n: dim in 1..95`.
//!
//! Grammar (declarations are separated by `;` or newlines, empty ones are
//! skipped):
//!
//! ```text
//! decl := NAME ':' kind
//! kind := 'scalar' | 'real'
//!       | 'vector' '(' dim ')'
//!       | 'matrix' '(' dim ',' dim ')'
//!       | 'symmetric' '(' dim ')'
//!       | 'dim' ('in' INT '..' INT)?
//! dim  := INT | NAME
//! ```

use crate::error::{Error, ErrorKind, Origin, Result};
use crate::syntax::ast::{Decl, DeclKind, DimExpr, Span};
use crate::syntax::lexer::{describe, Lexer, Tok, Token};
use crate::syntax::parser::MAX_LEN;
use std::collections::HashMap;

/// The kind names, as listed in hints.
const KINDS: [&str; 6] = ["scalar", "real", "vector", "matrix", "symmetric", "dim"];

/// How every kind is written, for hints.
const KINDS_HINT: &str = "kinds are `scalar` (or `real`), `vector(n)`, `matrix(m, n)`, \
                          `symmetric(n)`, `dim` and `dim in 1..100`";

/// Parse declarations separated by `;` or newlines.
///
/// Errors are [`ErrorKind::Syntax`] (or [`ErrorKind::Limit`] for a text over
/// 4 MiB), with labels in [`Origin::Decls`] pointing into `src`. Declaring the
/// same name twice is an error.
pub fn parse_decls(src: &str) -> Result<Vec<Decl>> {
    if src.len() > MAX_LEN {
        return Err(Error::new(ErrorKind::Limit, "declarations too large").hint(format!(
            "the text has {} bytes; the limit is {MAX_LEN} bytes (4 MiB)",
            src.len()
        )));
    }
    parse_all(src).map_err(|e| e.with_origin(Origin::Decls))
}

fn parse_all(src: &str) -> Result<Vec<Decl>> {
    let mut p = DeclParser::new(src)?;
    let mut decls: Vec<Decl> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    loop {
        while p.peek.kind == Tok::Semi {
            p.bump()?;
        }
        if p.peek.kind == Tok::Eof {
            return Ok(decls);
        }
        let decl = p.decl()?;
        if let Some(&i) = seen.get(&decl.name) {
            let first = decls[i].span;
            return Err(Error::at(
                ErrorKind::Syntax,
                decl.span,
                format!("`{}` is declared twice", decl.name),
            )
            .label(first, Origin::Decls, "first declared here")
            .hint(format!(
                "remove one of the declarations of `{}`, or rename one",
                decl.name
            )));
        }
        // The next declaration must be separated by `;` or a newline.
        let next = p.peek;
        if !matches!(next.kind, Tok::Semi | Tok::Eof) && !p.newline_before(next) {
            let found = describe(src, next.span);
            return Err(Error::at(
                ErrorKind::Syntax,
                next.span,
                format!(
                    "expected `;` or a new line after the declaration of `{}`, found {found}",
                    decl.name
                ),
            )
            .hint("separate declarations with `;` or put each on its own line"));
        }
        seen.insert(decl.name.clone(), decls.len());
        decls.push(decl);
    }
}

/// Declarations parser: a lexer with one token of lookahead.
struct DeclParser<'a> {
    lexer: Lexer<'a>,
    src: &'a str,
    peek: Token,
    /// The last token consumed (an empty span at 0 before the first).
    prev: Span,
}

impl<'a> DeclParser<'a> {
    fn new(src: &'a str) -> Result<DeclParser<'a>> {
        let mut lexer = Lexer::new(src);
        let peek = lexer.next_token()?;
        Ok(DeclParser {
            lexer,
            src,
            peek,
            prev: Span::default(),
        })
    }

    fn bump(&mut self) -> Result<Token> {
        let t = self.peek;
        self.peek = self.lexer.next_token()?;
        self.prev = t.span;
        Ok(t)
    }

    fn text(&self, span: Span) -> &'a str {
        &self.src[span.range()]
    }

    /// Whether a newline separates `tok` from the last token consumed.
    fn newline_before(&self, tok: Token) -> bool {
        self.src[self.prev.end as usize..tok.span.start as usize].contains('\n')
    }

    /// Consume a token of kind `want`, or fail with `msg` and `hint` at the
    /// lookahead.
    fn expect(&mut self, want: Tok, msg: &str, hint: &str) -> Result<Token> {
        if self.peek.kind == want {
            return self.bump();
        }
        let found = describe(self.src, self.peek.span);
        Err(Error::at(ErrorKind::Syntax, self.at_peek(), format!("{msg}, found {found}")).hint(hint))
    }

    /// Where to point an error about the lookahead: the lookahead itself, or
    /// at the end of the text the last token consumed.
    fn at_peek(&self) -> Span {
        if self.peek.kind == Tok::Eof && self.prev != Span::default() {
            self.prev
        } else {
            self.peek.span
        }
    }

    /// `NAME ':' kind`
    fn decl(&mut self) -> Result<Decl> {
        let name = self.expect(
            Tok::Ident,
            "expected a name to declare",
            "a declaration is written `name: kind`, e.g. `x: vector(n)`",
        )?;
        let name_text = self.text(name.span);
        self.expect(
            Tok::Colon,
            &format!("expected `:` after `{name_text}`"),
            &format!("a declaration is written `name: kind`, e.g. `{name_text}: matrix(m, n)`"),
        )?;
        let kind = self.kind()?;
        Ok(Decl {
            name: name_text.to_string(),
            kind,
            span: name.span.to(self.prev),
        })
    }

    fn kind(&mut self) -> Result<DeclKind> {
        let tok = self.expect(Tok::Ident, "expected a kind", KINDS_HINT)?;
        let word = self.text(tok.span);
        Ok(match word {
            "scalar" | "real" => DeclKind::Scalar,
            "vector" => {
                let open = self.open(word, "vector(n)")?;
                let n = self.dim()?;
                self.close(open, "vector(n)")?;
                DeclKind::Vector(n)
            }
            "symmetric" => {
                let open = self.open(word, "symmetric(n)")?;
                let n = self.dim()?;
                self.close(open, "symmetric(n)")?;
                DeclKind::Symmetric(n)
            }
            "matrix" => {
                let open = self.open(word, "matrix(m, n)")?;
                let m = self.dim()?;
                self.expect(
                    Tok::Comma,
                    "expected `,` between the two sizes of `matrix`",
                    "a matrix is declared as `matrix(m, n)` with m rows and n columns",
                )?;
                let n = self.dim()?;
                self.close(open, "matrix(m, n)")?;
                DeclKind::Matrix(m, n)
            }
            "dim" => {
                let in_range = self.peek.kind == Tok::Ident
                    && self.text(self.peek.span) == "in"
                    && !self.newline_before(self.peek);
                if in_range {
                    self.bump()?;
                    DeclKind::Dim(Some(self.range()?))
                } else {
                    DeclKind::Dim(None)
                }
            }
            _ => {
                let hint = match suggest(word) {
                    Some(k) => format!("did you mean `{k}`? {KINDS_HINT}"),
                    None => KINDS_HINT.to_string(),
                };
                return Err(Error::at(ErrorKind::Syntax, tok.span, format!("unknown kind `{word}`")).hint(hint));
            }
        })
    }

    /// The `(` after a sized kind.
    fn open(&mut self, kind: &str, form: &str) -> Result<Token> {
        if self.peek.kind == Tok::LParen {
            return self.bump();
        }
        let span = self.at_peek();
        Err(Error::at(ErrorKind::Syntax, span, format!("`{kind}` needs a size")).hint(format!("write `{form}`")))
    }

    /// The `)` closing a sized kind opened at `open`.
    fn close(&mut self, open: Token, form: &str) -> Result<()> {
        if self.peek.kind == Tok::RParen {
            self.bump()?;
            return Ok(());
        }
        if self.peek.kind == Tok::Eof {
            return Err(Error::at(ErrorKind::Syntax, open.span, "unclosed `(`").hint(format!("write `{form}`")));
        }
        let found = describe(self.src, self.peek.span);
        Err(Error::at(
            ErrorKind::Syntax,
            self.peek.span,
            format!("expected `)`, found {found}"),
        )
        .hint(format!("write `{form}`")))
    }

    /// A dimension: a non-negative integer or a name.
    fn dim(&mut self) -> Result<DimExpr> {
        let tok = self.peek;
        match tok.kind {
            Tok::Ident => {
                self.bump()?;
                Ok(DimExpr::Sym(self.text(tok.span).to_string()))
            }
            Tok::Num(_) => Ok(DimExpr::Num(self.integer()?)),
            _ => {
                let found = describe(self.src, tok.span);
                Err(Error::at(
                    ErrorKind::Syntax,
                    self.at_peek(),
                    format!("expected a size (a whole number or a name), found {found}"),
                )
                .hint("sizes are whole numbers like `100` or dimension names like `n`"))
            }
        }
    }

    /// A non-negative integer literal.
    fn integer(&mut self) -> Result<u64> {
        let tok = self.peek;
        let found = describe(self.src, tok.span);
        let text = self.text(tok.span);
        if !matches!(tok.kind, Tok::Num(_)) {
            return Err(Error::at(
                ErrorKind::Syntax,
                self.at_peek(),
                format!("expected a whole number, found {found}"),
            )
            .hint("ranges are written `dim in 1..100`"));
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(
                Error::at(ErrorKind::Syntax, tok.span, format!("{found} is not a whole number"))
                    .hint("sizes and range bounds are whole numbers like `100`"),
            );
        }
        let v = text.parse::<u64>().map_err(|_| {
            Error::at(ErrorKind::Syntax, tok.span, format!("{found} is too large"))
                .hint(format!("the largest size is {}", u64::MAX))
        })?;
        self.bump()?;
        Ok(v)
    }

    /// `lo..hi` with `1 <= lo <= hi`.
    fn range(&mut self) -> Result<(u64, u64)> {
        let lo_span = self.peek.span;
        let lo = self.integer()?;
        self.expect(
            Tok::DotDot,
            "expected `..` in the range",
            "ranges are written `dim in 1..100`",
        )?;
        let hi_span = self.peek.span;
        let hi = self.integer()?;
        if lo < 1 {
            return Err(
                Error::at(ErrorKind::Syntax, lo_span, "a dimension range must start at 1 or more")
                    .hint(format!("write `1..{hi}`")),
            );
        }
        if lo > hi {
            return Err(Error::at(
                ErrorKind::Syntax,
                lo_span.to(hi_span),
                format!("empty range `{lo}..{hi}`"),
            )
            .hint(format!("write the smaller bound first: `{hi}..{lo}`")));
        }
        Ok((lo, hi))
    }
}

/// The known kind closest to `word`, if any is close enough to be a typo.
fn suggest(word: &str) -> Option<&'static str> {
    let lower = word.to_ascii_lowercase();
    let prefix = |k: &str| lower.len() >= 3 && k.starts_with(&lower);
    KINDS
        .iter()
        .map(|&k| (edit_distance(&lower, k), k))
        .filter(|&(d, k)| d <= 2.max(k.len() / 3) || prefix(k))
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// Levenshtein distance between two ASCII-ish strings (by chars).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use DimExpr::{Num, Sym};

    fn sym(s: &str) -> DimExpr {
        Sym(s.to_string())
    }

    /// The declared (name, kind) pairs.
    #[track_caller]
    fn decls(src: &str) -> Vec<(String, DeclKind)> {
        parse_decls(src)
            .unwrap_or_else(|e| panic!("{src:?}: {e}"))
            .into_iter()
            .map(|d| (d.name, d.kind))
            .collect()
    }

    #[track_caller]
    fn one(src: &str) -> DeclKind {
        let mut d = decls(src);
        assert_eq!(d.len(), 1, "{src:?}");
        d.pop().unwrap().1
    }

    /// Expect an error; returns (primary span, message, hint).
    #[track_caller]
    fn fail(src: &str) -> (std::ops::Range<usize>, String, String) {
        let e = parse_decls(src).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax, "{src:?}: {e}");
        assert!(e.labels.iter().all(|l| l.origin == Origin::Decls));
        (e.span().unwrap().range(), e.message, e.hint.expect("a hint"))
    }

    #[test]
    fn every_kind() {
        assert_eq!(one("a: scalar"), DeclKind::Scalar);
        assert_eq!(one("a: real"), DeclKind::Scalar);
        assert_eq!(one("x: vector(n)"), DeclKind::Vector(sym("n")));
        assert_eq!(one("x: vector(100)"), DeclKind::Vector(Num(100)));
        assert_eq!(one("W: matrix(m,n)"), DeclKind::Matrix(sym("m"), sym("n")));
        assert_eq!(one("W1: matrix(r, 100)"), DeclKind::Matrix(sym("r"), Num(100)));
        assert_eq!(one("S: symmetric(n)"), DeclKind::Symmetric(sym("n")));
        assert_eq!(one("k: dim"), DeclKind::Dim(None));
        assert_eq!(one("r: dim in 1..95"), DeclKind::Dim(Some((1, 95))));
        assert_eq!(one("r: dim in 3 .. 3"), DeclKind::Dim(Some((3, 3))));
        assert_eq!(one("  _z9 :vector( 0 ) "), DeclKind::Vector(Num(0)));
    }

    #[test]
    fn many() {
        let src = "W1: matrix(r, 100); W2: matrix(100, r); x: vector(n); a: scalar; \
                   S: symmetric(n); r: dim in 1..95; k: dim";
        let names: Vec<String> = decls(src).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["W1", "W2", "x", "a", "S", "r", "k"]);

        let lines = "\n  A: matrix(n, n)\n\n x: vector(n);\n;; n: dim in 2..10\n";
        assert_eq!(
            decls(lines),
            [
                ("A".into(), DeclKind::Matrix(sym("n"), sym("n"))),
                ("x".into(), DeclKind::Vector(sym("n"))),
                ("n".into(), DeclKind::Dim(Some((2, 10)))),
            ]
        );
        assert_eq!(decls(""), []);
        assert_eq!(decls(" ; ;\n "), []);
        // `in` on the next line is a new declaration, not a range.
        assert_eq!(decls("k: dim\nin: scalar").len(), 2);
    }

    #[test]
    fn spans() {
        let d = parse_decls("a: scalar;  W: matrix(m, n) ").unwrap();
        assert_eq!(d[0].span, Span::new(0, 9));
        assert_eq!(d[1].span, Span::new(12, 27));
        let d = parse_decls("n: dim in 1..5").unwrap();
        assert_eq!(d[0].span, Span::new(0, 14));
    }

    #[test]
    fn unknown_kind_suggests() {
        let (span, msg, hint) = fail("W: matirx(m, n)");
        assert_eq!((span, msg.as_str()), (3..9, "unknown kind `matirx`"));
        assert!(hint.starts_with("did you mean `matrix`?"), "{hint}");
        assert!(fail("x: vec(n)").2.starts_with("did you mean `vector`?"));
        assert!(fail("x: Vector(n)").2.starts_with("did you mean `vector`?"));
        assert!(fail("S: symetric(n)").2.starts_with("did you mean `symmetric`?"));
        assert!(fail("a: scaler").2.starts_with("did you mean `scalar`?"));
        let (_, msg, hint) = fail("t: tensor(3)");
        assert_eq!(msg, "unknown kind `tensor`");
        assert_eq!(hint, KINDS_HINT);
    }

    #[test]
    fn syntax_errors() {
        let (span, msg, _) = fail("W matrix(m, n)");
        assert_eq!((span, msg.as_str()), (2..8, "expected `:` after `W`, found `matrix`"));
        assert_eq!(fail("x").1, "expected `:` after `x`, found the end of the input");
        assert_eq!(fail("x").0, 0..1);
        assert_eq!(fail("x: matrix(3,").0, 11..12);
        assert_eq!(fail("n: dim in 1..").0, 11..13);
        assert_eq!(fail(": scalar").0, 0..1);
        assert_eq!(fail("3: scalar").1, "expected a name to declare, found `3`");
        assert_eq!(fail("x:").1, "expected a kind, found the end of the input");
        assert_eq!(fail("x: vector").1, "`vector` needs a size");
        assert_eq!(fail("x: vector").0, 3..9);
        assert_eq!(fail("x: vector n").0, 10..11);
        assert_eq!(
            fail("x: vector(n"),
            (9..10, "unclosed `(`".into(), "write `vector(n)`".into())
        );
        assert_eq!(fail("x: vector(n, m)").1, "expected `)`, found `,`");
        assert_eq!(
            fail("W: matrix(n)").1,
            "expected `,` between the two sizes of `matrix`, found `)`"
        );
        assert_eq!(fail("W: matrix(m x n)").0, 12..13);
        assert_eq!(
            fail("x: vector(2.5)"),
            (
                10..13,
                "`2.5` is not a whole number".into(),
                "sizes and range bounds are whole numbers like `100`".into()
            )
        );
        assert_eq!(fail("x: vector(-1)").0, 10..11);
        assert_eq!(
            fail("x: vector(99999999999999999999)").1,
            "`99999999999999999999` is too large"
        );
        assert_eq!(fail("a: scalar b: scalar").0, 10..11);
        assert_eq!(
            fail("a: scalar b: scalar").1,
            "expected `;` or a new line after the declaration of `a`, found `b`"
        );
        assert_eq!(fail("a: scalar $").0, 10..11);
    }

    #[test]
    fn bad_ranges() {
        let (span, msg, hint) = fail("n: dim in 0..5");
        assert_eq!(
            (span, msg.as_str(), hint.as_str()),
            (10..11, "a dimension range must start at 1 or more", "write `1..5`")
        );
        let (span, msg, hint) = fail("n: dim in 10..5");
        assert_eq!(
            (span, msg.as_str(), hint.as_str()),
            (10..15, "empty range `10..5`", "write the smaller bound first: `5..10`")
        );
        assert_eq!(
            fail("n: dim in 1").1,
            "expected `..` in the range, found the end of the input"
        );
        assert_eq!(
            fail("n: dim in 1..").1,
            "expected a whole number, found the end of the input"
        );
        assert_eq!(fail("n: dim in 1..x").0, 13..14);
        assert_eq!(fail("n: dim in 1.5..3").1, "`1.5` is not a whole number");
    }

    #[test]
    fn duplicates() {
        let src = "x: vector(n); A: matrix(n, n); x: scalar";
        let e = parse_decls(src).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax);
        assert_eq!(e.message, "`x` is declared twice");
        assert_eq!(e.labels[0].span, Span::new(31, 40));
        assert_eq!(e.labels[1].span, Span::new(0, 12));
        assert_eq!(e.labels[1].message, "first declared here");
        assert!(e.labels.iter().all(|l| l.origin == Origin::Decls));
        assert!(e.hint.unwrap().contains("remove one"));
    }

    #[test]
    fn too_large() {
        let big = "a: scalar;".repeat(MAX_LEN / 10 + 1);
        let e = parse_decls(&big).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Limit);
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("matirx", "matrix"), 2);
        assert_eq!(edit_distance("", "dim"), 3);
        assert_eq!(edit_distance("scalar", "scalar"), 0);
        assert_eq!(suggest("foo"), None);
    }
}
