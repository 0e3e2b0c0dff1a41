//! 2-D convolution (im2col on fixed-size output tiles + GEMM) and transposed convolution
//! (GEMM + col2im). NCHW, f32, groups, strides, dilations, asymmetric pads, fused bias + Relu.

use rayon::prelude::*;

use super::gemm::{sgemm, MatRef, SharedMut};
use super::int8conv::{conv2d_int8, Int8Conv};
use super::winograd::WinogradFilter;
use crate::graph::Activation;

/// What a Conv step prepares once from its constant weight (when the executor is built, or when
/// a plan is compiled for the layers it changes), chosen by the layer's shape.
#[derive(Debug)]
pub enum ConvPrep {
    /// A 3x3 stride-1 convolution run by Winograd with this transformed filter.
    Winograd(WinogradFilter),
    /// An INT8 layer of a plan, run in integers.
    Int8(Int8Conv),
}
use crate::numerics::int8::fake_quant_slice;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    pub group: usize,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// top, left, bottom, right
    pub pads: [usize; 4],
}

impl Conv2dParams {
    /// The output size, or `None` when the kernel does not fit or the geometry (from the
    /// model's attributes) overflows.
    pub fn out_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let f = |i: usize, d: usize| {
            let eff = self.dilations[i].checked_mul(self.kernel[i].checked_sub(1)?)?.checked_add(1)?;
            let padded = d.checked_add(self.pads[i])?.checked_add(self.pads[i + 2])?;
            Some(padded.checked_sub(eff)? / self.strides[i].max(1) + 1)
        };
        Some((f(0, h)?, f(1, w)?))
    }
    pub(crate) fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.strides == [1, 1] && self.pads == [0; 4]
    }
}

/// Applies bias and activation to rows `[c0, c0 + rows)` x columns `[p0, p1)` of a `[C, hw]` plane.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn epilogue(
    out: &mut [f32],
    hw: usize,
    c0: usize,
    rows: usize,
    p0: usize,
    p1: usize,
    bias: Option<&[f32]>,
    act: Activation,
    quant: Option<f32>,
) {
    for r in 0..rows {
        let b = bias.map_or(0.0, |b| b[c0 + r]);
        bias_act_quant(&mut out[r * hw + p0..r * hw + p1], b, act, quant);
    }
}

/// Bias, activation and (with `quant`) the INT8 reader's input quantization of one run of
/// output values of a channel, while they are still in cache (the same values as a separate
/// pass over the output: the operations are elementwise).
#[inline(always)]
pub(super) fn bias_act_quant(row: &mut [f32], b: f32, act: Activation, quant: Option<f32>) {
    match act {
        Activation::Relu => row.iter_mut().for_each(|v| *v = (*v + b).max(0.0)),
        Activation::None if b != 0.0 => row.iter_mut().for_each(|v| *v += b),
        Activation::None => {}
    }
    if let Some(scale) = quant {
        fake_quant_slice(row, scale);
    }
}

/// Output pixels per tile: keeps the im2col block near 256 KiB. Depends only on the layer's
/// shape, never on the thread count, so results are bit-identical for any `--threads`.
fn tile_pixels(k: usize) -> usize {
    ((64 * 1024) / k.max(1)).clamp(64, 4096) / 16 * 16
}

/// The pixel tiles of an im2col convolution: `(tiles, bounds)`. Runs of about 2 MiB of columns
/// spread the GEMM's packing of the weights over more pixels (KITTI-size blocks.0.1, 64 -> 64
/// 3x3 stride 2: 33.9 -> 26.1 ms at 1 thread, `cargo bench --bench conv -- "kitti blocks.0.1"`).
/// They are whole multiples of `tile_pixels(k)`, with the rest after the last multiple as its
/// own tile, as it was with tiles of `tile_pixels(k)`: the GEMM picks its k-blocking by the
/// product's size, so that small last tile keeps its own, and every output keeps its bits.
fn im2col_tiles(hw: usize, k: usize) -> (usize, impl Fn(usize) -> (usize, usize)) {
    let unit = tile_pixels(k);
    let big = unit * ((512 * 1024) / (k.max(1) * unit)).max(1);
    let full = hw / unit * unit;
    let runs = full.div_ceil(big);
    let tiles = runs + usize::from(hw > full);
    (tiles, move |t: usize| if t < runs { (t * big, ((t + 1) * big).min(full)) } else { (full, hw) })
}

