//! MathML (presentation markup) from the matrix-notation tree [`M`], the same
//! tree the text and LaTeX printers use, so the three agree on structure,
//! precedence and parentheses. Browsers render MathML natively.
//!
//! Conventions follow the LaTeX printer: `W1` is `W` with subscript `1`, Greek
//! names are letters, transposes are a superscript `T`, Hadamard products `⊙`,
//! `norm2` is `‖·‖₂`, tensors of order 3+ are in index notation with the
//! indices as subscripts, and a cascade is an `mtable` of aligned `where` lines.

use super::mexpr::M;
use super::print::{number, pow_m, prec, P_ATOM, P_MUL, P_NEG, P_POW};
use crate::problem::Derivative;

/// The MathML namespace, on every `<math>` element.
pub const NAMESPACE: &str = "http://www.w3.org/1998/Math/MathML";

/// Escape text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn el(tag: &str, body: &str) -> String {
    format!("<{tag}>{body}</{tag}>")
}

fn mi(s: &str) -> String {
    el("mi", &escape(s))
}

/// An identifier that is upright even when it is one letter (`I`, `T`, `Diag`).
pub fn mi_upright(s: &str) -> String {
    format!("<mi mathvariant=\"normal\">{}</mi>", escape(s))
}

/// An operator (`=`, `:`, `⇒`).
pub fn mo(s: &str) -> String {
    el("mo", &escape(s))
}

fn mn(s: &str) -> String {
    el("mn", &escape(s))
}

/// A group.
pub fn mrow(parts: &[String]) -> String {
    el("mrow", &parts.concat())
}

/// `(body)`.
pub fn fenced(open: &str, body: String, close: &str) -> String {
    mrow(&[mo(open), body, mo(close)])
}

/// Invisible times between factors of a product.
const TIMES: &str = "<mo>&#x2062;</mo>";
/// Function application between a function name and its argument.
const APPLY: &str = "<mo>&#x2061;</mo>";

/// Greek letter names the LaTeX printer writes as `\alpha`, …, as characters.
fn greek(base: &str) -> Option<char> {
    const NAMES: [(&str, char); 24] = [
        ("alpha", 'α'),
        ("beta", 'β'),
        ("gamma", 'γ'),
        ("delta", 'δ'),
        ("epsilon", 'ε'),
        ("zeta", 'ζ'),
        ("eta", 'η'),
        ("theta", 'θ'),
        ("iota", 'ι'),
        ("kappa", 'κ'),
        ("lambda", 'λ'),
        ("mu", 'μ'),
        ("nu", 'ν'),
        ("xi", 'ξ'),
        ("pi", 'π'),
        ("rho", 'ρ'),
        ("sigma", 'σ'),
        ("tau", 'τ'),
        ("upsilon", 'υ'),
        ("phi", 'φ'),
        ("chi", 'χ'),
        ("psi", 'ψ'),
        ("omega", 'ω'),
        ("Omega", 'Ω'),
    ];
    NAMES.iter().find(|(n, _)| *n == base).map(|(_, c)| *c)
}

/// A variable or intermediate name: `W1` → W with subscript 1, `lambda` → λ.
pub fn name(n: &str) -> String {
    // A differential's placeholder (`explain::DIFF_MARK`): an upright d before the name.
    if let Some(rest) = n.strip_prefix("d\u{200b}") {
        return mrow(&[mi_upright("d"), name(rest)]);
    }
    let split = n.find(|c: char| c.is_ascii_digit() || c == '_').unwrap_or(n.len());
    let (base, sub) = n.split_at(split);
    let sub = sub.trim_start_matches('_');
    let base = match greek(base) {
        Some(c) => mi(&c.to_string()),
        None => mi(base),
    };
    if sub.is_empty() {
        base
    } else if sub.chars().all(|c| c.is_ascii_digit()) {
        el("msub", &(base + &mn(sub)))
    } else {
        el("msub", &(base + &mi(sub)))
    }
}

fn num(c: f64) -> String {
    if c < 0.0 {
        mrow(&[mo("−"), mn(&number(-c))])
    } else {
        mn(&number(c))
    }
}

/// A whole formula as a `<math>` element (inline).
pub fn math(m: &M) -> String {
    format!("<math xmlns=\"{NAMESPACE}\">{}</math>", expr(m))
}

