//! Numeric proof of derivatives: random points that respect the expression's
//! domain, central finite differences (with Richardson extrapolation) in random
//! directions, and the full finite-difference derivative for small sizes.

use super::interp::{self, DimValues};
use super::tensor::{einsum, Tensor};
use crate::error::{ErrorKind, Result};
use crate::ir::{Dim, Func, Graph, Id, Labels, Node};
use crate::problem::Problem;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Options for [`check`].
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Random seed.
    pub seed: u64,
    /// Number of random points.
    pub trials: usize,
    /// Fixed dimension values (others are drawn from their ranges, or 1..=5).
    pub dims: Vec<(String, usize)>,
    /// Derivative order.
    pub order: usize,
    /// Relative tolerance.
    pub tolerance: f64,
    /// Random directions per point.
    pub directions: usize,
    /// Refuse points whose largest tensor would have more entries than this
    /// (see [`interp::check_sizes`]); `None`: no limit.
    pub max_elements: Option<usize>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            seed: 1,
            trials: 3,
            dims: Vec::new(),
            order: 1,
            tolerance: 1e-5,
            directions: 3,
            max_elements: None,
        }
    }
}

/// One comparison.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CheckLine {
    /// Which derivative, e.g. `∂f/∂x`.
    pub what: String,
    /// Trial number.
    pub trial: usize,
    /// Dimension values used.
    pub dims: String,
    /// `direction` or `full`.
    pub kind: &'static str,
    /// Relative error.
    pub error: f64,
}

/// The outcome of a check.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CheckReport {
    /// Every comparison made.
    pub lines: Vec<CheckLine>,
    /// The worst relative error.
    pub worst: f64,
    /// Whether every comparison was within tolerance.
    pub passed: bool,
    /// Warnings from evaluation.
    pub warnings: Vec<String>,
    /// The tolerance used.
    pub tolerance: f64,
}

/// Standard normal samples (Box–Muller).
pub fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// What values a variable may take, found by looking at where it is used.
#[derive(Clone, Copy, Debug, Default)]
struct Domain {
    positive: bool,
    small: bool,
    invertible: bool,
}

fn domains(g: &Graph, root: Id) -> Vec<Domain> {
    let order = g.topo_order(&[root]);
    let mut ctx = vec![Domain::default(); g.len()];
    let mut out = vec![Domain::default(); g.vars.len()];
    for &id in order.iter().rev() {
        let here = ctx[id.index()];
        let child_ctx = match g.node(id) {
            Node::Map(Func::Log, _) => Domain { positive: true, ..here },
            Node::Pow(_, p) if p.get() < 0.0 || p.get().fract() != 0.0 => Domain { positive: true, ..here },
            Node::Map(Func::Asin | Func::Acos, _) => Domain { small: true, ..here },
            Node::Inv(_) | Node::Det(_) | Node::LogDet(_) => Domain {
                invertible: true,
                ..here
            },
            _ => here,
        };
        if let Node::Var(v) = g.node(id) {
            let d = &mut out[*v as usize];
            d.positive |= here.positive;
            d.small |= here.small;
            d.invertible |= here.invertible;
        }
        g.node(id).for_each_child(|c| {
            let e = &mut ctx[c.index()];
            e.positive |= child_ctx.positive;
            e.small |= child_ctx.small;
            e.invertible |= child_ctx.invertible;
        });
    }
    out
}

/// Draw dimension values: explicit ones, else from the declared range, else 1..=5.
pub fn sample_dims(g: &Graph, explicit: &[(String, usize)], rng: &mut StdRng) -> DimValues {
    g.dims
        .iter()
        .map(|d| {
            if let Some((_, v)) = explicit.iter().find(|(n, _)| *n == d.name) {
                return Some(*v);
            }
            Some(match d.range {
                Some((lo, hi)) => rng.gen_range(lo..=hi) as usize,
                None => rng.gen_range(1..=5),
            })
        })
        .collect()
}

