//! Property tests over random well-typed expressions (issue 3, item 4).
//!
//! A `prop_recursive` strategy draws an untyped *shape tree* (a choice number
//! per node and up to three children); [`gen::build`] decodes it against a
//! requested type (scalar, column/row vector of length n or m, n×n, n×m, m×n,
//! m×m matrix), so every decoded expression is well typed and its arguments
//! respect the domains of log, sqrt, negative powers, asin/acos, inv, det and
//! logdet. Shrinking the tree shrinks the expression.
//!
//! For each case:
//! (a) derivatives (gradient, Jacobian, and for a fraction of scalar cases the
//!     Hessian) pass `matcalc::eval::check::check` at two (n, m) settings drawn
//!     from {1, 2, 3}²;
//! (b) the derivative printed in the input language parses back and evaluates
//!     to the same numbers as the derivative node;
//! (c) the lowered (simplified) function evaluates to the same numbers as a
//!     naive reference evaluator ([`oracle`]) walking the syntax tree.
//!
//! Every step runs even when an earlier one fails, and engine panics are
//! failures. When the standard check fails, a second opinion at three fresh
//! points separates wrong derivatives from finite differences that cannot
//! resolve a correct one (rounding noise, a step too coarse, a kink); see
//! [`check_derivative`].
//!
//! Cases per run: 2 000 by default (two tests: 1 334 scalar, 666 vector- and
//! matrix-valued), or `MATCALC_PROPTEST_CASES` in total. Failure persistence is
//! off: every failure found becomes a named test in `tests/regressions.rs`
//! (which includes this file as a module to reuse the harness). Failures that
//! a still-open regression explains ([`known_issue`]) are counted and printed,
//! not failed, unless `MATCALC_PROPTEST_STRICT=1`.
//! `MATCALC_PROPTEST_VERBOSE=1` prints every second opinion.
//!
//! Tools (ignored tests; `-- --ignored --nocapture`): `one_case` and
//! `minimize_case` reproduce or shrink the case given by `MATCALC_CASE`
//! (expression), `MATCALC_CASE_WRT`, `MATCALC_CASE_DIMS` (`n,m;n,m`),
//! `MATCALC_CASE_SEED`, `MATCALC_CASE_HESSIAN`, `MATCALC_CASE_AUDIT` (find the
//! first IR node whose value does not have its declared shape);
//! `sample_expressions` prints generated expressions and construct counts.

#![allow(dead_code)]

use matcalc::eval::check::{check, sample_dims, sample_values, CheckOptions};
use matcalc::eval::interp::{bind_dims, evaluate};
use matcalc::eval::Tensor;
use matcalc::render::{self, print::Style, Form};
use matcalc::Problem;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The declarations every generated expression is typed against.
pub const DECLS: &str = "x: vector(n); y: vector(n); z: vector(m); a: scalar; b: scalar; \
     A: matrix(n, n); B: matrix(n, m); C: matrix(m, n); S: symmetric(n)";

/// Functions whose derivative jumps (or whose value has a kink): a finite
/// difference that straddles the kink is wrong, not the derivative.
const KINKS: [&str; 7] = ["abs(", "sign(", "relu(", "step(", "norm1(", "norm2(", "norm("];

pub mod gen {
    //! Type-directed decoding of random shape trees into expressions.
    use proptest::prelude::*;

