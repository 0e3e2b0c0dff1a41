//! ScatterND, ScatterElements and the CUDA-PointPillars pillar scatter (`PPScatterPlugin`).

use std::sync::Arc;

use rayon::prelude::*;

use super::{f32_in, input, out_elements, OpError, OpResult};
use crate::graph::Node;
use crate::tensor::{DType, Data, Tensor};

pub fn scatter_nd(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let data = input(ins, 0)?;
    let ind = input(ins, 1)?;
    let upd = input(ins, 2)?;
    let reduction = node.attr().string_opt("reduction")?.unwrap_or_else(|| "none".into());
    let iv = ind.to_i64_vec().ok_or_else(|| OpError("indices must be integers".into()))?;
    let q = *ind.shape.last().ok_or_else(|| OpError("indices must have rank >= 1".into()))?;
    if q == 0 || q > data.shape.len() {
        return Err(OpError(format!("index depth {q} does not fit data rank {}", data.shape.len())));
    }
    let slice: usize = data.shape[q..].iter().product();
    let n_idx = iv.len() / q;
    if upd.len() != n_idx * slice {
        return Err(OpError(format!(
            "updates {:?} do not fit indices {:?} and data {:?}",
            upd.shape, ind.shape, data.shape
        )));
    }
    let mut offsets = Vec::with_capacity(n_idx);
    for i in 0..n_idx {
        let mut off = 0usize;
        for j in 0..q {
            let d = data.shape[j] as i64;
            let mut v = iv[i * q + j];
            if v < 0 {
                v += d;
            }
            if v < 0 || v >= d {
                return Err(OpError(format!("index {} out of range for axis {j} of size {d}", iv[i * q + j])));
            }
            off = off * data.shape[j] + v as usize;
        }
        offsets.push(off * slice);
    }
    macro_rules! go {
        ($d:expr, $u:expr, $ctor:path) => {{
            let mut out = $d.clone();
            for (i, &o) in offsets.iter().enumerate() {
                let src = &$u[i * slice..(i + 1) * slice];
                let dst = &mut out[o..o + slice];
                match reduction.as_str() {
                    "add" => dst.iter_mut().zip(src).for_each(|(a, b)| *a += *b),
                    "mul" => dst.iter_mut().zip(src).for_each(|(a, b)| *a *= *b),
                    "max" => dst.iter_mut().zip(src).for_each(|(a, b)| {
                        if *b > *a {
                            *a = *b
                        }
                    }),
                    "min" => dst.iter_mut().zip(src).for_each(|(a, b)| {
                        if *b < *a {
                            *a = *b
                        }
                    }),
                    _ => dst.copy_from_slice(src),
                }
            }
            $ctor(out)
        }};
    }
    let out = match (&data.data, &upd.data) {
        (Data::F32(d), Data::F32(u)) => go!(d, u, Data::F32),
        (Data::I64(d), Data::I64(u)) => go!(d, u, Data::I64),
        (Data::I32(d), Data::I32(u)) => go!(d, u, Data::I32),
        _ => return Err(OpError("data and updates must have the same numeric type".into())),
    };
    Ok(vec![Tensor { shape: data.shape.clone(), data: out }])
}

pub fn scatter_elements(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let data = input(ins, 0)?;
    let ind = input(ins, 1)?;
    let upd = input(ins, 2)?;
    let r = data.shape.len();
    let ax = node.attr().i64("axis", 0)?;
    let ax = if ax < 0 { ax + r as i64 } else { ax };
    if ax < 0 || ax >= r as i64 || ind.shape.len() != r || ind.shape != upd.shape {
        return Err(OpError("indices and updates must share a shape of the data's rank".into()));
    }
    let ax = ax as usize;
    let iv = ind.to_i64_vec().ok_or_else(|| OpError("indices must be integers".into()))?;
    let dst_strides: Vec<usize> = (0..r).map(|i| data.shape[i + 1..].iter().product()).collect();
    let mut offsets = Vec::with_capacity(iv.len());
    for (i, &v) in iv.iter().enumerate() {
        let mut rem = i;
        let mut off = 0;
        for a in (0..r).rev() {
            let c = rem % ind.shape[a];
            rem /= ind.shape[a];
            let c = if a == ax {
                let d = data.shape[a] as i64;
                let j = if v < 0 { v + d } else { v };
                if j < 0 || j >= d {
                    return Err(OpError(format!("index {v} out of range for axis {ax} of size {d}")));
                }
                j as usize
            } else {
                c
            };
            off += c * dst_strides[a];
        }
        offsets.push(off);
    }
    let out = match (&data.data, &upd.data) {
        (Data::F32(d), Data::F32(u)) => {
            let mut o = d.clone();
            offsets.iter().zip(u).for_each(|(&k, &v)| o[k] = v);
            Data::F32(o)
        }
        (Data::I64(d), Data::I64(u)) => {
            let mut o = d.clone();
            offsets.iter().zip(u).for_each(|(&k, &v)| o[k] = v);
            Data::I64(o)
        }
        _ => return Err(OpError("data and updates must be float32 or int64 of the same type".into())),
    };
    Ok(vec![Tensor { shape: data.shape.clone(), data: out }])
}

