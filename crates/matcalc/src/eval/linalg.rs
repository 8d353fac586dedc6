//! Dense decompositions, the one module that wraps faer's factorizations:
//! inverse, determinant, log-determinant and linear solves, all through an
//! LU factorization with partial pivoting (`Par::Seq`).
//!
//! Singularity policy:
//! * [`inv`] and [`solve`] fail with [`ErrorKind::Numeric`] ("matrix is
//!   singular") when a pivot is exactly 0 or the reciprocal 1-norm condition
//!   number is below [`RCOND_MIN`] (exact for `inv`, estimated for `solve`).
//! * [`det`] of a singular matrix is a (possibly tiny or zero) number, not an
//!   error; it fails only when the determinant overflows `f64`.
//! * [`logdet`] fails only when a pivot is exactly 0 (`log 0 = −∞`).
//!
//! Every function wants an order-2 square tensor ([`ErrorKind::Shape`]
//! otherwise) with finite entries ([`ErrorKind::Numeric`] otherwise). The
//! 0×0 matrix is accepted: its inverse is 0×0 and its determinant 1.

use super::tensor::{shape_string, Tensor};
use crate::error::{Error, ErrorKind, Result};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::lu::partial_pivoting::{factor as lu_factor, solve as lu_solve};
use faer::perm::PermRef;
use faer::{Mat, MatMut, MatRef, Par};

/// Matrices whose reciprocal condition number (1-norm) is below this are
/// treated as singular by [`inv`] and [`solve`]. (The Hilbert matrix of
/// order 10, condition ≈ 1.6·10¹³, still passes; order 11 does not.)
pub const RCOND_MIN: f64 = 1e-14;

/// An LU factorization `P·A = L·U`, `L` and `U` packed in one matrix.
struct Lu {
    lu: Mat<f64>,
    fwd: Vec<usize>,
    bwd: Vec<usize>,
    transpositions: usize,
}

impl Lu {
    fn n(&self) -> usize {
        self.lu.nrows()
    }

    fn perm(&self) -> PermRef<'_, usize> {
        PermRef::new_checked(&self.fwd, &self.bwd, self.n())
    }

    fn pivots(&self) -> impl Iterator<Item = f64> + '_ {
        (0..self.n()).map(|i| self.lu[(i, i)])
    }

    fn has_zero_pivot(&self) -> bool {
        self.pivots().any(|p| p == 0.0)
    }

    /// Determinant of the row permutation.
    fn perm_sign(&self) -> f64 {
        if self.transpositions & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }

    /// `rhs ← A⁻¹·rhs`.
    fn solve_in_place(&self, rhs: MatMut<'_, f64>) {
        let (n, k) = (self.n(), rhs.ncols());
        let mut buf = MemBuffer::new(lu_solve::solve_in_place_scratch::<usize, f64>(n, k, Par::Seq));
        let lu = self.lu.as_ref();
        lu_solve::solve_in_place(lu, lu, self.perm(), rhs, Par::Seq, MemStack::new(&mut buf));
    }

    /// `rhs ← A⁻ᵀ·rhs`.
    fn solve_transpose_in_place(&self, rhs: MatMut<'_, f64>) {
        let (n, k) = (self.n(), rhs.ncols());
        let mut buf = MemBuffer::new(lu_solve::solve_transpose_in_place_scratch::<usize, f64>(n, k, Par::Seq));
        let lu = self.lu.as_ref();
        lu_solve::solve_transpose_in_place(lu, lu, self.perm(), rhs, Par::Seq, MemStack::new(&mut buf));
    }
}

/// The size of a square matrix, or a Shape error naming `op`.
fn square(a: &Tensor, op: &str) -> Result<usize> {
    match a.shape() {
        [r, c] if r == c => Ok(*r),
        s => Err(Error::new(
            ErrorKind::Shape,
            format!("{op} needs a square matrix, but got shape {}", shape_string(s)),
        )),
    }
}

