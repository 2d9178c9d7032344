//! Small statistics: mean, linear-interpolation quantiles (numpy's default, "type 7"), and a
//! deterministic bootstrap confidence interval for a median.

/// Arithmetic mean; `None` for an empty slice.
pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Quantile `q` in [0, 1] with linear interpolation between order statistics
/// (`h = (n-1)q`, numpy `percentile(..., method="linear")`). `None` for an empty slice.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    Some(quantile_sorted(&v, q))
}

/// [`quantile`] on an already sorted slice (must be non-empty).
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    let h = (v.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

pub fn median(xs: &[f64]) -> Option<f64> {
    quantile(xs, 0.5)
}

/// The largest finite value of a curve and its offset (the first, if repeated).
pub fn peak(curve: &[(f64, f64)]) -> Option<(f64, f64)> {
    curve
        .iter()
        .filter(|p| p.1.is_finite())
        .fold(None, |best: Option<(f64, f64)>, &(t, v)| match best {
            Some((_, bv)) if bv >= v => best,
            _ => Some((t, v)),
        })
}

/// RMSE over the offsets both curves have (matched to the millisecond), over `scale`.
pub fn nrmse(ours: &[(f64, f64)], paper: &[(f64, f64)], scale: f64) -> Option<f64> {
    let key = |t: f64| (t * 1000.0).round() as i64;
    let theirs: std::collections::BTreeMap<i64, f64> =
        paper.iter().map(|&(t, v)| (key(t), v)).collect();
    let diffs: Vec<f64> = ours
        .iter()
        .filter_map(|&(t, v)| Some(v - theirs.get(&key(t))?))
        .filter(|d| d.is_finite())
        .collect();
    if diffs.is_empty() || scale <= 0.0 {
        return None;
    }
    let mse = diffs.iter().map(|d| d * d).sum::<f64>() / diffs.len() as f64;
    Some(mse.sqrt() / scale)
}

/// SplitMix64: tiny, fast, and the same on every platform and crate version, so the bootstrap
/// interval in a summary is reproducible bit for bit.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform index in `0..n` (n > 0), by rejection so there is no modulo bias.
    pub fn index(&mut self, n: usize) -> usize {
        let n = n as u64;
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }
}

/// The default seed of every bootstrap in this crate.
pub const BOOTSTRAP_SEED: u64 = 0x5354_4152_5645_2025; // "STARVE" 2025

/// Percentile bootstrap `level` (e.g. 0.95) interval: `resample` draws one resample with the
/// generator and returns its statistic (`None` to skip it); the interval is the `(1-level)/2`
/// and `(1+level)/2` quantiles of those statistics. `None` when no resample gave one.
pub fn bootstrap_ci(
    resamples: usize,
    level: f64,
    seed: u64,
    mut resample: impl FnMut(&mut SplitMix64) -> Option<f64>,
) -> Option<(f64, f64)> {
    let mut rng = SplitMix64::new(seed);
    let mut values: Vec<f64> = (0..resamples).filter_map(|_| resample(&mut rng)).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let a = (1.0 - level) / 2.0;
    Some((
        quantile_sorted(&values, a),
        quantile_sorted(&values, 1.0 - a),
    ))
}

/// [`bootstrap_ci`] of the median of `xs`, resampled with replacement. `None` for an empty slice.
pub fn bootstrap_median_ci(
    xs: &[f64],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    let mut buf = vec![0.0; xs.len()];
    bootstrap_ci(resamples, level, seed, |rng| {
        for b in buf.iter_mut() {
            *b = xs[rng.index(xs.len())];
        }
        buf.sort_by(|a, b| a.total_cmp(b));
        Some(quantile_sorted(&buf, 0.5))
    })
}

/// [`bootstrap_ci`] of the mean of `xs`, resampled with replacement (a percentile bootstrap).
/// One value gives the interval `(x, x)`. `None` for an empty slice.
pub fn bootstrap_mean_ci(
    xs: &[f64],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    bootstrap_ci(resamples, level, seed, |rng| {
        let sum: f64 = (0..xs.len()).map(|_| xs[rng.index(xs.len())]).sum();
        Some(sum / xs.len() as f64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(median(&xs), Some(2.5));
        // numpy.percentile([1,2,3,4], 5) == 1.15, 95 -> 3.85
        assert!((quantile(&xs, 0.05).unwrap() - 1.15).abs() < 1e-12);
        assert!((quantile(&xs, 0.95).unwrap() - 3.85).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.3), Some(7.0));
        assert_eq!(quantile(&[], 0.3), None);
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_median() {
        let xs: Vec<f64> = (0..50).map(|i| (i as f64 * 7.3) % 11.0).collect();
        let a = bootstrap_median_ci(&xs, 1000, 0.95, BOOTSTRAP_SEED).unwrap();
        let b = bootstrap_median_ci(&xs, 1000, 0.95, BOOTSTRAP_SEED).unwrap();
        assert_eq!(a, b);
        let m = median(&xs).unwrap();
        assert!(a.0 <= m && m <= a.1, "{a:?} vs {m}");
        let c = bootstrap_median_ci(&[3.0; 5], 100, 0.95, 1).unwrap();
        assert_eq!(c, (3.0, 3.0));
    }

    #[test]
    fn bootstrap_of_the_mean_on_known_data() {
        // Resamples of [0, 10] have means 0, 5, 10 with chances 1/4, 1/2, 1/4: the 2.5 % and
        // 97.5 % quantiles of 2000 of them are 0 and 10.
        let ci = bootstrap_mean_ci(&[0.0, 10.0], 2000, 0.95, BOOTSTRAP_SEED).unwrap();
        assert_eq!(ci, (0.0, 10.0));
        // A 40 % interval (the 30 % and 70 % quantiles) is the middle mean.
        let mid = bootstrap_mean_ci(&[0.0, 10.0], 2000, 0.4, BOOTSTRAP_SEED).unwrap();
        assert_eq!(mid, (5.0, 5.0));
        assert_eq!(bootstrap_mean_ci(&[7.5], 2000, 0.95, 1), Some((7.5, 7.5)));
        assert_eq!(bootstrap_mean_ci(&[], 2000, 0.95, 1), None);
        let xs = [2.0, 4.0, 4.0, 5.0, 9.0];
        let (lo, hi) = bootstrap_mean_ci(&xs, 2000, 0.95, BOOTSTRAP_SEED).unwrap();
        assert!(
            (2.0..4.8).contains(&lo) && (4.8..=9.0).contains(&hi) && hi > 4.8,
            "{lo} {hi}"
        );
    }

    #[test]
    fn index_is_in_range() {
        let mut r = SplitMix64::new(42);
        for n in 1..20 {
            for _ in 0..100 {
                assert!(r.index(n) < n);
            }
        }
    }
}
