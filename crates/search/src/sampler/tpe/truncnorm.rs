//! Normal-distribution helpers for TPE's truncated Gaussian kernels.
//!
//! The precise functions (`ndtr`, `log_ndtr`, `log_gauss_mass`, `truncnorm_log_pdf`) use libm's
//! fdlibm-accurate `erfc` and stay accurate deep into the tails, where a kernel far from a
//! candidate has a probability mass like e^-200. Two fast, branch-free approximations
//! (`fast_exp`, `fast_log_z`) serve the hot loop of the acquisition function; their error bounds
//! are stated and tested against the precise ones.

use std::f64::consts::{FRAC_1_SQRT_2, LN_2};

/// ln √(2π).
pub const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// The standard normal CDF Φ(t).
pub fn ndtr(t: f64) -> f64 {
    0.5 * libm::erfc(-t * FRAC_1_SQRT_2)
}

/// ln Φ(t), accurate for any t (an asymptotic series below −30, where Φ underflows).
pub fn log_ndtr(t: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    if t > 0.0 {
        return (-ndtr(-t)).ln_1p();
    }
    if t > -30.0 {
        return ndtr(t).ln();
    }
    // Φ(t) = φ(t)/(−t) · (1 − 1/t² + 3/t⁴ − 15/t⁶ + 105/t⁸ − …); at t ≤ −30 the next term is < 1e-12.
    let r = 1.0 / (t * t);
    let series = 1.0 - r * (1.0 - r * (3.0 - r * (15.0 - r * 105.0)));
    -0.5 * t * t - LN_SQRT_2PI - (-t).ln() + series.ln()
}

/// ln(1 − eˣ) for x ≤ 0, without cancellation (Mächler 2012).
fn log1mexp(x: f64) -> f64 {
    if x > -LN_2 { (-x.exp_m1()).ln() } else { (-x.exp()).ln_1p() }
}

/// ln(Φ(b) − Φ(a)), the log probability mass of a standard normal on [a, b]; −∞ when a ≥ b.
/// Accurate in both tails, where the naive difference cancels to zero.
pub fn log_gauss_mass(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a >= b {
        return f64::NEG_INFINITY;
    }
    if b <= 0.0 {
        let (la, lb) = (log_ndtr(a), log_ndtr(b));
        if la == f64::NEG_INFINITY {
            return lb;
        }
        lb + log1mexp(la - lb)
    } else if a >= 0.0 {
        log_gauss_mass(-b, -a)
    } else {
        (-(ndtr(a) + ndtr(-b))).ln_1p()
    }
}

/// ln Z = ln(Φ(b) − Φ(a)) of a kernel whose centre lies inside its bounds (a < 0 < b), as
/// [`log_gauss_mass`] computes it but without the erfc of a bound beyond 8.5σ: that tail
/// (< 1e-17) is below the last bit of the other's when the kernel is near a bound.
pub fn log_z_near_bound(a: f64, b: f64) -> f64 {
    if a < 0.0 && b > 0.0 {
        let tail = |t: f64| if t < -8.5 { 0.0 } else { ndtr(t) };
        (-(tail(a) + tail(-b))).ln_1p()
    } else {
        log_gauss_mass(a, b)
    }
}

/// A small direct-mapped cache of a pure function of two floats, per thread. TPE's precise
/// truncation constants and bin masses take a few erfc each, and their arguments recur from ask
/// to ask (grid kernels share a few bandwidths; most kernels keep theirs when a trial is added).
struct Memo {
    keys: Vec<(u64, u64)>,
    values: Vec<f64>,
}

impl Memo {
    const BITS: u32 = 11;

    fn new() -> Self {
        // The key of an empty slot is NaN's, which no lookup uses (NaN is computed directly).
        Self { keys: vec![(f64::NAN.to_bits(), 0); 1 << Self::BITS], values: vec![0.0; 1 << Self::BITS] }
    }

