//! Arithmetic ops: element-wise, BatchNormalization, MatMul, Gemm, Conv, ConvTranspose, reductions.

use std::sync::Arc;

use rayon::prelude::*;

use super::conv::{conv2d, conv_transpose2d_from, Conv2dParams, ConvPrep, ConvTranspose2dParams, DeconvWeights};
use super::elementwise::{cast, map2, unary_f32, where3};
use super::gemm::{sgemm, MatRef, SharedMut};
use super::int8conv::conv2d_int8;
use super::winograd::{self, conv2d_winograd, WinogradFilter};
use super::KernelArgs;
use super::{f32_in, input, out_elements, OpError, OpResult};
use crate::graph::{Activation, Node};
use crate::tensor::{numel, DType, Data, Tensor};

pub fn binary(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let a = input(ins, 0)?;
    let b = input(ins, 1)?;
    let op = node.op_type.as_str();
    let mismatch = || OpError(format!("input shapes {:?} and {:?} cannot be broadcast together", a.shape, b.shape));
    let cmp = || -> OpResult {
        macro_rules! compare {
            ($x:expr, $y:expr) => {{
                let (v, s) = match op {
                    "Less" => map2($x, &a.shape, $y, &b.shape, |p, q| p < q),
                    "LessOrEqual" => map2($x, &a.shape, $y, &b.shape, |p, q| p <= q),
                    "Greater" => map2($x, &a.shape, $y, &b.shape, |p, q| p > q),
                    "GreaterOrEqual" => map2($x, &a.shape, $y, &b.shape, |p, q| p >= q),
                    "Equal" => map2($x, &a.shape, $y, &b.shape, |p, q| p == q),
                    _ => return Err(OpError(format!("{op} is not defined for {}", a.dtype()))),
                }
                .ok_or_else(mismatch)?;
                Ok(vec![Tensor { shape: s, data: Data::Bool(v) }])
            }};
        }
        match (&a.data, &b.data) {
            (Data::F32(x), Data::F32(y)) => compare!(x, y),
            (Data::I64(x), Data::I64(y)) => compare!(x, y),
            (Data::I32(x), Data::I32(y)) => compare!(x, y),
            (Data::Bool(x), Data::Bool(y)) => {
                let (v, s) = match op {
                    "And" => map2(x, &a.shape, y, &b.shape, |p, q| p && q),
                    "Or" => map2(x, &a.shape, y, &b.shape, |p, q| p || q),
                    "Equal" => map2(x, &a.shape, y, &b.shape, |p, q| p == q),
                    _ => return Err(OpError(format!("{op} is not defined for bool"))),
                }
                .ok_or_else(mismatch)?;
                Ok(vec![Tensor { shape: s, data: Data::Bool(v) }])
            }
            _ => Err(OpError(format!("input types differ: {} and {}", a.dtype(), b.dtype()))),
        }
    };
    macro_rules! arith {
        ($x:expr, $y:expr, $ctor:path, $div:expr) => {{
            let (v, s) = match op {
                "Add" => map2($x, &a.shape, $y, &b.shape, |p, q| p + q),
                "Sub" => map2($x, &a.shape, $y, &b.shape, |p, q| p - q),
                "Mul" => map2($x, &a.shape, $y, &b.shape, |p, q| p * q),
                "Div" => map2($x, &a.shape, $y, &b.shape, $div),
                "Max" => map2($x, &a.shape, $y, &b.shape, |p, q| if q > p { q } else { p }),
                "Min" => map2($x, &a.shape, $y, &b.shape, |p, q| if q < p { q } else { p }),
                _ => return cmp(),
            }
            .ok_or_else(mismatch)?;
            Ok(vec![Tensor { shape: s, data: $ctor(v) }])
        }};
    }
    match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => {
            if op == "Pow" {
                let (v, s) = map2(x, &a.shape, y, &b.shape, f32::powf).ok_or_else(mismatch)?;
                return Ok(vec![Tensor::f32(s, v)]);
            }
            arith!(x, y, Data::F32, |p, q| p / q)
        }
        (Data::I64(x), Data::I64(y)) => {
            arith!(x, y, Data::I64, |p: i64, q: i64| if q == 0 { 0 } else { p.div_euclid(q) })
        }
        (Data::I32(x), Data::I32(y)) => {
            arith!(x, y, Data::I32, |p: i32, q: i32| if q == 0 { 0 } else { p.div_euclid(q) })
        }
        _ => cmp(),
    }
}

