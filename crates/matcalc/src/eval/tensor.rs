//! Dense, row-major `f64` tensors and the two index-notation kernels the
//! evaluator runs on: [`permute_sum`] (transpose / reduce) and [`einsum`]
//! (binary contraction, routed to faer's matrix multiply).
//!
//! Labels are `u8`s; within one operand (and within the output list) they are
//! distinct. A label shared by two operands must have the same extent in both.
//! These are caller invariants, checked with `debug_assert!` only.

use crate::error::{Error, ErrorKind, Result};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use std::borrow::Cow;

/// A dense tensor of `f64` in row-major (C) order.
///
/// Order 0 is a scalar (empty shape, exactly one entry); there is no upper
/// limit on the order. Extents may be 0, in which case there are no entries.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f64>,
}

/// Number of entries of a shape, `None` on overflow.
fn checked_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &e| acc.checked_mul(e))
}

/// Number of entries of a shape; panics on overflow (no such tensor could be
/// allocated anyway).
fn len_of(shape: &[usize]) -> usize {
    checked_len(shape).expect("tensor size overflows usize")
}

/// `2×3`, `5`, `scalar`: a shape for messages.
pub(crate) fn shape_string(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "scalar".to_string();
    }
    shape.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("×")
}

/// Row-major strides of a shape.
fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![0; shape.len()];
    let mut acc = 1;
    for (d, &e) in shape.iter().enumerate().rev() {
        s[d] = acc;
        acc *= e;
    }
    s
}

impl Tensor {
    /// An order-0 tensor.
    pub fn scalar(v: f64) -> Tensor {
        Tensor {
            shape: Vec::new(),
            data: vec![v],
        }
    }

    /// A tensor from its shape and row-major entries.
    ///
    /// Fails with [`ErrorKind::Shape`] when `data.len()` is not the product of
    /// the extents (1 for an empty shape).
    pub fn from_vec(shape: Vec<usize>, data: Vec<f64>) -> Result<Tensor> {
        match checked_len(&shape) {
            Some(n) if n == data.len() => Ok(Tensor { shape, data }),
            Some(n) => Err(Error::new(
                ErrorKind::Shape,
                format!(
                    "a tensor of shape {} has {n} entries, but {} were given",
                    shape_string(&shape),
                    data.len()
                ),
            )),
            None => Err(Error::new(
                ErrorKind::Shape,
                format!("a tensor of shape {} is too large", shape_string(&shape)),
            )),
        }
    }

    /// All zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::filled(shape, 0.0)
    }

    /// Every entry equal to `v`.
    pub fn filled(shape: &[usize], v: f64) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            data: vec![v; len_of(shape)],
        }
    }

    /// The `n×n` identity matrix (order 2).
    pub fn eye(n: usize) -> Tensor {
        let mut t = Tensor::zeros(&[n, n]);
        for i in 0..n {
            t.data[i * n + i] = 1.0;
        }
        t
    }

    /// The extents, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The entries in row-major order.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// The entries in row-major order, mutably.
    pub fn data_mut(&mut self) -> &mut [f64] {
        &mut self.data
    }

    /// Take the entries out.
    pub fn into_data(self) -> Vec<f64> {
        self.data
    }

    /// Number of axes (0 for a scalar).
    pub fn order(&self) -> usize {
        self.shape.len()
    }

    /// Number of entries (1 for a scalar).
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when there are no entries (some extent is 0).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The value of an order-0 tensor; `None` for any other order (a 1×1
    /// matrix is not a scalar here).
    pub fn as_scalar(&self) -> Option<f64> {
        if self.shape.is_empty() {
            Some(self.data[0])
        } else {
            None
        }
    }

    /// The entry at a multi-index; `None` when the index has the wrong
    /// length or is out of bounds. `get(&[])` reads a scalar.
    pub fn get(&self, index: &[usize]) -> Option<f64> {
        if index.len() != self.shape.len() {
            return None;
        }
        let mut off = 0;
        for (&i, &e) in index.iter().zip(&self.shape) {
            if i >= e {
                return None;
            }
            off = off * e + i;
        }
        Some(self.data[off])
    }

    /// The same entries under another shape with the same number of entries.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Tensor> {
        Tensor::from_vec(shape, self.data)
    }

    /// True when no entry is NaN or infinite.
    pub fn all_finite(&self) -> bool {
        self.data.iter().all(|x| x.is_finite())
    }

    /// Apply `f` to every entry.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Tensor {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&x| f(x)).collect(),
        }
    }

    /// Combine two tensors of the same shape entry by entry.
    ///
    /// # Panics
    /// When the shapes differ: callers check shapes before evaluating, so a
    /// mismatch here is an internal bug.
    pub fn zip_map(&self, other: &Tensor, f: impl Fn(f64, f64) -> f64) -> Tensor {
        assert_eq!(self.shape, other.shape, "zip_map: shapes differ");
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().zip(&other.data).map(|(&x, &y)| f(x, y)).collect(),
        }
    }

    /// `self += other`, entry by entry.
    ///
    /// # Panics
    /// When the shapes differ (an internal bug, as for [`Tensor::zip_map`]).
    pub fn add_assign(&mut self, other: &Tensor) {
        assert_eq!(self.shape, other.shape, "add_assign: shapes differ");
        for (x, y) in self.data.iter_mut().zip(&other.data) {
            *x += y;
        }
    }

    /// Multiply every entry by `s`, in place.
    pub fn scale(&mut self, s: f64) {
        for x in &mut self.data {
            *x *= s;
        }
    }
}

