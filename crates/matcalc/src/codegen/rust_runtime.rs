// The runtime of generated Rust code. This file is not a module of the
// library: `codegen::rust` embeds it as text (`include_str!`) at the end of
// every generated module, which then compiles standalone with faer 0.24 as its
// only dependency.

/// The small runtime the generated code calls: a row-major tensor type,
/// products and decompositions through faer, index-notation kernels.
#[allow(dead_code, clippy::all)]
pub mod rt {
    use faer::linalg::matmul::matmul as gemm;
    use faer::linalg::solvers::DenseSolveCore;
    use faer::{Accum, Mat, MatMut, MatRef, Par};

    /// A dense `f64` tensor in row-major order: order 0 is a scalar, 1 a
    /// vector, 2 a matrix (higher orders occur in tensor-valued derivatives).
    #[derive(Clone, Debug, PartialEq)]
    pub struct Tensor {
        /// Extent of each axis.
        pub shape: Vec<usize>,
        /// Entries, row-major.
        pub data: Vec<f64>,
    }

    impl Tensor {
        /// A tensor from its shape and row-major entries.
        pub fn new(shape: Vec<usize>, data: Vec<f64>) -> Tensor {
            assert_eq!(
                shape.iter().product::<usize>(),
                data.len(),
                "shape {shape:?} and data disagree"
            );
            Tensor { shape, data }
        }

        /// An order-0 tensor.
        pub fn scalar(v: f64) -> Tensor {
            Tensor {
                shape: Vec::new(),
                data: vec![v],
            }
        }

        /// A vector.
        pub fn vector(v: &[f64]) -> Tensor {
            Tensor::new(vec![v.len()], v.to_vec())
        }

        /// Every entry `v`.
        pub fn full(shape: &[usize], v: f64) -> Tensor {
            Tensor {
                shape: shape.to_vec(),
                data: vec![v; shape.iter().product()],
            }
        }

        /// The identity matrix.
        pub fn eye(n: usize) -> Tensor {
            let mut t = Tensor::full(&[n, n], 0.0);
            for i in 0..n {
                t.data[i * n + i] = 1.0;
            }
            t
        }

        /// A copy of a faer matrix.
        pub fn from_mat(m: MatRef<'_, f64>) -> Tensor {
            let (r, c) = (m.nrows(), m.ncols());
            Tensor::new(vec![r, c], (0..r * c).map(|k| m[(k / c, k % c)]).collect())
        }

        /// A matrix (order 2) as a faer view; a vector is a column.
        pub fn as_mat(&self) -> MatRef<'_, f64> {
            match self.shape[..] {
                [r, c] => MatRef::from_row_major_slice(&self.data, r, c),
                [n] => MatRef::from_column_major_slice(&self.data, n, 1),
                _ => panic!("as_mat: shape {:?} is not a matrix or vector", self.shape),
            }
        }

