//! Reading a large matrix once for two products: `Xᵀ·φ(X·w)`.
//!
//! A gradient of a loss over the rows of a data matrix (logistic regression,
//! least squares, any GLM) multiplies `X` by a vector, applies elementwise
//! work to the result, then multiplies by `Xᵀ`. Step by step, that streams
//! `X` from memory twice. Here such a run of steps is cut into blocks of
//! rows: for each block, the rows of `X·w`, the elementwise work on them and
//! their share of `Xᵀ·v` (added to the sum so far), while the block is still
//! in the cache. `X` then comes from memory once.
//!
//! The transformation works on the lowered steps, before buffers are
//! assigned, and only re-slices them: each step of the run is repeated per
//! block with offsets (and accumulation for the products and sums over the
//! rows after the first block). A run qualifies when every step in it works
//! row by row:
//!
//! * a matrix–vector product whose result rows are the rows (`Rows`),
//! * a product contracting over the rows, summed over the blocks (`Contract`),
//! * a one-axis fused loop over the rows, possibly keeping sums over them (`Fused`),
//! * a sum of a one-axis value over the rows (`Sum`),
//!
//! and reads the run's row values only at the block's own rows (stride 1),
//! and its sums over the rows not at all (they are complete only after the
//! run). It must end in a `Contract` that reads the first product's matrix
//! the same way, and that matrix must be larger than the cache.

use super::program::{Src, Step};
use rustc_hash::FxHashSet;

/// Bytes of matrix rows per block (read a second time from the L2 cache).
const BLOCK_BYTES: usize = 256 * 1024;

/// The smallest matrix worth streaming: below this it stays in the cache
/// between the two products anyway.
const MIN_BYTES: usize = 2 * 1024 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Rows,
    Contract,
    Fused,
    Sum,
}

/// How step `s` works on the `m` rows, if it does it row by row.
fn kind(s: &Step, m: usize) -> Option<Kind> {
    match s {
        Step::Fused(f) if f.shape == [m] => Some(Kind::Fused),
        Step::Reduce(r) if r.shape == [m] && r.sums && r.out_len == 1 && r.out_strides == [0] => Some(Kind::Sum),
        Step::Gemm(g) if g.batch.is_empty() && !g.sym && !g.acc => {
            let nonneg = [g.a_s.0, g.a_s.1, g.b_s.0, g.b_s.1, g.c_s.0, g.c_s.1]
                .iter()
                .all(|&s| s >= 0);
            let rows = g.n == 1 && g.m == m && g.c_s.0 == 1;
            let contract = g.k == m;
            match (nonneg, rows, contract) {
                (true, true, false) => Some(Kind::Rows),
                (true, false, true) => Some(Kind::Contract),
                _ => None,
            }
        }
        _ => None,
    }
}

/// What step `s` (of kind `k`) reads, with the stride along the rows
/// (`None`: read whole, not by rows).
fn reads(s: &Step, k: Kind) -> Vec<(Src, Option<usize>)> {
    match (s, k) {
        (Step::Fused(f), _) => f.leaves.iter().map(|l| (l.src, Some(l.strides[0]))).collect(),
        (Step::Reduce(r), _) => vec![(r.a, Some(r.a_strides[0]))],
        (Step::Gemm(g), Kind::Rows) => vec![(g.a, Some(g.a_s.0 as usize)), (g.b, None)],
        (Step::Gemm(g), _) => vec![(g.a, Some(g.a_s.1 as usize)), (g.b, Some(g.b_s.0 as usize))],
        _ => Vec::new(),
    }
}

/// What step `s` (of kind `k`) writes, and whether each is a sum over the rows.
fn writes(s: &Step, k: Kind) -> Vec<(u32, bool)> {
    match s {
        Step::Fused(f) => std::iter::once((f.out, false))
            .chain(f.extra.iter().map(|e| (e.out, e.sum)))
            .collect(),
        _ => s.outs().map(|v| (v, matches!(k, Kind::Contract | Kind::Sum))).collect(),
    }
}

