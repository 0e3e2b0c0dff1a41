//! Vector kernels and their dispatch. Each kernel is generic Rust written so that the compiler
//! vectorizes it (fixed widths kept in registers, no FMA contraction), compiled once more per
//! instruction set the binary may meet (the binary itself targets baseline x86-64). A kernel set
//! is chosen once per process, the widest the CPU has; `available()` lists every set this CPU can
//! run, and the tests check each against the generic one bit for bit, so that results do not
//! depend on the machine's vector width.

use std::sync::OnceLock;

use super::conv::{run_conv_tile, ConvJob};
use super::int8conv::{igemm_generic, quantize_plane, run_tile, IgemmFn, TileJob, TileScratch};
use super::winograd::{run_block, Block, Scratch};
use crate::numerics::round_f16_slice;

/// `dst[r, :] = bias + sum_i src[r, i] * w[i, :]` for every row `r`: `src` is `[rows, k]`, `w`
/// is `[k, n]`, `dst` is `[rows, n]` (the pillar net's thin products).
pub type RowsFn = fn(dst: &mut [f32], src: &[f32], w: &[f32], bias: &[f32], k: usize, n: usize);

/// Output rows `[c0, c0 + out.len() / rows)` of the transpose of the `[rows, cols]` matrix `src`:
/// `out[j * rows + r] = src[r * cols + c0 + j]` (the NCHW -> NHWC moves of the detection heads).
pub type TransposeFn = fn(src: &[f32], rows: usize, cols: usize, c0: usize, out: &mut [f32]);

/// One Winograd block (`winograd::run_block`): transforms, GEMMs and epilogue of a run of tile
/// rows.
pub type WinogradFn = fn(&Block, &mut Scratch);

/// One instruction set's kernels.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub name: &'static str,
    pub rows: RowsFn,
    pub winograd: WinogradFn,
    /// The INT8 layers' integer GEMM (`int8conv`).
    pub igemm: IgemmFn,
    /// An INT8 layer's input levels (`int8conv::quantize_plane`).
    pub quantize: QuantizeFn,
    /// An INT8 layer's tile: packing, `igemm`, epilogue (`int8conv::run_tile`).
    pub int8_tile: Int8TileFn,
    /// FP16 layers' rounding of activations to the f16 grid, in place
    /// (`numerics::round_f16_slice`).
    pub round_f16: fn(&mut [f32]),
    /// A band of a 2-D transpose (`ops_shape::transpose`).
    pub transpose: TransposeFn,
    /// A tile of an im2col + GEMM convolution (`conv::run_conv_tile`).
    pub conv_tile: ConvTileFn,
}

/// `conv::run_conv_tile`.
pub type ConvTileFn = fn(&ConvJob, usize, &mut Vec<f32>);

/// `int8conv::quantize_plane`.
pub type QuantizeFn = fn(dst: &mut [u8], src: &[f32], mul: f32, scale: f32);
/// `int8conv::run_tile`.
pub type Int8TileFn = fn(&TileJob, usize, &mut TileScratch);

/// The portable set: the generic code at the binary's baseline.
pub fn generic() -> Kernels {
    Kernels {
        name: "generic",
        rows: rows_generic,
        winograd: |b, s| run_block(b, s),
        igemm: |w, p, k, m, n, acc| igemm_generic(w, p, k, m, n, acc),
        quantize: |d, x, m, sc| quantize_plane(d, x, m, sc),
        int8_tile: |j, t, sc| run_tile(j, t, sc),
        round_f16: |v| round_f16_slice(v),
        transpose: transpose_band::<f32>,
        conv_tile: |j, t, col| run_conv_tile(j, t, col),
    }
}

/// Every set this CPU can run, the generic one first.
pub fn available() -> Vec<Kernels> {
    #[allow(unused_mut)]
    let mut v = vec![generic()];
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") {
            let avx2 = Kernels {
                name: "avx2",
                rows: x86::rows_avx2,
                winograd: x86::winograd_avx2,
                igemm: x86::igemm_avx2,
                quantize: x86::quantize_avx2,
                int8_tile: x86::int8_tile_avx2,
                round_f16: x86::round_f16_avx2,
                transpose: x86::transpose_avx2,
                conv_tile: x86::conv_tile_avx2,
            };
            v.push(avx2);
            if has!("avxvnni") {
                v.push(Kernels { name: "avx2+avxvnni", igemm: x86::igemm_avxvnni, ..avx2 });
            }
            if has!("avx512f") && has!("avx512bw") {
                let avx512 = Kernels {
                    name: "avx512f",
                    rows: x86::rows_avx512,
                    winograd: x86::winograd_avx512,
                    quantize: x86::quantize_avx512,
                    int8_tile: x86::int8_tile_avx512,
                    round_f16: x86::round_f16_avx512,
                    conv_tile: x86::conv_tile_avx512,
                    ..avx2
                };
                v.push(avx512);
                if has!("avx512vnni") {
                    v.push(Kernels { name: "avx512f+vnni", igemm: x86::igemm_avx512vnni, ..avx512 });
                }
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            v.push(Kernels { name: "neon+dotprod", igemm: arm::igemm_dotprod, ..generic() });
        }
    }
    v
}

