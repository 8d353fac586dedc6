//! Reassociating chains of matrix products, at the sizes of one evaluation.
//!
//! The IR keeps the grouping the derivation produced: a Hessian built by
//! differentiating a gradient reads right to left,
//! `Diag(h)·(W2ᵀ·(Diag(d)·(W2·(Diag(h)·W1))))`. Before lowering, each maximal
//! chain of matrix products and Diag scalings (inner products used once) is
//! flattened into its factors, and the cheapest grouping is chosen by the
//! matrix-chain recurrence, counting multiply-adds at the actual sizes. A
//! split whose two sides mirror each other around a Diag, `Xᵀ·Diag(v)·X`, is
//! counted at half cost and built as that product of one node `X`, which the
//! lowering computes as a symmetric rank-k update (lower half, mirrored).
//! The headline Hessian's chain then costs `n·r²/2 + r²·n` instead of `2·n·r·n`.
//!
//! Scalings are free here (they fuse into loops); only contractions count.
//! Nodes that carry the batch axis are left alone (a batch changes the costs).

use crate::eval::interp::DimValues;
use crate::ir::{Dim, Graph, Id, Labels, Node};
use rustc_hash::{FxHashMap, FxHashSet};

/// The longest chain (in matrices) that is regrouped.
const MAX_CHAIN: usize = 40;

/// A factor of a flattened chain, in the chain's orientation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    /// A matrix node, transposed when `t`.
    Mat { id: Id, t: bool },
    /// `Diag(v)` for a vector node `v`.
    Diag(Id),
}

impl Item {
    fn transposed(self) -> Item {
        match self {
            Item::Mat { id, t } => Item::Mat { id, t: !t },
            d => d,
        }
    }
}

/// What a node is, seen as a factor of a chain.
enum Kind {
    /// A matrix product: `(left, transposed?)`, `(right, transposed?)`.
    Product((Id, bool), (Id, bool)),
    /// `Diag(v)·M` (`row`) or `M·Diag(v)`, with `M` transposed when `t`.
    Scaling {
        v: Id,
        m: Id,
        t: bool,
        row: bool,
    },
    Other,
}

struct Chains<'g> {
    g: &'g Graph,
    dims: &'g DimValues,
    uses: FxHashMap<Id, usize>,
    roots: FxHashSet<Id>,
    batched: FxHashSet<Id>,
}

/// The rewritten graph and where each node went, when some chain is worth
/// regrouping (at least 10% fewer multiply-adds); `None` otherwise.
pub(crate) fn reassociate(
    g: &Graph,
    roots: &[Id],
    dims: &DimValues,
    batch_var: Option<u32>,
) -> Option<(Graph, FxHashMap<Id, Id>)> {
    let order = g.topo_order(roots);
    let mut uses: FxHashMap<Id, usize> = FxHashMap::default();
    let mut batched = FxHashSet::default();
    for &id in &order {
        g.node(id).for_each_child(|c| *uses.entry(c).or_default() += 1);
        let dep = match g.node(id) {
            Node::Var(v) => Some(*v) == batch_var,
            n => {
                let mut any = false;
                n.for_each_child(|c| any |= batched.contains(&c));
                any
            }
        };
        if dep {
            batched.insert(id);
        }
    }
    let ch = Chains {
        g,
        dims,
        uses,
        roots: roots.iter().copied().collect(),
        batched,
    };
    // Chains from their heads (parents before children); a node inside a
    // chain is not a head.
    let mut inside = FxHashSet::default();
    let mut plans: FxHashMap<Id, (Vec<Item>, Vec<Vec<usize>>)> = FxHashMap::default();
    for &id in order.iter().rev() {
        if inside.contains(&id) || ch.batched.contains(&id) || !matches!(ch.kind(id), Kind::Product(..)) {
            continue;
        }
        let mut absorbed = Vec::new();
        let mut now = 0.0;
        let Some(items) = ch.flatten(id, false, None, &mut absorbed, &mut now) else {
            continue;
        };
        // Shared nodes may still head chains of their own.
        inside.extend(absorbed.into_iter().filter(|a| ch.uses.get(a) == Some(&1)));
        let Some(best) = ch.best(&items) else {
            continue;
        };
        if best.0 < 0.9 * now {
            plans.insert(id, (items, best.1));
        }
    }
    if plans.is_empty() {
        return None;
    }
    let mut out = g.clone();
    let mut map: FxHashMap<Id, Id> = FxHashMap::default();
    for &id in &order {
        let new = match plans.get(&id) {
            Some((items, split)) => {
                let items: Vec<Item> = items
                    .iter()
                    .map(|&it| match it {
                        Item::Mat { id, t } => Item::Mat { id: map[&id], t },
                        Item::Diag(v) => Item::Diag(map[&v]),
                    })
                    .collect();
                let built = build_chain(&mut out, &items, split);
                if out.shape(built) != g.shape(id) {
                    return None;
                }
                built
            }
            None => with_children(&mut out, g, id, &map),
        };
        map.insert(id, new);
    }
    Some((out, map))
}

