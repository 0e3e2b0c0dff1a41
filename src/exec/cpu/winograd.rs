//! Winograd convolution F(m x m, 3 x 3) for stride-1, dilation-1, ungrouped 3x3 convolutions
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): each m x m output
//! tile is computed from an (m + 2) x (m + 2) input tile as `A^T [(G g G^T) . (B^T d B)] A`, so
//! the products over input channels become (m + 2)^2 independent GEMMs of
//! `[Cout x Cin] x [Cin x tiles]` with (m + 2)^2 / (9 m^2) of im2col's multiplies (F(4x4): 1/4,
//! F(2x2): 4/9). The filter transform `G g G^T` is done once, when the executor or the plan is
//! prepared ([`WinogradFilter::new`]).
//!
//! Transforms are separable and run along whole image rows, so they vectorize: the input rows of
//! a tile row are split into their m phases (`x = u * m + p`) once, after which every tap of the
//! x-transform is a contiguous slice. Work is split into blocks of tile rows whose size depends
//! only on the layer's shape, and every block runs the same single-threaded operations, so the
//! result is bit-identical for any thread count (as for im2col + GEMM, which stays the reference
//! path and is used for every other convolution).

use rayon::prelude::*;

use super::conv::{bias_act_quant, Conv2dParams};
use super::gemm::{sgemm, MatRef, SharedMut};
use crate::graph::Activation;

/// The output tile size (F(4x4, 3x3)).
const M: usize = 4;
/// The input tile size.
const A: usize = M + 2;

/// G of F(4x4, 3x3), interpolation points 0, 1, -1, 2, -2 and infinity (Lavin & Gray); B^T and
/// A^T are written out, factored, in `bt_1d` and `at_1d`.
#[rustfmt::skip]
const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// A 3x3 convolution's weights in the Winograd domain: `U[xi][co][ci] = (G g G^T)[i][k]` with
/// `xi = i * 6 + k`.
#[derive(Debug, Clone)]
pub struct WinogradFilter {
    pub cout: usize,
    pub cin: usize,
    u: Vec<f32>,
}

impl WinogradFilter {
    /// Transforms `w[Cout, Cin, 3, 3]` (in f64, rounded once to f32); `None` for a weight of
    /// another size.
    pub fn new(w: &[f32], cout: usize, cin: usize) -> Option<WinogradFilter> {
        if w.len() != cout.checked_mul(cin)?.checked_mul(9)? {
            return None;
        }
        let mut u = vec![0f32; A * A * cout * cin];
        for co in 0..cout {
            for ci in 0..cin {
                let g = &w[(co * cin + ci) * 9..][..9];
                // tmp = G g (6 x 3), then U = tmp G^T (6 x 6).
                let tmp: [[f64; 3]; 6] = std::array::from_fn(|i| {
                    std::array::from_fn(|c| (0..3).map(|j| G[i][j] * g[j * 3 + c] as f64).sum())
                });
                for i in 0..A {
                    for k in 0..A {
                        let v: f64 = (0..3).map(|c| tmp[i][c] * G[k][c]).sum();
                        u[((i * A + k) * cout + co) * cin + ci] = v as f32;
                    }
                }
            }
        }
        Some(WinogradFilter { cout, cin, u })
    }
}

/// Whether a convolution of these parameters runs by Winograd: 3x3, stride 1, dilation 1,
/// ungrouped, at least 32 input and output channels. The rule is measured (docs/benchmarks.md,
/// `cargo bench --bench conv`): F(4x4) beat im2col + GEMM on every such layer of the bundled
/// models (32 to 256 channels: 1.4-2.1x); no narrower layer was measured, so those keep im2col.
/// `PILLARQ_WINOGRAD=0` turns it off (im2col + GEMM everywhere), for comparisons.
pub fn applies(p: &Conv2dParams, cin: usize, cout: usize) -> bool {
    let shape = p.kernel == [3, 3] && p.strides == [1, 1] && p.dilations == [1, 1] && p.group == 1;
    shape && enabled() && cin.min(cout) >= MIN_CHANNELS
}

/// Fewer channels than this: im2col + GEMM (see `applies`).
const MIN_CHANNELS: usize = 32;

fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("PILLARQ_WINOGRAD").map_or(true, |v| v != "0"))
}