    /// A dimension symbol.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum D {
        /// `n`
        N,
        /// `m`
        M,
    }

    impl D {
        /// The declared name.
        pub fn name(self) -> &'static str {
            match self {
                D::N => "n",
                D::M => "m",
            }
        }
    }

    /// The type of an expression.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Ty {
        /// A scalar.
        S,
        /// A column vector.
        Col(D),
        /// A row vector.
        Row(D),
        /// A matrix (rows, columns).
        Mat(D, D),
    }

    use Ty::*;
    use D::*;

    /// All types, for "any argument" positions.
    pub const ALL: [Ty; 9] = [
        S,
        Col(N),
        Col(M),
        Row(N),
        Row(M),
        Mat(N, N),
        Mat(N, M),
        Mat(M, N),
        Mat(M, M),
    ];

    /// An untyped shape: one choice number per node and its children.
    #[derive(Clone, Debug)]
    pub struct Tree {
        /// Selects the production (and sub-choices) when decoded.
        pub pick: u32,
        /// Sub-trees; productions needing more operands reuse them cyclically.
        pub kids: Vec<Tree>,
    }

    /// Random shape trees: at most 4 levels below the root (`prop_recursive`
    /// depth 4), aiming at 48 leaves, 1–3 children per node.
    pub fn tree() -> impl Strategy<Value = Tree> {
        let leaf = any::<u32>().prop_map(|pick| Tree { pick, kids: vec![] });
        leaf.prop_recursive(4, 48, 2, |inner| {
            (any::<u32>(), prop::collection::vec(inner, 1..=3)).prop_map(|(pick, kids)| Tree { pick, kids })
        })
    }

    /// A stream of small choices read off one number (zero means "first").
    struct Pick(u32);

    impl Pick {
        fn take(&mut self, n: u32) -> u32 {
            let r = self.0 % n;
            self.0 /= n;
            r
        }
        fn one<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.take(xs.len() as u32) as usize]
        }
        fn dim(&mut self) -> D {
            if self.take(2) == 0 {
                N
            } else {
                M
            }
        }
        fn ty(&mut self) -> Ty {
            ALL[self.take(ALL.len() as u32) as usize]
        }
    }

    /// Decode a tree as an expression of type `ty`. Every result is atomic (a
    /// name, a number, a call or a transpose of one) or parenthesized.
    pub fn build(t: &Tree, ty: Ty) -> String {
        let mut p = Pick(t.pick);
        if t.kids.is_empty() {
            return leaf(ty, &mut p);
        }
        match ty {
            S => scalar(t, &mut p),
            Col(d) => column(t, d, &mut p),
            Row(d) => row(t, d, &mut p),
            Mat(r, c) => matrix(t, r, c, &mut p),
        }
    }

    fn kid(t: &Tree, i: usize, ty: Ty) -> String {
        build(&t.kids[i % t.kids.len()], ty)
    }

    fn leaf(ty: Ty, p: &mut Pick) -> String {
        match ty {
            S => p.one(&["a", "b", "a", "b", "2", "0.5", "(-1.5)", "(x'*y)", "(z'*z)"]),
            Col(N) => p.one(&["x", "y"]),
            Col(M) => "z",
            Row(N) => p.one(&["x'", "y'"]),
            Row(M) => "z'",
            Mat(N, N) => p.one(&["A", "S", "A", "S", "eye(n)"]),
            Mat(N, M) => "B",
            Mat(M, N) => "C",
            Mat(M, M) => p.one(&["(C*B)", "(z*z')", "eye(m)"]),
        }
        .to_string()
    }

    /// A squashing wrapper: values in [-π/2, π/2] whatever the argument.
    fn squash(e: &str, p: &mut Pick) -> String {
        let f = p.one(&["tanh", "sin", "cos", "sigmoid", "atan"]);
        format!("{f}({e})")
    }

    /// A positive wrapper, bounded away from zero whatever the argument.
    fn pos(e: &str, p: &mut Pick) -> String {
        match p.take(5) {
            0 => format!("exp(tanh({e}))"),
            1 => format!("(1 + {e} .^ 2)"),
            // sigmoid and softplus underflow to 0 for arguments below about -745.
            2 => format!("(0.5 + sigmoid({e}))"),
            3 => format!("(0.5 + softplus({e}))"),
            _ => format!("(2 + sin({e}))"),
        }
    }

    /// An elementwise function of the language applied to `e`, respecting its domain.
    fn func(e: &str, p: &mut Pick) -> String {
        match p.take(17) {
            0 => format!("sin({e})"),
            1 => format!("cos({e})"),
            // |tanh|, |sin|, |cos| ≤ 1 < π/2: far from the poles of tan.
            2 => format!("tan({}({e}))", p.one(&["tanh", "sin", "cos"])),
            3 => format!("asin(0.5*tanh({e}))"),
            4 => format!("acos(0.5*tanh({e}))"),
            5 => format!("atan({e})"),
            6 => format!("exp({})", squash(e, p)),
            7 => format!("log({})", pos(e, p)),
            8 => format!("sqrt({})", pos(e, p)),
            9 => format!("abs({e})"),
            10 => format!("sign({e})"),
            11 => format!("tanh({e})"),
            12 => format!("sigmoid({e})"),
            13 => format!("softplus({e})"),
            14 => format!("relu({e})"),
            15 => format!("ln({})", pos(e, p)),
            _ => format!("step({e})"),
        }
    }

    /// Powers (`op` is `.^` or, for scalars, `^`) that keep values finite:
    /// fractional and negative exponents only of positive bases.
    fn epow(e: &str, other: &str, op: &str, p: &mut Pick) -> String {
        match p.take(7) {
            0 => format!("({e} {op} 2)"),
            1 => format!("({e} {op} 3)"),
            2 => format!("({} {op} 0.5)", pos(e, p)),
            3 => format!("({} {op} -1)", pos(e, p)),
            4 => format!("({} {op} -0.5)", pos(e, p)),
            5 => format!("({} {op} 1.5)", pos(e, p)),
            _ => format!("({} {op} {})", pos(e, p), squash(other, p)),
        }
    }

    /// A well-conditioned d×d matrix with positive determinant built from `t`'s kids.
    fn invertible(t: &Tree, d: D, p: &mut Pick) -> String {
        let dn = d.name();
        match p.take(3) {
            0 => format!("(eye({dn}) + 0.1*tanh({}))", kid(t, 0, Mat(d, d))),
            _ => {
                let k = p.dim();
                let m = kid(t, 0, Mat(d, k));
                format!("({m}*{m}' + eye({dn}))")
            }
        }
    }

    fn scalar(t: &Tree, p: &mut Pick) -> String {
        let e = |i: usize| kid(t, i, S);
        match p.take(14) {
            0 => format!("({} + {})", e(0), e(1)),
            1 => format!("({} - {})", e(0), e(1)),
            2 => format!("({} * {})", e(0), e(1)),
            3 => format!("({} / {})", e(0), pos(&e(1), p)),
            4 => format!("(-{})", e(0)),
            5 => {
                let op = p.one(&["^", ".^"]);
                epow(&e(0), &e(1), op, p)
            }
            6 => func(&e(0), p),
            7 => {
                let ty = p.ty();
                let f = p.one(&["sum", "norm1", "norm2", "logsumexp", "norm"]);
                format!("{f}({})", kid(t, 0, ty))
            }
            8 => {
                let d = p.dim();
                let f = p.one(&["tr", "trace"]);
                format!("{f}({})", kid(t, 0, Mat(d, d)))
            }
            9 => {
                let d = p.dim();
                let f = p.one(&["det", "logdet"]);
                format!("{f}({})", invertible(t, d, p))
            }
            10 => {
                let (d, k) = (p.dim(), p.dim());
                match p.take(5) {
                    0 => format!("({}' * {})", kid(t, 0, Col(d)), kid(t, 1, Col(d))),
                    1 => format!("({} * {})", kid(t, 0, Row(d)), kid(t, 1, Col(d))),
                    2 => format!(
                        "({}' * {} * {})",
                        kid(t, 0, Col(d)),
                        kid(t, 1, Mat(d, k)),
                        kid(t, 2, Col(k))
                    ),
                    3 => format!(
                        "({} * ({} * {}))",
                        kid(t, 0, Row(d)),
                        kid(t, 1, Mat(d, k)),
                        kid(t, 2, Col(k))
                    ),
                    _ => format!("sum({} .* {})", kid(t, 0, Col(d)), kid(t, 1, Col(d))),
                }
            }
            11 => match p.take(3) {
                0 => format!("({} .* {})", e(0), e(1)),
                1 => format!("({} ./ {})", e(0), pos(&e(1), p)),
                _ => format!("({} ^ {})", pos(&e(0), p), squash(&e(1), p)),
            },
            12 => {
                let f = p.one(&["diag", "softmax", "sum", "logsumexp", "norm2", "norm1"]);
                match p.take(2) {
                    0 => format!("{}'", e(0)),
                    _ => format!("{f}({})", e(0)),
                }
            }
            _ => {
                // A scalar reached through a vector: sum of a function of a product.
                let (d, k) = (p.dim(), p.dim());
                let v = format!("({} * {})", kid(t, 0, Mat(d, k)), kid(t, 1, Col(k)));
                let f = p.one(&["sum", "logsumexp", "norm2"]);
                format!("{f}({})", func(&v, p))
            }
        }
    }

    fn column(t: &Tree, d: D, p: &mut Pick) -> String {
        let e = |i: usize| kid(t, i, Col(d));
        let s = |i: usize| kid(t, i, S);
        match p.take(13) {
            0 => format!("({} + {})", e(0), e(1)),
            1 => format!("({} - {})", e(0), e(1)),
            2 => match p.take(3) {
                0 => format!("({} * {})", s(1), e(0)),
                1 => format!("({} * {})", e(0), s(1)),
                _ => format!("({} / {})", e(0), pos(&s(1), p)),
            },
            3 => match p.take(2) {
                0 => format!("({} .* {})", e(0), e(1)),
                _ => format!("({} ./ {})", e(0), pos(&e(1), p)),
            },
            4 => format!("(-{})", e(0)),
            5 => match p.take(4) {
                0 => format!("({} .^ {})", pos(&s(1), p), squash(&e(0), p)),
                _ => epow(&e(0), &s(1), ".^", p),
            },
            6 => func(&e(0), p),
            7 => {
                let k = p.dim();
                format!("({} * {})", kid(t, 0, Mat(d, k)), kid(t, 1, Col(k)))
            }
            8 => {
                let r = kid(t, 0, Row(d));
                format!("{r}'")
            }
            9 => match p.take(3) {
                0 => format!("diag({})", kid(t, 0, Mat(d, d))),
                1 => format!("softmax({})", e(0)),
                _ => format!("diag(diag({}))", e(0)),
            },
            10 => match p.take(6) {
                0 => format!("({} + {})", e(0), s(1)),
                1 => format!("({} - {})", s(1), e(0)),
                2 => format!("({} + vector({}))", e(0), s(1)),
                3 => format!("(vector({}) .* {})", s(1), e(0)),
                4 => format!("vector({}, {})", s(1), d.name()),
                _ => {
                    let k = p.dim();
                    format!("({} * vector({}))", kid(t, 0, Mat(d, k)), s(1))
                }
            },
            11 => match p.take(2) {
                0 => format!("(inv({}) * {})", invertible(t, d, p), e(1)),
                _ => format!("({} ^ -1 * {})", invertible(t, d, p), e(1)),
            },
            _ => {
                let k = p.dim();
                format!("(({} * {}') * {})", e(0), kid(t, 1, Col(k)), kid(t, 2, Col(k)))
            }
        }
    }

    fn row(t: &Tree, d: D, p: &mut Pick) -> String {
        let e = |i: usize| kid(t, i, Row(d));
        match p.take(8) {
            0 => format!("{}'", kid(t, 0, Col(d))),
            1 => {
                let k = p.dim();
                format!("({} * {})", kid(t, 0, Row(k)), kid(t, 1, Mat(k, d)))
            }
            2 => format!("({} + {})", e(0), e(1)),
            3 => format!("({} - {})", e(0), e(1)),
            4 => format!("({} .* {})", e(0), e(1)),
            5 => match p.take(2) {
                0 => format!("({} * {})", kid(t, 1, S), e(0)),
                _ => format!("(-{})", e(0)),
            },
            6 => func(&e(0), p),
            _ => match p.take(2) {
                0 => format!("softmax({})", e(0)),
                _ => epow(&e(0), &kid(t, 1, S), ".^", p),
            },
        }
    }

    fn matrix(t: &Tree, r: D, c: D, p: &mut Pick) -> String {
        let e = |i: usize| kid(t, i, Mat(r, c));
        let s = |i: usize| kid(t, i, S);
        let square = r == c;
        let n = if square { 13 } else { 11 };
        match p.take(n) {
            0 => format!("({} + {})", e(0), e(1)),
            1 => format!("({} - {})", e(0), e(1)),
            2 => match p.take(3) {
                0 => format!("({} * {})", s(1), e(0)),
                1 => format!("({} * {})", e(0), s(1)),
                _ => format!("({} / {})", e(0), pos(&s(1), p)),
            },
            3 => match p.take(2) {
                0 => format!("({} .* {})", e(0), e(1)),
                _ => format!("({} ./ {})", e(0), pos(&e(1), p)),
            },
            4 => format!("(-{})", e(0)),
            5 => epow(&e(0), &s(1), ".^", p),
            6 => func(&e(0), p),
            7 => {
                let k = p.dim();
                format!("({} * {})", kid(t, 0, Mat(r, k)), kid(t, 1, Mat(k, c)))
            }
            8 => match p.take(2) {
                0 => format!("({} * {}')", kid(t, 0, Col(r)), kid(t, 1, Col(c))),
                _ => format!("({} * {})", kid(t, 0, Col(r)), kid(t, 1, Row(c))),
            },
            9 => format!("{}'", kid(t, 0, Mat(c, r))),
            10 => match p.take(5) {
                0 => format!("({} + {})", e(0), s(1)),
                1 => format!("({} - {})", s(1), e(0)),
                2 => format!("({} + matrix({}))", e(0), s(1)),
                3 => format!("matrix({}, {}, {})", s(1), r.name(), c.name()),
                _ => format!("(matrix({}) .* {})", s(1), e(0)),
            },
            11 => match p.take(3) {
                0 => format!("inv({})", invertible(t, r, p)),
                1 => format!("diag({})", kid(t, 0, Col(r))),
                _ => format!("({} ^ {})", e(0), p.one(&["2", "3", "0", "1"])),
            },
            _ => format!("({} ^ {})", invertible(t, r, p), p.one(&["-1", "-2"])),
        }
    }
}

pub mod oracle {
    //! A naive reference evaluator over the syntax tree: plain row-major
    //! `Vec<f64>` matrices and textbook loops, sharing no code with the engine.
    use matcalc::syntax::ast::{BinOp, Expr, ExprKind};
    use std::collections::HashMap;

    /// A value. `FillCol`/`FillMat` are `vector(c)`/`matrix(c)` before their
    /// shape is known from the operation they meet.
    #[derive(Clone, Debug)]
    pub enum V {
        /// A number.
        S(f64),
        /// A column vector.
        Col(Vec<f64>),
        /// A row vector.
        Row(Vec<f64>),
        /// A matrix: rows, columns, row-major data.
        M(usize, usize, Vec<f64>),
        /// `vector(c)`, shape not yet known.
        FillCol(f64),
        /// `matrix(c)`, shape not yet known.
        FillMat(f64),
    }

    impl V {
        /// Shape and row-major data, like the engine's tensors.
        pub fn flat(&self) -> (Vec<usize>, Vec<f64>) {
            match self {
                V::S(v) => (vec![], vec![*v]),
                V::Col(d) | V::Row(d) => (vec![d.len()], d.clone()),
                V::M(r, c, d) => (vec![*r, *c], d.clone()),
                V::FillCol(_) | V::FillMat(_) => panic!("unresolved fill at the top"),
            }
        }
        fn map(&self, f: &dyn Fn(f64) -> f64) -> V {
            match self {
                V::S(v) => V::S(f(*v)),
                V::Col(d) => V::Col(d.iter().map(|v| f(*v)).collect()),
                V::Row(d) => V::Row(d.iter().map(|v| f(*v)).collect()),
                V::M(r, c, d) => V::M(*r, *c, d.iter().map(|v| f(*v)).collect()),
                V::FillCol(v) => V::FillCol(f(*v)),
                V::FillMat(v) => V::FillMat(f(*v)),
            }
        }
        fn data(&self) -> &[f64] {
            match self {
                V::S(v) | V::FillCol(v) | V::FillMat(v) => std::slice::from_ref(v),
                V::Col(d) | V::Row(d) | V::M(_, _, d) => d,
            }
        }
        fn with_data(&self, d: Vec<f64>) -> V {
            match self {
                V::S(_) => V::S(d[0]),
                V::Col(_) => V::Col(d),
                V::Row(_) => V::Row(d),
                V::M(r, c, _) => V::M(*r, *c, d),
                V::FillCol(_) => V::FillCol(d[0]),
                V::FillMat(_) => V::FillMat(d[0]),
            }
        }
    }