    #[inline]
    fn get(&mut self, a: f64, b: f64, f: impl FnOnce(f64, f64) -> f64) -> f64 {
        if a.is_nan() || b.is_nan() {
            return f(a, b);
        }
        let key = (a.to_bits(), b.to_bits());
        let h = key.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ key.1.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        let i = (h >> (64 - Self::BITS)) as usize;
        if self.keys[i] != key {
            self.keys[i] = key;
            self.values[i] = f(a, b);
        }
        self.values[i]
    }
}

thread_local! {
    static MASS_MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::new(Memo::new());
    static NEAR_MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::new(Memo::new());
}

/// [`log_gauss_mass`], remembered (bit for bit the same value).
pub fn log_gauss_mass_memo(a: f64, b: f64) -> f64 {
    MASS_MEMO.with(|m| m.borrow_mut().get(a, b, log_gauss_mass))
}

/// [`log_z_near_bound`], remembered (bit for bit the same value).
pub fn log_z_near_bound_memo(a: f64, b: f64) -> f64 {
    NEAR_MEMO.with(|m| m.borrow_mut().get(a, b, log_z_near_bound))
}

/// Log density at `x` of the normal N(mu, sigma²) truncated to [low, high]; −∞ outside.
pub fn truncnorm_log_pdf(x: f64, mu: f64, sigma: f64, low: f64, high: f64) -> f64 {
    if !(low..=high).contains(&x) {
        return f64::NEG_INFINITY;
    }
    let z = (x - mu) / sigma;
    -0.5 * z * z - sigma.ln() - LN_SQRT_2PI - log_gauss_mass((low - mu) / sigma, (high - mu) / sigma)
}

const ROUND_MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5·2⁵², adding it rounds to an integer
const LOG2_E: f64 = std::f64::consts::LOG2_E;

/// eˣ for x ≤ 0, branch-free so that loops over it vectorise; relative error < 1e-13, so that
/// the log densities built from it match Optuna's (exact) ones to ~1e-13. Inputs below −700 give e^−700 ≈ 1e-304 instead of smaller values
/// (callers treat that as zero); inputs a little above 0 (rounding) are fine, NaN stays NaN.
#[inline(always)]
pub fn fast_exp(x: f64) -> f64 {
    // One comparison (a single `max` instruction), not a clamp: the hot loops are bound by the
    // latency of their chains of dependent operations.
    let x = if x < -700.0 { -700.0 } else { x };
    // eˣ = 2ᵗ with t = x·log₂e = n + f, |f| ≤ 1/2; t rounds off by < 1.2e-13 (|t| ≤ 1010), a
    // relative error of the result that is negligible next to the polynomial's. f is exact.
    let t = x * LOG2_E;
    let n = (t + ROUND_MAGIC) - ROUND_MAGIC;
    let f = t - n;
    // 2^f by its degree-11 Taylor polynomial (coefficients ln2ᵏ/k!; the first omitted term is
    // < 7e-15 for |f| ≤ 1/2), by Estrin's scheme: a third of the chain of dependent operations
    // of Horner's.
    let f2 = f * f;
    let f4 = f2 * f2;
    let f8 = f4 * f4;
    let p01 = 1.0 + f * LN_2;
    let p23 = 0.240_226_506_959_100_7 + f * 0.055_504_108_664_821_576;
    let p45 = 0.009_618_129_107_628_477 + f * 0.001_333_355_814_642_844_1;
    let p67 = 0.000_154_035_303_933_816_06 + f * 1.525_273_380_405_983_8e-5;
    let p89 = 1.321_548_679_014_430_5e-6 + f * 1.017_808_600_923_969_6e-7;
    let p1011 = 7.054_911_620_801_121e-9 + f * 4.445_538_271_870_81e-10;
    let p = (p01 + f2 * p23) + f4 * (p45 + f2 * p67) + f8 * (p89 + f2 * p1011);
    // 2ⁿ from the bits: n + 1023 sits in the low mantissa bits of (n + 1023 + 2⁵²).
    let biased = (n + (1023.0 + 4_503_599_627_370_496.0)).to_bits();
    p * f64::from_bits(biased << 52)
}

