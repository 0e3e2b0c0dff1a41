//! Data-movement ops: Reshape, Transpose, Concat, Slice, Gather, Pad, (Un)Squeeze, Flatten,
//! Expand, Range, ConstantOfShape, Shape, Constant, Identity.

use std::sync::Arc;

use rayon::prelude::*;

use super::{input, out_elements, OpError, OpResult};
use crate::graph::Node;
use crate::memory::checked_numel;
use crate::tensor::{numel, DType, Data, Tensor};

/// Applies `f` to the typed payload, keeping the element type.
macro_rules! per_type {
    ($t:expr, $v:ident => $body:expr) => {
        match &$t.data {
            Data::F32($v) => Data::F32($body),
            Data::I64($v) => Data::I64($body),
            Data::I32($v) => Data::I32($body),
            Data::I8($v) => Data::I8($body),
            Data::U8($v) => Data::U8($body),
            Data::Bool($v) => Data::Bool($body),
        }
    };
}

fn ints(ins: &[Option<Arc<Tensor>>], i: usize, what: &str) -> Result<Option<Vec<i64>>, OpError> {
    match ins.get(i).cloned().flatten() {
        None => Ok(None),
        Some(t) => t.to_i64_vec().map(Some).ok_or_else(|| OpError(format!("{what} must be an integer tensor"))),
    }
}