pub fn unary(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let x = input(ins, 0)?;
    let a = node.attr();
    let r = match node.op_type.as_str() {
        "Relu" => unary_f32(x, |v| v.max(0.0)),
        "Sigmoid" => unary_f32(x, |v| 1.0 / (1.0 + (-v).exp())),
        "Exp" => unary_f32(x, f32::exp),
        "Sqrt" => unary_f32(x, f32::sqrt),
        "Tanh" => unary_f32(x, f32::tanh),
        "Abs" => unary_f32(x, f32::abs),
        "Neg" => unary_f32(x, |v| -v),
        "Floor" => unary_f32(x, f32::floor),
        "Ceil" => unary_f32(x, f32::ceil),
        "Round" => unary_f32(x, f32::round_ties_even),
        "LeakyRelu" => {
            let alpha = a.f32("alpha", 0.01)?;
            unary_f32(x, move |v| if v < 0.0 { alpha * v } else { v })
        }
        "Clip" => {
            let lo = ins.get(1).cloned().flatten().and_then(|t| t.as_f32().map(|v| v[0])).unwrap_or(f32::NEG_INFINITY);
            let hi = ins.get(2).cloned().flatten().and_then(|t| t.as_f32().map(|v| v[0])).unwrap_or(f32::INFINITY);
            unary_f32(x, move |v| v.max(lo).min(hi))
        }
        "Not" => match &x.data {
            Data::Bool(v) => Ok(Tensor { shape: x.shape.clone(), data: Data::Bool(v.iter().map(|b| !b).collect()) }),
            _ => Err("expects a bool input".into()),
        },
        op => Err(format!("{op} is not a unary op")),
    };
    r.map(|t| vec![t]).map_err(OpError)
}

pub fn cast_op(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let to = node.attr().i64("to", 1)? as i32;
    Ok(vec![cast(input(ins, 0)?, to).map_err(OpError)?])
}

pub fn where_op(ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let c = input(ins, 0)?;
    let (x, y) = (input(ins, 1)?, input(ins, 2)?);
    let Data::Bool(cv) = &c.data else {
        return Err(OpError("condition must be bool".into()));
    };
    let bad = || OpError("condition, X and Y cannot be broadcast together".into());
    let (data, shape) = match (&x.data, &y.data) {
        (Data::F32(a), Data::F32(b)) => where3(cv, &c.shape, a, &x.shape, b, &y.shape).map(|(v, s)| (Data::F32(v), s)),
        (Data::I64(a), Data::I64(b)) => where3(cv, &c.shape, a, &x.shape, b, &y.shape).map(|(v, s)| (Data::I64(v), s)),
        (Data::I32(a), Data::I32(b)) => where3(cv, &c.shape, a, &x.shape, b, &y.shape).map(|(v, s)| (Data::I32(v), s)),
        _ => return Err(OpError(format!("X and Y types differ or are unsupported: {} and {}", x.dtype(), y.dtype()))),
    }
    .ok_or_else(bad)?;
    Ok(vec![Tensor { shape, data }])
}

/// Per-channel affine (channel axis 1) of BatchNormalization in inference mode.
pub fn bn_scale_shift(node: &Node, ins: &[Option<Arc<Tensor>>]) -> Result<(Vec<f32>, Vec<f32>), OpError> {
    let eps = node.attr().f32("epsilon", 1e-5)?;
    let (g, b, m, v) = (f32_in(ins, 1)?, f32_in(ins, 2)?, f32_in(ins, 3)?, f32_in(ins, 4)?);
    crate::numerics::bn_scale_shift(g, b, m, v, eps).map_err(OpError)
}

pub fn batch_norm(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let x = input(ins, 0)?;
    let xv = f32_in(ins, 0)?;
    let (scale, shift) = bn_scale_shift(node, ins)?;
    if x.shape.len() < 2 || x.shape[1] != scale.len() {
        return Err(OpError(format!("input {:?} has no channel axis 1 of size {}", x.shape, scale.len())));
    }
    let c = x.shape[1];
    let inner: usize = x.shape[2..].iter().product();
    let mut y = xv.to_vec();
    y.par_chunks_mut(inner.max(1)).enumerate().for_each(|(i, ch)| {
        let ci = i % c;
        ch.iter_mut().for_each(|v| *v = *v * scale[ci] + shift[ci]);
    });
    Ok(vec![Tensor::f32(x.shape.clone(), y)])
}

fn apply_act(v: &mut [f32], act: Activation) {
    if act == Activation::Relu {
        v.iter_mut().for_each(|x| *x = x.max(0.0));
    }
}

/// Rows per task in row-split GEMMs (fixed: determinism does not depend on threads).
const ROW_TILE: usize = 256;

/// `[M, K] x [K, N]` with row tiles in parallel; optional bias on N.
fn matmul_2d(a: &[f32], m: usize, k: usize, b: MatRef, n: usize, bias: Option<&[f32]>, act: Activation) -> Vec<f32> {
    if k <= 16 && b.cs == 1 {
        return matmul_small_k(a, m, k, b, n, bias, act);
    }
    let mut y = vec![0f32; m * n];
    let out = SharedMut::new(&mut y);
    (0..m.div_ceil(ROW_TILE)).into_par_iter().for_each(|t| {
        let (r0, r1) = (t * ROW_TILE, ((t + 1) * ROW_TILE).min(m));
        // SAFETY: each tile writes its own rows.
        let dst = &mut unsafe { out.slice() }[r0 * n..r1 * n];
        sgemm(r1 - r0, n, k, MatRef::rows(&a[r0 * k..r1 * k], k), b, dst, n, false);
        if let Some(bias) = bias {
            dst.chunks_mut(n).for_each(|row| row.iter_mut().zip(bias).for_each(|(v, b)| *v += b));
        }
        apply_act(dst, act);
    });
    y
}