/// ln x for positive normal x, branch-free (vectorises); relative error < 1e-12. Zero, negative,
/// subnormal and non-finite inputs go to `f64::ln`.
#[inline(always)]
pub fn fast_ln(x: f64) -> f64 {
    if !(f64::MIN_POSITIVE..f64::INFINITY).contains(&x) {
        return x.ln();
    }
    fast_ln_normal(x)
}

/// [`fast_ln`] without the check for special inputs, so that a loop over it has no call and
/// vectorises: `x` must be positive, normal and finite.
#[inline(always)]
pub fn fast_ln_normal(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as f64 - 1023.0;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000); // [1, 2)
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1.0;
    }
    // ln m = 2·atanh(s), s = (m − 1)/(m + 1), |s| ≤ 0.172: the series to s¹³ leaves < 1e-12.
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let series =
        1.0 + z * (1.0 / 3.0 + z * (1.0 / 5.0 + z * (1.0 / 7.0 + z * (1.0 / 9.0 + z * (1.0 / 11.0 + z * (1.0 / 13.0))))));
    e * LN_2 + 2.0 * s * series
}

/// Φ(t) for t ≤ 0 through Numerical Recipes' `erfcc` (Chebyshev fit, fractional error < 1.2e-7
/// everywhere), evaluated with [`fast_exp`].
#[inline(always)]
fn fast_ndtr_neg(t: f64) -> f64 {
    let z = -t * FRAC_1_SQRT_2;
    let u = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + u * (1.000_023_68
            + u * (0.374_091_96
                + u * (0.096_784_18
                    + u * (-0.186_288_06
                        + u * (0.278_868_07
                            + u * (-1.135_203_98 + u * (1.488_515_87 + u * (-0.822_152_23 + u * 0.170_872_77))))))));
    0.5 * u * fast_exp(poly.min(0.0))
}

/// Φ(a) + Φ(−b): the mass a kernel loses outside [a, b] (a ≤ 0 ≤ b), branch-free.
#[inline(always)]
pub fn fast_tail_mass(a: f64, b: f64) -> f64 {
    fast_ndtr_neg(a.min(0.0)) + fast_ndtr_neg((-b).min(0.0))
}

/// ln(1 − s) for 0 ≤ s ≤ 0.99, branch-free (vectorises): the series of [`log1m_small`] below
/// 1e-4, [`fast_ln_normal`] of 1 − s above (absolute error < 2e-12, far below the 3e-7 of
/// [`fast_tail_mass`] that `s` comes from).
#[inline(always)]
pub fn fast_log1m(s: f64) -> f64 {
    let series = -s * (1.0 + s * (0.5 + s * (1.0 / 3.0)));
    let direct = fast_ln_normal((1.0 - s).clamp(0.01, 1.0));
    if s < 1e-4 { series } else { direct }
}

/// ln(1 − s) for 0 ≤ s < 1, with a short series when s is small (most kernels lose little mass).
#[inline]
pub fn log1m_small(s: f64) -> f64 {
    if s < 1e-4 { -s * (1.0 + s * (0.5 + s * (1.0 / 3.0))) } else { (-s).ln_1p() }
}

