//! Small statistics for the freeze comparison: means, quantiles, Student-t confidence intervals and
//! Welch's t-test. Implemented here (regularised incomplete beta by continued fraction) to avoid a
//! numerics dependency for a dozen lines of maths.

/// Arithmetic mean; NaN for an empty slice.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample variance (n − 1 denominator); NaN below two values.
pub fn variance(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return f64::NAN;
    }
    let m = mean(xs);
    xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64
}

/// Quantile with linear interpolation between order statistics (NumPy's default); `sorted` ascending.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

/// A power of two near the largest magnitude in `samples`, by which they are divided before squaring:
/// exact (only the exponent changes), and it keeps variances of values near 1e±300 from overflowing
/// to infinity or underflowing to zero. 1 for samples without a finite non-zero value.
fn scale_of(samples: &[&[f64]]) -> f64 {
    let largest = samples.iter().flat_map(|s| s.iter()).map(|x| x.abs()).filter(|x| x.is_finite()).fold(0.0, f64::max);
    if largest == 0.0 { 1.0 } else { 2f64.powi(largest.log2().round().clamp(-1000.0, 1000.0) as i32) }
}

fn scaled(xs: &[f64], scale: f64) -> Vec<f64> {
    xs.iter().map(|x| x / scale).collect()
}

/// Two-sided 95% confidence interval of the mean, Student t with n − 1 degrees of freedom.
/// `None` below two values: one trial says nothing about noise.
pub fn mean_ci95(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.len() < 2 {
        return None;
    }
    let scale = scale_of(&[xs]);
    let ys = scaled(xs, scale);
    let m = mean(&ys);
    let half = t_quantile_two_sided(0.05, (ys.len() - 1) as f64) * (variance(&ys) / ys.len() as f64).sqrt();
    Some(((m - half) * scale, (m + half) * scale))
}

/// The standard error of the difference of two means, sqrt(s²ₐ/nₐ + s²ᵦ/nᵦ); NaN below two values in either.
pub fn welch_standard_error(a: &[f64], b: &[f64]) -> f64 {
    let scale = scale_of(&[a, b]);
    let (a, b) = (scaled(a, scale), scaled(b, scale));
    (variance(&a) / a.len() as f64 + variance(&b) / b.len() as f64).sqrt() * scale
}

/// Welch's unequal-variance t-test; returns (t, degrees of freedom, two-sided p).
/// `None` when either sample has fewer than two values. Computed on the samples divided by a
/// power of two ([`scale_of`]): t, the degrees of freedom and p do not depend on the scale.
pub fn welch_t_test(a: &[f64], b: &[f64]) -> Option<(f64, f64, f64)> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let scale = scale_of(&[a, b]);
    let (a, b) = (scaled(a, scale), scaled(b, scale));
    let (va, vb) = (variance(&a) / a.len() as f64, variance(&b) / b.len() as f64);
    let diff = mean(&a) - mean(&b);
    let se2 = va + vb;
    if se2 == 0.0 {
        // Both samples constant: identical means are indistinguishable, different ones certainly differ.
        return Some(if diff == 0.0 { (0.0, f64::INFINITY, 1.0) } else { (diff.signum() * f64::INFINITY, f64::INFINITY, 0.0) });
    }
    let t = diff / se2.sqrt();
    let (wa, wb) = (va / se2, vb / se2);
    let df = 1.0 / (wa * wa / (a.len() - 1) as f64 + wb * wb / (b.len() - 1) as f64);
    Some((t, df, t_two_sided_p(t, df)))
}

/// P(|T| ≥ |t|) for Student's t with `df` degrees of freedom.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    if !t.is_finite() {
        return 0.0;
    }
    if df.is_infinite() {
        return erfc(t.abs() / std::f64::consts::SQRT_2);
    }
    incomplete_beta(df / 2.0, 0.5, df / (df + t * t)).clamp(0.0, 1.0)
}

