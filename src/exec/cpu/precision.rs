//! Mixed-precision simulation on the CPU executor, driven by a resolved PrecisionPlan.
//!
//! - INT8 layer: its activation input is quantized per tensor (scale = amax / 127, round half to
//!   even, saturate to [-128, 127]) and its (BN-folded) weights per output channel (symmetric
//!   max). An ungrouped Conv or ConvTranspose then computes in integers (`int8conv`: i32 sums, dequantized once
//!   by `s_a * s_w[c]`, as TensorRT's INT8 kernels); other INT8 layers compute in f32 from those
//!   levels times their scales. The bias stays FP32, as in TensorRT's explicit quantization and
//!   in the emitted Q/DQ ONNX. A calibration with `pow2_scales` rounds the weight scales up to
//!   powers of two as well.
//! - FP16 layer: activation input, weights, bias and output are rounded to f16.
//! - FP32: unchanged.

use std::sync::Arc;

use super::conv::ConvPrep;
use super::int8conv::Int8Conv;
use super::ops_math::conv_prep_fp32;
use super::CpuExecutor;
use crate::error::{Error, Result};
use crate::graph::Node;
use crate::numerics::int8::{fake_quant, fake_quant_slice, per_channel_amax, pow2_ceil, quantize_i8};
use crate::precision::{LayerPrecision, Precision};
use crate::tensor::{Data, Tensor};

/// What one executor step does under a plan.
#[derive(Clone)]
pub(crate) enum StepPrecision {
    Fp32,
    Int8 {
        act_scale: f32,
        weight: Arc<Tensor>,
        /// Input equalization: multipliers per channel of the activation, and that channel axis.
        input_mul: Option<(Arc<[f32]>, usize)>,
        /// Bias correction: the bias used instead of the layer's.
        bias: Option<Arc<Tensor>>,
    },
    Fp16 {
        weight: Arc<Tensor>,
        bias: Option<Arc<Tensor>>,
    },
}

/// A plan compiled for one executor: the precision of every step, with its transformed weights.
#[derive(Clone)]
pub struct CompiledPlan {
    pub(crate) steps: Vec<StepPrecision>,
    /// Per step: quantize its output at this scale in the kernel's epilogue (a Conv or
    /// ConvTranspose read only by INT8 layers of that scale, directly or through a Concat), so
    /// the readers skip their separate pass over the tensor.
    pub(crate) out_quant: Vec<Option<f32>>,
    /// Per step: the prepared weights of a changed Conv: an INT8 layer's packed levels for the
    /// integer kernels, an FP16 weight's Winograd filter.
    pub(crate) prep: Vec<Option<Arc<ConvPrep>>>,
}

impl CompiledPlan {
    /// Number of steps the plan changes (non-FP32 layers).
    pub fn changed_steps(&self) -> usize {
        self.steps.iter().filter(|s| !matches!(s, StepPrecision::Fp32)).count()
    }

    /// Number of steps that quantize their output for INT8 readers in their epilogue.
    pub fn epilogue_quantizations(&self) -> usize {
        self.out_quant.iter().flatten().count()
    }
}

/// The output-channel axis of a layer's weight (Conv [Cout, Cin, k..], ConvTranspose
/// [Cin, Cout, k..], MatMul [K, N], Gemm [K, N] or [N, K] with transB).
pub fn weight_channel_axis(node: &Node) -> usize {
    match node.op_type.as_str() {
        "Conv" => 0,
        "Gemm" if node.attr().i64("transB", 0).unwrap_or(0) != 0 => 0,
        _ => 1,
    }
}

/// The axis of a layer's weight that runs over its input channels (what input equalization
/// divides): Conv [Cout, Cin, k..] 1, ConvTranspose [Cin, Cout, k..] 0, MatMul [K, N] 0, Gemm 0 or
/// 1 with transB. None for grouped convolutions (a channel multiplier would have to be shared
/// by the group's weights in a way this does not model).
pub fn weight_input_axis(node: &Node) -> Option<usize> {
    let ungrouped = node.attr().i64("group", 1).unwrap_or(1) == 1;
    match node.op_type.as_str() {
        "Conv" if ungrouped => Some(1),
        "ConvTranspose" if ungrouped => Some(0),
        "Gemm" if node.attr().i64("transB", 0).unwrap_or(0) != 0 => Some(1),
        "Conv" | "ConvTranspose" => None,
        _ => Some(0),
    }
}

