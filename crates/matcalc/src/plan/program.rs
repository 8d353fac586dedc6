//! The lowered program: steps over preallocated buffers, and how to run them.
//!
//! Every value a step writes lives at the start of one buffer of the pool;
//! [`Program::run`] allocates nothing. A failure (a non-finite value, a
//! singular matrix) only sets a flag: the caller re-runs the interpreter to
//! get its exact error message.

use crate::eval::linalg::LuWork;
use crate::ir::Func;
use faer::linalg::matmul::{matmul, triangular};
use faer::{Accum, MatMut, MatRef, Par};

/// Most axes of an iteration space (the IR's 12, a batch axis, and room).
pub(crate) const MAX_AXES: usize = 16;

/// Entries of one register of a fused elementwise loop.
pub(crate) const CHUNK: usize = 256;

/// Where an operand's entries are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Src {
    /// A value of the program (an index into [`Program::val_buf`]).
    Val(u32),
    /// The caller's value of a variable (by variable index).
    Var(u32),
}

/// An operand of a fused op: a register (an earlier op) or a constant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Arg {
    /// The result of op number `.0`.
    R(u16),
    /// A constant.
    K(f64),
}

/// One op of a fused elementwise loop, computed on a chunk of entries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Op {
    /// Load leaf number `.0`.
    Load(u16),
    /// A constant chunk.
    Fill(f64),
    /// An elementwise function; `warn` flags zeros in the argument (sign/step in derivatives).
    Map { f: Func, a: u16, warn: Option<u16> },
    /// A constant power; `fix` (derivative-only negative powers) sets 0 where the base is 0.
    Pow { a: u16, p: f64, fix: Option<u16> },
    /// Sum.
    Add(Arg, Arg),
    /// Product.
    Mul(Arg, Arg),
}

/// An input of a fused loop: entries with a stride per axis of the iteration space.
#[derive(Clone, Debug)]
pub(crate) struct Leaf {
    pub src: Src,
    pub strides: Vec<usize>,
    /// Where entry 0 of the iteration space is.
    pub off: usize,
}

/// Most values a fused loop writes besides its last op's.
pub(crate) const MAX_EXTRA: usize = 4;

/// A value a fused loop writes besides its last op's: another op's entries
/// (in the loop's order, like the main output), or their sum.
#[derive(Clone, Debug)]
pub(crate) struct Extra {
    pub op: u16,
    pub out: u32,
    pub sum: bool,
    /// Check the sum for finiteness (the entries are checked as ops).
    pub check: bool,
}

/// A fused elementwise loop writing its last op's value in row-major order
/// (and the `extra` values).
#[derive(Clone, Debug)]
pub(crate) struct Fused {
    pub out: u32,
    /// Where the first entry is written.
    pub out_off: usize,
    pub extra: Vec<Extra>,
    /// Sums add to the values' current ones (a later block of a stream).
    pub acc: bool,
    /// The iteration space (simplified: unit axes dropped, contiguous ones merged).
    pub shape: Vec<usize>,
    pub leaves: Vec<Leaf>,
    pub ops: Vec<Op>,
    /// Which ops are IR nodes (checked for finiteness).
    pub checked: Vec<bool>,
    /// Per op, while running: the leaf and offset a contiguous load reads
    /// in place (`u16::MAX`: the result is in the op's register).
    pub direct: Vec<(u16, usize)>,
}

/// `out[o] = Σ a[i]`: a strided walk over `a`'s iteration space, with the
/// output's stride per axis (0 for summed axes).
#[derive(Clone, Debug)]
pub(crate) struct Reduce {
    pub a: Src,
    /// Where `a`'s first entry is.
    pub a_off: usize,
    pub out: u32,
    pub shape: Vec<usize>,
    pub a_strides: Vec<usize>,
    pub out_strides: Vec<usize>,
    pub out_len: usize,
    /// Some axis is summed (so the output is zeroed and accumulated).
    pub sums: bool,
    /// Add to the output instead of zeroing it first (a later block of a stream).
    pub acc: bool,
    pub check: bool,
}

/// A (batched) matrix product on strided views, done by faer.
#[derive(Clone, Debug)]
pub(crate) struct Gemm {
    pub a: Src,
    pub b: Src,
    pub out: u32,
    /// Where the first entries of A, B and C are.
    pub off: [usize; 3],
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Row and column strides of A (m×k), B (k×n) and C (m×n).
    pub a_s: (isize, isize),
    pub b_s: (isize, isize),
    pub c_s: (isize, isize),
    /// Batch axes: extent and strides in A, B, C.
    pub batch: Vec<(usize, usize, usize, usize)>,
    pub out_len: usize,
    /// C is symmetric (C = Aᵀ·B with B = A scaled): compute the lower half and mirror.
    pub sym: bool,
    /// C += A·B (a later block of a stream) instead of C = A·B.
    pub acc: bool,
    /// C = alpha·A·B (a constant factor of the product's only user).
    pub alpha: f64,
    pub check: bool,
}

/// Which LU-based function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LuKind {
    Inv,
    Det,
    LogDet,
}

/// A step of the program.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    Fused(Fused),
    Reduce(Reduce),
    Gemm(Gemm),
    /// Inverse, determinant or log-determinant of `batch` contiguous n×n matrices.
    Lu {
        kind: LuKind,
        a: Src,
        out: u32,
        n: usize,
        batch: usize,
        work: usize,
    },
    /// Log-sum-exp (`softmax == false`) or softmax of `batch` contiguous blocks of `len`.
    Lse {
        a: Src,
        out: u32,
        len: usize,
        batch: usize,
        softmax: bool,
    },
}

