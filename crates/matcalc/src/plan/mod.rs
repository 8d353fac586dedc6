//! Compiled evaluation: the function and its derivatives lowered to a flat
//! program over preallocated buffers, for fast repeated evaluation.
//!
//! [`compile`] parses, types and differentiates once; [`Compiled::eval`]
//! evaluates at given values. The first call (and any call with new shapes)
//! binds the dimensions and lowers the DAG at those sizes (see [`lower`] for
//! what the program does: one pass in topological order, buffers reused by
//! liveness, fused elementwise loops, faer matrix products on strided views);
//! later calls with the same shapes **allocate nothing** and return borrowed
//! views of the results.
//!
//! The numbers, errors and warnings are those of the interpreter
//! ([`crate::eval::interp::evaluate`]): a non-finite value or a singular
//! matrix stops the program, and the interpreter is then run to produce its
//! exact error.
//!
//! ```
//! use matcalc::eval::Tensor;
//!
//! let mut f = matcalc::compile("x'*A*x + sum(sin(x))", "A: matrix(n, n); x: vector(n)", &["x"], 1)?;
//! let a = Tensor::from_vec(vec![2, 2], vec![2.0, 1.0, 0.0, 3.0])?;
//! let x = Tensor::from_vec(vec![2], vec![1.0, -1.0])?;
//! let out = f.eval(&[("A", &a), ("x", &x)])?;
//! // f = xᵀAx + Σ sin(xᵢ) = 4 + 0; ∇f = (A + Aᵀ)x + cos(x).
//! assert_eq!(out.value().data, &[4.0]);
//! let g = out.derivative(0);
//! assert_eq!(g.shape, &[2]);
//! assert!((g.data[0] - (3.0 + 1f64.cos())).abs() < 1e-12);
//! assert!((g.data[1] - (-5.0 + 1f64.cos())).abs() < 1e-12);
//!
//! // Many points at once: x with a leading batch axis (here 3 points).
//! let xs = Tensor::from_vec(vec![3, 2], vec![1.0, -1.0, 0.0, 0.0, 2.0, 1.0])?;
//! let out = f.eval_batch(&[("A", &a), ("x", &xs)], "x")?;
//! assert_eq!(out.value().shape, &[3]);
//! assert_eq!(out.value().data[0], 4.0);
//! assert_eq!(out.derivative(0).shape, &[3, 2]);
//! # Ok::<(), matcalc::Error>(())
//! ```

mod assoc;
mod lower;
mod program;
mod stream;
mod vmath;

use crate::error::{Error, ErrorKind, Result};
use crate::eval::interp::{self, bind_dims};
use crate::eval::Tensor;
use crate::ir::{Graph, Id};
use crate::{Derivative, Problem};
use lower::Lowered;

/// Parse and type `expr` against `decls`, differentiate it by `wrt` (`order`
/// as in [`Problem::derive`]; no derivatives when `wrt` is empty) and prepare
/// it for evaluation.
pub fn compile(expr: &str, decls: &str, wrt: &[&str], order: usize) -> Result<Compiled> {
    let mut p = Problem::new(expr, decls)?;
    let ds = if wrt.is_empty() {
        Vec::new()
    } else {
        let names: Vec<String> = wrt.iter().map(|w| w.to_string()).collect();
        p.derive(&names, order)?
    };
    Ok(Compiled::new(p, ds))
}

/// A problem with derivatives, ready for fast repeated evaluation.
#[derive(Debug)]
pub struct Compiled {
    problem: Problem,
    derivatives: Vec<Derivative>,
    roots: Vec<Id>,
    /// Variables the roots depend on (by index).
    used: Vec<u32>,
    explicit_dims: Vec<(String, usize)>,
    /// Position in the caller's values of each variable (by index), or `usize::MAX`.
    var_pos: Vec<usize>,
    spec: Option<Spec>,
}

/// The program for one set of shapes.
#[derive(Debug)]
struct Spec {
    /// Shapes of the used variables' values, as given.
    shapes: Vec<Vec<usize>>,
    batch: Option<(u32, usize)>,
    lowered: Lowered,
    /// Warnings of the last evaluation (site numbers), deduplicated.
    fired: Vec<usize>,
}