/// ln(Φ(b) − Φ(a)) for a ≤ 0 ≤ b with b − a ≥ 1: the truncation constant of a kernel centred inside
/// its bounds with σ ≤ the range (always true of TPE's kernels). Then the mass is ≥ 0.34, so the
/// 1.2e-7 relative error of Φ gives an absolute error < 3e-7 in the log.
pub fn fast_log_z(a: f64, b: f64) -> f64 {
    log1m_small(fast_tail_mass(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn ndtr_and_log_ndtr_match_known_values() {
        assert!(close(ndtr(0.0), 0.5, 1e-15));
        assert!(close(ndtr(1.0), 0.841_344_746_068_542_9, 1e-14));
        assert!(close(ndtr(-1.96), 0.024_997_895_148_220_43, 1e-13));
        // ln Φ(−40) = -804.60844201375378817 (mpmath)
        assert!(close(log_ndtr(-40.0), -804.608_442_013_753_8, 1e-12), "{}", log_ndtr(-40.0));
        assert!(close(log_ndtr(-29.9), ndtr(-29.9).ln(), 1e-12));
        // Continuity where the asymptotic series takes over.
        assert!(close(log_ndtr(-30.000_001), log_ndtr(-29.999_999), 1e-6));
        assert!(close(log_ndtr(10.0), -7.619_853_024_160_527e-24, 1e-10));
    }

    #[test]
    fn log_gauss_mass_is_accurate_in_the_tails_and_symmetric() {
        // Φ(1) − Φ(−1)
        assert!(close(log_gauss_mass(-1.0, 1.0), 0.682_689_492_137_085_9_f64.ln(), 1e-14));
        // Far right tail: ln(Φ(21) − Φ(20)) ≈ ln(Φc(20) − Φc(21)) = -203.917155372288...
        let tail = log_gauss_mass(20.0, 21.0);
        assert!(close(tail, -203.917_155_372_288_14, 1e-11), "{tail}");
        assert_eq!(log_gauss_mass(-21.0, -20.0), tail);
        assert_eq!(log_gauss_mass(1.0, 1.0), f64::NEG_INFINITY);
        assert!(log_gauss_mass(-0.001, 0.001).is_finite());
    }

    #[test]
    fn truncated_normal_density_integrates_to_one() {
        for &(mu, sigma, low, high) in
            &[(0.3, 0.1, 0.0, 1.0), (0.0, 2.0, 0.0, 1.0), (-1.0, 0.05, -1.0, 3.0), (5.0, 1.0, 0.0, 1.0)]
        {
            let n = 200_000;
            let h = (high - low) / n as f64;
            // Midpoint rule.
            let total: f64 = (0..n).map(|i| truncnorm_log_pdf(low + (i as f64 + 0.5) * h, mu, sigma, low, high).exp() * h).sum();
            assert!((total - 1.0).abs() < 1e-6, "mu={mu} sigma={sigma}: {total}");
        }
        // Known value: ln(φ(0.5) / (Φ(2) − Φ(−1))) = -0.84377223888021... (mpmath)
        let v = truncnorm_log_pdf(0.5, 0.0, 1.0, -1.0, 2.0);
        assert!(close(v, -0.843_772_238_880_210_2, 1e-12), "{v}");
        assert_eq!(truncnorm_log_pdf(2.5, 0.0, 1.0, -1.0, 2.0), f64::NEG_INFINITY);
    }

    #[test]
    fn fast_functions_agree_with_precise_ones() {
        for i in 0..=7000 {
            let x = -(i as f64) * 0.1;
            let (fast, exact) = (fast_exp(x), x.exp());
            assert!((fast - exact).abs() <= 2e-13 * exact, "exp({x}): {fast} vs {exact}");
        }
        for i in 1..=100_000 {
            let x = (i as f64 * 0.37).powf(3.1) * 1e-9;
            let (fast, exact) = (fast_ln(x), x.ln());
            assert!((fast - exact).abs() <= 1e-12 * exact.abs().max(1.0), "ln({x}): {fast} vs {exact}");
        }
        assert_eq!(fast_ln(0.0), f64::NEG_INFINITY);
        for i in 0..=9900 {
            let x = i as f64 * 1e-4;
            let (fast, exact) = (fast_log1m(x), (-x).ln_1p());
            assert!((fast - exact).abs() < 2e-12, "ln(1 - {x}): {fast} vs {exact}");
        }
        for i in 0..=200 {
            let a = -(i as f64) * 0.05;
            for width in [1.0, 2.5, 10.0] {
                let b = (a + width).max(0.0);
                let (fast, exact) = (fast_log_z(a, b), log_gauss_mass(a, b));
                assert!((fast - exact).abs() < 3e-7, "z({a}, {b}): {fast} vs {exact}");
            }
        }
    }
}
