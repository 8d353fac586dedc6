//! The engine's front door: a parsed, typed problem and its derivatives.

use crate::diff;
use crate::error::{Error, ErrorKind, Origin, Result};
use crate::ir::{Graph, Id};
use crate::render::mexpr::M;
use crate::render::print::{Flavour, Style};
use crate::syntax::ast::Decl;
use crate::typing::{self, nearest, Kind};

/// An expression with its declarations, typed and lowered to the IR.
#[derive(Clone, Debug)]
pub struct Problem {
    /// The DAG holding the function and, after [`Problem::derive`], its derivatives.
    pub graph: Graph,
    /// The function's node.
    pub root: Id,
    /// The function's kind (a row vector is still order 1 in the IR).
    pub kind: Kind,
    /// Undeclared names and the kind/shape assumed for them, as declarations.
    pub assumed: Vec<String>,
    /// Variables that occur in the expression, in order of first appearance.
    pub occurring: Vec<String>,
}

/// A derivative of the problem's function.
#[derive(Clone, Debug)]
pub struct Derivative {
    /// The variables differentiated by, in order (one per order).
    pub wrt: Vec<String>,
    /// The derivative's node.
    pub id: Id,
}

/// Deepest expression (longest chain of operations) accepted: rendering long
/// product chains costs time quadratic in their length.
pub const MAX_DEPTH: usize = 2_000;

/// Most nodes a problem may build (function and derivatives), to bound work.
pub const MAX_NODES: usize = 5_000_000;

impl Problem {
    /// Parse and type an expression against declarations (`;`-separated).
    pub fn new(expr: &str, decls: &str) -> Result<Problem> {
        let decls: Vec<Decl> = crate::syntax::parse_decls(decls).map_err(|e| e.with_origin(Origin::Decls))?;
        let ast = crate::syntax::parse_expr(expr)?;
        Problem::from_ast(&ast, &decls)
    }

    /// Type an already parsed expression.
    pub fn from_ast(ast: &crate::syntax::ast::Expr, decls: &[Decl]) -> Result<Problem> {
        let a = typing::analyze(ast, decls)?;
        let depth = a.graph.depth(a.root);
        if depth > MAX_DEPTH {
            return Err(Error::new(
                ErrorKind::Limit,
                format!("the expression nests {depth} operations deep; the limit is {MAX_DEPTH}"),
            )
            .hint("split it into parts, or name intermediate results"));
        }
        let mut occurring: Vec<(u32, String)> = a.var_spans.iter().map(|(n, s)| (s.start, n.clone())).collect();
        occurring.sort();
        Ok(Problem {
            graph: a.graph,
            root: a.root,
            kind: a.kind,
            assumed: a.assumed,
            occurring: occurring.into_iter().map(|(_, n)| n).collect(),
        })
    }

    /// The variable index of a `--wrt` name, with a helpful error.
    pub fn var_index(&self, name: &str) -> Result<usize> {
        match self.graph.var_index(name) {
            Some(i) => Ok(i),
            None => {
                let names: Vec<&str> = self.graph.vars.iter().map(|v| v.name.as_str()).collect();
                let mut e = Error::new(ErrorKind::Usage, format!("`{name}` does not occur in the expression"));
                e = match nearest(name, names.iter().copied()) {
                    Some(n) => e.hint(format!("did you mean `{n}`?")),
                    None if names.is_empty() => e.hint("the expression has no variables"),
                    None => e.hint(format!("its variables are: {}", names.join(", "))),
                };
                Err(e)
            }
        }
    }

    /// Names that intermediates must not use: variables and dimensions.
    pub fn reserved_names(&self) -> Vec<String> {
        let mut r: Vec<String> = self.graph.vars.iter().map(|v| v.name.clone()).collect();
        r.extend(self.graph.dims.iter().map(|d| d.name.clone()));
        // `f` names the function itself in `∂f/∂x`.
        r.push("f".to_string());
        r
    }