// ---------------------------------------------------------------------------
// Strided iteration helpers
// ---------------------------------------------------------------------------

/// Simplify an iteration space walked in row-major order over `shape`, where
/// each of the `N` stride sets gives the offset step of one other array per
/// axis: drop extent-1 axes and merge neighbours that are contiguous in every
/// stride set. Never returns an empty shape (a lone extent-1 axis instead).
fn simplify<const N: usize>(shape: &[usize], strides: [&[usize]; N]) -> (Vec<usize>, [Vec<usize>; N]) {
    let mut sh: Vec<usize> = Vec::with_capacity(shape.len());
    let mut st: [Vec<usize>; N] = std::array::from_fn(|_| Vec::with_capacity(shape.len()));
    for (d, &e) in shape.iter().enumerate() {
        if e == 1 {
            continue;
        }
        if let Some(&last_e) = sh.last() {
            // Merge axis d into the previous kept axis when, in every stride
            // set, stepping the previous axis equals `e` steps of axis d.
            if (0..N).all(|k| *st[k].last().unwrap() == strides[k][d] * e) {
                *sh.last_mut().unwrap() = last_e * e;
                for k in 0..N {
                    *st[k].last_mut().unwrap() = strides[k][d];
                }
                continue;
            }
        }
        sh.push(e);
        for k in 0..N {
            st[k].push(strides[k][d]);
        }
    }
    if sh.is_empty() {
        sh.push(1);
        for s in &mut st {
            s.push(0);
        }
    }
    (sh, st)
}

/// Call `f` with the starting offsets (one per stride set) of every
/// innermost row of the row-major iteration space whose outer axes are
/// `outer`. Rows come in row-major order. Calls `f` once when `outer` is empty.
fn for_each_row<const N: usize>(outer: &[usize], strides: [&[usize]; N], mut f: impl FnMut([usize; N])) {
    if outer.contains(&0) {
        return;
    }
    let mut idx = vec![0usize; outer.len()];
    let mut offs = [0usize; N];
    loop {
        f(offs);
        let mut d = outer.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            for k in 0..N {
                offs[k] += strides[k][d];
            }
            if idx[d] < outer[d] {
                break;
            }
            for k in 0..N {
                offs[k] -= strides[k][d] * outer[d];
            }
            idx[d] = 0;
        }
    }
}

fn distinct(labels: &[u8]) -> bool {
    labels.iter().enumerate().all(|(i, l)| !labels[..i].contains(l))
}

fn pos(labels: &[u8], l: u8) -> usize {
    labels.iter().position(|&m| m == l).expect("label not found")
}

// ---------------------------------------------------------------------------
// permute_sum
// ---------------------------------------------------------------------------

/// Reorder and reduce: the result has `a`'s axes in the order of `out`;
/// labels of `ia` missing from `out` are summed over.
///
/// `ia` labels `a`'s axes (one per axis, distinct); `out` is a set of
/// distinct labels drawn from `ia`. `permute_sum(a, b"ij", b"ji")` is a
/// transpose, `permute_sum(a, b"ij", b"")` the sum of all entries,
/// `permute_sum(a, b"ij", b"i")` the row sums. When `out == ia` the result is
/// a clone of `a`.
pub fn permute_sum(a: &Tensor, ia: &[u8], out: &[u8]) -> Tensor {
    debug_assert_eq!(ia.len(), a.order(), "one label per axis");
    debug_assert!(distinct(ia) && distinct(out), "labels must be distinct");
    debug_assert!(out.iter().all(|l| ia.contains(l)), "out must be a subset of ia");
    if ia == out {
        return a.clone();
    }
    let out_shape: Vec<usize> = out.iter().map(|&l| a.shape[pos(ia, l)]).collect();
    if out.is_empty() {
        return Tensor::scalar(a.data.iter().sum());
    }
    let mut res = vec![0.0; len_of(&out_shape)];
    if a.data.is_empty() || res.is_empty() {
        return Tensor {
            shape: out_shape,
            data: res,
        };
    }
    // Stride in the result of each of a's axes (0 for summed axes).
    let ostr = strides_of(&out_shape);
    let mut st = vec![0usize; ia.len()];
    for (p, &l) in out.iter().enumerate() {
        st[pos(ia, l)] = ostr[p];
    }
    let (sh, [st]) = simplify(&a.shape, [&st]);
    let last = sh.len() - 1;
    let (n, s) = (sh[last], st[last]);
    let mut rows = a.data.chunks_exact(n);
    for_each_row(&sh[..last], [&st[..last]], |[o]| {
        let row = rows.next().expect("row count");
        match s {
            0 => res[o] += row.iter().sum::<f64>(),
            1 => {
                for (r, x) in res[o..o + n].iter_mut().zip(row) {
                    *r += x;
                }
            }
            _ => {
                for (t, x) in row.iter().enumerate() {
                    res[o + t * s] += x;
                }
            }
        }
    });
    Tensor {
        shape: out_shape,
        data: res,
    }
}