/// The axis of a layer's activation input (of rank `rank`) that holds its input channels: 1 for
/// convolutions (NCHW), the last for MatMul and Gemm.
pub fn activation_channel_axis(node: &Node, rank: usize) -> usize {
    match node.op_type.as_str() {
        "Conv" | "ConvTranspose" => 1,
        _ => rank.saturating_sub(1),
    }
}

/// The INT8 weight of a layer under `lp`: the (BN-folded) float weight, divided along its input
/// axis by `lp.input_mul` when the layer is equalized, then quantized per output channel
/// (`quantize_weight`). The levels and scales both the simulation and `emit` use.
/// With `lp.weight_levels` (weight rounding) those levels replace round-to-nearest's, with the
/// same scales.
pub fn int8_weight(node: &Node, w: &Tensor, lp: &LayerPrecision) -> Result<(Vec<i8>, Vec<f32>)> {
    let axis = weight_channel_axis(node);
    let (q, scales) = match &lp.input_mul {
        None => quantize_weight(w, axis, lp.pow2_weights)?,
        Some(m) => quantize_weight(&equalized_weight(node, w, m)?, axis, lp.pow2_weights)?,
    };
    match &lp.weight_levels {
        None => Ok((q, scales)),
        Some(levels) if levels.len() == q.len() => Ok((levels.to_vec(), scales)),
        Some(levels) => Err(Error::graph(
            &node.name,
            format!("the rounded weight has {} levels but the weight {:?} has {}", levels.len(), w.shape, q.len()),
        )),
    }
}

/// The integer kernels' form of an INT8 layer (`int8conv`), for an ungrouped Conv or
/// ConvTranspose; `None` for other layers (they compute in f32 from the dequantized levels).
/// A ConvTranspose `[Cin, Cout, kh, kw]` becomes the 1x1 convolution to its `Cout * kh * kw`
/// columns, each with its output channel's scale.
fn int8_prep(
    node: &Node,
    shape: &[usize],
    q: &[i8],
    scales: &[f32],
    act_scale: f32,
    mul: Option<&[f32]>,
) -> Option<ConvPrep> {
    if node.attr().i64("group", 1).unwrap_or(1) != 1 || !int8_kernels_enabled() {
        return None;
    }
    match (node.op_type.as_str(), shape) {
        ("Conv", _) => Int8Conv::new(q, shape, scales, act_scale, mul),
        ("ConvTranspose", &[cin, cout, kh, kw]) => {
            let rows = cout * kh * kw;
            let mut qr = vec![0i8; rows * cin];
            for ci in 0..cin {
                for r in 0..rows {
                    qr[r * cin + ci] = q[ci * rows + r];
                }
            }
            let sr: Vec<f32> = (0..rows).map(|r| scales[r / (kh * kw)]).collect();
            Int8Conv::new(&qr, &[rows, cin, 1, 1], &sr, act_scale, mul)
        }
        _ => None,
    }
    .map(ConvPrep::Int8)
}

/// `PILLARQ_INT8_KERNELS=0` computes INT8 layers in f32 from the dequantized levels instead (the
/// simulation before the integer kernels), for comparisons.
fn int8_kernels_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("PILLARQ_INT8_KERNELS").map_or(true, |v| v != "0"))
}

/// `w` with its input channel `c` divided by `m[c]`.
pub fn equalized_weight(node: &Node, w: &Tensor, m: &[f32]) -> Result<Tensor> {
    let in_axis = weight_input_axis(node)
        .ok_or_else(|| Error::graph(&node.name, "input equalization of a grouped convolution is not supported"))?;
    let v = w.as_f32().ok_or_else(|| Error::Other(format!("weight must be float32, got {}", w.dtype())))?;
    let d = *w.shape.get(in_axis).ok_or_else(|| Error::graph(&node.name, "weight has no input axis"))?;
    if d != m.len() {
        return Err(Error::graph(
            &node.name,
            format!("input equalization has {} multipliers but the weight has {d} input channels", m.len()),
        ));
    }
    let inner = w.shape[in_axis + 1..].iter().product::<usize>().max(1);
    let out = v.iter().enumerate().map(|(i, &x)| x / m[(i / inner) % d]).collect();
    Ok(Tensor::f32(w.shape.clone(), out))
}