/// The t such that P(|T| ≥ t) = `alpha` (e.g. 2.776 for alpha 0.05, df 4), by bisection.
pub fn t_quantile_two_sided(alpha: f64, df: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0e4f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_two_sided_p(mid, df) > alpha { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9), accurate to ~1e-15 for x > 0.
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularised incomplete beta I_x(a, b) (Numerical Recipes' continued fraction).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    // One step of Lentz's method with coefficient `aa`: the factor it multiplies `h` by.
    let mut step = |aa: f64| {
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        d * c
    };
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        h *= step(m * (b - m) * x / ((qam + m2) * (a + m2)));
        let delta = step(-(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)));
        h *= delta;
        if (delta - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

fn erfc(x: f64) -> f64 {
    // Numerical Recipes' erfcc, relative error < 1.2e-7: plenty for a p-value.
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn t_quantiles_match_tables() {
        // Standard two-sided 95% critical values.
        for (df, want) in [(1.0, 12.706), (2.0, 4.303), (4.0, 2.776), (9.0, 2.262), (30.0, 2.042), (1000.0, 1.962)] {
            let got = t_quantile_two_sided(0.05, df);
            assert!(close(got, want, 2e-3), "df {df}: {got} vs {want}");
        }
    }

    #[test]
    fn welch_matches_a_worked_example() {
        // Wikipedia's Welch example 1; reference values from a direct computation (Simpson integration of the t density).
        let a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4];
        let b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4];
        let (t, df, p) = welch_t_test(&a, &b).unwrap();
        assert!(close(t, -2.4554, 1e-3), "t {t}");
        assert!(close(df, 24.988, 1e-2), "df {df}");
        assert!(close(p, 0.02138, 1e-4), "p {p}");
    }

    #[test]
    fn ci_and_quantiles() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
        let (lo, hi) = mean_ci95(&xs).unwrap();
        // mean 3, sd 1.5811, se 0.7071, t(4) 2.776 → ±1.963
        assert!(close(lo, 1.0368, 1e-3) && close(hi, 4.9632, 1e-3), "{lo} {hi}");
        assert_eq!(mean_ci95(&[1.0]), None);
        assert_eq!(quantile(&xs, 0.25), 2.0);
        assert_eq!(quantile(&[1.0, 2.0], 0.5), 1.5);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn constant_samples_do_not_divide_by_zero() {
        assert_eq!(welch_t_test(&[1.0, 1.0], &[1.0, 1.0]).unwrap().2, 1.0);
        assert_eq!(welch_t_test(&[1.0, 1.0], &[2.0, 2.0]).unwrap().2, 0.0);
        assert!(welch_t_test(&[1.0], &[2.0, 3.0]).is_none());
    }

    #[test]
    fn welch_and_intervals_do_not_depend_on_the_scale_of_the_values() {
        // Found by an audit: at 3e80 the degrees of freedom overflowed (p NaN, a false tie), at 1e-300
        // the variances underflowed (zero-width intervals).
        let a = [3.0, 3.02, 2.97, 3.01];
        let b = [2.0, 2.05, 1.98, 2.01];
        let (t, df, p) = welch_t_test(&a, &b).unwrap();
        let (lo, hi) = mean_ci95(&a).unwrap();
        for scale in [1e-300, 1e-80, 1e80, 1e300] {
            let (sa, sb): (Vec<f64>, Vec<f64>) = (a.iter().map(|x| x * scale).collect(), b.iter().map(|x| x * scale).collect());
            let (st, sdf, sp) = welch_t_test(&sa, &sb).unwrap();
            assert!(
                close(st, t, 1e-9 * t.abs()) && close(sdf, df, 1e-9 * df) && close(sp, p, 1e-9 * p),
                "scale {scale}: {st} {sdf} {sp}"
            );
            let (slo, shi) = mean_ci95(&sa).unwrap();
            assert!(close(slo / scale, lo, 1e-9) && close(shi / scale, hi, 1e-9), "scale {scale}: [{slo}, {shi}]");
            let se = welch_standard_error(&sa, &sb) / scale;
            assert!(close(se, welch_standard_error(&a, &b), 1e-12), "scale {scale}: {se}");
        }
    }
}
