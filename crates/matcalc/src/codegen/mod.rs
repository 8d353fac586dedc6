//! Code generation: a problem's function and derivatives as a standalone
//! module for NumPy, JAX, PyTorch or Rust (over faer).
//!
//! The generated module has one entry point, `f_and_grad(<variables>)`, whose
//! arguments are the expression's variables in order of first appearance, and
//! which returns `(value, derivatives)`: the function's value and the
//! derivatives asked for, keyed by variable name (a mixed second derivative
//! `∂²f/∂x∂y` by `"x,y"`, as `matcalc eval --json` writes them). It checks the
//! arguments' shapes, binding symbolic dimensions from them; shared
//! subexpressions and expensive operations become named temporaries in
//! topological order (the cascade), elementwise chains stay single
//! expressions. A `check_grad` helper compares every derivative with central
//! finite differences in random directions.
//!
//! Everything is generated from the IR ([`Graph::topo_order`] of the roots),
//! following the reference interpreter ([`crate::eval::interp`]) exactly:
//! stable softmax and log-sum-exp (shifted by the maximum), stable sigmoid and
//! softplus, `log|det|` through a log-determinant routine.
//!
//! * `python`: NumPy, JAX (`jax.numpy`, 64-bit floats switched on) and PyTorch.
//! * `rust`: a Rust module over a small row-major tensor type, with products,
//!   inverses and determinants by faer 0.24; every node kind is supported.

mod python;
mod rust;

use crate::error::{Error, ErrorKind, Result};
use crate::ir::{Dim, Graph, Id, Labels, Node};
use crate::problem::{Derivative, Problem};
use rustc_hash::{FxHashMap, FxHashSet};
use std::fmt;

/// A code-generation target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// NumPy (`import numpy as np`).
    Numpy,
    /// JAX (`jax.numpy`, with `jax_enable_x64`).
    Jax,
    /// PyTorch (float64 tensors).
    Torch,
    /// Rust over faer 0.24.
    Rust,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 4] = [Target::Numpy, Target::Jax, Target::Torch, Target::Rust];

    /// The target's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Numpy => "numpy",
            Target::Jax => "jax",
            Target::Torch => "torch",
            Target::Rust => "rust",
        }
    }

    /// Look a target up by its name.
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.iter().copied().find(|t| t.name() == name)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Generate a standalone module computing the problem's function and the
/// derivatives `ds` (as returned by [`Problem::derive`] on the same problem).
pub fn generate(p: &Problem, ds: &[Derivative], target: Target) -> Result<String> {
    let spec = Spec::new(p, ds)?;
    Ok(match target {
        Target::Numpy => python::generate(&spec, python::Backend::Numpy),
        Target::Jax => python::generate(&spec, python::Backend::Jax),
        Target::Torch => python::generate(&spec, python::Backend::Torch),
        Target::Rust => rust::generate(&spec),
    })
}

/// The parameters of the generated `f_and_grad` (and `check_grad`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The variables, in order of first appearance in the expression: the
    /// first arguments.
    pub arguments: Vec<String>,
    /// Dimensions that no argument's shape determines (rare: a `vector(k)`
    /// whose size nothing else fixes), as further arguments, in this order.
    pub dimensions: Vec<String>,
}

/// The parameters of the code [`generate`] writes for the same problem and derivatives.
pub fn signature(p: &Problem, ds: &[Derivative]) -> Result<Signature> {
    let spec = Spec::new(p, ds)?;
    let g = &p.graph;
    Ok(Signature {
        arguments: spec.args.iter().map(|&v| g.vars[v].name.clone()).collect(),
        dimensions: spec
            .free_dims
            .iter()
            .map(|&d| g.dims[d as usize].name.clone())
            .collect(),
    })
}

/// The key of a derivative in the returned map: the variable, or the
/// variables comma-separated for a mixed derivative.
pub fn derivative_key(d: &Derivative) -> String {
    if d.wrt.iter().all(|w| *w == d.wrt[0]) {
        d.wrt[0].clone()
    } else {
        d.wrt.join(",")
    }
}