/// Thin inner dimension (the pillar net's 10 features): row by row, `y = bias + sum_k a_k * b_k`,
/// vectorized over the output width; GEMM packing would cost more than the product.
fn matmul_small_k(
    a: &[f32],
    m: usize,
    k: usize,
    b: MatRef,
    n: usize,
    bias: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    // Weights as a dense [k, n] block (b is row-major with unit column stride here).
    let w: Vec<f32> = (0..k).flat_map(|kk| b.data[kk * b.rs..kk * b.rs + n].iter().copied()).collect();
    let zero = vec![0f32; n];
    let bias = bias.unwrap_or(&zero);
    let mut y = vec![0f32; m * n];
    let kernels = super::kernels::best();
    y.par_chunks_mut(ROW_TILE * n).zip(a.par_chunks(ROW_TILE * k)).for_each(|(dst, src)| {
        (kernels.rows)(dst, src, &w, bias, k, n);
        apply_act(dst, act);
    });
    y
}

/// `y[p, :] = max over m of act(x[p, m, :] @ W + b)` (see `graph::fold::PILLAR_MAX_MATMUL`).
/// Same arithmetic per point as MatMul + ReduceMax, without the [P, M, N] intermediate.
pub fn pillar_max_matmul(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let (x, w) = (input(ins, 0)?, input(ins, 1)?);
    let (xv, wv) = (f32_in(ins, 0)?, f32_in(ins, 1)?);
    let ([p, m, k], [k2, n]) = (
        <[usize; 3]>::try_from(x.shape.as_slice())
            .map_err(|_| OpError(format!("input {:?} is not [P, M, K]", x.shape)))?,
        <[usize; 2]>::try_from(w.shape.as_slice())
            .map_err(|_| OpError(format!("weight {:?} is not [K, N]", w.shape)))?,
    );
    if k != k2 || m == 0 {
        return Err(OpError(format!("input {:?} does not fit weight {:?}", x.shape, w.shape)));
    }
    let zero = vec![0f32; n];
    let bias: Vec<f32> = match ins.get(2).cloned().flatten() {
        Some(b) => {
            b.as_f32().filter(|v| v.len() == n).ok_or_else(|| OpError("bias must be float32 [N]".into()))?.to_vec()
        }
        None => zero,
    };
    let act = node.activation;
    let mut y = vec![0f32; p * n];
    const PILLARS_PER_TASK: usize = 64;
    let kernels = super::kernels::best();
    // What an all-zero row (an empty point slot: the voxelizer pads each pillar's points with
    // +0.0) becomes, computed once by the same kernel. A pillar's trailing empty slots all give
    // this row, and taking the max with one value again changes nothing, so it stands in for
    // them with the same bits; a pillar is mostly empty slots, and padding pillars are all.
    let mut empty = vec![0f32; n];
    (kernels.rows)(&mut empty, &vec![0f32; k], wv, &bias, k, n);
    apply_act(&mut empty, act);
    let max_into =
        |out: &mut [f32], r: &[f32]| out.iter_mut().zip(r).for_each(|(o, &v)| *o = if v > *o { v } else { *o });
    y.par_chunks_mut(PILLARS_PER_TASK * n).enumerate().for_each_init(Vec::new, |rows, (t, dst)| {
        let pillars = dst.len() / n;
        rows.resize(m * n, 0.0);
        for (j, out) in dst.chunks_mut(n).enumerate() {
            let src = &xv[(t * PILLARS_PER_TASK + j) * m * k..][..m * k];
            // Any bit set, without a branch per value (the whole pillar first: most are empty).
            let set = |r: &[f32]| r.iter().fold(0u32, |a, v| a | v.to_bits()) != 0;
            let used = if set(src) { src.chunks_exact(k).rposition(set).map_or(0, |i| i + 1) } else { 0 };
            if used == 0 {
                out.copy_from_slice(&empty);
                continue;
            }
            let rows = &mut rows[..used * n];
            (kernels.rows)(rows, &src[..used * k], wv, &bias, k, n);
            apply_act(rows, act);
            out.copy_from_slice(&rows[..n]);
            for r in rows.chunks_exact(n).skip(1) {
                max_into(out, r);
            }
            if used < m {
                max_into(out, &empty);
            }
        }
        debug_assert!(pillars <= PILLARS_PER_TASK);
    });
    let keep = node.attr().i64("keepdims", 1)? != 0;
    let shape = if keep { vec![p, 1, n] } else { vec![p, n] };
    Ok(vec![Tensor::f32(shape, y)])
}

