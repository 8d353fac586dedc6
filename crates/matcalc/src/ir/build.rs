//! Smart constructors: every node is built through these, which apply local
//! simplification rules and canonicalize (operand order, label numbering), then
//! intern. Children are already in normal form, so one pass is enough: building
//! is linear in the number of nodes built.
//!
//! Rules (each is one `match` arm or one `if` below):
//! - constants fold; `0·x = 0`, `x + 0 = x`, `1·x = x`, `x^1 = x`, `x^0 = 1`
//! - scalar factors float to the top of products; like terms in sums combine
//!   (`2x − x = x`, `x'y + y'x = 2x'y` because both are the same node)
//! - transposes are index permutations: absorbed into products, pushed through
//!   sums and elementwise functions down to the leaves; `(A')' = A`; `S' = S` for
//!   symmetric S
//! - Kronecker deltas contract away (`A·I = A`, `δᵢⱼ bⱼ = bᵢ`)
//! - products of ones are sums; equal bases in Hadamard products add exponents
//! - `log(exp x) = x`, `exp(log x) = x`, `log det X = logdet X`, `inv(inv X) = X`

use super::{Dim, Func, Graph, Id, Labels, Node, Shape, F64};

/// Canonical labels of a product: output labels 0.., then the rest by first
/// appearance in the operands.
fn canonical_labels(s1: Labels, s2: Labels, s3: Labels) -> (Labels, Labels, Labels) {
    let mut map = [u8::MAX; 256];
    let mut next = 0u8;
    for &l in s3.iter().chain(s1.iter()).chain(s2.iter()) {
        if map[l as usize] == u8::MAX {
            map[l as usize] = next;
            next += 1;
        }
    }
    let f = |l: u8| map[l as usize];
    (s1.map(f), s2.map(f), s3.map(f))
}

/// Rename an inner product's labels into an outer namespace: the inner output
/// axes `t3[k]` take the outer labels `outer[k]`; labels summed inside the inner
/// product get fresh labels above every label in `taken`.
fn lift_labels(t1: Labels, t2: Labels, t3: Labels, outer: &[u8], taken: &[&[u8]]) -> (Labels, Labels) {
    let mut fresh = taken.iter().flat_map(|l| l.iter()).copied().max().unwrap_or(0) + 1;
    let mut map = [u8::MAX; 256];
    for (k, &l) in t3.iter().enumerate() {
        map[l as usize] = outer[k];
    }
    for &l in t1.iter().chain(t2.iter()) {
        if map[l as usize] == u8::MAX {
            map[l as usize] = fresh;
            fresh += 1;
        }
    }
    let f = |l: u8| map[l as usize];
    (t1.map(f), t2.map(f))
}

impl Graph {
    // ---------------------------------------------------------------- leaves

    /// A scalar constant.
    pub fn constant(&mut self, v: f64) -> Id {
        self.intern(Node::Const(F64::new(v)), Vec::new())
    }

    /// A tensor filled with `v` (a scalar constant when the shape is empty).
    pub fn fill(&mut self, v: f64, shape: Shape) -> Id {
        if shape.is_empty() {
            return self.constant(v);
        }
        self.intern(Node::Fill(F64::new(v), shape.clone()), shape)
    }

    /// Zeros of a shape.
    pub fn zeros(&mut self, shape: Shape) -> Id {
        self.fill(0.0, shape)
    }

    /// Ones of a shape.
    pub fn ones(&mut self, shape: Shape) -> Id {
        self.fill(1.0, shape)
    }

    /// The identity matrix of size `d`.
    pub fn delta(&mut self, d: Dim) -> Id {
        self.intern(Node::Delta(d), vec![d, d])
    }

    /// A literal tensor (row-major). All-equal literals become fills.
    pub fn literal(&mut self, data: &[f64], shape: Shape) -> Id {
        if let Some(&first) = data.first() {
            if data.iter().all(|&v| v == first) {
                return self.fill(first, shape);
            }
        }
        let bits: Box<[F64]> = data.iter().map(|&v| F64::new(v)).collect();
        self.intern(Node::Literal(bits, shape.clone()), shape)
    }

    // ------------------------------------------------------------- queries

    /// The value of a scalar constant.
    pub fn const_value(&self, id: Id) -> Option<f64> {
        match self.node(id) {
            Node::Const(c) => Some(c.get()),
            _ => None,
        }
    }

    /// The value shared by every entry, for constants and fills.
    pub fn uniform_value(&self, id: Id) -> Option<f64> {
        match self.node(id) {
            Node::Const(c) | Node::Fill(c, _) => Some(c.get()),
            _ => None,
        }
    }

    /// Whether the node is identically zero.
    pub fn is_zero(&self, id: Id) -> bool {
        self.uniform_value(id) == Some(0.0)
    }