fn not_finite(op: &str) -> Error {
    Error::new(
        ErrorKind::Numeric,
        format!("{op}: the matrix has a NaN or infinite entry"),
    )
}

fn singular(op: &str) -> Error {
    Error::new(ErrorKind::Numeric, format!("{op}: matrix is singular"))
        .hint("the matrix is singular or too ill-conditioned for double precision")
}

/// Factor a square matrix with finite entries (`n ≥ 1`).
fn factor(a: &Tensor, n: usize, op: &str) -> Result<Lu> {
    if !a.all_finite() {
        return Err(not_finite(op));
    }
    let mut lu = MatRef::from_row_major_slice(a.data(), n, n).to_owned();
    let mut fwd = vec![0usize; n];
    let mut bwd = vec![0usize; n];
    let mut buf = MemBuffer::new(lu_factor::lu_in_place_scratch::<usize, f64>(
        n,
        n,
        Par::Seq,
        Default::default(),
    ));
    let (info, _) = lu_factor::lu_in_place(
        lu.as_mut(),
        &mut fwd,
        &mut bwd,
        Par::Seq,
        MemStack::new(&mut buf),
        Default::default(),
    );
    Ok(Lu {
        lu,
        fwd,
        bwd,
        transpositions: info.transposition_count,
    })
}

/// `‖A‖₁` (maximum absolute column sum) of a row-major `n×n` matrix.
fn norm1(a: &Tensor, n: usize) -> f64 {
    let mut sums = vec![0.0; n];
    for row in a.data().chunks_exact(n) {
        for (s, x) in sums.iter_mut().zip(row) {
            *s += x.abs();
        }
    }
    sums.into_iter().fold(0.0, f64::max)
}

/// Hager's estimate (a lower bound, usually exact) of `‖A⁻¹‖₁`.
fn inv_norm1_estimate(lu: &Lu) -> f64 {
    let n = lu.n();
    let mut x = Mat::<f64>::from_fn(n, 1, |_, _| 1.0 / n as f64);
    let mut est = 0.0;
    for _ in 0..5 {
        let mut y = x.clone();
        lu.solve_in_place(y.as_mut());
        est = (0..n).map(|i| y[(i, 0)].abs()).sum::<f64>();
        let mut z = Mat::<f64>::from_fn(n, 1, |i, _| if y[(i, 0)] >= 0.0 { 1.0 } else { -1.0 });
        lu.solve_transpose_in_place(z.as_mut());
        let (j, zmax) = (0..n)
            .map(|i| (i, z[(i, 0)].abs()))
            .fold((0, -1.0), |b, c| if c.1 > b.1 { c } else { b });
        let ztx: f64 = (0..n).map(|i| z[(i, 0)] * x[(i, 0)]).sum();
        if zmax.is_nan() || zmax <= ztx {
            break;
        }
        x = Mat::<f64>::from_fn(n, 1, |i, _| if i == j { 1.0 } else { 0.0 });
    }
    est
}

/// True when `1 / (‖A‖₁·‖A⁻¹‖₁)` is below [`RCOND_MIN`] (or not a number).
fn ill_conditioned(norm_a: f64, norm_inv: f64) -> bool {
    let rcond = 1.0 / (norm_a * norm_inv);
    rcond.is_nan() || rcond < RCOND_MIN
}

/// The inverse of a square matrix.
pub fn inv(a: &Tensor) -> Result<Tensor> {
    let n = square(a, "inv")?;
    if n == 0 {
        return Ok(Tensor::zeros(&[0, 0]));
    }
    let lu = factor(a, n, "inv")?;
    if lu.has_zero_pivot() {
        return Err(singular("inv"));
    }
    let mut x = Mat::<f64>::identity(n, n);
    lu.solve_in_place(x.as_mut());
    let norm_x = (0..n)
        .map(|j| x.col_as_slice(j).iter().map(|v| v.abs()).sum::<f64>())
        .fold(0.0, f64::max);
    if ill_conditioned(norm1(a, n), norm_x) {
        return Err(singular("inv"));
    }
    let data = (0..n * n).map(|t| x[(t / n, t % n)]).collect();
    Tensor::from_vec(vec![n, n], data)
}

