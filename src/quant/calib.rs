//! Calibration: from observed activations to INT8 scales (TensorRT explicit quantization:
//! symmetric, `scale = amax / 127`, activations per tensor, weights per output channel).
//!
//! - `histogram`: the |x| histogram observer, mergeable across frames and processes.
//! - here: the calibrators choosing the clipping threshold `amax` from a histogram (max,
//!   percentile, entropy, mse) and per-channel weight amax.
//! - `crate::numerics::int8` (re-exported): QuantizeLinear numerics, fake quantization, per-channel
//!   weight amax and power-of-two scales.
//! - `trt_cache`: TensorRT's calibration cache text.
//!
//! Every amax returned here is finite and positive: a tensor with nothing to calibrate (all zeros,
//! or so small that `amax / 127` would be subnormal) gets 1.0, because a scale of 0 is invalid in
//! ONNX QuantizeLinear and any scale quantizes such a tensor to zeros.

mod histogram;
mod trt_cache;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use histogram::{Histogram, HIST_BINS};
// The INT8 numerics live below the executor and quantization alike (`crate::numerics`).
use crate::numerics::int8::usable_amax;
pub use crate::numerics::int8::{
    fake_quant, fake_quant_slice, per_channel_amax, pow2_amax, pow2_ceil, quantize_i8, quantize_value, round_half_even,
};
pub use trt_cache::{cache_tensors, parse_trt_cache, trt_cache_header, trt_cache_text, CacheTensors};

/// Percentile used by `percentile` without a value (pytorch-quantization's default).
pub const DEFAULT_PERCENTILE: f64 = 99.99;

/// First candidate bin count of the entropy and mse searches: at least one histogram bin per
/// INT8 level (TensorRT's and pytorch-quantization's `start_bin`).
const FIRST_CANDIDATE: usize = 128;

/// Number of positive INT8 levels the entropy calibrator merges bins into (127 + the zero level).
const ENTROPY_LEVELS: usize = 128;

/// How the activation clipping threshold is chosen from a histogram. Written and parsed as
/// `max`, `percentile` (99.99) or `percentile:<p>`, `entropy`, `mse`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CalibMethod {
    /// The largest |x| seen.
    Max,
    /// The value below which `p` percent of |x| fall.
    Percentile(f64),
    /// TensorRT's entropy calibration: minimizes KL(reference || quantized).
    Entropy,
    /// Minimizes the expected squared error of fake quantization.
    Mse,
}

impl fmt::Display for CalibMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalibMethod::Max => f.write_str("max"),
            CalibMethod::Percentile(p) => write!(f, "percentile:{p}"),
            CalibMethod::Entropy => f.write_str("entropy"),
            CalibMethod::Mse => f.write_str("mse"),
        }
    }
}

impl FromStr for CalibMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<CalibMethod, String> {
        let valid = "expected one of: max, percentile (99.99), percentile:<p> with 0 <= p <= 100 \
                     (e.g. percentile:99.9), entropy, mse";
        let (word, arg) = match s.trim().split_once(':') {
            Some((w, a)) => (w.trim(), Some(a.trim())),
            None => (s.trim(), None),
        };
        match (word.to_ascii_lowercase().as_str(), arg) {
            ("max", None) => Ok(CalibMethod::Max),
            ("entropy", None) => Ok(CalibMethod::Entropy),
            ("mse", None) => Ok(CalibMethod::Mse),
            ("percentile", None) => Ok(CalibMethod::Percentile(DEFAULT_PERCENTILE)),
            ("percentile", Some(a)) => match a.parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(CalibMethod::Percentile(p)),
                _ => Err(format!("calibration method '{s}': percentile must be a number from 0 to 100, got '{a}'")),
            },
            _ => Err(format!("unknown calibration method '{s}': {valid}")),
        }
    }
}

impl TryFrom<String> for CalibMethod {
    type Error = String;
    fn try_from(s: String) -> Result<CalibMethod, String> {
        s.parse()
    }
}

impl From<CalibMethod> for String {
    fn from(m: CalibMethod) -> String {
        m.to_string()
    }
}