fn axis(v: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if v < 0 { v + r } else { v };
    // A scalar has no axis: every op taking one (Gather, Concat, Squeeze, Pad, Slice) needs rank >= 1.
    if a < 0 || a >= r {
        return Err(OpError(format!("axis {v} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Resolves a Reshape target (0 copies the input dim unless `allowzero`, -1 is inferred).
pub fn reshape_target(input: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>, OpError> {
    let total = numel(input);
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &s) in spec.iter().enumerate() {
        match s {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(
                *input
                    .get(i)
                    .ok_or_else(|| OpError(format!("shape {spec:?} copies dim {i} that the input {input:?} lacks")))?,
            ),
            s if s >= 0 => out.push(s as usize),
            _ => return Err(OpError(format!("shape {spec:?} is invalid"))),
        }
    }
    let too_large = || OpError(format!("shape {spec:?} has more elements than fit in memory (the count overflows)"));
    if let Some(i) = infer {
        let rest = checked_numel(&out).ok_or_else(too_large)?;
        if rest == 0 || !total.is_multiple_of(rest) {
            return Err(OpError(format!("cannot reshape {input:?} ({total} elements) to {spec:?}")));
        }
        out[i] = total / rest;
    }
    if checked_numel(&out).ok_or_else(too_large)? != total {
        return Err(OpError(format!("cannot reshape {input:?} ({total} elements) to {spec:?}")));
    }
    Ok(out)
}

pub fn reshape(node: &Node, ins: &[Option<Arc<Tensor>>]) -> Result<Vec<usize>, OpError> {
    let x = input(ins, 0)?;
    let spec = ints(ins, 1, "shape")?.ok_or_else(|| OpError("missing shape input".into()))?;
    reshape_target(&x.shape, &spec, node.attr().i64("allowzero", 0)? != 0)
}

/// Input 0 with a new shape: its storage is moved when this node holds the only reference.
pub fn retarget(ins: &mut [Option<Arc<Tensor>>], shape: Vec<usize>) -> Tensor {
    let x = ins[0].take().expect("checked by the shape function");
    let mut t = Arc::try_unwrap(x).unwrap_or_else(|a| (*a).clone());
    t.shape = shape;
    t
}

/// Squeeze/Unsqueeze axes: input 1 (opset 13 on) or the attribute.
fn axes_of(node: &Node, ins: &[Option<Arc<Tensor>>]) -> Result<Option<Vec<i64>>, OpError> {
    match ints(ins, 1, "axes")? {
        Some(a) => Ok(Some(a)),
        None => Ok(node.attr().ints_opt("axes")?),
    }
}

pub fn squeeze(node: &Node, ins: &[Option<Arc<Tensor>>]) -> Result<Vec<usize>, OpError> {
    squeeze_shape(&input(ins, 0)?.shape, axes_of(node, ins)?.as_deref())
}

pub fn unsqueeze(node: &Node, ins: &[Option<Arc<Tensor>>]) -> Result<Vec<usize>, OpError> {
    let x = input(ins, 0)?;
    unsqueeze_shape(&x.shape, &axes_of(node, ins)?.ok_or_else(|| OpError("Unsqueeze needs axes".into()))?)
}

pub fn unsqueeze_shape(shape: &[usize], axes: &[i64]) -> Result<Vec<usize>, OpError> {
    let r = shape.len() + axes.len();
    let mut ax: Vec<usize> = axes.iter().map(|&a| axis(a, r)).collect::<Result<_, _>>()?;
    ax.sort_unstable();
    let mut s = shape.to_vec();
    for a in ax {
        s.insert(a, 1);
    }
    Ok(s)
}

/// Squeeze `axes` (all size-1 axes when `None`).
pub fn squeeze_shape(shape: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>, OpError> {
    match axes {
        Some(axes) => {
            let ax: Vec<usize> = axes.iter().map(|&a| axis(a, shape.len())).collect::<Result<_, _>>()?;
            for &a in &ax {
                if shape[a] != 1 {
                    return Err(OpError(format!("cannot squeeze axis {a} of size {}", shape[a])));
                }
            }
            Ok(shape.iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, &d)| d).collect())
        }
        None => Ok(shape.iter().copied().filter(|&d| d != 1).collect()),
    }
}

pub fn flatten(node: &Node, ins: &[Option<Arc<Tensor>>]) -> Result<Vec<usize>, OpError> {
    flatten_shape(&input(ins, 0)?.shape, node.attr().i64("axis", 1)?)
}

pub fn flatten_shape(shape: &[usize], axis: i64) -> Result<Vec<usize>, OpError> {
    let r = shape.len();
    let a = if axis < 0 { axis + r as i64 } else { axis };
    if a < 0 || a > r as i64 {
        return Err(OpError(format!("axis {a} out of range")));
    }
    let a = a as usize;
    Ok(vec![shape[..a].iter().product(), shape[a..].iter().product()])
}

fn strides(shape: &[usize]) -> Vec<usize> {
    (0..shape.len()).map(|i| shape[i + 1..].iter().product()).collect()
}

pub fn transpose(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let x = input(ins, 0)?;
    let r = x.shape.len();
    let perm: Vec<usize> = match node.attr().ints_opt("perm")? {
        Some(p) => p.iter().map(|&a| axis(a, r)).collect::<Result<_, _>>()?,
        None => (0..r).rev().collect(),
    };
    let mut seen = vec![false; r];
    if perm.len() != r || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
        return Err(OpError(format!("perm {perm:?} is not a permutation of rank {r}")));
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let (cshape, cperm) = collapse_perm(&x.shape, &perm);
    // A batch of 2-D transposes (the usual case: NHWC <-> NCHW) goes through cache tiles.
    if cperm == [1, 0] || cperm == [0, 2, 1] {
        let (b, rows, cols) =
            if cperm.len() == 2 { (1, cshape[0], cshape[1]) } else { (cshape[0], cshape[1], cshape[2]) };
        // f32 through the kernel set's transpose, other element types the generic band.
        let data = match &x.data {
            Data::F32(v) => Data::F32(transpose_tiled(v, b, rows, cols, super::kernels::best().transpose)),
            _ => per_type!(x, v => transpose_tiled(v, b, rows, cols, super::kernels::transpose_band)),
        };
        return Ok(vec![Tensor { shape: out_shape, data }]);
    }
    let st = strides(&x.shape);
    let src_strides: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let n = numel(&out_shape);
    let inner = *out_shape.last().unwrap_or(&1);
    let inner_stride = *src_strides.last().unwrap_or(&1);
    fn gather<T: Copy + Send + Sync>(
        v: &[T],
        n: usize,
        inner: usize,
        inner_stride: usize,
        out_shape: &[usize],
        src_strides: &[usize],
    ) -> Vec<T> {
        let mut out: Vec<T> = Vec::with_capacity(n);
        if n == 0 {
            return out;
        }
        let rows = n / inner;
        let r = out_shape.len();
        out.par_extend((0..rows).into_par_iter().flat_map_iter(|row| {
            let mut rem = row;
            let mut base = 0;
            for ax in (0..r.saturating_sub(1)).rev() {
                base += (rem % out_shape[ax]) * src_strides[ax];
                rem /= out_shape[ax];
            }
            (0..inner).map(move |j| v[base + j * inner_stride])
        }));
        out
    }
    let data = per_type!(x, v => gather(v, n, inner, inner_stride, &out_shape, &src_strides));
    Ok(vec![Tensor { shape: out_shape, data }])
}

/// Merges input axes that stay adjacent and in order under `perm`, and drops size-1 axes.
fn collapse_perm(shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let keep: Vec<usize> = perm.iter().copied().filter(|&p| shape[p] != 1).collect();
    // Groups of consecutive input axes, in output order.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for p in keep {
        match groups.last_mut() {
            Some(g) if *g.last().unwrap() + 1 == p => g.push(p),
            _ => groups.push(vec![p]),
        }
    }
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&i| groups[i][0]);
    // order[j] = the group that is j-th in input order.
    let cshape: Vec<usize> = order.iter().map(|&g| groups[g].iter().map(|&a| shape[a]).product()).collect();
    let cperm: Vec<usize> = (0..groups.len()).map(|g| order.iter().position(|&o| o == g).unwrap()).collect();
    (cshape, cperm)
}

/// `out[b][c][r] = v[b][r][c]` with 32 x 32 tiles, rows of tiles in parallel.
/// Output rows per task of `transpose_tiled` (fixed, so the split does not depend on threads).
const TRANSPOSE_BAND: usize = 256;

/// A batch of `[rows, cols]` -> `[cols, rows]` transposes, in bands of output rows, each by
/// `band` (a `kernels::TransposeFn` for any element type).
fn transpose_tiled<T: Copy + Send + Sync + Default>(
    v: &[T],
    b: usize,
    rows: usize,
    cols: usize,
    band: fn(&[T], usize, usize, usize, &mut [T]),
) -> Vec<T> {
    let mut out = vec![T::default(); b * rows * cols];
    let plane = rows * cols;
    if plane == 0 {
        return out;
    }
    out.par_chunks_mut(plane).zip(v.par_chunks(plane)).for_each(|(o, src)| {
        o.par_chunks_mut(TRANSPOSE_BAND * rows).enumerate().for_each(|(i, ob)| {
            band(src, rows, cols, i * TRANSPOSE_BAND, ob);
        });
    });
    out
}

pub fn concat(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let xs: Vec<&Tensor> = ins.iter().filter_map(|t| t.as_deref()).collect();
    let first = xs.first().ok_or_else(|| OpError("no inputs".into()))?;
    let r = first.shape.len();
    let ax = axis(node.attr().i64("axis", 0)?, r)?;
    for t in &xs {
        if t.shape.len() != r || t.shape.iter().enumerate().any(|(i, &d)| i != ax && d != first.shape[i]) {
            return Err(OpError(format!("input shapes {:?} and {:?} differ outside axis {ax}", t.shape, first.shape)));
        }
        if t.dtype() != first.dtype() {
            return Err(OpError("inputs have different element types".into()));
        }
    }
    let outer: usize = first.shape[..ax].iter().product();
    let mut shape = first.shape.clone();
    shape[ax] = xs.iter().map(|t| t.shape[ax]).sum();
    fn cat<T: Copy + Send + Sync + Default>(parts: Vec<(&[T], usize)>, outer: usize) -> Vec<T> {
        let row: usize = parts.iter().map(|p| p.1).sum();
        let mut out = vec![T::default(); outer * row];
        if row == 0 {
            return out;
        }
        out.par_chunks_mut(row).enumerate().for_each(|(o, dst)| {
            let mut at = 0;
            for (v, block) in &parts {
                dst[at..at + block].copy_from_slice(&v[o * block..(o + 1) * block]);
                at += block;
            }
        });
        out
    }
    let inner = |t: &Tensor| t.shape[ax..].iter().product::<usize>();
    macro_rules! go {
        ($var:ident) => {{
            let parts = xs
                .iter()
                .map(|t| match &t.data {
                    Data::$var(v) => (v.as_slice(), inner(t)),
                    _ => unreachable!(),
                })
                .collect();
            Data::$var(cat(parts, outer))
        }};
    }
    let data = match first.data {
        Data::F32(_) => go!(F32),
        Data::I64(_) => go!(I64),
        Data::I32(_) => go!(I32),
        Data::I8(_) => go!(I8),
        Data::U8(_) => go!(U8),
        Data::Bool(_) => go!(Bool),
    };
    Ok(vec![Tensor { shape, data }])
}

/// Resolved Slice: per axis (start, step, count).
pub fn slice_plan(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<(i64, i64, usize)>, OpError> {
    let r = shape.len();
    let mut plan: Vec<(i64, i64, usize)> = shape.iter().map(|&d| (0, 1, d)).collect();
    if starts.len() != ends.len() {
        return Err(OpError("starts and ends differ in length".into()));
    }
    for i in 0..starts.len() {
        let a = match axes {
            Some(ax) => axis(*ax.get(i).ok_or_else(|| OpError("axes shorter than starts".into()))?, r)?,
            None if i < r => i,
            None => return Err(OpError(format!("{} starts for an input of rank {r} (shape {shape:?})", starts.len()))),
        };
        if a >= r {
            return Err(OpError(format!("axis {a} of a rank-{r} input")));
        }
        let step = match steps {
            Some(s) => *s.get(i).ok_or_else(|| OpError("steps shorter than starts".into()))?,
            None => 1,
        };
        if step == 0 {
            return Err(OpError("step 0".into()));
        }
        let d = shape[a] as i64;
        let clampi = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
        let norm = |v: i64| if v < 0 { v + d } else { v };
        let (s, e) = if step > 0 {
            (clampi(norm(starts[i]), 0, d), clampi(norm(ends[i]), 0, d))
        } else {
            (clampi(norm(starts[i]), -1, d - 1), clampi(norm(ends[i]), -1, d - 1))
        };
        // ceil(|e - s| / |step|) in i128: a step near i64's limits must not overflow.
        let (span, stride) =
            if step > 0 { (e as i128 - s as i128, step as i128) } else { (s as i128 - e as i128, -(step as i128)) };
        let count = if span > 0 { (span - 1) / stride + 1 } else { 0 };
        plan[a] = (s, step, count as usize);
    }
    Ok(plan)
}

pub fn slice(ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let x = input(ins, 0)?;
    let starts = ints(ins, 1, "starts")?.ok_or_else(|| OpError("missing starts".into()))?;
    let ends = ints(ins, 2, "ends")?.ok_or_else(|| OpError("missing ends".into()))?;
    let axes = ints(ins, 3, "axes")?;
    let steps = ints(ins, 4, "steps")?;
    let plan = slice_plan(&x.shape, &starts, &ends, axes.as_deref(), steps.as_deref())?;
    let shape: Vec<usize> = plan.iter().map(|p| p.2).collect();
    let st = strides(&x.shape);
    let n = numel(&shape);
    let idx = |mut i: usize| {
        let mut off = 0i64;
        for ax in (0..shape.len()).rev() {
            let c = (i % shape[ax]) as i64;
            i /= shape[ax];
            off += (plan[ax].0 + c * plan[ax].1) * st[ax] as i64;
        }
        off as usize
    };
    // Innermost axes taken whole and with step 1 are copied as contiguous blocks.
    let mut block = 1;
    let mut ax = shape.len();
    while ax > 0 && plan[ax - 1] == (0, 1, x.shape[ax - 1]) {
        ax -= 1;
        block *= x.shape[ax];
    }
    if ax > 0 && plan[ax - 1].1 == 1 {
        block *= plan[ax - 1].2;
        let outer = n / block.max(1);
        let rows: Vec<usize> = (0..outer).map(|o| idx(o * block)).collect();
        let data = per_type!(x, v => {
            let mut out = Vec::with_capacity(n);
            for &r in &rows {
                out.extend_from_slice(&v[r..r + block]);
            }
            out
        });
        return Ok(vec![Tensor { shape, data }]);
    }
    let data = per_type!(x, v => (0..n).map(|i| v[idx(i)]).collect());
    Ok(vec![Tensor { shape, data }])
}

pub fn gather(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let x = input(ins, 0)?;
    let ind = input(ins, 1)?;
    let iv = ind.to_i64_vec().ok_or_else(|| OpError("indices must be integers".into()))?;
    let axis_attr = node.attr().i64("axis", 0)?;
    let shape = gather_shape(&x.shape, &ind.shape, axis_attr)?;
    out_elements(&shape, x.dtype())?;
    let ax = axis(axis_attr, x.shape.len())?;
    let d = x.shape[ax] as i64;
    let iv: Vec<usize> = iv
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + d } else { i };
            if j < 0 || j >= d {
                Err(OpError(format!("index {i} out of range for axis {ax} of size {d}")))
            } else {
                Ok(j as usize)
            }
        })
        .collect::<Result<_, _>>()?;
    let outer: usize = x.shape[..ax].iter().product();
    let inner: usize = x.shape[ax + 1..].iter().product();
    let data = per_type!(x, v => {
        let mut out = Vec::with_capacity(outer * iv.len() * inner);
        for o in 0..outer {
            for &j in &iv {
                let b = (o * x.shape[ax] + j) * inner;
                out.extend_from_slice(&v[b..b + inner]);
            }
        }
        out
    });
    Ok(vec![Tensor { shape, data }])
}

