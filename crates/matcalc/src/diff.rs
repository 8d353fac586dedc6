//! Reverse-mode differentiation on the DAG.
//!
//! The derivative of a node `f` of shape `O` with respect to a variable of shape
//! `S` is a node of shape `O ++ S` (output axes first): a gradient for scalar `f`,
//! a Jacobian `J[i,j] = ∂fᵢ/∂xⱼ` for vectors, a tensor beyond. Every adjoint
//! carries the output axes as a prefix, so one sweep serves all orders, and a
//! second derivative is this same code applied to a first derivative.

use crate::ir::{Func, Graph, Id, Labels, Node};
use rustc_hash::FxHashMap;

/// The derivatives of `f` with respect to each variable (indices into `g.vars`).
pub fn derivatives(g: &mut Graph, f: Id, vars: &[usize]) -> Vec<Id> {
    let p = g.order(f);
    let o = Labels::range(0, p);
    let dep = g.depends_on(&[f], vars);
    let seed = identity_seed(g, f);
    let var_bar: FxHashMap<usize, Id> = sweep(g, f, seed, p, &dep, |g, id| matches!(g.node(id), Node::Var(_)))
        .into_iter()
        .filter_map(|(id, bar)| match g.node(id) {
            Node::Var(i) => Some((*i as usize, bar)),
            _ => None,
        })
        .collect();
    vars.iter()
        .map(|&vi| {
            let mut shape = g.shape(f).to_vec();
            shape.extend_from_slice(&g.vars[vi].shape);
            let d = var_bar.get(&vi).copied().unwrap_or_else(|| g.zeros(shape));
            if g.vars[vi].symmetric && g.vars[vi].shape.len() == 2 {
                // The gradient restricted to symmetric matrices: (G + Gᵀ)/2.
                let (i, j) = (p as u8, p as u8 + 1);
                let gt = g.reindex(d, o.concat(&[i, j]), o.concat(&[j, i]));
                let s = g.add(&[d, gt]);
                g.scale(0.5, s)
            } else {
                d
            }
        })
        .collect()
}

/// The reverse sweep from `root`, whose adjoint is `seed` (with `p` output axes in front),
/// down to the nodes `is_leaf` accepts: the adjoint of each leaf reached, in the order the
/// sweep finishes them. `dep[id]` says whether a node depends on what is differentiated;
/// the sweep does not descend past a leaf (other than `root` itself).
pub(crate) fn sweep(
    g: &mut Graph,
    root: Id,
    seed: Id,
    p: usize,
    dep: &[bool],
    is_leaf: impl Fn(&Graph, Id) -> bool,
) -> Vec<(Id, Id)> {
    let order = topo_to_leaves(g, root, &is_leaf);
    let mut contribs: FxHashMap<Id, Vec<Id>> = FxHashMap::default();
    let mut leaves = Vec::new();
    if dep[root.index()] {
        contribs.insert(root, vec![seed]);
    }
    for &v in order.iter().rev() {
        if !dep[v.index()] {
            continue;
        }
        let Some(list) = contribs.remove(&v) else {
            continue;
        };
        let bar = g.add(&list);
        if v != root && is_leaf(g, v) {
            leaves.push((v, bar));
            continue;
        }
        let steps = match softplus_of(g, v) {
            // log(1 + exp(u)) is softplus(u), whose derivative is sigmoid(u):
            // not exp(u) ⊘ (1 + exp(u)), which overflows for large u and hides
            // the form a person writes (the logistic loss's Hessian is then
            // Xᵀ Diag(σ ⊙ (1 − σ)) X). Only when the sweep may pass the
            // inner nodes (an explanation that names them keeps the local rules).
            Some((x, e, u)) if !is_leaf(g, x) && !is_leaf(g, e) => {
                let d = g.map(Func::Sigmoid, u);
                vec![(u, times_pointwise(g, bar, d, p))]
            }
            _ => pull_back(g, v, bar, p, dep),
        };
        for (child, c) in steps {
            if dep[child.index()] && !g.is_zero(c) {
                contribs.entry(child).or_default().push(c);
            }
        }
        if matches!(g.node(v), Node::Var(_)) && is_leaf(g, v) {
            // The root is itself a variable (f = x): its adjoint is the seed.
            leaves.push((v, bar));
        }
    }
    leaves
}

/// The nodes under `root` in topological order, not descending below leaves.
fn topo_to_leaves(g: &Graph, root: Id, is_leaf: &impl Fn(&Graph, Id) -> bool) -> Vec<Id> {
    let mut seen = rustc_hash::FxHashSet::default();
    let mut order = Vec::new();
    let mut stack = vec![(root, false)];
    while let Some((id, expanded)) = stack.pop() {
        if expanded {
            order.push(id);
            continue;
        }
        if !seen.insert(id) {
            continue;
        }
        stack.push((id, true));
        if id != root && is_leaf(g, id) {
            continue;
        }
        let children = g.node(id).children();
        for &c in children.iter().rev() {
            if !seen.contains(&c) {
                stack.push((c, false));
            }
        }
    }
    order
}