/// ONNX MatMul (numpy semantics). After BN folding a third input may carry a bias on the last axis.
pub fn matmul(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let (a, b) = (input(ins, 0)?, input(ins, 1)?);
    let (av, bv) = (f32_in(ins, 0)?, f32_in(ins, 1)?);
    let bias = match ins.get(2).cloned().flatten() {
        Some(t) => Some(t.as_f32().ok_or_else(|| OpError("bias must be float32".into()))?.to_vec()),
        None => None,
    };
    if a.shape.is_empty() || b.shape.is_empty() {
        return Err(OpError("MatMul of a scalar".into()));
    }
    let mut ash = a.shape.clone();
    let mut bsh = b.shape.clone();
    let (a1, b1) = (ash.len() == 1, bsh.len() == 1);
    if a1 {
        ash.insert(0, 1);
    }
    if b1 {
        bsh.push(1);
    }
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (k2, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    if k != k2 {
        return Err(OpError(format!("inner dimensions differ: {:?} x {:?}", a.shape, b.shape)));
    }
    if bias.as_ref().is_some_and(|b| b.len() != n) {
        return Err(OpError("folded bias does not match the output width".into()));
    }
    let batch_a = &ash[..ash.len() - 2];
    let batch_b = &bsh[..bsh.len() - 2];
    let (batch, st) = super::elementwise::broadcast_shapes(&[batch_a, batch_b])
        .ok_or_else(|| OpError(format!("batch dims of {:?} and {:?} do not broadcast", a.shape, b.shape)))?;
    let nb = numel(&batch);
    let mut out = Vec::with_capacity(nb * m * n);
    if numel(batch_b) == 1 {
        // Common case (a layer): one weight for every batch row: one tall GEMM.
        out = matmul_2d(av, nb * m, k, MatRef::rows(bv, n), n, bias.as_deref(), node.activation);
    } else {
        for i in 0..nb {
            let idx = |s: &[usize]| {
                let mut rem = i;
                let mut off = 0;
                for ax in (0..batch.len()).rev() {
                    off += (rem % batch[ax]) * s[ax];
                    rem /= batch[ax];
                }
                off
            };
            let (oa, ob) = (idx(&st[0]) * m * k, idx(&st[1]) * k * n);
            out.extend(matmul_2d(
                &av[oa..oa + m * k],
                m,
                k,
                MatRef::rows(&bv[ob..ob + k * n], n),
                n,
                bias.as_deref(),
                node.activation,
            ));
        }
    }
    let mut shape = batch;
    if !a1 {
        shape.push(m);
    }
    if !b1 {
        shape.push(n);
    }
    Ok(vec![Tensor::f32(shape, out)])
}

pub fn gemm_op(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let (a, b) = (input(ins, 0)?, input(ins, 1)?);
    let (av, bv) = (f32_in(ins, 0)?, f32_in(ins, 1)?);
    let at = node.attr();
    let (ta, tb) = (at.i64("transA", 0)? != 0, at.i64("transB", 0)? != 0);
    let (alpha, beta) = (at.f32("alpha", 1.0)?, at.f32("beta", 1.0)?);
    if a.shape.len() != 2 || b.shape.len() != 2 {
        return Err(OpError("Gemm needs 2-D A and B".into()));
    }
    let (m, k) = if ta { (a.shape[1], a.shape[0]) } else { (a.shape[0], a.shape[1]) };
    let (k2, n) = if tb { (b.shape[1], b.shape[0]) } else { (b.shape[0], b.shape[1]) };
    if k != k2 {
        return Err(OpError(format!("inner dimensions differ: A {:?}, B {:?}", a.shape, b.shape)));
    }
    let amat = if ta { MatRef::transposed(av, m) } else { MatRef::rows(av, k) };
    let bmat = if tb { MatRef::transposed(bv, k) } else { MatRef::rows(bv, n) };
    let mut y = vec![0f32; m * n];
    sgemm(m, n, k, amat, bmat, &mut y, n, false);
    if alpha != 1.0 {
        y.iter_mut().for_each(|v| *v *= alpha);
    }
    if let Some(c) = ins.get(2).cloned().flatten() {
        let cv = c.as_f32().ok_or_else(|| OpError("C must be float32".into()))?;
        let (cb, s) = map2(&y, &[m, n], cv, &c.shape, |p, q| p + beta * q)
            .ok_or_else(|| OpError(format!("C {:?} does not broadcast to [{m}, {n}]", c.shape)))?;
        if s != [m, n] {
            return Err(OpError(format!("C {:?} does not broadcast to [{m}, {n}]", c.shape)));
        }
        y = cb;
    }
    apply_act(&mut y, node.activation);
    Ok(vec![Tensor::f32(vec![m, n], y)])
}

fn pair(v: &[i64], name: &str) -> Result<[usize; 2], OpError> {
    match v {
        [a, b] if *a >= 0 && *b >= 0 => Ok([*a as usize, *b as usize]),
        _ => Err(OpError(format!(
            "'{name}' {v:?} is not a pair of non-negative integers (only 2-D convolutions are supported)"
        ))),
    }
}

struct ConvAttrs {
    group: usize,
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [usize; 4],
}

fn conv_attrs(node: &Node, w: &Tensor) -> Result<ConvAttrs, OpError> {
    let a = node.attr();
    if w.shape.len() != 4 {
        return Err(OpError(format!("weight {:?} is not 4-D (only 2-D convolutions are supported)", w.shape)));
    }
    if a.string_opt("auto_pad")?.is_some_and(|p| p != "NOTSET") {
        return Err(OpError("auto_pad is not supported; export with explicit pads".into()));
    }
    let kernel =
        pair(&a.ints_opt("kernel_shape")?.unwrap_or(vec![w.shape[2] as i64, w.shape[3] as i64]), "kernel_shape")?;
    if kernel != [w.shape[2], w.shape[3]] {
        return Err(OpError(format!("kernel_shape {kernel:?} disagrees with weight {:?}", w.shape)));
    }
    let strides = pair(&a.ints_opt("strides")?.unwrap_or(vec![1, 1]), "strides")?;
    let dilations = pair(&a.ints_opt("dilations")?.unwrap_or(vec![1, 1]), "dilations")?;
    let p = a.ints_opt("pads")?.unwrap_or(vec![0; 4]);
    if p.len() != 4 || p.iter().any(|&v| v < 0) {
        return Err(OpError(format!("pads {p:?} must be 4 non-negative integers")));
    }
    let group = a.i64("group", 1)?.max(1) as usize;
    if strides.contains(&0) || dilations.contains(&0) {
        return Err(OpError("strides and dilations must be positive".into()));
    }
    Ok(ConvAttrs {
        group,
        kernel,
        strides,
        dilations,
        pads: [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize],
    })
}

fn x4(x: &Tensor) -> Result<[usize; 4], OpError> {
    match x.shape.as_slice() {
        [n, c, h, w] => Ok([*n, *c, *h, *w]),
        s => Err(OpError(format!("input {s:?} is not 4-D NCHW"))),
    }
}

/// The FP32 kernel's prepared weights for a Conv with constant weight `w`, when the layer's
/// shape calls for one (`winograd::applies`); `None` leaves it to im2col + GEMM.
pub(crate) fn conv_prep_fp32(node: &Node, w: &Tensor) -> Option<ConvPrep> {
    let ca = conv_attrs(node, w).ok()?;
    let (cout, cin) = (w.shape[0], w.shape[1]);
    if !winograd::applies(&conv_params(&ca), cin, cout) {
        return None;
    }
    WinogradFilter::new(w.as_f32()?, cout, cin).map(ConvPrep::Winograd)
}

fn conv_params(ca: &ConvAttrs) -> Conv2dParams {
    Conv2dParams { group: ca.group, kernel: ca.kernel, strides: ca.strides, dilations: ca.dilations, pads: ca.pads }
}

/// Whether `node` with constant weight `w` is a 1x1 stride-1 ungrouped, unpadded Conv: one that
/// `conv_pointwise_group` can run with its siblings.
pub(crate) fn is_pointwise_conv(node: &Node, w: &Tensor) -> bool {
    node.op_type == "Conv"
        && (node.domain.is_empty() || node.domain == "ai.onnx")
        && w.dtype() == DType::F32
        && conv_attrs(node, w).is_ok_and(|ca| ca.group == 1 && conv_params(&ca).is_pointwise())
}

/// FP32 pointwise Convs reading one input, run together (`conv::conv2d_pointwise_group`): the
/// outputs of each node, the bits each gives alone. `None` when an input does not fit (the
/// nodes then run one by one and report it).
pub(crate) fn conv_pointwise_group(nodes: &[&Node], ins: &[Vec<Option<Arc<Tensor>>>]) -> Option<OpResult> {
    let x = ins.first()?.first()?.as_ref()?;
    let xs = x4(x).ok()?;
    let xv = x.as_f32()?;
    let mut members = Vec::with_capacity(nodes.len());
    for (node, ins) in nodes.iter().zip(ins) {
        let w = ins.get(1)?.as_ref()?;
        let bias = match ins.get(2).and_then(Option::as_ref) {
            Some(b) => Some(b.as_f32()?),
            None => None,
        };
        let cout = *w.shape.first()?;
        if !is_pointwise_conv(node, w) || w.shape[1] != xs[1] || bias.is_some_and(|b| b.len() != cout) {
            return None;
        }
        out_elements(&[xs[0], cout, xs[2], xs[3]], DType::F32).ok()?;
        members.push((w.as_f32()?, cout, bias, node.activation));
    }
    // The tensors live in `ins` for the kernel's duration; the members borrow them.
    let members: Vec<super::conv::PointwiseMember> =
        members.iter().map(|&(w, cout, bias, act)| super::conv::PointwiseMember { w, cout, bias, act }).collect();
    Some(super::guard(|| {
        let ys = super::conv::conv2d_pointwise_group(xv, xs, &members);
        Ok(ys.into_iter().zip(&members).map(|(y, m)| Tensor::f32(vec![xs[0], m.cout, xs[2], xs[3]], y)).collect())
    }))
}

/// `conv`, with the output fake-quantized at `k.quant` in the kernel's epilogue, from the
/// prepared weights `k.prep` when they fit the layer.
pub fn conv_quantized(node: &Node, ins: &[Option<Arc<Tensor>>], k: &KernelArgs) -> OpResult {
    let quant = k.quant;
    let (x, w) = (input(ins, 0)?, input(ins, 1)?);
    let ca = conv_attrs(node, w)?;
    let xs = x4(x)?;
    let cout = w.shape[0];
    if xs[1] != w.shape[1] * ca.group || cout % ca.group != 0 {
        return Err(OpError(format!(
            "input has {} channels but weight {:?} with group {} expects {}",
            xs[1],
            w.shape,
            ca.group,
            w.shape[1] * ca.group
        )));
    }
    let bias = match ins.get(2).cloned().flatten() {
        Some(b) => Some(b.as_f32().ok_or_else(|| OpError("bias must be float32".into()))?.to_vec()),
        None => None,
    };
    if bias.as_ref().is_some_and(|b| b.len() != cout) {
        return Err(OpError("bias length differs from the output channels".into()));
    }
    let p = conv_params(&ca);
    let Some((oh, ow)) = p.out_hw(xs[2], xs[3]) else {
        return Err(OpError(format!(
            "kernel {:?} with pads {:?} does not fit input {:?}",
            ca.kernel, ca.pads, x.shape
        )));
    };
    out_elements(&[xs[0], cout, oh, ow], DType::F32)?;
    let x_shape = &x.shape;
    let x = f32_in(ins, 0)?;
    let (y, ys) = match k.prep {
        Some(ConvPrep::Winograd(f)) if f.cin == xs[1] && f.cout == cout && winograd::applies(&p, xs[1], cout) => {
            conv2d_winograd(x, xs, f, bias.as_deref(), p.pads, node.activation, quant)
        }
        // The executor left the input unquantized for this kernel: no float fallback.
        Some(ConvPrep::Int8(c)) => {
            if c.cin != xs[1] || c.cout != cout || p.group != 1 || p.kernel != c.kernel {
                return Err(OpError(format!(
                    "the INT8 layer was prepared for {} -> {} channels, kernel {:?}, but runs on input {:?}",
                    c.cin, c.cout, c.kernel, x_shape
                )));
            }
            conv2d_int8(x, xs, c, bias.as_deref(), &p, node.activation, quant)
        }
        _ => conv2d(x, xs, f32_in(ins, 1)?, cout, bias.as_deref(), &p, node.activation, quant),
    };
    Ok(vec![Tensor::f32(ys.to_vec(), y)])
}

/// ConvTranspose, with the output fake-quantized at `k.quant` per output plane; an INT8 layer's
/// columns in integers from `k.prep`.
pub fn conv_transpose(node: &Node, ins: &[Option<Arc<Tensor>>], k: &KernelArgs) -> OpResult {
    let d = Deconv::new(node, ins, k)?;
    let (y, ys) = conv_transpose2d_from(d.x, d.xs, d.weights, d.cout, d.bias.as_deref(), &d.p, d.act, k.quant);
    Ok(vec![Tensor::f32(ys.to_vec(), y)])
}

/// `conv_transpose` writing into `dst` (its region of the Concat that reads it) when the output
/// has shape `want`: `Ok(false)`, with nothing written, when it has another.
pub(crate) fn conv_transpose_into(
    node: &Node,
    ins: &[Option<Arc<Tensor>>],
    k: &KernelArgs,
    want: &[usize],
    dst: &mut [f32],
) -> Result<bool, OpError> {
    let d = Deconv::new(node, ins, k)?;
    if d.out[..] != *want || dst.len() != numel(want) {
        return Ok(false);
    }
    super::conv::conv_transpose2d_into(d.x, d.xs, d.weights, d.cout, d.bias.as_deref(), &d.p, d.act, k.quant, dst);
    Ok(true)
}

/// A ConvTranspose step's operands, checked.
struct Deconv<'a> {
    x: &'a [f32],
    xs: [usize; 4],
    weights: DeconvWeights<'a>,
    cout: usize,
    bias: Option<Vec<f32>>,
    p: ConvTranspose2dParams,
    act: Activation,
    out: [usize; 4],
}