    /// Variable values and dimension sizes.
    pub struct Env {
        /// Values by name.
        pub vars: HashMap<String, V>,
        /// Sizes by dimension name.
        pub dims: HashMap<String, usize>,
    }

    /// Build a value from a shape and row-major data (vectors become columns).
    pub fn from_flat(shape: &[usize], data: &[f64]) -> V {
        match shape.len() {
            0 => V::S(data[0]),
            1 => V::Col(data.to_vec()),
            _ => V::M(shape[0], shape[1], data.to_vec()),
        }
    }

    fn func(name: &str, x: f64) -> Option<f64> {
        Some(match name {
            "sin" => x.sin(),
            "cos" => x.cos(),
            "tan" => x.tan(),
            "asin" => x.asin(),
            "acos" => x.acos(),
            "atan" => x.atan(),
            "exp" => x.exp(),
            "log" | "ln" => x.ln(),
            "sqrt" => x.sqrt(),
            "abs" => x.abs(),
            "sign" => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            "tanh" => x.tanh(),
            "sigmoid" => 1.0 / (1.0 + (-x).exp()),
            "softplus" => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            "relu" => {
                if x > 0.0 {
                    x
                } else {
                    0.0
                }
            }
            "step" => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            _ => return None,
        })
    }

    /// Elementwise binary operation with scalar broadcasting; fills take the
    /// shape of the other side.
    fn ew(a: &V, b: &V, f: &dyn Fn(f64, f64) -> f64) -> Result<V, String> {
        use V::*;
        Ok(match (a, b) {
            (S(x), _) => b.map(&|y| f(*x, y)),
            (_, S(y)) => a.map(&|x| f(x, *y)),
            (FillCol(x) | FillMat(x), _) => b.map(&|y| f(*x, y)),
            (_, FillCol(y) | FillMat(y)) => a.map(&|x| f(x, *y)),
            _ => {
                let same = matches!((a, b), (Col(_), Col(_)) | (Row(_), Row(_)) | (M(..), M(..)));
                if let (M(r1, c1, _), M(r2, c2, _)) = (a, b) {
                    if (r1, c1) != (r2, c2) {
                        return Err(format!("oracle: shapes {r1}×{c1} and {r2}×{c2}"));
                    }
                }
                if !same || a.data().len() != b.data().len() {
                    return Err(format!("oracle: elementwise on {a:?} and {b:?}"));
                }
                a.with_data(a.data().iter().zip(b.data()).map(|(x, y)| f(*x, *y)).collect())
            }
        })
    }

    /// Naive matrix product of r×k and k×c.
    pub fn matmul(r: usize, k: usize, c: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                let mut s = 0.0;
                for l in 0..k {
                    s += a[i * k + l] * b[l * c + j];
                }
                out[i * c + j] = s;
            }
        }
        out
    }

    fn transpose(r: usize, c: usize, a: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = a[i * c + j];
            }
        }
        out
    }

    fn eye(n: usize) -> Vec<f64> {
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            out[i * n + i] = 1.0;
        }
        out
    }

    /// Determinant by Gaussian elimination with partial pivoting.
    pub fn det(n: usize, a: &[f64]) -> f64 {
        let mut m = a.to_vec();
        let mut det = 1.0;
        for col in 0..n {
            let piv = (col..n)
                .max_by(|&i, &j| m[i * n + col].abs().total_cmp(&m[j * n + col].abs()))
                .unwrap();
            if m[piv * n + col] == 0.0 {
                return 0.0;
            }
            if piv != col {
                for j in 0..n {
                    m.swap(piv * n + j, col * n + j);
                }
                det = -det;
            }
            let p = m[col * n + col];
            det *= p;
            for i in col + 1..n {
                let f = m[i * n + col] / p;
                for j in col..n {
                    m[i * n + j] -= f * m[col * n + j];
                }
            }
        }
        det
    }

    /// Inverse by Gauss–Jordan elimination with partial pivoting.
    pub fn inv(n: usize, a: &[f64]) -> Result<Vec<f64>, String> {
        let mut m = a.to_vec();
        let mut out = eye(n);
        for col in 0..n {
            let piv = (col..n)
                .max_by(|&i, &j| m[i * n + col].abs().total_cmp(&m[j * n + col].abs()))
                .unwrap();
            if m[piv * n + col] == 0.0 {
                return Err("oracle: singular matrix".into());
            }
            for j in 0..n {
                m.swap(piv * n + j, col * n + j);
                out.swap(piv * n + j, col * n + j);
            }
            let p = m[col * n + col];
            for j in 0..n {
                m[col * n + j] /= p;
                out[col * n + j] /= p;
            }
            for i in 0..n {
                if i != col {
                    let f = m[i * n + col];
                    for j in 0..n {
                        m[i * n + j] -= f * m[col * n + j];
                        out[i * n + j] -= f * out[col * n + j];
                    }
                }
            }
        }
        Ok(out)
    }

    fn square(v: &V, what: &str) -> Result<(usize, Vec<f64>), String> {
        match v {
            V::M(r, c, d) if r == c => Ok((*r, d.clone())),
            _ => Err(format!("oracle: {what} of {v:?}")),
        }
    }

    fn mul(a: &V, b: &V) -> Result<V, String> {
        use V::*;
        Ok(match (a, b) {
            (S(x), _) => b.map(&|y| x * y),
            (_, S(y)) => a.map(&|x| x * y),
            (Col(u), Row(v)) => M(u.len(), v.len(), matmul(u.len(), 1, v.len(), u, v)),
            (Row(u), Col(v)) if u.len() == v.len() => S(u.iter().zip(v).map(|(p, q)| p * q).sum()),
            (M(r, k, d), Col(v)) if *k == v.len() => Col(matmul(*r, *k, 1, d, v)),
            (M(r, k, d), FillCol(c)) => Col(matmul(*r, *k, 1, d, &vec![*c; *k])),
            (Row(u), M(k, c, d)) if *k == u.len() => Row(matmul(1, *k, *c, u, d)),
            (M(r, k, d), M(k2, c, e)) if k == k2 => M(*r, *c, matmul(*r, *k, *c, d, e)),
            _ => return Err(format!("oracle: product of {a:?} and {b:?}")),
        })
    }

    fn reduce(v: &V, f: &dyn Fn(&[f64]) -> f64) -> V {
        V::S(f(v.data()))
    }

    /// Evaluate an expression.
    pub fn eval(e: &Expr, env: &Env) -> Result<V, String> {
        Ok(match &e.kind {
            ExprKind::Num(v) => V::S(*v),
            ExprKind::Ident(name) => env
                .vars
                .get(name)
                .cloned()
                .ok_or_else(|| format!("oracle: no value for {name}"))?,
            ExprKind::Neg(x) => eval(x, env)?.map(&|v| -v),
            ExprKind::Transpose(x) => match eval(x, env)? {
                V::Col(d) => V::Row(d),
                V::Row(d) => V::Col(d),
                V::M(r, c, d) => V::M(c, r, transpose(r, c, &d)),
                v => v,
            },
            ExprKind::Binary(op, a, b) => {
                let (x, y) = (eval(a, env)?, eval(b, env)?);
                match op {
                    BinOp::Add => ew(&x, &y, &|p, q| p + q)?,
                    BinOp::Sub => ew(&x, &y, &|p, q| p - q)?,
                    BinOp::EMul => ew(&x, &y, &|p, q| p * q)?,
                    BinOp::EDiv | BinOp::Div => ew(&x, &y, &|p, q| p / q)?,
                    BinOp::EPow => ew(&x, &y, &|p, q| p.powf(q))?,
                    BinOp::Mul => mul(&x, &y)?,
                    BinOp::Pow => match (&x, &y) {
                        (V::S(p), V::S(q)) => V::S(p.powf(*q)),
                        (V::M(..), V::S(k)) => {
                            let (n, d) = square(&x, "matrix power")?;
                            let base = if *k < 0.0 { inv(n, &d)? } else { d };
                            let mut acc = eye(n);
                            for _ in 0..(k.abs() as usize) {
                                acc = matmul(n, n, n, &acc, &base);
                            }
                            V::M(n, n, acc)
                        }
                        _ => return Err(format!("oracle: {x:?} ^ {y:?}")),
                    },
                }
            }
            ExprKind::Call { name, args, .. } => {
                if name == "eye" {
                    let n = match &args[0].kind {
                        ExprKind::Num(v) => *v as usize,
                        ExprKind::Ident(d) => *env.dims.get(d).ok_or_else(|| format!("oracle: no size for {d}"))?,
                        _ => return Err("oracle: eye of an expression".into()),
                    };
                    return Ok(V::M(n, n, eye(n)));
                }
                let x = eval(&args[0], env)?;
                if func(name, 0.5).is_some() {
                    return Ok(x.map(&|v| func(name, v).unwrap()));
                }
                match name.as_str() {
                    "sum" => reduce(&x, &|d| d.iter().sum()),
                    "norm1" => reduce(&x, &|d| d.iter().map(|v| v.abs()).sum()),
                    "norm2" | "norm" => reduce(&x, &|d| d.iter().map(|v| v * v).sum::<f64>().sqrt()),
                    "logsumexp" => reduce(&x, &|d| {
                        let m = d.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        m + d.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
                    }),
                    "softmax" => match &x {
                        V::S(_) => V::S(1.0),
                        _ => {
                            let d = x.data();
                            let m = d.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                            let e: Vec<f64> = d.iter().map(|v| (v - m).exp()).collect();
                            let s: f64 = e.iter().sum();
                            x.with_data(e.iter().map(|v| v / s).collect())
                        }
                    },
                    "tr" | "trace" => {
                        let (n, d) = square(&x, "trace")?;
                        V::S((0..n).map(|i| d[i * n + i]).sum())
                    }
                    "det" => {
                        let (n, d) = square(&x, "det")?;
                        V::S(det(n, &d))
                    }
                    "logdet" => {
                        let (n, d) = square(&x, "logdet")?;
                        V::S(det(n, &d).abs().ln())
                    }
                    "inv" => {
                        let (n, d) = square(&x, "inv")?;
                        V::M(n, n, inv(n, &d)?)
                    }
                    "diag" => match &x {
                        V::S(_) => x.clone(),
                        V::Col(d) | V::Row(d) => {
                            let n = d.len();
                            let mut out = vec![0.0; n * n];
                            for i in 0..n {
                                out[i * n + i] = d[i];
                            }
                            V::M(n, n, out)
                        }
                        _ => {
                            let (n, d) = square(&x, "diag")?;
                            V::Col((0..n).map(|i| d[i * n + i]).collect())
                        }
                    },
                    "vector" | "matrix" => {
                        let V::S(c) = x else {
                            return Err(format!("oracle: {name} of a non-scalar"));
                        };
                        let sizes: Vec<usize> = args[1..]
                            .iter()
                            .map(|a| match &a.kind {
                                ExprKind::Num(v) => Ok(*v as usize),
                                ExprKind::Ident(d) => env
                                    .dims
                                    .get(d)
                                    .copied()
                                    .ok_or_else(|| format!("oracle: no size for {d}")),
                                _ => Err("oracle: a size must be a number or a name".to_string()),
                            })
                            .collect::<Result<_, _>>()?;
                        match (name.as_str(), sizes.as_slice()) {
                            ("vector", []) => V::FillCol(c),
                            ("matrix", []) => V::FillMat(c),
                            ("vector", [k]) => V::Col(vec![c; *k]),
                            ("matrix", [r, k]) => V::M(*r, *k, vec![c; r * k]),
                            _ => return Err(format!("oracle: {name} with {} sizes", sizes.len())),
                        }
                    }
                    _ => return Err(format!("oracle: unknown function {name}")),
                }
            }
            ExprKind::Matrix(_) | ExprKind::Missing => return Err("oracle: matrix literals are not generated".into()),
        })
    }
}