/// The entries and shape of a result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct View<'a> {
    /// Extents, outermost first (a batch axis first for batched evaluations).
    pub shape: &'a [usize],
    /// Entries in row-major order.
    pub data: &'a [f64],
}

impl View<'_> {
    /// An owned copy.
    pub fn to_tensor(&self) -> Tensor {
        Tensor::from_vec(self.shape.to_vec(), self.data.to_vec()).expect("a view's data fits its shape")
    }
}

/// The results of one evaluation, borrowed from the [`Compiled`].
#[derive(Debug)]
pub struct Evaluation<'a> {
    spec: &'a Spec,
}

impl<'a> Evaluation<'a> {
    fn root(&self, i: usize) -> View<'a> {
        let r = &self.spec.lowered.roots[i];
        View {
            shape: &r.shape,
            data: self.spec.lowered.program.value(r.val, r.len),
        }
    }

    /// The function's value.
    pub fn value(&self) -> View<'a> {
        self.root(0)
    }

    /// Derivative number `i`, in the order of [`Compiled::derivatives`].
    pub fn derivative(&self, i: usize) -> View<'a> {
        self.root(i + 1)
    }

    /// Number of derivatives.
    pub fn len(&self) -> usize {
        self.spec.lowered.roots.len() - 1
    }

    /// Whether there are no derivatives.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Warnings: points of non-differentiability where a subgradient convention was used.
    pub fn warnings(&self) -> impl Iterator<Item = &'a str> + 'a {
        let spec = self.spec;
        spec.fired.iter().map(move |&s| spec.lowered.warn_sites[s].as_str())
    }
}

impl Compiled {
    /// Prepare a problem and derivatives computed by [`Problem::derive`].
    pub fn new(problem: Problem, derivatives: Vec<Derivative>) -> Compiled {
        let mut roots = vec![problem.root];
        roots.extend(derivatives.iter().map(|d| d.id));
        let g = &problem.graph;
        let mut used: Vec<u32> = g
            .topo_order(&roots)
            .into_iter()
            .filter_map(|id| match g.node(id) {
                crate::ir::Node::Var(v) => Some(*v),
                _ => None,
            })
            .collect();
        used.sort_unstable();
        let nvars = g.vars.len();
        Compiled {
            problem,
            derivatives,
            roots,
            used,
            explicit_dims: Vec::new(),
            var_pos: vec![usize::MAX; nvars],
            spec: None,
        }
    }

    /// The program of the last evaluation, one step per line (empty before
    /// the first): fused loops, products (symmetric ones marked), sums, copies.
    pub fn plan_summary(&self) -> String {
        self.spec
            .as_ref()
            .map_or_else(String::new, |s| s.lowered.program.summary())
    }

    /// Sizes for dimension symbols that no value determines (`--dim n=3`).
    pub fn set_dims(&mut self, dims: &[(String, usize)]) {
        self.explicit_dims = dims.to_vec();
        self.spec = None;
    }

    /// The problem (graph, function node, variables).
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// The derivatives, in the order of [`Evaluation::derivative`].
    pub fn derivatives(&self) -> &[Derivative] {
        &self.derivatives
    }