/// The widest set this CPU runs, chosen on first use.
pub fn best() -> &'static Kernels {
    static BEST: OnceLock<Kernels> = OnceLock::new();
    BEST.get_or_init(|| *available().last().expect("the generic set is always available"))
}

/// A band of a 2-D transpose (`TransposeFn`) through cache tiles of 32 x 32, one element at a
/// time, for any element type: the generic set's transpose, and every non-f32 Transpose's.
pub(crate) fn transpose_band<T: Copy>(src: &[T], rows: usize, cols: usize, c0: usize, out: &mut [T]) {
    const T: usize = 32;
    let n = out.len() / rows.max(1);
    assert!(src.len() == rows * cols && c0 + n <= cols && out.len() == n * rows);
    for r0 in (0..rows).step_by(T) {
        let r1 = (r0 + T).min(rows);
        for j0 in (0..n).step_by(T) {
            for j in j0..(j0 + T).min(n) {
                let orow = &mut out[j * rows..(j + 1) * rows];
                for r in r0..r1 {
                    orow[r] = src[r * cols + c0 + j];
                }
            }
        }
    }
}

#[inline(always)]
fn rows_generic(dst: &mut [f32], src: &[f32], w: &[f32], bias: &[f32], k: usize, n: usize) {
    match n {
        16 => rows_fixed::<16>(dst, src, w, bias, k),
        32 => rows_fixed::<32>(dst, src, w, bias, k),
        64 => rows_fixed::<64>(dst, src, w, bias, k),
        128 => rows_fixed::<128>(dst, src, w, bias, k),
        _ => rows_any(dst, src, w, bias, k, n),
    }
}

/// One output row at a time in an `N`-wide accumulator the compiler keeps in registers.
#[inline(always)]
fn rows_fixed<const N: usize>(dst: &mut [f32], src: &[f32], w: &[f32], bias: &[f32], k: usize) {
    let bias: &[f32; N] = bias.try_into().expect("bias has N values");
    for (row, ar) in dst.chunks_exact_mut(N).zip(src.chunks_exact(k)) {
        let mut acc = *bias;
        for (&av, wrow) in ar.iter().zip(w.chunks_exact(N)) {
            let wrow: &[f32; N] = wrow.try_into().expect("weight row has N values");
            for j in 0..N {
                acc[j] += av * wrow[j];
            }
        }
        row.copy_from_slice(&acc);
    }
}

