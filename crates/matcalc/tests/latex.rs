//! LaTeX input: formulas written as on math.stackexchange parse to the same
//! tree as their plain-syntax twins (from `tests/cases/*.mc`), the headline
//! pasted whole gives the plain gradient, and malformed LaTeX gets clear errors.

use matcalc::render::print::Style;
use matcalc::render::{self, Form};
use matcalc::syntax::ast::{Decl, DeclKind, DimExpr, Expr, ExprKind, Span};
use matcalc::syntax::latex::{extract_math, looks_like_latex, parse_latex, parse_latex_with, to_plain};
use matcalc::syntax::{parse_decls, parse_expr};
use matcalc::{ErrorKind, Problem};
use std::fmt::Write as _;

/// A span-free S-expression: `(* (' x) A)`.
fn sexp(e: &Expr) -> String {
    let mut out = String::new();
    write_sexp(e, &mut out);
    out
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
            let rows: Vec<String> = rows
                .iter()
                .map(|r| r.iter().map(sexp).collect::<Vec<_>>().join(" "))
                .collect();
            write!(out, "[{}]", rows.join("; ")).unwrap();
        }
        ExprKind::Missing => out.push('?'),
    }
}

/// Every span lies inside the text and covers its children.
fn check_spans(e: &Expr, len: usize, src: &str) {
    assert!(
        e.span.start <= e.span.end && e.span.end as usize <= len,
        "{src:?}: span {:?}",
        e.span
    );
    e.walk_children(|c| {
        assert!(
            e.span.start <= c.span.start && c.span.end <= e.span.end,
            "{src:?}: child span {:?} outside {:?}",
            c.span,
            e.span
        );
        check_spans(c, len, src);
    });
}

