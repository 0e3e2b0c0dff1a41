//! Broadcasting element-wise ops, comparisons, Where, Cast.

use rayon::prelude::*;

use crate::error::Result;
use crate::numerics::round_f16;
use crate::tensor::{numel, Data, Tensor};

/// Output shape and, per input, the strides (0 on broadcast axes) aligned to the output rank.
pub fn broadcast_shapes(shapes: &[&[usize]]) -> Option<(Vec<usize>, Vec<Vec<usize>>)> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return None;
            }
        }
    }
    let strides = shapes
        .iter()
        .map(|s| {
            let mut st = vec![0usize; rank];
            let mut acc = 1;
            for i in (0..s.len()).rev() {
                let d = s[i];
                st[rank - s.len() + i] = if d == 1 { 0 } else { acc };
                acc *= d;
            }
            st
        })
        .collect();
    Some((out, strides))
}

/// Index of output element `i` in each input, walking the broadcast strides.
fn gather_index(mut i: usize, shape: &[usize], strides: &[usize]) -> usize {
    let mut off = 0;
    for ax in (0..shape.len()).rev() {
        let d = shape[ax];
        off += (i % d) * strides[ax];
        i /= d;
    }
    off
}

pub fn map2<A: Copy + Sync, B: Copy + Sync, O: Send + Default + Clone>(
    a: &[A],
    sa: &[usize],
    b: &[B],
    sb: &[usize],
    f: impl Fn(A, B) -> O + Sync,
) -> Option<(Vec<O>, Vec<usize>)> {
    let (shape, st) = broadcast_shapes(&[sa, sb])?;
    let n = numel(&shape);
    let out: Vec<O> = if sa == sb {
        a.par_iter().zip(b.par_iter()).map(|(&x, &y)| f(x, y)).collect()
    } else if b.len() == 1 && shape == sa {
        let y = b[0];
        a.par_iter().map(|&x| f(x, y)).collect()
    } else {
        // Row by row over the innermost axis: per-element index arithmetic only once a row.
        let inner = *shape.last().unwrap_or(&1);
        let (ia, ib) = (st[0].last().copied().unwrap_or(0), st[1].last().copied().unwrap_or(0));
        let mut out = vec![O::default(); n];
        if inner > 0 {
            out.par_chunks_mut(inner).enumerate().for_each(|(r, row)| {
                let (oa, ob) = (gather_index(r * inner, &shape, &st[0]), gather_index(r * inner, &shape, &st[1]));
                for (j, o) in row.iter_mut().enumerate() {
                    *o = f(a[oa + j * ia], b[ob + j * ib]);
                }
            });
        }
        out
    };
    Some((out, shape))
}

pub fn where3<T: Copy + Sync + Send + Default>(
    c: &[bool],
    sc: &[usize],
    x: &[T],
    sx: &[usize],
    y: &[T],
    sy: &[usize],
) -> Option<(Vec<T>, Vec<usize>)> {
    let (shape, st) = broadcast_shapes(&[sc, sx, sy])?;
    let n = numel(&shape);
    let out = (0..n)
        .into_par_iter()
        .map(|i| {
            if c[gather_index(i, &shape, &st[0])] {
                x[gather_index(i, &shape, &st[1])]
            } else {
                y[gather_index(i, &shape, &st[2])]
            }
        })
        .collect();
    Some((out, shape))
}

/// ONNX Cast. `to` is the ONNX element type code; float16 values are rounded and held as f32.
pub fn cast(t: &Tensor, to: i32) -> std::result::Result<Tensor, String> {
    use crate::tensor::DType;
    let to = DType::from_onnx(to);
    let f: Vec<f64> = match &t.data {
        Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
        Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
        Data::I32(v) => v.iter().map(|&x| x as f64).collect(),
        Data::I8(v) => v.iter().map(|&x| x as f64).collect(),
        Data::U8(v) => v.iter().map(|&x| x as f64).collect(),
        Data::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
    };
    // Integer to integer keeps exact values (f64 holds every i32 and the i64 we meet: indices).
    let data = match to {
        DType::F32 | DType::F64 => Data::F32(match &t.data {
            Data::F32(v) => v.clone(),
            _ => f.iter().map(|&x| x as f32).collect(),
        }),
        DType::F16 => Data::F32(
            match &t.data {
                Data::F32(v) => v.clone(),
                _ => f.iter().map(|&x| x as f32).collect(),
            }
            .into_iter()
            .map(round_f16)
            .collect(),
        ),
        DType::I64 => Data::I64(match &t.data {
            Data::I64(v) => v.clone(),
            _ => f.iter().map(|&x| x as i64).collect(),
        }),
        DType::I32 => Data::I32(match &t.data {
            Data::I64(v) => v.iter().map(|&x| x as i32).collect(),
            _ => f.iter().map(|&x| x as i32).collect(),
        }),
        DType::I8 => Data::I8(f.iter().map(|&x| x as i8).collect()),
        DType::U8 => Data::U8(f.iter().map(|&x| x as u8).collect()),
        DType::Bool => Data::Bool(f.iter().map(|&x| x != 0.0).collect()),
        DType::Other(c) => return Err(format!("cast to ONNX type {c} is not supported")),
    };
    Ok(Tensor { shape: t.shape.clone(), data })
}

pub fn unary_f32(t: &Tensor, f: impl Fn(f32) -> f32 + Sync + Send) -> Result<Tensor, String> {
    match &t.data {
        Data::F32(v) => Ok(Tensor::f32(t.shape.clone(), v.par_iter().map(|&x| f(x)).collect())),
        _ => Err(format!("expects float32 input, got {}", t.dtype())),
    }
}
