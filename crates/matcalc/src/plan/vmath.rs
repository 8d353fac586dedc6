//! Elementwise sin, cos, exp, tanh, log and sigmoid over slices, written without branches
//! so that the loops vectorize (compiled for AVX2/FMA when the CPU has it,
//! through `pulp`'s runtime dispatch). They agree with the standard library
//! to a few units in the last place: sin/cos reduce the argument by π/2 in
//! three parts (Cody–Waite) and use fdlibm's kernel polynomials; exp uses
//! fdlibm's polynomial and builds 2ᵏ from bits; tanh is Cephes' rational
//! approximation near 0 and `1 − 2/(e^{2|x|} + 1)` elsewhere; log is
//! fdlibm's; sigmoid is the interpreter's formula on `exp(−|x|)`. Arguments
//! outside the range where the reductions are exact (large, subnormal-
//! producing or non-finite) are recomputed with the standard library.

// The constants are fdlibm's and Cephes', digit for digit.
#![allow(clippy::excessive_precision)]

use pulp::Arch;

/// One of the vectorized functions over a slice, run under `pulp`'s dispatch
/// (so the loop is compiled for the CPU's vector extensions).
struct Apply<'a> {
    which: Which,
    x: &'a [f64],
    dst: &'a mut [f64],
}

#[derive(Clone, Copy)]
enum Which {
    Sin,
    Cos,
    Exp,
    Tanh,
    Log,
    Sigmoid,
}

impl pulp::WithSimd for Apply<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let (x, dst) = (self.x, self.dst);
        match self.which {
            Which::Sin => sincos_loop::<false>(x, dst),
            Which::Cos => sincos_loop::<true>(x, dst),
            Which::Exp => dst.iter_mut().zip(x).for_each(|(d, &v)| *d = exp_kernel(v)),
            Which::Tanh => dst.iter_mut().zip(x).for_each(|(d, &v)| *d = tanh_kernel(v)),
            Which::Log => dst.iter_mut().zip(x).for_each(|(d, &v)| *d = log_kernel(v)),
            Which::Sigmoid => dst.iter_mut().zip(x).for_each(|(d, &v)| *d = sigmoid_kernel(v)),
        }
    }
}

/// `dst = f(x)` for one of the functions: the vectorized kernel, then the
/// standard library where the argument is outside the kernel's range.
fn apply(which: Which, x: &[f64], dst: &mut [f64]) {
    Arch::new().dispatch(Apply {
        which,
        x,
        dst: &mut *dst,
    });
    match which {
        Which::Sin => fix_up(x, dst, |v| v.abs() <= TRIG_MAX, f64::sin),
        Which::Cos => fix_up(x, dst, |v| v.abs() <= TRIG_MAX, f64::cos),
        Which::Exp => fix_up(x, dst, |v| v > EXP_MIN && v < EXP_MAX, f64::exp),
        Which::Tanh => fix_up(x, dst, f64::is_finite, f64::tanh),
        Which::Log => fix_up(x, dst, |v| (f64::MIN_POSITIVE..f64::INFINITY).contains(&v), f64::ln),
        Which::Sigmoid => fix_up(x, dst, |v| v.abs() < -EXP_MIN, sigmoid_exact),
    }
}

/// `dst[i] = x[i].sin()`.
pub(crate) fn sin(x: &[f64], dst: &mut [f64]) {
    apply(Which::Sin, x, dst)
}

/// `dst[i] = x[i].cos()`.
pub(crate) fn cos(x: &[f64], dst: &mut [f64]) {
    apply(Which::Cos, x, dst)
}

/// `dst[i] = x[i].exp()`.
pub(crate) fn exp(x: &[f64], dst: &mut [f64]) {
    apply(Which::Exp, x, dst)
}

/// `dst[i] = x[i].tanh()`.
pub(crate) fn tanh(x: &[f64], dst: &mut [f64]) {
    apply(Which::Tanh, x, dst)
}

/// `dst[i] = 1 / (1 + exp(−x[i]))`.
pub(crate) fn sigmoid(x: &[f64], dst: &mut [f64]) {
    apply(Which::Sigmoid, x, dst)
}

/// The interpreter's sigmoid (`Func::Sigmoid`): no overflow on either side.
fn sigmoid_exact(v: f64) -> f64 {
    crate::ir::Func::Sigmoid.apply(v)
}

/// The same formula on `e = exp(−|v|)`: `1/(1 + e)` for v ≥ 0, `e/(1 + e)` below.
#[inline(always)]
fn sigmoid_kernel(v: f64) -> f64 {
    let e = exp_kernel(-v.abs());
    let r = 1.0 / (1.0 + e);
    if v >= 0.0 {
        r
    } else {
        e * r
    }
}

/// `dst[i] = x[i].ln()`.
pub(crate) fn log(x: &[f64], dst: &mut [f64]) {
    apply(Which::Log, x, dst)
}