/// The MathML of an expression (no `<math>` wrapper).
pub fn expr(m: &M) -> String {
    go(m)
}

fn paren(m: &M, min: u8) -> String {
    if prec(m) < min {
        fenced("(", go(m), ")")
    } else {
        go(m)
    }
}

/// `base^exp`; on a subscripted name (W₁ᵀ) the scripts are stacked.
fn sup(base: String, exp: String) -> String {
    match base.strip_prefix("<msub>").and_then(|b| b.strip_suffix("</msub>")) {
        Some(inner) => el("msubsup", &(inner.to_string() + &exp)),
        None => el("msup", &(base + &exp)),
    }
}

fn transpose_mark() -> String {
    mi_upright("T")
}

fn go(m: &M) -> String {
    match m {
        M::Name(n) => name(n),
        M::Num(c) => num(*c),
        M::Eye(_) => mi_upright("I"),
        M::Fill(c, dims) => fill(*c, dims.len()),
        M::Literal(rows, _) => literal(rows),
        M::Add(ts) => add(ts),
        M::Prod(fs) => product(fs),
        M::Had(fs) => hadamard(fs),
        M::Div(a, b) => mrow(&[paren(a, P_NEG + 1), mo("⊘"), paren(b, P_NEG + 1)]),
        M::T(x) => match &**x {
            M::Call("inv", a) => sup(paren(&a[0], P_ATOM), mrow(&[mo("−"), transpose_mark()])),
            _ => sup(paren(x, P_ATOM), transpose_mark()),
        },
        M::Pow(_, p) if *p < 0.0 => hadamard(std::slice::from_ref(m)),
        // ‖x‖₂²: subscript and superscript stacked.
        M::Pow(b, p) => match &**b {
            M::Call("norm2", a) => el("msubsup", &(fenced("‖", go(&a[0]), "‖") + &mn("2") + &mn(&number(*p)))),
            _ => sup(paren(b, P_ATOM), mn(&number(*p))),
        },
        M::Call(f, args) => call(f, args),
        M::Index(t) => index_notation(t),
        M::Scalar(x) => {
            if prec(x) < P_POW {
                fenced("(", go(x), ")")
            } else {
                go(x)
            }
        }
    }
}

fn fill(c: f64, order: usize) -> String {
    let one = "<mn mathvariant=\"bold\">1</mn>".to_string();
    let t = if order == 1 {
        one
    } else {
        mrow(&[one.clone(), TIMES.to_string(), sup(one, transpose_mark())])
    };
    match c {
        0.0 => mn("0"),
        1.0 => t,
        _ => mrow(&[num(c), TIMES.to_string(), t]),
    }
}

fn literal(rows: &[Vec<f64>]) -> String {
    let body: String = rows
        .iter()
        .map(|r| el("mtr", &r.iter().map(|v| el("mtd", &num(*v))).collect::<String>()))
        .collect();
    fenced("[", el("mtable", &body), "]")
}

fn add(ts: &[M]) -> String {
    let mut parts = Vec::new();
    for (k, t) in ts.iter().enumerate() {
        let negated = match t {
            M::Num(c) if *c < 0.0 => Some(M::Num(-c)),
            M::Prod(fs) if matches!(fs.first(), Some(M::Num(c)) if *c < 0.0) => Some(super::mexpr::neg(t.clone())),
            _ => None,
        };
        match (k, negated) {
            (0, _) => parts.push(paren(t, P_MUL)),
            (_, Some(n)) => {
                parts.push(mo("−"));
                parts.push(paren(&n, P_MUL));
            }
            (_, None) => {
                parts.push(mo("+"));
                parts.push(paren(t, P_MUL));
            }
        }
    }
    mrow(&parts)
}

fn product(fs: &[M]) -> String {
    let mut parts = Vec::new();
    let mut rest: &[M] = fs;
    if let Some(M::Num(c)) = fs.first() {
        if *c == -1.0 {
            parts.push(mo("−"));
            rest = &fs[1..];
        } else if fs.len() > 1 {
            parts.push(num(*c));
            parts.push(TIMES.to_string());
            rest = &fs[1..];
        }
    }
    // −x ⊙ y needs no parentheses, as in the text printer.
    let lone_had = rest.len() == 1 && matches!(rest[0], M::Had(_) | M::Div(..) | M::Pow(_, _)) && fs.len() == 2;
    for (k, f) in rest.iter().enumerate() {
        if k > 0 {
            parts.push(TIMES.to_string());
        }
        parts.push(paren(f, if lone_had { P_MUL } else { P_NEG + 1 }));
    }
    mrow(&parts)
}

