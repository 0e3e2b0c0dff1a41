//! PTQ refinement (issue 14, `quant::recipe`): once the calibrator has chosen every layer's
//! threshold, the calibration frames are run again to adjust what INT8 does to each layer, with
//! the result kept in the calibration (`Calibration::layers`, `Calibration::activations`) so
//! that every plan, `emit` and onnxruntime compute the same function.
//!
//! Every step looks at one layer at a time in INT8 with the rest of the network in FP32, so a
//! refined calibration serves any plan (sensitivity sweeps one layer at a time, search mixes).
//!
//! - `equalize`: the pillar feature net's ten point features share one per-tensor scale, so the
//!   centimetre offsets round away under coordinates of tens of metres. The layer reads
//!   `x[c] * m[c]` and its weight row `c` is divided by `m[c]` (the same function in real
//!   arithmetic; `emit` writes the Mul in front of the QuantizeLinear). `m[c] = (A / a[c])^alpha`
//!   with `a[c]` the feature's largest |x| over the calibration frames and `A` the largest of
//!   them; alpha from {0, 0.5, 0.75, 1} (0 is no equalization) by the task loss below, and the
//!   threshold of the equalized input calibrated again with the method.
//! - `thresholds`: each layer's threshold from a grid of factors around the calibrator's
//!   (`FACTORS`, at most the largest |x| observed), chosen by the task loss. For an equalized
//!   layer the grid is alpha x factors.
//! - `rounding`: each layer's INT8 weight levels by GPTQ (`gptq_levels`) on the second moments
//!   of its FP32 input at positions the points reach, instead of round-to-nearest; the
//!   per-channel scales stay the symmetric max (what TensorRT consumes unchanged).
//! - `bias`: per output channel, the mean over the calibration frames (positions points reach) of the
//!   layer's pre-activation output in INT8 (its final threshold, equalization and rounding) minus
//!   FP32, taken out of the float32 bias.
//!
//! The task loss of a candidate (`TaskLoss`) compares a frame's head outputs with the layer in
//! INT8 against FP32 on the anchors where either scores at or above the detection threshold;
//! each candidate costs the layer's downstream pass (`CpuExecutor::run_from` on the frame's FP32
//! state). Ties keep the calibrator's value (candidates are tried in an order that puts it
//! first).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::calib::{calibrate_amax, fake_quant, CalibMethod, Histogram};
use super::calibrate::bits;
use super::calibrate::{LayerHistograms, Observers};
use super::plan::{Calibration, LayerRefinement};
use super::recipe::Recipe;
use crate::error::{Error, Result};
use crate::exec::cpu::precision::{
    activation_channel_axis, dequantize_weight, int8_weight, map_channels, weight_channel_axis,
};
use crate::exec::cpu::{eval_node, CpuExecutor, FrameState};
use crate::exec::NamedTensors;
use crate::graph::fold::PILLAR_MAX_MATMUL;
use crate::graph::layers::Layer;
use crate::graph::{Activation, Node};
use crate::precision::{LayerPrecision, Precision};
use crate::tensor::Tensor;

/// Threshold factors tried around the calibrator's value, the calibrator's first.
pub const FACTORS: &[f32] = &[1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1, 1.25, 1.5, 2.0, 3.0];

/// Equalization strengths tried, none first.
pub const ALPHAS: &[f32] = &[0.0, 0.5, 0.75, 1.0];

/// The task a refinement step preserves: a frame's FP32 outputs become a reference that scores
/// a quantized run of the same frame (lower is better).
pub trait TaskLoss {
    fn reference<'s>(&'s self, fp32: &NamedTensors) -> Result<FrameLoss<'s>>;
}

/// A frame's reference: the loss of a quantized run's outputs.
pub type FrameLoss<'s> = Box<dyn Fn(&NamedTensors) -> Result<f64> + 's>;

/// What refinement did, for the calibration file and the docs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RefineReport {
    /// Wall time of each step, seconds (`equalize+thresholds` share one pass).
    pub seconds: BTreeMap<String, f64>,
    /// Per layer: what was chosen.
    pub layers: BTreeMap<String, LayerChoice>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LayerChoice {
    /// Equalization strength (absent: the layer is not equalized).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f32>,
    /// The chosen threshold over the calibrator's (for the equalized input: over the one
    /// calibrated for that alpha).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f32>,
    /// Task loss of the calibrator's threshold and of the chosen one, summed over the frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_before: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_after: Option<f64>,
    /// Weight rounding: the output error of rounded weights over that of round-to-nearest, held
    /// out (levels fitted on the even calibration frames, error on the odd ones; below 1 is
    /// better, and only then are the layer's weights rounded, fitted on all frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounding_error_ratio: Option<f64>,
    /// Largest |bias change| of bias correction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias_shift: Option<f32>,
}

/// What refinement works on.
pub struct Refine<'a> {
    pub exec: &'a CpuExecutor,
    pub layers: &'a [Layer],
    pub observers: &'a Observers,
    /// The histograms the calibration was made from (largest |x| of each layer input).
    pub histograms: &'a LayerHistograms,
    pub method: CalibMethod,
    pub task: &'a dyn TaskLoss,
    /// The calibration frames' inputs, by index.
    pub frame: &'a dyn Fn(usize) -> Result<NamedTensors>,
    pub frames: usize,
    /// Called once per frame of each pass, with the pass's name.
    pub progress: &'a dyn Fn(&str, usize, usize),
    /// The inputs of an empty scene (no point): weight rounding samples the positions where a
    /// layer's input differs from it. None: every position.
    pub empty: Option<&'a NamedTensors>,
}

/// One candidate of one layer: its threshold and equalization.
#[derive(Clone)]
struct Candidate {
    amax: f32,
    alpha: f32,
    factor: f32,
    input_mul: Option<Arc<[f32]>>,
}