/// Any width: the same operations in the same order as `rows_fixed`.
#[inline(always)]
fn rows_any(dst: &mut [f32], src: &[f32], w: &[f32], bias: &[f32], k: usize, n: usize) {
    for (row, ar) in dst.chunks_exact_mut(n).zip(src.chunks_exact(k)) {
        row.copy_from_slice(bias);
        for (&av, wrow) in ar.iter().zip(w.chunks_exact(n)) {
            row.iter_mut().zip(wrow).for_each(|(o, &wv)| *o += av * wv);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::int8conv::x86 as i8x86;
    use super::{quantize_plane, round_f16_slice, run_block, run_tile, Block, Scratch, TileJob, TileScratch};
    use super::{run_conv_tile, ConvJob};

    #[target_feature(enable = "avx2")]
    unsafe fn conv_tile_avx2_impl(j: &ConvJob, t: usize, col: &mut Vec<f32>) {
        run_conv_tile(j, t, col)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn conv_tile_avx512_impl(j: &ConvJob, t: usize, col: &mut Vec<f32>) {
        run_conv_tile(j, t, col)
    }

    /// Reachable only through `available()`, which lists it after detecting AVX2.
    pub(super) fn conv_tile_avx2(j: &ConvJob, t: usize, col: &mut Vec<f32>) {
        // SAFETY: `available()` hands this out only on a CPU with AVX2.
        unsafe { conv_tile_avx2_impl(j, t, col) }
    }

    /// Reachable only through `available()`, which lists it after detecting AVX-512F.
    pub(super) fn conv_tile_avx512(j: &ConvJob, t: usize, col: &mut Vec<f32>) {
        // SAFETY: `available()` hands this out only on a CPU with AVX-512F.
        unsafe { conv_tile_avx512_impl(j, t, col) }
    }

    /// Blocks of 8 x 8 transposed in registers, then one of 4 x 8 when four rows or more are
    /// left; the rest (and the columns past the last multiple of 8) one element at a time.
    #[target_feature(enable = "avx2")]
    unsafe fn transpose_avx2_impl(src: &[f32], rows: usize, cols: usize, c0: usize, out: &mut [f32]) {
        use std::arch::x86_64::*;
        let n = out.len() / rows.max(1);
        assert!(src.len() == rows * cols && c0 + n <= cols && out.len() == n * rows);
        let (r8, n8) = (rows / 8 * 8, n / 8 * 8);
        // Eight source rows at a time across the band: eight streams for the prefetcher, while
        // the band's output stays in cache.
        for r0 in (0..r8).step_by(8) {
            for j0 in (0..n8).step_by(8) {
                // SAFETY: rows r0..r0 + 8 <= rows and columns c0 + j0..c0 + j0 + 8 <= cols of
                // `src`; output rows j0..j0 + 8 <= n, elements r0..r0 + 8 <= rows of each.
                let p = src.as_ptr().add(r0 * cols + c0 + j0);
                let a: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(p.add(i * cols)));
                let t0 = _mm256_unpacklo_ps(a[0], a[1]);
                let t1 = _mm256_unpackhi_ps(a[0], a[1]);
                let t2 = _mm256_unpacklo_ps(a[2], a[3]);
                let t3 = _mm256_unpackhi_ps(a[2], a[3]);
                let t4 = _mm256_unpacklo_ps(a[4], a[5]);
                let t5 = _mm256_unpackhi_ps(a[4], a[5]);
                let t6 = _mm256_unpacklo_ps(a[6], a[7]);
                let t7 = _mm256_unpackhi_ps(a[6], a[7]);
                let u = [
                    _mm256_shuffle_ps::<0x44>(t0, t2),
                    _mm256_shuffle_ps::<0xEE>(t0, t2),
                    _mm256_shuffle_ps::<0x44>(t1, t3),
                    _mm256_shuffle_ps::<0xEE>(t1, t3),
                    _mm256_shuffle_ps::<0x44>(t4, t6),
                    _mm256_shuffle_ps::<0xEE>(t4, t6),
                    _mm256_shuffle_ps::<0x44>(t5, t7),
                    _mm256_shuffle_ps::<0xEE>(t5, t7),
                ];
                let o = out.as_mut_ptr().add(j0 * rows + r0);
                for i in 0..4 {
                    _mm256_storeu_ps(o.add(i * rows), _mm256_permute2f128_ps::<0x20>(u[i], u[i + 4]));
                    _mm256_storeu_ps(o.add((i + 4) * rows), _mm256_permute2f128_ps::<0x31>(u[i], u[i + 4]));
                }
            }
        }
        // Four more rows, if there are: 4 x 8 blocks, half-vector stores.
        let r4 = if rows - r8 >= 4 { r8 + 4 } else { r8 };
        if r4 > r8 {
            for j0 in (0..n8).step_by(8) {
                // SAFETY: rows r8..r8 + 4 <= rows, columns c0 + j0..c0 + j0 + 8 <= cols; output
                // rows j0..j0 + 8 <= n, elements r8..r8 + 4 <= rows of each.
                let p = src.as_ptr().add(r8 * cols + c0 + j0);
                let a: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(p.add(i * cols)));
                let t0 = _mm256_unpacklo_ps(a[0], a[1]);
                let t1 = _mm256_unpackhi_ps(a[0], a[1]);
                let t2 = _mm256_unpacklo_ps(a[2], a[3]);
                let t3 = _mm256_unpackhi_ps(a[2], a[3]);
                // Column j0 + i in the low half of u[i], j0 + i + 4 in the high half.
                let u = [
                    _mm256_shuffle_ps::<0x44>(t0, t2),
                    _mm256_shuffle_ps::<0xEE>(t0, t2),
                    _mm256_shuffle_ps::<0x44>(t1, t3),
                    _mm256_shuffle_ps::<0xEE>(t1, t3),
                ];
                let o = out.as_mut_ptr().add(j0 * rows + r8);
                for (i, v) in u.into_iter().enumerate() {
                    _mm_storeu_ps(o.add(i * rows), _mm256_castps256_ps128(v));
                    _mm_storeu_ps(o.add((i + 4) * rows), _mm256_extractf128_ps::<1>(v));
                }
            }
        }
        for j in 0..n8 {
            for r in r4..rows {
                out[j * rows + r] = src[r * cols + c0 + j];
            }
        }
        for j in n8..n {
            for r in 0..rows {
                out[j * rows + r] = src[r * cols + c0 + j];
            }
        }
    }

    /// Reachable only through `available()`, which lists it after detecting AVX2.
    pub(super) fn transpose_avx2(src: &[f32], rows: usize, cols: usize, c0: usize, out: &mut [f32]) {
        // SAFETY: `available()` hands this out only on a CPU with AVX2.
        unsafe { transpose_avx2_impl(src, rows, cols, c0, out) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn round_f16_avx2_impl(v: &mut [f32]) {
        round_f16_slice(v)
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn round_f16_avx512_impl(v: &mut [f32]) {
        round_f16_slice(v)
    }

    /// Reachable only through `available()`, which lists it after detecting AVX2.
    pub(super) fn round_f16_avx2(v: &mut [f32]) {
        // SAFETY: `available()` hands this out only on a CPU with AVX2.
        unsafe { round_f16_avx2_impl(v) }
    }

    /// Reachable only through `available()`, which lists it after detecting AVX-512F and BW.
    pub(super) fn round_f16_avx512(v: &mut [f32]) {
        // SAFETY: `available()` hands this out only on a CPU with AVX-512F and BW.
        unsafe { round_f16_avx512_impl(v) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn quantize_avx2_impl(d: &mut [u8], x: &[f32], m: f32, s: f32) {
        quantize_plane(d, x, m, s)
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn quantize_avx512_impl(d: &mut [u8], x: &[f32], m: f32, s: f32) {
        quantize_plane(d, x, m, s)
    }

    #[target_feature(enable = "avx2")]
    unsafe fn int8_tile_avx2_impl(j: &TileJob, t: usize, sc: &mut TileScratch) {
        run_tile(j, t, sc)
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn int8_tile_avx512_impl(j: &TileJob, t: usize, sc: &mut TileScratch) {
        run_tile(j, t, sc)
    }

    /// Reachable only through `available()`, which lists it after detecting AVX2.
    pub(super) fn quantize_avx2(d: &mut [u8], x: &[f32], m: f32, s: f32) {
        // SAFETY: `available()` hands this out only on a CPU with AVX2.
        unsafe { quantize_avx2_impl(d, x, m, s) }
    }

    /// Reachable only through `available()`, which lists it after detecting AVX-512F and BW.
    pub(super) fn quantize_avx512(d: &mut [u8], x: &[f32], m: f32, s: f32) {
        // SAFETY: `available()` hands this out only on a CPU with AVX-512F and BW.
        unsafe { quantize_avx512_impl(d, x, m, s) }
    }

    /// Reachable only through `available()`, which lists it after detecting AVX2.
    pub(super) fn int8_tile_avx2(j: &TileJob, t: usize, sc: &mut TileScratch) {
        // SAFETY: `available()` hands this out only on a CPU with AVX2.
        unsafe { int8_tile_avx2_impl(j, t, sc) }
    }

    /// Reachable only through `available()`, which lists it after detecting AVX-512F and BW.
    pub(super) fn int8_tile_avx512(j: &TileJob, t: usize, sc: &mut TileScratch) {
        // SAFETY: `available()` hands this out only on a CPU with AVX-512F and BW.
        unsafe { int8_tile_avx512_impl(j, t, sc) }
    }

    /// Reachable only through `available()`, which lists it after detecting AVX2.
    pub(super) fn igemm_avx2(w: &[i8], p: &[u8], kp4: usize, mb: usize, ntp: usize, acc: &mut [i32]) {
        // SAFETY: `available()` hands this out only on a CPU with AVX2.
        unsafe { i8x86::igemm_avx2(w, p, kp4, mb, ntp, acc) }
    }

    /// Reachable only through `available()`, which lists it after detecting AVX-VNNI.
    pub(super) fn igemm_avxvnni(w: &[i8], p: &[u8], kp4: usize, mb: usize, ntp: usize, acc: &mut [i32]) {
        // SAFETY: `available()` hands this out only on a CPU with AVX2 and AVX-VNNI.
        unsafe { i8x86::igemm_avxvnni(w, p, kp4, mb, ntp, acc) }
    }

    /// Reachable only through `available()`, which lists it after detecting AVX-512 VNNI.
    pub(super) fn igemm_avx512vnni(w: &[i8], p: &[u8], kp4: usize, mb: usize, ntp: usize, acc: &mut [i32]) {
        // SAFETY: `available()` hands this out only on a CPU with AVX-512F, BW and VNNI.
        unsafe { i8x86::igemm_avx512vnni(w, p, kp4, mb, ntp, acc) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn winograd_avx2_impl(b: &Block, s: &mut Scratch) {
        run_block(b, s)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn winograd_avx512_impl(b: &Block, s: &mut Scratch) {
        run_block(b, s)
    }

    /// Reachable only through `available()`, which lists it after detecting AVX2.
    pub(super) fn winograd_avx2(b: &Block, s: &mut Scratch) {
        // SAFETY: `available()` hands this out only on a CPU with AVX2.
        unsafe { winograd_avx2_impl(b, s) }
    }

    /// Reachable only through `available()`, which lists it after detecting AVX-512F.
    pub(super) fn winograd_avx512(b: &Block, s: &mut Scratch) {
        // SAFETY: `available()` hands this out only on a CPU with AVX-512F.
        unsafe { winograd_avx512_impl(b, s) }
    }
    #[target_feature(enable = "avx2")]
    unsafe fn rows_avx2_impl(dst: &mut [f32], src: &[f32], w: &[f32], bias: &[f32], k: usize, n: usize) {
        super::rows_generic(dst, src, w, bias, k, n)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn rows_avx512_impl(dst: &mut [f32], src: &[f32], w: &[f32], bias: &[f32], k: usize, n: usize) {
        super::rows_generic(dst, src, w, bias, k, n)
    }

    /// Reachable only through `available()`, which lists it after detecting AVX2.
    pub(super) fn rows_avx2(dst: &mut [f32], src: &[f32], w: &[f32], bias: &[f32], k: usize, n: usize) {
        // SAFETY: `available()` hands this out only on a CPU with AVX2.
        unsafe { rows_avx2_impl(dst, src, w, bias, k, n) }
    }

    /// Reachable only through `available()`, which lists it after detecting AVX-512F.
    pub(super) fn rows_avx512(dst: &mut [f32], src: &[f32], w: &[f32], bias: &[f32], k: usize, n: usize) {
        // SAFETY: `available()` hands this out only on a CPU with AVX-512F.
        unsafe { rows_avx512_impl(dst, src, w, bias, k, n) }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::super::int8conv::arm as i8arm;

    /// Reachable only through `available()`, which lists it after detecting the dot-product
    /// extension.
    pub(super) fn igemm_dotprod(w: &[i8], p: &[u8], kp4: usize, mb: usize, ntp: usize, acc: &mut [i32]) {
        // SAFETY: `available()` hands this out only on a CPU with NEON and dot products.
        unsafe { i8arm::igemm_dotprod(w, p, kp4, mb, ntp, acc) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pointpillars::SplitMix64;

    fn data(rng: &mut SplitMix64, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.unit() * 4.0 - 2.0).collect()
    }

    /// A naive reference in f64: every set agrees with it to rounding.
    fn reference(src: &[f32], w: &[f32], bias: &[f32], k: usize, n: usize) -> Vec<f64> {
        let rows = src.len() / k;
        let mut y = vec![0f64; rows * n];
        for r in 0..rows {
            for j in 0..n {
                y[r * n + j] =
                    bias[j] as f64 + (0..k).map(|i| src[r * k + i] as f64 * w[i * n + j] as f64).sum::<f64>();
            }
        }
        y
    }

    /// `PILLARQ_EXPECT_KERNELS=a,b,...` (set by scripts/check_aarch64.sh for each emulated CPU):
    /// exactly these sets are detected, so the kernel tests ran the ones that CPU should get.
    #[test]
    fn the_expected_sets_are_detected() {
        let Ok(want) = std::env::var("PILLARQ_EXPECT_KERNELS") else { return };
        let got: Vec<&str> = available().iter().map(|k| k.name).collect();
        assert_eq!(got, want.split(',').collect::<Vec<_>>());
    }

    /// im2col + GEMM tiles: every set gives the generic bits, with padding, stride 2, groups,
    /// pointwise, Relu and output quantization, over several tiles.
    #[test]
    fn every_kernel_set_convolves_like_the_generic_one() {
        use crate::exec::cpu::conv::{conv2d_with, Conv2dParams};
        use crate::graph::Activation;
        let mut rng = SplitMix64::new(10);
        for (cin, cout, group, k, s, h, w, quant) in [
            (8, 6, 1, 3, 2, 75, 90, None),
            (8, 6, 2, 3, 1, 40, 37, Some(0.02)),
            (16, 5, 1, 1, 1, 70, 60, None),
            (4, 3, 1, 5, 2, 33, 20, Some(0.05)),
        ] {
            let xs = [1, cin, h, w];
            let x = data(&mut rng, cin * h * w);
            let wt = data(&mut rng, cout * cin / group * k * k);
            let b = data(&mut rng, cout);
            let pad = if k == 1 { 0 } else { k / 2 };
            let p = Conv2dParams { group, kernel: [k, k], strides: [s, s], dilations: [1, 1], pads: [pad; 4] };
            let run =
                |set: &Kernels| conv2d_with(set.conv_tile, &x, xs, &wt, cout, Some(&b), &p, Activation::Relu, quant);
            let (want, _) = run(&generic());
            for set in available() {
                let (got, _) = run(&set);
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{}: {p:?}", set.name);
            }
        }
    }

    /// Transposes: every set moves every element where the definition puts it, for shapes with
    /// and without multiples of 8 and bands starting anywhere.
    #[test]
    fn every_kernel_set_transposes_like_the_definition() {
        let mut rng = SplitMix64::new(8);
        for (rows, cols) in
            [(18, 53), (42, 40), (12, 8), (8, 17), (5, 9), (1, 3), (16, 1), (33, 70), (4, 27), (7, 24), (20, 16)]
        {
            let src = data(&mut rng, rows * cols);
            for (c0, n) in [(0, cols), (cols / 3, cols - cols / 3), (cols / 2, (cols - cols / 2).min(9)), (0, 0)] {
                for s in available() {
                    let mut out = vec![f32::NAN; n * rows];
                    (s.transpose)(&src, rows, cols, c0, &mut out);
                    for j in 0..n {
                        for r in 0..rows {
                            let (got, want) = (out[j * rows + r], src[r * cols + c0 + j]);
                            assert_eq!(got.to_bits(), want.to_bits(), "{}: {rows}x{cols} c0 {c0} ({j}, {r})", s.name);
                        }
                    }
                }
            }
        }
    }

    /// f16 rounding: every set gives the generic bits, on values across the f16 range and its
    /// edges (subnormals, ties, overflow to infinity, NaN, signed zeros).
    #[test]
    fn every_kernel_set_rounds_to_f16_like_the_generic_one() {
        let mut rng = SplitMix64::new(6);
        let mut v: Vec<f32> =
            (0..5000).map(|_| (rng.unit() * 2.0 - 1.0) * 2f32.powi((rng.unit() * 60.0) as i32 - 30)).collect();
        v.extend([
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            -f32::INFINITY,
            65_504.0,
            65_519.99,
            65_520.0,
            6.1e-5,
            5.96e-8,
            2.98e-8,
        ]);
        v.extend((0..2000).map(|i| f32::from_bits(0x3880_0000 + i * 0x1000)));
        let mut want = v.clone();
        (generic().round_f16)(&mut want);
        for s in available() {
            let mut got = v.clone();
            (s.round_f16)(&mut got);
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{} rounds otherwise", s.name);
        }
    }

    #[test]
    fn every_kernel_set_computes_the_generic_bits() {
        let sets = available();
        assert_eq!(sets[0].name, "generic");
        assert!(sets.iter().any(|s| s.name == best().name), "best() is one of the available sets");
        let mut rng = SplitMix64::new(5);
        for &n in &[16usize, 32, 64, 128, 24, 1] {
            for &k in &[1usize, 10, 33] {
                let rows = 37;
                let (src, w, bias) = (data(&mut rng, rows * k), data(&mut rng, k * n), data(&mut rng, n));
                let mut want = vec![0f32; rows * n];
                (generic().rows)(&mut want, &src, &w, &bias, k, n);
                let exact = reference(&src, &w, &bias, k, n);
                let err = want.iter().zip(&exact).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
                assert!(err < 1e-4, "generic n={n} k={k}: max error {err}");
                for s in &sets {
                    let mut got = vec![f32::NAN; rows * n];
                    (s.rows)(&mut got, &src, &w, &bias, k, n);
                    let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{} differs from the generic kernel at n={n} k={k}", s.name);
                }
            }
        }
    }
}
