//! INT8 convolution in integers, as TensorRT's INT8 kernels compute it: the activation is
//! quantized per tensor (`level = saturate(round_half_even(x * m[c] / s_a))`, with the input
//! equalization multipliers `m` when the plan has them), the weight per output channel, the
//! products are summed exactly in i32, and the sum is dequantized once:
//! `y[c] = acc as f32 * (s_a * s_w[c]) + bias[c]`, then the activation and (for INT8 readers) the
//! output quantization. Integer sums do not depend on their order, so the result is the same for
//! every kernel set and thread count, and no float rounding of the products enters it.
//!
//! The GEMM kernels multiply unsigned by signed bytes (`vpdpbusd`): activations are stored as
//! `level + 128` in a u8 and the weight's column sum times 128 is subtracted afterwards, exactly.
//! On aarch64 (`sdot`, signed by signed) the kernel flips the bytes back to levels and starts its
//! sums at that same offset, so it returns the same integers.
//! Layouts: the weight `[Cout / MR][Kp / 4][MR][4]` (i8, Kp = K rounded up to 4, zero-padded),
//! the activation panel `[Kp / 4][pixels][4]` (u8), the accumulators `[Cout][pixels]` (i32).

use rayon::prelude::*;

use super::conv::{bias_act_quant, im2col, Conv2dParams};
use super::gemm::SharedMut;
use crate::graph::Activation;
use crate::numerics::int8::round_half_even;

/// Output channels per micro-kernel block (6 divides the heads' 18, 42 and 12 outputs).
pub const MR: usize = 6;
/// Pixels per micro-kernel block: four 16-lane vectors.
pub const NR: usize = 64;
/// The offset that makes an INT8 level an unsigned byte.
const OFFSET: i32 = 128;

/// `acc[MR * mblocks][ntp] = w * panel` (see the module's layouts); `ntp` is a multiple of `NR`.
pub type IgemmFn = fn(w: &[i8], panel: &[u8], kp4: usize, mblocks: usize, ntp: usize, acc: &mut [i32]);

/// An INT8 Conv layer prepared from its plan: packed weight levels and the scales.
#[derive(Debug, Clone)]
pub struct Int8Conv {
    pub cout: usize,
    pub cin: usize,
    pub kernel: [usize; 2],
    kp4: usize,
    mblocks: usize,
    w: Vec<i8>,
    /// Per output channel: 128 times the sum of its weight levels.
    offset: Vec<i32>,
    /// Per output channel: `s_a * s_w[c]`.
    scale: Vec<f32>,
    act_scale: f32,
    /// Input equalization: the activation's channel `c` is multiplied by `m[c]` before it is
    /// quantized.
    input_mul: Option<Vec<f32>>,
}

impl Int8Conv {
    /// From the weight levels `q[Cout, Cin, kh, kw]` and their per-channel scales, the activation
    /// scale and the equalization multipliers. `None` when the sizes disagree.
    pub fn new(
        q: &[i8],
        shape: &[usize],
        w_scale: &[f32],
        act_scale: f32,
        input_mul: Option<&[f32]>,
    ) -> Option<Int8Conv> {
        let [cout, cin, kh, kw] = *shape else { return None };
        let k = cin.checked_mul(kh)?.checked_mul(kw)?;
        if q.len() != cout.checked_mul(k)? || w_scale.len() != cout || input_mul.is_some_and(|m| m.len() != cin) {
            return None;
        }
        let kp4 = k.div_ceil(4);
        let mblocks = cout.div_ceil(MR);
        let mut w = vec![0i8; mblocks * kp4 * MR * 4];
        for co in 0..cout {
            let (mb, r) = (co / MR, co % MR);
            for kk in 0..k {
                w[((mb * kp4 + kk / 4) * MR + r) * 4 + kk % 4] = q[co * k + kk];
            }
        }
        let offset =
            (0..cout).map(|co| OFFSET * q[co * k..(co + 1) * k].iter().map(|&v| v as i32).sum::<i32>()).collect();
        Some(Int8Conv {
            cout,
            cin,
            kernel: [kh, kw],
            kp4,
            mblocks,
            w,
            offset,
            scale: w_scale.iter().map(|&s| act_scale * s).collect(),
            act_scale,
            input_mul: input_mul.map(<[f32]>::to_vec),
        })
    }
}

/// Four padding bytes (level 0) as one panel word.
const PAD4: u32 = u32::from_ne_bytes([OFFSET as u8; 4]);