        /// The value of an order-0 tensor.
        pub fn s(&self) -> f64 {
            assert!(self.shape.is_empty(), "not a scalar: shape {:?}", self.shape);
            self.data[0]
        }
    }

    /// An elementwise function of tensors of one shape.
    pub fn ew<const N: usize>(shape: &[usize], args: [&Tensor; N], f: impl Fn([f64; N]) -> f64) -> Tensor {
        let len = shape.iter().product();
        for a in &args {
            assert_eq!(a.data.len(), len, "elementwise operands differ in size");
        }
        let data = (0..len).map(|k| f(std::array::from_fn(|j| args[j].data[k]))).collect();
        Tensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// A matrix as a faer view for a product: a vector is a row on the left, a column on the right.
    fn operand(t: &Tensor, left: bool) -> MatRef<'_, f64> {
        match t.shape[..] {
            [r, c] => MatRef::from_row_major_slice(&t.data, r, c),
            [n] if left => MatRef::from_row_major_slice(&t.data, 1, n),
            [n] => MatRef::from_column_major_slice(&t.data, n, 1),
            _ => panic!("matrix product of an operand of shape {:?}", t.shape),
        }
    }

    fn product(a: &Tensor, ta: bool, b: &Tensor, tb: bool) -> Tensor {
        let mut av = operand(a, true);
        if ta {
            av = av.transpose();
        }
        let mut bv = operand(b, false);
        if tb {
            bv = bv.transpose();
        }
        assert_eq!(av.ncols(), bv.nrows(), "matrix product: inner dimensions differ");
        let (m, n) = (av.nrows(), bv.ncols());
        let mut shape = Vec::new();
        if a.shape.len() == 2 {
            shape.push(m);
        }
        if b.shape.len() == 2 {
            shape.push(n);
        }
        let mut data = vec![0.0; m * n];
        if m * n > 0 {
            gemm(
                MatMut::from_row_major_slice_mut(&mut data, m, n),
                Accum::Replace,
                av,
                bv,
                1.0,
                Par::Seq,
            );
        }
        Tensor { shape, data }
    }

    /// `a·b` (matrix–matrix, matrix–vector, or vector–matrix `aᵀb`).
    pub fn matmul(a: &Tensor, b: &Tensor) -> Tensor {
        product(a, false, b, false)
    }

    /// `aᵀ·b`.
    pub fn matmul_tn(a: &Tensor, b: &Tensor) -> Tensor {
        product(a, true, b, false)
    }

    /// `a·bᵀ`.
    pub fn matmul_nt(a: &Tensor, b: &Tensor) -> Tensor {
        product(a, false, b, true)
    }

    /// `aᵀ·bᵀ`.
    pub fn matmul_tt(a: &Tensor, b: &Tensor) -> Tensor {
        product(a, true, b, true)
    }

    /// The inner product of two vectors.
    pub fn dot(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.data.len(), b.data.len(), "dot: lengths differ");
        a.data.iter().zip(&b.data).map(|(x, y)| x * y).sum()
    }

    /// The outer product `a bᵀ` of two vectors.
    pub fn outer(a: &Tensor, b: &Tensor) -> Tensor {
        let (m, n) = (a.data.len(), b.data.len());
        let data = (0..m * n).map(|k| a.data[k / n] * b.data[k % n]).collect();
        Tensor::new(vec![m, n], data)
    }

    /// The trace of a square matrix.
    pub fn trace(a: &Tensor) -> f64 {
        let n = a.shape[0];
        (0..n).map(|i| a.data[i * n + i]).sum()
    }

    /// The diagonal of a square matrix.
    pub fn diag(a: &Tensor) -> Tensor {
        let n = a.shape[0];
        Tensor::new(vec![n], (0..n).map(|i| a.data[i * n + i]).collect())
    }

    /// The diagonal matrix of a vector.
    pub fn diag_matrix(v: &Tensor) -> Tensor {
        let n = v.data.len();
        let mut t = Tensor::full(&[n, n], 0.0);
        for i in 0..n {
            t.data[i * n + i] = v.data[i];
        }
        t
    }

    /// The transpose of a matrix.
    pub fn transpose(a: &Tensor) -> Tensor {
        let (r, c) = (a.shape[0], a.shape[1]);
        Tensor::new(vec![c, r], (0..r * c).map(|k| a.data[(k % r) * c + k / r]).collect())
    }

    /// The sum of all entries.
    pub fn sum_all(a: &Tensor) -> f64 {
        a.data.iter().sum()
    }

    fn strides(shape: &[usize]) -> Vec<usize> {
        let mut s = vec![1; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            s[d] = s[d + 1] * shape[d + 1];
        }
        s
    }

    /// Stride in a tensor labelled `labels` (with `strides`) of each of `all`, 0 where absent.
    fn stride_map(all: &[u8], labels: &[u8], strides: &[usize]) -> Vec<usize> {
        all.iter()
            .map(|l| labels.iter().position(|m| m == l).map_or(0, |p| strides[p]))
            .collect()
    }

    /// Visit every index of `extents` in row-major order with the offsets given by each stride set.
    fn walk<const K: usize>(extents: &[usize], strides: [&[usize]; K], mut f: impl FnMut([usize; K])) {
        if extents.iter().any(|&e| e == 0) {
            return;
        }
        let mut idx = vec![0usize; extents.len()];
        let mut off = [0usize; K];
        loop {
            f(off);
            let mut d = extents.len();
            loop {
                if d == 0 {
                    return;
                }
                d -= 1;
                idx[d] += 1;
                for k in 0..K {
                    off[k] += strides[k][d];
                }
                if idx[d] < extents[d] {
                    break;
                }
                for k in 0..K {
                    off[k] -= strides[k][d] * extents[d];
                }
                idx[d] = 0;
            }
        }
    }

    /// `out[o] = Σ a[i]` over the labels of `i` not in `o` (a permutation and/or sum);
    /// labels are letters, one per axis.
    pub fn reindex(a: &Tensor, ia: &str, out: &str) -> Tensor {
        let (ia, out) = (ia.as_bytes(), out.as_bytes());
        assert_eq!(ia.len(), a.shape.len(), "reindex: one label per axis");
        let shape: Vec<usize> = out
            .iter()
            .map(|l| a.shape[ia.iter().position(|m| m == l).unwrap()])
            .collect();
        let mut data = vec![0.0; shape.iter().product()];
        let so = stride_map(ia, out, &strides(&shape));
        let sa = strides(&a.shape);
        walk(&a.shape, [&sa, &so], |[p, q]| data[q] += a.data[p]);
        Tensor { shape, data }
    }

    /// `out[o] = Σ a[ia]·b[ib]` over the labels not in `o`; labels are letters, one per axis.
    pub fn einsum(a: &Tensor, ia: &str, b: &Tensor, ib: &str, out: &str) -> Tensor {
        let (ia, ib, out) = (ia.as_bytes(), ib.as_bytes(), out.as_bytes());
        assert_eq!(
            ia.len(),
            a.shape.len(),
            "einsum: one label per axis of the first operand"
        );
        assert_eq!(
            ib.len(),
            b.shape.len(),
            "einsum: one label per axis of the second operand"
        );
        let mut all: Vec<u8> = out.to_vec();
        for &l in ia.iter().chain(ib) {
            if !all.contains(&l) {
                all.push(l);
            }
        }
        let extent = |l: &u8| match ia.iter().position(|m| m == l) {
            Some(p) => a.shape[p],
            None => b.shape[ib.iter().position(|m| m == l).unwrap()],
        };
        let extents: Vec<usize> = all.iter().map(extent).collect();
        let shape: Vec<usize> = extents[..out.len()].to_vec();
        let mut data = vec![0.0; shape.iter().product()];
        let sa = stride_map(&all, ia, &strides(&a.shape));
        let sb = stride_map(&all, ib, &strides(&b.shape));
        let so = stride_map(&all, out, &strides(&shape));
        walk(&extents, [&sa, &sb, &so], |[p, q, r]| data[r] += a.data[p] * b.data[q]);
        Tensor { shape, data }
    }

    fn square(a: &Tensor, op: &str) -> usize {
        match a.shape[..] {
            [r, c] if r == c => r,
            _ => panic!("{op}: not a square matrix: shape {:?}", a.shape),
        }
    }

    /// The inverse of a square matrix (LU with partial pivoting).
    pub fn inv(a: &Tensor) -> Tensor {
        let n = square(a, "inv");
        if n == 0 {
            return a.clone();
        }
        let m: Mat<f64> = a.as_mat().partial_piv_lu().inverse();
        Tensor::from_mat(m.as_ref())
    }

    /// The determinant of a square matrix.
    pub fn det(a: &Tensor) -> f64 {
        if square(a, "det") == 0 {
            return 1.0;
        }
        a.as_mat().determinant()
    }

    /// log |det a| of a square matrix, from the pivots of its LU factorization.
    pub fn logdet(a: &Tensor) -> f64 {
        let n = square(a, "logdet");
        if n == 0 {
            return 0.0;
        }
        let lu = a.as_mat().partial_piv_lu();
        let u = lu.U();
        (0..n).map(|i| u[(i, i)].abs().ln()).sum()
    }

    /// log Σ exp over all entries, shifted by the maximum.
    pub fn logsumexp(a: &Tensor) -> f64 {
        let m = a.data.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        m + a.data.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
    }

    /// exp(a) / Σ exp(a) over all entries, shifted by the maximum.
    pub fn softmax(a: &Tensor) -> Tensor {
        let m = a.data.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = a.data.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        Tensor {
            shape: a.shape.clone(),
            data: e.iter().map(|v| v / s).collect(),
        }
    }

    /// 1 for x > 0, -1 for x < 0, 0 at 0.
    pub fn sign(x: f64) -> f64 {
        if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        }
    }

    /// Heaviside step: 1 for x > 0, else 0 (the derivative of relu).
    pub fn step(x: f64) -> f64 {
        if x > 0.0 {
            1.0
        } else {
            0.0
        }
    }

    /// The logistic function, without overflow.
    pub fn sigmoid(x: f64) -> f64 {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        }
    }

    /// log(1 + exp(x)), without overflow.
    pub fn softplus(x: f64) -> f64 {
        if x > 30.0 {
            x + (-x).exp().ln_1p()
        } else {
            x.exp().ln_1p()
        }
    }

    /// What `f_and_grad` returns: the value and the derivatives by key.
    pub type Output = (Tensor, Vec<(&'static str, Tensor)>);

    /// Standard normal numbers from a fixed seed (xorshift and Box–Muller).
    struct Normal(u64);

    impl Normal {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        fn next(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    /// `d` contracted over its last axes with every axis of `dir`.
    fn contract_last(d: &Tensor, dir: &Tensor) -> Tensor {
        let k = dir.data.len();
        let keep = d.shape.len() - dir.shape.len();
        let data = d
            .data
            .chunks(k.max(1))
            .map(|c| c.iter().zip(&dir.data).map(|(x, y)| x * y).sum())
            .collect();
        Tensor {
            shape: d.shape[..keep].to_vec(),
            data,
        }
    }

    /// Compare every derivative of `f` at `args` with central finite
    /// differences in random directions (see `check_grad`).
    pub fn check_derivatives(
        args: &[Tensor],
        names: &[&str],
        derivatives: &[(&'static str, &[&str])],
        symmetric: &[&str],
        seed: u64,
        f: impl Fn(&[Tensor]) -> Output,
    ) -> Vec<(&'static str, f64)> {
        let mut rng = Normal(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let (value, derivs) = f(args);
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        // Judge a zero derivative against the function's size, not rounding noise.
        let floor = 1e-3 * (1.0 + norm(&value.data));
        let mut errors = Vec::new();
        for &(key, wrt) in derivatives {
            let k = wrt.len();
            let h = [1e-6, 1e-4, 1e-3][k.min(3) - 1];
            let slot = |w: &str| names.iter().position(|n| *n == w).expect("a variable");
            let dirs: Vec<Tensor> = wrt
                .iter()
                .map(|&w| {
                    let a = &args[slot(w)];
                    let mut d = Tensor::new(a.shape.clone(), a.data.iter().map(|_| rng.next()).collect());
                    if symmetric.contains(&w) {
                        let t = transpose(&d);
                        d.data.iter_mut().zip(&t.data).for_each(|(x, y)| *x = (*x + y) / 2.0);
                    }
                    d
                })
                .collect();
            let mut exact = derivs.iter().find(|(n, _)| *n == key).expect("a derivative").1.clone();
            for d in dirs.iter().rev() {
                exact = contract_last(&exact, d);
            }
            let mut approx = vec![0.0; exact.data.len()];
            for signs in 0..1u32 << k {
                let mut shifted = args.to_vec();
                let mut sign = 1.0;
                for (j, (&w, d)) in wrt.iter().zip(&dirs).enumerate() {
                    let s = if signs >> j & 1 == 0 { 1.0 } else { -1.0 };
                    sign *= s;
                    let a = &mut shifted[slot(w)];
                    a.data.iter_mut().zip(&d.data).for_each(|(x, y)| *x += s * h * y);
                }
                let (v, _) = f(&shifted);
                approx.iter_mut().zip(&v.data).for_each(|(x, y)| *x += sign * y);
            }
            let denom = (2.0 * h).powi(k as i32);
            approx.iter_mut().for_each(|x| *x /= denom);
            let diff: Vec<f64> = exact.data.iter().zip(&approx).map(|(x, y)| x - y).collect();
            let scale = norm(&exact.data).max(norm(&approx)).max(floor);
            errors.push((key, norm(&diff) / scale));
        }
        errors
    }
}
