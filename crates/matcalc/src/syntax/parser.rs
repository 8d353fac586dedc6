//! A Pratt parser for expressions in matrixcalculus.org syntax.
//!
//! The parser is driven by one binding-power table (`BINDING_POWERS`) and
//! never recurses: constructs waiting for an operand (a prefix `-`, the left
//! side of an operator, an open `(`, a call's argument list) are kept on an
//! explicit stack of `Frame`s. Left-associative chains such as `x+x+…+x`
//! reduce as they go, so their stack stays small however long they are (the
//! tree they build is left-deep). Everything that really nests — parentheses,
//! calls, unary operators, matrix literals, right operands of `^` — counts
//! against [`MAX_DEPTH`], past which parsing stops with an
//! [`ErrorKind::Limit`] error; later passes that recurse over the tree can
//! rely on that bound.
//!
//! Note: a very deep left chain (say a 200 000-term sum) is dropped
//! recursively by `Box`'s destructor, which needs a correspondingly large
//! stack (a 200 000-term sum drops fine with 256 MiB).

use crate::error::{Error, ErrorKind, Origin, Result};
use crate::syntax::ast::{BinOp, Expr, ExprKind, Span};
use crate::syntax::lexer::{describe, Lexer, Tok, Token};

/// Most levels of nesting (parentheses, calls, unary operators, brackets,
/// right operands) an expression may have.
pub const MAX_DEPTH: usize = 1000;

/// Largest source text accepted, in bytes (4 MiB).
pub const MAX_LEN: usize = 1 << 20;

/// What an operator token does where it appears.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fixity {
    /// Before an operand: `-x`.
    Prefix,
    /// Between two operands.
    Infix(BinOp),
    /// After an operand: `x'`.
    Postfix,
}

/// The one Pratt binding-power table, lowest precedence first.
///
/// Each row is `(token, fixity, left bp, right bp)`. An operator is applied
/// while its left bp is at least the current minimum; its right operand is
/// parsed with the right bp as the new minimum. So `right = left + 1` makes an
/// operator left-associative and `right = left` right-associative. Prefix
/// operators only have a right bp, postfix operators only a left bp.
///
/// | level | operators      | fixity  | assoc |
/// |-------|----------------|---------|-------|
/// | 1     | `+ -`          | infix   | left  |
/// | 2     | `* / .* ./`    | infix   | left  |
/// | 3     | `- +`          | prefix  |       |
/// | 4     | `^ .^`         | infix   | right |
/// | 5     | `'`            | postfix |       |
#[rustfmt::skip]
const BINDING_POWERS: [(Tok, Fixity, u8, u8); 11] = [
    (Tok::Plus,     Fixity::Infix(BinOp::Add),  10, 11),
    (Tok::Minus,    Fixity::Infix(BinOp::Sub),  10, 11),
    (Tok::Star,     Fixity::Infix(BinOp::Mul),  20, 21),
    (Tok::Slash,    Fixity::Infix(BinOp::Div),  20, 21),
    (Tok::DotStar,  Fixity::Infix(BinOp::EMul), 20, 21),
    (Tok::DotSlash, Fixity::Infix(BinOp::EDiv), 20, 21),
    (Tok::Minus,    Fixity::Prefix,              0, 30),
    (Tok::Plus,     Fixity::Prefix,              0, 30),
    (Tok::Caret,    Fixity::Infix(BinOp::Pow),  40, 40),
    (Tok::DotCaret, Fixity::Infix(BinOp::EPow), 40, 40),
    (Tok::Quote,    Fixity::Postfix,            50,  0),
];

/// The right binding power of `tok` as a prefix operator.
fn prefix_bp(tok: Tok) -> Option<u8> {
    BINDING_POWERS
        .iter()
        .find(|(t, f, _, _)| *t == tok && *f == Fixity::Prefix)
        .map(|&(_, _, _, r)| r)
}

/// The fixity and binding powers of `tok` after an operand (infix or postfix).
fn operator_bp(tok: Tok) -> Option<(Fixity, u8, u8)> {
    BINDING_POWERS
        .iter()
        .find(|(t, f, _, _)| *t == tok && *f != Fixity::Prefix)
        .map(|&(_, f, l, r)| (f, l, r))
}

/// Parse a whole text as one expression.
///
/// Spans in the result and in errors are byte offsets into `src`. A
/// parenthesized expression's span includes its parentheses; unary plus is
/// dropped (its operand's span is widened to cover the `+`).
///
/// Errors are [`ErrorKind::Syntax`], or [`ErrorKind::Limit`] when `src` is
/// larger than [`MAX_LEN`] bytes or nests deeper than [`MAX_DEPTH`] levels.
pub fn parse_expr(src: &str) -> Result<Expr> {
    if src.len() > MAX_LEN {
        return Err(Error::new(ErrorKind::Limit, "expression too large").hint(format!(
            "the text has {} bytes; the limit is {MAX_LEN} bytes (4 MiB)",
            src.len()
        )));
    }
    let mut p = Parser::new(src)?;
    if p.peek.kind == Tok::Eof {
        return Err(
            Error::at(ErrorKind::Syntax, Span::new(0, src.len()), "the expression is empty")
                .hint("write an expression such as `x'*A*x`"),
        );
    }
    let e = p.expr()?;
    if p.peek.kind != Tok::Eof {
        return Err(p.trailing());
    }
    Ok(e)
}

