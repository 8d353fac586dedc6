//! Lowering the IR (function and derivative roots, at fixed sizes) to a
//! [`Program`]: which nodes are computed where, fused, viewed or multiplied.
//!
//! * Elementwise nodes (`Map`, `Pow`, `Add`, products without a contracted
//!   label, which covers Hadamard products, scalings and Diag-like row or
//!   column scalings) form fused loops: a node used once, by an elementwise
//!   node that reads it entry for entry, is computed inside its user's loop.
//! * Permutations (`Reindex` without a sum: transposes) are views: strides, never copies.
//! * Products with contracted labels become faer matrix products on strided
//!   views; operands are copied into matrix layout only when their axes do not
//!   group that way (or need a sum first).
//! * Sums over axes (`Reindex` with a sum: traces, `sum`) are one strided pass.
//! * With a batch (one variable with an extra leading axis of length B), every
//!   node that depends on that variable gets the batch axis first; products
//!   then carry it as one more label, so matrix–vector products become
//!   matrix–matrix products.

use super::program::{
    Arg, Extra, Fused, Gemm, Leaf, LuKind, Op, Program, Reduce, Src, Step, CHUNK, MAX_AXES, MAX_EXTRA,
};
use super::stream;
use crate::error::{Error, ErrorKind, Result};
use crate::eval::interp::DimValues;
use crate::eval::linalg::LuWork;
use crate::ir::{Dim, Func, Graph, Id, Node};
use rustc_hash::{FxHashMap, FxHashSet};

/// Most ops in one fused loop (each needs a register of [`CHUNK`] entries).
const MAX_FUSED_OPS: usize = 64;

/// A root's value in the program.
#[derive(Clone, Debug)]
pub(crate) struct RootOut {
    pub val: u32,
    pub shape: Vec<usize>,
    pub len: usize,
}

/// A lowered program with what the caller needs to read it.
#[derive(Debug)]
pub(crate) struct Lowered {
    pub program: Program,
    pub roots: Vec<RootOut>,
    /// Warning messages, by site.
    pub warn_sites: Vec<String>,
    /// Site numbers in the interpreter's (topological) order.
    pub warn_order: Vec<usize>,
    /// Variables whose values must be checked for finiteness before the run:
    /// those no step is sure to expose (see [`covered`]).
    pub check_vars: Vec<u32>,
}

