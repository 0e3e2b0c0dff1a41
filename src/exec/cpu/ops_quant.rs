//! QuantizeLinear / DequantizeLinear, per tensor and per axis (TensorRT explicit quantization:
//! round half to even, saturate).

use std::sync::Arc;

use super::{f32_in, input, OpError, OpResult};
use crate::graph::Node;
use crate::numerics::int8::quantize_value;
use crate::tensor::{Data, Tensor};

/// For element `i` of a tensor, the index into a per-axis parameter vector.
fn param_index(shape: &[usize], axis: usize) -> impl Fn(usize) -> usize + '_ {
    let inner: usize = shape[axis + 1..].iter().product();
    let d = shape[axis];
    move |i| (i / inner) % d
}

fn resolve_axis(node: &Node, x: &Tensor, nparams: usize) -> Result<Option<usize>, OpError> {
    if nparams <= 1 {
        return Ok(None);
    }
    let r = x.shape.len() as i64;
    let a = node.attr().i64("axis", 1)?;
    let a = if a < 0 { a + r } else { a };
    if a < 0 || a >= r || x.shape[a as usize] != nparams {
        return Err(OpError(format!("{nparams} scales do not match axis {a} of input {:?}", x.shape)));
    }
    Ok(Some(a as usize))
}

pub fn quantize_linear(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let x = input(ins, 0)?;
    let xv = f32_in(ins, 0)?;
    let scale = f32_in(ins, 1)?;
    let zp = ins.get(2).cloned().flatten();
    let signed = match zp.as_deref().map(|t| &t.data) {
        Some(Data::I8(_)) => true,
        Some(Data::U8(_)) | None => false,
        Some(_) => return Err(OpError("zero point must be int8 or uint8".into())),
    };
    let zpv: Vec<i32> =
        zp.as_deref().and_then(|t| t.to_i64_vec()).map(|v| v.iter().map(|&z| z as i32).collect()).unwrap_or(vec![0]);
    let axis = resolve_axis(node, x, scale.len())?;
    let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
    let q: Vec<i32> = match axis {
        None => xv.iter().map(|&v| quantize_value(v, scale[0], zpv[0], lo, hi)).collect(),
        Some(a) => {
            let pi = param_index(&x.shape, a);
            xv.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let c = pi(i);
                    quantize_value(v, scale[c], *zpv.get(c).unwrap_or(&zpv[0]), lo, hi)
                })
                .collect()
        }
    };
    let data = if signed {
        Data::I8(q.iter().map(|&v| v as i8).collect())
    } else {
        Data::U8(q.iter().map(|&v| v as u8).collect())
    };
    Ok(vec![Tensor { shape: x.shape.clone(), data }])
}

pub fn dequantize_linear(node: &Node, ins: &[Option<Arc<Tensor>>]) -> OpResult {
    let x = input(ins, 0)?;
    let xv = x.to_i64_vec().ok_or_else(|| OpError("input must be an integer tensor".into()))?;
    let scale = f32_in(ins, 1)?;
    let zpv: Vec<i64> = ins.get(2).cloned().flatten().and_then(|t| t.to_i64_vec()).unwrap_or(vec![0]);
    let axis = resolve_axis(node, x, scale.len())?;
    let y: Vec<f32> = match axis {
        None => xv.iter().map(|&v| (v - zpv[0]) as f32 * scale[0]).collect(),
        Some(a) => {
            let pi = param_index(&x.shape, a);
            xv.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let c = pi(i);
                    (v - *zpv.get(c).unwrap_or(&zpv[0])) as f32 * scale[c]
                })
                .collect()
        }
    };
    Ok(vec![Tensor::f32(x.shape.clone(), y)])
}