/// One step of the reverse sweep: the contributions of the adjoint `bar` of node `v`
/// (with `p` output axes in front) to the adjoints of its children, one per use of a
/// child that depends on what is differentiated (`dep`). This is the table of differentiation rules; every derivative, and every
/// line of an explanation, comes from it.
pub(crate) fn pull_back(g: &mut Graph, v: Id, bar: Id, p: usize, dep: &[bool]) -> Vec<(Id, Id)> {
    let o = Labels::range(0, p);
    let q = g.order(v);
    let sv = Labels::range(p as u8, q);
    let mut res: Vec<(Id, Id)> = Vec::new();
    let node = g.node(v).clone();
    match node {
        Node::Var(_) | Node::Const(_) | Node::Fill(..) | Node::Literal(..) | Node::Delta(_) => {}
        Node::Add(ts) => {
            for &t in ts.iter() {
                res.push((t, bar));
            }
        }
        Node::Mul(a, b, s1, s2, s3) => {
            let sh = |l: u8| l + p as u8;
            let (s1, s2, s3) = (s1.map(sh), s2.map(sh), s3.map(sh));
            let bar_l = o.concat(&s3);
            for (x, y, sx, sy) in [(a, b, s1, s2), (b, a, s2, s1)] {
                if !dep[x.index()] {
                    continue;
                }
                // x̄[O, sx] = Σ v̄[O, s3] · y[sy], broadcasting over labels only x had.
                let missing: Vec<u8> = sx.iter().copied().filter(|l| !s3.has(*l) && !sy.has(*l)).collect();
                let (yy, yl) = if missing.is_empty() {
                    (y, sy)
                } else {
                    let dims = missing.iter().map(|&l| g.shape(x)[sx.pos(l).unwrap()]).collect();
                    let ones = g.ones(dims);
                    let ml = Labels::from_slice(&missing);
                    let yl = sy.concat(&missing);
                    (g.mul(y, ones, sy, ml, yl), yl)
                };
                let c = g.mul(bar, yy, bar_l, yl, o.concat(&sx));
                res.push((x, c));
            }
        }
        Node::Reindex(a, ia, out) => {
            let sh = |l: u8| l + p as u8;
            let (ia, out) = (ia.map(sh), out.map(sh));
            let missing: Vec<u8> = ia.iter().copied().filter(|l| !out.has(*l)).collect();
            let c = if missing.is_empty() {
                g.reindex(bar, o.concat(&out), o.concat(&ia))
            } else {
                let dims = missing.iter().map(|&l| g.shape(a)[ia.pos(l).unwrap()]).collect();
                let ones = g.ones(dims);
                g.mul(bar, ones, o.concat(&out), Labels::from_slice(&missing), o.concat(&ia))
            };
            res.push((a, c));
        }
        Node::Map(f, x) => {
            let d = func_derivative(g, f, x, v);
            res.push((x, times_pointwise(g, bar, d, p)));
        }
        Node::Pow(x, e) => {
            let e = e.get();
            let pw = g.pow(x, e - 1.0);
            let d = g.scale(e, pw);
            res.push((x, times_pointwise(g, bar, d, p)));
        }
        Node::Inv(x) => {
            // Ā = −Vᵀ V̄ Vᵀ
            let (i, j, k, l) = (p as u8, p as u8 + 1, p as u8 + 2, p as u8 + 3);
            let t = g.mul(
                bar,
                v,
                o.concat(&[k, l]),
                Labels::from_slice(&[j, l]),
                o.concat(&[k, j]),
            );
            let u = g.mul(v, t, Labels::from_slice(&[k, i]), o.concat(&[k, j]), o.concat(&[i, j]));
            let c = g.neg(u);
            res.push((x, c));
        }
        Node::Det(x) => {
            // Ā = v̄ · det(X) · X⁻ᵀ
            let inv = g.inv(x);
            let it = g.transpose(inv);
            let dit = g.times(v, it);
            let s2 = Labels::range(p as u8, 2);
            let c = g.mul(bar, dit, o, s2, o.concat(&s2));
            res.push((x, c));
        }
        Node::LogDet(x) => {
            let inv = g.inv(x);
            let it = g.transpose(inv);
            let s2 = Labels::range(p as u8, 2);
            let c = g.mul(bar, it, o, s2, o.concat(&s2));
            res.push((x, c));
        }
        Node::LogSumExp(x) => {
            let sm = g.softmax(x);
            let sx = Labels::range(p as u8, g.order(x));
            let c = g.mul(bar, sm, o, sx, o.concat(&sx));
            res.push((x, c));
        }
        Node::Softmax(x) => {
            // x̄ = v̄ ⊙ s − (v̄ · s) s
            let t1 = g.mul(bar, v, o.concat(&sv), sv, o.concat(&sv));
            let u = g.mul(bar, v, o.concat(&sv), sv, o);
            let t2 = g.mul(u, v, o, sv, o.concat(&sv));
            let c = g.sub(t1, t2);
            res.push((x, c));
        }
    }
    res
}