/// Recompute with `exact` where `ok` does not hold.
#[inline(always)]
fn fix_up(x: &[f64], dst: &mut [f64], ok: impl Fn(f64) -> bool, exact: impl Fn(f64) -> f64) {
    for (d, &v) in dst.iter_mut().zip(x) {
        if !ok(v) {
            *d = exact(v);
        }
    }
}

/// Largest |x| reduced by the three-part π/2 (|n| < 2¹⁷, products exact).
const TRIG_MAX: f64 = 1.0e5;
const FRAC_2_PI: f64 = std::f64::consts::FRAC_2_PI;
/// π/2 in three parts of 33, 33 and 53 bits (fdlibm's pio2_1, pio2_2, pio2_2t).
const PIO2_1: f64 = 1.570_796_326_734_125_614_17;
const PIO2_2: f64 = 6.077_100_506_303_965_976_60e-11;
const PIO2_3: f64 = 2.022_266_248_795_950_631_54e-21;
const S1: f64 = -1.666_666_666_666_663_243_48e-1;
const S2: f64 = 8.333_333_333_322_489_461_24e-3;
const S3: f64 = -1.984_126_982_985_794_931_34e-4;
const S4: f64 = 2.755_731_370_707_006_767_89e-6;
const S5: f64 = -2.505_076_025_340_686_341_95e-8;
const S6: f64 = 1.589_690_995_211_550_102_21e-10;
const C1: f64 = 4.166_666_666_666_660_190_37e-2;
const C2: f64 = -1.388_888_888_887_410_957_49e-3;
const C3: f64 = 2.480_158_728_947_672_941_78e-5;
const C4: f64 = -2.755_731_435_139_066_330_35e-7;
const C5: f64 = 2.087_572_321_298_174_827_90e-9;
const C6: f64 = -1.135_964_755_778_819_482_65e-11;

/// Adding then subtracting 1.5·2⁵² rounds to an integer (for |x| < 2⁵¹),
/// and leaves that integer's low bits in the sum's low mantissa bits.
const ROUND: f64 = 6_755_399_441_055_744.0;

#[inline(always)]
fn sincos_loop<const COS: bool>(x: &[f64], dst: &mut [f64]) {
    for (d, &v) in dst.iter_mut().zip(x) {
        // Clamp so out-of-range arguments stay harmless (they are fixed up after).
        let v = if v.abs() <= TRIG_MAX { v } else { 0.0 };
        let t = v.mul_add(FRAC_2_PI, ROUND);
        let n = t - ROUND;
        let r = (-n).mul_add(PIO2_3, (-n).mul_add(PIO2_2, (-n).mul_add(PIO2_1, v)));
        let z = r * r;
        let ps = S6
            .mul_add(z, S5)
            .mul_add(z, S4)
            .mul_add(z, S3)
            .mul_add(z, S2)
            .mul_add(z, S1);
        let s = (z * r).mul_add(ps, r);
        let pc = C6
            .mul_add(z, C5)
            .mul_add(z, C4)
            .mul_add(z, C3)
            .mul_add(z, C2)
            .mul_add(z, C1);
        let hz = 0.5 * z;
        let w = 1.0 - hz;
        let c = w + z.mul_add(z * pc, (1.0 - w) - hz);
        // Quadrant q = n mod 4 from the rounding's low bits (cos(x) = sin(x + π/2): shift by one).
        let q = t.to_bits().wrapping_add(COS as u64);
        let val = if q & 1 == 1 { c } else { s };
        *d = f64::from_bits(val.to_bits() ^ ((q & 2) << 62));
    }
}

const EXP_MAX: f64 = 709.0;
const EXP_MIN: f64 = -708.0;
const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
const INV_LN2: f64 = std::f64::consts::LOG2_E;
const P1: f64 = 1.666_666_666_666_660_190_37e-1;
const P2: f64 = -2.777_777_777_701_559_338_42e-3;
const P3: f64 = 6.613_756_321_437_934_361_17e-5;
const P4: f64 = -1.653_390_220_546_525_153_90e-6;
const P5: f64 = 4.138_136_797_057_238_460_39e-8;

#[inline(always)]
fn exp_kernel(v: f64) -> f64 {
    let v = if v > EXP_MIN && v < EXP_MAX { v } else { 0.0 };
    let k = v.mul_add(INV_LN2, ROUND) - ROUND;
    let hi = (-k).mul_add(LN2_HI, v);
    let lo = k * LN2_LO;
    let r = hi - lo;
    let t = r * r;
    let c = (-t).mul_add(P5.mul_add(t, P4).mul_add(t, P3).mul_add(t, P2).mul_add(t, P1), r);
    let y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    // 2^k from its bits: k + 1023 in the low bits of 2^52 + (k + 1023).
    let two_k = f64::from_bits((k + (1023.0 + 4_503_599_627_370_496.0)).to_bits() << 52);
    y * two_k
}