/// One generated case.
#[derive(Clone)]
pub struct Case {
    /// The expression's type.
    pub top: gen::Ty,
    /// The expression.
    pub expr: String,
    /// Two (n, m) settings.
    pub dims: [(usize, usize); 2],
    /// Selects the variable to differentiate by among those that occur.
    pub wrt_pick: usize,
    /// Seed for sampling values and directions.
    pub seed: u64,
    /// Also check the Hessian (scalar cases only).
    pub hessian: bool,
    /// Differentiate by this variable instead (regressions, minimization).
    pub wrt: Option<String>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wrt = self.wrt.clone().or_else(|| {
            let p = Problem::new(&self.expr, DECLS).ok()?;
            let o = &p.occurring;
            (!o.is_empty()).then(|| o[self.wrt_pick % o.len()].clone())
        });
        write!(
            f,
            "Case {{ expr: {:?}, wrt: {:?}, dims: {:?}, seed: {}, hessian: {} }}",
            self.expr, wrt, self.dims, self.seed, self.hessian
        )
    }
}

fn case_strategy(tops: Vec<gen::Ty>) -> impl Strategy<Value = Case> {
    let dims = || (1..=3usize, 1..=3usize);
    (
        prop::sample::select(tops),
        gen::tree(),
        dims(),
        dims(),
        0..8usize,
        any::<u64>(),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(top, tree, d1, d2, wrt_pick, seed, hessian)| Case {
            top,
            expr: gen::build(&tree, top),
            dims: [d1, d2],
            wrt_pick,
            seed,
            hessian,
            wrt: None,
        })
}

/// Counters reported at the end of a run.
#[derive(Default)]
pub struct Stats {
    cases: AtomicUsize,
    no_variable: AtomicUsize,
    gradient_checks: AtomicUsize,
    hessian_checks: AtomicUsize,
    second_opinions: AtomicUsize,
    noise_excused: AtomicUsize,
    kink_excused: AtomicUsize,
    refined_excused: AtomicUsize,
    round_trips: AtomicUsize,
    round_trips_skipped: AtomicUsize,
    explanations: AtomicUsize,
}

impl Stats {
    fn bump(c: &AtomicUsize) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    fn report(&self, name: &str, secs: f64) {
        let g = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        eprintln!(
            "{name}: {} cases in {secs:.1}s; {} without variables; {} derivative checks \
             ({} Hessian); {} second opinions ({} with rounding noise, {} passing at a finer step, {} with one kink failure); \
             {} round trips ({} skipped: order > 2); {} explanations verified",
            g(&self.cases),
            g(&self.no_variable),
            g(&self.gradient_checks),
            g(&self.hessian_checks),
            g(&self.second_opinions),
            g(&self.noise_excused),
            g(&self.refined_excused),
            g(&self.kink_excused),
            g(&self.round_trips),
            g(&self.round_trips_skipped),
            g(&self.explanations),
        );
    }
}

fn fail(msg: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(msg.into())
}

fn dims_of(n: usize, m: usize) -> Vec<(String, usize)> {
    vec![("n".to_string(), n), ("m".to_string(), m)]
}

/// Relative distance between two equally shaped value lists.
fn close(a: &[f64], b: &[f64], rel: f64) -> (bool, f64) {
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    let scale = norm(a).max(norm(b));
    let ok = a.len() == b.len() && diff.is_finite() && diff <= rel * scale + 1e-13;
    (ok, diff / scale.max(1e-300))
}

/// Values for every variable of `p` at dims (n, m), drawn like `matcalc check`.
fn sample(p: &Problem, n: usize, m: usize, seed: u64) -> (Vec<Option<usize>>, Vec<Option<Tensor>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dv = sample_dims(&p.graph, &dims_of(n, m), &mut rng);
    let vals = sample_values(&p.graph, p.root, &dv, &mut rng);
    (dv, vals)
}

/// (c) The lowered function agrees with the reference evaluator.
pub fn check_value(p: &Problem, expr: &str, n: usize, m: usize, seed: u64) -> Result<(), String> {
    let (dv, vals) = sample(p, n, m, seed);
    let got = evaluate(&p.graph, &[p.root], p.root, &vals, &dv)
        .map_err(|e| format!("engine cannot evaluate the function at n={n} m={m}: {e}"))?
        .values
        .remove(0);
    let ast = matcalc::syntax::parse_expr(expr).map_err(|e| format!("parse: {e}"))?;
    let env = oracle::Env {
        vars: p
            .graph
            .vars
            .iter()
            .zip(&vals)
            .map(|(v, t)| {
                let t = t.as_ref().expect("sampled");
                (v.name.clone(), oracle::from_flat(t.shape(), t.data()))
            })
            .collect(),
        dims: [("n".to_string(), n), ("m".to_string(), m)].into(),
    };
    let want = oracle::eval(&ast, &env)?;
    let (shape, data) = want.flat();
    let (ok, err) = close(got.data(), &data, 1e-8);
    if got.shape() == shape.as_slice() && !ok {
        // Ill-conditioned here? If moving every input by one part in 10¹² moves
        // the reference at least as far as the engine is off (cos of a huge
        // det³), the difference is rounding amplified, not a wrong value.
        let nudged = oracle::Env {
            vars: env
                .vars
                .keys()
                .map(|k| {
                    let i = p.graph.vars.iter().position(|v| &v.name == k).expect("a variable");
                    let t = vals[i].as_ref().expect("sampled");
                    let d: Vec<f64> = t.data().iter().map(|x| x * (1.0 + 1e-12)).collect();
                    (k.clone(), oracle::from_flat(t.shape(), &d))
                })
                .collect(),
            dims: env.dims.clone(),
        };
        if let Ok(w2) = oracle::eval(&ast, &nudged) {
            let (_, spread) = close(&data, &w2.flat().1, 1e-8);
            if err <= spread {
                return Ok(());
            }
        }
    }
    if got.shape() != shape.as_slice() || !ok {
        return Err(format!(
            "function value differs from the reference at n={n} m={m} (rel. error {err:.2e}):\n  \
             engine    {:?} {:?}\n  reference {:?} {:?}",
            got.shape(),
            got.data(),
            shape,
            data
        ));
    }
    Ok(())
}

/// How one finite-difference comparison at a single point came out.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Verdict {
    Pass,
    /// Failed, but the difference is within the rounding noise of the finite
    /// difference at that point (a derivative far smaller than the function).
    Noise,
    /// Failed at the check's step, but agrees with finite differences at a finer one.
    Refined,
    Fail(f64),
}

