//! Numeric verification of an explanation: every side of every `=` is
//! evaluated at a random point, in a random direction.
//!
//! The placeholders get consistent values: each variable's `dx` is a random
//! direction, and each intermediate's `dv` is its differential evaluated from the
//! placeholders before it. Then
//! * each intermediate's differential must match the central difference of the
//!   intermediate along the direction;
//! * the lines of a chain must all be equal, and equal to the central difference
//!   of what the chain differentiates.

use super::{Differential, Explanation};
use crate::error::Result;
use crate::eval::check::{normal, sample_dims, sample_values};
use crate::eval::interp::evaluate;
use crate::eval::Tensor;
use crate::ir::{Graph, Id, Labels, Node};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// One verified equality.
#[derive(Clone, Debug)]
pub struct VerifiedLine {
    /// What was compared, e.g. `chain 1, line 3` or `da`.
    pub what: String,
    /// Relative error.
    pub error: f64,
    /// Whether it is within tolerance.
    pub ok: bool,
}

/// The outcome of [`Explanation::verify`].
#[derive(Clone, Debug)]
pub struct Verification {
    /// Every comparison made.
    pub lines: Vec<VerifiedLine>,
    /// Whether all passed.
    pub passed: bool,
    /// Set when the point is not differentiable (a subgradient convention was used,
    /// e.g. ‖x‖ at x = 0): the comparisons are not meaningful there and were skipped.
    pub skipped: Option<String>,
}

/// Relative tolerance for two sides of an exact identity (evaluated in different orders,
/// so rounding differs; a wrong step is off by O(1)).
const EXACT: f64 = 1e-6;
/// Relative tolerance against central differences (best of three steps,
/// Richardson-extrapolated, less their rounding noise). A wrong rule is off by
/// O(1); compositions of high degree (det of a square of outer products, under
/// exp and tanh) leave 1e-4 of truncation at every step.
const FINITE: f64 = 1e-3;