/// The clipping threshold `amax` (so `scale = amax / 127`) chosen by `method`, never above the
/// largest |x| observed. Deterministic; finite and positive (1.0 for an empty or all-zero
/// histogram, see the module note).
///
/// Conventions (`w` is the bin width; "edge i" is `i * w`, the upper edge of bin `i - 1`):
/// - `Max`: `amax_observed`.
/// - `Percentile(p)`: the upper edge of the first bin where the cumulative count reaches
///   `p / 100 * count` (`p` clamped to [0, 100]). pytorch-quantization returns that bin's lower
///   edge instead; the upper edge keeps `percentile:100` equal to `max`.
/// - `Entropy`: pytorch-quantization's `_compute_amax_entropy` (TensorRT's entropy calibration,
///   Migacz, GTC 2017), see `entropy_threshold_bins`; edge `i` for the best `i` in 128..=2048.
/// - `Mse`: edge `i` for `i` in 128..=2048 minimizing the squared error of fake quantization at
///   bin centres, see `quantization_squared_error`; ties go to the smallest `i`.
///   pytorch-quantization tries bin centres 128..2047 instead; edges keep the candidate set the
///   same as entropy's and include the full range.
pub fn calibrate_amax(h: &Histogram, method: &CalibMethod) -> f32 {
    let observed = h.amax_observed();
    let w = h.bin_width();
    if h.count() == 0 || w == 0.0 {
        return 1.0;
    }
    let amax = match *method {
        CalibMethod::Max => observed as f64,
        CalibMethod::Percentile(p) => percentile_threshold(h, p).unwrap_or(observed as f64),
        CalibMethod::Entropy => entropy_threshold_bins(h.bins()).map_or(observed as f64, |i| i as f64 * w),
        CalibMethod::Mse => mse_threshold_bins(h) as f64 * w,
    };
    usable_amax((amax as f32).min(observed))
}

fn percentile_threshold(h: &Histogram, p: f64) -> Option<f64> {
    // Compared as 100 * cumulative >= p * count: both sides are exact or correctly rounded
    // products, so percentile:99.9 of 10000 counts is reached at exactly 9990 (p / 100 * count
    // would round 0.999 up and ask for 9990.000000000002).
    let target = p.clamp(0.0, 100.0) * h.count() as f64;
    let mut cumulative = 0u64;
    for (j, &c) in h.bins().iter().enumerate() {
        cumulative += c;
        if cumulative as f64 * 100.0 >= target {
            return Some((j + 1) as f64 * h.bin_width());
        }
    }
    None // only for a NaN percentile
}

/// The bin count `i` (threshold `i * bin_width`) minimizing KL(P || Q), as pytorch-quantization's
/// `_compute_amax_entropy` with 8 bits, `start_bin` 128 and stride 1. `None` when the histogram
/// holds nothing outside bin 0.
///
/// - Bin 0 is replaced by bin 1's count first: the zeros of a ReLU output would otherwise
///   dominate every distribution.
/// - P is `bins[..i]` with the outliers `sum(bins[i..])` added to its last bin; Q is `bins[..i]`
///   without them, merged into 128 groups (bin `j` in group `floor(128 j / i)`) and each group's
///   sum spread evenly over the group's non-empty bins (empty bins stay empty). Both are
///   normalized to sum 1.
/// - KL uses the natural log; a bin where P > 0 and Q = 0 (an empty last bin receiving outliers)
///   makes the divergence infinite, so that candidate is never chosen. No smoothing. Where no
///   count lies below bin `i` the reference's divergence is NaN (0/0), which numpy's argmin would
///   pick; here it is infinite.
/// - Among equal divergences the largest `i` wins (the reference scans reversed for argmin).
fn entropy_threshold_bins(bins: &[u64]) -> Option<usize> {
    let n = bins.len();
    let mut h: Vec<f64> = bins.iter().map(|&c| c as f64).collect();
    h[0] = h[1];
    // Counts are integers below 2^53, so these sums are exact.
    let total: f64 = h.iter().sum();
    if total == 0.0 {
        return None;
    }
    let mut outliers_from = vec![0.0; n + 1];
    for j in (0..n).rev() {
        outliers_from[j] = outliers_from[j + 1] + h[j];
    }
    let mut best = (f64::INFINITY, n);
    for i in FIRST_CANDIDATE..=n {
        let outliers = outliers_from[i];
        let in_range = total - outliers;
        let kl = if in_range == 0.0 || (h[i - 1] == 0.0 && outliers > 0.0) {
            f64::INFINITY
        } else {
            let mut kl = 0.0;
            for g in 0..ENTROPY_LEVELS {
                // Bins with floor(128 j / i) == g.
                let (lo, hi) = ((g * i).div_ceil(ENTROPY_LEVELS), ((g + 1) * i).div_ceil(ENTROPY_LEVELS));
                let group = &h[lo..hi];
                let nonempty = group.iter().filter(|&&c| c > 0.0).count();
                if nonempty == 0 {
                    continue;
                }
                let q = group.iter().sum::<f64>() / nonempty as f64 / in_range;
                for (j, &c) in (lo..hi).zip(group) {
                    let count = if j == i - 1 { c + outliers } else { c };
                    if count > 0.0 {
                        let p = count / total;
                        kl += p * (p / q).ln();
                    }
                }
            }
            kl
        };
        if kl <= best.0 {
            best = (kl, i);
        }
    }
    Some(best.1)
}

