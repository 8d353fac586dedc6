//! Typing: infer the shape of every sub-expression (unifying dimensions), then
//! lower the syntax tree to the IR.
//!
//! Types distinguish row vectors from column vectors (`x'` is a row) so that
//! `x'*y` is an inner product and `x*y'` an outer one; in the IR both kinds are
//! order-1 tensors.

use crate::error::{Error, ErrorKind, Origin, Result};
use crate::ir::{Dim, Func, Graph, Id};
use crate::syntax::ast::{BinOp, Decl, DeclKind, DimExpr, Expr, ExprKind, Span};
use rustc_hash::FxHashMap;

/// The kind of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A number.
    Scalar,
    /// A column vector.
    Col,
    /// A row vector.
    Row,
    /// A matrix.
    Mat,
}

/// A dimension variable of the unifier.
type TD = u32;

/// A type: kind and up to two dimension variables.
#[derive(Clone, Copy, Debug)]
struct Ty {
    kind: Kind,
    d: [TD; 2],
}

/// Union-find over dimension variables, each class optionally bound to a [`Dim`].
#[derive(Default)]
struct Unifier {
    parent: Vec<TD>,
    value: Vec<Option<Dim>>,
}

impl Unifier {
    fn fresh(&mut self) -> TD {
        self.parent.push(self.parent.len() as TD);
        self.value.push(None);
        self.parent.len() as TD - 1
    }
    fn known(&mut self, d: Dim) -> TD {
        let t = self.fresh();
        self.value[t as usize] = Some(d);
        t
    }
    fn find(&mut self, mut t: TD) -> TD {
        while self.parent[t as usize] != t {
            let gp = self.parent[self.parent[t as usize] as usize];
            self.parent[t as usize] = gp;
            t = gp;
        }
        t
    }
    fn get(&mut self, t: TD) -> Option<Dim> {
        let r = self.find(t);
        self.value[r as usize]
    }
    fn unify(&mut self, a: TD, b: TD) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return true;
        }
        match (self.value[ra as usize], self.value[rb as usize]) {
            // A symbolic size meeting a fixed one takes that value (`S: symmetric(n)`
            // times a vector of 2 entries: n = 2).
            (Some(Dim::Sym(_)), Some(Dim::Fixed(n))) | (Some(Dim::Fixed(n)), Some(Dim::Sym(_))) => {
                self.parent[rb as usize] = ra;
                self.value[ra as usize] = Some(Dim::Fixed(n));
                true
            }
            (Some(x), Some(y)) if x != y => false,
            (va, vb) => {
                self.parent[rb as usize] = ra;
                self.value[ra as usize] = va.or(vb);
                true
            }
        }
    }
}

/// Input to typing: the parsed expression and declarations.
pub struct Analyzed {
    /// The graph holding the expression.
    pub graph: Graph,
    /// The expression's node.
    pub root: Id,
    /// The expression's kind (row vectors are order-1 in the IR).
    pub kind: Kind,
    /// Names whose kind and shape were assumed (not declared), as declarations.
    pub assumed: Vec<String>,
    /// Where each variable first occurs in the expression.
    pub var_spans: FxHashMap<String, Span>,
}

struct VarDecl {
    kind: Kind,
    dims: [TD; 2],
    symmetric: bool,
    declared: bool,
}

struct Typer<'a> {
    u: Unifier,
    vars: FxHashMap<String, VarDecl>,
    var_order: Vec<String>,
    var_spans: FxHashMap<String, Span>,
    /// Dimension symbols by name (declared or used in declarations).
    dim_syms: FxHashMap<String, (Option<(u64, u64)>, Span)>,
    /// Types of the nodes in post-order.
    types: Vec<Ty>,
    decls: &'a [Decl],
}

/// The matrixcalculus.org convention for undeclared names.
fn conventional_kind(name: &str) -> Kind {
    match name.chars().next() {
        Some('a'..='g') => Kind::Scalar,
        Some('h'..='z') => Kind::Col,
        Some(c) if c.is_ascii_uppercase() => Kind::Mat,
        _ => Kind::Scalar,
    }
}