impl Step {
    /// The values the step writes.
    pub fn outs(&self) -> impl Iterator<Item = u32> + '_ {
        let extra: &[Extra] = match self {
            Step::Fused(f) => &f.extra,
            _ => &[],
        };
        std::iter::once(self.out()).chain(extra.iter().map(|e| e.out))
    }

    /// The value the step writes (its main one, for a fused loop).
    fn out(&self) -> u32 {
        match self {
            Step::Fused(f) => f.out,
            Step::Reduce(r) => r.out,
            Step::Gemm(g) => g.out,
            Step::Lu { out, .. } | Step::Lse { out, .. } => *out,
        }
    }
}

/// A lowered program with its buffers.
#[derive(Debug)]
pub(crate) struct Program {
    pub steps: Vec<Step>,
    /// The buffer of each value.
    pub val_buf: Vec<u32>,
    pub bufs: Vec<Vec<f64>>,
    /// Registers of the fused loops.
    pub regs: Vec<f64>,
    /// LU workspaces.
    pub lu: Vec<LuWork>,
    /// Set when a warning site fired (by site number).
    pub warned: Vec<bool>,
    /// Set at build time when a constant is not finite.
    pub bad_constant: bool,
}

/// Whether every entry is finite: `v·0` is 0 for finite `v` and NaN
/// otherwise; eight independent sums so the loop vectorizes.
#[inline(always)]
pub(crate) fn all_finite(x: &[f64]) -> bool {
    if x.len() >= 4096 {
        // A large array: under the CPU's vector extensions.
        struct Finite<'a>(&'a [f64]);
        impl pulp::WithSimd for Finite<'_> {
            type Output = bool;
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) -> bool {
                finite_sum(self.0)
            }
        }
        return pulp::Arch::new().dispatch(Finite(x));
    }
    finite_sum(x)
}

#[inline(always)]
fn finite_sum(x: &[f64]) -> bool {
    let mut acc = [0.0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v * 0.0;
        }
    }
    let rest: f64 = chunks.remainder().iter().map(|v| v * 0.0).sum();
    acc.iter().sum::<f64>() + rest == 0.0
}

/// Values of the variables, by variable index.
pub(crate) type Inputs<'v> = dyn Fn(u32) -> &'v [f64] + 'v;

impl Program {
    /// Run every step. Returns false when some value is not finite or a
    /// matrix function failed (the caller reports the error).
    pub fn run<'v>(&mut self, inputs: &Inputs<'v>) -> bool {
        // The whole step loop is compiled for the CPU's vector extensions
        // (the fused loops, reductions and checks are inlined into it).
        struct Run<'p, 'i, 'v> {
            program: &'p mut Program,
            inputs: &'i Inputs<'v>,
        }
        impl pulp::WithSimd for Run<'_, '_, '_> {
            type Output = bool;
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) -> bool {
                self.program.run_steps(self.inputs)
            }
        }
        pulp::Arch::new().dispatch(Run { program: self, inputs })
    }

    #[inline(always)]
    fn run_steps<'v>(&mut self, inputs: &Inputs<'v>) -> bool {
        if self.bad_constant {
            return false;
        }
        self.warned.iter_mut().for_each(|w| *w = false);
        let Program {
            steps,
            val_buf,
            bufs,
            regs,
            lu,
            warned,
            ..
        } = self;
        for step in steps.iter_mut() {
            // Every step writes one value: its buffer is taken out of the pool
            // for the step, so the inputs can be borrowed. The steps run here,
            // not in closures, so that they are compiled under this function's
            // vector extensions.
            let ob = val_buf[step.out() as usize] as usize;
            let mut o = std::mem::take(&mut bufs[ob]);
            let mut extra: [Vec<f64>; MAX_EXTRA] = Default::default();
            if let Step::Fused(f) = step {
                for (e, x) in f.extra.iter().zip(&mut extra) {
                    *x = std::mem::take(&mut bufs[val_buf[e.out as usize] as usize]);
                }
            }
            let get = Reader { val_buf, bufs, inputs };
            let ok = match step {
                Step::Fused(f) => run_fused(f, &mut o, &mut extra, &get, regs, warned),
                Step::Reduce(r) => run_reduce(r, &mut o, &get),
                Step::Gemm(g) => run_gemm(g, &mut o, &get),
                Step::Lu {
                    kind,
                    a,
                    n,
                    batch,
                    work,
                    ..
                } => run_lu(*kind, get.get(*a), &mut o, *n, *batch, &mut lu[*work]),
                Step::Lse {
                    a, len, batch, softmax, ..
                } => run_lse(get.get(*a), &mut o, *len, *batch, *softmax),
            };
            bufs[ob] = o;
            if let Step::Fused(f) = step {
                for (e, x) in f.extra.iter().zip(&mut extra) {
                    bufs[val_buf[e.out as usize] as usize] = std::mem::take(x);
                }
            }
            if !ok {
                return false;
            }
        }
        true
    }

    /// One line per step: what it does and at what size.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            let line = match s {
                Step::Fused(f) => format!(
                    "fused loop: {} ops over {:?}{}",
                    f.ops.len(),
                    f.shape,
                    match f.extra.len() {
                        0 => String::new(),
                        n => format!(", {} values", n + 1),
                    }
                ),
                Step::Reduce(r) => format!("{} over {:?}", if r.sums { "sum" } else { "copy" }, r.shape),
                Step::Gemm(g) => format!(
                    "{}product {}×{}×{}{}",
                    if g.sym { "symmetric " } else { "" },
                    g.m,
                    g.k,
                    g.n,
                    if g.batch.is_empty() {
                        String::new()
                    } else {
                        format!(" batched {:?}", g.batch.iter().map(|b| b.0).collect::<Vec<_>>())
                    }
                ),
                Step::Lu { kind, n, batch, .. } => format!("{kind:?} of {batch} {n}×{n}"),
                Step::Lse {
                    len, batch, softmax, ..
                } => {
                    format!("{} of {batch}×{len}", if *softmax { "softmax" } else { "logsumexp" })
                }
            };
            out.push_str(&line);
            out.push('\n');
        }
        let entries: usize = self.bufs.iter().map(Vec::len).sum::<usize>() + self.regs.len();
        out.push_str(&format!("buffers: {entries} entries\n"));
        out
    }

    /// The entries of a value.
    pub fn value(&self, v: u32, len: usize) -> &[f64] {
        &self.bufs[self.val_buf[v as usize] as usize][..len]
    }
}