/// Fills `col[K x (p1 - p0)]` with the receptive fields of output pixels `[p0, p1)`; `zero` is
/// the padding value (0.0, or the INT8 kernels' offset level 0 + 128).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn im2col<T: Copy>(
    x: &[T],
    cin: usize,
    h: usize,
    w: usize,
    ow: usize,
    p: &Conv2dParams,
    p0: usize,
    p1: usize,
    col: &mut [T],
    zero: T,
) {
    let n = p1 - p0;
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.strides;
    let [dh, dw] = p.dilations;
    let (pt, pl) = (p.pads[0] as isize, p.pads[1] as isize);
    for ci in 0..cin {
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut col[((ci * kh + ky) * kw + kx) * n..][..n];
                let mut oy = p0 / ow;
                let mut ox = p0 % ow;
                let mut i = 0;
                while i < n {
                    // One output row segment at a time.
                    let seg = (ow - ox).min(n - i);
                    let iy = (oy * sh) as isize - pt + (ky * dh) as isize;
                    let dst = &mut row[i..i + seg];
                    if iy < 0 || iy >= h as isize {
                        dst.fill(zero);
                    } else {
                        let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                        let ix0 = (ox * sw) as isize - pl + (kx * dw) as isize;
                        // Columns j with 0 <= ix0 + j * sw < w read the row; the rest are padding.
                        let swi = sw as isize;
                        let j_lo = if ix0 >= 0 { 0 } else { ((-ix0 + swi - 1) / swi) as usize }.min(seg);
                        let j_hi = if ix0 >= w as isize { 0 } else { ((w as isize - ix0 + swi - 1) / swi) as usize }
                            .clamp(j_lo, seg);
                        dst[..j_lo].fill(zero);
                        dst[j_hi..].fill(zero);
                        if j_hi > j_lo {
                            let first = (ix0 + (j_lo * sw) as isize) as usize;
                            let body = &mut dst[j_lo..j_hi];
                            if sw == 1 {
                                body.copy_from_slice(&src[first..first + body.len()]);
                            } else if sw == 2 && src.len() >= first + 2 * body.len() {
                                // Every other value: a deinterleave the compiler vectorizes.
                                let pairs = src[first..first + 2 * body.len()].chunks_exact(2);
                                body.iter_mut().zip(pairs).for_each(|(d, pr)| *d = pr[0]);
                            } else {
                                let strided = src[first..].iter().step_by(sw);
                                body.iter_mut().zip(strided).for_each(|(d, &v)| *d = v);
                            }
                        }
                    }
                    i += seg;
                    ox = 0;
                    oy += 1;
                }
            }
        }
    }
}

/// `y[N, Cout, OH, OW] = conv(x[N, Cin, H, W], w[Cout, Cin/group, kh, kw]) + bias`, then `act`,
/// then, with `quant`, fake quantization at that scale (the next INT8 layer's input).
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f32],
    xs: [usize; 4],
    w: &[f32],
    cout: usize,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    act: Activation,
    quant: Option<f32>,
) -> (Vec<f32>, [usize; 4]) {
    conv2d_with(super::kernels::best().conv_tile, x, xs, w, cout, bias, p, act, quant)
}

/// `conv2d` through the given tile kernel (a kernel set's `conv_tile`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_with(
    kernel: super::kernels::ConvTileFn,
    x: &[f32],
    xs: [usize; 4],
    w: &[f32],
    cout: usize,
    bias: Option<&[f32]>,
    p: &Conv2dParams,
    act: Activation,
    quant: Option<f32>,
) -> (Vec<f32>, [usize; 4]) {
    let [n, cin, h, wd] = xs;
    let (oh, ow) = p.out_hw(h, wd).expect("shape checked by the caller");
    let hw = oh * ow;
    let g = p.group;
    let k = cin / g * p.kernel[0] * p.kernel[1];
    let mut y = vec![0f32; n * cout * hw];
    let out = SharedMut::new(&mut y);
    let run = |tiles: usize, bounds: &(dyn Fn(usize) -> (usize, usize) + Sync)| {
        let job = ConvJob { x, xs, w, cout, bias, p: *p, act, quant, oh, ow, tiles, bounds, out };
        (0..n * g * tiles).into_par_iter().for_each_init(Vec::new, |col, t| kernel(&job, t, col));
    };
    if p.is_pointwise() {
        let tile = tile_pixels(k);
        run(hw.div_ceil(tile), &|t| (t * tile, ((t + 1) * tile).min(hw)));
    } else {
        let (tiles, bounds) = im2col_tiles(hw, k);
        run(tiles, &bounds);
    }
    (y, [n, cout, oh, ow])
}