/// `id`'s node with its children replaced by their images (the node itself
/// when none changed).
fn with_children(out: &mut Graph, g: &Graph, id: Id, map: &FxHashMap<Id, Id>) -> Id {
    let node = g.node(id);
    let mut changed = false;
    node.for_each_child(|c| changed |= map[&c] != c);
    if !changed {
        return id;
    }
    let m = |c: &Id| map[c];
    let new = match node {
        Node::Add(ts) => {
            let mut ts: Vec<Id> = ts.iter().map(m).collect();
            ts.sort_unstable();
            Node::Add(ts.into())
        }
        Node::Mul(a, b, s1, s2, s3) => Node::Mul(m(a), m(b), *s1, *s2, *s3),
        Node::Reindex(a, i, o) => Node::Reindex(m(a), *i, *o),
        Node::Map(f, a) => Node::Map(*f, m(a)),
        Node::Pow(a, p) => Node::Pow(m(a), *p),
        Node::Inv(a) => Node::Inv(m(a)),
        Node::Det(a) => Node::Det(m(a)),
        Node::LogDet(a) => Node::LogDet(m(a)),
        Node::LogSumExp(a) => Node::LogSumExp(m(a)),
        Node::Softmax(a) => Node::Softmax(m(a)),
        leaf => leaf.clone(),
    };
    out.intern(new, g.shape(id).to_vec())
}