/// Reads operands: the program's values and the caller's variables.
pub(crate) struct Reader<'a, 'v: 'a> {
    val_buf: &'a [u32],
    bufs: &'a [Vec<f64>],
    inputs: &'a Inputs<'v>,
}

impl<'a, 'v: 'a> Reader<'a, 'v> {
    fn get(&self, s: Src) -> &'a [f64] {
        match s {
            Src::Val(v) => &self.bufs[self.val_buf[v as usize] as usize],
            Src::Var(i) => (self.inputs)(i),
        }
    }
}

/// Odometer over `outer` extents, calling `f` with the index vector; offsets are the caller's.
#[inline]
fn next_index(idx: &mut [usize], outer: &[usize]) -> Option<usize> {
    // Returns the axis that advanced (all later axes reset to 0), or None at the end.
    let mut d = outer.len();
    while d > 0 {
        d -= 1;
        idx[d] += 1;
        if idx[d] < outer[d] {
            return Some(d);
        }
        idx[d] = 0;
    }
    None
}

#[inline(always)]
fn offset(idx: &[usize], strides: &[usize]) -> usize {
    idx.iter().zip(strides).map(|(i, s)| i * s).sum()
}

#[inline(always)]
fn run_fused(
    f: &mut Fused,
    out: &mut [f64],
    extra: &mut [Vec<f64>; MAX_EXTRA],
    get: &Reader<'_, '_>,
    regs: &mut [f64],
    warned: &mut [bool],
) -> bool {
    let mut sums = [0.0f64; MAX_EXTRA];
    let Fused {
        out_off,
        extra: extras,
        acc,
        shape,
        leaves,
        ops,
        checked,
        direct,
        ..
    } = f;
    {
        let rank = shape.len();
        let inner = shape[rank - 1];
        let outer = &shape[..rank - 1];
        if shape.contains(&0) {
            // Nothing to compute; empty sums are 0.
            for (k, e) in extras.iter().enumerate() {
                if e.sum && !*acc {
                    extra[k][0] = 0.0;
                }
            }
            return true;
        }
        let last = ops.len() - 1;
        // The last op writes straight into the output (unless it is a load).
        let into_out = !matches!(ops[last], Op::Load(_));
        let mut idx = [0usize; MAX_AXES];
        let mut ok = true;
        let mut out_off = *out_off;
        loop {
            let idx_outer = &idx[..rank - 1];
            let mut c0 = 0;
            while c0 < inner {
                let len = CHUNK.min(inner - c0);
                for (oi, op) in ops.iter().enumerate() {
                    let (done, rest) = regs.split_at_mut(oi * CHUNK);
                    let dst = if oi == last && into_out {
                        &mut out[out_off + c0..out_off + c0 + len]
                    } else {
                        &mut rest[..len]
                    };
                    // An op's result: its register, or for a contiguous load the input itself.
                    let reg = |r: u16| -> &[f64] {
                        match direct[r as usize] {
                            (l, base) if l != u16::MAX => &get.get(leaves[l as usize].src)[base..base + len],
                            _ => &done[r as usize * CHUNK..r as usize * CHUNK + len],
                        }
                    };
                    let arg = |a: Arg| -> Result<&[f64], f64> {
                        match a {
                            Arg::R(r) => Ok(reg(r)),
                            Arg::K(c) => Err(c),
                        }
                    };
                    let mut loaded_direct = None;
                    match *op {
                        Op::Load(l) => {
                            let leaf = &leaves[l as usize];
                            let data = get.get(leaf.src);
                            let st = leaf.strides[rank - 1];
                            let base = leaf.off + offset(idx_outer, &leaf.strides[..rank - 1]) + c0 * st;
                            match st {
                                1 if oi != last => loaded_direct = Some((l, base)),
                                1 => dst.copy_from_slice(&data[base..base + len]),
                                0 => dst.fill(data[base]),
                                _ => dst.iter_mut().enumerate().for_each(|(t, d)| *d = data[base + t * st]),
                            }
                        }
                        Op::Fill(c) => dst.fill(c),
                        Op::Map { f: func, a, warn } => {
                            let x = reg(a);
                            if let Some(w) = warn {
                                if x.contains(&0.0) {
                                    warned[w as usize] = true;
                                }
                            }
                            map_chunk(func, x, dst);
                        }
                        Op::Pow { a, p, fix } => {
                            let x = reg(a);
                            pow_chunk(p, x, dst);
                            if let Some(w) = fix {
                                if x.contains(&0.0) {
                                    warned[w as usize] = true;
                                    for (d, &v) in dst.iter_mut().zip(x) {
                                        if v == 0.0 {
                                            *d = 0.0;
                                        }
                                    }
                                }
                            }
                        }
                        Op::Add(a, b) => binary(arg(a), arg(b), dst, |x, y| x + y),
                        Op::Mul(a, b) => binary(arg(a), arg(b), dst, |x, y| x * y),
                    }
                    direct[oi] = loaded_direct.unwrap_or((u16::MAX, 0));
                    if checked[oi] && !all_finite(dst) {
                        ok = false;
                    }
                }
                if !into_out {
                    let r = last * CHUNK;
                    out[out_off + c0..out_off + c0 + len].copy_from_slice(&regs[r..r + len]);
                }
                for (k, e) in extras.iter().enumerate() {
                    let op = e.op as usize;
                    let x: &[f64] = match direct[op] {
                        (l, base) if l != u16::MAX => &get.get(leaves[l as usize].src)[base..base + len],
                        _ if op == last => &out[out_off + c0..out_off + c0 + len],
                        _ => &regs[op * CHUNK..op * CHUNK + len],
                    };
                    if e.sum {
                        sums[k] += sum(x);
                    } else {
                        extra[k][out_off + c0..out_off + c0 + len].copy_from_slice(x);
                    }
                }
                c0 += len;
            }
            out_off += inner;
            if next_index(&mut idx[..rank - 1], outer).is_none() {
                break;
            }
        }
        for (k, e) in extras.iter().enumerate().filter(|(_, e)| e.sum) {
            let s = if *acc { extra[k][0] + sums[k] } else { sums[k] };
            extra[k][0] = s;
            if e.check && !s.is_finite() {
                ok = false;
            }
        }
        ok
    }
}