/// `graph::fold::SCATTER_ROWS_T`: `out[c, r - start] = updates[i, c]` for `r = indices[i]` in
/// `[start, start + count)`, zeros elsewhere; `[cols, count]`. Each worker owns whole channel
/// rows and walks the updates in order, so the last update of a row wins for any thread count.
pub fn scatter_rows_transposed(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let a = node.attr();
    let dim = |k: &str| -> Result<usize, OpError> {
        let v = a.i64(k, -1)?;
        usize::try_from(v).map_err(|_| OpError(format!("attribute {k} = {v} must be >= 0")))
    };
    let (rows, cols, start, count) = (dim("rows")?, dim("cols")?, dim("start")?, dim("count")?);
    if start.checked_add(count).is_none_or(|e| e > rows) {
        return Err(OpError(format!("rows [{start}, {start} + {count}) exceed the {rows} rows")));
    }
    let iv = input(ins, 0)?.to_i64_vec().ok_or_else(|| OpError("indices must be integers".into()))?;
    let ind = input(ins, 0)?;
    if ind.shape.last() != Some(&1) {
        return Err(OpError(format!("indices {:?} must index rows (last dimension 1)", ind.shape)));
    }
    let upd = f32_in(ins, 1)?;
    if upd.len() != iv.len() * cols {
        return Err(OpError(format!(
            "updates {:?} do not fit indices {:?} and data [{rows}, {cols}]",
            input(ins, 1)?.shape,
            ind.shape
        )));
    }
    // (update, output column) of each update that lands inside the slice, in update order.
    let mut hits: Vec<(usize, usize)> = Vec::with_capacity(iv.len());
    for (i, &v) in iv.iter().enumerate() {
        let r = if v < 0 { v + rows as i64 } else { v };
        if r < 0 || r >= rows as i64 {
            return Err(OpError(format!("index {v} out of range for axis 0 of size {rows}")));
        }
        let r = r as usize;
        if (start..start + count).contains(&r) {
            hits.push((i, r - start));
        }
    }
    let n = out_elements(&[cols, count], DType::F32)?;
    let mut out = vec![0f32; n];
    if count > 0 {
        out.par_chunks_mut(count).enumerate().for_each(|(c, row)| {
            for &(i, col) in &hits {
                row[col] = upd[i * cols + c];
            }
        });
    }
    Ok(vec![Tensor::f32(vec![cols, count], out)])
}

/// NVIDIA CUDA-PointPillars' scatter: `canvas[0, :, y_i, x_i] = features[i, :]` for the first
/// `voxel_num` pillars, with `(y, x) = (voxel_idxs[i, 2], voxel_idxs[i, 3])`; everything else 0.
pub fn pp_scatter(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let feats = input(ins, 0)?;
    let fv = f32_in(ins, 0)?;
    let idx = input(ins, 1)?.to_i64_vec().ok_or_else(|| OpError("voxel_idxs must be integers".into()))?;
    let num = input(ins, 2)?.to_i64_vec().ok_or_else(|| OpError("voxel_num must be an integer".into()))?;
    let dense =
        node.attr().ints_opt("dense_shape")?.ok_or_else(|| OpError("missing attribute dense_shape [H, W]".into()))?;
    let (h, w) = match dense.as_slice() {
        [h, w] if *h > 0 && *w > 0 => (*h as usize, *w as usize),
        _ => return Err(OpError(format!("dense_shape {dense:?} must be [H, W]"))),
    };
    // Features arrive as [P, C] or [1, P, C] (or [P, 1, C]); channels last.
    let c = *feats.shape.last().ok_or_else(|| OpError("features must have rank >= 2".into()))?;
    let p = fv.len() / c.max(1);
    if idx.len() != p * 4 {
        return Err(OpError(format!("voxel_idxs has {} values, expected {p} x 4", idx.len())));
    }
    let n = (*num.first().ok_or_else(|| OpError("voxel_num is empty".into()))?).clamp(0, p as i64) as usize;
    let mut canvas = vec![0f32; out_elements(&[1, c, h, w], DType::F32)?];
    for i in 0..n {
        let (y, x) = (idx[i * 4 + 2], idx[i * 4 + 3]);
        if y < 0 || x < 0 || y as usize >= h || x as usize >= w {
            return Err(OpError(format!("pillar {i} at (y {y}, x {x}) lies outside the {h} x {w} grid")));
        }
        let cell = y as usize * w + x as usize;
        for ch in 0..c {
            canvas[ch * h * w + cell] = fv[i * c + ch];
        }
    }
    Ok(vec![Tensor::f32(vec![1, c, h, w], canvas)])
}