/// Sum over bins of `count * (c - fake_quant(c))^2` at the bin centres `c`, for threshold `amax`:
/// `scale = amax / 127`, round half to even, levels clamped to 127 (the histogram is of |x|, so
/// only the positive saturation matters). In f64: this ranks candidates, it is not the executor.
fn quantization_squared_error(h: &Histogram, amax: f64) -> f64 {
    let w = h.bin_width();
    let scale = amax / 127.0;
    let mut sum = 0.0;
    for (j, &c) in h.bins().iter().enumerate() {
        if c > 0 {
            let center = (j as f64 + 0.5) * w;
            let level = (center / scale).round_ties_even().min(127.0);
            let e = center - level * scale;
            sum += c as f64 * e * e;
        }
    }
    sum
}

fn mse_threshold_bins(h: &Histogram) -> usize {
    let mut best = (f64::INFINITY, HIST_BINS);
    for i in FIRST_CANDIDATE..=HIST_BINS {
        let e = quantization_squared_error(h, i as f64 * h.bin_width());
        if e < best.0 {
            best = (e, i);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A histogram with the given bins and width, min 0 and max at the upper edge of the last
    /// non-empty bin.
    fn hist(counts: &[(usize, u64)], width: f64) -> Histogram {
        let mut bins = vec![0u64; HIST_BINS];
        for &(j, c) in counts {
            bins[j] += c;
        }
        let last = bins.iter().rposition(|&c| c > 0).unwrap();
        let json = serde_json::json!({
            "bins": bins,
            "bin_width": width,
            "min": 0.0,
            "max": ((last + 1) as f64 * width) as f32,
            "count": bins.iter().sum::<u64>(),
        });
        serde_json::from_value(json).unwrap()
    }

    fn uniform(lo: usize, hi: usize, count: u64) -> Vec<(usize, u64)> {
        (lo..hi).map(|j| (j, count)).collect()
    }

    /// Counts decreasing linearly from 10000 over bins 0..200, plus one outlier in bin 2047.
    fn mass_with_outlier() -> Histogram {
        let mut counts: Vec<(usize, u64)> = (0..200).map(|j| (j, 10_000 - 40 * j as u64)).collect();
        counts.push((2047, 1));
        hist(&counts, 0.01)
    }

    #[test]
    fn pow2_scales_round_up_to_a_power_of_two_exactly() {
        assert_eq!(pow2_ceil(1.0), 1.0);
        assert_eq!(pow2_ceil(0.25), 0.25);
        assert_eq!(pow2_ceil(0.3), 0.5);
        assert_eq!(pow2_ceil(1.000_000_1), 2.0);
        assert_eq!(pow2_ceil(3.0e-3), 1.0 / 256.0);
        assert_eq!(pow2_ceil(f32::MAX), f32::MAX);
        for amax in [0.01f32, 1.0, 53.8, 127.0, 128.0, 3.0e4] {
            let a = pow2_amax(amax);
            assert!(a >= amax * (1.0 - 1e-6) && a < 2.0 * amax, "{amax} -> {a}");
            let s = a / 127.0;
            assert_eq!(s.to_bits() & 0x007f_ffff, 0, "{amax}: scale {s} is no power of two");
            assert_eq!(s * 127.0, a);
        }
    }

    #[test]
    fn method_names_parse_print_and_serialize() {
        assert_eq!("max".parse::<CalibMethod>(), Ok(CalibMethod::Max));
        assert_eq!("percentile".parse::<CalibMethod>(), Ok(CalibMethod::Percentile(99.99)));
        assert_eq!("percentile:99.9".parse::<CalibMethod>(), Ok(CalibMethod::Percentile(99.9)));
        assert_eq!(" Entropy ".parse::<CalibMethod>(), Ok(CalibMethod::Entropy));
        assert_eq!("mse".parse::<CalibMethod>(), Ok(CalibMethod::Mse));
        for m in [CalibMethod::Max, CalibMethod::Percentile(99.999), CalibMethod::Entropy, CalibMethod::Mse] {
            assert_eq!(m.to_string().parse::<CalibMethod>(), Ok(m));
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<CalibMethod>(&json).unwrap(), m);
        }
        assert_eq!(serde_json::to_string(&CalibMethod::Percentile(99.9)).unwrap(), "\"percentile:99.9\"");
        let err = "kl".parse::<CalibMethod>().unwrap_err();
        assert!(err.contains("'kl'") && err.contains("max") && err.contains("entropy") && err.contains("mse"), "{err}");
        assert!("percentile:101".parse::<CalibMethod>().unwrap_err().contains("0 to 100"));
        assert!("max:3".parse::<CalibMethod>().is_err());
        assert!(serde_json::from_str::<CalibMethod>("\"minmax\"").is_err());
    }

    #[test]
    fn max_and_percentiles_on_a_uniform_histogram() {
        // 10 counts in each of bins 0..1000, width 0.5: the data ends at edge 1000 = 500.0.
        let h = hist(&uniform(0, 1000, 10), 0.5);
        assert_eq!(calibrate_amax(&h, &CalibMethod::Max), 500.0);
        assert_eq!(calibrate_amax(&h, &CalibMethod::Percentile(100.0)), 500.0);
        // Half the 10000 counts are reached at the end of bin 499: edge 500 = 250.0.
        assert_eq!(calibrate_amax(&h, &CalibMethod::Percentile(50.0)), 250.0);
        // 99.99% of 10000 = 9999 counts, reached in bin 999 (cumulative 9991..10000).
        assert_eq!(calibrate_amax(&h, &CalibMethod::Percentile(99.99)), 500.0);
        // 99.9% = 9990 counts: reached at the end of bin 998 -> edge 999.
        assert_eq!(calibrate_amax(&h, &CalibMethod::Percentile(99.9)), 499.5);
    }

    #[test]
    fn entropy_and_mse_clip_a_far_outlier_that_max_keeps() {
        let h = mass_with_outlier();
        assert_eq!(calibrate_amax(&h, &CalibMethod::Max), 20.48);
        // Every i in 201..2048 leaves the outlier in an empty bin i-1 (infinite divergence), and
        // at i = 2048 Q spreads each 16-bin group evenly over a sloped mass, so the best
        // candidate lies within the mass (edge 200 = 2.0).
        let entropy = calibrate_amax(&h, &CalibMethod::Entropy);
        assert!((1.28..=2.0).contains(&entropy), "entropy amax {entropy}");
        // Clipping the single outlier costs (20.475 - t)^2 once; a threshold t costs the rounding
        // error (t/127)^2/12 on each of N = 1.204 million values. Setting the derivative to 0:
        // t = 20.475 / (1 + N / (12 * 127^2)) = 2.84 (a little lower once the mass's own
        // clipping above 2.0 is counted, which this estimate leaves out).
        let mse = calibrate_amax(&h, &CalibMethod::Mse);
        assert!((2.0..=3.0).contains(&mse), "mse amax {mse}");
        assert!(calibrate_amax(&h, &CalibMethod::Percentile(99.99)) <= 2.0);
    }

    /// pytorch-quantization's `_compute_amax_entropy` written out step by step and slowly:
    /// group edges as floats (numpy's `linspace` and `digitize`), explicit P and Q arrays, both
    /// normalized by their own sums and compared with `rel_entr` semantics (x ln(x/y); 0 where
    /// x = 0; infinite where x > 0 = y or Q is all zero), the last argmin. An independent check
    /// of the group bounds and outlier handling of `entropy_threshold_bins`.
    fn entropy_reference(bins: &[u64]) -> usize {
        let mut h: Vec<f64> = bins.iter().map(|&c| c as f64).collect();
        h[0] = h[1];
        let mut best = (f64::INFINITY, 0);
        for i in 128..=h.len() {
            let edges: Vec<f64> = (0..=128).map(|k| k as f64 * i as f64 / 128.0).collect();
            let group = |j: usize| edges.partition_point(|&e| e <= j as f64) - 1;
            let (mut sums, mut nonempty) = ([0.0; 128], [0usize; 128]);
            for j in (0..i).filter(|&j| h[j] != 0.0) {
                sums[group(j)] += h[j];
                nonempty[group(j)] += 1;
            }
            let q: Vec<f64> =
                (0..i).map(|j| if h[j] != 0.0 { sums[group(j)] / nonempty[group(j)] as f64 } else { 0.0 }).collect();
            let mut p = h[..i].to_vec();
            p[i - 1] += h[i..].iter().sum::<f64>();
            let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
            let mut kl = 0.0;
            for (&pj, &qj) in p.iter().zip(&q) {
                let (x, y) = (pj / sp, if sq > 0.0 { qj / sq } else { 0.0 });
                kl += if x == 0.0 {
                    0.0
                } else if y == 0.0 {
                    f64::INFINITY
                } else {
                    x * (x / y).ln()
                };
            }
            if kl <= best.0 {
                best = (kl, i);
            }
        }
        best.1
    }

    #[test]
    fn entropy_matches_a_literal_transcription_of_the_reference() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // A noisy decaying mass with random holes and a few far outliers; a ReLU-like one with a
        // huge bin 0; a sparse one with 300 scattered bins.
        let mut decaying = vec![0u64; HIST_BINS];
        for (j, b) in decaying.iter_mut().enumerate().take(900) {
            if next() % 5 != 0 {
                *b = (50_000.0 * (-(j as f64) / 150.0).exp()) as u64 + next() % 50;
            }
        }
        decaying[1500] += 3;
        decaying[2047] += 1;
        let mut relu = decaying.clone();
        relu[0] = 5_000_000;
        let mut sparse = vec![0u64; HIST_BINS];
        for _ in 0..300 {
            sparse[(next() % HIST_BINS as u64) as usize] += 1 + next() % 1000;
        }
        for (name, bins) in [("decaying", &decaying), ("relu", &relu), ("sparse", &sparse)] {
            let expected = entropy_reference(bins);
            assert_eq!(entropy_threshold_bins(bins), Some(expected), "{name}");
            if name != "sparse" {
                // The mass ends at bin 900: the outliers at 1500 and 2047 are clipped.
                assert!(expected <= 900, "{name}: {expected}");
            }
        }
    }

    #[test]
    fn entropy_follows_the_reference_where_empty_bins_are_free() {
        // The reference never penalizes bins that are empty in P: a flat block in bins 0..200
        // (so each 16-bin group of the full range is represented exactly) plus one outlier has
        // divergence 0 at the full range, so entropy keeps the outlier here.
        let mut counts = uniform(0, 200, 1000);
        counts.push((2047, 1));
        let h = hist(&counts, 1.0);
        assert_eq!(entropy_threshold_bins(h.bins()), Some(2048));
        assert_eq!(calibrate_amax(&h, &CalibMethod::Entropy), 2048.0);
    }

    #[test]
    fn mse_squared_error_computed_by_hand() {
        // Width 1: bin 3 (centre 3.5) x10, bin 5 (centre 5.5) x10, bin 300 (centre 300.5) x1.
        let h = hist(&[(3, 10), (5, 10), (300, 1)], 1.0);
        // amax 254 -> scale 2: 3.5/2 = 1.75 -> 2 -> 4 (err 0.5); 5.5/2 = 2.75 -> 3 -> 6 (err 0.5);
        // 300.5/2 = 150.25 -> saturates at 127 -> 254 (err 46.5).
        // Sum: 10 * 0.25 + 10 * 0.25 + 46.5^2 = 5 + 2162.25 = 2167.25.
        assert!((quantization_squared_error(&h, 254.0) - 2167.25).abs() < 1e-9);
        // amax 508 -> scale 4: 3.5/4 = 0.875 -> 1 -> 4 (err 0.5); 5.5/4 = 1.375 -> 1 -> 4
        // (err 1.5); 300.5/4 = 75.125 -> 75 -> 300 (err 0.5).
        // Sum: 10 * 0.25 + 10 * 2.25 + 0.25 = 25.25.
        assert!((quantization_squared_error(&h, 508.0) - 25.25).abs() < 1e-9);
        // Ties round to even: amax 127 -> scale 1, centre 3.5 -> 4 (err 0.5), 5.5 -> 6 (0.5),
        // 300.5 -> 127 (err 173.5). Sum: 5 + 30102.25.
        assert!((quantization_squared_error(&h, 127.0) - 30107.25).abs() < 1e-9);
        // The search cannot clip bin 300 much: at t <= 290 its error alone, (300.5 - t)^2 >= 110,
        // exceeds the whole error at 508.
        let amax = calibrate_amax(&h, &CalibMethod::Mse);
        assert!(amax > 290.0 && amax <= 301.0, "mse amax {amax}");
    }

    #[test]
    fn mse_keeps_nearly_the_full_range_of_a_uniform_distribution() {
        // For |x| uniform on [0, R], clipping at t costs (R - t)^3 / 3R and rounding costs about
        // (t/127)^2 / 12 per value: the optimum is t = 254/255 R, 2040 bins of 2048.
        let h = hist(&uniform(0, HIST_BINS, 100), 1.0);
        let amax = calibrate_amax(&h, &CalibMethod::Mse);
        assert!((2036.0..=2044.0).contains(&amax), "mse amax {amax}");
    }

    #[test]
    fn every_method_returns_a_positive_finite_amax() {
        let empty = Histogram::new();
        let mut zeros = Histogram::new();
        zeros.observe(&[0.0; 10]);
        let mut tiny = Histogram::new();
        tiny.observe(&[1e-39, -3e-39]);
        let mut one = Histogram::new();
        one.observe(&[-0.75]);
        for m in [CalibMethod::Max, CalibMethod::Percentile(99.99), CalibMethod::Entropy, CalibMethod::Mse] {
            assert_eq!(calibrate_amax(&empty, &m), 1.0, "{m}");
            assert_eq!(calibrate_amax(&zeros, &m), 1.0, "{m}");
            assert_eq!(calibrate_amax(&tiny, &m), 1.0, "{m}");
            let a = calibrate_amax(&one, &m);
            assert!(a > 0.0 && a <= 0.75, "{m}: {a}");
        }
        assert_eq!(calibrate_amax(&one, &CalibMethod::Max), 0.75);
    }

    #[test]
    fn per_channel_amax_along_each_axis() {
        // Shape [2, 3]: rows [1, -4, 2] and [0.5, 3, -6].
        let w = [1.0, -4.0, 2.0, 0.5, 3.0, -6.0];
        assert_eq!(per_channel_amax(&w, &[2, 3], 0).unwrap(), vec![4.0, 6.0]);
        assert_eq!(per_channel_amax(&w, &[2, 3], 1).unwrap(), vec![1.0, 4.0, 6.0]);
        // [Cin 2, Cout 2, 1, 2] (ConvTranspose, axis 1): Cout 0 holds w[0..2] and w[4..6].
        let wt = [0.1, -0.2, 0.0, 0.0, 0.3, 0.05, 0.0, -0.0];
        assert_eq!(per_channel_amax(&wt, &[2, 2, 1, 2], 1).unwrap(), vec![0.3, 1.0]);
        assert!(per_channel_amax(&w, &[2, 2], 0).unwrap_err().contains("cannot hold 6"));
        assert!(per_channel_amax(&w, &[2, 3], 2).unwrap_err().contains("no axis 2"));
        assert!(per_channel_amax(&[1.0, f32::NAN], &[2], 0).unwrap_err().contains("channel 1"));
    }
}