/// The scale relative errors are measured against: the largest magnitude of either side.
fn scale(a: &Tensor, b: &Tensor) -> f64 {
    a.data()
        .iter()
        .chain(b.data())
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(1e-8)
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let scale = scale(a, b);
    a.data()
        .iter()
        .zip(b.data())
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

impl Explanation {
    /// Check every line at a random point (`dims` pins dimension sizes).
    pub fn verify(&self, seed: u64, dims: &[(String, usize)]) -> Result<Verification> {
        let mut g: Graph = self.graph.clone();
        let mut rng = StdRng::seed_from_u64(seed);
        let dimv = sample_dims(&g, dims, &mut rng);
        let mut vals: Vec<Option<Tensor>> = sample_values(&g, self.root, &dimv, &mut rng);
        // Directions for the variables.
        for &(_, dx) in &self.wrt {
            let Node::Var(i) = *g.node(dx) else { continue };
            let t = vals[i as usize].take().expect("placeholders have shapes");
            let mut d: Vec<f64> = (0..t.data().len()).map(|_| normal(&mut rng)).collect();
            if g.vars[i as usize].symmetric {
                let n = t.shape()[0];
                for r in 0..n {
                    for c in 0..r {
                        d[r * n + c] = d[c * n + r];
                    }
                }
            }
            vals[i as usize] = Some(Tensor::from_vec(t.shape().to_vec(), d)?);
        }
        let root = self.root;
        let warned: std::cell::RefCell<Option<String>> = Default::default();
        let eval = |g: &Graph, vals: &[Option<Tensor>], id: Id| -> Result<Tensor> {
            let mut out = evaluate(g, &[id, root], root, vals, &dimv)?;
            if let Some(w) = out.warnings.first() {
                warned.borrow_mut().get_or_insert_with(|| w.clone());
            }
            Ok(out.values.remove(0))
        };
        let mut lines = Vec::new();
        // The intermediates' differentials, in order, each against central differences.
        for it in &self.intermediates {
            let node = value_node(&mut g, &it.differential);
            let dv = eval(&g, &vals, node)?;
            let e = self.fd_error(&g, &vals, it.node, &dimv, &dv)?;
            let Node::Var(i) = *g.node(it.diff_var) else { continue };
            vals[i as usize] = Some(dv);
            lines.push(VerifiedLine {
                what: format!("d{}", it.name),
                error: e,
                ok: e <= FINITE,
            });
        }
        for (k, c) in self.chains.iter().enumerate() {
            let mut first: Option<Tensor> = None;
            for (n, l) in c.lines.iter().enumerate() {
                let node = value_node(&mut g, &l.rhs);
                let v = eval(&g, &vals, node)?;
                let (e, tol) = match &first {
                    None => (self.fd_error(&g, &vals, c.of, &dimv, &v)?, FINITE),
                    Some(f) => (rel(&v, f), EXACT),
                };
                lines.push(VerifiedLine {
                    what: format!("chain {}, line {}", k + 1, n + 1),
                    error: e,
                    ok: e <= tol,
                });
                if first.is_none() {
                    first = Some(v);
                }
            }
            // The results read off: Σ derivative · dx equals the chain when all variables are present.
            let p = g.order(c.of);
            let mut terms = Vec::new();
            for d in &c.results {
                let Some(dx) = d
                    .wrt
                    .last()
                    .and_then(|w| self.wrt.iter().find(|(v, _)| g.vars[*v].name == *w))
                    .map(|x| x.1)
                else {
                    continue;
                };
                let q = g.order(dx);
                terms.push(g.mul(
                    d.id,
                    dx,
                    Labels::range(0, p + q),
                    Labels::range(p as u8, q),
                    Labels::range(0, p),
                ));
            }
            if c.results.len() == self.wrt.len() && !terms.is_empty() {
                let s = if terms.len() == 1 { terms[0] } else { g.add(&terms) };
                let v = eval(&g, &vals, s)?;
                let e = first.as_ref().map(|f| rel(&v, f)).unwrap_or(0.0);
                lines.push(VerifiedLine {
                    what: format!("chain {}, result", k + 1),
                    error: e,
                    ok: e <= EXACT,
                });
            }
        }
        if let Some(w) = warned.into_inner() {
            return Ok(Verification {
                lines: Vec::new(),
                passed: true,
                skipped: Some(w),
            });
        }
        let passed = lines.iter().all(|l| l.ok);
        Ok(Verification {
            lines,
            passed,
            skipped: None,
        })
    }

    /// The smallest relative error of `value` against central differences of `node` at
    /// a few step sizes (a kink or jump near the point spoils some steps, not all).
    fn fd_error(
        &self,
        g: &Graph,
        vals: &[Option<Tensor>],
        node: Id,
        dims: &crate::eval::interp::DimValues,
        value: &Tensor,
    ) -> Result<f64> {
        let mut best = f64::INFINITY;
        for h in [1e-3, 1e-5, 1e-2] {
            let (d, fmax) = self.central(g, vals, node, dims, h)?;
            // Rounding noise of the differences: a few ulps of the values
            // differenced, over the step (relative to the derivative's scale
            // as `rel` measures it). Large values with a small differential
            // (cancellation) get that much slack, as the derivative checks do.
            let noise = 16.0 * f64::EPSILON * fmax / (h * scale(value, &d));
            best = best.min((rel(value, &d) - noise).max(0.0));
            if best <= FINITE {
                break;
            }
        }
        Ok(best)
    }

    /// Central difference of `node` along the placeholders' directions with step `h`
    /// (Richardson-extrapolated), and the largest magnitude of the values differenced.
    fn central(
        &self,
        g: &Graph,
        vals: &[Option<Tensor>],
        node: Id,
        dims: &crate::eval::interp::DimValues,
        h: f64,
    ) -> Result<(Tensor, f64)> {
        let fmax = std::cell::Cell::new(0.0f64);
        let at = |h: f64| -> Result<Tensor> {
            let mut v = vals.to_vec();
            for &(x, dx) in &self.wrt {
                let Node::Var(i) = *g.node(dx) else { continue };
                let d = vals[i as usize].as_ref().expect("directions are set");
                let base = v[x].as_ref().expect("variables have values");
                let data: Vec<f64> = base.data().iter().zip(d.data()).map(|(a, b)| a + h * b).collect();
                v[x] = Some(Tensor::from_vec(base.shape().to_vec(), data)?);
            }
            let t = evaluate(g, &[node, self.root], self.root, &v, dims)?.values.remove(0);
            fmax.set(t.data().iter().fold(fmax.get(), |m, x| m.max(x.abs())));
            Ok(t)
        };
        let diff = |h: f64| -> Result<Tensor> {
            let (p, m) = (at(h)?, at(-h)?);
            let data = p
                .data()
                .iter()
                .zip(m.data())
                .map(|(a, b)| (a - b) / (2.0 * h))
                .collect();
            Tensor::from_vec(p.shape().to_vec(), data)
        };
        let (d1, d2) = (diff(h)?, diff(h / 2.0)?);
        let data = d1
            .data()
            .iter()
            .zip(d2.data())
            .map(|(a, b)| (4.0 * b - a) / 3.0)
            .collect();
        Ok((Tensor::from_vec(d1.shape().to_vec(), data)?, fmax.get()))
    }
}

/// The value of a line's right-hand side as one node.
fn value_node(g: &mut Graph, d: &Differential) -> Id {
    match d {
        Differential::Frobenius(pairs) => {
            let ts: Vec<Id> = pairs
                .iter()
                .map(|&(a, dv)| {
                    let l = Labels::range(0, g.order(dv));
                    g.mul(a, dv, l, l, Labels::range(0, 0))
                })
                .collect();
            if ts.is_empty() {
                g.constant(0.0)
            } else {
                g.add(&ts)
            }
        }
        Differential::Linear(e) => *e,
        Differential::Applied(_, v) => *v,
    }
}