/// Check at one point (`trials: 1`, so the point is `sample(p, n, m, seed)`).
fn check_at(p: &mut Problem, wrt: &str, order: usize, n: usize, m: usize, seed: u64) -> Result<Verdict, String> {
    let opts = CheckOptions {
        seed,
        trials: 1,
        dims: dims_of(n, m),
        order,
        ..CheckOptions::default()
    };
    let r = check(p, &[wrt.to_string()], &opts)
        .map_err(|e| format!("check (order {order}, by {wrt}, n={n} m={m}) could not run: {e}"))?;
    if r.passed {
        return Ok(Verdict::Pass);
    }
    // The finite difference of F (the function, or the derivative one order
    // below) has absolute rounding noise of a few ε‖F‖/h; the comparison's
    // absolute error is at most about 2·worst·max(‖D‖, 1e-8).
    let w = [wrt.to_string()];
    let d = p.derive(&w, order).map_err(|e| e.to_string())?[0].id;
    let f = if order == 1 {
        p.root
    } else {
        p.derive(&w, order - 1).map_err(|e| e.to_string())?[0].id
    };
    let (dv, vals) = sample(p, n, m, seed);
    let ev = evaluate(&p.graph, &[f, d, p.root], p.root, &vals, &dv).map_err(|e| e.to_string())?;
    let norm = |t: &Tensor| t.data().iter().map(|v| v * v).sum::<f64>().sqrt();
    let (nf, nd, nroot) = (norm(&ev.values[0]), norm(&ev.values[1]), norm(&ev.values[2]));
    let x = vals[p.var_index(wrt).map_err(|e| e.to_string())?].as_ref().unwrap();
    let h = 1e-3 * x.data().iter().fold(1.0f64, |a, v| a.max(v.abs()));
    let measured = rounding_noise(p, f, wrt, &dv, &vals, h, seed)?;
    // A k-th derivative far below ε·|f|/hᵏ (what differences of f itself can
    // resolve) is below the precision its own evaluation can be trusted to:
    // e.g. a Hessian of 1e-13 where f ≈ 4 (saturated sigmoid).
    let resolvable = 10.0 * f64::EPSILON * nroot / h.powi(order as i32 - 1);
    let noise = (1e3 * f64::EPSILON * nf).max(20.0 * measured).max(resolvable) / h;
    let diff = 2.0 * r.worst * nd.max(1e-8);
    if std::env::var("MATCALC_PROPTEST_VERBOSE").is_ok() {
        eprintln!("  point {seed}: |F| = {nf:.3e}, |D| = {nd:.3e}, measured noise {measured:.3e}, h = {h:.2e}: noise bound {noise:.3e} vs difference {diff:.3e}");
    }
    if r.worst < 0.5 && diff <= noise {
        return Ok(Verdict::Noise);
    }
    // Steps other than the check's: a function that varies on a scale close
    // to the check's step needs a finer one. A wrong derivative converges to
    // no finite difference at any step.
    let (refined, noise_like) = fd_refined(p, f, d, wrt, &dv, &vals, seed)?;
    Ok(if refined <= 1e-5 {
        Verdict::Refined
    } else if noise_like {
        Verdict::Noise
    } else {
        Verdict::Fail(r.worst)
    })
}

/// The rounding noise of `f` near the point, at the scale of the step `h`:
/// sixth differences of `f` at 17 points h/8 apart along a random line cancel
/// its smooth part (up to degree 5) and leave rounding and quantization
/// (e.g. `1 - tanh(u)^2` once `tanh(u)` is within a few ulps of 1), amplified
/// by √924.
#[allow(clippy::too_many_arguments)]
fn rounding_noise(
    p: &Problem,
    f: matcalc::ir::Id,
    wrt: &str,
    dv: &[Option<usize>],
    vals: &[Option<Tensor>],
    h: f64,
    seed: u64,
) -> Result<f64, String> {
    let dv = dv.to_vec();
    let vi = p.var_index(wrt).map_err(|e| e.to_string())?;
    let x = vals[vi].clone().expect("sampled");
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0015e);
    let mut dir: Vec<f64> = (0..x.len()).map(|_| matcalc::eval::check::normal(&mut rng)).collect();
    let nd = dir.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
    dir.iter_mut().for_each(|v| *v /= nd);
    let at = |t: f64| -> Result<Vec<f64>, String> {
        let mut vs = vals.to_vec();
        let moved: Vec<f64> = x.data().iter().zip(&dir).map(|(a, b)| a + t * b).collect();
        vs[vi] = Some(Tensor::from_vec(x.shape().to_vec(), moved).map_err(|e| e.to_string())?);
        Ok(evaluate(&p.graph, &[f], p.root, &vs, &dv)
            .map_err(|e| e.to_string())?
            .values
            .remove(0)
            .into_data())
    };
    let fs: Vec<Vec<f64>> = (-8..=8).map(|k| at(h * k as f64 / 8.0)).collect::<Result<_, _>>()?;
    const C6: [f64; 7] = [1.0, -6.0, 15.0, -20.0, 15.0, -6.0, 1.0];
    let mut worst = 0.0f64;
    for w in fs.windows(7) {
        let d6: f64 = (0..w[0].len())
            .map(|i| {
                let s: f64 = w.iter().zip(C6).map(|(v, c)| c * v[i]).sum();
                s * s
            })
            .sum::<f64>()
            .sqrt();
        worst = worst.max(d6 / 924f64.sqrt());
    }
    Ok(worst)
}

/// The derivative `d` of `f` against central differences with Richardson
/// extrapolation in two random directions, at steps from 1/256 to 4 times the
/// check's. Returns the relative error at the best step (the worse direction
/// counts) and whether every direction looks like pure rounding noise: an
/// error that grows like 1/step, so that the error at the check's step is
/// within 3× what the error at the finest step predicts. A wrong derivative
/// has an error that does not shrink with the step.
fn fd_refined(
    p: &Problem,
    f: matcalc::ir::Id,
    d: matcalc::ir::Id,
    wrt: &str,
    dv: &[Option<usize>],
    vals: &[Option<Tensor>],
    seed: u64,
) -> Result<(f64, bool), String> {
    let dv = dv.to_vec();
    let g = &p.graph;
    let vi = p.var_index(wrt).map_err(|e| e.to_string())?;
    let x = vals[vi].clone().expect("sampled");
    let lx = x.len();
    let dval = evaluate(g, &[d], p.root, vals, &dv)
        .map_err(|e| e.to_string())?
        .values
        .remove(0);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let scale = x.data().iter().fold(1.0f64, |a, v| a.max(v.abs()));
    let mut worst = 0.0f64;
    let mut noise_like = true;
    for _ in 0..2 {
        let mut dir: Vec<f64> = (0..lx).map(|_| matcalc::eval::check::normal(&mut rng)).collect();
        if g.vars[vi].symmetric {
            let k = x.shape()[0];
            for i in 0..k {
                for j in 0..i {
                    dir[i * k + j] = dir[j * k + i];
                }
            }
        }
        let nd = dir.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
        dir.iter_mut().for_each(|v| *v /= nd);
        let an: Vec<f64> = dval
            .data()
            .chunks(lx)
            .map(|row| row.iter().zip(&dir).map(|(a, b)| a * b).sum())
            .collect();
        let at = |t: f64| -> Result<Vec<f64>, String> {
            let mut vs = vals.to_vec();
            let moved: Vec<f64> = x.data().iter().zip(&dir).map(|(a, b)| a + t * b).collect();
            vs[vi] = Some(Tensor::from_vec(x.shape().to_vec(), moved).map_err(|e| e.to_string())?);
            Ok(evaluate(g, &[f], p.root, &vs, &dv)
                .map_err(|e| e.to_string())?
                .values
                .remove(0)
                .into_data())
        };
        let mut best = f64::INFINITY;
        let (mut at_one, mut at_finest) = (f64::NAN, f64::NAN);
        for s in [1.0, 0.5, 0.25, 0.125, 1.0 / 16.0, 1.0 / 64.0, 1.0 / 256.0, 2.0, 4.0] {
            let h = 1e-3 * scale * s;
            let (Ok(p1), Ok(m1), Ok(p2), Ok(m2)) = (at(h), at(-h), at(h / 2.0), at(-h / 2.0)) else {
                continue;
            };
            let num: Vec<f64> = (0..an.len())
                .map(|i| {
                    let d1 = (p1[i] - m1[i]) / (2.0 * h);
                    let d2 = (p2[i] - m2[i]) / h;
                    (4.0 * d2 - d1) / 3.0
                })
                .collect();
            let (_, err) = close(&an, &num, 0.0);
            let scale = an.iter().chain(&num).map(|v| v * v).sum::<f64>().sqrt();
            let err = if scale < 1e-8 { err * scale / 1e-8 } else { err };
            best = best.min(err);
            if s == 1.0 {
                at_one = err;
            }
            if s == 1.0 / 256.0 {
                at_finest = err;
            }
            if std::env::var("MATCALC_PROPTEST_VERBOSE").is_ok() {
                eprintln!("  refined: step {s} h={h:.2e}: error {err:.3e} (|an| = {scale:.3e})");
            }
        }
        worst = worst.max(best);
        noise_like &= at_one <= 3.0 * at_finest / 256.0;
    }
    Ok((worst, noise_like))
}

/// (a) The derivative of order `order` by `wrt` passes the finite-difference
/// check at (n, m). When the standard check (3 points) fails, a second opinion
/// at three fresh points decides: each must pass, or fail only within the
/// finite difference's rounding noise; an expression with a kink (abs, sign,
/// relu, step, norm1, norm2) may fail at one of them, since a difference that
/// straddles the kink is no evidence.
#[allow(clippy::too_many_arguments)]
pub fn check_derivative(
    p: &mut Problem,
    expr: &str,
    wrt: &str,
    order: usize,
    n: usize,
    m: usize,
    seed: u64,
    stats: Option<&Stats>,
) -> Result<(), String> {
    let opts = CheckOptions {
        seed,
        dims: dims_of(n, m),
        order,
        ..CheckOptions::default()
    };
    let report = check(p, &[wrt.to_string()], &opts)
        .map_err(|e| format!("check (order {order}, by {wrt}, n={n} m={m}) could not run: {e}"))?;
    if report.passed {
        return Ok(());
    }
    if let Some(s) = stats {
        Stats::bump(&s.second_opinions);
    }
    let mut verdicts = Vec::new();
    for k in 1..=3u64 {
        verdicts.push(check_at(
            p,
            wrt,
            order,
            n,
            m,
            seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        )?);
    }
    let fails = verdicts.iter().filter(|v| matches!(v, Verdict::Fail(_))).count();
    let kinky = KINKS.iter().any(|k| expr.contains(k));
    if std::env::var("MATCALC_PROPTEST_VERBOSE").is_ok() {
        eprintln!(
            "SECOND OPINION {expr} by {wrt} order {order} n={n} m={m} seed={seed}: first {:.2e}, then {verdicts:?}",
            report.worst
        );
    }
    if fails == 0 || (fails == 1 && kinky) {
        if let Some(s) = stats {
            if verdicts.contains(&Verdict::Noise) {
                Stats::bump(&s.noise_excused);
            }
            if verdicts.contains(&Verdict::Refined) {
                Stats::bump(&s.refined_excused);
            }
            if fails == 1 {
                Stats::bump(&s.kink_excused);
            }
        }
        return Ok(());
    }
    let worst = report
        .lines
        .iter()
        .max_by(|a, b| a.error.total_cmp(&b.error))
        .map(|l| format!("{} {} trial {} [{}]: {:.3e}", l.what, l.kind, l.trial, l.dims, l.error))
        .unwrap_or_default();
    Err(format!(
        "derivative of order {order} by {wrt} fails the finite-difference check at n={n} m={m}: \
         worst {worst}; at three fresh points: {verdicts:?}"
    ))
}