/// Draw values for every variable, respecting the domain of the expression.
pub fn sample_values(g: &Graph, root: Id, dims: &DimValues, rng: &mut StdRng) -> Vec<Option<Tensor>> {
    let doms = domains(g, root);
    g.vars
        .iter()
        .zip(doms)
        .map(|(v, dom)| {
            let shape: Vec<usize> = v
                .shape
                .iter()
                .map(|&d| match d {
                    Dim::Fixed(n) => n as usize,
                    Dim::Sym(s) => dims[s as usize].unwrap_or(3),
                })
                .collect();
            let n: usize = shape.iter().product();
            let mut data: Vec<f64> = (0..n)
                .map(|_| {
                    if dom.positive {
                        rng.gen_range(0.5..1.5)
                    } else if dom.small {
                        rng.gen_range(-0.4..0.4)
                    } else {
                        normal(rng)
                    }
                })
                .collect();
            // Matrices are scaled like network weights (entries ~ N(0, 1/columns)) so
            // products stay of order one at every size.
            if shape.len() == 2 && !dom.positive && !dom.small {
                let s = 1.0 / (shape[1].max(1) as f64).sqrt();
                data.iter_mut().for_each(|e| *e *= s);
            }
            if shape.len() == 2 && shape[0] == shape[1] {
                let m = shape[0];
                if v.symmetric {
                    for i in 0..m {
                        for j in 0..i {
                            data[i * m + j] = data[j * m + i];
                        }
                    }
                }
                if dom.invertible {
                    // I + small noise: well conditioned, positive determinant.
                    let s = 0.3 / (m as f64).sqrt();
                    for (k, e) in data.iter_mut().enumerate() {
                        *e = if dom.positive { *e * s } else { *e * s * 0.5 } + if k / m == k % m { 1.0 } else { 0.0 };
                    }
                }
            }
            Some(Tensor::from_vec(shape, data).expect("shape and data agree"))
        })
        .collect()
}

fn norm(t: &Tensor) -> f64 {
    t.data().iter().map(|v| v * v).sum::<f64>().sqrt()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let diff = a.zip_map(b, |x, y| x - y);
    norm(&diff) / norm(a).max(norm(b)).max(1e-8)
}

/// Central difference of `f` at `vars` in direction `dir` of variable `vi`, with
/// Richardson extrapolation (error O(h⁴)).
/// `root` is the function itself: derivative nodes evaluated here keep the
/// subgradient conventions that the derivative's own evaluation used.
#[allow(clippy::too_many_arguments)]
fn fd(
    g: &Graph,
    f: Id,
    root: Id,
    vars: &[Option<Tensor>],
    vi: usize,
    dir: &Tensor,
    dims: &DimValues,
) -> Result<Tensor> {
    let x = vars[vi].as_ref().expect("sampled");
    let scale = x.data().iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let h = 1e-3 * scale;
    let at = |t: f64| -> Result<Tensor> {
        let mut vs = vars.to_vec();
        vs[vi] = Some(x.zip_map(dir, |a, d| a + t * d));
        Ok(interp::evaluate(g, &[f], root, &vs, dims)?.values.remove(0))
    };
    let d1 = at(h)?.zip_map(&at(-h)?, |a, b| (a - b) / (2.0 * h));
    let d2 = at(h / 2.0)?.zip_map(&at(-h / 2.0)?, |a, b| (a - b) / h);
    Ok(d2.zip_map(&d1, |a, b| (4.0 * a - b) / 3.0))
}