impl<'a> Deconv<'a> {
    fn new(node: &Node, ins: &'a [Option<Arc<Tensor>>], k: &KernelArgs<'a>) -> Result<Deconv<'a>, OpError> {
        let (x, w) = (input(ins, 0)?, input(ins, 1)?);
        let ca = conv_attrs(node, w)?;
        let xs = x4(x)?;
        if xs[1] != w.shape[0] || xs[1] % ca.group != 0 {
            return Err(OpError(format!(
                "input has {} channels but weight {:?} expects {}",
                xs[1], w.shape, w.shape[0]
            )));
        }
        if node.attr().ints_opt("output_shape")?.is_some() {
            return Err(OpError("output_shape is not supported; export with explicit pads".into()));
        }
        let op = node.attr().ints_opt("output_padding")?.unwrap_or(vec![0, 0]);
        let cout = w.shape[1] * ca.group;
        let bias = match ins.get(2).cloned().flatten() {
            Some(b) => Some(b.as_f32().ok_or_else(|| OpError("bias must be float32".into()))?.to_vec()),
            None => None,
        };
        let p = ConvTranspose2dParams {
            group: ca.group,
            kernel: ca.kernel,
            strides: ca.strides,
            dilations: ca.dilations,
            pads: ca.pads,
            output_padding: pair(&op, "output_padding")?,
        };
        let Some((oh, ow)) = p.out_hw(xs[2], xs[3]) else {
            return Err(OpError(format!("pads {:?} exceed the output size or the geometry overflows", ca.pads)));
        };
        out_elements(&[xs[0], cout, oh, ow], DType::F32)?;
        out_elements(&[w.shape[1], ca.kernel[0], ca.kernel[1], xs[2], xs[3]], DType::F32)?;
        let weights = match k.prep {
            // The executor left the input unquantized for this kernel: no float fallback.
            Some(ConvPrep::Int8(c)) => {
                if c.cin != xs[1] || c.cout != cout * ca.kernel[0] * ca.kernel[1] || ca.group != 1 {
                    return Err(OpError(format!(
                        "the INT8 layer was prepared for {} input channels and {} columns, but runs on input {:?}",
                        c.cin, c.cout, x.shape
                    )));
                }
                DeconvWeights::Int8(c)
            }
            _ => DeconvWeights::Float(f32_in(ins, 1)?),
        };
        let x = f32_in(ins, 0)?;
        Ok(Deconv { x, xs, weights, cout, bias, p, act: node.activation, out: [xs[0], cout, oh, ow] })
    }
}