/// (b) The printed derivative parses back and evaluates to the same numbers.
/// Returns `Ok(false)` when the derivative is a tensor of order > 2 (no matrix form).
pub fn check_round_trip(
    p: &mut Problem,
    wrt: &str,
    order: usize,
    dims: &[(usize, usize)],
    seed: u64,
) -> Result<bool, String> {
    let d = p
        .derive(&[wrt.to_string()], order)
        .map_err(|e| format!("derive: {e}"))?
        .remove(0)
        .id;
    round_trip_node(p, d, &format!("derivative (order {order}, by {wrt})"), dims, seed)
}

/// `t` with each entry moved by up to one part in 10¹², in a fixed
/// pseudo-random direction per entry (a uniform scaling would keep the
/// cancellations of a homogeneous expression).
fn nudge(t: &Tensor) -> Tensor {
    let d: Vec<f64> = t
        .data()
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let r = ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / (1u64 << 24) as f64;
            x * (1.0 + 1e-12 * (2.0 * r - 1.0))
        })
        .collect();
    Tensor::from_vec(t.shape().to_vec(), d).expect("same shape")
}

/// The node printed in the input language parses back (against [`DECLS`]) and
/// evaluates to the same numbers at the same values (mapped by name).
pub fn round_trip_node(
    p: &Problem,
    id: matcalc::ir::Id,
    what: &str,
    dims: &[(usize, usize)],
    seed: u64,
) -> Result<bool, String> {
    if p.graph.order(id) > 2 {
        return Ok(false);
    }
    let r = render::recover(&p.graph, &[id], Form::Nested, Some(p.root), &p.reserved_names());
    let (_, res) = r.lines(&Style::EXPR);
    let printed = &res[0];
    let kind = what.split(' ').next().unwrap_or(what);
    let p2 =
        Problem::new(printed, DECLS).map_err(|e| format!("printed {kind} `{printed}` does not parse back: {e}"))?;
    for &(n, m) in dims {
        let (dv, vals) = sample(p, n, m, seed);
        let mut want = evaluate(&p.graph, &[id], p.root, &vals, &dv)
            .map_err(|e| format!("{what} cannot be evaluated at n={n} m={m}: {e}"))?;
        if !want.warnings.is_empty() {
            // Not differentiable here (the node used a subgradient convention
            // that the printed expression, evaluated as a function, cannot).
            continue;
        }
        let want = want.values.remove(0);
        let vals2: Vec<Option<Tensor>> = p2
            .graph
            .vars
            .iter()
            .map(|v| {
                let i = p.graph.var_index(&v.name).expect("same declarations");
                vals[i].clone()
            })
            .collect();
        let dims2 =
            bind_dims(&p2.graph, &vals2, &dims_of(n, m)).map_err(|e| format!("printed {kind} `{printed}`: {e}"))?;
        let got = evaluate(&p2.graph, &[p2.root], p2.root, &vals2, &dims2)
            .map_err(|e| format!("printed {kind} `{printed}` cannot be evaluated: {e}"))?
            .values
            .remove(0);
        let (ok, err) = close(got.data(), want.data(), 1e-8);
        if got.shape() == want.shape() && !ok {
            // Ill-conditioned here? If moving the inputs by parts in 10¹²
            // moves the node's value at least as far as the printed form is
            // off (a Hessian entry that is a difference of two large, nearly
            // equal terms), the two evaluation orders differ by amplified
            // rounding, not by a wrong formula.
            let nudged: Vec<Option<Tensor>> = vals.iter().map(|t| t.as_ref().map(nudge)).collect();
            if let Ok(mut w2) = evaluate(&p.graph, &[id], p.root, &nudged, &dv) {
                let (_, spread) = close(want.data(), w2.values.remove(0).data(), 1e-8);
                if err <= spread {
                    continue;
                }
            }
        }
        if got.shape() != want.shape() || !ok {
            return Err(format!(
                "printed {kind} `{printed}` ({what}) evaluates differently \
                 at n={n} m={m} (rel. error {err:.2e}):\n  printed {:?} {:?}\n  node    {:?} {:?}",
                got.shape(),
                got.data(),
                want.shape(),
                want.data()
            ));
        }
    }
    Ok(true)
}

/// All three properties for one case; an engine panic is a failure like any other.
pub fn run_case(c: &Case, stats: Option<&Stats>) -> Result<(), String> {
    thread_local!(static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CASE.with(|c| c.get()) {
                default(info)
            }
        }));
    });
    IN_CASE.with(|f| f.set(true));
    let r = guard(|| run_case_inner(c, stats));
    IN_CASE.with(|f| f.set(false));
    r
}

/// Run one step, turning an engine panic into an error.
fn guard<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|e| {
        let what = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("the engine panicked: {what}"))
    })
}

/// Every step runs even when an earlier one failed (a known issue in printing
/// must not hide a wrong derivative); after a panic the problem is dropped.
/// The failure reported is the first one no known issue explains, else the first.
fn run_case_inner(c: &Case, stats: Option<&Stats>) -> Result<(), String> {
    let bump = |f: fn(&Stats) -> &AtomicUsize| {
        if let Some(s) = stats {
            Stats::bump(f(s));
        }
    };
    bump(|s| &s.cases);
    let mut p = Problem::new(&c.expr, DECLS).map_err(|e| format!("generated expression does not type: {e}"))?;
    let mut errors: Vec<String> = Vec::new();
    let finish = |errors: Vec<String>| -> Result<(), String> {
        if let Some(e) = errors.iter().find(|e| known_issue(&c.expr, e).is_none()) {
            return Err(e.clone());
        }
        errors.into_iter().next().map_or(Ok(()), Err)
    };
    let panicked = |errors: &Vec<String>| errors.iter().any(|e| e.starts_with("the engine panicked"));
    for &(n, m) in &c.dims {
        if let Err(e) = guard(|| check_value(&p, &c.expr, n, m, c.seed)) {
            errors.push(e);
        }
    }
    if let Err(e) = guard(|| round_trip_node(&p, p.root, "function", &c.dims, c.seed)) {
        errors.push(e);
    }
    if p.occurring.is_empty() {
        bump(|s| &s.no_variable);
        return finish(errors);
    }
    let wrt = match &c.wrt {
        Some(w) if p.occurring.contains(w) => w.clone(),
        Some(w) => return Err(format!("`{w}` does not occur")),
        None => p.occurring[c.wrt_pick % p.occurring.len()].clone(),
    };
    let mut orders = vec![1];
    if c.hessian && p.graph.order(p.root) == 0 {
        orders.push(2);
    }
    for &order in &orders {
        for &(n, m) in &c.dims {
            if panicked(&errors) {
                return finish(errors);
            }
            match guard(|| check_derivative(&mut p, &c.expr, &wrt, order, n, m, c.seed, stats)) {
                Ok(()) if order == 1 => bump(|s| &s.gradient_checks),
                Ok(()) => bump(|s| &s.hessian_checks),
                Err(e) => errors.push(e),
            }
        }
        if panicked(&errors) {
            return finish(errors);
        }
        match guard(|| check_round_trip(&mut p, &wrt, order, &c.dims, c.seed)) {
            Ok(true) => bump(|s| &s.round_trips),
            Ok(false) => bump(|s| &s.round_trips_skipped),
            Err(e) => errors.push(e),
        }
        if panicked(&errors) {
            return finish(errors);
        }
        match guard(|| check_explanation(&mut p, &wrt, order, &c.dims, c.seed)) {
            Ok(()) => bump(|s| &s.explanations),
            Err(e) => errors.push(e),
        }
    }
    finish(errors)
}

/// (d) The step-by-step derivation (`derive --explain`): every line holds at a random point.
pub fn check_explanation(
    p: &mut Problem,
    wrt: &str,
    order: usize,
    dims: &[(usize, usize)],
    seed: u64,
) -> Result<(), String> {
    let wrt = vec![wrt.to_string()];
    let ds = p.derive(&wrt, order).map_err(|e| format!("derive: {e}"))?;
    let e = matcalc::explain::explain(p, &wrt, order, &ds, &Default::default())
        .map_err(|e| format!("no explanation (order {order}): {e}"))?;
    let text = e.render(matcalc::explain::Format::Text);
    let _ = e.render(matcalc::explain::Format::Latex);
    for &(n, m) in dims.iter().take(1) {
        let v = e
            .verify(seed, &dims_of(n, m))
            .map_err(|err| format!("explanation cannot be evaluated at n={n} m={m}: {err}"))?;
        if !v.passed {
            let bad: Vec<String> = v
                .lines
                .iter()
                .filter(|l| !l.ok)
                .map(|l| format!("{} (error {:.1e})", l.what, l.error))
                .collect();
            return Err(format!(
                "explanation (order {order}) fails at n={n} m={m}: {}\n{text}",
                bad.join(", ")
            ));
        }
    }
    Ok(())
}

/// Engine bugs already pinned by tests in `tests/regressions.rs`: a failure
/// one of these explains is counted and printed at the end of the run but does
/// not fail it (unless `MATCALC_PROPTEST_STRICT=1`), so that the run goes on
/// looking for new bugs. Remove an entry once the engine is fixed.
fn known_issue(expr: &str, msg: &str) -> Option<&'static str> {
    // Fixed meanwhile, entries removed (their regression tests pass):
    // printed_fill_has_no_size, printed_broadcast_loses_shape,
    // printed_softmax_of_matrix, printed_reciprocal_factor_needs_parentheses,
    // printed_scalar_product_inside_matrix_chain, factor_common_adds_different_shapes,
    // outer_product_with_diag_jacobian_mixes_dimensions,
    // check_order_two_treats_gradient_as_primal, unbroadcast_drops_summed_ones.
    let _ = expr;
    let parse = msg.starts_with("printed ") && msg.contains("does not parse back");
    let has = |s: &str| msg.contains(s);
    if parse && has("] = ") {
        // printed_matrix_embeds_index_notation, printed_jacobian_of_diag_diag_in_index_notation
        return Some("printed_matrix_in_index_notation");
    }
    if parse
        && (has("a column vector times a column vector")
            || has("a column vector times a matrix")
            || has("transpose one side so both are columns"))
    {
        // printed_diag_of_matrix_loses_transpose_in_chain and relatives
        return Some("printed_vector_loses_transpose");
    }
    None
}

