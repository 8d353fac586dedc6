//! The table of rules an explanation cites: one entry per kind of IR node, each
//! with its name, its differential (written out by differentiating a small
//! example with the engine itself, so a new function brings its explanation
//! with it), and the Frobenius-product identity used to move the operator onto
//! the other side of `:` when back-substituting.

use crate::diff;
use crate::ir::{Dim, Func, Graph, Id, Labels, Node};
use crate::render::mexpr::Recover;
use crate::render::print::{self, Flavour, Style};

/// Marks a differential's name: `d·x` prints as `dx` in text and `\mathrm{d}x` in LaTeX.
pub const DIFF_MARK: &str = "d\u{200b}";

/// A differentiation rule, as cited in an explanation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// d(A + B) = dA + dB.
    Sum,
    /// d(αX) = dα X + α dX, α a scalar.
    Scaling,
    /// d(AB) = dA B + A dB.
    MatrixProduct,
    /// d(x yᵀ) = dx yᵀ + x dyᵀ.
    Outer,
    /// d(A ⊙ B) = dA ⊙ B + A ⊙ dB.
    Hadamard,
    /// d(A : B) = dA : B + A : dB.
    Frobenius,
    /// d f(X) = f′(X) ⊙ dX.
    Elementwise(Func),
    /// d Xᵖ = p Xᵖ⁻¹ ⊙ dX (the exponent, as bits).
    Power(u64),
    /// d X⁻¹ = −X⁻¹ dX X⁻¹.
    Inverse,
    /// d det X = det(X) X⁻ᵀ : dX.
    Det,
    /// d log det X = X⁻ᵀ : dX.
    LogDet,
    /// d lse(x) = softmax(x) : dx.
    LogSumExp,
    /// d softmax(x) = s ⊙ dx − s sᵀdx.
    Softmax,
    /// d Xᵀ = dXᵀ.
    Transpose,
    /// d tr X = I : dX.
    Trace,
    /// d sum(X) = 𝟏𝟏ᵀ : dX, and other sums over axes.
    Reduce,
    /// d diag(X) = diag(dX), d Diag(x) = Diag(dx).
    Diagonal,
}

/// An identity of the Frobenius product used to move an operator across `:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// A : B = B : A = Aᵀ : Bᵀ.
    Symmetry,
    /// C : AB = CBᵀ : A = AᵀC : B.
    Product,
    /// A : (B ⊙ C) = (A ⊙ B) : C.
    Hadamard,
    /// A : (αB) = (αA) : B.
    Scalar,
    /// A : (B + C) = A : B + A : C.
    Distribute,
    /// tr(A) = I : A, sum(A) = 𝟏𝟏ᵀ : A, diag: A : Diag(b) = diag(A) : b.
    Reduction,
}

impl Identity {
    /// Every identity, in the order the notation section lists them.
    pub const ALL: [Identity; 6] = [
        Identity::Symmetry,
        Identity::Product,
        Identity::Hadamard,
        Identity::Scalar,
        Identity::Distribute,
        Identity::Reduction,
    ];

    /// The identity written out.
    pub fn formula(self, style: &Style) -> String {
        let latex = style.flavour == Flavour::Latex;
        let t = if latex {
            match self {
                Identity::Symmetry => "A \\mathbin{:} B = B \\mathbin{:} A = A^\\top \\mathbin{:} B^\\top",
                Identity::Product => "C \\mathbin{:} AB = CB^\\top \\mathbin{:} A = A^\\top C \\mathbin{:} B",
                Identity::Hadamard => "A \\mathbin{:} (B \\odot C) = (A \\odot B) \\mathbin{:} C",
                Identity::Scalar => "A \\mathbin{:} (\\alpha B) = (\\alpha A) \\mathbin{:} B",
                Identity::Distribute => "A \\mathbin{:} (B + C) = A \\mathbin{:} B + A \\mathbin{:} C",
                Identity::Reduction => {
                    "\\operatorname{tr}(A) = I \\mathbin{:} A,\\quad \\operatorname{sum}(A) = \\mathbf{1}\\mathbf{1}^\\top \\mathbin{:} A"
                }
            }
        } else {
            match self {
                Identity::Symmetry => "A : B = B : A = Aᵀ : Bᵀ",
                Identity::Product => "C : AB = CBᵀ : A = AᵀC : B",
                Identity::Hadamard => "A : (B ⊙ C) = (A ⊙ B) : C",
                Identity::Scalar => "A : (αB) = (αA) : B",
                Identity::Distribute => "A : (B + C) = A : B + A : C",
                Identity::Reduction => "tr(A) = I : A,  sum(A) = 𝟏𝟏ᵀ : A",
            }
        };
        t.to_string()
    }
}