/// Check the problem's derivatives by `wrt` against finite differences.
pub fn check(p: &mut Problem, wrt: &[String], opts: &CheckOptions) -> Result<CheckReport> {
    // (function, derivative, variable) triples: each derivative against the
    // finite differences of the one below it.
    let mut triples: Vec<(Id, Id, usize, String)> = Vec::new();
    if opts.order == 1 {
        let ds = p.derive(wrt, 1)?;
        for d in ds {
            let vi = p.var_index(&d.wrt[0])?;
            triples.push((p.root, d.id, vi, format!("∂f/∂{}", d.wrt[0])));
        }
    } else {
        let d = p.derive(wrt, opts.order)?.remove(0);
        let mut cur = p.root;
        let mut label = "f".to_string();
        for (k, w) in d.wrt.iter().enumerate() {
            let vi = p.var_index(w)?;
            let next = if k + 1 == d.wrt.len() {
                d.id
            } else {
                crate::diff::derivatives(&mut p.graph, cur, &[vi])[0]
            };
            let nl = format!("∂{label}/∂{w}");
            triples.push((cur, next, vi, nl.clone()));
            cur = next;
            label = nl;
        }
    }
    let g = &p.graph;
    // Fixed dimensions must exist and fit their declared ranges.
    for (name, v) in &opts.dims {
        match g.dims.iter().find(|d| d.name == *name) {
            None => {
                let known: Vec<&str> = g.dims.iter().map(|d| d.name.as_str()).collect();
                return Err(
                    crate::error::Error::new(ErrorKind::Usage, format!("there is no dimension `{name}`")).hint(
                        if known.is_empty() {
                            "this expression has no symbolic dimensions".to_string()
                        } else {
                            format!("the dimensions are: {}", known.join(", "))
                        },
                    ),
                );
            }
            Some(d) => {
                if let Some((lo, hi)) = d.range {
                    if (*v as u64) < lo || (*v as u64) > hi {
                        return Err(crate::error::Error::new(
                            ErrorKind::Value,
                            format!("dimension `{name}` = {v} is outside its declared range {lo}..{hi}"),
                        )
                        .hint(format!("choose a value in {lo}..{hi}")));
                    }
                }
            }
        }
    }
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    for trial in 0..opts.trials {
        // Resample until the point is inside the domain (or give up and report).
        let mut attempt = 0;
        let (dims, vars) = loop {
            let dims = sample_dims(g, &opts.dims, &mut rng);
            let roots: Vec<Id> = triples.iter().map(|t| t.1).collect();
            if let Some(max) = opts.max_elements {
                interp::check_sizes(g, &roots, &dims, max)?;
            }
            let vars = sample_values(g, p.root, &dims, &mut rng);
            match interp::evaluate(g, &roots, p.root, &vars, &dims) {
                Ok(e) => {
                    warnings.extend(e.warnings);
                    break (dims, vars);
                }
                Err(e) if e.kind == ErrorKind::Numeric && attempt < 20 => attempt += 1,
                Err(e) => return Err(e),
            }
        };
        let dims_text = g
            .dims
            .iter()
            .zip(&dims)
            .map(|(d, v)| format!("{}={}", d.name, v.unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(" ");
        for (f, d, vi, what) in &triples {
            let dval = interp::evaluate(g, &[*d], p.root, &vars, &dims)?.values.remove(0);
            let x = vars[*vi].as_ref().unwrap();
            let (po, q) = (g.order(*f), x.order());
            let dl = Labels::range(0, po + q);
            let vl = Labels::range(po as u8, q);
            let ol = Labels::range(0, po);
            let symmetric = g.vars[*vi].symmetric;
            for _ in 0..opts.directions {
                let mut dir = Tensor::from_vec(x.shape().to_vec(), (0..x.len()).map(|_| normal(&mut rng)).collect())?;
                let n = norm(&dir).max(1e-300);
                dir.scale(1.0 / n);
                if symmetric {
                    let n = x.shape()[0];
                    let dd = dir.data_mut();
                    for i in 0..n {
                        for j in 0..i {
                            dd[i * n + j] = dd[j * n + i];
                        }
                    }
                }
                let an = einsum(&dval, &dl, &dir, &vl, &ol);
                let num = fd(g, *f, p.root, &vars, *vi, &dir, &dims)?;
                lines.push(CheckLine {
                    what: what.clone(),
                    trial,
                    dims: dims_text.clone(),
                    kind: "direction",
                    error: rel_err(&an, &num),
                });
            }
            if x.len() <= 40 && !symmetric {
                // The whole derivative, entry by entry.
                let mut full = Vec::with_capacity(dval.len());
                let mut cols = Vec::new();
                for k in 0..x.len() {
                    let mut e = vec![0.0; x.len()];
                    e[k] = 1.0;
                    let dir = Tensor::from_vec(x.shape().to_vec(), e)?;
                    cols.push(fd(g, *f, p.root, &vars, *vi, &dir, &dims)?);
                }
                let fsize = cols.first().map_or(1, |c| c.len());
                for i in 0..fsize {
                    for c in &cols {
                        full.push(c.data()[i]);
                    }
                }
                let num = Tensor::from_vec(dval.shape().to_vec(), full)?;
                lines.push(CheckLine {
                    what: what.clone(),
                    trial,
                    dims: dims_text.clone(),
                    kind: "full",
                    error: rel_err(&dval, &num),
                });
            }
        }
    }
    let worst = lines.iter().map(|l| l.error).fold(0.0, f64::max);
    warnings.sort();
    warnings.dedup();
    Ok(CheckReport {
        passed: worst <= opts.tolerance && lines.iter().all(|l| l.error.is_finite()),
        worst,
        lines,
        warnings,
        tolerance: opts.tolerance,
    })
}