fn hadamard(fs: &[M]) -> String {
    // Factors with negative powers go to the denominator: a ⊙ b⁻¹ = a ⊘ b.
    let (num_fs, den): (Vec<&M>, Vec<&M>) = fs.iter().partition(|f| !matches!(f, M::Pow(_, p) if *p < 0.0));
    let mut parts = Vec::new();
    if num_fs.is_empty() {
        parts.push(mn("1"));
    }
    for (k, f) in num_fs.iter().enumerate() {
        if k > 0 {
            parts.push(mo("⊙"));
        }
        parts.push(paren(f, P_NEG + 1));
    }
    for f in den {
        if let M::Pow(b, p) = f {
            parts.push(mo("⊘"));
            parts.push(paren(&pow_m((**b).clone(), -p), P_NEG + 1));
        }
    }
    mrow(&parts)
}

fn func_name(f: &str) -> String {
    match f {
        "diag_of" => mi("diag"),
        "asin" => mi("arcsin"),
        "acos" => mi("arccos"),
        "atan" => mi("arctan"),
        "logdet" => mrow(&[mi("log"), mi("det")]),
        "Diag" => mi_upright("Diag"),
        _ => mi(f),
    }
}

fn call(f: &str, args: &[M]) -> String {
    let a = &args[0];
    match f {
        "inv" => sup(paren(a, P_ATOM), mrow(&[mo("−"), mn("1")])),
        "sqrt" => el("msqrt", &go(a)),
        "norm2" => el("msub", &(fenced("‖", go(a), "‖") + &mn("2"))),
        _ => {
            let mut inner = Vec::new();
            for (k, a) in args.iter().enumerate() {
                if k > 0 {
                    inner.push(mo(","));
                }
                inner.push(go(a));
            }
            mrow(&[func_name(f), APPLY.to_string(), fenced("(", mrow(&inner), ")")])
        }
    }
}

/// Index notation (`[i,j,k] = Σ_l δ[i,j] A[k,l] x[l]`, as the index printer
/// writes it) as MathML: indices in brackets become subscripts, `Σ_l` a sum
/// with its indices below.
pub fn index_notation(text: &str) -> String {
    let body = match text.strip_prefix('[').and_then(|t| t.split_once("] = ")) {
        Some((_, body)) => body,
        None => text,
    };
    index_body(body)
}

fn index_body(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut parts: Vec<String> = Vec::new();
    let mut k = 0;
    while k < chars.len() {
        let c = chars[k];
        if c == '[' {
            // Subscript on what came before.
            let end = chars[k..].iter().position(|&c| c == ']').map_or(chars.len(), |p| k + p);
            let idx: String = chars[k + 1..end].iter().filter(|c| **c != ',').collect();
            let base = parts.pop().unwrap_or_default();
            parts.push(el("msub", &(base + &mi(&idx))));
            k = end + 1;
        } else if c == 'Σ' && chars.get(k + 1) == Some(&'_') {
            let end = chars[k + 2..]
                .iter()
                .position(|&c| c == ' ')
                .map_or(chars.len(), |p| k + 2 + p);
            let idx: String = chars[k + 2..end].iter().collect();
            parts.push(el("munder", &(mo("∑") + &mi(&idx))));
            k = end;
        } else if c.is_alphanumeric() && !c.is_ascii_digit() {
            let end = chars[k..]
                .iter()
                .position(|c| !c.is_alphanumeric() && *c != '_')
                .map_or(chars.len(), |p| k + p);
            let word: String = chars[k..end].iter().collect();
            parts.push(name(&word));
            k = end;
        } else if c.is_ascii_digit() || c == '.' {
            let end = chars[k..]
                .iter()
                .position(|c| !c.is_ascii_digit() && *c != '.')
                .map_or(chars.len(), |p| k + p);
            parts.push(mn(&chars[k..end].iter().collect::<String>()));
            k = end;
        } else if c == ' ' {
            k += 1;
        } else if c == '·' {
            parts.push(TIMES.to_string());
            k += 1;
        } else {
            parts.push(mo(&c.to_string()));
            k += 1;
        }
    }
    mrow(&parts)
}