/// Variables read by a step that turns any non-finite entry of them into a
/// non-finite, checked result: a checked matrix product (every entry enters a
/// sum of products, and `±∞·0` is NaN), or a fused loop whose first op on the
/// variable propagates NaN and ±∞ (`+`, `·`, sin, cos, tan, abs, log, asin,
/// acos, positive powers). Their values need no separate check: if one is not
/// finite, the run fails and the interpreter reports it.
///
/// The same holds for values of the program: a product's result read that way
/// by a later step needs no check of its own (the batched headline gradient
/// scanned 1.6 M product entries per call for nothing).
fn covered(steps: &[Step]) -> FxHashSet<Src> {
    let mut out = FxHashSet::default();
    for s in steps {
        match s {
            Step::Gemm(g) if g.check && g.m > 0 && g.n > 0 && g.k > 0 => {
                out.insert(g.a);
                out.insert(g.b);
            }
            Step::Fused(f) => {
                for (i, op) in f.ops.iter().enumerate() {
                    let Op::Load(l) = *op else { continue };
                    let v = f.leaves[l as usize].src;
                    let r = Arg::R(i as u16);
                    let propagates = f.ops[i + 1..].iter().zip(&f.checked[i + 1..]).any(|(o, _)| match *o {
                        Op::Add(a, b) | Op::Mul(a, b) => a == r || b == r,
                        Op::Map { f, a, .. } => {
                            a == i as u16
                                && matches!(
                                    f,
                                    Func::Sin | Func::Cos | Func::Tan | Func::Abs | Func::Log | Func::Asin | Func::Acos
                                )
                        }
                        Op::Pow { a, p, .. } => a == i as u16 && p > 0.0,
                        _ => false,
                    });
                    // The op reading the load must itself lead to a checked op:
                    // every node op is checked except the inner terms of a sum,
                    // which feed the (checked) last term.
                    if propagates {
                        out.insert(v);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Where a node's entries are: a source and a stride per axis (batch axis first).
#[derive(Clone, Debug)]
struct Stor {
    src: Src,
    strides: Vec<usize>,
}

#[derive(Clone, Debug)]
struct Info {
    shape: Vec<usize>,
    batched: bool,
}

#[derive(Debug, Default)]
struct ValInfo {
    len: usize,
    permanent: bool,
    init: Option<Vec<f64>>,
}

fn row_major(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![0; shape.len()];
    let mut acc = 1;
    for (d, &e) in shape.iter().enumerate().rev() {
        s[d] = acc;
        acc *= e;
    }
    s
}

fn pos(labels: &[u8], l: u8) -> usize {
    labels.iter().position(|&m| m == l).expect("label present")
}

/// Drop unit axes and merge neighbours contiguous in every stride set.
fn simplify(shape: &[usize], sets: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut sh: Vec<usize> = Vec::new();
    let mut st: Vec<Vec<usize>> = vec![Vec::new(); sets.len()];
    for (d, &e) in shape.iter().enumerate() {
        if e == 1 {
            continue;
        }
        if let Some(&last) = sh.last() {
            if sets.iter().zip(&st).all(|(s, t)| *t.last().unwrap() == s[d] * e) {
                *sh.last_mut().unwrap() = last * e;
                for (s, t) in sets.iter().zip(st.iter_mut()) {
                    *t.last_mut().unwrap() = s[d];
                }
                continue;
            }
        }
        sh.push(e);
        for (s, t) in sets.iter().zip(st.iter_mut()) {
            t.push(s[d]);
        }
    }
    if sh.is_empty() {
        sh.push(1);
        st.iter_mut().for_each(|t| t.push(0));
    }
    (sh, st)
}

struct Lowerer<'g> {
    g: &'g Graph,
    dims: &'g DimValues,
    batch: Option<(u32, usize)>,
    info: FxHashMap<Id, Info>,
    stor: FxHashMap<Id, Stor>,
    uses: FxHashMap<Id, usize>,
    inline: FxHashSet<Id>,
    roots: FxHashSet<Id>,
    primal: FxHashSet<Id>,
    topo_pos: FxHashMap<Id, usize>,
    steps: Vec<Step>,
    vals: Vec<ValInfo>,
    warn_sites: Vec<(usize, String)>,
    lu_sizes: Vec<usize>,
    max_ops: usize,
    bad_constant: bool,
    /// Nodes whose value is a symmetric matrix.
    known_symmetric: FxHashSet<Id>,
}

/// Lower `roots` at the sizes `dims`; `batch` gives the batched variable and B.
/// `symmetric` lists roots known to be symmetric matrices (Hessians by a
/// vector): products computing them (up to a scalar factor) compute only
/// their lower half.
pub(crate) fn lower(
    g: &Graph,
    roots: &[Id],
    symmetric: &[Id],
    primal: Id,
    dims: &DimValues,
    batch: Option<(u32, usize)>,
) -> Result<Lowered> {
    let order = g.topo_order(roots);
    let mut lw = Lowerer {
        g,
        dims,
        batch,
        info: FxHashMap::default(),
        stor: FxHashMap::default(),
        uses: FxHashMap::default(),
        inline: FxHashSet::default(),
        roots: roots.iter().copied().collect(),
        primal: g.topo_order(&[primal]).into_iter().collect(),
        topo_pos: order.iter().enumerate().map(|(i, &id)| (id, i)).collect(),
        steps: Vec::new(),
        vals: Vec::new(),
        warn_sites: Vec::new(),
        lu_sizes: Vec::new(),
        max_ops: 1,
        bad_constant: false,
        known_symmetric: FxHashSet::default(),
    };
    if batch.is_none() {
        for &r in symmetric {
            lw.mark_symmetric(r);
        }
    }
    for &id in &order {
        g.node(id).for_each_child(|c| *lw.uses.entry(c).or_default() += 1);
        let info = lw.info_of(id)?;
        lw.info.insert(id, info);
    }
    for &id in &order {
        let mut kids = Vec::new();
        g.node(id).for_each_child(|c| kids.push(c));
        for c in kids {
            if lw.should_inline(c, id) {
                lw.inline.insert(c);
            }
        }
    }
    // Products consumed only by a trace are computed inside it.
    let absorbed: FxHashSet<Id> = order
        .iter()
        .filter(|&&id| matches!(g.node(id), Node::Mul(..)) && !lw.mul_is_elementwise(id))
        .filter_map(|&id| {
            lw.trace_of_product(id)?;
            let Node::Mul(a, b, ..) = *g.node(id) else { return None };
            Some(if matches!(g.node(b), Node::Delta(_)) { a } else { b })
        })
        .collect();
    for &id in &order {
        if !lw.inline.contains(&id) && !absorbed.contains(&id) {
            lw.lower_node(id);
        }
    }
    let mut outs = Vec::new();
    for &r in roots {
        outs.push(lw.root_out(r));
    }
    Ok(lw.finish(outs))
}

impl<'g> Lowerer<'g> {
    fn size(&self, d: Dim) -> Result<usize> {
        match d {
            Dim::Fixed(n) => Ok(n as usize),
            Dim::Sym(s) => self.dims[s as usize].ok_or_else(|| {
                let name = &self.g.dims[s as usize].name;
                Error::new(ErrorKind::Value, format!("the size of dimension `{name}` is not known")).hint(format!(
                    "give it with --dim {name}=…, or give a value for a variable that has it"
                ))
            }),
        }
    }

    /// `id` is a symmetric matrix; so is `M` in `id = c·M` (c a scalar) and in
    /// `id = Mᵀ`.
    fn mark_symmetric(&mut self, id: Id) {
        let mut cur = id;
        loop {
            if self.g.order(cur) != 2 || !self.known_symmetric.insert(cur) {
                return;
            }
            cur = match self.g.node(cur) {
                Node::Mul(a, b, s1, s2, _) if s1.is_empty() && self.g.order(*b) == 2 && s2.len() == 2 => *b,
                Node::Mul(a, b, s1, s2, _) if s2.is_empty() && self.g.order(*a) == 2 && s1.len() == 2 => *a,
                Node::Reindex(a, ia, o) if ia.len() == o.len() => *a,
                _ => return,
            };
        }
    }

    fn info_of(&self, id: Id) -> Result<Info> {
        let batched = match self.g.node(id) {
            Node::Var(v) => self.batch.is_some_and(|(b, _)| b == *v),
            n => {
                let mut any = false;
                n.for_each_child(|c| any |= self.info[&c].batched);
                any
            }
        };
        let mut shape = Vec::new();
        if batched {
            shape.push(self.batch.map_or(1, |b| b.1));
        }
        for &d in self.g.shape(id) {
            shape.push(self.size(d)?);
        }
        Ok(Info { shape, batched })
    }

    fn batched(&self, id: Id) -> bool {
        self.info[&id].batched
    }

    fn shape(&self, id: Id) -> &[usize] {
        &self.info[&id].shape
    }

    fn new_val(&mut self, len: usize) -> u32 {
        self.vals.push(ValInfo {
            len,
            ..ValInfo::default()
        });
        self.vals.len() as u32 - 1
    }

    fn constant(&mut self, data: Vec<f64>) -> Src {
        if !super::program::all_finite(&data) {
            self.bad_constant = true;
        }
        self.vals.push(ValInfo {
            len: data.len(),
            permanent: true,
            init: Some(data),
        });
        Src::Val(self.vals.len() as u32 - 1)
    }

    /// Labels of a product's operands and output, with a fresh batch label
    /// first where the node is batched.
    fn mul_labels(&self, id: Id) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let Node::Mul(a, b, s1, s2, s3) = self.g.node(id) else {
            unreachable!("mul_labels of a product")
        };
        let bl = (0..=u8::MAX)
            .find(|l| !s1.has(*l) && !s2.has(*l) && !s3.has(*l))
            .expect("a free label");
        let with = |on: bool, s: &[u8]| -> Vec<u8> {
            let mut v = Vec::with_capacity(s.len() + 1);
            if on {
                v.push(bl);
            }
            v.extend_from_slice(s);
            v
        };
        (
            with(self.batched(*a), s1),
            with(self.batched(*b), s2),
            with(self.batched(id), s3),
        )
    }

    /// A product with no label shared by both operands and missing from the output.
    fn mul_is_elementwise(&self, id: Id) -> bool {
        let (la, lb, lo) = self.mul_labels(id);
        !la.iter().any(|l| lb.contains(l) && !lo.contains(l))
    }

    fn is_elementwise(&self, id: Id) -> bool {
        match self.g.node(id) {
            Node::Map(..) | Node::Pow(..) | Node::Add(..) => true,
            Node::Mul(..) => self.mul_is_elementwise(id),
            _ => false,
        }
    }

    /// For an elementwise `parent`, the axis of `child` read along each of the
    /// parent's axes (`None`: broadcast). One entry per occurrence of the child.
    fn access(&self, parent: Id, child: Id, second: bool) -> Vec<Option<usize>> {
        let rank = self.shape(parent).len();
        match self.g.node(parent) {
            Node::Add(_) if self.batched(parent) && !self.batched(child) => {
                (0..rank).map(|t| t.checked_sub(1)).collect()
            }
            Node::Mul(..) => {
                let (la, lb, lo) = self.mul_labels(parent);
                let l = if second { lb } else { la };
                lo.iter().map(|x| l.iter().position(|m| m == x)).collect()
            }
            _ => (0..rank).map(Some).collect(),
        }
    }

    fn should_inline(&self, c: Id, parent: Id) -> bool {
        if self.roots.contains(&c) || self.uses[&c] != 1 || !self.is_elementwise(c) || !self.is_elementwise(parent) {
            return false;
        }
        let second = matches!(self.g.node(parent), Node::Mul(a, ..) if *a != c);
        let acc = self.access(parent, c, second);
        acc.len() == self.shape(c).len() && acc.iter().enumerate().all(|(t, a)| *a == Some(t))
    }

    fn lower_node(&mut self, id: Id) {
        let shape = self.shape(id).to_vec();
        let len: usize = shape.iter().product();
        let stor = match self.g.node(id).clone() {
            Node::Var(v) => Stor {
                src: Src::Var(v),
                strides: row_major(&shape),
            },
            Node::Const(c) => {
                let s = self.constant(vec![c.get()]);
                self.contiguous(s, &shape)
            }
            Node::Fill(c, _) => {
                let s = self.constant(vec![c.get(); len]);
                self.contiguous(s, &shape)
            }
            Node::Literal(data, _) => {
                let s = self.constant(data.iter().map(|v| v.get()).collect());
                self.contiguous(s, &shape)
            }
            Node::Delta(_) => {
                let n = shape[0];
                let mut d = vec![0.0; len];
                (0..n).for_each(|i| d[i * n + i] = 1.0);
                let s = self.constant(d);
                self.contiguous(s, &shape)
            }
            Node::Reindex(a, ia, o) => {
                let bat = self.batched(id);
                let mut la: Vec<u8> = ia.to_vec();
                let mut lo: Vec<u8> = o.to_vec();
                if bat {
                    let bl = (0..=u8::MAX).find(|l| !ia.has(*l)).expect("a free label");
                    la.insert(0, bl);
                    lo.insert(0, bl);
                }
                let sa = self.stor[&a].clone();
                if la.len() == lo.len() {
                    // A permutation: a view.
                    Stor {
                        src: sa.src,
                        strides: lo.iter().map(|&l| sa.strides[pos(&la, l)]).collect(),
                    }
                } else {
                    let out = self.reduce_into(&sa, self.shape(a).to_vec(), &la, &lo, true);
                    self.contiguous(Src::Val(out), &shape)
                }
            }
            Node::Mul(..) if !self.mul_is_elementwise(id) => self.product(id),
            Node::Map(..) | Node::Pow(..) | Node::Add(..) | Node::Mul(..) => self.fused(id),
            Node::Inv(a) | Node::Det(a) | Node::LogDet(a) => {
                let src = self.materialized(a);
                let n = *self.shape(a).last().unwrap_or(&0);
                let batch = if self.batched(id) { shape[0] } else { 1 };
                let kind = match self.g.node(id) {
                    Node::Inv(_) => LuKind::Inv,
                    Node::Det(_) => LuKind::Det,
                    _ => LuKind::LogDet,
                };
                let out = self.new_val(len);
                self.lu_sizes.push(n);
                self.steps.push(Step::Lu {
                    kind,
                    a: src,
                    out,
                    n,
                    batch,
                    work: self.lu_sizes.len() - 1,
                });
                self.contiguous(Src::Val(out), &shape)
            }
            Node::LogSumExp(a) | Node::Softmax(a) => {
                let src = self.materialized(a);
                let batch = if self.batched(id) { self.shape(a)[0] } else { 1 };
                let alen: usize = self.shape(a).iter().product();
                let out = self.new_val(len);
                self.steps.push(Step::Lse {
                    a: src,
                    out,
                    len: alen / batch.max(1),
                    batch,
                    softmax: matches!(self.g.node(id), Node::Softmax(_)),
                });
                self.contiguous(Src::Val(out), &shape)
            }
        };
        self.stor.insert(id, stor);
    }

    fn contiguous(&self, src: Src, shape: &[usize]) -> Stor {
        Stor {
            src,
            strides: row_major(shape),
        }
    }

    /// `a`'s entries contiguous in row-major order (copied when `a` is a view).
    fn materialized(&mut self, a: Id) -> Src {
        let s = self.stor[&a].clone();
        let shape = self.shape(a).to_vec();
        if s.strides == row_major(&shape) || shape.iter().product::<usize>() <= 1 {
            return s.src;
        }
        let l: Vec<u8> = (0..shape.len() as u8).collect();
        Src::Val(self.reduce_into(&s, shape, &l, &l, false))
    }

    /// A new value `out[lo] = Σ a[la]` (row-major in `lo`'s order).
    fn reduce_into(&mut self, a: &Stor, shape: Vec<usize>, la: &[u8], lo: &[u8], check: bool) -> u32 {
        let out_shape: Vec<usize> = lo.iter().map(|&l| shape[pos(la, l)]).collect();
        let os = row_major(&out_shape);
        let out_strides: Vec<usize> = la
            .iter()
            .map(|l| lo.iter().position(|m| m == l).map_or(0, |p| os[p]))
            .collect();
        let sums = la.iter().zip(&shape).any(|(l, &e)| e != 1 && !lo.contains(l));
        let (sh, st) = simplify(&shape, &[a.strides.clone(), out_strides]);
        let out_len: usize = out_shape.iter().product();
        let out = self.new_val(out_len);
        self.steps.push(Step::Reduce(Reduce {
            a: a.src,
            a_off: 0,
            out,
            shape: sh,
            a_strides: st[0].clone(),
            out_strides: st[1].clone(),
            out_len,
            sums,
            acc: false,
            check,
        }));
        out
    }

    fn root_out(&mut self, r: Id) -> RootOut {
        if let Some((_, nb)) = self.batch.filter(|_| !self.batched(r)) {
            // A result that does not depend on the batched variable: the same for every point.
            let s = self.stor[&r].clone();
            let mut shape = vec![nb];
            shape.extend_from_slice(self.shape(r));
            let mut strides = vec![0];
            strides.extend_from_slice(&s.strides);
            let len: usize = shape.iter().product();
            let out = self.new_val(len);
            let (sh, st) = simplify(&shape, &[row_major(&shape), strides]);
            self.steps.push(Step::Fused(Fused {
                out,
                out_off: 0,
                extra: Vec::new(),
                acc: false,
                shape: sh,
                leaves: vec![Leaf {
                    src: s.src,
                    strides: st[1].clone(),
                    off: 0,
                }],
                ops: vec![Op::Load(0)],
                checked: vec![false],
                direct: vec![(u16::MAX, 0)],
            }));
            self.vals[out as usize].permanent = true;
            return RootOut { val: out, shape, len };
        }
        let shape = self.shape(r).to_vec();
        let len = shape.iter().product();
        let s = self.stor[&r].clone();
        let val = match s.src {
            Src::Val(v) if s.strides == row_major(&shape) || len <= 1 => v,
            _ => {
                let l: Vec<u8> = (0..shape.len() as u8).collect();
                self.reduce_into(&s, shape.clone(), &l, &l, false)
            }
        };
        self.vals[val as usize].permanent = true;
        RootOut { val, shape, len }
    }

    // -----------------------------------------------------------------------
    // Fused elementwise loops
    // -----------------------------------------------------------------------

    fn fused(&mut self, id: Id) -> Stor {
        let shape = self.shape(id).to_vec();
        let mut f = Fused {
            out: 0,
            out_off: 0,
            extra: Vec::new(),
            acc: false,
            shape: Vec::new(),
            leaves: Vec::new(),
            ops: Vec::new(),
            checked: Vec::new(),
            direct: Vec::new(),
        };
        self.ew(id, &mut f);
        let len: usize = shape.iter().product();
        let out = self.new_val(len);
        // Write the result in the memory order of its largest input (a
        // transposed operand is then read contiguously; consumers take the
        // result's strides as they come).
        let rank = shape.len();
        let mut perm: Vec<usize> = (0..rank).collect();
        if let Some(big) = f
            .leaves
            .iter()
            .max_by_key(|l| l.strides.iter().zip(&shape).filter(|(&s, &e)| s != 0 && e > 1).count())
        {
            perm.sort_by_key(|&t| std::cmp::Reverse(big.strides[t]));
        }
        let pshape: Vec<usize> = perm.iter().map(|&t| shape[t]).collect();
        let prm = row_major(&pshape);
        let mut out_strides = vec![0; rank];
        for (i, &t) in perm.iter().enumerate() {
            out_strides[t] = prm[i];
        }
        let mut sets = vec![prm];
        sets.extend(f.leaves.iter().map(|l| perm.iter().map(|&t| l.strides[t]).collect()));
        let (sh, st) = simplify(&pshape, &sets);
        for (leaf, s) in f.leaves.iter_mut().zip(&st[1..]) {
            leaf.strides = s.clone();
        }
        f.shape = sh;
        f.out = out;
        f.direct = vec![(u16::MAX, 0); f.ops.len()];
        self.max_ops = self.max_ops.max(f.ops.len());
        self.steps.push(Step::Fused(f));
        Stor {
            src: Src::Val(out),
            strides: out_strides,
        }
    }

    fn push(f: &mut Fused, op: Op, checked: bool) -> u16 {
        f.ops.push(op);
        f.checked.push(checked);
        f.ops.len() as u16 - 1
    }

    fn reg(f: &mut Fused, a: Arg) -> u16 {
        match a {
            Arg::R(r) => r,
            Arg::K(c) => Self::push(f, Op::Fill(c), false),
        }
    }

    fn warn_site(&mut self, id: Id, msg: String) -> u16 {
        self.warn_sites.push((self.topo_pos[&id], msg));
        self.warn_sites.len() as u16 - 1
    }

    /// Ops computing elementwise node `id` in the loop `f`, whose axes are `id`'s.
    fn ew(&mut self, id: Id, f: &mut Fused) -> Arg {
        let primal = self.primal.contains(&id);
        let node = self.g.node(id).clone();
        let r = match node {
            Node::Map(func, a) => {
                let x = self.operand(id, a, false, f);
                let x = Self::reg(f, x);
                let warn = (!primal && matches!(func, Func::Sign | Func::Step)).then(|| {
                    let m = format!(
                        "not differentiable at this point: `{}` has an entry exactly 0; using the subgradient 0 there",
                        crate::eval::interp::short(self.g, a)
                    );
                    self.warn_site(id, m)
                });
                Self::push(f, Op::Map { f: func, a: x, warn }, true)
            }
            Node::Pow(a, p) => {
                let x = self.operand(id, a, false, f);
                let x = Self::reg(f, x);
                let fix = (!primal && p.get() < 0.0).then(|| {
                    let m = format!(
                        "not differentiable at this point: `{}` is 0; using the subgradient convention 0·∞ = 0",
                        crate::eval::interp::short(self.g, a)
                    );
                    self.warn_site(id, m)
                });
                Self::push(f, Op::Pow { a: x, p: p.get(), fix }, true)
            }
            Node::Add(ts) => {
                let mut acc = self.operand(id, ts[0], false, f);
                for (i, &t) in ts[1..].iter().enumerate() {
                    let y = self.operand(id, t, false, f);
                    let last = i + 2 == ts.len();
                    acc = Arg::R(Self::push(f, Op::Add(acc, y), last));
                }
                return acc;
            }
            Node::Mul(a, b, ..) => {
                let x = self.operand(id, a, false, f);
                let y = self.operand(id, b, true, f);
                Self::push(f, Op::Mul(x, y), true)
            }
            _ => unreachable!("not elementwise"),
        };
        Arg::R(r)
    }

    /// An operand of elementwise node `parent` inside loop `f`.
    fn operand(&mut self, parent: Id, c: Id, second: bool, f: &mut Fused) -> Arg {
        if self.inline.contains(&c) && f.ops.len() < MAX_FUSED_OPS {
            return self.ew(c, f);
        }
        if self.inline.contains(&c) {
            // The loop is full: compute the operand in its own loop first.
            self.inline.remove(&c);
            let s = self.fused(c);
            self.stor.insert(c, s);
        }
        let mut acc = self.access(parent, c, second);
        let summed = matches!(self.g.node(parent), Node::Mul(..)) && acc.iter().flatten().count() < self.shape(c).len();
        match self.g.node(c) {
            Node::Const(k) | Node::Fill(k, _) if !summed => return Arg::K(k.get()),
            _ => {}
        }
        let mut stor = self.stor[&c].clone();
        // Labels of the child that the parent sums over: sum them out first.
        if let Node::Mul(..) = self.g.node(parent) {
            let (la, lb, lo) = self.mul_labels(parent);
            let l = if second { lb } else { la };
            if l.iter().any(|x| !lo.contains(x)) {
                let keep: Vec<u8> = l.iter().copied().filter(|x| lo.contains(x)).collect();
                let out = self.reduce_into(&stor, self.shape(c).to_vec(), &l, &keep, false);
                let ks: Vec<usize> = keep.iter().map(|&x| self.shape(c)[pos(&l, x)]).collect();
                stor = self.contiguous(Src::Val(out), &ks);
                acc = lo.iter().map(|x| keep.iter().position(|m| m == x)).collect();
            }
        }
        let strides = acc.iter().map(|a| a.map_or(0, |p| stor.strides[p])).collect();
        f.leaves.push(Leaf {
            src: stor.src,
            strides,
            off: 0,
        });
        Arg::R(Self::push(f, Op::Load(f.leaves.len() as u16 - 1), false))
    }

    // -----------------------------------------------------------------------
    // Products with contracted labels
    // -----------------------------------------------------------------------

    fn product(&mut self, id: Id) -> Stor {
        if let Some((p, q, lp, lq, lo)) = self.trace_of_product(id) {
            return self.product_of(id, p, q, lp, lq, lo, false);
        }
        let Node::Mul(a, b, ..) = *self.g.node(id) else {
            unreachable!("product of a product")
        };
        let (la, lb, lo) = self.mul_labels(id);
        self.product_of(id, a, b, la, lb, lo, true)
    }

    /// A trace (or partial trace) of a product, `Σ δ[x,y]·(P·Q)[…x…y…]`,
    /// as one product of `P` and `Q` with `y` renamed `x`: `tr(A·B)` is then
    /// a dot product instead of a matrix product followed by a trace. The
    /// inner product must be used only here. Returns `P`, `Q` and the labels.
    #[allow(clippy::type_complexity)]
    fn trace_of_product(&self, id: Id) -> Option<(Id, Id, Vec<u8>, Vec<u8>, Vec<u8>)> {
        let Node::Mul(a, b, ..) = *self.g.node(id) else {
            return None;
        };
        let (la, lb, lo) = self.mul_labels(id);
        let (m, lm, ld) = match (self.g.node(a), self.g.node(b)) {
            (_, Node::Delta(_)) => (a, la, lb),
            (Node::Delta(_), _) => (b, lb, la),
            _ => return None,
        };
        let (x, y) = (ld[0], ld[1]);
        if !lm.contains(&x) || !lm.contains(&y) || lo.contains(&x) || lo.contains(&y) {
            return None;
        }
        if !matches!(self.g.node(m), Node::Mul(..)) || self.uses[&m] != 1 || self.roots.contains(&m) {
            return None;
        }
        let Node::Mul(p, q, ..) = *self.g.node(m) else {
            return None;
        };
        if p == q || self.mul_is_elementwise(m) {
            return None;
        }
        let (lp, lq, lmo) = self.mul_labels(m);
        let (mx, my) = (lmo[pos(&lm, x)], lmo[pos(&lm, y)]);
        if (lp.contains(&mx) && lp.contains(&my)) || (lq.contains(&mx) && lq.contains(&my)) {
            return None;
        }
        let rename = |l: &[u8]| -> Vec<u8> { l.iter().map(|&k| if k == my { mx } else { k }).collect() };
        let out: Vec<u8> = lo.iter().map(|&l| lmo[pos(&lm, l)]).collect();
        Some((p, q, rename(&lp), rename(&lq), out))
    }

    #[allow(clippy::too_many_arguments)]
    fn product_of(
        &mut self,
        id: Id,
        a: Id,
        b: Id,
        la: Vec<u8>,
        lb: Vec<u8>,
        lo: Vec<u8>,
        may_be_symmetric: bool,
    ) -> Stor {
        let shape = self.shape(id).to_vec();
        let ext = |l: u8, me: &Self| -> usize {
            match la.iter().position(|&m| m == l) {
                Some(p) => me.shape(a)[p],
                None => me.shape(b)[pos(&lb, l)],
            }
        };
        let batch: Vec<u8> = lo
            .iter()
            .copied()
            .filter(|l| la.contains(l) && lb.contains(l))
            .collect();
        let fa: Vec<u8> = lo
            .iter()
            .copied()
            .filter(|l| la.contains(l) && !lb.contains(l))
            .collect();
        let fb: Vec<u8> = lo
            .iter()
            .copied()
            .filter(|l| lb.contains(l) && !la.contains(l))
            .collect();
        let kk: Vec<u8> = la
            .iter()
            .copied()
            .filter(|l| lb.contains(l) && !lo.contains(l))
            .collect();
        let exts = |g: &[u8], me: &Self| -> Vec<usize> { g.iter().map(|&l| ext(l, me)).collect() };

        // Operand A: [batch, fa, k]; B: [batch, k, fb]; C: [batch, fa, fb].
        let mut sa = self.stor[&a].clone();
        let mut la_now = la.clone();
        let needs_sum_a = la.iter().any(|l| !lb.contains(l) && !lo.contains(l));
        let a_ok = !needs_sum_a
            && merge(&fa, &la_now, &sa.strides, &exts(&fa, self)).is_some()
            && merge(&kk, &la_now, &sa.strides, &exts(&kk, self)).is_some();
        if !a_ok {
            let l: Vec<u8> = [&batch[..], &fa[..], &kk[..]].concat();
            let v = self.reduce_into(&sa, self.shape(a).to_vec(), &la, &l, false);
            sa = self.contiguous(Src::Val(v), &exts(&l, self));
            la_now = l;
        }
        let mut sb = self.stor[&b].clone();
        let mut lb_now = lb.clone();
        let needs_sum_b = lb.iter().any(|l| !la.contains(l) && !lo.contains(l));
        let b_ok = !needs_sum_b
            && merge(&kk, &lb_now, &sb.strides, &exts(&kk, self)).is_some()
            && merge(&fb, &lb_now, &sb.strides, &exts(&fb, self)).is_some();
        if !b_ok {
            let l: Vec<u8> = [&batch[..], &kk[..], &fb[..]].concat();
            let v = self.reduce_into(&sb, self.shape(b).to_vec(), &lb, &l, false);
            sb = self.contiguous(Src::Val(v), &exts(&l, self));
            lb_now = l;
        }
        let out_strides = row_major(&shape);
        let c_ok = merge(&fa, &lo, &out_strides, &exts(&fa, self)).is_some()
            && merge(&fb, &lo, &out_strides, &exts(&fb, self)).is_some();
        let (lc, c_strides) = if c_ok {
            (lo.clone(), out_strides.clone())
        } else {
            let l: Vec<u8> = [&batch[..], &fa[..], &fb[..]].concat();
            let s = row_major(&exts(&l, self));
            (l, s)
        };
        let (m, a_r) = merge(&fa, &la_now, &sa.strides, &exts(&fa, self)).expect("merged");
        let (k, a_c) = merge(&kk, &la_now, &sa.strides, &exts(&kk, self)).expect("merged");
        let (_, b_r) = merge(&kk, &lb_now, &sb.strides, &exts(&kk, self)).expect("merged");
        let (n, b_c) = merge(&fb, &lb_now, &sb.strides, &exts(&fb, self)).expect("merged");
        let (_, c_r) = merge(&fa, &lc, &c_strides, &exts(&fa, self)).expect("merged");
        let (_, c_c) = merge(&fb, &lc, &c_strides, &exts(&fb, self)).expect("merged");
        let bt: Vec<(usize, usize, usize, usize)> = batch
            .iter()
            .map(|&l| {
                (
                    ext(l, self),
                    sa.strides[pos(&la_now, l)],
                    sb.strides[pos(&lb_now, l)],
                    c_strides[pos(&lc, l)],
                )
            })
            .filter(|t| t.0 != 1)
            .collect();
        let len: usize = shape.iter().product();
        let c_val = self.new_val(len);
        let sym = may_be_symmetric
            && (self.symmetric_product(id, a, b, m, n, &fa, &fb, &kk, &batch)
                || (self.known_symmetric.contains(&id) && m == n && m > 1 && batch.is_empty() && fa.len() == 1));
        self.steps.push(Step::Gemm(Gemm {
            a: sa.src,
            b: sb.src,
            out: c_val,
            off: [0; 3],
            m,
            n,
            k,
            a_s: (a_r as isize, a_c as isize),
            b_s: (b_r as isize, b_c as isize),
            c_s: (c_r as isize, c_c as isize),
            batch: bt,
            out_len: len,
            sym,
            acc: false,
            alpha: 1.0,
            check: c_ok,
        }));
        if c_ok {
            return self.contiguous(Src::Val(c_val), &shape);
        }
        let cs = self.contiguous(Src::Val(c_val), &exts(&lc, self));
        let v = self.reduce_into(&cs, exts(&lc, self), &lc, &lo, true);
        self.contiguous(Src::Val(v), &shape)
    }

    /// Whether the product `id` is `Xᵀ·Diag(v)·X` (summed over X's axes
    /// labelled in `kk`): one operand is the node X, the other a product of X
    /// (read the same way along the contracted axes) by a `v` that only has
    /// contracted axes. The result is then a symmetric matrix: only its lower
    /// half is computed (a symmetric rank-k update), then mirrored.
    #[allow(clippy::too_many_arguments)]
    fn symmetric_product(
        &self,
        id: Id,
        a: Id,
        b: Id,
        m: usize,
        n: usize,
        fa: &[u8],
        fb: &[u8],
        kk: &[u8],
        batch: &[u8],
    ) -> bool {
        if m != n || m < 2 || !batch.is_empty() || fa.len() != fb.len() {
            return false;
        }
        let (la, lb, _) = self.mul_labels(id);
        self.scaled_twin(a, &la, b, &lb, fa, fb, kk) || self.scaled_twin(b, &lb, a, &la, fb, fa, kk)
    }

    /// `y` (labels `ly` in the product) is `x` (labels `lx`) times a `v` over
    /// contracted labels only, with `x`'s free axes mapping `fx[i] ↔ fy[i]`.
    #[allow(clippy::too_many_arguments)]
    fn scaled_twin(&self, x: Id, lx: &[u8], y: Id, ly: &[u8], fx: &[u8], fy: &[u8], kk: &[u8]) -> bool {
        let Node::Mul(p, q, s1, s2, s3) = self.g.node(y) else {
            return false;
        };
        if self.batched(y) || !self.mul_is_elementwise(y) {
            return false;
        }
        let (inner, li, v, lv) = if *p == x {
            (*p, s1, *q, s2)
        } else if *q == x {
            (*q, s2, *p, s1)
        } else {
            return false;
        };
        let _ = (inner, v);
        // Y's own label → the product's label for that axis of Y.
        let outer = |l: u8| -> Option<u8> { s3.iter().position(|&m| m == l).map(|p| ly[p]) };
        // v only along contracted axes.
        if !lv.iter().all(|&l| outer(l).is_some_and(|o| kk.contains(&o))) {
            return false;
        }
        // X's axis t: label lx[t] directly, outer(li[t]) through Y.
        let mut pairs = Vec::new();
        for (t, &l) in lx.iter().enumerate() {
            let Some(o) = outer(li[t]) else { return false };
            if kk.contains(&l) != kk.contains(&o) || (kk.contains(&l) && l != o) {
                return false;
            }
            if !kk.contains(&l) {
                pairs.push((l, o));
            }
        }
        // Free axes pair up in order: fx[i] with fy[i].
        pairs.len() == fx.len() && fx.iter().zip(fy).all(|(f, g)| pairs.contains(&(*f, *g)))
    }

    /// A loop that only multiplies a product's result by a constant, the
    /// product's only reader, is dropped: the product writes the loop's
    /// value with the factor (`−2·W1ᵀ·v` is one product, not a product and a
    /// pass over its result).
    fn fold_factors(&mut self) {
        let mut readers: FxHashMap<u32, usize> = FxHashMap::default();
        for s in &self.steps {
            step_reads(s, &mut |src| {
                if let Src::Val(v) = src {
                    *readers.entry(v).or_default() += 1;
                }
            });
        }
        let mut product_of: FxHashMap<u32, usize> = FxHashMap::default();
        let mut drop = vec![false; self.steps.len()];
        for (i, dropped) in drop.iter_mut().enumerate() {
            match &self.steps[i] {
                Step::Gemm(g) => {
                    product_of.insert(g.out, i);
                }
                Step::Fused(f) => {
                    let c = match f.ops[..] {
                        [Op::Load(0), Op::Mul(Arg::K(c), Arg::R(0)) | Op::Mul(Arg::R(0), Arg::K(c))] => c,
                        _ => continue,
                    };
                    let Src::Val(v) = f.leaves[0].src else { continue };
                    let Some(&gi) = product_of.get(&v) else { continue };
                    let len: usize = f.shape.iter().product();
                    let Step::Gemm(g) = &self.steps[gi] else { continue };
                    if readers[&v] != 1
                        || self.vals[v as usize].permanent
                        || f.leaves[0].strides != row_major(&f.shape)
                        || len != g.out_len
                        || !c.is_finite()
                    {
                        continue;
                    }
                    let (out, check) = (f.out, f.checked[1]);
                    let Step::Gemm(g) = &mut self.steps[gi] else { continue };
                    g.out = out;
                    g.alpha *= c;
                    g.check |= check;
                    product_of.remove(&v);
                    product_of.insert(out, gi);
                    *dropped = true;
                }
                _ => {}
            }
        }
        let mut i = 0;
        self.steps.retain(|_| {
            i += 1;
            !drop[i - 1]
        });
    }

    /// Neighbouring fused loops over the same iteration space become one
    /// loop, and a sum of a loop's value over all of it becomes a sum the
    /// loop keeps: `z = sin(b)`, `Σ z²` and `z ⊙ cos(b)` are one pass, with
    /// `z` in a register. A loop reads a value of the loop it joins from the
    /// register when it reads it in the loop's own order (else they stay
    /// apart), and never a sum (complete only after the loop). Values that
    /// no step reads any more are then not stored.
    fn merge_loops(&mut self) {
        let steps = std::mem::take(&mut self.steps);
        let mut out: Vec<Step> = Vec::with_capacity(steps.len());
        for s in steps {
            let joined = match (&s, out.last_mut()) {
                (Step::Fused(f2), _) => join_back(&mut out, f2),
                (Step::Reduce(r), Some(Step::Fused(f1))) => keep_sum(f1, r),
                _ => false,
            };
            if !joined {
                out.push(s);
            }
        }
        // Values read by no step and not results: not stored.
        let mut read: FxHashSet<u32> = FxHashSet::default();
        for s in &out {
            step_reads(s, &mut |src| {
                if let Src::Val(v) = src {
                    read.insert(v);
                }
            });
        }
        for s in &mut out {
            if let Step::Fused(f) = s {
                self.max_ops = self.max_ops.max(f.ops.len());
                f.extra
                    .retain(|e| read.contains(&e.out) || self.vals[e.out as usize].permanent);
            }
        }
        self.steps = out;
    }

    fn finish(mut self, roots: Vec<RootOut>) -> Lowered {
        // Products that read a large matrix twice, around elementwise work
        // on its rows, run block by block (buffers are assigned below, on
        // the final order of the steps).
        self.fold_factors();
        self.merge_loops();
        self.steps = stream::stream_rows(std::mem::take(&mut self.steps));
        let nv = self.vals.len();
        // Step that defines each value, and the last step that reads it.
        let mut def = vec![usize::MAX; nv];
        let mut last = vec![0usize; nv];
        for (i, s) in self.steps.iter().enumerate() {
            for v in s.outs() {
                def[v as usize] = i;
                last[v as usize] = last[v as usize].max(i);
            }
            step_reads(s, &mut |src| {
                if let Src::Val(v) = src {
                    last[v as usize] = last[v as usize].max(i);
                }
            });
        }
        // Permanent values (constants, roots) get their own buffers; the others
        // share buffers by liveness.
        let mut val_buf = vec![u32::MAX; nv];
        let mut sizes: Vec<usize> = Vec::new();
        for (v, info) in self.vals.iter().enumerate() {
            if info.permanent {
                val_buf[v] = sizes.len() as u32;
                sizes.push(info.len);
            }
        }
        let mut free: Vec<u32> = Vec::new();
        let mut dying: Vec<Vec<u32>> = vec![Vec::new(); self.steps.len()];
        for v in 0..nv {
            if !self.vals[v].permanent && def[v] != usize::MAX {
                dying[last[v]].push(v as u32);
            }
        }
        // A value written block by block gets its buffer at its first write.
        let mut placed = vec![false; nv];
        for (i, s) in self.steps.iter().enumerate() {
            for v in s.outs() {
                let v = v as usize;
                if self.vals[v].permanent || std::mem::replace(&mut placed[v], true) {
                    continue;
                }
                let need = self.vals[v].len;
                // Best fit: the smallest free buffer that is large enough, else the largest.
                let pick = free
                    .iter()
                    .enumerate()
                    .filter(|(_, &b)| sizes[b as usize] >= need)
                    .min_by_key(|(_, &b)| sizes[b as usize])
                    .or_else(|| free.iter().enumerate().max_by_key(|(_, &b)| sizes[b as usize]))
                    .map(|(p, _)| p);
                let b = match pick {
                    Some(p) => free.swap_remove(p),
                    None => {
                        sizes.push(0);
                        sizes.len() as u32 - 1
                    }
                };
                sizes[b as usize] = sizes[b as usize].max(need);
                val_buf[v] = b;
            }
            for &d in &dying[i] {
                free.push(val_buf[d as usize]);
            }
        }
        let mut bufs: Vec<Vec<f64>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
        for (v, info) in self.vals.iter().enumerate() {
            if let Some(init) = &info.init {
                bufs[val_buf[v] as usize][..init.len()].copy_from_slice(init);
            }
        }
        let covered = covered(&self.steps);
        let root_vals: FxHashSet<u32> = roots.iter().map(|r| r.val).collect();
        for s in &mut self.steps {
            if let Step::Gemm(g) = s {
                if covered.contains(&Src::Val(g.out)) && !root_vals.contains(&g.out) {
                    g.check = false;
                }
            }
        }
        let mut check_vars: Vec<u32> = self
            .info
            .keys()
            .filter_map(|&id| match self.g.node(id) {
                Node::Var(v) if !covered.contains(&Src::Var(*v)) => Some(*v),
                _ => None,
            })
            .collect();
        check_vars.sort_unstable();
        let mut warn_order: Vec<usize> = (0..self.warn_sites.len()).collect();
        warn_order.sort_by_key(|&i| self.warn_sites[i].0);
        let program = Program {
            steps: self.steps,
            val_buf,
            bufs,
            regs: vec![0.0; self.max_ops * CHUNK],
            lu: self.lu_sizes.iter().map(|&n| LuWork::new(n)).collect(),
            warned: vec![false; self.warn_sites.len()],
            bad_constant: self.bad_constant,
        };
        debug_assert!(program.steps.iter().all(|s| match s {
            Step::Fused(f) => f.shape.len() <= MAX_AXES,
            _ => true,
        }));
        Lowered {
            program,
            roots,
            warn_sites: self.warn_sites.into_iter().map(|(_, m)| m).collect(),
            warn_order,
            check_vars,
        }
    }
}

/// Loop `f2` joined to one of the last few loops of `out` (the last step
/// first), when it reads nothing the steps after that loop write: it then
/// runs before them.
fn join_back(out: &mut [Step], f2: &Fused) -> bool {
    let mut between: FxHashSet<u32> = FxHashSet::default();
    for t in out.iter_mut().rev().take(4) {
        if let Step::Fused(f1) = t {
            let reads_between = f2
                .leaves
                .iter()
                .any(|l| matches!(l.src, Src::Val(v) if between.contains(&v)));
            if !reads_between && join_loops(f1, f2) {
                return true;
            }
        }
        between.extend(t.outs());
    }
    false
}

/// Loop `f2` joined to the loop `f1` before it, when they run over the same
/// space and `f2` reads `f1`'s values in that order (see `merge_loops`).
fn join_loops(f1: &mut Fused, f2: &Fused) -> bool {
    if f1.shape != f2.shape
        || f1.ops.len() + f2.ops.len() > MAX_FUSED_OPS
        || f1.extra.len() + f2.extra.len() + 1 > MAX_EXTRA
    {
        return false;
    }
    let order = row_major(&f1.shape);
    let last1 = f1.ops.len() as u16 - 1;
    // f1's values as f2 may read them: by value, the op computing them.
    let mut mine: Vec<(u32, u16, bool)> = vec![(f1.out, last1, false)];
    mine.extend(f1.extra.iter().map(|e| (e.out, e.op, e.sum)));
    let mut leaf_op: Vec<Option<u16>> = Vec::with_capacity(f2.leaves.len());
    for l in &f2.leaves {
        let found = mine.iter().find(|m| Src::Val(m.0) == l.src);
        match found {
            None => leaf_op.push(None),
            Some(&(_, op, false)) if l.strides == order && l.off == 0 => leaf_op.push(Some(op)),
            Some(_) => return false,
        }
    }
    if let Some(&Op::Load(l)) = f2.ops.last() {
        if leaf_op[l as usize].is_some() {
            // f2 only copies a value of f1.
            return false;
        }
    }
    let mut leaf_map: Vec<u16> = Vec::with_capacity(f2.leaves.len());
    for (l, alias) in f2.leaves.iter().zip(&leaf_op) {
        if alias.is_none() {
            leaf_map.push(f1.leaves.len() as u16);
            f1.leaves.push(l.clone());
        } else {
            leaf_map.push(u16::MAX);
        }
    }
    // f1's last value becomes an extra output (dropped later if unread).
    f1.extra.push(Extra {
        op: last1,
        out: f1.out,
        sum: false,
        check: false,
    });
    let mut op_map: Vec<u16> = Vec::with_capacity(f2.ops.len());
    for (j, op) in f2.ops.iter().enumerate() {
        let r = |a: u16| op_map[a as usize];
        let arg = |a: Arg| match a {
            Arg::R(x) => Arg::R(op_map[x as usize]),
            k => k,
        };
        let new = match *op {
            Op::Load(l) => match leaf_op[l as usize] {
                Some(src_op) => {
                    op_map.push(src_op);
                    continue;
                }
                None => Op::Load(leaf_map[l as usize]),
            },
            Op::Fill(c) => Op::Fill(c),
            Op::Map { f, a, warn } => Op::Map { f, a: r(a), warn },
            Op::Pow { a, p, fix } => Op::Pow { a: r(a), p, fix },
            Op::Add(a, b) => Op::Add(arg(a), arg(b)),
            Op::Mul(a, b) => Op::Mul(arg(a), arg(b)),
        };
        f1.ops.push(new);
        f1.checked.push(f2.checked[j]);
        op_map.push(f1.ops.len() as u16 - 1);
    }
    f1.extra.extend(f2.extra.iter().map(|e| Extra {
        op: op_map[e.op as usize],
        ..e.clone()
    }));
    f1.out = f2.out;
    f1.direct = vec![(u16::MAX, 0); f1.ops.len()];
    true
}

/// The sum `r` of a value of loop `f` over all of it, kept by the loop.
fn keep_sum(f: &mut Fused, r: &Reduce) -> bool {
    let total: usize = f.shape.iter().product();
    if !r.sums
        || r.out_len != 1
        || r.acc
        || r.a_off != 0
        || f.extra.len() + 1 > MAX_EXTRA
        || r.shape.iter().product::<usize>() != total
        || r.a_strides != row_major(&r.shape)
    {
        return false;
    }
    let op = if r.a == Src::Val(f.out) {
        f.ops.len() as u16 - 1
    } else if let Some(e) = f.extra.iter().find(|e| Src::Val(e.out) == r.a && !e.sum) {
        e.op
    } else {
        return false;
    };
    f.extra.push(Extra {
        op,
        out: r.out,
        sum: true,
        check: r.check,
    });
    true
}

/// Calls `f` with every source step `s` reads.
fn step_reads(s: &Step, f: &mut dyn FnMut(Src)) {
    match s {
        Step::Fused(x) => x.leaves.iter().for_each(|l| f(l.src)),
        Step::Reduce(r) => f(r.a),
        Step::Gemm(g) => {
            f(g.a);
            f(g.b)
        }
        Step::Lu { a, .. } | Step::Lse { a, .. } => f(*a),
    }
}

/// The labels `group` of an operand (labels `l`, strides `s`) as one axis:
/// `(extent, stride)`, when they are adjacent in memory in this order.
/// Unit-extent labels are ignored; an empty group is `(1, 0)`.
fn merge(group: &[u8], l: &[u8], s: &[usize], exts: &[usize]) -> Option<(usize, usize)> {
    let items: Vec<(usize, usize)> = group
        .iter()
        .zip(exts)
        .filter(|(_, &e)| e != 1)
        .map(|(&g, &e)| (e, s[pos(l, g)]))
        .collect();
    if items.is_empty() {
        return Some((1, 0));
    }
    for w in items.windows(2) {
        if w[0].1 != w[1].1 * w[1].0 {
            return None;
        }
    }
    let total = items.iter().map(|x| x.0).product();
    Some((total, items.last().map_or(0, |x| x.1)))
}