/// LaTeX as people write it, and its plain twin.
#[rustfmt::skip]
const TWINS: &[(&str, &str)] = &[
    // the headline, as asked
    (r"L(x) := \| \sin \left( W_2 \cos \left( W_1 x \right) \right) \|_2^2", "norm2(sin(W2*cos(W1*x)))^2"),
    (r"\left\| \sin\left(W_2 \cos(W_1 x)\right) \right\|^2", "norm2(sin(W2*cos(W1*x)))^2"),
    (r"\lVert \sin(W_{2}\cos(W_{1}x)) \rVert_{2}^{2}", "norm2(sin(W2*cos(W1*x)))^2"),
    (r"\|\sin(W_2\cos(W_1 x))\|^2_2", "norm2(sin(W2*cos(W1*x)))^2"),
    // abs, abs_dot
    (r"\sum_i \left| (A x)_i \right|", "sum(abs(A*x))"),
    (r"|x^\top y|", "abs(x'*y)"),
    // acos_tan, asin, atan
    (r"\sum_i \arccos(x_i) + \sum_i \tan(x_i)", "sum(acos(x)) + sum(tan(x))"),
    (r"\sum_{i=1}^n \arcsin x_i", "sum(asin(x))"),
    (r"\sum_{i} \arctan(x_i)", "sum(atan(x))"),
    // attention_score
    (r"\operatorname{softmax}(XWx)^T y", "softmax(X*W*x)'*y"),
    // bilinear_*
    (r"a^T X^{-1} b", "a'*inv(X)*b"),
    (r"a^\top x x^\top b", "a'*x*x'*b"),
    (r"a^{\mathsf T} X^{\mathsf T} b", "a'*X'*b"),
    (r"\mathbf{a}^\intercal \mathbf{X} \mathbf{b}", "a'*X*b"),
    // det, det_AX, det_times_trace
    (r"f(X) = \det(X)", "det(X)"),
    (r"\det(AX)", "det(A*X)"),
    (r"\det(X)\,\operatorname{tr}(X)", "det(X)*tr(X)"),
    // diag_quad, diag_trace
    (r"x^T \operatorname{diag}(y) x", "x'*diag(y)*x"),
    (r"\sum_i \operatorname{diag}(A)_i", "sum(diag(A))"),
    // dot_grad, dot_squared
    (r"\langle x, y \rangle", "x'*y"),
    (r"(x^T y)^2", "(x'*y)^2"),
    // ediv, epow
    (r"\sum_i \frac{x_i}{y_i}", "sum(x./y)"),
    (r"\sum_{i=1}^{n} x_i^3", "sum(x.^3)"),
    // elastic_net
    (r"\|Ax - b\|_2^2 + 0.5\|x\|_1 + 0.1\|x\|_2^2", "norm2(A*x - b)^2 + 0.5*norm1(x) + 0.1*norm2(x)^2"),
    // ex_exp_sum_hess, sum_exp
    (r"\sum_i e^{(Ax)_i}", "sum(exp(A*x))"),
    (r"\mathbf{1}^T \exp(Ax)", "vector(1)'*exp(A*x)"),
    // ex_frobenius_fit, frobenius_sq, frobenius_trace
    (r"\|Y - UV^T\|_F^2", "norm2(Y - U*V')^2"),
    (r"\|X\|_F^2", "norm2(X)^2"),
    (r"\operatorname{Tr}(X^\top X)", "tr(X'*X)"),
    // ex_logdet, logdet_fn, logdet_gram
    (r"\log\det X", "log(det(X))"),
    (r"\ln |X|", "log(det(X))"),
    (r"\operatorname{logdet}(X^T X)", "logdet(X'*X)"),
    // ex_logistic_loss
    (r"\sum_{i=1}^m \log\left(1 + \exp(-y_i (Xw)_i)\right)", "sum(log(1 + exp(-y.*(X*w))))"),
    // ex_quad_form
    (r"f(x) = x^\top A x", "x'*A*x"),
    (r"x'Ax", "x'*A*x"),
    (r"\mathbf{x}^{T}\mathbf{A}\mathbf{x}", "x'*A*x"),
    // ex_sin_affine_jac, ex_tanh_layer_jac
    (r"\sin(Ax + b)", "sin(A*x + b)"),
    (r"\tanh\bigl(W x + b\bigr)", "tanh(W*x + b)"),
    // ex_trace_AXB
    (r"\operatorname{tr}(AXB)", "tr(A*X*B)"),
    (r"\mathrm{Tr}\left[A X B\right]", "tr(A*X*B)"),
    // exp_energy, exp_quad
    (r"\exp(x)^T \exp(x)", "exp(x)'*exp(x)"),
    (r"e^{x^T A x}", "exp(x'*A*x)"),
    // eye_shift, eye_trace
    (r"x^T (A + I_n) x", "x'*(A + eye(n))*x"),
    (r"\operatorname{tr}(I_n X)", "tr(eye(n)*X)"),
    // gauss, gram_hess, gram_quad
    (r"e^{-x^\top x}", "exp(-x'*x)"),
    (r"x^T A^T A x", "x'*A'*A*x"),
    (r"\|A^\top A x\|^2", "norm2(A'*A*x)^2"),
    // hadamard_sum, half_power, huberish
    (r"\sum_{i,j} X_{ij} Y_{ij}", "sum(X.*Y)"),
    (r"\sum_i \sqrt{x_i}", "sum(sqrt(x))"),
    (r"\sum_{i} \sqrt{1 + (Ax - b)_i^2}", "sum(sqrt(1 + (A*x - b).^2))"),
    // jac_*
    (r"Ax", "A*x"),
    (r"Wx + b", "W*x + b"),
    (r"\operatorname{diag}(x)\, y", "diag(x)*y"),
    (r"2x", "2*x"),
    (r"-(-x)", "-(-x)"),
    (r"x \odot y", "x.*y"),
    (r"A \circ X", "A.*X"),
    (r"x x^T", "x*x'"),
    (r"\sigma(x)", "sigmoid(x)"),
    (r"\operatorname{softmax}(x)", "softmax(x)"),
    (r"\mathrm{softmax}(Wx)", "softmax(W*x)"),
    (r"(Ax)^{\circ 2}", "(A*x).^2"),
    (r"x^\top A", "x'*A"),
    (r"\operatorname{ReLU}(Ax)", "relu(A*x)"),
    (r"\exp(x)\, a", "exp(x)*a"),
    (r"1 + x", "1 + x"),
    // kernel_ridge
    (r"y^\top (K + a I_n)^{-1} y", "y'*inv(K + a*eye(n))*y"),
    // least squares, literals
    (r"\| A x - b \|^2", "norm2(A*x - b)^2"),
    (r"\begin{bmatrix} 1 & 2 \\ 3 & 4 \end{bmatrix} x", "[1 2; 3 4]*x"),
    (r"x^T \begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix} x", "x'*[1 2; 3 4]*x"),
    (r"\operatorname{tr}\left(\begin{bmatrix} 1 & -2 \\ 3 & 4 \end{bmatrix} X\right)", "tr([1 -2; 3 4]*X)"),
    // log_quad, log_sum_exp, logsumexp
    (r"\log(x^T A x)", "log(x'*A*x)"),
    (r"\log \sum_i e^{x_i}", "log(sum(exp(x)))"),
    (r"\operatorname{LSE}(Ax)", "logsumexp(A*x)"),
    // matrix powers and fits
    (r"\operatorname{tr}(A^3)", "tr(A^3)"),
    (r"x^T A^3 x", "x'*A^3*x"),
    (r"\|XY - Z\|_F^2", "norm2(X*Y - Z)^2"),
    (r"\left\| W_2 \tanh(W_1 x) - y \right\|_2^2", "norm2(W2*tanh(W1*x) - y)^2"),
    (r"a x^T x", "a*x'*x"),
    (r"x^T(-A)x", "x'*(-A)*x"),
    (r"-x^T x", "-x'*x"),
    (r"\sum_i x_i^{-2}", "sum(x.^-2)"),
    (r"\sin(\sin(\sin(\sin x)))", "sin(sin(sin(sin(x))))"),
    // norms
    (r"\|x\|_1", "norm1(x)"),
    (r"\|Ax - b\|_1", "norm1(A*x - b)"),
    (r"\|x - y\|", "norm2(x - y)"),
    (r"\lVert x \rVert_2", "norm2(x)"),
    (r"\norm{x}^2", "norm2(x)^2"),
    // rayleigh, relu, scalars
    (r"\frac{x^T A x}{x^T x}", "x'*A*x/(x'*x)"),
    (r"\sum_i \operatorname{relu}((Ax)_i)", "sum(relu(A*x))"),
    (r"\mathrm{relu}(x)^T \mathrm{relu}(x)", "relu(x)'*relu(x)"),
    (r"\frac{1}{x^T x}", "1/(x'*x)"),
    (r"\frac{x}{a}", "x/a"),
    (r"e^{a^2}", "exp(a^2)"),
    (r"\sin(a)\cos(a)", "sin(a)*cos(a)"),
    (r"\sin a \cos a", "sin(a)*cos(a)"),
    (r"a^2 b", "a^2*b"),
    // sigmoid, sign, smooth_abs, softmax_*
    (r"\sum_i \sigma(x_i)", "sum(sigmoid(x))"),
    (r"\sigma(w^T x)", "sigmoid(w'*x)"),
    (r"\sum_i \operatorname{sgn}(x_i)\, x_i^2", "sum(sign(x).*x.^2)"),
    (r"\sum_i \sqrt{x_i x_i + 1}", "sum(sqrt(x.*x + 1))"),
    (r"\|\operatorname{softmax}(x)\|^2", "norm2(softmax(x))^2"),
    (r"\sum_i \operatorname{softmax}(x)_i\, y_i", "sum(softmax(x).*y)"),
    (r"-y^T \log \operatorname{softmax}(Wx)", "-y'*log(softmax(W*x))"),
    (r"\sum_i \log\left(1 + e^{(Ax)_i}\right)", "sum(log(1 + exp(A*x)))"),
    // sums
    (r"\sum_i \log x_i", "sum(log(x))"),
    (r"\sum_i \frac{1}{x_i}", "sum(1./x)"),
    (r"\sum_i x_i", "sum(x)"),
    (r"\sum_i (Ax)_i", "sum(A*x)"),
    // symmetric_*, trace_*
    (r"x^T S^{-1} x", "x'*inv(S)*x"),
    (r"\operatorname{tr}(SA)", "tr(S*A)"),
    (r"\operatorname{tr}(X^{-1})", "tr(inv(X))"),
    (r"\operatorname{tr}\!\left(X^{-1} A\right)", "tr(inv(X)*A)"),
    (r"\operatorname{tr}(X X^T X X^T)", "tr(X*X'*X*X')"),
    (r"\operatorname{tr}(X)^2", "tr(X)^2"),
    (r"\operatorname{tr}(A X^{-1} B)", "tr(A*inv(X)*B)"),
    (r"\operatorname{tr}(X^2)", "tr(X^2)"),
    (r"\operatorname{tr}(X^T A X)", "tr(X'*A*X)"),
    (r"\|AXB - C\|_F^2", "norm2(A*X*B - C)^2"),
    (r"x^T W^T W x", "x'*W'*W*x"),
    // more styles: bold, Greek, sizes, spacing, Unicode
    (r"\boldsymbol{\theta}^\top \mathbf{x}", "theta'*x"),
    (r"{\bf W}_1 x", "W1*x"),
    (r"\Bigl( W^{(1)} x \Bigr)^T y", "(W1*x)'*y"),
    (r"\frac12 \|Ax - b\|^2", "1/2*norm2(A*x - b)^2"),
    (r"\tfrac{1}{2} \|x\|^2", "1/2*norm2(x)^2"),
    (r"\lambda \|w\|_2^2", "lambda*norm2(w)^2"),
    (r"\sqrt{x^T x}", "sqrt(x'*x)"),
    (r"X^{-T} a", "inv(X)'*a"),
    (r"\sin^2 x", "sin(x)^2"),
    (r"‖W₂x‖", "norm2(W2*x)"),
    (r"xᵀAx", "x'*A*x"),
    (r"x \cdot y + 1", "x*y + 1"),
];