/// `dst = a op b` where each side is a chunk (`Ok`) or a constant (`Err`).
#[inline(always)]
fn binary(a: Result<&[f64], f64>, b: Result<&[f64], f64>, dst: &mut [f64], op: impl Fn(f64, f64) -> f64) {
    match (a, b) {
        (Ok(x), Ok(y)) => {
            for ((d, &u), &v) in dst.iter_mut().zip(x).zip(y) {
                *d = op(u, v);
            }
        }
        (Ok(x), Err(c)) => {
            for (d, &u) in dst.iter_mut().zip(x) {
                *d = op(u, c);
            }
        }
        (Err(c), Ok(y)) => {
            for (d, &v) in dst.iter_mut().zip(y) {
                *d = op(c, v);
            }
        }
        (Err(c), Err(e)) => dst.fill(op(c, e)),
    }
}

#[inline(always)]
fn map_with(x: &[f64], dst: &mut [f64], g: impl Fn(f64) -> f64) {
    for (d, &v) in dst.iter_mut().zip(x) {
        *d = g(v);
    }
}

/// `dst = f(x)`, with the common functions in their own loops.
fn map_chunk(f: Func, x: &[f64], dst: &mut [f64]) {
    match f {
        Func::Sin => super::vmath::sin(x, dst),
        Func::Cos => super::vmath::cos(x, dst),
        Func::Exp => super::vmath::exp(x, dst),
        Func::Log => super::vmath::log(x, dst),
        Func::Tanh => super::vmath::tanh(x, dst),
        Func::Sigmoid => super::vmath::sigmoid(x, dst),
        Func::Abs => map_with(x, dst, f64::abs),
        Func::Relu => map_with(x, dst, |v| v.max(0.0)),
        other => map_with(x, dst, |v| other.apply(v)),
    }
}

/// `dst = x^p`, as the interpreter computes it (with `x·x` for squares).
#[inline(always)]
fn pow_chunk(p: f64, x: &[f64], dst: &mut [f64]) {
    if p == 2.0 {
        map_with(x, dst, |v| v * v)
    } else if p == 0.5 {
        map_with(x, dst, f64::sqrt)
    } else if p == -1.0 {
        map_with(x, dst, |v| 1.0 / v)
    } else {
        map_with(x, dst, |v| v.powf(p))
    }
}

#[inline(always)]
fn run_reduce(r: &Reduce, out: &mut [f64], get: &Reader<'_, '_>) -> bool {
    let a = get.get(r.a);
    let out = &mut out[..r.out_len];
    if r.sums && !r.acc {
        out.fill(0.0);
    }
    let rank = r.shape.len();
    if !r.shape.contains(&0) {
        let (n, sa, so) = (r.shape[rank - 1], r.a_strides[rank - 1], r.out_strides[rank - 1]);
        let outer = &r.shape[..rank - 1];
        let mut idx = [0usize; MAX_AXES];
        loop {
            let oa = r.a_off + offset(&idx[..rank - 1], &r.a_strides[..rank - 1]);
            let oo = offset(&idx[..rank - 1], &r.out_strides[..rank - 1]);
            match (sa, so, r.sums) {
                (1, 1, false) => out[oo..oo + n].copy_from_slice(&a[oa..oa + n]),
                (1, 0, _) => out[oo] += sum(&a[oa..oa + n]),
                (1, 1, true) => out[oo..oo + n]
                    .iter_mut()
                    .zip(&a[oa..oa + n])
                    .for_each(|(o, x)| *o += x),
                (_, _, false) => (0..n).for_each(|t| out[oo + t * so] = a[oa + t * sa]),
                (_, _, true) => (0..n).for_each(|t| out[oo + t * so] += a[oa + t * sa]),
            }
            if next_index(&mut idx[..rank - 1], outer).is_none() {
                break;
            }
        }
    }
    !r.check || all_finite(out)
}

