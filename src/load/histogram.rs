//! Prometheus-style histograms kept beside the HDR ones: a sparse exponential ("native")
//! histogram for remote write, and classic `le` buckets for `/metrics` and the remote-write
//! fallback. Values are in seconds.

use std::collections::BTreeMap;

/// Native-histogram schema: bucket boundaries grow by 2^(2^-5) ≈ 2.2 %, so a quantile read back
/// from Prometheus is within about 2 % of the exact one.
pub const NATIVE_SCHEMA: i32 = 5;

/// Upper bounds of the classic buckets (seconds); `+Inf` is implied.
pub const CLASSIC_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A cumulative sparse exponential histogram, the in-memory form of a Prometheus native
/// histogram with zero threshold 0.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeHistogram {
    pub schema: i32,
    pub count: u64,
    pub sum: f64,
    /// Observations ≤ 0.
    pub zero_count: u64,
    /// Bucket index → count; bucket `i` holds (base^(i-1), base^i].
    pub buckets: BTreeMap<i32, u64>,
    /// Classic cumulative-less counts per [`CLASSIC_BOUNDS`] entry plus one for `+Inf`.
    pub classic: Vec<u64>,
}

impl Default for NativeHistogram {
    fn default() -> Self {
        Self {
            schema: NATIVE_SCHEMA,
            count: 0,
            sum: 0.0,
            zero_count: 0,
            buckets: BTreeMap::new(),
            classic: vec![0; CLASSIC_BOUNDS.len() + 1],
        }
    }
}

impl NativeHistogram {
    pub fn observe(&mut self, seconds: f64) {
        self.count += 1;
        self.sum += seconds;
        if seconds <= 0.0 || !seconds.is_finite() {
            self.zero_count += 1;
        } else {
            *self
                .buckets
                .entry(bucket_index(seconds, self.schema))
                .or_default() += 1;
        }
        let slot = CLASSIC_BOUNDS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(CLASSIC_BOUNDS.len());
        self.classic[slot] += 1;
    }

    /// Adds `other`'s observations (same schema) to these.
    pub fn merge(&mut self, other: &NativeHistogram) {
        self.count += other.count;
        self.sum += other.sum;
        self.zero_count += other.zero_count;
        for (i, c) in &other.buckets {
            *self.buckets.entry(*i).or_default() += c;
        }
        for (mine, theirs) in self.classic.iter_mut().zip(&other.classic) {
            *mine += theirs;
        }
    }

    /// Cumulative counts for each classic bound, then `+Inf` (= count).
    pub fn classic_cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        let mut out = Vec::with_capacity(self.classic.len());
        for (i, c) in self.classic.iter().enumerate() {
            acc += c;
            out.push((CLASSIC_BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), acc));
        }
        out
    }

    /// Positive buckets as Prometheus spans (offset, length) and deltas between neighbours.
    pub fn spans_and_deltas(&self) -> (Vec<(i32, u32)>, Vec<i64>) {
        let mut spans: Vec<(i32, u32)> = Vec::new();
        let mut deltas = Vec::new();
        let mut prev_index: Option<i32> = None;
        let mut prev_count: i64 = 0;
        for (&index, &count) in &self.buckets {
            match prev_index {
                Some(p) if index == p + 1 => spans.last_mut().expect("span").1 += 1,
                Some(p) => spans.push((index - p - 1, 1)),
                None => spans.push((index, 1)),
            }
            deltas.push(count as i64 - prev_count);
            prev_count = count as i64;
            prev_index = Some(index);
        }
        (spans, deltas)
    }
}

/// Index of the bucket holding `v` (> 0) for `schema`: the smallest `i` with v ≤ base^i.
pub fn bucket_index(v: f64, schema: i32) -> i32 {
    let scale = 2f64.powi(schema);
    let mut i = (v.log2() * scale).ceil() as i32;
    // Correct float error at the edges so that upper bounds are inclusive.
    while upper_bound(i - 1, schema) >= v {
        i -= 1;
    }
    while upper_bound(i, schema) < v {
        i += 1;
    }
    i
}

/// Upper bound of bucket `i` for `schema`.
pub fn upper_bound(i: i32, schema: i32) -> f64 {
    (i as f64 / 2f64.powi(schema)).exp2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_boundaries_are_upper_inclusive() {
        assert_eq!(bucket_index(1.0, 0), 0);
        assert_eq!(bucket_index(1.5, 0), 1);
        assert_eq!(bucket_index(2.0, 0), 1);
        assert_eq!(bucket_index(2.1, 0), 2);
        assert_eq!(bucket_index(0.5, 0), -1);
        for v in [0.0001, 0.02, 0.5, 1.0, 3.7, 64.0] {
            let i = bucket_index(v, NATIVE_SCHEMA);
            assert!(upper_bound(i - 1, NATIVE_SCHEMA) < v && v <= upper_bound(i, NATIVE_SCHEMA));
        }
    }

    #[test]
    fn spans_and_deltas_encode_gaps() {
        let mut h = NativeHistogram {
            schema: 0,
            ..Default::default()
        };
        for v in [1.0, 1.0, 1.5, 8.0] {
            h.observe(v);
        }
        // Buckets 0 (x2), 1 (x1), 3 (x1).
        let (spans, deltas) = h.spans_and_deltas();
        assert_eq!(spans, vec![(0, 2), (1, 1)]);
        assert_eq!(deltas, vec![2, -1, 0]);
        assert_eq!(h.count, 4);
        assert_eq!(h.classic_cumulative().last().unwrap().1, 4);
        let c = h.classic_cumulative();
        let at_one = c.iter().find(|(le, _)| *le == 1.0).unwrap().1;
        assert_eq!(at_one, 2);
    }
}