/// Tiles per block (a whole number of tile rows, at least one): the GEMMs' column count. Depends
/// only on the layer's shape, never on the thread count.
const BLOCK_TILES: usize = 64;

/// The fewest blocks a layer is split into when it has that many tile rows.
const MIN_BLOCKS: usize = 4;

/// One tile row of the input transform: `V[xi][ci][t0..t0 + tiles_x]` from the phase rows.
/// B^T d for one column of taps, with the common subexpressions of F(4x4)'s B^T factored out:
/// `dst[d[i] + x] = sum_j B^T[i][j] src[so[j] + x]` for `x < len`.
#[inline(always)]
fn bt_1d(src: &[f32], so: [usize; 6], dst: &mut [f32], d: [usize; 6], len: usize) {
    let [s0, s1, s2, s3, s4, s5] = so.map(|o| &src[o..o + len]);
    let [r0, r1, r2, r3, r4, r5] = dst.get_disjoint_mut(d.map(|o| o..o + len)).expect("disjoint rows");
    let (r0, r1, r2, r3, r4, r5) =
        (&mut r0[..len], &mut r1[..len], &mut r2[..len], &mut r3[..len], &mut r4[..len], &mut r5[..len]);
    for x in 0..len {
        let (d0, d1, d2, d3, d4, d5) = (s0[x], s1[x], s2[x], s3[x], s4[x], s5[x]);
        let a = d4 - 4.0 * d2;
        let b = d3 - 4.0 * d1;
        let c = d4 - d2;
        let e = 2.0 * (d3 - d1);
        r0[x] = 4.0 * d0 - 5.0 * d2 + d4;
        r1[x] = a + b;
        r2[x] = a - b;
        r3[x] = c + e;
        r4[x] = c - e;
        r5[x] = 4.0 * d1 - 5.0 * d3 + d5;
    }
}