/// `Σ x` with eight independent partial sums (so the loop vectorizes).
#[inline(always)]
fn sum(x: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let rest: f64 = chunks.remainder().iter().sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + rest
}

/// A strided matrix view (the caller guarantees the extents fit the slice).
fn view(data: &[f64], off: usize, m: usize, n: usize, s: (isize, isize)) -> MatRef<'_, f64> {
    let max = if m == 0 || n == 0 {
        0
    } else {
        off as isize + (m as isize - 1) * s.0 + (n as isize - 1) * s.1
    };
    assert!(max < data.len() as isize || m == 0 || n == 0, "view out of bounds");
    // SAFETY: every index (i, j) with i < m, j < n maps to off + i·s.0 + j·s.1 ≤ max < len.
    unsafe { MatRef::from_raw_parts(data.as_ptr().add(off), m, n, s.0, s.1) }
}

fn run_gemm(g: &Gemm, out: &mut [f64], get: &Reader<'_, '_>) -> bool {
    let (a, b) = (get.get(g.a), get.get(g.b));
    let out = &mut out[..g.out_len];
    let (m, n, k) = (g.m, g.n, g.k);
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        if !g.acc {
            out.fill(0.0);
        }
        return true;
    }
    let store = Store {
        acc: g.acc,
        alpha: g.alpha,
    };
    let nb = g.batch.len();
    let extents: [usize; MAX_AXES] = std::array::from_fn(|i| g.batch.get(i).map_or(1, |b| b.0));
    let mut idx = [0usize; MAX_AXES];
    loop {
        let [mut oa, mut ob, mut oc] = g.off;
        for (i, &(_, sa, sb, sc)) in g.batch.iter().enumerate() {
            oa += idx[i] * sa;
            ob += idx[i] * sb;
            oc += idx[i] * sc;
        }
        let done = if m == 1 && n == 1 {
            let d = dot(a, oa, g.a_s.1 as usize, b, ob, g.b_s.0 as usize, k);
            store.one(&mut out[oc], d);
            true
        } else if n == 1 {
            gemv(a, oa, g.a_s, m, k, b, ob, g.b_s.0, out, oc, g.c_s.0, store)
        } else if m == 1 {
            gemv(b, ob, (g.b_s.1, g.b_s.0), n, k, a, oa, g.a_s.1, out, oc, g.c_s.1, store)
        } else {
            false
        };
        if !done {
            // faer works best writing column-major results: for a row-major C
            // compute Cᵀ = Bᵀ·Aᵀ instead (the same memory, strides swapped;
            // faer's triangular product measured faster the other way).
            let (m, n, (a, oa, a_s), (b, ob, b_s), c_s) = if !g.sym && g.c_s.1.abs() < g.c_s.0.abs() {
                let t = |s: (isize, isize)| (s.1, s.0);
                (n, m, (b, ob, t(g.b_s)), (a, oa, t(g.a_s)), t(g.c_s))
            } else {
                (m, n, (a, oa, g.a_s), (b, ob, g.b_s), g.c_s)
            };
            let av = view(a, oa, m, k, a_s);
            let bv = view(b, ob, k, n, b_s);
            let max = oc as isize + (m as isize - 1) * c_s.0 + (n as isize - 1) * c_s.1;
            assert!(max < out.len() as isize, "gemm output out of bounds");
            // SAFETY: in bounds (checked above); the output does not alias the inputs
            // (the program gives every value written by a step its own buffer).
            let cv = unsafe { MatMut::from_raw_parts_mut(out.as_mut_ptr().add(oc), m, n, c_s.0, c_s.1) };
            let accum = if g.acc { Accum::Add } else { Accum::Replace };
            if g.sym {
                triangular::matmul(
                    cv,
                    triangular::BlockStructure::TriangularLower,
                    accum,
                    av,
                    triangular::BlockStructure::Rectangular,
                    bv,
                    triangular::BlockStructure::Rectangular,
                    g.alpha,
                    Par::Seq,
                );
                for i in 0..m {
                    for j in i + 1..n {
                        let lo = oc as isize + j as isize * c_s.0 + i as isize * c_s.1;
                        let up = oc as isize + i as isize * c_s.0 + j as isize * c_s.1;
                        out[up as usize] = out[lo as usize];
                    }
                }
            } else {
                matmul(cv, accum, av, bv, g.alpha, Par::Seq);
            }
        }
        if nb == 0 || next_index(&mut idx[..nb], &extents[..nb]).is_none() {
            break;
        }
    }
    if !g.check {
        return true;
    }
    // Only what this step wrote (a block of a stream writes a slice).
    let written = if nb == 0 && g.c_s.0 >= 0 && g.c_s.1 >= 0 {
        let end = g.off[2] + (m - 1) * g.c_s.0 as usize + (n - 1) * g.c_s.1 as usize + 1;
        &out[g.off[2]..end.min(out.len())]
    } else {
        &out[..]
    };
    all_finite(written)
}