/// `level + 128` of `v` at scale `s` as a byte: `quantize_i8`'s level (division, round half to
/// even, saturation, NaN to 0), written without the saturating float-to-int cast so that loops
/// over it vectorize (the test checks it against `quantize_i8`).
#[inline(always)]
fn offset_level(v: f32, s: f32) -> u8 {
    let r = round_half_even(v / s);
    let r = if r.is_nan() { 0.0 } else { r.clamp(-128.0, 127.0) };
    // SAFETY: r is an integer in [-128, 127].
    (unsafe { r.to_int_unchecked::<i32>() } + OFFSET) as u8
}

/// Four bytes (k order) as one panel word whose memory holds them in that order on any host.
#[inline(always)]
fn word(b: [u8; 4]) -> u32 {
    u32::from_le(b[0] as u32 | (b[1] as u32) << 8 | (b[2] as u32) << 16 | (b[3] as u32) << 24)
}

thread_local! {
    /// The calling thread's buffer for a layer's input levels, kept between layers (fresh pages
    /// for megabytes on every layer cost more than the kernel).
    static XQ: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::default();
    /// Each worker's tile buffers.
    static TILE: std::cell::RefCell<TileScratch> = std::cell::RefCell::default();
}

/// Output pixels per tile: keeps the panel near 256 KiB; a multiple of `NR`. Depends only on the
/// layer's shape.
fn tile_pixels(kp: usize) -> usize {
    ((256 * 1024) / kp.max(1)).clamp(NR, 1024) / NR * NR
}

/// `y = conv(x, w) + bias`, `act`, then `quant`, in integers (see the module). Ungrouped; any
/// kernel size, stride, dilation and padding.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_int8(
    x: &[f32],
    xs: [usize; 4],
    c: &Int8Conv,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    act: Activation,
    quant: Option<f32>,
) -> (Vec<f32>, [usize; 4]) {
    conv2d_int8_with(super::kernels::best(), x, xs, c, bias, p, act, quant)
}

/// `conv2d_int8` on a given kernel set (the tests run every set this CPU has).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_int8_with(
    kset: &super::kernels::Kernels,
    x: &[f32],
    xs: [usize; 4],
    c: &Int8Conv,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    act: Activation,
    quant: Option<f32>,
) -> (Vec<f32>, [usize; 4]) {
    let [n, cin, h, wd] = xs;
    assert!(cin == c.cin && p.group == 1 && p.kernel == c.kernel, "the layer was prepared for another shape");
    let (oh, ow) = p.out_hw(h, wd).expect("shape checked by the caller");
    let hw = oh * ow;
    let cout = c.cout;
    let mut y = vec![0f32; n * cout * hw];
    if hw == 0 || cout == 0 {
        return (y, [n, cout, oh, ow]);
    }
    let kp = c.kp4 * 4;
    let tile = tile_pixels(kp);
    let tiles = hw.div_ceil(tile);
    let plane = h * wd;
    let pointwise = p.is_pointwise();
    XQ.with_borrow_mut(|xq| {
        // The input's levels, offset to unsigned bytes, once per layer (a 1x1 convolution packs
        // its panel straight from the floats instead).
        if !pointwise {
            xq.resize(x.len(), 0);
            xq.par_chunks_mut(plane.max(1)).zip(x.par_chunks(plane.max(1))).enumerate().for_each(|(i, (dst, src))| {
                (kset.quantize)(dst, src, c.input_mul.as_ref().map_or(1.0, |m| m[i % cin]), c.act_scale)
            });
        }
        let job = TileJob {
            x,
            xq: if pointwise { None } else { Some(&xq[..]) },
            xs,
            c,
            p,
            bias,
            act,
            quant,
            out: SharedMut::new(&mut y),
            hw,
            ow,
            tile,
            tiles,
            igemm: kset.igemm,
        };
        (0..n * tiles).into_par_iter().for_each(|t| TILE.with_borrow_mut(|sc| (kset.int8_tile)(&job, t, sc)));
    });
    (y, [n, cout, oh, ow])
}

/// One INT8 layer call: what every tile job reads.
pub struct TileJob<'a> {
    x: &'a [f32],
    /// The input's offset levels (`None` for a 1x1 convolution, packed from `x`).
    xq: Option<&'a [u8]>,
    xs: [usize; 4],
    c: &'a Int8Conv,
    p: &'a Conv2dParams,
    bias: Option<&'a [f32]>,
    act: Activation,
    quant: Option<f32>,
    out: SharedMut,
    hw: usize,
    ow: usize,
    tile: usize,
    tiles: usize,
    igemm: IgemmFn,
}