/// Per-output-channel symmetric INT8 of a weight tensor (symmetric max per channel along
/// `axis`): the levels and the scale of each channel. What an INT8 layer's weights become, in the
/// simulation and in the emitted ONNX. `pow2`: each scale rounded up to a power of two.
pub fn quantize_weight(w: &Tensor, axis: usize, pow2: bool) -> Result<(Vec<i8>, Vec<f32>)> {
    let v = w.as_f32().ok_or_else(|| Error::Other(format!("weight must be float32, got {}", w.dtype())))?;
    if axis >= w.shape.len() {
        return Err(Error::Other(format!("weight of shape {:?} has no axis {axis}", w.shape)));
    }
    let amax = per_channel_amax(v, &w.shape, axis).map_err(Error::Other)?;
    let scales: Vec<f32> = amax.iter().map(|a| if pow2 { pow2_ceil(a / 127.0) } else { a / 127.0 }).collect();
    let inner = w.shape[axis + 1..].iter().product::<usize>().max(1);
    let d = w.shape[axis];
    let q = v.iter().enumerate().map(|(i, &x)| quantize_i8(x, scales[(i / inner) % d])).collect();
    Ok((q, scales))
}

/// Per-output-channel symmetric fake quantization of a weight tensor: `quantize_weight`'s levels
/// times their channel's scale.
pub fn fake_quant_weight(w: &Tensor, axis: usize, pow2: bool) -> Result<Tensor> {
    let (q, scales) = quantize_weight(w, axis, pow2)?;
    Ok(dequantize_weight(&w.shape, axis, &q, &scales))
}

/// The float weight INT8 levels stand for: each level times its channel's scale along `axis`.
pub fn dequantize_weight(shape: &[usize], axis: usize, q: &[i8], scales: &[f32]) -> Tensor {
    let inner = shape[axis + 1..].iter().product::<usize>().max(1);
    let d = shape[axis];
    let out = q.iter().enumerate().map(|(i, &l)| l as f32 * scales[(i / inner) % d]).collect();
    Tensor::f32(shape.to_vec(), out)
}

pub use crate::numerics::{round_f16, round_f16_slice};

fn round_f16_tensor(t: &Tensor) -> Result<Tensor> {
    let v = t.as_f32().ok_or_else(|| Error::Other(format!("fp16 layers take float32 tensors, got {}", t.dtype())))?;
    let mut out = v.to_vec();
    round_f16_slice(&mut out);
    Ok(Tensor::f32(t.shape.clone(), out))
}

