//! The activation observer: a histogram of |x| over 2048 bins whose range grows by whole factors,
//! so that counts are only ever summed, never split or estimated.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Number of bins of every [`Histogram`] (TensorRT's and pytorch-quantization's choice).
pub const HIST_BINS: usize = 2048;

/// Absolute-value histogram of one activation tensor over any number of batches.
///
/// Bin `j` holds |x| in `[j * bin_width, (j + 1) * bin_width)`; the last bin also holds values
/// equal to its upper edge (numpy's convention), so the first batch's maximum sets
/// `bin_width = amax / 2048` exactly (a division by a power of two) and lands in bin 2047.
/// When a later batch has a larger |x|, the width is multiplied by the smallest integer `k` that
/// makes the range cover it, and every `k` consecutive old bins are summed into one new bin.
/// Zeros always go to bin 0; while nothing but zeros has been seen, `bin_width` is 0.
/// NaN and ±inf cannot be binned: they are counted in `nan` and `inf` and left out of `count`,
/// `min`, `max` and the bins. Invariant: `bins.iter().sum() == count`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "HistogramFields")]
pub struct Histogram {
    bins: Vec<u64>,
    bin_width: f64,
    /// Signed minimum and maximum of the finite values seen (0 while `count` is 0).
    min: f32,
    max: f32,
    count: u64,
    nan: u64,
    inf: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram { bins: vec![0; HIST_BINS], bin_width: 0.0, min: 0.0, max: 0.0, count: 0, nan: 0, inf: 0 }
    }

    pub fn bins(&self) -> &[u64] {
        &self.bins
    }
    pub fn bin_width(&self) -> f64 {
        self.bin_width
    }
    /// Upper end of the binned range, `2048 * bin_width`.
    pub fn range(&self) -> f64 {
        self.bin_width * HIST_BINS as f64
    }
    pub fn min(&self) -> f32 {
        self.min
    }
    pub fn max(&self) -> f32 {
        self.max
    }
    /// Finite values observed (the sum of the bins).
    pub fn count(&self) -> u64 {
        self.count
    }
    pub fn nan(&self) -> u64 {
        self.nan
    }
    pub fn inf(&self) -> u64 {
        self.inf
    }

    /// max(|min|, |max|): the largest finite |x| observed, 0 if none.
    pub fn amax_observed(&self) -> f32 {
        self.min.abs().max(self.max.abs())
    }

    /// Adds one batch of values. Two passes over `data`: statistics (min, max, NaN and inf
    /// counts), then binning.
    pub fn observe(&mut self, data: &[f32]) {
        let s = batch_stats(data);
        self.nan += s.nan;
        self.inf += s.inf;
        let finite = data.len() as u64 - s.nan - s.inf;
        if finite == 0 {
            return;
        }
        if self.count == 0 {
            (self.min, self.max) = (s.min, s.max);
        } else {
            self.min = self.min.min(s.min);
            self.max = self.max.max(s.max);
        }
        self.count += finite;
        let amax = s.min.abs().max(s.max.abs()) as f64;
        if amax > 0.0 {
            self.cover(amax);
        }
        if self.bin_width == 0.0 {
            self.bins[0] += finite;
            return;
        }
        bin_abs_values(&mut self.bins, data, 1.0 / self.bin_width);
        // The binning pass put NaN in bin 0 and ±inf in the last bin (saturating casts); take them
        // out again rather than test every element.
        self.bins[0] -= s.nan;
        self.bins[HIST_BINS - 1] -= s.inf;
    }

    /// Makes the range cover `amax` (> 0): sets the first width, or grows by an integer factor.
    fn cover(&mut self, amax: f64) {
        let n = HIST_BINS as f64;
        if self.bin_width == 0.0 {
            self.bin_width = amax / n;
            return;
        }
        if amax <= self.range() {
            return;
        }
        let mut k = (amax / self.range()).ceil();
        if k > n {
            // Every old value lies below the new first bin's upper edge: start a fresh grid at
            // this batch's maximum, everything seen so far in bin 0.
            let total = self.count_binned();
            self.bins.fill(0);
            self.bins[0] = total;
            self.bin_width = amax / n;
            return;
        }
        while self.bin_width * k * n < amax {
            k += 1.0;
        }
        self.bin_width *= k;
        self.bins = group_bins(&self.bins, k as usize);
    }

    /// Sum of the bins (equal to `count` outside of `observe`).
    fn count_binned(&self) -> u64 {
        self.bins.iter().sum()
    }

    /// Adds another histogram (other frames, another shard or process) into this one.
    ///
    /// The result uses the coarser of the two grids (the larger range, which covers both). When
    /// the coarser width is an integer multiple `k` of the finer one (within a relative 1e-9, as
    /// when both grew from the same first batch), every `k` fine bins are summed into one coarse
    /// bin, exactly as growth does. Otherwise each fine bin's count moves to the coarse bin that
    /// holds its center: deterministic, but approximate by up to half a fine bin. Merging is
    /// commutative; with centre rebinning it need not be associative.
    pub fn merge(&mut self, other: &Histogram) {
        self.nan += other.nan;
        self.inf += other.inf;
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            let (nan, inf) = (self.nan, self.inf);
            *self = other.clone();
            (self.nan, self.inf) = (nan, inf);
            return;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.count += other.count;
        let (fine, fine_width) = if other.bin_width > self.bin_width {
            let fine = std::mem::replace(&mut self.bins, other.bins.clone());
            let fine_width = std::mem::replace(&mut self.bin_width, other.bin_width);
            (fine, fine_width)
        } else {
            (other.bins.clone(), other.bin_width)
        };
        add_rebinned(&mut self.bins, self.bin_width, &fine, fine_width);
    }
}