/// A worker's tile buffers: im2col bytes, the panel, the accumulators.
pub type TileScratch = (Vec<u8>, Vec<u32>, Vec<i32>);

/// The offset levels of a plane: `dst[i] = level(src[i] * mul) + 128` at scale `s` (`mul` 1.0
/// without equalization: `x * 1.0 == x`).
#[inline(always)]
pub(crate) fn quantize_plane(dst: &mut [u8], src: &[f32], mul: f32, s: f32) {
    dst.iter_mut().zip(src).for_each(|(d, &v)| *d = offset_level(v * mul, s));
}

/// Tile `t` of a layer: pack its panel, multiply in integers (`job.igemm`), dequantize, bias,
/// activation, output quantization. Generic code compiled once per instruction set
/// (`kernels::Kernels::int8_tile`); integer sums and elementwise float steps, so every set
/// computes the same bits.
#[inline(always)]
pub(crate) fn run_tile(job: &TileJob, t: usize, scratch: &mut TileScratch) {
    let (col, panel, acc) = scratch;
    let (c, p) = (job.c, job.p);
    let [_, cin, h, wd] = job.xs;
    let (hw, cout, s) = (job.hw, c.cout, c.act_scale);
    let plane = h * wd;
    let k = cin * c.kernel[0] * c.kernel[1];
    let kp = c.kp4 * 4;
    let (b, t) = (t / job.tiles, t % job.tiles);
    let (p0, p1) = (t * job.tile, ((t + 1) * job.tile).min(hw));
    let np = p1 - p0;
    let ntp = np.div_ceil(NR) * NR;
    let mul = |ci: usize| c.input_mul.as_ref().map_or(1.0, |m| m[ci]);
    panel.resize(c.kp4 * ntp, PAD4);
    match job.xq {
        None => {
            // Four input channels' floats -> one word of four offset levels per pixel.
            let xb = &job.x[b * cin * plane..(b + 1) * cin * plane];
            for k4 in 0..c.kp4 {
                let dst = &mut panel[k4 * ntp..(k4 + 1) * ntp];
                let ch = |j: usize| (k4 * 4 + j < k).then(|| (&xb[(k4 * 4 + j) * plane + p0..][..np], mul(k4 * 4 + j)));
                let rows: [Option<(&[f32], f32)>; 4] = std::array::from_fn(ch);
                if let [Some((r0, m0)), Some((r1, m1)), Some((r2, m2)), Some((r3, m3))] = rows {
                    for (px, d) in dst[..np].iter_mut().enumerate() {
                        *d = word([
                            offset_level(r0[px] * m0, s),
                            offset_level(r1[px] * m1, s),
                            offset_level(r2[px] * m2, s),
                            offset_level(r3[px] * m3, s),
                        ]);
                    }
                } else {
                    for (px, d) in dst[..np].iter_mut().enumerate() {
                        let lv =
                            |r: &Option<(&[f32], f32)>| r.map_or(OFFSET as u8, |(row, m)| offset_level(row[px] * m, s));
                        *d = word([lv(&rows[0]), lv(&rows[1]), lv(&rows[2]), lv(&rows[3])]);
                    }
                }
                dst[np..].fill(PAD4);
            }
        }
        Some(xq) => {
            // im2col in bytes ([Kp][np], rows past K at the offset), then four rows at a time
            // into the panel.
            col.resize(kp * np, OFFSET as u8);
            im2col(&xq[b * cin * plane..(b + 1) * cin * plane], cin, h, wd, job.ow, p, p0, p1, col, OFFSET as u8);
            col[k * np..].fill(OFFSET as u8);
            for k4 in 0..c.kp4 {
                let dst = &mut panel[k4 * ntp..(k4 + 1) * ntp];
                let r: [&[u8]; 4] = std::array::from_fn(|j| &col[(k4 * 4 + j) * np..(k4 * 4 + j + 1) * np]);
                let (r0, r1, r2, r3) = (r[0], r[1], r[2], r[3]);
                for (px, d) in dst[..np].iter_mut().enumerate() {
                    *d = word([r0[px], r1[px], r2[px], r3[px]]);
                }
                dst[np..].fill(PAD4);
            }
        }
    }
    acc.resize(c.mblocks * MR * ntp, 0);
    // SAFETY: the panel's memory as bytes (alignment 1, same length); each word was made by
    // `word`, so its bytes lie in memory in k order on any host.
    let bytes = unsafe { std::slice::from_raw_parts(panel.as_ptr() as *const u8, panel.len() * 4) };
    (job.igemm)(&c.w, bytes, c.kp4, c.mblocks, ntp, acc);
    // SAFETY: this job writes only columns [p0, p1) of batch b's rows.
    let yall = unsafe { job.out.slice() };
    for co in 0..cout {
        let row = &mut yall[(b * cout + co) * hw + p0..(b * cout + co) * hw + p1];
        let (off, sc) = (c.offset[co], c.scale[co]);
        for (o, &a) in row.iter_mut().zip(&acc[co * ntp..co * ntp + np]) {
            *o = (a - off) as f32 * sc;
        }
        bias_act_quant(row, job.bias.map_or(0.0, |bb| bb[co]), job.act, job.quant);
    }
}