// ---------------------------------------------------------------------------
// einsum
// ---------------------------------------------------------------------------

/// Per-batch products with at most this many multiply-adds (`m·n·k`) are done
/// with a direct loop instead of a call into faer.
const SMALL_GEMM: usize = 4;

/// Binary contraction in index notation: `C[out] = Σ A[ia]·B[ib]`, summing
/// over every label that is not in `out`.
///
/// Every label of `out` occurs in `ia` or `ib`; labels are distinct within
/// each list; a label in both `ia` and `ib` has the same extent in both.
/// Scalars have empty label lists. Examples: `einsum(a, b"ik", b, b"kj",
/// b"ij")` is a matrix product, `(b"ij", b"j", b"i")` a matrix–vector product,
/// `(b"i", b"j", b"ij")` an outer product, `(b"ij", b"ij", b"ij")` a Hadamard
/// product, `(b"ij", b"ij", b"")` the Frobenius inner product, `(b"ik",
/// b"ki", b"i")` the diagonal of a product.
///
/// Labels only in `ia` (or only in `ib`) and not in `out` are summed out
/// first. With no contracted label left, each output entry is one product
/// and a strided loop computes it. Otherwise the labels are split into batch
/// (in `ia`, `ib` and `out`), free (in one operand and `out`) and contracted
/// ones, and every batch entry is one matrix product done by faer (operands
/// are copied into matrix layout only when their axes are not already
/// grouped that way; the result is written in place when `out` allows it).
/// Batched dot products (no free labels) that would need a copy, or whose
/// dots are short, run as one strided loop instead.
pub fn einsum(a: &Tensor, ia: &[u8], b: &Tensor, ib: &[u8], out: &[u8]) -> Tensor {
    debug_assert_eq!(ia.len(), a.order(), "one label per axis of a");
    debug_assert_eq!(ib.len(), b.order(), "one label per axis of b");
    debug_assert!(distinct(ia) && distinct(ib) && distinct(out), "labels must be distinct");
    debug_assert!(
        out.iter().all(|l| ia.contains(l) || ib.contains(l)),
        "every output label must occur in an operand"
    );
    debug_assert!(
        !ia.iter()
            .enumerate()
            .any(|(p, l)| ib.iter().position(|m| m == l).is_some_and(|q| a.shape[p] != b.shape[q])),
        "shared labels must have equal extents"
    );

    // Fast paths for the most common elementwise cases.
    if ia == out && ib == out {
        return a.zip_map(b, |x, y| x * y);
    }
    if ia.is_empty() && ib == out {
        let s = a.data[0];
        return b.map(|y| s * y);
    }
    if ib.is_empty() && ia == out {
        let s = b.data[0];
        return a.map(|x| x * s);
    }

    let (a, la) = presum(a, ia, ib, out);
    let (b, lb) = presum(b, ib, ia, out);
    let contracted: Vec<u8> = la
        .iter()
        .filter(|l| lb.contains(l) && !out.contains(l))
        .copied()
        .collect();
    if contracted.is_empty() {
        broadcast_mul(&a, &la, &b, &lb, out)
    } else {
        contract(&a, &la, &b, &lb, out, &contracted)
    }
}

/// Sum out the labels of `it` that are neither in `other` nor in `out`.
fn presum<'a>(t: &'a Tensor, it: &'a [u8], other: &[u8], out: &[u8]) -> (Cow<'a, Tensor>, Cow<'a, [u8]>) {
    if it.iter().all(|l| other.contains(l) || out.contains(l)) {
        return (Cow::Borrowed(t), Cow::Borrowed(it));
    }
    let keep: Vec<u8> = it
        .iter()
        .filter(|l| other.contains(l) || out.contains(l))
        .copied()
        .collect();
    (Cow::Owned(permute_sum(t, it, &keep)), Cow::Owned(keep))
}