/// `x[..axis] ++ indices ++ x[axis + 1..]`.
pub fn gather_shape(x: &[usize], indices: &[usize], axis_attr: i64) -> Result<Vec<usize>, OpError> {
    let ax = axis(axis_attr, x.len())?;
    Ok([&x[..ax], indices, &x[ax + 1..]].concat())
}

pub fn pad(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let x = input(ins, 0)?;
    let r = x.shape.len();
    let mode = node.attr().string_opt("mode")?.unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(OpError(format!("pad mode '{mode}' is not supported (only constant)")));
    }
    let pads = match ints(ins, 1, "pads")? {
        Some(p) => p,
        None => node.attr().ints_opt("pads")?.ok_or_else(|| OpError("missing pads".into()))?,
    };
    let value = match ins.get(2).cloned().flatten() {
        Some(t) => t.as_f32().and_then(|v| v.first().copied()).unwrap_or(0.0),
        None => node.attr().f32("value", 0.0)?,
    };
    let (before, shape) = pad_plan(&x.shape, &pads, ints(ins, 3, "axes")?.as_deref())?;
    let xv = x.as_f32().ok_or_else(|| OpError("Pad supports float32 inputs".into()))?;
    let st = strides(&x.shape);
    let n = out_elements(&shape, DType::F32)?;
    let out: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|mut i| {
            let mut off = 0usize;
            for ax in (0..r).rev() {
                let c = (i % shape[ax]) as i64 - before[ax];
                i /= shape[ax];
                if c < 0 || c >= x.shape[ax] as i64 {
                    return value;
                }
                off += c as usize * st[ax];
            }
            xv[off]
        })
        .collect();
    Ok(vec![Tensor::f32(shape, out)])
}