/// The portable kernel: the same sums in plain integer arithmetic (also the reference the
/// vector kernels are tested against bit for bit).
#[inline(always)]
pub(crate) fn igemm_generic(w: &[i8], panel: &[u8], kp4: usize, mblocks: usize, ntp: usize, acc: &mut [i32]) {
    for mb in 0..mblocks {
        let wb = &w[mb * kp4 * MR * 4..(mb + 1) * kp4 * MR * 4];
        for px0 in (0..ntp).step_by(16) {
            let mut sums = [[0i32; 16]; MR];
            for k4 in 0..kp4 {
                let a = &panel[(k4 * ntp + px0) * 4..(k4 * ntp + px0 + 16) * 4];
                for (r, s) in sums.iter_mut().enumerate() {
                    let wv = &wb[(k4 * MR + r) * 4..(k4 * MR + r + 1) * 4];
                    for (px, sv) in s.iter_mut().enumerate() {
                        let av = &a[px * 4..px * 4 + 4];
                        *sv += (0..4).map(|j| av[j] as i32 * wv[j] as i32).sum::<i32>();
                    }
                }
            }
            for (r, s) in sums.iter().enumerate() {
                acc[(mb * MR + r) * ntp + px0..][..16].copy_from_slice(s);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::MR;

    /// One VNNI kernel at one vector width: 6 output channels x 4 vectors of pixels per block
    /// (24 accumulators), each `$dot` adding four u8 x s8 products per i32 lane.
    macro_rules! vnni_kernel {
        ($(#[$doc:meta])* $name:ident, $features:literal, $vec:ty, $lanes:literal,
         $zero:ident, $load:ident, $store:ident, $set1:ident, $dot:ident) => {
            $(#[$doc])*
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn $name(
                w: &[i8],
                panel: &[u8],
                kp4: usize,
                mblocks: usize,
                ntp: usize,
                acc: &mut [i32],
            ) {
                const PX: usize = 4 * $lanes;
                assert!(ntp.is_multiple_of(PX) && panel.len() >= kp4 * ntp * 4 && w.len() >= mblocks * kp4 * MR * 4);
                assert!(acc.len() >= mblocks * MR * ntp);
                for px0 in (0..ntp).step_by(PX) {
                    for mb in 0..mblocks {
                        let wb = w.as_ptr().add(mb * kp4 * MR * 4);
                        let mut c = [[$zero(); 4]; MR];
                        for k4 in 0..kp4 {
                            let a = panel.as_ptr().add((k4 * ntp + px0) * 4);
                            let av: [$vec; 4] = std::array::from_fn(|i| $load(a.add(4 * $lanes * i) as *const _));
                            let wk = wb.add(k4 * MR * 4);
                            for (r, cr) in c.iter_mut().enumerate() {
                                let b = $set1((wk.add(r * 4) as *const i32).read_unaligned());
                                for i in 0..4 {
                                    cr[i] = $dot(cr[i], av[i], b);
                                }
                            }
                        }
                        for (r, cr) in c.iter().enumerate() {
                            let dst = acc.as_mut_ptr().add((mb * MR + r) * ntp + px0);
                            for (i, v) in cr.iter().enumerate() {
                                $store(dst.add($lanes * i) as *mut _, *v);
                            }
                        }
                    }
                }
            }
        };
    }

    vnni_kernel!(
        /// AVX-512 VNNI: 6 output channels x 64 pixels per block.
        igemm_avx512vnni, "avx512f,avx512bw,avx512vnni", __m512i, 16,
        _mm512_setzero_si512, _mm512_loadu_si512, _mm512_storeu_si512, _mm512_set1_epi32, _mm512_dpbusd_epi32
    );

    vnni_kernel!(
        /// AVX-VNNI (256-bit): 6 output channels x 32 pixels per block.
        igemm_avxvnni, "avx2,avxvnni", __m256i, 8,
        _mm256_setzero_si256, _mm256_loadu_si256, _mm256_storeu_si256, _mm256_set1_epi32, _mm256_dpbusd_avx_epi32
    );

    /// AVX2 without VNNI: bytes widened to i16 and multiplied pairwise into i32 (`vpmaddwd`,
    /// exact; `vpmaddubsw` would saturate). 6 output channels x 8 pixels per step.
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn igemm_avx2(w: &[i8], panel: &[u8], kp4: usize, mblocks: usize, ntp: usize, acc: &mut [i32]) {
        assert!(ntp.is_multiple_of(8) && panel.len() >= kp4 * ntp * 4 && w.len() >= mblocks * kp4 * MR * 4);
        assert!(acc.len() >= mblocks * MR * ntp);
        for px0 in (0..ntp).step_by(8) {
            for mb in 0..mblocks {
                let wb = w.as_ptr().add(mb * kp4 * MR * 4);
                // Per channel, two vectors of 4 pixels x 2 pair sums.
                let mut c = [[_mm256_setzero_si256(); 2]; MR];
                for k4 in 0..kp4 {
                    let a = panel.as_ptr().add((k4 * ntp + px0) * 4);
                    let av: [__m256i; 2] =
                        std::array::from_fn(|i| _mm256_cvtepu8_epi16(_mm_loadu_si128(a.add(16 * i) as *const _)));
                    let wk = wb.add(k4 * MR * 4);
                    for (r, cr) in c.iter_mut().enumerate() {
                        let w4 = _mm_cvtepi8_epi16(_mm_cvtsi32_si128((wk.add(r * 4) as *const i32).read_unaligned()));
                        let b = _mm256_broadcastq_epi64(w4);
                        for i in 0..2 {
                            cr[i] = _mm256_add_epi32(cr[i], _mm256_madd_epi16(av[i], b));
                        }
                    }
                }
                for (r, cr) in c.iter().enumerate() {
                    // Lanes hold (pixel, pair) sums; add each pixel's two pairs.
                    let h = _mm256_hadd_epi32(cr[0], cr[1]);
                    // hadd interleaves 128-bit halves: [p0 p1 p4 p5 | p2 p3 p6 p7].
                    let v = _mm256_permute4x64_epi64(h, 0b11_01_10_00);
                    _mm256_storeu_si256(acc.as_mut_ptr().add((mb * MR + r) * ntp + px0) as *mut _, v);
                }
            }
        }
    }
}

/// aarch64 (Jetson's Cortex-A78AE and Carmel cores have the dot-product extension): signed
/// dot products (`sdot`). Written as inline assembly because Rust 1.95's `vdotq_laneq_s32` is
/// still unstable; loads and the rest are stable NEON intrinsics.
#[cfg(target_arch = "aarch64")]
pub(crate) mod arm {
    use std::arch::aarch64::*;
    use std::arch::asm;

    use super::{MR, OFFSET};

    /// `acc[i] += sum_j a[4i + j] * w[4 * LANE + j]` for the four i32 lanes (SDOT by element).
    macro_rules! sdot_lane {
        ($acc:expr, $a:expr, $w:expr, $lane:literal) => {
            asm!(
                concat!("sdot {acc:v}.4s, {a:v}.16b, {w:v}.4b[", $lane, "]"),
                acc = inout(vreg) $acc,
                a = in(vreg) $a,
                w = in(vreg) $w,
                options(pure, nomem, nostack, preserves_flags)
            )
        };
    }

    /// 6 output channels x 16 pixels per block (24 accumulators). `sdot` multiplies signed by
    /// signed bytes, so the panel's offset bytes are flipped back to levels (`x ^ 0x80`) and the
    /// accumulators start at 128 times the channel's weight sum: the result is the same
    /// `sum (level + 128) * w` as every other kernel's, exactly.
    #[target_feature(enable = "neon,dotprod")]
    pub(crate) unsafe fn igemm_dotprod(
        w: &[i8],
        panel: &[u8],
        kp4: usize,
        mblocks: usize,
        ntp: usize,
        acc: &mut [i32],
    ) {
        const PX: usize = 16;
        assert!(ntp.is_multiple_of(PX) && panel.len() >= kp4 * ntp * 4 && w.len() >= mblocks * kp4 * MR * 4);
        assert!(acc.len() >= mblocks * MR * ntp);
        let start: Vec<i32> = (0..mblocks * MR)
            .map(|row| {
                let (mb, r) = (row / MR, row % MR);
                let wb = &w[mb * kp4 * MR * 4..(mb + 1) * kp4 * MR * 4];
                OFFSET
                    * (0..kp4)
                        .map(|k4| wb[(k4 * MR + r) * 4..][..4].iter().map(|&v| v as i32).sum::<i32>())
                        .sum::<i32>()
            })
            .collect();
        let flip = vdupq_n_u8(0x80);
        for px0 in (0..ntp).step_by(PX) {
            for mb in 0..mblocks {
                let wb = w.as_ptr().add(mb * kp4 * MR * 4);
                let mut c: [[int32x4_t; 4]; MR] = std::array::from_fn(|r| [vdupq_n_s32(start[mb * MR + r]); 4]);
                for k4 in 0..kp4 {
                    let a = panel.as_ptr().add((k4 * ntp + px0) * 4);
                    let av: [int8x16_t; 4] =
                        std::array::from_fn(|i| vreinterpretq_s8_u8(veorq_u8(vld1q_u8(a.add(16 * i)), flip)));
                    // Channels 0-3 in the first load's four lanes, 4-5 in the second's lanes 2-3
                    // (24 bytes per k4 step: the second load ends at the step's last byte).
                    let wk = wb.add(k4 * MR * 4);
                    let (w0, w1) = (vld1q_s8(wk), vld1q_s8(wk.add(8)));
                    for i in 0..4 {
                        sdot_lane!(c[0][i], av[i], w0, 0);
                        sdot_lane!(c[1][i], av[i], w0, 1);
                        sdot_lane!(c[2][i], av[i], w0, 2);
                        sdot_lane!(c[3][i], av[i], w0, 3);
                        sdot_lane!(c[4][i], av[i], w1, 2);
                        sdot_lane!(c[5][i], av[i], w1, 3);
                    }
                }
                for (r, cr) in c.iter().enumerate() {
                    let dst = acc.as_mut_ptr().add((mb * MR + r) * ntp + px0);
                    for (i, v) in cr.iter().enumerate() {
                        vst1q_s32(dst.add(4 * i), *v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::int8::quantize_i8;
    use crate::pointpillars::SplitMix64;

    fn levels(rng: &mut SplitMix64, len: usize) -> Vec<i8> {
        (0..len).map(|_| ((rng.unit() * 256.0) as i32 - 128).clamp(-128, 127) as i8).collect()
    }

    #[test]
    fn every_kernel_set_sums_exactly() {
        let mut rng = SplitMix64::new(9);
        for (kp4, mblocks) in [(1, 1), (3, 2), (37, 4)] {
            let ntp = 128;
            let w = levels(&mut rng, mblocks * kp4 * MR * 4);
            let panel: Vec<u8> = (0..kp4 * ntp * 4).map(|_| (rng.unit() * 256.0).min(255.0) as u8).collect();
            // Extremes too: the largest products must not saturate anywhere.
            let mut panel = panel;
            panel[..8].fill(255);
            let mut want = vec![0i32; mblocks * MR * ntp];
            for mb in 0..mblocks {
                for r in 0..MR {
                    for px in 0..ntp {
                        let mut s = 0i64;
                        for kk in 0..kp4 * 4 {
                            let a = panel[((kk / 4) * ntp + px) * 4 + kk % 4] as i64;
                            s += a * w[((mb * kp4 + kk / 4) * MR + r) * 4 + kk % 4] as i64;
                        }
                        want[(mb * MR + r) * ntp + px] = s as i32;
                    }
                }
            }
            for k in super::super::kernels::available() {
                let mut got = vec![i32::MIN; want.len()];
                (k.igemm)(&w, &panel, kp4, mblocks, ntp, &mut got);
                assert_eq!(got, want, "kernel set {} with kp4 {kp4}, {mblocks} blocks", k.name);
            }
        }
    }

    /// The layer against its definition: levels from `quantize_i8`, exact integer sums,
    /// `acc * (s_a * s_w[c]) + bias`, Relu, on every kernel set, with padding, stride 2 and an
    /// output channel count that is not a multiple of the block.
    #[test]
    fn conv_equals_the_integer_definition() {
        let mut rng = SplitMix64::new(4);
        let xs = [2, 5, 11, 9];
        let x: Vec<f32> = (0..xs.iter().product()).map(|_| rng.unit() * 4.0 - 2.0).collect();
        let cout = 7;
        for (kernel, strides, pads, mul) in [
            ([3, 3], [1, 1], [1, 1, 1, 1], false),
            ([3, 3], [2, 2], [0, 1, 1, 0], true),
            ([1, 1], [1, 1], [0, 0, 0, 0], false),
        ] {
            let k = 5 * kernel[0] * kernel[1];
            let q = levels(&mut rng, cout * k);
            let w_scale: Vec<f32> = (0..cout).map(|c| 0.01 + c as f32 * 0.003).collect();
            let bias: Vec<f32> = (0..cout).map(|c| c as f32 * 0.1 - 0.3).collect();
            let m: Vec<f32> = (0..5).map(|c| 0.5 + c as f32 * 0.25).collect();
            let s_a = 0.02;
            let layer =
                Int8Conv::new(&q, &[cout, 5, kernel[0], kernel[1]], &w_scale, s_a, mul.then_some(&m[..])).unwrap();
            let p = Conv2dParams { group: 1, kernel, strides, dilations: [1, 1], pads };
            let (oh, ow) = p.out_hw(11, 9).unwrap();
            let mut want = vec![0f32; 2 * cout * oh * ow];
            for b in 0..2 {
                for co in 0..cout {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut s = 0i64;
                            for ci in 0..5 {
                                for ky in 0..kernel[0] {
                                    for kx in 0..kernel[1] {
                                        let iy = (oy * strides[0] + ky) as isize - pads[0] as isize;
                                        let ix = (ox * strides[1] + kx) as isize - pads[1] as isize;
                                        if iy < 0 || ix < 0 || iy >= 11 || ix >= 9 {
                                            continue;
                                        }
                                        let v = x[((b * 5 + ci) * 11 + iy as usize) * 9 + ix as usize];
                                        let v = if mul { v * m[ci] } else { v };
                                        let wq = q[((co * 5 + ci) * kernel[0] + ky) * kernel[1] + kx];
                                        s += quantize_i8(v, s_a) as i64 * wq as i64;
                                    }
                                }
                            }
                            let y = s as f32 * (s_a * w_scale[co]) + bias[co];
                            want[((b * cout + co) * oh + oy) * ow + ox] = y.max(0.0);
                        }
                    }
                }
            }
            for kset in super::super::kernels::available() {
                let (got, shape) = conv2d_int8_with(&kset, &x, xs, &layer, Some(&bias), &p, Activation::Relu, None);
                assert_eq!(shape, [2, cout, oh, ow]);
                let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{} kernel {kernel:?} stride {strides:?}: not the integer definition's bits", kset.name);
            }
        }
    }

    #[test]
    fn offset_levels_are_quantize_i8_levels() {
        let s = 0.037f32;
        let mut vals = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1e30, -1e30];
        vals.extend((-6000..6000).map(|i| i as f32 * s / 8.0));
        vals.extend((-300..300).map(|i| (i as f32 + 0.5) * s));
        for v in vals {
            assert_eq!(offset_level(v, s) as i32 - OFFSET, quantize_i8(v, s) as i32, "{v}");
        }
        assert_eq!(word([1, 2, 3, 4]).to_ne_bytes(), [1, 2, 3, 4]);
    }

    #[test]
    fn rejects_mismatched_sizes() {
        assert!(Int8Conv::new(&[0; 8], &[1, 1, 3, 3], &[1.0], 1.0, None).is_none());
        assert!(Int8Conv::new(&[0; 9], &[1, 1, 3, 3], &[1.0, 2.0], 1.0, None).is_none());
        assert!(Int8Conv::new(&[0; 9], &[1, 1, 3, 3], &[1.0], 1.0, Some(&[1.0, 2.0])).is_none());
        assert!(Int8Conv::new(&[0; 9], &[1, 1, 3, 3], &[1.0], 1.0, None).is_some());
    }
}