/// Sums every `k` consecutive bins into one (`k >= 1`; `k >= HIST_BINS` puts everything in bin 0).
fn group_bins(bins: &[u64], k: usize) -> Vec<u64> {
    let mut out = vec![0; HIST_BINS];
    for (j, &c) in bins.iter().enumerate() {
        out[j / k] += c;
    }
    out
}

/// Adds `fine` (width `fine_width <= width`) into `bins` (width `width`); see `Histogram::merge`.
fn add_rebinned(bins: &mut [u64], width: f64, fine: &[u64], fine_width: f64) {
    if fine_width == 0.0 || width == 0.0 {
        // Only zeros so far on the fine side (or on both): all of it is in bin 0.
        bins[0] += fine.iter().sum::<u64>();
        return;
    }
    let ratio = width / fine_width;
    let k = ratio.round();
    if (ratio - k).abs() <= 1e-9 * ratio {
        let k = k.min(HIST_BINS as f64) as usize;
        for (j, &c) in fine.iter().enumerate() {
            bins[j / k] += c;
        }
    } else {
        for (j, &c) in fine.iter().enumerate() {
            let center = (j as f64 + 0.5) * fine_width;
            bins[((center / width) as usize).min(HIST_BINS - 1)] += c;
        }
    }
}

/// Statistics of one batch, finite values only.
struct BatchStats {
    min: f32,
    max: f32,
    nan: u64,
    inf: u64,
}

fn batch_stats(data: &[f32]) -> BatchStats {
    // Independent lanes of compare-and-select (minps/maxps semantics) and u32 counters flushed
    // per block, so that the loop vectorizes without reassociating anything.
    const LANES: usize = 8;
    const BLOCK: usize = LANES * 4096;
    let mut mn = [f32::INFINITY; LANES];
    let mut mx = [f32::NEG_INFINITY; LANES];
    let (mut nonfinite, mut nan) = (0u64, 0u64);
    for block in data.chunks(BLOCK) {
        let mut block_nonfinite = [0u32; LANES];
        let mut block_nan = [0u32; LANES];
        let mut lanes = block.chunks_exact(LANES);
        let mut step = |l: usize, v: f32| {
            let finite = v.abs() <= f32::MAX;
            let low = if finite { v } else { mn[l] };
            mn[l] = if low < mn[l] { low } else { mn[l] };
            let high = if finite { v } else { mx[l] };
            mx[l] = if high > mx[l] { high } else { mx[l] };
            block_nonfinite[l] += !finite as u32;
            block_nan[l] += v.is_nan() as u32;
        };
        for c in &mut lanes {
            for (l, &v) in c.iter().enumerate() {
                step(l, v);
            }
        }
        for (l, &v) in lanes.remainder().iter().enumerate() {
            step(l, v);
        }
        nonfinite += block_nonfinite.iter().map(|&c| c as u64).sum::<u64>();
        nan += block_nan.iter().map(|&c| c as u64).sum::<u64>();
    }
    let min = mn.iter().copied().fold(f32::INFINITY, f32::min);
    let max = mx.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (min, max) = if min <= max { (min, max) } else { (0.0, 0.0) };
    BatchStats { min, max, nan, inf: nonfinite - nan }
}