impl Refine<'_> {
    /// The calibration `base` refined by the recipe's steps (none of them: `base` unchanged).
    pub fn run(&self, base: Calibration, recipe: Recipe) -> Result<(Calibration, RefineReport)> {
        let mut cal = base;
        let mut report = RefineReport::default();
        if recipe.equalize || recipe.thresholds {
            let t = Instant::now();
            self.search(&mut cal, recipe, &mut report)?;
            let name = match (recipe.equalize, recipe.thresholds) {
                (true, true) => "equalize+thresholds",
                (true, false) => "equalize",
                _ => "thresholds",
            };
            report.seconds.insert(name.into(), t.elapsed().as_secs_f64());
        }
        // The empty scene's FP32 values: where rounding samples and bias correction averages.
        let empty = match self.empty.filter(|_| recipe.rounding || recipe.bias) {
            Some(e) => Some(self.exec.run_keep(e)?),
            None => None,
        };
        if recipe.rounding {
            let t = Instant::now();
            self.round_weights(&mut cal, &mut report, empty.as_ref())?;
            report.seconds.insert("rounding".into(), t.elapsed().as_secs_f64());
        }
        if recipe.bias {
            let t = Instant::now();
            self.correct_bias(&mut cal, &mut report, empty.as_ref())?;
            report.seconds.insert("bias".into(), t.elapsed().as_secs_f64());
        }
        cal.recipe = if recipe.is_none() { String::new() } else { recipe.to_string() };
        cal.validate().map_err(|e| Error::Other(format!("refinement made an unusable calibration: {e}")))?;
        Ok((cal, report))
    }

    /// The layers input equalization applies to: the pillar feature net's (a MatMul over the
    /// point features, fused with its max over points or not).
    fn equalizable(&self, l: &Layer) -> bool {
        self.exec
            .layer_weight(&l.name)
            .is_some_and(|(n, _)| n.op_type == PILLAR_MAX_MATMUL || (n.op_type == "MatMul" && l.index == 0))
    }

    fn observed_max(&self, layer: &str) -> Option<f32> {
        self.histograms.layers.iter().find(|h| h.layer == layer).map(|h| h.input_hist.amax_observed())
    }

    /// Equalization and threshold search: candidates per layer, one pass over the frames.
    fn search(&self, cal: &mut Calibration, recipe: Recipe, report: &mut RefineReport) -> Result<()> {
        let mut cands: Vec<(usize, Vec<Candidate>)> = Vec::new();
        for (k, l) in self.layers.iter().enumerate() {
            let Some(base) = cal.activations.get(&l.name).map(|a| a.amax) else { continue };
            let mut per_alpha = vec![(0.0f32, None, base, self.observed_max(&l.name).unwrap_or(base))];
            if recipe.equalize && self.equalizable(l) {
                per_alpha.extend(self.equalization_candidates(k, l)?);
            }
            let factors: &[f32] = if recipe.thresholds { FACTORS } else { &[1.0] };
            let mut list = vec![];
            for (alpha, m, amax, observed) in per_alpha {
                for &f in factors {
                    let a = if cal.pow2_scales { super::calib::pow2_amax(amax * f) } else { amax * f };
                    let seen = list.iter().any(|c: &Candidate| c.alpha == alpha && c.amax == a);
                    let base = f == 1.0 && m.is_none();
                    if seen || super::plan::amax_problem(a).is_some() || (!base && f != 1.0 && a > observed) {
                        continue;
                    }
                    list.push(Candidate { amax: a, alpha, factor: f, input_mul: m.clone() });
                }
            }
            if list.len() > 1 {
                cands.push((k, list));
            }
        }
        if cands.is_empty() {
            return Ok(());
        }
        let plans = cands
            .iter()
            .map(|(k, list)| {
                list.iter()
                    .map(|c| {
                        let mut lp = LayerPrecision::plain(&self.layers[*k].name, Precision::Int8, Some(c.amax), false);
                        lp.pow2_weights = cal.pow2_scales;
                        lp.input_mul = c.input_mul.clone();
                        self.exec.compile_plan(&[lp])
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let mut loss: Vec<Vec<f64>> = cands.iter().map(|(_, l)| vec![0.0; l.len()]).collect();
        for f in 0..self.frames {
            let inputs = (self.frame)(f)?;
            let state = self.exec.run_keep(&inputs)?;
            let reference = self.task.reference(&self.exec.outputs_of(&state)?)?;
            for (li, layer_plans) in plans.iter().enumerate() {
                for (ci, plan) in layer_plans.iter().enumerate() {
                    let out = self.exec.outputs(self.exec.run_from(&state, plan, false)?)?;
                    loss[li][ci] += reference(&out)?;
                }
            }
            (self.progress)("search", f + 1, self.frames);
        }
        for ((k, list), losses) in cands.iter().zip(&loss) {
            let l = &self.layers[*k];
            // First minimum: the calibrator's own value wins ties.
            let best = (0..list.len()).fold(0, |b, i| if losses[i] < losses[b] { i } else { b });
            let c = &list[best];
            if let Some(a) = cal.activations.get_mut(&l.name) {
                a.amax = c.amax;
            }
            let entry = cal.layers.entry(l.name.clone()).or_default();
            entry.input_mul = c.input_mul.as_deref().map(<[f32]>::to_vec).unwrap_or_default();
            report.layers.insert(
                l.name.clone(),
                LayerChoice {
                    alpha: c.input_mul.is_some().then_some(c.alpha),
                    factor: Some(c.factor),
                    loss_before: Some(losses[0]),
                    loss_after: Some(losses[best]),
                    ..Default::default()
                },
            );
        }
        cal.layers.retain(|_, r| *r != LayerRefinement::default());
        Ok(())
    }

    /// For each alpha > 0: the multipliers, the threshold the method gives the equalized input
    /// and that input's largest |x|.
    #[allow(clippy::type_complexity)]
    fn equalization_candidates(&self, k: usize, l: &Layer) -> Result<Vec<(f32, Option<Arc<[f32]>>, f32, f32)>> {
        let (edge, _) =
            self.exec.layer_edges(&l.name).ok_or_else(|| Error::graph(&l.name, "layer not in the prepared graph"))?;
        let edge = edge.to_string();
        let mut xs = Vec::with_capacity(self.frames);
        let mut amax: Vec<f32> = vec![];
        for f in 0..self.frames {
            let inputs = (self.frame)(f)?;
            let x = match inputs.iter().find(|(n, _)| *n == edge) {
                Some((_, t)) => t.clone(),
                None => {
                    let state = self.exec.run_keep(&inputs)?;
                    self.exec.value(&state, &edge).cloned().ok_or_else(|| Error::graph(&edge, "edge has no value"))?
                }
            };
            let v = x.as_f32().ok_or_else(|| Error::graph(&edge, "equalized input must be float32"))?;
            let c = *x.shape.last().unwrap_or(&0);
            if c == 0 {
                return Ok(vec![]);
            }
            amax.resize(c, 0.0);
            for row in v.chunks_exact(c) {
                for (a, &x) in amax.iter_mut().zip(row) {
                    *a = a.max(x.abs());
                }
            }
            xs.push(x);
            (self.progress)("equalize", f + 1, self.frames);
        }
        let top = amax.iter().copied().fold(0.0f32, f32::max);
        if top == 0.0 || !top.is_finite() {
            return Ok(vec![]);
        }
        let mut out = vec![];
        for &alpha in ALPHAS.iter().filter(|&&a| a > 0.0) {
            let m: Arc<[f32]> = amax
                .iter()
                // At most 2^16: a feature that is almost always zero must not blow its weights up.
                .map(|&a| if a > 0.0 { (top as f64 / a as f64).powf(alpha as f64).min(65536.0) as f32 } else { 1.0 })
                .collect::<Vec<_>>()
                .into();
            let mut h = Histogram::new();
            for x in &xs {
                let scaled = map_channels(x, usize::MAX, &m, |v| v)?;
                h.merge(&self.observers.input_histogram(k, &Tensor::f32(x.shape.clone(), scaled))?);
            }
            let a = calibrate_amax(&h, &self.method);
            out.push((alpha, Some(m), a, h.amax_observed()));
        }
        Ok(out)
    }

    /// Weight rounding (GPTQ, `gptq_levels`) of every layer with a threshold, on the second
    /// moments of its (equalized) FP32 input at up to `ROUNDING_ROWS` positions where the input
    /// differs from the empty scene's, across the frames. Kept where it lowers the output error
    /// below round-to-nearest's on frames it was not fitted on.
    fn round_weights(
        &self,
        cal: &mut Calibration,
        report: &mut RefineReport,
        empty_state: Option<&FrameState>,
    ) -> Result<()> {
        use crate::exec::cpu::gemm::{sgemm, MatRef};
        use crate::exec::cpu::precision::{equalized_weight, quantize_weight};
        struct Acc {
            name: String,
            edge: String,
            /// The layer's (fused) output edge: its spatial size is the convolution's.
            out: String,
            node: Node,
            /// The weight the levels are for (equalized where the layer is).
            weight: Tensor,
            input_mul: Option<Vec<f32>>,
            rows: WeightRows,
            /// Second moments of the even and the odd frames' inputs, and their row counts.
            h: [Vec<f32>; 2],
            count: [usize; 2],
        }
        let mut accs = vec![];
        for l in self.layers {
            if !cal.activations.contains_key(&l.name) {
                continue;
            }
            let (node, w) = self.exec.layer_weight(&l.name).ok_or_else(|| Error::graph(&l.name, "no weight"))?;
            let input_mul = cal.layers.get(&l.name).map(|r| r.input_mul.clone()).filter(|m| !m.is_empty());
            let weight = match &input_mul {
                Some(m) => equalized_weight(node, &w, m)?,
                None => (*w).clone(),
            };
            let rows = match WeightRows::of(node, &weight) {
                Ok(r) if r.k <= MAX_ROUNDING_INPUTS => r,
                Ok(r) => {
                    tracing::warn!(
                        "{}: {} inputs per output; weight rounding skipped (at most {MAX_ROUNDING_INPUTS})",
                        l.name,
                        r.k
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!("{}: weight rounding skipped: {e}", l.name);
                    continue;
                }
            };
            let (edge, out) = self.exec.layer_edges(&l.name).ok_or_else(|| Error::graph(&l.name, "no layer"))?;
            let k = rows.k;
            accs.push(Acc {
                name: l.name.clone(),
                edge: edge.to_string(),
                out: out.to_string(),
                node: node.clone(),
                weight,
                input_mul,
                rows,
                h: [vec![0.0; k * k], vec![0.0; k * k]],
                count: [0, 0],
            });
        }
        let per_frame = ROUNDING_ROWS.div_ceil(self.frames.max(1));
        let scaled = |node: &Node, x: &Tensor, m: &Option<Vec<f32>>| -> Result<Tensor> {
            Ok(match m {
                Some(m) => {
                    let axis = activation_channel_axis(node, x.shape.len());
                    Tensor::f32(x.shape.clone(), map_channels(x, axis, m, |v| v)?)
                }
                None => x.clone(),
            })
        };
        for f in 0..self.frames {
            let inputs = (self.frame)(f)?;
            let state = self.exec.run_keep(&inputs)?;
            for acc in &mut accs {
                let x = self.exec.value(&state, &acc.edge).ok_or_else(|| Error::graph(&acc.edge, "no value"))?;
                let x = scaled(&acc.node, x, &acc.input_mul)?;
                let e = match empty_state.and_then(|s| self.exec.value(s, &acc.edge)) {
                    Some(e) => Some(scaled(&acc.node, e, &acc.input_mul)?),
                    None => None,
                };
                let out = self.exec.value(&state, &acc.out).ok_or_else(|| Error::graph(&acc.out, "no value"))?;
                let out_hw = match out.shape[..] {
                    [_, _, h, w] => (h, w),
                    _ => (0, 0),
                };
                let (u, r) = input_rows(&acc.node, &acc.weight, &x, e.as_ref(), per_frame, out_hw)?;
                let k = acc.rows.k;
                if r > 0 && u.len() == r * k {
                    sgemm(k, k, r, MatRef::transposed(&u, k), MatRef::rows(&u, k), &mut acc.h[f % 2], k, true);
                    acc.count[f % 2] += r;
                }
            }
            (self.progress)("rounding", f + 1, self.frames);
        }
        for acc in accs {
            let (k, count) = (acc.rows.k, acc.rows.count);
            if acc.count[0] == 0 {
                continue;
            }
            let moments = |parts: &[usize]| -> Vec<f64> {
                let n: usize = parts.iter().map(|&p| acc.count[p]).sum();
                (0..k * k).map(|i| parts.iter().map(|&p| acc.h[p][i] as f64).sum::<f64>() / n.max(1) as f64).collect()
            };
            let axis = weight_channel_axis(&acc.node);
            let (rtn, scales) = quantize_weight(&acc.weight, axis, cal.pow2_scales)?;
            let rtn_rows: Vec<i8> = acc.rows.index.iter().map(|&i| rtn[i]).collect();
            let row_scales: Vec<f32> = acc.rows.channel.iter().map(|&c| scales[c]).collect();
            let w = &acc.rows.rows;
            let error = |q: &[i8], h: &[f64]| reconstruction_error(w, count, k, q, &row_scales, h);
            // Held out: levels fitted on the even frames, scored on the odd ones (one frame: on
            // itself). Kept only where they beat round-to-nearest there.
            let (fit, test) =
                if acc.count[1] > 0 { (moments(&[0]), moments(&[1])) } else { (moments(&[0]), moments(&[0])) };
            let Some(q_fit) = gptq_levels(w, count, k, &row_scales, &fit) else { continue };
            let ratio = {
                let before = error(&rtn_rows, &test);
                if before > 0.0 {
                    error(&q_fit, &test) / before
                } else {
                    1.0
                }
            };
            report.layers.entry(acc.name.clone()).or_default().rounding_error_ratio = Some(ratio);
            if ratio < 1.0 {
                let all = moments(&[0, 1]);
                if let Some(q) = gptq_levels(w, count, k, &row_scales, &all) {
                    cal.layers.entry(acc.name).or_default().set_weight_levels(&acc.rows.to_weight(&q));
                }
            }
        }
        Ok(())
    }

    /// Bias correction of every layer with a threshold and a bias, under its final threshold
    /// and equalization.
    fn correct_bias(
        &self,
        cal: &mut Calibration,
        report: &mut RefineReport,
        empty_state: Option<&FrameState>,
    ) -> Result<()> {
        struct Acc {
            name: String,
            lp: LayerPrecision,
            sum: Vec<f64>,
            count: f64,
            /// The layer's FP32 pre-activation output on the empty scene (convolutions).
            empty: Option<Tensor>,
        }
        let mut accs = vec![];
        for l in self.layers {
            let Some(a) = cal.activations.get(&l.name) else { continue };
            if self.exec.layer_bias(&l.name).is_none() {
                continue;
            }
            // Conv, ConvTranspose and the pillar net's MatMul (a Gemm's transposed weight is not
            // modelled here).
            let op = self.exec.layer_weight(&l.name).map(|(n, _)| n.op_type.clone()).unwrap_or_default();
            if !matches!(op.as_str(), "Conv" | "ConvTranspose" | "MatMul" | PILLAR_MAX_MATMUL) {
                tracing::warn!("{}: bias correction skipped ({op})", l.name);
                continue;
            }
            let mut lp = LayerPrecision::plain(&l.name, Precision::Int8, Some(a.amax), cal.pow2_scales);
            if let Some(r) = cal.layers.get(&l.name) {
                r.apply(&mut lp).map_err(|e| Error::graph(&l.name, e))?;
            }
            let empty = match empty_state {
                Some(st) => self.empty_output(&l.name, st)?,
                None => None,
            };
            accs.push(Acc { name: l.name.clone(), lp, sum: vec![], count: 0.0, empty });
        }
        for f in 0..self.frames {
            let inputs = (self.frame)(f)?;
            let state = self.exec.run_keep(&inputs)?;
            for acc in &mut accs {
                let (edge, _) = self.exec.layer_edges(&acc.name).ok_or_else(|| Error::graph(&acc.name, "no layer"))?;
                let x = self.exec.value(&state, edge).ok_or_else(|| Error::graph(edge, "edge has no value"))?;
                let (sum, count) = self.mean_error(&acc.lp, x, acc.empty.as_ref())?;
                if acc.sum.is_empty() {
                    acc.sum = vec![0.0; sum.len()];
                }
                for (a, s) in acc.sum.iter_mut().zip(sum) {
                    *a += s;
                }
                acc.count += count;
            }
            (self.progress)("bias", f + 1, self.frames);
        }
        for acc in accs {
            let Some(b) = self.exec.layer_bias(&acc.name) else { continue };
            let bv = b.as_f32().ok_or_else(|| Error::graph(&acc.name, "bias must be float32"))?;
            if acc.count == 0.0 || acc.sum.len() != bv.len() {
                continue;
            }
            let corrected: Vec<f32> =
                bv.iter().zip(&acc.sum).map(|(&b, &s)| (b as f64 - s / acc.count) as f32).collect();
            let shift = bv.iter().zip(&corrected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            cal.layers.entry(acc.name.clone()).or_default().bias = corrected;
            report.layers.entry(acc.name).or_default().bias_shift = Some(shift);
        }
        Ok(())
    }

    /// A convolution's FP32 pre-activation output in the empty-scene state `st` (None for other
    /// layers).
    fn empty_output(&self, name: &str, st: &FrameState) -> Result<Option<Tensor>> {
        let (node, w) = self.exec.layer_weight(name).ok_or_else(|| Error::graph(name, "no weight"))?;
        if !matches!(node.op_type.as_str(), "Conv" | "ConvTranspose") {
            return Ok(None);
        }
        let (edge, _) = self.exec.layer_edges(name).ok_or_else(|| Error::graph(name, "no layer"))?;
        let Some(x) = self.exec.value(st, edge) else { return Ok(None) };
        let mut plain: Node = node.clone();
        plain.activation = Activation::None;
        let b = self.exec.layer_bias(name);
        Ok(eval_node(&plain, vec![Some(Arc::new(x.clone())), Some(w), b])?.pop())
    }

    /// Per output channel: the sum of (INT8 - FP32) pre-activation output of layer `lp` on input
    /// `x` over the positions the points reach, and the number of those positions. For a
    /// convolution those are where its FP32 output differs from `empty`'s (the empty scene's; all
    /// positions without it); for a MatMul the rows with a non-zero feature. Empty ground is left
    /// out: its error is one constant the bias would otherwise chase.
    fn mean_error(&self, lp: &LayerPrecision, x: &Tensor, empty: Option<&Tensor>) -> Result<(Vec<f64>, f64)> {
        let (node, w) = self.exec.layer_weight(&lp.name).ok_or_else(|| Error::graph(&lp.name, "no weight"))?;
        let (q, scales) = int8_weight(node, &w, lp)?;
        let wq = dequantize_weight(&w.shape, weight_channel_axis(node), &q, &scales);
        let s = lp.act_amax.unwrap_or(1.0) / 127.0;
        let xv = x.as_f32().ok_or_else(|| Error::graph(&lp.name, "input must be float32"))?;
        let xq: Vec<f32> = match &lp.input_mul {
            None => xv.iter().map(|&v| fake_quant(v, s)).collect(),
            Some(m) => map_channels(x, activation_channel_axis(node, x.shape.len()), m, |v| fake_quant(v, s))?,
        };
        match node.op_type.as_str() {
            "Conv" | "ConvTranspose" => {
                let mut plain: Node = node.clone();
                plain.activation = Activation::None;
                let b = self.exec.layer_bias(&lp.name);
                let run = |x: Tensor, w: Tensor| -> Result<Tensor> {
                    let mut out = eval_node(&plain, vec![Some(Arc::new(x)), Some(Arc::new(w)), b.clone()])?;
                    out.pop().ok_or_else(|| Error::graph(&lp.name, "no output"))
                };
                let yf = run(x.clone(), (*w).clone())?;
                let yq = run(Tensor::f32(x.shape.clone(), xq), wq)?;
                let (a, b) = (yf.as_f32().unwrap_or(&[]), yq.as_f32().unwrap_or(&[]));
                let c = yf.shape.get(1).copied().unwrap_or(0).max(1);
                let inner = yf.shape[2..].iter().product::<usize>().max(1);
                let batches = a.len() / (c * inner).max(1);
                let e = empty.and_then(|e| e.as_f32().filter(|v| v.len() == a.len()));
                // Occupied output positions, per batch item.
                let occupied: Vec<bool> = (0..batches * inner)
                    .map(|bp| {
                        let (bi, p) = (bp / inner, bp % inner);
                        e.is_none_or(|e| {
                            (0..c).any(|ch| {
                                let i = (bi * c + ch) * inner + p;
                                bits(a[i]) != bits(e[i])
                            })
                        })
                    })
                    .collect();
                let mut sum = vec![0.0f64; c];
                for (i, (fa, qb)) in a.chunks(inner).zip(b.chunks(inner)).enumerate() {
                    let mask = &occupied[(i / c) * inner..(i / c + 1) * inner];
                    sum[i % c] += qb
                        .iter()
                        .zip(fa)
                        .zip(mask)
                        .filter(|(_, &m)| m)
                        .map(|((&q, &f), _)| q as f64 - f as f64)
                        .sum::<f64>();
                }
                Ok((sum, occupied.iter().filter(|&&m| m).count() as f64))
            }
            _ => {
                // MatMul (fused with the max over points or not): linear in x, so the mean error
                // is mean(Q(x m)) Wq - mean(x) W over the points (rows with a non-zero feature).
                let k = *x.shape.last().unwrap_or(&0);
                if k == 0 || w.shape.len() != 2 || w.shape[0] != k {
                    return Err(Error::graph(&lp.name, "bias correction needs a [K, N] weight"));
                }
                let n = w.shape[1];
                let (mut mx, mut mq, mut rows) = (vec![0.0f64; k], vec![0.0f64; k], 0.0f64);
                for (r, rq) in xv.chunks_exact(k).zip(xq.chunks_exact(k)) {
                    if r.iter().all(|&v| v == 0.0) {
                        continue;
                    }
                    rows += 1.0;
                    for i in 0..k {
                        mx[i] += r[i] as f64;
                        mq[i] += rq[i] as f64;
                    }
                }
                let wf = w.as_f32().unwrap_or(&[]);
                let wqv = wq.as_f32().unwrap_or(&[]);
                let sum = (0..n)
                    .map(|j| (0..k).map(|i| mq[i] * wqv[i * n + j] as f64 - mx[i] * wf[i * n + j] as f64).sum())
                    .collect();
                Ok((sum, rows))
            }
        }
    }
}

/// Rows of layer inputs gathered per layer for weight rounding, at most.
pub const ROUNDING_ROWS: usize = 8192;

/// Inputs per output element above which weight rounding skips a layer (its K^3 factorization
/// would dominate the calibration): 512 channels of a 3x3 convolution.
pub const MAX_ROUNDING_INPUTS: usize = 4608;

/// A layer's weight seen as one row per output channel over its `k` inputs (the inputs one
/// output element reads: (input channel, kernel tap) for convolutions, the features for MatMul).
struct WeightRows {
    /// Row-major [count, k].
    rows: Vec<f64>,
    /// Number of rows (output channels; for a non-overlapping ConvTranspose, output channel x
    /// kernel tap).
    count: usize,
    k: usize,
    /// Position in the weight tensor of row element (r, j).
    index: Vec<usize>,
    /// Output channel of each row (its weight scale).
    channel: Vec<usize>,
}

/// A ConvTranspose whose taps never overlap (kernel = stride, no padding or dilation): each
/// output pixel reads one input pixel through one tap, so each tap is a 1x1 convolution of its
/// own and the inputs are the input pixels (PointPillars' upsampling deblocks).
fn disjoint_taps(node: &Node, w: &Tensor) -> bool {
    let a = node.attr();
    let ints = |n: &str| a.ints_opt(n).ok().flatten();
    node.op_type == "ConvTranspose"
        && w.shape.len() == 4
        && a.i64("group", 1).unwrap_or(1) == 1
        && ints("strides").is_some_and(|s| s.len() == 2 && s[0] == w.shape[2] as i64 && s[1] == w.shape[3] as i64)
        && ints("pads").is_none_or(|p| p.iter().all(|&v| v == 0))
        && ints("dilations").is_none_or(|d| d.iter().all(|&v| v == 1))
        && ints("output_padding").is_none_or(|d| d.iter().all(|&v| v == 0))
}

impl WeightRows {
    fn of(node: &Node, w: &Tensor) -> Result<WeightRows> {
        let v = w.as_f32().ok_or_else(|| Error::graph(&node.name, "weight must be float32"))?;
        let s = &w.shape;
        if disjoint_taps(node, w) {
            let (ci, co, taps) = (s[0], s[1], s[2] * s[3]);
            // Row (o, t) over input channels c: w[c, o, t].
            let index: Vec<usize> =
                (0..co * taps * ci).map(|i| ((i % ci) * co + (i / ci) / taps) * taps + (i / ci) % taps).collect();
            let rows = Self::gather(v, &index);
            return Ok(WeightRows {
                rows,
                count: co * taps,
                k: ci,
                index,
                channel: (0..co * taps).map(|r| r / taps).collect(),
            });
        }
        if node.attr().i64("group", 1)? != 1 {
            return Err(Error::graph(&node.name, "grouped convolutions are not handled"));
        }
        let (cout, k, index): (usize, usize, Vec<usize>) = match (node.op_type.as_str(), s.as_slice()) {
            ("Conv", [co, ..]) => {
                let k = v.len() / co.max(&1);
                (*co, k, (0..v.len()).collect())
            }
            ("ConvTranspose", [ci, co, kh, kw]) => {
                let taps = kh * kw;
                let k = ci * taps;
                let index = (0..co * k).map(|i| ((i % k) / taps * co + i / k) * taps + i % taps).collect();
                (*co, k, index)
            }
            ("MatMul" | PILLAR_MAX_MATMUL, [kk, n]) => (*n, *kk, (0..n * kk).map(|i| (i % kk) * n + i / kk).collect()),
            _ => return Err(Error::graph(&node.name, format!("weight rounding does not handle weight {s:?}"))),
        };
        Ok(WeightRows { rows: Self::gather(v, &index), count: cout, k, index, channel: (0..cout).collect() })
    }

    fn gather(v: &[f32], index: &[usize]) -> Vec<f64> {
        index.iter().map(|&i| v[i] as f64).collect()
    }

    /// Levels in row order back into the weight's layout.
    fn to_weight(&self, levels: &[i8]) -> Vec<i8> {
        let mut out = vec![0i8; levels.len()];
        for (r, &i) in self.index.iter().enumerate() {
            out[i] = levels[r];
        }
        out
    }
}

/// The input rows one output element of `node` reads, at sampled positions where the input
/// differs from the empty scene's (`empty`), as a row-major [rows, k] matrix matching
/// `WeightRows` (conv: (channel, tap) order). At most `max_rows`, evenly spaced.
fn input_rows(
    node: &Node,
    w: &Tensor,
    x: &Tensor,
    empty: Option<&Tensor>,
    max_rows: usize,
    out_hw: (usize, usize),
) -> Result<(Vec<f32>, usize)> {
    let xv = x.as_f32().ok_or_else(|| Error::graph(&node.name, "input must be float32"))?;
    let conv = matches!(node.op_type.as_str(), "Conv" | "ConvTranspose");
    if !conv {
        let k = *x.shape.last().unwrap_or(&0);
        let occupied: Vec<usize> =
            (0..xv.len() / k.max(1)).filter(|&r| xv[r * k..r * k + k].iter().any(|&v| v != 0.0)).collect();
        let step = occupied.len().div_ceil(max_rows.max(1)).max(1);
        let mut out = vec![];
        for &r in occupied.iter().step_by(step) {
            out.extend_from_slice(&xv[r * k..r * k + k]);
        }
        return Ok((out, occupied.len().div_ceil(step)));
    }
    let [n, c, h, wd] = x.shape[..] else { return Err(Error::graph(&node.name, "input is not NCHW")) };
    let ev = empty.and_then(|e| e.as_f32().filter(|v| v.len() == xv.len()));
    let plane = h * wd;
    let occupied_px = |b: usize, p: usize| -> bool {
        match ev {
            None => true,
            Some(e) => (0..c).any(|ch| {
                let i = (b * c + ch) * plane + p;
                bits(xv[i]) != bits(e[i])
            }),
        }
    };
    if disjoint_taps(node, w) {
        let pixels: Vec<(usize, usize)> =
            (0..n).flat_map(|b| (0..plane).map(move |p| (b, p))).filter(|&(b, p)| occupied_px(b, p)).collect();
        let step = pixels.len().div_ceil(max_rows.max(1)).max(1);
        let mut out = vec![];
        for &(b, p) in pixels.iter().step_by(step) {
            out.extend((0..c).map(|ch| xv[(b * c + ch) * plane + p]));
        }
        return Ok((out, pixels.len().div_ceil(step)));
    }
    let [_, _, kh, kw] = w.shape[..] else { return Err(Error::graph(&node.name, "weight is not 4-D")) };
    let a = node.attr();
    let ints = |name: &str, d: Vec<i64>| -> Result<Vec<usize>> {
        Ok(a.ints_opt(name)?.unwrap_or(d).into_iter().map(|v| v.max(0) as usize).collect())
    };
    if a.string_opt("auto_pad")?.is_some_and(|p| p != "NOTSET") {
        return Err(Error::graph(&node.name, "weight rounding needs explicit pads (auto_pad)"));
    }
    let (st, dil, pads) = (ints("strides", vec![1, 1])?, ints("dilations", vec![1, 1])?, ints("pads", vec![0; 4])?);
    if st.len() != 2 || dil.len() != 2 || pads.len() != 4 || st.contains(&0) {
        return Err(Error::graph(&node.name, "weight rounding handles 2-D convolutions"));
    }
    let k = c * kh * kw;
    let mut positions: Vec<(usize, isize, isize)> = vec![];
    let rows_of = |b: usize, oy: isize, ox: isize, out: &mut Vec<f32>| {
        for ch in 0..c {
            for i in 0..kh {
                for j in 0..kw {
                    let (iy, ix) = if node.op_type == "Conv" {
                        (
                            oy * st[0] as isize + (i * dil[0]) as isize - pads[0] as isize,
                            ox * st[1] as isize + (j * dil[1]) as isize - pads[1] as isize,
                        )
                    } else {
                        let (ny, nx) = (
                            oy + pads[0] as isize - (i * dil[0]) as isize,
                            ox + pads[1] as isize - (j * dil[1]) as isize,
                        );
                        if ny.rem_euclid(st[0] as isize) != 0 || nx.rem_euclid(st[1] as isize) != 0 {
                            (-1, -1)
                        } else {
                            (ny / st[0] as isize, nx / st[1] as isize)
                        }
                    };
                    let inside = iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd;
                    out.push(if inside { xv[(b * c + ch) * plane + iy as usize * wd + ix as usize] } else { 0.0 });
                }
            }
        }
    };
    // Output positions whose centre tap (or, transposed, source pixel) is occupied.
    let (oh, ow) = out_hw;
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let (y, xx) = if node.op_type == "Conv" {
                    (
                        oy as isize * st[0] as isize + ((kh / 2) * dil[0]) as isize - pads[0] as isize,
                        ox as isize * st[1] as isize + ((kw / 2) * dil[1]) as isize - pads[1] as isize,
                    )
                } else {
                    ((oy + pads[0]) as isize / st[0] as isize, (ox + pads[1]) as isize / st[1] as isize)
                };
                if y >= 0
                    && xx >= 0
                    && (y as usize) < h
                    && (xx as usize) < wd
                    && occupied_px(b, y as usize * wd + xx as usize)
                {
                    positions.push((b, oy as isize, ox as isize));
                }
            }
        }
    }
    let step = positions.len().div_ceil(max_rows.max(1)).max(1);
    let mut out = Vec::with_capacity(positions.len().div_ceil(step) * k);
    for &(b, oy, ox) in positions.iter().step_by(step) {
        rows_of(b, oy, ox, &mut out);
    }
    Ok((out, positions.len().div_ceil(step)))
}

/// GPTQ (Frantar et al., 2023) with fixed per-row scales: quantizes `w` ([rows, k], row-major)
/// one input column at a time, spreading each column's rounding error over the columns not yet
/// quantized along the inverse of `h` (the inputs' second-moment matrix, [k, k]), so that
/// `||(W - Q) X||` over the inputs stays small rather than each weight's own error. `h` is
/// dampened by 1 % of its mean diagonal; an input that is always zero gets a unit diagonal.
/// Returns the levels (saturated to [-128, 127]) in row order, or `None` when `h` is not
/// positive definite even dampened.
pub fn gptq_levels(w: &[f64], rows: usize, k: usize, scales: &[f32], h: &[f64]) -> Option<Vec<i8>> {
    use rayon::prelude::*;
    let mut h = h.to_vec();
    let mean_diag = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k.max(1) as f64;
    let damp = 0.01 * if mean_diag > 0.0 { mean_diag } else { 1.0 };
    for i in 0..k {
        if h[i * k + i] <= 0.0 {
            h[i * k + i] = 1.0;
        }
        h[i * k + i] += damp;
    }
    // U: the upper Cholesky factor of H^-1 (H^-1 = U^T U), as GPTQ uses it.
    let l = cholesky(&h, k)?;
    let hinv = cholesky_inverse(&l, k);
    let u = upper_cholesky(&hinv, k)?;
    // Rows are independent given U: in parallel, each the same operations whatever the split.
    let q = (0..rows)
        .into_par_iter()
        .flat_map_iter(|o| {
            let s = scales[o] as f64;
            let mut row = w[o * k..o * k + k].to_vec();
            let mut q = vec![0i8; k];
            for i in 0..k {
                let level = if s > 0.0 { (row[i] / s).round_ties_even().clamp(-128.0, 127.0) } else { 0.0 };
                q[i] = level as i8;
                let err = (row[i] - level * s) / u[i * k + i];
                for (r, uu) in row[i + 1..].iter_mut().zip(&u[i * k + i + 1..i * k + k]) {
                    *r -= err * uu;
                }
            }
            q
        })
        .collect();
    Some(q)
}

/// Lower Cholesky factor of a symmetric positive definite `a` ([n, n]); `None` if not SPD.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[i * n + j];
            let (ri, rj) = (&l[i * n..i * n + j], &l[j * n..j * n + j]);
            let mut acc = [0.0f64; 4];
            for (x, y) in ri.chunks(4).zip(rj.chunks(4)) {
                for t in 0..x.len() {
                    acc[t] += x[t] * y[t];
                }
            }
            sum -= acc.iter().sum::<f64>();
            if i == j {
                if sum <= 0.0 || !sum.is_finite() {
                    return None;
                }
                l[i * n + i] = sum.sqrt();
            } else {
                l[i * n + j] = sum / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// `(L L^T)^-1` from the lower factor `l`: one forward and one backward substitution per column
/// (rows of `l` and of its transpose are read contiguously), columns in parallel.
fn cholesky_inverse(l: &[f64], n: usize) -> Vec<f64> {
    use rayon::prelude::*;
    let lt: Vec<f64> = (0..n * n).map(|i| l[(i % n) * n + i / n]).collect();
    let dot = |a: &[f64], b: &[f64]| -> f64 {
        let mut acc = [0.0f64; 4];
        let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for t in 0..4 {
                acc[t] += x[t] * y[t];
            }
        }
        acc.iter().sum::<f64>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f64>()
    };
    let columns: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|c| {
            let mut y = vec![0.0; n];
            for i in c..n {
                let b = if i == c { 1.0 } else { 0.0 };
                y[i] = (b - dot(&l[i * n + c..i * n + i], &y[c..i])) / l[i * n + i];
            }
            let mut x = vec![0.0; n];
            for i in (0..n).rev() {
                x[i] = (y[i] - dot(&lt[i * n + i + 1..i * n + n], &x[i + 1..])) / l[i * n + i];
            }
            x
        })
        .collect();
    let mut out = vec![0.0; n * n];
    for (c, col) in columns.iter().enumerate() {
        for (r, v) in col.iter().enumerate() {
            out[r * n + c] = *v;
        }
    }
    out
}

/// Upper `U` with `a = U^T U` (what GPTQ calls the upper Cholesky factor): the transpose of the
/// lower factor.
fn upper_cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let l = cholesky(a, n)?;
    Some((0..n * n).map(|i| l[(i % n) * n + i / n]).collect())
}

