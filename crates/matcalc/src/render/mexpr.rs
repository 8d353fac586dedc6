//! Notation recovery: turn index-notation IR nodes back into matrix notation.
//!
//! [`M`] is a small matrix-level expression tree (products, transposes,
//! Hadamard products, functions) built from the IR by recognizing each product's
//! index pattern (`A[i,k]·B[k,j] → A B`, `v[i]·A[i,j] → Diag(v) A`, …). Transposes
//! are pushed to the leaves as the tree is built, scalar factors go to the front.

use crate::ir::{Dim, Func, Graph, Id, Labels, Node};
use rustc_hash::FxHashMap;

/// A matrix-notation expression.
#[derive(Clone, Debug, PartialEq)]
pub enum M {
    /// A variable or a named intermediate.
    Name(String),
    /// A number.
    Num(f64),
    /// The identity matrix of a size.
    Eye(String),
    /// A constant-filled vector (`vector(c, n)`) or matrix (`matrix(c, m, n)`), with its sizes.
    Fill(f64, Vec<String>),
    /// A literal matrix: rows.
    Literal(Vec<Vec<f64>>, usize),
    /// A sum of terms.
    Add(Vec<M>),
    /// A product chain (matrix products and scalings); numbers come first.
    Prod(Vec<M>),
    /// An elementwise product chain.
    Had(Vec<M>),
    /// Elementwise division `a ./ b` (or scalar `a / b`).
    Div(Box<M>, Box<M>),
    /// Transpose of a leaf.
    T(Box<M>),
    /// Elementwise power (scalar power on scalars).
    Pow(Box<M>, f64),
    /// A function application (`sin`, `tr`, `inv`, `diag`, `Diag`, `norm2`, `sum`, …).
    Call(&'static str, Vec<M>),
    /// A scalar-valued factor inside a product (kept grouped: `(x'y) z`, and
    /// its own transpose).
    Scalar(Box<M>),
    /// Index notation, for tensors with no matrix form: the text and the order.
    Index(String),
}

impl M {
    fn is_num(&self) -> bool {
        matches!(self, M::Num(_))
    }

    /// Whether this contains index notation (a tensor with no matrix form).
    pub fn has_index(&self) -> bool {
        match self {
            M::Index(_) => true,
            M::Add(v) | M::Prod(v) | M::Had(v) | M::Call(_, v) => v.iter().any(M::has_index),
            M::Div(a, b) => a.has_index() || b.has_index(),
            M::T(a) | M::Pow(a, _) | M::Scalar(a) => a.has_index(),
            _ => false,
        }
    }