// ---------------------------------------------------------------------------
// What to generate: shared by every target
// ---------------------------------------------------------------------------

/// One output of the generated function.
pub(crate) struct Output {
    /// The node.
    pub id: Id,
    /// The key in the derivatives map (empty for the value).
    pub key: String,
    /// The variables differentiated by, in order (empty for the value).
    pub wrt: Vec<String>,
}

/// The problem reduced to what the generators need.
pub(crate) struct Spec<'g> {
    pub g: &'g Graph,
    /// The function's node.
    pub root: Id,
    /// The derivatives, in the order asked.
    pub derivs: Vec<Output>,
    /// Variable indices, in argument order (order of first appearance).
    pub args: Vec<usize>,
    /// Every node reachable from the roots, children first.
    pub order: Vec<Id>,
    /// Number of parents of each reachable node (a root counts one more).
    pub uses: FxHashMap<Id, usize>,
    /// The single parent of nodes used exactly once by another node.
    pub parent: FxHashMap<Id, Id>,
    /// Dimensions whose size no argument's shape determines: extra arguments.
    pub free_dims: Vec<u32>,
    /// The function in the input language (for the docstring).
    pub expr: String,
}

impl<'g> Spec<'g> {
    fn new(p: &'g Problem, ds: &[Derivative]) -> Result<Spec<'g>> {
        let g = &p.graph;
        let mut args: Vec<usize> = Vec::new();
        for name in &p.occurring {
            if let Some(i) = g.var_index(name) {
                if !args.contains(&i) {
                    args.push(i);
                }
            }
        }
        for i in 0..g.vars.len() {
            if !args.contains(&i) {
                args.push(i);
            }
        }
        let mut keys: FxHashSet<String> = FxHashSet::default();
        let mut derivs = Vec::new();
        for d in ds {
            let key = derivative_key(d);
            if !keys.insert(key.clone()) {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!("the derivative by `{key}` is asked for twice"),
                ));
            }
            derivs.push(Output {
                id: d.id,
                key,
                wrt: d.wrt.clone(),
            });
        }
        let mut roots = vec![p.root];
        roots.extend(derivs.iter().map(|d| d.id));
        let order = g.topo_order(&roots);
        let mut uses: FxHashMap<Id, usize> = FxHashMap::default();
        let mut parent: FxHashMap<Id, Id> = FxHashMap::default();
        for &id in &order {
            g.node(id).for_each_child(|c| {
                *uses.entry(c).or_default() += 1;
                parent.insert(c, id);
            });
        }
        for &r in &roots {
            *uses.entry(r).or_default() += 1;
        }
        parent.retain(|c, _| uses.get(c) == Some(&1) && !roots.contains(c));
        // Dimensions bound by some variable's shape; the rest become arguments.
        let mut bound = vec![false; g.dims.len()];
        for v in &g.vars {
            for d in &v.shape {
                if let Dim::Sym(s) = d {
                    bound[*s as usize] = true;
                }
            }
        }
        let mut used_dims = vec![false; g.dims.len()];
        for &id in &order {
            for d in g.shape(id) {
                if let Dim::Sym(s) = d {
                    used_dims[*s as usize] = true;
                }
            }
        }
        let free_dims = (0..g.dims.len() as u32)
            .filter(|&s| used_dims[s as usize] && !bound[s as usize])
            .collect();
        let mut expr = crate::render::nested_expr(g, p.root);
        if expr.chars().count() > 300 {
            expr = expr.chars().take(297).collect::<String>() + "...";
        }
        Ok(Spec {
            g,
            root: p.root,
            derivs,
            args,
            order,
            uses,
            parent,
            free_dims,
            expr,
        })
    }

    /// Whether a node is one of the outputs.
    pub fn is_root(&self, id: Id) -> bool {
        id == self.root || self.derivs.iter().any(|d| d.id == id)
    }

    /// Number of uses of a node (parents, plus one if it is an output).
    pub fn uses(&self, id: Id) -> usize {
        self.uses.get(&id).copied().unwrap_or(0)
    }

    /// The declarations of the variables and dimensions, in the input language.
    pub fn declarations(&self) -> Vec<String> {
        let g = self.g;
        let mut out = Vec::new();
        for &v in &self.args {
            let var = &g.vars[v];
            let dims: Vec<String> = var.shape.iter().map(|&d| g.dim_name(d)).collect();
            let kind = match (var.shape.len(), var.symmetric) {
                (0, _) => "scalar".to_string(),
                (1, _) => format!("vector({})", dims[0]),
                (_, true) => format!("symmetric({})", dims[0]),
                _ => format!("matrix({})", dims.join(", ")),
            };
            out.push(format!("{}: {kind}", var.name));
        }
        for d in &g.dims {
            if let Some((lo, hi)) = d.range {
                out.push(format!("{}: dim in {lo}..{hi}", d.name));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Products: which matrix operation a general product is
// ---------------------------------------------------------------------------

/// An operand of a matrix product: the node and whether it is transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Operand {
    pub id: Id,
    pub transposed: bool,
}

/// What a [`Node::Mul`] is, in matrix terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Product {
    /// A scalar times the other operand reindexed from `from` to the output:
    /// `scalar · reindex(other)`.
    Scaling { scalar: Id, other: Id, from: Labels },
    /// Equal labels everywhere: the Hadamard product.
    Hadamard,
    /// `tr(A)` (A·δ summed over both labels).
    Trace(Id),
    /// `diag(A)` as a vector.
    DiagOf(Id),
    /// `Diag(v)`, the diagonal matrix of a vector.
    DiagMatrix(Id),
    /// The outer product `u vᵀ` of two vectors.
    Outer(Id, Id),
    /// A matrix (or matrix–vector, or inner) product `L·R`; vectors are never
    /// transposed (a vector on the left is a row).
    MatMul(Operand, Operand),
    /// No label is summed: a broadcast elementwise product.
    Broadcast,
    /// Anything else.
    Einsum,
}

/// Classify a product `out[s3] = Σ a[s1]·b[s2]`.
pub(crate) fn classify(g: &Graph, a: Id, b: Id, s1: &[u8], s2: &[u8], s3: &[u8]) -> Product {
    if s1.is_empty() {
        return Product::Scaling {
            scalar: a,
            other: b,
            from: Labels::from_slice(s2),
        };
    }
    if s2.is_empty() {
        return Product::Scaling {
            scalar: b,
            other: a,
            from: Labels::from_slice(s1),
        };
    }
    if s1 == s3 && s2 == s3 {
        return Product::Hadamard;
    }
    // Kronecker deltas left by the simplifier: traces and diagonals.
    for (x, sx, d, sd) in [(a, s1, b, s2), (b, s2, a, s1)] {
        if !matches!(g.node(d), Node::Delta(_)) {
            continue;
        }
        let same_set = |u: &[u8], v: &[u8]| u.len() == v.len() && u.iter().all(|l| v.contains(l));
        if sx.len() == 2 && same_set(sx, sd) {
            if s3.is_empty() {
                return Product::Trace(x);
            }
            if s3.len() == 1 {
                return Product::DiagOf(x);
            }
        }
        if sx.len() == 1 && sd.contains(&sx[0]) && same_set(s3, sd) {
            return Product::DiagMatrix(x);
        }
    }
    let in3 = |l: &u8| s3.contains(l);
    let all_out = s1.iter().all(in3) && s2.iter().all(in3);
    if all_out {
        if s1.len() == 1 && s2.len() == 1 && s3.len() == 2 {
            return if s3[0] == s1[0] {
                Product::Outer(a, b)
            } else {
                Product::Outer(b, a)
            };
        }
        return Product::Broadcast;
    }
    // A plain matrix product: one contracted label, at most one free label per
    // operand, no batch labels, nothing summed on one side only.
    let k: Vec<u8> = s1.iter().filter(|l| s2.contains(l) && !in3(l)).copied().collect();
    if k.len() == 1 && s1.len() <= 2 && s2.len() <= 2 {
        let k = k[0];
        let f1: Vec<u8> = s1.iter().filter(|&&l| l != k).copied().collect();
        let f2: Vec<u8> = s2.iter().filter(|&&l| l != k).copied().collect();
        let free_ok = f1.iter().all(|l| in3(l) && !s2.contains(l)) && f2.iter().all(|l| in3(l) && !s1.contains(l));
        if free_ok && s3.len() == f1.len() + f2.len() {
            // Orientation of each operand as (free, k) on the left, (k, free) on the right.
            let left = |id: Id, s: &[u8]| Operand {
                id,
                transposed: s.len() == 2 && s[0] == k,
            };
            let right = |id: Id, s: &[u8]| Operand {
                id,
                transposed: s.len() == 2 && s[1] == k,
            };
            let f1_first = f1.is_empty() || s3[0] == f1[0];
            let f2_last = f2.is_empty() || s3[s3.len() - 1] == f2[0];
            if f1_first && f2_last {
                return Product::MatMul(left(a, s1), right(b, s2));
            }
            // out = (A B)ᵀ = Bᵀ Aᵀ.
            return Product::MatMul(left(b, s2), right(a, s1));
        }
    }
    Product::Einsum
}

/// Letters for index labels in einsum strings: `i j k … z a … h A … Z`.
pub(crate) fn label_char(l: u8) -> char {
    const LETTERS: &[u8] = b"ijklmnopqrstuvwxyzabcdefghABCDEFGHIJKLMNOPQRSTUVWXYZ";
    LETTERS.get(l as usize).map_or('?', |&c| c as char)
}

/// Labels as a string of letters.
pub(crate) fn label_str(ls: &[u8]) -> String {
    ls.iter().map(|&l| label_char(l)).collect()
}

/// A float as a literal that reads back exactly (`2.0`, `0.5`, `1e-7`);
/// `None` for infinities and NaN.
pub(crate) fn float_literal(v: f64) -> Option<String> {
    if !v.is_finite() {
        return None;
    }
    let s = format!("{v:?}");
    Some(s)
}

/// A float as a compact exponent: integers without a fraction (`2`, `-1`).
pub(crate) fn exponent_literal(p: f64) -> String {
    if p.fract() == 0.0 && p.abs() < 1e15 {
        format!("{}", p as i64)
    } else {
        format!("{p:?}")
    }
}

/// Precedence levels of generated expressions (higher binds tighter).
pub(crate) mod prec {
    /// `a + b`, `a - b`.
    pub const ADD: u8 = 10;
    /// `a @ b` (Python): as tight as `*` there, but kept apart so that mixed
    /// chains get parentheses (`(X.T * v) @ X`, `(A @ b) * c`).
    pub const MATMUL: u8 = 19;
    /// `a * b`, `a / b`.
    pub const MUL: u8 = 20;
    /// `-a`.
    pub const UNARY: u8 = 30;
    /// `a ** b` (Python).
    pub const POW: u8 = 40;
    /// Names, calls, literals, subscripts, attributes.
    pub const ATOM: u8 = 50;
}

/// A generated expression with its precedence.
#[derive(Clone, Debug)]
pub(crate) struct Expr {
    pub text: String,
    pub prec: u8,
}

impl Expr {
    pub fn new(text: impl Into<String>, prec: u8) -> Expr {
        Expr {
            text: text.into(),
            prec,
        }
    }

    pub fn atom(text: impl Into<String>) -> Expr {
        Expr::new(text, prec::ATOM)
    }

    /// The text, parenthesized unless it binds at least as tightly as `min`.
    pub fn at(&self, min: u8) -> String {
        if self.prec >= min {
            self.text.clone()
        } else {
            format!("({})", self.text)
        }
    }
}

/// Allocates identifiers that avoid reserved words and each other.
pub(crate) struct Names {
    taken: FxHashSet<String>,
}

impl Names {
    pub fn new(reserved: &[&str]) -> Names {
        Names {
            taken: reserved.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `base` if free, else `base_`, `base__`, …; marks it taken.
    pub fn claim(&mut self, base: &str) -> String {
        let mut n = base.to_string();
        while self.taken.contains(&n) {
            n.push('_');
        }
        self.taken.insert(n.clone());
        n
    }

    /// The first free `t1`, `t2`, ….
    pub fn temp(&mut self, counter: &mut usize) -> String {
        loop {
            *counter += 1;
            let n = format!("t{counter}");
            if !self.taken.contains(&n) {
                self.taken.insert(n.clone());
                return n;
            }
        }
    }
}

/// The base name of an output: `value`, `df_dx`, `d2f_dx2`, `d2f_dxdy`.
pub(crate) fn output_base(o: &Output) -> String {
    let k = o.wrt.len();
    if k == 0 {
        return "value".to_string();
    }
    if k == 1 {
        return format!("df_d{}", o.wrt[0]);
    }
    if o.wrt.iter().all(|w| *w == o.wrt[0]) {
        return format!("d{k}f_d{}{k}", o.wrt[0]);
    }
    let den: String = o.wrt.iter().map(|w| format!("d{w}")).collect();
    format!("d{k}f_{den}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(expr: &str, decls: &str) -> (Problem, Product) {
        let p = Problem::new(expr, decls).unwrap();
        let g = &p.graph;
        let r = match g.node(p.root).clone() {
            Node::Mul(a, b, s1, s2, s3) => classify(g, a, b, &s1, &s2, &s3),
            n => panic!("not a product: {n:?}"),
        };
        (p, r)
    }

    #[test]
    fn classifies_products() {
        let (p, r) = product("A*B", "A: matrix(m, k); B: matrix(k, n)");
        let (a, b) = (p.graph.var_index("A").unwrap(), p.graph.var_index("B").unwrap());
        match r {
            Product::MatMul(l, r) => {
                assert_eq!(p.graph.node(l.id), &Node::Var(a as u32));
                assert_eq!(p.graph.node(r.id), &Node::Var(b as u32));
                assert!(!l.transposed && !r.transposed);
            }
            other => panic!("{other:?}"),
        }
        let (_, r) = product("A'*x", "A: matrix(m, n); x: vector(m)");
        assert!(matches!(r, Product::MatMul(l, _) if l.transposed), "{r:?}");
        let (_, r) = product("x*y'", "x: vector(m); y: vector(n)");
        assert!(matches!(r, Product::Outer(..)), "{r:?}");
        let (_, r) = product("tr(A)", "A: matrix(n, n)");
        assert!(matches!(r, Product::Trace(_)), "{r:?}");
        let (_, r) = product("x.*y", "x: vector(n); y: vector(n)");
        assert_eq!(r, Product::Hadamard);
        let (_, r) = product("diag(x)", "x: vector(n)");
        assert!(matches!(r, Product::DiagMatrix(_)), "{r:?}");
    }

    #[test]
    fn names_and_literals() {
        let mut n = Names::new(&["x", "t1"]);
        assert_eq!(n.claim("x"), "x_");
        let mut c = 0;
        assert_eq!(n.temp(&mut c), "t2");
        assert_eq!(float_literal(2.0).unwrap(), "2.0");
        assert_eq!(float_literal(1e-7).unwrap(), "1e-7");
        assert_eq!(exponent_literal(2.0), "2");
        assert_eq!(exponent_literal(-0.5), "-0.5");
        assert_eq!(label_str(&[0, 1, 2]), "ijk");
    }
}