/// `tr((W - Q s) H (W - Q s)^T)`: the summed squared output error of levels `q` over the inputs
/// whose second moments are `h`.
pub fn reconstruction_error(w: &[f64], rows: usize, k: usize, q: &[i8], scales: &[f32], h: &[f64]) -> f64 {
    use rayon::prelude::*;
    let per_row: Vec<f64> = (0..rows)
        .into_par_iter()
        .map(|o| {
            let d: Vec<f64> = (0..k).map(|i| w[o * k + i] - q[o * k + i] as f64 * scales[o] as f64).collect();
            (0..k)
                .filter(|&i| d[i] != 0.0)
                .map(|i| d[i] * h[i * k..i * k + k].iter().zip(&d).map(|(a, b)| a * b).sum::<f64>())
                .sum()
        })
        .collect();
    per_row.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pointpillars::SplitMix64;

    fn rand(rng: &mut SplitMix64, n: usize) -> Vec<f64> {
        (0..n).map(|_| rng.unit() as f64 * 2.0 - 1.0).collect()
    }

    /// GPTQ never does worse than round-to-nearest on the inputs it was given, and much better
    /// when the inputs are correlated (what it exploits); the inverse and factors are exact.
    #[test]
    fn gptq_lowers_the_output_error_of_round_to_nearest() {
        let mut rng = SplitMix64::new(7);
        let (rows, k, samples) = (6, 24, 400);
        let w = rand(&mut rng, rows * k);
        // Correlated inputs: a few latent factors mixed into k features.
        let mix = rand(&mut rng, 4 * k);
        let mut h = vec![0.0; k * k];
        for _ in 0..samples {
            let z = rand(&mut rng, 4);
            let x: Vec<f64> = (0..k).map(|i| (0..4).map(|f| z[f] * mix[f * k + i]).sum::<f64>()).collect();
            for i in 0..k {
                for j in 0..k {
                    h[i * k + j] += x[i] * x[j] / samples as f64;
                }
            }
        }
        let scales: Vec<f32> = (0..rows)
            .map(|o| (w[o * k..o * k + k].iter().fold(0.0f64, |a, v| a.max(v.abs())) / 127.0 * 16.0) as f32)
            .collect();
        let rtn: Vec<i8> = (0..rows * k).map(|i| (w[i] / scales[i / k] as f64).round_ties_even() as i8).collect();
        let q = gptq_levels(&w, rows, k, &scales, &h).unwrap();
        let (before, after) =
            (reconstruction_error(&w, rows, k, &rtn, &scales, &h), reconstruction_error(&w, rows, k, &q, &scales, &h));
        assert!(after < 0.5 * before, "GPTQ {after} vs round-to-nearest {before}");
        assert!(
            q.iter().zip(&rtn).all(|(a, b)| (*a as i32 - *b as i32).abs() <= 8),
            "levels stray far from the weights"
        );

        // The factorizations: L L^T = H, H^-1 H = I, U^T U = H^-1.
        let mut hd = h.clone();
        (0..k).for_each(|i| hd[i * k + i] += 0.1);
        let l = cholesky(&hd, k).unwrap();
        let inv = cholesky_inverse(&l, k);
        let u = upper_cholesky(&inv, k).unwrap();
        for i in 0..k {
            for j in 0..k {
                let id: f64 = (0..k).map(|p| inv[i * k + p] * hd[p * k + j]).sum();
                assert!((id - if i == j { 1.0 } else { 0.0 }).abs() < 1e-8, "H^-1 H at ({i}, {j}): {id}");
                let utu: f64 = (0..k).map(|p| u[p * k + i] * u[p * k + j]).sum();
                assert!((utu - inv[i * k + j]).abs() < 1e-8 * inv[i * k + i].abs().max(1.0));
                if j < i {
                    assert_eq!(u[i * k + j], 0.0);
                }
            }
        }
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none(), "not positive definite");
    }

    /// Weight rows round-trip to the weight's layout: Conv [Cout, Cin, kh, kw], MatMul [K, N]
    /// (rows are columns), non-overlapping ConvTranspose [Cin, Cout, kh, kw] (a row per output
    /// channel and tap, over the input channels).
    #[test]
    fn weight_rows_map_every_element_once() {
        let node = |op: &str, attrs: &[(&str, Vec<i64>)]| {
            let mut a = crate::graph::attrs::Attrs::default();
            for (k, v) in attrs {
                a.set(k, crate::graph::attrs::AttrValue::Ints(v.clone()));
            }
            Node {
                name: op.into(),
                op_type: op.into(),
                domain: String::new(),
                inputs: vec![],
                outputs: vec![],
                attrs: a,
                activation: Activation::None,
                fused: vec![],
            }
        };
        for (n, shape, rows, k) in [
            (node("Conv", &[]), vec![4, 3, 3, 3], 4, 27),
            (node("MatMul", &[]), vec![10, 6], 6, 10),
            (node("ConvTranspose", &[("strides", vec![2, 2])]), vec![5, 3, 2, 2], 12, 5),
            (node("ConvTranspose", &[("strides", vec![1, 1])]), vec![5, 3, 2, 2], 3, 20),
        ] {
            let len: usize = shape.iter().product();
            let w = Tensor::f32(shape.clone(), (0..len).map(|i| i as f32).collect());
            let r = WeightRows::of(&n, &w).unwrap();
            assert_eq!((r.count, r.k), (rows, k), "{} {shape:?}", n.op_type);
            let levels: Vec<i8> = (0..len).map(|i| (i % 200) as i8).collect();
            let back = r.to_weight(&r.index.iter().map(|&i| levels[i]).collect::<Vec<_>>());
            assert_eq!(back, levels, "{} {shape:?}", n.op_type);
            // Row elements hold the weight values they index.
            assert!(r.rows.iter().zip(&r.index).all(|(v, &i)| *v == i as f64));
            // Each row's scale is its output channel's.
            let cout = if n.op_type == "Conv" { shape[0] } else { shape[1] };
            assert!(r.channel.iter().all(|&c| c < cout));
        }
    }
}