    /// The number of nodes (to bound the size of nested output).
    pub fn size(&self) -> usize {
        1 + match self {
            M::Add(v) | M::Prod(v) | M::Had(v) | M::Call(_, v) => v.iter().map(M::size).sum(),
            M::Div(a, b) => a.size() + b.size(),
            M::T(a) | M::Pow(a, _) | M::Scalar(a) => a.size(),
            _ => 0,
        }
    }
}

/// Negate.
pub fn neg(m: M) -> M {
    scale(-1.0, m)
}

/// `c·m` with the number in front of the product.
pub fn scale(c: f64, m: M) -> M {
    if c == 1.0 {
        return m;
    }
    match m {
        M::Num(d) => M::Num(c * d),
        M::Prod(mut fs) => {
            if let Some(M::Num(d)) = fs.first_mut() {
                *d *= c;
                if *d == 1.0 {
                    fs.remove(0);
                    return if fs.len() == 1 { fs.pop().unwrap() } else { M::Prod(fs) };
                }
                return M::Prod(fs);
            }
            fs.insert(0, M::Num(c));
            M::Prod(fs)
        }
        M::Add(ts) if c == -1.0 => M::Add(ts.into_iter().map(neg).collect()),
        other => M::Prod(vec![M::Num(c), other]),
    }
}

/// A product of two factors, flattening chains and moving numbers to the front.
pub fn prod(a: M, b: M) -> M {
    let mut fs = Vec::new();
    let mut c = 1.0;
    for m in [a, b] {
        match m {
            M::Prod(v) => {
                for f in v {
                    match f {
                        M::Num(d) => c *= d,
                        f => fs.push(f),
                    }
                }
            }
            M::Num(d) => c *= d,
            f => fs.push(f),
        }
    }
    // Scalar factors go to the front: 2 (xᵀy) z, det(X) X⁻ᵀ.
    let (mut scalars, rest): (Vec<M>, Vec<M>) = fs.into_iter().partition(|f| matches!(f, M::Scalar(_)));
    scalars.extend(rest);
    let mut fs = scalars;
    let body = match fs.len() {
        0 => return M::Num(c),
        1 => match fs.pop().unwrap() {
            M::Scalar(x) => *x,
            f => f,
        },
        _ => M::Prod(fs),
    };
    scale(c, body)
}

/// `A X + A Y = A (X + Y)` and `X B + Y B = (X + Y) B`: a factor that every term of a
/// sum begins (or ends) with comes out, and so does a common number, so a symmetric
/// form reads symmetrically: `−2 W1ᵀ (D + H W2ᵀ E W2 H) W1`, `Aᵀ (diag(b) − b bᵀ) A`.
pub fn factor_sides(terms: Vec<M>) -> M {
    if terms.len() < 2 {
        return M::Add(terms);
    }
    let split: Vec<(f64, Vec<M>)> = terms
        .iter()
        .map(|t| match t {
            M::Prod(fs) => match fs.first() {
                Some(M::Num(c)) => (*c, fs[1..].to_vec()),
                _ => (1.0, fs.clone()),
            },
            _ => (1.0, Vec::new()),
        })
        .collect();
    if split.iter().any(|(_, fs)| fs.len() < 2) {
        return M::Add(terms);
    }
    let movable = |m: &M| !matches!(m, M::Num(_) | M::Scalar(_) | M::Index(_));
    let first = split[0].1[0].clone();
    let last = split[0].1[split[0].1.len() - 1].clone();
    let left = movable(&first) && split.iter().all(|(_, fs)| fs[0] == first);
    let right = movable(&last) && split.iter().all(|(_, fs)| fs[fs.len() - 1] == last);
    // Each term must keep a factor of its own that is not a scalar: (M − s) x would
    // read as a broadcast, not M − s I.
    let keeps = |lo: usize, hi: usize| {
        split
            .iter()
            .all(|(_, fs)| fs.len() > lo + hi && fs[lo..fs.len() - hi].iter().any(movable))
    };
    let (left, right) = (left && keeps(1, 0), right && keeps(0, 1));
    let both = left && right && keeps(1, 1);
    let (left, right) = match (left, right) {
        (true, true) if both => (true, true),
        (true, _) => (true, false),
        (_, true) => (false, true),
        _ => return M::Add(terms),
    };
    let c0 = split[0].0;
    let common_c = if split.iter().all(|(c, _)| *c == c0) { c0 } else { 1.0 };
    let mut inner: Vec<M> = split
        .into_iter()
        .map(|(c, fs)| {
            let lo = usize::from(left);
            let hi = fs.len() - usize::from(right);
            let body = fs[lo..hi].iter().cloned().fold(None, |acc: Option<M>, f| match acc {
                None => Some(f),
                Some(a) => Some(prod(a, f)),
            });
            scale(c / common_c, body.expect("each term keeps a factor"))
        })
        .collect();
    inner.sort_by_key(|t| (!matches!(t, M::Num(_)), is_negative(t)));
    let mut out = if left { first } else { M::Num(1.0) };
    out = prod(out, factor_sides(inner));
    if right {
        out = prod(out, last);
    }
    scale(common_c, out)
}

/// A scalar-valued factor for a product.
pub fn scalar(m: M) -> M {
    match m {
        M::Num(_) | M::Scalar(_) => m,
        M::Prod(mut fs) if fs.len() == 2 && fs[0].is_num() => {
            let rest = fs.pop().unwrap();
            prod(fs.pop().unwrap(), scalar(rest))
        }
        m => M::Scalar(Box::new(m)),
    }
}

/// How many transposes a rendering shows (to pick the orientation with fewest).
pub fn count_t(m: &M) -> usize {
    match m {
        M::T(x) => 1 + count_t(x),
        M::Add(v) | M::Prod(v) | M::Had(v) | M::Call(_, v) => v.iter().map(count_t).sum(),
        M::Div(a, b) => count_t(a) + count_t(b),
        M::Pow(a, _) | M::Scalar(a) => count_t(a),
        _ => 0,
    }
}

/// Hadamard product.
pub fn had(a: M, b: M) -> M {
    let (ca, a) = split_num(a);
    let (cb, b) = split_num(b);
    let mut fs = Vec::new();
    for m in [a, b] {
        match m {
            M::Had(v) => fs.extend(v),
            f => fs.push(f),
        }
    }
    // Simple factors (names, function values) first: s ⊙ (W x).
    fs.sort_by_key(|f| !matches!(f, M::Name(_) | M::Call(..) | M::T(_)));
    scale(ca * cb, M::Had(fs))
}

fn split_num(m: M) -> (f64, M) {
    match m {
        M::Prod(mut fs) if fs.first().is_some_and(M::is_num) => {
            let M::Num(c) = fs.remove(0) else { unreachable!() };
            (c, if fs.len() == 1 { fs.pop().unwrap() } else { M::Prod(fs) })
        }
        m => (1.0, m),
    }
}

/// Transpose, pushed down to the leaves: (AB)ᵀ = BᵀAᵀ, (A+B)ᵀ = Aᵀ+Bᵀ, (Aᵀ)ᵀ = A.
/// `order` is the order of `m` (vectors become rows, written `x'`).
pub fn transpose(m: M, order: usize, symmetric: &dyn Fn(&str) -> bool) -> M {
    if order == 0 {
        return m;
    }
    match m {
        M::T(x) => *x,
        M::Num(_) | M::Eye(_) | M::Scalar(_) => m,
        // A filled matrix transposes by swapping its sizes; a filled vector becomes a row.
        M::Fill(c, d) if d.len() == 2 => M::Fill(c, vec![d[1].clone(), d[0].clone()]),
        M::Name(ref n) if order == 2 && symmetric(n) => m,
        M::Call("inv", ref a) if order == 2 && matches!(&a[0], M::Name(n) if symmetric(n)) => m,
        M::Call("diag", _) | M::Call("Diag", _) if order == 2 => m,
        M::Prod(fs) => {
            // In a vector-valued product the last factor is the vector; every
            // other factor is a matrix (or a number).
            let n = fs.len();
            let mut out: Vec<M> = fs
                .into_iter()
                .enumerate()
                .map(|(k, f)| {
                    if f.is_num() {
                        f
                    } else {
                        transpose(f, if k + 1 == n { order } else { 2 }, symmetric)
                    }
                })
                .collect();
            out.reverse();
            if out.last().is_some_and(M::is_num) {
                let c = out.pop().unwrap();
                out.insert(0, c);
            }
            M::Prod(out)
        }
        M::Add(ts) if order == 2 => M::Add(ts.into_iter().map(|t| transpose(t, order, symmetric)).collect()),
        M::Had(fs) if order == 2 => M::Had(fs.into_iter().map(|t| transpose(t, order, symmetric)).collect()),
        M::Div(a, b) if order == 2 => M::Div(
            Box::new(transpose(*a, order, symmetric)),
            Box::new(transpose(*b, order, symmetric)),
        ),
        M::Pow(a, p) if order == 2 => M::Pow(Box::new(transpose(*a, order, symmetric)), p),
        M::Call(f, mut a) if order == 2 && is_elementwise(f) => {
            let x = a.pop().unwrap();
            M::Call(f, vec![transpose(x, order, symmetric)])
        }
        other => M::T(Box::new(other)),
    }
}

/// Whether a function name applies entrywise.
pub fn is_elementwise(f: &str) -> bool {
    Func::from_name(f).is_some() || f == "sqrt"
}

/// Converts IR nodes to matrix notation; `names` maps nodes to names (cascade form).
pub struct Recover<'g> {
    g: &'g Graph,
    /// Nodes rendered as a name.
    pub names: FxHashMap<Id, String>,
    /// Write Hadamard scalings by a named vector as `Diag` matrices (capitalized name).
    pub diag_form: bool,
    /// Diag matrices introduced, as (capital name, vector name).
    pub diag_defs: Vec<(String, String)>,
    /// Nodes of the original function (as opposed to the derivative).
    pub primal: rustc_hash::FxHashSet<Id>,
}