    /// Split `c·x` into `(c, x)`; anything else is `(1, id)`. Constants split
    /// into their value and the unit constant (or ones).
    pub fn split_scale(&mut self, id: Id) -> (f64, Id) {
        match self.node(id).clone() {
            Node::Const(c) if c.get() != 1.0 => (c.get(), self.constant(1.0)),
            Node::Fill(c, sh) if c.get() != 1.0 => (c.get(), self.ones(sh)),
            Node::Mul(k, x, s1, s2, s3) if s1.is_empty() && s2 == s3 => match self.const_value(k) {
                Some(c) => (c, x),
                None => (1.0, id),
            },
            _ => (1.0, id),
        }
    }

    /// Split `x^p` into `(x, p)`; anything else is `(id, 1)`.
    fn split_pow(&self, id: Id) -> (Id, f64) {
        match self.node(id) {
            Node::Pow(x, p) => (*x, p.get()),
            _ => (id, 1.0),
        }
    }

    /// If the node is a pure permutation `Reindex`, its operand and labels.
    fn as_permutation(&self, id: Id) -> Option<(Id, Labels, Labels)> {
        match self.node(id) {
            Node::Reindex(x, ix, ox) if ix.len() == ox.len() => Some((*x, *ix, *ox)),
            _ => None,
        }
    }

    /// Whether a node is a symmetric matrix by construction.
    pub fn is_symmetric(&self, id: Id) -> bool {
        if self.order(id) != 2 {
            return false;
        }
        match self.node(id) {
            Node::Delta(_) => true,
            Node::Var(v) => self.vars[*v as usize].symmetric,
            Node::Fill(_, sh) => sh[0] == sh[1],
            Node::Inv(x) | Node::Map(_, x) | Node::Pow(x, _) => self.is_symmetric(*x),
            Node::Add(ts) => ts.iter().all(|&t| self.is_symmetric(t)),
            Node::Mul(k, x, s1, _, _) if s1.is_empty() && self.order(*k) == 0 => self.is_symmetric(*x),
            _ => false,
        }
    }

    // ------------------------------------------------------------- scaling

    /// `c·x`.
    pub fn scale(&mut self, c: f64, x: Id) -> Id {
        if c == 1.0 {
            return x;
        }
        if c == 0.0 {
            let sh = self.shape(x).to_vec();
            return self.zeros(sh);
        }
        match self.node(x).clone() {
            Node::Const(d) => return self.constant(c * d.get()),
            Node::Fill(d, sh) => return self.fill(c * d.get(), sh),
            _ => {}
        }
        let (d, y) = self.split_scale(x);
        if d != 1.0 {
            return self.scale(c * d, y);
        }
        let k = self.constant(c);
        let l = Labels::range(0, self.order(x));
        let sh = self.shape(x).to_vec();
        self.intern(Node::Mul(k, x, Labels::EMPTY, l, l), sh)
    }

    /// `-x`.
    pub fn neg(&mut self, x: Id) -> Id {
        self.scale(-1.0, x)
    }

    // ------------------------------------------------------------- sums

    /// The sum of terms of one shape (at least one term).
    pub fn add(&mut self, terms: &[Id]) -> Id {
        assert!(!terms.is_empty(), "add needs a term");
        let shape = self.shape(terms[0]).to_vec();
        let mut flat = Vec::with_capacity(terms.len());
        let mut stack: Vec<Id> = terms.iter().rev().copied().collect();
        while let Some(t) = stack.pop() {
            match self.node(t) {
                Node::Add(ts) => stack.extend(ts.iter().rev().copied()),
                _ => flat.push(t),
            }
        }
        // Combine like terms: c1·x + c2·x = (c1 + c2)·x.
        let mut bases: Vec<(Id, f64)> = Vec::new();
        let mut index = rustc_hash::FxHashMap::default();
        for t in flat {
            if self.is_zero(t) {
                continue;
            }
            let (c, b) = self.split_scale(t);
            match index.get(&b) {
                Some(&i) => {
                    let e: &mut (Id, f64) = &mut bases[i];
                    e.1 += c;
                }
                None => {
                    index.insert(b, bases.len());
                    bases.push((b, c));
                }
            }
        }
        bases.retain(|&(_, c)| c != 0.0);
        match bases.len() {
            0 => return self.zeros(shape),
            1 => return self.scale(bases[0].1, bases[0].0),
            _ => {}
        }
        if let Some(r) = self.factor_common(&bases) {
            return r;
        }
        // A common factor moves out: 2a − 2b = 2(a − b), −a − b = −(a + b).
        let m = bases[0].1.abs();
        if bases.iter().all(|&(_, c)| c.abs() == m) {
            let common = if bases.iter().all(|&(_, c)| c < 0.0) { -m } else { m };
            if common != 1.0 {
                let inner: Vec<Id> = bases.iter().map(|&(b, c)| self.scale(c / common, b)).collect();
                let s = self.add_raw(inner, shape);
                return self.scale(common, s);
            }
        }
        let scaled: Vec<Id> = bases.iter().map(|&(b, c)| self.scale(c, b)).collect();
        self.add_raw(scaled, shape)
    }

