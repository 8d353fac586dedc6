//! Printing matrix notation in several styles: the input language (parses
//! back), Unicode text, LaTeX.

use super::mexpr::M;
use std::fmt::Write;

/// How to write each construct.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// Matrix product / scaling between factors.
    pub mul: &'static str,
    /// Hadamard product.
    pub had: &'static str,
    /// Elementwise division.
    pub ediv: &'static str,
    /// Postfix transpose.
    pub transpose: &'static str,
    /// Minus sign.
    pub minus: &'static str,
    /// Which flavour (names, functions, powers differ).
    pub flavour: Flavour,
}

/// The output flavours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// The input language: parses back.
    Expr,
    /// Unicode for people.
    Text,
    /// LaTeX math.
    Latex,
}

impl Style {
    /// The input language.
    pub const EXPR: Style = Style {
        mul: "*",
        had: ".*",
        ediv: "./",
        transpose: "'",
        minus: "-",
        flavour: Flavour::Expr,
    };
    /// Unicode text.
    pub const TEXT: Style = Style {
        mul: " ",
        had: " ⊙ ",
        ediv: " ⊘ ",
        transpose: "ᵀ",
        minus: "−",
        flavour: Flavour::Text,
    };
    /// LaTeX.
    pub const LATEX: Style = Style {
        mul: " ",
        had: " \\odot ",
        ediv: " \\oslash ",
        transpose: "^\\top",
        minus: "-",
        flavour: Flavour::Latex,
    };
}

pub(crate) const P_ADD: u8 = 0;
pub(crate) const P_MUL: u8 = 1;
pub(crate) const P_NEG: u8 = 2;
pub(crate) const P_POW: u8 = 3;
pub(crate) const P_ATOM: u8 = 5;

/// How tightly a construct binds (higher binds tighter); shared with the MathML printer.
pub(crate) fn prec(m: &M) -> u8 {
    match m {
        M::Add(_) => P_ADD,
        M::Prod(fs) => match fs.first() {
            Some(M::Num(c)) if *c < 0.0 => P_NEG,
            _ => P_MUL,
        },
        M::Had(_) | M::Div(..) => P_MUL,
        M::Num(c) if *c < 0.0 => P_NEG,
        M::Pow(_, p) if *p < 0.0 => P_MUL,
        M::Pow(..) => P_POW,
        M::T(_) => 4,
        M::Scalar(x) => match **x {
            M::Name(_) | M::Call(..) | M::Num(_) => P_ATOM,
            _ => P_NEG + 1,
        },
        _ => P_ATOM,
    }
}

/// Print an expression.
pub fn print(m: &M, s: &Style) -> String {
    let mut out = String::new();
    go(m, s, &mut out);
    out
}

fn paren(m: &M, s: &Style, min: u8, out: &mut String) {
    if prec(m) < min {
        out.push_str(if s.flavour == Flavour::Latex { "\\left(" } else { "(" });
        go(m, s, out);
        out.push_str(if s.flavour == Flavour::Latex { "\\right)" } else { ")" });
    } else {
        go(m, s, out);
    }
}

/// `b^p`, with `p = 1/2` as a square root.
pub(crate) fn pow_m(b: M, p: f64) -> M {
    match p {
        1.0 => b,
        0.5 => M::Call("sqrt", vec![b]),
        _ => M::Pow(Box::new(b), p),
    }
}

/// A number as written: integers without a decimal point.
pub fn number(c: f64) -> String {
    if c.fract() == 0.0 && c.abs() < 1e15 {
        format!("{}", c as i64)
    } else if c.abs() >= 1e-4 && c.abs() < 1e15 {
        format!("{c}")
    } else {
        format!("{c:e}")
    }
}

fn latex_name(n: &str) -> String {
    // A differential's placeholder (see `explain::DIFF_MARK`): `\mathrm{d}x`.
    if let Some(rest) = n.strip_prefix("d\u{200b}") {
        return format!("\\mathrm{{d}}{}", latex_name(rest));
    }
    const GREEK: [&str; 24] = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu",
        "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega", "Omega",
    ];
    let split = n.find(|c: char| c.is_ascii_digit() || c == '_').unwrap_or(n.len());
    let (base, sub) = n.split_at(split);
    let sub = sub.trim_start_matches('_');
    let base = if GREEK.contains(&base) {
        format!("\\{base}")
    } else if base.chars().count() > 1 {
        format!("\\mathrm{{{base}}}")
    } else {
        base.to_string()
    };
    if sub.is_empty() {
        base
    } else {
        format!("{base}_{{{sub}}}")
    }
}