struct View {
    m: M,
    labels: Vec<u8>,
    eye: bool,
    id: Option<Id>,
}

impl<'g> Recover<'g> {
    /// A converter with no names.
    pub fn new(g: &'g Graph) -> Recover<'g> {
        Recover {
            g,
            names: FxHashMap::default(),
            diag_form: false,
            diag_defs: Vec::new(),
            primal: Default::default(),
        }
    }

    fn dim(&self, d: Dim) -> String {
        self.g.dim_name(d)
    }

    fn sym(&self) -> impl Fn(&str) -> bool + '_ {
        // Symmetric variables and Diag matrices are their own transposes.
        move |n: &str| {
            self.g.vars.iter().any(|v| v.name == n && v.symmetric) || self.diag_defs.iter().any(|(c, _)| c == n)
        }
    }

    fn t(&self, m: M, order: usize) -> M {
        transpose(m, order, &self.sym())
    }

    /// Matrix notation for a node (named nodes become their name).
    pub fn convert(&mut self, id: Id) -> M {
        if let Some(n) = self.names.get(&id) {
            return M::Name(n.clone());
        }
        self.convert_def(id)
    }

    /// Matrix notation for a node's own definition (ignoring its own name).
    pub fn convert_def(&mut self, id: Id) -> M {
        let g = self.g;
        if g.order(id) > 2 {
            return M::Index(self.index_notation(id));
        }
        match g.node(id).clone() {
            Node::Var(v) => M::Name(g.vars[v as usize].name.clone()),
            Node::Const(c) => M::Num(c.get()),
            Node::Fill(c, sh) => M::Fill(c.get(), sh.iter().map(|&d| self.dim(d)).collect()),
            Node::Literal(data, sh) => {
                let cols = if sh.len() == 2 {
                    data.len() / self.fixed(sh[0]).max(1)
                } else {
                    1
                };
                let rows: Vec<Vec<f64>> = data
                    .chunks(cols.max(1))
                    .map(|r| r.iter().map(|v| v.get()).collect())
                    .collect();
                M::Literal(rows, sh.len())
            }
            Node::Delta(n) => M::Eye(self.dim(n)),
            Node::Add(ts) => {
                // A broadcast scalar term (s·𝟏) is written as the scalar: A x − b.
                let terms: Vec<M> = ts
                    .iter()
                    .map(|&t| match g.node(t) {
                        Node::Mul(s, _, _, _, _) if is_broadcast(g, t) => self.convert(*s),
                        _ => self.convert(t),
                    })
                    .collect();
                let mut flat = Vec::new();
                for t in terms {
                    match t {
                        M::Add(v) => flat.extend(v),
                        t => flat.push(t),
                    }
                }
                // A constant-filled term is a broadcast number: 1 + x — as long as
                // some term still carries the shape.
                let shaped = ts.iter().any(|&t| !is_broadcast(g, t) && g.uniform_value(t).is_none());
                if shaped {
                    for t in flat.iter_mut() {
                        if let M::Fill(c, _) = t {
                            *t = M::Num(*c);
                        }
                    }
                } else if !flat.iter().any(|t| matches!(t, M::Fill(..))) {
                    let sh: Vec<String> = g.shape(id).iter().map(|&d| self.dim(d)).collect();
                    let first = flat.remove(0);
                    flat.insert(0, prod(scalar(first), M::Fill(1.0, sh)));
                }
                // Numbers first, then positive terms: 1 + x, a − b rather than −b + a.
                flat.sort_by_key(|t| (!matches!(t, M::Num(_)), is_negative(t)));
                // A common factor comes out only when every term has the sum's
                // shape: s A x + (bᵀ A x)𝟏 is not (s A + bᵀ A) x.
                if ts.iter().any(|&t| is_broadcast(g, t)) {
                    M::Add(flat)
                } else {
                    factor_sides(flat)
                }
            }
            Node::Mul(a, b, s1, s2, s3) if a == b && s1 == s2 && s3.is_empty() => {
                // x'x = ‖x‖², A:A = ‖A‖²_F.
                M::Pow(Box::new(M::Call("norm2", vec![self.convert(a)])), 2.0)
            }
            Node::Mul(a, b, s1, s2, s3) => self.product(id, a, b, s1, s2, s3),
            Node::Reindex(a, ia, out) => {
                let x = self.convert(a);
                let order = g.order(a);
                if ia.len() == out.len() {
                    return if order == 2 && ia[0] == out[1] { self.t(x, 2) } else { x };
                }
                if out.is_empty() {
                    // Σ x² = ‖x‖².
                    if let Node::Pow(y, p) = g.node(a) {
                        if p.get() == 2.0 {
                            return M::Pow(Box::new(M::Call("norm2", vec![self.convert(*y)])), 2.0);
                        }
                    }
                    return M::Call("sum", vec![x]);
                }
                // Row or column sums of a matrix: A·1 or Aᵀ·1.
                let n = g.shape(a)[ia.pos(*ia.iter().find(|l| !out.has(**l)).unwrap()).unwrap()];
                let ones = M::Fill(1.0, vec![self.dim(n)]);
                if ia[0] == out[0] {
                    prod(x, ones)
                } else {
                    prod(self.t(x, 2), ones)
                }
            }
            Node::Map(f, a) => M::Call(f.name(), vec![self.convert(a)]),
            Node::Pow(a, p) => {
                let p = p.get();
                if let Node::Mul(x, y, s1, s2, s3) = g.node(a) {
                    if p == 0.5 && x == y && s1 == s2 && s3.is_empty() {
                        return M::Call("norm2", vec![self.convert(*x)]);
                    }
                }
                // sqrt(Σ x²) = ‖x‖, and its powers.
                if let Node::Reindex(y, _, out) = g.node(a) {
                    if let (Node::Pow(z, two), true) = (g.node(*y), out.is_empty()) {
                        if two.get() == 2.0 {
                            let n = M::Call("norm2", vec![self.convert(*z)]);
                            return if p == 0.5 { n } else { M::Pow(Box::new(n), 2.0 * p) };
                        }
                    }
                }
                let x = self.convert(a);
                if p == 0.5 {
                    M::Call("sqrt", vec![x])
                } else {
                    M::Pow(Box::new(x), p)
                }
            }
            Node::Inv(a) => M::Call("inv", vec![self.convert(a)]),
            Node::Det(a) => M::Call("det", vec![self.convert(a)]),
            Node::LogDet(a) => M::Call("logdet", vec![self.convert(a)]),
            Node::LogSumExp(a) => M::Call("logsumexp", vec![self.convert(a)]),
            Node::Softmax(a) => M::Call("softmax", vec![self.convert(a)]),
        }
    }