#[test]
fn latex_twins_parse_to_the_plain_ast() {
    assert!(TWINS.len() >= 40);
    let mut failures = Vec::new();
    for &(tex, plain) in TWINS {
        let want = sexp(&parse_expr(plain).unwrap_or_else(|e| panic!("plain twin {plain:?}: {e}")));
        match parse_latex(tex) {
            Ok(p) => {
                let got = sexp(&p.expr);
                if got != want {
                    failures.push(format!("{tex}\n   got  {got}\n   want {want}"));
                    continue;
                }
                check_spans(&p.expr, tex.len(), tex);
                // The echo is our syntax and reads back to the same tree.
                let back = parse_expr(&p.echo).unwrap_or_else(|e| panic!("echo {:?} of {tex:?}: {e}", p.echo));
                assert_eq!(sexp(&back), want, "echo {:?} of {tex:?}", p.echo);
            }
            Err(e) => failures.push(format!("{tex}\n   error: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} twins differ:\n{}",
        failures.len(),
        TWINS.len(),
        failures.join("\n")
    );
}

/// The declarations as (name, kind) pairs, sorted.
fn kinds(decls: &[Decl]) -> Vec<(String, DeclKind)> {
    let mut v: Vec<_> = decls.iter().map(|d| (d.name.clone(), d.kind.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// LaTeX with declarations, and the plain expression and declarations.
#[rustfmt::skip]
const DECLARED: &[(&str, &str, &str)] = &[
    (
        r"L(x) := \| \sin \left( W_2 \cos \left( W_1 x \right) \right) \|_2^2, where r \in [1, 95], W_1 \in \mathbb{R}^{r \times 100} and W_2 \in \mathbb{R}^{100 \times r}",
        "norm2(sin(W2*cos(W1*x)))^2",
        "W1: matrix(r, 100); W2: matrix(100, r); r: dim in 1..95",
    ),
    (
        r"\frac{1}{1 + e^{-x}}, \quad x \in \mathbb{R}^n",
        "1./(1 + exp(-x))",
        "x: vector(n)",
    ),
    (
        r"x \cdot y, \quad x, y \in \mathbb{R}^n",
        "x'*y",
        "x: vector(n); y: vector(n)",
    ),
    (
        r"f(x) = \|Ax - b\|_2^2 + \lambda \|x\|_2^2 \text{ where } A \in \mathbb{R}^{m\times n}, b \in \mathbb R^m, \lambda > 0",
        "norm2(A*x - b)^2 + lambda*norm2(x)^2",
        "A: matrix(m, n); b: vector(m); lambda: scalar",
    ),
    (
        r"$$f(\mathbf{x}) = \mathbf{x}^\top \Sigma^{-1} \mathbf{x}$$ with $\Sigma \in \mathbb{S}^n$",
        "x'*inv(Sigma)*x",
        "Sigma: symmetric(n)",
    ),
    (
        r"\alpha x^T x,\ \alpha \in \mathbb{R},\ x \in \mathbb{R}^{n}",
        "alpha*x'*x",
        "alpha: scalar; x: vector(n)",
    ),
    (
        r"x^2 \text{ for } x \in \mathbb{R}^n",
        "x.^2",
        "x: vector(n)",
    ),
    (
        r"\|X\|_F, \qquad X \in \mathbb{R}^{m \times n}, \; 1 \le m \le 10, \; n \in \{1, \dots, 20\}",
        "norm2(X)",
        "X: matrix(m, n); m: dim in 1..10; n: dim in 1..20",
    ),
    (
        r"\mathbf{1}_n^\top \log(\sigma(\mathbf{X}\mathbf{w})), \text{ where } \mathbf{X} \in \mathbb{R}^{N \times d}, \mathbf{w} \in \mathbb{R}^d, N \in \mathbb{N}",
        "vector(1)'*log(sigmoid(X*w))",
        "N: dim; X: matrix(N, d); w: vector(d)",
    ),
    (
        r"x^T A x \quad (A \in \mathbb{R}^{n \times n}, x \in \mathbb{R}^n, t \in [0, 1])",
        "x'*A*x",
        "A: matrix(n, n); t: scalar; x: vector(n)",
    ),
];

#[test]
fn declarations_are_read_from_the_text() {
    for &(tex, plain, decls) in DECLARED {
        let p = parse_latex(tex).unwrap_or_else(|e| panic!("{tex:?}: {e}"));
        let want = sexp(&parse_expr(plain).unwrap());
        assert_eq!(sexp(&p.expr), want, "{tex}");
        assert_eq!(kinds(&p.decls), kinds(&parse_decls(decls).unwrap()), "{tex}");
        for d in &p.decls {
            assert!(d.span.end as usize <= tex.len(), "{tex}: {d:?}");
        }
        // The declarations print as our syntax and read back.
        assert_eq!(kinds(&parse_decls(&p.decls_text()).unwrap()), kinds(&p.decls), "{tex}");
    }
}

#[test]
fn declaration_forms() {
    let one = |tex: &str| -> (String, DeclKind) {
        let p = parse_latex(&format!(r"x, \quad {tex}")).unwrap_or_else(|e| panic!("{tex:?}: {e}"));
        assert_eq!(p.decls.len(), 1, "{tex}");
        (p.decls[0].name.clone(), p.decls[0].kind.clone())
    };
    let sym = |s: &str| DimExpr::Sym(s.to_string());
    assert_eq!(
        one(r"W_1 \in \mathbb{R}^{r \times 100}"),
        ("W1".into(), DeclKind::Matrix(sym("r"), DimExpr::Num(100)))
    );
    assert_eq!(one(r"y \in \mathbb R^n"), ("y".into(), DeclKind::Vector(sym("n"))));
    assert_eq!(one(r"y \in \R^{n}"), ("y".into(), DeclKind::Vector(sym("n"))));
    assert_eq!(one(r"y ∈ ℝ^{m}"), ("y".into(), DeclKind::Vector(sym("m"))));
    assert_eq!(one(r"\alpha \in \mathbb{R}"), ("alpha".into(), DeclKind::Scalar));
    assert_eq!(one(r"\beta \geq 0"), ("beta".into(), DeclKind::Scalar));
    assert_eq!(one(r"\mu \in (0, \infty)"), ("mu".into(), DeclKind::Scalar));
    assert_eq!(one(r"A \in \mathbb{S}^n"), ("A".into(), DeclKind::Symmetric(sym("n"))));
    assert_eq!(
        one(r"A \in \mathbb{S}^{n}_{++}"),
        ("A".into(), DeclKind::Symmetric(sym("n")))
    );
    assert_eq!(one(r"r \in [1, 95]"), ("r".into(), DeclKind::Dim(Some((1, 95)))));
    assert_eq!(one(r"r \in \{1,\dots,95\}"), ("r".into(), DeclKind::Dim(Some((1, 95)))));
    assert_eq!(
        one(r"r \in \{1, 2, \ldots, 95\}"),
        ("r".into(), DeclKind::Dim(Some((1, 95))))
    );
    assert_eq!(one(r"1 \leq r \leq 95"), ("r".into(), DeclKind::Dim(Some((1, 95)))));
    assert_eq!(one(r"0 < r < 96"), ("r".into(), DeclKind::Dim(Some((1, 95)))));
    assert_eq!(
        one(r"\mathbf{W}_{12} \in \mathbb{R}^{n_1 \times n_2}"),
        ("W12".into(), DeclKind::Matrix(sym("n1"), sym("n2")))
    );
    assert_eq!(
        one(r"\boldsymbol\theta \in \mathbb{R}^{d}"),
        ("theta".into(), DeclKind::Vector(sym("d")))
    );
    assert_eq!(
        one(r"x_{new} \in \mathbb{R}^{d}"),
        ("x_new".into(), DeclKind::Vector(sym("d")))
    );
    // Definiteness tells no size: nothing is declared.
    let p = parse_latex(r"x^T A x, \quad A \succ 0").unwrap();
    assert!(p.decls.is_empty());
    // Several names share one set.
    let p = parse_latex(r"\operatorname{tr}(AXB), \quad A, X, B \in \mathbb{R}^{n \times n}").unwrap();
    assert_eq!(p.decls_text(), "A: matrix(n, n); X: matrix(n, n); B: matrix(n, n)");
}

#[test]
fn the_function_name_on_the_left_gives_the_variable() {
    let wrt = |tex: &str| parse_latex(tex).unwrap_or_else(|e| panic!("{tex:?}: {e}")).wrt;
    assert_eq!(wrt(r"L(x) := \|x\|^2").as_deref(), Some("x"));
    assert_eq!(wrt(r"f(X) = \log\det X").as_deref(), Some("X"));
    assert_eq!(wrt(r"f(W_1) \coloneqq \|W_1 x\|^2").as_deref(), Some("W1"));
    assert_eq!(
        wrt(r"\mathcal{L}(\boldsymbol{\theta}) = \|X\theta - y\|^2").as_deref(),
        Some("theta")
    );
    assert_eq!(wrt(r"f_\theta(x) \triangleq \|x\|^2").as_deref(), Some("x"));
    assert_eq!(wrt(r"\|x\|^2"), None);
    assert_eq!(wrt(r"f = \|x\|^2"), None);
    let p = parse_latex(r"J(W_1, W_2) = \|W_2 W_1 x - y\|^2").unwrap();
    assert_eq!(p.params, ["W1", "W2"]);
    assert_eq!(p.wrt.as_deref(), Some("W1"));
    // A second `=` ends the formula.
    assert_eq!(parse_latex(r"f(x) = x^T x = \|x\|^2").unwrap().echo, "x'*x");
    // "with respect to" in prose.
    let p = parse_latex(r"Differentiate $\|Ax - b\|^2$ with respect to $x$.").unwrap();
    assert_eq!((p.echo.as_str(), p.wrt.as_deref()), ("norm2(A*x - b)^2", Some("x")));
}

#[test]
fn prose_around_the_mathematics() {
    let text = "\\documentclass{article}\n\\begin{document}\n\
        % the problem from the forum\n\
        Let $A \\in \\mathbb{R}^{m \\times n}$ and $b \\in \\mathbb{R}^m$. How do I compute the gradient of\n\
        \\begin{equation}\n  f(x) = \\frac{1}{2} \\left\\| A x - b \\right\\|_2^2 \\label{eq:ls}\n\\end{equation}\n\
        where $x \\in \\mathbb{R}^n$? It costs \\$5.\n\\end{document}\n";
    let p = parse_latex(text).unwrap();
    assert_eq!(p.echo, "1/2*norm2(A*x - b)^2");
    assert_eq!(p.decls_text(), "A: matrix(m, n); b: vector(m); x: vector(n)");
    assert_eq!(p.wrt.as_deref(), Some("x"));
    // Spans point into the whole text.
    let ExprKind::Binary(_, _, norm) = &p.expr.kind else {
        panic!()
    };
    assert_eq!(&text[norm.span.range()], "\\left\\| A x - b \\right\\|_2^2");

    for (text, formula) in [
        (r"\[ x^T A x \]", "x^T A x"),
        (r"\( x^T A x \)", "x^T A x"),
        (r"$$\|x\|$$", r"\|x\|"),
        (r"see \begin{align*} g(y) &= e^{y} \end{align*}", "g(y) &= e^{y}"),
    ] {
        let ex = extract_math(text).unwrap();
        assert_eq!(&text[ex.formula.range()], formula, "{text}");
    }
    let ex = extract_math(r"$\|x\|$ where $x \in \mathbb{R}^n$ and $A, B \in \mathbb{S}^n$").unwrap();
    assert_eq!(ex.decls.len(), 2);
    let ex = extract_math(
        r"L(x) := \|x\|, where r \in [1, 95], W_1 \in \mathbb{R}^{r \times 100} and W_2 \in \mathbb{R}^{100 \times r}",
    )
    .unwrap();
    assert_eq!(ex.decls.len(), 3);
}

#[test]
fn detection() {
    for tex in [
        r"\|x\|^2",
        r"x^{T} A x",
        "$x^T A x$",
        r"W_{1} x",
        "‖x‖",
        "xᵀAx",
        r"\sin x",
    ] {
        assert!(looks_like_latex(tex), "{tex}");
    }
    for plain in [
        "norm2(sin(W2*cos(W1*x)))^2",
        "x'*A*x",
        "sum(log(1 + exp(-y.*(X*w))))",
        "W_1*x",
        "x^T",
    ] {
        assert!(!looks_like_latex(plain), "{plain}");
    }
}

#[test]
fn choices_depend_on_declarations() {
    let with = |tex: &str, decls: &str| {
        let p = parse_latex_with(tex, &parse_decls(decls).unwrap()).unwrap_or_else(|e| panic!("{tex:?}: {e}"));
        p.echo
    };
    // `^{-1}`: an inverse of a matrix, a power of anything else.
    assert_eq!(with(r"X^{-1}", ""), "inv(X)");
    assert_eq!(with(r"x^{-1}", ""), "x^(-1)");
    assert_eq!(with(r"X^{-1}", "X: scalar"), "X^(-1)");
    assert_eq!(with(r"a^{-1}", "a: matrix(n, n)"), "inv(a)");
    assert_eq!(with(r"(X^T X)^{-1}", ""), "inv(X'*X)");
    assert_eq!(with(r"(x^T x)^{-1}", "x: vector(n)"), "(x'*x)^(-1)");
    // `|X|` of a matrix is its determinant.
    assert_eq!(with(r"|X|", ""), "det(X)");
    assert_eq!(with(r"|x|", ""), "abs(x)");
    // Powers and quotients of vectors are elementwise.
    assert_eq!(with(r"x^2", "x: vector(n)"), "x.^2");
    assert_eq!(with(r"x^2", ""), "x^2");
    assert_eq!(with(r"\frac{1}{x}", "x: vector(n)"), "1./x");
    assert_eq!(with(r"\frac{1}{x}", ""), "1/x");
    assert_eq!(with(r"\frac{1}{Ax}", "x: vector(n)"), "1./(A*x)");
    // `\cdot` of two vectors is their inner product.
    assert_eq!(with(r"x \cdot y", "x: vector(n); y: vector(n)"), "x'*y");
    // e, I and sigma are ordinary names once declared.
    assert_eq!(with(r"e^{2}", "e: scalar"), "e^2");
    assert_eq!(with(r"\sigma(x)", "sigma: scalar"), "sigma*x");
    assert_eq!(with(r"I x", "I: matrix(n, n)"), "I*x");
}

#[test]
fn greek_coefficients_are_assumed_scalars() {
    let p = parse_latex(
        r"\|Ax - b\|^2 + \lambda \|x\|_1 + 2\mu \|x\|^2 + \frac{\|x\|^2}{\sigma^2} + \frac{\gamma}{2} \|x\|^2",
    )
    .unwrap();
    assert_eq!(p.assumed, ["lambda", "mu", "sigma", "gamma"]);
    assert!(p.decls_text().contains("lambda: scalar"));
    // Not a coefficient: a vector parameter.
    let p = parse_latex(r"\theta^T x + \lambda_2 \|\theta\|^2").unwrap();
    assert_eq!(p.assumed, ["lambda2"]);
    // Declared elsewhere: not assumed.
    let p = parse_latex_with(r"\lambda x", &parse_decls("lambda: vector(n)").unwrap());
    assert!(p.unwrap().assumed.is_empty());
}

/// The gradients of a problem, as plain expressions.
fn gradients(p: &mut Problem, wrt: &[&str]) -> Vec<String> {
    let wrt: Vec<String> = wrt.iter().map(|s| s.to_string()).collect();
    let ds = p.derive(&wrt, 1).unwrap();
    let ids: Vec<_> = ds.iter().map(|d| d.id).collect();
    let reserved = p.reserved_names();
    let (_, lines) = render::recover(&p.graph, &ids, Form::Nested, Some(p.root), &reserved).lines(&Style::EXPR);
    lines
}

#[test]
fn the_headline_pasted_whole_gives_the_plain_gradient() {
    let tex = r"L(x) := \| \sin \left( W_2 \cos \left( W_1 x \right) \right) \|_2^2, where r \in [1, 95], W_1 \in \mathbb{R}^{r \times 100} and W_2 \in \mathbb{R}^{100 \times r}";
    let lp = parse_latex(tex).unwrap();
    assert_eq!(lp.wrt.as_deref(), Some("x"));
    let mut from_latex = lp.problem().unwrap();
    let mut plain = Problem::new(
        "norm2(sin(W2*cos(W1*x)))^2",
        "W1: matrix(r, 100); W2: matrix(100, r); r: dim in 1..95",
    )
    .unwrap();
    let want = gradients(&mut plain, &["x", "W1", "W2"]);
    assert_eq!(gradients(&mut from_latex, &["x", "W1", "W2"]), want);
    assert_eq!(
        want[0],
        "-2*W1'*(sin(W1*x).*(W2'*(sin(W2*cos(W1*x)).*cos(W2*cos(W1*x)))))"
    );
    assert_eq!(from_latex.assumed, plain.assumed);
    // Spans point into the LaTeX: the name `W1` is written `W_1`.
    let mut idents = Vec::new();
    fn collect<'a>(e: &'a Expr, out: &mut Vec<(&'a str, Span)>) {
        if let ExprKind::Ident(n) = &e.kind {
            out.push((n, e.span));
        }
        e.walk_children(|c| collect(c, out));
    }
    collect(&lp.expr, &mut idents);
    let texts: Vec<(&str, &str)> = idents.iter().map(|(n, s)| (*n, &tex[s.range()])).collect();
    assert_eq!(texts, [("W2", "W_2"), ("W1", "W_1"), ("x", "x")]);
    assert_eq!(
        &tex[lp.expr.span.range()],
        r"\| \sin \left( W_2 \cos \left( W_1 x \right) \right) \|_2^2"
    );
}

#[test]
fn typing_errors_point_into_the_latex() {
    let tex = r"\|A x\|^2, \quad A \in \mathbb{R}^{3 \times 4}, x \in \mathbb{R}^5";
    let e = parse_latex(tex).unwrap().problem().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    let labelled: Vec<&str> = e.labels.iter().map(|l| &tex[l.span.range()]).collect();
    assert!(labelled.contains(&"A") && labelled.contains(&"x"), "{labelled:?}");
}

/// Malformed LaTeX: the text under the error's primary span, and a part of its message.
#[rustfmt::skip]
const ERRORS: &[(&str, &str, &str)] = &[
    (r"\|x\|^2 + \sinn(x)", r"\sinn", r"unknown LaTeX command `\sinn`"),
    (r"x y, \quad x, y \in \mathbb{R}^n", "x y", "juxtaposition of two vectors `x y` is ambiguous"),
    (r"x \times y, \quad x, y \in \mathbb{R}^3", r"x \times y", "cross product"),
    (r"\frac{1}{2", "{", "unclosed `{`"),
    (r"\sin\left( x + 1", r"\left(", r"unclosed `\left(`"),
    (r"\left( x \right]", r"\right]", r"expected `\right)` or an operator, found `\right]`"),
    (r"\| x + 1", r"\|", r"unclosed `\|`"),
    (r"(x + 1))", ")", "unexpected `)`"),
    (r"x^", "^", "`^` needs a superscript"),
    (r"x +", "+", "expected an expression after `+`"),
    (r"\frac{1}", r"\frac", r"`\frac` needs its argument in braces"),
    (r"\sqrt", r"\sqrt", r"`\sqrt` needs its argument in braces"),
    (r"\sin", r"\sin", r"`\sin` needs an argument"),
    (r"\|X\|_2, \quad X \in \mathbb{R}^{m \times n}", "_2", "spectral norm"),
    (r"\|X\|_2", "_2", "spectral norm"),
    (r"\|x\|_\infty", r"_\infty", r"the norm `_\infty` is not supported"),
    (r"\nabla_x \|x\|^2", r"\nabla", "write the function, not its derivative"),
    (r"\max(x, 0)", r"\max", r"`\max` is not supported"),
    (r"x^\top A x + I", "I", "the identity matrix `I` needs a size"),
    (r"\sum_i y", "y", "the summand does not use the index `i`"),
    (r"\sum x_i", r"\sum", r"`\sum` needs its index"),
    (r"\sum_i X_{ij}", "{ij}", "cannot read the subscript `{ij}` in a sum"),
    (r"x_{t-1}^2", "{t-1}", "cannot read the subscript `{t-1}` as part of a name"),
    (r"$x^T A x", "$", "unclosed `$`"),
    (r"\|x\|, \quad x^T \in \mathbb{R}^n", "^", r"expected `\in` after `x`, found `^`"),
    (r"W \in \mathbb{C}^{n}", r"W \in \mathbb{C}^{n}", "no formula found"),
    (r"x, \quad x \in \mathbb{C}^{n}", r"\mathbb{C}", "complex numbers are not supported"),
    (r"x, \quad r \in [95, 1]", "95, 1", "empty range `[95, 1]`"),
    (r"x, \quad r \in [0.5, 1", "[0.5, 1", "cannot read the interval"),
    (r"x, \quad x \in \mathbb{R}^{m \times}", r"{m \times}", r"cannot read the sizes `{m \times}`"),
    (r"x, \quad x \in \mathbb{R}^{m \times n \times p}", r"{m \times n \times p}", "more than two axes"),
    (r"x, \quad x \in \mathbb{R}^n, x \in \mathbb{R}^m", r"x \in \mathbb{R}^m", "`x` is declared twice"),
    (r"\|x\|^2 + \|y\|^2, \|z\|", r"\|z\|", r"two formulas: `\|x\|^2 + \|y\|^2` and `\|z\|`"),
    (r"f(x) = ", "=", "expected a formula after `=`"),
    (r"f(x + 1) = x", "f(x + 1)", "expected a function name such as `f(x)` left of `=`, found `f(x + 1)`"),
    (r"\left. x \right|", r"\left.", r"`\left.` (an invisible delimiter) is not supported"),
    (r"\begin{cases} 1 \end{cases}", r"\begin{cases}", "the environment `cases` is not supported in a formula"),
    (r"\begin{bmatrix} 1 & 2 \\ 3 \end{bmatrix}", r"\begin{bmatrix} 1 & 2 \\ 3 \end{bmatrix}", "row 2 has 1 entries but row 1 has 2"),
    (r"\begin{bmatrix} 1 & x \end{bmatrix}", "x", "matrix entries must be numbers, found `x`"),
    (r"x ⊕ y", "⊕", "unexpected character `⊕`"),
    (r"x \top", r"\top", r"`\top` is not an expression"),
    (r"()", "()", "empty parentheses"),
    (r"x \in", r"x \in", "no formula found"),
    (r"\|x\| \in \mathbb{R}", r"\|x\| \in \mathbb{R}", "no formula found"),
    (r"\mathbf{x + y}", r"\mathbf{x + y}", r"cannot read `\mathbf{x + y}` as a name"),
    (r"x^{}", "{}", "empty superscript"),
    (r"\log_2 x", "_", r"`\log` takes no subscript"),
    (r"\sin^T x", "T", r"cannot read `T` on a function"),
    (r"\langle x y \rangle", r"\rangle", r"expected `,` in the inner product"),
    (r"\mathbb{E}[x]", r"\mathbb{E}", r"`\mathbb{E}` belongs in a declaration"),
    (r"x \\ y", "y", "two formulas"),
    ("", "", "no formula found"),
];

#[test]
fn malformed_latex_gets_clear_errors() {
    let mut failures = Vec::new();
    for &(tex, at, message) in ERRORS {
        match parse_latex(tex) {
            Ok(p) => failures.push(format!("{tex:?} parsed as {}", p.echo)),
            Err(e) => {
                let under = e.span().map(|s| &tex[s.range()]);
                if e.kind != ErrorKind::Syntax || e.hint.is_none() || under != Some(at) || !e.message.contains(message)
                {
                    failures.push(format!(
                        "{tex:?}\n   got  {:?} at {under:?}: {} (hint: {:?})\n   want at {at:?}: {message}",
                        e.kind, e.message, e.hint
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} errors differ:\n{}",
        failures.len(),
        ERRORS.len(),
        failures.join("\n")
    );
    // Hints name the nearest command.
    assert_eq!(
        parse_latex(r"\|x\|^2 + \sinn(x)").unwrap_err().hint.unwrap(),
        r"did you mean `\sin`?"
    );
    assert_eq!(
        parse_latex(r"\opertorname{tr}(X)").unwrap_err().hint.unwrap(),
        r"did you mean `\operatorname`?"
    );
    assert_eq!(
        parse_latex(r"\frac{1}{\lamda}").unwrap_err().hint.unwrap(),
        r"did you mean `\lambda`?"
    );
    assert_eq!(
        parse_latex(r"x y, \quad x, y \in \mathbb{R}^n")
            .unwrap_err()
            .hint
            .unwrap(),
        "did you mean `x^T y` (a number) or `x y^T` (a matrix)?"
    );
}

#[test]
fn deep_nesting_is_refused_without_crashing() {
    let deep = format!("{}x{}", r"\left(".repeat(5000), r"\right)".repeat(5000));
    let e = parse_latex(&deep).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Limit);
    let primes = format!("x{}", "'".repeat(100_000));
    assert_eq!(parse_latex(&primes).unwrap_err().kind, ErrorKind::Limit);
    // Long flat chains are fine, and print without recursion.
    let long = vec!["x"; 20_000].join(" + ");
    let p = parse_latex(&format!(r"\|{long}\|")).unwrap();
    assert!(p.echo.starts_with("norm2(x + x + "));
    let prod = vec!["A"; 20_000].join(" ");
    assert!(parse_latex(&prod).unwrap().echo.starts_with("A*A*A"));
}

#[test]
fn plain_printing_round_trips() {
    for plain in [
        "-x^2",
        "(-x)^2",
        "-(a*b)",
        "a - (b - c)",
        "a/(b*c)",
        "a*b/c",
        "x'^2",
        "a^b'",
        "(a^b)^c",
        "a^b^c",
        "-(-x)",
        "2*(-x)",
        "(x + y)'",
        "[1 -2; 3 4]*x",
        "inv(X)'*a",
        "x.^-0.5",
    ] {
        let e = parse_expr(plain).unwrap();
        let printed = to_plain(&e);
        assert_eq!(
            sexp(&parse_expr(&printed).unwrap()),
            sexp(&e),
            "{plain} printed as {printed}"
        );
    }
}

/// Random LaTeX-ish texts never panic, and whatever parses echoes to our syntax that reads
/// back to the same tree.
#[test]
fn random_latex_never_panics_and_echoes_faithfully() {
    #[rustfmt::skip]
    const PARTS: &[&str] = &[
        r"\|", r"\left(", r"\right)", r"\left\|", r"\right\|", "^", "_", "{", "}", "x", "A", "W_1", r"\frac",
        r"\sum_i", "x_i", ",", r"\in", r"\mathbb{R}^n", r"\mathbb{R}^{m \times n}", "=", ":=", "$", r"\sqrt", "|",
        "'", "-", "+", r"\cdot", "2", r"\begin{bmatrix}", "&", r"\\", r"\end{bmatrix}", r"\sin", "e^", "I_n",
        r"\langle", r"\rangle", " ", "é", "²", "⁻", r"\mathbf{", "[", "]", "(", ")", r"\{", r"\}", "T", r"^\top",
        "^{-1}", r"\log\det", "where", " and ", r"\lambda", r"\quad", r"\text{ for }", "L(x)", "1", "95",
        r"\odot", r"\times", r"\operatorname{tr}", r"\foo", "_2^2", "_F", r"\mathbf{1}", "%", "\n", "y", "X",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut parsed = 0;
    for _ in 0..20_000 {
        let len = 1 + next(24);
        let text: String = (0..len).map(|_| PARTS[next(PARTS.len())]).collect();
        let Ok(p) = parse_latex(&text) else { continue };
        parsed += 1;
        check_spans(&p.expr, text.len(), &text);
        let back = parse_expr(&p.echo).unwrap_or_else(|e| panic!("{text:?} echoed as {:?}: {e}", p.echo));
        assert_eq!(sexp(&back), sexp(&p.expr), "{text:?} echoed as {:?}", p.echo);
        let decls = p.decls_text();
        assert!(parse_decls(&decls).is_ok(), "{text:?}: declarations {decls:?}");
    }
    assert!(parsed > 100, "only {parsed} random texts parsed");
}