/// Resolved Pad over `axes` (all when `None`): the padding before each axis and the output shape.
pub fn pad_plan(shape: &[usize], pads: &[i64], axes: Option<&[i64]>) -> Result<(Vec<i64>, Vec<usize>), OpError> {
    let r = shape.len();
    let axes: Vec<usize> = match axes {
        Some(a) => a.iter().map(|&v| axis(v, r)).collect::<Result<_, _>>()?,
        None => (0..r).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(OpError(format!("pads {pads:?} do not fit {} axes", axes.len())));
    }
    let mut before = vec![0i64; r];
    let mut after = vec![0i64; r];
    for (i, &a) in axes.iter().enumerate() {
        before[a] = pads[i];
        after[a] = pads[i + axes.len()];
    }
    let out: Vec<usize> = (0..r)
        .map(|i| {
            let d = i64::try_from(shape[i]).ok().and_then(|d| d.checked_add(before[i])?.checked_add(after[i]));
            match d {
                Some(d) if d >= 0 => Ok(d as usize),
                Some(_) => Err(OpError(format!("pads {pads:?} make axis {i} of {shape:?} negative"))),
                None => Err(OpError(format!("pads {pads:?} overflow axis {i} of {shape:?}"))),
            }
        })
        .collect::<Result<_, _>>()?;
    checked_numel(&out)
        .ok_or_else(|| OpError(format!("pads {pads:?} turn {shape:?} into {out:?}, whose element count overflows")))?;
    Ok((before, out))
}