/// The error for nesting deeper than [`MAX_DEPTH`] at `at`.
#[cold]
fn too_deep(at: Span) -> Error {
    Error::at(
        ErrorKind::Limit,
        at,
        format!("nesting too deep (more than {MAX_DEPTH} levels)"),
    )
    .hint("split the expression into simpler parts")
}

/// "1 entry", "2 entries".
fn entries(n: usize) -> String {
    if n == 1 {
        "1 entry".to_string()
    } else {
        format!("{n} entries")
    }
}

/// The error for `()` outside a call.
#[cold]
fn empty_parens(span: Span) -> Error {
    Error::at(ErrorKind::Syntax, span, "empty parentheses").hint("put an expression inside, e.g. `(x + 1)`")
}

/// A construct on the parse stack, waiting for the operand being parsed.
#[derive(Debug)]
enum Frame {
    /// A prefix operator token and its right binding power.
    Prefix(Token, u8),
    /// `lhs op`, waiting for the right operand; the right binding power.
    Infix(BinOp, Expr, u8),
    /// An open `(`.
    Paren(Token),
    /// `name(` and the arguments before the current one.
    Call {
        /// The function name.
        name: Token,
        /// The `(`.
        open: Token,
        /// Arguments already parsed.
        args: Vec<Expr>,
    },
}

impl Frame {
    /// Operators binding less tightly than this cannot extend the operand
    /// this frame waits for.
    fn min_bp(&self) -> u8 {
        match self {
            Frame::Prefix(_, bp) | Frame::Infix(_, _, bp) => *bp,
            Frame::Paren(_) | Frame::Call { .. } => 0,
        }
    }
}