fn superscript(c: f64) -> Option<String> {
    if c.fract() != 0.0 || c.abs() > 99.0 {
        return None;
    }
    let digits = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let mut s = String::new();
    if c < 0.0 {
        s.push('⁻');
    }
    for ch in format!("{}", c.abs() as i64).chars() {
        s.push(digits[ch.to_digit(10).unwrap() as usize]);
    }
    Some(s)
}

fn func_name(f: &str, s: &Style) -> String {
    // The diagonal of a matrix (a vector) is written like Diag of a vector.
    let f = if f == "diag_of" { "diag" } else { f };
    match s.flavour {
        Flavour::Latex => match f {
            "sin" | "cos" | "tan" | "exp" | "log" | "tanh" | "det" => format!("\\{f}"),
            "asin" => "\\arcsin".into(),
            "acos" => "\\arccos".into(),
            "atan" => "\\arctan".into(),
            "logdet" => "\\log\\det".into(),
            _ => format!("\\operatorname{{{f}}}"),
        },
        _ => f.to_string(),
    }
}

fn go(m: &M, s: &Style, out: &mut String) {
    let latex = s.flavour == Flavour::Latex;
    match m {
        M::Name(n) => out.push_str(&if latex {
            latex_name(n)
        } else {
            n.replace('\u{200b}', "")
        }),
        M::Num(c) => {
            let t = number(*c);
            out.push_str(&if *c < 0.0 { t.replacen('-', s.minus, 1) } else { t });
        }
        M::Eye(n) => match s.flavour {
            Flavour::Expr => write!(out, "eye({n})").unwrap(),
            Flavour::Text => write!(out, "I").unwrap(),
            Flavour::Latex => write!(out, "I").unwrap(),
        },
        M::Fill(c, dims) => match s.flavour {
            Flavour::Expr => {
                let f = if dims.len() == 1 { "vector" } else { "matrix" };
                write!(out, "{f}({}, {})", number(*c), dims.join(", ")).unwrap()
            }
            _ if *c == 1.0 && dims.len() == 1 => out.push_str(if latex { "\\mathbf{1}" } else { "𝟏" }),
            _ if *c == 0.0 => out.push('0'),
            _ => {
                let one = if latex { "\\mathbf{1}" } else { "𝟏" };
                let t = if dims.len() == 1 {
                    one.to_string()
                } else {
                    format!("{one}{one}{}", s.transpose)
                };
                if *c == 1.0 {
                    out.push_str(&t);
                } else {
                    write!(out, "{}{}{t}", number(*c), s.mul).unwrap()
                }
            }
        },
        M::Literal(rows, _) => match s.flavour {
            Flavour::Latex => {
                out.push_str("\\begin{bmatrix}");
                let r: Vec<String> = rows
                    .iter()
                    .map(|r| r.iter().map(|v| number(*v)).collect::<Vec<_>>().join(" & "))
                    .collect();
                out.push_str(&r.join(" \\\\ "));
                out.push_str("\\end{bmatrix}");
            }
            _ => {
                let r: Vec<String> = rows
                    .iter()
                    .map(|r| r.iter().map(|v| number(*v)).collect::<Vec<_>>().join(" "))
                    .collect();
                write!(out, "[{}]", r.join("; ")).unwrap();
            }
        },
        M::Add(ts) => {
            for (k, t) in ts.iter().enumerate() {
                let negated = match t {
                    M::Num(c) if *c < 0.0 => Some(M::Num(-c)),
                    M::Prod(fs) if matches!(fs.first(), Some(M::Num(c)) if *c < 0.0) => {
                        Some(super::mexpr::neg(t.clone()))
                    }
                    _ => None,
                };
                match (k, negated) {
                    (0, _) => paren(t, s, P_MUL, out),
                    (_, Some(n)) => {
                        write!(out, " {} ", s.minus).unwrap();
                        paren(&n, s, P_MUL, out);
                    }
                    (_, None) => {
                        out.push_str(" + ");
                        paren(t, s, P_MUL, out);
                    }
                }
            }
        }
        M::Prod(fs) => {
            let mut rest: &[M] = fs;
            if let Some(M::Num(c)) = fs.first() {
                if *c == -1.0 {
                    out.push_str(s.minus);
                    rest = &fs[1..];
                } else if fs.len() > 1 {
                    go(&M::Num(*c), s, out);
                    out.push_str(s.mul);
                    rest = &fs[1..];
                }
            }
            // −x ⊙ y needs no parentheses: negation commutes with elementwise products.
            let lone_had = rest.len() == 1 && matches!(rest[0], M::Had(_) | M::Div(..) | M::Pow(_, _)) && fs.len() == 2;
            for (k, f) in rest.iter().enumerate() {
                if k > 0 {
                    out.push_str(s.mul);
                }
                paren(f, s, if lone_had { P_MUL } else { P_NEG + 1 }, out);
            }
        }
        M::Had(fs) => {
            // Factors with negative powers go to the denominator: a .* b.^-1 = a ./ b.
            let (num, den): (Vec<&M>, Vec<&M>) = fs.iter().partition(|f| !matches!(f, M::Pow(_, p) if *p < 0.0));
            let den: Vec<M> = den
                .into_iter()
                .map(|f| match f {
                    M::Pow(b, p) => pow_m((**b).clone(), -p),
                    _ => unreachable!(),
                })
                .collect();
            if num.is_empty() {
                out.push('1');
            }
            for (k, f) in num.iter().enumerate() {
                if k > 0 {
                    out.push_str(s.had);
                }
                paren(f, s, P_NEG + 1, out);
            }
            for f in &den {
                out.push_str(s.ediv);
                paren(f, s, P_NEG + 1, out);
            }
        }
        M::Div(a, b) => {
            paren(a, s, P_NEG + 1, out);
            out.push_str(s.ediv);
            paren(b, s, P_NEG + 1, out);
        }
        M::T(x) => match (&**x, s.flavour) {
            // X⁻ᵀ rather than a double superscript.
            (M::Call("inv", a), Flavour::Latex) => {
                paren(&a[0], s, P_ATOM, out);
                out.push_str("^{-\\top}");
            }
            (M::Call("inv", a), Flavour::Text) => {
                paren(&a[0], s, P_ATOM, out);
                out.push_str("⁻ᵀ");
            }
            _ => {
                paren(x, s, P_ATOM, out);
                out.push_str(s.transpose);
            }
        },
        M::Pow(_, p) if *p < 0.0 => go(&M::Had(vec![m.clone()]), s, out),
        M::Pow(b, p) => {
            paren(b, s, P_ATOM, out);
            match s.flavour {
                // Powers of scalar-valued functions read as scalar powers.
                Flavour::Expr
                    if matches!(
                        &**b,
                        M::Call("norm2" | "sum" | "tr" | "det" | "logdet" | "logsumexp" | "norm1", _)
                    ) =>
                {
                    write!(out, "^{}", number(*p)).unwrap()
                }
                Flavour::Expr => write!(out, ".^{}", number(*p)).unwrap(),
                Flavour::Text => match superscript(*p) {
                    Some(sup) => out.push_str(&sup),
                    None => write!(out, "^{}", number(*p)).unwrap(),
                },
                Flavour::Latex => write!(out, "^{{{}}}", number(*p)).unwrap(),
            }
        }
        M::Call(f, args) => {
            let a = &args[0];
            match (s.flavour, *f) {
                (Flavour::Text, "inv") => {
                    paren(a, s, P_ATOM, out);
                    out.push_str("⁻¹");
                }
                (Flavour::Latex, "inv") => {
                    paren(a, s, P_ATOM, out);
                    out.push_str("^{-1}");
                }
                (Flavour::Latex, "sqrt") => {
                    out.push_str("\\sqrt{");
                    go(a, s, out);
                    out.push('}');
                }
                (Flavour::Latex, "norm2") | (Flavour::Text, "norm2") => {
                    out.push_str(if latex { "\\left\\|" } else { "‖" });
                    go(a, s, out);
                    out.push_str(if latex { "\\right\\|_2" } else { "‖" });
                }
                _ => {
                    out.push_str(&func_name(f, s));
                    out.push_str(if latex { "\\left(" } else { "(" });
                    for (k, a) in args.iter().enumerate() {
                        if k > 0 {
                            out.push_str(", ");
                        }
                        go(a, s, out);
                    }
                    out.push_str(if latex { "\\right)" } else { ")" });
                }
            }
        }
        M::Index(t) => out.push_str(t),
        M::Scalar(x) => {
            if prec(x) < P_POW {
                out.push_str(if latex { "\\left(" } else { "(" });
                go(x, s, out);
                out.push_str(if latex { "\\right)" } else { ")" });
            } else {
                go(x, s, out);
            }
        }
    }
}