/// The run of steps starting at `i` that qualifies, as its last index, the
/// number of rows and the rows per block.
fn run_at(steps: &[Step], i: usize) -> Option<(usize, usize, usize)> {
    let Step::Gemm(g1) = &steps[i] else { return None };
    if kind(&steps[i], g1.m) != Some(Kind::Rows) || g1.a_s.1 != 1 {
        return None;
    }
    let (m, k) = (g1.m, g1.k);
    let block = (BLOCK_BYTES / (8 * k.max(1))).max(16);
    if m * k * 8 < MIN_BYTES || m < 2 * block {
        return None;
    }
    let mut rows: FxHashSet<u32> = FxHashSet::default();
    let mut sums: FxHashSet<u32> = FxHashSet::default();
    let mut end = None;
    for (j, s) in steps.iter().enumerate().skip(i) {
        let Some(kd) = kind(s, m) else { break };
        let ok = reads(s, kd).iter().all(|&(src, stride)| match src {
            Src::Val(v) if sums.contains(&v) => false,
            Src::Val(v) if rows.contains(&v) => stride == Some(1),
            _ => true,
        });
        if !ok {
            break;
        }
        let outs = writes(s, kd);
        if outs.iter().any(|(v, _)| rows.contains(v) || sums.contains(v)) {
            break;
        }
        for (v, sum) in outs {
            if sum {
                sums.insert(v);
            } else {
                rows.insert(v);
            }
        }
        if let (Kind::Contract, Step::Gemm(g)) = (kd, s) {
            // Xᵀ·v (X as A, read along its rows) or vᵀ·X (X as B).
            let again = (g.a == g1.a && g.a_s == (g1.a_s.1, g1.a_s.0)) || (g.b == g1.a && g.b_s == g1.a_s);
            if again {
                end = Some(j);
            }
        }
    }
    end.map(|e| (e, m, block))
}

/// Step `s` (of kind `k`) on rows `r0 .. r0 + len`.
fn block_of(s: &Step, k: Kind, r0: usize, len: usize) -> Step {
    let mut s = s.clone();
    match (&mut s, k) {
        (Step::Fused(f), _) => {
            f.shape = vec![len];
            for l in &mut f.leaves {
                l.off += r0 * l.strides[0];
            }
            f.out_off += r0;
            f.acc = r0 > 0;
        }
        (Step::Reduce(r), _) => {
            r.shape = vec![len];
            r.a_off += r0 * r.a_strides[0];
            r.acc = r0 > 0;
        }
        (Step::Gemm(g), Kind::Rows) => {
            g.m = len;
            g.off[0] += r0 * g.a_s.0 as usize;
            g.off[2] += r0 * g.c_s.0 as usize;
        }
        (Step::Gemm(g), _) => {
            g.k = len;
            g.off[0] += r0 * g.a_s.1 as usize;
            g.off[1] += r0 * g.b_s.0 as usize;
            g.acc = r0 > 0;
        }
        _ => unreachable!("not a row step"),
    }
    s
}

/// The steps with every qualifying run cut into blocks of rows.
pub(crate) fn stream_rows(steps: Vec<Step>) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps.len());
    let mut i = 0;
    while i < steps.len() {
        let Some((end, m, block)) = run_at(&steps, i) else {
            out.push(steps[i].clone());
            i += 1;
            continue;
        };
        let run: Vec<(&Step, Kind)> = steps[i..=end]
            .iter()
            .map(|s| (s, kind(s, m).expect("a row step")))
            .collect();
        let mut r0 = 0;
        while r0 < m {
            let len = block.min(m - r0);
            out.extend(run.iter().map(|&(s, k)| block_of(s, k, r0, len)));
            r0 += len;
        }
        i = end + 1;
    }
    out
}