pub fn reduce(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let x = input(ins, 0)?;
    let xv = f32_in(ins, 0)?;
    let a = node.attr();
    let rank = x.shape.len();
    let axes: Option<Vec<i64>> = match ins.get(1).cloned().flatten() {
        Some(t) => t.to_i64_vec(),
        None => a.ints_opt("axes")?,
    };
    let keep = a.i64("keepdims", 1)? != 0;
    let mut red = vec![false; rank];
    match axes {
        Some(ax) if !ax.is_empty() => {
            for v in ax {
                let i = if v < 0 { v + rank as i64 } else { v };
                if i < 0 || i >= rank as i64 {
                    return Err(OpError(format!("axis {v} out of range for rank {rank}")));
                }
                red[i as usize] = true;
            }
        }
        _ => {
            if a.i64("noop_with_empty_axes", 0)? != 0 {
                return Ok(vec![x.clone()]);
            }
            red.iter_mut().for_each(|r| *r = true)
        }
    }
    let out_shape_keep: Vec<usize> = x.shape.iter().zip(&red).map(|(&d, &r)| if r { 1 } else { d }).collect();
    let n_out = numel(&out_shape_keep);
    let (init, f): (f32, fn(f32, f32) -> f32) = match node.op_type.as_str() {
        "ReduceMax" => (f32::NEG_INFINITY, f32::max),
        "ReduceMin" => (f32::INFINITY, f32::min),
        _ => (0.0, |a, b| a + b),
    };
    // Fast path: reducing one contiguous inner axis group (the PFN's max over points).
    let mut out = vec![init; n_out];
    let strides_in: Vec<usize> = (0..rank).map(|i| x.shape[i + 1..].iter().product()).collect();
    let strides_out: Vec<usize> = (0..rank).map(|i| out_shape_keep[i + 1..].iter().product()).collect();
    let raxes_v: Vec<usize> = (0..rank).filter(|&i| red[i]).collect();
    let contiguous = raxes_v.windows(2).all(|w| w[1] == w[0] + 1);
    if contiguous && !raxes_v.is_empty() {
        // View as [outer, R, inner]: out[o, i] = f over r of x[o, r, i], vectorizable over i.
        let (a0, a1) = (raxes_v[0], *raxes_v.last().unwrap());
        let outer: usize = x.shape[..a0].iter().product();
        let rr: usize = x.shape[a0..=a1].iter().product();
        let inner: usize = x.shape[a1 + 1..].iter().product();
        if inner > 0 && outer > 0 {
            // Monomorphized per op so the inner loop vectorizes; several outer rows per task.
            fn run<F: Fn(f32, f32) -> f32 + Sync>(out: &mut [f32], xv: &[f32], rr: usize, inner: usize, f: F) {
                let rows_per_task = (16384 / (rr * inner).max(1)).max(1);
                out.par_chunks_mut(inner * rows_per_task).enumerate().for_each(|(t, dsts)| {
                    for (j, dst) in dsts.chunks_mut(inner).enumerate() {
                        let base = (t * rows_per_task + j) * rr * inner;
                        for r in 0..rr {
                            let src = &xv[base + r * inner..base + (r + 1) * inner];
                            dst.iter_mut().zip(src).for_each(|(d, &v)| *d = f(*d, v));
                        }
                    }
                });
            }
            match node.op_type.as_str() {
                "ReduceMax" => run(&mut out, xv, rr, inner, |a, b| if b > a { b } else { a }),
                "ReduceMin" => run(&mut out, xv, rr, inner, |a, b| if b < a { b } else { a }),
                _ => run(&mut out, xv, rr, inner, |a, b| a + b),
            }
        }
        return finish_reduce(node, x, &red, keep, out_shape_keep, out);
    }
    let chunk = 4096;
    let raxes: Vec<usize> = (0..rank).filter(|&i| red[i]).collect();
    let count: usize = raxes.iter().map(|&i| x.shape[i]).product();
    out.par_chunks_mut(chunk).enumerate().for_each(|(ci, dst)| {
        for (j, o) in dst.iter_mut().enumerate() {
            let oi = ci * chunk + j;
            // Base input offset of this output element, then walk the reduced axes.
            let mut base = 0;
            let mut rem = oi;
            for ax in 0..rank {
                let c = rem / strides_out[ax];
                rem %= strides_out[ax];
                if !red[ax] {
                    base += c * strides_in[ax];
                }
            }
            let mut acc = init;
            for r in 0..count {
                let mut off = base;
                let mut rr = r;
                for &ax in raxes.iter().rev() {
                    off += (rr % x.shape[ax]) * strides_in[ax];
                    rr /= x.shape[ax];
                }
                acc = f(acc, xv[off]);
            }
            *o = acc;
        }
    });
    finish_reduce(node, x, &red, keep, out_shape_keep, out)
}