impl Rule {
    /// The rule applied at node `v` (`None` for leaves).
    pub fn of(g: &Graph, v: Id) -> Option<Rule> {
        Some(match g.node(v) {
            Node::Var(_) | Node::Const(_) | Node::Fill(..) | Node::Literal(..) | Node::Delta(_) => return None,
            Node::Add(_) => Rule::Sum,
            Node::Mul(_, _, s1, s2, s3) => {
                let contracted = s1.iter().chain(s2.iter()).any(|l| !s3.has(*l));
                if s1.is_empty() || s2.is_empty() {
                    Rule::Scaling
                } else if s3.is_empty() {
                    Rule::Frobenius
                } else if !contracted && s1.iter().all(|l| !s2.has(*l)) {
                    Rule::Outer
                } else if !contracted {
                    Rule::Hadamard
                } else {
                    Rule::MatrixProduct
                }
            }
            Node::Reindex(_, ia, out) => {
                let repeated = ia
                    .iter()
                    .enumerate()
                    .any(|(k, l)| ia.iter().skip(k + 1).any(|m| m == l));
                if out.len() == ia.len() && !repeated {
                    Rule::Transpose
                } else if repeated && out.is_empty() {
                    Rule::Trace
                } else if repeated || out.len() > ia.len() {
                    Rule::Diagonal
                } else {
                    Rule::Reduce
                }
            }
            Node::Map(f, _) => Rule::Elementwise(*f),
            Node::Pow(_, e) => Rule::Power(e.get().to_bits()),
            Node::Inv(_) => Rule::Inverse,
            Node::Det(_) => Rule::Det,
            Node::LogDet(_) => Rule::LogDet,
            Node::LogSumExp(_) => Rule::LogSumExp,
            Node::Softmax(_) => Rule::Softmax,
        })
    }

    /// Its name.
    pub fn name(self) -> String {
        match self {
            Rule::Sum => "sum rule".into(),
            Rule::Scaling => "scaling (product rule)".into(),
            Rule::MatrixProduct => "product rule".into(),
            Rule::Outer => "product rule (outer product)".into(),
            Rule::Hadamard => "product rule (Hadamard)".into(),
            Rule::Frobenius => "product rule (Frobenius)".into(),
            Rule::Elementwise(f) => format!("chain rule, elementwise {}", f.name()),
            Rule::Power(_) => "power rule".into(),
            Rule::Inverse => "inverse".into(),
            Rule::Det => "determinant (Jacobi)".into(),
            Rule::LogDet => "log-determinant".into(),
            Rule::LogSumExp => "log-sum-exp".into(),
            Rule::Softmax => "softmax".into(),
            Rule::Transpose => "transpose".into(),
            Rule::Trace => "trace".into(),
            Rule::Reduce => "sum".into(),
            Rule::Diagonal => "diagonal".into(),
        }
    }

    /// The identity used to move this operator across `:` when back-substituting.
    pub fn identity(self) -> Identity {
        match self {
            Rule::Sum => Identity::Distribute,
            Rule::Scaling | Rule::Frobenius | Rule::Det | Rule::LogDet | Rule::LogSumExp => Identity::Scalar,
            Rule::MatrixProduct | Rule::Outer | Rule::Inverse => Identity::Product,
            Rule::Hadamard | Rule::Elementwise(_) | Rule::Power(_) | Rule::Softmax => Identity::Hadamard,
            Rule::Transpose => Identity::Symmetry,
            Rule::Trace | Rule::Reduce | Rule::Diagonal => Identity::Reduction,
        }
    }