/// One `conv2d` call, split into tiles of output pixels per (batch, group).
pub struct ConvJob<'a> {
    x: &'a [f32],
    xs: [usize; 4],
    w: &'a [f32],
    cout: usize,
    bias: Option<&'a [f32]>,
    p: Conv2dParams,
    act: Activation,
    quant: Option<f32>,
    oh: usize,
    ow: usize,
    /// Tiles per (batch, group), and each one's pixel range.
    tiles: usize,
    bounds: &'a (dyn Fn(usize) -> (usize, usize) + Sync),
    out: SharedMut,
}

/// Tile `job` of a `conv2d`: im2col, GEMM, epilogue. Generic code compiled once per instruction
/// set (`kernels::Kernels::conv_tile`); the GEMM is the same call in every set and the rest
/// moves values or works elementwise, so every set computes the same bits.
#[inline(always)]
pub(crate) fn run_conv_tile(j: &ConvJob, job: usize, col: &mut Vec<f32>) {
    let [_, cin, h, wd] = j.xs;
    let (g, cout, tiles) = (j.p.group, j.cout, j.tiles);
    let hw = j.oh * j.ow;
    let (cin_g, cout_g) = (cin / g, cout / g);
    let k = cin_g * j.p.kernel[0] * j.p.kernel[1];
    let (b, rest) = (job / (g * tiles), job % (g * tiles));
    let (gi, t) = (rest / tiles, rest % tiles);
    let (p0, p1) = (j.bounds)(t);
    let xg = &j.x[(b * cin + gi * cin_g) * h * wd..(b * cin + (gi + 1) * cin_g) * h * wd];
    let wg = &j.w[gi * cout_g * k..(gi + 1) * cout_g * k];
    // SAFETY: this job writes only columns [p0, p1) of its own (batch, group) rows.
    let yall = unsafe { j.out.slice() };
    let yg = &mut yall[(b * cout + gi * cout_g) * hw..(b * cout + (gi + 1) * cout_g) * hw];
    let dst = &mut yg[p0..];
    if j.p.is_pointwise() {
        sgemm(cout_g, p1 - p0, k, MatRef::rows(wg, k), MatRef::rows(&xg[p0..], hw), dst, hw, false);
    } else {
        col.resize(k * (p1 - p0), 0.0);
        im2col(xg, cin_g, h, wd, j.ow, &j.p, p0, p1, col, 0.0);
        sgemm(cout_g, p1 - p0, k, MatRef::rows(wg, k), MatRef::rows(col, p1 - p0), dst, hw, false);
    }
    epilogue(yg, hw, gi * cout_g, cout_g, p0, p1, j.bias, j.act, j.quant);
}

/// One of several pointwise convolutions of one input (`conv2d_pointwise_group`).
pub struct PointwiseMember<'a> {
    /// `[cout, cin]` (the 1x1 weight).
    pub w: &'a [f32],
    pub cout: usize,
    pub bias: Option<&'a [f32]>,
    pub act: Activation,
}

/// Several 1x1 stride-1 ungrouped convolutions of one input `x[N, Cin, H, W]`, tile by tile: each
/// pixel tile is read from memory once for all of them (a detection head's class, box and
/// direction convolutions read one wide map three times otherwise). Each output has the bits
/// `conv2d` gives it alone: the same tiles, GEMM calls and epilogue, without output quantization.
pub fn conv2d_pointwise_group(x: &[f32], xs: [usize; 4], members: &[PointwiseMember]) -> Vec<Vec<f32>> {
    let [n, cin, h, wd] = xs;
    let hw = h * wd;
    let tile = tile_pixels(cin);
    let tiles = hw.div_ceil(tile);
    let mut ys: Vec<Vec<f32>> = members.iter().map(|m| vec![0f32; n * m.cout * hw]).collect();
    let outs: Vec<SharedMut> = ys.iter_mut().map(|y| SharedMut::new(y)).collect();
    (0..n * tiles).into_par_iter().for_each(|job| {
        let (b, t) = (job / tiles, job % tiles);
        let (p0, p1) = (t * tile, ((t + 1) * tile).min(hw));
        let xb = &x[b * cin * hw..(b + 1) * cin * hw];
        for (m, out) in members.iter().zip(&outs) {
            // SAFETY: this job writes only columns [p0, p1) of batch b's rows of each output.
            let yall = unsafe { out.slice() };
            let yb = &mut yall[b * m.cout * hw..(b + 1) * m.cout * hw];
            sgemm(m.cout, p1 - p0, cin, MatRef::rows(m.w, cin), MatRef::rows(&xb[p0..], hw), &mut yb[p0..], hw, false);
            epilogue(yb, hw, 0, m.cout, p0, p1, m.bias, m.act, None);
        }
    });
    ys
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTranspose2dParams {
    pub group: usize,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// top, left, bottom, right
    pub pads: [usize; 4],
    pub output_padding: [usize; 2],
}

impl ConvTranspose2dParams {
    pub fn out_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let f = |i: usize, d: usize| {
            let span = self.dilations[i].checked_mul(self.kernel[i].checked_sub(1)?)?;
            self.strides[i]
                .checked_mul(d.checked_sub(1)?)?
                .checked_add(self.output_padding[i])?
                .checked_add(span)?
                .checked_add(1)?
                .checked_sub(self.pads[i].checked_add(self.pads[i + 2])?)
        };
        Some((f(0, h)?, f(1, w)?))
    }
}