    /// `A·x + B·x = (A + B)·x`: terms that are products sharing one operand (with
    /// the same index roles) are combined into one product.
    fn factor_common(&mut self, bases: &[(Id, f64)]) -> Option<Id> {
        type Key = (Id, Labels, Labels, Labels, Vec<super::Dim>);
        let mut groups: rustc_hash::FxHashMap<Key, Vec<(usize, Id, Labels)>> = rustc_hash::FxHashMap::default();
        let mut first: Option<Key> = None;
        for (k, &(t, _)) in bases.iter().enumerate() {
            let Node::Mul(x, y, s1, s2, s3) = self.node(t).clone() else {
                continue;
            };
            for (shared, ls, other, lo) in [(y, s2, x, s1), (x, s1, y, s2)] {
                if self.uniform_value(shared).is_some() || self.const_value(other).is_some() {
                    continue;
                }
                let mut sorted = lo.to_vec();
                sorted.sort();
                // The other operands must also agree in shape, axis by axis.
                let dims = sorted.iter().map(|l| self.shape(other)[lo.pos(*l).unwrap()]).collect();
                let key = (shared, ls, s3, Labels::from_slice(&sorted), dims);
                let g = groups.entry(key.clone()).or_default();
                if !g.iter().any(|e| e.0 == k) {
                    g.push((k, other, lo));
                }
                if g.len() == 2 && first.is_none() {
                    first = Some(key);
                }
            }
        }
        let key = first?;
        let group = groups.remove(&key)?;
        let (shared, ls, s3, _, _) = key;
        let l1 = group[0].2;
        let others: Vec<Id> = group
            .iter()
            .map(|&(k, o, lo)| {
                let r = self.reindex(o, lo, l1);
                self.scale(bases[k].1, r)
            })
            .collect();
        let sum = self.add(&others);
        let combined = self.mul(sum, shared, l1, ls, s3);
        let mut rest: Vec<Id> = bases
            .iter()
            .enumerate()
            .filter(|(k, _)| !group.iter().any(|e| e.0 == *k))
            .map(|(_, &(b, c))| self.scale(c, b))
            .collect();
        rest.push(combined);
        Some(self.add(&rest))
    }

    fn add_raw(&mut self, mut terms: Vec<Id>, shape: Shape) -> Id {
        terms.sort();
        self.intern(Node::Add(terms.into_boxed_slice()), shape)
    }

    /// `a − b`.
    pub fn sub(&mut self, a: Id, b: Id) -> Id {
        let nb = self.neg(b);
        self.add(&[a, nb])
    }

    // ------------------------------------------------------------- products

    fn out_shape(&self, a: Id, b: Id, s1: &[u8], s2: &[u8], s3: &[u8]) -> Shape {
        s3.iter()
            .map(|&l| match s1.iter().position(|&x| x == l) {
                Some(p) => self.shape(a)[p],
                None => self.shape(b)[s2.iter().position(|&x| x == l).expect("output label not in operands")],
            })
            .collect()
    }