/// A^T m for one column of six values, factored: `dst[d[q] + x] = sum_k A^T[q][k] src[so[k] + x]`.
#[inline(always)]
fn at_1d(src: &[f32], so: [usize; 6], dst: &mut [f32], d: [usize; 4], len: usize) {
    let [s0, s1, s2, s3, s4, s5] = so.map(|o| &src[o..o + len]);
    let [o0, o1, o2, o3] = dst.get_disjoint_mut(d.map(|o| o..o + len)).expect("disjoint rows");
    let (o0, o1, o2, o3) = (&mut o0[..len], &mut o1[..len], &mut o2[..len], &mut o3[..len]);
    for x in 0..len {
        let (m0, m1, m2, m3, m4, m5) = (s0[x], s1[x], s2[x], s3[x], s4[x], s5[x]);
        let (s12, d12, s34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        o0[x] = m0 + s12 + s34;
        o1[x] = d12 + 2.0 * d34;
        o2[x] = s12 + 4.0 * s34;
        o3[x] = d12 + 8.0 * d34 + m5;
    }
}

/// Per-thread buffers of one block.
#[derive(Default)]
pub struct Scratch {
    /// The input rows of a tile row, zero-padded (`pw` values each).
    padded: Vec<f32>,
    /// Those rows split into phases: 6 rows of M phases x `span` values.
    rows: Vec<f32>,
    /// After the y-transform: 6 rows, same layout.
    ty: Vec<f32>,
    /// V[xi][ci][t].
    v: Vec<f32>,
    /// M[xi][co][t].
    mo: Vec<f32>,
    /// Output transform: 6 x 4 rows of tiles_x, then 4 x 4.
    ox: Vec<f32>,
    oy: Vec<f32>,
}

thread_local! {
    /// Each worker thread's buffers, kept between calls: a block's buffers are megabytes, and
    /// fresh pages for them on every call cost more than the transforms.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// One job: tile rows `[ty0, ty1)` of batch element `b`.
pub struct Block<'a> {
    x: &'a [f32],
    xs: [usize; 4],
    f: &'a WinogradFilter,
    bias: Option<&'a [f32]>,
    pads: [usize; 4],
    act: Activation,
    quant: Option<f32>,
    out: SharedMut,
    oh: usize,
    ow: usize,
    tiles_x: usize,
    b: usize,
    ty0: usize,
    ty1: usize,
}

/// Runs one block: input transform, the 36 GEMMs, output transform and epilogue. Generic code,
/// compiled once per instruction set (`kernels::Kernels::winograd`); elementwise adds and
/// multiplies in a fixed order, so every set computes the same bits.
#[inline(always)]
pub(crate) fn run_block(bl: &Block, s: &mut Scratch) {
    let [_, cin, h, w] = bl.xs;
    let (f, cout, tiles_x) = (bl.f, bl.f.cout, bl.tiles_x);
    let (ty0, ty1) = (bl.ty0, bl.ty1);
    // The block's tiles in one run: tile (row r, column tx) at t = r * span + tx, with one
    // unused tile at the end of each row (tx = tiles_x) so that every transform is one long
    // vector loop over the whole block. The GEMMs compute the unused tiles too (1 / span extra).
    let span = tiles_x + 1;
    let rows = ty1 - ty0;
    let nt = rows * span;
    // One phase run: the block's `nt` columns and one more for the taps at u + 1.
    let run = nt + 1;
    let row_len = M * run;
    let pw = M * span;
    s.padded.resize(pw, 0.0);
    s.rows.resize(A * row_len, 0.0);
    s.ty.resize(A * row_len, 0.0);
    s.v.resize(A * A * cin * nt, 0.0);
    s.mo.resize(A * A * cout * nt, 0.0);
    s.ox.resize(A * M * nt, 0.0);
    s.oy.resize(M * M * nt, 0.0);
    let xb = &bl.x[bl.b * cin * h * w..(bl.b + 1) * cin * h * w];
    let (pt, pl) = (bl.pads[0] as isize, bl.pads[1].min(pw));
    // Input columns [0, w) land at padded columns [pl, pl + w), clipped to the row.
    let copy = w.min(pw - pl);
    for ci in 0..cin {
        let plane = &xb[ci * h * w..(ci + 1) * h * w];
        for j in 0..A {
            let dst = &mut s.rows[j * row_len..(j + 1) * row_len];
            let [p0, p1, p2, p3] =
                dst.get_disjoint_mut([0, run, 2 * run, 3 * run].map(|o| o..o + run)).expect("phases");
            for r in 0..rows {
                let iy = ((ty0 + r) * M + j) as isize - pt;
                let at = r * span;
                if iy < 0 || iy >= h as isize {
                    for p in [&mut *p0, &mut *p1, &mut *p2, &mut *p3] {
                        p[at..at + span].fill(0.0);
                    }
                    continue;
                }
                let padded = &mut s.padded[..pw];
                padded[..pl].fill(0.0);
                padded[pl..pl + copy].copy_from_slice(&plane[iy as usize * w..][..copy]);
                padded[pl + copy..].fill(0.0);
                // Split into phases: padded column u * M + p goes to phase p at u.
                let (q0, q1, q2, q3) =
                    (&mut p0[at..at + span], &mut p1[at..at + span], &mut p2[at..at + span], &mut p3[at..at + span]);
                for (u, c) in padded.chunks_exact(M).enumerate() {
                    q0[u] = c[0];
                    q1[u] = c[1];
                    q2[u] = c[2];
                    q3[u] = c[3];
                }
            }
            for p in [p0, p1, p2, p3] {
                p[nt] = 0.0;
            }
        }
        // y-transform along whole rows (all phases at once).
        bt_1d(&s.rows, std::array::from_fn(|j| j * row_len), &mut s.ty, std::array::from_fn(|i| i * row_len), row_len);
        // x-transform: tap j of tile t is phase j % M at t + j / M.
        for i in 0..A {
            let so = std::array::from_fn(|j| i * row_len + (j % M) * run + j / M);
            let d = std::array::from_fn(|k| ((i * A + k) * cin + ci) * nt);
            bt_1d(&s.ty, so, &mut s.v, d, nt);
        }
    }
    // 36 GEMMs: M[xi] = U[xi] (Cout x Cin) * V[xi] (Cin x tiles).
    for xi in 0..A * A {
        let u = &f.u[xi * cout * cin..(xi + 1) * cout * cin];
        let v = &s.v[xi * cin * nt..(xi + 1) * cin * nt];
        let mo = &mut s.mo[xi * cout * nt..(xi + 1) * cout * nt];
        sgemm(cout, nt, cin, MatRef::rows(u, cin), MatRef::rows(v, nt), mo, nt, false);
    }
    let (oh, ow) = (bl.oh, bl.ow);
    let hw = oh * ow;
    // SAFETY: this block writes only output rows [ty0 * M, ty1 * M) of batch b.
    let yall = unsafe { bl.out.slice() };
    let yb = &mut yall[bl.b * cout * hw..(bl.b + 1) * cout * hw];
    let full = ow / M;
    for co in 0..cout {
        let bv = bl.bias.map_or(0.0, |bb| bb[co]);
        let plane = &mut yb[co * hw..(co + 1) * hw];
        // x-transform: ox[i][q][t] = sum_k A^T[q][k] M[i * 6 + k][co][t].
        for i in 0..A {
            let so = std::array::from_fn(|k| ((i * A + k) * cout + co) * nt);
            at_1d(&s.mo, so, &mut s.ox, std::array::from_fn(|q| (i * M + q) * nt), nt);
        }
        // y-transform: oy[r][q][t] = sum_i A^T[r][i] ox[i][q][t].
        for q in 0..M {
            let so = std::array::from_fn(|i| (i * M + q) * nt);
            at_1d(&s.ox, so, &mut s.oy, std::array::from_fn(|r| (r * M + q) * nt), nt);
        }
        for rb in 0..rows {
            for r in 0..M {
                let oyy = (ty0 + rb) * M + r;
                if oyy >= oh {
                    break;
                }
                let orow = &mut plane[oyy * ow..(oyy + 1) * ow];
                let o = |q: usize| &s.oy[(r * M + q) * nt + rb * span..][..tiles_x];
                let (q0, q1, q2, q3) = (o(0), o(1), o(2), o(3));
                for (tx, c) in orow[..full * M].chunks_exact_mut(M).enumerate() {
                    c[0] = q0[tx];
                    c[1] = q1[tx];
                    c[2] = q2[tx];
                    c[3] = q3[tx];
                }
                for (q, v) in orow[full * M..].iter_mut().enumerate() {
                    *v = o(q)[full];
                }
                bias_act_quant(orow, bv, bl.act, bl.quant);
            }
        }
    }
}

/// `y = conv(x, w) + bias`, `act`, then (with `quant`) fake quantization: a 3x3, stride-1,
/// dilation-1, ungrouped convolution with pads `[top, left, bottom, right]`, by Winograd with the
/// prepared filter `f`, on this CPU's kernel set.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_winograd(
    x: &[f32],
    xs: [usize; 4],
    f: &WinogradFilter,
    bias: Option<&[f32]>,
    pads: [usize; 4],
    act: Activation,
    quant: Option<f32>,
) -> (Vec<f32>, [usize; 4]) {
    conv2d_winograd_with(super::kernels::best(), x, xs, f, bias, pads, act, quant)
}