/// The solution `X` of `A·X = B`, for a square `A` and a vector (order 1,
/// length n) or matrix (order 2, n rows) `B`; `X` has `B`'s shape.
pub fn solve(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let n = square(a, "solve")?;
    let k = match b.shape() {
        [r] if *r == n => 1,
        [r, c] if *r == n => *c,
        s => {
            return Err(Error::new(
                ErrorKind::Shape,
                format!(
                    "solve: the right-hand side must have {n} rows to match the {n}×{n} matrix, but has shape {}",
                    shape_string(s)
                ),
            ))
        }
    };
    if !b.all_finite() {
        return Err(Error::new(
            ErrorKind::Numeric,
            "solve: the right-hand side has a NaN or infinite entry",
        ));
    }
    if n == 0 || k == 0 {
        return Ok(Tensor::zeros(b.shape()));
    }
    let lu = factor(a, n, "solve")?;
    if lu.has_zero_pivot() || ill_conditioned(norm1(a, n), inv_norm1_estimate(&lu)) {
        return Err(singular("solve"));
    }
    let mut x = MatRef::from_row_major_slice(b.data(), n, k).to_owned();
    lu.solve_in_place(x.as_mut());
    let data = (0..n * k).map(|t| x[(t / k, t % k)]).collect();
    Tensor::from_vec(b.shape().to_vec(), data)
}

/// The determinant of a square matrix.
///
/// The product of the pivots is accumulated with a separate binary exponent,
/// so it only fails ([`ErrorKind::Numeric`]) when the determinant itself
/// overflows `f64`; use [`logdet`] then. A determinant below the smallest
/// subnormal comes out as 0.
pub fn det(a: &Tensor) -> Result<f64> {
    let n = square(a, "det")?;
    if n == 0 {
        return Ok(1.0);
    }
    let lu = factor(a, n, "det")?;
    // det = mant·2^exp2 with 1 ≤ |mant| < 2 after every step.
    let mut mant = lu.perm_sign();
    let mut exp2: i64 = 0;
    for p in lu.pivots() {
        if p == 0.0 {
            return Ok(0.0);
        }
        let (pm, pe) = frexp(p);
        let (m, e) = frexp(mant * pm);
        mant = m;
        exp2 += i64::from(pe) + i64::from(e);
    }
    if exp2 >= 1024 {
        let (l, _) = logdet_of(&lu);
        return Err(Error::new(
            ErrorKind::Numeric,
            format!("det: the determinant overflows a 64-bit float (log|det| = {l:.6})"),
        )
        .hint("use logdet(X) instead of log(det(X)) or det(X)"));
    }
    if exp2 < -1100 {
        return Ok(0.0 * mant);
    }
    let half = (exp2 / 2) as i32;
    Ok(mant * 2f64.powi(half) * 2f64.powi(exp2 as i32 - half))
}