const LG1: f64 = 6.666_666_666_666_735_130e-1;
const LG2: f64 = 3.999_999_999_940_941_908e-1;
const LG3: f64 = 2.857_142_874_366_239_149e-1;
const LG4: f64 = 2.222_219_843_214_978_396e-1;
const LG5: f64 = 1.818_357_216_161_805_012e-1;
const LG6: f64 = 1.531_383_769_920_937_332e-1;
const LG7: f64 = 1.479_819_860_511_658_591e-1;

/// fdlibm's log for positive normal finite `v` (others are fixed up after):
/// `v = 2ᵏ·m` with `m ∈ [√2/2, √2)`, `f = m − 1`, `s = f/(2 + f)`, and
/// `log(1 + f) = f − s·(f − R(s²))` with its minimax polynomial R.
#[inline(always)]
fn log_kernel(v: f64) -> f64 {
    let bits = v.to_bits();
    // Exponent and mantissa from the bits; the mantissa moved into [√2/2, √2).
    let e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let big = m > std::f64::consts::SQRT_2;
    let m = if big { 0.5 * m } else { m };
    // k as a float without an integer conversion: the bits of 1.5·2⁵² plus k.
    let k = f64::from_bits(ROUND.to_bits().wrapping_add((e + i64::from(big)) as u64)) - ROUND;
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * LG6.mul_add(w, LG4).mul_add(w, LG2);
    let t2 = z * LG7.mul_add(w, LG5).mul_add(w, LG3).mul_add(w, LG1);
    let r = t2 + t1;
    let hfsq = 0.5 * f * f;
    k.mul_add(LN2_HI, -((hfsq - s.mul_add(hfsq + r, k * LN2_LO)) - f))
}

const TP0: f64 = -9.643_991_794_250_522_386_28e-1;
const TP1: f64 = -9.928_772_310_019_185_865_64e1;
const TP2: f64 = -1.614_687_684_417_084_479_52e3;
const TQ0: f64 = 1.128_116_784_916_329_314_02e2;
const TQ1: f64 = 2.235_488_390_601_004_485_83e3;
const TQ2: f64 = 4.844_063_053_251_254_860_48e3;

#[inline(always)]
fn tanh_kernel(v: f64) -> f64 {
    let a = v.abs().min(20.0);
    let s = exp_kernel(2.0 * a);
    let big = 1.0 - 2.0 / (s + 1.0);
    let big = if v < 0.0 { -big } else { big };
    let z = v * v;
    let small = v + v * z * (((TP0 * z + TP1) * z + TP2) / (((z + TQ0) * z + TQ1) * z + TQ2));
    if a > 0.625 {
        big
    } else {
        small
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> f64 {
        if a == b {
            return 0.0;
        }
        (a - b).abs() / (f64::EPSILON * a.abs().max(b.abs()).max(f64::MIN_POSITIVE))
    }

    fn compare(f: fn(&[f64], &mut [f64]), exact: fn(f64) -> f64, xs: &[f64], max_ulps: f64) {
        let mut out = vec![0.0; xs.len()];
        f(xs, &mut out);
        for (&x, &y) in xs.iter().zip(&out) {
            let want = exact(x);
            if want.is_nan() {
                assert!(y.is_nan(), "{x}: {y} vs NaN");
                continue;
            }
            // sin/cos near their zeros: compare absolutely (the reduction's error).
            let e = ulps(y, want).min((y - want).abs() / f64::EPSILON);
            assert!(e <= max_ulps, "{x}: {y} vs {want} ({e} ulps)");
        }
    }

    fn points() -> Vec<f64> {
        let mut v: Vec<f64> = (-4000..4000).map(|i| i as f64 * 0.01).collect();
        v.extend((-300..300).map(|i| i as f64 * 2.37));
        v.extend([
            0.0,
            -0.0,
            1e-300,
            -1e-20,
            1e-8,
            1e5,
            -1e5,
            1.5e5,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            708.9,
            709.5,
            -707.9,
            -745.0,
            -800.0,
            0.625,
            -0.625,
            0.6251,
            19.9,
            25.0,
        ]);
        v
    }

    #[test]
    fn agree_with_the_standard_library() {
        let xs = points();
        compare(sin, f64::sin, &xs, 4.0);
        compare(cos, f64::cos, &xs, 4.0);
        compare(exp, f64::exp, &xs, 2.0);
        compare(tanh, f64::tanh, &xs, 3.0);
        compare(log, f64::ln, &xs, 2.0);
        compare(sigmoid, sigmoid_exact, &xs, 4.0);
        let more: Vec<f64> = (1..20000)
            .map(|i| i as f64 * 1.37e-3)
            .chain((-300..300).map(|e| 1.7f64.powi(e)))
            .collect();
        compare(log, f64::ln, &more, 2.0);
    }
}