/// Adds |x| of every element to `bins` at `(|x| * inv_width) as usize`, clamped to the last bin.
/// NaN lands in bin 0 and ±inf in the last bin (saturating casts); the caller takes them out.
/// Large tensors are split across threads; counts are integers, so the sum is the same for any
/// thread count.
fn bin_abs_values(bins: &mut [u64], data: &[f32], inv_width: f64) {
    const PARALLEL_CHUNK: usize = 1 << 18;
    if data.len() <= PARALLEL_CHUNK {
        bin_abs_values_serial(bins, data, inv_width);
        return;
    }
    let partial = data
        .par_chunks(PARALLEL_CHUNK)
        .map(|chunk| {
            let mut b = vec![0u64; HIST_BINS];
            bin_abs_values_serial(&mut b, chunk, inv_width);
            b
        })
        .reduce(
            || vec![0u64; HIST_BINS],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    bins.iter_mut().zip(&partial).for_each(|(x, y)| *x += y);
}

fn bin_abs_values_serial(bins: &mut [u64], data: &[f32], inv_width: f64) {
    const LAST: usize = HIST_BINS - 1;
    let index = |v: f32| ((v.abs() as f64 * inv_width) as usize).min(LAST);
    if data.len() < 4096 {
        for &v in data {
            bins[index(v)] += 1;
        }
        return;
    }
    // Four interleaved partial histograms: runs of one value (the zeros of a ReLU output or of
    // the scattered BEV canvas) would otherwise serialize on a single counter. u32 partials keep
    // the four tables within 32 KiB (L1); chunks keep them from overflowing.
    const CHUNK: usize = 1 << 30;
    let mut part = vec![[0u32; 4]; HIST_BINS];
    for chunk in data.chunks(CHUNK) {
        let mut quads = chunk.chunks_exact(4);
        for q in &mut quads {
            part[index(q[0])][0] += 1;
            part[index(q[1])][1] += 1;
            part[index(q[2])][2] += 1;
            part[index(q[3])][3] += 1;
        }
        for &v in quads.remainder() {
            part[index(v)][0] += 1;
        }
        for (b, p) in bins.iter_mut().zip(part.iter_mut()) {
            *b += p.iter().map(|&c| c as u64).sum::<u64>();
            *p = [0; 4];
        }
    }
}

/// The serialized form, checked before it becomes a `Histogram`.
#[derive(Deserialize)]
struct HistogramFields {
    bins: Vec<u64>,
    bin_width: f64,
    min: f32,
    max: f32,
    count: u64,
    #[serde(default)]
    nan: u64,
    #[serde(default)]
    inf: u64,
}

impl TryFrom<HistogramFields> for Histogram {
    type Error = String;

    fn try_from(f: HistogramFields) -> Result<Histogram, String> {
        if f.bins.len() != HIST_BINS {
            return Err(format!("histogram has {} bins, expected {HIST_BINS}", f.bins.len()));
        }
        if !(f.bin_width.is_finite() && f.bin_width >= 0.0) {
            return Err(format!("histogram bin_width {} is not a finite non-negative number", f.bin_width));
        }
        let sum = f.bins.iter().try_fold(0u64, |s, &c| s.checked_add(c)).ok_or("histogram bin counts overflow")?;
        if sum != f.count {
            return Err(format!("histogram bins sum to {sum} but count is {}", f.count));
        }
        if f.bin_width == 0.0 && f.bins[1..].iter().any(|&c| c > 0) {
            return Err("histogram with bin_width 0 has counts outside bin 0".into());
        }
        if !(f.min.is_finite() && f.max.is_finite() && f.min <= f.max) {
            return Err(format!("histogram min {} / max {} are not finite with min <= max", f.min, f.max));
        }
        if f.count > 0 && (f.min.abs().max(f.max.abs()) as f64) > f.bin_width * HIST_BINS as f64 {
            return Err(format!(
                "histogram range {} does not cover its observed min {} / max {}",
                f.bin_width * HIST_BINS as f64,
                f.min,
                f.max
            ));
        }
        let HistogramFields { bins, bin_width, min, max, count, nan, inf } = f;
        Ok(Histogram { bins, bin_width, min, max, count, nan, inf })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(batches: &[&[f32]]) -> Histogram {
        let mut h = Histogram::new();
        for b in batches {
            h.observe(b);
        }
        h
    }

    fn nonzero_bins(h: &Histogram) -> Vec<(usize, u64)> {
        h.bins().iter().enumerate().filter(|(_, &c)| c > 0).map(|(j, &c)| (j, c)).collect()
    }

    #[test]
    fn values_land_in_the_bins_computed_by_hand() {
        let h = observed(&[&[0.0, 0.25, -0.5, 1.0, f32::NAN, f32::NEG_INFINITY]]);
        // amax 1.0 -> width 1/2048: 0.25 -> bin 512, 0.5 -> bin 1024, 1.0 (the upper edge) -> 2047.
        assert_eq!(h.bin_width(), 1.0 / 2048.0);
        assert_eq!(nonzero_bins(&h), vec![(0, 1), (512, 1), (1024, 1), (2047, 1)]);
        assert_eq!((h.count(), h.nan(), h.inf()), (4, 1, 1));
        assert_eq!((h.min(), h.max(), h.amax_observed()), (-0.5, 1.0, 1.0));
    }

    #[test]
    fn growth_merge_and_order_give_the_same_histogram() {
        // [1.0] sets width 1/2048 (1.0 in bin 2047); 3.0 needs k = 3: width 3/2048, the old bin
        // 2047 becomes 2047 / 3 = 682, and 1.0 / (3/2048) = 682.67 -> 682 when binned directly.
        let grown = observed(&[&[1.0], &[3.0]]);
        assert_eq!(grown.bin_width(), 3.0 / 2048.0);
        assert_eq!(nonzero_bins(&grown), vec![(682, 1), (2047, 1)]);
        assert_eq!(grown, observed(&[&[1.0, 3.0]]));
        assert_eq!(grown, observed(&[&[3.0], &[1.0]]));
        let mut merged = observed(&[&[1.0]]);
        merged.merge(&observed(&[&[3.0]]));
        assert_eq!(merged, grown);
        let mut merged_other_way = observed(&[&[3.0]]);
        merged_other_way.merge(&observed(&[&[1.0]]));
        assert_eq!(merged_other_way, grown);
    }

    #[test]
    fn growth_sums_k_old_bins_into_one() {
        // One value at every bin centre of [0, 1) plus 1.0 itself: bins all 1, bin 2047 holds 2.
        let mut first: Vec<f32> = (0..HIST_BINS).map(|j| (j as f32 + 0.5) / 2048.0).collect();
        first.push(1.0);
        let mut h = observed(&[&first]);
        assert!(h.bins()[..2047].iter().all(|&c| c == 1) && h.bins()[2047] == 2);
        // 2.5 needs k = 3: bins 0..=681 get 3 each, bin 682 gets old 2046 and 2047 (1 + 2),
        // and 2.5 / (3/2048) = 1706.67 -> bin 1706.
        h.observe(&[2.5]);
        assert_eq!(h.bin_width(), 3.0 / 2048.0);
        assert!(h.bins()[..682].iter().all(|&c| c == 3));
        assert_eq!((h.bins()[682], h.bins()[1706]), (3, 1));
        assert_eq!(h.count(), 2050);
        assert_eq!(h.bins().iter().sum::<u64>(), 2050);
        assert_eq!(h.max(), 2.5);
    }

    #[test]
    fn zeros_wait_in_bin_zero_until_a_nonzero_value_sets_the_width() {
        let mut h = observed(&[&[0.0, -0.0, 0.0]]);
        assert_eq!((h.bin_width(), h.bins()[0], h.count()), (0.0, 3, 3));
        h.observe(&[2.0, 0.0]);
        assert_eq!(h.bin_width(), 2.0 / 2048.0);
        assert_eq!(nonzero_bins(&h), vec![(0, 4), (2047, 1)]);
        // A zeros-only histogram merges into bin 0 of the other.
        let mut m = observed(&[&[0.5]]);
        m.merge(&observed(&[&[0.0, 0.0]]));
        assert_eq!(nonzero_bins(&m), vec![(0, 2), (2047, 1)]);
    }

    #[test]
    fn huge_growth_restarts_the_grid_with_old_counts_in_bin_zero() {
        let h = observed(&[&[1e-30, 2e-30], &[1.0]]);
        assert_eq!(h.bin_width(), 1.0 / 2048.0);
        assert_eq!(nonzero_bins(&h), vec![(0, 2), (2047, 1)]);
    }

    #[test]
    fn merge_of_unrelated_widths_moves_counts_by_bin_centre() {
        // Widths 1/2048 and 1.5/2048 (ratio 1.5): the fine bin 2047 has centre 2047.5/2048,
        // which is 2047.5 / 1.5 = 1365 coarse bins.
        let mut a = observed(&[&[1.5]]);
        let b = observed(&[&[1.0, -0.25]]);
        a.merge(&b);
        assert_eq!(a.bin_width(), 1.5 / 2048.0);
        // -0.25 was in fine bin 512 (centre 512.5 -> 341.67 -> 341).
        assert_eq!(nonzero_bins(&a), vec![(341, 1), (1365, 1), (2047, 1)]);
        assert_eq!((a.min(), a.max(), a.count()), (-0.25, 1.5, 3));
        let mut b2 = b.clone();
        b2.merge(&observed(&[&[1.5]]));
        assert_eq!(a, b2);
    }

    #[test]
    fn large_batches_bin_like_many_small_ones() {
        // 600k values take the multithreaded path; 5000-value slices the serial interleaved one,
        // 1000-value slices the direct loop. The first batch fixes the same width for all.
        let data: Vec<f32> = (0..600_003).map(|k| (k as f32 * 0.61).sin() * (k % 7) as f32).collect();
        let amax = data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let whole = observed(&[&[amax], &data]);
        let mut pieces = observed(&[&[amax]]);
        let (first, second) = data.split_at(300_000);
        first.chunks(5000).chain(second.chunks(1000)).for_each(|c| pieces.observe(c));
        assert_eq!(whole, pieces);
        assert_eq!(whole.count(), 600_004);
        assert!(whole.bins()[0] > 600_000 / 7);
    }

    #[test]
    fn json_round_trip_and_validation() {
        let h = observed(&[&[0.1, -3.0, 7.25], &[f32::NAN]]);
        let text = serde_json::to_string(&h).unwrap();
        let back: Histogram = serde_json::from_str(&text).unwrap();
        assert_eq!(back, h);
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["count"] = 4.into();
        let err = serde_json::from_value::<Histogram>(v).unwrap_err().to_string();
        assert!(err.contains("sum to 3 but count is 4"), "{err}");
        let short = r#"{"bins":[1],"bin_width":1.0,"min":0.0,"max":1.0,"count":1}"#;
        let err = serde_json::from_str::<Histogram>(short).unwrap_err().to_string();
        assert!(err.contains("1 bins, expected 2048"), "{err}");
    }
}