/// `conv2d_winograd` on a given kernel set (the tests run every set this CPU has).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_winograd_with(
    k: &super::kernels::Kernels,
    x: &[f32],
    xs: [usize; 4],
    f: &WinogradFilter,
    bias: Option<&[f32]>,
    pads: [usize; 4],
    act: Activation,
    quant: Option<f32>,
) -> (Vec<f32>, [usize; 4]) {
    let [n, cin, h, w] = xs;
    assert!(cin == f.cin, "the filter was prepared for another layer");
    assert!(h + pads[0] + pads[2] >= 3 && w + pads[1] + pads[3] >= 3, "the caller checks the geometry");
    let cout = f.cout;
    let (oh, ow) = (h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2);
    let (tiles_y, tiles_x) = (oh.div_ceil(M), ow.div_ceil(M));
    // About BLOCK_TILES tiles per block, but at least MIN_BLOCKS blocks where the image has the
    // tile rows, so that small layers still spread over the threads.
    let rows_per_block = BLOCK_TILES.div_ceil(tiles_x.max(1)).min(tiles_y / MIN_BLOCKS).max(1);
    let blocks = tiles_y.div_ceil(rows_per_block);
    let mut y = vec![0f32; n * cout * oh * ow];
    if oh * ow == 0 || cout == 0 {
        return (y, [n, cout, oh, ow]);
    }
    let out = SharedMut::new(&mut y);
    (0..n * blocks).into_par_iter().for_each(|job| {
        let (b, blk) = (job / blocks, job % blocks);
        let ty0 = blk * rows_per_block;
        let bl = Block {
            x,
            xs,
            f,
            bias,
            pads,
            act,
            quant,
            out,
            oh,
            ow,
            tiles_x,
            b,
            ty0,
            ty1: (ty0 + rows_per_block).min(tiles_y),
        };
        SCRATCH.with_borrow_mut(|s| (k.winograd)(&bl, s));
    });
    (y, [n, cout, oh, ow])
}