const ELEMENTWISE: [&str; 17] = [
    "sin", "cos", "tan", "asin", "acos", "atan", "exp", "log", "sqrt", "abs", "sign", "tanh", "sigmoid", "softplus",
    "relu", "ln", "step",
];
const FUNCTIONS: [&str; 15] = [
    "sum",
    "tr",
    "trace",
    "det",
    "logdet",
    "inv",
    "diag",
    "norm1",
    "norm2",
    "logsumexp",
    "softmax",
    "vector",
    "matrix",
    "eye",
    "norm",
];

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The nearest of `candidates` to `name`, if close enough to be a likely typo.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|&(d, c)| d <= 2.max(c.len() / 3) && d < c.len().max(name.len()))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

impl<'a> Typer<'a> {
    fn new(decls: &'a [Decl], graph: &mut Graph) -> Result<Typer<'a>> {
        let mut t = Typer {
            u: Unifier::default(),
            vars: FxHashMap::default(),
            var_order: Vec::new(),
            var_spans: FxHashMap::default(),
            dim_syms: FxHashMap::default(),
            types: Vec::new(),
            decls,
        };
        for d in decls {
            if let DeclKind::Dim(range) = &d.kind {
                t.dim_syms.insert(d.name.clone(), (*range, d.span));
                graph.dim_symbol(&d.name, *range, false);
            }
        }
        for d in decls {
            let mut dim = |t: &mut Typer, e: &DimExpr| -> TD {
                match e {
                    DimExpr::Num(n) => t.u.known(Dim::Fixed(*n)),
                    DimExpr::Sym(s) => {
                        t.dim_syms.entry(s.clone()).or_insert((None, d.span));
                        let sym = graph.dim_symbol(s, None, false);
                        t.u.known(sym)
                    }
                }
            };
            let (kind, dims, symmetric) = match &d.kind {
                DeclKind::Dim(_) => continue,
                DeclKind::Scalar => (Kind::Scalar, [0, 0], false),
                DeclKind::Vector(n) => (Kind::Col, [dim(&mut t, n), 0], false),
                DeclKind::Matrix(m, n) => (Kind::Mat, [dim(&mut t, m), dim(&mut t, n)], false),
                DeclKind::Symmetric(n) => {
                    let x = dim(&mut t, n);
                    (Kind::Mat, [x, x], true)
                }
            };
            if t.dim_syms.contains_key(&d.name) && !matches!(d.kind, DeclKind::Dim(_)) {
                return Err(Error::new(
                    ErrorKind::Name,
                    format!("`{}` is declared both as a dimension and as a variable", d.name),
                )
                .label(d.span, Origin::Decls, "declared here")
                .hint("use different names for dimensions and variables"));
            }
            t.vars.insert(
                d.name.clone(),
                VarDecl {
                    kind,
                    dims,
                    symmetric,
                    declared: true,
                },
            );
        }
        Ok(t)
    }

    fn show(&mut self, ty: Ty, g: &Graph) -> String {
        // Unknown sizes are left out rather than shown as "?".
        let dn = |t: &mut Typer, d: TD| t.u.get(d).map(|d| g.dim_name(d));
        match ty.kind {
            Kind::Scalar => "a scalar".to_string(),
            Kind::Col | Kind::Row => {
                let kind = if ty.kind == Kind::Col { "column" } else { "row" };
                match dn(self, ty.d[0]) {
                    Some(n) => format!("a {kind} vector of length {n}"),
                    None => format!("a {kind} vector"),
                }
            }
            Kind::Mat => match (dn(self, ty.d[0]), dn(self, ty.d[1])) {
                (Some(a), Some(b)) => format!("a {a}×{b} matrix"),
                (Some(a), None) => format!("a matrix with {a} rows"),
                (None, Some(b)) => format!("a matrix with {b} columns"),
                (None, None) => "a matrix".to_string(),
            },
        }
    }

    fn mismatch(&mut self, g: &Graph, span: Span, what: &str, parts: &[(&Expr, Ty)], hint: &str) -> Error {
        let mut e = Error::new(ErrorKind::Shape, format!("shape mismatch in {what}"));
        e.labels.push(crate::error::Label {
            span,
            origin: Origin::Expr,
            message: what.to_string(),
        });
        for (x, ty) in parts {
            let s = self.show(*ty, g);
            e = e.label(x.span, Origin::Expr, format!("this is {s}"));
        }
        e.labels.remove(0);
        // Undeclared names took their kind from the naming convention: say so,
        // and how to declare them otherwise.
        let mut notes = Vec::new();
        for (x, _) in parts {
            if let ExprKind::Ident(n) = &x.kind {
                if let Some(v) = self.vars.get(n) {
                    if !v.declared {
                        let kind = match v.kind {
                            Kind::Scalar => "a scalar",
                            Kind::Col | Kind::Row => "a vector",
                            Kind::Mat => "a matrix",
                        };
                        notes.push(format!(
                            "`{n}` is not declared, so it was taken to be {kind} (a–g scalars, h–z vectors, A–Z matrices); declare it otherwise, e.g. --decl '{n}: vector(n)'"
                        ));
                    }
                }
            }
        }
        if notes.is_empty() {
            e.hint(hint)
        } else {
            e.hint(format!("{hint}; {}", notes.join("; ")))
        }
    }

    fn unify_or(&mut self, a: TD, b: TD, err: impl FnOnce(&mut Self) -> Error) -> Result<()> {
        if self.u.unify(a, b) {
            Ok(())
        } else {
            Err(err(self))
        }
    }

    fn scalar(&self) -> Ty {
        Ty {
            kind: Kind::Scalar,
            d: [0, 0],
        }
    }

    /// Infer types of all nodes (post-order into `self.types`).
    fn infer(&mut self, e: &Expr, g: &mut Graph) -> Result<Ty> {
        // Left-associative chains are walked iteratively (no deep recursion).
        if let ExprKind::Binary(op, _, _) = &e.kind {
            if is_chain_op(*op) {
                let (first, rest) = left_chain(e);
                let mut acc = self.infer(first, g)?;
                let mut left = first;
                for (node, op, right) in rest {
                    let rt = self.infer(right, g)?;
                    acc = self.binary(node, op, left, acc, right, rt, g)?;
                    self.types.push(acc);
                    left = node;
                }
                return Ok(acc);
            }
        }
        let ty = match &e.kind {
            ExprKind::Missing => return Err(Error::at(ErrorKind::Syntax, e.span, "missing expression")),
            ExprKind::Num(_) => self.scalar(),
            ExprKind::Ident(name) => self.ident(name, e.span, g)?,
            ExprKind::Neg(x) => self.infer(x, g)?,
            ExprKind::Transpose(x) => {
                let t = self.infer(x, g)?;
                match t.kind {
                    Kind::Scalar => t,
                    Kind::Col => Ty { kind: Kind::Row, ..t },
                    Kind::Row => Ty { kind: Kind::Col, ..t },
                    Kind::Mat => Ty {
                        kind: Kind::Mat,
                        d: [t.d[1], t.d[0]],
                    },
                }
            }
            ExprKind::Binary(op, a, b) => {
                let ta = self.infer(a, g)?;
                let tb = self.infer(b, g)?;
                self.binary(e, *op, a, ta, b, tb, g)?
            }
            ExprKind::Call { name, name_span, args } => self.call(e, name, *name_span, args, g)?,
            ExprKind::Matrix(rows) => {
                for x in rows.iter().flatten() {
                    if literal_number(x).is_none() {
                        return Err(
                            Error::at(ErrorKind::Syntax, x.span, "matrix literal entries must be numbers")
                                .hint("write symbolic entries as an expression, e.g. a*[1 0; 0 1]"),
                        );
                    }
                }
                let (r, c) = (rows.len() as u64, rows[0].len() as u64);
                match (r, c) {
                    (1, 1) => self.scalar(),
                    (1, _) => Ty {
                        kind: Kind::Row,
                        d: [self.u.known(Dim::Fixed(c)), 0],
                    },
                    (_, 1) => Ty {
                        kind: Kind::Col,
                        d: [self.u.known(Dim::Fixed(r)), 0],
                    },
                    _ => Ty {
                        kind: Kind::Mat,
                        d: [self.u.known(Dim::Fixed(r)), self.u.known(Dim::Fixed(c))],
                    },
                }
            }
        };
        self.types.push(ty);
        Ok(ty)
    }

    fn ident(&mut self, name: &str, span: Span, g: &Graph) -> Result<Ty> {
        if self.dim_syms.contains_key(name) && !self.vars.contains_key(name) {
            return Err(
                Error::at(ErrorKind::Name, span, format!("`{name}` is a dimension, not a value"))
                    .hint("dimensions can only appear in declarations and in eye(n)"),
            );
        }
        if FUNCTIONS.contains(&name) || ELEMENTWISE.contains(&name) {
            return Err(Error::at(ErrorKind::Syntax, span, format!("`{name}` is a function"))
                .hint(format!("call it with parentheses: {name}(...)")));
        }
        self.var_spans.entry(name.to_string()).or_insert(span);
        if !self.vars.contains_key(name) {
            let kind = conventional_kind(name);
            let dims = match kind {
                Kind::Scalar => [0, 0],
                Kind::Col | Kind::Row => [self.u.fresh(), 0],
                Kind::Mat => [self.u.fresh(), self.u.fresh()],
            };
            self.vars.insert(
                name.to_string(),
                VarDecl {
                    kind,
                    dims,
                    symmetric: false,
                    declared: false,
                },
            );
        }
        if !self.var_order.iter().any(|v| v == name) {
            self.var_order.push(name.to_string());
        }
        let _ = g;
        let v = &self.vars[name];
        Ok(Ty {
            kind: v.kind,
            d: v.dims,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn binary(&mut self, e: &Expr, op: BinOp, a: &Expr, ta: Ty, b: &Expr, tb: Ty, g: &Graph) -> Result<Ty> {
        use Kind::*;
        let what = format!("`{}`", op.symbol());
        let parts = [(a, ta), (b, tb)];
        let same = |t: &mut Self, hint: &str| -> Result<Ty> {
            if ta.kind != tb.kind {
                return Err(t.mismatch(g, e.span, &what, &parts, hint));
            }
            let n = match ta.kind {
                Scalar => 0,
                Col | Row => 1,
                Mat => 2,
            };
            for k in 0..n {
                t.unify_or(ta.d[k], tb.d[k], |t| t.mismatch(g, e.span, &what, &parts, hint))?;
            }
            Ok(ta)
        };
        match op {
            BinOp::Add | BinOp::Sub | BinOp::EMul | BinOp::EDiv | BinOp::EPow => {
                if ta.kind == Scalar {
                    return Ok(tb);
                }
                if tb.kind == Scalar {
                    return Ok(ta);
                }
                let hint = if (ta.kind, tb.kind) == (Col, Row) || (ta.kind, tb.kind) == (Row, Col) {
                    "transpose one side so both are columns (or both rows)"
                } else {
                    "both sides need the same shape"
                };
                same(self, hint)
            }
            BinOp::Mul => {
                let inner = |t: &mut Self, x: TD, y: TD| {
                    t.unify_or(x, y, |t| {
                        t.mismatch(
                            g,
                            e.span,
                            "a product",
                            &parts,
                            "the inner dimensions of a product must agree",
                        )
                    })
                };
                match (ta.kind, tb.kind) {
                    (Scalar, _) => Ok(tb),
                    (_, Scalar) => Ok(ta),
                    (Col, Row) => Ok(Ty { kind: Mat, d: [ta.d[0], tb.d[0]] }),
                    (Row, Col) => {
                        inner(self, ta.d[0], tb.d[0])?;
                        Ok(self.scalar())
                    }
                    (Mat, Col) => {
                        inner(self, ta.d[1], tb.d[0])?;
                        Ok(Ty { kind: Col, d: [ta.d[0], 0] })
                    }
                    (Row, Mat) => {
                        inner(self, ta.d[0], tb.d[0])?;
                        Ok(Ty { kind: Row, d: [tb.d[1], 0] })
                    }
                    (Mat, Mat) => {
                        inner(self, ta.d[1], tb.d[0])?;
                        Ok(Ty { kind: Mat, d: [ta.d[0], tb.d[1]] })
                    }
                    (Col, Col) => Err(self.mismatch(
                        g,
                        e.span,
                        "a product",
                        &parts,
                        "a column vector times a column vector is undefined: did you mean x'*y (inner product), x*y' (outer product) or x.*y (elementwise)?",
                    )),
                    (Row, Row) => Err(self.mismatch(g, e.span, "a product", &parts, "did you mean x*y' or x.*y?")),
                    (Col, Mat) => Err(self.mismatch(
                        g,
                        e.span,
                        "a product",
                        &parts,
                        "a column vector times a matrix is undefined: did you mean x'*A?",
                    )),
                    (Mat, Row) => Err(self.mismatch(
                        g,
                        e.span,
                        "a product",
                        &parts,
                        "a matrix times a row vector is undefined: did you mean A*x?",
                    )),
                }
            }
            BinOp::Div => {
                if tb.kind != Scalar {
                    return Err(self.mismatch(
                        g,
                        e.span,
                        "a division",
                        &parts,
                        "`/` divides by a scalar; use ./ for elementwise division or inv(B) for matrices",
                    ));
                }
                Ok(ta)
            }
            BinOp::Pow => match (ta.kind, tb.kind) {
                (Scalar, Scalar) => Ok(ta),
                (Mat, Scalar) => {
                    self.unify_or(ta.d[0], ta.d[1], |t| {
                        t.mismatch(
                            g,
                            e.span,
                            "a matrix power",
                            &parts,
                            "only square matrices have powers; use .^ for elementwise powers",
                        )
                    })?;
                    if literal_number(b).is_none_or(|p| p.fract() != 0.0) {
                        return Err(
                            Error::at(ErrorKind::Shape, b.span, "a matrix power needs an integer exponent")
                                .hint("write A^2, A^-1, …; use .^ for elementwise powers"),
                        );
                    }
                    Ok(ta)
                }
                _ => Err(self.mismatch(
                    g,
                    e.span,
                    "`^`",
                    &parts,
                    "use .^ for elementwise powers of vectors and matrices",
                )),
            },
        }
    }

    fn call(&mut self, e: &Expr, name: &str, name_span: Span, args: &[Expr], g: &mut Graph) -> Result<Ty> {
        let arity = |n: usize| -> Result<()> {
            if args.len() != n {
                return Err(Error::at(
                    ErrorKind::Syntax,
                    e.span,
                    format!(
                        "`{name}` takes {n} argument{}, got {}",
                        if n == 1 { "" } else { "s" },
                        args.len()
                    ),
                )
                .hint("see docs/LANGUAGE.md for each function's arguments"));
            }
            Ok(())
        };

        if name == "eye" {
            arity(1)?;
            let d = self.dim_arg(&args[0], g, name)?;
            return Ok(Ty {
                kind: Kind::Mat,
                d: [d, d],
            });
        }
        if name == "vector" || name == "matrix" {
            // vector(c) / matrix(c) take their size from context; vector(c, n) and
            // matrix(c, m, n) state it.
            let full = if name == "vector" { 2 } else { 3 };
            if args.len() != 1 && args.len() != full {
                return Err(Error::at(
                    ErrorKind::Syntax,
                    e.span,
                    format!("`{name}` takes 1 or {full} arguments"),
                )
                .hint(if name == "vector" {
                    "vector(c) or vector(c, n)"
                } else {
                    "matrix(c) or matrix(c, m, n)"
                }));
            }
            let t = self.infer(&args[0], g)?;
            if t.kind != Kind::Scalar {
                let parts = [(&args[0], t)];
                return Err(self.mismatch(
                    g,
                    e.span,
                    &format!("`{name}`"),
                    &parts,
                    &format!("{name}(c) fills with a scalar c"),
                ));
            }
            let mut d = [0, 0];
            for k in 0..full - 1 {
                d[k] = if args.len() == full {
                    self.dim_arg(&args[k + 1], g, name)?
                } else {
                    self.u.fresh()
                };
            }
            let kind = if name == "vector" { Kind::Col } else { Kind::Mat };
            return Ok(Ty { kind, d });
        }
        if !ELEMENTWISE.contains(&name) && !FUNCTIONS.contains(&name) {
            let mut e = Error::at(ErrorKind::Name, name_span, format!("unknown function `{name}`"));
            let all = ELEMENTWISE.iter().chain(FUNCTIONS.iter()).copied();
            e = match nearest(name, all) {
                Some(s) => e.hint(format!("did you mean `{s}`?")),
                None => e.hint("see docs/LANGUAGE.md for the functions matcalc knows"),
            };
            return Err(e);
        }
        arity(1)?;
        let t = self.infer(&args[0], g)?;
        let parts = [(&args[0], t)];
        let square = |s: &mut Self, t: Ty| -> Result<()> {
            if t.kind != Kind::Mat || !s.u.unify(t.d[0], t.d[1]) {
                return Err(s.mismatch(
                    g,
                    e.span,
                    &format!("`{name}`"),
                    &parts,
                    &format!("{name} needs a square matrix"),
                ));
            }
            Ok(())
        };
        Ok(match name {
            _ if ELEMENTWISE.contains(&name) => t,
            "sum" | "norm1" | "norm2" | "norm" | "logsumexp" => self.scalar(),
            "tr" | "trace" | "det" | "logdet" => {
                square(self, t)?;
                self.scalar()
            }
            "inv" => {
                square(self, t)?;
                t
            }
            "diag" => match t.kind {
                Kind::Col | Kind::Row => Ty {
                    kind: Kind::Mat,
                    d: [t.d[0], t.d[0]],
                },
                Kind::Mat => {
                    square(self, t)?;
                    Ty {
                        kind: Kind::Col,
                        d: [t.d[0], 0],
                    }
                }
                Kind::Scalar => t,
            },
            // Of a matrix: normalized over all entries.
            "softmax" => t,
            _ => unreachable!("function table and match disagree on `{name}`"),
        })
    }

    /// A size argument: a whole number or a dimension name.
    fn dim_arg(&mut self, a: &Expr, g: &mut Graph, name: &str) -> Result<TD> {
        match &a.kind {
            ExprKind::Num(n) if *n >= 0.0 && n.fract() == 0.0 => Ok(self.u.known(Dim::Fixed(*n as u64))),
            ExprKind::Ident(s) if !self.vars.contains_key(s) => {
                self.dim_syms.entry(s.clone()).or_insert((None, a.span));
                let sym = g.dim_symbol(s, None, false);
                Ok(self.u.known(sym))
            }
            _ => Err(Error::at(
                ErrorKind::Syntax,
                a.span,
                "expected a size: a whole number or a dimension name",
            )
            .hint(format!("e.g. {name}(3) or {name}(n)"))),
        }
    }

    /// Bind every unresolved dimension to a fresh symbol.
    fn resolve_free(&mut self, g: &mut Graph, reserved: &[String]) {
        let names = ["n", "m", "p", "q", "k", "l", "d", "s", "t", "u"];
        let mut counter = 0usize;
        for t in 0..self.u.parent.len() as TD {
            if self.u.get(t).is_some() {
                continue;
            }
            let name = loop {
                let cand = if counter < names.len() {
                    names[counter].to_string()
                } else {
                    format!("n{}", counter - names.len() + 1)
                };
                counter += 1;
                if !reserved.contains(&cand) && !g.dims.iter().any(|d| d.name == cand) {
                    break cand;
                }
            };
            let d = g.dim_symbol(&name, None, true);
            let r = self.u.find(t);
            self.u.value[r as usize] = Some(d);
        }
    }

    fn dim(&mut self, t: TD) -> Dim {
        self.u.get(t).expect("dimensions are resolved before lowering")
    }

    fn shape(&mut self, ty: Ty) -> Vec<Dim> {
        match ty.kind {
            Kind::Scalar => vec![],
            Kind::Col | Kind::Row => vec![self.dim(ty.d[0])],
            Kind::Mat => vec![self.dim(ty.d[0]), self.dim(ty.d[1])],
        }
    }
}

fn is_chain_op(op: BinOp) -> bool {
    !matches!(op, BinOp::Pow | BinOp::EPow)
}

/// Split a left-deep chain `((x op1 y1) op2 y2) …` into `x` and `[(node, op, y)]`.
fn left_chain(e: &Expr) -> (&Expr, Vec<(&Expr, BinOp, &Expr)>) {
    let mut rest = Vec::new();
    let mut cur = e;
    while let ExprKind::Binary(op, a, b) = &cur.kind {
        if !is_chain_op(*op) {
            break;
        }
        rest.push((cur, *op, &**b));
        cur = a;
    }
    rest.reverse();
    (cur, rest)
}

/// The value of a numeric literal (optionally negated).
pub fn literal_number(e: &Expr) -> Option<f64> {
    match &e.kind {
        ExprKind::Num(v) => Some(*v),
        ExprKind::Neg(x) => literal_number(x).map(|v| -v),
        _ => None,
    }
}

struct Lower<'t, 'a> {
    t: &'t mut Typer<'a>,
    next: usize,
}

impl Lower<'_, '_> {
    fn ty(&mut self) -> Ty {
        let ty = self.t.types[self.next];
        self.next += 1;
        ty
    }

    fn lower(&mut self, e: &Expr, g: &mut Graph) -> Result<Id> {
        if let ExprKind::Binary(op, _, _) = &e.kind {
            if is_chain_op(*op) {
                let (first, rest) = left_chain(e);
                let mut acc = self.lower(first, g)?;
                let mut acc_ty = self.t.types[self.next - 1];
                for (node, op, right) in rest {
                    let r = self.lower(right, g)?;
                    let rt = self.t.types[self.next - 1];
                    let ty = self.ty();
                    acc = self.binary(node, op, acc, acc_ty, r, rt, ty, g)?;
                    acc_ty = ty;
                }
                return Ok(acc);
            }
        }
        let id = match &e.kind {
            ExprKind::Missing => unreachable!("typing rejects missing nodes"),
            ExprKind::Num(v) => g.constant(*v),
            ExprKind::Ident(name) => {
                let ty = self.t.types[self.next];
                let shape = self.t.shape(ty);
                let sym = self.t.vars[name].symmetric;
                g.var(name, shape, sym)
            }
            ExprKind::Neg(x) => {
                let x = self.lower(x, g)?;
                g.neg(x)
            }
            ExprKind::Transpose(x) => {
                let id = self.lower(x, g)?;
                if g.order(id) == 2 {
                    g.transpose(id)
                } else {
                    id
                }
            }
            ExprKind::Binary(op, a, b) => {
                let x = self.lower(a, g)?;
                let tx = self.t.types[self.next - 1];
                let y = self.lower(b, g)?;
                let ty_b = self.t.types[self.next - 1];
                let ty = self.t.types[self.next];
                self.binary(e, *op, x, tx, y, ty_b, ty, g)?
            }
            ExprKind::Call { name, args, .. } => self.call(e, name, args, g)?,
            ExprKind::Matrix(rows) => {
                let data: Vec<f64> = rows.iter().flatten().map(|x| literal_number(x).unwrap()).collect();
                let ty = self.t.types[self.next];
                let shape = self.t.shape(ty);
                if shape.is_empty() {
                    g.constant(data[0])
                } else {
                    g.literal(&data, shape)
                }
            }
        };
        self.ty();
        Ok(id)
    }

    #[allow(clippy::too_many_arguments)]
    fn binary(&mut self, e: &Expr, op: BinOp, a: Id, ta: Ty, b: Id, tb: Ty, ty: Ty, g: &mut Graph) -> Result<Id> {
        let _ = e;
        let broadcast = |g: &mut Graph, a: Id, b: Id| -> (Id, Id) {
            match (g.order(a), g.order(b)) {
                (0, n) if n > 0 => {
                    let sh = g.shape(b).to_vec();
                    (g.broadcast(a, sh), b)
                }
                (n, 0) if n > 0 => {
                    let sh = g.shape(a).to_vec();
                    (a, g.broadcast(b, sh))
                }
                _ => (a, b),
            }
        };
        Ok(match op {
            BinOp::Add => {
                let (a, b) = broadcast(g, a, b);
                g.add(&[a, b])
            }
            BinOp::Sub => {
                let (a, b) = broadcast(g, a, b);
                g.sub(a, b)
            }
            BinOp::Mul => match (ta.kind, tb.kind) {
                (Kind::Col, Kind::Row) => g.outer(a, b),
                _ => g.matmul(a, b),
            },
            BinOp::Div | BinOp::EDiv => {
                let r = g.pow(b, -1.0);
                g.times(a, r)
            }
            BinOp::EMul => g.times(a, b),
            BinOp::Pow if ta.kind == Kind::Mat => {
                let k = g.const_value(b).expect("typing checked the exponent") as i64;
                matrix_power(g, a, k)
            }
            BinOp::Pow | BinOp::EPow => match g.const_value(b) {
                Some(p) => {
                    let _ = ty;
                    g.pow(a, p)
                }
                None => {
                    // a^b = exp(b·log a)
                    let (a, b) = broadcast(g, a, b);
                    let la = g.map(Func::Log, a);
                    let p = g.times(b, la);
                    g.map(Func::Exp, p)
                }
            },
        })
    }

    fn call(&mut self, e: &Expr, name: &str, args: &[Expr], g: &mut Graph) -> Result<Id> {
        let ty = |s: &mut Self| s.t.types[s.next];
        if name == "eye" {
            let t = ty(self);
            let d = self.t.dim(t.d[0]);
            return Ok(g.delta(d));
        }
        let x = self.lower(&args[0], g)?;
        let tx = self.t.types[self.next - 1];
        let _ = e;
        if let Some(f) = Func::from_name(name) {
            return Ok(g.map(f, x));
        }
        Ok(match name {
            "ln" => g.map(Func::Log, x),
            "sqrt" => g.pow(x, 0.5),
            "sum" => g.sum_all(x),
            "tr" | "trace" => g.trace(x),
            "det" => g.det(x),
            "logdet" => g.logdet(x),
            "inv" => g.inv(x),
            "diag" => match tx.kind {
                Kind::Col | Kind::Row => g.diag_matrix(x),
                Kind::Mat => g.diag_vector(x),
                Kind::Scalar => x,
            },
            "norm1" => {
                let a = g.map(Func::Abs, x);
                g.sum_all(a)
            }
            "norm2" | "norm" => {
                let l = g.natural(x);
                let sq = g.mul(x, x, l, l, crate::ir::Labels::EMPTY);
                g.pow(sq, 0.5)
            }
            "logsumexp" => g.logsumexp(x),
            "softmax" => {
                if g.order(x) == 0 {
                    g.constant(1.0)
                } else {
                    g.softmax(x)
                }
            }
            "vector" | "matrix" => {
                let t = ty(self);
                let sh = self.t.shape(t);
                g.broadcast(x, sh)
            }
            _ => unreachable!("typing accepted `{name}`"),
        })
    }
}

fn matrix_power(g: &mut Graph, a: Id, k: i64) -> Id {
    if k == 0 {
        let n = g.shape(a)[0];
        return g.delta(n);
    }
    let base = if k < 0 { g.inv(a) } else { a };
    let mut k = k.unsigned_abs();
    let mut result: Option<Id> = None;
    let mut sq = base;
    while k > 0 {
        if k & 1 == 1 {
            result = Some(match result {
                None => sq,
                Some(r) => g.matmul(r, sq),
            });
        }
        k >>= 1;
        if k > 0 {
            sq = g.matmul(sq, sq);
        }
    }
    result.expect("k > 0")
}

/// Type the expression against the declarations and lower it to the IR.
pub fn analyze(expr: &Expr, decls: &[Decl]) -> Result<Analyzed> {
    let mut g = Graph::new();
    let mut t = Typer::new(decls, &mut g)?;
    let ty = t.infer(expr, &mut g)?;
    let mut reserved: Vec<String> = t.vars.keys().cloned().collect();
    reserved.extend(t.dim_syms.keys().cloned());
    t.resolve_free(&mut g, &reserved);
    // Declare variables in order of appearance, so their indices are stable.
    let order = t.var_order.clone();
    let mut assumed = Vec::new();
    for name in &order {
        let v = &t.vars[name];
        let (kind, dims, sym, declared) = (v.kind, v.dims, v.symmetric, v.declared);
        let shape = t.shape(Ty { kind, d: dims });
        g.var(name, shape.clone(), sym);
        if !declared {
            assumed.push(match kind {
                Kind::Scalar => format!("{name}: scalar"),
                Kind::Col | Kind::Row => format!("{name}: vector({})", g.dim_name(shape[0])),
                Kind::Mat => format!("{name}: matrix({}, {})", g.dim_name(shape[0]), g.dim_name(shape[1])),
            });
        }
    }
    // Declared variables that do not occur still get a slot (so `--wrt` can name them).
    for d in t.decls {
        if matches!(d.kind, DeclKind::Dim(_)) || order.contains(&d.name) {
            continue;
        }
        let v = &t.vars[&d.name];
        let (kind, dims, sym) = (v.kind, v.dims, v.symmetric);
        let shape = t.shape(Ty { kind, d: dims });
        g.var(&d.name, shape, sym);
    }
    let var_spans = std::mem::take(&mut t.var_spans);
    let mut l = Lower { t: &mut t, next: 0 };
    let root = l.lower(expr, &mut g)?;
    Ok(Analyzed {
        graph: g,
        root,
        kind: ty.kind,
        assumed,
        var_spans,
    })
}
