//! LaTeX input: formulas as people write them on math.stackexchange, in papers
//! and in lecture notes, read into the same [`Expr`] tree as our own syntax
//! (spans are byte offsets into the LaTeX text), together with the
//! declarations written beside them.
//!
//! ```
//! use matcalc::syntax::latex::parse_latex;
//! let p = parse_latex(concat!(
//!     r"L(x) := \| \sin \left( W_2 \cos \left( W_1 x \right) \right) \|_2^2, ",
//!     r"where r \in [1, 95], W_1 \in \mathbb{R}^{r \times 100} and W_2 \in \mathbb{R}^{100 \times r}",
//! ))
//! .unwrap();
//! assert_eq!(p.echo, "norm2(sin(W2*cos(W1*x)))^2");
//! assert_eq!(p.wrt.as_deref(), Some("x"));
//! assert_eq!(p.decls_text(), "r: dim in 1..95; W1: matrix(r, 100); W2: matrix(100, r)");
//! ```
//!
//! # How a text is read
//! 1. [`extract_math`] finds the mathematics: `$…$`, `$$…$$`, `\[…\]`, `\(…\)`
//!    and equation environments in prose, or the whole text when it has no
//!    delimiters. The mathematics is split at top-level commas, semicolons,
//!    `\quad`, `\\`, `\text{…}` prose and words such as *where*, *and*, *with*
//!    into clauses. A clause with a top-level `\in` (or `>`, `\ge`, …) is a
//!    declaration; names listed before it with commas (`A, B \in …`) belong to
//!    it. Of the other clauses the formula is the first with `=`/`:=`, else the
//!    first that is not a lone name. A lone name after "with respect to" is the
//!    default variable.
//! 2. Declarations are read first, because they inform how the formula is read
//!    (is `X^{-1}` an inverse? is `x y` a product of two vectors?).
//! 3. The formula is parsed by precedence climbing: `+ -` bind loosest, then
//!    products (`*`, `\cdot`, `\times`, `\odot`, `\circ`, `/`, juxtaposition),
//!    then unary minus, then superscripts, subscripts and primes, which bind to
//!    the atom they follow. `f(x) :=` / `f(x) =` on the left names the
//!    function's variables.
//!
//! # Conventions (the choices a reader of LaTeX has to make)
//! * A run of letters is a product of one-letter names (`Ax` is `A*x`, `x^TAx`
//!   is `x'*A*x`) unless it is a function name (`sin`, `log`, `tr`, `diag`,
//!   `softmax`, …) or a word of prose (`where`, `and`, …). A letter with digits
//!   glued to it is one name (`W1`). Superscripts and subscripts without braces
//!   take one letter, or a whole number (`x^10` is `x^{10}`).
//! * Names: `W_1` → `W1`, `W_{12}` → `W12`, `x_{new}` → `x_new`, `\theta` →
//!   `theta`, `\mathbf{x}` → `x`, `\hat{y}` → `yhat`, `W^{(1)}` → `W1`.
//! * `X^{-1}` is `inv(X)` when `X` looks like a matrix (declared so, or an
//!   undeclared capital letter, or built from such), else the power `X^-1`.
//!   `X^{-T}` is `inv(X)'`; `x^T`, `x^\top`, `x^{\mathsf T}`, `x^\intercal`,
//!   `x'` are transposes; `x^{\circ 2}` is `x.^2`.
//! * `\|e\|`, `\|e\|_2`, `\|e\|_F` are `norm2(e)` (Euclidean, Frobenius on
//!   matrices); `\|e\|_1` is `norm1(e)`. `\|X\|_2` of a matrix is the spectral
//!   norm, which matcalc does not have: an error. `|e|` is `abs(e)`, or `det(e)`
//!   when `e` looks like a matrix.
//! * A power of a vector is elementwise (`x^2` is `x.^2`); `\frac{a}{b}` with a
//!   vector or matrix `b` is `a./b`; `x \cdot y` of two vectors is `x'*y`;
//!   `\langle a, b \rangle` is `a'*b` (`tr(a'*b)` for matrices).
//! * `\sum_i` sums over a vector's entries: `\sum_i x_i^2` is `sum(x.^2)`; in
//!   the summand, products, quotients and powers of indexed entries are
//!   elementwise. `\sum_{i,j} X_{ij}` sums a matrix's entries.
//! * `\mathbf{1}` is the ones vector `vector(1)`, `I_n` the identity `eye(n)`,
//!   `e^{x}` is `exp(x)`, `\sigma(…)` the logistic sigmoid and `\pi` the number
//!   (unless `I`, `e`, `sigma` are declared). A bare `I` is refused: its size is
//!   unknown.
//! * Functions apply to a parenthesized argument (`\sin(x)`), or without
//!   parentheses to the juxtaposed product after them (`\sin 2x`, `\log\det X`),
//!   which ends at the next function or explicit operator (`\sin x \cos y` is
//!   `sin(x)*cos(y)`). `\sin^2 x` is `sin(x)^2`.
//! * An undeclared lower-case Greek letter used as a coefficient (`\lambda
//!   \|w\|^2`, `2\alpha`, `\frac{…}{\sigma^2}`) is taken to be a scalar; such
//!   names are listed in [`LatexProblem::assumed`] and declared in
//!   [`LatexProblem::decls`].
//!
//! Errors are [`ErrorKind::Syntax`] (or [`ErrorKind::Limit`]) with spans into
//! the LaTeX text and a hint.

use crate::error::{Error, ErrorKind, Origin, Result};
use crate::problem::Problem;
use crate::syntax::ast::{BinOp, Decl, DeclKind, DimExpr, Expr, ExprKind, Span};
use crate::syntax::lexer::describe;
use crate::syntax::parser::MAX_LEN;
use crate::typing::nearest;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Deepest nesting of groups, function arguments and operands a LaTeX formula
/// may have.
pub const MAX_NEST: usize = 200;

/// Tallest expression tree a LaTeX formula may build (left-associative chains
/// such as long sums count once).
pub const MAX_TREE_DEPTH: u32 = 500;

/// A LaTeX problem, read.
#[derive(Clone, Debug)]
pub struct LatexProblem {
    /// The formula, with spans into the LaTeX text.
    pub expr: Expr,
    /// Declarations read from the text (`W_1 \in \mathbb{R}^{r \times 100}`),
    /// then the assumed scalars (see [`LatexProblem::assumed`]). Spans point
    /// into the LaTeX text.
    pub decls: Vec<Decl>,
    /// The default variable: the first one named on the left (`L(x) :=`), or
    /// the one named "with respect to".
    pub wrt: Option<String>,
    /// Every variable named on the left (`f(x, y) =` gives `x`, `y`).
    pub params: Vec<String>,
    /// Undeclared lower-case Greek letters used as coefficients, taken to be
    /// scalars (and declared so in [`LatexProblem::decls`]).
    pub assumed: Vec<String>,
    /// The formula as our syntax (parsing it gives the same tree).
    pub echo: String,
}

impl LatexProblem {
    /// The declarations in our syntax, `; `-separated.
    pub fn decls_text(&self) -> String {
        self.decls.iter().map(decl_to_plain).collect::<Vec<_>>().join("; ")
    }

    /// Type the formula against its declarations.
    pub fn problem(&self) -> Result<Problem> {
        Problem::from_ast(&self.expr, &self.decls)
    }
}

/// Whether `src` is clearly LaTeX rather than our syntax: it contains a
/// backslash, `$`, braces (so also `_{` and `^{`), or a Unicode norm bar,
/// superscript T, `⊙`, `∈` or `ℝ` — none of which our syntax uses.
pub fn looks_like_latex(src: &str) -> bool {
    src.contains(['\\', '$', '{', '}', '‖', 'ᵀ', '⊙', '∈', 'ℝ'])
}

/// Read a LaTeX text: a formula with optional declarations, possibly in prose.
pub fn parse_latex(src: &str) -> Result<LatexProblem> {
    parse_latex_with(src, &[])
}

/// [`parse_latex`], with declarations known from elsewhere (say `--decl`
/// flags). They take precedence over the text's own when the formula is read
/// (is `X^{-1}` an inverse?), and are not repeated in
/// [`LatexProblem::decls`]'s assumed scalars. The text's declarations are
/// returned as written, even when `known` declares the same name: merging is
/// the caller's choice.
pub fn parse_latex_with(src: &str, known: &[Decl]) -> Result<LatexProblem> {
    let ex = extract_math(src)?;
    let empty = HashMap::new();
    let mut decls: Vec<Decl> = Vec::new();
    for &span in &ex.decls {
        let mut p = Parser::new(src, lex(src, span)?, &empty);
        for d in p.decl_clause()? {
            if let Some(first) = decls.iter().find(|e| e.name == d.name) {
                return Err(
                    Error::at(ErrorKind::Syntax, d.span, format!("`{}` is declared twice", d.name))
                        .label(first.span, Origin::Expr, "first declared here")
                        .hint(format!("remove one of the declarations of `{}`, or rename one", d.name)),
                );
            }
            decls.push(d);
        }
    }
    let mut kinds: HashMap<String, DeclKind> = decls.iter().map(|d| (d.name.clone(), d.kind.clone())).collect();
    for d in known {
        kinds.insert(d.name.clone(), d.kind.clone());
    }
    let (head, body) = split_head(src, lex(src, ex.formula)?)?;
    let params = match head {
        Some(h) => Parser::new(src, h, &kinds).head()?,
        None => Vec::new(),
    };
    let mut p = Parser::new(src, body, &kinds);
    let node = p.formula()?;
    let mut assumed: Vec<String> = Vec::new();
    for (name, span) in std::mem::take(&mut p.coeffs) {
        if !kinds.contains_key(&name) && !assumed.contains(&name) {
            assumed.push(name.clone());
            decls.push(Decl {
                name,
                kind: DeclKind::Scalar,
                span,
            });
        }
    }
    let wrt = match (params.first(), ex.wrt) {
        (Some(w), _) => Some(w.clone()),
        (None, Some(span)) => Some(Parser::new(src, lex(src, span)?, &kinds).lone_name()?),
        (None, None) => None,
    };
    let echo = to_plain(&node.e);
    Ok(LatexProblem {
        expr: node.e,
        decls,
        wrt,
        params,
        assumed,
        echo,
    })
}

// ---------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------

/// Function names (as commands or as letter runs) and the function they are.
#[rustfmt::skip]
const FUNCS: [(&str, &str); 32] = [
    ("sin", "sin"), ("cos", "cos"), ("tan", "tan"), ("exp", "exp"), ("log", "log"), ("ln", "log"),
    ("tanh", "tanh"), ("det", "det"), ("tr", "tr"), ("Tr", "tr"), ("trace", "tr"), ("Trace", "tr"),
    ("diag", "diag"), ("Diag", "diag"), ("softmax", "softmax"), ("sqrt", "sqrt"), ("abs", "abs"),
    ("sigmoid", "sigmoid"), ("relu", "relu"), ("ReLU", "relu"), ("softplus", "softplus"),
    ("logdet", "logdet"), ("logsumexp", "logsumexp"), ("LSE", "logsumexp"), ("arcsin", "asin"),
    ("arccos", "acos"), ("arctan", "atan"), ("asin", "asin"), ("acos", "acos"), ("atan", "atan"),
    ("sign", "sign"), ("sgn", "sign"),
];

fn func(word: &str) -> Option<&'static str> {
    FUNCS.iter().find(|(w, _)| *w == word).map(|(_, f)| *f)
}

/// Words of prose that separate clauses (`…, where x \in …`).
const PROSE: [&str; 18] = [
    "where", "and", "with", "for", "let", "given", "assume", "assuming", "suppose", "such", "that", "then", "respect",
    "to", "wrt", "subject", "all", "if",
];

fn is_prose(word: &str) -> bool {
    PROSE.contains(&word.to_ascii_lowercase().as_str())
}

/// Greek letters usable as names (`\varphi` is read as `phi`).
const GREEK: [&str; 36] = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi",
    "omicron", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega", "ell", "Gamma", "Delta", "Theta",
    "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega", "Chi",
];

/// The name of a Greek-letter command, if it is one.
fn greek(cmd: &str) -> Option<&str> {
    let base = cmd.strip_prefix("var").unwrap_or(cmd);
    GREEK.contains(&base).then_some(base)
}

/// Unicode Greek letters.
#[rustfmt::skip]
const GREEK_CHARS: [(char, &str); 31] = [
    ('α', "alpha"), ('β', "beta"), ('γ', "gamma"), ('δ', "delta"), ('ε', "epsilon"), ('ϵ', "epsilon"),
    ('ζ', "zeta"), ('η', "eta"), ('θ', "theta"), ('ι', "iota"), ('κ', "kappa"), ('λ', "lambda"), ('μ', "mu"),
    ('ν', "nu"), ('ξ', "xi"), ('ρ', "rho"), ('σ', "sigma"), ('τ', "tau"), ('φ', "phi"), ('ϕ', "phi"),
    ('χ', "chi"), ('ψ', "psi"), ('ω', "omega"), ('Γ', "Gamma"), ('Δ', "Delta"), ('Θ', "Theta"),
    ('Λ', "Lambda"), ('Σ', "Sigma"), ('Φ', "Phi"), ('Ψ', "Psi"), ('Ω', "Omega"),
];

/// Whether a name is a lower-case Greek letter, possibly with a subscript
/// (`lambda`, `lambda1`, `lambda_reg`).
fn is_greek_lower(name: &str) -> bool {
    let base = name
        .split('_')
        .next()
        .unwrap_or(name)
        .trim_end_matches(|c: char| c.is_ascii_digit());
    base.starts_with(|c: char| c.is_ascii_lowercase()) && GREEK.contains(&base)
}

/// Commands that only change spacing or style, skipped.
const SKIP: [&str; 22] = [
    "displaystyle",
    "textstyle",
    "scriptstyle",
    "scriptscriptstyle",
    "limits",
    "nolimits",
    "nonumber",
    "notag",
    "rm",
    "sf",
    "bf",
    "it",
    "mathstrut",
    "strut",
    "enspace",
    "thinspace",
    "medspace",
    "thickspace",
    "negthinspace",
    "negmedspace",
    "negthickspace",
    "relax",
];

/// Commands skipped together with their braced argument.
const SKIP_ARG: [&str; 8] = [
    "label", "tag", "hspace", "vspace", "phantom", "hphantom", "vphantom", "color",
];

/// Commands whose argument is text: a function name, a name, or prose.
const TEXT_LIKE: [&str; 14] = [
    "text",
    "textrm",
    "textit",
    "textbf",
    "textsf",
    "texttt",
    "textnormal",
    "mathrm",
    "operatorname",
    "mbox",
    "mathsf",
    "mathtt",
    "mathit",
    "mathnormal",
];

/// Commands whose argument is a (bold, calligraphic, …) name.
const BOLD_LIKE: [&str; 10] = [
    "mathbf",
    "boldsymbol",
    "bm",
    "vec",
    "mathbfit",
    "pmb",
    "mathcal",
    "mathscr",
    "mathfrak",
    "bold",
];