impl CpuExecutor {
    /// Index of the executor step that runs layer `name`.
    pub(crate) fn layer_step(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.node.name == name)
    }

    /// Compiles a resolved plan (`PrecisionPlan::resolve`) for this executor.
    pub fn compile_plan(&self, plan: &[LayerPrecision]) -> Result<CompiledPlan> {
        let mut steps = vec![StepPrecision::Fp32; self.steps.len()];
        let mut prep = vec![None; self.steps.len()];
        for lp in plan {
            let idx = match lp.precision {
                Precision::Fp32 => continue,
                _ => self.layer_step(&lp.name).ok_or_else(|| {
                    Error::graph(&lp.name, "the plan names this layer but the executor has no such step")
                })?,
            };
            let node = &self.steps[idx].node;
            let constant = |k: usize| -> Result<Arc<Tensor>> {
                self.step_constant(idx, k)
                    .ok_or_else(|| Error::graph(&lp.name, format!("input {k} of the layer is not a constant")))
            };
            let w = constant(1)?;
            steps[idx] = if lp.precision == Precision::Int8 {
                let amax = lp.act_amax.ok_or_else(|| Error::graph(&lp.name, "int8 layer without a scale"))?;
                let (q, scales) = int8_weight(node, &w, lp).map_err(|e| Error::graph(&lp.name, e.to_string()))?;
                let weight = Arc::new(dequantize_weight(&w.shape, weight_channel_axis(node), &q, &scales));
                let input_mul = match &lp.input_mul {
                    // The channel axis, with usize::MAX for the last one (the rank is known at run time).
                    Some(m) => {
                        let axis =
                            if matches!(node.op_type.as_str(), "Conv" | "ConvTranspose") { 1 } else { usize::MAX };
                        Some((m.clone(), axis))
                    }
                    None => None,
                };
                let bias = match &lp.bias {
                    Some(_) if node.input(2).is_none() => {
                        return Err(Error::graph(&lp.name, "the plan corrects the bias of a layer that has none"));
                    }
                    Some(b) => {
                        let channels = scales.len();
                        if b.len() != channels {
                            return Err(Error::graph(
                                &lp.name,
                                format!("the corrected bias has {} values for {channels} output channels", b.len()),
                            ));
                        }
                        Some(Arc::new(Tensor::f32(vec![channels], b.to_vec())))
                    }
                    None => None,
                };
                let act_scale = amax / 127.0;
                prep[idx] = int8_prep(node, &w.shape, &q, &scales, act_scale, lp.input_mul.as_deref()).map(Arc::new);
                StepPrecision::Int8 { act_scale, weight, input_mul, bias }
            } else {
                let bias = match node.input(2) {
                    Some(_) => Some(Arc::new(round_f16_tensor(&*constant(2)?)?)),
                    None => None,
                };
                let weight = Arc::new(round_f16_tensor(&w)?);
                if node.op_type == "Conv" {
                    prep[idx] = conv_prep_fp32(node, &weight).map(Arc::new);
                }
                StepPrecision::Fp16 { weight, bias }
            };
        }
        let out_quant = self.epilogue_quantization(&steps);
        Ok(CompiledPlan { steps, out_quant, prep })
    }

    /// The steps that quantize their output for INT8 readers in their epilogue: a Conv or
    /// ConvTranspose (not FP16: its output is rounded to f16 after the kernel) whose output is no
    /// graph output and is read only by INT8 layers of one activation scale, or only by a Concat
    /// whose output is read that way and whose every input qualifies likewise (the three heads
    /// reading the neck's concat of three deconvolutions). Readers then skip their own pass.
    fn epilogue_quantization(&self, steps: &[StepPrecision]) -> Vec<Option<f32>> {
        let readers = |s: usize| -> Vec<usize> {
            (0..self.steps.len()).filter(|&i| self.steps[i].inputs.contains(&Some(s))).collect()
        };
        let producer = |s: usize| self.steps.iter().position(|st| st.outputs.contains(&s));
        let fusable = |pi: usize| {
            let st = &self.steps[pi];
            matches!(st.node.op_type.as_str(), "Conv" | "ConvTranspose")
                && st.outputs.len() == 1
                && !matches!(steps[pi], StepPrecision::Fp16 { .. })
        };
        // The one scale at which every reader of `s` quantizes it as its activation input.
        let common_scale = |s: usize| -> Option<f32> {
            if self.output_slots.contains(&s) {
                return None;
            }
            let mut scale = None;
            for i in readers(s) {
                let st = &self.steps[i];
                let StepPrecision::Int8 { act_scale, input_mul: None, .. } = &steps[i] else { return None };
                if st.inputs.first() != Some(&Some(s)) || st.inputs.iter().filter(|x| **x == Some(s)).count() != 1 {
                    return None;
                }
                match scale {
                    None => scale = Some(*act_scale),
                    Some(v) if f32::to_bits(v) == act_scale.to_bits() => {}
                    Some(_) => return None,
                }
            }
            scale
        };
        let mut out = vec![None; self.steps.len()];
        for (j, p) in steps.iter().enumerate() {
            if !matches!(p, StepPrecision::Int8 { .. }) {
                continue;
            }
            let Some(s0) = self.steps[j].inputs.first().copied().flatten() else { continue };
            let (Some(scale), Some(pi)) = (common_scale(s0), producer(s0)) else { continue };
            if fusable(pi) {
                out[pi] = Some(scale);
            } else if self.steps[pi].node.op_type == "Concat" && self.steps[pi].outputs.len() == 1 {
                let parts: Option<Vec<usize>> = self.steps[pi]
                    .inputs
                    .iter()
                    .map(|c| {
                        let c = (*c)?;
                        let only_concat = !self.output_slots.contains(&c)
                            && readers(c) == [pi]
                            && self.steps[pi].inputs.iter().filter(|x| **x == Some(c)).count() == 1;
                        producer(c).filter(|&q| only_concat && fusable(q))
                    })
                    .collect();
                for q in parts.into_iter().flatten() {
                    out[q] = Some(scale);
                }
            }
        }
        out
    }

    /// Input `k` of step `idx` when it is a constant (initializer or folded value).
    fn step_constant(&self, idx: usize, k: usize) -> Option<Arc<Tensor>> {
        let slot = self.steps[idx].inputs.get(k).copied().flatten()?;
        self.constants.iter().find(|(c, _)| *c == slot).map(|(_, t)| t.clone())
    }
}