/// `y = conv_transpose(x[N, Cin, H, W], w[Cin, Cout/group, kh, kw]) + bias`, then `act`, then
/// (with `quant`) fake quantization at that scale, plane by plane while it is in cache.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d(
    x: &[f32],
    xs: [usize; 4],
    w: &[f32],
    cout: usize,
    bias: Option<&[f32]>,
    p: &ConvTranspose2dParams,
    act: Activation,
    quant: Option<f32>,
) -> (Vec<f32>, [usize; 4]) {
    conv_transpose2d_from(x, xs, DeconvWeights::Float(w), cout, bias, p, act, quant)
}

/// How a transposed convolution computes its columns `[Cout/group * kh * kw, H * W]`.
#[derive(Clone, Copy)]
pub enum DeconvWeights<'a> {
    /// `w[Cin, Cout/group, kh, kw]` in f32: a GEMM per group.
    Float(&'a [f32]),
    /// An INT8 layer (ungrouped): its columns are a 1x1 convolution to `Cout * kh * kw` channels
    /// computed in integers (`int8conv`), dequantized per output channel.
    Int8(&'a Int8Conv),
}

/// `conv_transpose2d` with the columns from `w` (float GEMM or integer kernel); the col2im
/// placement, bias, activation and output quantization are the same for both.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d_from(
    x: &[f32],
    xs: [usize; 4],
    w: DeconvWeights,
    cout: usize,
    bias: Option<&[f32]>,
    p: &ConvTranspose2dParams,
    act: Activation,
    quant: Option<f32>,
) -> (Vec<f32>, [usize; 4]) {
    let (oh, ow) = p.out_hw(xs[2], xs[3]).expect("shape checked by the caller");
    let mut y = vec![0f32; xs[0] * cout * oh * ow];
    conv_transpose2d_into(x, xs, w, cout, bias, p, act, quant, &mut y);
    (y, [xs[0], cout, oh, ow])
}