/// Extent of label `l`, looked up in `a` then `b`.
fn extent(a: &Tensor, la: &[u8], b: &Tensor, lb: &[u8], l: u8) -> usize {
    match la.iter().position(|&m| m == l) {
        Some(p) => a.shape[p],
        None => b.shape[pos(lb, l)],
    }
}

/// `C[out] = A[la]·B[lb]` with no summation: every label of `la` and `lb` is
/// in `out`.
fn broadcast_mul(a: &Tensor, la: &[u8], b: &Tensor, lb: &[u8], out: &[u8]) -> Tensor {
    let shape: Vec<usize> = out.iter().map(|&l| extent(a, la, b, lb, l)).collect();
    let total = len_of(&shape);
    if total == 0 {
        return Tensor {
            shape,
            data: Vec::new(),
        };
    }
    let stride_in = |t: &Tensor, lt: &[u8]| -> Vec<usize> {
        let s = strides_of(&t.shape);
        out.iter()
            .map(|l| lt.iter().position(|m| m == l).map_or(0, |p| s[p]))
            .collect()
    };
    let (sa, sb) = (stride_in(a, la), stride_in(b, lb));
    let (sh, [sa, sb]) = simplify(&shape, [&sa, &sb]);
    let last = sh.len() - 1;
    let (n, ta, tb) = (sh[last], sa[last], sb[last]);
    let (ad, bd) = (&a.data[..], &b.data[..]);
    let mut res: Vec<f64> = Vec::with_capacity(total);
    for_each_row(&sh[..last], [&sa[..last], &sb[..last]], |[oa, ob]| match (ta, tb) {
        (1, 1) => res.extend(ad[oa..oa + n].iter().zip(&bd[ob..ob + n]).map(|(x, y)| x * y)),
        (0, 1) => res.extend(bd[ob..ob + n].iter().map(|y| ad[oa] * y)),
        (1, 0) => res.extend(ad[oa..oa + n].iter().map(|x| x * bd[ob])),
        _ => res.extend((0..n).map(|t| ad[oa + t * ta] * bd[ob + t * tb])),
    });
    debug_assert_eq!(res.len(), total);
    Tensor { shape, data: res }
}

/// Batched dot products whose contracted extent is at most this use the
/// strided loop even when faer could be called without copies.
const DOT_LOOP_MAX: usize = 16;

/// `C[out] = Σ A[la]·B[lb]` where `la` and `lb` hold the same labels (those
/// in `out` are batch labels, the others contracted): one strided pass in
/// `a`'s memory order, no copies.
fn batched_dot(a: &Tensor, la: &[u8], b: &Tensor, lb: &[u8], out: &[u8]) -> Tensor {
    let out_shape: Vec<usize> = out.iter().map(|&l| a.shape[pos(la, l)]).collect();
    let mut res = vec![0.0; len_of(&out_shape)];
    if a.data.is_empty() {
        return Tensor {
            shape: out_shape,
            data: res,
        };
    }
    let sa = strides_of(&a.shape);
    let bs = strides_of(&b.shape);
    let sb: Vec<usize> = la.iter().map(|&l| bs[pos(lb, l)]).collect();
    let os = strides_of(&out_shape);
    let so: Vec<usize> = la
        .iter()
        .map(|l| out.iter().position(|m| m == l).map_or(0, |p| os[p]))
        .collect();
    let (sh, [sa, sb, so]) = simplify(&a.shape, [&sa, &sb, &so]);
    let last = sh.len() - 1;
    let (n, ta, tb, to) = (sh[last], sa[last], sb[last], so[last]);
    let (ad, bd) = (&a.data[..], &b.data[..]);
    for_each_row(&sh[..last], [&sa[..last], &sb[..last], &so[..last]], |[oa, ob, oo]| {
        if to == 0 {
            res[oo] += if ta == 1 && tb == 1 {
                ad[oa..oa + n]
                    .iter()
                    .zip(&bd[ob..ob + n])
                    .map(|(x, y)| x * y)
                    .sum::<f64>()
            } else {
                (0..n).map(|t| ad[oa + t * ta] * bd[ob + t * tb]).sum::<f64>()
            };
        } else {
            for t in 0..n {
                res[oo + t * to] += ad[oa + t * ta] * bd[ob + t * tb];
            }
        }
    });
    Tensor {
        shape: out_shape,
        data: res,
    }
}

/// If `labels` is `batch ++ X ++ Y` where one of `X`, `Y` consists exactly
/// of the labels in `group` and the other of the remaining ones, say whether
/// the group comes first.
fn group_first(labels: &[u8], batch: &[u8], group: &[u8]) -> Option<bool> {
    if labels.len() < batch.len() || &labels[..batch.len()] != batch {
        return None;
    }
    let rest = &labels[batch.len()..];
    let ng = rest.iter().filter(|l| group.contains(l)).count();
    if rest[..ng].iter().all(|l| group.contains(l)) {
        Some(true)
    } else if rest[rest.len() - ng..].iter().all(|l| group.contains(l)) {
        Some(false)
    } else {
        None
    }
}