    /// The rule written out, `d(AB) = dA B + A dB`, by differentiating an example
    /// with the engine's own rule table ([`diff::pull_back`]).
    pub fn formula(self, style: &Style) -> String {
        let mut g = Graph::new();
        let (m, n) = (g.dim_symbol("m", None, false), g.dim_symbol("n", None, false));
        let mat = |g: &mut Graph, name: &str, r: Dim, c: Dim| g.var(name, vec![r, c], false);
        let vec_ = |g: &mut Graph, name: &str| g.var(name, vec![n], false);
        let (node, ops): (Id, Vec<Id>) = match self {
            Rule::Sum => {
                let (a, b) = (mat(&mut g, "A", m, n), mat(&mut g, "B", m, n));
                (g.add(&[a, b]), vec![a, b])
            }
            Rule::Scaling => {
                let (a, x) = (g.var("α", vec![], false), mat(&mut g, "X", m, n));
                (g.times(a, x), vec![a, x])
            }
            Rule::MatrixProduct => {
                let kk = g.dim_symbol("k", None, false);
                let (a, b) = (mat(&mut g, "A", m, kk), mat(&mut g, "B", kk, n));
                (g.matmul(a, b), vec![a, b])
            }
            Rule::Outer => {
                let (x, y) = (g.var("x", vec![m], false), vec_(&mut g, "y"));
                (g.outer(x, y), vec![x, y])
            }
            Rule::Hadamard => {
                let (a, b) = (mat(&mut g, "A", m, n), mat(&mut g, "B", m, n));
                (g.hadamard(a, b), vec![a, b])
            }
            Rule::Frobenius => {
                let (a, b) = (mat(&mut g, "A", m, n), mat(&mut g, "B", m, n));
                let l = Labels::range(0, 2);
                (g.mul(a, b, l, l, Labels::range(0, 0)), vec![a, b])
            }
            Rule::Elementwise(f) => {
                let x = mat(&mut g, "X", m, n);
                (g.map(f, x), vec![x])
            }
            Rule::Power(bits) => {
                let x = mat(&mut g, "X", m, n);
                (g.pow(x, f64::from_bits(bits)), vec![x])
            }
            Rule::Inverse | Rule::Det | Rule::LogDet | Rule::Transpose | Rule::Trace | Rule::Diagonal => {
                let x = mat(&mut g, "X", n, n);
                let v = match self {
                    Rule::Inverse => g.inv(x),
                    Rule::Det => g.det(x),
                    Rule::LogDet => g.logdet(x),
                    Rule::Transpose => g.transpose(x),
                    Rule::Trace => g.trace(x),
                    _ => g.diag_vector(x),
                };
                (v, vec![x])
            }
            Rule::Reduce => {
                let x = mat(&mut g, "X", m, n);
                (g.sum_all(x), vec![x])
            }
            Rule::LogSumExp | Rule::Softmax => {
                let x = vec_(&mut g, "x");
                let v = if self == Rule::LogSumExp {
                    g.logsumexp(x)
                } else {
                    g.softmax(x)
                };
                (v, vec![x])
            }
        };
        let names: Vec<String> = ops
            .iter()
            .map(|&o| match g.node(o) {
                Node::Var(i) => g.vars[*i as usize].name.clone(),
                _ => unreachable!("rule examples are built on variables"),
            })
            .collect();
        let vars: Vec<usize> = (0..g.vars.len()).collect();
        let dep = g.depends_on(&[node], &vars);
        let p = g.order(node);
        let seed = diff::identity_seed(&mut g, node);
        let adj = diff::sweep(&mut g, node, seed, p, &dep, |g, id| matches!(g.node(id), Node::Var(_)));
        let mut diffs = Vec::new();
        let mut terms = Vec::new();
        for (leaf, a) in adj {
            let k = ops.iter().position(|&o| o == leaf).expect("leaves are the operands");
            let shape = g.shape(leaf).to_vec();
            let dv = g.var(&format!("{DIFF_MARK}{}", names[k]), shape, false);
            diffs.push((a, dv));
            let q = g.order(leaf);
            terms.push(g.mul(
                a,
                dv,
                Labels::range(0, p + q),
                Labels::range(p as u8, q),
                Labels::range(0, p),
            ));
        }
        let lhs = {
            let mut r = Recover::new(&g);
            print::print(&r.convert(node), style)
        };
        let d = differential_symbol(style);
        let mut r = Recover::new(&g);
        let rhs = if p == 0 {
            let parts: Vec<(crate::render::mexpr::M, crate::render::mexpr::M)> =
                diffs.iter().map(|&(a, dv)| (r.convert(a), r.convert(dv))).collect();
            super::frobenius_sum(&parts, style)
        } else {
            let sum = if terms.is_empty() {
                g.zeros(g.shape(node).to_vec())
            } else {
                g.add(&terms)
            };
            let mut r = Recover::new(&g);
            print::print(&r.convert(sum), style)
        };
        let call =
            lhs.ends_with(')') && lhs.starts_with(|c: char| c.is_alphabetic() || c == '\\') && !lhs.contains(' ');
        let latex = style.flavour == Flavour::Latex;
        let lhs = match (call, latex) {
            (true, true) => format!("\\,{lhs}"),
            (true, false) => format!(" {lhs}"),
            (false, true) => format!("\\left({lhs}\\right)"),
            (false, false) => format!("({lhs})"),
        };
        format!("{d}{lhs} = {rhs}")
    }
}

/// The differential operator's symbol.
pub fn differential_symbol(style: &Style) -> &'static str {
    if style.flavour == Flavour::Latex {
        "\\mathrm{d}"
    } else {
        "d"
    }
}
