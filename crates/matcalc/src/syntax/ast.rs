//! The surface syntax tree. Both front ends (our matrixcalculus.org-compatible
//! syntax and, later, LaTeX) produce this tree; typing lowers it to the IR.

use std::fmt;

/// A half-open byte range `start..end` into the source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// A span from byte offsets.
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
    /// As a `Range<usize>`.
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Binary operators of the input language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`: matrix product, or scaling when one side is a scalar.
    Mul,
    /// `/`: division by a scalar.
    Div,
    /// `^`: scalar power, or matrix power of a square matrix with an integer exponent.
    Pow,
    /// `.*`: elementwise (Hadamard) product.
    EMul,
    /// `./`: elementwise division.
    EDiv,
    /// `.^`: elementwise power.
    EPow,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
            BinOp::EMul => ".*",
            BinOp::EDiv => "./",
            BinOp::EPow => ".^",
        }
    }
}

impl fmt::Display for BinOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// An expression node with its source span.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What the node is.
    pub kind: ExprKind,
    /// Where it was written.
    pub span: Span,
}

/// The kinds of expression nodes.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A numeric literal.
    Num(f64),
    /// A name: a variable (or, inside `eye(n)` and friends, a dimension).
    Ident(String),
    /// Unary minus `-e` (unary plus is dropped by the parser).
    Neg(Box<Expr>),
    /// A binary operation.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// Postfix transpose `e'`.
    Transpose(Box<Expr>),
    /// A function call `name(args)`; `name_span` covers the name only.
    Call {
        /// Function name as written.
        name: String,
        /// Span of the name.
        name_span: Span,
        /// Arguments.
        args: Vec<Expr>,
    },
    /// A matrix literal `[1 2; 3 4]`: rows of entries (all rows the same length).
    Matrix(Vec<Vec<Expr>>),
    /// Placeholder produced during error recovery.
    Missing,
}

impl Expr {
    /// Build a node.
    pub fn new(kind: ExprKind, span: Span) -> Expr {
        Expr { kind, span }
    }

    /// Visit the direct children, in source order. The one place that knows the
    /// shape of every node kind.
    pub fn walk_children<'a>(&'a self, mut f: impl FnMut(&'a Expr)) {
        match &self.kind {
            ExprKind::Num(_) | ExprKind::Ident(_) | ExprKind::Missing => {}
            ExprKind::Neg(e) | ExprKind::Transpose(e) => f(e),
            ExprKind::Binary(_, a, b) => {
                f(a);
                f(b)
            }
            ExprKind::Call { args, .. } => args.iter().for_each(f),
            ExprKind::Matrix(rows) => rows.iter().flatten().for_each(f),
        }
    }
}

/// The kind of a declared name.
#[derive(Clone, Debug, PartialEq)]
pub enum DeclKind {
    /// `scalar`
    Scalar,
    /// `vector(n)`
    Vector(DimExpr),
    /// `matrix(m, n)`
    Matrix(DimExpr, DimExpr),
    /// `symmetric(n)`: an n×n symmetric matrix.
    Symmetric(DimExpr),
    /// `dim` or `dim in lo..hi`: a dimension symbol with an optional inclusive range.
    Dim(Option<(u64, u64)>),
}

/// A dimension as written in a declaration: a number or a symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DimExpr {
    /// A fixed size.
    Num(u64),
    /// A named dimension such as `n`.
    Sym(String),
}

/// One declaration `name: kind`.
#[derive(Clone, Debug, PartialEq)]
pub struct Decl {
    /// The declared name.
    pub name: String,
    /// Its kind.
    pub kind: DeclKind,
    /// Span of the whole declaration in its source text.
    pub span: Span,
}

/// Dropping is iterative: a left-deep chain of 200 000 terms must not overflow
/// the stack when freed.
impl Drop for Expr {
    fn drop(&mut self) {
        fn take(kind: &mut ExprKind, stack: &mut Vec<Expr>) {
            match std::mem::replace(kind, ExprKind::Missing) {
                ExprKind::Neg(e) | ExprKind::Transpose(e) => stack.push(*e),
                ExprKind::Binary(_, a, b) => {
                    stack.push(*a);
                    stack.push(*b);
                }
                ExprKind::Call { args, .. } => stack.extend(args),
                ExprKind::Matrix(rows) => stack.extend(rows.into_iter().flatten()),
                ExprKind::Num(_) | ExprKind::Ident(_) | ExprKind::Missing => {}
            }
        }
        let mut stack = Vec::new();
        take(&mut self.kind, &mut stack);
        while let Some(mut e) = stack.pop() {
            take(&mut e.kind, &mut stack);
        }
    }
}