/// Applies the elementwise slice transform `f` to a float32 activation on the executor's
/// threads: in place when this step holds the only reference (its last reader, the usual case),
/// else chunk by chunk into a new tensor (a graph input, or a value read again later).
/// Elementwise, so the result does not depend on the split.
fn transform_activation(slot: &mut Option<Arc<Tensor>>, f: impl Fn(&mut [f32]) + Sync + Send) -> Result<()> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    let Some(arc) = slot.as_mut() else { return Ok(()) };
    if let Some(Tensor { data: Data::F32(v), .. }) = Arc::get_mut(arc) {
        v.par_chunks_mut(CHUNK).for_each(&f);
        return Ok(());
    }
    let src =
        arc.as_f32().ok_or_else(|| Error::Other(format!("expected a float32 activation, got {}", arc.dtype())))?;
    let mut out = vec![0f32; src.len()];
    out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(o, s)| {
        o.copy_from_slice(s);
        f(o);
    });
    *arc = Arc::new(Tensor::f32(arc.shape.clone(), out));
    Ok(())
}

/// The quantized activation of an equalized INT8 layer: `fake_quant(x * m[c], scale)` with `c`
/// the element's index along `axis`. A new tensor (the multiplication is not elementwise-uniform,
/// and the value may be shared); the result does not depend on the split.
fn equalize_activation(slot: &mut Option<Arc<Tensor>>, m: &[f32], axis: usize, scale: f32) -> Result<()> {
    let Some(arc) = slot.as_mut() else { return Ok(()) };
    let out = map_channels(arc, axis, m, |x| fake_quant(x, scale))?;
    *arc = Arc::new(Tensor::f32(arc.shape.clone(), out));
    Ok(())
}

/// `g(x * m[c])` for every element of `x`, `c` its index along `axis` (`usize::MAX`: the last
/// axis): input equalization's per-channel multiply, the one place its indexing lives.
/// Elementwise, so the result does not depend on the thread split.
pub fn map_channels(x: &Tensor, axis: usize, m: &[f32], g: impl Fn(f32) -> f32 + Sync + Send) -> Result<Vec<f32>> {
    use rayon::prelude::*;
    let src = x.as_f32().ok_or_else(|| Error::Other(format!("expected a float32 activation, got {}", x.dtype())))?;
    let axis = if axis == usize::MAX { x.shape.len().saturating_sub(1) } else { axis };
    let d = x.shape.get(axis).copied().unwrap_or(0);
    if d != m.len() {
        return Err(Error::Other(format!(
            "input equalization has {} multipliers but the activation {:?} has {d} channels on axis {axis}",
            m.len(),
            x.shape
        )));
    }
    let inner = x.shape[axis + 1..].iter().product::<usize>().max(1);
    let mut out = vec![0f32; src.len()];
    // Whole cycles of the channel axis (d runs of `inner` values), many per job.
    let cycle = (inner * d).max(1);
    let per_job = cycle * (1usize << 16).div_ceil(cycle);
    if inner < 64 {
        // Short runs (the pillar net's 10 channels are the last axis): the multipliers expanded
        // to whole cycles of about 1 Ki values, so the loop runs over long vectors.
        let span = cycle * 1024usize.div_ceil(cycle);
        let mrep: Vec<f32> = (0..span).map(|i| m[(i / inner) % d]).collect();
        out.par_chunks_mut(per_job).zip(src.par_chunks(per_job)).for_each(|(o, s)| {
            for (oc, sc) in o.chunks_mut(span).zip(s.chunks(span)) {
                oc.iter_mut().zip(sc).zip(&mrep).for_each(|((ov, &v), &mc)| *ov = g(v * mc));
            }
        });
        return Ok(out);
    }
    out.par_chunks_mut(per_job).zip(src.par_chunks(per_job)).for_each(|(o, s)| {
        for (oc, sc) in o.chunks_mut(cycle).zip(s.chunks(cycle)) {
            for ((orun, srun), &mc) in oc.chunks_mut(inner).zip(sc.chunks(inner)).zip(m) {
                orun.iter_mut().zip(srun).for_each(|(ov, &v)| *ov = g(v * mc));
            }
        }
    });
    Ok(out)
}

/// The activation transform of a step, as a key: two steps reading the same value with the same
/// key get the same transformed tensor (the three heads read one concat at one scale).
pub(crate) fn activation_key(p: &StepPrecision) -> Option<u64> {
    match p {
        StepPrecision::Fp32 => None,
        StepPrecision::Int8 { act_scale, input_mul: None, .. } => Some(act_scale.to_bits() as u64),
        // Equalized: the multipliers are part of the transform (FNV-1a of their bits).
        StepPrecision::Int8 { act_scale, input_mul: Some((m, axis)), .. } => {
            let h = m.iter().fold(0xcbf2_9ce4_8422_2325u64 ^ *axis as u64, |h, x| {
                (h ^ x.to_bits() as u64).wrapping_mul(0x0100_0000_01b3)
            });
            Some((h << 32) ^ (h >> 32) ^ act_scale.to_bits() as u64 | 1 << 63)
        }
        StepPrecision::Fp16 { .. } => Some(1 << 40),
    }
}