impl Chains<'_> {
    fn size(&self, d: Dim) -> Option<f64> {
        match d {
            Dim::Fixed(n) => Some(n as f64),
            Dim::Sym(s) => self.dims.get(s as usize).copied().flatten().map(|n| n as f64),
        }
    }

    /// Rows and columns of a matrix item; a vector is a column (`t`: a row).
    fn extents(&self, id: Id, t: bool) -> Option<(f64, f64)> {
        let s = self.g.shape(id);
        let (r, c) = match s.len() {
            1 => (self.size(s[0])?, 1.0),
            2 => (self.size(s[0])?, self.size(s[1])?),
            _ => return None,
        };
        Some(if t { (c, r) } else { (r, c) })
    }

    fn kind(&self, id: Id) -> Kind {
        let Node::Mul(a, b, s1, s2, s3) = self.g.node(id) else {
            return Kind::Other;
        };
        // A matrix times a vector (as a column: vᵀM is Mᵀv), or a dot product
        // (a row times a column).
        if s3.len() <= 1 && s1.len() + s2.len() == 2 + s3.len() {
            for (m, sm, v, sv) in [(*a, s1, *b, s2), (*b, s2, *a, s1)] {
                if sv.len() != 1 || s3.contains(&sv[0]) || !sm.contains(&sv[0]) {
                    continue;
                }
                if s3.is_empty() && sm.len() == 1 {
                    return Kind::Product((m, true), (v, false));
                }
                if s3.len() == 1 && sm.len() == 2 && sm.contains(&s3[0]) && s3[0] != sv[0] {
                    return Kind::Product((m, sm[0] == sv[0]), (v, false));
                }
            }
            return Kind::Other;
        }
        if s3.len() != 2 {
            return Kind::Other;
        }
        let (row, col) = (s3[0], s3[1]);
        if s1.len() == 2 && s2.len() == 2 {
            let common: Vec<u8> = s1.iter().copied().filter(|l| s2.contains(l)).collect();
            if common.len() != 1 || s3.contains(&common[0]) {
                return Kind::Other;
            }
            let k = common[0];
            let (l, sl, r, sr) = if s1.contains(&row) && s2.contains(&col) {
                (*a, s1, *b, s2)
            } else if s2.contains(&row) && s1.contains(&col) {
                (*b, s2, *a, s1)
            } else {
                return Kind::Other;
            };
            if row == col || !sl.contains(&k) || !sr.contains(&k) {
                return Kind::Other;
            }
            return Kind::Product((l, sl[0] == k), (r, sr[0] != k));
        }
        // A Diag scaling: a matrix times a vector along one of its axes.
        for (m, sm, v, sv) in [(*a, s1, *b, s2), (*b, s2, *a, s1)] {
            if sm.len() == 2 && sv.len() == 1 && sm.contains(&row) && sm.contains(&col) && row != col {
                let t = sm[0] != row;
                if sv[0] == row {
                    return Kind::Scaling { v, m, t, row: true };
                }
                if sv[0] == col {
                    return Kind::Scaling { v, m, t, row: false };
                }
            }
        }
        Kind::Other
    }

    /// The factors of `id` read with orientation `t`; `absorbed` collects the
    /// inner nodes, `cost` adds up the multiply-adds of the present grouping.
    /// The factors of `id` read with orientation `t`; `absorbed` collects the
    /// inner nodes, `cost` adds up the multiply-adds of the present grouping,
    /// a node shared with other users counting for its `share` (a product used
    /// twice, as `(A B) x` and `(A B)ᵀ r` in a gradient, is opened by both
    /// chains, each paying half of it; when both regroup it is not computed).
    fn flatten(
        &self,
        id: Id,
        t: bool,
        share: Option<f64>,
        absorbed: &mut Vec<Id>,
        cost: &mut f64,
    ) -> Option<Vec<Item>> {
        let uses = self.uses.get(&id).copied().unwrap_or(1).max(1);
        let inner = !self.roots.contains(&id) && !self.batched.contains(&id);
        let (top, share) = match share {
            None => (true, 1.0),
            Some(s) => (false, s / uses as f64),
        };
        let kind = self.kind(id);
        let open = top || (inner && (uses == 1 || matches!(kind, Kind::Product(..))));
        let mut items = match (open, kind) {
            (true, Kind::Product((l, tl), (r, tr))) => {
                let (m, k) = self.extents(l, tl)?;
                let (_, n) = self.extents(r, tr)?;
                *cost += m * k * n * share;
                let mut v = self.flatten(l, tl, Some(share), absorbed, cost)?;
                v.extend(self.flatten(r, tr, Some(share), absorbed, cost)?);
                v
            }
            (true, Kind::Scaling { v, m, t: tm, row }) => {
                let inner = self.flatten(m, tm, Some(share), absorbed, cost)?;
                if row {
                    std::iter::once(Item::Diag(v)).chain(inner).collect()
                } else {
                    inner.into_iter().chain(std::iter::once(Item::Diag(v))).collect()
                }
            }
            _ => return Some(vec![Item::Mat { id, t }]),
        };
        if !top {
            absorbed.push(id);
        }
        if t {
            items.reverse();
            items.iter_mut().for_each(|it| *it = it.transposed());
        }
        Some(items)
    }

    /// The positions of the matrices among `items`.
    fn mats(items: &[Item]) -> Vec<usize> {
        (0..items.len())
            .filter(|&i| matches!(items[i], Item::Mat { .. }))
            .collect()
    }

    /// Whether the matrices `i..=s` and `s+1..=j` (positions `p`) mirror each
    /// other around exactly one Diag: `Xᵀ·Diag(v)·X`.
    fn mirror(items: &[Item], p: &[usize], i: usize, s: usize, j: usize) -> bool {
        if p[s + 1] != p[s] + 2 || !matches!(items[p[s] + 1], Item::Diag(_)) {
            return false;
        }
        let left = &items[p[i]..=p[s]];
        let right = &items[p[s + 1]..=p[j]];
        left.len() == right.len() && left.iter().zip(right.iter().rev()).all(|(a, b)| *a == b.transposed())
    }

    /// The cheapest grouping's cost and its split table.
    fn best(&self, items: &[Item]) -> Option<(f64, Vec<Vec<usize>>)> {
        let p = Self::mats(items);
        let n = p.len();
        // The recurrence is cubic in the chain's length (times the mirror
        // test): longer chains keep the grouping they have.
        if n > MAX_CHAIN {
            return None;
        }
        let ext: Vec<(f64, f64)> = p
            .iter()
            .map(|&q| match items[q] {
                Item::Mat { id, t } => self.extents(id, t),
                Item::Diag(_) => None,
            })
            .collect::<Option<_>>()?;
        let mut cost = vec![vec![0.0f64; n]; n];
        let mut split = vec![vec![0usize; n]; n];
        for len in 2..=n {
            for i in 0..=n - len {
                let j = i + len - 1;
                let mut best = f64::INFINITY;
                for s in i..j {
                    let mut c = ext[i].0 * ext[s].1 * ext[j].1;
                    if Self::mirror(items, &p, i, s, j) {
                        c *= 0.5;
                    }
                    let c = c + cost[i][s] + cost[s + 1][j];
                    if c < best {
                        best = c;
                        split[i][j] = s;
                    }
                }
                cost[i][j] = best;
            }
        }
        (n >= 3).then(|| (cost[0][n - 1], split))
    }
}