/// `C[out] = Σ A[la]·B[lb]` where every label of `la`/`lb` is in the other
/// operand or in `out`, and `contracted` (non-empty) lists the shared labels
/// not in `out`.
fn contract(a: &Tensor, la: &[u8], b: &Tensor, lb: &[u8], out: &[u8], contracted: &[u8]) -> Tensor {
    let ext = |l: u8| extent(a, la, b, lb, l);
    let prod = |ls: &[u8]| ls.iter().map(|&l| ext(l)).product::<usize>();
    let batch: Vec<u8> = out
        .iter()
        .filter(|l| la.contains(l) && lb.contains(l))
        .copied()
        .collect();
    let in_out_order = |other: &[u8]| -> Vec<u8> {
        out.iter()
            .filter(|l| !batch.contains(l) && !other.contains(l))
            .copied()
            .collect()
    };
    let only = |ls: &[u8], set: &[u8]| -> Vec<u8> { ls.iter().filter(|l| set.contains(l)).copied().collect() };

    // Can each operand be viewed, per batch entry, as a matrix without a copy?
    let a_form = group_first(la, &batch, contracted);
    let b_form = group_first(lb, &batch, contracted);
    let (ka, kb) = (only(la, contracted), only(lb, contracted));
    let k_order: &[u8] = match (a_form, b_form) {
        (Some(_), Some(_)) if ka == kb => &ka,
        // Both viewable but the contracted labels come in different orders:
        // copy the smaller operand.
        (Some(_), Some(_)) => {
            if a.len() >= b.len() {
                &ka
            } else {
                &kb
            }
        }
        (None, Some(_)) => &kb,
        _ => &ka,
    };
    let a_view = a_form.filter(|_| ka == k_order);
    let b_view = b_form.filter(|_| kb == k_order);

    // Batched dot products (no free labels): a strided loop beats copying an
    // operand into matrix layout, and beats many tiny faer calls.
    if la.iter().all(|l| lb.contains(l))
        && lb.iter().all(|l| la.contains(l))
        && (a_view.is_none() || b_view.is_none() || (!batch.is_empty() && prod(k_order) <= DOT_LOOP_MAX))
    {
        return batched_dot(a, la, b, lb, out);
    }

    // A as [batch, free_a, k] (or [batch, k, free_a]); B as [batch, k, free_b]
    // (or [batch, free_b, k]).
    let (a_op, la_op, a_kfirst) = match a_view {
        Some(kf) => (Cow::Borrowed(a), Cow::Borrowed(la), kf),
        _ => {
            let l: Vec<u8> = [&batch[..], &in_out_order(lb), k_order].concat();
            (Cow::Owned(permute_sum(a, la, &l)), Cow::Owned(l), false)
        }
    };
    let (b_op, lb_op, b_kfirst) = match b_view {
        Some(kf) => (Cow::Borrowed(b), Cow::Borrowed(lb), kf),
        _ => {
            let l: Vec<u8> = [&batch[..], k_order, &in_out_order(la)].concat();
            (Cow::Owned(permute_sum(b, lb, &l)), Cow::Owned(l), true)
        }
    };
    let fa: Vec<u8> = la_op.iter().filter(|l| !lb.contains(l)).copied().collect();
    let fb: Vec<u8> = lb_op.iter().filter(|l| !la.contains(l)).copied().collect();
    let (nb, m, n, k) = (prod(&batch), prod(&fa), prod(&fb), prod(k_order));

    // Write straight into the output layout when it is [batch, fa, fb]
    // (row-major blocks) or [batch, fb, fa] (column-major blocks).
    let nbl = batch.len();
    let direct = if out[..nbl] != batch[..] {
        None
    } else if out[nbl..] == [&fa[..], &fb[..]].concat()[..] {
        Some(true)
    } else if out[nbl..] == [&fb[..], &fa[..]].concat()[..] {
        Some(false)
    } else {
        None
    };
    let c_rowmajor = direct.unwrap_or(true);
    let c_labels: Vec<u8> = match direct {
        Some(_) => out.to_vec(),
        None => [&batch[..], &fa[..], &fb[..]].concat(),
    };
    let c_shape: Vec<usize> = c_labels.iter().map(|&l| ext(l)).collect();
    let mut c = vec![0.0; nb * m * n];

    if !c.is_empty() && k > 0 {
        let (ad, bd) = (a_op.data(), b_op.data());
        let blocks = c
            .chunks_exact_mut(m * n)
            .zip(ad.chunks_exact(m * k))
            .zip(bd.chunks_exact(k * n));
        if m * n * k <= SMALL_GEMM {
            // Tiny per-batch products (e.g. batched 2×2 times 2-vector).
            let (ars, acs) = if a_kfirst { (1, m) } else { (k, 1) };
            let (brs, bcs) = if b_kfirst { (n, 1) } else { (1, k) };
            let (crs, ccs) = if c_rowmajor { (n, 1) } else { (1, m) };
            for ((cb, ab), bb) in blocks {
                for i in 0..m {
                    for j in 0..n {
                        cb[i * crs + j * ccs] = (0..k).map(|p| ab[i * ars + p * acs] * bb[p * brs + j * bcs]).sum();
                    }
                }
            }
        } else {
            for ((cb, ab), bb) in blocks {
                let av = if a_kfirst {
                    MatRef::from_column_major_slice(ab, m, k)
                } else {
                    MatRef::from_row_major_slice(ab, m, k)
                };
                let bv = if b_kfirst {
                    MatRef::from_row_major_slice(bb, k, n)
                } else {
                    MatRef::from_column_major_slice(bb, k, n)
                };
                let cv = if c_rowmajor {
                    MatMut::from_row_major_slice_mut(cb, m, n)
                } else {
                    MatMut::from_column_major_slice_mut(cb, m, n)
                };
                matmul(cv, Accum::Replace, av, bv, 1.0, Par::Seq);
            }
        }
    }
    let c = Tensor {
        shape: c_shape,
        data: c,
    };
    match direct {
        Some(_) => c,
        None => permute_sum(&c, &c_labels, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn rand_tensor(rng: &mut StdRng, shape: &[usize]) -> Tensor {
        let n = len_of(shape);
        Tensor::from_vec(shape.to_vec(), (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()).unwrap()
    }

    /// Reference einsum: a plain loop over every assignment of all labels.
    fn naive_einsum(a: &Tensor, ia: &[u8], b: &Tensor, ib: &[u8], out: &[u8]) -> Tensor {
        let mut labels: Vec<u8> = Vec::new();
        for &l in ia.iter().chain(ib) {
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        let ext: Vec<usize> = labels.iter().map(|&l| extent(a, ia, b, ib, l)).collect();
        let out_shape: Vec<usize> = out.iter().map(|&l| ext[pos(&labels, l)]).collect();
        let mut res = Tensor::zeros(&out_shape);
        let total = len_of(&ext);
        let mut idx = vec![0usize; labels.len()];
        for _ in 0..total {
            let pick = |ls: &[u8]| -> Vec<usize> { ls.iter().map(|&l| idx[pos(&labels, l)]).collect() };
            let v = a.get(&pick(ia)).unwrap() * b.get(&pick(ib)).unwrap();
            let oi = pick(out);
            let mut off = 0;
            for (&i, &e) in oi.iter().zip(&out_shape) {
                off = off * e + i;
            }
            res.data[off] += v;
            for d in (0..labels.len()).rev() {
                idx[d] += 1;
                if idx[d] < ext[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        res
    }

    fn assert_close(x: &Tensor, y: &Tensor) {
        assert_eq!(x.shape(), y.shape());
        for (p, q) in x.data().iter().zip(y.data()) {
            assert!((p - q).abs() <= 1e-12 * (1.0 + q.abs()), "{p} vs {q}\n{x:?}\n{y:?}");
        }
    }

    fn check(ia: &[u8], sa: &[usize], ib: &[u8], sb: &[usize], out: &[u8]) {
        let mut rng = StdRng::seed_from_u64(ia.len() as u64 * 31 + ib.len() as u64 * 7 + out.len() as u64);
        let a = rand_tensor(&mut rng, sa);
        let b = rand_tensor(&mut rng, sb);
        let got = einsum(&a, ia, &b, ib, out);
        let want = naive_einsum(&a, ia, &b, ib, out);
        assert_close(&got, &want);
    }

    #[test]
    fn constructors_and_accessors() {
        let s = Tensor::scalar(2.5);
        assert_eq!(s.order(), 0);
        assert_eq!(s.len(), 1);
        assert_eq!(s.as_scalar(), Some(2.5));
        assert_eq!(s.get(&[]), Some(2.5));
        let t = Tensor::from_vec(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        assert_eq!(t.get(&[1, 0]), Some(4.0));
        assert_eq!(t.get(&[2, 0]), None);
        assert_eq!(t.get(&[1]), None);
        assert_eq!(t.as_scalar(), None);
        let e = Tensor::from_vec(vec![2, 3], vec![1.0; 5]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Shape);
        assert!(Tensor::from_vec(vec![], vec![]).is_err());
        assert_eq!(Tensor::eye(2).data(), &[1., 0., 0., 1.]);
        assert_eq!(Tensor::filled(&[2], 3.0).data(), &[3., 3.]);
        let z = Tensor::zeros(&[3, 0]);
        assert!(z.is_empty() && z.order() == 2);
        let mut u = t.map(|x| 2.0 * x);
        u.add_assign(&t);
        u.scale(0.5);
        assert_eq!(u.data(), &[1.5, 3., 4.5, 6., 7.5, 9.]);
        assert_eq!(t.zip_map(&t, |x, y| x - y), Tensor::zeros(&[2, 3]));
        assert_eq!(t.clone().reshape(vec![3, 2]).unwrap().shape(), &[3, 2]);
        assert_eq!(shape_string(&[2, 3]), "2×3");
        assert_eq!(shape_string(&[]), "scalar");
    }

    #[test]
    #[should_panic]
    fn zip_map_shape_mismatch_panics() {
        Tensor::zeros(&[2]).zip_map(&Tensor::zeros(&[3]), |x, _| x);
    }

    #[test]
    fn permute_sum_cases() {
        let t = Tensor::from_vec(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        assert_eq!(permute_sum(&t, b"ij", b"ij"), t);
        assert_eq!(permute_sum(&t, b"ij", b"ji").data(), &[1., 4., 2., 5., 3., 6.]);
        assert_eq!(permute_sum(&t, b"ij", b"ji").shape(), &[3, 2]);
        assert_eq!(permute_sum(&t, b"ij", b"").as_scalar(), Some(21.0));
        assert_eq!(permute_sum(&t, b"ij", b"i").data(), &[6., 15.]);
        assert_eq!(permute_sum(&t, b"ij", b"j").data(), &[5., 7., 9.]);
        let mut rng = StdRng::seed_from_u64(1);
        let x = rand_tensor(&mut rng, &[2, 3, 4, 5]);
        for out in [&b"lkji"[..], b"jl", b"kil", b"l", b"ijkl", b"ikjl", b"", b"jikl"] {
            let got = permute_sum(&x, b"ijkl", out);
            // permute_sum is einsum with a scalar 1.
            let want = naive_einsum(&x, b"ijkl", &Tensor::scalar(1.0), b"", out);
            assert_close(&got, &want);
        }
        // Degenerate extents.
        let e = Tensor::zeros(&[0, 3]);
        assert_eq!(permute_sum(&e, b"ij", b"ji").shape(), &[3, 0]);
        assert_eq!(permute_sum(&e, b"ij", b"j"), Tensor::zeros(&[3]));
        assert_eq!(permute_sum(&e, b"ij", b"").as_scalar(), Some(0.0));
        let one = Tensor::from_vec(vec![1, 1], vec![7.0]).unwrap();
        assert_eq!(permute_sum(&one, b"ij", b"ji"), one);
        assert_eq!(permute_sum(&one, b"ij", b"").as_scalar(), Some(7.0));
        let s = Tensor::scalar(3.0);
        assert_eq!(permute_sum(&s, b"", b""), s);
    }

    #[test]
    fn einsum_matrix_products() {
        check(b"ik", &[3, 4], b"kj", &[4, 5], b"ij");
        check(b"ik", &[3, 4], b"kj", &[4, 5], b"ji");
        check(b"ki", &[4, 3], b"kj", &[4, 5], b"ij");
        check(b"ik", &[3, 4], b"jk", &[5, 4], b"ij");
        check(b"ki", &[4, 3], b"jk", &[5, 4], b"ji");
        check(b"ij", &[100, 100], b"j", &[100], b"i");
        check(b"j", &[95], b"ji", &[95, 100], b"i");
        check(b"ik", &[100, 95], b"kj", &[95, 100], b"ij");
        check(b"i", &[7], b"i", &[7], b"");
        check(b"ij", &[6, 7], b"ij", &[6, 7], b"");
        check(b"ij", &[6, 7], b"ji", &[7, 6], b"");
        check(b"ik", &[6, 7], b"ki", &[7, 6], b"i");
        check(b"ki", &[7, 6], b"ki", &[7, 6], b"i");
        check(b"ij", &[2, 2], b"jk", &[2, 2], b"ik");
        check(b"ij", &[1, 1], b"jk", &[1, 1], b"ik");
    }

    #[test]
    fn einsum_elementwise_and_broadcast() {
        check(b"ij", &[3, 4], b"ij", &[3, 4], b"ij");
        check(b"ij", &[3, 4], b"ji", &[4, 3], b"ij");
        check(b"", &[], b"ij", &[3, 4], b"ij");
        check(b"ij", &[3, 4], b"", &[], b"ji");
        check(b"", &[], b"", &[], b"");
        check(b"i", &[3], b"j", &[4], b"ij");
        check(b"i", &[3], b"j", &[4], b"ji");
        check(b"ij", &[3, 4], b"j", &[4], b"ij");
        check(b"ij", &[3, 4], b"i", &[3], b"ij");
        check(b"ij", &[3, 4], b"k", &[2], b"ikj");
        check(b"ij", &[3, 4], b"k", &[2], b"i");
        check(b"ij", &[3, 4], b"kl", &[2, 5], b"");
        check(b"ij", &[3, 4], b"jk", &[4, 2], b"");
    }

    #[test]
    fn einsum_batched_and_higher_order() {
        check(b"bik", &[3, 4, 5], b"bkj", &[3, 5, 6], b"bij");
        check(b"bik", &[3, 4, 5], b"bkj", &[3, 5, 6], b"ijb");
        check(b"ikb", &[4, 5, 3], b"bkj", &[3, 5, 6], b"bji");
        check(b"ijkl", &[2, 3, 4, 5], b"kl", &[4, 5], b"ij");
        check(b"ijkl", &[2, 3, 4, 5], b"lk", &[5, 4], b"ji");
        check(b"ijkl", &[2, 3, 4, 5], b"jl", &[3, 5], b"ik");
        check(b"ijkl", &[2, 3, 4, 5], b"mj", &[6, 3], b"imkl");
        check(b"ijkl", &[2, 3, 4, 5], b"jlmn", &[3, 5, 2, 2], b"nmki");
        check(b"ij", &[3, 4], b"kl", &[2, 5], b"ijkl");
        check(b"ijk", &[2, 3, 4], b"ikj", &[2, 4, 3], b"i");
        check(b"ijk", &[2, 3, 4], b"kji", &[4, 3, 2], b"ik");
        check(b"ij", &[30, 40], b"ij", &[30, 40], b"j");
        check(b"ia", &[3, 6], b"aj", &[6, 4], b"ij");
        check(b"iaj", &[3, 6, 2], b"ajb", &[6, 2, 4], b"ib");
        check(b"iaj", &[3, 6, 2], b"jab", &[2, 6, 4], b"bi");
        // Batched dot products: strided loop and faer variants.
        check(b"ik", &[5, 100], b"ik", &[5, 100], b"i");
        check(b"ik", &[5, 3], b"ik", &[5, 3], b"i");
        check(b"ik", &[50, 40], b"ki", &[40, 50], b"i");
        check(b"ij", &[100, 100], b"ij", &[100, 100], b"");
        check(b"ij", &[30, 20], b"ji", &[20, 30], b"");
        check(b"ijk", &[4, 5, 6], b"kij", &[6, 4, 5], b"ji");
        check(b"ijk", &[4, 5, 6], b"ikj", &[4, 6, 5], b"");
    }

    #[test]
    fn einsum_degenerate_extents() {
        check(b"ik", &[0, 4], b"kj", &[4, 5], b"ij");
        check(b"ik", &[3, 0], b"kj", &[0, 5], b"ij");
        check(b"ik", &[3, 0], b"kj", &[0, 5], b"");
        check(b"i", &[0], b"j", &[3], b"ij");
        check(b"ij", &[1, 1], b"jk", &[1, 3], b"ik");
        check(b"i", &[1], b"i", &[1], b"");
        check(b"ij", &[3, 1], b"jk", &[1, 3], b"ik");
        let r = einsum(&Tensor::zeros(&[3, 0]), b"ik", &Tensor::zeros(&[0, 2]), b"kj", b"ij");
        assert_eq!(r, Tensor::zeros(&[3, 2]));
    }

    #[test]
    fn einsum_random_label_patterns() {
        // Random binary contractions over up to 5 labels.
        let mut rng = StdRng::seed_from_u64(42);
        let all = b"abcde";
        for _ in 0..300 {
            let ext: Vec<usize> = (0..5).map(|_| rng.gen_range(1..4)).collect();
            let pick = |rng: &mut StdRng| -> Vec<u8> {
                let mut v: Vec<u8> = all.iter().copied().filter(|_| rng.gen_bool(0.5)).collect();
                for i in (1..v.len()).rev() {
                    v.swap(i, rng.gen_range(0..=i));
                }
                v
            };
            let ia = pick(&mut rng);
            let ib = pick(&mut rng);
            let mut out: Vec<u8> = ia.iter().chain(&ib).copied().filter(|_| rng.gen_bool(0.5)).collect();
            out.dedup();
            let mut seen = Vec::new();
            out.retain(|l| {
                let new = !seen.contains(l);
                seen.push(*l);
                new
            });
            for i in (1..out.len()).rev() {
                out.swap(i, rng.gen_range(0..=i));
            }
            let sh = |ls: &[u8]| -> Vec<usize> { ls.iter().map(|&l| ext[(l - b'a') as usize]).collect() };
            let a = rand_tensor(&mut rng, &sh(&ia));
            let b = rand_tensor(&mut rng, &sh(&ib));
            let got = einsum(&a, &ia, &b, &ib, &out);
            let want = naive_einsum(&a, &ia, &b, &ib, &out);
            assert_close(&got, &want);
        }
    }
}