fn finish_reduce(
    node: &Node,
    x: &Tensor,
    red: &[bool],
    keep: bool,
    out_shape_keep: Vec<usize>,
    mut out: Vec<f32>,
) -> OpResult {
    if node.op_type == "ReduceMean" {
        let count: usize = x.shape.iter().zip(red.iter()).filter(|(_, &r)| r).map(|(&d, _)| d).product();
        out.iter_mut().for_each(|v| *v /= count.max(1) as f32);
    }
    let shape = if keep {
        out_shape_keep
    } else {
        x.shape.iter().zip(red.iter()).filter(|(_, &r)| !r).map(|(&d, _)| d).collect()
    };
    Ok(vec![Tensor::f32(shape, out)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pointpillars::SplitMix64;

    /// The fused pillar layer gives the bits of its definition, every row computed (bias, then
    /// the products added in order, Relu, max in row order), for pillars that are empty, end in
    /// empty slots, have empty slots between points, or end in a -0.0 row (not an empty slot);
    /// with a bias holding signed zeros.
    #[test]
    fn pillar_max_matmul_skips_empty_slots_with_the_same_bits() {
        let (p, m, k, n) = (6, 5, 3, 4);
        let mut rng = SplitMix64::new(9);
        let mut x: Vec<f32> = (0..p * m * k).map(|_| rng.unit() * 2.0 - 1.0).collect();
        let row = |x: &mut Vec<f32>, pi: usize, r: usize, v: f32| x[(pi * m + r) * k..][..k].fill(v);
        for r in 0..m {
            row(&mut x, 0, r, 0.0); // an empty (padding) pillar
        }
        for r in 2..m {
            row(&mut x, 1, r, 0.0); // two points, then empty slots
        }
        row(&mut x, 2, 1, 0.0); // an empty slot between points
        row(&mut x, 3, m - 1, -0.0); // -0.0 is a value, not an empty slot
        let w: Vec<f32> = (0..k * n).map(|_| rng.unit() * 2.0 - 1.0).collect();
        let bias = vec![0.0, -0.0, -0.3, 0.2];
        for act in [Activation::Relu, Activation::None] {
            let node = Node {
                name: "pfn".into(),
                op_type: crate::graph::fold::PILLAR_MAX_MATMUL.into(),
                domain: String::new(),
                inputs: vec!["x".into(), "w".into(), "b".into()],
                outputs: vec!["y".into()],
                attrs: crate::graph::Attrs::default(),
                activation: act,
                fused: vec![],
            };
            let ins = [
                Some(Arc::new(Tensor::f32(vec![p, m, k], x.clone()))),
                Some(Arc::new(Tensor::f32(vec![k, n], w.clone()))),
                Some(Arc::new(Tensor::f32(vec![n], bias.clone()))),
            ];
            let y = pillar_max_matmul(&node, &ins).expect("runs").remove(0);
            let got = y.as_f32().expect("f32");
            for pi in 0..p {
                for j in 0..n {
                    let value = |r: usize| {
                        let mut acc = bias[j];
                        for i in 0..k {
                            acc += x[(pi * m + r) * k + i] * w[i * n + j];
                        }
                        if act == Activation::Relu {
                            acc.max(0.0)
                        } else {
                            acc
                        }
                    };
                    let want = (1..m).map(value).fold(value(0), |o, v| if v > o { v } else { o });
                    assert_eq!(got[pi * n + j].to_bits(), want.to_bits(), "{act:?}: pillar {pi}, channel {j}");
                }
            }
        }
    }
}