/// How a derivative is named: ∂f/∂x, ∂²f/∂x², ∂²f/∂x∂y, as a fraction. With
/// `indices` (a tensor in index notation), the axes of f and of each variable
/// as subscripts: ∂f_i/∂W_jk.
pub fn label(d: &Derivative, indices: Option<&[Vec<String>]>) -> String {
    let n = d.wrt.len();
    let sub = |base: String, k: usize| match indices.and_then(|ix| ix.get(k)) {
        Some(ix) if !ix.is_empty() => el("msub", &(base + &mi(&ix.concat()))),
        _ => base,
    };
    let partial = |power: usize| {
        if power > 1 {
            sup(mo("∂"), mn(&power.to_string()))
        } else {
            mo("∂")
        }
    };
    let numerator = mrow(&[partial(n), sub(mi("f"), 0)]);
    let same = d.wrt.iter().all(|w| *w == d.wrt[0]) && indices.is_none();
    let denominator = if same && n > 1 {
        mrow(&[mo("∂"), sup(name(&d.wrt[0]), mn(&n.to_string()))])
    } else {
        let parts: Vec<String> = d
            .wrt
            .iter()
            .enumerate()
            .map(|(k, w)| mrow(&[mo("∂"), sub(name(w), k + 1)]))
            .collect();
        mrow(&parts)
    };
    el("mfrac", &(numerator + &denominator))
}

/// Text inside a formula.
pub fn mtext(s: &str) -> String {
    el("mtext", &escape(s))
}

/// One line of a display: `lhs = rhs`, as a table row aligned at `=`.
pub fn row(lhs: &str, rhs: &str) -> String {
    el(
        "mtr",
        &(el("mtd", lhs) + &el("mtd", &mrow(&[mo("="), rhs.to_string()]))),
    )
}