    /// The general product `out[s3] = Σ a[s1]·b[s2]` over labels not in `s3`.
    pub fn mul(&mut self, a: Id, b: Id, s1: Labels, s2: Labels, s3: Labels) -> Id {
        debug_assert_eq!(s1.len(), self.order(a), "{:?} {s1:?}", self.node(a));
        debug_assert_eq!(s2.len(), self.order(b), "{:?} {s2:?}", self.node(b));
        debug_assert!(s1.iter().enumerate().all(|(i, l)| !s1[..i].contains(l)));
        debug_assert!(s2.iter().enumerate().all(|(i, l)| !s2[..i].contains(l)));
        debug_assert!(s3.iter().all(|l| s1.has(*l) || s2.has(*l)));
        debug_assert!(s1.iter().enumerate().all(|(i, l)| match s2.pos(*l) {
            Some(j) => self.shape(a)[i] == self.shape(b)[j],
            None => true,
        }));
        let shape = self.out_shape(a, b, &s1, &s2, &s3);
        if self.is_zero(a) || self.is_zero(b) {
            return self.zeros(shape);
        }
        // Scalar factors float up.
        let (ca, a) = self.split_scale(a);
        let (cb, b) = self.split_scale(b);
        if ca * cb != 1.0 {
            let inner = self.mul(a, b, s1, s2, s3);
            return self.scale(ca * cb, inner);
        }
        // A scalar times a summed tensor: sum the tensor first, s·Σ t = Σ (s·t).
        for (x, y, sx, sy) in [(a, b, s1, s2), (b, a, s2, s1)] {
            if sx.is_empty() && sy.iter().any(|l| !s3.has(*l)) {
                let r = self.reindex(y, sy, s3);
                return self.mul(x, r, Labels::EMPTY, s3, s3);
            }
        }
        // Fills multiply entrywise into a fill when nothing is summed.
        if let (Some(va), Some(vb)) = (self.uniform_value(a), self.uniform_value(b)) {
            if s1.iter().chain(s2.iter()).all(|l| s3.has(*l)) {
                return self.fill(va * vb, shape);
            }
        }
        // Units and ones.
        if self.const_value(a) == Some(1.0) {
            return self.reindex(b, s2, s3);
        }
        if self.const_value(b) == Some(1.0) {
            return self.reindex(a, s1, s3);
        }
        if self.uniform_value(a) == Some(1.0) && s1.iter().all(|l| s2.has(*l)) {
            return self.reindex(b, s2, s3);
        }
        if self.uniform_value(b) == Some(1.0) && s2.iter().all(|l| s1.has(*l)) {
            return self.reindex(a, s1, s3);
        }
        // A broadcast scalar (s·𝟏) multiplied into a tensor that has all its axes
        // is a scaling: x ⊙ (s𝟏) = s x.
        if let Some(r) = self.unbroadcast(a, b, s1, s2, s3) {
            return r;
        }
        if let Some(r) = self.unbroadcast(b, a, s2, s1, s3) {
            return r;
        }
        // Scalar-valued factors float to the top of products, like constants:
        // A (e x) = e (A x); canonical placement lets sums factor them out.
        if let Some(r) = self.float_scalar(a, b, s1, s2, s3) {
            return r;
        }
        if let Some(r) = self.float_scalar(b, a, s2, s1, s3) {
            return r;
        }
        // Contract early: (p ⊗ q)·b where q's summed axes all meet b becomes
        // p·(q·b), lowering the order of the intermediate ((x yᵀ) y = x (yᵀ y)).
        if let Some(r) = self.contract_early(a, b, s1, s2, s3) {
            return r;
        }
        if let Some(r) = self.contract_early(b, a, s2, s1, s3) {
            return r;
        }
        // δ ⊙ δ = δ: a delta met again on the same two axes changes nothing.
        if let Some(r) = self.idempotent_delta(a, b, s1, s2, s3) {
            return r;
        }
        if let Some(r) = self.idempotent_delta(b, a, s2, s1, s3) {
            return r;
        }
        // Kronecker deltas contract away.
        if let Some(r) = self.eliminate_delta(a, b, s1, s2, s3) {
            return r;
        }
        if let Some(r) = self.eliminate_delta(b, a, s2, s1, s3) {
            return r;
        }
        if let Some(r) = self.reassociate_delta(a, b, s1, s2, s3) {
            return r;
        }
        if let Some(r) = self.reassociate_delta(b, a, s2, s1, s3) {
            return r;
        }
        if let Some(r) = self.merge_scalings(a, b, s1, s2, s3) {
            return r;
        }
        if let Some(r) = self.merge_scalings(b, a, s2, s1, s3) {
            return r;
        }
        // Transposes are absorbed into the product's labels.
        if let Some((x, ix, ox)) = self.as_permutation(a) {
            let s1x = ix.map(|l| s1[ox.pos(l).unwrap()]);
            return self.mul(x, b, s1x, s2, s3);
        }
        if let Some((y, iy, oy)) = self.as_permutation(b) {
            let s2y = iy.map(|l| s2[oy.pos(l).unwrap()]);
            return self.mul(a, y, s1, s2y, s3);
        }
        // Hadamard products of equal bases add exponents: x .* x = x.^2,
        // s .* y ./ s = y, s'(y ./ s) = sum(y).
        if let Some(r) = self.merge_powers(a, b, s1, s2, s3) {
            return r;
        }
        self.intern_mul(a, b, s1, s2, s3, shape)
    }

    fn intern_mul(&mut self, a: Id, b: Id, s1: Labels, s2: Labels, s3: Labels, shape: Shape) -> Id {
        let (a, b, s1, s2) = if a > b { (b, a, s2, s1) } else { (a, b, s1, s2) };
        // A symmetric operand reads the same either way round: pick the
        // orientation whose canonical labels are smallest, so S[i,j] and S[j,i]
        // give one node.
        let swap = |l: Labels| Labels::from_slice(&[l[1], l[0]]);
        // Every variant is expressed in the original label space, then canonicalized.
        let mut variants = vec![(s1, s2)];
        if self.is_symmetric(a) {
            variants.push((swap(s1), s2));
        }
        if self.is_symmetric(b) {
            let n = variants.len();
            for k in 0..n {
                let (v1, v2) = variants[k];
                variants.push((v1, swap(v2)));
            }
        }
        if a == b {
            let n = variants.len();
            for k in 0..n {
                let (v1, v2) = variants[k];
                variants.push((v2, v1));
            }
        }
        let best = variants
            .into_iter()
            .map(|(v1, v2)| canonical_labels(v1, v2, s3))
            .min()
            .expect("one variant");
        let (s1, s2, s3) = best;
        self.intern(Node::Mul(a, b, s1, s2, s3), shape)
    }

