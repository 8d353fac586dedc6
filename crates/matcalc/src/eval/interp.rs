//! The interpreter: evaluate IR nodes at concrete values.

use super::linalg;
use super::tensor::{einsum, permute_sum, Tensor};
use crate::error::{Error, ErrorKind, Result};
use crate::ir::{Dim, Func, Graph, Id, Node};
use crate::render;
use rustc_hash::FxHashMap;

/// Values of dimension symbols, indexed like [`Graph::dims`].
pub type DimValues = Vec<Option<usize>>;

/// Bind dimension symbols from variable values and explicit `name=value` pairs;
/// check every value's shape against its variable.
pub fn bind_dims(g: &Graph, values: &[Option<Tensor>], explicit: &[(String, usize)]) -> Result<DimValues> {
    let mut dims: DimValues = vec![None; g.dims.len()];
    let mut origin: Vec<String> = vec![String::new(); g.dims.len()];
    for (name, v) in explicit {
        match g.dims.iter().position(|d| d.name == *name) {
            Some(i) => {
                dims[i] = Some(*v);
                origin[i] = "--dim".to_string();
            }
            None => {
                let known: Vec<&str> = g.dims.iter().map(|d| d.name.as_str()).collect();
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!("`--dim {name}=…`: there is no dimension `{name}`"),
                )
                .hint(if known.is_empty() {
                    "this expression has no symbolic dimensions".to_string()
                } else {
                    format!("the dimensions are: {}", known.join(", "))
                }));
            }
        }
    }
    for (vi, var) in g.vars.iter().enumerate() {
        let Some(t) = &values[vi] else { continue };
        let expected = g.shape_name(&var.shape);
        let describe = |t: &Tensor| super::tensor::shape_string(t.shape());
        if t.order() != var.shape.len() {
            return Err(Error::new(
                ErrorKind::Value,
                format!(
                    "`{}` should be {} ({}), but its value has shape {}",
                    var.name,
                    kind_name(var.shape.len()),
                    expected,
                    describe(t)
                ),
            )
            .hint(value_hint(var.shape.len())));
        }
        for (axis, (&d, &n)) in var.shape.iter().zip(t.shape()).enumerate() {
            match d {
                Dim::Fixed(m) if m as usize != n => {
                    return Err(Error::new(
                        ErrorKind::Value,
                        format!(
                            "`{}` should have shape {}, but its value has shape {}",
                            var.name,
                            expected,
                            describe(t)
                        ),
                    )
                    .hint(format!("axis {} must have length {m}", axis + 1)))
                }
                Dim::Fixed(_) => {}
                Dim::Sym(s) => {
                    let s = s as usize;
                    match dims[s] {
                        Some(m) if m != n => {
                            return Err(Error::new(
                                ErrorKind::Value,
                                format!(
                                    "`{}` has shape {} but dimension `{}` is {m} (from {})",
                                    var.name,
                                    describe(t),
                                    g.dims[s].name,
                                    origin[s]
                                ),
                            )
                            .hint(format!("every use of `{}` must have the same length", g.dims[s].name)))
                        }
                        Some(_) => {}
                        None => {
                            dims[s] = Some(n);
                            origin[s] = format!("`{}`", var.name);
                        }
                    }
                }
            }
        }
        if var.symmetric {
            let n = t.shape()[0];
            let d = t.data();
            let asym = (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).any(|(i, j)| {
                let (a, b) = (d[i * n + j], d[j * n + i]);
                (a - b).abs() > 1e-9 * (1.0 + a.abs().max(b.abs()))
            });
            if asym {
                return Err(Error::new(
                    ErrorKind::Value,
                    format!("`{}` is declared symmetric but its value is not", var.name),
                )
                .hint("give a symmetric matrix, or declare it as matrix(n, n)"));
            }
        }
    }
    for (i, d) in g.dims.iter().enumerate() {
        if let (Some(v), Some((lo, hi))) = (dims[i], d.range) {
            if (v as u64) < lo || (v as u64) > hi {
                return Err(Error::new(
                    ErrorKind::Value,
                    format!(
                        "dimension `{}` is {v} (from {}), outside its declared range {lo}..{hi}",
                        d.name, origin[i]
                    ),
                )
                .hint("give values whose sizes fit the declaration, or widen the range"));
            }
        }
    }
    Ok(dims)
}