/// Build the chain `items` (orientation as read) with the grouping `split`.
fn build_chain(out: &mut Graph, items: &[Item], split: &[Vec<usize>]) -> Id {
    let p = Chains::mats(items);
    let (id, t) = build(out, items, &p, split, 0, p.len() - 1);
    let mut m = if t && out.order(id) == 2 {
        transpose(out, id)
    } else {
        id
    };
    // Diags before the first and after the last matrix.
    for &it in items[..p[0]].iter().rev() {
        if let Item::Diag(v) = it {
            m = scale(out, v, m, true);
        }
    }
    for &it in &items[p[p.len() - 1] + 1..] {
        if let Item::Diag(v) = it {
            m = scale(out, v, m, false);
        }
    }
    m
}

/// The product of matrices `i..=j` (and the Diags between them), as a
/// node read with orientation `t`.
fn build(out: &mut Graph, items: &[Item], p: &[usize], split: &[Vec<usize>], i: usize, j: usize) -> (Id, bool) {
    if i == j {
        let Item::Mat { id, t } = items[p[i]] else {
            unreachable!("a matrix position")
        };
        return (id, t);
    }
    let s = split[i][j];
    let right = build(out, items, p, split, s + 1, j);
    let left = if Chains::mirror(items, p, i, s, j) {
        (right.0, !right.1)
    } else {
        build(out, items, p, split, i, s)
    };
    // Diags between the two sides scale the right side's rows.
    let mut r = right;
    for &it in items[p[s] + 1..p[s + 1]].iter().rev() {
        if let Item::Diag(v) = it {
            let m = if r.1 && out.order(r.0) == 2 {
                transpose(out, r.0)
            } else {
                r.0
            };
            r = (scale(out, v, m, true), false);
        }
    }
    (matmul(out, left, r), false)
}

/// `L·R` for matrices read with orientations; a vector on the left is a row,
/// on the right a column (the product is then a vector, or a scalar).
fn matmul(out: &mut Graph, (l, tl): (Id, bool), (r, tr): (Id, bool)) -> Id {
    let (a, k, c) = (0u8, 1u8, 2u8);
    let (mut so, mut shape) = (Vec::new(), Vec::new());
    let sl: Vec<u8> = if out.order(l) == 1 {
        vec![k]
    } else {
        so.push(a);
        shape.push(out.shape(l)[usize::from(tl)]);
        if tl {
            vec![k, a]
        } else {
            vec![a, k]
        }
    };
    let sr: Vec<u8> = if out.order(r) == 1 {
        vec![k]
    } else {
        so.push(c);
        shape.push(out.shape(r)[usize::from(!tr)]);
        if tr {
            vec![c, k]
        } else {
            vec![k, c]
        }
    };
    out.intern(
        Node::Mul(
            l,
            r,
            Labels::from_slice(&sl),
            Labels::from_slice(&sr),
            Labels::from_slice(&so),
        ),
        shape,
    )
}

/// `Diag(v)·M` (`row`) or `M·Diag(v)`; `v ⊙ m` for a vector `m`.
fn scale(out: &mut Graph, v: Id, m: Id, row: bool) -> Id {
    let shape = out.shape(m).to_vec();
    let (lv, lm): (&[u8], &[u8]) = match (out.order(m), row) {
        (1, _) => (&[0], &[0]),
        (_, true) => (&[0], &[0, 1]),
        (_, false) => (&[1], &[0, 1]),
    };
    out.intern(
        Node::Mul(
            v,
            m,
            Labels::from_slice(lv),
            Labels::from_slice(lm),
            Labels::from_slice(lm),
        ),
        shape,
    )
}

/// `Mᵀ`.
fn transpose(out: &mut Graph, m: Id) -> Id {
    let s = out.shape(m);
    let shape = vec![s[1], s[0]];
    out.intern(
        Node::Reindex(m, Labels::from_slice(&[1, 0]), Labels::from_slice(&[0, 1])),
        shape,
    )
}