/// Accents: `\hat{y}` is the name `yhat`.
const DECOR: [&str; 12] = [
    "hat",
    "bar",
    "tilde",
    "check",
    "widehat",
    "widetilde",
    "overline",
    "dot",
    "ddot",
    "breve",
    "acute",
    "grave",
];

/// Relations: they end a formula and make a clause a declaration.
const RELATIONS: [&str; 22] = [
    "in", "le", "leq", "leqslant", "ge", "geq", "geqslant", "lt", "gt", "succ", "succeq", "prec", "preceq", "neq",
    "ne", "notin", "subset", "subseteq", "approx", "sim", "propto", "mapsto",
];

/// Binary operators written as commands.
const INFIX: [&str; 9] = [
    "cdot", "times", "odot", "circ", "ast", "div", "oslash", "bullet", "star",
];

/// Commands the parser reads itself (for "did you mean" hints).
const PARSED: [&str; 30] = [
    "frac", "dfrac", "tfrac", "cfrac", "sqrt", "sum", "norm", "left", "right", "big", "Big", "bigg", "Bigg", "bigl",
    "bigr", "Bigl", "Bigr", "lVert", "rVert", "Vert", "lvert", "rvert", "vert", "langle", "rangle", "begin", "end",
    "mathbb", "top", "intercal",
];

/// Every command the lexer or parser knows, for "did you mean" hints.
fn known_commands() -> impl Iterator<Item = &'static str> {
    FUNCS
        .iter()
        .map(|(w, _)| *w)
        .chain(GREEK)
        .chain(SKIP)
        .chain(SKIP_ARG)
        .chain(TEXT_LIKE)
        .chain(BOLD_LIKE)
        .chain(DECOR)
        .chain(RELATIONS)
        .chain(INFIX)
        .chain(PARSED)
        .chain([
            "quad",
            "qquad",
            "coloneqq",
            "triangleq",
            "equiv",
            "pi",
            "prime",
            "mathbb",
            "R",
            "operatorname",
        ])
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

/// Token kinds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum K {
    /// A number; `text` is its digits (empty for `\pi`).
    Num(f64),
    /// A name; `text` is ours (`W1`, `theta`).
    Name,
    /// A function; `text` is ours (`log` for `\ln`).
    Func,
    /// A prose word (lower case): separates clauses.
    Word,
    /// A number set: `text` is `R`, `S`, `N`, `Z`, `C`, …
    Set,
    /// `\mathbf{1}` (`text` "1") or `\mathbf{0}` (`text` "0").
    Ones,
    /// Any other command; `text` is its name.
    Cmd,
    /// A punctuation or operator character.
    Op(char),
    /// `\|`, `‖`, `\lVert`, `\rVert`, `\Vert`.
    DBar,
    /// `|`, `\lvert`, `\rvert`, `\vert`.
    Bar,
    /// `\{`
    SetOpen,
    /// `\}`
    SetClose,
    /// `\langle`
    Langle,
    /// `\rangle`
    Rangle,
    /// `=`, `:=`, `\coloneqq`, `\triangleq`, `\equiv`, `\overset{def}{=}`.
    Eq,
    /// `\quad`, `\qquad`, `\text{…}` prose; `text` is the prose.
    Sep,
    /// `\\`
    Newline,
    /// `\begin{env}`; `text` is the environment.
    Begin,
    /// `\end{env}`
    End,
    /// The end of the text being parsed.
    Eof,
}

/// Which side a delimiter was marked for (`\left(`, `\rVert`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Free,
    Left,
    Right,
}

#[derive(Clone, Debug)]
struct Tok {
    k: K,
    text: String,
    span: Span,
    side: Side,
}

/// Lex `src[range]` (spans stay absolute); the last token is [`K::Eof`].
fn lex(src: &str, range: Span) -> Result<Vec<Tok>> {
    let mut lx = Lexer {
        src,
        pos: range.start as usize,
        end: range.end as usize,
        out: Vec::new(),
    };
    lx.run()?;
    Ok(lx.out)
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    end: usize,
    out: Vec<Tok>,
}

fn syntax(span: Span, msg: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::at(ErrorKind::Syntax, span, msg).hint(hint)
}