fn kind_name(order: usize) -> &'static str {
    match order {
        0 => "a scalar",
        1 => "a vector",
        _ => "a matrix",
    }
}

fn value_hint(order: usize) -> &'static str {
    match order {
        0 => "give a number, e.g. 2.5",
        1 => "give an array of numbers, e.g. [1, 2, 3]",
        _ => "give an array of rows, e.g. [[1, 2], [3, 4]]",
    }
}

/// The result of an evaluation: one tensor per root, and warnings (points of
/// non-differentiability where a subgradient convention was used).
#[derive(Debug)]
pub struct Evaluated {
    /// Values of the roots, in order.
    pub values: Vec<Tensor>,
    /// Human-readable warnings.
    pub warnings: Vec<String>,
}

fn size(g: &Graph, dims: &DimValues, d: Dim) -> Result<usize> {
    match d {
        Dim::Fixed(n) => Ok(n as usize),
        Dim::Sym(s) => dims[s as usize].ok_or_else(|| {
            let name = &g.dims[s as usize].name;
            Error::new(ErrorKind::Value, format!("the size of dimension `{name}` is not known")).hint(format!(
                "give it with --dim {name}=…, or give a value for a variable that has it"
            ))
        }),
    }
}

/// A node as text for messages, cut at 80 characters.
pub(crate) fn short(g: &Graph, id: Id) -> String {
    let mut s = render::nested_expr(g, id);
    if s.chars().count() > 80 {
        s = s.chars().take(77).collect::<String>() + "...";
    }
    s
}

/// Refuse an evaluation whose largest tensor (any node on the way to `roots`)
/// would have more than `max_elements` entries at these dimension values, so a
/// front end can bound memory before it evaluates. Unknown sizes count as 1.
pub fn check_sizes(g: &Graph, roots: &[Id], dims: &DimValues, max_elements: usize) -> Result<()> {
    for id in g.topo_order(roots) {
        let n = g
            .shape(id)
            .iter()
            .map(|&d| size(g, dims, d).unwrap_or(1) as u128)
            .fold(1u128, |a, b| a.saturating_mul(b));
        if n > max_elements as u128 {
            let shape: Vec<String> = g
                .shape(id)
                .iter()
                .map(|&d| size(g, dims, d).map_or_else(|_| g.dim_name(d), |v| v.to_string()))
                .collect();
            return Err(Error::new(
                ErrorKind::Limit,
                format!(
                    "evaluating this needs a {} tensor ({n} numbers); the limit is {max_elements}",
                    shape.join("×")
                ),
            )
            .hint("use smaller dimensions (dims, or the declared ranges)"));
        }
    }
    Ok(())
}