/// `conv_transpose2d_from` writing its `[N, Cout, OH, OW]` output into `y` (any contents: every
/// element is written), e.g. a channel range of the Concat that reads it.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d_into(
    x: &[f32],
    xs: [usize; 4],
    w: DeconvWeights,
    cout: usize,
    bias: Option<&[f32]>,
    p: &ConvTranspose2dParams,
    act: Activation,
    quant: Option<f32>,
    y: &mut [f32],
) {
    let [n, cin, h, wd] = xs;
    let (oh, ow) = p.out_hw(h, wd).expect("shape checked by the caller");
    assert_eq!(y.len(), n * cout * oh * ow, "output buffer of another shape");
    let g = p.group;
    let (cin_g, cout_g) = (cin / g, cout / g);
    let [kh, kw] = p.kernel;
    let rows = cout_g * kh * kw;
    let hw_in = h * wd;
    // Kernel = stride (the PointPillars neck): windows do not overlap, col2im is a placement and
    // every output element is written exactly once.
    let placement = p.kernel == p.strides
        && p.dilations == [1, 1]
        && p.pads == [0; 4]
        && (oh, ow) == (h * kh, wd * kw)
        && kh * kw > 0;
    let geo = Placement { h, wd, kh, kw, hw_out: oh * ow };
    if let (true, DeconvWeights::Float(w)) = (placement, w) {
        // Columns for a chunk of output channels and a tile of input pixels at a time, placed
        // while they are in cache. Each column is the same GEMM dot product as in one large
        // GEMM (K = Cin / group fits one k-block), so the bits do not depend on the tiling.
        let chunk = (PLACE_ROWS / (kh * kw)).clamp(1, cout_g);
        // Columns of about 128 KiB per GEMM.
        let tile = tile_pixels(cin_g).min(PLACE_ROWS * 64 / (chunk * kh * kw) / 16 * 16).max(16);
        let tiles = hw_in.div_ceil(tile);
        let out = SharedMut::new(y);
        (0..n * g * tiles).into_par_iter().for_each_init(Vec::new, |col, job| {
            let (b, rest) = (job / (g * tiles), job % (g * tiles));
            let (gi, t) = (rest / tiles, rest % tiles);
            let (p0, p1) = (t * tile, ((t + 1) * tile).min(hw_in));
            let xg = &x[(b * cin + gi * cin_g) * hw_in..(b * cin + (gi + 1) * cin_g) * hw_in];
            // w for this group: [cin_g, rows] row-major; we need its transpose [rows, cin_g].
            let wg = &w[gi * cin_g * rows..(gi + 1) * cin_g * rows];
            // SAFETY: this job writes only the outputs of input pixels [p0, p1) of its own
            // (batch, group) planes.
            let yall = unsafe { out.slice() };
            let yg = &mut yall[(b * cout + gi * cout_g) * oh * ow..(b * cout + (gi + 1) * cout_g) * oh * ow];
            let bias = bias.map(|bb| &bb[gi * cout_g..]);
            for c0 in (0..cout_g).step_by(chunk) {
                let c1 = (c0 + chunk).min(cout_g);
                let r = (c1 - c0) * kh * kw;
                col.resize(r * (p1 - p0), 0.0);
                let wc = &wg[c0 * kh * kw..];
                sgemm(
                    r,
                    p1 - p0,
                    cin_g,
                    MatRef::transposed(wc, rows),
                    MatRef::rows(&xg[p0..], hw_in),
                    col,
                    p1 - p0,
                    false,
                );
                geo.place(col, p1 - p0, p0, c0..c1, p0..p1, yg, 0, bias, act, quant);
            }
        });
        return;
    }
    // The columns, in a buffer kept between calls: tens of megabytes for the neck's
    // deconvolutions, whose fresh pages cost more than the GEMM.
    let mut col = COL.take();
    col.resize(rows * hw_in, 0.0);
    let tile = tile_pixels(cin_g);
    let tiles = hw_in.div_ceil(tile);
    for b in 0..n {
        for gi in 0..g {
            let xg = &x[(b * cin + gi * cin_g) * hw_in..(b * cin + (gi + 1) * cin_g) * hw_in];
            match w {
                DeconvWeights::Float(w) => {
                    // w for this group: [cin_g, rows] row-major; we need its transpose [rows, cin_g].
                    let wg = &w[gi * cin_g * rows..(gi + 1) * cin_g * rows];
                    let colp = SharedMut::new(&mut col);
                    (0..tiles).into_par_iter().for_each(|t| {
                        let (p0, p1) = (t * tile, ((t + 1) * tile).min(hw_in));
                        // SAFETY: each tile writes its own columns of `col`.
                        let c = unsafe { colp.slice() };
                        sgemm(
                            rows,
                            p1 - p0,
                            cin_g,
                            MatRef::transposed(wg, rows),
                            MatRef::rows(&xg[p0..], hw_in),
                            &mut c[p0..],
                            hw_in,
                            false,
                        );
                    });
                }
                DeconvWeights::Int8(c) => {
                    assert!(g == 1 && c.cout == rows && c.cin == cin, "the INT8 layer was prepared for another shape");
                    let one =
                        Conv2dParams { group: 1, kernel: [1, 1], strides: [1, 1], dilations: [1, 1], pads: [0; 4] };
                    let (v, _) = conv2d_int8(xg, [1, cin, h, wd], c, None, &one, Activation::None, None);
                    col.copy_from_slice(&v);
                }
            }
            let yg = &mut y[(b * cout + gi * cout_g) * oh * ow..(b * cout + (gi + 1) * cout_g) * oh * ow];
            let col = &col;
            let bias = bias.map(|bb| &bb[gi * cout_g..]);
            if placement {
                yg.par_chunks_mut(oh * ow).enumerate().for_each(|(co, plane)| {
                    let col = &col[co * kh * kw * hw_in..(co + 1) * kh * kw * hw_in];
                    geo.place(col, hw_in, 0, co..co + 1, 0..hw_in, plane, co, bias, act, quant);
                });
                continue;
            }
            yg.par_chunks_mut(oh * ow).enumerate().for_each(|(co, plane)| {
                plane.fill(0.0);
                for ky in 0..kh {
                    for kx in 0..kw {
                        let src = &col[((co * kh + ky) * kw + kx) * hw_in..][..hw_in];
                        for iy in 0..h {
                            let oy = (iy * p.strides[0] + ky * p.dilations[0]) as isize - p.pads[0] as isize;
                            if oy < 0 || oy >= oh as isize {
                                continue;
                            }
                            let orow = &mut plane[oy as usize * ow..(oy as usize + 1) * ow];
                            for ix in 0..wd {
                                let ox = (ix * p.strides[1] + kx * p.dilations[1]) as isize - p.pads[1] as isize;
                                if ox >= 0 && ox < ow as isize {
                                    orow[ox as usize] += src[iy * wd + ix];
                                }
                            }
                        }
                    }
                }
                let bv = bias.map_or(0.0, |bb| bb[co]);
                bias_act_quant(plane, bv, act, quant);
            });
        }
    }
    COL.set(col);
}