impl<'a> Lexer<'a> {
    fn push(&mut self, k: K, text: impl Into<String>, start: usize, end: usize, side: Side) {
        self.out.push(Tok {
            k,
            text: text.into(),
            span: Span::new(start, end),
            side,
        });
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..self.end].chars().next()
    }

    fn byte_at(&self, at: usize) -> Option<u8> {
        (at < self.end).then(|| self.src.as_bytes()[at])
    }

    /// Whether the last token is `^` or `_` (the next one is a script).
    fn after_script(&self) -> bool {
        matches!(self.out.last(), Some(t) if matches!(t.k, K::Op('^') | K::Op('_')))
    }

    /// Skip whitespace, `~` and `%` comments.
    fn skip_blank(&mut self) {
        while let Some(c) = self.peek_char() {
            if c.is_whitespace() || c == '~' {
                self.pos += c.len_utf8();
            } else if c == '%' {
                while let Some(c) = self.peek_char() {
                    self.pos += c.len_utf8();
                    if c == '\n' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
    }

    fn run(&mut self) -> Result<()> {
        loop {
            self.skip_blank();
            let Some(c) = self.peek_char() else { break };
            let start = self.pos;
            match c {
                '0'..='9' => self.number()?,
                '.' if self.byte_at(start + 1).is_some_and(|b| b.is_ascii_digit()) => self.number()?,
                'a'..='z' | 'A'..='Z' => self.letters(),
                '\\' => self.command()?,
                ':' if self.byte_at(start + 1) == Some(b'=') => {
                    self.pos += 2;
                    self.push(K::Eq, ":=", start, self.pos, Side::Free);
                }
                '=' => {
                    self.pos += 1;
                    self.push(K::Eq, "=", start, self.pos, Side::Free);
                }
                '|' => {
                    self.pos += 1;
                    self.push(K::Bar, "|", start, self.pos, Side::Free);
                }
                '+' | '-' | '*' | '/' | '^' | '_' | '\'' | '(' | ')' | '[' | ']' | '{' | '}' | ',' | ';' | ':'
                | '<' | '>' | '&' | '!' | '.' | '?' => {
                    self.pos += 1;
                    self.push(K::Op(c), c.to_string(), start, self.pos, Side::Free);
                }
                '$' => {
                    return Err(syntax(
                        Span::new(start, start + 1),
                        "unexpected `$`",
                        "`$` delimits mathematics in prose; this one has no partner",
                    ))
                }
                _ => self.unicode(c)?,
            }
        }
        self.push(K::Eof, "", self.end, self.end, Side::Free);
        Ok(())
    }

    /// Digits, optionally with a fraction.
    fn number(&mut self) -> Result<()> {
        let start = self.pos;
        let digits = |lx: &Self, mut at: usize| {
            while lx.byte_at(at).is_some_and(|b| b.is_ascii_digit()) {
                at += 1;
            }
            at
        };
        let mut end = digits(self, start);
        if self.byte_at(end) == Some(b'.') && self.byte_at(end + 1).is_some_and(|b| b.is_ascii_digit()) {
            end = digits(self, end + 1);
        }
        let text = &self.src[start..end];
        let span = Span::new(start, end);
        let v: f64 = text.parse().map_err(|_| {
            syntax(
                span,
                format!("malformed number `{text}`"),
                "write numbers like `2` or `0.5`",
            )
        })?;
        if !v.is_finite() {
            return Err(syntax(span, "number too large", "numbers must be finite"));
        }
        self.pos = end;
        self.push(K::Num(v), text, start, end, Side::Free);
        Ok(())
    }

    /// A run of letters: a function name, a prose word, or one-letter names.
    fn letters(&mut self) {
        let start = self.pos;
        let src = self.src;
        let bytes = src.as_bytes();
        let mut run_end = start;
        while run_end < self.end && bytes[run_end].is_ascii_alphabetic() {
            run_end += 1;
        }
        if self.after_script() {
            self.pos = start + 1;
            self.push(K::Name, &src[start..start + 1], start, start + 1, Side::Free);
            return;
        }
        let run = &src[start..run_end];
        if run.len() > 1 {
            if let Some(f) = func(run) {
                self.pos = run_end;
                self.push(K::Func, f, start, run_end, Side::Free);
                return;
            }
            if is_prose(run) {
                self.pos = run_end;
                self.push(K::Word, run.to_ascii_lowercase(), start, run_end, Side::Free);
                return;
            }
        }
        let mut end = start + 1;
        if run.len() == 1 {
            while end < self.end && bytes[end].is_ascii_digit() {
                end += 1;
            }
        }
        self.pos = end;
        self.push(K::Name, &src[start..end], start, end, Side::Free);
    }

    /// The braced (or one-token) argument of the command that started at
    /// `cmd_start`: its raw text and where it ends.
    fn arg(&mut self, cmd: &str, cmd_start: usize) -> Result<String> {
        self.skip_blank();
        let at = self.pos;
        let cmd_span = Span::new(cmd_start, at);
        match self.peek_char() {
            Some('{') => {
                let bytes = self.src.as_bytes();
                let mut depth = 0usize;
                let mut i = at;
                while i < self.end {
                    match bytes[i] {
                        b'\\' => i += 1,
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                self.pos = i + 1;
                                return Ok(self.src[at + 1..i].to_string());
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                Err(syntax(
                    Span::new(at, at + 1),
                    "unclosed `{`",
                    format!("close the argument of `\\{cmd}` with `}}`"),
                ))
            }
            Some('\\') => {
                let bytes = self.src.as_bytes();
                let mut i = at + 1;
                while i < self.end && bytes[i].is_ascii_alphabetic() {
                    i += 1;
                }
                if i == at + 1 {
                    i += self.src[i..self.end].chars().next().map_or(0, char::len_utf8);
                }
                self.pos = i;
                Ok(self.src[at..i].to_string())
            }
            Some(c) if !matches!(c, '}' | '^' | '_') => {
                self.pos += c.len_utf8();
                Ok(c.to_string())
            }
            _ => Err(syntax(
                cmd_span,
                format!("`\\{cmd}` needs an argument"),
                format!("write `\\{cmd}{{…}}`"),
            )),
        }
    }

    fn command(&mut self) -> Result<()> {
        let start = self.pos;
        self.pos += 1;
        let Some(c) = self.peek_char() else {
            return Err(syntax(
                Span::new(start, start + 1),
                "a lone `\\` at the end",
                "remove it, or complete the command",
            ));
        };
        if !c.is_ascii_alphabetic() {
            self.pos += c.len_utf8();
            let end = self.pos;
            match c {
                '|' => self.push(K::DBar, "\\|", start, end, Side::Free),
                '{' => self.push(K::SetOpen, "\\{", start, end, Side::Free),
                '}' => self.push(K::SetClose, "\\}", start, end, Side::Free),
                '\\' => self.push(K::Newline, "\\\\", start, end, Side::Free),
                '_' => self.push(K::Op('_'), "_", start, end, Side::Free),
                ',' | ';' | ':' | '!' | ' ' | '>' | '\n' | '\t' | '\r' => {}
                _ => {
                    return Err(syntax(
                        Span::new(start, end),
                        format!("unexpected `\\{c}`"),
                        "matcalc reads formulas: numbers, names, operators, functions and delimiters",
                    ))
                }
            }
            return Ok(());
        }
        let src = self.src;
        let bytes = src.as_bytes();
        let mut name_end = self.pos;
        while name_end < self.end && bytes[name_end].is_ascii_alphabetic() {
            name_end += 1;
        }
        let name = &src[start + 1..name_end];
        self.pos = name_end;
        let here = |lx: &Self| Span::new(start, lx.pos);
        match name {
            _ if SKIP.contains(&name) => {}
            _ if SKIP_ARG.contains(&name) => {
                self.arg(name, start)?;
            }
            "quad" | "qquad" => self.push(K::Sep, "", start, self.pos, Side::Free),
            "left" | "bigl" | "Bigl" | "biggl" | "Biggl" => self.sized(start, name, Side::Left, true)?,
            "right" | "bigr" | "Bigr" | "biggr" | "Biggr" => self.sized(start, name, Side::Right, true)?,
            "big" | "Big" | "bigg" | "Bigg" | "bigm" | "Bigm" | "middle" => {
                self.sized(start, name, Side::Free, false)?
            }
            "lVert" | "rVert" | "Vert" | "lvert" | "rvert" | "vert" | "langle" | "rangle" | "lbrace" | "rbrace"
            | "lbrack" | "rbrack" => {
                let (k, side) = delimiter(name).expect("a delimiter name");
                self.push(k, format!("\\{name}"), start, self.pos, side);
            }
            _ if TEXT_LIKE.contains(&name) => {
                if self.peek_char() == Some('*') {
                    self.pos += 1;
                }
                let raw = self.arg(name, start)?;
                self.text_like(name, raw.trim(), here(self));
            }
            _ if BOLD_LIKE.contains(&name) => {
                let raw = self.arg(name, start)?;
                let content = raw.trim();
                let span = here(self);
                match content {
                    "1" | "0" => self.push(K::Ones, content, start, self.pos, Side::Free),
                    _ => match norm_name(content) {
                        Some(n) => self.push(K::Name, n, start, self.pos, Side::Free),
                        None => {
                            return Err(syntax(
                                span,
                                format!("cannot read `\\{name}{{{content}}}` as a name"),
                                "names are letters with an optional subscript: `\\mathbf{x}`, `\\mathbf{W}_1`, \
                                 `\\boldsymbol{\\theta}`",
                            ))
                        }
                    },
                }
            }
            "mathbb" | "Bbb" | "mathds" => {
                let raw = self.arg(name, start)?;
                let content = raw.trim();
                match content {
                    "1" => self.push(K::Ones, "1", start, self.pos, Side::Free),
                    "I" => self.push(K::Name, "I", start, self.pos, Side::Free),
                    "R" | "S" | "N" | "Z" | "C" | "Q" | "E" | "P" => {
                        self.push(K::Set, content, start, self.pos, Side::Free)
                    }
                    _ => {
                        return Err(syntax(
                            here(self),
                            format!("unknown set `\\{name}{{{content}}}`"),
                            "sets are `\\mathbb{R}` (real numbers), `\\mathbb{S}` (symmetric matrices) and \
                             `\\mathbb{N}`",
                        ))
                    }
                }
            }
            "R" | "reals" | "Re" => self.push(K::Set, "R", start, self.pos, Side::Free),
            "N" | "naturals" => self.push(K::Set, "N", start, self.pos, Side::Free),
            "Z" | "integers" => self.push(K::Set, "Z", start, self.pos, Side::Free),
            "C" | "complex" => self.push(K::Set, "C", start, self.pos, Side::Free),
            _ if DECOR.contains(&name) => {
                let raw = self.arg(name, start)?;
                let suffix = match name {
                    "widehat" => "hat",
                    "widetilde" => "tilde",
                    "overline" => "bar",
                    s => s,
                };
                match norm_name(raw.trim()) {
                    Some(n) => self.push(K::Name, format!("{n}{suffix}"), start, self.pos, Side::Free),
                    None => {
                        return Err(syntax(
                            here(self),
                            format!("cannot read `\\{name}{{{}}}` as a name", raw.trim()),
                            format!("accents go on a letter: `\\{name}{{x}}` is the name `x{suffix}`"),
                        ))
                    }
                }
            }
            "begin" | "end" => {
                let raw = self.arg(name, start)?;
                let k = if name == "begin" { K::Begin } else { K::End };
                self.push(k, raw.trim(), start, self.pos, Side::Free);
            }
            "coloneqq" | "coloneq" | "triangleq" | "equiv" | "doteq" | "eqdef" | "defeq" | "eqqcolon" => {
                self.push(K::Eq, format!("\\{name}"), start, self.pos, Side::Free)
            }
            "stackrel" | "overset" => {
                self.arg(name, start)?;
                let rel = self.arg(name, start)?;
                if rel.trim() != "=" {
                    return Err(syntax(
                        here(self),
                        format!("cannot read this `\\{name}`"),
                        format!("`\\{name}` is only read in a definition, `\\{name}{{def}}{{=}}`"),
                    ));
                }
                self.push(K::Eq, "=", start, self.pos, Side::Free);
            }
            "pi" => self.push(K::Num(std::f64::consts::PI), "", start, self.pos, Side::Free),
            _ => match (func(name), greek(name)) {
                (Some(f), _) if name != "sqrt" => self.push(K::Func, f, start, self.pos, Side::Free),
                (_, Some(g)) => {
                    let g = g.to_string();
                    self.push(K::Name, g, start, self.pos, Side::Free)
                }
                _ => self.push(K::Cmd, name, start, self.pos, Side::Free),
            },
        }
        Ok(())
    }

    /// The argument of `\text{…}` and friends: a function, a name or prose.
    fn text_like(&mut self, cmd: &str, content: &str, span: Span) {
        let (s, e) = (span.start as usize, span.end as usize);
        if content.is_empty() {
            return;
        }
        if let Some(f) = func(content) {
            self.push(K::Func, f, s, e, Side::Free);
        } else if cmd == "operatorname" && content.bytes().all(|b| b.is_ascii_alphanumeric()) {
            // An unknown function: typing names it and suggests the nearest.
            self.push(K::Func, content, s, e, Side::Free);
        } else if is_prose(content) {
            self.push(K::Word, content.to_ascii_lowercase(), s, e, Side::Free);
        } else if let Some(cmd) = content
            .strip_prefix('\\')
            .filter(|c| c.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            match greek(cmd) {
                Some(g) => {
                    let g = g.to_string();
                    self.push(K::Name, g, s, e, Side::Free)
                }
                None => self.push(K::Cmd, cmd, s, e, Side::Free),
            }
        } else if let Some(n) = norm_name(content) {
            self.push(K::Name, n, s, e, Side::Free);
        } else {
            self.push(K::Sep, content, s, e, Side::Free);
        }
    }

    /// The delimiter after `\left`, `\bigr`, …: one token covering both.
    fn sized(&mut self, start: usize, cmd: &str, side: Side, required: bool) -> Result<()> {
        let back = self.pos;
        self.skip_blank();
        let missing = |lx: &Self| {
            syntax(
                Span::new(start, lx.pos.max(start + 1 + cmd.len())),
                format!("`\\{cmd}` must be followed by a delimiter"),
                "write `\\left(` … `\\right)`, `\\left\\|` … `\\right\\|` or `\\left|` … `\\right|`",
            )
        };
        let Some(c) = self.peek_char() else {
            return if required { Err(missing(self)) } else { Ok(()) };
        };
        let (k, own_side) = match c {
            '(' | ')' | '[' | ']' => {
                self.pos += 1;
                (K::Op(c), Side::Free)
            }
            '|' => {
                self.pos += 1;
                (K::Bar, Side::Free)
            }
            '‖' => {
                self.pos += c.len_utf8();
                (K::DBar, Side::Free)
            }
            '.' if required => {
                return Err(syntax(
                    Span::new(start, self.pos + 1),
                    format!("`\\{cmd}.` (an invisible delimiter) is not supported"),
                    "delimit the formula with a visible pair such as `\\left(` … `\\right)`",
                ))
            }
            '\\' => {
                let bytes = self.src.as_bytes();
                let mut i = self.pos + 1;
                while i < self.end && bytes[i].is_ascii_alphabetic() {
                    i += 1;
                }
                if i == self.pos + 1 {
                    i += self.src[i..self.end].chars().next().map_or(0, char::len_utf8);
                }
                let src = self.src;
                let name = &src[self.pos + 1..i];
                let found = match name {
                    "|" => Some((K::DBar, Side::Free)),
                    "{" => Some((K::SetOpen, Side::Free)),
                    "}" => Some((K::SetClose, Side::Free)),
                    _ => delimiter(name),
                };
                match found {
                    Some(f) => {
                        self.pos = i;
                        f
                    }
                    None if required => return Err(missing(self)),
                    None => {
                        self.pos = back;
                        return Ok(());
                    }
                }
            }
            _ if required => return Err(missing(self)),
            _ => {
                self.pos = back;
                return Ok(());
            }
        };
        let side = if side == Side::Free { own_side } else { side };
        let text = src_slice(self.src, start, self.pos);
        self.push(k, text, start, self.pos, side);
        Ok(())
    }

    /// Unicode mathematics: `×`, `‖`, `ᵀ`, `²`, `∈`, Greek letters, …
    fn unicode(&mut self, c: char) -> Result<()> {
        let start = self.pos;
        self.pos += c.len_utf8();
        let end = self.pos;
        let cmd = |lx: &mut Self, name: &str| lx.push(K::Cmd, name, start, end, Side::Free);
        match c {
            '×' => cmd(self, "times"),
            '·' | '⋅' | '∙' => cmd(self, "cdot"),
            '⊙' => cmd(self, "odot"),
            '∘' => cmd(self, "circ"),
            '∈' => cmd(self, "in"),
            '≤' => cmd(self, "le"),
            '≥' => cmd(self, "ge"),
            '∑' => cmd(self, "sum"),
            '√' => cmd(self, "sqrt"),
            '∞' => cmd(self, "infty"),
            '∇' => cmd(self, "nabla"),
            '∂' => cmd(self, "partial"),
            '…' | '⋯' => cmd(self, "dots"),
            '⊤' => cmd(self, "top"),
            '∗' => self.push(K::Op('*'), "*", start, end, Side::Free),
            '−' | '–' => self.push(K::Op('-'), "-", start, end, Side::Free),
            'ᵀ' => self.push(K::Op('\''), "'", start, end, Side::Free),
            '‖' => self.push(K::DBar, "‖", start, end, Side::Free),
            '∣' => self.push(K::Bar, "|", start, end, Side::Free),
            '⟨' => self.push(K::Langle, "⟨", start, end, Side::Free),
            '⟩' => self.push(K::Rangle, "⟩", start, end, Side::Free),
            'ℝ' => self.push(K::Set, "R", start, end, Side::Free),
            'ℕ' => self.push(K::Set, "N", start, end, Side::Free),
            'ℤ' => self.push(K::Set, "Z", start, end, Side::Free),
            '≔' | '≜' => self.push(K::Eq, "=", start, end, Side::Free),
            'π' => self.push(K::Num(std::f64::consts::PI), "", start, end, Side::Free),
            '₀'..='₉' => {
                let d = (c as u32 - '₀' as u32).to_string();
                self.push(K::Op('_'), "_", start, end, Side::Free);
                self.push(K::Num(d.parse().unwrap_or(0.0)), d, start, end, Side::Free);
            }
            '²' | '³' => {
                let n = if c == '²' { 2.0 } else { 3.0 };
                self.push(K::Op('^'), "^", start, end, Side::Free);
                self.push(K::Num(n), format!("{n}"), start, end, Side::Free);
            }
            '⁻' => {
                let next = self.peek_char();
                let exp = match next {
                    Some('¹') => "1",
                    Some('ᵀ') => "T",
                    _ => {
                        return Err(syntax(
                            Span::new(start, end),
                            "unexpected `⁻`",
                            "write `^{-1}` for an inverse",
                        ))
                    }
                };
                self.pos += next.map_or(0, char::len_utf8);
                let end = self.pos;
                self.push(K::Op('^'), "^", start, end, Side::Free);
                self.push(K::Op('{'), "{", start, end, Side::Free);
                self.push(K::Op('-'), "-", start, end, Side::Free);
                if exp == "1" {
                    self.push(K::Num(1.0), "1", start, end, Side::Free);
                } else {
                    self.push(K::Name, "T", start, end, Side::Free);
                }
                self.push(K::Op('}'), "}", start, end, Side::Free);
            }
            _ => match GREEK_CHARS.iter().find(|(g, _)| *g == c) {
                Some((_, name)) => self.push(K::Name, *name, start, end, Side::Free),
                None => {
                    return Err(syntax(
                        Span::new(start, end),
                        format!("unexpected character `{c}`"),
                        "write the formula in LaTeX: `\\cdot`, `\\|x\\|`, `x^\\top`, `\\mathbb{R}^n`, …",
                    ))
                }
            },
        }
        Ok(())
    }
}

fn src_slice(src: &str, a: usize, b: usize) -> String {
    src[a..b].to_string()
}

/// The token for a named delimiter command.
fn delimiter(name: &str) -> Option<(K, Side)> {
    Some(match name {
        "lVert" => (K::DBar, Side::Left),
        "rVert" => (K::DBar, Side::Right),
        "Vert" => (K::DBar, Side::Free),
        "lvert" => (K::Bar, Side::Left),
        "rvert" => (K::Bar, Side::Right),
        "vert" => (K::Bar, Side::Free),
        "langle" => (K::Langle, Side::Left),
        "rangle" => (K::Rangle, Side::Right),
        "lbrace" => (K::SetOpen, Side::Left),
        "rbrace" => (K::SetClose, Side::Right),
        "lbrack" => (K::Op('['), Side::Left),
        "rbrack" => (K::Op(']'), Side::Right),
        _ => return None,
    })
}

/// Read the content of `\mathbf{…}` and friends as a name: `W_1` → `W1`,
/// `W_{12}` → `W12`, `x_{new}` → `x_new`, `\theta` → `theta`.
fn norm_name(content: &str) -> Option<String> {
    let s: String = content
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '{' | '}'))
        .collect();
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(c) = rest.chars().next() {
        if c == '\\' {
            let name_len = rest[1..].bytes().take_while(u8::is_ascii_alphabetic).count();
            out.push_str(greek(&rest[1..1 + name_len])?);
            rest = &rest[1 + name_len..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    let (base, sub) = match out.split_once('_') {
        Some((b, s)) => (b, Some(s)),
        None => (out.as_str(), None),
    };
    let ident = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !ident(base) || !base.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    match sub {
        None => Some(base.to_string()),
        Some(s) if ident(s) && s.bytes().all(|b| b.is_ascii_digit()) => Some(format!("{base}{s}")),
        Some(s) if ident(s) => Some(format!("{base}_{s}")),
        Some(_) => None,
    }
}

// ---------------------------------------------------------------------------
// Finding the mathematics and its clauses
// ---------------------------------------------------------------------------

/// Where the formula and declarations are in a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    /// The formula clause, including any `f(x) :=` on its left.
    pub formula: Span,
    /// Declaration clauses (`W_1 \in \mathbb{R}^{r \times 100}`, `A, B \in
    /// \mathbb{S}^n`, `r \in [1, 95]`, `\lambda > 0`), in order.
    pub decls: Vec<Span>,
    /// A lone name after "with respect to".
    pub wrt: Option<Span>,
}

/// A stretch of mathematics in a text.
#[derive(Clone, Copy, Debug)]
struct Segment {
    /// The mathematics, without delimiters.
    inner: Span,
    /// Where its closing delimiter ends.
    outer_end: usize,
    /// Whether it had delimiters.
    delimited: bool,
}

const ENVIRONMENTS: [&str; 11] = [
    "equation",
    "equation*",
    "align",
    "align*",
    "gather",
    "gather*",
    "multline",
    "multline*",
    "displaymath",
    "math",
    "eqnarray",
];

/// The delimited mathematics of a text, or the whole text if it has none.
fn segments(text: &str) -> Result<Vec<Segment>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let find = |from: usize, pat: &str| -> Option<usize> {
        let mut at = from;
        while let Some(p) = text[at..].find(pat) {
            let abs = at + p;
            // `\$` is not a delimiter.
            if pat == "$" && abs > 0 && bytes[abs - 1] == b'\\' {
                at = abs + 1;
                continue;
            }
            return Some(abs);
        }
        None
    };
    while i < bytes.len() {
        let (open_len, close): (usize, String) = match bytes[i] {
            b'\\' if i + 1 < bytes.len() => match bytes[i + 1] {
                b'[' => (2, "\\]".into()),
                b'(' => (2, "\\)".into()),
                b'$' | b'%' | b'\\' => {
                    i += 2;
                    continue;
                }
                _ if text[i..].starts_with("\\begin{") => {
                    let name_end = text[i + 7..].find('}').map(|p| i + 7 + p);
                    match name_end {
                        Some(e) if ENVIRONMENTS.contains(&&text[i + 7..e]) => {
                            (e + 1 - i, format!("\\end{{{}}}", &text[i + 7..e]))
                        }
                        _ => {
                            i += 1;
                            continue;
                        }
                    }
                }
                _ => {
                    i += 1;
                    continue;
                }
            },
            b'$' if bytes.get(i + 1) == Some(&b'$') => (2, "$$".into()),
            b'$' => (1, "$".into()),
            b'%' => {
                // A comment in prose: skip to the end of the line.
                i = text[i..].find('\n').map_or(bytes.len(), |p| i + p + 1);
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        let from = i + open_len;
        let Some(end) = find(from, &close) else {
            let opener = &text[i..from];
            return Err(syntax(
                Span::new(i, from),
                format!("unclosed `{opener}`"),
                format!("close the mathematics with `{close}`"),
            ));
        };
        out.push(Segment {
            inner: Span::new(from, end),
            outer_end: end + close.len(),
            delimited: true,
        });
        i = end + close.len();
    }
    if out.is_empty() {
        out.push(Segment {
            inner: Span::new(0, text.len()),
            outer_end: text.len(),
            delimited: false,
        });
    }
    Ok(out)
}

/// One clause of the mathematics.
#[derive(Debug)]
struct Piece {
    toks: Vec<Tok>,
    span: Span,
    /// Prose words before it (lower case), nearest last.
    words: Vec<String>,
    /// Separated from the previous clause by a comma only.
    comma: bool,
    /// Which segment it is in.
    segment: usize,
}

impl Piece {
    fn has_top_level(&self, f: impl Fn(&Tok) -> bool) -> bool {
        let mut depth = 0i32;
        for t in &self.toks {
            match t.k {
                K::Op('(' | '[' | '{') | K::SetOpen | K::Langle | K::Begin => depth += 1,
                K::Op(')' | ']' | '}') | K::SetClose | K::Rangle | K::End => depth -= 1,
                _ if depth == 0 && f(t) => return true,
                _ => {}
            }
        }
        false
    }

    fn is_decl(&self) -> bool {
        self.has_top_level(|t| {
            (t.k == K::Cmd && RELATIONS.contains(&t.text.as_str())) || matches!(t.k, K::Op('<' | '>'))
        })
    }

    /// `(A \in \mathbb{R}^{n \times n}, x \in \mathbb{R}^n)`: the tokens inside.
    fn parenthesized_decls(&self) -> Option<Vec<Tok>> {
        let (first, last) = (self.toks.first()?, self.toks.last()?);
        if first.k != K::Op('(') || last.k != K::Op(')') || self.toks.len() < 3 {
            return None;
        }
        let inner = &self.toks[1..self.toks.len() - 1];
        let mut depth = 0i32;
        let mut relation = false;
        for t in inner {
            match t.k {
                K::Op('(' | '[' | '{') | K::SetOpen | K::Langle | K::Begin => depth += 1,
                K::Op(')' | ']' | '}') | K::SetClose | K::Rangle | K::End => {
                    depth -= 1;
                    if depth < 0 {
                        // The first `(` closes early: `(a)(b)`.
                        return None;
                    }
                }
                K::Cmd if depth == 0 && RELATIONS.contains(&t.text.as_str()) => relation = true,
                _ => {}
            }
        }
        relation.then(|| inner.to_vec())
    }

    fn has_eq(&self) -> bool {
        self.has_top_level(|t| t.k == K::Eq)
    }

    /// A lone name, perhaps subscripted: `A`, `W_1`, `\mathbf{x}`, `W_{12}`.
    fn is_bare_name(&self) -> bool {
        self.toks.first().is_some_and(|t| t.k == K::Name)
            && self.toks[1..]
                .iter()
                .all(|t| matches!(t.k, K::Name | K::Num(_) | K::Op('_' | '{' | '}')))
            && (self.toks.len() == 1 || self.toks[1].k == K::Op('_'))
    }
}

/// Prose words of `text`, lower case.
fn prose_words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '.'))
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_end_matches('.').to_lowercase())
        .collect()
}

/// Split a segment's tokens into clauses at top-level separators.
/// With `unwrap`, a parenthesized list of declarations is split too (once).
fn split(toks: Vec<Tok>, mut words: Vec<String>, segment: usize, unwrap: bool, pieces: &mut Vec<Piece>) {
    let mut depth = 0i32;
    let mut cur: Vec<Tok> = Vec::new();
    let (mut gap_comma, mut gap_other) = (false, false);
    for t in toks {
        let boundary = t.k == K::Eof
            || (depth == 0 && matches!(t.k, K::Op(',' | ';' | '.' | '?') | K::Word | K::Sep | K::Newline));
        if boundary {
            if !cur.is_empty() {
                let span = cur[0].span.to(cur[cur.len() - 1].span);
                let piece = Piece {
                    toks: std::mem::take(&mut cur),
                    span,
                    words: std::mem::take(&mut words),
                    comma: gap_comma && !gap_other,
                    segment,
                };
                match piece.parenthesized_decls().filter(|_| unwrap) {
                    // `(A \in …, x \in …)`: the clauses inside.
                    Some(mut inner) => {
                        let end = inner.last().map_or(span.end, |t| t.span.end) as usize;
                        inner.push(Tok {
                            k: K::Eof,
                            text: String::new(),
                            span: Span::new(end, end),
                            side: Side::Free,
                        });
                        split(inner, piece.words, segment, false, pieces);
                    }
                    None => pieces.push(piece),
                }
                gap_comma = false;
                gap_other = false;
            }
            match t.k {
                K::Op(',') => gap_comma = true,
                K::Word => {
                    gap_other = true;
                    words.push(t.text);
                }
                K::Sep => {
                    gap_other = true;
                    words.extend(prose_words(&t.text));
                }
                _ => gap_other = true,
            }
            continue;
        }
        match t.k {
            K::Op('(' | '[' | '{') | K::SetOpen | K::Langle | K::Begin => depth += 1,
            K::Op(')' | ']' | '}') | K::SetClose | K::Rangle | K::End => depth = (depth - 1).max(0),
            K::Op('&') if depth == 0 => continue,
            _ => {}
        }
        cur.push(t);
    }
}

/// Find the formula and the declarations in a text: mathematics delimited in
/// prose (`$…$`, `$$…$$`, `\[…\]`, `\(…\)`, `\begin{equation}…`), or a whole
/// text of mathematics with trailing declarations ("…, where r \in [1, 95],
/// W_1 \in \mathbb{R}^{r \times 100} and …").
///
/// Errors: unclosed delimiters, text that cannot be tokenized, no formula, or
/// two formulas in one piece of mathematics.
pub fn extract_math(text: &str) -> Result<Extracted> {
    if text.len() > MAX_LEN {
        return Err(
            Error::new(ErrorKind::Limit, "the LaTeX text is too large").hint(format!(
                "the text has {} bytes; the limit is {MAX_LEN} bytes",
                text.len()
            )),
        );
    }
    let segs = segments(text)?;
    let mut pieces: Vec<Piece> = Vec::new();
    let mut prev_end = 0;
    for (si, seg) in segs.iter().enumerate() {
        let words = if seg.delimited {
            prose_words(&text[prev_end..seg.inner.start as usize])
        } else {
            Vec::new()
        };
        prev_end = seg.outer_end;
        let toks = lex(text, seg.inner)?;
        split(toks, words, si, true, &mut pieces);
    }
    classify(text, &pieces)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Formula,
    Decl,
    Consumed,
    Wrt,
}

fn classify(text: &str, pieces: &[Piece]) -> Result<Extracted> {
    let n = pieces.len();
    let mut role: Vec<Role> = pieces
        .iter()
        .map(|p| if p.is_decl() { Role::Decl } else { Role::Formula })
        .collect();
    let mut decl_start: Vec<u32> = pieces.iter().map(|p| p.span.start).collect();
    // `A, B \in …`: names listed before a declaration belong to it.
    for i in (0..n).rev() {
        if role[i] != Role::Decl {
            continue;
        }
        let mut j = i;
        while j > 0
            && pieces[j].comma
            && pieces[j - 1].segment == pieces[j].segment
            && role[j - 1] == Role::Formula
            && pieces[j - 1].is_bare_name()
        {
            role[j - 1] = Role::Consumed;
            decl_start[i] = pieces[j - 1].span.start;
            j -= 1;
        }
    }
    let mut wrt = None;
    for (i, p) in pieces.iter().enumerate() {
        let w: Vec<&str> = p.words.iter().map(String::as_str).collect();
        let after_wrt = w.ends_with(&["respect", "to"]) || w.ends_with(&["wrt"]) || w.ends_with(&["w.r.t"]);
        if role[i] == Role::Formula && p.is_bare_name() && after_wrt {
            role[i] = Role::Wrt;
            wrt.get_or_insert(p.span);
        }
    }
    let candidates: Vec<usize> = (0..n).filter(|&i| role[i] == Role::Formula).collect();
    let pick = candidates
        .iter()
        .copied()
        .find(|&i| pieces[i].has_eq())
        .or_else(|| candidates.iter().copied().find(|&i| !pieces[i].is_bare_name()))
        .or_else(|| candidates.first().copied());
    let Some(pick) = pick else {
        return Err(syntax(
            Span::new(0, text.len()),
            "no formula found",
            "write the function, then its declarations: \
             `L(x) := \\|A x - b\\|_2^2, where A \\in \\mathbb{R}^{m \\times n}`",
        ));
    };
    if let Some(&other) = candidates
        .iter()
        .find(|&&i| i != pick && pieces[i].segment == pieces[pick].segment)
    {
        let (a, b) = (pieces[pick].span, pieces[other].span);
        return Err(syntax(
            b,
            format!("two formulas: {} and {}", describe(text, a), describe(text, b)),
            "write one formula; put declarations after it with `\\in` (`x \\in \\mathbb{R}^n`), \
             separated by commas or `where`",
        )
        .label(a, Origin::Expr, "the formula read"));
    }
    let decls = (0..n)
        .filter(|&i| role[i] == Role::Decl)
        .map(|i| Span::new(decl_start[i] as usize, pieces[i].span.end as usize))
        .collect();
    Ok(Extracted {
        formula: pieces[pick].span,
        decls,
        wrt,
    })
}

/// Split the formula's tokens at the first top-level `=`/`:=` into the head
/// (`L(x)`) and the body; the body ends at a second `=`.
fn split_head(src: &str, toks: Vec<Tok>) -> Result<(Option<Vec<Tok>>, Vec<Tok>)> {
    let mut depth = 0i32;
    let mut eqs = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        match t.k {
            K::Op('(' | '[' | '{') | K::SetOpen | K::Langle | K::Begin => depth += 1,
            K::Op(')' | ']' | '}') | K::SetClose | K::Rangle | K::End => depth -= 1,
            K::Eq if depth == 0 => eqs.push(i),
            _ => {}
        }
    }
    let Some(&first) = eqs.first() else {
        return Ok((None, toks));
    };
    let eof = toks.len() - 1;
    let stop = eqs.get(1).copied().unwrap_or(eof);
    if first + 1 == stop {
        let eq = &toks[first];
        return Err(syntax(
            eq.span,
            format!("expected a formula after {}", describe(src, eq.span)),
            "write the function after `=`: `f(x) = x^\\top A x`",
        ));
    }
    let end = toks[stop].span.start as usize;
    let mut body: Vec<Tok> = toks[first + 1..stop].to_vec();
    let last_end = body.last().map_or(end, |t| t.span.end as usize);
    body.push(Tok {
        k: K::Eof,
        text: String::new(),
        span: Span::new(last_end, last_end),
        side: Side::Free,
    });
    let head = if first == 0 {
        None
    } else {
        let mut h = toks[..first].to_vec();
        let e = toks[first].span.start as usize;
        h.push(Tok {
            k: K::Eof,
            text: String::new(),
            span: Span::new(e, e),
            side: Side::Free,
        });
        Some(h)
    };
    Ok((head, body))
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// What an expression looks like, as far as the text tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum G {
    /// A scalar.
    S,
    /// A column vector.
    V,
    /// A row vector.
    R,
    /// A matrix.
    M,
    /// Unknown.
    U,
}