pub fn expand(ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let x = input(ins, 0)?;
    let target = ints(ins, 1, "shape")?.ok_or_else(|| OpError("missing shape".into()))?;
    let (shape, st) = expand_plan(&x.shape, &target)?;
    let n = out_elements(&shape, x.dtype())?;
    let idx = |mut i: usize| {
        let mut off = 0;
        for ax in (0..shape.len()).rev() {
            off += (i % shape[ax]) * st[ax];
            i /= shape[ax];
        }
        off
    };
    let data = per_type!(x, v => (0..n).map(|i| v[idx(i)]).collect());
    Ok(vec![Tensor { shape, data }])
}

/// Expand's output shape and the input's strides in it.
pub fn expand_plan(shape: &[usize], target: &[i64]) -> Result<(Vec<usize>, Vec<usize>), OpError> {
    let t: Vec<usize> = target.iter().map(|&d| d.max(0) as usize).collect();
    let (out, mut st) = super::elementwise::broadcast_shapes(&[shape, &t])
        .ok_or_else(|| OpError(format!("cannot expand {shape:?} to {target:?}")))?;
    Ok((out, st.swap_remove(0)))
}

pub fn range(ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let (s, l, d) = (input(ins, 0)?, input(ins, 1)?, input(ins, 2)?);
    match (&s.data, &l.data, &d.data) {
        (Data::F32(a), Data::F32(b), Data::F32(c)) => {
            let n = (((b[0] - a[0]) / c[0]).ceil().max(0.0)) as usize;
            out_elements(&[n], DType::F32)?;
            Ok(vec![Tensor::f32(vec![n], (0..n).map(|i| a[0] + i as f32 * c[0]).collect())])
        }
        _ => {
            let (a, b, c) = (
                s.to_i64_vec().unwrap_or_default(),
                l.to_i64_vec().unwrap_or_default(),
                d.to_i64_vec().unwrap_or_default(),
            );
            if a.is_empty() || b.is_empty() || c.is_empty() || c[0] == 0 {
                return Err(OpError("Range needs scalar start, limit and a non-zero delta".into()));
            }
            // Exact in i128: ceil((limit - start) / delta) elements, every one inside [start, limit).
            let (a, b, c) = (a[0] as i128, b[0] as i128, c[0] as i128);
            let n = if (c > 0 && b > a) || (c < 0 && b < a) { ((b - a).abs() + c.abs() - 1) / c.abs() } else { 0 };
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            out_elements(&[n], DType::I64)?;
            let v: Vec<i64> = (0..n as i128).map(|i| (a + i * c) as i64).collect();
            let data = match (&s.data, &l.data) {
                // Start and limit are int32, so every value between them is too.
                (Data::I32(_), Data::I32(_)) => Data::I32(v.iter().map(|&x| x as i32).collect()),
                _ => Data::I64(v),
            };
            Ok(vec![Tensor { shape: vec![n], data }])
        }
    }
}