/// The identity on `f`'s shape: `δ[o₁,s₁]·δ[o₂,s₂]…` with output axes first.
pub(crate) fn identity_seed(g: &mut Graph, f: Id) -> Id {
    let shape = g.shape(f).to_vec();
    let p = shape.len();
    if p == 0 {
        return g.constant(1.0);
    }
    let mut t = g.delta(shape[0]);
    let mut labels = vec![0u8, p as u8];
    for (k, &d) in shape.iter().enumerate().skip(1) {
        let dk = g.delta(d);
        let mut out = labels.clone();
        out.extend([k as u8, (p + k) as u8]);
        t = g.mul(
            t,
            dk,
            Labels::from_slice(&labels),
            Labels::from_slice(&[k as u8, (p + k) as u8]),
            Labels::from_slice(&out),
        );
        labels = out;
    }
    let natural: Vec<u8> = (0..2 * p as u8).collect();
    g.reindex(t, Labels::from_slice(&labels), Labels::from_slice(&natural))
}

/// `bar ⊙ d` for an adjoint `bar` with `p` output axes in front of `d`'s
/// (the chain rule through an elementwise function whose derivative is `d`).
fn times_pointwise(g: &mut Graph, bar: Id, d: Id, p: usize) -> Id {
    let (o, sd) = (Labels::range(0, p), Labels::range(p as u8, g.order(d)));
    g.mul(bar, d, o.concat(&sd), sd, o.concat(&sd))
}

/// `(x, e, u)` when `v` is `log(x)`, `x = 1 + e` (either order) and `e = exp(u)`, `u` of
/// `x`'s shape.
fn softplus_of(g: &Graph, v: Id) -> Option<(Id, Id, Id)> {
    let Node::Map(Func::Log, x) = *g.node(v) else {
        return None;
    };
    let Node::Add(ts) = g.node(x) else { return None };
    let [a, b] = ts[..] else { return None };
    let one = |t: Id| matches!(g.node(t), Node::Const(c) | Node::Fill(c, _) if c.get() == 1.0);
    let e = match (one(a), one(b)) {
        (true, false) => b,
        (false, true) => a,
        _ => return None,
    };
    match *g.node(e) {
        Node::Map(Func::Exp, u) if g.shape(u) == g.shape(x) => Some((x, e, u)),
        _ => None,
    }
}

/// f'(x) as a node of x's shape; `v` is the node `f(x)` itself (reused where the
/// derivative is written in terms of the value).
fn func_derivative(g: &mut Graph, f: Func, x: Id, v: Id) -> Id {
    let shape = g.shape(x).to_vec();
    match f {
        Func::Sin => g.map(Func::Cos, x),
        Func::Cos => {
            let s = g.map(Func::Sin, x);
            g.neg(s)
        }
        Func::Tan => {
            let c = g.map(Func::Cos, x);
            g.pow(c, -2.0)
        }
        Func::Asin | Func::Acos => {
            let ones = g.ones(shape);
            let x2 = g.pow(x, 2.0);
            let d = g.sub(ones, x2);
            let r = g.pow(d, -0.5);
            if f == Func::Acos {
                g.neg(r)
            } else {
                r
            }
        }
        Func::Atan => {
            let ones = g.ones(shape);
            let x2 = g.pow(x, 2.0);
            let d = g.add(&[ones, x2]);
            g.pow(d, -1.0)
        }
        Func::Exp => v,
        Func::Log => g.pow(x, -1.0),
        Func::Abs => g.map(Func::Sign, x),
        Func::Sign | Func::Step => g.zeros(shape),
        Func::Tanh => {
            let ones = g.ones(shape);
            let v2 = g.pow(v, 2.0);
            g.sub(ones, v2)
        }
        Func::Sigmoid => {
            let ones = g.ones(shape);
            let one_minus = g.sub(ones, v);
            g.hadamard(v, one_minus)
        }
        Func::Softplus => g.map(Func::Sigmoid, x),
        Func::Relu => g.map(Func::Step, x),
    }
}