/// A display of aligned lines (`f = …`, the `where` definitions, the results).
pub fn display(rows: &[String]) -> String {
    format!(
        "<math xmlns=\"{NAMESPACE}\" display=\"block\"><mtable columnalign=\"right left\" columnspacing=\"0\">{}</mtable></math>",
        rows.concat()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{recover, Form};
    use crate::Problem;

    /// Parse with roxmltree: well-formed, and the root is MathML.
    fn well_formed(s: &str) -> roxmltree::Document<'_> {
        let doc = roxmltree::Document::parse(s).unwrap_or_else(|e| panic!("not well-formed XML ({e}): {s}"));
        assert_eq!(doc.root_element().tag_name().name(), "math");
        assert_eq!(doc.root_element().tag_name().namespace(), Some(NAMESPACE));
        doc
    }

    fn text_of(doc: &roxmltree::Document<'_>) -> String {
        doc.descendants()
            .filter(|n| n.is_text())
            .map(|n| n.text().unwrap())
            .collect()
    }

    fn rendered(expr: &str, decls: &str, wrt: &str, form: Form) -> (Problem, Vec<Derivative>, super::super::Rendered) {
        let mut p = Problem::new(expr, decls).unwrap();
        let ds = p.derive(&[wrt.to_string()], 1).unwrap();
        let ids: Vec<_> = ds.iter().map(|d| d.id).collect();
        let r = recover(&p.graph, &ids, form, Some(p.root), &p.reserved_names());
        (p, ds, r)
    }

    fn one(expr: &str, decls: &str, wrt: &str) -> String {
        let (_, _, r) = rendered(expr, decls, wrt, Form::Nested);
        math(&r.results[0])
    }

    #[test]
    fn names_get_subscripts_and_greek_letters() {
        assert_eq!(name("W1"), "<msub><mi>W</mi><mn>1</mn></msub>");
        assert_eq!(name("x_i"), "<msub><mi>x</mi><mi>i</mi></msub>");
        assert_eq!(name("lambda"), "<mi>λ</mi>");
        assert_eq!(name("x"), "<mi>x</mi>");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b&c>\"'"), "a&lt;b&amp;c&gt;&quot;&apos;");
        well_formed(&math(&M::Name("a<b".into())));
    }

    #[test]
    fn transpose_is_a_superscript_t() {
        let s = one("x'*A*x", "", "x");
        let doc = well_formed(&s);
        assert!(
            s.contains("<msup><mi>A</mi><mi mathvariant=\"normal\">T</mi></msup>"),
            "{s}"
        );
        assert!(doc.descendants().any(|n| n.has_tag_name("msup")));
    }

    #[test]
    fn hadamard_and_norm() {
        let s = one(
            "norm2(sin(W2*cos(W1*x)))^2",
            "W1: matrix(r, 100); W2: matrix(100, r)",
            "x",
        );
        let doc = well_formed(&s);
        let t = text_of(&doc);
        assert!(t.contains('⊙'), "{t}");
        assert!(
            s.contains("<msubsup><mi>W</mi><mn>1</mn><mi mathvariant=\"normal\">T</mi></msubsup>"),
            "{s}"
        );
        let f = math(&M::Pow(Box::new(M::Call("norm2", vec![M::Name("x".into())])), 2.0));
        assert!(f.contains("<msubsup><mrow><mo>‖</mo>"), "{f}");
        well_formed(&f);
    }

    #[test]
    fn inverse_transpose_and_fractions_of_powers() {
        let s = one("log(det(X))", "", "X");
        assert!(s.contains("<mo>−</mo><mi mathvariant=\"normal\">T</mi>"), "{s}");
        well_formed(&s);
        let s = one("sum(x.^-1)", "", "x");
        assert!(s.contains("⊘"), "{s}");
        well_formed(&s);
    }

    #[test]
    fn sqrt_literals_and_fills() {
        well_formed(&math(&M::Call("sqrt", vec![M::Name("a".into())])));
        let lit = math(&M::Literal(vec![vec![1.0, 2.0], vec![3.0, -4.0]], 2));
        assert!(lit.contains("<mtable>"));
        well_formed(&lit);
        let ones = math(&M::Fill(1.0, vec!["n".into(), "m".into()]));
        assert!(ones.contains("mathvariant=\"bold\""));
        well_formed(&ones);
    }

    #[test]
    fn tensors_in_index_notation() {
        let (p, ds, r) = rendered("A*x", "A: matrix(m, n)", "A", Form::Nested);
        let M::Index(t) = &r.results[0] else {
            panic!("expected index notation, got {:?}", r.results[0])
        };
        let s = math(&r.results[0]);
        let doc = well_formed(&s);
        assert!(doc.descendants().any(|n| n.has_tag_name("msub")), "{t} → {s}");
        assert!(text_of(&doc).contains('δ'), "{s}");
        let l = label(&ds[0], Some(&p.tensor_indices(&ds[0], t).unwrap()));
        assert!(l.contains("<msub><mi>f</mi><mi>i</mi></msub>"), "{l}");
        well_formed(&format!("<math xmlns=\"{NAMESPACE}\">{l}</math>"));
    }

    #[test]
    fn labels_are_fractions() {
        let d = Derivative {
            wrt: vec!["x".into(), "x".into()],
            id: crate::ir::Id(0),
        };
        let l = label(&d, None);
        assert!(l.starts_with("<mfrac>"), "{l}");
        assert!(l.contains("<msup><mo>∂</mo><mn>2</mn></msup>"), "{l}");
        well_formed(&format!("<math xmlns=\"{NAMESPACE}\">{l}</math>"));
    }

    #[test]
    fn cascade_is_a_table_of_where_lines() {
        let (_, ds, r) = rendered(
            "norm2(sin(W2*cos(W1*x)))^2",
            "W1: matrix(r, 100); W2: matrix(100, r)",
            "x",
            Form::Diag,
        );
        let mut rows: Vec<String> = r.definitions.iter().map(|(n, m)| row(&name(n), &expr(m))).collect();
        rows.push(row(&label(&ds[0], None), &expr(&r.results[0])));
        let s = display(&rows);
        let doc = well_formed(&s);
        let n = doc.descendants().filter(|n| n.has_tag_name("mtr")).count();
        assert_eq!(n, r.definitions.len() + 1);
        assert!(
            s.contains("Diag") || !r.diag_defs.is_empty() || s.contains("<mi>G</mi>"),
            "{s}"
        );
    }
}