    /// Derivatives. With `order == 1`, one derivative per name in `wrt` (gradient,
    /// Jacobian or tensor). With `order == k ≥ 2` and one name, the k-th
    /// derivative by it; with `order == 2` and two names, the mixed derivative
    /// ∂²f/∂x∂y.
    pub fn derive(&mut self, wrt: &[String], order: usize) -> Result<Vec<Derivative>> {
        if wrt.is_empty() {
            return Err(Error::new(ErrorKind::Usage, "nothing to differentiate by").hint("add --wrt NAME"));
        }
        let idx: Vec<usize> = wrt.iter().map(|w| self.var_index(w)).collect::<Result<_>>()?;
        if order == 0 {
            return Err(Error::new(ErrorKind::Usage, "--order must be at least 1")
                .hint("--order 1 is the gradient or Jacobian, 2 the Hessian"));
        }
        // Every derivative is a tensor of order (order of f) + Σ (order of each variable).
        let total = self.graph.order(self.root)
            + if idx.len() == 1 {
                order * self.graph.vars[idx[0]].shape.len()
            } else {
                idx.iter().map(|&v| self.graph.vars[v].shape.len()).sum()
            };
        // Intermediates (the identity seed, adjoints) carry up to twice as many axes.
        if 2 * total > crate::ir::labels_max_order() {
            return Err(Error::new(
                ErrorKind::Limit,
                format!(
                    "this derivative would be a tensor of order {total}; the limit is {}",
                    crate::ir::labels_max_order() / 2
                ),
            )
            .hint("lower --order, or differentiate by a vector instead of a matrix"));
        }
        if order == 1 {
            let ids = diff::derivatives(&mut self.graph, self.root, &idx);
            self.check_size()?;
            return Ok(wrt
                .iter()
                .zip(ids)
                .map(|(w, id)| Derivative {
                    wrt: vec![w.clone()],
                    id,
                })
                .collect());
        }
        if self.graph.order(self.root) != 0 {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("derivatives of order {order} need a scalar expression"),
            )
            .hint(
                "this expression is not a scalar: differentiate once for its Jacobian, or reduce it (sum, norm2, x'*…)",
            ));
        }
        let seq: Vec<usize> = match idx.len() {
            1 => vec![idx[0]; order],
            n if n == order => idx.clone(),
            _ => {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!("--order {order} with {} --wrt names", idx.len()),
                )
                .hint("give one --wrt for the k-th derivative by it, or exactly k names for a mixed derivative"))
            }
        };
        if seq.iter().any(|&v| self.graph.vars[v].shape.len() > 1) && order > 2 {
            return Err(Error::new(
                ErrorKind::Usage,
                "derivatives of order 3 and more are supported for scalar and vector variables",
            )
            .hint("differentiate by a vector, or use --order 2 for a matrix variable"));
        }
        let mut cur = self.root;
        for &v in &seq {
            cur = diff::derivatives(&mut self.graph, cur, &[v])[0];
            self.check_size()?;
        }
        let names = seq.iter().map(|&v| self.graph.vars[v].name.clone()).collect();
        Ok(vec![Derivative { wrt: names, id: cur }])
    }

    fn check_size(&self) -> Result<()> {
        if self.graph.len() > MAX_NODES {
            return Err(Error::new(
                ErrorKind::Limit,
                format!("the derivative needs more than {MAX_NODES} nodes"),
            ));
        }
        Ok(())
    }
}

/// How derivatives are labelled when printed (shared by the CLI, the tests and front ends).
impl Derivative {
    /// How the derivative is named: `∂f/∂x`, `∂²f/∂x²`, `\frac{\partial f}{\partial x}`.
    pub fn label(&self, style: &Style) -> String {
        let d = self;
        let n = d.wrt.len();
        let latex = style.flavour == Flavour::Latex;
        let name = |w: &str| crate::render::print::print(&M::Name(w.to_string()), style);
        let same = d.wrt.iter().all(|w| *w == d.wrt[0]);
        match (latex, n, same) {
            (true, 1, _) => format!("\\frac{{\\partial f}}{{\\partial {}}}", name(&d.wrt[0])),
            (false, 1, _) => format!("∂f/∂{}", d.wrt[0]),
            (true, _, true) => format!("\\frac{{\\partial^{n} f}}{{\\partial {}^{n}}}", name(&d.wrt[0])),
            (true, _, false) => {
                let den: Vec<String> = d.wrt.iter().map(|w| format!("\\partial {}", name(w))).collect();
                format!("\\frac{{\\partial^{n} f}}{{{}}}", den.join(" "))
            }
            (false, _, _) => {
                let sup = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹']
                    .get(n)
                    .copied()
                    .unwrap_or('ⁿ');
                if same {
                    format!("∂{sup}f/∂{}{sup}", d.wrt[0])
                } else {
                    format!("∂{sup}f/{}", d.wrt.iter().map(|w| format!("∂{w}")).collect::<String>())
                }
            }
        }
    }
}

impl Problem {
    /// The index names of a tensor result printed as `[i,j,k] = body`, split by
    /// what they belong to: the function's axes, then each variable's (for
    /// `∂f[i]/∂W[j,k]`: `[[i], [j, k]]`). `None` if `res` is not index notation.
    pub fn tensor_indices(&self, d: &Derivative, res: &str) -> Option<Vec<Vec<String>>> {
        let (idx, _) = res.strip_prefix('[')?.split_once("] = ")?;
        let names: Vec<&str> = idx.split(',').collect();
        let g = &self.graph;
        let mut orders = vec![g.order(self.root)];
        for w in &d.wrt {
            orders.push(g.vars[g.var_index(w)?].shape.len());
        }
        if orders.iter().sum::<usize>() != names.len() {
            return None;
        }
        let mut at = 0;
        Some(
            orders
                .iter()
                .map(|&k| {
                    at += k;
                    names[at - k..at].iter().map(|s| s.to_string()).collect()
                })
                .collect(),
        )
    }

    /// A tensor result printed as `[i,j,k] = body`, written `∂f[i]/∂W[j,k] = body`.
    pub fn tensor_line(&self, d: &Derivative, res: &str) -> Option<String> {
        let parts = self.tensor_indices(d, res)?;
        let (_, body) = res.split_once("] = ")?;
        let part = |ix: &Vec<String>| {
            if ix.is_empty() {
                String::new()
            } else {
                format!("[{}]", ix.join(","))
            }
        };
        let f = format!("f{}", part(&parts[0]));
        let den: String = d
            .wrt
            .iter()
            .zip(&parts[1..])
            .map(|(w, ix)| format!("∂{w}{}", part(ix)))
            .collect();
        let num = match d.wrt.len() {
            1 => format!("∂{f}"),
            n => format!("∂^{n} {f}"),
        };
        Some(format!("{num}/{den} = {body}"))
    }
}