/// Applies a step's precision to its inputs before the kernel runs. `act_done`: input 0 is
/// already transformed (shared from another reader, or f16 values already).
pub(crate) fn transform_inputs(p: &StepPrecision, ins: &mut [Option<Arc<Tensor>>], act_done: bool) -> Result<()> {
    match p {
        StepPrecision::Fp32 => {}
        StepPrecision::Int8 { act_scale, weight, input_mul, bias } => {
            let s = *act_scale;
            if !act_done {
                match input_mul {
                    None => transform_activation(&mut ins[0], |v| fake_quant_slice(v, s))?,
                    Some((m, axis)) => equalize_activation(&mut ins[0], m, *axis, s)?,
                }
            }
            ins[1] = Some(weight.clone());
            if let Some(b) = bias {
                let slot =
                    ins.get_mut(2).ok_or_else(|| Error::Other("a corrected bias for a layer without bias".into()))?;
                *slot = Some(b.clone());
            }
        }
        StepPrecision::Fp16 { weight, bias } => {
            if !act_done {
                transform_activation(&mut ins[0], super::kernels::best().round_f16)?;
            }
            ins[1] = Some(weight.clone());
            if let Some(b) = bias {
                ins[2] = Some(b.clone());
            }
        }
    }
    Ok(())
}

/// Applies a step's precision to its outputs (FP16 layers write f16).
pub(crate) fn transform_outputs(p: &StepPrecision, outs: &mut [Tensor]) {
    if let StepPrecision::Fp16 { .. } = p {
        for t in outs {
            if let Data::F32(v) = &mut t.data {
                use rayon::prelude::*;
                let round = super::kernels::best().round_f16;
                v.par_chunks_mut(1 << 16).for_each(round);
            }
        }
    }
}

impl CpuExecutor {
    /// The activation input edge and the (fused) output edge of layer `name` in the prepared
    /// graph: what INT8 quantizes per tensor, and where its error first shows.
    pub fn layer_edges(&self, name: &str) -> Option<(&str, &str)> {
        let st = &self.steps[self.layer_step(name)?];
        Some((st.node.inputs.first()?.as_str(), st.node.outputs.first()?.as_str()))
    }
}

impl CpuExecutor {
    /// The prepared node of layer `name` and its (BN-folded) constant weight.
    pub fn layer_weight(&self, name: &str) -> Option<(&Node, Arc<Tensor>)> {
        let idx = self.layer_step(name)?;
        Some((&self.steps[idx].node, self.step_constant(idx, 1)?))
    }

    /// The (BN-folded) constant bias of layer `name`, if it has one.
    pub fn layer_bias(&self, name: &str) -> Option<Arc<Tensor>> {
        self.step_constant(self.layer_step(name)?, 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pointpillars::SplitMix64;

    /// `map_channels` against its definition, on the short-run path (channels last, or few
    /// values per channel run) and the long-run one.
    #[test]
    fn map_channels_multiplies_each_channel() {
        let mut rng = SplitMix64::new(8);
        for (shape, axis) in
            [(vec![301, 32, 10], usize::MAX), (vec![2, 3, 5, 7], 1), (vec![2, 6, 9, 13], 1), (vec![3, 4], 0)]
        {
            let n: usize = shape.iter().product();
            let x = Tensor::f32(shape.clone(), (0..n).map(|_| rng.unit() * 4.0 - 2.0).collect());
            let ax = if axis == usize::MAX { shape.len() - 1 } else { axis };
            let d = shape[ax];
            let inner: usize = shape[ax + 1..].iter().product();
            let m: Vec<f32> = (0..d).map(|c| 0.5 + c as f32 * 0.125).collect();
            let got = map_channels(&x, axis, &m, |v| fake_quant(v, 0.03)).unwrap();
            let xv = x.as_f32().unwrap();
            for (i, (&g, &v)) in got.iter().zip(xv).enumerate() {
                let want = fake_quant(v * m[(i / inner) % d], 0.03);
                assert_eq!(g.to_bits(), want.to_bits(), "shape {shape:?} axis {axis}: element {i}");
            }
        }
    }
}