/// Evaluate `roots`. `primal` nodes (those of the function itself) must be
/// finite; in derivative-only nodes a non-differentiable point uses the
/// subgradient convention (0·∞ = 0, sign(0) = 0) and produces a warning.
pub fn evaluate(g: &Graph, roots: &[Id], primal: Id, vars: &[Option<Tensor>], dims: &DimValues) -> Result<Evaluated> {
    let order = g.topo_order(roots);
    let primal_set: rustc_hash::FxHashSet<Id> = g.topo_order(&[primal]).into_iter().collect();
    // Remaining uses, to free intermediates as soon as possible.
    let mut uses: FxHashMap<Id, usize> = FxHashMap::default();
    for &id in &order {
        g.node(id).for_each_child(|c| *uses.entry(c).or_default() += 1);
    }
    for &r in roots {
        *uses.entry(r).or_default() += 1;
    }
    let mut vals: FxHashMap<Id, Tensor> = FxHashMap::default();
    let mut warnings = Vec::new();
    for &id in &order {
        let get = |c: Id| -> &Tensor { &vals[&c] };
        let node = g.node(id);
        let in_primal = primal_set.contains(&id);
        let t = match node {
            Node::Var(v) => match &vars[*v as usize] {
                Some(t) => t.clone(),
                None => {
                    let name = &g.vars[*v as usize].name;
                    return Err(Error::new(ErrorKind::Value, format!("no value given for `{name}`"))
                        .hint(format!("add \"{name}\" to the values file")));
                }
            },
            Node::Const(c) => Tensor::scalar(c.get()),
            Node::Fill(c, sh) => {
                let s: Vec<usize> = sh.iter().map(|&d| size(g, dims, d)).collect::<Result<_>>()?;
                Tensor::filled(&s, c.get())
            }
            Node::Literal(data, sh) => {
                let s: Vec<usize> = sh.iter().map(|&d| size(g, dims, d)).collect::<Result<_>>()?;
                Tensor::from_vec(s, data.iter().map(|v| v.get()).collect())?
            }
            Node::Delta(d) => Tensor::eye(size(g, dims, *d)?),
            Node::Add(ts) => {
                let mut acc = get(ts[0]).clone();
                for &t in &ts[1..] {
                    acc.add_assign(get(t));
                }
                acc
            }
            Node::Mul(a, b, s1, s2, s3) => einsum(get(*a), s1, get(*b), s2, s3),
            Node::Reindex(a, ia, out) => permute_sum(get(*a), ia, out),
            Node::Map(f, a) => {
                let x = get(*a);
                if !in_primal && matches!(f, Func::Sign | Func::Step) && x.data().contains(&0.0) {
                    warnings.push(format!(
                        "not differentiable at this point: `{}` has an entry exactly 0; using the subgradient 0 there",
                        short(g, *a)
                    ));
                }
                x.map(|v| f.apply(v))
            }
            Node::Pow(a, p) => {
                let p = p.get();
                let x = get(*a);
                let mut r = x.map(|v| {
                    if p == 0.5 {
                        v.sqrt()
                    } else if p == -1.0 {
                        1.0 / v
                    } else {
                        v.powf(p)
                    }
                });
                if !in_primal && p < 0.0 && x.data().contains(&0.0) {
                    warnings.push(format!(
                        "not differentiable at this point: `{}` is 0; using the subgradient convention 0·∞ = 0",
                        short(g, *a)
                    ));
                    for (o, &i) in r.data_mut().iter_mut().zip(x.data()) {
                        if i == 0.0 {
                            *o = 0.0;
                        }
                    }
                }
                r
            }
            Node::Inv(a) => linalg::inv(get(*a)).map_err(|e| at_node(g, *a, e))?,
            Node::Det(a) => Tensor::scalar(linalg::det(get(*a)).map_err(|e| at_node(g, *a, e))?),
            Node::LogDet(a) => {
                let (l, _sign) = linalg::logdet(get(*a)).map_err(|e| at_node(g, *a, e))?;
                Tensor::scalar(l)
            }
            Node::LogSumExp(a) => {
                let x = get(*a);
                let m = x.data().iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = x.data().iter().map(|v| (v - m).exp()).sum();
                Tensor::scalar(m + s.ln())
            }
            Node::Softmax(a) => {
                let x = get(*a);
                let m = x.data().iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e = x.map(|v| (v - m).exp());
                let s: f64 = e.data().iter().sum();
                e.map(|v| v / s)
            }
        };
        if !t.all_finite() {
            let (what, hint) = match node {
                Node::Map(Func::Log, _) => ("log of a negative number or of zero", "log needs positive arguments"),
                Node::Pow(_, p) if p.get() < 0.0 => ("division by zero", "the base must not be zero"),
                Node::Pow(..) => (
                    "a fractional power of a negative number",
                    "the base must be non-negative",
                ),
                Node::Map(Func::Asin | Func::Acos, _) => {
                    ("asin/acos outside [-1, 1]", "the argument must lie in [-1, 1]")
                }
                _ => (
                    "a value that is not finite (overflow or invalid operation)",
                    "check the values",
                ),
            };
            let _ = in_primal;
            return Err(Error::new(ErrorKind::Numeric, format!("{what} in `{}`", short(g, id))).hint(hint));
        }
        node.for_each_child(|c| {
            if let Some(u) = uses.get_mut(&c) {
                *u -= 1;
                if *u == 0 {
                    vals.remove(&c);
                }
            }
        });
        vals.insert(id, t);
    }
    warnings.dedup();
    let values = roots.iter().map(|r| vals[r].clone()).collect();
    Ok(Evaluated { values, warnings })
}

fn at_node(g: &Graph, id: Id, e: Error) -> Error {
    let mut e = e;
    e.message = format!("{} (in `{}`)", e.message, short(g, id));
    e
}