/// The parser state: a lexer with one token of lookahead.
struct Parser<'a> {
    lexer: Lexer<'a>,
    src: &'a str,
    /// The next token, not yet consumed.
    peek: Token,
    /// The last token consumed.
    prev: Option<Token>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Result<Parser<'a>> {
        let mut lexer = Lexer::new(src);
        let peek = lexer.next_token()?;
        Ok(Parser {
            lexer,
            src,
            peek,
            prev: None,
        })
    }

    /// Consume and return the lookahead token.
    fn bump(&mut self) -> Result<Token> {
        let t = self.peek;
        self.peek = self.lexer.next_token()?;
        self.prev = Some(t);
        Ok(t)
    }

    fn text(&self, span: Span) -> &'a str {
        &self.src[span.range()]
    }

    /// Push `frame` (opened by the token at `at`), unless that would nest
    /// deeper than [`MAX_DEPTH`].
    fn push(&self, stack: &mut Vec<Frame>, frame: Frame, at: Span) -> Result<()> {
        if stack.len() >= MAX_DEPTH {
            return Err(too_deep(at));
        }
        stack.push(frame);
        Ok(())
    }

    /// Parse one expression: the Pratt loop over an explicit stack.
    ///
    /// Each round first reads an operand — pushing a frame for every prefix
    /// operator, `(` and `name(` on the way to an atom — then applies the
    /// operators that bind at least as tightly as the innermost frame allows,
    /// popping (reducing) frames when none does.
    fn expr(&mut self) -> Result<Expr> {
        let mut stack: Vec<Frame> = Vec::new();
        'operand: loop {
            let mut lhs = loop {
                let tok = self.peek;
                match tok.kind {
                    Tok::Num(v) => {
                        self.bump()?;
                        break Expr::new(ExprKind::Num(v), tok.span);
                    }
                    Tok::Ident => {
                        self.bump()?;
                        let name = self.text(tok.span).to_string();
                        if self.peek.kind != Tok::LParen {
                            break Expr::new(ExprKind::Ident(name), tok.span);
                        }
                        let open = self.bump()?;
                        if self.peek.kind == Tok::RParen {
                            // `name()`: a call without arguments.
                            let close = self.bump()?;
                            let kind = ExprKind::Call {
                                name,
                                name_span: tok.span,
                                args: Vec::new(),
                            };
                            break Expr::new(kind, tok.span.to(close.span));
                        }
                        let call = Frame::Call {
                            name: tok,
                            open,
                            args: Vec::new(),
                        };
                        self.push(&mut stack, call, tok.span)?;
                    }
                    Tok::LParen => {
                        let open = self.bump()?;
                        if self.peek.kind == Tok::RParen {
                            return Err(empty_parens(open.span.to(self.peek.span)));
                        }
                        self.push(&mut stack, Frame::Paren(open), open.span)?;
                    }
                    Tok::LBracket => {
                        if stack.len() >= MAX_DEPTH {
                            return Err(too_deep(tok.span));
                        }
                        break self.matrix()?;
                    }
                    kind => match prefix_bp(kind) {
                        Some(bp) => {
                            self.bump()?;
                            self.push(&mut stack, Frame::Prefix(tok, bp), tok.span)?;
                        }
                        None => return Err(self.expected_expression()),
                    },
                }
            };
            loop {
                let min_bp = stack.last().map_or(0, Frame::min_bp);
                match operator_bp(self.peek.kind) {
                    Some((fixity, left, right)) if left >= min_bp => {
                        let op = self.bump()?;
                        match fixity {
                            Fixity::Postfix => {
                                let span = lhs.span.to(op.span);
                                lhs = Expr::new(ExprKind::Transpose(Box::new(lhs)), span);
                            }
                            Fixity::Infix(op_kind) => {
                                let frame = Frame::Infix(op_kind, lhs, right);
                                self.push(&mut stack, frame, op.span)?;
                                continue 'operand;
                            }
                            Fixity::Prefix => unreachable!("operator_bp has no prefix rows"),
                        }
                    }
                    _ => match stack.pop() {
                        None => return Ok(lhs),
                        Some(Frame::Prefix(op, _)) => {
                            let span = op.span.to(lhs.span);
                            lhs = match op.kind {
                                Tok::Minus => Expr::new(ExprKind::Neg(Box::new(lhs)), span),
                                _ => {
                                    lhs.span = span;
                                    lhs
                                }
                            };
                        }
                        Some(Frame::Infix(op, left, _)) => {
                            let span = left.span.to(lhs.span);
                            lhs = Expr::new(ExprKind::Binary(op, Box::new(left), Box::new(lhs)), span);
                        }
                        Some(Frame::Paren(open)) => {
                            let close = self.close(open, Tok::RParen, "the parenthesis")?;
                            lhs.span = open.span.to(close.span);
                        }
                        Some(Frame::Call { name, open, mut args }) => {
                            args.push(lhs);
                            if self.peek.kind == Tok::Comma {
                                self.bump()?;
                                stack.push(Frame::Call { name, open, args });
                                continue 'operand;
                            }
                            let close = self.close(open, Tok::RParen, "the argument list")?;
                            let kind = ExprKind::Call {
                                name: self.text(name.span).to_string(),
                                name_span: name.span,
                                args,
                            };
                            lhs = Expr::new(kind, name.span.to(close.span));
                        }
                    },
                }
            }
        }
    }

    /// The error for a token that cannot start an operand.
    #[cold]
    fn expected_expression(&self) -> Error {
        let tok = self.peek;
        let found = describe(self.src, tok.span);
        let Some(prev) = self.prev else {
            // The text starts with something that is not an expression.
            return match tok.kind {
                Tok::RParen => {
                    Error::at(ErrorKind::Syntax, tok.span, "unexpected `)`").hint("there is no matching `(`")
                }
                _ => Error::at(
                    ErrorKind::Syntax,
                    tok.span,
                    format!("expected an expression, found {found}"),
                )
                .hint(format!("an expression cannot start with {found}")),
            };
        };
        let after = describe(self.src, prev.span);
        if tok.kind == Tok::Eof {
            Error::at(
                ErrorKind::Syntax,
                prev.span,
                format!("expected an expression after {after}"),
            )
            .hint(format!(
                "the text ends too early: complete it or remove the last {after}"
            ))
        } else {
            let hint = match tok.kind {
                Tok::RParen if prev.kind == Tok::LParen => {
                    "empty parentheses `()` are only allowed in a call like `f()`".to_string()
                }
                Tok::RParen => format!("{after} needs an operand before the `)`"),
                _ => format!("{found} cannot start an expression"),
            };
            Error::at(
                ErrorKind::Syntax,
                tok.span,
                format!("expected an expression after {after}, found {found}"),
            )
            .hint(hint)
        }
    }

    /// The error for input left over after a complete expression.
    #[cold]
    fn trailing(&self) -> Error {
        let tok = self.peek;
        let found = describe(self.src, tok.span);
        match tok.kind {
            Tok::RParen => Error::at(ErrorKind::Syntax, tok.span, "unexpected `)`")
                .hint("there is no matching `(`; remove this `)`"),
            Tok::RBracket => Error::at(ErrorKind::Syntax, tok.span, "unexpected `]`")
                .hint("there is no matching `[`; remove this `]`"),
            Tok::Num(_) | Tok::Ident | Tok::LParen | Tok::LBracket => Error::at(
                ErrorKind::Syntax,
                tok.span,
                format!("unexpected {found} after the expression"),
            )
            .hint(format!("put an operator such as `*` before {found}")),
            _ => Error::at(ErrorKind::Syntax, tok.span, format!("unexpected {found}"))
                .hint(format!("{found} cannot follow an expression here")),
        }
    }

    /// Consume a closing `close` matching the `open` token, or fail.
    fn close(&mut self, open: Token, close: Tok, what: &str) -> Result<Token> {
        if self.peek.kind == close {
            return self.bump();
        }
        Err(self.unclosed(open, close, what))
    }

    /// The error for a missing `close` matching `open`.
    #[cold]
    fn unclosed(&self, open: Token, close: Tok, what: &str) -> Error {
        let (o, c) = (self.text(open.span), if close == Tok::RParen { ")" } else { "]" });
        if self.peek.kind == Tok::Eof {
            return Error::at(ErrorKind::Syntax, open.span, format!("unclosed `{o}`"))
                .hint(format!("add a `{c}` to close {what}"));
        }
        let found = describe(self.src, self.peek.span);
        Error::at(
            ErrorKind::Syntax,
            self.peek.span,
            format!("expected `{c}` or an operator, found {found}"),
        )
        .label(open.span, Origin::Expr, format!("this `{o}` is not closed"))
        .hint(format!(
            "close {what} with `{c}`, or put an operator such as `*` before {found}"
        ))
    }

    /// A matrix literal `[1 2; 3 4]`, after checking the lookahead is `[`.
    ///
    /// Rows are separated by `;` (a trailing `;` is allowed), entries by `,` or
    /// whitespace. Each entry is a numeric literal with an optional sign
    /// written directly before it; entries come out as `Num` nodes.
    fn matrix(&mut self) -> Result<Expr> {
        let open = self.bump()?;
        if self.peek.kind == Tok::RBracket {
            let span = open.span.to(self.peek.span);
            return Err(Error::at(ErrorKind::Syntax, span, "empty matrix literal `[]`")
                .hint("a matrix literal needs at least one entry, e.g. `[1 2; 3 4]`"));
        }
        let mut rows: Vec<Vec<Expr>> = Vec::new();
        loop {
            // One row: entries until `;` or `]`.
            let mut row = Vec::new();
            while !matches!(self.peek.kind, Tok::Semi | Tok::RBracket | Tok::Eof) {
                if let Some(last) = row.last().map(|e: &Expr| e.span) {
                    if self.peek.kind == Tok::Comma {
                        self.bump()?;
                    } else if matches!(self.peek.kind, Tok::Num(_) | Tok::Plus | Tok::Minus)
                        && self.peek.span.start == last.end
                    {
                        let found = describe(self.src, self.peek.span);
                        return Err(Error::at(
                            ErrorKind::Syntax,
                            self.peek.span,
                            format!("unexpected {found} in a matrix literal"),
                        )
                        .hint(
                            "entries are separated by `,` or spaces; \
                             arithmetic is not supported inside `[...]`",
                        ));
                    }
                }
                row.push(self.matrix_entry(open)?);
            }
            if row.is_empty() && self.peek.kind == Tok::Semi {
                return Err(
                    Error::at(ErrorKind::Syntax, self.peek.span, "empty row in a matrix literal")
                        .hint("remove the extra `;`"),
                );
            }
            if let Some(first) = rows.first().filter(|f| !row.is_empty() && f.len() != row.len()) {
                let span = row[0].span.to(row[row.len() - 1].span);
                return Err(Error::at(
                    ErrorKind::Syntax,
                    span,
                    format!(
                        "row {} has {} but row 1 has {}",
                        rows.len() + 1,
                        entries(row.len()),
                        entries(first.len())
                    ),
                )
                .hint("every row of a matrix literal needs the same number of entries"));
            }
            if !row.is_empty() {
                rows.push(row);
            }
            match self.peek.kind {
                Tok::Semi => {
                    self.bump()?;
                    if self.peek.kind == Tok::RBracket {
                        // A trailing `;` before `]`.
                        let close = self.bump()?;
                        return Ok(Expr::new(ExprKind::Matrix(rows), open.span.to(close.span)));
                    }
                }
                _ => {
                    let close = self.close(open, Tok::RBracket, "the matrix literal")?;
                    return Ok(Expr::new(ExprKind::Matrix(rows), open.span.to(close.span)));
                }
            }
        }
    }

    /// One matrix entry: `[+-]?number`, folded into a `Num` node.
    fn matrix_entry(&mut self, open: Token) -> Result<Expr> {
        let not_a_number = |p: &Self, tok: Token| {
            let found = describe(p.src, tok.span);
            let msg = match tok.kind {
                Tok::Comma => "expected a number before `,`".to_string(),
                Tok::RBracket | Tok::Semi | Tok::Eof => {
                    let prev = p.prev.map_or(open.span, |t| t.span);
                    format!("expected a number after {}", describe(p.src, prev))
                }
                _ => format!("matrix literal entries must be numbers, found {found}"),
            };
            let hint = match tok.kind {
                Tok::RParen => "close the matrix literal with `]`",
                _ => {
                    "only numbers like `1`, `-2.5` or `1e-3` can appear inside `[...]`; \
                     combine matrices with operators outside the brackets"
                }
            };
            // At the end of the input, point at the last token instead.
            let at = match (tok.kind, p.prev) {
                (Tok::Eof, Some(prev)) => prev.span,
                _ => tok.span,
            };
            Error::at(ErrorKind::Syntax, at, msg)
                .label(open.span, Origin::Expr, "in this matrix literal")
                .hint(hint)
        };
        let sign = match self.peek.kind {
            Tok::Minus | Tok::Plus => Some(self.bump()?),
            _ => None,
        };
        let tok = self.peek;
        let Tok::Num(v) = tok.kind else {
            return Err(not_a_number(self, tok));
        };
        match sign {
            Some(s) if s.span.end != tok.span.start => {
                let sym = self.text(s.span);
                Err(Error::at(
                    ErrorKind::Syntax,
                    s.span.to(tok.span),
                    format!("ambiguous `{sym}` in a matrix literal"),
                )
                .hint(format!(
                    "write the sign directly before its number (`{sym}{}`); \
                         arithmetic is not supported inside `[...]`",
                    self.text(tok.span)
                )))
            }
            Some(s) => {
                self.bump()?;
                let v = if s.kind == Tok::Minus { -v } else { v };
                Ok(Expr::new(ExprKind::Num(v), s.span.to(tok.span)))
            }
            None => {
                self.bump()?;
                Ok(Expr::new(ExprKind::Num(v), tok.span))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    /// The tree as an S-expression: `(* (' x) A)`, `(sum A)`, `[1 2; 3 4]`.
    fn sexp(e: &Expr) -> String {
        let mut s = String::new();
        write_sexp(e, &mut s);
        s
    }

    fn write_sexp(e: &Expr, out: &mut String) {
        match &e.kind {
            ExprKind::Num(v) => write!(out, "{v}").unwrap(),
            ExprKind::Ident(n) => out.push_str(n),
            ExprKind::Neg(a) => {
                out.push_str("(- ");
                write_sexp(a, out);
                out.push(')');
            }
            ExprKind::Transpose(a) => {
                out.push_str("(' ");
                write_sexp(a, out);
                out.push(')');
            }
            ExprKind::Binary(op, a, b) => {
                write!(out, "({op} ").unwrap();
                write_sexp(a, out);
                out.push(' ');
                write_sexp(b, out);
                out.push(')');
            }
            ExprKind::Call { name, args, .. } => {
                write!(out, "({name}").unwrap();
                for a in args {
                    out.push(' ');
                    write_sexp(a, out);
                }
                out.push(')');
            }
            ExprKind::Matrix(rows) => {
                out.push('[');
                for (i, row) in rows.iter().enumerate() {
                    if i > 0 {
                        out.push_str("; ");
                    }
                    for (j, x) in row.iter().enumerate() {
                        if j > 0 {
                            out.push(' ');
                        }
                        write_sexp(x, out);
                    }
                }
                out.push(']');
            }
            ExprKind::Missing => out.push('?'),
        }
    }

    #[track_caller]
    fn check(src: &str, want: &str) {
        let e = parse_expr(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
        assert_eq!(sexp(&e), want, "parsing {src:?}");
    }

    /// Parse, expect an error; returns (primary span as range, message).
    #[track_caller]
    fn fail(src: &str) -> (std::ops::Range<usize>, String) {
        let e = parse_expr(src).map(|e| sexp(&e)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax, "{src:?}: {e}");
        assert!(e.hint.is_some(), "{src:?}: no hint");
        (e.span().expect("a span").range(), e.message)
    }

    #[test]
    fn atoms() {
        check("x", "x");
        check("2.5", "2.5");
        check(" W_1 ", "W_1");
        check("(x)", "x");
        check("((x))", "x");
    }

    #[test]
    fn additive_and_multiplicative_are_left_assoc() {
        check("a+b+c", "(+ (+ a b) c)");
        check("a-b-c", "(- (- a b) c)");
        check("a-b+c", "(+ (- a b) c)");
        check("a*b*c", "(* (* a b) c)");
        check("a/b/c", "(/ (/ a b) c)");
        check("a.*b./c", "(./ (.* a b) c)");
        check("a./b.*c", "(.* (./ a b) c)");
        check("a*b/c.*d./e", "(./ (.* (/ (* a b) c) d) e)");
    }

    #[test]
    fn precedence_between_levels() {
        check("a+b*c", "(+ a (* b c))");
        check("a*b+c", "(+ (* a b) c)");
        check("a-b.*c", "(- a (.* b c))");
        check("a./b-c", "(- (./ a b) c)");
        check("a*b^c", "(* a (^ b c))");
        check("a^b*c", "(* (^ a b) c)");
        check("a.*b.^c", "(.* a (.^ b c))");
        check("a^b'", "(^ a (' b))");
        check("a'^b", "(^ (' a) b)");
        check("(a+b)*c", "(* (+ a b) c)");
    }

    #[test]
    fn powers_are_right_assoc() {
        check("2^3^2", "(^ 2 (^ 3 2))");
        check("a.^b.^c", "(.^ a (.^ b c))");
        check("a^b.^c", "(^ a (.^ b c))");
        check("(2^3)^2", "(^ (^ 2 3) 2)");
    }

    #[test]
    fn unary_operators() {
        check("-x", "(- x)");
        check("+x", "x");
        check("--x", "(- (- x))");
        check("-x^2", "(- (^ x 2))");
        check("-A*B", "(* (- A) B)");
        check("-a+b", "(+ (- a) b)");
        check("2*-x", "(* 2 (- x))");
        check("a - -b", "(- a (- b))");
        check("x^-1", "(^ x (- 1))");
        check("x.^-0.5", "(.^ x (- 0.5))");
        check("x^-1*y", "(* (^ x (- 1)) y)");
        check("x^-y^2", "(^ x (- (^ y 2)))");
        check("-x'", "(- (' x))");
        check("+-x", "(- x)");
    }

    #[test]
    fn transpose() {
        check("A'", "(' A)");
        check("A''", "(' (' A))");
        check("x'*y", "(* (' x) y)");
        check("x'*A*x", "(* (* (' x) A) x)");
        check("(A+B)'", "(' (+ A B))");
        check("2'", "(' 2)");
        check("[1 2]'", "(' [1 2])");
        check("f(x)'", "(' (f x))");
        check("A ' * B", "(* (' A) B)");
    }

    #[test]
    fn elementwise_after_numbers() {
        check("2.*x", "(.* 2 x)");
        check("x./y", "(./ x y)");
        check("1./x", "(./ 1 x)");
        check("2.^x", "(.^ 2 x)");
        check("2.5.*x", "(.* 2.5 x)");
        check("1e-3*x", "(* 0.001 x)");
        check(".5*x", "(* 0.5 x)");
    }

    #[test]
    fn calls() {
        check("f()", "(f)");
        check("eye(3)", "(eye 3)");
        check("norm2(x)", "(norm2 x)");
        check("sum(A)", "(sum A)");
        check("f(x, y)", "(f x y)");
        check("f(x+1, A*B, 3)", "(f (+ x 1) (* A B) 3)");
        check("sin (x)", "(sin x)");
        check("log(det(X))", "(log (det X))");
        check(
            "norm2(sin(W2*cos(W1*x)))^2",
            "(^ (norm2 (sin (* W2 (cos (* W1 x))))) 2)",
        );
        check(
            "sum(log(1 + exp(-y.*(X*w))))",
            "(sum (log (+ 1 (exp (.* (- y) (* X w))))))",
        );
        check("-f(x)^2", "(- (^ (f x) 2))");
    }

    #[test]
    fn matrix_literals() {
        check("[1 2; 3 4]", "[1 2; 3 4]");
        check("[1, 2; 3, 4]", "[1 2; 3 4]");
        check("[1; 2; 3]", "[1; 2; 3]");
        check("[-1 2.5]", "[-1 2.5]");
        check("[1 -2]", "[1 -2]");
        check("[+3, -2, 1e-2]", "[3 -2 0.01]");
        check("[1,2;3,4]", "[1 2; 3 4]");
        check("[ 1 , 2 ]", "[1 2]");
        check("[1; 2;]", "[1; 2]");
        check("[5]", "[5]");
        check("A*[1; 2]", "(* A [1; 2])");
        let e = parse_expr("[-1 2.5]").unwrap();
        let ExprKind::Matrix(rows) = &e.kind else { panic!() };
        assert_eq!(rows[0][0].kind, ExprKind::Num(-1.0));
        assert_eq!(rows[0][0].span, Span::new(1, 3));
        assert_eq!(rows[0][1].span, Span::new(4, 7));
        assert_eq!(e.span, Span::new(0, 8));
    }

    #[test]
    fn matrix_literal_errors() {
        assert_eq!(fail("[]"), (0..2, "empty matrix literal `[]`".into()));
        assert_eq!(fail("[ ]"), (0..3, "empty matrix literal `[]`".into()));
        assert_eq!(
            fail("[1 2; 3]"),
            (6..7, "row 2 has 1 entry but row 1 has 2 entries".into())
        );
        assert_eq!(
            fail("[1; 2 3; 4]"),
            (4..7, "row 2 has 2 entries but row 1 has 1 entry".into())
        );
        assert_eq!(
            fail("[1 2; 3 4; 5 6 7]"),
            (11..16, "row 3 has 3 entries but row 1 has 2 entries".into())
        );
        assert_eq!(
            fail("[1 x]"),
            (3..4, "matrix literal entries must be numbers, found `x`".into())
        );
        assert_eq!(
            fail("[[1]]"),
            (1..2, "matrix literal entries must be numbers, found `[`".into())
        );
        assert_eq!(fail("[1,,2]"), (3..4, "expected a number before `,`".into()));
        assert_eq!(fail("[1-2]"), (2..3, "unexpected `-` in a matrix literal".into()));
        assert_eq!(fail("[1 - 2]"), (3..6, "ambiguous `-` in a matrix literal".into()));
        assert_eq!(fail("[1; ; 2]"), (4..5, "empty row in a matrix literal".into()));
        assert_eq!(fail("[;1]"), (1..2, "empty row in a matrix literal".into()));
        assert_eq!(fail("[1 2"), (0..1, "unclosed `[`".into()));
        assert_eq!(fail("[1 2;"), (0..1, "unclosed `[`".into()));
        assert_eq!(
            fail("[1 2)"),
            (4..5, "matrix literal entries must be numbers, found `)`".into())
        );
        let e = parse_expr("[1 2)").unwrap_err();
        assert_eq!(e.hint.unwrap(), "close the matrix literal with `]`");
        assert_eq!(e.labels[1].span, Span::new(0, 1));
        assert_eq!(fail("[1 2 x]").0, 5..6);
        assert_eq!(fail("[1, 2,]"), (6..7, "expected a number after `,`".into()));
        assert_eq!(fail("[1 -]"), (4..5, "expected a number after `-`".into()));
        assert_eq!(fail("[1 -"), (3..4, "expected a number after `-`".into()));
    }

    #[test]
    fn spans() {
        let e = parse_expr("x'*A").unwrap();
        assert_eq!(e.span, Span::new(0, 4));
        let ExprKind::Binary(_, l, r) = &e.kind else { panic!() };
        assert_eq!((l.span, r.span), (Span::new(0, 2), Span::new(3, 4)));

        let e = parse_expr(" -(a + b) ").unwrap();
        assert_eq!(e.span, Span::new(1, 9));
        let ExprKind::Neg(inner) = &e.kind else { panic!() };
        assert_eq!(inner.span, Span::new(2, 9), "parentheses belong to the span");

        let e = parse_expr("+x").unwrap();
        assert_eq!((e.kind.clone(), e.span), (ExprKind::Ident("x".into()), Span::new(0, 2)));

        let e = parse_expr("norm2(x, 2)").unwrap();
        let ExprKind::Call { name_span, args, .. } = &e.kind else {
            panic!()
        };
        assert_eq!((e.span, *name_span), (Span::new(0, 11), Span::new(0, 5)));
        assert_eq!(args[1].span, Span::new(9, 10));
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(fail(""), (0..0, "the expression is empty".into()));
        assert_eq!(fail("  \n "), (0..4, "the expression is empty".into()));
        assert_eq!(fail("x+"), (1..2, "expected an expression after `+`".into()));
        assert_eq!(
            fail("x + * y"),
            (4..5, "expected an expression after `+`, found `*`".into())
        );
        assert_eq!(
            fail("f(x,)"),
            (4..5, "expected an expression after `,`, found `)`".into())
        );
        assert_eq!(fail("*x"), (0..1, "expected an expression, found `*`".into()));
        assert_eq!(fail(")"), (0..1, "unexpected `)`".into()));
        assert_eq!(fail("x)"), (1..2, "unexpected `)`".into()));
        assert_eq!(fail("(x+1))"), (5..6, "unexpected `)`".into()));
        assert_eq!(fail("x]"), (1..2, "unexpected `]`".into()));
        assert_eq!(fail("(x+1"), (0..1, "unclosed `(`".into()));
        assert_eq!(fail("a*((x+1)"), (2..3, "unclosed `(`".into()));
        assert_eq!(fail("sum(x"), (3..4, "unclosed `(`".into()));
        assert_eq!(fail("f(x y)"), (4..5, "expected `)` or an operator, found `y`".into()));
        assert_eq!(fail("()"), (0..2, "empty parentheses".into()));
        assert_eq!(fail("x y"), (2..3, "unexpected `y` after the expression".into()));
        assert_eq!(fail("2 (x)"), (2..3, "unexpected `(` after the expression".into()));
        assert_eq!(fail("x;"), (1..2, "unexpected `;`".into()));
        assert_eq!(fail("x, y"), (1..2, "unexpected `,`".into()));
        assert_eq!(fail("'x"), (0..1, "expected an expression, found `'`".into()));
        assert_eq!(fail("x^"), (1..2, "expected an expression after `^`".into()));
        assert_eq!(fail("-"), (0..1, "expected an expression after `-`".into()));
        assert_eq!(fail("a: b"), (1..2, "unexpected `:`".into()));
        assert_eq!(fail("1..2"), (1..3, "unexpected `..`".into()));
        // Lexical errors come through with their spans.
        assert_eq!(fail("x # y"), (2..3, "unexpected character `#`".into()));
        assert_eq!(
            fail("2x"),
            (0..2, "a number cannot be directly followed by a name".into())
        );
        // The unclosed paren is also labelled when something else follows.
        let e = parse_expr("(a b").unwrap_err();
        assert_eq!(e.labels[1].span, Span::new(0, 1));
    }

    fn limit(src: &str) -> Span {
        let e = parse_expr(src).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Limit, "{e}");
        assert_eq!(e.message, "nesting too deep (more than 1000 levels)");
        e.span().unwrap()
    }

    #[test]
    fn nesting_limit() {
        let depth = |open: &str, close: &str, k: usize| format!("{}x{}", open.repeat(k), close.repeat(k));
        let at = |i: usize| Span::new(i, i + 1);
        // Exactly MAX_DEPTH levels are fine, one more is not.
        let ok = parse_expr(&depth("(", ")", MAX_DEPTH)).unwrap();
        assert_eq!(sexp(&ok), "x");
        assert!(parse_expr(&depth("-", "", MAX_DEPTH)).is_ok());
        assert!(parse_expr(&depth("f(", ")", MAX_DEPTH)).is_ok());
        assert!(parse_expr(&vec!["x"; MAX_DEPTH + 1].join("^")).is_ok());
        assert_eq!(limit(&depth("(", ")", MAX_DEPTH + 1)), at(MAX_DEPTH));
        let bracket = format!("{}[1]{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(limit(&bracket), at(MAX_DEPTH));

        let n = 100_000;
        assert_eq!(limit(&depth("(", ")", n)), at(MAX_DEPTH));
        assert_eq!(limit(&depth("-", "", n)), at(MAX_DEPTH));
        assert_eq!(limit(&depth("+", "", n)), at(MAX_DEPTH));
        assert_eq!(limit(&depth("-(", ")", n)), at(MAX_DEPTH));
        assert_eq!(limit(&depth("f(", ")", n)), at(2 * MAX_DEPTH));
        // The `^` after the 1001st `x`.
        assert_eq!(limit(&vec!["x"; n].join("^")), at(2 * MAX_DEPTH + 1));
        // Unclosed at the start: the limit wins over the missing `)`.
        assert_eq!(limit(&"(".repeat(n)), at(MAX_DEPTH));
    }

    #[test]
    fn parsing_does_not_recurse() {
        // The parser keeps its own stack, so even a small thread stack is
        // enough for the deepest allowed nesting and for the limit errors.
        let worker = std::thread::Builder::new().stack_size(128 << 10);
        let handle = worker
            .spawn(|| {
                for (open, close) in [("(", ")"), ("-", ""), ("f(", ")"), ("x^", "")] {
                    let ok = format!("{}x{}", open.repeat(MAX_DEPTH), close.repeat(MAX_DEPTH));
                    std::mem::forget(parse_expr(&ok).unwrap());
                    let bad = format!("{}x{}", open.repeat(100_000), close.repeat(100_000));
                    assert_eq!(parse_expr(&bad).unwrap_err().kind, ErrorKind::Limit);
                }
            })
            .unwrap();
        handle.join().unwrap();
    }

    #[test]
    fn long_left_chain_is_iterative() {
        // Parsing is a loop; dropping the left-deep tree recurses, hence the big stack.
        let worker = std::thread::Builder::new().stack_size(256 << 20);
        let handle = worker
            .spawn(|| {
                let n = 200_000;
                let src = vec!["x"; n].join("+");
                let e = parse_expr(&src).unwrap();
                assert_eq!(e.span, Span::new(0, src.len()));
                let mut depth = 0;
                let mut cur = &e;
                while let ExprKind::Binary(BinOp::Add, l, _) = &cur.kind {
                    depth += 1;
                    cur = l;
                }
                assert_eq!(depth, n - 1);
                let mixed = vec!["a*b"; n].join("-");
                assert!(parse_expr(&mixed).is_ok());
            })
            .unwrap();
        handle.join().unwrap();
    }

    #[test]
    fn input_too_large() {
        let big = "x+".repeat(MAX_LEN / 2) + "x";
        let e = parse_expr(&big).unwrap_err();
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Limit, "expression too large"));
        assert!(e.hint.is_some());
    }
}