/// Regression helper: the function's value agrees with the reference evaluator.
pub fn assert_value(expr: &str, dims: &[(usize, usize)]) {
    let p = Problem::new(expr, DECLS).unwrap_or_else(|e| panic!("{expr}: {e}"));
    for &(n, m) in dims {
        for seed in 0..3 {
            if let Err(e) = check_value(&p, expr, n, m, seed) {
                panic!("{expr}: {e}");
            }
        }
    }
}

/// Regression helper: the printed function parses back and evaluates alike.
pub fn assert_function_round_trip(expr: &str, dims: &[(usize, usize)]) {
    let p = Problem::new(expr, DECLS).unwrap_or_else(|e| panic!("{expr}: {e}"));
    if let Err(e) = round_trip_node(&p, p.root, "function", dims, 0) {
        panic!("{expr}: {e}");
    }
}

/// Regression helper: the printed derivative parses back and evaluates alike.
pub fn assert_derivative_round_trip(expr: &str, wrt: &str, order: usize, dims: &[(usize, usize)]) {
    let mut p = Problem::new(expr, DECLS).unwrap_or_else(|e| panic!("{expr}: {e}"));
    match check_round_trip(&mut p, wrt, order, dims, 0) {
        Ok(true) => {}
        Ok(false) => panic!("{expr}: the derivative has no matrix form"),
        Err(e) => panic!("{expr}: {e}"),
    }
}

/// Regression helper: the derivative passes the finite-difference check.
pub fn assert_derivative_checks(expr: &str, wrt: &str, order: usize, dims: &[(usize, usize)]) {
    let mut p = Problem::new(expr, DECLS).unwrap_or_else(|e| panic!("{expr}: {e}"));
    for &(n, m) in dims {
        for seed in 0..3 {
            if let Err(e) = check_derivative(&mut p, expr, wrt, order, n, m, seed, None) {
                panic!("{expr}: {e}");
            }
        }
    }
}

/// Total cases per run: `MATCALC_PROPTEST_CASES`, else 2 000.
fn total_cases() -> u32 {
    std::env::var("MATCALC_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(2_000)
}

fn run_property(name: &str, cases: u32, tops: Vec<gen::Ty>) {
    // When `regressions.rs` includes this file as a module, only the harness is wanted.
    if module_path!() != "properties" {
        return;
    }
    let mut config = ProptestConfig::with_cases(cases);
    config.failure_persistence = None;
    config.max_shrink_time = 300_000;
    let mut runner = TestRunner::new(config);
    let stats = Stats::default();
    let start = Instant::now();
    let strict = std::env::var("MATCALC_PROPTEST_STRICT").is_ok_and(|v| v != "0");
    let known = std::sync::Mutex::new(std::collections::BTreeMap::<&str, (usize, String)>::new());
    let result = runner.run(&case_strategy(tops), |c| match run_case(&c, Some(&stats)) {
        Ok(()) => Ok(()),
        Err(msg) => match known_issue(&c.expr, &msg) {
            Some(k) if !strict => {
                let mut known = known.lock().unwrap();
                let e = known.entry(k).or_insert((0, format!("{c:?}")));
                e.0 += 1;
                Ok(())
            }
            _ => Err(fail(msg)),
        },
    });
    stats.report(name, start.elapsed().as_secs_f64());
    for (k, (count, example)) in known.lock().unwrap().iter() {
        eprintln!("  known issue `{k}` hit {count} times (tolerated; MATCALC_PROPTEST_STRICT=1 fails), e.g. {example}");
    }
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

/// Scalar expressions: gradient (and for 30% the Hessian) by one occurring variable.
#[test]
fn scalar_expressions() {
    let total = total_cases();
    run_property("scalar_expressions", total - total / 3, vec![gen::Ty::S]);
}

/// Vector- and matrix-valued expressions: Jacobians.
#[test]
fn vector_and_matrix_expressions() {
    use gen::{Ty::*, D::*};
    let tops = vec![Col(N), Col(N), Col(M), Col(M), Row(N), Mat(N, N), Mat(N, M), Mat(M, N)];
    run_property("vector_and_matrix_expressions", total_cases() / 3, tops);
}

/// Print a syntax tree in the input language, every compound parenthesized.
pub fn print_ast(e: &matcalc::syntax::ast::Expr) -> String {
    let mut kids = Vec::new();
    e.walk_children(|c| kids.push(print_ast(c)));
    assemble(e, &kids)
}

/// Print `e` with its children already printed as `kids`.
fn assemble(e: &matcalc::syntax::ast::Expr, kids: &[String]) -> String {
    use matcalc::syntax::ast::ExprKind;
    match &e.kind {
        ExprKind::Num(v) if *v < 0.0 => format!("({v})"),
        ExprKind::Num(v) => format!("{v}"),
        ExprKind::Ident(n) => n.clone(),
        ExprKind::Neg(_) => format!("(-{})", kids[0]),
        ExprKind::Transpose(_) => format!("{}'", kids[0]),
        ExprKind::Binary(op, _, _) => format!("({} {} {})", kids[0], op.symbol(), kids[1]),
        ExprKind::Call { name, .. } => format!("{name}({})", kids.join(", ")),
        ExprKind::Matrix(_) | ExprKind::Missing => "?".to_string(),
    }
}

/// Every expression obtained from `e` by replacing one subtree with one of its
/// children or with a leaf.
fn variants(e: &matcalc::syntax::ast::Expr) -> Vec<String> {
    const LEAVES: [&str; 14] = [
        "a", "x", "y", "z", "A", "B", "C", "S", "x'", "z'", "1", "2", "eye(n)", "eye(m)",
    ];
    let mut kids = Vec::new();
    e.walk_children(|c| kids.push(c));
    let printed: Vec<String> = kids.iter().map(|c| print_ast(c)).collect();
    let mut out: Vec<String> = printed.clone();
    out.extend(LEAVES.iter().map(|l| l.to_string()));
    for (i, k) in kids.iter().enumerate() {
        for v in variants(k) {
            let mut parts = printed.clone();
            parts[i] = v;
            out.push(assemble(e, &parts));
        }
    }
    out
}

/// Greedily shrink `expr` while it types and `still_fails` holds.
pub fn minimize(expr: &str, still_fails: &dyn Fn(&str) -> bool) -> String {
    let mut cur = print_ast(&matcalc::syntax::parse_expr(expr).expect("parses"));
    loop {
        let ast = matcalc::syntax::parse_expr(&cur).expect("parses");
        let mut cands = variants(&ast);
        cands.sort_by_key(|c| c.len());
        cands.dedup();
        let next = cands
            .into_iter()
            .filter(|c| c.len() < cur.len() && Problem::new(c, DECLS).is_ok())
            .find(|c| still_fails(c));
        match next {
            Some(c) => cur = c,
            None => return cur,
        }
    }
}

/// A failure's class: the known issue, or the message's first words.
fn classify(msg: &str) -> String {
    known_issue("", msg)
        .map(String::from)
        .unwrap_or_else(|| msg.split_whitespace().take(5).collect::<Vec<_>>().join(" "))
}

/// The case described by `MATCALC_CASE` (expression), `MATCALC_CASE_WRT`,
/// `MATCALC_CASE_DIMS` (`n,m;n,m`, default `1,1;2,3`), `MATCALC_CASE_SEED`,
/// `MATCALC_CASE_HESSIAN`.
fn case_from_env() -> Option<Case> {
    let var = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
    let expr = var("MATCALC_CASE")?;
    let dims: Vec<(usize, usize)> = var("MATCALC_CASE_DIMS")
        .unwrap_or("1,1;2,3".into())
        .split(';')
        .map(|p| {
            let (a, b) = p.split_once(',').expect("n,m");
            (a.trim().parse().unwrap(), b.trim().parse().unwrap())
        })
        .collect();
    Some(Case {
        top: gen::Ty::S,
        expr,
        dims: [dims[0], *dims.get(1).unwrap_or(&dims[0])],
        wrt_pick: 0,
        seed: var("MATCALC_CASE_SEED").map_or(0, |s| s.parse().unwrap()),
        hessian: var("MATCALC_CASE_HESSIAN").is_some(),
        wrt: var("MATCALC_CASE_WRT"),
    })
}

/// Reproduce one case: `MATCALC_CASE='expr' [MATCALC_CASE_WRT=x …] cargo test
/// --test properties one_case -- --ignored --nocapture`.
#[test]
#[ignore]
fn sample_expressions() {
    let mut runner = TestRunner::deterministic();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut lens = Vec::new();
    for k in 0..2000 {
        let c = case_strategy(gen::ALL.to_vec())
            .new_tree(&mut runner)
            .unwrap()
            .current();
        if k < 25 {
            eprintln!("{:?}: {}", c.top, c.expr);
        }
        lens.push(c.expr.len());
        for f in [
            "sin(",
            "cos(",
            "tan(",
            "asin(",
            "acos(",
            "atan(",
            "exp(",
            "log(",
            "ln(",
            "sqrt(",
            "abs(",
            "sign(",
            "tanh(",
            "sigmoid(",
            "softplus(",
            "relu(",
            "step(",
            "sum(",
            "tr(",
            "trace(",
            "det(",
            "logdet(",
            "inv(",
            "diag(",
            "norm1(",
            "norm2(",
            "norm(",
            "logsumexp(",
            "softmax(",
            "vector(",
            "matrix(",
            "eye(",
            "^ -1",
            "^ -2",
            "^ 2",
            "^ 3",
            "^ 0)",
            ".^",
            "./",
            ".*",
            "'",
            " / ",
        ] {
            if c.expr.contains(f) {
                *counts.entry(f).or_default() += 1;
            }
        }
    }
    lens.sort();
    eprintln!("lengths: median {}, 90% {}, max {}", lens[1000], lens[1800], lens[1999]);
    eprintln!("cases containing each construct (of 2000): {counts:?}");
}

#[test]
#[ignore]
fn one_case() {
    let Some(c) = case_from_env() else { return };
    let mut p = Problem::new(&c.expr, DECLS).unwrap_or_else(|e| panic!("{e}"));
    let show = |p: &Problem, id| {
        let r = render::recover(&p.graph, &[id], Form::Nested, Some(p.root), &p.reserved_names());
        r.lines(&Style::EXPR).1.remove(0)
    };
    eprintln!("f = {}", show(&p, p.root));
    let wrt = c.wrt.clone().unwrap_or_else(|| p.occurring[0].clone());
    for order in 1..=(1 + c.hessian as usize) {
        if let Ok(d) = p.derive(std::slice::from_ref(&wrt), order) {
            eprintln!("order {order} by {wrt} = {}", show(&p, d[0].id));
        }
    }
    if std::env::var("MATCALC_CASE_AUDIT").is_ok() {
        let order = 1 + c.hessian as usize;
        let d = p.derive(std::slice::from_ref(&wrt), order).unwrap()[0].id;
        for &(n, m) in &c.dims {
            eprintln!("shape audit n={n} m={m}: {}", shape_audit(&p, d, n, m, c.seed));
        }
    }
    let c = Case { wrt: Some(wrt), ..c };
    eprintln!("{:?}", run_case(&c, None));
}

/// The first node (children first) whose value's shape is not its declared shape.
fn shape_audit(p: &Problem, root: matcalc::ir::Id, n: usize, m: usize, seed: u64) -> String {
    use matcalc::ir::Dim;
    let g = &p.graph;
    let (dv, vals) = sample(p, n, m, seed);
    let declared = |id| -> Vec<usize> {
        g.shape(id)
            .iter()
            .map(|d| match *d {
                Dim::Fixed(k) => k as usize,
                Dim::Sym(s) => dv[s as usize].unwrap_or(0),
            })
            .collect()
    };
    for id in g.topo_order(&[root]) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            evaluate(g, &[id], p.root, &vals, &dv).map(|mut e| e.values.remove(0))
        }));
        let bad = match &r {
            Ok(Ok(t)) => t.shape() != declared(id).as_slice(),
            _ => true,
        };
        if bad {
            let kids: Vec<String> = g
                .node(id)
                .children()
                .iter()
                .map(|&c| format!("{:?} {:?} shape {}", c, g.node(c), g.shape_name(g.shape(c))))
                .collect();
            let parents: Vec<String> = g
                .topo_order(&[root])
                .into_iter()
                .filter(|&q| g.node(q).children().contains(&id))
                .map(|q| format!("{q:?} {:?} shape {}", g.node(q), g.shape_name(g.shape(q))))
                .collect();
            eprintln!("parents of {id:?}: {parents:#?}");
            return format!(
                "node {id:?} = {:?}, declared {} ({:?}), evaluates to {:?}; children: {kids:#?}",
                g.node(id),
                g.shape_name(g.shape(id)),
                declared(id),
                r.map(|r| r.map(|t| t.shape().to_vec()))
            );
        }
    }
    "every node has its declared shape".into()
}