/// `y = M·v` for an `l×k` matrix `M` (strides `ms`) and vectors `v`, `y`
/// (strides `vs`, `ys`), when `M`'s rows or columns are contiguous and the
/// vectors too: a dot product per row, or a sum of scaled columns. Returns
/// false (nothing done) for other layouts. Matrix–vector products are most of
/// the work in gradients of small problems, where a general GEMM call's setup
/// costs more than the product (measured: 3–7 µs per 100×95 product through
/// `matmul`, under 1 µs here).
#[allow(clippy::too_many_arguments)]
fn gemv(
    m: &[f64],
    om: usize,
    ms: (isize, isize),
    l: usize,
    k: usize,
    v: &[f64],
    ov: usize,
    vs: isize,
    y: &mut [f64],
    oy: usize,
    ys: isize,
    st: Store,
) -> bool {
    if (vs != 1 && k > 1) || (ys != 1 && l > 1) {
        return false;
    }
    let v = &v[ov..ov + k];
    let y = &mut y[oy..oy + l];
    if ms.1 == 1 || k == 1 {
        pulp::Arch::new().dispatch(RowDots {
            m: &m[om..],
            rs: ms.0 as usize,
            v,
            y,
            st,
        });
        true
    } else if ms.0 == 1 || l == 1 {
        pulp::Arch::new().dispatch(ColumnSums {
            m: &m[om..],
            cs: ms.1 as usize,
            v,
            y,
            st,
        });
        true
    } else {
        false
    }
}

/// `y[i] = Σ_p m[i·rs + p]·v[p]` (`+=` with `acc`).
struct RowDots<'a> {
    m: &'a [f64],
    rs: usize,
    v: &'a [f64],
    y: &'a mut [f64],
    st: Store,
}

/// How a product's result is stored: `y = α·s`, or `y += α·s` when accumulating.
#[derive(Clone, Copy)]
struct Store {
    acc: bool,
    alpha: f64,
}

impl Store {
    #[inline(always)]
    fn put(self, y: &mut [f64], s: &[f64]) {
        if !self.acc && self.alpha == 1.0 {
            y.copy_from_slice(s);
        } else {
            y.iter_mut().zip(s).for_each(|(y, &s)| self.one(y, s));
        }
    }

    #[inline(always)]
    fn one(self, y: &mut f64, s: f64) {
        *y = if self.acc {
            self.alpha.mul_add(s, *y)
        } else {
            self.alpha * s
        };
    }
}

impl pulp::WithSimd for RowDots<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let (m, rs, v, y, st) = (self.m, self.rs, self.v, self.y, self.st);
        let k = v.len();
        let row = |i: usize| &m[i * rs..i * rs + k];
        // Four rows at a time: each entry of v is loaded once for four
        // products, and the rows' sums are independent chains.
        // When every row starts at the same offset from a 32-byte boundary,
        // the first few entries are done apart so the vector loads of the
        // rows never straddle two cache lines (a large matrix from a
        // 16-byte-aligned allocation otherwise splits every other load).
        let misalign = (m.as_ptr() as usize / 8) % 4;
        let pre = if misalign != 0 && rs % 4 == 0 && k >= 8 {
            4 - misalign
        } else {
            0
        };
        // A matrix that may come from memory (a streamed block of rows is
        // read here first): ask for the rows a few groups ahead.
        let ahead = if y.len() * rs > PREFETCH_ROWDOTS_FROM {
            (PREFETCH_ROWS * rs) as isize
        } else {
            0
        };
        let mut i = 0;
        while i + 4 <= y.len() {
            let r = [row(i), row(i + 1), row(i + 2), row(i + 3)];
            let (r2, v2) = (r.map(|x| &x[pre..]), &v[pre..]);
            let mut s = if ahead != 0 {
                dots4::<S, true>(simd, r2, v2, ahead)
            } else {
                dots4::<S, false>(simd, r2, v2, 0)
            };
            for (st, rt) in s.iter_mut().zip(&r) {
                for q in 0..pre {
                    *st = rt[q].mul_add(v[q], *st);
                }
            }
            st.put(&mut y[i..i + 4], &s);
            i += 4;
        }
        while i < y.len() {
            st.one(&mut y[i], simd_dot(simd, row(i), v));
            i += 1;
        }
    }
}

/// How many rows ahead the matrix–vector kernels ask for a large matrix's
/// rows (measured on 10000×100: 10–15 % faster than none, better than 4, 8,
/// 16 or 24).
const PREFETCH_ROWS: usize = 12;

/// Entries from which the row-dot kernel prefetches (128 KiB: the row blocks
/// of a streamed gradient, `plan/stream.rs`, come from memory there).
const PREFETCH_ROWDOTS_FROM: usize = 1 << 14;

/// Entries from which the column kernel prefetches (512 KiB, the L2 cache: a
/// streamed block reaches it from the L2 cache, just read by the row dots).
const PREFETCH_COLUMNS_FROM: usize = 1 << 16;