    fn fixed(&self, d: Dim) -> usize {
        match d {
            Dim::Fixed(n) => n as usize,
            Dim::Sym(_) => 1,
        }
    }

    fn view(&mut self, x: Id, labels: &Labels) -> View {
        let eye = matches!(self.g.node(x), Node::Delta(_));
        View {
            m: self.convert(x),
            labels: labels.to_vec(),
            eye,
            id: Some(x),
        }
    }

    /// Sum a view over labels that occur nowhere else.
    fn presum(&mut self, v: View, keep: &dyn Fn(u8) -> bool) -> View {
        let drop: Vec<u8> = v.labels.iter().copied().filter(|l| !keep(*l)).collect();
        if drop.is_empty() {
            return v;
        }
        let axis = v.labels.iter().position(|l| *l == drop[0]).unwrap();
        let n = match v.id {
            Some(id) => self.dim(self.g.shape(id)[axis]),
            None => "n".to_string(),
        };
        let ones = M::Fill(1.0, vec![n]);
        if drop.len() == v.labels.len() {
            return View {
                m: M::Call("sum", vec![v.m]),
                labels: vec![],
                eye: false,
                id: None,
            };
        }
        // Matrix with one summed axis.
        let (m, kept) = if v.labels[1] == drop[0] {
            (prod(v.m, ones), v.labels[0])
        } else {
            (prod(self.t(v.m, 2), ones), v.labels[1])
        };
        View {
            m,
            labels: vec![kept],
            eye: false,
            id: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn product(&mut self, id: Id, a: Id, b: Id, s1: Labels, s2: Labels, s3: Labels) -> M {
        if self.g.order(a) > 2 || self.g.order(b) > 2 {
            return M::Index(self.index_notation(id));
        }
        let va = self.view(a, &s1);
        let vb = self.view(b, &s2);
        let va = self.presum(va, &|l| s2.has(l) || s3.has(l));
        let vb = self.presum(vb, &|l| s1.has(l) || s3.has(l));
        match self.pattern(va, vb, &s3) {
            Some(m) => m,
            None => M::Index(self.index_notation(id)),
        }
    }

    /// Orient a matrix view so its labels read `[first, second]`.
    fn orient(&self, v: View, first: u8) -> M {
        if v.labels[0] == first {
            v.m
        } else {
            self.t(v.m, 2)
        }
    }

    fn diag_of(&mut self, v: &View) -> M {
        if self.diag_form {
            if let M::Name(n) = &v.m {
                let cap = capitalize(n);
                if !self.diag_defs.iter().any(|(c, _)| *c == cap) {
                    self.diag_defs.push((cap.clone(), n.clone()));
                }
                return M::Name(cap);
            }
        }
        M::Call("diag", vec![v.m.clone()])
    }

    fn pattern(&mut self, a: View, b: View, out: &[u8]) -> Option<M> {
        let (la, lb) = (a.labels.len(), b.labels.len());
        if la == 0 || lb == 0 {
            let (s, v) = if la == 0 { (a, b) } else { (b, a) };
            let body = if v.labels.len() == 2 && v.labels[0] != out[0] {
                self.t(v.m, 2)
            } else {
                v.m
            };
            return Some(prod(scalar(s.m), body));
        }
        if la == 1 && lb == 1 {
            let (i, j) = (a.labels[0], b.labels[0]);
            return Some(if i == j {
                if out.is_empty() {
                    // aᵀb or bᵀa: whichever shows fewer transposes.
                    let ab = prod(self.t(a.m.clone(), 1), b.m.clone());
                    let ba = prod(self.t(b.m, 1), a.m);
                    if count_t(&ba) < count_t(&ab) {
                        ba
                    } else {
                        ab
                    }
                } else if self.diag_form && (matches!(a.m, M::Name(_)) || matches!(b.m, M::Name(_))) {
                    // The scaling becomes the Diag matrix; prefer a factor that came
                    // from differentiation (c in C z) over one of the function (z).
                    let a_first = matches!(a.m, M::Name(_))
                        && (!matches!(b.m, M::Name(_)) || !a.id.is_some_and(|i| self.primal.contains(&i)));
                    if a_first {
                        prod(self.diag_of(&a), b.m)
                    } else {
                        prod(self.diag_of(&b), a.m)
                    }
                } else {
                    had(a.m, b.m)
                }
            } else if out == [i, j] {
                prod(a.m, self.t(b.m, 1))
            } else {
                prod(b.m, self.t(a.m, 1))
            });
        }
        if la == 1 || lb == 1 {
            let (v, m) = if la == 1 { (a, b) } else { (b, a) };
            let t = v.labels[0];
            let (p, q) = (m.labels[0], m.labels[1]);
            if t != p && t != q {
                return None;
            }
            let other = if t == p { q } else { p };
            if !out.contains(&t) {
                // Matrix–vector product.
                return Some(prod(self.orient(m, other), v.m));
            }
            if m.eye {
                return Some(self.diag_of(&v));
            }
            // Diagonal scaling: v[t]·M[t,o] → Diag(v) M, or M Diag(v).
            let d = self.diag_of(&v);
            return Some(if out[0] == t {
                prod(d, self.orient(m, t))
            } else {
                prod(self.orient(m, other), d)
            });
        }
        // Two matrices.
        let shared: Vec<u8> = a.labels.iter().copied().filter(|l| b.labels.contains(l)).collect();
        let contracted: Vec<u8> = shared.iter().copied().filter(|l| !out.contains(l)).collect();
        match (shared.len(), contracted.len()) {
            (1, 1) => {
                let c = contracted[0];
                let fa = *a.labels.iter().find(|&&l| l != c).unwrap();
                let fb = *b.labels.iter().find(|&&l| l != c).unwrap();
                if a.eye {
                    return Some(self.orient(b, fb));
                }
                if b.eye {
                    return Some(self.orient(a, fa));
                }
                let (am, bm) = (self.orient(a, fa), self.orient(b, c));
                Some(if out == [fa, fb] {
                    prod(am, bm)
                } else {
                    prod(self.t(bm, 2), self.t(am, 2))
                })
            }
            (2, 2) => {
                if a.eye || b.eye {
                    let m = if a.eye { b.m } else { a.m };
                    return Some(M::Call("tr", vec![m]));
                }
                // Σ A[i,j] B[i,j] = tr(AᵀB); Σ A[i,j] B[j,i] = tr(AB).
                let bm = self.orient(b, a.labels[1]);
                Some(M::Call("tr", vec![prod(a.m, bm)]))
            }
            (2, 0) => {
                if a.eye || b.eye {
                    let (e, v) = if a.eye { (a, b) } else { (b, a) };
                    let _ = e;
                    let d = M::Call("diag", vec![M::Call("diag_of", vec![v.m])]);
                    return Some(d);
                }
                let bm = self.orient(b, a.labels[0]);
                let h = had(a.m, bm);
                Some(if out[0] == a.labels[0] { h } else { self.t(h, 2) })
            }
            (2, 1) => {
                let h = *shared.iter().find(|l| out.contains(l)).unwrap();
                if a.eye || b.eye {
                    let v = if a.eye { b } else { a };
                    return Some(M::Call("diag_of", vec![v.m]));
                }
                let am = self.orient(a, h);
                let bm = self.orient(b, h);
                Some(M::Call("diag_of", vec![prod(am, self.t(bm, 2))]))
            }
            _ => None,
        }
    }

    /// Index notation for a node: `[i,j,k] = δ[i,j] x[k]`, products of tensors
    /// flattened into one sum of products with named indices.
    pub fn index_notation(&mut self, id: Id) -> String {
        let names: Vec<String> = (0..self.g.order(id)).map(index_name).collect();
        let mut next = names.len();
        let body = self.einsum_text(id, &names, &mut next);
        format!("[{}] = {body}", names.join(","))
    }

    /// The entry of node `id` at indices `names`, as text; `next` numbers fresh
    /// summation indices.
    fn einsum_text(&mut self, id: Id, names: &[String], next: &mut usize) -> String {
        let g = self.g;
        let fresh = |next: &mut usize| {
            *next += 1;
            index_name(*next - 1)
        };
        let node = g.node(id).clone();
        match node {
            Node::Delta(_) => format!("δ[{}]", names.join(",")),
            Node::Const(c) | Node::Fill(c, _) => super::print::number(c.get()),
            Node::Mul(a, b, s1, s2, s3) => {
                if let (Some(c), true) = (g.const_value(a), s1.is_empty()) {
                    let inner = self.einsum_text(b, &relabel(&s2, &s3, names, &[]), next);
                    return match c {
                        -1.0 => format!("−{inner}"),
                        _ => format!("{}·{inner}", super::print::number(c)),
                    };
                }
                let mut extra: Vec<(u8, String)> = Vec::new();
                for &l in s1.iter().chain(s2.iter()) {
                    if !s3.has(l) && !extra.iter().any(|e| e.0 == l) {
                        extra.push((l, fresh(next)));
                    }
                }
                let na = relabel(&s1, &s3, names, &extra);
                let nb = relabel(&s2, &s3, names, &extra);
                let ta = self.einsum_text(a, &na, next);
                let tb = self.einsum_text(b, &nb, next);
                let sum = if extra.is_empty() {
                    String::new()
                } else {
                    format!("Σ_{} ", extra.iter().map(|e| e.1.clone()).collect::<Vec<_>>().join(","))
                };
                format!("{sum}{ta} {tb}")
            }
            Node::Reindex(a, ia, out) => {
                let mut extra: Vec<(u8, String)> = Vec::new();
                for &l in ia.iter() {
                    if !out.has(l) {
                        extra.push((l, fresh(next)));
                    }
                }
                let na = relabel(&ia, &out, names, &extra);
                let ta = self.einsum_text(a, &na, next);
                if extra.is_empty() {
                    ta
                } else {
                    format!(
                        "Σ_{} {ta}",
                        extra.iter().map(|e| e.1.clone()).collect::<Vec<_>>().join(",")
                    )
                }
            }
            Node::Add(ts) => {
                let parts: Vec<String> = ts.iter().map(|&t| self.einsum_text(t, names, next)).collect();
                format!("({})", parts.join(" + "))
            }
            _ if g.order(id) > 2 => {
                // An elementwise function of a tensor.
                match node {
                    Node::Map(f, a) => format!("{}({})", f.name(), self.einsum_text(a, names, next)),
                    Node::Pow(a, p) => format!(
                        "({})^{}",
                        self.einsum_text(a, names, next),
                        super::print::number(p.get())
                    ),
                    _ => format!("{node:?}"),
                }
            }
            _ => {
                let m = self.convert(id);
                let t = super::print::print(&m, &super::print::Style::TEXT);
                let t = if matches!(m, M::Name(_) | M::Call(..) | M::Eye(_)) {
                    t
                } else {
                    format!("({t})")
                };
                if names.is_empty() {
                    t
                } else {
                    format!("{t}[{}]", names.join(","))
                }
            }
        }
    }
}

/// Index names: i, j, k, l, m, … then i1, j1, ….
fn index_name(k: usize) -> String {
    const L: [&str; 12] = ["i", "j", "k", "l", "m", "n", "p", "q", "r", "s", "t", "u"];
    if k < L.len() {
        L[k].to_string()
    } else {
        format!("{}{}", L[k % L.len()], k / L.len())
    }
}

/// Names for an operand's labels: output labels take the caller's names, the
/// others the fresh summation names in `extra`.
fn relabel(ls: &[u8], out: &[u8], names: &[String], extra: &[(u8, String)]) -> Vec<String> {
    ls.iter()
        .map(|l| match out.iter().position(|o| o == l) {
            Some(p) => names[p].clone(),
            None => extra
                .iter()
                .find(|e| e.0 == *l)
                .map(|e| e.1.clone())
                .unwrap_or_else(|| "?".to_string()),
        })
        .collect()
}

/// `s·𝟏`: a scalar spread over a shape.
fn is_broadcast(g: &Graph, t: Id) -> bool {
    match g.node(t) {
        Node::Mul(s, ones, s1, s2, s3) => {
            s1.is_empty() && s2 == s3 && g.order(*s) == 0 && g.uniform_value(*ones) == Some(1.0)
        }
        _ => false,
    }
}

fn is_negative(m: &M) -> bool {
    match m {
        M::Num(c) => *c < 0.0,
        M::Prod(fs) => matches!(fs.first(), Some(M::Num(c)) if *c < 0.0),
        _ => false,
    }
}

/// `s` → `S`, `w1` → `W1`.
pub fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
