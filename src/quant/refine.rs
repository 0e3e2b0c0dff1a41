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
//! - `bias`: per output channel, the mean over the calibration frames (all positions) of the
//!   layer's pre-activation output in INT8 (its final threshold and equalization) minus FP32,
//!   taken out of the float32 bias.
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
use super::calibrate::{LayerHistograms, Observers};
use super::plan::{Calibration, LayerRefinement};
use super::recipe::Recipe;
use crate::error::{Error, Result};
use crate::exec::cpu::precision::{activation_channel_axis, dequantize_weight, int8_weight, weight_channel_axis};
use crate::exec::cpu::{eval_node, CpuExecutor};
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
        if recipe.bias {
            let t = Instant::now();
            self.correct_bias(&mut cal, &mut report)?;
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
                    if seen || (f != 1.0 && (a > observed || super::plan::amax_problem(a).is_some())) {
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
                    bias_shift: None,
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
                .map(|&a| if a > 0.0 { ((top as f64 / a as f64).powf(alpha as f64)) as f32 } else { 1.0 })
                .collect::<Vec<_>>()
                .into();
            let mut h = Histogram::new();
            for x in &xs {
                let v = x.as_f32().unwrap_or(&[]);
                let c = m.len();
                let scaled: Vec<f32> = v.iter().enumerate().map(|(i, &x)| x * m[i % c]).collect();
                h.merge(&self.observers.input_histogram(k, &Tensor::f32(x.shape.clone(), scaled))?);
            }
            let a = calibrate_amax(&h, &self.method);
            out.push((alpha, Some(m), a, h.amax_observed()));
        }
        Ok(out)
    }

    /// Bias correction of every layer with a threshold and a bias, under its final threshold
    /// and equalization.
    fn correct_bias(&self, cal: &mut Calibration, report: &mut RefineReport) -> Result<()> {
        struct Acc {
            name: String,
            lp: LayerPrecision,
            sum: Vec<f64>,
            count: f64,
        }
        let mut accs = vec![];
        for l in self.layers {
            let Some(a) = cal.activations.get(&l.name) else { continue };
            if self.exec.layer_bias(&l.name).is_none() {
                continue;
            }
            let mut lp = LayerPrecision::plain(&l.name, Precision::Int8, Some(a.amax), cal.pow2_scales);
            lp.input_mul =
                cal.layers.get(&l.name).filter(|r| !r.input_mul.is_empty()).map(|r| r.input_mul.as_slice().into());
            accs.push(Acc { name: l.name.clone(), lp, sum: vec![], count: 0.0 });
        }
        for f in 0..self.frames {
            let inputs = (self.frame)(f)?;
            let state = self.exec.run_keep(&inputs)?;
            for acc in &mut accs {
                let (edge, _) = self.exec.layer_edges(&acc.name).ok_or_else(|| Error::graph(&acc.name, "no layer"))?;
                let x = self.exec.value(&state, edge).ok_or_else(|| Error::graph(edge, "edge has no value"))?;
                let (sum, count) = self.mean_error(&acc.lp, x)?;
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

    /// Per output channel: the sum over positions of (INT8 - FP32) pre-activation output of
    /// layer `lp` on input `x`, and the number of positions.
    fn mean_error(&self, lp: &LayerPrecision, x: &Tensor) -> Result<(Vec<f64>, f64)> {
        let (node, w) = self.exec.layer_weight(&lp.name).ok_or_else(|| Error::graph(&lp.name, "no weight"))?;
        let (q, scales) = int8_weight(node, &w, lp)?;
        let wq = dequantize_weight(&w.shape, weight_channel_axis(node), &q, &scales);
        let s = lp.act_amax.unwrap_or(1.0) / 127.0;
        let xv = x.as_f32().ok_or_else(|| Error::graph(&lp.name, "input must be float32"))?;
        let axis = activation_channel_axis(node, x.shape.len());
        let xq: Vec<f32> = match &lp.input_mul {
            None => xv.iter().map(|&v| fake_quant(v, s)).collect(),
            Some(m) => {
                let inner = x.shape[axis + 1..].iter().product::<usize>().max(1);
                xv.iter().enumerate().map(|(i, &v)| fake_quant(v * m[(i / inner) % m.len()], s)).collect()
            }
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
                let c = yf.shape.get(1).copied().unwrap_or(0);
                let inner = yf.shape[2..].iter().product::<usize>().max(1);
                let mut sum = vec![0.0f64; c];
                for (i, (fa, qb)) in a.chunks(inner).zip(b.chunks(inner)).enumerate() {
                    sum[i % c.max(1)] += qb.iter().zip(fa).map(|(&q, &f)| q as f64 - f as f64).sum::<f64>();
                }
                let count = (yf.shape.first().copied().unwrap_or(1) * inner) as f64;
                Ok((sum, count))
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