#[cfg(test)]
mod tests {
    use super::super::conv::conv2d;
    use super::*;
    use crate::pointpillars::SplitMix64;

    fn rand(rng: &mut SplitMix64, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.unit() * 2.0 - 1.0).collect()
    }

    /// Winograd against im2col + GEMM (the reference path) on odd sizes, with and without
    /// padding, bias and Relu; every kernel set computes the same bits.
    #[test]
    fn matches_im2col_within_the_parity_bound() {
        let mut rng = SplitMix64::new(11);
        for (xs, cout, pads) in [
            ([1, 3, 9, 11], 5, [1, 1, 1, 1]),
            ([2, 16, 13, 7], 24, [1, 1, 1, 1]),
            ([1, 8, 10, 10], 4, [0, 0, 0, 0]),
            ([1, 4, 6, 15], 3, [2, 0, 1, 1]),
            ([1, 32, 40, 37], 16, [1, 1, 1, 1]),
        ] {
            let cin = xs[1];
            let x = rand(&mut rng, xs.iter().product());
            let w = rand(&mut rng, cout * cin * 9);
            let bias = rand(&mut rng, cout);
            let p = Conv2dParams { group: 1, kernel: [3, 3], strides: [1, 1], dilations: [1, 1], pads };
            for act in [Activation::None, Activation::Relu] {
                let (want, ws) = conv2d(&x, xs, &w, cout, Some(&bias), &p, act, None);
                let f = WinogradFilter::new(&w, cout, cin).unwrap();
                let (got, gs) = conv2d_winograd(&x, xs, &f, Some(&bias), pads, act, None);
                assert_eq!(gs, ws);
                let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
                let err = got.iter().zip(&want).fold(0f32, |a, (g, r)| a.max((g - r).abs()));
                assert!(err <= 1e-5 * scale.max(1.0), "{xs:?} pads {pads:?}: error {err} of {scale}");
                for k in super::super::kernels::available() {
                    let (other, _) = conv2d_winograd_with(&k, &x, xs, &f, Some(&bias), pads, act, None);
                    let same = other.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "kernel set {} differs from the best set", k.name);
                }
            }
        }
    }

    #[test]
    fn output_quantization_is_applied_after_bias_and_relu() {
        let mut rng = SplitMix64::new(3);
        let xs = [1, 8, 12, 12];
        let (x, w) = (rand(&mut rng, 8 * 144), rand(&mut rng, 8 * 8 * 9));
        let f = WinogradFilter::new(&w, 8, 8).unwrap();
        let (plain, _) = conv2d_winograd(&x, xs, &f, None, [1; 4], Activation::Relu, None);
        let (q, _) = conv2d_winograd(&x, xs, &f, None, [1; 4], Activation::Relu, Some(0.05));
        for (a, b) in plain.iter().zip(&q) {
            assert_eq!(crate::numerics::int8::fake_quant(*a, 0.05).to_bits(), b.to_bits());
        }
    }

    #[test]
    fn is_bit_identical_for_any_thread_count() {
        let mut rng = SplitMix64::new(7);
        let xs = [2, 16, 45, 31];
        let (x, w) = (rand(&mut rng, xs.iter().product()), rand(&mut rng, 16 * 16 * 9));
        let f = WinogradFilter::new(&w, 16, 16).unwrap();
        let run = |threads| {
            crate::exec::thread_pool(threads)
                .unwrap()
                .install(|| conv2d_winograd(&x, xs, &f, None, [1; 4], Activation::None, None).0)
        };
        let one = run(1);
        for t in [2, 3] {
            assert!(run(t).iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits()), "{t} threads");
        }
    }

    #[test]
    fn rejects_weights_of_another_size() {
        assert!(WinogradFilter::new(&[0.0; 8], 1, 1).is_none());
        assert!(WinogradFilter::new(&[0.0; 18], 1, 1).is_none());
    }
}