/// Split a finite non-zero `x` into `(m, e)` with `x = m·2^e`, `1 ≤ |m| < 2`.
fn frexp(x: f64) -> (f64, i32) {
    debug_assert!(x.is_finite() && x != 0.0);
    let (x, adj) = if x.abs() < f64::MIN_POSITIVE {
        (x * 2f64.powi(64), -64)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let m = f64::from_bits((bits & !(0x7ff << 52)) | (1023 << 52));
    (m, e + adj)
}

fn logdet_of(lu: &Lu) -> (f64, f64) {
    let mut sign = lu.perm_sign();
    let mut l = 0.0;
    for p in lu.pivots() {
        l += p.abs().ln();
        if p < 0.0 {
            sign = -sign;
        }
    }
    (l, sign)
}

/// `(log|det A|, sign of det A)` of a square matrix, computed as a sum of
/// logarithms of the LU pivots so it neither overflows nor underflows for
/// large matrices. Fails ([`ErrorKind::Numeric`]) when a pivot is exactly 0.
pub fn logdet(a: &Tensor) -> Result<(f64, f64)> {
    let n = square(a, "logdet")?;
    if n == 0 {
        return Ok((0.0, 1.0));
    }
    let lu = factor(a, n, "logdet")?;
    if lu.has_zero_pivot() {
        return Err(
            Error::new(ErrorKind::Numeric, "logdet: matrix is singular (log|det| = -inf)")
                .hint("the determinant is exactly zero"),
        );
    }
    Ok(logdet_of(&lu))
}

/// Reusable memory for the LU kernels of compiled plans ([`crate::plan`]):
/// after [`LuWork::new`], [`LuWork::inv_into`], [`LuWork::det`] and
/// [`LuWork::logdet`] allocate nothing. They follow the policy of [`inv`],
/// [`det`] and [`logdet`] exactly, but report a failure as `None` (the caller
/// re-runs the allocating function for the message).
pub struct LuWork {
    n: usize,
    lu: Mat<f64>,
    x: Mat<f64>,
    fwd: Vec<usize>,
    bwd: Vec<usize>,
    mem: MemBuffer,
}

impl std::fmt::Debug for LuWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LuWork({}×{})", self.n, self.n)
    }
}

impl LuWork {
    /// Memory for `n×n` matrices.
    pub fn new(n: usize) -> LuWork {
        let scratch = lu_factor::lu_in_place_scratch::<usize, f64>(n, n, Par::Seq, Default::default())
            .or(lu_solve::solve_in_place_scratch::<usize, f64>(n, n, Par::Seq));
        LuWork {
            n,
            lu: Mat::zeros(n, n),
            x: Mat::zeros(n, n),
            fwd: vec![0; n],
            bwd: vec![0; n],
            mem: MemBuffer::new(scratch),
        }
    }

    /// Factor the row-major `a`; `None` when it has a non-finite entry.
    /// Returns the number of row transpositions.
    fn factor(&mut self, a: &[f64]) -> Option<usize> {
        let n = self.n;
        if a.iter().any(|v| !v.is_finite()) {
            return None;
        }
        self.lu.copy_from(MatRef::from_row_major_slice(a, n, n));
        let (info, _) = lu_factor::lu_in_place(
            self.lu.as_mut(),
            &mut self.fwd,
            &mut self.bwd,
            Par::Seq,
            MemStack::new(&mut self.mem),
            Default::default(),
        );
        Some(info.transposition_count)
    }