    /// Evaluate the function and the derivatives at `values` (by variable
    /// name; names the expression does not use are ignored). After the first
    /// call with given shapes, this allocates nothing (unless a warning is
    /// new or the evaluation fails).
    pub fn eval(&mut self, values: &[(&str, &Tensor)]) -> Result<Evaluation<'_>> {
        self.run(values, None)
    }

    /// Evaluate at many points at once: the value of `batched` has one more,
    /// leading, axis (the batch of B points); the other values are shared.
    /// Every result gains the leading batch axis. Products by the batched
    /// variable become matrix–matrix products.
    pub fn eval_batch(&mut self, values: &[(&str, &Tensor)], batched: &str) -> Result<Evaluation<'_>> {
        let v = self.problem.var_index(batched)? as u32;
        self.run(values, Some(v))
    }

    fn run(&mut self, values: &[(&str, &Tensor)], batched: Option<u32>) -> Result<Evaluation<'_>> {
        self.locate(values)?;
        let batch = match batched {
            None => None,
            Some(v) => Some((v, self.batch_size(values, v)?)),
        };
        let fresh = match &self.spec {
            Some(s) => {
                s.batch != batch
                    || self
                        .used
                        .iter()
                        .zip(&s.shapes)
                        .any(|(&v, sh)| values[self.var_pos[v as usize]].1.shape() != &sh[..])
            }
            None => true,
        };
        if fresh {
            self.spec = None;
            self.specialize(values, batch)?;
        }
        if !self.inputs_ok(values, batch) {
            return Err(self.slow_error(values, batch));
        }
        let var_pos = &self.var_pos;
        let inputs = |i: u32| -> &[f64] { values[var_pos[i as usize]].1.data() };
        let spec = self.spec.as_mut().expect("specialized");
        let ok = spec.lowered.program.run(&inputs);
        if !ok {
            return Err(self.slow_error(values, batch));
        }
        let spec = self.spec.as_mut().expect("specialized");
        spec.fired.clear();
        let lw = &spec.lowered;
        for &s in &lw.warn_order {
            if lw.program.warned[s] && spec.fired.last().is_none_or(|&l| lw.warn_sites[l] != lw.warn_sites[s]) {
                spec.fired.push(s);
            }
        }
        Ok(Evaluation {
            spec: self.spec.as_ref().expect("specialized"),
        })
    }

    /// Find each used variable among `values` (no allocation).
    fn locate(&mut self, values: &[(&str, &Tensor)]) -> Result<()> {
        let g = &self.problem.graph;
        self.var_pos.iter_mut().for_each(|p| *p = usize::MAX);
        for (i, (name, _)) in values.iter().enumerate() {
            if let Some(v) = g.vars.iter().position(|v| v.name == *name) {
                self.var_pos[v] = i;
            }
        }
        for &v in &self.used {
            if self.var_pos[v as usize] == usize::MAX {
                let name = &g.vars[v as usize].name;
                return Err(Error::new(ErrorKind::Value, format!("no value given for `{name}`"))
                    .hint(format!("add \"{name}\" to the values file")));
            }
        }
        Ok(())
    }

    /// B, the length of the batched variable's extra leading axis.
    fn batch_size(&self, values: &[(&str, &Tensor)], v: u32) -> Result<usize> {
        let var = &self.problem.graph.vars[v as usize];
        let pos = self.var_pos[v as usize];
        if pos == usize::MAX {
            return Err(
                Error::new(ErrorKind::Value, format!("no value given for `{}`", var.name))
                    .hint(format!("add \"{}\" to the values file", var.name)),
            );
        }
        let t = values[pos].1;
        if t.order() != var.shape.len() + 1 {
            return Err(Error::new(
                ErrorKind::Value,
                format!(
                    "a batched value of `{}` needs {} axes (the batch, then its own {}), but has {}",
                    var.name,
                    var.shape.len() + 1,
                    var.shape.len(),
                    t.order()
                ),
            )
            .hint("stack the points along a new first axis"));
        }
        Ok(t.shape()[0])
    }

    /// The values as the interpreter takes them (one point for a batch).
    fn point_values(
        &self,
        values: &[(&str, &Tensor)],
        batch: Option<(u32, usize)>,
        point: usize,
    ) -> Vec<Option<Tensor>> {
        let g = &self.problem.graph;
        (0..g.vars.len())
            .map(|v| {
                let p = self.var_pos[v];
                if p == usize::MAX {
                    return None;
                }
                let t = values[p].1;
                match batch {
                    Some((b, _)) if b as usize == v => {
                        let n: usize = t.shape()[1..].iter().product();
                        Tensor::from_vec(t.shape()[1..].to_vec(), t.data()[point * n..(point + 1) * n].to_vec()).ok()
                    }
                    _ => Some(t.clone()),
                }
            })
            .collect()
    }

    fn specialize(&mut self, values: &[(&str, &Tensor)], batch: Option<(u32, usize)>) -> Result<()> {
        let g: &Graph = &self.problem.graph;
        let mut vals = self.point_values(values, batch.map(|(v, _)| (v, 0)), 0);
        if let Some((b, 0)) = batch {
            // An empty batch: bind the sizes from a zero point of the right shape.
            let t = values[self.var_pos[b as usize]].1;
            vals[b as usize] = Some(Tensor::zeros(&t.shape()[1..]));
        }
        let dims = bind_dims(g, &vals, &self.explicit_dims)?;
        // Second derivatives by one vector are symmetric matrices.
        let symmetric: Vec<Id> = self
            .derivatives
            .iter()
            .filter(|d| d.wrt.len() == 2 && d.wrt[0] == d.wrt[1] && g.order(d.id) == 2)
            .map(|d| d.id)
            .collect();
        // Chains of matrix products regrouped for these sizes (a copy of the
        // graph with the new groupings, when any is worth it).
        let lowered = match assoc::reassociate(g, &self.roots, &dims, batch.map(|b| b.0)) {
            Some((g2, map)) => {
                let roots: Vec<Id> = self.roots.iter().map(|r| map[r]).collect();
                let symmetric: Vec<Id> = symmetric.iter().map(|r| map[r]).collect();
                let primal = map.get(&self.problem.root).copied().unwrap_or(self.problem.root);
                lower::lower(&g2, &roots, &symmetric, primal, &dims, batch)?
            }
            None => lower::lower(g, &self.roots, &symmetric, self.problem.root, &dims, batch)?,
        };
        let shapes = self
            .used
            .iter()
            .map(|&v| values[self.var_pos[v as usize]].1.shape().to_vec())
            .collect();
        let fired = Vec::with_capacity(lowered.warn_sites.len());
        self.spec = Some(Spec {
            shapes,
            batch,
            lowered,
            fired,
        });
        Ok(())
    }

    /// Inputs finite and symmetric where declared so (as `bind_dims` and the
    /// interpreter require), without allocating.
    fn inputs_ok(&self, values: &[(&str, &Tensor)], batch: Option<(u32, usize)>) -> bool {
        let g = &self.problem.graph;
        let spec = self.spec.as_ref().expect("specialized");
        let finite = spec
            .lowered
            .check_vars
            .iter()
            .all(|&v| program::all_finite(values[self.var_pos[v as usize]].1.data()));
        let symmetric_ok = self.used.iter().all(|&v| {
            if !g.vars[v as usize].symmetric {
                return true;
            }
            let t = values[self.var_pos[v as usize]].1;
            let n = *t.shape().last().unwrap_or(&0);
            t.data().chunks(n * n).all(|d| symmetric(d, n))
        });
        finite && symmetric_ok && batch.is_none_or(|(b, _)| self.var_pos[b as usize] != usize::MAX)
    }

    /// The interpreter's error for values at which the program failed.
    fn slow_error(&self, values: &[(&str, &Tensor)], batch: Option<(u32, usize)>) -> Error {
        let g = &self.problem.graph;
        let points = batch.map_or(1, |b| b.1);
        for point in 0..points {
            let vals = self.point_values(values, batch, point);
            let res = bind_dims(g, &vals, &self.explicit_dims)
                .and_then(|dims| interp::evaluate(g, &self.roots, self.problem.root, &vals, &dims));
            if let Err(mut e) = res {
                if batch.is_some() {
                    e.message = format!("at batch point {point}: {}", e.message);
                }
                return e;
            }
        }
        Error::new(
            ErrorKind::Numeric,
            "the compiled evaluation failed where the interpreter did not (this is a bug in matcalc)",
        )
        .hint("evaluate without the compiled plan")
    }
}

/// The symmetry test of `bind_dims` on one row-major n×n matrix.
fn symmetric(d: &[f64], n: usize) -> bool {
    (0..n).all(|i| {
        (0..n).all(|j| {
            let (a, b) = (d[i * n + j], d[j * n + i]);
            (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
        })
    })
}