/// Ask for the cache line at `p` (a hint: it never faults, whatever the address).
#[inline(always)]
fn prefetch(p: *const f64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch instruction is a hint; it reads nothing and cannot fault.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Four dot products with the same right side (rows as long as `v`), two
/// vector partial sums per row.
#[inline(always)]
fn dots4<S: pulp::Simd, const PF: bool>(simd: S, r: [&[f64]; 4], v: &[f64], ahead: isize) -> [f64; 4] {
    let (vh, vt) = S::as_simd_f64s(v);
    let rh = r.map(|x| S::as_simd_f64s(x).0);
    let zero = simd.splat_f64s(0.0);
    let mut a = [[zero; 2]; 4];
    let pairs = vh.len() / 2;
    for p in 0..pairs {
        if PF {
            for row in r {
                prefetch(row.as_ptr().wrapping_offset(ahead + 8 * p as isize));
            }
        }
        let (x0, x1) = (vh[2 * p], vh[2 * p + 1]);
        for t in 0..4 {
            a[t][0] = simd.mul_add_e_f64s(rh[t][2 * p], x0, a[t][0]);
            a[t][1] = simd.mul_add_e_f64s(rh[t][2 * p + 1], x1, a[t][1]);
        }
    }
    if vh.len() % 2 == 1 {
        let x = vh[vh.len() - 1];
        for t in 0..4 {
            a[t][0] = simd.mul_add_e_f64s(rh[t][vh.len() - 1], x, a[t][0]);
        }
    }
    let tail = v.len() - vt.len();
    std::array::from_fn(|t| {
        let mut s = simd.reduce_sum_f64s(simd.add_f64s(a[t][0], a[t][1]));
        for (q, &x) in vt.iter().enumerate() {
            s = r[t][tail + q].mul_add(x, s);
        }
        s
    })
}

/// A contiguous dot product, four vector partial sums.
#[inline(always)]
fn simd_dot<S: pulp::Simd>(simd: S, a: &[f64], b: &[f64]) -> f64 {
    let (ah, at) = S::as_simd_f64s(a);
    let (bh, bt) = S::as_simd_f64s(b);
    let zero = simd.splat_f64s(0.0);
    let mut acc = [zero; 4];
    let (a4, ar) = pulp::as_arrays::<4, _>(ah);
    let (b4, br) = pulp::as_arrays::<4, _>(bh);
    for (x, y) in a4.iter().zip(b4) {
        for j in 0..4 {
            acc[j] = simd.mul_add_e_f64s(x[j], y[j], acc[j]);
        }
    }
    for (x, y) in ar.iter().zip(br) {
        acc[0] = simd.mul_add_e_f64s(*x, *y, acc[0]);
    }
    let s = simd.add_f64s(simd.add_f64s(acc[0], acc[1]), simd.add_f64s(acc[2], acc[3]));
    let mut s = simd.reduce_sum_f64s(s);
    for (x, y) in at.iter().zip(bt) {
        s = x.mul_add(*y, s);
    }
    s
}

/// `y = Σ_p v[p]·m[p·cs ..][..len y]` (`+=` with `acc`).
struct ColumnSums<'a> {
    m: &'a [f64],
    cs: usize,
    v: &'a [f64],
    y: &'a mut [f64],
    st: Store,
}

impl pulp::WithSimd for ColumnSums<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let (l, cs) = (self.y.len(), self.cs);
        let (m, v, y, st) = (self.m, self.v, self.y, self.st);
        if l * v.len() > 16_384 {
            // A large matrix: stream it once, in memory order, four columns
            // at a time (y stays in the L1 cache).
            if !st.acc {
                y.fill(0.0);
            }
            stream_columns(m, cs, v, y, st.alpha);
            return;
        }
        // A small one: blocks of y held in registers over all columns (each
        // column segment is read once and y written once), 32 entries wide,
        // then narrower blocks for the rest.
        let mut i0 = 0;
        while i0 + 32 <= l {
            st.put(&mut y[i0..i0 + 32], &column_block::<32>(m, cs, v, i0));
            i0 += 32;
        }
        if i0 + 16 <= l {
            st.put(&mut y[i0..i0 + 16], &column_block::<16>(m, cs, v, i0));
            i0 += 16;
        }
        if i0 + 8 <= l {
            st.put(&mut y[i0..i0 + 8], &column_block::<8>(m, cs, v, i0));
            i0 += 8;
        }
        if i0 + 4 <= l {
            st.put(&mut y[i0..i0 + 4], &column_block::<4>(m, cs, v, i0));
            i0 += 4;
        }
        for (t, yi) in y[i0..].iter_mut().enumerate() {
            st.one(yi, column_block::<1>(m, cs, v, i0 + t)[0]);
        }
    }
}

/// `Σ_p v[p]·m[p·cs + i0 ..][..W]`, in registers.
#[inline(always)]
fn column_block<const W: usize>(m: &[f64], cs: usize, v: &[f64], i0: usize) -> [f64; W] {
    let mut acc = [0.0f64; W];
    for (p, &x) in v.iter().enumerate() {
        let c: &[f64; W] = m[p * cs + i0..p * cs + i0 + W].try_into().expect("W entries");
        for j in 0..W {
            acc[j] = c[j].mul_add(x, acc[j]);
        }
    }
    acc
}

/// `y += α·Σ_p v[p]·m[p·cs ..][..len y]` in one pass over `m`.
#[inline(always)]
fn stream_columns(m: &[f64], cs: usize, v: &[f64], y: &mut [f64], alpha: f64) {
    let (l, k) = (y.len(), v.len());
    let col = |p: usize| &m[p * cs..p * cs + l];
    // A matrix larger than the L2 cache comes from memory: ask for the
    // columns (rows of the stored matrix) a few groups ahead.
    let ahead = if l * k > PREFETCH_COLUMNS_FROM {
        PREFETCH_ROWS
    } else {
        0
    };
    let mut p = 0;
    while p + 4 <= k {
        if ahead != 0 {
            for q in p + ahead..(p + ahead + 4).min(k) {
                let c = m[q * cs..].as_ptr();
                (0..l).step_by(8).for_each(|j| prefetch(c.wrapping_add(j)));
            }
        }
        let (c0, c1, c2, c3) = (col(p), col(p + 1), col(p + 2), col(p + 3));
        let (x0, x1, x2, x3) = (alpha * v[p], alpha * v[p + 1], alpha * v[p + 2], alpha * v[p + 3]);
        for ((((yi, a), b), c), d) in y.iter_mut().zip(c0).zip(c1).zip(c2).zip(c3) {
            *yi = d.mul_add(x3, c.mul_add(x2, b.mul_add(x1, a.mul_add(x0, *yi))));
        }
        p += 4;
    }
    while p < k {
        let x = alpha * v[p];
        for (yi, a) in y.iter_mut().zip(col(p)) {
            *yi = a.mul_add(x, *yi);
        }
        p += 1;
    }
}