/// Column rows per GEMM of the placed transposed convolution (a chunk of output channels).
const PLACE_ROWS: usize = 512;

/// The geometry of a kernel = stride transposed convolution (`OH = H * kh`, `OW = W * kw`).
#[derive(Clone, Copy)]
struct Placement {
    h: usize,
    wd: usize,
    kh: usize,
    kw: usize,
    hw_out: usize,
}

impl Placement {
    /// Writes the outputs of input pixels `pixels` for the channels `chans` (of one group) from
    /// their columns: `col[(((c - chans.start) * kh + ky) * kw + kx) * ld + p - pix0]` is the tap
    /// `(ky, kx)` of channel `c` at input pixel `p`, which lands at output `(iy * kh + ky,
    /// ix * kw + kx)` of channel `c`'s plane, plane `c - y_first` of `y`. Then bias (`bias[c]`),
    /// activation and quantization of exactly the values written: elementwise, as a pass over
    /// the whole plane would do them.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &self,
        col: &[f32],
        ld: usize,
        pix0: usize,
        chans: std::ops::Range<usize>,
        pixels: std::ops::Range<usize>,
        y: &mut [f32],
        y_first: usize,
        bias: Option<&[f32]>,
        act: Activation,
        quant: Option<f32>,
    ) {
        let Placement { h, wd, kh, kw, hw_out } = *self;
        let ow = wd * kw;
        let transpose = super::kernels::best().transpose;
        debug_assert!(pixels.end <= h * wd && pixels.start >= pix0);
        for (ci, c) in chans.enumerate() {
            let plane = &mut y[(c - y_first) * hw_out..(c - y_first + 1) * hw_out];
            let bv = bias.map_or(0.0, |bb| bb[c]);
            for ky in 0..kh {
                let tap = |kx: usize| &col[((ci * kh + ky) * kw + kx) * ld..][..ld];
                let mut p = pixels.start;
                while p < pixels.end {
                    // The run of pixels in one input row.
                    let (iy, ix0) = (p / wd, p % wd);
                    let ix1 = wd.min(ix0 + pixels.end - p);
                    let (s0, s1) = (p - pix0, p - pix0 + ix1 - ix0);
                    let seg = &mut plane[(iy * kh + ky) * ow + ix0 * kw..(iy * kh + ky) * ow + ix1 * kw];
                    match kw {
                        1 => seg.copy_from_slice(&tap(0)[s0..s1]),
                        2 => {
                            let (r0, r1) = (&tap(0)[s0..s1], &tap(1)[s0..s1]);
                            for ((o, &a), &b) in seg.chunks_exact_mut(2).zip(r0).zip(r1) {
                                o[0] = a;
                                o[1] = b;
                            }
                        }
                        // The kw taps interleaved: a [kw, run] block transposed.
                        _ => transpose(&col[(ci * kh + ky) * kw * ld..][..kw * ld], kw, ld, s0, seg),
                    }
                    bias_act_quant(seg, bv, act, quant);
                    p += ix1 - ix0;
                }
            }
        }
    }
}