pub fn constant_of_shape(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let s = ints(ins, 0, "shape")?.ok_or_else(|| OpError("missing shape".into()))?;
    let shape: Vec<usize> = s.iter().map(|&d| d.max(0) as usize).collect();
    let value = node.attr().tensor_opt("value");
    let n = out_elements(&shape, value.map_or(DType::F32, |v| v.dtype()))?;
    let data = match value {
        Some(v) if v.is_empty() => return Err(OpError("attribute value is an empty tensor".into())),
        Some(v) => per_type!(v, x => vec![x[0]; n]),
        None => Data::F32(vec![0.0; n]),
    };
    Ok(vec![Tensor { shape, data }])
}

pub fn shape_op(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let x = input(ins, 0)?;
    let t = Tensor::i64(vec![x.shape.len()], x.shape.iter().map(|&d| d as i64).collect());
    Ok(vec![slice_shape_output(node, t).map_err(|e| OpError(e.to_string()))?])
}

/// Applies Shape's optional `start`/`end` attributes (opset 15) to a full shape vector.
pub fn slice_shape_output(node: &Node, t: Tensor) -> crate::error::Result<Tensor> {
    let a = node.attr();
    let v = t.to_i64_vec().unwrap_or_default();
    let r = v.len() as i64;
    let c = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
    let (s, e) = (c(a.i64("start", 0)?), c(a.i64("end", r)?));
    let out: Vec<i64> = if s < e { v[s..e].to_vec() } else { vec![] };
    Ok(Tensor::i64(vec![out.len()], out))
}