    /// `δ[p,q]·b[s2]` where one delta label is contracted into `b` and the other
    /// does not occur in `b`: rename it.
    fn eliminate_delta(&mut self, d: Id, b: Id, sd: Labels, s2: Labels, s3: Labels) -> Option<Id> {
        if !matches!(self.node(d), Node::Delta(_)) {
            return None;
        }
        let (p, q) = (sd[0], sd[1]);
        for (x, y) in [(p, q), (q, p)] {
            // Σ_x δ[x,y] = 1[y]: a delta axis summed on its own leaves ones.
            if !s2.has(x) && !s3.has(x) {
                let Node::Delta(n) = *self.node(d) else { unreachable!() };
                let ones = self.ones(vec![n]);
                return Some(self.mul(ones, b, Labels::from_slice(&[y]), s2, s3));
            }
            if s2.has(x) && !s3.has(x) && !s2.has(y) {
                let s2r = s2.map(|l| if l == x { y } else { l });
                return Some(self.reindex(b, s2r, s3));
            }
        }
        None
    }

    /// `(δ·v)·b` where the delta would contract away against `b`: compute `v·b`
    /// first, then let the delta rename an index.
    fn reassociate_delta(&mut self, a: Id, b: Id, s1: Labels, s2: Labels, s3: Labels) -> Option<Id> {
        let Node::Mul(x, y, t1, t2, t3) = self.node(a).clone() else {
            return None;
        };
        // Either inner operand may be the delta (both, for δ⊗δ).
        for (d, v, td, tv) in [(x, y, t1, t2), (y, x, t2, t1)] {
            if matches!(self.node(d), Node::Delta(_)) {
                if let Some(r) = self.reassociate_delta_with(d, v, td, tv, t3, b, s1, s2, s3) {
                    return Some(r);
                }
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn reassociate_delta_with(
        &mut self,
        d: Id,
        v: Id,
        td: Labels,
        tv: Labels,
        t3: Labels,
        b: Id,
        s1: Labels,
        s2: Labels,
        s3: Labels,
    ) -> Option<Id> {
        // Put the inner product's labels into the outer namespace: t3[k] ↦ s1[k];
        // inner-only (contracted) labels get fresh ones.
        let (dd, vv) = lift_labels(td, tv, t3, &s1, &[&s1, &s2, &s3]);
        let _ = d;
        // δ[x,y] with y summed: rename y to x in both other factors, provided
        // neither factor carries both (that would be a diagonal, not a rename).
        let (p, q) = (dd[0], dd[1]);
        for (x, y) in [(p, q), (q, p)] {
            let appears = vv.has(y) || s2.has(y);
            let both = (vv.has(x) && vv.has(y)) || (s2.has(x) && s2.has(y));
            if s3.has(y) || !appears || both {
                continue;
            }
            let r = |l: u8| if l == y { x } else { l };
            return Some(self.mul(v, b, vv.map(r), s2.map(r), s3));
        }
        None
    }

    fn idempotent_delta(&mut self, a: Id, b: Id, s1: Labels, s2: Labels, s3: Labels) -> Option<Id> {
        if !matches!(self.node(b), Node::Delta(_)) {
            return None;
        }
        let Node::Mul(x, y, t1, t2, t3) = self.node(a).clone() else {
            return None;
        };
        let (l1, l2) = lift_labels(t1, t2, t3, &s1, &[&s1, &s2, &s3]);
        let same = |l: &Labels| l.len() == 2 && l.has(s2[0]) && l.has(s2[1]);
        let hit = (matches!(self.node(x), Node::Delta(_)) && same(&l1))
            || (matches!(self.node(y), Node::Delta(_)) && same(&l2));
        if hit {
            Some(self.reindex(a, s1, s3))
        } else {
            None
        }
    }

    fn contract_early(&mut self, a: Id, b: Id, s1: Labels, s2: Labels, s3: Labels) -> Option<Id> {
        let Node::Mul(x, y, t1, t2, t3) = self.node(a).clone() else {
            return None;
        };
        if t1.is_empty() || t2.is_empty() {
            return None;
        }
        let (l1, l2) = lift_labels(t1, t2, t3, &s1, &[&s1, &s2, &s3]);
        for (p, q, lp, lq) in [(x, y, l1, l2), (y, x, l2, l1)] {
            // q must be independent of p (an outer-product factor) …
            if lq.iter().any(|l| lp.has(*l)) {
                continue;
            }
            // … and share a summed axis with b.
            if !lq.iter().any(|l| s2.has(*l) && !s3.has(*l)) {
                continue;
            }
            let mut w: Vec<u8> = Vec::new();
            for &l in lq.iter().chain(s2.iter()) {
                if (s3.has(l) || lp.has(l)) && !w.contains(&l) {
                    w.push(l);
                }
            }
            if w.len() >= t3.len() {
                continue;
            }
            let wl = Labels::from_slice(&w);
            let qb = self.mul(q, b, lq, s2, wl);
            return Some(self.mul(p, qb, lp, wl, s3));
        }
        None
    }

    fn unbroadcast(&mut self, a: Id, b: Id, s1: Labels, s2: Labels, s3: Labels) -> Option<Id> {
        let Node::Mul(s, ones, t1, t2, t3) = self.node(a).clone() else {
            return None;
        };
        // Only a true broadcast: the ones keep all their axes (t2 == t3).
        if !t1.is_empty() || t2 != t3 || self.uniform_value(ones) != Some(1.0) || !s1.iter().all(|l| s2.has(*l)) {
            return None;
        }
        Some(self.mul(s, b, Labels::EMPTY, s2, s3))
    }

    /// `a·(s·y)` with `s` a (non-constant) scalar and `a` not a scalar: `s·(a·y)`.
    fn float_scalar(&mut self, a: Id, b: Id, s1: Labels, s2: Labels, s3: Labels) -> Option<Id> {
        if s1.is_empty() {
            return None;
        }
        let Node::Mul(x, y, t1, t2, t3) = self.node(b).clone() else {
            return None;
        };
        let (s, v, tv) = if t1.is_empty() && self.order(x) == 0 && t2 == t3 {
            (x, y, t2)
        } else if t2.is_empty() && self.order(y) == 0 && t1 == t3 {
            (y, x, t1)
        } else {
            return None;
        };
        if self.const_value(s).is_some() {
            return None;
        }
        let _ = tv;
        let inner = self.mul(a, v, s1, s2, s3);
        let l = self.natural(inner);
        Some(self.mul(s, inner, Labels::EMPTY, l, l))
    }

    /// Products where both operands carry the same labels are elementwise products
    /// (summed over the labels not in the output). Flatten nested elementwise
    /// factors, add the exponents of equal bases, and rebuild if anything merged.
    fn merge_powers(&mut self, a: Id, b: Id, s1: Labels, s2: Labels, s3: Labels) -> Option<Id> {
        if s1.len() != s2.len() || !s1.iter().all(|l| s2.has(*l)) {
            return None;
        }
        let mut factors: Vec<(Id, Labels)> = Vec::new();
        let mut stack = vec![(a, s1), (b, s2)];
        while let Some((x, lx)) = stack.pop() {
            if let Node::Mul(p, q, t1, t2, t3) = self.node(x).clone() {
                let pure = t3.len() == t1.len() && t3.len() == t2.len() && t1.iter().all(|l| t2.has(*l) && t3.has(*l));
                if pure && self.const_value(p).is_none() {
                    let f = |l: u8| lx[t3.pos(l).unwrap()];
                    stack.push((q, t2.map(f)));
                    stack.push((p, t1.map(f)));
                    continue;
                }
            }
            factors.push((x, lx));
        }
        let mut merged: Vec<(Id, Labels, f64)> = Vec::new();
        for &(x, lx) in &factors {
            let (base, p) = self.split_pow(x);
            match merged.iter_mut().find(|(b, l, _)| *b == base && *l == lx) {
                Some(e) => e.2 += p,
                None => merged.push((base, lx, p)),
            }
        }
        if merged.len() == factors.len() {
            return None;
        }
        merged.retain(|e| e.2 != 0.0);
        let mut acc: Option<Id> = None;
        for (base, lx, p) in merged {
            let t = self.pow(base, p);
            let t = self.reindex(t, lx, s1);
            acc = Some(match acc {
                None => t,
                Some(acc) => self.mul(acc, t, s1, s1, s1),
            });
        }
        let acc = match acc {
            Some(x) => x,
            None => {
                let sh = self.shape(a).to_vec();
                self.ones(sh)
            }
        };
        Some(self.reindex(acc, s1, s3))
    }

    /// `v ⊙ (w ⊙ M)`-shaped products: `a[s1]·(x[..]·y[..])` where every label of
    /// `a` is a label of `x` that survives the inner product. Multiply `a` and `x`
    /// first, so `Diag(v) Diag(w) M` becomes `Diag(v ⊙ w) M`.
    fn merge_scalings(&mut self, a: Id, b: Id, s1: Labels, s2: Labels, s3: Labels) -> Option<Id> {
        if s1.is_empty() {
            return None;
        }
        let Node::Mul(x, y, t1, t2, t3) = self.node(b).clone() else {
            return None;
        };
        let (l1, l2) = lift_labels(t1, t2, t3, &s2, &[&s1, &s2, &s3]);
        for (p, q, tp, lp, lq) in [(x, y, t1, l1, l2), (y, x, t2, l2, l1)] {
            // p's labels must all be visible outside the inner product and cover a's.
            if !tp.iter().all(|l| t3.has(*l)) || !s1.iter().all(|l| lp.has(*l)) || self.order(p) == 0 {
                continue;
            }
            // Only merge like with like: a and p of the same order (both scalings).
            // … and the other inner operand is the thing being scaled (bigger), so
            // chains of equals (a ⊙ (p ⊙ q)) are left alone and this terminates.
            // (Ones are always worth absorbing: y ⊙ 𝟏 = y.)
            let ones = self.uniform_value(p) == Some(1.0);
            if lp.len() != s1.len() || (lq.len() <= s1.len() && !ones) {
                continue;
            }
            let ap = self.mul(a, p, s1, lp, lp);
            return Some(self.mul(ap, q, lp, lq, s3));
        }
        None
    }

    /// Permute and/or sum axes: `out[o] = Σ a[i]` over labels of `i` not in `o`.
    pub fn reindex(&mut self, a: Id, ia: Labels, out: Labels) -> Id {
        debug_assert_eq!(ia.len(), self.order(a));
        debug_assert!(out.iter().all(|l| ia.has(*l)));
        if ia == out {
            return a;
        }
        let shape: Shape = out.iter().map(|&l| self.shape(a)[ia.pos(l).unwrap()]).collect();
        if self.is_zero(a) {
            return self.zeros(shape);
        }
        let (c, a) = self.split_scale(a);
        if c != 1.0 {
            let r = self.reindex(a, ia, out);
            return self.scale(c, r);
        }
        let perm = ia.len() == out.len();
        let node = self.node(a).clone();
        match node {
            Node::Fill(v, _) if perm => return self.fill(v.get(), shape),
            Node::Delta(n) if perm => return self.delta(n),
            Node::Delta(n) if out.len() == 1 => return self.ones(vec![n]),
            _ if perm && self.is_symmetric(a) => return a,
            Node::Reindex(x, ix, ox) => {
                let mut fresh = ia.iter().copied().max().unwrap_or(0) + 1;
                let v: Vec<u8> = ix
                    .iter()
                    .map(|&l| match ox.pos(l) {
                        Some(k) => ia[k],
                        None => {
                            fresh += 1;
                            fresh - 1
                        }
                    })
                    .collect();
                let ixx = Labels::from_slice(&v);
                return self.reindex(x, ixx, out);
            }
            Node::Mul(x, y, t1, t2, t3) => {
                let (l1, l2) = lift_labels(t1, t2, t3, &ia, &[&ia]);
                return self.mul(x, y, l1, l2, out);
            }
            Node::Add(ts) if perm => {
                let ts: Vec<Id> = ts.iter().map(|&t| self.reindex(t, ia, out)).collect();
                return self.add(&ts);
            }
            Node::Map(f, x) if perm => {
                let r = self.reindex(x, ia, out);
                return self.map(f, r);
            }
            Node::Pow(x, p) if perm => {
                let r = self.reindex(x, ia, out);
                return self.pow(r, p.get());
            }
            _ => {}
        }
        // Canonical labels: output 0.., then summed ones.
        let mut map = [u8::MAX; 256];
        let mut next = 0u8;
        for &l in out.iter().chain(ia.iter()) {
            if map[l as usize] == u8::MAX {
                map[l as usize] = next;
                next += 1;
            }
        }
        let f = |l: u8| map[l as usize];
        self.intern(Node::Reindex(a, ia.map(f), out.map(f)), shape)
    }

    // ------------------------------------------------------------- functions

    /// An elementwise function.
    pub fn map(&mut self, f: Func, x: Id) -> Id {
        match self.node(x).clone() {
            Node::Const(c) => return self.constant(f.apply(c.get())),
            Node::Fill(c, sh) => return self.fill(f.apply(c.get()), sh),
            Node::Map(Func::Exp, y) if f == Func::Log => return y,
            Node::Map(Func::Log, y) if f == Func::Exp => return y,
            Node::Map(Func::Abs, _) if f == Func::Abs => return x,
            Node::Det(y) if f == Func::Log => return self.logdet(y),
            _ => {}
        }
        let sh = self.shape(x).to_vec();
        self.intern(Node::Map(f, x), sh)
    }

    /// An elementwise power with a constant exponent.
    pub fn pow(&mut self, x: Id, p: f64) -> Id {
        if p == 1.0 {
            return x;
        }
        let sh = self.shape(x).to_vec();
        if p == 0.0 {
            return self.ones(sh);
        }
        match self.node(x).clone() {
            Node::Const(c) => return self.constant(c.get().powf(p)),
            Node::Fill(c, sh) => return self.fill(c.get().powf(p), sh),
            Node::Pow(y, q) if p.fract() == 0.0 => return self.pow(y, q.get() * p),
            _ => {}
        }
        let (c, y) = self.split_scale(x);
        if c != 1.0 && (c > 0.0 || p.fract() == 0.0) {
            let r = self.pow(y, p);
            return self.scale(c.powf(p), r);
        }
        self.intern(Node::Pow(x, F64::new(p)), sh)
    }

    /// Matrix inverse.
    pub fn inv(&mut self, x: Id) -> Id {
        match self.node(x).clone() {
            Node::Inv(y) => return y,
            Node::Delta(_) => return x,
            _ => {}
        }
        if let Some((y, iy, oy)) = self.as_permutation(x) {
            let r = self.inv(y);
            return self.reindex(r, iy, oy);
        }
        let (c, y) = self.split_scale(x);
        if c != 1.0 {
            let r = self.inv(y);
            return self.scale(1.0 / c, r);
        }
        let sh = self.shape(x).to_vec();
        self.intern(Node::Inv(x), sh)
    }

    /// Determinant.
    pub fn det(&mut self, x: Id) -> Id {
        if let Some((y, ..)) = self.as_permutation(x) {
            return self.det(y);
        }
        match self.node(x).clone() {
            Node::Delta(_) => return self.constant(1.0),
            Node::Inv(y) => {
                let d = self.det(y);
                return self.pow(d, -1.0);
            }
            _ => {}
        }
        self.intern(Node::Det(x), Vec::new())
    }

    /// log |det|.
    pub fn logdet(&mut self, x: Id) -> Id {
        if let Some((y, ..)) = self.as_permutation(x) {
            return self.logdet(y);
        }
        match self.node(x).clone() {
            Node::Delta(_) => return self.constant(0.0),
            Node::Inv(y) => {
                let d = self.logdet(y);
                return self.neg(d);
            }
            _ => {}
        }
        self.intern(Node::LogDet(x), Vec::new())
    }

    /// log Σ exp over all entries.
    pub fn logsumexp(&mut self, x: Id) -> Id {
        self.intern(Node::LogSumExp(x), Vec::new())
    }

    /// Softmax of a vector.
    pub fn softmax(&mut self, x: Id) -> Id {
        let sh = self.shape(x).to_vec();
        self.intern(Node::Softmax(x), sh)
    }

    // ------------------------------------------------------------- matrix-level helpers

    /// Labels `0..order(x)`.
    pub fn natural(&self, x: Id) -> Labels {
        Labels::range(0, self.order(x))
    }

    /// Matrix/vector product by orders: M·M, M·v, v·M (i.e. Mᵀv), v·v (inner).
    pub fn matmul(&mut self, a: Id, b: Id) -> Id {
        let l = Labels::from_slice;
        match (self.order(a), self.order(b)) {
            (2, 2) => self.mul(a, b, l(&[0, 2]), l(&[2, 1]), l(&[0, 1])),
            (2, 1) => self.mul(a, b, l(&[0, 1]), l(&[1]), l(&[0])),
            (1, 2) => self.mul(a, b, l(&[1]), l(&[1, 0]), l(&[0])),
            (1, 1) => self.mul(a, b, l(&[0]), l(&[0]), Labels::EMPTY),
            (0, _) | (_, 0) => self.times(a, b),
            _ => panic!("matmul of orders {} and {}", self.order(a), self.order(b)),
        }
    }

    /// Product with a scalar on either side (or elementwise product of equal shapes).
    pub fn times(&mut self, a: Id, b: Id) -> Id {
        let (la, lb) = (self.natural(a), self.natural(b));
        let out = if la.len() >= lb.len() { la } else { lb };
        self.mul(a, b, la, lb, out)
    }

    /// Outer product of two vectors.
    pub fn outer(&mut self, a: Id, b: Id) -> Id {
        let l = Labels::from_slice;
        self.mul(a, b, l(&[0]), l(&[1]), l(&[0, 1]))
    }

    /// Elementwise product of equal shapes (a scalar side broadcasts).
    pub fn hadamard(&mut self, a: Id, b: Id) -> Id {
        self.times(a, b)
    }

    /// Transpose of a matrix.
    pub fn transpose(&mut self, a: Id) -> Id {
        let l = Labels::from_slice;
        self.reindex(a, l(&[0, 1]), l(&[1, 0]))
    }

    /// Sum of all entries.
    pub fn sum_all(&mut self, a: Id) -> Id {
        let l = self.natural(a);
        self.reindex(a, l, Labels::EMPTY)
    }

    /// Trace of a square matrix.
    pub fn trace(&mut self, a: Id) -> Id {
        let n = self.shape(a)[0];
        let d = self.delta(n);
        let l = Labels::from_slice;
        self.mul(a, d, l(&[0, 1]), l(&[0, 1]), Labels::EMPTY)
    }

    /// The diagonal matrix of a vector.
    pub fn diag_matrix(&mut self, v: Id) -> Id {
        let n = self.shape(v)[0];
        let d = self.delta(n);
        let l = Labels::from_slice;
        self.mul(v, d, l(&[0]), l(&[0, 1]), l(&[0, 1]))
    }

    /// The diagonal of a square matrix, as a vector.
    pub fn diag_vector(&mut self, a: Id) -> Id {
        let n = self.shape(a)[0];
        let d = self.delta(n);
        let l = Labels::from_slice;
        self.mul(a, d, l(&[0, 1]), l(&[0, 1]), l(&[0]))
    }

    /// A scalar broadcast to a shape.
    pub fn broadcast(&mut self, s: Id, shape: Shape) -> Id {
        if shape.is_empty() {
            return s;
        }
        let ones = self.ones(shape);
        self.times(s, ones)
    }
}