/// A parsed expression with what the parser knows about it.
struct Node {
    e: Expr,
    g: G,
    /// Contains an entry indexed by an active `\sum` index.
    ix: bool,
    /// Height of the tree (left-associative chains count once).
    d: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    Paren,
    Norm,
    Abs,
    Angle,
}

/// Binary operators of LaTeX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    /// `*`, `\ast`
    Mul,
    /// `\cdot`
    Cdot,
    /// `\times`
    Times,
    /// Juxtaposition.
    Juxt,
    /// `/`, `\div`
    Div,
    /// `\odot`, `\circ`
    Had,
    /// `\oslash`
    HadDiv,
}

impl Op {
    /// Left and right binding powers.
    fn bp(self) -> (u8, u8) {
        match self {
            Op::Add | Op::Sub => (10, 11),
            _ => (20, 21),
        }
    }
}

/// Binding power of unary minus: tighter than products, looser than scripts.
const PREFIX_BP: u8 = 30;

/// A superscript's meaning.
enum Script {
    Transpose,
    Inverse,
    InvTranspose,
    Hadamard(Node),
    Layer(String),
    Power(Node),
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
    kinds: &'a HashMap<String, DeclKind>,
    groups: Vec<Group>,
    /// Active `\sum` indices.
    indices: Vec<String>,
    /// Indices used so far.
    used: Vec<String>,
    /// Greek letters used as scalar coefficients.
    coeffs: Vec<(String, Span)>,
}

fn g_mul(a: G, b: G) -> G {
    match (a, b) {
        (G::S, y) => y,
        (x, G::S) => x,
        (G::R, G::V) => G::S,
        (G::M, G::V) => G::V,
        (G::R, G::M) => G::R,
        (G::M, G::M) => G::M,
        (G::V, G::R) => G::M,
        _ => G::U,
    }
}

fn g_add(a: G, b: G) -> G {
    match (a, b) {
        _ if a == b => a,
        (G::S | G::U, y) => y,
        (x, G::S | G::U) => x,
        _ => G::U,
    }
}

fn g_t(a: G) -> G {
    match a {
        G::V => G::R,
        G::R => G::V,
        x => x,
    }
}