thread_local! {
    /// The calling thread's column buffer of `conv_transpose2d_from`.
    static COL: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grouped pointwise convolutions give each member the bits `conv2d` gives it alone (two
    /// batches, a plane that is not a multiple of the tile, with and without bias and Relu).
    #[test]
    fn pointwise_group_equals_each_conv_alone() {
        let mut rng = crate::pointpillars::SplitMix64::new(12);
        let xs = [2, 40, 37, 61];
        let x: Vec<f32> = (0..xs.iter().product()).map(|_| rng.unit() * 2.0 - 1.0).collect();
        let p = Conv2dParams { group: 1, kernel: [1, 1], strides: [1, 1], dilations: [1, 1], pads: [0; 4] };
        type Head = (Vec<f32>, usize, Option<Vec<f32>>, Activation);
        let heads: Vec<Head> = [(18, true, false), (42, false, true), (5, true, true)]
            .iter()
            .map(|&(cout, bias, relu)| {
                let w = (0..cout * 40).map(|_| rng.unit() - 0.5).collect();
                let b = bias.then(|| (0..cout).map(|_| rng.unit() - 0.5).collect());
                (w, cout, b, if relu { Activation::Relu } else { Activation::None })
            })
            .collect();
        let members: Vec<PointwiseMember> = heads
            .iter()
            .map(|(w, cout, b, act)| PointwiseMember { w, cout: *cout, bias: b.as_deref(), act: *act })
            .collect();
        let got = conv2d_pointwise_group(&x, xs, &members);
        for ((w, cout, b, act), g) in heads.iter().zip(&got) {
            let (want, _) = conv2d(&x, xs, w, *cout, b.as_deref(), &p, *act, None);
            assert_eq!(g.len(), want.len());
            assert!(g.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "cout {cout}: other bits");
        }
    }

    fn naive_conv(x: &[f32], xs: [usize; 4], w: &[f32], cout: usize, p: &Conv2dParams) -> Vec<f32> {
        let [n, cin, h, wd] = xs;
        let (oh, ow) = p.out_hw(h, wd).unwrap();
        let cg = cin / p.group;
        let og = cout / p.group;
        let mut y = vec![0f32; n * cout * oh * ow];
        for b in 0..n {
            for co in 0..cout {
                let gi = co / og;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = 0f32;
                        for ci in 0..cg {
                            for ky in 0..p.kernel[0] {
                                for kx in 0..p.kernel[1] {
                                    let iy = (oy * p.strides[0] + ky * p.dilations[0]) as isize - p.pads[0] as isize;
                                    let ix = (ox * p.strides[1] + kx * p.dilations[1]) as isize - p.pads[1] as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                        s += x[((b * cin + gi * cg + ci) * h + iy as usize) * wd + ix as usize]
                                            * w[((co * cg + ci) * p.kernel[0] + ky) * p.kernel[1] + kx];
                                    }
                                }
                            }
                        }
                        y[((b * cout + co) * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn conv_matches_naive_reference() {
        let xs = [2, 4, 9, 11];
        let x: Vec<f32> = (0..xs.iter().product::<usize>()).map(|i| ((i * 7919) % 23) as f32 / 7.0 - 1.5).collect();
        for p in [
            Conv2dParams { group: 1, kernel: [3, 3], strides: [1, 1], dilations: [1, 1], pads: [1, 1, 1, 1] },
            Conv2dParams { group: 2, kernel: [3, 2], strides: [2, 1], dilations: [1, 2], pads: [0, 1, 2, 0] },
            Conv2dParams { group: 1, kernel: [1, 1], strides: [1, 1], dilations: [1, 1], pads: [0; 4] },
        ] {
            let cout = 6;
            let w: Vec<f32> = (0..cout * 4 / p.group * p.kernel[0] * p.kernel[1])
                .map(|i| ((i * 31) % 13) as f32 / 5.0 - 1.0)
                .collect();
            let (y, _) = conv2d(&x, xs, &w, cout, None, &p, Activation::None, None);
            let want = naive_conv(&x, xs, &w, cout, &p);
            let err = y.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(err < 1e-4, "{p:?}: max error {err}");
        }
    }

    /// ONNX ConvTranspose by its definition: every input pixel scatters its kernel into the output
    /// at `iy * stride - pad_top + ky * dilation` (w is [Cin, Cout/group, kh, kw]).
    fn naive_conv_transpose(
        x: &[f32],
        xs: [usize; 4],
        w: &[f32],
        cout: usize,
        bias: &[f32],
        p: &ConvTranspose2dParams,
    ) -> Vec<f32> {
        let [n, cin, h, wd] = xs;
        let (oh, ow) = p.out_hw(h, wd).unwrap();
        let (cg, og) = (cin / p.group, cout / p.group);
        let mut y = vec![0f64; n * cout * oh * ow];
        for b in 0..n {
            for ci in 0..cin {
                let gi = ci / cg;
                for iy in 0..h {
                    for ix in 0..wd {
                        let xv = x[((b * cin + ci) * h + iy) * wd + ix] as f64;
                        for c in 0..og {
                            let co = gi * og + c;
                            for ky in 0..p.kernel[0] {
                                for kx in 0..p.kernel[1] {
                                    let oy = (iy * p.strides[0] + ky * p.dilations[0]) as isize - p.pads[0] as isize;
                                    let ox = (ix * p.strides[1] + kx * p.dilations[1]) as isize - p.pads[1] as isize;
                                    if oy >= 0 && ox >= 0 && (oy as usize) < oh && (ox as usize) < ow {
                                        let wv = w[((ci * og + c) * p.kernel[0] + ky) * p.kernel[1] + kx] as f64;
                                        y[((b * cout + co) * oh + oy as usize) * ow + ox as usize] += xv * wv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        for (i, v) in y.iter_mut().enumerate() {
            *v += bias[(i / (oh * ow)) % cout] as f64;
        }
        y.into_iter().map(|v| v as f32).collect()
    }

    /// The placed path (kernel = stride) on shapes that split into several channel chunks and
    /// pixel tiles, tiles starting mid-row, groups, and taps interleaved by each kernel width.
    #[test]
    fn placed_conv_transpose_matches_naive_reference() {
        for (cin, cout, group, k, h, w) in [
            (4, 40, 1, 4, 37, 29),
            (6, 8, 2, 8, 9, 11),
            (3, 5, 1, 3, 40, 31),
            (8, 600, 1, 1, 20, 7),
            (4, 6, 2, 2, 50, 30),
        ] {
            let xs = [1, cin, h, w];
            let x: Vec<f32> = (0..cin * h * w).map(|i| ((i * 7919) % 23) as f32 / 7.0 - 1.5).collect();
            let wt: Vec<f32> = (0..cin * cout / group * k * k).map(|i| ((i * 31) % 13) as f32 / 5.0 - 1.0).collect();
            let bias: Vec<f32> = (0..cout).map(|c| c as f32 * 0.25 - 0.5).collect();
            let p = ConvTranspose2dParams {
                group,
                kernel: [k, k],
                strides: [k, k],
                dilations: [1, 1],
                pads: [0; 4],
                output_padding: [0, 0],
            };
            let (y, _) = conv_transpose2d(&x, xs, &wt, cout, Some(&bias), &p, Activation::Relu, None);
            let want: Vec<f32> =
                naive_conv_transpose(&x, xs, &wt, cout, &bias, &p).iter().map(|v| v.max(0.0)).collect();
            let err = y.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(y.len() == want.len() && err < 1e-4, "{cin} -> {cout}, group {group}, {k}x{k}: max error {err}");
        }
    }

    #[test]
    fn conv_transpose_matches_naive_reference() {
        let xs = [2, 4, 5, 6];
        let x: Vec<f32> = (0..xs.iter().product::<usize>()).map(|i| ((i * 7919) % 23) as f32 / 7.0 - 1.5).collect();
        let cout = 6;
        let bias: Vec<f32> = (0..cout).map(|c| c as f32 * 0.25 - 0.5).collect();
        for p in [
            // The backbone's deblocks: kernel = stride, no overlap.
            ConvTranspose2dParams {
                group: 1,
                kernel: [2, 2],
                strides: [2, 2],
                dilations: [1, 1],
                pads: [0; 4],
                output_padding: [0, 0],
            },
            // Overlapping taps, padding, output padding, dilation, groups.
            ConvTranspose2dParams {
                group: 2,
                kernel: [3, 2],
                strides: [2, 1],
                dilations: [1, 2],
                pads: [1, 0, 0, 1],
                output_padding: [1, 0],
            },
            ConvTranspose2dParams {
                group: 1,
                kernel: [1, 1],
                strides: [1, 1],
                dilations: [1, 1],
                pads: [0; 4],
                output_padding: [0, 0],
            },
        ] {
            let w: Vec<f32> = (0..4 * cout / p.group * p.kernel[0] * p.kernel[1])
                .map(|i| ((i * 31) % 13) as f32 / 5.0 - 1.0)
                .collect();
            let (y, shape) = conv_transpose2d(&x, xs, &w, cout, Some(&bias), &p, Activation::None, None);
            let want = naive_conv_transpose(&x, xs, &w, cout, &bias, &p);
            assert_eq!(y.len(), want.len(), "{p:?}: shape {shape:?}");
            let err = y.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(err < 1e-4, "{p:?}: max error {err}");
        }
    }
}