pub fn constant(node: &Node) -> OpResult {
    let a = node.attr();
    if let Some(t) = a.tensor_opt("value") {
        return Ok(vec![t.clone()]);
    }
    use crate::graph::AttrValue;
    match node.attrs.0.first() {
        Some((_, AttrValue::Float(f))) => Ok(vec![Tensor::f32(vec![], vec![*f])]),
        Some((_, AttrValue::Floats(f))) => Ok(vec![Tensor::f32(vec![f.len()], f.clone())]),
        Some((_, AttrValue::Int(i))) => Ok(vec![Tensor::i64(vec![], vec![*i])]),
        Some((_, AttrValue::Ints(i))) => Ok(vec![Tensor::i64(vec![i.len()], i.clone())]),
        _ => Err(OpError("Constant has no supported value attribute".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: starts beyond the input's rank (no axes) indexed past the shape; steps
    /// near i64's limits overflowed the element count.
    #[test]
    fn slice_plans_of_malformed_slices_are_errors_or_exact() {
        assert!(slice_plan(&[], &[0], &[1], None, None).unwrap_err().0.contains("rank 0"));
        assert!(slice_plan(&[], &[0], &[1], Some(&[0]), None).is_err());
        assert!(slice_plan(&[4], &[0, 0], &[1, 1], None, None).is_err());
        // Axis 0 of a scalar (Gather, Squeeze, Pad) was accepted and then indexed past the shape.
        assert!(gather_shape(&[], &[2], 0).unwrap_err().0.contains("out of range for rank 0"));
        assert!(squeeze_shape(&[], Some(&[0])).is_err());
        assert!(pad_plan(&[], &[1, 1], Some(&[0])).is_err());
        assert!(slice_plan(&[4], &[0], &[4], None, Some(&[])).unwrap_err().0.contains("steps shorter"));
        assert_eq!(slice_plan(&[10], &[0], &[10], None, Some(&[i64::MAX])).unwrap(), vec![(0, i64::MAX, 1)]);
        assert_eq!(slice_plan(&[10], &[9], &[i64::MIN], None, Some(&[i64::MIN])).unwrap(), vec![(9, i64::MIN, 1)]);
        assert_eq!(slice_plan(&[10], &[1], &[8], None, Some(&[3])).unwrap(), vec![(1, 3, 3)]);
        assert_eq!(slice_plan(&[10], &[-1], &[-11], None, Some(&[-4])).unwrap(), vec![(9, -4, 3)]);
    }
}