fn g_call(name: &str, a: G) -> G {
    match name {
        "sum" | "norm1" | "norm2" | "tr" | "det" | "logdet" | "logsumexp" => G::S,
        "inv" | "eye" => G::M,
        "vector" => G::V,
        "diag" => match a {
            G::V | G::R => G::M,
            G::M => G::V,
            x => x,
        },
        _ => a,
    }
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, toks: Vec<Tok>, kinds: &'a HashMap<String, DeclKind>) -> Parser<'a> {
        Parser {
            src,
            toks,
            pos: 0,
            depth: 0,
            kinds,
            groups: Vec::new(),
            indices: Vec::new(),
            used: Vec::new(),
            coeffs: Vec::new(),
        }
    }

    fn peek(&self) -> &Tok {
        &self.toks[self.pos]
    }

    fn peek_k(&self) -> K {
        self.toks[self.pos].k
    }

    fn nth(&self, n: usize) -> &Tok {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Tok {
        let t = self.toks[self.pos].clone();
        if t.k != K::Eof {
            self.pos += 1;
        }
        t
    }

    fn quote(&self, span: Span) -> String {
        describe(self.src, span)
    }

    /// The source text of a span, shortened for a hint.
    fn snippet(&self, span: Span) -> String {
        let t = self.src.get(span.range()).unwrap_or("").trim();
        if t.chars().count() <= 24 {
            t.to_string()
        } else {
            "…".to_string()
        }
    }

    fn declared(&self, name: &str) -> bool {
        self.kinds.contains_key(name)
    }

    fn enter(&mut self, at: Span) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_NEST {
            return Err(Error::at(
                ErrorKind::Limit,
                at,
                format!("the formula nests too deep (more than {MAX_NEST} levels)"),
            )
            .hint("split it into simpler parts"));
        }
        Ok(())
    }

    fn mk(&self, kind: ExprKind, span: Span, g: G, ix: bool, d: u32) -> Result<Node> {
        if d > MAX_TREE_DEPTH {
            return Err(Error::at(
                ErrorKind::Limit,
                span,
                format!("the formula nests too deep (more than {MAX_TREE_DEPTH} levels)"),
            )
            .hint("split it into simpler parts"));
        }
        Ok(Node {
            e: Expr::new(kind, span),
            g,
            ix,
            d,
        })
    }

    fn leaf(&self, kind: ExprKind, span: Span, g: G) -> Node {
        Node {
            e: Expr::new(kind, span),
            g,
            ix: false,
            d: 1,
        }
    }

    fn g_name(&self, name: &str) -> G {
        match self.kinds.get(name) {
            Some(DeclKind::Scalar | DeclKind::Dim(_)) => G::S,
            Some(DeclKind::Vector(_)) => G::V,
            Some(DeclKind::Matrix(..) | DeclKind::Symmetric(_)) => G::M,
            None if name.starts_with(|c: char| c.is_ascii_uppercase()) => G::M,
            None => G::U,
        }
    }

    fn binary(&self, op: BinOp, a: Node, b: Node, g: G) -> Result<Node> {
        let span = a.e.span.to(b.e.span);
        let (ix, d) = (a.ix || b.ix, a.d.max(b.d + 1));
        self.mk(ExprKind::Binary(op, Box::new(a.e), Box::new(b.e)), span, g, ix, d)
    }

    fn neg(&self, a: Node, span: Span) -> Result<Node> {
        let (g, ix, d) = (a.g, a.ix, a.d + 1);
        self.mk(ExprKind::Neg(Box::new(a.e)), span, g, ix, d)
    }

    fn transpose(&self, a: Node, span: Span) -> Result<Node> {
        let (g, ix, d, full) = (g_t(a.g), a.ix, a.d + 1, a.e.span.to(span));
        self.mk(ExprKind::Transpose(Box::new(a.e)), full, g, ix, d)
    }

    fn call(&self, name: &str, name_span: Span, arg: Node, span: Span) -> Result<Node> {
        let (g, ix, d) = (g_call(name, arg.g), arg.ix, arg.d + 1);
        let kind = ExprKind::Call {
            name: name.to_string(),
            name_span,
            args: vec![arg.e],
        };
        self.mk(kind, span, g, ix, d)
    }

    /// `base^e`: elementwise for vectors and indexed entries.
    fn power(&self, base: Node, e: Node) -> Result<Node> {
        let elementwise = (base.ix && !self.indices.is_empty()) || matches!(base.g, G::V | G::R);
        let op = if elementwise { BinOp::EPow } else { BinOp::Pow };
        let g = base.g;
        self.binary(op, base, e, g)
    }

    /// Record Greek letters used as coefficients (`\lambda x`, `2\alpha`).
    fn note_coeff(&mut self, a: &Node, b: &Node) {
        if let ExprKind::Ident(n) = &a.e.kind {
            if is_greek_lower(n) && !self.declared(n) && !a.ix {
                self.coeffs.push((n.clone(), a.e.span));
            }
        }
        if let (ExprKind::Num(_), ExprKind::Ident(n)) = (&a.e.kind, &b.e.kind) {
            if is_greek_lower(n) && !self.declared(n) && !b.ix {
                self.coeffs.push((n.clone(), b.e.span));
            }
        }
    }

    /// Record a Greek denominator (`\frac{…}{\sigma^2}`).
    fn note_denominator(&mut self, b: &Node) {
        let base = match &b.e.kind {
            ExprKind::Binary(BinOp::Pow, x, _) => x,
            _ => &b.e,
        };
        if let ExprKind::Ident(n) = &base.kind {
            if is_greek_lower(n) && !self.declared(n) {
                self.coeffs.push((n.clone(), base.span));
            }
        }
    }

    // -- expressions ---------------------------------------------------------

    /// The whole formula.
    fn formula(&mut self) -> Result<Node> {
        if self.peek_k() == K::Eof {
            return Err(syntax(
                self.peek().span,
                "the formula is empty",
                "write a formula such as `\\|A x - b\\|_2^2`",
            ));
        }
        let n = self.expr(0, false)?;
        if self.peek_k() != K::Eof {
            return Err(self.trailing());
        }
        Ok(n)
    }

    fn infix(&self, t: &Tok) -> Option<Op> {
        Some(match t.k {
            K::Op('+') => Op::Add,
            K::Op('-') => Op::Sub,
            K::Op('*') => Op::Mul,
            K::Op('/') => Op::Div,
            K::Cmd => match t.text.as_str() {
                "cdot" | "bullet" => Op::Cdot,
                "times" => Op::Times,
                "ast" | "star" => Op::Mul,
                "odot" | "circ" => Op::Had,
                "oslash" => Op::HadDiv,
                "div" => Op::Div,
                _ => return None,
            },
            _ => return None,
        })
    }

    /// Whether `t` can start an operand (a juxtaposed factor).
    fn starts_operand(&self, t: &Tok) -> bool {
        match t.k {
            K::Num(_) | K::Name | K::Func | K::Ones | K::Set | K::Begin | K::Langle | K::SetOpen => true,
            K::Op('(' | '[' | '{') => true,
            K::DBar => match t.side {
                Side::Left => true,
                Side::Right => false,
                Side::Free => self.groups.last() != Some(&Group::Norm),
            },
            K::Bar => match t.side {
                Side::Left => true,
                Side::Right => false,
                Side::Free => self.groups.last() != Some(&Group::Abs),
            },
            K::Cmd => !RELATIONS.contains(&t.text.as_str()) && !INFIX.contains(&t.text.as_str()),
            _ => false,
        }
    }

    fn starts_function(&self, t: &Tok) -> bool {
        t.k == K::Func || (t.k == K::Cmd && t.text == "sum")
    }

    /// Precedence climbing. In `fn_arg` mode (the argument of `\sin x`), only
    /// juxtaposition continues, and not into another function.
    fn expr(&mut self, min_bp: u8, fn_arg: bool) -> Result<Node> {
        let at = self.peek().span;
        self.enter(at)?;
        let mut lhs = self.prefix(fn_arg)?;
        loop {
            let t = self.peek().clone();
            let op = match self.infix(&t) {
                Some(op) => op,
                None if self.starts_operand(&t) => Op::Juxt,
                None => break,
            };
            let (l, r) = op.bp();
            if l < min_bp {
                break;
            }
            if fn_arg && (op != Op::Juxt || self.starts_function(&t)) {
                break;
            }
            if op != Op::Juxt {
                self.bump();
                if self.peek_k() == K::Eof {
                    return Err(syntax(
                        t.span,
                        format!("expected an expression after {}", self.quote(t.span)),
                        format!(
                            "the formula ends too early: complete it or remove the last {}",
                            self.quote(t.span)
                        ),
                    ));
                }
            }
            let rhs = self.expr(r, fn_arg)?;
            lhs = self.combine(op, lhs, rhs)?;
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn combine(&mut self, op: Op, a: Node, b: Node) -> Result<Node> {
        let in_sum = !self.indices.is_empty();
        match op {
            Op::Add | Op::Sub => {
                let g = g_add(a.g, b.g);
                let bop = if op == Op::Add { BinOp::Add } else { BinOp::Sub };
                self.binary(bop, a, b, g)
            }
            Op::Mul | Op::Cdot | Op::Times | Op::Juxt => {
                if in_sum && a.ix && b.ix {
                    let g = g_add(a.g, b.g);
                    return self.binary(BinOp::EMul, a, b, g);
                }
                if a.g == G::V && b.g == G::V {
                    let (x, y) = (self.snippet(a.e.span), self.snippet(b.e.span));
                    let span = a.e.span.to(b.e.span);
                    match op {
                        Op::Cdot => {
                            let at = a.e.span;
                            let at = self.transpose(a, at)?;
                            return self.binary(BinOp::Mul, at, b, G::S);
                        }
                        Op::Times => {
                            return Err(syntax(
                                span,
                                format!("`{x} \\times {y}` of two vectors is a cross product, which is not supported"),
                                format!(
                                "for the inner product write `{x}^\\top {y}`, for the outer product `{x} {y}^\\top`"
                            ),
                            ))
                        }
                        _ => {
                            let what = if op == Op::Juxt { "juxtaposition" } else { "product" };
                            return Err(syntax(
                                span,
                                format!("{what} of two vectors `{x} {y}` is ambiguous"),
                                format!("did you mean `{x}^T {y}` (a number) or `{x} {y}^T` (a matrix)?"),
                            ));
                        }
                    }
                }
                self.note_coeff(&a, &b);
                let g = g_mul(a.g, b.g);
                self.binary(BinOp::Mul, a, b, g)
            }
            Op::Div => self.divide(a, b),
            Op::Had => {
                let g = g_add(a.g, b.g);
                self.binary(BinOp::EMul, a, b, g)
            }
            Op::HadDiv => {
                let g = g_add(a.g, b.g);
                self.binary(BinOp::EDiv, a, b, g)
            }
        }
    }

    /// `a / b`: elementwise when `b` is a vector, a matrix or an indexed entry.
    fn divide(&mut self, a: Node, b: Node) -> Result<Node> {
        let elementwise = (b.ix && !self.indices.is_empty()) || matches!(b.g, G::V | G::R | G::M);
        if elementwise {
            let g = g_add(a.g, b.g);
            self.binary(BinOp::EDiv, a, b, g)
        } else {
            self.note_denominator(&b);
            if let (ExprKind::Ident(n), ExprKind::Num(_)) = (&a.e.kind, &b.e.kind) {
                // `\frac{\lambda}{2}`: a coefficient.
                if is_greek_lower(n) && !self.declared(n) && !a.ix {
                    self.coeffs.push((n.clone(), a.e.span));
                }
            }
            let g = a.g;
            self.binary(BinOp::Div, a, b, g)
        }
    }

    fn prefix(&mut self, fn_arg: bool) -> Result<Node> {
        let t = self.peek().clone();
        match t.k {
            K::Op('-') => {
                self.bump();
                let n = self.expr(PREFIX_BP, fn_arg)?;
                let span = t.span.to(n.e.span);
                self.neg(n, span)
            }
            K::Op('+') => {
                self.bump();
                let mut n = self.expr(PREFIX_BP, fn_arg)?;
                n.e.span = t.span.to(n.e.span);
                Ok(n)
            }
            _ => {
                let a = self.atom()?;
                self.postfix(a)
            }
        }
    }

    fn postfix(&mut self, mut n: Node) -> Result<Node> {
        loop {
            match self.peek_k() {
                K::Op('^') => {
                    let caret = self.bump();
                    let (s, span) = self.script(caret.span, false)?;
                    n = self.apply_sup(n, s, span)?;
                }
                K::Op('\'') => {
                    let t = self.bump();
                    n = self.transpose(n, t.span)?;
                }
                K::Op('_') => {
                    let us = self.bump();
                    let (items, span) = self.sub_items(us.span)?;
                    if self.is_index(&items, span)? {
                        n.ix = true;
                        n.e.span = n.e.span.to(span);
                    } else if let ExprKind::Ident(name) = &n.e.kind {
                        // `{\bf W}_1`: a subscript on a grouped name.
                        let name = self.suffixed(name, &items, span)?;
                        let g = self.g_name(&name);
                        n = self.leaf(ExprKind::Ident(name), n.e.span.to(span), g);
                    } else {
                        return Err(syntax(
                            us.span.to(span),
                            format!("cannot read the subscript {} here", self.quote(span)),
                            "subscripts are read on names (`W_1` is `W1`) and as the index of a `\\sum` \
                             (`\\sum_i (A x)_i`)",
                        ));
                    }
                }
                _ => return Ok(n),
            }
        }
    }

    /// The tokens of a subscript (after `_`), without braces, and its span.
    fn sub_items(&mut self, us: Span) -> Result<(Vec<Tok>, Span)> {
        let t = self.peek().clone();
        match t.k {
            K::Op('{') => {
                let close = self.matching(self.pos)?;
                let items = self.toks[self.pos + 1..close].to_vec();
                let span = t.span.to(self.toks[close].span);
                self.pos = close + 1;
                Ok((items, span))
            }
            K::Eof | K::Op(')' | ']' | '}' | '^' | '_' | ',') => {
                Err(syntax(us, "`_` needs a subscript", "write `W_1` or `x_{new}`"))
            }
            _ => {
                self.bump();
                Ok((vec![t.clone()], t.span))
            }
        }
    }

    /// The index of the `}` matching the `{` at `open`.
    fn matching(&self, open: usize) -> Result<usize> {
        let mut depth = 0usize;
        for i in open..self.toks.len() {
            match self.toks[i].k {
                K::Op('{') => depth += 1,
                K::Op('}') => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(i);
                    }
                }
                K::Eof => break,
                _ => {}
            }
        }
        Err(syntax(self.toks[open].span, "unclosed `{`", "add the matching `}`"))
    }

    /// Whether subscript items are `\sum` indices (`x_i`, `X_{ij}`, `X_{i,j}`).
    fn is_index(&mut self, items: &[Tok], span: Span) -> Result<bool> {
        if self.indices.is_empty() {
            return Ok(false);
        }
        let names: Vec<&Tok> = items.iter().filter(|t| t.k != K::Op(',')).collect();
        let hits = names
            .iter()
            .filter(|t| t.k == K::Name && self.indices.contains(&t.text))
            .count();
        if hits == 0 {
            return Ok(false);
        }
        if hits != names.len() {
            return Err(syntax(
                span,
                format!("cannot read the subscript {} in a sum", self.quote(span)),
                "`\\sum_i` sums a vector's entries: write `\\sum_i x_i`, or `\\sum_{i,j} X_{ij}` for a matrix",
            ));
        }
        for t in names {
            self.used.push(t.text.clone());
        }
        Ok(true)
    }

    /// A name with a subscript: `W_1` → `W1`, `x_{new}` → `x_new`.
    fn suffixed(&self, base: &str, items: &[Tok], span: Span) -> Result<String> {
        let bad = || {
            syntax(
                span,
                format!("cannot read the subscript {} as part of a name", self.quote(span)),
                "subscripts of names are letters and digits: `W_1` is `W1`, `x_{new}` is `x_new`",
            )
        };
        let mut digits = true;
        let mut text = String::new();
        for t in items {
            match t.k {
                K::Num(_) if !t.text.is_empty() && t.text.bytes().all(|b| b.is_ascii_digit()) => text.push_str(&t.text),
                K::Name => {
                    digits = false;
                    text.push_str(&t.text);
                }
                _ => return Err(bad()),
            }
        }
        if text.is_empty() {
            return Err(bad());
        }
        Ok(if digits {
            format!("{base}{text}")
        } else {
            format!("{base}_{text}")
        })
    }

    /// The error for a token that cannot start an operand.
    fn expected(&self) -> Error {
        let t = self.peek();
        let found = self.quote(t.span);
        if self.pos == 0 {
            return syntax(
                t.span,
                format!("expected an expression, found {found}"),
                format!("a formula cannot start with {found}"),
            );
        }
        let prev = self.toks[self.pos - 1].span;
        if t.k == K::Eof {
            return syntax(
                prev,
                format!("expected an expression after {}", self.quote(prev)),
                "the formula ends too early",
            );
        }
        syntax(
            t.span,
            format!("expected an expression after {}, found {found}", self.quote(prev)),
            format!("{found} cannot start an expression"),
        )
    }

    fn atom(&mut self) -> Result<Node> {
        let t = self.peek().clone();
        match t.k {
            K::Num(v) => {
                self.bump();
                Ok(self.leaf(ExprKind::Num(v), t.span, G::S))
            }
            K::Name => self.name_atom(),
            K::Func => self.function(),
            K::Ones => {
                self.bump();
                let mut span = t.span;
                if self.peek_k() == K::Op('_') {
                    let us = self.bump();
                    span = span.to(self.sub_items(us.span)?.1);
                }
                let v: f64 = if t.text == "0" { 0.0 } else { 1.0 };
                let one = self.leaf(ExprKind::Num(v), t.span, G::S);
                self.call("vector", t.span, one, span)
            }
            K::Op('(' | '[' | '{') | K::SetOpen => self.group(),
            K::DBar => self.norm(),
            K::Bar => self.abs(),
            K::Langle => self.inner(),
            K::Begin => self.matrix(),
            K::Cmd => self.command_atom(),
            K::Set => Err(syntax(
                t.span,
                format!("{} belongs in a declaration", self.quote(t.span)),
                "declare after the formula: `…, where x \\in \\mathbb{R}^n, A \\in \\mathbb{R}^{m \\times n}`",
            )),
            K::Op(')' | ']' | '}') | K::SetClose | K::Rangle if self.pos == 0 => Err(syntax(
                t.span,
                format!("unexpected {}", self.quote(t.span)),
                "there is no matching opening delimiter",
            )),
            _ => Err(self.expected()),
        }
    }

    fn name_atom(&mut self) -> Result<Node> {
        let t = self.bump();
        let mut name = t.text.clone();
        let mut span = t.span;
        let mut ix = false;
        if self.peek_k() == K::Op('_') {
            let us = self.bump();
            let (items, sub_span) = self.sub_items(us.span)?;
            span = span.to(sub_span);
            if name == "I" && !self.declared("I") {
                let size = match items.as_slice() {
                    [s] if matches!(s.k, K::Num(_)) && s.text.bytes().all(|b| b.is_ascii_digit()) => {
                        self.leaf(ExprKind::Num(s.text.parse::<f64>().unwrap_or(0.0)), s.span, G::S)
                    }
                    [s] if s.k == K::Name => self.leaf(ExprKind::Ident(s.text.clone()), s.span, G::S),
                    _ => {
                        return Err(syntax(
                            sub_span,
                            format!("cannot read the size {} of the identity", self.quote(sub_span)),
                            "write `I_n` or `I_{100}`",
                        ))
                    }
                };
                return self.call("eye", t.span, size, span);
            }
            if self.is_index(&items, sub_span)? {
                ix = true;
            } else {
                name = self.suffixed(&name, &items, sub_span)?;
            }
        }
        if !ix && !self.declared(&name) {
            if name == "I" {
                return Err(syntax(
                    span,
                    "the identity matrix `I` needs a size",
                    "write `I_n` for the n×n identity (or declare `I` if it is a variable)",
                ));
            }
            if name == "e" && span == t.span && self.peek_k() == K::Op('^') {
                let caret = self.bump();
                let (s, sspan) = self.script(caret.span, true)?;
                let Script::Power(arg) = s else {
                    return Err(syntax(
                        sspan,
                        "cannot read this power of `e`",
                        "write `e^{x}` or `\\exp(x)`",
                    ));
                };
                return self.call("exp", t.span, arg, span.to(sspan));
            }
            if name == "sigma" && matches!(self.peek_k(), K::Op('(')) {
                let arg = self.group()?;
                let end = arg.e.span;
                return self.call("sigmoid", t.span, arg, span.to(end));
            }
        }
        let g = self.g_name(&name);
        let mut n = self.leaf(ExprKind::Ident(name), span, g);
        n.ix = ix;
        Ok(n)
    }

    /// After `^`: what the superscript means. With `general`, only a power.
    fn script(&mut self, caret: Span, general: bool) -> Result<(Script, Span)> {
        let t = self.peek().clone();
        if t.k == K::Op('{') {
            let close = self.matching(self.pos)?;
            let span = t.span.to(self.toks[close].span);
            if close == self.pos + 1 {
                return Err(syntax(
                    span,
                    "empty superscript",
                    "write `x^{2}`, `x^{-1}` or `x^\\top`",
                ));
            }
            if !general {
                if let Some(s) = self.special(&self.toks[self.pos + 1..close]) {
                    self.pos = close + 1;
                    return Ok((s, span));
                }
                let first = &self.toks[self.pos + 1];
                if first.k == K::Cmd && matches!(first.text.as_str(), "circ" | "odot") {
                    self.pos += 2;
                    self.groups.push(Group::Paren);
                    let e = self.expr(0, false)?;
                    self.groups.pop();
                    self.expect_close(&t, K::Op('}'))?;
                    return Ok((Script::Hadamard(e), span));
                }
            }
            let e = self.group()?;
            return Ok((Script::Power(e), span));
        }
        if !general {
            if let Some(s) = self.special(std::slice::from_ref(&t)) {
                self.bump();
                return Ok((s, t.span));
            }
            if t.k == K::Op('-') && matches!(self.nth(1).k, K::Num(v) if v == 1.0) {
                self.bump();
                let one = self.bump();
                return Ok((Script::Inverse, t.span.to(one.span)));
            }
        }
        match t.k {
            K::Num(v) => {
                self.bump();
                Ok((Script::Power(self.leaf(ExprKind::Num(v), t.span, G::S)), t.span))
            }
            K::Name => {
                self.bump();
                let g = self.g_name(&t.text);
                Ok((
                    Script::Power(self.leaf(ExprKind::Ident(t.text.clone()), t.span, g)),
                    t.span,
                ))
            }
            K::Cmd if matches!(t.text.as_str(), "frac" | "dfrac" | "tfrac" | "sqrt") => {
                let n = self.command_atom()?;
                let span = n.e.span;
                Ok((Script::Power(n), span))
            }
            K::Eof => Err(syntax(
                caret,
                "`^` needs a superscript",
                "write `x^2`, `x^{-1}` or `x^\\top`",
            )),
            _ => Err(syntax(
                t.span,
                format!("cannot read the superscript {}", self.quote(t.span)),
                "superscripts are powers (`x^2`, `x^{n}`), `^{-1}` (inverse), `^\\top` or `^T` (transpose); \
                 put longer ones in braces",
            )),
        }
    }

    /// Transpose, inverse, inverse transpose and `^{(1)}` superscripts.
    fn special(&self, toks: &[Tok]) -> Option<Script> {
        let sig: Vec<String> = toks
            .iter()
            .map(|t| match t.k {
                K::Name | K::Cmd => t.text.clone(),
                K::Op(c) => c.to_string(),
                K::Num(_) if !t.text.is_empty() => t.text.clone(),
                _ => "?".to_string(),
            })
            .collect();
        let sig: Vec<&str> = sig.iter().map(String::as_str).collect();
        let is_t = |s: &str| matches!(s, "T" | "top" | "intercal" | "'" | "prime");
        Some(match sig.as_slice() {
            [s] if is_t(s) => Script::Transpose,
            ["-", "1"] => Script::Inverse,
            ["-", s] if is_t(s) => Script::InvTranspose,
            ["(", n, ")"] | ["[", n, "]"] if n.bytes().all(|b| b.is_ascii_digit()) => Script::Layer(n.to_string()),
            _ => return None,
        })
    }

    fn apply_sup(&mut self, n: Node, s: Script, span: Span) -> Result<Node> {
        match s {
            Script::Transpose => self.transpose(n, span),
            Script::Inverse => {
                if n.g == G::M {
                    let full = n.e.span.to(span);
                    self.call("inv", span, n, full)
                } else {
                    let one = self.leaf(ExprKind::Num(1.0), span, G::S);
                    let m1 = self.neg(one, span)?;
                    self.power(n, m1)
                }
            }
            Script::InvTranspose => {
                let full = n.e.span.to(span);
                let inv = self.call("inv", span, n, full)?;
                self.transpose(inv, span)
            }
            Script::Hadamard(e) => {
                let g = n.g;
                self.binary(BinOp::EPow, n, e, g)
            }
            Script::Layer(k) => match &n.e.kind {
                ExprKind::Ident(name) => {
                    let name = format!("{name}{k}");
                    let g = self.g_name(&name);
                    let mut m = self.leaf(ExprKind::Ident(name), n.e.span.to(span), g);
                    m.ix = n.ix;
                    Ok(m)
                }
                _ => Err(syntax(
                    span,
                    format!("cannot read the superscript {}", self.quote(span)),
                    "`W^{(1)}` names a layer's weights (`W1`); it goes on a name",
                )),
            },
            Script::Power(e) => self.power(n, e),
        }
    }

    /// `( … )`, `[ … ]`, `{ … }`, `\{ … \}`.
    fn group(&mut self) -> Result<Node> {
        let open = self.bump();
        let close = match open.k {
            K::Op('(') => K::Op(')'),
            K::Op('[') => K::Op(']'),
            K::Op('{') => K::Op('}'),
            _ => K::SetClose,
        };
        if self.peek_k() == close {
            let span = open.span.to(self.peek().span);
            return Err(syntax(
                span,
                "empty parentheses",
                "put an expression inside, e.g. `(x + 1)`",
            ));
        }
        self.groups.push(Group::Paren);
        let mut n = self.expr(0, false)?;
        self.groups.pop();
        let c = self.expect_close(&open, close)?;
        n.e.span = open.span.to(c.span);
        Ok(n)
    }

    /// Consume the closing delimiter `close` of `open`, or fail.
    fn expect_close(&mut self, open: &Tok, close: K) -> Result<Tok> {
        if self.peek_k() == close {
            return Ok(self.bump());
        }
        let want = match close {
            K::Op(c) => c.to_string(),
            K::SetClose => "\\}".to_string(),
            K::DBar => "\\|".to_string(),
            K::Bar => "|".to_string(),
            K::Rangle => "\\rangle".to_string(),
            _ => "the closing delimiter".to_string(),
        };
        let want = if open.side == Side::Left && close != K::Op('}') {
            format!("\\right{want}")
        } else {
            want
        };
        let o = self.quote(open.span);
        let t = self.peek().clone();
        if t.k == K::Eof {
            return Err(syntax(
                open.span,
                format!("unclosed {o}"),
                format!("add `{want}` to close it"),
            ));
        }
        let found = self.quote(t.span);
        Err(syntax(
            t.span,
            format!("expected `{want}` or an operator, found {found}"),
            format!("close {o} with `{want}`, or put an operator before {found}"),
        )
        .label(open.span, Origin::Expr, format!("this {o} is not closed")))
    }

    /// `\| e \|` with `_2`, `_F`, `_1` and a power, in either order.
    fn norm(&mut self) -> Result<Node> {
        let open = self.bump();
        if self.peek_k() == K::DBar {
            let span = open.span.to(self.peek().span);
            return Err(syntax(span, "empty norm", "write `\\|x\\|`"));
        }
        self.groups.push(Group::Norm);
        let inner = self.expr(0, false)?;
        self.groups.pop();
        let close = self.expect_close(&open, K::DBar)?;
        self.norm_tail(open.span, inner, close.span)
    }

    /// The subscript and superscript after a norm's closing bars.
    fn norm_tail(&mut self, open: Span, inner: Node, close: Span) -> Result<Node> {
        let mut span = open.to(close);
        let mut sub: Option<(Vec<Tok>, Span)> = None;
        let mut sup: Option<(Script, Span)> = None;
        loop {
            match self.peek_k() {
                K::Op('_') if sub.is_none() => {
                    let us = self.bump();
                    let (items, s) = self.sub_items(us.span)?;
                    span = span.to(s);
                    sub = Some((items, us.span.to(s)));
                }
                K::Op('^') if sup.is_none() => {
                    let caret = self.bump();
                    sup = Some(self.script(caret.span, false)?);
                }
                _ => break,
            }
        }
        let name = match &sub {
            None => "norm2",
            Some((items, s)) => {
                let text: String = items.iter().map(|t| t.text.as_str()).collect();
                match text.as_str() {
                    "2" if inner.g == G::M => {
                        return Err(syntax(
                            *s,
                            "`\\|X\\|_2` of a matrix is its spectral norm, which matcalc does not support",
                            "for the Frobenius norm write `\\|X\\|_F`",
                        ))
                    }
                    "2" | "F" | "f" | "fro" | "Fro" | "Frob" | "frob" => "norm2",
                    "1" => "norm1",
                    _ => {
                        return Err(syntax(
                            *s,
                            format!("the norm {} is not supported", self.quote(*s)),
                            "matcalc knows `\\|x\\|_2` (Euclidean), `\\|X\\|_F` (Frobenius) and `\\|x\\|_1`",
                        ))
                    }
                }
            }
        };
        let n = self.call(name, open, inner, span)?;
        match sup {
            Some((s, sspan)) => self.apply_sup(n, s, sspan),
            None => Ok(n),
        }
    }

    /// `| e |`: `abs`, or `det` of a matrix.
    fn abs(&mut self) -> Result<Node> {
        let open = self.bump();
        if self.peek_k() == K::Bar {
            let span = open.span.to(self.peek().span);
            return Err(syntax(span, "empty `| |`", "write `|x|`"));
        }
        self.groups.push(Group::Abs);
        let inner = self.expr(0, false)?;
        self.groups.pop();
        let close = self.expect_close(&open, K::Bar)?;
        let name = if inner.g == G::M { "det" } else { "abs" };
        self.call(name, open.span, inner, open.span.to(close.span))
    }

    /// `\langle a, b \rangle`.
    fn inner(&mut self) -> Result<Node> {
        let open = self.bump();
        self.groups.push(Group::Angle);
        let a = self.expr(0, false)?;
        if self.peek_k() != K::Op(',') {
            let t = self.peek().clone();
            self.groups.pop();
            return Err(syntax(
                t.span,
                format!("expected `,` in the inner product, found {}", self.quote(t.span)),
                "write `\\langle x, y \\rangle`",
            ));
        }
        self.bump();
        let b = self.expr(0, false)?;
        self.groups.pop();
        let close = self.expect_close(&open, K::Rangle)?;
        let span = open.span.to(close.span);
        let matrices = a.g == G::M || b.g == G::M;
        let at_span = a.e.span;
        let at = self.transpose(a, at_span)?;
        let g = g_mul(at.g, b.g);
        let mut prod = self.binary(BinOp::Mul, at, b, g)?;
        if matrices {
            return self.call("tr", open.span, prod, span);
        }
        prod.e.span = span;
        Ok(prod)
    }

    /// `\begin{bmatrix} 1 & 2 \\ 3 & 4 \end{bmatrix}`: numbers only.
    fn matrix(&mut self) -> Result<Node> {
        let begin = self.bump();
        let env = begin.text.clone();
        if !matches!(
            env.as_str(),
            "bmatrix" | "pmatrix" | "matrix" | "Bmatrix" | "smallmatrix"
        ) {
            return Err(syntax(
                begin.span,
                format!("the environment `{env}` is not supported in a formula"),
                "matrix literals are written `\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}`",
            ));
        }
        let mut rows: Vec<Vec<Expr>> = Vec::new();
        let mut row: Vec<Expr> = Vec::new();
        loop {
            let t = self.peek().clone();
            match t.k {
                K::End => {
                    self.bump();
                    if t.text != env {
                        return Err(syntax(
                            t.span,
                            format!("`\\begin{{{env}}}` is closed by `\\end{{{}}}`", t.text),
                            format!("write `\\end{{{env}}}`"),
                        ));
                    }
                    if !row.is_empty() {
                        rows.push(std::mem::take(&mut row));
                    }
                    break;
                }
                K::Newline => {
                    self.bump();
                    rows.push(std::mem::take(&mut row));
                }
                K::Op('&') if !row.is_empty() => {
                    self.bump();
                }
                K::Eof => {
                    return Err(syntax(
                        begin.span,
                        format!("unclosed `\\begin{{{env}}}`"),
                        format!("add `\\end{{{env}}}`"),
                    ))
                }
                _ => {
                    let sign = match t.k {
                        K::Op('-') => Some(self.bump()),
                        K::Op('+') => {
                            self.bump();
                            None
                        }
                        _ => None,
                    };
                    let num = self.peek().clone();
                    let K::Num(v) = num.k else {
                        return Err(syntax(
                            num.span,
                            format!("matrix entries must be numbers, found {}", self.quote(num.span)),
                            "only numbers can appear in a matrix literal; combine matrices with operators outside it",
                        ));
                    };
                    self.bump();
                    let (v, span) = match sign {
                        Some(s) => (-v, s.span.to(num.span)),
                        None => (v, num.span),
                    };
                    row.push(Expr::new(ExprKind::Num(v), span));
                    if !matches!(self.peek_k(), K::Op('&') | K::Newline | K::End | K::Eof) {
                        let t = self.peek().clone();
                        return Err(syntax(
                            t.span,
                            format!("expected `&` or `\\\\` in the matrix, found {}", self.quote(t.span)),
                            "separate entries with `&` and rows with `\\\\`",
                        ));
                    }
                }
            }
        }
        let span = begin.span.to(self.toks[self.pos - 1].span);
        if rows.is_empty() {
            return Err(syntax(span, "empty matrix", "write at least one entry"));
        }
        let cols = rows[0].len();
        if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != cols) {
            return Err(syntax(
                span,
                format!("row {} has {} entries but row 1 has {cols}", i + 1, r.len()),
                "every row of a matrix needs the same number of entries",
            ));
        }
        let g = if cols == 1 { G::V } else { G::M };
        Ok(self.leaf(ExprKind::Matrix(rows), span, g))
    }

    /// A function: `\sin x`, `\sin(x)`, `\log\det X`, `\sin^2 x`, `\operatorname{tr}(X)`.
    fn function(&mut self) -> Result<Node> {
        let f = self.bump();
        let mut name = f.text.clone();
        let mut power: Option<Node> = None;
        if self.peek_k() == K::Op('^') {
            let caret = self.bump();
            let (s, sspan) = self.script(caret.span, false)?;
            match s {
                Script::Power(p) => power = Some(p),
                Script::Inverse if matches!(name.as_str(), "sin" | "cos" | "tan") => name = format!("a{name}"),
                _ => {
                    return Err(syntax(
                        sspan,
                        format!("cannot read {} on a function", self.quote(sspan)),
                        "a power goes on the function (`\\sin^2 x`) or on its value (`\\sin(x)^\\top`)",
                    ))
                }
            }
        }
        if self.peek_k() == K::Op('_') {
            let t = self.peek().clone();
            return Err(syntax(
                t.span,
                format!("{} takes no subscript", self.quote(f.span)),
                "only natural logarithms are supported: `\\log x` is ln x",
            ));
        }
        let next = self.peek().clone();
        let arg = match next.k {
            K::Op('(' | '[' | '{') => self.group()?,
            K::Op('-' | '+') => self.expr(20, true)?,
            _ if self.starts_operand(&next) => self.expr(20, true)?,
            _ => {
                return Err(syntax(
                    f.span,
                    format!("{} needs an argument", self.quote(f.span)),
                    format!("write `{0}(x)` or `{0} x`", self.snippet(f.span)),
                ))
            }
        };
        let span = f.span.to(arg.e.span);
        let call = self.call(&name, f.span, arg, span)?;
        match power {
            Some(p) => self.power(call, p),
            None => Ok(call),
        }
    }

    /// Commands that are atoms: `\frac`, `\sqrt`, `\sum`, `\norm`.
    fn command_atom(&mut self) -> Result<Node> {
        let t = self.peek().clone();
        match t.text.as_str() {
            "frac" | "dfrac" | "tfrac" | "cfrac" => {
                self.bump();
                let num = self.tex_arg(&t)?;
                let den = self.tex_arg(&t)?;
                let span = t.span.to(den.e.span);
                let mut n = self.divide(num, den)?;
                n.e.span = span;
                Ok(n)
            }
            "sqrt" => {
                self.bump();
                let index = if self.peek_k() == K::Op('[') {
                    let open = self.bump();
                    self.groups.push(Group::Paren);
                    let k = self.expr(0, false)?;
                    self.groups.pop();
                    self.expect_close(&open, K::Op(']'))?;
                    Some(k)
                } else {
                    None
                };
                let arg = self.tex_arg(&t)?;
                let span = t.span.to(arg.e.span);
                match index {
                    None => self.call("sqrt", t.span, arg, span),
                    Some(k) => {
                        let one = self.leaf(ExprKind::Num(1.0), k.e.span, G::S);
                        let e = self.binary(BinOp::Div, one, k, G::S)?;
                        let mut n = self.power(arg, e)?;
                        n.e.span = span;
                        Ok(n)
                    }
                }
            }
            "sum" => self.sum(),
            "norm" => {
                self.bump();
                let inner = self.tex_arg(&t)?;
                let end = inner.e.span;
                self.norm_tail(t.span, inner, end)
            }
            _ => Err(self.unsupported(&t)),
        }
    }

    /// The argument of `\frac`, `\sqrt`: a braced group or one token.
    fn tex_arg(&mut self, cmd: &Tok) -> Result<Node> {
        let t = self.peek().clone();
        match t.k {
            K::Op('{') => self.group(),
            K::Num(v) => {
                // `\frac12` is `\frac{1}{2}`: take one digit.
                if t.text.len() > 1 && t.text.bytes().all(|b| b.is_ascii_digit()) {
                    let first = &t.text[..1];
                    let rest = t.text[1..].to_string();
                    let s = t.span.start as usize;
                    let tok = &mut self.toks[self.pos];
                    tok.k = K::Num(rest.parse().unwrap_or(0.0));
                    tok.text = rest;
                    tok.span = Span::new(s + 1, t.span.end as usize);
                    let v: f64 = first.parse().unwrap_or(0.0);
                    return Ok(self.leaf(ExprKind::Num(v), Span::new(s, s + 1), G::S));
                }
                self.bump();
                Ok(self.leaf(ExprKind::Num(v), t.span, G::S))
            }
            K::Name => {
                self.bump();
                let g = self.g_name(&t.text);
                Ok(self.leaf(ExprKind::Ident(t.text.clone()), t.span, g))
            }
            K::Ones => self.atom(),
            _ => Err(syntax(
                if t.k == K::Eof { cmd.span } else { t.span },
                format!("{} needs its argument in braces", self.quote(cmd.span)),
                "write `\\frac{a}{b}` or `\\sqrt{x}`",
            )),
        }
    }

    /// `\sum_i body`, `\sum_{i=1}^n body`, `\sum_{i,j} body`.
    fn sum(&mut self) -> Result<Node> {
        let t = self.bump();
        let mut idx: Option<Vec<String>> = None;
        let mut sup = false;
        loop {
            match self.peek_k() {
                K::Op('_') if idx.is_none() => {
                    let us = self.bump();
                    let (items, span) = self.sub_items(us.span)?;
                    let names: Vec<String> = items
                        .iter()
                        .take_while(|t| t.k != K::Eq && !(t.k == K::Cmd && t.text == "in"))
                        .filter(|t| t.k == K::Name)
                        .map(|t| t.text.clone())
                        .collect();
                    if names.is_empty() {
                        return Err(syntax(span, "cannot read the index of the sum", "write `\\sum_i x_i`"));
                    }
                    idx = Some(names);
                }
                K::Op('^') if !sup => {
                    self.bump();
                    sup = true;
                    if self.peek_k() == K::Op('{') {
                        self.pos = self.matching(self.pos)? + 1;
                    } else {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
        let Some(names) = idx else {
            return Err(syntax(
                t.span,
                "`\\sum` needs its index",
                "write `\\sum_i x_i` (the sum of a vector's entries); `\\sum_{i,j} X_{ij}` sums a matrix",
            ));
        };
        if self.peek_k() == K::Eof {
            return Err(syntax(t.span, "`\\sum` needs a summand", "write `\\sum_i x_i`"));
        }
        let base = self.indices.len();
        let mark = self.used.len();
        self.indices.extend(names.iter().cloned());
        let body = self.expr(20, false);
        self.indices.truncate(base);
        let body = body?;
        if !self.used[mark..].iter().any(|u| names.contains(u)) {
            let i = &names[0];
            return Err(syntax(
                body.e.span,
                format!("the summand does not use the index `{i}`"),
                format!("`\\sum_{i}` sums a vector's entries: write them with the index, as in `\\sum_{i} x_{i}^2`"),
            ));
        }
        let span = t.span.to(body.e.span);
        let mut n = self.call("sum", t.span, body, span)?;
        n.ix = false;
        n.g = G::S;
        Ok(n)
    }

    /// The error for a command that is not an atom.
    fn unsupported(&self, t: &Tok) -> Error {
        let name = t.text.as_str();
        let q = format!("`\\{name}`");
        let (msg, hint): (String, String) = match name {
            "nabla" | "partial" => (
                format!("{q}: write the function, not its derivative"),
                "matcalc computes the derivative: write only the function, and name the variable with --wrt \
                 or as `f(x) = …`"
                    .into(),
            ),
            "top" | "intercal" | "prime" => (
                format!("{q} is not an expression"),
                format!("a transpose is a superscript: `x^\\{name}`"),
            ),
            "dots" | "ldots" | "cdots" | "vdots" | "ddots" => (
                format!("{q} cannot be computed"),
                "write a sum of entries with `\\sum_i x_i`".into(),
            ),
            "infty" => (
                format!("{q} is not a number matcalc can compute with"),
                "use a finite number".into(),
            ),
            "otimes" | "oplus" | "kron" => (
                format!("{q} (Kronecker product) is not supported"),
                "write products with juxtaposition, `\\cdot` or `\\odot`".into(),
            ),
            "int" | "iint" | "oint" | "prod" | "lim" | "max" | "min" | "sup" | "inf" | "argmax" | "argmin" | "arg"
            | "Pr" | "sinh" | "cosh" | "coth" | "sec" | "csc" | "cot" | "mod" | "bmod" | "binom" | "lfloor"
            | "rfloor" | "lceil" | "rceil" => (
                format!("{q} is not supported"),
                "matcalc differentiates sums, products, powers, norms, traces, determinants, inverses and \
                 sin cos tan exp log tanh sqrt sigmoid softmax …"
                    .into(),
            ),
            _ if RELATIONS.contains(&name) || INFIX.contains(&name) => {
                return self.expected();
            }
            _ => {
                let hint = match nearest(name, known_commands()) {
                    Some(k) => format!("did you mean `\\{k}`?"),
                    None => "matcalc reads \\frac, \\sqrt, \\sum, \\|…\\|, \\sin, \\log, \\operatorname{tr}, \
                             Greek letters, …; see docs/LANGUAGE.md"
                        .into(),
                };
                (format!("unknown LaTeX command {q}"), hint)
            }
        };
        syntax(t.span, msg, hint)
    }

    /// The error for what is left after a complete formula.
    fn trailing(&self) -> Error {
        let t = self.peek();
        let found = self.quote(t.span);
        match t.k {
            K::Op(')' | ']' | '}') | K::SetClose | K::Rangle => syntax(
                t.span,
                format!("unexpected {found}"),
                "there is no matching opening delimiter; remove it",
            ),
            K::DBar | K::Bar => syntax(
                t.span,
                format!("unexpected {found}"),
                "no norm or absolute value is open here",
            ),
            K::Cmd if RELATIONS.contains(&t.text.as_str()) => syntax(
                t.span,
                format!("unexpected {found} in the formula"),
                "declarations go after the formula, separated by a comma or `where`: \
                 `…, where x \\in \\mathbb{R}^n`",
            ),
            K::Op(':') => syntax(t.span, "unexpected `:`", "define the function with `L(x) := …`"),
            K::Op('!') => syntax(t.span, "factorials are not supported", "remove the `!`"),
            _ => syntax(
                t.span,
                format!("unexpected {found} after the formula"),
                format!("{found} cannot follow an expression here"),
            ),
        }
    }

    // -- heads and declarations ----------------------------------------------

    /// `L(x)`, `f(X, y)`, `\mathcal{L}(\theta)`, `f_\theta(x)`: the variables.
    fn head(&mut self) -> Result<Vec<String>> {
        let last = self.toks.len().saturating_sub(2);
        let lhs = self.toks[0].span.to(self.toks[last].span);
        let bad = |p: &Self| {
            syntax(
                lhs,
                format!(
                    "expected a function name such as `f(x)` left of `=`, found {}",
                    p.quote(lhs)
                ),
                "write `L(x) := …` (the variable in parentheses is differentiated by default), or only the formula",
            )
        };
        if !matches!(self.peek_k(), K::Name | K::Func) {
            return Err(bad(self));
        }
        self.bump();
        if self.peek_k() == K::Op('_') {
            let us = self.bump();
            self.sub_items(us.span)?;
        }
        let mut params = Vec::new();
        if self.peek_k() == K::Op('(') {
            self.bump();
            loop {
                if self.peek_k() != K::Name {
                    return Err(bad(self));
                }
                params.push(self.decl_name()?.0);
                match self.peek_k() {
                    K::Op(',' | ';') => {
                        self.bump();
                    }
                    K::Op(')') => {
                        self.bump();
                        break;
                    }
                    _ => return Err(bad(self)),
                }
            }
        }
        if self.peek_k() != K::Eof {
            return Err(bad(self));
        }
        Ok(params)
    }

    /// A lone name (the variable "with respect to").
    fn lone_name(&mut self) -> Result<String> {
        let (name, _) = self.decl_name()?;
        Ok(name)
    }

    /// A name being declared: `W_1`, `\theta`, `\mathbf{x}`.
    fn decl_name(&mut self) -> Result<(String, Span)> {
        let t = self.peek().clone();
        if t.k != K::Name {
            return Err(syntax(
                t.span,
                format!("expected a name, found {}", self.quote(t.span)),
                "declare names like `x \\in \\mathbb{R}^n` or `W_1 \\in \\mathbb{R}^{m \\times n}`",
            ));
        }
        self.bump();
        if self.peek_k() == K::Op('_') {
            let us = self.bump();
            let (items, span) = self.sub_items(us.span)?;
            return Ok((self.suffixed(&t.text, &items, span)?, t.span.to(span)));
        }
        Ok((t.text.clone(), t.span))
    }

    /// One declaration clause.
    fn decl_clause(&mut self) -> Result<Vec<Decl>> {
        if matches!(self.peek_k(), K::Num(_)) {
            return self.range_decl();
        }
        let mut names = vec![self.decl_name()?];
        while self.peek_k() == K::Op(',') {
            self.bump();
            names.push(self.decl_name()?);
        }
        let rel = self.bump();
        let kind = match (rel.k, rel.text.as_str()) {
            (K::Cmd, "in") => Some(self.set()?),
            (K::Cmd, "ge" | "geq" | "geqslant" | "gt" | "le" | "leq" | "leqslant" | "lt" | "neq" | "ne")
            | (K::Op('<' | '>'), _) => {
                self.pos = self.toks.len() - 1;
                Some(DeclKind::Scalar)
            }
            (K::Cmd, "succ" | "succeq" | "prec" | "preceq") => {
                // Definiteness says nothing about the size: nothing to declare.
                self.pos = self.toks.len() - 1;
                None
            }
            _ => {
                let (name, span) = &names[names.len() - 1];
                return Err(syntax(
                    if rel.k == K::Eof { *span } else { rel.span },
                    format!("expected `\\in` after `{name}`, found {}", self.quote(rel.span)),
                    "declare with `x \\in \\mathbb{R}^n`, `A \\in \\mathbb{R}^{m \\times n}`, `S \\in \\mathbb{S}^n`, \
                     `\\alpha \\in \\mathbb{R}` or `r \\in [1, 95]`",
                ));
            }
        };
        self.end_of_clause()?;
        let end = self.toks[self.pos.saturating_sub(1)].span;
        Ok(match kind {
            Some(kind) => names
                .into_iter()
                .map(|(name, span)| Decl {
                    name,
                    kind: kind.clone(),
                    span: span.to(end),
                })
                .collect(),
            None => Vec::new(),
        })
    }

    fn end_of_clause(&self) -> Result<()> {
        let t = self.peek();
        if t.k != K::Eof {
            return Err(syntax(
                t.span,
                format!("unexpected {} after the declaration", self.quote(t.span)),
                "separate declarations with commas or `and`",
            ));
        }
        Ok(())
    }

    /// `1 \le r \le 95`.
    fn range_decl(&mut self) -> Result<Vec<Decl>> {
        let lo_tok = self.bump();
        let strict = |t: &Tok| matches!(t.k, K::Op('<')) || t.text == "lt";
        let is_le = |t: &Tok| strict(t) || (t.k == K::Cmd && matches!(t.text.as_str(), "le" | "leq" | "leqslant"));
        let r1 = self.bump();
        if !is_le(&r1) {
            return Err(syntax(
                r1.span,
                format!("cannot read the declaration at {}", self.quote(r1.span)),
                "write a size range as `1 \\le r \\le 95` or `r \\in [1, 95]`",
            ));
        }
        let (name, name_span) = self.decl_name()?;
        let r2 = self.bump();
        let hi_tok = self.bump();
        if !is_le(&r2) || !matches!(hi_tok.k, K::Num(_)) {
            return Err(syntax(
                r2.span,
                "cannot read the range",
                "write a size range as `1 \\le r \\le 95` or `r \\in [1, 95]`",
            ));
        }
        self.end_of_clause()?;
        let lo = self.whole(&lo_tok)? + u64::from(strict(&r1));
        let hi = self.whole(&hi_tok)?.saturating_sub(u64::from(strict(&r2)));
        let span = lo_tok.span.to(hi_tok.span);
        check_range(lo, hi, span)?;
        let _ = name_span;
        Ok(vec![Decl {
            name,
            kind: DeclKind::Dim(Some((lo, hi))),
            span,
        }])
    }

    fn whole(&self, t: &Tok) -> Result<u64> {
        if !t.text.is_empty() && t.text.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(v) = t.text.parse::<u64>() {
                return Ok(v);
            }
        }
        Err(syntax(
            t.span,
            format!("{} is not a whole number", self.quote(t.span)),
            "sizes and range bounds are whole numbers like `100`",
        ))
    }

    /// The set after `\in`.
    fn set(&mut self) -> Result<DeclKind> {
        let t = self.bump();
        match t.k {
            K::Set => {
                let mut dims: Option<(Vec<DimExpr>, Span)> = None;
                let mut sub = false;
                loop {
                    match self.peek_k() {
                        K::Op('^') if dims.is_none() => {
                            let caret = self.bump();
                            dims = Some(self.dims(caret.span)?);
                        }
                        K::Op('_') if !sub => {
                            let us = self.bump();
                            self.sub_items(us.span)?;
                            sub = true;
                        }
                        _ => break,
                    }
                }
                let (dims, dspan) = dims.unwrap_or((Vec::new(), t.span));
                match (t.text.as_str(), dims.as_slice()) {
                    ("R", []) => Ok(DeclKind::Scalar),
                    ("R", [n]) => Ok(DeclKind::Vector(n.clone())),
                    ("R", [m, n]) => Ok(DeclKind::Matrix(m.clone(), n.clone())),
                    ("R", _) => Err(syntax(
                        dspan,
                        "tensors with more than two axes cannot be declared",
                        "declare scalars, vectors (`\\mathbb{R}^n`) and matrices (`\\mathbb{R}^{m \\times n}`)",
                    )),
                    ("S", [n]) => Ok(DeclKind::Symmetric(n.clone())),
                    ("S", [m, n]) if m == n => Ok(DeclKind::Symmetric(n.clone())),
                    ("S", _) => Err(syntax(
                        dspan,
                        "a symmetric matrix needs one size",
                        "write `S \\in \\mathbb{S}^n` for an n×n symmetric matrix",
                    )),
                    ("N" | "Z", []) => Ok(DeclKind::Dim(None)),
                    ("C", _) => Err(syntax(
                        t.span,
                        "complex numbers are not supported",
                        "matcalc works over the reals: `\\mathbb{R}^n`",
                    )),
                    _ => Err(syntax(
                        t.span.to(dspan),
                        format!("cannot declare a variable in {}", self.quote(t.span.to(dspan))),
                        "sets are `\\mathbb{R}`, `\\mathbb{R}^n`, `\\mathbb{R}^{m \\times n}`, `\\mathbb{S}^n`, \
                         `\\mathbb{N}`, `[1, 95]` and `\\{1, \\dots, 95\\}`",
                    )),
                }
            }
            K::Op('[' | '(') => {
                let mut inside: Vec<Tok> = Vec::new();
                let close = loop {
                    let x = self.bump();
                    match x.k {
                        K::Op(']' | ')') | K::Eof => break x,
                        _ => inside.push(x),
                    }
                };
                let whole = |x: &Tok| !x.text.is_empty() && x.text.bytes().all(|b| b.is_ascii_digit());
                let span = t.span.to(close.span);
                match inside.as_slice() {
                    [lo, c, hi]
                        if c.k == K::Op(',')
                            && t.k == K::Op('[')
                            && close.k == K::Op(']')
                            && whole(lo)
                            && whole(hi)
                            && lo.text != "0" =>
                    {
                        let (a, b) = (self.whole(lo)?, self.whole(hi)?);
                        check_range(a, b, lo.span.to(hi.span))?;
                        Ok(DeclKind::Dim(Some((a, b))))
                    }
                    // An interval of reals, such as `[0, 1]` or `(0, \infty)`: a scalar.
                    _ if close.k != K::Eof && inside.iter().any(|x| x.k == K::Op(',')) => Ok(DeclKind::Scalar),
                    _ => Err(syntax(
                        span,
                        "cannot read the interval",
                        "write a range of sizes as `[1, 95]`",
                    )),
                }
            }
            K::SetOpen => {
                let mut nums: Vec<Tok> = Vec::new();
                loop {
                    let x = self.bump();
                    match x.k {
                        K::SetClose => break,
                        K::Num(_) => nums.push(x),
                        K::Op(',' | '.') => {}
                        K::Cmd if matches!(x.text.as_str(), "dots" | "ldots" | "cdots") => {}
                        _ => {
                            return Err(syntax(
                                x.span,
                                format!("cannot read {} in the set", self.quote(x.span)),
                                "write a range of sizes as `\\{1, \\dots, 95\\}`",
                            ))
                        }
                    }
                }
                let (Some(first), Some(last)) = (nums.first(), nums.last()) else {
                    return Err(syntax(
                        t.span,
                        "empty set",
                        "write a range of sizes as `\\{1, \\dots, 95\\}`",
                    ));
                };
                let (a, b) = (self.whole(first)?, self.whole(last)?);
                check_range(a, b, first.span.to(last.span))?;
                Ok(DeclKind::Dim(Some((a, b))))
            }
            _ => Err(syntax(
                t.span,
                format!("cannot read the set {}", self.quote(t.span)),
                "sets are `\\mathbb{R}`, `\\mathbb{R}^n`, `\\mathbb{R}^{m \\times n}`, `\\mathbb{S}^n`, `[1, 95]` \
                 and `\\{1, \\dots, 95\\}`",
            )),
        }
    }

    /// The sizes in `\mathbb{R}^{m \times n}` (after `^`).
    fn dims(&mut self, caret: Span) -> Result<(Vec<DimExpr>, Span)> {
        let t = self.peek().clone();
        let (items, span) = if t.k == K::Op('{') {
            let close = self.matching(self.pos)?;
            let items = self.toks[self.pos + 1..close].to_vec();
            self.pos = close + 1;
            (items, t.span.to(self.toks[close].span))
        } else if matches!(t.k, K::Num(_) | K::Name) {
            self.bump();
            (vec![t.clone()], t.span)
        } else {
            return Err(syntax(
                caret,
                "`^` needs the sizes",
                "write `\\mathbb{R}^n` or `\\mathbb{R}^{m \\times n}`",
            ));
        };
        let mut dims = Vec::new();
        for part in items.split(|x| {
            matches!(x.k, K::Op('*' | ',')) || (x.k == K::Cmd && matches!(x.text.as_str(), "times" | "cdot"))
        }) {
            let dim =
                match part {
                    [x] if matches!(x.k, K::Num(_)) => DimExpr::Num(self.whole(x)?),
                    [x] if x.k == K::Name => DimExpr::Sym(x.text.clone()),
                    [x, u, rest @ ..] if x.k == K::Name && u.k == K::Op('_') && !rest.is_empty() => {
                        let rest: Vec<Tok> = rest
                            .iter()
                            .filter(|t| !matches!(t.k, K::Op('{' | '}')))
                            .cloned()
                            .collect();
                        DimExpr::Sym(self.suffixed(&x.text, &rest, span)?)
                    }
                    _ => return Err(syntax(
                        span,
                        format!("cannot read the sizes {}", self.quote(span)),
                        "sizes are whole numbers or names: `\\mathbb{R}^{m \\times n}`, `\\mathbb{R}^{r \\times 100}`",
                    )),
                };
            dims.push(dim);
        }
        Ok((dims, span))
    }
}

fn check_range(lo: u64, hi: u64, span: Span) -> Result<()> {
    if lo < 1 {
        return Err(syntax(
            span,
            "a dimension range must start at 1 or more",
            format!("write `[1, {hi}]`"),
        ));
    }
    if lo > hi {
        return Err(syntax(
            span,
            format!("empty range `[{lo}, {hi}]`"),
            format!("write the smaller bound first: `[{hi}, {lo}]`"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Back to our syntax
// ---------------------------------------------------------------------------

/// Precedence of a node as printed in our syntax.
fn prec(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Binary(BinOp::Add | BinOp::Sub, ..) => 10,
        ExprKind::Binary(BinOp::Mul | BinOp::Div | BinOp::EMul | BinOp::EDiv, ..) => 20,
        ExprKind::Neg(_) => 30,
        ExprKind::Num(v) if v.is_sign_negative() => 30,
        ExprKind::Binary(BinOp::Pow | BinOp::EPow, ..) => 40,
        ExprKind::Transpose(_) => 50,
        _ => 60,
    }
}

fn fmt_num(v: f64, out: &mut String) {
    let _ = write!(out, "{v}");
}

fn write_paren(e: &Expr, paren: bool, out: &mut String) {
    if paren {
        out.push('(');
    }
    write_plain(e, out);
    if paren {
        out.push(')');
    }
}

fn write_plain(e: &Expr, out: &mut String) {
    match &e.kind {
        ExprKind::Num(v) => fmt_num(*v, out),
        ExprKind::Ident(n) => out.push_str(n),
        ExprKind::Missing => out.push('?'),
        ExprKind::Neg(a) => {
            out.push('-');
            write_paren(a, prec(a) < 30, out);
        }
        ExprKind::Transpose(a) => {
            write_paren(a, prec(a) < 50, out);
            out.push('\'');
        }
        ExprKind::Call { name, args, .. } => {
            out.push_str(name);
            out.push('(');
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_plain(a, out);
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
                    write_plain(x, out);
                }
            }
            out.push(']');
        }
        ExprKind::Binary(op @ (BinOp::Pow | BinOp::EPow), a, b) => {
            write_paren(a, prec(a) <= 40, out);
            out.push_str(op.symbol());
            write_paren(b, prec(b) < 40, out);
        }
        ExprKind::Binary(..) => {
            // A left-associative chain, printed without recursing down its left spine.
            let p = prec(e);
            let mut spine: Vec<(BinOp, &Expr)> = Vec::new();
            let mut cur = e;
            while let ExprKind::Binary(op, l, r) = &cur.kind {
                if matches!(op, BinOp::Pow | BinOp::EPow) || prec(cur) != p {
                    break;
                }
                spine.push((*op, r));
                cur = l;
            }
            write_paren(cur, prec(cur) < p, out);
            for (op, r) in spine.into_iter().rev() {
                match op {
                    BinOp::Add | BinOp::Sub => {
                        out.push(' ');
                        out.push_str(op.symbol());
                        out.push(' ');
                    }
                    _ => out.push_str(op.symbol()),
                }
                write_paren(r, prec(r) <= p || prec(r) == 30, out);
            }
        }
    }
}

/// An expression in our syntax; parsing the result gives the same tree (up to
/// spans).
pub fn to_plain(e: &Expr) -> String {
    let mut out = String::new();
    write_plain(e, &mut out);
    out
}

fn dim_text(d: &DimExpr) -> String {
    match d {
        DimExpr::Num(n) => n.to_string(),
        DimExpr::Sym(s) => s.clone(),
    }
}

/// A declaration in our syntax: `W1: matrix(r, 100)`.
pub fn decl_to_plain(d: &Decl) -> String {
    let kind = match &d.kind {
        DeclKind::Scalar => "scalar".to_string(),
        DeclKind::Vector(n) => format!("vector({})", dim_text(n)),
        DeclKind::Matrix(m, n) => format!("matrix({}, {})", dim_text(m), dim_text(n)),
        DeclKind::Symmetric(n) => format!("symmetric({})", dim_text(n)),
        DeclKind::Dim(None) => "dim".to_string(),
        DeclKind::Dim(Some((lo, hi))) => format!("dim in {lo}..{hi}"),
    };
    format!("{}: {kind}", d.name)
}