    fn pivots(&self) -> impl Iterator<Item = f64> + '_ {
        (0..self.n).map(|i| self.lu[(i, i)])
    }

    /// The inverse of the row-major `a` into the row-major `out`, as [`inv`].
    pub fn inv_into(&mut self, a: &[f64], out: &mut [f64]) -> Option<()> {
        let n = self.n;
        if n == 0 {
            return Some(());
        }
        self.factor(a)?;
        if self.pivots().any(|p| p == 0.0) {
            return None;
        }
        self.x.fill(0.0);
        for i in 0..n {
            self.x[(i, i)] = 1.0;
        }
        let perm = PermRef::new_checked(&self.fwd, &self.bwd, n);
        let lu = self.lu.as_ref();
        lu_solve::solve_in_place(lu, lu, perm, self.x.as_mut(), Par::Seq, MemStack::new(&mut self.mem));
        let norm_x = (0..n)
            .map(|j| self.x.col_as_slice(j).iter().map(|v| v.abs()).sum::<f64>())
            .fold(0.0, f64::max);
        let norm_a = (0..n)
            .map(|j| (0..n).map(|i| a[i * n + j].abs()).sum::<f64>())
            .fold(0.0, f64::max);
        if ill_conditioned(norm_a, norm_x) {
            return None;
        }
        for (t, o) in out[..n * n].iter_mut().enumerate() {
            *o = self.x[(t / n, t % n)];
        }
        Some(())
    }

    /// The determinant of the row-major `a`, as [`det`].
    pub fn det(&mut self, a: &[f64]) -> Option<f64> {
        if self.n == 0 {
            return Some(1.0);
        }
        let transpositions = self.factor(a)?;
        let mut mant = if transpositions & 1 == 0 { 1.0 } else { -1.0 };
        let mut exp2: i64 = 0;
        for p in self.pivots() {
            if p == 0.0 {
                return Some(0.0);
            }
            let (pm, pe) = frexp(p);
            let (m, e) = frexp(mant * pm);
            mant = m;
            exp2 += i64::from(pe) + i64::from(e);
        }
        if exp2 >= 1024 {
            return None;
        }
        if exp2 < -1100 {
            return Some(0.0 * mant);
        }
        let half = (exp2 / 2) as i32;
        Some(mant * 2f64.powi(half) * 2f64.powi(exp2 as i32 - half))
    }

    /// `log|det a|` of the row-major `a`, as [`logdet`].
    pub fn logdet(&mut self, a: &[f64]) -> Option<f64> {
        if self.n == 0 {
            return Some(0.0);
        }
        self.factor(a)?;
        if self.pivots().any(|p| p == 0.0) {
            return None;
        }
        Some(self.pivots().map(|p| p.abs().ln()).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::tensor::einsum;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn mat(rows: &[&[f64]]) -> Tensor {
        let n = rows.len();
        let m = rows.first().map_or(0, |r| r.len());
        Tensor::from_vec(vec![n, m], rows.concat()).unwrap()
    }

    fn random(rng: &mut StdRng, n: usize, lo: f64, hi: f64) -> Tensor {
        Tensor::from_vec(vec![n, n], (0..n * n).map(|_| rng.gen_range(lo..hi)).collect()).unwrap()
    }

    fn max_abs(t: &Tensor) -> f64 {
        t.data().iter().fold(0.0, |m, x| m.max(x.abs()))
    }

    #[test]
    fn inverse_reconstructs_identity() {
        let mut rng = StdRng::seed_from_u64(7);
        for n in [1, 2, 3, 17, 128] {
            let a = random(&mut rng, n, -1.0, 1.0);
            let x = inv(&a).unwrap();
            assert_eq!(x.shape(), &[n, n]);
            let scale = norm1(&a, n) * norm1(&x, n);
            for (p, q) in [(&a, &x), (&x, &a)] {
                let mut r = einsum(p, b"ik", q, b"kj", b"ij");
                r.add_assign(&Tensor::eye(n).map(|v| -v));
                assert!(
                    max_abs(&r) <= 1e-13 * scale,
                    "n={n}: residual {} scale {scale}",
                    max_abs(&r)
                );
            }
        }
    }

    #[test]
    fn inverse_small_known() {
        let x = inv(&mat(&[&[4.0]])).unwrap();
        assert_eq!(x.data(), &[0.25]);
        let x = inv(&mat(&[&[1.0, 2.0], &[3.0, 4.0]])).unwrap();
        let want = [-2.0, 1.0, 1.5, -0.5];
        for (p, q) in x.data().iter().zip(want) {
            assert!((p - q).abs() < 1e-14);
        }
        assert_eq!(inv(&Tensor::zeros(&[0, 0])).unwrap().shape(), &[0, 0]);
    }

    #[test]
    fn singular_matrices() {
        for a in [
            mat(&[&[0.0]]),
            mat(&[&[1.0, 2.0], &[2.0, 4.0]]),
            mat(&[&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], &[7.0, 8.0, 9.0]]),
            Tensor::zeros(&[3, 3]),
            mat(&[&[1.0, 0.0], &[0.0, 1e-300]]),
        ] {
            let e = inv(&a).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Numeric, "{a:?}");
            assert!(e.message.contains("singular"));
            let b = Tensor::filled(&[a.shape()[0]], 1.0);
            assert_eq!(solve(&a, &b).unwrap_err().kind, ErrorKind::Numeric);
            assert!(det(&a).unwrap().abs() < 1e-14);
        }
        assert_eq!(det(&mat(&[&[1.0, 2.0], &[2.0, 4.0]])).unwrap(), 0.0);
        assert_eq!(
            logdet(&mat(&[&[1.0, 2.0], &[2.0, 4.0]])).unwrap_err().kind,
            ErrorKind::Numeric
        );
        assert_eq!(logdet(&Tensor::zeros(&[2, 2])).unwrap_err().kind, ErrorKind::Numeric);
        // A badly scaled but well-conditioned matrix is fine.
        let x = inv(&mat(&[&[1e-200, 0.0], &[0.0, 1e-200]])).unwrap();
        assert_eq!(x.data(), &[1e200, 0.0, 0.0, 1e200]);
    }

    #[test]
    fn hilbert_conditioning_threshold() {
        let hilbert = |n: usize| {
            Tensor::from_vec(
                vec![n, n],
                (0..n * n).map(|t| 1.0 / ((t / n + t % n + 1) as f64)).collect(),
            )
            .unwrap()
        };
        assert!(inv(&hilbert(8)).is_ok());
        assert!(inv(&hilbert(13)).is_err());
    }

    #[test]
    fn shape_and_finiteness_errors() {
        let r = Tensor::zeros(&[2, 3]);
        for e in [inv(&r).unwrap_err(), det(&r).unwrap_err(), logdet(&r).unwrap_err()] {
            assert_eq!(e.kind, ErrorKind::Shape);
            assert!(e.message.contains("2×3"), "{}", e.message);
        }
        assert_eq!(det(&Tensor::zeros(&[3])).unwrap_err().kind, ErrorKind::Shape);
        assert_eq!(det(&Tensor::scalar(2.0)).unwrap_err().kind, ErrorKind::Shape);
        let nan = mat(&[&[1.0, f64::NAN], &[0.0, 1.0]]);
        assert_eq!(inv(&nan).unwrap_err().kind, ErrorKind::Numeric);
        assert_eq!(det(&nan).unwrap_err().kind, ErrorKind::Numeric);
        let a = Tensor::eye(2);
        assert_eq!(solve(&a, &Tensor::zeros(&[3])).unwrap_err().kind, ErrorKind::Shape);
    }

    #[test]
    fn determinants_of_known_matrices() {
        assert_eq!(det(&mat(&[&[3.0]])).unwrap(), 3.0);
        assert_eq!(det(&Tensor::zeros(&[0, 0])).unwrap(), 1.0);
        assert!((det(&mat(&[&[1.0, 2.0], &[3.0, 4.0]])).unwrap() + 2.0).abs() < 1e-14);
        // Triangular: product of the diagonal.
        let t = mat(&[&[2.0, 5.0, -1.0], &[0.0, -3.0, 7.0], &[0.0, 0.0, 0.5]]);
        assert!((det(&t).unwrap() + 3.0).abs() < 1e-14);
        let tl = mat(&[&[2.0, 0.0, 0.0], &[1.0, 4.0, 0.0], &[9.0, 8.0, 0.25]]);
        assert!((det(&tl).unwrap() - 2.0).abs() < 1e-14);
        // Permutations: one swap −1, a 3-cycle +1.
        let swap = mat(&[&[0.0, 1.0, 0.0], &[1.0, 0.0, 0.0], &[0.0, 0.0, 1.0]]);
        assert_eq!(det(&swap).unwrap(), -1.0);
        assert_eq!(logdet(&swap).unwrap(), (0.0, -1.0));
        let cycle = mat(&[&[0.0, 1.0, 0.0], &[0.0, 0.0, 1.0], &[1.0, 0.0, 0.0]]);
        assert_eq!(det(&cycle).unwrap(), 1.0);
        assert_eq!(logdet(&cycle).unwrap(), (0.0, 1.0));
        let (l, s) = logdet(&t).unwrap();
        assert!((l - 3f64.ln()).abs() < 1e-14 && s == -1.0);
        assert_eq!(logdet(&Tensor::zeros(&[0, 0])).unwrap(), (0.0, 1.0));
    }

    #[test]
    fn det_with_extreme_pivots() {
        // Intermediate products would overflow, the determinant does not.
        let d = mat(&[&[1e200, 0.0, 0.0], &[0.0, 1e200, 0.0], &[0.0, 0.0, 1e-300]]);
        let v = det(&d).unwrap();
        assert!((v / 1e100 - 1.0).abs() < 1e-12, "{v}");
        // Overflow of the determinant itself.
        let big = mat(&[&[1e200, 0.0], &[0.0, -1e200]]);
        let e = det(&big).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Numeric);
        assert!(e.hint.unwrap().contains("logdet"));
        let (l, s) = logdet(&big).unwrap();
        assert!((l - 400.0 * 10f64.ln()).abs() < 1e-10 && s == -1.0);
        // Underflow to zero.
        let tiny = mat(&[&[1e-200, 0.0], &[0.0, 1e-200]]);
        assert_eq!(det(&tiny).unwrap(), 0.0);
    }

    #[test]
    fn logdet_large_matrix() {
        let mut rng = StdRng::seed_from_u64(3);
        let n = 300;
        let a = random(&mut rng, n, 5.0, 15.0);
        assert_eq!(det(&a).unwrap_err().kind, ErrorKind::Numeric);
        let (l, s) = logdet(&a).unwrap();
        assert!(l.is_finite() && l > 709.0, "{l}");
        assert!(s == 1.0 || s == -1.0);
        // logdet(c·A) = n·log|c| + logdet(A); sign flips with (−1)ⁿ for c < 0.
        let (l2, s2) = logdet(&a.map(|x| -0.1 * x)).unwrap();
        assert!((l2 - (l + n as f64 * 0.1f64.ln())).abs() < 1e-9 * l.abs());
        assert_eq!(s2, s);
        // Agrees with det where det is representable.
        let b = random(&mut rng, 20, -1.0, 1.0);
        let (lb, sb) = logdet(&b).unwrap();
        let db = det(&b).unwrap();
        assert!((sb * lb.exp() - db).abs() < 1e-12 * db.abs());
    }

    #[test]
    fn solve_vectors_and_matrices() {
        let mut rng = StdRng::seed_from_u64(11);
        for n in [1, 4, 50] {
            let a = random(&mut rng, n, -1.0, 1.0);
            let b = Tensor::from_vec(vec![n], (0..n).map(|i| i as f64 - 1.5).collect()).unwrap();
            let x = solve(&a, &b).unwrap();
            assert_eq!(x.shape(), &[n]);
            let mut r = einsum(&a, b"ij", &x, b"j", b"i");
            r.add_assign(&b.map(|v| -v));
            assert!(max_abs(&r) < 1e-10, "{}", max_abs(&r));
            let bm = Tensor::from_vec(vec![n, 3], (0..3 * n).map(|_| rng.gen_range(-1.0..1.0)).collect()).unwrap();
            let xm = solve(&a, &bm).unwrap();
            let mut r = einsum(&a, b"ij", &xm, b"jk", b"ik");
            r.add_assign(&bm.map(|v| -v));
            assert!(max_abs(&r) < 1e-10);
        }
        assert_eq!(
            solve(&Tensor::zeros(&[0, 0]), &Tensor::zeros(&[0])).unwrap().shape(),
            &[0]
        );
    }
}