/// A contiguous dot product with independent partial sums (so it vectorizes;
/// `mul_add` is one instruction under the FMA dispatch of the callers).
#[inline(always)]
fn dot_kernel(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..16 {
            acc[j] = x[j].mul_add(y[j], acc[j]);
        }
    }
    let rest: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f64>() + rest
}

/// `Σ_p a[oa + p·sa]·b[ob + p·sb]`.
fn dot(a: &[f64], oa: usize, sa: usize, b: &[f64], ob: usize, sb: usize, k: usize) -> f64 {
    if sa == 1 && sb == 1 {
        dot_kernel(&a[oa..oa + k], &b[ob..ob + k])
    } else {
        (0..k).map(|p| a[oa + p * sa] * b[ob + p * sb]).sum()
    }
}

fn run_lu(kind: LuKind, a: &[f64], out: &mut [f64], n: usize, batch: usize, work: &mut LuWork) -> bool {
    for b in 0..batch {
        let ab = &a[b * n * n..(b + 1) * n * n];
        let ok = match kind {
            LuKind::Inv => work.inv_into(ab, &mut out[b * n * n..(b + 1) * n * n]).is_some(),
            LuKind::Det => work.det(ab).map(|d| out[b] = d).is_some(),
            LuKind::LogDet => work.logdet(ab).map(|d| out[b] = d).is_some(),
        };
        if !ok {
            return false;
        }
    }
    let len = if kind == LuKind::Inv { batch * n * n } else { batch };
    all_finite(&out[..len])
}

fn run_lse(a: &[f64], out: &mut [f64], len: usize, batch: usize, softmax: bool) -> bool {
    for b in 0..batch {
        let x = &a[b * len..(b + 1) * len];
        let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if softmax {
            let o = &mut out[b * len..(b + 1) * len];
            map_with(x, o, |v| (v - m).exp());
            let s: f64 = o.iter().sum();
            o.iter_mut().for_each(|v| *v /= s);
        } else {
            let s: f64 = x.iter().map(|v| (v - m).exp()).sum();
            out[b] = m + s.ln();
        }
    }
    all_finite(&out[..if softmax { batch * len } else { batch }])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written matrix–vector kernels (row dots four rows at a time,
    /// column blocks of 32/16/8/4/1, streaming for large matrices) against a
    /// plain loop, over sizes that exercise every tail, writing and adding.
    #[test]
    fn gemv_kernels_agree_with_a_plain_loop() {
        let sizes = [
            0usize, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 95, 100, 130, 300,
        ];
        for &l in &sizes {
            for &k in &sizes {
                let pad = 3;
                let m: Vec<f64> = (0..l * (k + pad) + k * (l + pad) + 3)
                    .map(|i| ((i * 37 % 101) as f64 - 50.0) / 7.0)
                    .collect();
                let v: Vec<f64> = (0..k).map(|i| ((i * 13 % 17) as f64 - 8.0) / 3.0).collect();
                // Row-major with row stride k + pad, and column-major with column stride l + pad.
                // Every start offset modulo four entries (the kernels peel to alignment).
                for (ms, stride, om) in [
                    ((k + pad) as isize, 1isize, 0),
                    (1, (l + pad) as isize, 0),
                    (((k + 3) & !3) as isize, 1, 1),
                    (((k + 3) & !3) as isize, 1, 2),
                    (((k + 3) & !3) as isize, 1, 3),
                ] {
                    for (acc, alpha) in [(false, 1.0), (true, 1.0), (false, -2.0), (true, 0.5)] {
                        let y0 = |i: usize| if acc { i as f64 - 2.5 } else { 0.0 };
                        let mut y: Vec<f64> = (0..l).map(|i| if acc { y0(i) } else { f64::NAN }).collect();
                        let done = gemv(&m, om, (ms, stride), l, k, &v, 0, 1, &mut y, 0, 1, Store { acc, alpha });
                        assert!(done || l == 0 || k == 0, "{l}×{k} {ms},{stride}");
                        if !done {
                            continue;
                        }
                        for (i, yi) in y.iter().enumerate() {
                            let want: f64 = y0(i)
                                + alpha
                                    * (0..k)
                                        .map(|p| m[om + i * ms as usize + p * stride as usize] * v[p])
                                        .sum::<f64>();
                            assert!(
                                (yi - want).abs() <= 1e-12 * (1.0 + want.abs()),
                                "{l}×{k} {ms},{stride} acc {acc} row {i}: {yi} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sums_agree_with_a_plain_loop() {
        for n in 0..40 {
            let x: Vec<f64> = (0..n).map(|i| (i as f64).sin()).collect();
            let want: f64 = x.iter().sum();
            assert!((sum(&x) - want).abs() < 1e-13, "{n}");
        }
    }
}