/// Shrink the case from the environment (see [`one_case`]) while it fails the
/// same way: `cargo test --test properties minimize_case -- --ignored --nocapture`.
#[test]
#[ignore]
fn minimize_case() {
    let Some(c) = case_from_env() else { return };
    let Err(msg) = run_case(&c, None) else {
        eprintln!("the case passes");
        return;
    };
    let class = classify(&msg);
    eprintln!("failure class: {class}");
    let small = minimize(&c.expr, &|e| {
        let c = Case {
            expr: e.to_string(),
            ..c.clone()
        };
        run_case(&c, None).is_err_and(|m| classify(&m) == class)
    });
    let c = Case {
        expr: small.clone(),
        ..c
    };
    eprintln!("minimized: {small}\n{:?}", run_case(&c, None));
}

/// The second opinion must not excuse wrong derivatives: against hand-built
/// wrong gradients of `sum(sin(x))`, the refined finite differences neither
/// agree nor look like rounding noise; the true gradient agrees.
#[test]
fn second_opinion_rejects_wrong_derivatives() {
    use matcalc::ir::Func;
    if module_path!() != "properties" {
        return;
    }
    let mut p = Problem::new("sum(sin(x))", DECLS).unwrap();
    let x = p
        .graph
        .var("x", p.graph.vars[p.graph.var_index("x").unwrap()].shape.clone(), false);
    let right = p.graph.map(Func::Cos, x);
    let scaled = p.graph.scale(1.001, right);
    let other = p.graph.map(Func::Sin, x);
    for (n, m) in [(1, 1), (3, 2)] {
        let (dv, vals) = sample(&p, n, m, 7);
        let (err, _) = fd_refined(&p, p.root, right, "x", &dv, &vals, 7).unwrap();
        assert!(err <= 1e-9, "true gradient: {err}");
        for wrong in [scaled, other] {
            let (err, noise_like) = fd_refined(&p, p.root, wrong, "x", &dv, &vals, 7).unwrap();
            assert!(err > 1e-4 && !noise_like, "wrong gradient excused: {err} {noise_like}");
        }
    }
}

/// The compiled plan gives the interpreter's numbers, errors and warnings on
/// generated expressions (function, first derivative, and for scalar cases
/// with `hessian` the Hessian), unbatched and with the variable batched.
#[test]
fn plan_matches_interpreter() {
    if module_path!() != "properties" {
        return;
    }
    let mut config = ProptestConfig::with_cases((total_cases() / 4).max(1));
    config.failure_persistence = None;
    let mut runner = TestRunner::new(config);
    let compared = AtomicUsize::new(0);
    let result = runner.run(&case_strategy(gen::ALL.to_vec()), |c| {
        plan_vs_interpreter(&c, &compared).map_err(|e| fail(format!("{c:?}: {e}")))
    });
    if let Err(e) = result {
        panic!("plan_matches_interpreter: {e}");
    }
    let n = compared.load(Ordering::Relaxed);
    eprintln!("plan_matches_interpreter: {n} comparisons");
    assert!(n >= total_cases() as usize / 8, "too few comparisons: {n}");
}

fn plan_vs_interpreter(c: &Case, compared: &AtomicUsize) -> Result<(), String> {
    let Ok(mut p) = Problem::new(&c.expr, DECLS) else {
        return Ok(());
    };
    if p.occurring.is_empty() {
        return Ok(());
    }
    let wrt = p.occurring[c.wrt_pick % p.occurring.len()].clone();
    let order = if c.hessian && p.graph.order(p.root) == 0 { 2 } else { 1 };
    let Ok(ds) = p.derive(std::slice::from_ref(&wrt), order) else {
        return Ok(());
    };
    let mut roots = vec![p.root];
    roots.extend(ds.iter().map(|d| d.id));
    let mut compiled = matcalc::Compiled::new(p.clone(), ds);
    for (k, &(n, m)) in c.dims.iter().enumerate() {
        let (dv, vals) = sample(&p, n, m, c.seed.wrapping_add(k as u64));
        compiled.set_dims(&dims_of(n, m));
        let named: Vec<(&str, &Tensor)> = p
            .graph
            .vars
            .iter()
            .zip(&vals)
            .filter_map(|(v, t)| Some((v.name.as_str(), t.as_ref()?)))
            .collect();
        let want = evaluate(&p.graph, &roots, p.root, &vals, &dv);
        let got = compiled.eval(&named);
        Stats::bump(compared);
        match (&want, got) {
            (Ok(w), Ok(e)) => {
                for (i, wv) in w.values.iter().enumerate() {
                    let gv = if i == 0 { e.value() } else { e.derivative(i - 1) };
                    let (ok, err) = close(gv.data, wv.data(), 1e-10);
                    if gv.shape != wv.shape() || !ok {
                        return Err(format!("root {i} at n={n} m={m}: relative error {err:.2e}"));
                    }
                }
                let ws: Vec<&str> = e.warnings().collect();
                if ws != w.warnings {
                    return Err(format!("warnings: plan {ws:?}, interpreter {:?}", w.warnings));
                }
            }
            (Err(w), Err(e)) if *w == e => {}
            (w, e) => {
                return Err(format!(
                    "at n={n} m={m}: plan {:?}, interpreter {:?}",
                    e.map(|_| ()).map_err(|e| e.to_string()),
                    w.as_ref().map(|_| ()).map_err(|e| e.to_string())
                ))
            }
        }
        // Batched: this point and a second one of the variable, at once.
        let Ok(w1) = want else { continue };
        let v = p.graph.var_index(&wrt).expect("wrt is a variable");
        let (_, vals2) = sample(&p, n, m, c.seed.wrapping_add(100 + k as u64));
        let (Some(x1), Some(x2)) = (vals[v].as_ref(), vals2[v].as_ref()) else {
            continue;
        };
        let mut vals_b = vals.clone();
        vals_b[v] = Some(x2.clone());
        let Ok(w2) = evaluate(&p.graph, &roots, p.root, &vals_b, &dv) else {
            continue;
        };
        let mut shape = vec![2];
        shape.extend_from_slice(x1.shape());
        let stacked = Tensor::from_vec(shape, [x1.data(), x2.data()].concat()).expect("stacked");
        let named_b: Vec<(&str, &Tensor)> = named
            .iter()
            .map(|&(nm, t)| if nm == wrt { (nm, &stacked) } else { (nm, t) })
            .collect();
        let e = compiled
            .eval_batch(&named_b, &wrt)
            .map_err(|e| format!("batched at n={n} m={m}: {e}"))?;
        for i in 0..roots.len() {
            let gv = if i == 0 { e.value() } else { e.derivative(i - 1) };
            let want: Vec<f64> = [w1.values[i].data(), w2.values[i].data()].concat();
            let (ok, err) = close(gv.data, &want, 1e-10);
            if gv.shape[0] != 2 || &gv.shape[1..] != w1.values[i].shape() || !ok {
                return Err(format!("batched root {i} at n={n} m={m}: relative error {err:.2e}"));
            }
        }
    }
    Ok(())
}
